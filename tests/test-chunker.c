/*
 * test-chunker: proves core/chunker.c cuts where the FastCDC specification
 * in its header comment says, whatever the feeding, within [min, max], and
 * that an edit keeps the rest of a file's chunks; plus parameter validation
 * and the keyed chunk id.
 *
 * The known-answer boundaries were computed once by an independent Python
 * rendering of the same specification (splitmix64 gear table, top-bit masks,
 * level-2 normalization, min skip) and agree with the C; a change to the gear
 * table, the masks or the cut rule fails test_known_answers, and would change
 * every chunk id of every existing repository.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chunker.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define MAX_CUTS 4096

/* The PRNG of the known-answer inputs: splitmix64, each output little-endian. */
static void fill_splitmix(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        for (size_t k = 0; k < 8 && i + k < len; k++)
            buf[i + k] = (uint8_t)(z >> (8 * k));
    }
}

/* Low-entropy but not constant: byte i = (7 i + i / 256) mod 256. */
static void fill_pattern(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 8));
}

static uint8_t *xmalloc(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static ss_chunker *make(uint32_t min, uint32_t avg, uint32_t max)
{
    ss_chunker_params p = {min, avg, max};
    ss_chunker *c = NULL;
    ss_err err;
    assert_int_equal(ss_chunker_new(&p, &c, &err), SS_OK);
    assert_non_null(c);
    return c;
}

/* End offsets of all chunks of buf, handed over whole. Returns the count. */
static size_t cut_all(const ss_chunker *c, const uint8_t *buf, size_t len, size_t *ends)
{
    size_t off = 0, n = 0;
    while (off < len) {
        size_t k = ss_chunker_next(c, buf, len - off, 1);
        assert_true(k > 0 && k <= len - off);
        buf += k;
        off += k;
        assert_true(n < MAX_CUTS);
        ends[n++] = off;
    }
    return n;
}

/*
 * The same, but the bytes arrive `step` at a time and the chunker is asked
 * after every arrival, as a streaming caller with a small buffer would.
 */
static size_t cut_fed(const ss_chunker *c, const uint8_t *buf, size_t len, size_t step,
                      size_t *ends)
{
    size_t start = 0, avail = 0, n = 0;
    while (start < len) {
        size_t k;
        avail = avail + step < len ? avail + step : len;
        while (start < avail &&
               (k = ss_chunker_next(c, buf + start, avail - start, avail == len)) > 0) {
            start += k;
            assert_true(n < MAX_CUTS);
            ends[n++] = start;
        }
    }
    return n;
}

/* ---- known answers ---- */

enum { IN_SPLITMIX, IN_ZEROS, IN_PATTERN };

typedef struct kat {
    const char *name;
    ss_chunker_params p;
    int input;
    size_t len;
    size_t n;
    size_t ends[64];
} kat;

static const kat kats[] = {
    {"default params, splitmix64(0x5eed), 8 MiB",
     {64 * KIB, 256 * KIB, 1 * MIB},
     IN_SPLITMIX,
     8 * MIB,
     27,
     {271048,  687914,  806833,  1118748, 1402758, 1738333, 1956577, 2279554, 2565084,
      2748824, 3082002, 3424882, 3782607, 4237400, 4577567, 4840413, 5138348, 5408389,
      5793295, 6242792, 6594113, 6899579, 7311317, 7581860, 7850725, 8127089, 8388608}},
    {"4K/16K/64K, splitmix64(0x5eed), 1 MiB",
     {4 * KIB, 16 * KIB, 64 * KIB},
     IN_SPLITMIX,
     1 * MIB,
     60,
     {5853,   33171,  49755,  68485,  86584,  98738,  118146, 144078,  164479,  207112,
      227554, 245643, 265253, 271048, 290312, 307369, 326551, 346346,  353047,  370828,
      387500, 407498, 427628, 448056, 470902, 489755, 500241, 509853,  515415,  534576,
      555245, 572606, 591556, 608422, 627110, 644301, 665507, 682239,  687914,  706062,
      722896, 745701, 762576, 779592, 797691, 804381, 821774, 838233,  858815,  876159,
      893554, 910254, 926884, 946320, 964225, 982108, 997383, 1015133, 1033187, 1048576}},
    /* A constant hash never matches the masks: every chunk is max_size. */
    {"default params, zeros, 8 MiB",
     {64 * KIB, 256 * KIB, 1 * MIB},
     IN_ZEROS,
     8 * MIB,
     8,
     {1048576, 2097152, 3145728, 4194304, 5242880, 6291456, 7340032, 8388608}},
    {"default params, pattern, 4 MiB",
     {64 * KIB, 256 * KIB, 1 * MIB},
     IN_PATTERN,
     4 * MIB,
     13,
     {321302, 648982, 976662, 1304342, 1632022, 1959702, 2287382, 2615062, 2942742, 3270422,
      3598102, 3925782, 4194304}},
};

static void fill_input(uint8_t *buf, size_t len, int input)
{
    switch (input) {
    case IN_SPLITMIX: fill_splitmix(buf, len, 0x5eed); break;
    case IN_ZEROS: memset(buf, 0, len); break;
    case IN_PATTERN: fill_pattern(buf, len); break;
    }
}

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof kats / sizeof kats[0]; v++) {
        const kat *k = &kats[v];
        ss_chunker *c = make(k->p.min_size, k->p.avg_size, k->p.max_size);
        uint8_t *buf = xmalloc(k->len);
        size_t *ends = calloc(MAX_CUTS, sizeof *ends);
        size_t n;
        int same;

        assert_non_null(ends);
        fill_input(buf, k->len, k->input);
        n = cut_all(c, buf, k->len, ends);
        same = n == k->n && memcmp(ends, k->ends, n * sizeof *ends) == 0;
        if (!same) {
            /* Print what the chunker now says, so a deliberate change can be reviewed. */
            fprintf(stderr, "known answer \"%s\" differs: %zu chunks:", k->name, n);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "%s%zu", i ? ", " : " ", ends[i]);
            fprintf(stderr, "\n");
        }
        assert_true(same);
        free(ends);
        free(buf);
        ss_chunker_free(c);
    }
}

static void test_chunk_id_known_answer(void **state)
{
    /* BLAKE2b-256 keyed with bytes 0..31, from Python's hashlib, not libsodium. */
    static const uint8_t want_abc[32] = {
        0xd6, 0x3a, 0x32, 0xd3, 0xe4, 0x47, 0x38, 0xd7, 0x90, 0x7f, 0x96,
        0x43, 0x16, 0xc2, 0x41, 0xad, 0xab, 0xa0, 0xab, 0xfe, 0xab, 0xc3,
        0x23, 0x49, 0x67, 0x75, 0x78, 0xa1, 0x5a, 0x20, 0x3f, 0x7f,
    };
    static const uint8_t want_empty[32] = {
        0x4e, 0x51, 0xe7, 0xa9, 0x13, 0xfc, 0x80, 0x13, 0x7d, 0xa5, 0x28,
        0x80, 0xfe, 0xcc, 0xa1, 0x75, 0xbf, 0x81, 0xe1, 0x17, 0xd5, 0xc6,
        0x81, 0x26, 0xdc, 0x27, 0x74, 0x03, 0x35, 0x17, 0xea, 0x0d,
    };
    uint8_t key[32], id[32];
    (void)state;

    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    ss_chunk_id(key, "abc", 3, id);
    assert_memory_equal(id, want_abc, 32);
    ss_chunk_id(key, "", 0, id);
    assert_memory_equal(id, want_empty, 32);
}

static void test_chunk_id_keyed(void **state)
{
    uint8_t k1[32], k2[32], a[32], b[32], plain[32];
    uint8_t data[1000];
    (void)state;

    fill_splitmix(data, sizeof data, 7);
    memset(k1, 0x11, sizeof k1);
    memcpy(k2, k1, sizeof k2);
    k2[31] ^= 1;
    ss_chunk_id(k1, data, sizeof data, a);
    ss_chunk_id(k1, data, sizeof data, b);
    assert_memory_equal(a, b, 32); /* deterministic */
    ss_chunk_id(k2, data, sizeof data, b);
    assert_memory_not_equal(a, b, 32); /* one key bit changes the id */
    crypto_generichash(plain, sizeof plain, data, sizeof data, NULL, 0);
    assert_memory_not_equal(a, plain, 32); /* never the plain hash */
    data[500] ^= 1;
    ss_chunk_id(k1, data, sizeof data, b);
    assert_memory_not_equal(a, b, 32);
}

/* ---- feeding never moves boundaries ---- */

static void check_feeding(ss_chunker *c, const uint8_t *buf, size_t len, const size_t *steps,
                          size_t nsteps)
{
    size_t *want = calloc(MAX_CUTS, sizeof *want), *got = calloc(MAX_CUTS, sizeof *got);
    size_t nwant, ngot;

    assert_non_null(want);
    assert_non_null(got);
    nwant = cut_all(c, buf, len, want);
    assert_true(nwant > 3);
    for (size_t s = 0; s < nsteps; s++) {
        ngot = cut_fed(c, buf, len, steps[s], got);
        assert_int_equal(ngot, nwant);
        assert_memory_equal(got, want, nwant * sizeof *want);
    }
    free(want);
    free(got);
}

static void test_feeding_small_params(void **state)
{
    /* Small sizes make one-byte feeding (which rescans from the chunk start) affordable. */
    static const size_t steps[] = {1, 3, 255, 4096, 100000, 256 * KIB};
    ss_chunker *c = make(256, 1024, 4096);
    uint8_t *buf = xmalloc(256 * KIB);
    (void)state;

    fill_splitmix(buf, 256 * KIB, 42);
    check_feeding(c, buf, 256 * KIB, steps, sizeof steps / sizeof steps[0]);
    free(buf);
    ss_chunker_free(c);
}

static void test_feeding_default_params(void **state)
{
    static const size_t steps[] = {4099, 65536, 1 * MIB, 4 * MIB};
    ss_chunker *c = make(64 * KIB, 256 * KIB, 1 * MIB);
    uint8_t *buf = xmalloc(4 * MIB);
    (void)state;

    fill_splitmix(buf, 4 * MIB, 43);
    check_feeding(c, buf, 4 * MIB, steps, sizeof steps / sizeof steps[0]);
    free(buf);
    ss_chunker_free(c);
}

/* With max_size bytes in hand the answer is never "need more". */
static void test_max_bytes_always_cut(void **state)
{
    ss_chunker *c = make(64 * KIB, 256 * KIB, 1 * MIB);
    uint8_t *buf = xmalloc(1 * MIB);
    (void)state;

    memset(buf, 0, 1 * MIB);
    assert_int_equal(ss_chunker_next(c, buf, 1 * MIB, 0), 1 * MIB);
    assert_int_equal(ss_chunker_next(c, buf, 1 * MIB - 1, 0), 0);
    assert_int_equal(ss_chunker_next(c, buf, 1 * MIB - 1, 1), 1 * MIB - 1);
    free(buf);
    ss_chunker_free(c);
}

/* ---- sizes ---- */

static void check_bounds(const ss_chunker *c, const uint8_t *buf, size_t len)
{
    const ss_chunker_params *p = ss_chunker_params_of(c);
    size_t off = 0;
    while (off < len) {
        size_t k = ss_chunker_next(c, buf + off, len - off, 1);
        assert_true(k >= 1 && k <= p->max_size);
        /* The min skip means a cut needs at least one hashed byte past min_size. */
        if (off + k < len) assert_true(k > p->min_size);
        off += k;
    }
}

static void test_sizes_within_bounds(void **state)
{
    const size_t len = 16 * MIB + 12345;
    uint8_t *buf = xmalloc(len);
    ss_chunker *def = make(64 * KIB, 256 * KIB, 1 * MIB);
    ss_chunker *small = make(64, 256, 1024);
    (void)state;

    fill_splitmix(buf, len, 44);
    check_bounds(def, buf, len);
    check_bounds(small, buf, 1 * MIB + 7);
    fill_pattern(buf, len);
    check_bounds(def, buf, len);
    check_bounds(small, buf, 1 * MIB + 7);
    memset(buf, 0, len);
    check_bounds(def, buf, len);
    check_bounds(small, buf, 1 * MIB + 7);
    free(buf);
    ss_chunker_free(small);
    ss_chunker_free(def);
}

/* ---- reuse after an edit ---- */

typedef struct idset {
    uint8_t (*ids)[32];
    size_t *lens;
    size_t n;
} idset;

static const uint8_t test_key[32] = {1, 2, 3};

static void ids_of(const ss_chunker *c, const uint8_t *buf, size_t len, idset *s)
{
    size_t off = 0;
    s->ids = calloc(MAX_CUTS, sizeof *s->ids);
    s->lens = calloc(MAX_CUTS, sizeof *s->lens);
    assert_non_null(s->ids);
    assert_non_null(s->lens);
    s->n = 0;
    while (off < len) {
        size_t k = ss_chunker_next(c, buf + off, len - off, 1);
        assert_true(s->n < MAX_CUTS);
        ss_chunk_id(test_key, buf + off, k, s->ids[s->n]);
        s->lens[s->n++] = k;
        off += k;
    }
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void test_reuse_after_insert(void **state)
{
    const size_t len = 16 * MIB;
    const size_t where[] = {0, 1, len / 2, len - 1, len};
    uint8_t *buf = xmalloc(len), *ed = xmalloc(len + 1);
    ss_chunker *c = make(64 * KIB, 256 * KIB, 1 * MIB);
    idset old, now;
    (void)state;

    fill_splitmix(buf, len, 45);
    ids_of(c, buf, len, &old);
    qsort(old.ids, old.n, 32, cmp_id);
    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
        size_t pos = where[w], kept = 0;
        double frac;

        memcpy(ed, buf, pos);
        ed[pos] = 0xa5;
        memcpy(ed + pos + 1, buf + pos, len - pos);
        ids_of(c, ed, len + 1, &now);
        for (size_t i = 0; i < now.n; i++)
            if (bsearch(now.ids[i], old.ids, old.n, 32, cmp_id)) kept += now.lens[i];
        frac = (double)kept / (double)(len + 1);
        if (frac < 0.95) fprintf(stderr, "insert at %zu: %.2f%% reused\n", pos, 100 * frac);
        assert_true(frac >= 0.95);
        /* About one chunk: at most the few chunks around the edit are new. */
        assert_true(len + 1 - kept <= 3 * MIB);
        free(now.ids);
        free(now.lens);
    }
    free(old.ids);
    free(old.lens);
    free(ed);
    free(buf);
    ss_chunker_free(c);
}

/* ---- ss_chunker_fd ---- */

typedef struct collect {
    const uint8_t *want; /* the whole input, to compare each chunk's bytes */
    size_t ends[MAX_CUTS];
    size_t n;
    uint64_t next_offset;
    size_t fail_at; /* return SS_ERR_IO on this chunk (1-based); 0 = never */
} collect;

static ss_rc on_chunk(void *arg, const uint8_t *data, size_t len, uint64_t offset, ss_err *err)
{
    collect *col = arg;
    assert_int_equal(offset, col->next_offset);
    if (col->want) assert_memory_equal(data, col->want + offset, len);
    if (col->fail_at && col->n + 1 == col->fail_at)
        return ss_fail(err, SS_ERR_IO, "stop at chunk %zu", col->n + 1);
    assert_true(col->n < MAX_CUTS);
    col->next_offset += len;
    col->ends[col->n++] = (size_t)col->next_offset;
    return SS_OK;
}

static int temp_file_with(const uint8_t *buf, size_t len)
{
    char path[] = "/tmp/test-chunker-XXXXXX";
    int fd = mkstemp(path);
    size_t off = 0;

    assert_true(fd >= 0);
    unlink(path);
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void test_fd_file_and_pipe(void **state)
{
    const size_t len = 8 * MIB + 3;
    uint8_t *buf = xmalloc(len);
    size_t *want = calloc(MAX_CUTS, sizeof *want);
    ss_chunker *c = make(64 * KIB, 256 * KIB, 1 * MIB);
    collect *col = calloc(1, sizeof *col);
    size_t nwant;
    ss_err err;
    int fd, pfd[2], status;
    pid_t pid;
    (void)state;

    assert_non_null(want);
    assert_non_null(col);
    fill_splitmix(buf, len, 46);
    nwant = cut_all(c, buf, len, want);

    /* A regular file. */
    fd = temp_file_with(buf, len);
    col->want = buf;
    assert_int_equal(ss_chunker_fd(c, fd, on_chunk, col, &err), SS_OK);
    assert_int_equal(col->n, nwant);
    assert_memory_equal(col->ends, want, nwant * sizeof *want);

    /* A callback failure stops the scan and comes back unchanged. */
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    memset(col, 0, sizeof *col);
    col->fail_at = 3;
    assert_int_equal(ss_chunker_fd(c, fd, on_chunk, col, &err), SS_ERR_IO);
    assert_int_equal(col->n, 2);
    assert_string_equal(err.msg, "stop at chunk 3");
    close(fd);

    /* A pipe delivering short, uneven reads. */
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t off = 0, piece = 1;
        close(pfd[0]);
        while (off < len) {
            size_t n = piece < len - off ? piece : len - off;
            ssize_t w = write(pfd[1], buf + off, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) _exit(1);
            off += (size_t)w;
            piece = piece * 31 % 8191 + 1;
        }
        _exit(0);
    }
    close(pfd[1]);
    memset(col, 0, sizeof *col);
    col->want = buf;
    assert_int_equal(ss_chunker_fd(c, pfd[0], on_chunk, col, &err), SS_OK);
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(col->n, nwant);
    assert_memory_equal(col->ends, want, nwant * sizeof *want);

    /* A read error is SS_ERR_IO. */
    memset(col, 0, sizeof *col);
    assert_int_equal(ss_chunker_fd(c, -1, on_chunk, col, &err), SS_ERR_IO);
    assert_int_equal(col->n, 0);

    free(col);
    free(want);
    free(buf);
    ss_chunker_free(c);
}

/* ---- edges ---- */

static void test_empty_and_tiny(void **state)
{
    ss_chunker *c = make(64 * KIB, 256 * KIB, 1 * MIB);
    collect *col = calloc(1, sizeof *col);
    uint8_t byte = 7;
    ss_err err;
    int fd;
    (void)state;

    assert_non_null(col);
    assert_int_equal(ss_chunker_next(c, &byte, 0, 1), 0);
    assert_int_equal(ss_chunker_next(c, &byte, 0, 0), 0);
    assert_int_equal(ss_chunker_next(c, &byte, 1, 1), 1);
    assert_int_equal(ss_chunker_next(c, &byte, 1, 0), 0);

    fd = temp_file_with(&byte, 0);
    assert_int_equal(ss_chunker_fd(c, fd, on_chunk, col, &err), SS_OK);
    assert_int_equal(col->n, 0); /* an empty file has no chunks */
    close(fd);

    fd = temp_file_with(&byte, 1);
    col->want = &byte;
    assert_int_equal(ss_chunker_fd(c, fd, on_chunk, col, &err), SS_OK);
    assert_int_equal(col->n, 1);
    assert_int_equal(col->ends[0], 1);
    close(fd);
    free(col);
    ss_chunker_free(c);
}

static void test_params(void **state)
{
    static const struct {
        ss_chunker_params p;
        const char *why;
    } bad[] = {
        {{0, 256 * KIB, 1 * MIB}, "min zero"},
        {{63, 256, 1024}, "min below 64"},
        {{64 * KIB, 3 * 64 * KIB, 1 * MIB}, "avg not a power of two"},
        {{64, 128, 1024}, "avg below 256"},
        {{256 * KIB, 256 * KIB, 1 * MIB}, "min == avg"},
        {{512 * KIB, 256 * KIB, 1 * MIB}, "min > avg"},
        {{64 * KIB, 1 * MIB, 1 * MIB}, "avg == max"},
        {{64 * KIB, 1 * MIB, 512 * KIB}, "avg > max"},
        {{1 * MIB, 4 * MIB, 8 * MIB + 1}, "max above 8 MiB"},
        {{1 * MIB, 4 * MIB, UINT32_MAX}, "max huge"},
    };
    static const ss_chunker_params good[] = {
        {64, 256, 257},
        {64 * KIB, 256 * KIB, 1 * MIB},
        {2 * MIB, 4 * MIB, 8 * MIB},
        {100000, 131072, 300001}, /* min and max need not be powers of two */
    };
    ss_chunker *c = (ss_chunker *)&c; /* not NULL, to see it cleared */
    ss_err err;
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = '\0';
        assert_int_equal(ss_chunker_params_check(&bad[i].p, &err), SS_ERR_INVALID);
        assert_true(err.msg[0] != '\0');
        c = (ss_chunker *)&c;
        if (ss_chunker_new(&bad[i].p, &c, &err) != SS_ERR_INVALID) fail_msg("%s", bad[i].why);
        assert_null(c);
    }
    assert_int_equal(ss_chunker_params_check(NULL, &err), SS_ERR_INVALID);
    assert_int_equal(ss_chunker_new(&good[0], NULL, &err), SS_ERR_INVALID);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(ss_chunker_params_check(&good[i], NULL), SS_OK);
        assert_int_equal(ss_chunker_new(&good[i], &c, NULL), SS_OK);
        assert_memory_equal(ss_chunker_params_of(c), &good[i], sizeof good[i]);
        ss_chunker_free(c);
    }
    ss_chunker_free(NULL);

    /* The defaults are recorded in every new repository: change them on purpose only. */
    assert_int_equal(ss_chunker_default.min_size, 64 * KIB);
    assert_int_equal(ss_chunker_default.avg_size, 256 * KIB);
    assert_int_equal(ss_chunker_default.max_size, 1 * MIB);
    assert_int_equal(ss_chunker_params_check(&ss_chunker_default, NULL), SS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_chunk_id_known_answer),
        cmocka_unit_test(test_chunk_id_keyed),
        cmocka_unit_test(test_feeding_small_params),
        cmocka_unit_test(test_feeding_default_params),
        cmocka_unit_test(test_max_bytes_always_cut),
        cmocka_unit_test(test_sizes_within_bounds),
        cmocka_unit_test(test_reuse_after_insert),
        cmocka_unit_test(test_fd_file_and_pipe),
        cmocka_unit_test(test_empty_and_tiny),
        cmocka_unit_test(test_params),
    };
    if (sodium_init() < 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
