/*
 * walk: walking the whole log in order (eng_walk_log), for log, verify,
 * restore and gc: every object verified exactly as pull verifies it before
 * its ops are handed out.
 *
 * Design notes.
 *   H1. Every log object is verified exactly as pull verifies it, with pull's
 *       own helpers (engine.h): eng_fetch_txn (frame, chain from log/1 on),
 *       eng_check_txn (every op and chunk ref decoded), and only then is the
 *       transaction handed out, decoded a second time from the stage.
 *   H2. A broken link ends the walk: nothing after a log object that failed
 *       (or a missing one) can be verified, since its successor's context
 *       binds chain(N). The walk says where (eng_walk.broken_key).
 *   H3. Memory barely grows with the history: what the commands collect goes
 *       to a temporary SQLite database on disk (tempdb.c); only the listing
 *       (16 bytes per log object, as pull's) stays in memory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* --- the walk ------------------------------------------------------------------------ */

/* Hand out the ops of a verified, staged transaction. */
static ss_rc hand_out(ss_folder *f, eng_walk *w, int fd, eng_walk_txn *t, int *ret_stop,
                      ss_err *err)
{
    eng_txn_iter it = {0};
    const ss_txn_entry *e;
    ss_rc rc;
    *ret_stop = 0;
    rc = eng_txn_open(&it, f, fd, t->seq, err);
    if (rc) goto done;
    t->h = ss_txn_reader_header(it.r);
    if (w->txn) {
        rc = w->txn(w->ctx, t, ret_stop, err);
        if (rc || *ret_stop) goto done;
    }
    for (;;) {
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
        if (!w->op) continue;
        rc = w->op(w->ctx, t, it.r, e, err);
        if (rc) goto done;
    }
    if (w->txn_done) rc = w->txn_done(w->ctx, t, err);
done:
    t->h = NULL;
    eng_txn_close(&it);
    return rc;
}

/* The object failed verification, or is gone: nothing after it can be verified (H2). */
static void broken_at(eng_walk *w, const char *fmt, uint64_t seq)
{
    w->broken = 1;
    snprintf(w->broken_key, sizeof w->broken_key, fmt, seq);
}

/* Verify one listed object (prefetched or streamed) and hand out its ops. */
static ss_rc walk_one(ss_folder *f, eng_walk *w, eng_walk_txn *t, const eng_fetched *p,
                      uint8_t chain[SS_CHAIN_BYTES], int *ret_stop, ss_err *err)
{
    uint8_t next[SS_CHAIN_BYTES];
    int fd = -1;             /* owned: the staged plaintext */
    ss_devices *devs = NULL; /* owned: the device table after it */
    ss_rc rc = p->rc;
    *ret_stop = 0;
    if (rc) {
        if (err) *err = p->err;
        goto verified;
    }
    rc = eng_fetch_txn(f, t->seq, chain, p->buf, p->len, &fd, next, NULL, err);
    if (rc) goto verified;
    rc = eng_check_txn(f, fd, t->seq, chain, w->devices, &devs, err);
    if (rc) goto verified;
    ss_devices_free(w->devices);
    w->devices = devs;
verified:
    if (rc == SS_ERR_INTEGRITY || rc == SS_ERR_NOT_FOUND) broken_at(w, SS_KEY_LOG_FMT, t->seq);
    if (rc) goto done;
    rc = hand_out(f, w, fd, t, ret_stop, err);
    if (rc || *ret_stop) goto done;
    w->last = t->seq;
    memcpy(chain, next, SS_CHAIN_BYTES);
done:
    if (fd >= 0) close(fd);
    return rc;
}

/* Hand out checkpoints/<seq> (verified whole first) as the walk's first "transaction". */
static ss_rc walk_cp(ss_folder *f, eng_walk *w, uint64_t seq, uint64_t size,
                     uint8_t chain[SS_CHAIN_BYTES], int *ret_stop, ss_err *err)
{
    eng_walk_txn t = {.seq = seq, .object_size = size, .checkpoint = 1};
    eng_cp_head head;
    int fd = -1;             /* owned */
    ss_devices *devs = NULL; /* owned: its device table */
    ss_rc rc;
    *ret_stop = 0;
    rc = eng_fetch_checkpoint(f, seq, &fd, &head, &devs, err);
    if (rc) goto done;
    memcpy(chain, head.chain, SS_CHAIN_BYTES);
    if (w->cp_ok && !w->cp_ok(w->ctx, seq, head.time_ns)) {
        rc = SS_ERR_NOT_FOUND; /* not this one */
        goto done;
    }
    ss_devices_free(w->devices);
    w->devices = devs;
    devs = NULL;
    rc = hand_out(f, w, fd, &t, ret_stop, err);
    if (rc) goto done;
    w->start = w->last = seq;
    w->start_head = head;
done:
    ss_devices_free(devs);
    if (fd >= 0) close(fd);
    return rc;
}

/*
 * Where the walk starts (H1 with checkpoints): the newest checkpoint at or
 * before upto that cp_ok accepts (ENG_FROM_NEWEST), else log/1; or log/1, and
 * the oldest checkpoint when gc took log/1 (ENG_FROM_FIRST). A checkpoint
 * that fails verification makes way for an older one (ENG_FROM_NEWEST).
 */
static ss_rc walk_start(ss_folder *f, eng_walk *w, const eng_log_list *cps, eng_log_list *l,
                        uint8_t chain[SS_CHAIN_BYTES], int *ret_stop, ss_err *err)
{
    ss_err bad = {{0}}; /* a checkpoint that failed verification: said if nothing else serves */
    ss_rc rc = SS_ERR_NOT_FOUND, bad_rc = SS_OK;
    *ret_stop = 0;
    for (size_t j = cps->n; w->from == ENG_FROM_NEWEST && j-- > 0 && rc;) {
        if (w->upto && cps->seqs[j] > w->upto) continue;
        rc = walk_cp(f, w, cps->seqs[j], cps->sizes[j], chain, ret_stop, &bad);
        if (rc == SS_ERR_INTEGRITY)
            bad_rc = rc;
        else if (rc && rc != SS_ERR_NOT_FOUND)
            return ss_fail(err, rc, "%s", bad.msg);
    }
    if (rc == SS_OK) return SS_OK; /* a checkpoint to start from */
    memset(chain, 0, SS_CHAIN_BYTES);
    rc = eng_list_log_after(f, 0, l, NULL);
    if (rc && rc != SS_ERR_INTEGRITY) return ss_fail(err, rc, "list the log: %s", ss_strerror(rc));
    if ((l->n && l->seqs[0] == 1) || !cps->n) return SS_OK;
    /* gc took log/1: a state before the oldest checkpoint is gone */
    if (bad_rc) return ss_fail(err, bad_rc, "%s", bad.msg);
    if (w->upto && w->upto < cps->seqs[0])
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "sequence %" PRIu64 " is no longer kept: gc removed what came before "
                       "checkpoints/%020" PRIu64,
                       w->upto, cps->seqs[0]);
    if (w->from == ENG_FROM_NEWEST)
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "that state is no longer kept: gc removed what came before "
                       "checkpoints/%020" PRIu64,
                       cps->seqs[0]);
    rc = walk_cp(f, w, cps->seqs[0], cps->sizes[0], chain, ret_stop, err);
    if (rc) {
        broken_at(w, SS_KEY_CHECKPOINT_FMT, cps->seqs[0]);
        return rc;
    }
    eng_log_list_free(l);
    return SS_OK;
}

/* A checkpoint after the start, reached by the walk: verify can compare what it records. */
static void reached(eng_walk *w, const eng_log_list *cps, size_t *j, uint64_t seq,
                    const uint8_t prev[SS_CHAIN_BYTES], const uint8_t chain[SS_CHAIN_BYTES])
{
    while (*j < cps->n && cps->seqs[*j] <= seq) {
        if (cps->seqs[*j] == seq && seq > w->start && w->cp_check)
            w->cp_check(w->ctx, seq, prev, chain, w->devices);
        (*j)++;
    }
}

/* Verify and hand out l[0..end), prefetched in batches, noting the checkpoints reached. */
static ss_rc walk_run(ss_folder *f, eng_walk *w, const eng_log_list *l, const eng_log_list *cps,
                      size_t end, uint8_t chain[SS_CHAIN_BYTES], int *ret_stop, ss_err *err)
{
    ss_xfer *x = NULL;     /* owned */
    eng_fetched *b = NULL; /* owned, with each buf */
    size_t n = 0, j = 0;
    ss_rc rc;
    *ret_stop = 0;
    rc = ss_xfer_new(f->store, &x, err);
    if (rc) goto done;
    b = calloc(ENG_PREFETCH_MAX, sizeof *b);
    if (!b) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < end && !*ret_stop;) {
        rc = eng_prefetch(x, l, i, end, b, &n, err);
        if (rc) goto done;
        for (size_t k = 0; k < n && !*ret_stop; k++, i++) {
            eng_walk_txn t = {.seq = l->seqs[i], .object_size = l->sizes[i]};
            uint8_t prev[SS_CHAIN_BYTES];
            memcpy(prev, chain, SS_CHAIN_BYTES);
            rc = walk_one(f, w, &t, &b[k], chain, ret_stop, err);
            if (rc) goto done;
            if (!*ret_stop) reached(w, cps, &j, t.seq, prev, chain);
        }
        for (size_t k = 0; k < n; k++)
            free(b[k].buf);
        n = 0;
    }
done:
    for (size_t k = 0; k < n; k++)
        free(b[k].buf);
    free(b);
    ss_xfer_free(x);
    return rc;
}

ss_rc eng_walk_log(ss_folder *f, eng_walk *w, ss_err *err)
{
    eng_log_list l = {0}, cps = {0}; /* owned */
    uint8_t chain[SS_CHAIN_BYTES] = {0};
    size_t run = 0, end;
    ss_rc rc;
    int stop = 0;
    w->head = w->last = w->start = 0;
    w->broken = 0;
    w->broken_key[0] = '\0';
    ss_devices_free(w->devices);
    w->devices = NULL;
    rc = ss_devices_new(&w->devices, err);
    if (rc) goto done;
    rc = eng_list_checkpoints(f, &cps, err);
    if (rc) goto done;
    rc = walk_start(f, w, &cps, &l, chain, &stop, err);
    if (rc || stop) goto done;
    if (w->start) {
        rc = eng_list_log_after(f, w->start, &l, NULL);
        if (rc && rc != SS_ERR_INTEGRITY) {
            rc = ss_fail(err, rc, "list the log: %s", ss_strerror(rc));
            goto done;
        }
    }
    rc = SS_OK;
    if (w->start && !l.n && !l.bad) { /* nothing after the checkpoint vouches for it: C6 */
        rc = eng_checkpoint_endorsed(f, w->start, &w->start_head, w->devices, err);
        if (rc == SS_ERR_INTEGRITY) broken_at(w, SS_KEY_CHECKPOINT_FMT, w->start);
        if (rc) goto done;
    }
    while (run < l.n && l.seqs[run] == w->start + run + 1)
        run++; /* the listing's gap-free start: all that can be verified */
    w->head = l.n ? l.seqs[l.n - 1] : w->start;
    if (run == l.n && !l.bad && w->upto > w->head) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND,
                     "there is no sequence %" PRIu64 ": the newest is %" PRIu64, w->upto, w->head);
        goto done;
    }
    end = w->upto && w->upto - w->start < run ? (size_t)(w->upto - w->start) : run;
    if (end) {
        rc = walk_run(f, w, &l, &cps, end, chain, &stop, err);
        if (rc || stop) goto done;
    }
    if ((run < l.n || l.bad) && (!w->upto || w->upto > w->start + run)) {
        w->broken = 1;
        if (l.bad == 1) {
            snprintf(w->broken_key, sizeof w->broken_key, "%s", l.bad_key);
            rc = ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s in the log", l.bad_key);
        } else {
            snprintf(w->broken_key, sizeof w->broken_key, SS_KEY_LOG_FMT, w->start + run + 1);
            rc = ss_fail(err, SS_ERR_INTEGRITY, "%s is missing: the sequence has a gap",
                         w->broken_key);
        }
    }
done:
    eng_log_list_free(&l);
    eng_log_list_free(&cps);
    ss_devices_free(w->devices);
    w->devices = NULL;
    return rc;
}
