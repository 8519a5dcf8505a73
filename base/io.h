/*
 * io: the byte source and sink every layer passes along: a frame writes
 * to a sink, a transaction reader reads from a source, and the store
 * uploads from one and downloads into the other (s3store.h names them
 * ss_store_reader and ss_store_write_fn).
 */
#ifndef SS_IO_H
#define SS_IO_H

#include <stddef.h>

/* A source, read sequentially; rewind lets a retry start again. */
typedef struct ss_reader {
    /* Returns bytes read (0 at end) or -1 on error. */
    long (*read)(void *ctx, void *buf, size_t len);
    int (*rewind)(void *ctx); /* 0 on success */
    void *ctx;
} ss_reader;

/* A sink; returns 0 to continue, non-zero to abort. */
typedef int (*ss_write_fn)(void *ctx, const void *buf, size_t len);

/* A sink with its context: what a frame or transaction writer writes to. */
typedef struct ss_sink {
    ss_write_fn write;
    void *ctx;
} ss_sink;

#endif
