/*
 * test-budget: request budgets and cost through the s3sync binary, on a
 * file:// store and on RGW. --max-requests stops a pull between
 * transactions and a push before it publishes (exit 75, never a request
 * past the budget), and the next run finishes with both folders converged;
 * config set max_requests makes a series of cron-like syncs that each stay
 * within it and together converge; `s3sync cost` sums what the commands
 * recorded and prices it with the folder's price_* settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli-fixture.h"

/* Store requests of a --json answer, lockd's aside (what the budget counts). */
static int64_t bucket_requests(const json_t *j)
{
    return jint(j, "requests") - jint(json_object_get(j, "requests_by_class"), "lockd");
}

/* A pushes n transactions, each adding file tN (N from first). */
static void push_files(const world *w, int first, int n)
{
    char name[32], body[32];
    for (int i = first; i < first + n; i++) {
        snprintf(name, sizeof name, "t%d", i);
        snprintf(body, sizeof body, "file %d\n", i);
        write_bytes(at(w, A, name), body, strlen(body));
        ok(w, A, "push");
    }
}

/* The budget refused a request: exit 75, the budget named, no request past it. */
static void expect_stopped_by(outcome *o, int64_t budget, const char *what)
{
    if (o->code != 75 || !o->json || !strstr(o->err, "request budget of"))
        failf("%s: exit %d, stderr %s", what, o->code, o->err);
    if (bucket_requests(o->json) > budget)
        failf("%s: %lld requests past a budget of %lld", what, (long long)bucket_requests(o->json),
              (long long)budget);
}

static void test_pull_stopped(void **state)
{
    world *w = *state;
    join(w, A);
    join(w, B);
    push_files(w, 1, 5);
    outcome o = run_on(w, B, NULL, ARGS("pull", "--max-requests", "3"));
    expect_stopped_by(&o, 3, "pull --max-requests 3");
    /* Between transactions: seq k applied means exactly t1..tk, nothing of the next. */
    int64_t seq = jint(o.json, "seq");
    if (seq >= 5) failf("pull applied everything (seq %lld) within 3 requests", (long long)seq);
    for (int i = 1; i <= 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        if ((access(at(w, B, name), F_OK) == 0) != (i <= seq))
            failf("after seq %lld, %s is %s", (long long)seq, name, i <= seq ? "missing" : "there");
    }
    outcome_free(&o);
    ok(w, B, "pull");
    expect_converged(w);
}

static void test_push_stopped(void **state)
{
    world *w = *state;
    size_t before, after;
    join(w, A);
    join(w, B);
    write_random(at(w, A, "big.bin"), 3 * MIB); /* packs, then the log object */
    write_bytes(at(w, A, "small.txt"), "small\n", 6);
    char **keys = store_keys(w->url, &before);
    keys_free(keys);
    outcome o = run_on(w, A, NULL, ARGS("push", "--max-requests", "1"));
    expect_stopped_by(&o, 1, "push --max-requests 1");
    outcome_free(&o);
    /* Nothing published: B's pull finds no transaction, A's state still sees both changes. */
    json_t *j = ok_json(w, B, "pull");
    if (jint(j, "seq") != 0 || access(at(w, B, "small.txt"), F_OK) == 0)
        failf("B pulled something of a push that stopped (seq %lld)", (long long)jint(j, "seq"));
    json_decref(j);
    keys = store_keys(w->url, &after);
    for (size_t i = 0; keys[i]; i++)
        if (!strncmp(keys[i], "log/", 4)) failf("the stopped push left %s", keys[i]);
    keys_free(keys);
    j = ok_json(w, A, "status");
    if (jint(j, "pending_local") != 2)
        failf("A has %lld changes to push", (long long)jint(j, "pending_local"));
    json_decref(j);
    ok(w, A, "push");
    ok(w, B, "pull");
    expect_converged(w);
}

/*
 * A budget in the folder's config: cron-like syncs, each within it, converge
 * together. 3: a joining device lists checkpoints/ and log/ first, so each
 * run has one GET left for a transaction (a budget below a run's fixed
 * requests makes no progress).
 */
static void test_config_budget(void **state)
{
    world *w = *state;
    int runs = 0, stopped = 0;
    join(w, A);
    join(w, B);
    push_files(w, 1, 3);
    outcome o = run_cli(NULL, ARGS("-C", w->dev[B], "config", "set", "max_requests", "3"));
    expect_exit(&o, 0, "config set max_requests 3");
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[B], "config", "set", "max_requests", "many"));
    expect_exit(&o, 2, "config set max_requests many");
    outcome_free(&o);
    for (;;) {
        if (++runs > 10) failf("10 syncs with a budget of 3 did not converge");
        o = run_cmd(w, B, NULL, "sync");
        if (o.code == 75) {
            expect_stopped_by(&o, 3, "sync");
            stopped++;
            outcome_free(&o);
            continue;
        }
        expect_exit(&o, 0, "sync");
        if (bucket_requests(o.json) > 3)
            failf("sync made %lld requests", (long long)bucket_requests(o.json));
        outcome_free(&o);
        break;
    }
    if (!stopped) failf("no sync was stopped by a budget of 3");
    expect_converged(w);
    /* --max-requests 0 lifts the folder's budget for one run. */
    push_files(w, 4, 3);
    json_decref(ok_on(w, B, ARGS("sync", "--max-requests", "0")));
    expect_converged(w);
}

/*
 * Issue 16: a sync of one tiny file costs two requests, the pull's LIST of
 * log/ (which checks log/<watermark> for a fork) and the PUT of the
 * transaction; a push alone lists once itself. No second LIST in a sync.
 */
static void test_small_sync_requests(void **state)
{
    world *w = *state;
    json_t *j;
    join(w, A);
    write_bytes(at(w, A, "first"), "1\n", 2);
    ok(w, A, "sync"); /* a watermark to check from here on (at 0 a pull lists checkpoints/) */
    for (int i = 0; i < 2; i++) {
        const char *cmd = i ? "push" : "sync";
        char name[32];
        snprintf(name, sizeof name, "tiny-%s", cmd);
        write_bytes(at(w, A, name), "x\n", 2);
        j = ok_json(w, A, cmd);
        json_t *by = json_object_get(j, "requests_by_class");
        if (bucket_requests(j) != 2 || jint(by, "list") != 1 || jint(by, "put") != 1 ||
            jint(j, "files") != 1)
            failf("%s of one tiny file: %lld requests (%lld LIST, %lld PUT), %lld files", cmd,
                  (long long)bucket_requests(j), (long long)jint(by, "list"),
                  (long long)jint(by, "put"), (long long)jint(j, "files"));
        json_decref(j);
    }
    join(w, B);
    expect_converged(w);
}

static double jreal(const json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v)) failf("no number %s", key);
    return json_number_value(v);
}

static void test_cost(void **state)
{
    world *w = *state;
    outcome o;
    join(w, A);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "cost"));
    expect_exit(&o, 0, "cost");
    outcome_free(&o);
    push_files(w, 1, 3);
    ok(w, A, "sync");
    o = run_cli(NULL, ARGS("-C", w->dev[A], "--json", "cost", "--days", "2"));
    expect_exit(&o, 0, "cost");
    json_t *month = json_object_get(o.json, "month"), *usd = json_object_get(o.json, "usd");
    /* init, three pushes, a sync: each recorded; at least three PUTs and a LIST in the window. */
    if (jint(o.json, "commands") < 5 || jint(month, "put") <= 0 || jint(month, "list") <= 0)
        failf("cost: %s", o.out);
    double put = jreal(usd, "put"), expected = jint(month, "put") / 1000.0 * 0.005;
    if (put < expected * 0.99 || put > expected * 1.01)
        failf("put costs %g, not %g", put, expected);
    outcome_free(&o);
    /* Prices come from the folder's config. */
    o = run_cli(NULL, ARGS("-C", w->dev[A], "config", "set", "price_put", "1000"));
    expect_exit(&o, 0, "config set price_put");
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "--json", "cost", "--days", "2"));
    expect_exit(&o, 0, "cost");
    month = json_object_get(o.json, "month");
    put = jreal(json_object_get(o.json, "usd"), "put");
    if (put < jint(month, "put") * 0.99 || put > jint(month, "put") * 1.01)
        failf("at 1000 USD per 1000 PUTs, %lld PUTs cost %g", (long long)jint(month, "put"), put);
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "cost"));
    expect_exit(&o, 0, "cost");
    if (!strstr(o.out, "a month (30 days) at this rate") || !strstr(o.out, "total about"))
        failf("cost printed %s", o.out);
    outcome_free(&o);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "cost", "--days", "0"));
    expect_exit(&o, 2, "cost --days 0");
    outcome_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pull_stopped, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_push_stopped, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_config_budget, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_cost, world_open, world_close),
        cmocka_unit_test_setup_teardown(test_small_sync_requests, world_open, world_close),
    };
    if (fixture_init("budget")) return 1;
    return fixture_run_file_and_s3(tests, COUNT(tests));
}
