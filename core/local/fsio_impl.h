/*
 * fsio_impl: what fsio.c (resolving, single atomic writes) and fsio_batch.c
 * (atomic writes made durable together) share, private to them.
 */
#ifndef SS_FSIO_IMPL_H
#define SS_FSIO_IMPL_H

#include "fsio.h"

struct ss_atomic {
    int root_fd, dirfd, fd;
    int dir_owned; /* 0: dirfd is the directory cache's, pinned until abort */
    int retried;   /* ss_atomic_retry resolved dirfd afresh once already */
    int unmade; /* tmp is named, not created yet (ss_atomic_temp_name; made by ss_atomic_create) */
    char *tmp;  /* temp name in dirfd; NULL once renamed */
    char *base; /* target name in dirfd */
    char *path; /* for messages */
};

/* An atomic write to path with its parent resolved (made when missing), no temp yet. */
ss_rc ss_atomic_new(int root_fd, const char *path, ss_atomic **ret_at, ss_err *err);
/*
 * A call in at's directory failed with errno ENOENT: when that directory
 * (a cached one, not checked when at was made, or one the cache has
 * forgotten meanwhile) has been removed since,
 * at->dirfd is resolved afresh (made again) and *ret_again is 1: retry.
 * Once per at: *ret_again is 0 the second time, so a loop on it ends. errno
 * is kept for the caller's message when *ret_again is 0.
 */
ss_rc ss_atomic_retry(ss_atomic *at, int *ret_again, ss_err *err);
/* A fresh temp name for at (at->tmp), nothing created. */
ss_rc ss_atomic_temp_name(ss_atomic *at, ss_err *err);
/* Create at's temp, named already, in at->dirfd as it is (no retry): 0, or -1 with errno. */
int ss_atomic_create(ss_atomic *at);
/* Create at's named temp, once more after its directory was removed (ss_atomic_retry). */
ss_rc ss_atomic_make(ss_atomic *at, ss_err *err);
/* SS_ERR_IO (SS_ERR_NOMEM for ENOMEM) saying what failed on path, from errno. */
ss_rc ss_fs_errno_fail(ss_err *err, const char *what, const char *path);
/* at's target is still what seen says the caller saw: nothing, or that very file as it was. */
int ss_atomic_still_seen(const ss_atomic *at, const ss_fs_seen *seen);
/* Set the temp's mode and mtime (before it is renamed: never on the target's old inode). */
int ss_atomic_set_meta(ss_atomic *at, uint32_t mode, int64_t mtime_s,
                       uint32_t mtime_ns); /* errno */
ss_rc ss_atomic_finish_meta(ss_atomic *at, uint32_t mode, int64_t mtime_s, uint32_t mtime_ns,
                            ss_err *err);
/*
 * Rename the temp over its target, P4's look first (seen may be NULL), with
 * the fault points apply.before-rename and apply.after-rename around it.
 */
ss_rc ss_atomic_rename(ss_atomic *at, const ss_fs_seen *seen, ss_err *err);

#endif
