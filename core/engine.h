/*
 * engine: what push.c, pull.c and folder.c share, private to core/.
 *
 * The folder handle, how a local file becomes a content id and chunks (the
 * same way on both sides, so a device can tell "same content" without the
 * store), the state body of a chunked file, and conflict-copy names.
 */
#ifndef SS_ENGINE_H
#define SS_ENGINE_H

#include <sys/stat.h>

#include "chunker.h"
#include "ignore.h"
#include "repo.h"
#include "state.h"
#include "sync.h"
#include "txn.h"

struct ss_folder {
    char *root;   /* absolute */
    char *meta;   /* root/.s3sync */
    int root_fd;  /* O_DIRECTORY; every change goes through fsio relative to it */
    int lock_fd;
    ss_store *store;
    ss_repo *repo;
    ss_state *state;
    ss_chunker *chunker;
    ss_ignore *ign;
    ss_txn_limits limits;
    uint8_t device_id[SS_TXN_DEVICE_ID_BYTES];
    char device_name[SS_TXN_DEVICE_NAME_MAX + 1];
    ss_hooks hooks;
};

/* Called per chunk of a file being identified; data valid during the call. */
typedef ss_rc (*eng_chunk_fn)(void *ctx, const uint8_t *data, size_t len, const uint8_t id[32],
                              ss_err *err);

/*
 * Content id of the open file fd of size bytes (FORMAT.md: inline files hash
 * their bytes, others their chunk ids). For inline-sized files *ret_inline
 * gets the bytes (malloc'ed) when wanted; for others fn sees every chunk.
 */
ss_rc eng_identify(ss_folder *f, int fd, uint64_t size, eng_chunk_fn fn, void *ctx,
                   uint8_t ret_content_id[32], uint8_t **ret_inline, ss_err *err);

/* The state row's local columns match what lstat says now (no read needed). */
int eng_stat_matches(const ss_state_row *row, const struct stat *st);
/*
 * The local path (lstat st) still holds what row says, reading it only when
 * the stat does not tell (a racily recent mtime, a copy with a new inode).
 */
ss_rc eng_local_matches(ss_folder *f, const ss_state_row *row, const char *path,
                        const struct stat *st, int *ret_match, ss_err *err);
/* Fill row's local columns from st; racily-recent mtimes are marked to re-check. */
void eng_row_set_stat(ss_state_row *row, const struct stat *st);

/* State body of a chunked file: chunk refs with their pack keys spelled out. */
typedef struct eng_body {
    unsigned char *p;
    size_t len, cap;
} eng_body;
ss_rc eng_body_add(eng_body *b, const char *pack, const ss_chunk_ref *r);
void eng_body_free(eng_body *b);
/* Walk a body; *ret_pack points into it (not NUL-terminated: length in *ret_pack_len). */
int eng_body_next(const void *body, size_t len, size_t *pos, const char **ret_pack,
                  size_t *ret_pack_len, ss_chunk_ref *ret_ref);

/* "dir/name.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.ext", not yet existing. *ret owned. */
ss_rc eng_conflict_name(ss_folder *f, const char *path, char **ret_name, ss_err *err);

/* The kind a stat describes (0 for special files). */
int eng_kind_of(mode_t mode);

/* Append a path to stats->conflicts. */
ss_rc eng_stats_conflict(ss_stats *s, const char *path);

/*
 * The in-flight record, .s3sync/inflight: "seq chain" of a log object this
 * device put but has not recorded (the answer was lost, or it was killed).
 * When pull meets that very object it adopts it (the state takes its ops,
 * the folder is left alone) instead of applying it over newer local edits.
 */
ss_rc eng_inflight_set(ss_folder *f, uint64_t seq, const uint8_t chain[32], ss_err *err);
int eng_inflight_is(ss_folder *f, uint64_t seq, const uint8_t chain[32]);
void eng_inflight_clear(ss_folder *f);

/* Path of a temp file under .s3sync/tmp/ (created empty, O_RDWR); unlinked already. */
ss_rc eng_tmpfile(ss_folder *f, int *ret_fd, ss_err *err);

/* --- reading the log, as pull does (pull.c; history.c shares it) --------------------- */

/* The log/ sequences a listing found, in order, with their object sizes. */
typedef struct eng_log_list {
    uint64_t *seqs;
    uint64_t *sizes; /* of each log object, as listed */
    size_t n, cap;
    int bad; /* 1: an unexpected key (bad_key); 2: out of memory */
    char bad_key[128];
} eng_log_list;
void eng_log_list_free(eng_log_list *l);

/*
 * The sequences after watermark wm (0: from log/1), checked to be the
 * watermark's own key followed by a run without gaps (pull's P2). On a gap
 * the error names the missing key and l still holds every listed sequence.
 */
ss_rc eng_list_log(ss_folder *f, uint64_t wm, eng_log_list *l, ss_err *err);

/*
 * Fetch log/<seq> (or take its bytes from obj when not NULL) and verify its
 * frame against prev (chain(seq - 1)), staging the plaintext in a temp file
 * (*ret_fd, owned by the caller) and computing ret_chain = chain(seq). Its
 * ops are not decoded yet: eng_check_txn.
 */
ss_rc eng_fetch_txn(ss_folder *f, uint64_t seq, const uint8_t prev[32], const void *obj,
                    size_t obj_len, int *ret_fd, uint8_t ret_chain[32], ss_err *err);
/* Decode every op and chunk ref of the staged transaction once: SS_OK only when all is valid. */
ss_rc eng_check_txn(ss_folder *f, int fd, uint64_t seq, ss_err *err);

/* A staged plaintext as a transaction reader's source. */
typedef struct eng_staged {
    int fd;
    uint64_t pos;
} eng_staged;
/* Open a reader on the staged plaintext (src and rd must outlive it); checks its sequence. */
ss_rc eng_open_txn(ss_folder *f, eng_staged *src, ss_store_reader *rd, uint64_t seq,
                   ss_txn_reader **ret_reader, ss_err *err);

/*
 * Verified chunk fetches (fetch.c): chunks are queued by eng_fetch_chunk and
 * fetched in coalesced ranged GETs, each chunk opened with ss_chunk_open
 * (authenticity, id), checked for its plain length, and written to out_fd at
 * the offset given (out_fd -1: verify only). eng_fetch_wait runs what is
 * queued to the end and returns the first failure (all go to bad, if set).
 */
typedef void (*eng_bad_chunk_fn)(void *ctx, const char *pack, const ss_chunk_ref *ref, ss_rc rc,
                                 const char *msg);
typedef struct eng_fetch {
    ss_folder *f;
    ss_xfer *xfer;
    int out_fd;
    ss_rc rc;   /* the first failure */
    ss_err err; /* its message, naming the pack and offset */
    eng_bad_chunk_fn bad; /* when set, told of every failure */
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

/* --- walking the whole log (history.c: log, verify, restore) ------------------------ */

typedef struct eng_walk_txn {
    uint64_t seq;
    uint64_t object_size; /* bytes of log/<seq> */
    const ss_txn_header *h;
} eng_walk_txn;

typedef struct eng_walk {
    uint64_t upto; /* the last sequence to walk; 0: the newest */
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
    int broken; /* the walk stopped at a log object that failed verification (err says why) */
    char broken_key[128]; /* that object's key */
} eng_walk;

/*
 * Walk log/1 .. upto in order, verifying each object exactly as pull does
 * (frame, chain from log/1, every op decoded) before handing out its ops.
 * Costs every log object's bytes: without checkpoints there is no shorter
 * verified way to sequence N.
 */
ss_rc eng_walk_log(ss_folder *f, eng_walk *w, ss_err *err);

/* path is top itself or under it ("" is above every path). */
int eng_path_at_or_under(const char *top, size_t top_len, const char *path, size_t len);

/* A private temporary SQLite database (on disk, gone when closed) with schema run in it. */
struct sqlite3;
ss_rc eng_tempdb_open(const char *schema, struct sqlite3 **ret_db, ss_err *err);
/* SQLite's failure as SS_ERR_IO (or SS_ERR_NOMEM), naming what was being done. */
ss_rc eng_tempdb_fail(struct sqlite3 *db, const char *what, ss_err *err);

#endif
