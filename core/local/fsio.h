/*
 * fsio: the data interface's writing half, and how any path of the synced
 * folder is reached. Every change to the folder, and every read of a path
 * in it, goes through here, relative to the folder's root descriptor:
 *   - a path is resolved beneath the root without following a symlink at
 *     any component: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
 *     where the kernel has it, else parents opened one component at a time
 *     with O_NOFOLLOW (the walk; S3SYNC_FAULT=no-openat2 forces it for the
 *     tests). A user who swaps a directory for a symlink to elsewhere while
 *     a command runs makes it fail on that path, never read, write or
 *     remove outside the folder (invariant 6);
 *   - a file is written to a temp name in its own directory (or, for a
 *     pull, to a file of the engine's stage, then linked there:
 *     ss_atomic_adopt), given its mode and mtime, made durable (an
 *     fsync each, or for a batch of them one syncfs: ss_fs_batch) and only
 *     then renamed over the target: a reader sees the old or the new
 *     content, never a mix (invariant 3);
 *     ss_fs_sync makes the renames durable before the state records them.
 * Temp names start with SS_FS_TMP_PREFIX; the scanner skips them (and removes
 * those a killed command left behind).
 */
#ifndef SS_FSIO_H
#define SS_FSIO_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "ss_error.h"

#define SS_FS_TMP_PREFIX ".s3sync-tmp-"
#define SS_FS_DIRS_MAX 64 /* directory descriptors the cache keeps open, at most */

/*
 * Keep the parent directories of the paths beneath root_fd that the calls
 * below resolve open between calls, until ss_fs_cache_end (apply: one
 * transaction): each is resolved once, as above, and its descriptor used
 * again while its directory is still linked; what these calls remove or
 * rename leaves the cache with all below it. fsio.c's header says why a
 * cached descriptor keeps invariant 6. One root at a time, one thread.
 */
void ss_fs_cache_begin(int root_fd);
void ss_fs_cache_end(void);

typedef struct ss_atomic ss_atomic;

/*
 * Open the directory holding path (relative to root_fd), creating missing
 * directories when mkdirs. *ret_dirfd is owned by the caller; *ret_base
 * points into path. A missing parent (without mkdirs) is SS_ERR_NOT_FOUND;
 * a parent that is a symlink or a file is SS_ERR_IO.
 */
ss_rc ss_fs_parent(int root_fd, const char *path, int mkdirs, int *ret_dirfd, const char **ret_base,
                   ss_err *err);
/*
 * Open path with flags (O_CLOEXEC added), the last component no more
 * followed than the others: a symlink there is SS_ERR_IO too (errno ELOOP,
 * EXDEV or ENOTDIR). Missing is SS_ERR_NOT_FOUND. On failure errno says
 * why, for callers that word their own message. *ret_fd is the caller's.
 */
ss_rc ss_fs_open(int root_fd, const char *path, int flags, int *ret_fd, ss_err *err);
/* lstat of path, its parents reached as above; missing is SS_ERR_NOT_FOUND. */
ss_rc ss_fs_lstat(int root_fd, const char *path, struct stat *ret_st, ss_err *err);
/* The target of symlink path: *ret_len bytes in buf (no NUL added; cap bytes at most). */
ss_rc ss_fs_readlink(int root_fd, const char *path, char *buf, size_t cap, size_t *ret_len,
                     ss_err *err);

/*
 * What the caller saw at an atomic write's target when it decided to write
 * it (pull: the file it found clean). Right before the rename the target is
 * looked at again: when it is no longer that (another inode, size, mtime or
 * ctime, or something where nothing was), aside moves it out of the way
 * first, so a local edit made meanwhile is kept, not overwritten.
 */
typedef struct ss_fs_seen {
    int present; /* something was there; st is its lstat */
    struct stat st;
    ss_rc (*aside)(void *ctx, ss_err *err);
    void *ctx;
} ss_fs_seen;

/* Start writing path's new content in a temp file beside it. */
ss_rc ss_atomic_begin(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err);
int ss_atomic_fd(const ss_atomic *at);
/*
 * Set mode and mtime, fsync, rename into place (over what seen describes,
 * when seen is not NULL); frees at. The rename is durable only after
 * ss_fs_sync: one syncfs for a whole transaction costs far less than an
 * fsync of the directory per file.
 */
ss_rc ss_atomic_commit(ss_atomic *at, uint32_t mode, int64_t mtime_s, uint32_t mtime_ns,
                       const ss_fs_seen *seen, ss_err *err);
/*
 * pwrite all len bytes at off: 0, or -1 with errno set. A short write (a
 * disk filling up) is retried, so errno names the cause (ENOSPC) instead of
 * whatever an earlier call left there.
 */
int ss_fs_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Make every change to the folder's file system durable (syncfs). */
ss_rc ss_fs_sync(int root_fd, ss_err *err);
void ss_atomic_abort(ss_atomic *at); /* removes the temp file; NULL safe */

/*
 * Atomic writes made durable together (pull's apply; fsio_batch.c says why
 * the order below keeps invariant 3). A file's new version is named with
 * ss_atomic_prepare (or made and written by ss_atomic_adopt) and handed to
 * the batch with ss_atomic_stage: the batch's writer thread creates the
 * temp, writes it, sets mode and mtime, starts its writeout
 * (sync_file_range), no fsync, and closes it, while the caller goes on.
 * ss_fs_batch_flush then makes every temp of the batch durable at
 * once (one syncfs), and only then renames each over its target, with
 * ss_atomic_commit's look at the target first (seen); the renames are
 * durable after the next ss_fs_sync, which the caller makes before it
 * records them as done. A batch is full (ss_fs_batch_full) at
 * SS_FS_BATCH_FILES temps, SS_FS_BATCH_BYTES of their data or
 * SS_FS_BATCH_DIRS directory descriptors of its own (those the directory
 * cache could not take): the caller flushes it then, so temp files, open
 * descriptors and the memory of a batch stay bounded whatever a
 * transaction's size. S3SYNC_FAULT=small-batches makes a batch full at two
 * files, for the crash tests.
 */
#define SS_FS_BATCH_FILES 1024
#define SS_FS_BATCH_BYTES (64u << 20)
#define SS_FS_BATCH_DIRS 32

#define SS_FS_WRITEOUT_MIN (64u << 10)
/*
 * Start writing out fd's data (sync_file_range, SYNC_FILE_RANGE_WRITE)
 * when it holds at least SS_FS_WRITEOUT_MIN bytes; a smaller file waits
 * for the batch's syncfs (fsio_batch.c, step 1). 0, or -1 with errno.
 */
int ss_fs_writeout(int fd, uint64_t size);

typedef struct ss_fs_batch ss_fs_batch;

ss_rc ss_fs_batch_new(int root_fd, ss_fs_batch **ret_b, ss_err *err);
/*
 * An atomic write to path with its parent resolved (made when missing) and
 * its temp named, not created: for ss_atomic_stage with data.
 */
ss_rc ss_atomic_prepare(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err);
/*
 * Hand at to b (at is b's from the call on, even when it fails). data:
 * size bytes for at's temp, which b's writer creates (at from
 * ss_atomic_prepare), borrowed until ss_fs_batch_flush or ss_fs_batch_free
 * returns; what fails in that writing is told by the flush (and
 * ss_fs_batch_failed says it happened). NULL data: at's temp holds its size
 * bytes already (adopted): its mode and mtime are set and it is closed
 * now, a failure returned. seen, when not NULL, is copied: its ctx must
 * stay valid until the flush.
 */
ss_rc ss_atomic_stage(ss_atomic *at, ss_fs_batch *b, const void *data, uint64_t size, uint32_t mode,
                      int64_t mtime_s, uint32_t mtime_ns, const ss_fs_seen *seen, ss_err *err);
/* A temp of b could not be made: the caller flushes b (which says why) before staging more. */
int ss_fs_batch_failed(ss_fs_batch *b);
/*
 * An atomic write whose new content is already written: the file src_name
 * in src_dirfd (a directory of the caller's, on the folder's file system),
 * linked beside path under a temp name (and src_name removed), as if
 * ss_atomic_begin had made and written it; where no link can be made
 * (another mount in between) its content is copied to the temp and
 * fsynced. ss_atomic_fd is the temp's, to set what it still needs.
 */
ss_rc ss_atomic_adopt(int root_fd, const char *path, int src_dirfd, const char *src_name,
                      ss_atomic **ret_at, ss_err *err);
size_t ss_fs_batch_count(const ss_fs_batch *b);
int ss_fs_batch_full(const ss_fs_batch *b);
/*
 * Start the flush's syncfs now, on b's thread, once every temp of b is
 * made (waited for here; fsio_batch.c says why that is safe): nothing more
 * may be staged in b; the caller fills another batch meanwhile and flushes
 * b before it, keeping the order staged.
 */
void ss_fs_batch_sync_start(ss_fs_batch *b);
/*
 * The temps made, syncfs, then every rename in the order staged (fault points
 * apply.batch-synced after the sync, apply.batch-renamed after the last
 * rename). The batch is empty afterwards, after a failure too: temps not
 * renamed are removed.
 */
ss_rc ss_fs_batch_flush(ss_fs_batch *b, ss_err *err);
void ss_fs_batch_free(ss_fs_batch *b); /* removes the temps still staged; NULL safe */

/* Replace path by a symlink to target with that mtime (the link's own), atomically. */
ss_rc ss_fs_symlink(int root_fd, const char *path, const char *target, int64_t mtime_s,
                    uint32_t mtime_ns, ss_err *err);
/*
 * Make directory path (and parents); an existing directory gets the mode.
 * *ret_made (when not NULL): 1 when this call made it (empty then).
 */
ss_rc ss_fs_mkdir(int root_fd, const char *path, uint32_t mode, int *ret_made, ss_err *err);
/*
 * Directory path opened O_PATH (*ret_fd, owned), never through a symlink,
 * and its mode: search permission on its parents is all it needs, so a
 * directory mode 000 can be opened too. Gone, or not a directory:
 * SS_ERR_NOT_FOUND.
 */
ss_rc ss_fs_dir_open(int root_fd, const char *path, int *ret_fd, uint32_t *ret_mode, ss_err *err);
/* Set the mode of the directory open as fd (ss_fs_dir_open); path names it in messages. */
ss_rc ss_fs_dir_chmod(int fd, const char *path, uint32_t mode, ss_err *err);
/* Remove a file, symlink or empty directory; missing is fine. */
ss_rc ss_fs_remove(int root_fd, const char *path, ss_err *err);
/* Remove directory path through its parent's descriptor: missing is fine, not empty SS_ERR_EXISTS.
 */
ss_rc ss_fs_rmdir(int root_fd, const char *path, ss_err *err);
/* Rename within the folder (conflict copies). */
ss_rc ss_fs_rename(int root_fd, const char *from, const char *to, ss_err *err);

#endif
