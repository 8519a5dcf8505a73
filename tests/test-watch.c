/*
 * test-watch: `s3sync watch` end to end. Owns the scenarios where two
 * folders each run a watch process (the real binary, --interval 1) and
 * changes made by hand on one side must appear on the other without any
 * other command: a create, an edit, a delete, a new directory with a file
 * inside (and a file written into it later, which only a watch on the new
 * directory can notice), a moved directory, an ignored file that must start
 * no sync, an inotify queue overflow, and the store unreachable for a while
 * (file://: a file in the store directory's place; s3://: faultproxy
 * dropping every connection) after which changes still propagate. SIGTERM
 * and SIGINT end a watch with 0, and the folder lock is free at once.
 *
 * Runs on file:// always and on s3:// (RGW through faultproxy, pass-through
 * except in the outage) when AWS_ENDPOINT_URL and S3SYNC_TEST_BUCKET are set.
 */
#include <errno.h>
#include <fcntl.h>
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

#define PROPAGATE_S 20.0 /* a change must reach the other folder within this */

static faultproxy *g_proxy; /* s3:// worlds reach RGW through it, so a test can cut them off */
static child g_watch[2];    /* A's and B's watch processes (pid 0: none) */

/* --- worlds (cli-fixture's, with the watches stopped at the end) ------------------------- */

static int is_s3(const world *w)
{
    return !strncmp(w->url, "s3://", 5);
}

static int world_setup(void **state)
{
    memset(g_watch, 0, sizeof g_watch);
    if (g_proxy) fp_set(g_proxy, NULL, 0);
    return world_open(state);
}

static int world_teardown(void **state)
{
    if (g_proxy) fp_set(g_proxy, NULL, 0);
    for (int d = 0; d < 2; d++)
        if (g_watch[d].pid > 0) {
            kill(g_watch[d].pid, SIGKILL);
            outcome o = finish(g_watch[d]);
            outcome_free(&o);
        }
    memset(g_watch, 0, sizeof g_watch);
    return world_close(state);
}

/* --- watch processes ------------------------------------------------------------------- */

static void start_watch(world *w, int d)
{
    g_watch[d] = start_cli(NULL, ARGS("-C", w->dev[d], "--json", "-v", "watch", "--interval", "1"));
}

/* Both devices joined, each with a watch running. */
static void two_watching(world *w)
{
    join(w, A);
    join(w, B);
    start_watch(w, A);
    start_watch(w, B);
}

/* What the watch printed on fd so far; pread leaves the shared file offset to the writer. */
static char *peek(int fd)
{
    static char buf[1 << 20];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void expect_running(int d)
{
    int status;
    if (waitpid(g_watch[d].pid, &status, WNOHANG) != 0) {
        g_watch[d].pid = 0;
        failf("the watch on %c ended (status %#x): %s", 'A' + d, status, peek(g_watch[d].err));
    }
}

/*
 * Every idle poll in the watch's --json (a pull that changed nothing, past sequence 0)
 * made exactly one request; their count. (At 0 a pull also looks for a checkpoint to start from.)
 */
static int idle_polls(const char *out)
{
    int n = 0;
    for (const char *l = out; *l; l += strcspn(l, "\n"), l += *l == '\n') {
        json_t *j = json_loadb(l, strcspn(l, "\n"), 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && !strcmp(ev, "pull") && jint(j, "files") == 0 && jint(j, "seq") > 0) {
            if (jint(j, "requests") != 1)
                failf("an idle poll made %lld requests: %.*s", (long long)jint(j, "requests"),
                      (int)strcspn(l, "\n"), l);
            n++;
        }
        json_decref(j);
    }
    return n;
}

/* The folder lock of device d can be taken at once: no command holds it. */
static void expect_lock_free(const world *w, int d)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int fd = open(at(w, d, ".s3sync/lock"), O_RDWR | O_CLOEXEC);
    if (fd < 0) failf("open %s: %s", at(w, d, ".s3sync/lock"), strerror(errno));
    if (fcntl(fd, F_OFD_SETLK, &fl))
        failf("the lock of %c is still held: %s", 'A' + d, strerror(errno));
    close(fd);
}

/* Stop device d's watch with sig: it must exit 0 and say so, and leave the lock free. */
static void stop_watch(world *w, int d, int sig)
{
    outcome o;
    kill(g_watch[d].pid, sig);
    o = finish(g_watch[d]);
    g_watch[d].pid = 0;
    expect_exit(&o, 0, sig == SIGINT ? "watch stopped by SIGINT" : "watch stopped by SIGTERM");
    if (!strstr(o.out, sig == SIGINT ? "\"signal\":\"SIGINT\"" : "\"signal\":\"SIGTERM\""))
        failf("no stop event: %s", o.out);
    outcome_free(&o);
    expect_lock_free(w, d);
}

/* Wait until path holds data (NULL: is gone); the seconds it took. */
static double wait_content(const char *path, const char *data, double limit_s)
{
    double t0 = now_s();
    for (;;) {
        size_t len = 0;
        char *got = read_file(path, &len);
        int done = data ? got && len == strlen(data) && !memcmp(got, data, len)
                        : !got && access(path, F_OK);
        free(got);
        if (done) return now_s() - t0;
        if (now_s() - t0 > limit_s)
            failf("%s did not become %s%s%s within %.0f s\nA: %s\nB: %s", path, data ? "\"" : "",
                  data ? data : "gone", data ? "\"" : "", limit_s, peek(g_watch[A].err),
                  peek(g_watch[B].err));
        usleep(50000);
    }
}

static void expect_arrives(const world *w, int to, const char *rel, const char *data)
{
    snprintf(g_step, sizeof g_step, "%s %s on %c", rel, data ? "arrives" : "is removed", 'A' + to);
    wait_content(at(w, to, rel), data, PROPAGATE_S);
    g_step[0] = '\0';
}

/* Wait (PROPAGATE_S at most) until the watch on d printed at least n lines holding needle. */
static void wait_printed(int d, int fd_err, const char *needle, int n)
{
    double t0 = now_s();
    while (count_of(peek(fd_err ? g_watch[d].err : g_watch[d].out), needle) < n) {
        if (now_s() - t0 > PROPAGATE_S)
            failf("the watch on %c did not print %s: %s", 'A' + d, needle,
                  peek(fd_err ? g_watch[d].err : g_watch[d].out));
        usleep(50000);
    }
}

/* Wait until the watch on d is inside a sync: only then it has the folder's lock file open. */
static void wait_in_sync(const world *w, int d)
{
    char fds[64], link[512], target[4096], lock[4096];
    double t0 = now_s();
    if (!realpath(at(w, d, ".s3sync/lock"), lock)) failf("no lock file in %s", w->dev[d]);
    snprintf(fds, sizeof fds, "/proc/%d/fd", (int)g_watch[d].pid);
    for (;;) {
        struct dirent **v = NULL;
        int n = scandir(fds, &v, not_dots, NULL), found = 0;
        for (int i = 0; i < n; i++) {
            ssize_t len;
            snprintf(link, sizeof link, "%s/%s", fds, v[i]->d_name);
            len = readlink(link, target, sizeof target - 1);
            if (len > 0 && (target[len] = '\0', !strcmp(target, lock))) found = 1;
        }
        free_list(v, n > 0 ? n : 0);
        if (found) return;
        if (now_s() - t0 > PROPAGATE_S) failf("the watch on %c never started a sync", 'A' + d);
        usleep(20000);
    }
}

/* Wait until process pid has taken delivery of sig (two sent at once would be one). */
static void wait_delivered(pid_t pid, int sig)
{
    char path[64], line[256];
    double t0 = now_s();
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    for (int pending = 1; pending;) {
        FILE *f = fopen(path, "re");
        pending = 0;
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "SigPnd:", 7) || !strncmp(line, "ShdPnd:", 7))
                pending |= (int)((strtoull(line + 7, NULL, 16) >> (sig - 1)) & 1);
        if (f) fclose(f);
        if (pending && now_s() - t0 > PROPAGATE_S) failf("signal %d never delivered", sig);
        if (pending) usleep(10000);
    }
}

/* --- scenarios -------------------------------------------------------------------------- */

/*
 * Changes made by hand, each awaited on the other device before the next
 * (cli-fixture's steps; ops 'w' write data, 'x' remove a file or a tree).
 */
static const step both_ways[] = {
    {A, 'w', "a.txt", "one"},
    {A, 'w', "a.txt", "two!"},
    {B, 'w', "b.txt", "from b"},
    {B, 'w', "a.txt", "three"},
    {A, 'w', "new/dir/f.txt", "deep"},
    {B, 'w', "bdir/g.txt", "g"},
    /* Into directories made since the watch began: only their own watches see it. */
    {A, 'w', "new/dir/later.txt", "later"},
    {A, 'w', "bdir/later.txt", "pulled dir"}, /* a directory B's sync made on A */
    {A, 'x', "a.txt", NULL},
    {B, 'x', "new/dir/f.txt", NULL},
    {B, 'x', "bdir", NULL},
};

static void play_by_hand(world *w, const step *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].op == 'w')
            write_bytes(at(w, s[i].dev, s[i].path), s[i].data, strlen(s[i].data));
        else
            rm_rf(at(w, s[i].dev, s[i].path));
        expect_arrives(w, s[i].dev == A ? B : A, s[i].path, s[i].data);
    }
}

/* Create, edit, delete and new directories, both ways; then stop both cleanly. */
static void test_both_ways(void **state)
{
    world *w = *state;
    two_watching(w);
    play_by_hand(w, both_ways, COUNT(both_ways));
    stop_watch(w, A, SIGTERM);
    stop_watch(w, B, SIGINT);
    expect_same_tree(w->dev[A], w->dev[B]);
}

/* A moved directory is watched under its new name; an ignored file starts no sync. */
static void test_moves_and_ignores(void **state)
{
    world *w = *state;
    int before;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, ".s3syncignore"), "*.tmp\nscratch/\n", 15);
    write_bytes(at(w, A, "d1/d2/f"), "f", 1);
    start_watch(w, A);
    start_watch(w, B);
    expect_arrives(w, B, "d1/d2/f", "f");
    rename(at(w, A, "d1"), at(w, A, "moved"));
    expect_arrives(w, B, "moved/d2/f", "f");
    write_bytes(at(w, A, "moved/d2/g"), "g", 1); /* its watch must know the new path */
    expect_arrives(w, B, "moved/d2/g", "g");

    do { /* let A settle: no sync for 1.5 s */
        before = count_of(peek(g_watch[A].out), "\"event\":\"sync\"");
        usleep(1500000);
    } while (count_of(peek(g_watch[A].out), "\"event\":\"sync\"") != before);
    write_bytes(at(w, A, "x.tmp"), "x", 1);
    write_bytes(at(w, A, "scratch/deep/y"), "y", 1);
    write_bytes(at(w, A, "scratch/deep/z"), "z", 1);
    usleep(1500000);
    if (count_of(peek(g_watch[A].out), "\"event\":\"sync\"") != before)
        failf("ignored files started a sync: %s", peek(g_watch[A].out));
    write_bytes(at(w, A, "kept.txt"), "kept", 4);
    expect_arrives(w, B, "kept.txt", "kept");
    if (!access(at(w, B, "x.tmp"), F_OK) || !access(at(w, B, "scratch"), F_OK))
        failf("an ignored file reached B");
    stop_watch(w, A, SIGTERM);
    stop_watch(w, B, SIGTERM);
}

/*
 * The watch stopped while 20000 events happen: the queue overflows (max_queued_events
 * is 16384 by default), the watches are rebuilt and the whole folder synced.
 */
static void test_overflow(void **state)
{
    world *w = *state;
    struct stat st;
    two_watching(w);
    write_bytes(at(w, A, "many/p"), "p", 1);
    write_bytes(at(w, A, "many/q"), "q", 1);
    expect_arrives(w, B, "many/q", "q");
    kill(g_watch[A].pid, SIGSTOP);
    for (int i = 0; i < 10000; i++) { /* alternating names: the kernel merges no two events */
        chmod(at(w, A, "many/p"), i & 1 ? 0600 : 0644);
        chmod(at(w, A, "many/q"), i & 1 ? 0600 : 0644);
    }
    chmod(at(w, A, "many/p"), 0640);
    write_bytes(at(w, A, "many/last"), "last", 4); /* lost with the rest of the queue */
    kill(g_watch[A].pid, SIGCONT);
    expect_arrives(w, B, "many/last", "last");
    for (double t0 = now_s(); stat(at(w, B, "many/p"), &st) || (st.st_mode & 07777) != 0640;) {
        if (now_s() - t0 > PROPAGATE_S) failf("the mode of many/p did not arrive");
        usleep(50000); /* the same transaction as many/last, applied path by path */
    }
    if (!strstr(peek(g_watch[A].out), "\"trigger\":\"overflow\""))
        failf("no overflow sync on A: %.2000s", peek(g_watch[A].out));
    write_bytes(at(w, A, "many/after"), "after", 5); /* watched again after the rebuild */
    expect_arrives(w, B, "many/after", "after");
    stop_watch(w, A, SIGTERM);
    stop_watch(w, B, SIGTERM);
    expect_same_tree(w->dev[A], w->dev[B]);
}

/* Make the store unreachable (1) or reachable again (0). */
static void store_down(const world *w, int down)
{
    static const fp_rates refuse = {.permille = {[FP_DROP_BEFORE] = 1000}};
    char store[256], away[256];
    if (is_s3(w)) {
        fp_set(g_proxy, down ? &refuse : NULL, 0);
        return;
    }
    /* A file in its place (ENOTDIR), as a network file system gone away fails with EIO;
     * an empty directory would be a store rolled back to nothing, which watch must not accept. */
    snprintf(store, sizeof store, "%s/store", w->root);
    snprintf(away, sizeof away, "%s/store.away", w->root);
    if (down) {
        if (rename(store, away)) failf("move the store: %s", strerror(errno));
        write_bytes(store, "gone", 4);
    } else if (unlink(store) || rename(away, store)) {
        failf("move the store back: %s", strerror(errno));
    }
}

/* Changes made while the store is gone arrive once it is back; the watches never end. */
static void test_store_outage(void **state)
{
    world *w = *state;
    const char *line = "retrying in";
    two_watching(w);
    write_bytes(at(w, A, "before"), "before", 6);
    expect_arrives(w, B, "before", "before");
    store_down(w, 1);
    write_bytes(at(w, A, "during-a"), "made on A in the outage", 23);
    write_bytes(at(w, B, "during-b"), "made on B in the outage", 23);
    write_bytes(at(w, A, "before"), "edited in the outage", 20);
    wait_printed(A, 1, line, 1);
    wait_printed(B, 1, line, 1);
    usleep(4000000); /* more failed syncs and polls, with backoff, and no more lines */
    expect_running(A);
    expect_running(B);
    for (int d = A; d <= B; d++)
        if (count_of(peek(g_watch[d].err), line) != 1)
            failf("%c: one line per outage expected: %s", 'A' + d, peek(g_watch[d].err));
    store_down(w, 0);
    expect_arrives(w, B, "during-a", "made on A in the outage");
    expect_arrives(w, A, "during-b", "made on B in the outage");
    expect_arrives(w, B, "before", "edited in the outage");
    if (!strstr(peek(g_watch[A].out), "\"event\":\"recovered\""))
        failf("no recovered event: %s", peek(g_watch[A].out));
    stop_watch(w, A, SIGTERM);
    stop_watch(w, B, SIGTERM);
    expect_same_tree(w->dev[A], w->dev[B]);
}

/* A store that fails verification (rolled back to nothing) ends the watch: exit 3, one line. */
static void test_rollback_ends_watch(void **state)
{
    world *w = *state;
    char store[256], away[256];
    outcome o;
    if (is_s3(w)) skip(); /* the same engine check; the file store is quicker to roll back */
    two_watching(w);
    write_bytes(at(w, A, "f"), "f", 1);
    expect_arrives(w, B, "f", "f");
    snprintf(store, sizeof store, "%s/store", w->root);
    snprintf(away, sizeof away, "%s/store.away", w->root);
    if (rename(store, away) || mkdir(store, 0755))
        failf("roll the store back: %s", strerror(errno));
    write_bytes(at(w, A, "g"), "g", 1);
    o = finish(g_watch[A]);
    g_watch[A].pid = 0;
    expect_exit(&o, 3, "watch on a rolled-back store");
    if (count_of(o.err, "s3sync watch: ") != 1 || !strstr(o.err, "rolled back"))
        failf("one line naming the rollback expected: %s", o.err);
    outcome_free(&o);
    expect_lock_free(w, A);
}

/* An idle poll costs one request; a watch leaves the folder to other commands between syncs. */
static void test_idle_and_shared(void **state)
{
    world *w = *state;
    json_t *j;
    two_watching(w);
    write_bytes(at(w, A, "first"), "first", 5);
    expect_arrives(w, B, "first", "first");
    /* --interval 1: a few polls in a few seconds (more if the shared RGW is slow now) */
    for (double t0 = now_s();
         idle_polls(peek(g_watch[A].out)) < 2 || idle_polls(peek(g_watch[B].out)) < 2;) {
        if (now_s() - t0 > PROPAGATE_S) failf("no idle polls: %s", peek(g_watch[A].out));
        usleep(100000);
    }
    write_bytes(at(w, B, "by-hand"), "synced by hand", 14);
    j = ok_json(w, B, "sync"); /* the folder lock is free between the watch's syncs */
    json_decref(j);
    expect_arrives(w, A, "by-hand", "synced by hand");
    stop_watch(w, A, SIGTERM);
    stop_watch(w, B, SIGTERM);
}

/* Take device d's folder lock as another command would; the fd to close to release it. */
static int hold_lock(const world *w, int d)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int fd = open(at(w, d, ".s3sync/lock"), O_RDWR | O_CLOEXEC);
    if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl))
        failf("take the lock of %c: %s", 'A' + d, strerror(errno));
    return fd;
}

/*
 * SIGTERM while a sync runs (here: waiting for the folder lock another
 * command holds) lets it finish, then exits 0; a second signal abandons it.
 */
static void test_stop_mid_sync(void **state)
{
    world *w = *state;
    outcome o;
    int lock;
    if (is_s3(w)) skip(); /* nothing here depends on the store */
    join(w, A);
    join(w, B);
    start_watch(w, A);
    wait_printed(A, 0, "\"trigger\":\"start\"", 1); /* its first sync is done */
    lock = hold_lock(w, A);
    write_bytes(at(w, A, "pending"), "pushed after SIGTERM", 20);
    wait_in_sync(w, A); /* the debounce is over: the sync waits for the lock */
    kill(g_watch[A].pid, SIGTERM);
    usleep(1000000);
    expect_running(A); /* still finishing the sync */
    close(lock);
    o = finish(g_watch[A]);
    g_watch[A].pid = 0;
    expect_exit(&o, 0, "watch stopped mid-sync");
    outcome_free(&o);
    ok(w, B, "sync");
    expect_content(at(w, B, "pending"), "pushed after SIGTERM");

    start_watch(w, A);
    wait_printed(A, 0, "\"trigger\":\"start\"", 1);
    lock = hold_lock(w, A);
    write_bytes(at(w, A, "abandoned"), "never pushed", 12);
    wait_in_sync(w, A);
    kill(g_watch[A].pid, SIGTERM);
    wait_delivered(g_watch[A].pid, SIGTERM);
    kill(g_watch[A].pid, SIGTERM);
    o = finish(g_watch[A]);
    g_watch[A].pid = 0;
    expect_exit(&o, 128 + SIGTERM, "watch abandoning its sync");
    outcome_free(&o);
    close(lock);
    ok(w, A, "sync"); /* the folder is fine: the next command publishes it */
    ok(w, B, "sync");
    expect_content(at(w, B, "abandoned"), "never pushed");
}

/* The folder itself moved away: the watch says so and ends (1). */
static void test_folder_moved(void **state)
{
    world *w = *state;
    outcome o;
    if (is_s3(w)) skip();
    join(w, A);
    start_watch(w, A);
    wait_printed(A, 0, "\"event\":\"start\"", 1); /* the watches are made */
    if (rename(w->dev[A], at_dir(w->root, "moved"))) failf("move A: %s", strerror(errno));
    o = finish(g_watch[A]);
    g_watch[A].pid = 0;
    expect_exit(&o, 1, "watch of a moved folder");
    if (!strstr(o.err, "moved or removed")) failf("no message: %s", o.err);
    outcome_free(&o);
}

/* --- arguments (file:// only) ------------------------------------------------------------ */

static void expect_usage(const char *const *args, int code, const char *what)
{
    outcome o = run_cli(NULL, args);
    expect_exit(&o, code, what);
    if (!o.err[0]) failf("%s: no message", what);
    outcome_free(&o);
}

static void test_bad_arguments(void **state)
{
    world *w = *state;
    if (is_s3(w)) skip();
    join(w, A);
    expect_usage(ARGS("-C", w->dev[A], "watch", "extra"), 2, "watch with an argument");
    expect_usage(ARGS("-C", w->dev[A], "watch", "--interval", "0"), 2, "--interval 0");
    expect_usage(ARGS("-C", w->dev[A], "watch", "--interval", "soon"), 2, "--interval soon");
    expect_usage(ARGS("-C", w->dev[A], "watch", "--interval", "1e9"), 2, "--interval 1e9");
    expect_usage(ARGS("-C", w->dev[A], "sync", "--interval", "5"), 2, "sync --interval");
    expect_usage(ARGS("-C", w->root, "watch"), 1, "watch outside a synced folder");
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_both_ways),
        WORLD_TEST(test_moves_and_ignores),
        WORLD_TEST(test_idle_and_shared),
        WORLD_TEST(test_store_outage),
        WORLD_TEST(test_overflow),
        WORLD_TEST(test_bad_arguments),
        WORLD_TEST(test_rollback_ends_watch),
        WORLD_TEST(test_stop_mid_sync),
        WORLD_TEST(test_folder_moved),
    };
    const char *endpoint = getenv("AWS_ENDPOINT_URL_S3");
    int failed;

    if (fixture_init("watch")) return 1;
    if (getenv("S3SYNC_WATCH_ONLY")) cmocka_set_test_filter(getenv("S3SYNC_WATCH_ONLY"));
    if (!endpoint || !*endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    if (fixture_bucket()) {
        if (!(g_proxy = fp_start(endpoint, 1))) return 1;
        /* Every s3sync child talks to RGW through the proxy, so a test can cut it off. */
        setenv("AWS_ENDPOINT_URL", fp_url(g_proxy), 1);
        unsetenv("AWS_ENDPOINT_URL_S3");
    }
    failed = fixture_run_file_and_s3(tests, COUNT(tests));
    if (g_proxy) fp_stop(g_proxy);
    return failed | fixture_parts_end();
}
