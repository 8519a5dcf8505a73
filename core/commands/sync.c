/*
 * sync: a pull, then a push of what changed here (ss_sync): the pull first,
 * so the push builds on the head and conflicts are met on this side.
 */
#include "s3sync.h"

ss_rc ss_sync(ss_folder *f, ss_stats *stats, ss_err *err)
{
    ss_rc rc = ss_pull(f, stats, err);
    if (rc) return rc;
    return ss_push(f, stats, err);
}
