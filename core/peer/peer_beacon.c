/*
 * peer_beacon: the UDP socket of discovery (docs/PEERS.md "Discovery") and
 * where its datagrams go. One socket for both families: IPv6 with IPv4
 * mapped in (dual-stack), or IPv4 alone on a kernel without IPv6. "on" is
 * the limited broadcast, every IPv4 interface's own broadcast address (the
 * limited one leaves by the default route only, and not at all without
 * one) and the IPv6 group SS_PEER_DISC_GROUP on every multicast interface,
 * all on SS_PEER_PORT. Interfaces are looked up at each send: they come
 * and go while a device serves. What arrives is not trusted here: the
 * datagram's tags (peer_disc.c) and then the handshake decide.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct ss_peer_beacon {
    int fd, v6; /* v6: AF_INET6, IPv4 mapped in */
    int on;     /* "on": every interface's broadcast, the group on each */
    int bound;  /* holds the port: joins the group on each interface */
    uint16_t port;
    struct sockaddr_storage to; /* "HOST:PORT": the one destination (on: the group) */
    socklen_t to_len;
    int to_group; /* to is an IPv6 multicast group without a scope: on each interface */
    struct sockaddr_storage from; /* the last datagram's sender */
    socklen_t from_len;
};

/* where as an address: "on", IPv4 "HOST:PORT", "[V6]:PORT" or "[V6%IF]:PORT"; 0 when it is. */
static int resolve(ss_peer_beacon *b, const char *where)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char host[256], port[8];
    const char *colon = strrchr(where, ':');
    size_t hlen;
    if (!strcmp(where, "on")) {
        b->on = 1;
        snprintf(host, sizeof host, "%s", SS_PEER_DISC_GROUP);
        snprintf(port, sizeof port, "%d", SS_PEER_PORT);
    } else {
        size_t plen = colon ? strlen(colon + 1) : 0;
        if (!plen || plen >= sizeof port || strspn(colon + 1, "0123456789") != plen) return -1;
        hlen = (size_t)(colon - where);
        if (hlen >= 2 && where[0] == '[' && where[hlen - 1] == ']') where++, hlen -= 2;
        if (!hlen || hlen >= sizeof host) return -1;
        snprintf(host, sizeof host, "%.*s", (int)hlen, where);
        snprintf(port, sizeof port, "%s", colon + 1);
    }
    if (getaddrinfo(host, port, &hints, &ai) || !ai) return -1;
    memcpy(&b->to, ai->ai_addr, ai->ai_addrlen);
    b->to_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (b->to.ss_family == AF_INET) {
        b->port = ntohs(((struct sockaddr_in *)&b->to)->sin_port);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&b->to;
        b->port = ntohs(s6->sin6_port);
        b->to_group = IN6_IS_ADDR_MULTICAST(&s6->sin6_addr) && !s6->sin6_scope_id;
    }
    return 0;
}

/* a, an IPv4 address, as the socket sends to it (mapped on a dual-stack one). */
static socklen_t v4_dest(const ss_peer_beacon *b, const struct sockaddr_in *a, uint16_t port,
                         struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (!b->v6) {
        struct sockaddr_in *o = (struct sockaddr_in *)out;
        *o = *a;
        o->sin_port = htons(port);
        return sizeof *o;
    }
    struct sockaddr_in6 *o = (struct sockaddr_in6 *)out;
    o->sin6_family = AF_INET6;
    o->sin6_port = htons(port);
    o->sin6_addr.s6_addr[10] = o->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&o->sin6_addr.s6_addr[12], &a->sin_addr, 4);
    return sizeof *o;
}

static void join(const ss_peer_beacon *b, unsigned ifindex)
{
    struct ipv6_mreq m = {.ipv6mr_interface = ifindex};
    m.ipv6mr_multiaddr = ((const struct sockaddr_in6 *)&b->to)->sin6_addr;
    /* already a member, or an interface without multicast: nothing to do */
    (void)setsockopt(b->fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m);
}

/* The group on every interface that takes multicast (joined first when bound; d NULL: only that).
 */
static size_t to_group(ss_peer_beacon *b, const uint8_t *d, size_t n, struct ifaddrs *ifs)
{
    size_t sent = 0;
    unsigned done[64];
    size_t ndone = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        unsigned idx = if_nametoindex(i->ifa_name);
        struct sockaddr_in6 to = *(struct sockaddr_in6 *)&b->to;
        int seen = 0;
        if (!idx || !(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_MULTICAST)) continue;
        for (size_t k = 0; k < ndone; k++)
            seen |= done[k] == idx;
        if (seen || ndone == sizeof done / sizeof done[0]) continue;
        done[ndone++] = idx;
        if (b->bound) join(b, idx);
        to.sin6_scope_id = idx;
        if (!d || setsockopt(b->fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof idx)) continue;
        sent += sendto(b->fd, d, n, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)n;
    }
    return sent;
}

size_t ss_peer_beacon_send(ss_peer_beacon *b, const uint8_t *d, size_t n)
{
    struct ifaddrs *ifs = NULL;
    struct sockaddr_storage to;
    struct sockaddr_in all = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_BROADCAST)};
    size_t sent = 0;
    if (b->on || b->to_group) (void)getifaddrs(&ifs); /* none: the fixed destinations only */
    if (b->on) {
        sent += sendto(b->fd, d, n, 0, (struct sockaddr *)&to, v4_dest(b, &all, b->port, &to)) ==
                (ssize_t)n;
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            struct sockaddr_in bc = {.sin_family = AF_INET};
            if (!(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_BROADCAST) || !i->ifa_addr ||
                i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask)
                continue;
            /* the address with the host bits set: an interface may have no brd configured */
            bc.sin_addr.s_addr = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr |
                                 ~((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr;
            socklen_t len = v4_dest(b, &bc, b->port, &to);
            sent += sendto(b->fd, d, n, 0, (struct sockaddr *)&to, len) == (ssize_t)n;
        }
    }
    if (b->v6 && b->to.ss_family == AF_INET6 && (b->on || b->to_group)) {
        sent += to_group(b, d, n, ifs);
    } else if (b->to.ss_family == AF_INET) {
        socklen_t len = v4_dest(b, (struct sockaddr_in *)&b->to, b->port, &to);
        sent += sendto(b->fd, d, n, 0, (struct sockaddr *)&to, len) == (ssize_t)n;
    } else if (b->v6) { /* a group on one interface, or a unicast address */
        sent += sendto(b->fd, d, n, 0, (struct sockaddr *)&b->to, b->to_len) == (ssize_t)n;
    }
    if (ifs) freeifaddrs(ifs);
    return sent;
}

ss_rc ss_peer_beacon_open(const char *where, int bound, ss_peer_beacon **ret_beacon, ss_err *err)
{
    ss_peer_beacon *b = calloc(1, sizeof *b);
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
    struct sockaddr_in any4 = {.sin_family = AF_INET};
    int one = 1, zero = 0, hops = 1;
    *ret_beacon = NULL;
    if (!b) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    b->bound = bound;
    if (resolve(b, where)) {
        free(b);
        return ss_fail(err, SS_ERR_INVALID, "peer_discovery %s: not on, HOST:PORT or [V6]:PORT",
                       where);
    }
    b->fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    b->v6 = b->fd >= 0 && !setsockopt(b->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (!b->v6 && b->fd >= 0) close(b->fd);
    if (!b->v6) b->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    any6.sin6_port = any4.sin_port = htons(bound ? b->port : 0);
    if (b->fd < 0 || setsockopt(b->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(b->fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) ||
        (b->v6 ? bind(b->fd, (struct sockaddr *)&any6, sizeof any6)
               : bind(b->fd, (struct sockaddr *)&any4, sizeof any4))) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "peer_discovery %s: %s", where, strerror(errno));
        ss_peer_beacon_free(b);
        return rc;
    }
    /* the local network only; other devices on this host hear it too */
    if (b->v6) {
        (void)setsockopt(b->fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
        (void)setsockopt(b->fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one, sizeof one);
    }
    if (bound && b->v6 && b->to.ss_family == AF_INET6) {
        const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)&b->to;
        if (g->sin6_scope_id) join(b, g->sin6_scope_id);
        struct ifaddrs *ifs = NULL;
        if ((b->on || b->to_group) && !getifaddrs(&ifs)) {
            to_group(b, NULL, 0, ifs);
            freeifaddrs(ifs);
        }
    }
    *ret_beacon = b;
    return SS_OK;
}

void ss_peer_beacon_free(ss_peer_beacon *b)
{
    if (!b) return;
    if (b->fd >= 0) close(b->fd);
    free(b);
}

int ss_peer_beacon_fd(const ss_peer_beacon *b)
{
    return b ? b->fd : -1;
}

ssize_t ss_peer_beacon_recv(ss_peer_beacon *b, uint8_t *d, size_t cap, char *host, size_t hcap)
{
    char h[NI_MAXHOST];
    b->from_len = sizeof b->from;
    ssize_t n = recvfrom(b->fd, d, cap, 0, (struct sockaddr *)&b->from, &b->from_len);
    if (n < 0) return -1;
    if (getnameinfo((struct sockaddr *)&b->from, b->from_len, h, sizeof h, NULL, 0, NI_NUMERICHOST))
        return -1;
    /* an IPv4 sender on the dual-stack socket: its plain address */
    snprintf(host, hcap, "%s", strncmp(h, "::ffff:", 7) || !strchr(h, '.') ? h : h + 7);
    return n;
}

void ss_peer_beacon_reply(ss_peer_beacon *b, const uint8_t *d, size_t n)
{
    if (b->from_len) (void)sendto(b->fd, d, n, 0, (struct sockaddr *)&b->from, b->from_len);
}

static long ms_since(const struct timeval *t0)
{
    struct timeval t;
    gettimeofday(&t, NULL);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_usec - t0->tv_usec) / 1000;
}

void ss_peer_disc_query(const char *where, const ss_keys *keys,
                        const uint8_t me[SS_TXN_DEVICE_ID_BYTES], ss_peer_found_fn found, void *ctx)
{
    uint8_t d[SS_PEER_DISC_BYTES + 1], seen[SS_PEERS_MAX][16];
    char host[NI_MAXHOST];
    size_t nseen = 0;
    ss_peer_beacon *b = NULL;
    struct timeval t0;
    if (ss_peer_beacon_open(where, 0, &b, NULL)) return;
    ss_peer_disc_make(d, keys, me, 0, (uint64_t)time(NULL));
    gettimeofday(&t0, NULL);
    if (!ss_peer_beacon_send(b, d, SS_PEER_DISC_BYTES)) goto done;
    for (long left; (left = SS_PEER_DISC_WAIT_MS - ms_since(&t0)) > 0;) {
        struct pollfd pfd = {.fd = b->fd, .events = POLLIN};
        uint16_t tcp = 0;
        size_t k = 0;
        if (poll(&pfd, 1, (int)left) <= 0) break;
        ssize_t n = ss_peer_beacon_recv(b, d, sizeof d, host, sizeof host);
        if (n <= 0 || ss_peer_disc_parse(d, (size_t)n, keys, me, (uint64_t)time(NULL), &tcp) !=
                          SS_PEER_DISC_ANNOUNCE)
            continue;
        /* one device answers at each of its addresses (IPv4, IPv6): one session is enough, and
         * a second would wait behind the first at a server that takes one at a time */
        while (k < nseen && memcmp(seen[k], d + 32, 16))
            k++;
        if (k < nseen || nseen == SS_PEERS_MAX) continue;
        memcpy(seen[nseen++], d + 32, 16);
        found(ctx, host, tcp);
    }
done:
    ss_peer_beacon_free(b);
}
