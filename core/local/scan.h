/*
 * scan: walks a synced folder depth first, each directory's names sorted,
 * so entries come out in ss_path_cmp order ('/' lowest): the order of the
 * state's rows, which lets a push merge the two streams without loading
 * either. Skips ignored paths, names no transaction may hold (.s3sync and
 * its case-folded aliases at any depth, ss_path_segment_fault: warned about
 * but for the root's own .s3sync/), and special files (fifos, sockets,
 * devices: warned about). Removes fsio's temp files: one seen by a scan
 * (under the folder's lock) is a leftover of a killed command.
 *
 * Symlinks are entries, never followed, at any depth: each directory is
 * opened from its parent's descriptor with O_NOFOLLOW and its names are
 * stat'ed relative to it, and a parent is opened again after a subtree by
 * its path beneath the root (fsio's ss_fs_open). A directory swapped for a
 * symlink while the scan runs ends there: nothing outside is listed.
 * Memory: the names of the directories on the current path only, and the
 * stats of up to 256 of each; one directory descriptor open; and the
 * batches the walk fills ahead.
 *
 * The walk runs on a thread of its own, ahead of the caller by at most a
 * few batches of entries (scan.c), a helper thread taking half of each
 * directory's stats (scan_stats.h); warnings and the opener are still
 * called on the caller's thread, in the walk's order, when the caller
 * reaches them.
 */
#ifndef SS_SCAN_H
#define SS_SCAN_H

#include <sys/stat.h>

#include "ignore.h"
#include "ss_error.h"

typedef struct ss_scan ss_scan;

typedef struct ss_scan_entry {
    const char *path; /* relative to the root; borrowed until the next call */
    int kind;         /* 1 file, 2 directory, 3 symlink */
    struct stat st;
} ss_scan_entry;

/* root_fd: the folder, borrowed (the scan opens its own "."); ign and warn may be NULL. */
ss_rc ss_scan_new(int root_fd, const ss_ignore *ign, ss_warn_fn warn, void *warn_ctx,
                  ss_scan **ret_scan, ss_err *err);
/*
 * A directory its owner cannot read as it stands (EACCES) is handed to fn
 * first (path and its lstat): fn returns 0 when it made the directory
 * readable (dirmodes.h), and the scan reads it; else the scan fails as
 * without fn.
 */
typedef int (*ss_scan_open_fn)(void *ctx, const char *path, const struct stat *st);
void ss_scan_set_opener(ss_scan *sc, ss_scan_open_fn fn, void *ctx);
/*
 * The caller will read every regular file of 1..max_size bytes the scan
 * hands out (a first push): the walk's thread has the kernel read them
 * ahead (posix_fadvise WILLNEED), so they come from memory when the caller
 * reads them. 0 (the default): none. Before the first ss_scan_next.
 */
void ss_scan_set_readahead(ss_scan *sc, off_t max_size);
/* *ret_entry NULL at the end. */
ss_rc ss_scan_next(ss_scan *sc, const ss_scan_entry **ret_entry, ss_err *err);
void ss_scan_free(ss_scan *sc);

#endif
