/*
 * apply_impl: what the transaction driver (apply.c: stage, walk, commit) and
 * the per-op writer (apply_op.c: one path against the folder and the state)
 * share, private to them: the state of one transaction being applied.
 */
#ifndef ENG_APPLY_IMPL_H
#define ENG_APPLY_IMPL_H

#include "engine.h"
#include "fsio.h"

typedef struct eng_deferral {
    char *path;
    int del; /* a delete; else a replacement of a directory */
} eng_deferral;

/*
 * A file written to its temp and staged in the batch (fsio.h ss_fs_batch):
 * what record() needs once it is renamed into place, owned copies.
 */
typedef struct eng_pending {
    struct eng_apply *a; /* for the look before its rename (P4) */
    ss_txn_entry e;      /* path and the fields eng_row_of reads; no data */
    char *path;          /* e.path's copy */
    uint8_t *body;       /* the state body: inline data or chunk refs */
    size_t body_len;
} eng_pending;

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
    /* Files written, not yet renamed: pend[i] is the batch's i-th (P3's batches). */
    ss_fs_batch *batch;
    eng_pending *pend; /* SS_FS_BATCH_FILES of them, allocated with the batch */
    size_t n_pend;
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
/*
 * P3's batch: make the files staged durable, rename them into place and
 * record each in the state (their renames are durable after the
 * transaction's final ss_fs_sync). Empties the batch, after a failure too.
 */
ss_rc eng_apply_flush(eng_apply *a, ss_err *err);
void eng_apply_batch_free(eng_apply *a); /* temps not renamed are removed */

#endif
