/*
 * test-lockd-replicas: s3sync-lockd replicas sharing one bucket state (issue
 * 19, docs/PROTOCOL.md "State backends"), real daemons on loopback against
 * the real RGW, each with its own configuration directory and the same
 * `state = s3://BUCKET/PREFIX`:
 *
 *   across     a lease granted by one replica is honoured by another (presign
 *              and commit there), refused to a second device there, and the
 *              new head reaches the first within head_cache_ms (S7)
 *   fenced     a paused holder is fenced across replicas: its lease expires,
 *              another replica grants a higher token after expiry + skew
 *              (S2, S6), and the old holder's presign and commit are refused
 *              on every replica
 *   revoke     a token revoked by the admin command stops working on every
 *              replica within state_token_cache_ms (S8), figures printed
 *   head_cost  GET head answered by a replica costs at most one bucket
 *              request per head_cache_ms however many devices ask (S7), and
 *              stays one request to lockd for the device
 *   migrate    a SQLite lockd's state copied by `migrate` into a bucket state:
 *              two replicas on it take the same tokens (a revoked one stays
 *              refused), the same head, and grant fencing tokens above the
 *              old ones; a second migrate into it is refused
 *   load2/3    bench/lockd-writers' 50 writers spread over two, then three
 *              replicas with --faults and --jump 2 while replicas are SIGKILLed
 *              and restarted at random: log/ gapless, every sequence
 *              committed once, no fencing token granted twice, no stale
 *              commit accepted; the bucket checked again on its own
 *
 * Skipped (77) without RGW.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "lockd-fixture.h"
#include "s3store.h"

#ifndef LOCKD_WRITERS_BIN
#error "LOCKD_WRITERS_BIN must name bench/lockd-writers"
#endif

#define HEAD_CACHE_MS 1000
#define TOKEN_CACHE_MS 1000
#define SKEW_MS 1000
#define LOAD_S "16" /* seconds of writing under faults, per replica count */

static char tmp_root[] = "/tmp/ss-lockd-replicas-XXXXXX";
static char tag[17];
static char state_url[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n replicas (p[0..n)) of one state serving repos, each in tmp_root/NAME-i. */
static void replicas(lockd_proc *p, size_t n, const char *name, const char *repos)
{
    char dir[600], extra[512];
    snprintf(extra, sizeof extra,
             "state = %s/%s\nstate_skew_ms = %d\nstate_head_cache_ms = %d\n"
             "state_token_cache_ms = %d\n",
             state_url, name, SKEW_MS, HEAD_CACHE_MS, TOKEN_CACHE_MS);
    for (size_t i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%s-%zu", tmp_root, name, i);
        lockd_config(&p[i], dir, repos, extra);
        lockd_start(&p[i]);
    }
}

static void stop_all(lockd_proc *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(lockd_stop(&p[i], SIGTERM), 0);
}

/* GET head on p until it says want, within ms; the milliseconds it took. */
static long head_within(const lockd_proc *p, const char *tok, const char *repo, long long want,
                        long ms)
{
    double t0 = now_s();
    for (;;) {
        long long h = head(p, tok, repo);
        long took = (long)((now_s() - t0) * 1000);
        if (h == want) return took;
        if (took > ms) fail_msg("head %lld after %ld ms, want %lld", h, took, want);
        usleep(20000);
    }
}

/* A replica that last saw the lease held refuses from its cached record (S7) until
 * the record is re-read; such a refusal must never ask for a wait past head_cache. */
static lease_t acquire_within(const lockd_proc *p, const char *tok, const char *repo, long ms)
{
    char path[200];
    double t0 = now_s();
    snprintf(path, sizeof path, "/v1/repos/%s/lease", repo);
    for (;;) {
        resp r = call(p, "POST", tok, path, "{\"ttl\": 30}");
        long took = (long)((now_s() - t0) * 1000);
        if (r.status == 201) {
            lease_t l = lease_of(&r);
            resp_free(&r);
            return l;
        }
        expect(&r, 409, "lease_held");
        assert_true(jint(&r, "retry_after_ms") <= HEAD_CACHE_MS);
        resp_free(&r);
        if (took > ms) fail_msg("still refused after %ld ms", took);
        usleep(20000);
    }
}

static void put_seq(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
                    long long seq)
{
    char keys[64], *url = NULL;
    snprintf(keys, sizeof keys, "[\"log/%020lld\"]", seq);
    resp r = presign_put(p, tok, repo, l, l->fencing, keys);
    expect(&r, 200, NULL);
    url = url_of(&r, 0);
    resp_free(&r);
    assert_int_equal(s3_call("PUT", url, 1, "tx", NULL), 200);
    free(url);
}

static void test_replicas_across(void **state)
{
    lockd_proc p[2];
    char a[64], b[64];
    (void)state;
    replicas(p, 2, "across", "ra");
    add_device(&p[0], "dev-a", "ra", 0, a);
    add_device(&p[1], "dev-b", "ra", 0, b);
    lease_t l = acquire(&p[0], a, "ra", 30);
    resp r = call(&p[1], "POST", b, "/v1/repos/ra/lease", "{\"ttl\": 30}");
    expect(&r, 409, "lease_held");
    resp_free(&r);
    put_seq(&p[1], a, "ra", &l, l.head + 1);
    r = commit(&p[1], a, "ra", &l, l.fencing, l.head + 1, 1);
    expect(&r, 200, NULL);
    resp_free(&r);
    long took = head_within(&p[0], b, "ra", l.head + 1, HEAD_CACHE_MS + 500);
    fprintf(stderr, "across: the other replica's head moved after %ld ms (head_cache %d)\n", took,
            HEAD_CACHE_MS);
    lease_t m = acquire(&p[0], b, "ra", 30); /* released by the commit on the other */
    assert_true(m.fencing > l.fencing);
    assert_int_equal(m.head, l.head + 1);
    r = release(&p[1], b, "ra", &m);
    expect(&r, 200, NULL);
    resp_free(&r);
    stop_all(p, 2);
}

static void test_replicas_fenced(void **state)
{
    lockd_proc p[3];
    char a[64], b[64], keys[64];
    (void)state;
    replicas(p, 3, "fenced", "rf");
    add_device(&p[0], "dev-a", "rf", 0, a);
    add_device(&p[0], "dev-b", "rf", 0, b);
    lease_t old = acquire(&p[0], a, "rf", 2); /* presign wants a second left */
    put_seq(&p[0], a, "rf", &old, old.head + 1);
    /* The holder pauses past its lease. Before expiry + skew nobody takes it over. */
    usleep(2300 * 1000);
    resp r = call(&p[1], "POST", b, "/v1/repos/rf/lease", "{\"ttl\": 30}");
    if (r.status == 201) fail_msg("granted within the skew allowance: %s", r.body);
    expect(&r, 409, "lease_held");
    resp_free(&r);
    usleep(SKEW_MS * 1000);
    lease_t nw = acquire(&p[1], b, "rf", 30);
    assert_true(nw.fencing > old.fencing);
    /* The paused holder wakes: refused on every replica, for every step. */
    snprintf(keys, sizeof keys, "[\"log/%020lld\"]", old.head + 2);
    for (size_t i = 0; i < 3; i++) {
        r = presign_put(&p[i], a, "rf", &old, old.fencing, keys);
        expect(&r, 409, NULL);
        resp_free(&r);
        r = commit(&p[i], a, "rf", &old, old.fencing, old.head + 1, 1);
        expect(&r, 409, NULL);
        resp_free(&r);
    }
    /* Its upload was counted (reconciliation before the grant), not lost or doubled. */
    assert_int_equal(nw.head, old.head + 1);
    r = release(&p[2], b, "rf", &nw);
    expect(&r, 200, NULL);
    resp_free(&r);
    stop_all(p, 3);
}

static void test_replicas_revoke(void **state)
{
    lockd_proc p[3];
    char tok[64], out[256];
    long took[3] = {-1, -1, -1};
    (void)state;
    replicas(p, 3, "revoke", "rr");
    add_device(&p[0], "dev-r", "rr", 0, tok);
    for (size_t i = 0; i < 3; i++) /* every replica has the token in its cache */
        assert_int_equal(head(&p[i], tok, "rr"), 0);
    assert_int_equal(admin(&p[2], out, sizeof out, "device", "revoke", "dev-r", NULL), 0);
    double t0 = now_s();
    for (size_t done = 0; done < 3;) {
        long ms = (long)((now_s() - t0) * 1000);
        done = 0;
        for (size_t i = 0; i < 3; i++) {
            if (took[i] < 0) {
                resp r = call(&p[i], "GET", tok, "/v1/repos/rr/head", NULL);
                if (r.status == 401 || r.status == 403)
                    took[i] = ms;
                else
                    expect(&r, 200, NULL);
                resp_free(&r);
            }
            done += took[i] >= 0;
        }
        if (ms > TOKEN_CACHE_MS + 1000) fail_msg("a revoked token still works after %ld ms", ms);
        usleep(20000);
    }
    fprintf(stderr, "revoke: refused by the replicas after %ld, %ld and %ld ms (bound %d ms)\n",
            took[0], took[1], took[2], TOKEN_CACHE_MS);
    for (size_t i = 0; i < 3; i++)
        assert_true(took[i] <= TOKEN_CACHE_MS + 250);
    stop_all(p, 3);
}

static void test_replicas_head_cost(void **state)
{
    lockd_proc p[2];
    char a[64], b[64];
    (void)state;
    replicas(p, 2, "cost", "rc");
    add_device(&p[0], "dev-a", "rc", 0, a);
    add_device(&p[0], "dev-b", "rc", 0, b);
    assert_int_equal(head(&p[0], a, "rc"), 0); /* both tokens and the record cached */
    assert_int_equal(head(&p[0], b, "rc"), 0);
    long long before = metric(&p[0], "s3sync_lockd_state_requests_total");
    double t0 = now_s();
    int n = 0;
    for (; now_s() - t0 < 2.0; n++)
        assert_int_equal(head(&p[0], n % 2 ? a : b, "rc"), 0);
    long long cost = metric(&p[0], "s3sync_lockd_state_requests_total") - before;
    double secs = now_s() - t0;
    fprintf(stderr,
            "head_cost: %d GET head from two devices in %.2f s cost %lld bucket requests "
            "(head_cache %d ms, token_cache %d ms)\n",
            n, secs, cost, HEAD_CACHE_MS, TOKEN_CACHE_MS);
    assert_true(n >= 50);
    /* One record GET per head_cache, one device GET per token per token_cache, rounded up. */
    long long bound = (long long)(secs * 1000 / HEAD_CACHE_MS + 1) +
                      2 * (long long)(secs * 1000 / TOKEN_CACHE_MS + 1);
    assert_true(cost <= bound);
    stop_all(p, 2);
}

static void test_replicas_migrate(void **state)
{
    lockd_proc old, p[2];
    char dir[600], a[64], b[64], gone[64], out[512], extra[512], url[300];
    (void)state;
    snprintf(dir, sizeof dir, "%s/migrate-sqlite", tmp_root);
    lockd_config(&old, dir, "rm", NULL);
    add_device(&old, "dev-a", "rm", 0, a);
    add_device(&old, "dev-b", "rm", 0, b);
    add_device(&old, "dev-gone", "rm", 0, gone);
    assert_int_equal(admin(&old, out, sizeof out, "device", "revoke", "dev-gone", NULL), 0);
    lockd_start(&old);
    lease_t l = acquire(&old, a, "rm", 30);
    put_seq(&old, a, "rm", &l, l.head + 1);
    resp r = commit(&old, a, "rm", &l, l.fencing, l.head + 1, 1);
    expect(&r, 200, NULL);
    resp_free(&r);
    lease_t m = acquire(&old, a, "rm", 30); /* left held: the record carries it over */
    assert_int_equal(lockd_stop(&old, SIGTERM), 0);

    snprintf(url, sizeof url, "%s/migrate", state_url);
    assert_int_equal(admin(&old, out, sizeof out, "migrate", url, NULL), 0);
    assert_non_null(strstr(out, "migrated 1 repositories and 3 devices"));
    assert_int_not_equal(admin(&old, out, sizeof out, "migrate", url, NULL), 0);

    snprintf(extra, sizeof extra, "state = %s\nstate_skew_ms = %d\nstate_head_cache_ms = %d\n", url,
             SKEW_MS, HEAD_CACHE_MS);
    for (size_t i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/migrate-%zu", tmp_root, i);
        lockd_config(&p[i], dir, "rm", extra);
        lockd_start(&p[i]);
    }
    assert_int_equal(head(&p[1], a, "rm"), l.head + 1);
    r = call(&p[0], "GET", gone, "/v1/repos/rm/head", NULL);
    assert_true(r.status == 401 || r.status == 403);
    resp_free(&r);
    r = release(&p[1], a, "rm", &m); /* the lease granted by SQLite, released on a replica */
    expect(&r, 200, NULL);
    resp_free(&r);
    lease_t n = acquire_within(&p[0], b, "rm", HEAD_CACHE_MS + 500);
    assert_true(n.fencing > m.fencing);
    assert_int_equal(n.head, l.head + 1);
    r = release(&p[1], b, "rm", &n);
    expect(&r, 200, NULL);
    resp_free(&r);
    /* p[0] last saw n held: dev-b, its holder, waits no longer than anyone else */
    lease_t o = acquire_within(&p[0], b, "rm", HEAD_CACHE_MS + 500);
    assert_true(o.fencing > n.fencing);
    r = release(&p[0], b, "rm", &o);
    expect(&r, 200, NULL);
    resp_free(&r);
    stop_all(p, 2);
}

/* --- under load -------------------------------------------------------------------- */

static pid_t spawn(const char *const *argv, const char *out_path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    assert_non_null(f);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static long figure(const char *line, const char *name)
{
    const char *p = strstr(line, name);
    return p ? strtol(p + strlen(name), NULL, 10) : -1;
}

static int count_log(void *ctx, const char *key, const ss_store_stat *st)
{
    long *n = ctx;
    char want[32];
    (void)st;
    snprintf(want, sizeof want, "log/%020ld", n[0] + 1);
    if (strcmp(key, want)) n[1]++;
    n[0]++;
    return 0;
}

/* 50 writers over n replicas for 12 s while replicas die and come back at random. */
static void load(size_t n, const char *name)
{
    lockd_proc p[3];
    char tok[64], urls[256] = "", out[700], repo_url[600], *line = NULL;
    unsigned seed = (unsigned)time(NULL);
    ss_store *store = NULL;
    ss_err err = {{0}};
    long logs[2] = {0, 0};
    int kills = 0, status = 0;
    replicas(p, n, name, name);
    add_device(&p[0], "writers", name, 0, tok);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(urls);
        p[i].keep_port = 1;
        snprintf(urls + len, sizeof urls - len, "%shttp://127.0.0.1:%u", i ? "," : "", p[i].port);
    }
    snprintf(out, sizeof out, "%s/%s.out", tmp_root, name);
    /* Two jumpers, not the SQLite test's six: a stalled holder blocks everyone for its TTL
     * plus the skew allowance, and a bucket transition costs a GET and a PUT on RGW (the
     * whole cycle ~0.3 s here), so six would leave too few commits to judge. */
    pid_t w = spawn((const char *const[]){LOCKD_WRITERS_BIN, urls, name, tok, "50", LOAD_S, "3000",
                                          "--faults", "--jump", "2", NULL},
                    out);
    double t_end = now_s() + atoi(LOAD_S);
    while (now_s() < t_end - 1) { /* a replica killed every 1.5-3 s, back 0.2-0.7 s later */
        usleep((useconds_t)(1500000 + rand_r(&seed) % 1500000));
        size_t k = (size_t)rand_r(&seed) % n;
        assert_int_equal(lockd_stop(&p[k], SIGKILL), 1000 + SIGKILL);
        kills++;
        usleep((useconds_t)(200000 + rand_r(&seed) % 500000));
        lockd_start(&p[k]);
    }
    assert_int_equal(waitpid(w, &status, 0), w);
    line = slurp(out);
    fprintf(stderr, "%s: %zu replicas, %d SIGKILLs: %s", name, n, kills, line);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(line, ": gapless and unique"));
    assert_true(kills >= 3);
    assert_int_equal(figure(line, "fencing granted twice "), 0);
    assert_int_equal(figure(line, "accepted "), 0);
    long commits = figure(line, " s: "), head = figure(line, "head 0 -> ");
    assert_true(commits >= 10);
    assert_true(head >= commits);
    snprintf(repo_url, sizeof repo_url, "%s/%s", bucket_base, name);
    assert_int_equal(ss_store_open(repo_url, NULL, &store, &err), SS_OK);
    assert_int_equal(ss_store_list(store, "log/", NULL, count_log, logs, &err), SS_OK);
    assert_int_equal(logs[0], head);
    assert_int_equal(logs[1], 0);
    ss_store_free(store);
    free(line);
    stop_all(p, n);
}

static void test_replicas_load2(void **state)
{
    (void)state;
    load(2, "load2");
}

static void test_replicas_load3(void **state)
{
    (void)state;
    load(3, "load3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_across),  cmocka_unit_test(test_replicas_fenced),
        cmocka_unit_test(test_replicas_revoke),  cmocka_unit_test(test_replicas_head_cost),
        cmocka_unit_test(test_replicas_migrate), cmocka_unit_test(test_replicas_load2),
        cmocka_unit_test(test_replicas_load3),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    unsigned char rnd[8];
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/replicas: skipped (no RGW: run through ci/test.sh, or eval "
                        "\"$(ci/rgw.sh start)\")\n");
        return 77;
    }
    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    snprintf(bucket_base, sizeof bucket_base, "s3://%s/lockd-repl-%s", bucket, tag);
    snprintf(state_url, sizeof state_url, "s3://%s/lockd-state-%s", bucket, tag);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests_name("lockd/replicas", tests, NULL, NULL);
    lockd_kill_all(); /* what failed tests left running */
    curl_global_cleanup();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return failed;
}
