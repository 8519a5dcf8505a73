/*
 * checkpoint: `s3sync checkpoint` (ss_checkpoint): pull to the head, enroll
 * if this device signed nothing yet, then write checkpoints/<head>
 * (engine/checkpoint_write.c).
 */
#include "s3sync.h"

#include <errno.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "ss_buf.h"

/*
 * Readers check who signed a checkpoint, so a device that signed nothing yet
 * enrolls first (a transaction of its enrollment alone), unless the state
 * at the head has its checkpoint already: then there is nothing to write.
 */
static ss_rc enroll_unless_written(ss_folder *f, ss_checkpoint_result *res, ss_stats *stats,
                                   ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t chain[SS_CHAIN_BYTES];
    ss_store_stat st;
    ss_rc rc = ss_state_watermark(f->state, &res->seq, chain, err);
    if (rc || !res->seq) return rc;
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, res->seq);
    rc = ss_store_head(f->store, key, &st, err);
    if (rc == SS_ERR_NOT_FOUND) return eng_push_enroll(f, stats, err);
    if (rc) return rc;
    res->existed = 1;
    eng_checkpoint_remember(f, res->seq, 0);
    return SS_OK;
}

ss_rc ss_checkpoint(ss_folder *f, ss_checkpoint_result *ret_result, ss_stats *stats, ss_err *err)
{
    ss_rc rc;
    memset(ret_result, 0, sizeof *ret_result);
    rc = ss_pull(f, stats, err);
    if (rc) goto done;
    if (!ss_devices_find(f->devices, f->device_id)) {
        rc = enroll_unless_written(f, ret_result, stats, err);
        if (rc) goto done;
    }
    if (!ret_result->existed) {
        rc = eng_checkpoint_write(f, ret_result, err);
        if (rc) goto done;
    }
done: /* the stats are told, failed or not */
    stats->seq = ret_result->seq;
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}
