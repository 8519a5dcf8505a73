/*
 * ss_error: the one error enum every s3sync module returns, and the detail
 * buffer that names what failed.
 *
 * Lives at the bottom layer (s3store/) because core/, lockd/ and cli/ all
 * link it. 0 is success; new codes go last so numbers stay stable; the CLI
 * maps codes to exit statuses (cli/ owns that table, not this file).
 */
#ifndef SS_ERROR_H
#define SS_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum ss_rc {
    SS_OK = 0,
    SS_ERR_NOMEM,      /* allocation failed */
    SS_ERR_INVALID,    /* bad argument, URL or configuration: the caller's fault */
    SS_ERR_IO,         /* local file system error */
    SS_ERR_NOT_FOUND,  /* object, key or path does not exist */
    SS_ERR_EXISTS,     /* create-only write found the key taken (HTTP 412) */
    SS_ERR_INTEGRITY,  /* verification failed: corruption or tampering */
    SS_ERR_TEMPORARY,  /* unreachable, timed out, throttled: try again later */
    SS_ERR_AUTH,       /* credentials or signature refused (401/403) */
    SS_ERR_STORE,      /* the store answered with a permanent error */
    SS_ERR_PASSPHRASE, /* no key file opens with this passphrase */
    SS_ERR_CONFLICT,   /* lease held by another, stale fencing token (409) */
    SS_ERR_REVOKED,    /* this device was revoked: the repository refuses what it signs */
    SS_ERR_EPOCH,      /* sealed under a key epoch this device does not hold (yet) */
    SS_ERR_CHANGED,    /* compare-and-swap lost: the object is not the one read (HTTP 412) */
} ss_rc;

/* Caller-provided detail: one line naming the object, path or key. */
typedef struct ss_err {
    char msg[512];
} ss_err;

/* Static name of a code, e.g. "integrity check failed". Never NULL. */
const char *ss_strerror(ss_rc rc);

/*
 * Fill err (may be NULL) with a formatted detail and return rc, so a failure
 * reads `return ss_fail(err, SS_ERR_IO, "open %s: %s", path, strerror(errno));`.
 */
ss_rc ss_fail(ss_err *err, ss_rc rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
ss_rc ss_vfail(ss_err *err, ss_rc rc, const char *fmt, va_list ap);

/* A warning that does not fail the call (a skipped special file, a conflict made). */
typedef void (*ss_warn_fn)(void *ctx, const char *msg);

/* Clear the detail; functions call this on entry only where they may succeed silently. */
static inline void ss_err_clear(ss_err *err)
{
    if (err) err->msg[0] = '\0';
}

#endif
