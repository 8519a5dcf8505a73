/*
 * fsio_batch: atomic writes made durable together (fsio.h, ss_fs_batch).
 *
 * Why the order keeps invariant 3 (each file its old or its new content,
 * whenever the machine stops) at a fraction of an fsync per file:
 *   1. each new version is written to a temp name in its target's directory
 *      and closed without an fsync; for a file of SS_FS_WRITEOUT_MIN bytes
 *      or more sync_file_range(SYNC_FILE_RANGE_WRITE) starts its writeout at
 *      once, so the disk works while the next files are written (git's
 *      core.fsyncMethod=batch does the same). A smaller file is left to the
 *      syncfs, which writes many of them together: started one by one,
 *      their writeouts cost a join of 100,000 files of up to 256 bytes
 *      ~17% of its time (docs/BENCHMARKS.md);
 *   2. one syncfs of the folder's file system: every temp's data and inode
 *      are durable (and whatever else is dirty on it; the writeout started
 *      in 1 is mostly done by then);
 *   3. only then each rename over its target. A crash between 2 and the
 *      next sync may lose some renames (the target is then its old version)
 *      but never shows a new name over data not yet on disk;
 *   4. the caller's next ss_fs_sync makes the renames durable before it
 *      records them (apply: before the watermark commits).
 * The syncfs of step 2 may start early, on a thread of its own, once the
 * batch is full (ss_fs_batch_sync_start): the caller fills the next batch
 * meanwhile, and the flush waits for it before any rename. syncfs makes
 * durable whatever was written before it was called, so the batch's temps
 * (all written and closed by then) are durable when it returns; what the
 * next batch writes meanwhile may be written out too, which costs nothing.
 * A join of small files spent a fifth of its time waiting in syncfs with
 * the CPU idle (docs/BENCHMARKS.md, "A million files").
 * Killed before 3 the temps stay behind under SS_FS_TMP_PREFIX, which the
 * scanner skips and removes; a target is never touched before its temp is
 * durable. The single-file path (ss_atomic_commit: fsync each) is for
 * writers of a few files (restore).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "fsio_impl.h"

typedef struct staged {
    ss_atomic *at; /* its fd closed: the temp is written */
    int has_seen;
    ss_fs_seen seen;
} staged;

struct ss_fs_batch {
    int root_fd;
    staged v[SS_FS_BATCH_FILES];
    size_t n;
    uint64_t bytes;   /* data of the temps staged */
    size_t owned;     /* directory descriptors of their own (not the cache's) */
    pthread_t syncer; /* running step 2 when syncing (ss_fs_batch_sync_start) */
    int syncing, sync_errno;
};

ss_rc ss_fs_batch_new(int root_fd, ss_fs_batch **ret_b, ss_err *err)
{
    ss_fs_batch *b = calloc(1, sizeof *b);
    *ret_b = NULL;
    if (!b) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    b->root_fd = root_fd;
    *ret_b = b;
    return SS_OK;
}

size_t ss_fs_batch_count(const ss_fs_batch *b)
{
    return b->n;
}

int ss_fs_batch_full(const ss_fs_batch *b)
{
    if (ss_fault_on("small-batches") && b->n >= 2) return 1;
    return b->n >= SS_FS_BATCH_FILES || b->bytes >= SS_FS_BATCH_BYTES ||
           b->owned >= SS_FS_BATCH_DIRS;
}

ss_rc ss_atomic_stage(ss_atomic *at, ss_fs_batch *b, uint64_t size, uint32_t mode, int64_t mtime_s,
                      uint32_t mtime_ns, const ss_fs_seen *seen, ss_err *err)
{
    ss_rc rc;
    assert(b->n < SS_FS_BATCH_FILES && !b->syncing); /* the caller flushes a full batch first */
    rc = ss_atomic_finish_meta(at, mode, mtime_s, mtime_ns, err);
    if (rc) goto fail;
    /* Step 1: writeout started now (for a file worth it), waited for by the flush's syncfs. */
    if (ss_fs_writeout(at->fd, size) || close(at->fd)) {
        at->fd = -1;
        rc = ss_fs_errno_fail(err, "write", at->path);
        goto fail;
    }
    at->fd = -1;
    b->v[b->n] = (staged){.at = at, .has_seen = seen != NULL};
    if (seen) b->v[b->n].seen = *seen;
    b->n++;
    b->bytes += size;
    b->owned += (size_t)at->dir_owned;
    ss_fault_point("apply.staged");
    return SS_OK;
fail:
    ss_atomic_abort(at);
    return rc;
}

int ss_fs_writeout(int fd, uint64_t size)
{
    if (size < SS_FS_WRITEOUT_MIN) return 0;
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* len bytes of in into out from offset 0: 0, or -1 with errno set. */
static int copy_all(int in, int out, uint64_t len)
{
    char buf[65536];
    off_t off = 0;
    while ((uint64_t)off < len) {
        ssize_t n = pread(in, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (!n) errno = EIO; /* the source shrank: not ours to write short */
            return -1;
        }
        if (ss_fs_pwrite_all(out, buf, (size_t)n, off)) return -1;
        off += n;
    }
    return 0;
}

/*
 * The adopted file cannot be linked beside its target: another mount (a
 * mount point inside the folder, a bind mount too) or a file system
 * without hard links. Its data goes to a temp beside the target instead,
 * fsynced (the batch's syncfs is of the folder's file system, maybe not
 * that one).
 */
static ss_rc adopt_by_copy(ss_atomic *at, int src_fd, ss_err *err)
{
    struct stat st;
    ss_rc rc;
    free(at->tmp);
    at->tmp = NULL;
    rc = ss_atomic_temp(at, err);
    if (rc) return rc;
    if (fstat(src_fd, &st) || copy_all(src_fd, at->fd, (uint64_t)st.st_size) || fsync(at->fd))
        return ss_fs_errno_fail(err, "write", at->path);
    close(src_fd);
    return SS_OK;
}

/*
 * at's temp as a second name of the stage file (fd open on it), or a copy of
 * it across a mount point; once more after a removed directory, resolved afresh.
 */
static ss_rc temp_link(ss_atomic *at, int src_dirfd, const char *src_name, int fd, ss_err *err)
{
    int again = 1;
    ss_rc rc;
    while (again) {
        if (!linkat(src_dirfd, src_name, at->dirfd, at->tmp, 0)) {
            at->fd = fd;
            return SS_OK;
        }
        if (errno == EXDEV || errno == EPERM || errno == EMLINK)
            return adopt_by_copy(at, fd, err); /* its temp made: abort removes it */
        rc = ss_atomic_retry(at, &again, err);
        if (rc) goto fail;
    }
    rc = ss_fs_errno_fail(err, "create temp file for", at->path);
fail:
    free(at->tmp); /* not made: nothing for abort to remove */
    at->tmp = NULL;
    return rc;
}

ss_rc ss_atomic_adopt(int root_fd, const char *path, int src_dirfd, const char *src_name,
                      ss_atomic **ret_at, ss_err *err)
{
    ss_atomic *at = NULL;
    int fd = -1;
    ss_rc rc = ss_atomic_new(root_fd, path, &at, err);
    *ret_at = NULL;
    if (rc) return rc;
    fd = openat(src_dirfd, src_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = ss_fs_errno_fail(err, "write", path);
        goto fail;
    }
    rc = ss_atomic_temp_name(at, err);
    if (rc) goto fail;
    /* A second name beside the target, then the stage's removed: a temp as begin makes. */
    rc = temp_link(at, src_dirfd, src_name, fd, err);
    if (rc) goto fail;
    unlinkat(src_dirfd, src_name, 0);
    *ret_at = at;
    return SS_OK;
fail:
    if (fd >= 0 && fd != at->fd) close(fd);
    ss_atomic_abort(at);
    return rc;
}

static void *syncer(void *arg)
{
    ss_fs_batch *b = arg;
    b->sync_errno = syncfs(b->root_fd) ? errno : 0;
    return NULL;
}

void ss_fs_batch_sync_start(ss_fs_batch *b)
{
    if (!b->n || b->syncing) return;
    /* No thread (EAGAIN): the flush makes the syncfs itself, as without this call. */
    b->syncing = !pthread_create(&b->syncer, NULL, syncer, b);
}

/* Step 2: the syncfs started early, waited for, or made now. */
static ss_rc batch_sync(ss_fs_batch *b, ss_err *err)
{
    if (!b->syncing) return ss_fs_sync(b->root_fd, err);
    pthread_join(b->syncer, NULL);
    b->syncing = 0;
    errno = b->sync_errno;
    if (errno) return ss_fs_errno_fail(err, "sync the file system of", "the folder");
    return SS_OK;
}

/* Empty the batch, removing the temps not renamed yet. */
static void drop_all(ss_fs_batch *b)
{
    if (b->syncing) { /* the thread reads b: done before b changes */
        pthread_join(b->syncer, NULL);
        b->syncing = 0;
    }
    for (size_t i = 0; i < b->n; i++)
        ss_atomic_abort(b->v[i].at);
    b->n = 0;
    b->bytes = 0;
    b->owned = 0;
}

ss_rc ss_fs_batch_flush(ss_fs_batch *b, ss_err *err)
{
    ss_rc rc = SS_OK;
    if (!b->n) return SS_OK;
    rc = batch_sync(b, err); /* step 2: every temp durable */
    if (rc) goto out;
    ss_fault_point("apply.batch-synced");
    for (size_t i = 0; i < b->n; i++) { /* step 3 */
        staged *s = &b->v[i];
        rc = ss_atomic_rename(s->at, s->has_seen ? &s->seen : NULL, err);
        if (rc) goto out;
    }
    ss_fault_point("apply.batch-renamed");
out:
    drop_all(b);
    return rc;
}

void ss_fs_batch_free(ss_fs_batch *b)
{
    if (!b) return;
    drop_all(b);
    free(b);
}
