/*
 * test-lockd-sync: the lockd: store end to end. A real s3sync-lockd
 * (S3SYNC_LOCKD_BIN) on a loopback port serves repositories under a random
 * prefix of the RGW bucket that ci/test.sh starts; then
 *
 *   lockd/store  the backend through the s3store API: a HEAD made of a
 *                ranged GET, presigned LIST pages, create-only puts under a
 *                lease and the commit of log/<seq>, log/ from lockd's head,
 *                the GET URL cache, what it refuses;
 *   lockd/sync   the real s3sync binary (S3SYNC_BIN, cli-fixture.h) with
 *                --token-file: two devices both ways, an idle sync in one
 *                request, read-only and bad tokens, a lease held by another
 *                device, concurrent pushes, s3sync killed at every push
 *                crash point, lockd killed with SIGKILL mid-push; two
 *                `s3sync watch` processes carrying a create, an edit and
 *                a delete, each idle poll one request (GET head); a
 *                revocation, an approval, and a forged checkpoint at the
 *                head refused by a device joining through lockd; a device
 *                that fetches from its peer (serve) instead of the bucket.
 *
 * Each world is a repository of its own (w1, w2, ...) with devices A and B
 * (read-write) and C (read-only). Lease holding by hand goes through the
 * curl command. Skipped (77) without RGW.
 *
 * The bucket credentials are lockd's alone: main() takes them out of this
 * process's environment before anything starts, so no s3sync here has any
 * (a lockd: client that went to the bucket itself would fail, as
 * test_no_bucket_credentials shows); lockd gets them back in its own
 * environment, and the test's own look at the bucket passes them as options.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "cli-fixture.h"
#include "faultproxy.h"
#include "forger.h"
#include "s3store.h"

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif

#define CURL_BIN "/usr/bin/curl"
#define REPOS 16 /* w1..w16: one per world, configured before lockd starts */

static char g_dir[] = "/tmp/ss-lockd-sync-XXXXXX";
static char g_base[256]; /* s3://BUCKET/lsync-TAG: the repositories' bucket prefix */
static char g_conf[600], g_port_file[600];
static unsigned g_port, g_worlds;
static child g_lockd = {-1, -1, -1};
static const char *g_lockd_env[5]; /* "AWS_ACCESS_KEY_ID=..." and co.: lockd's only */
static char g_lockd_via[300];      /* "AWS_ENDPOINT_URL_S3=PROXY": lockd's bucket behind a proxy */
static ss_store_opts g_bucket;     /* the same credentials, for the test's direct look */

/* Move the bucket credentials from the environment every child inherits to
 * lockd's and the test's own; and keep ~/.aws out of the children's reach. */
static int hide_bucket_credentials(void)
{
    static const char *const names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                        "AWS_SESSION_TOKEN"};
    const char **opt[] = {&g_bucket.access_key, &g_bucket.secret_key, &g_bucket.session_token};
    size_t n = 0;
    for (size_t i = 0; i < COUNT(names); i++) {
        const char *v = getenv(names[i]);
        char *e = NULL;
        if (!v || !*v) continue;
        if (asprintf(&e, "%s=%s", names[i], v) < 0) return -1;
        g_lockd_env[n++] = e;
        *opt[i] = e + strlen(names[i]) + 1;
        if (unsetenv(names[i])) return -1;
    }
    if (setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1) ||
        setenv("AWS_CONFIG_FILE", "/dev/null", 1) || unsetenv("AWS_PROFILE"))
        return -1;
    return 0;
}

/* --- the daemon ------------------------------------------------------------------------ */

static void lockd_start(void)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", g_port); /* the first start picks a port */
    unlink(g_port_file);
    const char *env[COUNT(g_lockd_env) + 1] = {0};
    size_t n = 0;
    while (g_lockd_env[n]) {
        env[n] = g_lockd_env[n];
        n++;
    }
    if (g_lockd_via[0]) env[n] = g_lockd_via;
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

/* Whatever ends the run (a failure outside a test exits), lockd goes with it. */
static void lockd_reap(void)
{
    if (g_lockd.pid > 0) kill(g_lockd.pid, SIGKILL);
}

/* Stop lockd with sig; its exit code, or 1000 + the signal that ended it. */
static int lockd_stop(int sig)
{
    outcome o;
    int code;
    if (g_lockd.pid <= 0) return -1;
    kill(g_lockd.pid, sig);
    o = finish(g_lockd);
    g_lockd.pid = -1;
    code = o.sig ? 1000 + o.sig : o.code;
    outcome_free(&o);
    return code;
}

/* `s3sync-lockd device add NAME --repo REPO [--read-only]`; the token into token_file. */
static void device_add(const char *repo, const char *name, int ro, const char *token_file)
{
    outcome o = finish(start_prog(NULL, ro ? ARGS(S3SYNC_LOCKD_BIN, "--config", g_conf, "device",
                                                  "add", name, "--repo", repo, "--read-only")
                                           : ARGS(S3SYNC_LOCKD_BIN, "--config", g_conf, "device",
                                                  "add", name, "--repo", repo)));
    expect_exit(&o, 0, "device add");
    write_bytes(token_file, o.out, strlen(o.out)); /* with its newline, as a user saves it */
    outcome_free(&o);
}

/* A lockd call by hand: method on /v1/repos/REPO/route as the device of token_file. */
static json_t *by_hand(const char *method, const char *token_file, const char *repo,
                       const char *route, const char *body)
{
    size_t len = 0;
    char url[256], auth[128], *tok = read_file(token_file, &len);
    outcome o;
    json_t *j;
    if (!tok) failf("no token in %s", token_file);
    snprintf(auth, sizeof auth, "Authorization: Bearer %.*s", (int)strcspn(tok, "\n"), tok);
    free(tok);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/repos/%s%s", g_port, repo, route);
    o = finish(start_prog(NULL, body ? ARGS(CURL_BIN, "-sS", "-X", method, "-H", auth, "-H",
                                            "Content-Type: application/json", "--data", body, url)
                                     : ARGS(CURL_BIN, "-sS", "-X", method, "-H", auth, url)));
    expect_exit(&o, 0, "curl");
    if (!json_is_object(o.json)) failf("lockd answered %s", o.out);
    j = json_incref(o.json);
    outcome_free(&o);
    return j;
}

static int64_t lockd_head(const char *token_file, const char *repo, int *ret_leased)
{
    json_t *j = by_hand("GET", token_file, repo, "/head", NULL);
    int64_t head = jint(j, "head");
    if (ret_leased) *ret_leased = json_is_true(json_object_get(j, "leased"));
    json_decref(j);
    return head;
}

static ss_store *direct_store(const char *repo)
{
    char url[400];
    ss_store *s = NULL;
    ss_err err = {{0}};
    snprintf(url, sizeof url, "%s/%s", g_base, repo);
    if (ss_store_open(url, &g_bucket, &s, &err)) failf("%s: %s", url, err.msg);
    return s;
}

static int count_key(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key, (void)st;
    (*(int64_t *)ctx)++;
    return 0;
}

/* The bucket's log/ of repo is log/1..head with nothing else: no gap, no sequence twice. */
static void expect_log_is_head(const char *repo, const char *token_file, int64_t want)
{
    ss_store *s = direct_store(repo);
    ss_err err = {{0}};
    int64_t n = 0, head = lockd_head(token_file, repo, NULL);
    char last[64];
    ss_store_stat st;
    if (ss_store_list(s, "log/", NULL, count_key, &n, &err)) failf("list: %s", err.msg);
    snprintf(last, sizeof last, "log/%020" PRId64, head);
    if (n != head || (head && ss_store_head(s, last, &st, &err)))
        failf("the bucket holds %" PRId64 " log objects, lockd's head is %" PRId64, n, head);
    if (want >= 0 && head != want) failf("head %" PRId64 ", expected %" PRId64, head, want);
    ss_store_free(s);
}

/* --- worlds: one repository each --------------------------------------------------------- */

static int world_setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    char repo[16], name[32];
    if (!w || g_worlds == REPOS) return -1;
    snprintf(w->root, sizeof w->root, "%s/world-XXXXXX", g_dir);
    if (!mkdtemp(w->root)) return -1;
    snprintf(repo, sizeof repo, "w%u", ++g_worlds);
    snprintf(w->url, sizeof w->url, "lockd:http://127.0.0.1:%u/%s", g_port, repo);
    for (int d = 0; d < MAX_DEV; d++) {
        snprintf(w->dev[d], sizeof w->dev[d], "%s/%c", w->root, 'A' + d);
        snprintf(w->token[d], sizeof w->token[d], "%s/%c.token", w->root, 'A' + d);
        snprintf(name, sizeof name, "%s-%c", repo, 'A' + d);
        device_add(repo, name, d == C, w->token[d]);
    }
    g_step[0] = '\0';
    *state = w;
    return 0;
}

static int world_teardown(void **state)
{
    world *w = *state;
    rm_rf(w->root);
    free(w);
    return 0;
}

static const char *repo_of(const world *w)
{
    return strrchr(w->url, '/') + 1;
}

/* --- lockd/sync ------------------------------------------------------------------------ */

static const step both_ways[] = {
    {A, 'w', "a.txt", "hello"},
    {A, 'r', "inline", "4000"},
    {A, 'r', "big.bin", "12582912"}, /* two packs, uploaded in parallel */
    {A, 'w', "deep/er/f.txt", "deep"},
    {A, 'm', "emptydir", NULL},
    {A, 'l', "link", "a.txt"},
    {A, 's', NULL, NULL},
    {B, 's', NULL, NULL},
    {A, '=', NULL, NULL},
    {B, 'w', "a.txt", "edited on B"},
    {B, 'f', "big.bin", NULL},
    {B, 'x', "deep", NULL},
    {B, 'r', "from-b", "300000"},
    {B, 's', NULL, "3145728"},
    {A, 's', NULL, NULL},
    {A, '=', NULL, NULL},
    {A, '?', "a.txt", "edited on B"},
    {A, '?', "deep/er/f.txt", NULL},
};

static void test_two_devices(void **state)
{
    world *w = *state;
    join(w, A);
    join(w, B);
    play(w, both_ways, COUNT(both_ways));
    expect_idle_sync(w, A); /* one GET head: no S3 call at all */
    expect_idle_sync(w, B);
    expect_log_is_head(repo_of(w), w->token[A], 2);
}

/*
 * A and B sync, then A revokes B through lockd with the new passphrase
 * "after B". lockd signs no DELETE, so the older key files stay (they open
 * only the epochs before), and the revocation says so.
 */
static void revoke_b(world *w)
{
    outcome o;
    join(w, A);
    join(w, B);
    write_bytes(at(w, B, "b.txt"), "from B", 6);
    ok(w, B, "sync");
    ok(w, A, "sync");
    o = run_on(w, A, ARGS("S3SYNC_PASSWORD=after B"), ARGS("device", "revoke", "B"));
    expect_exit(&o, 0, "revoke through lockd");
    if (!strstr(o.err, "older key files stay")) failf("no word of the key files: %s", o.err);
    outcome_free(&o);
}

/*
 * Revocation through lockd (#15): it presigns epochs/<E>, the revoked device
 * reads nothing written after (exit 1), the other goes on.
 */
static void test_revoke(void **state)
{
    world *w = *state;
    outcome o;
    revoke_b(w);
    write_bytes(at(w, A, "secret.txt"), "after", 5);
    ok(w, A, "sync");
    o = run_cmd(w, B, NULL, "pull");
    expect_exit(&o, 1, "pull of the revoked device");
    if (!strstr(o.err, "was revoked")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    if (!access(at(w, B, "secret.txt"), F_OK)) failf("the revoked device got the new file");
}

/*
 * A forged checkpoint at the head through lockd (#15): A's stolen key writes
 * the newest checkpoint with a table that drops B's revocation (straight
 * into the bucket, as a presigned PUT of checkpoints/<head> would). Nothing
 * follows it, so a device joining through lockd reads log/<head>, which A
 * signed over the true table, and refuses the checkpoint: exit 3, nothing
 * applied.
 */
static void test_forged_checkpoint(void **state)
{
    world *w = *state;
    const char *const pass[] = {"S3SYNC_PASSWORD=after B", NULL};
    char url[400], key[SS_KEY_NAME_MAX];
    ss_devices *lie = NULL;
    forger f;
    outcome o;
    revoke_b(w);
    write_bytes(at(w, A, "after.txt"), "after", 5);
    ok(w, A, "sync");
    snprintf(url, sizeof url, "%s/%s", g_base, repo_of(w));
    forger_open_with(&f, url, &g_bucket, "after B");
    forger_take_key(&f, at(w, A, ".s3sync/device.key"));
    assert_int_equal(ss_devices_copy(f.devices, &lie, NULL), SS_OK);
    for (size_t i = 0; i < ss_devices_count(lie); i++) {
        ss_device d = *ss_devices_at(lie, i);
        d.revoked = 0;
        assert_int_equal(ss_devices_put(lie, &d, NULL), SS_OK);
    }
    forge_checkpoint(&f, lie, key);
    o = run_cli(pass,
                ARGS("--device", "C", "--token-file", w->token[C], "init", w->url, w->dev[C]));
    expect_exit(&o, 3, "joining through lockd from a checkpoint that drops a revocation");
    if (!strstr(o.err, "does not vouch for its device table")) failf("C: %s", o.err);
    outcome_free(&o);
    if (!access(at(w, C, "after.txt"), F_OK)) failf("C applied the forged checkpoint");
    ss_devices_free(lie);
    forger_free(&f);
}

/* The port `s3sync serve --json` says it listens on (its "listening" event), within 10 s. */
static unsigned serve_port(child c)
{
    char text[4096];
    for (int i = 0; i < 200; i++) {
        ssize_t n = pread(c.out, text, sizeof text - 1, 0);
        const char *p;
        text[n > 0 ? n : 0] = '\0';
        p = strstr(text, "serving peers on 127.0.0.1:");
        if (p) return (unsigned)strtoul(p + strlen("serving peers on 127.0.0.1:"), NULL, 10);
        usleep(50000);
    }
    failf("serve did not say where it listens");
    return 0;
}

/*
 * Peer assist through lockd (#17): A serves what it pushed through lockd;
 * B, with A as its peer, gets A's file from A and only the log from lockd
 * and the bucket.
 */
static void test_peers(void **state)
{
    world *w = *state;
    char port[16];
    outcome o;
    join(w, A);
    join(w, B);
    write_bytes(at(w, B, "b.txt"), "from B", 6);
    ok(w, B, "sync"); /* both enrolled: a peer serves and is served once it is */
    ok(w, A, "sync");
    write_random(at(w, A, "big.bin"), 2000000);
    ok(w, A, "push");
    o = run_on(w, A, NULL, ARGS("config", "set", "peer_listen", "127.0.0.1:0"));
    expect_exit(&o, 0, "config set peer_listen");
    outcome_free(&o);
    child srv = start_cli(NULL, ARGS("-C", w->dev[A], "--json", "--token-file", w->token[A],
                                     "serve", "--interval", "60"));
    snprintf(port, sizeof port, "127.0.0.1:%u", serve_port(srv));
    o = run_on(w, B, NULL, ARGS("config", "set", "peers", port));
    expect_exit(&o, 0, "config set peers");
    outcome_free(&o);
    json_t *j = ok_json(w, B, "pull");
    if (jint(j, "bytes_peer") < 2000000 || jint(j, "bytes_down") > 100000)
        failf("B's pull through lockd did not come from A: %s", json_dumps(j, 0));
    json_decref(j);
    expect_same_tree(w->dev[A], w->dev[B]);
    kill(srv.pid, SIGTERM);
    o = finish_within(srv, 10);
    expect_exit(&o, 0, "serve, stopped");
    outcome_free(&o);
}

/*
 * Approved enrollment through lockd (#15): lockd presigns requests/<id>; B
 * waits (exit 75) until A approves it, then B's push lands.
 */
static void test_approve(void **state)
{
    world *w = *state;
    outcome o;
    char id[20] = "";
    join(w, A);
    write_bytes(at(w, A, "a.txt"), "from A", 6);
    ok(w, A, "sync");
    o = run_on(w, A, NULL, ARGS("device", "enrollment", "approve"));
    expect_exit(&o, 0, "enrollment approve through lockd");
    outcome_free(&o);
    join(w, B);
    write_bytes(at(w, B, "b.txt"), "from B", 6);
    o = run_cmd(w, B, NULL, "sync");
    expect_exit(&o, 75, "sync of a device waiting for approval");
    const char *p = strstr(o.err, "device approve ");
    if (!p || sscanf(p, "device approve %16s", id) != 1) failf("no id: %s", o.err);
    outcome_free(&o);
    ok(w, A, "sync");
    if (!access(at(w, A, "b.txt"), F_OK)) failf("B's file applied before its approval");
    o = run_on(w, A, NULL, ARGS("device", "approve", id));
    expect_exit(&o, 0, "device approve through lockd");
    outcome_free(&o);
    ok(w, B, "sync");
    ok(w, A, "sync");
    expect_same_tree(w->dev[A], w->dev[B]);
}

/* Checkpoints through lockd (it presigns checkpoints/<seq <= head>); gc needs the bucket. */
static void test_checkpoint_gc(void **state)
{
    world *w = *state;
    outcome o;
    json_t *j;
    join(w, A);
    for (int i = 0; i < 3; i++) {
        write_random(at(w, A, "f.bin"), 100000);
        ok(w, A, "sync");
    }
    j = ok_json(w, A, "checkpoint");
    if (jint(j, "checkpoint") != 3) failf("checkpoint through lockd: %s", json_dumps(j, 0));
    json_decref(j);
    join(w, B); /* from checkpoints/3 */
    expect_same_tree(w->dev[A], w->dev[B]);
    j = ok_json(w, B, "verify");
    json_decref(j);
    o = run_cmd(w, A, NULL, "gc");
    expect_exit(&o, 1, "gc on a lockd store");
    if (!strstr(o.err, "lockd")) failf("unclear message: %s", o.err);
    outcome_free(&o);
}

static void test_read_only(void **state)
{
    world *w = *state;
    outcome o;
    join(w, A);
    write_random(at(w, A, "from-a"), 100000);
    ok(w, A, "sync");
    join(w, C); /* read-only: joins and pulls */
    expect_same_tree(w->dev[A], w->dev[C]);
    write_bytes(at(w, A, "more"), "more", 4);
    ok(w, A, "sync");
    ok(w, C, "pull");
    expect_same_tree(w->dev[A], w->dev[C]);
    write_bytes(at(w, C, "from-c"), "refused", 7);
    o = run_cmd(w, C, NULL, "push");
    expect_exit(&o, 1, "push of a read-only device");
    if (!strstr(o.err, "403 read_only")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    expect_log_is_head(repo_of(w), w->token[A], 2);
}

static void test_tokens_and_failures(void **state)
{
    world *w = *state;
    char bad[300], env[320];
    outcome o;
    join(w, A);
    snprintf(bad, sizeof bad, "%s/bad.token", w->root);
    write_bytes(bad, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 44);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "--token-file", bad, "sync"));
    expect_exit(&o, 1, "sync with an unknown token");
    if (!strstr(o.err, "401 unauthorized")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    /* init --token-file kept the token in the folder's settings: the next command needs none. */
    o = run_cli(ARGS("S3SYNC_TOKEN_FILE"), ARGS("-C", w->dev[A], "sync"));
    expect_exit(&o, 0, "sync with the token file init kept");
    outcome_free(&o);
    o = run_cli(ARGS("S3SYNC_TOKEN_FILE"), ARGS("-C", w->dev[A], "config", "unset", "token_file"));
    expect_exit(&o, 0, "config unset token_file");
    outcome_free(&o);
    o = run_cli(ARGS("S3SYNC_TOKEN_FILE"), ARGS("-C", w->dev[A], "sync"));
    expect_exit(&o, 1, "sync without a token");
    if (!strstr(o.err, "S3SYNC_TOKEN_FILE") || !strstr(o.err, "config set token_file"))
        failf("unclear message: %s", o.err);
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "--token-file", "/nonexistent/token", "sync"));
    expect_exit(&o, 1, "sync with a missing token file");
    outcome_free(&o);
    /* A fifo (another device may sync one where a relative token_file points) is not waited on. */
    snprintf(bad, sizeof bad, "%s/fifo.token", w->root);
    if (mkfifo(bad, 0600)) failf("mkfifo: %s", strerror(errno));
    o = run_cli(NULL, ARGS("-C", w->dev[A], "--token-file", bad, "sync"));
    expect_exit(&o, 1, "sync with a fifo for a token file");
    if (!strstr(o.err, "not a regular file")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    snprintf(env, sizeof env, "S3SYNC_TOKEN_FILE=%s", w->token[A]); /* the environment works too */
    o = run_cli(ARGS(env), ARGS("-C", w->dev[A], "sync"));
    expect_exit(&o, 0, "sync with S3SYNC_TOKEN_FILE");
    outcome_free(&o);
    /* lockd unreachable: temporary, and soon (AWS_MAX_ATTEMPTS bounds the retries). */
    double t0 = now_s();
    snprintf(w->url, sizeof w->url, "lockd:http://127.0.0.1:9/%s", repo_of(w));
    o = run_cli(ARGS("AWS_MAX_ATTEMPTS=2"),
                ARGS("--token-file", w->token[B], "init", w->url, w->dev[B]));
    expect_exit(&o, 75, "init with lockd unreachable");
    outcome_free(&o);
    if (now_s() - t0 > 15) failf("took %.1f s to give up", now_s() - t0);
}

/* The proof that the lockd: tests above run without bucket credentials: the
 * same s3sync, given the bucket itself, cannot even start. */
static void test_no_bucket_credentials(void **state)
{
    char url[400], dir[600];
    outcome o;
    (void)state;
    snprintf(url, sizeof url, "%s/direct", g_base);
    snprintf(dir, sizeof dir, "%s/direct", g_dir);
    o = run_cli(NULL, ARGS("init", url, dir));
    if (o.code == 0 || !strstr(o.err, "no credentials"))
        failf("s3sync reached the bucket without lockd (exit %d): %s", o.code, o.err);
    outcome_free(&o);
}

static void test_lease_held(void **state)
{
    world *w = *state;
    char route[128], env[] = "S3SYNC_LEASE_WAIT_MS=1500";
    json_t *lease;
    outcome o;
    join(w, A);
    join(w, B);
    lease = by_hand("POST", w->token[B], repo_of(w), "/lease", "{\"ttl\": 600}");
    write_bytes(at(w, A, "waits"), "for the lease", 13);
    double t0 = now_s();
    o = run_cmd(w, A, ARGS(env), "push");
    expect_exit(&o, 75, "push while another device holds the lease");
    if (!strstr(o.err, "lease held by w")) failf("unclear message: %s", o.err);
    outcome_free(&o);
    if (now_s() - t0 < 1.4 || now_s() - t0 > 10)
        failf("waited %.1f s, not about 1.5", now_s() - t0);
    snprintf(route, sizeof route, "/lease/%s?fencing_token=%" PRId64,
             json_string_value(json_object_get(lease, "lease_id")), jint(lease, "fencing_token"));
    json_decref(by_hand("DELETE", w->token[B], repo_of(w), route, NULL));
    json_decref(lease);
    ok(w, A, "push");
    ok(w, B, "sync");
    expect_converged(w);
}

/* Both devices push at once, four times; one waits for the lease or rebuilds, none loses. */
static void test_concurrent_push(void **state)
{
    world *w = *state;
    char name[32], data[2][64], shared[2][64];
    join(w, A);
    join(w, B);
    for (int round = 0; round < 4; round++) {
        child c[2];
        for (int d = A; d <= B; d++) {
            snprintf(name, sizeof name, "%c%d", 'a' + d, round);
            snprintf(data[d], sizeof data[d], "%c's file %d", 'A' + d, round);
            snprintf(shared[d], sizeof shared[d], "%c's shared %d", 'A' + d, round);
            write_bytes(at(w, d, name), data[d], strlen(data[d]));
            write_bytes(at(w, d, "shared"), shared[d], strlen(shared[d]));
            write_random(at(w, d, d == A ? "dir-a/blob" : "dir-b/blob"), 300000);
        }
        for (int d = A; d <= B; d++)
            c[d] = start_cmd(w, d, NULL, "sync");
        for (int d = A; d <= B; d++) {
            outcome o = finish(c[d]);
            expect_exit(&o, 0, "concurrent sync");
            outcome_free(&o);
        }
        ok(w, A, "sync");
        ok(w, B, "sync");
        expect_converged(w);
        for (int d = A; d <= B; d++)
            if (count_in(w->dev[A], count_content, data[d]) != 1 ||
                count_in(w->dev[A], count_content, shared[d]) != 1)
                failf("round %d: a write of %c was lost", round, 'A' + d);
    }
    expect_log_is_head(repo_of(w), w->token[A], -1);
}

/* s3sync killed at each push crash point, with a short lease: the rerun converges. */
static void test_client_killed(void **state)
{
    static const char *const points[] = {"push.pack", "push.before-log", "push.after-log",
                                         "push.before-commit"};
    world *w = *state;
    char env[64], file[32];
    join(w, A);
    join(w, B);
    for (size_t i = 0; i < COUNT(points); i++) {
        snprintf(g_step, sizeof g_step, "crash at %s", points[i]);
        snprintf(env, sizeof env, "S3SYNC_CRASH_AT=%s", points[i]);
        snprintf(file, sizeof file, "blob%zu", i);
        write_random(at(w, A, file), 300000);
        write_random(at(w, A, "small"), 100);
        outcome o = run_cmd(w, A, ARGS(env, "S3SYNC_LEASE_TTL_MS=2000"), "push");
        if (o.sig != SIGKILL) failf("not killed: exit %d, stderr: %s", o.code, o.err);
        outcome_free(&o);
        /* Its lease, if it held one, expires in 2 s: the rerun waits for it. */
        json_t *j = ok_json(w, A, "push");
        if (json_array_size(json_object_get(j, "conflicts"))) failf("conflict after the crash");
        json_decref(j);
        ok(w, B, "sync");
        ok(w, A, "sync");
        expect_converged(w);
        if (count_in(w->dev[A], count_name, ".sync-conflict-")) failf("a conflict copy");
    }
    g_step[0] = '\0';
    expect_log_is_head(repo_of(w), w->token[A], -1);
}

/*
 * lockd SIGKILLed while a push holds the lease, restarted on its port. Round
 * 0: lockd stays down until the push gives up (75; its short lease expires
 * meanwhile). Round 1: back after a second, which the push's retries
 * usually ride out (its next presign meets the dead port).
 * Either way a rerun converges and the log stays gapless.
 */
static void test_lockd_killed(void **state)
{
    world *w = *state;
    char name[32];
    json_t *j;
    join(w, A);
    join(w, B);
    for (int round = 0; round < 2; round++) {
        int leased = 0;
        snprintf(g_step, sizeof g_step, "round %d", round);
        for (int i = 0; i < 6; i++) { /* about 6 packs: the push takes a while */
            snprintf(name, sizeof name, "big%d-%d.bin", round, i);
            write_random(at(w, A, name), 8 * MIB);
        }
        /* A short lease: a push that gives up holding it must not block the rerun long. */
        child c = start_cmd(w, A,
                            round ? ARGS("S3SYNC_LEASE_TTL_MS=3000")
                                  : ARGS("AWS_MAX_ATTEMPTS=2", "S3SYNC_LEASE_TTL_MS=3000"),
                            "push");
        for (int i = 0; i < 3000 && !leased; i++) {
            lockd_head(w->token[B], repo_of(w), &leased);
            if (!leased) usleep(2000);
        }
        if (!leased) failf("the push never held the lease");
        assert_int_equal(lockd_stop(SIGKILL), 1000 + SIGKILL);
        outcome o = {0};
        if (!round)
            o = finish(c); /* gives up while lockd is down */
        else
            usleep(1000000);
        lockd_start();
        if (round) o = finish(c);
        if (o.code != 0 && o.code != 75)
            failf("push with lockd killed: exit %d (signal %d): %s", o.code, o.sig, o.err);
        outcome_free(&o);
        j = ok_json(w, A, "push"); /* converges: pushes what is left, if anything */
        int64_t seq = jint(j, "seq");
        json_decref(j);
        ok(w, B, "sync");
        expect_converged(w);
        expect_log_is_head(repo_of(w), w->token[A], seq);
    }
    g_step[0] = '\0';
}

/* lockd's database as a backup from before would have it: repo's head set back to head. */
static void lockd_db_set_head(const char *repo, int64_t head)
{
    char path[700], *sql = NULL, *msg = NULL;
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/lockd.db", g_dir);
    if (asprintf(&sql, "UPDATE repositories SET head = %" PRId64 " WHERE name = '%s'", head, repo) <
        0)
        failf("out of memory");
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        failf("%s: %s", path, msg ? msg : sqlite3_errmsg(db));
    sqlite3_close(db);
    free(sql);
}

/*
 * A store fork through lockd: the bucket lost A's log/2 and lockd's head went
 * back to 1 (its database restored from a backup); B, which never saw A's
 * log/2, writes another. lockd's head is 2 again, and A's watermark 2: only
 * the object tells them apart. A's pull and push: exit 3 naming log/2.
 */
static void test_fork(void **state)
{
    world *w = *state;
    ss_store *s = direct_store(repo_of(w));
    ss_err err = {{0}};
    char snap[300];
    const char *key = "log/00000000000000000002";
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "base.txt"), "base", 4);
    ok(w, A, "push"); /* seq 1 */
    ok(w, B, "pull");
    write_bytes(at(w, A, "mine.txt"), "A's seq 2", 9);
    ok(w, A, "push");       /* seq 2 */
    expect_idle_sync(w, A); /* still one GET head: lockd's answer carries log/2's ETag */
    snprintf(g_step, sizeof g_step, "log/2 lost, lockd's head back at 1, B writes another log/2");
    if (ss_store_delete(s, key, &err)) failf("%s: %s", key, err.msg);
    assert_int_equal(lockd_stop(SIGTERM), 0);
    lockd_db_set_head(repo_of(w), 1);
    lockd_start();
    write_bytes(at(w, B, "theirs.txt"), "B's seq 2", 9);
    ok(w, B, "push");
    expect_log_is_head(repo_of(w), w->token[A], 2);
    write_bytes(at(w, A, "later.txt"), "not on a fork", 13); /* for the push to write */
    snapshot(w->dev[A], snap);
    expect_fork(w, A, "pull", snap, 2);
    expect_fork(w, A, "push", snap, 2);
    snprintf(g_step, sizeof g_step, "B writes log/3 on its side: lockd tells log/3's ETag only");
    write_bytes(at(w, B, "theirs3.txt"), "B's seq 3", 9);
    ok(w, B, "push");
    expect_fork(w, A, "pull", snap, 2);
    g_step[0] = '\0';
    ss_store_free(s);
}

/* lockd again, its bucket requests (and so every presigned URL) through p, or direct (NULL). */
static void lockd_via(const faultproxy *p)
{
    assert_int_equal(lockd_stop(SIGTERM), 0);
    snprintf(g_lockd_via, sizeof g_lockd_via, "%s%s", p ? "AWS_ENDPOINT_URL_S3=" : "",
             p ? fp_url(p) : "");
    lockd_start();
}

/* Until repo's lease (held by a stopped device) has expired. */
static void lease_expires(const world *w)
{
    int leased = 1;
    for (double t0 = now_s(); leased; usleep(50000)) {
        lockd_head(w->token[B], repo_of(w), &leased);
        if (leased && now_s() - t0 > 20) failf("the lease did not expire");
    }
}

/* The stopped push c goes on; it must end in 0 (or 75, then a rerun pushes) and lose nothing. */
static void resume_push(const world *w, child c, const char *file)
{
    outcome o;
    kill(c.pid, SIGCONT);
    o = finish(c);
    if (o.code != 0 && o.code != 75)
        failf("the push woken up past its lease: exit %d (signal %d): %s", o.code, o.sig, o.err);
    fprintf(stderr, "%s: the push woken up past its lease: exit %d, %" PRId64 " rebuilds\n", g_step,
            o.code, o.json ? jint(o.json, "retries") : -1);
    outcome_free(&o);
    ok(w, A, "push"); /* what is left, if it gave up */
    ok(w, B, "sync");
    ok(w, A, "sync");
    expect_converged(w);
    if (access(at(w, B, file), F_OK)) failf("%s did not reach B: a change was lost", file);
}

/*
 * A device put to sleep mid-push (a laptop suspended: SIGSTOP here) past its
 * 1.5 s lease, while B takes the lease over and pushes. A stale lease: A
 * stops at push.before-log (its packs uploaded), then at push.after-log
 * (log/<seq> uploaded and committed, not yet in A's state). An expired URL:
 * a fault proxy in front of the bucket
 * (lockd's endpoint meanwhile) holds A's pack PUT for 4 s and A is stopped while it waits, so the
 * PUT reaches the bucket after its URL expired (403). Either way A re-acquires, pulls, rebuilds and
 * finishes: exit 0, or 75 and a rerun; never 1, and B gets A's file.
 */
static void test_sleep_mid_push(void **state)
{
    world *w = *state;
    const char *ttl = "S3SYNC_LEASE_TTL_MS=1500";
    fp_rates held = {
        .permille = {[FP_STALL] = 1000}, .stall_ms = 4000, .match = "PUT */data/*", .limit = 1};
    faultproxy *p = fp_start(getenv("AWS_ENDPOINT_URL"), 1);
    uint64_t n[FP_KINDS];
    child c;
    if (!p) failf("no fault proxy");
    join(w, A);
    join(w, B);
    for (int i = 0; i < 2; i++) { /* the lease goes stale before log/<seq>, or after it */
        char pause[64], file[16];
        snprintf(g_step, sizeof g_step, "stale lease at %s",
                 i ? "push.after-log" : "push.before-log");
        snprintf(pause, sizeof pause, "S3SYNC_PAUSE_AT=%s:1",
                 i ? "push.after-log" : "push.before-log");
        snprintf(file, sizeof file, "a%d.bin", i);
        write_random(at(w, A, file), 300000);
        c = start_cmd(w, A, ARGS(ttl, pause), "push");
        expect_stopped(c, "the push");
        lease_expires(w);
        write_bytes(at(w, B, file + 1), "B meanwhile", 11);
        ok(w, B, "push");
        resume_push(w, c, file);
    }
    snprintf(g_step, sizeof g_step, "expired URL");
    lockd_via(p);
    write_random(at(w, A, "a2.bin"), 300000);
    fp_set(p, &held, 0);
    c = start_cmd(w, A, ARGS(ttl), "push");
    for (double t0 = now_s();; usleep(10000)) { /* until the proxy holds A's PUT */
        fp_counts(p, n);
        if (n[FP_STALL]) break;
        if (now_s() - t0 > 20) failf("no pack PUT came");
    }
    kill(c.pid, SIGSTOP);
    lease_expires(w);
    write_bytes(at(w, B, "b2.txt"), "B meanwhile", 11);
    ok(w, B, "push");
    usleep(4500000); /* the proxy let the PUT go: its URL had expired */
    resume_push(w, c, "a2.bin");
    g_step[0] = '\0';
    lockd_via(NULL);
    fp_stop(p);
    expect_log_is_head(repo_of(w), w->token[A], -1);
}

/* --- watch through lockd ---------------------------------------------------------------- */

#define WATCH_LIMIT_S 20.0 /* a change must reach the other folder within this */

static child g_watch[2]; /* A's and B's `s3sync watch` (pid 0: none) */

/* A's watch is given its token; B's finds it in its folder's token_file setting. */
static void watch_start(const world *w, int d)
{
    if (d == A) {
        g_watch[d] = start_cli(NULL, ARGS("-C", w->dev[d], "--json", "-v", "--token-file",
                                          w->token[d], "watch", "--interval", "1"));
        return;
    }
    outcome o = run_cli(NULL, ARGS("-C", w->dev[d], "--token-file", w->token[d], "config", "set",
                                   "token_file", w->token[d]));
    expect_exit(&o, 0, "config set token_file");
    outcome_free(&o);
    g_watch[d] = start_cli(NULL, ARGS("-C", w->dev[d], "--json", "-v", "watch", "--interval", "1"));
}

/* What the watch on d printed on stdout so far (free it); pread leaves the offset to the writer. */
static char *watch_out(int d)
{
    size_t cap = 1 << 20;
    char *text = malloc(cap);
    ssize_t n = text ? pread(g_watch[d].out, text, cap - 1, 0) : -1;
    if (!text) failf("out of memory");
    text[n > 0 ? n : 0] = '\0';
    return text;
}

/*
 * The idle polls in the watch's --json (a pull that changed nothing, past
 * sequence 0), each of which must have made exactly one request: lockd's
 * GET head, no S3 call. Their count.
 */
static int lockd_idle_polls(int d)
{
    char *out = watch_out(d);
    int n = 0;
    for (const char *l = out; *l; l += strcspn(l, "\n"), l += *l == '\n') {
        json_t *j = json_loadb(l, strcspn(l, "\n"), 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && !strcmp(ev, "pull") && jint(j, "files") == 0 && jint(j, "seq") > 0) {
            if (jint(j, "requests") != 1)
                failf("an idle poll of %c through lockd made %" PRId64 " requests: %.*s", 'A' + d,
                      jint(j, "requests"), (int)strcspn(l, "\n"), l);
            n++;
        }
        json_decref(j);
    }
    free(out);
    return n;
}

/* Wait until device d's rel holds data (NULL: is gone). */
static void watch_arrives(const world *w, int d, const char *rel, const char *data)
{
    for (double t0 = now_s();;) {
        size_t len = 0;
        char *got = read_file(at(w, d, rel), &len);
        int done = data ? got && len == strlen(data) && !memcmp(got, data, len)
                        : !got && access(at(w, d, rel), F_OK);
        free(got);
        if (done) return;
        if (now_s() - t0 > WATCH_LIMIT_S) {
            char *a = watch_out(A), *b = watch_out(B);
            failf("%s did not %s on %c within %.0f s\nA: %s\nB: %s", rel, data ? "arrive" : "go",
                  'A' + d, WATCH_LIMIT_S, a, b);
        }
        usleep(50000);
    }
}

/* SIGTERM ends the watch on d with 0 and its stop event. */
static void watch_stop(int d)
{
    outcome o;
    kill(g_watch[d].pid, SIGTERM);
    o = finish(g_watch[d]);
    g_watch[d].pid = 0;
    expect_exit(&o, 0, "watch stopped by SIGTERM");
    if (!strstr(o.out, "\"event\":\"stop\"")) failf("no stop event: %s", o.out);
    outcome_free(&o);
}

static int watch_teardown(void **state)
{
    for (int d = A; d <= B; d++)
        if (g_watch[d].pid > 0) { /* a failed test left it running */
            kill(g_watch[d].pid, SIGKILL);
            outcome o = finish(g_watch[d]);
            outcome_free(&o);
        }
    memset(g_watch, 0, sizeof g_watch);
    return world_teardown(state);
}

/*
 * Two watches through lockd: a create on A, an edit on B and a delete on A
 * each reach the other folder; every idle poll is one GET head.
 */
static void test_watch(void **state)
{
    world *w = *state;
    join(w, A);
    join(w, B);
    watch_start(w, A);
    watch_start(w, B);
    write_bytes(at(w, A, "notes.txt"), "made on A", 9);
    watch_arrives(w, B, "notes.txt", "made on A");
    write_bytes(at(w, B, "notes.txt"), "edited on B", 11);
    watch_arrives(w, A, "notes.txt", "edited on B");
    rm_rf(at(w, A, "notes.txt"));
    watch_arrives(w, B, "notes.txt", NULL);
    /* --interval 1: a few idle polls each in a few seconds (more when the machine is busy) */
    for (double t0 = now_s(); lockd_idle_polls(A) < 3 || lockd_idle_polls(B) < 3;) {
        if (now_s() - t0 > WATCH_LIMIT_S) {
            char *a = watch_out(A);
            failf("fewer than 3 idle polls on A and B in %.0f s; A: %s", WATCH_LIMIT_S, a);
        }
        usleep(100000);
    }
    watch_stop(A);
    watch_stop(B);
    expect_same_tree(w->dev[A], w->dev[B]);
    expect_log_is_head(repo_of(w), w->token[A], -1);
}

/* --- lockd/store ------------------------------------------------------------------------- */

typedef struct store_fx {
    ss_store *s;      /* lockd:, as device rw */
    ss_store *direct; /* s3:// under the same prefix */
    char token[300];
} store_fx;

static int store_setup(void **state)
{
    store_fx *fx = calloc(1, sizeof *fx);
    char url[128];
    ss_err err = {{0}};
    ss_store_opts o = {.token_file = fx->token};
    snprintf(fx->token, sizeof fx->token, "%s/store.token", g_dir);
    device_add("store", "store-rw", 0, fx->token);
    snprintf(url, sizeof url, "lockd:http://127.0.0.1:%u/store", g_port);
    if (ss_store_open(url, &o, &fx->s, &err)) failf("%s: %s", url, err.msg);
    fx->direct = direct_store("store");
    *state = fx;
    return 0;
}

static int store_teardown(void **state)
{
    store_fx *fx = *state;
    ss_store_free(fx->s);
    ss_store_free(fx->direct);
    free(fx);
    return 0;
}

static void put_ok(ss_store *s, const char *key, const char *data, unsigned flags)
{
    ss_err err = {{0}};
    if (ss_store_put(s, key, data, strlen(data), flags, &err)) failf("put %s: %s", key, err.msg);
}

static void test_store_objects(void **state)
{
    store_fx *fx = *state;
    ss_store *s = fx->s;
    ss_store_stat st;
    ss_err err = {{0}};
    char *url = NULL;
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(ss_store_head(s, "config", &st, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "config"));
    put_ok(s, "keys/00000000000000aa", "0123456789", SS_PUT_CREATE_ONLY); /* takes the lease */
    assert_int_equal(ss_store_put(s, "keys/00000000000000aa", "x", 1, SS_PUT_CREATE_ONLY, &err),
                     SS_ERR_EXISTS);
    assert_int_equal(ss_store_put(s, "keys/00000000000000bb", "x", 1, 0, &err), SS_ERR_INVALID);
    put_ok(s, "keys/00000000000000cc", "", SS_PUT_CREATE_ONLY);
    assert_int_equal(ss_store_head(s, "keys/00000000000000aa", &st, &err), SS_OK);
    assert_int_equal(st.size, 10);
    assert_true(st.etag[0] != '\0');
    assert_int_equal(ss_store_head(s, "keys/00000000000000cc", &st, &err), SS_OK);
    assert_int_equal(st.size, 0);
    assert_int_equal(ss_store_get(s, "keys/00000000000000aa", 3, 4, &got, &len, &err), SS_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(got, "3456", 4);
    free(got);
    /* The GET URL is cached: the same object again costs one request, not two. */
    uint64_t before = ss_store_requests(s);
    assert_int_equal(ss_store_get(s, "keys/00000000000000aa", 8, SS_TO_END, &got, &len, &err),
                     SS_OK);
    assert_int_equal(len, 2);
    free(got);
    assert_int_equal(ss_store_requests(s) - before, 1);
    assert_int_equal(ss_store_delete(s, "keys/00000000000000aa", &err), SS_ERR_INVALID);
    assert_int_equal(ss_store_presign(s, SS_PRESIGN_GET, "config", NULL, NULL, 0, 60, &url, &err),
                     SS_ERR_INVALID);
    /* A key of the wrong sequence: the engine's cue to pull and rebuild. */
    assert_int_equal(ss_store_put(s, "log/00000000000000000007", "x", 1, SS_PUT_CREATE_ONLY, &err),
                     SS_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "wrong_sequence"));
}

static int collect(void *ctx, const char *key, const ss_store_stat *st)
{
    char ***v = ctx;
    size_t n = 0;
    (void)st;
    while (*v && (*v)[n])
        n++;
    *v = realloc(*v, (n + 2) * sizeof **v);
    (*v)[n] = strdup(key);
    (*v)[n + 1] = NULL;
    return 0;
}

static void free_keys(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Sequences written and committed through the store; log/ listed from lockd's head. */
static void test_store_log(void **state)
{
    store_fx *fx = *state;
    ss_err err = {{0}};
    char **got = NULL;
    for (int seq = 1; seq <= 2; seq++) {
        char data[64], log[64];
        snprintf(data, sizeof data, "data/%020d-00000000000000%02d", seq, seq);
        snprintf(log, sizeof log, "log/%020d", seq);
        put_ok(fx->s, data, "pack", SS_PUT_CREATE_ONLY);
        put_ok(fx->s, log, "transaction", SS_PUT_CREATE_ONLY); /* commits, releases */
    }
    expect_log_is_head("store", fx->token, 2);
    uint64_t before = ss_store_requests(fx->s);
    assert_int_equal(ss_store_list(fx->s, "log/", "log/00000000000000000000", collect, &got, &err),
                     SS_OK);
    assert_int_equal(ss_store_requests(fx->s) - before, 1); /* GET head, nothing else */
    assert_non_null(got && got[0] && got[1]);
    assert_string_equal(got[0], "log/00000000000000000001");
    assert_string_equal(got[1], "log/00000000000000000002");
    assert_null(got[2]);
    free_keys(got);
    got = NULL;
    assert_int_equal(ss_store_list(fx->s, "log/", "log/00000000000000000002", collect, &got, &err),
                     SS_OK);
    assert_null(got);
    assert_int_equal(ss_store_list(fx->s, "data/", NULL, collect, &got, &err), SS_OK);
    assert_non_null(got && got[0] && got[1]);
    assert_null(got[2]);
    free_keys(got);
}

/* More keys than one LIST page holds: paged by start-after through presigned URLs. */
static void test_store_list_pages(void **state)
{
    store_fx *fx = *state;
    enum { N = 1100 };
    static char keys[N][32];
    char **got = NULL;
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    size_t n = 0;
    assert_int_equal(ss_xfer_new(fx->direct, &x, &err), SS_OK);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "keys/%016x", 0x100 + i);
        assert_int_equal(ss_xfer_put(x, keys[i], "k", 1, 0, NULL, NULL), SS_OK);
    }
    if (ss_xfer_wait(x, &err)) failf("%s", err.msg);
    ss_xfer_free(x);
    assert_int_equal(ss_store_list(fx->s, "keys/", "keys/00000000000000ff", collect, &got, &err),
                     SS_OK);
    for (n = 0; got && got[n]; n++)
        assert_string_equal(got[n], keys[n]);
    assert_int_equal(n, N);
    free_keys(got);
    got = NULL;
    assert_int_equal(ss_store_list(fx->s, "keys/", keys[1049], collect, &got, &err), SS_OK);
    for (n = 0; got && got[n]; n++)
        assert_string_equal(got[n], keys[1050 + n]);
    assert_int_equal(n, 50);
    free_keys(got);
}

static void test_store_bad_urls(void **state)
{
    static const char *const bad[] = {
        "lockd:ftp://127.0.0.1:1/r",    "lockd:http://127.0.0.1:1",    "lockd:http://127.0.0.1:1/",
        "lockd:http://127.0.0.1:1/a/b", "lockd:http://127.0.0.1:1/.r", "lockd:http:///r",
        "s3:http://127.0.0.1:1/r",      "lockd://127.0.0.1:1/r",
    };
    store_fx *fx = *state;
    ss_store_opts o = {.token_file = fx->token};
    for (size_t i = 0; i < COUNT(bad); i++) {
        ss_store *s = NULL;
        ss_err err = {{0}};
        if (ss_store_open(bad[i], &o, &s, &err) != SS_ERR_INVALID) failf("%s opened", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
}

/* --- the run -------------------------------------------------------------------------------- */

/* Leave the bucket as it was: every object under the run's prefix goes. */
static void delete_all(void)
{
    ss_store *s = NULL;
    char **keys = NULL;
    if (ss_store_open(g_base, &g_bucket, &s, NULL)) return;
    ss_store_list(s, "", NULL, collect, &keys, NULL);
    for (size_t i = 0; keys && keys[i]; i++)
        ss_store_delete(s, keys[i], NULL);
    free_keys(keys);
    ss_store_free(s);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)
#define WATCH_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, watch_teardown)

int main(void)
{
    const struct CMUnitTest store_tests[] = {
        cmocka_unit_test(test_store_objects),
        cmocka_unit_test(test_store_log),
        cmocka_unit_test(test_store_list_pages),
        cmocka_unit_test(test_store_bad_urls),
    };
    const struct CMUnitTest sync_tests[] = {
        WORLD_TEST(test_two_devices),
        WORLD_TEST(test_read_only),
        WORLD_TEST(test_checkpoint_gc),
        WORLD_TEST(test_revoke),
        WORLD_TEST(test_approve),
        WORLD_TEST(test_tokens_and_failures),
        WORLD_TEST(test_lease_held),
        WORLD_TEST(test_concurrent_push),
        WORLD_TEST(test_client_killed),
        WORLD_TEST(test_lockd_killed),
        WATCH_TEST(test_watch),
        cmocka_unit_test(test_no_bucket_credentials),
        WORLD_TEST(test_fork),
        WORLD_TEST(test_sleep_mid_push),
        WORLD_TEST(test_forged_checkpoint),
        WORLD_TEST(test_peers),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    unsigned char rnd[8];
    char tag[17], repos[4096] = "";
    int failed;

    if (sodium_init() < 0) return 1;
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID") ||
        access(CURL_BIN, X_OK)) {
        fprintf(stderr, "lockd/sync: skipped (no RGW or no curl: run through ci/test.sh)\n");
        return 77;
    }
    if (hide_bucket_credentials()) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    snprintf(g_base, sizeof g_base, "s3://%s/lsync-%s", bucket, tag);
    if (!mkdtemp(g_dir)) return 1;
    for (int i = 0; i <= REPOS; i++) {
        size_t len = strlen(repos);
        if (i)
            snprintf(repos + len, sizeof repos - len, "repo w%d = %s/w%d\n", i, g_base, i);
        else
            snprintf(repos + len, sizeof repos - len, "repo store = %s/store\n", g_base);
    }
    snprintf(g_conf, sizeof g_conf, "%s/lockd.conf", g_dir);
    snprintf(g_port_file, sizeof g_port_file, "%s/port", g_dir);
    FILE *f = fopen(g_conf, "w");
    if (!f || fprintf(f, "db = lockd.db\nlease_ttl_min = 1\n%s", repos) < 0 || fclose(f)) return 1;
    /* Fast, non-interactive key derivation for every device the tests make. */
    setenv("S3SYNC_KDF", "interactive", 1);
    setenv("S3SYNC_PASSWORD", "correct horse battery staple", 1);
    unsetenv("S3SYNC_PASSWORD_FILE");
    unsetenv("S3SYNC_PASSWORD_COMMAND");
    unsetenv("S3SYNC_CRASH_AT");
    unsetenv("S3SYNC_TOKEN_FILE");
    unsetenv("S3SYNC_LEASE_TTL_MS");
    unsetenv("S3SYNC_LEASE_WAIT_MS");

    /* One test by name (a cmocka glob), as S3SYNC_WATCH_ONLY does for test-watch. */
    if (getenv("S3SYNC_LOCKD_SYNC_ONLY")) cmocka_set_test_filter(getenv("S3SYNC_LOCKD_SYNC_ONLY"));
    signal(SIGPIPE, SIG_IGN); /* output piped into head: finish, and stop lockd */
    atexit(lockd_reap);
    lockd_start();
    failed = cmocka_run_group_tests_name("lockd/store", store_tests, store_setup, store_teardown);
    failed |= cmocka_run_group_tests_name("lockd/sync", sync_tests, NULL, NULL);
    if (g_lockd.pid > 0 && lockd_stop(SIGTERM) != 0) failed |= 1; /* a clean, leak-free exit */
    delete_all();
    if (!failed) rm_rf(g_dir);
    return failed;
}
