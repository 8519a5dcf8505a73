/*
 * test-lockd-load: s3sync-lockd under load and faults (issue 8), in two layers.
 *
 *   lockd/cache  db.c's prepared statements and read cache through its C API:
 *                two connections on one database file, as the server and an
 *                admin command are; every read through the first must see
 *                what the second (or the first itself) committed, at once.
 *                Always runs.
 *   lockd/load   50 concurrent writers (bench/lockd-writers --faults --jump,
 *                LOCKD_WRITERS_BIN) against the real s3sync-lockd and the
 *                real RGW for 12 s, while lockd is SIGKILLed and restarted
 *                twice on the same database and port, and six writers' clocks
 *                jump (three stand still while they stall past their lease,
 *                three leap past it). The writers check their own run (log/
 *                gapless and unique, every acknowledged commit read back,
 *                no fencing token granted twice, no stale commit accepted);
 *                this test checks the bucket again on its own through
 *                s3store, and that each fault really happened. Skipped (77)
 *                without RGW when the cache group passed.
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
#include <sodium.h>

#include "lockd.h"
#include "s3store.h"

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif
#ifndef LOCKD_WRITERS_BIN
#error "LOCKD_WRITERS_BIN must name bench/lockd-writers"
#endif

#define WRITERS "50"
#define RUN_S "12"
#define TTL_MS "3000"
#define JUMPERS "6"

static char tmp_root[] = "/tmp/ss-lockd-load-XXXXXX";
static char tag[17];

/* ======================================================================== */
/* lockd/cache                                                              */
/* ======================================================================== */

typedef struct two {
    char path[600];
    ld_db *server, *admin;
} two;

static int two_setup(void **state)
{
    static int n;
    two *t = calloc(1, sizeof *t);
    ss_err err = {{0}};
    snprintf(t->path, sizeof t->path, "%s/cache-%d.db", tmp_root, n++);
    if (ld_db_open(t->path, &t->server, &err) || ld_db_open(t->path, &t->admin, &err)) return -1;
    *state = t;
    return 0;
}

static int two_teardown(void **state)
{
    two *t = *state;
    ld_db_close(t->server);
    ld_db_close(t->admin);
    free(t);
    return 0;
}

/* The device of token tok as the server sees it; -1 unknown, else revoked. */
static int server_sees(ld_db *db, const char *tok)
{
    unsigned char secret[32], hash[LD_HASH_LEN], stored[LD_HASH_LEN];
    ld_device d;
    ss_err err = {{0}};
    ld_db_secret(db, secret);
    ld_auth_hash(secret, tok, hash);
    ss_rc rc = ld_db_device_by_hash(db, hash, &d, stored, &err);
    if (rc == SS_ERR_NOT_FOUND) return -1;
    assert_int_equal(rc, SS_OK);
    assert_memory_equal(hash, stored, LD_HASH_LEN);
    return d.revoked;
}

static void add_device(ld_db *db, const char *name, const char *tok)
{
    unsigned char secret[32], hash[LD_HASH_LEN];
    ss_err err = {{0}};
    ld_db_secret(db, secret);
    ld_auth_hash(secret, tok, hash);
    assert_int_equal(ld_db_device_add(db, name, "r1", 0, hash, 1, &err), SS_OK);
}

/* A revoke, an add and a lease deletion by another connection are seen by
 * the next read, however warm the cache. */
static void test_cache_other_writer(void **state)
{
    two *t = *state;
    char tok_a[LD_TOKEN_LEN + 1], tok_b[LD_TOKEN_LEN + 1];
    ld_repo_row r;
    ld_lease_row grant = {.id = "0123456789abcdef0123456789abcdef",
                          .device = "dev-a",
                          .expires_ms = 5000},
                 l;
    int changed = 0, found = 0;
    ss_err err = {{0}};

    ld_auth_token_new(tok_a);
    ld_auth_token_new(tok_b);
    assert_int_equal(ld_db_repo_put(t->admin, "r1", "s3://b/r1", &changed, &err), SS_OK);
    add_device(t->admin, "dev-a", tok_a);
    for (int i = 0; i < 3; i++) /* warm */
        assert_int_equal(server_sees(t->server, tok_a), 0);
    assert_int_equal(server_sees(t->server, tok_b), -1);
    add_device(t->admin, "dev-b", tok_b);
    assert_int_equal(server_sees(t->server, tok_b), 0);

    /* The server's own write (a grant) shows in its next read. */
    assert_int_equal(ld_db_repo_state(t->server, "r1", &r, &l, &found, &err), SS_OK);
    assert_int_equal(found, 0);
    assert_int_equal(ld_db_lease_grant(t->server, "r1", &grant, &err), SS_OK);
    assert_int_equal(ld_db_repo_state(t->server, "r1", &r, &l, &found, &err), SS_OK);
    assert_int_equal(found, 1);
    assert_int_equal(l.fencing, 1);
    assert_string_equal(l.id, grant.id);
    assert_int_equal(r.next_fencing, 2);

    /* The admin revokes dev-a: its token is refused and its lease is gone at once. */
    assert_int_equal(ld_db_device_revoke(t->admin, "dev-a", &err), SS_OK);
    assert_int_equal(server_sees(t->server, tok_a), 1);
    assert_int_equal(ld_db_repo_state(t->server, "r1", &r, &l, &found, &err), SS_OK);
    assert_int_equal(found, 0);
    assert_int_equal(server_sees(t->server, tok_b), 0);
}

/* Many reads through one set of kept statements, interleaved with writes by
 * both connections: each read equals the database, and nothing is left open
 * (a statement kept un-reset would pin an old WAL snapshot: the reads after
 * the other connection's write would then be stale). */
static void test_cache_interleaved(void **state)
{
    two *t = *state;
    ld_repo_row r, direct;
    ld_lease_row l;
    int changed = 0, found = 0;
    ss_err err = {{0}};
    assert_int_equal(ld_db_repo_put(t->server, "r1", "s3://b/r1", &changed, &err), SS_OK);
    for (uint64_t i = 1; i <= 300; i++) {
        ld_db *writer = i % 2 ? t->admin : t->server;
        if (i % 3 == 0) assert_int_equal(ld_db_repo_raise_head(writer, "r1", i, NULL, &err), SS_OK);
        assert_int_equal(ld_db_repo_state(t->server, "r1", &r, &l, &found, &err), SS_OK);
        assert_int_equal(ld_db_repo_get(t->admin, "r1", &direct, &err), SS_OK);
        assert_int_equal(r.head, direct.head);
        assert_int_equal(r.head, i - i % 3);
        assert_int_equal(found, 0);
    }
    /* A repository the database does not hold is not cached as anything. */
    assert_int_equal(ld_db_repo_state(t->server, "nope", &r, &l, &found, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_db_repo_put(t->admin, "nope", "s3://b/nope", &changed, &err), SS_OK);
    assert_int_equal(ld_db_repo_state(t->server, "nope", &r, &l, &found, &err), SS_OK);
}

/* ======================================================================== */
/* lockd/load                                                               */
/* ======================================================================== */

typedef struct load {
    char dir[600], conf[700], port_file[700], out[700], url[600];
    unsigned port;
    pid_t lockd, writers;
} load;

static load g;

/* fork + exec argv with stdout into out_path (NULL: inherited). */
static pid_t spawn(const char *const *argv, const char *out_path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Wait for pid: exit status, or 1000 + the signal. */
static int reap(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
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

/* First start: a free port (port file); later ones: the same port, as an
 * operator restarts it, so the clients' URL stays right. */
static void lockd_start(void)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", g.port);
    unlink(g.port_file);
    g.lockd = spawn((const char *const[]){S3SYNC_LOCKD_BIN, "--config", g.conf, "--listen", listen,
                                          "--port-file", g.port_file, NULL},
                    NULL);
    for (int i = 0; i < 1500; i++) { /* 30 s: an ASan build starts slower */
        FILE *f = fopen(g.port_file, "r");
        int ok = f && fscanf(f, "%u", &g.port) == 1;
        if (f) fclose(f);
        if (ok) return;
        assert_int_equal(waitpid(g.lockd, NULL, WNOHANG), 0);
        usleep(20000);
    }
    fail_msg("s3sync-lockd did not start");
}

static int lockd_stop(int sig)
{
    kill(g.lockd, sig);
    int rc = reap(g.lockd);
    g.lockd = 0;
    return rc;
}

/* "NAME N" in the writers' summary line -> N (-1 when absent). */
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
    if (strcmp(key, want)) n[1]++; /* out of order, a gap, or a stranger */
    n[0]++;
    return 0;
}

static void test_load_kill_and_jump(void **state)
{
    char tok[LD_TOKEN_LEN + 2] = "", base[64], *line = NULL;
    ss_store *store = NULL;
    ss_err err = {{0}};
    long n[2] = {0, 0};
    (void)state;

    pid_t admin = spawn((const char *const[]){S3SYNC_LOCKD_BIN, "--config", g.conf, "device", "add",
                                              "writers", "--repo", "load", NULL},
                        g.out);
    assert_int_equal(reap(admin), 0);
    line = slurp(g.out);
    memcpy(tok, line, LD_TOKEN_LEN);
    free(line);
    lockd_start();
    snprintf(base, sizeof base, "http://127.0.0.1:%u", g.port);
    g.writers = spawn((const char *const[]){LOCKD_WRITERS_BIN, base, "load", tok, WRITERS, RUN_S,
                                            TTL_MS, "--faults", "--jump", JUMPERS, NULL},
                      g.out);
    /* Killed between anything and anything: a commit's HEAD, its database
     * transaction, its answer; restarted on the same database. */
    sleep(3);
    assert_int_equal(lockd_stop(SIGKILL), 1000 + SIGKILL);
    usleep(300000);
    lockd_start();
    sleep(4);
    assert_int_equal(lockd_stop(SIGKILL), 1000 + SIGKILL);
    lockd_start();
    int wrc = reap(g.writers);
    g.writers = 0;
    line = slurp(g.out);
    fprintf(stderr, "%s", line);
    assert_int_equal(wrc, 0);
    assert_non_null(strstr(line, ": gapless and unique"));
    /* Every fault really happened, and writing went on through them. */
    assert_true(figure(line, "unreachable ") > 0);
    assert_true(figure(line, "stale commits refused ") > 0);
    assert_int_equal(figure(line, "accepted "), 0);
    assert_true(figure(line, "leases given up ") > 0);
    assert_int_equal(figure(line, "fencing granted twice "), 0);
    long commits = figure(line, " s: "), head = figure(line, "head 0 -> ");
    assert_true(commits >= 20);
    assert_true(head >= commits);
    assert_int_equal(figure(line, "acknowledged read back "), commits);

    /* The bucket on its own: log/1..head, nothing else, whatever lockd says. */
    assert_int_equal(ss_store_open(g.url, NULL, &store, &err), SS_OK);
    assert_int_equal(ss_store_list(store, "log/", NULL, count_log, n, &err), SS_OK);
    assert_int_equal(n[0], head);
    assert_int_equal(n[1], 0);
    ss_store_free(store);
    free(line);
    assert_int_equal(lockd_stop(SIGTERM), 0); /* a clean exit after all that */
}

static int run_load(int cache_failed)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_load_kill_and_jump)};
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    FILE *f;
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/load: skipped (no RGW: run through ci/test.sh, or eval "
                        "\"$(ci/rgw.sh start)\")\n");
        return cache_failed ? cache_failed : 77;
    }
    snprintf(g.dir, sizeof g.dir, "%s/load", tmp_root);
    mkdir(g.dir, 0700);
    snprintf(g.conf, sizeof g.conf, "%s/lockd.conf", g.dir);
    snprintf(g.port_file, sizeof g.port_file, "%s/port", g.dir);
    snprintf(g.out, sizeof g.out, "%s/out", g.dir);
    snprintf(g.url, sizeof g.url, "s3://%s/lockd-load-%s/load", bucket, tag);
    f = fopen(g.conf, "w");
    if (!f) return 1;
    fprintf(f, "listen = 127.0.0.1:0\ndb = lockd.db\nlease_ttl_min = 1\nrepo load = %s\n", g.url);
    fclose(f);
    int failed = cmocka_run_group_tests_name("lockd/load", tests, NULL, NULL);
    pid_t left[] = {g.lockd, g.writers}; /* what a failed test left running */
    for (size_t i = 0; i < sizeof left / sizeof *left; i++)
        if (left[i] > 0) {
            kill(left[i], SIGKILL);
            waitpid(left[i], NULL, 0);
        }
    return cache_failed | failed;
}

int main(void)
{
    const struct CMUnitTest cache_tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_other_writer, two_setup, two_teardown),
        cmocka_unit_test_setup_teardown(test_cache_interleaved, two_setup, two_teardown),
    };
    unsigned char rnd[8];
    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    int failed = cmocka_run_group_tests_name("lockd/cache", cache_tests, NULL, NULL);
    failed |= run_load(failed);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return failed;
}
