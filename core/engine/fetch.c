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

/* Open one sealed chunk, check its length and write its plaintext at its offset (e: why not). */
static ss_rc open_chunk(eng_fetch *x, const struct eng_fetch_job *j, const uint8_t *sealed,
                        ss_err *e)
{
    void *plain = NULL; /* owned */
    size_t len = 0;
    const ss_keys *keys = ss_repo_keys(x->f->repo);
    ss_rc rc = ss_chunk_open(keys, ss_keys_epoch_at(keys, ss_pack_key_seq(j->pack)), j->ref.id,
                             sealed, j->ref.sealed_len, j->ref.plain_len, &plain, &len, e);
    if (rc) goto done;
    if (len != j->ref.plain_len) {
        rc = ss_fail(e, SS_ERR_INTEGRITY, "a chunk has %zu bytes, expected %u", len,
                     j->ref.plain_len);
        goto done;
    }
    if (x->put ? x->put(x->ctx, j->out_off, plain, len)
               : x->out_fd >= 0 && ss_fs_pwrite_all(x->out_fd, plain, len, (off_t)j->out_off)) {
        rc = ss_fail(e, SS_ERR_IO, "stage in .s3sync/tmp: %s", strerror(errno));
        goto done;
    }
    x->f->prog.bytes_done += len;
    if (x->landed) x->landed(x->ctx, j->out_off, len);
    eng_progress(x->f);
done:
    if (rc == SS_ERR_INTEGRITY) eng_peers_suspect(x->f, j->pack, j->ref.offset); /* peers.c */
    free(plain);
    return rc;
}

/* One chunk of a range GET that ended with rc (why: its message); failures are recorded in x. */
static void finish_chunk(eng_fetch *x, const struct eng_fetch_job *j, const uint8_t *sealed,
                         ss_rc rc, const char *why)
{
    ss_err e = {{0}};
    if (rc)
        snprintf(e.msg, sizeof e.msg, "%s", why && *why ? why : ss_strerror(rc));
    else
        rc = open_chunk(x, j, sealed, &e);
    if (rc == SS_OK) return; /* opened and written */
    if (x->bad) x->bad(x->ctx, j->pack, &j->ref, rc, e.msg);
    if (x->rc) return; /* the first failure is the one told */
    x->rc = rc;
    ss_fail(&x->err, rc, "%s at offset %" PRIu64 ": %s", j->pack, j->ref.offset, e.msg);
}

static void range_free(range_get *g)
{
    free(g->buf);
    free(g->jobs);
    free(g);
}

/* A range GET of len bytes at off for the n jobs (copied); NULL when out of memory. */
static range_get *range_new(eng_fetch *x, const struct eng_fetch_job *jobs, size_t n, uint64_t off,
                            uint64_t len)
{
    range_get *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    *g = (range_get){.x = x, .n = n, .off = off};
    g->jobs = malloc(n * sizeof *g->jobs);
    g->buf = malloc((size_t)len);
    if (!g->jobs || !g->buf) {
        range_free(g);
        return NULL;
    }
    memcpy(g->jobs, jobs, n * sizeof *g->jobs);
    return g;
}

static void range_done(void *ctx, ss_rc rc, const ss_err *err)
{
    range_get *g = ctx;
    for (size_t i = 0; i < g->n; i++)
        finish_chunk(g->x, &g->jobs[i], g->buf ? g->buf + (g->jobs[i].ref.offset - g->off) : NULL,
                     rc, err ? err->msg : NULL);
    range_free(g);
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
    ss_rc rc = SS_OK;
    if (x->n_jobs) qsort(x->jobs, x->n_jobs, sizeof *x->jobs, job_cmp);
    for (size_t i = 0, k; i < x->n_jobs; i += k) {
        uint64_t off, len;
        range_get *g;
        k = group(x->jobs + i, x->n_jobs - i, &off, &len);
        g = range_new(x, x->jobs + i, k, off, len);
        if (!g) {
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
            goto done;
        }
        rc = ss_xfer_get(x->xfer, x->jobs[i].pack, off, (size_t)len, g->buf, range_done, g);
        if (rc == SS_ERR_NOMEM) { /* not submitted: range_done will not run */
            range_free(g);
            rc = ss_fail(err, rc, "out of memory");
        }
        if (rc) goto done;
    }
done:
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
    ss_rc rc = flush(x, err);
    ss_rc wrc = ss_xfer_wait(x->xfer, NULL); /* after a failure too: buffers in flight */
    free(x->jobs);
    x->jobs = NULL;
    x->n_jobs = x->cap_jobs = 0;
    if (rc) return rc;
    if (x->rc) return ss_fail(err, x->rc, "%s", x->err.msg);
    if (wrc) return ss_fail(err, wrc, "fetching data failed");
    return SS_OK;
}
