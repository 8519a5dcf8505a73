/*
 * store_source: the source a store asks first for GETs and tells what it
 * moved (ss_store_set_source: peer assist's decorator, docs/PEERS.md). The
 * backends never see it: a GET the source delivers makes no request.
 */
#include "store_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ss_store_set_source(ss_store *store, const ss_store_source *src)
{
    if (src)
        store->source = *src;
    else
        memset(&store->source, 0, sizeof store->source);
}

uint64_t ss_store_bytes_source(const ss_store *store)
{
    return store->bytes_source;
}

typedef struct counted {
    ss_store_write_fn write;
    void *ctx;
    uint64_t bytes;
} counted;

static int count_write(void *ctx, const void *buf, size_t len)
{
    counted *c = ctx;
    c->bytes += len;
    return c->write(c->ctx, buf, len);
}

int ss_source_get(ss_store *s, const char *key, uint64_t off, uint64_t len, ss_store_write_fn write,
                  void *ctx)
{
    counted c = {write, ctx, 0};
    if (!s->source.get) return 0;
    if (s->source.get(s->source.ctx, key, off, len, count_write, &c)) return 0;
    s->bytes_source += c.bytes;
    return 1;
}

void ss_source_note(ss_store *s, const char *key, const void *buf, size_t len, int put)
{
    if (s->source.note) s->source.note(s->source.ctx, key, buf, len, put);
}

#define NOTE_FD_MAX (64u << 20) /* what a put of a file is read back for, at most */

void ss_source_note_fd(ss_store *s, const char *key, int fd, uint64_t off, uint64_t len)
{
    uint8_t *buf;
    size_t got = 0;
    if (!s->source.note || len > NOTE_FD_MAX) return;
    buf = malloc(len ? (size_t)len : 1);
    if (!buf) return;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, (size_t)len - got, (off_t)(off + got));
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got == len) s->source.note(s->source.ctx, key, buf, got, 1);
    free(buf);
}
