/*
 * replay: a state replayed from a walk's ops, in a temporary database, and
 * a checkpoint compared with it (verify).
 *
 *   C4. verify replays the log into a temporary table (on disk, not in
 *       memory) and compares each later checkpoint with it, path by path:
 *       every path it holds equal (kind, mode, mtime, size, content id,
 *       chunk refs or bytes), and as many paths as the replay.
 */
#include "s3sync.h"

#include <errno.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "ss_buf.h"

/* --- a replayed state, for verify (C4) ------------------------------------------------ */

#define UNDER "(path > ?1 || '/' AND path < ?1 || '0')"

enum { R_PUT, R_DROP_TREE, R_DROP_BELOW, R_GET, R_COUNT_ROWS, R_N };

static const char *const replay_sql[R_N] = {
    [R_PUT] = "INSERT OR REPLACE INTO st VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [R_DROP_TREE] = "DELETE FROM st WHERE path = ?1 OR " UNDER,
    [R_DROP_BELOW] = "DELETE FROM st WHERE " UNDER,
    [R_GET] = "SELECT kind, mode, mtime_s, mtime_ns, size, cid, body FROM st WHERE path = ?1",
    [R_COUNT_ROWS] = "SELECT count(*) FROM st",
};

struct eng_replay {
    sqlite3 *db;
    sqlite3_stmt *q[R_N];
    ss_state_body body; /* the current entry's: chunk refs, inline bytes or target */
};

ss_rc eng_replay_new(eng_replay **ret, ss_err *err)
{
    eng_replay *rp = calloc(1, sizeof *rp); /* owned until returned */
    ss_rc rc;
    *ret = NULL;
    if (!rp) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = eng_tempdb_open("CREATE TABLE st(path TEXT PRIMARY KEY, kind INTEGER, mode INTEGER,"
                         "  mtime_s INTEGER, mtime_ns INTEGER, size INTEGER, cid BLOB, body BLOB)"
                         "  WITHOUT ROWID;",
                         &rp->db, err);
    if (rc) goto fail;
    for (int i = 0; i < R_N; i++) {
        if (sqlite3_prepare_v2(rp->db, replay_sql[i], -1, &rp->q[i], NULL)) {
            rc = eng_tempdb_fail(rp->db, "prepare", err);
            goto fail;
        }
    }
    *ret = rp;
    return SS_OK;
fail:
    eng_replay_free(rp);
    return rc;
}

void eng_replay_free(eng_replay *rp)
{
    if (!rp) return;
    for (int i = 0; i < R_N; i++)
        sqlite3_finalize(rp->q[i]);
    sqlite3_close(rp->db);
    ss_state_body_free(&rp->body);
    free(rp);
}

static ss_rc rstep(eng_replay *rp, int q, ss_err *err)
{
    int r = sqlite3_step(rp->q[q]);
    sqlite3_reset(rp->q[q]);
    return r == SQLITE_DONE || r == SQLITE_ROW ? SS_OK : eng_tempdb_fail(rp->db, "replay", err);
}

/* The entry's body into rp->body: chunk refs with their pack keys, inline bytes, or target. */
static ss_rc entry_body(eng_replay *rp, ss_txn_reader *r, const ss_txn_entry *e, ss_err *err)
{
    const void *p = e->kind == SS_TXN_SYMLINK ? (const void *)e->target
                    : e->kind == SS_TXN_FILE  ? (const void *)e->inline_data
                                              : NULL;
    size_t n = e->kind == SS_TXN_DIR ? 0 : (size_t)e->size;
    if (e->kind == SS_TXN_FILE && e->storage == SS_TXN_CHUNKS)
        return eng_txn_body(r, &rp->body, err);
    rp->body.len = 0;
    if (!n) return SS_OK;
    if (SS_ARRAY_GROW(rp->body.p, n, rp->body.cap))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    memcpy(rp->body.p, p, n);
    rp->body.len = n;
    return SS_OK;
}

const ss_state_body *eng_replay_body(const eng_replay *rp)
{
    return &rp->body;
}

ss_rc eng_replay_op(eng_replay *rp, const ss_txn_header *h, ss_txn_reader *r, const ss_txn_entry *e,
                    ss_err *err)
{
    sqlite3_stmt *q = rp->q[R_PUT];
    int drop = e->type == SS_TXN_DELETE ? R_DROP_TREE : e->kind != SS_TXN_DIR ? R_DROP_BELOW : -1;
    ss_rc rc = SS_OK;
    (void)h; /* the same as r's: the pack keys come through r */
    rp->body.len = 0;
    if (drop >= 0) {
        sqlite3_bind_text(rp->q[drop], 1, e->path, (int)e->path_len, SQLITE_STATIC);
        rc = rstep(rp, drop, err);
        if (rc) return rc;
    }
    if (e->type == SS_TXN_DELETE) return SS_OK;
    rc = entry_body(rp, r, e, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, e->path, (int)e->path_len, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, (int)e->kind);
    sqlite3_bind_int64(q, 3, e->mode);
    sqlite3_bind_int64(q, 4, e->mtime_s);
    sqlite3_bind_int64(q, 5, e->mtime_ns);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)(e->kind == SS_TXN_DIR ? 0 : e->size));
    if (e->kind == SS_TXN_FILE)
        sqlite3_bind_blob(q, 7, e->content_id, SS_TXN_CONTENT_ID_BYTES, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 7);
    sqlite3_bind_blob(q, 8, rp->body.p ? (const void *)rp->body.p : "", (int)rp->body.len,
                      SQLITE_STATIC);
    return rstep(rp, R_PUT, err);
}

/* The replayed row of e->path equals e (body: rp->body). */
static int same_row(eng_replay *rp, const ss_txn_entry *e)
{
    sqlite3_stmt *q = rp->q[R_GET];
    int same;
    sqlite3_bind_text(q, 1, e->path, (int)e->path_len, SQLITE_STATIC);
    same = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == (int)e->kind &&
           (uint32_t)sqlite3_column_int64(q, 1) == e->mode &&
           sqlite3_column_int64(q, 2) == e->mtime_s &&
           (uint32_t)sqlite3_column_int64(q, 3) == e->mtime_ns &&
           (uint64_t)sqlite3_column_int64(q, 4) == (e->kind == SS_TXN_DIR ? 0 : e->size) &&
           (e->kind != SS_TXN_FILE ||
            (sqlite3_column_bytes(q, 5) == SS_TXN_CONTENT_ID_BYTES &&
             !memcmp(sqlite3_column_blob(q, 5), e->content_id, SS_TXN_CONTENT_ID_BYTES))) &&
           (size_t)sqlite3_column_bytes(q, 6) == rp->body.len &&
           (!rp->body.len || !memcmp(sqlite3_column_blob(q, 6), rp->body.p, rp->body.len));
    sqlite3_reset(q);
    return same;
}

/* Every path the checkpoint holds matches: then it must hold as many as the replay. */
static ss_rc count_differs(eng_replay *rp, uint64_t n, char **ret_diff, ss_err *err)
{
    sqlite3_stmt *q = rp->q[R_COUNT_ROWS];
    int differs = sqlite3_step(q) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(q, 0) != n;
    sqlite3_reset(q);
    if (!differs) return SS_OK;
    *ret_diff = strdup("(a path it lacks)");
    return *ret_diff ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
}

ss_rc eng_replay_compare(ss_folder *f, eng_replay *rp, int fd, uint64_t seq, char **ret_diff,
                         ss_err *err)
{
    eng_txn_iter it = {0};
    const ss_txn_entry *e;
    uint64_t n = 0;
    ss_rc rc;
    *ret_diff = NULL;
    rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) goto done;
    for (;;) {
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
        n++;
        rc = entry_body(rp, it.r, e, err);
        if (rc) goto done;
        if (same_row(rp, e)) continue;
        *ret_diff = strdup(e->path);
        if (!*ret_diff) rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = count_differs(rp, n, ret_diff, err);
done:
    eng_txn_close(&it);
    return rc;
}
