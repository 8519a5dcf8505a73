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

#include "peer_set_impl.h"
#include "ss_buf.h"

#define CONNECT_MS 1000 /* a peer on the LAN answers well within it */
#define IO_SECONDS 10   /* no byte for this long: the peer is gone */

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
    if (pthread_mutex_init(&ps->mu, NULL)) {
        free(ps);
        return ss_fail(err, SS_ERR_NOMEM, "peers: no mutex");
    }
    if (pthread_cond_init(&ps->cv, NULL)) {
        pthread_mutex_destroy(&ps->mu);
        free(ps);
        return ss_fail(err, SS_ERR_NOMEM, "peers: no condition variable");
    }
    for (const char *s = list; *s;) {
        size_t len = strcspn(s, ",");
        if (ps->n == SS_PEERS_MAX || parse_entry(s, len, &ps->v[ps->n])) {
            pthread_cond_destroy(&ps->cv); /* nothing else began yet */
            pthread_mutex_destroy(&ps->mu);
            free(ps);
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
 * A peer not reached is left out for the run; one whose handshake failed
 * is tried again once this device's table has changed (a pull that is
 * still learning the devices may not know the peer yet, nor the peer it).
 */
ss_peer *peers_session(ss_peers *ps, peer_entry *e)
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
        snprintf(e->why, sizeof e->why, "not reached");
        return NULL;
    }
    ss_rc rc = ss_peer_connect(fd, &t, &e->session, &err);
    if (!rc) {
        memcpy(e->device, ss_peer_device(e->session), sizeof e->device);
        e->known = 1;
        e->why[0] = '\0';
    } else {
        e->refused_at = ss_devices_count(t.devices) + 1; /* + 1: never 0 */
        snprintf(e->why, sizeof e->why, "%.159s", err.msg);
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
void peers_discover_now(ss_peers *ps)
{
    ss_peer_trust t;
    ps->trust(ps->ctx, &t);
    ss_peer_disc_query(ps->disc, t.keys, ss_device_key_id(t.me), found_cb, ps);
    ps->disc[0] = '\0';
}

void peers_leave_out(ss_peers *ps, peer_entry *e, const char *why)
{
    e->out = 1; /* its session's state is unknown: no more of it */
    snprintf(e->why, sizeof e->why, "%.159s", why);
    if (!e->busy) { /* else its thread still holds it: peer_multi.c frees it at the end */
        ss_peer_free(e->session);
        e->session = NULL;
    }
    warnf(ps, "peer %s:%s left out: %s", e->host, e->port, why);
}

void peers_delivered(ss_peers *ps, size_t i, const char *key, uint64_t off, uint64_t len)
{
    peers_delivery *d;
    ps->delivered++;
    ps->bytes += len;
    ps->v[i].bytes += len;
    ps->v[i].delivered = ps->delivered;
    d = &ps->ring[ps->delivered % PEERS_RING];
    *d = (peers_delivery){.n = ps->delivered, .peer = (unsigned)i, .off = off, .len = len};
    snprintf(d->key, sizeof d->key, "%s", key);
}

ss_rc ss_peers_get(ss_peers *ps, const char *key, uint64_t off, uint64_t len, ss_write_fn write,
                   void *wctx)
{
    uint64_t max = len && len < SS_PEER_OBJECT_MAX ? len : SS_PEER_OBJECT_MAX;
    if (!ps || !ss_peer_key_servable(key)) return SS_ERR_NOT_FOUND;
    if (ps->disc[0]) peers_discover_now(ps);
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        ss_peer *p = e->busy ? NULL : peers_session(ps, e); /* busy: its thread has it */
        ss_buf b = {0};
        ss_err err = {{0}};
        if (!p) continue;
        ss_rc rc = ss_peer_get(p, key, off, len, max, buf_sink, &b, &err);
        if (rc == SS_OK) { /* a sink that does not take it all asks the store instead */
            size_t n = b.len;
            int taken = write(wctx, b.p, n) == 0;
            ss_buf_free(&b);
            if (!taken) return SS_ERR_NOT_FOUND;
            peers_delivered(ps, i, key, off, n);
            return SS_OK;
        }
        ss_buf_free(&b);
        if (rc == SS_ERR_NOT_FOUND) continue;
        peers_leave_out(ps, e, err.msg);
    }
    return SS_ERR_NOT_FOUND;
}

void ss_peers_suspect(ss_peers *ps, const char *key, uint64_t off)
{
    const peers_delivery *best = NULL;
    if (!ps) return;
    for (size_t k = 0; k < PEERS_RING; k++) {
        const peers_delivery *d = &ps->ring[k];
        if (d->n && !strcmp(d->key, key) && off >= d->off && off - d->off < d->len &&
            (!best || d->n > best->n))
            best = d;
    }
    if (best) ps->suspects |= 1u << best->peer;
}

/*
 * Who sent what failed since mark: the peers whose bytes a reader found bad
 * (ss_peers_suspect), else the one that delivered what itself, else (what
 * came from the store, or the ring no longer holds it all) every peer that
 * delivered since mark.
 */
static uint32_t culprits(const ss_peers *ps, uint64_t mark, const char *what)
{
    uint32_t who = 0;
    if (ps->suspects) return ps->suspects;
    if (ps->delivered - mark < PEERS_RING) {
        for (uint64_t n = mark + 1; n <= ps->delivered; n++) {
            const peers_delivery *d = &ps->ring[n % PEERS_RING];
            if (!strcmp(d->key, what)) who = 1u << d->peer;
        }
        if (who) return who;
    }
    for (size_t i = 0; i < ps->n; i++)
        if (ps->v[i].delivered > mark) who |= 1u << i;
    return who;
}

int ss_peers_blame(ss_peers *ps, uint64_t mark, const char *what)
{
    char why[160];
    uint32_t who;
    int any = 0;
    if (!ps) return 0;
    who = culprits(ps, mark, what);
    ps->suspects = 0;
    snprintf(why, sizeof why, "what it sent of %.64s failed verification", what);
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        if (!(who & (1u << i)) || e->out) continue;
        any = 1;
        peers_leave_out(ps, e, why);
    }
    return any;
}

void ss_peers_announce(ss_peers *ps, const ss_peer_head *h)
{
    if (ps && ps->disc[0]) peers_discover_now(ps);
    for (size_t i = 0; ps && i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        ss_peer *p = e->busy ? NULL : peers_session(ps, e);
        ss_err err = {{0}};
        if (!p || !ss_peer_announce(p, h, &err)) continue;
        peers_leave_out(ps, e, err.msg);
    }
}

void ss_peers_probe(ss_peers *ps)
{
    if (ps && ps->disc[0]) peers_discover_now(ps);
    for (size_t i = 0; ps && i < ps->n; i++)
        if (!ps->v[i].busy) peers_session(ps, &ps->v[i]);
}

size_t ss_peers_count(const ss_peers *ps)
{
    return ps ? ps->n : 0;
}

void ss_peers_info_at(const ss_peers *ps, size_t i, ss_peers_info *ret)
{
    const peer_entry *e = &ps->v[i];
    memset(ret, 0, sizeof *ret);
    snprintf(ret->addr, sizeof ret->addr, strchr(e->host, ':') ? "[%s]:%s" : "%s:%s", e->host,
             e->port);
    memcpy(ret->device, e->device, sizeof ret->device);
    ret->known = e->known;
    ret->reachable = e->session && !e->out;
    snprintf(ret->why, sizeof ret->why, "%s",
             ret->reachable ? ""
             : e->why[0]    ? e->why
                            : "not contacted");
    ret->bytes = e->bytes;
}
