/*
 * apply_impl: what the transaction driver (apply.c: stage, walk, commit) and
 * the per-op writer (apply_op.c: one path against the folder and the state)
 * share, private to them: the state of one transaction being applied.
 */
#ifndef ENG_APPLY_IMPL_H
#define ENG_APPLY_IMPL_H

#include "engine.h"

typedef struct eng_deferral {
    char *path;
    int del; /* a delete; else a replacement of a directory */
} eng_deferral;

typedef struct eng_apply {
    ss_folder *f;
    ss_stats *stats;
    eng_txn_iter txn; /* the staged transaction being walked: txn.r reads the op's chunk refs */
    ss_xfer *xfer;
    ss_dirmodes *dm; /* directory modes after contents; directories opened meanwhile (P6) */
    int deferred_pass;
    int kept;               /* clear_way left a directory holding local files */
    eng_deferral *deferred; /* ops that wait until the rest of the transaction applied */
    size_t n_deferred, cap_deferred;
    /* Every chunked file's data, verified, back to back in transaction order (P1). */
    int stage_fd;
    uint64_t stage_off; /* where the current op's data starts in it */
    ss_state_body body; /* state body of the chunked file being applied */
    /* Per chunked file staged: where its data starts and the bytes still to land (progress). */
    struct eng_staged_file {
        uint64_t start, left;
    } * staged;
    size_t n_staged, cap_staged;
    /* A checkpoint applied as a base (join, re-base after gc): per op, 1 when the state holds it.
     */
    int base;
    uint8_t *same;
    size_t n_ops, cap_same;
} eng_apply;

static inline int eng_is_chunked(const ss_txn_entry *e)
{
    return e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE && e->storage == SS_TXN_CHUNKS;
}

/*
 * The current op of a->txn against the folder and the state (P3, P4, P6).
 * A directory in the way that is not empty yet is deferred (a->deferred):
 * eng_apply_deferred deletes those, then the driver walks the ops again
 * with a->deferred_pass set for the replacements (eng_apply_is_deferred).
 */
ss_rc eng_apply_upsert(eng_apply *a, const ss_txn_entry *e, ss_err *err);
ss_rc eng_apply_delete(eng_apply *a, const ss_txn_entry *e, ss_err *err);
ss_rc eng_apply_deferred(eng_apply *a, ss_err *err);
int eng_apply_is_deferred(const eng_apply *a, const char *path);

#endif
