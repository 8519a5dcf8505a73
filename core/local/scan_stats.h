/*
 * scan_stats: the lstat of many names in one directory, split over two
 * threads (scan.c's walk; private to it). A no-change sync is the walk's
 * fstatat calls: its thread was on the CPU the whole scan while the
 * caller's was mostly idle (docs/BENCHMARKS.md, "A million files").
 */
#ifndef SS_SCAN_STATS_H
#define SS_SCAN_STATS_H

#include <stddef.h>
#include <sys/stat.h>

typedef struct scan_stats scan_stats;

/* Fewer names than this are statted on the caller's thread: a hand-over costs more. */
#define SCAN_STATS_SPLIT_MIN 32

/* A helper thread for scan_stats_run; NULL when none can start (all on the caller's). */
scan_stats *scan_stats_new(void);
void scan_stats_free(scan_stats *s); /* stops and joins the helper; NULL safe */
/*
 * fstatat(dir_fd, names[i], AT_SYMLINK_NOFOLLOW) into st[i] for i < n,
 * errs[i] its errno (0: done). With s and enough names the helper takes
 * the second half meanwhile; returns when all n are done. names, st and
 * errs are borrowed for the call.
 */
void scan_stats_run(scan_stats *s, int dir_fd, char *const *names, size_t n, struct stat *st,
                    int *errs);

#endif
