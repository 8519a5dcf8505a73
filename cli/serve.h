/*
 * serve: s3sync serve [--interval SECONDS] (cli/serve.c): answer the peers
 * of this folder's repository from its cache (docs/PEERS.md), and pull
 * every interval so the device table (who may connect) and the cache stay
 * current, until SIGINT or SIGTERM.
 *
 * Listens on peer_listen (default [::]:21470, IPv4 too; port 0: any free one; off:
 * refused) and says where on stderr ("serving peers on HOST:PORT"; --json:
 * an event). One session at a time, each with 10 s I/O timeouts; a session
 * that fails (a device that is not enrolled or is revoked, a broken
 * protocol) is one line on stderr and the serving goes on. The folder is
 * opened only for the pulls.
 */
#ifndef SS_CLI_SERVE_H
#define SS_CLI_SERVE_H

#include "s3sync.h"

typedef struct cli_serve {
    const char *dir;                 /* -C, or NULL: the folder holding "." */
    const ss_store_opts *store_opts; /* borrowed */
    ss_hooks hooks;
    int quiet, verbose, json;
    const char *interval; /* --interval SECONDS as given; NULL: 60 */
    double interval_s;    /* between pulls, parsed by cli_serve_check */
} cli_serve;

/* NULL when the arguments are fine, else what is wrong (for the usage message). */
const char *cli_serve_check(cli_serve *s, int argc);
int cli_serve_run(const cli_serve *s);

/*
 * For watch: the server of the folder dir and its listening socket (said
 * as "serving peers on HOST:PORT"), or -1 and why in err (SS_ERR_NOT_FOUND:
 * peer_listen is off; SS_ERR_INVALID: cache_size is 0).
 */
int cli_serve_start(const cli_serve *s, const char *dir, ss_server **ret_srv, ss_err *err);
/*
 * Discovery (peer_discovery set): queries answered, this device announced
 * at start and every 30 s (S3SYNC_PEER_DISC_EVERY_MS instead: tests), and
 * the devices heard announcing themselves kept, for a watch's pulls.
 */
#define CLI_DISC_PEERS 16
typedef struct cli_disc {
    int fd;        /* -1: off (the server owns it) */
    int64_t next;  /* the next announcement (ms, CLOCK_MONOTONIC) */
    int64_t every; /* ms between announcements */
    struct {
        char at[300];  /* "HOST:PORT", "[V6]:PORT" */
        int64_t heard; /* last (ms, CLOCK_MONOTONIC) */
    } peers[CLI_DISC_PEERS];
    size_t n;
} cli_disc;
/* Start it when srv's folder sets peer_discovery (lfd: the TCP socket served); else fd -1. */
void cli_disc_open(cli_disc *d, const cli_serve *s, ss_server *srv, int lfd);
/* A datagram waits on d->fd: a query answered, or a device heard (said once with -v). */
void cli_disc_readable(cli_disc *d, const cli_serve *s, ss_server *srv);
/* The devices heard within three announcement periods become f's peers for its pull. */
void cli_disc_heard(const cli_disc *d, ss_folder *f);
/* Announce when due; the ms until the next announcement. */
int64_t cli_disc_tick(cli_disc *d, ss_server *srv);
void cli_disc_close(cli_disc *d);

/* The newest head a peer announced that no pull has shown yet. */
typedef struct cli_heads {
    uint64_t seq; /* 0: none pending */
    int64_t since_ms;
    char device[256];
    int said; /* the withholding warning was given */
} cli_heads;
/* Accept one connection on lfd and serve it to its end; a head it announced goes in heads. */
void cli_serve_one(const cli_serve *s, ss_server *srv, int lfd, cli_heads *heads);
/*
 * A pull reached seq: the pending head is shown, or, once it has waited
 * longer than grace_ms, a warning says the store may be withholding it.
 */
void cli_heads_pulled(const cli_serve *s, cli_heads *heads, uint64_t seq, int64_t grace_ms);

#endif
