/*
 * test-history: s3sync log, verify and restore end to end, through the real
 * binary (cli-fixture.h), on the file:// store and, when AWS_ENDPOINT_URL
 * and S3SYNC_TEST_BUCKET are set (ci/test.sh), on s3:// (RGW) under a fresh
 * prefix per scenario, as test-sync does.
 *
 * Owns: log lists what was pushed, newest first, by which device, with its
 * counts, and filters by path; verify passes on a good repository and names
 * a corrupted data object and a corrupted log object (exit 3); restore brings
 * back a deleted file, a version between two edits (by sequence and by
 * time), a directory to --to DEST, and never overwrites anything.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cli-fixture.h"
#include "format.h"
#include "s3store.h"

static int g_s3; /* the group running: 0 file://, 1 s3:// */
static const char *g_bucket;
static char g_tag[13];    /* random, so runs never share s3 prefixes */
static unsigned g_worlds; /* worlds made so far: each gets its own prefix */

/* --- worlds (as test-sync's) ----------------------------------------------------------- */

static int world_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    world *w = calloc(1, sizeof *w);
    if (!w) return -1;
    snprintf(w->root, sizeof w->root, "%s/ss-hist-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(w->root)) return -1;
    if (g_s3)
        snprintf(w->url, sizeof w->url, "s3://%s/hist-%s-%u", g_bucket, g_tag, ++g_worlds);
    else
        snprintf(w->url, sizeof w->url, "file://%s/store", w->root);
    for (int d = 0; d < MAX_DEV; d++)
        snprintf(w->dev[d], sizeof w->dev[d], "%s/%c", w->root, 'A' + d);
    g_step[0] = '\0';
    *state = w;
    return 0;
}

typedef struct keys {
    char **v;
    size_t n;
} keys;

static int collect_key(void *ctx, const char *key, const ss_store_stat *st)
{
    keys *k = ctx;
    char **nv = realloc(k->v, (k->n + 1) * sizeof *nv);
    (void)st;
    if (!nv || !(nv[k->n] = strdup(key))) return 1;
    k->v = nv;
    k->n++;
    return 0;
}

static void free_keys(keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
    memset(k, 0, sizeof *k);
}

static int world_teardown(void **state)
{
    world *w = *state;
    ss_store *s = NULL;
    keys k = {0};
    if (g_s3 && !ss_store_open(w->url, NULL, &s, NULL)) { /* leave the bucket as it was */
        ss_store_list(s, "", NULL, collect_key, &k, NULL);
        for (size_t i = 0; i < k.n; i++)
            ss_store_delete(s, k.v[i], NULL);
    }
    free_keys(&k);
    ss_store_free(s);
    rm_rf(w->root);
    free(w);
    return 0;
}

/* --- running the history commands ------------------------------------------------------- */

/* s3sync -C DEV --json ARGS... */
static outcome on(const world *w, int d, const char *const *args)
{
    const char *argv[20] = {"-C", w->dev[d], "--json"};
    size_t n = 3;
    for (size_t i = 0; args[i]; i++) {
        assert_true(n + 1 < COUNT(argv));
        argv[n++] = args[i];
    }
    return run_cli(NULL, argv);
}

/* The command must succeed; its --json (the caller decrefs). */
static json_t *on_ok(const world *w, int d, const char *const *args)
{
    outcome o = on(w, d, args);
    json_t *j;
    expect_exit(&o, 0, args[0]);
    if (!json_is_object(o.json)) failf("%s: stdout is not JSON: %s", args[0], o.out);
    j = json_incref(o.json);
    outcome_free(&o);
    return j;
}

static uint64_t push(const world *w, int d)
{
    json_t *j = ok_json(w, d, "sync");
    uint64_t seq = (uint64_t)jint(j, "seq");
    json_decref(j);
    return seq;
}

/* The sequences a log --json lists, in its order, as "3 2 1". */
static void log_seqs(const json_t *j, char *buf, size_t cap)
{
    const json_t *t;
    size_t i, n = 0;
    buf[0] = '\0';
    json_array_foreach(json_object_get(j, "transactions"), i, t) n +=
        (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? " " : "", jint(t, "seq"));
}

static void expect_log(const world *w, int d, const char *path, const char *seqs)
{
    char got[256];
    json_t *j = on_ok(w, d, path ? ARGS("log", path) : ARGS("log"));
    log_seqs(j, got, sizeof got);
    if (strcmp(got, seqs))
        failf("log %s: sequences \"%s\", expected \"%s\"", path ? path : "", got, seqs);
    json_decref(j);
}

/* --- log --------------------------------------------------------------------------------- */

static void test_log(void **state)
{
    static const struct {
        uint64_t seq;
        const char *device;
        int64_t upserts, deletes, bytes;
    } want[] = {
        {3, "A", 1, 0, 5000},       /* d/y */
        {2, "B", 1, 1, 9},          /* a.txt edited, d/x deleted */
        {1, "A", 3, 0, 5 + 300000}, /* a.txt, d, d/x */
    };
    world *w = *state;
    const json_t *t;
    json_t *j;
    size_t i;
    outcome o;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "a.txt"), "hello", 5);
    write_random(at(w, A, "d/x"), 300000);
    push(w, A);
    ok(w, B, "sync");
    write_bytes(at(w, B, "a.txt"), "hello, B!", 9);
    rm_rf(at(w, B, "d/x"));
    push(w, B);
    ok(w, A, "sync");
    write_random(at(w, A, "d/y"), 5000);
    push(w, A);

    j = on_ok(w, B, ARGS("log"));
    if (strcmp(json_string_value(json_object_get(j, "command")), "log") || jint(j, "seq") != 3 ||
        json_array_size(json_object_get(j, "transactions")) != COUNT(want))
        failf("log: %s", json_dumps(j, 0));
    json_array_foreach(json_object_get(j, "transactions"), i, t)
    {
        const char *dev = json_string_value(json_object_get(t, "device"));
        const char *when = json_string_value(json_object_get(t, "time"));
        if ((uint64_t)jint(t, "seq") != want[i].seq || !dev || strcmp(dev, want[i].device) ||
            jint(t, "upserts") != want[i].upserts || jint(t, "deletes") != want[i].deletes ||
            jint(t, "bytes") != want[i].bytes || jint(t, "object_bytes") <= 0 || !when ||
            strlen(when) < 19 || llabs(jint(t, "time_ns") / 1000000000 - time(NULL)) > 600 ||
            json_object_get(t, "paths"))
            failf("log entry %zu: %s", i, json_dumps(t, 0));
    }
    json_decref(j);

    /* By path: the path itself, or under it when it is a directory; -C DIR is where PATH is from.
     */
    expect_log(w, A, "a.txt", "2 1");
    expect_log(w, A, "d", "3 2 1");
    expect_log(w, A, "d/", "3 2 1");
    expect_log(w, A, "d/x", "2 1");
    expect_log(w, A, "d/y", "3");
    expect_log(w, A, "no-such-file", "");
    expect_log(w, A, "./d/../a.txt", "2 1");
    expect_log(w, A, w->dev[A], "3 2 1"); /* the folder itself: everything */
    j = on_ok(w, A, ARGS("log", "d"));
    t = json_array_get(json_object_get(j, "transactions"), 1);
    if (json_array_size(json_object_get(t, "paths")) != 1 ||
        strcmp(json_string_value(json_array_get(json_object_get(t, "paths"), 0)), "d/x"))
        failf("log d: seq 2 should list d/x: %s", json_dumps(t, 0));
    json_decref(j);
    o = on(w, A, ARGS("log", "/etc"));
    expect_exit(&o, 1, "log of a path outside the folder");
    outcome_free(&o);

    /* Human output: one line per transaction, newest first. */
    o = run_cli(NULL, ARGS("-C", w->dev[A], "log"));
    expect_exit(&o, 0, "log");
    {
        char *l2 = strchr(o.out, '\n'), *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
        if (!l3 || strchr(l3 + 1, '\n') != o.out + strlen(o.out) - 1 || atoi(o.out) != 3 ||
            atoi(l2 + 1) != 2 || atoi(l3 + 1) != 1 || !strstr(l2, " B "))
            failf("log output: %s", o.out);
    }
    outcome_free(&o);
}

/* --- verify ------------------------------------------------------------------------------ */

static void *get_obj(ss_store *s, const char *key, size_t *len)
{
    void *buf = NULL;
    ss_err err = {{0}};
    if (ss_store_get(s, key, 0, SS_TO_END, &buf, len, &err)) failf("get %s: %s", key, err.msg);
    return buf;
}

static void put_obj(ss_store *s, const char *key, const void *buf, size_t len)
{
    ss_err err = {{0}};
    if (ss_store_put(s, key, buf, len, 0, &err)) failf("put %s: %s", key, err.msg);
}

/* Flip a byte in the middle of key; returns the original bytes to put back. */
static uint8_t *flip(ss_store *s, const char *key, size_t *len)
{
    uint8_t *orig = get_obj(s, key, len), *bad = malloc(*len);
    assert_non_null(bad);
    memcpy(bad, orig, *len);
    bad[*len / 2] ^= 0x10;
    put_obj(s, key, bad, *len);
    free(bad);
    return orig;
}

static void expect_verify(const world *w, int data, int code, const char *const *named, size_t n)
{
    outcome o = data ? on(w, A, ARGS("verify", "--data")) : on(w, A, ARGS("verify"));
    const json_t *p = json_object_get(o.json, "problems");
    expect_exit(&o, code, data ? "verify --data" : "verify");
    if (!json_is_object(o.json) || json_array_size(p) != n) failf("verify: %s", o.out);
    for (size_t i = 0; i < n; i++) {
        const char *key = json_string_value(json_object_get(json_array_get(p, i), "key"));
        if (!strstr(o.err, named[i]) || !key || strcmp(key, named[i]))
            failf("verify does not name %s: stderr %s, stdout %s", named[i], o.err, o.out);
    }
    size_t lines = 0; /* each problem on its own line, and nothing else */
    for (const char *c = o.err; (c = strchr(c, '\n')); c++)
        lines++;
    if (lines != n) failf("verify: %zu problems, %zu lines: %s", n, lines, o.err);
    outcome_free(&o);
}

static void test_verify(void **state)
{
    world *w = *state;
    ss_store *s = NULL;
    ss_err err = {{0}};
    keys packs = {0};
    char log2[SS_KEY_NAME_MAX];
    uint8_t *orig[2];
    size_t len[2];
    int64_t chunks;
    json_t *j;
    join(w, A);
    for (int i = 0; i < 3; i++) { /* three transactions, each with its own pack */
        char name[16];
        snprintf(name, sizeof name, "f%d.bin", i);
        write_random(at(w, A, name), 200000);
        push(w, A);
    }
    j = on_ok(w, A, ARGS("verify", "--data"));
    chunks = jint(j, "checked_chunks");
    if (jint(j, "checked_logs") != 3 || chunks < 3 ||
        json_array_size(json_object_get(j, "problems")))
        failf("verify of a good repository: %s", json_dumps(j, 0));
    json_decref(j);
    /* A copy references the same chunks: each distinct chunk is checked once. */
    snapshot(at(w, A, "f0.bin"), at(w, A, "copy.bin"));
    push(w, A);
    j = on_ok(w, A, ARGS("verify", "--data"));
    if (jint(j, "checked_logs") != 4 || jint(j, "checked_chunks") != chunks)
        failf("verify after a copy: %s", json_dumps(j, 0));
    json_decref(j);

    /* Two corrupted data objects: both named, one line each; the log alone still verifies. */
    assert_int_equal(ss_store_open(w->url, NULL, &s, &err), SS_OK);
    assert_int_equal(ss_store_list(s, SS_KEY_DATA_PREFIX, NULL, collect_key, &packs, &err), SS_OK);
    assert_int_equal(packs.n, 3);
    orig[0] = flip(s, packs.v[0], &len[0]);
    orig[1] = flip(s, packs.v[2], &len[1]);
    expect_verify(w, 1, 3, (const char *const[]){packs.v[0], packs.v[2]}, 2);
    expect_verify(w, 0, 0, NULL, 0);
    { /* restore verifies what it fetches, and a failed restore leaves nothing behind */
        outcome o = on(w, A, ARGS("restore", ".", "--at", "1", "--to", at_dir(w->root, "out")));
        expect_exit(&o, 3, "restore from a corrupted pack");
        if (!strstr(o.err, packs.v[0])) failf("%s is not named: %s", packs.v[0], o.err);
        outcome_free(&o);
        if (!access(at_dir(w->root, "out"), F_OK) || count_in(w->root, count_name, "restore-"))
            failf("a failed restore left files behind");
    }
    put_obj(s, packs.v[0], orig[0], len[0]);
    put_obj(s, packs.v[2], orig[1], len[1]);
    free(orig[0]);
    free(orig[1]);
    expect_verify(w, 1, 0, NULL, 0);

    /* A corrupted log object: named, and the chain walk stops there. */
    snprintf(log2, sizeof log2, SS_KEY_LOG_FMT, (uint64_t)2);
    orig[0] = flip(s, log2, &len[0]);
    expect_verify(w, 0, 3, (const char *const[]){log2}, 1);
    {
        outcome o = on(w, A, ARGS("verify", "--data"));
        expect_exit(&o, 3, "verify --data of a corrupted log");
        if (jint(o.json, "checked_logs") != 1 || jint(o.json, "unchecked_logs") != 2)
            failf("verify: %s", o.out);
        outcome_free(&o);
    }
    put_obj(s, log2, orig[0], len[0]);
    free(orig[0]);

    /* A missing log object: the gap is named. */
    orig[0] = get_obj(s, log2, &len[0]);
    assert_int_equal(ss_store_delete(s, log2, &err), SS_OK);
    expect_verify(w, 0, 3, (const char *const[]){log2}, 1);
    put_obj(s, log2, orig[0], len[0]);
    free(orig[0]);
    expect_verify(w, 1, 0, NULL, 0);
    free_keys(&packs);
    ss_store_free(s);
}

/* --- restore ----------------------------------------------------------------------------- */

static json_t *restore_ok(const world *w, int d, const char *const *args)
{
    return on_ok(w, d, args);
}

static void expect_dest(json_t *j, const char *dest)
{
    const char *got = json_string_value(json_object_get(j, "dest"));
    if (!got || strcmp(got, dest)) failf("restored to %s, expected %s", got ? got : "?", dest);
    json_decref(j);
}

static void test_restore_deleted(void **state)
{
    world *w = *state;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "notes.txt"), "version 1", 9);
    write_random(at(w, A, "docs/big.bin"), 400000);
    snapshot(at(w, A, "docs/big.bin"), at_dir(w->root, "big.orig"));
    push(w, A);
    rm_rf(at(w, A, "notes.txt"));
    rm_rf(at(w, A, "docs"));
    push(w, A);
    /* On the other device, which never had the files locally after the delete. */
    ok(w, B, "sync");
    expect_content(at(w, B, "notes.txt"), NULL);
    expect_dest(restore_ok(w, B, ARGS("restore", "notes.txt")), "notes.restored-1.txt");
    expect_content(at(w, B, "notes.restored-1.txt"), "version 1");
    expect_dest(restore_ok(w, B, ARGS("restore", "docs/big.bin")), "docs/big.restored-1.bin");
    if (!same_content(at(w, B, "docs/big.restored-1.bin"), at_dir(w->root, "big.orig")))
        failf("restored big.bin differs");
    /* A restored copy is an ordinary new file: the next push uploads it, A gets it. */
    push(w, B);
    ok(w, A, "sync");
    expect_converged(w);
    expect_content(at(w, A, "notes.restored-1.txt"), "version 1");
    /* Explicitly at a sequence where it was gone: a clear failure. */
    {
        outcome o = on(w, A, ARGS("restore", "notes.txt", "--at", "2"));
        expect_exit(&o, 1, "restore of a path gone at that sequence");
        if (!strstr(o.err, "last there at sequence 1")) failf("unclear: %s", o.err);
        outcome_free(&o);
    }
}

static void test_restore_at_seq(void **state)
{
    world *w = *state;
    char orig[3][200];
    join(w, A);
    for (int v = 0; v < 3; v++) { /* three versions of an inline and of a chunked file */
        char text[32];
        snprintf(text, sizeof text, "version %d", v + 1);
        write_bytes(at(w, A, "a.txt"), text, strlen(text));
        write_random(at(w, A, "b.bin"), 300000);
        snprintf(orig[v], sizeof orig[v], "%s/b.%d", w->root, v + 1);
        snapshot(at(w, A, "b.bin"), orig[v]);
        push(w, A);
    }
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt", "--at", "2")), "a.restored-2.txt");
    expect_content(at(w, A, "a.restored-2.txt"), "version 2");
    expect_dest(restore_ok(w, A, ARGS("restore", "b.bin", "--at", "2")), "b.restored-2.bin");
    if (!same_content(at(w, A, "b.restored-2.bin"), orig[1])) failf("b.bin at 2 differs");
    expect_dest(restore_ok(w, A, ARGS("restore", "b.bin", "--at", "1")), "b.restored-1.bin");
    if (!same_content(at(w, A, "b.restored-1.bin"), orig[0])) failf("b.bin at 1 differs");
    /* The default is the newest version. */
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt")), "a.restored-3.txt");
    expect_content(at(w, A, "a.restored-3.txt"), "version 3");
    {
        outcome o = on(w, A, ARGS("restore", "a.txt", "--at", "9"));
        expect_exit(&o, 1, "restore beyond the newest sequence");
        outcome_free(&o);
    }
}

static void test_restore_at_time(void **state)
{
    world *w = *state;
    int64_t t[2];
    char at_s[32], local[32];
    json_t *j;
    join(w, A);
    write_bytes(at(w, A, "a.txt"), "morning", 7);
    push(w, A);
    sleep(2);
    write_bytes(at(w, A, "a.txt"), "evening", 7);
    push(w, A);
    j = on_ok(w, A, ARGS("log"));
    for (int i = 0; i < 2; i++) /* newest first */
        t[1 - i] = jint(json_array_get(json_object_get(j, "transactions"), (size_t)i), "time_ns") /
                   1000000000;
    json_decref(j);
    if (t[1] <= t[0]) failf("transactions stamped %" PRId64 " and %" PRId64, t[0], t[1]);

    /* Between the two: the first (its second counts as "at or before"). */
    snprintf(at_s, sizeof at_s, "@%" PRId64, t[1] - 1);
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt", "--at", at_s)), "a.restored-1.txt");
    expect_content(at(w, A, "a.restored-1.txt"), "morning");
    /* The same as local time, as the log shows it. */
    {
        time_t tt = (time_t)t[0];
        struct tm tm;
        localtime_r(&tt, &tm);
        strftime(local, sizeof local, "%Y-%m-%dT%H:%M:%S", &tm);
    }
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt", "--at", local, "--to", "early.txt")),
                at(w, A, "early.txt"));
    expect_content(at(w, A, "early.txt"), "morning");
    snprintf(at_s, sizeof at_s, "@%" PRId64, t[1]);
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt", "--at", at_s)), "a.restored-2.txt");
    expect_content(at(w, A, "a.restored-2.txt"), "evening");
    /* Before anything was synced. */
    snprintf(at_s, sizeof at_s, "@%" PRId64, t[0] - 1);
    {
        outcome o = on(w, A, ARGS("restore", "a.txt", "--at", at_s));
        expect_exit(&o, 1, "restore before the first transaction");
        if (!strstr(o.err, "nothing was synced")) failf("unclear: %s", o.err);
        outcome_free(&o);
    }
}

static void test_restore_dir(void **state)
{
    world *w = *state;
    char out[200], snap[200];
    outcome o;
    join(w, A);
    write_bytes(at(w, A, "proj/readme"), "read me", 7);
    write_random(at(w, A, "proj/src/big.c"), 250000);
    write_bytes(at(w, A, "proj/src/empty"), "", 0);
    make_parents(at(w, A, "proj/empty-dir/x"));
    if (symlink("src/big.c", at(w, A, "proj/link"))) fail();
    write_bytes(at(w, A, "proj/ro/inside"), "inside", 6);
    write_bytes(at(w, A, "proj/suid"), "#!/bin/sh\n", 10);
    if (chmod(at(w, A, "proj/src"), 0750) || chmod(at(w, A, "proj/readme"), 0600) ||
        chmod(at(w, A, "proj/ro"), 0555) || chmod(at(w, A, "proj/suid"), 04755))
        fail();
    write_bytes(at(w, A, "proj-other"), "not under proj", 14); /* sorts beside proj/, not in it */
    snprintf(snap, sizeof snap, "%s/proj.orig", w->root);
    snapshot(at(w, A, "proj"), snap);
    if (chmod(at_dir(snap, "suid"), 0755)) fail(); /* restore applies modes as pull does */
    push(w, A);
    write_bytes(at(w, A, "proj/readme"), "changed", 7);
    push(w, A);
    rm_rf(at(w, A, "proj"));
    push(w, A);

    /* To a new directory DEST, as it was at 1. */
    snprintf(out, sizeof out, "%s/out", w->root);
    expect_dest(restore_ok(w, A, ARGS("restore", "proj", "--at", "1", "--to", out)), out);
    expect_same_tree(out, snap);
    /* DEST exists now: refused, and left as it was. */
    o = on(w, A, ARGS("restore", "proj", "--at", "1", "--to", at_dir(out, "readme")));
    expect_exit(&o, 1, "restore over an existing file");
    if (!strstr(o.err, "refusing to overwrite")) failf("unclear: %s", o.err);
    outcome_free(&o);
    expect_same_tree(out, snap);
    /* An existing directory receives it under its own name; deleted: as it was last (2). */
    expect_dest(restore_ok(w, A, ARGS("restore", "proj", "--to", out)), at_dir(out, "proj"));
    expect_content(at_dir(out, "proj/readme"), "changed");
    o = on(w, A, ARGS("restore", "proj", "--to", out));
    expect_exit(&o, 1, "restore over an existing directory");
    outcome_free(&o);
    /* Beside the original. */
    expect_dest(restore_ok(w, A, ARGS("restore", "proj", "--at", "1")), "proj.restored-1");
    expect_same_tree(at(w, A, "proj.restored-1"), snap);
}

static void test_restore_never_overwrites(void **state)
{
    world *w = *state;
    join(w, A);
    write_bytes(at(w, A, "a.txt"), "old", 3);
    push(w, A);
    write_bytes(at(w, A, "a.txt"), "new", 3);
    push(w, A);
    /* A file already holds the default name: a new name is chosen, the file is left alone. */
    write_bytes(at(w, A, "a.restored-1.txt"), "mine", 4);
    expect_dest(restore_ok(w, A, ARGS("restore", "a.txt", "--at", "1")), "a.restored-1-2.txt");
    expect_content(at(w, A, "a.restored-1.txt"), "mine");
    expect_content(at(w, A, "a.restored-1-2.txt"), "old");
    expect_content(at(w, A, "a.txt"), "new");
    /* --to an existing file: refused. */
    {
        outcome o = on(w, A, ARGS("restore", "a.txt", "--at", "1", "--to", "a.txt"));
        expect_exit(&o, 1, "restore --to over an existing file");
        if (!strstr(o.err, "refusing to overwrite")) failf("unclear: %s", o.err);
        outcome_free(&o);
    }
    expect_content(at(w, A, "a.txt"), "new");
}

static void test_bad_arguments(void **state)
{
    const char *const *const bad[] = {
        ARGS("restore"),
        ARGS("restore", "a", "b"),
        ARGS("restore", "a", "--at", "0"),
        ARGS("restore", "a", "--at", "yesterday"),
        ARGS("restore", "a", "--at", "2026-02-30"),
        ARGS("restore", "a", "--at", "2026-01-01T25:00"),
        ARGS("log", "a", "b"),
        ARGS("verify", "x"),
        ARGS("log", "--data"),
        ARGS("push", "--at", "3"),
        ARGS("verify", "--to", "x"),
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

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_setup, world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_log),
        WORLD_TEST(test_verify),
        WORLD_TEST(test_restore_deleted),
        WORLD_TEST(test_restore_at_seq),
        WORLD_TEST(test_restore_at_time),
        WORLD_TEST(test_restore_dir),
        WORLD_TEST(test_restore_never_overwrites),
        cmocka_unit_test(test_bad_arguments),
    };
    unsigned char rnd[6];
    int failed;

    if (sodium_init() < 0) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(g_tag, sizeof g_tag, rnd, sizeof rnd);
    setenv("S3SYNC_KDF", "interactive", 1);
    setenv("S3SYNC_PASSWORD", "correct horse battery staple", 1);
    unsetenv("S3SYNC_PASSWORD_FILE");
    unsetenv("S3SYNC_PASSWORD_COMMAND");
    unsetenv("S3SYNC_CRASH_AT");

    g_bucket = getenv("AWS_ENDPOINT_URL") ? getenv("S3SYNC_TEST_BUCKET") : NULL;
    failed = cmocka_run_group_tests_name("history/file", tests, NULL, NULL);
    if (!g_bucket) {
        fprintf(stderr, "s3 backend: skipped (no RGW: run through ci/test.sh)\n");
        return failed;
    }
    g_s3 = 1;
    failed |= cmocka_run_group_tests_name("history/s3", tests, NULL, NULL);
    return failed;
}
