/*
 * http.c: s3sync-lockd's HTTP/1.1 front: libmicrohttpd (optionally TLS via
 * its GnuTLS support), Bearer authentication and the limits on what a
 * request may send, the request's life (headers, body, answer), JSON and
 * text answers on the wire, and request metrics. What each route means is
 * routes.c's (the table of method, path and handler); body.c reads the
 * request bodies. Decides nothing about leases or keys itself: lease.c and
 * presign.c do. docs/PROTOCOL.md is the contract for every route.
 */
#include "body.h"
#include "lockd.h"
#include "ld_state.h"
#include "array.h"
#include "routes.h"
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
#define PEM_MAX (1 << 20)     /* a TLS certificate or key file */
#define LISTEN_DEFAULT "127.0.0.1:8443"
/* MHD zeroes a connection's whole memory pool between requests (memset was
 * 5% of a head request's CPU with the default 32 KiB). lockd's request line
 * and headers are a few hundred bytes, and bodies stream through on_request,
 * so 8 KiB is plenty (a longer URL gets 414, more headers 431: PROTOCOL.md). */
#define CONNECTION_MEMORY (8 * 1024)

struct ld_server {
    ld_server_ctx ctx;
    unsigned char *secret; /* the token secret's copy: sodium_malloc'ed, wiped when freed */
    struct MHD_Daemon *mhd;
    char *cert_pem, *key_pem; /* sodium_malloc'ed: the key is a secret */
};

/*
 * One request: what its headers decided (route, its parameters, the device
 * its token names), then its body as it arrives, and when it started. A body
 * is read only once the headers were admitted: no unauthenticated byte of
 * it is ever taken in (docs/PROTOCOL.md, Transport).
 */
typedef struct req {
    struct timespec t0;
    ld_route metric;
    const ld_route_def *def;
    int admitted; /* route, method, token and Content-Length passed */
    ld_device dev;
    ld_params p;
    char *body;
    size_t len, cap;
} req;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
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

static ld_call call_of(ld_server *s, struct MHD_Connection *c, const req *rq, json_t *body)
{
    return (ld_call){
        .ctx = &s->ctx,
        .dev = &rq->dev,
        .p = &rq->p,
        /* ?fencing_token=: DELETE lease may carry it there instead of a body */
        .query_fencing = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fencing_token"),
        .body = body,
    };
}

/*
 * What the headers alone decide, before a byte of the body is read: the
 * routes without a token or body answer here, and so does every refusal of
 * route, method, token or announced size (r is set: 1). 0 admits the
 * request: its body may come.
 */
static int admit(ld_server *s, struct MHD_Connection *c, const char *url, const char *method,
                 req *rq, ld_reply *r)
{
    ld_auth_result ar;
    ss_err err = {{0}};
    int allowed = 0;

    rq->metric = LD_R_OTHER;
    rq->def = ld_route_find(url, method, &rq->p, &allowed);
    if (!rq->def) {
        ld_reply_error(r, 404, "not_found", "no such route");
        return 1;
    }
    rq->metric = rq->def->metric;
    if (!allowed) {
        r->allow = rq->def->method;
        ld_reply_error(r, 405, "method_not_allowed", "method not allowed on this route");
        return 1;
    }
    if (rq->def->kind == LD_OPEN) {
        ld_call call = call_of(s, c, rq, NULL);
        ld_route_serve(rq->def, &call, r);
        return 1;
    }
    if (ld_auth_check(
            s->ctx.state, s->secret,
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
            &rq->dev, &ar, &err)) {
        fprintf(stderr, "s3sync-lockd: auth: %s\n", err.msg);
        ld_reply_error(r, 500, "internal", "authentication failed: database error");
        return 1;
    }
    if (ar != LD_AUTH_OK) {
        r->auth_challenge = 1;
        ld_reply_error(r, 401, "unauthorized",
                       ar == LD_AUTH_MISSING   ? "missing Authorization: Bearer TOKEN"
                       : ar == LD_AUTH_REVOKED ? "device token revoked"
                                               : "unknown device token");
        return 1;
    }
    if (announced_too_big(c)) {
        ld_reply_error(r, 413, "payload_too_large", "request body over 256 KiB");
        return 1;
    }
    rq->admitted = 1;
    return 0;
}

/* An admitted request with its whole body: the operation. */
static void serve_admitted(ld_server *s, struct MHD_Connection *c, req *rq, ld_reply *r)
{
    json_t *body = NULL;
    ld_outcome o;
    if (ld_body_load(rq->body, rq->len, &body, &o)) {
        ld_reply_outcome(r, o.why == LD_WHY_INTERNAL ? SS_ERR_NOMEM : SS_ERR_INVALID, &o);
        return;
    }
    ld_call call = call_of(s, c, rq, body);
    ld_route_serve(rq->def, &call, r);
    json_decref(body);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, ld_reply *r)
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
static enum MHD_Result respond(ld_server *s, struct MHD_Connection *c, const req *rq, ld_reply *r)
{
    enum MHD_Result ret = send_reply(c, r);
    ld_metrics_request(s->ctx.metrics, rq->metric, r->status, since(&rq->t0));
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
    ld_reply r = {0};
    (void)version;

    if (!rq) { /* the headers, all of them, and no body yet */
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
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
        if (SS_ARRAY_GROW(rq->body, rq->len + n + 1, rq->cap)) return MHD_NO;
        memcpy(rq->body + rq->len, upload_data, n);
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
    ss_rc rc = ss_buf_read_secret(path, PEM_MAX, ret, &len, err);
    if (rc) return rc;
    if (len) return SS_OK;
    sodium_free(*ret);
    *ret = NULL;
    return ss_fail(err, SS_ERR_IO, "%s: cannot read PEM", path);
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
    rc = resolve_listen(ctx->cfg->listen ? ctx->cfg->listen : LISTEN_DEFAULT, &sa, &salen, err);
    if (rc) return rc;
    s = calloc(1, sizeof *s);
    if (!s) return ss_fail(err, SS_ERR_NOMEM, "server: out of memory");
    s->ctx = *ctx;
    s->secret = sodium_malloc(LD_SECRET_LEN);
    if (!s->secret) {
        free(s);
        return ss_fail(err, SS_ERR_NOMEM, "server: out of memory");
    }
    rc = ld_state_secret(ctx->state, s->secret, err);
    if (rc) goto fail;
    if (ctx->cfg->cert) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            rc = ss_fail(err, SS_ERR_INVALID, "this libmicrohttpd has no TLS support");
            goto fail;
        }
        rc = read_pem(ctx->cfg->cert, &s->cert_pem, err);
        if (rc) goto fail;
        rc = read_pem(ctx->cfg->key, &s->key_pem, err);
        if (rc) goto fail;
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
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY, NULL};
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
                     ctx->cfg->listen ? ctx->cfg->listen : LISTEN_DEFAULT);
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
