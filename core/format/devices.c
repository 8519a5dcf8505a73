/*
 * devices: the device table and the rules of device entries and
 * signatures (see devices.h; docs/FORMAT.md "Devices and signatures").
 *
 * The table is an array sorted by device id, at most SS_TXN_MAX_DEVICES
 * long: binary search to find, memmove to insert. A check never changes
 * the table; apply does, after the whole transaction verified.
 */
#include "devices.h"

#include "le.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

struct ss_devices {
    ss_device *v;
    size_t n, cap;
    uint8_t mode;        /* SS_ENROLL_OPEN or SS_ENROLL_APPROVE */
    uint64_t policy_seq; /* the transaction that set it; 0: never set (open) */
};

ss_rc ss_devices_new(ss_devices **ret_devices, ss_err *err)
{
    *ret_devices = calloc(1, sizeof **ret_devices);
    return *ret_devices ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
}

void ss_devices_free(ss_devices *d)
{
    if (!d) return;
    free(d->v);
    free(d);
}

ss_rc ss_devices_copy(const ss_devices *d, ss_devices **ret_copy, ss_err *err)
{
    ss_devices *c = NULL;
    ss_rc rc = ss_devices_new(&c, err);
    *ret_copy = NULL;
    if (rc) return rc;
    if (d->n && !(c->v = malloc(d->n * sizeof *c->v))) {
        ss_devices_free(c);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (d->n) memcpy(c->v, d->v, d->n * sizeof *c->v);
    c->n = c->cap = d->n;
    c->mode = d->mode;
    c->policy_seq = d->policy_seq;
    *ret_copy = c;
    return SS_OK;
}

size_t ss_devices_count(const ss_devices *d)
{
    return d->n;
}

const ss_device *ss_devices_at(const ss_devices *d, size_t i)
{
    return i < d->n ? &d->v[i] : NULL;
}

/* Index of id, or where it would go (*ret_found 0). */
static size_t locate(const ss_devices *d, const uint8_t id[SS_TXN_DEVICE_ID_BYTES], int *ret_found)
{
    size_t lo = 0, hi = d->n;
    *ret_found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(d->v[mid].id, id, SS_TXN_DEVICE_ID_BYTES);
        if (c == 0) {
            *ret_found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ss_device *ss_devices_find(const ss_devices *d, const uint8_t id[SS_TXN_DEVICE_ID_BYTES])
{
    int found;
    size_t i = locate(d, id, &found);
    return found ? &d->v[i] : NULL;
}

ss_rc ss_devices_put(ss_devices *d, const ss_device *dev, ss_err *err)
{
    int found;
    size_t i = locate(d, dev->id, &found);
    if (found) {
        d->v[i] = *dev;
        return SS_OK;
    }
    if (d->n == SS_DEVICES_MAX)
        return ss_fail(err, SS_ERR_INVALID, "the device table is full (%u devices)",
                       SS_DEVICES_MAX);
    if (SS_ARRAY_GROW(d->v, d->n + 1, d->cap)) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    memmove(d->v + i + 1, d->v + i, (d->n - i) * sizeof *d->v);
    d->v[i] = *dev;
    d->n++;
    return SS_OK;
}

void ss_device_id_of(const uint8_t pk[SS_DEVICE_PK_BYTES], uint8_t ret_id[SS_TXN_DEVICE_ID_BYTES])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, SS_TXN_DEVICE_ID_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)SS_DEVICE_ID_LABEL, strlen(SS_DEVICE_ID_LABEL));
    crypto_generichash_update(&h, pk, SS_DEVICE_PK_BYTES);
    crypto_generichash_final(&h, ret_id, SS_TXN_DEVICE_ID_BYTES);
}

void ss_device_id_short(const uint8_t id[SS_TXN_DEVICE_ID_BYTES], char out[17])
{
    sodium_bin2hex(out, 17, id, 8);
}

void ss_devices_hash(const ss_devices *d, uint8_t out[SS_DEVICES_HASH_BYTES])
{
    crypto_generichash_state h;
    uint8_t b[8];
    crypto_generichash_init(&h, NULL, 0, SS_DEVICES_HASH_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)SS_DEVICES_HASH_LABEL,
                              sizeof SS_DEVICES_HASH_LABEL - 1);
    ss_le_put32(b, (uint32_t)d->n);
    crypto_generichash_update(&h, b, 4);
    for (size_t i = 0; i < d->n; i++) { /* kept in id order */
        crypto_generichash_update(&h, d->v[i].id, SS_TXN_DEVICE_ID_BYTES);
        crypto_generichash_update(&h, d->v[i].pk, SS_DEVICE_PK_BYTES);
        ss_le_put64(b, d->v[i].enrolled);
        crypto_generichash_update(&h, b, 8);
        ss_le_put64(b, d->v[i].revoked);
        crypto_generichash_update(&h, b, 8);
    }
    if (d->policy_seq) { /* a table that never had a policy hashes as before policies */
        crypto_generichash_update(&h, &d->mode, 1);
        ss_le_put64(b, d->policy_seq);
        crypto_generichash_update(&h, b, 8);
    }
    crypto_generichash_final(&h, out, SS_DEVICES_HASH_BYTES);
}

void ss_devices_sig_message(uint8_t out[SS_SIG_MESSAGE_BYTES],
                            const uint8_t repo_id[SS_REPO_ID_BYTES], int kind, uint64_t seq,
                            const uint8_t chain[SS_CHAIN_BYTES],
                            const uint8_t digest[SS_SIG_DIGEST_BYTES],
                            const uint8_t table_hash[SS_DEVICES_HASH_BYTES])
{
    uint8_t *p = out;
    memcpy(p, SS_SIG_LABEL, strlen(SS_SIG_LABEL));
    p += strlen(SS_SIG_LABEL);
    memcpy(p, repo_id, SS_REPO_ID_BYTES);
    p += SS_REPO_ID_BYTES;
    *p++ = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(seq >> (8 * i));
    memcpy(p, chain, SS_CHAIN_BYTES);
    memcpy(p + SS_CHAIN_BYTES, digest, SS_SIG_DIGEST_BYTES);
    memcpy(p + SS_CHAIN_BYTES + SS_SIG_DIGEST_BYTES, table_hash, SS_DEVICES_HASH_BYTES);
}

/* "NAME (0123456789abcdef)" of a device, for messages. */
static const char *who(const ss_device *dev, const uint8_t id[SS_TXN_DEVICE_ID_BYTES], char *buf,
                       size_t cap)
{
    char hex[17];
    ss_device_id_short(id, hex);
    if (dev && dev->name[0])
        snprintf(buf, cap, "%s (%s)", dev->name, hex);
    else
        snprintf(buf, cap, "%s", hex);
    return buf;
}

static int verifies(const uint8_t repo_id[SS_REPO_ID_BYTES], int kind, uint64_t seq,
                    const uint8_t chain[SS_CHAIN_BYTES], const uint8_t digest[SS_SIG_DIGEST_BYTES],
                    const ss_devices *after, const uint8_t sig[SS_TXN_SIG_BYTES],
                    const uint8_t pk[SS_DEVICE_PK_BYTES])
{
    uint8_t msg[SS_SIG_MESSAGE_BYTES], table[SS_DEVICES_HASH_BYTES];
    ss_devices_hash(after, table);
    ss_devices_sig_message(msg, repo_id, kind, seq, chain, digest, table);
    return crypto_sign_verify_detached(sig, msg, sizeof msg, pk) == 0;
}

/* An enroll entry's id is its key's. */
static int id_matches_key(const ss_txn_device *e)
{
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
    ss_device_id_of(e->pk, id);
    return sodium_memcmp(id, e->id, sizeof id) == 0;
}

/* One entry of log transaction h against the table before it. */
static ss_rc check_entry(const ss_devices *d, const ss_txn_header *h, const ss_txn_device *e,
                         ss_err *err)
{
    const ss_device *known = ss_devices_find(d, e->id);
    char name[300];
    if (e->seq != h->seq)
        return ss_fail(err, SS_ERR_INTEGRITY, "device entry at sequence %" PRIu64 ", not its own",
                       e->seq);
    if (e->type == SS_TXN_DEV_POLICY) {
        if (e->mode == d->mode)
            return ss_fail(err, SS_ERR_INTEGRITY, "sets the enrollment policy it already has");
        return SS_OK;
    }
    if (e->type == SS_TXN_DEV_REVOKE) {
        if (!known)
            return ss_fail(err, SS_ERR_INTEGRITY, "revokes device %s, which is not enrolled",
                           who(NULL, e->id, name, sizeof name));
        if (known->revoked)
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "revokes device %s again (revoked at %" PRIu64 ")",
                           who(known, e->id, name, sizeof name), known->revoked);
        return SS_OK;
    }
    if (!id_matches_key(e))
        return ss_fail(err, SS_ERR_INTEGRITY, "enrolls a key under another device's id");
    if (d->mode == SS_ENROLL_APPROVE) { /* an enrolled device approves another */
        const ss_device *signer = ss_devices_find(d, h->device_id);
        if (!memcmp(e->id, h->device_id, SS_TXN_DEVICE_ID_BYTES))
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "enrolls itself, where an enrolled device must approve it");
        if (!signer || signer->revoked)
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "approves device %s without being enrolled itself",
                           who(NULL, e->id, name, sizeof name));
    } else if (memcmp(e->id, h->device_id, SS_TXN_DEVICE_ID_BYTES)) {
        return ss_fail(err, SS_ERR_INTEGRITY, "enrolls device %s, which is not its signer",
                       who(NULL, e->id, name, sizeof name));
    } else if (e->name_len != h->device_name_len || memcmp(e->name, h->device_name, e->name_len)) {
        return ss_fail(err, SS_ERR_INTEGRITY, "enrolls its device under another name");
    }
    if (!known && ss_devices_count(d) >= SS_DEVICES_MAX)
        return ss_fail(err, SS_ERR_INTEGRITY, "enrolls a device into a full table (%u devices)",
                       SS_DEVICES_MAX);
    if (known)
        return ss_fail(err, SS_ERR_INTEGRITY, "enrolls device %s again (%s at %" PRIu64 ")",
                       who(known, e->id, name, sizeof name),
                       known->revoked ? "revoked" : "enrolled",
                       known->revoked ? known->revoked : known->enrolled);
    return SS_OK;
}

ss_rc ss_devices_check_log(const ss_devices *d, const uint8_t repo_id[SS_REPO_ID_BYTES],
                           const ss_txn_header *h, const uint8_t prev_chain[SS_CHAIN_BYTES],
                           const uint8_t digest[SS_SIG_DIGEST_BYTES],
                           const uint8_t sig[SS_TXN_SIG_BYTES], ss_devices **ret_after, ss_err *err)
{
    const ss_device *signer = ss_devices_find(d, h->device_id);
    const uint8_t *pk = signer ? signer->pk : NULL;
    ss_devices *after = NULL; /* owned until handed out */
    char name[300];
    ss_rc rc;
    if (ret_after) *ret_after = NULL;
    for (uint32_t i = 0; i < h->n_devices; i++) {
        rc = check_entry(d, h, &h->devices[i], err);
        if (rc) return rc;
        if (h->devices[i].type == SS_TXN_DEV_ENROLL &&
            !memcmp(h->devices[i].id, h->device_id, SS_TXN_DEVICE_ID_BYTES))
            pk = h->devices[i].pk; /* the signer enrolling itself */
    }
    if (!pk)
        return ss_fail(err, SS_ERR_INTEGRITY, "signed by device %s, which is not enrolled",
                       who(NULL, h->device_id, name, sizeof name));
    if (signer && signer->revoked && signer->revoked < h->seq)
        return ss_fail(err, SS_ERR_INTEGRITY, "signed by device %s, revoked at sequence %" PRIu64,
                       who(signer, h->device_id, name, sizeof name), signer->revoked);
    rc = ss_devices_copy(d, &after, err);
    if (rc) return rc;
    rc = ss_devices_apply_log(after, h, err);
    if (!rc && !verifies(repo_id, SS_FRAME_KIND_LOG, h->seq, prev_chain, digest, after, sig, pk))
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "its signature does not verify with the key of device %s (or over another "
                     "device table than this one after it)",
                     who(signer, h->device_id, name, sizeof name));
    if (!rc && ret_after) {
        *ret_after = after;
        after = NULL;
    }
    ss_devices_free(after);
    return rc;
}

/* Entry e of the transaction at h->seq is what the table after it shows. */
static int shown(const ss_devices *after, const ss_txn_header *h, const ss_txn_device *e)
{
    const ss_device *dev = ss_devices_find(after, e->id);
    if (e->type == SS_TXN_DEV_POLICY) return after->mode == e->mode && after->policy_seq == h->seq;
    if (!dev) return 0;
    if (e->type == SS_TXN_DEV_REVOKE) return dev->revoked == h->seq;
    return dev->enrolled == h->seq && !memcmp(dev->pk, e->pk, SS_DEVICE_PK_BYTES);
}

ss_rc ss_devices_check_endorsement(const ss_devices *after, const uint8_t repo_id[SS_REPO_ID_BYTES],
                                   const ss_txn_header *h, const uint8_t prev_chain[SS_CHAIN_BYTES],
                                   const uint8_t digest[SS_SIG_DIGEST_BYTES],
                                   const uint8_t sig[SS_TXN_SIG_BYTES], ss_err *err)
{
    const ss_device *signer = ss_devices_find(after, h->device_id);
    char name[300];
    if (!signer || signer->enrolled > h->seq || (signer->revoked && signer->revoked < h->seq))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "signed by device %s, which the checkpoint's table does not show enrolled "
                       "at sequence %" PRIu64,
                       who(signer, h->device_id, name, sizeof name), h->seq);
    for (uint32_t i = 0; i < h->n_devices; i++)
        if (!shown(after, h, &h->devices[i]))
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "its device entries are not what the checkpoint's table shows");
    if (!verifies(repo_id, SS_FRAME_KIND_LOG, h->seq, prev_chain, digest, after, sig, signer->pk))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "device %s did not sign it over the checkpoint's device table",
                       who(signer, h->device_id, name, sizeof name));
    return SS_OK;
}

ss_rc ss_devices_apply_log(ss_devices *d, const ss_txn_header *h, ss_err *err)
{
    const ss_device *known;
    ss_device dev;
    ss_rc rc;
    for (uint32_t i = 0; i < h->n_devices; i++) {
        const ss_txn_device *e = &h->devices[i];
        if (e->type == SS_TXN_DEV_POLICY) {
            d->mode = e->mode;
            d->policy_seq = e->seq;
            continue;
        }
        if (e->type == SS_TXN_DEV_ENROLL) {
            dev = (ss_device){.enrolled = e->seq};
            memcpy(dev.id, e->id, sizeof dev.id);
            memcpy(dev.pk, e->pk, sizeof dev.pk);
            memcpy(dev.name, e->name, e->name_len + 1); /* an approved device's, until it signs */
        } else if ((known = ss_devices_find(d, e->id))) {
            dev = *known;
            dev.revoked = e->seq;
        } else {
            continue; /* refused by the check; apply only follows it */
        }
        rc = ss_devices_put(d, &dev, err);
        if (rc) return rc;
    }
    if (!(known = ss_devices_find(d, h->device_id))) return SS_OK;
    dev = *known;
    dev.last = h->seq;
    if (h->device_name_len) memcpy(dev.name, h->device_name, h->device_name_len);
    dev.name[h->device_name_len] = '\0';
    return ss_devices_put(d, &dev, err);
}

/* The table a checkpoint's entries describe, each checked on its own and against its device's. */
static ss_rc table_of(const ss_txn_header *h, ss_devices *t, ss_err *err)
{
    char name[300];
    ss_rc rc;
    for (uint32_t i = 0; i < h->n_devices; i++) {
        const ss_txn_device *e = &h->devices[i];
        ss_device dev = {0};
        if (e->type == SS_TXN_DEV_POLICY) {
            t->mode = e->mode;
            t->policy_seq = e->seq;
            continue;
        }
        if (e->type == SS_TXN_DEV_REVOKE) {
            const ss_device *known = ss_devices_find(t, e->id);
            if (!known)
                return ss_fail(err, SS_ERR_INTEGRITY, "revokes device %s, which it does not enroll",
                               who(NULL, e->id, name, sizeof name));
            dev = *known;
            dev.revoked = e->seq;
        } else {
            if (!id_matches_key(e))
                return ss_fail(err, SS_ERR_INTEGRITY, "enrolls a key under another device's id");
            memcpy(dev.id, e->id, sizeof dev.id);
            memcpy(dev.pk, e->pk, sizeof dev.pk);
            memcpy(dev.name, e->name, e->name_len + 1);
            dev.enrolled = e->seq;
        }
        rc = ss_devices_put(t, &dev, err);
        if (rc) return rc;
    }
    return SS_OK;
}

ss_rc ss_devices_from_checkpoint(const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_txn_header *h,
                                 const uint8_t chain[SS_CHAIN_BYTES],
                                 const uint8_t digest[SS_SIG_DIGEST_BYTES],
                                 const uint8_t sig[SS_TXN_SIG_BYTES], ss_devices **ret_table,
                                 ss_err *err)
{
    ss_devices *t = NULL; /* owned */
    const ss_device *signer;
    char name[300];
    ss_rc rc;
    *ret_table = NULL;
    rc = ss_devices_new(&t, err);
    if (rc) goto fail;
    rc = table_of(h, t, err);
    if (rc) goto fail;
    signer = ss_devices_find(t, h->device_id);
    if (!signer) {
        rc = ss_fail(err, SS_ERR_INTEGRITY, "signed by device %s, which it does not enroll",
                     who(NULL, h->device_id, name, sizeof name));
    } else if (signer->revoked) {
        rc = ss_fail(err, SS_ERR_INTEGRITY, "signed by device %s, revoked at sequence %" PRIu64,
                     who(signer, h->device_id, name, sizeof name), signer->revoked);
    } else if (!verifies(repo_id, SS_FRAME_KIND_CHECKPOINT, h->seq, chain, digest, t, sig,
                         signer->pk)) {
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "its signature does not verify with the key of device %s",
                     who(signer, h->device_id, name, sizeof name));
    }
    if (rc) goto fail;
    *ret_table = t;
    return SS_OK;
fail:
    ss_devices_free(t);
    return rc;
}

ss_rc ss_devices_entries(const ss_devices *d, ss_txn_device **ret, uint32_t *ret_n, ss_err *err)
{
    ss_txn_device *v = calloc(2 * d->n + 2, sizeof *v);
    uint32_t n = 0;
    *ret = NULL;
    *ret_n = 0;
    if (!v) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (d->policy_seq) /* its id is all zero: first in (id, type) order */
        v[n++] = (ss_txn_device){.type = SS_TXN_DEV_POLICY, .mode = d->mode, .seq = d->policy_seq};
    for (size_t i = 0; i < d->n; i++) {
        const ss_device *dev = &d->v[i];
        ss_txn_device *e = &v[n++];
        e->type = SS_TXN_DEV_ENROLL;
        memcpy(e->id, dev->id, sizeof e->id);
        e->seq = dev->enrolled;
        memcpy(e->pk, dev->pk, sizeof e->pk);
        e->name_len = strlen(dev->name);
        memcpy(e->name, dev->name, e->name_len + 1);
        if (!dev->revoked) continue;
        e = &v[n++];
        e->type = SS_TXN_DEV_REVOKE;
        memcpy(e->id, dev->id, sizeof e->id);
        e->seq = dev->revoked;
    }
    *ret = v;
    *ret_n = n;
    return SS_OK;
}

int ss_devices_differ(const ss_devices *older, const ss_devices *newer, int exact, char *why,
                      size_t cap)
{
    char name[300];
    for (size_t i = 0; i < older->n; i++) {
        const ss_device *a = &older->v[i], *b = ss_devices_find(newer, a->id);
        const char *what = !b                                   ? "is missing"
                           : memcmp(a->pk, b->pk, sizeof a->pk) ? "has another key"
                           : a->enrolled != b->enrolled         ? "has another enrollment"
                           : (exact || a->revoked) && a->revoked != b->revoked
                               ? "is revoked otherwise"
                           : exact && strcmp(a->name, b->name) ? "has another name"
                                                               : NULL;
        if (what) {
            snprintf(why, cap, "device %s %s", who(a, a->id, name, sizeof name), what);
            return 1;
        }
    }
    if (older->policy_seq > newer->policy_seq ||
        (exact && (older->policy_seq != newer->policy_seq || older->mode != newer->mode))) {
        snprintf(why, cap, "its enrollment policy is older than this device knows");
        return 1;
    }
    if (exact && older->n != newer->n) {
        snprintf(why, cap, "%zu devices, where %zu were enrolled", newer->n, older->n);
        return 1;
    }
    return 0;
}

void ss_devices_policy(const ss_devices *d, uint8_t *ret_mode, uint64_t *ret_seq)
{
    *ret_mode = d->mode;
    *ret_seq = d->policy_seq;
}

void ss_devices_set_policy(ss_devices *d, uint8_t mode, uint64_t seq)
{
    d->mode = mode;
    d->policy_seq = seq;
}
