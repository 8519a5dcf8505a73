/*
 * metrics.c: the numbers behind GET /metrics, in Prometheus text format
 * 0.0.4: requests by route and status, one latency histogram per route, and
 * the lease and presign counters. One mutex: a counter update is a few
 * additions, far below the cost of the request that causes it.
 */
#include "lockd.h"
#include "ss_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statuses lockd answers with; anything else is counted as "other". */
static const unsigned statuses[] = {200, 201, 204, 400, 401, 403, 404,
                                    405, 409, 413, 500, 502, 503};
#define N_STATUS (sizeof statuses / sizeof *statuses + 1)

/* Upper bounds in seconds: 100 us (a head read) to 2.5 s (a slow bucket). */
static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
#define N_BOUNDS (sizeof bounds / sizeof *bounds)

static const char *const route_names[LD_R_COUNT] = {
    "healthz",       "metrics", "head",   "lease_acquire", "lease_renew",
    "lease_release", "presign", "commit", "writers",       "other"};

struct ld_metrics {
    pthread_mutex_t mu;
    uint64_t requests[LD_R_COUNT][N_STATUS];
    uint64_t buckets[LD_R_COUNT][N_BOUNDS + 1]; /* last: +Inf */
    double sum[LD_R_COUNT];
    uint64_t counters[LD_C_COUNT];
};

ss_rc ld_metrics_new(ld_metrics **ret, ss_err *err)
{
    ld_metrics *m = calloc(1, sizeof *m);
    *ret = NULL;
    if (!m) return ss_fail(err, SS_ERR_NOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    *ret = m;
    return SS_OK;
}

void ld_metrics_free(ld_metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void ld_metrics_add(ld_metrics *m, ld_counter c, uint64_t n)
{
    if (!m || c >= LD_C_COUNT) return;
    pthread_mutex_lock(&m->mu);
    m->counters[c] += n;
    pthread_mutex_unlock(&m->mu);
}

void ld_metrics_request(ld_metrics *m, ld_route route, unsigned status, double seconds)
{
    size_t si = N_STATUS - 1, bi = N_BOUNDS;
    if (!m || route >= LD_R_COUNT) return;
    for (size_t i = 0; i < N_STATUS - 1; i++)
        if (statuses[i] == status) si = i;
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (seconds <= bounds[i]) {
            bi = i;
            break;
        }
    pthread_mutex_lock(&m->mu);
    m->requests[route][si]++;
    m->buckets[route][bi]++;
    m->sum[route] += seconds;
    pthread_mutex_unlock(&m->mu);
}

/* The page being rendered; one failed print fails it (render returns NULL). */
typedef struct page {
    ss_buf b;
    int failed;
} page;

static void put(page *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(page *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!pg->failed && ss_buf_vprintf(&pg->b, fmt, ap)) pg->failed = 1;
    va_end(ap);
}

static const struct {
    ld_counter c;
    const char *name, *help;
} counter_doc[] = {
    {LD_C_GRANTED, "s3sync_lockd_leases_granted_total", "Leases granted."},
    {LD_C_EXPIRED, "s3sync_lockd_leases_expired_total", "Expired leases taken over."},
    {LD_C_REFUSED, "s3sync_lockd_leases_refused_total", "Acquires refused: lease held."},
    {LD_C_RELEASED, "s3sync_lockd_leases_released_total", "Leases released by their holder."},
    {LD_C_RENEWED, "s3sync_lockd_leases_renewed_total", "Lease renewals."},
    {LD_C_COMMITS, "s3sync_lockd_commits_total", "Commits that advanced head."},
    {LD_C_STALE, "s3sync_lockd_stale_total",
     "Requests refused for a stale lease, fencing token or sequence."},
    {LD_C_RECONCILE, "s3sync_lockd_reconciled_sequences_total",
     "Sequences head advanced by reconciliation with the bucket."},
};

char *ld_metrics_render(ld_metrics *m, uint64_t state_requests)
{
    page b = {{NULL, 0, 0}, 0};
    ld_metrics c;
    pthread_mutex_lock(&m->mu);
    memcpy(c.requests, m->requests, sizeof c.requests);
    memcpy(c.buckets, m->buckets, sizeof c.buckets);
    memcpy(c.sum, m->sum, sizeof c.sum);
    memcpy(c.counters, m->counters, sizeof c.counters);
    pthread_mutex_unlock(&m->mu);

    put(&b, "# HELP s3sync_lockd_requests_total HTTP requests by route and status.\n"
            "# TYPE s3sync_lockd_requests_total counter\n");
    for (int r = 0; r < LD_R_COUNT; r++)
        for (size_t s = 0; s < N_STATUS; s++) {
            if (!c.requests[r][s]) continue;
            if (s < N_STATUS - 1)
                put(&b, "s3sync_lockd_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                    route_names[r], statuses[s], (unsigned long long)c.requests[r][s]);
            else
                put(&b, "s3sync_lockd_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    route_names[r], (unsigned long long)c.requests[r][s]);
        }
    put(&b, "# HELP s3sync_lockd_request_duration_seconds Time to answer a request.\n"
            "# TYPE s3sync_lockd_request_duration_seconds histogram\n");
    for (int r = 0; r < LD_R_COUNT; r++) {
        uint64_t cum = 0;
        for (size_t i = 0; i <= N_BOUNDS; i++) {
            cum += c.buckets[r][i];
            if (i < N_BOUNDS)
                put(&b,
                    "s3sync_lockd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    route_names[r], bounds[i], (unsigned long long)cum);
            else
                put(&b,
                    "s3sync_lockd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                    route_names[r], (unsigned long long)cum);
        }
        put(&b, "s3sync_lockd_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
            c.sum[r]);
        put(&b, "s3sync_lockd_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
            (unsigned long long)cum);
    }
    for (size_t i = 0; i < sizeof counter_doc / sizeof *counter_doc; i++)
        put(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_doc[i].name,
            counter_doc[i].help, counter_doc[i].name, counter_doc[i].name,
            (unsigned long long)c.counters[counter_doc[i].c]);
    put(&b,
        "# HELP s3sync_lockd_presigned_urls_total Presigned URLs handed out, by operation.\n"
        "# TYPE s3sync_lockd_presigned_urls_total counter\n"
        "s3sync_lockd_presigned_urls_total{op=\"get\"} %llu\n"
        "s3sync_lockd_presigned_urls_total{op=\"put\"} %llu\n"
        "s3sync_lockd_presigned_urls_total{op=\"list\"} %llu\n",
        (unsigned long long)c.counters[LD_C_PRESIGN_GET],
        (unsigned long long)c.counters[LD_C_PRESIGN_PUT],
        (unsigned long long)c.counters[LD_C_PRESIGN_LIST]);
    put(&b,
        "# HELP s3sync_lockd_state_requests_total Bucket requests made for lockd's own state "
        "(0 on SQLite).\n"
        "# TYPE s3sync_lockd_state_requests_total counter\n"
        "s3sync_lockd_state_requests_total %llu\n",
        (unsigned long long)state_requests);
    if (b.failed) ss_buf_free(&b.b);
    return (char *)b.b.p; /* owned by the caller, as before: free() */
}
