/*
 * db_head.c: the part of lockd's database (db.c) about who may write what:
 * the lease row of each repository, head moving with a commit or a
 * reconciliation (and log/<head> as lockd saw it), the writers of each
 * sequence (the devices given its PUT URLs), and an admin's rewind.
 * One function per state change, each one transaction; lease.c decides.
 */
#include "db_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- leases ------------------------------------------------------------------------- */

ss_rc db_lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
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
    ss_rc rc = db_lease_get(db, repo, ret, ret_found, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_grant(ld_db *db, const char *repo, ld_lease_row *lease, ss_err *err)
{
    ld_repo_row r;
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = db_repo_get(db, repo, &r, err);
    if (rc) goto out;
    rc = db_run(db, S_GRANT_DIRTY, repo, NULL, 0, err);
    if (rc) goto out;
    rc = db_run(db, S_GRANT_DELETE, repo, NULL, 0, err);
    if (rc) goto out;
    rc = db_run(db, S_GRANT_FENCING, repo, NULL, (int64_t)r.next_fencing, err);
    if (rc) goto out;
    lease->fencing = r.next_fencing;
    lease->put_seq = 0;
    rc = db_lease_write(db, repo, lease, err);
out:
    return db_end(db, rc, err);
}

/* One UPDATE/DELETE of the lease (repo, id); SS_ERR_NOT_FOUND when it is gone. */
static ss_rc lease_change(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n,
                          ss_err *err)
{
    ss_rc rc = db_run(db, id, repo, lease_id, n, err);
    if (rc) return rc;
    if (sqlite3_changes(db->sql) == 0)
        return ss_fail(err, SS_ERR_NOT_FOUND, "lease %s of %s is gone", lease_id, repo);
    return SS_OK;
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
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = lease_change(db, S_LEASE_PUT_SEQ, repo, id, (int64_t)seq, err);
    if (rc) goto out;
    rc = db_run(db, S_WRITER_ADD, repo, id, (int64_t)seq, err);
out:
    return db_end(db, rc, err);
}

/* The lease (repo, id) ends: its PUT URLs counted into urls_until_ms; in a transaction. */
static ss_rc lease_end(ld_db *db, const char *repo, const char *id, ss_err *err)
{
    ss_rc rc = db_run(db, S_URLS_UNTIL, repo, id, 0, err);
    if (rc) return rc;
    return lease_change(db, S_LEASE_DELETE, repo, id, 0, err);
}

ss_rc ld_db_lease_delete(ld_db *db, const char *repo, const char *id, ss_err *err)
{
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = db_run(db, S_DELETE_DIRTY, repo, id, 0, err);
    if (rc) goto out;
    rc = lease_end(db, repo, id, err);
out:
    return db_end(db, rc, err);
}

/* --- head ------------------------------------------------------------------------------ */

ss_rc db_head_object(ld_db *db, const char *repo, uint64_t seq, const ss_store_stat *obj,
                     ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    if (!obj || !obj->etag[0]) return SS_OK;
    rc = db_take(db, S_HEAD_OBJECT, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 3, obj->etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)obj->size);
    rc = db_step_done(db, st, "head object", err);
    db_give(db, S_HEAD_OBJECT, st);
    return rc;
}

ss_rc ld_db_commit(ld_db *db, const char *repo, const char *id, uint64_t seq, int release,
                   const ss_store_stat *obj, ss_err *err)
{
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = lease_change(db, S_COMMIT_HEAD, repo, id, (int64_t)seq, err);
    if (rc) goto out;
    rc = db_head_object(db, repo, seq, obj, err);
    if (rc) goto out;
    if (release) rc = lease_end(db, repo, id, err);
out:
    return db_end(db, rc, err);
}

ss_rc ld_db_repo_mark_dirty(ld_db *db, const char *repo, ss_err *err)
{
    return db_run_locked(db, S_REPO_MARK_DIRTY, repo, 0, err);
}

ss_rc ld_db_repo_raise_head(ld_db *db, const char *repo, uint64_t head, const ss_store_stat *obj,
                            ss_err *err)
{
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = db_run(db, S_REPO_RAISE_HEAD, repo, NULL, (int64_t)head, err);
    if (rc) goto out;
    rc = db_head_object(db, repo, head, obj, err);
out:
    return db_end(db, rc, err);
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
    while (ret->n < LD_WRITERS_MAX) {
        r = sqlite3_step(st);
        if (r != SQLITE_ROW) break;
        db_copy_text(ret->name[ret->n++], sizeof ret->name[0], sqlite3_column_text(st, 0));
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "writers");
out:
    db_give(db, S_WRITERS_GET, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* The lease of repo, ended as a release would: its PUT URLs counted into urls_until_ms. */
static ss_rc end_any_lease(ld_db *db, const char *repo, ss_err *err)
{
    ld_lease_row lease;
    int found = 0;
    ss_rc rc = db_lease_get(db, repo, &lease, &found, err);
    if (rc) return rc;
    if (!found) return SS_OK;
    rc = db_run(db, S_URLS_UNTIL, repo, lease.id, 0, err);
    if (rc) return rc;
    return db_run(db, S_LEASE_DELETE, repo, lease.id, 0, err);
}

ss_rc ld_db_rewind_begin(ld_db *db, const char *repo, uint64_t seq, ld_repo_row *ret_before,
                         ld_repo_row *ret_after, ss_err *err)
{
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = db_repo_get(db, repo, ret_before, err);
    if (rc) goto out;
    if (seq > ret_before->head) {
        rc = ss_fail(err, SS_ERR_INVALID, "repository %s: head is %llu, below %llu", repo,
                     (unsigned long long)ret_before->head, (unsigned long long)seq);
        goto out;
    }
    rc = end_any_lease(db, repo, err);
    if (rc) goto out;
    rc = db_run(db, S_REWIND_BEGIN, repo, NULL, (int64_t)seq, err);
    if (rc) goto out;
    rc = db_run(db, S_WRITERS_DROP, repo, NULL, (int64_t)seq, err);
    if (rc) goto out;
    rc = db_repo_get(db, repo, ret_after, err);
out:
    return db_end(db, rc, err);
}

ss_rc ld_db_rewind_end(ld_db *db, const char *repo, ss_err *err)
{
    return db_run_locked(db, S_REWIND_END, repo, 0, err);
}
