/*
 * fsio: symlink-safe, atomic changes to the synced folder (see fsio.h).
 *
 * The directory cache (ss_fs_cache_begin): while apply runs, the parent
 * directory of each path is opened once and its descriptor kept, keyed by
 * its path relative to the root, at most SS_FS_DIRS_MAX of them (the least
 * recently used closed first), so writing 100 files into one directory
 * resolves it once, not three times per file. Why that keeps invariant 6:
 *   - a descriptor enters the cache only as resolved above (openat2 with
 *     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or the O_NOFOLLOW walk): the
 *     directory it names was beneath the root, reached through no symlink;
 *   - a descriptor stays bound to that directory's inode, whatever happens
 *     to the path later. A user who swaps the directory for a symlink to
 *     elsewhere moves the inode away (or removes it): the next file goes
 *     into the directory we resolved, wherever it now is, never through the
 *     symlink, which nothing here reads again. That is what an uncached
 *     write does too when the swap lands between its parent's open and its
 *     create: the cache only widens that window. A removed directory (its
 *     link count 0: an fstat, no path walk) is dropped and the path
 *     resolved afresh, as it was without the cache. The per-file calls of a
 *     pull (ss_fs_lstat, the temp's create) do not fstat the directory
 *     first: every call beneath a removed directory fails with ENOENT, so
 *     they look only then, and try once more on a fresh resolve; the others
 *     (a remove, for which a missing name is fine) look at each use;
 *   - what the engine itself does to a directory (remove, rename, replace)
 *     drops its entry and every entry below it before the call returns.
 * A descriptor lent to a caller (an ss_atomic, from begin to commit) is
 * pinned: not closed by eviction until it is given back.
 */
#include "fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "fsio_impl.h"

ss_rc ss_fs_errno_fail(ss_err *err, const char *what, const char *path)
{
    int e = errno;
    return ss_fail(err, e == ENOMEM ? SS_ERR_NOMEM : SS_ERR_IO, "%s %s: %s", what, path,
                   strerror(e));
}

/* --- resolving beneath the root ------------------------------------------------------ */

/*
 * openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: the kernel refuses
 * a symlink or ".." anywhere in path in one call. -1 with errno ENOSYS when
 * this kernel (or a seccomp filter) lacks it, or when the test seam
 * S3SYNC_FAULT=no-openat2 asks for the walk below instead.
 */
static int open_beneath(int root_fd, const char *path, int flags)
{
    static int missing;
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    long fd;
    if (missing || ss_fault_on("no-openat2")) {
        errno = ENOSYS;
        return -1;
    }
    do
        fd = syscall(SYS_openat2, root_fd, path, &how, sizeof how);
    while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    if (fd < 0 && errno == ENOSYS) missing = 1;
    if (fd < 0 && errno == EPERM) errno = ENOSYS; /* a seccomp filter's answer: the walk tells */
    return (int)fd;
}

/* Open directory "path"'s first n bytes beneath root_fd by openat2; -1 (errno) when it cannot. */
static int open_dir_beneath(int root_fd, const char *path, size_t n)
{
    char *dir = strndup(path, n);
    int fd;
    if (!dir) return -1;
    fd = open_beneath(root_fd, dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    return fd;
}

/*
 * Resolving path failed (errno; fd, when >= 0, is closed): a symlink or a
 * file on the way is refused by name. The code says why, errno is kept for
 * callers that word their own message.
 */
static ss_rc resolve_fail(ss_err *err, int fd, const char *path)
{
    int e = errno;
    ss_rc rc;
    if (fd >= 0) close(fd);
    if (e == ELOOP || e == EXDEV || e == ENOTDIR)
        rc = ss_fail(err, SS_ERR_IO, "refusing %s: it or a parent is a symlink (or no directory)",
                     path);
    else
        rc = ss_fail(err,
                     e == ENOENT   ? SS_ERR_NOT_FOUND
                     : e == ENOMEM ? SS_ERR_NOMEM
                                   : SS_ERR_IO,
                     "open %s: %s", path, strerror(e));
    errno = e;
    return rc;
}

/* The walk: one component at a time with O_NOFOLLOW, making missing ones when mkdirs. */
static ss_rc walk_parent(int root_fd, const char *path, int mkdirs, int *ret_dirfd,
                         const char **ret_base, ss_err *err)
{
    int fd = dup(root_fd);
    const char *p = path;
    if (fd < 0) return ss_fs_errno_fail(err, "open folder for", path);
    for (const char *slash; (slash = strchr(p, '/')); p = slash + 1) {
        char name[256];
        size_t n = (size_t)(slash - p);
        int next;
        if (n == 0 || n >= sizeof name) {
            close(fd);
            return ss_fail(err, SS_ERR_INVALID, "bad path %s", path);
        }
        memcpy(name, p, n);
        name[n] = '\0';
        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && mkdirs) {
            if (mkdirat(fd, name, 0755) && errno != EEXIST) return resolve_fail(err, fd, path);
            next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) return resolve_fail(err, fd, path);
        close(fd);
        fd = next;
    }
    *ret_dirfd = fd;
    *ret_base = p;
    return SS_OK;
}

ss_rc ss_fs_parent(int root_fd, const char *path, int mkdirs, int *ret_dirfd, const char **ret_base,
                   ss_err *err)
{
    const char *slash = strrchr(path, '/');
    int fd;
    *ret_dirfd = -1;
    *ret_base = NULL;
    if (!slash) return walk_parent(root_fd, path, 0, ret_dirfd, ret_base, err);
    fd = open_dir_beneath(root_fd, path, (size_t)(slash - path));
    if (fd < 0 && (errno == ENOSYS || (errno == ENOENT && mkdirs)))
        return walk_parent(root_fd, path, mkdirs, ret_dirfd, ret_base, err);
    if (fd < 0) return resolve_fail(err, -1, path);
    *ret_dirfd = fd;
    *ret_base = slash + 1;
    return SS_OK;
}

/* --- the directory cache ------------------------------------------------------------- */

typedef struct dir_slot {
    char *path; /* relative to the root; NULL: forgotten, fd kept only while pinned */
    int fd;     /* -1: free */
    unsigned pins;
    uint64_t used; /* the tick of its last use: least recent goes first */
} dir_slot;

static struct {
    int root_fd; /* -1: off */
    pid_t pid;   /* ours, for temp names */
    uint64_t tick;
    dir_slot slot[SS_FS_DIRS_MAX];
} g_dirs = {.root_fd = -1};

static void slot_close(dir_slot *d)
{
    if (d->fd >= 0) close(d->fd);
    free(d->path);
    *d = (dir_slot){.fd = -1};
}

void ss_fs_cache_begin(int root_fd)
{
    ss_fs_cache_end();
    for (size_t i = 0; i < SS_FS_DIRS_MAX; i++)
        g_dirs.slot[i] = (dir_slot){.fd = -1};
    g_dirs.root_fd = root_fd;
    g_dirs.pid = getpid();
}

void ss_fs_cache_end(void)
{
    if (g_dirs.root_fd < 0) return;
    for (size_t i = 0; i < SS_FS_DIRS_MAX; i++)
        slot_close(&g_dirs.slot[i]);
    g_dirs.root_fd = -1;
}

/* The engine changed path: it and every directory below it leave the cache. */
static void forget(const char *path)
{
    size_t n = strlen(path);
    if (g_dirs.root_fd < 0) return;
    for (size_t i = 0; i < SS_FS_DIRS_MAX; i++) {
        dir_slot *d = &g_dirs.slot[i];
        if (!d->path || strncmp(d->path, path, n) || (d->path[n] && d->path[n] != '/')) continue;
        free(d->path);
        d->path = NULL; /* never found again */
        if (!d->pins) slot_close(d);
    }
}

/* A slot for a new entry: a free one, else the least recently used unpinned one, closed. */
static dir_slot *slot_for_new(void)
{
    dir_slot *best = NULL;
    for (size_t i = 0; i < SS_FS_DIRS_MAX; i++) {
        dir_slot *d = &g_dirs.slot[i];
        if (d->fd < 0) return d;
        if (!d->pins && (!best || d->used < best->used)) best = d;
    }
    if (best) slot_close(best);
    return best;
}

/* d's directory was removed behind our back: d leaves the cache (closed unless pinned), 1. */
static int slot_gone(dir_slot *d)
{
    struct stat st;
    char *gone = d->path;
    if (!fstat(d->fd, &st) && st.st_nlink > 0) return 0;
    d->path = NULL;
    if (!d->pins) slot_close(d);
    forget(gone);
    free(gone);
    return 1;
}

/*
 * The cached descriptor of directory path[0..n), or NULL. check: only if
 * still linked somewhere (else the caller retries on ENOENT: dir_gone).
 */
static dir_slot *lookup(const char *path, size_t n, int check)
{
    for (size_t i = 0; i < SS_FS_DIRS_MAX; i++) {
        dir_slot *d = &g_dirs.slot[i];
        if (!d->path || strlen(d->path) != n || memcmp(d->path, path, n)) continue;
        if (check && slot_gone(d)) return NULL;
        d->used = ++g_dirs.tick;
        return d;
    }
    return NULL;
}

/*
 * A call through dirfd failed with errno ENOENT: 1 when dirfd is a cached
 * directory since removed (now out of the cache: resolve again and retry).
 */
static int dir_gone(int dirfd, int owned)
{
    int e = errno, gone = 0;
    for (size_t i = 0; e == ENOENT && !owned && i < SS_FS_DIRS_MAX; i++) {
        dir_slot *d = &g_dirs.slot[i];
        if (d->fd != dirfd || !d->path) continue;
        gone = slot_gone(d);
        break;
    }
    errno = e;
    return gone;
}

/*
 * path's parent as ss_fs_parent opens it, from the cache while it is on for
 * root_fd: then *ret_owned is 0 and the descriptor is the cache's (the
 * root's own for a top-level name), else 1 and the caller closes it. check:
 * a cached one is fstat'ed first; without, the caller asks dir_gone on ENOENT.
 */
static ss_rc parent_at(int root_fd, const char *path, int mkdirs, int check, int *ret_dirfd,
                       const char **ret_base, int *ret_owned, ss_err *err)
{
    const char *slash = strrchr(path, '/');
    dir_slot *d = NULL;
    size_t n;
    ss_rc rc;
    *ret_owned = 1;
    if (g_dirs.root_fd < 0 || g_dirs.root_fd != root_fd)
        return ss_fs_parent(root_fd, path, mkdirs, ret_dirfd, ret_base, err);
    if (!slash) {
        *ret_dirfd = root_fd;
        *ret_base = path;
        *ret_owned = 0;
        return SS_OK;
    }
    n = (size_t)(slash - path);
    d = lookup(path, n, check);
    if (!d) {
        rc = ss_fs_parent(root_fd, path, mkdirs, ret_dirfd, ret_base, err);
        if (rc) return rc;
        d = slot_for_new();
        if (!d || !(d->path = strndup(path, n))) return SS_OK; /* uncached: still the caller's */
        d->fd = *ret_dirfd;
        d->used = ++g_dirs.tick;
    }
    *ret_dirfd = d->fd;
    *ret_base = slash + 1;
    *ret_owned = 0;
    return SS_OK;
}

static ss_rc parent_of(int root_fd, const char *path, int mkdirs, int *ret_dirfd,
                       const char **ret_base, int *ret_owned, ss_err *err)
{
    return parent_at(root_fd, path, mkdirs, 1, ret_dirfd, ret_base, ret_owned, err);
}

/* Give back what parent_of lent: close it when it was the caller's own. */
static void put_parent(int dirfd, int owned)
{
    if (owned && dirfd >= 0) close(dirfd);
}

/* Pin (+1) or unpin (-1) the cache's descriptor fd; an unpinned forgotten one is closed. */
static void pin(int fd, int delta)
{
    for (size_t i = 0; fd >= 0 && i < SS_FS_DIRS_MAX; i++) {
        dir_slot *d = &g_dirs.slot[i];
        if (d->fd != fd) continue;
        d->pins = (unsigned)((int)d->pins + delta);
        if (!d->pins && !d->path) slot_close(d);
        return;
    }
}

ss_rc ss_fs_open(int root_fd, const char *path, int flags, int *ret_fd, ss_err *err)
{
    const char *base;
    int dirfd, fd, e, owned;
    ss_rc rc;
    *ret_fd = -1;
    fd = open_beneath(root_fd, path, flags);
    if (fd < 0 && errno == ENOSYS) {
        rc = parent_of(root_fd, path, 0, &dirfd, &base, &owned, err);
        if (rc) return rc;
        fd = openat(dirfd, base, flags | O_NOFOLLOW | O_CLOEXEC);
        e = errno;
        put_parent(dirfd, owned);
        errno = e;
    }
    if (fd < 0) return resolve_fail(err, -1, path);
    *ret_fd = fd;
    return SS_OK;
}

ss_rc ss_fs_lstat(int root_fd, const char *path, struct stat *ret_st, ss_err *err)
{
    const char *base;
    int dirfd, e, owned, r;
    for (int check = 0;; check = 1) { /* the second time after a removed directory: afresh */
        ss_rc rc = parent_at(root_fd, path, 0, check, &dirfd, &base, &owned, err);
        if (rc) return rc;
        r = fstatat(dirfd, base, ret_st, AT_SYMLINK_NOFOLLOW);
        if (!r || check || !dir_gone(dirfd, owned)) break;
    }
    if (!r) {
        put_parent(dirfd, owned);
        return SS_OK;
    }
    e = errno;
    put_parent(dirfd, owned);
    return ss_fail(err, e == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "stat %s: %s", path,
                   strerror(e));
}

ss_rc ss_fs_readlink(int root_fd, const char *path, char *buf, size_t cap, size_t *ret_len,
                     ss_err *err)
{
    const char *base;
    int dirfd, owned;
    ssize_t n;
    ss_rc rc = parent_of(root_fd, path, 0, &dirfd, &base, &owned, err);
    *ret_len = 0;
    if (rc) return rc;
    n = readlinkat(dirfd, base, buf, cap);
    if (n < 0) rc = ss_fs_errno_fail(err, "read symlink", path);
    put_parent(dirfd, owned);
    if (rc) return rc;
    *ret_len = (size_t)n;
    return SS_OK;
}

ss_rc ss_atomic_new(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err)
{
    ss_atomic *at = NULL;
    const char *base;
    ss_rc rc;
    *ret_at = NULL;
    if (!(at = calloc(1, sizeof *at))) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    at->fd = -1;
    at->root_fd = root_fd;
    rc = parent_at(root_fd, path, 1, 0, &at->dirfd, &base, &at->dir_owned, err);
    if (rc) {
        free(at);
        return rc;
    }
    if (!at->dir_owned) pin(at->dirfd, +1);
    if (!(at->base = strdup(base)) || !(at->path = strdup(path))) {
        ss_atomic_abort(at);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    *ret_at = at;
    return SS_OK;
}

/*
 * A call in at's directory said ENOENT: 1 when that directory has been
 * removed, whether the cache still knows it (dir_gone) or not (forgotten
 * meanwhile, or at's own descriptor): its link count is 0.
 */
static int at_dir_gone(const ss_atomic *at)
{
    struct stat st;
    int e = errno, gone = dir_gone(at->dirfd, at->dir_owned);
    if (!gone && e == ENOENT && !fstat(at->dirfd, &st)) gone = st.st_nlink == 0;
    errno = e;
    return gone;
}

ss_rc ss_atomic_retry(ss_atomic *at, int *ret_again, ss_err *err)
{
    const char *base;
    ss_rc rc;
    *ret_again = 0;
    if (at->retried || !at_dir_gone(at)) return SS_OK;
    at->retried = 1;
    pin(at->dirfd, -1); /* out of the cache already: closed now */
    at->dirfd = -1;
    at->dir_owned = 1;
    rc = parent_at(at->root_fd, at->path, 1, 1, &at->dirfd, &base, &at->dir_owned, err);
    if (rc) return rc;
    if (!at->dir_owned) pin(at->dirfd, +1);
    *ret_again = 1;
    return SS_OK;
}

ss_rc ss_atomic_temp_name(ss_atomic *at, ss_err *err)
{
    static unsigned long seq;
    /* getpid once per cache (a pull's): it is a system call, and this is per file. */
    long pid = g_dirs.root_fd >= 0 ? (long)g_dirs.pid : (long)getpid();
    if (asprintf(&at->tmp, SS_FS_TMP_PREFIX "%ld-%lu", pid, ++seq) < 0) {
        at->tmp = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    at->unmade = 1; /* until made: abort has no file of that name to remove */
    return SS_OK;
}

int ss_atomic_create(ss_atomic *at)
{
    at->fd = openat(at->dirfd, at->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (at->fd < 0) return -1;
    at->unmade = 0;
    return 0;
}

ss_rc ss_atomic_make(ss_atomic *at, ss_err *err)
{
    int again = 1;
    while (again) { /* once more after a removed directory, resolved afresh */
        ss_rc rc;
        if (!ss_atomic_create(at)) return SS_OK;
        rc = ss_atomic_retry(at, &again, err);
        if (rc) return rc;
    }
    return ss_fs_errno_fail(err, "create temp file for", at->path);
}

ss_rc ss_atomic_prepare(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err)
{
    ss_atomic *at = NULL;
    ss_rc rc = ss_atomic_new(root_fd, path, &at, err);
    *ret_at = NULL;
    if (rc) return rc;
    rc = ss_atomic_temp_name(at, err);
    if (rc) {
        ss_atomic_abort(at);
        return rc;
    }
    *ret_at = at;
    return SS_OK;
}

ss_rc ss_atomic_begin(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err)
{
    ss_atomic *at = NULL;
    ss_rc rc = ss_atomic_prepare(root_fd, path, &at, err);
    *ret_at = NULL;
    if (rc) return rc;
    rc = ss_atomic_make(at, err);
    if (rc) {
        ss_atomic_abort(at); /* unmade: its name is not removed */
        return rc;
    }
    *ret_at = at;
    return SS_OK;
}

int ss_atomic_fd(const ss_atomic *at)
{
    return at->fd;
}

void ss_atomic_abort(ss_atomic *at)
{
    if (!at) return;
    if (at->fd >= 0) close(at->fd);
    if (at->tmp && !at->unmade && at->dirfd >= 0) unlinkat(at->dirfd, at->tmp, 0);
    if (at->dir_owned)
        put_parent(at->dirfd, 1);
    else
        pin(at->dirfd, -1);
    free(at->tmp);
    free(at->base);
    free(at->path);
    free(at);
}

int ss_atomic_still_seen(const ss_atomic *at, const ss_fs_seen *seen)
{
    struct stat now;
    if (fstatat(at->dirfd, at->base, &now, AT_SYMLINK_NOFOLLOW)) return errno == ENOENT;
    return seen->present && now.st_ino == seen->st.st_ino && now.st_dev == seen->st.st_dev &&
           now.st_size == seen->st.st_size && now.st_mode == seen->st.st_mode &&
           now.st_mtim.tv_sec == seen->st.st_mtim.tv_sec &&
           now.st_mtim.tv_nsec == seen->st.st_mtim.tv_nsec &&
           now.st_ctim.tv_sec == seen->st.st_ctim.tv_sec &&
           now.st_ctim.tv_nsec == seen->st.st_ctim.tv_nsec;
}

int ss_atomic_set_meta(ss_atomic *at, uint32_t mode, int64_t mtime_s, uint32_t mtime_ns)
{
    struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t)mtime_s, (long)mtime_ns}};
    if (fchmod(at->fd, mode & 07777)) return -1;
    return futimens(at->fd, times);
}

ss_rc ss_atomic_finish_meta(ss_atomic *at, uint32_t mode, int64_t mtime_s, uint32_t mtime_ns,
                            ss_err *err)
{
    if (ss_atomic_set_meta(at, mode, mtime_s, mtime_ns))
        return ss_fs_errno_fail(err, "write", at->path);
    return SS_OK;
}

ss_rc ss_atomic_rename(ss_atomic *at, const ss_fs_seen *seen, ss_err *err)
{
    ss_rc rc;
    int moved = 0, look = seen != NULL;
    ss_fault_point("apply.before-rename");
    /*
     * Nothing was there (a pull's new files): the rename itself looks, one
     * call instead of two. EEXIST: something appeared meanwhile, moved
     * aside below; EINVAL: a file system without RENAME_NOREPLACE.
     */
    if (seen && !seen->present) {
        moved = !renameat2(at->dirfd, at->tmp, at->dirfd, at->base, RENAME_NOREPLACE);
        if (!moved && errno != EEXIST && errno != EINVAL && errno != ENOSYS)
            return ss_fs_errno_fail(err, "replace", at->path);
        look = !moved;
    }
    /* Writing the new version took a while: a local edit meanwhile is kept, not overwritten. */
    if (look && !ss_atomic_still_seen(at, seen)) {
        rc = seen->aside(seen->ctx, err);
        if (rc) return rc;
    }
    /* A directory in the way is not ours to replace here: the caller resolves it first. */
    if (!moved && renameat(at->dirfd, at->tmp, at->dirfd, at->base))
        return ss_fs_errno_fail(err, "replace", at->path);
    free(at->tmp);
    at->tmp = NULL;
    ss_fault_point("apply.after-rename");
    return SS_OK;
}

ss_rc ss_atomic_commit(ss_atomic *at, uint32_t mode, int64_t mtime_s, uint32_t mtime_ns,
                       const ss_fs_seen *seen, ss_err *err)
{
    ss_rc rc = ss_atomic_finish_meta(at, mode, mtime_s, mtime_ns, err);
    if (rc) goto out;
    if (fsync(at->fd)) {
        rc = ss_fs_errno_fail(err, "write", at->path);
        goto out;
    }
    rc = ss_atomic_rename(at, seen, err);
out:
    ss_atomic_abort(at);
    return rc;
}

int ss_fs_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

ss_rc ss_fs_sync(int root_fd, ss_err *err)
{
    if (syncfs(root_fd)) return ss_fs_errno_fail(err, "sync the file system of", "the folder");
    return SS_OK;
}

ss_rc ss_fs_symlink(int root_fd, const char *path, const char *target, int64_t mtime_s,
                    uint32_t mtime_ns, ss_err *err)
{
    static unsigned long seq;
    struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t)mtime_s, (long)mtime_ns}};
    char tmp[64];
    const char *base;
    int dirfd, owned;
    ss_rc rc = parent_of(root_fd, path, 1, &dirfd, &base, &owned, err);
    if (rc) return rc;
    snprintf(tmp, sizeof tmp, SS_FS_TMP_PREFIX "%ld-l%lu", (long)getpid(), ++seq);
    if (symlinkat(target, dirfd, tmp)) {
        rc = ss_fs_errno_fail(err, "create symlink", path);
    } else if (utimensat(dirfd, tmp, times, AT_SYMLINK_NOFOLLOW)) { /* rename keeps it */
        rc = ss_fs_errno_fail(err, "set the mtime of symlink", path);
        unlinkat(dirfd, tmp, 0);
    } else if (renameat(dirfd, tmp, dirfd, base)) {
        rc = ss_fs_errno_fail(err, "replace", path);
        unlinkat(dirfd, tmp, 0);
    } else if (fsync(dirfd)) {
        rc = ss_fs_errno_fail(err, "fsync directory of", path);
    }
    put_parent(dirfd, owned);
    return rc;
}

/* O_PATH: a directory its owner may not read (mode 000) still opens; never a symlink. */
static int open_dir_path(int dirfd, const char *base)
{
    return openat(dirfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

ss_rc ss_fs_dir_chmod(int fd, const char *path, uint32_t mode, ss_err *err)
{
    char proc[64];
    int rd;
    /* fchmod refuses an O_PATH descriptor; its /proc link names exactly the directory opened. */
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (!chmod(proc, mode & 07777)) return SS_OK;
    if (errno != ENOENT) return ss_fs_errno_fail(err, "set mode of", path);
    rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* no /proc: readable ones */
    if (rd < 0 || fchmod(rd, mode & 07777)) {
        ss_rc rc = ss_fs_errno_fail(err, "set mode of", path);
        if (rd >= 0) close(rd);
        return rc;
    }
    close(rd);
    return SS_OK;
}

ss_rc ss_fs_dir_open(int root_fd, const char *path, int *ret_fd, uint32_t *ret_mode, ss_err *err)
{
    const char *base;
    struct stat st;
    int dirfd, fd, owned;
    ss_rc rc = parent_of(root_fd, path, 0, &dirfd, &base, &owned, err);
    *ret_fd = -1;
    *ret_mode = 0;
    if (rc) return rc;
    fd = open_dir_path(dirfd, base);
    if (fd < 0) {
        int e = errno;
        rc = e == ENOENT || e == ENOTDIR || e == ELOOP
                 ? ss_fail(err, SS_ERR_NOT_FOUND, "%s is no directory", path)
                 : ss_fs_errno_fail(err, "open directory", path);
    } else if (fstat(fd, &st)) {
        rc = ss_fs_errno_fail(err, "stat directory", path);
        close(fd);
    } else {
        *ret_fd = fd;
        *ret_mode = st.st_mode & 07777;
    }
    put_parent(dirfd, owned);
    return rc;
}

ss_rc ss_fs_mkdir(int root_fd, const char *path, uint32_t mode, int *ret_made, ss_err *err)
{
    const char *base;
    int dirfd, fd, owned, made;
    ss_rc rc = parent_of(root_fd, path, 1, &dirfd, &base, &owned, err);
    if (ret_made) *ret_made = 0;
    if (rc) return rc;
    made = !mkdirat(dirfd, base, 0700);
    if (ret_made) *ret_made = made;
    if (!made && errno != EEXIST) {
        rc = ss_fs_errno_fail(err, "create directory", path);
    } else if ((fd = open_dir_path(dirfd, base)) < 0) {
        rc =
            errno == ENOTDIR || errno == ELOOP
                ? ss_fail(err, SS_ERR_IO, "create directory %s: something else is in the way", path)
                : ss_fs_errno_fail(err, "open directory", path);
    } else {
        rc = ss_fs_dir_chmod(fd, path, mode, err);
        close(fd);
    }
    put_parent(dirfd, owned);
    return rc;
}

ss_rc ss_fs_remove(int root_fd, const char *path, ss_err *err)
{
    const char *base;
    int dirfd, owned;
    ss_rc rc = parent_of(root_fd, path, 0, &dirfd, &base, &owned, err);
    if (rc) return rc == SS_ERR_NOT_FOUND ? SS_OK : rc;
    forget(path); /* before: its descriptor, if a directory's, must not outlive it here */
    if (unlinkat(dirfd, base, 0)) {
        if (errno == EISDIR || errno == EPERM) {
            if (unlinkat(dirfd, base, AT_REMOVEDIR) && errno != ENOENT)
                rc = ss_fs_errno_fail(err, "remove directory", path);
        } else if (errno != ENOENT) {
            rc = ss_fs_errno_fail(err, "remove", path);
        }
    }
    put_parent(dirfd, owned);
    return rc;
}

ss_rc ss_fs_rmdir(int root_fd, const char *path, ss_err *err)
{
    const char *base;
    int dirfd, owned;
    ss_rc rc = parent_of(root_fd, path, 0, &dirfd, &base, &owned, err);
    if (rc) return rc == SS_ERR_NOT_FOUND ? SS_OK : rc;
    forget(path);
    if (unlinkat(dirfd, base, AT_REMOVEDIR) && errno != ENOENT)
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? ss_fail(err, SS_ERR_EXISTS, "remove directory %s: %s", path, strerror(errno))
                 : ss_fs_errno_fail(err, "remove directory", path);
    put_parent(dirfd, owned);
    return rc;
}

ss_rc ss_fs_rename(int root_fd, const char *from, const char *to, ss_err *err)
{
    const char *fb, *tb;
    int fd1, fd2, own1, own2;
    ss_rc rc = parent_of(root_fd, from, 0, &fd1, &fb, &own1, err);
    if (rc) return rc;
    if (!own1) pin(fd1, +1); /* the second lookup may evict: not this one */
    rc = parent_of(root_fd, to, 1, &fd2, &tb, &own2, err);
    if (rc) goto done;
    if (renameat(fd1, fb, fd2, tb)) rc = ss_fs_errno_fail(err, "rename", from);
    forget(from); /* a directory moved: its descriptors name it no more */
    forget(to);
    if (!rc && fsync(fd2)) rc = ss_fs_errno_fail(err, "fsync directory of", to);
    put_parent(fd2, own2);
done:
    if (own1)
        put_parent(fd1, 1);
    else
        pin(fd1, -1);
    return rc;
}
