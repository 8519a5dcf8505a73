/*
 * forger: a device that holds the master key and turns against the others
 * (tests/test-malicious.c, tests/test-devices.c).
 *
 * It joins with the passphrase, walks the log verifying it as a device does
 * to learn the head and its chain value, and writes hand-made transaction
 * bytes (docs/FORMAT.md "Transactions", byte by byte: the encoder refuses
 * to write them) as the next log object, signed as its mode says, framed
 * and chained correctly. It has an Ed25519 key of its own, which
 * forger_enroll makes a device of the repository ("EVE"), so what the
 * receiving device refuses is the content, unless a case says otherwise.
 */
#ifndef SS_TEST_FORGER_H
#define SS_TEST_FORGER_H

#include <stddef.h>
#include <stdint.h>

#include "devices.h"
#include "format.h"
#include "repo.h"
#include "s3store.h"
#include "txn-fixture.h"

typedef struct forger {
    ss_store *store;
    ss_repo *repo;
    uint64_t head;                 /* the last log object */
    uint8_t chain[SS_CHAIN_BYTES]; /* chain(head) */
    uint8_t prev[SS_CHAIN_BYTES];  /* chain(head - 1) */
    uint8_t pk[SS_DEVICE_PK_BYTES], sk[SS_DEVICE_SK_BYTES];
    uint8_t id[SS_TXN_DEVICE_ID_BYTES]; /* of pk */
    char name[64]; /* its device name: "EVE" unless a case sets another before forger_enroll */
    ss_devices *devices; /* the table at head, as the log says: what signatures commit to */
} forger;

/* How forge signs the bytes it is given. */
typedef enum forger_sig {
    SIG_OWN,      /* with the forger's key */
    SIG_STRANGER, /* with a key no device holds */
    SIG_FLIPPED,  /* with the forger's key, then one bit of the signature flipped */
} forger_sig;

/* Join url with passphrase pass, make a key pair, and walk the log to its head. */
void forger_open(forger *f, const char *url, const char *pass);
/* The same with the store's options (credentials; NULL: the environment's). */
void forger_open_with(forger *f, const char *url, const ss_store_opts *opts, const char *pass);
/* Sign with an enrolled device's stolen key: its .s3sync/device.key at path. */
void forger_take_key(forger *f, const char *path);
void forger_free(forger *f);
/* Walk the log from 1 again (after others pushed), to the head and its chain value. */
void forger_sync(forger *f);
/* Sign plain (a transaction without its signature) as sig says, seal it as log/<head + 1>. */
void forge(forger *f, const buf *plain, forger_sig sig, char *ret_key);
/*
 * checkpoints/<head> holding no file and the device table table (which
 * may lie: drop a revocation, invent a device), signed by the forger over
 * that table as a checkpoint is. *ret_key: its key.
 */
void forge_checkpoint(forger *f, const ss_devices *table, char *ret_key);
/* A transaction enrolling the forger as f->name: afterwards its transactions are a device's. */
void forger_enroll(forger *f);

/*
 * Transaction bytes. t_header writes the header signed by device id (NULL:
 * the forger), then, when n_packs is 0, the empty device section; with pack
 * keys to follow, t_devices_none goes after them.
 */
void t_header(buf *b, const forger *f, const uint8_t *id, uint64_t seq, uint32_t n_packs,
              uint32_t n_ops);
/* The header and counts alone: the pack keys and the device section are the caller's. */
void t_header_only(buf *b, const forger *f, const uint8_t *id, uint64_t seq, uint32_t n_packs,
                   uint32_t n_ops);
void t_devices_none(buf *b);
void t_path(buf *b, const char *path, size_t len);
void t_attrs(buf *b, int kind, uint64_t size);
/* An inline file with its true content id, so only what a case breaks is wrong. */
void t_file(buf *b, const forger *f, const char *path, size_t path_len, const char *data);
void t_link(buf *b, const char *path, const char *target, size_t target_len);
void t_delete(buf *b, const char *path);

#endif
