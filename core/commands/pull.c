/*
 * pull: apply every transaction after the watermark, in order (ss_pull).
 * Which log objects, and from where: the listing after the watermark
 * (engine/log_list.c, P2), batches fetched ahead in parallel
 * (engine/prefetch.c), and a checkpoint as the base of a joining device or
 * of one whose history gc removed (docs/FORMAT.md "Reading"). Each object
 * is checked (engine/txn_read.c) then applied (engine/apply.c).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/*
 * A log object that failed verification: the device the store says wrote
 * it (a lockd: store knows whom it gave the PUT URLs), appended to err, so
 * the admin knows whose token to revoke before `s3sync-lockd repo rewind`.
 */
static void name_writer(ss_folder *f, uint64_t seq, ss_err *err)
{
    char key[SS_KEY_NAME_MAX], who[300];
    size_t n;
    if (!err) return;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    if (ss_store_writer(f->store, key, who, sizeof who, NULL)) return;
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " (committed through lockd by device %s)", who);
}

/* Key epochs learned from what was just verified (E2): kept before anything of it applies. */
static ss_rc keep_epochs(ss_folder *f, ss_err *err)
{
    return f->epochs_unsaved ? eng_epochs_save(f, err) : SS_OK;
}

/*
 * Verify and apply one prefetched (or, buf NULL, streamed) log object: P1, in
 * order (P2). listed: what the listing said of it, NULL when nothing useful.
 */
static ss_rc pull_one(ss_folder *f, ss_stats *stats, uint64_t seq, const eng_fetched *p,
                      const ss_store_stat *listed, uint8_t chain[SS_CHAIN_BYTES], ss_err *err)
{
    uint8_t next[SS_CHAIN_BYTES];
    ss_state_applied obj;    /* what log/<seq> is, for the fork check */
    int fd = -1;             /* owned: the staged plaintext */
    ss_devices *devs = NULL; /* owned: the device table after it */
    ss_rc rc = p->rc;
    if (rc) {
        if (err) *err = p->err;
        goto done;
    }
    rc = eng_fetch_txn(f, seq, chain, p->buf, p->len, &fd, next, &obj, err);
    if (rc) goto done;
    if (listed && listed->size == obj.size) eng_etag_tag(listed->etag, obj.tag);
    rc = eng_check_txn(f, fd, seq, chain, f->devices, &devs, err);
    if (rc) goto done;
    rc = keep_epochs(f, err);
    if (rc) goto done;
    rc = eng_check_beneath(f, fd, seq, err);
    if (rc) goto done;
    f->peer_table = devs; /* its data may come from a device it enrolls */
    rc = eng_apply_txn(f, stats, fd, seq, chain, next, 0, devs, &obj, err);
    f->peer_table = NULL;
    if (rc) goto done;
    memcpy(chain, next, SS_CHAIN_BYTES);
done:
    if (rc == SS_ERR_INTEGRITY) name_writer(f, seq, err);
    ss_devices_free(devs);
    if (fd >= 0) close(fd);
    return rc;
}

static void free_batch(eng_fetched *b, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(b[k].buf);
}

/*
 * pull_one, and once more from the store when what failed verification came
 * from peers since mark (they are left out: peers.c); *refetch then tells
 * the caller that the rest of its batch must be read again too.
 */
static ss_rc pull_checked(ss_folder *f, ss_stats *stats, uint64_t seq, const eng_fetched *p,
                          const ss_store_stat *listed, uint8_t chain[SS_CHAIN_BYTES], uint64_t mark,
                          int *refetch, ss_err *err)
{
    static const eng_fetched again = {0}; /* streamed: from the other peers or the store */
    char key[SS_KEY_NAME_MAX];
    ss_rc rc = pull_one(f, stats, seq, *refetch ? &again : p, listed, chain, err);
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    if (rc != SS_ERR_INTEGRITY || !eng_peers_blame(f, mark, key)) return rc;
    *refetch = 1;
    return pull_one(f, stats, seq, &again, listed, chain, err);
}

/* Apply the n fetched objects b of l from index i on, in order; mark: before b was fetched. */
static ss_rc pull_batch(ss_folder *f, ss_stats *stats, const eng_log_list *l, size_t i,
                        const eng_fetched *b, size_t n, uint64_t mark, uint64_t *wm,
                        uint8_t chain[SS_CHAIN_BYTES], uint64_t *applied, ss_err *err)
{
    int refetch = 0;
    for (size_t k = 0; k < n; k++, i++) {
        assert(l->seqs[i] == *wm + 1); /* P2 */
        const ss_store_stat *listed = i + 1 == l->n ? &l->last : NULL;
        ss_rc rc = pull_checked(f, stats, l->seqs[i], &b[k], listed, chain, mark, &refetch, err);
        if (rc && !i) rc = eng_fork_explain(f, *wm, rc, err); /* not on top of ours? */
        if (rc) return rc;
        *wm = l->seqs[i];
        *applied += l->sizes[i];
        f->prog.txn_done++;
        eng_progress(f);
    }
    return SS_OK;
}

/*
 * Log objects are fetched ahead in parallel batches (eng_prefetch), but each
 * is still verified whole and applied, and its watermark committed, one at a
 * time in sequence order: P1-P4 hold as with one GET at a time, and a failure
 * leaves the watermark at the last good object.
 */
static ss_rc pull_list(ss_folder *f, ss_stats *stats, const eng_log_list *l, uint64_t *wm,
                       uint8_t chain[SS_CHAIN_BYTES], ss_err *err)
{
    ss_xfer *x = NULL;     /* owned */
    eng_fetched *b = NULL; /* owned, with each buf */
    uint64_t applied = 0;  /* log bytes, for the automatic checkpoint rule */
    ss_rc rc = SS_OK;
    if (!l->n) return SS_OK;
    f->prog.txn_total = l->n;
    rc = ss_xfer_new(f->store, &x, err);
    if (rc) return rc;
    b = calloc(ENG_PREFETCH_MAX, sizeof *b);
    if (!b) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l->n;) {
        size_t n = 0;
        uint64_t mark = eng_peers_mark(f);
        rc = eng_prefetch(x, l, i, l->n, b, &n, err);
        if (rc) {
            free_batch(b, n);
            goto done;
        }
        rc = pull_batch(f, stats, l, i, b, n, mark, wm, chain, &applied, err);
        free_batch(b, n);
        if (rc) goto done;
        i += n;
    }
done:
    free(b);
    ss_xfer_free(x);
    eng_checkpoint_count(f, applied);
    return rc;
}

/*
 * Apply checkpoints/<c> as a base (join, re-base after gc): P1 holds (it is
 * verified whole, ops and data, before anything applies), and the state's
 * paths it lacks are deleted as a delete op would (P4: local changes stay or
 * become conflict copies). At c == watermark there is nothing to apply, and
 * the chain(c) this device holds is checked by log/<c+1> (it only decrypts
 * with it). at_head: nothing listed after it, so log/<c> vouches for its
 * device table (checkpoint_read.c, C6).
 */
static ss_rc pull_base(ss_folder *f, ss_stats *stats, uint64_t c, int at_head, uint64_t *wm,
                       uint8_t chain[SS_CHAIN_BYTES], ss_err *err)
{
    eng_cp_head head;
    int fd = -1;             /* owned */
    ss_devices *devs = NULL; /* owned: the checkpoint's device table */
    ss_rc rc;
    if (c == *wm) return SS_OK; /* gc took log/<c>: log/<c+1> checks our chain(c) */
    rc = eng_fetch_base(f, c, at_head, &fd, &head, &devs, err);
    if (rc) goto done;
    rc = keep_epochs(f, err);
    if (rc) goto done;
    rc = eng_apply_txn(f, stats, fd, c, head.prev, head.chain, 1, devs, NULL, err);
    if (rc) goto done;
    *wm = c;
    memcpy(chain, head.chain, SS_CHAIN_BYTES);
done:
    ss_devices_free(devs);
    if (fd >= 0) close(fd);
    return rc;
}

/* Where the log continues for this device (eng_log_start), a base applied first if need be. */
static ss_rc pull_start(ss_folder *f, ss_stats *stats, uint64_t *wm, uint8_t chain[SS_CHAIN_BYTES],
                        eng_log_list *l, ss_err *err)
{
    uint64_t base, base_size, mark = eng_peers_mark(f);
    char key[SS_KEY_NAME_MAX];
    ss_rc rc = eng_log_start(f, *wm, l, &base, &base_size, err);
    if (rc || !base) return rc;
    rc = pull_base(f, stats, base, !l->n, wm, chain, err);
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, base);
    if (rc != SS_ERR_INTEGRITY || !eng_peers_blame(f, mark, key)) return rc;
    return pull_base(f, stats, base, !l->n, wm, chain, err); /* from the store */
}

ss_rc ss_pull(ss_folder *f, ss_stats *stats, ss_err *err)
{
    eng_log_list l = {0};
    uint8_t chain[SS_CHAIN_BYTES];
    uint64_t wm;
    ss_rc rc;
    f->prog = (ss_progress){.phase = "pull"};
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) goto out;
    rc = pull_start(f, stats, &wm, chain, &l, err);
    if (rc) goto out;
    rc = pull_list(f, stats, &l, &wm, chain, err);
out:
    stats->seq = wm;
    eng_log_list_free(&l);
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}
