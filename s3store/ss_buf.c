/* ss_buf: growable buffer and write sinks (see ss_buf.h). */
#include "ss_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ss_buf_append(ss_buf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len + 1) {
            if (cap > (size_t)-1 / 2) return -1;
            cap *= 2;
        }
        unsigned char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

void ss_buf_free(ss_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int ss_buf_sink(void *ctx, const void *data, size_t len)
{
    return ss_buf_append(ctx, data, len);
}

int ss_fd_sink(void *ctx, const void *data, size_t len)
{
    int fd = *(const int *)ctx;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
