/*
 * sigv4: owns AWS Signature V4 for s3store: canonicalisation of the query
 * and headers, the canonical request, the string to sign, the signing-key
 * derivation, and the Authorization header or presigned query built from
 * them.
 *
 * Every stage lands in ss_sigv4_parts, not only the signature, so the tests
 * can compare each one with the AWS vectors and a 403 can be debugged by
 * diffing the canonical request with the one the server reports.
 */
#include "sigv4.h"
#include "array.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

/* Growable string; the out-of-memory flag is sticky so builders check once, at sb_take. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (n > SIZE_MAX / 4 - b->len || SS_ARRAY_GROW(b->p, b->len + n + 1, b->cap)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static void sb_cat(sbuf *b, ...) __attribute__((sentinel));
static void sb_cat(sbuf *b, ...)
{
    va_list ap;
    va_start(ap, b);
    for (const char *s; (s = va_arg(ap, const char *));)
        sb_add(b, s);
    va_end(ap);
}

/* Hands the string over; NULL when an append ran out of memory. */
static char *sb_take(sbuf *b)
{
    sb_addn(b, "", 0); /* an empty result is still a string, not NULL */
    char *p = b->oom ? NULL : b->p;
    if (!p) free(b->p);
    *b = (sbuf){0};
    return p;
}

static ss_rc nomem(ss_err *err)
{
    return ss_fail(err, SS_ERR_NOMEM, "sigv4: out of memory");
}

/* ASCII only: isalnum() would follow the locale, the signature must not. */
static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void sb_add_encoded(sbuf *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            sb_addn(b, s + i, 1);
            continue;
        }
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        sb_addn(b, esc, 3);
    }
}

char *ss_sigv4_uri_encode(const char *s, int keep_slash)
{
    sbuf b = {0};
    if (!s) return NULL;
    sb_add_encoded(&b, s, strlen(s), keep_slash);
    return sb_take(&b);
}

void ss_sigv4_sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(md, len ? buf : (const void *)"", len);
    sodium_bin2hex(out, 65, md, sizeof md);
}

/* ---- canonical query ---- */

typedef struct qparam {
    char *key, *value; /* both in canonical (encoded) form */
} qparam;

typedef struct qlist {
    qparam *v;
    size_t n, cap;
} qlist;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/*
 * Decode then re-encode, so "%7e", "%7E" and "~" all sign as "~": S3 decodes
 * what it receives and encodes it again before comparing signatures.
 * Our own parameters are plain values and are only encoded (decode = 0).
 */
static ss_rc canonical_component(const char *s, size_t n, int decode, char **ret, ss_err *err)
{
    sbuf b = {0};
    ss_rc rc = SS_OK;

    *ret = NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (decode && c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                rc = ss_fail(err, SS_ERR_INVALID, "sigv4: bad %%-escape in query: %.*s", (int)n, s);
                goto fail;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        sb_add_encoded(&b, &c, 1, 0);
    }
    *ret = sb_take(&b);
    return *ret ? SS_OK : nomem(err);
fail:
    free(b.p);
    return rc;
}

/* One allocation up front: a raw query holds at most one parameter per '&', plus one. */
static ss_rc qlist_init(qlist *q, const char *raw, size_t extra, ss_err *err)
{
    size_t cap = extra + 1;
    for (const char *s = raw; s && *s; s++)
        cap += *s == '&';
    *q = (qlist){0};
    q->v = calloc(cap, sizeof *q->v);
    if (!q->v) return nomem(err);
    q->cap = cap;
    return SS_OK;
}

static void qlist_free(qlist *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[i].key);
        free(q->v[i].value);
    }
    free(q->v);
    *q = (qlist){0};
}

static ss_rc qlist_push(qlist *q, const char *key, size_t key_len, const char *value,
                        size_t value_len, int decode, ss_err *err)
{
    qparam p = {NULL, NULL};
    ss_rc rc;

    if (q->n == q->cap) return ss_fail(err, SS_ERR_INVALID, "sigv4: too many query parameters");
    rc = canonical_component(key, key_len, decode, &p.key, err);
    if (rc != SS_OK) goto fail;
    rc = canonical_component(value, value_len, decode, &p.value, err);
    if (rc != SS_OK) goto fail;
    q->v[q->n++] = p;
    return SS_OK;
fail:
    free(p.key);
    free(p.value);
    return rc;
}

/* "key" alone signs as "key=", as S3 does; "a&&b" has an empty pair, dropped. */
static ss_rc qlist_parse(qlist *q, const char *raw, ss_err *err)
{
    for (const char *s = raw; s && *s;) {
        size_t n = strcspn(s, "&");
        if (n > 0) {
            const char *eq = memchr(s, '=', n);
            const char *value = eq ? eq + 1 : s + n;
            ss_rc rc =
                qlist_push(q, s, eq ? (size_t)(eq - s) : n, value, (size_t)(s + n - value), 1, err);
            if (rc != SS_OK) return rc;
        }
        s += n + (s[n] == '&');
    }
    return SS_OK;
}

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* Keys sort in their encoded form: "%E1..." comes before "Param", as in the vectors. */
static char *qlist_render(qlist *q)
{
    sbuf b = {0};
    qsort(q->v, q->n, sizeof *q->v, qparam_cmp);
    for (size_t i = 0; i < q->n; i++)
        sb_cat(&b, i ? "&" : "", q->v[i].key, "=", q->v[i].value, (char *)NULL);
    return sb_take(&b);
}

/* The presign parameters are ours; a caller's copy would be signed twice and mean nothing. */
static ss_rc qlist_check_reserved(const qlist *q, ss_err *err)
{
    static const char *const reserved[] = {
        "X-Amz-Algorithm",     "X-Amz-Credential",     "X-Amz-Date",      "X-Amz-Expires",
        "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature",
    };
    for (size_t i = 0; i < q->n; i++) {
        for (size_t j = 0; j < sizeof reserved / sizeof *reserved; j++) {
            if (strcasecmp(q->v[i].key, reserved[j]) == 0)
                return ss_fail(err, SS_ERR_INVALID, "sigv4: query already has %s", reserved[j]);
        }
    }
    return SS_OK;
}

/* extra: key, value pairs ending with NULL; non-NULL means presigning. */
static ss_rc canonical_query(const char *raw, const char *const *extra, char **ret, ss_err *err)
{
    qlist q = {0};
    size_t n_extra = 0;
    ss_rc rc;

    *ret = NULL;
    while (extra && extra[2 * n_extra])
        n_extra++;
    rc = qlist_init(&q, raw, n_extra, err);
    if (rc != SS_OK) goto fail;
    rc = qlist_parse(&q, raw, err);
    if (rc != SS_OK) goto fail;
    if (extra) rc = qlist_check_reserved(&q, err);
    if (rc != SS_OK) goto fail;
    for (size_t i = 0; i < n_extra; i++) {
        const char *k = extra[2 * i], *v = extra[2 * i + 1];
        rc = qlist_push(&q, k, strlen(k), v, strlen(v), 0, err);
        if (rc != SS_OK) goto fail;
    }
    *ret = qlist_render(&q);
    rc = *ret ? SS_OK : nomem(err);
fail:
    qlist_free(&q);
    return rc;
}

/* ---- canonical headers ---- */

typedef struct hentry {
    char *name;  /* lower-case */
    char *value; /* trimmed, whitespace runs collapsed */
    size_t seq;  /* position given, so duplicates combine in the caller's order */
} hentry;

typedef struct hlist {
    hentry *v;
    size_t n, cap;
} hlist;

/* CR and LF count too: a folded value (obs-fold) signs as its unfolded self. */
static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void sb_add_trimmed(sbuf *b, const char *v)
{
    int started = 0, gap = 0;
    for (; *v; v++) {
        if (is_ws(*v)) {
            gap = started;
            continue;
        }
        if (gap) sb_addn(b, " ", 1);
        sb_addn(b, v, 1);
        started = 1;
        gap = 0;
    }
}

/* RFC 9110 token characters: anything else cannot be a header name on the wire. */
static int is_tchar(unsigned char c)
{
    return is_unreserved(c) || (c && strchr("!#$%&'*+^`|", c));
}

static ss_rc hlist_init(hlist *h, size_t cap, ss_err *err)
{
    *h = (hlist){0};
    h->v = calloc(cap, sizeof *h->v);
    if (!h->v) return nomem(err);
    h->cap = cap;
    return SS_OK;
}

static void hlist_free(hlist *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].name);
        free(h->v[i].value);
    }
    free(h->v);
    *h = (hlist){0};
}

static ss_rc hlist_push(hlist *h, const char *name, const char *value, ss_err *err)
{
    hentry e = {NULL, NULL, h->n};
    sbuf b = {0};
    ss_rc rc = SS_OK;

    if (!name || !*name || !value || h->n == h->cap) {
        rc = ss_fail(err, SS_ERR_INVALID, "sigv4: bad header %s", name ? name : "(null)");
        goto fail;
    }
    for (const char *s = name; *s; s++) {
        if (!is_tchar((unsigned char)*s)) {
            rc = ss_fail(err, SS_ERR_INVALID, "sigv4: bad header name '%s'", name);
            goto fail;
        }
    }
    e.name = strdup(name);
    sb_add_trimmed(&b, value);
    e.value = sb_take(&b);
    if (!e.name || !e.value) {
        rc = nomem(err);
        goto fail;
    }
    for (char *s = e.name; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
    h->v[h->n++] = e;
    return SS_OK;
fail:
    free(e.name);
    free(e.value);
    return rc;
}

/* The signer adds these itself; a second copy would sign "a,b" while the wire carries two. */
static ss_rc check_user_header(const char *name, ss_err *err)
{
    static const char *const reserved[] = {"host", "x-amz-date", "x-amz-security-token"};
    for (size_t i = 0; name && i < sizeof reserved / sizeof *reserved; i++) {
        if (strcasecmp(name, reserved[i]) == 0)
            return ss_fail(err, SS_ERR_INVALID, "sigv4: header %s is set by the signer", name);
    }
    return SS_OK;
}

static int hentry_cmp(const void *a, const void *b)
{
    const hentry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Canonical header lines (each ending in '\n') and the ';'-joined signed header names. */
static ss_rc hlist_render(hlist *h, char **ret_canonical, char **ret_signed, ss_err *err)
{
    sbuf c = {0}, s = {0};

    *ret_canonical = NULL;
    *ret_signed = NULL;
    qsort(h->v, h->n, sizeof *h->v, hentry_cmp);
    for (size_t i = 0; i < h->n; i++) {
        if (i > 0 && strcmp(h->v[i].name, h->v[i - 1].name) == 0) {
            sb_cat(&c, ",", h->v[i].value, (char *)NULL);
            continue;
        }
        sb_cat(&c, i ? "\n" : "", h->v[i].name, ":", h->v[i].value, (char *)NULL);
        sb_cat(&s, i ? ";" : "", h->v[i].name, (char *)NULL);
    }
    sb_add(&c, "\n");
    char *canonical = sb_take(&c), *signed_names = sb_take(&s);
    if (!canonical || !signed_names) {
        free(canonical);
        free(signed_names);
        return nomem(err);
    }
    *ret_canonical = canonical;
    *ret_signed = signed_names;
    return SS_OK;
}

/* ---- signing ---- */

static void hmac(const unsigned char *key, size_t key_len, const char *msg,
                 unsigned char out[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, strlen(msg));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st); /* the state holds the key's padded copies */
}

/*
 * The secret only ever keys the first HMAC; the key that signs is scoped to
 * one day, region and service, so it is wiped here and never leaves.
 * hmac() consumes its key in init, before final writes, so chaining in place is safe.
 */
static ss_rc compute_signature(const ss_sigv4_creds *creds, const char *date, const char *sts,
                               char out[65], ss_err *err)
{
    size_t k0_len = 4 + strlen(creds->secret_key);
    unsigned char *k0 = NULL;
    unsigned char key[crypto_auth_hmacsha256_BYTES];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    ss_rc rc = SS_OK;

    out[0] = '\0';
    k0 = malloc(k0_len);
    if (!k0) {
        rc = nomem(err);
        goto fail;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, creds->secret_key, k0_len - 4);
    hmac(k0, k0_len, date, key);
    hmac(key, sizeof key, creds->region, key);
    hmac(key, sizeof key, creds->service, key);
    hmac(key, sizeof key, "aws4_request", key);
    hmac(key, sizeof key, sts, mac);
    sodium_bin2hex(out, 65, mac, sizeof mac);
fail:
    if (k0) sodium_memzero(k0, k0_len);
    free(k0);
    sodium_memzero(key, sizeof key);
    return rc;
}

static int nonempty(const char *s)
{
    return s && *s;
}

static ss_rc check_args(const ss_sigv4_creds *creds, const ss_sigv4_req *req, ss_err *err)
{
    if (!creds || !nonempty(creds->access_key) || !nonempty(creds->secret_key) ||
        !nonempty(creds->region) || !nonempty(creds->service))
        return ss_fail(err, SS_ERR_INVALID, "sigv4: incomplete credentials");
    if (!req || !nonempty(req->method) || !nonempty(req->host) || !nonempty(req->payload_hash) ||
        (req->n_headers && !req->headers))
        return ss_fail(err, SS_ERR_INVALID, "sigv4: incomplete request");
    /* Both S3 address styles start the path with '/'; anything else is a caller bug. */
    if (!req->path || req->path[0] != '/')
        return ss_fail(err, SS_ERR_INVALID, "sigv4: path must start with '/': %s",
                       req->path ? req->path : "(null)");
    return SS_OK;
}

static ss_rc format_amz_date(time_t now, char out[17], ss_err *err)
{
    struct tm tm;
    /* Exactly 16 characters, or the year has no 4 digits and the date is not ISO 8601 basic. */
    if (!gmtime_r(&now, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        out[0] = '\0';
        return ss_fail(err, SS_ERR_INVALID, "sigv4: time %lld out of range", (long long)now);
    }
    return SS_OK;
}

/*
 * Shared first steps of both modes: validate, date the request, build the
 * credential scope and the headers every signature covers (host, then the caller's).
 */
static ss_rc prepare(const ss_sigv4_creds *creds, const ss_sigv4_req *req, ss_sigv4_parts *p,
                     char **ret_scope, hlist *h, ss_err *err)
{
    char date[9];
    sbuf b = {0};
    ss_rc rc;

    *ret_scope = NULL;
    rc = check_args(creds, req, err);
    if (rc != SS_OK) return rc;
    rc = format_amz_date(req->now, p->amz_date, err);
    if (rc != SS_OK) return rc;
    memcpy(date, p->amz_date, 8);
    date[8] = '\0';
    sb_cat(&b, date, "/", creds->region, "/", creds->service, "/aws4_request", (char *)NULL);
    rc = hlist_init(h, req->n_headers + 3, err);
    if (rc != SS_OK) goto fail;
    rc = hlist_push(h, "host", req->host, err);
    for (size_t i = 0; rc == SS_OK && i < req->n_headers; i++) {
        rc = check_user_header(req->headers[i].name, err);
        if (rc == SS_OK) rc = hlist_push(h, req->headers[i].name, req->headers[i].value, err);
    }
    if (rc != SS_OK) goto fail;
    *ret_scope = sb_take(&b);
    return *ret_scope ? SS_OK : nomem(err);
fail:
    free(b.p);
    return rc;
}

/* Canonical request, string to sign and signature: what both modes share after canonicalising. */
static ss_rc sign_canonical(const ss_sigv4_creds *creds, const ss_sigv4_req *req, const char *scope,
                            const char *query, const char *headers, const char *signed_headers,
                            ss_sigv4_parts *p, ss_err *err)
{
    char date[9], hash[65];
    sbuf b = {0};

    sb_cat(&b, req->method, "\n", req->path, "\n", query, "\n", headers, "\n", signed_headers, "\n",
           req->payload_hash, (char *)NULL);
    p->canonical_request = sb_take(&b);
    if (!p->canonical_request) return nomem(err);
    ss_sigv4_sha256_hex(p->canonical_request, strlen(p->canonical_request), hash);
    sb_cat(&b, ALGORITHM "\n", p->amz_date, "\n", scope, "\n", hash, (char *)NULL);
    p->string_to_sign = sb_take(&b);
    if (!p->string_to_sign) return nomem(err);
    memcpy(date, p->amz_date, 8);
    date[8] = '\0';
    return compute_signature(creds, date, p->string_to_sign, p->signature, err);
}

ss_rc ss_sigv4_sign(const ss_sigv4_creds *creds, const ss_sigv4_req *req, ss_sigv4_parts *ret_parts,
                    ss_err *err)
{
    ss_sigv4_parts p = {0};
    hlist h = {0};
    char *scope = NULL, *query = NULL, *headers = NULL, *signed_headers = NULL;
    sbuf b = {0};
    ss_rc rc;

    if (!ret_parts) return ss_fail(err, SS_ERR_INVALID, "sigv4: no output");
    *ret_parts = (ss_sigv4_parts){0};
    rc = prepare(creds, req, &p, &scope, &h, err);
    if (rc != SS_OK) goto fail;
    rc = hlist_push(&h, "x-amz-date", p.amz_date, err);
    if (rc == SS_OK && creds->session_token)
        rc = hlist_push(&h, "x-amz-security-token", creds->session_token, err);
    if (rc == SS_OK) rc = hlist_render(&h, &headers, &signed_headers, err);
    if (rc == SS_OK) rc = canonical_query(req->query, NULL, &query, err);
    if (rc == SS_OK)
        rc = sign_canonical(creds, req, scope, query, headers, signed_headers, &p, err);
    if (rc != SS_OK) goto fail;
    sb_cat(&b, ALGORITHM " Credential=", creds->access_key, "/", scope,
           ", SignedHeaders=", signed_headers, ", Signature=", p.signature, (char *)NULL);
    p.authorization = sb_take(&b);
    if (!p.authorization) {
        rc = nomem(err);
        goto fail;
    }
    *ret_parts = p;
    p = (ss_sigv4_parts){0};
fail:
    ss_sigv4_parts_clear(&p);
    hlist_free(&h);
    free(scope);
    free(query);
    free(headers);
    free(signed_headers);
    return rc;
}

/* The X-Amz-* parameters that make a query authenticate itself, merged into the caller's. */
static ss_rc presign_query(const ss_sigv4_creds *creds, const ss_sigv4_req *req, const char *scope,
                           const char *amz_date, const char *signed_headers, unsigned expires,
                           char **ret, ss_err *err)
{
    char *credential = NULL;
    char expires_s[16];
    sbuf b = {0};
    ss_rc rc;

    *ret = NULL;
    sb_cat(&b, creds->access_key, "/", scope, (char *)NULL);
    credential = sb_take(&b);
    if (!credential) return nomem(err);
    snprintf(expires_s, sizeof expires_s, "%u", expires);
    const char *const extra[] = {
        "X-Amz-Algorithm",
        ALGORITHM,
        "X-Amz-Credential",
        credential,
        "X-Amz-Date",
        amz_date,
        "X-Amz-Expires",
        expires_s,
        "X-Amz-SignedHeaders",
        signed_headers,
        /* last, so that without a token the list simply ends one pair early */
        creds->session_token ? "X-Amz-Security-Token" : NULL,
        creds->session_token,
        NULL,
    };
    rc = canonical_query(req->query, extra, ret, err);
    free(credential);
    return rc;
}

ss_rc ss_sigv4_presign(const ss_sigv4_creds *creds, const ss_sigv4_req *req, unsigned expires,
                       ss_sigv4_parts *ret_parts, ss_err *err)
{
    ss_sigv4_parts p = {0};
    hlist h = {0};
    char *scope = NULL, *query = NULL, *headers = NULL, *signed_headers = NULL;
    sbuf b = {0};
    ss_rc rc;

    if (!ret_parts) return ss_fail(err, SS_ERR_INVALID, "sigv4: no output");
    *ret_parts = (ss_sigv4_parts){0};
    if (expires < 1 || expires > SS_SIGV4_MAX_EXPIRES)
        return ss_fail(err, SS_ERR_INVALID, "sigv4: expiry %u s not in 1..%d", expires,
                       SS_SIGV4_MAX_EXPIRES);
    rc = prepare(creds, req, &p, &scope, &h, err);
    if (rc == SS_OK) rc = hlist_render(&h, &headers, &signed_headers, err);
    if (rc == SS_OK)
        rc = presign_query(creds, req, scope, p.amz_date, signed_headers, expires, &query, err);
    if (rc == SS_OK)
        rc = sign_canonical(creds, req, scope, query, headers, signed_headers, &p, err);
    if (rc != SS_OK) goto fail;
    sb_cat(&b, query, "&X-Amz-Signature=", p.signature, (char *)NULL);
    p.query = sb_take(&b);
    if (!p.query) {
        rc = nomem(err);
        goto fail;
    }
    *ret_parts = p;
    p = (ss_sigv4_parts){0};
fail:
    ss_sigv4_parts_clear(&p);
    hlist_free(&h);
    free(scope);
    free(query);
    free(headers);
    free(signed_headers);
    return rc;
}

void ss_sigv4_parts_clear(ss_sigv4_parts *parts)
{
    if (!parts) return;
    free(parts->canonical_request);
    free(parts->string_to_sign);
    free(parts->authorization);
    free(parts->query);
    *parts = (ss_sigv4_parts){0};
}
