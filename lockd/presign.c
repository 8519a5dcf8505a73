/*
 * presign.c: what a device may get presigned URLs for, and the URLs.
 * Names and keys are checked against a small whitelist here, before they
 * are joined to a repository's prefix, so no request can reach outside that
 * prefix: no "..", no empty segment, nothing an S3 front end might
 * normalise. PUT rules follow docs/FORMAT.md: the lease holder creates the
 * objects of sequence head+1 only, always with If-None-Match: * signed in.
 */
#include "body.h"
#include "lockd.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int ld_name_ok(const char *s)
{
    size_t n = 0;
    if (!s || !*s || *s == '.') return 0;
    for (; s[n]; n++)
        if (!name_char(s[n]) || n >= LD_NAME_MAX) return 0;
    return 1;
}

void ld_log_key(uint64_t seq, char out[LD_LOG_KEY_SIZE])
{
    snprintf(out, LD_LOG_KEY_SIZE, "log/%020" PRIu64, seq);
}

int ld_key_ok(const char *key, int allow_empty, int allow_trailing_slash)
{
    size_t len = key ? strlen(key) : 0, seg = 0;
    if (!key || len > LD_KEY_MAX) return 0;
    if (!len) return allow_empty;
    for (size_t i = 0; i <= len; i++) {
        char c = key[i];
        if (c == '/' || c == '\0') {
            const char *start = key + i - seg;
            if (seg == 0 && !(c == '\0' && allow_trailing_slash && i > 0)) return 0;
            if ((seg == 1 && start[0] == '.') || (seg == 2 && start[0] == '.' && start[1] == '.'))
                return 0;
            seg = 0;
        } else if (!name_char(c)) {
            return 0;
        } else {
            seg++;
        }
    }
    return 1;
}

/* n decimal digits at s, the whole of them a number; 0 when not. */
static uint64_t digits(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

static int hex_id(const char *s)
{
    return strlen(s) == LD_ID_HEX && strspn(s, "0123456789abcdef") == LD_ID_HEX;
}

int ld_put_key_ok(const char *key, uint64_t head)
{
    const size_t d = LD_SEQ_DIGITS;
    if (!strcmp(key, "config")) return 1;
    if (!strncmp(key, "keys/", 5)) return hex_id(key + 5);
    if (!strncmp(key, "log/", 4)) return strlen(key) == 4 + d && digits(key + 4, d) == head + 1;
    if (!strncmp(key, "data/", 5))
        return strlen(key) == 5 + d + 1 + LD_ID_HEX && digits(key + 5, d) == head + 1 &&
               key[5 + d] == '-' && hex_id(key + 6 + d);
    if (!strncmp(key, "checkpoints/", 12)) {
        uint64_t seq = strlen(key) == 12 + d ? digits(key + 12, d) : 0;
        return seq >= 1 && seq <= head;
    }
    if (!strncmp(key, "epochs/", 7)) /* a key epoch begun with log/<head+1> */
        return strlen(key) == 7 + LD_EPOCH_DIGITS && digits(key + 7, LD_EPOCH_DIGITS) >= 1;
    return 0;
}

static ss_rc bad(ld_outcome *out, ld_why why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ss_rc bad(ld_outcome *out, ld_why why, const char *fmt, ...)
{
    va_list ap;
    ss_rc rc = why == LD_WHY_BAD_KEY       ? SS_ERR_AUTH
               : why == LD_WHY_BAD_REQUEST ? SS_ERR_INVALID
                                           : SS_ERR_CONFLICT;
    out->why = why;
    va_start(ap, fmt);
    ss_vfail(&out->err, rc, fmt, ap);
    va_end(ap);
    return rc;
}

/* The sequence a log/ or data/ key names, 0 for other keys. */
static uint64_t key_seq(const char *key)
{
    if (!strncmp(key, "log/", 4) && strlen(key) == 4 + LD_SEQ_DIGITS)
        return digits(key + 4, LD_SEQ_DIGITS);
    if (!strncmp(key, "data/", 5) && strlen(key) > 5 + LD_SEQ_DIGITS &&
        key[5 + LD_SEQ_DIGITS] == '-')
        return digits(key + 5, LD_SEQ_DIGITS);
    return 0;
}

/* The part of the store URL s3://BUCKET/PREFIX that listed keys start with. */
static char *key_prefix(ss_store *store)
{
    const char *u = ss_store_url(store), *p;
    char *r = NULL;
    if (strncmp(u, "s3://", 5) || !(p = strchr(u + 5, '/'))) return strdup("");
    p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == '/')
        n--;
    if (asprintf(&r, "%.*s%s", (int)n, p, n ? "/" : "") < 0) r = NULL;
    return r;
}

static ss_rc add_url(json_t *urls, ss_store *store, ss_presign_op op, const char *key,
                     const char *after, unsigned expires, ld_outcome *out)
{
    static const ss_sigv4_header inm = {"if-none-match", "*"};
    char *url = NULL;
    json_t *o = NULL;
    ss_rc rc = ss_store_presign(store, op, key, after, op == SS_PRESIGN_PUT ? &inm : NULL,
                                op == SS_PRESIGN_PUT ? 1 : 0, expires, &url, &out->err);
    if (rc) {
        out->why = LD_WHY_INTERNAL;
        return rc;
    }
    if (op == SS_PRESIGN_LIST)
        o = json_pack("{s:s, s:s, s:s, s:s}", "prefix", key, "start_after", after, "method", "GET",
                      "url", url);
    else if (op == SS_PRESIGN_PUT)
        o = json_pack("{s:s, s:s, s:s, s:{s:s}}", "key", key, "method", "PUT", "url", url,
                      "headers", "if-none-match", "*");
    else
        o = json_pack("{s:s, s:s, s:s}", "key", key, "method", "GET", "url", url);
    free(url);
    if (!o || json_array_append_new(urls, o)) {
        out->why = LD_WHY_INTERNAL;
        return ss_fail(&out->err, SS_ERR_NOMEM, "presign: out of memory");
    }
    return SS_OK;
}

ss_rc ld_presign(ld_leases *l, const ld_presign_limits *lim, const ld_device *dev, const char *repo,
                 json_t *body, json_t **ret, ld_outcome *out)
{
    json_t *urls = NULL, *res = NULL;
    ld_body_presign req;
    ld_outcome refused;
    uint64_t seq = 0, head = 0;
    int64_t remaining_ms = 0;
    unsigned expires = lim->get_s;
    char *kp = NULL;
    ss_store *store;
    ss_rc rc, body_rc = ld_body_parse_presign(body, &req, &refused);

    *ret = NULL;
    memset(out, 0, sizeof *out);
    /* Who may do what comes before what the body says (PROTOCOL.md, Errors). */
    rc = ld_lease_access(l, dev, repo, req.put, out);
    if (rc) return rc;
    if (body_rc) {
        *out = refused;
        return body_rc;
    }
    store = ld_leases_store(l, repo);
    urls = json_array();
    kp = key_prefix(store);
    if (!urls || !kp) {
        rc = ss_fail(&out->err, SS_ERR_NOMEM, "presign: out of memory");
        out->why = LD_WHY_INTERNAL;
        goto fail;
    }
    if (req.op == SS_PRESIGN_LIST) {
        rc = add_url(urls, store, SS_PRESIGN_LIST, req.prefix, req.start_after, expires, out);
        if (rc) goto fail;
    } else {
        if (req.put) {
            rc = ld_lease_begin_put(l, dev, repo, req.lease_id, req.fencing, &seq, &head,
                                    &remaining_ms, out);
            if (rc) goto fail;
            /* Invariant 4: a URL never outlives the lease that allowed it. */
            if (remaining_ms < 1000) {
                out->why = LD_WHY_STALE_LEASE;
                rc = ss_fail(&out->err, SS_ERR_CONFLICT,
                             "lease %.40s expires in under a second: renew it first", req.lease_id);
                goto fail;
            }
            expires = (unsigned)(remaining_ms / 1000);
            if (expires > lim->put_max_s) expires = lim->put_max_s;
            for (size_t i = 0; i < req.n_keys; i++) {
                const char *k = ld_body_presign_key(&req, i);
                uint64_t ks = key_seq(k);
                if (ks && ks != seq && ld_put_key_ok(k, ks - 1)) {
                    /* Well formed, for another sequence: the client's head is stale. */
                    out->head = head;
                    rc = bad(out, LD_WHY_BAD_SEQ,
                             "presign: %.200s is not for sequence %" PRIu64 " (head is %" PRIu64
                             "); pull and rebuild",
                             k, seq, head);
                    goto fail;
                }
                if (!ld_put_key_ok(k, head)) {
                    rc = bad(out, LD_WHY_BAD_KEY,
                             "presign: the lease holder may create log/<head+1>, "
                             "data/<head+1>-<16 hex>, checkpoints/<seq <= head>, keys/<16 hex>, "
                             "epochs/<10 digits> and config, not '%.200s'",
                             k);
                    goto fail;
                }
            }
        }
        for (size_t i = 0; i < req.n_keys; i++) {
            rc = add_url(urls, store, req.op, ld_body_presign_key(&req, i), NULL, expires, out);
            if (rc) goto fail;
        }
    }
    res = json_pack("{s:s, s:I, s:s, s:o}", "op", req.op_name, "expires_in", (json_int_t)expires,
                    "key_prefix", kp, "urls", urls);
    urls = NULL; /* json_pack's "o" took it, even on failure */
    if (res && req.put &&
        (json_object_set_new(res, "seq", json_integer((json_int_t)seq)) ||
         json_object_set_new(res, "head", json_integer((json_int_t)head)))) {
        json_decref(res);
        res = NULL;
    }
    if (!res) {
        rc = ss_fail(&out->err, SS_ERR_NOMEM, "presign: out of memory");
        out->why = LD_WHY_INTERNAL;
        goto fail;
    }
    free(kp);
    *ret = res;
    return SS_OK;
fail:
    json_decref(urls);
    free(kp);
    return rc;
}
