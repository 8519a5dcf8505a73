/*
 * test-lockd-http: the real s3sync-lockd binary (S3SYNC_LOCKD_BIN) on a free
 * loopback port, against the real RGW that ci/test.sh starts, under a random
 * prefix per run: routes, auth (and `device list`), leases, the lease
 * counters of /metrics, presigned URLs used against RGW, commit, restart,
 * SIGKILL and reconcile, TLS. Skipped (77) without RGW. The daemon and the
 * HTTP client are tests/lockd-fixture.c; the modules alone: test-lockd-unit.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "lockd-fixture.h"
#include "s3store.h"

static char tmp_root[] = "/tmp/ss-lockd-http-XXXXXX";
static char tag[17]; /* random per run: the bucket prefix and file names */

/* log/<seq> straight into the bucket, as a device's upload would leave it. */
static void put_log(ss_store *s, uint64_t seq)
{
    char key[LD_LOG_KEY_SIZE];
    ss_err err = {{0}};
    ld_log_key(seq, key);
    ss_rc rc = ss_store_put(s, key, "tx", 2, SS_PUT_CREATE_ONLY, &err);
    if (rc) fprintf(stderr, "put %s: %s\n", key, err.msg);
    assert_int_equal(rc, SS_OK);
}

/* --- the fixture: one daemon, a repository per concern ------------------------- */

#define WRITERS 4 /* test_http_concurrent_writers */
#define CYCLES 5

typedef struct H {
    lockd_proc p;
    char rw[64], ro[64], rev[64], other[64], ra[64], rb[64], ea[64], eb[64], io[64];
    char busy[WRITERS][64];
    ss_store *io_store;
} H;

static int http_setup(void **state)
{
    char dir[600], url[600];
    ss_err err = {{0}};
    H *h = calloc(1, sizeof *h);
    snprintf(dir, sizeof dir, "%s/http", tmp_root);
    lockd_config(&h->p, dir, "auth race expiry io other busy", NULL);
    add_device(&h->p, "auth-rw", "auth", 0, h->rw);
    add_device(&h->p, "auth-ro", "auth", 1, h->ro);
    add_device(&h->p, "auth-revoked", "auth", 0, h->rev);
    add_device(&h->p, "other-dev", "other", 0, h->other);
    add_device(&h->p, "race-a", "race", 0, h->ra);
    add_device(&h->p, "race-b", "race", 0, h->rb);
    add_device(&h->p, "exp-a", "expiry", 0, h->ea);
    add_device(&h->p, "exp-b", "expiry", 0, h->eb);
    add_device(&h->p, "io-a", "io", 0, h->io);
    for (int i = 0; i < WRITERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "busy-%d", i);
        add_device(&h->p, name, "busy", 0, h->busy[i]);
    }
    snprintf(url, sizeof url, "%s/io", bucket_base);
    assert_int_equal(ss_store_open(url, NULL, &h->io_store, &err), SS_OK);
    lockd_start(&h->p);
    *state = h;
    return 0;
}

static int http_teardown(void **state)
{
    H *h = *state;
    if (h->p.pid > 0) assert_int_equal(lockd_stop(&h->p, SIGTERM), 0); /* clean, leak-free exit */
    ss_store_free(h->io_store);
    free(h);
    return 0;
}

static void test_http_routes(void **state)
{
    H *h = *state;
    resp r = call(&h->p, "GET", NULL, "/healthz", NULL);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(&r, "status"), "ok");
    resp_free(&r);
    r = call(&h->p, "POST", NULL, "/healthz", NULL);
    expect(&r, 405, "method_not_allowed");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/auth/lease", NULL);
    expect(&r, 405, "method_not_allowed");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/auth/nothing", NULL);
    expect(&r, 404, "not_found");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/../head", NULL);
    expect(&r, 404, NULL);
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{not json");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": \"long\"}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": 100000}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    /* Beyond int64_t milliseconds: refused before any conversion (UBSan builds would abort). */
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": -1e300}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    char *big = malloc(300 * 1024);
    memset(big, ' ', 300 * 1024 - 1);
    big[300 * 1024 - 1] = '\0';
    big[0] = '{';
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/presign", "%s}", big);
    expect(&r, 413, "payload_too_large");
    resp_free(&r);
    /* Headers beyond the connection's 8 KiB pool are refused before routing. */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", h->p.port);
    memset(big, 'a', 9000);
    memcpy(big, "X-Big: ", 7);
    big[9000] = '\0';
    r = http("GET", url, (const char *const[]){big, NULL}, NULL);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    free(big);
    r = call(&h->p, "GET", NULL, "/metrics", NULL);
    expect(&r, 200, NULL);
    assert_non_null(
        strstr(r.body, "s3sync_lockd_requests_total{route=\"healthz\",status=\"200\"} 1"));
    assert_non_null(strstr(r.body, "s3sync_lockd_request_duration_seconds_bucket{route=\"head\""));
    assert_non_null(strstr(r.body, "s3sync_lockd_leases_granted_total"));
    assert_non_null(strstr(r.body, "s3sync_lockd_presigned_urls_total{op=\"put\"}"));
    resp_free(&r);
}

/* `s3sync-lockd device list` shows device name of repo with this mode and state. */
static void expect_device(const lockd_proc *p, const char *name, const char *repo, const char *mode,
                          const char *state)
{
    char out[8192], *save = NULL;
    int seen = 0;
    assert_int_equal(admin(p, out, sizeof out, "device", "list", NULL), 0);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char n[LD_NAME_MAX + 1], rp[LD_NAME_MAX + 1], m[16], st[16];
        if (sscanf(line, "%64s %64s %15s %15s", n, rp, m, st) != 4)
            fail_msg("device list: %s", line);
        if (strcmp(n, name)) continue;
        seen++;
        if (strcmp(rp, repo) || strcmp(m, mode) || strcmp(st, state))
            fail_msg("device list shows '%s', expected %s %s %s %s", line, name, repo, mode, state);
    }
    if (seen != 1) fail_msg("device list shows %s %d times", name, seen);
}

static void test_http_auth(void **state)
{
    H *h = *state;
    char bogus[LD_TOKEN_LEN + 1];
    resp r = call(&h->p, "GET", NULL, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    assert_true(r.www_auth);
    resp_free(&r);
    ld_auth_token_new(bogus); /* well-formed, never issued */
    r = call(&h->p, "GET", bogus, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    resp_free(&r);
    r = call(&h->p, "GET", "not-a-token", "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    resp_free(&r);

    /* Revoked while the server runs: refused from the next request on. */
    assert_int_equal(head(&h->p, h->rev, "auth"), 0);
    assert_int_equal(admin(&h->p, NULL, 0, "device", "revoke", "auth-revoked", NULL), 0);
    r = call(&h->p, "GET", h->rev, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    assert_non_null(strstr(jstr(&r, "message"), "revoked"));
    resp_free(&r);
    /* What an operator sees: `device list`, while the server runs. */
    expect_device(&h->p, "auth-revoked", "auth", "read-write", "revoked");
    expect_device(&h->p, "auth-ro", "auth", "read-only", "active");
    expect_device(&h->p, "auth-rw", "auth", "read-write", "active");

    /* Another repository's device sees nothing here. */
    r = call(&h->p, "GET", h->other, "/v1/repos/auth/head", NULL);
    expect(&r, 403, "forbidden");
    resp_free(&r);
    r = call(&h->p, "POST", h->other, "/v1/repos/auth/presign",
             "{\"op\":\"get\",\"keys\":[\"config\"]}");
    expect(&r, 403, "forbidden");
    resp_free(&r);
    r = call(&h->p, "GET", h->other, "/v1/repos/nosuch/head", NULL);
    expect(&r, 403, "forbidden");
    resp_free(&r);

    /* Read-only: reads yes, writes 403. */
    assert_int_equal(head(&h->p, h->ro, "auth"), 0);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/lease", "{\"ttl\": 5}");
    expect(&r, 403, "read_only");
    resp_free(&r);
    lease_t l = acquire(&h->p, h->rw, "auth", 30);
    r = presign_put(&h->p, h->ro, "auth", &l, l.fencing, "[\"log/00000000000000000001\"]");
    expect(&r, 403, "read_only");
    resp_free(&r);
    r = commit(&h->p, h->ro, "auth", &l, l.fencing, 1, 0);
    expect(&r, 403, "read_only");
    resp_free(&r);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/presign",
             "{\"op\":\"get\",\"keys\":[\"config\",\"log/00000000000000000001\"]}");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "urls")), 2);
    resp_free(&r);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/presign",
             "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"log/00000000000000000001\"}");
    expect(&r, 200, NULL);
    resp_free(&r);
    r = release(&h->p, h->rw, "auth", &l);
    expect(&r, 200, NULL);
    resp_free(&r);
}

typedef struct racer {
    const lockd_proc *p;
    const char *tok;
    pthread_barrier_t *go;
    resp r;
} racer;

static void *race_one(void *arg)
{
    racer *x = arg;
    pthread_barrier_wait(x->go);
    x->r = call(x->p, "POST", x->tok, "/v1/repos/race/lease", "{\"ttl\": 30}");
    return NULL;
}

static void test_http_race(void **state)
{
    H *h = *state;
    long long last_fencing = 0;
    long long refused = metric(&h->p, "s3sync_lockd_leases_refused_total");
    long long expired = metric(&h->p, "s3sync_lockd_leases_expired_total");
    for (int round = 0; round < 10; round++) {
        pthread_barrier_t go;
        pthread_t t[2];
        racer x[2] = {{&h->p, h->ra, &go, {0}}, {&h->p, h->rb, &go, {0}}};
        pthread_barrier_init(&go, NULL, 2);
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, race_one, &x[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        int won = x[0].r.status == 201 ? 0 : 1;
        /* Exactly one holder; the other is told who and how long to wait. */
        expect(&x[won].r, 201, NULL);
        expect(&x[!won].r, 409, "lease_held");
        assert_string_equal(jstr(&x[!won].r, "holder"), won ? "race-b" : "race-a");
        assert_true(jint(&x[!won].r, "retry_after_ms") > 0);
        assert_true(jint(&x[!won].r, "retry_after_ms") <= 30000);
        assert_true(atoi(x[!won].r.retry_after) >= 1);
        lease_t l = {{0}, jint(&x[won].r, "fencing_token"), 0};
        snprintf(l.id, sizeof l.id, "%s", jstr(&x[won].r, "lease_id"));
        assert_true(l.fencing > last_fencing);
        last_fencing = l.fencing;
        resp r = release(&h->p, won ? h->rb : h->ra, "race", &l);
        expect(&r, 200, NULL);
        resp_free(&r);
        resp_free(&x[0].r);
        resp_free(&x[1].r);
    }
    /* One refusal per round, counted; every lease was released, none expired. */
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_refused_total"), refused + 10);
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_expired_total"), expired);
}

static void test_http_expiry_takeover(void **state)
{
    H *h = *state;
    char path[200];
    long long refused = metric(&h->p, "s3sync_lockd_leases_refused_total");
    long long expired = metric(&h->p, "s3sync_lockd_leases_expired_total");
    lease_t a = acquire(&h->p, h->ea, "expiry", 1);
    resp r = call(&h->p, "POST", h->eb, "/v1/repos/expiry/lease", "{\"ttl\": 5}");
    expect(&r, 409, "lease_held");
    assert_true(jint(&r, "retry_after_ms") <= 1000);
    resp_free(&r);
    usleep(1200 * 1000);
    lease_t b = acquire(&h->p, h->eb, "expiry", 5);
    assert_true(b.fencing > a.fencing);
    /* The 409 above, then a's lease taken over once expired: each counted once. */
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_refused_total"), refused + 1);
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_expired_total"), expired + 1);
    /* The old holder is refused everywhere, with 409. */
    snprintf(path, sizeof path, "/v1/repos/expiry/lease/%s/renew", a.id);
    r = call(&h->p, "POST", h->ea, path, "{\"ttl\": 5, \"fencing_token\": %lld}", a.fencing);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = presign_put(&h->p, h->ea, "expiry", &a, a.fencing, "[\"log/00000000000000000001\"]");
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = commit(&h->p, h->ea, "expiry", &a, a.fencing, 1, 0);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = release(&h->p, h->ea, "expiry", &a);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    /* The new holder renews and releases normally. */
    snprintf(path, sizeof path, "/v1/repos/expiry/lease/%s/renew", b.id);
    r = call(&h->p, "POST", h->eb, path, "{\"ttl_ms\": 3000, \"fencing_token\": %lld}", b.fencing);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "fencing_token"), b.fencing);
    assert_true(jint(&r, "expires_in_ms") <= 3000 && jint(&r, "expires_in_ms") > 2000);
    resp_free(&r);
    r = release(&h->p, h->eb, "expiry", &b);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void test_http_stale_fencing(void **state)
{
    H *h = *state;
    lease_t l = acquire(&h->p, h->io, "io", 30);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing + 1, "[\"log/00000000000000000001\"]");
    expect(&r, 409, "stale_fencing_token");
    resp_free(&r);
    r = commit(&h->p, h->io, "io", &l, l.fencing - 1 > 0 ? l.fencing - 1 : 99, 1, 0);
    expect(&r, 409, "stale_fencing_token");
    resp_free(&r);
    r = release(&h->p, h->io, "io", &l);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void seq_key(char *out, size_t cap, const char *fmt, long long seq)
{
    snprintf(out, cap, fmt, seq);
}

static void test_http_presign_commit(void **state)
{
    H *h = *state;
    char keys[256], logk[32], other[32], *put = NULL, *data_put = NULL, *bad = NULL, *got = NULL;
    lease_t l = acquire(&h->p, h->io, "io", 60);
    long long n = l.head + 1;

    seq_key(logk, sizeof logk, "log/%020lld", n);
    snprintf(keys, sizeof keys, "[\"%s\", \"data/%020lld-0123456789abcdef\"]", logk, n);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "seq"), n);
    assert_true(jint(&r, "expires_in") >= 1 && jint(&r, "expires_in") <= 60);
    put = url_of(&r, 0);
    data_put = url_of(&r, 1);
    resp_free(&r);

    /* RGW refuses the URL for another key, and without its signed header. */
    seq_key(other, sizeof other, "log/%020lld", n + 1);
    bad = strdup(put);
    memcpy(strstr(bad, logk), other, strlen(other));
    assert_int_equal(s3_call("PUT", bad, 1, "tx", NULL), 403);
    assert_int_equal(s3_call("PUT", put, 0, "tx", NULL), 403);

    /* Commit before the upload is refused; nothing moved. */
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 0);
    expect(&r, 409, "object_missing");
    assert_int_equal(jint(&r, "head"), n - 1);
    resp_free(&r);

    assert_int_equal(s3_call("PUT", data_put, 1, "pack", NULL), 200);
    assert_int_equal(s3_call("PUT", put, 1, "tx", NULL), 200);
    assert_int_equal(s3_call("PUT", put, 1, "again", NULL), 412); /* create-only */

    /* Only head+1: the next key, other prefixes, escapes are all refused. */
    snprintf(keys, sizeof keys, "[\"%s\"]", other);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 409, "wrong_sequence"); /* well formed, but not head+1 */
    assert_int_equal(jint(&r, "head"), n - 1);
    resp_free(&r);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, "[\"notes/x\"]");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, "[\"../race/log/00000000000000000001\"]");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign",
             "{\"op\":\"get\",\"keys\":[\"a/../../x\"]}");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign", "{\"op\":\"delete\",\"keys\":[\"x\"]}");
    expect(&r, 400, "bad_request");
    resp_free(&r);

    r = commit(&h->p, h->io, "io", &l, l.fencing, n + 1, 0);
    expect(&r, 409, "wrong_sequence");
    resp_free(&r);
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 0);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "head"), n);
    assert_false(json_is_true(json_object_get(r.json, "released")));
    resp_free(&r);
    assert_int_equal(head(&h->p, h->io, "io"), n);

    /* Reads: GET of the object, LIST of log/ after the previous head. */
    snprintf(keys, sizeof keys, "{\"op\":\"get\",\"keys\":[\"%s\"]}", logk);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign", "%s", keys);
    expect(&r, 200, NULL);
    free(bad);
    bad = url_of(&r, 0);
    resp_free(&r);
    assert_int_equal(s3_call("GET", bad, 0, NULL, &got), 200);
    assert_string_equal(got, "tx");
    free(got);
    got = NULL;
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign",
             "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"log/%020lld\"}", n - 1);
    expect(&r, 200, NULL);
    free(bad);
    bad = url_of(&r, 0);
    char want[300];
    snprintf(want, sizeof want, "<Key>%s%s</Key>", jstr(&r, "key_prefix"), logk);
    resp_free(&r);
    assert_int_equal(s3_call("GET", bad, 0, NULL, &got), 200);
    assert_non_null(strstr(got, want));
    free(got);

    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 1); /* repeated: recognised, and releases */
    expect(&r, 200, NULL);
    assert_true(json_is_true(json_object_get(r.json, "released")));
    resp_free(&r);
    assert_int_equal(head(&h->p, h->io, "io"), n);
    free(put);
    free(data_put);
    free(bad);
}

static void test_http_restart(void **state)
{
    H *h = *state;
    lease_t l = acquire(&h->p, h->io, "io", 30);
    resp r = release(&h->p, h->io, "io", &l);
    resp_free(&r);
    long long before = head(&h->p, h->io, "io");
    assert_int_equal(lockd_stop(&h->p, SIGTERM), 0);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), before);
    lease_t m = acquire(&h->p, h->io, "io", 30);
    assert_true(m.fencing > l.fencing);
    r = release(&h->p, h->io, "io", &m);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void test_http_sigkill_reconcile(void **state)
{
    H *h = *state;
    char keys[64], *put = NULL, dir[600], tok[64];
    lease_t l = acquire(&h->p, h->io, "io", 60);
    long long n = l.head + 1;

    snprintf(keys, sizeof keys, "[\"log/%020lld\"]", n);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 200, NULL);
    put = url_of(&r, 0);
    resp_free(&r);
    assert_int_equal(s3_call("PUT", put, 1, "tx", NULL), 200);
    free(put);
    /* Killed between the upload and the commit. */
    assert_int_equal(lockd_stop(&h->p, SIGKILL), 1000 + SIGKILL);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), n); /* reconciled at start */
    /* The lease survived; its holder's commit is recognised, not refused. */
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 1);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "head"), n);
    resp_free(&r);

    /* Sequences written behind lockd's back (a lost database, a lost commit). */
    put_log(h->io_store, n + 1);
    put_log(h->io_store, n + 2);
    put_log(h->io_store, n + 4); /* after a gap: never counted */
    assert_int_equal(lockd_stop(&h->p, SIGKILL), 1000 + SIGKILL);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), n + 2);
    lease_t m = acquire(&h->p, h->io, "io", 30);
    assert_int_equal(m.head, n + 2);
    assert_true(m.fencing > l.fencing);
    r = release(&h->p, h->io, "io", &m);
    resp_free(&r);

    /* A fresh database finds the same head in the bucket. */
    lockd_proc fresh;
    snprintf(dir, sizeof dir, "%s/fresh", tmp_root);
    lockd_config(&fresh, dir, "io", NULL);
    add_device(&fresh, "io-b", "io", 0, tok);
    lockd_start(&fresh);
    assert_int_equal(head(&fresh, tok, "io"), n + 2);
    assert_int_equal(lockd_stop(&fresh, SIGTERM), 0);
}

/* Writers that all want the next sequence: each cycle is the client's whole
 * write path (acquire, waiting on lease_held; presign; PUT; commit+release).
 * Every sequence must be committed exactly once, with no gap. */
typedef struct writer {
    const lockd_proc *p;
    const char *tok;
    long long committed[CYCLES];
    int n, waits;
} writer;

static void *write_cycles(void *arg)
{
    writer *w = arg;
    char path[] = "/v1/repos/busy/lease", keys[64];
    while (w->n < CYCLES) {
        resp r = call(w->p, "POST", w->tok, path, "{\"ttl\": 10}");
        if (r.status == 409) { /* held: wait as told, briefly */
            long long ms = jint(&r, "retry_after_ms");
            resp_free(&r);
            w->waits++;
            usleep((useconds_t)(ms < 20 ? ms : 20) * 1000 + 1000);
            continue;
        }
        if (r.status != 201) return r.body; /* leaked on purpose: the failure message */
        lease_t l = {{0}, jint(&r, "fencing_token"), jint(&r, "head")};
        snprintf(l.id, sizeof l.id, "%s", jstr(&r, "lease_id"));
        resp_free(&r);
        snprintf(keys, sizeof keys, "[\"log/%020lld\"]", l.head + 1);
        r = presign_put(w->p, w->tok, "busy", &l, l.fencing, keys);
        char *url = r.status == 200 ? url_of(&r, 0) : NULL;
        resp_free(&r);
        if (!url || s3_call("PUT", url, 1, "tx", NULL) != 200) {
            free(url);
            return strdup("presign or PUT failed");
        }
        free(url);
        r = commit(w->p, w->tok, "busy", &l, l.fencing, l.head + 1, 1);
        if (r.status != 200 || jint(&r, "head") != l.head + 1) return r.body;
        resp_free(&r);
        w->committed[w->n++] = l.head + 1;
    }
    return NULL;
}

static void test_http_concurrent_writers(void **state)
{
    H *h = *state;
    pthread_t t[WRITERS];
    writer w[WRITERS];
    int seen[WRITERS * CYCLES + 1] = {0}, waits = 0;
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){&h->p, h->busy[i], {0}, 0, 0};
        pthread_create(&t[i], NULL, write_cycles, &w[i]);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *msg = NULL;
        pthread_join(t[i], &msg);
        if (msg) fail_msg("writer %d: %s", i, (char *)msg);
        waits += w[i].waits;
        for (int c = 0; c < CYCLES; c++) {
            long long seq = w[i].committed[c];
            assert_true(seq >= 1 && seq <= WRITERS * CYCLES);
            assert_int_equal(seen[seq]++, 0); /* never twice */
        }
    }
    assert_int_equal(head(&h->p, h->busy[0], "busy"), WRITERS * CYCLES); /* no gap */
    assert_true(waits > 0);                                              /* they did contend */
}

static void test_http_tls(void **state)
{
    char dir[600], cmd[2000], tok[64];
    lockd_proc p;
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) skip();
    snprintf(dir, sizeof dir, "%s/tls", tmp_root);
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem "
             "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             dir);
    if (system(cmd) != 0) skip();
    lockd_config(&p, dir, "io", "cert = cert.pem\nkey = key.pem\n");
    add_device(&p, "tls-dev", "io", 1, tok);
    lockd_start(&p);
    p.tls = 1;
    snprintf(cmd, sizeof cmd, "%s/cert.pem", dir);
    cafile = cmd;
    resp r = call(&p, "GET", NULL, "/healthz", NULL);
    expect(&r, 200, NULL);
    resp_free(&r);
    assert_true(head(&p, tok, "io") >= 1);
    cafile = NULL;
    p.tls = 0; /* plain HTTP to the TLS port gets no HTTP answer */
    r = call(&p, "GET", NULL, "/healthz", NULL);
    assert_int_not_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(lockd_stop(&p, SIGTERM), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_routes),
        cmocka_unit_test(test_http_auth),
        cmocka_unit_test(test_http_race),
        cmocka_unit_test(test_http_expiry_takeover),
        cmocka_unit_test(test_http_stale_fencing),
        cmocka_unit_test(test_http_presign_commit),
        cmocka_unit_test(test_http_restart),
        cmocka_unit_test(test_http_sigkill_reconcile),
        cmocka_unit_test(test_http_concurrent_writers),
        cmocka_unit_test(test_http_tls),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    unsigned char rnd[8];
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/http: skipped (no RGW: run through ci/test.sh, or eval "
                        "\"$(ci/rgw.sh start)\")\n");
        return 77;
    }
    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    snprintf(bucket_base, sizeof bucket_base, "s3://%s/lockd-%s", bucket, tag);
    /* test-lockd-http-bucket: every daemon's state in the bucket, not in SQLite. */
    const char *kind = getenv("S3SYNC_TEST_LOCKD_STATE");
    if (kind && !strcmp(kind, "bucket"))
        snprintf(state_base, sizeof state_base, "s3://%s/lockd-state-%s", bucket, tag);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests_name("lockd/http", tests, http_setup, http_teardown);
    lockd_kill_all(); /* what failed tests left running */
    curl_global_cleanup();
    return failed;
}
