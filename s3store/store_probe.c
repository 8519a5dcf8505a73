/*
 * store_probe: what `s3sync doctor` asks of a store beyond what sync asks:
 * ListObjectsV2 paging followed key by key, and a lockd: store's steps
 * one at a time (store_lockd.c runs them), so each failure names its step.
 */
#include "store_impl.h"

#include <sodium.h>
#include <stdio.h>
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
