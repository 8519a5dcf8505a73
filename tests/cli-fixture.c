/*
 * cli-fixture: running s3sync, files and trees, scripts (see cli-fixture.h).
 */
#include "cli-fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "fsio.h"
#include "s3store.h"

char g_step[256];

void failf(const char *fmt, ...)
{
    va_list ap;
    if (g_step[0]) fprintf(stderr, "at %s: ", g_step);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fail();
}

/* --- suites and worlds --------------------------------------------------------------- */

static char g_suite[32];
static char g_tag[13];    /* random per run */
static unsigned g_worlds; /* worlds made so far: each gets its own prefix */
static int g_use_s3;

int fixture_init(const char *suite)
{
    unsigned char rnd[6];
    if (sodium_init() < 0) return -1;
    snprintf(g_suite, sizeof g_suite, "%s", suite);
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(g_tag, sizeof g_tag, rnd, sizeof rnd);
    setenv("S3SYNC_KDF", "interactive", 1); /* fast key derivation for every device made */
    setenv("S3SYNC_PASSWORD", "correct horse battery staple", 1);
    unsetenv("S3SYNC_PASSWORD_FILE");
    unsetenv("S3SYNC_PASSWORD_COMMAND");
    unsetenv("S3SYNC_CRASH_AT");
    unsetenv("S3SYNC_TOKEN_FILE");
    return 0;
}

const char *fixture_bucket(void)
{
    const char *endpoint = getenv("AWS_ENDPOINT_URL_S3"), *bucket = getenv("S3SYNC_TEST_BUCKET");
    if (!endpoint || !*endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
    return endpoint && *endpoint && bucket && *bucket ? bucket : NULL;
}

void fixture_use_s3(int on)
{
    g_use_s3 = on;
}

int world_open(void **state)
{
    const char *tmp = getenv("TMPDIR");
    world *w = calloc(1, sizeof *w);
    if (!w) return -1;
    snprintf(w->root, sizeof w->root, "%s/ss-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", g_suite);
    if (!mkdtemp(w->root)) {
        free(w);
        return -1;
    }
    if (g_use_s3)
        snprintf(w->url, sizeof w->url, "s3://%s/%s-%s-%u", fixture_bucket(), g_suite, g_tag,
                 ++g_worlds);
    else
        snprintf(w->url, sizeof w->url, "file://%s/store", w->root);
    for (int d = 0; d < MAX_DEV; d++)
        snprintf(w->dev[d], sizeof w->dev[d], "%s/%c", w->root, 'A' + d);
    g_step[0] = '\0';
    *state = w;
    return 0;
}

typedef struct key_list {
    char **v;
    size_t n;
} key_list;

static int collect_key(void *ctx, const char *key, const ss_store_stat *st)
{
    key_list *k = ctx;
    char **nv = realloc(k->v, (k->n + 2) * sizeof *nv);
    (void)st;
    if (!nv) return 1;
    k->v = nv;
    if (!(nv[k->n] = strdup(key))) return 1;
    nv[++k->n] = NULL;
    return 0;
}

char **store_keys(const char *url, size_t *ret_n)
{
    ss_store *s = NULL;
    key_list k = {0};
    ss_err err = {{0}};
    if (ss_store_open(url, NULL, &s, &err) || ss_store_list(s, "", NULL, collect_key, &k, &err) ||
        (!k.v && !(k.v = calloc(1, sizeof *k.v)))) {
        ss_store_free(s);
        keys_free(k.v);
        failf("cannot list %s: %s", url, err.msg);
    }
    ss_store_free(s);
    if (ret_n) *ret_n = k.n;
    return k.v;
}

static int collect_sized(void *ctx, const char *key, const ss_store_stat *st)
{
    listing *l = ctx;
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    uint64_t *ns = nv ? realloc(l->size, (l->n + 1) * sizeof *ns) : NULL;
    if (nv) l->v = nv;
    if (!ns || !(nv[l->n] = strdup(key))) return 1;
    l->size = ns;
    l->size[l->n++] = st ? st->size : 0;
    return 0;
}

listing store_listing(const char *url, const char *prefix)
{
    ss_store *s = NULL;
    listing l = {0};
    ss_err err = {{0}};
    if (ss_store_open(url, NULL, &s, &err) ||
        ss_store_list(s, prefix, NULL, collect_sized, &l, &err)) {
        ss_store_free(s);
        listing_free(&l);
        failf("cannot list %s under %s: %s", prefix, url, err.msg);
    }
    ss_store_free(s);
    return l;
}

void listing_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->size);
    memset(l, 0, sizeof *l);
}

ss_store *world_store(const world *w)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    if (ss_store_open(w->url, NULL, &s, &err)) failf("open %s: %s", w->url, err.msg);
    return s;
}

void keys_free(char **keys)
{
    for (size_t i = 0; keys && keys[i]; i++)
        free(keys[i]);
    free(keys);
}

int world_close(void **state)
{
    world *w = *state;
    ss_store *s = NULL;
    key_list k = {0};
    const char *keep = getenv("S3SYNC_KEEP");
    if (keep && !strcmp(keep, "1")) { /* to look into a failure */
        fprintf(stderr, "kept %s and %s\n", w->root, w->url);
        free(w);
        return 0;
    }
    if (!strncmp(w->url, "s3://", 5) && !ss_store_open(w->url, NULL, &s, NULL)) {
        ss_store_list(s, "", NULL, collect_key, &k, NULL); /* leave the bucket as it was */
        for (size_t i = 0; i < k.n; i++)
            ss_store_delete(s, k.v[i], NULL);
    }
    keys_free(k.v);
    ss_store_free(s);
    rm_rf(w->root);
    free(w);
    return 0;
}

static int g_parts_run; /* parts fixture_part said yes to */

int fixture_part(const char *name)
{
    const char *want = getenv("S3SYNC_TEST_PART");
    int run = !want || !*want || !strcmp(want, name);
    g_parts_run += run;
    return run;
}

int fixture_parts_end(void)
{
    const char *want = getenv("S3SYNC_TEST_PART");
    if (g_parts_run || !want || !*want) return 0;
    fprintf(stderr, "%s: no part %s (S3SYNC_TEST_PART)\n", g_suite, want);
    return 1;
}

int fixture_run_file_and_s3(const struct CMUnitTest *tests, size_t n)
{
    char name[64];
    int failed = 0;
    snprintf(name, sizeof name, "%s/file", g_suite);
    fixture_use_s3(0);
    if (fixture_part("file")) failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    if (!fixture_part("s3")) return failed;
    if (!fixture_bucket()) {
        fprintf(stderr, "%s: s3 store skipped (no RGW: run through ci/test.sh)\n", g_suite);
        return failed;
    }
    snprintf(name, sizeof name, "%s/s3", g_suite);
    fixture_use_s3(1);
    failed |= _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    return failed;
}

/* dir/rel in one of a few rotating buffers (valid for the next 15 calls). */
const char *at_dir(const char *dir, const char *rel)
{
    static char buf[16][4096];
    static unsigned next;
    char *p = buf[next++ % COUNT(buf)];
    snprintf(p, sizeof buf[0], "%s/%s", dir, rel);
    return p;
}

const char *at(const world *w, int d, const char *rel)
{
    return at_dir(w->dev[d], rel);
}

/* --- running s3sync ----------------------------------------------------------------- */

static int same_name(const char *a, const char *b)
{
    size_t n = strcspn(a, "=");
    return n == strcspn(b, "=") && !strncmp(a, b, n);
}

/* environ with overrides: "NAME=value" sets, "NAME" unsets. */
static char **make_env(const char *const *over)
{
    size_t n = 0, k = 0;
    for (char **e = environ; *e; e++)
        n++;
    for (const char *const *o = over; o && *o; o++)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    assert_non_null(env);
    for (char **e = environ; *e; e++) {
        int hidden = 0;
        for (const char *const *o = over; o && *o && !hidden; o++)
            hidden = same_name(*e, *o);
        if (!hidden) env[k++] = *e;
    }
    for (const char *const *o = over; o && *o; o++)
        if (strchr(*o, '=')) env[k++] = (char *)*o;
    return env;
}

/* Start argv[0] (a path) with env overrides, stdin /dev/null, stdout and stderr captured. */
child start_prog(const char *const *env, const char *const *argv)
{
    child c = {-1, memfd_create("stdout", MFD_CLOEXEC), memfd_create("stderr", MFD_CLOEXEC)};
    posix_spawn_file_actions_t fa;
    char **envp = make_env(env);
    int rc;
    assert_true(c.out >= 0 && c.err >= 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, c.out, 1);
    posix_spawn_file_actions_adddup2(&fa, c.err, 2);
    rc = posix_spawn(&c.pid, argv[0], &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (rc) failf("spawn %s: %s", argv[0], strerror(rc));
    return c;
}

static char *slurp_fd(int fd)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[65536];
    ssize_t n;
    assert_non_null(m);
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        fwrite(chunk, 1, (size_t)n, m);
    fclose(m);
    close(fd);
    return buf;
}

outcome finish(child c)
{
    outcome o = {0};
    int status;
    while (waitpid(c.pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    o.sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    o.out = slurp_fd(c.out);
    o.err = slurp_fd(c.err);
    o.json = json_loads(o.out, JSON_DISABLE_EOF_CHECK, NULL);
    return o;
}

outcome finish_within(child c, double seconds)
{
    double until = now_s() + seconds;
    siginfo_t info;
    for (;;) { /* WNOWAIT: finish reaps it */
        info.si_pid = 0;
        if (waitid(P_PID, (id_t)c.pid, &info, WEXITED | WNOHANG | WNOWAIT) && errno != EINTR)
            failf("waitid: %s", strerror(errno));
        if (info.si_pid) break;
        if (now_s() > until) {
            kill(c.pid, SIGKILL); /* hung: the outcome says killed */
            break;
        }
        usleep(20000);
    }
    return finish(c);
}

void expect_stopped(child c, const char *what)
{
    int status;
    while (waitpid(c.pid, &status, WUNTRACED) < 0)
        assert_int_equal(errno, EINTR);
    if (!WIFSTOPPED(status))
        failf("%s did not stop at its pause point (exit %d, signal %d)", what,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void outcome_free(outcome *o)
{
    free(o->out);
    free(o->err);
    json_decref(o->json);
}

/* s3sync with args (NULL-terminated). */
child start_cli(const char *const *env, const char *const *args)
{
    /* S3SYNC_TEST_BIN: a wrapper in its place (ci/valgrind.sh runs s3sync under memcheck). */
    const char *bin = getenv("S3SYNC_TEST_BIN"), *argv[24] = {bin && *bin ? bin : S3SYNC_BIN};
    for (size_t i = 0; args[i]; i++) {
        assert_true(i + 2 < COUNT(argv));
        argv[i + 1] = args[i];
    }
    return start_prog(env, argv);
}

outcome run_cli(const char *const *env, const char *const *args)
{
    return finish(start_cli(env, args));
}

/* s3sync -C DEV --json [--token-file T] ARGS... */
static child start_on(const world *w, int d, const char *const *env, const char *const *args)
{
    const char *argv[24] = {"-C", w->dev[d], "--json"};
    size_t n = 3;
    if (w->token[d][0]) {
        argv[n++] = "--token-file";
        argv[n++] = w->token[d];
    }
    for (size_t i = 0; args[i]; i++) {
        assert_true(n + 1 < COUNT(argv));
        argv[n++] = args[i];
    }
    return start_cli(env, argv);
}

child start_cmd(const world *w, int d, const char *const *env, const char *cmd)
{
    return start_on(w, d, env, ARGS(cmd));
}

outcome run_cmd(const world *w, int d, const char *const *env, const char *cmd)
{
    return run_on(w, d, env, ARGS(cmd));
}

outcome run_on(const world *w, int d, const char *const *env, const char *const *args)
{
    return finish(start_on(w, d, env, args));
}

json_t *ok_on(const world *w, int d, const char *const *args)
{
    char what[64];
    outcome o = run_on(w, d, NULL, args);
    json_t *j;
    snprintf(what, sizeof what, "%s on %c", args[0], 'A' + d);
    expect_exit(&o, 0, what);
    if (!json_is_object(o.json)) failf("%s: stdout is not JSON: %s", what, o.out);
    j = json_incref(o.json);
    outcome_free(&o);
    return j;
}

void expect_exit(outcome *o, int code, const char *what)
{
    if (o->code == code) return;
    fprintf(stderr, "%s: exit %d (signal %d), expected %d\nstderr: %sstdout: %s\n", what, o->code,
            o->sig, code, o->err, o->out);
    outcome_free(o);
    failf("%s failed", what);
}

void expect_fork(const world *w, int d, const char *cmd, const char *snap, uint64_t seq)
{
    char key[40], what[64];
    outcome o = run_cmd(w, d, NULL, cmd);
    snprintf(key, sizeof key, "log/%020" PRIu64, seq);
    snprintf(what, sizeof what, "%s on a fork", cmd);
    expect_exit(&o, 3, what);
    if (!*o.err || strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
        failf("%s: not one line: %s", what, o.err);
    if (!strstr(o.err, key) || !strstr(o.err, "fork"))
        failf("%s: the fork at %s is not named: %s", what, key, o.err);
    outcome_free(&o);
    expect_same_tree(w->dev[d], snap);
}

int64_t jint(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) failf("--json has no integer %s", key);
    return (int64_t)json_integer_value(v);
}

/* Run cmd on device d, which must succeed; its --json (the caller decrefs). */
json_t *ok_json(const world *w, int d, const char *cmd)
{
    return ok_on(w, d, ARGS(cmd));
}

void ok(const world *w, int d, const char *cmd)
{
    json_decref(ok_json(w, d, cmd));
}

/* Make device d's folder: create the repository or join it. */
void join(world *w, int d)
{
    char name[2] = {(char)('A' + d), 0};
    outcome o = w->token[d][0]
                    ? run_cli(NULL, ARGS("--json", "--device", name, "--token-file", w->token[d],
                                         "init", w->url, w->dev[d]))
                    : run_cli(NULL, ARGS("--json", "--device", name, "init", w->url, w->dev[d]));
    expect_exit(&o, 0, "init");
    outcome_free(&o);
    if (w->n < d + 1) w->n = d + 1;
}

/* --- files and trees ---------------------------------------------------------------- */

void make_parents(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST) failf("mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
}

void write_bytes(const char *path, const void *data, size_t len)
{
    int fd;
    make_parents(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd))
        failf("write %s: %s", path, strerror(errno));
}

/* len fresh pseudo-random bytes (a new seed per call, reproducible per run). */
void write_random(const char *path, size_t len)
{
    static uint64_t calls;
    uint8_t seed[randombytes_SEEDBYTES] = {0};
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    calls++;
    memcpy(seed, &calls, sizeof calls);
    randombytes_buf_deterministic(buf, len, seed);
    write_bytes(path, buf, len);
    free(buf);
}

void flip_middle_byte(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    uint8_t b;
    if (fd < 0 || fstat(fd, &st) || pread(fd, &b, 1, st.st_size / 2) != 1) {
        failf("flip %s", path);
        return;
    }
    b ^= 0x5a;
    if (pwrite(fd, &b, 1, st.st_size / 2) != 1 || close(fd)) failf("flip %s", path);
}

int not_dots(const struct dirent *e)
{
    return strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
}

static int rm_entry(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    chmod(path, 0700);
    if (!(d = opendir(path))) return -1;
    while ((e = readdir(d))) {
        char *sub = NULL;
        if (!not_dots(e) || asprintf(&sub, "%s/%s", path, e->d_name) < 0) continue;
        rm_entry(sub);
        free(sub);
    }
    closedir(d);
    return rmdir(path);
}

void rm_rf(const char *path)
{
    if (rm_entry(path)) failf("remove %s: %s", path, strerror(errno));
}

int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Sorted names in dir, without .s3sync/ at a folder's top; -1 when it cannot be read. */
static int list_dir(const char *dir, int top, struct dirent ***ret)
{
    int n = scandir(dir, ret, not_dots, by_name), k = 0;
    for (int i = 0; i < n; i++) {
        if (top && !strcmp((*ret)[i]->d_name, ".s3sync"))
            free((*ret)[i]);
        else
            (*ret)[k++] = (*ret)[i];
    }
    return n < 0 ? -1 : k;
}

void free_list(struct dirent **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The bytes of a regular file (NUL-terminated), or NULL when it cannot be read. */
char *read_file(const char *path, size_t *len)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rbe"), *m = f ? open_memstream(&buf, len) : NULL;
    char chunk[65536];
    size_t n;
    while (m && (n = fread(chunk, 1, sizeof chunk, f)))
        fwrite(chunk, 1, n, m);
    if (m) fclose(m);
    if (f) fclose(f);
    return buf;
}

/* 1 when both are regular files with the same bytes. */
int same_content(const char *a, const char *b)
{
    static char x[MIB], y[MIB];
    FILE *fa = fopen(a, "rbe"), *fb = fopen(b, "rbe");
    int same = fa && fb;
    while (same) {
        size_t n = fread(x, 1, sizeof x, fa), m = fread(y, 1, sizeof y, fb);
        same = n == m && !memcmp(x, y, n);
        if (!n) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static int dir_diff(const char *a, const char *b, const char *rel, char *why, size_t cap);

static int entry_diff(const char *a, const char *b, const char *rel, char *why, size_t cap)
{
    struct stat sa, sb;
    char ta[4097], tb[4097];
    const char *bad = NULL;
    if (lstat(a, &sa) || lstat(b, &sb))
        bad = "lstat failed";
    else if ((sa.st_mode ^ sb.st_mode) & S_IFMT)
        bad = "types differ";
    else if (!S_ISLNK(sa.st_mode) && (sa.st_mode ^ sb.st_mode) & 07777)
        bad = "modes differ";
    else if (S_ISDIR(sa.st_mode))
        return dir_diff(a, b, rel, why, cap); /* a directory's mtime is not kept (README) */
    else if (S_ISREG(sa.st_mode) && !same_content(a, b))
        bad = "contents differ";
    else if (S_ISLNK(sa.st_mode)) {
        ssize_t n = readlink(a, ta, sizeof ta), m = readlink(b, tb, sizeof tb);
        if (n < 0 || n != m || memcmp(ta, tb, (size_t)n)) bad = "symlink targets differ";
    }
    if (bad) {
        snprintf(why, cap, "%s: %s", rel, bad);
        return 1;
    }
    if (sa.st_mtim.tv_sec == sb.st_mtim.tv_sec && sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec)
        return 0;
    snprintf(why, cap, "%s: mtimes differ (%lld.%09ld, %lld.%09ld)", rel,
             (long long)sa.st_mtim.tv_sec, sa.st_mtim.tv_nsec, (long long)sb.st_mtim.tv_sec,
             sb.st_mtim.tv_nsec);
    return 1;
}

static int dir_diff(const char *a, const char *b, const char *rel, char *why, size_t cap)
{
    struct dirent **na = NULL, **nb = NULL;
    int n = list_dir(a, !*rel, &na), m = list_dir(b, !*rel, &nb), i = 0, j = 0, diff = 0;
    if (n < 0 || m < 0) {
        snprintf(why, cap, "cannot list %s", n < 0 ? a : b);
        diff = 1;
    }
    while (!diff && (i < n || j < m)) {
        int c = i == n ? 1 : j == m ? -1 : strcmp(na[i]->d_name, nb[j]->d_name);
        if (c) {
            snprintf(why, cap, "%s%s%s only in %s", rel, *rel ? "/" : "",
                     c < 0 ? na[i]->d_name : nb[j]->d_name, c < 0 ? a : b);
            diff = 1;
        } else {
            char *sub = NULL, *pa = NULL, *pb = NULL;
            if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", na[i]->d_name) < 0 ||
                asprintf(&pa, "%s/%s", a, na[i]->d_name) < 0 ||
                asprintf(&pb, "%s/%s", b, na[i]->d_name) < 0)
                fail();
            diff = entry_diff(pa, pb, sub, why, cap);
            free(sub);
            free(pa);
            free(pb);
            i++;
            j++;
        }
    }
    free_list(na, n);
    free_list(nb, m);
    return diff;
}

/*
 * Trees a and b hold the same names, types, modes, contents, link targets and
 * mtimes of files and links, to the nanosecond (.s3sync/ aside).
 */
void expect_same_tree(const char *a, const char *b)
{
    char why[8192];
    if (dir_diff(a, b, "", why, sizeof why)) failf("%s and %s differ: %s", a, b, why);
}

void expect_converged(const world *w)
{
    for (int d = 1; d < w->n; d++)
        expect_same_tree(w->dev[0], w->dev[d]);
}

/* Depth-first walk of a folder (.s3sync/ skipped); fn returns non-zero to stop. */

int walk(const char *dir, const char *rel, walk_fn fn, void *ctx)
{
    struct dirent **v = NULL;
    int n = list_dir(dir, !*rel, &v), stop = n < 0;
    for (int i = 0; i < n && !stop; i++) {
        char *path = NULL, *sub = NULL;
        struct stat st;
        if (asprintf(&path, "%s/%s", dir, v[i]->d_name) < 0 ||
            asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", v[i]->d_name) < 0)
            fail();
        stop = lstat(path, &st) || fn(ctx, path, sub, &st) ||
               (S_ISDIR(st.st_mode) && walk(path, sub, fn, ctx));
        free(path);
        free(sub);
    }
    free_list(v, n);
    return stop;
}

typedef struct needle {
    const char *data; /* content sought, or a name part */
    size_t len;
    int count;
} needle;

int count_content(void *ctx, const char *path, const char *rel, const struct stat *st)
{
    needle *nd = ctx;
    size_t len = 0;
    char *buf = NULL;
    (void)rel;
    if (S_ISREG(st->st_mode) && (size_t)st->st_size == nd->len && (buf = read_file(path, &len)) &&
        len == nd->len && !memcmp(buf, nd->data, len))
        nd->count++;
    free(buf);
    return 0;
}

int count_name(void *ctx, const char *path, const char *rel, const struct stat *st)
{
    needle *nd = ctx;
    const char *base = strrchr(path, '/') + 1;
    (void)rel;
    (void)st;
    if (strstr(base, nd->data)) nd->count++;
    return 0;
}

int old_or_new(void *ctx, const char *path, const char *rel, const struct stat *st)
{
    const char *const *trees = ctx; /* old, new */
    const char *base = strrchr(path, '/') + 1;
    if (!S_ISREG(st->st_mode) || !strncmp(base, SS_FS_TMP_PREFIX, strlen(SS_FS_TMP_PREFIX)))
        return 0;
    if (same_content(path, at_dir(trees[0], rel)) || same_content(path, at_dir(trees[1], rel)))
        return 0;
    fprintf(stderr, "%s is neither its old nor its new content\n", path);
    return 1;
}

int staged_files(const char *dev)
{
    char dir[PATH_MAX];
    struct dirent *de;
    DIR *d;
    int n = 0;
    snprintf(dir, sizeof dir, "%s/.s3sync/tmp", dev);
    if (!(d = opendir(dir))) return 0;
    while ((de = readdir(d)))
        n += !strncmp(de->d_name, "stage-", 6);
    closedir(d);
    return n;
}

void expect_no_leftovers(const world *w)
{
    for (int k = A; k <= B; k++) {
        if (staged_files(w->dev[k])) failf("%c keeps a pull's stage files", 'A' + k);
        if (count_in(w->dev[k], count_name, ".sync-conflict-"))
            failf("%c has a conflict copy", 'A' + k);
        if (count_in(w->dev[k], count_name, SS_FS_TMP_PREFIX))
            failf("%c keeps a temp file", 'A' + k);
    }
}

/* Files holding exactly data, or entries whose name contains data. */
int count_in(const char *dir, walk_fn fn, const char *data)
{
    needle nd = {data, strlen(data), 0};
    if (walk(dir, "", fn, &nd)) failf("cannot walk %s", dir);
    return nd.count;
}

void expect_content(const char *path, const char *data)
{
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (!data && buf) failf("%s exists; expected it gone", path);
    if (data && (!buf || len != strlen(data) || memcmp(buf, data, len)))
        failf("%s does not hold \"%s\"", path, data);
    free(buf);
}

/* A copy of dir, to compare with later (cp -a keeps modes, links and times). */
void snapshot(const char *dir, const char *copy)
{
    outcome o = finish(start_prog(NULL, ARGS("/bin/cp", "-a", dir, copy)));
    expect_exit(&o, 0, "cp -a");
    outcome_free(&o);
}

/* --- scripts ------------------------------------------------------------------------ */

void sync_dev(const world *w, int d, const char *max_bytes, const char *field)
{
    json_t *j = ok_json(w, d, "sync");
    if (max_bytes && jint(j, field) > strtoll(max_bytes, NULL, 10))
        failf("sync's %s is %" PRId64 ", expected at most %s", field, jint(j, field), max_bytes);
    json_decref(j);
}

void play(const world *w, const step *s, size_t n)
{
    for (size_t i = 0; i < n; i++, s++) {
        const char *p = s->path ? at(w, s->dev, s->path) : NULL;
        snprintf(g_step, sizeof g_step, "step %zu (%c %c %s %.40s)", i, 'A' + s->dev, s->op,
                 s->path ? s->path : "", s->data ? s->data : "");
        switch (s->op) {
        case 'w': write_bytes(p, s->data, strlen(s->data)); break;
        case 'r': write_random(p, (size_t)strtoull(s->data, NULL, 10)); break;
        case 'f': flip_middle_byte(p); break;
        case 'm':
            make_parents(p);
            if (mkdir(p, 0755)) failf("mkdir: %s", strerror(errno));
            break;
        case 'l':
            make_parents(p);
            if (symlink(s->data, p)) failf("symlink: %s", strerror(errno));
            break;
        case 'c':
            if (chmod(p, (mode_t)strtol(s->data, NULL, 8))) failf("chmod: %s", strerror(errno));
            break;
        case 'v':
            if (rename(p, at(w, s->dev, s->data))) failf("rename: %s", strerror(errno));
            break;
        case 'x': rm_rf(p); break;
        case 's': sync_dev(w, s->dev, s->data, "bytes_up"); break;
        case 'd': sync_dev(w, s->dev, s->data, "bytes_down"); break;
        case '=': expect_converged(w); break;
        case '?': expect_content(p, s->data); break;
        case 'L': {
            char t[4096];
            ssize_t len = readlink(p, t, sizeof t);
            if (len != (ssize_t)strlen(s->data) || memcmp(t, s->data, (size_t)len))
                failf("not a link to %s", s->data);
            break;
        }
        case '1':
            if (count_in(w->dev[s->dev], count_content, s->data) != 1)
                failf("not exactly one file holds \"%s\"", s->data);
            break;
        default: failf("bad step");
        }
    }
    g_step[0] = '\0';
}

void expect_idle_sync(const world *w, int d)
{
    json_t *j = ok_json(w, d, "sync");
    if (jint(j, "requests") != 1 || jint(j, "bytes_up") != 0 || jint(j, "files") != 0)
        failf("a no-change sync on %c made %" PRId64 " requests, sent %" PRId64 " bytes", 'A' + d,
              jint(j, "requests"), jint(j, "bytes_up"));
    json_decref(j);
}

double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}