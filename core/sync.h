/*
 * sync: the engine's public face. A synced folder DIR has DIR/.s3sync/ with
 * state.db (the previous state), master.key (0600: the repository's master
 * key, so cron runs need no passphrase), config (store URL, device name),
 * repo.config (the store's config object, verified at every open)
 * and a lock held while a command runs (an open file description lock: the
 * kernel drops it when the holder dies, so it is never stale).
 *
 *   ss_folder_init   create the repository at STORE or join it, and make DIR/.s3sync
 *   ss_folder_open   open DIR (found by the CLI by looking upward)
 *   ss_push          publish local changes as the next transaction
 *   ss_pull          apply every transaction after the watermark
 *   ss_status        count what either would do, changing nothing
 */
#ifndef SS_SYNC_H
#define SS_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "s3store.h"
#include "scan.h"
#include "ss_error.h"

typedef struct ss_folder ss_folder;

/* What one command did; the CLI prints it (and --json). */
typedef struct ss_stats {
    uint64_t seq;        /* watermark after */
    uint64_t files;      /* paths changed (pushed or applied) */
    uint64_t bytes_up;   /* bytes sent to the store */
    uint64_t bytes_down; /* bytes received */
    uint64_t requests;   /* store requests made */
    uint64_t pending_local, pending_remote; /* ss_status only */
    char **conflicts;    /* conflict copies made; NULL-terminated, owned */
    size_t n_conflicts;
} ss_stats;

void ss_stats_clear(ss_stats *s); /* frees conflicts */

/* Callbacks the CLI provides; any may be NULL. */
typedef struct ss_hooks {
    ss_warn_fn warn; /* a skipped special file, a conflict made */
    void (*verbose)(void *ctx, const char *what, const char *path); /* -v: per path */
    void (*progress)(void *ctx, uint64_t files_done, uint64_t bytes_done, uint64_t bytes_total);
    void *ctx;
} ss_hooks;

typedef struct ss_init_opts {
    const char *store_url;
    const ss_store_opts *store_opts;
    const char *passphrase;
    size_t passlen;
    const char *device_name; /* NULL: the host name */
} ss_init_opts;

/* *ret_created 1 when a new repository was made, 0 when joined. */
ss_rc ss_folder_init(const char *dir, const ss_init_opts *o, const ss_hooks *hooks,
                     ss_folder **ret_folder, int *ret_created, ss_err *err);
ss_rc ss_folder_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                     ss_folder **ret_folder, ss_err *err);
void ss_folder_free(ss_folder *f);

/* Find the synced folder holding path: the nearest ancestor with .s3sync/. *ret owned. */
ss_rc ss_folder_find(const char *path, char **ret_dir, ss_err *err);

ss_rc ss_push(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc ss_pull(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc ss_sync(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err);

/* The store and repository of an open folder (borrowed), for key management. */
struct ss_repo *ss_folder_repo(ss_folder *f);

#endif
