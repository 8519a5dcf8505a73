/*
 * gc: retention, the live set and the deletes (see s3sync.h and docs/FORMAT.md
 * "gc", which holds the safety argument).
 *
 * Design notes.
 *   G1. Everything is decided from listings made before anything else: H is
 *       the newest log object listed first, and only data/<S>-* packs with
 *       S <= H that the data/ listing (made after it) holds can go. A pack of
 *       a push gc cannot see is named after a later sequence: never touched.
 *   G2. The live set is the pack keys of checkpoint R and of every op of
 *       log/R+1..H, walked and verified as verify walks them (eng_walk_log);
 *       any failure stops gc before its first delete.
 *   G3. Deletes go in the order checkpoints/ < R (oldest first), log/ <= R
 *       but the newest log object (a checkpoint at the head is vouched for
 *       by its own log object: checkpoint_read.c, C6), then packs: a gc
 *       killed anywhere leaves [R, H] whole, the oldest
 *       checkpoint left with the log after it (so verify and every walk go
 *       through), and the next run converges. An object already gone
 *       (another gc) is no failure.
 *   G4. Nothing outside log/, checkpoints/ and data/ is ever listed for
 *       deletion, nor a key there that is not in the format's shape.
 *   G5. Crash points (fault.h), for the test that kills gc at each and
 *       checks G3: gc.before-deletes (all listed and walked, nothing
 *       deleted), gc.log, gc.checkpoint and gc.pack (as each key of that
 *       kind joins its batch: "gc.pack:2" is the middle of the pack
 *       deletes on file://, where a batch is one key, and before the
 *       batch holding the second pack is sent on s3://), gc.after-checkpoints
 *       and gc.after-logs (between the kinds).
 *   G6. Deletes go in batches (ss_store_delete_batch: 1000 keys to an S3
 *       DeleteObjects, one key on file://), never across the steps of G3:
 *       a step's last batch is answered before the next step's first is
 *       sent. Inside a request the store deletes in any order, and a kill
 *       or a failed key can leave any part of it: G3 holds for any subset
 *       of one step's keys (a checkpoint < R left still has its whole log
 *       after it; a log/ <= R left is below R, where nothing starts a walk,
 *       and a dead pack is no state's), but for log/1, from which a walk
 *       of the oldest state starts while it is there: it goes alone, first.
 *       A gc of N objects makes at most N/1000 + 4 DELETE requests.
 */
#include "s3sync.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"

static const char schema[] =
    "CREATE TABLE data(key TEXT PRIMARY KEY, seq INTEGER, size INTEGER) WITHOUT ROWID;"
    "CREATE TABLE live(key TEXT PRIMARY KEY) WITHOUT ROWID;";

typedef struct gcw {
    ss_folder *f;
    sqlite3 *db;
    sqlite3_stmt *add_data, *add_live;
    uint64_t r;                   /* the checkpoint the walk must start from */
    uint64_t others, other_bytes; /* data/ keys not in the format's shape: kept (G4) */
} gcw;

static ss_rc step(gcw *g, sqlite3_stmt *q, ss_err *err)
{
    int r = sqlite3_step(q);
    sqlite3_reset(q);
    return r == SQLITE_DONE ? SS_OK : eng_tempdb_fail(g->db, "add", err);
}

/* data/<20 digits>-<16 lowercase hex>: its sequence; 0 for any other key. */
static uint64_t pack_seq(const char *key)
{
    const char *d = key + strlen(SS_KEY_DATA_PREFIX);
    if (strlen(key) != SS_TXN_PACK_KEY_LEN || d[SS_SEQ_DIGITS] != '-') return 0;
    for (int i = 0; i < SS_SEQ_DIGITS; i++)
        if (d[i] < '0' || d[i] > '9') return 0;
    for (const char *h = d + SS_SEQ_DIGITS + 1; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f'))) return 0;
    return strtoull(d, NULL, 10);
}

static int collect_data(void *ctx, const char *key, const ss_store_stat *st)
{
    gcw *g = ctx;
    uint64_t seq = pack_seq(key), size = st ? st->size : 0;
    if (!seq) {
        g->others++;
        g->other_bytes += size;
        return 0;
    }
    sqlite3_bind_text(g->add_data, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(g->add_data, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(g->add_data, 3, (sqlite3_int64)size);
    return step(g, g->add_data, NULL) ? 1 : 0;
}

/* --- the live set (G2) ------------------------------------------------------------------- */

static int only_r(void *ctx, uint64_t seq, uint64_t time_ns)
{
    (void)time_ns;
    return seq == ((gcw *)ctx)->r;
}

/*
 * A transaction's pack table holds every pack its ops reference (chunk refs
 * index into it); a pack listed but not referenced is kept too: safe.
 */
static ss_rc live_txn(void *ctx, const eng_walk_txn *t, int *ret_stop, ss_err *err)
{
    gcw *g = ctx;
    *ret_stop = 0; /* the ops are not needed: the walk still decodes and checks them all */
    for (uint32_t i = 0; i < t->h->n_packs; i++) {
        sqlite3_bind_text(g->add_live, 1, t->h->pack_keys[i], -1, SQLITE_STATIC);
        ss_rc rc = step(g, g->add_live, err);
        if (rc) return rc;
    }
    return SS_OK;
}

/* --- retention ------------------------------------------------------------------------- */

/* R by --keep-last N: the newest checkpoint at or before H - N + 1. */
static uint64_t keep_last(const eng_log_list *cps, uint64_t head, uint64_t n)
{
    uint64_t limit = head + 1 >= n ? head + 1 - n : 0;
    for (size_t j = cps->n; j-- > 0;)
        if (cps->seqs[j] <= limit) return cps->seqs[j];
    return 0;
}

/* R by --keep-days N: the newest checkpoint written before now - N days. */
static ss_rc keep_days(ss_folder *f, const eng_log_list *cps, uint64_t days, uint64_t *ret_r,
                       ss_err *err)
{
    int64_t cutoff = (int64_t)time(NULL) - (int64_t)(days * 86400u);
    *ret_r = 0;
    for (size_t j = cps->n; j-- > 0;) {
        eng_cp_head head;
        int fd = -1;
        ss_rc rc = eng_fetch_checkpoint(f, cps->seqs[j], &fd, &head, NULL, err);
        if (fd >= 0) close(fd);
        if (rc) return rc;
        if ((int64_t)(head.time_ns / 1000000000u) <= cutoff) {
            *ret_r = cps->seqs[j];
            return SS_OK;
        }
    }
    return SS_OK;
}

/* --- deletes (G3) ---------------------------------------------------------------------- */

/* The deletes of one step of G3, sent ss_store_delete_batch_max keys to a request (G6). */
typedef struct batch {
    ss_folder *f;
    const ss_gc_opts *o;
    ss_gc_fn fn;
    void *ctx;
    ss_gc_result *res;
    char **keys; /* owned, each */
    uint64_t *sizes;
    size_t n, max;
} batch;

static void batch_clear(batch *b)
{
    while (b->n)
        free(b->keys[--b->n]);
}

/* Delete what b holds (nothing under --dry-run) and count it as deleted. */
static ss_rc flush(batch *b, ss_err *err)
{
    ss_rc rc = SS_OK;
    if (!b->n) return SS_OK;
    if (!b->o->dry_run)
        rc = ss_store_delete_batch(b->f->store, (const char *const *)b->keys, b->n, err);
    for (size_t i = 0; !rc && i < b->n; i++) {
        b->res->objects++;
        b->res->bytes += b->sizes[i];
    }
    batch_clear(b);
    return rc;
}

/* key into b, after the fault point of its kind (G5); a full batch is sent. */
static ss_rc drop(batch *b, const char *point, const char *key, uint64_t size, ss_err *err)
{
    ss_fault_point(point);
    if (b->fn) b->fn(b->ctx, key, size);
    b->keys[b->n] = strdup(key);
    if (!b->keys[b->n]) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    b->sizes[b->n++] = size;
    return b->n == b->max ? flush(b, err) : SS_OK;
}

static ss_rc drop_packs(gcw *g, batch *b, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    ss_rc rc = SS_OK;
    int r;
    if (sqlite3_prepare_v2(g->db,
                           "SELECT key, size FROM data WHERE seq <= ?1 AND key NOT IN "
                           "(SELECT key FROM live) ORDER BY key",
                           -1, &q, NULL))
        return eng_tempdb_fail(g->db, "read", err);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)b->res->head);
    for (;;) {
        r = sqlite3_step(q);
        if (r == SQLITE_DONE) break;
        if (r != SQLITE_ROW) {
            rc = eng_tempdb_fail(g->db, "read", err);
            break;
        }
        rc = drop(b, "gc.pack", (const char *)sqlite3_column_text(q, 0),
                  (uint64_t)sqlite3_column_int64(q, 1), err);
        if (rc) break;
    }
    sqlite3_finalize(q);
    if (rc) return rc;
    return flush(b, err);
}

static ss_rc delete_steps(gcw *g, batch *b, const eng_log_list *l, const eng_log_list *cps,
                          ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    ss_rc rc;
    ss_fault_point("gc.before-deletes");
    /*
     * Checkpoints older than R first: killed among them, every checkpoint
     * left still has its log after it. Deleting log/ <= R first would leave
     * a checkpoint C < R whose log/C+1 is gone, and verify (and a restore
     * walking from the oldest state) would meet a gap until gc ran again
     * (test-crash-gc found it). Within the step any part may go first (G6).
     */
    for (size_t j = 0; j < cps->n && cps->seqs[j] < b->res->retained; j++) {
        snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, cps->seqs[j]);
        rc = drop(b, "gc.checkpoint", key, cps->sizes[j], err);
        if (rc) return rc;
    }
    rc = flush(b, err);
    if (rc) return rc;
    ss_fault_point("gc.after-checkpoints");
    for (size_t i = 0; i + 1 < l->n && l->seqs[i] <= b->res->retained; i++) {
        snprintf(key, sizeof key, SS_KEY_LOG_FMT, l->seqs[i]);
        rc = drop(b, "gc.log", key, l->sizes[i], err);
        if (rc) return rc;
        /* log/1 alone, before the rest (G6): while it is there, a walk from the oldest
         * state starts at it, and must find log/2.. whole. */
        if (l->seqs[i] == 1) rc = flush(b, err);
        if (rc) return rc;
    }
    rc = flush(b, err);
    if (rc) return rc;
    ss_fault_point("gc.after-logs");
    return drop_packs(g, b, err);
}

static ss_rc delete_all(gcw *g, const ss_gc_opts *o, const eng_log_list *l, const eng_log_list *cps,
                        ss_gc_fn fn, void *ctx, ss_gc_result *res, ss_err *err)
{
    batch b = {g->f, o, fn, ctx, res, NULL, NULL, 0, ss_store_delete_batch_max(g->f->store)};
    ss_rc rc;
    b.keys = calloc(b.max, sizeof *b.keys);
    b.sizes = calloc(b.max, sizeof *b.sizes);
    if (!b.keys || !b.sizes)
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
    else
        rc = delete_steps(g, &b, l, cps, err);
    if (b.keys) batch_clear(&b);
    free(b.keys);
    free(b.sizes);
    return rc;
}

/* --- the command ------------------------------------------------------------------------ */

static void sum(const eng_log_list *l, uint64_t *objects, uint64_t *bytes)
{
    for (size_t i = 0; i < l->n; i++) {
        (*objects)++;
        *bytes += l->sizes[i];
    }
}

static ss_rc data_totals(gcw *g, ss_gc_result *res, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    ss_rc rc = SS_OK;
    if (sqlite3_prepare_v2(g->db, "SELECT count(*), total(size) FROM data", -1, &q, NULL) ||
        sqlite3_step(q) != SQLITE_ROW)
        rc = eng_tempdb_fail(g->db, "read", err);
    else {
        res->kept_objects += (uint64_t)sqlite3_column_int64(q, 0) + g->others;
        res->kept_bytes += (uint64_t)sqlite3_column_double(q, 1) + g->other_bytes;
    }
    sqlite3_finalize(q);
    return rc;
}

static ss_rc run(gcw *g, const ss_gc_opts *o, ss_gc_fn fn, void *ctx, ss_gc_result *res,
                 ss_stats *stats, ss_err *err)
{
    ss_folder *f = g->f;
    eng_log_list l = {0}, cps = {0}; /* owned */
    eng_walk w = {.from = ENG_FROM_NEWEST, .cp_ok = only_r, .txn = live_txn, .ctx = g};
    ss_rc rc = eng_list_log_after(f, 0, &l, err);     /* G1: first, so H is the earliest head */
    if (rc == SS_ERR_INTEGRITY && !l.bad) rc = SS_OK; /* gc's own work: log/1.. is gone */
    if (rc) goto out;
    rc = eng_list_checkpoints(f, &cps, err);
    if (rc) goto out;
    res->head = l.n ? l.seqs[l.n - 1] : 0;
    if (cps.n && cps.seqs[cps.n - 1] > res->head) res->head = cps.seqs[cps.n - 1];
    rc = ss_store_list(f->store, SS_KEY_DATA_PREFIX, "", collect_data, g, err);
    if (rc) goto out;
    sum(&l, &res->kept_objects, &res->kept_bytes);
    sum(&cps, &res->kept_objects, &res->kept_bytes);
    rc = data_totals(g, res, err);
    if (rc) goto out;
    if (!res->head) goto out; /* an empty repository */
    if (!cps.n) {             /* FORMAT.md gc step 1: a checkpoint first, nothing else this run */
        ss_checkpoint_result cp = {0};
        if (o->dry_run) { /* what the real run would do: write one, delete nothing */
            res->checkpoint = res->head;
            goto out;
        }
        rc = ss_checkpoint(f, &cp, stats, err);
        if (rc) goto out;
        res->checkpoint = cp.seq;
        goto out;
    }
    if (o->by_last) {
        g->r = keep_last(&cps, res->head, o->keep_last);
    } else {
        rc = keep_days(f, &cps, o->keep_days, &g->r, err);
        if (rc) goto out;
    }
    res->retained = g->r;
    if (!res->retained) goto out;
    w.upto = res->head;
    rc = eng_walk_log(f, &w, err);
    if (rc) goto out; /* G2: nothing deleted */
    if (w.start != g->r || w.last != res->head) {
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "gc: the walk from checkpoints/%020" PRIu64 " did not reach %" PRIu64
                     ": nothing deleted",
                     g->r, res->head);
        goto out;
    }
    rc = delete_all(g, o, &l, &cps, fn, ctx, res, err);
    res->kept_objects -= res->objects;
    res->kept_bytes -= res->bytes;
out:
    eng_log_list_free(&l);
    eng_log_list_free(&cps);
    return rc;
}

ss_rc ss_gc(ss_folder *f, const ss_gc_opts *o, ss_gc_fn fn, void *ctx, ss_gc_result *ret_result,
            ss_stats *stats, ss_err *err)
{
    gcw g = {.f = f};
    ss_rc rc;
    memset(ret_result, 0, sizeof *ret_result);
    if (!strncmp(ss_store_url(f->store), "lockd:", 6))
        return ss_fail(err, SS_ERR_INVALID,
                       "gc needs the bucket itself: lockd presigns no DELETE; run it on a device "
                       "whose store is s3:// or file:// (%s)",
                       ss_store_url(f->store));
    if (o->by_last && !o->keep_last)
        return ss_fail(err, SS_ERR_INVALID, "--keep-last must be >= 1");
    rc = eng_tempdb_open(schema, &g.db, err);
    if (rc) return rc;
    if (sqlite3_prepare_v2(g.db, "INSERT OR IGNORE INTO data VALUES (?1, ?2, ?3)", -1, &g.add_data,
                           NULL) ||
        sqlite3_prepare_v2(g.db, "INSERT OR IGNORE INTO live VALUES (?1)", -1, &g.add_live, NULL)) {
        rc = eng_tempdb_fail(g.db, "prepare", err);
        goto done;
    }
    rc = run(&g, o, fn, ctx, ret_result, stats, err);
done:
    sqlite3_finalize(g.add_data);
    sqlite3_finalize(g.add_live);
    sqlite3_close(g.db);
    stats->seq = ret_result->head;
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}
