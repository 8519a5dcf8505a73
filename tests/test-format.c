/*
 * test-format: docs/FORMAT.md matches the code. The project's code writes a
 * repository into a temp file:// store (create, join, two pushes, a key
 * rotation, one more push); then an independent decoder, written only from
 * FORMAT.md with libsodium and libzstd (constants hard-coded, none from
 * core/), opens config and the key file, log/1 and log/2 through the hash
 * chain, every op of log/1 down to its sealed chunk in a data/ pack, then
 * epochs/0000000001 with the device's own key and the logs and pack of key
 * epoch 1 with that epoch's keys, and a checkpoint's header with the chain
 * values around it. Owns only this cross-check.
 */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>
#include <zstd.h>

#include "repo.h" /* the writer side only: the decoder below uses none of core/ */
#include "s3store.h"
#include "s3sync.h"

static const char PASS[] = "correct horse battery staple";
static const char PASS2[] = "a passphrase of key epoch 1";
static const char DEVICE[] = "format-test";
#define N_SUB 20  /* sub/f00..f19, 4000 random bytes each: inline, more than one record */
#define BIG 10000 /* big.bin: above the inline limit, one chunk */
#define MiB (1024u * 1024)

static char tmp[64], store_root[96], folder[96];
static char fingerprint[64]; /* as the code shows it */
static const uint8_t zero[32];

/* ---- the writer: the project's own code ---- */

static void put_file(const char *rel, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", folder, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void push_once(void)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    assert_int_equal(ss_folder_open(folder, NULL, NULL, &f, &err), SS_OK);
    if (ss_push(f, &st, &err)) fail_msg("push: %s", err.msg);
    ss_stats_clear(&st);
    ss_folder_free(f);
}

/* `s3sync checkpoint` as the library runs it. */
static void checkpoint_once(void)
{
    ss_folder *f = NULL;
    ss_checkpoint_result res = {0};
    ss_stats st = {0};
    ss_err err = {{0}};
    assert_int_equal(ss_folder_open(folder, NULL, NULL, &f, &err), SS_OK);
    if (ss_checkpoint(f, &res, &st, &err)) fail_msg("checkpoint: %s", err.msg);
    assert_int_equal(res.seq, 4);
    ss_stats_clear(&st);
    ss_folder_free(f);
}

/* `s3sync key rotate` as the library runs it: key epoch 1, and a new passphrase. */
static void rotate_once(void)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    assert_int_equal(ss_folder_open(folder, NULL, NULL, &f, &err), SS_OK);
    if (ss_folder_rotate(f, PASS2, strlen(PASS2), &st, &err)) fail_msg("rotate: %s", err.msg);
    ss_stats_clear(&st);
    ss_folder_free(f);
}

static void write_repository(void)
{
    char url[128], dir[128], name[16];
    ss_store *store = NULL;
    ss_repo *repo = NULL;
    ss_folder *f = NULL;
    ss_err err = {{0}};
    int created = -1;
    uint8_t buf[BIG];

    snprintf(url, sizeof url, "file://%s", store_root);
    assert_int_equal(ss_store_open(url, NULL, &store, &err), SS_OK);
    assert_int_equal(ss_repo_create(store, PASS, strlen(PASS), "test", &repo, &err), SS_OK);
    ss_repo_fingerprint(repo, fingerprint);
    ss_repo_free(repo), ss_store_free(store);
    ss_init_opts o = {.store_url = url, .passphrase = PASS, .passlen = strlen(PASS)};
    o.device_name = DEVICE;
    assert_int_equal(ss_folder_init(folder, &o, NULL, &f, &created, &err), SS_OK);
    assert_int_equal(created, 0); /* joined the repository made above */
    ss_folder_free(f);

    put_file("a.txt", "hello, format\n", 14);
    randombytes_buf(buf, sizeof buf);
    put_file("big.bin", buf, sizeof buf);
    snprintf(dir, sizeof dir, "%s/sub", folder);
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < N_SUB; i++) {
        snprintf(name, sizeof name, "sub/f%02d", i);
        randombytes_buf(buf, 4000);
        put_file(name, buf, 4000);
    }
    push_once();
}

/* ---- the independent decoder: FORMAT.md, libsodium and libzstd only ---- */

static uint8_t repo_id[16], subkey[8][32]; /* subkeys by id 1..7 */
static uint8_t master_key[32];
/* "Key epochs": the epoch objects are sealed under, and its content subkeys */
static uint32_t epoch;
static uint64_t epoch_start = 1;
static uint8_t object_key[32], chunk_key[32];

typedef struct cur {
    const uint8_t *p;
    size_t len, pos;
} cur;

static const uint8_t *take(cur *c, size_t n)
{
    assert_true(n <= c->len - c->pos); /* the input holds what it declares */
    c->pos += n;
    return c->p + c->pos - n;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    while (n-- > 0)
        v = v << 8 | p[n];
    return v;
}

static uint64_t u(cur *c, int n)
{
    return le(take(c, (size_t)n), n);
}

/* "Size padding": the padded length of len bytes, from the section's words alone. */
static uint64_t pad_size(uint64_t len)
{
    uint64_t n = len + 1, block;
    unsigned e = 0, s = 0;
    while (n >> (e + 1))
        e++; /* E = floor(log2 n) */
    while ((e ? e : 1) >> (s + 1))
        s++; /* S = floor(log2 E) + 1 */
    s++;
    block = e > s ? (uint64_t)1 << (e - s) : 1;
    if (block < 256) block = 256;
    return (len / block + 1) * block;
}

/* The unpadded length of p[0..plen): ISO/IEC 7816-4 padding to exactly its bucket. */
static size_t unpad(const uint8_t *p, size_t plen)
{
    size_t i = plen;
    while (i > 0 && p[i - 1] == 0)
        i--;
    assert_true(i > 0 && p[i - 1] == 0x80);
    assert_int_equal(pad_size(i - 1), plen);
    return i - 1;
}

/* File rel under dir (store_root for an object key), whole. */
static uint8_t *slurp(const char *dir, const char *rel, size_t *ret_len)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot open", path);
    assert_int_equal(fstat(fileno(f), &st), 0);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    *ret_len = (size_t)st.st_size;
    return p;
}

/* Sections "Keys", "config (96 bytes)", "keys/<id>" and "Key file info trailer". */
static void open_repo(uint64_t t0, uint64_t t1)
{
    size_t clen, klen;
    uint8_t *cfg = slurp(store_root, "config", &clen), master[32], pk[32], ad[80], mac[32];
    char pattern[128];
    glob_t g;
    assert_int_equal(clen, 96);
    assert_memory_equal(cfg, "S3SC\2\1\2\0", 8); /* version 2, suite 1, Argon2id, zero */
    assert_true(!memcmp(cfg + 41, zero, 7));
    assert_true(le(cfg + 56, 4) == 2 && le(cfg + 60, 4) == 64 * 1024); /* the KDF floor */
    memcpy(repo_id, cfg + 8, 16); /* unverified until the MAC checks */
    /* init's defaults: chunker sizes, inline limit, zstd level */
    assert_true(le(cfg + 24, 4) == 64 * 1024 && le(cfg + 28, 4) == 256 * 1024 &&
                le(cfg + 32, 4) == MiB && le(cfg + 36, 4) == 4096 && cfg[40] == 3);
    assert_in_range(le(cfg + 48, 8), t0, t1);
    snprintf(pattern, sizeof pattern, "%s/keys/*", store_root);
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    assert_int_equal(g.gl_pathc, 1);
    const char *name = strrchr(g.gl_pathv[0], '/') + 1;
    assert_true(strlen(name) == 16 && strspn(name, "0123456789abcdef") == 16);
    uint8_t *kf = slurp(store_root, name - 5, &klen); /* "keys/<id>" */
    globfree(&g);
    assert_int_equal(klen, 424);                /* with its info trailer */
    assert_memory_equal(kf, "S3SK\2\2\0\0", 8); /* magic, version 2, Argon2id, key epoch 0 */
    uint64_t ops = le(kf + 8, 8), mem = le(kf + 16, 8);
    assert_true(ops == 2 && mem == 64 * MiB); /* S3SYNC_KDF=interactive: the minimum limits */
    assert_int_equal(crypto_pwhash(pk, 32, PASS, strlen(PASS), kf + 24, ops, mem, kf[5]), 0);
    memcpy(ad, kf, 64), memcpy(ad + 64, repo_id, 16);
    uint8_t sealed[40]; /* key epoch 0's key, the master key, || u64 its start: 1 */
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, NULL, NULL, kf + 64, 56, ad,
                                                                80, kf + 40, pk),
                     0);
    memcpy(master, sealed, 32);
    assert_int_equal(le(sealed + 32, 8), 1);
    for (uint64_t id = 1; id <= 7; id++)
        assert_int_equal(crypto_kdf_derive_from_key(subkey[id], 32, id, "s3sync01", master), 0);
    memcpy(master_key, master, 32);
    memcpy(object_key, subkey[1], 32); /* epoch 0's content keys are the master key's */
    memcpy(chunk_key, subkey[5], 32);
    /* The trailer: subkey 7, AD = bytes 0..119 || repository id; created, L, label, zeros. */
    uint8_t tad[120 + 16], info[264], zeros[255] = {0};
    memcpy(tad, kf, 120), memcpy(tad + 120, repo_id, 16);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         info, NULL, NULL, kf + 144, 280, tad, sizeof tad, kf + 120, subkey[7]),
                     0);
    assert_in_range(le(info, 8), t0, t1);
    assert_true(info[8] == 4 && !memcmp(info + 9, "test", 4) && !memcmp(info + 13, zeros, 251));
    crypto_generichash(mac, 32, cfg, 64, subkey[3], 32);
    assert_memory_equal(mac, cfg + 64, 32);
    /* "Repository fingerprint": BLAKE2b-128(subkey 6; label || id), 8 groups of 4 hex. */
    uint8_t fp[16], msg[21 + 16];
    char text[40], *t = text;
    memcpy(msg, "s3sync-fingerprint-v1", 21), memcpy(msg + 21, repo_id, 16);
    crypto_generichash(fp, 16, msg, sizeof msg, subkey[6], 32);
    for (int i = 0; i < 16; i++)
        t += sprintf(t, "%s%02x", i && i % 2 == 0 ? "-" : "", fp[i]);
    assert_string_equal(text, fingerprint);
    free(cfg), free(kf);
}

/* "Framed objects": the plaintext, or NULL when a record does not authenticate. */
static uint8_t *open_object(const char *key, uint64_t seq, const uint8_t prev_chain[32],
                            size_t *ret_len, int *ret_records, uint8_t hash[32])
{
    size_t olen, pos = 44, plen = 0, klen = strlen(key);
    uint8_t *obj = slurp(store_root, key, &olen), ctx[32], b[10] = {(uint8_t)klen, 0};
    uint8_t *plain = malloc(olen + 1), kind = !strncmp(key, "checkpoints/", 12) ? 2 : 1;
    crypto_generichash_state h;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char tag = 0;
    assert_true(plain && olen >= 44 + 17);
    assert_memory_equal(obj, "S3SO\2", 5); /* magic, version 2 */
    assert_int_equal(obj[5], kind);        /* 1: log, 2: checkpoint */
    assert_true((obj[6] & ~1) == 0 && obj[7] == 0);
    /* the key epoch in force, and where it began */
    assert_true(le(obj + 8, 4) == epoch && le(obj + 12, 8) == epoch_start);
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-object-v1", 16);
    crypto_generichash_update(&h, repo_id, 16);
    crypto_generichash_update(&h, obj, 20);
    crypto_generichash_update(&h, b, 2); /* u16 len(key); keys here are short */
    crypto_generichash_update(&h, (const uint8_t *)key, klen);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(seq >> (8 * i));
    crypto_generichash_update(&h, b, 8);
    crypto_generichash_update(&h, prev_chain, 32);
    crypto_generichash_final(&h, ctx, 32);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&st, obj + 20, object_key), 0);
    for (*ret_records = 0; pos < olen; ++*ret_records) { /* 65553 bytes a record but the last */
        size_t n = olen - pos < 65553 ? olen - pos : 65553;
        unsigned long long m = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(&st, plain + plen, &m, &tag, obj + pos, n,
                                                       ctx, 32) != 0) {
            free(obj), free(plain);
            return NULL;
        }
        pos += n, plen += m;
        assert_int_equal(tag, pos == olen ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                                          : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    }
    crypto_generichash(hash, 32, obj, olen, NULL, 0);
    plen = unpad(plain, plen);
    if (obj[6] & 1) {               /* exactly one zstd frame */
        uint8_t *out = malloc(MiB); /* ample for this test's transactions */
        assert_int_equal(ZSTD_findFrameCompressedSize(plain, plen), plen);
        size_t outlen = ZSTD_decompress(out, MiB, plain, plen);
        assert_false(ZSTD_isError(outlen));
        free(plain);
        plain = out, plen = outlen;
    }
    free(obj);
    *ret_len = plen;
    return plain;
}

/* "Transactions": header and pack table; returns n_ops, *packs points at the table. */
static uint32_t txn_header(cur *c, uint64_t seq, uint64_t t0, uint64_t t1,
                           const uint8_t device_id[16], const uint8_t **packs, uint32_t *n_packs)
{
    assert_memory_equal(take(c, 8), "S3ST\2\0\0\0", 8); /* magic, version 2, zero */
    assert_int_equal(u(c, 8), seq);
    assert_in_range(u(c, 8), t0 * 1000000000u, (t1 + 1) * 1000000000u);
    assert_memory_equal(take(c, 16), device_id, 16);
    assert_int_equal(u(c, 2), strlen(DEVICE));
    assert_memory_equal(take(c, strlen(DEVICE)), DEVICE, strlen(DEVICE));
    *n_packs = (uint32_t)u(c, 4);
    uint32_t n_ops = (uint32_t)u(c, 4);
    *packs = c->p + c->pos;
    for (uint32_t i = 0; i < *n_packs; i++) {
        assert_int_equal(u(c, 2), 42);
        const char *k = (const char *)take(c, 42);
        assert_true(!memcmp(k, "data/", 5) && strspn(k + 5, "0123456789") == 20 && k[25] == '-' &&
                    strspn(k + 26, "0123456789abcdef") >= 16);
        assert_in_range(strtoull(k + 5, NULL, 10), 1, seq);
    }
    return n_ops;
}

/*
 * "Devices and signatures": the device section of a transaction by device
 * id with public key pk; enrolling: it is the device's first transaction.
 */
static void txn_devices(cur *c, uint64_t seq, const uint8_t device_id[16], const uint8_t pk[32],
                        int enrolling)
{
    uint8_t id[16];
    crypto_generichash_state h;
    assert_int_equal(u(c, 2), enrolling ? 1 : 0);
    if (!enrolling) return;
    crypto_generichash_init(&h, NULL, 0, 16); /* device id = BLAKE2b-128(label || key) */
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-device-v1", 16);
    crypto_generichash_update(&h, pk, 32);
    crypto_generichash_final(&h, id, 16);
    assert_memory_equal(id, device_id, 16);
    assert_int_equal(u(c, 1), 1); /* enroll */
    assert_memory_equal(take(c, 16), device_id, 16);
    assert_int_equal(u(c, 8), seq);
    assert_memory_equal(take(c, 32), pk, 32);
    assert_int_equal(u(c, 2), strlen(DEVICE));
    assert_memory_equal(take(c, strlen(DEVICE)), DEVICE, strlen(DEVICE));
}

/*
 * The signature that ends log/<seq>'s plaintext p[0..len), by the key pk of
 * device id, the only device of the table after it (enrolled by log/1).
 */
static void txn_signature(const uint8_t *p, size_t len, uint64_t seq, const uint8_t prev[32],
                          const uint8_t id[16], const uint8_t pk[32])
{
    uint8_t msg[13 + 16 + 1 + 8 + 32 + 32 + 32], *m = msg, table[17 + 4 + 16 + 32 + 16] = {0};
    assert_true(len > 64);
    memcpy(m, "s3sync-sig-v2", 13), m += 13;
    memcpy(m, repo_id, 16), m += 16;
    *m++ = 1; /* frame kind: log */
    for (int i = 0; i < 8; i++)
        *m++ = (uint8_t)(seq >> (8 * i));
    memcpy(m, prev, 32), m += 32;
    crypto_generichash(m, 32, p, len - 64, NULL, 0), m += 32;
    /* table hash: label, u32 1 device, its id, key, u64 enrolled 1, u64 revoked 0 */
    memcpy(table, "s3sync-devices-v1", 17);
    table[17] = 1;
    memcpy(table + 21, id, 16), memcpy(table + 37, pk, 32);
    table[69] = 1;
    crypto_generichash(m, 32, table, sizeof table, NULL, 0);
    assert_int_equal(crypto_sign_verify_detached(p + len - 64, msg, sizeof msg, pk), 0);
    msg[29] ^= 1; /* another sequence: it does not verify */
    assert_int_not_equal(crypto_sign_verify_detached(p + len - 64, msg, sizeof msg, pk), 0);
}

/* crypto_kdf_derive_from_key(32, id, "s3sync-e", key): a subkey of an epoch key. */
static void epoch_subkey(uint8_t out[32], uint64_t id, const uint8_t key[32])
{
    assert_int_equal(crypto_kdf_derive_from_key(out, 32, id, "s3sync-e", key), 0);
}

/*
 * "Key epochs": epochs/0000000001 opened with the device's own key (the X25519
 * form of its Ed25519 key): K_1, checked against the object's check, its link
 * to the master key, the signature; then objects are read under epoch 1 from
 * sequence start.
 */
static void open_epoch_1(const uint8_t device_id[16], const uint8_t sk[64], uint64_t start)
{
    size_t len;
    uint8_t *o = slurp(store_root, "epochs/0000000001", &len);
    uint8_t xpk[32], xsk[32], k1[32], key[32], check[32], msg[20], link[40], digest[32];
    uint8_t sigmsg[19 + 32];
    assert_int_equal(len, 60 + 80 + 96 + 16 + 64);      /* one grant: the repository's one device */
    assert_memory_equal(o, "S3SE\2\0\1\0\1\0\0\0", 12); /* version 2, 1 grant, epoch 1 */
    assert_memory_equal(o + 12, repo_id, 16);
    assert_memory_equal(o + 140, device_id, 16);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(xpk, sk + 32), 0);
    assert_int_equal(crypto_sign_ed25519_sk_to_curve25519(xsk, sk), 0);
    assert_int_equal(crypto_box_seal_open(k1, o + 156, 80, xpk, xsk), 0);
    epoch_subkey(key, 2, k1); /* check = BLAKE2b-256(check subkey; repository id || u32 1) */
    memcpy(msg, repo_id, 16), memset(msg + 16, 0, 4), msg[16] = 1;
    crypto_generichash(check, 32, msg, 20, key, 32);
    assert_memory_equal(check, o + 28, 32);
    epoch_subkey(key, 1, k1); /* link: K_0 and where epoch 0 began, AD = the header */
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(link, NULL, NULL, o + 60 + 24, 56,
                                                                o, 60, o + 60, key),
                     0);
    assert_memory_equal(link, master_key, 32);
    assert_int_equal(le(link + 32, 8), 1);
    assert_memory_equal(o + 236, device_id, 16); /* the signer, a reader */
    crypto_generichash(digest, 32, o, 252, NULL, 0);
    memcpy(sigmsg, "s3sync-epoch-sig-v1", 19), memcpy(sigmsg + 19, digest, 32);
    assert_int_equal(crypto_sign_verify_detached(o + 252, sigmsg, sizeof sigmsg, sk + 32), 0);
    epoch = 1, epoch_start = start;
    epoch_subkey(object_key, 3, k1);
    epoch_subkey(chunk_key, 4, k1);
    free(o);
}

/* "Sealed chunks and data/ packs": the chunk a 52-byte chunk ref names, into dst. */
static void open_chunk(const uint8_t *packs, uint32_t n_packs, const uint8_t *ref, uint8_t *dst)
{
    uint64_t pack = le(ref, 4), off = le(ref + 4, 8), sealed = le(ref + 12, 4);
    uint32_t plain = (uint32_t)le(ref + 16, 4);
    const uint8_t *id = ref + 20;
    char key[43] = {0};
    size_t plen;
    uint8_t ad[63], body[2 * BIG], calc[32];
    unsigned long long blen = 0;
    assert_true(pack < n_packs && plain >= 1 && plain <= MiB && sealed >= 40 + 256 &&
                pad_size(sealed - 41) == sealed - 40 && sealed - 40 <= pad_size(1 + plain) &&
                sealed - 40 <= sizeof body);
    memcpy(key, packs + pack * 44 + 2, 42);
    uint8_t *p = slurp(store_root, key, &plen);
    assert_true(off + sealed <= plen);
    assert_int_equal(pad_size(plen - 1), plen); /* the pack: filler to its bucket */
    memcpy(ad, "s3sync-chunk-v1", 15), memcpy(ad + 15, repo_id, 16), memcpy(ad + 31, id, 32);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         body, &blen, NULL, p + off + 24, sealed - 24, ad, 63, p + off, chunk_key),
                     0);
    blen = unpad(body, blen);
    assert_int_equal(body[0] & ~1, 0);
    if (body[0] & 1) {
        assert_int_equal(ZSTD_getFrameContentSize(body + 1, blen - 1), plain);
        assert_int_equal(ZSTD_decompress(dst, plain, body + 1, blen - 1), plain);
    } else {
        assert_int_equal(blen - 1, plain);
        memcpy(dst, body + 1, plain);
    }
    crypto_generichash(calc, 32, dst, plain, subkey[2], 32);
    assert_memory_equal(calc, id, 32);
    free(p);
}

/* Every op of a transaction, against the files want_path[0..n_ops) that were pushed. */
static void txn_ops(cur *c, uint32_t n_ops, const uint8_t *packs, uint32_t n_packs,
                    char (*want_path)[16])
{
    for (uint32_t i = 0; i < n_ops; i++) {
        uint8_t data[BIG], id[32];
        char full[256];
        struct stat st;
        size_t wlen;
        assert_int_equal(u(c, 1), 1); /* upsert */
        assert_int_equal(u(c, 2), strlen(want_path[i]));
        assert_memory_equal(take(c, strlen(want_path[i])), want_path[i], strlen(want_path[i]));
        snprintf(full, sizeof full, "%s/%s", folder, want_path[i]);
        assert_int_equal(lstat(full, &st), 0);
        unsigned kind = (unsigned)u(c, 1);
        assert_int_equal(kind, S_ISDIR(st.st_mode) ? 2 : 1);
        assert_int_equal(u(c, 4), st.st_mode & 07777);
        assert_int_equal(u(c, 8), (uint64_t)st.st_mtim.tv_sec);
        assert_int_equal(u(c, 4), (uint64_t)st.st_mtim.tv_nsec);
        uint64_t size = u(c, 8);
        assert_int_equal(size, kind == 2 ? 0 : (uint64_t)st.st_size);
        if (kind == 2) continue;
        const uint8_t *content_id = take(c, 32);
        unsigned storage = (unsigned)u(c, 1);
        if (storage == 1) { /* inline: content id = BLAKE2b-256(chunk-id subkey; bytes) */
            assert_true(size <= 4096 && u(c, 4) == size);
            memcpy(data, take(c, size), size);
            crypto_generichash(id, 32, data, size, subkey[2], 32);
        } else { /* chunks: content id = BLAKE2b-256(chunk-id subkey; label || chunk id*) */
            crypto_generichash_state h;
            uint32_t n = (uint32_t)u(c, 4), got = 0;
            assert_true(storage == 2 && size > 4096);
            crypto_generichash_init(&h, subkey[2], 32, 32);
            crypto_generichash_update(&h, (const uint8_t *)"s3sync-content-v1", 17);
            for (uint32_t j = 0; j < n; j++) {
                const uint8_t *ref = take(c, 52);
                assert_true(le(ref + 16, 4) <= size - got);
                open_chunk(packs, n_packs, ref, data + got);
                crypto_generichash_update(&h, ref + 20, 32);
                got += (uint32_t)le(ref + 16, 4);
            }
            assert_int_equal(got, size);
            crypto_generichash_final(&h, id, 32);
        }
        uint8_t *want = slurp(folder, want_path[i], &wlen);
        assert_memory_equal(data, want, size);
        assert_memory_equal(id, content_id, 32);
        free(want);
    }
    take(c, 64);                      /* the signature */
    assert_int_equal(c->pos, c->len); /* no trailing bytes */
}

static void test_format_matches_code(void **state)
{
    (void)state;
    uint8_t hash[32], chain1[32], device_id[16], msg[15 + 64] = "s3sync-chain-v1";
    size_t len;
    int records;
    uint64_t t0 = (uint64_t)time(NULL);

    assert_non_null(mkdtemp(strcpy(tmp, "/tmp/ss-format.XXXXXX")));
    snprintf(store_root, sizeof store_root, "%s/store", tmp);
    snprintf(folder, sizeof folder, "%s/folder", tmp);
    write_repository();
    uint64_t t1 = (uint64_t)time(NULL);
    char *settings = (char *)slurp(folder, ".s3sync/config", &len); /* has "device_id = HEX" */
    settings[len] = 0;
    const char *hex = strstr(settings, "device_id = ");
    assert_non_null(hex);
    assert_int_equal(sodium_hex2bin(device_id, 16, hex + 12, 32, NULL, NULL, NULL), 0);
    free(settings);
    uint8_t *sk = slurp(folder, ".s3sync/device.key", &len), pk[32]; /* seed || public key */
    assert_int_equal(len, 64);
    memcpy(pk, sk + 32, 32);

    open_repo(t0, t1);
    uint8_t *plain = open_object("log/00000000000000000001", 1, zero, &len, &records, hash);
    assert_non_null(plain);
    assert_int_equal(records, 2); /* N_SUB x 4000 random bytes: more than one 64 KiB record */
    cur c = {plain, len, 0};
    const uint8_t *packs;
    uint32_t n_packs, n_ops = txn_header(&c, 1, t0, t1, device_id, &packs, &n_packs);
    assert_int_equal(n_packs, 1);
    txn_devices(&c, 1, device_id, pk, 1);
    char log1_paths[N_SUB + 3][16] = {"a.txt", "big.bin", "sub"}; /* '/' sorts lowest */
    for (int i = 0; i < N_SUB; i++)
        snprintf(log1_paths[3 + i], sizeof log1_paths[0], "sub/f%02d", i);
    assert_int_equal(n_ops, N_SUB + 3);
    txn_ops(&c, n_ops, packs, n_packs, log1_paths);
    txn_signature(plain, len, 1, zero, device_id, pk);
    free(plain);

    put_file("a.txt", "hello again\n", 12);
    push_once();
    t1 = (uint64_t)time(NULL);

    /* "Hash chain": log/2 opens only with chain(1) in its context, and not as log/1. */
    memcpy(msg + 15, zero, 32), memcpy(msg + 47, hash, 32);
    crypto_generichash(chain1, 32, msg, sizeof msg, subkey[4], 32);
    assert_null(open_object("log/00000000000000000002", 2, zero, &len, &records, hash));
    assert_null(open_object("log/00000000000000000001", 2, chain1, &len, &records, hash));
    plain = open_object("log/00000000000000000002", 2, chain1, &len, &records, hash);
    assert_non_null(plain);
    c = (cur){plain, len, 0};
    assert_int_equal(txn_header(&c, 2, t0, t1, device_id, &packs, &n_packs), 1);
    /* big.bin, re-read as racy (written this second), may list log/1's pack unreferenced */
    assert_in_range(n_packs, 0, 1);
    txn_devices(&c, 2, device_id, pk, 0);               /* enrolled by log/1 */
    assert_memory_equal(take(&c, 8), "\1\5\0a.txt", 8); /* upsert, u16 5, path */
    txn_signature(plain, len, 2, chain1, device_id, pk);
    free(plain);

    /* "Key epochs": a rotation begins epoch 1 at log/3, and log/4 and its pack are under it. */
    uint8_t chain2[32], chain3[32], big2[BIG];
    memcpy(msg + 15, chain1, 32), memcpy(msg + 47, hash, 32);
    crypto_generichash(chain2, 32, msg, sizeof msg, subkey[4], 32);
    rotate_once();
    randombytes_buf(big2, sizeof big2);
    put_file("big2.bin", big2, sizeof big2);
    push_once();
    t1 = (uint64_t)time(NULL);
    open_epoch_1(device_id, sk, 3);
    plain = open_object("log/00000000000000000003", 3, chain2, &len, &records, hash);
    assert_non_null(plain);
    c = (cur){plain, len, 0};
    assert_int_equal(txn_header(&c, 3, t0, t1, device_id, &packs, &n_packs), 0);
    assert_int_equal(n_packs, 0);
    txn_devices(&c, 3, device_id, pk, 0); /* a rotation: no entry, no op */
    txn_signature(plain, len, 3, chain2, device_id, pk);
    free(plain);
    memcpy(msg + 15, chain2, 32), memcpy(msg + 47, hash, 32);
    crypto_generichash(chain3, 32, msg, sizeof msg, subkey[4], 32);
    plain = open_object("log/00000000000000000004", 4, chain3, &len, &records, hash);
    assert_non_null(plain);
    c = (cur){plain, len, 0};
    n_ops = txn_header(&c, 4, t0, t1, device_id, &packs, &n_packs);
    assert_int_equal(n_packs, 1);
    txn_devices(&c, 4, device_id, pk, 0);
    char log4_paths[1][16] = {"big2.bin"};
    assert_int_equal(n_ops, 1);
    txn_ops(&c, n_ops, packs, n_packs, log4_paths); /* its chunk opens with epoch 1's key */
    txn_signature(plain, len, 4, chain3, device_id, pk);
    free(plain);

    /* "Checkpoints": the header records chain(4) and chain(3); prev_chain is zero. */
    uint8_t chain4[32];
    memcpy(msg + 15, chain3, 32), memcpy(msg + 47, hash, 32);
    crypto_generichash(chain4, 32, msg, sizeof msg, subkey[4], 32);
    checkpoint_once();
    t1 = (uint64_t)time(NULL);
    plain = open_object("checkpoints/00000000000000000004", 4, zero, &len, &records, hash);
    assert_non_null(plain);
    c = (cur){plain, len, 0};
    assert_memory_equal(take(&c, 8), "S3CK\2\0\0\0", 8); /* magic, version 2, zero */
    assert_memory_equal(take(&c, 32), chain4, 32);
    assert_memory_equal(take(&c, 32), chain3, 32);
    assert_int_equal(txn_header(&c, 4, t0, t1, device_id, &packs, &n_packs), N_SUB + 4);
    txn_devices(&c, 1, device_id, pk, 1); /* the table at 4: enrolled at 1 */
    free(plain);
    free(sk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_format_matches_code)};
    char cmd[96];
    setenv("S3SYNC_KDF", "interactive", 1);
    if (sodium_init() < 0) return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (tmp[0] && system(cmd) != 0) return 1;
    return failed;
}
