/*
 * status: what push and pull would do, without doing it. Local: new paths,
 * deleted ones, and paths whose content, target, kind or mode changed. As
 * push, it reads a file only when its lstat no longer matches the previous
 * state or was recorded too recently to trust (the racy-mtime rule): a
 * touched file, or one just pulled, is no change. Remote: transactions
 * listed after the watermark.
 */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "format.h"
#include "path.h"

static int count_key(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key;
    (void)st;
    (*(uint64_t *)ctx)++;
    return 0;
}

/* 1 when e holds what row r records; a file that cannot be read counts as changed (push warns). */
static int same_as_row(ss_folder *f, const ss_state_row *r, const ss_scan_entry *e)
{
    ss_err ignored = {{0}};
    int match = eng_stat_matches(r, &e->st);
    if (!match && eng_local_matches(f, r, e->path, &e->st, &match, &ignored)) match = 0;
    return match;
}

static ss_rc count_local(ss_folder *f, uint64_t *ret, ss_err *err)
{
    eng_scan sc = {0};
    ss_state_iter *it = NULL;
    const ss_scan_entry *e = NULL;
    const ss_state_row *r = NULL;
    ss_rc rc;
    *ret = 0;
    rc = eng_load_ignore(f, err);
    if (rc) goto out;
    rc = eng_scan_new(f, NULL, NULL, &sc, err);
    if (rc) goto out;
    rc = ss_state_iter_new(f->state, &it, err);
    if (rc) goto out;
    rc = eng_scan_next(&sc, &e, err);
    if (rc) goto out;
    rc = ss_state_iter_next(it, &r, err);
    if (rc) goto out;
    while (e || r) {
        int c = !e ? 1 : !r ? -1 : ss_path_cmp(e->path, strlen(e->path), r->path, strlen(r->path));
        if (c < 0 || (c == 0 && !same_as_row(f, r, e))) (*ret)++;
        if (c > 0 && !ss_ignore_match(f->ign, r->path, r->kind == SS_TXN_DIR) &&
            !ss_path_validate(r->path, strlen(r->path), NULL)) /* push forgets those */
            (*ret)++;
        if (c <= 0) {
            rc = eng_scan_next(&sc, &e, err);
            if (rc) goto out;
        }
        if (c >= 0) {
            rc = ss_state_iter_next(it, &r, err);
            if (rc) goto out;
        }
    }
out:
    ss_state_iter_free(it);
    return eng_scan_end(&sc, rc, err);
}

ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err)
{
    uint8_t chain[SS_CHAIN_BYTES];
    char after[SS_KEY_NAME_MAX] = "";
    uint64_t wm;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) return rc;
    stats->seq = wm;
    if (wm) snprintf(after, sizeof after, SS_KEY_LOG_FMT, wm);
    rc = ss_store_list(f->store, SS_KEY_LOG_PREFIX, after, count_key, &stats->pending_remote, err);
    if (rc) return rc;
    rc = count_local(f, &stats->pending_local, err);
    if (rc) return rc;
    eng_stats_from_store(f, stats, ENG_STATS_NO_UP);
    return SS_OK;
}
