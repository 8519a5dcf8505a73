/*
 * test-seal: sealed chunks (core/seal.h) against docs/FORMAT.md "Sealed
 * chunks and data/ packs". Chunks sealed by hand from libsodium and zstd
 * primitives reach the checks that only a key holder could trip: unknown
 * flags, frames without a stated size, two frames, content under a foreign
 * id, and decompression bombs. Every refusal is SS_ERR_INTEGRITY with nothing
 * returned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <zstd.h>

#include "pad.h"
#include "seal.h"

#define MiB (1024u * 1024)

static ss_keys *keys, *other_keys, *same_repo_other_master;

/* Half random, half runs of text: zstd shrinks it, records still vary. */
static uint8_t *make_data(size_t len, int compressible)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    randombytes_buf(p, len);
    if (compressible)
        for (size_t i = 0; i < len; i++)
            if ((i / 512) % 2 == 0) p[i] = (uint8_t) "the quick brown fox "[i % 20];
    return p;
}

static void chunk_id(const ss_keys *k, const void *p, size_t n, uint8_t id[32])
{
    crypto_generichash(id, 32, p, n, ss_keys_subkey(k, SS_SUBKEY_CHUNK_ID), 32);
}

static uint8_t *seal_chunk(const uint8_t *data, size_t n, int compress, size_t *ret_len,
                           uint8_t id[32])
{
    void *out = NULL;
    ss_err err = {{0}};
    chunk_id(keys, data, n, id);
    assert_int_equal(ss_chunk_seal(keys, 0, id, data, n, compress, 3, &out, ret_len, &err), SS_OK);
    return out;
}

/* A sealed chunk made from primitives: any flags and payload, under any id. */
/* Seal body (flags, payload, padding: whatever the caller wrote) of blen bytes under id. */
static uint8_t *aead_sealed(const uint8_t id[32], const uint8_t *body_in, size_t blen,
                            size_t *ret_len)
{
    uint8_t ad[63];
    uint8_t *out = malloc(40 + blen), *body = out + 24;
    memcpy(body, body_in, blen);
    memcpy(ad, "s3sync-chunk-v1", 15);
    memcpy(ad + 15, ss_keys_repo_id(keys), 16);
    memcpy(ad + 31, id, 32);
    randombytes_buf(out, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt(body, NULL, body, blen, ad, sizeof ad, NULL, out,
                                               ss_keys_content_key(keys, 0, SS_SUBKEY_CHUNK));
    *ret_len = 40 + blen;
    return out;
}

/* flags || payload, padded with 0x80 and zeros to padded bytes (0: the bucket it gets). */
static uint8_t *padded_chunk(const uint8_t id[32], uint8_t flags, const void *payload, size_t n,
                             size_t padded, size_t *ret_len)
{
    if (!padded) padded = (size_t)ss_pad_size(1 + n);
    uint8_t *body = calloc(1, padded + 1); /* + 1: never a zero-size block */
    if (!body || padded <= n) abort();
    body[0] = flags;
    memcpy(body + 1, payload, n);
    if (padded > 1 + n) body[1 + n] = 0x80;
    uint8_t *out = aead_sealed(id, body, padded, ret_len);
    free(body);
    return out;
}

static uint8_t *hand_sealed_chunk(const uint8_t id[32], uint8_t flags, const void *payload,
                                  size_t n, size_t *ret_len)
{
    return padded_chunk(id, flags, payload, n, 0, ret_len);
}

static ss_rc open_chunk(const ss_keys *k, const uint8_t id[32], const uint8_t *sealed, size_t len,
                        size_t max, void **ret, size_t *ret_len)
{
    ss_err err = {{0}};
    ss_rc rc = ss_chunk_open(k, 0, id, sealed, len, max, ret, ret_len, &err);
    if (rc != SS_OK) {
        assert_null(*ret);
        assert_int_equal(*ret_len, 0);
        assert_non_null(strstr(err.msg, "chunk"));
    }
    return rc;
}

static void test_chunk_roundtrip(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n;
        int compressible, try_compress, expect_zstd;
    } cases[] = {
        {"empty", 0, 0, 1, 0},
        {"one byte", 1, 1, 1, 0},
        {"compressible", 256 * 1024, 1, 1, 1},
        {"compressible, not tried", 256 * 1024, 1, 0, 0},
        {"incompressible: stored raw", 256 * 1024, 0, 1, 0},
        {"max chunk", 8 * MiB, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *data = make_data(cases[i].n, cases[i].compressible), id[32];
        size_t slen = 0, plen = 0;
        void *plain = NULL;
        uint8_t *s = seal_chunk(data, cases[i].n, cases[i].try_compress, &slen, id);
        if (cases[i].expect_zstd)
            assert_true(slen < cases[i].n);
        else
            assert_int_equal(slen, 40 + ss_pad_size(1 + cases[i].n));
        assert_true(ss_pad_is_bucket(slen - 40)); /* the size tells only the bucket */
        assert_int_equal(open_chunk(keys, id, s, slen, cases[i].n, &plain, &plen), SS_OK);
        assert_int_equal(plen, cases[i].n);
        if (plen) assert_memory_equal(plain, data, plen);
        free(plain);
        free(s);
        free(data);
    }
}

static void test_chunk_refused(void **state)
{
    (void)state;
    size_t n = 100000, slen = 0, rlen = 0, plen = 0;
    uint8_t *data = make_data(n, 1), id[32], other_id[32];
    uint8_t *s = seal_chunk(data, n, 1, &slen, id);
    uint8_t *raw = seal_chunk(data, n, 0, &rlen, id);
    void *plain = NULL;

    /* Tampered byte: nonce, flags, payload, tag. */
    const size_t offs[] = {0, 23, 24, 25, slen / 2, slen - 16, slen - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        s[offs[i]] ^= 0x04;
        assert_int_equal(open_chunk(keys, id, s, slen, n, &plain, &plen), SS_ERR_INTEGRITY);
        s[offs[i]] ^= 0x04;
    }
    memcpy(other_id, id, 32);
    other_id[0] ^= 1;
    const struct {
        const char *name;
        const ss_keys *k;
        const uint8_t *id;
        const uint8_t *buf;
        size_t len, max;
    } cases[] = {
        {"wrong id", keys, other_id, s, slen, n},
        {"another repository", other_keys, id, s, slen, n},
        {"wrong master key", same_repo_other_master, id, s, slen, n},
        {"truncated by one", keys, id, s, slen - 1, n},
        {"shorter than overhead", keys, id, s, 40, n},
        {"empty", keys, id, s, 0, n},
        {"bomb: zstd beyond cap", keys, id, s, slen, n - 1},
        {"raw beyond cap", keys, id, raw, rlen, n - 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_rc rc = open_chunk(cases[i].k, cases[i].id, cases[i].buf, cases[i].len, cases[i].max,
                              &plain, &plen);
        if (rc != SS_ERR_INTEGRITY) fprintf(stderr, "%s: %d\n", cases[i].name, rc);
        assert_int_equal(rc, SS_ERR_INTEGRITY);
    }
    free(raw);
    free(s);

    /* Hand-sealed under a valid AEAD: only the payload checks can refuse these. */
    size_t zcap = ZSTD_compressBound(MiB), zlen, hlen = 0;
    uint8_t *z = malloc(2 * zcap), *zeros = calloc(1, MiB), *h;
    zlen = ZSTD_compress(z, zcap, zeros, MiB, 3);
    assert_false(ZSTD_isError(zlen));
    chunk_id(keys, zeros, MiB, id);
    h = hand_sealed_chunk(id, SS_CHUNK_FLAG_ZSTD, z, zlen, &hlen);
    assert_int_equal(open_chunk(keys, id, h, hlen, MiB, &plain, &plen), SS_OK);
    free(plain);
    plain = NULL;
    assert_int_equal(open_chunk(keys, id, h, hlen, 64 * 1024, &plain, &plen), SS_ERR_INTEGRITY);
    free(h);
    /* A second, empty frame after it: decodes to the same bytes, still not one frame. */
    size_t elen = ZSTD_compress(z + zlen, zcap, "", 0, 3);
    assert_false(ZSTD_isError(elen));
    h = hand_sealed_chunk(id, SS_CHUNK_FLAG_ZSTD, z, zlen + elen, &hlen);
    assert_int_equal(open_chunk(keys, id, h, hlen, 2 * MiB, &plain, &plen), SS_ERR_INTEGRITY);
    free(h);
    /* A streamed frame that does not state its size. */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_inBuffer in = {zeros, MiB, 0};
    ZSTD_outBuffer o = {z, zcap, 0};
    assert_int_equal(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    assert_int_equal(ZSTD_getFrameContentSize(z, o.pos), ZSTD_CONTENTSIZE_UNKNOWN);
    h = hand_sealed_chunk(id, SS_CHUNK_FLAG_ZSTD, z, o.pos, &hlen);
    assert_int_equal(open_chunk(keys, id, h, hlen, 2 * MiB, &plain, &plen), SS_ERR_INTEGRITY);
    free(h);
    /* Unknown flags; garbage flagged as zstd; content sealed under another content's id. */
    uint8_t id100[32];
    chunk_id(keys, zeros, 100, id100);
    h = hand_sealed_chunk(id100, 0x02, zeros, 100, &hlen); /* would open but for the flag */
    assert_int_equal(open_chunk(keys, id100, h, hlen, MiB, &plain, &plen), SS_ERR_INTEGRITY);
    free(h);
    h = hand_sealed_chunk(id, SS_CHUNK_FLAG_ZSTD, data, 100, &hlen);
    assert_int_equal(open_chunk(keys, id, h, hlen, MiB, &plain, &plen), SS_ERR_INTEGRITY);
    free(h);
    /* Padding: missing, not the canonical bucket, marker damaged; each sealed validly. */
    const struct {
        const char *name;
        size_t padded; /* of the 101 bytes flags || payload */
        int marker_off;
    } pads[] = {
        {"unpadded", 101, 0},
        {"a bucket too large", 512, 0},
        {"marker missing", 256, -1},
        {"marker not last nonzero", 256, 2},
    };
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        uint8_t body[512] = {0};
        memcpy(body + 1, zeros, 100);
        body[1 + 100] = pads[i].marker_off < 0 ? 0 : 0x80;
        if (pads[i].marker_off > 0) body[1 + 100 + pads[i].marker_off] = 1;
        if (pads[i].padded == 101) body[101] = 0;
        h = aead_sealed(id100, body, pads[i].padded, &hlen);
        ss_rc prc = open_chunk(keys, id100, h, hlen, MiB, &plain, &plen);
        if (prc != SS_ERR_INTEGRITY) fprintf(stderr, "%s: %d\n", pads[i].name, prc);
        assert_int_equal(prc, SS_ERR_INTEGRITY);
        free(h);
    }
    h = padded_chunk(id100, 0, zeros, 100, 0, &hlen); /* the same, padded right, opens */
    assert_int_equal(open_chunk(keys, id100, h, hlen, MiB, &plain, &plen), SS_OK);
    assert_int_equal(plen, 100);
    free(plain);
    plain = NULL;
    free(h);
    h = hand_sealed_chunk(id, 0, data, 100, &hlen);
    ss_err err = {{0}};
    assert_int_equal(ss_chunk_open(keys, 0, id, h, hlen, MiB, &plain, &plen, &err),
                     SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "does not match its id"));
    free(h);
    free(z);
    free(zeros);
    free(data);
}

static int setup(void **state)
{
    (void)state;
    ss_err err = {{0}};
    uint8_t m[32];
    if (ss_keys_generate(&keys, &err) || ss_keys_generate(&other_keys, &err)) return -1;
    randombytes_buf(m, 32);
    return ss_keys_from_master(m, ss_keys_repo_id(keys), &same_repo_other_master, &err) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ss_keys_free(keys);
    ss_keys_free(other_keys);
    ss_keys_free(same_repo_other_master);
    return 0;
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_roundtrip),
        cmocka_unit_test(test_chunk_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
