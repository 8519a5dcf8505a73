/*
 * lockd_answer: lockd's JSON answers -> checked fields (see lockd_answer.h).
 * Owns the rules an answer must meet before the client acts on it; the
 * answers' meaning is lockd_client.c's and store_lockd.c's.
 */
#include "lockd_answer.h"

#include <stdio.h>
#include <string.h>

json_t *lk_answer_load(const char *buf, size_t len)
{
    json_t *j = json_loadb(buf, len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

const char *lk_answer_str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

int lk_answer_parse_lease(const json_t *ans, lk_answer_lease *ret)
{
    const char *id = lk_answer_str(ans, "lease_id");
    json_t *fencing = json_object_get(ans, "fencing_token");
    json_int_t ttl = json_integer_value(json_object_get(ans, "ttl_ms"));
    size_t n = strlen(id);
    memset(ret, 0, sizeof *ret);
    /* The id goes into request paths: hex only, so it cannot reach another route. */
    if (!n || n >= sizeof ret->lease_id || strspn(id, "0123456789abcdef") != n ||
        !json_is_integer(fencing))
        return -1;
    memcpy(ret->lease_id, id, n + 1);
    ret->fencing = json_integer_value(fencing);
    ret->ttl_ms = ttl > 0 ? ttl : 0;
    return 0;
}

int lk_answer_parse_presigned(const json_t *ans, lk_answer_presigned *ret)
{
    const json_t *first = json_array_get(json_object_get(ans, "urls"), 0);
    json_int_t expires = json_integer_value(json_object_get(ans, "expires_in"));
    memset(ret, 0, sizeof *ret);
    ret->key_prefix = lk_answer_str(ans, "key_prefix");
    /* Beyond what S3 signs the URL is dead anyway; and expires * 800 stays in range. */
    if (expires < 0) expires = 0;
    if (expires > LK_ANSWER_EXPIRES_MAX) expires = LK_ANSWER_EXPIRES_MAX;
    ret->reuse_ms = (int64_t)expires * 800;
    ret->expires_ms = (int64_t)expires * 1000;
    ret->url = json_string_value(json_object_get(first, "url"));
    /* curl speaks file:, ftp:, smb: ... too: a PUT URL from a lockd that lies
     * must not write this device's files. */
    if (!ret->url || (strncmp(ret->url, "http://", 7) && strncmp(ret->url, "https://", 8))) {
        ret->url = NULL;
        return -1;
    }
    return 0;
}

int lk_answer_parse_head(const json_t *ans, uint64_t *ret_head)
{
    json_t *head = json_object_get(ans, "head");
    *ret_head = 0;
    if (!json_is_integer(head) || json_integer_value(head) < 0) return -1;
    *ret_head = (uint64_t)json_integer_value(head);
    return 0;
}

int lk_answer_parse_writers(const json_t *ans, char *out, size_t cap)
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789._-";
    const json_t *devices = json_object_get(ans, "devices");
    size_t n = json_array_size(devices), used = 0;
    out[0] = '\0';
    if (!json_is_array(devices) || n > LK_WRITERS_MAX) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(devices, i));
        size_t len = name ? strlen(name) : 0;
        if (!len || len > LK_NAME_MAX || strspn(name, name_chars) != len) {
            out[0] = '\0';
            return -1;
        }
        used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s", i ? " or " : "",
                                 name);
        if (used >= cap) used = cap - 1;
    }
    return 0;
}

void lk_answer_parse_head_object(const json_t *ans, ss_store_stat *ret)
{
    const char *etag = lk_answer_str(ans, "etag");
    json_t *size = json_object_get(ans, "size");
    size_t n = strnlen(etag, sizeof ret->etag);
    memset(ret, 0, sizeof *ret);
    if (!n || n == sizeof ret->etag || !json_is_integer(size) || json_integer_value(size) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (etag[i] < '!' || etag[i] > '~') return;
    memcpy(ret->etag, etag, n + 1);
    ret->size = (uint64_t)json_integer_value(size);
}

/* The string member key of o into out[cap], control characters blanked, cut to fit. */
static void one_line(const json_t *o, const char *key, char *out, size_t cap)
{
    const char *v = lk_answer_str(o, key);
    size_t n = strnlen(v, cap - 1);
    memcpy(out, v, n);
    out[n] = '\0';
    for (char *p = out; *p; p++) /* lockd's words go into a one-line message */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
}

void lk_answer_parse_refusal(const json_t *ans, lk_answer_refusal *ret)
{
    json_int_t retry = json_integer_value(json_object_get(ans, "retry_after_ms"));
    memset(ret, 0, sizeof *ret);
    one_line(ans, "error", ret->code, sizeof ret->code);
    one_line(ans, "message", ret->message, sizeof ret->message);
    one_line(ans, "holder", ret->holder, sizeof ret->holder);
    ret->retry_after_ms = retry > 0 ? retry : 0;
}
