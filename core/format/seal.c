/*
 * seal: one chunk in, one self-contained sealed blob out, and back.
 *
 * Owns the sealed-chunk layout nonce(24) || AEAD(u8 flags || payload || pad),
 * pad to a size bucket (pad.h) so a chunk's size tells little of its file's. The
 * payload is zstd only when that is strictly smaller, decided by letting zstd
 * write into a buffer one byte shorter than the chunk: incompressible data
 * fails fast there instead of costing a second copy. Decompression trusts no
 * declared size beyond the caller's cap: the frame must state its content
 * size, that size must fit the cap, and it must be exactly one frame.
 */
#include "seal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zstd.h>

#include "chunker.h"
#include "pad.h"

_Static_assert(SS_CHUNK_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(SS_CHUNK_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag");
_Static_assert(SS_CHUNK_ID_LEN == SS_CHUNK_ID_BYTES, "chunk id size");

enum { AD_BYTES = sizeof SS_CHUNK_LABEL - 1 + SS_REPO_ID_BYTES + SS_CHUNK_ID_LEN };

static void chunk_ad(const ss_keys *keys, const uint8_t *id, uint8_t ad[AD_BYTES])
{
    memcpy(ad, SS_CHUNK_LABEL, sizeof SS_CHUNK_LABEL - 1);
    memcpy(ad + sizeof SS_CHUNK_LABEL - 1, ss_keys_repo_id(keys), SS_REPO_ID_BYTES);
    memcpy(ad + sizeof SS_CHUNK_LABEL - 1 + SS_REPO_ID_BYTES, id, SS_CHUNK_ID_LEN);
}

/* Messages name a chunk by the first 8 bytes of its id: enough to find it, nothing to learn. */
static const char *id_hex(const uint8_t *id, char out[17])
{
    return sodium_bin2hex(out, 17, id, 8);
}

ss_rc ss_chunk_seal(const ss_keys *keys, uint32_t epoch, const uint8_t id[SS_CHUNK_ID_LEN],
                    const void *data, size_t len, int try_compress, int level, void **ret_buf,
                    size_t *ret_len, ss_err *err)
{
    const uint8_t *key;
    uint8_t ad[AD_BYTES];
    uint8_t *out = NULL, *body;
    size_t stored = len, padded = 0;
    unsigned long long clen = 0;
    char hex[17];

    if (ret_buf) *ret_buf = NULL;
    if (ret_len) *ret_len = 0;
    if (!keys || !id || (!data && len) || !ret_buf || !ret_len)
        return ss_fail(err, SS_ERR_INVALID, "chunk seal: missing argument");
    key = ss_keys_content_key(keys, epoch, SS_SUBKEY_CHUNK);
    if (!key)
        return ss_fail(err, SS_ERR_EPOCH, "chunk %s: key epoch %" PRIu32 " is not held",
                       id_hex(id, hex), epoch);
    if (try_compress &&
        (level < (int)SS_CONFIG_ZSTD_LEVEL_MIN || level > (int)SS_CONFIG_ZSTD_LEVEL_MAX))
        return ss_fail(err, SS_ERR_INVALID, "chunk %s: zstd level %d is outside %u..%u",
                       id_hex(id, hex), level, SS_CONFIG_ZSTD_LEVEL_MIN, SS_CONFIG_ZSTD_LEVEL_MAX);
    if (len > SS_CONFIG_CHUNK_MAX_LIMIT)
        return ss_fail(err, SS_ERR_INVALID, "chunk %s: too large", id_hex(id, hex));

    /* Room for the raw payload padded: zstd is only kept when smaller. */
    out = malloc(SS_CHUNK_SEAL_FIXED + ss_pad_size(1 + len));
    if (!out) return ss_fail(err, SS_ERR_NOMEM, "chunk %s: out of memory", id_hex(id, hex));
    body = out + SS_CHUNK_NONCE_BYTES;
    body[0] = 0;
    if (try_compress && len > 1) {
        size_t z = ZSTD_compress(body + 1, len - 1, data, len, level);
        if (!ZSTD_isError(z)) {
            body[0] = SS_CHUNK_FLAG_ZSTD;
            stored = z;
        }
    }
    if (!(body[0] & SS_CHUNK_FLAG_ZSTD) && len) memcpy(body + 1, data, len);

    if (sodium_pad(&padded, body, 1 + stored, (size_t)ss_pad_block(2 + stored),
                   (size_t)ss_pad_size(1 + stored))) {
        free(out);
        return ss_fail(err, SS_ERR_INVALID, "chunk %s: cannot pad %zu bytes", id_hex(id, hex),
                       1 + stored);
    }
    randombytes_buf(out, SS_CHUNK_NONCE_BYTES);
    chunk_ad(keys, id, ad);
    /* In place: libsodium allows c == m. */
    crypto_aead_xchacha20poly1305_ietf_encrypt(body, &clen, body, padded, ad, sizeof ad, NULL, out,
                                               key);
    *ret_len = SS_CHUNK_NONCE_BYTES + (size_t)clen;
    if (*ret_len < SS_CHUNK_SEAL_FIXED + ss_pad_size(1 + len)) {
        uint8_t *shrunk = realloc(out, *ret_len);
        if (shrunk) out = shrunk; /* keeping the larger block is harmless */
    }
    *ret_buf = out;
    return SS_OK;
}

static ss_rc open_fail(ss_err *err, const uint8_t *id, const char *what)
{
    char hex[17];
    return ss_fail(err, SS_ERR_INTEGRITY, "chunk %s: %s", id_hex(id, hex), what);
}

/* Wipe: the buffer held plaintext. */
static void free_plain(uint8_t *p, size_t n)
{
    if (p) sodium_memzero(p, n);
    free(p);
}

ss_rc ss_chunk_open(const ss_keys *keys, uint32_t epoch, const uint8_t id[SS_CHUNK_ID_LEN],
                    const void *sealed, size_t sealed_len, size_t max_plain, void **ret_buf,
                    size_t *ret_len, ss_err *err)
{
    const uint8_t *s = sealed, *key;
    uint8_t ad[AD_BYTES], calc[SS_CHUNK_ID_LEN];
    uint8_t *body = NULL, *plain = NULL;
    size_t body_len = 0, plain_len = 0, unpadded = 0;
    ss_rc rc;

    if (ret_buf) *ret_buf = NULL;
    if (ret_len) *ret_len = 0;
    if (!keys || !id || (!sealed && sealed_len) || !ret_buf || !ret_len)
        return ss_fail(err, SS_ERR_INVALID, "chunk open: missing argument");
    key = ss_keys_content_key(keys, epoch, SS_SUBKEY_CHUNK);
    if (!key) {
        char hex[17];
        return ss_fail(err, SS_ERR_EPOCH,
                       "chunk %s: sealed under key epoch %" PRIu32
                       ", which this device does not hold",
                       id_hex(id, hex), epoch);
    }
    if (sealed_len < SS_CHUNK_SEAL_FIXED || !ss_pad_is_bucket(sealed_len - SS_CHUNK_SEAL_FIXED))
        return open_fail(err, id, "sealed length is not nonce, tag and a size bucket");

    body_len = sealed_len - SS_CHUNK_NONCE_BYTES - SS_CHUNK_TAG_BYTES;
    body = malloc(body_len);
    if (!body) return ss_fail(err, SS_ERR_NOMEM, "chunk open: out of memory");
    chunk_ad(keys, id, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(body, NULL, NULL, s + SS_CHUNK_NONCE_BYTES,
                                                   sealed_len - SS_CHUNK_NONCE_BYTES, ad, sizeof ad,
                                                   s, key) != 0) {
        rc = open_fail(err, id, "does not authenticate (damaged, or not the chunk of this id)");
        goto fail;
    }
    /* The marker lies within the last block of the length it pads, at most ss_pad_block(body_len).
     */
    if (sodium_unpad(&unpadded, body, body_len, (size_t)ss_pad_block(body_len)) != 0 ||
        unpadded < 1 || ss_pad_size(unpadded) != body_len) {
        rc = open_fail(err, id, "padding is not the one its length gets");
        goto fail;
    }
    if (body[0] & ~SS_CHUNK_FLAG_ZSTD) {
        rc = open_fail(err, id, "unknown flags");
        goto fail;
    }

    const uint8_t *payload = body + 1;
    size_t n = unpadded - 1;
    if (!(body[0] & SS_CHUNK_FLAG_ZSTD)) {
        if (n > max_plain) {
            rc = open_fail(err, id, "larger than the caller's limit");
            goto fail;
        }
        memmove(body, payload, n);
        plain = body;
        plain_len = n;
        body = NULL;
    } else {
        unsigned long long fcs = ZSTD_getFrameContentSize(payload, n);
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs == ZSTD_CONTENTSIZE_ERROR) {
            rc = open_fail(err, id, "zstd frame does not state its content size");
            goto fail;
        }
        if (fcs > max_plain) {
            rc = open_fail(err, id, "decompresses beyond the caller's limit");
            goto fail;
        }
        if (ZSTD_findFrameCompressedSize(payload, n) != n) {
            rc = open_fail(err, id, "payload is not exactly one zstd frame");
            goto fail;
        }
        plain_len = (size_t)fcs;
        plain = malloc(plain_len ? plain_len : 1);
        if (!plain) {
            rc = ss_fail(err, SS_ERR_NOMEM, "chunk open: out of memory");
            goto fail;
        }
        size_t got = ZSTD_decompress(plain, plain_len, payload, n);
        if (ZSTD_isError(got) || got != plain_len) {
            rc = open_fail(err, id, "zstd frame does not decode to its stated size");
            goto fail;
        }
    }

    ss_chunk_id(ss_keys_subkey(keys, SS_SUBKEY_CHUNK_ID), plain, plain_len, calc);
    if (sodium_memcmp(calc, id, SS_CHUNK_ID_LEN) != 0) {
        rc = open_fail(err, id, "content does not match its id");
        goto fail;
    }
    *ret_buf = plain;
    *ret_len = plain_len;
    plain = NULL;
    rc = SS_OK;
fail:
    free_plain(body, body_len);
    free_plain(plain, plain_len);
    return rc;
}

uint64_t ss_pack_key_seq(const char *key)
{
    uint64_t seq = 0;

    if (!key || strncmp(key, SS_KEY_DATA_PREFIX, sizeof SS_KEY_DATA_PREFIX - 1) != 0) return 0;
    key += sizeof SS_KEY_DATA_PREFIX - 1;
    for (int i = 0; i < SS_SEQ_DIGITS; i++) {
        uint64_t d = (uint64_t)(key[i] - '0');
        if (key[i] < '0' || key[i] > '9' || seq > (UINT64_MAX - d) / 10) return 0;
        seq = seq * 10 + d;
    }
    return key[SS_SEQ_DIGITS] == '-' ? seq : 0;
}
