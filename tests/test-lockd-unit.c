/*
 * test-lockd-unit: s3sync-lockd's modules through their C API (ld_lockd), no
 * daemon and no network: the lease state machine with a fake clock (time
 * moves only when a test says so: the ld_clock seam of lease.c invariant 6),
 * a temporary SQLite database and a file:// store; key rules, tokens,
 * config. Always runs. The daemon over HTTP: test-lockd-http.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "lockd.h"
#include "s3store.h"
#include "ld_state.h"

static char tmp_root[] = "/tmp/ss-lockd-unit-XXXXXX";
static char tag[17]; /* random per run: file names */

/* ======================================================================== */
/* lockd/unit: the lease module with a fake clock                           */
/* ======================================================================== */

static int64_t fake_now = 1700000000000;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}
static const ld_clock fake = {fake_clock, NULL};

typedef struct unit {
    char dir[512], db_path[600], store_url[600];
    ld_db *db;
    ld_state *st; /* over db */
    ld_leases *leases;
    ss_store *store; /* a second handle on the same directory, to play the device */
    ld_device a, b, ro, other;
} unit;

static void unit_open_leases(unit *u)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    ld_lease_limits lim = {1000, 600000};
    assert_int_equal(ld_db_open(u->db_path, &u->db, &err), SS_OK);
    assert_int_equal(ld_state_sqlite(u->db, &u->st, &err), SS_OK);
    assert_int_equal(ld_leases_new(u->st, &fake, NULL, &lim, &u->leases, &err), SS_OK);
    assert_int_equal(ss_store_open(u->store_url, NULL, &s, &err), SS_OK);
    assert_int_equal(ld_leases_add_repo(u->leases, "r1", s, &err), SS_OK);
}

static void unit_close_leases(unit *u)
{
    ld_leases_free(u->leases);
    ld_state_close(u->st);
    ld_db_close(u->db);
    u->leases = NULL;
    u->st = NULL;
    u->db = NULL;
}

static void device(ld_device *d, const char *name, const char *repo, int ro)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->repo, sizeof d->repo, "%s", repo);
    d->read_only = ro;
}

static int unit_setup(void **state)
{
    static unsigned n;
    unit *u = calloc(1, sizeof *u);
    ss_err err = {{0}};
    int changed = 0;
    snprintf(u->dir, sizeof u->dir, "%s/unit-%u", tmp_root, n++);
    assert_int_equal(mkdir(u->dir, 0700), 0);
    snprintf(u->db_path, sizeof u->db_path, "%s/lockd.db", u->dir);
    snprintf(u->store_url, sizeof u->store_url, "file://%s/store", u->dir);
    assert_int_equal(ld_db_open(u->db_path, &u->db, &err), SS_OK);
    assert_int_equal(ld_db_repo_put(u->db, "r1", u->store_url, &changed, &err), SS_OK);
    ld_db_close(u->db);
    u->db = NULL;
    unit_open_leases(u);
    assert_int_equal(ss_store_open(u->store_url, NULL, &u->store, &err), SS_OK);
    /* The file backend hands qsort a NULL array for an empty directory
     * (UBSan reports it); a repository always has its config anyway. */
    assert_int_equal(ss_store_put(u->store, "config", "c", 1, 0, &err), SS_OK);
    device(&u->a, "dev-a", "r1", 0);
    device(&u->b, "dev-b", "r1", 0);
    device(&u->ro, "dev-ro", "r1", 1);
    device(&u->other, "dev-x", "r2", 0);
    *state = u;
    return 0;
}

static int unit_teardown(void **state)
{
    unit *u = *state;
    unit_close_leases(u);
    ss_store_free(u->store);
    free(u);
    return 0;
}

static void put_log(ss_store *s, uint64_t seq)
{
    char key[LD_LOG_KEY_SIZE];
    ss_err err = {{0}};
    ld_log_key(seq, key);
    ss_rc rc = ss_store_put(s, key, "tx", 2, SS_PUT_CREATE_ONLY, &err);
    if (rc) fprintf(stderr, "put %s: %s\n", key, err.msg);
    assert_int_equal(rc, SS_OK);
}

static uint64_t head_of(unit *u)
{
    uint64_t head = 0;
    ld_outcome o;
    assert_int_equal(ld_lease_head(u->leases, "r1", &head, NULL, NULL, &o), SS_OK);
    return head;
}

/* GET head's log/<seq> is the bucket's: ETag and size as a HEAD gives them now. */
static void expect_head_object(unit *u, uint64_t seq)
{
    char key[32];
    uint64_t head = 0;
    ss_store_stat want, got;
    ss_err err = {{0}};
    ld_outcome o;
    ld_log_key(seq, key);
    assert_int_equal(ss_store_head(u->store, key, &want, &err), SS_OK);
    assert_int_equal(ld_lease_head(u->leases, "r1", &head, NULL, &got, &o), SS_OK);
    assert_int_equal(head, seq);
    assert_string_equal(got.etag, want.etag);
    assert_int_equal(got.size, want.size);
}

static void acquire_ok(unit *u, const ld_device *d, int64_t ttl_ms, ld_lease *l)
{
    ld_outcome o;
    ss_rc rc = ld_lease_acquire(u->leases, d, "r1", ttl_ms, l, &o);
    if (rc) fprintf(stderr, "acquire: %s\n", o.err.msg);
    assert_int_equal(rc, SS_OK);
}

static void test_unit_one_holder(void **state)
{
    unit *u = *state;
    ld_lease la, lb;
    ld_outcome o;
    int leased = 0;
    uint64_t head = 9;

    acquire_ok(u, &u->a, 10000, &la);
    assert_int_equal(la.fencing, 1);
    assert_int_equal(la.head, 0);
    assert_int_equal(la.expires_in_ms, 10000);
    fake_now += 4000;
    /* Invariant 1: nobody else, and not the holder either, gets a second lease. */
    assert_int_equal(ld_lease_acquire(u->leases, &u->b, "r1", 5000, &lb, &o), SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_LEASE_HELD);
    assert_int_equal(o.retry_after_ms, 6000);
    assert_string_equal(o.holder, "dev-a");
    assert_int_equal(ld_lease_acquire(u->leases, &u->a, "r1", 5000, &lb, &o), SS_ERR_CONFLICT);
    assert_int_equal(ld_lease_head(u->leases, "r1", &head, &leased, NULL, &o), SS_OK);
    assert_int_equal(head, 0);
    assert_true(leased);
    /* Released: free for the other device, with a greater fencing token. */
    assert_int_equal(ld_lease_release(u->leases, &u->a, "r1", la.id, la.fencing, &o), SS_OK);
    acquire_ok(u, &u->b, 5000, &lb);
    assert_true(lb.fencing > la.fencing);
    assert_string_not_equal(lb.id, la.id);
}

static void test_unit_expiry_takeover(void **state)
{
    unit *u = *state;
    ld_lease la, lb, tmp;
    ld_outcome o;
    uint64_t seq, head;
    int64_t rem;
    int rel = 0;

    acquire_ok(u, &u->a, 2000, &la);
    fake_now += 1999;
    assert_int_equal(ld_lease_acquire(u->leases, &u->b, "r1", 2000, &lb, &o), SS_ERR_CONFLICT);
    assert_int_equal(o.retry_after_ms, 1);
    fake_now += 1; /* exactly at expires_ms: expired */
    assert_int_equal(ld_lease_renew(u->leases, &u->a, "r1", la.id, la.fencing, 2000, &tmp, &o),
                     SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_LEASE);
    acquire_ok(u, &u->b, 2000, &lb);
    assert_true(lb.fencing > la.fencing);
    /* The old holder is fenced off everywhere. */
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->a, "r1", la.id, la.fencing, &seq, &head, &rem, &o),
        SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_LEASE);
    put_log(u->store, 1);
    assert_int_equal(
        ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 1, 0, &tmp, &rel, &o),
        SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_LEASE);
    assert_int_equal(ld_lease_release(u->leases, &u->a, "r1", la.id, la.fencing, &o),
                     SS_ERR_CONFLICT);
    assert_int_equal(head_of(u), 0);
    /* The new holder's lease is intact. */
    assert_int_equal(
        ld_lease_commit(u->leases, &u->b, "r1", lb.id, lb.fencing, 1, 1, &tmp, &rel, &o), SS_OK);
    assert_int_equal(head_of(u), 1);
    assert_true(rel);
}

static void test_unit_renew(void **state)
{
    unit *u = *state;
    ld_lease la, r;
    ld_outcome o;
    acquire_ok(u, &u->a, 2000, &la);
    fake_now += 1500;
    assert_int_equal(ld_lease_renew(u->leases, &u->a, "r1", la.id, la.fencing, 2000, &r, &o),
                     SS_OK);
    assert_int_equal(r.fencing, la.fencing); /* renewal is the same lease */
    assert_int_equal(r.expires_in_ms, 2000);
    fake_now += 1500; /* past the first expiry, before the renewed one */
    assert_int_equal(ld_lease_acquire(u->leases, &u->b, "r1", 2000, &r, &o), SS_ERR_CONFLICT);
    assert_int_equal(ld_lease_renew(u->leases, &u->b, "r1", la.id, la.fencing, 2000, &r, &o),
                     SS_ERR_CONFLICT); /* another device cannot renew it */
    assert_int_equal(o.why, LD_WHY_STALE_LEASE);
    assert_int_equal(ld_lease_renew(u->leases, &u->a, "r1", la.id, la.fencing, 0, &r, &o),
                     SS_ERR_INVALID);
    assert_int_equal(o.why, LD_WHY_BAD_REQUEST);
    assert_int_equal(ld_lease_acquire(u->leases, &u->b, "r1", 600001, &r, &o), SS_ERR_INVALID);
}

static void test_unit_stale_fencing(void **state)
{
    unit *u = *state;
    ld_lease la, tmp;
    ld_outcome o;
    int rel = 0;
    acquire_ok(u, &u->a, 5000, &la);
    put_log(u->store, 1);
    assert_int_equal(
        ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing + 1, 1, 0, &tmp, &rel, &o),
        SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_FENCING);
    assert_int_equal(
        ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing - 1, 1, 0, &tmp, &rel, &o),
        SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_FENCING);
    assert_int_equal(head_of(u), 0);
}

static void test_unit_commit(void **state)
{
    unit *u = *state;
    ld_lease la, c;
    ld_outcome o;
    uint64_t seq = 0, head = 0;
    int64_t rem = 0;
    int rel = 1;

    acquire_ok(u, &u->a, 60000, &la);
    fake_now += 10000;
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->a, "r1", la.id, la.fencing, &seq, &head, &rem, &o),
        SS_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(rem, 50000);
    /* Nothing uploaded: refused. */
    assert_int_equal(ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 1, 0, &c, &rel, &o),
                     SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_OBJECT_MISSING);
    put_log(u->store, 1);
    put_log(u->store, 2);
    assert_int_equal(ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 2, 0, &c, &rel, &o),
                     SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_BAD_SEQ);
    assert_int_equal(ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 1, 0, &c, &rel, &o),
                     SS_OK);
    assert_int_equal(c.head, 1);
    assert_false(rel);
    expect_head_object(u, 1);
    /* A repeated commit (its answer lost) is recognised, not re-applied. */
    assert_int_equal(ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 1, 0, &c, &rel, &o),
                     SS_OK);
    assert_int_equal(head_of(u), 1);
    /* The lease was kept: the next sequence under it. */
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->a, "r1", la.id, la.fencing, &seq, &head, &rem, &o),
        SS_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(ld_lease_commit(u->leases, &u->a, "r1", la.id, la.fencing, 2, 1, &c, &rel, &o),
                     SS_OK);
    assert_true(rel);
    assert_int_equal(head_of(u), 2);
    expect_head_object(u, 2);
    assert_int_equal(ld_lease_release(u->leases, &u->a, "r1", la.id, la.fencing, &o),
                     SS_ERR_CONFLICT); /* already released by the commit */
}

static void test_unit_reconcile(void **state)
{
    unit *u = *state;
    ld_outcome o;
    uint64_t head = 0;
    ss_err err = {{0}};
    assert_int_equal(ld_lease_reconcile(u->leases, "r1", &head, &o), SS_OK);
    assert_int_equal(head, 0);
    for (uint64_t s = 1; s <= 3; s++)
        put_log(u->store, s);
    put_log(u->store, 5); /* after a gap: not reachable */
    assert_int_equal(ss_store_put(u->store, "log/junk", "x", 1, 0, &err), SS_OK);
    assert_int_equal(ss_store_put(u->store, "log/0001", "x", 1, 0, &err), SS_OK);
    assert_int_equal(ld_lease_reconcile(u->leases, "r1", &head, &o), SS_OK);
    assert_int_equal(head, 3);
    expect_head_object(u, 3);
    put_log(u->store, 4);
    assert_int_equal(ld_lease_reconcile(u->leases, "r1", &head, &o), SS_OK);
    assert_int_equal(head, 5);
    assert_int_equal(head_of(u), 5);
    expect_head_object(u, 5);
}

/* Invariant 5: a lease that ends after PUT URLs were issued, uncommitted,
 * makes the next grant look at the bucket first. */
static void test_unit_dirty_end(void **state)
{
    unit *u = *state;
    ld_lease la, lb;
    ld_outcome o;
    uint64_t seq, head;
    int64_t rem;

    acquire_ok(u, &u->a, 2000, &la);
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->a, "r1", la.id, la.fencing, &seq, &head, &rem, &o),
        SS_OK);
    put_log(u->store, 1); /* uploaded, then the holder vanished */
    fake_now += 2000;
    acquire_ok(u, &u->b, 2000, &lb);
    assert_int_equal(lb.head, 1); /* not 0: log/1 is taken */
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->b, "r1", lb.id, lb.fencing, &seq, &head, &rem, &o),
        SS_OK);
    assert_int_equal(seq, 2);
    put_log(u->store, 2);
    assert_int_equal(ld_lease_release(u->leases, &u->b, "r1", lb.id, lb.fencing, &o), SS_OK);
    acquire_ok(u, &u->a, 2000, &la);
    assert_int_equal(la.head, 2);
    /* A clean release does not cost a bucket listing, and head is kept. */
    assert_int_equal(ld_lease_release(u->leases, &u->a, "r1", la.id, la.fencing, &o), SS_OK);
    acquire_ok(u, &u->b, 2000, &lb);
    assert_int_equal(lb.head, 2);
}

/* Dirty while a lease is live (start-up reconciliation failed, or the
 * repository moved): PUT URLs are signed only after reconciling. */
static void test_unit_dirty_live(void **state)
{
    unit *u = *state;
    ld_lease la;
    ld_outcome o;
    uint64_t seq = 0, head = 0;
    int64_t rem;
    ss_err err = {{0}};
    acquire_ok(u, &u->a, 5000, &la);
    put_log(u->store, 1);
    assert_int_equal(ld_db_repo_mark_dirty(u->db, "r1", &err), SS_OK);
    assert_int_equal(
        ld_lease_begin_put(u->leases, &u->a, "r1", la.id, la.fencing, &seq, &head, &rem, &o),
        SS_OK);
    assert_int_equal(head, 1);
    assert_int_equal(seq, 2);
}

static void test_unit_fencing_survives_reopen(void **state)
{
    unit *u = *state;
    ld_lease l;
    ld_outcome o;
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        acquire_ok(u, i % 2 ? &u->a : &u->b, 1000, &l);
        assert_true(l.fencing > last);
        last = l.fencing;
        fake_now += 1000; /* expire it instead of releasing: takeover path */
    }
    unit_close_leases(u);
    unit_open_leases(u);
    acquire_ok(u, &u->a, 1000, &l);
    assert_true(l.fencing > last);
    assert_int_equal(ld_lease_release(u->leases, &u->a, "r1", l.id, l.fencing, &o), SS_OK);
}

static void test_unit_access(void **state)
{
    unit *u = *state;
    ld_lease l;
    ld_outcome o;
    uint64_t seq, head;
    int64_t rem;
    assert_int_equal(ld_lease_acquire(u->leases, &u->ro, "r1", 1000, &l, &o), SS_ERR_AUTH);
    assert_int_equal(o.why, LD_WHY_READ_ONLY);
    assert_int_equal(ld_lease_access(u->leases, &u->ro, "r1", 0, &o), SS_OK);
    assert_int_equal(ld_lease_acquire(u->leases, &u->other, "r1", 1000, &l, &o), SS_ERR_AUTH);
    assert_int_equal(o.why, LD_WHY_FOREIGN);
    /* A device of an unknown repository learns it is foreign first. */
    assert_int_equal(ld_lease_access(u->leases, &u->other, "nope", 0, &o), SS_ERR_AUTH);
    assert_int_equal(o.why, LD_WHY_FOREIGN);
    device(&u->other, "dev-y", "nope", 0);
    assert_int_equal(ld_lease_access(u->leases, &u->other, "nope", 0, &o), SS_ERR_NOT_FOUND);
    assert_int_equal(o.why, LD_WHY_NO_REPO);
    assert_int_equal(ld_lease_begin_put(u->leases, &u->a, "r1", "0123456789abcdef0123456789abcdef",
                                        1, &seq, &head, &rem, &o),
                     SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_STALE_LEASE);
}

static void test_unit_keys(void **state)
{
    static const char *const good[] = {"config", "keys/0123456789abcdef",
                                       "log/00000000000000000001",
                                       "data/00000000000000000001-00ff00ff00ff00ff", "a.b/c-d_e"};
    static const char *const bad[] = {"",    "/log", "log//x", "log/../config", "..",    ".",
                                      "a/.", "a b",  "a\\b",   "log/%2e%2e",    "k?x=1", "a\nb"};
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(ld_key_ok(good[i], 0, 0));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(ld_key_ok(bad[i], 0, 0));
    assert_true(ld_key_ok("", 1, 1));
    assert_true(ld_key_ok("log/", 1, 1));
    assert_false(ld_key_ok("log/", 0, 0));

    assert_true(ld_put_key_ok("log/00000000000000000008", 7));
    assert_false(ld_put_key_ok("log/00000000000000000007", 7));
    assert_false(ld_put_key_ok("log/00000000000000000009", 7));
    assert_false(ld_put_key_ok("log/0000000000000000008", 7));
    assert_true(ld_put_key_ok("data/00000000000000000008-0123456789abcdef", 7));
    assert_false(ld_put_key_ok("data/00000000000000000007-0123456789abcdef", 7));
    assert_false(ld_put_key_ok("data/00000000000000000008-0123456789ABCDEF", 7));
    assert_false(ld_put_key_ok("data/00000000000000000008-0123456789abcde", 7));
    assert_true(ld_put_key_ok("checkpoints/00000000000000000007", 7));
    assert_false(ld_put_key_ok("checkpoints/00000000000000000008", 7));
    assert_false(ld_put_key_ok("checkpoints/00000000000000000000", 7));
    assert_true(ld_put_key_ok("keys/0123456789abcdef", 7));
    assert_true(ld_put_key_ok("config", 7));
    assert_false(ld_put_key_ok("config2", 7));
    assert_false(ld_put_key_ok("other", 7));

    assert_true(ld_name_ok("photos-2.x_y"));
    assert_false(ld_name_ok(".hidden"));
    assert_false(ld_name_ok("a/b"));
    assert_false(ld_name_ok(""));
}

static void test_unit_auth(void **state)
{
    unit *u = *state;
    unsigned char secret[32], hash[LD_HASH_LEN];
    char tok[LD_TOKEN_LEN + 1], hdr[100];
    ld_device d;
    ld_auth_result ar;
    ss_err err = {{0}};

    ld_db_secret(u->db, secret);
    ld_auth_token_new(tok);
    assert_int_equal(strlen(tok), LD_TOKEN_LEN);
    ld_auth_hash(secret, tok, hash);
    assert_int_equal(ld_db_device_add(u->db, "dev-a", "r1", 0, hash, fake_now, &err), SS_OK);
    assert_int_equal(ld_db_device_add(u->db, "dev-a", "r1", 0, hash, fake_now, &err),
                     SS_ERR_EXISTS);

    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    assert_int_equal(ld_auth_check(u->st, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_OK);
    assert_string_equal(d.name, "dev-a");
    assert_string_equal(d.repo, "r1");
    assert_int_equal(ld_auth_check(u->st, secret, NULL, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_MISSING);
    assert_int_equal(ld_auth_check(u->st, secret, "Basic abc", &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_MISSING);
    assert_int_equal(ld_auth_check(u->st, secret, "Bearer short", &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_BAD);
    hdr[10] ^= 1; /* one character off */
    assert_int_equal(ld_auth_check(u->st, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_BAD);
    hdr[10] ^= 1;

    /* Revocation refuses the token and frees the repository at once. */
    ld_lease l;
    ld_outcome o;
    assert_int_equal(ld_auth_check(u->st, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_OK);
    acquire_ok(u, &d, 60000, &l);
    assert_int_equal(ld_db_device_revoke(u->db, "dev-a", &err), SS_OK);
    assert_int_equal(ld_db_device_revoke(u->db, "nobody", &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_auth_check(u->st, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_REVOKED);
    acquire_ok(u, &u->b, 1000, &l);
    assert_int_equal(ld_lease_release(u->leases, &u->b, "r1", l.id, l.fencing, &o), SS_OK);
}

static void test_unit_config(void **state)
{
    unit *u = *state;
    char path[700];
    ld_config c;
    ss_err err = {{0}};
    FILE *f;

    snprintf(path, sizeof path, "%s/lockd.conf", u->dir);
    f = fopen(path, "w");
    fprintf(f, "# comment\n\nlisten = [::1]:8443\ndb = state/lockd.db\nthreads = 4\n"
               "lease_ttl_max = 120\nrepo photos = s3://bucket/photos\n"
               "repo docs=s3://bucket/docs/\n  s3_region = eu-west-1  \n"
               "max_connections_per_ip = 8\nconnection_timeout = 5\n");
    fclose(f);
    ld_config_defaults(&c);
    assert_int_equal(ld_config_load(path, &c, &err), SS_OK);
    assert_string_equal(c.listen, "[::1]:8443");
    assert_true(!strncmp(c.state, "sqlite:", 7) && !strncmp(c.state + 7, u->dir, strlen(u->dir)) &&
                strstr(c.state, "/state/lockd.db"));
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.ttl_max_ms, 120000);
    assert_int_equal(c.n_repos, 2);
    assert_string_equal(c.repos[1].name, "docs");
    assert_string_equal(c.repos[1].url, "s3://bucket/docs/");
    assert_string_equal(c.region, "eu-west-1");
    assert_int_equal(c.max_connections_per_ip, 8);
    assert_int_equal(c.connection_timeout, 5);
    ld_config_clear(&c);

    static const char *const bad[] = {"bogus = 1\n",
                                      "threads = -1\n",
                                      "just a line\n",
                                      "repo ../x = s3://b/x\n",
                                      "repo a = file:///x\n",
                                      "cert = a.pem\n",
                                      "lease_ttl_min = 0\n",
                                      "max_connections_per_ip = 0\n",
                                      "connection_timeout = 0\n",
                                      "max_connections = 0\n",
                                      "state = ftp://b/x\n",
                                      "state = sqlite:\n",
                                      "state_head_cache_ms = 60001\n",
                                      "state_token_cache_ms = -1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        ld_config_defaults(&c);
        assert_int_not_equal(ld_config_load(path, &c, &err), SS_OK);
        assert_true(err.msg[0] != '\0');
        ld_config_clear(&c);
    }

    /* state: sqlite paths from the file's directory, bucket states kept apart from every
     * repository's prefix (refused before any request: nothing here listens). */
    static const struct {
        const char *state;
        ss_rc rc;
    } states[] = {
        {"s3://bucket/photos/lockd", SS_ERR_INVALID}, /* inside a repository's prefix */
        {"s3://bucket", SS_ERR_INVALID},              /* around every one */
        {"s3://bucket/docs", SS_ERR_INVALID},         /* a repository's own */
        {"file:///nonexistent/dir/x", SS_ERR_IO},     /* no such directory */
    };
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        ld_state *st = NULL;
        f = fopen(path, "w");
        fprintf(f, "repo photos = s3://bucket/photos\nrepo docs = s3://bucket/docs/\nstate = %s\n",
                states[i].state);
        fclose(f);
        ld_config_defaults(&c);
        assert_int_equal(ld_config_load(path, &c, &err), SS_OK);
        assert_int_equal(c.state_skew_ms, 2000);
        ss_rc rc = ld_state_open(&c, &fake, &st, &err);
        if (rc != states[i].rc) fail_msg("state %s: %s", states[i].state, err.msg);
        assert_null(st);
        ld_config_clear(&c);
    }
    assert_true(ld_url_overlaps("s3://b/a/b", "s3://b/a"));
    assert_false(ld_url_overlaps("s3://b/ab", "s3://b/a"));
    assert_false(ld_url_overlaps("s3://c/a", "s3://b/a"));
    f = fopen(path, "w");
    fputs("db = x.db\nstate_head_cache_ms = 250\n", f);
    fclose(f);
    ld_config_defaults(&c);
    assert_int_equal(ld_config_load(path, &c, &err), SS_OK);
    assert_true(!strncmp(c.state, "sqlite:/", 8) && strstr(c.state, "/x.db"));
    assert_int_equal(c.state_head_cache_ms, 250);
    ld_config_clear(&c);
}

/* A decision that, on its first run, has another connection raise head meanwhile. */
typedef struct racing {
    ld_db *other;
    unsigned runs;
    uint64_t heads[3];
    ld_decision answer;
} racing;

static ss_rc decide_racing(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    racing *r = ctx;
    (void)now;
    if (r->runs < 3) r->heads[r->runs] = rec->repo.head;
    if (r->runs++ == 0 && r->other)
        assert_int_equal(ld_db_repo_raise_head(r->other, "r1", 5, NULL, err), SS_OK);
    rec->repo.next_fencing++;
    *ret = r->answer;
    return SS_OK;
}

static ss_rc decide_refuse(void *ctx, ld_record *rec, int64_t now, ld_decision *ret, ss_err *err)
{
    (void)ctx;
    (void)now;
    rec->repo.head = 99;
    *ret = LD_WRITE;
    return ss_fail(err, SS_ERR_CONFLICT, "refused");
}

/*
 * The SQLite state backend (ld_state.h S1): a decision to write is taken again
 * on the rows as they are under the write lock, so a change another
 * connection made after the first decision is never overwritten; a decision
 * that writes nothing, or refuses, writes nothing.
 */
static void test_unit_state_decides_again(void **state)
{
    unit *u = *state;
    ld_state *st = NULL;
    ld_record rec;
    racing r = {.answer = LD_WRITE};
    ld_db *other = NULL; /* another connection, as the admin commands use */
    ld_repo_row row;
    uint64_t fencing;
    ss_err err = {{0}};
    assert_int_equal(ld_state_sqlite(u->db, &st, &err), SS_OK);
    assert_int_equal(ld_state_read(st, "r1", 1, &rec, &err), SS_OK);
    assert_int_equal(rec.repo.head, 0);
    fencing = rec.repo.next_fencing;
    assert_int_equal(ld_db_open(u->db_path, &other, &err), SS_OK);
    r.other = other;

    assert_int_equal(ld_state_update(st, "r1", decide_racing, &r, &fake, &rec, &err), SS_OK);
    assert_int_equal(r.runs, 2); /* once on the cached record, once under the lock */
    assert_int_equal(r.heads[0], 0);
    assert_int_equal(r.heads[1], 5); /* the other connection's raise, seen */
    assert_int_equal(rec.repo.head, 5);
    assert_int_equal(ld_db_repo_get(u->db, "r1", &row, &err), SS_OK);
    assert_int_equal(row.head, 5);                   /* not written back down */
    assert_int_equal(row.next_fencing, fencing + 1); /* decided once on what was written */

    r = (racing){.answer = LD_KEEP};
    assert_int_equal(ld_state_update(st, "r1", decide_racing, &r, &fake, &rec, &err), SS_OK);
    assert_int_equal(r.runs, 1);
    assert_int_equal(ld_db_repo_get(u->db, "r1", &row, &err), SS_OK);
    assert_int_equal(row.next_fencing, fencing + 1);

    assert_int_equal(ld_state_update(st, "r1", decide_refuse, NULL, &fake, &rec, &err),
                     SS_ERR_CONFLICT);
    assert_string_equal(err.msg, "refused");
    assert_int_equal(ld_db_repo_get(u->db, "r1", &row, &err), SS_OK);
    assert_int_equal(row.head, 5);
    ld_state_close(st);
    ld_db_close(other);
}

/*
 * S6 (ld_state.h): on a state with skew (a bucket's, here on file:// with the
 * fake clock), an expired lease is taken over only once now >= expires_ms +
 * skew: the granting replica's clock may run that far behind this one's.
 */
static void test_unit_skew_takeover(void **state)
{
    unit *u = *state;
    ld_state_s3_opts so = {.skew_ms = 2000, .clock = &fake};
    ld_lease_limits lim = {1000, 600000};
    char url[700];
    ld_state *st = NULL;
    ld_leases *leases = NULL;
    ss_store *bucket = NULL, *repo = NULL;
    ld_lease la, lb;
    ld_outcome o;
    ss_err err = {{0}};
    int changed = 0;
    snprintf(url, sizeof url, "file://%s/state", u->dir);
    assert_int_equal(ss_store_open(url, NULL, &bucket, &err), SS_OK);
    assert_int_equal(ld_state_s3(bucket, &so, &st, &err), SS_OK);
    assert_int_equal(ld_state_skew_ms(st), 2000);
    assert_int_equal(ld_state_repo_put(st, "r1", "s3://bucket/r1", &changed, &err), SS_OK);
    assert_int_equal(ld_leases_new(st, &fake, NULL, &lim, &leases, &err), SS_OK);
    assert_int_equal(ss_store_open(u->store_url, NULL, &repo, &err), SS_OK);
    assert_int_equal(ld_leases_add_repo(leases, "r1", repo, &err), SS_OK);

    assert_int_equal(ld_lease_acquire(leases, &u->a, "r1", 1000, &la, &o), SS_OK);
    fake_now += 1000; /* expired by its own clock, not yet by every replica's */
    assert_int_equal(ld_lease_acquire(leases, &u->b, "r1", 1000, &lb, &o), SS_ERR_CONFLICT);
    assert_int_equal(o.why, LD_WHY_LEASE_HELD);
    assert_int_equal(o.retry_after_ms, 2000);
    fake_now += 1999;
    assert_int_equal(ld_lease_acquire(leases, &u->b, "r1", 1000, &lb, &o), SS_ERR_CONFLICT);
    assert_int_equal(o.retry_after_ms, 1);
    fake_now += 1; /* expires_ms + skew */
    assert_int_equal(ld_lease_acquire(leases, &u->b, "r1", 1000, &lb, &o), SS_OK);
    assert_true(lb.fencing > la.fencing);
    ld_leases_free(leases);
    ld_state_close(st);
}

int main(void)
{
    const struct CMUnitTest unit_tests[] = {
#define U(t) cmocka_unit_test_setup_teardown(t, unit_setup, unit_teardown)
        U(test_unit_one_holder),
        U(test_unit_expiry_takeover),
        U(test_unit_renew),
        U(test_unit_stale_fencing),
        U(test_unit_commit),
        U(test_unit_reconcile),
        U(test_unit_dirty_end),
        U(test_unit_dirty_live),
        U(test_unit_fencing_survives_reopen),
        U(test_unit_access),
        cmocka_unit_test(test_unit_keys),
        U(test_unit_auth),
        U(test_unit_config),
        U(test_unit_state_decides_again),
        U(test_unit_skew_takeover),
#undef U
    };
    unsigned char rnd[8];

    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    return cmocka_run_group_tests_name("lockd/unit", unit_tests, NULL, NULL);
}
