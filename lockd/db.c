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
 * transaction, so the multi-statement updates below never interleave; the
 * kept statements and the read cache (both below) live under it too.
 */
#include "lockd.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Prepared statements, one per call site (enum below, text in stmt_sql).
 * Compiling SQL was a third of lockd's CPU per request; now each statement
 * is compiled once, on first use, and kept. A statement is taken out of its
 * slot while in use and given back reset with its bindings cleared, so a
 * nested use of the same call site (a helper reached again while its
 * statement is still being stepped: the likely cause of an earlier cache's
 * 100% CPU spin) gets a fresh statement instead of resetting the one in use; a
 * statement never goes back un-reset, which in WAL mode would keep its read
 * transaction (and an old snapshot) open. All of it under db->mu.
 */
typedef enum stmt_id {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_DATA_VERSION,
    S_DEVICE_ADD,
    S_DEVICE_BY_HASH,
    S_DEVICE_REVOKE,
    S_DEVICE_REVOKE_DIRTY,
    S_DEVICE_REVOKE_LEASES,
    S_DEVICE_LIST,
    S_REPO_GET,
    S_REPO_INSERT,
    S_REPO_MOVE,
    S_REPO_LIST,
    S_REPO_MARK_DIRTY,
    S_REPO_RAISE_HEAD,
    S_LEASE_GET,
    S_GRANT_DIRTY,
    S_GRANT_DELETE,
    S_GRANT_FENCING,
    S_GRANT_INSERT,
    S_LEASE_EXPIRY,
    S_LEASE_PUT_SEQ,
    S_DELETE_DIRTY,
    S_LEASE_DELETE,
    S_COMMIT_HEAD,
    S_HEAD_OBJECT,
    S_COUNT
} stmt_id;

#define DEVICE_COLS "id, name, repo, read_only, revoked, created_ms, token_hash"
/* The head's object as lockd last saw it, only while it is the head's (seq = head). */
#define REPO_COLS "r.name, r.url, r.head, r.next_fencing, r.dirty, h.etag, h.size"
#define REPO_FROM "repositories r LEFT JOIN head_objects h ON h.repo = r.name AND h.seq = r.head"
#define LEASE_COLS "id, device, fencing, granted_ms, expires_ms, put_seq"

/* Numbered parameters where a statement runs through run(): ?1 repo, ?2 lease id, ?3 n. */
static const char *const stmt_sql[S_COUNT] = {
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
    [S_HEAD_OBJECT] = "INSERT OR REPLACE INTO head_objects (repo, seq, etag, size)"
                      " VALUES (?1, ?2, ?3, ?4)",
};

/*
 * The read cache: token hash -> device, and repository -> (repository row,
 * lease row), so the hot reads (every request's Bearer check, GET head)
 * touch no SQL while nothing changed. Direct-mapped on a few bytes of the
 * key (token hashes are keyed BLAKE2b, so uniform); a collision only evicts.
 * Unknown tokens are not cached: nobody can fill the cache from outside.
 *
 * Validity: lockd is NOT the only writer. The admin commands (device revoke,
 * which also deletes the device's lease; device add; repo add) run in
 * another process beside the server, and a revoked token must get 401 on the
 * very next request (tests/test-lockd.c, test_http_auth). So invalidating on
 * lockd's own write paths alone would be wrong. The cache is checked before
 * each use against two numbers: PRAGMA data_version, which changes when
 * another connection committed, and sqlite3_total_changes64, which changes
 * when this connection wrote a row (a rolled-back write flushes in vain,
 * which is harmless). Either one moved: the cache is emptied. The check is
 * one prepared statement step (a WAL read-lock round trip), against three
 * compiled-and-run queries before.
 */
#define CACHE_SLOTS 64

typedef struct dev_slot {
    int used;
    unsigned char hash[LD_HASH_LEN];
    ld_device dev;
} dev_slot;

typedef struct repo_slot {
    int used, lease_found;
    ld_repo_row repo;
    ld_lease_row lease;
} repo_slot;

struct ld_db {
    sqlite3 *sql;
    pthread_mutex_t mu;
    unsigned char secret[32];
    sqlite3_stmt *stmts[S_COUNT]; /* idle prepared statements; NULL while in use */
    int64_t seen_version, seen_changes;
    dev_slot devs[CACHE_SLOTS];
    repo_slot repos[CACHE_SLOTS];
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
    /* What log/<seq> was when head moved to seq (commit's HEAD, reconciliation's listing):
     * GET head hands it out for the devices' fork check (docs/PROTOCOL.md). A row whose
     * seq is not the head any more is ignored, so whatever moves head needs not know it. */
    "CREATE TABLE IF NOT EXISTS head_objects ("
    "  repo TEXT PRIMARY KEY REFERENCES repositories(name),"
    "  seq INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  size INTEGER NOT NULL);"
    "PRAGMA user_version = 1;";

static ss_rc sql_fail(ld_db *db, ss_err *err, const char *what)
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

/* The statement of call site id, ready to bind: the kept one, or a fresh one
 * when it is in use further up the stack (or was never compiled). */
static ss_rc take(ld_db *db, stmt_id id, sqlite3_stmt **st, ss_err *err)
{
    if ((*st = db->stmts[id])) {
        db->stmts[id] = NULL;
        return SS_OK;
    }
    if (sqlite3_prepare_v3(db->sql, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
        SQLITE_OK)
        return SS_OK;
    *st = NULL;
    return sql_fail(db, err, "prepare");
}

/* Back to its slot, reset (its read transaction ends) and unbound; a second
 * copy from a nested use is finalized. NULL is fine. */
static void give(ld_db *db, stmt_id id, sqlite3_stmt *st)
{
    if (!st) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (db->stmts[id])
        sqlite3_finalize(st);
    else
        db->stmts[id] = st;
}

/* Run a statement that returns no rows. */
static ss_rc step_done(ld_db *db, sqlite3_stmt *st, const char *what, ss_err *err)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) return SS_OK;
    if (r == SQLITE_CONSTRAINT) return ss_fail(err, SS_ERR_EXISTS, "%s: already exists", what);
    return sql_fail(db, err, what);
}

/* BEGIN, BEGIN IMMEDIATE, COMMIT or ROLLBACK. */
static ss_rc txn(ld_db *db, stmt_id id, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = take(db, id, &st, err);
    if (!rc) rc = step_done(db, st, stmt_sql[id], err);
    give(db, id, st);
    return rc;
}

/* After a failed step inside a transaction: undo it, keep the first error. */
static void rollback(ld_db *db)
{
    txn(db, S_ROLLBACK, NULL);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* --- the read cache ------------------------------------------------------------ */

static void cache_flush(ld_db *db)
{
    memset(db->devs, 0, sizeof db->devs);
    memset(db->repos, 0, sizeof db->repos);
}

/* Empty the cache if the database changed since the last check; 0 when the
 * cache may be used. On a database error the cache is emptied and not used. */
static int cache_valid(ld_db *db)
{
    sqlite3_stmt *st = NULL;
    int64_t changes = sqlite3_total_changes64(db->sql), version = -1;
    if (!take(db, S_DATA_VERSION, &st, NULL) && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int64(st, 0);
    give(db, S_DATA_VERSION, st);
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

static unsigned name_slot(const char *s)
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
        return sql_fail(db, err, "prepare");
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
    if (sqlite3_prepare_v2(db->sql, "INSERT INTO meta (k, v) VALUES ('token_secret', ?)", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_fail(db, err, "prepare");
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
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(db->stmts[i]);
    sqlite3_close(db->sql);
    sodium_memzero(db->secret, sizeof db->secret);
    cache_flush(db);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

void ld_db_secret(const ld_db *db, unsigned char out[32])
{
    memcpy(out, db->secret, 32);
}

/* Run one statement inside the caller's transaction with ?1 = repo, ?2 = id,
 * ?3 = n; binding a number the statement does not use is harmless. */
static ss_rc run(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n,
                 ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = take(db, id, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    if (lease_id) sqlite3_bind_text(st, 2, lease_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    rc = step_done(db, st, stmt_sql[id], err);
    give(db, id, st);
    return rc;
}

/* --- devices ------------------------------------------------------------------ */

ss_rc ld_db_device_add(ld_db *db, const char *name, const char *repo, int read_only,
                       const unsigned char hash[LD_HASH_LEN], int64_t now_ms, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if (!(rc = take(db, S_DEVICE_ADD, &st, err))) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, read_only ? 1 : 0);
        sqlite3_bind_blob(st, 4, hash, LD_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms);
        rc = step_done(db, st, "device add", err);
        if (rc == SS_ERR_EXISTS) rc = ss_fail(err, SS_ERR_EXISTS, "device %s already exists", name);
    }
    give(db, S_DEVICE_ADD, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

static void device_row(sqlite3_stmt *st, ld_device *d)
{
    d->id = sqlite3_column_int64(st, 0);
    copy_text(d->name, sizeof d->name, sqlite3_column_text(st, 1));
    copy_text(d->repo, sizeof d->repo, sqlite3_column_text(st, 2));
    d->read_only = sqlite3_column_int(st, 3) != 0;
    d->revoked = sqlite3_column_int(st, 4) != 0;
    d->created_ms = sqlite3_column_int64(st, 5);
}

/* Caller holds the mutex. */
static ss_rc device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                            unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = take(db, S_DEVICE_BY_HASH, &st, err);
    if (rc) return rc;
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
    give(db, S_DEVICE_BY_HASH, st);
    return rc;
}

ss_rc ld_db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                           unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    dev_slot *c = &db->devs[hash_slot(hash)];
    ss_rc rc = SS_OK;
    pthread_mutex_lock(&db->mu);
    if (cache_valid(db) == 0 && c->used && !memcmp(c->hash, hash, LD_HASH_LEN)) {
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
    ss_rc rc = take(db, id, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = step_done(db, st, stmt_sql[id], err);
    if (!rc && ret_changes) *ret_changes = sqlite3_changes(db->sql);
    give(db, id, st);
    return rc;
}

ss_rc ld_db_device_revoke(ld_db *db, const char *name, ss_err *err)
{
    int changed = 0;
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = by_name(db, S_DEVICE_REVOKE, name, &changed, err))) goto rollback;
    if (changed == 0) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no device named %s", name);
        goto rollback;
    }
    if ((rc = by_name(db, S_DEVICE_REVOKE_DIRTY, name, NULL, err)) ||
        (rc = by_name(db, S_DEVICE_REVOKE_LEASES, name, NULL, err)))
        goto rollback;
    if (!(rc = txn(db, S_COMMIT, err))) goto out;
rollback:
    rollback(db);
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
    rc = take(db, S_DEVICE_LIST, &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_device d;
        device_row(st, &d);
        if (fn(ctx, &d)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = sql_fail(db, err, "device list");
    give(db, S_DEVICE_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- repositories ----------------------------------------------------------------- */

static void repo_row(sqlite3_stmt *st, ld_repo_row *r)
{
    copy_text(r->name, sizeof r->name, sqlite3_column_text(st, 0));
    copy_text(r->url, sizeof r->url, sqlite3_column_text(st, 1));
    r->head = (uint64_t)sqlite3_column_int64(st, 2);
    r->next_fencing = (uint64_t)sqlite3_column_int64(st, 3);
    r->dirty = sqlite3_column_int(st, 4) != 0;
    copy_text(r->head_etag, sizeof r->head_etag, sqlite3_column_text(st, 5)); /* NULL: "" */
    r->head_size = (uint64_t)sqlite3_column_int64(st, 6);
}

/* Record obj as log/<seq>'s (obj NULL or without an ETag: nothing to record); in a transaction. */
static ss_rc head_object(ld_db *db, const char *repo, uint64_t seq, const ss_store_stat *obj,
                         ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc;
    if (!obj || !obj->etag[0]) return SS_OK;
    if ((rc = take(db, S_HEAD_OBJECT, &st, err))) return rc;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 3, obj->etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)obj->size);
    rc = step_done(db, st, "head object", err);
    give(db, S_HEAD_OBJECT, st);
    return rc;
}

/* Caller holds the mutex. */
static ss_rc repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = take(db, S_REPO_GET, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        repo_row(st, ret);
    else if (r == SQLITE_DONE)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no repository named %s", name);
    else
        rc = sql_fail(db, err, "repository lookup");
    give(db, S_REPO_GET, st);
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
    ld_repo_row old;
    stmt_id id = S_COUNT;
    ss_rc rc;
    *ret_changed = 0;
    if (strlen(url) >= sizeof old.url)
        return ss_fail(err, SS_ERR_INVALID, "repository URL too long");
    pthread_mutex_lock(&db->mu);
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    rc = repo_get(db, name, &old, err);
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
        if ((rc = take(db, id, &st, err))) goto rollback;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
        rc = step_done(db, st, "repository add", err);
        give(db, id, st);
        if (rc) goto rollback;
    }
    if (!(rc = txn(db, S_COMMIT, err))) goto out;
rollback:
    rollback(db);
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
    rc = take(db, S_REPO_LIST, &st, err);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ld_repo_row row;
        repo_row(st, &row);
        if (fn(ctx, &row)) break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE) rc = sql_fail(db, err, "repository list");
    give(db, S_REPO_LIST, st);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_mark_dirty(ld_db *db, const char *repo, ss_err *err)
{
    pthread_mutex_lock(&db->mu);
    ss_rc rc = run(db, S_REPO_MARK_DIRTY, repo, NULL, 0, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_repo_raise_head(ld_db *db, const char *repo, uint64_t head, const ss_store_stat *obj,
                            ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = run(db, S_REPO_RAISE_HEAD, repo, NULL, (int64_t)head, err)) ||
        (rc = head_object(db, repo, head, obj, err)) || (rc = txn(db, S_COMMIT, err)))
        rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* --- leases ------------------------------------------------------------------------- */

static ss_rc lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err)
{
    sqlite3_stmt *st = NULL;
    ss_rc rc = take(db, S_LEASE_GET, &st, err);
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
    give(db, S_LEASE_GET, st);
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
    ss_rc rc = txn(db, S_BEGIN, err);
    if (rc) return rc;
    if ((rc = repo_get(db, repo, ret_repo, err)) ||
        (rc = lease_get(db, repo, ret_lease, ret_found, err))) {
        rollback(db);
        return rc;
    }
    if ((rc = txn(db, S_COMMIT, err))) rollback(db);
    return rc;
}

ss_rc ld_db_repo_state(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                       int *ret_found, ss_err *err)
{
    repo_slot *c = &db->repos[name_slot(repo)];
    ss_rc rc = SS_OK;
    *ret_found = 0;
    pthread_mutex_lock(&db->mu);
    if (cache_valid(db) == 0 && c->used && !strcmp(c->repo.name, repo)) {
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
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = repo_get(db, repo, &r, err))) goto rollback;
    if ((rc = run(db, S_GRANT_DIRTY, repo, NULL, 0, err)) ||
        (rc = run(db, S_GRANT_DELETE, repo, NULL, 0, err)) ||
        (rc = run(db, S_GRANT_FENCING, repo, NULL, (int64_t)r.next_fencing, err)))
        goto rollback;
    lease->fencing = r.next_fencing;
    lease->put_seq = 0;
    if ((rc = take(db, S_GRANT_INSERT, &st, err))) goto rollback;
    sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, lease->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, lease->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)lease->fencing);
    sqlite3_bind_int64(st, 5, lease->granted_ms);
    sqlite3_bind_int64(st, 6, lease->expires_ms);
    rc = step_done(db, st, "lease grant", err);
    give(db, S_GRANT_INSERT, st);
    if (rc) goto rollback;
    if (!(rc = txn(db, S_COMMIT, err))) goto out;
rollback:
    rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* One UPDATE/DELETE of the lease (repo, id); SS_ERR_NOT_FOUND when it is gone. */
static ss_rc lease_change(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n,
                          ss_err *err)
{
    ss_rc rc = run(db, id, repo, lease_id, n, err);
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
    pthread_mutex_lock(&db->mu);
    ss_rc rc = lease_change(db, S_LEASE_PUT_SEQ, repo, id, (int64_t)seq, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_lease_delete(ld_db *db, const char *repo, const char *id, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = run(db, S_DELETE_DIRTY, repo, id, 0, err)) ||
        (rc = lease_change(db, S_LEASE_DELETE, repo, id, 0, err)) || (rc = txn(db, S_COMMIT, err)))
        rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

ss_rc ld_db_commit(ld_db *db, const char *repo, const char *id, uint64_t seq, int release,
                   const ss_store_stat *obj, ss_err *err)
{
    ss_rc rc;
    pthread_mutex_lock(&db->mu);
    if ((rc = txn(db, S_BEGIN_IMMEDIATE, err))) goto out;
    if ((rc = lease_change(db, S_COMMIT_HEAD, repo, id, (int64_t)seq, err)) ||
        (rc = head_object(db, repo, seq, obj, err)) ||
        (release && (rc = lease_change(db, S_LEASE_DELETE, repo, id, 0, err))) ||
        (rc = txn(db, S_COMMIT, err)))
        rollback(db);
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}
