/*
 * test-bounded: nothing a store or lockd answers can make a device hold
 * more than a documented cap in memory (docs/FORMAT.md "Bounded reads",
 * docs/PROTOCOL.md). Two groups:
 *
 *   bounded/file, bounded/s3  through the real s3sync binary: the objects a
 *                 device reads whole (config, a key file) swapped for huge
 *                 ones (an 8 GiB sparse file on file://, 1 MiB on RGW), more
 *                 key files than a reader takes, and a huge log object
 *                 (streamed: it was bounded already). Each is exit 3 at
 *                 once with one line naming the object and the cap.
 *   bounded/liar  a liar on a loopback port (a raw socket here) playing an
 *                 S3 endpoint or lockd that answers without end: a LIST
 *                 page, an error body, the object a retried PUT re-checks,
 *                 a lockd answer and a lockd refusal, a head beyond reason,
 *                 and `s3sync init` against such a lockd. The liar counts
 *                 what it managed to send: a client that stopped at its cap
 *                 took a few MiB at most (socket buffers), not the 256 MiB
 *                 the liar offers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "format.h"
#include "s3store.h"

#define HUGE_FILE (8ull << 30) /* file://: a sparse object of 8 GiB */
#define HUGE_S3 (1u << 20)     /* RGW: 1 MiB where 4 KiB at most is read */

/* --- objects swapped in the store ------------------------------------------------------- */

/* Replace key by a huge object of zeros: sparse on file://, 1 MiB on RGW. */
static void replace_huge(const world *w, const char *key)
{
    if (!strncmp(w->url, "file://", 7)) {
        const char *path = at_dir(w->url + 7, key);
        int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)HUGE_FILE) || close(fd))
            failf("%s: %s", path, strerror(errno));
        return;
    }
    ss_store *s = world_store(w);
    void *zeros = calloc(1, HUGE_S3);
    ss_err err = {{0}};
    if (!zeros || ss_store_put(s, key, zeros, HUGE_S3, 0, &err)) failf("put %s: %s", key, err.msg);
    free(zeros);
    ss_store_free(s);
}

/* `s3sync init URL DIR` for device d: it must fail with exit 3 at once (an 8 GiB object read
 * whole would take minutes, or all memory), its one line naming what and cap. */
static void expect_join_refused(const world *w, int d, const char *what, const char *cap)
{
    double t0 = now_s();
    outcome o = run_cli(NULL, ARGS("init", w->url, w->dev[d]));
    expect_exit(&o, 3, "init against a store with a huge object");
    if (now_s() - t0 > 20) failf("took %.1f s to refuse", now_s() - t0);
    if (!strstr(o.err, what) || !strstr(o.err, cap) || strchr(o.err, '\n') != strrchr(o.err, '\n'))
        failf("not one line naming %s and the cap %s: %s", what, cap, o.err);
    outcome_free(&o);
}

static void test_huge_config(void **state)
{
    world *w = *state;
    join(w, A);
    replace_huge(w, SS_KEY_CONFIG);
    expect_join_refused(w, B, "GET config", "4096");
}

static void test_huge_keyfile(void **state)
{
    world *w = *state;
    listing k;
    join(w, A);
    k = store_listing(w->url, SS_KEY_KEYS_PREFIX);
    if (k.n != 1) failf("%zu key files", k.n);
    replace_huge(w, k.v[0]);
    expect_join_refused(w, B, k.v[0], "4096");
    listing_free(&k);
}

/* A reader takes SS_KEYFILES_MAX key files; key add stops there, a store listing more is refused.
 */
static void test_many_keyfiles(void **state)
{
    world *w = *state;
    ss_store *s;
    ss_err err = {{0}};
    char key[64];
    outcome o;
    join(w, A);
    s = world_store(w);
    for (unsigned i = 1; i < SS_KEYFILES_MAX; i++) {
        snprintf(key, sizeof key, SS_KEY_KEYFILE_FMT, (uint64_t)0xff00 + i);
        if (ss_store_put(s, key, "x", 1, 0, &err)) failf("put %s: %s", key, err.msg);
    }
    o = run_on(w, A, NULL, ARGS("key", "add"));
    expect_exit(&o, 1, "key add beyond the cap");
    if (!strstr(o.err, "64 key files")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    snprintf(key, sizeof key, SS_KEY_KEYFILE_FMT, (uint64_t)0xffff);
    if (ss_store_put(s, key, "x", 1, 0, &err)) failf("put %s: %s", key, err.msg);
    ss_store_free(s);
    expect_join_refused(w, B, "more than 64 key files", "64");
}

/* Log objects are streamed through the frame reader: bounded before this suite; kept as a guard. */
static void test_huge_log(void **state)
{
    world *w = *state;
    double t0;
    outcome o;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "f"), "f", 1);
    ok(w, A, "sync");
    replace_huge(w, "log/00000000000000000001");
    t0 = now_s();
    o = run_cmd(w, B, NULL, "pull");
    expect_exit(&o, 3, "pull of a huge log object");
    if (now_s() - t0 > 20) failf("took %.1f s to refuse", now_s() - t0);
    if (!strstr(o.err, "log/00000000000000000001")) failf("unclear message: %s", o.err);
    if (jint(o.json, "bytes_down") > 4 * MIB) failf("read %" PRId64, jint(o.json, "bytes_down"));
    outcome_free(&o);
}

/* --- the liar ------------------------------------------------------------------------------ */

#define LIAR_OFFER (256u << 20) /* what the liar sends at most before it gives up */
#define LIAR_SLACK (32u << 20)  /* socket buffers: what a client may be sent beyond its cap */

typedef struct liar liar;
/* Write the answer to request number n (from 1) whose head is req. */
typedef void (*liar_fn)(liar *l, int fd, int n, const char *req);

struct liar {
    int lfd;
    unsigned port;
    pthread_t th;
    liar_fn answer;
    const char *head, *fill; /* for liar_endless: the answer's head, then fill repeated */
    uint64_t sent;           /* body bytes sent, all answers */
    int requests, stop;
};

/* The request's head (headers, up to the blank line) and its Content-Length body, read and
 * dropped; 0 at the end of the stream. */
static int read_request(int fd, char *head, size_t cap)
{
    size_t got = 0;
    char *end = NULL, *cl;
    while (!(end = strstr(head, "\r\n\r\n"))) {
        ssize_t n = got + 1 < cap ? recv(fd, head + got, cap - 1 - got, 0) : -1;
        if (n <= 0) return 0;
        got += (size_t)n;
        head[got] = '\0';
    }
    long long body = (cl = strcasestr(head, "Content-Length:")) ? atoll(cl + 15) : 0;
    body -= (long long)(got - (size_t)(end + 4 - head));
    for (char buf[4096]; body > 0;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return 0;
        body -= n;
    }
    return 1;
}

static int send_text(liar *l, int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        __atomic_add_fetch(&l->sent, (uint64_t)k, __ATOMIC_SEQ_CST);
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* l->head alone. */
static void liar_once(liar *l, int fd, int n, const char *req)
{
    (void)n, (void)req;
    send_text(l, fd, l->head, strlen(l->head));
}

/* l->head, then l->fill without end (up to LIAR_OFFER): until the client hangs up. */
static void liar_endless(liar *l, int fd, int n, const char *req)
{
    char fill[65536];
    size_t fl = strlen(l->fill);
    (void)n, (void)req;
    for (size_t i = 0; i < sizeof fill; i++)
        fill[i] = l->fill[i % fl];
    if (send_text(l, fd, l->head, strlen(l->head))) return;
    for (uint64_t sent = 0; sent < LIAR_OFFER; sent += sizeof fill)
        if (send_text(l, fd, fill, sizeof fill)) return;
}

static void *liar_main(void *arg)
{
    liar *l = arg;
    char req[65536];
    while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p = {l->lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int fd = accept(l->lfd, NULL, NULL);
        if (fd < 0) continue;
        req[0] = '\0';
        if (read_request(fd, req, sizeof req)) /* one request a connection: answers end at close */
            l->answer(l, fd, __atomic_add_fetch(&l->requests, 1, __ATOMIC_SEQ_CST), req);
        close(fd);
    }
    return NULL;
}

static void liar_start(liar *l, liar_fn answer, const char *head, const char *fill)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    memset(l, 0, sizeof *l);
    l->answer = answer;
    l->head = head;
    l->fill = fill;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if ((l->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(l->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(l->lfd, 16) ||
        getsockname(l->lfd, (struct sockaddr *)&sa, &len) ||
        pthread_create(&l->th, NULL, liar_main, l))
        failf("liar: %s", strerror(errno));
    l->port = ntohs(sa.sin_port);
}

/* Stop the liar; what it sent must stay within cap and the socket buffers. */
static void liar_stop(liar *l, size_t cap)
{
    __atomic_store_n(&l->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(l->th, NULL);
    close(l->lfd);
    if (l->sent > cap + LIAR_SLACK)
        failf("the client took %" PRIu64 " bytes, its cap is %zu", l->sent, cap);
}

/* An s3:// store on the liar (any credentials: it checks none). */
static ss_store *liar_s3(const liar *l)
{
    char endpoint[64];
    ss_store *s = NULL;
    ss_err err = {{0}};
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", l->port);
    ss_store_opts o = {.endpoint = endpoint,
                       .access_key = "AKID",
                       .secret_key = "secret",
                       .region = "us-east-1",
                       .max_retries = 2,
                       .timeout_ms = 60000};
    if (ss_store_open("s3://bucket/prefix", &o, &s, &err)) failf("open: %s", err.msg);
    return s;
}

static char g_token[300]; /* a token file for the lockd: stores */

static ss_store *liar_lockd(const liar *l)
{
    char url[64];
    ss_store *s = NULL;
    ss_err err = {{0}};
    ss_store_opts o = {.token_file = g_token, .max_retries = 2, .timeout_ms = 60000};
    snprintf(url, sizeof url, "lockd:http://127.0.0.1:%u/r", l->port);
    if (ss_store_open(url, &o, &s, &err)) failf("open %s: %s", url, err.msg);
    return s;
}

/* Counts what is listed; stops at 1000, so a store that lists without end cannot hang a test. */
static int count(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key, (void)st;
    return ++*(size_t *)ctx >= 1000;
}

/* The store call's outcome: code rc within 10 s, its message naming what. */
static void expect_refusal(ss_rc got, ss_rc rc, const ss_err *err, double t0, const char *what)
{
    if (got != rc) failf("rc %d (%s), expected %d", got, err->msg, rc);
    if (!strstr(err->msg, what)) failf("message does not name %s: %s", what, err->msg);
    if (now_s() - t0 > 10) failf("took %.1f s", now_s() - t0);
}

static const char xml_ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                             "Connection: close\r\n\r\n<?xml version=\"1.0\"?><ListBucketResult>";
static const char json_ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Connection: close\r\n\r\n{\"head\": 1, \"pad\": \"";

static void test_list_page(void **state)
{
    liar l;
    ss_store *s;
    ss_err err = {{0}};
    size_t n = 0;
    double t0 = now_s();
    (void)state;
    liar_start(&l, liar_endless, xml_ok, "<Contents><Key>prefix/k</Key><Size>1</Size></Contents>");
    s = liar_s3(&l);
    expect_refusal(ss_store_list(s, "", NULL, count, &n, &err), SS_ERR_STORE, &err, t0, "8388608");
    ss_store_free(s);
    liar_stop(&l, SS_CAP_LIST_PAGE);
}

/*
 * Paging that cannot be followed: a truncated page without a continuation
 * token (a pull would stop short of the head), and every page answered with
 * the first (it would list for ever). Refused, naming the listing.
 */
static void test_list_paging(void **state)
{
    static const char *const pages[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n"
        "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>prefix/k1</Key><Size>1</Size>"
        "</Contents><IsTruncated>true</IsTruncated></ListBucketResult>",
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n"
        "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>prefix/k1</Key><Size>1</Size>"
        "</Contents><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>"
        "</ListBucketResult>",
    };
    static const char *const says[] = {"no continuation token", "does not go past"};
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        liar l;
        ss_store *s;
        ss_err err = {{0}};
        size_t n = 0;
        double t0 = now_s();
        liar_start(&l, liar_once, pages[i], NULL);
        s = liar_s3(&l);
        expect_refusal(ss_store_list(s, "", NULL, count, &n, &err), SS_ERR_INTEGRITY, &err, t0,
                       says[i]);
        if (n > 2) failf("%zu keys handed out of a broken listing", n);
        ss_store_free(s);
        liar_stop(&l, 1 << 20);
    }
}

static void test_error_body(void **state)
{
    static const char forbidden[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                                    "Connection: close\r\n\r\n<Error><Code>AccessDenied</Code>"
                                    "<Message>";
    liar l;
    ss_store *s;
    ss_err err = {{0}};
    void *buf = NULL;
    size_t len = 0;
    double t0 = now_s();
    (void)state;
    liar_start(&l, liar_endless, forbidden, "no. ");
    s = liar_s3(&l);
    expect_refusal(ss_store_get(s, "config", 0, SS_TO_END, &buf, &len, &err), SS_ERR_AUTH, &err, t0,
                   "HTTP 403");
    if (!strstr(err.msg, "cut at 64 KiB")) failf("no word of the cut: %s", err.msg);
    ss_store_free(s);
    liar_stop(&l, SS_CAP_ERROR_BODY);
}

/* A PUT answered 500, then 412: the retry met "its own" object, which is compared as it
 * streams, never read past the put's own length. */
static void answer_412_recheck(liar *l, int fd, int n, const char *req)
{
    static const char busy[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    static const char taken[] = "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n";
    if (!strncmp(req, "PUT ", 4)) {
        send_text(l, fd, n == 1 ? busy : taken, n == 1 ? sizeof busy - 1 : sizeof taken - 1);
        return;
    }
    liar_endless(l, fd, n, req);
}

static void test_412_recheck(void **state)
{
    liar l;
    ss_store *s;
    ss_err err = {{0}};
    double t0 = now_s();
    (void)state;
    liar_start(&l, answer_412_recheck,
               "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
               "Connection: close\r\n\r\nmine",
               "and then some");
    s = liar_s3(&l);
    expect_refusal(ss_store_put(s, "keys/00000000000000aa", "mine", 4, SS_PUT_CREATE_ONLY, &err),
                   SS_ERR_EXISTS, &err, t0, "exists");
    ss_store_free(s);
    liar_stop(&l, 4);
}

/* log/ listed through a lockd: store on a liar answering head, then fill: refused (rc) with a
 * message naming what, the liar having sent at most cap; keys listed meanwhile: none. */
static void lockd_list_refused(liar_fn answer, const char *head, const char *fill, ss_rc rc,
                               const char *what, size_t cap)
{
    liar l;
    ss_store *s;
    ss_err err = {{0}};
    size_t n = 0;
    double t0 = now_s();
    liar_start(&l, answer, head, fill);
    s = liar_lockd(&l);
    expect_refusal(ss_store_list(s, "log/", NULL, count, &n, &err), rc, &err, t0, what);
    if (n) failf("%zu keys listed from a lie", n);
    ss_store_free(s);
    liar_stop(&l, cap);
}

static void test_lockd_answer(void **state)
{
    (void)state;
    lockd_list_refused(liar_endless, json_ok, "x", SS_ERR_STORE, "1048576", SS_CAP_LOCKD_ANSWER);
}

static void test_lockd_refusal(void **state)
{
    (void)state;
    lockd_list_refused(liar_endless,
                       "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
                       "Connection: close\r\n\r\n{\"error\": \"stale_lease\", \"message\": \"",
                       "no ", SS_ERR_CONFLICT, "HTTP 409", SS_CAP_ERROR_BODY);
}

/* One number can claim any length of log: lockd's head far past the listing's start. */
static void test_lockd_head_lie(void **state)
{
    (void)state;
    lockd_list_refused(liar_once,
                       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "Connection: close\r\n\r\n{\"head\": 4611686018427387904}",
                       NULL, SS_ERR_STORE, "4194304", SS_CAP_LOCKD_ANSWER);
}

/* What a user meets: init against a lockd that answers without end, exit 1 at once. */
static void test_lockd_init(void **state)
{
    char url[64], dir[sizeof g_token + 8];
    liar l;
    outcome o;
    double t0 = now_s();
    (void)state;
    liar_start(&l, liar_endless, json_ok, "y");
    snprintf(url, sizeof url, "lockd:http://127.0.0.1:%u/r", l.port);
    snprintf(dir, sizeof dir, "%s.dir", g_token);
    o = run_cli(NULL, ARGS("--token-file", g_token, "init", url, dir));
    expect_exit(&o, 1, "init against a lockd answering without end");
    if (!strstr(o.err, "1048576")) failf("no cap in the message: %s", o.err);
    if (now_s() - t0 > 20) failf("took %.1f s", now_s() - t0);
    outcome_free(&o);
    liar_stop(&l, SS_CAP_LOCKD_ANSWER);
}

/* --- the run -------------------------------------------------------------------------------- */

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

int main(void)
{
    const struct CMUnitTest store_tests[] = {
        WORLD_TEST(test_huge_config),
        WORLD_TEST(test_huge_keyfile),
        WORLD_TEST(test_many_keyfiles),
        WORLD_TEST(test_huge_log),
    };
    const struct CMUnitTest liar_tests[] = {
        cmocka_unit_test(test_list_page),      cmocka_unit_test(test_list_paging),
        cmocka_unit_test(test_error_body),     cmocka_unit_test(test_412_recheck),
        cmocka_unit_test(test_lockd_answer),   cmocka_unit_test(test_lockd_refusal),
        cmocka_unit_test(test_lockd_head_lie), cmocka_unit_test(test_lockd_init),
    };
    char dir[] = "/tmp/ss-bounded-XXXXXX";
    int failed;
    if (fixture_init("bounded") || !mkdtemp(dir)) return 1;
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_token, sizeof g_token, "%s/token", dir);
    write_bytes(g_token, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 44);
    if (getenv("S3SYNC_BOUNDED_ONLY")) cmocka_set_test_filter(getenv("S3SYNC_BOUNDED_ONLY"));
    failed = cmocka_run_group_tests_name("bounded/liar", liar_tests, NULL, NULL);
    failed |= fixture_run_file_and_s3(store_tests, COUNT(store_tests));
    rm_rf(dir);
    return failed;
}
