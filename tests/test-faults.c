/*
 * test-faults: store faults, end to end. Owns the scenarios where the s3sync
 * binary talks to the real RGW through faultproxy (faultproxy.h), which
 * drops connections before and after relaying, answers 500 and 503
 * SlowDown, stalls, and cuts response bodies; and RGW outages mid-push:
 * radosgw stopped with SIGSTOP and resumed with SIGCONT, and radosgw
 * SIGKILLed and started again (ci/rgw.sh restart-gateway). memstore keeps
 * the data only while the OSD lives, so the OSD is never touched. Both
 * outages take the gateway away from every client of it, so they run on a
 * private cluster this suite starts (ci/rgw.sh start with its own
 * S3SYNC_RGW_DIR) and stops, never on the shared RGW that other suites use
 * at the same time.
 *
 * What must hold: every command exits 0 or 75 (never 1, 3, a signal or a
 * hang); once the faults stop, syncing again converges, and both folders
 * hold exactly what A wrote (nothing lost, no conflict copy).
 *
 * Retries: the mixes run every command with AWS_MAX_ATTEMPTS=4 (each request
 * tried at most 4 times: most commands still succeed, some give up with 75,
 * and backoff stays under ~3 s per request); the storm mix with 2, so that
 * commands give up midway; the outage with 3. Single targeted faults use the
 * default (7) and must not fail the command at all.
 *
 * Seeds: one per run, printed; mix i runs with seed N + i, and
 * S3SYNC_FAULT_SEED=N replays run N (which request meets which fault still
 * depends on timing where requests run in parallel). Debugging:
 * FAULTPROXY_LOG=1 prints each fault; S3SYNC_KEEP=1 keeps the folders
 * and store objects; S3SYNC_FAULT_ONLY=test_mix_storm runs one test (a cmocka
 * filter: * and ? only); S3SYNC_TEST_PART=shared or outage runs the tests on the
 * shared RGW or those on the private cluster (ctest runs them as two entries). Needs RGW
 * (ci/rgw.sh): skipped with 77 otherwise; the outages also need the Ceph daemons here (skipped
 * without them). The private cluster's folder is S3SYNC_OUTAGE_RGW_DIR, by default rgw-outage/
 * beside this binary: a run killed before it stopped the cluster leaves
 * it running, and the next run reuses it.
 *
 * test_cut_listing and test_lost_log_answer are regression tests of two
 * bugs this suite found (the mixes met both at random); their comments say
 * what went wrong.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "faultproxy.h"
#include "s3store.h"

#define ROUNDS 4
#define CMD_LIMIT_S 60 /* a command running longer hangs: a bug */

static faultproxy *g_proxy;
static uint64_t g_base_seed; /* S3SYNC_FAULT_SEED, or random */
static uint64_t g_seed;      /* the case's: base + mix index */
static pid_t g_rgw_stopped;  /* radosgw pid while SIGSTOPped, to resume whatever happens */

/* The outages' own cluster (ci/rgw.sh), started on first use. */
static struct {
    int tried, up;     /* start attempted; it answers */
    char dir[512];     /* its S3SYNC_RGW_DIR */
    char endpoint[64]; /* http://127.0.0.1:PORT, radosgw itself */
    char access[64], secret[128];
    faultproxy *proxy; /* in front of it: a load balancer's gateway timeout */
} g_priv;

static pid_t private_radosgw(void);
static void credentials_back(void);

/* The shared RGW's settings, put back after a private-cluster test. */
static char *g_shared_env[3];
static const char *const g_env_names[3] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_ENDPOINT_URL"};

/* --- worlds ------------------------------------------------------------------------- */

static void resume_rgw(void)
{
    if (g_rgw_stopped > 0) kill(g_rgw_stopped, SIGCONT);
    g_rgw_stopped = 0;
}

static int world_setup(void **state)
{
    fp_set(g_proxy, NULL, 0);
    return world_open(state);
}

static int world_teardown(void **state)
{
    resume_rgw();
    fp_set(g_proxy, NULL, 0);
    return world_close(state);
}

/* ci/rgw.sh CMD on the private cluster's folder; its outcome. */
static outcome private_rgw_sh(const char *cmd)
{
    char dir[600];
    snprintf(dir, sizeof dir, "S3SYNC_RGW_DIR=%s", g_priv.dir);
    /* memstore holds the objects in the OSD's RAM: 1 GiB is plenty for these tests */
    return finish(start_prog(ARGS(dir, "S3SYNC_RGW_MEMSTORE_BYTES=1073741824"),
                             ARGS("/bin/bash", S3SYNC_RGW_SH, cmd)));
}

/* The value of `export NAME=VALUE` in text (rgw.sh's output), into out. */
static int export_value(const char *text, const char *name, char *out, size_t cap)
{
    char want[64];
    const char *p;
    snprintf(want, sizeof want, "export %s=", name);
    if (!(p = strstr(text, want))) return -1;
    p += strlen(want);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
    return 0;
}

/* Start (or reuse) the private cluster once; 0 when it answers. */
static int private_rgw_start(void)
{
    const char *dir = getenv("S3SYNC_OUTAGE_RGW_DIR");
    outcome o;
    double t0 = now_s();
    if (g_priv.tried) return g_priv.up ? 0 : -1;
    g_priv.tried = 1;
    snprintf(g_priv.dir, sizeof g_priv.dir, "%s", dir && *dir ? dir : S3SYNC_OUTAGE_RGW_DIR);
    o = private_rgw_sh("start");
    if (o.code ||
        export_value(o.out, "AWS_ENDPOINT_URL", g_priv.endpoint, sizeof g_priv.endpoint) ||
        export_value(o.out, "AWS_ACCESS_KEY_ID", g_priv.access, sizeof g_priv.access) ||
        export_value(o.out, "AWS_SECRET_ACCESS_KEY", g_priv.secret, sizeof g_priv.secret)) {
        fprintf(stderr, "ci/rgw.sh start (S3SYNC_RGW_DIR=%s): exit %d\n%s", g_priv.dir, o.code,
                o.err);
        outcome_free(&o);
        return -1;
    }
    outcome_free(&o);
    if (!(g_priv.proxy = fp_start(g_priv.endpoint, g_base_seed))) return -1;
    g_priv.up = 1;
    fprintf(stderr, "outage: private RGW at %s (%s), up in %.1f s\n", g_priv.endpoint, g_priv.dir,
            now_s() - t0);
    return 0;
}

static void private_rgw_stop(void)
{
    outcome o;
    if (!g_priv.tried) return;
    if (g_priv.proxy) fp_stop(g_priv.proxy);
    g_priv.proxy = NULL;
    o = private_rgw_sh("stop");
    if (o.code) fprintf(stderr, "ci/rgw.sh stop (S3SYNC_RGW_DIR=%s): %s", g_priv.dir, o.err);
    outcome_free(&o);
    g_priv.tried = g_priv.up = 0;
}

/*
 * A world on the private cluster: every s3sync of the test (and world_close)
 * talks to it, through its proxy (proxied) or to radosgw itself. Skipped when
 * the Ceph daemons are not installed; a cluster that does not come up fails.
 */
static int private_world_setup(void **state, int proxied)
{
    if (private_rgw_start()) {
        if (access("/usr/bin/radosgw", X_OK)) {
            fprintf(stderr, "outage: no radosgw here to start a private cluster: skipped\n");
            *state = NULL;
            return 0;
        }
        return -1;
    }
    fp_set(g_priv.proxy, NULL, 0);
    for (size_t i = 0; i < COUNT(g_env_names); i++) {
        const char *v = getenv(g_env_names[i]);
        free(g_shared_env[i]);
        g_shared_env[i] = v ? strdup(v) : NULL;
    }
    setenv("AWS_ACCESS_KEY_ID", g_priv.access, 1);
    setenv("AWS_SECRET_ACCESS_KEY", g_priv.secret, 1);
    setenv("AWS_ENDPOINT_URL", proxied ? fp_url(g_priv.proxy) : g_priv.endpoint, 1);
    return world_open(state);
}

static int private_proxied_setup(void **state)
{
    return private_world_setup(state, 1);
}

static int private_direct_setup(void **state)
{
    return private_world_setup(state, 0);
}

static int private_world_teardown(void **state)
{
    int rc = 0;
    resume_rgw();
    credentials_back();    /* a test that failed with them taken away */
    if (!*state) return 0; /* skipped */
    fp_set(g_priv.proxy, NULL, 0);
    if (!private_radosgw()) { /* a test that failed with the gateway down: bring it back */
        outcome o = private_rgw_sh("restart-gateway");
        outcome_free(&o);
    }
    rc = world_close(state); /* its prefix on the private cluster */
    for (size_t i = 0; i < COUNT(g_env_names); i++) {
        if (g_shared_env[i])
            setenv(g_env_names[i], g_shared_env[i], 1);
        else
            unsetenv(g_env_names[i]);
        free(g_shared_env[i]);
        g_shared_env[i] = NULL;
    }
    return rc;
}

/* --- commands under faults ---------------------------------------------------------- */

/* Wait for c, killing it (and failing) after CMD_LIMIT_S. */
static outcome finish_limited(child c, const char *what)
{
    double t0 = now_s();
    siginfo_t si;
    for (;;) { /* WNOWAIT: finish() reaps it */
        si.si_pid = 0;
        if (!waitid(P_PID, (id_t)c.pid, &si, WEXITED | WNOHANG | WNOWAIT) && si.si_pid) break;
        if (now_s() - t0 > CMD_LIMIT_S) {
            outcome o;
            kill(c.pid, SIGKILL);
            o = finish(c);
            fprintf(stderr, "%s: still running after %d s (seed %" PRIu64 ")\nstderr: %s\n", what,
                    CMD_LIMIT_S, g_seed, o.err);
            outcome_free(&o);
            failf("%s hangs", what);
        }
        usleep(20000);
    }
    return finish(c);
}

/* Run cmd on d through the proxy: it must end with 0 or 75. Returns the exit code. */
static int run_faulty(const world *w, int d, const char *cmd, const char *const *env)
{
    char what[128];
    outcome o;
    int code;
    snprintf(what, sizeof what, "%s on %c", cmd, 'A' + d);
    o = finish_limited(start_cmd(w, d, env, cmd), what);
    code = o.code;
    {
        char *conf = o.json ? json_dumps(json_object_get(o.json, "conflicts"), JSON_COMPACT) : NULL;
        fprintf(stderr, "  %s: exit %d, seq %lld, %lld files, conflicts %s%s%.*s\n", what, code,
                o.json ? (long long)json_integer_value(json_object_get(o.json, "seq")) : -1,
                o.json ? (long long)json_integer_value(json_object_get(o.json, "files")) : -1,
                conf ? conf : "?", code ? ": " : "", code ? (int)strcspn(o.err, "\n") : 0, o.err);
        free(conf);
    }
    if (code != 0 && code != 75) {
        fprintf(stderr,
                "%s: exit %d (signal %d) under faults, seed %" PRIu64
                " (replay: S3SYNC_FAULT_SEED=%" PRIu64 ")\nstderr: %sstdout: %s\n",
                what, o.code, o.sig, g_seed, g_base_seed, o.err, o.out);
        outcome_free(&o);
        failf("%s: exit %d; only 0 or 75 may end a command under store faults", what, code);
    }
    outcome_free(&o);
    return code;
}

/* With the faults off, sync A and B until both succeed in the same pass. */
static void converge(const world *w)
{
    for (int pass = 0; pass < 4; pass++) {
        int a = run_faulty(w, A, "sync", NULL), b = run_faulty(w, B, "sync", NULL);
        if (!a && !b) return;
    }
    failf("no convergence after the faults stopped: syncs keep exiting 75");
}

/* A's folder is what it meant to publish: both folders must hold exactly it. */
static void expect_intended(const world *w, const char *intended)
{
    expect_same_tree(intended, w->dev[A]);
    expect_same_tree(intended, w->dev[B]);
}

/* Round r of A's work: creates, edits, deletes, and multi-MiB files (several packs). */
static void edit_round(const world *w, int r)
{
    char p[64], text[128];
    if (r == 0) {
        write_random(at(w, A, "big.bin"), 12 * MIB); /* more than one 8 MiB pack */
        write_random(at(w, A, "mid.bin"), 200000);
        write_bytes(at(w, A, "empty"), "", 0);
    } else {
        flip_middle_byte(at(w, A, "big.bin"));
        snprintf(p, sizeof p, "dir%d/f0", r - 1);
        rm_rf(at(w, A, p));
    }
    if (r == 2) {
        rm_rf(at(w, A, "mid.bin"));
        write_random(at(w, A, "big2.bin"), 5 * MIB);
    }
    if (r == 3) write_random(at(w, A, "mid.bin"), 300000);
    snprintf(text, sizeof text, "notes, round %d\n", r);
    write_bytes(at(w, A, "notes.txt"), text, strlen(text));
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "dir%d/f%d", r, k);
        snprintf(text, sizeof text, "file %d of round %d", k, r);
        write_bytes(at(w, A, p), text, strlen(text));
    }
    snprintf(p, sizeof p, "dir%d/blob", r);
    write_random(at(w, A, p), 70000);
}

/* --- scenarios: fault mixes --------------------------------------------------------- */

typedef struct mix {
    const char *name;
    fp_rates rates;
    const char *attempts; /* AWS_MAX_ATTEMPTS=N for every command */
} mix;

/* Rates in permille of requests. */
static const mix mixes[] = {
    {"drops and cuts",
     {.permille = {[FP_DROP_BEFORE] = 80, [FP_DROP_AFTER] = 100, [FP_TRUNCATE] = 100}},
     "AWS_MAX_ATTEMPTS=4"},
    {"errors and stalls",
     {.permille = {[FP_500] = 100, [FP_503] = 120, [FP_STALL] = 80}, .stall_ms = 400},
     "AWS_MAX_ATTEMPTS=4"},
    {"everything",
     {.permille = {[FP_DROP_BEFORE] = 50,
                   [FP_DROP_AFTER] = 60,
                   [FP_500] = 40,
                   [FP_503] = 40,
                   [FP_STALL] = 40,
                   [FP_TRUNCATE] = 60},
      .stall_ms = 250},
     "AWS_MAX_ATTEMPTS=4"},
    /* Half the requests fail and each is tried twice: commands give up midway. */
    {"storm",
     {.permille = {[FP_DROP_BEFORE] = 80,
                   [FP_DROP_AFTER] = 120,
                   [FP_500] = 60,
                   [FP_503] = 100,
                   [FP_STALL] = 40,
                   [FP_TRUNCATE] = 120},
      .stall_ms = 100},
     "AWS_MAX_ATTEMPTS=2"},
};

static void run_mix(world *w, const mix *m, uint64_t seed)
{
    const char *const env[] = {m->attempts, NULL};
    char intended[200];
    uint64_t before[FP_KINDS], after[FP_KINDS];
    int exits75 = 0, cmds = 0;
    double t0 = now_s();
    g_seed = seed;
    fprintf(stderr,
            "faults: mix \"%s\", seed %" PRIu64 " (replay: S3SYNC_FAULT_SEED=%" PRIu64 ")\n",
            m->name, seed, g_base_seed);
    join(w, A); /* joined without faults: init under faults is not this test's business */
    join(w, B);
    fp_counts(g_proxy, before);
    fp_set(g_proxy, &m->rates, seed);
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(g_step, sizeof g_step, "mix \"%s\" seed %" PRIu64 " round %d", m->name, seed, r);
        edit_round(w, r);
        exits75 += run_faulty(w, A, "sync", env) == 75;
        exits75 += run_faulty(w, B, "sync", env) == 75;
        cmds += 2;
    }
    fp_set(g_proxy, NULL, 0);
    fp_counts(g_proxy, after);
    fprintf(stderr, "faults: %d commands, %d exited 75; relayed %" PRIu64, cmds, exits75,
            after[FP_NONE] - before[FP_NONE]);
    for (int k = FP_DROP_BEFORE; k < FP_KINDS; k++)
        fprintf(stderr, ", %s %" PRIu64, fp_name((fp_fault)k), after[k] - before[k]);
    fprintf(stderr, "; %.1f s\n", now_s() - t0);
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    snapshot(w->dev[A], intended); /* what A holds now is what it meant to publish */
    snprintf(g_step, sizeof g_step, "mix \"%s\" seed %" PRIu64 " convergence", m->name, seed);
    converge(w);
    expect_intended(w, intended);
    g_step[0] = '\0';
}

static void test_mix_drops(void **state)
{
    run_mix(*state, &mixes[0], g_base_seed + 0);
}

static void test_mix_errors(void **state)
{
    run_mix(*state, &mixes[1], g_base_seed + 1);
}

static void test_mix_everything(void **state)
{
    run_mix(*state, &mixes[2], g_base_seed + 2);
}

static void test_mix_storm(void **state)
{
    run_mix(*state, &mixes[3], g_base_seed + 3);
}

/* --- scenarios: one fault where it hurts most ---------------------------------------- */

/*
 * One fault, on the first request matching a pattern: the command must
 * still succeed (a single transient fault is what retries are for), with no
 * conflict copy, and the devices converge on A's content. A dropped answer
 * to the create-only PUT of log/N is the sharp one: the PUT did create the
 * object, so its retry meets 412, which must not read as "another device
 * took N" followed by a conflict with our own transaction.
 */
typedef struct one_fault {
    const char *what;
    fp_fault fault;
    const char *match;
    int dev; /* whose sync meets it: A pushes, B pulls */
} one_fault;

/* A new pack and edits on A; the fault on the first request matching; then converge. */
static void play_one_fault(world *w, const one_fault *c, int i)
{
    fp_rates one = {.stall_ms = 2000, .match = c->match, .limit = 1};
    uint64_t c0[FP_KINDS], c1[FP_KINDS];
    char intended[200], name[64];
    json_t *conf;
    outcome o;
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    snprintf(g_step, sizeof g_step, "%s", c->what);
    one.permille[c->fault] = 1000;
    snprintf(name, sizeof name, "case%d/blob", i); /* a new pack each time */
    write_random(at(w, A, name), 300000);
    snprintf(name, sizeof name, "case%d/note", i);
    write_bytes(at(w, A, name), c->what, strlen(c->what));
    write_bytes(at(w, A, "notes.txt"), c->what, strlen(c->what));
    if (c->dev == B) ok(w, A, "sync");
    fp_counts(g_proxy, c0);
    fp_set(g_proxy, &one, 0);
    o = finish_limited(start_cmd(w, c->dev, NULL, "sync"), c->what);
    fp_set(g_proxy, NULL, 0);
    fp_counts(g_proxy, c1);
    if (c1[c->fault] == c0[c->fault])
        failf("no request matched %s: the case tests nothing", c->match);
    expect_exit(&o, 0, c->what);
    conf = json_object_get(o.json, "conflicts");
    if (json_array_size(conf)) {
        char *text = json_dumps(o.json, 0);
        fprintf(stderr, "%s: sync on %c reported conflicts: %s\nstderr: %s\n", c->what,
                'A' + c->dev, text, o.err);
        free(text);
        outcome_free(&o);
        failf("a conflict with its own write after one store fault");
    }
    outcome_free(&o);
    if (c->dev == A) ok(w, B, "sync");
    rm_rf(intended);
    snapshot(w->dev[A], intended);
    ok(w, A, "sync");
    ok(w, B, "sync");
    expect_intended(w, intended);
    rm_rf(intended);
    g_step[0] = '\0';
}

static void test_targeted(void **state)
{
    static const one_fault cases[] = {
        {"answer to the log PUT dropped", FP_DROP_AFTER, "PUT */log/*", A},
        {"answer to a pack PUT dropped", FP_DROP_AFTER, "PUT */data/*", A},
        {"log PUT dropped before relaying", FP_DROP_BEFORE, "PUT */log/*", A},
        {"log PUT answered 503 SlowDown", FP_503, "PUT */log/*", A},
        {"log PUT answered 500", FP_500, "PUT */log/*", A},
        {"log GET cut in half", FP_TRUNCATE, "GET */log/*", B},
        {"pack GET cut in half", FP_TRUNCATE, "GET */data/*", B},
        {"answer to a pack GET dropped", FP_DROP_AFTER, "GET */data/*", B},
        {"answer to a listing dropped", FP_DROP_AFTER, "GET *list-type=2*", B},
        {"log GET stalled 2 s", FP_STALL, "GET */log/*", B},
    };
    world *w = *state;
    g_seed = 0;
    join(w, A);
    join(w, B);
    for (size_t i = 0; i < COUNT(cases); i++)
        play_one_fault(w, &cases[i], (int)i);
}

/*
 * Regression (s3store/s3_http.c): a ListObjectsV2 answer cut mid-body was
 * retried as if it were an object GET: the retry carried "Range:
 * bytes=<received>-" and its body was appended to the part already
 * received. RGW ignores Range on a listing and sends the whole page again,
 * so the page was half a page plus a page, "not a listing", exit 1. A
 * listing restarts from an empty page on retry (s3_http's whole_body).
 */
static void test_cut_listing(void **state)
{
    static const one_fault cut = {"listing cut in half", FP_TRUNCATE, "GET *list-type=2*", B};
    world *w = *state;
    g_seed = 0;
    join(w, A);
    join(w, B);
    play_one_fault(w, &cut, 0);
}

/*
 * Regression (core/push.c + core/pull.c): the answer to A's create-only PUT
 * of log/N is lost on every attempt, so the push exits 75 believing N
 * unwritten, while log/N (A's own transaction) is in the store. A edits
 * on; its next sync used to pull log/N as a foreign transaction over the
 * newer edits: the newer version of a file became a conflict copy of A's
 * own write, a file A deleted since came back, and an edit that restored
 * the last-synced content was silently overwritten (seen in the storm mix
 * as big.bin's last version lost). Push now records the transaction's
 * sequence and hash in .s3sync/inflight before the PUT, and pull adopts a
 * matching log/N into the state without touching the folder.
 */
static void test_lost_log_answer(void **state)
{
    static const char *const env[] = {"AWS_MAX_ATTEMPTS=2", NULL};
    const fp_rates lost = {.permille = {[FP_DROP_AFTER] = 1000}, .match = "PUT */log/*"};
    world *w = *state;
    char intended[200];
    outcome o;
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    g_seed = 0;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "keep.txt"), "v1", 2);
    write_bytes(at(w, A, "stays.txt"), "untouched", 9);
    ok(w, A, "sync");
    ok(w, B, "sync");

    /* The push whose every answer is lost: exit 75, yet log/2 is A's transaction. */
    write_bytes(at(w, A, "keep.txt"), "v2", 2);
    write_bytes(at(w, A, "new.txt"), "made in the push whose answer was lost", 38);
    fp_set(g_proxy, &lost, 0);
    o = finish_limited(start_cmd(w, A, env, "sync"), "sync on A, log PUT answers lost");
    fp_set(g_proxy, NULL, 0);
    expect_exit(&o, 75, "sync on A whose log PUT answers were all lost");
    outcome_free(&o);

    /* A goes on: a newer version, and the new file deleted again. */
    write_bytes(at(w, A, "keep.txt"), "v3", 2);
    rm_rf(at(w, A, "new.txt"));
    snapshot(w->dev[A], intended);
    snprintf(g_step, sizeof g_step, "after a push whose log/N answer was lost");
    converge(w);
    expect_intended(w, intended);
    g_step[0] = '\0';
}

/* --- scenarios: RGW stopped, and killed, mid-push ------------------------------------ */

/*
 * The radosgw of the private cluster (its pid file, or the pid rgw.sh
 * launched), or 0. Only a radosgw whose command line names that cluster's
 * ceph.conf: never the shared one, never a reused pid.
 */
static pid_t private_radosgw(void)
{
    static const char *const files[] = {"run/client.rgw.s3sync.pid",
                                        "run/client.rgw.s3sync.launch"};
    char conf[600];
    snprintf(conf, sizeof conf, "%s/ceph.conf", g_priv.dir);
    for (size_t i = 0; i < COUNT(files); i++) {
        char path[64];
        size_t len = 0;
        char *text = read_file(at_dir(g_priv.dir, files[i]), &len), *cmd, *comm;
        long pid = text ? strtol(text, NULL, 10) : 0;
        int ours = 0;
        free(text);
        if (pid <= 0) continue;
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        comm = read_file(path, &len);
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        if (comm && !strncmp(comm, "radosgw", 7) && (cmd = read_file(path, &len))) {
            for (size_t k = 0; k < len; k += strlen(cmd + k) + 1) /* NUL-separated arguments */
                ours |= !strcmp(cmd + k, conf);
            free(cmd);
        }
        free(comm);
        if (ours) return (pid_t)pid;
    }
    return 0;
}

/*
 * A pushes 40 MiB (5 packs); after its first requests went through, radosgw
 * is stopped. The proxy stands in for a load balancer: after 1.5 s without
 * an answer it says 504 (without it, each attempt waits for the client's
 * 30 s stall limit). The push must give up with 75 and leave A's folder
 * and state as they were; once radosgw runs again, syncing converges.
 * AWS_MAX_ATTEMPTS=3 keeps the give-up to a few seconds. On the private
 * cluster, through its proxy.
 */
static void test_rgw_outage_mid_push(void **state)
{
    static const char *const env[] = {"AWS_MAX_ATTEMPTS=3", NULL};
    const fp_rates gateway = {.timeout_ms = 1500};
    world *w = *state;
    faultproxy *proxy = g_priv.proxy;
    pid_t rgw;
    uint64_t c0[FP_KINDS], c[FP_KINDS];
    char intended[200];
    double t0;
    child ch;
    outcome o;
    if (!w) skip();
    if (!(rgw = private_radosgw())) failf("no radosgw of the private cluster in %s", g_priv.dir);
    g_seed = 0;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "before.txt"), "synced before the outage", 24);
    ok(w, A, "sync");
    ok(w, B, "sync");
    write_random(at(w, A, "huge.bin"), 40 * MIB);
    write_bytes(at(w, A, "during.txt"), "written before the outage", 25);
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    snapshot(w->dev[A], intended);

    fp_set(proxy, &gateway, 0);
    fp_counts(proxy, c0);
    ch = start_cmd(w, A, env, "push");
    t0 = now_s();
    do { /* a pack or two are up: stop radosgw in the middle of the push */
        usleep(2000);
        fp_counts(proxy, c);
    } while (c[FP_NONE] - c0[FP_NONE] < 2 && now_s() - t0 < 20);
    if (kill(rgw, SIGSTOP)) failf("SIGSTOP radosgw %d: %s", (int)rgw, strerror(errno));
    g_rgw_stopped = rgw;
    fprintf(stderr,
            "outage: radosgw %d stopped after %" PRIu64 " requests (%.2f s into the push)\n",
            (int)rgw, c[FP_NONE] - c0[FP_NONE], now_s() - t0);
    o = finish_limited(ch, "push during the outage");
    fp_counts(proxy, c);
    fprintf(stderr, "outage: push exit %d after %.1f s, %" PRIu64 " gateway timeouts\n", o.code,
            now_s() - t0, c[FP_TIMEOUT] - c0[FP_TIMEOUT]);
    expect_exit(&o, 75, "push while radosgw is stopped");
    outcome_free(&o);
    expect_same_tree(intended, w->dev[A]); /* a push leaves the folder be */
    /* B, during the outage: also temporary, never more. */
    o = finish_limited(start_cmd(w, B, env, "sync"), "sync on B during the outage");
    expect_exit(&o, 75, "sync on B while radosgw is stopped");
    outcome_free(&o);

    resume_rgw();
    fp_set(proxy, NULL, 0);
    converge(w);
    expect_intended(w, intended);
}

/* SIGKILL the private radosgw and wait until it is gone (init reaps it: not our child). */
static void kill_gateway(void)
{
    pid_t rgw = private_radosgw();
    double t0 = now_s();
    if (!rgw) failf("no radosgw of the private cluster in %s", g_priv.dir);
    if (kill(rgw, SIGKILL)) failf("SIGKILL radosgw %d: %s", (int)rgw, strerror(errno));
    while (private_radosgw() == rgw && now_s() - t0 < 10)
        usleep(10000);
    if (private_radosgw() == rgw) failf("radosgw %d still runs 10 s after SIGKILL", (int)rgw);
}

static void restart_gateway(void)
{
    double t0 = now_s();
    outcome o = private_rgw_sh("restart-gateway");
    expect_exit(&o, 0, "ci/rgw.sh restart-gateway");
    outcome_free(&o);
    fprintf(stderr, "outage: radosgw answers again after %.2f s\n", now_s() - t0);
}

/* B syncs, and holds what the store held: its folder as it was, or all of A's push. */
static void expect_whole(const world *w, const char *old, const char *intended, const char *mark)
{
    int made_it;
    ok(w, B, "sync");
    made_it = !access(at(w, B, mark), F_OK);
    fprintf(stderr, "outage: B then pulled %s\n", made_it ? "all of A's push" : "nothing of it");
    expect_same_tree(made_it ? intended : old, w->dev[B]);
}

/*
 * The gateway dies: radosgw is SIGKILLed while A pushes (stopped at its
 * second pack, S3SYNC_PAUSE_AT=push.pack:2, so the kill lands with a pack
 * handed to the uploader and more to seal), then started again by
 * ci/rgw.sh restart-gateway on the same port and state; the OSD keeps the
 * objects. s3sync talks to radosgw directly: connections reset and refused.
 *   1. Down until the push gives up: it exits 75, A's folder is as it was,
 *      B's sync exits 75 and changes nothing; after the restart B pulls
 *      either nothing or all of A's push, and syncing converges.
 *   2. Back while the push still retries (7 attempts): it exits 0, or 75
 *      if the restart outlasted its retries; the same checks after.
 * Then verify --data on B: every pack a transaction references is whole.
 */
static void test_rgw_killed_mid_push(void **state)
{
    static const char *const quick[] = {"AWS_MAX_ATTEMPTS=3", "S3SYNC_PAUSE_AT=push.pack:2", NULL};
    static const char *const patient[] = {"S3SYNC_PAUSE_AT=push.pack:2", NULL};
    static const char *const fast[] = {"AWS_MAX_ATTEMPTS=3", NULL};
    world *w = *state;
    char intended[200], old[200];
    double t0;
    child ch;
    outcome o;
    if (!w) skip();
    g_seed = 0;
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    snprintf(old, sizeof old, "%s/old", w->root);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "before.txt"), "synced before the outage", 24);
    ok(w, A, "sync");
    ok(w, B, "sync");

    for (int phase = 1; phase <= 2; phase++) {
        char name[32];
        snprintf(g_step, sizeof g_step, "radosgw killed, phase %d", phase);
        snprintf(name, sizeof name, "huge%d.bin", phase);
        write_random(at(w, A, name), 40 * MIB);
        snprintf(name, sizeof name, "during%d.txt", phase);
        write_bytes(at(w, A, name), g_step, strlen(g_step));
        rm_rf(intended);
        rm_rf(old);
        snapshot(w->dev[A], intended);
        snapshot(w->dev[B], old);

        ch = start_cmd(w, A, phase == 1 ? quick : patient, "push");
        expect_stopped(ch, "push");
        kill_gateway();
        t0 = now_s();
        kill(ch.pid, SIGCONT);
        if (phase == 1) {
            o = finish_limited(ch, "push while radosgw is dead");
            fprintf(stderr, "outage: push exit %d %.1f s after radosgw died\n", o.code,
                    now_s() - t0);
            expect_exit(&o, 75, "push while radosgw is dead");
            outcome_free(&o);
            expect_same_tree(intended, w->dev[A]); /* a push leaves the folder be */
            o = finish_limited(start_cmd(w, B, fast, "sync"), "sync on B while radosgw is dead");
            expect_exit(&o, 75, "sync on B while radosgw is dead");
            outcome_free(&o);
            expect_same_tree(old, w->dev[B]);
            restart_gateway();
        } else {
            restart_gateway();
            o = finish_limited(ch, "push across a radosgw restart");
            fprintf(stderr, "outage: push exit %d %.1f s after radosgw died\n", o.code,
                    now_s() - t0);
            if (o.code != 0 && o.code != 75) expect_exit(&o, 0, "push across a radosgw restart");
            outcome_free(&o);
            expect_same_tree(intended, w->dev[A]);
        }
        expect_whole(w, old, intended, name);
        converge(w);
        expect_intended(w, intended);
    }
    g_step[0] = '\0';
    o = run_cli(NULL, ARGS("-C", w->dev[B], "--json", "verify", "--data"));
    expect_exit(&o, 0, "verify --data after the outages");
    outcome_free(&o);
}

/* --- scenario: a store that ignores If-None-Match ------------------------------------ */

static size_t count_keys(const char *url)
{
    size_t n;
    keys_free(store_keys(url, &n));
    return n;
}

/*
 * Direct mode rests on create-only puts (DESIGN: "init probes the store and
 * refuses direct mode where conditional create is not honoured"). The proxy
 * answers every 412 to a PUT with 200, as a store ignoring If-None-Match
 * would: init must refuse, naming the header, and leave neither a folder
 * nor a repository behind; joining an existing repository is refused the
 * same way. Through an honest store both work.
 */
static void test_init_refuses_store_ignoring_create_only(void **state)
{
    const fp_rates lying = {.permille = {[FP_OVERWRITE] = 1000}, .match = "PUT *"};
    world *w = *state;
    uint64_t c0[FP_KINDS], c1[FP_KINDS];
    outcome o;
    fp_counts(g_proxy, c0);
    fp_set(g_proxy, &lying, 0);
    o = run_cli(NULL, ARGS("--device", "A", "init", w->url, w->dev[A]));
    fp_set(g_proxy, NULL, 0);
    fp_counts(g_proxy, c1);
    expect_exit(&o, 1, "init through a store ignoring If-None-Match");
    if (!strstr(o.err, "If-None-Match") || strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
        failf("init's error is not one line naming If-None-Match: %s", o.err);
    outcome_free(&o);
    assert_int_equal(c1[FP_OVERWRITE] - c0[FP_OVERWRITE], 1);
    if (!access(at(w, A, ".s3sync"), F_OK)) failf("a refused init left %s", at(w, A, ".s3sync"));
    assert_int_equal(count_keys(w->url), 0); /* no config, no key file, no probe */

    join(w, A); /* an honest store */
    fp_set(g_proxy, &lying, 0);
    o = run_cli(NULL, ARGS("--device", "B", "init", w->url, w->dev[B]));
    fp_set(g_proxy, NULL, 0);
    expect_exit(&o, 1, "joining through a store ignoring If-None-Match");
    outcome_free(&o);
    if (!access(at(w, B, ".s3sync"), F_OK)) failf("a refused join left %s", at(w, B, ".s3sync"));
}

/* --- credentials taken away mid-push ----------------------------------------------------- */

static int g_creds_gone; /* the private cluster's user is without its key, or suspended */

/* radosgw-admin ARGS... on the private cluster (the user of ci/rgw.sh, s3sync-test). */
static void rgw_admin(const char *what, const char *const *args)
{
    char conf[600];
    const char *argv[16] = {"/usr/bin/radosgw-admin", "-c", conf};
    size_t n = 3;
    snprintf(conf, sizeof conf, "%s/ceph.conf", g_priv.dir);
    for (size_t i = 0; args[i] && n < COUNT(argv) - 1; i++)
        argv[n++] = args[i];
    outcome o = finish(start_prog(NULL, argv));
    expect_exit(&o, 0, what);
    outcome_free(&o);
}

/* The user's key and standing as ci/rgw.sh made them. */
static void credentials_back(void)
{
    if (!g_creds_gone) return;
    g_creds_gone = 0;
    rgw_admin("key create", ARGS("key", "create", "--uid=s3sync-test", "--access-key",
                                 g_priv.access, "--secret", g_priv.secret));
    rgw_admin("user enable", ARGS("user", "enable", "--uid=s3sync-test"));
}

/*
 * The credentials a push runs with stop working while it runs (a session
 * token expiring, a key rotated away, a user suspended): radosgw-admin
 * removes the user's key, then suspends the user, while A's push is stopped
 * at push.before-log (S3SYNC_PAUSE_AT), its packs uploaded with them. The
 * resumed push meets 403 InvalidAccessKeyId, then UserSuspended: exit 75
 * (try again later), A's folder as it was. A push that starts with the
 * credentials already refused stays exit 1 (they are wrong, not expired).
 * With them back, a push finishes and B gets every file: nothing lost.
 * On the private cluster (the key of the user every client of it uses).
 */
static void test_credentials_expire_mid_push(void **state)
{
    static const char *const pause[] = {"S3SYNC_PAUSE_AT=push.before-log:1", NULL};
    static const char *const code[] = {"InvalidAccessKeyId", "UserSuspended"};
    world *w = *state;
    char intended[200];
    outcome o;
    if (!w) skip();
    g_seed = 0;
    snprintf(intended, sizeof intended, "%s/intended", w->root);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "before.txt"), "synced before", 13);
    ok(w, A, "sync");
    ok(w, B, "sync");
    for (int round = 0; round < 2; round++) {
        char name[32];
        snprintf(g_step, sizeof g_step, "%s mid-push", code[round]);
        snprintf(name, sizeof name, "blob%d.bin", round);
        write_random(at(w, A, name), 300000);
        rm_rf(intended);
        snapshot(w->dev[A], intended);
        child ch = start_cmd(w, A, pause, "push");
        expect_stopped(ch, "push");
        g_creds_gone = 1;
        if (round)
            rgw_admin("user suspend", ARGS("user", "suspend", "--uid=s3sync-test"));
        else
            rgw_admin("key rm",
                      ARGS("key", "rm", "--uid=s3sync-test", "--access-key", g_priv.access));
        kill(ch.pid, SIGCONT);
        o = finish_limited(ch, "push whose credentials went away");
        expect_exit(&o, 75, "push whose credentials went away mid-push");
        if (!strstr(o.err, code[round])) failf("%s is not named: %s", code[round], o.err);
        outcome_free(&o);
        expect_same_tree(intended, w->dev[A]);
        o = run_cmd(w, A, NULL, "push");
        expect_exit(&o, 1, "push with credentials refused from the start");
        outcome_free(&o);
        credentials_back();
        ok(w, A, "push");
        ok(w, B, "sync");
        expect_same_tree(intended, w->dev[B]);
    }
    g_step[0] = '\0';
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)
#define PRIVATE_TEST(f, setup) cmocka_unit_test_setup_teardown(f, setup, private_world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_mix_drops),       WORLD_TEST(test_mix_errors),
        WORLD_TEST(test_mix_everything),  WORLD_TEST(test_mix_storm),
        WORLD_TEST(test_targeted),        WORLD_TEST(test_cut_listing),
        WORLD_TEST(test_lost_log_answer), WORLD_TEST(test_init_refuses_store_ignoring_create_only),
    };
    /* The part "outage": on the private cluster, so ctest may run it beside the part "shared". */
    const struct CMUnitTest outages[] = {
        PRIVATE_TEST(test_rgw_outage_mid_push, private_proxied_setup),
        PRIVATE_TEST(test_rgw_killed_mid_push, private_direct_setup),
        PRIVATE_TEST(test_credentials_expire_mid_push, private_direct_setup),
    };
    const char *endpoint = getenv("AWS_ENDPOINT_URL_S3"), *seed = getenv("S3SYNC_FAULT_SEED");
    int failed;

    if (!endpoint || !*endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (!fixture_bucket()) {
        fprintf(stderr, "test-faults: skipped (no RGW: run through ci/test.sh)\n");
        return 77;
    }
    if (fixture_init("faults")) return 1;
    fixture_use_s3(1);
    g_base_seed = seed && *seed ? strtoull(seed, NULL, 10) : randombytes_uniform(1000000);
    fprintf(stderr, "test-faults: seed %" PRIu64 " (replay: S3SYNC_FAULT_SEED=%" PRIu64 ")\n",
            g_base_seed, g_base_seed);

    if (!(g_proxy = fp_start(endpoint, g_base_seed))) return 1;
    /* Every client of this process and its children talks through the proxy. */
    setenv("AWS_ENDPOINT_URL", fp_url(g_proxy), 1);
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_MAX_ATTEMPTS");
    atexit(resume_rgw);
    if (getenv("S3SYNC_FAULT_ONLY")) cmocka_set_test_filter(getenv("S3SYNC_FAULT_ONLY"));

    failed = 0;
    if (fixture_part("shared")) failed = cmocka_run_group_tests_name("faults", tests, NULL, NULL);
    if (fixture_part("outage"))
        failed |= cmocka_run_group_tests_name("faults/outage", outages, NULL, NULL);
    resume_rgw();
    private_rgw_stop();
    fp_stop(g_proxy);
    return failed | fixture_parts_end();
}
