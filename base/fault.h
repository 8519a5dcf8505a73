/*
 * fault: named fault points, the seam the crash and race tests use (as SQLite
 * routes its syscalls through a table). ss_fault_point("pull.after-rename")
 *   - kills the process with SIGKILL when S3SYNC_CRASH_AT names that point;
 *   - stops it with SIGSTOP when S3SYNC_PAUSE_AT names it, so a test that
 *     waits for the stop (waitpid WUNTRACED) can line two devices up at the
 *     same point, then let each go on with SIGCONT in the order it chooses;
 * either optionally as "point:N", for its Nth hit only. Points are named
 * module.where: push.*, pull.* and apply.* (test-sync's crash table), gc.*
 * (core/commands/gc.c G5), checkpoint.* (core/engine/checkpoint_write.c
 * C5; test-crash-gc), epoch.* (core/engine/epochs.c E4; test-revoke) and
 * peer.* (core/peer/peer_get.c; test-peers).
 * ss_fault_on("ctime-is-mtime") is 1 when S3SYNC_FAULT names that flag: a
 * test stands in a file system that reports each file's ctime as its mtime,
 * so a rewrite with the old mtime put back looks exactly as a rewrite within
 * one timestamp tick does (which no test can time), and only the racy-mtime
 * rule can tell. S3SYNC_FAULT=no-openat2 stands in a kernel without
 * openat2: fsio resolves every path by its O_NOFOLLOW walk (test-localfaults
 * runs its symlink-swap cases both ways). Builds without SS_FAULT_HOOKS
 * compile all of it away.
 */
#ifndef SS_FAULT_H
#define SS_FAULT_H

#ifdef SS_FAULT_HOOKS
void ss_fault_point(const char *name);
int ss_fault_on(const char *flag);
#else
static inline void ss_fault_point(const char *name)
{
    (void)name;
}
static inline int ss_fault_on(const char *flag)
{
    (void)flag;
    return 0;
}
#endif

#endif
