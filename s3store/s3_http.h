/*
 * s3_http: the HTTP engine under the s3 and lockd backends. Runs requests on
 * one curl multi handle (kept-alive connections shared by every request of a
 * store), bounded in parallel by the caller, with retries: exponential
 * backoff with full jitter on 5xx, 429, 408, timeouts and resets, never on
 * other 4xx, and an overall deadline per request. Signing is a callback so
 * each attempt is signed afresh (a retry minutes later needs a fresh
 * X-Amz-Date; a presigned URL is simply handed back). Also the S3 XML both
 * backends read: error bodies and ListObjectsV2 pages.
 */
#ifndef SS_S3_HTTP_H
#define SS_S3_HTTP_H

#include <curl/curl.h>
#include <stdint.h>

#include "s3store.h"
#include "ss_buf.h"

#define S3_CODE_MAX 64 /* an S3 error Code, with its NUL: longer ones are cut */
/* A swap's own identity, stored with the object as user metadata: what tells our write
 * from another's of the same bytes after an attempt whose answer was lost (store_s3.c). */
#define S3_WRITE_ID_HEADER "x-amz-meta-s3sync-write"
#define S3_WRITE_ID_MAX 33 /* 32 hex digits and a NUL */

typedef struct s3_http s3_http;
typedef struct s3_req s3_req;

/* Builds the URL and headers of one attempt; returns 0 or an ss_rc with r->err set. */
typedef ss_rc (*s3_sign_fn)(void *ctx, s3_req *r, char **ret_url, struct curl_slist **ret_headers);

struct s3_req {
    /* In: what to do. */
    const char *method;          /* "GET", "PUT", "POST", "HEAD", "DELETE" */
    const char *op;              /* names the request in errors: "PUT", "LIST", ... */
    const char *key;             /* names the object in errors */
    int lockd_api;               /* a call to lockd itself, not to the bucket: its own class */
    const ss_store_reader *body; /* PUT or POST body, or NULL */
    uint64_t body_len;
    ss_store_write_fn sink; /* 2xx response body goes here (NULL: discarded) */
    size_t whole_body;      /* > 0: sink_ctx is an ss_buf holding one document (a listing, a
                               JSON answer) of at most this many bytes (an SS_CAP_*): a retry
                               starts it over instead of resuming, and more is SS_ERR_STORE */
    void *sink_ctx;
    uint64_t range_off, range_len; /* GET range; range_len SS_TO_END for open-ended */
    int use_range;
    s3_sign_fn sign;
    void *sign_ctx;

    /* Out. */
    long status;
    ss_rc rc;
    ss_err err;
    char code[S3_CODE_MAX]; /* the S3 error's Code ("InvalidAccessKeyId"), "" when none */
    unsigned attempts;
    char etag[SS_ETAG_MAX];
    char write_id[S3_WRITE_ID_MAX]; /* S3_WRITE_ID_HEADER's value, "" when none came */
    uint64_t content_length;
    uint64_t range_total; /* the object's size N from "Content-Range: bytes A-B/N" */
    int has_range_total;  /* a Content-Range with a size came */

    /* Engine state. */
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    uint64_t delivered; /* body bytes handed to sink; a retried GET resumes here */
    char *errbody;      /* non-2xx body, at most SS_CAP_ERROR_BODY */
    size_t errbody_len, errbody_cap;
    int errbody_cut; /* the error body went on past SS_CAP_ERROR_BODY: its transfer was cut */
    int over_cap;    /* the document went past whole_body: its transfer was cut */
    int sink_failed;
    int64_t deadline_ms, retry_at_ms;
    int finished;
    s3_req *next; /* engine's waiting and finished lists */
    void *user;   /* caller's tag */
    s3_http *http;
};

ss_rc s3_http_new(const ss_store_opts *opts, ss_store_counters *counts, s3_http **ret, ss_err *err);
void s3_http_free(s3_http *h);

/* Start r (fields zeroed except the In group). */
void s3_http_start(s3_http *h, s3_req *r);
/* Progress; with block, wait until at least one request finishes. Returns the finished ones. */
s3_req *s3_http_step(s3_http *h, int block);
/* Start r and run until it finishes; other requests progress meanwhile (kept on the finished list).
 */
ss_rc s3_http_run(s3_http *h, s3_req *r);
/* s3_http_run, and on failure *err (when not NULL) says why (r->err). */
ss_rc s3_http_call(s3_http *h, s3_req *r, ss_err *err);
/* Release a finished request's engine resources. */
void s3_req_cleanup(s3_req *r);
/* Append the header line "name: value" to *l (the line is wiped after curl
 * copied it: it may carry a credential); SS_ERR_NOMEM leaves *l as it was. */
ss_rc s3_header_add(struct curl_slist **l, const char *name, const char *value);
/* r a GET of [off, off + len) (len SS_TO_END: to the end) into write(ctx). */
void s3_req_get_range(s3_req *r, uint64_t off, uint64_t len, ss_store_write_fn write, void *ctx);
/* What a PUT of len bytes that r made leaves in the store: len and the ETag it answered. */
void s3_req_put_stat(const s3_req *r, uint64_t len, ss_store_stat *ret_stat);

/* Monotonic milliseconds, suspend included (deadlines, backoff, lease and URL lifetimes). */
int64_t s3_now_ms(void);

/* One ListObjectsV2 page, as s3_list_page read it. */
typedef struct s3_page {
    int stopped;      /* the callback asked to stop */
    int truncated;    /* more keys follow this page */
    char *next_token; /* NextContinuationToken of a truncated page, or NULL (malloc'ed) */
    char *last_key;   /* the page's last key under strip, stripped, or NULL (malloc'ed) */
} s3_page;

/*
 * Hand each key of a ListObjectsV2 page that starts with strip to fn,
 * stripped, in order, until fn returns non-zero. SS_ERR_STORE (naming what)
 * when the body is no listing. The caller frees page->next_token and
 * page->last_key, also on failure.
 */
ss_rc s3_list_page(const ss_buf *pg, const char *strip, const char *what, ss_store_list_fn fn,
                   void *ctx, s3_page *page, ss_err *err);

/*
 * Point r at a parallel transfer's body or destination (both backends run
 * ss_xfer ops on this engine): a PUT reads op->buf through mem/rd, a GET
 * writes exactly [op->off, op->off + op->len) through dst. All borrowed.
 */
struct ss_xfer_op;
struct ss_xfer_dst;
struct ss_mem_reader;
void s3_req_bind_xfer(s3_req *r, struct ss_xfer_op *op, struct ss_mem_reader *mem,
                      ss_store_reader *rd, struct ss_xfer_dst *dst);
/*
 * A backend's xfer_step on h: each request that finished goes to done(s, r),
 * which settles its op (ss_xfer_settle and the backend's own judgement),
 * frees the call r belongs to and returns the op; *ret_done lists the ops.
 */
typedef struct ss_xfer_op *(*s3_xfer_done_fn)(ss_store *s, s3_req *r);
void s3_http_xfer_step(ss_store *s, s3_http *h, int block, s3_xfer_done_fn done,
                       struct ss_xfer_op **ret_done);

#endif
