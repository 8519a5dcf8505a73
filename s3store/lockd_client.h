/*
 * lockd_client: the device's side of docs/PROTOCOL.md, under store_lockd.c.
 * Calls lockd's API (JSON bodies, the device's Bearer token) on the store's
 * s3_http engine, so lockd requests retry, time out and count like bucket
 * requests; and keeps the write lease: acquired with a bounded wait while
 * another device holds it, renewed once a third of its TTL passed, committed
 * with release, released. What lockd answers is read through lockd_answer.h,
 * which checks it first. Private to s3store/.
 */
#ifndef SS_LOCKD_CLIENT_H
#define SS_LOCKD_CLIENT_H

#include <jansson.h>
#include <stdint.h>

#include "lockd_answer.h"
#include "s3_http.h"

/* FORMAT.md's names of the keys PROTOCOL.md's rules are about. */
#define LK_LOG_PREFIX "log/"
#define LK_DATA_PREFIX "data/"
#define LK_SEQ_DIGITS 20

typedef struct lk_client {
    const char *where; /* the store URL: names lockd in messages (borrowed) */
    char *api;         /* "http(s)://HOST:PORT/v1/repos/REPO" */
    char *token;       /* the device token, sodium_malloc'ed */
    s3_http *http;     /* the store's engine (borrowed) */
    int64_t lease_ttl_ms, lease_wait_ms;
    int leased; /* the lease below is held */
    char lease_id[LK_LEASE_ID_SIZE];
    json_int_t fencing;
    int64_t renew_at_ms;
    uint64_t taken_seq; /* writes of this sequence were refused: none until the next pull */
} lk_client;

/*
 * location "http(s)://HOST:PORT/REPO" (SS_ERR_INVALID otherwise), the token
 * of token_file (NULL: S3SYNC_TOKEN_FILE; none is SS_ERR_INVALID), lease TTL
 * and wait from S3SYNC_LEASE_TTL_MS and S3SYNC_LEASE_WAIT_MS. k zeroed first.
 */
ss_rc lk_client_init(lk_client *k, const char *where, const char *location, const char *token_file,
                     s3_http *http, ss_err *err);
void lk_client_clear(lk_client *k); /* releases a held lease (best effort), wipes the token */

/*
 * A lockd API call: method on route (under /v1/repos/REPO), with body (may
 * be NULL; taken). 2xx: *ret is the answer object. Otherwise the rc of the
 * status (401/403 SS_ERR_AUTH, 409 SS_ERR_CONFLICT, 5xx and unreachable
 * SS_ERR_TEMPORARY, else SS_ERR_STORE), err names lockd's error code and
 * message, and *ret is lockd's error object when it sent one. what names the
 * call in messages ("POST lease").
 */
ss_rc lk_api(lk_client *k, const char *method, const char *what, const char *route, json_t *body,
             json_t **ret, ss_err *err);

/* POST presign with body (taken): *ret_url the first URL (malloc'ed), *ret_ans the answer,
 * which lk_answer_parse_presigned accepts when this returns SS_OK. */
ss_rc lk_presign(lk_client *k, json_t *body, const char *key, char **ret_url, json_t **ret_ans,
                 ss_err *err);

/* Before a write: acquire the lease (bounded wait: SS_ERR_TEMPORARY), or keep it. */
ss_rc lk_lease_need(lk_client *k, ss_err *err);
/* Before a lockd call or upload: renew a held lease when due; a lost one is SS_ERR_EXISTS. */
ss_rc lk_lease_keep(lk_client *k, ss_err *err);
void lk_lease_release(lk_client *k);

/*
 * A write of seq answered rc (ans: lockd's error, may be NULL). A 409 (stale
 * lease or head) ends the lease, marks seq taken and becomes SS_ERR_EXISTS,
 * the engine's cue to pull and rebuild; other codes pass.
 */
ss_rc lk_refused(lk_client *k, const json_t *ans, ss_rc rc, uint64_t seq, ss_err *err);

/* Commit log/<seq> with release (object_missing retried a few times). */
ss_rc lk_commit(lk_client *k, uint64_t seq, ss_err *err);

#endif
