/*
 * db.c: s3sync-lockd's persistent state in one SQLite database (WAL):
 * the token secret, devices, repositories (head, next fencing token, dirty,
 * rewinding), the one lease row per repository and the writers of each
 * sequence. Owns the schema, its migrations and every SQL statement; the
 * functions about leases, head and rewind are in db_head.c (db_impl.h is
 * what the two share). Decides nothing (lease.c decides, then calls one
 * function here per state change, each one transaction).
 *
 * Durability: synchronous=FULL, so a transaction that returned is on disk
 * before lockd answers the request that caused it; that is what lets a
 * fencing token be "persisted before it is handed out".
 *
 * One connection, one mutex: every function holds the mutex for its whole
 * transaction, so the multi-statement updates below never interleave; the
 * kept statements and the read cache (both below) live under it too.
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
    [S_GRANT_INSERT] =
        "INSERT INTO leases (repo, id, device, fencing, granted_ms, expires_ms, put_seq)"
        " VALUES (?, ?, ?, ?, ?, ?, 0)",
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
    if ((*st = db->stmts[id])) {
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
    if (!rc) rc = db_step_done(db, st, db_stmt_sql[id], err);
    db_give(db, id, st);
    return rc;
}

void db_rollback(ld_db *db)
{
    db_txn(db, S_ROLLBACK, NULL);
}

ss_rc db_finish(ld_db *db, ss_rc rc, ss_err *err)
{
    if (!rc) rc = db_txn(db, S_COMMIT, err);
    if (rc) db_rollback(db);
    return rc;
}

void db_copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* --- the read cache ------------------------------------------------------------ */

static void cache_flush(ld_db *db)
{
    memset(db->devs, 0, sizeof db->devs);
    memset(db->repos, 0, sizeof db->repos);
}

int db_cache_valid(ld_db *db)
{
    sqlite3_stmt *st = NULL;
    int64_t changes = sqlite3_total_changes64(db->sql), version = -1;
    if (!db_take(db, S_DATA_VERSION, &st, NULL) && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    db_give(db, S_DATA_VERSION, st);
    if (version < 0) {
        cache_flush(db);
        db->seen_version = -1;
        return -1;
    }
    if (version != db->seen_version || changes != db->seen_changes) {
        cache_flush(db);
        db->seen_version = version;
        db->seen_changes = changes;
    }
    return 0;
}

unsigned db_name_slot(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a: names are few and short */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % CACHE_SLOTS;
}

static unsigned hash_slot(const unsigned char hash[LD_HASH_LEN])
{
    return ((unsigned)hash[0] | (unsigned)hash[1] << 8) % CACHE_SLOTS;
}

static ss_rc load_secret(ld_db *db, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    if (sqlite3_prepare_v2(db->sql, "SELECT v FROM meta WHERE k = 'token_secret'", -1, &st, NULL) !=
        SQLITE_OK)
        return db_sql_fail(db, err, "prepare");
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
        memcpy(db->secret, sqlite3_column_blob(st, 0), 32);
        sqlite3_finalize(st);
        return SS_OK;
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        return ss_fail(err, SS_ERR_INTEGRITY, "database: token secret is not 32 bytes");
    if (r != SQLITE_DONE) return db_sql_fail(db, err, "read token secret");
    /* First use: a fresh secret, so a copy of the devices table alone lets
     * nobody test guessed tokens against the hashes. */
    randombytes_buf(db->secret, 32);
    if (sqlite3_prepare_v2(db->sql, "INSERT INTO meta (k, v) VALUES ('token_secret', ?)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_sql_fail(db, err, "prepare");
    sqlite3_bind_blob(st, 1, db->secret, 32, SQLITE_STATIC);
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

ss_rc ld_db_open(const char *path, ld_db **ret_db, ss_err *err)
{
    ld_db *db = NULL;
    ss_rc rc;
    *ret_db = NULL;
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_INVALID, "libsodium initialisation failed");
    db = calloc(1, sizeof *db);
    if (!db || !(db->secret = sodium_malloc(32))) {
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
    sqlite3_busy_timeout(db->sql, 5000);
    if ((rc = exec(db, "PRAGMA journal_mode = WAL", err)) ||
        (rc = exec(db, "PRAGMA synchronous = FULL", err)) ||
        (rc = exec(db, "PRAGMA foreign_keys = ON", err)) || (rc = exec(db, "BEGIN IMMEDIATE", err)))
        goto fail;
    if ((rc = make_schema(db, err)) || (rc = load_secret(db, err))) {
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
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(db->stmts[i]);
    sqlite3_close(db->sql);
    sodium_free(db->secret); /* wipes */
    cache_flush(db);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

void ld_db_secret(const ld_db *db, unsigned char out[32])
{
    memcpy(out, db->secret, 32);
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

/* --- devices ------------------------------------------------------------------ */

ss_rc ld_db_device_add(ld_db *db, const char *name, const char *repo, int read_only,
                       const unsigned char hash[LD_HASH_LEN], int64_t now_ms, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if (!(rc = db_take(db, S_DEVICE_ADD, &st, err))) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, read_only ? 1 : 0);
        sqlite3_bind_blob(st, 4, hash, LD_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms);
        rc = db_step_done(db, st, "device add", err);
        if (rc == SS_ERR_EXISTS) rc = ss_fail(err, SS_ERR_EXISTS, "device %s already exists", name);
    }
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
}

/* Caller holds the mutex. */
static ss_rc device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
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

ss_rc ld_db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                           unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    dev_slot *c = &db->devs[hash_slot(hash)];
    ss_rc rc = SS_OK;
    pthread_mutex_lock(&db->mu);
    if (db_cache_valid(db) == 0 && c->used && !memcmp(c->hash, hash, LD_HASH_LEN)) {
        *ret = c->dev;
        memcpy(ret_hash, c->hash, LD_HASH_LEN);
    } else if (!(rc = device_by_hash(db, hash, ret, ret_hash, err)) && db->seen_version >= 0) {
        c->used = 1;
        memcpy(c->hash, ret_hash, LD_HASH_LEN);
        c->dev = *ret;
    }
    pthread_mutex_unlock(&db->mu);
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
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = db_txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = by_name(db, S_DEVICE_REVOKE, name, &changed, err))) goto rollback;
    if (changed == 0) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no device named %s", name);
        goto rollback;
    }
    if ((rc = by_name(db, S_DEVICE_REVOKE_DIRTY, name, NULL, err)) ||
        (rc = by_name(db, S_URLS_UNTIL_DEVICE, name, NULL, err)) ||
        (rc = by_name(db, S_DEVICE_REVOKE_LEASES, name, NULL, err)))
        goto rollback;
    if (!(rc = db_txn(db, S_COMMIT, err))) goto out;
rollback:
    db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_device_list(ld_db *db, int (*fn)(void *ctx, const ld_device *d), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r = SQLITE_DONE;
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_DEVICE_LIST, &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_device d;
        device_row(st, &d);
        if (fn(ctx, &d)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "device list");
    db_give(db, S_DEVICE_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- repositories ----------------------------------------------------------------- */

static void db_repo_row(sqlite3_stmt *st, ld_repo_row *r)
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

/* Record obj as log/<seq>'s (obj NULL or without an ETag: nothing to record); in a transaction. */
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

/* Caller holds the mutex. */
ss_rc db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = db_take(db, S_REPO_GET, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        db_repo_row(st, ret);
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

ss_rc ld_db_repo_put(ld_db *db, const char *name, const char *url, int *ret_changed, ss_err *err)
{
    ld_repo_row old;
    stmt_id id = S_COUNT;
    ss_rc rc;
    *ret_changed = 0;
    if (strlen(url) >= sizeof old.url)
        return ss_fail(err, SS_ERR_INVALID, "repository URL too long");
    pthread_mutex_lock(&db->mu);
    if ((rc = db_txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    rc = db_repo_get(db, name, &old, err);
    if (rc == SS_ERR_NOT_FOUND) {
        id = S_REPO_INSERT;
        rc = SS_OK;
    } else if (!rc && strcmp(old.url, url)) {
        id = S_REPO_MOVE;
        *ret_changed = 1;
    }
    if (rc) goto rollback;
    if (id != S_COUNT) {
        sqlite3_stmt *st = NULL;
        if ((rc = db_take(db, id, &st, err))) goto rollback;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
        rc = db_step_done(db, st, "repository add", err);
        db_give(db, id, st);
        if (rc) goto rollback;
    }
    if (!(rc = db_txn(db, S_COMMIT, err))) goto out;
rollback:
    db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_list(ld_db *db, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    int r = SQLITE_DONE;
    pthread_mutex_lock(&db->mu);
    rc = db_take(db, S_REPO_LIST, &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_repo_row row;
        db_repo_row(st, &row);
        if (fn(ctx, &row)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = db_sql_fail(db, err, "repository list");
    db_give(db, S_REPO_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc db_run_locked(ld_db *db, stmt_id id, const char *repo, int64_t n, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = db_run(db, id, repo, NULL, n, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_mark_dirty(ld_db *db, const char *repo, ss_err *err)
{
    return db_run_locked(db, S_REPO_MARK_DIRTY, repo, 0, err);
}

ss_rc ld_db_repo_raise_head(ld_db *db, const char *repo, uint64_t head, const ss_store_stat *obj,
                            ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    rc = db_txn(db, S_BEGIN_IMMEDIATE, err);
    if (rc) goto out;
    rc = db_run(db, S_REPO_RAISE_HEAD, repo, NULL, (int64_t)head, err);
    if (!rc) rc = db_head_object(db, repo, head, obj, err);
    if (!rc) rc = db_txn(db, S_COMMIT, err);
    if (rc) db_rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}
