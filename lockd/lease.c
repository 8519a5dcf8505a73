/*
 * lease.c: the write lease and head sequence of each repository. The only
 * code that decides who may write sequence N+1; the state backend (ld_state.h:
 * SQLite, db*.c) stores what it decides, routes.c only translates requests
 * into these calls. The transitions are here, each a decision on the
 * repository's record (decide_*: a function of the record, the request and
 * the clock, which the backend may run again on a record that changed
 * meanwhile); lease_repo.c holds the repositories served, access,
 * reconciliation and head reads (lease_impl.h is what the two share).
 *
 * Invariants (each asserted where it could break, in builds without NDEBUG
 * such as the CI's ASan build; each tested in tests/test-lockd-unit.c):
 *
 *  1. At most one unexpired lease per repository. (leases.repo is the primary
 *     key; a grant happens only when the row is absent or expired.)
 *  2. Fencing tokens strictly increase per repository, across restarts: a
 *     grant takes the record's next_fencing and increments it in the same
 *     durable update that records the lease, before the answer leaves
 *     (ld_state.h S2).
 *  3. Head never decreases (but by an admin's `repo rewind`, which no lease
 *     survives: lockd/rewind.c), and only advances (a) by a commit of exactly
 *     head+1 with the current, unexpired lease whose holder presents its
 *     fencing token, after a HEAD request found log/<head+1> in the bucket;
 *     or (b) by reconciliation, to the highest consecutive log/ key found in
 *     the bucket.
 *  4. PUT URLs go only to the current lease holder, only for keys of
 *     sequence head+1 (ld_put_key_ok), and never outlive the lease.
 *  5. A lease that ends uncommitted after PUT URLs were issued (released,
 *     expired and taken over, revoked) marks the repository dirty, and no
 *     new lease is granted on a dirty repository before reconciliation: the
 *     old holder may have created log/<head+1>, and the next holder must not
 *     be told that sequence is free.
 *  6. Every expiry decision reads the clock given to ld_leases_new, never the
 *     system clock directly, so tests move time by hand.
 *
 * States of one repository's lease slot, and the function behind each arrow
 * (every other call on a lease that is not HELD is refused: 409 stale_lease):
 *
 *                        ld_lease_acquire
 *       +------+  ------------------------------>  +------+  ld_lease_renew,
 *       | FREE |                                   | HELD |  ld_lease_begin_put,
 *       +------+  <------------------------------  +------+  ld_lease_commit(release=0)
 *         ^      ld_lease_release,                  |   ^    (HELD -> HELD)
 *         |      ld_lease_commit(release=1),        |   |
 *         |      ld_state_device_revoke             |   | ld_lease_acquire by any device:
 *         |                          the clock      |   | takeover (ld_lease_reconcile
 *         |                          reaches        v   | first when dirty)
 *         |                          expires_ms  +---------+
 *         +----------------------------------   | EXPIRED |
 *                ld_lease_release (its holder)   +---------+
 *
 *   head:  H --ld_lease_commit(seq = H+1)--> H+1
 *          H --ld_lease_reconcile (start, or acquire on a dirty repo)--> H+k
 *
 * Locking: one mutex per repository serialises every decision about it in
 * this process, including the bucket requests inside commit and reconcile;
 * the update (ld_state.h) makes each decision atomic against every other
 * writer, and a commit decides again after its HEAD, on the record as it is
 * then. Head reads take no repository mutex: they read one snapshot of the
 * record (ld_state_read, on SQLite usually from db_cache.c); nor does an
 * acquire that this snapshot already refuses (refuse_held_cached, S7).
 */
#include "lease_impl.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/*
 * One transition's request and what its decision found. A decision may run
 * more than once (ld_state.h): each run starts from lease_outcome_clear and
 * sets every finding again, so the last run's stand.
 */
typedef struct trans {
    ld_leases *l;
    const ld_device *dev;
    const char *repo;
    const char *id; /* the caller's lease, or (grant) the new one's id */
    uint64_t fencing;
    int64_t ttl_ms;
    uint64_t seq;
    int release;
    const ss_store_stat *obj; /* commit: what the HEAD of log/<seq> found; NULL: not asked yet */
    ld_outcome *out;
    /* findings */
    int reconcile;        /* the record is dirty: reconcile, then decide again */
    int expired;          /* grant: it ended an expired lease */
    int expired_seen;     /* ... in any of the updates of this request */
    int done;             /* commit: decided without the bucket (a repeated commit) */
    int64_t remaining_ms; /* begin_put: the lease's remaining time */
    ld_lease_row held;    /* the caller's lease as the decision found it */
} trans;

/* The update of t's repository by decide; a refusal is in t->out, a failure made one. */
static ss_rc update(trans *t, ld_decide_fn decide, ld_record *ret_rec)
{
    ss_rc rc =
        ld_state_update(t->l->state, t->repo, decide, t, &t->l->clock, ret_rec, &t->out->err);
    t->expired_seen |= t->expired;
    if (!rc) return SS_OK;
    if (t->out->why == LD_WHY_NONE) return lease_failed(t->out, rc);
    /* Counted once per request, whichever run of the decision refused. */
    if (t->out->why == LD_WHY_LEASE_HELD) ld_metrics_add(t->l->metrics, LD_C_REFUSED, 1);
    if (t->out->why == LD_WHY_STALE_LEASE || t->out->why == LD_WHY_STALE_FENCING ||
        t->out->why == LD_WHY_BAD_SEQ)
        ld_metrics_add(t->l->metrics, LD_C_STALE, 1);
    return rc;
}

/*
 * The lease (id, fencing) of dev in rec, checked to be current. allow_expired
 * lets a holder release its own expired lease.
 */
static ss_rc current(const trans *t, const ld_record *rec, int64_t now, int allow_expired)
{
    const ld_lease_row *row = &rec->lease;
    t->out->head = rec->repo.head;
    /* A lease id is 128 random bits: comparing it in constant time keeps a
     * device of the same repository from finding a live id by timing. */
    if (!rec->leased || strlen(t->id) != LD_LEASE_ID_LEN ||
        sodium_memcmp(row->id, t->id, LD_LEASE_ID_LEN) != 0 || strcmp(row->device, t->dev->name))
        return lease_refuse(
            t->out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT,
            "lease %.40s is not the current lease of %s (released, expired and taken "
            "over, or never granted)",
            t->id, t->repo);
    if (t->fencing != row->fencing)
        return lease_refuse(t->out, LD_WHY_STALE_FENCING, SS_ERR_CONFLICT,
                            "fencing token %" PRIu64 " is stale: lease %s holds %" PRIu64,
                            t->fencing, row->id, row->fencing);
    if (!allow_expired && now >= row->expires_ms)
        return lease_refuse(t->out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT,
                            "lease %s of %s has expired", row->id, t->repo);
    return SS_OK;
}

static void fill_lease(const ld_leases *l, const ld_lease_row *row, uint64_t head, ld_lease *ret)
{
    if (!ret) return;
    memset(ret, 0, sizeof *ret);
    snprintf(ret->id, sizeof ret->id, "%s", row->id);
    ret->fencing = row->fencing;
    ret->head = head;
    ret->expires_ms = row->expires_ms;
    ret->expires_in_ms = row->expires_ms - lease_now_ms(l);
    if (ret->expires_in_ms < 0) ret->expires_in_ms = 0;
}

static ss_rc check_ttl(const ld_leases *l, int64_t ttl_ms, ld_outcome *out)
{
    if (ttl_ms < l->limits.ttl_min_ms || ttl_ms > l->limits.ttl_max_ms)
        return lease_refuse(out, LD_WHY_BAD_REQUEST, SS_ERR_INVALID,
                            "ttl %" PRId64 " ms outside %" PRId64 "..%" PRId64 " ms", ttl_ms,
                            l->limits.ttl_min_ms, l->limits.ttl_max_ms);
    return SS_OK;
}

/* A dirty record must be reconciled before the transition can be decided (invariant 5). */
#define RECONCILE_TRIES 3

/* --- transitions ---------------------------------------------------------------- */

/* 409 lease_held when rec has a lease that is not yet to be taken over; else SS_OK. */
static ss_rc refuse_held(trans *t, const ld_record *rec, int64_t now)
{
    /* S6: expires_ms is the granting replica's clock, which may run up to skew behind ours */
    int64_t until = rec->lease.expires_ms + ld_state_skew_ms(t->l->state);
    if (!rec->leased || now >= until) return SS_OK;
    t->out->retry_after_ms = until - now;
    snprintf(t->out->holder, sizeof t->out->holder, "%s", rec->lease.device);
    return lease_refuse(t->out, LD_WHY_LEASE_HELD, SS_ERR_CONFLICT,
                        "repository %s is leased by %s for %" PRId64 " ms more", t->repo,
                        rec->lease.device, until - now);
}

/* FREE or EXPIRED -> HELD. */
static ss_rc decide_grant(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    trans *t = ctx;
    uint64_t old_fencing = rec->lease.fencing; /* asserted only */
    ss_rc rc;
    (void)err;
    (void)old_fencing;
    lease_outcome_clear(t->out);
    t->reconcile = t->expired = 0;
    *ret = LD_KEEP;
    rc = refuse_held(t, rec, now);
    if (rc) return rc;
    if (rec->leased) { /* EXPIRED: end it the way a release would, so invariant 5 sees it */
        t->expired = 1;
        ld_record_end_lease(rec);
        *ret = LD_WRITE;
    }
    if (rec->repo.rewinding)
        return lease_refuse(t->out, LD_WHY_REWINDING, SS_ERR_TEMPORARY,
                            "repository %s is being rewound by its admin; try again shortly",
                            t->repo);
    if (rec->repo.dirty) { /* invariant 5: never grant on a head that may be behind */
        t->reconcile = 1;
        return SS_OK;
    }
    snprintf(rec->lease.id, sizeof rec->lease.id, "%s", t->id);
    snprintf(rec->lease.device, sizeof rec->lease.device, "%s", t->dev->name);
    rec->lease.granted_ms = now;
    rec->lease.expires_ms = now + t->ttl_ms;
    rec->lease.put_seq = 0;
    /* Invariant 2: the token handed out is the persisted next one, above any before it. */
    rec->lease.fencing = rec->repo.next_fencing++;
    assert(rec->lease.fencing >= 1);
    assert(!t->expired || rec->lease.fencing > old_fencing);
    rec->leased = 1;
    t->out->head = rec->repo.head;
    *ret = LD_WRITE;
    return SS_OK;
}

/*
 * The update of decide, reconciling first whenever its decision asks to
 * (a dirty record), then deciding again. Caller holds s->mu.
 */
static ss_rc update_clean(trans *t, ld_slot *s, ld_decide_fn decide, ld_record *ret_rec)
{
    ss_rc rc;
    for (unsigned i = 0;; i++) {
        rc = update(t, decide, ret_rec);
        if (rc || !t->reconcile) return rc;
        if (i + 1 == RECONCILE_TRIES) /* made dirty again each time: another writer is busy */
            return lease_refuse(t->out, LD_WHY_STORE, SS_ERR_TEMPORARY,
                                "repository %s: head kept moving under reconciliation", t->repo);
        rc = lease_reconcile_locked(t->l, s, NULL, t->out);
        if (rc) return rc;
    }
}

static ss_rc acquire_locked(ld_leases *l, ld_slot *s, const ld_device *dev, int64_t ttl_ms,
                            ld_lease *ret, ld_outcome *out)
{
    unsigned char rnd[LD_LEASE_ID_BYTES];
    char id[LD_LEASE_ID_LEN + 1];
    ld_record rec;
    trans t = {.l = l, .dev = dev, .repo = s->name, .id = id, .ttl_ms = ttl_ms, .out = out};
    ss_rc rc;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(id, sizeof id, rnd, sizeof rnd);
    rc = update_clean(&t, s, decide_grant, &rec);
    if (t.expired_seen) ld_metrics_add(l->metrics, LD_C_EXPIRED, 1);
    if (rc) return rc;
    ld_metrics_add(l->metrics, LD_C_GRANTED, 1);
    fill_lease(l, &rec.lease, rec.repo.head, ret);
    return SS_OK;
}

/*
 * A lease live in the record as read without a request (exact on SQLite, at most
 * state_head_cache_ms old on a bucket: S7) refuses at once, outside the slot's
 * mutex, so that devices waiting for a lease do not queue in front of its holder's
 * presign and commit. A refusal on an older record than the bucket's is safe: it
 * grants nothing, and a lease released since is met by the device's retry (the
 * holder itself too, after a release through another replica: at most
 * head_cache_ms later; exempting it would let one device's many clients queue).
 */
static ss_rc refuse_held_cached(ld_leases *l, const ld_device *dev, const char *repo,
                                ld_outcome *out)
{
    ld_record rec;
    ss_err err = {{0}};
    trans t = {.l = l, .dev = dev, .repo = repo, .out = out};
    ss_rc rc;
    if (ld_state_read(l->state, repo, 0, &rec, &err)) return SS_OK; /* the update will say */
    rc = refuse_held(&t, &rec, lease_now_ms(l));
    if (!rc) return SS_OK;
    /* The lease may have ended since this record was read: ask again once it is stale. */
    if (ld_state_stale_ms(l->state) && out->retry_after_ms > ld_state_stale_ms(l->state))
        out->retry_after_ms = ld_state_stale_ms(l->state);
    ld_metrics_add(l->metrics, LD_C_REFUSED, 1);
    return rc;
}

ss_rc ld_lease_acquire(ld_leases *l, const ld_device *dev, const char *repo, int64_t ttl_ms,
                       ld_lease *ret, ld_outcome *out)
{
    ld_slot *s = NULL;
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    rc = check_ttl(l, ttl_ms, out);
    if (rc) return rc;
    rc = refuse_held_cached(l, dev, repo, out);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    rc = acquire_locked(l, s, dev, ttl_ms, ret, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD, later expiry. An expired lease cannot be renewed: once
 * expired it may already belong to another device (invariant 1). */
static ss_rc decide_renew(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    trans *t = ctx;
    ss_rc rc;
    (void)err;
    lease_outcome_clear(t->out);
    *ret = LD_KEEP;
    rc = current(t, rec, now, 0);
    if (rc) return rc;
    rec->lease.expires_ms = now + t->ttl_ms;
    *ret = LD_WRITE;
    return SS_OK;
}

ss_rc ld_lease_renew(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                     uint64_t fencing, int64_t ttl_ms, ld_lease *ret, ld_outcome *out)
{
    ld_slot *s = NULL;
    ld_record rec;
    trans t = {.l = l,
               .dev = dev,
               .repo = repo,
               .id = id,
               .fencing = fencing,
               .ttl_ms = ttl_ms,
               .out = out};
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    rc = check_ttl(l, ttl_ms, out);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    rc = update(&t, decide_renew, &rec);
    pthread_mutex_unlock(&s->mu);
    if (rc) return rc;
    ld_metrics_add(l->metrics, LD_C_RENEWED, 1);
    fill_lease(l, &rec.lease, rec.repo.head, ret);
    return SS_OK;
}

/* HELD or EXPIRED -> FREE, by the holder. */
static ss_rc decide_release(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    trans *t = ctx;
    ss_rc rc;
    (void)err;
    lease_outcome_clear(t->out);
    *ret = LD_KEEP;
    rc = current(t, rec, now, 1);
    if (rc) return rc;
    ld_record_end_lease(rec);
    *ret = LD_WRITE;
    return SS_OK;
}

ss_rc ld_lease_release(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                       uint64_t fencing, ld_outcome *out)
{
    ld_slot *s = NULL;
    trans t = {.l = l, .dev = dev, .repo = repo, .id = id, .fencing = fencing, .out = out};
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = update(&t, decide_release, NULL);
    pthread_mutex_unlock(&s->mu);
    if (rc) return rc;
    ld_metrics_add(l->metrics, LD_C_RELEASED, 1);
    return SS_OK;
}

/*
 * HELD -> HELD, with PUT URLs out for head+1, recorded first (invariant 5).
 * Dirty under a live lease: the start-up reconciliation failed (bucket
 * down) or the repository moved. Never sign for a head that may be behind.
 */
static ss_rc decide_begin_put(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    trans *t = ctx;
    ss_rc rc;
    (void)err;
    lease_outcome_clear(t->out);
    t->reconcile = 0;
    *ret = LD_KEEP;
    rc = current(t, rec, now, 0);
    if (rc) return rc;
    if (rec->repo.dirty) {
        t->reconcile = 1;
        return SS_OK;
    }
    t->remaining_ms = rec->lease.expires_ms - now;
    if (rec->lease.put_seq != rec->repo.head + 1) {
        rec->lease.put_seq = rec->repo.head + 1;
        rec->add_writer = 1; /* its device, a writer of the sequence */
        *ret = LD_WRITE;
    }
    return SS_OK;
}

ss_rc ld_lease_begin_put(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                         uint64_t fencing, uint64_t *ret_seq, uint64_t *ret_head,
                         int64_t *ret_remaining_ms, ld_outcome *out)
{
    ld_slot *s = NULL;
    ld_record rec;
    trans t = {.l = l, .dev = dev, .repo = repo, .id = id, .fencing = fencing, .out = out};
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = update_clean(&t, s, decide_begin_put, &rec);
    pthread_mutex_unlock(&s->mu);
    if (rc) return rc;
    *ret_seq = rec.repo.head + 1;
    *ret_head = rec.repo.head;
    *ret_remaining_ms = t.remaining_ms;
    return SS_OK;
}

/*
 * HELD -> HELD (head+1) or FREE (release). Decided twice: before the HEAD of
 * log/<seq> in the bucket (t->obj NULL: the checks, and a repeated commit,
 * which needs no HEAD), and after it, on the record as it is then.
 */
static ss_rc decide_commit(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    trans *t = ctx;
    ss_rc rc;
    (void)err;
    lease_outcome_clear(t->out);
    t->done = 0;
    *ret = LD_KEEP;
    /* After the HEAD, the lease found unexpired before it need only still be the
     * caller's (id and token): one taken over meanwhile fails that, and expiring
     * during the HEAD alone does not undo a commit checked in time. */
    rc = current(t, rec, now, t->obj != NULL);
    if (rc) return rc;
    t->held = rec->lease;
    if (t->seq == rec->repo.head && rec->lease.put_seq == t->seq) {
        /* Already in: this lease's earlier commit whose answer was lost, or
         * reconciliation after a restart found this lease's upload. The
         * lease held the sequence throughout, so the object is its own. */
        t->done = 1;
        if (t->release) {
            ld_record_end_lease(rec);
            *ret = LD_WRITE;
        }
        return SS_OK;
    }
    if (t->seq != rec->repo.head + 1)
        return lease_refuse(t->out, LD_WHY_BAD_SEQ, SS_ERR_CONFLICT,
                            "commit of sequence %" PRIu64 " refused: head is %" PRIu64
                            ", only %" PRIu64 " can be committed",
                            t->seq, rec->repo.head, rec->repo.head + 1);
    if (!t->obj) return SS_OK; /* the bucket is asked next */
    rec->repo.head = t->seq;   /* invariant 3: exactly head+1 */
    memcpy(rec->repo.head_etag, t->obj->etag, sizeof rec->repo.head_etag);
    rec->repo.head_size = t->obj->size;
    t->out->head = t->seq;
    if (t->release) ld_record_end_lease(rec);
    *ret = LD_WRITE;
    return SS_OK;
}

static ss_rc commit_locked(trans *t, ld_slot *s, ld_lease *ret, int *ret_released)
{
    ld_record rec;
    ss_store_stat st;
    char key[LD_LOG_KEY_SIZE];
    ss_rc rc;

    rc = update(t, decide_commit, &rec);
    if (rc) return rc;
    if (!t->done) {
        ld_log_key(t->seq, key);
        rc = ss_store_head(s->store, key, &st, &t->out->err);
        if (rc == SS_ERR_NOT_FOUND)
            return lease_refuse(t->out, LD_WHY_OBJECT_MISSING, SS_ERR_CONFLICT,
                                "commit of sequence %" PRIu64
                                " refused: %s is not in the bucket; upload "
                                "it first",
                                t->seq, key);
        if (rc) return lease_failed(t->out, rc);
        t->obj = &st;
        rc = update(t, decide_commit, &rec);
        if (rc) return rc;
        if (!t->done) {
            ld_metrics_add(t->l->metrics, LD_C_COMMITS, 1);
            if (t->release) ld_metrics_add(t->l->metrics, LD_C_RELEASED, 1);
        }
    }
    *ret_released = t->release;
    fill_lease(t->l, &t->held, rec.repo.head, ret);
    return SS_OK;
}

ss_rc ld_lease_commit(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                      uint64_t fencing, uint64_t seq, int release, ld_lease *ret, int *ret_released,
                      ld_outcome *out)
{
    ld_slot *s = NULL;
    trans t = {.l = l,
               .dev = dev,
               .repo = repo,
               .id = id,
               .fencing = fencing,
               .seq = seq,
               .release = release,
               .out = out};
    ss_rc rc;
    lease_outcome_clear(out);
    *ret_released = 0;
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = commit_locked(&t, s, ret, ret_released);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
