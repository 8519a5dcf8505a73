/*
 * lease.c: the write lease and head sequence of each repository. The only
 * code that decides who may write sequence N+1; db.c stores what it decides,
 * routes.c only translates requests into these calls. The transitions are
 * here; lease_repo.c holds the repositories served, access, reconciliation
 * and head reads (lease_impl.h is what the two share).
 *
 * Invariants (each asserted where it could break, in builds without NDEBUG
 * such as the CI's ASan build; each tested in tests/test-lockd-unit.c):
 *
 *  1. At most one unexpired lease per repository. (leases.repo is the primary
 *     key; a grant happens only when the row is absent or expired.)
 *  2. Fencing tokens strictly increase per repository, across restarts: a
 *     grant takes repositories.next_fencing and increments it in the same
 *     durable transaction that records the lease, before the answer leaves.
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
 *         |      ld_db_device_revoke                |   | ld_lease_acquire by any device:
 *         |                          the clock      |   | takeover (ld_lease_reconcile
 *         |                          reaches        v   | first when dirty)
 *         |                          expires_ms  +---------+
 *         +----------------------------------   | EXPIRED |
 *                ld_lease_release (its holder)   +---------+
 *
 *   head:  H --ld_lease_commit(seq = H+1)--> H+1
 *          H --ld_lease_reconcile (start, or acquire on a dirty repo)--> H+k
 *
 * Locking: one mutex per repository serialises every decision about it,
 * including the bucket requests inside commit and reconcile (so nobody can
 * take the lease between a commit's HEAD and its head update). Head reads
 * take no repository mutex: they read one committed snapshot of the
 * repository and lease rows (ld_db_repo_state, usually from db_cache.c).
 */
#include "lease_impl.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/*
 * The lease (id, fencing) of dev on s, checked to be current: caller holds
 * s->mu. allow_expired lets a holder release its own expired lease.
 */
static ss_rc current(ld_leases *l, ld_slot *s, const ld_device *dev, const char *id,
                     uint64_t fencing, int allow_expired, ld_lease_row *ret, ld_repo_row *ret_repo,
                     ld_outcome *out)
{
    int found = 0;
    ss_rc rc;
    rc = ld_db_repo_state(l->db, s->name, ret_repo, ret, &found, &out->err);
    if (rc) return lease_failed(out, rc);
    out->head = ret_repo->head;
    /* A lease id is 128 random bits: comparing it in constant time keeps a
     * device of the same repository from finding a live id by timing. */
    if (!found || strlen(id) != LD_LEASE_ID_LEN ||
        sodium_memcmp(ret->id, id, LD_LEASE_ID_LEN) != 0 || strcmp(ret->device, dev->name)) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return lease_refuse(
            out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT,
            "lease %.40s is not the current lease of %s (released, expired and taken "
            "over, or never granted)",
            id, s->name);
    }
    if (fencing != ret->fencing) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return lease_refuse(out, LD_WHY_STALE_FENCING, SS_ERR_CONFLICT,
                            "fencing token %" PRIu64 " is stale: lease %s holds %" PRIu64, fencing,
                            ret->id, ret->fencing);
    }
    if (!allow_expired && lease_now_ms(l) >= ret->expires_ms) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return lease_refuse(out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT, "lease %s of %s has expired",
                            ret->id, s->name);
    }
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

/* --- transitions ---------------------------------------------------------------- */

/* FREE or EXPIRED -> HELD. Caller holds s->mu. */
static ss_rc acquire_locked(ld_leases *l, ld_slot *s, const ld_device *dev, int64_t ttl_ms,
                            ld_lease *ret, ld_outcome *out)
{
    ld_lease_row old, row;
    ld_repo_row r;
    unsigned char rnd[LD_LEASE_ID_BYTES];
    int found = 0;
    int64_t now = lease_now_ms(l);
    ss_rc rc;

    rc = ld_db_lease_get(l->db, s->name, &old, &found, &out->err);
    if (rc) return lease_failed(out, rc);
    if (found && now < old.expires_ms) {
        ld_metrics_add(l->metrics, LD_C_REFUSED, 1);
        out->retry_after_ms = old.expires_ms - now;
        snprintf(out->holder, sizeof out->holder, "%s", old.device);
        return lease_refuse(out, LD_WHY_LEASE_HELD, SS_ERR_CONFLICT,
                            "repository %s is leased by %s for %" PRId64 " ms more", s->name,
                            old.device, old.expires_ms - now);
    }
    if (found) {
        /* EXPIRED: end it the way a release would, so invariant 5 sees it. */
        ld_metrics_add(l->metrics, LD_C_EXPIRED, 1);
        rc = ld_db_lease_delete(l->db, s->name, old.id, &out->err);
        if (rc) return lease_failed(out, rc);
    }
    rc = ld_db_repo_get(l->db, s->name, &r, &out->err);
    if (rc) return lease_failed(out, rc);
    if (r.rewinding)
        return lease_refuse(out, LD_WHY_REWINDING, SS_ERR_TEMPORARY,
                            "repository %s is being rewound by its admin; try again shortly",
                            s->name);
    if (r.dirty) { /* invariant 5: never grant on a head that may be behind */
        rc = lease_reconcile_locked(l, s, NULL, out);
        if (rc) return rc;
        rc = ld_db_repo_get(l->db, s->name, &r, &out->err);
        if (rc) return lease_failed(out, rc);
        assert(!r.dirty);
    }
    memset(&row, 0, sizeof row);
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(row.id, sizeof row.id, rnd, sizeof rnd);
    snprintf(row.device, sizeof row.device, "%s", dev->name);
    row.granted_ms = now;
    row.expires_ms = now + ttl_ms;
    rc = ld_db_lease_grant(l->db, s->name, &row, &out->err);
    if (rc) return lease_failed(out, rc);
    /* Invariant 2: the token handed out is the persisted next one, above any before it. */
    assert(row.fencing == r.next_fencing && row.fencing >= 1);
    assert(!found || row.fencing > old.fencing);
    ld_metrics_add(l->metrics, LD_C_GRANTED, 1);
    out->head = r.head;
    fill_lease(l, &row, r.head, ret);
    return SS_OK;
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
    pthread_mutex_lock(&s->mu);
    rc = acquire_locked(l, s, dev, ttl_ms, ret, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD, later expiry. Caller holds s->mu. */
static ss_rc renew_locked(ld_leases *l, ld_slot *s, const ld_device *dev, const char *id,
                          uint64_t fencing, int64_t ttl_ms, ld_lease *ret, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ss_rc rc = current(l, s, dev, id, fencing, 0, &row, &r, out);
    if (rc) return rc;
    /* An expired lease cannot be renewed (current() refused it): once
     * expired it may already belong to another device (invariant 1). */
    row.expires_ms = lease_now_ms(l) + ttl_ms;
    rc = ld_db_lease_set_expiry(l->db, s->name, row.id, row.expires_ms, &out->err);
    if (rc) return lease_failed(out, rc);
    ld_metrics_add(l->metrics, LD_C_RENEWED, 1);
    fill_lease(l, &row, r.head, ret);
    return SS_OK;
}

ss_rc ld_lease_renew(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                     uint64_t fencing, int64_t ttl_ms, ld_lease *ret, ld_outcome *out)
{
    ld_slot *s = NULL;
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    rc = check_ttl(l, ttl_ms, out);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    rc = renew_locked(l, s, dev, id, fencing, ttl_ms, ret, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD or EXPIRED -> FREE, by the holder. Caller holds s->mu. */
static ss_rc release_locked(ld_leases *l, ld_slot *s, const ld_device *dev, const char *id,
                            uint64_t fencing, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ss_rc rc = current(l, s, dev, id, fencing, 1, &row, &r, out);
    if (rc) return rc;
    rc = ld_db_lease_delete(l->db, s->name, row.id, &out->err);
    if (rc) return lease_failed(out, rc);
    ld_metrics_add(l->metrics, LD_C_RELEASED, 1);
    return SS_OK;
}

ss_rc ld_lease_release(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                       uint64_t fencing, ld_outcome *out)
{
    ld_slot *s = NULL;
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = release_locked(l, s, dev, id, fencing, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD, with PUT URLs out for head+1 (recorded first: invariant 5). Caller holds s->mu. */
static ss_rc begin_put_locked(ld_leases *l, ld_slot *s, const ld_device *dev, const char *id,
                              uint64_t fencing, uint64_t *ret_seq, uint64_t *ret_head,
                              int64_t *ret_remaining_ms, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ss_rc rc = current(l, s, dev, id, fencing, 0, &row, &r, out);
    if (rc) return rc;
    /* Dirty under a live lease: the start-up reconciliation failed (bucket
     * down) or the repository moved. Never sign for a head that may be behind. */
    if (r.dirty) {
        rc = lease_reconcile_locked(l, s, NULL, out);
        if (rc) return rc;
        rc = ld_db_repo_get(l->db, s->name, &r, &out->err);
        if (rc) return lease_failed(out, rc);
    }
    *ret_seq = r.head + 1;
    *ret_head = r.head;
    *ret_remaining_ms = row.expires_ms - lease_now_ms(l);
    if (row.put_seq != r.head + 1) {
        rc = ld_db_lease_set_put_seq(l->db, s->name, row.id, r.head + 1, &out->err);
        if (rc) return lease_failed(out, rc);
    }
    return SS_OK;
}

ss_rc ld_lease_begin_put(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                         uint64_t fencing, uint64_t *ret_seq, uint64_t *ret_head,
                         int64_t *ret_remaining_ms, ld_outcome *out)
{
    ld_slot *s = NULL;
    ss_rc rc;
    lease_outcome_clear(out);
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = begin_put_locked(l, s, dev, id, fencing, ret_seq, ret_head, ret_remaining_ms, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD (head+1) or FREE (release). */
static ss_rc commit_locked(ld_leases *l, ld_slot *s, const ld_device *dev, const char *id,
                           uint64_t fencing, uint64_t seq, int release, ld_lease *ret,
                           int *ret_released, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ss_store_stat st;
    char key[LD_LOG_KEY_SIZE];
    ss_rc rc;

    rc = current(l, s, dev, id, fencing, 0, &row, &r, out);
    if (rc) return rc;
    if (seq == r.head && row.put_seq == seq) {
        /* Already in: this lease's earlier commit whose answer was lost, or
         * reconciliation after a restart found this lease's upload. The
         * lease held the sequence throughout, so the object is its own. */
        if (release) {
            rc = ld_db_lease_delete(l->db, s->name, row.id, &out->err);
            if (rc) return lease_failed(out, rc);
        }
        *ret_released = release;
        fill_lease(l, &row, r.head, ret);
        return SS_OK;
    }
    if (seq != r.head + 1) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return lease_refuse(out, LD_WHY_BAD_SEQ, SS_ERR_CONFLICT,
                            "commit of sequence %" PRIu64 " refused: head is %" PRIu64
                            ", only %" PRIu64 " can be committed",
                            seq, r.head, r.head + 1);
    }
    ld_log_key(seq, key);
    rc = ss_store_head(s->store, key, &st, &out->err);
    if (rc == SS_ERR_NOT_FOUND)
        return lease_refuse(out, LD_WHY_OBJECT_MISSING, SS_ERR_CONFLICT,
                            "commit of sequence %" PRIu64
                            " refused: %s is not in the bucket; upload "
                            "it first",
                            seq, key);
    if (rc) return lease_failed(out, rc);
    rc = ld_db_commit(l->db, s->name, row.id, seq, release, &st, &out->err);
    if (rc) return lease_failed(out, rc);
    ld_metrics_add(l->metrics, LD_C_COMMITS, 1);
    if (release) ld_metrics_add(l->metrics, LD_C_RELEASED, 1);
    out->head = seq;
    assert(seq == r.head + 1); /* invariant 3 */
    *ret_released = release;
    fill_lease(l, &row, seq, ret);
    return SS_OK;
}

ss_rc ld_lease_commit(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                      uint64_t fencing, uint64_t seq, int release, ld_lease *ret, int *ret_released,
                      ld_outcome *out)
{
    ld_slot *s = NULL;
    ss_rc rc;
    lease_outcome_clear(out);
    *ret_released = 0;
    s = lease_access_slot(l, dev, repo, 1, out);
    if (!s) return lease_access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = commit_locked(l, s, dev, id, fencing, seq, release, ret, ret_released, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
