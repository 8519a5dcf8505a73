/*
 * fetch: verified chunk fetches, shared by pull, restore and verify.
 *
 * Chunks are queued, then fetched in coalesced ranged GETs: sorted by pack
 * and offset, neighbours (or near neighbours) in one pack become one GET of
 * up to FETCH_RANGE_MAX bytes. A transaction's chunks sit back to back in
 * its packs, so a download costs about one GET per pack instead of one per
 * chunk (each GET costs a round trip, and some stores add tens of ms to
 * every small response). Every chunk is still opened and checked alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "fsio.h"
#include "seal.h"

#define FETCH_RANGE_MAX (8u << 20) /* bytes one coalesced GET may span */
#define FETCH_GAP_MAX (64u << 10)  /* unreferenced bytes read through rather than split */
#define FETCH_QUEUE_MAX 4096       /* queued chunks before a flush */

struct eng_fetch_job {
    char pack[SS_TXN_PACK_KEY_LEN + 1];
    ss_chunk_ref ref;
    uint64_t out_off;
};

typedef struct range_get {
    eng_fetch *x;
    struct eng_fetch_job *jobs; /* the chunks inside this range */
    size_t n;
    uint64_t off;
    uint8_t *buf;
} range_get;

/* Open one sealed chunk and write its plaintext; failures are recorded in x. */
static void finish_chunk(eng_fetch *x, const struct eng_fetch_job *j, const uint8_t *sealed,
                         ss_rc rc, const char *why)
{
    ss_err e = {{0}};
    void *plain = NULL;
    size_t len = 0;
    if (!rc)
        rc = ss_chunk_open(ss_repo_keys(x->f->repo), j->ref.id, sealed, j->ref.sealed_len,
                           j->ref.plain_len, &plain, &len, &e);
    else
        snprintf(e.msg, sizeof e.msg, "%s", why && *why ? why : ss_strerror(rc));
    if (!rc && len != j->ref.plain_len)
        rc = ss_fail(&e, SS_ERR_INTEGRITY, "a chunk has %zu bytes, expected %u", len,
                     j->ref.plain_len);
    if (!rc && x->out_fd >= 0 && ss_fs_pwrite_all(x->out_fd, plain, len, (off_t)j->out_off))
        rc = ss_fail(&e, SS_ERR_IO, "stage in .s3sync/tmp: %s", strerror(errno));
    if (!rc) {
        x->f->prog.bytes_done += len;
        eng_progress(x->f);
    }
    if (rc && x->bad) x->bad(x->ctx, j->pack, &j->ref, rc, e.msg);
    if (rc && !x->rc) {
        x->rc = rc;
        ss_fail(&x->err, rc, "%s at offset %" PRIu64 ": %s", j->pack, j->ref.offset, e.msg);
    }
    free(plain);
}

static void range_done(void *ctx, ss_rc rc, const ss_err *err)
{
    range_get *g = ctx;
    for (size_t i = 0; i < g->n; i++)
        finish_chunk(g->x, &g->jobs[i], g->buf ? g->buf + (g->jobs[i].ref.offset - g->off) : NULL,
                     rc, err ? err->msg : NULL);
    free(g->buf);
    free(g->jobs);
    free(g);
}

static int job_cmp(const void *a, const void *b)
{
    const struct eng_fetch_job *x = a, *y = b;
    int c = strcmp(x->pack, y->pack);
    if (c) return c;
    return x->ref.offset < y->ref.offset ? -1 : x->ref.offset > y->ref.offset;
}

/* How many jobs from v[0] one GET covers, and the range [*off, *off + *len). */
static size_t group(const struct eng_fetch_job *v, size_t n, uint64_t *off, uint64_t *len)
{
    uint64_t start = v[0].ref.offset, end = start + v[0].ref.sealed_len;
    size_t k = 1;
    for (; k < n && !strcmp(v[k].pack, v[0].pack); k++) {
        uint64_t o = v[k].ref.offset, e = o + v[k].ref.sealed_len;
        if (o > end + FETCH_GAP_MAX || (e > end ? e : end) - start > FETCH_RANGE_MAX) break;
        if (e > end) end = e;
    }
    *off = start;
    *len = end - start;
    return k;
}

static ss_rc flush(eng_fetch *x, ss_err *err)
{
    size_t i = 0;
    ss_rc rc = SS_OK;
    if (x->n_jobs) qsort(x->jobs, x->n_jobs, sizeof *x->jobs, job_cmp);
    while (!rc && i < x->n_jobs) {
        uint64_t off, len;
        size_t k = group(x->jobs + i, x->n_jobs - i, &off, &len);
        range_get *g = calloc(1, sizeof *g);
        if (!g || !(g->jobs = malloc(k * sizeof *g->jobs)) || !(g->buf = malloc(len))) {
            if (g) free(g->jobs);
            free(g);
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(g->jobs, x->jobs + i, k * sizeof *g->jobs);
        *g = (range_get){x, g->jobs, k, off, g->buf};
        rc = ss_xfer_get(x->xfer, x->jobs[i].pack, off, (size_t)len, g->buf, range_done, g);
        if (rc == SS_ERR_NOMEM) { /* not submitted: range_done will not run */
            free(g->buf);
            free(g->jobs);
            free(g);
            rc = ss_fail(err, rc, "out of memory");
        }
        i += k;
    }
    x->n_jobs = 0;
    return rc;
}

ss_rc eng_fetch_chunk(eng_fetch *x, const char *pack, const ss_chunk_ref *ref, uint64_t out_off,
                      ss_err *err)
{
    if (SS_ARRAY_GROW(x->jobs, x->n_jobs + 1, x->cap_jobs))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    struct eng_fetch_job *j = &x->jobs[x->n_jobs++];
    snprintf(j->pack, sizeof j->pack, "%s", pack);
    j->ref = *ref;
    j->out_off = out_off;
    return x->n_jobs >= FETCH_QUEUE_MAX ? flush(x, err) : SS_OK;
}

ss_rc eng_fetch_wait(eng_fetch *x, ss_err *err)
{
    ss_rc rc = flush(x, err), wrc = ss_xfer_wait(x->xfer, NULL);
    free(x->jobs);
    x->jobs = NULL;
    x->n_jobs = x->cap_jobs = 0;
    if (!rc && x->rc) rc = ss_fail(err, x->rc, "%s", x->err.msg);
    if (!rc && wrc) rc = ss_fail(err, wrc, "fetching data failed");
    return rc;
}
