/*
 * bench-store: how fast s3store moves objects to and from an S3 endpoint,
 * beside curl doing the same in the same run. It owns its figures and the
 * objects and scratch files it makes (deleted at the end), nothing else.
 *
 *   bench-store [-r RUNS] [-n CURL_SMALL] [-g RECLAIM_CMD] [BUCKET]
 *
 * 256 MiB of random bytes go up and come back down twice: as 4 objects of
 * 64 MiB and as 4,096 objects of 64 KiB, PUT then GET each time.
 *   - s3store: ss_xfer parallel transfers over kept-alive connections, with
 *     max_parallel 8 (the default) and 1 for the big objects, 1, 4 and 8 for
 *     the small ones; every GET is compared with what was put.
 *   - curl --aws-sigv4, one process per object, spawned from here: the big
 *     objects one after another and 4 at once; the small ones one after
 *     another, on the first CURL_SMALL objects only (default 512), reported
 *     as a rate.
 * Big-object figures are the best of RUNS runs (default 3), the variants
 * interleaved within each run; the small-object figures come from one run.
 * An untimed warm-up first creates every key on both sides, so each timed
 * PUT overwrites an object, as in every later run (first passes on a
 * fresh RGW ran slower). s3store's GETs land in memory
 * already mapped (as a reused buffer would be), curl's in files.
 * Each side works under its own random key prefix in BUCKET (default
 * $S3SYNC_TEST_BUCKET). The endpoint and keys come from the AWS environment:
 * AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
 * curl's files live in a scratch folder under $TMPDIR, else /dev/shm (so
 * curl, like s3store, reads and writes memory), else /tmp.
 *
 * RGW keeps an overwritten object's data for its garbage collector, two
 * hours by default, and the test RGW holds everything in RAM (memstore): so
 * RECLAIM_CMD, when given, runs through the shell before every pass, outside
 * the timings (bench/bench-store.sh passes `radosgw-admin ... gc process
 * --include-all`). Without it, the repeated passes fill a small store.
 *
 * MB is 10^6 bytes. bench/bench-store.sh runs this against a local RGW.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "s3store.h"

extern char **environ;

#define KIB ((size_t)1024)
#define MIB (KIB * KIB)
#define TOTAL (256 * MIB)
#define BIG_N 4
#define BIG_SIZE (64 * MIB)
#define SMALL_N 4096
#define SMALL_SIZE (64 * KIB)
#define CURL_BIG_PARALLEL 4
#define MAX_KEY 64
#define BACK_SIZE (TOTAL + 4096) /* file_equals reads one byte more than it wants */

/* Objects of size bytes, slices of the shared random data. */
typedef struct workload {
    const char *name; /* "big", "small": part of the keys */
    size_t size;
} workload;

/* Best (shortest) seconds seen for a PUT and a GET of a workload's objects. */
typedef struct result {
    const char *label;
    size_t n, size; /* what was moved per PUT or GET pass */
    double put_s, get_s;
} result;

static const workload big = {"big", BIG_SIZE};
static const workload small = {"small", SMALL_SIZE};

static uint8_t *data;      /* TOTAL random bytes: object i is data + i * size */
static uint8_t *back;      /* BACK_SIZE bytes: where s3store GETs land */
static char scratch[4096]; /* curl's folder */
static char prefix[64];    /* bench-store/RANDOM/ */
static const char *bucket;
static char *endpoint, *sigv4, *user;
static const char *reclaim_cmd; /* -g: run before each pass, untimed */

static void scratch_path(char *buf, size_t len, const char *dir, const workload *w, size_t i)
{
    snprintf(buf, len, "%s/%s-%s-%04zu", scratch, dir, w->name, i);
}

/* Remove curl's scratch folder and whatever is in it. */
static void remove_scratch(void)
{
    static const char *const dirs[] = {"up", "down"};
    char path[sizeof scratch + 64];
    if (!scratch[0]) return;
    for (size_t d = 0; d < 2; d++) {
        for (size_t i = 0; i < BIG_N; i++) {
            scratch_path(path, sizeof path, dirs[d], &big, i);
            unlink(path);
        }
        for (size_t i = 0; i < SMALL_N; i++) {
            scratch_path(path, sizeof path, dirs[d], &small, i);
            unlink(path);
        }
    }
    rmdir(scratch);
    scratch[0] = '\0';
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Objects already stored stay (bench-store.sh stops its RGW anyway). */
static void die(const char *fmt, ...)
{
    va_list ap;
    remove_scratch();
    fprintf(stderr, "bench-store: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xstrdup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) die("out of memory");
    va_end(ap);
    return s;
}

static const char *env_or(const char *name, const char *name2, const char *dflt)
{
    const char *v = getenv(name);
    if ((!v || !*v) && name2) v = getenv(name2);
    if (!v || !*v) v = dflt;
    return v;
}

/* Key of object i of w, relative to a side's prefix. */
static void key_of(char *buf, const workload *w, size_t i)
{
    snprintf(buf, MAX_KEY, "%s/%04zu", w->name, i);
}

static void keep_best(result *r, double put_s, double get_s)
{
    if (r->put_s == 0 || put_s < r->put_s) r->put_s = put_s;
    if (r->get_s == 0 || get_s < r->get_s) r->get_s = get_s;
}

/* Let the store free what earlier passes overwrote (see -g above). */
static void reclaim(void)
{
    int status;
    if (!reclaim_cmd) return;
    status = system(reclaim_cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status))
        die("-g command failed (status %d): %s", status, reclaim_cmd);
}

/* ---- s3store ---- */

/* side: "s3store" or "curl", the key prefix of that side. */
static ss_store *open_store(const char *side, unsigned max_parallel)
{
    ss_store_opts opts = {.max_parallel = max_parallel};
    ss_store *st = NULL;
    ss_err err = {{0}};
    char *url = xstrdup_printf("s3://%s/%s%s", bucket, prefix, side);
    if (ss_store_open(url, &opts, &st, &err)) die("open %s: %s", url, err.msg);
    free(url);
    return st;
}

/* PUT then GET the first n objects of w through ss_xfer; checks what came back. */
static void store_pass(const char *side, unsigned max_parallel, const workload *w, size_t n,
                       result *r)
{
    ss_store *st = open_store(side, max_parallel);
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    char key[MAX_KEY];
    double put_s, get_s;

    reclaim();
    put_s = now();
    if (ss_xfer_new(st, &x, &err)) die("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        key_of(key, w, i);
        if (ss_xfer_put(x, key, data + i * w->size, w->size, 0, NULL, NULL))
            die("PUT %s: out of memory", key);
    }
    if (ss_xfer_wait(x, &err)) die("s3store PUT: %s", err.msg);
    put_s = now() - put_s;
    ss_xfer_free(x);

    /* Land in mapped memory, as a reused buffer would: page faults are not s3store's. */
    memset(back, 0, n * w->size);
    get_s = now();
    if (ss_xfer_new(st, &x, &err)) die("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        key_of(key, w, i);
        if (ss_xfer_get(x, key, 0, w->size, back + i * w->size, NULL, NULL))
            die("GET %s: out of memory", key);
    }
    if (ss_xfer_wait(x, &err)) die("s3store GET: %s", err.msg);
    get_s = now() - get_s;
    ss_xfer_free(x);

    if (memcmp(back, data, n * w->size)) die("s3store GET: the bytes differ from those put");
    ss_store_free(st);
    keep_best(r, put_s, get_s);
}

/* ---- curl, one process per object ---- */

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const uint8_t *p = buf;
    if (fd < 0) die("create %s: %s", path, strerror(errno));
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("write %s: %s", path, k < 0 ? strerror(errno) : "short write");
        p += k;
        len -= (size_t)k;
    }
    if (close(fd)) die("close %s: %s", path, strerror(errno));
}

/* Does the file at path hold exactly len bytes equal to want? */
static int file_equals(const char *path, const void *want, size_t len)
{
    int fd = open(path, O_RDONLY);
    size_t got = 0;
    int same = fd >= 0;
    while (same && got <= len) {
        ssize_t k = read(fd, back + got, len + 1 - got); /* one more: catches a longer file */
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (fd >= 0) close(fd);
    return same && got == len && !memcmp(back, want, len);
}

static pid_t spawn_curl(int put, const char *file, const char *key)
{
    char *url = xstrdup_printf("%s/%s/%scurl/%s", endpoint, bucket, prefix, key);
    char *argv[16];
    size_t n = 0;
    argv[n++] = "curl";
    argv[n++] = "-sS";
    argv[n++] = "--fail";
    argv[n++] = "--aws-sigv4";
    argv[n++] = sigv4;
    argv[n++] = "--user";
    argv[n++] = user;
    argv[n++] = "-H";
    argv[n++] = "x-amz-content-sha256: UNSIGNED-PAYLOAD";
    if (put) {
        argv[n++] = "-T";
        argv[n++] = (char *)file;
        argv[n++] = "-o";
        argv[n++] = "/dev/null";
    } else {
        argv[n++] = "-o";
        argv[n++] = (char *)file;
    }
    argv[n++] = url;
    argv[n] = NULL;
    pid_t pid;
    int e = posix_spawnp(&pid, "curl", NULL, NULL, argv, environ);
    if (e) die("cannot run curl: %s", strerror(e));
    free(url);
    return pid;
}

static void reap_curl(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        die("curl failed (status %d): see its message above", status);
}

/* Move the first n objects of w, `parallel` curl processes at a time; returns seconds. */
static double curl_transfer(int put, const workload *w, size_t n, size_t parallel)
{
    pid_t pids[CURL_BIG_PARALLEL];
    char path[sizeof scratch + 64], key[MAX_KEY];
    size_t next = 0, running = 0;
    double t;

    if (parallel > CURL_BIG_PARALLEL) parallel = CURL_BIG_PARALLEL;
    t = now();
    while (next < n || running) {
        while (next < n && running < parallel) {
            scratch_path(path, sizeof path, put ? "up" : "down", w, next);
            key_of(key, w, next);
            pids[running++] = spawn_curl(put, path, key);
            next++;
        }
        reap_curl(pids[0]); /* in start order: all move at the same pace */
        memmove(pids, pids + 1, --running * sizeof *pids);
    }
    return now() - t;
}

static void curl_pass(const workload *w, size_t n, size_t parallel, result *r)
{
    char path[sizeof scratch + 64];
    double put_s, get_s;
    reclaim();
    put_s = curl_transfer(1, w, n, parallel);
    get_s = curl_transfer(0, w, n, parallel);
    for (size_t i = 0; i < n; i++) {
        scratch_path(path, sizeof path, "down", w, i);
        if (!file_equals(path, data + i * w->size, w->size))
            die("curl GET: %s differs from what was put", path);
        unlink(path);
    }
    keep_best(r, put_s, get_s);
}

/* The files curl uploads: the same bytes as s3store's objects. */
static void write_curl_files(const workload *w, size_t n)
{
    char path[sizeof scratch + 64];
    for (size_t i = 0; i < n; i++) {
        scratch_path(path, sizeof path, "up", w, i);
        write_file(path, data + i * w->size, w->size);
    }
}

/* ---- cleanup and report ---- */

static void delete_objects(const char *side, const workload *w, size_t n)
{
    ss_store *st = open_store(side, 0);
    ss_err err = {{0}};
    char key[MAX_KEY];
    for (size_t i = 0; i < n; i++) {
        key_of(key, w, i);
        if (ss_store_delete(st, key, &err)) fprintf(stderr, "bench-store: %s\n", err.msg);
    }
    ss_store_free(st);
}

static double rate_mb(const result *r, double s)
{
    return s > 0 ? (double)(r->n * r->size) / 1e6 / s : 0;
}

static void print_row(const result *r)
{
    printf("  %-44s %9.1f %9.1f %9.1f %9.1f\n", r->label, rate_mb(r, r->put_s),
           r->put_s > 0 ? (double)r->n / r->put_s : 0, rate_mb(r, r->get_s),
           r->get_s > 0 ? (double)r->n / r->get_s : 0);
}

/* Speed ratio from seconds taken (or seconds per object): curl's / s3store's. */
static void print_ratio(const char *what, double mine_s, double curl_s, double aim)
{
    double q = mine_s > 0 ? curl_s / mine_s : 0;
    printf("  %-52s %6.2fx  (aim >= %.2fx: %s)\n", what, q, aim, q >= aim ? "met" : "MISSED");
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-store [-r RUNS] [-n CURL_SMALL] [-g RECLAIM_CMD] [BUCKET]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    size_t runs = 3, curl_small = 512;
    unsigned char rnd[8], seed[randombytes_SEEDBYTES];
    const char *tmp;
    char *end;
    int opt;
    double t0 = now();

    while ((opt = getopt(argc, argv, "r:n:g:h")) != -1) {
        switch (opt) {
        case 'r':
            runs = strtoul(optarg, &end, 10);
            if (*end || !runs || runs > 100) usage();
            break;
        case 'n':
            curl_small = strtoul(optarg, &end, 10);
            if (*end || !curl_small || curl_small > SMALL_N) usage();
            break;
        case 'g': reclaim_cmd = optarg; break;
        default: usage();
        }
    }
    if (argc - optind > 1) usage();
    bucket = optind < argc ? argv[optind] : getenv("S3SYNC_TEST_BUCKET");
    if (!bucket || !*bucket) die("no bucket: give one or set S3SYNC_TEST_BUCKET");
    if (!getenv("AWS_ACCESS_KEY_ID") || !getenv("AWS_SECRET_ACCESS_KEY"))
        die("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL)");
    endpoint = xstrdup_printf("%s", env_or("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", ""));
    if (!*endpoint) die("set AWS_ENDPOINT_URL: curl needs a path-style endpoint");
    for (size_t l = strlen(endpoint); l && endpoint[l - 1] == '/'; l--)
        endpoint[l - 1] = '\0';
    sigv4 =
        xstrdup_printf("aws:amz:%s:s3", env_or("AWS_REGION", "AWS_DEFAULT_REGION", "us-east-1"));
    user = xstrdup_printf("%s:%s", getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"));
    if (sodium_init() < 0) die("libsodium initialisation failed");

    randombytes_buf(rnd, sizeof rnd);
    snprintf(prefix, sizeof prefix, "bench-store/%02x%02x%02x%02x%02x%02x%02x%02x/", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm";
    snprintf(scratch, sizeof scratch, "%s/bench-store.XXXXXX", tmp);
    if (!mkdtemp(scratch)) die("mkdtemp %s: %s", scratch, strerror(errno));

    data = xmalloc(TOTAL);
    back = xmalloc(BACK_SIZE);
    randombytes_buf(seed, sizeof seed);
    randombytes_buf_deterministic(data, TOTAL, seed); /* incompressible */
    write_curl_files(&big, BIG_N);
    write_curl_files(&small, curl_small);

    printf("bench-store: %s bucket %s, prefix %s{s3store,curl}/, curl scratch %s\n", endpoint,
           bucket, prefix, scratch);
    printf("256 MiB each way; big objects best of %zu runs; MB = 10^6 bytes\n\n", runs);
    fflush(stdout);

    result bigr[4] = {
        {"s3store ss_xfer, max_parallel 8", BIG_N, BIG_SIZE, 0, 0},
        {"s3store ss_xfer, max_parallel 1", BIG_N, BIG_SIZE, 0, 0},
        {"curl, 1 process per object, sequential", BIG_N, BIG_SIZE, 0, 0},
        {"curl, 1 process per object, 4 in parallel", BIG_N, BIG_SIZE, 0, 0},
    };
    /* Untimed: create every key, so that each timed PUT overwrites, on both sides. */
    fprintf(stderr, "bench-store: warm-up\n");
    result warm = {0};
    store_pass("s3store", 8, &big, BIG_N, &warm);
    store_pass("curl", 8, &big, BIG_N, &warm);
    store_pass("s3store", 8, &small, SMALL_N, &warm);
    store_pass("curl", 8, &small, curl_small, &warm);

    for (size_t run = 0; run < runs; run++) {
        fprintf(stderr, "bench-store: 4 x 64 MiB, run %zu of %zu\n", run + 1, runs);
        store_pass("s3store", 8, &big, BIG_N, &bigr[0]);
        store_pass("s3store", 1, &big, BIG_N, &bigr[1]);
        curl_pass(&big, BIG_N, 1, &bigr[2]);
        curl_pass(&big, BIG_N, CURL_BIG_PARALLEL, &bigr[3]);
    }

    char curl_label[80];
    snprintf(curl_label, sizeof curl_label, "curl, 1 process per object (%zu of %d)", curl_small,
             SMALL_N);
    result smallr[4] = {
        {"s3store ss_xfer, max_parallel 1", SMALL_N, SMALL_SIZE, 0, 0},
        {"s3store ss_xfer, max_parallel 4", SMALL_N, SMALL_SIZE, 0, 0},
        {"s3store ss_xfer, max_parallel 8", SMALL_N, SMALL_SIZE, 0, 0},
        {curl_label, curl_small, SMALL_SIZE, 0, 0},
    };
    fprintf(stderr, "bench-store: 4,096 x 64 KiB\n");
    store_pass("s3store", 1, &small, SMALL_N, &smallr[0]);
    store_pass("s3store", 4, &small, SMALL_N, &smallr[1]);
    store_pass("s3store", 8, &small, SMALL_N, &smallr[2]);
    curl_pass(&small, curl_small, 1, &smallr[3]);

    printf("  %-44s %9s %9s %9s %9s\n", "", "PUT MB/s", "PUT obj/s", "GET MB/s", "GET obj/s");
    printf("4 objects of 64 MiB (best of %zu)\n", runs);
    for (size_t i = 0; i < 4; i++)
        print_row(&bigr[i]);
    printf("4,096 objects of 64 KiB (one run)\n");
    for (size_t i = 0; i < 4; i++)
        print_row(&smallr[i]);

    printf("\nAims (s3store speed / curl speed)\n");
    print_ratio("big PUT, max_parallel 8 vs curl 4 in parallel", bigr[0].put_s, bigr[3].put_s,
                0.90);
    print_ratio("big GET, max_parallel 8 vs curl 4 in parallel", bigr[0].get_s, bigr[3].get_s,
                0.90);
    print_ratio("big PUT, max_parallel 1 vs curl sequential", bigr[1].put_s, bigr[2].put_s, 0.90);
    print_ratio("big GET, max_parallel 1 vs curl sequential", bigr[1].get_s, bigr[2].get_s, 0.90);
    /* Per-object rates: compare seconds per object. */
    print_ratio("small PUT obj/s, max_parallel 8 vs curl per object", smallr[2].put_s / SMALL_N,
                smallr[3].put_s / (double)curl_small, 5.0);
    print_ratio("small GET obj/s, max_parallel 8 vs curl per object", smallr[2].get_s / SMALL_N,
                smallr[3].get_s / (double)curl_small, 5.0);

    fprintf(stderr, "bench-store: deleting the objects\n");
    delete_objects("s3store", &big, BIG_N);
    delete_objects("s3store", &small, SMALL_N);
    delete_objects("curl", &big, BIG_N);
    delete_objects("curl", &small, curl_small);
    remove_scratch();
    printf("\n(%.0f s in all, including cleanup)\n", now() - t0);
    free(data);
    free(back);
    free(endpoint);
    free(sigv4);
    free(user);
    return 0;
}
