/*
 * sigv4: AWS Signature Version 4, header and query (presigned) signing.
 *
 * Pure functions: no I/O, no clock (the caller passes `now`, which is the
 * seam the tests use to reproduce the AWS vectors), hashes from libsodium.
 * S3 rules: the path is signed as sent (never normalised), each byte
 * outside A-Za-z0-9-_.~ percent-encoded once, '/' kept.
 */
#ifndef SS_SIGV4_H
#define SS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "ss_error.h"

#define SS_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"
#define SS_SIGV4_MAX_EXPIRES 604800 /* 7 days, S3's limit for presigned URLs */

typedef struct ss_sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL when none; signed as x-amz-security-token */
    const char *region;        /* e.g. "us-east-1" */
    const char *service;       /* "s3" */
} ss_sigv4_creds;

typedef struct ss_sigv4_header {
    const char *name; /* any case; signed lower-cased */
    const char *value;
} ss_sigv4_header;

typedef struct ss_sigv4_req {
    const char *method; /* "GET", "PUT", ... */
    const char *host;   /* Host header value, with ":port" when not the default */
    const char *path;   /* the path as sent on the wire, already URI-encoded */
    const char *query;  /* the query as sent (without '?'), or NULL */
    const ss_sigv4_header
        *headers; /* further headers to sign, besides host and x-amz-* added here */
    size_t n_headers;
    const char *payload_hash; /* lower-case hex SHA-256 of the body, or SS_SIGV4_UNSIGNED */
    time_t now;               /* signing time, UTC */
} ss_sigv4_req;

/* What a signature is made of; every string owned by the struct (ss_sigv4_parts_clear). */
typedef struct ss_sigv4_parts {
    char *canonical_request;
    char *string_to_sign;
    char signature[65];  /* lower-case hex */
    char amz_date[17];   /* YYYYMMDDTHHMMSSZ */
    char *authorization; /* header signing: the Authorization header value */
    char *query;         /* query signing: the complete query string to send, signature last */
} ss_sigv4_parts;

/*
 * Header signing. The caller sends `X-Amz-Date: parts.amz_date`,
 * `Authorization: parts.authorization` and, with a session token,
 * `X-Amz-Security-Token`. Cleared on entry; filled only on success.
 */
ss_rc ss_sigv4_sign(const ss_sigv4_creds *creds, const ss_sigv4_req *req, ss_sigv4_parts *ret_parts,
                    ss_err *err);

/*
 * Query signing for a presigned URL valid `expires` seconds (1..7 days).
 * req->headers are the extra signed headers the URL's user must send
 * verbatim (e.g. if-none-match: *). payload_hash is normally SS_SIGV4_UNSIGNED.
 */
ss_rc ss_sigv4_presign(const ss_sigv4_creds *creds, const ss_sigv4_req *req, unsigned expires,
                       ss_sigv4_parts *ret_parts, ss_err *err);

void ss_sigv4_parts_clear(ss_sigv4_parts *parts);

/*
 * Percent-encode s for S3: every byte outside A-Za-z0-9-_.~ as %XY (upper
 * hex); '/' kept when keep_slash. Returns a malloc'ed string (caller owns) or NULL.
 */
char *ss_sigv4_uri_encode(const char *s, int keep_slash);

/* Lower-case hex SHA-256 of buf into out[65]. */
void ss_sigv4_sha256_hex(const void *buf, size_t len, char out[65]);

#endif
