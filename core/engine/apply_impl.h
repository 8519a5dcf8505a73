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

#define ENG_SEALED 2

/* A full batch, its syncfs started, and its pending records: pend[i] is its i-th. */
typedef struct eng_sealed {
    ss_fs_batch *b;
    eng_pending *pend;
    size_t n;
} eng_sealed;

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
    /* Every chunked file's data, verified, in a file of its own (stage.c, P1). */
    struct eng_stage *stage;
    size_t cur;         /* the stage's file of the op being applied, if it has chunks */
    ss_state_body body; /* state body of the chunked file being applied */
    /* Files written, not yet renamed: pend[i] is the batch's i-th (P3's batches). */
    ss_fs_batch *batch;
    eng_pending *pend; /* SS_FS_BATCH_FILES of them, allocated with the batch */
    size_t n_pend;
    /*
     * The full batches before it, oldest first, their syncfs running or done
     * (fsio.h ss_fs_batch_sync_start): the oldest is renamed and recorded
     * when batch is full in turn and ENG_SEALED are waiting, all of them at
     * a flush, before batch. A batch's syncfs starts once its writer made
     * its temps; with two waiting it has a whole batch's walk to finish
     * before its renames need it (docs/BENCHMARKS.md, "Join of a million
     * files"). At most ENG_SEALED + 1 batches are pending.
     */
    eng_sealed sealed[ENG_SEALED];
    size_t n_sealed;
    /*
     * The directories this walk made, as a chain (each under the one
     * before): a file whose parent is one needs no look (apply_op.c, fresh).
     */
    char **made;
    size_t n_made, cap_made;
    /* A checkpoint applied as a base (join, re-base after gc): per op, 1 when the state holds it.
     */
    int base;
    uint8_t *same;
    size_t n_ops, cap_same;
} eng_apply;

/*
 * The stage (stage.c): a file per chunked op in .s3sync/tmp, each with a
 * range of offsets in one address space (its data's place in the
 * transaction), written by fetch.c's put as verified chunks land.
 * eng_stage_free closes them and removes those not taken.
 */
typedef struct eng_stage eng_stage;
ss_rc eng_stage_new(ss_folder *f, eng_stage **ret_stage, ss_err *err);
void eng_stage_free(eng_stage *s); /* NULL safe */
/* A file for size bytes at the next offsets: *ret_index, its first offset eng_stage_start. */
ss_rc eng_stage_add(eng_stage *s, uint64_t size, size_t *ret_index, ss_err *err);
uint64_t eng_stage_start(const eng_stage *s, size_t i);
/* File i open for writing (borrowed; valid until the next call here): -1 with errno. */
int eng_stage_fd(eng_stage *s, size_t i);
/* Write len bytes at off (within one file): 0, or -1 with errno (fetch.c's put). */
int eng_stage_put(eng_stage *s, uint64_t off, const void *buf, size_t len);
/* len bytes at off landed: 1 when that completed their file (then closed, writeout started). */
int eng_stage_landed(eng_stage *s, uint64_t off, uint64_t len);
/* Where file i is: eng_stage_dirfd's entry eng_stage_name (buf, cap >= 32). */
int eng_stage_dirfd(const eng_stage *s);
const char *eng_stage_name(const eng_stage *s, size_t i, char *buf, size_t cap);
/* File i was adopted (ss_atomic_adopt): every byte landed; it is no longer the stage's. */
void eng_stage_taken(eng_stage *s, size_t i);

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
void eng_apply_made_clear(eng_apply *a); /* forget the directories made (a walk starts) */

#endif
