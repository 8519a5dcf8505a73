/*
 * store_s3: the s3://BUCKET/PREFIX backend. Maps store operations to S3
 * REST requests (PUT, GET with Range, HEAD, DELETE, ListObjectsV2), signs
 * each attempt with SigV4 (UNSIGNED-PAYLOAD: the AEAD above already guards
 * every body) and runs them on the s3_http engine.
 */
#include "aws_profile.h"
#include "s3_delete.h"
#include "s3_http.h"
#include "store_impl.h"
#include "ss_buf.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s3_store {
    char *scheme_host; /* "http://127.0.0.1:7480" or "https://bucket.s3.amazonaws.com" */
    char *host;        /* Host header value */
    char *bucket;
    char *prefix; /* "" or ending in '/' */
    int path_style;
    char *access_key, *secret_key, *session_token, *region;
    time_t (*clock)(void);
    s3_http *http;
    int accepted; /* the store took a request signed with these credentials (auth_refusal) */
} s3_store;

#define S3_EXTRA_MAX 3 /* s3_call's further headers, at most */

/* One request in flight, with what its signer needs. */
typedef struct s3_call {
    s3_req req;
    s3_store *s3;
    char *path;  /* encoded, as sent */
    char *query; /* encoded, as sent, or NULL */
    unsigned flags;
    const char *if_match;         /* compare-and-swap: the ETag, unquoted; NULL: none */
    const char *payload_hash;     /* hex SHA-256 of the body, signed; NULL: unsigned */
    const ss_sigv4_header *extra; /* further headers, sent and signed */
    size_t n_extra;
    const void *put_buf; /* whole body, when known: lets an ambiguous 412 be checked */
    ss_xfer_dst dst;     /* parallel transfer this call serves (dst.op), or NULL */
    ss_mem_reader mem;
    ss_store_reader rd;
} s3_call;

static s3_store *s3_of(ss_store *s)
{
    return s->impl;
}

static char *env_or(const char *v, const char *name1, const char *name2)
{
    if (v && *v) return strdup(v);
    if (name1 && getenv(name1) && *getenv(name1)) return strdup(getenv(name1));
    if (name2 && getenv(name2) && *getenv(name2)) return strdup(getenv(name2));
    return NULL;
}

static void s3_close(ss_store *s)
{
    s3_store *s3 = s3_of(s);
    if (!s3) return;
    s3_http_free(s3->http);
    if (s3->secret_key) sodium_memzero(s3->secret_key, strlen(s3->secret_key));
    if (s3->session_token) sodium_memzero(s3->session_token, strlen(s3->session_token));
    free(s3->scheme_host);
    free(s3->host);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->access_key);
    free(s3->secret_key);
    free(s3->session_token);
    free(s3->region);
    free(s3);
    s->impl = NULL;
}

/* Split "BUCKET/PREFIX" into bucket and a prefix that is "" or ends in '/'. */
static ss_rc parse_location(ss_store *s, s3_store *s3, const char *location, ss_err *err)
{
    const char *slash = strchr(location, '/');
    size_t blen = slash ? (size_t)(slash - location) : strlen(location);
    const char *pfx = slash ? slash + 1 : "";
    size_t plen = strlen(pfx);
    if (blen < 3 || blen > 63)
        return ss_fail(err, SS_ERR_INVALID,
                       "store URL '%s': bucket name must be 3 to 63 characters", s->url);
    while (plen && pfx[plen - 1] == '/')
        plen--;
    s3->bucket = strndup(location, blen);
    if (!s3->bucket || asprintf(&s3->prefix, "%.*s%s", (int)plen, pfx, plen ? "/" : "") < 0) {
        s3->prefix = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
    }
    return SS_OK;
}

static ss_rc parse_endpoint(ss_store *s, s3_store *s3, const ss_store_opts *opts,
                            const ss_aws_profile *prof, ss_err *err)
{
    char *ep = env_or(opts->endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
    if (!ep && prof->endpoint_url && *prof->endpoint_url) ep = strdup(prof->endpoint_url);
    const char *auth, *end;
    ss_rc rc = SS_OK;
    /* Custom endpoints (RGW, MinIO) rarely have wildcard DNS: path-style there. */
    int vhost = opts->addressing == SS_ADDR_VHOST || (opts->addressing == SS_ADDR_AUTO && !ep);

    if (!ep && asprintf(&ep, "https://s3.%s.amazonaws.com", s3->region) < 0) ep = NULL;
    if (!ep) return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
    auth = strstr(ep, "://");
    if (!auth || (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)) || !auth[3]) {
        rc = ss_fail(err, SS_ERR_INVALID, "endpoint '%s': expected http(s)://HOST[:PORT]", ep);
        goto out;
    }
    auth += 3;
    end = auth + strcspn(auth, "/?#");
    s3->path_style = !vhost;
    if (vhost)
        rc = asprintf(&s3->host, "%s.%.*s", s3->bucket, (int)(end - auth), auth) < 0;
    else
        s3->host = strndup(auth, (size_t)(end - auth));
    if (rc || !s3->host ||
        asprintf(&s3->scheme_host, "%.*s%s", (int)(auth - ep), ep, s3->host) < 0) {
        s3->scheme_host = NULL;
        rc = ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
    }
out:
    free(ep);
    return rc;
}

/*
 * Keys as the AWS CLI picks them: a profile named by the caller (as
 * --profile), else AWS_ACCESS_KEY_ID and friends, else the profile
 * (AWS_PROFILE or default); the token comes from the same source as the
 * keys. A field the caller gives (opts) beats its source's.
 */
static ss_rc pick_credentials(ss_store *s, s3_store *s3, const ss_store_opts *opts,
                              const ss_aws_profile *prof, ss_err *err)
{
    int named = opts->profile && *opts->profile;
    const char *env_key = getenv("AWS_ACCESS_KEY_ID");
    if (!named && env_key && *env_key) {
        s3->access_key = env_or(opts->access_key, "AWS_ACCESS_KEY_ID", NULL);
        s3->secret_key = env_or(opts->secret_key, "AWS_SECRET_ACCESS_KEY", NULL);
        s3->session_token = env_or(opts->session_token, "AWS_SESSION_TOKEN", NULL);
    } else if (prof->access_key || (opts->access_key && *opts->access_key)) {
        s3->access_key = env_or(opts->access_key, NULL, NULL);
        if (!s3->access_key) s3->access_key = env_or(prof->access_key, NULL, NULL);
        s3->secret_key = env_or(opts->secret_key, NULL, NULL);
        if (!s3->secret_key) s3->secret_key = env_or(prof->secret_key, NULL, NULL);
        s3->session_token = env_or(opts->session_token, NULL, NULL);
        if (!s3->session_token) s3->session_token = env_or(prof->session_token, NULL, NULL);
    } else if (prof->unsupported) {
        return ss_fail(err, SS_ERR_INVALID,
                       "store %s: AWS profile '%s' gets its credentials through %s, which s3sync "
                       "does not support; give the profile aws_access_key_id and "
                       "aws_secret_access_key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                       s->url, prof->name, prof->unsupported);
    }
    if (!s3->access_key || !s3->secret_key)
        return ss_fail(err, SS_ERR_INVALID,
                       "store %s: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                       "or put them in profile '%s' of ~/.aws/credentials (aws configure)",
                       s->url, prof->name);
    return SS_OK;
}

static ss_rc s3_open(ss_store *s, const char *location, const ss_store_opts *opts, ss_err *err)
{
    s3_store *s3 = calloc(1, sizeof *s3);
    ss_aws_profile prof = {0};
    ss_rc rc;
    if (!s3) return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
    s->impl = s3;
    s3->clock = opts->clock ? opts->clock : NULL;
    rc = ss_aws_profile_load(opts->profile, &prof, err); /* names the files */
    if (rc) goto fail;
    s3->region = env_or(opts->region, "AWS_REGION", "AWS_DEFAULT_REGION");
    if (!s3->region) s3->region = strdup(prof.region && *prof.region ? prof.region : "us-east-1");
    if (!s3->region) {
        rc = ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
        goto fail;
    }
    rc = pick_credentials(s, s3, opts, &prof, err);
    if (rc) goto fail;
    rc = parse_location(s, s3, location, err);
    if (rc) goto fail;
    rc = parse_endpoint(s, s3, opts, &prof, err);
    if (rc) goto fail;
    rc = s3_http_new(opts, &s->counts, &s3->http, err);
    if (rc) goto fail;
    ss_aws_profile_clear(&prof);
    return SS_OK;
fail:
    ss_aws_profile_clear(&prof);
    s3_close(s);
    return rc;
}

/* --- requests -------------------------------------------------------------- */

static ss_rc object_path(s3_store *s3, const char *key, int bucket_root, char **ret_path)
{
    char *full = NULL, *enc = NULL;
    *ret_path = NULL;
    if (asprintf(&full, "%s%s", bucket_root ? "" : s3->prefix, bucket_root ? "" : key) < 0)
        return SS_ERR_NOMEM;
    enc = ss_sigv4_uri_encode(full, 1);
    free(full);
    if (!enc) return SS_ERR_NOMEM;
    if (s3->path_style ? asprintf(ret_path, "/%s%s%s", s3->bucket, bucket_root ? "" : "/", enc) < 0
                       : asprintf(ret_path, "/%s", enc) < 0)
        *ret_path = NULL;
    free(enc);
    return *ret_path ? SS_OK : SS_ERR_NOMEM;
}

static time_t sign_time(s3_store *s3)
{
    return s3->clock ? s3->clock() : time(NULL);
}

static ss_rc sign_call(void *ctx, s3_req *r, char **ret_url, struct curl_slist **ret_headers)
{
    s3_call *c = ctx;
    s3_store *s3 = c->s3;
    ss_sigv4_creds cr = {s3->access_key, s3->secret_key, s3->session_token, s3->region, "s3"};
    const char *payload = c->payload_hash ? c->payload_hash : SS_SIGV4_UNSIGNED;
    ss_sigv4_header h[3 + S3_EXTRA_MAX] = {{"x-amz-content-sha256", payload}};
    size_t n = 1;
    if (c->flags & SS_PUT_CREATE_ONLY) h[n++] = (ss_sigv4_header){"if-none-match", "*"};
    /* Unquoted, against RFC 9110: Ceph RGW (16, our test store) matches If-Match only
     * against the bare ETag and answers 412 to the quoted current one; AWS S3 and MinIO
     * take either form. */
    if (c->if_match) h[n++] = (ss_sigv4_header){"if-match", c->if_match};
    for (size_t i = 0; i < c->n_extra && i < S3_EXTRA_MAX; i++)
        h[n++] = c->extra[i];
    ss_sigv4_req req = {r->method, s3->host, c->path, c->query, h, n, payload, sign_time(s3)};
    ss_sigv4_parts p;
    struct curl_slist *l = NULL;
    ss_rc rc = ss_sigv4_sign(&cr, &req, &p, &r->err);
    if (rc) return rc;
    if (asprintf(ret_url, "%s%s%s%s", s3->scheme_host, c->path, c->query ? "?" : "",
                 c->query ? c->query : "") < 0) {
        *ret_url = NULL;
        rc = SS_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < req.n_headers; i++) {
        rc = s3_header_add(&l, h[i].name, h[i].value);
        if (rc) goto fail;
    }
    rc = s3_header_add(&l, "Host", s3->host);
    if (rc) goto fail;
    rc = s3_header_add(&l, "x-amz-date", p.amz_date);
    if (rc) goto fail;
    rc = s3_header_add(&l, "Authorization", p.authorization);
    if (rc) goto fail;
    if (s3->session_token) {
        rc = s3_header_add(&l, "x-amz-security-token", s3->session_token);
        if (rc) goto fail;
    }
    ss_sigv4_parts_clear(&p);
    *ret_headers = l;
    return SS_OK;
fail:
    ss_sigv4_parts_clear(&p);
    curl_slist_free_all(l);
    return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: out of memory", r->op, r->key);
}

static void call_free(s3_call *c)
{
    if (!c) return;
    s3_req_cleanup(&c->req);
    free(c->path);
    free(c->query);
    free(c);
}

static s3_call *call_new(ss_store *s, const char *method, const char *op, const char *key)
{
    s3_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->s3 = s3_of(s);
    c->req.method = method;
    c->req.op = op;
    c->req.key = key;
    c->req.sign = sign_call;
    c->req.sign_ctx = c;
    c->req.user = c;
    if (object_path(c->s3, key, 0, &c->path)) {
        free(c);
        return NULL;
    }
    return c;
}

/* S3 error codes that say the credentials are not (or no longer) good, whatever the request. */
static int credential_code(const char *code)
{
    static const char *const codes[] = {
        "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "TokenRefreshRequired",
        "InvalidToken",       "RequestExpired",        "UserSuspended"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (!strcmp(code, codes[i])) return 1;
    return 0;
}

/*
 * A finished request's rc, judged by what the credentials did before (README
 * "Exit codes"). Credentials the store took earlier in this run and refuses
 * now expired (a session token), were rotated or removed, or their user
 * suspended, while the command ran: SS_ERR_TEMPORARY, so the next run, with
 * whatever credentials the environment then holds, does the work; nothing
 * was half done (a push's log object is written last). Refused from the
 * start, they are wrong (a bad secret, a stale token in the environment):
 * the refusal stands, exit 1, and a scheduled run says so every time rather
 * than passing for "try later". AccessDenied is a permission, not the
 * credentials: it stands too.
 */
static ss_rc auth_refusal(s3_store *s3, const s3_req *r, ss_rc rc, ss_err *err)
{
    if (r->status / 100 == 2 || r->status == 404 || r->status == 412 || r->status == 416)
        s3->accepted = 1; /* answered after the signature was checked */
    if (!rc || !s3->accepted || r->status < 400 || !credential_code(r->code)) return rc;
    if (err) {
        ss_err why = *err;
        ss_fail(err, SS_ERR_TEMPORARY,
                "%s (the credentials worked earlier in this run: expired, rotated or suspended "
                "since; try again with fresh ones)",
                why.msg);
    }
    return SS_ERR_TEMPORARY;
}

static ss_rc run_call(ss_store *s, s3_call *c, ss_err *err)
{
    ss_rc rc = s3_http_call(s3_of(s)->http, &c->req, err);
    return auth_refusal(s3_of(s), &c->req, rc, err);
}

/*
 * A compare-and-swap's refusal: 412, or 404 from a store that tells a missing
 * key so (AWS; RGW says 412): either way the key no longer holds the object
 * named, SS_ERR_CHANGED.
 */
static ss_rc if_match_refusal(const s3_call *c, ss_rc rc, ss_err *err)
{
    if (!c->if_match || (rc != SS_ERR_EXISTS && rc != SS_ERR_NOT_FOUND)) return rc;
    if (rc == SS_ERR_NOT_FOUND && strcmp(c->req.code, "NoSuchKey")) return rc; /* the bucket */
    return ss_fail(err, SS_ERR_CHANGED, "PUT %s: the object is not the one of ETag %s anymore",
                   c->req.key, c->if_match);
}

/* HEAD key: its size and ETag, and the identity the swap that wrote it gave (may be NULL). */
static ss_rc head_call(ss_store *s, const char *key, ss_store_stat *ret_stat,
                       char ret_write_id[S3_WRITE_ID_MAX], ss_err *err)
{
    s3_call *c = call_new(s, "HEAD", "HEAD", key);
    ss_rc rc;
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "HEAD %s: out of memory", key);
    rc = run_call(s, c, err);
    if (!rc) {
        ret_stat->size = c->req.content_length;
        memcpy(ret_stat->etag, c->req.etag, sizeof ret_stat->etag);
        if (ret_write_id) memcpy(ret_write_id, c->req.write_id, S3_WRITE_ID_MAX);
    }
    call_free(c);
    return rc;
}

/*
 * A swap refused (rc SS_ERR_CHANGED) after more than one attempt may have met its own
 * earlier attempt, whose answer was lost. The same bytes prove nothing here: another
 * writer deciding from the same read may have written them. The object's write identity
 * does: only ours carries write_id. Anything short of seeing it stays SS_ERR_CHANGED, which
 * never claims the swap, so a caller reading again decides again and hands nothing out
 * twice (at worst it skips the value its lost write took).
 */
static ss_rc swap_resolve(ss_store *s, const char *key, const char *write_id, ss_rc rc,
                          unsigned attempts, ss_store_stat *ret_stat)
{
    ss_store_stat now = {0};
    char seen[S3_WRITE_ID_MAX] = "";
    ss_err ignored;
    if (rc != SS_ERR_CHANGED || attempts < 2) return rc;
    if (head_call(s, key, &now, seen, &ignored) || strcmp(seen, write_id)) return rc;
    if (ret_stat) *ret_stat = now;
    return SS_OK;
}

static ss_rc s3_put(ss_store *s, const char *key, uint64_t len, const ss_store_reader *body,
                    const void *buf, unsigned flags, const char *if_match, ss_store_stat *ret_stat,
                    ss_err *err)
{
    s3_call *c = call_new(s, "PUT", "PUT", key);
    unsigned char id[(S3_WRITE_ID_MAX - 1) / 2];
    char write_id[S3_WRITE_ID_MAX];
    ss_sigv4_header tag = {S3_WRITE_ID_HEADER, write_id};
    ss_rc rc;
    unsigned attempts;
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "PUT %s: out of memory", key);
    c->flags = flags;
    c->if_match = if_match;
    if (if_match) {
        randombytes_buf(id, sizeof id);
        sodium_bin2hex(write_id, sizeof write_id, id, sizeof id);
        c->extra = &tag;
        c->n_extra = 1;
    }
    c->req.body = body;
    c->req.body_len = len;
    rc = run_call(s, c, err);
    rc = if_match_refusal(c, rc, err);
    attempts = c->req.attempts;
    if (!rc && ret_stat) s3_req_put_stat(&c->req, len, ret_stat);
    call_free(c);
    if (if_match) return swap_resolve(s, key, write_id, rc, attempts, ret_stat);
    return ss_store_resolve_412(s, key, buf, (size_t)len, rc, attempts, flags, err);
}

static ss_rc s3_get(ss_store *s, const char *key, uint64_t off, uint64_t len,
                    ss_store_write_fn write, void *ctx, ss_store_stat *ret_stat, ss_err *err)
{
    s3_call *c = NULL;
    ss_rc rc;
    if (len == 0) return SS_OK;
    c = call_new(s, "GET", "GET", key);
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "GET %s: out of memory", key);
    s3_req_get_range(&c->req, off, len, write, ctx);
    rc = run_call(s, c, err);
    if (!rc && ret_stat) memcpy(ret_stat->etag, c->req.etag, sizeof ret_stat->etag);
    call_free(c);
    return rc;
}

static ss_rc s3_head(ss_store *s, const char *key, ss_store_stat *ret_stat, ss_err *err)
{
    return head_call(s, key, ret_stat, NULL, err);
}

static ss_rc s3_del(ss_store *s, const char *key, ss_err *err)
{
    s3_call *c = call_new(s, "DELETE", "DELETE", key);
    ss_rc rc;
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "DELETE %s: out of memory", key);
    rc = run_call(s, c, err);
    call_free(c);
    return rc == SS_ERR_NOT_FOUND ? SS_OK : rc;
}

/*
 * Up to SS_DELETE_BATCH_MAX keys in one DeleteObjects. S3 demands an
 * integrity header on it (Content-MD5 or an x-amz-checksum-*): we send
 * x-amz-checksum-sha256 with x-amz-sdk-checksum-algorithm (libsodium has
 * SHA-256, nothing here has MD5) and sign the body's hash as
 * x-amz-content-sha256, so a store that checks neither checksum header
 * (Ceph RGW 16 ignores them) still refuses a body changed on the way by
 * its SigV4 check: the list of what to delete is never unsigned.
 */
static ss_rc delete_some(ss_store *s, const char *const *full, size_t n, ss_err *err)
{
    s3_store *s3 = s3_of(s);
    unsigned char sum[crypto_hash_sha256_BYTES];
    char hex[65],
        b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    ss_sigv4_header extra[3] = {{"x-amz-checksum-sha256", b64},
                                {"x-amz-sdk-checksum-algorithm", "SHA256"},
                                {"content-type", "application/xml"}};
    ss_buf body = {0}, answer = {0}; /* owned */
    s3_call *c = NULL;               /* owned */
    char *label = NULL;              /* owned: names the request in errors */
    ss_rc rc = s3_delete_body(full, n, &body, err);
    if (rc) return rc;
    if (asprintf(&label, "%s (and %zu more keys)", full[0] + strlen(s3->prefix), n - 1) < 0)
        label = NULL;
    crypto_hash_sha256(sum, body.p, body.len);
    ss_sigv4_sha256_hex(body.p, body.len, hex);
    sodium_bin2base64(b64, sizeof b64, sum, sizeof sum, sodium_base64_VARIANT_ORIGINAL);
    c = calloc(1, sizeof *c);
    if (!label || !c || object_path(s3, "", 1, &c->path) || !(c->query = strdup("delete"))) {
        rc = ss_fail(err, SS_ERR_NOMEM, "DELETE-BATCH: out of memory");
        goto out;
    }
    c->s3 = s3;
    c->payload_hash = hex;
    c->extra = extra;
    c->n_extra = sizeof extra / sizeof *extra;
    ss_mem_reader_init(&c->mem, body.p, body.len, &c->rd);
    c->req = (s3_req){.method = "POST",
                      .op = "DELETE-BATCH",
                      .key = label,
                      .body = &c->rd,
                      .body_len = body.len,
                      .sign = sign_call,
                      .sign_ctx = c,
                      .sink = ss_buf_sink,
                      .sink_ctx = &answer,
                      .whole_body = SS_CAP_DELETE_ANSWER};
    rc = run_call(s, c, err);
    if (rc) goto out;
    rc = s3_delete_check(&answer, full, n, strlen(s3->prefix), err);
out:
    call_free(c);
    free(label);
    ss_buf_free(&body);
    ss_buf_free(&answer);
    return rc;
}

/* The batch with the prefix on each key; a key XML cannot carry goes alone (DELETE /KEY). */
static ss_rc s3_del_batch(ss_store *s, const char *const *keys, size_t n, ss_err *err)
{
    s3_store *s3 = s3_of(s);
    char **full = calloc(n, sizeof *full); /* owned, each */
    size_t m = 0;
    ss_rc rc = SS_OK;
    if (!full) return ss_fail(err, SS_ERR_NOMEM, "DELETE-BATCH: out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (!s3_delete_key_ok(keys[i])) {
            rc = s3_del(s, keys[i], err);
            continue;
        }
        if (asprintf(&full[m], "%s%s", s3->prefix, keys[i]) < 0) {
            full[m] = NULL;
            rc = ss_fail(err, SS_ERR_NOMEM, "DELETE-BATCH: out of memory");
            break;
        }
        m++;
    }
    if (!rc && m) rc = delete_some(s, (const char *const *)full, m, err);
    for (size_t i = 0; i < m; i++)
        free(full[i]);
    free(full);
    return rc;
}

/* --- listing ----------------------------------------------------------------- */

static ss_rc list_query(const char *prefix, const char *after, const char *token, unsigned max_keys,
                        char **ret_q)
{
    char keys[32] = "";
    char *p = ss_sigv4_uri_encode(prefix, 0), *a = ss_sigv4_uri_encode(after, 0);
    char *t = token ? ss_sigv4_uri_encode(token, 0) : NULL;
    int r = -1;
    *ret_q = NULL;
    if (max_keys) snprintf(keys, sizeof keys, "&max-keys=%u", max_keys);
    if (p && a && (!token || t))
        r = asprintf(ret_q, "list-type=2%s&prefix=%s%s%s%s%s", keys, p,
                     *after ? "&start-after=" : "", *after ? a : "",
                     t ? "&continuation-token=" : "", t ? t : "");
    free(p);
    free(a);
    free(t);
    if (r < 0) *ret_q = NULL;
    return *ret_q ? SS_OK : SS_ERR_NOMEM;
}

/* One LIST page of full_prefix: after full_after, or at token when not NULL. */
static ss_rc list_one(ss_store *s, const char *prefix, const char *full_prefix,
                      const char *full_after, const char *token, ss_store_list_fn fn, void *ctx,
                      s3_page *page, ss_err *err)
{
    s3_store *s3 = s3_of(s);
    ss_buf pg = {0};
    s3_call *c = calloc(1, sizeof *c);
    ss_rc rc;
    if (!c || object_path(s3, "", 1, &c->path) ||
        list_query(full_prefix, token ? "" : full_after, token, s->list_page, &c->query)) {
        call_free(c);
        return ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", prefix);
    }
    c->s3 = s3;
    c->req = (s3_req){.method = "GET",
                      .op = "LIST",
                      .key = full_prefix,
                      .sign = sign_call,
                      .sign_ctx = c,
                      .sink = ss_buf_sink,
                      .sink_ctx = &pg,
                      .whole_body = SS_CAP_LIST_PAGE};
    rc = run_call(s, c, err);
    call_free(c);
    if (rc) goto out;
    rc = s3_list_page(&pg, s3->prefix, full_prefix, fn, ctx, page, err);
out:
    ss_buf_free(&pg);
    return rc;
}

/*
 * A listing that says more follows must say how to get it, and each page
 * must go past the one before (its keys after the last one handed out, and
 * a new token): a store that breaks either would make a pull stop short of
 * the head or list for ever (SS_ERR_INTEGRITY: what the store says cannot
 * be so). last, token: the last key handed out and the token this page
 * was asked with.
 */
static ss_rc page_follows(const char *prefix, const s3_page *page, const char *last,
                          const char *token, ss_err *err)
{
    if (page->truncated && (!page->next_token || !*page->next_token))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "LIST %s: the store says more keys follow but gives no continuation "
                       "token (its ListObjectsV2 paging is broken: s3sync doctor)",
                       prefix);
    if ((last && page->last_key && strcmp(page->last_key, last) <= 0) ||
        (token && page->next_token && !strcmp(page->next_token, token)))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "LIST %s: a page does not go past the one before (its ListObjectsV2 paging "
                       "is broken: s3sync doctor)",
                       prefix);
    return SS_OK;
}

static ss_rc s3_list(ss_store *s, const char *prefix, const char *start_after, ss_store_list_fn fn,
                     void *ctx, ss_err *err)
{
    s3_store *s3 = s3_of(s);
    char *full_prefix = NULL, *full_after = NULL, *token = NULL, *last = NULL;
    int stopped = 0;
    ss_rc rc = SS_OK;
    /* Paged by continuation token; store_lockd.c's presigned LISTs page by start-after. */

    if (asprintf(&full_prefix, "%s%s", s3->prefix, prefix) < 0 ||
        asprintf(&full_after, "%s%s", *start_after ? s3->prefix : "", start_after) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", prefix);
    do {
        s3_page page = {0};
        rc = list_one(s, prefix, full_prefix, full_after, token, fn, ctx, &page, err);
        if (!rc && !page.stopped) rc = page_follows(prefix, &page, last, token, err);
        free(token);
        token = page.next_token;
        stopped = page.stopped;
        if (page.last_key) { /* an empty page moves nothing on */
            free(last);
            last = page.last_key;
        }
    } while (!rc && token && !stopped);
    free(last);
    free(token);
    free(full_prefix);
    free(full_after);
    return rc;
}

/* --- presigning ------------------------------------------------------------ */

static ss_rc s3_presign(ss_store *s, ss_presign_op op, const char *key, const char *start_after,
                        const ss_sigv4_header *headers, size_t n_headers, unsigned expires,
                        char **ret_url, ss_err *err)
{
    s3_store *s3 = s3_of(s);
    ss_sigv4_creds cr = {s3->access_key, s3->secret_key, s3->session_token, s3->region, "s3"};
    char *path = NULL, *query = NULL, *full = NULL, *after = NULL;
    ss_sigv4_parts p = {0};
    ss_rc rc = SS_ERR_NOMEM;

    if (op == SS_PRESIGN_LIST) {
        if (asprintf(&full, "%s%s", s3->prefix, key) < 0 ||
            asprintf(&after, "%s%s", *start_after ? s3->prefix : "", start_after) < 0 ||
            object_path(s3, "", 1, &path) || list_query(full, after, NULL, 0, &query))
            goto fail;
    } else if (object_path(s3, key, 0, &path)) {
        goto fail;
    }
    ss_sigv4_req req = {op == SS_PRESIGN_PUT ? "PUT" : "GET",
                        s3->host,
                        path,
                        query,
                        headers,
                        n_headers,
                        SS_SIGV4_UNSIGNED,
                        sign_time(s3)};
    rc = ss_sigv4_presign(&cr, &req, expires, &p, err);
    if (rc) goto out;
    if (asprintf(ret_url, "%s%s?%s", s3->scheme_host, path, p.query) < 0) {
        *ret_url = NULL;
        goto fail;
    }
    rc = SS_OK;
    goto out;
fail:
    rc = ss_fail(err, SS_ERR_NOMEM, "presign %s: out of memory", key);
out:
    ss_sigv4_parts_clear(&p);
    free(full);
    free(after);
    free(path);
    free(query);
    return rc;
}

/* --- parallel transfers ------------------------------------------------------- */

static ss_rc s3_xfer_start(ss_store *s, ss_xfer_op *op)
{
    s3_call *c = call_new(s, op->is_put ? "PUT" : "GET", op->is_put ? "PUT" : "GET", op->key);
    if (!c) return op->rc = ss_fail(&op->err, SS_ERR_NOMEM, "%s: out of memory", op->key);
    s3_req_bind_xfer(&c->req, op, &c->mem, &c->rd, &c->dst);
    if (op->is_put) {
        c->flags = op->flags; /* signs if-none-match for create-only */
        c->put_buf = op->buf;
    }
    s3_http_start(s3_of(s)->http, &c->req);
    return SS_OK;
}

static ss_xfer_op *s3_xfer_done(ss_store *s, s3_req *done)
{
    s3_call *c = done->user;
    ss_xfer_op *op = c->dst.op;
    done->rc = auth_refusal(s3_of(s), done, done->rc, &done->err);
    ss_xfer_settle(s, op, &c->dst, done->rc, &done->err, done->attempts);
    call_free(c);
    return op;
}

static void s3_xfer_step(ss_store *s, int block, ss_xfer_op **ret_done)
{
    s3_http_xfer_step(s, s3_of(s)->http, block, s3_xfer_done, ret_done);
}

const ss_store_ops ss_store_s3_ops = {
    .scheme = "s3",
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .head = s3_head,
    .del = s3_del,
    .del_batch = s3_del_batch,
    .list = s3_list,
    .presign = s3_presign,
    .xfer_start = s3_xfer_start,
    .xfer_step = s3_xfer_step,
};
