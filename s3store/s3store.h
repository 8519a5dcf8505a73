/*
 * s3store: one object-store interface, chosen by URL.
 *
 *   s3://BUCKET/PREFIX   S3-compatible store over HTTP(S), SigV4-signed
 *   file:///ABS/PATH     a local directory with the same semantics
 *   lockd:http(s)://HOST:PORT/REPO
 *                        a repository served by s3sync-lockd (docs/PROTOCOL.md):
 *                        presigned URLs only, create-only puts under a lease,
 *                        log/ listed from lockd's head; no delete, no presign
 *
 * Keys are relative to the store's prefix, '/'-separated, any bytes but NUL.
 * Semantics every backend keeps (tests/test-s3store.c checks both):
 *   - a put is all or nothing: no reader ever sees a partial object;
 *   - SS_PUT_CREATE_ONLY fails with SS_ERR_EXISTS when the key exists, atomically;
 *   - ss_store_put_if fails with SS_ERR_CHANGED unless the key holds the
 *     object of the ETag given, atomically (not on lockd:);
 *   - list returns keys in byte order, strictly after `start_after`;
 *   - a missing key is SS_ERR_NOT_FOUND; unreachable or throttled is
 *     SS_ERR_TEMPORARY (after the backend's own retries); refused
 *     credentials are SS_ERR_AUTH, but SS_ERR_TEMPORARY once the same store
 *     handle had them accepted (s3: they expired or were rotated meanwhile);
 *   - lockd: a PUT whose presigned URL expired before it reached the bucket
 *     (the device slept past its lease) is SS_ERR_EXISTS, as a lost lease is:
 *     pull and rebuild.
 * The store knows nothing of sync: bytes in, bytes out.
 */
#ifndef SS_S3STORE_H
#define SS_S3STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "io.h"
#include "ss_error.h"
#include "sigv4.h"

typedef struct ss_store ss_store;

typedef struct ss_store_opts {
    /* Each NULL field falls back to the AWS environment conventions. */
    const char *endpoint;      /* http(s)://host[:port]; AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL */
    const char *region;        /* AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
    const char *access_key;    /* AWS_ACCESS_KEY_ID */
    const char *secret_key;    /* AWS_SECRET_ACCESS_KEY */
    const char *session_token; /* AWS_SESSION_TOKEN */
    const char *ca_bundle;     /* AWS_CA_BUNDLE */
    int addressing;            /* SS_ADDR_AUTO: path-style with an endpoint, virtual-host on AWS */
    unsigned max_parallel;     /* concurrent transfers; 0 = default (8) */
    unsigned timeout_ms;       /* overall deadline per request incl. retries; 0 = default (300 s) */
    unsigned max_retries;      /* 0: AWS_MAX_ATTEMPTS - 1, else 6 */
    time_t (*clock)(void);     /* signing clock; NULL = time() (tests fix it) */
    const char *token_file;    /* lockd: the device token's file; S3SYNC_TOKEN_FILE */
    const char
        *token_default; /* lockd: when neither of those names one ($XDG_CONFIG_HOME/s3sync/token) */
    /*
     * AWS profile, read as the AWS CLI does from AWS_SHARED_CREDENTIALS_FILE
     * (~/.aws/credentials) and AWS_CONFIG_FILE (~/.aws/config): NULL means
     * AWS_PROFILE, else "default". Named here, its credentials beat the
     * AWS_ACCESS_KEY_ID variables (as --profile does); otherwise the variables
     * win and the profile fills in what they leave unset.
     */
    const char *profile;
} ss_store_opts;

enum { SS_ADDR_AUTO = 0, SS_ADDR_PATH, SS_ADDR_VHOST };

/*
 * Transport caps: the most a store's or lockd's answer may put in this
 * process's memory (docs/FORMAT.md "Bounded reads" lists every read, these
 * and the engine's own in core/format.h). Past a cap the transfer stops at
 * once and the request fails with a line naming what and the cap.
 */
/* A LIST page's XML (1000 keys of 1 KiB are ~1.5 MiB): SS_ERR_STORE. */
#define SS_CAP_LIST_PAGE (8u << 20)
/* An error answer's body: kept that far, then the connection is dropped. */
#define SS_CAP_ERROR_BODY (64u << 10)
/* A lockd JSON answer (a presign of 1000 keys is ~600 KiB): SS_ERR_STORE. */
#define SS_CAP_LOCKD_ANSWER (1u << 20)
/* lockd's head past where a log/ listing starts, in sequences: SS_ERR_STORE. */
#define SS_CAP_LOCKD_LOG_AHEAD (1u << 22)
/* ss_store_get to the end of an object (tools, tests): SS_ERR_INTEGRITY. */
#define SS_CAP_GET_WHOLE (64u << 20)
/* The answer to a DeleteObjects of 1000 keys (~1.2 MiB at 1 KiB a key): SS_ERR_STORE. */
#define SS_CAP_DELETE_ANSWER (4u << 20)

#define SS_DELETE_BATCH_MAX 1000 /* keys in one S3 DeleteObjects request, S3's own limit */

#define SS_PUT_CREATE_ONLY 0x1u /* If-None-Match: *; SS_ERR_EXISTS when taken */
#define SS_TO_END UINT64_MAX    /* length meaning "to the end of the object" */
#define SS_ETAG_MAX 80          /* an ETag, unquoted, with its NUL: longer ones are cut */

typedef struct ss_store_stat {
    uint64_t size;
    char etag[SS_ETAG_MAX]; /* opaque, unquoted */
} ss_store_stat;

/* A body to upload, and a sink for downloaded bytes (base/io.h). */
typedef ss_reader ss_store_reader;
typedef ss_write_fn ss_store_write_fn;

/* Called for each listed key (relative to the prefix) in order; non-zero stops. */
typedef int (*ss_store_list_fn)(void *ctx, const char *key, const ss_store_stat *st);

/* opts may be NULL. Nothing is contacted until the first operation. */
ss_rc ss_store_open(const char *url, const ss_store_opts *opts, ss_store **ret_store, ss_err *err);
void ss_store_free(ss_store *store);

/* The URL the store was opened with (borrowed). */
const char *ss_store_url(const ss_store *store);

/*
 * Request classes, as S3 bills them: PUT (and POST), GET (a presigned or
 * ranged read too), LIST (ListObjectsV2 pages), DELETE (a DeleteObjects of
 * up to 1000 keys is one), HEAD; and the calls
 * to s3sync-lockd itself, which no bucket bills.
 */
typedef enum ss_req_class {
    SS_REQ_PUT,
    SS_REQ_GET,
    SS_REQ_LIST,
    SS_REQ_DELETE,
    SS_REQ_HEAD,
    SS_REQ_LOCKD,
    SS_REQ_CLASSES
} ss_req_class;

/* "put", "get", "list", "delete", "head", "lockd"; NULL past the last. */
const char *ss_req_class_name(unsigned cls);

/* What the store was asked so far: every attempt counts as a request. */
typedef struct ss_store_counters {
    uint64_t requests;                 /* HTTP requests or file operations */
    uint64_t by_class[SS_REQ_CLASSES]; /* the same split by class: their sum is requests */
    uint64_t bytes_up;                 /* body bytes sent */
    uint64_t bytes_down;               /* body bytes received */
    uint64_t budget;   /* 0, or the most requests to make but lockd's (ss_store_set_budget) */
    int date_seen;     /* an answer carried a Date header */
    int64_t date_skew; /* the last Date minus this clock when it came, in s */
} ss_store_counters;

const ss_store_counters *ss_store_counts(const ss_store *store);
/*
 * At most max requests to the bucket (all classes but lockd's, from the
 * store's first) from now on, 0: no limit. The request past it is not made:
 * it fails with SS_ERR_TEMPORARY saying the budget is spent.
 */
void ss_store_set_budget(ss_store *store, uint64_t max);

/* Shorthand for ss_store_counts(store)->requests. */
uint64_t ss_store_requests(const ss_store *store);

/*
 * A source tried before the store for every GET, and told of what the
 * store moved (peer assist, docs/PEERS.md: the engine's peers and cache).
 * The store stays the one that says what exists: a source only delivers
 * bytes faster, and its caller verifies them as it would the store's.
 */
typedef struct ss_store_source {
    /*
     * [off, off + len) of key (len SS_TO_END: to its end) through write,
     * all at once when it has them all: SS_OK, and the store is not asked;
     * anything else, nothing was written and the store is asked.
     */
    ss_rc (*get)(void *ctx, const char *key, uint64_t off, uint64_t len, ss_store_write_fn write,
                 void *wctx);
    /* The store took (put) or gave (a whole object read into memory) key's len bytes. */
    void (*note)(void *ctx, const char *key, const void *buf, size_t len, int put);
    /*
     * Optional, for parallel transfers (ss_xfer), instead of get: begin
     * [off, off + len) of key into dst (exactly len bytes) without waiting;
     * 0 when begun (step hands tag back), -1 when the store is to be asked.
     * owner: the transfer set, which step serves alone.
     */
    int (*begin)(void *ctx, const void *owner, const char *key, uint64_t off, size_t len, void *dst,
                 void *tag);
    /*
     * Begun GETs of owner that are over, at most cap: tags, ok 1 when dst
     * holds all len bytes, 0 when the store is to be asked; waiting up to
     * wait_ms for one when none is.
     */
    size_t (*step)(void *ctx, const void *owner, int wait_ms, void **tags, int *ok, size_t cap);
    void *ctx;
} ss_store_source;
/* src NULL: none. Copied; src->ctx borrowed until it is unset or the store freed. */
void ss_store_set_source(ss_store *store, const ss_store_source *src);
/* Bytes the source delivered instead of the store (not in bytes_down). */
uint64_t ss_store_bytes_source(const ss_store *store);

ss_rc ss_store_put(ss_store *store, const char *key, const void *buf, size_t len, unsigned flags,
                   ss_err *err);
/* Upload len bytes of fd from offset off (pread, so fd's position is untouched). */
ss_rc ss_store_put_file(ss_store *store, const char *key, int fd, uint64_t off, uint64_t len,
                        unsigned flags, ss_err *err);
/*
 * Compare-and-swap: put buf at key only while key still holds the object
 * whose ETag is etag (unquoted, as ss_store_get_stat, ss_store_head, a
 * listing or an earlier put gave it), atomically. SS_ERR_CHANGED, nothing
 * written, when key holds another object or none (S3 answers 412 or 404):
 * read it again and decide again. A retried swap whose earlier attempt's
 * answer was lost is SS_OK only when the object is its own write (s3: its
 * write identity, x-amz-meta-s3sync-write), else SS_ERR_CHANGED: a lost
 * answer can waste a decision (another swapped on top of it before the
 * retry), never make it twice. ret_stat (may be NULL): the new object's
 * size and ETag, "" when the store answered none: read it again before the
 * next swap. A lockd: store cannot (SS_ERR_INVALID). Create the first
 * version with SS_PUT_CREATE_ONLY.
 */
ss_rc ss_store_put_if(ss_store *store, const char *key, const void *buf, size_t len,
                      const char *etag, ss_store_stat *ret_stat, ss_err *err);
ss_rc ss_store_put_stream(ss_store *store, const char *key, uint64_t len,
                          const ss_store_reader *body, unsigned flags, ss_err *err);
/*
 * ss_store_put_file, and what the store then holds: ret_stat gets len and
 * the ETag the store answered (as a listing or HEAD gives it later; "" when
 * the answer carried none), so a caller can tell later whether the key
 * still holds this object without reading it back.
 */
ss_rc ss_store_put_file_stat(ss_store *store, const char *key, int fd, uint64_t off, uint64_t len,
                             unsigned flags, ss_store_stat *ret_stat, ss_err *err);

/*
 * Get [off, off+len) of an object (len SS_TO_END: to its end, at most
 * SS_CAP_GET_WHOLE bytes). A range past the end is cut short, as HTTP does;
 * a store that sends more than asked fails (SS_ERR_INTEGRITY). *ret_buf is
 * malloc'ed, caller frees; NUL-terminated for convenience (not counted in
 * *ret_len).
 */
ss_rc ss_store_get(ss_store *store, const char *key, uint64_t off, uint64_t len, void **ret_buf,
                   size_t *ret_len, ss_err *err);
/*
 * A whole object of at most max bytes into memory, as ss_store_get: one that
 * holds more is SS_ERR_INTEGRITY naming key and max, and no more than max
 * bytes of it are ever read (the engine's small objects: core/format.h).
 */
ss_rc ss_store_get_max(ss_store *store, const char *key, size_t max, void **ret_buf,
                       size_t *ret_len, ss_err *err);
/*
 * ss_store_get_max, and ret_stat: its size and the ETag of exactly the
 * object these bytes are (from the same answer, never a HEAD apart), what a
 * compare-and-swap then names. The store's own answer: a source is not asked.
 */
ss_rc ss_store_get_stat(ss_store *store, const char *key, size_t max, void **ret_buf,
                        size_t *ret_len, ss_store_stat *ret_stat, ss_err *err);
ss_rc ss_store_get_stream(ss_store *store, const char *key, uint64_t off, uint64_t len,
                          ss_store_write_fn write, void *ctx, ss_err *err);
/* Write the bytes to fd with write(2) from its current position. */
ss_rc ss_store_get_file(ss_store *store, const char *key, uint64_t off, uint64_t len, int fd,
                        ss_err *err);

ss_rc ss_store_head(ss_store *store, const char *key, ss_store_stat *ret_stat, ss_err *err);
/*
 * Who wrote key, when the store keeps that: a lockd: store asks lockd which
 * device it gave the PUT URLs of a log/<seq> key to (docs/PROTOCOL.md, GET
 * writers), into ret[cap] as "NAME" or "NAME or NAME". SS_ERR_NOT_FOUND when
 * the store keeps no such record (s3://, file://) or knows nobody for key.
 */
ss_rc ss_store_writer(ss_store *store, const char *key, char *ret, size_t cap, ss_err *err);
/* Deleting a missing key succeeds: delete is idempotent. */
ss_rc ss_store_delete(ss_store *store, const char *key, ss_err *err);
/*
 * Delete keys[0..n), any n, a missing key succeeding as above. s3:// sends
 * them SS_DELETE_BATCH_MAX to a request (DeleteObjects) and checks each
 * key's result in the answer: a key the store failed to delete, or one its
 * answer leaves out, fails naming it (s3store/s3_delete.h). Other stores
 * delete key by key. Requests go one after another, in order; the first
 * that fails stops the rest. Within one request the store may delete in
 * any order, so a failure (or a kill) can leave any part of that request's
 * keys deleted: a caller whose deletes must happen in order gives each
 * step its own call.
 */
ss_rc ss_store_delete_batch(ss_store *store, const char *const *keys, size_t n, ss_err *err);
/* Keys one request of ss_store_delete_batch takes: SS_DELETE_BATCH_MAX on s3://, else 1. */
size_t ss_store_delete_batch_max(const ss_store *store);
/*
 * Keys under prefix (may be ""), strictly after start_after (NULL or ""), every page.
 * lockd stores answer log/ from lockd's head without asking the bucket: st
 * is zeroed there (size and ETag unknown), but for log/<head> when lockd
 * tells what it saw there.
 */
ss_rc ss_store_list(ss_store *store, const char *prefix, const char *start_after,
                    ss_store_list_fn fn, void *ctx, ss_err *err);

/*
 * Check that the store honours create-only puts, on which direct mode's
 * "sequence N is written once" rests: creates probe/<random> twice (with
 * different bodies, so a retried put cannot mistake the second for its own
 * echo), expects the second to fail with SS_ERR_EXISTS, deletes the probe.
 * SS_ERR_STORE when the second create succeeded. A lockd store is not
 * probed: lockd serialises writers with leases. Costs three requests.
 */
ss_rc ss_store_probe_create_only(ss_store *store, ss_err *err);

/*
 * Check that the store honours compare-and-swap (ss_store_put_if), on which
 * s3sync-lockd's state in a bucket rests: creates probe/<random>, swaps it
 * with its ETag, then expects a swap naming the first (now stale) ETag to
 * fail with SS_ERR_CHANGED and leave the object unchanged; deletes the
 * probe. SS_ERR_STORE, in one line, when the store took the stale write or
 * refused the current one. SS_ERR_INVALID on a lockd store. Costs three
 * PUTs, two GETs and a DELETE.
 */
ss_rc ss_store_probe_if_match(ss_store *store, ss_err *err);

/*
 * What `s3sync doctor` asks beyond sync (s3store/store_probe.c). Paging:
 * puts three objects under probe/<random>/, lists them a page of one key at
 * a time (s3: max-keys=1 and continuation tokens), expects all three once
 * and in order, deletes them: SS_ERR_STORE naming what came instead.
 * SS_ERR_INVALID on a lockd store (lockd answers log/ from its head). Costs
 * three PUTs, four LISTs and three DELETEs.
 */
ss_rc ss_store_probe_paging(ss_store *store, ss_err *err);

/*
 * The steps of a lockd: store, each on its own (SS_ERR_INVALID on another
 * store): HEAD asks lockd for the head with the device token (unreachable:
 * SS_ERR_TEMPORARY; a refused token: SS_ERR_AUTH); LEASE acquires the write
 * lease and releases it; PUT sends a presigned create-only PUT of config to
 * the bucket under a lease, which must answer 412 (it exists): the bucket
 * took the signature and nothing was written (SS_ERR_NOT_FOUND, untried,
 * when the repository has no config yet).
 */
typedef enum ss_lockd_check { SS_LOCKD_HEAD, SS_LOCKD_LEASE, SS_LOCKD_PUT } ss_lockd_check;
ss_rc ss_store_lockd_check(ss_store *store, ss_lockd_check what, ss_err *err);
/* 1 for a lockd: store. */
int ss_store_is_lockd(const ss_store *store);

typedef enum ss_presign_op { SS_PRESIGN_GET, SS_PRESIGN_PUT, SS_PRESIGN_LIST } ss_presign_op;

/*
 * A URL that lets its holder do exactly one kind of request, for expires
 * seconds (<= SS_SIGV4_MAX_EXPIRES). For LIST, key is the prefix and
 * start_after is signed into the query. headers are signed: the user must
 * send them verbatim (e.g. if-none-match: * for a create-only PUT).
 * *ret_url is malloc'ed. The file backend cannot presign (SS_ERR_INVALID).
 */
ss_rc ss_store_presign(ss_store *store, ss_presign_op op, const char *key, const char *start_after,
                       const ss_sigv4_header *headers, size_t n_headers, unsigned expires,
                       char **ret_url, ss_err *err);

/*
 * Parallel transfers. Submitting blocks while the store's concurrency bound
 * is reached, so a producer pipelines with the uploads and memory stays
 * bounded. Completion callbacks run in the caller's thread, inside a submit
 * or ss_xfer_wait; buffers must stay valid until their callback ran.
 */
typedef struct ss_xfer ss_xfer;
typedef void (*ss_xfer_done_fn)(void *ctx, ss_rc rc, const ss_err *err);

ss_rc ss_xfer_new(ss_store *store, ss_xfer **ret_xfer, ss_err *err);
ss_rc ss_xfer_put(ss_xfer *x, const char *key, const void *buf, size_t len, unsigned flags,
                  ss_xfer_done_fn done, void *ctx);
/* Fill dst with exactly len bytes from [off, off+len); short object is an error. */
ss_rc ss_xfer_get(ss_xfer *x, const char *key, uint64_t off, size_t len, void *dst,
                  ss_xfer_done_fn done, void *ctx);
/* Run everything submitted to completion; returns the first failure, if any. */
ss_rc ss_xfer_wait(ss_xfer *x, ss_err *err);
void ss_xfer_free(ss_xfer *x); /* waits for what is in flight */

#endif
