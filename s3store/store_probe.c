/*
 * store_probe: what a store is checked for before it is trusted, each
 * failure naming what the store did instead. Create-only puts (init,
 * before direct mode rests on them); compare-and-swap (s3sync-lockd,
 * before it keeps its state in a store); what `s3sync doctor` asks beyond
 * sync: ListObjectsV2 paging followed key by key, and a lockd: store's steps
 * one at a time (store_lockd.c runs them).
 */
#include "store_impl.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGING_KEYS 3

typedef struct paging_seen {
    char prefix[48];
    unsigned n, in_order;
} paging_seen;

static int paging_key(void *ctx, const char *key, const ss_store_stat *st)
{
    paging_seen *p = ctx;
    char want[64];
    (void)st;
    snprintf(want, sizeof want, "%s%u", p->prefix, p->n + 1);
    if (!strcmp(key, want)) p->in_order++;
    p->n++;
    return p->n > 2 * PAGING_KEYS; /* a store handing the first page again would never end */
}

ss_rc ss_store_probe_paging(ss_store *store, ss_err *err)
{
    paging_seen seen = {.n = 0};
    uint8_t id[8];
    char hex[2 * sizeof id + 1], key[64];
    ss_err ignored;
    ss_rc rc = SS_OK;
    unsigned put = 0;
    if (store->ops->leased)
        return ss_fail(err, SS_ERR_INVALID, "%s: lockd answers log/ from its head", store->url);
    randombytes_buf(id, sizeof id);
    snprintf(seen.prefix, sizeof seen.prefix, "probe/%s/",
             sodium_bin2hex(hex, sizeof hex, id, sizeof id));
    for (; put < PAGING_KEYS && !rc; put++) {
        snprintf(key, sizeof key, "%s%u", seen.prefix, put + 1);
        rc = ss_store_put(store, key, "p", 1, 0, err);
    }
    if (!rc) {
        store->list_page = 1;
        rc = ss_store_list(store, seen.prefix, NULL, paging_key, &seen, err);
        store->list_page = 0;
    }
    for (unsigned i = 0; i < put; i++) { /* a leftover probe is harmless */
        snprintf(key, sizeof key, "%s%u", seen.prefix, i + 1);
        ss_store_delete(store, key, &ignored);
    }
    if (rc) return rc;
    if (seen.n != PAGING_KEYS || seen.in_order != PAGING_KEYS)
        return ss_fail(err, SS_ERR_STORE,
                       "%s: listing %s a key per page gave %u keys (%u in place) of %u", store->url,
                       seen.prefix, seen.n, seen.in_order, PAGING_KEYS);
    return SS_OK;
}

#define PROBE_KEY_SIZE 32

/* probe/<16 hex>: a key of the probe's own, which nothing else uses. */
static void probe_key(char key[PROBE_KEY_SIZE])
{
    uint8_t id[8];
    char hex[2 * sizeof id + 1];
    randombytes_buf(id, sizeof id);
    snprintf(key, PROBE_KEY_SIZE, "probe/%s", sodium_bin2hex(hex, sizeof hex, id, sizeof id));
}

ss_rc ss_store_probe_create_only(ss_store *store, ss_err *err)
{
    static const char body1[] = "s3sync create-only probe 1",
                      body2[] = "s3sync create-only probe 2";
    char key[PROBE_KEY_SIZE];
    ss_err ignored;
    ss_rc rc;
    if (store->ops->leased) return SS_OK;
    probe_key(key);
    rc = ss_store_put(store, key, body1, sizeof body1 - 1, SS_PUT_CREATE_ONLY, err);
    if (rc) return rc;
    rc = ss_store_put(store, key, body2, sizeof body2 - 1, SS_PUT_CREATE_ONLY, err);
    ss_store_delete(store, key, &ignored); /* a leftover probe is harmless */
    if (rc == SS_ERR_EXISTS) return SS_OK;
    if (rc) return rc;
    return ss_fail(err, SS_ERR_STORE,
                   "%s ignores If-None-Match: * (a second create of %s succeeded), so two "
                   "devices could both write one sequence: use a store that honours "
                   "conditional writes, or a lockd: store",
                   store->url, key);
}

/* The if-match probe's bodies, different so no write passes for another's echo. */
static const char *const body[] = {"s3sync if-match probe 1", "s3sync if-match probe 2",
                                   "s3sync if-match probe 3"};

/* The swaps of the if-match probe, on key created with body[0]. */
static ss_rc if_match_swaps(ss_store *store, const char *key, ss_err *err)
{
    ss_store_stat first;
    void *got = NULL;
    size_t got_len = 0;
    ss_rc rc;

    rc = ss_store_get_stat(store, key, 64, &got, &got_len, &first, err);
    if (rc) return rc;
    free(got);
    got = NULL;
    rc = ss_store_put_if(store, key, body[1], strlen(body[1]), first.etag, NULL, err);
    if (rc == SS_ERR_CHANGED)
        return ss_fail(err, SS_ERR_STORE,
                       "%s refused a write naming the current ETag of %s (%s): its If-Match "
                       "does not work as s3sync sends it",
                       store->url, key, first.etag);
    if (rc) return rc;
    rc = ss_store_put_if(store, key, body[2], strlen(body[2]), first.etag, NULL, err);
    if (rc != SS_ERR_CHANGED) {
        if (rc) return rc;
        return ss_fail(err, SS_ERR_STORE,
                       "%s ignores If-Match (a write naming a stale ETag of %s succeeded), so "
                       "two lockd replicas could hand out one fencing token: use a store that "
                       "honours conditional writes",
                       store->url, key);
    }
    rc = ss_store_get_stat(store, key, 64, &got, &got_len, &first, err);
    if (rc) return rc;
    if (got_len != strlen(body[1]) || memcmp(got, body[1], got_len))
        rc = ss_fail(err, SS_ERR_STORE,
                     "%s refused a write naming a stale ETag of %s but changed the object: it "
                     "does not honour If-Match",
                     store->url, key);
    free(got);
    return rc;
}

ss_rc ss_store_probe_if_match(ss_store *store, ss_err *err)
{
    char key[PROBE_KEY_SIZE];
    ss_err ignored;
    ss_rc rc;
    if (store->ops->leased)
        return ss_fail(err, SS_ERR_INVALID, "%s cannot compare-and-swap", store->url);
    probe_key(key);
    rc = ss_store_put(store, key, body[0], strlen(body[0]), SS_PUT_CREATE_ONLY, err);
    if (rc) return rc;
    rc = if_match_swaps(store, key, err);
    ss_store_delete(store, key, &ignored); /* a leftover probe is harmless */
    return rc;
}

int ss_store_is_lockd(const ss_store *store)
{
    return store->ops == &ss_store_lockd_ops;
}

ss_rc ss_store_lockd_check(ss_store *store, ss_lockd_check what, ss_err *err)
{
    if (!ss_store_is_lockd(store))
        return ss_fail(err, SS_ERR_INVALID, "%s is not a lockd: store", store->url);
    return ss_store_lockd_step(store, what, err);
}
