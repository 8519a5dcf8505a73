/*
 * peer_set: the peers a device asks before the bucket (the `peers`
 * setting, docs/PEERS.md "Fetching"): a session to each, opened on first
 * use with short timeouts, asked in order; a peer that cannot be reached
 * or breaks the protocol is left out for the rest of the run, and one
 * whose bytes failed verification (ss_peers_blame) too, named in a warning.
 */
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ss_buf.h"

#define CONNECT_MS 1000 /* a peer on the LAN answers well within it */
#define IO_SECONDS 10   /* no byte for this long: the peer is gone */

typedef struct peer_entry {
    char host[256], port[8];
    ss_peer *session;
    int out;            /* left out for the rest of the run */
    int warned;         /* its refusal was said once */
    size_t refused_at;  /* devices this device knew when the handshake failed; 0: it did not */
    uint64_t delivered; /* ss_peers delivered count after its last delivery */
} peer_entry;

struct ss_peers {
    peer_entry v[SS_PEERS_MAX];
    size_t n;
    char disc[300]; /* where to ask the network before the first get; "" done or never */
    uint64_t delivered, bytes;
    ss_peers_trust_fn trust;
    ss_peers_warn_fn warn;
    void *ctx;
};

static void warnf(ss_peers *ps, const char *fmt, const char *a, const char *b, const char *c)
{
    char msg[1024];
    if (!ps->warn) return;
    snprintf(msg, sizeof msg, fmt, a, b, c);
    ps->warn(ps->ctx, msg);
}

/* "HOST:PORT" (HOST may be [v6]) into e; 0 when it is one. */
static int parse_entry(const char *s, size_t len, peer_entry *e)
{
    size_t hlen = len, plen;
    unsigned long port;
    char *end = NULL;
    while (hlen && s[hlen - 1] != ':')
        hlen--;
    if (!hlen--) return -1; /* no colon */
    plen = len - hlen - 1;
    const char *host = s, *digits = s + hlen + 1;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') host++, hlen -= 2;
    if (!hlen || hlen >= sizeof e->host || !plen || plen >= sizeof e->port ||
        strspn(digits, "0123456789") < plen)
        return -1;
    memcpy(e->host, host, hlen);
    e->host[hlen] = '\0';
    memcpy(e->port, digits, plen);
    e->port[plen] = '\0';
    port = strtoul(e->port, &end, 10);
    return port >= 1 && port <= 65535 ? 0 : -1;
}

ss_rc ss_peers_new(const char *list, ss_peers_trust_fn trust, ss_peers_warn_fn warn, void *ctx,
                   ss_peers **ret_peers, ss_err *err)
{
    ss_peers *ps = calloc(1, sizeof *ps);
    *ret_peers = NULL;
    if (!ps) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    ps->trust = trust;
    ps->warn = warn;
    ps->ctx = ctx;
    for (const char *s = list; *s;) {
        size_t len = strcspn(s, ",");
        if (ps->n == SS_PEERS_MAX || parse_entry(s, len, &ps->v[ps->n])) {
            ss_peers_free(ps);
            return ss_fail(err, SS_ERR_INVALID, "peers: '%.*s' is not HOST:PORT (at most %d)",
                           (int)len, s, SS_PEERS_MAX);
        }
        ps->n++;
        s += len + (s[len] == ',');
        s += strspn(s, " ");
    }
    *ret_peers = ps;
    return SS_OK;
}

void ss_peers_free(ss_peers *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->v[i].session) ss_peer_finish(ps->v[i].session, NULL);
        ss_peer_free(ps->v[i].session);
    }
    free(ps);
}

uint64_t ss_peers_delivered(const ss_peers *ps)
{
    return ps ? ps->delivered : 0;
}

uint64_t ss_peers_bytes(const ss_peers *ps)
{
    return ps ? ps->bytes : 0;
}

/* A TCP connection to e within CONNECT_MS, then blocking with IO_SECONDS timeouts; -1. */
static int dial(const peer_entry *e)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    struct timeval tv = {IO_SECONDS, 0};
    struct pollfd pfd;
    int fd = -1, soerr = 0, flags;
    socklen_t sl = sizeof soerr;
    if (getaddrinfo(e->host, e->port, &hints, &ai) || !ai) return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) goto fail;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) goto fail;
    pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, CONNECT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) ||
        soerr)
        goto fail;
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
        goto fail;
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
}

/*
 * e's session, opened now if need be; NULL when it cannot be. A peer not
 * reached is left out for the run; one whose handshake failed is tried
 * again once this device's table has changed (a pull that is still
 * learning the devices may not know the peer yet, nor the peer it).
 */
static ss_peer *session(ss_peers *ps, peer_entry *e)
{
    ss_peer_trust t;
    ss_err err = {{0}};
    int fd;
    if (e->session || e->out) return e->session;
    ps->trust(ps->ctx, &t);
    if (e->refused_at && e->refused_at - 1 == ss_devices_count(t.devices)) return NULL;
    fd = dial(e);
    if (fd < 0) { /* nobody there: a peer that is off is no news */
        e->out = 1;
        return NULL;
    }
    ss_rc rc = ss_peer_connect(fd, &t, &e->session, &err);
    if (rc) {
        e->refused_at = ss_devices_count(t.devices) + 1; /* + 1: never 0 */
        /* one this device does not know yet is no news: its pull may enroll it */
        if (!e->warned && rc != SS_ERR_NOT_FOUND)
            warnf(ps, "peer %s:%s: %s", e->host, e->port, err.msg);
        e->warned = 1;
    }
    return e->session;
}

static int buf_sink(void *ctx, const void *data, size_t len)
{
    return ss_buf_append(ctx, data, len);
}

void ss_peers_discover(ss_peers *ps, const char *where)
{
    snprintf(ps->disc, sizeof ps->disc, "%s", where);
}

/* A device that answered from host (numeric) with port joins, unless it is known. */
static void found(ss_peers *ps, const char *host, uint16_t port)
{
    peer_entry *e;
    char p[8];
    snprintf(p, sizeof p, "%u", port);
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->v[i].host, host) && !strcmp(ps->v[i].port, p)) return;
    if (ps->n == SS_PEERS_MAX) return;
    e = &ps->v[ps->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->host, sizeof e->host, "%s", host);
    snprintf(e->port, sizeof e->port, "%s", p);
}

int ss_peers_add(ss_peers *ps, const char *entry)
{
    peer_entry e;
    memset(&e, 0, sizeof e);
    if (!ps || parse_entry(entry, strlen(entry), &e)) return -1;
    found(ps, e.host, (uint16_t)strtoul(e.port, NULL, 10));
    ps->disc[0] = '\0'; /* who serves said so: no need to ask */
    return 0;
}

static void found_cb(void *ctx, const char *host, uint16_t port)
{
    found(ctx, host, port);
}

/* One query to ps->disc, and the devices that answer it (once a run). */
static void discover(ss_peers *ps)
{
    ss_peer_trust t;
    ps->trust(ps->ctx, &t);
    ss_peer_disc_query(ps->disc, t.keys, ss_device_key_id(t.me), found_cb, ps);
    ps->disc[0] = '\0';
}

ss_rc ss_peers_get(ss_peers *ps, const char *key, uint64_t off, uint64_t len, ss_write_fn write,
                   void *wctx)
{
    uint64_t max = len && len < SS_PEER_OBJECT_MAX ? len : SS_PEER_OBJECT_MAX;
    if (!ps || !ss_peer_key_servable(key)) return SS_ERR_NOT_FOUND;
    if (ps->disc[0]) discover(ps);
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        ss_peer *p = session(ps, e);
        ss_buf b = {0};
        ss_err err = {{0}};
        if (!p) continue;
        ss_rc rc = ss_peer_get(p, key, off, len, max, buf_sink, &b, &err);
        if (rc == SS_OK) { /* a sink that does not take it all asks the store instead */
            size_t n = b.len;
            int taken = write(wctx, b.p, n) == 0;
            ss_buf_free(&b);
            if (!taken) return SS_ERR_NOT_FOUND;
            ps->delivered++;
            ps->bytes += n;
            e->delivered = ps->delivered;
            return SS_OK;
        }
        ss_buf_free(&b);
        if (rc == SS_ERR_NOT_FOUND) continue;
        e->out = 1; /* a broken session: its state is unknown */
        ss_peer_free(e->session);
        e->session = NULL;
        warnf(ps, "peer %s:%s left out: %s", e->host, e->port, err.msg);
    }
    return SS_ERR_NOT_FOUND;
}

int ss_peers_blame(ss_peers *ps, uint64_t mark, const char *what)
{
    int any = 0;
    if (!ps) return 0;
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        if (e->delivered <= mark || e->out) continue;
        e->out = any = 1;
        ss_peer_free(e->session);
        e->session = NULL;
        warnf(ps, "peer %s:%s left out: what it sent of %s failed verification", e->host, e->port,
              what);
    }
    return any;
}

void ss_peers_announce(ss_peers *ps, const ss_peer_head *h)
{
    if (ps && ps->disc[0]) discover(ps);
    for (size_t i = 0; ps && i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        ss_peer *p = session(ps, e);
        ss_err err = {{0}};
        if (!p || !ss_peer_announce(p, h, &err)) continue;
        e->out = 1; /* its state is unknown now */
        ss_peer_free(e->session);
        e->session = NULL;
        warnf(ps, "peer %s:%s left out: %s", e->host, e->port, err.msg);
    }
}
