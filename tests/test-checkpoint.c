/*
 * test-checkpoint: checkpoints and gc end to end, through the real binary
 * (cli-fixture.h), on the file:// store and, when AWS_ENDPOINT_URL and
 * S3SYNC_TEST_BUCKET are set (ci/test.sh), on s3:// (RGW) under a fresh
 * prefix per scenario.
 *
 * Owns: a checkpoint is written (once per state) and verified, and by the
 * push rule; a joining device fetches only what follows the newest
 * checkpoint; restore by time between two transactions with a checkpoint
 * between; gc --dry-run deletes nothing and lists keys and bytes; gc keeps
 * every state from the retained checkpoint on (a file deleted after it is
 * restored); verify names a corrupted checkpoint and a corrupted pack; a
 * device behind a gc re-bases (its local change becomes a conflict copy);
 * a rollback is still refused; gc running while two devices push, then
 * every retained version restored; gc of 1014 dead packs in 2 DELETE
 * requests on s3:// (DeleteObjects), counted in its --json.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include <sqlite3.h>

#include "cli-fixture.h"
#include "format.h"
#include "path.h"
#include "s3store.h"
#include "s3sync.h"

/* state.db orders paths with ss_path_cmp: a connection needs the collation. */
static int path_collate(void *arg, int alen, const void *a, int blen, const void *b)
{
    (void)arg;
    return ss_path_cmp(a, (size_t)alen, b, (size_t)blen);
}

/* The command fails with code and names key on stderr. */
static void expect_bad_on(const world *w, int d, const char *const *args, int code, const char *key)
{
    outcome o = run_on(w, d, NULL, args);
    expect_exit(&o, code, args[0]);
    if (!strstr(o.err, key)) failf("%s does not name %s: %s", args[0], key, o.err);
    outcome_free(&o);
}

static uint64_t push(const world *w, int d)
{
    json_t *j = ok_json(w, d, "sync");
    uint64_t seq = (uint64_t)jint(j, "seq");
    json_decref(j);
    return seq;
}

static void write_text(const world *w, int d, const char *rel, const char *text)
{
    write_bytes(at(w, d, rel), text, strlen(text));
}

/* init (join) device d; its --json requests. */
static int64_t join_counted(world *w, int d)
{
    char name[2] = {(char)('A' + d), 0};
    outcome o = run_cli(NULL, ARGS("--json", "--device", name, "init", w->url, w->dev[d]));
    int64_t n;
    expect_exit(&o, 0, "init");
    n = jint(o.json, "requests");
    outcome_free(&o);
    if (w->n < d + 1) w->n = d + 1;
    return n;
}

static int has_key(ss_store *s, const char *key)
{
    ss_store_stat st;
    return !ss_store_head(s, key, &st, NULL);
}

static const char *cp_key(uint64_t seq)
{
    static char k[SS_KEY_NAME_MAX];
    snprintf(k, sizeof k, SS_KEY_CHECKPOINT_FMT, seq);
    return k;
}

/* --- checkpoint, join ---------------------------------------------------------------- */

/* Transactions from..to on device d, pushed in-process (a CLI run each would take minutes). */
static void push_many(const world *w, int d, unsigned long from, unsigned long to)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    if (ss_folder_open(w->dev[d], NULL, NULL, &f, &err)) failf("open: %s", err.msg);
    for (unsigned long i = from; i <= to; i++) {
        char rel[32], text[48];
        snprintf(rel, sizeof rel, "f%lu.txt", i % 10);
        snprintf(text, sizeof text, "transaction %lu", i);
        write_bytes(at(w, d, rel), text, strlen(text));
        ss_stats_clear(&st);
        if (ss_push(f, &st, &err) || st.seq != i)
            failf("push %lu: seq %" PRIu64 ": %s", i, st.seq, err.msg);
    }
    ss_stats_clear(&st);
    ss_folder_free(f);
}

/*
 * A repository with 10,000 transactions (1,000 unless S3SYNC_TEST_BIG=1,
 * as the ASan run does not set it) and a checkpoint 10 before the head: a
 * device joining fetches the checkpoint and the 10 after it, not the log
 * from log/1 (on file://, in tmpfs when there is one: the request count does
 * not depend on the store, and 10,000 PUTs to RGW take minutes).
 */
static void test_join_long_history(void **state)
{
    world *w = *state;
    unsigned long n = getenv("S3SYNC_TEST_BIG") ? 10000 : 1000;
    join(w, A);
    push_many(w, A, 1, n);
    json_t *j = ok_on(w, A, ARGS("checkpoint"));
    if (jint(j, "checkpoint") != (int64_t)n) failf("checkpoint: %s", json_dumps(j, 0));
    json_decref(j);
    push_many(w, A, n + 1, n + 10);
    int64_t requests = join_counted(w, B);
    expect_same_tree(w->dev[A], w->dev[B]);
    /* config, key list and key file, create-only probe (3), LIST checkpoints/, GET one, LIST log/
     * after it, its 10 successors: 19, whatever the history's length */
    if (requests > 19)
        failf("joining %lu transactions after a checkpoint made %" PRId64 " requests", n + 10,
              requests);
    fprintf(stderr,
            "cp: a join of %lu transactions, the last 10 after a checkpoint: %" PRId64
            " requests\n",
            n + 10, requests);
}

static void test_checkpoint_join(void **state)
{
    world *w = *state;
    ss_store *s = world_store(w);
    enum { N = 20 };
    int64_t full, from_cp;
    json_t *j;
    join(w, A);
    for (int i = 1; i <= N; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        write_text(w, A, "f.txt", v);
        if (i == 1) write_random(at(w, A, "big.bin"), 300000);
        assert_int_equal(push(w, A), i);
    }
    full = join_counted(w, C); /* no checkpoint yet: log/1..N */

    j = ok_on(w, A, ARGS("checkpoint"));
    if (jint(j, "checkpoint") != N || json_is_true(json_object_get(j, "existed")) ||
        jint(j, "paths") != 2)
        failf("checkpoint: %s", json_dumps(j, 0));
    json_decref(j);
    if (!has_key(s, cp_key(N))) failf("%s was not written", cp_key(N));
    j = ok_on(w, C, ARGS("checkpoint")); /* the same state from another device */
    if (jint(j, "checkpoint") != N || !json_is_true(json_object_get(j, "existed")))
        failf("a second checkpoint of the same state: %s", json_dumps(j, 0));
    json_decref(j);

    write_text(w, A, "g.txt", "after");
    push(w, A);
    write_text(w, A, "f.txt", "last");
    push(w, A);
    from_cp = join_counted(w, B);
    expect_same_tree(w->dev[A], w->dev[B]);
    /* checkpoint + 2 log objects instead of 20: the difference is what a checkpoint saves */
    if (from_cp + N - 6 > full)
        failf("join from a checkpoint made %" PRId64 " requests, from log/1 %" PRId64, from_cp,
              full);

    j = ok_on(w, B, ARGS("verify", "--data"));
    if (jint(j, "checked_checkpoints") != 1 || jint(j, "checked_logs") != N + 2 ||
        json_array_size(json_object_get(j, "problems")))
        failf("verify: %s", json_dumps(j, 0));
    json_decref(j);

    /* A checkpoint of a state that is not the log's (a device's state.db gone wrong). */
    {
        char db[300], key[SS_KEY_NAME_MAX];
        sqlite3 *h = NULL;
        uint64_t seq;
        /* C writes the change, so it has signed something: a checkpoint's writer is enrolled. */
        write_text(w, C, "f.txt", "for the bad checkpoint");
        seq = push(w, C);
        snprintf(db, sizeof db, "%s/.s3sync/state.db", w->dev[C]);
        assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
        sqlite3_create_collation(h, "ss_path", SQLITE_UTF8, NULL, path_collate);
        assert_int_equal(sqlite3_exec(h,
                                      "UPDATE files SET mtime_s = mtime_s + 1 WHERE path = 'g.txt'",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(h);
        json_decref(ok_on(w, C, ARGS("checkpoint")));
        snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
        expect_bad_on(w, B, ARGS("verify"), 3, key);
        assert_int_equal(ss_store_delete(s, key, NULL), SS_OK);
    }

    /* The push rule (here every 3 transactions): N + 4 is 3 past checkpoints/N + 1 (deleted: so N),
     * N + 7 past N + 4. */
    for (int i = 0; i < 4; i++) {
        char v[16];
        snprintf(v, sizeof v, "auto%d", i);
        write_text(w, A, "f.txt", v);
        outcome o = run_cmd(w, A, ARGS("S3SYNC_CHECKPOINT_TXNS=3"), "sync");
        expect_exit(&o, 0, "sync with the checkpoint rule");
        outcome_free(&o);
        if (has_key(s, cp_key(N + 4 + (uint64_t)i)) != (i == 0 || i == 3))
            failf("after push %d: %s %s", i, cp_key(N + 4 + (uint64_t)i),
                  i == 0 || i == 3 ? "missing" : "written too early");
    }
    ss_store_free(s);
}

/*
 * The byte rule does not count log/1 (issue 16): checkpoints/1 would hold
 * what log/1 holds, and for a first push of a big folder it doubled the
 * upload. The push after it counts its own log object as always.
 */
static void test_checkpoint_bytes_skip_first(void **state)
{
    world *w = *state;
    ss_store *s = world_store(w);
    join(w, A);
    for (int round = 1; round <= 2; round++) {
        for (int i = 0; i < 10; i++) { /* ten inline files: a log object well over 1000 bytes */
            char name[32];
            snprintf(name, sizeof name, "r%d-%d.bin", round, i);
            write_random(at(w, A, name), 300);
        }
        outcome o = run_cmd(w, A, ARGS("S3SYNC_CHECKPOINT_BYTES=1000"), "push");
        expect_exit(&o, 0, "push with a 1000-byte checkpoint rule");
        if (jint(o.json, "seq") != round)
            failf("push %d made seq %lld", round, (long long)jint(o.json, "seq"));
        outcome_free(&o);
        if (has_key(s, cp_key(1))) failf("%s written: it repeats log/1", cp_key(1));
        if (has_key(s, cp_key(2)) != (round == 2))
            failf("after push %d: %s %s", round, cp_key(2), round == 2 ? "missing" : "there");
    }
    ss_store_free(s);
}

/* --- restore by time across a checkpoint ---------------------------------------------- */

static void test_restore_time(void **state)
{
    world *w = *state;
    char when[32], content[64];
    json_t *j;
    join(w, A);
    write_text(w, A, "f.txt", "one");
    push(w, A);
    json_decref(ok_on(w, A, ARGS("checkpoint"))); /* checkpoints/1, written before T */
    sleep(2);
    snprintf(when, sizeof when, "@%lld", (long long)time(NULL));
    sleep(2);
    write_text(w, A, "f.txt", "two");
    push(w, A);
    json_decref(ok_on(w, A, ARGS("checkpoint"))); /* checkpoints/2, written after T */
    write_text(w, A, "f.txt", "three");
    push(w, A);
    j = ok_on(w, A, ARGS("restore", "f.txt", "--at", when, "--to", at_dir(w->root, "t.txt")));
    if (jint(j, "seq") != 1) failf("restore at %s: %s", when, json_dumps(j, 0));
    json_decref(j);
    expect_content(at_dir(w->root, "t.txt"), "one");
    j = ok_on(w, A, ARGS("restore", "f.txt", "--at", "2", "--to", at_dir(w->root, "s.txt")));
    json_decref(j);
    expect_content(at_dir(w->root, "s.txt"), "two");
    snprintf(content, sizeof content, "%s", "three");
    expect_content(at(w, A, "f.txt"), content);
}

/* --- gc --------------------------------------------------------------------------------- */

static void flip_key(ss_store *s, const char *key, void **orig, size_t *len)
{
    ss_err err = {{0}};
    uint8_t *bad;
    if (ss_store_get(s, key, 0, SS_TO_END, orig, len, &err)) failf("get %s: %s", key, err.msg);
    bad = malloc(*len);
    assert_non_null(bad);
    memcpy(bad, *orig, *len);
    bad[*len / 2] ^= 0x10;
    if (ss_store_put(s, key, bad, *len, 0, &err)) failf("put %s: %s", key, err.msg);
    free(bad);
}

static void put_back(ss_store *s, const char *key, void *orig, size_t len)
{
    ss_err err = {{0}};
    if (ss_store_put(s, key, orig, len, 0, &err)) failf("put %s: %s", key, err.msg);
    free(orig);
}

/* gc --dry-run: names every key with its listed size, deletes nothing. */
static void dry_run(const world *w)
{
    listing before = store_listing(w->url, ""), after;
    json_t *j = ok_on(w, A, ARGS("gc", "--keep-last", "1", "--dry-run")), *e;
    int64_t sum = 0;
    size_t i;
    if (!json_array_size(json_object_get(j, "deleted"))) failf("dry run: %s", json_dumps(j, 0));
    json_array_foreach(json_object_get(j, "deleted"), i, e)
    {
        const char *key = json_string_value(json_object_get(e, "key"));
        size_t k = 0;
        while (k < before.n && strcmp(before.v[k], key))
            k++;
        if (k == before.n || (int64_t)before.size[k] != jint(e, "bytes"))
            failf("dry run lists %s (%" PRId64 " bytes), the store does not", key,
                  jint(e, "bytes"));
        sum += jint(e, "bytes");
    }
    if (sum != jint(j, "deleted_bytes")) failf("dry run: bytes do not add up");
    after = store_listing(w->url, "");
    if (after.n != before.n) failf("dry run deleted %zu objects", before.n - after.n);
    json_decref(j);
    listing_free(&before);
    listing_free(&after);
}

static void test_gc(void **state)
{
    world *w = *state;
    ss_store *s = world_store(w);
    listing logs, data;
    void *orig;
    size_t len;
    uint64_t head, wm;
    char logkey[SS_KEY_NAME_MAX];
    json_t *j;
    join(w, A);
    write_text(w, A, "s.txt", "shared");
    write_text(w, A, "keep.txt", "keep me");
    for (int i = 0; i < 4; i++) { /* a file rewritten: its old packs are what gc frees */
        write_random(at(w, A, "big.bin"), 200000);
        push(w, A);
    }
    join(w, B); /* B falls behind from here, with a local change to a file A changes too */
    write_text(w, B, "s.txt", "changed on B");
    write_text(w, A, "s.txt", "changed on A");
    write_random(at(w, A, "big.bin"), 200000);
    head = push(w, A);
    json_decref(ok_on(w, A, ARGS("checkpoint")));
    j = ok_on(w, A, ARGS("gc", "--keep-days", "1")); /* the checkpoint is too young */
    if (jint(j, "retained") || jint(j, "deleted_objects")) failf("gc: %s", json_dumps(j, 0));
    json_decref(j);
    dry_run(w);

    /* log/1..head-1 and four dead packs; log/<head> stays: it vouches for checkpoints/<head> */
    j = ok_on(w, A, ARGS("gc", "--keep-last", "1"));
    if (jint(j, "retained") != (int64_t)head || jint(j, "deleted_objects") < (int64_t)head + 3)
        failf("gc: %s", json_dumps(j, 0));
    json_decref(j);
    logs = store_listing(w->url, SS_KEY_LOG_PREFIX);
    data = store_listing(w->url, SS_KEY_DATA_PREFIX);
    snprintf(logkey, sizeof logkey, SS_KEY_LOG_FMT, head);
    if (logs.n != 1 || !has_key(s, logkey) || data.n != 1)
        failf("after gc: %zu log objects, %zu packs", logs.n, data.n);
    listing_free(&logs);
    listing_free(&data);
    json_decref(ok_on(w, A, ARGS("verify", "--data")));
    expect_bad_on(w, A, ARGS("restore", "s.txt", "--at", "1"), 1, "no longer kept");
    expect_bad_on(w, A, ARGS("restore", "s.txt", "--at", "@1000000000"), 1, "no longer kept");

    /* A file deleted after the retained checkpoint comes back. */
    remove(at(w, A, "keep.txt"));
    push(w, A);
    j = ok_on(w, A, ARGS("restore", "keep.txt"));
    if (jint(j, "seq") != (int64_t)head) failf("restore of a deleted file: %s", json_dumps(j, 0));
    expect_content(at(w, A, json_string_value(json_object_get(j, "dest"))), "keep me");
    json_decref(j);

    /* B, behind the gc, re-bases: its local change is kept as a conflict copy. */
    j = ok_json(w, B, "sync");
    if (json_array_size(json_object_get(j, "conflicts")) != 1)
        failf("re-base: %s", json_dumps(j, 0));
    json_decref(j);
    json_decref(ok_json(w, A, "sync"));
    json_decref(ok_json(w, B, "sync"));
    expect_converged(w);
    if (count_in(w->dev[A], count_content, "changed on B") != 1) failf("B's change was lost");

    /* verify names a corrupted checkpoint and a corrupted pack. */
    flip_key(s, cp_key(head), &orig, &len);
    expect_bad_on(w, A, ARGS("verify"), 3, cp_key(head));
    put_back(s, cp_key(head), orig, len);
    data = store_listing(w->url, SS_KEY_DATA_PREFIX);
    flip_key(s, data.v[0], &orig, &len);
    expect_bad_on(w, A, ARGS("verify", "--data"), 3, data.v[0]);
    put_back(s, data.v[0], orig, len);
    listing_free(&data);
    json_decref(ok_on(w, A, ARGS("verify", "--data")));

    /* A rollback is still refused: log/<watermark> gone and no checkpoint at or after it. */
    j = ok_json(w, A, "sync");
    wm = (uint64_t)jint(j, "seq");
    json_decref(j);
    snprintf(logkey, sizeof logkey, SS_KEY_LOG_FMT, wm);
    {
        ss_err err = {{0}};
        if (ss_store_get(s, logkey, 0, SS_TO_END, &orig, &len, &err)) failf("get: %s", err.msg);
        assert_int_equal(ss_store_delete(s, logkey, &err), SS_OK);
        expect_bad_on(w, A, ARGS("pull"), 3, logkey);
        put_back(s, logkey, orig, len);
    }
    ss_store_free(s);
}

/* A chunk no state row references is uploaded again, not referenced: gc may have freed it. */
static void test_gc_reuse(void **state)
{
    world *w = *state;
    json_t *j;
    join(w, A);
    write_random(at(w, A, "big.bin"), 300000);
    snapshot(at(w, A, "big.bin"), at_dir(w->root, "big.copy"));
    push(w, A);
    remove(at(w, A, "big.bin"));
    push(w, A);
    json_decref(ok_on(w, A, ARGS("checkpoint")));
    sleep(1); /* --keep-days 0: the newest checkpoint written before now */
    j = ok_on(w, A, ARGS("gc", "--keep-days", "0"));
    if (jint(j, "deleted_objects") != 2) failf("gc: %s", json_dumps(j, 0)); /* log/1, the pack */
    json_decref(j);
    snapshot(at_dir(w->root, "big.copy"), at(w, A, "big.bin"));
    j = ok_json(w, A, "sync");
    if (jint(j, "bytes_up") < 300000) failf("the old chunks were referenced: %s", json_dumps(j, 0));
    json_decref(j);
    join(w, B);
    expect_same_tree(w->dev[A], w->dev[B]);
    json_decref(ok_on(w, B, ARGS("verify", "--data")));
}

/*
 * gc of 1014 dead packs (a push's leftovers, put straight into the store)
 * counted in requests: 2 DeleteObjects on s3://, not 1014 DELETEs; on
 * file:// each key is an unlink. First gc writes checkpoints/1; the second
 * deletes nothing: log/1 is the newest log object, which vouches for the
 * checkpoint at the head (FORMAT.md "A checkpoint at the head"); so the
 * third deletes packs and nothing else.
 */
static void test_gc_batched(void **state)
{
    enum { N = 1014 };
    world *w = *state;
    ss_store *s = world_store(w);
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    static char keys[N][SS_KEY_NAME_MAX];
    json_t *j, *by;
    int s3 = !strncmp(w->url, "s3://", 5);
    join(w, A);
    write_text(w, A, "f.txt", "one");
    push(w, A);
    json_decref(ok_on(w, A, ARGS("gc", "--keep-last", "1"))); /* writes checkpoints/1 */
    j = ok_on(w, A, ARGS("gc", "--keep-last", "1"));
    if (jint(j, "deleted_objects") != 0) failf("gc: %s", json_dumps(j, 0)); /* log/1 stays */
    json_decref(j);
    if (ss_xfer_new(s, &x, &err)) failf("%s", err.msg);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "%s%020d-%016x", SS_KEY_DATA_PREFIX, 1, 0xdead0000u + i);
        if (ss_xfer_put(x, keys[i], "dead", 4, 0, NULL, NULL)) failf("put %s", keys[i]);
    }
    if (ss_xfer_wait(x, &err)) failf("%s", err.msg);
    ss_xfer_free(x);
    j = ok_on(w, A, ARGS("gc", "--keep-last", "1"));
    by = json_object_get(j, "requests_by_class");
    if (jint(j, "deleted_objects") != N ||
        json_integer_value(json_object_get(by, "delete")) != (s3 ? 2 : N))
        failf("gc of %d packs: %s", N, json_dumps(j, 0));
    json_decref(j);
    for (int i = 0; i < N; i += 97)
        if (has_key(s, keys[i])) failf("%s is still there", keys[i]);
    json_decref(ok_on(w, A, ARGS("verify", "--data")));
    ss_store_free(s);
}

/* --- gc while two devices push ---------------------------------------------------------- */

/* dest/name, restored, is byte for byte one of the versions the test wrote (PREFIX0..3). */
static void expect_a_version(const world *w, const char *dest, const char *name, const char *prefix)
{
    char rel[96], v[32];
    struct stat st;
    snprintf(rel, sizeof rel, "%s/%s", dest, name);
    if (lstat(at_dir(w->root, rel), &st)) return; /* not written yet at that sequence */
    for (int round = 0; round < 4; round++) {
        snprintf(v, sizeof v, "%s%d", prefix, round);
        if (same_content(at_dir(w->root, rel), at_dir(w->root, v))) return;
    }
    failf("restored %s is no version that was written", rel);
}

static void test_gc_concurrent(void **state)
{
    world *w = *state;
    static const char *const env[] = {"S3SYNC_CHECKPOINT_TXNS=2", NULL};
    ss_store *s = world_store(w);
    listing cps;
    uint64_t first, head;
    int64_t deleted = 0;
    json_t *j;
    join(w, A);
    join(w, B);
    join(w, C);
    for (int round = 0; round < 4; round++) {
        child c[3];
        char kept[32];
        write_random(at(w, A, "a.bin"), 150000);
        write_random(at(w, B, "b.bin"), 150000);
        snprintf(kept, sizeof kept, "wrote-a%d", round); /* every version, to compare restores */
        snapshot(at(w, A, "a.bin"), at_dir(w->root, kept));
        snprintf(kept, sizeof kept, "wrote-b%d", round);
        snapshot(at(w, B, "b.bin"), at_dir(w->root, kept));
        c[0] = start_cmd(w, A, env, "sync");
        c[1] = start_cmd(w, B, env, "sync");
        c[2] = start_cli(NULL, ARGS("-C", w->dev[C], "--json", "gc", "--keep-last", "2"));
        for (int i = 0; i < 3; i++) {
            outcome o = finish(c[i]);
            snprintf(g_step, sizeof g_step, "round %d", round);
            expect_exit(&o, 0, i < 2 ? "sync while gc runs" : "gc while devices push");
            if (i == 2) deleted += jint(o.json, "deleted_objects");
            outcome_free(&o);
        }
    }
    g_step[0] = '\0';
    if (!deleted) failf("gc deleted nothing in 4 rounds: the test would prove nothing");
    json_decref(ok_json(w, A, "sync"));
    json_decref(ok_json(w, B, "sync"));
    json_decref(ok_json(w, C, "sync"));
    expect_converged(w);
    json_decref(ok_on(w, C, ARGS("verify", "--data")));

    /* Every retained version, from the oldest checkpoint to the head, restores. */
    cps = store_listing(w->url, SS_KEY_CHECKPOINTS_PREFIX);
    if (!cps.n) failf("no checkpoint after gc ran");
    first = strtoull(cps.v[0] + strlen(SS_KEY_CHECKPOINTS_PREFIX), NULL, 10);
    j = ok_json(w, C, "sync");
    head = (uint64_t)jint(j, "seq");
    json_decref(j);
    for (uint64_t seq = first; seq <= head; seq++) {
        char at_seq[24], dest[64];
        snprintf(at_seq, sizeof at_seq, "%" PRIu64, seq);
        snprintf(dest, sizeof dest, "v%" PRIu64, seq);
        snprintf(g_step, sizeof g_step, "restore at %" PRIu64 " of %" PRIu64 "..%" PRIu64, seq,
                 first, head);
        json_decref(
            ok_on(w, C, ARGS("restore", ".", "--at", at_seq, "--to", at_dir(w->root, dest))));
        expect_a_version(w, dest, "a.bin", "wrote-a");
        expect_a_version(w, dest, "b.bin", "wrote-b");
    }
    g_step[0] = '\0';
    { /* and the head's is the folder as it is */
        char dest[64];
        snprintf(dest, sizeof dest, "v%" PRIu64, head);
        for (int i = 0; i < 2; i++) {
            const char *name = i ? "b.bin" : "a.bin";
            char rel[96];
            snprintf(rel, sizeof rel, "%s/%s", dest, name);
            if (!same_content(at_dir(w->root, rel), at(w, C, name)))
                failf("restore at the head: %s is not the folder's", name);
        }
    }
    listing_free(&cps);
    ss_store_free(s);
}

static void test_bad_arguments(void **state)
{
    const char *const *bad[] = {
        ARGS("gc", "--keep-days", "1", "--keep-last", "1"),
        ARGS("gc", "--keep-last", "0"),
        ARGS("gc", "--keep-last", "x"),
        ARGS("gc", "extra"),
        ARGS("checkpoint", "extra"),
        ARGS("log", "--dry-run"),
        ARGS("push", "--keep-last", "1"),
    };
    (void)state;
    for (size_t i = 0; i < COUNT(bad); i++) {
        outcome o = run_cli(NULL, bad[i]);
        snprintf(g_step, sizeof g_step, "bad arguments #%zu", i);
        expect_exit(&o, 2, "bad arguments");
        if (!strstr(o.err, "usage:")) failf("no usage: %s", o.err);
        outcome_free(&o);
    }
    g_step[0] = '\0';
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_close)

/* A file:// world in /dev/shm when it is a writable tmpfs (fsync is free there). */
static int world_in_tmpfs(void **state)
{
    const char *was = getenv("TMPDIR");
    char *saved = was ? strdup(was) : NULL;
    int rc;
    if (!access("/dev/shm", W_OK)) setenv("TMPDIR", "/dev/shm", 1);
    rc = world_open(state);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_checkpoint_join), WORLD_TEST(test_checkpoint_bytes_skip_first),
        WORLD_TEST(test_restore_time),    WORLD_TEST(test_gc),
        WORLD_TEST(test_gc_reuse),        WORLD_TEST(test_gc_batched),
        WORLD_TEST(test_gc_concurrent),   cmocka_unit_test(test_bad_arguments),
    };
    const struct CMUnitTest long_history[] = {
        cmocka_unit_test_setup_teardown(test_join_long_history, world_in_tmpfs, world_close),
    };
    if (fixture_init("cp")) return 1;
    unsetenv(SS_CHECKPOINT_TXNS_ENV); /* the push rule at its default unless a test sets it */
    unsetenv(SS_CHECKPOINT_BYTES_ENV);
    int failed = fixture_run_file_and_s3(tests, COUNT(tests));
    fixture_use_s3(0);
    if (fixture_part("long-history"))
        failed |= cmocka_run_group_tests_name("cp/long-history", long_history, NULL, NULL);
    return failed | fixture_parts_end();
}
