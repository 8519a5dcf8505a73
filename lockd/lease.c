/*
 * lease.c: the write lease and head sequence of each repository. The only
 * code that decides who may write sequence N+1; db.c stores what it decides,
 * http.c only translates requests into these calls.
 *
 * Invariants (each asserted where it could break, in builds without NDEBUG
 * such as the CI's ASan build; each tested in tests/test-lockd.c):
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
 * repository and lease rows (ld_db_repo_state, usually from db.c's cache).
 */
#include "lockd.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ld_slot {
    char name[LD_NAME_MAX + 1];
    ss_store *store;
    pthread_mutex_t mu;
    struct ld_slot *next;
} ld_slot;

struct ld_leases {
    ld_db *db;
    ld_clock clock;
    ld_metrics *metrics;
    ld_lease_limits limits;
    ld_slot *slots; /* added before serving, never changed while serving */
};

static int64_t real_now_ms(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const ld_clock ld_clock_real = {real_now_ms, NULL};

static int64_t now_ms(const ld_leases *l)
{
    return l->clock.now_ms(l->clock.ctx);
}

static ss_rc refuse(ld_outcome *out, ld_why why, ss_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static ss_rc refuse(ld_outcome *out, ld_why why, ss_rc rc, const char *fmt, ...)
{
    va_list ap;
    out->why = why;
    va_start(ap, fmt);
    ss_vfail(&out->err, rc, fmt, ap);
    va_end(ap);
    return rc;
}

/* A database or store failure already described in out->err. */
static ss_rc failed(ld_outcome *out, ss_rc rc)
{
    if (rc == SS_ERR_TEMPORARY || rc == SS_ERR_AUTH || rc == SS_ERR_STORE)
        out->why = LD_WHY_STORE;
    else
        out->why = LD_WHY_INTERNAL;
    return rc;
}

static void outcome_clear(ld_outcome *out)
{
    memset(out, 0, sizeof *out);
}

ss_rc ld_leases_new(ld_db *db, const ld_clock *clock, ld_metrics *metrics,
                    const ld_lease_limits *limits, ld_leases **ret, ss_err *err)
{
    ld_leases *l = calloc(1, sizeof *l);
    *ret = NULL;
    if (!l) return ss_fail(err, SS_ERR_NOMEM, "leases: out of memory");
    l->db = db;
    l->clock = clock ? *clock : ld_clock_real;
    l->metrics = metrics;
    l->limits = limits ? *limits : (ld_lease_limits){1000, 3600 * 1000};
    *ret = l;
    return SS_OK;
}

void ld_leases_free(ld_leases *l)
{
    if (!l) return;
    while (l->slots) {
        ld_slot *s = l->slots;
        l->slots = s->next;
        ss_store_free(s->store);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
    free(l);
}

static ld_slot *find(ld_leases *l, const char *repo)
{
    for (ld_slot *s = l->slots; s; s = s->next)
        if (!strcmp(s->name, repo)) return s;
    return NULL;
}

ss_rc ld_leases_add_repo(ld_leases *l, const char *name, ss_store *store, ss_err *err)
{
    ld_slot *s = NULL;
    if (!ld_name_ok(name) || find(l, name)) {
        ss_store_free(store);
        return ss_fail(err, SS_ERR_INVALID, "repository '%s': bad or duplicate name", name);
    }
    if (!(s = calloc(1, sizeof *s))) {
        ss_store_free(store);
        return ss_fail(err, SS_ERR_NOMEM, "leases: out of memory");
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->store = store;
    pthread_mutex_init(&s->mu, NULL);
    s->next = l->slots;
    l->slots = s;
    return SS_OK;
}

ss_store *ld_leases_store(ld_leases *l, const char *repo)
{
    ld_slot *s = find(l, repo);
    return s ? s->store : NULL;
}

/* Access first, existence second: a device learns nothing about other
 * repositories, not even whether they exist. */
static ld_slot *access_slot(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                            ld_outcome *out)
{
    ld_slot *s;
    if (strcmp(dev->repo, repo)) {
        refuse(out, LD_WHY_FOREIGN, SS_ERR_AUTH, "device %s may not use repository %s", dev->name,
               repo);
        return NULL;
    }
    if (!(s = find(l, repo))) {
        refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND, "repository %s is not served here", repo);
        return NULL;
    }
    if (need_write && dev->read_only) {
        refuse(out, LD_WHY_READ_ONLY, SS_ERR_AUTH, "device %s is read-only", dev->name);
        return NULL;
    }
    return s;
}

static ss_rc access_rc(const ld_outcome *out)
{
    return out->why == LD_WHY_NO_REPO ? SS_ERR_NOT_FOUND : SS_ERR_AUTH;
}

ss_rc ld_lease_access(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                      ld_outcome *out)
{
    outcome_clear(out);
    if (access_slot(l, dev, repo, need_write, out)) return SS_OK;
    return access_rc(out);
}

/* --- reconciliation --------------------------------------------------------- */

typedef struct scan {
    uint64_t head;    /* highest consecutive sequence seen so far */
    ss_store_stat st; /* what the listing said of log/<head> */
} scan;

/* log/<20 digits> -> its sequence, or 0 for any other key. */
static uint64_t log_seq(const char *key)
{
    uint64_t v = 0;
    if (strncmp(key, "log/", 4) || strlen(key) != 4 + LD_SEQ_DIGITS) return 0;
    for (const char *p = key + 4; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

static int scan_key(void *ctx, const char *key, const ss_store_stat *st)
{
    scan *sc = ctx;
    uint64_t seq = log_seq(key);
    if (seq == 0) return 0;            /* not a sequence key: not ours to judge */
    if (seq != sc->head + 1) return 1; /* a gap: head stops before it */
    sc->head = seq;
    memset(&sc->st, 0, sizeof sc->st);
    if (st) sc->st = *st;
    return 0;
}

/* Caller holds s->mu. */
static ss_rc reconcile_locked(ld_leases *l, ld_slot *s, uint64_t *ret_head, ld_outcome *out)
{
    ld_repo_row r;
    char after[32];
    ss_rc rc = ld_db_repo_get(l->db, s->name, &r, &out->err);
    if (rc) return failed(out, rc);
    if (r.rewinding) { /* the bucket still holds what the rewind is deleting: never count it */
        out->head = r.head;
        if (ret_head) *ret_head = r.head;
        return SS_OK;
    }
    scan sc = {.head = r.head};
    ld_log_key(r.head, after);
    /* start-after the current head's key: an idle repository costs one
     * short page, however long its history. */
    if ((rc = ss_store_list(s->store, "log/", after, scan_key, &sc, &out->err)))
        return failed(out, rc);
    assert(sc.head >= r.head); /* invariant 3: never down */
    if (sc.head != r.head || r.dirty) {
        if ((rc = ld_db_repo_raise_head(l->db, s->name, sc.head, sc.head != r.head ? &sc.st : NULL,
                                        &out->err)))
            return failed(out, rc);
        ld_metrics_add(l->metrics, LD_C_RECONCILE, sc.head - r.head);
    }
    out->head = sc.head;
    if (ret_head) *ret_head = sc.head;
    return SS_OK;
}

ss_rc ld_lease_reconcile(ld_leases *l, const char *repo, uint64_t *ret_head, ld_outcome *out)
{
    ld_slot *s = find(l, repo);
    ss_rc rc;
    outcome_clear(out);
    if (!s)
        return refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND, "repository %s is not served here",
                      repo);
    pthread_mutex_lock(&s->mu);
    rc = reconcile_locked(l, s, ret_head, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* --- reading ------------------------------------------------------------------ */

ss_rc ld_lease_head(ld_leases *l, const char *repo, uint64_t *ret_head, int *ret_leased,
                    ss_store_stat *ret_obj, ld_outcome *out)
{
    ld_repo_row r;
    ld_lease_row lr;
    int found = 0;
    ss_rc rc;
    outcome_clear(out);
    if (!find(l, repo))
        return refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND, "repository %s is not served here",
                      repo);
    if ((rc = ld_db_repo_state(l->db, repo, &r, &lr, &found, &out->err))) return failed(out, rc);
    *ret_head = out->head = r.head;
    if (ret_leased) *ret_leased = found && now_ms(l) < lr.expires_ms;
    if (ret_obj) {
        memset(ret_obj, 0, sizeof *ret_obj);
        memcpy(ret_obj->etag, r.head_etag, sizeof ret_obj->etag);
        ret_obj->size = r.head_size;
    }
    return SS_OK;
}

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
    if ((rc = ld_db_repo_state(l->db, s->name, ret_repo, ret, &found, &out->err)))
        return failed(out, rc);
    out->head = ret_repo->head;
    /* A lease id is 128 random bits: comparing it in constant time keeps a
     * device of the same repository from finding a live id by timing. */
    if (!found || strlen(id) != LD_LEASE_ID_LEN ||
        sodium_memcmp(ret->id, id, LD_LEASE_ID_LEN) != 0 || strcmp(ret->device, dev->name)) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return refuse(out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT,
                      "lease %.40s is not the current lease of %s (released, expired and taken "
                      "over, or never granted)",
                      id, s->name);
    }
    if (fencing != ret->fencing) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return refuse(out, LD_WHY_STALE_FENCING, SS_ERR_CONFLICT,
                      "fencing token %" PRIu64 " is stale: lease %s holds %" PRIu64, fencing,
                      ret->id, ret->fencing);
    }
    if (!allow_expired && now_ms(l) >= ret->expires_ms) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return refuse(out, LD_WHY_STALE_LEASE, SS_ERR_CONFLICT, "lease %s of %s has expired",
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
    ret->expires_in_ms = row->expires_ms - now_ms(l);
    if (ret->expires_in_ms < 0) ret->expires_in_ms = 0;
}

static ss_rc check_ttl(const ld_leases *l, int64_t ttl_ms, ld_outcome *out)
{
    if (ttl_ms < l->limits.ttl_min_ms || ttl_ms > l->limits.ttl_max_ms)
        return refuse(out, LD_WHY_BAD_REQUEST, SS_ERR_INVALID,
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
    unsigned char rnd[16];
    int found = 0;
    int64_t now = now_ms(l);
    ss_rc rc;

    if ((rc = ld_db_lease_get(l->db, s->name, &old, &found, &out->err))) return failed(out, rc);
    if (found && now < old.expires_ms) {
        ld_metrics_add(l->metrics, LD_C_REFUSED, 1);
        out->retry_after_ms = old.expires_ms - now;
        snprintf(out->holder, sizeof out->holder, "%s", old.device);
        return refuse(out, LD_WHY_LEASE_HELD, SS_ERR_CONFLICT,
                      "repository %s is leased by %s for %" PRId64 " ms more", s->name, old.device,
                      old.expires_ms - now);
    }
    if (found) {
        /* EXPIRED: end it the way a release would, so invariant 5 sees it. */
        ld_metrics_add(l->metrics, LD_C_EXPIRED, 1);
        if ((rc = ld_db_lease_delete(l->db, s->name, old.id, &out->err))) return failed(out, rc);
    }
    if ((rc = ld_db_repo_get(l->db, s->name, &r, &out->err))) return failed(out, rc);
    if (r.rewinding)
        return refuse(out, LD_WHY_REWINDING, SS_ERR_TEMPORARY,
                      "repository %s is being rewound by its admin; try again shortly", s->name);
    if (r.dirty) { /* invariant 5: never grant on a head that may be behind */
        if ((rc = reconcile_locked(l, s, NULL, out))) return rc;
        if ((rc = ld_db_repo_get(l->db, s->name, &r, &out->err))) return failed(out, rc);
        assert(!r.dirty);
    }
    memset(&row, 0, sizeof row);
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(row.id, sizeof row.id, rnd, sizeof rnd);
    snprintf(row.device, sizeof row.device, "%s", dev->name);
    row.granted_ms = now;
    row.expires_ms = now + ttl_ms;
    if ((rc = ld_db_lease_grant(l->db, s->name, &row, &out->err))) return failed(out, rc);
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
    ld_slot *s;
    ss_rc rc;
    outcome_clear(out);
    if (!(s = access_slot(l, dev, repo, 1, out))) return access_rc(out);
    if ((rc = check_ttl(l, ttl_ms, out))) return rc;
    pthread_mutex_lock(&s->mu);
    rc = acquire_locked(l, s, dev, ttl_ms, ret, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD, later expiry. */
ss_rc ld_lease_renew(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                     uint64_t fencing, int64_t ttl_ms, ld_lease *ret, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ld_slot *s;
    ss_rc rc;
    outcome_clear(out);
    if (!(s = access_slot(l, dev, repo, 1, out))) return access_rc(out);
    if ((rc = check_ttl(l, ttl_ms, out))) return rc;
    pthread_mutex_lock(&s->mu);
    if (!(rc = current(l, s, dev, id, fencing, 0, &row, &r, out))) {
        /* An expired lease cannot be renewed (current() refused it): once
         * expired it may already belong to another device (invariant 1). */
        row.expires_ms = now_ms(l) + ttl_ms;
        if ((rc = ld_db_lease_set_expiry(l->db, s->name, row.id, row.expires_ms, &out->err)))
            failed(out, rc);
        else {
            ld_metrics_add(l->metrics, LD_C_RENEWED, 1);
            fill_lease(l, &row, r.head, ret);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD or EXPIRED -> FREE, by the holder. */
ss_rc ld_lease_release(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                       uint64_t fencing, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ld_slot *s;
    ss_rc rc;
    outcome_clear(out);
    if (!(s = access_slot(l, dev, repo, 1, out))) return access_rc(out);
    pthread_mutex_lock(&s->mu);
    if (!(rc = current(l, s, dev, id, fencing, 1, &row, &r, out))) {
        if ((rc = ld_db_lease_delete(l->db, s->name, row.id, &out->err)))
            failed(out, rc);
        else
            ld_metrics_add(l->metrics, LD_C_RELEASED, 1);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* HELD -> HELD, with PUT URLs out for head+1 (recorded first: invariant 5). */
ss_rc ld_lease_begin_put(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                         uint64_t fencing, uint64_t *ret_seq, uint64_t *ret_head,
                         int64_t *ret_remaining_ms, ld_outcome *out)
{
    ld_lease_row row;
    ld_repo_row r;
    ld_slot *s;
    ss_rc rc;
    outcome_clear(out);
    if (!(s = access_slot(l, dev, repo, 1, out))) return access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = current(l, s, dev, id, fencing, 0, &row, &r, out);
    /* Dirty under a live lease: the start-up reconciliation failed (bucket
     * down) or the repository moved. Never sign for a head that may be behind. */
    if (!rc && r.dirty && !(rc = reconcile_locked(l, s, NULL, out)) &&
        (rc = ld_db_repo_get(l->db, s->name, &r, &out->err)))
        failed(out, rc);
    if (!rc) {
        *ret_seq = r.head + 1;
        *ret_head = r.head;
        *ret_remaining_ms = row.expires_ms - now_ms(l);
        if (row.put_seq != r.head + 1 &&
            (rc = ld_db_lease_set_put_seq(l->db, s->name, row.id, r.head + 1, &out->err)))
            failed(out, rc);
    }
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
    char key[32];
    ss_rc rc;

    if ((rc = current(l, s, dev, id, fencing, 0, &row, &r, out))) return rc;
    if (seq == r.head && row.put_seq == seq) {
        /* Already in: this lease's earlier commit whose answer was lost, or
         * reconciliation after a restart found this lease's upload. The
         * lease held the sequence throughout, so the object is its own. */
        if (release && (rc = ld_db_lease_delete(l->db, s->name, row.id, &out->err)))
            return failed(out, rc);
        *ret_released = release;
        fill_lease(l, &row, r.head, ret);
        return SS_OK;
    }
    if (seq != r.head + 1) {
        ld_metrics_add(l->metrics, LD_C_STALE, 1);
        return refuse(out, LD_WHY_BAD_SEQ, SS_ERR_CONFLICT,
                      "commit of sequence %" PRIu64 " refused: head is %" PRIu64 ", only %" PRIu64
                      " can be committed",
                      seq, r.head, r.head + 1);
    }
    ld_log_key(seq, key);
    rc = ss_store_head(s->store, key, &st, &out->err);
    if (rc == SS_ERR_NOT_FOUND)
        return refuse(out, LD_WHY_OBJECT_MISSING, SS_ERR_CONFLICT,
                      "commit of sequence %" PRIu64 " refused: %s is not in the bucket; upload "
                      "it first",
                      seq, key);
    if (rc) return failed(out, rc);
    if ((rc = ld_db_commit(l->db, s->name, row.id, seq, release, &st, &out->err)))
        return failed(out, rc);
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
    ld_slot *s;
    ss_rc rc;
    outcome_clear(out);
    *ret_released = 0;
    if (!(s = access_slot(l, dev, repo, 1, out))) return access_rc(out);
    pthread_mutex_lock(&s->mu);
    rc = commit_locked(l, s, dev, id, fencing, seq, release, ret, ret_released, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
