/* fault: the crash, pause and flag triggers behind fault.h. */
#include "fault.h"

#ifdef SS_FAULT_HOOKS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * 1 when spec ("point" or "point:N") names name at this hit; *hits counts
 * its hits, atomically: a point may be hit on two threads (apply.staged by
 * a batch's writer and by the walk), and each N must be hit once.
 */
static int names(const char *spec, const char *name, long *hits)
{
    size_t n = strlen(name);
    if (!spec || strncmp(spec, name, n) || (spec[n] && spec[n] != ':')) return 0;
    long hit = __atomic_add_fetch(hits, 1, __ATOMIC_SEQ_CST);
    return spec[n] != ':' || atol(spec + n + 1) == hit;
}

void ss_fault_point(const char *name)
{
    static long crash_hits, pause_hits;
    if (names(getenv("S3SYNC_CRASH_AT"), name, &crash_hits)) kill(getpid(), SIGKILL);
    if (names(getenv("S3SYNC_PAUSE_AT"), name, &pause_hits)) kill(getpid(), SIGSTOP);
}

int ss_fault_on(const char *flag)
{
    static const char *set;
    static int looked; /* asked once: this sits on the per-file path of every scan */
    if (!looked) {
        set = getenv("S3SYNC_FAULT");
        looked = 1;
    }
    return set && !strcmp(set, flag);
}
#endif
