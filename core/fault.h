/*
 * fault: named crash points, the seam the crash tests use (as SQLite routes
 * its syscalls through a table). ss_fault_point("pull.after-rename") kills
 * the process with SIGKILL when S3SYNC_CRASH_AT names that point (optionally
 * "point:N" for its Nth hit). Builds without SS_FAULT_HOOKS compile it away.
 */
#ifndef SS_FAULT_H
#define SS_FAULT_H

#ifdef SS_FAULT_HOOKS
void ss_fault_point(const char *name);
#else
static inline void ss_fault_point(const char *name)
{
    (void)name;
}
#endif

#endif
