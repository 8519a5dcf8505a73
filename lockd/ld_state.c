/*
 * ld_state.c: the generic half of lockd's state interface (ld_state.h): the
 * handle, and the calls that go to its backend's ops table.
 */
#include "ld_state.h"

#include <stdlib.h>

struct ld_state {
    const ld_state_ops *ops;
    void *impl; /* the backend's */
};

ss_rc ld_state_new(const ld_state_ops *ops, void *impl, ld_state **ret, ss_err *err)
{
    ld_state *st = NULL;
    *ret = NULL;
    st = calloc(1, sizeof *st);
    if (!st) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    st->ops = ops;
    st->impl = impl;
    *ret = st;
    return SS_OK;
}

void *ld_state_impl(const ld_state *st)
{
    return st->impl;
}

void ld_state_close(ld_state *st)
{
    if (!st) return;
    if (st->ops->close) st->ops->close(st);
    free(st);
}

ss_rc ld_state_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                      const ld_clock *clock, ld_record *ret_rec, ss_err *err)
{
    return st->ops->update(st, repo, decide, ctx, clock, ret_rec, err);
}

ss_rc ld_state_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err)
{
    return st->ops->read(st, repo, fresh, ret, err);
}
