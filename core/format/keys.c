/*
 * keys: master key and subkeys, and config (key files: keyfile.c).
 *
 * Owns every byte of the master key: it is only ever written into the
 * sodium_malloc'ed ss_keys, which is then made read-only, so no copy sits on
 * the stack or heap. Key file and config layouts follow docs/FORMAT.md.
 */
#include "keys.h"
#include "keys_impl.h"

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

/*
 * One format version is read: an older one is a repository an older s3sync
 * made (or a store offering a downgrade), a newer one needs a newer s3sync.
 */
ss_rc ss_keys_version_fail(ss_err *err, ss_rc rc, const char *what, unsigned version)
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

int ss_keys_all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* master NULL: draw a random one in place, so it never exists outside the guarded page. */
ss_rc ss_keys_build(const uint8_t *master, const uint8_t *repo_id, ss_keys **ret_keys, ss_err *err)
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
    return ss_keys_build(NULL, NULL, ret_keys, err);
}

ss_rc ss_keys_from_master(const uint8_t master[SS_MASTER_KEY_BYTES],
                          const uint8_t repo_id[SS_REPO_ID_BYTES], ss_keys **ret_keys, ss_err *err)
{
    if (ret_keys) *ret_keys = NULL;
    if (!master || !repo_id) return ss_fail(err, SS_ERR_INVALID, "keys: master key or id missing");
    return ss_keys_build(master, repo_id, ret_keys, err);
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

    if (c->version != SS_FORMAT_VERSION) return ss_keys_version_fail(err, rc, "config", c->version);
    if (ss_kdf_limits_weak(c->kdf_min.opslimit, c->kdf_min.memlimit) ||
        ss_kdf_limits_huge(c->kdf_min.opslimit, c->kdf_min.memlimit) || c->kdf_min.memlimit % 1024)
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
    if (buf[SS_CONFIG_OFF_KDF_ALG + 1] || !ss_keys_all_zero(buf + SS_CONFIG_OFF_ZSTD_LEVEL + 1, 7))
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
