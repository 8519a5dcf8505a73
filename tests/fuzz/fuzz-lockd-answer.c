/*
 * fuzz-lockd-answer: libFuzzer target for the lockd: client's reading of
 * s3sync-lockd's JSON answers (s3store/lockd_answer.c), what a lockd that
 * lies, or anyone between it and an http:// client, can make a device read.
 * Each input is one answer body: lk_answer_load, then every parser on it
 * (a lease grant, a presign answer of GET, PUT or LIST, the head and its
 * object's ETag, the writers of a sequence, a refusal),
 * as lockd_client.c and store_lockd.c would read it.
 *
 * Checked: an accepted lease id is 1..63 lower-case hex (it goes into request
 * paths), its TTL >= 0; an accepted URL is http(s) (curl would also write
 * file: URLs); the GET URL reuse time stays within 80% of 7 days; a head is
 * >= 0; writers are device names; a refusal's code, message and holder are
 * NUL-terminated single lines.
 * Seeds: corpus-lockd-answer/ (real answers of a running lockd).
 */
#include "lockd_answer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap) abort(); /* not NUL-terminated within its buffer */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *ans = lk_answer_load((const char *)data, size);
    lk_answer_lease lease;
    lk_answer_presigned pre;
    lk_answer_refusal no;
    ss_store_stat obj;
    uint64_t head = 0;
    char who[300];

    if (ans && !json_is_object(ans)) abort();
    /* lk_api hands the parsers NULL when the bytes held no object. */
    if (!lk_answer_parse_lease(ans, &lease)) {
        size_t n = strnlen(lease.lease_id, sizeof lease.lease_id);
        if (!n || n == sizeof lease.lease_id || strspn(lease.lease_id, "0123456789abcdef") != n)
            abort();
        if (lease.ttl_ms < 0) abort();
    }
    if (!lk_answer_parse_presigned(ans, &pre)) {
        if (!pre.url || (strncmp(pre.url, "http://", 7) && strncmp(pre.url, "https://", 8)))
            abort();
    } else if (pre.url) {
        abort();
    }
    if (!pre.key_prefix) abort();
    (void)strlen(pre.key_prefix);
    if (pre.reuse_ms < 0 || pre.reuse_ms > (int64_t)LK_ANSWER_EXPIRES_MAX * 800) abort();
    if (pre.expires_ms < pre.reuse_ms || pre.expires_ms > (int64_t)LK_ANSWER_EXPIRES_MAX * 1000)
        abort();
    if (lk_answer_parse_head(ans, &head) && head) abort();
    if ((int64_t)head < 0) abort();
    /* A writer's name goes into an error message: device-name characters only. */
    if (!lk_answer_parse_writers(ans, who, sizeof who) &&
        strspn(who, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._- ") !=
            strlen(who))
        abort();
    one_line(who, sizeof who);
    lk_answer_parse_head_object(ans, &obj); /* an ETag of printable characters, or none */
    one_line(obj.etag, sizeof obj.etag);
    if (strchr(obj.etag, ' ') || (!obj.etag[0] && obj.size)) abort();
    lk_answer_parse_refusal(ans, &no);
    one_line(no.code, sizeof no.code);
    one_line(no.message, sizeof no.message);
    one_line(no.holder, sizeof no.holder);
    if (no.retry_after_ms < 0) abort();
    json_decref(ans);
    return 0;
}
