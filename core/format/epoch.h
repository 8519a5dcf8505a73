/*
 * epoch: the object `epochs/<E>` that starts key epoch E (FORMAT.md "Key
 * epochs"): the epoch's key K_E sealed to each device that may read on
 * (crypto_box_seal to the X25519 form of its enrolled Ed25519 key), the
 * previous epoch's key sealed under K_E (so K_E reads all history), a
 * check that commits every grant to one K_E, and the signature of the
 * enrolled device that wrote it.
 *
 * A device that is not granted K_E reads nothing written from epoch E on:
 * that is what makes a revocation keep a thief out. The cost of an epoch
 * is one grant per remaining device; no older object is rewritten.
 *
 * Pure: bytes and keys in, bytes or a verdict out; no store, no files.
 * Keys given and returned are the caller's (keep them in sodium_malloc'ed
 * memory); nothing secret is kept here past a call.
 */
#ifndef SS_EPOCH_H
#define SS_EPOCH_H

#include <stddef.h>
#include <stdint.h>

#include "device_key.h"
#include "devices.h"
#include "format.h"
#include "ss_error.h"

/*
 * Who may read an epoch: the devices of the table that are enrolled at
 * at_seq, the sequence of the transaction that begins the epoch, and not
 * revoked at or before it. Any table from at_seq on answers the same
 * (entries are never removed; later enrollments and revocations carry
 * later sequences), so a device that joins later verifies old epochs with
 * its own table.
 */

/*
 * epochs/<epoch> (epoch >= 1): key granted to every device that may read it,
 * prev (K_(epoch-1)) and prev_start (where epoch - 1 began: 1 for epoch 0,
 * below at_seq) sealed under key, signed by signer, who must be one of them.
 * *ret_buf is malloc'ed, the caller's. SS_ERR_INVALID for epoch 0, a
 * prev_start out of range or a signer that may not read the epoch.
 */
ss_rc ss_epoch_encode(uint32_t epoch, const uint8_t repo_id[SS_REPO_ID_BYTES],
                      const uint8_t key[SS_EPOCH_KEY_BYTES], const uint8_t prev[SS_EPOCH_KEY_BYTES],
                      uint64_t prev_start, const ss_devices *table, uint64_t at_seq,
                      const ss_device_key *signer, uint8_t **ret_buf, size_t *ret_len, ss_err *err);

/*
 * Structure and signature of buf as epochs/<epoch> of repository repo_id:
 * one grant to each device that may read it and to no other, in ascending
 * id order; the signer one of them; its signature verifies.
 * SS_ERR_INTEGRITY naming the object otherwise.
 */
ss_rc ss_epoch_verify(const uint8_t *buf, size_t len, uint32_t epoch,
                      const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                      uint64_t at_seq, ss_err *err);

/*
 * Verified as above, then this device's grant opened: ret_key = K_epoch,
 * ret_prev = K_(epoch-1), ret_prev_start = where epoch - 1 began. SS_ERR_REVOKED when the object
 * grants this device nothing (it was revoked, or enrolled after the epoch began); SS_ERR_INTEGRITY
 * when its grant or the link does not open, or the key it holds is not the one the check commits
 * to.
 */
ss_rc ss_epoch_open(const uint8_t *buf, size_t len, uint32_t epoch,
                    const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                    uint64_t at_seq, const ss_device_key *me, uint8_t ret_key[SS_EPOCH_KEY_BYTES],
                    uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start, ss_err *err);

/*
 * ss_epoch_open for a device that meets epoch E in the log before it read
 * the transaction at_seq that begins it: its table (before) is the one of
 * at_seq - 1, which still lists the devices that transaction revokes and
 * lacks one it enrolls (the signer may be that one). So only structure,
 * the signature (when before knows the signer: it must be live at at_seq)
 * and this device's grant are checked here; the caller must run
 * ss_epoch_verify with the table after at_seq before it uses anything it
 * read with the key.
 */
ss_rc ss_epoch_open_early(const uint8_t *buf, size_t len, uint32_t epoch,
                          const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *before,
                          uint64_t at_seq, const ss_device_key *me,
                          uint8_t ret_key[SS_EPOCH_KEY_BYTES], uint8_t ret_prev[SS_EPOCH_KEY_BYTES],
                          uint64_t *ret_prev_start, ss_err *err);

/*
 * For a device that holds K_epoch already (the link of epoch + 1 gave it):
 * verified as above, key checked against the object's check, ret_prev =
 * K_(epoch-1), ret_prev_start where it began. SS_ERR_INTEGRITY when key is
 * not the epoch's.
 */
ss_rc ss_epoch_unlink(const uint8_t *buf, size_t len, uint32_t epoch,
                      const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_devices *table,
                      uint64_t at_seq, const uint8_t key[SS_EPOCH_KEY_BYTES],
                      uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start, ss_err *err);

/*
 * For a device that holds K_epoch from a key file and no device table yet
 * (joining): the object's structure, key checked against its check, the
 * link opened (ret_prev = K_(epoch-1), ret_prev_start where it began). The
 * link is authenticated by key alone; who was granted the epoch is checked
 * by ss_epoch_verify once the device holds a table.
 */
ss_rc ss_epoch_link_open(const uint8_t *buf, size_t len, uint32_t epoch,
                         const uint8_t repo_id[SS_REPO_ID_BYTES],
                         const uint8_t key[SS_EPOCH_KEY_BYTES],
                         uint8_t ret_prev[SS_EPOCH_KEY_BYTES], uint64_t *ret_prev_start,
                         ss_err *err);

#endif
