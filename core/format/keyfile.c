/*
 * keyfile: the key files, keys/<id> (docs/FORMAT.md "keys/<id>"): a
 * passphrase's Argon2id key sealing the newest key epoch's key and where it
 * began, the info trailer (creation time, label), and the KDF limits a
 * reader accepts. The keys themselves are keys.c's.
 */
#include "keys.h"
#include "keys_impl.h"

#include "le.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

ss_rc ss_kdf_limits_from_env(ss_kdf_limits *ret_limits, ss_err *err)
{
    const char *v = getenv(SS_KDF_ENV);

    ret_limits->opslimit = SS_KDF_OPSLIMIT_DEFAULT;
    ret_limits->memlimit = SS_KDF_MEMLIMIT_DEFAULT;
    if (!v || !*v || !strcmp(v, "moderate")) return SS_OK;
    if (!strcmp(v, "interactive")) {
        ret_limits->opslimit = SS_KDF_OPSLIMIT_MIN;
        ret_limits->memlimit = SS_KDF_MEMLIMIT_MIN;
        return SS_OK;
    }
    if (!strcmp(v, "sensitive")) {
        ret_limits->opslimit = SS_KDF_OPSLIMIT_MAX;
        ret_limits->memlimit = SS_KDF_MEMLIMIT_MAX;
        return SS_OK;
    }
    return ss_fail(err, SS_ERR_INVALID, "%s=%s: expected interactive, moderate or sensitive",
                   SS_KDF_ENV, v);
}

/* Argon2id into a guarded buffer; *ret_pk is sodium_malloc'ed. */
static ss_rc passphrase_key(const char *passphrase, size_t passlen, const uint8_t *salt,
                            uint64_t ops, uint64_t mem, uint8_t **ret_pk, ss_err *err)
{
    uint8_t *pk = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

    *ret_pk = NULL;
    if (!pk) return ss_fail(err, SS_ERR_NOMEM, "key file: out of secure memory");
    if (crypto_pwhash(pk, crypto_aead_xchacha20poly1305_ietf_KEYBYTES, passphrase, passlen, salt,
                      ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_free(pk);
        return ss_fail(err, SS_ERR_NOMEM, "key file: Argon2id could not get %llu bytes of memory",
                       (unsigned long long)mem);
    }
    *ret_pk = pk;
    return SS_OK;
}

/* 112 bytes, or 112 and an info trailer: other sizes are not key files. */
static ss_rc keyfile_size(size_t len, ss_err *err)
{
    if (len == SS_KEYFILE_BYTES || len == SS_KEYFILE_INFO_BYTES) return SS_OK;
    return ss_fail(err, SS_ERR_INTEGRITY, "key file: %zu bytes, expected %u or %u", len,
                   SS_KEYFILE_BYTES, SS_KEYFILE_INFO_BYTES);
}

static void keyfile_ad(const uint8_t *file, const uint8_t *repo_id,
                       uint8_t ad[SS_KEYFILE_HEADER_BYTES + SS_REPO_ID_BYTES])
{
    memcpy(ad, file, SS_KEYFILE_HEADER_BYTES);
    memcpy(ad + SS_KEYFILE_HEADER_BYTES, repo_id, SS_REPO_ID_BYTES);
}

ss_rc ss_keyfile_seal(const ss_keys *keys, const char *passphrase, size_t passlen,
                      const ss_kdf_limits *limits, uint8_t out[SS_KEYFILE_BYTES], ss_err *err)
{
    uint8_t file[SS_KEYFILE_BYTES] = {0};
    uint8_t ad[SS_KEYFILE_HEADER_BYTES + SS_REPO_ID_BYTES];
    uint8_t *pk = NULL, *plain = NULL;
    const epoch_slot *newest;
    ss_kdf_limits lim;
    ss_rc rc;

    if (out) memset(out, 0, SS_KEYFILE_BYTES);
    if (!keys || !out || (!passphrase && passlen))
        return ss_fail(err, SS_ERR_INVALID, "key file: missing argument");
    if (passlen == 0) return ss_fail(err, SS_ERR_INVALID, "key file: empty passphrase");
    if (limits) {
        lim = *limits;
    } else {
        rc = ss_kdf_limits_from_env(&lim, err);
        if (rc) return rc;
    }
    if (ss_kdf_limits_weak(lim.opslimit, lim.memlimit) ||
        ss_kdf_limits_huge(lim.opslimit, lim.memlimit))
        return ss_fail(err, SS_ERR_INVALID,
                       "key file: KDF limits opslimit %llu, memlimit %llu are outside "
                       "[%u, %u] x [%llu, %llu]",
                       (unsigned long long)lim.opslimit, (unsigned long long)lim.memlimit,
                       SS_KDF_OPSLIMIT_MIN, SS_KDF_OPSLIMIT_MAX, SS_KDF_MEMLIMIT_MIN,
                       SS_KDF_MEMLIMIT_MAX);

    memcpy(file + SS_KEYFILE_OFF_MAGIC, SS_KEYFILE_MAGIC, 4);
    file[SS_KEYFILE_OFF_VERSION] = SS_FORMAT_VERSION;
    file[SS_KEYFILE_OFF_ALG] = SS_KEYFILE_ALG_ARGON2ID13;
    ss_le_put16(file + SS_KEYFILE_OFF_EPOCH, (uint16_t)(keys->n_epochs - 1));
    ss_le_put64(file + SS_KEYFILE_OFF_OPSLIMIT, lim.opslimit);
    ss_le_put64(file + SS_KEYFILE_OFF_MEMLIMIT, lim.memlimit);
    randombytes_buf(file + SS_KEYFILE_OFF_SALT, SS_KEYFILE_SALT_BYTES);
    randombytes_buf(file + SS_KEYFILE_OFF_NONCE, SS_KEYFILE_NONCE_BYTES);

    rc = passphrase_key(passphrase, passlen, file + SS_KEYFILE_OFF_SALT, lim.opslimit, lim.memlimit,
                        &pk, err);
    if (rc != SS_OK) goto fail;
    plain = sodium_malloc(SS_KEYFILE_PLAIN_BYTES);
    if (!plain) {
        rc = ss_fail(err, SS_ERR_NOMEM, "key file: out of secure memory");
        goto fail;
    }
    newest = &keys->epochs[keys->n_epochs - 1]; /* a key file opens the newest epoch */
    memcpy(plain, newest->key, SS_EPOCH_KEY_BYTES);
    ss_le_put64(plain + SS_EPOCH_KEY_BYTES, newest->start);
    keyfile_ad(file, keys->repo_id, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(file + SS_KEYFILE_OFF_SEALED, NULL, plain,
                                               SS_KEYFILE_PLAIN_BYTES, ad, sizeof ad, NULL,
                                               file + SS_KEYFILE_OFF_NONCE, pk);
    memcpy(out, file, SS_KEYFILE_BYTES);
    rc = SS_OK;
fail:
    sodium_free(plain);
    sodium_free(pk);
    return rc;
}

ss_rc ss_keyfile_open_epoch(const uint8_t *buf, size_t len, const uint8_t repo_id[SS_REPO_ID_BYTES],
                            const char *passphrase, size_t passlen, ss_epoch_secret **ret_secret,
                            ss_err *err)
{
    uint8_t ad[SS_KEYFILE_HEADER_BYTES + SS_REPO_ID_BYTES];
    uint8_t *pk = NULL, *plain = NULL;
    ss_epoch_secret *sec = NULL;
    uint64_t ops, mem;
    ss_rc rc;

    if (ret_secret) *ret_secret = NULL;
    if (!ret_secret || !repo_id || (!buf && len) || (!passphrase && passlen))
        return ss_fail(err, SS_ERR_INVALID, "key file: missing argument");
    /* Only the first bytes open the key: a damaged trailer does not lock anyone out. */
    rc = keyfile_size(len, err);
    if (rc) return rc;
    if (memcmp(buf + SS_KEYFILE_OFF_MAGIC, SS_KEYFILE_MAGIC, 4) != 0)
        return ss_fail(err, SS_ERR_INTEGRITY, "key file: bad magic, not an s3sync key file");
    if (buf[SS_KEYFILE_OFF_VERSION] != SS_FORMAT_VERSION)
        return ss_keys_version_fail(err, SS_ERR_INTEGRITY, "key file", buf[SS_KEYFILE_OFF_VERSION]);
    if (buf[SS_KEYFILE_OFF_ALG] != SS_KEYFILE_ALG_ARGON2ID13)
        return ss_fail(err, SS_ERR_INTEGRITY, "key file: unknown KDF algorithm %u",
                       buf[SS_KEYFILE_OFF_ALG]);
    ops = ss_le_get64(buf + SS_KEYFILE_OFF_OPSLIMIT);
    mem = ss_le_get64(buf + SS_KEYFILE_OFF_MEMLIMIT);
    /* Before the KDF: the limits are not authenticated until it has run. */
    if (ss_kdf_limits_weak(ops, mem))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "key file asks for weaker KDF limits than allowed (opslimit %llu, "
                       "memlimit %llu; minimum %u, %llu)",
                       (unsigned long long)ops, (unsigned long long)mem, SS_KDF_OPSLIMIT_MIN,
                       SS_KDF_MEMLIMIT_MIN);
    if (ss_kdf_limits_huge(ops, mem))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "key file asks for stronger KDF limits than allowed (opslimit %llu, "
                       "memlimit %llu; maximum %u, %llu)",
                       (unsigned long long)ops, (unsigned long long)mem, SS_KDF_OPSLIMIT_MAX,
                       SS_KDF_MEMLIMIT_MAX);

    rc = passphrase_key(passphrase, passlen, buf + SS_KEYFILE_OFF_SALT, ops, mem, &pk, err);
    if (rc != SS_OK) goto fail;
    plain = sodium_malloc(SS_KEYFILE_PLAIN_BYTES);
    sec = sodium_malloc(sizeof *sec);
    if (!plain || !sec) {
        rc = ss_fail(err, SS_ERR_NOMEM, "key file: out of secure memory");
        goto fail;
    }
    keyfile_ad(buf, repo_id, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, buf + SS_KEYFILE_OFF_SEALED,
                                                   SS_KEYFILE_SEALED_BYTES, ad, sizeof ad,
                                                   buf + SS_KEYFILE_OFF_NONCE, pk) != 0) {
        rc = ss_fail(err, SS_ERR_PASSPHRASE,
                     "key file does not open with this passphrase (or it is damaged, or "
                     "belongs to another repository)");
        goto fail;
    }
    sec->epoch = ss_le_get16(buf + SS_KEYFILE_OFF_EPOCH);
    sec->start = ss_le_get64(plain + SS_EPOCH_KEY_BYTES);
    memcpy(sec->key, plain, SS_EPOCH_KEY_BYTES);
    if ((sec->epoch == 0) != (sec->start == 1) || !sec->start) {
        rc = ss_fail(err, SS_ERR_INTEGRITY, "key file: key epoch %u cannot begin at sequence %llu",
                     (unsigned)sec->epoch, (unsigned long long)sec->start);
        goto fail;
    }
    *ret_secret = sec;
    sec = NULL;
fail:
    sodium_free(sec);
    sodium_free(plain);
    sodium_free(pk);
    return rc;
}

void ss_epoch_secret_free(ss_epoch_secret *s)
{
    sodium_free(s); /* NULL safe; wipes */
}

ss_rc ss_keyfile_open(const uint8_t *buf, size_t len, const uint8_t repo_id[SS_REPO_ID_BYTES],
                      const char *passphrase, size_t passlen, ss_keys **ret_keys, ss_err *err)
{
    ss_epoch_secret *sec = NULL;
    ss_rc rc;

    if (ret_keys) *ret_keys = NULL;
    if (!ret_keys) return ss_fail(err, SS_ERR_INVALID, "key file: missing argument");
    rc = ss_keyfile_open_epoch(buf, len, repo_id, passphrase, passlen, &sec, err);
    if (rc) return rc;
    if (sec->epoch)
        rc = ss_fail(err, SS_ERR_EPOCH,
                     "key file of key epoch %u: the master key comes through epochs/",
                     (unsigned)sec->epoch);
    else
        rc = ss_keys_build(sec->key, repo_id, ret_keys, err);
    ss_epoch_secret_free(sec);
    return rc;
}

ss_rc ss_keyfile_limits(const uint8_t *buf, size_t len, ss_kdf_limits *ret_limits, ss_err *err)
{
    ss_rc rc;
    memset(ret_limits, 0, sizeof *ret_limits);
    rc = keyfile_size(buf ? len : 0, err);
    if (rc) return rc;
    ret_limits->opslimit = ss_le_get64(buf + SS_KEYFILE_OFF_OPSLIMIT);
    ret_limits->memlimit = ss_le_get64(buf + SS_KEYFILE_OFF_MEMLIMIT);
    return SS_OK;
}

/* ---- info trailer ---- */

/* Printable: the label is shown at terminals (control bytes refused; UTF-8 left to the reader). */
static int label_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f) return 0;
    return 1;
}

static void info_ad(const uint8_t *file, const uint8_t *repo_id,
                    uint8_t ad[SS_KEYFILE_BYTES + SS_REPO_ID_BYTES])
{
    memcpy(ad, file, SS_KEYFILE_BYTES);
    memcpy(ad + SS_KEYFILE_BYTES, repo_id, SS_REPO_ID_BYTES);
}

ss_rc ss_keyfile_seal_info(const ss_keys *keys, const char *passphrase, size_t passlen,
                           const ss_kdf_limits *limits, uint64_t created, const char *label,
                           uint8_t out[SS_KEYFILE_INFO_BYTES], ss_err *err)
{
    uint8_t plain[SS_KEYFILE_INFO_PLAIN_BYTES] = {0};
    uint8_t ad[SS_KEYFILE_BYTES + SS_REPO_ID_BYTES];
    size_t n = label ? strlen(label) : 0;
    ss_rc rc;

    if (out) memset(out, 0, SS_KEYFILE_INFO_BYTES);
    if (!keys || !out || !label) return ss_fail(err, SS_ERR_INVALID, "key file: missing argument");
    if (n > SS_KEYFILE_LABEL_MAX || !label_ok((const uint8_t *)label, n))
        return ss_fail(err, SS_ERR_INVALID, "key label: at most %u bytes and no control characters",
                       SS_KEYFILE_LABEL_MAX);
    rc = ss_keyfile_seal(keys, passphrase, passlen, limits, out, err);
    if (rc) return rc;
    ss_le_put64(plain, created);
    plain[8] = (uint8_t)n;
    memcpy(plain + 9, label, n);
    randombytes_buf(out + SS_KEYFILE_INFO_OFF_NONCE, SS_KEYFILE_INFO_NONCE_BYTES);
    info_ad(out, keys->repo_id, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + SS_KEYFILE_INFO_OFF_SEALED, NULL, plain, sizeof plain, ad, sizeof ad, NULL,
        out + SS_KEYFILE_INFO_OFF_NONCE, keys->subkeys[SS_SUBKEY_KEYINFO - 1]);
    sodium_memzero(plain, sizeof plain);
    return SS_OK;
}

ss_rc ss_keyfile_info_open(const ss_keys *keys, const uint8_t *buf, size_t len,
                           ss_keyfile_info *ret_info, ss_err *err)
{
    uint8_t plain[SS_KEYFILE_INFO_PLAIN_BYTES];
    uint8_t ad[SS_KEYFILE_BYTES + SS_REPO_ID_BYTES];
    size_t n;
    ss_rc rc;

    if (ret_info) memset(ret_info, 0, sizeof *ret_info);
    if (!keys || !ret_info || (!buf && len))
        return ss_fail(err, SS_ERR_INVALID, "key file: missing argument");
    rc = keyfile_size(len, err);
    if (rc) return rc;
    if (len == SS_KEYFILE_BYTES) return SS_OK;
    info_ad(buf, keys->repo_id, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, NULL, NULL, buf + SS_KEYFILE_INFO_OFF_SEALED, SS_KEYFILE_INFO_SEALED_BYTES, ad,
            sizeof ad, buf + SS_KEYFILE_INFO_OFF_NONCE, keys->subkeys[SS_SUBKEY_KEYINFO - 1]) != 0)
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "key file: info trailer does not open (tampered, cut, or taken from "
                       "another key file)");
    /* Authenticated, so only a holder of the master key could have written these. */
    n = plain[8];
    if (!label_ok(plain + 9, n) || !ss_keys_all_zero(plain + 9 + n, SS_KEYFILE_LABEL_MAX - n))
        return ss_fail(err, SS_ERR_INTEGRITY, "key file: info trailer's label is malformed");
    ret_info->present = 1;
    ret_info->created = ss_le_get64(plain);
    memcpy(ret_info->label, plain + 9, n);
    ret_info->label[n] = '\0';
    return SS_OK;
}
