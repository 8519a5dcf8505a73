/*
 * keys: the repository's secrets and the two small objects that hold them,
 * `keys/<id>` (master key sealed under a passphrase) and `config` (parameters
 * MAC'd with the master key). docs/FORMAT.md, sections Keys, config and
 * keys/<id>, is the normative layout; core/format.h has its constants.
 * keys.c builds the keys and reads config; keyfile.c seals and opens key files.
 *
 * An ss_keys lives in sodium_malloc'ed memory (guard pages, mlock, wiped on
 * free) and is read-only once built, so it may be shared between threads.
 * Pointers the accessors return are borrowed: valid until ss_keys_free.
 *
 * The library assumes sodium_init() was called; ss_keys_generate and
 * ss_keys_from_master call it as well (it is idempotent).
 */
#ifndef SS_KEYS_H
#define SS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "chunker.h"
#include "format.h"
#include "ss_error.h"

typedef struct ss_keys ss_keys;

/* A fresh repository: random master key and repository id. */
ss_rc ss_keys_generate(ss_keys **ret_keys, ss_err *err);
/* Rebuild from a stored master key (e.g. DIR/.s3sync/); inputs are copied, not kept. */
ss_rc ss_keys_from_master(const uint8_t master[SS_MASTER_KEY_BYTES],
                          const uint8_t repo_id[SS_REPO_ID_BYTES], ss_keys **ret_keys, ss_err *err);
void ss_keys_free(ss_keys *keys); /* NULL safe; wipes */

/* Borrowed. The master key only to store it for cron runs (mode 0600); use subkeys otherwise. */
const uint8_t *ss_keys_master(const ss_keys *keys);
/*
 * Borrowed; NULL for an id that is not an ss_subkey, and for the content
 * subkeys (SS_SUBKEY_OBJECT, SS_SUBKEY_CHUNK): those belong to an epoch,
 * ask ss_keys_content_key.
 */
const uint8_t *ss_keys_subkey(const ss_keys *keys, ss_subkey id);
const uint8_t *ss_keys_repo_id(const ss_keys *keys);

/*
 * Key epochs (FORMAT.md "Key epochs"). Keys hold epochs 0 .. ss_keys_epoch,
 * contiguous: epoch 0 is the master key from sequence 1; epoch E >= 1 is K_E,
 * learned from epochs/ and kept by the device. Objects are written under the
 * newest epoch held; a reader picks the key by the epoch an object states
 * (framed objects) or the epoch in force at a pack's sequence (chunks).
 * Identity and addressing subkeys (config, fingerprint, chunk id, chain,
 * key info) stay on the master key, so ids and the fingerprint never change.
 */
uint32_t ss_keys_epoch(const ss_keys *keys); /* the newest held */
/* The first sequence of a held epoch (epoch 0: 1); 0 when not held. */
uint64_t ss_keys_epoch_start(const ss_keys *keys, uint32_t epoch);
/* Borrowed: K_epoch (epoch 0: the master key); NULL when not held. */
const uint8_t *ss_keys_epoch_key(const ss_keys *keys, uint32_t epoch);
/* Borrowed: SS_SUBKEY_OBJECT or SS_SUBKEY_CHUNK of a held epoch; NULL otherwise. */
const uint8_t *ss_keys_content_key(const ss_keys *keys, uint32_t epoch, ss_subkey id);
/* The epoch in force at seq among those held: the newest that starts at or before it. */
uint32_t ss_keys_epoch_at(const ss_keys *keys, uint64_t seq);
/*
 * A new ss_keys (keys itself is unchanged: it is read-only and may be in
 * use) that also holds epoch, beginning at sequence start. epoch must be
 * the next one (SS_ERR_INVALID otherwise) and start after the newest held
 * (SS_ERR_INTEGRITY: a store or device that says otherwise lies). An epoch
 * already held with the same key and start gives a plain copy; with another
 * key or start, SS_ERR_INTEGRITY.
 */
ss_rc ss_keys_with_epoch(const ss_keys *keys, uint32_t epoch, uint64_t start,
                         const uint8_t key[SS_EPOCH_KEY_BYTES], ss_keys **ret_keys, ss_err *err);

/*
 * Repository fingerprint (FORMAT.md "Repository fingerprint"): binds the
 * repository id and the master key, so a look-alike repository with keys of
 * its own has another one. Text form: 8 groups of 4 hex digits.
 */
void ss_keys_fingerprint(const ss_keys *keys, uint8_t out[SS_FINGERPRINT_BYTES]);
void ss_fingerprint_text(const uint8_t fp[SS_FINGERPRINT_BYTES], char out[SS_FINGERPRINT_TEXT]);
/* Accepts the text form with any '-', ':' or spaces and either case; SS_ERR_INVALID otherwise. */
ss_rc ss_fingerprint_parse(const char *text, uint8_t out[SS_FINGERPRINT_BYTES], ss_err *err);

/* ---- key files ---- */

typedef struct ss_kdf_limits {
    uint64_t opslimit;
    uint64_t memlimit; /* bytes */
} ss_kdf_limits;

/* Limits for new key files from $S3SYNC_KDF (see format.h); SS_ERR_INVALID on an unknown value. */
ss_rc ss_kdf_limits_from_env(ss_kdf_limits *ret_limits, ss_err *err);

/*
 * Seal the newest epoch keys hold (its key and first sequence; epoch 0: the
 * master key) under passphrase into a key file. limits NULL: from
 * the environment; limits outside the format's bounds: SS_ERR_INVALID.
 * Runs Argon2id (about 1 s at the default limits).
 */
ss_rc ss_keyfile_seal(const ss_keys *keys, const char *passphrase, size_t passlen,
                      const ss_kdf_limits *limits, uint8_t out[SS_KEYFILE_BYTES], ss_err *err);

/*
 * What a key file seals: the key of one key epoch (epoch 0: the master key)
 * and the epoch's first sequence. In sodium_malloc'ed memory.
 */
typedef struct ss_epoch_secret {
    uint32_t epoch;
    uint64_t start;
    uint8_t key[SS_EPOCH_KEY_BYTES];
} ss_epoch_secret;
void ss_epoch_secret_free(ss_epoch_secret *s); /* NULL safe; wipes */

/*
 * Open a key file of repository repo_id: *ret_secret is what it seals. A
 * key file opens the epoch that was newest when it was sealed; older ones
 * come through the links of epochs/ (epoch.h). Refusals as ss_keyfile_open.
 */
ss_rc ss_keyfile_open_epoch(const uint8_t *buf, size_t len, const uint8_t repo_id[SS_REPO_ID_BYTES],
                            const char *passphrase, size_t passlen, ss_epoch_secret **ret_secret,
                            ss_err *err);

/*
 * Open a key file of epoch 0 of repository repo_id (SS_ERR_EPOCH for a later one). SS_ERR_INTEGRITY
 * for a file that is malformed or asks for KDF limits out of bounds (checked before the KDF runs,
 * so a hostile store cannot make us burn CPU and memory, nor weaken the KDF). SS_ERR_PASSPHRASE
 * when the seal does not open: a wrong passphrase, a file of another repository, or a damaged salt,
 * nonce, limit or ciphertext are cryptographically the same event. Error messages say "key file";
 * callers prefix the object key.
 */
ss_rc ss_keyfile_open(const uint8_t *buf, size_t len, const uint8_t repo_id[SS_REPO_ID_BYTES],
                      const char *passphrase, size_t passlen, ss_keys **ret_keys, ss_err *err);
/*
 * The info trailer (FORMAT.md "Key file info trailer"): when the key was
 * added and its label, sealed under the master key so the store reads
 * neither and cannot change them unnoticed.
 */
typedef struct ss_keyfile_info {
    int present;      /* 0: a key file without trailer (created and label empty) */
    uint64_t created; /* Unix seconds */
    char label[SS_KEYFILE_LABEL_MAX + 1];
} ss_keyfile_info;

/*
 * ss_keyfile_seal, then the trailer. label: up to SS_KEYFILE_LABEL_MAX bytes,
 * no control bytes (SS_ERR_INVALID otherwise).
 */
ss_rc ss_keyfile_seal_info(const ss_keys *keys, const char *passphrase, size_t passlen,
                           const ss_kdf_limits *limits, uint64_t created, const char *label,
                           uint8_t out[SS_KEYFILE_INFO_BYTES], ss_err *err);
/*
 * A key file's trailer, with the keys the repository is open with (no KDF).
 * SS_ERR_INTEGRITY when the size is not a key file's or the trailer does not
 * open (tampered, cut, or moved from another key file).
 */
ss_rc ss_keyfile_info_open(const ss_keys *keys, const uint8_t *buf, size_t len,
                           ss_keyfile_info *ret_info, ss_err *err);

/* The KDF limits a key file states (authenticated only once it opened). SS_ERR_INTEGRITY if short.
 */
ss_rc ss_keyfile_limits(const uint8_t *buf, size_t len, ss_kdf_limits *ret_limits, ss_err *err);

/* ---- config ---- */

typedef struct ss_config {
    uint8_t version;
    uint8_t repo_id[SS_REPO_ID_BYTES];
    ss_chunker_params chunker;
    uint32_t inline_limit; /* files up to this size are stored in the transaction */
    uint8_t zstd_level;
    uint64_t created;      /* Unix seconds */
    ss_kdf_limits kdf_min; /* every key file of the repository asks for at least these */
} ss_config;

/* Defaults of a new repository (chunker: ss_chunker_default; KDF floor: the format's minimum). */
void ss_config_init(ss_config *cfg, const ss_keys *keys, uint64_t created);

/*
 * A key file's limits against the repository's floor: SS_ERR_INTEGRITY when
 * weaker (a store, or a device that knew the passphrase, swapped in a key file
 * that is cheaper to brute-force). what names the key file in the message.
 */
ss_rc ss_config_check_kdf(const ss_config *cfg, const ss_kdf_limits *lim, const char *what,
                          ss_err *err);

/* SS_ERR_INVALID when cfg would not parse, or is of another repository than keys. */
ss_rc ss_config_encode(const ss_keys *keys, const ss_config *cfg, uint8_t out[SS_CONFIG_BYTES],
                       ss_err *err);

/*
 * Structure only, MAC not checked: the repository id to open a key file
 * with. Use no other field before ss_config_verify succeeded. Refusals are
 * SS_ERR_INTEGRITY naming "config".
 */
ss_rc ss_config_parse_unverified(const uint8_t *buf, size_t len, ss_config *ret_cfg, ss_err *err);
/* The MAC under keys' config subkey, and that the config is of keys' repository. */
ss_rc ss_config_verify(const ss_keys *keys, const uint8_t *buf, size_t len, ss_err *err);
/* Both, for a device that already holds the keys. */
ss_rc ss_config_open(const ss_keys *keys, const uint8_t *buf, size_t len, ss_config *ret_cfg,
                     ss_err *err);

#endif
