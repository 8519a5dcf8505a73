/* serve: s3sync serve (see serve.h): the listening socket, the loop, the signals, the lines. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define SESSION_IO_S 10
#define DISC_EVERY_MS 30000 /* a serving device announces itself this often (PEERS.md) */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    g_stop = sig;
}

/* A line on stderr, or an event on stdout with --json. */
static void say(const cli_serve *s, const char *event, const char *msg)
{
    char safe[CLI_SAFE_CAP];
    if (s->json) {
        json_t *o = json_pack("{s:s, s:s}", "event", event, "message", msg);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text) puts(text);
        fflush(stdout);
        free(text);
        json_decref(o);
        return;
    }
    if (s->quiet && strcmp(event, "error")) return;
    fprintf(stderr, "s3sync serve: %s\n", cli_out_safe(safe, sizeof safe, msg));
}

/*
 * A socket listening on where ("HOST:PORT", "[V6]:PORT"; "[::]" takes IPv4
 * too, and is 0.0.0.0 on a kernel without IPv6), and the address it got;
 * -1 and a message.
 */
static int listen_on(const char *where, char *got, size_t cap, char *why, size_t why_cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    char host[256], port[8], nhost[256], nport[8];
    const char *colon = strrchr(where, ':'), *h = where;
    size_t hlen = colon ? (size_t)(colon - where) : 0;
    int fd = -1, one = 1, zero = 0;
    if (hlen >= 2 && where[0] == '[' && where[hlen - 1] == ']') h++, hlen -= 2;
    if (!colon || hlen >= sizeof host || strlen(colon + 1) >= sizeof port) {
        snprintf(why, why_cap, "peer_listen '%s' is not HOST:PORT", where);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)hlen, h);
    snprintf(port, sizeof port, "%s", colon + 1);
    if (getaddrinfo(host, port, &hints, &ai) || !ai) {
        snprintf(why, why_cap, "peer_listen %s: no such address", where);
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 && errno == EAFNOSUPPORT && !strcmp(host, "::")) { /* no IPv6 here */
        freeaddrinfo(ai);
        ai = NULL;
        hints.ai_family = AF_INET;
        if (getaddrinfo(NULL, port, &hints, &ai) || !ai) {
            snprintf(why, why_cap, "peer_listen %s: no such address", where);
            return -1;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (fd >= 0 && ai->ai_family == AF_INET6) /* [::] takes IPv4 too, whatever the sysctl says */
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) ||
        getnameinfo((struct sockaddr *)&sa, sl, nhost, sizeof nhost, nport, sizeof nport,
                    NI_NUMERICHOST | NI_NUMERICSERV)) {
        snprintf(why, why_cap, "peer_listen %s: %s", where, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    snprintf(got, cap, strchr(nhost, ':') ? "[%s]:%s" : "%s:%s", nhost, nport);
    return fd;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void cli_serve_one(const cli_serve *s, ss_server *srv, int lfd, cli_heads *heads)
{
    struct timeval tv = {SESSION_IO_S, 0};
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    char host[256] = "?", port[8] = "?", msg[2048];
    ss_served sv;
    ss_err err = {{0}};
    int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
    if (fd < 0) return;
    getnameinfo((struct sockaddr *)&sa, sl, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    if (!strncmp(host, "::ffff:", 7) && strchr(host, '.')) /* IPv4 on the dual-stack socket */
        memmove(host, host + 7, strlen(host + 7) + 1);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ss_rc rc = ss_serve_session(srv, fd, &sv, &err);
    if (rc && (rc != SS_ERR_TEMPORARY || s->verbose)) { /* a client gone is no news */
        snprintf(msg, sizeof msg, "peer %s:%s%s%.256s: %s", host, port, sv.device[0] ? " " : "",
                 sv.device, err.msg);
        say(s, "error", msg);
    } else if (!rc && s->verbose) {
        snprintf(msg, sizeof msg, "served %.256s at %s:%s (%llu bytes)", sv.device, host, port,
                 (unsigned long long)sv.bytes);
        say(s, "session", msg);
    }
    if (sv.head > heads->seq) { /* pull at once; see that the store shows it (cli_heads_pulled) */
        heads->seq = sv.head;
        heads->since_ms = now_ms();
        heads->said = 0;
        snprintf(heads->device, sizeof heads->device, "%s", sv.device);
    }
}

void cli_heads_pulled(const cli_serve *s, cli_heads *heads, uint64_t seq, int64_t grace_ms)
{
    char msg[512];
    if (!heads->seq || seq >= heads->seq) {
        heads->seq = 0;
        return;
    }
    if (heads->said || now_ms() - heads->since_ms < grace_ms) return;
    heads->said = 1;
    snprintf(msg, sizeof msg,
             "device %.256s announced log/%020llu, signed, %lld s ago, and the store still "
             "does not show it: is the store withholding objects?",
             heads->device, (unsigned long long)heads->seq,
             (long long)((now_ms() - heads->since_ms) / 1000));
    say(s, "withheld", msg);
}

/* --- discovery ---------------------------------------------------------------------------- */

/* The TCP port lfd took (0: none known). */
static uint16_t port_of(int lfd)
{
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &sl)) return 0;
    if (sa.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

void cli_disc_open(cli_disc *d, const cli_serve *s, ss_server *srv, int lfd)
{
    ss_err err = {{0}};
    const char *every = getenv("S3SYNC_PEER_DISC_EVERY_MS"); /* tests only: PEERS.md */
    memset(d, 0, sizeof *d);
    d->every = every && atoll(every) > 0 ? atoll(every) : DISC_EVERY_MS;
    d->fd = ss_serve_disc_open(srv, port_of(lfd), &err);
    if (d->fd < 0 && err.msg[0]) say(s, "error", err.msg);
}

void cli_disc_readable(cli_disc *d, const cli_serve *s, ss_server *srv)
{
    char at[300], msg[400];
    size_t i;
    int64_t now = now_ms();
    if (!ss_serve_disc_readable(srv, at, sizeof at)) return;
    for (i = 0; i < d->n && strcmp(d->peers[i].at, at); i++) {
    }
    if (i == d->n) { /* new; full: the one heard longest ago goes */
        if (d->n < CLI_DISC_PEERS)
            i = d->n++;
        else
            for (size_t k = i = 0; k < d->n; k++)
                if (d->peers[k].heard < d->peers[i].heard) i = k;
        snprintf(d->peers[i].at, sizeof d->peers[i].at, "%s", at);
        snprintf(msg, sizeof msg, "heard a peer announce itself at %s", at);
        if (s->verbose) say(s, "peer", msg);
    }
    d->peers[i].heard = now;
}

void cli_disc_heard(const cli_disc *d, ss_folder *f)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < d->n; i++) /* three announcements missed: gone */
        if (now - d->peers[i].heard <= 3 * d->every + 1000) ss_folder_add_peer(f, d->peers[i].at);
}

int64_t cli_disc_tick(cli_disc *d, ss_server *srv)
{
    int64_t now = now_ms();
    if (d->fd < 0) return INT64_MAX;
    if (now >= d->next) {
        ss_serve_disc_announce(srv);
        d->next = now + d->every;
    }
    return d->next - now;
}

void cli_disc_close(cli_disc *d)
{
    d->fd = -1; /* the server's */
}

static void pull_now(const cli_serve *s, ss_server *srv, cli_heads *heads)
{
    ss_stats st = {0};
    ss_err err = {{0}};
    char msg[sizeof err.msg + 32];
    if (ss_serve_pull(srv, &st, &err)) {
        snprintf(msg, sizeof msg, "pull: %s", err.msg);
        say(s, "error", msg);
    } else {
        cli_heads_pulled(s, heads, st.seq, (int64_t)(3 * s->interval_s * 1000));
    }
    ss_stats_clear(&st);
}

static int serve_loop(const cli_serve *s, ss_server *srv, int lfd)
{
    int64_t next = now_ms() + (int64_t)(s->interval_s * 1000);
    cli_heads heads = {0};
    cli_disc disc;
    cli_disc_open(&disc, s, srv, lfd);
    while (!g_stop) {
        struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = disc.fd, .events = POLLIN}};
        int64_t wait = next - now_ms(), tick = cli_disc_tick(&disc, srv);
        uint64_t known = heads.seq;
        int n = poll(p, disc.fd >= 0 ? 2 : 1, (int)(wait < tick ? (wait > 0 ? wait : 0) : tick));
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && p[0].revents) cli_serve_one(s, srv, lfd, &heads);
        if (n > 0 && disc.fd >= 0 && p[1].revents) cli_disc_readable(&disc, s, srv);
        if (heads.seq > known) next = 0; /* a head announced: pull now, not at the next poll */
        if (now_ms() >= next) {
            pull_now(s, srv, &heads);
            next = now_ms() + (int64_t)(s->interval_s * 1000);
        }
    }
    cli_disc_close(&disc);
    return 0;
}

const char *cli_serve_check(cli_serve *s, int argc)
{
    char *end = NULL;
    if (argc) return "serve takes no arguments";
    s->interval_s = s->interval ? strtod(s->interval, &end) : 60;
    if ((s->interval && *end) || !(s->interval_s >= 1 && s->interval_s <= 86400))
        return "--interval: seconds between pulls, 1 to 86400";
    return NULL;
}

int cli_serve_start(const cli_serve *s, const char *dir, ss_server **ret_srv, ss_err *err)
{
    ss_server *srv = NULL;
    char got[300], why[600], msg[400];
    int lfd;
    ss_rc rc = ss_serve_open(dir, s->store_opts, &s->hooks, &srv, err);
    *ret_srv = NULL;
    if (rc) return -1;
    if (!strcmp(ss_serve_listen(srv), "off")) {
        ss_fail(err, SS_ERR_NOT_FOUND, "peer_listen is off: this folder serves no peers");
        ss_serve_free(srv);
        return -1;
    }
    lfd = listen_on(ss_serve_listen(srv), got, sizeof got, why, sizeof why);
    if (lfd < 0) {
        ss_fail(err, SS_ERR_IO, "%s", why);
        ss_serve_free(srv);
        return -1;
    }
    snprintf(msg, sizeof msg, "serving peers on %s", got);
    say(s, "listening", msg);
    *ret_srv = srv;
    return lfd;
}

int cli_serve_run(const cli_serve *s)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll wakes */
    ss_server *srv = NULL;
    ss_err err = {{0}};
    char *dir = NULL;
    int lfd = -1, code = 0;
    ss_rc rc = ss_folder_find(s->dir ? s->dir : ".", &dir, &err);
    if (rc) goto fail;
    lfd = cli_serve_start(s, dir, &srv, &err);
    free(dir);
    if (lfd < 0) {
        fprintf(stderr, "s3sync serve: %s\n", err.msg);
        return 1;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    code = serve_loop(s, srv, lfd);
    close(lfd);
    ss_serve_free(srv);
    return code;
fail:
    free(dir);
    fprintf(stderr, "s3sync serve: %s\n", err.msg);
    return 1;
}
