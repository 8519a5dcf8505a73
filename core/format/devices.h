/*
 * devices: the device table, who may sign transactions of a repository and
 * from which sequence (docs/FORMAT.md "Devices and signatures").
 *
 * Owns the rules a transaction's device section and signature obey given
 * the table before it, and the table's evolution: a device enrolls itself
 * in the first transaction it signs (enrollment rests on the passphrase), or
 * with approval on, an enrolled device enrolls it; any enrolled device may
 * revoke one or set the enrollment policy, and
 * from the sequence after its revocation nothing a device signs is
 * accepted, nor does it enroll again. The table is small (at most
 * SS_TXN_MAX_DEVICES entries) and held whole; pull keeps it in state.db,
 * history walks build it as they go, checkpoints carry it.
 *
 * Pure: bytes and keys in, a verdict out; no store, no files.
 */
#ifndef SS_DEVICES_H
#define SS_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "ss_error.h"
#include "txn.h"

typedef struct ss_device {
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
    uint8_t pk[SS_DEVICE_PK_BYTES];
    uint64_t enrolled; /* sequence of the transaction that enrolled it */
    uint64_t revoked;  /* sequence of the transaction that revoked it; 0: not revoked */
    uint64_t last;     /* newest sequence it signed that this table saw; local, not in the format */
    char name[SS_TXN_DEVICE_NAME_MAX + 1]; /* as it last named itself */
} ss_device;

typedef struct ss_devices ss_devices;

ss_rc ss_devices_new(ss_devices **ret_devices, ss_err *err);
void ss_devices_free(ss_devices *d); /* NULL safe */
ss_rc ss_devices_copy(const ss_devices *d, ss_devices **ret_copy, ss_err *err);

size_t ss_devices_count(const ss_devices *d);
/* Entry i in id order (borrowed, valid until d changes). */
const ss_device *ss_devices_at(const ss_devices *d, size_t i);
/* NULL when the table does not hold id. */
const ss_device *ss_devices_find(const ss_devices *d, const uint8_t id[SS_TXN_DEVICE_ID_BYTES]);
/* Insert or replace dev (loading a stored table); SS_ERR_INVALID when full. */
ss_rc ss_devices_put(ss_devices *d, const ss_device *dev, ss_err *err);

/*
 * The enrollment policy (FORMAT.md "Approved enrollment"): SS_ENROLL_OPEN
 * (a device enrolls itself, the default) or SS_ENROLL_APPROVE (an enrolled
 * device enrolls a new one), and the sequence that set it (0: never set).
 * set_ for loading a stored table.
 */
void ss_devices_policy(const ss_devices *d, uint8_t *ret_mode, uint64_t *ret_seq);
void ss_devices_set_policy(ss_devices *d, uint8_t mode, uint64_t seq);

/* device id = BLAKE2b-128(SS_DEVICE_ID_LABEL || pk) */
void ss_device_id_of(const uint8_t pk[SS_DEVICE_PK_BYTES], uint8_t ret_id[SS_TXN_DEVICE_ID_BYTES]);
/* The first 8 bytes of an id in hex (17 bytes with NUL), as people see it. */
void ss_device_id_short(const uint8_t id[SS_TXN_DEVICE_ID_BYTES], char out[17]);

/*
 * What a signature commits the table to (FORMAT.md): who is enrolled with
 * which key, since when, and who is revoked since when; not names, nor the
 * local `last`. A checkpoint that drops a revocation or invents a device
 * has another hash than the table the next log transaction signed after.
 */
void ss_devices_hash(const ss_devices *d, uint8_t out[SS_DEVICES_HASH_BYTES]);

/*
 * The bytes a transaction's signature signs (FORMAT.md). kind: SS_FRAME_KIND_LOG or
 * _CHECKPOINT; table_hash: ss_devices_hash of the table after it.
 */
void ss_devices_sig_message(uint8_t out[SS_SIG_MESSAGE_BYTES],
                            const uint8_t repo_id[SS_REPO_ID_BYTES], int kind, uint64_t seq,
                            const uint8_t chain[SS_CHAIN_BYTES],
                            const uint8_t digest[SS_SIG_DIGEST_BYTES],
                            const uint8_t table_hash[SS_DEVICES_HASH_BYTES]);

/*
 * Log transaction h (its sequence h->seq), whose bytes before the signature
 * hash to digest, against d = the table at h->seq - 1: its device entries
 * are allowed (each at h->seq; an enroll only of the signer itself, new to
 * the table, with the id of its key and the header's name; a revoke only
 * of an enrolled device not revoked yet), its signer is enrolled (by d or
 * by this transaction) and not revoked before h->seq, and sig verifies over
 * the table after it (d with h applied), which *ret_after (may be NULL)
 * receives, owned. SS_ERR_INTEGRITY naming the device and what is wrong.
 */
ss_rc ss_devices_check_log(const ss_devices *d, const uint8_t repo_id[SS_REPO_ID_BYTES],
                           const ss_txn_header *h, const uint8_t prev_chain[SS_CHAIN_BYTES],
                           const uint8_t digest[SS_SIG_DIGEST_BYTES],
                           const uint8_t sig[SS_TXN_SIG_BYTES], ss_devices **ret_after,
                           ss_err *err);
/*
 * Log transaction h as the endorsement of after, the device table a
 * checkpoint at h->seq holds, when no later log object checks it: h's
 * signer is enrolled in after (by h->seq, not revoked before it), each of
 * h's device entries shows in after at h->seq, and sig verifies over
 * after's hash. SS_ERR_INTEGRITY naming the device and what is wrong.
 */
ss_rc ss_devices_check_endorsement(const ss_devices *after, const uint8_t repo_id[SS_REPO_ID_BYTES],
                                   const ss_txn_header *h, const uint8_t prev_chain[SS_CHAIN_BYTES],
                                   const uint8_t digest[SS_SIG_DIGEST_BYTES],
                                   const uint8_t sig[SS_TXN_SIG_BYTES], ss_err *err);
/* d after the checked log transaction h: its entries, and its signer's name and sequence. */
ss_rc ss_devices_apply_log(ss_devices *d, const ss_txn_header *h, ss_err *err);

/*
 * The table checkpoint h at sequence h->seq holds (recording chain(seq)),
 * checked: every enrolled id is its key's, every revoke follows its
 * device's enroll, and the signer is enrolled, not revoked, and signed it
 * with this table's hash.
 * *ret_table owned.
 */
ss_rc ss_devices_from_checkpoint(const uint8_t repo_id[SS_REPO_ID_BYTES], const ss_txn_header *h,
                                 const uint8_t chain[SS_CHAIN_BYTES],
                                 const uint8_t digest[SS_SIG_DIGEST_BYTES],
                                 const uint8_t sig[SS_TXN_SIG_BYTES], ss_devices **ret_table,
                                 ss_err *err);
/*
 * How a checkpoint at seq writes d: entries in (id, type) order, in *ret
 * (owned, free()) with *ret_n of them.
 */
ss_rc ss_devices_entries(const ss_devices *d, ss_txn_device **ret, uint32_t *ret_n, ss_err *err);

/*
 * newer (a checkpoint's table) against older (this device's, at a sequence
 * at or before newer's): each device older holds is in newer with the same
 * key and enrollment, and revoked alike unless older did not know of it
 * (exact: the tables must be equal, as verify wants). 0 when it holds;
 * else 1 with the first difference in why.
 */
int ss_devices_differ(const ss_devices *older, const ss_devices *newer, int exact, char *why,
                      size_t cap);

#endif
