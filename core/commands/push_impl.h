/*
 * push_impl: what push.c (the scan against the state, spooling each changed
 * path) and push_txn.c (the transaction built from the spool and created as
 * log/<seq>) share, private to them: one push's working state.
 */
#ifndef SS_PUSH_IMPL_H
#define SS_PUSH_IMPL_H

#include "engine.h"
#include "spool.h"

typedef struct push {
    ss_folder *f;
    ss_stats *stats;
    uint64_t seq;
    ss_spool *spool;
    ss_xfer *xfer;
    eng_packer *packer; /* the pack table, and the pack being filled */
    ss_chunk_ref *refs; /* chunks of the file being pushed */
    size_t n_refs, cap_refs;
    ss_state_body body;
    uint64_t file_bytes;   /* bytes chunked of the file being pushed */
    int counting;          /* diff only counts what would be read, for the progress totals */
    uint64_t log_bytes;    /* size of log/<seq> (the automatic checkpoint rule counts it) */
    const uint8_t *revoke; /* a device id to revoke in this transaction, or NULL */
    int force; /* a transaction of device entries only (enrollment, revocation): no scan */
    ss_txn_device devs[2]; /* device entries: this device enrolling, a device revoked */
    uint32_t n_devs;
    const ss_devices *after; /* the device table after this transaction, its signature's */
    int rotate;              /* begin the next key epoch with this transaction (forced, no scan) */
    ss_keys *keys;           /* rotating: the keys with the new epoch, until it is committed */
    uint8_t epoch_key[SS_EPOCH_KEY_BYTES];
} push;

/*
 * The device entries of transaction p->seq (FORMAT.md "Devices and
 * signatures"), into p->devs; refused before anything is built when this
 * device may not sign them.
 */
ss_rc push_device_entries(push *p, ss_err *err);

/* Frame the spool as log/<seq> on top of prev_chain and create it; chain: chain(seq). */
ss_rc push_upload_log(push *p, const uint8_t prev_chain[SS_CHAIN_BYTES],
                      uint8_t chain[SS_CHAIN_BYTES], ss_state_applied *ret_obj, ss_err *err);

/* The device table after transaction p->seq (owned by the caller). */
ss_rc push_devices_after(push *p, ss_devices **ret_next, ss_err *err);
/* p->rotate: epochs/<E+1> created for the devices after p->seq; p->keys seal log/<seq>. */
ss_rc push_begin_epoch(push *p, const ss_devices *after, ss_err *err);

#endif
