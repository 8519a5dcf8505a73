/*
 * verify: `s3sync verify` (ss_verify): walk the chain (engine/walk.c), check
 * every later checkpoint against it, and with --data every chunk.
 *
 *   H4. verify reports a bad data object and goes on to the next one; a
 *       store that cannot be reached (SS_ERR_TEMPORARY) ends it as an error,
 *       not as a problem of the repository.
 */
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* --- verify -------------------------------------------------------------------------- */

static const char verify_schema[] =
    "CREATE TABLE chunk(pack TEXT, off INTEGER, sealed INTEGER, plain INTEGER, id BLOB,"
    "  PRIMARY KEY(pack, off)) WITHOUT ROWID;";

typedef struct verifyw {
    ss_folder *f;
    sqlite3 *db;
    sqlite3_stmt *add;
    eng_replay *rp; /* the state the walk replays, for each later checkpoint */
    ss_problem_fn fn;
    void *ctx;
    ss_verify_report *rep;
    /* the pack being checked */
    uint64_t bad;
    ss_rc hard;     /* the store could not be asked: not a problem of the repository */
    ss_err hard_cp; /* why, when a later checkpoint could not be read */
    ss_err first;   /* the first bad chunk's reason */
    uint64_t first_off;
} verifyw;

/* One problem, its message naming the key. */
static void problem(verifyw *v, const char *key, const char *msg)
{
    char named[1024];
    v->rep->problems++;
    if (!strstr(msg, key))
        snprintf(named, sizeof named, "%s: %s", key, msg);
    else
        snprintf(named, sizeof named, "%s", msg);
    if (v->fn) v->fn(v->ctx, key, named);
}

/* A head a peer announced, signed, that the store does not show (PEERS.md "Heads"). */
static void withheld(verifyw *v, uint64_t shown)
{
    char key[SS_KEY_NAME_MAX], msg[600];
    uint64_t seq = eng_peer_head_withheld(v->f, shown, msg, sizeof msg);
    if (!seq) return;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    problem(v, key, msg);
}

/* Replay every op (later checkpoints are compared with it); with --data, note its chunks. */
static ss_rc verify_op(void *ctx, const eng_walk_txn *t, ss_txn_reader *r, const ss_txn_entry *e,
                       ss_err *err)
{
    verifyw *v = ctx;
    const ss_state_body *b;
    const char *pack;
    size_t pos = 0, pack_len;
    ss_chunk_ref ref;
    ss_rc rc = eng_replay_op(v->rp, t->h, r, e, err);
    if (rc || !v->db || e->type != SS_TXN_UPSERT || e->kind != SS_TXN_FILE ||
        e->storage != SS_TXN_CHUNKS)
        return rc;
    b = eng_replay_body(v->rp);
    while (ss_state_body_next(b->p, b->len, &pos, &pack, &pack_len, &ref)) {
        sqlite3_bind_text(v->add, 1, pack, (int)pack_len, SQLITE_STATIC);
        sqlite3_bind_int64(v->add, 2, (sqlite3_int64)ref.offset);
        sqlite3_bind_int64(v->add, 3, ref.sealed_len);
        sqlite3_bind_int64(v->add, 4, ref.plain_len);
        sqlite3_bind_blob(v->add, 5, ref.id, sizeof ref.id, SQLITE_STATIC);
        rc = eng_tempdb_step(v->db, v->add, "add a chunk", err);
        if (rc) return rc;
    }
    return SS_OK;
}

static void on_bad_chunk(void *ctx, const char *pack, const ss_chunk_ref *ref, ss_rc rc,
                         const char *msg)
{
    verifyw *v = ctx;
    (void)pack;
    if (rc == SS_ERR_TEMPORARY || rc == SS_ERR_NOMEM || rc == SS_ERR_AUTH) {
        if (!v->hard) v->hard = rc;
        return;
    }
    if (!v->bad++) {
        snprintf(v->first.msg, sizeof v->first.msg, "%s", msg);
        v->first_off = ref->offset;
    }
}

/* Check one pack's chunks (submitted together, in parallel), then report it once. */
static ss_rc verify_pack(verifyw *v, ss_xfer *xfer, sqlite3_stmt *q, int *ret_row, ss_err *err)
{
    char pack[SS_KEY_NAME_MAX];
    eng_fetch x = {.f = v->f, .xfer = xfer, .out_fd = -1, .bad = on_bad_chunk, .ctx = v};
    uint64_t n = 0;
    ss_rc rc = SS_OK;
    snprintf(pack, sizeof pack, "%s", (const char *)sqlite3_column_text(q, 0));
    v->bad = 0;
    do {
        ss_chunk_ref ref = {.offset = (uint64_t)sqlite3_column_int64(q, 1),
                            .sealed_len = (uint32_t)sqlite3_column_int64(q, 2),
                            .plain_len = (uint32_t)sqlite3_column_int64(q, 3)};
        if (sqlite3_column_bytes(q, 4) == sizeof ref.id)
            memcpy(ref.id, sqlite3_column_blob(q, 4), sizeof ref.id);
        rc = eng_fetch_chunk(&x, pack, &ref, 0, err);
        if (rc) break;
        n++;
        *ret_row = sqlite3_step(q);
    } while (*ret_row == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), pack));
    eng_fetch_wait(&x, NULL); /* failures went to on_bad_chunk */
    v->rep->checked_chunks += n;
    if (rc) return rc;
    if (v->hard) return ss_fail(err, v->hard, "%s: %s", pack, ss_strerror(v->hard));
    if (v->bad) {
        char msg[sizeof v->first.msg + 160];
        snprintf(msg, sizeof msg,
                 "%s: %" PRIu64 " of %" PRIu64 " chunks fail verification (at offset %" PRIu64
                 ": %s)",
                 pack, v->bad, n, v->first_off, v->first.msg);
        problem(v, pack, msg);
    }
    return SS_OK;
}

static ss_rc verify_data(verifyw *v, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    ss_xfer *xfer = NULL;   /* owned */
    ss_rc rc;
    int r;
    if (sqlite3_prepare_v2(v->db,
                           "SELECT pack, off, sealed, plain, id FROM chunk ORDER BY pack, off", -1,
                           &q, NULL))
        return eng_tempdb_fail(v->db, "read", err);
    rc = ss_xfer_new(v->f->store, &xfer, err);
    if (rc) goto done;
    r = sqlite3_step(q);
    while (r == SQLITE_ROW) {
        rc = verify_pack(v, xfer, q, &r, err);
        if (rc) goto done;
    }
    if (r != SQLITE_DONE) rc = eng_tempdb_fail(v->db, "read", err);
done:
    ss_xfer_free(xfer);
    sqlite3_finalize(q);
    return rc;
}

/*
 * A later checkpoint must verify, record the walked chain, and hold the
 * replayed state and device table.
 */
static void verify_cp(void *ctx, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES],
                      const uint8_t chain[SS_CHAIN_BYTES], const ss_devices *devices)
{
    verifyw *v = ctx;
    char key[SS_KEY_NAME_MAX], msg[SS_KEY_NAME_MAX + 4200], why[400];
    char *diff = NULL;        /* owned */
    ss_devices *table = NULL; /* owned */
    eng_cp_head head;
    ss_err e = {{0}};
    int fd = -1; /* owned */
    ss_rc rc = eng_fetch_checkpoint(v->f, seq, &fd, &head, &table, &e);
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    if (rc) goto done;
    if (sodium_memcmp(head.chain, chain, SS_CHAIN_BYTES) ||
        sodium_memcmp(head.prev, prev, SS_CHAIN_BYTES)) {
        problem(v, key, "records another chain value than the log holds at its sequence");
        goto done;
    }
    if (ss_devices_differ(devices, table, 1, why, sizeof why)) {
        snprintf(msg, sizeof msg, "holds another device table than the log's at its sequence (%s)",
                 why);
        problem(v, key, msg);
        goto done;
    }
    rc = eng_replay_compare(v->f, v->rp, fd, seq, &diff, &e);
    if (rc) goto done;
    if (diff) {
        snprintf(msg, sizeof msg,
                 "does not hold the state the log replays to at %" PRIu64
                 " (first difference: %.4096s)",
                 seq, diff);
        problem(v, key, msg);
        goto done;
    }
    v->rep->checked_checkpoints++;
done:
    if (rc == SS_ERR_INTEGRITY || rc == SS_ERR_NOT_FOUND)
        problem(v, key, e.msg);
    else if (rc && !v->hard) {
        v->hard = rc;
        v->hard_cp = e; /* the store's message names the key */
    }
    free(diff);
    ss_devices_free(table);
    if (fd >= 0) close(fd);
}

ss_rc ss_verify(ss_folder *f, int data, ss_problem_fn fn, void *ctx, ss_verify_report *ret_report,
                ss_stats *stats, ss_err *err)
{
    verifyw v = {.f = f, .fn = fn, .ctx = ctx, .rep = ret_report};
    eng_walk w = {.op = verify_op, .cp_check = verify_cp, .ctx = &v};
    ss_err werr = {{0}};
    ss_rc rc;
    memset(ret_report, 0, sizeof *ret_report);
    rc = eng_replay_new(&v.rp, err);
    if (rc) return rc;
    if (data) {
        rc = eng_tempdb_open(verify_schema, &v.db, err);
        if (rc) goto out;
        if (sqlite3_prepare_v2(v.db, "INSERT OR IGNORE INTO chunk VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                               &v.add, NULL)) {
            rc = eng_tempdb_fail(v.db, "prepare", err);
            goto out;
        }
    }
    rc = eng_walk_log(f, &w, &werr);
    stats->seq = w.head;
    ret_report->checked_logs = w.last > w.start ? w.last - w.start : 0;
    if (w.start && w.last >= w.start) ret_report->checked_checkpoints++;
    if (!rc && v.hard)
        rc = ss_fail(err, v.hard, "%s", v.hard_cp.msg[0] ? v.hard_cp.msg : ss_strerror(v.hard));
    if (rc && w.broken) { /* H2: report it, then check the data of what did verify */
        uint64_t after = w.head > w.last + 1 ? w.head - w.last - 1 : 0;
        char msg[sizeof werr.msg + 128];
        ret_report->unchecked_logs = after;
        if (after)
            snprintf(msg, sizeof msg,
                     "%s; the %" PRIu64 " log object%s after it cannot be verified", werr.msg,
                     after, after == 1 ? "" : "s");
        else
            snprintf(msg, sizeof msg, "%s", werr.msg);
        problem(&v, w.broken_key, msg);
        rc = SS_OK;
    } else if (rc) {
        if (err) *err = werr;
        goto out;
    }
    withheld(&v, w.head);
    if (data) rc = verify_data(&v, err);
out:
    sqlite3_finalize(v.add);
    sqlite3_close(v.db);
    eng_replay_free(v.rp);
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}
