/*
 * checkpoint: checkpoints/<seq>, the whole state at a sequence (docs/FORMAT.md
 * "Checkpoints", normative): writing one from state.db (`s3sync checkpoint`,
 * and by itself after a push by the documented rule), listing them, and
 * reading one back verified (a joining device, a device re-based after gc,
 * log, verify, restore and gc start there).
 *
 * A checkpoint's plaintext is a 40-byte header recording chain(seq), then a
 * transaction of upserts only, one per path of the state at seq: the same
 * decoder checks it as every log object (paths, order, chunk refs, limits).
 */
#ifndef SS_CHECKPOINT_H
#define SS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

typedef struct ss_checkpoint_result {
    uint64_t seq;   /* the sequence captured */
    int existed;    /* another device had written that very checkpoint */
    uint64_t paths; /* entries in it */
    uint64_t bytes; /* size of the object */
} ss_checkpoint_result;

/*
 * Pull to the head H, then write checkpoints/<H> from the state (create-only:
 * a 412 means another device wrote the same state, which is success with
 * existed set). SS_ERR_INVALID when the repository has no transaction yet.
 */
ss_rc ss_checkpoint(ss_folder *f, ss_checkpoint_result *ret_result, ss_stats *stats, ss_err *err);

#endif
