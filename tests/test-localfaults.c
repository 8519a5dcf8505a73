/*
 * test-localfaults: the folder's own file system fails, or a local user
 * plays tricks with it, end to end through the s3sync binary on a file://
 * store (the store plays no part here).
 *
 *   disk full     B's folder on a small tmpfs, nearly filled: pull exits 1
 *                 with one line naming the cause (No space left on device);
 *                 every file in B is whole (absent, its old bytes, or A's
 *                 new bytes), no temp file is left, the watermark stays; once
 *                 space is freed, pull completes.
 *   read-only     a subfolder of B bind-mounted read-only, then all of B:
 *                 pull exits 1 naming the path and the cause, files whole;
 *                 writable again, pull completes.
 *   unreadable    as an unprivileged user (root reads everything): a file
 *                 mode 000 is skipped with a warning naming it, the rest is
 *                 pushed (exit 0); a directory mode 000 fails the push (exit
 *                 1, naming it) and publishes nothing, since its unseen
 *                 contents must not pass for deleted; readable again, both go.
 *   dir modes     as an unprivileged user: 555 and 000 directories (with files)
 *                 pushed by another device are pulled, written into later,
 *                 pushed from and healed after a pull killed inside them; a
 *                 000 file that changes on the other device is pulled, the
 *                 copy that cannot be read kept as a conflict copy.
 *   changing      a file rewritten again and again while push reads it: push
 *                 reads it up to 3 times and skips it with a warning if it
 *                 never holds still; B never gets a torn mix of two versions,
 *                 and once the writer stops the next sync converges.
 *   swapped       d/ swapped for a symlink to a directory outside the folder
 *                 while push stands before reading d/secret.txt, or pull
 *                 before removing d/sub (S3SYNC_PAUSE_AT): nothing outside
 *                 is pushed or removed; with openat2 and with the O_NOFOLLOW
 *                 walk (S3SYNC_FAULT=no-openat2). And d/ swapped while
 *                 pull stands between two writes into it, d/ in apply's
 *                 directory cache: nothing is written outside either.
 *                 And d/ removed and made again there: the next write
 *                 finds it afresh, and a pull after converges.
 *   casefold      on a casefolded tmpfs or ext4 image (skipped, saying why,
 *                 where the kernel has no CONFIG_UNICODE): the kernel takes
 *                 each alias of tests/reserved-names.h for .s3sync, and a
 *                 forged .S3SYNC/config (and others) leaves B's settings be.
 *
 * Needs root for mount and setpriv (CI and this machine run as root); each
 * scenario that cannot get them is skipped with a message saying why.
 * docs/RELIABILITY.md states the behaviour this test pins down.
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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "forger.h"
#include "reserved-names.h"

#define NOBODY "65534"

/* --- worlds ------------------------------------------------------------------------- */

static int world_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    world *w = calloc(1, sizeof *w);
    if (!w) return -1;
    snprintf(w->root, sizeof w->root, "%s/ss-lf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(w->root) || chmod(w->root, 0755)) return -1;
    snprintf(w->url, sizeof w->url, "file://%s/store", w->root);
    for (int d = 0; d < MAX_DEV; d++)
        snprintf(w->dev[d], sizeof w->dev[d], "%s/%c", w->root, 'A' + d);
    g_step[0] = '\0';
    *state = w;
    return 0;
}

static char g_mounts[4][256]; /* unmounted at teardown, innermost first */
static int g_n_mounts;

static int world_teardown(void **state)
{
    world *w = *state;
    while (g_n_mounts)
        umount2(g_mounts[--g_n_mounts], MNT_DETACH);
    rm_rf(w->root);
    free(w);
    return 0;
}

/* mount(2) that skips the test with a message when it is not allowed here. */
static int mount_or_skip(const char *src, const char *dir, const char *type, unsigned long flags,
                         const char *opts)
{
    if (mount(src, dir, type, flags, opts)) {
        fprintf(stderr, "skipped: cannot mount %s on %s (%s): needs root\n", type ? type : src, dir,
                strerror(errno));
        return 0;
    }
    if (!(flags & MS_REMOUNT)) snprintf(g_mounts[g_n_mounts++], sizeof g_mounts[0], "%s", dir);
    return 1;
}

static void unmount_last(void)
{
    if (umount(g_mounts[--g_n_mounts]))
        failf("umount %s: %s", g_mounts[g_n_mounts], strerror(errno));
}

/* --- checks ------------------------------------------------------------------------- */

/* The command fails with exit 1 and one line on stderr holding every needle. */
static void expect_fail_line(outcome *o, const char *what, const char *n1, const char *n2)
{
    expect_exit(o, 1, what);
    if (!*o->err || strchr(o->err, '\n') != o->err + strlen(o->err) - 1)
        failf("%s: not one line: %s", what, o->err);
    if ((n1 && !strstr(o->err, n1)) || (n2 && !strstr(o->err, n2)))
        failf("%s: \"%s\" / \"%s\" not named: %s", what, n1 ? n1 : "", n2 ? n2 : "", o->err);
    fprintf(stderr, "  %s: %s", what, o->err);
    outcome_free(o);
}

typedef struct whole {
    const char *old_dir, *new_dir; /* the versions a file of the folder may hold */
    int partial, temps;
} whole;

/* Every file is absent, its old bytes or its new bytes; no temp file of ours is left. */
static int check_whole(void *ctx, const char *path, const char *rel, const struct stat *st)
{
    whole *h = ctx;
    if (strstr(rel, ".s3sync-tmp")) h->temps++;
    if (S_ISREG(st->st_mode) && !same_content(path, at_dir(h->new_dir, rel)) &&
        !(h->old_dir && same_content(path, at_dir(h->old_dir, rel)))) {
        fprintf(stderr, "  not whole: %s\n", rel);
        h->partial++;
    }
    return 0;
}

static void expect_whole(const char *dir, const char *old_dir, const char *new_dir)
{
    whole h = {old_dir, new_dir, 0, 0};
    struct dirent **v = NULL;
    int n;
    if (walk(dir, "", check_whole, &h)) failf("cannot walk %s", dir);
    if (h.partial) failf("%d files in %s are neither version", h.partial, dir);
    if (h.temps) failf("%d temp files left in %s", h.temps, dir);
    n = scandir(at_dir(dir, ".s3sync/tmp"), &v, not_dots, by_name);
    free_list(v, n > 0 ? n : 0);
    if (n > 0) failf("%d files left in %s/.s3sync/tmp", n, dir);
}

static int64_t seq_of(const world *w, int d)
{
    json_t *j = ok_json(w, d, "status");
    int64_t s = jint(j, "seq");
    json_decref(j);
    return s;
}

/* --- disk full ---------------------------------------------------------------------- */

/* Fill path's file system until about left bytes are free. */
static void fill(const char *path, size_t left)
{
    static char zeros[MIB];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    struct statvfs sv;
    unsigned long long avail;
    if (fd < 0 || fstatvfs(fd, &sv)) failf("open %s: %s", path, strerror(errno));
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    for (; avail > left + sizeof zeros; avail -= sizeof zeros)
        if (write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) break;
    close(fd);
}

/*
 * B on a tmpfs mounted at mnt (ROOT/mnt) with opts, joined, holding A's
 * keep.txt "old", a copy of it in old (ROOT/old); A's keep.txt "new" next.
 * Skips the test where no tmpfs can be mounted.
 */
static void tmpfs_device(world *w, const char *opts, char mnt[140], char old[200])
{
    snprintf(mnt, 140, "%s/mnt", w->root);
    snprintf(old, 200, "%s/old", w->root);
    snprintf(w->dev[B], sizeof w->dev[B], "%s/B", mnt);
    if (mkdir(mnt, 0755)) failf("mkdir %s", mnt);
    if (!mount_or_skip("tmpfs", mnt, "tmpfs", 0, opts)) skip();
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "keep.txt"), "old", 3);
    ok(w, A, "push");
    ok(w, B, "pull");
    snapshot(w->dev[B], old);
    write_bytes(at(w, A, "keep.txt"), "new", 3);
}

static void test_disk_full(void **state)
{
    world *w = *state;
    char mnt[140], filler[160], old[200];
    tmpfs_device(w, "size=48m", mnt, old);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    /* A new transaction: small files, and two that need far more than is left. */
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof name, "small/%02d.txt", i);
        write_random(at(w, A, name), 3000);
    }
    write_random(at(w, A, "big.bin"), 12 * MIB);
    write_random(at(w, A, "mid.bin"), 3 * MIB);
    ok(w, A, "push");
    /*
     * 6 MiB free: staging the data fails early; 14 MiB: near its end, most
     * of the files written to the stage. Either way nothing changes.
     */
    for (size_t left = 6 * MIB; left <= 14 * MIB; left += 8 * MIB) {
        outcome o;
        snprintf(g_step, sizeof g_step, "pull with %zu MiB free for 15 MiB", left / MIB);
        fill(filler, left);
        o = run_cmd(w, B, NULL, "pull");
        expect_fail_line(&o, g_step, "No space left on device", NULL);
        expect_whole(w->dev[B], old, w->dev[A]);
        if (seq_of(w, B) != 1) failf("the watermark moved past a transaction not all applied");
        unlink(filler);
    }
    /* 20 MiB: enough, as the data is written once (the stage's files become the files). */
    snprintf(g_step, sizeof g_step, "pull with 20 MiB free for 15 MiB");
    fill(filler, 20 * MIB);
    ok(w, B, "pull");
    expect_same_tree(w->dev[A], w->dev[B]);
    unlink(filler);
    g_step[0] = '\0';
}

/*
 * No inode left: a pull of 1,500 small files (inline in the transaction,
 * written by a batch's writer thread, fsio_batch.c) runs out of inodes
 * part way through a batch. The failure is the pull's one line, naming
 * the file whose temp could not be made, and nothing changes. Given more
 * inodes, the next pull converges.
 */
static void test_inodes_full(void **state)
{
    world *w = *state;
    char mnt[140], old[200];
    outcome o;
    tmpfs_device(w, "size=48m,nr_inodes=700", mnt, old);
    for (int i = 0; i < 1500; i++) {
        char name[32];
        snprintf(name, sizeof name, "many/%04d.txt", i);
        write_random(at(w, A, name), 100);
    }
    ok(w, A, "push");
    snprintf(g_step, sizeof g_step, "pull of 1500 files with about 650 inodes free");
    o = run_cmd(w, B, NULL, "pull");
    expect_fail_line(&o, g_step, "create temp file for many/", "No space left on device");
    expect_whole(w->dev[B], old, w->dev[A]);
    if (seq_of(w, B) != 1) failf("the watermark moved past a transaction not all applied");
    snprintf(g_step, sizeof g_step, "pull with inodes enough");
    if (!mount_or_skip("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=48m,nr_inodes=8000")) skip();
    ok(w, B, "pull");
    expect_same_tree(w->dev[A], w->dev[B]);
    g_step[0] = '\0';
}

/* --- read-only ---------------------------------------------------------------------- */

static void test_read_only(void **state)
{
    world *w = *state;
    char sub[200], old[200];
    snprintf(old, sizeof old, "%s/old", w->root);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "top.txt"), "old top", 7);
    write_bytes(at(w, A, "sub/x.txt"), "old x", 5);
    ok(w, A, "push");
    ok(w, B, "pull");
    snapshot(w->dev[B], old);
    write_bytes(at(w, A, "top.txt"), "new top", 7);
    write_bytes(at(w, A, "sub/x.txt"), "new x", 5);
    write_bytes(at(w, A, "sub/y.txt"), "new y", 5);
    write_bytes(at(w, A, "z.txt"), "new z", 5);
    ok(w, A, "push");
    snprintf(sub, sizeof sub, "%s/sub", w->dev[B]);
    if (!mount_or_skip(sub, sub, NULL, MS_BIND, NULL)) skip();
    if (!mount_or_skip(NULL, sub, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)) skip();
    snprintf(g_step, sizeof g_step, "sub/ read-only");
    outcome o = run_cmd(w, B, NULL, "pull");
    expect_fail_line(&o, "pull into a read-only subfolder", "sub/", "Read-only file system");
    expect_whole(w->dev[B], old, w->dev[A]);
    if (seq_of(w, B) != 1) failf("the watermark moved past a transaction not all applied");
    unmount_last();
    snprintf(g_step, sizeof g_step, "all of B read-only");
    if (!mount_or_skip(w->dev[B], w->dev[B], NULL, MS_BIND, NULL)) skip();
    if (!mount_or_skip(NULL, w->dev[B], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)) skip();
    o = run_cmd(w, B, NULL, "pull");
    expect_fail_line(&o, "pull into a read-only folder", "ead-only", NULL);
    expect_whole(w->dev[B], old, w->dev[A]);
    unmount_last();
    snprintf(g_step, sizeof g_step, "writable again");
    ok(w, B, "pull");
    expect_same_tree(w->dev[A], w->dev[B]);
    g_step[0] = '\0';
}

/* --- a mount point inside the folder ------------------------------------------------ */

/*
 * A pull fetches a file's data into .s3sync/tmp and links it beside its
 * target (fsio.h ss_atomic_adopt): across a mount point inside the folder
 * (a bind mount of the same file system, then a tmpfs) no link can be
 * made, and the data is copied there instead. Files of every kind arrive.
 */
static void test_mount_inside(void **state)
{
    world *w = *state;
    static const char *const types[] = {NULL, "tmpfs"}; /* NULL: a bind mount of itself */
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "d0/keep.txt"), "keep", 4);
    write_bytes(at(w, A, "d1/keep.txt"), "keep", 4);
    ok(w, A, "push");
    ok(w, B, "pull");
    for (size_t i = 0; i < COUNT(types); i++) {
        char dir[200], opts[64], name[64];
        struct stat st;
        snprintf(g_step, sizeof g_step, "d%zu/ a mount point (%s)", i,
                 types[i] ? types[i] : "bind");
        snprintf(dir, sizeof dir, "%s/d%zu", w->dev[B], i);
        if (stat(dir, &st)) failf("stat %s: %s", dir, strerror(errno));
        snprintf(opts, sizeof opts, "size=16m,mode=%o", (unsigned)(st.st_mode & 07777));
        if (types[i] ? !mount_or_skip("tmpfs", dir, "tmpfs", 0, opts)
                     : !mount_or_skip(dir, dir, NULL, MS_BIND, NULL))
            skip();
        snprintf(name, sizeof name, "d%zu/keep.txt", i);
        if (types[i]) { /* what the mount hides, as it was */
            struct stat was;
            if (stat(at(w, A, name), &was)) failf("stat %s", name);
            write_bytes(at(w, B, name), "keep", 4);
            const struct timespec t[2] = {was.st_atim, was.st_mtim};
            if (utimensat(AT_FDCWD, at(w, B, name), t, 0)) failf("utimensat %s", name);
        }
        snprintf(name, sizeof name, "d%zu/big.bin", i);
        write_random(at(w, A, name), 300000); /* chunked: staged, then linked or copied */
        snprintf(name, sizeof name, "d%zu/small.txt", i);
        write_random(at(w, A, name), 100); /* inline: written beside it */
        ok(w, A, "push");
        ok(w, B, "pull");
        expect_same_tree(w->dev[A], w->dev[B]);
        expect_no_leftovers(w);
        unmount_last(); /* a bind mount of itself leaves the same files; a tmpfs takes its own */
        if (types[i]) {
            ok(w, B, "sync"); /* what the tmpfs held is gone on B: deleted, and on A after */
            ok(w, A, "sync");
        }
    }
    g_step[0] = '\0';
}

/* --- unreadable (as an unprivileged user) -------------------------------------------- */

/* s3sync as uid nobody; env: one more variable ("NAME=value"), or NULL. */
static outcome run_nobody_env(const world *w, int d, const char *env, const char *cmd)
{
    return finish(start_prog(ARGS("HOME=/nonexistent", env),
                             ARGS("/usr/bin/setpriv", "--reuid=" NOBODY, "--regid=" NOBODY,
                                  "--clear-groups", S3SYNC_BIN, "-C", w->dev[d], "--json", cmd)));
}

static outcome run_nobody(const world *w, int d, const char *cmd)
{
    return run_nobody_env(w, d, NULL, cmd);
}

/* Skip the test, saying why, where it cannot run commands as uid nobody. */
static void need_nobody(void)
{
    outcome o = finish(start_prog(NULL, ARGS("/usr/bin/setpriv", "--reuid=" NOBODY,
                                             "--regid=" NOBODY, "--clear-groups", "/bin/true")));
    if (o.code) {
        fprintf(stderr, "skipped: cannot run as uid " NOBODY " (setpriv: %s)\n", o.err);
        outcome_free(&o);
        skip();
    }
    outcome_free(&o);
}

static void chown_tree(const char *dir)
{
    outcome o = finish(start_prog(NULL, ARGS("/bin/chown", "-R", NOBODY ":" NOBODY, dir)));
    expect_exit(&o, 0, "chown -R");
    outcome_free(&o);
}

/* A and B joined for a test that runs s3sync as nobody (skipped where it cannot); store: its path.
 */
static void join_for_nobody(world *w, char *store, size_t cap)
{
    snprintf(store, cap, "%s/store", w->root);
    need_nobody();
    join(w, A);
    join(w, B);
}

static void test_unreadable(void **state)
{
    world *w = *state;
    char store[200];
    outcome o;
    join_for_nobody(w, store, sizeof store);
    write_bytes(at(w, A, "open.txt"), "open", 4);
    write_bytes(at(w, A, "secret.txt"), "secret", 6);
    write_bytes(at(w, A, "locked/inside.txt"), "inside", 6);
    chown_tree(w->dev[A]);
    chown_tree(store);
    snprintf(g_step, sizeof g_step, "a file mode 000");
    if (chmod(at(w, A, "secret.txt"), 0)) failf("chmod");
    o = run_nobody(w, A, "push");
    expect_exit(&o, 0, "push beside an unreadable file");
    if (!strstr(o.err, "skipping secret.txt: Permission denied"))
        failf("no warning for secret.txt: %s", o.err);
    fprintf(stderr, "  push beside an unreadable file: %s", o.err);
    outcome_free(&o);
    ok(w, B, "pull");
    expect_content(at(w, B, "open.txt"), "open");
    expect_content(at(w, B, "secret.txt"), NULL);
    expect_content(at(w, B, "locked/inside.txt"), "inside");
    snprintf(g_step, sizeof g_step, "a directory mode 000");
    write_bytes(at(w, A, "open.txt"), "open 2", 6);
    chown_tree(w->dev[A]);
    if (chmod(at(w, A, "locked"), 0)) failf("chmod");
    o = run_nobody(w, A, "push");
    expect_fail_line(&o, "push with an unreadable directory", "locked", "Permission denied");
    {
        json_t *j = ok_json(w, B, "pull");
        if (jint(j, "seq") != 1) failf("a push that failed published a transaction");
        json_decref(j);
    }
    expect_content(at(w, B, "locked/inside.txt"), "inside"); /* not taken for deleted */
    snprintf(g_step, sizeof g_step, "readable again");
    if (chmod(at(w, A, "secret.txt"), 0644) || chmod(at(w, A, "locked"), 0755)) failf("chmod");
    o = run_nobody(w, A, "push");
    expect_exit(&o, 0, "push once readable");
    outcome_free(&o);
    ok(w, B, "pull");
    expect_same_tree(w->dev[A], w->dev[B]);
    g_step[0] = '\0';
}

/* --- directory modes from another device (pulled as an unprivileged user) -------------- */

/* cmd as nobody succeeds; with field set, its --json field is 0 (nothing changed or pending). */
static void ok_nobody(const world *w, int d, const char *cmd, const char *field)
{
    outcome o = run_nobody(w, d, cmd);
    expect_exit(&o, 0, cmd);
    if (field && (!json_is_object(o.json) || jint(o.json, field) != 0))
        failf("%s: %s is not 0: %s", cmd, field, o.out);
    outcome_free(&o);
}

static void expect_dir_mode(const world *w, int d, const char *rel, mode_t want)
{
    struct stat st;
    if (lstat(at(w, d, rel), &st)) failf("lstat %s: %s", rel, strerror(errno));
    if ((st.st_mode & 07777) != want)
        failf("%c's %s has mode 0%o, not 0%o", 'A' + d, rel, st.st_mode & 07777, want);
}

/*
 * A honest user on A makes directories read-only (555) and closed (000), with
 * files inside, and A pushes as root. B pulls as an unprivileged user, who
 * cannot write into such a directory: each gets its mode after its contents
 * (core/dirmodes.c), and a later transaction writing into or deleting from
 * one opens it to its owner for the while and closes it again. B's own push
 * reads into a 000 directory it made itself, as it stands (a directory made
 * 000 by B's user still fails the push: test_unreadable). A pull killed
 * while such a directory is open is healed by the next command, before the
 * wrong mode can pass for B's user's.
 */
static void test_dir_modes(void **state)
{
    world *w = *state;
    char store[200];
    outcome o;
    join_for_nobody(w, store, sizeof store);
    chown_tree(w->dev[B]);
    write_bytes(at(w, A, "ro/a.txt"), "a", 1);
    write_bytes(at(w, A, "ro/sub/b.txt"), "b", 1);
    write_bytes(at(w, A, "zero/z.txt"), "z", 1);
    if (chmod(at(w, A, "ro/sub"), 0555) || chmod(at(w, A, "ro"), 0555) ||
        chmod(at(w, A, "zero"), 0))
        failf("chmod: %s", strerror(errno));
    ok(w, A, "push");
    chown_tree(store);
    snprintf(g_step, sizeof g_step, "B pulls 555 and 000 directories with their contents");
    ok_nobody(w, B, "pull", NULL);
    expect_dir_mode(w, B, "ro", 0555);
    expect_dir_mode(w, B, "ro/sub", 0555);
    expect_dir_mode(w, B, "zero", 0);
    expect_content(at(w, B, "zero/z.txt"), "z");
    expect_same_tree(w->dev[A], w->dev[B]);
    snprintf(g_step, sizeof g_step, "B's push reads into the 000 directory it made");
    ok_nobody(w, B, "sync", "files");
    ok_nobody(w, B, "status", "pending_local");
    expect_dir_mode(w, B, "zero", 0);
    snprintf(g_step, sizeof g_step, "a later transaction writes into them and deletes from them");
    write_bytes(at(w, A, "ro/new.txt"), "new", 3);
    write_bytes(at(w, A, "ro/a.txt"), "a, edited", 9);
    write_bytes(at(w, A, "ro/sub/c.txt"), "c", 1);
    write_bytes(at(w, A, "zero/z2.txt"), "z2", 2);
    if (unlink(at(w, A, "ro/sub/b.txt"))) failf("unlink: %s", strerror(errno));
    ok(w, A, "push");
    chown_tree(store);
    ok_nobody(w, B, "pull", NULL);
    expect_dir_mode(w, B, "ro", 0555);
    expect_dir_mode(w, B, "ro/sub", 0555);
    expect_dir_mode(w, B, "zero", 0);
    expect_same_tree(w->dev[A], w->dev[B]);
    snprintf(g_step, sizeof g_step, "B's pull killed with ro/ open");
    write_bytes(at(w, A, "ro/late.txt"), "late", 4);
    ok(w, A, "push");
    chown_tree(store);
    o = run_nobody_env(w, B, "S3SYNC_CRASH_AT=apply.before-rename", "pull");
    if (o.sig != SIGKILL) failf("not killed: exit %d, stderr: %s", o.code, o.err);
    outcome_free(&o);
    ok_nobody(w, B, "status", NULL); /* any command puts the mode back first */
    expect_dir_mode(w, B, "ro", 0555);
    ok_nobody(w, B, "pull", NULL);
    ok_nobody(w, B, "sync", "files");
    expect_same_tree(w->dev[A], w->dev[B]);
    snprintf(g_step, sizeof g_step, "opened again on A");
    if (chmod(at(w, A, "zero"), 0755) || chmod(at(w, A, "ro"), 0755)) failf("chmod");
    ok(w, A, "push");
    chown_tree(store);
    ok_nobody(w, B, "pull", NULL);
    expect_dir_mode(w, B, "ro", 0755);
    expect_dir_mode(w, B, "zero", 0755);
    expect_same_tree(w->dev[A], w->dev[B]);
    /*
     * A file 000, with an mtime too recent for B to trust its stat (a future
     * one, for certain): when A changes it, B cannot read its copy to tell
     * whether it changed too, so it keeps that copy as a conflict copy.
     */
    snprintf(g_step, sizeof g_step, "a file 000 B cannot read changes on A");
    for (int v = 1; v <= 2; v++) {
        struct timespec later[2] = {{0, UTIME_OMIT}, {time(NULL) + 3600 * v, 0}};
        write_bytes(at(w, A, "closed.txt"), v == 1 ? "one" : "two", 3);
        if (chmod(at(w, A, "closed.txt"), 0) ||
            utimensat(AT_FDCWD, at(w, A, "closed.txt"), later, 0))
            failf("chmod, utimensat: %s", strerror(errno));
        ok(w, A, "push");
        chown_tree(store);
        ok_nobody(w, B, "pull", NULL);
    }
    expect_content(at(w, B, "closed.txt"), "two");
    assert_int_equal(count_in(w->dev[B], count_content, "one"), 1);
    g_step[0] = '\0';
}

/* --- a file changing while push reads it ---------------------------------------------- */

#define CHANGING_SIZE (24 * MIB)

/* Rewrite path in place, again and again, each version one byte value throughout. */
static pid_t start_rewriter(const char *path)
{
    pid_t pid = fork();
    if (pid) return pid;
    static char block[MIB];
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    for (unsigned v = 2; fd >= 0; v++) {
        memset(block, (int)(v % 250) + 1, sizeof block);
        for (size_t off = 0; off < CHANGING_SIZE; off += sizeof block)
            if (pwrite(fd, block, sizeof block, (off_t)off) != (ssize_t)sizeof block) _exit(1);
    }
    _exit(1);
}

/* 1 when the file is one version: every byte the same. */
static int uniform(const char *path)
{
    size_t len = 0;
    unsigned char *b = (unsigned char *)read_file(path, &len);
    int ok = b && len == CHANGING_SIZE;
    for (size_t i = 1; ok && i < len; i++)
        ok = b[i] == b[0];
    free(b);
    return ok;
}

static void test_changing_file(void **state)
{
    world *w = *state;
    char *ones = malloc(CHANGING_SIZE);
    int status, torn = 0, skipped = 0;
    assert_non_null(ones);
    memset(ones, 1, CHANGING_SIZE);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "changing.bin"), ones, CHANGING_SIZE);
    free(ones);
    for (int round = 0; round < 4; round++) {
        pid_t writer = start_rewriter(at(w, A, "changing.bin"));
        outcome o;
        snprintf(g_step, sizeof g_step, "round %d: push while the file is rewritten", round);
        o = run_cmd(w, A, NULL, "push");
        kill(writer, SIGKILL);
        waitpid(writer, &status, 0);
        expect_exit(&o, 0, "push of a changing file");
        skipped += !!strstr(o.err, "keeps changing while being read");
        outcome_free(&o);
        ok(w, B, "pull");
        if (!access(at(w, B, "changing.bin"), F_OK) && !uniform(at(w, B, "changing.bin"))) torn++;
    }
    if (torn) failf("B got a torn mix of versions %d times out of 4", torn);
    fprintf(stderr, "  4 pushes while the file changed: %d skipped it, none tore it\n", skipped);
    snprintf(g_step, sizeof g_step, "writer stopped");
    ok(w, A, "sync");
    ok(w, B, "sync");
    expect_same_tree(w->dev[A], w->dev[B]); /* whatever the killed writer left in A */
    g_step[0] = '\0';
}

/* --- a directory swapped for a symlink mid-command ----------------------------------- */

/* The two ways fsio resolves a path beneath the folder (core/fsio.h): openat2, the walk. */
static const char *const g_resolvers[2][3] = {
    {"openat2", NULL},
    {"the O_NOFOLLOW walk", "S3SYNC_FAULT=no-openat2", NULL},
};

/* Replace dir by a symlink to target (dir itself is kept as away), or put it back. */
static void swap_dir(const char *dir, const char *away, const char *target)
{
    if (target ? rename(dir, away) || symlink(target, dir) : unlink(dir) || rename(away, dir))
        failf("swap %s: %s", dir, strerror(errno));
}

/* s3sync -C DEV --json CMD, stopped at point, with the resolver's environment. */
static child start_paused(const world *w, int d, const char *point, int walk, const char *cmd)
{
    char pause[96];
    const char *env[3] = {pause, g_resolvers[walk][1], NULL};
    snprintf(pause, sizeof pause, "S3SYNC_PAUSE_AT=%s", point);
    child c = start_cmd(w, d, env, cmd);
    expect_stopped(c, cmd);
    return c;
}

/* ROOT/outside, and device d's d/ set aside as d.away while a symlink stands in for it. */
static void swap_names(const world *w, int d, char outside[200], char away[200])
{
    snprintf(outside, 200, "%s/outside", w->root);
    snprintf(away, 200, "%s.away", at(w, d, "d"));
}

/* cmd on device d stopped at point, d/ swapped for a symlink to outside, resumed to its end. */
static outcome run_swapped(const world *w, int d, const char *point, int walk, const char *cmd,
                           const char *away, const char *outside)
{
    child c = start_paused(w, d, point, walk, cmd);
    swap_dir(at(w, d, "d"), away, outside);
    kill(c.pid, SIGCONT);
    return finish(c);
}

/*
 * A local user swaps d/ for a symlink to a directory outside the folder
 * while A's push stands between its scan of d/secret.txt and reading it.
 * The push must not read through the link: nothing of the outside file
 * reaches the store (B), and the push warns and goes on.
 */
static void test_swap_during_push(void **state)
{
    world *w = *state;
    char outside[200], away[200];
    swap_names(w, A, outside, away);
    write_bytes(at_dir(outside, "secret.txt"), "OUTSIDE SECRET", 14);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "d/secret.txt"), "inside", 6);
    ok(w, A, "push");
    ok(w, B, "pull");
    for (int walk = 0; walk < 2; walk++) {
        outcome o;
        snprintf(g_step, sizeof g_step, "push, d/ swapped before reading (%s)",
                 g_resolvers[walk][0]);
        write_bytes(at(w, A, "d/secret.txt"), walk ? "inside 3" : "inside 2", 8);
        o = run_swapped(w, A, "push.before-read:1", walk, "push", away, outside);
        ok(w, B, "pull");
        if (count_in(w->dev[B], count_content, "OUTSIDE SECRET"))
            failf("the file outside the folder was pushed through the symlink");
        expect_exit(&o, 0, g_step);
        if (!strstr(o.err, "skipping d/secret.txt"))
            failf("no warning for d/secret.txt: %s", o.err);
        fprintf(stderr, "  %s: %s", g_step, o.err);
        outcome_free(&o);
        swap_dir(at(w, A, "d"), away, NULL);
        ok(w, A, "push");
        ok(w, B, "pull");
        expect_content(at(w, B, "d/secret.txt"), walk ? "inside 3" : "inside 2");
    }
    g_step[0] = '\0';
}

/*
 * A local user swaps d/ for a symlink to a directory outside the folder
 * while B's pull stands before removing d/sub (deleted by A). The pull
 * must not remove outside/sub through the link; once d/ is back, a pull
 * completes.
 */
static void test_swap_during_pull(void **state)
{
    world *w = *state;
    char outside[200], away[200];
    struct stat st;
    swap_names(w, B, outside, away);
    if (mkdir(outside, 0755) || mkdir(at_dir(outside, "sub"), 0755)) failf("mkdir outside");
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "d/keep.txt"), "keep", 4);
    for (int walk = 0; walk < 2; walk++) {
        outcome o;
        snprintf(g_step, sizeof g_step, "pull, d/ swapped before removing d/sub (%s)",
                 g_resolvers[walk][0]);
        if (mkdir(at(w, A, "d/sub"), 0755)) failf("mkdir d/sub");
        ok(w, A, "push");
        ok(w, B, "pull");
        if (rmdir(at(w, A, "d/sub"))) failf("rmdir d/sub");
        ok(w, A, "push");
        o = run_swapped(w, B, "apply.before-remove:1", walk, "pull", away, outside);
        fprintf(stderr, "  %s: exit %d %s", g_step, o.code, o.err);
        if (o.code != 0 && o.code != 1) failf("pull: exit %d: %s", o.code, o.err);
        outcome_free(&o);
        if (stat(at_dir(outside, "sub"), &st) || !S_ISDIR(st.st_mode))
            failf("the directory outside the folder was removed through the symlink");
        swap_dir(at(w, B, "d"), away, NULL);
        ok(w, B, "pull");
        expect_same_tree(w->dev[A], w->dev[B]);
    }
    g_step[0] = '\0';
}

/* Round walk (0, 1) of a test where B's pull writes d/f1.txt and d/f2.txt: A pushes them. */
static void push_two_files(world *w, int walk, const char *what)
{
    snprintf(g_step, sizeof g_step, "%s (%s)", what, g_resolvers[walk][0]);
    write_bytes(at(w, A, "d/f1.txt"), walk ? "one 2" : "one 1", 5);
    write_bytes(at(w, A, "d/f2.txt"), walk ? "two 2" : "two 1", 5);
    ok(w, A, "push");
}

/* A pull that met a directory changed under it ends, done or failed (1), never worse. */
static void expect_pull_ended(outcome *o)
{
    if (o->code != 0 && o->code != 1) failf("pull: exit %d: %s", o->code, o->err);
    fprintf(stderr, "  %s: exit %d %s", g_step, o->code, o->err);
    outcome_free(o);
}

/*
 * A local user swaps d/ for a symlink to a directory outside the folder
 * while B's pull stands between writing d/f1.txt and d/f2.txt, when apply
 * holds d/ open in its directory cache (core/local/fsio.c): d/f2.txt goes
 * into the directory apply resolved (now d.away), never through the link,
 * so nothing appears outside; once d/ is back, a pull converges.
 */
static void test_swap_between_writes(void **state)
{
    world *w = *state;
    char outside[200], away[200];
    swap_names(w, B, outside, away);
    if (mkdir(outside, 0755)) failf("mkdir outside");
    join(w, A);
    join(w, B);
    for (int walk = 0; walk < 2; walk++) {
        outcome o;
        push_two_files(w, walk, "pull, d/ swapped between two writes into it");
        o = run_swapped(w, B, "apply.after-rename:1", walk, "pull", away, outside);
        expect_pull_ended(&o);
        if (count_in(outside, count_name, ".txt"))
            failf("a file was written outside the folder, through the symlink");
        swap_dir(at(w, B, "d"), away, NULL);
        ok(w, B, "pull");
        expect_same_tree(w->dev[A], w->dev[B]);
    }
    g_step[0] = '\0';
}

/*
 * A local user removes d/ and makes it again while B's pull stands between
 * staging d/f1.txt and writing d/f2.txt, d/ in apply's directory cache. The
 * per-file calls do not fstat a cached directory first (core/local/fsio.c):
 * the next one through the removed d/ says ENOENT, and d/ is resolved
 * afresh (in round 0 the walk made d/, so f2's temp create is what finds
 * it; in round 1 the look at f2). The pull may fail (f1's temp went with
 * the old d/); a pull after converges, and no temp is left behind.
 */
static void test_remove_between_writes(void **state)
{
    world *w = *state;
    join(w, A);
    join(w, B);
    for (int walk = 0; walk < 2; walk++) {
        outcome o;
        child c;
        push_two_files(w, walk, "pull, d/ removed and made again between two writes");
        c = start_paused(w, B, "apply.staged:1", walk, "pull");
        rm_rf(at(w, B, "d"));
        if (mkdir(at(w, B, "d"), 0755)) failf("mkdir d: %s", strerror(errno));
        kill(c.pid, SIGCONT);
        o = finish(c);
        expect_pull_ended(&o);
        ok(w, B, "pull");
        ok(w, B, "sync"); /* its scan removes the temps a failed pull left */
        ok(w, A, "sync");
        expect_same_tree(w->dev[A], w->dev[B]);
        expect_no_leftovers(w);
    }
    g_step[0] = '\0';
}

/* --- a casefolded file system ---------------------------------------------------------- */

#ifndef FS_CASEFOLD_FL
#define FS_CASEFOLD_FL 0x40000000 /* chattr +F */
#endif

/* Mount a small ext4 image made with casefolding at mnt; 0 with why when it cannot. */
static int mount_ext4_casefold(const world *w, const char *mnt, char *why, size_t cap)
{
    char img[200];
    outcome o;
    int fd;
    snprintf(img, sizeof img, "%s/casefold.img", w->root);
    fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 64 * MIB)) failf("%s: %s", img, strerror(errno));
    close(fd);
    o = finish(start_prog(NULL, ARGS("/sbin/mkfs.ext4", "-q", "-F", "-O", "casefold", img)));
    if (!o.code) {
        outcome_free(&o);
        o = finish(start_prog(NULL, ARGS("/bin/mount", "-o", "loop", img, mnt)));
    }
    if (o.code) snprintf(why, cap, "%.*s", (int)strcspn(o.err, "\n"), o.err);
    outcome_free(&o);
    if (!o.code) snprintf(g_mounts[g_n_mounts++], sizeof g_mounts[0], "%s", mnt);
    return !o.code;
}

/*
 * An empty directory under w->root whose names the kernel compares
 * casefolded (tmpfs -o casefold, else an ext4 image with casefolding, then
 * chattr +F); 0 with why when this kernel has neither (CONFIG_UNICODE).
 */
static int casefolded_dir(const world *w, char *dir, size_t cap, char *why, size_t why_cap)
{
    char mnt[140], ext4[256] = "";
    int fd, flags = 0, ok;
    snprintf(mnt, sizeof mnt, "%s/cf", w->root);
    if (mkdir(mnt, 0755)) failf("mkdir %s: %s", mnt, strerror(errno));
    if (!mount("tmpfs", mnt, "tmpfs", 0, "casefold,size=64m")) {
        snprintf(g_mounts[g_n_mounts++], sizeof g_mounts[0], "%s", mnt);
    } else {
        int e = errno;
        if (!mount_ext4_casefold(w, mnt, ext4, sizeof ext4)) {
            snprintf(why, why_cap, "tmpfs -o casefold: %s; ext4 -O casefold: %s", strerror(e),
                     ext4);
            return 0;
        }
    }
    snprintf(dir, cap, "%s/folded", mnt);
    if (mkdir(dir, 0755)) failf("mkdir %s: %s", dir, strerror(errno));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ok = fd >= 0 && !ioctl(fd, FS_IOC_GETFLAGS, &flags);
    flags |= FS_CASEFOLD_FL;
    ok = ok && !ioctl(fd, FS_IOC_SETFLAGS, &flags);
    if (!ok) snprintf(why, why_cap, "chattr +F %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return ok;
}

/*
 * On a casefolded directory, what core/path.h says of the control folder's
 * aliases holds: the kernel takes each for .s3sync itself. Then B's folder
 * there, and a forged transaction writing .S3SYNC/config (and the other
 * aliases) into it: once that overwrote B's own settings; now the pull
 * exits 3 and B's .s3sync/ is as it was.
 */
static void test_casefold_aliases(void **state)
{
    static const char *const paths[] = {".S3SYNC/config",
                                        ".\xc5\xbf"
                                        "3SYNC/config",
                                        ".s3\xe2\x80\x8d"
                                        "sync/config"};
    world *w = *state;
    char dir[150], why[512] = "", probe[300], *config = NULL, *now = NULL;
    struct stat meta, st;
    size_t len = 0;
    forger f;
    if (!casefolded_dir(w, dir, sizeof dir, why, sizeof why)) {
        fprintf(stderr, "skipped: no casefolded file system on this kernel (%s)\n", why);
        skip();
    }
    snprintf(probe, sizeof probe, "%s/probe/.s3sync", dir);
    make_parents(at_dir(probe, "x"));
    if (stat(probe, &meta)) failf("stat %s: %s", probe, strerror(errno));
    for (size_t i = 0; i < COUNT(g_reserved); i++) {
        snprintf(probe, sizeof probe, "%s/probe/%s", dir, g_reserved[i].name);
        if (g_reserved[i].casefold && (stat(probe, &st) || st.st_ino != meta.st_ino))
            failf("this kernel does not take %s for .s3sync", g_reserved[i].what);
    }
    snprintf(w->dev[B], sizeof w->dev[B], "%s/B", dir);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "a.txt"), "a", 1);
    ok(w, A, "push");
    ok(w, B, "pull");
    config = read_file(at(w, B, ".s3sync/config"), &len);
    forger_open(&f, w->url, "correct horse battery staple");
    forger_enroll(&f);
    ok(w, B, "pull");
    for (size_t i = 0; i < COUNT(paths); i++) {
        char key[SS_KEY_NAME_MAX];
        buf b = {0};
        outcome o;
        ss_err err = {{0}};
        snprintf(g_step, sizeof g_step, "a forged %s on a casefolded folder", paths[i]);
        t_header(&b, &f, NULL, f.head + 1, 0, 1);
        t_file(&b, &f, paths[i], strlen(paths[i]), "store = file:///elsewhere\n");
        forge(&f, &b, SIG_OWN, key);
        free(b.p);
        o = run_cmd(w, B, NULL, "pull");
        expect_exit(&o, 3, g_step);
        outcome_free(&o);
        now = read_file(at(w, B, ".s3sync/config"), &len);
        if (!now || strcmp(now, config)) failf("B's settings were overwritten: %s", now);
        free(now);
        if (ss_store_delete(f.store, key, &err)) failf("delete %s: %s", key, err.msg);
    }
    g_step[0] = '\0';
    free(config);
    forger_free(&f);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_disk_full),
        WORLD_TEST(test_inodes_full),
        WORLD_TEST(test_read_only),
        WORLD_TEST(test_mount_inside),
        WORLD_TEST(test_unreadable),
        WORLD_TEST(test_dir_modes),
        WORLD_TEST(test_changing_file),
        WORLD_TEST(test_swap_during_push),
        WORLD_TEST(test_swap_during_pull),
        WORLD_TEST(test_swap_between_writes),
        WORLD_TEST(test_remove_between_writes),
        WORLD_TEST(test_casefold_aliases),
    };
    if (sodium_init() < 0) return 1;
    setenv("S3SYNC_KDF", "interactive", 1);
    setenv("S3SYNC_PASSWORD", "correct horse battery staple", 1);
    unsetenv("S3SYNC_PASSWORD_FILE");
    unsetenv("S3SYNC_PASSWORD_COMMAND");
    unsetenv("S3SYNC_CRASH_AT");
    unsetenv("S3SYNC_PAUSE_AT");
    unsetenv("S3SYNC_FAULT");
    return cmocka_run_group_tests_name("localfaults", tests, NULL, NULL);
}
