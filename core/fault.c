/* fault: the crash-point trigger behind fault.h. */
#include "fault.h"

#ifdef SS_FAULT_HOOKS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ss_fault_point(const char *name)
{
    static long hits;
    const char *at = getenv("S3SYNC_CRASH_AT");
    size_t n = strlen(name);
    if (!at || strncmp(at, name, n) || (at[n] && at[n] != ':')) return;
    hits++;
    if (at[n] == ':' && atol(at + n + 1) != hits) return;
    kill(getpid(), SIGKILL);
}
#endif
