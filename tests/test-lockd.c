/*
 * test-lockd: s3sync-lockd, in two layers.
 *
 *   lockd/unit   the lease module through its C API: a fake clock (time moves
 *                only when a test says so), a temporary SQLite database and a
 *                file:// store; key rules, tokens, config. Always runs.
 *   lockd/http   the real s3sync-lockd binary (S3SYNC_LOCKD_BIN) on a free
 *                loopback port, against the real RGW that ci/test.sh starts,
 *                under a random prefix per run: auth (and `device list`),
 *                leases, the lease counters of /metrics, presigned URLs used
 *                against RGW, commit, restart, SIGKILL and reconcile, TLS.
 *                Skipped (77) without RGW when the unit group passed.
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

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif

static char tmp_root[] = "/tmp/ss-lockd-XXXXXX";
static char tag[17]; /* random per run: the bucket prefix and file names */

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
    assert_int_equal(ld_leases_new(u->db, &fake, NULL, &lim, &u->leases, &err), SS_OK);
    assert_int_equal(ss_store_open(u->store_url, NULL, &s, &err), SS_OK);
    assert_int_equal(ld_leases_add_repo(u->leases, "r1", s, &err), SS_OK);
}

static void unit_close_leases(unit *u)
{
    ld_leases_free(u->leases);
    ld_db_close(u->db);
    u->leases = NULL;
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
    char key[32];
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
    assert_int_equal(ld_auth_check(u->db, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_OK);
    assert_string_equal(d.name, "dev-a");
    assert_string_equal(d.repo, "r1");
    assert_int_equal(ld_auth_check(u->db, secret, NULL, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_MISSING);
    assert_int_equal(ld_auth_check(u->db, secret, "Basic abc", &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_MISSING);
    assert_int_equal(ld_auth_check(u->db, secret, "Bearer short", &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_BAD);
    hdr[10] ^= 1; /* one character off */
    assert_int_equal(ld_auth_check(u->db, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_BAD);
    hdr[10] ^= 1;

    /* Revocation refuses the token and frees the repository at once. */
    ld_lease l;
    ld_outcome o;
    assert_int_equal(ld_auth_check(u->db, secret, hdr, &d, &ar, &err), SS_OK);
    assert_int_equal(ar, LD_AUTH_OK);
    acquire_ok(u, &d, 60000, &l);
    assert_int_equal(ld_db_device_revoke(u->db, "dev-a", &err), SS_OK);
    assert_int_equal(ld_db_device_revoke(u->db, "nobody", &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ld_auth_check(u->db, secret, hdr, &d, &ar, &err), SS_OK);
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
    assert_true(!strncmp(c.db, u->dir, strlen(u->dir)) && strstr(c.db, "/state/lockd.db"));
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
                                      "max_connections = 0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        ld_config_defaults(&c);
        assert_int_not_equal(ld_config_load(path, &c, &err), SS_OK);
        assert_true(err.msg[0] != '\0');
        ld_config_clear(&c);
    }
}

/* ======================================================================== */
/* lockd/http: the real daemon, the real RGW                                */
/* ======================================================================== */

static char bucket_base[256]; /* s3://BUCKET/lockd-TAG */

typedef struct lockd_proc {
    pid_t pid;
    unsigned port;
    int tls;
    char dir[512], conf[600], port_file[600];
} lockd_proc;

static void write_text(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void write_text(const char *path, const char *fmt, ...)
{
    va_list ap;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(f), 0);
}

/* A config for the directory dir (db inside it) serving repositories
 * "NAME NAME ..." under bucket_base. */
static void lockd_config(lockd_proc *p, const char *dir, const char *repos, const char *extra)
{
    char line[4096] = "", *names = strdup(repos), *save = NULL;
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    mkdir(dir, 0700);
    snprintf(p->conf, sizeof p->conf, "%s/lockd.conf", dir);
    snprintf(p->port_file, sizeof p->port_file, "%s/port", dir);
    for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save)) {
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, "repo %s = %s/%s\n", n, bucket_base, n);
    }
    free(names);
    write_text(p->conf, "listen = 127.0.0.1:0\ndb = lockd.db\nlease_ttl_min = 1\n%s%s", line,
               extra ? extra : "");
}

/* Run `s3sync-lockd --config CONF ARGS...`, its stdout into out. */
static int admin(const lockd_proc *p, char *out, size_t cap, ...)
{
    const char *argv[16] = {S3SYNC_LOCKD_BIN, "--config", p->conf};
    int n = 3, fds[2], status = -1;
    va_list ap;
    va_start(ap, cap);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)))
        n++;
    va_end(ap);
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(S3SYNC_LOCKD_BIN, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (out && got + 1 < cap && (r = read(fds[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    if (out) {
        out[got] = '\0';
        while (got && (out[got - 1] == '\n'))
            out[--got] = '\0';
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void add_device(const lockd_proc *p, const char *name, const char *repo, int ro, char *tok)
{
    int rc = ro ? admin(p, tok, 64, "device", "add", name, "--repo", repo, "--read-only", NULL)
                : admin(p, tok, 64, "device", "add", name, "--repo", repo, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(tok), LD_TOKEN_LEN);
}

static pid_t live[8]; /* started and not yet stopped: killed at the end whatever happens */

static void track(pid_t old, pid_t new_pid)
{
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (live[i] == old) {
            live[i] = new_pid;
            return;
        }
}

static void lockd_start(lockd_proc *p)
{
    unlink(p->port_file);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        execl(S3SYNC_LOCKD_BIN, S3SYNC_LOCKD_BIN, "--config", p->conf, "--port-file", p->port_file,
              (char *)NULL);
        _exit(127);
    }
    track(0, p->pid);
    for (int i = 0; i < 1500; i++) { /* 30 s: an ASan build starts slower */
        FILE *f = fopen(p->port_file, "r");
        int status;
        if (f) {
            int ok = fscanf(f, "%u", &p->port) == 1;
            fclose(f);
            if (ok) return;
        }
        assert_int_equal(waitpid(p->pid, &status, WNOHANG), 0); /* it must not have died */
        usleep(20000);
    }
    fail_msg("s3sync-lockd did not start");
}

/* Stop with sig; the exit status (0..255) or 1000 + the killing signal. */
static int lockd_stop(lockd_proc *p, int sig)
{
    int status = 0;
    if (p->pid <= 0) return -1;
    kill(p->pid, sig);
    waitpid(p->pid, &status, 0);
    track(p->pid, 0);
    p->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

/* --- an HTTP client ------------------------------------------------------------ */

typedef struct resp {
    long status;
    json_t *json;
    char *body;
    size_t len;
    char retry_after[32];
    int www_auth;
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
    resp *r = ctx;
    char *b = realloc(r->body, r->len + sz * n + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, sz * n);
    r->body = b;
    r->len += sz * n;
    b[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
    resp *r = ctx;
    if (!strncasecmp(p, "Retry-After:", 12))
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)strcspn(p + 13, "\r\n"),
                 p + 13);
    if (!strncasecmp(p, "WWW-Authenticate:", 17)) r->www_auth = 1;
    return sz * n;
}

static const char *cafile; /* for the TLS test */

/* One request; `headers` NULL-terminated extra lines. */
static resp http(const char *method, const char *url, const char *const *headers, const char *body)
{
    resp r = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    assert_non_null(c);
    for (; headers && *headers; headers++)
        h = curl_slist_append(h, *headers);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (cafile) curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body && r.len && r.body[0] == '{') r.json = json_loads(r.body, 0, NULL);
    return r;
}

static void resp_free(resp *r)
{
    json_decref(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* A lockd call: path under the daemon, Bearer token (may be NULL), body printf-style. */
static resp call(const lockd_proc *p, const char *method, const char *tok, const char *path,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static resp call(const lockd_proc *p, const char *method, const char *tok, const char *path,
                 const char *fmt, ...)
{
    char url[1024], auth[128], *body = NULL;
    const char *hdrs[3] = {NULL, NULL, NULL};
    va_list ap;
    snprintf(url, sizeof url, "%s://127.0.0.1:%u%s", p->tls ? "https" : "http", p->port, path);
    if (tok) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        hdrs[0] = auth;
        hdrs[1] = "Content-Type: application/json";
    }
    if (fmt) {
        va_start(ap, fmt);
        assert_true(vasprintf(&body, fmt, ap) >= 0);
        va_end(ap);
    }
    resp r = http(method, url, hdrs, body);
    free(body);
    return r;
}

static const char *jstr(const resp *r, const char *k)
{
    const char *v = json_string_value(json_object_get(r->json, k));
    return v ? v : "";
}

static long long jint(const resp *r, const char *k)
{
    return json_integer_value(json_object_get(r->json, k));
}

static void expect(const resp *r, long status, const char *error)
{
    if (r->status != status || (error && strcmp(jstr(r, "error"), error)))
        fail_msg("expected %ld %s, got %ld: %s", status, error ? error : "", r->status,
                 r->body ? r->body : "(no body)");
}

typedef struct lease_t {
    char id[LD_LEASE_ID_LEN + 1];
    long long fencing, head;
} lease_t;

static lease_t acquire(const lockd_proc *p, const char *tok, const char *repo, double ttl)
{
    char path[200];
    lease_t l = {{0}, 0, 0};
    snprintf(path, sizeof path, "/v1/repos/%s/lease", repo);
    resp r = call(p, "POST", tok, path, "{\"ttl\": %g}", ttl);
    expect(&r, 201, NULL);
    snprintf(l.id, sizeof l.id, "%s", jstr(&r, "lease_id"));
    l.fencing = jint(&r, "fencing_token");
    l.head = jint(&r, "head");
    assert_int_equal(strlen(l.id), LD_LEASE_ID_LEN);
    assert_true(l.fencing >= 1);
    resp_free(&r);
    return l;
}

static resp release(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/lease/%s?fencing_token=%lld", repo, l->id,
             l->fencing);
    return call(p, "DELETE", tok, path, NULL);
}

static resp presign_put(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
                        long long fencing, const char *keys_json)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/presign", repo);
    return call(p, "POST", tok, path,
                "{\"op\":\"put\",\"keys\":%s,\"lease_id\":\"%s\",\"fencing_token\":%lld}",
                keys_json, l->id, fencing);
}

static resp commit(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
                   long long fencing, long long seq, int rel)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/commit", repo);
    return call(p, "POST", tok, path,
                "{\"lease_id\":\"%s\",\"fencing_token\":%lld,\"seq\":%lld,\"release\":%s}", l->id,
                fencing, seq, rel ? "true" : "false");
}

static long long head(const lockd_proc *p, const char *tok, const char *repo)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/head", repo);
    resp r = call(p, "GET", tok, path, NULL);
    expect(&r, 200, NULL);
    long long h = jint(&r, "head");
    resp_free(&r);
    return h;
}

/* The value of the unlabelled counter `name` in lockd's /metrics. */
static long long metric(const lockd_proc *p, const char *name)
{
    resp r = call(p, "GET", NULL, "/metrics", NULL);
    size_t n = strlen(name);
    long long v = -1;
    expect(&r, 200, NULL);
    for (const char *line = r.body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, name, n) && line[n] == ' ') v = atoll(line + n + 1);
    if (v < 0) fail_msg("no %s in /metrics:\n%s", name, r.body);
    resp_free(&r);
    return v;
}

/* The i-th URL of a presign answer (malloc'ed). */
static char *url_of(const resp *r, size_t i)
{
    const char *u = json_string_value(
        json_object_get(json_array_get(json_object_get(r->json, "urls"), i), "url"));
    assert_non_null(u);
    return strdup(u);
}

/* A request to a presigned URL, straight to RGW. */
static long s3_call(const char *method, const char *url, int inm, const char *body, char **ret_body)
{
    const char *hdrs[] = {inm ? "If-None-Match: *" : NULL, NULL};
    resp r = http(method, url, hdrs, body);
    long st = r.status;
    if (ret_body) {
        *ret_body = r.body;
        r.body = NULL;
    }
    resp_free(&r);
    return st;
}

/* --- the fixture: one daemon, a repository per concern ------------------------- */

#define WRITERS 4 /* test_http_concurrent_writers */
#define CYCLES 5

typedef struct H {
    lockd_proc p;
    char rw[64], ro[64], rev[64], other[64], ra[64], rb[64], ea[64], eb[64], io[64];
    char busy[WRITERS][64];
    ss_store *io_store;
} H;

static int http_setup(void **state)
{
    char dir[600], url[600];
    ss_err err = {{0}};
    H *h = calloc(1, sizeof *h);
    snprintf(dir, sizeof dir, "%s/http", tmp_root);
    lockd_config(&h->p, dir, "auth race expiry io other busy", NULL);
    add_device(&h->p, "auth-rw", "auth", 0, h->rw);
    add_device(&h->p, "auth-ro", "auth", 1, h->ro);
    add_device(&h->p, "auth-revoked", "auth", 0, h->rev);
    add_device(&h->p, "other-dev", "other", 0, h->other);
    add_device(&h->p, "race-a", "race", 0, h->ra);
    add_device(&h->p, "race-b", "race", 0, h->rb);
    add_device(&h->p, "exp-a", "expiry", 0, h->ea);
    add_device(&h->p, "exp-b", "expiry", 0, h->eb);
    add_device(&h->p, "io-a", "io", 0, h->io);
    for (int i = 0; i < WRITERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "busy-%d", i);
        add_device(&h->p, name, "busy", 0, h->busy[i]);
    }
    snprintf(url, sizeof url, "%s/io", bucket_base);
    assert_int_equal(ss_store_open(url, NULL, &h->io_store, &err), SS_OK);
    lockd_start(&h->p);
    *state = h;
    return 0;
}

static int http_teardown(void **state)
{
    H *h = *state;
    if (h->p.pid > 0) assert_int_equal(lockd_stop(&h->p, SIGTERM), 0); /* clean, leak-free exit */
    ss_store_free(h->io_store);
    free(h);
    return 0;
}

static void test_http_routes(void **state)
{
    H *h = *state;
    resp r = call(&h->p, "GET", NULL, "/healthz", NULL);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(&r, "status"), "ok");
    resp_free(&r);
    r = call(&h->p, "POST", NULL, "/healthz", NULL);
    expect(&r, 405, "method_not_allowed");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/auth/lease", NULL);
    expect(&r, 405, "method_not_allowed");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/auth/nothing", NULL);
    expect(&r, 404, "not_found");
    resp_free(&r);
    r = call(&h->p, "GET", h->rw, "/v1/repos/../head", NULL);
    expect(&r, 404, NULL);
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{not json");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": \"long\"}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": 100000}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    /* Beyond int64_t milliseconds: refused before any conversion (UBSan builds would abort). */
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/lease", "{\"ttl\": -1e300}");
    expect(&r, 400, "bad_request");
    resp_free(&r);
    char *big = malloc(300 * 1024);
    memset(big, ' ', 300 * 1024 - 1);
    big[300 * 1024 - 1] = '\0';
    big[0] = '{';
    r = call(&h->p, "POST", h->rw, "/v1/repos/auth/presign", "%s}", big);
    expect(&r, 413, "payload_too_large");
    resp_free(&r);
    /* Headers beyond the connection's 8 KiB pool are refused before routing. */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", h->p.port);
    memset(big, 'a', 9000);
    memcpy(big, "X-Big: ", 7);
    big[9000] = '\0';
    r = http("GET", url, (const char *const[]){big, NULL}, NULL);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    free(big);
    r = call(&h->p, "GET", NULL, "/metrics", NULL);
    expect(&r, 200, NULL);
    assert_non_null(
        strstr(r.body, "s3sync_lockd_requests_total{route=\"healthz\",status=\"200\"} 1"));
    assert_non_null(strstr(r.body, "s3sync_lockd_request_duration_seconds_bucket{route=\"head\""));
    assert_non_null(strstr(r.body, "s3sync_lockd_leases_granted_total"));
    assert_non_null(strstr(r.body, "s3sync_lockd_presigned_urls_total{op=\"put\"}"));
    resp_free(&r);
}

/* `s3sync-lockd device list` shows device name of repo with this mode and state. */
static void expect_device(const lockd_proc *p, const char *name, const char *repo, const char *mode,
                          const char *state)
{
    char out[8192], *save = NULL;
    int seen = 0;
    assert_int_equal(admin(p, out, sizeof out, "device", "list", NULL), 0);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char n[LD_NAME_MAX + 1], rp[LD_NAME_MAX + 1], m[16], st[16];
        if (sscanf(line, "%64s %64s %15s %15s", n, rp, m, st) != 4)
            fail_msg("device list: %s", line);
        if (strcmp(n, name)) continue;
        seen++;
        if (strcmp(rp, repo) || strcmp(m, mode) || strcmp(st, state))
            fail_msg("device list shows '%s', expected %s %s %s %s", line, name, repo, mode, state);
    }
    if (seen != 1) fail_msg("device list shows %s %d times", name, seen);
}

static void test_http_auth(void **state)
{
    H *h = *state;
    char bogus[LD_TOKEN_LEN + 1];
    resp r = call(&h->p, "GET", NULL, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    assert_true(r.www_auth);
    resp_free(&r);
    ld_auth_token_new(bogus); /* well-formed, never issued */
    r = call(&h->p, "GET", bogus, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    resp_free(&r);
    r = call(&h->p, "GET", "not-a-token", "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    resp_free(&r);

    /* Revoked while the server runs: refused from the next request on. */
    assert_int_equal(head(&h->p, h->rev, "auth"), 0);
    assert_int_equal(admin(&h->p, NULL, 0, "device", "revoke", "auth-revoked", NULL), 0);
    r = call(&h->p, "GET", h->rev, "/v1/repos/auth/head", NULL);
    expect(&r, 401, "unauthorized");
    assert_non_null(strstr(jstr(&r, "message"), "revoked"));
    resp_free(&r);
    /* What an operator sees: `device list`, while the server runs. */
    expect_device(&h->p, "auth-revoked", "auth", "read-write", "revoked");
    expect_device(&h->p, "auth-ro", "auth", "read-only", "active");
    expect_device(&h->p, "auth-rw", "auth", "read-write", "active");

    /* Another repository's device sees nothing here. */
    r = call(&h->p, "GET", h->other, "/v1/repos/auth/head", NULL);
    expect(&r, 403, "forbidden");
    resp_free(&r);
    r = call(&h->p, "POST", h->other, "/v1/repos/auth/presign",
             "{\"op\":\"get\",\"keys\":[\"config\"]}");
    expect(&r, 403, "forbidden");
    resp_free(&r);
    r = call(&h->p, "GET", h->other, "/v1/repos/nosuch/head", NULL);
    expect(&r, 403, "forbidden");
    resp_free(&r);

    /* Read-only: reads yes, writes 403. */
    assert_int_equal(head(&h->p, h->ro, "auth"), 0);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/lease", "{\"ttl\": 5}");
    expect(&r, 403, "read_only");
    resp_free(&r);
    lease_t l = acquire(&h->p, h->rw, "auth", 30);
    r = presign_put(&h->p, h->ro, "auth", &l, l.fencing, "[\"log/00000000000000000001\"]");
    expect(&r, 403, "read_only");
    resp_free(&r);
    r = commit(&h->p, h->ro, "auth", &l, l.fencing, 1, 0);
    expect(&r, 403, "read_only");
    resp_free(&r);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/presign",
             "{\"op\":\"get\",\"keys\":[\"config\",\"log/00000000000000000001\"]}");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "urls")), 2);
    resp_free(&r);
    r = call(&h->p, "POST", h->ro, "/v1/repos/auth/presign",
             "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"log/00000000000000000001\"}");
    expect(&r, 200, NULL);
    resp_free(&r);
    r = release(&h->p, h->rw, "auth", &l);
    expect(&r, 200, NULL);
    resp_free(&r);
}

typedef struct racer {
    const lockd_proc *p;
    const char *tok;
    pthread_barrier_t *go;
    resp r;
} racer;

static void *race_one(void *arg)
{
    racer *x = arg;
    pthread_barrier_wait(x->go);
    x->r = call(x->p, "POST", x->tok, "/v1/repos/race/lease", "{\"ttl\": 30}");
    return NULL;
}

static void test_http_race(void **state)
{
    H *h = *state;
    long long last_fencing = 0;
    long long refused = metric(&h->p, "s3sync_lockd_leases_refused_total");
    long long expired = metric(&h->p, "s3sync_lockd_leases_expired_total");
    for (int round = 0; round < 10; round++) {
        pthread_barrier_t go;
        pthread_t t[2];
        racer x[2] = {{&h->p, h->ra, &go, {0}}, {&h->p, h->rb, &go, {0}}};
        pthread_barrier_init(&go, NULL, 2);
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, race_one, &x[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        int won = x[0].r.status == 201 ? 0 : 1;
        /* Exactly one holder; the other is told who and how long to wait. */
        expect(&x[won].r, 201, NULL);
        expect(&x[!won].r, 409, "lease_held");
        assert_string_equal(jstr(&x[!won].r, "holder"), won ? "race-b" : "race-a");
        assert_true(jint(&x[!won].r, "retry_after_ms") > 0);
        assert_true(jint(&x[!won].r, "retry_after_ms") <= 30000);
        assert_true(atoi(x[!won].r.retry_after) >= 1);
        lease_t l = {{0}, jint(&x[won].r, "fencing_token"), 0};
        snprintf(l.id, sizeof l.id, "%s", jstr(&x[won].r, "lease_id"));
        assert_true(l.fencing > last_fencing);
        last_fencing = l.fencing;
        resp r = release(&h->p, won ? h->rb : h->ra, "race", &l);
        expect(&r, 200, NULL);
        resp_free(&r);
        resp_free(&x[0].r);
        resp_free(&x[1].r);
    }
    /* One refusal per round, counted; every lease was released, none expired. */
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_refused_total"), refused + 10);
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_expired_total"), expired);
}

static void test_http_expiry_takeover(void **state)
{
    H *h = *state;
    char path[200];
    long long refused = metric(&h->p, "s3sync_lockd_leases_refused_total");
    long long expired = metric(&h->p, "s3sync_lockd_leases_expired_total");
    lease_t a = acquire(&h->p, h->ea, "expiry", 1);
    resp r = call(&h->p, "POST", h->eb, "/v1/repos/expiry/lease", "{\"ttl\": 5}");
    expect(&r, 409, "lease_held");
    assert_true(jint(&r, "retry_after_ms") <= 1000);
    resp_free(&r);
    usleep(1200 * 1000);
    lease_t b = acquire(&h->p, h->eb, "expiry", 5);
    assert_true(b.fencing > a.fencing);
    /* The 409 above, then a's lease taken over once expired: each counted once. */
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_refused_total"), refused + 1);
    assert_int_equal(metric(&h->p, "s3sync_lockd_leases_expired_total"), expired + 1);
    /* The old holder is refused everywhere, with 409. */
    snprintf(path, sizeof path, "/v1/repos/expiry/lease/%s/renew", a.id);
    r = call(&h->p, "POST", h->ea, path, "{\"ttl\": 5, \"fencing_token\": %lld}", a.fencing);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = presign_put(&h->p, h->ea, "expiry", &a, a.fencing, "[\"log/00000000000000000001\"]");
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = commit(&h->p, h->ea, "expiry", &a, a.fencing, 1, 0);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    r = release(&h->p, h->ea, "expiry", &a);
    expect(&r, 409, "stale_lease");
    resp_free(&r);
    /* The new holder renews and releases normally. */
    snprintf(path, sizeof path, "/v1/repos/expiry/lease/%s/renew", b.id);
    r = call(&h->p, "POST", h->eb, path, "{\"ttl_ms\": 3000, \"fencing_token\": %lld}", b.fencing);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "fencing_token"), b.fencing);
    assert_true(jint(&r, "expires_in_ms") <= 3000 && jint(&r, "expires_in_ms") > 2000);
    resp_free(&r);
    r = release(&h->p, h->eb, "expiry", &b);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void test_http_stale_fencing(void **state)
{
    H *h = *state;
    lease_t l = acquire(&h->p, h->io, "io", 30);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing + 1, "[\"log/00000000000000000001\"]");
    expect(&r, 409, "stale_fencing_token");
    resp_free(&r);
    r = commit(&h->p, h->io, "io", &l, l.fencing - 1 > 0 ? l.fencing - 1 : 99, 1, 0);
    expect(&r, 409, "stale_fencing_token");
    resp_free(&r);
    r = release(&h->p, h->io, "io", &l);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void seq_key(char *out, size_t cap, const char *fmt, long long seq)
{
    snprintf(out, cap, fmt, seq);
}

static void test_http_presign_commit(void **state)
{
    H *h = *state;
    char keys[256], logk[32], other[32], *put = NULL, *data_put = NULL, *bad = NULL, *got = NULL;
    lease_t l = acquire(&h->p, h->io, "io", 60);
    long long n = l.head + 1;

    seq_key(logk, sizeof logk, "log/%020lld", n);
    snprintf(keys, sizeof keys, "[\"%s\", \"data/%020lld-0123456789abcdef\"]", logk, n);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "seq"), n);
    assert_true(jint(&r, "expires_in") >= 1 && jint(&r, "expires_in") <= 60);
    put = url_of(&r, 0);
    data_put = url_of(&r, 1);
    resp_free(&r);

    /* RGW refuses the URL for another key, and without its signed header. */
    seq_key(other, sizeof other, "log/%020lld", n + 1);
    bad = strdup(put);
    memcpy(strstr(bad, logk), other, strlen(other));
    assert_int_equal(s3_call("PUT", bad, 1, "tx", NULL), 403);
    assert_int_equal(s3_call("PUT", put, 0, "tx", NULL), 403);

    /* Commit before the upload is refused; nothing moved. */
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 0);
    expect(&r, 409, "object_missing");
    assert_int_equal(jint(&r, "head"), n - 1);
    resp_free(&r);

    assert_int_equal(s3_call("PUT", data_put, 1, "pack", NULL), 200);
    assert_int_equal(s3_call("PUT", put, 1, "tx", NULL), 200);
    assert_int_equal(s3_call("PUT", put, 1, "again", NULL), 412); /* create-only */

    /* Only head+1: the next key, other prefixes, escapes are all refused. */
    snprintf(keys, sizeof keys, "[\"%s\"]", other);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 409, "wrong_sequence"); /* well formed, but not head+1 */
    assert_int_equal(jint(&r, "head"), n - 1);
    resp_free(&r);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, "[\"notes/x\"]");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = presign_put(&h->p, h->io, "io", &l, l.fencing, "[\"../race/log/00000000000000000001\"]");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign",
             "{\"op\":\"get\",\"keys\":[\"a/../../x\"]}");
    expect(&r, 403, "key_not_allowed");
    resp_free(&r);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign", "{\"op\":\"delete\",\"keys\":[\"x\"]}");
    expect(&r, 400, "bad_request");
    resp_free(&r);

    r = commit(&h->p, h->io, "io", &l, l.fencing, n + 1, 0);
    expect(&r, 409, "wrong_sequence");
    resp_free(&r);
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 0);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "head"), n);
    assert_false(json_is_true(json_object_get(r.json, "released")));
    resp_free(&r);
    assert_int_equal(head(&h->p, h->io, "io"), n);

    /* Reads: GET of the object, LIST of log/ after the previous head. */
    snprintf(keys, sizeof keys, "{\"op\":\"get\",\"keys\":[\"%s\"]}", logk);
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign", "%s", keys);
    expect(&r, 200, NULL);
    free(bad);
    bad = url_of(&r, 0);
    resp_free(&r);
    assert_int_equal(s3_call("GET", bad, 0, NULL, &got), 200);
    assert_string_equal(got, "tx");
    free(got);
    got = NULL;
    r = call(&h->p, "POST", h->io, "/v1/repos/io/presign",
             "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"log/%020lld\"}", n - 1);
    expect(&r, 200, NULL);
    free(bad);
    bad = url_of(&r, 0);
    char want[300];
    snprintf(want, sizeof want, "<Key>%s%s</Key>", jstr(&r, "key_prefix"), logk);
    resp_free(&r);
    assert_int_equal(s3_call("GET", bad, 0, NULL, &got), 200);
    assert_non_null(strstr(got, want));
    free(got);

    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 1); /* repeated: recognised, and releases */
    expect(&r, 200, NULL);
    assert_true(json_is_true(json_object_get(r.json, "released")));
    resp_free(&r);
    assert_int_equal(head(&h->p, h->io, "io"), n);
    free(put);
    free(data_put);
    free(bad);
}

static void test_http_restart(void **state)
{
    H *h = *state;
    lease_t l = acquire(&h->p, h->io, "io", 30);
    resp r = release(&h->p, h->io, "io", &l);
    resp_free(&r);
    long long before = head(&h->p, h->io, "io");
    assert_int_equal(lockd_stop(&h->p, SIGTERM), 0);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), before);
    lease_t m = acquire(&h->p, h->io, "io", 30);
    assert_true(m.fencing > l.fencing);
    r = release(&h->p, h->io, "io", &m);
    expect(&r, 200, NULL);
    resp_free(&r);
}

static void test_http_sigkill_reconcile(void **state)
{
    H *h = *state;
    char keys[64], *put = NULL, dir[600], tok[64];
    lease_t l = acquire(&h->p, h->io, "io", 60);
    long long n = l.head + 1;

    snprintf(keys, sizeof keys, "[\"log/%020lld\"]", n);
    resp r = presign_put(&h->p, h->io, "io", &l, l.fencing, keys);
    expect(&r, 200, NULL);
    put = url_of(&r, 0);
    resp_free(&r);
    assert_int_equal(s3_call("PUT", put, 1, "tx", NULL), 200);
    free(put);
    /* Killed between the upload and the commit. */
    assert_int_equal(lockd_stop(&h->p, SIGKILL), 1000 + SIGKILL);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), n); /* reconciled at start */
    /* The lease survived; its holder's commit is recognised, not refused. */
    r = commit(&h->p, h->io, "io", &l, l.fencing, n, 1);
    expect(&r, 200, NULL);
    assert_int_equal(jint(&r, "head"), n);
    resp_free(&r);

    /* Sequences written behind lockd's back (a lost database, a lost commit). */
    put_log(h->io_store, n + 1);
    put_log(h->io_store, n + 2);
    put_log(h->io_store, n + 4); /* after a gap: never counted */
    assert_int_equal(lockd_stop(&h->p, SIGKILL), 1000 + SIGKILL);
    lockd_start(&h->p);
    assert_int_equal(head(&h->p, h->io, "io"), n + 2);
    lease_t m = acquire(&h->p, h->io, "io", 30);
    assert_int_equal(m.head, n + 2);
    assert_true(m.fencing > l.fencing);
    r = release(&h->p, h->io, "io", &m);
    resp_free(&r);

    /* A fresh database finds the same head in the bucket. */
    lockd_proc fresh;
    snprintf(dir, sizeof dir, "%s/fresh", tmp_root);
    lockd_config(&fresh, dir, "io", NULL);
    add_device(&fresh, "io-b", "io", 0, tok);
    lockd_start(&fresh);
    assert_int_equal(head(&fresh, tok, "io"), n + 2);
    assert_int_equal(lockd_stop(&fresh, SIGTERM), 0);
}

/* Writers that all want the next sequence: each cycle is the client's whole
 * write path (acquire, waiting on lease_held; presign; PUT; commit+release).
 * Every sequence must be committed exactly once, with no gap. */
typedef struct writer {
    const lockd_proc *p;
    const char *tok;
    long long committed[CYCLES];
    int n, waits;
} writer;

static void *write_cycles(void *arg)
{
    writer *w = arg;
    char path[] = "/v1/repos/busy/lease", keys[64];
    while (w->n < CYCLES) {
        resp r = call(w->p, "POST", w->tok, path, "{\"ttl\": 10}");
        if (r.status == 409) { /* held: wait as told, briefly */
            long long ms = jint(&r, "retry_after_ms");
            resp_free(&r);
            w->waits++;
            usleep((useconds_t)(ms < 20 ? ms : 20) * 1000 + 1000);
            continue;
        }
        if (r.status != 201) return r.body; /* leaked on purpose: the failure message */
        lease_t l = {{0}, jint(&r, "fencing_token"), jint(&r, "head")};
        snprintf(l.id, sizeof l.id, "%s", jstr(&r, "lease_id"));
        resp_free(&r);
        snprintf(keys, sizeof keys, "[\"log/%020lld\"]", l.head + 1);
        r = presign_put(w->p, w->tok, "busy", &l, l.fencing, keys);
        char *url = r.status == 200 ? url_of(&r, 0) : NULL;
        resp_free(&r);
        if (!url || s3_call("PUT", url, 1, "tx", NULL) != 200) {
            free(url);
            return strdup("presign or PUT failed");
        }
        free(url);
        r = commit(w->p, w->tok, "busy", &l, l.fencing, l.head + 1, 1);
        if (r.status != 200 || jint(&r, "head") != l.head + 1) return r.body;
        resp_free(&r);
        w->committed[w->n++] = l.head + 1;
    }
    return NULL;
}

static void test_http_concurrent_writers(void **state)
{
    H *h = *state;
    pthread_t t[WRITERS];
    writer w[WRITERS];
    int seen[WRITERS * CYCLES + 1] = {0}, waits = 0;
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){&h->p, h->busy[i], {0}, 0, 0};
        pthread_create(&t[i], NULL, write_cycles, &w[i]);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *msg = NULL;
        pthread_join(t[i], &msg);
        if (msg) fail_msg("writer %d: %s", i, (char *)msg);
        waits += w[i].waits;
        for (int c = 0; c < CYCLES; c++) {
            long long seq = w[i].committed[c];
            assert_true(seq >= 1 && seq <= WRITERS * CYCLES);
            assert_int_equal(seen[seq]++, 0); /* never twice */
        }
    }
    assert_int_equal(head(&h->p, h->busy[0], "busy"), WRITERS * CYCLES); /* no gap */
    assert_true(waits > 0);                                              /* they did contend */
}

static void test_http_tls(void **state)
{
    char dir[600], cmd[2000], tok[64];
    lockd_proc p;
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) skip();
    snprintf(dir, sizeof dir, "%s/tls", tmp_root);
    mkdir(dir, 0700);
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem "
             "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             dir);
    if (system(cmd) != 0) skip();
    lockd_config(&p, dir, "io", "cert = cert.pem\nkey = key.pem\n");
    add_device(&p, "tls-dev", "io", 1, tok);
    lockd_start(&p);
    p.tls = 1;
    snprintf(cmd, sizeof cmd, "%s/cert.pem", dir);
    cafile = cmd;
    resp r = call(&p, "GET", NULL, "/healthz", NULL);
    expect(&r, 200, NULL);
    resp_free(&r);
    assert_true(head(&p, tok, "io") >= 1);
    cafile = NULL;
    p.tls = 0; /* plain HTTP to the TLS port gets no HTTP answer */
    r = call(&p, "GET", NULL, "/healthz", NULL);
    assert_int_not_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(lockd_stop(&p, SIGTERM), 0);
}

static int run_http_tests(int unit_failed)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_routes),
        cmocka_unit_test(test_http_auth),
        cmocka_unit_test(test_http_race),
        cmocka_unit_test(test_http_expiry_takeover),
        cmocka_unit_test(test_http_stale_fencing),
        cmocka_unit_test(test_http_presign_commit),
        cmocka_unit_test(test_http_restart),
        cmocka_unit_test(test_http_sigkill_reconcile),
        cmocka_unit_test(test_http_concurrent_writers),
        cmocka_unit_test(test_http_tls),
    };
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    if (!bucket || !getenv("AWS_ENDPOINT_URL") || !getenv("AWS_ACCESS_KEY_ID")) {
        fprintf(stderr, "lockd/http: skipped (no RGW: run through ci/test.sh, or eval "
                        "\"$(ci/rgw.sh start)\")\n");
        return unit_failed ? unit_failed : 77;
    }
    snprintf(bucket_base, sizeof bucket_base, "s3://%s/lockd-%s", bucket, tag);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests_name("lockd/http", tests, http_setup, http_teardown);
    for (size_t i = 0; i < sizeof live / sizeof *live; i++) /* what failed tests left running */
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
    curl_global_cleanup();
    return unit_failed | failed;
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
#undef U
    };
    unsigned char rnd[8];
    int failed;

    if (sodium_init() < 0 || !mkdtemp(tmp_root)) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    failed = cmocka_run_group_tests_name("lockd/unit", unit_tests, NULL, NULL);
    failed |= run_http_tests(failed);
    return failed;
}
