/*
 * db_head.c: the part of lockd's database (db.c) about who may write what:
 * the lease row of each repository, head moving with a commit, the writers
 * of each sequence (the devices given its PUT URLs), and an admin's rewind.
 * One function per state change, each one transaction; lease.c decides.
 */
#include "db_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- leases ------------------------------------------------------------------------- */

static ss_rc lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_LEASE_GET, &st, err);
    *ret_found = 0;
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        db_copy_text(ret->id, sizeof ret->id, sqlite3_column_text(st, 0));
        db_copy_text(ret->device, sizeof ret->device, sqlite3_column_text(st, 1));
        ret->fencing = (uint64_t)sqlite3_column_int64(st, 2);
        ret->granted_ms = sqlite3_column_int64(st, 3);
        ret->expires_ms = sqlite3_column_int64(st, 4);
        ret->put_seq = (uint64_t)sqlite3_column_int64(st, 5);
        *ret_found = 1;
    } else if (r != SQLITE_DONE) {
        rc = db_sql_fail(db, err, "lease lookup");
    }
    db_give(db, S_LEASE_GET, st);
    return rc;
}

ss_rc ld_db_lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_get(db, repo, ret, ret_found, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Both rows from one snapshot: one read transaction, not one per statement. */
static ss_rc state_read(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                        int *ret_found, ss_err *err)
{
    ss_rc rc = db_txn(db, S_BEGIN, err);
    if (rc) return rc;
    if ((rc = db_repo_get(db, repo, ret_repo, err)) ||
        (rc = lease_get(db, repo, ret_lease, ret_found, err))) {
        db_rollback(db);
        return rc;
    }
    if ((rc = db_txn(db, S_COMMIT, err))) db_rollback(db);
    return rc;
}

ss_rc ld_db_repo_state(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                       int *ret_found, ss_err *err)
{
    repo_slot *c = &db->repos[db_name_slot(repo)];
    ss_rc rc = SS_OK;
    *ret_found = 0;
    pthread_mutex_lock(&db->mu);
    if (db_cache_valid(db) == 0 && c->used && !strcmp(c->repo.name, repo)) {
        *ret_repo = c->repo;
        *ret_lease = c->lease;
        *ret_found = c->lease_found;
    } else if (!(rc = state_read(db, repo, ret_repo, ret_lease, ret_found, err)) &&
               db->seen_version >= 0 && sqlite3_total_changes64(db->sql) == db->seen_changes) {
        c->used = 1;
        c->repo = *ret_repo;
        c->lease_found = *ret_found;
        if (*ret_found)
            c->lease = *ret_lease;
        else
            memset(&c->lease, 0, sizeof c->lease);
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_grant(ld_db *db, const char *repo, ld_lease_row *lease, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ld_repo_row r;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = db_txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = db_repo_get(db, repo, &r, err))) goto rollback;
    if ((rc = db_run(db, S_GRANT_DIRTY, repo, NULL, 0, err)) ||
        (rc = db_run(db, S_GRANT_DELETE, repo, NULL, 0, err)) ||
        (rc = db_run(db, S_GRANT_FENCING, repo, NULL, (int64_t)r.next_fencing, err)))
        goto rollback;
    lease->fencing = r.next_fencing;
    lease->put_seq = 0;
    if ((rc = db_take(db, S_GRANT_INSERT, &st, err))) goto rollback;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lease->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, lease->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)lease->fencing);
    sqlite3_bind_int64(st, 5, lease->granted_ms);
    sqlite3_bind_int64(st, 6, lease->expires_ms);
    rc = db_step_done(db, st, "lease grant", err);
    db_give(db, S_GRANT_INSERT, st);
    if (rc) goto rollback;
    if (!(rc = db_txn(db, S_COMMIT, err))) goto out;
rollback:
    db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* One UPDATE/DELETE of the lease (repo, id); SS_ERR_NOT_FOUND when it is gone. */
static ss_rc lease_change(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n,
                          ss_err *err)
{
    ss_rc rc = db_run(db, id, repo, lease_id, n, err);
    if (!rc && sqlite3_changes(db->sql) == 0)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "lease %s of %s is gone", lease_id, repo);
    return rc;
}

ss_rc ld_db_lease_set_expiry(ld_db *db, const char *repo, const char *id, int64_t expires_ms,
                             ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_change(db, S_LEASE_EXPIRY, repo, id, expires_ms, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_set_put_seq(ld_db *db, const char *repo, const char *id, uint64_t seq,
                              ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = db_txn(db, S_BEGIN_IMMEDIATE, err);
    if (rc) goto out;
    rc = lease_change(db, S_LEASE_PUT_SEQ, repo, id, (int64_t)seq, err);
    if (!rc) rc = db_run(db, S_WRITER_ADD, repo, id, (int64_t)seq, err);
    rc = db_finish(db, rc, err);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_delete(ld_db *db, const char *repo, const char *id, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = db_txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = db_run(db, S_DELETE_DIRTY, repo, id, 0, err)) ||
        (rc = db_run(db, S_URLS_UNTIL, repo, id, 0, err)) ||
        (rc = lease_change(db, S_LEASE_DELETE, repo, id, 0, err)) ||
        (rc = db_txn(db, S_COMMIT, err)))
        db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_commit(ld_db *db, const char *repo, const char *id, uint64_t seq, int release,
                   const ss_store_stat *obj, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = db_txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = lease_change(db, S_COMMIT_HEAD, repo, id, (int64_t)seq, err)) ||
        (rc = db_head_object(db, repo, seq, obj, err)) ||
        (release && (rc = db_run(db, S_URLS_UNTIL, repo, id, 0, err))) ||
        (release && (rc = lease_change(db, S_LEASE_DELETE, repo, id, 0, err))) ||
        (rc = db_txn(db, S_COMMIT, err)))
        db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- writers and rewind ---------------------------------------------------------------- */

ss_rc ld_db_writers(ld_db *db, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = SQLITE_DONE;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_WRITERS_GET, &st, err);
    if (rc) goto out;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    while (ret->n < LD_WRITERS_MAX && (r = sqlite3_step(st)) == SQLITE_ROW)
        db_copy_text(ret->name[ret->n++], sizeof ret->name[0], sqlite3_column_text(st, 0));
    if (r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "writers");
out:
    db_give(db, S_WRITERS_GET, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* The lease of repo, ended as a release would: its PUT URLs counted into urls_until_ms. */
static ss_rc end_lease(ld_db *db, const char *repo, ss_err *err)
{
    ld_lease_row lease;
    int found = 0;
    ss_rc rc = lease_get(db, repo, &lease, &found, err);
    if (rc || !found) return rc;
    rc = db_run(db, S_URLS_UNTIL, repo, lease.id, 0, err);
    if (rc) return rc;
    return db_run(db, S_LEASE_DELETE, repo, lease.id, 0, err);
}

ss_rc ld_db_rewind_begin(ld_db *db, const char *repo, uint64_t seq, ld_repo_row *ret_before,
                         ld_repo_row *ret_after, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = db_txn(db, S_BEGIN_IMMEDIATE, err);
    if (rc) goto out;
    rc = db_repo_get(db, repo, ret_before, err);
    if (rc) goto end;
    if (seq > ret_before->head) {
        rc = ss_fail(err, SS_ERR_INVALID, "repository %s: head is %llu, below %llu", repo,
                     (unsigned long long)ret_before->head, (unsigned long long)seq);
        goto end;
    }
    rc = end_lease(db, repo, err);
    if (rc) goto end;
    rc = db_run(db, S_REWIND_BEGIN, repo, NULL, (int64_t)seq, err);
    if (rc) goto end;
    rc = db_run(db, S_WRITERS_DROP, repo, NULL, (int64_t)seq, err);
    if (rc) goto end;
    rc = db_repo_get(db, repo, ret_after, err);
end:
    rc = db_finish(db, rc, err);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_rewind_end(ld_db *db, const char *repo, ss_err *err)
{
    return db_run_locked(db, S_REWIND_END, repo, 0, err);
}
