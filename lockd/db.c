/*
 * db.c: s3sync-lockd's persistent state in one SQLite database (WAL):
 * the token secret, devices, repositories (head, next fencing token, dirty,
 * rewinding), the one lease row per repository and the writers of each
 * sequence. This file owns the connection, the schema and its migrations,
 * every SQL statement (db_stmt_sql) and the helpers that run them; the
 * functions on top are in db_admin.c (devices, repositories), db_head.c
 * (leases, head, writers, rewind) and db_cache.c (the read cache), and
 * db_impl.h is what they share. Decides nothing (lease.c decides, then
 * calls one function per state change, each one transaction).
 *
 * Durability: synchronous=FULL, so a transaction that returned is on disk
 * before lockd answers the request that caused it; that is what lets a
 * fencing token be "persisted before it is handed out".
 *
 * One connection, one mutex: every function holds the mutex for its whole
 * transaction, so the multi-statement updates never interleave; the kept
 * statements and the read cache live under it too.
 */
#include "db_impl.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Numbered parameters where a statement runs through db_run(): ?1 repo, ?2 lease id, ?3 n. */
const char *const db_stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_DATA_VERSION] = "PRAGMA data_version",
    [S_DEVICE_ADD] = "INSERT INTO devices (name, repo, read_only, token_hash, created_ms)"
                     " VALUES (?, ?, ?, ?, ?)",
    [S_DEVICE_BY_HASH] = "SELECT " DEVICE_COLS " FROM devices WHERE token_hash = ?",
    [S_DEVICE_REVOKE] = "UPDATE devices SET revoked = 1 WHERE name = ?",
    /* A revoked device's lease must not block its repository until expiry;
     * if it had PUT URLs out, the next grant reconciles first (invariant 5). */
    [S_DEVICE_REVOKE_DIRTY] =
        "UPDATE repositories SET dirty = 1 WHERE name IN"
        " (SELECT repo FROM leases WHERE device = ? AND put_seq > repositories.head)",
    [S_DEVICE_REVOKE_LEASES] = "DELETE FROM leases WHERE device = ?",
    [S_DEVICE_LIST] = "SELECT " DEVICE_COLS " FROM devices ORDER BY name",
    [S_REPO_GET] = "SELECT " REPO_COLS " FROM " REPO_FROM " WHERE r.name = ?",
    [S_REPO_INSERT] = "INSERT INTO repositories (name, url) VALUES (?1, ?2)",
    /* Keep next_fencing: tokens must still only increase (invariant 2). */
    [S_REPO_MOVE] = "UPDATE repositories SET url = ?2, head = 0, dirty = 1 WHERE name = ?1",
    [S_REPO_LIST] = "SELECT " REPO_COLS " FROM " REPO_FROM " ORDER BY r.name",
    [S_REPO_MARK_DIRTY] = "UPDATE repositories SET dirty = 1 WHERE name = ?1",
    [S_REPO_RAISE_HEAD] = "UPDATE repositories SET head = max(head, ?3), dirty = 0 WHERE name = ?1",
    [S_LEASE_GET] = "SELECT " LEASE_COLS " FROM leases WHERE repo = ?",
    /* The replaced lease (expired) may have had PUT URLs out: invariant 5. */
    [S_GRANT_DIRTY] = "UPDATE repositories SET dirty = 1 WHERE name = ?1 AND EXISTS"
                      " (SELECT 1 FROM leases WHERE repo = ?1 AND put_seq > repositories.head)",
    [S_GRANT_DELETE] = "DELETE FROM leases WHERE repo = ?1",
    [S_GRANT_FENCING] = "UPDATE repositories SET next_fencing = ?3 + 1 WHERE name = ?1",
    [S_LEASE_EXPIRY] = "UPDATE leases SET expires_ms = ?3 WHERE repo = ?1 AND id = ?2",
    [S_LEASE_PUT_SEQ] = "UPDATE leases SET put_seq = ?3 WHERE repo = ?1 AND id = ?2",
    [S_DELETE_DIRTY] = "UPDATE repositories SET dirty = 1 WHERE name = ?1 AND EXISTS (SELECT 1"
                       " FROM leases WHERE repo = ?1 AND id = ?2 AND put_seq > repositories.head)",
    [S_LEASE_DELETE] = "DELETE FROM leases WHERE repo = ?1 AND id = ?2",
    /* "head = ?3 - 1" makes a commit that is not exactly head+1 change nothing.
     * put_seq stays: a committed put_seq (<= head) no longer makes a release
     * dirty, and it lets a repeated commit of the same sequence be recognised. */
    [S_COMMIT_HEAD] = "UPDATE repositories SET head = ?3 WHERE name = ?1 AND head = ?3 - 1"
                      " AND EXISTS (SELECT 1 FROM leases WHERE repo = ?1 AND id = ?2)",
    /* Before a lease that was given PUT URLs ends: they stay valid until its
     * expiry, and a rewind must wait that long (db_head.c). */
    [S_URLS_UNTIL] = "UPDATE repositories SET urls_until_ms = max(urls_until_ms, (SELECT"
                     " expires_ms FROM leases WHERE repo = ?1 AND id = ?2 AND put_seq > 0))"
                     " WHERE name = ?1 AND EXISTS (SELECT 1 FROM leases WHERE repo = ?1"
                     " AND id = ?2 AND put_seq > 0)",
    [S_URLS_UNTIL_DEVICE] = "UPDATE repositories SET urls_until_ms = max(urls_until_ms, (SELECT"
                            " expires_ms FROM leases WHERE repo = repositories.name AND device = ?1"
                            " AND put_seq > 0)) WHERE name IN (SELECT repo FROM leases WHERE"
                            " device = ?1 AND put_seq > 0)",
    /* The device a lease's PUT URLs for sequence ?3 go to: it alone can write log/<?3>. */
    [S_WRITER_ADD] = "INSERT OR IGNORE INTO writers (repo, seq, device)"
                     " SELECT ?1, ?3, device FROM leases WHERE repo = ?1 AND id = ?2",
    [S_WRITERS_GET] = "SELECT device FROM writers WHERE repo = ? AND seq = ? ORDER BY rowid",
    [S_WRITERS_DROP] = "DELETE FROM writers WHERE repo = ?1 AND seq > ?3",
    [S_REWIND_BEGIN] =
        "UPDATE repositories SET head = ?3, dirty = 0, rewinding = 1 WHERE name = ?1",
    [S_REWIND_END] = "UPDATE repositories SET rewinding = 0 WHERE name = ?1",
    [S_HEAD_OBJECT] = "INSERT OR REPLACE INTO head_objects (repo, seq, etag, size)"
                      " VALUES (?1, ?2, ?3, ?4)",
    /* A record written back (db_state.c): the columns a decision may change. */
    [S_STATE_REPO] = "UPDATE repositories SET head = ?2, next_fencing = ?3, dirty = ?4,"
                     " rewinding = ?5, urls_until_ms = ?6 WHERE name = ?1",
    [S_STATE_LEASE] = "INSERT OR REPLACE INTO leases (repo, id, device, fencing, granted_ms,"
                      " expires_ms, put_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
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
    "  put_seq INTEGER NOT NULL DEFAULT 0);";

/*
 * Version 2 (user_version; version 1 is the tables above): rewinding (an
 * admin's rewind is under way: no lease is granted), urls_until_ms (no PUT
 * URL of the repository is valid after it), and who was given the PUT URLs
 * of each sequence, and log/<head> as lockd saw it (the fork check). Schema
 * changes only (ADD COLUMN with a default rewrites
 * no row): an old database migrates in milliseconds, whatever its size.
 */
static const char migrate_v2[] =
    "ALTER TABLE repositories ADD COLUMN rewinding INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE repositories ADD COLUMN urls_until_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE writers ("
    "  repo TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  device TEXT NOT NULL,"
    "  PRIMARY KEY (repo, seq, device));"
    /* What log/<seq> was when head moved to seq (commit's HEAD, reconciliation's listing):
     * GET head hands it out for the devices' fork check (docs/PROTOCOL.md). A row whose
     * seq is not the head any more is ignored, so whatever moves head needs not know it. */
    "CREATE TABLE head_objects ("
    "  repo TEXT PRIMARY KEY REFERENCES repositories(name),"
    "  seq INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  size INTEGER NOT NULL);"
    "PRAGMA user_version = 2;";
#define SCHEMA_VERSION 2
#define BUSY_TIMEOUT_MS 5000 /* how long a write waits for an admin command's lock */

ss_rc db_sql_fail(ld_db *db, ss_err *err, const char *what)
{
    return ss_fail(err, SS_ERR_IO, "database: %s: %s", what, sqlite3_errmsg(db->sql));
}

/* Start-up only (schema, pragmas): compiled once anyway. */
static ss_rc exec(ld_db *db, const char *sql, ss_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) == SQLITE_OK) return SS_OK;
    ss_rc rc = ss_fail(err, SS_ERR_IO, "database: %s: %s", sql, msg ? msg : "failed");
    sqlite3_free(msg);
    return rc;
}

ss_rc db_take(ld_db *db, stmt_id id, sqlite3_stmt **st, ss_err *err)
{
    *st = db->stmts[id];
    if (*st) {
        db->stmts[id] = NULL;
        return SS_OK;
    }
    if (sqlite3_prepare_v3(db->sql, db_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
        SQLITE_OK)
        return SS_OK;
    *st = NULL;
    return db_sql_fail(db, err, "prepare");
}

void db_give(ld_db *db, stmt_id id, sqlite3_stmt *st)
{
    if (!st) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (db->stmts[id])
        sqlite3_finalize(st);
    else
        db->stmts[id] = st;
}

ss_rc db_step_done(ld_db *db, sqlite3_stmt *st, const char *what, ss_err *err)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) return SS_OK;
    if (r == SQLITE_CONSTRAINT) return ss_fail(err, SS_ERR_EXISTS, "%s: already exists", what);
    return db_sql_fail(db, err, what);
}

ss_rc db_txn(ld_db *db, stmt_id id, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, id, &st, err);
    if (rc) return rc;
    rc = db_step_done(db, st, db_stmt_sql[id], err);
    db_give(db, id, st);
    return rc;
}

void db_rollback(ld_db *db)
{
    db_txn(db, S_ROLLBACK, NULL);
}

ss_rc db_finish(ld_db *db, ss_rc rc, ss_err *err)
{
    if (rc) goto fail;
    rc = db_txn(db, S_COMMIT, err);
    if (rc) goto fail;
    return SS_OK;
fail:
    db_rollback(db);
    return rc;
}

ss_rc db_begin(ld_db *db, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = db_txn(db, S_BEGIN_IMMEDIATE, err);
    if (rc) pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc db_end(ld_db *db, ss_rc rc, ss_err *err)
{
    rc = db_finish(db, rc, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

void db_copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

ss_rc db_run(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, id, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    if (lease_id) sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    rc = db_step_done(db, st, db_stmt_sql[id], err);
    db_give(db, id, st);
    return rc;
}

ss_rc db_run_locked(ld_db *db, stmt_id id, const char *repo, int64_t n, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = db_run(db, id, repo, NULL, n, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- opening ---------------------------------------------------------------------- */

static ss_rc load_secret(ld_db *db, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    if (sqlite3_prepare_v2(db->sql, "SELECT v FROM meta WHERE k = 'token_secret'", -1, &st, NULL) !=
        SQLITE_OK)
        return db_sql_fail(db, err, "prepare");
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == LD_SECRET_LEN) {
        memcpy(db->secret, sqlite3_column_blob(st, 0), LD_SECRET_LEN);
        sqlite3_finalize(st);
        return SS_OK;
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        return ss_fail(err, SS_ERR_INTEGRITY, "database: token secret is not %d bytes",
                       LD_SECRET_LEN);
    if (r != SQLITE_DONE) return db_sql_fail(db, err, "read token secret");
    /* First use: a fresh secret, so a copy of the devices table alone lets
     * nobody test guessed tokens against the hashes. */
    randombytes_buf(db->secret, LD_SECRET_LEN);
    if (sqlite3_prepare_v2(db->sql, "INSERT INTO meta (k, v) VALUES ('token_secret', ?)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_sql_fail(db, err, "prepare");
    sqlite3_bind_blob(st, 1, db->secret, LD_SECRET_LEN, SQLITE_STATIC);
    rc = db_step_done(db, st, "store token secret", err);
    sqlite3_finalize(st);
    return rc;
}

/* The schema at SCHEMA_VERSION, inside the caller's transaction: version 1's
 * tables when missing, then each migration the database has not had. */
static ss_rc make_schema(ld_db *db, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    int version = -1;
    ss_rc rc = exec(db, schema, err);
    if (rc) return rc;
    if (sqlite3_prepare_v2(db->sql, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_sql_fail(db, err, "prepare");
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) return db_sql_fail(db, err, "schema version");
    if (version > SCHEMA_VERSION)
        return ss_fail(err, SS_ERR_INVALID,
                       "database: schema version %d is newer than this s3sync-lockd's (%d)",
                       version, SCHEMA_VERSION);
    return version < 2 ? exec(db, migrate_v2, err) : SS_OK;
}

/* Schema and token secret, one transaction: a failed first start leaves nothing half-made. */
static ss_rc make_contents(ld_db *db, ss_err *err)
{
    ss_rc rc = exec(db, "BEGIN IMMEDIATE", err);
    if (rc) return rc;
    rc = make_schema(db, err);
    if (rc) goto fail;
    rc = load_secret(db, err);
    if (rc) goto fail;
    return exec(db, "COMMIT", err);
fail:
    exec(db, "ROLLBACK", NULL);
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
    db->secret = sodium_malloc(LD_SECRET_LEN);
    if (!db->secret) {
        free(db);
        return ss_fail(err, SS_ERR_NOMEM, "database: out of memory");
    }
    pthread_mutex_init(&db->mu, NULL);
    db->seen_version = -1;
    if (sqlite3_open_v2(path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = ss_fail(err, SS_ERR_IO, "database %s: %s", path,
                     db->sql ? sqlite3_errmsg(db->sql) : "cannot open");
        goto fail;
    }
    /* An admin command may run beside the server: wait for its write lock. */
    sqlite3_busy_timeout(db->sql, BUSY_TIMEOUT_MS);
    rc = exec(db, "PRAGMA journal_mode = WAL", err);
    if (rc) goto fail;
    rc = exec(db, "PRAGMA synchronous = FULL", err);
    if (rc) goto fail;
    rc = exec(db, "PRAGMA foreign_keys = ON", err);
    if (rc) goto fail;
    rc = make_contents(db, err);
    if (rc) goto fail;
    *ret_db = db;
    return SS_OK;
fail:
    ld_db_close(db);
    return rc;
}

void ld_db_close(ld_db *db)
{
    if (!db) return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(db->stmts[i]);
    sqlite3_close(db->sql);
    sodium_free(db->secret); /* wipes */
    db_cache_flush(db);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

void ld_db_secret(const ld_db *db, unsigned char out[LD_SECRET_LEN])
{
    memcpy(out, db->secret, LD_SECRET_LEN);
}
