/*
 * status: what push and pull would do, without doing it. Local: new paths,
 * deleted ones, and paths whose content, target, kind or mode changed. As
 * push, it reads a file only when its lstat no longer matches the previous
 * state or was recorded too recently to trust (the racy-mtime rule): a
 * touched file, or one just pulled, is no change. Remote: transactions
 * listed after the watermark.
 */
#include <stdio.h>

#include "engine.h"
#include "format.h"

static int count_key(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key;
    (void)st;
    (*(uint64_t *)ctx)++;
    return 0;
}

ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err)
{
    uint8_t chain[SS_CHAIN_BYTES];
    char after[SS_KEY_NAME_MAX] = "";
    uint64_t wm, bytes;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) return rc;
    stats->seq = wm;
    if (wm) snprintf(after, sizeof after, SS_KEY_LOG_FMT, wm);
    rc = ss_store_list(f->store, SS_KEY_LOG_PREFIX, after, count_key, &stats->pending_remote, err);
    if (rc) return rc;
    rc = eng_load_ignore(f, err);
    if (rc) return rc;
    rc = eng_local_changes(f, &stats->pending_local, &bytes, NULL, err);
    if (rc) return rc;
    eng_stats_from_store(f, stats, ENG_STATS_NO_UP);
    return SS_OK;
}
