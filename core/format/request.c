/*
 * request: requests/<id> sealed and opened (request.h; layout FORMAT.md
 * "Approved enrollment", sizes format.h's SS_REQUEST_*). Fixed size, so
 * the object does not tell the name's length.
 */
#include "request.h"

#include <inttypes.h>
#include <sodium.h>
#include <string.h>

#include "devices.h"
#include "le.h"

_Static_assert(SS_REQUEST_OFF_NONCE + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ==
                   SS_REQUEST_HEADER_BYTES,
               "request header");
_Static_assert(SS_TXN_DEVICE_NAME_MAX == 255, "a name fits its u8 length");

#define LABEL_LEN (sizeof SS_REQUEST_LABEL - 1)
#define AD_BYTES (LABEL_LEN + SS_REPO_ID_BYTES + SS_REQUEST_HEADER_BYTES)

/* The request subkey of epoch's key, and the associated data over header. */
static int request_key(const ss_keys *keys, uint32_t epoch, const uint8_t *header, uint8_t key[32],
                       uint8_t ad[AD_BYTES])
{
    const uint8_t *k = ss_keys_epoch_key(keys, epoch);
    if (!k) return -1;
    crypto_kdf_derive_from_key(key, 32, SS_EPOCH_SUBKEY_REQUEST, SS_EPOCH_KDF_CONTEXT, k);
    memcpy(ad, SS_REQUEST_LABEL, LABEL_LEN);
    memcpy(ad + LABEL_LEN, ss_keys_repo_id(keys), SS_REPO_ID_BYTES);
    memcpy(ad + LABEL_LEN + SS_REPO_ID_BYTES, header, SS_REQUEST_HEADER_BYTES);
    return 0;
}

static int name_ok(const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) return 0;
    return n > 0;
}

ss_rc ss_request_seal(const ss_keys *keys, const uint8_t pk[SS_DEVICE_PK_BYTES], const char *name,
                      uint8_t out[SS_REQUEST_BYTES], ss_err *err)
{
    uint8_t plain[SS_REQUEST_PLAIN_BYTES] = {0}, key[32], ad[AD_BYTES];
    uint32_t epoch = ss_keys_epoch(keys);
    size_t n = strlen(name);
    if (n > SS_TXN_DEVICE_NAME_MAX || !name_ok(name, n))
        return ss_fail(err, SS_ERR_INVALID, "device name '%.40s' cannot go in a request", name);
    memset(out, 0, SS_REQUEST_HEADER_BYTES);
    memcpy(out, SS_REQUEST_MAGIC, 4);
    out[4] = SS_REQUEST_VERSION;
    ss_le_put32(out + SS_REQUEST_OFF_EPOCH, epoch);
    randombytes_buf(out + SS_REQUEST_OFF_NONCE, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    request_key(keys, epoch, out, key, ad);
    memcpy(plain, pk, SS_DEVICE_PK_BYTES);
    plain[SS_DEVICE_PK_BYTES] = (uint8_t)n;
    memcpy(plain + SS_DEVICE_PK_BYTES + 1, name, n);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + SS_REQUEST_HEADER_BYTES, NULL, plain,
                                               sizeof plain, ad, sizeof ad, NULL,
                                               out + SS_REQUEST_OFF_NONCE, key);
    sodium_memzero(key, sizeof key);
    return SS_OK;
}

static ss_rc bad(ss_err *err, const char *why)
{
    return ss_fail(err, SS_ERR_INTEGRITY, "enrollment request: %s", why);
}

ss_rc ss_request_open(const ss_keys *keys, const uint8_t *buf, size_t len,
                      const uint8_t id[SS_TXN_DEVICE_ID_BYTES], uint8_t ret_pk[SS_DEVICE_PK_BYTES],
                      char ret_name[SS_TXN_DEVICE_NAME_MAX + 1], ss_err *err)
{
    static const uint8_t zeros[255];
    uint8_t plain[SS_REQUEST_PLAIN_BYTES], key[32], ad[AD_BYTES], got[SS_TXN_DEVICE_ID_BYTES];
    uint32_t epoch;
    size_t n;
    int shut;
    ret_name[0] = '\0';
    if (len != SS_REQUEST_BYTES) return bad(err, "not the size of a request");
    if (memcmp(buf, SS_REQUEST_MAGIC, 4) || buf[4] != SS_REQUEST_VERSION || buf[5] || buf[6] ||
        buf[7])
        return bad(err, "not a request this s3sync knows");
    epoch = ss_le_get32(buf + SS_REQUEST_OFF_EPOCH);
    if (request_key(keys, epoch, buf, key, ad))
        return ss_fail(err, SS_ERR_EPOCH,
                       "enrollment request: sealed under key epoch %" PRIu32
                       ", which this device does not hold",
                       epoch);
    shut = crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, NULL, NULL, buf + SS_REQUEST_HEADER_BYTES, len - SS_REQUEST_HEADER_BYTES, ad,
        sizeof ad, buf + SS_REQUEST_OFF_NONCE, key);
    sodium_memzero(key, sizeof key);
    if (shut) return bad(err, "does not open (damaged, or of another repository)");
    n = plain[SS_DEVICE_PK_BYTES];
    if (!name_ok((const char *)plain + SS_DEVICE_PK_BYTES + 1, n) ||
        memcmp(plain + SS_DEVICE_PK_BYTES + 1 + n, zeros, 255 - n))
        return bad(err, "a name with a control byte, or bytes after it");
    ss_device_id_of(plain, got);
    if (sodium_memcmp(got, id, sizeof got)) return bad(err, "its key is not the one of its id");
    memcpy(ret_pk, plain, SS_DEVICE_PK_BYTES);
    memcpy(ret_name, plain + SS_DEVICE_PK_BYTES + 1, n);
    ret_name[n] = '\0';
    return SS_OK;
}
