/*
 * keys: master key and subkeys, key files (keys/<id>) and config.
 *
 * Owns every byte of the master key: it is only ever written into the
 * sodium_malloc'ed ss_keys, which is then made read-only, so no copy sits on
 * the stack or heap. Key file and config layouts follow docs/FORMAT.md.
 */
#include "keys.h"

#include "le.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

_Static_assert(sizeof SS_KDF_CONTEXT - 1 == crypto_kdf_CONTEXTBYTES, "KDF context size");
_Static_assert(SS_MASTER_KEY_BYTES == crypto_kdf_KEYBYTES, "master key size");
_Static_assert(SS_KEYFILE_ALG_ARGON2ID13 == crypto_pwhash_ALG_ARGON2ID13, "Argon2id id");
_Static_assert(SS_KEYFILE_SALT_BYTES == crypto_pwhash_SALTBYTES, "salt size");
_Static_assert(SS_KEYFILE_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(SS_KEYFILE_PLAIN_BYTES == SS_EPOCH_KEY_BYTES + 8, "key file plaintext");
_Static_assert(SS_KEYFILE_SEALED_BYTES ==
                   SS_KEYFILE_PLAIN_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "sealed key size");
_Static_assert(SS_EPOCHS_MAX <= UINT16_MAX, "a key file states its epoch in 16 bits");
_Static_assert(SS_KEYFILE_OFF_SEALED + SS_KEYFILE_SEALED_BYTES == SS_KEYFILE_BYTES, "key file");
_Static_assert(SS_KEYFILE_INFO_OFF_NONCE == SS_KEYFILE_BYTES, "trailer follows the key file");
_Static_assert(SS_KEYFILE_INFO_OFF_SEALED ==
                   SS_KEYFILE_INFO_OFF_NONCE + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
               "trailer nonce");
_Static_assert(SS_KEYFILE_INFO_PLAIN_BYTES == 8 + 1 + SS_KEYFILE_LABEL_MAX, "trailer plaintext");
_Static_assert(SS_KEYFILE_INFO_SEALED_BYTES ==
                   SS_KEYFILE_INFO_PLAIN_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "trailer ciphertext");
_Static_assert(SS_KEYFILE_INFO_OFF_SEALED + SS_KEYFILE_INFO_SEALED_BYTES == SS_KEYFILE_INFO_BYTES,
               "trailer size");
_Static_assert(SS_KEYFILE_INFO_BYTES <= SS_KEYFILE_READ_MAX, "readers take every trailer");
_Static_assert(SS_CONFIG_OFF_MAC + SS_CONFIG_MAC_BYTES == SS_CONFIG_BYTES, "config size");
_Static_assert(SS_CONFIG_CHUNK_MAX_LIMIT == SS_CHUNKER_MAX_LIMIT, "chunker and format agree");
_Static_assert(SS_FINGERPRINT_BYTES >= crypto_generichash_BYTES_MIN, "fingerprint size");
_Static_assert(SS_KDF_MEMLIMIT_MAX / 1024 <= UINT32_MAX, "KDF floor fits the config's u32 KiB");

/* One key epoch held: K_E, where it begins, and the content subkeys of its objects. */
typedef struct epoch_slot {
    uint64_t start; /* first sequence written under it */
    uint8_t key[SS_EPOCH_KEY_BYTES];
    uint8_t object[SS_SUBKEY_BYTES];
    uint8_t chunk[SS_SUBKEY_BYTES];
} epoch_slot;

struct ss_keys {
    uint8_t master[SS_MASTER_KEY_BYTES];
    uint8_t subkeys[SS_SUBKEY_COUNT][SS_SUBKEY_BYTES];
    uint8_t repo_id[SS_REPO_ID_BYTES];
    uint32_t n_epochs;   /* epochs 0 .. n_epochs - 1, always contiguous */
    epoch_slot epochs[]; /* epochs[0]: the master key, from sequence 1 */
};

/*
 * One format version is read: an older one is a repository an older s3sync
 * made (or a store offering a downgrade), a newer one needs a newer s3sync.
 */
static ss_rc version_fail(ss_err *err, ss_rc rc, const char *what, unsigned version)
{
    if (version < SS_FORMAT_VERSION)
        return ss_fail(err, rc,
                       "%s: repository format version %u; this s3sync reads only version %u "
                       "(an older s3sync made it, or the store offers a downgrade)",
                       what, version, SS_FORMAT_VERSION);
    return ss_fail(err, rc,
                   "%s: repository format version %u is newer than this s3sync reads (%u): "
                   "upgrade s3sync",
                   what, version, SS_FORMAT_VERSION);
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* master NULL: draw a random one in place, so it never exists outside the guarded page. */
static ss_rc keys_build(const uint8_t *master, const uint8_t *repo_id, ss_keys **ret_keys,
                        ss_err *err)
{
    ss_keys *k = NULL;

    if (ret_keys) *ret_keys = NULL;
    if (!ret_keys) return ss_fail(err, SS_ERR_INVALID, "keys: no result pointer");
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_NOMEM, "keys: sodium_init failed");
    k = sodium_malloc(sizeof *k + sizeof k->epochs[0]);
    if (!k) return ss_fail(err, SS_ERR_NOMEM, "keys: out of secure memory");
    if (master)
        memcpy(k->master, master, sizeof k->master);
    else
        randombytes_buf(k->master, sizeof k->master);
    if (repo_id)
        memcpy(k->repo_id, repo_id, sizeof k->repo_id);
    else
        randombytes_buf(k->repo_id, sizeof k->repo_id);
    for (unsigned id = 1; id <= SS_SUBKEY_COUNT; id++)
        crypto_kdf_derive_from_key(k->subkeys[id - 1], SS_SUBKEY_BYTES, id, SS_KDF_CONTEXT,
                                   k->master);
    k->n_epochs = 1;
    k->epochs[0].start = 1;
    memcpy(k->epochs[0].key, k->master, SS_EPOCH_KEY_BYTES);
    memcpy(k->epochs[0].object, k->subkeys[SS_SUBKEY_OBJECT - 1], SS_SUBKEY_BYTES);
    memcpy(k->epochs[0].chunk, k->subkeys[SS_SUBKEY_CHUNK - 1], SS_SUBKEY_BYTES);
    /* A stray write into the keys is a bug; make it crash instead. */
    sodium_mprotect_readonly(k);
    *ret_keys = k;
    return SS_OK;
}

ss_rc ss_keys_generate(ss_keys **ret_keys, ss_err *err)
{
    return keys_build(NULL, NULL, ret_keys, err);
}

ss_rc ss_keys_from_master(const uint8_t master[SS_MASTER_KEY_BYTES],
                          const uint8_t repo_id[SS_REPO_ID_BYTES], ss_keys **ret_keys, ss_err *err)
{
    if (ret_keys) *ret_keys = NULL;
    if (!master || !repo_id) return ss_fail(err, SS_ERR_INVALID, "keys: master key or id missing");
    return keys_build(master, repo_id, ret_keys, err);
}

void ss_keys_free(ss_keys *keys)
{
    sodium_free(keys); /* NULL safe; makes the pages writable and wipes them */
}

const uint8_t *ss_keys_master(const ss_keys *keys)
{
    return keys->master;
}

const uint8_t *ss_keys_subkey(const ss_keys *keys, ss_subkey id)
{
    if (id < 1 || id > SS_SUBKEY_COUNT) return NULL;
    if (id == SS_SUBKEY_OBJECT || id == SS_SUBKEY_CHUNK) return NULL; /* per epoch */
    return keys->subkeys[id - 1];
}

/* ---- key epochs ---- */

uint32_t ss_keys_epoch(const ss_keys *keys)
{
    return keys->n_epochs - 1;
}

uint64_t ss_keys_epoch_start(const ss_keys *keys, uint32_t epoch)
{
    return epoch < keys->n_epochs ? keys->epochs[epoch].start : 0;
}

const uint8_t *ss_keys_epoch_key(const ss_keys *keys, uint32_t epoch)
{
    return epoch < keys->n_epochs ? keys->epochs[epoch].key : NULL;
}

const uint8_t *ss_keys_content_key(const ss_keys *keys, uint32_t epoch, ss_subkey id)
{
    if (epoch >= keys->n_epochs) return NULL;
    if (id == SS_SUBKEY_OBJECT) return keys->epochs[epoch].object;
    if (id == SS_SUBKEY_CHUNK) return keys->epochs[epoch].chunk;
    return NULL;
}

uint32_t ss_keys_epoch_at(const ss_keys *keys, uint64_t seq)
{
    uint32_t e = keys->n_epochs - 1;

    while (e > 0 && keys->epochs[e].start > seq)
        e--;
    return e;
}

ss_rc ss_keys_with_epoch(const ss_keys *keys, uint32_t epoch, uint64_t start,
                         const uint8_t key[SS_EPOCH_KEY_BYTES], ss_keys **ret_keys, ss_err *err)
{
    ss_keys *k = NULL;
    epoch_slot *e;
    size_t held;

    if (ret_keys) *ret_keys = NULL;
    if (!keys || !key || !ret_keys) return ss_fail(err, SS_ERR_INVALID, "keys: epoch missing");
    if (epoch >= 1 && epoch < keys->n_epochs) {
        if (keys->epochs[epoch].start != start ||
            sodium_memcmp(keys->epochs[epoch].key, key, SS_EPOCH_KEY_BYTES) != 0)
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "key epoch %" PRIu32 ": a second, different key for it", epoch);
    } else if (epoch != keys->n_epochs || epoch > SS_EPOCHS_MAX) {
        return ss_fail(err, SS_ERR_INVALID, "key epoch %" PRIu32 " does not follow epoch %" PRIu32,
                       epoch, keys->n_epochs - 1);
    } else if (start <= keys->epochs[epoch - 1].start) {
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "key epoch %" PRIu32 " begins at sequence %" PRIu64
                       ", not after epoch %" PRIu32 "'s %" PRIu64,
                       epoch, start, epoch - 1, keys->epochs[epoch - 1].start);
    }
    held = keys->n_epochs > epoch ? keys->n_epochs : (size_t)epoch + 1;
    k = sodium_malloc(sizeof *k + held * sizeof k->epochs[0]);
    if (!k) return ss_fail(err, SS_ERR_NOMEM, "keys: out of secure memory");
    memcpy(k, keys, sizeof *k + keys->n_epochs * sizeof k->epochs[0]);
    k->n_epochs = (uint32_t)held;
    e = &k->epochs[epoch];
    e->start = start;
    memcpy(e->key, key, SS_EPOCH_KEY_BYTES);
    crypto_kdf_derive_from_key(e->object, SS_SUBKEY_BYTES, SS_EPOCH_SUBKEY_OBJECT,
                               SS_EPOCH_KDF_CONTEXT, e->key);
    crypto_kdf_derive_from_key(e->chunk, SS_SUBKEY_BYTES, SS_EPOCH_SUBKEY_CHUNK,
                               SS_EPOCH_KDF_CONTEXT, e->key);
    sodium_mprotect_readonly(k);
    *ret_keys = k;
    return SS_OK;
}

const uint8_t *ss_keys_repo_id(const ss_keys *keys)
{
    return keys->repo_id;
}

/* ---- fingerprint ---- */

void ss_keys_fingerprint(const ss_keys *keys, uint8_t out[SS_FINGERPRINT_BYTES])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, keys->subkeys[SS_SUBKEY_FINGERPRINT - 1], SS_SUBKEY_BYTES,
                            SS_FINGERPRINT_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)SS_FINGERPRINT_LABEL,
                              sizeof SS_FINGERPRINT_LABEL - 1);
    crypto_generichash_update(&h, keys->repo_id, SS_REPO_ID_BYTES);
    crypto_generichash_final(&h, out, SS_FINGERPRINT_BYTES);
}

void ss_fingerprint_text(const uint8_t fp[SS_FINGERPRINT_BYTES], char out[SS_FINGERPRINT_TEXT])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < SS_FINGERPRINT_BYTES; i++) {
        if (i && i % 2 == 0) out[o++] = '-';
        out[o++] = hex[fp[i] >> 4];
        out[o++] = hex[fp[i] & 15];
    }
    out[o] = '\0';
}

ss_rc ss_fingerprint_parse(const char *text, uint8_t out[SS_FINGERPRINT_BYTES], ss_err *err)
{
    size_t n = 0;
    int half = -1;

    memset(out, 0, SS_FINGERPRINT_BYTES);
    for (const char *p = text ? text : ""; *p; p++) {
        char c = *p;
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0 && strchr("-: \t\r\n", c)) continue; /* as pasted, newline and all */
        if (v < 0 || n == SS_FINGERPRINT_BYTES) break;
        if (half < 0) {
            half = v;
        } else {
            out[n++] = (uint8_t)(half << 4 | v);
            half = -1;
        }
        if (!p[1] && n == SS_FINGERPRINT_BYTES) return SS_OK;
        if (n == SS_FINGERPRINT_BYTES && !p[strspn(p + 1, "-: \t\r\n") + 1]) return SS_OK;
    }
    memset(out, 0, SS_FINGERPRINT_BYTES);
    return ss_fail(err, SS_ERR_INVALID,
                   "fingerprint '%.60s' is not %d hex digits (as s3sync key fingerprint shows it)",
                   text ? text : "", 2 * SS_FINGERPRINT_BYTES);
}

/* ---- key files ---- */

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

static int limits_weak(uint64_t ops, uint64_t mem)
{
    return ops < SS_KDF_OPSLIMIT_MIN || mem < SS_KDF_MEMLIMIT_MIN;
}

static int limits_huge(uint64_t ops, uint64_t mem)
{
    return ops > SS_KDF_OPSLIMIT_MAX || mem > SS_KDF_MEMLIMIT_MAX;
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
    if (limits_weak(lim.opslimit, lim.memlimit) || limits_huge(lim.opslimit, lim.memlimit))
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
        return version_fail(err, SS_ERR_INTEGRITY, "key file", buf[SS_KEYFILE_OFF_VERSION]);
    if (buf[SS_KEYFILE_OFF_ALG] != SS_KEYFILE_ALG_ARGON2ID13)
        return ss_fail(err, SS_ERR_INTEGRITY, "key file: unknown KDF algorithm %u",
                       buf[SS_KEYFILE_OFF_ALG]);
    ops = ss_le_get64(buf + SS_KEYFILE_OFF_OPSLIMIT);
    mem = ss_le_get64(buf + SS_KEYFILE_OFF_MEMLIMIT);
    /* Before the KDF: the limits are not authenticated until it has run. */
    if (limits_weak(ops, mem))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "key file asks for weaker KDF limits than allowed (opslimit %llu, "
                       "memlimit %llu; minimum %u, %llu)",
                       (unsigned long long)ops, (unsigned long long)mem, SS_KDF_OPSLIMIT_MIN,
                       SS_KDF_MEMLIMIT_MIN);
    if (limits_huge(ops, mem))
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
        rc = keys_build(sec->key, repo_id, ret_keys, err);
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
    if (!label_ok(plain + 9, n) || !all_zero(plain + 9 + n, SS_KEYFILE_LABEL_MAX - n))
        return ss_fail(err, SS_ERR_INTEGRITY, "key file: info trailer's label is malformed");
    ret_info->present = 1;
    ret_info->created = ss_le_get64(plain);
    memcpy(ret_info->label, plain + 9, n);
    ret_info->label[n] = '\0';
    return SS_OK;
}

/* ---- config ---- */

ss_rc ss_config_check_kdf(const ss_config *cfg, const ss_kdf_limits *lim, const char *what,
                          ss_err *err)
{
    if (lim->opslimit >= cfg->kdf_min.opslimit && lim->memlimit >= cfg->kdf_min.memlimit)
        return SS_OK;
    return ss_fail(err, SS_ERR_INTEGRITY,
                   "%s asks for weaker KDF limits (opslimit %llu, memlimit %llu) than this "
                   "repository's minimum in config (%llu, %llu): refusing a downgrade",
                   what, (unsigned long long)lim->opslimit, (unsigned long long)lim->memlimit,
                   (unsigned long long)cfg->kdf_min.opslimit,
                   (unsigned long long)cfg->kdf_min.memlimit);
}

void ss_config_init(ss_config *cfg, const ss_keys *keys, uint64_t created)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->version = SS_FORMAT_VERSION;
    memcpy(cfg->repo_id, keys->repo_id, SS_REPO_ID_BYTES);
    cfg->chunker = ss_chunker_default;
    cfg->inline_limit = SS_CONFIG_DEFAULT_INLINE_LIMIT;
    cfg->zstd_level = SS_CONFIG_DEFAULT_ZSTD_LEVEL;
    cfg->created = created;
    cfg->kdf_min.opslimit = SS_KDF_OPSLIMIT_MIN;
    cfg->kdf_min.memlimit = SS_KDF_MEMLIMIT_MIN;
}

/* The field rules of FORMAT.md; rc says whose fault a violation is. */
static ss_rc config_check(const ss_config *c, ss_rc rc, ss_err *err)
{
    const ss_chunker_params *p = &c->chunker;

    if (c->version != SS_FORMAT_VERSION) return version_fail(err, rc, "config", c->version);
    if (limits_weak(c->kdf_min.opslimit, c->kdf_min.memlimit) ||
        limits_huge(c->kdf_min.opslimit, c->kdf_min.memlimit) || c->kdf_min.memlimit % 1024)
        return ss_fail(err, rc,
                       "config: KDF minimum opslimit %llu, memlimit %llu is outside [%u, %u] x "
                       "[%llu, %llu] KiB-aligned (a weaker one would be a downgrade)",
                       (unsigned long long)c->kdf_min.opslimit,
                       (unsigned long long)c->kdf_min.memlimit, SS_KDF_OPSLIMIT_MIN,
                       SS_KDF_OPSLIMIT_MAX, SS_KDF_MEMLIMIT_MIN, SS_KDF_MEMLIMIT_MAX);
    if (p->min_size < SS_CONFIG_CHUNK_MIN_LIMIT || p->avg_size < SS_CONFIG_CHUNK_AVG_LOW ||
        (p->avg_size & (p->avg_size - 1)) != 0 || !(p->min_size < p->avg_size) ||
        !(p->avg_size < p->max_size) || p->max_size > SS_CONFIG_CHUNK_MAX_LIMIT)
        return ss_fail(err, rc,
                       "config: chunker sizes %u/%u/%u break min >= %u, avg a power of two "
                       ">= %u, min < avg < max <= %u",
                       p->min_size, p->avg_size, p->max_size, SS_CONFIG_CHUNK_MIN_LIMIT,
                       SS_CONFIG_CHUNK_AVG_LOW, SS_CONFIG_CHUNK_MAX_LIMIT);
    if (c->inline_limit > SS_CONFIG_INLINE_LIMIT_MAX)
        return ss_fail(err, rc, "config: inline limit %u is above %u", c->inline_limit,
                       SS_CONFIG_INLINE_LIMIT_MAX);
    if (c->zstd_level < SS_CONFIG_ZSTD_LEVEL_MIN || c->zstd_level > SS_CONFIG_ZSTD_LEVEL_MAX)
        return ss_fail(err, rc, "config: zstd level %u is outside %u..%u", c->zstd_level,
                       SS_CONFIG_ZSTD_LEVEL_MIN, SS_CONFIG_ZSTD_LEVEL_MAX);
    return SS_OK;
}

static void config_mac(const ss_keys *keys, const uint8_t *buf, uint8_t mac[SS_CONFIG_MAC_BYTES])
{
    crypto_generichash(mac, SS_CONFIG_MAC_BYTES, buf, SS_CONFIG_OFF_MAC,
                       keys->subkeys[SS_SUBKEY_CONFIG - 1], SS_SUBKEY_BYTES);
}

ss_rc ss_config_encode(const ss_keys *keys, const ss_config *cfg, uint8_t out[SS_CONFIG_BYTES],
                       ss_err *err)
{
    uint8_t b[SS_CONFIG_BYTES] = {0};
    ss_rc rc;

    if (out) memset(out, 0, SS_CONFIG_BYTES);
    if (!keys || !cfg || !out) return ss_fail(err, SS_ERR_INVALID, "config: missing argument");
    rc = config_check(cfg, SS_ERR_INVALID, err);
    if (rc) return rc;
    if (memcmp(cfg->repo_id, keys->repo_id, SS_REPO_ID_BYTES) != 0)
        return ss_fail(err, SS_ERR_INVALID, "config: repository id differs from the keys'");
    memcpy(b + SS_CONFIG_OFF_MAGIC, SS_CONFIG_MAGIC, 4);
    b[SS_CONFIG_OFF_VERSION] = cfg->version;
    b[SS_CONFIG_OFF_SUITE] = SS_SUITE_V1;
    b[SS_CONFIG_OFF_KDF_ALG] = SS_KEYFILE_ALG_ARGON2ID13;
    memcpy(b + SS_CONFIG_OFF_REPO_ID, cfg->repo_id, SS_REPO_ID_BYTES);
    ss_le_put32(b + SS_CONFIG_OFF_CHUNK_MIN, cfg->chunker.min_size);
    ss_le_put32(b + SS_CONFIG_OFF_CHUNK_AVG, cfg->chunker.avg_size);
    ss_le_put32(b + SS_CONFIG_OFF_CHUNK_MAX, cfg->chunker.max_size);
    ss_le_put32(b + SS_CONFIG_OFF_INLINE_LIMIT, cfg->inline_limit);
    b[SS_CONFIG_OFF_ZSTD_LEVEL] = cfg->zstd_level;
    ss_le_put64(b + SS_CONFIG_OFF_CREATED, cfg->created);
    ss_le_put32(b + SS_CONFIG_OFF_KDF_MIN_OPS, (uint32_t)cfg->kdf_min.opslimit);
    ss_le_put32(b + SS_CONFIG_OFF_KDF_MIN_MEM_KIB, (uint32_t)(cfg->kdf_min.memlimit / 1024));
    config_mac(keys, b, b + SS_CONFIG_OFF_MAC);
    memcpy(out, b, SS_CONFIG_BYTES);
    return SS_OK;
}

ss_rc ss_config_parse_unverified(const uint8_t *buf, size_t len, ss_config *ret_cfg, ss_err *err)
{
    ss_config c = {0};
    ss_rc rc;

    if (ret_cfg) memset(ret_cfg, 0, sizeof *ret_cfg);
    if (!ret_cfg || (!buf && len)) return ss_fail(err, SS_ERR_INVALID, "config: missing argument");
    if (len != SS_CONFIG_BYTES)
        return ss_fail(err, SS_ERR_INTEGRITY, "config: %zu bytes, expected %u", len,
                       SS_CONFIG_BYTES);
    if (memcmp(buf + SS_CONFIG_OFF_MAGIC, SS_CONFIG_MAGIC, 4) != 0)
        return ss_fail(err, SS_ERR_INTEGRITY, "config: bad magic, not an s3sync repository");
    if (buf[SS_CONFIG_OFF_KDF_ALG + 1] || !all_zero(buf + SS_CONFIG_OFF_ZSTD_LEVEL + 1, 7))
        return ss_fail(err, SS_ERR_INTEGRITY, "config: reserved bytes are not zero");
    if (buf[SS_CONFIG_OFF_SUITE] != SS_SUITE_V1)
        return ss_fail(err, SS_ERR_INTEGRITY, "config: cipher suite %u, only %u is known",
                       buf[SS_CONFIG_OFF_SUITE], SS_SUITE_V1);
    if (buf[SS_CONFIG_OFF_KDF_ALG] != SS_KEYFILE_ALG_ARGON2ID13)
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "config: KDF algorithm %u, only %u (Argon2id) is known",
                       buf[SS_CONFIG_OFF_KDF_ALG], SS_KEYFILE_ALG_ARGON2ID13);
    c.version = buf[SS_CONFIG_OFF_VERSION];
    memcpy(c.repo_id, buf + SS_CONFIG_OFF_REPO_ID, SS_REPO_ID_BYTES);
    c.chunker.min_size = ss_le_get32(buf + SS_CONFIG_OFF_CHUNK_MIN);
    c.chunker.avg_size = ss_le_get32(buf + SS_CONFIG_OFF_CHUNK_AVG);
    c.chunker.max_size = ss_le_get32(buf + SS_CONFIG_OFF_CHUNK_MAX);
    c.inline_limit = ss_le_get32(buf + SS_CONFIG_OFF_INLINE_LIMIT);
    c.zstd_level = buf[SS_CONFIG_OFF_ZSTD_LEVEL];
    c.created = ss_le_get64(buf + SS_CONFIG_OFF_CREATED);
    c.kdf_min.opslimit = ss_le_get32(buf + SS_CONFIG_OFF_KDF_MIN_OPS);
    c.kdf_min.memlimit = (uint64_t)ss_le_get32(buf + SS_CONFIG_OFF_KDF_MIN_MEM_KIB) * 1024;
    rc = config_check(&c, SS_ERR_INTEGRITY, err);
    if (rc) return rc;
    *ret_cfg = c;
    return SS_OK;
}

ss_rc ss_config_verify(const ss_keys *keys, const uint8_t *buf, size_t len, ss_err *err)
{
    uint8_t mac[SS_CONFIG_MAC_BYTES];

    if (!keys || (!buf && len)) return ss_fail(err, SS_ERR_INVALID, "config: missing argument");
    if (len != SS_CONFIG_BYTES)
        return ss_fail(err, SS_ERR_INTEGRITY, "config: %zu bytes, expected %u", len,
                       SS_CONFIG_BYTES);
    config_mac(keys, buf, mac);
    if (crypto_verify_32(mac, buf + SS_CONFIG_OFF_MAC) != 0)
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "config: MAC does not verify (tampered, or keys of another repository)");
    if (memcmp(buf + SS_CONFIG_OFF_REPO_ID, keys->repo_id, SS_REPO_ID_BYTES) != 0)
        return ss_fail(err, SS_ERR_INTEGRITY, "config: belongs to another repository");
    return SS_OK;
}

ss_rc ss_config_open(const ss_keys *keys, const uint8_t *buf, size_t len, ss_config *ret_cfg,
                     ss_err *err)
{
    ss_config c;
    ss_rc rc;

    if (ret_cfg) memset(ret_cfg, 0, sizeof *ret_cfg);
    if (!ret_cfg) return ss_fail(err, SS_ERR_INVALID, "config: missing argument");
    rc = ss_config_parse_unverified(buf, len, &c, err);
    if (rc) return rc;
    rc = ss_config_verify(keys, buf, len, err);
    if (rc) return rc;
    *ret_cfg = c;
    return SS_OK;
}
