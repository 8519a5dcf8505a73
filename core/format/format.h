/*
 * format: every constant of the repository format, version 2.
 *
 * docs/FORMAT.md is normative; this header is its mirror (as casync's
 * caformat.h is for casync) and the two change together in one commit. Each
 * group names the FORMAT.md section it comes from. All integers on the wire
 * are little-endian. Nothing here allocates or links: include it anywhere.
 */
#ifndef SS_FORMAT_H
#define SS_FORMAT_H

#include <inttypes.h>
#include <stdint.h>

#define SS_FORMAT_VERSION 2u

/* ---- "Bucket layout": object key names (printf formats, and buffer sizes incl. NUL) ---- */

#define SS_KEY_CONFIG "config"
#define SS_KEY_KEYS_PREFIX "keys/"
#define SS_KEY_LOG_PREFIX "log/"
#define SS_KEY_DATA_PREFIX "data/"
#define SS_KEY_CHECKPOINTS_PREFIX "checkpoints/"
#define SS_KEY_RETIRED_PREFIX "retired/"      /* key files of older epochs, moved from keys/ */
#define SS_KEY_KEYFILE_FMT "keys/%016" PRIx64 /* key file id: 8 random bytes */
#define SS_KEY_LOG_FMT "log/%020" PRIu64      /* seq, from 1 */
#define SS_KEY_DATA_FMT "data/%020" PRIu64 "-%016" PRIx64 /* seq, 8 random bytes */
#define SS_KEY_CHECKPOINT_FMT "checkpoints/%020" PRIu64   /* seq captured */
#define SS_SEQ_DIGITS 20
#define SS_KEYFILE_ID_HEX 16
#define SS_KEY_NAME_MAX 64 /* fits every name above ("data/": 43 bytes with NUL) */

/* ---- "Keys" ---- */

#define SS_MASTER_KEY_BYTES 32
#define SS_SUBKEY_BYTES 32
#define SS_REPO_ID_BYTES 16
#define SS_KDF_CONTEXT "s3sync01" /* crypto_kdf_derive_from_key context, 8 bytes */

/* Subkey ids: crypto_kdf_derive_from_key(32, id, SS_KDF_CONTEXT, master). */
typedef enum ss_subkey {
    SS_SUBKEY_OBJECT = 1,      /* secretstream key of framed objects */
    SS_SUBKEY_CHUNK_ID = 2,    /* key of BLAKE2b-256 chunk ids and content ids */
    SS_SUBKEY_CONFIG = 3,      /* key of the config MAC */
    SS_SUBKEY_CHAIN = 4,       /* key of the transaction hash chain */
    SS_SUBKEY_CHUNK = 5,       /* XChaCha20-Poly1305 key of sealed chunks */
    SS_SUBKEY_FINGERPRINT = 6, /* key of the repository fingerprint (commits to the master key) */
    SS_SUBKEY_KEYINFO = 7,     /* XChaCha20-Poly1305 key of key files' info trailers */
    SS_SUBKEY_PEER = 8,        /* key of peer hellos and handshakes (docs/PEERS.md) */
} ss_subkey;
#define SS_SUBKEY_COUNT 8

/* Repository fingerprint: BLAKE2b-128(fingerprint subkey; label || repository id). */
#define SS_FINGERPRINT_LABEL "s3sync-fingerprint-v1" /* 21 bytes, no NUL */
#define SS_FINGERPRINT_BYTES 16
#define SS_FINGERPRINT_TEXT 40 /* 8 groups of 4 lowercase hex, '-' between, and NUL */

/* ---- "config (96 bytes)" ---- */

#define SS_CONFIG_MAGIC "S3SC"
#define SS_CONFIG_BYTES 96
#define SS_CONFIG_OFF_MAGIC 0
#define SS_CONFIG_OFF_VERSION 4
#define SS_CONFIG_OFF_SUITE 5   /* cipher suite, SS_SUITE_V1 */
#define SS_CONFIG_OFF_KDF_ALG 6 /* algorithm every key file must use */
#define SS_CONFIG_OFF_REPO_ID 8
#define SS_CONFIG_OFF_CHUNK_MIN 24
#define SS_CONFIG_OFF_CHUNK_AVG 28
#define SS_CONFIG_OFF_CHUNK_MAX 32
#define SS_CONFIG_OFF_INLINE_LIMIT 36
#define SS_CONFIG_OFF_ZSTD_LEVEL 40
#define SS_CONFIG_OFF_CREATED 48
#define SS_CONFIG_OFF_KDF_MIN_OPS 56     /* u32: least opslimit of a key file */
#define SS_CONFIG_OFF_KDF_MIN_MEM_KIB 60 /* u32: least memlimit of a key file, KiB */
#define SS_CONFIG_OFF_MAC 64             /* MAC = BLAKE2b-256(config subkey; bytes 0..63) */
#define SS_CONFIG_MAC_BYTES 32
#define SS_CONFIG_CHUNK_MAX_LIMIT (8u * 1024 * 1024) /* max <= 8 MiB */
#define SS_CONFIG_CHUNK_MIN_LIMIT 64u                /* min >= 64 */
#define SS_CONFIG_CHUNK_AVG_LOW 256u                 /* avg: power of two >= 256 */
#define SS_CONFIG_INLINE_LIMIT_MAX (1024u * 1024)    /* inline limit <= 1 MiB */
#define SS_CONFIG_ZSTD_LEVEL_MIN 1u
#define SS_CONFIG_ZSTD_LEVEL_MAX 19u
/*
 * Cipher suite 1, the only one: XChaCha20-Poly1305-IETF (key files, sealed
 * chunks), secretstream XChaCha20-Poly1305 (framed objects), BLAKE2b
 * (ids, MACs, chain, fingerprint), crypto_kdf (subkeys). A reader refuses
 * any other value, so there is nothing to negotiate down to.
 */
#define SS_SUITE_V1 1u
/*
 * Defaults written by init (not part of the format: any valid value reads).
 * Inline 4096: below one file system block the sealed-chunk cost (41 bytes
 * sealed overhead, a 52-byte chunk ref, one more ranged GET on pull) is out of
 * proportion, while transactions and checkpoints stay small. zstd 3, measured
 * here on 256 KiB chunks (ratio, MB/s per core): /usr/include level 1 0.200
 * 390, 3 0.190 300, 4 0.176 125; shared libraries 1 0.422 275, 3 0.395 150,
 * 4 0.390 105; /usr/share/doc 1 0.555 620, 3 0.548 450, 4 0.541 145. Level 3
 * keeps up with one RGW PUT stream (~160 MB/s) on two cores and saves 2-7%
 * over level 1; level 4 and up cost 2-3x the time for about 1% more.
 */
#define SS_CONFIG_DEFAULT_INLINE_LIMIT 4096u
#define SS_CONFIG_DEFAULT_ZSTD_LEVEL 3u

/* ---- "keys/<id> (120 bytes, or 424 with its info trailer)" ---- */

#define SS_KEYFILE_MAGIC "S3SK"
#define SS_KEYFILE_BYTES 120
#define SS_KEYFILE_OFF_MAGIC 0
#define SS_KEYFILE_OFF_VERSION 4
#define SS_KEYFILE_OFF_ALG 5
#define SS_KEYFILE_OFF_EPOCH 6 /* u16: the key epoch whose key it seals (0: the master key) */
#define SS_KEYFILE_OFF_OPSLIMIT 8
#define SS_KEYFILE_OFF_MEMLIMIT 16
#define SS_KEYFILE_OFF_SALT 24
#define SS_KEYFILE_OFF_NONCE 40
#define SS_KEYFILE_OFF_SEALED 64
#define SS_KEYFILE_SALT_BYTES 16
#define SS_KEYFILE_NONCE_BYTES 24
#define SS_KEYFILE_PLAIN_BYTES 40    /* the epoch's key (32) || u64 the epoch's first sequence */
#define SS_KEYFILE_SEALED_BYTES 56   /* ciphertext (40) || tag (16) */
#define SS_KEYFILE_HEADER_BYTES 64   /* AD = bytes 0..63 || repository id */
#define SS_KEYFILE_ALG_ARGON2ID13 2u /* == crypto_pwhash_ALG_ARGON2ID13 */
/*
 * "Key file info trailer": optional, right after the 120 bytes. nonce (24) ||
 * XChaCha20-Poly1305-IETF under the keyinfo subkey of (u64 created || u8
 * label length L || label || zeros to 255 label bytes), tag (16); AD = bytes
 * 0..119 || repository id. Fixed size, so the file's size does not tell the
 * label's length: a key file is 120 or SS_KEYFILE_INFO_BYTES bytes.
 */
#define SS_KEYFILE_INFO_OFF_NONCE 120
#define SS_KEYFILE_INFO_OFF_SEALED 144
#define SS_KEYFILE_INFO_NONCE_BYTES 24
#define SS_KEYFILE_LABEL_MAX 255
#define SS_KEYFILE_INFO_PLAIN_BYTES 264  /* u64 created || u8 L || 255 label bytes */
#define SS_KEYFILE_INFO_SEALED_BYTES 280 /* ciphertext (264) || tag (16) */
#define SS_KEYFILE_INFO_BYTES 424        /* the whole key file with its trailer */
/* Argon2id limits: a reader refuses a file outside [MIN, MAX] before running the KDF. */
#define SS_KDF_OPSLIMIT_MIN 2u                         /* crypto_pwhash_OPSLIMIT_INTERACTIVE */
#define SS_KDF_MEMLIMIT_MIN (64ull * 1024 * 1024)      /* crypto_pwhash_MEMLIMIT_INTERACTIVE */
#define SS_KDF_OPSLIMIT_DEFAULT 3u                     /* crypto_pwhash_OPSLIMIT_MODERATE */
#define SS_KDF_MEMLIMIT_DEFAULT (256ull * 1024 * 1024) /* crypto_pwhash_MEMLIMIT_MODERATE */
#define SS_KDF_OPSLIMIT_MAX 4u                         /* crypto_pwhash_OPSLIMIT_SENSITIVE */
#define SS_KDF_MEMLIMIT_MAX (1024ull * 1024 * 1024)    /* crypto_pwhash_MEMLIMIT_SENSITIVE */
/*
 * Not part of the format: S3SYNC_KDF selects the limits of new key files.
 * Unset or "moderate": the default; "interactive": the minimum (fast: tests
 * use it); "sensitive": the maximum. Anything else is refused.
 */
#define SS_KDF_ENV "S3SYNC_KDF"

/* ---- "Size padding" ---- */

/*
 * A padded length is a multiple of a block that grows with the length
 * (Padme): block = max(SS_PAD_MIN_BYTES, 2^(E - S)) for n bytes to hold,
 * E = floor(log2 n), S = floor(log2 E) + 1. Padding is ISO/IEC 7816-4 as
 * sodium_pad writes it (0x80, then zeros), so n = unpadded length + 1.
 */
#define SS_PAD_MIN_BYTES 256u

/* ---- "Framed objects" ---- */

#define SS_FRAME_MAGIC "S3SO"
/* header = magic(4) | version | kind | flags | 0 | u32 epoch | u64 start */
#define SS_FRAME_HEADER_BYTES 20
#define SS_FRAME_OFF_VERSION 4
#define SS_FRAME_OFF_KIND 5
#define SS_FRAME_OFF_FLAGS 6
#define SS_FRAME_OFF_ZERO 7
#define SS_FRAME_OFF_EPOCH 8            /* the key epoch the object is sealed under */
#define SS_FRAME_OFF_START 12           /* the first sequence of that epoch (epoch 0: 1) */
#define SS_FRAME_STREAM_HEADER_BYTES 24 /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define SS_FRAME_PREFIX_BYTES (SS_FRAME_HEADER_BYTES + SS_FRAME_STREAM_HEADER_BYTES)
#define SS_FRAME_KIND_LOG 1u
#define SS_FRAME_KIND_CHECKPOINT 2u
#define SS_FRAME_FLAG_ZSTD 0x01u
#define SS_FRAME_RECORD_BYTES 65536u /* plaintext per record; the last holds 0..65536 */
#define SS_FRAME_RECORD_ABYTES 17u   /* crypto_secretstream_xchacha20poly1305_ABYTES */
#define SS_FRAME_WIRE_RECORD_BYTES (SS_FRAME_RECORD_BYTES + SS_FRAME_RECORD_ABYTES) /* 65553 */
#define SS_FRAME_CONTEXT_LABEL "s3sync-object-v1" /* 16 bytes, no NUL */
#define SS_FRAME_CONTEXT_BYTES 32
/* zstd frames (objects and chunks) use a window of at most 8 MiB: levels 1..19 stay within. */
#define SS_ZSTD_WINDOW_LOG_MAX 23

/* ---- "Hash chain" ---- */

#define SS_CHAIN_LABEL "s3sync-chain-v1" /* 15 bytes, no NUL */
#define SS_CHAIN_BYTES 32
#define SS_OBJECT_HASH_BYTES 32 /* unkeyed BLAKE2b-256 of all bytes of an object */

/* ---- "Sealed chunks and data/ packs" ---- */

#define SS_CHUNK_LABEL "s3sync-chunk-v1" /* 15 bytes, no NUL */
#define SS_CHUNK_ID_LEN 32
#define SS_CHUNK_NONCE_BYTES 24
#define SS_CHUNK_TAG_BYTES 16
#define SS_CHUNK_FLAG_ZSTD 0x01u
#define SS_CHUNK_SEAL_OVERHEAD (SS_CHUNK_NONCE_BYTES + 1 + SS_CHUNK_TAG_BYTES) /* 41 */
#define SS_CHUNK_SEAL_FIXED (SS_CHUNK_NONCE_BYTES + SS_CHUNK_TAG_BYTES) /* 40: nonce and tag */

/* ---- "Transactions" ---- */

#define SS_TXN_MAGIC "S3ST"
#define SS_TXN_VERSION 2u
#define SS_TXN_OP_UPSERT 1u
#define SS_TXN_OP_DELETE 2u
#define SS_TXN_KIND_FILE 1u
#define SS_TXN_KIND_DIR 2u
#define SS_TXN_KIND_SYMLINK 3u
#define SS_TXN_STORAGE_INLINE 1u
#define SS_TXN_STORAGE_CHUNKS 2u
#define SS_TXN_MODE_MAX 07777u
#define SS_TXN_NSEC_LIMIT 1000000000u /* mtime nanoseconds < 10^9 */
#define SS_TXN_DEVICE_ID_BYTES 16
#define SS_TXN_DEVICE_NAME_MAX 255
#define SS_TXN_PATH_MAX 4096
#define SS_TXN_OP_MIN_BYTES 4     /* type + u16 len + 1 path byte */
#define SS_TXN_CHUNK_REF_BYTES 52 /* u32 pack | u64 off | u32 sealed | u32 plain | id(32) */
#define SS_TXN_CONTENT_LABEL "s3sync-content-v1" /* 17 bytes, no NUL */
#define SS_TXN_RESERVED_DIR ".s3sync"            /* a path segment refused at any depth */
#define SS_TXN_CONTENT_ID_BYTES 32
#define SS_TXN_TARGET_MAX 4096      /* symlink target bytes */
#define SS_TXN_PACK_KEY_LEN 42      /* "data/" 20 digits "-" 16 lowercase hex */
#define SS_TXN_MAX_PACKS (1u << 20) /* pack table entries of one transaction */
#define SS_TXN_SIG_BYTES 64         /* Ed25519 signature after the last op */

/* ---- "Devices and signatures" ---- */

#define SS_TXN_DEV_ENROLL 1u
#define SS_TXN_DEV_REVOKE 2u
#define SS_TXN_DEV_POLICY 3u     /* enrollment: id all zero, then u8 mode */
#define SS_ENROLL_OPEN 0u        /* a device enrolls itself (the default) */
#define SS_ENROLL_APPROVE 1u     /* an enrolled device enrolls a new one (device approve) */
#define SS_TXN_MAX_DEVICES 1024u /* device entries of one transaction or checkpoint */
#define SS_DEVICES_MAX                                                                             \
    (SS_TXN_MAX_DEVICES / 2)  /* devices of a table: an enroll and a revoke each */
#define SS_TXN_DEV_FIXED 25   /* u8 type | device id (16) | u64 seq */
#define SS_DEVICE_PK_BYTES 32 /* Ed25519 public key (crypto_sign_PUBLICKEYBYTES) */
#define SS_DEVICE_SK_BYTES 64 /* Ed25519 secret key as libsodium keeps it: seed || pk */
/* device id = BLAKE2b-128(SS_DEVICE_ID_LABEL || public key), unkeyed */
#define SS_DEVICE_ID_LABEL "s3sync-device-v1" /* 16 bytes, no NUL */
/*
 * signed = SS_SIG_LABEL || repository id || u8 frame kind || u64 seq ||
 *          chain (log: chain(seq - 1); checkpoint: chain(seq)) ||
 *          BLAKE2b-256(the transaction's bytes before its signature) ||
 *          table hash (the device table after it: a checkpoint's own)
 * table hash = BLAKE2b-256(SS_DEVICES_HASH_LABEL || u32 devices || per device in
 *              id order: id (16) || public key (32) || u64 enrolled || u64 revoked
 *              || once a policy entry was applied: u8 mode || u64 its seq)
 */
#define SS_SIG_LABEL "s3sync-sig-v2" /* 13 bytes, no NUL */
#define SS_SIG_DIGEST_BYTES 32       /* BLAKE2b-256 of the bytes before the signature */
#define SS_DEVICES_HASH_LABEL "s3sync-devices-v1" /* 17 bytes, no NUL */
#define SS_DEVICES_HASH_BYTES 32
#define SS_SIG_MESSAGE_BYTES                                                                       \
    (13 + SS_REPO_ID_BYTES + 1 + 8 + SS_CHAIN_BYTES + SS_SIG_DIGEST_BYTES + SS_DEVICES_HASH_BYTES)

/* ---- "Checkpoints" ---- */

#define SS_CHECKPOINT_MAGIC "S3CK"
#define SS_CHECKPOINT_VERSION 2u
/* magic(4) | version | 0 | u16 0 | chain(seq) (32) | chain(seq - 1) (32) */
#define SS_CHECKPOINT_HEADER_BYTES 72
#define SS_CHECKPOINT_OFF_VERSION 4
#define SS_CHECKPOINT_OFF_ZERO 5 /* 3 zero bytes */
#define SS_CHECKPOINT_OFF_CHAIN 8
#define SS_CHECKPOINT_OFF_PREV 40 /* log/<seq> opens with it: its endorsement at the head */
/*
 * Not part of the format: the rule by which a push writes a checkpoint by
 * itself (FORMAT.md "Writing"): when the sequence it committed is this many
 * transactions, or the log objects since the newest checkpoint this many
 * bytes, past that checkpoint. The environment overrides them (0: never).
 */
#define SS_CHECKPOINT_EVERY_TXNS 1000u
#define SS_CHECKPOINT_EVERY_BYTES (64ull * 1024 * 1024)
#define SS_CHECKPOINT_TXNS_ENV "S3SYNC_CHECKPOINT_TXNS"
#define SS_CHECKPOINT_BYTES_ENV "S3SYNC_CHECKPOINT_BYTES"
/* gc: --keep-days default */
#define SS_GC_KEEP_DAYS_DEFAULT 30u

/* ---- "Bounded reads": the most a reader takes of what a store holds ---- */

/*
 * Objects read whole into memory: a larger one is refused (SS_ERR_INTEGRITY,
 * naming it and the cap) before more than this of it is read. Version 1's
 * config is 96 bytes and a key file 112: the slack lets a later version
 * grow, and lets a reader give its own "wrong size" error.
 */
#define SS_CONFIG_READ_MAX 4096u
#define SS_KEYFILE_READ_MAX 4096u
/* Key files a reader considers (join may run the KDF on each); key add stops there too. */
#define SS_KEYFILES_MAX 64u
/*
 * Objects streamed through the frame reader: memory is one record
 * (SS_FRAME_WIRE_RECORD_BYTES) and a zstd window (SS_ZSTD_WINDOW_LOG_MAX);
 * the plaintext staged on disk stops at these.
 */
#define SS_TXN_PLAIN_MAX (1ull << 36)        /* a transaction: 64 GiB */
#define SS_CHECKPOINT_PLAIN_MAX (1ull << 40) /* a checkpoint: 1 TiB */

/* ---- "Approved enrollment" (requests/<id>) ---- */

#define SS_KEY_REQUESTS_PREFIX "requests/" /* then the device id in 32 lowercase hex */
#define SS_REQUEST_MAGIC "S3SQ"
#define SS_REQUEST_VERSION 1u
/* request = magic(4) | u8 version | u8 0 | u16 0 | u32 epoch | nonce(24) | sealed */
#define SS_REQUEST_OFF_EPOCH 8
#define SS_REQUEST_OFF_NONCE 12
#define SS_REQUEST_HEADER_BYTES 36
/* sealed = XChaCha20-Poly1305(request subkey of K_epoch, AD = label || repo id || header,
 *                             public key (32) || u8 name length || name || zeros to 255) */
#define SS_REQUEST_PLAIN_BYTES (SS_DEVICE_PK_BYTES + 1 + 255)
#define SS_REQUEST_BYTES (SS_REQUEST_HEADER_BYTES + SS_REQUEST_PLAIN_BYTES + 16)
#define SS_REQUEST_LABEL "s3sync-request-v1" /* 17 bytes, no NUL */
#define SS_REQUESTS_MAX 64u                  /* requests a device lists */

/* ---- "Key epochs" (epochs/<E>) ---- */

#define SS_KEY_EPOCHS_PREFIX "epochs/"
#define SS_KEY_EPOCH_FMT "epochs/%010" PRIu32 /* epoch, from 1 */
#define SS_EPOCH_KEY_BYTES 32                 /* K_E; epoch 0's is the master key */
#define SS_EPOCH_MAGIC "S3SE"
#define SS_EPOCH_VERSION 2u
/* header = magic(4) | u8 version | u8 0 | u16 grants | u32 epoch | repository id | check(32) */
#define SS_EPOCH_OFF_VERSION 4
#define SS_EPOCH_OFF_ZERO 5
#define SS_EPOCH_OFF_GRANTS 6
#define SS_EPOCH_OFF_EPOCH 8
#define SS_EPOCH_OFF_REPO_ID 12
#define SS_EPOCH_OFF_CHECK 28
#define SS_EPOCH_CHECK_BYTES 32
#define SS_EPOCH_HEADER_BYTES (SS_EPOCH_OFF_CHECK + SS_EPOCH_CHECK_BYTES) /* 60 */
/*
 * link = nonce(24) | XChaCha20-Poly1305(link subkey of K_E, nonce, AD = header,
 *                                       K_(E-1) || u64 start of epoch E-1)
 */
#define SS_EPOCH_LINK_PLAIN_BYTES (SS_EPOCH_KEY_BYTES + 8)
#define SS_EPOCH_LINK_BYTES (24 + SS_EPOCH_LINK_PLAIN_BYTES + 16) /* 80 */
/* grant = device id | crypto_box_seal(K_E, the device's X25519 key) */
#define SS_EPOCH_SEALED_BYTES (SS_EPOCH_KEY_BYTES + 48) /* crypto_box_SEALBYTES */
#define SS_EPOCH_GRANT_BYTES (SS_TXN_DEVICE_ID_BYTES + SS_EPOCH_SEALED_BYTES) /* 96 */
/* trailer = signer's device id | Ed25519 over SS_EPOCH_SIG_LABEL || BLAKE2b-256(bytes before it) */
#define SS_EPOCH_TRAILER_BYTES (SS_TXN_DEVICE_ID_BYTES + SS_TXN_SIG_BYTES)
#define SS_EPOCH_SIG_LABEL "s3sync-epoch-sig-v1" /* 19 bytes, no NUL */
#define SS_EPOCH_FIXED_BYTES (SS_EPOCH_HEADER_BYTES + SS_EPOCH_LINK_BYTES + SS_EPOCH_TRAILER_BYTES)
#define SS_EPOCH_READ_MAX (SS_EPOCH_FIXED_BYTES + SS_DEVICES_MAX * SS_EPOCH_GRANT_BYTES)
/* Subkeys of K_E: crypto_kdf_derive_from_key(32, id, SS_EPOCH_KDF_CONTEXT, K_E) */
#define SS_EPOCH_KDF_CONTEXT "s3sync-e" /* 8 bytes */
#define SS_EPOCH_SUBKEY_LINK 1u         /* seals K_(E-1) */
#define SS_EPOCH_SUBKEY_CHECK 2u        /* keys the check: BLAKE2b-256(repo id || u32 E) */
#define SS_EPOCH_SUBKEY_OBJECT 3u       /* epoch E's SS_SUBKEY_OBJECT (epoch 0: the master's) */
#define SS_EPOCH_SUBKEY_CHUNK 4u        /* epoch E's SS_SUBKEY_CHUNK (epoch 0: the master's) */
#define SS_EPOCH_SUBKEY_REQUEST 5u      /* seals enrollment requests/ (every epoch, 0 too) */
#define SS_EPOCHS_MAX 65535u            /* epochs a repository may have */

/* ---- Peers: docs/PEERS.md (the wire between two devices, not the store) ---- */

#define SS_PEER_MAGIC "S3P1"
#define SS_PEER_HELLO_LABEL "s3sync-peer-hello"     /* 17 bytes: the tag of msg1 */
#define SS_PEER_HS_LABEL "s3sync-peer-v1"           /* 14 bytes: the transcript hash h */
#define SS_PEER_SIG_SERVER "s3sync-peer-server"     /* 18 bytes, then h: what the server signs */
#define SS_PEER_SIG_CLIENT "s3sync-peer-client"     /* 18 bytes, then h: what the client signs */
#define SS_PEER_SESSION_LABEL "s3sync-peer-session" /* 19 bytes: the stream keys */
#define SS_PEER_PK_BYTES 32                         /* X25519 ephemeral public key */
#define SS_PEER_HASH_BYTES 32                       /* BLAKE2b-256: tags and the transcript hash */
#define SS_PEER_MSG1_BYTES (8 + SS_PEER_PK_BYTES + SS_PEER_HASH_BYTES) /* 72 */
/* id || signature, sealed: XChaCha20-Poly1305-IETF with a zero nonce (each key seals once) */
#define SS_PEER_ID_BOX_BYTES (SS_TXN_DEVICE_ID_BYTES + SS_TXN_SIG_BYTES + 16) /* 96 */
#define SS_PEER_MSG2_BYTES (SS_PEER_PK_BYTES + SS_PEER_ID_BOX_BYTES)          /* 128 */
#define SS_PEER_MSG3_BYTES SS_PEER_ID_BOX_BYTES                               /* 96 */
#define SS_PEER_STREAM_HEADER_BYTES 24 /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define SS_PEER_MSG_MAX 65536u         /* plaintext of one message */
#define SS_PEER_RECORD_ABYTES 17       /* crypto_secretstream_xchacha20poly1305_ABYTES */
/* Requests and answers (the plaintext of messages) */
#define SS_PEER_REQ_GET                                                                            \
    1u /* u8 type | u16 len(key) | key | u64 offset | u64 length (0: to the end) */
/* u8 type | u64 seq | chain(seq) (32) | device id (16) | signature (64) */
#define SS_PEER_REQ_HEAD 2u
#define SS_PEER_HEAD_BYTES (1 + 8 + SS_CHAIN_BYTES + SS_TXN_DEVICE_ID_BYTES + SS_TXN_SIG_BYTES)
#define SS_PEER_HEAD_LABEL "s3sync-peer-head" /* 16 bytes, then repo id, u64 seq, chain */
#define SS_PEER_HEAD_MSG_BYTES (16 + SS_REPO_ID_BYTES + 8 + SS_CHAIN_BYTES)
#define SS_PEER_ANS_OK 0u      /* u8 status | u64 length; then that many bytes in messages */
#define SS_PEER_ANS_MISSING 1u /* u8 status: not held here */
#define SS_PEER_ANS_BAD 2u     /* u8 status: a request this peer does not serve */
#define SS_PEER_PORT 21470     /* the default peer_listen port; discovery's UDP port too */
/* Discovery datagrams: magic (4) | u8 version 1 | u8 kind | u16 TCP port (0 in a query) |
 * u64 window | tag (16) | device tag (16, zero in a query) */
#define SS_PEER_DISC_MAGIC "S3PD"
#define SS_PEER_DISC_ANNOUNCE 1u
#define SS_PEER_DISC_QUERY 2u
#define SS_PEER_DISC_BYTES (4 + 1 + 1 + 2 + 8 + 16 + 16) /* 48 */
#define SS_PEER_DISC_WINDOW_S 300             /* tags change every window: unlinkable across them */
#define SS_PEER_DISC_LABEL "s3sync-peer-disc" /* 16 bytes, then u64 window */
#define SS_PEER_DISC_DEV_LABEL "s3sync-peer-dev" /* 15 bytes, then u64 window, device id */
#define SS_PEER_DISC_WAIT_MS 300             /* a pull waits for answers to its query this long */
#define SS_PEER_DISC_GROUP "ff02::5333:5044" /* IPv6 link-local group ("S3PD"), on each link */
#define SS_PEERS_MAX 16                      /* entries of the peers setting */
#define SS_PEER_HEAD_GRACE_S 60 /* a head the store does not show this long: status, verify */
#define SS_PEER_HEAD_GRACE_ENV "S3SYNC_PEER_HEAD_GRACE" /* seconds instead (tests) */
#define SS_PEER_CACHE_DEFAULT (1ull << 30)              /* cache_size unless set: 1 GiB */
#define SS_PEER_OBJECT_MAX (64u << 20) /* the most a device takes from a peer at once */

#endif
