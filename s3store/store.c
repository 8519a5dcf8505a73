/*
 * store: the generic half of s3store. Picks a backend by URL scheme and
 * turns the buffer, file and stream flavours of put and get into the one
 * streaming call each backend implements, so backends never duplicate them.
 * Also runs ss_xfer for backends without a parallel engine.
 */
#include "store_impl.h"
#include "ss_buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const ss_store_ops *const backends[] = {&ss_store_file_ops, &ss_store_s3_ops,
                                               &ss_store_lockd_ops};

/*
 * The backend of url and what it opens: "SCHEME://REST" gives REST;
 * "SCHEME:INNER://REST" gives the nested URL "INNER://REST" whole, for a
 * backend that nests (lockd:http://...). NULL when no backend fits.
 */
static const ss_store_ops *pick_backend(const char *url, const char **ret_location)
{
    const char *sep = strstr(url, "://"), *colon;
    size_t n;
    if (!sep) return NULL;
    n = (size_t)(sep - url);
    colon = memchr(url, ':', n);
    *ret_location = colon ? colon + 1 : sep + 3;
    if (colon) n = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (strlen(backends[i]->scheme) == n && !strncmp(url, backends[i]->scheme, n) &&
            (backends[i]->nested != 0) == (colon != NULL))
            return backends[i];
    return NULL;
}

ss_rc ss_store_open(const char *url, const ss_store_opts *opts, ss_store **ret_store, ss_err *err)
{
    static const ss_store_opts no_opts;
    ss_store *s = NULL;
    const char *location = NULL;
    ss_rc rc;

    *ret_store = NULL;
    if (!url || !strstr(url, "://"))
        return ss_fail(err, SS_ERR_INVALID,
                       "store URL '%s': expected s3://, file:// or lockd:http(s)://",
                       url ? url : "");
    s = calloc(1, sizeof *s);
    if (!s) return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", url);
    s->ops = pick_backend(url, &location);
    if (!s->ops) {
        rc = ss_fail(err, SS_ERR_INVALID,
                     "store URL '%s': unknown scheme (s3://, file:// or lockd:http(s)://)", url);
        goto fail;
    }
    s->url = strdup(url);
    if (!s->url) {
        rc = ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", url);
        goto fail;
    }
    if (!opts) opts = &no_opts;
    s->max_parallel = opts->max_parallel ? opts->max_parallel : 8;
    rc = s->ops->open(s, location, opts, err);
    if (rc) goto fail;
    *ret_store = s;
    return SS_OK;
fail:
    free(s ? s->url : NULL);
    free(s);
    return rc;
}

void ss_store_free(ss_store *store)
{
    if (!store) return;
    store->ops->close(store);
    free(store->url);
    free(store);
}

const char *ss_store_url(const ss_store *store)
{
    return store->url;
}

const ss_store_counters *ss_store_counts(const ss_store *store)
{
    return &store->counts;
}

const char *ss_req_class_name(unsigned cls)
{
    static const char *const names[SS_REQ_CLASSES] = {"put",    "get",  "list",
                                                      "delete", "head", "lockd"};
    return cls < SS_REQ_CLASSES ? names[cls] : NULL;
}

void ss_store_set_budget(ss_store *store, uint64_t max)
{
    store->counts.budget = max;
}

ss_rc ss_store_charge(ss_store_counters *c, ss_req_class cls, const char *op, const char *key,
                      ss_err *err)
{
    /* lockd's own calls are no bucket's to bill, and releasing a lease must never be refused. */
    if (c->budget && cls != SS_REQ_LOCKD && c->requests - c->by_class[SS_REQ_LOCKD] >= c->budget)
        return ss_fail(
            err, SS_ERR_TEMPORARY,
            "%s %s: the request budget of %llu is spent (--max-requests, config "
            "max_requests); stopped before it, with nothing half applied or half published: the "
            "next run goes on",
            op, key, (unsigned long long)c->budget);
    c->requests++;
    c->by_class[cls]++;
    return SS_OK;
}

uint64_t ss_store_requests(const ss_store *store)
{
    return store->counts.requests;
}

/* --- readers and writers shared by the flavours ------------------------- */

static long mem_read(void *ctx, void *buf, size_t len)
{
    ss_mem_reader *m = ctx;
    size_t n = m->len - m->pos < len ? m->len - m->pos : len;
    memcpy(buf, m->buf + m->pos, n);
    m->pos += n;
    return (long)n;
}

static int mem_rewind(void *ctx)
{
    ((ss_mem_reader *)ctx)->pos = 0;
    return 0;
}

void ss_mem_reader_init(ss_mem_reader *m, const void *buf, size_t len, ss_store_reader *ret_rd)
{
    m->buf = buf;
    m->len = len;
    m->pos = 0;
    ret_rd->read = mem_read;
    ret_rd->rewind = mem_rewind;
    ret_rd->ctx = m;
}

typedef struct fd_reader {
    int fd;
    uint64_t start, pos, end;
} fd_reader;

static long fd_read(void *ctx, void *buf, size_t len)
{
    fd_reader *f = ctx;
    ssize_t n;
    if (len > f->end - f->pos) len = (size_t)(f->end - f->pos);
    if (!len) return 0;
    do
        n = pread(f->fd, buf, len, (off_t)f->pos);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return -1; /* 0 here means the file shrank under us */
    f->pos += (uint64_t)n;
    return (long)n;
}

static int fd_rewind(void *ctx)
{
    fd_reader *f = ctx;
    f->pos = f->start;
    return 0;
}

/* A sink comparing what arrives with the bytes we put: nothing is kept. */
typedef struct same_bytes {
    const unsigned char *want;
    size_t len, got;
} same_bytes;

static int same_sink(void *ctx, const void *data, size_t n)
{
    same_bytes *s = ctx;
    if (n > s->len - s->got || memcmp(s->want + s->got, data, n)) return -1; /* another object */
    s->got += n;
    return 0;
}

ss_rc ss_store_resolve_412(ss_store *s, const char *key, const void *buf, size_t len, ss_rc rc,
                           unsigned attempts, unsigned flags, ss_err *err)
{
    same_bytes sb = {buf, len, 0};
    if (rc != SS_ERR_EXISTS || !(flags & SS_PUT_CREATE_ONLY) || attempts < 2 || !buf) return rc;
    /* Compared as it streams: the object is read no further than our own length. */
    if (!ss_store_get_stream(s, key, 0, SS_TO_END, same_sink, &sb, NULL) && sb.got == len)
        return SS_OK;
    return ss_fail(err, rc, "put %s: object exists", key);
}

int ss_xfer_dst_write(void *ctx, const void *buf, size_t len)
{
    ss_xfer_dst *d = ctx;
    if (len > d->op->len - d->got) { /* longer than asked: not what we want, nor read further */
        d->over = 1;
        return -1;
    }
    memcpy((unsigned char *)d->op->dst + d->got, buf, len);
    d->got += len;
    return 0;
}

void ss_xfer_settle(ss_store *s, ss_xfer_op *op, const ss_xfer_dst *dst, ss_rc rc,
                    const ss_err *err, unsigned attempts)
{
    op->rc = rc;
    if (rc && err) op->err = *err;
    if (!op->is_put && dst->over)
        op->rc = ss_fail(&op->err, SS_ERR_INTEGRITY, "GET %s: more than the %zu bytes asked for",
                         op->key, op->len);
    else if (!op->rc && !op->is_put && dst->got != op->len)
        op->rc = ss_fail(&op->err, SS_ERR_INTEGRITY, "GET %s: %zu of %zu bytes at offset %llu",
                         op->key, dst->got, op->len, (unsigned long long)op->off);
    if (op->is_put)
        op->rc = ss_store_resolve_412(s, op->key, op->buf, op->len, op->rc, attempts, op->flags,
                                      &op->err);
}

static ss_rc check_key(const char *key, ss_err *err)
{
    if (!key || !*key) return ss_fail(err, SS_ERR_INVALID, "empty object key");
    return SS_OK;
}

/* --- the public flavours -------------------------------------------------- */

ss_rc ss_store_put(ss_store *store, const char *key, const void *buf, size_t len, unsigned flags,
                   ss_err *err)
{
    ss_mem_reader m;
    ss_store_reader rd;
    ss_rc rc;
    if (check_key(key, err)) return SS_ERR_INVALID;
    ss_mem_reader_init(&m, buf, len, &rd);
    rc = store->ops->put(store, key, len, &rd, buf, flags, NULL, NULL, err);
    if (!rc) ss_source_note(store, key, buf, len, 1);
    return rc;
}

ss_rc ss_store_put_file(ss_store *store, const char *key, int fd, uint64_t off, uint64_t len,
                        unsigned flags, ss_err *err)
{
    return ss_store_put_file_stat(store, key, fd, off, len, flags, NULL, err);
}

ss_rc ss_store_put_file_stat(ss_store *store, const char *key, int fd, uint64_t off, uint64_t len,
                             unsigned flags, ss_store_stat *ret_stat, ss_err *err)
{
    fd_reader f = {fd, off, off, off + len};
    ss_store_reader rd = {fd_read, fd_rewind, &f};
    ss_rc rc;
    if (ret_stat) memset(ret_stat, 0, sizeof *ret_stat);
    if (check_key(key, err)) return SS_ERR_INVALID;
    rc = store->ops->put(store, key, len, &rd, NULL, flags, NULL, ret_stat, err);
    if (!rc) ss_source_note_fd(store, key, fd, off, len);
    return rc;
}

ss_rc ss_store_put_if(ss_store *store, const char *key, const void *buf, size_t len,
                      const char *etag, ss_store_stat *ret_stat, ss_err *err)
{
    ss_mem_reader m;
    ss_store_reader rd;
    if (ret_stat) memset(ret_stat, 0, sizeof *ret_stat);
    if (check_key(key, err)) return SS_ERR_INVALID;
    if (!etag || !*etag)
        return ss_fail(err, SS_ERR_INVALID, "put %s: compare-and-swap without an ETag", key);
    if (store->ops->leased)
        return ss_fail(err, SS_ERR_INVALID, "put %s: %s cannot compare-and-swap", key, store->url);
    ss_mem_reader_init(&m, buf, len, &rd);
    /* Not told to a source: it serves immutable objects, and this one is meant to change. */
    return store->ops->put(store, key, len, &rd, buf, 0, etag, ret_stat, err);
}

ss_rc ss_store_put_stream(ss_store *store, const char *key, uint64_t len,
                          const ss_store_reader *body, unsigned flags, ss_err *err)
{
    if (check_key(key, err)) return SS_ERR_INVALID;
    return store->ops->put(store, key, len, body, NULL, flags, NULL, NULL, err);
}

/* A sink into memory that takes at most max bytes. */
typedef struct capped {
    ss_buf buf;
    size_t max;
    int over;
} capped;

static int capped_sink(void *ctx, const void *data, size_t len)
{
    capped *c = ctx;
    if (len > c->max - c->buf.len) {
        c->over = 1;
        return -1; /* stops the transfer: the rest is never read */
    }
    return ss_buf_append(&c->buf, data, len);
}

/*
 * [off, off+len) into memory, at most max bytes of it. ret_stat (may be NULL): the
 * object's ETag; a source, which knows none, is then not asked.
 */
static ss_rc get_capped(ss_store *store, const char *key, uint64_t off, uint64_t len, size_t max,
                        void **ret_buf, size_t *ret_len, ss_store_stat *ret_stat, ss_err *err)
{
    capped c = {.max = max};
    ss_store_stat st = {0};
    ss_rc rc;

    *ret_buf = NULL;
    *ret_len = 0;
    if (ret_stat) memset(ret_stat, 0, sizeof *ret_stat);
    if (check_key(key, err)) return SS_ERR_INVALID;
    if (!ret_stat && ss_source_get(store, key, off, len, capped_sink, &c)) goto done;
    ss_buf_free(&c.buf); /* what a source that failed may have left */
    c = (capped){.max = max};
    rc = store->ops->get(store, key, off, len, capped_sink, &c, ret_stat ? &st : NULL, err);
    if (c.over) {
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "GET %s from %s: more than %zu bytes, the most this read takes: refused", key,
                     store->url, max);
        goto fail;
    }
    if (rc) goto fail;
    if (!off && !ret_stat) ss_source_note(store, key, c.buf.p, c.buf.len, 0);
done:
    if (ss_buf_append(&c.buf, "", 0)) {
        rc = ss_fail(err, SS_ERR_NOMEM, "get %s: out of memory", key);
        goto fail;
    }
    *ret_buf = c.buf.p;
    *ret_len = c.buf.len;
    if (ret_stat) {
        *ret_stat = st;
        ret_stat->size = c.buf.len;
    }
    return SS_OK;
fail:
    ss_buf_free(&c.buf);
    return rc;
}

ss_rc ss_store_get(ss_store *store, const char *key, uint64_t off, uint64_t len, void **ret_buf,
                   size_t *ret_len, ss_err *err)
{
    size_t max = len < SS_CAP_GET_WHOLE ? (size_t)len : SS_CAP_GET_WHOLE;
    return get_capped(store, key, off, len, max, ret_buf, ret_len, NULL, err);
}

ss_rc ss_store_get_max(ss_store *store, const char *key, size_t max, void **ret_buf,
                       size_t *ret_len, ss_err *err)
{
    return get_capped(store, key, 0, SS_TO_END, max, ret_buf, ret_len, NULL, err);
}

ss_rc ss_store_get_stat(ss_store *store, const char *key, size_t max, void **ret_buf,
                        size_t *ret_len, ss_store_stat *ret_stat, ss_err *err)
{
    return get_capped(store, key, 0, SS_TO_END, max, ret_buf, ret_len, ret_stat, err);
}

ss_rc ss_store_get_stream(ss_store *store, const char *key, uint64_t off, uint64_t len,
                          ss_store_write_fn write, void *ctx, ss_err *err)
{
    if (check_key(key, err)) return SS_ERR_INVALID;
    if (ss_source_get(store, key, off, len, write, ctx)) return SS_OK;
    return store->ops->get(store, key, off, len, write, ctx, NULL, err);
}

ss_rc ss_store_get_file(ss_store *store, const char *key, uint64_t off, uint64_t len, int fd,
                        ss_err *err)
{
    return ss_store_get_stream(store, key, off, len, ss_fd_sink, &fd, err);
}

ss_rc ss_store_head(ss_store *store, const char *key, ss_store_stat *ret_stat, ss_err *err)
{
    memset(ret_stat, 0, sizeof *ret_stat);
    if (check_key(key, err)) return SS_ERR_INVALID;
    return store->ops->head(store, key, ret_stat, err);
}

ss_rc ss_store_delete(ss_store *store, const char *key, ss_err *err)
{
    if (check_key(key, err)) return SS_ERR_INVALID;
    return store->ops->del(store, key, err);
}

size_t ss_store_delete_batch_max(const ss_store *store)
{
    return store->ops->del_batch ? SS_DELETE_BATCH_MAX : 1;
}

ss_rc ss_store_delete_batch(ss_store *store, const char *const *keys, size_t n, ss_err *err)
{
    size_t step = ss_store_delete_batch_max(store);
    ss_rc rc;
    for (size_t i = 0; i < n; i++)
        if (check_key(keys[i], err)) return SS_ERR_INVALID;
    for (size_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        rc = store->ops->del_batch ? store->ops->del_batch(store, keys + i, m, err)
                                   : store->ops->del(store, keys[i], err);
        if (rc) return rc;
    }
    return SS_OK;
}

ss_rc ss_store_list(ss_store *store, const char *prefix, const char *start_after,
                    ss_store_list_fn fn, void *ctx, ss_err *err)
{
    return store->ops->list(store, prefix ? prefix : "", start_after ? start_after : "", fn, ctx,
                            err);
}

ss_rc ss_store_writer(ss_store *store, const char *key, char *ret, size_t cap, ss_err *err)
{
    if (cap) ret[0] = '\0';
    if (!store->ops->writer || !cap)
        return ss_fail(err, SS_ERR_NOT_FOUND, "%s keeps no record of who wrote %s", store->url,
                       key);
    return store->ops->writer(store, key, ret, cap, err);
}

ss_rc ss_store_presign(ss_store *store, ss_presign_op op, const char *key, const char *start_after,
                       const ss_sigv4_header *headers, size_t n_headers, unsigned expires,
                       char **ret_url, ss_err *err)
{
    *ret_url = NULL;
    if (expires == 0 || expires > SS_SIGV4_MAX_EXPIRES)
        return ss_fail(err, SS_ERR_INVALID, "presign %s: expiry %u s outside 1..%u", key, expires,
                       SS_SIGV4_MAX_EXPIRES);
    if (!store->ops->presign)
        return ss_fail(err, SS_ERR_INVALID, "store %s cannot presign URLs", store->url);
    return store->ops->presign(store, op, key ? key : "", start_after ? start_after : "", headers,
                               n_headers, expires, ret_url, err);
}

/* --- parallel transfers --------------------------------------------------- */

/*
 * A GET is offered to the store's source first: one that can begin it
 * without waiting (begin/step: peers, each object from one) has it in
 * flight beside the store's own, under the same bound (max_parallel); one
 * that cannot is asked synchronously (get). What the source does not
 * deliver goes to the store.
 */
struct ss_xfer {
    ss_store *store;
    size_t in_flight; /* the store's and the source's */
    size_t at_source; /* of them, the source's */
    ss_rc first_rc;
    ss_err first_err;
};

#define SOURCE_STEP_MAX 16  /* ops a source step hands back at once */
#define SOURCE_POLL_MS 2    /* a wait on the source while the store has some in flight too */
#define SOURCE_WAIT_MS 1000 /* a wait on the source alone (it wakes as soon as one is over) */

ss_rc ss_xfer_new(ss_store *store, ss_xfer **ret_xfer, ss_err *err)
{
    *ret_xfer = NULL;
    ss_xfer *x = calloc(1, sizeof *x);
    if (!x) return ss_fail(err, SS_ERR_NOMEM, "transfer set: out of memory");
    x->store = store;
    *ret_xfer = x;
    return SS_OK;
}

static void finish_op(ss_xfer *x, ss_xfer_op *op)
{
    if (op->rc && !x->first_rc) {
        x->first_rc = op->rc;
        x->first_err = op->err;
    }
    if (!op->rc && (op->is_put || (!op->off && !op->from_source)))
        ss_source_note(x->store, op->key, op->is_put ? op->buf : op->dst, op->len, op->is_put);
    if (op->done) op->done(op->ctx, op->rc, &op->err);
    free(op->key);
    free(op);
}

/* The op by the store alone, synchronously (the source was asked already). */
static void run_sync(ss_store *s, ss_xfer_op *op)
{
    if (op->is_put) {
        ss_mem_reader m;
        ss_store_reader rd;
        ss_mem_reader_init(&m, op->buf, op->len, &rd);
        op->rc = s->ops->put(s, op->key, op->len, &rd, op->buf, op->flags, NULL, NULL, &op->err);
        return;
    }
    ss_xfer_dst d = {op, 0, 0};
    ss_err err = {{0}};
    if (!op->len) return;
    ss_rc rc = check_key(op->key, &err);
    if (rc) goto done;
    rc = s->ops->get(s, op->key, op->off, op->len, ss_xfer_dst_write, &d, NULL, &err);
done:
    ss_xfer_settle(s, op, &d, rc, &err, 1);
}

/* The op to the store (in_flight counts it already): 1 when it is over, 0 begun on its engine. */
static int to_store(ss_xfer *x, ss_xfer_op *op)
{
    ss_store *s = x->store;
    if (s->ops->xfer_start && (op->is_put || op->len) && !s->ops->xfer_start(s, op)) return 0;
    if (!s->ops->xfer_start || (!op->is_put && !op->len)) run_sync(s, op);
    x->in_flight--;
    finish_op(x, op);
    return 1;
}

/* The store's engine's finished ops delivered; how many. */
static size_t store_step(ss_xfer *x, int block)
{
    ss_xfer_op *done = NULL;
    size_t n = 0;
    x->store->ops->xfer_step(x->store, block, &done);
    while (done) {
        ss_xfer_op *next = done->next;
        x->in_flight--;
        finish_op(x, done);
        done = next;
        n++;
    }
    return n;
}

/* The source's finished ops delivered, or handed to the store; how many are over. */
static size_t source_step(ss_xfer *x, int wait_ms)
{
    ss_store *s = x->store;
    void *tags[SOURCE_STEP_MAX];
    int ok[SOURCE_STEP_MAX];
    size_t n = s->source.step(s->source.ctx, x, wait_ms, tags, ok, SOURCE_STEP_MAX), done = 0;
    for (size_t i = 0; i < n; i++) {
        ss_xfer_op *op = tags[i];
        x->at_source--;
        if (!ok[i]) { /* the store, as if the source had never been asked */
            done += (size_t)to_store(x, op);
            continue;
        }
        op->from_source = 1;
        s->bytes_source += op->len;
        x->in_flight--;
        finish_op(x, op);
        done++;
    }
    return done;
}

/* Deliver finished ops; block for at least one when asked. */
static void xfer_step(ss_xfer *x, int block)
{
    for (;;) {
        size_t done = 0, at_store = x->in_flight - x->at_source;
        if (x->at_source)
            done += source_step(x, !block ? 0 : at_store ? SOURCE_POLL_MS : SOURCE_WAIT_MS);
        at_store = x->in_flight - x->at_source;
        if (at_store) done += store_step(x, block && !x->at_source && !done);
        if (!block || done || !x->in_flight) return;
    }
}

/* Exactly the op's len bytes into its dst, from a source. */
static int exact_sink(void *ctx, const void *buf, size_t len)
{
    ss_xfer_op *op = ctx;
    if (len > op->len - op->got) return -1;
    memcpy((uint8_t *)op->dst + op->got, buf, len);
    op->got += len;
    return 0;
}

static int from_source(ss_store *s, ss_xfer_op *op)
{
    op->got = 0;
    if (op->is_put || !op->len || !ss_source_get(s, op->key, op->off, op->len, exact_sink, op))
        return 0;
    if (op->got == op->len) {
        op->from_source = 1;
        return 1;
    }
    s->bytes_source -= op->got; /* short: the store is asked, as if nothing came */
    return 0;
}

static ss_rc xfer_submit(ss_xfer *x, ss_xfer_op *op)
{
    ss_store *s = x->store;
    int begin = s->source.begin && !op->is_put && op->len;
    if (!begin && from_source(s, op)) {
        finish_op(x, op);
        return SS_OK;
    }
    if (begin || (s->ops->xfer_start && (op->is_put || op->len)))
        while (x->in_flight >= s->max_parallel)
            xfer_step(x, 1);
    x->in_flight++;
    if (begin && !s->source.begin(s->source.ctx, x, op->key, op->off, op->len, op->dst, op)) {
        x->at_source++;
        xfer_step(x, 0);
        return SS_OK;
    }
    to_store(x, op);
    if (s->ops->xfer_start) xfer_step(x, 0);
    return SS_OK;
}

static ss_xfer_op *new_op(const char *key, ss_xfer_done_fn done, void *ctx)
{
    ss_xfer_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->key = strdup(key);
    if (!op->key) {
        free(op);
        return NULL;
    }
    op->done = done;
    op->ctx = ctx;
    return op;
}

ss_rc ss_xfer_put(ss_xfer *x, const char *key, const void *buf, size_t len, unsigned flags,
                  ss_xfer_done_fn done, void *ctx)
{
    ss_xfer_op *op = new_op(key, done, ctx);
    if (!op) return SS_ERR_NOMEM;
    op->is_put = 1;
    op->buf = buf;
    op->len = len;
    op->flags = flags;
    return xfer_submit(x, op);
}

ss_rc ss_xfer_get(ss_xfer *x, const char *key, uint64_t off, size_t len, void *dst,
                  ss_xfer_done_fn done, void *ctx)
{
    ss_xfer_op *op = new_op(key, done, ctx);
    if (!op) return SS_ERR_NOMEM;
    op->dst = dst;
    op->off = off;
    op->len = len;
    return xfer_submit(x, op);
}

ss_rc ss_xfer_wait(ss_xfer *x, ss_err *err)
{
    ss_rc rc;
    while (x->in_flight)
        xfer_step(x, 1);
    rc = x->first_rc;
    if (rc && err) *err = x->first_err;
    x->first_rc = SS_OK;
    return rc;
}

void ss_xfer_free(ss_xfer *x)
{
    if (!x) return;
    ss_xfer_wait(x, NULL);
    free(x);
}
