/*
 * test-scan: the folder walk (core/local/scan.c) on directories large
 * enough that their names are statted in windows split over two threads
 * (scan_stats.h), with subdirectories, symlinks, a fifo and temp files
 * among them: every entry comes out once, in the order a depth-first walk
 * with sorted names gives, with its own kind and size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsio.h"
#include "scan.h"

#define MAX_EXPECT 4096

typedef struct expect {
    char path[64];
    int kind;  /* 1 file, 2 directory, 3 symlink */
    long size; /* a file's */
} expect;

typedef struct tree {
    char root[64];
    expect e[MAX_EXPECT];
    size_t n;
    int warnings;
} tree;

static void put_file(const char *path, long size)
{
    char buf[512];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(write(fd, buf, (size_t)size), size);
    close(fd);
}

static void add(tree *t, const char *rel, int kind, long size)
{
    assert_true(t->n < MAX_EXPECT);
    snprintf(t->e[t->n].path, sizeof t->e[t->n].path, "%s", rel);
    t->e[t->n].kind = kind;
    t->e[t->n].size = size;
    t->n++;
}

/*
 * dir (relative, "" for the root) with n entries "nNNNN", made and expected
 * in name order: every 97th a directory of sub entries (the 1st of those
 * holding a directory of 300), every 131st a symlink, the rest files of
 * i % 300 bytes. Zero-padded names sort as they are made.
 */
static void fill(tree *t, const char *dir, int n, int depth)
{
    for (int i = 0; i < n; i++) {
        char rel[64], abs[128];
        snprintf(rel, sizeof rel, "%s%sn%04d", dir, *dir ? "/" : "", i);
        snprintf(abs, sizeof abs, "%s/%s", t->root, rel);
        if (i % 97 == 5 && depth < 2) {
            assert_int_equal(mkdir(abs, 0755), 0);
            add(t, rel, 2, 0);
            fill(t, rel, i == 5 ? 300 : 40, depth + 1);
        } else if (i % 131 == 7) {
            assert_int_equal(symlink("../elsewhere", abs), 0);
            add(t, rel, 3, 0);
        } else {
            put_file(abs, i % 300);
            add(t, rel, 1, i % 300);
        }
    }
}

static void warned(void *ctx, const char *msg)
{
    tree *t = ctx;
    (void)msg;
    t->warnings++;
}

static int setup(void **state)
{
    tree *t = calloc(1, sizeof *t);
    char path[128];
    assert_non_null(t);
    snprintf(t->root, sizeof t->root, "/tmp/ss-scan-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    fill(t, "", 700, 0);
    /* Not entries: a fifo (warned about) and temps a killed command left (removed). */
    snprintf(path, sizeof path, "%s/n0300fifo", t->root);
    assert_int_equal(mkfifo(path, 0644), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/n0005/%s%d", t->root, SS_FS_TMP_PREFIX, i);
        put_file(path, 3);
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tree *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", t->root);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

static void test_large_dirs_in_order(void **state)
{
    tree *t = *state;
    ss_scan *sc = NULL;
    const ss_scan_entry *e = NULL;
    ss_err err = {{0}};
    size_t i = 0;
    struct stat st;
    int root = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char path[128];
    assert_true(root >= 0);
    assert_int_equal(ss_scan_new(root, NULL, warned, t, &sc, &err), SS_OK);
    for (;;) {
        assert_int_equal(ss_scan_next(sc, &e, &err), SS_OK);
        if (!e) break;
        if (i >= t->n) fail_msg("more entries than made: %s", e->path);
        if (strcmp(e->path, t->e[i].path) || e->kind != t->e[i].kind)
            fail_msg("entry %zu: %s (kind %d), expected %s (kind %d)", i, e->path, e->kind,
                     t->e[i].path, t->e[i].kind);
        if (e->kind == 1 && e->st.st_size != t->e[i].size)
            fail_msg("%s: size %ld, expected %ld", e->path, (long)e->st.st_size, t->e[i].size);
        if (e->kind == 3 && !S_ISLNK(e->st.st_mode)) fail_msg("%s: not its own lstat", e->path);
        i++;
    }
    assert_int_equal(i, t->n);
    assert_int_equal(t->warnings, 1); /* the fifo */
    ss_scan_free(sc);
    close(root);
    snprintf(path, sizeof path, "%s/n0005/%s0", t->root, SS_FS_TMP_PREFIX);
    assert_int_equal(lstat(path, &st), -1); /* the scan removed the temps */
    assert_int_equal(errno, ENOENT);
}

/* Threads of this process now (/proc/self/task). */
static int threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2; /* . and .. */
}

/* A scan stopped early ends its threads (the walk's and the stat helper) and leaves nothing open.
 */
static void test_stopped_early(void **state)
{
    tree *t = *state;
    ss_scan *sc = NULL;
    const ss_scan_entry *e = NULL;
    ss_err err = {{0}};
    int root = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int probe, before = threads();
    assert_true(root >= 0);
    assert_int_equal(ss_scan_new(root, NULL, NULL, NULL, &sc, &err), SS_OK);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(ss_scan_next(sc, &e, &err), SS_OK);
        assert_non_null(e);
    }
    assert_true(threads() > before); /* the walk runs ahead on its own */
    ss_scan_free(sc);
    assert_int_equal(threads(), before);
    probe = dup(root); /* the lowest free descriptor: the scan's were given back */
    assert_int_equal(probe, root + 1);
    close(probe);
    close(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_dirs_in_order),
        cmocka_unit_test(test_stopped_early),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
