/*
 * ss_buf: a growable byte buffer and the two sinks every layer needs, in
 * the ss_store_write_fn shape: append to an ss_buf, or write all to an fd.
 * At the bottom layer so the store, the engine and the CLI share one copy.
 */
#ifndef SS_BUF_H
#define SS_BUF_H

#include <stddef.h>

typedef struct ss_buf {
    unsigned char *p; /* owned; NUL-terminated past len once anything was appended */
    size_t len, cap;
} ss_buf;

/* 0 on success, -1 when out of memory (buf unchanged). */
int ss_buf_append(ss_buf *b, const void *data, size_t len);
void ss_buf_free(ss_buf *b); /* leaves an empty buffer */

/* Sinks: ctx is an ss_buf * / an int * holding the fd. 0 on success. */
int ss_buf_sink(void *ctx, const void *data, size_t len);
int ss_fd_sink(void *ctx, const void *data, size_t len);

#endif
