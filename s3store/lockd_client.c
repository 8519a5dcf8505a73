/*
 * lockd_client: the device's side of docs/PROTOCOL.md (see lockd_client.h).
 * Owns the device token (sodium_malloc'ed, wiped by lk_client_clear) and
 * the lease's state; the engine is the store's.
 */
#include "lockd_client.h"
#include "store_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_MAX 1024 /* longest device token read (lockd makes LD_TOKEN_LEN = 43) */
#define BEARER "Bearer "
#define LEASE_TTL_MS 60000  /* S3SYNC_LEASE_TTL_MS overrides */
#define LEASE_WAIT_MS 15000 /* S3SYNC_LEASE_WAIT_MS: how long a held lease is waited for */
#define COMMIT_TRIES 4
#define WHAT_MAX 64   /* an API call's name in messages: "POST lease renew" */
#define ROUTE_MAX 160 /* a route under the repository: /lease/<id>?fencing_token=<n> */

/* One API call in flight. */
typedef struct api_req {
    s3_req req;
    lk_client *k;
    char *url, *json_body;
    char what[WHAT_MAX]; /* "POST lease", for messages */
    ss_buf resp;
    ss_mem_reader mem;
    ss_store_reader rd;
} api_req;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static ss_rc sign_api(void *ctx, s3_req *r, char **ret_url, struct curl_slist **ret_headers)
{
    api_req *a = ctx;
    char auth[sizeof BEARER + TOKEN_MAX];
    ss_rc rc;
    *ret_url = strdup(a->url);
    if (!*ret_url) goto nomem;
    snprintf(auth, sizeof auth, BEARER "%s", a->k->token);
    rc = s3_header_add(ret_headers, "Authorization", auth);
    sodium_memzero(auth, sizeof auth);
    if (rc) goto nomem;
    rc = s3_header_add(ret_headers, "Content-Type", "application/json");
    if (rc) goto nomem;
    rc = s3_header_add(ret_headers, "Accept", "application/json");
    if (rc) goto nomem;
    return SS_OK;
nomem: /* the URL and lines stay on the request, which wipes and frees them */
    return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: out of memory", r->op, r->key);
}

static void api_req_free(api_req *a)
{
    if (!a) return;
    s3_req_cleanup(&a->req);
    free(a->url);
    free(a->json_body);
    ss_buf_free(&a->resp);
    free(a);
}

static ss_rc lockd_rc(long status)
{
    if (status == 401 || status == 403) return SS_ERR_AUTH;
    if (status == 409) return SS_ERR_CONFLICT;
    if (status >= 500 || status == 429 || status == 408) return SS_ERR_TEMPORARY;
    return SS_ERR_STORE; /* 400, 404 no_such_repository, 413: nothing a retry mends */
}

ss_rc lk_api(lk_client *k, const char *method, const char *what, const char *route, json_t *body,
             json_t **ret, ss_err *err)
{
    api_req *a = NULL;
    json_t *j = NULL;
    ss_rc rc;

    *ret = NULL;
    if (!body && !strcmp(method, "POST")) goto nomem; /* json_pack failed */
    a = calloc(1, sizeof *a);
    if (!a) goto nomem;
    if (asprintf(&a->url, "%s%s", k->api, route) < 0) {
        a->url = NULL;
        goto nomem;
    }
    a->k = k;
    snprintf(a->what, sizeof a->what, "%s", what);
    a->req = (s3_req){.method = method,
                      .op = k->where,
                      .key = a->what,
                      .lockd_api = 1,
                      .sign = sign_api,
                      .sign_ctx = a,
                      .user = a,
                      .sink = ss_buf_sink,
                      .sink_ctx = &a->resp,
                      .whole_body = SS_CAP_LOCKD_ANSWER};
    if (body) {
        a->json_body = json_dumps(body, JSON_COMPACT);
        if (!a->json_body) goto nomem;
        ss_mem_reader_init(&a->mem, a->json_body, strlen(a->json_body), &a->rd);
        a->req.body = &a->rd;
        a->req.body_len = strlen(a->json_body);
    }
    json_decref(body);
    body = NULL;
    rc = s3_http_run(k->http, &a->req);
    if (a->req.status >= 400 && a->req.errbody)
        j = lk_answer_load(a->req.errbody, a->req.errbody_len);
    else if (!rc)
        j = lk_answer_load((const char *)a->resp.p, a->resp.len);
    if (!rc && !j) {
        rc = ss_fail(err, SS_ERR_STORE, "%s %s: the answer is not a JSON object", k->where, what);
    } else if (rc && a->req.status >= 400) {
        lk_answer_refusal no;
        lk_answer_parse_refusal(j, &no);
        rc = lockd_rc(a->req.status);
        ss_fail(err, rc, "%s %s: HTTP %ld%s%s%s%s", k->where, what, a->req.status,
                no.code[0] ? " " : "", no.code, no.message[0] ? ": " : "", no.message);
    } else if (rc && err) {
        *err = a->req.err;
    }
    api_req_free(a);
    *ret = j;
    return rc;
nomem:
    json_decref(body);
    api_req_free(a);
    return ss_fail(err, SS_ERR_NOMEM, "%s %s: out of memory", k->where, what);
}

static void lease_forget(lk_client *k)
{
    k->leased = 0;
    sodium_memzero(k->lease_id, sizeof k->lease_id);
}

static ss_rc lease_take(lk_client *k, const json_t *ans, ss_err *err)
{
    lk_answer_lease got;
    if (lk_answer_parse_lease(ans, &got))
        return ss_fail(err, SS_ERR_STORE, "%s: lockd granted a lease without id or fencing token",
                       k->where);
    memcpy(k->lease_id, got.lease_id, sizeof k->lease_id);
    k->fencing = got.fencing;
    k->renew_at_ms = s3_now_ms() + (got.ttl_ms ? got.ttl_ms : k->lease_ttl_ms) / 3;
    k->leased = 1;
    sodium_memzero(&got, sizeof got);
    return SS_OK;
}

/* Acquire the lease; while another device holds it, poll for at most lease_wait_ms. */
static ss_rc lease_acquire(lk_client *k, ss_err *err)
{
    int64_t start = s3_now_ms();
    for (;;) {
        json_t *ans = NULL;
        lk_answer_refusal no;
        ss_rc rc = lk_api(k, "POST", "POST lease", "/lease",
                          json_pack("{s:I}", "ttl_ms", (json_int_t)k->lease_ttl_ms), &ans, err);
        if (!rc) {
            rc = lease_take(k, ans, err);
            json_decref(ans);
            return rc;
        }
        lk_answer_parse_refusal(rc == SS_ERR_CONFLICT ? ans : NULL, &no);
        json_decref(ans);
        if (rc != SS_ERR_CONFLICT || strcmp(no.code, "lease_held")) return rc;
        int64_t left = start + k->lease_wait_ms - s3_now_ms();
        int64_t retry = no.retry_after_ms;
        int64_t nap = 100 + randombytes_uniform(400); /* a release frees it before retry_after */
        if (left <= 0)
            return ss_fail(
                err, SS_ERR_TEMPORARY,
                "%s: lease held by %s (waited %lld ms, it expires in %lld ms); try later", k->where,
                no.holder, (long long)(s3_now_ms() - start), (long long)retry);
        if (retry > 0 && retry < nap) nap = retry;
        sleep_ms(nap < left ? nap : left);
    }
}

/* Before a lockd call or upload: renew a held lease once a third of its TTL passed. */
ss_rc lk_lease_keep(lk_client *k, ss_err *err)
{
    char route[ROUTE_MAX];
    json_t *ans = NULL;
    ss_rc rc;
    if (!k->leased || s3_now_ms() < k->renew_at_ms) return SS_OK;
    snprintf(route, sizeof route, "/lease/%s/renew", k->lease_id);
    rc = lk_api(
        k, "POST", "POST lease renew", route,
        json_pack("{s:I, s:I}", "fencing_token", k->fencing, "ttl_ms", (json_int_t)k->lease_ttl_ms),
        &ans, err);
    if (!rc) {
        rc = lease_take(k, ans, err);
        json_decref(ans);
        return rc;
    }
    if (rc == SS_ERR_CONFLICT) { /* expired and maybe taken over: nothing written can commit */
        lk_answer_refusal no;
        lk_answer_parse_refusal(ans, &no);
        lease_forget(k);
        rc = ss_fail(err, SS_ERR_EXISTS, "%s: the lease was lost (%s); pulling and rebuilding",
                     k->where, no.code);
    }
    json_decref(ans);
    return rc;
}

ss_rc lk_lease_need(lk_client *k, ss_err *err)
{
    return k->leased ? lk_lease_keep(k, err) : lease_acquire(k, err);
}

/* Give the lease back (best effort: an unreachable lockd lets it expire). */
void lk_lease_release(lk_client *k)
{
    char route[ROUTE_MAX];
    json_t *ans = NULL;
    if (!k->leased) return;
    snprintf(route, sizeof route, "/lease/%s?fencing_token=%lld", k->lease_id,
             (long long)k->fencing);
    lk_api(k, "DELETE", "DELETE lease", route, NULL, &ans, NULL);
    json_decref(ans);
    lease_forget(k);
}

/*
 * A write of seq refused for a stale lease or head (409): stop using the
 * lease, and write nothing more of seq (the engine's other packs would each
 * take and give back a lease in vain) until the engine pulled.
 */
ss_rc lk_refused(lk_client *k, const json_t *ans, ss_rc rc, uint64_t seq, ss_err *err)
{
    lk_answer_refusal no;
    if (rc != SS_ERR_CONFLICT) return rc;
    lk_answer_parse_refusal(ans, &no);
    k->taken_seq = seq;
    if (!strncmp(no.code, "stale_", 6))
        lease_forget(k);
    else
        lk_lease_release(k);
    if (err) {
        ss_err inner = *err;
        ss_fail(err, SS_ERR_EXISTS, "%s; pulling and rebuilding", inner.msg);
    }
    return SS_ERR_EXISTS;
}

/* Commit log/<seq> and release the lease; object_missing is retried a few times. */
ss_rc lk_commit(lk_client *k, uint64_t seq, ss_err *err)
{
    if (!k->leased) /* a PUT of another key was refused meanwhile */
        return ss_fail(err, SS_ERR_EXISTS,
                       "%s: commit of " LK_LOG_PREFIX "%0*llu: no lease; pulling and rebuilding",
                       k->where, LK_SEQ_DIGITS, (unsigned long long)seq);
    for (int i = 1;; i++) {
        json_t *ans = NULL;
        lk_answer_refusal no;
        ss_rc rc = lk_lease_keep(k, err);
        if (rc) return lk_refused(k, NULL, rc, seq, err);
        rc = lk_api(k, "POST", "POST commit", "/commit",
                    json_pack("{s:s, s:I, s:I, s:b}", "lease_id", k->lease_id, "fencing_token",
                              k->fencing, "seq", (json_int_t)seq, "release", 1),
                    &ans, err);
        if (!rc) lease_forget(k); /* released with the commit */
        lk_answer_parse_refusal(rc == SS_ERR_CONFLICT ? ans : NULL, &no);
        if (rc == SS_ERR_CONFLICT && !strcmp(no.code, "object_missing")) {
            json_decref(ans);
            if (i < COMMIT_TRIES) {
                sleep_ms(200 * i);
                continue;
            }
            return ss_fail(err, SS_ERR_TEMPORARY,
                           "%s: commit of " LK_LOG_PREFIX "%0*llu: lockd sees no object", k->where,
                           LK_SEQ_DIGITS, (unsigned long long)seq);
        }
        rc = lk_refused(k, ans, rc, seq, err);
        json_decref(ans);
        return rc;
    }
}

/* POST presign with body (taken); *ret_url is the first URL (malloc'ed). */
ss_rc lk_presign(lk_client *k, json_t *body, const char *key, char **ret_url, json_t **ret_ans,
                 ss_err *err)
{
    json_t *ans = NULL;
    lk_answer_presigned got;
    ss_rc rc = lk_api(k, "POST", "POST presign", "/presign", body, &ans, err);
    *ret_url = NULL;
    if (rc) {
        *ret_ans = ans;
        return rc;
    }
    *ret_ans = ans;
    if (lk_answer_parse_presigned(ans, &got))
        return ss_fail(err, SS_ERR_STORE, "%s: presign %s: the answer holds no http(s) URL",
                       k->where, key);
    *ret_url = strdup(got.url);
    if (!*ret_url) return ss_fail(err, SS_ERR_NOMEM, "presign %s: out of memory", key);
    return SS_OK;
}

/* The token of path into sodium_malloc'ed memory: one line of printable characters. */
static ss_rc read_token(const lk_client *k, const char *path, char **ret, ss_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    ss_err e = {{0}};
    ss_rc rc;

    *ret = NULL;
    if (!path || !*path)
        return ss_fail(err, SS_ERR_INVALID,
                       "%s: no device token: give --token-file FILE or set S3SYNC_TOKEN_FILE",
                       k->where);
    rc = ss_buf_read_secret(path, TOKEN_MAX + 1, &buf, &len, &e);
    if (rc) return ss_fail(err, rc == SS_ERR_NOMEM ? rc : SS_ERR_INVALID, "token file %s", e.msg);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    if (len > TOKEN_MAX) {
        rc = ss_fail(err, SS_ERR_INVALID, "token file %s: too long for a token", path);
        goto fail;
    }
    for (size_t i = 0; i <= len; i++)
        if (i == len ? !len : buf[i] <= ' ' || buf[i] > '~') {
            rc = ss_fail(
                err, SS_ERR_INVALID,
                "token file %s does not hold a token (one line, as `device add` printed it)", path);
            goto fail;
        }
    *ret = buf;
    return SS_OK;
fail:
    sodium_free(buf); /* wipes */
    return rc;
}

/* 1 when host (of an http:// URL: NAME, IPv4 or [IPv6]) is this machine: localhost,
 * 127.0.0.0/8 or ::1. Nothing is resolved: a name that merely points here is not. */
static int loopback(const char *host, size_t len)
{
    char h[64];
    struct in_addr a4;
    struct in6_addr a6;
    if (len >= sizeof h) return 0;
    memcpy(h, host, len);
    h[len] = '\0';
    if (!strcasecmp(h, "localhost")) return 1;
    if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (len > 2 && h[0] == '[' && h[len - 1] == ']') {
        h[len - 1] = '\0';
        return inet_pton(AF_INET6, h + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return 0;
}

/*
 * Over http:// the token goes in every request's Authorization header, as
 * readable as the URL to whoever is on the way: fine on this machine, a
 * warning (once a process) for any other host.
 */
static void warn_cleartext(const char *where, const char *location)
{
    static int warned;
    const char *host = location + strlen("http://");
    size_t len = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
    if (strncmp(location, "http://", 7) || loopback(host, len) || warned) return;
    warned = 1;
    fprintf(stderr,
            "s3sync: warning: %s: the device token travels in clear (http://) to %.*s, which is "
            "not this machine; use lockd:https://\n",
            where, (int)len, host);
}

static int64_t env_ms(const char *name, int64_t def)
{
    const char *v = getenv(name);
    long long ms = v && *v ? atoll(v) : 0;
    return ms > 0 ? (int64_t)ms : def;
}

ss_rc lk_client_init(lk_client *k, const char *where, const char *location, const char *token_file,
                     s3_http *http, ss_err *err)
{
    const char *auth = strstr(location, "://"), *slash = auth ? strchr(auth + 3, '/') : NULL;
    const char *repo = slash ? slash + 1 : "";
    size_t rlen = strcspn(repo, "/");

    memset(k, 0, sizeof *k);
    k->where = where;
    k->http = http;
    if ((strncmp(location, "http://", 7) && strncmp(location, "https://", 8)) || !slash ||
        slash == auth + 3 || !rlen || rlen > LK_NAME_MAX || *repo == '.' ||
        (repo[rlen] && repo[rlen + 1]) ||
        strspn(repo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != rlen)
        return ss_fail(err, SS_ERR_INVALID,
                       "store URL '%s': expected lockd:http(s)://HOST:PORT/REPO", where);
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_NOMEM, "libsodium failed to initialise");
    warn_cleartext(where, location);
    k->lease_ttl_ms = env_ms("S3SYNC_LEASE_TTL_MS", LEASE_TTL_MS);
    k->lease_wait_ms = env_ms("S3SYNC_LEASE_WAIT_MS", LEASE_WAIT_MS);
    if (asprintf(&k->api, "%.*s/v1/repos/%.*s", (int)(slash - location), location, (int)rlen,
                 repo) < 0) {
        k->api = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", where);
    }
    return read_token(k, token_file ? token_file : getenv("S3SYNC_TOKEN_FILE"), &k->token, err);
}

void lk_client_clear(lk_client *k)
{
    if (k->http && k->token) lk_lease_release(k);
    if (k->token) sodium_free(k->token);
    free(k->api);
    memset(k, 0, sizeof *k);
}
