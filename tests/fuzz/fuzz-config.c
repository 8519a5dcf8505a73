/*
 * fuzz-config: libFuzzer target for the config and key-file parsers
 * (core/format/keys.c, keyfile.c), with fixed keys and a fixed passphrase.
 *
 * Byte 0 picks the mode (low 2 bits); the rest is the object:
 *   0 config   ss_config_parse_unverified, then ss_config_open
 *   1 sealed   the same after the target wrote the fixed repository id
 *              (bit 2 of byte 0) and a valid MAC into a 96-byte input, so
 *              the field rules run on an authentic config; an accepted one
 *              must re-encode byte for byte (the encoding is canonical)
 *   2 key file ss_keyfile_open with the fixed passphrase, then
 *              ss_keyfile_info_open (the info trailer) with the fixed keys
 *   3 both     as 0, then as 2
 * A key file whose header passes and asks for limits other than the minimum
 * is skipped: Argon2id at those limits takes seconds and gigabytes per run.
 * At the minimum (2, 64 MiB) it runs, about 0.1 s each: such inputs are slow
 * by design. Any result but the documented refusals aborts.
 *
 * S3SYNC_FUZZ_SEEDS=DIR fuzz-config writes the seeds of corpus-config/ to DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char PASS[] = "fuzz passphrase";
static ss_keys *keys;

static void expect(ss_rc rc, ss_rc a, ss_rc b, const ss_err *err)
{
    if (rc == SS_OK || rc == a || rc == b) return;
    fprintf(stderr, "unexpected rc %d: %s\n", rc, err->msg);
    abort();
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void config(const uint8_t *d, size_t n, int seal, int own_id)
{
    uint8_t c[SS_CONFIG_BYTES], again[SS_CONFIG_BYTES];
    ss_config parsed, opened;
    ss_err err = {{0}};

    if (seal && n == SS_CONFIG_BYTES) {
        memcpy(c, d, n);
        if (own_id) memcpy(c + SS_CONFIG_OFF_REPO_ID, ss_keys_repo_id(keys), SS_REPO_ID_BYTES);
        crypto_generichash(c + SS_CONFIG_OFF_MAC, SS_CONFIG_MAC_BYTES, c, SS_CONFIG_OFF_MAC,
                           ss_keys_subkey(keys, SS_SUBKEY_CONFIG), SS_SUBKEY_BYTES);
        d = c;
    }
    ss_rc p = ss_config_parse_unverified(d, n, &parsed, &err);
    expect(p, SS_ERR_INTEGRITY, SS_ERR_INTEGRITY, &err);
    ss_rc o = ss_config_open(keys, d, n, &opened, &err);
    expect(o, SS_ERR_INTEGRITY, SS_ERR_INTEGRITY, &err);
    if (o == SS_OK) {
        /* Opened: parsed, authentic, ours, and canonical. */
        if (p != SS_OK || memcmp(opened.repo_id, ss_keys_repo_id(keys), SS_REPO_ID_BYTES)) abort();
        if (ss_config_encode(keys, &opened, again, &err) != SS_OK || memcmp(again, d, n)) {
            fprintf(stderr, "an opened config does not re-encode to itself: %s\n", err.msg);
            abort();
        }
    } else if (seal && own_id && n == SS_CONFIG_BYTES && p == SS_OK) {
        abort(); /* authentic, ours and well formed, yet refused */
    }
}

static void keyfile(const uint8_t *d, size_t n)
{
    ss_keys *k = NULL;
    ss_err err = {{0}};

    /* The checks before the KDF, mirrored only to skip the expensive limits. */
    if ((n == SS_KEYFILE_BYTES || n == SS_KEYFILE_INFO_BYTES) && !memcmp(d, SS_KEYFILE_MAGIC, 4) &&
        d[SS_KEYFILE_OFF_VERSION] == SS_FORMAT_VERSION &&
        d[SS_KEYFILE_OFF_ALG] == SS_KEYFILE_ALG_ARGON2ID13) {
        uint64_t ops = le64(d + SS_KEYFILE_OFF_OPSLIMIT), mem = le64(d + SS_KEYFILE_OFF_MEMLIMIT);
        int in_bounds = ops >= SS_KDF_OPSLIMIT_MIN && ops <= SS_KDF_OPSLIMIT_MAX &&
                        mem >= SS_KDF_MEMLIMIT_MIN && mem <= SS_KDF_MEMLIMIT_MAX;
        if (in_bounds && (ops != SS_KDF_OPSLIMIT_MIN || mem != SS_KDF_MEMLIMIT_MIN)) return;
    }
    ss_rc rc = ss_keyfile_open(d, n, ss_keys_repo_id(keys), PASS, strlen(PASS), &k, &err);
    expect(rc, SS_ERR_INTEGRITY, SS_ERR_PASSPHRASE, &err);
    if (rc == SS_OK) { /* only the seed's own seal opens: the fixed master key */
        if (memcmp(ss_keys_master(k), ss_keys_master(keys), SS_MASTER_KEY_BYTES)) abort();
        if (memcmp(ss_keys_repo_id(k), ss_keys_repo_id(keys), SS_REPO_ID_BYTES)) abort();
    } else if (k) {
        abort();
    }
    ss_keys_free(k);
    /* The trailer opens only as the seed's own seal; never out of bounds on any input. */
    ss_keyfile_info info;
    rc = ss_keyfile_info_open(keys, d, n, &info, &err);
    expect(rc, SS_ERR_INTEGRITY, SS_ERR_INTEGRITY, &err);
    if (rc == SS_OK && n == SS_KEYFILE_INFO_BYTES && !info.present) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    switch (data[0] & 3) {
    case 0: config(data + 1, size - 1, 0, 0); break;
    case 1: config(data + 1, size - 1, 1, data[0] & 4); break;
    case 2: keyfile(data + 1, size - 1); break;
    case 3:
        config(data + 1, size - 1, 0, 0);
        keyfile(data + 1, size - 1);
        break;
    }
    return 0;
}

/* ---- seeds ---- */

static void seed(const char *dir, const char *name, uint8_t mode, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&mode, 1, 1, f) != 1 || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    ss_config cfg;
    uint8_t c[SS_CONFIG_BYTES], kf[SS_KEYFILE_BYTES], kfi[SS_KEYFILE_INFO_BYTES];
    ss_kdf_limits min = {SS_KDF_OPSLIMIT_MIN, SS_KDF_MEMLIMIT_MIN};
    ss_err err = {{0}};

    ss_config_init(&cfg, keys, 1700000000);
    if (ss_config_encode(keys, &cfg, c, &err)) abort();
    seed(dir, "config", 0, c, sizeof c);
    seed(dir, "config-sealed", 1 | 4, c, sizeof c);
    cfg.chunker.min_size = 64, cfg.chunker.avg_size = 256, cfg.chunker.max_size = 8u << 20;
    cfg.inline_limit = 1u << 20, cfg.zstd_level = 19;
    if (ss_config_encode(keys, &cfg, c, &err)) abort();
    seed(dir, "config-limits", 1 | 4, c, sizeof c);
    if (ss_keyfile_seal(keys, PASS, strlen(PASS), &min, kf, &err)) abort();
    seed(dir, "keyfile", 2, kf, sizeof kf);
    kf[SS_KEYFILE_OFF_OPSLIMIT] = 1; /* below the minimum: refused before the KDF */
    seed(dir, "keyfile-weak", 2, kf, sizeof kf);
    kf[SS_KEYFILE_OFF_OPSLIMIT] = 2;
    kf[SS_KEYFILE_OFF_MEMLIMIT + 5] = 1; /* 1 TiB: refused before the KDF */
    seed(dir, "keyfile-huge", 2, kf, sizeof kf);
    if (ss_keyfile_seal_info(keys, PASS, strlen(PASS), &min, 1700000000, "laptop", kfi, &err))
        abort();
    seed(dir, "keyfile-info", 2, kfi, sizeof kfi);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint8_t master[SS_MASTER_KEY_BYTES], id[SS_REPO_ID_BYTES];
    ss_err err = {{0}};
    (void)argc, (void)argv;
    for (size_t i = 0; i < sizeof master; i++)
        master[i] = (uint8_t)(0x40 + i);
    for (size_t i = 0; i < sizeof id; i++)
        id[i] = (uint8_t)(0xc0 + i);
    if (sodium_init() < 0 || ss_keys_from_master(master, id, &keys, &err)) abort();
    const char *dir = getenv("S3SYNC_FUZZ_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}
