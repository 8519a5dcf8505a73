/*
 * ss_buf: a growable byte buffer and the two sinks every layer needs, in
 * the ss_store_write_fn shape: append to an ss_buf, or write all to an fd;
 * and the reading of a small file that holds a secret.
 * At the bottom layer so the store, the engine and the CLI share one copy.
 */
#ifndef SS_BUF_H
#define SS_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "ss_error.h"

typedef struct ss_buf {
    unsigned char *p; /* owned; NUL-terminated past len once anything was appended */
    size_t len, cap;
} ss_buf;

/* 0 on success, -1 when out of memory (buf unchanged). */
int ss_buf_append(ss_buf *b, const void *data, size_t len);
/* printf onto the end of b: 0 on success, -1 on a bad format or out of memory (b unchanged). */
int ss_buf_vprintf(ss_buf *b, const char *fmt, va_list ap);
int ss_buf_printf(ss_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ss_buf_free(ss_buf *b); /* leaves an empty buffer */

/* Sinks: ctx is an ss_buf * / an int * holding the fd. 0 on success. */
int ss_buf_sink(void *ctx, const void *data, size_t len);
int ss_fd_sink(void *ctx, const void *data, size_t len);

/*
 * A file holding a secret (a device token, lockd's config and TLS key): at
 * most max bytes of path, NUL-terminated, in sodium_malloc'ed memory (*ret;
 * locked where the system lets it; sodium_free wipes it), read with read(2)
 * so no stdio buffer keeps a copy. SS_ERR_IO naming path when it cannot be
 * read or is no regular file (a fifo is never waited on), SS_ERR_INVALID when it holds more than
 * max bytes.
 */
ss_rc ss_buf_read_secret(const char *path, size_t max, char **ret, size_t *ret_len, ss_err *err);

#endif
