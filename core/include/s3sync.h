/*
 * s3sync.h: core's public face, the one core header cli/ includes (CMake
 * gives cli/ core/include only). Everything else in core/ is private:
 * base/ < format/ < local/ < engine/ < commands/ (ci/layers.sh checks it).
 *
 * A synced folder DIR has DIR/.s3sync/ with
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
#ifndef S3SYNC_H
#define S3SYNC_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>

#include "s3store.h"
#include "ss_error.h"

/*
 * Format constants the CLI shows or defaults to. core/format/format.h owns
 * them; a translation unit that includes both fails to build if they differ.
 */
#define SS_FORMAT_VERSION 2u
#define SS_FINGERPRINT_TEXT 40 /* 8 groups of 4 lowercase hex, '-' between, and NUL */
#define SS_GC_KEEP_DAYS_DEFAULT 30u

typedef struct ss_folder ss_folder;

/* What one command did; the CLI prints it (and --json). */
typedef struct ss_stats {
    uint64_t seq;                               /* watermark after */
    uint64_t files;                             /* paths changed (pushed or applied) */
    uint64_t bytes_up;                          /* bytes sent to the store */
    uint64_t bytes_down;                        /* bytes received from the store */
    uint64_t bytes_peer;                        /* bytes received from peers instead */
    uint64_t requests;                          /* store requests made */
    uint64_t requests_by_class[SS_REQ_CLASSES]; /* the same by class (s3store.h ss_req_class) */
    uint64_t retries; /* push: builds redone because another device took the sequence first */
    uint64_t pending_local, pending_remote; /* ss_status only; a checkpoint to start from: 1 */
    uint64_t withheld; /* ss_status: a head a peer announced the store does not show; 0 none */
    char **conflicts;  /* conflict copies made; NULL-terminated, owned */
    size_t n_conflicts;
    struct ss_peer_seen *peers; /* ss_status_peers; owned */
    size_t n_peers;
} ss_stats;

void ss_stats_clear(ss_stats *s); /* frees conflicts and peers */

/* A peer as `status -v` shows it (docs/PEERS.md "Status"). */
typedef struct ss_peer_seen {
    char addr[270];    /* HOST:PORT contacted now; "" for one known only from earlier runs */
    char device[17];   /* its device id, short; "" when no handshake ever passed */
    char name[256];    /* its name in the device table; "" when not known */
    int reachable;     /* its handshake passed now */
    char why[160];     /* why not; "" */
    uint64_t head;     /* the newest head it announced to this device; 0: none */
    uint64_t last_seq; /* the newest transaction it signed that this device applied; 0 */
    uint64_t received; /* bytes it delivered to this device, all runs */
    uint64_t served;   /* bytes this device's serve sent it, all runs */
    long long seen;    /* unix seconds of the last exchange; 0: none */
} ss_peer_seen;
/*
 * The peers f's settings name, and those discovery finds, contacted now
 * with the short timeouts of a pull, and every device this folder exchanged
 * bytes with before (.s3sync/peers), into stats->peers.
 */
ss_rc ss_status_peers(ss_folder *f, ss_stats *stats, ss_err *err);

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
    /*
     * Not NULL: called once no repository was found, before one is made: SS_OK
     * to create it. It may have the passphrase typed again, into the same
     * buffer (*passlen its new length): a typo there would be the passphrase forever.
     */
    ss_rc (*confirm_new)(void *ctx, size_t *passlen, ss_err *err);
    void *confirm_ctx;
} ss_init_opts;

/* *ret_created 1 when a new repository was made, 0 when joined. */
ss_rc ss_folder_init(const char *dir, const ss_init_opts *o, const ss_hooks *hooks,
                     ss_folder **ret_folder, int *ret_created, ss_err *err);
ss_rc ss_folder_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                     ss_folder **ret_folder, ss_err *err);
void ss_folder_free(ss_folder *f);
/* The store's counts so far (requests, bytes) into stats: what a creating init cost. */
void ss_folder_store_stats(ss_folder *f, ss_stats *stats);

/* Find the synced folder holding path: the nearest ancestor with .s3sync/. *ret owned. */
ss_rc ss_folder_find(const char *path, char **ret_dir, ss_err *err);

ss_rc ss_push(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc ss_pull(ss_folder *f, ss_stats *stats, ss_err *err);
/*
 * A device heard announcing itself on the network ("HOST:PORT", "[V6]:PORT"):
 * the next pull asks it as it asks the peers setting, and does not query
 * the network (docs/PEERS.md "Discovery"). Nothing when f neither sets peers
 * nor discovery.
 */
void ss_folder_add_peer(ss_folder *f, const char *entry);

/*
 * s3sync serve (docs/PEERS.md "Serving"): a server holds copies of what a
 * session is checked against (the repository's peer key, the device table,
 * this device's key) and a handle on the folder's cache, so the folder is
 * opened (and locked) only while ss_serve_pull runs. SS_ERR_INVALID when
 * cache_size is 0. The listening and the loop are the caller's.
 */
typedef struct ss_server ss_server;
ss_rc ss_serve_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                    ss_server **ret_server, ss_err *err);
void ss_serve_free(ss_server *s); /* NULL safe */
/* peer_listen as set ("HOST:PORT", "[V6]:PORT" or "off"), else the default [::]:21470. Borrowed. */
const char *ss_serve_listen(const ss_server *s);
/*
 * Discovery, when the folder sets peer_discovery: the UDP socket to poll
 * (non-blocking), bound to its port, for a device serving TCP port; -1
 * when discovery is off (err untouched) or the socket cannot be had (why
 * in err). The server owns it.
 */
int ss_serve_disc_open(ss_server *s, uint16_t port, ss_err *err);
/* Announce this device on the network now (the caller's loop: at start, then every 30 s). */
void ss_serve_disc_announce(ss_server *s);
/*
 * A datagram waits on the socket: a query for this repository is answered;
 * an announcement of another of its devices is 1, with where it serves,
 * "HOST:PORT" or "[V6]:PORT", in peer. Anything else: 0.
 */
int ss_serve_disc_readable(ss_server *s, char *peer, size_t cap);
/* Take f's device table (f: the server's folder, open) for the next sessions. */
ss_rc ss_serve_take(ss_server *s, ss_folder *f, ss_err *err);
/* Pull, and take the device table it leaves for the next sessions. */
ss_rc ss_serve_pull(ss_server *s, ss_stats *stats, ss_err *err);
/* What a session was. */
typedef struct ss_served {
    char device[256]; /* the name of the device served; "" if the handshake failed */
    uint64_t head;    /* the newest sequence it announced it wrote (signed); 0: none */
    uint64_t bytes;   /* message bytes sent to it (the objects it asked for, and answers) */
} ss_served;
/*
 * One session on the accepted socket fd (owned from then on): the
 * handshake, then the client's requests until it ends.
 */
ss_rc ss_serve_session(ss_server *s, int fd, ss_served *ret, ss_err *err);
ss_rc ss_sync(ss_folder *f, ss_stats *stats, ss_err *err);
ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err);

/*
 * What push (with_pull 0) or sync (with_pull 1) would send and receive,
 * doing none of it (--dry-run): nothing is written to the folder or the
 * store. For sync the pending log objects are fetched and verified (a LIST
 * and a GET each, which the store bills) to count what they change. The
 * requests are an estimate of what the real run would make: a LIST to find
 * the log, a GET per log object and per pack it would read chunks from, a
 * PUT per 8 MiB pack of changed files above the inline limit and one for
 * the log object.
 */
typedef struct ss_plan {
    uint64_t files_up;   /* paths push would send */
    uint64_t bytes_up;   /* content bytes of the changed files (at most: dedup sends less) */
    uint64_t files_down; /* ops the pending transactions hold */
    uint64_t bytes_down; /* their log objects, and the chunks this device does not hold */
    uint64_t requests_estimated;
    uint64_t requests_by_class[SS_REQ_CLASSES]; /* the estimate by class */
} ss_plan;
ss_rc ss_plan_run(ss_folder *f, int with_pull, ss_plan *ret, ss_err *err);

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

/*
 * The folder's ignore rules for a caller that does not hold the folder open
 * (s3sync watch): its ignore_file setting and that file, as they are now.
 * The same rules and errors as the scans of push and status. Owned.
 */
typedef struct ss_folder_ignore ss_folder_ignore;
ss_rc ss_folder_ignore_load(const char *dir, ss_folder_ignore **ret_ign, ss_err *err);
void ss_folder_ignore_free(ss_folder_ignore *ign); /* NULL safe */
/* 1 when the folder ignores path (relative to it), or a directory above it. */
int ss_folder_ignored(const ss_folder_ignore *ign, const char *path, int is_dir);
/* The ignore file's path in the folder ("" when it lies outside), whose edits change the rules. */
const char *ss_folder_ignore_file(const ss_folder_ignore *ign);
/* 1 for a name no sync ever takes (.s3sync and its aliases, the engine's temp files). */
int ss_folder_name_skipped(const char *name);

/*
 * A path or name from another device made safe for a terminal (control bytes
 * and invalid UTF-8 escaped, cut short when long): dst, always NUL-terminated.
 */
char *ss_display_path(char *dst, size_t cap, const char *path);

/* The store and repository of an open folder (borrowed), for key management. */
typedef struct ss_repo ss_repo;
struct ss_repo *ss_folder_repo(ss_folder *f);

/*
 * Key files of the repository (`s3sync key`): seal the master key under
 * another passphrase with a label (up to 255 bytes, no control characters;
 * ret_id gets the key file id, 16 hex; limits from $S3SYNC_KDF, refused with
 * SS_ERR_INVALID below config's floor), list them (SS_ERR_INTEGRITY naming
 * the key file whose label does not open), remove one (never the last:
 * SS_ERR_INVALID).
 */
ss_rc ss_repo_key_add(ss_repo *repo, const char *pass, size_t passlen, const char *label,
                      char ret_id[17], ss_err *err);
typedef struct ss_key_info {
    const char *id;    /* 16 hex */
    uint64_t created;  /* Unix seconds; 0 with label NULL */
    const char *label; /* NULL: a key file written without one */
} ss_key_info;
typedef int (*ss_repo_key_fn)(void *ctx, const ss_key_info *key);
ss_rc ss_repo_key_list(ss_repo *repo, ss_repo_key_fn fn, void *ctx, ss_err *err);
ss_rc ss_repo_key_remove(ss_repo *repo, const char *id, ss_err *err);
/* The fingerprint (FORMAT.md "Repository fingerprint") as text. */
void ss_repo_fingerprint(const ss_repo *repo, char out[SS_FINGERPRINT_TEXT]);

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
 * already. A revocation also begins a new key epoch (docs/FORMAT.md "Key
 * epochs"): the revoked device reads nothing written from then on. pass
 * becomes the passphrase of the new epoch; every other key file is retired.
 */
ss_rc ss_folder_revoke(ss_folder *f, const char *who, const char *pass, size_t passlen,
                       ss_device_info *ret_revoked, ss_stats *stats, ss_err *err);
/*
 * Pull, then begin a new key epoch granted to every enrolled device (key
 * rotate): what is written from then on needs the new key. pass becomes
 * the passphrase of the new epoch; every other key file is retired.
 */
ss_rc ss_folder_rotate(ss_folder *f, const char *pass, size_t passlen, ss_stats *stats,
                       ss_err *err);
/* A new device's request to be enrolled (approved enrollment). */
typedef struct ss_request_info {
    char id[33];      /* 32 hex digits: compare it with the new device's out of band */
    const char *name; /* borrowed, valid during the call (or ss_folder_approve's ret) */
    char name_buf[256];
} ss_request_info;
typedef ss_rc (*ss_request_fn)(void *ctx, const ss_request_info *r, ss_err *err);
/* The requests of devices not enrolled yet (requests/), each opened and checked, to fn. */
ss_rc ss_folder_requests(ss_folder *f, ss_request_fn fn, void *ctx, ss_err *err);
/*
 * Pull, then enroll the device whose request's id starts with who (4 hex
 * digits or more) in a signed transaction. SS_ERR_NOT_FOUND when no request
 * matches; SS_ERR_INVALID when several do.
 */
ss_rc ss_folder_approve(ss_folder *f, const char *who, ss_request_info *ret, ss_stats *stats,
                        ss_err *err);
/*
 * Pull, then set how devices enroll (approve: an enrolled device approves
 * each new one; else a device enrolls itself with its first push).
 */
ss_rc ss_folder_set_enrollment(ss_folder *f, int approve, ss_stats *stats, ss_err *err);
/* 1 when the repository enrolls devices by approval (as of this device's watermark). */
int ss_folder_enrollment(const ss_folder *f);
/* The newest key epoch this device holds (0: the master key only). */
uint32_t ss_folder_epoch(const ss_folder *f);
/* This device's id (32 hex digits and NUL). */
void ss_folder_device_id(const ss_folder *f, char out[33]);
/* The name this device gives itself (borrowed). */
const char *ss_folder_device_name(const ss_folder *f);

/* ------------------------------------------------------------------------------------- */

/*
 * doctor (commands/doctor.c): whether a store and a folder are fit to sync,
 * one check at a time, each told to fn with a line saying what holds or what
 * to do. Store checks: "store" (it answers, the credentials work),
 * "create-only" (If-None-Match: * honoured), "paging" (ListObjectsV2
 * continuation), "clock" (against the store's Date); a lockd: store instead
 * "lockd" (reachable), "token", "lease" (acquired and released) and
 * "presigned-put" (the bucket judges one: it must answer 412 on config).
 * Folder checks: "folder" (.s3sync/ is the owner's alone) and "disk" (free
 * space). It writes only probe/ objects (deleted again) and takes no lock.
 */
typedef enum ss_check_status { SS_CHECK_OK, SS_CHECK_FAIL, SS_CHECK_SKIP } ss_check_status;
typedef void (*ss_doctor_fn)(void *ctx, const char *check, ss_check_status st, const char *msg);

typedef struct ss_doctor_opts {
    const char *dir;                 /* the synced folder, or NULL: no folder checks */
    const char *store_url;           /* NULL: dir's store */
    const ss_store_opts *store_opts; /* over dir's settings, as ss_folder_open takes them */
} ss_doctor_opts;

/* Run every check; *ret_failed 1 when one failed. An error only when it could not start. */
ss_rc ss_doctor(const ss_doctor_opts *o, ss_doctor_fn fn, void *ctx, int *ret_failed, ss_err *err);

/*
 * What the commands on a folder cost the store (engine/usage.c): each
 * command's requests by class and bytes go to .s3sync/usage as it closes the
 * folder. ss_folder_usage sums the last days of it, for `s3sync cost`.
 */
typedef struct ss_usage {
    uint64_t runs; /* commands counted */
    uint64_t requests_by_class[SS_REQ_CLASSES];
    uint64_t bytes_up, bytes_down;
    int64_t first; /* Unix seconds of the oldest command recorded at all; 0: none */
    int64_t until; /* now */
} ss_usage;
ss_rc ss_folder_usage(const char *dir, uint64_t days, ss_usage *ret, ss_err *err);
/*
 * From now on at most max store requests (lockd's aside) for this open
 * folder, 0: no limit (--max-requests, config max_requests). The one past
 * it is not made: the command fails with SS_ERR_TEMPORARY, having left
 * nothing half done, and the next run goes on from there.
 */
void ss_folder_limit_requests(ss_folder *f, uint64_t max);

/* ------------------------------------------------------------------------------------- */

/*
 * checkpoint (commands/checkpoint.c): checkpoints/<seq>, the whole state
 * at a sequence (docs/FORMAT.md "Checkpoints", normative): writing one from state.db (`s3sync
 * checkpoint`, and by itself after a push by the documented rule), listing them, and reading one
 * back verified (a joining device, a device re-based after gc, log, verify, restore and gc start
 * there).
 *
 * A checkpoint's plaintext is a 40-byte header recording chain(seq), then a
 * transaction of upserts only, one per path of the state at seq: the same
 * decoder checks it as every log object (paths, order, chunk refs, limits).
 */

typedef struct ss_checkpoint_result {
    uint64_t seq;   /* the sequence captured */
    int existed;    /* another device had written that very checkpoint */
    uint64_t paths; /* entries in it */
    uint64_t bytes; /* size of the object */
} ss_checkpoint_result;

/*
 * Pull to the head H, then write checkpoints/<H> from the state (create-only:
 * a 412 means another device wrote the same state, which is success with
 * existed set). SS_ERR_INVALID when the repository has no transaction yet.
 */
ss_rc ss_checkpoint(ss_folder *f, ss_checkpoint_result *ret_result, ss_stats *stats, ss_err *err);

/* ------------------------------------------------------------------------------------- */

/*
 * gc (commands/gc.c): delete what no retained state needs (docs/FORMAT.md "gc", normative):
 * log objects at or before the oldest retained checkpoint R, checkpoints
 * older than R, and data/ packs of sequences up to the head H listed at the
 * start that neither checkpoint R nor any log object after it references.
 * Every state from R to H stays restorable. Direct mode only: a lockd store
 * presigns no DELETE.
 */

typedef struct ss_gc_opts {
    int by_last;        /* keep_last is set: else keep_days */
    uint64_t keep_last; /* the newest N states stay restorable (N >= 1) */
    uint64_t keep_days; /* the states of the last N days stay restorable */
    int dry_run;        /* list what would go; delete nothing */
} ss_gc_opts;

typedef struct ss_gc_result {
    uint64_t head;           /* H: the newest sequence when gc listed the store */
    uint64_t retained;       /* R: the oldest retained checkpoint; 0: nothing could go */
    uint64_t checkpoint;     /* a checkpoint gc wrote first (there was none; a dry run: the head,
                                where about it would); 0: none */
    uint64_t objects, bytes; /* deleted (or, dry run, to delete) */
    uint64_t kept_objects, kept_bytes; /* what stays of the listed log/, checkpoints/, data/ */
} ss_gc_result;

/* Told of every object deleted (dry run: that would be), in delete order. Borrowed key. */
typedef void (*ss_gc_fn)(void *ctx, const char *key, uint64_t bytes);

/*
 * Run gc. SS_ERR_INVALID on a lockd store. Before deleting anything, every
 * object of the retained window [R, H] is verified (a walk as verify's): a
 * repository that fails it loses nothing (SS_ERR_INTEGRITY).
 */
ss_rc ss_gc(ss_folder *f, const ss_gc_opts *o, ss_gc_fn fn, void *ctx, ss_gc_result *ret_result,
            ss_stats *stats, ss_err *err);

/* ------------------------------------------------------------------------------------- */

/*
 * history (commands/log.c, verify.c, restore.c): the repository's log as a history: list
 * it (ss_log), check every object in it (ss_verify), and bring back a file or a directory as it was
 * at a sequence or a time (ss_restore).
 *
 * Every log object read is verified exactly as pull verifies it: its frame
 * and the hash chain, then every op decoded, before anything of it is used.
 * restore starts from the newest checkpoint at or before the sequence it
 * needs (see checkpoint above) and reads the log objects after it; log and verify
 * read every log object from log/1, or, once gc took log/1, from the oldest
 * retained checkpoint.
 *
 * Memory stays bounded: what a command collects (transaction summaries,
 * chunk locations, the entries under a restored path) lives in a temporary
 * SQLite database on disk, not in the heap.
 */

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
