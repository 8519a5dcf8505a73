/*
 * rewind.c: `s3sync-lockd repo rewind REPO SEQ`, the admin's way out of a
 * repository wedged by a device that committed garbage at head+1 (a token
 * is enough for that; the master key is not needed): head moves back to SEQ
 * and the bucket loses what lies above it, so the devices continue from SEQ.
 * docs/PROTOCOL.md "Rewind" is the contract.
 *
 * Steps, each safe to repeat: a rewind that died is finished by running it
 * again.
 *  1. One transaction (ld_state_rewind_begin): head = SEQ, the lease ended,
 *     rewinding set, so a running server grants no lease (503 rewinding)
 *     and does not reconcile (which would count what is being deleted).
 *  2. Wait until every PUT URL issued for the repository expired
 *     (urls_until_ms): one still valid could put an object back above SEQ.
 *  3. Delete the log/, data/ and checkpoints/ objects of sequences above
 *     SEQ (a checkpoint above SEQ holds the state the rewind undoes).
 *  4. Clear rewinding (ld_state_rewind_end).
 */
#include "lockd.h"
#include "ld_state.h"
#include "array.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Presigned URLs expire by the bucket's clock: a margin for it running behind lockd's. */
#define CLOCK_MARGIN_MS 2000

/* The keys of one prefix above a sequence, to delete. */
typedef struct doomed {
    const char *prefix; /* "log/", "data/", "checkpoints/" */
    uint64_t above;
    char **keys;
    size_t n, cap;
    int failed; /* out of memory: the listing stopped */
} doomed;

/* PREFIX<20 digits>[-<16 hex> for data/] -> its sequence; 0 for any other shape. */
static uint64_t key_seq(const doomed *d, const char *key)
{
    const char *p = key + strlen(d->prefix), *end = p + LD_SEQ_DIGITS;
    uint64_t seq = 0;
    if (strncmp(key, d->prefix, strlen(d->prefix)) || strlen(p) < LD_SEQ_DIGITS) return 0;
    for (const char *q = p; q < end; q++) {
        if (*q < '0' || *q > '9' || seq > (UINT64_MAX - 9) / 10) return 0;
        seq = seq * 10 + (uint64_t)(*q - '0');
    }
    if (strcmp(d->prefix, "data/")) return *end ? 0 : seq;
    return *end == '-' && strlen(end + 1) == LD_ID_HEX &&
                   strspn(end + 1, "0123456789abcdef") == LD_ID_HEX
               ? seq
               : 0;
}

static int collect(void *ctx, const char *key, const ss_store_stat *st)
{
    doomed *d = ctx;
    (void)st;
    if (key_seq(d, key) <= d->above) return 0; /* not ours: left alone */
    if (SS_ARRAY_GROW(d->keys, d->n + 1, d->cap)) return d->failed = 1;
    d->keys[d->n] = strdup(key);
    if (!d->keys[d->n]) return d->failed = 1;
    d->n++;
    return 0;
}

static void doomed_free(doomed *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->keys[i]);
    free(d->keys);
    d->keys = NULL;
    d->n = d->cap = 0;
}

/* List d->prefix above d->above (the listing starts after the last key SEQ may own). */
static ss_rc list_above(ss_store *store, doomed *d, ss_err *err)
{
    char after[64];
    ss_rc rc;
    snprintf(after, sizeof after, "%s%0*" PRIu64 "%s", d->prefix, LD_SEQ_DIGITS, d->above,
             strcmp(d->prefix, "data/") ? "" : "-~");
    rc = ss_store_list(store, d->prefix, after, collect, d, err);
    if (rc) return rc;
    if (d->failed) return ss_fail(err, SS_ERR_NOMEM, "rewind: out of memory");
    return SS_OK;
}

static ss_rc delete_all(ss_store *store, const doomed *d, ss_err *err)
{
    for (size_t i = 0; i < d->n; i++) {
        ss_rc rc = ss_store_delete(store, d->keys[i], err);
        if (rc) return rc;
    }
    return SS_OK;
}

static void sleep_until(int64_t until_ms)
{
    for (;;) {
        int64_t left = until_ms - ld_clock_real.now_ms(ld_clock_real.ctx);
        struct timespec ts;
        if (left <= 0) return;
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        nanosleep(&ts, NULL);
    }
}

/* Step 2 and 3 for one prefix: its keys above seq, listed then deleted; *ret_count how many. */
static ss_rc clear_prefix(ss_store *store, const char *prefix, uint64_t seq, size_t *ret_count,
                          ss_err *err)
{
    doomed d = {.prefix = prefix, .above = seq};
    ss_rc rc = list_above(store, &d, err);
    if (rc) goto out;
    rc = delete_all(store, &d, err);
out:
    *ret_count = d.n;
    doomed_free(&d);
    return rc;
}

/* Steps 2 and 3 on the repository at url. counts[i]: what went of prefix i. */
static ss_rc clear_above(const ld_config *cfg, const ld_repo_row *r, uint64_t seq, FILE *out,
                         size_t counts[3], ss_err *err)
{
    static const char *const prefixes[3] = {"log/", "data/", "checkpoints/"};
    ss_store_opts o;
    ss_store *store = NULL;
    int64_t wait_ms = r->urls_until_ms + CLOCK_MARGIN_MS - ld_clock_real.now_ms(NULL);
    ss_rc rc;
    if (wait_ms > 0) {
        fprintf(out, "%s: waiting %.1f s for its last PUT URLs to expire\n", r->name,
                (double)wait_ms / 1000);
        fflush(out);
        sleep_until(r->urls_until_ms + CLOCK_MARGIN_MS);
    }
    ld_config_store_opts(cfg, &o);
    rc = ss_store_open(r->url, &o, &store, err);
    if (rc) goto out;
    for (size_t i = 0; i < 3; i++) {
        rc = clear_prefix(store, prefixes[i], seq, &counts[i], err);
        if (rc) goto out;
    }
out:
    ss_store_free(store);
    return rc;
}

ss_rc ld_rewind(const ld_config *cfg, ld_state *state, const char *repo, uint64_t seq, FILE *out,
                ss_err *err)
{
    ld_repo_row before, after;
    size_t counts[3] = {0};
    ss_rc rc = ld_state_rewind_begin(state, repo, seq, &ld_clock_real, &before, &after, err);
    if (rc) return rc;
    rc = clear_above(cfg, &after, seq, out, counts, err);
    if (rc) return rc; /* rewinding stays set: run the command again */
    rc = ld_state_rewind_end(state, repo, &ld_clock_real, err);
    if (rc) return rc;
    fprintf(out,
            "%s: head %" PRIu64 " -> %" PRIu64 "; deleted %zu log, %zu data and %zu checkpoint "
            "objects above %" PRIu64 "\n",
            repo, before.head, seq, counts[0], counts[1], counts[2], seq);
    return SS_OK;
}
