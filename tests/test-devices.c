/*
 * test-devices: signed transactions and the device table (core/devices.c,
 * docs/FORMAT.md "Devices and signatures").
 *
 * Two parts. test_rules, test_endorsement and test_checkpoint_tables hold
 * every rule of the section in named tables, against ss_devices directly:
 * who may sign, what an entry may say, how the table moves, what a
 * checkpoint's table must be, and when a log object vouches for one.
 * The rest drive the s3sync binary on RGW (a file:// store without it),
 * with a forger (tests/forger.c) writing what a hostile device would: a
 * transaction signed by a key nobody enrolled, a signature altered, one in
 * another device's name, and, with a revoked device's own key, one after
 * its revocation (also for a device that joins later from a checkpoint),
 * and checkpoints that drop a revocation or invent a device, followed by
 * a log object or at the head.
 * Each is refused with exit 3, one line naming the log object, and nothing
 * of it applied; log and device list name the verified devices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli-fixture.h"
#include "device_key.h"
#include "devices.h"
#include "forger.h"
#include "frame.h"
#include "keys.h"

#define PASS "correct horse battery staple"

/* --- the rules, against ss_devices ------------------------------------------------------- */

typedef struct keypair {
    uint8_t pk[32], sk[64], id[16];
} keypair;

static keypair K_A, K_R, K_B, K_N, K_M; /* enrolled, revoked, enrolled, new, another new */
static const uint8_t REPO[16] = {0x5e, 0xc0};
static const uint8_t PREV[32] = {0xc4, 0xa1};

static void make_key(keypair *k)
{
    crypto_sign_keypair(k->pk, k->sk);
    ss_device_id_of(k->pk, k->id);
}

static ss_device dev_of(const keypair *k, const char *name, uint64_t enrolled, uint64_t revoked)
{
    ss_device d = {.enrolled = enrolled, .revoked = revoked};
    memcpy(d.id, k->id, 16);
    memcpy(d.pk, k->pk, 32);
    snprintf(d.name, sizeof d.name, "%s", name);
    return d;
}

/* A: enrolled at 1; R: enrolled at 2, revoked at 5; B: enrolled at 3. */
static ss_devices *table(void)
{
    ss_devices *t = NULL;
    ss_device v[] = {dev_of(&K_A, "a", 1, 0), dev_of(&K_R, "r", 2, 5), dev_of(&K_B, "b", 3, 0)};
    assert_int_equal(ss_devices_new(&t, NULL), SS_OK);
    for (size_t i = 0; i < COUNT(v); i++)
        assert_int_equal(ss_devices_put(t, &v[i], NULL), SS_OK);
    return t;
}

static ss_txn_device enroll_entry(const keypair *k, uint64_t seq, const char *name)
{
    ss_txn_device e = {.type = SS_TXN_DEV_ENROLL, .seq = seq, .name_len = strlen(name)};
    memcpy(e.id, k->id, 16);
    memcpy(e.pk, k->pk, 32);
    memcpy(e.name, name, e.name_len + 1);
    return e;
}

static ss_txn_device revoke_entry(const keypair *k, uint64_t seq)
{
    ss_txn_device e = {.type = SS_TXN_DEV_REVOKE, .seq = seq};
    memcpy(e.id, k->id, 16);
    return e;
}

/* One case: header seq (default 10) by signer (named name) with entries, signed by sig_key over
 * PREV. */
typedef struct rule_case {
    const char *name;
    const keypair *signer, *sig_key;
    const char *header_name;
    ss_txn_device e[2];
    uint32_t n;
    int flip, other_chain;
    uint64_t seq;       /* 0: 10 */
    const char *expect; /* NULL: accepted */
    int other_table;    /* signed over another table after it than the honest one */
} rule_case;

/*
 * The hash of t after h, as an honest signer computes it (t itself when h
 * does not apply); other: of a table with one device more, as a signer
 * lying about the table would sign.
 */
static void after_hash(const ss_devices *t, const ss_txn_header *h, int other, uint8_t out[32])
{
    ss_devices *after = NULL;
    assert_int_equal(ss_devices_copy(t, &after, NULL), SS_OK);
    (void)ss_devices_apply_log(after, h, NULL);
    if (other) {
        ss_device extra = dev_of(&K_N, "n", 12, 0);
        assert_int_equal(ss_devices_put(after, &extra, NULL), SS_OK);
    }
    ss_devices_hash(after, out);
    ss_devices_free(after);
}

static ss_rc check_case(const ss_devices *t, const rule_case *c)
{
    uint64_t seq = c->seq ? c->seq : 10;
    ss_txn_header h = {.seq = seq,
                       .device_name = c->header_name,
                       .device_name_len = strlen(c->header_name),
                       .n_devices = c->n,
                       .devices = c->e};
    uint8_t digest[32], msg[SS_SIG_MESSAGE_BYTES], sig[64], chain[32], table_hash[32];
    memcpy(h.device_id, c->signer->id, 16);
    memcpy(chain, PREV, 32);
    chain[31] ^= (uint8_t)c->other_chain;
    crypto_generichash(digest, 32, (const uint8_t *)c->name, strlen(c->name), NULL, 0);
    after_hash(t, &h, c->other_table, table_hash);
    ss_devices_sig_message(msg, REPO, SS_FRAME_KIND_LOG, seq, chain, digest, table_hash);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, c->sig_key->sk);
    sig[5] ^= (uint8_t)c->flip;
    ss_err err = {{0}};
    ss_rc rc = ss_devices_check_log(t, REPO, &h, PREV, digest, sig, NULL, &err);
    if (c->expect ? rc != SS_ERR_INTEGRITY || !strstr(err.msg, c->expect) : rc != SS_OK)
        fail_msg("%s: rc %d: %s", c->name, rc, err.msg);
    return rc;
}

static void test_rules(void **state)
{
    (void)state;
    ss_devices *t = table();
    /* clang-format off */
#define CASE(n, s, k, hn, ...) {.name = n, .signer = s, .sig_key = k, .header_name = hn, __VA_ARGS__}
    const rule_case cases[] = {
        CASE("known signer", &K_A, &K_A, "a", .n = 0),
        CASE("new device enrolling itself", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1),
        CASE("revoking an enrolled device", &K_A, &K_A, "a", .e = {revoke_entry(&K_B, 10)}, .n = 1),
        CASE("revoking itself", &K_A, &K_A, "a", .e = {revoke_entry(&K_A, 10)}, .n = 1),
        CASE("unknown key", &K_N, &K_N, "n", .expect = "which is not enrolled"),
        CASE("revoked signer", &K_R, &K_R, "r", .expect = "revoked at sequence 5"),
        CASE("flipped signature bit", &K_A, &K_A, "a", .flip = 1, .expect = "does not verify"),
        CASE("another device's name", &K_A, &K_N, "a",
             .expect = "does not verify with the key of device a ("),
        CASE("another chain", &K_A, &K_A, "a", .other_chain = 1, .expect = "does not verify"),
        CASE("signed over another table after it", &K_A, &K_A, "a", .other_table = 1,
             .expect = "does not verify"),
        CASE("a new key signed by another", &K_N, &K_M, "n", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1,
             .expect = "does not verify"),
        CASE("enrolling another device", &K_A, &K_A, "a", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1,
             .expect = "which is not its signer"),
        CASE("enrolling itself again", &K_A, &K_A, "a", .e = {enroll_entry(&K_A, 10, "a")}, .n = 1,
             .expect = "again (enrolled at 1)"),
        CASE("a revoked key enrolling again", &K_R, &K_R, "r", .e = {enroll_entry(&K_R, 10, "r")}, .n = 1,
             .expect = "again (revoked at 5)"),
        CASE("enrolling under another name", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 10, "x")}, .n = 1,
             .expect = "under another name"),
        CASE("an entry at another sequence", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 9, "n")}, .n = 1,
             .expect = "at sequence 9, not its own"),
        CASE("revoking an unknown device", &K_A, &K_A, "a", .e = {revoke_entry(&K_N, 10)}, .n = 1,
             .expect = "which is not enrolled"),
        CASE("revoking twice", &K_A, &K_A, "a", .e = {revoke_entry(&K_R, 10)}, .n = 1,
             .expect = "again (revoked at 5)"),
    };
    /* clang-format on */
    for (size_t i = 0; i < COUNT(cases); i++)
        check_case(t, &cases[i]);
    /* An enroll entry whose id is not its key's. */
    rule_case c = CASE("id not the key's", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 10, "n")},
                       .n = 1, .expect = "under another device's id");
    memcpy(c.e[0].pk, K_M.pk, 32);
    check_case(t, &c);
    /* A full table takes no new device. */
    while (ss_devices_count(t) < SS_DEVICES_MAX) {
        keypair k;
        make_key(&k);
        ss_device d = dev_of(&k, "filler", 4, 0);
        assert_int_equal(ss_devices_put(t, &d, NULL), SS_OK);
    }
    rule_case full = CASE("a full table", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 10, "n")},
                          .n = 1, .expect = "into a full table (512 devices)");
    check_case(t, &full);
    ss_devices_free(t);
}

/*
 * A log object as the endorsement of a checkpoint's table at its sequence
 * (FORMAT.md "A checkpoint at the head"): the signer signs the honest table
 * after it; the checkpoint's table may lie.
 */
typedef enum cp_lie { LIE_NONE, LIE_EXTRA_DEVICE, LIE_UNREVOKED } cp_lie;

typedef struct endorse_case {
    const char *name;
    const keypair *signer;
    ss_txn_device e[1];
    uint32_t n;
    cp_lie lie; /* what the checkpoint's table says otherwise than the truth */
    int flip, other_chain;
    const char *expect; /* NULL: accepted */
} endorse_case;

static void check_endorsement(const endorse_case *c)
{
    ss_txn_header h = {.seq = 10,
                       .device_name = c->signer == &K_N ? "n" : "a",
                       .device_name_len = 1,
                       .n_devices = c->n,
                       .devices = (ss_txn_device *)c->e};
    ss_devices *after = table(); /* becomes the table after h */
    uint8_t digest[32], msg[SS_SIG_MESSAGE_BYTES], sig[64], chain[32], table_hash[32];
    ss_err err = {{0}};
    memcpy(h.device_id, c->signer->id, 16);
    (void)ss_devices_apply_log(after, &h, NULL);
    ss_devices_hash(after, table_hash);
    memcpy(chain, PREV, 32);
    chain[31] ^= (uint8_t)c->other_chain;
    crypto_generichash(digest, 32, (const uint8_t *)c->name, strlen(c->name), NULL, 0);
    ss_devices_sig_message(msg, REPO, SS_FRAME_KIND_LOG, 10, chain, digest, table_hash);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, c->signer->sk);
    sig[5] ^= (uint8_t)c->flip;
    ss_device lie = dev_of(&K_M, "m", 7, 0);
    if (c->lie == LIE_UNREVOKED) lie = dev_of(&K_B, "b", 3, 0);
    if (c->lie != LIE_NONE) assert_int_equal(ss_devices_put(after, &lie, NULL), SS_OK);
    ss_rc rc = ss_devices_check_endorsement(after, REPO, &h, PREV, digest, sig, &err);
    if (c->expect ? rc != SS_ERR_INTEGRITY || !strstr(err.msg, c->expect) : rc != SS_OK)
        fail_msg("%s: rc %d: %s", c->name, rc, err.msg);
    ss_devices_free(after);
}

static void test_endorsement(void **state)
{
    (void)state;
    /* clang-format off */
    const endorse_case cases[] = {
        {.name = "an enrolled signer", .signer = &K_A},
        {.name = "a device enrolling itself", .signer = &K_N, .e = {enroll_entry(&K_N, 10, "n")}, .n = 1},
        {.name = "a revocation", .signer = &K_A, .e = {revoke_entry(&K_B, 10)}, .n = 1},
        {.name = "a signer the table lacks", .signer = &K_N,
         .expect = "does not show enrolled at sequence 10"},
        {.name = "a signer revoked before", .signer = &K_R,
         .expect = "does not show enrolled at sequence 10"},
        {.name = "a table with a device more", .signer = &K_A, .lie = LIE_EXTRA_DEVICE,
         .expect = "did not sign it over the checkpoint's device table"},
        {.name = "a table that drops its revocation", .signer = &K_A,
         .e = {revoke_entry(&K_B, 10)}, .n = 1, .lie = LIE_UNREVOKED,
         .expect = "not what the checkpoint's table shows"},
        {.name = "a flipped signature bit", .signer = &K_A, .flip = 1, .expect = "did not sign it"},
        {.name = "another chain value", .signer = &K_A, .other_chain = 1, .expect = "did not sign it"},
    };
    /* clang-format on */
    for (size_t i = 0; i < COUNT(cases); i++)
        check_endorsement(&cases[i]);
}

/* What a transaction does to the table: enrolled at its seq, revoked at its seq, names. */
static void test_apply(void **state)
{
    (void)state;
    ss_devices *t = table();
    ss_txn_device e[2] = {enroll_entry(&K_N, 10, "newname"), revoke_entry(&K_B, 10)};
    if (memcmp(e[0].id, e[1].id, 16) > 0) {
        ss_txn_device x = e[0];
        e[0] = e[1], e[1] = x;
    }
    ss_txn_header h = {
        .seq = 10, .device_name = "newname", .device_name_len = 7, .n_devices = 2, .devices = e};
    memcpy(h.device_id, K_N.id, 16);
    assert_int_equal(ss_devices_apply_log(t, &h, NULL), SS_OK);
    const ss_device *n = ss_devices_find(t, K_N.id), *b = ss_devices_find(t, K_B.id);
    assert_non_null(n);
    assert_true(n->enrolled == 10 && n->revoked == 0 && n->last == 10);
    assert_string_equal(n->name, "newname");
    assert_memory_equal(n->pk, K_N.pk, 32);
    assert_true(b->revoked == 10 && b->enrolled == 3);
    assert_int_equal(ss_devices_count(t), 4);
    /* What B signs at 11 is refused now; A renames itself by signing. */
    rule_case after = {.name = "b after its revocation",
                       .signer = &K_B,
                       .sig_key = &K_B,
                       .header_name = "b",
                       .seq = 11,
                       .expect = "revoked at sequence 10"};
    check_case(t, &after);
    h = (ss_txn_header){.seq = 11, .device_name = "a2", .device_name_len = 2};
    memcpy(h.device_id, K_A.id, 16);
    assert_int_equal(ss_devices_apply_log(t, &h, NULL), SS_OK);
    assert_string_equal(ss_devices_find(t, K_A.id)->name, "a2");
    ss_devices_free(t);
}

/* The hash of the table entries v[0..n) describe, as FORMAT.md defines it, by hand. */
static void entries_hash(const ss_txn_device *v, uint32_t n, uint8_t out[32])
{
    ss_devices *t = NULL;
    assert_int_equal(ss_devices_new(&t, NULL), SS_OK);
    for (uint32_t i = 0; i < n; i++) {
        const ss_device *known = ss_devices_find(t, v[i].id);
        ss_device d = {.enrolled = v[i].seq};
        if (v[i].type == SS_TXN_DEV_POLICY) {
            ss_devices_set_policy(t, v[i].mode, v[i].seq);
            continue;
        }
        if (v[i].type == SS_TXN_DEV_REVOKE && !known) continue; /* refused anyway */
        if (v[i].type == SS_TXN_DEV_REVOKE) {
            d = *known;
            d.revoked = v[i].seq;
        } else {
            memcpy(d.id, v[i].id, 16);
            memcpy(d.pk, v[i].pk, 32);
        }
        assert_int_equal(ss_devices_put(t, &d, NULL), SS_OK);
    }
    ss_devices_hash(t, out);
    ss_devices_free(t);
}

static ss_rc cp_table(const ss_txn_device *v, uint32_t n, const keypair *signer, ss_devices **ret,
                      ss_err *err);

static ss_txn_device policy_entry(uint8_t mode, uint64_t seq)
{
    return (ss_txn_device){.type = SS_TXN_DEV_POLICY, .mode = mode, .seq = seq};
}

/*
 * Approved enrollment: with the policy at approve, a device cannot enroll
 * itself; an enrolled, unrevoked device enrolls it; the policy entry must
 * change the policy; and the policy is part of what a signature commits to.
 */
static void test_approval_rules(void **state)
{
    (void)state;
    ss_devices *t = table(), *plain = table(), *after = NULL;
    uint8_t h1[32], h2[32], mode;
    uint64_t seq;
    ss_txn_device wrong_key = enroll_entry(&K_N, 10, "n");
    memcpy(wrong_key.pk, K_M.pk, 32);
    ss_devices_set_policy(t, SS_ENROLL_APPROVE, 8);
    /* clang-format off */
    const rule_case cases[] = {
        CASE("a new device enrolling itself", &K_N, &K_N, "n", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1,
             .expect = "where an enrolled device must approve it"),
        CASE("an enrolled device approving one", &K_A, &K_A, "a", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1),
        CASE("a revoked device approving one", &K_R, &K_R, "r", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1,
             .expect = "without being enrolled itself"),
        CASE("a stranger approving one", &K_M, &K_M, "m", .e = {enroll_entry(&K_N, 10, "n")}, .n = 1,
             .expect = "without being enrolled itself"),
        CASE("approval with another device's key", &K_A, &K_A, "a", .e = {wrong_key}, .n = 1,
             .expect = "enrolls a key under another device's id"),
        CASE("the policy it already has", &K_A, &K_A, "a", .e = {policy_entry(SS_ENROLL_APPROVE, 10)}, .n = 1,
             .expect = "already has"),
        CASE("back to open", &K_A, &K_A, "a", .e = {policy_entry(SS_ENROLL_OPEN, 10)}, .n = 1),
    };
    /* clang-format on */
    for (size_t i = 0; i < COUNT(cases); i++)
        check_case(t, &cases[i]);
    /* An approval names the approved device: it enrolls at 10 under the name given. */
    ss_txn_header h = {.seq = 10,
                       .device_name = "a",
                       .device_name_len = 1,
                       .n_devices = 1,
                       .devices = (ss_txn_device[]){enroll_entry(&K_N, 10, "n")}};
    memcpy(h.device_id, K_A.id, 16);
    assert_int_equal(ss_devices_copy(t, &after, NULL), SS_OK);
    assert_int_equal(ss_devices_apply_log(after, &h, NULL), SS_OK);
    assert_non_null(ss_devices_find(after, K_N.id));
    assert_int_equal(ss_devices_find(after, K_N.id)->enrolled, 10);
    assert_string_equal(ss_devices_find(after, K_N.id)->name, "n");
    /* A checkpoint carries the policy first, and reads it back. */
    ss_txn_device *v = NULL;
    uint32_t n = 0;
    ss_devices *got = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_devices_entries(t, &v, &n, NULL), SS_OK);
    assert_int_equal(v[0].type, SS_TXN_DEV_POLICY);
    assert_int_equal(cp_table(v, n, &K_A, &got, &err), SS_OK);
    ss_devices_policy(got, &mode, &seq);
    assert_true(mode == SS_ENROLL_APPROVE && seq == 8);
    /* The table hash covers the policy. */
    ss_devices_hash(t, h1);
    ss_devices_hash(plain, h2);
    assert_memory_not_equal(h1, h2, 32);
    free(v);
    ss_devices_free(got);
    ss_devices_free(after);
    ss_devices_free(plain);
    ss_devices_free(t);
}

/* A checkpoint at 20 with device entries v[0..n), signed by signer: its table, or the refusal. */
static ss_rc cp_table(const ss_txn_device *v, uint32_t n, const keypair *signer, ss_devices **ret,
                      ss_err *err)
{
    uint8_t digest[32] = {7}, msg[SS_SIG_MESSAGE_BYTES], sig[64], table_hash[32];
    ss_txn_header h = {
        .seq = 20, .device_name = "x", .device_name_len = 1, .n_devices = n, .devices = v};
    memcpy(h.device_id, signer->id, 16);
    entries_hash(v, n, table_hash);
    ss_devices_sig_message(msg, REPO, SS_FRAME_KIND_CHECKPOINT, 20, PREV, digest, table_hash);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, signer->sk);
    return ss_devices_from_checkpoint(REPO, &h, PREV, digest, sig, ret, err);
}

static void test_checkpoint_tables(void **state)
{
    (void)state;
    ss_devices *t = table(), *got = NULL, *other = NULL;
    ss_txn_device *v = NULL;
    uint32_t n = 0;
    ss_err err = {{0}};
    char why[300];
    /* A round trip: the table as a checkpoint writes it reads back the same, names included. */
    assert_int_equal(ss_devices_entries(t, &v, &n, NULL), SS_OK);
    assert_int_equal(n, 4); /* A, B, R enrolled; R revoked */
    assert_int_equal(cp_table(v, n, &K_A, &got, &err), SS_OK);
    assert_int_equal(ss_devices_differ(t, got, 1, why, sizeof why), 0);
    free(v);
    ss_devices_free(got);
    got = NULL;
    ss_txn_device a = enroll_entry(&K_A, 1, "a"), r = enroll_entry(&K_R, 2, "r"),
                  r_gone = revoke_entry(&K_R, 5);
    ss_txn_device a_wrong_key = a;
    memcpy(a_wrong_key.pk, K_M.pk, 32);
    const struct {
        const char *name;
        ss_txn_device v[3];
        uint32_t n;
        const keypair *signer;
        const char *expect;
    } bad[] = {
        {"signed by a revoked device", {a, r, r_gone}, 3, &K_R, "revoked at sequence 5"},
        {"signed by a device it does not enroll", {a}, 1, &K_N, "which it does not enroll"},
        {"an id that is not its key's", {a_wrong_key}, 1, &K_A, "under another device's id"},
        {"a revoke of a device it does not enroll",
         {a, r_gone},
         2,
         &K_A,
         "which it does not enroll"},
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        ss_rc rc = cp_table(bad[i].v, bad[i].n, bad[i].signer, &got, &err);
        if (rc != SS_ERR_INTEGRITY || !strstr(err.msg, bad[i].expect))
            fail_msg("%s: rc %d: %s", bad[i].name, rc, err.msg);
        assert_null(got);
    }
    /* A's entry, signed with another key under A's id: the signature fails. */
    {
        uint8_t digest[32] = {7}, msg[SS_SIG_MESSAGE_BYTES], sig[64], table_hash[32];
        ss_txn_header h = {
            .seq = 20, .device_name = "x", .device_name_len = 1, .n_devices = 1, .devices = &a};
        memcpy(h.device_id, K_A.id, 16);
        entries_hash(&a, 1, table_hash);
        ss_devices_sig_message(msg, REPO, SS_FRAME_KIND_CHECKPOINT, 20, PREV, digest, table_hash);
        crypto_sign_detached(sig, NULL, msg, sizeof msg, K_M.sk);
        assert_int_equal(ss_devices_from_checkpoint(REPO, &h, PREV, digest, sig, &got, &err),
                         SS_ERR_INTEGRITY);
        assert_non_null(strstr(err.msg, "does not verify"));
    }
    /*
     * A signed over the table with R revoked; the entries drop the revocation
     * (a checkpoint that would undo it): the signature does not cover them.
     */
    {
        ss_txn_device signed_v[3] = {a, r, r_gone};
        uint8_t digest[32] = {7}, msg[SS_SIG_MESSAGE_BYTES], sig[64], table_hash[32];
        ss_txn_header h = {.seq = 20,
                           .device_name = "x",
                           .device_name_len = 1,
                           .n_devices = 2,
                           .devices = signed_v};
        memcpy(h.device_id, K_A.id, 16);
        entries_hash(signed_v, 3, table_hash);
        ss_devices_sig_message(msg, REPO, SS_FRAME_KIND_CHECKPOINT, 20, PREV, digest, table_hash);
        crypto_sign_detached(sig, NULL, msg, sizeof msg, K_A.sk);
        assert_int_equal(ss_devices_from_checkpoint(REPO, &h, PREV, digest, sig, &got, &err),
                         SS_ERR_INTEGRITY);
        assert_non_null(strstr(err.msg, "does not verify"));
        h.n_devices = 3; /* the same with the revocation: accepted */
        assert_int_equal(ss_devices_from_checkpoint(REPO, &h, PREV, digest, sig, &got, &err),
                         SS_OK);
        ss_devices_free(got);
        got = NULL;
    }
    /* differ: what a device knows must hold in a newer table. */
    assert_int_equal(ss_devices_copy(t, &got, NULL), SS_OK);
    ss_device extra = dev_of(&K_N, "n", 12, 0);
    assert_int_equal(ss_devices_put(got, &extra, NULL), SS_OK); /* newer: one more device */
    assert_int_equal(ss_devices_differ(t, got, 0, why, sizeof why), 0);
    assert_int_equal(ss_devices_differ(t, got, 1, why, sizeof why), 1); /* verify wants equal */
    ss_device b_revoked = dev_of(&K_B, "b", 3, 15);
    assert_int_equal(ss_devices_put(got, &b_revoked, NULL), SS_OK); /* a revocation we missed */
    assert_int_equal(ss_devices_differ(t, got, 0, why, sizeof why), 0);
    assert_int_equal(ss_devices_copy(t, &other, NULL), SS_OK);
    ss_device r_unrevoked = dev_of(&K_R, "r", 2, 0);
    assert_int_equal(ss_devices_put(got, &r_unrevoked, NULL), SS_OK); /* one we know, undone */
    assert_int_equal(ss_devices_differ(t, got, 0, why, sizeof why), 1);
    assert_non_null(strstr(why, "is revoked otherwise"));
    ss_device a_rekeyed = dev_of(&K_M, "a", 1, 0);
    memcpy(a_rekeyed.id, K_A.id, 16);
    assert_int_equal(ss_devices_put(other, &a_rekeyed, NULL), SS_OK);
    assert_int_equal(ss_devices_differ(t, other, 0, why, sizeof why), 1);
    assert_non_null(strstr(why, "has another key"));
    ss_devices_free(got);
    ss_devices_free(other);
    ss_devices_free(t);
}

/* --- this device's key (core/device_key.c) -------------------------------------------- */

static void test_device_key(void **state)
{
    (void)state;
    char dir[] = "/tmp/ss-devkey-XXXXXX", path[64];
    ss_device_key *k = NULL, *again = NULL;
    ss_err err = {{0}};
    uint8_t id[16], sig[64], msg[3] = "abc";
    struct stat st;
    FILE *fp;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/" SS_DEVICE_KEY_FILE, dir);
    assert_int_equal(ss_device_key_load(dir, &k, &err), SS_ERR_NOT_FOUND);
    assert_null(k);
    assert_int_equal(ss_device_key_create(dir, &k, &err), SS_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size == 64);
    ss_device_id_of(ss_device_key_public(k), id);
    assert_memory_equal(id, ss_device_key_id(k), 16);
    ss_device_key_sign(k, msg, sizeof msg, sig);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, ss_device_key_public(k)), 0);
    assert_int_equal(ss_device_key_create(dir, &again, &err), SS_ERR_IO); /* never over one */
    assert_int_equal(ss_device_key_load(dir, &again, &err), SS_OK);
    assert_memory_equal(ss_device_key_id(again), id, 16);
    ss_device_key_free(again);
    again = NULL;
    /* A flipped seed byte: the halves disagree; a byte more or less: not a key. */
    int c;
    assert_non_null(fp = fopen(path, "r+b"));
    assert_int_not_equal(c = fgetc(fp), EOF);
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    assert_int_not_equal(fputc(c ^ 1, fp), EOF);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(ss_device_key_load(dir, &again, &err), SS_ERR_IO);
    assert_non_null(strstr(err.msg, "damaged"));
    assert_int_equal(truncate(path, 63), 0);
    assert_int_equal(ss_device_key_load(dir, &again, &err), SS_ERR_IO);
    assert_non_null(strstr(err.msg, "not a device key"));
    assert_int_equal(truncate(path, 65), 0);
    assert_int_equal(ss_device_key_load(dir, &again, &err), SS_ERR_IO);
    assert_null(again);
    ss_device_key_free(k);
    ss_device_key_free(NULL);
    unlink(path);
    rmdir(dir);
}

/* --- through the CLI ------------------------------------------------------------------- */

/* Device d's id, from its folder's settings (device_id = 32 hex). */
static void device_id_of(const world *w, int d, uint8_t id[16], char hex[33])
{
    size_t len = 0;
    char *text = read_file(at(w, d, ".s3sync/config"), &len);
    const char *p = text ? strstr(text, "device_id = ") : NULL;
    if (!p || sodium_hex2bin(id, 16, p + 12, 32, NULL, NULL, NULL)) failf("no device_id");
    snprintf(hex, 33, "%.32s", p + 12);
    free(text);
}

/* The forger takes device d's key (a stolen laptop, a client that ignores its revocation). */
static void forger_use_key(forger *f, const world *w, int d)
{
    forger_take_key(f, at(w, d, ".s3sync/device.key"));
}

/* A one-file transaction at the forger's next sequence, in header id's name, signed as how says. */
static void forge_file(forger *f, const uint8_t *id, forger_sig how, const char *name,
                       char *ret_key)
{
    buf b = {0};
    forger_sync(f);
    t_header(&b, f, id, f->head + 1, 0, 1);
    t_file(&b, f, name, strlen(name), "forged");
    forge(f, &b, how, ret_key);
    free(b.p);
}

/* d pulls: exit 3, one line naming key and saying why; d's folder as snap holds it. */
static void expect_refused(const world *w, int d, const char *snap, const char *key,
                           const char *why)
{
    outcome o = run_cli(NULL, ARGS("-C", w->dev[d], "pull"));
    expect_exit(&o, 3, "pull of a transaction it must refuse");
    if (!strchr(o.err, '\n') || strchr(o.err, '\n')[1]) failf("not one line: %s", o.err);
    if (!strstr(o.err, key) || !strstr(o.err, why))
        failf("want %s and \"%s\": %s", key, why, o.err);
    outcome_free(&o);
    expect_same_tree(w->dev[d], snap);
}

static void setup_two(world *w, char *snap, size_t cap)
{
    snprintf(snap, cap, "%s/snapshot", w->root);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "a.txt"), "from A", 6);
    ok(w, A, "push");
    write_bytes(at(w, B, "b.txt"), "from B", 6);
    ok(w, B, "sync");
    ok(w, A, "pull");
    snapshot(w->dev[A], snap);
}

static void test_unknown_key(void **state)
{
    world *w = *state;
    forger f;
    char snap[200], key[SS_KEY_NAME_MAX];
    setup_two(w, snap, sizeof snap);
    forger_open(&f, w->url, PASS); /* holds the master key, never enrolled */
    forge_file(&f, NULL, SIG_OWN, "evil.txt", key);
    expect_refused(w, A, snap, key, "which is not enrolled");
    forger_free(&f);
    rm_rf(snap);
}

static void test_forged_signature(void **state)
{
    world *w = *state;
    forger f;
    char snap[200], key[SS_KEY_NAME_MAX];
    setup_two(w, snap, sizeof snap);
    forger_open(&f, w->url, PASS);
    forger_enroll(&f);
    ok(w, A, "pull"); /* EVE is a device now */
    rm_rf(snap);
    snapshot(w->dev[A], snap);
    forge_file(&f, NULL, SIG_FLIPPED, "evil.txt", key);
    expect_refused(w, A, snap, key, "signature does not verify with the key of device EVE");
    ss_store_delete(f.store, key, NULL);
    forge_file(&f, NULL, SIG_STRANGER, "evil.txt", key);
    expect_refused(w, A, snap, key, "signature does not verify");
    forger_free(&f);
    rm_rf(snap);
}

/* EVE, enrolled, writes in B's name: only B's key can. */
static void test_impersonation(void **state)
{
    world *w = *state;
    forger f;
    uint8_t b_id[16];
    char snap[200], key[SS_KEY_NAME_MAX], hex[33];
    setup_two(w, snap, sizeof snap);
    device_id_of(w, B, b_id, hex);
    forger_open(&f, w->url, PASS);
    forger_enroll(&f);
    ok(w, A, "pull");
    rm_rf(snap);
    snapshot(w->dev[A], snap);
    forge_file(&f, b_id, SIG_OWN, "evil.txt", key);
    expect_refused(w, A, snap, key, "does not verify with the key of device B (");
    forger_free(&f);
    rm_rf(snap);
}

/* The device list --json: the entry of id hex (NULL when absent). */
static json_t *listed(json_t *j, const char *hex)
{
    json_t *d;
    size_t i;
    json_array_foreach(json_object_get(j, "devices"), i,
                       d) if (!strcmp(json_string_value(json_object_get(d, "id")), hex)) return d;
    return NULL;
}

/*
 * A revokes B. B can pull but no longer push; what B's key signs from then
 * on is refused by A, and by C, which joins later from a checkpoint.
 */
/*
 * A direct decode of log/<seq> with every key device d holds (its
 * .s3sync/master.key; it learned no epoch): the object states an epoch d
 * lacks, and d's keys open nothing of it, whatever chain it tries. The
 * chunks of the packs after it are shut as well: their ids, which their
 * seals bind, are only inside such objects.
 */
static void expect_undecodable(const world *w, int d, uint64_t seq)
{
    char path[512], key[SS_KEY_NAME_MAX], *url = NULL;
    size_t mlen = 0, clen = 0, olen = 0, plen = 0;
    ss_store *s = NULL;
    ss_keys *keys = NULL, *forced = NULL;
    void *obj = NULL, *plain = NULL;
    uint8_t chain[SS_CHAIN_BYTES] = {0};
    ss_err err = {{0}};
    snprintf(path, sizeof path, "%s/.s3sync/master.key", w->dev[d]);
    char *master = read_file(path, &mlen);
    snprintf(path, sizeof path, "%s/.s3sync/epochs", w->dev[d]);
    if (!access(path, F_OK)) failf("device %d holds epoch keys: it was not cut off", d);
    snprintf(path, sizeof path, "%s/.s3sync/repo.config", w->dev[d]);
    char *cfg = read_file(path, &clen);
    ss_config c;
    assert_int_equal(ss_config_parse_unverified((const uint8_t *)cfg, clen, &c, &err), SS_OK);
    assert_int_equal(mlen, 32);
    assert_int_equal(ss_keys_from_master((const uint8_t *)master, c.repo_id, &keys, &err), SS_OK);
    if (asprintf(&url, "%s", w->url) < 0) failf("out of memory");
    assert_int_equal(ss_store_open(url, NULL, &s, &err), SS_OK);
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    assert_int_equal(ss_store_get(s, key, 0, SS_TO_END, &obj, &olen, &err), SS_OK);
    assert_int_equal(ss_frame_open_buf(keys, SS_FRAME_KIND_LOG, key, seq, chain, UINT64_MAX, obj,
                                       olen, &plain, &plen, NULL, &err),
                     SS_ERR_EPOCH);
    /* Pretending its master key is epoch 1's does not open it either. */
    assert_int_equal(ss_keys_with_epoch(keys, 1, 3, (const uint8_t *)master, &forced, &err), SS_OK);
    assert_int_equal(ss_frame_open_buf(forced, SS_FRAME_KIND_LOG, key, seq, chain, UINT64_MAX, obj,
                                       olen, &plain, &plen, NULL, &err),
                     SS_ERR_INTEGRITY);
    assert_null(plain);
    ss_keys_free(forced);
    ss_keys_free(keys);
    ss_store_free(s);
    free(obj);
    free(url);
    free(cfg);
    sodium_memzero(master, mlen);
    free(master);
}

static void test_revoked_device(void **state)
{
    world *w = *state;
    forger f;
    uint8_t b_id[16], a_id[16];
    char snap[200], key[SS_KEY_NAME_MAX], b_hex[33], a_hex[33];
    json_t *j;
    setup_two(w, snap, sizeof snap);
    device_id_of(w, A, a_id, a_hex);
    device_id_of(w, B, b_id, b_hex);
    outcome o = run_cli(NULL, ARGS("-C", w->dev[A], "--json", "device", "list"));
    expect_exit(&o, 0, "device list");
    if (!listed(o.json, a_hex) || !listed(o.json, b_hex) ||
        !json_is_true(json_object_get(listed(o.json, a_hex), "self")) ||
        json_is_true(json_object_get(listed(o.json, b_hex), "self")) ||
        jint(listed(o.json, b_hex), "revoked") != 0 || jint(listed(o.json, b_hex), "enrolled") != 2)
        failf("device list before: %s", o.out);
    outcome_free(&o);

    o = run_cli(NULL, ARGS("-C", w->dev[A], "--json", "device", "revoke", "B"));
    expect_exit(&o, 0, "device revoke B");
    j = json_object_get(o.json, "revoked");
    uint64_t at_seq = (uint64_t)jint(j, "revoked");
    if (strcmp(json_string_value(json_object_get(j, "id")), b_hex) || at_seq != 3 ||
        jint(o.json, "seq") != 3 || jint(o.json, "files") != 0)
        failf("device revoke: %s", o.out);
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "device", "revoke", "B"));
    expect_exit(&o, 1, "revoking B twice");
    if (!strstr(o.err, "revoked already")) failf("revoking twice: %s", o.err);
    outcome_free(&o);

    /*
     * The revocation began key epoch 1 without B: B cannot even read it (#15),
     * so it neither publishes nor learns anything more, and says why.
     */
    write_bytes(at(w, B, "late.txt"), "after", 5);
    o = run_cli(NULL, ARGS("-C", w->dev[B], "--json", "sync"));
    expect_exit(&o, 1, "sync on a revoked device");
    if (!strstr(o.err, "was revoked: key epoch 1 began at log/00000000000000000003"))
        failf("B: %s", o.err);
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[B], "--json", "device", "list"));
    expect_exit(&o, 1, "device list on B");
    if (!strstr(o.err, "was revoked")) failf("B's list: %s", o.err);
    outcome_free(&o);

    /* A checkpoint after the revocation, and C joins from it. */
    write_bytes(at(w, A, "more.txt"), "more", 4);
    ok(w, A, "push");
    expect_undecodable(w, B, 3); /* the revocation, */
    expect_undecodable(w, B, 4); /* and A's push after it */
    ok(w, A, "checkpoint");
    join(w, C);
    rm_rf(snap);
    snapshot(w->dev[A], snap);
    char snap_c[220];
    snprintf(snap_c, sizeof snap_c, "%s-c", snap);
    snapshot(w->dev[C], snap_c);

    /* B's key, used anyway (a client that ignores its revocation, a stolen laptop). */
    forger_open(&f, w->url, PASS);
    forger_use_key(&f, w, B);
    forge_file(&f, NULL, SIG_OWN, "late.txt", key);
    expect_refused(w, A, snap, key, "revoked at sequence 3");
    expect_refused(w, C, snap_c, key, "revoked at sequence 3");
    ss_store_delete(f.store, key, NULL);

    /* log names the verified devices: B's own transaction, A's revocation and later ones. */
    o = run_cli(NULL, ARGS("-C", w->dev[C], "--json", "log"));
    expect_exit(&o, 0, "log");
    json_t *t;
    size_t i;
    int seen_b = 0;
    char revoked_b[32];
    snprintf(revoked_b, sizeof revoked_b, "revoked %.16s", b_hex);
    json_array_foreach(json_object_get(o.json, "transactions"), i, t)
    {
        const char *dev = json_string_value(json_object_get(t, "device"));
        const char *id = json_string_value(json_object_get(t, "device_id"));
        const char *did = json_string_value(json_object_get(t, "devices"));
        int64_t seq = jint(t, "seq");
        if (!dev || !id || strncmp(!strcmp(dev, "B") ? b_hex : a_hex, id, 16))
            failf("log entry %zu: %s", i, o.out);
        seen_b |= !strcmp(dev, "B");
        /* what each did to the table: A and B enrolled at 1 and 2, A revoked B at 3 */
        const char *want = seq <= 2 ? "enrolled" : seq == 3 ? revoked_b : NULL;
        if (want ? !did || strcmp(did, want) : did != NULL)
            failf("log entry %" PRId64 ": devices %s, not %s", seq, did ? did : "(none)",
                  want ? want : "(none)");
    }
    if (!seen_b) failf("log: B's transaction is not named: %s", o.out);
    outcome_free(&o);
    forger_free(&f);
    rm_rf(snap);
    rm_rf(snap_c);
}

/*
 * A checkpoint cannot undo a revocation (#15): EVE, an enrolled device
 * turned against the others, writes a checkpoint whose table drops B's
 * revocation, correctly signed over that table. A device joining from it
 * adopts the table, and the first log object after it, which A signed over
 * the true table, fails to verify: exit 3, none of it applied.
 */
static void test_checkpoint_undoes_revocation(void **state)
{
    world *w = *state;
    forger f;
    ss_devices *lie = NULL;
    uint8_t b_id[16];
    char snap[200], key[SS_KEY_NAME_MAX], hex[33];
    setup_two(w, snap, sizeof snap);
    device_id_of(w, B, b_id, hex);
    ss_err err = {{0}};
    forger_open(&f, w->url, PASS);
    forger_enroll(&f);
    outcome o = run_cli(NULL, ARGS("-C", w->dev[A], "device", "revoke", "B"));
    expect_exit(&o, 0, "device revoke B");
    outcome_free(&o);
    ss_repo_free(f.repo); /* EVE was granted the new epoch: its passphrase opens it */
    f.repo = NULL;
    assert_int_equal(ss_repo_join(f.store, PASS, strlen(PASS), &f.repo, &err), SS_OK);
    forger_sync(&f);
    assert_int_equal(ss_devices_copy(f.devices, &lie, NULL), SS_OK);
    ss_device b = *ss_devices_find(lie, b_id);
    if (!b.revoked) failf("the forger's table does not show B revoked");
    b.revoked = 0;
    assert_int_equal(ss_devices_put(lie, &b, NULL), SS_OK);
    forge_checkpoint(&f, lie, key);
    write_bytes(at(w, A, "after.txt"), "after", 5);
    ok(w, A, "push");

    o = run_cli(NULL, ARGS("--device", "C", "init", w->url, w->dev[C]));
    expect_exit(&o, 3, "joining from a checkpoint that drops a revocation");
    if (!strstr(o.err, "does not verify")) failf("C: %s", o.err);
    outcome_free(&o);
    if (!access(at(w, C, "after.txt"), F_OK)) failf("C applied what follows the lie");
    ss_devices_free(lie);
    forger_free(&f);
    rm_rf(snap);
}

/* A new device joins url into dir: the outcome, and whether it holds rel afterwards. */
static int join_into(const world *w, const char *dir, const char *rel, int code, const char *what,
                     const char *says)
{
    char path[400];
    outcome o = run_cli(NULL, ARGS("--device", "D", "init", w->url, dir));
    expect_exit(&o, code, what);
    if (says && !strstr(o.err, says)) failf("%s: %s", what, o.err);
    outcome_free(&o);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return !access(path, F_OK);
}

/*
 * A checkpoint at the head (#15, checkpoint_read.c C4). An honest one is
 * accepted: C joins from it. Then EVE, an enrolled device turned against
 * the others, writes the newest checkpoint with a table that invents a
 * device, correctly signed over that table, and nothing follows it: a
 * device joining from it reads log/<head>, which A signed over the true
 * table, and refuses it (exit 3, nothing applied). With log/<head> gone,
 * the same.
 */
static void test_checkpoint_at_head(void **state)
{
    world *w = *state;
    forger f;
    ss_devices *lie = NULL;
    char snap[200], key[SS_KEY_NAME_MAX], log_key[SS_KEY_NAME_MAX], dir[300];
    setup_two(w, snap, sizeof snap);
    ok(w, A, "checkpoint"); /* at the head, A's log/2 after it */
    if (!join_into(w, w->dev[C], "b.txt", 0, "joining from an honest checkpoint at the head", NULL))
        failf("C did not apply the honest checkpoint");

    forger_open(&f, w->url, PASS);
    forger_enroll(&f);
    write_bytes(at(w, A, "a2.txt"), "A again", 7);
    ok(w, A, "sync"); /* log/<head> is A's, signed over the true table */
    forger_sync(&f);
    assert_int_equal(ss_devices_copy(f.devices, &lie, NULL), SS_OK);
    ss_device invented = dev_of(&K_M, "MALLORY", f.head, 0);
    assert_int_equal(ss_devices_put(lie, &invented, NULL), SS_OK);
    forge_checkpoint(&f, lie, key);
    snprintf(dir, sizeof dir, "%s/joiner", w->root);
    if (join_into(w, dir, "a.txt", 3, "joining from a checkpoint at the head that invents a device",
                  "its own log object does not vouch for its device table"))
        failf("the joiner applied the lie");
    rm_rf(dir);
    snprintf(log_key, sizeof log_key, SS_KEY_LOG_FMT, f.head);
    assert_int_equal(ss_store_delete(f.store, log_key, NULL), SS_OK);
    if (join_into(w, dir, "a.txt", 3, "joining from a checkpoint at the head without its log",
                  "is not in the store"))
        failf("the joiner applied a checkpoint nothing vouches for");
    ss_devices_free(lie);
    forger_free(&f);
    rm_rf(dir);
    rm_rf(snap);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

int main(void)
{
    const struct CMUnitTest rules[] = {
        cmocka_unit_test(test_rules),          cmocka_unit_test(test_endorsement),
        cmocka_unit_test(test_apply),          cmocka_unit_test(test_checkpoint_tables),
        cmocka_unit_test(test_approval_rules), cmocka_unit_test(test_device_key),
    };
    const struct CMUnitTest cli[] = {
        WORLD_TEST(test_unknown_key),
        WORLD_TEST(test_forged_signature),
        WORLD_TEST(test_impersonation),
        WORLD_TEST(test_revoked_device),
        WORLD_TEST(test_checkpoint_undoes_revocation),
        WORLD_TEST(test_checkpoint_at_head),
    };
    if (fixture_init("devices")) return 1;
    make_key(&K_A), make_key(&K_R), make_key(&K_B), make_key(&K_N), make_key(&K_M);
    int failed = cmocka_run_group_tests_name("devices/rules", rules, NULL, NULL);
    return failed | fixture_run_file_and_s3(cli, COUNT(cli));
}
