/*
 * test-epoch: epochs/<E> (core/format/epoch.c, docs/FORMAT.md "Key
 * epochs"). Every device that may read an epoch opens its key and, through
 * the link, the previous epoch's; a revoked device opens nothing; every
 * byte of the object is covered (a flip anywhere, a cut, an extension, the
 * object moved to another epoch or repository, all refused); grants must
 * be exactly the devices that may read; and a signer who seals another key
 * to one device than the check commits to is caught by that device.
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
#include <unistd.h>

#include "device_key.h"
#include "devices.h"
#include "epoch.h"

#define N_DEV 10
#define AT 40 /* the sequence that begins the epoch */
#define EPOCH 3u
#define PREV_START 17 /* where epoch EPOCH - 1 began */
#define COUNT(a) (sizeof(a) / sizeof *(a))

static const uint8_t REPO[SS_REPO_ID_BYTES] = {0x5e, 0xc0, 0x11};
static const uint8_t OTHER_REPO[SS_REPO_ID_BYTES] = {0x5e, 0xc0, 0x12};

typedef struct fixture {
    char dir[N_DEV][64];
    ss_device_key *key[N_DEV]; /* 0 signs; N_DEV - 1 is revoked at AT */
    ss_devices *table;
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    uint8_t *obj;
    size_t len;
} fixture;

static ss_device dev_of(const ss_device_key *k, uint64_t enrolled, uint64_t revoked)
{
    ss_device d = {.enrolled = enrolled, .revoked = revoked};
    memcpy(d.id, ss_device_key_id(k), SS_TXN_DEVICE_ID_BYTES);
    memcpy(d.pk, ss_device_key_public(k), SS_DEVICE_PK_BYTES);
    snprintf(d.name, sizeof d.name, "dev");
    return d;
}

static void put(ss_devices *t, ss_device d)
{
    assert_int_equal(ss_devices_put(t, &d, NULL), SS_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    ss_err err;
    assert_non_null(f);
    assert_int_equal(ss_devices_new(&f->table, NULL), SS_OK);
    for (int i = 0; i < N_DEV; i++) {
        snprintf(f->dir[i], sizeof f->dir[i], "/tmp/test-epoch-XXXXXX");
        assert_non_null(mkdtemp(f->dir[i]));
        assert_int_equal(ss_device_key_create(f->dir[i], &f->key[i], &err), SS_OK);
        put(f->table, dev_of(f->key[i], (uint64_t)i + 1, i == N_DEV - 1 ? AT : 0));
    }
    randombytes_buf(f->k, sizeof f->k);
    randombytes_buf(f->prev, sizeof f->prev);
    assert_int_equal(ss_epoch_encode(EPOCH, REPO, f->k, f->prev, PREV_START, f->table, AT,
                                     f->key[0], &f->obj, &f->len, &err),
                     SS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char path[128];
    for (int i = 0; i < N_DEV; i++) {
        ss_device_key_free(f->key[i]);
        snprintf(path, sizeof path, "%s/%s", f->dir[i], SS_DEVICE_KEY_FILE);
        unlink(path);
        rmdir(f->dir[i]);
    }
    ss_devices_free(f->table);
    free(f->obj);
    free(f);
    return 0;
}

static void test_every_reader_opens(void **state)
{
    fixture *f = *state;
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    uint64_t ps = 0;
    ss_err err;
    assert_int_equal(f->len, SS_EPOCH_FIXED_BYTES + (N_DEV - 1) * SS_EPOCH_GRANT_BYTES);
    for (int i = 0; i < N_DEV - 1; i++) {
        assert_int_equal(
            ss_epoch_open(f->obj, f->len, EPOCH, REPO, f->table, AT, f->key[i], k, prev, &ps, &err),
            SS_OK);
        assert_memory_equal(k, f->k, sizeof k);
        assert_memory_equal(prev, f->prev, sizeof prev);
        assert_int_equal(ps, PREV_START);
    }
    /* The holder of K_E (from the next epoch's link) reads K_(E-1) too. */
    assert_int_equal(
        ss_epoch_unlink(f->obj, f->len, EPOCH, REPO, f->table, AT, f->k, prev, &ps, &err), SS_OK);
    assert_memory_equal(prev, f->prev, sizeof prev);
}

static void test_revoked_opens_nothing(void **state)
{
    fixture *f = *state;
    uint64_t ps = 0;
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES], zero[SS_EPOCH_KEY_BYTES] = {0};
    ss_err err;
    memset(k, 0xaa, sizeof k);
    assert_int_equal(ss_epoch_open(f->obj, f->len, EPOCH, REPO, f->table, AT, f->key[N_DEV - 1], k,
                                   prev, &ps, &err),
                     SS_ERR_REVOKED);
    assert_non_null(strstr(err.msg, "epochs/0000000003"));
    assert_memory_equal(k, zero, sizeof k); /* cleared on entry, nothing written */
    /* Nor does a wrong key unlink the previous epoch. */
    memcpy(k, f->k, sizeof k);
    k[0] ^= 0x01;
    assert_int_equal(ss_epoch_unlink(f->obj, f->len, EPOCH, REPO, f->table, AT, k, prev, &ps, &err),
                     SS_ERR_INTEGRITY);
    assert_memory_equal(prev, zero, sizeof prev);
}

/* Each region of the object, one byte flipped: refused before any key comes out. */
static void test_every_byte_covered(void **state)
{
    fixture *f = *state;
    const size_t grants = SS_EPOCH_HEADER_BYTES + SS_EPOCH_LINK_BYTES;
    const struct {
        const char *name;
        size_t off;
    } at[] = {
        {"magic", 0},
        {"version", SS_EPOCH_OFF_VERSION},
        {"zero byte", SS_EPOCH_OFF_ZERO},
        {"grant count", SS_EPOCH_OFF_GRANTS},
        {"epoch", SS_EPOCH_OFF_EPOCH},
        {"repository id", SS_EPOCH_OFF_REPO_ID + 5},
        {"check", SS_EPOCH_OFF_CHECK + 31},
        {"link nonce", SS_EPOCH_HEADER_BYTES + 3},
        {"link ciphertext", SS_EPOCH_HEADER_BYTES + 40},
        {"first grant's id", grants},
        {"first grant's sealed key", grants + SS_TXN_DEVICE_ID_BYTES + 7},
        {"last grant's sealed key", f->len - SS_EPOCH_TRAILER_BYTES - 1},
        {"signer", f->len - SS_EPOCH_TRAILER_BYTES},
        {"signature", f->len - 1},
    };
    uint64_t ps = 0;
    uint8_t *bad = malloc(f->len);
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    ss_err err;
    assert_non_null(bad);
    for (size_t i = 0; i < COUNT(at); i++) {
        print_message("flip: %s\n", at[i].name);
        memcpy(bad, f->obj, f->len);
        bad[at[i].off] ^= 0x01;
        for (int d = 0; d < 2; d++) /* the signer, and a device the object grants */
            assert_int_equal(ss_epoch_open(bad, f->len, EPOCH, REPO, f->table, AT, f->key[d * 4], k,
                                           prev, &ps, &err),
                             SS_ERR_INTEGRITY);
        assert_int_equal(ss_epoch_verify(bad, f->len, EPOCH, REPO, f->table, AT, &err),
                         SS_ERR_INTEGRITY);
    }
    free(bad);
}

static void test_cut_extended_moved(void **state)
{
    fixture *f = *state;
    uint8_t *longer = calloc(1, f->len + SS_EPOCH_GRANT_BYTES);
    ss_err err;
    assert_non_null(longer);
    memcpy(longer, f->obj, f->len);
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, f->table, AT, &err), SS_OK);
    assert_int_equal(ss_epoch_verify(f->obj, f->len - 1, EPOCH, REPO, f->table, AT, &err),
                     SS_ERR_INTEGRITY);
    assert_int_equal(ss_epoch_verify(f->obj, 10, EPOCH, REPO, f->table, AT, &err),
                     SS_ERR_INTEGRITY);
    assert_int_equal(ss_epoch_verify(longer, f->len + 1, EPOCH, REPO, f->table, AT, &err),
                     SS_ERR_INTEGRITY);
    assert_int_equal(
        ss_epoch_verify(longer, f->len + SS_EPOCH_GRANT_BYTES, EPOCH, REPO, f->table, AT, &err),
        SS_ERR_INTEGRITY);
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH + 1, REPO, f->table, AT, &err),
                     SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "another epoch"));
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, OTHER_REPO, f->table, AT, &err),
                     SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "another repository"));
    assert_int_equal(
        ss_epoch_verify(f->obj, SS_EPOCH_READ_MAX + 1, EPOCH, REPO, f->table, AT, &err),
        SS_ERR_INTEGRITY);
    free(longer);
}

/* The grants are exactly the devices that may read: judged against the table the reader holds. */
static void test_grants_exactly_the_readers(void **state)
{
    fixture *f = *state;
    ss_devices *t = NULL;
    ss_device_key *extra = NULL;
    char dir[] = "/tmp/test-epoch-extra-XXXXXX", path[64];
    ss_err err;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(ss_device_key_create(dir, &extra, &err), SS_OK);
    static const struct {
        const char *name;
        uint64_t enrolled, revoked;
        ss_rc want;
    } cases[] = {
        {"a device enrolled at the epoch's start, left out", AT, 0, SS_ERR_INTEGRITY},
        {"a device enrolled after it began: not a reader", AT + 1, 0, SS_OK},
        {"a device revoked before it began: not a reader", 2, AT - 1, SS_OK},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("%s\n", cases[i].name);
        assert_int_equal(ss_devices_copy(f->table, &t, &err), SS_OK);
        put(t, dev_of(extra, cases[i].enrolled, cases[i].revoked));
        assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, t, AT, &err), cases[i].want);
        ss_devices_free(t);
        t = NULL;
    }
    /* A table in which a granted device was revoked at the epoch's start: granted in excess. */
    assert_int_equal(ss_devices_copy(f->table, &t, &err), SS_OK);
    put(t, dev_of(f->key[3], 4, AT));
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, t, AT, &err), SS_ERR_INTEGRITY);
    ss_devices_free(t);
    t = NULL;
    /* The signer revoked at the start may not sign; revoked later it still did. */
    assert_int_equal(ss_devices_copy(f->table, &t, &err), SS_OK);
    put(t, dev_of(f->key[0], 1, AT + 5));
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, t, AT, &err), SS_OK);
    put(t, dev_of(f->key[0], 1, AT));
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, t, AT, &err), SS_ERR_INTEGRITY);
    ss_devices_free(t);
    ss_device_key_free(extra);
    snprintf(path, sizeof path, "%s/%s", dir, SS_DEVICE_KEY_FILE);
    unlink(path);
    rmdir(dir);
}

/*
 * A hostile signer seals another key to device 5 than the check commits to,
 * and signs the result: the object verifies, and device 5 refuses the key
 * (it would otherwise read and write under a key the others cannot read).
 */
static void test_equivocation_caught(void **state)
{
    uint64_t ps = 0;
    fixture *f = *state;
    uint8_t *bad = malloc(f->len), other[SS_EPOCH_KEY_BYTES], xpk[crypto_box_PUBLICKEYBYTES];
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    uint8_t msg[sizeof SS_EPOCH_SIG_LABEL - 1 + crypto_generichash_BYTES];
    const uint8_t *id5 = ss_device_key_id(f->key[5]);
    size_t sig_at = f->len - SS_TXN_SIG_BYTES, g;
    ss_err err;
    assert_non_null(bad);
    memcpy(bad, f->obj, f->len);
    for (g = SS_EPOCH_HEADER_BYTES + SS_EPOCH_LINK_BYTES; memcmp(bad + g, id5, 16);)
        g += SS_EPOCH_GRANT_BYTES;
    randombytes_buf(other, sizeof other);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(xpk, ss_device_key_public(f->key[5])), 0);
    assert_int_equal(crypto_box_seal(bad + g + SS_TXN_DEVICE_ID_BYTES, other, sizeof other, xpk),
                     0);
    memcpy(msg, SS_EPOCH_SIG_LABEL, sizeof SS_EPOCH_SIG_LABEL - 1);
    crypto_generichash(msg + sizeof SS_EPOCH_SIG_LABEL - 1, crypto_generichash_BYTES, bad, sig_at,
                       NULL, 0);
    ss_device_key_sign(f->key[0], msg, sizeof msg, bad + sig_at);

    assert_int_equal(ss_epoch_verify(bad, f->len, EPOCH, REPO, f->table, AT, &err), SS_OK);
    assert_int_equal(
        ss_epoch_open(bad, f->len, EPOCH, REPO, f->table, AT, f->key[5], k, prev, &ps, &err),
        SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "not the epoch's"));
    assert_int_equal(
        ss_epoch_open(bad, f->len, EPOCH, REPO, f->table, AT, f->key[6], k, prev, &ps, &err),
        SS_OK); /* the others are unaffected */
    free(bad);
}

static void test_encode_refuses(void **state)
{
    fixture *f = *state;
    uint8_t *buf = (uint8_t *)1;
    size_t len = 1;
    ss_err err;
    assert_int_equal(ss_epoch_encode(0, REPO, f->k, f->prev, PREV_START, f->table, AT, f->key[0],
                                     &buf, &len, &err),
                     SS_ERR_INVALID);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(ss_epoch_encode(EPOCH, REPO, f->k, f->prev, PREV_START, f->table, AT,
                                     f->key[N_DEV - 1], &buf, &len, &err),
                     SS_ERR_INVALID); /* the revoked device may not begin an epoch */
    assert_null(buf);
}

/*
 * A device that meets the epoch before the transaction that begins it has
 * the table of AT - 1, where the device revoked at AT is still live: the
 * early open gives it its key, and only the table after AT verifies the
 * grants. A bad signature or a missing grant is caught early all the same.
 */
static void test_open_early(void **state)
{
    fixture *f = *state;
    ss_devices *before = NULL;
    uint8_t k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES], bad[SS_EPOCH_READ_MAX];
    uint64_t ps = 0;
    ss_err err;
    assert_int_equal(ss_devices_new(&before, NULL), SS_OK);
    for (int i = 0; i < N_DEV; i++)
        put(before, dev_of(f->key[i], (uint64_t)i + 1, 0));
    assert_int_equal(ss_epoch_verify(f->obj, f->len, EPOCH, REPO, before, AT, &err),
                     SS_ERR_INTEGRITY); /* leaves out a device that is live in this table */
    assert_int_equal(
        ss_epoch_open_early(f->obj, f->len, EPOCH, REPO, before, AT, f->key[3], k, prev, &ps, &err),
        SS_OK);
    assert_memory_equal(k, f->k, sizeof k);
    assert_int_equal(ps, PREV_START);
    assert_int_equal(ss_epoch_open_early(f->obj, f->len, EPOCH, REPO, before, AT, f->key[N_DEV - 1],
                                         k, prev, &ps, &err),
                     SS_ERR_REVOKED);
    memcpy(bad, f->obj, f->len);
    bad[f->len - 1] ^= 1; /* the signature */
    assert_int_equal(
        ss_epoch_open_early(bad, f->len, EPOCH, REPO, before, AT, f->key[3], k, prev, &ps, &err),
        SS_ERR_INTEGRITY);
    ss_devices_free(before);
}

/* The largest table: 512 devices, within the read bound; grants are what the cost grows with. */
static void test_largest_table(void **state)
{
    fixture *f = *state;
    ss_devices *t = NULL;
    uint8_t *buf = NULL, k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    uint64_t ps = 0;
    size_t len = 0;
    ss_err err;
    assert_int_equal(ss_devices_new(&t, &err), SS_OK);
    put(t, dev_of(f->key[0], 1, 0));
    for (size_t i = 1; i < SS_DEVICES_MAX; i++) {
        ss_device d = {.enrolled = 2};
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        crypto_sign_keypair(d.pk, sk);
        ss_device_id_of(d.pk, d.id);
        put(t, d);
    }
    assert_int_equal(
        ss_epoch_encode(EPOCH, REPO, f->k, f->prev, PREV_START, t, AT, f->key[0], &buf, &len, &err),
        SS_OK);
    assert_int_equal(len, SS_EPOCH_READ_MAX);
    assert_int_equal(ss_epoch_open(buf, len, EPOCH, REPO, t, AT, f->key[0], k, prev, &ps, &err),
                     SS_OK);
    assert_memory_equal(prev, f->prev, sizeof prev);
    assert_int_equal(ps, PREV_START);
    free(buf);
    ss_devices_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_reader_opens),
        cmocka_unit_test(test_revoked_opens_nothing),
        cmocka_unit_test(test_every_byte_covered),
        cmocka_unit_test(test_cut_extended_moved),
        cmocka_unit_test(test_grants_exactly_the_readers),
        cmocka_unit_test(test_equivocation_caught),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_largest_table),
        cmocka_unit_test(test_open_early),
    };
    if (sodium_init() < 0) return 1;
    return cmocka_run_group_tests(tests, setup, teardown);
}
