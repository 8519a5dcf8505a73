/*
 * engine: what the commands (core/commands/) share, private to core/.
 *
 * The folder handle, how a local file becomes a content id and chunks (the
 * same way on both sides, so a device can tell "same content" without the
 * store), the state body of a chunked file, and conflict-copy names.
 */
#ifndef SS_ENGINE_H
#define SS_ENGINE_H

#include <sodium.h>
#include <sys/stat.h>

#include "chunker.h"
#include "device_key.h"
#include "devices.h"
#include "dirmodes.h"
#include "frame.h"
#include "ignore.h"
#include "peer.h"
#include "repo.h"
#include "scan.h"
#include "state.h"
#include "state_body.h"
#include "s3sync.h"
#include "txn.h"

/* An epoch learned from the log object that begins it, its grants not yet verified (epochs.c E1).
 */
typedef struct eng_epoch_pending {
    uint8_t *obj; /* epochs/<epoch>, owned */
    size_t len;
    uint32_t epoch;
    uint64_t start;
} eng_epoch_pending;

struct ss_folder {
    char *root;  /* absolute */
    char *meta;  /* root/.s3sync */
    int root_fd; /* O_DIRECTORY; every change goes through fsio relative to it */
    int lock_fd;
    uint64_t fork_checked; /* log/<this> passed the fork check in this command (fork.c) */
    ss_store *store;
    ss_repo *repo;
    ss_state *state;
    ss_chunker *chunker;
    ss_ignore *ign; /* NULL until eng_load_ignore */
    ss_txn_limits limits;
    uint8_t device_id[SS_TXN_DEVICE_ID_BYTES]; /* ss_device_key_id(key) */
    char device_name[SS_TXN_DEVICE_NAME_MAX + 1];
    ss_device_key *key;  /* signs what this device writes */
    ss_devices *devices; /* the device table at the watermark, as state.db holds it */
    ss_hooks hooks;
    ss_progress prog;   /* what hooks.progress is told */
    char *settings;     /* the text of .s3sync/config, as read at open */
    uint32_t mode_mask; /* bits of a mode from the store never applied here (eng_mode_applied) */
    eng_epoch_pending epoch_pending;
    int epochs_unsaved;           /* learned into f->repo, not yet in .s3sync/epochs */
    ss_peer_cache *cache;         /* what this device serves peers; NULL: cache_size 0 (peers.c) */
    ss_peers *peers;              /* whom it asks before the store; NULL: none set */
    const ss_devices *peer_table; /* a verified table ahead of devices (a pull mid-apply) */
};

/*
 * The mode a path gets here for mode from the store: never setuid, setgid
 * or sticky; group and world write masked by the umask unless the folder's
 * preserve_modes is set (as tar and rsync do for a user who is not root).
 */
uint32_t eng_mode_applied(const ss_folder *f, uint32_t mode);

/*
 * (Re)read f->ign from the folder's ignore file, as it is now (a pull may
 * just have changed it): what scans calls it first (push, status).
 */
ss_rc eng_load_ignore(ss_folder *f, ss_err *err);

/* Value of key in settings text (.s3sync/config), copied into out; 0 when absent. */
int eng_setting(const char *text, const char *key, char *out, size_t cap);

/* Tell hooks.progress (if any) where f->prog stands. */
void eng_progress(ss_folder *f);

/* Called per chunk of a file being identified; data valid during the call. */
typedef ss_rc (*eng_chunk_fn)(void *ctx, const uint8_t *data, size_t len,
                              const uint8_t id[SS_CHUNK_ID_BYTES], ss_err *err);

/*
 * Content id of the open file fd of size bytes (FORMAT.md: inline files hash
 * their bytes, others their chunk ids). For inline-sized files *ret_inline
 * gets the bytes (malloc'ed) when wanted; for others fn sees every chunk.
 */
ss_rc eng_identify(ss_folder *f, int fd, uint64_t size, eng_chunk_fn fn, void *ctx,
                   uint8_t ret_content_id[SS_TXN_CONTENT_ID_BYTES], uint8_t **ret_inline,
                   ss_err *err);

/* The state row's local columns match what lstat says now (no read needed). */
int eng_stat_matches(const ss_state_row *row, const struct stat *st);
/*
 * The local path (lstat st) still holds what row says, reading it only when
 * the stat does not tell (a racily recent mtime, a copy with a new inode).
 * A file its owner may not read (mode 000) cannot be told the same: no match.
 */
ss_rc eng_local_matches(ss_folder *f, const ss_state_row *row, const char *path,
                        const struct stat *st, int *ret_match, ss_err *err);
/*
 * A state row of what e says (its remote columns), with body; its local
 * columns say "not seen yet" (ctime -1: re-read; local_mode: e's mode).
 */
ss_state_row eng_row_of(const ss_txn_entry *e, const void *body, size_t body_len);
/*
 * 1 when row already holds what upsert e says (same kind, mode and content):
 * a checkpoint applied as a base leaves that path alone.
 */
int eng_row_holds(const ss_state_row *row, const ss_txn_entry *e);
/*
 * Fill row's local columns (local_mode too) from st; racily-recent mtimes
 * are marked to re-check.
 */
void eng_row_set_stat(ss_state_row *row, const struct stat *st);

/* "dir/name.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.ext", not yet existing. *ret owned. */
ss_rc eng_conflict_name(ss_folder *f, const char *path, char **ret_name, ss_err *err);

/* The kind a stat describes (0 for special files). */
int eng_kind_of(mode_t mode);

/* Append a path to stats->conflicts. */
ss_rc eng_stats_conflict(ss_stats *s, const char *path);

/* ---- key epochs (epochs.c) ---- */

/* The epochs .s3sync/epochs holds, added to f->repo's keys; none there: epoch 0 only. */
ss_rc eng_epochs_load(ss_folder *f, ss_err *err);
/* Every epoch f->repo's keys hold, written to .s3sync/epochs. */
ss_rc eng_epochs_save(ss_folder *f, ss_err *err);
/*
 * An object (kind SS_FRAME_KIND_*) at seq, read by r, stated a key epoch
 * (ss_frame_reader_epoch) this device does not hold: fetch epochs/<epoch>,
 * open this device's grant, follow the links down to the epoch it holds
 * (a log read in order meets one new epoch at a time; a checkpoint may
 * skip several) and add them to f->repo. SS_ERR_REVOKED when it grants
 * this device nothing. When the device's table predates the epoch (a log
 * object that begins it, any checkpoint), the grants are verified later
 * (eng_epoch_verify_pending, E1).
 */
ss_rc eng_epoch_learn(ss_folder *f, unsigned kind, const ss_frame_reader *r, uint64_t seq,
                      ss_err *err);
/* With a device table at seq: the grants of an epoch learned early, once seq reaches its start. */
ss_rc eng_epoch_verify_pending(ss_folder *f, uint64_t seq, const ss_devices *table, ss_err *err);
void eng_epoch_pending_clear(ss_folder *f);
/*
 * Begin the next epoch with key (random, the caller's; replaced by the key
 * of an attempt of this device that crashed, E4) at sequence at_seq,
 * granted to the devices after (the table after at_seq): epochs/<E+1>
 * created. *ret_keys: f->repo's keys with it, to seal log/<at_seq> and its
 * packs; the caller adds the epoch to f->repo once that object committed.
 * SS_ERR_TEMPORARY when another device is beginning that epoch.
 */
ss_rc eng_epoch_begin(ss_folder *f, uint64_t at_seq, const ss_devices *after,
                      uint8_t key[SS_EPOCH_KEY_BYTES], ss_keys **ret_keys, ss_err *err);
/* The epoch begun is held (or was not begun): .s3sync/epoch-pending goes (E4). */
void eng_epoch_pending_forget(ss_folder *f);

/* An O_TMPFILE stage emptied for a second try at what it held. */
ss_rc eng_tmp_rewind(int fd, ss_err *err);
/* Write f->meta/name atomically (temp, fsync, rename) with mode 0600: settings, keys. */
ss_rc eng_meta_write(ss_folder *f, const char *name, const void *buf, size_t len, ss_err *err);
/*
 * The in-flight record, .s3sync/inflight: "seq chain" of a log object this
 * device put but has not recorded (the answer was lost, or it was killed).
 * When pull meets that very object it adopts it (the state takes its ops,
 * the folder is left alone) instead of applying it over newer local edits.
 */
ss_rc eng_inflight_set(ss_folder *f, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES],
                       ss_err *err);
int eng_inflight_is(ss_folder *f, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES]);
void eng_inflight_clear(ss_folder *f);

/* The folder's directory modes (dirmodes.h), journaled in .s3sync/dirmodes. Owned. */
#define ENG_DIRMODES_FILE "dirmodes"
ss_rc eng_dirmodes_new(ss_folder *f, ss_dirmodes **ret_dm, ss_err *err);

/*
 * The folder's scan (push, status). A directory this device's user cannot
 * read but that is as last synced (this device gave it that mode: a pull of
 * a 000 directory) is opened to its owner while the scan is inside it;
 * one the user made unreadable still fails the scan, since its unseen
 * contents must not pass for deleted.
 */
typedef struct eng_scan {
    ss_folder *f;
    ss_scan *sc;
    ss_dirmodes *dm;
} eng_scan;
ss_rc eng_scan_new(ss_folder *f, ss_warn_fn warn, void *warn_ctx, eng_scan *s, ss_err *err);
ss_rc eng_scan_next(eng_scan *s, const ss_scan_entry **ret_entry, ss_err *err);
/* Every directory opened gets its mode back (the first failure, unless rc already failed). */
ss_rc eng_scan_end(eng_scan *s, ss_rc rc, ss_err *err);

/*
 * The scan against the state, both in path order (merge.c): fn sees each
 * path once, e NULL for one only the state holds, r NULL for one only the
 * scan found. warn: the scan's (a skipped special file), may be NULL.
 * read_max: fn reads every file new to the state; when the state holds no
 * row at all (a first push), files up to read_max bytes are read ahead
 * (ss_scan_set_readahead). 0: never.
 */
typedef ss_rc (*eng_merge_fn)(void *ctx, const ss_scan_entry *e, const ss_state_row *r,
                              ss_err *err);
ss_rc eng_merge(ss_folder *f, ss_warn_fn warn, void *warn_ctx, off_t read_max, eng_merge_fn fn,
                void *ctx, ss_err *err);
/*
 * The paths push would send (status, dry runs), reading a file only when its
 * stat does not tell, and the content bytes of the changed files among them
 * (before dedup and compression: what push reads, at most what it sends);
 * ret_chunked (may be NULL): those of files above the inline limit, which
 * go into packs. f->ign as eng_load_ignore left it.
 */
ss_rc eng_local_changes(ss_folder *f, uint64_t *ret_files, uint64_t *ret_bytes,
                        uint64_t *ret_chunked, ss_err *err);

/* Path of a temp file under .s3sync/tmp/ (created empty, O_RDWR); unlinked already. */
ss_rc eng_tmpfile(ss_folder *f, int *ret_fd, ss_err *err);

/*
 * Pushes with no local change (push.c): the transaction that enrolls this
 * device, when it is not enrolled yet (a checkpoint's writer must be), and
 * one that revokes device id (already revoked by then: nothing is written).
 */
ss_rc eng_push_enroll(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc eng_push_revoke(ss_folder *f, const uint8_t id[SS_TXN_DEVICE_ID_BYTES], ss_stats *stats,
                      ss_err *err);
/* A transaction that begins the next key epoch, granted to every device enrolled (key rotate). */
ss_rc eng_push_rotate(ss_folder *f, ss_stats *stats, ss_err *err);
/*
 * A transaction of one device entry asked for: a device approved (an enroll
 * of another, with approval on) or the enrollment policy. Nothing is written
 * when the table shows it already (another device was first).
 */
ss_rc eng_push_entry(ss_folder *f, const ss_txn_device *entry, ss_stats *stats, ss_err *err);
/*
 * Enrollment needs approval and this device is not enrolled: write its
 * request (requests/<id>, FORMAT.md "Approved enrollment") and return
 * SS_ERR_TEMPORARY saying what to run on an enrolled device.
 */
ss_rc eng_request_enrollment(ss_folder *f, ss_err *err);
/* requests/<id in hex> */
void eng_request_key(const uint8_t id[SS_TXN_DEVICE_ID_BYTES], char out[SS_KEY_NAME_MAX]);
/* A request opened: the device's id, key and name as an enroll entry (seq 0). */
typedef ss_rc (*eng_request_fn)(void *ctx, const ss_txn_device *d, ss_err *err);
/*
 * Every request of a device not enrolled yet (at most SS_REQUESTS_MAX),
 * opened and checked, to fn; one that does not open is SS_ERR_INTEGRITY
 * naming it.
 */
ss_rc eng_requests_each(ss_folder *f, eng_request_fn fn, void *ctx, ss_err *err);

/* --- signatures (signing.c) --------------------------------------------------------- */

/*
 * A transaction writer's sink that hashes what it forwards to out, and the
 * sign function that signs the hash with this device's key (FORMAT.md
 * "Devices and signatures"). chain: chain(seq - 1) for a log object,
 * chain(seq) for a checkpoint.
 */
typedef struct eng_signer {
    ss_folder *f;
    int kind;
    uint64_t seq;
    uint8_t chain[SS_CHAIN_BYTES];
    uint8_t table[SS_DEVICES_HASH_BYTES]; /* the device table after it, committed to */
    crypto_generichash_state h;
    ss_store_write_fn out;
    void *ctx;
    int signed_;
} eng_signer;
/* after: the device table after the transaction (a checkpoint's: the one it holds). */
void eng_signer_init(eng_signer *s, ss_folder *f, int kind, uint64_t seq,
                     const uint8_t chain[SS_CHAIN_BYTES], const ss_devices *after,
                     ss_store_write_fn out, void *ctx);
int eng_signer_write(void *ctx, const void *buf, size_t len); /* an ss_store_write_fn */
ss_rc eng_signer_sign(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES],
                      ss_err *err); /* ss_txn_sign_fn */

/* BLAKE2b-256 of the first len bytes of the staged plaintext fd. */
ss_rc eng_staged_digest(int fd, uint64_t len, uint8_t ret_digest[crypto_generichash_BYTES],
                        ss_err *err);
/*
 * The log transaction staged in fd, read by r to its end, against table
 * (the device table at its sequence - 1): devices.h's rules and its
 * signature; *ret_after: the table after it (owned).
 */
ss_rc eng_check_signature(ss_folder *f, const ss_devices *table, ss_txn_reader *r, int fd,
                          const uint8_t prev_chain[SS_CHAIN_BYTES], ss_devices **ret_after,
                          ss_err *err);
/*
 * The log transaction staged in fd, read by r to its end, against after, the
 * table its signature must commit to (a checkpoint's at the same sequence):
 * signed by a device after shows enrolled and not revoked before it.
 */
ss_rc eng_check_endorsement(ss_folder *f, const ss_devices *after, ss_txn_reader *r, int fd,
                            const uint8_t prev_chain[SS_CHAIN_BYTES], ss_err *err);
/* The checked device table of the checkpoint staged in fd, read by r to its end. Owned. */
ss_rc eng_checkpoint_table(ss_folder *f, ss_txn_reader *r, int fd,
                           const uint8_t chain[SS_CHAIN_BYTES], ss_devices **ret_table,
                           ss_err *err);

/* --- reading the log, as pull does (log_list.c, txn_read.c; walk.c shares it)
 * --------------------- */

/* The log/ sequences a listing found, in order, with their object sizes. */
typedef struct eng_log_list {
    uint64_t *seqs;
    uint64_t *sizes; /* of each log object, as listed */
    size_t n, cap_seqs, cap_sizes;
    const char *prefix; /* of the keys listed: NULL for log/ (checkpoints/ too) */
    int bad; /* 1: an unexpected key (bad_key); 2: out of memory; 3: log/<watermark> is gone */
    char bad_key[128];
    ss_store_stat first, last; /* what the listing said of its first and last keys */
} eng_log_list;
void eng_log_list_free(eng_log_list *l);
/* An ss_store_list_fn (ctx: the list) adding "<prefix><20 digits>" keys; others set bad. */
int eng_collect_seq(void *ctx, const char *key, const ss_store_stat *st);

/*
 * The sequences after watermark wm (0: from log/1), checked to be the
 * watermark's own key followed by a run without gaps (pull's P2). On a gap
 * the error names the missing key and l still holds every listed sequence.
 */
ss_rc eng_list_log(ss_folder *f, uint64_t wm, eng_log_list *l, ss_err *err);
/*
 * The sequences after c (a checkpoint: log/<c> itself may be gone after gc),
 * checked to run from c + 1 without gaps.
 */
ss_rc eng_list_log_after(ss_folder *f, uint64_t c, eng_log_list *l, ss_err *err);
/*
 * Where the log continues for a device at watermark wm, as pull starts (and
 * a dry run plans the same way). A joining device (wm 0) starts from the
 * newest checkpoint; a device whose log/<wm> is gone re-bases on a
 * checkpoint at or after wm (gc ran); without one the store was rolled back:
 * refused (P2). *ret_base: the checkpoint to apply as a base first (0: none,
 * the log follows wm), *ret_base_size its size; l: the sequences after it.
 */
ss_rc eng_log_start(ss_folder *f, uint64_t wm, eng_log_list *l, uint64_t *ret_base,
                    uint64_t *ret_base_size, ss_err *err);

/*
 * Fetch log/<seq> (or take its bytes from obj when not NULL) and verify its
 * frame against prev (chain(seq - 1)), staging the plaintext in a temp file
 * (*ret_fd, owned by the caller) and computing ret_chain = chain(seq). Its
 * ops are not decoded yet: eng_check_txn. ret_obj (may be NULL): what the
 * object was, for the fork check (its tag left unknown).
 */
ss_rc eng_fetch_txn(ss_folder *f, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES], const void *obj,
                    size_t obj_len, int *ret_fd, uint8_t ret_chain[SS_CHAIN_BYTES],
                    ss_state_applied *ret_obj, ss_err *err);

/* --- the fork check (fork.c) ------------------------------------------------------------ */

/* The tag state.db keeps of an ETag: BLAKE2b-128 of it in hex ("" for no ETag). */
#define ENG_ETAG_TAG_BYTES 16
#define ENG_ETAG_TAG_TEXT (2 * ENG_ETAG_TAG_BYTES + 1)
void eng_etag_tag(const char *etag, char out[ENG_ETAG_TAG_TEXT]);
/*
 * log/<wm>, which a listing described as st, is the object this device
 * applied or wrote there (as state.db recorded it), else SS_ERR_INTEGRITY
 * naming the fork. Reads the object only when st differs from the record
 * (st NULL: in any case).
 */
ss_rc eng_fork_check(ss_folder *f, uint64_t wm, const ss_store_stat *st, ss_err *err);
/* The same, listing log/<wm> first (push: before writing on top of it). */
ss_rc eng_fork_check_now(ss_folder *f, uint64_t wm, ss_err *err);
/*
 * rc, log/<wm + 1> failing verification: when log/<wm> (read now) is not
 * the object this device applied, err names that fork instead.
 */
ss_rc eng_fork_explain(ss_folder *f, uint64_t wm, ss_rc rc, ss_err *err);
/*
 * Log objects fetched ahead, in parallel (a small GET costs a round trip:
 * ~40 ms on RGW), then verified one by one in order by their consumer.
 */
#ifndef ENG_PREFETCH_MAX    /* a build with -DENG_PREFETCH_MAX=1 fetches one at a time (bench) */
#define ENG_PREFETCH_MAX 32 /* objects per batch (the batch array's size) */
#endif
typedef struct eng_fetched {
    uint8_t *buf; /* owned (malloc); NULL: too big to prefetch, stream it */
    size_t len;
    ss_rc rc; /* the fetch's outcome, err its message */
    ss_err err;
} eng_fetched;
/*
 * Fetch log objects l[i..end) into b (ENG_PREFETCH_MAX entries), as many as
 * the batch bounds allow; *ret_n how many slots were filled (>= 1 when
 * i < end; a slot with buf NULL is one object to stream). The caller frees
 * each buf.
 */
ss_rc eng_prefetch(ss_xfer *x, const eng_log_list *l, size_t i, size_t end, eng_fetched *b,
                   size_t *ret_n, ss_err *err);

/*
 * Apply the verified transaction staged in fd (apply.c, P1-P4) and commit the
 * watermark (seq, chain; prev = chain(seq - 1)) with devices, the device
 * table after it, which then becomes f->devices, and obj (NULL for a base),
 * what log/<seq> was. base: it is a checkpoint applied as a base (join,
 * re-base after gc): paths the state holds alike are left alone, and rows
 * it lacks are deleted.
 */
ss_rc eng_apply_txn(ss_folder *f, ss_stats *stats, int fd, uint64_t seq,
                    const uint8_t prev[SS_CHAIN_BYTES], const uint8_t chain[SS_CHAIN_BYTES],
                    int base, const ss_devices *devices, const ss_state_applied *obj, ss_err *err);

/*
 * Decode every op and chunk ref of the staged transaction once, then check
 * its device entries and signature against table (the device table at
 * seq - 1; prev = chain(seq - 1)): SS_OK only when all is valid. ret_next
 * (may be NULL) gets the table after it (owned).
 */
ss_rc eng_check_txn(ss_folder *f, int fd, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES],
                    const ss_devices *table, ss_devices **ret_next, ss_err *err);
/*
 * Read e's chunk refs (if any) and check its content id against its inline
 * bytes or chunk ids (FORMAT.md "Transactions"): a lying id would make a
 * device take another version for the same one. Used by eng_check_txn.
 */
ss_rc eng_check_content(ss_folder *f, ss_txn_reader *r, const ss_txn_entry *e, ss_err *err);
/* Invariant 6 against the state: no op below a path it holds as a file or symlink (beneath.c). */
ss_rc eng_check_beneath(ss_folder *f, int fd, uint64_t seq, ss_err *err);

/*
 * The ops of a transaction staged in a file (eng_fetch_txn, or the part of
 * eng_fetch_checkpoint after its header), read in order:
 *
 *   eng_txn_iter it = {0};
 *   rc = eng_txn_open(&it, f, fd, seq, err);   checks it claims seq
 *   if (rc) goto fail;
 *   for (;;) {
 *       rc = eng_txn_next(&it, &e, err);       NULL after the last op
 *       if (rc) goto fail;
 *       if (!e) break;
 *       ...                                     it.r: the header, e's chunk refs
 *   }
 *   fail: eng_txn_close(&it);                  after a failed open too, and twice
 *
 * An open iterator must not be copied or moved: its reader reads through it.
 */
typedef struct eng_txn_iter {
    ss_txn_reader *r; /* owned; the signature once eng_txn_next reported the end */
    int fd;           /* the staged plaintext (borrowed) */
    uint64_t pos;     /* where r reads it next */
    ss_reader src;
} eng_txn_iter;
ss_rc eng_txn_open(eng_txn_iter *it, ss_folder *f, int fd, uint64_t seq, ss_err *err);
ss_rc eng_txn_next(eng_txn_iter *it, const ss_txn_entry **ret_entry, ss_err *err);
void eng_txn_close(eng_txn_iter *it);
/* body becomes the current entry's chunk refs not read yet, with their pack keys. */
ss_rc eng_txn_body(ss_txn_reader *r, ss_state_body *body, ss_err *err);

/*
 * Remove the stage files a killed pull left in .s3sync/tmp (stage.c); the
 * caller holds the folder's lock, so no command is using them.
 */
void eng_stage_clean(ss_folder *f);

/*
 * Verified chunk fetches (fetch.c): chunks are queued by eng_fetch_chunk and
 * fetched in coalesced ranged GETs, each chunk opened with ss_chunk_open
 * (authenticity, id), checked for its plain length, and written at the
 * offset given: through put when set, else to out_fd (-1: verify only). eng_fetch_wait runs what is
 * queued to the end and returns the first failure (all go to bad, if set).
 */
typedef void (*eng_bad_chunk_fn)(void *ctx, const char *pack, const ss_chunk_ref *ref, ss_rc rc,
                                 const char *msg);
/* A chunk's len plaintext bytes are written at out_off (verified). */
typedef void (*eng_landed_fn)(void *ctx, uint64_t out_off, uint64_t len);
/* Write a verified chunk's plaintext at out_off: 0, or -1 with errno. */
typedef int (*eng_put_fn)(void *ctx, uint64_t out_off, const void *buf, size_t len);
typedef struct eng_fetch {
    ss_folder *f;
    ss_xfer *xfer;
    int out_fd;
    ss_rc rc;             /* the first failure */
    ss_err err;           /* its message, naming the pack and offset */
    eng_bad_chunk_fn bad; /* when set, told of every failure */
    eng_landed_fn landed; /* when set, told of every chunk written */
    eng_put_fn put;       /* when set, writes instead of out_fd */
    void *ctx;
    struct eng_fetch_job *jobs; /* queued, not yet requested */
    size_t n_jobs, cap_jobs;
} eng_fetch;
ss_rc eng_fetch_chunk(eng_fetch *x, const char *pack, const ss_chunk_ref *ref, uint64_t out_off,
                      ss_err *err);
/* Fetch everything queued and wait; frees the queue (x may be reused). */
ss_rc eng_fetch_wait(eng_fetch *x, ss_err *err);

/*
 * The local copy of a file as a source of chunks (reuse.c): a pull that
 * changes path reads the chunks its last synced version shares with the new
 * one from the file, each re-hashed and used only when its id matches.
 * *ret_reuse is NULL (and SS_OK) when there is nothing to reuse; owned.
 */
typedef struct eng_reuse eng_reuse;
ss_rc eng_reuse_open(ss_folder *f, const char *path, eng_reuse **ret_reuse, ss_err *err);
/* 1 when ref's plaintext was read locally, verified and written to out_fd at out_off. */
int eng_reuse_chunk(eng_reuse *r, const ss_chunk_ref *ref, int out_fd, uint64_t out_off);
void eng_reuse_free(eng_reuse *r); /* NULL safe */

/* --- peer assist (peers.c; docs/PEERS.md) ----------------------------------------------- */

/* The peer_discovery setting of settings ("on", HOST:PORT, [GROUP]:PORT) in where: 1; off: 0. */
int eng_discovery_at(const char *settings, char *where, size_t cap);
/* "HOST:PORT" or "[V6]:PORT" into host[hcap] (no brackets) and port (either may be NULL); 0 when it
 * is one. */
int eng_listen_parse(const char *v, char *host, size_t hcap, char port[8]);
/* A handle on the folder's cache as cache_size sets it; *ret_cache NULL when it is 0. */
ss_rc eng_peers_cache_open(ss_folder *f, ss_peer_cache **ret_cache, ss_err *err);
/* The cache and the peers the folder's settings ask for, as the store's source. */
ss_rc eng_peers_attach(ss_folder *f, ss_err *err);
void eng_peers_detach(ss_folder *f); /* safe when nothing is attached */
/* Objects peers delivered so far: a mark for eng_peers_blame. */
uint64_t eng_peers_mark(const ss_folder *f);
/* The bytes of key at off failed verification: eng_peers_blame leaves out who sent them. */
void eng_peers_suspect(ss_folder *f, const char *key, uint64_t off);
/*
 * Verification of what (an object) failed: when peers delivered anything
 * since mark, they are left out for the rest of the run (and named in a
 * warning) and 1 says the caller may read it again from the store.
 */
int eng_peers_blame(ss_folder *f, uint64_t mark, const char *what);
/*
 * After a push: when the watermark moved past before, tell the peers the
 * new head, signed by this device (PEERS.md "Heads"), so a watching peer
 * pulls at once. Best effort.
 */
void eng_peers_announce(ss_folder *f, uint64_t before);
/* A head a peer announced (checked) that this device's watermark has not reached: kept. */
void eng_peer_head_note(ss_folder *f, uint64_t seq, const char *device);
/*
 * The kept head when the store, which shows up to shown, still does not
 * show it SS_PEER_HEAD_GRACE_S after it was heard: its seq, and why in
 * msg[cap]; else 0 (a head the store now shows is forgotten).
 */
uint64_t eng_peer_head_withheld(ss_folder *f, uint64_t shown, char *msg, size_t cap);

/* --- what this device exchanged with each peer (peers_ledger.c, .s3sync/peers) ---------- */

typedef struct eng_ledger_row {
    uint8_t device[SS_TXN_DEVICE_ID_BYTES];
    uint64_t received, served; /* bytes, all runs */
    uint64_t head;             /* the newest head it announced here; 0 */
    int64_t seen;              /* unix seconds of the last update */
} eng_ledger_row;
/* Add to device's row in meta/peers (made 0600), under flock; best effort. */
void eng_ledger_add(const char *meta, const uint8_t device[SS_TXN_DEVICE_ID_BYTES],
                    uint64_t received, uint64_t served, uint64_t head);
/* Every row (none when there is no file); *ret_rows owned. */
ss_rc eng_ledger_read(const char *meta, eng_ledger_row **ret_rows, size_t *ret_n, ss_err *err);

/* --- checkpoints (checkpoint_read.c, checkpoint_write.c, replay.c)
 * ------------------------------------------------------ */

/* The checkpoints/ sequences, ascending, with their sizes; an unexpected key is SS_ERR_INTEGRITY.
 */
ss_rc eng_list_checkpoints(ss_folder *f, eng_log_list *l, ss_err *err);
/* What a checkpoint's header records besides its state (FORMAT.md "Checkpoints"). */
typedef struct eng_cp_head {
    uint8_t chain[SS_CHAIN_BYTES]; /* chain(seq) */
    uint8_t prev[SS_CHAIN_BYTES];  /* chain(seq - 1): log/<seq> opens with it */
    uint64_t time_ns;              /* its writer's time */
} eng_cp_head;
/*
 * Fetch checkpoints/<seq>, verify its frame and header, and decode every op
 * once (upserts only); the transaction part is staged in *ret_fd (owned by
 * the caller; read it with eng_txn_open). ret_head: what its header records;
 * ret_table (may be NULL): its device table, checked with its signature
 * (owned).
 */
ss_rc eng_fetch_checkpoint(ss_folder *f, uint64_t seq, int *ret_fd, eng_cp_head *ret_head,
                           ss_devices **ret_table, ss_err *err);
/*
 * After a push committed seq (its log object counted by eng_checkpoint_count
 * in that commit): the automatic rule of FORMAT.md "Writing". Never fails
 * the push: a failure is a warning.
 */
void eng_checkpoint_auto(ss_folder *f, uint64_t seq);
/*
 * checkpoints/<seq> to apply as a base (pull) or to plan from (a dry run):
 * eng_fetch_checkpoint, and its device table checked to agree with what
 * this device knows (f->devices). at_head: no log object after it was
 * listed, so none will check its table: log/<seq> must endorse it (C6 in
 * checkpoint_read.c). *ret_fd and *ret_table owned by the caller.
 */
ss_rc eng_fetch_base(ss_folder *f, uint64_t seq, int at_head, int *ret_fd, eng_cp_head *ret_head,
                     ss_devices **ret_table, ss_err *err);
/*
 * C6: log/<seq> vouches for table, the device table of checkpoints/<seq>
 * (whose header is head), when no log object follows it. SS_ERR_INTEGRITY
 * naming both objects.
 */
ss_rc eng_checkpoint_endorsed(ss_folder *f, uint64_t seq, const eng_cp_head *head,
                              const ss_devices *table, ss_err *err);
/*
 * Write checkpoints/<the watermark> from the state (create-only: one another
 * device wrote first sets res->existed), and remember it.
 */
ss_rc eng_checkpoint_write(ss_folder *f, ss_checkpoint_result *res, ss_err *err);
/* The newest checkpoint this device knows of (seq), and the log bytes it saw after it. */
void eng_checkpoint_remember(ss_folder *f, uint64_t seq, uint64_t bytes);
/* Log bytes applied by a pull or pushed: counted toward the rule's byte threshold. */
void eng_checkpoint_count(ss_folder *f, uint64_t log_bytes);

/*
 * A state replayed from a walk's ops (verify), in a temporary database, and
 * a checkpoint compared with it. eng_replay_op reads the entry's chunk refs
 * (the body stays readable through eng_replay_body until the next op).
 */
typedef struct eng_replay eng_replay;
ss_rc eng_replay_new(eng_replay **ret_replay, ss_err *err);
void eng_replay_free(eng_replay *rp); /* NULL safe */
ss_rc eng_replay_op(eng_replay *rp, const ss_txn_header *h, ss_txn_reader *r, const ss_txn_entry *e,
                    ss_err *err);
const ss_state_body *eng_replay_body(const eng_replay *rp);
/*
 * Compare the checkpoint staged in fd (eng_fetch_checkpoint) with the
 * replay: *ret_diff (owned) names the first path that differs, or NULL when
 * it holds exactly the replayed state.
 */
ss_rc eng_replay_compare(ss_folder *f, eng_replay *rp, int fd, uint64_t seq, char **ret_diff,
                         ss_err *err);

/* --- walking the whole log (walk.c: log, verify, restore, gc) ------------------------ */

typedef struct eng_walk_txn {
    uint64_t seq;
    uint64_t object_size; /* bytes of log/<seq> */
    int checkpoint;       /* it is checkpoints/<seq>: its ops are the whole state at seq */
    const ss_txn_header *h;
} eng_walk_txn;

enum { ENG_FROM_FIRST, ENG_FROM_NEWEST };

typedef struct eng_walk {
    uint64_t upto; /* the last sequence to walk; 0: the newest */
    /*
     * ENG_FROM_FIRST: from log/1, or from the oldest checkpoint when gc took
     * log/1. ENG_FROM_NEWEST: from the newest checkpoint at or before upto
     * that cp_ok (may be NULL) accepts, given its writer's time; else log/1.
     */
    int from;
    int (*cp_ok)(void *ctx, uint64_t seq, uint64_t time_ns);
    /*
     * A later checkpoint the walk reached: prev and chain are the walked
     * chain(seq - 1) and chain(seq), devices the walked device table at
     * seq. May be NULL.
     */
    void (*cp_check)(void *ctx, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES],
                     const uint8_t chain[SS_CHAIN_BYTES], const ss_devices *devices);
    /* After log/<seq> verified whole; *ret_stop ends the walk before its ops. May be NULL. */
    ss_rc (*txn)(void *ctx, const eng_walk_txn *t, int *ret_stop, ss_err *err);
    /* Each op of it, in order; chunk refs not read are skipped. May be NULL. */
    ss_rc (*op)(void *ctx, const eng_walk_txn *t, ss_txn_reader *r, const ss_txn_entry *e,
                ss_err *err);
    /* After its last op. May be NULL. */
    ss_rc (*txn_done)(void *ctx, const eng_walk_txn *t, ss_err *err);
    void *ctx;
    /* Out: the newest sequence listed, and the last one whose ops were all handed out. */
    uint64_t head, last;
    uint64_t start;         /* the checkpoint the walk started from; 0: log/1 */
    eng_cp_head start_head; /* what its header records */
    int broken; /* the walk stopped at a log object that failed verification (err says why) */
    char broken_key[128]; /* that object's key */
    ss_devices *devices;  /* private: the device table as the walk goes; freed at its end */
} eng_walk;

/*
 * Walk log/1 .. upto in order, verifying each object exactly as pull does
 * (frame, chain from log/1, every op decoded) before handing out its ops.
 * Costs every log object's bytes: without checkpoints there is no shorter
 * verified way to sequence N.
 */
ss_rc eng_walk_log(ss_folder *f, eng_walk *w, ss_err *err);

/* A private temporary SQLite database (on disk, gone when closed) with schema run in it. */
struct sqlite3;
ss_rc eng_tempdb_open(const char *schema, struct sqlite3 **ret_db, ss_err *err);
/* SQLite's failure as SS_ERR_IO (or SS_ERR_NOMEM), naming what was being done. */
ss_rc eng_tempdb_fail(struct sqlite3 *db, const char *what, ss_err *err);
/* Step a statement that returns no row, then reset it. */
struct sqlite3_stmt;
ss_rc eng_tempdb_step(struct sqlite3 *db, struct sqlite3_stmt *q, const char *what, ss_err *err);

/*
 * The store's counts into stats, as every command ends: requests and bytes
 * down, and bytes up unless ENG_STATS_NO_UP (status and restore leave the
 * caller's: what they send is requests, not the folder's data).
 */
enum { ENG_STATS_ALL, ENG_STATS_NO_UP };
void eng_stats_from_store(ss_folder *f, ss_stats *stats, int which);

/* ---- packer (packer.c): the data/ packs of one push ---------------------------------- */

/*
 * A push's pack table and the pack being filled. eng_packer_add references
 * a chunk the state knows where it lies; a new one it seals into the
 * current pack and records in the state (a repeat within the push is then
 * referenced, not sealed again). A full pack, and the last one at
 * eng_packer_flush, is padded to its size bucket and uploaded create-only
 * through xfer (borrowed: free the packer after xfer, which waits for what
 * is in flight). ret_ref->pack indexes the packer's table.
 */
typedef struct eng_packer eng_packer;
#define ENG_PACK_TARGET (8u << 20) /* packs are sealed at about this size */
ss_rc eng_packer_new(ss_folder *f, ss_xfer *xfer, uint64_t seq, eng_packer **ret_packer,
                     ss_err *err);
ss_rc eng_packer_add(eng_packer *pk, const uint8_t *data, size_t len,
                     const uint8_t id[SS_CHUNK_ID_LEN], ss_chunk_ref *ret_ref, ss_err *err);
ss_rc eng_packer_flush(eng_packer *pk, ss_err *err);
/* The pack table: its size, the key of pack i, and whether an op references it (_use). */
uint32_t eng_packer_count(const eng_packer *pk);
const char *eng_packer_key(const eng_packer *pk, uint32_t i);
int eng_packer_used(const eng_packer *pk, uint32_t i);
void eng_packer_use(eng_packer *pk, uint32_t i);
void eng_packer_free(eng_packer *pk);

/* Append what f's store was asked to .s3sync/usage (engine/usage.c), as the folder closes. */
void eng_usage_record(ss_folder *f);

#endif
