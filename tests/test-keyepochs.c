/*
 * test-keyepochs: what an ss_keys holds across key epochs, and how framed
 * objects and sealed chunks follow them (docs/FORMAT.md "Key epochs",
 * "Framed objects", "Sealed chunks and data/ packs"). Keys that lack an
 * epoch read nothing sealed under it and say which epoch they lack; keys
 * that hold it read it and everything older; an object sealed under an
 * epoch that is not the one in force at its sequence is refused, so a key a
 * revoked device still holds opens nothing written after its revocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunker.h"
#include "frame.h"
#include "keys.h"
#include "seal.h"

#define COUNT(a) (sizeof(a) / sizeof *(a))
#define START1 5 /* epoch 1 begins at log/5 */
#define START2 9

static const uint8_t ZERO_CHAIN[SS_CHAIN_BYTES];

static int discard(void *ctx, const void *buf, size_t len)
{
    (void)ctx, (void)buf, (void)len;
    return 0;
}

typedef struct fixture {
    ss_keys *k0;            /* epoch 0 only: a device revoked at START1 */
    ss_keys *k1;            /* epochs 0 and 1 */
    ss_keys *k2;            /* epochs 0..2 */
    uint8_t e1[32], e2[32]; /* K_1, K_2 */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    ss_err err = {{0}};

    assert_int_equal(ss_keys_generate(&f->k0, &err), SS_OK);
    randombytes_buf(f->e1, sizeof f->e1);
    randombytes_buf(f->e2, sizeof f->e2);
    assert_int_equal(ss_keys_with_epoch(f->k0, 1, START1, f->e1, &f->k1, &err), SS_OK);
    assert_int_equal(ss_keys_with_epoch(f->k1, 2, START2, f->e2, &f->k2, &err), SS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ss_keys_free(f->k0);
    ss_keys_free(f->k1);
    ss_keys_free(f->k2);
    free(f);
    return 0;
}

static void test_epochs_held(void **state)
{
    fixture *f = *state;
    uint8_t want[32];

    assert_int_equal(ss_keys_epoch(f->k0), 0);
    assert_int_equal(ss_keys_epoch(f->k2), 2);
    assert_int_equal(ss_keys_epoch_start(f->k2, 0), 1);
    assert_int_equal(ss_keys_epoch_start(f->k2, 1), START1);
    assert_int_equal(ss_keys_epoch_start(f->k2, 2), START2);
    assert_int_equal(ss_keys_epoch_start(f->k1, 2), 0);
    assert_memory_equal(ss_keys_epoch_key(f->k2, 0), ss_keys_master(f->k2), 32);
    assert_memory_equal(ss_keys_epoch_key(f->k2, 1), f->e1, 32);
    assert_null(ss_keys_epoch_key(f->k1, 2));
    /* Epoch E's content subkeys, recomputed as FORMAT.md states them. */
    crypto_kdf_derive_from_key(want, 32, 3, "s3sync-e", f->e1);
    assert_memory_equal(ss_keys_content_key(f->k2, 1, SS_SUBKEY_OBJECT), want, 32);
    crypto_kdf_derive_from_key(want, 32, 4, "s3sync-e", f->e1);
    assert_memory_equal(ss_keys_content_key(f->k2, 1, SS_SUBKEY_CHUNK), want, 32);
    /* Identity subkeys do not change with the epoch. */
    assert_memory_equal(ss_keys_subkey(f->k0, SS_SUBKEY_CHUNK_ID),
                        ss_keys_subkey(f->k2, SS_SUBKEY_CHUNK_ID), 32);
    assert_memory_equal(ss_keys_master(f->k0), ss_keys_master(f->k2), 32);

    static const struct {
        uint64_t seq;
        uint32_t in_k0, in_k1, in_k2;
    } at[] = {
        {0, 0, 0, 0},          {1, 0, 0, 0},      {START1 - 1, 0, 0, 0}, {START1, 0, 1, 1},
        {START2 - 1, 0, 1, 1}, {START2, 0, 1, 2}, {UINT64_MAX, 0, 1, 2},
    };
    for (size_t i = 0; i < COUNT(at); i++) {
        assert_int_equal(ss_keys_epoch_at(f->k0, at[i].seq), at[i].in_k0);
        assert_int_equal(ss_keys_epoch_at(f->k1, at[i].seq), at[i].in_k1);
        assert_int_equal(ss_keys_epoch_at(f->k2, at[i].seq), at[i].in_k2);
    }
}

static void test_with_epoch_refuses(void **state)
{
    fixture *f = *state;
    uint8_t other[32];
    ss_keys *k = (ss_keys *)1;
    ss_err err = {{0}};
    static const struct {
        const char *name;
        uint32_t epoch;
        uint64_t start;
        int other_key;
        ss_rc rc;
    } cases[] = {
        {"epoch 0 (the master key)", 0, 1, 0, SS_ERR_INVALID},
        {"a gap: epoch 3 after 1", 3, START2 + 5, 0, SS_ERR_INVALID},
        {"starts where epoch 1 does", 2, START1, 0, SS_ERR_INTEGRITY},
        {"starts before epoch 1", 2, START1 - 1, 0, SS_ERR_INTEGRITY},
        {"epoch 1 again, another start", 1, START1 + 1, 0, SS_ERR_INTEGRITY},
        {"epoch 1 again, another key", 1, START1, 1, SS_ERR_INTEGRITY},
        {"above SS_EPOCHS_MAX", SS_EPOCHS_MAX + 1, UINT64_MAX, 0, SS_ERR_INVALID},
    };

    randombytes_buf(other, sizeof other);
    for (size_t i = 0; i < COUNT(cases); i++) {
        k = (ss_keys *)1;
        ss_rc rc = ss_keys_with_epoch(f->k1, cases[i].epoch, cases[i].start,
                                      cases[i].other_key ? other : f->e1, &k, &err);
        if (rc != cases[i].rc) fprintf(stderr, "%s: %d %s\n", cases[i].name, rc, err.msg);
        assert_int_equal(rc, cases[i].rc);
        assert_null(k);
    }
    /* The same epoch again, same key and start: a copy. */
    assert_int_equal(ss_keys_with_epoch(f->k1, 1, START1, f->e1, &k, &err), SS_OK);
    assert_int_equal(ss_keys_epoch(k), 1);
    assert_memory_equal(ss_keys_content_key(k, 1, SS_SUBKEY_OBJECT),
                        ss_keys_content_key(f->k1, 1, SS_SUBKEY_OBJECT), 32);
    ss_keys_free(k);
}

static void *seal(const ss_keys *k, unsigned kind, uint64_t seq, size_t *ret_len)
{
    char key[SS_KEY_NAME_MAX];
    void *obj = NULL;
    ss_err err = {{0}};

    snprintf(key, sizeof key, kind == SS_FRAME_KIND_LOG ? SS_KEY_LOG_FMT : SS_KEY_CHECKPOINT_FMT,
             seq);
    assert_int_equal(
        ss_frame_seal_buf(k, kind, key, seq, ZERO_CHAIN, 3, "hello", 5, &obj, ret_len, NULL, &err),
        SS_OK);
    return obj;
}

static ss_rc open_as(const ss_keys *k, unsigned kind, uint64_t seq, const void *obj, size_t len,
                     ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    void *plain = NULL;
    size_t plen = 0;

    snprintf(key, sizeof key, kind == SS_FRAME_KIND_LOG ? SS_KEY_LOG_FMT : SS_KEY_CHECKPOINT_FMT,
             seq);
    ss_rc rc =
        ss_frame_open_buf(k, kind, key, seq, ZERO_CHAIN, 1024, obj, len, &plain, &plen, NULL, err);
    if (rc == SS_OK) assert_true(plen == 5 && !memcmp(plain, "hello", 5));
    free(plain);
    return rc;
}

/* Objects are written under the newest epoch held, and say so in their header. */
static void test_frames_across_epochs(void **state)
{
    fixture *f = *state;
    size_t len = 0;
    ss_err err = {{0}};
    static const struct {
        const char *name;
        int writer, reader; /* k0, k1, k2 */
        unsigned kind;
        uint64_t seq;
        ss_rc rc;
    } cases[] = {
        {"epoch 0 log read by its device", 0, 0, SS_FRAME_KIND_LOG, 3, SS_OK},
        {"epoch 0 log read after two epochs", 0, 2, SS_FRAME_KIND_LOG, 3, SS_OK},
        {"epoch 1 log, revoked device", 1, 0, SS_FRAME_KIND_LOG, START1, SS_ERR_EPOCH},
        {"epoch 2 log, device at epoch 1", 2, 1, SS_FRAME_KIND_LOG, START2, SS_ERR_EPOCH},
        {"epoch 1 log read with epoch 2", 1, 2, SS_FRAME_KIND_LOG, START1 + 1, SS_OK},
        {"epoch 1 log where 2 is in force", 1, 2, SS_FRAME_KIND_LOG, START2, SS_ERR_INTEGRITY},
        {"epoch 0 log where 1 is in force", 0, 1, SS_FRAME_KIND_LOG, START1, SS_ERR_INTEGRITY},
        {"epoch 1 log before epoch 1", 1, 1, SS_FRAME_KIND_LOG, START1 - 1, SS_ERR_INTEGRITY},
        {"epoch 2 checkpoint of an older seq", 2, 2, SS_FRAME_KIND_CHECKPOINT, 3, SS_OK},
        {"epoch 0 checkpoint where 1 is in force", 0, 1, SS_FRAME_KIND_CHECKPOINT, START1 + 1,
         SS_ERR_INTEGRITY},
        {"epoch 1 checkpoint, revoked device", 1, 0, SS_FRAME_KIND_CHECKPOINT, 3, SS_ERR_EPOCH},
    };
    const ss_keys *k[] = {f->k0, f->k1, f->k2};

    for (size_t i = 0; i < COUNT(cases); i++) {
        void *obj = seal(k[cases[i].writer], cases[i].kind, cases[i].seq, &len);
        ss_rc rc = open_as(k[cases[i].reader], cases[i].kind, cases[i].seq, obj, len, &err);
        if (rc != cases[i].rc) fprintf(stderr, "%s: %d %s\n", cases[i].name, rc, err.msg);
        assert_int_equal(rc, cases[i].rc);
        if (rc == SS_ERR_EPOCH) assert_non_null(strstr(err.msg, "does not hold"));
        free(obj);
    }
}

/* The reader says which epoch it lacks and where that epoch begins: where epochs/ has it. */
static void test_reader_names_the_epoch(void **state)
{
    fixture *f = *state;
    size_t len = 0;
    uint32_t epoch = 7;
    uint64_t start = 7;
    ss_frame_reader *r = NULL;
    ss_err err = {{0}};
    uint8_t *obj = seal(f->k2, SS_FRAME_KIND_LOG, START2 + 3, &len);
    char key[SS_KEY_NAME_MAX];

    snprintf(key, sizeof key, SS_KEY_LOG_FMT, (uint64_t)START2 + 3);
    assert_int_equal(ss_frame_reader_new(f->k1, SS_FRAME_KIND_LOG, key, START2 + 3, ZERO_CHAIN,
                                         1024, discard, NULL, &r, &err),
                     SS_OK);
    assert_int_equal(ss_frame_reader_epoch(r, &epoch, &start), SS_ERR_NOT_FOUND);
    assert_true(epoch == 0 && start == 0);
    assert_int_equal(ss_frame_feed(r, obj, 10, &err), SS_OK); /* not the whole header yet */
    assert_int_equal(ss_frame_reader_epoch(r, &epoch, &start), SS_ERR_NOT_FOUND);
    assert_int_equal(ss_frame_feed(r, obj + 10, len - 10, &err), SS_ERR_EPOCH);
    assert_non_null(strstr(err.msg, "epoch 2"));
    assert_int_equal(ss_frame_reader_epoch(r, &epoch, &start), SS_OK);
    assert_int_equal(epoch, 2);
    assert_int_equal(start, START2);
    assert_int_equal(ss_frame_end(r, NULL, &err), SS_ERR_EPOCH); /* sticky */
    ss_frame_reader_free(r);

    /* A header that moves the epoch's start is refused by a device that holds the epoch. */
    obj[SS_FRAME_OFF_START] ^= 1;
    assert_int_equal(open_as(f->k2, SS_FRAME_KIND_LOG, START2 + 3, obj, len, &err),
                     SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "said to begin"));
    free(obj);
}

static void test_chunks_across_epochs(void **state)
{
    fixture *f = *state;
    uint8_t id[SS_CHUNK_ID_LEN];
    void *sealed = NULL, *plain = NULL;
    size_t slen = 0, plen = 0;
    ss_err err = {{0}};

    ss_chunk_id(ss_keys_subkey(f->k2, SS_SUBKEY_CHUNK_ID), "chunk", 5, id);
    assert_int_equal(ss_chunk_seal(f->k2, 1, id, "chunk", 5, 0, 3, &sealed, &slen, &err), SS_OK);
    /* Held: opens under epoch 1 with k1 or k2; not under another epoch's key. */
    assert_int_equal(ss_chunk_open(f->k1, 1, id, sealed, slen, 5, &plain, &plen, &err), SS_OK);
    assert_true(plen == 5 && !memcmp(plain, "chunk", 5));
    free(plain);
    assert_int_equal(ss_chunk_open(f->k2, 2, id, sealed, slen, 5, &plain, &plen, &err),
                     SS_ERR_INTEGRITY);
    assert_int_equal(ss_chunk_open(f->k2, 0, id, sealed, slen, 5, &plain, &plen, &err),
                     SS_ERR_INTEGRITY);
    /* Not held: the revoked device is told which epoch it lacks. */
    assert_int_equal(ss_chunk_open(f->k0, 1, id, sealed, slen, 5, &plain, &plen, &err),
                     SS_ERR_EPOCH);
    assert_non_null(strstr(err.msg, "epoch 1"));
    assert_null(plain);
    free(sealed);
    sealed = (void *)1;
    assert_int_equal(ss_chunk_seal(f->k1, 2, id, "chunk", 5, 0, 3, &sealed, &slen, &err),
                     SS_ERR_EPOCH);
    assert_null(sealed);
}

static void test_pack_key_seq(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        uint64_t seq;
    } v[] = {
        {"data/00000000000000000001-0123456789abcdef", 1},
        {"data/00000000000000012345-0123456789abcdef", 12345},
        {"data/18446744073709551615-0123456789abcdef", UINT64_MAX},
        {"data/18446744073709551616-0123456789abcdef", 0}, /* overflows */
        {"data/0000000000000000001-0123456789abcdef", 0},  /* 19 digits */
        {"data/0000000000000000000x-0123456789abcdef", 0},
        {"log/00000000000000000001", 0},
        {"data/", 0},
        {"", 0},
        {NULL, 0},
    };
    for (size_t i = 0; i < COUNT(v); i++)
        assert_int_equal(ss_pack_key_seq(v[i].key), v[i].seq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epochs_held),          cmocka_unit_test(test_with_epoch_refuses),
        cmocka_unit_test(test_frames_across_epochs), cmocka_unit_test(test_reader_names_the_epoch),
        cmocka_unit_test(test_chunks_across_epochs), cmocka_unit_test(test_pack_key_seq),
    };
    if (sodium_init() < 0) return 1;
    setenv("S3SYNC_KDF", "interactive", 1);
    return cmocka_run_group_tests(tests, setup, teardown);
}
