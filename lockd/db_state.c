/*
 * db_state.c: the SQLite backend of lockd's state interface (ld_state.h) over
 * the tables of db.c. A repository's record is its repositories row (with
 * its head_objects row) and its leases row. An update first decides on the
 * cached record (db_cache.c, exact: checked against the database before each
 * use), so a refusal or a decision that writes nothing costs no transaction,
 * as lockd's hot paths always did; a decision to write takes the write lock
 * (BEGIN IMMEDIATE), reads the rows again, decides again on them and writes
 * what changed, so no other writer, in this process or another, comes
 * between the read and the write (S1).
 */
#include "db_impl.h"
#include "ld_state.h"

#include <stdlib.h>
#include <string.h>

/* The impl: the database, and whether the state closes it. */
typedef struct sq_impl {
    ld_db *db;
    int owned;
} sq_impl;

static ld_db *sq_db(ld_state *st)
{
    const sq_impl *q = ld_state_impl(st);
    return q->db;
}

static ss_rc sq_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err)
{
    ld_db *db = sq_db(st);
    ld_record rec;
    int found = 0;
    ss_rc rc;
    (void)fresh; /* the cache is always as fresh as the database */
    memset(ret, 0, sizeof *ret);
    memset(&rec, 0, sizeof rec);
    rc = ld_db_repo_state(db, repo, &rec.repo, &rec.lease, &found, err);
    if (rc) return rc;
    rec.leased = found;
    if (!found) memset(&rec.lease, 0, sizeof rec.lease);
    *ret = rec;
    return SS_OK;
}

/* The record's rows, uncached, inside the caller's transaction. */
static ss_rc read_rows(ld_db *db, const char *repo, ld_record *ret, ss_err *err)
{
    int found = 0;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    rc = db_repo_get(db, repo, &ret->repo, err);
    if (rc) return rc;
    rc = db_lease_get(db, repo, &ret->lease, &found, err);
    if (rc) return rc;
    ret->leased = found;
    if (!found) memset(&ret->lease, 0, sizeof ret->lease);
    return SS_OK;
}

static int repo_changed(const ld_repo_row *a, const ld_repo_row *b)
{
    return a->head != b->head || a->next_fencing != b->next_fencing || a->dirty != b->dirty ||
           a->rewinding != b->rewinding || a->urls_until_ms != b->urls_until_ms;
}

static ss_rc write_repo(ld_db *db, const char *repo, const ld_repo_row *r, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_STATE_REPO, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->head);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->next_fencing);
    sqlite3_bind_int(st, 4, r->dirty);
    sqlite3_bind_int(st, 5, r->rewinding);
    sqlite3_bind_int64(st, 6, r->urls_until_ms);
    rc = db_step_done(db, st, "repository write", err);
    db_give(db, S_STATE_REPO, st);
    return rc;
}

ss_rc db_lease_write(ld_db *db, const char *repo, const ld_lease_row *l, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_STATE_LEASE, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, l->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, l->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)l->fencing);
    sqlite3_bind_int64(st, 5, l->granted_ms);
    sqlite3_bind_int64(st, 6, l->expires_ms);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)l->put_seq);
    rc = db_step_done(db, st, "lease write", err);
    db_give(db, S_STATE_LEASE, st);
    return rc;
}

/* What a decision changed of was, into the rows; inside the caller's transaction. */
static ss_rc write_back(ld_db *db, const char *repo, const ld_record *was, const ld_record *rec,
                        ss_err *err)
{
    ss_rc rc = SS_OK;
    if (repo_changed(&was->repo, &rec->repo)) {
        rc = write_repo(db, repo, &rec->repo, err);
        if (rc) return rc;
    }
    if (rec->repo.head != was->repo.head) { /* log/<head> as the decision saw it, if it did */
        ss_store_stat obj = {.size = rec->repo.head_size};
        memcpy(obj.etag, rec->repo.head_etag, sizeof obj.etag);
        rc = db_head_object(db, repo, rec->repo.head, &obj, err);
        if (rc) return rc;
    }
    if (was->leased && (!rec->leased || strcmp(was->lease.id, rec->lease.id))) {
        rc = db_run(db, S_LEASE_DELETE, repo, was->lease.id, 0, err);
        if (rc) return rc;
    }
    if (rec->leased && (!was->leased || memcmp(&was->lease, &rec->lease, sizeof rec->lease))) {
        rc = db_lease_write(db, repo, &rec->lease, err);
        if (rc) return rc;
    }
    if (rec->leased && rec->add_writer)
        rc = db_run(db, S_WRITER_ADD, repo, rec->lease.id, (int64_t)rec->lease.put_seq, err);
    if (!rc && rec->drop_writers)
        rc = db_run(db, S_WRITERS_DROP, repo, NULL, (int64_t)rec->repo.head, err);
    return rc;
}

static ss_rc sq_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                       const ld_clock *clock, ld_record *ret_rec, ss_err *err)
{
    ld_db *db = sq_db(st);
    ld_record rec, was;
    ld_decision d = LD_KEEP;
    ss_rc rc;
    if (ret_rec) memset(ret_rec, 0, sizeof *ret_rec);
    rc = sq_read(st, repo, 0, &rec, err);
    if (rc) return rc;
    rc = decide(ctx, &rec, clock->now_ms(clock->ctx), &d, err);
    if (rc) return rc;
    if (d == LD_WRITE) {
        rc = db_begin(db, err);
        if (rc) return rc;
        rc = read_rows(db, repo, &was, err);
        if (!rc) {
            rec = was;
            rc = decide(ctx, &rec, clock->now_ms(clock->ctx), &d, err);
        }
        if (!rc && d == LD_WRITE) rc = write_back(db, repo, &was, &rec, err);
        rc = db_end(db, rc, err);
        if (rc) return rc;
    }
    rec.add_writer = rec.drop_writers = 0;
    if (ret_rec) *ret_rec = rec;
    return SS_OK;
}

static void sq_close(ld_state *st)
{
    sq_impl *q = ld_state_impl(st);
    if (q->owned) ld_db_close(q->db);
    free(q);
}

static ss_rc sq_secret(ld_state *st, unsigned char out[LD_SECRET_LEN], ss_err *err)
{
    (void)err;
    ld_db_secret(sq_db(st), out);
    return SS_OK;
}

static ss_rc sq_repo_put(ld_state *st, const char *name, const char *url, int *ret_changed,
                         ss_err *err)
{
    return ld_db_repo_put(sq_db(st), name, url, ret_changed, err);
}

static ss_rc sq_repo_list(ld_state *st, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                          ss_err *err)
{
    return ld_db_repo_list(sq_db(st), fn, ctx, err);
}

static ss_rc sq_writers(ld_state *st, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err)
{
    return ld_db_writers(sq_db(st), repo, seq, ret, err);
}

static ss_rc sq_device_add(ld_state *st, const ld_device *d, ss_err *err)
{
    ss_rc rc =
        ld_db_device_add(sq_db(st), d->name, d->repo, d->read_only, d->hash, d->created_ms, err);
    if (rc || !d->revoked) return rc;
    return ld_db_device_revoke(sq_db(st), d->name, err);
}

static ss_rc sq_device_by_hash(ld_state *st, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                               unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    return ld_db_device_by_hash(sq_db(st), hash, ret, ret_hash, err);
}

/* The device and, in the same transaction, its leases (ld_db_device_revoke): stronger than
 * the interface asks; the updates ld_state_device_revoke runs after it find nothing. */
static ss_rc sq_device_revoke(ld_state *st, const char *name, ss_err *err)
{
    return ld_db_device_revoke(sq_db(st), name, err);
}

static ss_rc sq_device_list(ld_state *st, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                            ss_err *err)
{
    return ld_db_device_list(sq_db(st), fn, ctx, err);
}

const ld_state_ops ld_state_sqlite_ops = {
    .scheme = "sqlite",
    .close = sq_close,
    .secret = sq_secret,
    .read = sq_read,
    .update = sq_update,
    .repo_put = sq_repo_put,
    .repo_list = sq_repo_list,
    .writers = sq_writers,
    .device_add = sq_device_add,
    .device_by_hash = sq_device_by_hash,
    .device_revoke = sq_device_revoke,
    .device_list = sq_device_list,
};

/* S6: one process, one clock: no skew. */
static ss_rc sq_new(ld_db *db, int owned, ld_state **ret, ss_err *err)
{
    sq_impl *q = calloc(1, sizeof *q);
    ss_rc rc;
    *ret = NULL;
    if (!q) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    q->db = db;
    q->owned = owned;
    rc = ld_state_new(&ld_state_sqlite_ops, q, 0, 0, ret, err);
    if (rc) free(q);
    return rc;
}

ss_rc ld_state_sqlite(ld_db *db, ld_state **ret, ss_err *err)
{
    return sq_new(db, 0, ret, err);
}

ss_rc ld_state_sqlite_open(const char *path, ld_state **ret, ss_err *err)
{
    ld_db *db = NULL;
    ss_rc rc = ld_db_open(path, &db, err);
    if (rc) return rc;
    rc = sq_new(db, 1, ret, err);
    if (rc) ld_db_close(db);
    return rc;
}
