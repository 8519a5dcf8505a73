/*
 * db.c: s3sync-lockd's persistent state in one SQLite database (WAL):
 * the token secret, devices, repositories (head, next fencing token, dirty)
 * and the one lease row per repository. Owns the schema and every SQL
 * statement; decides nothing (lease.c decides, then calls one function here
 * per state change, each one transaction).
 *
 * Durability: synchronous=FULL, so a transaction that returned is on disk
 * before lockd answers the request that caused it; that is what lets a
 * fencing token be "persisted before it is handed out".
 *
 * One connection, one mutex: every function holds the mutex for its whole
 * transaction, so the multi-statement updates below never interleave.
 */
#include "lockd.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ld_db {
    sqlite3 *sql;
    pthread_mutex_t mu;
    unsigned char secret[32];
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta ("
    "  k TEXT PRIMARY KEY, v BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS devices ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  repo TEXT NOT NULL,"
    "  read_only INTEGER NOT NULL,"
    "  token_hash BLOB NOT NULL UNIQUE," /* keyed BLAKE2b-256 of the token, never the token */
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS repositories ("
    "  name TEXT PRIMARY KEY,"
    "  url TEXT NOT NULL,"
    "  head INTEGER NOT NULL DEFAULT 0,"
    "  next_fencing INTEGER NOT NULL DEFAULT 1,"
    "  dirty INTEGER NOT NULL DEFAULT 0);"
    /* repo is the primary key: at most one lease row per repository (invariant 1). */
    "CREATE TABLE IF NOT EXISTS leases ("
    "  repo TEXT PRIMARY KEY REFERENCES repositories(name),"
    "  id TEXT NOT NULL,"
    "  device TEXT NOT NULL,"
    "  fencing INTEGER NOT NULL,"
    "  granted_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  put_seq INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 1;";

static ss_rc sql_fail(ld_db *db, ss_err *err, const char *what)
{
    return ss_fail(err, SS_ERR_IO, "database: %s: %s", what, sqlite3_errmsg(db->sql));
}

static ss_rc exec(ld_db *db, const char *sql, ss_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) == SQLITE_OK) return SS_OK;
    ss_rc rc = ss_fail(err, SS_ERR_IO, "database: %s: %s", sql, msg ? msg : "failed");
    sqlite3_free(msg);
    return rc;
}

static ss_rc prep(ld_db *db, const char *sql, sqlite3_stmt **st, ss_err *err)
{
    if (sqlite3_prepare_v2(db->sql, sql, -1, st, NULL) == SQLITE_OK) return SS_OK;
    *st = NULL;
    return sql_fail(db, err, "prepare");
}

/* Run a statement that returns no rows. */
static ss_rc step_done(ld_db *db, sqlite3_stmt *st, const char *what, ss_err *err)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) return SS_OK;
    if (r == SQLITE_CONSTRAINT) return ss_fail(err, SS_ERR_EXISTS, "%s: already exists", what);
    return sql_fail(db, err, what);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static ss_rc load_secret(ld_db *db, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = prep(db, "SELECT v FROM meta WHERE k = 'token_secret'", &st, err);
    if (rc) return rc;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
        memcpy(db->secret, sqlite3_column_blob(st, 0), 32);
        sqlite3_finalize(st);
        return SS_OK;
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        return ss_fail(err, SS_ERR_INTEGRITY, "database: token secret is not 32 bytes");
    if (r != SQLITE_DONE) return sql_fail(db, err, "read token secret");
    /* First use: a fresh secret, so a copy of the devices table alone lets
     * nobody test guessed tokens against the hashes. */
    randombytes_buf(db->secret, sizeof db->secret);
    if ((rc = prep(db, "INSERT INTO meta (k, v) VALUES ('token_secret', ?)", &st, err))) return rc;
    sqlite3_bind_blob(st, 1, db->secret, 32, SQLITE_STATIC);
    rc = step_done(db, st, "store token secret", err);
    sqlite3_finalize(st);
    return rc;
}

ss_rc ld_db_open(const char *path, ld_db **ret_db, ss_err *err)
{
    ld_db *db = NULL;
    ss_rc rc;
    *ret_db = NULL;
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_INVALID, "libsodium initialisation failed");
    db = calloc(1, sizeof *db);
    if (!db) return ss_fail(err, SS_ERR_NOMEM, "database: out of memory");
    pthread_mutex_init(&db->mu, NULL);
    if (sqlite3_open_v2(path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = ss_fail(err, SS_ERR_IO, "database %s: %s", path,
                     db->sql ? sqlite3_errmsg(db->sql) : "cannot open");
        goto fail;
    }
    /* An admin command may run beside the server: wait for its write lock. */
    sqlite3_busy_timeout(db->sql, 5000);
    if ((rc = exec(db, "PRAGMA journal_mode = WAL", err)) ||
        (rc = exec(db, "PRAGMA synchronous = FULL", err)) ||
        (rc = exec(db, "PRAGMA foreign_keys = ON", err)) || (rc = exec(db, "BEGIN IMMEDIATE", err)))
        goto fail;
    if ((rc = exec(db, schema, err)) || (rc = load_secret(db, err))) {
        exec(db, "ROLLBACK", NULL);
        goto fail;
    }
    if ((rc = exec(db, "COMMIT", err))) goto fail;
    *ret_db = db;
    return SS_OK;
fail:
    ld_db_close(db);
    return rc;
}

void ld_db_close(ld_db *db)
{
    if (!db) return;
    sqlite3_close(db->sql);
    sodium_memzero(db->secret, sizeof db->secret);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

void ld_db_secret(const ld_db *db, unsigned char out[32])
{
    memcpy(out, db->secret, 32);
}

/* Run one statement inside the caller's transaction with ?1 = repo, ?2 = id,
 * ?3 = n; binding a number the statement does not use is harmless. */
static ss_rc run(ld_db *db, const char *sql, const char *repo, const char *id, int64_t n,
                 ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = prep(db, sql, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    if (id) sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    rc = step_done(db, st, sql, err);
    sqlite3_finalize(st);
    return rc;
}

/* --- devices ------------------------------------------------------------------ */

ss_rc ld_db_device_add(ld_db *db, const char *name, const char *repo, int read_only,
                       const unsigned char hash[LD_HASH_LEN], int64_t now_ms, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = prep(db,
              "INSERT INTO devices (name, repo, read_only, token_hash, created_ms)"
              " VALUES (?, ?, ?, ?, ?)",
              &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, read_only ? 1 : 0);
        sqlite3_bind_blob(st, 4, hash, LD_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms);
        rc = step_done(db, st, "device add", err);
        if (rc == SS_ERR_EXISTS) rc = ss_fail(err, SS_ERR_EXISTS, "device %s already exists", name);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

#define DEVICE_COLS "id, name, repo, read_only, revoked, created_ms, token_hash"

static void device_row(sqlite3_stmt *st, ld_device *d)
{
    d->id = sqlite3_column_int64(st, 0);
    copy_text(d->name, sizeof d->name, sqlite3_column_text(st, 1));
    copy_text(d->repo, sizeof d->repo, sqlite3_column_text(st, 2));
    d->read_only = sqlite3_column_int(st, 3) != 0;
    d->revoked = sqlite3_column_int(st, 4) != 0;
    d->created_ms = sqlite3_column_int64(st, 5);
}

ss_rc ld_db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                           unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = prep(db, "SELECT " DEVICE_COLS " FROM devices WHERE token_hash = ?", &st, err);
    if (!rc) {
        sqlite3_bind_blob(st, 1, hash, LD_HASH_LEN, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW && sqlite3_column_bytes(st, 6) == LD_HASH_LEN) {
            device_row(st, ret);
            memcpy(ret_hash, sqlite3_column_blob(st, 6), LD_HASH_LEN);
        } else if (r == SQLITE_ROW || r == SQLITE_DONE) {
            rc = ss_fail(err, SS_ERR_NOT_FOUND, "no such device token");
        } else {
            rc = sql_fail(db, err, "device lookup");
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_device_revoke(ld_db *db, const char *name, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) goto out;
    if ((rc = prep(db, "UPDATE devices SET revoked = 1 WHERE name = ?", &st, err))) goto rollback;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if ((rc = step_done(db, st, "device revoke", err))) goto rollback;
    if (sqlite3_changes(db->sql) == 0) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no device named %s", name);
        goto rollback;
    }
    sqlite3_finalize(st);
    /* A revoked device's lease must not block its repository until expiry;
     * if it had PUT URLs out, the next grant reconciles first (invariant 5). */
    if ((rc = prep(db,
                   "UPDATE repositories SET dirty = 1 WHERE name IN"
                   " (SELECT repo FROM leases WHERE device = ? AND put_seq > repositories.head)",
                   &st, err)))
        goto rollback;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if ((rc = step_done(db, st, "device revoke", err))) goto rollback;
    sqlite3_finalize(st);
    if ((rc = prep(db, "DELETE FROM leases WHERE device = ?", &st, err))) goto rollback;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if ((rc = step_done(db, st, "device revoke", err))) goto rollback;
    rc = exec(db, "COMMIT", err);
    if (!rc) goto out;
rollback:
    exec(db, "ROLLBACK", NULL);
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_device_list(ld_db *db, int (*fn)(void *ctx, const ld_device *d), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r;
    pthread_mutex_lock(&db->mu);
    rc = prep(db, "SELECT " DEVICE_COLS " FROM devices ORDER BY name", &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_device d;
        device_row(st, &d);
        if (fn(ctx, &d)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = sql_fail(db, err, "device list");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- repositories ----------------------------------------------------------------- */

#define REPO_COLS "name, url, head, next_fencing, dirty"

static void repo_row(sqlite3_stmt *st, ld_repo_row *r)
{
    copy_text(r->name, sizeof r->name, sqlite3_column_text(st, 0));
    copy_text(r->url, sizeof r->url, sqlite3_column_text(st, 1));
    r->head = (uint64_t)sqlite3_column_int64(st, 2);
    r->next_fencing = (uint64_t)sqlite3_column_int64(st, 3);
    r->dirty = sqlite3_column_int(st, 4) != 0;
}

/* Caller holds the mutex. */
static ss_rc repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = prep(db, "SELECT " REPO_COLS " FROM repositories WHERE name = ?", &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        repo_row(st, ret);
    else if (r == SQLITE_DONE)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no repository named %s", name);
    else
        rc = sql_fail(db, err, "repository lookup");
    sqlite3_finalize(st);
    return rc;
}

ss_rc ld_db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = repo_get(db, name, ret, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_put(ld_db *db, const char *name, const char *url, int *ret_changed, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ld_repo_row old;
    ss_rc rc;
    *ret_changed = 0;
    if (strlen(url) >= sizeof old.url)
        return ss_fail(err, SS_ERR_INVALID, "repository URL too long");
    pthread_mutex_lock(&db->mu);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) goto out;
    rc = repo_get(db, name, &old, err);
    if (rc == SS_ERR_NOT_FOUND) {
        rc = prep(db, "INSERT INTO repositories (name, url) VALUES (?, ?)", &st, err);
    } else if (!rc && strcmp(old.url, url)) {
        /* Keep next_fencing: tokens must still only increase (invariant 2). */
        rc = prep(db, "UPDATE repositories SET url = ?2, head = 0, dirty = 1 WHERE name = ?1", &st,
                  err);
        *ret_changed = 1;
    }
    if (rc) goto rollback;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
        if ((rc = step_done(db, st, "repository add", err))) goto rollback;
    }
    rc = exec(db, "COMMIT", err);
    if (!rc) goto out;
rollback:
    exec(db, "ROLLBACK", NULL);
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_list(ld_db *db, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r;
    pthread_mutex_lock(&db->mu);
    rc = prep(db, "SELECT " REPO_COLS " FROM repositories ORDER BY name", &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_repo_row row;
        repo_row(st, &row);
        if (fn(ctx, &row)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = sql_fail(db, err, "repository list");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_mark_dirty(ld_db *db, const char *repo, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = run(db, "UPDATE repositories SET dirty = 1 WHERE name = ?1", repo, NULL, 0, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_raise_head(ld_db *db, const char *repo, uint64_t head, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = prep(db, "UPDATE repositories SET head = max(head, ?2), dirty = 0 WHERE name = ?1", &st,
              err);
    if (!rc) {
        sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)head);
        rc = step_done(db, st, "raise head", err);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- leases ------------------------------------------------------------------------- */

#define LEASE_COLS "id, device, fencing, granted_ms, expires_ms, put_seq"

static ss_rc lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = prep(db, "SELECT " LEASE_COLS " FROM leases WHERE repo = ?", &st, err);
    *ret_found = 0;
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        copy_text(ret->id, sizeof ret->id, sqlite3_column_text(st, 0));
        copy_text(ret->device, sizeof ret->device, sqlite3_column_text(st, 1));
        ret->fencing = (uint64_t)sqlite3_column_int64(st, 2);
        ret->granted_ms = sqlite3_column_int64(st, 3);
        ret->expires_ms = sqlite3_column_int64(st, 4);
        ret->put_seq = (uint64_t)sqlite3_column_int64(st, 5);
        *ret_found = 1;
    } else if (r != SQLITE_DONE) {
        rc = sql_fail(db, err, "lease lookup");
    }
    sqlite3_finalize(st);
    return rc;
}

ss_rc ld_db_lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_get(db, repo, ret, ret_found, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_grant(ld_db *db, const char *repo, ld_lease_row *lease, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ld_repo_row r;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) goto out;
    if ((rc = repo_get(db, repo, &r, err))) goto rollback;
    /* The replaced lease (expired) may have had PUT URLs out: invariant 5. */
    if ((rc = run(db,
                  "UPDATE repositories SET dirty = 1 WHERE name = ?1 AND EXISTS"
                  " (SELECT 1 FROM leases WHERE repo = ?1 AND put_seq > repositories.head)",
                  repo, NULL, 0, err)) ||
        (rc = run(db, "DELETE FROM leases WHERE repo = ?1", repo, NULL, 0, err)) ||
        (rc = run(db, "UPDATE repositories SET next_fencing = ?3 + 1 WHERE name = ?1", repo, NULL,
                  (int64_t)r.next_fencing, err)))
        goto rollback;
    lease->fencing = r.next_fencing;
    lease->put_seq = 0;
    if ((rc = prep(db,
                   "INSERT INTO leases (repo, id, device, fencing, granted_ms, expires_ms, put_seq)"
                   " VALUES (?, ?, ?, ?, ?, ?, 0)",
                   &st, err)))
        goto rollback;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lease->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, lease->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)lease->fencing);
    sqlite3_bind_int64(st, 5, lease->granted_ms);
    sqlite3_bind_int64(st, 6, lease->expires_ms);
    if ((rc = step_done(db, st, "lease grant", err))) goto rollback;
    rc = exec(db, "COMMIT", err);
    if (!rc) goto out;
rollback:
    exec(db, "ROLLBACK", NULL);
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* One UPDATE/DELETE of the lease (repo, id); SS_ERR_NOT_FOUND when it is gone. */
static ss_rc lease_change(ld_db *db, const char *sql, const char *repo, const char *id, int64_t n,
                          ss_err *err)
{
    ss_rc rc = run(db, sql, repo, id, n, err);
    if (!rc && sqlite3_changes(db->sql) == 0)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "lease %s of %s is gone", id, repo);
    return rc;
}

ss_rc ld_db_lease_set_expiry(ld_db *db, const char *repo, const char *id, int64_t expires_ms,
                             ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_change(db, "UPDATE leases SET expires_ms = ?3 WHERE repo = ?1 AND id = ?2",
                            repo, id, expires_ms, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_set_put_seq(ld_db *db, const char *repo, const char *id, uint64_t seq,
                              ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_change(db, "UPDATE leases SET put_seq = ?3 WHERE repo = ?1 AND id = ?2", repo,
                            id, (int64_t)seq, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_delete(ld_db *db, const char *repo, const char *id, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) goto out;
    if ((rc = run(db,
                  "UPDATE repositories SET dirty = 1 WHERE name = ?1 AND EXISTS (SELECT 1 FROM"
                  " leases WHERE repo = ?1 AND id = ?2 AND put_seq > repositories.head)",
                  repo, id, 0, err)) ||
        (rc = lease_change(db, "DELETE FROM leases WHERE repo = ?1 AND id = ?2", repo, id, 0,
                           err)) ||
        (rc = exec(db, "COMMIT", err)))
        exec(db, "ROLLBACK", NULL);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_commit(ld_db *db, const char *repo, const char *id, uint64_t seq, int release,
                   ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = exec(db, "BEGIN IMMEDIATE", err))) goto out;
    /* "head = ?3 - 1" makes a commit that is not exactly head+1 change nothing.
     * put_seq stays: a committed put_seq (<= head) no longer makes a release
     * dirty, and it lets a repeated commit of the same sequence be recognised. */
    if ((rc = lease_change(db,
                           "UPDATE repositories SET head = ?3 WHERE name = ?1 AND head = ?3 - 1"
                           " AND EXISTS (SELECT 1 FROM leases WHERE repo = ?1 AND id = ?2)",
                           repo, id, (int64_t)seq, err)) ||
        (release && (rc = lease_change(db, "DELETE FROM leases WHERE repo = ?1 AND id = ?2", repo,
                                       id, 0, err))) ||
        (rc = exec(db, "COMMIT", err)))
        exec(db, "ROLLBACK", NULL);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}
