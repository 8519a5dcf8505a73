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
    uint64_t retries;    /* push: builds redone because another device took the sequence first */
    uint64_t pending_local, pending_remote; /* ss_status only */
    char **conflicts;                       /* conflict copies made; NULL-terminated, owned */
    size_t n_conflicts;
} ss_stats;

void ss_stats_clear(ss_stats *s); /* frees conflicts */

/*
 * Where a long push or pull stands. Push counts the changed files and their
 * bytes before reading them (one extra lstat pass, made only when a progress
 * hook is set); pull learns each transaction's totals when it verifies it, so
 * its totals grow by transaction (txn_done of txn_total tells how far).
 */
typedef struct ss_progress {
    const char *phase; /* "push" or "pull" */
    uint64_t files_done, files_total;
    uint64_t bytes_done, bytes_total; /* file content bytes read (push) or fetched (pull) */
    uint64_t txn_done, txn_total;     /* pull: transactions applied of those listed */
} ss_progress;

/* Callbacks the CLI provides; any may be NULL. */
typedef struct ss_hooks {
    ss_warn_fn warn; /* a skipped special file, a conflict made */
    void (*verbose)(void *ctx, const char *what, const char *path); /* -v: per path */
    void (*progress)(void *ctx, const ss_progress *p); /* often: throttle in the callee */
    void *ctx;
} ss_hooks;

typedef struct ss_init_opts {
    const char *store_url;
    const ss_store_opts *store_opts; /* its endpoint and profile go in the folder's settings */
    const char *passphrase;
    size_t passlen;
    const char *device_name; /* NULL: the host name */
    /*
     * Not NULL: join only a repository with this fingerprint (text form); a
     * differing one is SS_ERR_INTEGRITY and none at all SS_ERR_NOT_FOUND, both
     * before anything is written into the folder.
     */
    const char *expect_fingerprint;
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

/*
 * Folder settings, DIR/.s3sync/config ("key = value" lines; `s3sync config`).
 * Only the keys ss_folder_settings lists are accepted. Precedence when a
 * folder is opened: a command-line option (a non-NULL ss_store_opts field)
 * beats the folder's setting, which beats the environment, which beats
 * ~/.aws/config: the folder's file is written for that one folder.
 */
typedef struct ss_setting_info {
    const char *name;
    const char *help; /* one line: what it is, its default */
    int read_only;    /* shown by get, refused by set */
} ss_setting_info;

/* The known keys (static table); *ret_n gets their count. */
const ss_setting_info *ss_folder_settings(size_t *ret_n);
/* dir: the synced folder. SS_ERR_NOT_FOUND when unset, SS_ERR_INVALID for an unknown key. */
ss_rc ss_folder_get_setting(const char *dir, const char *key, char **ret_value, ss_err *err);
/*
 * Check the value, then rewrite the file atomically (under the folder lock); value NULL
 * unsets. A new store must hold this folder's repository (SS_ERR_CONFLICT otherwise):
 * it is asked for its config, through store_opts (may be NULL) over the folder's settings.
 */
ss_rc ss_folder_set_setting(const char *dir, const char *key, const char *value,
                            const ss_store_opts *store_opts, ss_err *err);
/* A setting of an open folder as read at open, copied into buf: 1, or 0 when unset (or too long).
 */
int ss_folder_setting(const ss_folder *f, const char *key, char *buf, size_t cap);

/* The store and repository of an open folder (borrowed), for key management. */
struct ss_repo *ss_folder_repo(ss_folder *f);

/*
 * Devices (docs/FORMAT.md "Devices and signatures"): every transaction is
 * signed by its device's key; a device enrolls itself with the first one it
 * signs; a revoked device's later transactions are refused.
 */
typedef struct ss_device_info {
    const char *name;  /* as it last named itself */
    char id[33];       /* 32 hex digits */
    uint64_t enrolled; /* sequence that enrolled it */
    uint64_t revoked;  /* sequence that revoked it; 0: not revoked */
    uint64_t last;     /* newest sequence it signed that this device applied; 0: unknown */
    int self;          /* it is this device */
} ss_device_info;
typedef ss_rc (*ss_device_fn)(void *ctx, const ss_device_info *d, ss_err *err);

/* Pull, then hand out every device of the table at the head, in id order. */
ss_rc ss_folder_devices(ss_folder *f, ss_device_fn fn, void *ctx, ss_stats *stats, ss_err *err);
/*
 * Pull, then revoke the device named who (its name, or 4 or more leading hex
 * digits of its id) in a signed transaction. SS_ERR_NOT_FOUND when no
 * enrolled device matches; SS_ERR_INVALID when several do, or it is revoked
 * already.
 */
ss_rc ss_folder_revoke(ss_folder *f, const char *who, ss_device_info *ret_revoked, ss_stats *stats,
                       ss_err *err);
/* This device's id (32 hex digits and NUL). */
void ss_folder_device_id(const ss_folder *f, char out[33]);

#endif
