/*
 * lockd.h: the types and functions s3sync-lockd's modules share.
 *
 *   db.c      SQLite state: devices, repositories (head, next fencing token),
 *             leases, the writers of each sequence, the token secret (ld_db_*;
 *             db_admin.c devices and repositories, db_head.c leases, head and
 *             rewind, db_cache.c the read cache; db_impl.h private to them)
 *   lease.c   the lease state machine and head sequence per repository
 *             (ld_leases_*, ld_lease_*); the only writer of leases and head
 *             but for an admin's rewind; lease_repo.c the repositories served,
 *             access, reconciliation and head reads (lease_impl.h private)
 *   presign.c which keys a device may get URLs for, and the URLs (ld_presign_*)
 *   body.c    request bodies -> checked fields (ld_body_*, in body.h: fuzzed alone)
 *   auth.c    device tokens: generation, keyed hash, Bearer check (ld_auth_*)
 *   config.c  the key=value configuration file (ld_config_*)
 *   metrics.c Prometheus counters and the latency histogram (ld_metrics_*)
 *   http.c    libmicrohttpd, authentication, JSON in and out (ld_http_*);
 *             routes.c the table of routes and their handlers
 *   rewind.c  the admin's repo rewind: head back, the bucket above it deleted
 *             (ld_rewind)
 *   main.c    arguments, admin commands, server start, signals
 *   ld_state.c the state interface (ld_state.h): one record per repository,
 *             changed by read-decide-write-back updates, and the devices;
 *             db_state.c its SQLite backend, state_s3.c its bucket backend
 *             (state_s3_json.c its objects), which every lease, head and
 *             device decision goes through
 *
 * lockd holds bucket credentials but never a repository's keys or plaintext:
 * it only names objects, counts sequences and signs URLs.
 */
#ifndef LD_LOCKD_H
#define LD_LOCKD_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "s3store.h"
#include "ss_error.h"

#define LD_NAME_MAX 64       /* device and repository names: [A-Za-z0-9._-], 1..64 */
#define LD_LEASE_ID_BYTES 16 /* random bytes in a lease id */
#define LD_LEASE_ID_LEN (2 * LD_LEASE_ID_BYTES) /* its lower-case hex */
#define LD_HASH_LEN 32                          /* keyed BLAKE2b-256 of a device token */
#define LD_SECRET_LEN 32                        /* the token secret: the key of that hash */
#define LD_TOKEN_BYTES 32                       /* random bytes in a device token */
#define LD_TOKEN_LEN 43                         /* base64url without padding of LD_TOKEN_BYTES */
#define LD_SEQ_DIGITS 20                        /* log/<20 digits>, docs/FORMAT.md */
#define LD_LOG_KEY_SIZE 32                      /* "log/" + LD_SEQ_DIGITS + NUL fits */
#define LD_EPOCH_DIGITS 10 /* epochs/<10 digits>, docs/FORMAT.md "Key epochs" */
#define LD_ID_HEX 16       /* hex digits naming data/<seq>-<id> and keys/<id> (FORMAT.md) */
#define LD_KEY_MAX 1024    /* longest object key a device may ask a URL for */
#define LD_URL_MAX 1024    /* a repository's bucket URL, with its terminating NUL */

/* --- time: every expiry decision asks this, so tests can move time ------- */

typedef struct ld_clock {
    int64_t (*now_ms)(void *ctx); /* milliseconds since the Unix epoch */
    void *ctx;
} ld_clock;

/* The wall clock (CLOCK_REALTIME): expiries are persisted, so they must mean
 * the same after a restart, which a monotonic clock would not. */
extern const ld_clock ld_clock_real;

/* --- names and keys -------------------------------------------------------- */

/* 1 if s is a valid device or repository name. */
int ld_name_ok(const char *s);
/* "log/" followed by seq as 20 digits, into out[LD_LOG_KEY_SIZE]. */
void ld_log_key(uint64_t seq, char out[LD_LOG_KEY_SIZE]);

/* --- metrics ---------------------------------------------------------------- */

typedef enum ld_route {
    LD_R_HEALTHZ,
    LD_R_METRICS,
    LD_R_HEAD,
    LD_R_ACQUIRE,
    LD_R_RENEW,
    LD_R_RELEASE,
    LD_R_PRESIGN,
    LD_R_COMMIT,
    LD_R_WRITERS,
    LD_R_OTHER,
    LD_R_COUNT
} ld_route;

typedef enum ld_counter {
    LD_C_GRANTED,   /* leases granted */
    LD_C_EXPIRED,   /* leases found expired (taken over, or refused on use) */
    LD_C_REFUSED,   /* acquires refused because another lease was live */
    LD_C_RELEASED,  /* leases released by their holder */
    LD_C_RENEWED,   /* renewals */
    LD_C_COMMITS,   /* commits that advanced head */
    LD_C_STALE,     /* requests refused for a stale lease, token or sequence */
    LD_C_RECONCILE, /* sequences head moved up by reconciliation */
    LD_C_PRESIGN_GET,
    LD_C_PRESIGN_PUT,
    LD_C_PRESIGN_LIST,
    LD_C_COUNT
} ld_counter;

typedef struct ld_metrics ld_metrics;

ss_rc ld_metrics_new(ld_metrics **ret, ss_err *err);
void ld_metrics_free(ld_metrics *m);
/* All three accept m == NULL (the lease tests run without metrics). */
void ld_metrics_add(ld_metrics *m, ld_counter c, uint64_t n);
void ld_metrics_request(ld_metrics *m, ld_route route, unsigned status, double seconds);
/* The Prometheus text exposition, malloc'ed (caller frees), or NULL. */
/* state_requests: the bucket requests lockd's state made (ld_state_requests). */
char *ld_metrics_render(ld_metrics *m, uint64_t state_requests);

/* --- db.c ------------------------------------------------------------------- */

typedef struct ld_db ld_db;
typedef struct ld_state ld_state; /* ld_state.h: the state behind one interface */

typedef struct ld_device {
    int64_t id;
    char name[LD_NAME_MAX + 1];
    char repo[LD_NAME_MAX + 1];
    int read_only;
    int revoked;
    int64_t created_ms;
    unsigned char hash[LD_HASH_LEN]; /* its token's keyed hash (auth.c) */
} ld_device;

typedef struct ld_repo_row {
    char name[LD_NAME_MAX + 1];
    char url[LD_URL_MAX];
    uint64_t head;               /* highest committed sequence, 0 for none */
    uint64_t next_fencing;       /* the token the next grant hands out (from 1) */
    int dirty;                   /* a lease ended after PUT URLs were issued, uncommitted */
    int rewinding;               /* an admin's rewind is under way: no lease is granted */
    int64_t urls_until_ms;       /* no PUT URL issued for the repository is valid after this */
    char head_etag[SS_ETAG_MAX]; /* log/<head>'s ETag when head moved there, "" when unknown */
    uint64_t head_size;          /* and its size */
} ld_repo_row;

typedef struct ld_lease_row {
    char id[LD_LEASE_ID_LEN + 1];
    char device[LD_NAME_MAX + 1];
    uint64_t fencing;
    int64_t granted_ms;
    int64_t expires_ms;
    uint64_t put_seq; /* the last sequence PUT URLs were issued for, 0 for none;
                       * "uncommitted" while it is above the repository's head */
} ld_lease_row;

/* Opens (creating when absent) the database in WAL mode; makes the schema and
 * the token secret on first use. */
ss_rc ld_db_open(const char *path, ld_db **ret_db, ss_err *err);
void ld_db_close(ld_db *db);
void ld_db_secret(const ld_db *db, unsigned char out[LD_SECRET_LEN]);

ss_rc ld_db_device_add(ld_db *db, const char *name, const char *repo, int read_only,
                       const unsigned char hash[LD_HASH_LEN], int64_t now_ms, ss_err *err);
/* SS_ERR_NOT_FOUND when no device has this hash; revoked devices are returned
 * (the caller decides). ret_hash gets the stored hash for the constant-time check. */
ss_rc ld_db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                           unsigned char ret_hash[LD_HASH_LEN], ss_err *err);
ss_rc ld_db_device_revoke(ld_db *db, const char *name, ss_err *err);
ss_rc ld_db_device_list(ld_db *db, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                        ss_err *err);

/* Inserts the repository, or changes its URL; a changed URL resets head to 0
 * (head belongs to the old location; reconciliation finds the new one's). */
ss_rc ld_db_repo_put(ld_db *db, const char *name, const char *url, int *ret_changed, ss_err *err);
ss_rc ld_db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err);
ss_rc ld_db_repo_list(ld_db *db, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                      ss_err *err);
/* Mark the repository for reconciliation before its next grant. */
ss_rc ld_db_repo_mark_dirty(ld_db *db, const char *repo, ss_err *err);
/* Raise head to `head` (never lowers it) and clear dirty, in one transaction; obj (may be
 * NULL): what log/<head> is. */
ss_rc ld_db_repo_raise_head(ld_db *db, const char *repo, uint64_t head, const ss_store_stat *obj,
                            ss_err *err);

/* The lease row of repo; *ret_found 0 when there is none. */
ss_rc ld_db_lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err);
/*
 * The repository row and its lease row (*ret_found 0 when none) as of one
 * snapshot, from the read cache while the database has not changed (db_impl.h
 * says how that is checked): the hot read of GET head and of every lease
 * check.
 */
ss_rc ld_db_repo_state(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                       int *ret_found, ss_err *err);
/*
 * Replace the repository's lease row by a new one, taking the fencing token
 * from next_fencing and incrementing it, marking the repository dirty when
 * the replaced (expired) lease had PUT URLs: one transaction, durable before
 * it returns, so a token is never handed out twice, even across a crash.
 */
ss_rc ld_db_lease_grant(ld_db *db, const char *repo, ld_lease_row *lease, ss_err *err);
ss_rc ld_db_lease_set_expiry(ld_db *db, const char *repo, const char *id, int64_t expires_ms,
                             ss_err *err);
/* put_seq = seq, and the lease's device recorded as a writer of seq: one transaction. */
ss_rc ld_db_lease_set_put_seq(ld_db *db, const char *repo, const char *id, uint64_t seq,
                              ss_err *err);
/* Delete the lease (SS_ERR_NOT_FOUND when gone); mark the repository dirty
 * when it had uncommitted PUT URLs. */
ss_rc ld_db_lease_delete(ld_db *db, const char *repo, const char *id, ss_err *err);
/* head = seq (which must be head+1), obj recorded as log/<seq>'s, and the lease
 * deleted when release: one transaction. */
ss_rc ld_db_commit(ld_db *db, const char *repo, const char *id, uint64_t seq, int release,
                   const ss_store_stat *obj, ss_err *err);

/*
 * The writers of a sequence: the devices that were given PUT URLs for it
 * (one, unless a lease ended with them unused and another device got the
 * sequence), in the order they got them. Nobody else can have written
 * log/<seq> through lockd.
 */
#define LD_WRITERS_MAX 4
typedef struct ld_writers {
    char name[LD_WRITERS_MAX][LD_NAME_MAX + 1];
    size_t n;
} ld_writers;
ss_rc ld_db_writers(ld_db *db, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err);

/*
 * An admin's rewind (lockd/rewind.c), in two steps. begin: head = seq (at
 * most head), the lease ended (its PUT URLs counted into urls_until_ms),
 * rewinding set (no grant, no reconciliation until end), the writers above
 * seq forgotten; *ret_before and *ret_after the repository row around it.
 * end: rewinding cleared, once the bucket holds nothing above seq.
 */
ss_rc ld_db_rewind_begin(ld_db *db, const char *repo, uint64_t seq, ld_repo_row *ret_before,
                         ld_repo_row *ret_after, ss_err *err);
ss_rc ld_db_rewind_end(ld_db *db, const char *repo, ss_err *err);

/* --- auth.c ----------------------------------------------------------------- */

/* A fresh random token, base64url without padding, NUL-terminated. */
void ld_auth_token_new(char out[LD_TOKEN_LEN + 1]);
void ld_auth_hash(const unsigned char secret[LD_SECRET_LEN], const char *token,
                  unsigned char out[LD_HASH_LEN]);

typedef enum ld_auth_result {
    LD_AUTH_OK,
    LD_AUTH_MISSING,
    LD_AUTH_BAD,
    LD_AUTH_REVOKED
} ld_auth_result;

/* Check an Authorization header value (may be NULL). SS_OK with *ret_result
 * telling the outcome; an error only when the database failed. */
ss_rc ld_auth_check(ld_state *state, const unsigned char secret[LD_SECRET_LEN],
                    const char *authorization, ld_device *ret_dev, ld_auth_result *ret_result,
                    ss_err *err);

/* --- lease.c ---------------------------------------------------------------- */

typedef struct ld_leases ld_leases;

/* Why a lease operation was refused, beside its ss_rc (for the HTTP layer). */
typedef enum ld_why {
    LD_WHY_NONE,
    LD_WHY_NO_REPO,        /* repository not served: 404 */
    LD_WHY_READ_ONLY,      /* device may not write: 403 */
    LD_WHY_FOREIGN,        /* device belongs to another repository: 403 */
    LD_WHY_LEASE_HELD,     /* another live lease: 409, retry after */
    LD_WHY_STALE_LEASE,    /* lease unknown, expired, released or another's: 409 */
    LD_WHY_STALE_FENCING,  /* fencing token is not the lease's: 409 */
    LD_WHY_BAD_SEQ,        /* commit of a sequence other than head+1: 409 */
    LD_WHY_OBJECT_MISSING, /* commit before log/<seq> exists in the bucket: 409 */
    LD_WHY_BAD_KEY,        /* key not allowed for this operation: 403 */
    LD_WHY_BAD_REQUEST,    /* malformed argument: 400 */
    LD_WHY_STORE,          /* the bucket failed: 503 when temporary, else 502 */
    LD_WHY_INTERNAL,       /* database or memory: 500 */
    LD_WHY_REWINDING,      /* an admin's rewind is under way: 503, retry after */
} ld_why;

typedef struct ld_outcome {
    ld_why why;
    int64_t retry_after_ms;       /* LD_WHY_LEASE_HELD: until the live lease expires */
    char holder[LD_NAME_MAX + 1]; /* LD_WHY_LEASE_HELD: the device holding it */
    uint64_t head;                /* head when the refusal was decided */
    ss_err err;                   /* one line for the client */
} ld_outcome;

/* What a client learns about its lease. */
typedef struct ld_lease {
    char id[LD_LEASE_ID_LEN + 1];
    uint64_t fencing;
    uint64_t head;
    int64_t expires_ms;    /* absolute, lockd's clock */
    int64_t expires_in_ms; /* relative: what a client with another clock should use */
} ld_lease;

typedef struct ld_lease_limits {
    int64_t ttl_min_ms, ttl_max_ms;
} ld_lease_limits;

/* state, clock and metrics (may be NULL) are borrowed and must outlive the leases. */
ss_rc ld_leases_new(ld_state *state, const ld_clock *clock, ld_metrics *metrics,
                    const ld_lease_limits *limits, ld_leases **ret, ss_err *err);
void ld_leases_free(ld_leases *l);
/* Serve repository `name` (present in the db) from `store`, which the leases own. */
ss_rc ld_leases_add_repo(ld_leases *l, const char *name, ss_store *store, ss_err *err);
/* The repository's store, for presigning (thread-safe: it only signs), or NULL. */
ss_store *ld_leases_store(ld_leases *l, const char *repo);

/* Move head up to the highest consecutive log/ key in the bucket; *ret_head (may be NULL). */
ss_rc ld_lease_reconcile(ld_leases *l, const char *repo, uint64_t *ret_head, ld_outcome *out);
/* Head and whether a live lease exists: database only, no bucket request. ret_obj (may be
 * NULL): log/<head>'s size and ETag as lockd saw them when head moved there ("" unknown). */
ss_rc ld_lease_head(ld_leases *l, const char *repo, uint64_t *ret_head, int *ret_leased,
                    ss_store_stat *ret_obj, ld_outcome *out);
/* Whether dev may use repo (and write to it when need_write); the route
 * handlers ask first, every ld_lease_* operation asks again. */
ss_rc ld_lease_access(ld_leases *l, const ld_device *dev, const char *repo, int need_write,
                      ld_outcome *out);
ss_rc ld_lease_acquire(ld_leases *l, const ld_device *dev, const char *repo, int64_t ttl_ms,
                       ld_lease *ret, ld_outcome *out);
ss_rc ld_lease_renew(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                     uint64_t fencing, int64_t ttl_ms, ld_lease *ret, ld_outcome *out);
ss_rc ld_lease_release(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                       uint64_t fencing, ld_outcome *out);
/*
 * Check that (id, fencing) is dev's live lease on repo and record that PUT
 * URLs for head+1 are being issued. *ret_seq = head+1, *ret_remaining_ms =
 * the lease's remaining time (the URLs must not outlive it).
 */
ss_rc ld_lease_begin_put(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                         uint64_t fencing, uint64_t *ret_seq, uint64_t *ret_head,
                         int64_t *ret_remaining_ms, ld_outcome *out);
/* Commit sequence seq: HEAD log/<seq> in the bucket, then head = seq. */
ss_rc ld_lease_commit(ld_leases *l, const ld_device *dev, const char *repo, const char *id,
                      uint64_t fencing, uint64_t seq, int release, ld_lease *ret, int *ret_released,
                      ld_outcome *out);

/* --- presign.c -------------------------------------------------------------- */

#define LD_PRESIGN_MAX_KEYS 1000

/* 1 if key is a well-formed key inside a repository: [A-Za-z0-9._-] segments
 * separated by single '/', no "." or ".." segment, at most 1024 bytes. */
int ld_key_ok(const char *key, int allow_empty, int allow_trailing_slash);
/*
 * 1 if a lease holder may create `key` while head is `head`: log/<head+1>,
 * data/<head+1>-<16 hex>, checkpoints/<seq <= head>, keys/<16 hex>, config.
 */
int ld_put_key_ok(const char *key, uint64_t head);

typedef struct ld_presign_limits {
    unsigned put_max_s; /* cap of PUT URLs (and never past the lease) */
    unsigned get_s;     /* GET and LIST URLs */
} ld_presign_limits;

/* Serve one presign request body (docs/PROTOCOL.md); *ret is the response. */
ss_rc ld_presign(ld_leases *l, const ld_presign_limits *lim, const ld_device *dev, const char *repo,
                 json_t *body, json_t **ret, ld_outcome *out);

/* --- config.c --------------------------------------------------------------- */

typedef struct ld_config_repo {
    char name[LD_NAME_MAX + 1];
    char *url;
} ld_config_repo;

typedef struct ld_config {
    char *listen; /* HOST:PORT, [V6]:PORT; default 127.0.0.1:8443 */
    char *state;  /* "sqlite:PATH", "s3://BUCKET/PREFIX" (ld_state.h), NULL: none given */
    /* The bucket state's clock skew allowance, head cache and token cache (ld_state.h S6-S8). */
    int64_t state_skew_ms, state_head_cache_ms, state_token_cache_ms;
    char *cert, *key; /* PEM files; both or neither */
    unsigned threads; /* 0: a thread per connection; N: a pool of N */
    /* Hostile clients: connections in all and from one address, and the
     * seconds a connection may stay silent (headers or body) before it is closed. */
    unsigned max_connections, max_connections_per_ip, connection_timeout;
    int64_t ttl_default_ms, ttl_min_ms, ttl_max_ms;
    unsigned put_expires_max; /* seconds, cap of presigned PUT URLs */
    unsigned get_expires;     /* seconds, presigned GET and LIST URLs */
    /* Bucket settings; NULL falls back to the AWS_* environment (s3store).
     * secret_key and session_token are sodium_malloc'ed: ld_config_clear wipes them. */
    char *endpoint, *region, *access_key, *secret_key, *session_token, *ca_bundle;
    ld_config_repo *repos;
    size_t n_repos, cap_repos;
} ld_config;

/* A configuration file's bytes; more is refused. It is read as a secret
 * (ss_buf_read_secret): it may hold the bucket's secret key. */
#define LD_CONFIG_MAX (1u << 20)
void ld_config_defaults(ld_config *c);
ss_rc ld_config_load(const char *path, ld_config *c, ss_err *err);
void ld_config_clear(ld_config *c);
/* 1 when two s3:// URLs share a bucket and one's prefix is, or lies below, the other's. */
int ld_url_overlaps(const char *a, const char *b);
/* How lockd opens a repository's bucket: the config's s3_* settings (borrowed). */
void ld_config_store_opts(const ld_config *c, ss_store_opts *ret);

/* --- rewind.c --------------------------------------------------------------- */

/*
 * `repo rewind REPO SEQ` (docs/PROTOCOL.md "Rewind"): head back to seq, the
 * bucket's log/, data/ and checkpoints/ objects above it deleted, after every
 * PUT URL of the repository expired. What it did goes to out, one line.
 */
ss_rc ld_rewind(const ld_config *cfg, ld_state *state, const char *repo, uint64_t seq, FILE *out,
                ss_err *err);

/* --- http.c ----------------------------------------------------------------- */

typedef struct ld_server ld_server;

typedef struct ld_server_ctx {
    const ld_config *cfg;
    ld_state *state;
    ld_leases *leases;
    ld_metrics *metrics;
} ld_server_ctx;

/* Start listening; *ret_port is the bound port (useful with port 0). */
ss_rc ld_http_start(const ld_server_ctx *ctx, ld_server **ret, unsigned *ret_port, ss_err *err);
void ld_http_stop(ld_server *s);

#endif
