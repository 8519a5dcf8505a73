/*
 * lease_repo.c: the repositories lease.c decides for: the set of them
 * (ld_leases), which device may use which (access first, existence second),
 * reconciliation of head with the bucket's log/ keys (invariants 3b and 5 of
 * lease.c), and head reads. lease_impl.h is what it shares with lease.c.
 */
#include "lease_impl.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TTL_MIN_MS_DEFAULT 1000 /* limits when the caller gives none */
#define TTL_MAX_MS_DEFAULT (3600 * 1000)

static int64_t real_now_ms(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const ld_clock ld_clock_real = {real_now_ms, NULL};

ss_rc lease_refuse(ld_outcome *out, ld_why why, ss_rc rc, const char *fmt, ...)
{
    va_list ap;
    out->why = why;
    va_start(ap, fmt);
    ss_vfail(&out->err, rc, fmt, ap);
    va_end(ap);
    return rc;
}

ss_rc lease_failed(ld_outcome *out, ss_rc rc)
{
    if (rc == SS_ERR_TEMPORARY || rc == SS_ERR_AUTH || rc == SS_ERR_STORE)
        out->why = LD_WHY_STORE;
    else
        out->why = LD_WHY_INTERNAL;
    return rc;
}

void lease_outcome_clear(ld_outcome *out)
{
    memset(out, 0, sizeof *out);
}

ss_rc ld_leases_new(ld_state *state, const ld_clock *clock, ld_metrics *metrics,
                    const ld_lease_limits *limits, ld_leases **ret, ss_err *err)
{
    ld_leases *l = calloc(1, sizeof *l);
    *ret = NULL;
    if (!l) return ss_fail(err, SS_ERR_NOMEM, "leases: out of memory");
    l->state = state;
    l->clock = clock ? *clock : ld_clock_real;
    l->metrics = metrics;
    l->limits = limits ? *limits : (ld_lease_limits){TTL_MIN_MS_DEFAULT, TTL_MAX_MS_DEFAULT};
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
    s = calloc(1, sizeof *s);
    if (!s) {
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
ld_slot *lease_access_slot(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                           ld_outcome *out)
{
    ld_slot *s = NULL;
    if (strcmp(dev->repo, repo)) {
        lease_refuse(out, LD_WHY_FOREIGN, SS_ERR_AUTH, "device %s may not use repository %s",
                     dev->name, repo);
        return NULL;
    }
    s = find(l, repo);
    if (!s) {
        lease_refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND, "repository %s is not served here",
                     repo);
        return NULL;
    }
    if (need_write && dev->read_only) {
        lease_refuse(out, LD_WHY_READ_ONLY, SS_ERR_AUTH, "device %s is read-only", dev->name);
        return NULL;
    }
    return s;
}

ss_rc lease_access_rc(const ld_outcome *out)
{
    return out->why == LD_WHY_NO_REPO ? SS_ERR_NOT_FOUND : SS_ERR_AUTH;
}

ss_rc ld_lease_access(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                      ld_outcome *out)
{
    lease_outcome_clear(out);
    if (lease_access_slot(l, dev, repo, need_write, out)) return SS_OK;
    return lease_access_rc(out);
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

/* What a reconciliation found, for its decision. */
typedef struct raise_ctx {
    scan sc;
    uint64_t dirty_gen; /* as read before the listing (ld_state.h S5) */
    uint64_t raised;    /* sequences head moved up by */
} raise_ctx;

/*
 * Head up to what the listing found (never down: invariant 3), dirty cleared
 * when no lease ended dirty since the listing began (S5). Not while a rewind
 * is under way: the bucket still holds what it is deleting.
 */
static ss_rc decide_raise(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    raise_ctx *r = ctx;
    (void)now;
    (void)err;
    r->raised = 0;
    *ret = LD_KEEP;
    if (rec->repo.rewinding) return SS_OK;
    if (r->sc.head > rec->repo.head) {
        r->raised = r->sc.head - rec->repo.head;
        rec->repo.head = r->sc.head;
        memcpy(rec->repo.head_etag, r->sc.st.etag, sizeof rec->repo.head_etag);
        rec->repo.head_size = r->sc.st.size;
        *ret = LD_WRITE;
    }
    if (rec->repo.dirty && rec->dirty_gen == r->dirty_gen) {
        rec->repo.dirty = 0;
        *ret = LD_WRITE;
    }
    return SS_OK;
}

ss_rc lease_reconcile_locked(ld_leases *l, ld_slot *s, uint64_t *ret_head, ld_outcome *out)
{
    ld_record rec;
    raise_ctx r = {.raised = 0};
    char after[LD_LOG_KEY_SIZE];
    ss_rc rc = ld_state_read(l->state, s->name, 1, &rec, &out->err);
    if (rc) return lease_failed(out, rc);
    if (rec.repo
            .rewinding) { /* the bucket still holds what the rewind is deleting: never count it */
        out->head = rec.repo.head;
        if (ret_head) *ret_head = rec.repo.head;
        return SS_OK;
    }
    r.sc.head = rec.repo.head;
    r.dirty_gen = rec.dirty_gen;
    ld_log_key(rec.repo.head, after);
    /* start-after the current head's key: an idle repository costs one
     * short page, however long its history. */
    rc = ss_store_list(s->store, "log/", after, scan_key, &r.sc, &out->err);
    if (rc) return lease_failed(out, rc);
    assert(r.sc.head >= rec.repo.head); /* invariant 3: never down */
    if (r.sc.head != rec.repo.head || rec.repo.dirty) {
        rc = ld_state_update(l->state, s->name, decide_raise, &r, &l->clock, NULL, &out->err);
        if (rc) return lease_failed(out, rc);
        ld_metrics_add(l->metrics, LD_C_RECONCILE, r.raised);
    }
    out->head = r.sc.head;
    if (ret_head) *ret_head = r.sc.head;
    return SS_OK;
}

ss_rc ld_lease_reconcile(ld_leases *l, const char *repo, uint64_t *ret_head, ld_outcome *out)
{
    ld_slot *s = find(l, repo);
    ss_rc rc;
    lease_outcome_clear(out);
    if (!s)
        return lease_refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND,
                            "repository %s is not served here", repo);
    pthread_mutex_lock(&s->mu);
    rc = lease_reconcile_locked(l, s, ret_head, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* --- reading ------------------------------------------------------------------ */

ss_rc ld_lease_head(ld_leases *l, const char *repo, uint64_t *ret_head, int *ret_leased,
                    ss_store_stat *ret_obj, ld_outcome *out)
{
    ld_record rec;
    ss_rc rc;
    lease_outcome_clear(out);
    if (!find(l, repo))
        return lease_refuse(out, LD_WHY_NO_REPO, SS_ERR_NOT_FOUND,
                            "repository %s is not served here", repo);
    rc = ld_state_read(l->state, repo, 0, &rec, &out->err);
    if (rc) return lease_failed(out, rc);
    *ret_head = out->head = rec.repo.head;
    if (ret_leased) *ret_leased = rec.leased && lease_now_ms(l) < rec.lease.expires_ms;
    if (ret_obj) {
        memset(ret_obj, 0, sizeof *ret_obj);
        memcpy(ret_obj->etag, rec.repo.head_etag, sizeof ret_obj->etag);
        ret_obj->size = rec.repo.head_size;
    }
    return SS_OK;
}
