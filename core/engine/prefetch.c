/*
 * prefetch: log objects fetched ahead, in parallel, for a pull or a walk
 * that then verifies them one by one in order (eng_prefetch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/*
 * Log objects are fetched in batches, in parallel (ss_xfer), then verified
 * one by one in order: a GET of a small object costs a round trip or more
 * (on RGW ~40 ms: headers and body come in two segments), so one at a time
 * the walk would be bound by latency. A batch is bounded in objects and
 * bytes; an object larger than PREFETCH_ONE is streamed alone.
 */
#define PREFETCH_BYTES (32u << 20)
#define PREFETCH_ONE (8u << 20)

static void got_log(void *ctx, ss_rc rc, const ss_err *err)
{
    eng_fetched *p = ctx;
    p->rc = rc;
    if (rc) snprintf(p->err.msg, sizeof p->err.msg, "%s", err ? err->msg : ss_strerror(rc));
}

ss_rc eng_prefetch(ss_xfer *x, const eng_log_list *l, size_t i, size_t end, eng_fetched *b,
                   size_t *ret_n, ss_err *err)
{
    size_t n = 0, bytes = 0;
    ss_rc rc = SS_OK;
    /* Size 0: unknown (a lockd listing) or empty; either way streamed, alone. */
    while (i + n < end && n < ENG_PREFETCH_MAX && l->sizes[i + n] &&
           l->sizes[i + n] <= PREFETCH_ONE && bytes + l->sizes[i + n] <= PREFETCH_BYTES) {
        char key[SS_KEY_NAME_MAX];
        eng_fetched *p = &b[n];
        memset(p, 0, sizeof *p);
        p->len = (size_t)l->sizes[i + n];
        p->buf = malloc(p->len ? p->len : 1);
        if (!p->buf) {
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(key, sizeof key, SS_KEY_LOG_FMT, l->seqs[i + n]);
        bytes += p->len;
        n++;
        rc = ss_xfer_get(x, key, 0, p->len, p->buf, got_log, p);
        if (rc) {
            rc = ss_fail(err, rc, "fetch %s: %s", key, ss_strerror(rc));
            break;
        }
    }
    ss_xfer_wait(x, NULL);                        /* each object's outcome is in b */
    if (!n && !rc) memset(&b[n++], 0, sizeof *b); /* too big or size unknown: streamed */
    *ret_n = n;
    return rc;
}
