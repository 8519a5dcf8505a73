/*
 * test-doctor: `s3sync doctor` against the real RGW and a real s3sync-lockd,
 * with every check passing first and then one made to fail at a time: wrong
 * credentials (store), a proxy answering 412 as 200 (create-only: a store
 * ignoring If-None-Match), the proxy breaking ListObjectsV2 paging two ways
 * (paging), a clock an hour fast (S3SYNC_FAULT=clock-ahead),
 * .s3sync/ opened to others (folder), a nearly full tmpfs (disk; root only);
 * on lockd: stopped (lockd), a wrong token (token), a read-only device
 * (lease), lockd's bucket behind a proxy turning the 412 into 200 (presigned-put). Each
 * time exactly that check fails and doctor exits 1. And --json's
 * requests_by_class adds up to requests, lockd's calls in their own class.
 * Skipped without RGW.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "faultproxy.h"

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif

static faultproxy *g_proxy; /* in front of RGW: the create-only case */
static char g_dir[] = "/tmp/ss-doctor-XXXXXX";
static char g_conf[600], g_port_file[600];
static char g_lockd_base[256]; /* s3://BUCKET/doctor-lockd-TAG: the repository lockd serves */
static unsigned g_port;
static child g_lockd = {-1, -1, -1};

/* The status of check in doctor's --json, or "" when it was not run. */
static const char *status_of(const json_t *j, const char *check)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "checks"), i, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "check")), check))
            return json_string_value(json_object_get(c, "status"));
    }
    return "";
}

/*
 * doctor with args, which must exit 0 when fails is NULL, else 1 with
 * exactly the checks of fails ("a b", space-separated) failing.
 */
static void expect_doctor(const char *const *env, const char *const *args, const char *fails)
{
    outcome o = run_cli(env, args);
    size_t i;
    json_t *c;
    if (!json_is_object(o.json)) failf("doctor --json printed %s (stderr %s)", o.out, o.err);
    json_array_foreach(json_object_get(o.json, "checks"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "check"));
        const char *st = json_string_value(json_object_get(c, "status"));
        char padded[64];
        snprintf(padded, sizeof padded, " %s ", name);
        char want[256];
        snprintf(want, sizeof want, " %s ", fails ? fails : "");
        int should_fail = strstr(want, padded) != NULL;
        if (should_fail != !strcmp(st, "fail"))
            failf("doctor: %s is %s (%s), expected %s", name, st,
                  json_string_value(json_object_get(c, "message")),
                  should_fail ? "fail" : "ok or skip");
    }
    expect_exit(&o, fails ? 1 : 0, "doctor");
    outcome_free(&o);
}

/*
 * --json's requests_by_class of a push of one new file on d: the classes add
 * up to requests; want_lockd: the lockd class counted calls (else none).
 */
static void expect_classes(const world *w, int d, int want_lockd)
{
    json_t *j, *by;
    int64_t sum = 0;
    write_random(at(w, d, "counted.bin"), 200000);
    j = ok_json(w, d, "push");
    by = json_object_get(j, "requests_by_class");
    for (const char *const *c = ARGS("put", "get", "list", "delete", "head", "lockd"); *c; c++) {
        if (!json_is_integer(json_object_get(by, *c))) failf("no %s in requests_by_class", *c);
        sum += jint(by, *c);
    }
    if (sum != jint(j, "requests") || jint(by, "put") < 2 || jint(by, "delete") != 0 ||
        (jint(by, "lockd") > 0) != want_lockd)
        failf("push: %s requests, by class %s", json_dumps(j, 0), json_dumps(by, 0));
    json_decref(j);
}

/* --- direct mode on RGW -------------------------------------------------------------- */

static void test_s3(void **state)
{
    world *w = *state;
    char fault_env[] = "S3SYNC_FAULT=clock-ahead", meta[300];
    join(w, A);
    expect_classes(w, A, 0);
    outcome o = run_cli(NULL, ARGS("-C", w->dev[A], "--json", "doctor"));
    expect_exit(&o, 0, "doctor");
    for (const char *const *c = ARGS("store", "create-only", "paging", "clock", "folder", "disk");
         *c; c++)
        if (strcmp(status_of(o.json, *c), "ok")) failf("%s: %s", *c, status_of(o.json, *c));
    outcome_free(&o);
    /* Without --json: one line a check, on stdout, also in a pipe. */
    o = run_cli(NULL, ARGS("-C", w->dev[A], "doctor"));
    expect_exit(&o, 0, "doctor");
    if (!strstr(o.out, "ok    create-only") || !strstr(o.out, "ok    clock"))
        failf("doctor printed %s", o.out);
    outcome_free(&o);

    expect_doctor(ARGS("AWS_SECRET_ACCESS_KEY=wrong-secret"),
                  ARGS("-C", w->dev[A], "--json", "doctor"), "store");
    expect_doctor(ARGS(fault_env), ARGS("-C", w->dev[A], "--json", "doctor"), "clock");

    /* A store that answers a refused create-only PUT with 200, as one ignoring the header. */
    fp_rates r = {.permille = {[FP_OVERWRITE] = 1000}};
    fp_set(g_proxy, &r, 1);
    expect_doctor(NULL, ARGS("-C", w->dev[A], "--json", "--endpoint", fp_url(g_proxy), "doctor"),
                  "create-only");
    /* Stores whose ListObjectsV2 paging is broken: a truncated page without its next
     * token (a pull would stop short), a later page answered with the first (it would
     * never end). The proxy must have broken a page each time, or the test proves nothing. */
    for (int f = FP_NO_TOKEN; f <= FP_FIRST_PAGE; f++) {
        fp_rates pr = {.match = "GET *list-type=2*"};
        uint64_t before[FP_KINDS], after[FP_KINDS];
        pr.permille[f] = 1000;
        fp_counts(g_proxy, before);
        fp_set(g_proxy, &pr, 1);
        expect_doctor(NULL,
                      ARGS("-C", w->dev[A], "--json", "--endpoint", fp_url(g_proxy), "doctor"),
                      "paging");
        fp_counts(g_proxy, after);
        if (after[f] == before[f]) failf("faultproxy: no %s fault was injected", fp_name(f));
    }
    fp_set(g_proxy, NULL, 0);
    expect_doctor(NULL, ARGS("-C", w->dev[A], "--json", "--endpoint", fp_url(g_proxy), "doctor"),
                  NULL);

    snprintf(meta, sizeof meta, "%s/.s3sync", w->dev[A]);
    chmod(meta, 0755);
    expect_doctor(NULL, ARGS("-C", w->dev[A], "--json", "doctor"), "folder");
    chmod(meta, 0700);

    /* A STORE on the command line, outside any folder: the store's checks alone. */
    expect_doctor(NULL, ARGS("--json", "doctor", w->url), NULL);
}

/* The folder on a 16 MiB tmpfs: too little room for a pull (root only: mount). */
static void test_disk(void **state)
{
    world *w = *state;
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/small", w->root);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m")) {
        fprintf(stderr, "doctor/disk: skipped (cannot mount a tmpfs: not root)\n");
        return;
    }
    snprintf(w->dev[B], sizeof w->dev[B], "%.150s/B", mnt);
    join(w, B);
    expect_doctor(NULL, ARGS("-C", w->dev[B], "--json", "doctor"), "disk");
    rm_rf(w->dev[B]);
    umount(mnt);
}

/* --- lockd ----------------------------------------------------------------------------- */

static void lockd_start(const char *const *env)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", g_port); /* the first start picks a port */
    unlink(g_port_file);
    g_lockd = start_prog(env, ARGS(S3SYNC_LOCKD_BIN, "--config", g_conf, "--listen", listen,
                                   "--port-file", g_port_file));
    for (int i = 0; i < 1500; i++) { /* 30 s: an ASan build starts slower */
        FILE *f = fopen(g_port_file, "r");
        int ok = f && fscanf(f, "%u", &g_port) == 1;
        if (f) fclose(f);
        if (ok) return;
        if (waitpid(g_lockd.pid, NULL, WNOHANG)) failf("s3sync-lockd died at start");
        usleep(20000);
    }
    failf("s3sync-lockd did not start");
}

static void lockd_stop(void)
{
    outcome o;
    if (g_lockd.pid <= 0) return;
    kill(g_lockd.pid, SIGTERM);
    o = finish(g_lockd);
    g_lockd.pid = -1;
    outcome_free(&o);
}

static void lockd_reap(void)
{
    if (g_lockd.pid > 0) kill(g_lockd.pid, SIGKILL);
}

static void device_add(const char *name, int ro, const char *token_file)
{
    outcome o = finish(start_prog(NULL, ro ? ARGS(S3SYNC_LOCKD_BIN, "--config", g_conf, "device",
                                                  "add", name, "--repo", "doc", "--read-only")
                                           : ARGS(S3SYNC_LOCKD_BIN, "--config", g_conf, "device",
                                                  "add", name, "--repo", "doc")));
    expect_exit(&o, 0, "device add");
    write_bytes(token_file, o.out, strlen(o.out));
    outcome_free(&o);
}

static void test_lockd(void **state)
{
    world *w = *state;
    char bad_token[300], via[300];
    for (int d = 0; d < MAX_DEV; d++)
        snprintf(w->token[d], sizeof w->token[d], "%s/%c.token", w->root, 'A' + d);
    device_add("A", 0, w->token[A]);
    device_add("C", 1, w->token[C]);
    lockd_start(NULL);
    snprintf(w->url, sizeof w->url, "lockd:http://127.0.0.1:%u/doc", g_port);
    join(w, A);
    const char *const *doctor_a =
        ARGS("-C", w->dev[A], "--json", "--token-file", w->token[A], "doctor");
    outcome o = run_cli(NULL, doctor_a);
    expect_exit(&o, 0, "doctor");
    for (const char *const *c = ARGS("lockd", "token", "lease", "presigned-put", "folder"); *c; c++)
        if (strcmp(status_of(o.json, *c), "ok")) failf("%s: %s", *c, status_of(o.json, *c));
    outcome_free(&o);
    expect_classes(w, A, 1);

    snprintf(bad_token, sizeof bad_token, "%s/bad.token", w->root);
    write_bytes(bad_token, "s3sync-not-a-token\n", 19);
    expect_doctor(NULL, ARGS("-C", w->dev[A], "--json", "--token-file", bad_token, "doctor"),
                  "token");
    /* A read-only device: lockd takes its token but gives it no lease. */
    expect_doctor(NULL, ARGS("-C", w->dev[A], "--json", "--token-file", w->token[C], "doctor"),
                  "lease");
    /* lockd's bucket behind a proxy that answers a refused create-only PUT with 200. */
    lockd_stop();
    snprintf(via, sizeof via, "AWS_ENDPOINT_URL_S3=%s", fp_url(g_proxy));
    lockd_start(ARGS(via));
    fp_rates r = {.permille = {[FP_OVERWRITE] = 1000}, .match = "PUT *"};
    fp_set(g_proxy, &r, 1);
    expect_doctor(NULL, doctor_a, "presigned-put");
    fp_set(g_proxy, NULL, 0);
    expect_doctor(NULL, doctor_a, NULL);
    lockd_stop();
    expect_doctor(NULL, doctor_a, "lockd");
    snprintf(w->url, sizeof w->url, "%s", g_lockd_base); /* world_close empties it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s3, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_disk, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_lockd, world_open, world_close),
    };
    const char *endpoint = getenv("AWS_ENDPOINT_URL");
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    unsigned char rnd[8];
    char tag[17];
    FILE *f;
    int failed;
    if (fixture_init("doctor")) return 1;
    if (!fixture_bucket()) {
        fprintf(stderr, "doctor: skipped (no RGW: run through ci/test.sh)\n");
        return 77;
    }
    if (getenv("AWS_ENDPOINT_URL_S3")) endpoint = getenv("AWS_ENDPOINT_URL_S3");
    if (!(g_proxy = fp_start(endpoint, 1))) return 1;
    fixture_use_s3(1);
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    if (!mkdtemp(g_dir)) return 1;
    snprintf(g_conf, sizeof g_conf, "%s/lockd.conf", g_dir);
    snprintf(g_port_file, sizeof g_port_file, "%s/port", g_dir);
    f = fopen(g_conf, "w");
    snprintf(g_lockd_base, sizeof g_lockd_base, "s3://%s/doctor-lockd-%s", bucket, tag);
    if (!f || fprintf(f, "db = lockd.db\nrepo doc = %s\n", g_lockd_base) < 0 || fclose(f)) return 1;
    unsetenv("S3SYNC_FAULT");
    signal(SIGPIPE, SIG_IGN);
    atexit(lockd_reap);
    failed = cmocka_run_group_tests_name("doctor", tests, NULL, NULL);
    fp_stop(g_proxy);
    rm_rf(g_dir);
    return failed;
}
