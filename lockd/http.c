/*
 * http.c: s3sync-lockd's HTTP/1.1 front: libmicrohttpd (optionally TLS via
 * its GnuTLS support), routing, Bearer authentication, JSON answers (body.c
 * reads the request bodies), the mapping of lease outcomes to statuses, and
 * request metrics. Decides nothing about leases or keys itself: lease.c and
 * presign.c do.
 * docs/PROTOCOL.md is the contract for every route here.
 */
#include "body.h"
#include "lockd.h"
#include "ss_buf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BODY_MAX (256 * 1024) /* a presign of 1000 keys fits; anything bigger is abuse */

struct ld_server {
    ld_server_ctx ctx;
    unsigned char *secret; /* the token secret's copy: sodium_malloc'ed, wiped when freed */
    struct MHD_Daemon *mhd;
    char *cert_pem, *key_pem; /* sodium_malloc'ed: the key is a secret */
};

typedef enum { OP_HEAD, OP_ACQUIRE, OP_RENEW, OP_RELEASE, OP_PRESIGN, OP_COMMIT, OP_WRITERS } op_t;

/*
 * One request: what its headers decided (route, operation, the device its
 * token names), then its body as it arrives, and when it started. A body
 * is read only once the headers were admitted: no unauthenticated byte of
 * it is ever taken in (docs/PROTOCOL.md, Transport).
 */
typedef struct req {
    struct timespec t0;
    ld_route route;
    op_t op;
    int admitted; /* route, method, token and Content-Length passed */
    ld_device dev;
    char repo[LD_NAME_MAX + 1], lease_id[LD_LEASE_ID_LEN + 1];
    uint64_t seq; /* GET writers/{seq} */
    char *body;
    size_t len;
} req;

/* What a handler answers. */
typedef struct reply {
    unsigned status;
    json_t *json;      /* owned; NULL for text */
    char *text;        /* owned; text/plain body */
    int64_t retry_ms;  /* > 0: a Retry-After header */
    const char *allow; /* 405: the Allow header */
    int auth_challenge;
} reply;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void error_reply(reply *r, unsigned status, const char *code, const char *msg)
{
    r->status = status;
    json_decref(r->json);
    r->json = json_pack("{s:s, s:s}", "error", code, "message", msg);
    /* A message quoting the client's bytes may be cut inside a UTF-8
     * sequence; jansson refuses that, the code alone still tells. */
    if (!r->json) r->json = json_pack("{s:s, s:s}", "error", code, "message", code);
}

/* Map a refused lease or presign operation to its HTTP answer. */
static void outcome_reply(reply *r, ss_rc rc, const ld_outcome *o)
{
    static const struct {
        ld_why why;
        unsigned status;
        const char *code;
    } map[] = {
        {LD_WHY_NO_REPO, 404, "no_such_repository"},
        {LD_WHY_READ_ONLY, 403, "read_only"},
        {LD_WHY_FOREIGN, 403, "forbidden"},
        {LD_WHY_LEASE_HELD, 409, "lease_held"},
        {LD_WHY_STALE_LEASE, 409, "stale_lease"},
        {LD_WHY_STALE_FENCING, 409, "stale_fencing_token"},
        {LD_WHY_BAD_SEQ, 409, "wrong_sequence"},
        {LD_WHY_OBJECT_MISSING, 409, "object_missing"},
        {LD_WHY_BAD_KEY, 403, "key_not_allowed"},
        {LD_WHY_BAD_REQUEST, 400, "bad_request"},
        {LD_WHY_REWINDING, 503, "rewinding"},
    };
    unsigned status = 500;
    const char *code = "internal";
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].why == o->why) {
            status = map[i].status;
            code = map[i].code;
        }
    if (o->why == LD_WHY_STORE) {
        status = rc == SS_ERR_TEMPORARY ? 503 : 502;
        code = rc == SS_ERR_TEMPORARY ? "store_unavailable" : "store_error";
        r->retry_ms = rc == SS_ERR_TEMPORARY ? 1000 : 0;
    }
    if (o->why == LD_WHY_REWINDING) r->retry_ms = 1000;
    if (status >= 500) fprintf(stderr, "s3sync-lockd: %u %s: %s\n", status, code, o->err.msg);
    error_reply(r, status, code, o->err.msg[0] ? o->err.msg : ss_strerror(rc));
    if (!r->json) return;
    if (status == 409) json_object_set_new(r->json, "head", json_integer((json_int_t)o->head));
    if (o->why == LD_WHY_LEASE_HELD) {
        r->retry_ms = o->retry_after_ms;
        json_object_set_new(r->json, "retry_after_ms", json_integer(o->retry_after_ms));
        json_object_set_new(r->json, "holder", json_string(o->holder));
    }
}

/* ttl_ms <= 0: not a grant or renewal, so no TTL to report. */
static json_t *lease_json(const char *repo, const ld_lease *l, int64_t ttl_ms)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "repo", repo, "lease_id", l->id,
                          "fencing_token", (json_int_t)l->fencing, "head", (json_int_t)l->head,
                          "expires_in_ms", (json_int_t)l->expires_in_ms, "expires_at_ms",
                          (json_int_t)l->expires_ms);
    if (j && ttl_ms > 0) json_object_set_new(j, "ttl_ms", json_integer(ttl_ms));
    return j;
}

/* ?fencing_token= of the request: DELETE lease may carry it there instead of a body. */
static const char *query_fencing(struct MHD_Connection *c)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fencing_token");
}

/* --- routes under /v1/repos/{repo}/ -------------------------------------------- */

/* GET writers/{seq}: the devices given the PUT URLs of log/<seq> (docs/PROTOCOL.md). */
static ss_rc writers_reply(ld_server *s, const char *repo, uint64_t seq, reply *r, ld_outcome *o)
{
    ld_writers w;
    json_t *names = NULL;
    ss_rc rc = ld_db_writers(s->ctx.db, repo, seq, &w, &o->err);
    if (rc) {
        o->why = LD_WHY_INTERNAL;
        return rc;
    }
    names = json_array();
    for (size_t i = 0; i < w.n; i++)
        json_array_append_new(names, json_string(w.name[i]));
    r->status = 200;
    r->json = json_pack("{s:s, s:I, s:o}", "repo", repo, "seq", (json_int_t)seq, "devices", names);
    return SS_OK;
}

static void serve_repo(ld_server *s, struct MHD_Connection *c, const req *rq, json_t *body,
                       reply *r)
{
    ld_leases *l = s->ctx.leases;
    const ld_device *dev = &rq->dev;
    const char *repo = rq->repo, *lease_id = rq->lease_id;
    op_t op = rq->op;
    ld_outcome o;
    ld_lease lease;
    int64_t ttl = 0;
    uint64_t fencing = 0, head = 0;
    ss_rc rc = SS_OK;

    /* Who may do what comes before what the body says (PROTOCOL.md, Errors);
     * the lease operations check again, presign checks PUT itself. */
    if ((rc = ld_lease_access(l, dev, repo, op != OP_HEAD && op != OP_PRESIGN && op != OP_WRITERS,
                              &o))) {
        outcome_reply(r, rc, &o);
        return;
    }
    switch (op) {
    case OP_HEAD: {
        ss_store_stat obj;
        int leased = 0;
        if (!(rc = ld_lease_head(l, repo, &head, &leased, &obj, &o))) {
            r->status = 200;
            r->json = json_pack("{s:s, s:I, s:b}", "repo", repo, "head", (json_int_t)head, "leased",
                                leased);
            /* log/<head> as lockd saw it: the devices' fork check (PROTOCOL.md, GET head) */
            if (r->json && obj.etag[0]) {
                json_object_set_new(r->json, "etag", json_string(obj.etag));
                json_object_set_new(r->json, "size", json_integer((json_int_t)obj.size));
            }
        }
        break;
    }
    case OP_ACQUIRE:
        if ((rc = ld_body_parse_ttl(body, s->ctx.cfg->ttl_default_ms, &ttl, &o))) break;
        if (!(rc = ld_lease_acquire(l, dev, repo, ttl, &lease, &o))) {
            r->status = 201;
            r->json = lease_json(repo, &lease, ttl);
        }
        break;
    case OP_RENEW:
        if ((rc = ld_body_parse_ttl(body, s->ctx.cfg->ttl_default_ms, &ttl, &o)) ||
            (rc = ld_body_parse_fencing(body, query_fencing(c), &fencing, &o)))
            break;
        if (!(rc = ld_lease_renew(l, dev, repo, lease_id, fencing, ttl, &lease, &o))) {
            r->status = 200;
            r->json = lease_json(repo, &lease, ttl);
        }
        break;
    case OP_RELEASE:
        if ((rc = ld_body_parse_fencing(body, query_fencing(c), &fencing, &o))) break;
        if (!(rc = ld_lease_release(l, dev, repo, lease_id, fencing, &o))) {
            r->status = 200;
            r->json =
                json_pack("{s:s, s:s, s:b}", "repo", repo, "lease_id", lease_id, "released", 1);
        }
        break;
    case OP_PRESIGN: {
        json_t *res = NULL;
        if (!(rc = ld_presign(
                  l, &(ld_presign_limits){s->ctx.cfg->put_expires_max, s->ctx.cfg->get_expires},
                  dev, repo, body, &res, &o))) {
            const char *op_s = json_string_value(json_object_get(res, "op"));
            size_t n = json_array_size(json_object_get(res, "urls"));
            ld_counter ctr = !strcmp(op_s, "put")    ? LD_C_PRESIGN_PUT
                             : !strcmp(op_s, "list") ? LD_C_PRESIGN_LIST
                                                     : LD_C_PRESIGN_GET;
            ld_metrics_add(s->ctx.metrics, ctr, n);
            r->status = 200;
            r->json = res;
        }
        break;
    }
    case OP_WRITERS: rc = writers_reply(s, repo, rq->seq, r, &o); break;
    case OP_COMMIT: {
        ld_body_commit cm;
        int released = 0;
        if ((rc = ld_body_parse_commit(body, query_fencing(c), &cm, &o))) break;
        if (!(rc = ld_lease_commit(l, dev, repo, cm.lease_id, cm.fencing, cm.seq, cm.release,
                                   &lease, &released, &o))) {
            r->status = 200;
            r->json = json_pack("{s:s, s:I, s:b}", "repo", repo, "head", (json_int_t)lease.head,
                                "released", released);
            if (r->json && !released)
                json_object_set_new(r->json, "lease", lease_json(repo, &lease, 0));
        }
        break;
    }
    }
    if (rc) outcome_reply(r, rc, &o);
}

/* Split /v1/repos/{repo}/{rest}; 0 when the path is not of that shape. */
static int parse_repo_path(const char *url, char *repo, const char **rest)
{
    const char *p = url + strlen("/v1/repos/"), *slash;
    if (strncmp(url, "/v1/repos/", 10) || !(slash = strchr(p, '/'))) return 0;
    if ((size_t)(slash - p) > LD_NAME_MAX || slash == p) return 0;
    memcpy(repo, p, (size_t)(slash - p));
    repo[slash - p] = '\0';
    *rest = slash + 1;
    return ld_name_ok(repo);
}

/* The operation a route under /v1/repos/{repo}/ names, and its method; 0 when none. */
static int parse_op(const char *rest, req *rq, const char **allow)
{
    if (!strcmp(rest, "head")) {
        rq->route = LD_R_HEAD, rq->op = OP_HEAD, *allow = "GET";
    } else if (!strcmp(rest, "lease")) {
        rq->route = LD_R_ACQUIRE, rq->op = OP_ACQUIRE, *allow = "POST";
    } else if (!strcmp(rest, "presign")) {
        rq->route = LD_R_PRESIGN, rq->op = OP_PRESIGN, *allow = "POST";
    } else if (!strcmp(rest, "commit")) {
        rq->route = LD_R_COMMIT, rq->op = OP_COMMIT, *allow = "POST";
    } else if (!strncmp(rest, "writers/", 8) && rest[8] && strlen(rest + 8) <= 18 &&
               strspn(rest + 8, "0123456789") == strlen(rest + 8)) {
        rq->route = LD_R_WRITERS, rq->op = OP_WRITERS, *allow = "GET";
        rq->seq = strtoull(rest + 8, NULL, 10);
    } else if (!strncmp(rest, "lease/", 6) && strlen(rest + 6) >= LD_LEASE_ID_LEN &&
               strspn(rest + 6, "0123456789abcdef") == LD_LEASE_ID_LEN &&
               (!rest[6 + LD_LEASE_ID_LEN] || !strcmp(rest + 6 + LD_LEASE_ID_LEN, "/renew"))) {
        memcpy(rq->lease_id, rest + 6, LD_LEASE_ID_LEN);
        rq->lease_id[LD_LEASE_ID_LEN] = '\0';
        if (rest[6 + LD_LEASE_ID_LEN])
            rq->route = LD_R_RENEW, rq->op = OP_RENEW, *allow = "POST";
        else
            rq->route = LD_R_RELEASE, rq->op = OP_RELEASE, *allow = "DELETE";
    } else {
        return 0;
    }
    return 1;
}

/* 1 when the Content-Length header announces more than BODY_MAX. */
static int announced_too_big(struct MHD_Connection *c)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long n;
    if (!v) return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    return errno || end == v || n > BODY_MAX;
}

/*
 * What the headers alone decide, before a byte of the body is read: the
 * routes without a body answer here, and so does every refusal of route,
 * method, token or announced size (r is set: 1). 0 admits the request: its
 * body may come.
 */
static int admit(ld_server *s, struct MHD_Connection *c, const char *url, const char *method,
                 req *rq, reply *r)
{
    const char *rest = NULL, *allow = NULL;
    ld_auth_result ar;
    ss_err err = {{0}};

    if (!strcmp(url, "/healthz")) {
        rq->route = LD_R_HEALTHZ;
        allow = "GET";
        if (!strcmp(method, "GET")) {
            r->status = 200;
            r->json = json_pack("{s:s}", "status", "ok");
            return 1;
        }
        goto not_allowed;
    }
    if (!strcmp(url, "/metrics")) {
        rq->route = LD_R_METRICS;
        allow = "GET";
        if (strcmp(method, "GET")) goto not_allowed;
        r->status = 200;
        if (!(r->text = ld_metrics_render(s->ctx.metrics)))
            error_reply(r, 500, "internal", "out of memory");
        return 1;
    }
    rq->route = LD_R_OTHER;
    if (!parse_repo_path(url, rq->repo, &rest) || !parse_op(rest, rq, &allow)) goto not_found;
    if (strcmp(method, allow)) goto not_allowed;
    if (ld_auth_check(
            s->ctx.db, s->secret,
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
            &rq->dev, &ar, &err)) {
        fprintf(stderr, "s3sync-lockd: auth: %s\n", err.msg);
        error_reply(r, 500, "internal", "authentication failed: database error");
        return 1;
    }
    if (ar != LD_AUTH_OK) {
        r->auth_challenge = 1;
        error_reply(r, 401, "unauthorized",
                    ar == LD_AUTH_MISSING   ? "missing Authorization: Bearer TOKEN"
                    : ar == LD_AUTH_REVOKED ? "device token revoked"
                                            : "unknown device token");
        return 1;
    }
    if (announced_too_big(c)) {
        error_reply(r, 413, "payload_too_large", "request body over 256 KiB");
        return 1;
    }
    rq->admitted = 1;
    return 0;
not_found:
    error_reply(r, 404, "not_found", "no such route");
    return 1;
not_allowed:
    r->allow = allow;
    error_reply(r, 405, "method_not_allowed", "method not allowed on this route");
    return 1;
}

/* An admitted request with its whole body: the operation. */
static void serve_admitted(ld_server *s, struct MHD_Connection *c, req *rq, reply *r)
{
    json_t *body = NULL;
    ld_outcome o;
    if (ld_body_load(rq->body, rq->len, &body, &o)) {
        outcome_reply(r, o.why == LD_WHY_INTERNAL ? SS_ERR_NOMEM : SS_ERR_INVALID, &o);
        return;
    }
    serve_repo(s, c, rq, body, r);
    json_decref(body);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, reply *r)
{
    struct MHD_Response *resp = NULL;
    char *text = NULL, ra[32];
    enum MHD_Result ret;
    const char *type = "application/json";

    if (r->text) {
        text = r->text;
        r->text = NULL;
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (!r->json || !(text = json_dumps(r->json, JSON_COMPACT))) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        r->status = 500;
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->retry_ms > 0) {
        snprintf(ra, sizeof ra, "%lld", (long long)((r->retry_ms + 999) / 1000));
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->auth_challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"s3sync-lockd\"");
    ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Send r, count it, and free what it holds. */
static enum MHD_Result respond(ld_server *s, struct MHD_Connection *c, const req *rq, reply *r)
{
    enum MHD_Result ret = send_reply(c, r);
    ld_metrics_request(s->ctx.metrics, rq->route, r->status, since(&rq->t0));
    json_decref(r->json);
    free(r->text);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    ld_server *s = cls;
    req *rq = *con_cls;
    reply r = {0};
    (void)version;

    if (!rq) { /* the headers, all of them, and no body yet */
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &rq->t0);
        *con_cls = rq;
        /* A refusal is queued now: libmicrohttpd then never reads the body. */
        return admit(s, c, url, method, rq, &r) ? respond(s, c, rq, &r) : MHD_YES;
    }
    if (*upload_data_size) { /* a piece of the body of an admitted request */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        /* Over the limit without a Content-Length that said so (chunked): no
         * answer can be queued mid-body, so the connection is closed. */
        if (rq->len + n > BODY_MAX) return MHD_NO;
        char *b = realloc(rq->body, rq->len + n + 1);
        if (!b) return MHD_NO;
        memcpy(b + rq->len, upload_data, n);
        rq->body = b;
        rq->len += n;
        return MHD_YES;
    }
    if (!rq->admitted) return MHD_NO; /* answered at the headers already */
    serve_admitted(s, c, rq, &r);
    return respond(s, c, rq, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req *rq = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (!rq) return;
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

static ss_rc read_pem(const char *path, char **ret, ss_err *err)
{
    size_t len = 0;
    ss_rc rc = ss_buf_read_secret(path, 1 << 20, ret, &len, err);
    if (!rc && !len) {
        sodium_free(*ret);
        *ret = NULL;
        rc = ss_fail(err, SS_ERR_IO, "%s: cannot read PEM", path);
    }
    return rc;
}

/* HOST:PORT or [V6ADDR]:PORT -> socket address. */
static ss_rc resolve_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *salen,
                            ss_err *err)
{
    char host[256];
    const char *port;
    struct addrinfo hints = {0}, *ai = NULL;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof host) goto bad;
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof host) goto bad;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (!*port || getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) || !ai) goto bad;
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return SS_OK;
bad:
    return ss_fail(err, SS_ERR_INVALID, "listen '%s': expected HOST:PORT or [ADDR]:PORT", listen);
}

ss_rc ld_http_start(const ld_server_ctx *ctx, ld_server **ret, unsigned *ret_port, ss_err *err)
{
    ld_server *s = NULL;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    /* TURBO: read and write before polling (the socket is usually ready on a
     * kept-alive connection): fewer syscalls per request, ~2 us of CPU. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    const union MHD_DaemonInfo *info;
    ss_rc rc;

    *ret = NULL;
    if ((rc = resolve_listen(ctx->cfg->listen ? ctx->cfg->listen : "127.0.0.1:8443", &sa, &salen,
                             err)))
        return rc;
    if (!(s = calloc(1, sizeof *s))) return ss_fail(err, SS_ERR_NOMEM, "server: out of memory");
    s->ctx = *ctx;
    if (!(s->secret = sodium_malloc(32))) {
        free(s);
        return ss_fail(err, SS_ERR_NOMEM, "server: out of memory");
    }
    ld_db_secret(ctx->db, s->secret);
    if (ctx->cfg->cert) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            rc = ss_fail(err, SS_ERR_INVALID, "this libmicrohttpd has no TLS support");
            goto fail;
        }
        if ((rc = read_pem(ctx->cfg->cert, &s->cert_pem, err)) ||
            (rc = read_pem(ctx->cfg->key, &s->key_pem, err)))
            goto fail;
        flags |= MHD_USE_TLS;
    }
    if (sa.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* A thread per connection by default: a commit waits for a bucket HEAD,
     * and that must not stall the other connections of a pool thread. */
    if (!ctx->cfg->threads) flags |= MHD_USE_THREAD_PER_CONNECTION;
    struct MHD_OptionItem opts[10];
    size_t n = 0;
    const ld_config *cfg = ctx->cfg;
    /* Hostile clients (docs/PROTOCOL.md, Transport): a silent connection is
     * closed, and one address cannot take every connection the devices need. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)cfg->connection_timeout, NULL};
    opts[n++] = (struct MHD_OptionItem){
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (intptr_t)(cfg->max_connections_per_ip < cfg->max_connections ? cfg->max_connections_per_ip
                                                                      : cfg->max_connections),
        NULL};
    /* MHD zeroes a connection's whole memory pool between requests (memset
     * was 5% of a head request's CPU with the default 32 KiB). lockd's
     * request line and headers are a few hundred bytes, and bodies stream
     * through on_request, so 8 KiB is plenty (a longer URL gets 414, more
     * headers 431: docs/PROTOCOL.md). */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 8192, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                        (intptr_t)ctx->cfg->max_connections, NULL};
    if (ctx->cfg->threads > 1)
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)ctx->cfg->threads, NULL};
    if (s->cert_pem) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->mhd) {
        rc = ss_fail(err, SS_ERR_IO, "cannot listen on %s (in use, or bad TLS certificate/key)",
                     ctx->cfg->listen ? ctx->cfg->listen : "127.0.0.1:8443");
        goto fail;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (ret_port) *ret_port = info ? info->port : 0;
    *ret = s;
    return SS_OK;
fail:
    ld_http_stop(s);
    return rc;
}

void ld_http_stop(ld_server *s)
{
    if (!s) return;
    if (s->mhd) MHD_stop_daemon(s->mhd);
    sodium_free(s->cert_pem); /* sodium_free wipes */
    sodium_free(s->key_pem);
    sodium_free(s->secret);
    free(s);
}
