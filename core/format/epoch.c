/*
 * epoch: epochs/<E> encoded, verified and opened (epoch.h; the layout is
 * FORMAT.md "Key epochs", the sizes format.h's SS_EPOCH_*). Every offset
 * is derived from the grant count, and the count is checked against the
 * object's size before anything past the header is read.
 */
#include "epoch.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"

#define SIG_LABEL_LEN (sizeof SS_EPOCH_SIG_LABEL - 1)
#define SIG_MESSAGE_BYTES (SIG_LABEL_LEN + crypto_generichash_BYTES)
#define LINK_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

/* A parsed epochs/<E>: pointers into the caller's bytes. */
typedef struct view {
    const uint8_t *header, *link, *grants, *signer, *sig;
    size_t n;          /* grants */
    size_t signed_len; /* bytes the signature covers */
} view;

/* A device that may read from sequence seq on: enrolled by then, not revoked by then. */
static int live_at(const ss_device *d, uint64_t seq)
{
    return d->enrolled <= seq && (!d->revoked || d->revoked > seq);
}

static size_t live_count(const ss_devices *table, uint64_t seq)
{
    size_t n = 0;
    for (size_t i = 0; i < ss_devices_count(table); i++)
        n += (size_t)live_at(ss_devices_at(table, i), seq);
    return n;
}

static void subkey(uint8_t out[SS_EPOCH_KEY_BYTES], uint64_t id,
                   const uint8_t key[SS_EPOCH_KEY_BYTES])
{
    crypto_kdf_derive_from_key(out, SS_EPOCH_KEY_BYTES, id, SS_EPOCH_KDF_CONTEXT, key);
}

/* check = BLAKE2b-256(check subkey of K_E; repository id || u32 epoch) */
static void check_of(uint8_t out[SS_EPOCH_CHECK_BYTES], const uint8_t key[SS_EPOCH_KEY_BYTES],
                     const uint8_t repo_id[SS_REPO_ID_BYTES], uint32_t epoch)
{
    uint8_t k[SS_EPOCH_KEY_BYTES], msg[SS_REPO_ID_BYTES + 4];
    subkey(k, SS_EPOCH_SUBKEY_CHECK, key);
    memcpy(msg, repo_id, SS_REPO_ID_BYTES);
    ss_le_put32(msg + SS_REPO_ID_BYTES, epoch);
    crypto_generichash(out, SS_EPOCH_CHECK_BYTES, msg, sizeof msg, k, sizeof k);
    sodium_memzero(k, sizeof k);
}

static void sig_message(uint8_t out[SIG_MESSAGE_BYTES], const uint8_t *buf, size_t len)
{
    memcpy(out, SS_EPOCH_SIG_LABEL, SIG_LABEL_LEN);
    crypto_generichash(out + SIG_LABEL_LEN, crypto_generichash_BYTES, buf, len, NULL, 0);
}

static ss_rc refuse(ss_err *err, uint32_t epoch, const char *why)
{
    return ss_fail(err, SS_ERR_INTEGRITY, SS_KEY_EPOCH_FMT ": %s", epoch, why);
}

/* ---- encoding ---------------------------------------------------------------------- */

static ss_rc put_grant(uint8_t *out, const ss_device *d, const uint8_t key[SS_EPOCH_KEY_BYTES],
                       ss_err *err)
{
    uint8_t xpk[crypto_box_PUBLICKEYBYTES];
    char id[17];
    memcpy(out, d->id, SS_TXN_DEVICE_ID_BYTES);
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, d->pk)) {
        ss_device_id_short(d->id, id);
        return ss_fail(err, SS_ERR_INTEGRITY, "device %s: its key has no X25519 form", id);
    }
    if (crypto_box_seal(out + SS_TXN_DEVICE_ID_BYTES, key, SS_EPOCH_KEY_BYTES, xpk))
        return ss_fail(err, SS_ERR_INVALID, "crypto_box_seal failed");
    return SS_OK;
}

static void put_link(uint8_t *out, const uint8_t *header, const uint8_t key[SS_EPOCH_KEY_BYTES],
                     const uint8_t prev[SS_EPOCH_KEY_BYTES], uint64_t prev_start)
{
    uint8_t k[SS_EPOCH_KEY_BYTES], plain[SS_EPOCH_LINK_PLAIN_BYTES];
    subkey(k, SS_EPOCH_SUBKEY_LINK, key);
    memcpy(plain, prev, SS_EPOCH_KEY_BYTES);
    ss_le_put64(plain + SS_EPOCH_KEY_BYTES, prev_start);
    randombytes_buf(out, LINK_NONCE_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + LINK_NONCE_BYTES, NULL, plain, sizeof plain,
                                               header, SS_EPOCH_HEADER_BYTES, NULL, out, k);
    sodium_memzero(k, sizeof k);
    sodium_memzero(plain, sizeof plain);
}

ss_rc ss_epoch_encode(uint32_t epoch, const uint8_t repo_id[SS_REPO_ID_BYTES],
                      const uint8_t key[SS_EPOCH_KEY_BYTES], const uint8_t prev[SS_EPOCH_KEY_BYTES],
                      uint64_t prev_start, const ss_devices *table, uint64_t at_seq,
                      const ss_device_key *signer, uint8_t **ret_buf, size_t *ret_len, ss_err *err)
{
    const ss_device *me = ss_devices_find(table, ss_device_key_id(signer));
    size_t n = live_count(table, at_seq), len;
    uint8_t *buf = NULL, *p, msg[SIG_MESSAGE_BYTES];
    ss_rc rc;
    *ret_buf = NULL;
    *ret_len = 0;
    if (!epoch) return ss_fail(err, SS_ERR_INVALID, "epoch 0 is the master key's: no object");
    if (!prev_start || prev_start >= at_seq || (epoch == 1) != (prev_start == 1))
        return ss_fail(err, SS_ERR_INVALID, "epoch %u must begin after epoch %u's start", epoch,
                       epoch - 1);
    if (!me || !live_at(me, at_seq))
        return ss_fail(err, SS_ERR_INVALID, "the device starting epoch %u may not read it", epoch);
    len = SS_EPOCH_FIXED_BYTES + n * SS_EPOCH_GRANT_BYTES;
    buf = malloc(len);
    if (!buf) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    memcpy(buf, SS_EPOCH_MAGIC, 4);
    buf[SS_EPOCH_OFF_VERSION] = SS_EPOCH_VERSION;
    buf[SS_EPOCH_OFF_ZERO] = 0;
    ss_le_put16(buf + SS_EPOCH_OFF_GRANTS, (uint16_t)n);
    ss_le_put32(buf + SS_EPOCH_OFF_EPOCH, epoch);
    memcpy(buf + SS_EPOCH_OFF_REPO_ID, repo_id, SS_REPO_ID_BYTES);
    check_of(buf + SS_EPOCH_OFF_CHECK, key, repo_id, epoch);
    put_link(buf + SS_EPOCH_HEADER_BYTES, buf, key, prev, prev_start);
    p = buf + SS_EPOCH_HEADER_BYTES + SS_EPOCH_LINK_BYTES;
    for (size_t i = 0; i < ss_devices_count(table); i++) {
        const ss_device *d = ss_devices_at(table, i); /* in id order: grants ascend */
        if (!live_at(d, at_seq)) continue;
        rc = put_grant(p, d, key, err);
        if (rc) goto fail;
        p += SS_EPOCH_GRANT_BYTES;
    }
    memcpy(p, me->id, SS_TXN_DEVICE_ID_BYTES);
    p += SS_TXN_DEVICE_ID_BYTES;
    sig_message(msg, buf, (size_t)(p - buf));
    ss_device_key_sign(signer, msg, sizeof msg, p);
    *ret_buf = buf;
    *ret_len = len;
    return SS_OK;
fail:
    free(buf);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------- */

static ss_rc parse(const uint8_t *buf, size_t len, uint32_t epoch,
                   const uint8_t repo_id[SS_REPO_ID_BYTES], view *v, ss_err *err)
{
    if (len < SS_EPOCH_FIXED_BYTES) return refuse(err, epoch, "cut short");
    if (len > SS_EPOCH_READ_MAX) return refuse(err, epoch, "larger than an epoch can be");
    if (memcmp(buf, SS_EPOCH_MAGIC, 4)) return refuse(err, epoch, "not an epoch object");
    if (buf[SS_EPOCH_OFF_VERSION] != SS_EPOCH_VERSION || buf[SS_EPOCH_OFF_ZERO])
        return refuse(err, epoch, "a version this s3sync does not know");
    v->n = ss_le_get16(buf + SS_EPOCH_OFF_GRANTS);
    if (!v->n || v->n > SS_DEVICES_MAX) return refuse(err, epoch, "no grants, or too many");
    if (len != SS_EPOCH_FIXED_BYTES + v->n * SS_EPOCH_GRANT_BYTES)
        return refuse(err, epoch, "its size is not the one its grants make");
    if (ss_le_get32(buf + SS_EPOCH_OFF_EPOCH) != epoch)
        return refuse(err, epoch, "states another epoch (moved or replayed)");
    if (sodium_memcmp(buf + SS_EPOCH_OFF_REPO_ID, repo_id, SS_REPO_ID_BYTES))
        return refuse(err, epoch, "of another repository");
    v->header = buf;
    v->link = buf + SS_EPOCH_HEADER_BYTES;
    v->grants = v->link + SS_EPOCH_LINK_BYTES;
    v->signer = v->grants + v->n * SS_EPOCH_GRANT_BYTES;
    v->sig = v->signer + SS_TXN_DEVICE_ID_BYTES;
    v->signed_len = (size_t)(v->sig - buf);
    return SS_OK;
}

/* Grants ascend by id, each to a device that could read when the epoch began; none missing. */
static ss_rc check_grants(const view *v, uint32_t epoch, const ss_devices *table, uint64_t at_seq,
                          ss_err *err)
{
    for (size_t i = 0; i < v->n; i++) {
        const uint8_t *id = v->grants + i * SS_EPOCH_GRANT_BYTES;
        const ss_device *d = ss_devices_find(table, id);
        if (i && memcmp(id - SS_EPOCH_GRANT_BYTES, id, SS_TXN_DEVICE_ID_BYTES) >= 0)
            return refuse(err, epoch, "grants out of order or twice");
        if (!d || !live_at(d, at_seq))
            return refuse(err, epoch, "grants a device that may not read it");
    }
    if (v->n != live_count(table, at_seq))
        return refuse(err, epoch, "leaves out a device that may read it");
    return SS_OK;
}

static ss_rc check_signature(const view *v, uint32_t epoch, const ss_devices *table,
                             uint64_t at_seq, ss_err *err)
{
    const ss_device *d = ss_devices_find(table, v->signer);
    uint8_t msg[SIG_MESSAGE_BYTES];
    if (!d || !live_at(d, at_seq)) return refuse(err, epoch, "signed by a device that may not");
    sig_message(msg, v->header, v->signed_len);
    if (crypto_sign_verify_detached(v->sig, msg, sizeof msg, d->pk))
        return refuse(err, epoch, "its signature does not verify");
    return SS_OK;
}

static ss_rc parse_verified(const uint8_t *buf, size_t len, uint32_t epoch,
                            const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                            uint64_t at_seq, view *v, ss_err *err)
{
    ss_rc rc = parse(buf, len, epoch, repo_id, v, err);
    if (rc) return rc;
    rc = check_signature(v, epoch, table, at_seq, err);
    if (rc) return rc;
    return check_grants(v, epoch, table, at_seq, err);
}

ss_rc ss_epoch_verify(const uint8_t *buf, size_t len, uint32_t epoch,
                      const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                      uint64_t at_seq, ss_err *err)
{
    view v;
    return parse_verified(buf, len, epoch, repo_id, table, at_seq, &v, err);
}

/* key against the check, then the link opened with it: K_(E-1) and where epoch E-1 began. */
static ss_rc unlink_view(const view *v, uint32_t epoch, const uint8_t repo_id[SS_REPO_ID_BYTES],
                         const uint8_t key[SS_EPOCH_KEY_BYTES],
                         uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start,
                         ss_err *err)
{
    uint8_t check[SS_EPOCH_CHECK_BYTES], k[SS_EPOCH_KEY_BYTES], plain[SS_EPOCH_LINK_PLAIN_BYTES];
    uint64_t start;
    int bad;
    check_of(check, key, repo_id, epoch);
    if (sodium_memcmp(check, v->header + SS_EPOCH_OFF_CHECK, SS_EPOCH_CHECK_BYTES))
        return refuse(err, epoch, "the key this device holds is not the epoch's");
    subkey(k, SS_EPOCH_SUBKEY_LINK, key);
    bad = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, v->link + LINK_NONCE_BYTES,
                                                     SS_EPOCH_LINK_BYTES - LINK_NONCE_BYTES,
                                                     v->header, SS_EPOCH_HEADER_BYTES, v->link, k);
    sodium_memzero(k, sizeof k);
    start = bad ? 0 : ss_le_get64(plain + SS_EPOCH_KEY_BYTES);
    if (!bad && (start == 0 || (epoch == 1) != (start == 1))) bad = 2;
    if (!bad) memcpy(ret_prev, plain, SS_EPOCH_KEY_BYTES);
    sodium_memzero(plain, sizeof plain);
    if (bad == 2) return refuse(err, epoch, "the previous epoch's start is impossible");
    if (bad) return refuse(err, epoch, "the previous epoch's key does not open");
    *ret_prev_start = start;
    return SS_OK;
}

ss_rc ss_epoch_unlink(const uint8_t *buf, size_t len, uint32_t epoch,
                      const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                      uint64_t at_seq, const uint8_t key[SS_EPOCH_KEY_BYTES],
                      uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start, ss_err *err)
{
    view v;
    ss_rc rc;
    sodium_memzero(ret_prev, SS_EPOCH_KEY_BYTES);
    *ret_prev_start = 0;
    rc = parse_verified(buf, len, epoch, repo_id, table, at_seq, &v, err);
    if (rc) return rc;
    return unlink_view(&v, epoch, repo_id, key, ret_prev, ret_prev_start, err);
}

static const uint8_t *grant_of(const view *v, const uint8_t id[SS_TXN_DEVICE_ID_BYTES])
{
    for (size_t i = 0; i < v->n; i++) {
        const uint8_t *g = v->grants + i * SS_EPOCH_GRANT_BYTES;
        if (!memcmp(g, id, SS_TXN_DEVICE_ID_BYTES)) return g;
    }
    return NULL;
}

/* This device's grant in v opened, checked and unlinked. */
static ss_rc open_grant(const view *v, uint32_t epoch, const uint8_t repo_id[SS_REPO_ID_BYTES],
                        const ss_device_key *me, uint8_t ret_key[SS_EPOCH_KEY_BYTES],
                        uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start, ss_err *err)
{
    uint8_t key[SS_EPOCH_KEY_BYTES];
    const uint8_t *g = grant_of(v, ss_device_key_id(me));
    ss_rc rc;
    if (!g)
        return ss_fail(err, SS_ERR_REVOKED,
                       SS_KEY_EPOCH_FMT ": grants this device no key (it was revoked)", epoch);
    if (ss_device_key_unseal(me, g + SS_TXN_DEVICE_ID_BYTES, SS_EPOCH_SEALED_BYTES, key))
        rc = refuse(err, epoch, "the key granted to this device does not open");
    else
        rc = unlink_view(v, epoch, repo_id, key, ret_prev, ret_prev_start, err);
    if (!rc) memcpy(ret_key, key, SS_EPOCH_KEY_BYTES);
    sodium_memzero(key, sizeof key);
    return rc;
}

ss_rc ss_epoch_open(const uint8_t *buf, size_t len, uint32_t epoch,
                    const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                    uint64_t at_seq, const ss_device_key *me, uint8_t ret_key[SS_EPOCH_KEY_BYTES],
                    uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start, ss_err *err)
{
    view v;
    ss_rc rc;
    sodium_memzero(ret_key, SS_EPOCH_KEY_BYTES);
    sodium_memzero(ret_prev, SS_EPOCH_KEY_BYTES);
    *ret_prev_start = 0;
    rc = parse_verified(buf, len, epoch, repo_id, table, at_seq, &v, err);
    if (rc) return rc;
    return open_grant(&v, epoch, repo_id, me, ret_key, ret_prev, ret_prev_start, err);
}

ss_rc ss_epoch_open_early(const uint8_t *buf, size_t len, uint32_t epoch,
                          const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *before,
                          uint64_t at_seq, const ss_device_key *me,
                          uint8_t ret_key[SS_EPOCH_KEY_BYTES], uint8_t ret_prev[SS_EPOCH_KEY_BYTES],
                          uint64_t *ret_prev_start, ss_err *err)
{
    view v;
    ss_rc rc;
    sodium_memzero(ret_key, SS_EPOCH_KEY_BYTES);
    sodium_memzero(ret_prev, SS_EPOCH_KEY_BYTES);
    *ret_prev_start = 0;
    rc = parse(buf, len, epoch, repo_id, &v, err);
    if (rc) return rc;
    if (ss_devices_find(before, v.signer)) { /* else it enrolls at at_seq: verified then */
        rc = check_signature(&v, epoch, before, at_seq, err);
        if (rc) return rc;
    }
    return open_grant(&v, epoch, repo_id, me, ret_key, ret_prev, ret_prev_start, err);
}

ss_rc ss_epoch_link_open(const uint8_t *buf, size_t len, uint32_t epoch,
                         const uint8_t repo_id[SS_REPO_ID_BYTES],
                         const uint8_t key[SS_EPOCH_KEY_BYTES],
                         uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start,
                         ss_err *err)
{
    view v;
    ss_rc rc;
    sodium_memzero(ret_prev, SS_EPOCH_KEY_BYTES);
    *ret_prev_start = 0;
    rc = parse(buf, len, epoch, repo_id, &v, err);
    if (rc) return rc;
    return unlink_view(&v, epoch, repo_id, key, ret_prev, ret_prev_start, err);
}
