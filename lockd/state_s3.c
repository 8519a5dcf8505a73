/*
 * state_s3.c: lockd's state in a bucket (ld_state.h, docs/PROTOCOL.md "State
 * backends"). Being built: until it is, a bucket state is refused.
 */
#include "ld_state.h"

ss_rc ld_state_s3(ss_store *store, const ld_state_s3_opts *o, ld_state **ret, ss_err *err)
{
    (void)store;
    (void)o;
    *ret = NULL;
    return ss_fail(err, SS_ERR_INVALID, "a bucket state is not built yet (issue 19)");
}
