/*
 * device_key: this device's Ed25519 key pair, DIR/.s3sync/device.key.
 *
 * Owns making, storing, loading and using the secret key that signs every
 * transaction and checkpoint this device writes (FORMAT.md "Devices and
 * signatures"). The file is the 64-byte libsodium secret key (seed and
 * public key), mode 0600, made once by init; in memory it lives in
 * sodium_malloc'ed, locked pages, wiped when freed.
 */
#ifndef SS_DEVICE_KEY_H
#define SS_DEVICE_KEY_H

#include <stdint.h>

#include "format.h"
#include "ss_error.h"

typedef struct ss_device_key ss_device_key;

#define SS_DEVICE_KEY_FILE "device.key"

/* A new key pair, written to dir/device.key (which must not exist). */
ss_rc ss_device_key_create(const char *dir, ss_device_key **ret_key, ss_err *err);
/* The key pair of dir/device.key, checked to be one (its public half matches its seed). */
ss_rc ss_device_key_load(const char *dir, ss_device_key **ret_key, ss_err *err);
void ss_device_key_free(ss_device_key *k); /* NULL safe; wipes */

const uint8_t *ss_device_key_public(const ss_device_key *k); /* SS_DEVICE_PK_BYTES, borrowed */
const uint8_t *ss_device_key_id(const ss_device_key *k);     /* SS_TXN_DEVICE_ID_BYTES, borrowed */
/* Ed25519 signature of msg. */
void ss_device_key_sign(const ss_device_key *k, const uint8_t *msg, size_t len,
                        uint8_t ret_sig[SS_TXN_SIG_BYTES]);
/*
 * Open what crypto_box_seal sealed to this device: its Ed25519 pair taken
 * as X25519 (crypto_sign_ed25519_*_to_curve25519), so a device has one key
 * pair for signing and for receiving. out gets len - crypto_box_SEALBYTES
 * bytes. 0 when it opened, -1 when it does not (not sealed to this device,
 * or altered).
 */
int ss_device_key_unseal(const ss_device_key *k, const uint8_t *sealed, size_t len, uint8_t *out);

#endif
