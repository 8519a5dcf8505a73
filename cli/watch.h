/*
 * watch: s3sync watch [--interval SECONDS] (cli/watch.c): sync on every
 * change, until stopped.
 *
 * inotify on the folder, recursive (new directories are watched as they
 * appear, removed ones dropped; .s3sync/ and what .s3syncignore ignores are
 * not watched). A local change starts a sync after 300 ms of quiet, or at
 * most 2 s after the first change when the folder keeps changing. Between
 * changes the store is polled every interval with a pull: with nothing new
 * that is one request (a LIST after the watermark; lockd: one GET head).
 *
 * The folder is opened for each sync and closed after it, so the folder lock
 * is held only while a sync runs: other s3sync commands on the folder run in
 * between. A failing store (unreachable, 5xx, refusing) is reported in one
 * line per outage, retried with backoff (1 s doubling to 30 s) and never
 * ends the watch; a store that fails verification does (exit 3).
 *
 * SIGINT or SIGTERM: the running sync is finished, then exit 0; a second
 * signal abandons it at once (exit 128 + signal; the engine is crash-safe
 * and the kernel drops the lock). An inotify queue overflow, a directory
 * moved, and an edit of .s3syncignore rebuild the watches and sync the whole
 * folder. Output: nothing unless -v or an error; --json: one object per line
 * ("event": start, sync, pull, error, recovered, stop). With peer_listen set
 * it serves peers between syncs too (cli/serve.c; docs/PEERS.md), and a
 * head a peer announces is pulled at once ("trigger": "head"), before the
 * quiet period of local changes runs out: a pull keeps them.
 */
#ifndef SS_CLI_WATCH_H
#define SS_CLI_WATCH_H

#include "s3sync.h"

typedef struct cli_watch {
    const char *dir;                 /* -C, or NULL: the folder holding "." */
    const ss_store_opts *store_opts; /* borrowed */
    ss_hooks hooks;                  /* the engine's warn and -v callbacks */
    int quiet, verbose, json;
    const char *interval; /* --interval SECONDS as given; NULL: the default */
    double interval_s;    /* parsed by cli_watch_check */
} cli_watch;

/* NULL when the arguments are fine, else what is wrong (for the usage message). */
const char *cli_watch_check(cli_watch *w, int argc);
/* Watch until stopped; the exit code (0 stopped by a signal, 1 failed, 3 verification failed). */
int cli_watch_run(cli_watch *w);

#endif
