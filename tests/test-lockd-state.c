/*
 * test-lockd-state: lockd's state interface (lockd/ld_state.h) through its
 * two backends. One table of tests runs over three states: SQLite, a bucket
 * state on file://, and a bucket state on RGW (skipped, with a SKIP line,
 * without AWS_ENDPOINT_URL and S3SYNC_TEST_BUCKET: run through ci/test.sh).
 * Each test opens states of its own (a fresh database or prefix), with the
 * fake clock below for S6-S8. What only a bucket has (the caches S7 and S8,
 * its request counts, migrate, hostile objects, the If-Match probe) is
 * skipped on SQLite; on RGW the replicas race again through tests/faultproxy
 * answering PUTs 503 and losing their answers.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "faultproxy.h"
#include "ld_state.h"
#include "lockd.h"
#include "state_s3_json.h"

#define RACE_THREADS 4 /* threads taking fencing tokens, alternating over two handles */
#define RACE_EACH 50   /* tokens each takes */

enum { K_SQLITE, K_FILE, K_RGW };
static int kind;
static char tmp_root[] = "/tmp/ss-lockd-state-XXXXXX";
static char rgw_base[300]; /* s3://BUCKET/lockd-state-<random> */

static int64_t fake_now = 1700000000000;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}
static const ld_clock fake = {fake_clock, NULL};

/* A place for a state no other test uses: a database path or a bucket URL. */
static void fresh_where(char *out, size_t cap)
{
    static unsigned n;
    n++;
    if (kind == K_SQLITE)
        snprintf(out, cap, "%s/db-%u.sqlite", tmp_root, n);
    else if (kind == K_FILE)
        snprintf(out, cap, "file://%s/bucket-%u", tmp_root, n);
    else
        snprintf(out, cap, "%s/%u", rgw_base, n);
}

/* endpoint: NULL, or the store's (a faultproxy in front of RGW). */
static ss_rc open_via(const char *where, const char *endpoint, const unsigned char *secret,
                      ld_state **ret, ss_err *err)
{
    ss_store_opts opts = {.endpoint = endpoint};
    ld_state_s3_opts so = {.skew_ms = 2000,
                           .head_cache_ms = 1000,
                           .token_cache_ms = 5000,
                           .clock = &fake,
                           .secret = secret};
    ss_store *s = NULL;
    ss_rc rc;
    if (!strncmp(where, "s3://", 5) || !strncmp(where, "file://", 7)) {
        rc = ss_store_open(where, &opts, &s, err);
        if (rc) return rc;
        rc = ld_state_s3(s, &so, ret, err);
        if (rc) ss_store_free(s);
        return rc;
    }
    return ld_state_sqlite_open(where, ret, err);
}

static ld_state *open_ok(const char *where, const char *endpoint)
{
    ld_state *st = NULL;
    ss_err err = {{0}};
    ss_rc rc = open_via(where, endpoint, NULL, &st, &err);
    if (rc) fprintf(stderr, "open %s: %s\n", where, err.msg);
    assert_int_equal(rc, SS_OK);
    return st;
}

static void need_bucket(void)
{
    if (kind == K_SQLITE) skip();
}

static void repo_add(ld_state *st, const char *name, const char *url)
{
    int changed = 0;
    ss_err err = {{0}};
    ss_rc rc = ld_state_repo_put(st, name, url, &changed, &err);
    if (rc) fprintf(stderr, "repo %s: %s\n", name, err.msg);
    assert_int_equal(rc, SS_OK);
}

/* A state of its own at *where (kept for a second handle), holding repository r1. */
static ld_state *fresh_state(char *where, size_t cap)
{
    ld_state *st = NULL;
    fresh_where(where, cap);
    st = open_ok(where, NULL);
    repo_add(st, "r1", "s3://bk/r1");
    return st;
}

static void make_device(ld_device *d, const char *name, const char *repo)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->repo, sizeof d->repo, "%s", repo);
    d->created_ms = fake_now;
    randombytes_buf(d->hash, sizeof d->hash);
}

static ld_record read_ok(ld_state *st, const char *repo, int fresh)
{
    ld_record rec;
    ss_err err = {{0}};
    ss_rc rc = ld_state_read(st, repo, fresh, &rec, &err);
    if (rc) fprintf(stderr, "read %s: %s\n", repo, err.msg);
    assert_int_equal(rc, SS_OK);
    return rec;
}

/* --- decisions ------------------------------------------------------------------- */

/* A grant's core: the token next_fencing, next_fencing + 1 written. */
static ss_rc decide_take(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    uint64_t *got = ctx;
    (void)now;
    (void)err;
    *got = rec->repo.next_fencing++;
    *ret = LD_WRITE;
    return SS_OK;
}

/* Changes the record but says LD_KEEP, or refuses: nothing may be written either way. */
static ss_rc decide_keep(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)now;
    rec->repo.head = 77;
    rec->repo.next_fencing = 77;
    *ret = LD_KEEP;
    return ctx ? ss_fail(err, SS_ERR_CONFLICT, "refused by the test") : SS_OK;
}

typedef struct put_ctx {
    const char *device;
    uint64_t seq;
} put_ctx;

/* A lease of device (a new one unless it holds it) given PUT URLs of seq. */
static ss_rc decide_put(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    put_ctx *p = ctx;
    (void)err;
    if (!rec->leased || strcmp(rec->lease.device, p->device)) {
        memset(&rec->lease, 0, sizeof rec->lease);
        memset(rec->lease.id, 'a', LD_LEASE_ID_LEN);
        rec->lease.id[0] = p->device[strlen(p->device) - 1]; /* one id per device */
        snprintf(rec->lease.device, sizeof rec->lease.device, "%s", p->device);
        rec->lease.fencing = rec->repo.next_fencing++;
        rec->lease.granted_ms = now;
        rec->lease.expires_ms = now + 30000;
        rec->leased = 1;
    }
    rec->lease.put_seq = p->seq;
    rec->add_writer = 1;
    *ret = LD_WRITE;
    return SS_OK;
}

/* head = *ctx, the lease ended, and the writers above it forgotten (a rewind's). */
static ss_rc decide_head(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)now;
    (void)err;
    rec->repo.head = *(uint64_t *)ctx;
    rec->leased = 0;
    memset(&rec->lease, 0, sizeof rec->lease);
    rec->drop_writers = 1;
    *ret = LD_WRITE;
    return SS_OK;
}

static void update_ok(ld_state *st, const char *repo, ld_decide_fn fn, void *ctx)
{
    ss_err err = {{0}};
    ss_rc rc = ld_state_update(st, repo, fn, ctx, &fake, NULL, &err);
    if (rc) fprintf(stderr, "update %s: %s\n", repo, err.msg);
    assert_int_equal(rc, SS_OK);
}

/* --- every backend ------------------------------------------------------------- */

typedef struct names {
    char name[8][LD_NAME_MAX + 2]; /* "!" marks a revoked device */
    size_t n;
} names;

static int collect_repo(void *ctx, const ld_repo_row *r)
{
    names *n = ctx;
    snprintf(n->name[n->n++], sizeof n->name[0], "%s", r->name);
    return n->n == 8;
}

static int collect_device(void *ctx, const ld_device *d)
{
    names *n = ctx;
    snprintf(n->name[n->n++], sizeof n->name[0], "%s%s", d->name, d->revoked ? "!" : "");
    return n->n == 8;
}

static void test_repos(void **state)
{
    char where[400];
    ld_state *st = NULL;
    ld_record rec;
    names n = {0};
    int changed = 9;
    ss_err err = {{0}};
    uint64_t got = 0;
    (void)state;
    fresh_where(where, sizeof where);
    st = open_ok(where, NULL);
    assert_int_equal(ld_state_repo_put(st, "b", "s3://bk/b", &changed, &err), SS_OK);
    assert_int_equal(changed, 0); /* added: 1 means moved (main.c) */
    repo_add(st, "a-b", "s3://bk/a-b");
    repo_add(st, "a", "s3://bk/a");
    assert_int_equal(ld_state_repo_list(st, collect_repo, &n, &err), SS_OK);
    assert_int_equal(n.n, 3);
    assert_string_equal(n.name[0], "a"); /* by name, not by key ("a-b.json" < "a.json") */
    assert_string_equal(n.name[1], "a-b");
    assert_string_equal(n.name[2], "b");
    rec = read_ok(st, "b", 1);
    assert_int_equal(rec.repo.head, 0);
    assert_int_equal(rec.repo.next_fencing, 1);
    assert_false(rec.leased);

    update_ok(st, "b", decide_take, &got);
    assert_int_equal(ld_state_repo_put(st, "b", "s3://bk/b", &changed, &err), SS_OK);
    assert_int_equal(changed, 0);
    assert_int_equal(ld_state_repo_put(st, "b", "s3://other/b", &changed, &err), SS_OK);
    assert_int_equal(changed, 1);
    rec = read_ok(st, "b", 1);
    assert_string_equal(rec.repo.url, "s3://other/b");
    assert_int_equal(rec.repo.head, 0);
    assert_true(rec.repo.dirty);
    assert_int_equal(rec.repo.next_fencing, 2); /* the rest of the record kept */
    assert_int_equal(ld_state_read(st, "nope", 1, &rec, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "nope"));
    ld_state_close(st);
}

static void test_devices(void **state)
{
    char where[400];
    ld_state *st = NULL;
    ld_device a, b, twin, got;
    unsigned char h[LD_HASH_LEN], unknown[LD_HASH_LEN];
    names n = {0};
    ss_err err = {{0}};
    (void)state;
    st = fresh_state(where, sizeof where);
    make_device(&b, "dev-b", "r1");
    make_device(&a, "dev-a", "r1");
    a.read_only = 1;
    assert_int_equal(ld_state_device_add(st, &b, &err), SS_OK);
    assert_int_equal(ld_state_device_add(st, &a, &err), SS_OK);
    make_device(&twin, "dev-a", "r1");
    assert_int_equal(ld_state_device_add(st, &twin, &err), SS_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "dev-a"));

    assert_int_equal(ld_state_device_by_hash(st, a.hash, &got, h, &err), SS_OK);
    assert_string_equal(got.name, "dev-a");
    assert_string_equal(got.repo, "r1");
    assert_true(got.read_only);
    assert_false(got.revoked);
    assert_memory_equal(h, a.hash, LD_HASH_LEN);
    randombytes_buf(unknown, sizeof unknown);
    assert_int_equal(ld_state_device_by_hash(st, unknown, &got, h, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_state_device_by_hash(st, twin.hash, &got, h, &err), SS_ERR_NOT_FOUND);

    assert_int_equal(ld_state_device_revoke(st, "dev-b", &fake, &err), SS_OK);
    assert_int_equal(ld_state_device_revoke(st, "dev-b", &fake, &err), SS_OK); /* idempotent */
    assert_int_equal(ld_state_device_revoke(st, "dev-z", &fake, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_state_device_by_hash(st, b.hash, &got, h, &err), SS_OK);
    assert_true(got.revoked); /* at once on the revoking handle (S8) */
    assert_int_equal(ld_state_device_list(st, collect_device, &n, &err), SS_OK);
    assert_int_equal(n.n, 2);
    assert_string_equal(n.name[0], "dev-a");
    assert_string_equal(n.name[1], "dev-b!");
    ld_state_close(st);
}

static void test_update(void **state)
{
    char where[400];
    ld_state *st = NULL;
    ld_record rec, out;
    uint64_t got = 0;
    ss_err err = {{0}};
    (void)state;
    st = fresh_state(where, sizeof where);
    assert_int_equal(ld_state_update(st, "r1", decide_take, &got, &fake, &out, &err), SS_OK);
    assert_int_equal(got, 1);
    assert_int_equal(out.repo.next_fencing, 2);
    rec = read_ok(st, "r1", 1);
    assert_int_equal(rec.repo.next_fencing, 2);

    /* LD_KEEP and a refusal write nothing, whatever they did to the record. */
    assert_int_equal(ld_state_update(st, "r1", decide_keep, NULL, &fake, &out, &err), SS_OK);
    assert_int_equal(read_ok(st, "r1", 0).repo.head, 0); /* nor cached as decided */
    assert_int_equal(ld_state_update(st, "r1", decide_keep, "x", &fake, &out, &err),
                     SS_ERR_CONFLICT);
    assert_string_equal(err.msg, "refused by the test");
    rec = read_ok(st, "r1", 1);
    assert_int_equal(rec.repo.next_fencing, 2);
    assert_int_equal(rec.repo.head, 0);
    assert_int_equal(ld_state_update(st, "none", decide_take, &got, &fake, &out, &err),
                     SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "none"));
    ld_state_close(st);
}

static void test_writers(void **state)
{
    char where[400];
    ld_state *st = NULL;
    ld_device a, b;
    ld_writers w;
    put_ctx pa = {"dev-a", 1}, pb = {"dev-b", 1};
    uint64_t head = 0;
    ss_err err = {{0}};
    (void)state;
    st = fresh_state(where, sizeof where);
    make_device(&a, "dev-a", "r1");
    make_device(&b, "dev-b", "r1");
    assert_int_equal(ld_state_device_add(st, &a, &err), SS_OK);
    assert_int_equal(ld_state_device_add(st, &b, &err), SS_OK);
    update_ok(st, "r1", decide_put, &pa);
    update_ok(st, "r1", decide_put, &pa); /* again: still one name */
    update_ok(st, "r1", decide_put, &pb); /* another device got seq 1 after a's lease */
    assert_int_equal(ld_state_writers(st, "r1", 1, &w, &err), SS_OK);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.name[0], "dev-a");
    assert_string_equal(w.name[1], "dev-b");
    assert_int_equal(ld_state_writers(st, "r1", 2, &w, &err), SS_OK);
    assert_int_equal(w.n, 0);

    /* The last LD_STATE_WRITERS_KEPT sequences only, on a bucket. */
    for (pa.seq = 2; pa.seq <= LD_STATE_WRITERS_KEPT + 6; pa.seq++)
        update_ok(st, "r1", decide_put, &pa);
    assert_int_equal(ld_state_writers(st, "r1", LD_STATE_WRITERS_KEPT + 6, &w, &err), SS_OK);
    assert_int_equal(w.n, 1);
    assert_int_equal(ld_state_writers(st, "r1", 7, &w, &err), SS_OK);
    assert_int_equal(w.n, 1);
    assert_int_equal(ld_state_writers(st, "r1", 6, &w, &err), SS_OK);
    assert_int_equal(w.n, kind == K_SQLITE ? 1 : 0);

    /* A rewind to 10 forgets the writers above it. */
    head = 10;
    update_ok(st, "r1", decide_head, &head);
    assert_int_equal(ld_state_writers(st, "r1", 10, &w, &err), SS_OK);
    assert_int_equal(w.n, 1);
    assert_int_equal(ld_state_writers(st, "r1", 11, &w, &err), SS_OK);
    assert_int_equal(w.n, 0);
    ld_state_close(st);
}

static void test_secret_reopen(void **state)
{
    char where[400];
    ld_state *st = NULL;
    unsigned char s1[LD_SECRET_LEN], s2[LD_SECRET_LEN], zero[LD_SECRET_LEN] = {0};
    ss_err err = {{0}};
    (void)state;
    fresh_where(where, sizeof where);
    st = open_ok(where, NULL);
    assert_int_equal(ld_state_secret(st, s1, &err), SS_OK);
    ld_state_close(st);
    st = open_ok(where, NULL);
    assert_int_equal(ld_state_secret(st, s2, &err), SS_OK);
    ld_state_close(st);
    assert_memory_equal(s1, s2, LD_SECRET_LEN);
    assert_memory_not_equal(s1, zero, LD_SECRET_LEN);
    if (kind == K_SQLITE) return;
    /* A bucket holding another secret than the one a migrate brings is refused. */
    s2[0] ^= 1;
    assert_int_equal(open_via(where, NULL, s2, &st, &err), SS_ERR_CONFLICT);
    assert_null(st);
    assert_int_equal(open_via(where, NULL, s1, &st, &err), SS_OK);
    ld_state_close(st);
}

/* --- two replicas racing --------------------------------------------------------- */

typedef struct racer {
    ld_state *st;
    uint64_t got[RACE_EACH];
    unsigned retried; /* SS_ERR_TEMPORARY: LD_STATE_TRIES lost in a row, retried as a client */
    ss_rc rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    ss_err err = {{0}};
    for (unsigned i = 0; i < RACE_EACH && !r->rc;) {
        r->rc = ld_state_update(r->st, "r1", decide_take, &r->got[i], &fake, NULL, &err);
        if (r->rc == SS_ERR_TEMPORARY && r->retried < 100) {
            r->retried++;
            r->rc = SS_OK;
            continue;
        }
        i += !r->rc;
    }
    if (r->rc) fprintf(stderr, "racer: %s\n", err.msg);
    return NULL;
}

/* 4 threads on two handles (replicas) through endpoint (NULL: the store's own). lossy:
 * PUT answers get lost, so a token may be written but its grant never learn it (a gap, as a
 * client whose answer was lost): then next_fencing may run ahead, never a token twice. */
static void race_once(const char *endpoint, int lossy)
{
    char where[400];
    ld_state *st[2];
    racer r[RACE_THREADS];
    pthread_t t[RACE_THREADS];
    unsigned char seen[RACE_THREADS * RACE_EACH * 2] = {0};
    unsigned retried = 0;
    uint64_t next;
    struct timespec t0, t1;
    fresh_where(where, sizeof where);
    st[0] = open_ok(where, endpoint);
    st[1] = open_ok(where, endpoint);
    repo_add(st[0], "r1", "s3://bk/r1");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < RACE_THREADS; i++) {
        r[i] = (racer){.st = st[i % 2]};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (unsigned i = 0; i < RACE_THREADS; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (unsigned i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(r[i].rc, SS_OK);
        retried += r[i].retried;
        for (unsigned n = 0; n < RACE_EACH; n++) {
            assert_in_range(r[i].got[n], 1, sizeof seen - 1);
            assert_int_equal(seen[r[i].got[n]], 0); /* S2: no token handed out twice */
            seen[r[i].got[n]] = 1;
            if (n) assert_true(r[i].got[n] > r[i].got[n - 1]);
        }
    }
    /* No lost increment: one per grant, seen by either replica (lossy: gaps allowed). */
    next = read_ok(st[1], "r1", 1).repo.next_fencing;
    if (lossy)
        assert_true(next >= RACE_THREADS * RACE_EACH + 1);
    else
        assert_int_equal(next, RACE_THREADS * RACE_EACH + 1);
    fprintf(stderr,
            "race (%s%s): %u grants over 2 handles in %.2f s, %u retried after %d lost swaps, "
            "%" PRIu64 " tokens written unlearnt\n",
            kind == K_SQLITE ? "sqlite"
            : kind == K_FILE ? "file"
                             : "rgw",
            lossy ? ", PUT answers lost or 503" : "", RACE_THREADS * RACE_EACH,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, retried,
            LD_STATE_TRIES, next - 1 - RACE_THREADS * RACE_EACH);
    ld_state_close(st[0]);
    ld_state_close(st[1]);
}

/* On RGW also with PUTs answered 503 or their answers lost: s3store retries the PUT, meets
 * 412 and compares the object with its bytes; the record's nonce keeps two replicas' equal
 * decisions apart (without it, a token was handed out twice). */
static void test_race_replicas(void **state)
{
    faultproxy *fp = NULL;
    fp_rates rates = {.match = "PUT */repos/*"}; /* the start-up probe is no swap to retry */
    (void)state;
    race_once(NULL, 0);
    if (kind != K_RGW) return;
    fp = fp_start(getenv("AWS_ENDPOINT_URL"), 7);
    assert_non_null(fp);
    rates.permille[FP_DROP_AFTER] = 100; /* written, the answer lost */
    rates.permille[FP_503] = 100;        /* not written: another may win with the same bytes */
    fp_set(fp, &rates, 7);
    race_once(fp_url(fp), 1);
    fp_stop(fp);
}

/* --- bucket only: caches, costs ------------------------------------------------ */

/*
 * S7: a read without a decision may be head_cache_ms old, never older. S8: another replica
 * refuses a revoked token within token_cache_ms, the revoking one at once; an unknown token
 * stays unknown as long (negative answers are cached too).
 */
static void test_caches(void **state)
{
    char where[400];
    ld_state *a = NULL, *b = NULL;
    ld_device d, late, got;
    unsigned char h[LD_HASH_LEN];
    uint64_t tok = 0;
    ss_err err = {{0}};
    (void)state;
    need_bucket();
    a = fresh_state(where, sizeof where);
    b = open_ok(where, NULL);
    assert_int_equal(read_ok(a, "r1", 0).repo.next_fencing, 1);
    update_ok(b, "r1", decide_take, &tok);
    fake_now += 999;
    assert_int_equal(read_ok(a, "r1", 0).repo.next_fencing, 1); /* stale, within bounds */
    assert_int_equal(read_ok(a, "r1", 1).repo.next_fencing, 2); /* fresh: always the bucket */
    update_ok(b, "r1", decide_take, &tok);
    assert_int_equal(read_ok(a, "r1", 0).repo.next_fencing, 2); /* cached by the fresh read */
    fake_now += 1000;
    assert_int_equal(read_ok(a, "r1", 0).repo.next_fencing, 3);

    make_device(&d, "dev-a", "r1");
    make_device(&late, "dev-late", "r1");
    assert_int_equal(ld_state_device_add(a, &d, &err), SS_OK);
    assert_int_equal(ld_state_device_by_hash(a, d.hash, &got, h, &err), SS_OK);
    assert_int_equal(ld_state_device_by_hash(a, late.hash, &got, h, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_state_device_revoke(b, "dev-a", &fake, &err), SS_OK);
    assert_int_equal(ld_state_device_by_hash(b, d.hash, &got, h, &err), SS_OK);
    assert_true(got.revoked); /* the revoking replica: at once */
    assert_int_equal(ld_state_device_add(b, &late, &err), SS_OK);
    fake_now += 4999;
    assert_int_equal(ld_state_device_by_hash(a, d.hash, &got, h, &err), SS_OK);
    assert_false(got.revoked); /* the other: within token_cache_ms */
    assert_int_equal(ld_state_device_by_hash(a, late.hash, &got, h, &err), SS_ERR_NOT_FOUND);
    fake_now += 1;
    assert_int_equal(ld_state_device_by_hash(a, d.hash, &got, h, &err), SS_OK);
    assert_true(got.revoked);
    assert_int_equal(ld_state_device_by_hash(a, late.hash, &got, h, &err), SS_OK);
    ld_state_close(a);
    ld_state_close(b);
}

/* Requests since *n0 (ld_state_requests, the /metrics counter), and *n0 moved to now. */
static uint64_t since(ld_state *st, uint64_t *n0)
{
    uint64_t d = ld_state_requests(st) - *n0;
    *n0 = ld_state_requests(st);
    return d;
}

/* What the bucket is asked: an update is a GET and, to write, a PUT; reads through the caches
 * none. Printed: the figures docs/PROTOCOL.md "Costs" quotes. */
static void test_costs(void **state)
{
    char where[400];
    ld_state *st = NULL;
    ld_device d, got;
    unsigned char h[LD_HASH_LEN];
    uint64_t tok = 0, n0 = 0, opened, write, keep, cached, tokens;
    ss_err err = {{0}};
    (void)state;
    need_bucket();
    fresh_where(where, sizeof where);
    st = open_ok(where, NULL);
    opened = since(st, &n0);
    repo_add(st, "r1", "s3://bk/r1");
    make_device(&d, "dev-a", "r1");
    assert_int_equal(ld_state_device_add(st, &d, &err), SS_OK);
    (void)since(st, &n0);
    update_ok(st, "r1", decide_take, &tok);
    write = since(st, &n0);
    update_ok(st, "r1", decide_keep, NULL);
    keep = since(st, &n0);
    for (int i = 0; i < 100; i++)
        (void)read_ok(st, "r1", 0);
    cached = since(st, &n0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ld_state_device_by_hash(st, d.hash, &got, h, &err), SS_OK);
    tokens = since(st, &n0);
    fprintf(stderr,
            "costs: open %" PRIu64 " requests (probe + meta.json), LD_WRITE %" PRIu64
            ", LD_KEEP %" PRIu64 ", 100 cached head reads %" PRIu64 ", 100 token checks %" PRIu64
            "\n",
            opened, write, keep, cached, tokens);
    assert_int_equal(write, 2);  /* GET + PUT If-Match */
    assert_int_equal(keep, 1);   /* GET */
    assert_int_equal(cached, 0); /* the update left the record in the cache */
    assert_int_equal(tokens, 0); /* device_add cached what it wrote */
    ld_state_close(st);
}

/* A commit's decision: head = put_seq with log/<seq>'s stat, the lease kept. */
static ss_rc decide_commit(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)ctx;
    (void)now;
    (void)err;
    rec->repo.head = rec->lease.put_seq;
    snprintf(rec->repo.head_etag, sizeof rec->repo.head_etag, "etag-%" PRIu64, rec->repo.head);
    rec->repo.head_size = 100 + rec->repo.head;
    *ret = LD_WRITE;
    return SS_OK;
}

static void test_migrate(void **state)
{
    char path[400], where[400];
    ld_state *from = NULL, *to = NULL;
    unsigned char s1[LD_SECRET_LEN], s2[LD_SECRET_LEN];
    ld_device a, b;
    ld_record x, y;
    ld_writers w;
    names n = {0};
    put_ctx pa = {"dev-a", 1};
    ss_err err = {{0}};
    (void)state;
    need_bucket();
    snprintf(path, sizeof path, "%s/migrate-%d.sqlite", tmp_root, kind);
    assert_int_equal(ld_state_sqlite_open(path, &from, &err), SS_OK);
    repo_add(from, "r1", "s3://bk/r1");
    repo_add(from, "r2", "s3://bk/r2");
    make_device(&a, "dev-a", "r1");
    make_device(&b, "dev-b", "r2");
    assert_int_equal(ld_state_device_add(from, &a, &err), SS_OK);
    assert_int_equal(ld_state_device_add(from, &b, &err), SS_OK);
    assert_int_equal(ld_state_device_revoke(from, "dev-b", &fake, &err), SS_OK);
    update_ok(from, "r1", decide_put, &pa);
    update_ok(from, "r1", decide_commit, NULL);
    pa.seq = 2;
    update_ok(from, "r1", decide_put, &pa);
    assert_int_equal(ld_state_secret(from, s1, &err), SS_OK);

    fresh_where(where, sizeof where);
    assert_int_equal(open_via(where, NULL, s1, &to, &err), SS_OK);
    assert_int_equal(ld_state_migrate(from, to, stderr, &err), SS_OK);
    assert_int_equal(ld_state_secret(to, s2, &err), SS_OK);
    assert_memory_equal(s1, s2, LD_SECRET_LEN);
    x = read_ok(from, "r1", 1);
    y = read_ok(to, "r1", 1);
    assert_int_equal(y.repo.head, 1);
    assert_int_equal(y.repo.next_fencing, x.repo.next_fencing);
    assert_string_equal(y.repo.head_etag, "etag-1");
    assert_int_equal(y.repo.head_size, 101);
    assert_true(y.leased);
    assert_memory_equal(&y.lease, &x.lease, sizeof x.lease);
    assert_int_equal(ld_state_writers(to, "r1", 2, &w, &err), SS_OK);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.name[0], "dev-a");
    assert_int_equal(ld_state_writers(to, "r1", 1, &w, &err), SS_OK);
    assert_int_equal(w.n, 1);
    assert_string_equal(read_ok(to, "r2", 1).repo.url, "s3://bk/r2");
    assert_int_equal(ld_state_device_list(to, collect_device, &n, &err), SS_OK);
    assert_int_equal(n.n, 2);
    assert_string_equal(n.name[1], "dev-b!"); /* revoked stays revoked */

    /* Into a bucket that holds a state already: refused, and nothing of it changed. */
    assert_int_equal(ld_state_migrate(from, to, stderr, &err), SS_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "r1"));
    assert_int_equal(read_ok(to, "r1", 1).repo.next_fencing, x.repo.next_fencing);
    ld_state_close(to);
    ld_state_close(from);
}

#define GOOD_RECORD                                                                                \
    "{\"v\":%s,\"repo\":\"%s\",\"url\":\"s3://bk/x\",\"head\":%s,\"next_fencing\":1,"              \
    "\"dirty\":false,\"dirty_gen\":0,\"rewinding\":false,\"urls_until_ms\":0,"                     \
    "\"head_object\":null,\"lease\":null,\"writers\":[],"                                          \
    "\"nonce\":\"0123456789abcdef0123456789abcdef\"}"

static void put_raw(ss_store *s, const char *key, const char *body, size_t len)
{
    ss_err err = {{0}};
    assert_int_equal(ss_store_put(s, key, body, len, 0, &err), SS_OK);
}

/* key's object refused (SS_ERR_INTEGRITY naming key) by a read and an update, unchanged. */
static void expect_refused(ld_state *st, ss_store *s, const char *repo)
{
    char key[128];
    void *before = NULL, *after = NULL;
    size_t n1 = 0, n2 = 0;
    uint64_t got = 0;
    ld_record rec;
    ss_err err = {{0}};
    snprintf(key, sizeof key, "repos/%s.json", repo);
    assert_int_equal(ss_store_get_max(s, key, 1u << 20, &before, &n1, &err), SS_OK);
    assert_int_equal(ld_state_read(st, repo, 1, &rec, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, key));
    assert_int_equal(ld_state_update(st, repo, decide_take, &got, &fake, NULL, &err),
                     SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, key));
    assert_int_equal(ss_store_get_max(s, key, 1u << 20, &after, &n2, &err), SS_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
    free(before);
    free(after);
}

/* repos/<repo>.json: GOOD_RECORD with v, its "repo" and head as given, padded to len. */
static void put_record_raw(ss_store *s, const char *repo, const char *v, const char *name,
                           const char *head, size_t len)
{
    char key[128], *body = calloc(1, len + 1024);
    assert_non_null(body);
    snprintf(key, sizeof key, "repos/%s.json", repo);
    snprintf(body, 1024, GOOD_RECORD, v, name, head);
    if (len > strlen(body)) memset(body + strlen(body), ' ', len - strlen(body));
    put_raw(s, key, body, strlen(body));
    free(body);
}

static void test_hostile(void **state)
{
    static const char *const bad[] = {"h1", "h2", "h3", "h4", "h5", "h6"};
    names n = {0};
    char where[400], body[256], key[128];
    ss_store *s = NULL;
    ld_state *st = NULL;
    ld_device d, got;
    unsigned char h[LD_HASH_LEN];
    ss_err err = {{0}};
    (void)state;
    need_bucket();
    st = fresh_state(where, sizeof where);
    assert_int_equal(ss_store_open(where, NULL, &s, &err), SS_OK);
    put_record_raw(s, "good", "1", "good", "0", 0);
    assert_int_equal(read_ok(st, "good", 1).repo.head, 0); /* the template itself is fine */
    put_raw(s, "repos/h1.json", "not json", 8);
    put_record_raw(s, "h2", "2", "h2", "0", 0);
    put_record_raw(s, "h3", "1", "h3", "\"x\"", 0);
    put_record_raw(s, "h4", "1", "h4", "0", (256u << 10) + 1); /* past the bounded read */
    put_record_raw(s, "h5", "1", "other", "0", 0);
    put_record_raw(s, "h6", "1", "h6", "-1", 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(st, s, bad[i]);

    make_device(&d, "dev-a", "r1");
    s3st_device_key(d.hash, key);
    snprintf(body, sizeof body,
             "{\"v\":1,\"name\":\"../x\",\"repo\":\"r1\",\"read_only\":false,\"revoked\":false,"
             "\"created_ms\":0}");
    put_raw(s, key, body, strlen(body));
    assert_int_equal(ld_state_device_by_hash(st, d.hash, &got, h, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, key));
    assert_int_equal(ss_store_delete(s, key, &err), SS_OK);
    /* A name naming another device's object; a key no device has. */
    make_device(&d, "dev-b", "r1");
    assert_int_equal(ld_state_device_add(st, &d, &err), SS_OK);
    sodium_bin2hex(key, sizeof key, d.hash, LD_HASH_LEN);
    snprintf(body, sizeof body, "{\"v\":1,\"hash\":\"%s\"}", key);
    put_raw(s, "names/dev-c.json", body, strlen(body));
    assert_int_equal(ld_state_device_revoke(st, "dev-c", &fake, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "names/dev-c.json"));
    put_raw(s, "devices/zz.json", "{}", 2);
    assert_int_equal(ld_state_device_list(st, collect_device, &n, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "devices/zz.json"));
    ss_store_free(s);
    ld_state_close(st);
}

/* RGW behind a proxy answering 200 for every 412: a store that ignores If-Match. */
static void test_ignoring_store(void **state)
{
    char where[400];
    faultproxy *fp = NULL;
    fp_rates rates = {.match = "PUT *"};
    ss_store_opts opts = {0};
    ss_store *s = NULL;
    ld_state *st = NULL;
    ld_state_s3_opts so = {.clock = &fake};
    ss_err err = {{0}};
    (void)state;
    if (kind != K_RGW) {
        fprintf(stderr, "SKIP test_ignoring_store: file:// keeps If-Match; the liar is RGW "
                        "behind tests/faultproxy\n");
        skip();
    }
    fp = fp_start(getenv("AWS_ENDPOINT_URL"), 1);
    assert_non_null(fp);
    rates.permille[FP_OVERWRITE] = 1000;
    fp_set(fp, &rates, 1);
    opts.endpoint = fp_url(fp);
    fresh_where(where, sizeof where);
    assert_int_equal(ss_store_open(where, &opts, &s, &err), SS_OK);
    assert_int_equal(ld_state_s3(s, &so, &st, &err), SS_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "If-Match"));
    assert_null(strchr(err.msg, '\n'));
    ss_store_free(s); /* still the caller's on failure */
    fp_stop(fp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repos),          cmocka_unit_test(test_devices),
        cmocka_unit_test(test_update),         cmocka_unit_test(test_writers),
        cmocka_unit_test(test_secret_reopen),  cmocka_unit_test(test_race_replicas),
        cmocka_unit_test(test_caches),         cmocka_unit_test(test_costs),
        cmocka_unit_test(test_migrate),        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_ignoring_store),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    unsigned char rnd[6];
    char tag[13];
    int failed = 0;

    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    kind = K_SQLITE;
    failed |= cmocka_run_group_tests_name("lockd-state/sqlite", tests, NULL, NULL);
    kind = K_FILE;
    failed |= cmocka_run_group_tests_name("lockd-state/file", tests, NULL, NULL);
    if (!bucket || !getenv("AWS_ENDPOINT_URL")) {
        fprintf(stderr, "SKIP lockd-state/rgw: no RGW (AWS_ENDPOINT_URL, S3SYNC_TEST_BUCKET "
                        "unset: run through ci/test.sh)\n");
        return failed;
    }
    kind = K_RGW;
    snprintf(rgw_base, sizeof rgw_base, "s3://%s/lockd-state-%s", bucket, tag);
    failed |= cmocka_run_group_tests_name("lockd-state/rgw", tests, NULL, NULL);
    return failed;
}
