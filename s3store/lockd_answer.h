/*
 * lockd_answer: what the lockd: client reads from s3sync-lockd's JSON
 * answers (docs/PROTOCOL.md), from bytes to checked fields: a lease grant,
 * presigned URLs, the head, and a refusal's code, message and lease holder.
 * lockd is trusted with sequencing, not with this device's memory or files,
 * so every field is checked for shape here before lockd_client.c and
 * store_lockd.c act on it. No network, no state: fuzzed alone by
 * tests/fuzz/fuzz-lockd-answer.c. Private to s3store/.
 */
#ifndef SS_LOCKD_ANSWER_H
#define SS_LOCKD_ANSWER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "s3store.h"

/* The longest presigned URL lifetime S3 signs (SigV4: 7 days), in seconds. */
#define LK_ANSWER_EXPIRES_MAX (7 * 24 * 3600)
/* Device and repository names: 1..64 of [A-Za-z0-9._-] (PROTOCOL.md). */
#define LK_NAME_MAX 64
/* A lease id as this client accepts it, with its NUL (lockd's are 32 hex digits). */
#define LK_LEASE_ID_SIZE 64
/* How many writers of one sequence an answer may name. */
#define LK_WRITERS_MAX 4

/* The JSON object an answer's bytes hold (the caller's), or NULL when they hold none. */
json_t *lk_answer_load(const char *buf, size_t len);

/* A string member of o, "" when absent or not a string (o may be NULL). */
const char *lk_answer_str(const json_t *o, const char *key);

/* A lease granted or renewed (201/200 of POST lease, POST lease/{id}/renew). */
typedef struct lk_answer_lease {
    char lease_id[LK_LEASE_ID_SIZE]; /* 1..63 lower-case hex digits */
    json_int_t fencing;              /* as lockd gave it: lockd checks it when it comes back */
    int64_t ttl_ms;                  /* > 0, or 0 when the answer gives none */
} lk_answer_lease;

/* 0, or -1 when the answer lacks a well-formed lease_id or fencing_token. */
int lk_answer_parse_lease(const json_t *ans, lk_answer_lease *ret);

/* A presign answer (200 of POST presign); strings borrowed from ans. */
typedef struct lk_answer_presigned {
    const char *url;        /* urls[0].url: an http:// or https:// URL */
    const char *key_prefix; /* LIST: what listed keys start with; "" when absent */
    int64_t reuse_ms;       /* how long a GET URL may be reused: 80% of expires_in, >= 0 */
    int64_t expires_ms;     /* expires_in, >= 0: when the store refuses the URL */
} lk_answer_presigned;

/* 0, or -1 when the answer holds no URL curl should be given (none, or not http(s)). */
int lk_answer_parse_presigned(const json_t *ans, lk_answer_presigned *ret);

/* 0 with *ret_head (200 of GET head), or -1 when there is no head integer >= 0. */
int lk_answer_parse_head(const json_t *ans, uint64_t *ret_head);
/*
 * What GET head says of log/<head>: its ETag (1..79 printable characters)
 * and size (an integer >= 0), else both unknown (etag "", size 0).
 */
void lk_answer_parse_head_object(const json_t *ans, ss_store_stat *ret);

/*
 * GET writers/{seq} (200): the devices lockd gave the PUT URLs of log/<seq>,
 * into out[cap] as "A" or "A or B" ("" when lockd knows none). -1 when
 * "devices" is not an array of at most 4 device names (1..64 of
 * [A-Za-z0-9._-]): a name goes into this device's error messages.
 */
int lk_answer_parse_writers(const json_t *ans, char *out, size_t cap);

/* A refusal (lockd's error object; ans may be NULL): each string one line of
 * printable text, "" when absent, cut to fit. */
typedef struct lk_answer_refusal {
    char code[64];                 /* "lease_held", "stale_lease", ... */
    char message[256];             /* for the user */
    char holder[LK_NAME_MAX + 16]; /* lease_held: the holding device (a longer name is cut) */
    int64_t retry_after_ms;        /* lease_held: >= 0 */
} lk_answer_refusal;

void lk_answer_parse_refusal(const json_t *ans, lk_answer_refusal *ret);

#endif
