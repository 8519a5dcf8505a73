/*
 * lease_impl.h: what lease.c (the transitions of a repository's lease) and
 * lease_repo.c (the repositories served, access, reconciliation, head reads)
 * share, private to the two: the per-repository slot and its mutex, and the
 * helpers that fill an ld_outcome.
 */
#ifndef LD_LEASE_IMPL_H
#define LD_LEASE_IMPL_H

#include "lockd.h"
#include "ld_state.h"

typedef struct ld_slot {
    char name[LD_NAME_MAX + 1];
    ss_store *store;
    pthread_mutex_t mu;
    struct ld_slot *next;
} ld_slot;

struct ld_leases {
    ld_state *state; /* the records decided on (SQLite over the db given to ld_leases_new) */
    ld_clock clock;
    ld_metrics *metrics;
    ld_lease_limits limits;
    ld_slot *slots; /* added before serving, never changed while serving */
};

static inline int64_t lease_now_ms(const ld_leases *l)
{
    return l->clock.now_ms(l->clock.ctx);
}

/* out says why (why, and err from fmt); returns rc. */
ss_rc lease_refuse(ld_outcome *out, ld_why why, ss_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A database or store failure already described in out->err: out->why from rc; returns rc. */
ss_rc lease_failed(ld_outcome *out, ss_rc rc);
void lease_outcome_clear(ld_outcome *out);
/* The slot of a served repository dev may use (for writing: need_write);
 * NULL, out saying why, when none. lease_access_rc: that refusal's code. */
ld_slot *lease_access_slot(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                           ld_outcome *out);
ss_rc lease_access_rc(const ld_outcome *out);
/* Head from the bucket's log/ keys (invariant 3b); caller holds s->mu. */
ss_rc lease_reconcile_locked(ld_leases *l, ld_slot *s, uint64_t *ret_head, ld_outcome *out);

#endif
