/*
 * test-keys: master key and subkeys, key files and config (core/keys.h)
 * against docs/FORMAT.md, and every way a hostile store could bend them.
 * Key files are built by hand from libsodium primitives where the library
 * would refuse to write them, so the reader's checks are tested on their own.
 * Runs with S3SYNC_KDF=interactive: the KDF at the minimum limits.
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

#include "keys.h"

static const char PASS[] = "correct horse battery staple";

static ss_keys *new_keys(void)
{
    ss_keys *k = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_keys_generate(&k, &err), SS_OK);
    assert_non_null(k);
    return k;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Any subkey by id: the content ones from epoch 0. */
static const uint8_t *subkey_of(const ss_keys *k, unsigned id)
{
    if (id == SS_SUBKEY_OBJECT || id == SS_SUBKEY_CHUNK)
        return ss_keys_content_key(k, 0, (ss_subkey)id);
    return ss_keys_subkey(k, (ss_subkey)id);
}

static void test_subkeys(void **state)
{
    (void)state;
    ss_keys *a = new_keys(), *b = NULL;
    ss_err err = {{0}};
    uint8_t want[32];

    /* Derivation as FORMAT.md states it, recomputed with the primitive. */
    for (unsigned id = 1; id <= SS_SUBKEY_COUNT; id++) {
        crypto_kdf_derive_from_key(want, 32, id, "s3sync01", ss_keys_master(a));
        assert_memory_equal(subkey_of(a, id), want, 32);
        for (unsigned j = 1; j < id; j++)
            assert_memory_not_equal(subkey_of(a, id), subkey_of(a, j), 32);
    }
    /* The content subkeys belong to an epoch: epoch 0's are the master key's. */
    assert_null(ss_keys_subkey(a, SS_SUBKEY_OBJECT));
    assert_null(ss_keys_subkey(a, SS_SUBKEY_CHUNK));
    assert_null(ss_keys_content_key(a, 0, SS_SUBKEY_CONFIG));
    assert_null(ss_keys_content_key(a, 1, SS_SUBKEY_OBJECT));
    assert_null(ss_keys_subkey(a, (ss_subkey)0));
    assert_null(ss_keys_subkey(a, (ss_subkey)(SS_SUBKEY_COUNT + 1)));

    assert_int_equal(ss_keys_from_master(ss_keys_master(a), ss_keys_repo_id(a), &b, &err), SS_OK);
    assert_memory_equal(ss_keys_repo_id(a), ss_keys_repo_id(b), SS_REPO_ID_BYTES);
    for (unsigned id = 1; id <= SS_SUBKEY_COUNT; id++)
        assert_memory_equal(subkey_of(a, id), subkey_of(b, id), 32);
    ss_keys_free(b);

    b = new_keys(); /* fresh randomness each time */
    assert_memory_not_equal(ss_keys_master(a), ss_keys_master(b), 32);
    assert_memory_not_equal(ss_keys_repo_id(a), ss_keys_repo_id(b), SS_REPO_ID_BYTES);
    ss_keys_free(b);
    ss_keys_free(a);
    ss_keys_free(NULL);

    b = (ss_keys *)1;
    assert_int_equal(ss_keys_from_master(NULL, want, &b, &err), SS_ERR_INVALID);
    assert_null(b);
}

static void test_kdf_env(void **state)
{
    (void)state;
    static const struct {
        const char *value; /* NULL: unset */
        ss_rc rc;
        uint64_t ops, mem;
    } cases[] = {
        {NULL, SS_OK, SS_KDF_OPSLIMIT_DEFAULT, SS_KDF_MEMLIMIT_DEFAULT},
        {"moderate", SS_OK, 3, 256ull << 20},
        {"interactive", SS_OK, 2, 64ull << 20},
        {"sensitive", SS_OK, 4, 1024ull << 20},
        {"fast", SS_ERR_INVALID, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_kdf_limits l;
        ss_err err = {{0}};
        if (cases[i].value)
            setenv(SS_KDF_ENV, cases[i].value, 1);
        else
            unsetenv(SS_KDF_ENV);
        assert_int_equal(ss_kdf_limits_from_env(&l, &err), cases[i].rc);
        if (cases[i].rc == SS_OK) {
            assert_int_equal(l.opslimit, cases[i].ops);
            assert_int_equal(l.memlimit, cases[i].mem);
        }
    }
    setenv(SS_KDF_ENV, "interactive", 1);
    /* The format's constants are libsodium's named limits. */
    assert_int_equal(SS_KDF_OPSLIMIT_MIN, crypto_pwhash_OPSLIMIT_INTERACTIVE);
    assert_int_equal(SS_KDF_MEMLIMIT_MIN, crypto_pwhash_MEMLIMIT_INTERACTIVE);
    assert_int_equal(SS_KDF_OPSLIMIT_DEFAULT, crypto_pwhash_OPSLIMIT_MODERATE);
    assert_int_equal(SS_KDF_MEMLIMIT_DEFAULT, crypto_pwhash_MEMLIMIT_MODERATE);
    assert_int_equal(SS_KDF_OPSLIMIT_MAX, crypto_pwhash_OPSLIMIT_SENSITIVE);
    assert_int_equal(SS_KDF_MEMLIMIT_MAX, crypto_pwhash_MEMLIMIT_SENSITIVE);
}

static void sealed_file(const ss_keys *k, uint8_t file[SS_KEYFILE_BYTES])
{
    ss_err err = {{0}};
    ss_rc rc = ss_keyfile_seal(k, PASS, strlen(PASS), NULL, file, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
}

static ss_rc open_file(const uint8_t *file, size_t len, const uint8_t *repo_id, const char *pass,
                       ss_keys **ret, ss_err *err)
{
    *ret = (ss_keys *)1; /* must come back NULL on failure */
    return ss_keyfile_open(file, len, repo_id, pass, strlen(pass), ret, err);
}

static void test_keyfile_roundtrip(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_BYTES], file2[SS_KEYFILE_BYTES];
    ss_err err = {{0}};

    sealed_file(k, file);
    assert_memory_equal(file, "S3SK", 4);
    assert_int_equal(file[4], 2);
    assert_int_equal(file[5], 2);
    assert_int_equal(file[6] | file[7], 0);
    assert_int_equal(le64(file + 8), 2); /* S3SYNC_KDF=interactive */
    assert_int_equal(le64(file + 16), 64u << 20);

    assert_int_equal(open_file(file, sizeof file, ss_keys_repo_id(k), PASS, &back, &err), SS_OK);
    assert_memory_equal(ss_keys_master(back), ss_keys_master(k), 32);
    assert_memory_equal(ss_keys_repo_id(back), ss_keys_repo_id(k), SS_REPO_ID_BYTES);
    ss_keys_free(back);

    /* Per-file salt and nonce: the same key twice gives two different files. */
    sealed_file(k, file2);
    assert_memory_not_equal(file + 24, file2 + 24, 16);
    assert_memory_not_equal(file + 40, file2 + 40, 24);

    /* Explicit limits are written as given. */
    ss_kdf_limits lim = {2, (64u << 20) + 1024};
    assert_int_equal(ss_keyfile_seal(k, "x", 1, &lim, file2, &err), SS_OK);
    assert_int_equal(le64(file2 + 16), (64u << 20) + 1024);
    assert_int_equal(open_file(file2, sizeof file2, ss_keys_repo_id(k), "x", &back, &err), SS_OK);
    ss_keys_free(back);
    ss_keys_free(k);
}

static void test_keyfile_wrong_passphrase_or_repo(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_BYTES], other_repo[SS_REPO_ID_BYTES];
    ss_err err = {{0}};

    sealed_file(k, file);
    assert_int_equal(open_file(file, sizeof file, ss_keys_repo_id(k), "wrong", &back, &err),
                     SS_ERR_PASSPHRASE);
    assert_null(back);
    assert_non_null(strstr(err.msg, "passphrase"));
    /* A key file moved to another repository: the repository id is in the AD. */
    memcpy(other_repo, ss_keys_repo_id(k), sizeof other_repo);
    other_repo[15] ^= 1;
    assert_int_equal(open_file(file, sizeof file, other_repo, PASS, &back, &err),
                     SS_ERR_PASSPHRASE);
    assert_null(back);
    ss_keys_free(k);
}

/*
 * Each header byte flipped (bit 7, which pushes any limit byte but the lowest
 * ones out of bounds). Structural bytes and out-of-bounds limits are refused
 * as malformed before the KDF; a changed salt, nonce or in-bounds limit is
 * authenticated through the AD and cannot be told from a wrong passphrase.
 */
static ss_rc expected_for_flip(size_t off)
{
    if (off < 6) return SS_ERR_INTEGRITY;  /* magic, version, alg */
    if (off < 8) return SS_ERR_PASSPHRASE; /* the epoch: authenticated through the AD */
    if (off < 16) return SS_ERR_INTEGRITY; /* opslimit >= 130 */
    if (off == 16 || off == 17 || off == 18) return SS_ERR_PASSPHRASE; /* +128 B..+8 MiB */
    if (off < 24) return SS_ERR_INTEGRITY;                             /* memlimit > 1 GiB */
    return SS_ERR_PASSPHRASE;                                          /* salt, nonce, sealed key */
}

static void test_keyfile_each_byte_flipped(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_BYTES];
    static const size_t sealed_offsets[] = {64, 80, 95, 96, 111, 119};
    size_t offsets[SS_KEYFILE_HEADER_BYTES + sizeof sealed_offsets / sizeof sealed_offsets[0]];
    size_t n = 0;

    for (size_t i = 0; i < SS_KEYFILE_HEADER_BYTES; i++)
        offsets[n++] = i;
    for (size_t i = 0; i < sizeof sealed_offsets / sizeof sealed_offsets[0]; i++)
        offsets[n++] = sealed_offsets[i];
    sealed_file(k, file);
    for (size_t i = 0; i < n; i++) {
        uint8_t bad[SS_KEYFILE_BYTES];
        ss_err err = {{0}};
        memcpy(bad, file, sizeof bad);
        bad[offsets[i]] ^= 0x80;
        ss_rc rc = open_file(bad, sizeof bad, ss_keys_repo_id(k), PASS, &back, &err);
        if (rc != expected_for_flip(offsets[i]))
            fprintf(stderr, "byte %zu: rc %d (%s)\n", offsets[i], rc, err.msg);
        assert_int_equal(rc, expected_for_flip(offsets[i]));
        assert_null(back);
        assert_true(err.msg[0] != '\0');
    }
    ss_keys_free(k);
}

static void test_keyfile_bad_length(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_BYTES + 1] = {0};
    ss_err err = {{0}};
    static const size_t lens[] = {0, 4, 111, 113};

    sealed_file(k, file);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        assert_int_equal(open_file(file, lens[i], ss_keys_repo_id(k), PASS, &back, &err),
                         SS_ERR_INTEGRITY);
        assert_null(back);
    }
    ss_keys_free(k);
}

/* A key file built from primitives, correctly sealed at any limits the library would refuse. */
static void hand_sealed(const ss_keys *k, uint64_t ops, uint64_t mem,
                        uint8_t file[SS_KEYFILE_BYTES])
{
    uint8_t pk[32], ad[80];

    memset(file, 0, SS_KEYFILE_BYTES);
    memcpy(file, "S3SK", 4);
    file[4] = 2;
    file[5] = crypto_pwhash_ALG_ARGON2ID13;
    put64(file + 8, ops);
    put64(file + 16, mem);
    randombytes_buf(file + 24, 16 + 24);
    assert_int_equal(crypto_pwhash(pk, sizeof pk, PASS, strlen(PASS), file + 24, ops, (size_t)mem,
                                   crypto_pwhash_ALG_ARGON2ID13),
                     0);
    memcpy(ad, file, 64);
    memcpy(ad + 64, ss_keys_repo_id(k), 16);
    uint8_t plain[40] = {0}; /* epoch 0's key, the master key, and its start: sequence 1 */
    memcpy(plain, ss_keys_master(k), 32);
    plain[32] = 1;
    crypto_aead_xchacha20poly1305_ietf_encrypt(file + 64, NULL, plain, sizeof plain, ad, sizeof ad,
                                               NULL, file + 40, pk);
    sodium_memzero(plain, sizeof plain);
    sodium_memzero(pk, sizeof pk);
}

static void test_keyfile_weak_limits_refused(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint64_t ops, mem;
        ss_rc rc;
    } cases[] = {
        {"minimum itself opens", 2, 64u << 20, SS_OK},
        {"opslimit 1", 1, 64u << 20, SS_ERR_INTEGRITY},
        {"memlimit 32 MiB", 2, 32u << 20, SS_ERR_INTEGRITY},
        {"memlimit 64 MiB - 1 KiB", 2, (64u << 20) - 1024, SS_ERR_INTEGRITY},
        {"both tiny", 1, 8192, SS_ERR_INTEGRITY},
    };
    ss_keys *k = new_keys();

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t file[SS_KEYFILE_BYTES];
        ss_keys *back = NULL;
        ss_err err = {{0}};
        hand_sealed(k, cases[i].ops, cases[i].mem, file);
        ss_rc rc = open_file(file, sizeof file, ss_keys_repo_id(k), PASS, &back, &err);
        if (rc != cases[i].rc) fprintf(stderr, "%s: %d %s\n", cases[i].name, rc, err.msg);
        assert_int_equal(rc, cases[i].rc);
        if (rc == SS_OK) {
            assert_memory_equal(ss_keys_master(back), ss_keys_master(k), 32);
            ss_keys_free(back);
        } else {
            assert_null(back);
            assert_non_null(strstr(err.msg, "key file asks for weaker KDF limits than allowed"));
        }
    }
    ss_keys_free(k);
}

/* Huge limits would run for hours: returning at all proves the check precedes the KDF. */
static void test_keyfile_huge_limits_refused(void **state)
{
    (void)state;
    static const struct {
        uint64_t ops, mem;
    } cases[] = {{1ull << 40, 64u << 20}, {2, 1ull << 50}, {5, 256u << 20}, {2, (1ull << 30) + 1}};
    ss_keys *k = new_keys();
    uint8_t file[SS_KEYFILE_BYTES];

    sealed_file(k, file);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_keys *back = NULL;
        ss_err err = {{0}};
        put64(file + 8, cases[i].ops);
        put64(file + 16, cases[i].mem);
        assert_int_equal(open_file(file, sizeof file, ss_keys_repo_id(k), PASS, &back, &err),
                         SS_ERR_INTEGRITY);
        assert_null(back);
        assert_non_null(strstr(err.msg, "stronger KDF limits"));
    }
    ss_keys_free(k);
}

static void test_keyfile_seal_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *pass;
        ss_kdf_limits lim;
    } cases[] = {
        {"empty passphrase", "", {2, 64u << 20}},  {"opslimit below", PASS, {1, 64u << 20}},
        {"memlimit below", PASS, {2, 1u << 20}},   {"opslimit above", PASS, {5, 64u << 20}},
        {"memlimit above", PASS, {2, 2ull << 30}},
    };
    ss_keys *k = new_keys();

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t file[SS_KEYFILE_BYTES];
        ss_err err = {{0}};
        memset(file, 0xAA, sizeof file);
        assert_int_equal(
            ss_keyfile_seal(k, cases[i].pass, strlen(cases[i].pass), &cases[i].lim, file, &err),
            SS_ERR_INVALID);
        for (size_t j = 0; j < sizeof file; j++)
            assert_int_equal(file[j], 0);
    }
    setenv(SS_KDF_ENV, "bogus", 1);
    uint8_t file[SS_KEYFILE_BYTES];
    ss_err err = {{0}};
    assert_int_equal(ss_keyfile_seal(k, PASS, strlen(PASS), NULL, file, &err), SS_ERR_INVALID);
    setenv(SS_KDF_ENV, "interactive", 1);
    ss_keys_free(k);
}

/* ---- config ---- */

static void encoded_config(const ss_keys *k, uint8_t out[SS_CONFIG_BYTES])
{
    ss_config c;
    ss_err err = {{0}};
    ss_config_init(&c, k, 1700000000);
    assert_int_equal(ss_config_encode(k, &c, out, &err), SS_OK);
}

static void remac(const ss_keys *k, uint8_t buf[SS_CONFIG_BYTES])
{
    crypto_generichash(buf + 64, 32, buf, 64, ss_keys_subkey(k, SS_SUBKEY_CONFIG), 32);
}

static void test_config_roundtrip(void **state)
{
    (void)state;
    ss_keys *k = new_keys();
    uint8_t buf[SS_CONFIG_BYTES], mac[32];
    ss_config c, back;
    ss_err err = {{0}};

    ss_config_init(&c, k, 1700000000);
    assert_int_equal(c.chunker.min_size, ss_chunker_default.min_size);
    assert_int_equal(c.chunker.avg_size, ss_chunker_default.avg_size);
    assert_int_equal(c.chunker.max_size, ss_chunker_default.max_size);
    assert_int_equal(c.inline_limit, SS_CONFIG_DEFAULT_INLINE_LIMIT);
    assert_int_equal(c.zstd_level, SS_CONFIG_DEFAULT_ZSTD_LEVEL);
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_OK);

    /* Layout, field by field, as FORMAT.md gives it. */
    assert_memory_equal(buf, "S3SC", 4);
    assert_int_equal(buf[4], 2);
    assert_int_equal(buf[5], 1); /* cipher suite */
    assert_int_equal(buf[6], 2); /* Argon2id */
    assert_int_equal(buf[7], 0);
    assert_memory_equal(buf + 8, ss_keys_repo_id(k), 16);
    assert_int_equal(buf[24] | buf[25] << 8 | buf[26] << 16 | (uint32_t)buf[27] << 24,
                     c.chunker.min_size);
    assert_int_equal(buf[36] | buf[37] << 8, 4096);
    assert_int_equal(buf[40], 3);
    assert_int_equal(le64(buf + 48), 1700000000);
    assert_int_equal(buf[56] | buf[57] << 8, 2);                         /* floor: opslimit */
    assert_int_equal(buf[60] | buf[61] << 8 | buf[62] << 16, 64 * 1024); /* and KiB */
    crypto_generichash(mac, 32, buf, 64, ss_keys_subkey(k, SS_SUBKEY_CONFIG), 32);
    assert_memory_equal(buf + 64, mac, 32);

    /* The join path: unverified id first, then the MAC. */
    assert_int_equal(ss_config_parse_unverified(buf, sizeof buf, &back, &err), SS_OK);
    assert_memory_equal(back.repo_id, ss_keys_repo_id(k), 16);
    assert_int_equal(ss_config_verify(k, buf, sizeof buf, &err), SS_OK);
    assert_int_equal(ss_config_open(k, buf, sizeof buf, &back, &err), SS_OK);
    assert_int_equal(back.version, 2);
    assert_int_equal(back.chunker.avg_size, c.chunker.avg_size);
    assert_int_equal(back.chunker.max_size, c.chunker.max_size);
    assert_int_equal(back.inline_limit, c.inline_limit);
    assert_int_equal(back.zstd_level, c.zstd_level);
    assert_int_equal(back.created, c.created);
    assert_int_equal(back.kdf_min.opslimit, SS_KDF_OPSLIMIT_MIN);
    assert_int_equal(back.kdf_min.memlimit, SS_KDF_MEMLIMIT_MIN);
    ss_keys_free(k);
}

static void test_config_each_byte_flipped(void **state)
{
    (void)state;
    ss_keys *k = new_keys();
    uint8_t buf[SS_CONFIG_BYTES];

    encoded_config(k, buf);
    for (size_t i = 0; i < sizeof buf; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            uint8_t bad[SS_CONFIG_BYTES];
            ss_config c;
            ss_err err = {{0}};
            memcpy(bad, buf, sizeof bad);
            bad[i] ^= (uint8_t)(1u << bit);
            c.zstd_level = 77;
            assert_int_equal(ss_config_open(k, bad, sizeof bad, &c, &err), SS_ERR_INTEGRITY);
            assert_int_equal(c.zstd_level, 0); /* cleared, not half-filled */
            assert_non_null(strstr(err.msg, "config"));
        }
    }
    ss_keys_free(k);
}

/* Fields the MAC vouches for but the format forbids: refused even when correctly MAC'd. */
static void test_config_bad_fields(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t off;
        uint8_t value;
    } cases[] = {
        {"version 3", 4, 3},
        {"version 1 (before key epochs)", 4, 1},
        {"version 0", 4, 0},
        {"cipher suite 0", 5, 0},
        {"cipher suite 2", 5, 2},
        {"KDF algorithm 1 (Argon2i)", 6, 1},
        {"reserved after KDF algorithm", 7, 1},
        {"reserved after zstd level", 44, 1},
        {"KDF floor opslimit 1", 56, 1},
        {"KDF floor opslimit 5", 56, 5},
        {"KDF floor memlimit 0", 62, 0}, /* 64 MiB is 0x10000 KiB */
        {"KDF floor memlimit 2 GiB", 62, 0x20},
        {"zstd level 0", 40, 0},
        {"zstd level 20", 40, 20},
        {"min size above avg", 26, 0x7f}, /* min = 0x7f0000 + ... */
        {"avg not a power of two", 28, 1},
        {"max above 8 MiB", 35, 1},
        {"inline limit above 1 MiB", 38, 0x20},
    };
    ss_keys *k = new_keys();
    uint8_t buf[SS_CONFIG_BYTES];

    encoded_config(k, buf);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t bad[SS_CONFIG_BYTES];
        ss_config c;
        ss_err err = {{0}};
        memcpy(bad, buf, sizeof bad);
        bad[cases[i].off] = cases[i].value;
        remac(k, bad);
        assert_int_equal(ss_config_verify(k, bad, sizeof bad, &err), SS_OK);
        ss_rc rc = ss_config_parse_unverified(bad, sizeof bad, &c, &err);
        if (rc != SS_ERR_INTEGRITY) fprintf(stderr, "%s: accepted\n", cases[i].name);
        assert_int_equal(rc, SS_ERR_INTEGRITY);
        assert_int_equal(ss_config_open(k, bad, sizeof bad, &c, &err), SS_ERR_INTEGRITY);
    }
    ss_keys_free(k);
}

static void test_config_other_repo_and_length(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *other = new_keys(), *same_master = NULL;
    uint8_t buf[SS_CONFIG_BYTES + 1] = {0};
    ss_config c;
    ss_err err = {{0}};

    encoded_config(k, buf);
    assert_int_equal(ss_config_verify(other, buf, SS_CONFIG_BYTES, &err), SS_ERR_INTEGRITY);
    /* Same master key, other repository id: MAC holds, id check refuses. */
    assert_int_equal(
        ss_keys_from_master(ss_keys_master(k), ss_keys_repo_id(other), &same_master, &err), SS_OK);
    assert_int_equal(ss_config_verify(same_master, buf, SS_CONFIG_BYTES, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "another repository"));
    assert_int_equal(ss_config_open(k, buf, SS_CONFIG_BYTES - 1, &c, &err), SS_ERR_INTEGRITY);
    assert_int_equal(ss_config_open(k, buf, SS_CONFIG_BYTES + 1, &c, &err), SS_ERR_INTEGRITY);
    assert_int_equal(ss_config_verify(k, buf, 0, &err), SS_ERR_INTEGRITY);
    ss_keys_free(same_master);
    ss_keys_free(other);
    ss_keys_free(k);
}

static void test_config_encode_refuses(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *other = new_keys();
    uint8_t buf[SS_CONFIG_BYTES];
    ss_config c;
    ss_err err = {{0}};

    ss_config_init(&c, k, 1);
    assert_int_equal(ss_config_encode(other, &c, buf, &err), SS_ERR_INVALID);
    c.chunker.min_size = c.chunker.avg_size;
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_ERR_INVALID);
    ss_config_init(&c, k, 1);
    c.zstd_level = 22;
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_ERR_INVALID);
    ss_keys_free(other);
    ss_keys_free(k);
}

/* Key files against the repository's floor: at or above it passes, below it is a downgrade. */
static void test_config_kdf_floor(void **state)
{
    (void)state;
    static const struct {
        uint64_t ops, mem;
        ss_rc rc;
    } cases[] = {
        {3, 256ull << 20, SS_OK},
        {4, 1024ull << 20, SS_OK},
        {2, 256ull << 20, SS_ERR_INTEGRITY},
        {3, (256ull << 20) - 1024, SS_ERR_INTEGRITY},
        {2, 64ull << 20, SS_ERR_INTEGRITY},
    };
    ss_keys *k = new_keys();
    ss_config c, back;
    uint8_t buf[SS_CONFIG_BYTES];
    ss_err err = {{0}};
    ss_config_init(&c, k, 1);
    c.kdf_min = (ss_kdf_limits){3, 256ull << 20};
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_OK);
    assert_int_equal(ss_config_open(k, buf, sizeof buf, &back, &err), SS_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_kdf_limits l = {cases[i].ops, cases[i].mem};
        assert_int_equal(ss_config_check_kdf(&back, &l, "keys/x", &err), cases[i].rc);
        if (cases[i].rc) assert_non_null(strstr(err.msg, "keys/x"));
    }
    /* A floor outside the format's bounds does not encode. */
    c.kdf_min = (ss_kdf_limits){1, 256ull << 20};
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_ERR_INVALID);
    c.kdf_min = (ss_kdf_limits){3, (256ull << 20) + 1};
    assert_int_equal(ss_config_encode(k, &c, buf, &err), SS_ERR_INVALID);
    ss_keys_free(k);
}

/* The fingerprint commits to the repository id and the master key, and reads back from text. */
static void test_fingerprint(void **state)
{
    (void)state;
    ss_keys *a = new_keys(), *b = new_keys(), *same = NULL, *id_only = NULL, *master_only = NULL;
    uint8_t fa[16], fb[16], f2[16], parsed[16], want[16];
    char text[SS_FINGERPRINT_TEXT];
    ss_err err = {{0}};
    crypto_generichash_state h;

    ss_keys_fingerprint(a, fa);
    ss_keys_fingerprint(b, fb);
    assert_memory_not_equal(fa, fb, 16);
    assert_int_equal(ss_keys_from_master(ss_keys_master(a), ss_keys_repo_id(a), &same, &err),
                     SS_OK);
    ss_keys_fingerprint(same, f2);
    assert_memory_equal(fa, f2, 16);
    /* Either half swapped changes it: a look-alike needs both. */
    assert_int_equal(ss_keys_from_master(ss_keys_master(b), ss_keys_repo_id(a), &id_only, &err),
                     SS_OK);
    ss_keys_fingerprint(id_only, f2);
    assert_memory_not_equal(fa, f2, 16);
    assert_int_equal(ss_keys_from_master(ss_keys_master(a), ss_keys_repo_id(b), &master_only, &err),
                     SS_OK);
    ss_keys_fingerprint(master_only, f2);
    assert_memory_not_equal(fa, f2, 16);

    /* As FORMAT.md writes it: BLAKE2b-128(subkey 6; label || repository id). */
    uint8_t sub[32];
    crypto_kdf_derive_from_key(sub, 32, 6, "s3sync01", ss_keys_master(a));
    crypto_generichash_init(&h, sub, 32, 16);
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-fingerprint-v1", 21);
    crypto_generichash_update(&h, ss_keys_repo_id(a), 16);
    crypto_generichash_final(&h, want, 16);
    assert_memory_equal(fa, want, 16);

    ss_fingerprint_text(fa, text);
    assert_int_equal(strlen(text), 39);
    for (int i = 4; i < 39; i += 5)
        assert_int_equal(text[i], '-');
    assert_int_equal(ss_fingerprint_parse(text, parsed, &err), SS_OK);
    assert_memory_equal(parsed, fa, 16);
    static const struct {
        const char *text;
        ss_rc rc;
    } cases[] = {
        {"00112233445566778899aabbccddeeff", SS_OK},
        {"0011-2233-4455-6677-8899-AABB-CCDD-EEFF", SS_OK},
        {"00:11:22:33 44:55:66:77 88:99:aa:bb cc:dd:ee:ff", SS_OK},
        {"0011-2233-4455-6677-8899-aabb-ccdd-eeff\n", SS_OK}, /* pasted with its newline */
        {"  0011-2233-4455-6677-8899-aabb-ccdd-eeff \t", SS_OK},
        {"00112233445566778899aabbccddeeff 0", SS_ERR_INVALID}, /* more after the separators */
        {"00112233445566778899aabbccddeeff x", SS_ERR_INVALID},
        {"00112233445566778899aabbccddeef", SS_ERR_INVALID},   /* 31 digits */
        {"00112233445566778899aabbccddeeff0", SS_ERR_INVALID}, /* 33 */
        {"00112233445566778899aabbccddeefg", SS_ERR_INVALID},
        {"", SS_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ss_fingerprint_parse(cases[i].text, parsed, &err), cases[i].rc);
        if (cases[i].rc == SS_OK) assert_int_equal(parsed[15], 0xff);
    }
    ss_keys_free(master_only);
    ss_keys_free(id_only);
    ss_keys_free(same);
    ss_keys_free(b);
    ss_keys_free(a);
}

/* ---- info trailer (FORMAT.md "Key file info trailer") ---- */

static void info_file(const ss_keys *k, const char *label, uint8_t file[SS_KEYFILE_INFO_BYTES])
{
    ss_err err = {{0}};
    ss_rc rc = ss_keyfile_seal_info(k, PASS, strlen(PASS), NULL, 1700000000u, label, file, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
}

/* A trailer sealed by hand over plaintext plain: for what the library refuses to write. */
static void hand_trailer(const ss_keys *k, uint8_t file[SS_KEYFILE_INFO_BYTES],
                         const uint8_t plain[SS_KEYFILE_INFO_PLAIN_BYTES])
{
    uint8_t ad[SS_KEYFILE_BYTES + SS_REPO_ID_BYTES];
    memcpy(ad, file, SS_KEYFILE_BYTES);
    memcpy(ad + SS_KEYFILE_BYTES, ss_keys_repo_id(k), SS_REPO_ID_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(file + 144, NULL, plain, SS_KEYFILE_INFO_PLAIN_BYTES,
                                               ad, sizeof ad, NULL, file + 120,
                                               ss_keys_subkey(k, SS_SUBKEY_KEYINFO));
}

static void test_keyinfo_roundtrip(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_INFO_BYTES], other[SS_KEYFILE_INFO_BYTES];
    uint8_t plain[SS_KEYFILE_INFO_PLAIN_BYTES] = {0};
    char longest[SS_KEYFILE_LABEL_MAX + 2];
    ss_keyfile_info info;
    ss_err err = {{0}};

    info_file(k, "laptop", file);
    assert_int_equal(sizeof file, 424);
    /* The passphrase opens the 424-byte file, and its 120-byte prefix alone (a file without
     * trailer). */
    assert_int_equal(open_file(file, sizeof file, ss_keys_repo_id(k), PASS, &back, &err), SS_OK);
    assert_memory_equal(ss_keys_master(back), ss_keys_master(k), 32);
    ss_keys_free(back);
    assert_int_equal(open_file(file, 120, ss_keys_repo_id(k), PASS, &back, &err), SS_OK);
    ss_keys_free(back);

    assert_int_equal(ss_keyfile_info_open(k, file, sizeof file, &info, &err), SS_OK);
    assert_true(info.present);
    assert_int_equal(info.created, 1700000000u);
    assert_string_equal(info.label, "laptop");
    assert_int_equal(ss_keyfile_info_open(k, file, 120, &info, &err), SS_OK);
    assert_false(info.present);
    assert_int_equal(info.created, 0);
    assert_string_equal(info.label, "");

    /* The plaintext is every byte as FORMAT.md says: created, L, label, zeros. */
    put64(plain, 1700000000u);
    plain[8] = 6;
    memcpy(plain + 9, "laptop", 6);
    memcpy(other, file, sizeof other);
    hand_trailer(k, other, plain);
    assert_memory_equal(other + 144, file + 144, SS_KEYFILE_INFO_SEALED_BYTES);

    /* Empty and longest labels; the size tells nothing of the label's length. */
    info_file(k, "", other);
    assert_int_equal(ss_keyfile_info_open(k, other, sizeof other, &info, &err), SS_OK);
    assert_true(info.present);
    assert_string_equal(info.label, "");
    memset(longest, 'x', SS_KEYFILE_LABEL_MAX);
    longest[SS_KEYFILE_LABEL_MAX] = '\0';
    info_file(k, longest, other);
    assert_int_equal(ss_keyfile_info_open(k, other, sizeof other, &info, &err), SS_OK);
    assert_string_equal(info.label, longest);

    /* Refused at seal: too long, control characters. */
    longest[SS_KEYFILE_LABEL_MAX] = 'x';
    longest[SS_KEYFILE_LABEL_MAX + 1] = '\0';
    assert_int_equal(ss_keyfile_seal_info(k, PASS, strlen(PASS), NULL, 1, longest, other, &err),
                     SS_ERR_INVALID);
    assert_int_equal(ss_keyfile_seal_info(k, PASS, strlen(PASS), NULL, 1, "a\nb", other, &err),
                     SS_ERR_INVALID);
    assert_int_equal(ss_keyfile_seal_info(k, PASS, strlen(PASS), NULL, 1, "a\x7f", other, &err),
                     SS_ERR_INVALID);
    ss_keys_free(k);
}

static void test_keyinfo_tampered(void **state)
{
    (void)state;
    ss_keys *k = new_keys(), *stranger = new_keys(), *back = NULL;
    uint8_t file[SS_KEYFILE_INFO_BYTES], other[SS_KEYFILE_INFO_BYTES], bad[4096] = {0};
    uint8_t plain[SS_KEYFILE_INFO_PLAIN_BYTES] = {0};
    static const size_t lens[] = {0, 111, 113, 135, 160, 415, 417, 1024, 4096};
    ss_keyfile_info info;
    ss_err err = {{0}};

    info_file(k, "laptop", file);
    /* Every byte: the trailer binds the whole 120-byte prefix as well as itself. */
    for (size_t i = 0; i < sizeof file; i++) {
        memcpy(bad, file, sizeof file);
        bad[i] ^= 0x01;
        info.present = 7;
        assert_int_equal(ss_keyfile_info_open(k, bad, sizeof file, &info, &err), SS_ERR_INTEGRITY);
        assert_false(info.present);
    }
    assert_non_null(strstr(err.msg, "info trailer"));
    /* A damaged trailer does not lock the passphrase out. */
    memcpy(bad, file, sizeof file);
    bad[300] ^= 0x01;
    assert_int_equal(open_file(bad, sizeof file, ss_keys_repo_id(k), PASS, &back, &err), SS_OK);
    ss_keys_free(back);

    /* Cut, extended, oversized: not a key file's size, for both readers. */
    memcpy(bad, file, sizeof file);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        assert_int_equal(ss_keyfile_info_open(k, bad, lens[i], &info, &err), SS_ERR_INTEGRITY);
        assert_int_equal(open_file(bad, lens[i], ss_keys_repo_id(k), PASS, &back, &err),
                         SS_ERR_INTEGRITY);
        assert_null(back);
    }

    /* Moved: another key file's trailer on this one's prefix, or another repository's keys. */
    info_file(k, "laptop", other);
    memcpy(bad, file, 120);
    memcpy(bad + 120, other + 120, sizeof file - 120);
    assert_int_equal(ss_keyfile_info_open(k, bad, sizeof file, &info, &err), SS_ERR_INTEGRITY);
    assert_int_equal(ss_keyfile_info_open(stranger, file, sizeof file, &info, &err),
                     SS_ERR_INTEGRITY);

    /* Authentic but malformed: a control byte, or nonzero bytes after the label. */
    put64(plain, 1);
    plain[8] = 3;
    memcpy(plain + 9, "a\tb", 3);
    hand_trailer(k, file, plain);
    assert_int_equal(ss_keyfile_info_open(k, file, sizeof file, &info, &err), SS_ERR_INTEGRITY);
    memcpy(plain + 9, "abc", 3);
    plain[9 + 3] = 'd';
    hand_trailer(k, file, plain);
    assert_int_equal(ss_keyfile_info_open(k, file, sizeof file, &info, &err), SS_ERR_INTEGRITY);
    plain[9 + 3] = 0;
    hand_trailer(k, file, plain);
    assert_int_equal(ss_keyfile_info_open(k, file, sizeof file, &info, &err), SS_OK);
    assert_string_equal(info.label, "abc");
    ss_keys_free(stranger);
    ss_keys_free(k);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    setenv(SS_KDF_ENV, "interactive", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subkeys),
        cmocka_unit_test(test_kdf_env),
        cmocka_unit_test(test_keyfile_roundtrip),
        cmocka_unit_test(test_keyfile_wrong_passphrase_or_repo),
        cmocka_unit_test(test_keyfile_each_byte_flipped),
        cmocka_unit_test(test_keyfile_bad_length),
        cmocka_unit_test(test_keyfile_weak_limits_refused),
        cmocka_unit_test(test_keyfile_huge_limits_refused),
        cmocka_unit_test(test_keyfile_seal_refuses),
        cmocka_unit_test(test_keyinfo_roundtrip),
        cmocka_unit_test(test_keyinfo_tampered),
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_config_each_byte_flipped),
        cmocka_unit_test(test_config_bad_fields),
        cmocka_unit_test(test_config_other_repo_and_length),
        cmocka_unit_test(test_config_encode_refuses),
        cmocka_unit_test(test_config_kdf_floor),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
