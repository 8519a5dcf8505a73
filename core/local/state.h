/*
 * state: the previous state of a synced folder, DIR/.s3sync/state.db.
 *
 * SQLite in WAL mode. Per path: what the store last said about it (kind,
 * mode, mtime, size, content id and body: inline bytes, encoded chunk refs
 * or a symlink target) and what the local file looked like when it last
 * matched (inode, ctime, size, mtime, and the mode it has here: a pull
 * masks the store's mode, so it may differ from mode), so change detection
 * needs only an lstat. Also the watermark (last applied sequence and its chain value),
 * the device's identity, and where each chunk the rows reference lives, with
 * the count of rows referencing it (so a chunk is uploaded once, and a push
 * reuses only chunks of the current state: what gc keeps; locations no row
 * references are forgotten at each commit).
 *
 * Two connections: iteration reads a snapshot on one, while writes go
 * through the other inside ss_state_begin/commit; a push can walk the rows
 * and change them without the walk seeing its own changes. Paths are
 * ordered with ss_path_cmp ('/' lowest), the order a directory walk yields.
 */
#ifndef SS_STATE_H
#define SS_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "ss_error.h"

#define SS_STATE_TAG_HEX 32 /* an ETag as state.db keeps it: the hex digits of an MD5 */

typedef struct ss_state ss_state;
typedef struct ss_state_iter ss_state_iter;

typedef struct ss_state_row {
    const char *path; /* borrowed */
    int kind;         /* SS_TXN kinds: 1 file, 2 directory, 3 symlink */
    uint32_t mode;
    uint64_t size;
    int64_t mtime_s;
    uint32_t mtime_ns;
    /* The local file when it last matched this row. */
    uint64_t ino;
    int64_t ctime_s;
    uint32_t ctime_ns;
    uint32_t local_mode; /* mode as the store has it, local_mode as the folder does */
    uint8_t content_id[SS_TXN_CONTENT_ID_BYTES]; /* files only */
    const void *body;                            /* borrowed; see above */
    size_t body_len;
    int storage; /* files: 1 inline, 2 chunks (as in transactions) */
} ss_state_row;

typedef struct ss_chunk_loc {
    char pack[96]; /* data object key */
    uint64_t off;
    uint32_t sealed_len, plain_len;
} ss_chunk_loc;

/* Open (and with create, make) the database at path. */
ss_rc ss_state_open(const char *path, int create, ss_state **ret_state, ss_err *err);
void ss_state_free(ss_state *st);

/* One write transaction at a time (BEGIN IMMEDIATE); rollback is safe without begin. */
ss_rc ss_state_begin(ss_state *st, ss_err *err);
ss_rc ss_state_commit(ss_state *st, ss_err *err);
void ss_state_rollback(ss_state *st);

/* Small text settings (device id, name, store URL). *ret_value malloc'ed, NULL when unset. */
ss_rc ss_state_meta_get(ss_state *st, const char *key, char **ret_value, ss_err *err);
ss_rc ss_state_meta_set(ss_state *st, const char *key, const char *value, ss_err *err);

/* Sequence 0 and a zero chain for a device that applied nothing yet. */
ss_rc ss_state_watermark(ss_state *st, uint64_t *ret_seq, uint8_t ret_chain[SS_CHAIN_BYTES],
                         ss_err *err);
/* prev: chain(seq - 1), kept so a checkpoint at seq can record it (FORMAT.md "Checkpoints"). */
ss_rc ss_state_set_watermark(ss_state *st, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES],
                             const uint8_t prev[SS_CHAIN_BYTES], ss_err *err);
/* chain(watermark - 1); SS_ERR_NOT_FOUND when this state never recorded it. */
ss_rc ss_state_chain_prev(ss_state *st, uint8_t ret_prev[SS_CHAIN_BYTES], ss_err *err);

/*
 * What log/<seq> was when this device applied or wrote it (FORMAT.md "The
 * fork check"), recorded with the watermark (same transaction), so a later
 * pull or push can tell that the store still holds that very object there.
 */
typedef struct ss_state_applied {
    uint64_t seq;
    uint64_t size;                      /* bytes of the object */
    uint8_t hash[SS_OBJECT_HASH_BYTES]; /* BLAKE2b-256 of them, as the hash chain takes it */
    char tag[SS_STATE_TAG_HEX + 1];     /* the store's ETag for it; "" unknown */
} ss_state_applied;

ss_rc ss_state_set_applied(ss_state *st, const ss_state_applied *a, ss_err *err);
/* *ret_found 0 when nothing (or nothing readable) is recorded. */
ss_rc ss_state_applied_get(ss_state *st, ss_state_applied *ret, int *ret_found, ss_err *err);

/* *ret_found 0 when absent; the row's pointers are valid until the next call on st. */
ss_rc ss_state_lookup(ss_state *st, const char *path, ss_state_row *ret_row, int *ret_found,
                      ss_err *err);
ss_rc ss_state_put(ss_state *st, const ss_state_row *row, ss_err *err);
/*
 * ss_state_put when the caller knows the row the state holds for that path
 * now: old (NULL: none), as a merge with the state has just read it. Saves
 * a lookup per row (a first push of 1,000,000 files made 1,000,000).
 */
ss_rc ss_state_put_over(ss_state *st, const ss_state_row *row, const ss_state_row *old,
                        ss_err *err);
ss_rc ss_state_remove(ss_state *st, const char *path, ss_err *err);
/* Remove path and everything under it (a directory replaced by a file). */
ss_rc ss_state_remove_tree(ss_state *st, const char *path, ss_err *err);

/* Every row in path order, from a snapshot taken now. */
ss_rc ss_state_iter_new(ss_state *st, ss_state_iter **ret_iter, ss_err *err);
/* *ret_row NULL at the end; valid until the next call. */
ss_rc ss_state_iter_next(ss_state_iter *it, const ss_state_row **ret_row, ss_err *err);
void ss_state_iter_free(ss_state_iter *it);

ss_rc ss_state_chunk_find(ss_state *st, const uint8_t id[SS_CHUNK_ID_LEN], ss_chunk_loc *ret_loc,
                          int *ret_found, ss_err *err);
/*
 * A location of a chunk about to be referenced (pull) or just sealed (push):
 * found by ss_state_chunk_find until the commit, which forgets it unless a
 * row put meanwhile references it. ss_state_put/remove keep the counts.
 */
ss_rc ss_state_chunk_add(ss_state *st, const uint8_t id[SS_CHUNK_ID_LEN], const ss_chunk_loc *loc,
                         ss_err *err);

/*
 * The device table (devices.h) as of the watermark: loaded into d (which
 * should be empty), or saved whole in the current write transaction, so it
 * moves with the watermark.
 */
struct ss_devices;
ss_rc ss_state_devices_load(ss_state *st, struct ss_devices *d, ss_err *err);
ss_rc ss_state_devices_save(ss_state *st, const struct ss_devices *d, ss_err *err);

#endif
