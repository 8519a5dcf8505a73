/*
 * ld_state.c: the generic half of lockd's state interface (ld_state.h): the
 * handle, opening the backend `state =` names, the calls that go to its ops
 * table, and the transitions that are the same on every backend (revoke,
 * mark dirty, rewind), each a decision run by one update.
 */
#include "ld_state.h"
#include "array.h"

#include <stdlib.h>
#include <string.h>

struct ld_state {
    const ld_state_ops *ops;
    void *impl; /* the backend's */
    int64_t skew_ms;
    int64_t stale_ms;
};

ss_rc ld_state_new(const ld_state_ops *ops, void *impl, int64_t skew_ms, int64_t stale_ms,
                   ld_state **ret, ss_err *err)
{
    ld_state *st = NULL;
    *ret = NULL;
    st = calloc(1, sizeof *st);
    if (!st) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    st->ops = ops;
    st->impl = impl;
    st->skew_ms = skew_ms;
    st->stale_ms = stale_ms;
    *ret = st;
    return SS_OK;
}

void *ld_state_impl(const ld_state *st)
{
    return st->impl;
}

const char *ld_state_scheme(const ld_state *st)
{
    return st->ops->scheme;
}

uint64_t ld_state_requests(ld_state *st)
{
    return st->ops->requests ? st->ops->requests(st) : 0;
}

int64_t ld_state_skew_ms(const ld_state *st)
{
    return st->skew_ms;
}

int64_t ld_state_stale_ms(const ld_state *st)
{
    return st->stale_ms;
}

void ld_state_close(ld_state *st)
{
    if (!st) return;
    if (st->ops->close) st->ops->close(st);
    free(st);
}

/* --- opening ------------------------------------------------------------------- */

/* The state's prefix must lie apart from every repository's (ld_state.h, ld_state_open). */
static ss_rc check_apart(const ld_config *cfg, const char *url, ss_err *err)
{
    for (size_t i = 0; i < cfg->n_repos; i++) {
        if (ld_url_overlaps(url, cfg->repos[i].url))
            return ss_fail(err, SS_ERR_INVALID,
                           "state %s overlaps repository %s (%s): lockd's objects need a prefix "
                           "of their own, which no device is given URLs for",
                           url, cfg->repos[i].name, cfg->repos[i].url);
    }
    return SS_OK;
}

static ss_rc open_bucket(const ld_config *cfg, const char *url, const ld_clock *clock,
                         const unsigned char *secret, ld_state **ret, ss_err *err)
{
    ss_store *store = NULL;
    ss_store_opts o;
    ld_state_s3_opts so = {.skew_ms = cfg->state_skew_ms,
                           .head_cache_ms = cfg->state_head_cache_ms,
                           .token_cache_ms = cfg->state_token_cache_ms,
                           .clock = clock,
                           .secret = secret};
    ss_rc rc = SS_OK;
    if (!strncmp(url, "s3://", 5)) rc = check_apart(cfg, url, err);
    if (rc) return rc;
    ld_config_store_opts(cfg, &o);
    rc = ss_store_open(url, &o, &store, err);
    if (rc) return rc;
    rc = ld_state_s3(store, &so, ret, err);
    if (rc) ss_store_free(store);
    return rc;
}

ss_rc ld_state_open(const ld_config *cfg, const ld_clock *clock, ld_state **ret, ss_err *err)
{
    return ld_state_open_with_secret(cfg, clock, NULL, ret, err);
}

ss_rc ld_state_open_with_secret(const ld_config *cfg, const ld_clock *clock,
                                const unsigned char secret[LD_SECRET_LEN], ld_state **ret,
                                ss_err *err)
{
    const char *s = cfg->state;
    *ret = NULL;
    if (!s || !*s)
        return ss_fail(err, SS_ERR_INVALID,
                       "config: no state (state = sqlite:PATH or "
                       "s3://BUCKET/PREFIX)");
    if (!strncmp(s, "sqlite:", 7)) return ld_state_sqlite_open(s + 7, ret, err);
    if (!strncmp(s, "s3://", 5) || !strncmp(s, "file://", 7))
        return open_bucket(cfg, s, clock, secret, ret, err);
    return ss_fail(err, SS_ERR_INVALID, "state %s: use sqlite:PATH or s3://BUCKET/PREFIX", s);
}

/* --- the ops ------------------------------------------------------------------- */

ss_rc ld_state_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                      const ld_clock *clock, ld_record *ret_rec, ss_err *err)
{
    return st->ops->update(st, repo, decide, ctx, clock, ret_rec, err);
}

ss_rc ld_state_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err)
{
    return st->ops->read(st, repo, fresh, ret, err);
}

ss_rc ld_state_secret(ld_state *st, unsigned char out[LD_SECRET_LEN], ss_err *err)
{
    return st->ops->secret(st, out, err);
}

ss_rc ld_state_repo_put(ld_state *st, const char *name, const char *url, int *ret_changed,
                        ss_err *err)
{
    return st->ops->repo_put(st, name, url, ret_changed, err);
}

ss_rc ld_state_repo_list(ld_state *st, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                         ss_err *err)
{
    return st->ops->repo_list(st, fn, ctx, err);
}

ss_rc ld_state_writers(ld_state *st, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err)
{
    return st->ops->writers(st, repo, seq, ret, err);
}

ss_rc ld_state_device_add(ld_state *st, const ld_device *d, ss_err *err)
{
    return st->ops->device_add(st, d, err);
}

ss_rc ld_state_device_by_hash(ld_state *st, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                              unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    return st->ops->device_by_hash(st, hash, ret, ret_hash, err);
}

ss_rc ld_state_device_list(ld_state *st, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                           ss_err *err)
{
    return st->ops->device_list(st, fn, ctx, err);
}

/* --- transitions every backend shares ------------------------------------------ */

typedef struct rows_walk {
    ld_repo_row *rows;
    size_t n, cap;
    int oom;
} rows_walk;

static int collect_row(void *ctx, const ld_repo_row *r)
{
    rows_walk *w = ctx;
    w->oom = SS_ARRAY_GROW(w->rows, w->n + 1, w->cap) != 0;
    if (w->oom) return 1;
    w->rows[w->n++] = *r;
    return 0;
}

/* Every repository's row, copied: a backend may hold a lock during its walk, and what is
 * done with each row (an update) takes it again. *ret (owned) even on failure. */
static ss_rc repo_rows(ld_state *st, ld_repo_row **ret, size_t *ret_n, ss_err *err)
{
    rows_walk w = {NULL, 0, 0, 0};
    ss_rc rc = ld_state_repo_list(st, collect_row, &w, err);
    if (!rc && w.oom) rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    *ret = w.rows;
    *ret_n = w.n;
    return rc;
}

void ld_record_end_lease(ld_record *rec)
{
    if (rec->lease.put_seq > rec->repo.head) {
        rec->repo.dirty = 1;
        rec->dirty_gen++; /* a reconciliation listing since before this does not clear it */
    }
    if (rec->lease.put_seq > 0 && rec->lease.expires_ms > rec->repo.urls_until_ms)
        rec->repo.urls_until_ms = rec->lease.expires_ms;
    rec->leased = 0;
    memset(&rec->lease, 0, sizeof rec->lease);
}

static ss_rc decide_end_device(void *ctx, ld_record *rec, int64_t now, ld_decision *ret,
                               ss_err *err)
{
    const char *name = ctx;
    (void)now;
    (void)err;
    *ret = LD_KEEP;
    if (!rec->leased || strcmp(rec->lease.device, name)) return SS_OK;
    ld_record_end_lease(rec);
    *ret = LD_WRITE;
    return SS_OK;
}

ss_rc ld_state_device_revoke(ld_state *st, const char *name, const ld_clock *clock, ss_err *err)
{
    ld_repo_row *rows = NULL;
    size_t n = 0;
    ss_rc rc = st->ops->device_revoke(st, name, err);
    if (rc) return rc;
    rc = repo_rows(st, &rows, &n, err);
    for (size_t i = 0; !rc && i < n; i++)
        rc = ld_state_update(st, rows[i].name, decide_end_device, (void *)name, clock, NULL, err);
    free(rows);
    return rc;
}

static ss_rc decide_dirty(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)ctx;
    (void)now;
    (void)err;
    *ret = LD_KEEP;
    if (rec->repo.dirty) return SS_OK;
    rec->repo.dirty = 1;
    rec->dirty_gen++;
    *ret = LD_WRITE;
    return SS_OK;
}

ss_rc ld_state_mark_dirty(ld_state *st, const char *repo, const ld_clock *clock, ss_err *err)
{
    return ld_state_update(st, repo, decide_dirty, NULL, clock, NULL, err);
}

typedef struct rewind_ctx {
    const char *repo;
    uint64_t seq;
    ld_repo_row before;
} rewind_ctx;

static ss_rc decide_rewind(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    rewind_ctx *r = ctx;
    (void)now;
    *ret = LD_KEEP;
    r->before = rec->repo;
    if (r->seq > rec->repo.head)
        return ss_fail(err, SS_ERR_INVALID, "repository %s: head is %llu, below %llu", r->repo,
                       (unsigned long long)rec->repo.head, (unsigned long long)r->seq);
    if (rec->leased) ld_record_end_lease(rec);
    rec->repo.head = r->seq;
    rec->repo.head_etag[0] = '\0'; /* unknown until a commit or reconciliation sees it */
    rec->repo.head_size = 0;
    rec->repo.dirty = 0;
    rec->repo.rewinding = 1;
    rec->drop_writers = 1;
    *ret = LD_WRITE;
    return SS_OK;
}

ss_rc ld_state_rewind_begin(ld_state *st, const char *repo, uint64_t seq, const ld_clock *clock,
                            ld_repo_row *ret_before, ld_repo_row *ret_after, ss_err *err)
{
    rewind_ctx r = {.repo = repo, .seq = seq};
    ld_record rec;
    ss_rc rc = ld_state_update(st, repo, decide_rewind, &r, clock, &rec, err);
    if (rc) return rc;
    *ret_before = r.before;
    *ret_after = rec.repo;
    return SS_OK;
}

static ss_rc decide_rewound(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)ctx;
    (void)now;
    (void)err;
    *ret = rec->repo.rewinding ? LD_WRITE : LD_KEEP;
    rec->repo.rewinding = 0;
    return SS_OK;
}

ss_rc ld_state_rewind_end(ld_state *st, const char *repo, const ld_clock *clock, ss_err *err)
{
    return ld_state_update(st, repo, decide_rewound, NULL, clock, NULL, err);
}

/* --- migrate ------------------------------------------------------------------- */

typedef struct migrate_walk {
    ld_state *from, *to;
    size_t n;
    ss_rc rc;
    ss_err *err;
} migrate_walk;

static int copy_device(void *ctx, const ld_device *d)
{
    migrate_walk *m = ctx;
    m->rc = ld_state_device_add(m->to, d, m->err);
    m->n += !m->rc;
    return m->rc != SS_OK;
}

/* The writers of the last LD_STATE_WRITERS_KEPT sequences up to head + 1 (an open put). */
static ss_rc copy_writers(ld_state *from, const ld_record *rec, ld_seq_writers *w, size_t *ret_n,
                          ss_err *err)
{
    uint64_t top = rec->repo.head + 1;
    uint64_t seq = top > LD_STATE_WRITERS_KEPT ? top - LD_STATE_WRITERS_KEPT + 1 : 1;
    size_t n = 0;
    for (; seq <= top; seq++) {
        ss_rc rc = ld_state_writers(from, rec->repo.name, seq, &w[n].w, err);
        if (rc) return rc;
        w[n].seq = seq;
        n += w[n].w.n > 0;
    }
    *ret_n = n;
    return SS_OK;
}

static ss_rc copy_repo(ld_state *from, ld_state *to, const char *name, ss_err *err)
{
    ld_seq_writers w[LD_STATE_WRITERS_KEPT];
    ld_record rec;
    size_t n = 0;
    ss_rc rc = ld_state_read(from, name, 1, &rec, err);
    if (rc) return rc;
    rc = copy_writers(from, &rec, w, &n, err);
    if (rc) return rc;
    return to->ops->repo_import(to, &rec, w, n, err);
}

ss_rc ld_state_migrate(ld_state *from, ld_state *to, FILE *out, ss_err *err)
{
    migrate_walk devs = {.from = from, .to = to, .err = err};
    ld_repo_row *rows = NULL;
    size_t n = 0;
    ss_rc rc;
    if (!to->ops->repo_import)
        return ss_fail(err, SS_ERR_INVALID, "migrate copies into a bucket state (s3://), not %s",
                       to->ops->scheme);
    rc = repo_rows(from, &rows, &n, err);
    for (size_t i = 0; !rc && i < n; i++)
        rc = copy_repo(from, to, rows[i].name, err);
    free(rows);
    if (rc) return rc;
    rc = ld_state_device_list(from, copy_device, &devs, err);
    if (rc) return rc;
    if (devs.rc) return devs.rc;
    fprintf(out, "migrated %zu repositories and %zu devices from %s to %s\n", n, devs.n,
            from->ops->scheme, to->ops->scheme);
    return SS_OK;
}
