/*
 * treegen: writes a deterministic file tree for bench/bench-sync.sh, and
 * makes the benchmark's edits to it. Same arguments, same bytes, every run.
 *
 *   treegen tree DIR NSMALL MINSIZE MAXSIZE NBIG BIGSIZE SEED
 *       NSMALL files of MINSIZE..MAXSIZE bytes (uniform), spread over nested
 *       folders a0..a9/b0..b9[/c0..c9] (100 files per leaf folder), plus NBIG
 *       files big-N.bin of BIGSIZE bytes at the top. Contents are pseudo-random
 *       (incompressible, xoshiro256**); every file gets the same mtime,
 *       2024-01-01 00:00:00 UTC, as files that have sat on a disk a while.
 *   treegen flip FILE OFFSET
 *       inverts the byte at OFFSET in place (size unchanged, mtime now).
 *   treegen edit DIR NSMALL N SEED
 *       rewrites N of the tree's NSMALL small files, chosen by SEED: the first
 *       64 bytes (or the whole file if shorter) get new bytes; size unchanged.
 *
 * Prints nothing on success; exits 1 with a message on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rs[4];

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next(void)
{
    uint64_t r = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;
    rs[2] ^= rs[0];
    rs[3] ^= rs[1];
    rs[1] ^= rs[2];
    rs[0] ^= rs[3];
    rs[2] ^= t;
    rs[3] = rotl(rs[3], 45);
    return r;
}

static void seed(uint64_t s)
{
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        rs[i] = z ^ (z >> 31);
    }
}

static void fill(unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint64_t v = next();
        memcpy(p, &v, 8);
        p += 8, n -= 8;
    }
    if (n) {
        uint64_t v = next();
        memcpy(p, &v, n);
    }
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "treegen: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void mkdirs(char *path) /* mkdir -p of path's parent folders */
{
    for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(path, 0755) && errno != EEXIST) die("mkdir", path);
        *s = '/';
    }
}

/* Small file i's path: 100 per leaf folder, two levels up to 10,000 files,
 * three beyond. */
static void small_path(char *buf, size_t cap, const char *dir, long i, long nsmall)
{
    long leaf = i / 100;
    if (nsmall <= 10000)
        snprintf(buf, cap, "%s/a%ld/b%ld/f%05ld.dat", dir, leaf / 10 % 10, leaf % 10, i);
    else
        snprintf(buf, cap, "%s/a%ld/b%ld/c%ld/f%06ld.dat", dir, leaf / 100 % 10, leaf / 10 % 10,
                 leaf % 10, i);
}

static void write_file(const char *path, const unsigned char *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", path);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0) die("write", path);
        off += (size_t)w;
    }
    const struct timespec t[2] = {{1704067200, 0}, {1704067200, 0}};
    if (futimens(fd, t) || close(fd)) die("close", path);
}

static int tree(char **a)
{
    const char *dir = a[0];
    long nsmall = atol(a[1]), minsz = atol(a[2]), maxsz = atol(a[3]), nbig = atol(a[4]);
    size_t bigsz = (size_t)atoll(a[5]);
    char path[4096];
    seed(strtoull(a[6], NULL, 10));
    size_t cap = bigsz > (size_t)maxsz ? bigsz : (size_t)maxsz;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) die("malloc", "");
    if (mkdir(dir, 0755) && errno != EEXIST) die("mkdir", dir);
    for (long i = 0; i < nsmall; i++) {
        size_t n = (size_t)minsz + (size_t)(next() % (uint64_t)(maxsz - minsz + 1));
        small_path(path, sizeof path, dir, i, nsmall);
        if (i % 100 == 0) mkdirs(path);
        fill(buf, n);
        write_file(path, buf, n);
    }
    for (long i = 0; i < nbig; i++) {
        snprintf(path, sizeof path, "%s/big-%ld.bin", dir, i);
        fill(buf, bigsz);
        write_file(path, buf, bigsz);
    }
    free(buf);
    return 0;
}

static int flip(char **a)
{
    int fd = open(a[0], O_RDWR);
    off_t off = (off_t)atoll(a[1]);
    unsigned char c;
    if (fd < 0) die("open", a[0]);
    if (pread(fd, &c, 1, off) != 1) die("read", a[0]);
    c = (unsigned char)~c;
    if (pwrite(fd, &c, 1, off) != 1 || close(fd)) die("write", a[0]);
    return 0;
}

static int edit(char **a)
{
    long nsmall = atol(a[1]), n = atol(a[2]);
    char path[4096];
    unsigned char buf[64];
    seed(strtoull(a[3], NULL, 10));
    for (long k = 0; k < n; k++) {
        long i = (long)(((uint64_t)nsmall / (uint64_t)n) * (uint64_t)k +
                        next() % ((uint64_t)nsmall / (uint64_t)n)); /* one per stride */
        small_path(path, sizeof path, a[0], i, nsmall);
        int fd = open(path, O_WRONLY);
        if (fd < 0) die("open", path);
        fill(buf, sizeof buf);
        struct stat st;
        if (fstat(fd, &st)) die("stat", path);
        size_t m = st.st_size < 64 ? (size_t)st.st_size : 64;
        if (pwrite(fd, buf, m, 0) != (ssize_t)m || close(fd)) die("write", path);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 9 && !strcmp(argv[1], "tree")) return tree(argv + 2);
    if (argc == 4 && !strcmp(argv[1], "flip")) return flip(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "edit")) return edit(argv + 2);
    fputs("usage: treegen tree DIR NSMALL MINSIZE MAXSIZE NBIG BIGSIZE SEED\n"
          "       treegen flip FILE OFFSET\n"
          "       treegen edit DIR NSMALL N SEED\n",
          stderr);
    return 2;
}
