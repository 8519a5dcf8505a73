/*
 * status: what push and pull would do, without doing it. Local: new paths,
 * deleted ones, and paths whose content, target, kind or mode changed. As
 * push, it reads a file only when its lstat no longer matches the previous
 * state or was recorded too recently to trust (the racy-mtime rule): a
 * touched file, or one just pulled, is no change. Remote: what pull would
 * apply, found as pull finds it (eng_log_start): the transactions after the
 * watermark, and a checkpoint to start from (one, whatever it holds).
 */
#include "engine.h"
#include "format.h"

/* A head a peer announced that the store, showing up to shown, still does not: said. */
static void withheld(ss_folder *f, uint64_t shown, ss_stats *stats)
{
    char msg[600];
    stats->withheld = eng_peer_head_withheld(f, shown, msg, sizeof msg);
    if (stats->withheld && f->hooks.warn) f->hooks.warn(f->hooks.ctx, msg);
}

ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err)
{
    uint8_t chain[SS_CHAIN_BYTES];
    eng_log_list l = {0};
    uint64_t wm, bytes, base, base_size;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) return rc;
    stats->seq = wm;
    /* Where pull would start: a checkpoint it applies first counts as one. */
    rc = eng_log_start(f, wm, &l, &base, &base_size, err);
    stats->pending_remote = l.n + (base ? 1 : 0);
    if (!rc) withheld(f, l.n ? l.seqs[l.n - 1] : base > wm ? base : wm, stats);
    eng_log_list_free(&l);
    if (rc) return rc;
    rc = eng_load_ignore(f, err);
    if (rc) return rc;
    rc = eng_local_changes(f, &stats->pending_local, &bytes, NULL, err);
    if (rc) return rc;
    eng_stats_from_store(f, stats, ENG_STATS_NO_UP);
    return SS_OK;
}
