/*
 * store_lockd: the lockd:http(s)://HOST:PORT/REPO backend. The device holds
 * no bucket credentials: s3sync-lockd (docs/PROTOCOL.md) hands it presigned
 * URLs, which run on the s3_http engine like the s3 backend's requests;
 * lockd_client.c makes the lockd calls on the same engine, so retries,
 * deadlines, kept-alive connections and the request counters are shared.
 *
 * Owns: the lockd client (token, lease) and a cache of presigned GET URLs,
 * reused for 80% of their lifetime (a pull reads many chunks of one pack).
 * Puts are create-only under the lease (the first put acquires it); the put
 * of log/<seq> is followed by the commit that releases it (the protocol's
 * rule). log/ is listed from lockd's head, not the bucket: lockd's head
 * defines the committed log, and an idle pull costs one request (which also
 * brings log/<head>'s ETag, for the engine's fork check).
 */
#include "lockd_client.h"
#include "store_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_CACHE_MAX 256
/* A refused PUT URL this close to its expiry (or past it) is taken as expired: expires_in
 * counts whole seconds from lockd's clock, which the bucket's may be a little ahead of. */
#define URL_EXPIRY_SLACK_MS 2000

typedef struct url_entry {
    char *key, *url;
    int64_t fresh_until_ms; /* monotonic: 80% of the URL's lifetime */
    struct url_entry *next;
} url_entry;

typedef struct lk_store {
    s3_http *http;
    lk_client k;
    url_entry *urls; /* most recently used first */
    size_t n_urls;
} lk_store;

/* One object request, to a presigned URL. */
typedef struct lk_call {
    s3_req req;
    char *url;
    int create_only;       /* If-None-Match: *, signed into every PUT URL */
    int64_t expires_at_ms; /* PUT: s3_now_ms() when the bucket stops taking the URL */
    ss_buf resp;           /* LIST: the page */
    ss_mem_reader mem;
    ss_store_reader rd;
    ss_xfer_dst dst; /* parallel transfer this call serves (dst.op), or NULL */
} lk_call;

static lk_store *lk_of(ss_store *s)
{
    return s->impl;
}

static lk_client *client_of(ss_store *s)
{
    return &lk_of(s)->k;
}

/* 1 when key is log/<20 digits>, its sequence in *ret_seq. */
static int log_key(const char *key, uint64_t *ret_seq)
{
    const char *d = key + strlen(LK_LOG_PREFIX);
    if (strncmp(key, LK_LOG_PREFIX, strlen(LK_LOG_PREFIX)) || strlen(d) != LK_SEQ_DIGITS ||
        strspn(d, "0123456789") != LK_SEQ_DIGITS)
        return 0;
    *ret_seq = strtoull(d, NULL, 10);
    return 1;
}

/* The sequence a log/<seq> or data/<seq>-<hex> key is written for, else 0. */
static uint64_t write_seq(const char *key)
{
    uint64_t seq = 0;
    if (log_key(key, &seq)) return seq;
    if (strncmp(key, LK_DATA_PREFIX, strlen(LK_DATA_PREFIX)) ||
        strspn(key + strlen(LK_DATA_PREFIX), "0123456789") != LK_SEQ_DIGITS ||
        key[strlen(LK_DATA_PREFIX) + LK_SEQ_DIGITS] != '-')
        return 0;
    return strtoull(key + strlen(LK_DATA_PREFIX), NULL, 10);
}

/* --- requests ------------------------------------------------------------------- */

static ss_rc sign_call(void *ctx, s3_req *r, char **ret_url, struct curl_slist **ret_headers)
{
    lk_call *c = ctx;
    struct curl_slist *l = NULL;
    *ret_url = strdup(c->url);
    if (!*ret_url) goto nomem;
    if (c->create_only && s3_header_add(&l, "If-None-Match", "*")) goto nomem;
    *ret_headers = l;
    return SS_OK;
nomem: /* the URL stays on the request, which frees it */
    return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: out of memory", r->op, r->key);
}

static void call_free(lk_call *c)
{
    if (!c) return;
    s3_req_cleanup(&c->req);
    free(c->url);
    ss_buf_free(&c->resp);
    free(c);
}

/* A PUT or GET of key through url (taken, even on failure); body or sink set by the caller. */
static lk_call *object_call(int put, const char *key, char *url)
{
    lk_call *c = url ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        free(url);
        return NULL;
    }
    c->url = url;
    c->create_only = put;
    c->req = (s3_req){.method = put ? "PUT" : "GET",
                      .op = put ? "PUT" : "GET",
                      .key = key,
                      .sign = sign_call,
                      .sign_ctx = c,
                      .user = c};
    return c;
}

/* Run an object request; its rc, err set on failure. */
static ss_rc run_call(ss_store *s, lk_call *c, ss_err *err)
{
    return s3_http_call(lk_of(s)->http, &c->req, err);
}

/* --- presigned URLs ---------------------------------------------------------------- */

static void url_entry_free(url_entry *e)
{
    free(e->key);
    free(e->url);
    free(e);
}

/* A GET URL for key (malloc'ed): from the cache while fresh, else presigned. */
static ss_rc get_url(ss_store *s, const char *key, char **ret_url, ss_err *err)
{
    lk_store *lk = lk_of(s);
    url_entry **pp = &lk->urls, *e = NULL;
    json_t *ans = NULL;
    char *url = NULL;
    ss_rc rc;

    *ret_url = NULL;
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, key)) break;
    if (*pp) { /* unlink; back in front when still fresh */
        e = *pp;
        *pp = e->next;
        lk->n_urls--;
        if (s3_now_ms() >= e->fresh_until_ms) {
            url_entry_free(e);
            e = NULL;
        }
    }
    if (!e) {
        lk_lease_keep(client_of(s), NULL); /* a failure here is the next write's business */
        lk_answer_presigned got;
        rc = lk_presign(client_of(s), json_pack("{s:s, s:[s]}", "op", "get", "keys", key), key,
                        &url, &ans, err);
        lk_answer_parse_presigned(ans, &got);
        json_decref(ans);
        if (rc) return rc;
        e = calloc(1, sizeof *e);
        if (e) e->key = strdup(key);
        if (!e || !e->key) {
            free(url);
            if (e) url_entry_free(e);
            return ss_fail(err, SS_ERR_NOMEM, "GET %s: out of memory", key);
        }
        e->url = url;
        e->fresh_until_ms = s3_now_ms() + got.reuse_ms;
    }
    e->next = lk->urls;
    lk->urls = e;
    if (++lk->n_urls > URL_CACHE_MAX) { /* drop the least recently used */
        url_entry **last = &lk->urls;
        while ((*last)->next)
            last = &(*last)->next;
        url_entry_free(*last);
        *last = NULL;
        lk->n_urls--;
    }
    *ret_url = strdup(e->url);
    return *ret_url ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "GET %s: out of memory", key);
}

/*
 * A PUT URL for key (malloc'ed), under the lease (acquired or renewed first);
 * *ret_expires_at_ms: when it expires (s3_now_ms).
 */
static ss_rc put_url(ss_store *s, const char *key, unsigned flags, char **ret_url,
                     int64_t *ret_expires_at_ms, ss_err *err)
{
    lk_store *lk = lk_of(s);
    lk_answer_presigned got;
    json_t *ans = NULL;
    uint64_t seq = write_seq(key);
    ss_rc rc;
    *ret_url = NULL;
    *ret_expires_at_ms = 0;
    if (!(flags & SS_PUT_CREATE_ONLY))
        return ss_fail(err, SS_ERR_INVALID, "PUT %s: %s only creates objects, never overwrites",
                       key, s->url);
    if (seq && seq == lk->k.taken_seq)
        return ss_fail(err, SS_ERR_EXISTS,
                       "PUT %s: sequence %llu was refused; pulling and rebuilding", key,
                       (unsigned long long)seq);
    rc = lk_lease_need(&lk->k, err);
    if (rc) return rc;
    rc = lk_presign(client_of(s),
                    json_pack("{s:s, s:[s], s:s, s:I}", "op", "put", "keys", key, "lease_id",
                              lk->k.lease_id, "fencing_token", lk->k.fencing),
                    key, ret_url, &ans, err);
    rc = lk_refused(&lk->k, ans, rc, seq, err);
    if (rc) goto out;
    if (!lk_answer_parse_presigned(ans, &got)) *ret_expires_at_ms = s3_now_ms() + got.expires_ms;
out:
    json_decref(ans);
    return rc;
}

/*
 * A PUT that the bucket refused (403) once its URL had expired: this device
 * was stopped or asleep past its lease (PROTOCOL.md "The s3sync client"), so
 * its lease is as good as gone and nothing of the sequence can commit. The
 * lease goes back (or is forgotten, taken over meanwhile), the sequence's
 * other writes stop, and the engine pulls and rebuilds (SS_ERR_EXISTS) on a
 * lease of its own again. A 403 on a URL still in date is a refusal: rc.
 */
static ss_rc put_refused(ss_store *s, const lk_call *c, const char *key, ss_rc rc, ss_err *err)
{
    if (rc != SS_ERR_AUTH || !c->expires_at_ms ||
        s3_now_ms() < c->expires_at_ms - URL_EXPIRY_SLACK_MS)
        return rc;
    lk_lease_release(client_of(s));
    client_of(s)->taken_seq = write_seq(key);
    return ss_fail(err, SS_ERR_EXISTS,
                   "PUT %s: refused once its URL had expired (this device was stopped or asleep "
                   "past its lease); pulling and rebuilding",
                   key);
}

/* After a PUT: log/<seq> is committed; a 412 there means the sequence is taken. */
static ss_rc after_put(ss_store *s, const char *key, ss_rc rc, ss_err *err)
{
    uint64_t seq = 0;
    if (!log_key(key, &seq)) return rc;
    if (rc == SS_ERR_EXISTS) { /* PROTOCOL.md: release, pull, start again */
        lk_lease_release(client_of(s));
        client_of(s)->taken_seq = seq;
    }
    return rc ? rc : lk_commit(client_of(s), seq, err);
}

/* --- operations ---------------------------------------------------------------------- */

static ss_rc lk_put(ss_store *s, const char *key, uint64_t len, const ss_store_reader *body,
                    const void *buf, unsigned flags, const char *if_match, ss_store_stat *ret_stat,
                    ss_err *err)
{
    char *url = NULL;
    lk_call *c = NULL;
    unsigned attempts;
    int64_t expires_at_ms = 0;
    ss_rc rc;
    (void)if_match; /* never set: ss_store_put_if refuses a leased store before */
    rc = put_url(s, key, flags, &url, &expires_at_ms, err);
    if (rc) return rc;
    c = object_call(1, key, url);
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "PUT %s: out of memory", key);
    c->expires_at_ms = expires_at_ms;
    c->req.body = body;
    c->req.body_len = len;
    rc = run_call(s, c, err);
    rc = put_refused(s, c, key, rc, err);
    attempts = c->req.attempts;
    if (!rc && ret_stat) s3_req_put_stat(&c->req, len, ret_stat);
    call_free(c);
    rc = ss_store_resolve_412(s, key, buf, (size_t)len, rc, attempts, flags, err);
    return after_put(s, key, rc, err);
}

static ss_rc lk_get(ss_store *s, const char *key, uint64_t off, uint64_t len,
                    ss_store_write_fn write, void *ctx, ss_store_stat *ret_stat, ss_err *err)
{
    char *url = NULL;
    lk_call *c = NULL;
    ss_rc rc;
    if (len == 0) return SS_OK;
    rc = get_url(s, key, &url, err);
    if (rc) return rc;
    c = object_call(0, key, url);
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "GET %s: out of memory", key);
    s3_req_get_range(&c->req, off, len, write, ctx);
    rc = run_call(s, c, err);
    if (!rc && ret_stat) memcpy(ret_stat->etag, c->req.etag, sizeof ret_stat->etag);
    call_free(c);
    return rc;
}

/* --- doctor's steps (ss_store_lockd_check) ---------------------------------------- */

ss_rc ss_store_lockd_step(ss_store *s, ss_lockd_check what, ss_err *err)
{
    static const char body[] = "s3sync doctor: never written";
    lk_client *k = client_of(s);
    json_t *ans = NULL;
    ss_store_stat st;
    ss_rc rc;
    if (what == SS_LOCKD_HEAD) {
        rc = lk_api(k, "GET", "GET head", "/head", NULL, &ans, err);
        json_decref(ans);
        return rc;
    }
    if (what == SS_LOCKD_LEASE) {
        rc = lk_lease_need(k, err);
        if (!rc) lk_lease_release(k);
        return rc;
    }
    /* config exists, so the create-only PUT can only be refused: 412 if the bucket took it. */
    rc = ss_store_head(s, "config", &st, err);
    if (rc) return rc;
    rc = ss_store_put(s, "config", body, sizeof body - 1, SS_PUT_CREATE_ONLY, err);
    lk_lease_release(k);
    if (rc == SS_ERR_EXISTS) return SS_OK;
    if (rc) return rc;
    return ss_fail(err, SS_ERR_STORE, "%s: the bucket let a presigned PUT replace config", s->url);
}

/* No presigned HEAD: a GET of the first byte, its size from Content-Range. */
static ss_rc lk_head(ss_store *s, const char *key, ss_store_stat *ret_stat, ss_err *err)
{
    char *url = NULL;
    lk_call *c = NULL;
    ss_rc rc = get_url(s, key, &url, err);
    if (rc) return rc;
    c = object_call(0, key, url);
    if (!c) return ss_fail(err, SS_ERR_NOMEM, "HEAD %s: out of memory", key);
    c->req.op = "HEAD";
    c->req.use_range = 1;
    c->req.range_len = 1;
    rc = run_call(s, c, err);
    if (!rc) {
        /* 206: bytes 0-0/N; 416 (an empty object): bytes STAR/0; 200: the whole object came. */
        ret_stat->size = c->req.has_range_total ? c->req.range_total
                         : c->req.status == 416 ? 0
                                                : c->req.content_length;
        memcpy(ret_stat->etag, c->req.etag, sizeof ret_stat->etag);
    }
    call_free(c);
    return rc;
}

static ss_rc lk_del(ss_store *s, const char *key, ss_err *err)
{
    return ss_fail(err, SS_ERR_INVALID, "DELETE %s: %s cannot delete (lockd signs no DELETE)", key,
                   s->url);
}

/*
 * log/ after start_after, from lockd's head: the keys (after, head]. Their
 * stat is unknown (zero), but for log/<head> when lockd tells its ETag.
 */
static ss_rc list_log(ss_store *s, uint64_t after, ss_store_list_fn fn, void *ctx, ss_err *err)
{
    json_t *ans = NULL;
    uint64_t head = 0;
    ss_store_stat none = {0}, top;
    ss_rc rc;
    lk_lease_keep(client_of(s), NULL);
    client_of(s)->taken_seq = 0; /* the engine pulls: it may write again */
    rc = lk_api(client_of(s), "GET", "GET head", "/head", NULL, &ans, err);
    if (rc) goto fail;
    if (lk_answer_parse_head(ans, &head)) {
        rc = ss_fail(err, SS_ERR_STORE, "%s: GET head: no head in the answer", s->url);
        goto fail;
    }
    /* Each sequence listed becomes memory in the engine: a head beyond reason is a lie. */
    if (head > after && head - after > SS_CAP_LOCKD_LOG_AHEAD) {
        rc = ss_fail(err, SS_ERR_STORE,
                     "%s: GET head: head %llu is more than %u sequences past log/%0*llu, the most "
                     "one listing takes: refused",
                     s->url, (unsigned long long)head, SS_CAP_LOCKD_LOG_AHEAD, LK_SEQ_DIGITS,
                     (unsigned long long)after);
        goto fail;
    }
    lk_answer_parse_head_object(ans, &top);
    json_decref(ans);
    for (uint64_t n = after + 1; n <= head; n++) {
        char key[sizeof LK_LOG_PREFIX + LK_SEQ_DIGITS];
        snprintf(key, sizeof key, LK_LOG_PREFIX "%0*llu", LK_SEQ_DIGITS, (unsigned long long)n);
        if (fn(ctx, key, n == head ? &top : &none)) break;
    }
    return SS_OK;
fail:
    json_decref(ans);
    return rc;
}

/* One presigned LIST page of prefix after after; *page tells what follows. */
static ss_rc list_page(ss_store *s, const char *prefix, const char *after, ss_store_list_fn fn,
                       void *ctx, s3_page *page, ss_err *err)
{
    json_t *ans = NULL;
    char *url = NULL;
    lk_call *c = NULL;
    lk_answer_presigned got;
    ss_rc rc = lk_presign(
        client_of(s),
        json_pack("{s:s, s:s, s:s}", "op", "list", "prefix", prefix, "start_after", after), prefix,
        &url, &ans, err);
    if (rc) goto out;
    c = object_call(0, prefix, url);
    if (!c) {
        rc = ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", prefix);
        goto out;
    }
    c->req.op = "LIST";
    c->req.sink = ss_buf_sink;
    c->req.sink_ctx = &c->resp;
    c->req.whole_body = SS_CAP_LIST_PAGE;
    rc = run_call(s, c, err);
    if (rc) goto out;
    lk_answer_parse_presigned(ans, &got); /* accepted by lk_presign */
    rc = s3_list_page(&c->resp, got.key_prefix, prefix, fn, ctx, page, err);
out:
    call_free(c);
    json_decref(ans);
    return rc;
}

/* Any other prefix: presigned LIST URLs (signed queries: paged by start-after, not a token). */
static ss_rc list_pages(ss_store *s, const char *prefix, const char *start_after,
                        ss_store_list_fn fn, void *ctx, ss_err *err)
{
    char *after = strdup(start_after);
    ss_rc rc = SS_OK;
    if (!after) return ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", prefix);
    lk_lease_keep(client_of(s), NULL);
    for (;;) {
        s3_page page = {0};
        rc = list_page(s, prefix, after, fn, ctx, &page, err);
        free(page.next_token);
        free(after);
        after = page.last_key;
        if (rc || !page.truncated || page.stopped || !after) break;
    }
    free(after);
    return rc;
}

static ss_rc lk_list(ss_store *s, const char *prefix, const char *start_after, ss_store_list_fn fn,
                     void *ctx, ss_err *err)
{
    uint64_t after = 0;
    if (!strcmp(prefix, LK_LOG_PREFIX) && (!*start_after || log_key(start_after, &after)))
        return list_log(s, after, fn, ctx, err);
    return list_pages(s, prefix, start_after, fn, ctx, err);
}

/* GET writers/{seq}: the device lockd gave the PUT URLs of log/<seq> to. */
static ss_rc lk_writer(ss_store *s, const char *key, char *ret, size_t cap, ss_err *err)
{
    char route[64];
    json_t *ans = NULL;
    uint64_t seq = 0;
    ss_rc rc;
    if (!log_key(key, &seq))
        return ss_fail(err, SS_ERR_NOT_FOUND, "%s records writers of log/ only", s->url);
    snprintf(route, sizeof route, "/writers/%llu", (unsigned long long)seq);
    rc = lk_api(client_of(s), "GET", "GET writers", route, NULL, &ans, err);
    if (rc) goto out;
    if (lk_answer_parse_writers(ans, ret, cap)) {
        rc = ss_fail(err, SS_ERR_STORE, "%s: GET writers: not a list of device names", s->url);
        goto out;
    }
    if (!ret[0]) rc = ss_fail(err, SS_ERR_NOT_FOUND, "%s: nobody wrote %s", s->url, key);
out:
    json_decref(ans);
    return rc;
}

/* --- parallel transfers ---------------------------------------------------------------- */

static ss_rc lk_xfer_start(ss_store *s, ss_xfer_op *op)
{
    char *url = NULL;
    lk_call *c = NULL;
    int64_t expires_at_ms = 0;
    ss_rc rc = op->is_put ? put_url(s, op->key, op->flags, &url, &expires_at_ms, &op->err)
                          : get_url(s, op->key, &url, &op->err);
    if (rc) return op->rc = rc;
    c = object_call(op->is_put, op->key, url);
    if (!c) return op->rc = ss_fail(&op->err, SS_ERR_NOMEM, "%s: out of memory", op->key);
    c->expires_at_ms = expires_at_ms;
    s3_req_bind_xfer(&c->req, op, &c->mem, &c->rd, &c->dst);
    s3_http_start(lk_of(s)->http, &c->req);
    return SS_OK;
}

static ss_xfer_op *lk_xfer_done(ss_store *s, s3_req *done)
{
    lk_call *c = done->user;
    ss_xfer_op *op = c->dst.op;
    ss_xfer_settle(s, op, &c->dst, done->rc, &done->err, done->attempts);
    if (op->is_put) {
        op->rc = put_refused(s, c, op->key, op->rc, &op->err);
        op->rc = after_put(s, op->key, op->rc, &op->err);
    }
    call_free(c);
    return op;
}

static void lk_xfer_step(ss_store *s, int block, ss_xfer_op **ret_done)
{
    s3_http_xfer_step(s, lk_of(s)->http, block, lk_xfer_done, ret_done);
}

/* --- open and close ---------------------------------------------------------------------- */

static void lk_close(ss_store *s)
{
    lk_store *lk = lk_of(s);
    if (!lk) return;
    lk_client_clear(&lk->k); /* releases a held lease on the engine, so first */
    while (lk->urls) {
        url_entry *next = lk->urls->next;
        url_entry_free(lk->urls);
        lk->urls = next;
    }
    s3_http_free(lk->http);
    free(lk);
    s->impl = NULL;
}

/* location: "http(s)://HOST:PORT/REPO". */
static ss_rc lk_open(ss_store *s, const char *location, const ss_store_opts *opts, ss_err *err)
{
    lk_store *lk = calloc(1, sizeof *lk);
    const char *env = getenv("S3SYNC_TOKEN_FILE");
    const char *token = opts->token_file ? opts->token_file
                        : env && *env    ? env
                                         : opts->token_default;
    ss_rc rc;
    if (!lk) return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
    s->impl = lk;
    rc = s3_http_new(opts, &s->counts, &lk->http, err);
    if (rc) goto fail;
    rc = lk_client_init(&lk->k, s->url, location, token, lk->http, err);
    if (rc) goto fail;
    return SS_OK;
fail:
    lk_close(s);
    return rc;
}

const ss_store_ops ss_store_lockd_ops = {
    .scheme = "lockd",
    .nested = 1,
    .leased = 1,
    .open = lk_open,
    .close = lk_close,
    .put = lk_put,
    .get = lk_get,
    .head = lk_head,
    .del = lk_del,
    .list = lk_list,
    .writer = lk_writer,
    .xfer_start = lk_xfer_start,
    .xfer_step = lk_xfer_step,
};
