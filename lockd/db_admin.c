/*
 * db_admin.c: the devices and repositories of lockd's database (db.c): what
 * the admin commands change (device add and revoke, repo add) and the reads
 * of both tables. Each change is one transaction; the hot reads of a device
 * by token hash go through the read cache (db_cache.c).
 */
#include "db_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- devices ------------------------------------------------------------------ */

ss_rc ld_db_device_add(ld_db *db, const char *name, const char *repo, int read_only,
                       const unsigned char hash[LD_HASH_LEN], int64_t now_ms, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_DEVICE_ADD, &st, err);
    if (rc) goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, read_only ? 1 : 0);
    sqlite3_bind_blob(st, 4, hash, LD_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now_ms);
    rc = db_step_done(db, st, "device add", err);
    if (rc == SS_ERR_EXISTS) rc = ss_fail(err, SS_ERR_EXISTS, "device %s already exists", name);
out:
    db_give(db, S_DEVICE_ADD, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

static void device_row(sqlite3_stmt *st, ld_device *d)
{
    d->id = sqlite3_column_int64(st, 0);
    db_copy_text(d->name, sizeof d->name, sqlite3_column_text(st, 1));
    db_copy_text(d->repo, sizeof d->repo, sqlite3_column_text(st, 2));
    d->read_only = sqlite3_column_int(st, 3) != 0;
    d->revoked = sqlite3_column_int(st, 4) != 0;
    d->created_ms = sqlite3_column_int64(st, 5);
    if (sqlite3_column_bytes(st, 6) == LD_HASH_LEN)
        memcpy(d->hash, sqlite3_column_blob(st, 6), LD_HASH_LEN);
}

ss_rc db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                        unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_DEVICE_BY_HASH, &st, err);
    if (rc) return rc;
    sqlite3_bind_blob(st, 1, hash, LD_HASH_LEN, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 6) == LD_HASH_LEN) {
        device_row(st, ret);
        memcpy(ret_hash, sqlite3_column_blob(st, 6), LD_HASH_LEN);
    } else if (r == SQLITE_ROW || r == SQLITE_DONE) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no such device token");
    } else {
        rc = db_sql_fail(db, err, "device lookup");
    }
    db_give(db, S_DEVICE_BY_HASH, st);
    return rc;
}

/* One statement of `id` with ?1 = name; *ret_changes the rows it changed (may be NULL). */
static ss_rc by_name(ld_db *db, stmt_id id, const char *name, int *ret_changes, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, id, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = db_step_done(db, st, db_stmt_sql[id], err);
    if (!rc && ret_changes) *ret_changes = sqlite3_changes(db->sql);
    db_give(db, id, st);
    return rc;
}

ss_rc ld_db_device_revoke(ld_db *db, const char *name, ss_err *err)
{
    int changed = 0;
    ss_rc rc = db_begin(db, err);
    if (rc) return rc;
    rc = by_name(db, S_DEVICE_REVOKE, name, &changed, err);
    if (rc) goto out;
    if (changed == 0) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no device named %s", name);
        goto out;
    }
    rc = by_name(db, S_DEVICE_REVOKE_DIRTY, name, NULL, err);
    if (rc) goto out;
    rc = by_name(db, S_URLS_UNTIL_DEVICE, name, NULL, err);
    if (rc) goto out;
    rc = by_name(db, S_DEVICE_REVOKE_LEASES, name, NULL, err);
out:
    return db_end(db, rc, err);
}

ss_rc ld_db_device_list(ld_db *db, int (*fn)(void *ctx, const ld_device *d), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r = SQLITE_DONE;
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_DEVICE_LIST, &st, err);
    if (rc) goto out;
    for (;;) {
        ld_device d;
        r = sqlite3_step(st);
        if (r != SQLITE_ROW) break;
        device_row(st, &d);
        if (fn(ctx, &d)) break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "device list");
out:
    db_give(db, S_DEVICE_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- repositories ----------------------------------------------------------------- */

static void repo_row(sqlite3_stmt *st, ld_repo_row *r)
{
    db_copy_text(r->name, sizeof r->name, sqlite3_column_text(st, 0));
    db_copy_text(r->url, sizeof r->url, sqlite3_column_text(st, 1));
    r->head = (uint64_t)sqlite3_column_int64(st, 2);
    r->next_fencing = (uint64_t)sqlite3_column_int64(st, 3);
    r->dirty = sqlite3_column_int(st, 4) != 0;
    r->rewinding = sqlite3_column_int(st, 5) != 0;
    r->urls_until_ms = sqlite3_column_int64(st, 6);
    db_copy_text(r->head_etag, sizeof r->head_etag, sqlite3_column_text(st, 7)); /* NULL: "" */
    r->head_size = (uint64_t)sqlite3_column_int64(st, 8);
}

ss_rc db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_REPO_GET, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        repo_row(st, ret);
    else if (r == SQLITE_DONE)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no repository named %s", name);
    else
        rc = db_sql_fail(db, err, "repository lookup");
    db_give(db, S_REPO_GET, st);
    return rc;
}

ss_rc ld_db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = db_repo_get(db, name, ret, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Insert (id S_REPO_INSERT) or move (S_REPO_MOVE) repository name to url; in a transaction. */
static ss_rc repo_write(ld_db *db, stmt_id id, const char *name, const char *url, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, id, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
    rc = db_step_done(db, st, "repository add", err);
    db_give(db, id, st);
    return rc;
}

ss_rc ld_db_repo_put(ld_db *db, const char *name, const char *url, int *ret_changed, ss_err *err)
{
    ld_repo_row old;
    ss_rc rc;
    *ret_changed = 0;
    if (strlen(url) >= sizeof old.url)
        return ss_fail(err, SS_ERR_INVALID, "repository URL too long");
    rc = db_begin(db, err);
    if (rc) return rc;
    rc = db_repo_get(db, name, &old, err);
    if (rc == SS_ERR_NOT_FOUND) {
        rc = repo_write(db, S_REPO_INSERT, name, url, err);
        goto out;
    }
    if (rc) goto out;
    if (strcmp(old.url, url)) {
        rc = repo_write(db, S_REPO_MOVE, name, url, err);
        if (rc) goto out;
        *ret_changed = 1;
    }
out:
    rc = db_end(db, rc, err);
    if (rc) *ret_changed = 0;
    return rc;
}

ss_rc ld_db_repo_list(ld_db *db, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r = SQLITE_DONE;
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_REPO_LIST, &st, err);
    if (rc) goto out;
    for (;;) {
        ld_repo_row row;
        r = sqlite3_step(st);
        if (r != SQLITE_ROW) break;
        repo_row(st, &row);
        if (fn(ctx, &row)) break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "repository list");
out:
    db_give(db, S_REPO_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}
