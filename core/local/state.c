/*
 * state: SQLite schema and statements behind state.h, and the rows (files)
 * and chunks tables; meta and devices are state_meta.c. Every statement is
 * prepared once per connection; rows handed out point into SQLite's memory
 * and live until the statement steps again.
 */
#include "state_impl.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state_body.h"
#include "path.h"

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA journal_size_limit=8388608;" /* a WAL that a big push grew is cut back after */
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS files("
    "  path TEXT PRIMARY KEY COLLATE ss_path, kind INTEGER NOT NULL, mode INTEGER NOT NULL,"
    "  size INTEGER NOT NULL, mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
    "  ino INTEGER NOT NULL, ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,"
    "  content_id BLOB, storage INTEGER NOT NULL, body BLOB, local_mode INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS chunks(id BLOB NOT NULL, pack TEXT NOT NULL,"
    "  off INTEGER NOT NULL, sealed INTEGER NOT NULL, plain INTEGER NOT NULL,"
    "  refs INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(id, pack, off)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS chunks_dead ON chunks(refs) WHERE refs <= 0;"
    "CREATE TABLE IF NOT EXISTS devices(id BLOB PRIMARY KEY, pk BLOB NOT NULL,"
    "  enrolled INTEGER NOT NULL, revoked INTEGER NOT NULL, last INTEGER NOT NULL,"
    "  name TEXT NOT NULL) WITHOUT ROWID;";

/*
 * state.db files made before chunks counted their references: the table is
 * rebuilt from the rows (once), since it may name chunks no row references.
 */
static const char old_chunks[] = "SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'refs'";
/*
 * ... and before rows kept the local mode apart from the store's: until a
 * pull masked modes the two were one, so a NULL local_mode reads as mode.
 */
static const char old_files[] =
    "SELECT 1 FROM pragma_table_info('files') WHERE name = 'local_mode'";

#define FILE_COLS                                                                                  \
    "path, kind, mode, size, mtime_s, mtime_ns, ino, ctime_s, ctime_ns, content_id, storage, "     \
    "body, "                                                                                       \
    "local_mode"

static const char *const queries[Q_COUNT] = {
    [Q_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [Q_META_SET] = "INSERT OR REPLACE INTO meta(k, v) VALUES (?1, ?2)",
    [Q_LOOKUP] = "SELECT " FILE_COLS " FROM files WHERE path = ?1",
    [Q_PUT] = "INSERT OR REPLACE INTO files(" FILE_COLS
              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [Q_REMOVE] = "DELETE FROM files WHERE path = ?1",
    [Q_REMOVE_TREE] = "DELETE FROM files WHERE path = ?1 OR "
                      "substr(path, 1, length(?1) + 1) = ?1 || '/'",
    /* A live location first; one with no reference is a chunk of this very push. */
    [Q_CHUNK_FIND] = "SELECT pack, off, sealed, plain FROM chunks WHERE id = ?1 "
                     "ORDER BY refs DESC LIMIT 1",
    [Q_CHUNK_ADD] = "INSERT OR IGNORE INTO chunks(id, pack, off, sealed, plain) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_CHUNK_REF] = "INSERT INTO chunks(id, pack, off, sealed, plain, refs) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, 1) "
                    "ON CONFLICT(id, pack, off) DO UPDATE SET refs = refs + 1",
    [Q_CHUNK_UNREF] = "UPDATE chunks SET refs = refs - 1 WHERE id = ?1 AND pack = ?2 AND off = ?3",
    [Q_BODY] = "SELECT body FROM files WHERE path = ?1 AND storage = 2",
    [Q_BODIES_TREE] = "SELECT body FROM files WHERE storage = 2 AND (path = ?1 OR "
                      "substr(path, 1, length(?1) + 1) = ?1 || '/')",
    [Q_PRUNE] = "DELETE FROM chunks WHERE refs <= 0",
    [Q_DEV_ALL] = "SELECT id, pk, enrolled, revoked, last, name FROM devices",
    [Q_DEV_CLEAR] = "DELETE FROM devices",
    [Q_DEV_PUT] = "INSERT INTO devices(id, pk, enrolled, revoked, last, name) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
};

struct ss_state_iter {
    sqlite3_stmt *stmt;
    ss_state_row row;
};

static int path_collate(void *arg, int alen, const void *a, int blen, const void *b)
{
    (void)arg;
    return ss_path_cmp(a, (size_t)alen, b, (size_t)blen);
}

ss_rc ss_state_db_fail(ss_state *st, sqlite3 *db, ss_err *err, const char *what)
{
    int code = sqlite3_errcode(db);
    ss_rc rc = code == SQLITE_NOMEM                           ? SS_ERR_NOMEM
               : code == SQLITE_BUSY || code == SQLITE_LOCKED ? SS_ERR_CONFLICT
                                                              : SS_ERR_IO;
    return ss_fail(err, rc, "state %s: %s: %s", st->path, what, sqlite3_errmsg(db));
}

static ss_rc open_conn(ss_state *st, int flags, sqlite3 **ret_db, ss_err *err)
{
    sqlite3 *db = NULL;
    *ret_db = NULL;
    /* One thread uses a connection at a time (scan.c's thread never does): no mutex per call. */
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(st->path, &db, flags, NULL) != SQLITE_OK) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "state %s: %s", st->path,
                           db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 0);
    /*
     * Every command opens and closes the database: by default the last close
     * copies the WAL into the database (a write and an fdatasync) and deletes
     * it, and the next command's first commit creates it again (an fsync of
     * .s3sync/ besides the WAL's). Commits are durable in the WAL already
     * (synchronous=FULL), so the WAL stays and is copied back when it reaches
     * SQLite's automatic checkpoint size, at a commit.
     */
    int one = 1;
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    if (sqlite3_create_collation(db, "ss_path", SQLITE_UTF8, NULL, path_collate) != SQLITE_OK) {
        ss_rc rc = ss_state_db_fail(st, db, err, "register collation");
        sqlite3_close(db);
        return rc;
    }
    *ret_db = db;
    return SS_OK;
}

static int has_row(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q = NULL;
    int r = sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return r;
}

static ss_rc recount(ss_state *st, ss_err *err);

ss_rc ss_state_open(const char *path, int create, ss_state **ret_state, ss_err *err)
{
    ss_state *st = NULL;
    int rebuild, add_local_mode;
    ss_rc rc;
    *ret_state = NULL;
    st = calloc(1, sizeof *st);
    if (st) st->path = strdup(path);
    if (!st || !st->path) {
        free(st);
        return ss_fail(err, SS_ERR_NOMEM, "state %s: out of memory", path);
    }
    rc = open_conn(st, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0), &st->wr, err);
    if (rc) goto fail;
    rebuild = has_row(st->wr, "SELECT 1 FROM sqlite_master WHERE name = 'chunks'") &&
              !has_row(st->wr, old_chunks);
    add_local_mode = has_row(st->wr, "SELECT 1 FROM sqlite_master WHERE name = 'files'") &&
                     !has_row(st->wr, old_files);
    if ((rebuild && sqlite3_exec(st->wr, "DROP TABLE chunks", NULL, NULL, NULL) != SQLITE_OK) ||
        (add_local_mode && sqlite3_exec(st->wr, "ALTER TABLE files ADD COLUMN local_mode INTEGER",
                                        NULL, NULL, NULL) != SQLITE_OK) ||
        sqlite3_exec(st->wr, schema, NULL, NULL, NULL) != SQLITE_OK) {
        rc = ss_state_db_fail(st, st->wr, err, "create schema");
        goto fail;
    }
    /*
     * The writer's page cache: a first push of 1,000,000 files writes ~250 MB
     * of rows in one transaction, and the default 2 MB spilled and wrote
     * interior pages again and again. Only pages this connection writes or
     * reads fill it (a no-change sync reads through rd).
     */
    if (sqlite3_exec(st->wr, "PRAGMA cache_size=-32768", NULL, NULL, NULL) != SQLITE_OK) {
        rc = ss_state_db_fail(st, st->wr, err, "set the cache size");
        goto fail;
    }
    rc = open_conn(st, SQLITE_OPEN_READONLY, &st->rd, err);
    if (rc) goto fail;
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v2(st->wr, queries[i], -1, &st->q[i], NULL) != SQLITE_OK) {
            rc = ss_state_db_fail(st, st->wr, err, "prepare");
            goto fail;
        }
    if (rebuild) {
        rc = recount(st, err);
        if (rc) goto fail;
    }
    *ret_state = st;
    return SS_OK;
fail:
    ss_state_free(st);
    return rc;
}

void ss_state_free(ss_state *st)
{
    if (!st) return;
    if (st->in_txn) ss_state_rollback(st);
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(st->q[i]);
    sqlite3_close(st->rd);
    sqlite3_close(st->wr);
    free(st->path);
    free(st);
}

ss_rc ss_state_begin(ss_state *st, ss_err *err)
{
    if (sqlite3_exec(st->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ss_state_db_fail(st, st->wr, err, "begin");
    st->in_txn = 1;
    return SS_OK;
}

ss_rc ss_state_commit(ss_state *st, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_PRUNE];
    int r = sqlite3_step(q); /* chunks no row references are not reused (FORMAT.md "gc") */
    sqlite3_reset(q);
    if (r != SQLITE_DONE) return ss_state_db_fail(st, st->wr, err, "forget unreferenced chunks");
    if (sqlite3_exec(st->wr, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return ss_state_db_fail(st, st->wr, err, "commit");
    st->in_txn = 0;
    return SS_OK;
}

void ss_state_rollback(ss_state *st)
{
    if (st->in_txn) sqlite3_exec(st->wr, "ROLLBACK", NULL, NULL, NULL);
    st->in_txn = 0;
}

ss_rc ss_state_run(ss_state *st, sqlite3_stmt *q, ss_err *err, const char *what)
{
    int r = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return r == SQLITE_DONE ? SS_OK : ss_state_db_fail(st, st->wr, err, what);
}

static void read_row(sqlite3_stmt *q, ss_state_row *row)
{
    const void *cid = sqlite3_column_blob(q, 9);
    memset(row, 0, sizeof *row);
    row->path = (const char *)sqlite3_column_text(q, 0);
    row->kind = sqlite3_column_int(q, 1);
    row->mode = (uint32_t)sqlite3_column_int64(q, 2);
    row->size = (uint64_t)sqlite3_column_int64(q, 3);
    row->mtime_s = sqlite3_column_int64(q, 4);
    row->mtime_ns = (uint32_t)sqlite3_column_int64(q, 5);
    row->ino = (uint64_t)sqlite3_column_int64(q, 6);
    row->ctime_s = sqlite3_column_int64(q, 7);
    row->ctime_ns = (uint32_t)sqlite3_column_int64(q, 8);
    if (cid && sqlite3_column_bytes(q, 9) == sizeof row->content_id)
        memcpy(row->content_id, cid, sizeof row->content_id);
    row->storage = sqlite3_column_int(q, 10);
    row->body = sqlite3_column_blob(q, 11);
    row->body_len = (size_t)sqlite3_column_bytes(q, 11);
    row->local_mode = sqlite3_column_type(q, 12) == SQLITE_NULL
                          ? row->mode
                          : (uint32_t)sqlite3_column_int64(q, 12);
}

ss_rc ss_state_lookup(ss_state *st, const char *path, ss_state_row *ret_row, int *ret_found,
                      ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_LOOKUP];
    int r;
    memset(ret_row, 0, sizeof *ret_row);
    *ret_found = 0;
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        read_row(q, ret_row);
        *ret_found = 1;
        return SS_OK; /* the statement stays on the row: its memory backs ret_row */
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? SS_OK : ss_state_db_fail(st, st->wr, err, "look up a path");
}

/* Count the chunk references of a chunked row's body up (delta 1) or down (-1). */
static ss_rc count_refs(ss_state *st, const void *body, size_t len, int delta, ss_err *err)
{
    sqlite3_stmt *q = st->q[delta > 0 ? Q_CHUNK_REF : Q_CHUNK_UNREF];
    const char *pack;
    size_t pos = 0, pack_len;
    ss_chunk_ref ref;
    while (ss_state_body_next(body, len, &pos, &pack, &pack_len, &ref)) {
        sqlite3_bind_blob(q, 1, ref.id, sizeof ref.id, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, pack, (int)pack_len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 3, (sqlite3_int64)ref.offset);
        if (delta > 0) {
            sqlite3_bind_int64(q, 4, ref.sealed_len);
            sqlite3_bind_int64(q, 5, ref.plain_len);
        }
        ss_rc rc = ss_state_run(st, q, err, "count a chunk reference");
        if (rc) return rc;
    }
    return SS_OK;
}

/* Count down the references of the rows q (bound already) selects. */
static ss_rc unref_rows(ss_state *st, sqlite3_stmt *q, ss_err *err)
{
    ss_rc rc = SS_OK;
    for (;;) {
        int r = sqlite3_step(q);
        if (r == SQLITE_DONE) break;
        if (r != SQLITE_ROW) {
            rc = ss_state_db_fail(st, st->wr, err, "read a path");
            break;
        }
        rc = count_refs(st, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), -1, err);
        if (rc) break;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc;
}

static ss_rc unref_path(ss_state *st, const char *path, int tree, ss_err *err)
{
    sqlite3_stmt *q = st->q[tree ? Q_BODIES_TREE : Q_BODY];
    sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
    return unref_rows(st, q, err);
}

static ss_rc recount(ss_state *st, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    ss_rc rc = ss_state_begin(st, err);
    if (rc) return rc;
    if (sqlite3_prepare_v2(st->wr, "SELECT body FROM files WHERE storage = 2", -1, &q, NULL)) {
        rc = ss_state_db_fail(st, st->wr, err, "count chunk references");
        goto fail;
    }
    for (;;) {
        int r = sqlite3_step(q);
        if (r == SQLITE_DONE) break;
        if (r != SQLITE_ROW) {
            rc = ss_state_db_fail(st, st->wr, err, "count chunk references");
            goto fail;
        }
        rc = count_refs(st, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), 1, err);
        if (rc) goto fail;
    }
    sqlite3_finalize(q);
    q = NULL;
    rc = ss_state_commit(st, err);
    if (rc) goto fail;
    return SS_OK;
fail:
    sqlite3_finalize(q);
    ss_state_rollback(st);
    return rc;
}

/*
 * The chunks table holds exactly the chunks some row references (with the
 * count), plus, until commit, those a push sealed: so a push reuses only
 * chunks of the device's current state, which gc keeps (FORMAT.md "gc").
 */
static ss_rc put_row(ss_state *st, const ss_state_row *row, const ss_state_row *old, int known,
                     ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_PUT];
    ss_rc rc = SS_OK;
    if (row->kind == 1 && row->storage == 2) {
        rc = count_refs(st, row->body, row->body_len, 1, err);
        if (rc) return rc;
    }
    if (!known)
        rc = unref_path(st, row->path, 0, err);
    else if (old && old->storage == 2)
        rc = count_refs(st, old->body, old->body_len, -1, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, row->path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, row->kind);
    sqlite3_bind_int64(q, 3, row->mode);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)row->size);
    sqlite3_bind_int64(q, 5, row->mtime_s);
    sqlite3_bind_int64(q, 6, row->mtime_ns);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)row->ino);
    sqlite3_bind_int64(q, 8, row->ctime_s);
    sqlite3_bind_int64(q, 9, row->ctime_ns);
    if (row->kind == 1)
        sqlite3_bind_blob(q, 10, row->content_id, sizeof row->content_id, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 10);
    sqlite3_bind_int(q, 11, row->storage);
    if (row->body)
        sqlite3_bind_blob(q, 12, row->body, (int)row->body_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 12);
    sqlite3_bind_int64(q, 13, row->local_mode);
    sqlite3_reset(st->q[Q_LOOKUP]); /* row may have pointed into it; the binds copied */
    return ss_state_run(st, q, err, "write a path");
}

ss_rc ss_state_put(ss_state *st, const ss_state_row *row, ss_err *err)
{
    return put_row(st, row, NULL, 0, err);
}

ss_rc ss_state_put_over(ss_state *st, const ss_state_row *row, const ss_state_row *old, ss_err *err)
{
    return put_row(st, row, old, 1, err);
}

ss_rc ss_state_remove(ss_state *st, const char *path, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_REMOVE];
    ss_rc rc = unref_path(st, path, 0, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
    return ss_state_run(st, q, err, "remove a path");
}

ss_rc ss_state_remove_tree(ss_state *st, const char *path, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_REMOVE_TREE];
    ss_rc rc = unref_path(st, path, 1, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
    return ss_state_run(st, q, err, "remove a tree");
}

ss_rc ss_state_iter_new(ss_state *st, ss_state_iter **ret_iter, ss_err *err)
{
    ss_state_iter *it = calloc(1, sizeof *it);
    *ret_iter = NULL;
    if (!it) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    if (sqlite3_prepare_v2(st->rd, "SELECT " FILE_COLS " FROM files ORDER BY path", -1, &it->stmt,
                           NULL) != SQLITE_OK) {
        ss_rc rc = ss_state_db_fail(st, st->rd, err, "iterate");
        free(it);
        return rc;
    }
    *ret_iter = it;
    return SS_OK;
}

ss_rc ss_state_iter_next(ss_state_iter *it, const ss_state_row **ret_row, ss_err *err)
{
    int r = sqlite3_step(it->stmt);
    *ret_row = NULL;
    if (r == SQLITE_DONE) return SS_OK;
    if (r != SQLITE_ROW)
        return ss_fail(err, SS_ERR_IO, "state: iterate: %s",
                       sqlite3_errmsg(sqlite3_db_handle(it->stmt)));
    read_row(it->stmt, &it->row);
    *ret_row = &it->row;
    return SS_OK;
}

void ss_state_iter_free(ss_state_iter *it)
{
    if (!it) return;
    sqlite3_finalize(it->stmt);
    free(it);
}

ss_rc ss_state_chunk_find(ss_state *st, const uint8_t id[SS_CHUNK_ID_LEN], ss_chunk_loc *ret_loc,
                          int *ret_found, ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_CHUNK_FIND];
    int r;
    memset(ret_loc, 0, sizeof *ret_loc);
    *ret_found = 0;
    sqlite3_bind_blob(q, 1, id, SS_CHUNK_ID_LEN, SQLITE_STATIC);
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        snprintf(ret_loc->pack, sizeof ret_loc->pack, "%s",
                 (const char *)sqlite3_column_text(q, 0));
        ret_loc->off = (uint64_t)sqlite3_column_int64(q, 1);
        ret_loc->sealed_len = (uint32_t)sqlite3_column_int64(q, 2);
        ret_loc->plain_len = (uint32_t)sqlite3_column_int64(q, 3);
        *ret_found = 1;
    }
    sqlite3_reset(q);
    return r == SQLITE_ROW || r == SQLITE_DONE ? SS_OK
                                               : ss_state_db_fail(st, st->wr, err, "find a chunk");
}

ss_rc ss_state_chunk_add(ss_state *st, const uint8_t id[SS_CHUNK_ID_LEN], const ss_chunk_loc *loc,
                         ss_err *err)
{
    sqlite3_stmt *q = st->q[Q_CHUNK_ADD];
    sqlite3_bind_blob(q, 1, id, SS_CHUNK_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, loc->pack, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)loc->off);
    sqlite3_bind_int64(q, 4, loc->sealed_len);
    sqlite3_bind_int64(q, 5, loc->plain_len);
    return ss_state_run(st, q, err, "record a chunk");
}
