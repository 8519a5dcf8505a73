/*
 * log_list: listing log/ (and checkpoints/) as sequences: the run after the
 * watermark that a pull applies (pull's P2), checked to have no gap and to
 * start at the watermark's own key. pull, log, verify, restore and gc list
 * the log through it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"

void eng_log_list_free(eng_log_list *l)
{
    free(l->seqs);
    free(l->sizes);
    memset(l, 0, sizeof *l);
}

/* Room for one more sequence and its size. */
static ss_rc grow(eng_log_list *l)
{
    ss_rc rc = SS_ARRAY_GROW(l->seqs, l->n + 1, l->cap_seqs);
    if (rc) return rc;
    return SS_ARRAY_GROW(l->sizes, l->n + 1, l->cap_sizes);
}

int eng_collect_seq(void *ctx, const char *key, const ss_store_stat *st)
{
    eng_log_list *l = ctx;
    const char *d = key + strlen(l->prefix ? l->prefix : SS_KEY_LOG_PREFIX);
    char *end = NULL;
    uint64_t seq;
    seq = strtoull(d, &end, 10);
    if (strlen(d) != SS_SEQ_DIGITS || *end || !seq) {
        l->bad = 1;
        snprintf(l->bad_key, sizeof l->bad_key, "%s", key);
        return 1;
    }
    if (grow(l)) {
        l->bad = 2;
        return 1;
    }
    l->sizes[l->n] = st ? st->size : 0;
    if (st && !l->n) l->first = *st;
    if (st) l->last = *st;
    l->seqs[l->n++] = seq;
    return 0;
}

/*
 * Sequences after wm; checks P2 on what the store lists. own: the first
 * listed key must be log/<wm> itself (else the store was rolled back, or gc
 * removed it: l->bad = 3), and the very object applied there (fork.c), and
 * is dropped from the list.
 */
static ss_rc list_log(ss_folder *f, uint64_t wm, int own, eng_log_list *l, ss_err *err)
{
    char after[SS_KEY_NAME_MAX] = "";
    size_t first = 0;
    ss_rc rc;
    if (wm) snprintf(after, sizeof after, SS_KEY_LOG_FMT, own ? wm - 1 : wm);
    rc = ss_store_list(f->store, SS_KEY_LOG_PREFIX, after, eng_collect_seq, l, err);
    if (rc) return rc;
    if (l->bad == 2) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (l->bad)
        return ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s in the log", l->bad_key);
    if (own) {
        if (!l->n || l->seqs[0] != wm) {
            l->bad = 3;
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "the store no longer holds log/%020" PRIu64 ", which this device "
                           "applied: it was rolled back or tampered with",
                           wm);
        }
        rc = eng_fork_check(f, wm, &l->first, err);
        if (rc) return rc;
        first = 1;
    }
    for (size_t i = first; i < l->n; i++)
        if (l->seqs[i] != wm + 1 + (i - first))
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "log/%020" PRIu64
                           " is missing: the sequence has a gap before %020" PRIu64,
                           wm + 1 + (i - first), l->seqs[i]);
    if (first) { /* seqs is NULL when the list is empty */
        memmove(l->seqs, l->seqs + first, (l->n - first) * sizeof *l->seqs);
        memmove(l->sizes, l->sizes + first, (l->n - first) * sizeof *l->sizes);
    }
    l->n -= first;
    return SS_OK;
}

ss_rc eng_list_checkpoints(ss_folder *f, eng_log_list *l, ss_err *err)
{
    ss_rc rc;
    l->prefix = SS_KEY_CHECKPOINTS_PREFIX;
    rc = ss_store_list(f->store, SS_KEY_CHECKPOINTS_PREFIX, "", eng_collect_seq, l, err);
    if (rc) return rc;
    if (l->bad == 2) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (l->bad) return ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s", l->bad_key);
    return SS_OK;
}

ss_rc eng_list_log(ss_folder *f, uint64_t wm, eng_log_list *l, ss_err *err)
{
    return list_log(f, wm, wm > 0, l, err);
}

ss_rc eng_list_log_after(ss_folder *f, uint64_t c, eng_log_list *l, ss_err *err)
{
    return list_log(f, c, 0, l, err);
}

ss_rc eng_log_start(ss_folder *f, uint64_t wm, eng_log_list *l, uint64_t *ret_base,
                    uint64_t *ret_base_size, ss_err *err)
{
    eng_log_list cps = {0}; /* owned */
    ss_err gone = {{0}};
    uint64_t c;
    ss_rc rc;
    *ret_base = 0;
    *ret_base_size = 0;
    rc = wm ? eng_list_log(f, wm, l, &gone) : SS_OK;
    if (wm && (rc != SS_ERR_INTEGRITY || l->bad != 3)) {
        if (rc && err) *err = gone;
        return rc;
    }
    rc = eng_list_checkpoints(f, &cps, err);
    if (rc) goto out;
    c = cps.n ? cps.seqs[cps.n - 1] : 0;
    eng_log_list_free(l);
    if (wm && c < wm) {
        rc = SS_ERR_INTEGRITY;
        if (err) *err = gone;
        goto out;
    }
    rc = eng_list_log_after(f, c, l, err); /* c >= wm here */
    if (rc) goto out;
    if (c > wm) { /* at c == wm gc took log/<c>: log/<c+1> checks our chain(c) */
        *ret_base = c;
        *ret_base_size = cps.sizes[cps.n - 1];
    }
out:
    eng_log_list_free(&cps);
    return rc;
}
