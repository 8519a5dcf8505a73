/*
 * test-crash-gc: gc and the checkpoint write killed at each of their crash
 * points, end to end through the real binary (cli-fixture.h), on a file://
 * store and, with RGW (ci/test.sh), on s3://.
 *
 * Owns docs/FORMAT.md "gc" step 4's promise, "a gc killed at any point
 * leaves [R, H] whole and a second run converges", and the same of a
 * checkpoint write killed just before or just after its create (gc's first
 * checkpoint, `s3sync checkpoint`, and the one a push writes by the rule). The points are core/gc.c
 * G5 and core/checkpoint.c C5, fired by S3SYNC_CRASH_AT (core/fault.h). Each run must die there by
 * SIGKILL: a point that moved or vanished fails the test instead of passing while proving nothing.
 *
 * After each kill: every state R..H restores (`restore . --at SEQ`) to
 * exactly the folder A had when it pushed SEQ (names, modes, bytes, link
 * targets, mtimes); a file deleted after R restores without --at (that
 * walk starts from the oldest retained state, not the newest); `verify
 * --data` passes; A's folder is untouched. Then gc runs again until it has
 * nothing left to do, and the store holds exactly the keys an uninterrupted
 * gc leaves: the reference, made first from the same store and checked the
 * same way. Between cases the store is put back as it was before gc, object
 * by object (objects are immutable: putting back what gc deleted and
 * deleting what it wrote restores the store exactly).
 */
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
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli-fixture.h"
#include "format.h"
#include "s3store.h"

#define KEEP_LAST "3" /* gc --keep-last of the first scenario: R = 4 of H = 6 */

static unsigned g_kills, g_restores, g_gc_runs; /* for the figures (docs/RELIABILITY.md) */

/* --- commands ----------------------------------------------------------------------- */

/* args run with S3SYNC_CRASH_AT=point must die there by SIGKILL. */
static void crash_at(const world *w, const char *point, const char *const *args)
{
    char env[96];
    outcome o;
    snprintf(env, sizeof env, "S3SYNC_CRASH_AT=%s", point);
    o = run_on(w, A, ARGS(env), args);
    if (o.sig != SIGKILL) {
        fprintf(stderr, "stdout: %s\nstderr: %s\n", o.out, o.err);
        outcome_free(&o);
        failf("%s never reached %s (exit %d): the case tests nothing", args[0], point, o.code);
    }
    outcome_free(&o);
    g_kills++;
}

/* A pushes; the folder as pushed is kept as ROOT/at<seq>, to compare restores with. */
static void push_as(const world *w, uint64_t expect_seq)
{
    json_t *j = ok_json(w, A, "sync");
    char snap[32];
    if ((uint64_t)jint(j, "seq") != expect_seq)
        failf("push made sequence %" PRId64 ", expected %" PRIu64, jint(j, "seq"), expect_seq);
    json_decref(j);
    snprintf(snap, sizeof snap, "at%" PRIu64, expect_seq);
    snapshot(w->dev[A], at_dir(w->root, snap));
}

/* gc --keep-last keep until a run deletes and writes nothing; R of the runs (0: none). */
static uint64_t gc_to_fixpoint(const world *w, const char *keep, int max_runs)
{
    uint64_t r = 0;
    for (int run = 0; run < max_runs; run++) {
        json_t *j = ok_on(w, A, ARGS("gc", "--keep-last", keep));
        g_gc_runs++;
        int64_t deleted = jint(j, "deleted_objects"), wrote = jint(j, "checkpoint");
        if ((uint64_t)jint(j, "retained") > r) r = (uint64_t)jint(j, "retained");
        json_decref(j);
        if (!deleted && !wrote) return r;
    }
    failf("gc still deletes or writes after %d runs: it does not converge", max_runs);
    return 0;
}

/* --- the store, saved and put back -------------------------------------------------- */

typedef struct saved {
    char **keys; /* NULL-terminated, in listing order */
    void **bytes;
    size_t *len, n;
} saved;

static ss_store *open_store(const world *w)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    if (ss_store_open(w->url, NULL, &s, &err)) failf("open %s: %s", w->url, err.msg);
    return s;
}

static saved save_store(const world *w)
{
    ss_store *s = open_store(w);
    saved v = {.keys = store_keys(w->url, &v.n)};
    v.bytes = calloc(v.n + 1, sizeof *v.bytes);
    v.len = calloc(v.n + 1, sizeof *v.len);
    assert_true(v.bytes && v.len);
    for (size_t i = 0; i < v.n; i++) {
        ss_err err = {{0}};
        if (ss_store_get(s, v.keys[i], 0, SS_TO_END, &v.bytes[i], &v.len[i], &err))
            failf("get %s: %s", v.keys[i], err.msg);
    }
    ss_store_free(s);
    return v;
}

static void saved_free(saved *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->bytes[i]);
    free(v->bytes);
    free(v->len);
    keys_free(v->keys);
    memset(v, 0, sizeof *v);
}

static int holds(char *const *keys, const char *key)
{
    for (size_t i = 0; keys[i]; i++)
        if (!strcmp(keys[i], key)) return 1;
    return 0;
}

/* The store as v: what is not in v deleted, what v has and the store lacks put back. */
static void restore_store(const world *w, const saved *v)
{
    ss_store *s = open_store(w);
    char **now = store_keys(w->url, NULL);
    ss_err err = {{0}};
    for (size_t i = 0; now[i]; i++)
        if (!holds(v->keys, now[i]) && ss_store_delete(s, now[i], &err))
            failf("delete %s: %s", now[i], err.msg);
    for (size_t i = 0; i < v->n; i++)
        if (!holds(now, v->keys[i]) &&
            ss_store_put(s, v->keys[i], v->bytes[i], v->len[i], SS_PUT_CREATE_ONLY, &err))
            failf("put back %s: %s", v->keys[i], err.msg);
    keys_free(now);
    ss_store_free(s);
}

/* The store holds exactly the keys of want. */
static void expect_keys(const world *w, char *const *want)
{
    char **now = store_keys(w->url, NULL);
    size_t i = 0;
    while (now[i] && want[i] && !strcmp(now[i], want[i]))
        i++;
    if (now[i] || want[i]) {
        fprintf(stderr, "store keys, then what an uninterrupted gc left:\n");
        for (size_t k = 0; now[k]; k++)
            fprintf(stderr, "  %s\n", now[k]);
        fprintf(stderr, "  --\n");
        for (size_t k = 0; want[k]; k++)
            fprintf(stderr, "  %s\n", want[k]);
        keys_free(now);
        failf("after the crash and gc again, the store is not what an uninterrupted gc left");
    }
    keys_free(now);
}

/* --- what must hold after a kill ---------------------------------------------------- */

typedef struct retained {
    uint64_t r, h;      /* every state R..H must restore */
    const char *gone;   /* NULL, or a file deleted after R: restores without --at ... */
    uint64_t gone_last; /* ... to its version of this sequence */
} retained;

/* k->gone, restored without --at, is its last version. */
static void expect_gone_restores(const world *w, const retained *k)
{
    char rel[96];
    outcome o = run_on(w, A, NULL, ARGS("restore", k->gone, "--to", at_dir(w->root, "gone.r")));
    expect_exit(&o, 0, "restore of a file deleted after R");
    outcome_free(&o);
    g_restores++;
    snprintf(rel, sizeof rel, "at%" PRIu64 "/%s", k->gone_last, k->gone);
    if (!same_content(at_dir(w->root, "gone.r"), at_dir(w->root, rel)))
        failf("%s restored is not its last version", k->gone);
    rm_rf(at_dir(w->root, "gone.r"));
}

/*
 * Every state of [R, H] restores whole; the deleted file restores; verify
 * --data passes; A's folder is still as A pushed H.
 */
static void expect_retained(const world *w, const retained *k)
{
    char at_seq[24], dest[32], snap[32];
    outcome o;
    for (uint64_t seq = k->r; seq <= k->h; seq++) {
        snprintf(at_seq, sizeof at_seq, "%" PRIu64, seq);
        snprintf(dest, sizeof dest, "restored%" PRIu64, seq);
        snprintf(snap, sizeof snap, "at%" PRIu64, seq);
        json_decref(
            ok_on(w, A, ARGS("restore", ".", "--at", at_seq, "--to", at_dir(w->root, dest))));
        expect_same_tree(at_dir(w->root, snap), at_dir(w->root, dest));
        rm_rf(at_dir(w->root, dest));
        g_restores++;
    }
    snprintf(snap, sizeof snap, "at%" PRIu64, k->h);
    expect_same_tree(at_dir(w->root, snap), w->dev[A]); /* gc never touches the folder */

    if (k->gone) expect_gone_restores(w, k);

    o = run_on(w, A, NULL, ARGS("verify", "--data"));
    expect_exit(&o, 0, "verify --data");
    outcome_free(&o);
}

/* --- gc killed at each of its points ------------------------------------------------ */

static void write_text(const world *w, const char *rel, const char *text)
{
    write_bytes(at(w, A, rel), text, strlen(text));
}

/*
 * H = 6 with checkpoints 2, 3, 4 and 5; gc --keep-last 3 keeps R = 4, so it
 * deletes log/1..4, checkpoints 2 and 3, and the packs of 1, 2 and 3 (a.bin
 * rewritten each time, b.bin at 2 and 4): 4, 2 and 3 deletes, each kind with
 * a middle. gone.txt is deleted at 5, after R and before the newest
 * checkpoint, so its restore walks from the oldest retained state.
 */
static void gc_history(world *w)
{
    join(w, A);
    write_random(at(w, A, "a.bin"), 200000);
    write_text(w, "keep.txt", "kept all along");
    write_text(w, "gone.txt", "deleted after R");
    write_text(w, "d/sub/x.txt", "deep");
    if (chmod(at(w, A, "d/sub/x.txt"), 0600) || symlink("d/sub", at(w, A, "link"))) fail();
    push_as(w, 1);
    write_random(at(w, A, "a.bin"), 200000);
    write_random(at(w, A, "b.bin"), 150000);
    push_as(w, 2);
    ok(w, A, "checkpoint");
    write_random(at(w, A, "a.bin"), 200000);
    push_as(w, 3);
    ok(w, A, "checkpoint");
    write_random(at(w, A, "a.bin"), 200000);
    write_random(at(w, A, "b.bin"), 150000);
    push_as(w, 4);
    ok(w, A, "checkpoint");
    rm_rf(at(w, A, "gone.txt"));
    write_text(w, "notes", "five");
    push_as(w, 5);
    ok(w, A, "checkpoint");
    write_random(at(w, A, "c.bin"), 100000);
    write_text(w, "notes", "six");
    if (chmod(at(w, A, "keep.txt"), 0640)) fail();
    push_as(w, 6);
}

static void test_gc_killed(void **state)
{
    /*
     * In gc's order (core/gc.c delete_all): checkpoints older than R, then
     * log/ <= R, then packs. At every point the oldest checkpoint left still
     * has its log after it, so verify and every walk go through.
     */
    static const char *const points[] = {
        "gc.before-deletes",    /* listed and walked, nothing deleted */
        "gc.checkpoint",        /* the same, at the first delete */
        "gc.checkpoint:2",      /* checkpoint 2 gone: checkpoint 3, log/1.. */
        "gc.after-checkpoints", /* checkpoints 2, 3 gone: checkpoint 4, log/1.. */
        "gc.log",               /* the same, at the first log delete */
        "gc.log:3",             /* log/1, 2 gone: checkpoint 4, log/3.. */
        "gc.after-logs",        /* log/1..4 gone: checkpoint 4, log/5.., every pack */
        "gc.pack:2",            /* in the middle of the pack deletes */
        "gc.pack:3",            /* before the last one */
    };
    world *w = *state;
    const retained k = {.r = 4, .h = 6, .gone = "gone.txt", .gone_last = 4};
    saved before;
    char **reference;
    gc_history(w);
    before = save_store(w);

    /* The reference: gc uninterrupted, with the same checks. */
    snprintf(g_step, sizeof g_step, "uninterrupted gc");
    if (gc_to_fixpoint(w, KEEP_LAST, 2) != k.r) failf("gc kept another R than %" PRIu64, k.r);
    reference = store_keys(w->url, NULL);
    expect_retained(w, &k);
    for (size_t i = 0; i < COUNT(points); i++) {
        snprintf(g_step, sizeof g_step, "gc killed at %s", points[i]);
        restore_store(w, &before);
        crash_at(w, points[i], ARGS("gc", "--keep-last", KEEP_LAST));
        expect_retained(w, &k);
        /* the second run does the rest; a third finds nothing */
        if (gc_to_fixpoint(w, KEEP_LAST, 2) != k.r) failf("gc again kept another R");
        expect_keys(w, reference);
        expect_retained(w, &k);
    }
    g_step[0] = '\0';
    keys_free(reference);
    saved_free(&before);
}

/* --- a checkpoint write killed ------------------------------------------------------ */

/* H = 3 and no checkpoint: gc writes checkpoints/3 first, and deletes on its next run. */
static void bare_history(world *w)
{
    join(w, A);
    write_random(at(w, A, "a.bin"), 200000);
    write_text(w, "gone.txt", "deleted at 2");
    push_as(w, 1);
    write_random(at(w, A, "a.bin"), 200000);
    rm_rf(at(w, A, "gone.txt"));
    push_as(w, 2);
    write_random(at(w, A, "b.bin"), 150000);
    push_as(w, 3);
}

static void test_checkpoint_killed(void **state)
{
    static const struct {
        const char *at;
        int by_gc; /* 1: gc's first checkpoint; 0: s3sync checkpoint */
    } points[] = {
        {"checkpoint.before-put", 1},
        {"checkpoint.after-put", 1},
        {"checkpoint.before-put", 0},
        {"checkpoint.after-put", 0},
    };
    world *w = *state;
    const retained all = {.r = 1, .h = 3, .gone = "gone.txt", .gone_last = 1};
    const retained last = {.r = 3, .h = 3}; /* gone.txt went before R: not kept */
    saved before;
    char **reference;
    bare_history(w);
    before = save_store(w);

    snprintf(g_step, sizeof g_step, "uninterrupted gc");
    if (gc_to_fixpoint(w, "1", 3) != 3) failf("gc kept another R than 3");
    reference = store_keys(w->url, NULL);
    expect_retained(w, &last);
    for (size_t i = 0; i < COUNT(points); i++) {
        int written = !strcmp(points[i].at, "checkpoint.after-put");
        snprintf(g_step, sizeof g_step, "%s killed at %s", points[i].by_gc ? "gc" : "checkpoint",
                 points[i].at);
        restore_store(w, &before);
        crash_at(w, points[i].at,
                 points[i].by_gc ? ARGS("gc", "--keep-last", "1") : ARGS("checkpoint"));
        expect_retained(w, &all); /* nothing was deleted: every state restores */
        if (!points[i].by_gc) {   /* the command again: writes it, or finds it written */
            json_t *j = ok_on(w, A, ARGS("checkpoint"));
            if (jint(j, "checkpoint") != 3 ||
                json_is_true(json_object_get(j, "existed")) != written)
                failf("checkpoint again: %s", json_dumps(j, 0));
            json_decref(j);
        }
        if (gc_to_fixpoint(w, "1", 3) != 3) failf("gc again kept another R");
        expect_keys(w, reference);
        expect_retained(w, &last);
    }
    g_step[0] = '\0';
    keys_free(reference);
    saved_free(&before);
}

/*
 * The automatic checkpoint a push writes after it committed (the rule, here
 * every transaction: S3SYNC_CHECKPOINT_TXNS=1), killed before and after its
 * create: the push is in the store and in A's state (a sync after it has
 * nothing to send), every state restores, verify passes, and `s3sync
 * checkpoint` writes the missing checkpoint or finds the one written.
 */
static void test_auto_checkpoint_killed(void **state)
{
    static const char *const points[] = {"checkpoint.before-put", "checkpoint.after-put"};
    world *w = *state;
    bare_history(w);
    for (size_t i = 0; i < COUNT(points); i++) {
        uint64_t seq = 4 + i;
        char env[64], text[32], snap[32];
        outcome o;
        snprintf(g_step, sizeof g_step, "a push's checkpoint killed at %s", points[i]);
        snprintf(text, sizeof text, "push %" PRIu64, seq);
        write_text(w, "auto.txt", text);
        snprintf(env, sizeof env, "S3SYNC_CRASH_AT=%s", points[i]);
        o = run_on(w, A, ARGS(env, "S3SYNC_CHECKPOINT_TXNS=1"), ARGS("sync"));
        if (o.sig != SIGKILL) failf("sync never reached %s (exit %d)", points[i], o.code);
        outcome_free(&o);
        g_kills++;
        snprintf(snap, sizeof snap, "at%" PRIu64, seq);
        snapshot(w->dev[A], at_dir(w->root, snap));
        json_t *j = ok_on(w, A, ARGS("sync"));
        if ((uint64_t)jint(j, "seq") != seq || jint(j, "files") || jint(j, "bytes_up"))
            failf("the killed push was not committed whole: %s", json_dumps(j, 0));
        json_decref(j);
        const retained k = {.r = 1, .h = seq};
        expect_retained(w, &k);
        j = ok_on(w, A, ARGS("checkpoint"));
        if ((uint64_t)jint(j, "checkpoint") != seq ||
            json_is_true(json_object_get(j, "existed")) != (int)i) /* after-put: it is there */
            failf("checkpoint after the kill: %s", json_dumps(j, 0));
        json_decref(j);
    }
    g_step[0] = '\0';
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_gc_killed),
        WORLD_TEST(test_checkpoint_killed),
        WORLD_TEST(test_auto_checkpoint_killed),
    };
    int failed;
    if (fixture_init("crashgc")) return 1;
    unsetenv(SS_CHECKPOINT_TXNS_ENV); /* the push rule at its defaults: never fires here */
    unsetenv(SS_CHECKPOINT_BYTES_ENV);
    failed = fixture_run_file_and_s3(tests, COUNT(tests));
    fprintf(stderr, "crash-gc: %u runs killed at a crash point, %u restores checked, %u gc runs\n",
            g_kills, g_restores, g_gc_runs);
    return failed | fixture_parts_end();
}
