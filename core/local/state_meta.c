/*
 * state_meta: the small tables of state.db beside the rows (state.c): meta
 * (settings, the watermark and its chain value, the record of the last
 * applied object) and the device table.
 */
#include "state_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"

#define HASH_HEX (2 * SS_OBJECT_HASH_BYTES)

ss_rc ss_state_meta_get(ss_state *st, const char *key, char **ret_value, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_META_GET];
    ss_rc rc = SS_OK;
    int r;
    *ret_value = NULL;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        *ret_value = strdup((const char *)sqlite3_column_text(q, 0));
        if (!*ret_value) rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    } else if (r != SQLITE_DONE) {
        rc = ss_state_db_fail(st, st->wr, err, "read setting");
    }
    sqlite3_reset(q);
    return rc;
}

ss_rc ss_state_meta_set(ss_state *st, const char *key, const char *value, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_META_SET];
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    return ss_state_run(st, q, err, "write setting");
}

static int hex_nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n bytes from 2n hex digits at s (no more, no less): 0, or -1 when malformed. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hi < 0 ? -1 : hex_nibble(s[2 * i + 1]);
        if (lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[2 * n] && s[2 * n] != ' ' ? -1 : 0;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* meta key's value as a chain value into ret; *ret_found 0 when unset. */
static ss_rc chain_get(ss_state *st, const char *key, uint8_t ret[SS_CHAIN_BYTES], int *ret_found,
                       ss_err *err)
{
    char *hex = NULL;
    ss_rc rc = ss_state_meta_get(st, key, &hex, err);
    *ret_found = 0;
    if (rc || !hex) return rc;
    if (strlen(hex) != 2 * SS_CHAIN_BYTES || unhex(hex, ret, SS_CHAIN_BYTES)) {
        memset(ret, 0, SS_CHAIN_BYTES);
        rc = ss_fail(err, SS_ERR_IO, "state %s: malformed %s value", st->path, key);
    } else {
        *ret_found = 1;
    }
    free(hex);
    return rc;
}

ss_rc ss_state_watermark(ss_state *st, uint64_t *ret_seq, uint8_t ret_chain[SS_CHAIN_BYTES],
                         ss_err *err)
{
    char *seq = NULL;
    int found = 0;
    ss_rc rc;
    *ret_seq = 0;
    memset(ret_chain, 0, SS_CHAIN_BYTES);
    rc = ss_state_meta_get(st, "watermark", &seq, err);
    if (rc || !seq) goto out;
    rc = chain_get(st, "chain", ret_chain, &found, err);
    if (rc) goto out;
    if (!found) {
        rc = ss_fail(err, SS_ERR_IO, "state %s: watermark without its chain value", st->path);
        goto out;
    }
    *ret_seq = strtoull(seq, NULL, 10);
out:
    free(seq);
    return rc;
}

ss_rc ss_state_chain_prev(ss_state *st, uint8_t ret_prev[SS_CHAIN_BYTES], ss_err *err)
{
    int found = 0;
    ss_rc rc = chain_get(st, "chain_prev", ret_prev, &found, err);
    if (rc || found) return rc;
    return ss_fail(err, SS_ERR_NOT_FOUND,
                   "state %s: the chain value before the watermark is not recorded", st->path);
}

static ss_rc chain_set(ss_state *st, const char *key, const uint8_t chain[SS_CHAIN_BYTES],
                       ss_err *err)
{
    char hex[2 * SS_CHAIN_BYTES + 1];
    tohex(chain, SS_CHAIN_BYTES, hex);
    return ss_state_meta_set(st, key, hex, err);
}

ss_rc ss_state_set_watermark(ss_state *st, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES],
                             const uint8_t prev[SS_CHAIN_BYTES], ss_err *err)
{
    char s[24];
    ss_rc rc;
    snprintf(s, sizeof s, "%llu", (unsigned long long)seq);
    rc = ss_state_meta_set(st, "watermark", s, err);
    if (rc) return rc;
    rc = chain_set(st, "chain", chain, err);
    if (rc) return rc;
    return chain_set(st, "chain_prev", prev, err);
}

/* meta "applied": "SEQ SIZE HASH TAG", the hash in hex, the tag SS_STATE_TAG_HEX digits or "-". */
ss_rc ss_state_set_applied(ss_state *st, const ss_state_applied *a, ss_err *err)
{
    char hash[HASH_HEX + 1], line[160];
    tohex(a->hash, SS_OBJECT_HASH_BYTES, hash);
    snprintf(line, sizeof line, "%llu %llu %s %s", (unsigned long long)a->seq,
             (unsigned long long)a->size, hash, a->tag[0] ? a->tag : "-");
    return ss_state_meta_set(st, "applied", line, err);
}

ss_rc ss_state_applied_get(ss_state *st, ss_state_applied *ret, int *ret_found, ss_err *err)
{
    char *line = NULL, *p, *end = NULL;
    ss_state_applied a = {0};
    ss_rc rc = ss_state_meta_get(st, "applied", &line, err);
    *ret_found = 0;
    if (rc || !line) return rc;
    a.seq = strtoull(line, &end, 10);
    p = end;
    if (*p == ' ') a.size = strtoull(p + 1, &end, 10);
    p = end;
    /* An unreadable record is no record: the check it serves is skipped, never failed. */
    if (p != line && *p == ' ' && !unhex(p + 1, a.hash, SS_OBJECT_HASH_BYTES) &&
        strlen(p + 1) > HASH_HEX + 1) {
        p += 1 + HASH_HEX + 1; /* " HASH " */
        if (strlen(p) == SS_STATE_TAG_HEX && strspn(p, "0123456789abcdef") == SS_STATE_TAG_HEX)
            memcpy(a.tag, p, sizeof a.tag);
        *ret_found = !strcmp(p, "-") || a.tag[0];
    }
    free(line);
    if (*ret_found) *ret = a;
    return SS_OK;
}

/* The enrollment policy lives in meta as "MODE SEQ" (absent: never set). */
#define POLICY_KEY "enrollment"

static ss_rc policy_load(ss_state *st, ss_devices *d, ss_err *err)
{
    char *v = NULL;
    unsigned mode = 0;
    unsigned long long seq = 0;
    ss_rc rc = ss_state_meta_get(st, POLICY_KEY, &v, err);
    if (rc || !v) return rc; /* none: never set */
    if (sscanf(v, "%u %llu", &mode, &seq) != 2 || mode > SS_ENROLL_APPROVE)
        rc = ss_fail(err, SS_ERR_IO, "state %s: a malformed enrollment policy", st->path);
    else
        ss_devices_set_policy(d, (uint8_t)mode, seq);
    free(v);
    return rc;
}

static ss_rc policy_save(ss_state *st, const ss_devices *d, ss_err *err)
{
    char v[48];
    uint8_t mode;
    uint64_t seq;
    ss_devices_policy(d, &mode, &seq);
    if (!seq) return SS_OK;
    snprintf(v, sizeof v, "%u %llu", (unsigned)mode, (unsigned long long)seq);
    return ss_state_meta_set(st, POLICY_KEY, v, err);
}

ss_rc ss_state_devices_load(ss_state *st, ss_devices *d, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_DEV_ALL];
    ss_rc rc = SS_OK;
    for (;;) {
        int r = sqlite3_step(q);
        if (r == SQLITE_DONE) break;
        if (r != SQLITE_ROW) {
            rc = ss_state_db_fail(st, st->wr, err, "read devices");
            break;
        }
        ss_device dev = {0};
        const char *name = (const char *)sqlite3_column_text(q, 5);
        if (sqlite3_column_bytes(q, 0) != sizeof dev.id ||
            sqlite3_column_bytes(q, 1) != sizeof dev.pk || !name ||
            strlen(name) >= sizeof dev.name) {
            rc = ss_fail(err, SS_ERR_IO, "state %s: a malformed device row", st->path);
            break;
        }
        memcpy(dev.id, sqlite3_column_blob(q, 0), sizeof dev.id);
        memcpy(dev.pk, sqlite3_column_blob(q, 1), sizeof dev.pk);
        dev.enrolled = (uint64_t)sqlite3_column_int64(q, 2);
        dev.revoked = (uint64_t)sqlite3_column_int64(q, 3);
        dev.last = (uint64_t)sqlite3_column_int64(q, 4);
        strcpy(dev.name, name);
        rc = ss_devices_put(d, &dev, err);
        if (rc) break;
    }
    sqlite3_reset(q);
    if (rc) return rc;
    return policy_load(st, d, err);
}

ss_rc ss_state_devices_save(ss_state *st, const ss_devices *d, ss_err *err)
{
    ss_rc rc = ss_state_run(st, st->q[Q_DEV_CLEAR], err, "write devices");
    if (rc) return rc;
    for (size_t i = 0; i < ss_devices_count(d); i++) {
        const ss_device *dev = ss_devices_at(d, i);
        sqlite3_stmt *q = st->q[Q_DEV_PUT];
        sqlite3_bind_blob(q, 1, dev->id, sizeof dev->id, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, dev->pk, sizeof dev->pk, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, (sqlite3_int64)dev->enrolled);
        sqlite3_bind_int64(q, 4, (sqlite3_int64)dev->revoked);
        sqlite3_bind_int64(q, 5, (sqlite3_int64)dev->last);
        sqlite3_bind_text(q, 6, dev->name, -1, SQLITE_STATIC);
        rc = ss_state_run(st, q, err, "write devices");
        if (rc) return rc;
    }
    return policy_save(st, d, err);
}
