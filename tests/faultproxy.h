/*
 * faultproxy: a fault-injecting HTTP/1.1 proxy for the tests (test-faults).
 *
 * Listens on 127.0.0.1 (a free port) and relays each request byte for byte
 * to one upstream endpoint (RGW), keep-alive, one upstream connection per
 * client connection. Clients use the proxy as their endpoint
 * (AWS_ENDPOINT_URL=fp_url()): the Host header is passed unchanged, and RGW
 * checks SigV4 over the Host the client signed.
 *
 * Faults are chosen per request from a deterministic schedule: request n
 * (numbered in arrival order) gets the fault hash(seed, n) picks by the
 * configured rates. Which request is n depends on timing when requests run
 * in parallel, so a seed replays the schedule, not always the same victims.
 * Targeted faults: an fnmatch pattern for the request line (a PUT of any
 * key under log/, say) and a limit (the first one only). FAULTPROXY_LOG=1 prints each fault.
 * The two paging faults (a store whose ListObjectsV2 paging is broken) only
 * change a 200 answer to a GET ...list-type=2...: match them to "GET *list-type=2*".
 * FP_REWRITE hands a 2xx answer's body to the test's own function (a store
 * that lies in what it answers).
 */
#ifndef SS_FAULTPROXY_H
#define SS_FAULTPROXY_H

#include <stddef.h>
#include <stdint.h>

typedef enum fp_fault {
    FP_NONE,        /* relayed as is */
    FP_DROP_BEFORE, /* connection closed before the request is relayed */
    FP_DROP_AFTER,  /* request relayed and answered upstream, connection closed unanswered */
    FP_500,         /* 500 InternalError, not relayed */
    FP_503,         /* 503 SlowDown, not relayed */
    FP_STALL,       /* relayed after stall_ms */
    FP_TRUNCATE,    /* response body cut at half, connection closed */
    FP_OVERWRITE,   /* relayed; a 412 answered as 200: a store ignoring If-None-Match */
    FP_NO_TOKEN, /* relayed; a truncated listing loses NextContinuationToken (IsTruncated stays) */
    FP_FIRST_PAGE, /* relayed; a listing's later page answered with its first page again */
    FP_REWRITE,    /* relayed; a 2xx answer's body passed through rates->rewrite (a lying store) */
    FP_TIMEOUT,    /* not scheduled: upstream silent for timeout_ms, 504 answered */
    FP_KINDS
} fp_fault;

typedef struct fp_rates {
    unsigned permille[FP_KINDS]; /* per request, of each scheduled fault (not NONE, TIMEOUT) */
    unsigned stall_ms;           /* FP_STALL's delay */
    unsigned timeout_ms;         /* 0: wait for upstream forever; else answer 504 (a gateway) */
    const char *match;           /* NULL, or only request lines matching this fnmatch pattern */
    unsigned limit;              /* 0, or inject at most this many faults */
    /* FP_REWRITE: the answer's new body (malloc'ed, *ret_len bytes) from the one the store
     * sent, or NULL to relay it unchanged. Runs on the proxy's threads. */
    char *(*rewrite)(void *ctx, const char *body, size_t len, size_t *ret_len);
    void *rewrite_ctx;
    uint64_t bytes_per_s; /* 0, or the most body bytes relayed a second, all connections and
                             both ways together: a store behind a slow link (bench-peers) */
} fp_rates;

typedef struct faultproxy faultproxy;

/* Start in front of upstream ("http://host:port"); NULL on failure (message on stderr). */
faultproxy *fp_start(const char *upstream, uint64_t seed);
/* "http://127.0.0.1:PORT" (borrowed). */
const char *fp_url(const faultproxy *p);
/* New rates (NULL: pass-through, no timeout) and seed; the request numbering restarts at 0.
 * rates is copied; rates->match is borrowed and must outlive its use. */
void fp_set(faultproxy *p, const fp_rates *rates, uint64_t seed);
/* Faults injected so far, by kind ([FP_NONE]: requests relayed untouched). */
void fp_counts(faultproxy *p, uint64_t out[FP_KINDS]);
const char *fp_name(fp_fault f);
/* Close every connection and wait for the proxy's threads. */
void fp_stop(faultproxy *p);

#endif
