/* ss_buf: growable buffer, write sinks and secret files (see ss_buf.h). */
#include "ss_buf.h"

#include "array.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ss_buf_append(ss_buf *b, const void *data, size_t len)
{
    if (len >= SIZE_MAX - b->len) return -1;
    if (SS_ARRAY_GROW(b->p, b->len + len + 1, b->cap)) return -1;
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int ss_buf_vprintf(ss_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    size_t room = b->p ? b->cap - b->len : 0;
    int n, rc = -1;
    va_copy(again, ap);
    n = vsnprintf(room ? (char *)b->p + b->len : NULL, room, fmt, ap);
    if (n < 0) goto done;
    if ((size_t)n >= room) { /* did not fit: grow to the size it told, print again */
        if (SS_ARRAY_GROW(b->p, b->len + (size_t)n + 1, b->cap)) goto done;
        vsnprintf((char *)b->p + b->len, b->cap - b->len, fmt, again);
    }
    b->len += (size_t)n;
    rc = 0;
done:
    if (rc && b->p) b->p[b->len] = '\0'; /* a cut-off print leaves the old text whole */
    va_end(again);
    return rc;
}

int ss_buf_printf(ss_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = ss_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
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

ss_rc ss_buf_read_secret(const char *path, size_t max, char **ret, size_t *ret_len, ss_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    ssize_t n = 1;
    int fd = -1;
    struct stat st;
    *ret = NULL;
    *ret_len = 0;
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_NOMEM, "libsodium initialisation failed");
    /* O_NONBLOCK: a fifo put where the file should be (inside a synced folder, by
     * another device) must not hang the command; only a regular file is read. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ss_fail(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ss_fail(err, SS_ERR_IO, "%s: not a regular file", path);
    }
    if (!(buf = sodium_malloc(max + 1))) {
        close(fd);
        return ss_fail(err, SS_ERR_NOMEM, "%s: out of memory", path);
    }
    /* One byte past max tells a file that is too long. */
    while (len <= max && (n = read(fd, buf + len, max + 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (n < 0 || len > max) {
        ss_rc rc = n < 0 ? ss_fail(err, SS_ERR_IO, "%s: %s", path, strerror(errno))
                         : ss_fail(err, SS_ERR_INVALID, "%s: over %zu bytes", path, max);
        sodium_free(buf); /* wipes */
        return rc;
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return SS_OK;
}
