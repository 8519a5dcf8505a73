/*
 * fuzz-lockd-state: libFuzzer target for the objects of lockd's bucket state
 * (lockd/state_s3_json.c), the bytes anyone holding the state bucket's
 * credentials may write: a repository's record, a device, a name, meta.json.
 *
 * Input: byte 0 picks the parser (mod 4: record, device, name, meta); the
 * rest is the object. Checked: a refusal is SS_ERR_INTEGRITY with a message
 * naming the key; an accepted record keeps the promises state_s3.c relies
 * on (its repository the key's, names valid, the lease's token below
 * next_fencing, writers rising and at most 64) and dumps to bytes that
 * parse back to the same struct; an accepted device, name or secret dumps
 * and parses back the same. Seeds: corpus-lockd-state/ (mode byte + objects).
 */
#include "state_s3_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void refused(ss_rc rc, const ss_err *err, const char *key)
{
    if (rc != SS_ERR_INTEGRITY || !strstr(err->msg, key)) abort();
}

static void record(const char *key, const uint8_t *buf, size_t len)
{
    static s3st_record r, again; /* large: not on libFuzzer's stack */
    char *out = NULL;
    size_t out_len = 0;
    ss_err err = {{0}};
    ss_rc rc = s3st_record_parse(key, "r1", buf, len, &r, &err);
    if (rc) {
        refused(rc, &err, key);
        return;
    }
    if (strcmp(r.rec.repo.name, "r1") || strncmp(r.rec.repo.url, "s3://", 5)) abort();
    if (r.rec.repo.next_fencing < 1 || r.n_w > LD_STATE_WRITERS_KEPT) abort();
    if (r.rec.leased &&
        (r.rec.lease.fencing >= r.rec.repo.next_fencing || !ld_name_ok(r.rec.lease.device)))
        abort();
    for (size_t i = 0; i < r.n_w; i++)
        if ((i && r.w[i].seq <= r.w[i - 1].seq) || r.w[i].w.n < 1 || r.w[i].w.n > LD_WRITERS_MAX)
            abort();
    if (s3st_record_dump(&r, &out, &out_len, &err)) abort();
    if (s3st_record_parse(key, "r1", out, out_len, &again, &err)) abort();
    if (memcmp(&r, &again, sizeof r)) abort();
    free(out);
}

static void device(const char *key, const uint8_t *buf, size_t len)
{
    unsigned char hash[LD_HASH_LEN] = {1, 2, 3};
    ld_device d, again;
    char *out = NULL;
    size_t out_len = 0;
    ss_err err = {{0}};
    ss_rc rc = s3st_device_parse(key, hash, buf, len, &d, &err);
    if (rc) {
        refused(rc, &err, key);
        return;
    }
    if (!ld_name_ok(d.name) || !ld_name_ok(d.repo) || memcmp(d.hash, hash, LD_HASH_LEN)) abort();
    if (s3st_device_dump(&d, &out, &out_len, &err)) abort();
    if (s3st_device_parse(key, hash, out, out_len, &again, &err)) abort();
    if (memcmp(&d, &again, sizeof d)) abort();
    free(out);
}

static void name(const char *key, const uint8_t *buf, size_t len)
{
    unsigned char hash[LD_HASH_LEN], again[LD_HASH_LEN];
    char *out = NULL;
    size_t out_len = 0;
    ss_err err = {{0}};
    ss_rc rc = s3st_name_parse(key, buf, len, hash, &err);
    if (rc) {
        refused(rc, &err, key);
        return;
    }
    if (s3st_name_dump(hash, &out, &out_len, &err)) abort();
    if (s3st_name_parse(key, out, out_len, again, &err) || memcmp(hash, again, LD_HASH_LEN))
        abort();
    free(out);
}

static void meta(const uint8_t *buf, size_t len)
{
    unsigned char secret[LD_SECRET_LEN], again[LD_SECRET_LEN];
    char out[S3ST_SMALL_MAX];
    size_t out_len;
    ss_err err = {{0}};
    ss_rc rc = s3st_meta_parse(buf, len, secret, &err);
    if (rc) {
        refused(rc, &err, S3ST_META_KEY);
        return;
    }
    out_len = s3st_meta_dump(secret, out);
    if (s3st_meta_parse(out, out_len, again, &err) || memcmp(secret, again, LD_SECRET_LEN)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > S3ST_RECORD_MAX) return 0;
    switch (data[0] % 4) {
    case 0: record("repos/r1.json", data + 1, size - 1); break;
    case 1: device("devices/0102.json", data + 1, size - 1); break;
    case 2: name("names/dev-a.json", data + 1, size - 1); break;
    default: meta(data + 1, size - 1); break;
    }
    return 0;
}
