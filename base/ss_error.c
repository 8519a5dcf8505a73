/* ss_error: names of the error codes and the detail formatter. */
#include "ss_error.h"

#include <stdio.h>

const char *ss_strerror(ss_rc rc)
{
    switch (rc) {
    case SS_OK: return "success";
    case SS_ERR_NOMEM: return "out of memory";
    case SS_ERR_INVALID: return "invalid argument";
    case SS_ERR_IO: return "local I/O error";
    case SS_ERR_NOT_FOUND: return "not found";
    case SS_ERR_EXISTS: return "already exists";
    case SS_ERR_INTEGRITY: return "integrity check failed";
    case SS_ERR_TEMPORARY: return "temporarily unavailable";
    case SS_ERR_AUTH: return "access denied";
    case SS_ERR_STORE: return "store error";
    case SS_ERR_PASSPHRASE: return "wrong passphrase";
    case SS_ERR_CONFLICT: return "conflict";
    case SS_ERR_REVOKED: return "device revoked";
    case SS_ERR_EPOCH: return "key epoch not held";
    case SS_ERR_CHANGED: return "changed since read";
    }
    return "unknown error";
}

ss_rc ss_vfail(ss_err *err, ss_rc rc, const char *fmt, va_list ap)
{
    if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return rc;
}

ss_rc ss_fail(ss_err *err, ss_rc rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ss_vfail(err, rc, fmt, ap);
    va_end(ap);
    return rc;
}
