/*
 * test-lockd-hostile: s3sync-lockd and its lockd: clients each facing the
 * other at its worst (issue 13). Real daemons (S3SYNC_LOCKD_BIN) on loopback
 * ports, each with a configuration of its own, serving repositories under a
 * random prefix of the RGW bucket that ci/test.sh starts:
 *
 *   lockd/offline  (no daemon, no RGW) a database of schema version 1 opens
 *                  migrated; s3sync warns that a lockd:http:// URL to another
 *                  host sends the token in clear; lockd's config loader
 *                  leaves no copy of the bucket secret in memory.
 *   lockd/clients  hostile clients: a thousand silent connections from one
 *                  address while a device from another address is served;
 *                  a body announced but never sent, before a token and
 *                  after one; the limits and the silence timeout from the
 *                  configuration; the token secret in locked memory.
 *   lockd/rewind   a device holding only a token commits garbage at head+1:
 *                  the real s3sync names it when it fails there, and
 *                  `s3sync-lockd repo rewind` lets the devices go on, but
 *                  one whose watermark lies above the rewind (exit 3).
 *
 * Raw sockets play the attackers (a device is a socket bound to 127.0.0.2,
 * so the daemon sees another address), libcurl the device with a token.
 * The daemons are skipped without RGW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "cli-fixture.h"
#include "lockd.h"
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

/* --- HTTP by libcurl ---------------------------------------------------------------------- */

/* method on url with one header line and a body (may be NULL): the status must be want; the
 * JSON answer (NULL when the answer is not JSON; the caller decrefs). */
static json_t *http_json(const char *method, const char *url, const char *header, const char *body,
                         long want)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char *got = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&got, &len);
    long status = 0;
    json_t *j;
    if (!c || !mem) failf("out of memory");
    h = curl_slist_append(h, header);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    fclose(mem);
    if (status != want)
        failf("%s %.*s: HTTP %ld, expected %ld: %s", method, (int)strcspn(url, "?"), url, status,
              want, got ? got : "");
    j = json_loads(got ? got : "", 0, NULL);
    free(got);
    return j;
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

/* --- lockd/rewind ------------------------------------------------------------------------ */

/* A token of the daemon's into a file (static buffer for the path), as a user saves it. */
static const char *token_file(const daemon_t *d, const char *name)
{
    static char path[600];
    char line[80];
    snprintf(path, sizeof path, "%s/%s.token", d->dir, name);
    snprintf(line, sizeof line, "%s\n", daemon_device(d, name));
    write_bytes(path, line, strlen(line));
    return path;
}

/* Devices A and B of repository r on the daemon, as the fixture's scripts know them. */
static void rewind_world(const daemon_t *d, world *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->root, sizeof w->root, "%.100s", d->dir);
    snprintf(w->url, sizeof w->url, "lockd:http://127.0.0.1:%u/r", d->port);
    for (int dev = A; dev <= B; dev++) {
        char name[8] = {'d', 'e', 'v', '-', (char)('a' + dev), 0};
        snprintf(w->dev[dev], sizeof w->dev[dev], "%.100s/%c", d->dir, 'A' + dev);
        snprintf(w->token[dev], sizeof w->token[dev], "%.200s", token_file(d, name));
    }
}

/* One lockd call as the device of token: the answer, which must have the status want. */
static json_t *lockd_call(const daemon_t *d, const char *token, const char *method,
                          const char *route, const char *body, long want)
{
    char url[256], auth[128];
    size_t len = 0;
    char *tok = read_file(token, &len);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/repos/r%s", d->port, route);
    snprintf(auth, sizeof auth, "Authorization: Bearer %.*s", (int)strcspn(tok, "\n"), tok);
    free(tok);
    json_t *j = http_json(method, url, auth, body, want);
    return j;
}

/*
 * Mallory holds a token, not the master key: it takes the lease, uploads
 * garbage as log/<head+1> through its presigned URL, and commits it. Every
 * device then fails on that sequence, and nobody can push past it.
 */
static uint64_t commit_garbage(const daemon_t *d, const char *token)
{
    char body[512], key[64];
    json_t *lease = lockd_call(d, token, "POST", "/lease", "{\"ttl\": 3}", 201), *urls;
    uint64_t seq = (uint64_t)jint(lease, "head") + 1;
    const char *id = json_string_value(json_object_get(lease, "lease_id"));
    snprintf(key, sizeof key, "log/%020" PRIu64, seq);
    snprintf(
        body, sizeof body,
        "{\"op\": \"put\", \"keys\": [\"%s\"], \"lease_id\": \"%s\", \"fencing_token\": %" PRId64
        "}",
        key, id, jint(lease, "fencing_token"));
    urls = lockd_call(d, token, "POST", "/presign", body, 200);
    const char *url =
        json_string_value(json_object_get(json_array_get(json_object_get(urls, "urls"), 0), "url"));
    json_decref(
        http_json("PUT", url, "If-None-Match: *", "not a transaction, not even close", 200));
    snprintf(body, sizeof body,
             "{\"lease_id\": \"%s\", \"fencing_token\": %" PRId64 ", \"seq\": %" PRIu64
             ", \"release\": true}",
             id, jint(lease, "fencing_token"), seq);
    json_decref(lockd_call(d, token, "POST", "/commit", body, 200));
    json_decref(urls);
    json_decref(lease);
    return seq;
}

/* `s3sync-lockd --config CONF repo rewind r SEQ`: its stdout (the caller frees). */
static char *rewind_to(const daemon_t *d, const char *seq)
{
    outcome o = finish(
        start_prog(NULL, ARGS(S3SYNC_LOCKD_BIN, "--config", d->conf, "repo", "rewind", "r", seq)));
    char *out = o.out;
    expect_exit(&o, 0, "repo rewind");
    o.out = NULL;
    outcome_free(&o);
    return out;
}

/* The log/ keys of the daemon's bucket prefix, as "1,2,3". */
static void bucket_log(const daemon_t *d, const char *name, const char *want)
{
    char url[400], got[256] = "";
    snprintf(url, sizeof url, "%s/%s", g_base, name);
    listing k = store_listing(url, "log/");
    for (size_t i = 0; i < k.n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? "," : "",
                 strtoull(k.v[i] + 4, NULL, 10));
    listing_free(&k);
    if (strcmp(got, want)) failf("%s: the bucket holds log/ %s, expected %s", d->dir, got, want);
}

/*
 * A device with a token commits garbage at head+1: the others name it when
 * they meet it, and are wedged; `repo rewind r 1` (head back, the object
 * gone from the bucket) lets them continue. Then a device whose watermark
 * is above the rewind's SEQ gets exit 3 (it applied what no longer exists),
 * while one at SEQ pushes on.
 */
static void test_rewind(void **state)
{
    daemon_t d;
    world w;
    outcome o;
    char *out;
    const char *mallory;
    (void)state;
    daemon_start(&d, "rewind", NULL);
    rewind_world(&d, &w);
    mallory = token_file(&d, "mallory");
    join(&w, A);
    write_bytes(at(&w, A, "a.txt"), "from A", 6);
    ok(&w, A, "sync");
    join(&w, B);
    assert_int_equal(commit_garbage(&d, mallory), 2);
    o = run_cmd(&w, B, NULL, "pull");
    expect_exit(&o, 3, "pull of a garbage log object");
    if (!strstr(o.err, "log/00000000000000000002") ||
        !strstr(o.err, "(committed through lockd by device mallory)"))
        failf("the error does not name the object and its writer: %s", o.err);
    outcome_free(&o);
    write_bytes(at(&w, A, "b.txt"), "waits", 5);
    o = run_cmd(&w, A, NULL, "sync");
    expect_exit(&o, 3, "sync past the garbage");
    outcome_free(&o);

    out = rewind_to(&d, "1");
    if (!strstr(out, "head 2 -> 1") || !strstr(out, "deleted 1 log"))
        failf("repo rewind said: %s", out);
    free(out);
    bucket_log(&d, "rewind", "1");
    ok(&w, A, "sync"); /* b.txt as sequence 2 */
    ok(&w, B, "sync");
    w.n = 2;
    expect_converged(&w);
    bucket_log(&d, "rewind", "1,2");

    write_bytes(at(&w, A, "c.txt"), "applied, then rewound", 21);
    ok(&w, A, "sync"); /* sequence 3; B stays at 2 */
    free(rewind_to(&d, "2"));
    o = run_cmd(&w, A, NULL, "sync");
    expect_exit(&o, 3, "sync of a device whose watermark is above the rewind");
    if (!strstr(o.err, "log/00000000000000000003")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    write_bytes(at(&w, B, "d.txt"), "B goes on", 9);
    ok(&w, B, "sync"); /* a new sequence 3 */
    bucket_log(&d, "rewind", "1,2,3");
    /* A log/3 is there again by name, not the one A applied: the fork check still stops A. */
    o = run_cmd(&w, A, NULL, "sync");
    expect_exit(&o, 3, "sync of a device whose log/3 was rewound and written again");
    if (!strstr(o.err, "log/00000000000000000003")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    daemon_stop(&d);
}

/* --- lockd/db ------------------------------------------------------------------------------ */

/* The schema of version 1, as the databases lockd made before the rewind have it. */
static const char schema_v1[] =
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);"
    "CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, repo TEXT NOT NULL,"
    "  read_only INTEGER NOT NULL, token_hash BLOB NOT NULL UNIQUE,"
    "  revoked INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);"
    "CREATE TABLE repositories (name TEXT PRIMARY KEY, url TEXT NOT NULL,"
    "  head INTEGER NOT NULL DEFAULT 0, next_fencing INTEGER NOT NULL DEFAULT 1,"
    "  dirty INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE leases (repo TEXT PRIMARY KEY REFERENCES repositories(name), id TEXT NOT NULL,"
    "  device TEXT NOT NULL, fencing INTEGER NOT NULL, granted_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL, put_seq INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO meta VALUES ('token_secret', zeroblob(32));"
    "INSERT INTO repositories VALUES ('r', 's3://bucket/r', 7, 3, 0);"
    "INSERT INTO leases VALUES ('r', '0123456789abcdef0123456789abcdef', 'old-dev', 2, 1, "
    "  9000000000000, 8);"
    "PRAGMA user_version = 1;";

static int user_version(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* A version-1 database opens as version 2: its rows kept, and sequences get writers. */
static void test_db_migration(void **state)
{
    char path[300];
    sqlite3 *raw = NULL;
    ld_db *db = NULL;
    ld_repo_row r;
    ld_writers w;
    ss_err err = {{0}};
    (void)state;
    snprintf(path, sizeof path, "%s/v1.db", g_dir);
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, schema_v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    for (int round = 0; round < 2; round++) { /* the second open finds version 2 already */
        if (ld_db_open(path, &db, &err)) failf("open: %s", err.msg);
        assert_int_equal(ld_db_repo_get(db, "r", &r, &err), SS_OK);
        assert_int_equal(r.head, 7);
        assert_int_equal(r.next_fencing, 3);
        assert_false(r.rewinding);
        if (!round)
            assert_int_equal(
                ld_db_lease_set_put_seq(db, "r", "0123456789abcdef0123456789abcdef", 8, &err),
                SS_OK);
        assert_int_equal(ld_db_writers(db, "r", 8, &w, &err), SS_OK);
        assert_int_equal(w.n, 1);
        assert_string_equal(w.name[0], "old-dev");
        ld_db_close(db);
        assert_int_equal(user_version(path), 2);
    }
    /* The migrated database keeps log/<head> for the fork check as a new one does. */
    if (ld_db_open(path, &db, &err)) failf("open: %s", err.msg);
    ss_store_stat obj = {.size = 5};
    snprintf(obj.etag, sizeof obj.etag, "abc123");
    assert_int_equal(ld_db_repo_raise_head(db, "r", 8, &obj, &err), SS_OK);
    assert_int_equal(ld_db_repo_get(db, "r", &r, &err), SS_OK);
    assert_int_equal(r.head, 8);
    assert_string_equal(r.head_etag, "abc123");
    assert_int_equal(r.head_size, 5);
    ld_db_close(db);
}

/* --- secrets ------------------------------------------------------------------------------- */

/*
 * A lockd:http:// URL to a host other than this machine sends the token in
 * clear: s3sync warns, once; not for 127.0.0.0/8, ::1, localhost, nor https.
 * The token file is missing, so each run stops right after opening the store.
 */
static void test_cleartext_warning(void **state)
{
    static const struct {
        const char *url;
        int warns;
    } cases[] = {
        {"lockd:http://192.0.2.1:9/r", 1},     {"lockd:http://lockd.example:9/r", 1},
        {"lockd:http://[2001:db8::1]:9/r", 1}, {"lockd:http://127.0.0.2:9/r", 0},
        {"lockd:http://localhost:9/r", 0},     {"lockd:http://[::1]:9/r", 0},
        {"lockd:https://192.0.2.1:9/r", 0},
    };
    char dir[300];
    (void)state;
    snprintf(dir, sizeof dir, "%s/cleartext", g_dir);
    for (size_t i = 0; i < COUNT(cases); i++) {
        outcome o = run_cli(NULL, ARGS("--token-file", "/nonexistent", "init", cases[i].url, dir));
        const char *w = strstr(o.err, "travels in clear");
        int n = w ? 1 + (strstr(w + 1, "travels in clear") != NULL) : 0;
        if (o.code != 1 || n != cases[i].warns)
            failf("%s: exit %d, %d warnings (expected %d): %s", cases[i].url, o.code, n,
                  cases[i].warns, o.err);
        outcome_free(&o);
    }
}

#define MASK 0x5a /* the secret is held XORed with it here, so only a leak can match */

/* 1 when this process's readable, writable memory holds the n bytes whose XOR with MASK
 * is masked. The scratch buffer is zeroed after each window, so it holds no match itself. */
static int memory_holds(const unsigned char *masked, size_t n)
{
    enum { WINDOW = 1 << 20 };
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC), found = 0;
    unsigned char *buf = calloc(1, WINDOW);
    char line[512];
    if (!maps || mem < 0 || !buf) failf("cannot read this process's memory");
    while (!found && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
            perms[1] != 'w' || hi - lo > (1ul << 30) || strstr(line, "[vvar]"))
            continue;
        for (unsigned long at = lo; at < hi && !found; at += WINDOW - n) {
            size_t want = hi - at < WINDOW ? hi - at : WINDOW;
            ssize_t got = pread(mem, buf, want, (off_t)at);
            if (got <= 0) break;
            for (ssize_t i = 0; i < got; i++)
                buf[i] ^= MASK;
            found = memmem(buf, (size_t)got, masked, n) != NULL;
            memset(buf, 0, WINDOW);
            if ((size_t)got < want || at + want >= hi) break;
        }
    }
    free(buf);
    close(mem);
    fclose(maps);
    return found;
}

/*
 * lockd wipes the bucket secret it read from its config: after
 * ld_config_clear no byte of this process's memory holds it (the file's
 * buffer, the line, the copy kept). Skipped under ASan, whose allocator
 * keeps freed memory in regions too large to scan.
 */
static void test_config_wiped(void **state)
{
    unsigned char raw[20], masked[24];
    char secret[41], text[128], path[300];
    ld_config c;
    ss_err err = {{0}};
    int fd;
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(secret, sizeof secret, raw, sizeof raw);
    for (size_t i = 0; i < sizeof masked; i++)
        masked[i] = (unsigned char)secret[10 + i] ^ MASK;
    snprintf(path, sizeof path, "%s/secret.conf", g_dir);
    snprintf(text, sizeof text, "db = x.db\ns3_secret_access_key = %s\n", secret);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd))
        failf("%s: %s", path, strerror(errno));
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(text, sizeof text);
    if (memory_holds(masked, sizeof masked)) failf("this test left a copy of the secret");
    ld_config_defaults(&c);
    if (ld_config_load(path, &c, &err)) failf("%s", err.msg);
    if (!c.secret_key || !memory_holds(masked, sizeof masked))
        failf("the scan does not see the secret the config holds");
    ld_config_clear(&c);
    if (memory_holds(masked, sizeof masked)) failf("the bucket secret is still in memory");
    unlink(path);
}

/* Its token secret in locked memory: VmLck of a running lockd (where it may lock; not
 * under ASan). */
static void test_secrets_locked(void **state)
{
    daemon_t d;
    char path[64], line[256];
    struct rlimit lim;
    long kb = -1;
    FILE *f;
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's mlock does nothing */
#endif
    if (geteuid() && (getrlimit(RLIMIT_MEMLOCK, &lim) || lim.rlim_cur < (64u << 10))) skip();
    daemon_start(&d, "locked", NULL);
    snprintf(path, sizeof path, "/proc/%d/status", (int)d.proc.pid);
    if (!(f = fopen(path, "r"))) failf("%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmLck:", 6)) kb = atol(line + 6);
    fclose(f);
    if (kb <= 0) failf("lockd locks no memory (VmLck %ld kB): its secrets may be swapped out", kb);
    daemon_stop(&d);
}

/* --- the run -------------------------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest client_tests[] = {
        cmocka_unit_test(test_slow_connections),
        cmocka_unit_test(test_connection_limits),
        cmocka_unit_test(test_auth_before_body),
        cmocka_unit_test(test_secrets_locked),
    };
    const struct CMUnitTest rewind_tests[] = {
        cmocka_unit_test(test_rewind),
    };
    const struct CMUnitTest offline_tests[] = {
        cmocka_unit_test(test_db_migration),
        cmocka_unit_test(test_cleartext_warning),
        cmocka_unit_test(test_config_wiped),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    struct rlimit nofile;
    unsigned char rnd[8];
    char tag[17];
    int failed;

    if (fixture_init("lhostile") || !mkdtemp(g_dir)) return 1;
    signal(SIGPIPE, SIG_IGN);
    atexit(reap_all);
    if (getenv("S3SYNC_LOCKD_HOSTILE_ONLY"))
        cmocka_set_test_filter(getenv("S3SYNC_LOCKD_HOSTILE_ONLY"));
    failed = cmocka_run_group_tests_name("lockd/offline", offline_tests, NULL, NULL);
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/hostile: daemons skipped (no RGW: run through ci/test.sh)\n");
        rm_rf(g_dir);
        return failed;
    }
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    snprintf(g_base, sizeof g_base, "s3://%s/lhostile-%s", bucket, tag);
    /* A thousand sockets of the attacker, and the daemon's own. */
    if (getrlimit(RLIMIT_NOFILE, &nofile) || nofile.rlim_max < 2100)
        fprintf(stderr, "lockd/clients: skipped (fewer than 2100 file descriptors)\n");
    else {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
        failed |= cmocka_run_group_tests_name("lockd/clients", client_tests, NULL, NULL);
    }
    /* A rewind waits for the PUT URLs of the last lease: short leases keep that short. */
    setenv("S3SYNC_LEASE_TTL_MS", "3000", 1);
    failed |= cmocka_run_group_tests_name("lockd/rewind", rewind_tests, NULL, NULL);
    if (!failed) rm_rf(g_dir);
    return failed;
}
