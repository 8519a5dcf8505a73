/*
 * history: the repository's log as a history: list it (ss_log), check every
 * object in it (ss_verify), and bring back a file or a directory as it was
 * at a sequence or a time (ss_restore).
 *
 * Every log object read is verified exactly as pull verifies it: its frame
 * and the hash chain, then every op decoded, before anything of it is used.
 * restore starts from the newest checkpoint at or before the sequence it
 * needs (checkpoint.h) and reads the log objects after it; log and verify
 * read every log object from log/1, or, once gc took log/1, from the oldest
 * retained checkpoint.
 *
 * Memory stays bounded: what a command collects (transaction summaries,
 * chunk locations, the entries under a restored path) lives in a temporary
 * SQLite database on disk, not in the heap.
 */
#ifndef SS_HISTORY_H
#define SS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"

/* One path a transaction touched, for ss_log with a path. */
typedef struct ss_log_path {
    const char *path;
    int deleted; /* 0: upserted */
} ss_log_path;

/* One transaction as `s3sync log` shows it. Borrowed: valid during the callback. */
typedef struct ss_log_entry {
    uint64_t seq;
    uint64_t time_ns;      /* Unix nanoseconds, by the writing device's clock */
    const char *device;    /* the name its signer gave itself */
    const char *device_id; /* the signer's id, 16 hex digits: its signature verified */
    const char *devices;   /* NULL, or what it did to the device table ("enrolled; revoked ID") */
    uint64_t upserts, deletes;
    uint64_t bytes;        /* sum of the sizes of the files it upserted */
    uint64_t object_bytes; /* size of log/<seq> in the store */
    int checkpoint; /* the oldest retained state, checkpoints/<seq> (gc took what came before) */
    const ss_log_path *paths; /* with a path filter: the touched paths under it, in path order */
    size_t n_paths;
} ss_log_entry;

typedef ss_rc (*ss_log_fn)(void *ctx, const ss_log_entry *e, ss_err *err);

/*
 * Every transaction in the store, newest first. path (relative to the
 * folder; NULL or "" for all) keeps only the transactions that touched it:
 * the path itself, anything under it, or an ancestor replaced or deleted.
 * stats gets seq (the newest sequence), requests and bytes_down.
 */
ss_rc ss_log(ss_folder *f, const char *path, ss_log_fn fn, void *ctx, ss_stats *stats, ss_err *err);

/* One thing wrong in the store: msg names the object key (also in key). */
typedef void (*ss_problem_fn)(void *ctx, const char *key, const char *msg);

typedef struct ss_verify_report {
    uint64_t checked_logs;        /* log objects that verified */
    uint64_t checked_checkpoints; /* checkpoints that verified (and matched the chain) */
    uint64_t checked_chunks;      /* distinct chunks fetched and verified (data) */
    uint64_t problems;            /* each also told to the problem callback */
    uint64_t unchecked_logs;      /* after a broken link of the chain: not verifiable */
} ss_verify_report;

/*
 * Walk the chain from log/1 (after gc: from the oldest retained checkpoint)
 * to the newest log object, verifying each (frame, chain, every op) and each
 * later checkpoint (it verifies and records the walked chain value); with
 * data, also every chunk any of them references
 * (ranged GET, decrypt, id; each distinct chunk once). Problems are reported
 * one by one and do not stop the check, but a log object that fails ends the
 * chain walk: nothing after it can be verified. Returns SS_OK when the check
 * ran, whatever it found; an error only when it could not run (store
 * unreachable: SS_ERR_TEMPORARY).
 */
ss_rc ss_verify(ss_folder *f, int data, ss_problem_fn fn, void *ctx, ss_verify_report *ret_report,
                ss_stats *stats, ss_err *err);

typedef struct ss_restore_opts {
    const char *path; /* relative to the folder; "" the whole folder */
    uint64_t at_seq;  /* a sequence; 0: see at_time, else the latest */
    int by_time;      /* at_time is set: the last transaction stamped at or before it */
    int64_t at_time;  /* Unix seconds */
    /*
     * Where to write (absolute). NULL: beside the original, as
     * "name.restored-SEQ.ext". An existing directory receives the restored
     * item under its own name. Nothing existing is ever overwritten.
     */
    const char *to;
} ss_restore_opts;

typedef struct ss_restore_result {
    uint64_t seq;   /* the sequence restored */
    char *dest;     /* what was written: relative to the folder, or absolute with to; owned */
    uint64_t files; /* entries written (files, directories, symlinks) */
    uint64_t bytes; /* file bytes written */
} ss_restore_result;
void ss_restore_result_clear(ss_restore_result *r);

/*
 * Restore path as it was at a sequence (a deleted path without at_seq or
 * at_time: as it was last). Entries are written with the folder's atomic
 * writes and chunks fetched and verified as pull does. A restored copy in
 * the folder is an ordinary new file: the next push uploads it.
 */
ss_rc ss_restore(ss_folder *f, const ss_restore_opts *o, ss_restore_result *ret_result,
                 ss_stats *stats, ss_err *err);

/*
 * A path given on the command line (absolute, or relative to the current
 * directory; it need not exist) as a path relative to the folder ("" for
 * the folder itself). SS_ERR_INVALID when it lies outside. *ret owned.
 */
ss_rc ss_history_relpath(ss_folder *f, const char *arg, char **ret_rel, ss_err *err);

#endif
