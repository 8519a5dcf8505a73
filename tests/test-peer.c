/*
 * test-peer: a session between two devices (core/peer/, docs/PEERS.md)
 * over socketpairs, no network: the handshake both ways, a GET of whole
 * objects and of ranges from a served folder, and every refusal. Who is
 * refused at the handshake (a named table: another repository, a device
 * not enrolled or revoked on either side, a key that is not the device's);
 * what a hostile end or a tampering relay sends (a stranger's hello, a
 * hello cut short, a record flipped, dropped, repeated, reordered or cut,
 * reading after the last record, a request out of shape, an answer longer
 * than announced); heads, taken only as signed by the session's device,
 * enrolled and not revoked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "peer.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum { DEV_A, DEV_B, DEV_X, N_DEV }; /* A and B enrolled; X a key nobody enrolled */

static char g_dir[] = "/tmp/ss-peer-XXXXXX";
static ss_keys *g_repo, *g_other; /* the repository, and another one */
static ss_device_key *g_dev[N_DEV];

/* --- fixtures -------------------------------------------------------------------------- */

static ss_device device_of(int d, uint64_t revoked)
{
    ss_device dev = {.enrolled = 1, .revoked = revoked};
    memcpy(dev.id, ss_device_key_id(g_dev[d]), sizeof dev.id);
    memcpy(dev.pk, ss_device_key_public(g_dev[d]), sizeof dev.pk);
    snprintf(dev.name, sizeof dev.name, "%c", "ABX"[d]);
    return dev;
}

/* A and B enrolled; revoked: one of them revoked at 5 (or -1). */
static ss_devices *table(int revoked)
{
    ss_devices *t = NULL;
    assert_int_equal(ss_devices_new(&t, NULL), SS_OK);
    for (int d = DEV_A; d <= DEV_B; d++) {
        ss_device dev = device_of(d, d == revoked ? 5 : 0);
        assert_int_equal(ss_devices_put(t, &dev, NULL), SS_OK);
    }
    return t;
}

/* The served folder: files named by key under g_dir/served. */
static ss_rc open_served(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size)
{
    char path[300];
    struct stat st;
    (void)ctx;
    snprintf(path, sizeof path, "%s/served/%s", g_dir, key);
    *ret_fd = open(path, O_RDONLY);
    if (*ret_fd < 0) return SS_ERR_NOT_FOUND;
    fstat(*ret_fd, &st);
    *ret_size = (uint64_t)st.st_size;
    return SS_OK;
}

static void put_served(const char *key, const void *data, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/served/%s", g_dir, key);
    *strrchr(path, '/') = '\0';
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/served/%s", g_dir, key);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* --- a server on a thread -------------------------------------------------------------- */

typedef struct server {
    int fd;
    ss_peer_trust trust[2];
    size_t n_trust;
    int serve; /* answer requests after the handshake */
    pthread_t thread;
    ss_peer *peer; /* when !serve: the accepted session, for the test to read */
    size_t which;
    ss_rc rc;
    ss_err err;
    const ss_devices *table; /* heads are checked against it */
    uint64_t head;           /* the newest head taken */
} server;

static ss_rc take_head(void *ctx, const ss_peer_head *h)
{
    server *s = ctx;
    ss_rc rc = ss_peer_head_check(h, g_repo, s->table, NULL);
    if (!rc) s->head = h->seq;
    return rc;
}

static void *server_main(void *arg)
{
    server *s = arg;
    s->rc = ss_peer_accept(s->fd, s->trust, s->n_trust, &s->peer, &s->which, &s->err);
    if (!s->rc && s->serve) {
        ss_peer_handler h = {open_served, take_head, s};
        s->rc = ss_peer_serve(s->peer, &h, &s->err);
        ss_peer_free(s->peer);
        s->peer = NULL;
    }
    return NULL;
}

static void server_start(server *s, int fd)
{
    s->fd = fd;
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_join(server *s)
{
    assert_int_equal(pthread_join(s->thread, NULL), 0);
}

static void pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

typedef struct sink {
    uint8_t *p;
    size_t len, cap;
} sink;

static int sink_write(void *ctx, const void *buf, size_t len)
{
    sink *k = ctx;
    if (k->len + len > k->cap) return -1;
    memcpy(k->p + k->len, buf, len);
    k->len += len;
    return 0;
}

/* --- the session --------------------------------------------------------------------------- */

static void test_session(void **state)
{
    (void)state;
    ss_devices *t = table(-1);
    server s = {
        .trust = {{g_other, t, g_dev[DEV_B]}, {g_repo, t, g_dev[DEV_B]}}, .n_trust = 2, .serve = 1};
    ss_peer_trust mine = {g_repo, t, g_dev[DEV_A]};
    static uint8_t big[300000], got[300000];
    sink k = {got, 0, sizeof got};
    ss_peer *p = NULL;
    ss_err err = {{0}};
    int fds[2];
    randombytes_buf(big, sizeof big);
    put_served("data/00000000000000000007-0123456789abcdef", big, sizeof big);
    put_served("log/00000000000000000007", "a log object", 12);
    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(ss_peer_connect(fds[0], &mine, &p, &err), SS_OK);
    assert_memory_equal(ss_peer_device(p), ss_device_key_id(g_dev[DEV_B]), 16);

    /* a whole object, one of several messages, and a range of it */
    assert_int_equal(ss_peer_get(p, "data/00000000000000000007-0123456789abcdef", 0, 0, sizeof big,
                                 sink_write, &k, &err),
                     SS_OK);
    assert_int_equal(k.len, sizeof big);
    assert_memory_equal(got, big, sizeof big);
    k.len = 0;
    assert_int_equal(ss_peer_get(p, "data/00000000000000000007-0123456789abcdef", 70000, 100000,
                                 sizeof big, sink_write, &k, &err),
                     SS_OK);
    assert_int_equal(k.len, 100000);
    assert_memory_equal(got, big + 70000, 100000);
    k.len = 0;
    assert_int_equal(ss_peer_get(p, "log/00000000000000000007", 0, 0, 100, sink_write, &k, &err),
                     SS_OK);
    assert_memory_equal(got, "a log object", 12);

    /* what is not there, past its end, more than the caller takes, not servable */
    assert_int_equal(ss_peer_get(p, "log/00000000000000000008", 0, 0, 100, sink_write, &k, &err),
                     SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "not held there"));
    assert_int_equal(ss_peer_get(p, "log/00000000000000000007", 10, 5, 100, sink_write, &k, &err),
                     SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "not served there"));
    assert_int_equal(ss_peer_get(p, "log/00000000000000000007", 0, 0, 11, sink_write, &k, &err),
                     SS_ERR_INTEGRITY);
    ss_peer_free(p); /* that answer was left unread: this session is done */
    server_join(&s);

    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(ss_peer_connect(fds[0], &mine, &p, &err), SS_OK);
    static const char *const refused[] = {"keys/0000000000000001",
                                          "config",
                                          "log/1",
                                          "log/0000000000000000000a",
                                          "../log/00000000000000000007",
                                          "data/00000000000000000007-0123456789ABCDEF"};
    for (size_t i = 0; i < COUNT(refused); i++)
        assert_int_equal(ss_peer_get(p, refused[i], 0, 0, 100, sink_write, &k, &err),
                         SS_ERR_INVALID);
    assert_int_equal(ss_peer_finish(p, &err), SS_OK);
    assert_int_equal(ss_peer_send(p, "x", 1, &err), SS_ERR_INVALID); /* after its last */
    ss_peer_free(p);
    server_join(&s);
    assert_int_equal(s.rc, SS_OK);
    assert_int_equal(s.which, 1);
    ss_devices_free(t);
}

/* --- who is refused at the handshake --------------------------------------------------------- */

typedef struct hs_case {
    const char *name;
    ss_keys **client_repo;  /* the repository the client says hello for */
    int client;             /* its device key */
    int revoked_at_server;  /* a device the server's table shows revoked, or -1 */
    int server_lacks;       /* the server's table lacks the client: 1 */
    int revoked_at_client;  /* a device the client's table shows revoked, or -1 */
    int client_lacks;       /* the client's table lacks the server: 1 */
    int server_key_swapped; /* the client's table holds another key under the server's id */
    const char *client_says, *server_says;
} hs_case;

static ss_devices *table_for(int revoked, int lacks, int dev, int swapped)
{
    ss_devices *t = NULL;
    if (!lacks) {
        t = table(revoked);
    } else {
        assert_int_equal(ss_devices_new(&t, NULL), SS_OK);
        ss_device other = device_of(dev == DEV_A ? DEV_B : DEV_A, 0);
        assert_int_equal(ss_devices_put(t, &other, NULL), SS_OK);
    }
    if (swapped) {
        ss_device b = device_of(DEV_B, 0);
        memcpy(b.pk, ss_device_key_public(g_dev[DEV_X]), sizeof b.pk);
        assert_int_equal(ss_devices_put(t, &b, NULL), SS_OK);
    }
    return t;
}

static void run_case(const hs_case *c)
{
    ss_devices *ts = table_for(c->revoked_at_server, c->server_lacks, DEV_A, 0);
    ss_devices *tc = table_for(c->revoked_at_client, c->client_lacks, DEV_B, c->server_key_swapped);
    server s = {.trust = {{g_repo, ts, g_dev[DEV_B]}}, .n_trust = 1};
    ss_peer_trust mine = {*c->client_repo, tc, g_dev[c->client]};
    ss_peer *p = NULL;
    ss_err err = {{0}};
    int fds[2];
    pair(fds);
    server_start(&s, fds[1]);
    ss_rc rc = ss_peer_connect(fds[0], &mine, &p, &err);
    server_join(&s);
    if ((rc != SS_ERR_AUTH && rc != SS_ERR_NOT_FOUND) ||
        (rc == SS_ERR_NOT_FOUND) != !!strstr(c->client_says, "not enrolled") ||
        !strstr(err.msg, c->client_says))
        fail_msg("%s: client rc %d: %s", c->name, rc, err.msg);
    if (!s.rc || !strstr(s.err.msg, c->server_says))
        fail_msg("%s: server rc %d: %s", c->name, s.rc, s.err.msg);
    assert_null(p);
    ss_peer_free(s.peer);
    ss_devices_free(ts);
    ss_devices_free(tc);
}

static void test_handshake_refusals(void **state)
{
    (void)state;
    /* clang-format off */
    const hs_case cases[] = {
        {"another repository", &g_other, DEV_A, -1, 0, -1, 0, 0,
         "does not serve this repository", "no repository served here"},
        {"a key nobody enrolled", &g_repo, DEV_X, -1, 0, -1, 0, 0,
         "closed the session during the handshake", "is not enrolled here"},
        {"a client the server does not know", &g_repo, DEV_A, -1, 1, -1, 0, 0,
         "closed the session during the handshake", "is not enrolled here"},
        {"a client the server saw revoked", &g_repo, DEV_A, DEV_A, 0, -1, 0, 0,
         "closed the session during the handshake", "was revoked"},
        {"a server the client does not know", &g_repo, DEV_A, -1, 0, -1, 1, 0,
         "is not enrolled here", "connection ended"},
        {"a server the client saw revoked", &g_repo, DEV_A, -1, 0, DEV_B, 0, 0,
         "was revoked", "connection ended"},
        {"a server with another key than its id's", &g_repo, DEV_A, -1, 0, -1, 0, 1,
         "did not sign this handshake", "connection ended"},
    };
    /* clang-format on */
    for (size_t i = 0; i < COUNT(cases); i++)
        run_case(&cases[i]);
}

/* --- hostile bytes --------------------------------------------------------------------------- */

/* A server that gets raw bytes from the test on fds[0]: its refusal. */
static void expect_server_refuses(const void *bytes, size_t len, ss_rc want, const char *says)
{
    ss_devices *t = table(-1);
    server s = {.trust = {{g_repo, t, g_dev[DEV_B]}}, .n_trust = 1};
    uint8_t answer[8];
    int fds[2];
    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(write(fds[0], bytes, len), (ssize_t)len);
    shutdown(fds[0], SHUT_WR);
    assert_int_equal(read(fds[0], answer, sizeof answer), 0); /* not a byte back (N1) */
    server_join(&s);
    close(fds[0]);
    if (s.rc != want || !strstr(s.err.msg, says))
        fail_msg("server rc %d: %s (wanted %d, %s)", s.rc, s.err.msg, want, says);
    ss_devices_free(t);
}

static void test_hostile_hello(void **state)
{
    (void)state;
    uint8_t hello[SS_PEER_MSG1_BYTES];
    randombytes_buf(hello, sizeof hello);
    memcpy(hello, SS_PEER_MAGIC, 4);
    memset(hello + 4, 0, 4);
    expect_server_refuses(hello, sizeof hello, SS_ERR_AUTH, "no repository served here");
    memcpy(hello, "S3P2", 4);
    expect_server_refuses(hello, sizeof hello, SS_ERR_AUTH, "no repository served here");
    expect_server_refuses(hello, 10, SS_ERR_TEMPORARY, "connection ended");
}

/*
 * A relay between client and server that does one thing to the client's
 * record n (after the handshake): what a tampering network can do. The
 * server's bytes go back unchanged (relay_back).
 */
typedef enum fault { F_FLIP, F_DROP, F_REPEAT, F_SWAP, F_CUT } fault;

typedef struct relay {
    int client, server; /* the relay's ends of the two socketpairs */
    fault what;
    int n;
    pthread_t thread, back;
} relay;

static int copy_exact(int from, int to, size_t len)
{
    uint8_t buf[4096];
    while (len) {
        ssize_t r = read(from, buf, len < sizeof buf ? len : sizeof buf);
        if (r <= 0 || send(to, buf, (size_t)r, MSG_NOSIGNAL) != r) return -1;
        len -= (size_t)r;
    }
    return 0;
}

/* One record from fd into rec (u32 length and body); its size, or 0 at the end. */
static size_t read_record(int fd, uint8_t *rec)
{
    size_t got = 0, want = 4;
    while (got < want) {
        ssize_t r = read(fd, rec + got, want - got);
        if (r <= 0) return 0;
        got += (size_t)r;
        if (got == 4) want = 4 + ss_le_get32(rec);
    }
    return got;
}

static int put(int fd, const uint8_t *rec, size_t len)
{
    return send(fd, rec, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Record n of the client's as r->what says; the rest as they come. */
static void relay_records(relay *r)
{
    static uint8_t rec[2][4 + SS_PEER_MSG_MAX + SS_PEER_RECORD_ABYTES];
    for (int i = 0;; i++) {
        size_t len = read_record(r->client, rec[0]), len2;
        if (!len) return;
        if (i != r->n) {
            if (put(r->server, rec[0], len)) return;
            continue;
        }
        switch (r->what) {
        case F_FLIP:
            rec[0][4 + 3] ^= 0x20;
            if (put(r->server, rec[0], len)) return;
            break;
        case F_DROP: break;
        case F_REPEAT:
            if (put(r->server, rec[0], len) || put(r->server, rec[0], len)) return;
            break;
        case F_SWAP:
            len2 = read_record(r->client, rec[1]);
            if (!len2 || put(r->server, rec[1], len2) || put(r->server, rec[0], len)) return;
            break;
        case F_CUT: (void)put(r->server, rec[0], len / 2); return;
        }
    }
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    /* hello, then the proof and the stream header */
    if (!copy_exact(r->client, r->server, SS_PEER_MSG1_BYTES) &&
        !copy_exact(r->client, r->server, SS_PEER_MSG3_BYTES + SS_PEER_STREAM_HEADER_BYTES))
        relay_records(r);
    shutdown(r->server, SHUT_WR);
    return NULL;
}

static void *relay_back(void *arg)
{
    relay *r = arg;
    uint8_t b[4096];
    ssize_t k;
    while ((k = read(r->server, b, sizeof b)) > 0)
        if (send(r->client, b, (size_t)k, MSG_NOSIGNAL) != k) break;
    shutdown(r->client, SHUT_WR);
    return NULL;
}

/* A session through a relay doing what to record n; the server reads until it fails. */
static void expect_tamper_refused(fault what, int n, ss_rc want, const char *says)
{
    ss_devices *t = table(-1);
    server s = {.trust = {{g_repo, t, g_dev[DEV_B]}}, .n_trust = 1};
    ss_peer_trust mine = {g_repo, t, g_dev[DEV_A]};
    relay r = {.what = what, .n = n};
    int cs[2], ss[2];
    ss_peer *p = NULL;
    ss_err err = {{0}};
    uint8_t buf[SS_PEER_MSG_MAX];
    size_t len;
    int end = 0;
    ss_rc rc = SS_OK;
    pair(cs);
    pair(ss);
    r.client = cs[1];
    r.server = ss[0];
    assert_int_equal(pthread_create(&r.thread, NULL, relay_main, &r), 0);
    assert_int_equal(pthread_create(&r.back, NULL, relay_back, &r), 0);
    server_start(&s, ss[1]);
    assert_int_equal(ss_peer_connect(cs[0], &mine, &p, &err), SS_OK);
    server_join(&s);
    assert_int_equal(s.rc, SS_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ss_peer_send(p, "message", 7, &err), SS_OK);
    assert_int_equal(ss_peer_finish(p, &err), SS_OK);
    ss_peer_free(p); /* the client is gone: the relay passes on what it sent, then the end */
    for (int i = 0; i < 6 && !rc && !end; i++)
        rc = ss_peer_recv(s.peer, buf, sizeof buf, &len, &end, &err);
    if (rc != want || !strstr(err.msg, says))
        fail_msg("fault %d at %d: rc %d: %s (wanted %d, %s)", what, n, rc, err.msg, want, says);
    ss_peer_free(s.peer);
    pthread_join(r.thread, NULL);
    pthread_join(r.back, NULL);
    close(cs[1]);
    close(ss[0]);
    ss_devices_free(t);
}

/* After the other end's last record, nothing more is read. */
static void test_after_last(void **state)
{
    (void)state;
    ss_devices *t = table(-1);
    server s = {.trust = {{g_repo, t, g_dev[DEV_B]}}, .n_trust = 1};
    ss_peer_trust mine = {g_repo, t, g_dev[DEV_A]};
    ss_peer *p = NULL;
    ss_err err = {{0}};
    uint8_t buf[64];
    size_t len = 0;
    int fds[2], end = 0;
    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(ss_peer_connect(fds[0], &mine, &p, &err), SS_OK);
    server_join(&s);
    assert_int_equal(ss_peer_send(p, "0123456789", 10, &err), SS_OK);
    assert_int_equal(ss_peer_finish(p, &err), SS_OK);
    assert_int_equal(ss_peer_recv(s.peer, buf, 4, &len, &end, &err), SS_ERR_INTEGRITY); /* cap */
    assert_non_null(strstr(err.msg, "a record of 27 bytes"));
    ss_peer_free(s.peer);
    ss_peer_free(p);

    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(ss_peer_connect(fds[0], &mine, &p, &err), SS_OK);
    server_join(&s);
    assert_int_equal(ss_peer_finish(p, &err), SS_OK);
    assert_int_equal(ss_peer_recv(s.peer, buf, sizeof buf, &len, &end, &err), SS_OK);
    assert_true(end);
    assert_int_equal(ss_peer_recv(s.peer, buf, sizeof buf, &len, &end, &err), SS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "after the other end's last"));
    ss_peer_free(s.peer);
    ss_peer_free(p);
    ss_devices_free(t);
}

static void test_tampered_records(void **state)
{
    (void)state;
    expect_tamper_refused(F_FLIP, 1, SS_ERR_INTEGRITY, "does not authenticate");
    expect_tamper_refused(F_DROP, 1, SS_ERR_INTEGRITY, "does not authenticate");
    expect_tamper_refused(F_REPEAT, 1, SS_ERR_INTEGRITY, "does not authenticate");
    expect_tamper_refused(F_SWAP, 1, SS_ERR_INTEGRITY, "does not authenticate");
    expect_tamper_refused(F_CUT, 2, SS_ERR_TEMPORARY, "connection ended");
    expect_tamper_refused(F_DROP, 4, SS_ERR_TEMPORARY, "connection ended"); /* no last record */
}

/* A head signed by device d over seq and chain. */
static ss_peer_head head_of(int d, uint64_t seq, const uint8_t chain[32])
{
    uint8_t msg[SS_PEER_HEAD_MSG_BYTES];
    ss_peer_head h = {.seq = seq};
    memcpy(h.chain, chain, sizeof h.chain);
    memcpy(h.device, ss_device_key_id(g_dev[d]), sizeof h.device);
    ss_peer_head_message(msg, ss_keys_repo_id(g_repo), seq, chain);
    ss_device_key_sign(g_dev[d], msg, sizeof msg, h.sig);
    return h;
}

/* Heads: what a device says it wrote, taken only signed by an enrolled, unrevoked device. */
static void test_heads(void **state)
{
    (void)state;
    static const uint8_t chain[32] = {7, 7, 7};
    ss_devices *t = table(-1), *revoked_a = table(DEV_A);
    ss_err err = {{0}};
    ss_peer_head h = head_of(DEV_A, 42, chain), bad = h;
    assert_int_equal(ss_peer_head_check(&h, g_repo, t, &err), SS_OK);
    bad.seq = 43; /* signed over 42 */
    assert_int_equal(ss_peer_head_check(&bad, g_repo, t, &err), SS_ERR_AUTH);
    assert_non_null(strstr(err.msg, "did not sign"));
    bad = h;
    bad.chain[0] ^= 1;
    assert_int_equal(ss_peer_head_check(&bad, g_repo, t, &err), SS_ERR_AUTH);
    assert_int_equal(ss_peer_head_check(&h, g_other, t, &err), SS_ERR_AUTH); /* another repo */
    assert_int_equal(ss_peer_head_check(&h, g_repo, revoked_a, &err), SS_ERR_AUTH);
    assert_non_null(strstr(err.msg, "which was revoked"));
    ss_peer_head x = head_of(DEV_X, 42, chain);
    assert_int_equal(ss_peer_head_check(&x, g_repo, t, &err), SS_ERR_AUTH);
    assert_non_null(strstr(err.msg, "not enrolled"));

    /* Through a session: A's own head is taken; one in B's name, or altered, is refused. */
    server s = {.trust = {{g_repo, t, g_dev[DEV_B]}}, .n_trust = 1, .serve = 1, .table = t};
    ss_peer_trust mine = {g_repo, t, g_dev[DEV_A]};
    ss_peer *p = NULL;
    int fds[2];
    pair(fds);
    server_start(&s, fds[1]);
    assert_int_equal(ss_peer_connect(fds[0], &mine, &p, &err), SS_OK);
    ss_peer_head in_b = head_of(DEV_B, 50, chain);
    assert_int_equal(ss_peer_announce(p, &in_b, &err), SS_ERR_AUTH); /* not the session's device */
    bad = head_of(DEV_A, 51, chain);
    bad.sig[0] ^= 1;
    assert_int_equal(ss_peer_announce(p, &bad, &err), SS_ERR_AUTH);
    assert_int_equal(ss_peer_announce(p, &h, &err), SS_OK);
    assert_int_equal(ss_peer_finish(p, &err), SS_OK);
    ss_peer_free(p);
    server_join(&s);
    assert_int_equal(s.rc, SS_OK);
    assert_int_equal(s.head, 42);
    ss_devices_free(t);
    ss_devices_free(revoked_a);
}

/* Discovery datagrams: what each end makes of the other's, and what strangers cannot use. */
static void test_discovery(void **state)
{
    (void)state;
    const uint8_t *a = ss_device_key_id(g_dev[DEV_A]), *b = ss_device_key_id(g_dev[DEV_B]);
    const uint64_t now = 1800000000, W = SS_PEER_DISC_WINDOW_S;
    uint8_t ann[SS_PEER_DISC_BYTES], q[SS_PEER_DISC_BYTES], later[SS_PEER_DISC_BYTES];
    uint16_t port = 0;
    ss_peer_disc_make(ann, g_repo, a, 21470, now);
    ss_peer_disc_make(q, g_repo, b, 0, now);
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, b, now, &port),
                     SS_PEER_DISC_ANNOUNCE);
    assert_int_equal(port, 21470);
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, a, now, &port), 0); /* its own */
    assert_int_equal(ss_peer_disc_parse(q, sizeof q, g_repo, a, now, &port), SS_PEER_DISC_QUERY);
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_other, b, now, &port), 0);
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, b, now + W, &port),
                     SS_PEER_DISC_ANNOUNCE); /* a clock one window ahead */
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, b, now + 2 * W, &port), 0);
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann - 1, g_repo, b, now, &port), 0);
    ann[0] ^= 1;
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, b, now, &port), 0);
    ann[0] ^= 1;
    ann[20] ^= 1; /* the tag */
    assert_int_equal(ss_peer_disc_parse(ann, sizeof ann, g_repo, b, now, &port), 0);
    /* The next window: every tag differs, so a stranger cannot link the device across them. */
    ss_peer_disc_make(later, g_repo, a, 21470, now + W);
    assert_memory_not_equal(ann + 16, later + 16, 16);
    assert_memory_not_equal(ann + 32, later + 32, 16);
}

/* The beacon's addresses: what it takes, and a datagram over loopback's broadcast to a bound one.
 */
static void test_beacon(void **state)
{
    (void)state;
    ss_peer_beacon *rx = NULL, *tx = NULL;
    ss_err err = {{0}};
    uint8_t d[SS_PEER_DISC_BYTES] = "S3PD", got[SS_PEER_DISC_BYTES + 1];
    char host[300] = "", where[64];
    struct pollfd pfd;
    const char *bad[] = {"", "nohost", "255.255.255.255", "[::1:21470", "[]:1", "[::1]:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ss_peer_beacon_open(bad[i], 0, &tx, &err), SS_ERR_INVALID);
        assert_null(tx);
    }
    assert_int_equal(ss_peer_beacon_open("on", 0, &tx, &err), SS_OK); /* anywhere */
    ss_peer_beacon_free(tx);
    assert_int_equal(ss_peer_beacon_open("[ff02::5333:5044]:21470", 0, &tx, &err), SS_OK);
    ss_peer_beacon_free(tx);
    snprintf(where, sizeof where, "127.255.255.255:%d", 20000 + (int)(getpid() % 20000));
    assert_int_equal(ss_peer_beacon_open(where, 1, &rx, &err), SS_OK);
    assert_int_equal(ss_peer_beacon_open(where, 0, &tx, &err), SS_OK);
    assert_int_equal(ss_peer_beacon_send(tx, d, sizeof d), 1);
    pfd = (struct pollfd){.fd = ss_peer_beacon_fd(rx), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    assert_int_equal(ss_peer_beacon_recv(rx, got, sizeof got, host, sizeof host), sizeof d);
    assert_string_equal(host, "127.0.0.1"); /* plain IPv4, not ::ffff:127.0.0.1 */
    ss_peer_beacon_reply(rx, got, 4);       /* back to the sender's own port */
    pfd = (struct pollfd){.fd = ss_peer_beacon_fd(tx), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    assert_int_equal(ss_peer_beacon_recv(tx, got, sizeof got, host, sizeof host), 4);
    assert_int_equal(ss_peer_beacon_recv(tx, got, sizeof got, host, sizeof host), -1); /* none */
    ss_peer_beacon_free(rx);
    ss_peer_beacon_free(tx);
    ss_peer_beacon_free(NULL);
}

/* Devices heard on the network join the peers once each; an entry out of shape does not. */
static void test_peers_add(void **state)
{
    (void)state;
    ss_peers *ps = NULL;
    assert_int_equal(ss_peers_new("", NULL, NULL, NULL, &ps, NULL), SS_OK);
    assert_int_equal(ss_peers_add(ps, "10.0.0.1:21470"), 0);
    assert_int_equal(ss_peers_add(ps, "[fe80::1%lo]:21470"), 0);
    assert_int_equal(ss_peers_add(ps, "fe80::1:21470x"), -1);
    assert_int_equal(ss_peers_add(ps, "[::1]:0"), -1);
    assert_int_equal(ss_peers_add(NULL, "10.0.0.1:1"), -1);
    ss_peers_free(ps);
    assert_int_equal(ss_peers_new("[::1]:21470, 127.0.0.1:1", NULL, NULL, NULL, &ps, NULL), SS_OK);
    ss_peers_free(ps);
    assert_int_not_equal(ss_peers_new("[::1]21470", NULL, NULL, NULL, &ps, NULL), SS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session),       cmocka_unit_test(test_handshake_refusals),
        cmocka_unit_test(test_hostile_hello), cmocka_unit_test(test_tampered_records),
        cmocka_unit_test(test_after_last),    cmocka_unit_test(test_heads),
        cmocka_unit_test(test_discovery),     cmocka_unit_test(test_beacon),
        cmocka_unit_test(test_peers_add),
    };
    char path[64];
    int failed;
    if (sodium_init() < 0 || !mkdtemp(g_dir)) return 1;
    if (ss_keys_generate(&g_repo, NULL) || ss_keys_generate(&g_other, NULL)) return 1;
    for (int d = 0; d < N_DEV; d++) {
        snprintf(path, sizeof path, "%s/%c", g_dir, "abx"[d]);
        if (mkdir(path, 0700) || ss_device_key_create(path, &g_dev[d], NULL)) return 1;
    }
    snprintf(path, sizeof path, "%s/served", g_dir);
    if (mkdir(path, 0700)) return 1;
    failed = cmocka_run_group_tests_name("peer", tests, NULL, NULL);
    for (int d = 0; d < N_DEV; d++)
        ss_device_key_free(g_dev[d]);
    ss_keys_free(g_repo);
    ss_keys_free(g_other);
    snprintf(path, sizeof path, "rm -rf '%s'", g_dir);
    if (system(path)) return 1;
    return failed;
}
