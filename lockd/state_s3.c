/*
 * state_s3.c: lockd's state in a bucket (ld_state.h, docs/PROTOCOL.md "State
 * backends"): the ops over the objects of state_s3_json.c, each transition
 * one compare-and-swap of its repository's object (S1), and the two caches
 * a replica keeps: records for reads without a decision (S7) and device
 * tokens (S8), both bounded in age by the clock the state was opened with.
 *
 * Owns the impl (the store, the secret in sodium_malloc memory, the caches
 * and their mutex). The store's s3 flavour drives one curl multi handle, so
 * its requests go one at a time (io_mu); the caches have their own mutex so
 * that a cached answer never waits for a request in flight.
 */
#include "state_s3_json.h"
#include "array.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_CACHE_MAX 4096 /* hashes one replica remembers, found or not (oldest go) */

/*
 * When an answer was asked for: taken before the request, so that a cache entry's age
 * counts from before the bucket answered (S7, S8 bound it), and an answer asked for
 * earlier never replaces one asked for later (a slow GET from before a revoke must not
 * put the device back unrevoked).
 */
typedef struct stamp {
    uint64_t n; /* this state's count of stamps: orders them, however the clock moves */
    int64_t at_ms;
} stamp;

typedef struct head_ent { /* S7: a repository's record as last read or written */
    char repo[LD_NAME_MAX + 1];
    ld_record rec;
    stamp at;
} head_ent;

typedef struct token_ent { /* S8: a hash's device, or that there is none */
    unsigned char hash[LD_HASH_LEN];
    int found;
    ld_device dev;
    stamp at;
} token_ent;

typedef struct s3_impl {
    ss_store *store;
    pthread_mutex_t io_mu; /* one request at a time on store */
    int64_t head_cache_ms, token_cache_ms;
    const ld_clock *clock;
    unsigned char *secret; /* sodium_malloc'ed LD_SECRET_LEN */
    pthread_mutex_t mu;    /* the caches below */
    head_ent *heads;
    size_t n_heads, cap_heads;
    token_ent *tokens; /* TOKEN_CACHE_MAX */
    size_t n_tokens;
    uint64_t stamps;
} s3_impl;

static s3_impl *impl_of(ld_state *st)
{
    return ld_state_impl(st);
}

static int64_t now_ms(const s3_impl *q)
{
    return q->clock->now_ms(q->clock->ctx);
}

/* --- requests, one at a time --------------------------------------------------- */

static ss_rc get_obj(s3_impl *q, const char *key, size_t max, void **ret, size_t *ret_len,
                     ss_store_stat *ret_stat, ss_err *err)
{
    ss_store_stat st;
    ss_rc rc;
    pthread_mutex_lock(&q->io_mu);
    rc = ss_store_get_stat(q->store, key, max, ret, ret_len, ret_stat ? ret_stat : &st, err);
    pthread_mutex_unlock(&q->io_mu);
    return rc;
}

/* flags SS_PUT_CREATE_ONLY (etag NULL), or a swap of etag. */
static ss_rc put_obj(s3_impl *q, const char *key, const char *buf, size_t len, const char *etag,
                     ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&q->io_mu);
    if (etag)
        rc = ss_store_put_if(q->store, key, buf, len, etag, NULL, err);
    else
        rc = ss_store_put(q->store, key, buf, len, SS_PUT_CREATE_ONLY, err);
    pthread_mutex_unlock(&q->io_mu);
    return rc;
}

typedef struct key_list {
    char **keys;
    size_t n, cap;
    int oom;
} key_list;

static int collect_key(void *ctx, const char *key, const ss_store_stat *st)
{
    key_list *k = ctx;
    char *dup = strdup(key);
    (void)st;
    k->oom = !dup || SS_ARRAY_GROW(k->keys, k->n + 1, k->cap) != 0;
    if (k->oom) {
        free(dup);
        return 1;
    }
    k->keys[k->n++] = dup;
    return 0;
}

static void keys_free(key_list *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->keys[i]);
    free(k->keys);
}

static ss_rc list_keys(s3_impl *q, const char *prefix, key_list *ret, ss_err *err)
{
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    pthread_mutex_lock(&q->io_mu);
    rc = ss_store_list(q->store, prefix, NULL, collect_key, ret, err);
    pthread_mutex_unlock(&q->io_mu);
    if (!rc && ret->oom) rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    return rc;
}

/* --- the caches ---------------------------------------------------------------- */

static stamp stamp_now(s3_impl *q)
{
    stamp t;
    pthread_mutex_lock(&q->mu);
    t.n = ++q->stamps;
    pthread_mutex_unlock(&q->mu);
    t.at_ms = now_ms(q);
    return t;
}

/* Young enough to answer at now: within max_ms, and not from a clock since set back. */
static int fresh_at(const stamp *at, int64_t now, int64_t max_ms)
{
    return now >= at->at_ms && now - at->at_ms < max_ms;
}

static void head_put(s3_impl *q, const ld_record *rec, stamp at)
{
    head_ent *e = NULL;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_heads && !e; i++)
        if (!strcmp(q->heads[i].repo, rec->repo.name)) e = &q->heads[i];
    if (!e && !SS_ARRAY_GROW(q->heads, q->n_heads + 1, q->cap_heads)) {
        e = &q->heads[q->n_heads++];
        memset(e, 0, sizeof *e);
        snprintf(e->repo, sizeof e->repo, "%s", rec->repo.name);
    }
    if (e && at.n > e->at.n) { /* out of memory: not cached, the next read asks the bucket */
        e->rec = *rec;
        e->at = at;
    }
    pthread_mutex_unlock(&q->mu);
}

static int head_get(s3_impl *q, const char *repo, ld_record *ret)
{
    int hit = 0;
    int64_t now = now_ms(q);
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_heads && !hit; i++)
        if (!strcmp(q->heads[i].repo, repo) && fresh_at(&q->heads[i].at, now, q->head_cache_ms)) {
            *ret = q->heads[i].rec;
            hit = 1;
        }
    pthread_mutex_unlock(&q->mu);
    return hit;
}

/* dev NULL: no device has this hash. Full: the oldest entry goes. */
static void token_put(s3_impl *q, const unsigned char hash[LD_HASH_LEN], const ld_device *dev,
                      stamp at)
{
    token_ent *e = NULL;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_tokens && !e; i++)
        if (!memcmp(q->tokens[i].hash, hash, LD_HASH_LEN)) e = &q->tokens[i];
    if (e && at.n < e->at.n) goto out; /* a later answer is there already */
    if (!e && q->n_tokens < TOKEN_CACHE_MAX) e = &q->tokens[q->n_tokens++];
    if (!e) {
        e = &q->tokens[0];
        for (size_t i = 1; i < q->n_tokens; i++)
            if (q->tokens[i].at.n < e->at.n) e = &q->tokens[i];
    }
    memset(e, 0, sizeof *e);
    memcpy(e->hash, hash, LD_HASH_LEN);
    e->found = dev != NULL;
    if (dev) e->dev = *dev;
    e->at = at;
out:
    pthread_mutex_unlock(&q->mu);
}

/* 1 with *ret_found (and ret when found) on a hit young enough. */
static int token_get(s3_impl *q, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                     int *ret_found)
{
    int hit = 0;
    int64_t now = now_ms(q);
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_tokens && !hit; i++) {
        const token_ent *e = &q->tokens[i];
        if (memcmp(e->hash, hash, LD_HASH_LEN) || !fresh_at(&e->at, now, q->token_cache_ms))
            continue;
        *ret_found = e->found;
        if (e->found) *ret = e->dev;
        hit = 1;
    }
    pthread_mutex_unlock(&q->mu);
    return hit;
}

/* --- records ------------------------------------------------------------------- */

/* repos/<repo>.json as it is now, with its ETag. *ret is large: the caller's memory. */
static ss_rc get_record(s3_impl *q, const char *repo, s3st_record *ret, ss_store_stat *ret_stat,
                        ss_err *err)
{
    char key[S3ST_KEY_MAX];
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    if (!ld_name_ok(repo)) return ss_fail(err, SS_ERR_INVALID, "repository '%s': not a name", repo);
    s3st_repo_key(repo, key);
    rc = get_obj(q, key, S3ST_RECORD_MAX, &buf, &len, ret_stat, err);
    if (rc == SS_ERR_NOT_FOUND)
        return ss_fail(err, SS_ERR_NOT_FOUND, "repository %s is not in the state", repo);
    if (rc) return rc;
    rc = s3st_record_parse(key, repo, buf, len, ret, err);
    free(buf);
    return rc;
}

/* r written at its key with a fresh nonce: a swap of etag, or created (etag NULL). */
static ss_rc put_record(s3_impl *q, s3st_record *r, const char *etag, ss_err *err)
{
    unsigned char nonce[S3ST_NONCE_BYTES];
    char key[S3ST_KEY_MAX];
    char *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(r->nonce, sizeof r->nonce, nonce, sizeof nonce);
    rc = s3st_record_dump(r, &buf, &len, err);
    if (rc) return rc;
    s3st_repo_key(r->rec.repo.name, key);
    rc = put_obj(q, key, buf, len, etag, err);
    free(buf);
    return rc;
}

static ss_rc s3_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err)
{
    s3_impl *q = impl_of(st);
    s3st_record *r = NULL;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    stamp at;
    if (!fresh && head_get(q, repo, ret)) return SS_OK;
    r = malloc(sizeof *r);
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    at = stamp_now(q);
    rc = get_record(q, repo, r, NULL, err);
    if (rc) goto fail;
    head_put(q, &r->rec, at);
    *ret = r->rec;
fail:
    free(r);
    return rc;
}

/* One try of an update: *ret_lost when the swap lost (read again, decide again). */
static ss_rc update_once(s3_impl *q, const char *repo, ld_decide_fn decide, void *ctx,
                         const ld_clock *clock, s3st_record *r, int *ret_lost, ss_err *err)
{
    ss_store_stat stat;
    ld_decision d = LD_KEEP;
    ld_record was;
    stamp at = stamp_now(q);
    ss_rc rc;
    *ret_lost = 0;
    rc = get_record(q, repo, r, &stat, err);
    if (rc) return rc;
    was = r->rec;
    rc = decide(ctx, &r->rec, clock->now_ms(clock->ctx), &d, err);
    if (rc) return rc;
    snprintf(r->rec.repo.name, sizeof r->rec.repo.name, "%s", repo); /* the key's, always */
    s3st_writers_apply(r);
    if (d == LD_WRITE) {
        rc = put_record(q, r, stat.etag, err);
        *ret_lost = rc == SS_ERR_CHANGED;
        if (rc) return rc;
    }
    /* What the bucket holds now: on LD_KEEP the record as read, not as decide left it. */
    head_put(q, d == LD_WRITE ? &r->rec : &was, at);
    return SS_OK;
}

/* After the n-th lost swap: up to 2^n ms, random, so that replicas which lost together do
 * not read and swap together again (they would lose again, all but one). */
static void backoff(unsigned n)
{
    uint32_t ms = randombytes_uniform(1u << (n < 6 ? n : 6)) + 1;
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static ss_rc s3_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                       const ld_clock *clock, ld_record *ret_rec, ss_err *err)
{
    s3_impl *q = impl_of(st);
    s3st_record *r = NULL;
    int lost = 1;
    ss_rc rc = SS_OK;
    if (ret_rec) memset(ret_rec, 0, sizeof *ret_rec);
    r = malloc(sizeof *r);
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    for (unsigned i = 0; i < LD_STATE_TRIES && lost; i++) {
        if (i) backoff(i);
        rc = update_once(q, repo, decide, ctx, clock, r, &lost, err);
        if (rc && !lost) goto fail;
    }
    if (lost) {
        rc = ss_fail(err, SS_ERR_TEMPORARY,
                     "repository %s: its record changed under %d tries in a row (other replicas "
                     "busy); try again",
                     repo, LD_STATE_TRIES);
        goto fail;
    }
    if (ret_rec) *ret_rec = r->rec;
fail:
    free(r);
    return rc;
}

static ss_rc s3_writers(ld_state *st, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err)
{
    s3st_record *r = NULL;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    r = malloc(sizeof *r);
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    rc = get_record(impl_of(st), repo, r, NULL, err);
    if (rc) goto fail;
    s3st_writers_get(r, seq, ret);
fail:
    free(r);
    return rc;
}

/* --- repositories ---------------------------------------------------------------- */

static ss_rc decide_move(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    const char *url = ctx;
    (void)now;
    (void)err;
    *ret = LD_KEEP;
    if (!strcmp(rec->repo.url, url)) return SS_OK;
    /* head belongs to the old location: reconciliation finds the new one's (S5) */
    snprintf(rec->repo.url, sizeof rec->repo.url, "%s", url);
    rec->repo.head = 0;
    rec->repo.head_etag[0] = '\0';
    rec->repo.head_size = 0;
    rec->repo.dirty = 1;
    rec->dirty_gen++;
    *ret = LD_WRITE;
    return SS_OK;
}

static ss_rc repo_create(s3_impl *q, const char *name, const char *url, ss_err *err)
{
    s3st_record *r = calloc(1, sizeof *r);
    ss_rc rc;
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    snprintf(r->rec.repo.name, sizeof r->rec.repo.name, "%s", name);
    snprintf(r->rec.repo.url, sizeof r->rec.repo.url, "%s", url);
    r->rec.repo.next_fencing = 1;
    rc = put_record(q, r, NULL, err);
    free(r);
    return rc;
}

static ss_rc s3_repo_put(ld_state *st, const char *name, const char *url, int *ret_changed,
                         ss_err *err)
{
    s3_impl *q = impl_of(st);
    ld_record before, after;
    ss_rc rc = SS_OK;
    *ret_changed = 0;
    if (!ld_name_ok(name) || strncmp(url, "s3://", 5) || strlen(url) >= LD_URL_MAX)
        return ss_fail(err, SS_ERR_INVALID, "repository '%s' at '%s': bad name or URL", name, url);
    /* Absent: create it; a replica that created it meanwhile makes this a move, or nothing. */
    for (unsigned i = 0; i < LD_STATE_TRIES; i++) {
        rc = s3_read(st, name, 1, &before, err);
        if (rc == SS_ERR_NOT_FOUND) {
            rc = repo_create(q, name, url, err);
            if (rc == SS_ERR_EXISTS) continue;
            /* *ret_changed stays 0, as on SQLite: main.c reads 1 as "moved" */
            return rc;
        }
        if (rc) return rc;
        rc = s3_update(st, name, decide_move, (void *)url, q->clock, &after, err);
        if (rc) return rc;
        *ret_changed = after.dirty_gen != before.dirty_gen;
        return SS_OK;
    }
    return ss_fail(err, SS_ERR_TEMPORARY, "repository %s: created and gone %d times; try again",
                   name, LD_STATE_TRIES);
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const ld_repo_row *)a)->name, ((const ld_repo_row *)b)->name);
}

/* "repos/<name>.json" -> name into out; 0 when key is not of that form. */
static int repo_key_name(const char *key, char out[LD_NAME_MAX + 1])
{
    size_t len = strlen(key);
    if (strncmp(key, "repos/", 6) || len < 6 + 5 || strcmp(key + len - 5, ".json")) return 0;
    if (len - 11 > LD_NAME_MAX) return 0;
    memcpy(out, key + 6, len - 11);
    out[len - 11] = '\0';
    return ld_name_ok(out);
}

static ss_rc s3_repo_list(ld_state *st, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                          ss_err *err)
{
    key_list k;
    ld_repo_row *rows = NULL;
    ld_record rec;
    size_t n = 0;
    ss_rc rc = list_keys(impl_of(st), "repos/", &k, err);
    if (rc) goto fail;
    rows = calloc(k.n + 1, sizeof *rows);
    if (!rows) {
        rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < k.n; i++) {
        char name[LD_NAME_MAX + 1];
        if (!repo_key_name(k.keys[i], name)) {
            rc = ss_fail(err, SS_ERR_INTEGRITY, "state object %s: not a repository's key",
                         k.keys[i]);
            goto fail;
        }
        rc = s3_read(st, name, 1, &rec, err);
        if (rc) goto fail;
        rows[n++] = rec.repo;
    }
    qsort(rows, n, sizeof *rows, row_cmp); /* key order puts "a-b" before "a" */
    for (size_t i = 0; i < n; i++)
        if (fn(ctx, &rows[i])) break;
fail:
    free(rows);
    keys_free(&k);
    return rc;
}

static ss_rc s3_repo_import(ld_state *st, const ld_record *rec, const ld_seq_writers *w, size_t n,
                            ss_err *err)
{
    s3st_record *r = calloc(1, sizeof *r);
    ss_rc rc;
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    r->rec = *rec;
    r->rec.add_writer = r->rec.drop_writers = 0;
    if (!r->rec.repo.head_etag[0]) r->rec.repo.head_size = 0; /* no head_object: nothing kept */
    for (size_t i = n > LD_STATE_WRITERS_KEPT ? n - LD_STATE_WRITERS_KEPT : 0; i < n; i++)
        if (w[i].w.n > 0) r->w[r->n_w++] = w[i];
    rc = put_record(impl_of(st), r, NULL, err);
    if (rc == SS_ERR_EXISTS)
        rc = ss_fail(err, SS_ERR_EXISTS, "repository %s is already in the state", rec->repo.name);
    free(r);
    return rc;
}

/* --- devices ------------------------------------------------------------------- */

/* devices/<hash>.json: its device and ETag. */
static ss_rc get_device(s3_impl *q, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                        ss_store_stat *ret_stat, ss_err *err)
{
    char key[S3ST_KEY_MAX];
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    s3st_device_key(hash, key);
    rc = get_obj(q, key, S3ST_SMALL_MAX, &buf, &len, ret_stat, err);
    if (rc) return rc;
    rc = s3st_device_parse(key, hash, buf, len, ret, err);
    free(buf);
    return rc;
}

static ss_rc put_device(s3_impl *q, const ld_device *d, const char *etag, ss_err *err)
{
    char key[S3ST_KEY_MAX];
    char *buf = NULL;
    size_t len = 0;
    ss_rc rc = s3st_device_dump(d, &buf, &len, err);
    if (rc) return rc;
    s3st_device_key(d->hash, key);
    rc = put_obj(q, key, buf, len, etag, err);
    free(buf);
    return rc;
}

/*
 * The name first: it is what makes names unique. A failure between the two
 * leaves a name without a device: the name stays taken (names are never
 * reused) and no token works, which fails safe.
 */
static ss_rc s3_device_add(ld_state *st, const ld_device *d, ss_err *err)
{
    s3_impl *q = impl_of(st);
    char key[S3ST_KEY_MAX];
    char *name = NULL, *dev = NULL;
    size_t name_len = 0, dev_len = 0;
    /* Both objects made before either is written: a device refused leaves no name behind. */
    ss_rc rc = s3st_device_dump(d, &dev, &dev_len, err);
    if (rc) goto fail;
    rc = s3st_name_dump(d->hash, &name, &name_len, err);
    if (rc) goto fail;
    s3st_name_key(d->name, key);
    rc = put_obj(q, key, name, name_len, NULL, err);
    if (rc == SS_ERR_EXISTS) rc = ss_fail(err, SS_ERR_EXISTS, "device %s already exists", d->name);
    if (rc) goto fail;
    s3st_device_key(d->hash, key);
    rc = put_obj(q, key, dev, dev_len, NULL, err);
    if (rc) goto fail;
    token_put(q, d->hash, d, stamp_now(q)); /* as written: a cached "no such token" goes */
fail:
    free(name);
    free(dev);
    return rc;
}

static ss_rc s3_device_by_hash(ld_state *st, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                               unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    s3_impl *q = impl_of(st);
    int found = 0;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    memset(ret_hash, 0, LD_HASH_LEN);
    if (!token_get(q, hash, ret, &found)) {
        stamp at = stamp_now(q);
        rc = get_device(q, hash, ret, NULL, err);
        if (rc && rc != SS_ERR_NOT_FOUND) return rc;
        found = !rc;
        token_put(q, hash, found ? ret : NULL, at);
    }
    if (!found) return ss_fail(err, SS_ERR_NOT_FOUND, "no device has this token");
    memcpy(ret_hash, ret->hash, LD_HASH_LEN);
    return SS_OK;
}

static ss_rc s3_device_revoke(ld_state *st, const char *name, ss_err *err)
{
    s3_impl *q = impl_of(st);
    unsigned char hash[LD_HASH_LEN];
    char key[S3ST_KEY_MAX];
    void *buf = NULL;
    size_t len = 0;
    ld_device d;
    ss_store_stat stat;
    ss_rc rc;
    if (!ld_name_ok(name)) return ss_fail(err, SS_ERR_NOT_FOUND, "no device '%s'", name);
    s3st_name_key(name, key);
    rc = get_obj(q, key, S3ST_SMALL_MAX, &buf, &len, NULL, err);
    if (rc == SS_ERR_NOT_FOUND) return ss_fail(err, SS_ERR_NOT_FOUND, "no device %s", name);
    if (rc) return rc;
    rc = s3st_name_parse(key, buf, len, hash, err);
    free(buf);
    if (rc) return rc;
    for (unsigned i = 0; i < LD_STATE_TRIES; i++) {
        rc = get_device(q, hash, &d, &stat, err);
        if (rc) return rc;
        if (strcmp(d.name, name)) /* names/ and devices/ disagree: someone wrote them */
            return ss_fail(err, SS_ERR_INTEGRITY, "state object %s: names device %s, not %s", key,
                           d.name, name);
        if (d.revoked) break;
        d.revoked = 1;
        rc = put_device(q, &d, stat.etag, err);
        if (rc != SS_ERR_CHANGED) break;
    }
    if (rc == SS_ERR_CHANGED)
        rc = ss_fail(err, SS_ERR_TEMPORARY, "device %s: its object kept changing; try again", name);
    if (rc) return rc;
    /* S8: this replica refuses it at once, not after token_cache_ms */
    token_put(q, hash, &d, stamp_now(q));
    return SS_OK;
}

static int dev_cmp(const void *a, const void *b)
{
    return strcmp(((const ld_device *)a)->name, ((const ld_device *)b)->name);
}

static ss_rc s3_device_list(ld_state *st, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                            ss_err *err)
{
    s3_impl *q = impl_of(st);
    key_list k;
    ld_device *devs = NULL;
    size_t n = 0;
    ss_rc rc = list_keys(q, "devices/", &k, err);
    if (rc) goto fail;
    devs = calloc(k.n + 1, sizeof *devs);
    if (!devs) {
        rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < k.n; i++) {
        unsigned char hash[LD_HASH_LEN];
        if (!s3st_device_key_hash(k.keys[i], hash)) {
            rc = ss_fail(err, SS_ERR_INTEGRITY, "state object %s: not a device's key", k.keys[i]);
            goto fail;
        }
        rc = get_device(q, hash, &devs[n], NULL, err);
        if (rc) goto fail;
        n++;
    }
    qsort(devs, n, sizeof *devs, dev_cmp);
    for (size_t i = 0; i < n; i++)
        if (fn(ctx, &devs[i])) break;
fail:
    free(devs);
    keys_free(&k);
    return rc;
}

/* --- the secret, opening, closing ---------------------------------------------- */

static ss_rc s3_secret(ld_state *st, unsigned char out[LD_SECRET_LEN], ss_err *err)
{
    (void)err;
    memcpy(out, impl_of(st)->secret, LD_SECRET_LEN);
    return SS_OK;
}

/* meta.json's secret into q->secret; *ret_absent when there is no meta.json. */
static ss_rc meta_read(s3_impl *q, int *ret_absent, ss_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    *ret_absent = 0;
    rc = get_obj(q, S3ST_META_KEY, S3ST_SMALL_MAX, &buf, &len, NULL, err);
    *ret_absent = rc == SS_ERR_NOT_FOUND;
    if (rc) return rc;
    rc = s3st_meta_parse(buf, len, q->secret, err);
    sodium_memzero(buf, len);
    free(buf);
    return rc;
}

/* The secret meta.json holds, made (given or random) when absent; SS_ERR_CONFLICT when it
 * holds another than the one given. */
static ss_rc meta_load(s3_impl *q, const unsigned char *given, ss_err *err)
{
    char *body = NULL;
    size_t len = 0;
    int absent = 0;
    ss_rc rc = meta_read(q, &absent, err);
    if (rc && !absent) return rc;
    if (absent) {
        body = sodium_malloc(S3ST_SMALL_MAX);
        if (!body) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
        if (given)
            memcpy(q->secret, given, LD_SECRET_LEN);
        else
            randombytes_buf(q->secret, LD_SECRET_LEN);
        len = s3st_meta_dump(q->secret, body);
        rc = put_obj(q, S3ST_META_KEY, body, len, NULL, err);
        sodium_free(body);
        if (rc == SS_ERR_EXISTS) /* another lockd made it first: its secret is the one */
            rc = meta_read(q, &absent, err);
        if (rc) return rc;
    }
    if (given && sodium_memcmp(given, q->secret, LD_SECRET_LEN))
        return ss_fail(err, SS_ERR_CONFLICT,
                       "state %s: meta.json holds another token secret (tokens made with this "
                       "one would fail there)",
                       ss_store_url(q->store));
    return SS_OK;
}

static void impl_free(s3_impl *q, int free_store)
{
    if (!q) return;
    if (free_store) ss_store_free(q->store);
    sodium_free(q->secret);
    free(q->heads);
    free(q->tokens);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->io_mu);
    free(q);
}

static void s3_close(ld_state *st)
{
    impl_free(impl_of(st), 1);
}

/* Under io_mu: the store's counters move during its requests. /metrics waits for one. */
static uint64_t s3_requests(ld_state *st)
{
    s3_impl *q = impl_of(st);
    uint64_t n;
    pthread_mutex_lock(&q->io_mu);
    n = ss_store_requests(q->store);
    pthread_mutex_unlock(&q->io_mu);
    return n;
}

static const ld_state_ops ld_state_s3_ops = {
    .scheme = "s3",
    .close = s3_close,
    .secret = s3_secret,
    .read = s3_read,
    .update = s3_update,
    .repo_put = s3_repo_put,
    .repo_list = s3_repo_list,
    .writers = s3_writers,
    .device_add = s3_device_add,
    .device_by_hash = s3_device_by_hash,
    .device_revoke = s3_device_revoke,
    .device_list = s3_device_list,
    .repo_import = s3_repo_import,
    .requests = s3_requests,
};

ss_rc ld_state_s3(ss_store *store, const ld_state_s3_opts *o, ld_state **ret, ss_err *err)
{
    s3_impl *q = NULL;
    ss_rc rc;
    *ret = NULL;
    /* sodium_malloc below aborts before it: callers (the admin commands) need not know */
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_NOMEM, "state: libsodium failed to start");
    rc = ss_store_probe_if_match(store, err);
    if (rc) return rc;
    q = calloc(1, sizeof *q);
    if (!q) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->io_mu, NULL);
    q->head_cache_ms = o->head_cache_ms;
    q->token_cache_ms = o->token_cache_ms;
    q->clock = o->clock ? o->clock : &ld_clock_real;
    q->secret = sodium_malloc(LD_SECRET_LEN);
    q->tokens = calloc(TOKEN_CACHE_MAX, sizeof *q->tokens);
    if (!q->secret || !q->tokens) {
        rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    q->store = store;
    rc = meta_load(q, o->secret, err);
    if (rc) goto fail;
    rc = ld_state_new(&ld_state_s3_ops, q, o->skew_ms, o->head_cache_ms, ret, err);
    if (rc) goto fail;
    return SS_OK;
fail:
    impl_free(q, 0); /* the caller still owns store */
    return rc;
}
