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
 * (a hello that is not its, an unknown or revoked device, a signature that
 * does not verify); SS_ERR_INTEGRITY for a record that does not
 * authenticate or a message out of shape; SS_ERR_TEMPORARY when the
 * connection ends early or times out.
 */
#ifndef SS_PEER_H
#define SS_PEER_H

#include <stddef.h>
#include <stdint.h>

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

/*
 * Where a server finds an object: a readable fd of exactly *ret_size bytes
 * (owned by the caller), or SS_ERR_NOT_FOUND.
 */
typedef ss_rc (*ss_peer_open_fn)(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size);
/*
 * Answer requests on p until the client finishes (SS_OK) or breaks the
 * protocol. Keys outside log/, data/ and checkpoints/ are refused unasked.
 */
ss_rc ss_peer_serve(ss_peer *p, ss_peer_open_fn open, void *ctx, ss_err *err);

#endif
