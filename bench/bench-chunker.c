/*
 * bench-chunker: how fast core/chunker.c cuts and names chunks, and how much
 * survives a one-byte edit, beside memcpy, keyed BLAKE2b and (if installed)
 * b3sum on the same bytes.
 *
 *   bench-chunker [FILE]
 *
 * Runs on 64 MiB of deterministic random data, then on FILE if given (read
 * into memory). Timings are the best of 3 runs. Also compares a few parameter
 * candidates: the figures behind the defaults chosen in chunker.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chunker.h"

#define MIB (1024.0 * 1024.0)
#define RUNS 3
#define RANDOM_SIZE ((size_t)64 << 20)

static const uint8_t bench_key[SS_CHUNK_KEY_BYTES] = {
    0x62, 0x65, 0x6e, 0x63, 0x68, 0x2d, 0x63, 0x68, 0x75, 0x6e, 0x6b, 0x65, 0x72, 0x00, 0x01, 0x02,
    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
};

/* Keeps the optimizer from dropping work whose result is otherwise unused. */
static volatile uint64_t sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mbps(size_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / 1e6 / secs : 0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench-chunker: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- timed kernels: each returns its elapsed seconds ---- */

static double time_memcpy(const uint8_t *buf, size_t len, uint8_t *dst)
{
    double t = now();
    memcpy(dst, buf, len);
    t = now() - t;
    sink += dst[len / 2];
    return t;
}

static double time_blake2b(const uint8_t *buf, size_t len)
{
    uint8_t out[32];
    double t = now();
    crypto_generichash(out, sizeof out, buf, len, bench_key, sizeof bench_key);
    t = now() - t;
    sink += out[0];
    return t;
}

static double time_scan(const ss_chunker *c, const uint8_t *buf, size_t len, size_t *ret_count)
{
    size_t off = 0, count = 0;
    double t = now();
    while (off < len) {
        off += ss_chunker_next(c, buf + off, len - off, 1);
        count++;
    }
    t = now() - t;
    *ret_count = count;
    return t;
}

static double time_scan_ids(const ss_chunker *c, const uint8_t *buf, size_t len)
{
    uint8_t id[SS_CHUNK_ID_BYTES];
    size_t off = 0;
    double t = now();
    while (off < len) {
        size_t k = ss_chunker_next(c, buf + off, len - off, 1);
        ss_chunk_id(bench_key, buf + off, k, id);
        sink += id[0];
        off += k;
    }
    return now() - t;
}

static ss_rc count_chunk(void *arg, const uint8_t *data, size_t len, uint64_t offset, ss_err *err)
{
    (void)data;
    (void)offset;
    (void)err;
    *(size_t *)arg += len;
    return SS_OK;
}

static double time_fd(const ss_chunker *c, const char *path)
{
    size_t total = 0;
    ss_err err;
    int fd = open(path, O_RDONLY);
    double t;

    if (fd < 0) return -1;
    t = now();
    if (ss_chunker_fd(c, fd, count_chunk, &total, &err) != SS_OK) {
        fprintf(stderr, "bench-chunker: %s\n", err.msg);
        t = -1;
    } else {
        t = now() - t;
    }
    close(fd);
    return t;
}

/* ---- reuse after an edit ---- */

typedef struct chunk_list {
    uint8_t (*ids)[SS_CHUNK_ID_BYTES];
    size_t *lens;
    size_t n;
} chunk_list;

static void chunk_all(const ss_chunker *c, const uint8_t *buf, size_t len, chunk_list *out)
{
    size_t off = 0, cap = len / ss_chunker_params_of(c)->min_size + 2;

    out->ids = xmalloc(cap * sizeof *out->ids);
    out->lens = xmalloc(cap * sizeof *out->lens);
    out->n = 0;
    while (off < len) {
        size_t k = ss_chunker_next(c, buf + off, len - off, 1);
        ss_chunk_id(bench_key, buf + off, k, out->ids[out->n]);
        out->lens[out->n++] = k;
        off += k;
    }
}

static void chunk_list_free(chunk_list *l)
{
    free(l->ids);
    free(l->lens);
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, SS_CHUNK_ID_BYTES);
}

typedef struct reuse {
    double by_bytes, by_count;
    size_t new_chunks, new_bytes;
} reuse;

/* Insert one byte at pos and see which chunks of the result were known before. */
static reuse edit_reuse(const ss_chunker *c, const uint8_t *buf, size_t len, size_t pos,
                        const chunk_list *old_sorted)
{
    uint8_t *ed = xmalloc(len + 1);
    chunk_list now_l;
    size_t kept_bytes = 0, kept_count = 0;
    reuse r;

    memcpy(ed, buf, pos);
    ed[pos] = 0x5a;
    memcpy(ed + pos + 1, buf + pos, len - pos);
    chunk_all(c, ed, len + 1, &now_l);
    for (size_t i = 0; i < now_l.n; i++) {
        if (bsearch(now_l.ids[i], old_sorted->ids, old_sorted->n, SS_CHUNK_ID_BYTES, cmp_id)) {
            kept_bytes += now_l.lens[i];
            kept_count++;
        }
    }
    r.by_bytes = (double)kept_bytes / (double)(len + 1);
    r.by_count = now_l.n ? (double)kept_count / (double)now_l.n : 1.0;
    r.new_chunks = now_l.n - kept_count;
    r.new_bytes = len + 1 - kept_bytes;
    chunk_list_free(&now_l);
    free(ed);
    return r;
}

static void sorted_ids(const ss_chunker *c, const uint8_t *buf, size_t len, chunk_list *out)
{
    chunk_all(c, buf, len, out);
    qsort(out->ids, out->n, SS_CHUNK_ID_BYTES, cmp_id);
}

/* ---- b3sum, if installed ---- */

static int find_on_path(const char *name, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    char *copy = NULL, *save = NULL;
    int found = 0;

    if (!path) return 0;
    copy = strdup(path);
    if (!copy) return 0;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, outlen, "%s/%s", *dir ? dir : ".", name);
        if (access(out, X_OK) == 0) {
            found = 1;
            break;
        }
    }
    free(copy);
    return found;
}

static double time_command(const char *prog, const char *arg)
{
    double t = now();
    int status;
    pid_t pid = fork();

    if (pid < 0) return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execl(prog, prog, arg, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return now() - t;
}

static int write_temp(const uint8_t *buf, size_t len, char *path, size_t pathlen)
{
    const char *dir = getenv("TMPDIR");
    int fd;
    size_t off = 0;

    snprintf(path, pathlen, "%s/bench-chunker-XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(path);
    if (fd < 0) return -1;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            unlink(path);
            return -1;
        }
        off += (size_t)w;
    }
    close(fd);
    return 0;
}

/* ---- reports ---- */

/* var = the shortest of RUNS timings of expr (negative timings are failures). */
#define BEST(var, expr)                                                                            \
    do {                                                                                           \
        (var) = 1e30;                                                                              \
        for (int run_ = 0; run_ < RUNS; run_++) {                                                  \
            double t_ = (expr);                                                                    \
            if (t_ >= 0 && t_ < (var)) (var) = t_;                                                 \
        }                                                                                          \
    } while (0)

static void report(const char *name, const uint8_t *buf, size_t len)
{
    const ss_chunker_params *p = &ss_chunker_default;
    ss_chunker *c = NULL;
    ss_err err;
    uint8_t *dst = xmalloc(len);
    size_t count = 0;
    double t;
    chunk_list old;
    char tmp[4096], b3[4096];
    const size_t pos[3] = {0, len / 2, len};
    const char *where[3] = {"start", "middle", "end"};

    if (ss_chunker_new(p, &c, &err) != SS_OK) {
        fprintf(stderr, "bench-chunker: %s\n", err.msg);
        exit(1);
    }
    memset(dst, 1, len); /* fault the pages in before timing memcpy */
    printf("== %s: %.1f MiB, chunker min/avg/max %u/%u/%u, best of %d\n", name, len / MIB,
           p->min_size, p->avg_size, p->max_size, RUNS);
    BEST(t, time_memcpy(buf, len, dst));
    printf("  %-28s %8.0f MB/s\n", "memcpy", mbps(len, t));
    BEST(t, time_blake2b(buf, len));
    printf("  %-28s %8.0f MB/s\n", "keyed BLAKE2b-256", mbps(len, t));
    BEST(t, time_scan(c, buf, len, &count));
    printf("  %-28s %8.0f MB/s\n", "chunker boundary scan", mbps(len, t));
    BEST(t, time_scan_ids(c, buf, len));
    printf("  %-28s %8.0f MB/s\n", "chunker + chunk ids", mbps(len, t));
    if (write_temp(buf, len, tmp, sizeof tmp) == 0) {
        BEST(t, time_fd(c, tmp));
        printf("  %-28s %8.0f MB/s\n", "ss_chunker_fd (page cache)", mbps(len, t));
        if (find_on_path("b3sum", b3, sizeof b3)) {
            BEST(t, time_command(b3, tmp));
            if (t < 1e30)
                printf("  %-28s %8.0f MB/s (%.3f s, %s)\n", "b3sum (file)", mbps(len, t), t, b3);
            else
                printf("  b3sum: %s failed\n", b3);
        } else {
            printf("  b3sum: not found on PATH\n");
        }
        unlink(tmp);
    } else {
        printf("  temp file: %s (skipping fd and b3sum)\n", strerror(errno));
    }
    printf("  chunks %zu, mean size %.1f KiB\n", count, count ? len / 1024.0 / count : 0);

    sorted_ids(c, buf, len, &old);
    for (int i = 0; i < 3; i++) {
        reuse r = edit_reuse(c, buf, len, pos[i], &old);
        printf("  1-byte insert at %-6s reused %6.2f%% of bytes, %6.2f%% of chunks; "
               "new: %zu chunks, %.1f KiB\n",
               where[i], 100 * r.by_bytes, 100 * r.by_count, r.new_chunks, r.new_bytes / 1024.0);
    }
    chunk_list_free(&old);
    free(dst);
    ss_chunker_free(c);
}

/* The figures behind ss_chunker_default (see the comment in chunker.c). */
static void candidates(const uint8_t *buf, size_t len)
{
    static const ss_chunker_params cand[] = {
        {16u << 10, 64u << 10, 256u << 10}, {32u << 10, 128u << 10, 512u << 10},
        {64u << 10, 256u << 10, 1u << 20},  {128u << 10, 512u << 10, 2u << 20},
        {256u << 10, 1u << 20, 4u << 20},
    };

    printf("== parameter candidates on the random data\n");
    printf("  %-18s %8s %10s %9s %9s %14s %12s\n", "min/avg/max KiB", "chunks", "mean KiB",
           "scan MB/s", "+ids MB/s", "worst reuse %", "new KiB/edit");
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
        ss_chunker *c = NULL;
        ss_err err;
        size_t count = 0, new_bytes = 0;
        double worst = 1.0, scan, ids;
        chunk_list old;
        const size_t pos[3] = {0, len / 2, len};
        char label[32];

        if (ss_chunker_new(&cand[i], &c, &err) != SS_OK) {
            fprintf(stderr, "bench-chunker: %s\n", err.msg);
            exit(1);
        }
        BEST(scan, time_scan(c, buf, len, &count));
        BEST(ids, time_scan_ids(c, buf, len));
        sorted_ids(c, buf, len, &old);
        for (int j = 0; j < 3; j++) {
            reuse r = edit_reuse(c, buf, len, pos[j], &old);
            if (r.by_bytes < worst) worst = r.by_bytes;
            new_bytes += r.new_bytes;
        }
        chunk_list_free(&old);
        snprintf(label, sizeof label, "%u/%u/%u", cand[i].min_size >> 10, cand[i].avg_size >> 10,
                 cand[i].max_size >> 10);
        printf("  %-18s %8zu %10.1f %9.0f %9.0f %14.2f %12.1f\n", label, count,
               len / 1024.0 / count, mbps(len, scan), mbps(len, ids), 100 * worst,
               new_bytes / 3 / 1024.0);
        ss_chunker_free(c);
    }
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t off = 0;
    int fd = open(path, O_RDONLY);

    *ret_len = 0;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "bench-chunker: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    buf = xmalloc((size_t)st.st_size);
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + off, (size_t)st.st_size - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    close(fd);
    *ret_len = off;
    return buf;
}

int main(int argc, char **argv)
{
    uint8_t *buf = NULL;
    uint8_t seed[randombytes_SEEDBYTES] = {0x53, 0x33};
    size_t len;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: bench-chunker [FILE]\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;
    buf = xmalloc(RANDOM_SIZE);
    randombytes_buf_deterministic(buf, RANDOM_SIZE, seed);
    report("random data", buf, RANDOM_SIZE);
    candidates(buf, RANDOM_SIZE);
    free(buf);
    if (argc == 2) {
        buf = read_file(argv[1], &len);
        if (len == 0) {
            printf("== %s: empty\n", argv[1]);
        } else {
            report(argv[1], buf, len);
        }
        free(buf);
    }
    return 0;
}
