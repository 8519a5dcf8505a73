/*
 * request: requests/<id>, a new device asking to be enrolled where the
 * repository wants approval (docs/FORMAT.md "Approved enrollment"): its
 * public key and name, sealed under a subkey of the newest key epoch it
 * holds, so the store learns neither; an enrolled device opens it and
 * enrolls the device with `device approve` after comparing its id out of
 * band. The id in the object key is the one of the key inside: checked.
 *
 * Pure: bytes and keys in, bytes or a verdict out.
 */
#ifndef SS_REQUEST_H
#define SS_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "keys.h"
#include "ss_error.h"

/* Seal pk and name (at most 255 bytes, no control byte) under the newest epoch keys hold. */
ss_rc ss_request_seal(const ss_keys *keys, const uint8_t pk[SS_DEVICE_PK_BYTES], const char *name,
                      uint8_t out[SS_REQUEST_BYTES], ss_err *err);

/*
 * Open requests/<id> (buf, len) with keys: ret_pk and ret_name (NUL-ended).
 * SS_ERR_EPOCH when sealed under an epoch keys do not hold; SS_ERR_INTEGRITY
 * for anything malformed, a seal that does not open, or a key whose id is
 * not id.
 */
ss_rc ss_request_open(const ss_keys *keys, const uint8_t *buf, size_t len,
                      const uint8_t id[SS_TXN_DEVICE_ID_BYTES], uint8_t ret_pk[SS_DEVICE_PK_BYTES],
                      char ret_name[SS_TXN_DEVICE_NAME_MAX + 1], ss_err *err);

#endif
