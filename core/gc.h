/*
 * gc: delete what no retained state needs (docs/FORMAT.md "gc", normative):
 * log objects at or before the oldest retained checkpoint R, checkpoints
 * older than R, and data/ packs of sequences up to the head H listed at the
 * start that neither checkpoint R nor any log object after it references.
 * Every state from R to H stays restorable. Direct mode only: a lockd store
 * presigns no DELETE.
 */
#ifndef SS_GC_H
#define SS_GC_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

typedef struct ss_gc_opts {
    int by_last;        /* keep_last is set: else keep_days */
    uint64_t keep_last; /* the newest N states stay restorable (N >= 1) */
    uint64_t keep_days; /* the states of the last N days stay restorable */
    int dry_run;        /* list what would go; delete nothing */
} ss_gc_opts;

typedef struct ss_gc_result {
    uint64_t head;                     /* H: the newest sequence when gc listed the store */
    uint64_t retained;                 /* R: the oldest retained checkpoint; 0: nothing could go */
    uint64_t checkpoint;               /* a checkpoint gc wrote first (there was none); 0: none */
    uint64_t objects, bytes;           /* deleted (or, dry run, to delete) */
    uint64_t kept_objects, kept_bytes; /* what stays of the listed log/, checkpoints/, data/ */
} ss_gc_result;

/* Told of every object deleted (dry run: that would be), in delete order. Borrowed key. */
typedef void (*ss_gc_fn)(void *ctx, const char *key, uint64_t bytes);

/*
 * Run gc. SS_ERR_INVALID on a lockd store. Before deleting anything, every
 * object of the retained window [R, H] is verified (a walk as verify's): a
 * repository that fails it loses nothing (SS_ERR_INTEGRITY).
 */
ss_rc ss_gc(ss_folder *f, const ss_gc_opts *o, ss_gc_fn fn, void *ctx, ss_gc_result *ret_result,
            ss_stats *stats, ss_err *err);

#endif
