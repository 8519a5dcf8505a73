/*
 * peer_set_impl: the state of a set of peers (ss_peers), shared by
 * peer_set.c (sessions, discovery, one object at a time, blame) and
 * peer_multi.c (several objects at once, one per peer). Private to core/peer/.
 */
#ifndef SS_PEER_SET_IMPL_H
#define SS_PEER_SET_IMPL_H

#include <pthread.h>

#include "peer.h"

struct peers_job;

typedef struct peer_entry {
    char host[256], port[8];
    ss_peer *session;
    int out;            /* left out for the rest of the run */
    int warned;         /* its refusal was said once */
    size_t refused_at;  /* devices this device knew when the handshake failed; 0: it did not */
    uint64_t delivered; /* ss_peers delivered count after its last delivery */
    uint64_t bytes;     /* what it delivered this run */
    uint8_t device[SS_TXN_DEVICE_ID_BYTES]; /* who it is, once a handshake passed */
    int known;                              /* device is set */
    char why[160];                          /* why it is out or was refused; "" */
    struct peers_job *busy;                 /* the GET its thread runs (peer_multi.c) */
    pthread_t thread;
} peer_entry;

/* What was delivered lately, to tell which peer sent bytes that failed (ss_peers_suspect). */
#define PEERS_RING 1024
typedef struct peers_delivery {
    uint64_t n; /* its delivery count: 0, an empty slot */
    unsigned peer;
    char key[SS_KEY_NAME_MAX];
    uint64_t off, len;
} peers_delivery;

struct ss_peers {
    peer_entry v[SS_PEERS_MAX];
    size_t n;
    char disc[300]; /* where to ask the network before the first get; "" done or never */
    uint64_t delivered, bytes;
    ss_peers_trust_fn trust;
    ss_peers_warn_fn warn;
    void *ctx;
    /* peer_multi.c: GETs begun, and the threads that run them */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct peers_job *jobs;
    size_t next; /* the peer a GET is offered to first */
    peers_delivery ring[PEERS_RING];
    uint32_t suspects; /* peers whose bytes failed since the last blame */
};

/* e's session, opened now if need be; NULL when it cannot be (peer_set.c). */
ss_peer *peers_session(ss_peers *ps, peer_entry *e);
/* e left out for the run, named with why (its session freed unless its thread runs). */
void peers_leave_out(ss_peers *ps, peer_entry *e, const char *why);
/* One delivery of key's [off, off + len) by peer i: counted and kept in the ring. */
void peers_delivered(ss_peers *ps, size_t i, const char *key, uint64_t off, uint64_t len);
/* Discovery's query, once a run (before the first get). */
void peers_discover_now(ss_peers *ps);

#endif
