/*
 * test-crash-apply: a pull killed inside apply's batches (core/local/fsio_batch.c,
 * core/engine/apply.c P3), end to end through the real binary (cli-fixture.h), on a
 * file:// store and, with RGW, on s3://.
 *
 * Owns the promise of issue 16's batched apply: files are written as temps,
 * made durable together, renamed, the renames made durable, then the
 * watermark commits; killed at any point of that, each file of the folder is
 * its old or its new version and the next pull converges without a conflict
 * copy or a temp file left behind. S3SYNC_FAULT=small-batches makes a batch
 * full at two files, so one transaction of a dozen files runs through
 * several batches and each point below is hit inside one, not only at its
 * edges:
 *   stage.file          a file's data fetched into .s3sync/tmp (engine/stage.c),
 *                       others not yet: the next command removes the stage;
 *   apply.staged        a temp written (on the batch's writer thread, while
 *                       the walk stages the next), its batch not yet synced;
 *   apply.batch-synced  the batch's temps durable, nothing renamed yet;
 *   apply.after-rename  some of the batch renamed, not all;
 *   apply.batch-renamed a batch renamed, the renames not yet synced (the
 *                       next batch being written, the watermark not moved).
 * Each run must die by SIGKILL there: a point that moved or vanished fails
 * the test instead of passing while proving nothing. test-sync's crash
 * table keeps the points of a whole transaction (pull.op, apply.before-rename
 * and so on) at the default batch size.
 */
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

#define NFILES 12

/* Round i on A: every file rewritten (small ones inline, a few chunked), one added, one gone. */
static void change_round(const world *w, int i)
{
    char p[64];
    for (int k = 0; k < NFILES; k++) {
        snprintf(p, sizeof p, "d%d/f%02d", k % 3, k);
        write_random(at(w, A, p), k % 4 == 0 ? 200000 + (size_t)i : 100 + (size_t)(k * 37 + i));
    }
    snprintf(p, sizeof p, "new/r%d", i);
    write_random(at(w, A, p), 3000);
    snprintf(p, sizeof p, "new/r%d", i - 1);
    unlink(at(w, A, p));
}

static void crash_at(world *w, const char *point, int small, int i)
{
    static const char *const small_env = "S3SYNC_FAULT=small-batches";
    char snap[200], env[80];
    const char *trees[2];
    const char *const args[] = {env, small ? small_env : NULL, NULL};
    json_t *j;
    outcome o;
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    trees[0] = snap;
    trees[1] = w->dev[A];
    snprintf(g_step, sizeof g_step, "pull killed at %s%s", point, small ? ", batches of 2" : "");
    snprintf(env, sizeof env, "S3SYNC_CRASH_AT=%s", point);
    change_round(w, i);
    ok(w, A, "push");
    snapshot(w->dev[B], snap);
    o = run_cmd(w, B, args, "pull");
    if (o.sig != SIGKILL) failf("not killed: exit %d, stderr: %s", o.code, o.err);
    outcome_free(&o);
    if (walk(w->dev[B], "", old_or_new, trees)) failf("a partial file is visible");
    if (!strncmp(point, "stage.", 6) && !staged_files(w->dev[B])) failf("nothing was staged");
    /* Run again without the crash: converges, and our own writes are no conflicts. */
    j = ok_json(w, B, "pull");
    if (json_array_size(json_object_get(j, "conflicts"))) failf("conflict after the crash");
    json_decref(j);
    ok(w, B, "sync"); /* its scan removes the temps a kill left */
    ok(w, A, "sync");
    expect_converged(w);
    expect_no_leftovers(w);
    rm_rf(snap);
}

static void test_crash_in_batches(void **state)
{
    static const struct {
        const char *at;
        int small; /* batches of two files (S3SYNC_FAULT=small-batches) */
    } points[] = {
        {"apply.staged:1", 1},       {"apply.staged:3", 1},        {"apply.staged:7", 1},
        {"apply.batch-synced:1", 1}, {"apply.batch-synced:3", 1},  {"apply.after-rename:1", 1},
        {"apply.after-rename:4", 1}, {"apply.batch-renamed:1", 1}, {"apply.batch-renamed:4", 1},
        {"apply.staged:5", 0},       {"apply.batch-synced:1", 0},  {"apply.batch-renamed:1", 0},
        {"stage.file:1", 0},         {"stage.file:2", 1},
    };
    world *w = *state;
    join(w, A);
    join(w, B);
    change_round(w, 0);
    ok(w, A, "sync");
    ok(w, B, "sync");
    for (size_t i = 0; i < COUNT(points); i++)
        crash_at(w, points[i].at, points[i].small, (int)i + 1);
    g_step[0] = '\0';
}

/*
 * Batches of two across a transaction that edits, adds and deletes: the
 * folder ends equal to A's, with every file recorded (an idle sync after).
 */
static void test_small_batches(void **state)
{
    static const char *const small[] = {"S3SYNC_FAULT=small-batches", NULL};
    world *w = *state;
    outcome o;
    join(w, A);
    join(w, B);
    for (int i = 0; i < 3; i++) {
        change_round(w, i);
        ok(w, A, "push");
        o = run_cmd(w, B, small, "pull");
        expect_exit(&o, 0, "pull in batches of two");
        outcome_free(&o);
        expect_same_tree(w->dev[A], w->dev[B]);
        expect_idle_sync(w, B);
    }
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_small_batches),
        WORLD_TEST(test_crash_in_batches),
    };
    if (fixture_init("crashapply")) return 1;
    return fixture_run_file_and_s3(tests, COUNT(tests));
}
