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
 * Steps 1 and 2 run on the batch's writer thread ("The writer" below) while
 * the caller stages more; the syncfs of step 2 starts once the batch is full
 * (ss_fs_batch_sync_start): the caller fills the next batch meanwhile, and
 * the flush waits for it before any rename. syncfs makes
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

/*
 * A staged write. The batch's writer thread (see "The writer" below) makes
 * it when data is set: creates the temp, writes data, sets mode and mtime,
 * starts the writeout, closes it (an adopted file, data NULL, was finished
 * by ss_atomic_stage). failed/fail_errno say what went wrong, for the flush.
 */
typedef struct staged {
    ss_atomic *at;
    int has_seen;
    ss_fs_seen seen;
    const uint8_t *data; /* borrowed until the flush or free; NULL: the temp is made */
    uint64_t size;
    uint32_t mode, mtime_ns;
    int64_t mtime_s;
    const char *failed; /* NULL, or what failed ("write", "create temp file for") */
    int fail_errno;
} staged;

struct ss_fs_batch {
    int root_fd;
    staged v[SS_FS_BATCH_FILES];
    size_t n;         /* staged; the writer has made v[0..done) */
    uint64_t bytes;   /* data of the temps staged */
    size_t owned;     /* directory descriptors of their own (not the cache's) */
    pthread_t writer; /* making v[done..n), then the syncfs (step 2) once sealed */
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* n, sealed or done moved */
    int running, idle;   /* the writer runs; it waits for n or sealed to move */
    int sealed, discard; /* no more staged; discard: stop, no syncfs (drop_all) */
    int failed;          /* an entry failed (ss_fs_batch_failed) */
    size_t done;
    int sync_errno; /* the writer's syncfs (step 2) */
};

ss_rc ss_fs_batch_new(int root_fd, ss_fs_batch **ret_b, ss_err *err)
{
    ss_fs_batch *b = calloc(1, sizeof *b);
    *ret_b = NULL;
    if (!b) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    b->root_fd = root_fd;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
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

/* --- the writer ----------------------------------------------------------------------- *
 *
 * Step 1 runs on a thread of the batch's own, while the caller decides and
 * stages the next files and renames the batch before (a join of small files
 * is system calls, and these are half of them: docs/BENCHMARKS.md, "Join of
 * a million files"). Why that changes nothing above:
 *   - the writer touches only what the caller handed over: each staged
 *     at's temp, through at->dirfd (resolved, pinned by the caller), and
 *     the borrowed data; never the directory cache, the state or a hook;
 *   - nothing is renamed before the writer is done with the batch (the
 *     flush joins it), so step 3 still follows steps 1 and 2;
 *   - a failure is kept in its entry and told by the flush, in the order
 *     staged (ss_fs_batch_failed has the caller flush before staging
 *     more); a create that found its directory removed (ENOENT) is made
 *     again by the flush on the caller's thread, where the cache is, and
 *     fsynced (the syncfs is past);
 *   - one writer writes at a time: ss_fs_batch_sync_start waits until the
 *     writer has made every staged temp before it returns (it then makes
 *     only the syncfs), so fault points keep their order.
 * Without a thread (EAGAIN) the caller's thread writes each at staging.
 */

/* Step 1 for s but the close: its temp created, written, mode and mtime; NULL, or what failed. */
static const char *make_temp(const staged *s)
{
    ss_atomic *at = s->at;
    if (ss_atomic_create(at)) return "create temp file for";
    if (s->size && ss_fs_pwrite_all(at->fd, s->data, s->size, 0)) return "write";
    if (ss_atomic_set_meta(at, s->mode, s->mtime_s, s->mtime_ns)) return "write";
    if (ss_fs_writeout(at->fd, s->size)) return "write";
    return NULL;
}

/* make_temp, then closed; a failure kept in s (its temp, if made, closed) for the flush. */
static int make(staged *s)
{
    ss_atomic *at = s->at;
    const char *failed = make_temp(s);
    int e = errno;
    if (at->fd >= 0) {
        int r = close(at->fd);
        at->fd = -1; /* closed even when close says otherwise */
        if (r && !failed) {
            failed = "write";
            e = errno;
        }
    }
    if (failed) {
        s->failed = failed;
        s->fail_errno = e;
        return -1;
    }
    ss_fault_point("apply.staged");
    return 0;
}

static void *writer(void *arg)
{
    ss_fs_batch *b = arg;
    int discard;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        size_t i = b->done;
        int r = 0;
        if (b->discard) break;
        if (i == b->n && b->sealed) break;
        if (i == b->n) {
            b->idle = 1;
            pthread_cond_wait(&b->cv, &b->mu);
            b->idle = 0;
            continue;
        }
        pthread_mutex_unlock(&b->mu);
        if (b->v[i].data) r = make(&b->v[i]); /* an adopted one was made at staging */
        pthread_mutex_lock(&b->mu);
        b->done = i + 1;
        b->failed |= r != 0;
        if (b->done == b->n && b->sealed) pthread_cond_broadcast(&b->cv); /* sync_start waits */
    }
    discard = b->discard;
    pthread_mutex_unlock(&b->mu);
    if (discard) return NULL;
    b->sync_errno = syncfs(b->root_fd) ? errno : 0; /* step 2 */
    return NULL;
}

/* Hand v[n] to the writer, starting it for the batch's first; or make it here without one. */
static void hand_over(ss_fs_batch *b)
{
    if (!b->n && !b->running) b->running = !pthread_create(&b->writer, NULL, writer, b);
    if (!b->running) {
        b->failed |= b->v[b->n].data && make(&b->v[b->n]);
        b->n++;
        b->done = b->n;
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->n++;
    if (b->idle) pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/*
 * An adopted file's temp is made: mode, mtime, writeout and close here, as
 * its descriptor is open (a batch of them waiting for the writer would
 * hold up to SS_FS_BATCH_FILES descriptors).
 */
static ss_rc finish_adopted(ss_atomic *at, uint64_t size, uint32_t mode, int64_t mtime_s,
                            uint32_t mtime_ns, ss_err *err)
{
    ss_rc rc = ss_atomic_finish_meta(at, mode, mtime_s, mtime_ns, err);
    int r;
    if (rc) return rc; /* the caller's abort closes it */
    if (ss_fs_writeout(at->fd, size)) return ss_fs_errno_fail(err, "write", at->path);
    r = close(at->fd);
    at->fd = -1; /* closed even when close says otherwise */
    if (r) return ss_fs_errno_fail(err, "write", at->path);
    ss_fault_point("apply.staged");
    return SS_OK;
}

ss_rc ss_atomic_stage(ss_atomic *at, ss_fs_batch *b, const void *data, uint64_t size, uint32_t mode,
                      int64_t mtime_s, uint32_t mtime_ns, const ss_fs_seen *seen, ss_err *err)
{
    staged *s = &b->v[b->n];
    assert(b->n < SS_FS_BATCH_FILES && !b->sealed); /* the caller flushes a full batch first */
    assert(data ? at->unmade && at->fd < 0 : at->fd >= 0);
    if (!data) {
        ss_rc rc = finish_adopted(at, size, mode, mtime_s, mtime_ns, err);
        if (rc) {
            ss_atomic_abort(at);
            return rc;
        }
    }
    *s = (staged){.at = at,
                  .has_seen = seen != NULL,
                  .data = data,
                  .size = size,
                  .mode = mode,
                  .mtime_s = mtime_s,
                  .mtime_ns = mtime_ns};
    if (seen) s->seen = *seen;
    b->bytes += size;
    b->owned += (size_t)at->dir_owned;
    hand_over(b);
    return SS_OK;
}

int ss_fs_batch_failed(ss_fs_batch *b)
{
    int failed;
    pthread_mutex_lock(&b->mu);
    failed = b->failed;
    pthread_mutex_unlock(&b->mu);
    return failed;
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
    ss_rc rc = ss_atomic_make(at, err); /* under the name the link could not take */
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
            at->unmade = 0;
            return SS_OK;
        }
        if (errno == EXDEV || errno == EPERM || errno == EMLINK)
            return adopt_by_copy(at, fd, err); /* its temp made: abort removes it */
        rc = ss_atomic_retry(at, &again, err);
        if (rc) return rc; /* not made: abort leaves the name alone */
    }
    return ss_fs_errno_fail(err, "create temp file for", at->path);
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

/* Nothing more staged: the writer makes the rest, then the syncfs; wait: until the rest is made. */
static void seal(ss_fs_batch *b, int wait)
{
    if (!b->running) return;
    pthread_mutex_lock(&b->mu);
    b->sealed = 1;
    pthread_cond_signal(&b->cv);
    while (wait && b->done < b->n)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

void ss_fs_batch_sync_start(ss_fs_batch *b)
{
    seal(b, 1);
}

/* The writer's end: joined, what it did told (steps 1 and 2); or step 2 made now. */
static ss_rc join_writer(ss_fs_batch *b, ss_err *err)
{
    if (!b->running) return ss_fs_sync(b->root_fd, err);
    seal(b, 0);
    pthread_join(b->writer, NULL);
    b->running = 0;
    errno = b->sync_errno;
    if (errno) return ss_fs_errno_fail(err, "sync the file system of", "the folder");
    return SS_OK;
}

/*
 * s's temp, made on this thread after the writer's create found its
 * directory removed: resolved afresh and made (ss_atomic_make), fsynced, as
 * the syncfs is past. A failure leaves the temp to abort.
 */
static ss_rc remake(staged *s, ss_err *err)
{
    ss_atomic *at = s->at;
    ss_rc rc = ss_atomic_make(at, err);
    if (rc) return rc;
    if (s->size && ss_fs_pwrite_all(at->fd, s->data, s->size, 0)) goto fail;
    if (ss_atomic_set_meta(at, s->mode, s->mtime_s, s->mtime_ns)) goto fail;
    if (fsync(at->fd)) goto fail;
    close(at->fd); /* after the fsync: nothing left for close to report */
    at->fd = -1;
    return SS_OK;
fail:
    return ss_fs_errno_fail(err, "write", at->path);
}

/* Steps 1 and 2 done: the first failure of the writer's told, or its temp made here (remake). */
static ss_rc check_made(ss_fs_batch *b, ss_err *err)
{
    for (size_t i = 0; i < b->n; i++) {
        staged *s = &b->v[i];
        ss_rc rc;
        if (!s->failed) continue;
        if (s->fail_errno == ENOENT && s->at->unmade) {
            rc = remake(s, err);
            if (rc) return rc;
            continue;
        }
        errno = s->fail_errno;
        return ss_fs_errno_fail(err, s->failed, s->at->path);
    }
    return SS_OK;
}

/* Empty the batch, removing the temps not renamed yet. */
static void drop_all(ss_fs_batch *b)
{
    if (b->running) { /* the writer reads b: stopped before b changes */
        pthread_mutex_lock(&b->mu);
        b->discard = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->writer, NULL);
        b->running = 0;
    }
    for (size_t i = 0; i < b->n; i++)
        ss_atomic_abort(b->v[i].at);
    b->n = 0;
    b->bytes = 0;
    b->owned = 0;
    b->done = 0;
    b->sealed = b->discard = b->failed = b->sync_errno = 0;
}

ss_rc ss_fs_batch_flush(ss_fs_batch *b, ss_err *err)
{
    ss_rc rc = SS_OK;
    ss_rc synced;
    if (!b->n) return SS_OK;
    synced = join_writer(b, err); /* steps 1 and 2: every temp written and durable */
    rc = check_made(b, err);      /* first: a temp's failure says more than the sync's */
    if (rc) goto out;
    rc = synced;
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
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
