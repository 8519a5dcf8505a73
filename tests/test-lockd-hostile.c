/*
 * test-lockd-hostile: s3sync-lockd and its lockd: clients each facing the
 * other at its worst (issue 13). Real daemons (S3SYNC_LOCKD_BIN) on loopback
 * ports, each with a configuration of its own, serving repositories under a
 * random prefix of the RGW bucket that ci/test.sh starts:
 *
 *   lockd/clients  hostile clients: a thousand silent connections from one
 *                  address while a device from another address is served;
 *                  a body announced but never sent, before a token and
 *                  after one; the limits and the silence timeout from the
 *                  configuration.
 *
 * Raw sockets play the attackers (a device is a socket bound to 127.0.0.2,
 * so the daemon sees another address). Skipped (77) without RGW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "s3store.h"

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif

static char g_dir[] = "/tmp/ss-lockd-hostile-XXXXXX";
static char g_base[256]; /* s3://BUCKET/lhostile-TAG */

/* --- daemons ------------------------------------------------------------------------- */

static pid_t g_live[8]; /* daemons running: killed at exit whatever happened */

static void reap_all(void)
{
    for (size_t i = 0; i < COUNT(g_live); i++)
        if (g_live[i] > 0) kill(g_live[i], SIGKILL);
}

static void track(pid_t old, pid_t pid)
{
    for (size_t i = 0; i < COUNT(g_live); i++)
        if (g_live[i] == old) {
            g_live[i] = pid;
            return;
        }
}

/* One s3sync-lockd with a configuration of its own, serving repository "r". */
typedef struct daemon_t {
    char dir[400], conf[500], port_file[500];
    unsigned port;
    child proc;
} daemon_t;

/* Write the configuration (extra: more lines) and start the daemon on a free port. */
static void daemon_start(daemon_t *d, const char *name, const char *extra)
{
    FILE *f;
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/%s", g_dir, name);
    snprintf(d->conf, sizeof d->conf, "%s/lockd.conf", d->dir);
    snprintf(d->port_file, sizeof d->port_file, "%s/port", d->dir);
    if (mkdir(d->dir, 0700)) failf("mkdir %s", d->dir);
    if (!(f = fopen(d->conf, "w")) ||
        fprintf(f, "listen = 127.0.0.1:0\ndb = lockd.db\nlease_ttl_min = 1\nrepo r = %s/%s\n%s",
                g_base, name, extra ? extra : "") < 0 ||
        fclose(f))
        failf("cannot write %s", d->conf);
    d->proc =
        start_prog(NULL, ARGS(S3SYNC_LOCKD_BIN, "--config", d->conf, "--port-file", d->port_file));
    track(0, d->proc.pid);
    for (int i = 0; i < 1500; i++) { /* 30 s: an ASan build starts slower */
        FILE *p = fopen(d->port_file, "r");
        int ok = p && fscanf(p, "%u", &d->port) == 1;
        if (p) fclose(p);
        if (ok) return;
        if (waitpid(d->proc.pid, NULL, WNOHANG)) failf("s3sync-lockd died at start");
        usleep(20000);
    }
    failf("s3sync-lockd did not start");
}

/* SIGTERM: it must stop cleanly (exit 0). */
static void daemon_stop(daemon_t *d)
{
    outcome o;
    if (d->proc.pid <= 0) return;
    kill(d->proc.pid, SIGTERM);
    o = finish(d->proc);
    track(d->proc.pid, 0);
    d->proc.pid = -1;
    expect_exit(&o, 0, "s3sync-lockd stopped with SIGTERM");
    outcome_free(&o);
}

/* `s3sync-lockd --config CONF device add NAME --repo r`: the token (static buffer). */
static const char *daemon_device(const daemon_t *d, const char *name)
{
    static char tok[64];
    outcome o = finish(start_prog(
        NULL, ARGS(S3SYNC_LOCKD_BIN, "--config", d->conf, "device", "add", name, "--repo", "r")));
    expect_exit(&o, 0, "device add");
    snprintf(tok, sizeof tok, "%.*s", (int)strcspn(o.out, "\n"), o.out);
    outcome_free(&o);
    return tok;
}

/* --- raw sockets ------------------------------------------------------------------------ */

/* A TCP connection to the daemon from source address src (a 127.0.0.0/8 address). */
static int connect_from(const daemon_t *d, const char *src)
{
    struct sockaddr_in sa = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) failf("socket: %s", strerror(errno));
    inet_pton(AF_INET, src, &sa.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)d->port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        connect(fd, (struct sockaddr *)&to, sizeof to))
        failf("connect from %s: %s", src, strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s)
{
    for (size_t n = strlen(s); n;) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) failf("send: %s", strerror(errno));
        s += k;
        n -= (size_t)k;
    }
}

/*
 * What the daemon says on fd within seconds: the HTTP status of its answer,
 * 0 when it closed the connection without one, -1 when it said nothing.
 */
static int status_within(int fd, double seconds)
{
    char buf[64];
    size_t got = 0;
    double t0 = now_s();
    while (got < 12) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)((seconds - (now_s() - t0)) * 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0) return -1;
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0) return 0;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return strncmp(buf, "HTTP/1.1 ", 9) ? 0 : atoi(buf + 9);
}

/* 1 when the daemon closed fd (end of stream or reset), without waiting. */
static int closed_by_daemon(int fd)
{
    char c;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* GET head as the device of token, from source address src: the status within 2 s. */
static int device_head(const daemon_t *d, const char *src, const char *token)
{
    char req[256];
    int fd = connect_from(d, src), st;
    snprintf(req, sizeof req,
             "GET /v1/repos/r/head HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
             "Connection: close\r\n\r\n",
             token);
    send_all(fd, req);
    st = status_within(fd, 2.0);
    close(fd);
    return st;
}

/* n connections from src, each with half a request line sent and then silence. */
static int *silent_connections(const daemon_t *d, const char *src, int n)
{
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds) failf("out of memory");
    for (int i = 0; i < n; i++) {
        fds[i] = connect_from(d, src);
        send_all(fds[i], "GET /v1/repos/r/head HTTP/1.1\r\nHost: 127");
    }
    return fds;
}

/* How many of fds the daemon still keeps open; then all are closed. */
static int still_open_then_close(int *fds, int n)
{
    int open = 0;
    for (int i = 0; i < n; i++) {
        open += !closed_by_daemon(fds[i]);
        close(fds[i]);
    }
    free(fds);
    return open;
}

/* --- lockd/clients ----------------------------------------------------------------------- */

/*
 * A thousand silent connections from 127.0.0.1 on a daemon that takes 1000
 * in all: without a limit per address they would be every connection it
 * has. With the default (64 per address) a device on 127.0.0.2 is served at
 * once, and the daemon holds no more than 64 of the attacker's.
 */
static void test_slow_connections(void **state)
{
    daemon_t d;
    const char *tok;
    int *fds, open;
    double t0;
    (void)state;
    daemon_start(&d, "slow", "max_connections = 1000\n");
    tok = daemon_device(&d, "dev");
    fds = silent_connections(&d, "127.0.0.1", 1000);
    t0 = now_s();
    if (device_head(&d, "127.0.0.2", tok) != 200)
        failf("a device on 127.0.0.2 was not served beside 1000 silent connections");
    if (now_s() - t0 > 2) failf("the device waited %.1f s", now_s() - t0);
    open = still_open_then_close(fds, 1000);
    if (open > 64) failf("the daemon keeps %d connections of one address, not at most 64", open);
    daemon_stop(&d);
}

/*
 * The limits and the silence timeout come from the configuration: 4 per
 * address, 1 s of silence. Ten connections: at most 4 kept, and those
 * closed within a few seconds; a device is served throughout.
 */
static void test_connection_limits(void **state)
{
    daemon_t d;
    const char *tok;
    int *fds, open;
    (void)state;
    daemon_start(&d, "limits", "max_connections_per_ip = 4\nconnection_timeout = 1\n");
    tok = daemon_device(&d, "dev");
    fds = silent_connections(&d, "127.0.0.1", 10);
    if (device_head(&d, "127.0.0.2", tok) != 200) failf("the device was not served");
    usleep(200000);
    open = 0;
    for (int i = 0; i < 10; i++)
        open += !closed_by_daemon(fds[i]);
    if (open > 4) failf("%d connections of one address kept, the limit is 4", open);
    usleep(3500000); /* 1 s of silence, and libmicrohttpd's idle sweep */
    open = still_open_then_close(fds, 10);
    if (open) failf("%d silent connections still open after 3.5 s (timeout 1 s)", open);
    if (device_head(&d, "127.0.0.1", tok) != 200) failf("the device was not served");
    daemon_stop(&d);
}

/*
 * A body is read only after the headers were admitted: a POST announcing
 * 100 MB and sending none of it is answered at once, 401 without a token
 * and 413 with one; nothing waits for the body.
 */
static void test_auth_before_body(void **state)
{
    static const char big[] = "POST /v1/repos/r/lease HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\nContent-Length: 100000000\r\n";
    daemon_t d;
    char req[512];
    const char *tok;
    int fd, st;
    (void)state;
    daemon_start(&d, "body", NULL);
    tok = daemon_device(&d, "dev");
    fd = connect_from(&d, "127.0.0.1");
    snprintf(req, sizeof req, "%s\r\n", big);
    send_all(fd, req);
    if ((st = status_within(fd, 2.0)) != 401)
        failf("unauthenticated 100 MB body: status %d within 2 s, expected 401", st);
    close(fd);
    fd = connect_from(&d, "127.0.0.1");
    snprintf(req, sizeof req, "%sAuthorization: Bearer %s\r\n\r\n", big, tok);
    send_all(fd, req);
    if ((st = status_within(fd, 2.0)) != 413)
        failf("announced 100 MB body: status %d within 2 s, expected 413", st);
    close(fd);
    if (device_head(&d, "127.0.0.1", tok) != 200) failf("the device was not served");
    daemon_stop(&d);
}

/* --- the run -------------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest client_tests[] = {
        cmocka_unit_test(test_slow_connections),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_auth_before_body),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    struct rlimit nofile;
    unsigned char rnd[8];
    char tag[17];
    int failed;

    if (fixture_init("lhostile")) return 1;
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/hostile: skipped (no RGW: run through ci/test.sh)\n");
        return 77;
    }
    /* A thousand sockets of the attacker, and the daemon's own. */
    if (getrlimit(RLIMIT_NOFILE, &nofile) || nofile.rlim_max < 2100) {
        fprintf(stderr, "lockd/hostile: skipped (fewer than 2100 file descriptors)\n");
        return 77;
    }
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    snprintf(g_base, sizeof g_base, "s3://%s/lhostile-%s", bucket, tag);
    if (!mkdtemp(g_dir)) return 1;
    signal(SIGPIPE, SIG_IGN);
    atexit(reap_all);
    if (getenv("S3SYNC_LOCKD_HOSTILE_ONLY"))
        cmocka_set_test_filter(getenv("S3SYNC_LOCKD_HOSTILE_ONLY"));
    failed = cmocka_run_group_tests_name("lockd/clients", client_tests, NULL, NULL);
    if (!failed) rm_rf(g_dir);
    return failed;
}
