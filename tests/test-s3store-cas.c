/*
 * test-s3store-cas: compare-and-swap (ss_store_put_if, ss_store_get_stat)
 * and its start-up probe (ss_store_probe_if_match), on the file backend
 * (always) and the s3 backend on ci/test.sh's RGW (when AWS_ENDPOINT_URL
 * and S3SYNC_TEST_BUCKET are set), each run under a fresh random prefix.
 * What s3sync-lockd's state in a bucket will rest on (issue 19): a stale
 * ETag is refused and leaves the object alone; writers racing with one ETag
 * have exactly one winner; a counter kept by read-decide-swap loops from
 * several threads loses no increment and never hands a value out twice
 * (the fencing token's guarantee). On s3 also through faultproxy: a swap
 * retried after a lost answer is told its own write from another's of the
 * same bytes, and every 412 turned into a 200 is a store that ignores
 * If-Match, which the probe must refuse.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "faultproxy.h"
#include "s3store.h"

#define RACERS 6           /* threads writing with one ETag at once */
#define RACE_ROUNDS 5      /* and how often */
#define COUNTERS 4         /* threads counting by compare-and-swap */
#define COUNT_EACH 12      /* increments each makes */
#define OBJ_MAX (1u << 10) /* the most a test object holds */

static char store_url[256];

static ss_store *open_store(const char *url)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_store_open(url, NULL, &s, &err);
    if (rc) fprintf(stderr, "open %s: %s\n", url, err.msg);
    assert_int_equal(rc, SS_OK);
    return s;
}

static int setup(void **state)
{
    *state = open_store(store_url);
    return 0;
}

static int teardown(void **state)
{
    ss_store_free(*state);
    return 0;
}

/* A key of its own for each test and run. */
static void fresh_key(char *key, size_t cap, const char *what)
{
    unsigned char r[6];
    char hex[13];
    randombytes_buf(r, sizeof r);
    snprintf(key, cap, "cas/%s-%s", what, sodium_bin2hex(hex, sizeof hex, r, sizeof r));
}

/* key's bytes (NUL-terminated) and ETag, which must not be empty. */
static char *read_stat(ss_store *s, const char *key, ss_store_stat *st)
{
    void *buf = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    ss_rc rc = ss_store_get_stat(s, key, OBJ_MAX, &buf, &len, st, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
    assert_int_equal(st->size, len);
    assert_true(st->etag[0] != '\0');
    return buf;
}

static void create(ss_store *s, const char *key, const char *body)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_put(s, key, body, strlen(body), SS_PUT_CREATE_ONLY, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
}

static void test_stale_etag_refused(void **state)
{
    ss_store *s = *state;
    ss_store_stat v1, v2, now, head;
    ss_err err = {{0}};
    char key[64], *body;
    fresh_key(key, sizeof key, "stale");
    create(s, key, "version 1");
    free(read_stat(s, key, &v1));

    /* The current ETag swaps, and the put tells the new one as a GET and a HEAD do. */
    assert_int_equal(ss_store_put_if(s, key, "version 2", 9, v1.etag, &v2, &err), SS_OK);
    assert_int_equal(v2.size, 9);
    assert_true(v2.etag[0] != '\0');
    assert_string_not_equal(v2.etag, v1.etag);
    body = read_stat(s, key, &now);
    assert_string_equal(body, "version 2");
    free(body);
    assert_string_equal(now.etag, v2.etag);
    assert_int_equal(ss_store_head(s, key, &head, &err), SS_OK);
    assert_string_equal(head.etag, v2.etag);

    /* The first ETag is stale now: refused, distinctly, and nothing changed. */
    assert_int_equal(ss_store_put_if(s, key, "version 3", 9, v1.etag, NULL, &err), SS_ERR_CHANGED);
    assert_non_null(strstr(err.msg, key));
    body = read_stat(s, key, &now);
    assert_string_equal(body, "version 2");
    free(body);
    assert_string_equal(now.etag, v2.etag);

    /* Swaps chain, each on the ETag the one before told. */
    assert_int_equal(ss_store_put_if(s, key, "version 3", 9, v2.etag, &v1, &err), SS_OK);
    assert_int_equal(ss_store_put_if(s, key, "version 4", 9, v1.etag, NULL, &err), SS_OK);
    assert_int_equal(ss_store_put_if(s, key, "version 5", 9, v1.etag, NULL, &err), SS_ERR_CHANGED);
    ss_store_delete(s, key, &err);
}

static void test_missing_key_refused(void **state)
{
    ss_store *s = *state;
    ss_store_stat v1;
    ss_store_stat none;
    void *buf = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    char key[64];
    fresh_key(key, sizeof key, "missing");
    create(s, key, "here");
    free(read_stat(s, key, &v1));
    assert_int_equal(ss_store_delete(s, key, &err), SS_OK);
    /* Deleted since read: the swap has no object to match, and creates none. */
    assert_int_equal(ss_store_put_if(s, key, "back", 4, v1.etag, NULL, &err), SS_ERR_CHANGED);
    assert_int_equal(ss_store_get_stat(s, key, OBJ_MAX, &buf, &len, &none, &err), SS_ERR_NOT_FOUND);
    assert_null(buf);
    /* Nor an empty ETag: that is the caller's mistake. */
    assert_int_equal(ss_store_put_if(s, key, "back", 4, "", NULL, &err), SS_ERR_INVALID);
}

/* --- racing writers ------------------------------------------------------------ */

typedef struct racer {
    const char *key;
    const char *etag; /* the one every racer names */
    pthread_barrier_t *start;
    char body[32];
    ss_rc rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    ss_store *s = open_store(store_url);
    ss_err err = {{0}};
    pthread_barrier_wait(r->start);
    r->rc = ss_store_put_if(s, r->key, r->body, strlen(r->body), r->etag, NULL, &err);
    if (r->rc && r->rc != SS_ERR_CHANGED) fprintf(stderr, "racer: %s\n", err.msg);
    ss_store_free(s);
    return NULL;
}

static void test_racers_one_wins(void **state)
{
    ss_store *s = *state;
    char key[64];
    fresh_key(key, sizeof key, "race");
    create(s, key, "round 0");
    for (unsigned round = 1; round <= RACE_ROUNDS; round++) {
        racer r[RACERS];
        pthread_t t[RACERS];
        pthread_barrier_t start;
        ss_store_stat st;
        unsigned won = 0, winner = 0;
        char *body;
        free(read_stat(s, key, &st));
        pthread_barrier_init(&start, NULL, RACERS);
        for (unsigned i = 0; i < RACERS; i++) {
            r[i] = (racer){.key = key, .etag = st.etag, .start = &start};
            snprintf(r[i].body, sizeof r[i].body, "round %u racer %u", round, i);
            assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
        }
        for (unsigned i = 0; i < RACERS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        for (unsigned i = 0; i < RACERS; i++) {
            if (r[i].rc == SS_OK) {
                won++;
                winner = i;
            } else {
                assert_int_equal(r[i].rc, SS_ERR_CHANGED);
            }
        }
        assert_int_equal(won, 1);
        body = read_stat(s, key, &st);
        assert_string_equal(body, r[winner].body);
        free(body);
    }
    ss_store_delete(s, key, &(ss_err){{0}});
}

/* --- a counter kept by read, decide, swap: the fencing token's pattern --------- */

typedef struct counter {
    const char *key;
    unsigned long got[COUNT_EACH]; /* the values this thread took */
    unsigned lost;                 /* swaps lost to another */
    unsigned unsure; /* of those, after a retried attempt: it may have written a value, wasted */
    ss_rc rc;
} counter;

static void *count(void *arg)
{
    counter *c = arg;
    ss_store *s = open_store(store_url);
    ss_err err = {{0}};
    for (unsigned n = 0; n < COUNT_EACH && !c->rc;) {
        ss_store_stat st;
        void *buf = NULL;
        size_t len = 0;
        char next[32];
        c->rc = ss_store_get_stat(s, c->key, OBJ_MAX, &buf, &len, &st, &err);
        if (c->rc) break;
        unsigned long v = strtoul(buf, NULL, 10) + 1;
        free(buf);
        snprintf(next, sizeof next, "%lu", v);
        uint64_t before = ss_store_requests(s);
        c->rc = ss_store_put_if(s, c->key, next, strlen(next), st.etag, NULL, &err);
        if (c->rc == SS_ERR_CHANGED) { /* lost the race: read again, decide again */
            c->rc = SS_OK;
            c->lost++;
            c->unsure += ss_store_requests(s) - before > 1; /* more than the one PUT */
            continue;
        }
        if (!c->rc) c->got[n++] = v;
    }
    if (c->rc) fprintf(stderr, "counter: %s\n", err.msg);
    ss_store_free(s);
    return NULL;
}

static void test_counter_by_swaps(void **state)
{
    ss_store *s = *state;
    counter c[COUNTERS];
    pthread_t t[COUNTERS];
    unsigned char seen[COUNTERS * COUNT_EACH * 2 + 1] = {0};
    unsigned lost = 0, unsure = 0;
    unsigned long total;
    ss_store_stat st;
    char key[64], *body;
    fresh_key(key, sizeof key, "counter");
    create(s, key, "0");
    for (unsigned i = 0; i < COUNTERS; i++) {
        c[i] = (counter){.key = key};
        assert_int_equal(pthread_create(&t[i], NULL, count, &c[i]), 0);
    }
    for (unsigned i = 0; i < COUNTERS; i++)
        pthread_join(t[i], NULL);
    body = read_stat(s, key, &st);
    total = strtoul(body, NULL, 10);
    free(body);
    for (unsigned i = 0; i < COUNTERS; i++) {
        assert_int_equal(c[i].rc, SS_OK);
        lost += c[i].lost;
        unsure += c[i].unsure;
    }
    /* None lost: every swap counted is one increment, and the only values nobody took are
     * those a retried swap may have written before another swapped on top (s3store.h). */
    assert_in_range(total, COUNTERS * COUNT_EACH, COUNTERS * COUNT_EACH + unsure);
    assert_true(total < sizeof seen);
    for (unsigned i = 0; i < COUNTERS; i++) {
        for (unsigned n = 0; n < COUNT_EACH; n++) {
            assert_in_range(c[i].got[n], 1, total);
            assert_int_equal(seen[c[i].got[n]], 0); /* no value handed out twice */
            seen[c[i].got[n]] = 1;
            if (n) assert_true(c[i].got[n] > c[i].got[n - 1]);
        }
    }
    fprintf(stderr, "counter: %u swaps, %u lost races re-decided (%u after a retry)\n",
            COUNTERS * COUNT_EACH, lost, unsure);
    ss_store_delete(s, key, &(ss_err){{0}});
}

/* --- the probe --------------------------------------------------------------------- */

static void test_probe_passes(void **state)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_probe_if_match(*state, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
}

/* A store on RGW through a new faultproxy injecting fault into PUTs, limit (0: all) of them. */
static ss_store *faulty_store(faultproxy **ret_fp, fp_fault fault, unsigned limit)
{
    faultproxy *fp = fp_start(getenv("AWS_ENDPOINT_URL"), 1);
    fp_rates rates = {.match = "PUT *", .limit = limit};
    ss_store_opts opts = {0};
    ss_store *s = NULL;
    ss_err err = {{0}};
    assert_non_null(fp);
    rates.permille[fault] = 1000;
    fp_set(fp, &rates, 1);
    opts.endpoint = fp_url(fp);
    opts.max_retries =
        3; /* a retry is what these tests are about, whatever AWS_MAX_ATTEMPTS says */
    assert_int_equal(ss_store_open(store_url, &opts, &s, &err), SS_OK);
    *ret_fp = fp;
    return s;
}

/*
 * A swap whose first attempt failed and whose retry met 412 cannot tell from the
 * bytes whether the write that came between was its own: another writer deciding
 * from the same read may have written the very same bytes (the counter's next
 * value). Only the write's own identity can say.
 */
static void test_retry_after_lost_answer(void **state)
{
    ss_store *s = *state, *x;
    faultproxy *fp;
    ss_store_stat v0, v1, now;
    ss_err err = {{0}};
    uint64_t n[FP_KINDS];
    char key[64], *body;
    fresh_key(key, sizeof key, "retry");

    /* Another wrote "1" over v0; ours, refused once with 503 unsent, then 412: not ours. */
    create(s, key, "0");
    free(read_stat(s, key, &v0));
    assert_int_equal(ss_store_put_if(s, key, "1", 1, v0.etag, &v1, &err), SS_OK);
    x = faulty_store(&fp, FP_503, 1);
    assert_int_equal(ss_store_put_if(x, key, "1", 1, v0.etag, NULL, &err), SS_ERR_CHANGED);
    fp_counts(fp, n);
    assert_int_equal(n[FP_503], 1);
    ss_store_free(x);
    fp_stop(fp);
    body = read_stat(s, key, &now);
    assert_string_equal(body, "1");
    free(body);
    assert_string_equal(now.etag, v1.etag);

    /* Ours went through but its answer was lost; the retry's 412 is our own write. */
    x = faulty_store(&fp, FP_DROP_AFTER, 1);
    assert_int_equal(ss_store_put_if(x, key, "2", 1, v1.etag, &now, &err), SS_OK);
    fp_counts(fp, n);
    assert_int_equal(n[FP_DROP_AFTER], 1);
    ss_store_free(x);
    fp_stop(fp);
    assert_string_not_equal(now.etag, v1.etag);
    body = read_stat(s, key, &v1);
    assert_string_equal(body, "2");
    free(body);
    assert_string_equal(now.etag, v1.etag); /* the stat told is the object's */
    ss_store_delete(s, key, &err);
}

/* RGW behind a proxy that answers 200 for every 412: the stale write "succeeds". */
static void test_probe_refuses_ignoring_store(void **state)
{
    faultproxy *fp;
    ss_store *s = faulty_store(&fp, FP_OVERWRITE, 0);
    ss_err err = {{0}};
    (void)state;
    assert_int_equal(ss_store_probe_if_match(s, &err), SS_ERR_STORE);
    assert_non_null(strstr(err.msg, "ignores If-Match"));
    assert_null(strchr(err.msg, '\n'));
    ss_store_free(s);
    fp_stop(fp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stale_etag_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racers_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter_by_swaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_passes, setup, teardown)};
    const struct CMUnitTest s3_only[] = {
        cmocka_unit_test_setup_teardown(test_retry_after_lost_answer, setup, teardown),
        cmocka_unit_test(test_probe_refuses_ignoring_store)};
    unsigned char rnd[6];
    char tag[13];
    char dir[] = "/tmp/ss-cas-XXXXXX";
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    int failed;

    if (sodium_init() < 0) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    if (!mkdtemp(dir)) return 1;
    snprintf(store_url, sizeof store_url, "file://%s/store", dir);
    failed = cmocka_run_group_tests_name("s3store-cas/file", tests, NULL, NULL);
    if (!bucket || !getenv("AWS_ENDPOINT_URL")) {
        fprintf(stderr, "s3 backend: skipped (no RGW: run through ci/test.sh)\n");
        return failed;
    }
    snprintf(store_url, sizeof store_url, "s3://%s/cas-%s", bucket, tag);
    failed |= cmocka_run_group_tests_name("s3store-cas/s3", tests, NULL, NULL);
    failed |= cmocka_run_group_tests_name("s3store-cas/s3", s3_only, NULL, NULL);
    return failed;
}
