/*
 * test-security: what a hostile store can try against a device, through the
 * real s3sync binary on RGW (a file:// store without it), each refused with
 * exit 3 and nothing written into the joining folder:
 *
 *   downgrade     config or key file rewritten (and correctly authenticated,
 *                 as an insider holding the keys could) to an older format
 *                 version, another cipher suite, or weaker KDF limits
 *   swap          the repository replaced by a look-alike with the same
 *                 passphrase and keys of its own: --expect-fingerprint
 *   confidential  no name, directory or content in any object's bytes
 *   padding       every object the store holds has a bucket size, and files that
 *                 differ by a few hundred bytes leave objects of the same sizes
 *
 * Owns only these scenarios; the format rules are unit-tested in test-keys,
 * test-frame and test-seal.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "format.h"
#include "keys.h"
#include "pad.h"
#include "s3store.h"

#define PASS "correct horse battery staple"

/* Delete every object of the world's prefix: the store's own power. */
static void wipe_store(const world *w)
{
    ss_store *s = world_store(w);
    listing k = store_listing(w->url, "");
    for (size_t i = 0; i < k.n; i++)
        ss_store_delete(s, k.v[i], NULL);
    listing_free(&k);
    ss_store_free(s);
}

/* --- the store's objects ------------------------------------------------------------- */

static void *get_obj(ss_store *s, const char *key, size_t *len)
{
    void *buf = NULL;
    ss_err err = {{0}};
    if (ss_store_get(s, key, 0, SS_TO_END, &buf, len, &err)) failf("get %s: %s", key, err.msg);
    return buf;
}

static void put_obj(ss_store *s, const char *key, const void *buf, size_t len)
{
    ss_err err = {{0}};
    if (ss_store_put(s, key, buf, len, 0, &err)) failf("put %s: %s", key, err.msg);
}

/* The keys device d holds (its master key and cached config), as an insider has them. */
static ss_keys *device_keys(const world *w, int d)
{
    size_t mlen = 0, clen = 0;
    char *master = read_file(at(w, d, ".s3sync/master.key"), &mlen);
    char *cfg = read_file(at(w, d, ".s3sync/repo.config"), &clen);
    ss_config c;
    ss_keys *k = NULL;
    ss_err err = {{0}};
    if (!master || mlen != SS_MASTER_KEY_BYTES || !cfg) failf("device %c: no keys", 'A' + d);
    if (ss_config_parse_unverified((uint8_t *)cfg, clen, &c, &err) ||
        ss_keys_from_master((uint8_t *)master, c.repo_id, &k, &err))
        failf("device keys: %s", err.msg);
    sodium_memzero(master, mlen);
    free(master);
    free(cfg);
    return k;
}

static void remac(const ss_keys *k, uint8_t *cfg)
{
    crypto_generichash(cfg + SS_CONFIG_OFF_MAC, SS_CONFIG_MAC_BYTES, cfg, SS_CONFIG_OFF_MAC,
                       ss_keys_subkey(k, SS_SUBKEY_CONFIG), SS_SUBKEY_BYTES);
}

/* A key file of epoch 0 (k's master key) under PASS with any limits, as FORMAT.md says. */
static void craft_keyfile(const ss_keys *k, uint8_t version, uint64_t ops, uint64_t mem,
                          uint8_t out[SS_KEYFILE_BYTES])
{
    uint8_t pk[32], ad[SS_KEYFILE_HEADER_BYTES + SS_REPO_ID_BYTES];
    memset(out, 0, SS_KEYFILE_BYTES);
    memcpy(out, SS_KEYFILE_MAGIC, 4);
    out[SS_KEYFILE_OFF_VERSION] = version;
    out[SS_KEYFILE_OFF_ALG] = SS_KEYFILE_ALG_ARGON2ID13;
    for (int i = 0; i < 8; i++) {
        out[SS_KEYFILE_OFF_OPSLIMIT + i] = (uint8_t)(ops >> (8 * i));
        out[SS_KEYFILE_OFF_MEMLIMIT + i] = (uint8_t)(mem >> (8 * i));
    }
    randombytes_buf(out + SS_KEYFILE_OFF_SALT, SS_KEYFILE_SALT_BYTES);
    randombytes_buf(out + SS_KEYFILE_OFF_NONCE, SS_KEYFILE_NONCE_BYTES);
    assert_int_equal(crypto_pwhash(pk, sizeof pk, PASS, strlen(PASS), out + SS_KEYFILE_OFF_SALT,
                                   ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13),
                     0);
    memcpy(ad, out, SS_KEYFILE_HEADER_BYTES);
    memcpy(ad + SS_KEYFILE_HEADER_BYTES, ss_keys_repo_id(k), SS_REPO_ID_BYTES);
    uint8_t plain[SS_KEYFILE_PLAIN_BYTES] = {0}; /* key epoch 0: the master key, from seq 1 */
    memcpy(plain, ss_keys_master(k), SS_MASTER_KEY_BYTES);
    plain[SS_EPOCH_KEY_BYTES] = 1;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + SS_KEYFILE_OFF_SEALED, NULL, plain,
                                               sizeof plain, ad, sizeof ad, NULL,
                                               out + SS_KEYFILE_OFF_NONCE, pk);
    sodium_memzero(plain, sizeof plain);
    sodium_memzero(pk, sizeof pk);
}

/* The folder holds nothing: no .s3sync/, no file. */
static void expect_untouched(const char *dir)
{
    struct dirent **v = NULL;
    int n = scandir(dir, &v, not_dots, by_name);
    if (n > 0) failf("%s holds %s after a refused init", dir, v[0]->d_name);
    free_list(v, n);
}

/* s3sync --json init [extra...] STORE DEV */
static outcome run_init(const world *w, int d, const char *const *extra)
{
    const char *args[16] = {"--json", "init"};
    size_t n = 2;
    for (; extra && *extra && n < 13; extra++)
        args[n++] = *extra;
    args[n++] = w->url;
    args[n++] = w->dev[d];
    args[n] = NULL;
    return run_cli(NULL, args);
}

/* init of device d, which must be refused with exit code and a message holding want. */
static void expect_init_fails(const world *w, int d, const char *const *extra, int code,
                              const char *want, const char *what)
{
    outcome o = run_init(w, d, extra);
    expect_exit(&o, code, what);
    if (!strstr(o.err, want)) failf("%s: stderr does not say '%s': %s", what, want, o.err);
    if (strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
        failf("%s: not one line: %s", what, o.err);
    outcome_free(&o);
    expect_untouched(w->dev[d]);
}

static void expect_join_refused(const world *w, int d, const char *const *extra, const char *want,
                                const char *what)
{
    expect_init_fails(w, d, extra, 3, want, what);
}

/* --- no downgrade -------------------------------------------------------------------- */

static void test_config_downgrade(void **state)
{
    world *w = *state;
    ss_store *s = world_store(w);
    join((world *)w, A);
    ss_keys *k = device_keys(w, A);
    size_t len = 0;
    uint8_t *orig = get_obj(s, SS_KEY_CONFIG, &len);
    assert_int_equal(len, SS_CONFIG_BYTES);
    static const struct {
        const char *name;
        size_t off;
        uint8_t value;
        const char *says;
    } cases[] = {
        {"older format version", SS_CONFIG_OFF_VERSION, 0, "offers a downgrade"},
        {"version 1, before key epochs", SS_CONFIG_OFF_VERSION, 1, "format version 1;"},
        {"other cipher suite", SS_CONFIG_OFF_SUITE, 2, "cipher suite 2"},
        {"other KDF algorithm", SS_CONFIG_OFF_KDF_ALG, 1, "KDF algorithm 1"},
        {"KDF floor opslimit 1", SS_CONFIG_OFF_KDF_MIN_OPS, 1, "KDF minimum"},
        {"KDF floor memlimit 8 MiB", SS_CONFIG_OFF_KDF_MIN_MEM_KIB + 2, 0, "KDF minimum"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        uint8_t bad[SS_CONFIG_BYTES];
        memcpy(bad, orig, sizeof bad);
        if (cases[i].off == SS_CONFIG_OFF_KDF_MIN_MEM_KIB + 2) { /* 8192 KiB */
            memset(bad + SS_CONFIG_OFF_KDF_MIN_MEM_KIB, 0, 4);
            bad[SS_CONFIG_OFF_KDF_MIN_MEM_KIB + 1] = 0x20;
        } else {
            bad[cases[i].off] = cases[i].value;
        }
        remac(k, bad); /* authenticates: only the client's own minimums stop it */
        put_obj(s, SS_KEY_CONFIG, bad, sizeof bad);
        snprintf(g_step, sizeof g_step, "config with %s", cases[i].name);
        expect_join_refused(w, B, NULL, cases[i].says, cases[i].name);
    }
    put_obj(s, SS_KEY_CONFIG, orig, len);
    join((world *)w, B); /* the genuine config still joins */
    free(orig);
    ss_keys_free(k);
    ss_store_free(s);
}

static void test_keyfile_downgrade(void **state)
{
    world *w = *state;
    ss_store *s = world_store(w);
    /* A repository made with moderate limits: its config records them as the floor. */
    outcome o = run_cli(ARGS("S3SYNC_KDF=moderate"), ARGS("--json", "init", w->url, w->dev[A]));
    expect_exit(&o, 0, "init moderate");
    outcome_free(&o);
    ss_keys *k = device_keys(w, A);
    listing kf = store_listing(w->url, SS_KEY_KEYS_PREFIX);
    assert_int_equal(kf.n, 1);
    size_t len = 0;
    uint8_t *orig = get_obj(s, kf.v[0], &len);
    static const struct {
        const char *name;
        uint8_t version;
        uint64_t ops, mem;
        const char *says;
    } cases[] = {
        /* Within the format, below the repository's floor: refused after it opened. */
        {"interactive limits", SS_FORMAT_VERSION, 2, 64ull << 20, "than this repository's minimum"},
        /* Below the format: refused before the KDF runs. */
        {"opslimit 1, 8 MiB", SS_FORMAT_VERSION, 1, 8ull << 20, "weaker KDF limits than allowed"},
        {"older version", 0, 3, 256ull << 20, "offers a downgrade"},
        {"version 1, before key epochs", 1, 3, 256ull << 20, "format version 1;"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        uint8_t bad[SS_KEYFILE_BYTES];
        craft_keyfile(k, cases[i].version, cases[i].ops, cases[i].mem, bad);
        put_obj(s, kf.v[0], bad, sizeof bad);
        snprintf(g_step, sizeof g_step, "key file with %s", cases[i].name);
        expect_join_refused(w, B, NULL, cases[i].says, cases[i].name);
    }
    /* A device may not add a weaker key file either. */
    o = run_cli(ARGS("S3SYNC_KDF=interactive"), ARGS("-C", w->dev[A], "key", "add"));
    expect_exit(&o, 1, "key add below the floor");
    if (!strstr(o.err, "weaker than this repository's KDF minimum")) failf("key add: %s", o.err);
    outcome_free(&o);
    put_obj(s, kf.v[0], orig, len);
    o = run_cli(ARGS("S3SYNC_KDF=moderate"), ARGS("--json", "init", w->url, w->dev[B]));
    expect_exit(&o, 0, "join with the genuine key file");
    outcome_free(&o);
    free(orig);
    listing_free(&kf);
    ss_keys_free(k);
    ss_store_free(s);
}

/* --- fingerprint --------------------------------------------------------------------- */

static void init_json(const world *w, int d, const char *const *extra, char fp[SS_FINGERPRINT_TEXT])
{
    outcome o = run_init(w, d, extra);
    expect_exit(&o, 0, "init");
    const char *f = json_string_value(json_object_get(o.json, "fingerprint"));
    if (!f || strlen(f) != SS_FINGERPRINT_TEXT - 1) failf("init: no fingerprint in %s", o.out);
    snprintf(fp, SS_FINGERPRINT_TEXT, "%s", f);
    outcome_free(&o);
}

static void test_fingerprint_swap(void **state)
{
    world *w = *state;
    char fp[SS_FINGERPRINT_TEXT], fp_b[SS_FINGERPRINT_TEXT], fp_c[SS_FINGERPRINT_TEXT];
    char upper[64];

    /* Nothing to join yet: --expect-fingerprint never creates a repository. */
    expect_init_fails(w, A, ARGS("--expect-fingerprint", "0000-0000-0000-0000-0000-0000-0000-0000"),
                      1, "holds no repository", "expect on an empty store");
    ss_store *s = world_store(w);
    listing none = store_listing(w->url, SS_KEY_CONFIG);
    assert_int_equal(none.n, 0);
    listing_free(&none);
    ss_store_free(s);
    rmdir(w->dev[A]);

    init_json(w, A, NULL, fp);
    outcome o = run_cli(NULL, ARGS("-C", w->dev[A], "key", "fingerprint"));
    expect_exit(&o, 0, "key fingerprint");
    assert_true(!strncmp(o.out, fp, strlen(fp)));
    outcome_free(&o);

    /* The genuine repository joins, with the fingerprint written any way. */
    for (size_t i = 0; fp[i]; i++)
        upper[i] = fp[i] == '-' ? ' ' : (char)toupper((unsigned char)fp[i]);
    upper[strlen(fp)] = '\0';
    init_json(w, B, ARGS("--expect-fingerprint", upper), fp_b);
    assert_string_equal(fp, fp_b);

    /* The store swaps in a look-alike: same passphrase, keys of its own. */
    wipe_store(w);
    o = run_cli(NULL, ARGS("--json", "init", w->url, at_dir(w->root, "attacker")));
    expect_exit(&o, 0, "attacker's init");
    outcome_free(&o);
    expect_join_refused(w, C, ARGS("--expect-fingerprint", fp), "not the expected", "swapped");
    /* Without the check the swap goes unnoticed but for another fingerprint. */
    init_json(w, C, NULL, fp_c);
    assert_string_not_equal(fp, fp_c);

    /* A malformed fingerprint is refused before anything happens. */
    o = run_cli(NULL, ARGS("init", "--expect-fingerprint", "12zz", w->url, at_dir(w->root, "D")));
    expect_exit(&o, 1, "malformed fingerprint");
    assert_non_null(strstr(o.err, "hex digits"));
    outcome_free(&o);
}

/* --- confidentiality ---------------------------------------------------------------- */

/* Invariant 5: the store holds no name, directory or content in the clear. */
static void test_store_learns_nothing(void **state)
{
    world *w = *state;
    char name[40], dir[40], marker[40], rel[100], content[4000];
    unsigned char r[8];
    randombytes_buf(r, sizeof r);
    snprintf(name, sizeof name, "name-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    snprintf(dir, sizeof dir, "dir-%02x%02x%02x%02x", r[4], r[5], r[6], r[7]);
    snprintf(marker, sizeof marker, "content-%02x%02x%02x%02x", r[3], r[2], r[1], r[0]);
    for (size_t i = 0; i + 1 < sizeof content; i++)
        content[i] = marker[i % strlen(marker)];
    join((world *)w, A);
    snprintf(rel, sizeof rel, "%s/%s.txt", dir, name);
    make_parents(at(w, A, rel));
    write_bytes(at(w, A, rel), content, 100); /* inline: inside the transaction */
    snprintf(rel, sizeof rel, "%s/%s.big", dir, name);
    char *big = malloc(300000);
    for (size_t i = 0; i < 300000; i++)
        big[i] = content[i % 3999];
    write_bytes(at(w, A, rel), big, 300000); /* chunked, and compressible */
    free(big);
    ok(w, A, "sync");
    ss_store *s = world_store(w);
    listing k = store_listing(w->url, "");
    const char *secrets[] = {name, dir, marker};
    for (size_t i = 0; i < k.n; i++) {
        size_t len = 0;
        uint8_t *obj = get_obj(s, k.v[i], &len);
        if (strstr(k.v[i], name) || strstr(k.v[i], dir)) failf("key %s names a path", k.v[i]);
        for (size_t j = 0; j < COUNT(secrets); j++)
            if (memmem(obj, len, secrets[j], strlen(secrets[j])))
                failf("%s holds '%s' in the clear", k.v[i], secrets[j]);
        free(obj);
    }
    listing_free(&k);
    ss_store_free(s);
}

/* --- size padding ------------------------------------------------------------------- */

/* The size of a framed object whose padded record stream is p bytes. */
static uint64_t framed_size(uint64_t p)
{
    return SS_FRAME_PREFIX_BYTES + p + 17 * ((p + 65535) / 65536);
}

static int framed_on_bucket(uint64_t size)
{
    for (uint64_t records = 1; SS_FRAME_PREFIX_BYTES + 17 * records <= size; records++) {
        uint64_t p = size - SS_FRAME_PREFIX_BYTES - 17 * records;
        if (ss_pad_is_bucket(p) && framed_size(p) == size) return 1;
    }
    return 0;
}

/* Every object of the store has a bucket size; returns how many data/ objects there are. */
static size_t expect_all_on_buckets(const world *w)
{
    listing k = store_listing(w->url, "");
    size_t packs = 0;
    assert_true(k.n > 0);
    for (size_t i = 0; i < k.n; i++) {
        const char *key = k.v[i];
        uint64_t z = k.size[i];
        int good = !strcmp(key, SS_KEY_CONFIG)                    ? z == SS_CONFIG_BYTES
                   : !strncmp(key, SS_KEY_KEYS_PREFIX, 5)         ? z == SS_KEYFILE_INFO_BYTES
                   : !strncmp(key, SS_KEY_DATA_PREFIX, 5)         ? ss_pad_is_bucket(z)
                   : !strncmp(key, SS_KEY_LOG_PREFIX, 4)          ? framed_on_bucket(z)
                   : !strncmp(key, SS_KEY_CHECKPOINTS_PREFIX, 12) ? framed_on_bucket(z)
                                                                  : 0;
        if (!good) failf("%s: %llu bytes is not on a size bucket", key, (unsigned long long)z);
        packs += !strncmp(key, SS_KEY_DATA_PREFIX, 5);
    }
    listing_free(&k);
    return packs;
}

static void test_padding(void **state)
{
    world *w = *state;
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 65536, 70001, 300000, 3 * MIB + 7};
    char name[32];
    join((world *)w, A);
    for (size_t i = 0; i < COUNT(sizes); i++) {
        snprintf(name, sizeof name, "f%zu", sizes[i]);
        write_random(at(w, A, name), sizes[i]);
    }
    ok(w, A, "sync");
    join((world *)w, B);
    expect_same_tree(w->dev[A], w->dev[B]);
    ss_store *s = world_store(w);
    expect_all_on_buckets(w);

    /*
     * Two pushes of one chunk each (below the chunker minimum), 300 bytes
     * apart: same sizes. The file's name (150 random letters and digits)
     * puts each log object's plaintext mid-bucket, raw (~430 bytes) or after
     * zstd (~330): with a short name both sit near 256 bytes, where the
     * random chunk ids and signature decide whether zstd gets below it.
     */
    char x[151];
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t i = 0; i < sizeof x - 1; i++)
        x[i] = alnum[randombytes_uniform(sizeof alnum - 1)];
    x[sizeof x - 1] = '\0';
    listing before = store_listing(w->url, "");
    write_random(at(w, A, x), 30000);
    ok(w, A, "sync");
    listing mid = store_listing(w->url, "");
    write_random(at(w, A, x), 30300);
    ok(w, A, "sync");
    listing after = store_listing(w->url, "");
    assert_int_equal(mid.n, before.n + 2); /* log/2 and one pack */
    assert_int_equal(after.n, mid.n + 2);
    uint64_t first[2] = {0}, second[2] = {0};
    for (size_t i = 0; i < mid.n; i++)
        if (strstr(mid.v[i], "00000000000000000002"))
            first[!strncmp(mid.v[i], "data/", 5)] = mid.size[i];
    for (size_t i = 0; i < after.n; i++)
        if (strstr(after.v[i], "00000000000000000003"))
            second[!strncmp(after.v[i], "data/", 5)] = after.size[i];
    assert_true(first[0] && first[1]);
    assert_int_equal(first[0], second[0]); /* log objects */
    assert_int_equal(first[1], second[1]); /* packs */
    expect_all_on_buckets(w);
    ok(w, B, "sync");
    expect_same_tree(w->dev[A], w->dev[B]);
    listing_free(&before);
    listing_free(&mid);
    listing_free(&after);
    ss_store_free(s);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_config_downgrade),     WORLD_TEST(test_keyfile_downgrade),
        WORLD_TEST(test_fingerprint_swap),     WORLD_TEST(test_padding),
        WORLD_TEST(test_store_learns_nothing),
    };
    if (fixture_init("sec")) return 1;
    fixture_use_s3(fixture_bucket() != NULL); /* RGW when there is one, else file:// */
    return cmocka_run_group_tests_name(fixture_bucket() ? "security/s3" : "security/file", tests,
                                       NULL, NULL);
}
