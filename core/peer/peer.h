/*
 * peer: a session between two devices of the same repository
 * (docs/PEERS.md), the one header of core/peer/.
 *
 * Owns the handshake that authenticates both ends with their enrolled
 * device keys, and the sealed message stream after it, over a connected
 * socket the caller made: tests drive it over a socketpair, and timeouts
 * are the socket's (SO_RCVTIMEO, SO_SNDTIMEO). Nothing here decides what a
 * device fetches or serves; it only carries bytes between two devices that
 * each one's device table shows enrolled and not revoked. What a peer sends
 * is checked by the engine as if it came from the bucket.
 *
 * Errors: SS_ERR_AUTH when the other end is not a device of the repository
 * (a hello that is not its, a revoked device, a signature that does not
 * verify); SS_ERR_NOT_FOUND when it is a device this end's table does not
 * hold (yet: a table is as fresh as its last pull); SS_ERR_INTEGRITY for a record that does not
 * authenticate or a message out of shape; SS_ERR_TEMPORARY when the
 * connection ends early or times out.
 */
#ifndef SS_PEER_H
#define SS_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "device_key.h"
#include "devices.h"
#include "keys.h"
#include "ss_error.h"
#include "io.h"

typedef struct ss_peer ss_peer;

/* What one end trusts: the repository, its device table, and itself. All borrowed. */
typedef struct ss_peer_trust {
    const ss_keys *keys;       /* the repository's (the peer subkey) */
    const ss_devices *devices; /* who is enrolled, who revoked */
    const ss_device_key *me;   /* this device's key pair */
} ss_peer_trust;

/*
 * The client's half of the handshake on the connected socket fd, which the
 * session owns from then on (closed by ss_peer_free, or here on failure).
 */
ss_rc ss_peer_connect(int fd, const ss_peer_trust *t, ss_peer **ret_peer, ss_err *err);
/*
 * The server's half, for any of the n repositories trusts[] serves: a hello
 * that is none of theirs is closed without a byte sent. *ret_which: the
 * index of the repository. fd as for ss_peer_connect.
 */
ss_rc ss_peer_accept(int fd, const ss_peer_trust *trusts, size_t n, ss_peer **ret_peer,
                     size_t *ret_which, ss_err *err);
void ss_peer_free(ss_peer *p); /* NULL safe; closes the socket, wipes the keys */

/* The other end's device id (SS_TXN_DEVICE_ID_BYTES), borrowed. */
const uint8_t *ss_peer_device(const ss_peer *p);

/* One message of at most SS_PEER_MSG_MAX bytes. */
ss_rc ss_peer_send(ss_peer *p, const void *msg, size_t len, ss_err *err);
/* Message bytes sent and received so far (what the sessions of a device exchanged). */
void ss_peer_bytes(const ss_peer *p, uint64_t *ret_sent, uint64_t *ret_received);
/* The end of this side's stream: nothing may be sent after it. */
ss_rc ss_peer_finish(ss_peer *p, ss_err *err);
/*
 * The next message into buf (cap >= SS_PEER_MSG_MAX takes any), its length
 * in *ret_len; *ret_end set, and nothing in buf, when the other end
 * finished. A message longer than cap is SS_ERR_INTEGRITY.
 */
ss_rc ss_peer_recv(ss_peer *p, void *buf, size_t cap, size_t *ret_len, int *ret_end, ss_err *err);

/* --- objects (peer_get.c): the one request of PEERS.md, both ends --------------------- */

/*
 * Ask for key (its bytes from off, len of them, 0: to the end) and pass
 * what comes to write. SS_ERR_NOT_FOUND when the peer does not hold it;
 * more than max bytes, or another length than asked, SS_ERR_INTEGRITY.
 */
ss_rc ss_peer_get(ss_peer *p, const char *key, uint64_t off, uint64_t len, uint64_t max,
                  ss_write_fn write, void *ctx, ss_err *err);

/* A head: a device's signed word that log/<seq> with chain value chain exists. */
typedef struct ss_peer_head {
    uint64_t seq;
    uint8_t chain[SS_CHAIN_BYTES];
    uint8_t device[SS_TXN_DEVICE_ID_BYTES];
    uint8_t sig[SS_TXN_SIG_BYTES];
} ss_peer_head;

/* What a head's signature signs (PEERS.md "Heads"). */
void ss_peer_head_message(uint8_t out[SS_PEER_HEAD_MSG_BYTES],
                          const uint8_t repo_id[SS_REPO_ID_BYTES], uint64_t seq,
                          const uint8_t chain[SS_CHAIN_BYTES]);
/*
 * h checked against table: its device is enrolled, not revoked, and
 * signed it. SS_ERR_AUTH naming what is wrong.
 */
ss_rc ss_peer_head_check(const ss_peer_head *h, const ss_keys *keys, const ss_devices *table,
                         ss_err *err);
/* Tell the other end this device's head; SS_ERR_AUTH when it refuses it. */
ss_rc ss_peer_announce(ss_peer *p, const ss_peer_head *h, ss_err *err);

/* What a server does with requests (ctx is each function's). */
typedef struct ss_peer_handler {
    /*
     * Where an object is: a readable fd of exactly *ret_size bytes (owned
     * by the caller), or SS_ERR_NOT_FOUND.
     */
    ss_rc (*open)(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size);
    /* A head the other end announced, not yet checked: SS_OK takes it. NULL: refused. */
    ss_rc (*head)(void *ctx, const ss_peer_head *h);
    void *ctx;
} ss_peer_handler;
/*
 * Answer requests on p until the client finishes (SS_OK) or breaks the
 * protocol. Keys outside log/, data/ and checkpoints/ are refused unasked.
 */
ss_rc ss_peer_serve(ss_peer *p, const ss_peer_handler *h, ss_err *err);

/* --- the object cache a device serves from (peer_cache.c) ----------------------------- */

typedef struct ss_peer_cache ss_peer_cache;

/* A key of the shapes peers serve: log/ and checkpoints/ (20 digits), data/ pack keys. */
int ss_peer_key_servable(const char *key);
/*
 * The cache in dir (made 0700 at the first put), holding at most max_bytes:
 * what goes past it pushes out the least recently used objects. Opening
 * touches nothing on disk.
 */
ss_rc ss_peer_cache_open(const char *dir, uint64_t max_bytes, ss_peer_cache **ret_cache,
                         ss_err *err);
void ss_peer_cache_free(ss_peer_cache *c); /* NULL safe */
/* Keep key's len bytes (best effort: a cache that cannot keep it stays as it was). */
void ss_peer_cache_put(ss_peer_cache *c, const char *key, const void *buf, size_t len);
/* A handler's open over the cache (ctx: the ss_peer_cache); marks key recently used. */
ss_rc ss_peer_cache_open_key(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size);

/* --- discovery on the local network (peer_disc.c) --------------------------------------- */

/*
 * An announcement (this device serves on TCP port) or, port 0, a query for
 * the repository's serving devices, for the time now (unix seconds), into
 * out. Both carry only tags under the peer key that change every window.
 */
void ss_peer_disc_make(uint8_t out[SS_PEER_DISC_BYTES], const ss_keys *keys,
                       const uint8_t device[SS_TXN_DEVICE_ID_BYTES], uint16_t port, uint64_t now);
/*
 * A datagram of n bytes: SS_PEER_DISC_ANNOUNCE (another device of this
 * repository serves on *ret_port), SS_PEER_DISC_QUERY (one asks who
 * serves), or 0: anything else, this device's own announcement included.
 * The window may be the one before or after now's (clocks differ).
 */
int ss_peer_disc_parse(const uint8_t *d, size_t n, const ss_keys *keys,
                       const uint8_t me[SS_TXN_DEVICE_ID_BYTES], uint64_t now, uint16_t *ret_port);

/* --- discovery's UDP socket (peer_beacon.c) -------------------------------------------- */

typedef struct ss_peer_beacon ss_peer_beacon;
/*
 * A socket for datagrams to where: "on" (255.255.255.255, every IPv4
 * interface's broadcast address, and the group SS_PEER_DISC_GROUP on every
 * multicast interface, all on SS_PEER_PORT), an IPv4 "HOST:PORT" (there
 * only), "[GROUP]:PORT" (an IPv6 group, on every interface) or
 * "[GROUP%IF]:PORT" (on IF). bound: it takes where's port and joins the
 * group, to hear queries and announcements; else any free port.
 * SS_ERR_INVALID for where out of shape, SS_ERR_IO when the port is taken.
 */
ss_rc ss_peer_beacon_open(const char *where, int bound, ss_peer_beacon **ret_beacon, ss_err *err);
void ss_peer_beacon_free(ss_peer_beacon *b);    /* NULL safe */
int ss_peer_beacon_fd(const ss_peer_beacon *b); /* to poll; non-blocking */
/* d to every destination of where, best effort: how many took it. */
size_t ss_peer_beacon_send(ss_peer_beacon *b, const uint8_t *d, size_t n);
/*
 * The next datagram waiting into d, its length (-1: none), its sender's
 * numeric address in host (IPv4 plain, IPv6 with %SCOPE when link-local).
 */
ssize_t ss_peer_beacon_recv(ss_peer_beacon *b, uint8_t *d, size_t cap, char *host, size_t hcap);
/* d to the sender of the last datagram received. */
void ss_peer_beacon_reply(ss_peer_beacon *b, const uint8_t *d, size_t n);
/* A device that answered a query: its numeric address (IPv6 with %SCOPE) and TCP port. */
typedef void (*ss_peer_found_fn)(void *ctx, const char *host, uint16_t port);
/*
 * One query to where (as for ss_peer_beacon_open, not bound), and each
 * device of the repository that answers within SS_PEER_DISC_WAIT_MS, once
 * a device (its device tag: it answers on each of its addresses), to found.
 */
void ss_peer_disc_query(const char *where, const ss_keys *keys,
                        const uint8_t me[SS_TXN_DEVICE_ID_BYTES], ss_peer_found_fn found,
                        void *ctx);

/* --- the peers a device asks (peer_set.c) ------------------------------------------------ */

typedef struct ss_peers ss_peers;

/* The trust to connect with now (the device table moves as a pull goes). */
typedef void (*ss_peers_trust_fn)(void *ctx, ss_peer_trust *ret_trust);
typedef void (*ss_peers_warn_fn)(void *ctx, const char *msg);

/*
 * Peers at list, "HOST:PORT[,HOST:PORT...]" (at most SS_PEERS_MAX); nothing is
 * contacted until the first get. SS_ERR_INVALID naming an entry out of shape.
 */
ss_rc ss_peers_new(const char *list, ss_peers_trust_fn trust, ss_peers_warn_fn warn, void *ctx,
                   ss_peers **ret_peers, ss_err *err);
void ss_peers_free(ss_peers *ps); /* NULL safe */
/*
 * Also ask the network: before the first get, a query goes to where (as
 * for ss_peer_beacon_open: "on", HOST:PORT, [GROUP]:PORT) and the devices
 * that answer within SS_PEER_DISC_WAIT_MS join the peers.
 */
void ss_peers_discover(ss_peers *ps, const char *where);
/*
 * A device heard announcing itself, "HOST:PORT" or "[V6]:PORT", joins the
 * peers; with one heard, the network is not asked this run (ss_peers_discover):
 * who serves said so. -1 for an entry out of shape.
 */
int ss_peers_add(ss_peers *ps, const char *entry);
/*
 * key's bytes [off, off + len) (len 0: to the end, at most
 * SS_PEER_OBJECT_MAX) from the first peer that holds them, through write
 * all at once: SS_OK; SS_ERR_NOT_FOUND when none does (a peer that cannot be
 * reached or breaks the protocol is left out for the rest of the run).
 */
ss_rc ss_peers_get(ss_peers *ps, const char *key, uint64_t off, uint64_t len, ss_write_fn write,
                   void *wctx);
/*
 * Several objects at once, each from one peer (peer_multi.c): begin
 * key's [off, off + len) into dst (exactly len bytes, borrowed until
 * ss_peers_step hands tag back) on an idle peer not asked for it yet,
 * without waiting for it. 0: begun; -1: no peer can take it (ask the store).
 * owner: whose it is (ss_peers_step hands back only its own).
 */
int ss_peers_begin(ss_peers *ps, const void *owner, const char *key, uint64_t off, size_t len,
                   void *dst, void *tag);
/*
 * Begun GETs of owner that are over, at most cap: their tags, each with
 * ok 1 when dst holds all its bytes, 0 when no peer delivered it (ask the
 * store). Waits up to wait_ms for one when none is over and some run.
 */
size_t ss_peers_step(ss_peers *ps, const void *owner, int wait_ms, void **tags, int *ok,
                     size_t cap);
/*
 * A reader found key's bytes at off bad: whoever delivered them last is the
 * one ss_peers_blame leaves out (not every peer that delivered since mark).
 */
void ss_peers_suspect(ss_peers *ps, const char *key, uint64_t off);
/* Objects delivered so far: a mark for ss_peers_blame. */
uint64_t ss_peers_delivered(const ss_peers *ps);
/*
 * What peers delivered since mark failed verification (what: the object):
 * the peers suspected since the last blame (ss_peers_suspect), else the
 * one that delivered what, else every peer that delivered since mark, is
 * left out for the rest of the run and named in a warning. 1 when there
 * was one.
 */
int ss_peers_blame(ss_peers *ps, uint64_t mark, const char *what);
/* Bytes delivered so far. */
uint64_t ss_peers_bytes(const ss_peers *ps);
/* What is known of one peer now (status -v). */
typedef struct ss_peers_info {
    char addr[270];                         /* HOST:PORT */
    uint8_t device[SS_TXN_DEVICE_ID_BYTES]; /* once a handshake passed */
    int known;                              /* device is set */
    int reachable;                          /* a session is open */
    char why[160];                          /* why not; "" */
    uint64_t bytes;                         /* what it delivered this run */
} ss_peers_info;
/* Every peer contacted now (discovery first) as a GET would, with the same timeouts. */
void ss_peers_probe(ss_peers *ps);
size_t ss_peers_count(const ss_peers *ps); /* NULL: 0 */
void ss_peers_info_at(const ss_peers *ps, size_t i, ss_peers_info *ret);
/* Tell every peer that can be reached this device's head h (best effort: nothing fails). */
void ss_peers_announce(ss_peers *ps, const ss_peer_head *h);

#endif
