/* dirmodes: directory modes after their contents, and directories opened meanwhile (dirmodes.h). */
#include "dirmodes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "fsio.h"
#include "path.h"

#define JOURNAL_MAX (16u << 20)       /* depth x path: far more than a real chain holds */
#define PASS_BITS (S_IRUSR | S_IXUSR) /* a directory on the way to a write (fsio opens it) */

typedef struct held {
    char *path;
    uint32_t mode; /* to put back when the walk leaves */
    uint32_t now;  /* what it has meanwhile; equal to mode: nothing to put back */
} held;

struct ss_dirmodes {
    int root_fd;
    char *journal; /* NULL: none */
    int jfd;       /* -1 until the first record */
    held *v;       /* a chain: each an ancestor of the next */
    size_t n, cap;
    char *parent; /* the last parent enter found open; reset whenever a mode is put back */
};

ss_rc ss_dirmodes_new(int root_fd, const char *journal, ss_dirmodes **ret_dm, ss_err *err)
{
    ss_dirmodes *dm = calloc(1, sizeof *dm);
    *ret_dm = NULL;
    if (!dm) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    dm->root_fd = root_fd;
    dm->jfd = -1;
    if (journal && !(dm->journal = strdup(journal))) {
        free(dm);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    *ret_dm = dm;
    return SS_OK;
}

/* path is dir itself or below it. */
static int at_or_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (!path[n] || path[n] == '/');
}

static ss_rc io_fail(ss_err *err, const char *what, const char *path)
{
    return ss_fail(err, SS_ERR_IO, "%s %s: %s", what, path, strerror(errno));
}

/* The journal holds exactly the held directories whose modes are to be put back. */
static ss_rc write_journal(ss_dirmodes *dm, int sync, ss_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = NULL;
    ss_rc rc = SS_OK;
    if (!dm->journal) return SS_OK;
    if (dm->jfd < 0) {
        dm->jfd = open(dm->journal, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (dm->jfd < 0) return io_fail(err, "write", dm->journal);
    }
    m = open_memstream(&buf, &len);
    if (!m) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < dm->n; i++)
        if (dm->v[i].now != dm->v[i].mode)
            fprintf(m, "%o %o %s%c", dm->v[i].mode, dm->v[i].now, dm->v[i].path, 0);
    if (fclose(m)) {
        free(buf);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (ss_fs_pwrite_all(dm->jfd, buf, len, 0) || ftruncate(dm->jfd, (off_t)len) ||
        (sync && fdatasync(dm->jfd)))
        rc = io_fail(err, "write", dm->journal);
    free(buf);
    return rc;
}

/* Give h its mode back, unless the directory is gone or someone else changed its mode since. */
static ss_rc put_back(ss_dirmodes *dm, const held *h, ss_err *err)
{
    uint32_t cur = 0;
    int fd = -1;
    ss_rc rc;
    if (h->now == h->mode) return SS_OK;
    rc = ss_fs_dir_open(dm->root_fd, h->path, &fd, &cur, err);
    if (rc == SS_ERR_NOT_FOUND) return SS_OK;
    if (rc) return rc;
    if (cur == h->now) rc = ss_fs_dir_chmod(fd, h->path, h->mode, err);
    close(fd);
    return rc;
}

/* Pop the deepest held directory, its mode put back. */
static ss_rc pop(ss_dirmodes *dm, ss_err *err)
{
    held *h = &dm->v[--dm->n];
    int journaled = h->now != h->mode;
    ss_rc rc = put_back(dm, h, err);
    free(h->path);
    free(dm->parent);
    dm->parent = NULL;
    if (rc || !journaled) return rc;
    return write_journal(dm, 0, err); /* a stale record only sets the same mode again */
}

ss_rc ss_dirmodes_leave(ss_dirmodes *dm, const char *path, ss_err *err)
{
    while (dm->n && !at_or_under(path, dm->v[dm->n - 1].path)) {
        ss_rc rc = pop(dm, err);
        if (rc) return rc;
    }
    return SS_OK;
}

int ss_dirmodes_closes(const ss_dirmodes *dm, const char *path)
{
    for (size_t i = dm->n; i-- > 0 && !at_or_under(path, dm->v[i].path);)
        if (dm->v[i].now != dm->v[i].mode) return 1;
    return 0;
}

static held *find(ss_dirmodes *dm, const char *path)
{
    for (size_t i = dm->n; i-- > 0;)
        if (!strcmp(dm->v[i].path, path)) return &dm->v[i];
    return NULL;
}

/* A new held entry for path, in chain order (after its ancestors, before its descendants). */
static ss_rc add(ss_dirmodes *dm, const char *path, uint32_t mode, held **ret, ss_err *err)
{
    size_t at = 0;
    char *copy = strdup(path);
    *ret = NULL;
    if (!copy) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (SS_ARRAY_GROW(dm->v, dm->n + 1, dm->cap)) {
        free(copy);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    while (at < dm->n && !at_or_under(dm->v[at].path, path))
        at++;
    memmove(&dm->v[at + 1], &dm->v[at], (dm->n - at) * sizeof *dm->v);
    dm->v[at] = (held){copy, mode, mode};
    dm->n++;
    *ret = &dm->v[at];
    return SS_OK;
}

/* Directory path (open as fd, mode cur) gets the owner bits need, its mode journaled first. */
static ss_rc open_fd(ss_dirmodes *dm, const char *path, int fd, uint32_t cur, uint32_t need,
                     ss_err *err)
{
    held *h = find(dm, path);
    ss_rc rc = SS_OK;
    if ((cur & need) == need) return SS_OK;
    if (!h) rc = add(dm, path, cur, &h, err);
    if (rc) return rc;
    h->now = cur | need;
    rc = write_journal(dm, 1, err);
    if (rc) goto fail;
    rc = ss_fs_dir_chmod(fd, path, h->now, err);
    if (rc) goto fail;
    return SS_OK;
fail:
    h->now = cur; /* nothing changed: nothing to put back */
    return rc;
}

/* open, without leaving anything first (enter opens a chain of ancestors). */
static ss_rc open_one(ss_dirmodes *dm, const char *path, uint32_t need, ss_err *err)
{
    uint32_t cur = 0;
    int fd = -1;
    ss_rc rc = ss_fs_dir_open(dm->root_fd, path, &fd, &cur, err);
    if (rc) return rc;
    rc = open_fd(dm, path, fd, cur, need, err);
    close(fd);
    return rc;
}

ss_rc ss_dirmodes_open(ss_dirmodes *dm, const char *path, uint32_t need, ss_err *err)
{
    ss_rc rc = ss_dirmodes_leave(dm, path, err);
    if (rc) return rc;
    return open_one(dm, path, need, err);
}

ss_rc ss_dirmodes_enter(ss_dirmodes *dm, const char *path, ss_err *err)
{
    const char *slash = strrchr(path, '/');
    size_t plen = slash ? (size_t)(slash - path) : 0;
    char *parent = NULL;
    ss_rc rc = ss_dirmodes_leave(dm, path, err);
    if (rc || !slash) return rc; /* the folder's root is the user's */
    if (dm->parent && strlen(dm->parent) == plen && !strncmp(dm->parent, path, plen)) return SS_OK;
    parent = strndup(path, plen);
    if (!parent) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    for (char *s = parent;; s++) {
        int end = !*s;
        if (*s && *s != '/') continue;
        *s = '\0';
        rc = open_one(dm, parent, end ? S_IRWXU : PASS_BITS, err);
        if (end || rc) break;
        *s = '/';
    }
    if (rc == SS_ERR_NOT_FOUND) { /* not there yet: the write makes it (0755) */
        rc = SS_OK;
        goto done;
    }
    if (rc) goto done;
    free(dm->parent);
    dm->parent = parent;
    parent = NULL;
done:
    free(parent);
    return rc;
}

ss_rc ss_dirmodes_mkdir(ss_dirmodes *dm, const char *path, uint32_t mode, int *ret_made,
                        ss_err *err)
{
    uint32_t open_mode = mode | S_IRWXU;
    held *h = NULL;
    ss_rc rc = ss_dirmodes_leave(dm, path, err);
    if (rc) return rc;
    h = find(dm, path);
    if (!h && open_mode != mode) rc = add(dm, path, mode, &h, err);
    if (rc) return rc;
    if (h) {
        h->mode = mode;
        h->now = open_mode;
        rc = write_journal(dm, 1, err);
        if (rc) return rc;
    }
    return ss_fs_mkdir(dm->root_fd, path, open_mode, ret_made, err);
}

ss_rc ss_dirmodes_finish(ss_dirmodes *dm, ss_err *err)
{
    ss_rc rc = SS_OK;
    while (dm->n) { /* every one, even after a failure: the first is reported */
        ss_rc r = pop(dm, rc ? NULL : err);
        if (r && !rc) rc = r;
    }
    if (dm->jfd >= 0) {
        close(dm->jfd);
        dm->jfd = -1;
        unlink(dm->journal);
    }
    return rc;
}

void ss_dirmodes_free(ss_dirmodes *dm)
{
    if (!dm) return;
    ss_dirmodes_finish(dm, NULL);
    free(dm->v);
    free(dm->parent);
    free(dm->journal);
    free(dm);
}

/* --- recovery ------------------------------------------------------------------------ */

static ss_rc read_journal(const char *journal, char **ret_buf, size_t *ret_len, ss_err *err)
{
    struct stat st;
    char *buf = NULL;
    ssize_t got;
    ss_rc rc = SS_OK;
    int fd = open(journal, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    *ret_buf = NULL;
    *ret_len = 0;
    if (fd < 0 && errno == ENOENT) return SS_OK;
    if (fd < 0) return io_fail(err, "read", journal);
    if (fstat(fd, &st)) {
        rc = io_fail(err, "read", journal);
    } else if (!S_ISREG(st.st_mode) || st.st_size > JOURNAL_MAX) {
        rc = ss_fail(err, SS_ERR_IO, "%s: not a journal of directory modes", journal);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
    } else if ((got = pread(fd, buf, (size_t)st.st_size, 0)) != (ssize_t)st.st_size) {
        rc = got < 0 ? io_fail(err, "read", journal)
                     : ss_fail(err, SS_ERR_IO, "%s: short read", journal);
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *ret_buf = buf;
    *ret_len = (size_t)st.st_size;
    return SS_OK;
}

/* An octal mode at *p, followed by a space; *p moves past it. */
static int parse_mode(const char **p, const char *end, uint32_t *ret_mode)
{
    uint32_t m = 0;
    const char *q = *p;
    for (; q < end && *q >= '0' && *q <= '7' && q - *p < 5; q++)
        m = m * 8 + (uint32_t)(*q - '0');
    if (q == *p || q == end || *q != ' ' || m > 07777) return 0;
    *ret_mode = m;
    *p = q + 1;
    return 1;
}

/* The record ending right before end ("MODE NOW PATH\0"), and where it starts. */
static int last_record(const char *buf, size_t end, held *ret, size_t *ret_start)
{
    size_t start = end - 1; /* buf[end - 1] is the record's NUL */
    const char *p, *stop = buf + end - 1;
    while (start && buf[start - 1])
        start--;
    p = buf + start;
    if (!parse_mode(&p, stop, &ret->mode) || !parse_mode(&p, stop, &ret->now) ||
        ss_path_validate(p, (size_t)(stop - p), NULL))
        return 0;
    ret->path = (char *)p;
    *ret_start = start;
    return 1;
}

/*
 * A killed write leaves its temp file (fsio.h); the scan removes those it
 * meets, but not in a directory its owner cannot write once its mode is
 * back: those go first, while it is still open.
 */
static void remove_temps(int root_fd, const char *path)
{
    uint32_t cur = 0;
    int fd = -1, rd;
    struct dirent *e;
    DIR *d;
    if (ss_fs_dir_open(root_fd, path, &fd, &cur, NULL)) return;
    rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(fd);
    if (rd < 0) return;
    d = fdopendir(rd);
    if (!d) {
        close(rd);
        return;
    }
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, SS_FS_TMP_PREFIX, strlen(SS_FS_TMP_PREFIX)))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

ss_rc ss_dirmodes_recover(int root_fd, const char *journal, ss_err *err)
{
    char *buf = NULL;
    size_t end = 0;
    ss_rc rc = read_journal(journal, &buf, &end, err);
    if (rc || !buf) return rc;
    if (end && buf[end - 1]) {
        rc = ss_fail(err, SS_ERR_IO, "%s: not a journal of directory modes", journal);
        goto done;
    }
    while (end) { /* the last record is the deepest directory */
        ss_dirmodes dm = {.root_fd = root_fd};
        held h;
        size_t start = 0;
        if (!last_record(buf, end, &h, &start)) {
            rc = ss_fail(err, SS_ERR_IO, "%s: not a journal of directory modes", journal);
            goto done;
        }
        remove_temps(root_fd, h.path);
        rc = put_back(&dm, &h, err);
        if (rc) goto done;
        end = start;
    }
done:
    free(buf);
    unlink(journal); /* once: a failure is told, not met again by every command */
    return rc;
}
