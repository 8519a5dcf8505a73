/*
 * peer: the handshake and the sealed stream of a session between two
 * devices (docs/PEERS.md, "Handshake" and "Messages").
 *
 * Design notes.
 *   N1. Nothing about the repository leaves a server before the client
 *       showed it holds the repository's peer key: msg1's tag is a MAC of
 *       the client's ephemeral key under it, checked before any byte is
 *       sent back (a stranger's hello is closed unanswered).
 *   N2. Each end proves its device key in this session: it signs the
 *       transcript hash h, which covers both ephemeral keys, and sends the
 *       id and signature sealed under a key from the X25519 shared secret
 *       and h. Either end accepts the other only when its own device table
 *       shows that id enrolled and not revoked, and the signature verifies
 *       with the key the table holds.
 *   N3. The stream keys come from the shared secret, h and the peer key:
 *       without the ephemeral secrets nobody reads or alters a record, and
 *       crypto_secretstream refuses a record dropped, repeated, reordered,
 *       altered, or read after the other end's final one.
 *   N4. Every length read from the socket is bounded before it is used.
 */
#include "peer.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "le.h"

#define RECORD_MAX (SS_PEER_MSG_MAX + SS_PEER_RECORD_ABYTES)

struct ss_peer {
    int fd;
    int ended;    /* the other end's final record came */
    int finished; /* this end's final record went */
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
    uint64_t sent, received; /* message bytes, each way (ss_peer_bytes) */
    crypto_secretstream_xchacha20poly1305_state tx, rx;
    uint8_t record[4 + RECORD_MAX]; /* one record in or out */
};

/* What both ends compute during the handshake; wiped after it. */
typedef struct handshake {
    uint8_t e_pk[SS_PEER_PK_BYTES], e_sk[32]; /* this end's ephemeral pair */
    uint8_t msg1[SS_PEER_MSG1_BYTES];
    uint8_t other_pk[SS_PEER_PK_BYTES]; /* the other end's ephemeral key */
    uint8_t dh[crypto_scalarmult_BYTES];
    uint8_t h[SS_PEER_HASH_BYTES];
    uint8_t box_keys[64];    /* server's box key || client's box key */
    uint8_t stream_keys[64]; /* client to server || server to client */
} handshake;

/* --- the socket ------------------------------------------------------------------------ */

static ss_rc io_fail(ss_err *err, const char *what, ssize_t n)
{
    if (n == 0 || errno == EPIPE || errno == ECONNRESET)
        return ss_fail(err, SS_ERR_TEMPORARY, "peer: the connection ended while %s", what);
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return ss_fail(err, SS_ERR_TEMPORARY, "peer: timed out while %s", what);
    return ss_fail(err, SS_ERR_TEMPORARY, "peer: %s: %s", what, strerror(errno));
}

static ss_rc read_all(int fd, void *buf, size_t len, const char *what, ss_err *err)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return io_fail(err, what, n);
        p += n;
        len -= (size_t)n;
    }
    return SS_OK;
}

/* send(MSG_NOSIGNAL): a peer that went away is an error to report, not a SIGPIPE. */
static ss_rc write_all(int fd, const void *buf, size_t len, const char *what, ss_err *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return io_fail(err, what, n);
        p += n;
        len -= (size_t)n;
    }
    return SS_OK;
}

/* --- the handshake (N1, N2) -------------------------------------------------------------- */

static void keyed_hash(uint8_t *out, size_t outlen, const ss_keys *keys, const void *a, size_t alen,
                       const void *b, size_t blen, const void *c, size_t clen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, ss_keys_subkey(keys, SS_SUBKEY_PEER), SS_SUBKEY_BYTES, outlen);
    crypto_generichash_update(&st, a, alen);
    crypto_generichash_update(&st, b, blen);
    if (clen) crypto_generichash_update(&st, c, clen);
    crypto_generichash_final(&st, out, outlen);
}

static void hello_tag(const ss_keys *keys, const uint8_t e_pk[SS_PEER_PK_BYTES],
                      uint8_t tag[SS_PEER_HASH_BYTES])
{
    keyed_hash(tag, SS_PEER_HASH_BYTES, keys, SS_PEER_HELLO_LABEL, strlen(SS_PEER_HELLO_LABEL),
               e_pk, SS_PEER_PK_BYTES, NULL, 0);
}

/* msg1 from this end's fresh ephemeral key. */
static void make_hello(handshake *hs, const ss_keys *keys)
{
    crypto_kx_keypair(hs->e_pk, hs->e_sk);
    memcpy(hs->msg1, SS_PEER_MAGIC, 4);
    memset(hs->msg1 + 4, 0, 4);
    memcpy(hs->msg1 + 8, hs->e_pk, SS_PEER_PK_BYTES);
    hello_tag(keys, hs->e_pk, hs->msg1 + 8 + SS_PEER_PK_BYTES);
}

/* dh, h and the keys, once both ephemeral keys are known; server_pk: the server's. */
static ss_rc derive(handshake *hs, const ss_keys *keys, const uint8_t server_pk[SS_PEER_PK_BYTES],
                    ss_err *err)
{
    if (crypto_scalarmult(hs->dh, hs->e_sk, hs->other_pk))
        return ss_fail(err, SS_ERR_AUTH, "peer: an ephemeral key that is not one");
    keyed_hash(hs->h, sizeof hs->h, keys, SS_PEER_HS_LABEL, strlen(SS_PEER_HS_LABEL), hs->msg1,
               sizeof hs->msg1, server_pk, SS_PEER_PK_BYTES);
    keyed_hash(hs->box_keys, sizeof hs->box_keys, keys, hs->dh, sizeof hs->dh, hs->h, sizeof hs->h,
               NULL, 0);
    keyed_hash(hs->stream_keys, sizeof hs->stream_keys, keys, SS_PEER_SESSION_LABEL,
               strlen(SS_PEER_SESSION_LABEL), hs->dh, sizeof hs->dh, hs->h, sizeof hs->h);
    return SS_OK;
}

/* This end's id and its signature of label || h, sealed under key (N2). */
static void seal_identity(const handshake *hs, const ss_device_key *me, const char *label,
                          const uint8_t key[32], uint8_t box[SS_PEER_ID_BOX_BYTES])
{
    static const uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t plain[SS_TXN_DEVICE_ID_BYTES + SS_TXN_SIG_BYTES], msg[32 + SS_PEER_HASH_BYTES];
    size_t llen = strlen(label);
    memcpy(msg, label, llen);
    memcpy(msg + llen, hs->h, sizeof hs->h);
    memcpy(plain, ss_device_key_id(me), SS_TXN_DEVICE_ID_BYTES);
    ss_device_key_sign(me, msg, llen + sizeof hs->h, plain + SS_TXN_DEVICE_ID_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(box, NULL, plain, sizeof plain, hs->h, sizeof hs->h,
                                               NULL, nonce, key);
}

/* The other end's sealed identity: a device t's table shows enrolled, not revoked (N2). */
static ss_rc open_identity(const handshake *hs, const ss_peer_trust *t, const char *label,
                           const uint8_t key[32], const uint8_t box[SS_PEER_ID_BOX_BYTES],
                           uint8_t ret_id[SS_TXN_DEVICE_ID_BYTES], ss_err *err)
{
    static const uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t plain[SS_TXN_DEVICE_ID_BYTES + SS_TXN_SIG_BYTES], msg[32 + SS_PEER_HASH_BYTES];
    size_t llen = strlen(label);
    const ss_device *dev;
    char hex[17];
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, box, SS_PEER_ID_BOX_BYTES,
                                                   hs->h, sizeof hs->h, nonce, key))
        return ss_fail(err, SS_ERR_AUTH,
                       "peer: a handshake that does not open with this "
                       "repository's keys");
    ss_device_id_short(plain, hex);
    dev = ss_devices_find(t->devices, plain);
    if (!dev) return ss_fail(err, SS_ERR_NOT_FOUND, "peer: device %s is not enrolled here", hex);
    if (dev->revoked)
        return ss_fail(err, SS_ERR_AUTH, "peer: device %s (%s) was revoked", dev->name, hex);
    memcpy(msg, label, llen);
    memcpy(msg + llen, hs->h, sizeof hs->h);
    if (crypto_sign_verify_detached(plain + SS_TXN_DEVICE_ID_BYTES, msg, llen + sizeof hs->h,
                                    dev->pk))
        return ss_fail(err, SS_ERR_AUTH,
                       "peer: device %s (%s) did not sign this handshake with its key", dev->name,
                       hex);
    memcpy(ret_id, plain, SS_TXN_DEVICE_ID_BYTES);
    return SS_OK;
}

static ss_rc swap_headers(int fd, const uint8_t *out, uint8_t *in, ss_err *err)
{
    ss_rc rc = write_all(fd, out, SS_PEER_STREAM_HEADER_BYTES, "starting the session", err);
    if (rc) return rc;
    return read_all(fd, in, SS_PEER_STREAM_HEADER_BYTES, "starting the session", err);
}

/* Both stream headers, this end's first (N3). tx_key, rx_key: 32 bytes each. */
static ss_rc open_streams(ss_peer *p, const uint8_t *tx_key, const uint8_t *rx_key, ss_err *err)
{
    uint8_t header[SS_PEER_STREAM_HEADER_BYTES];
    ss_rc rc;
    crypto_secretstream_xchacha20poly1305_init_push(&p->tx, header, tx_key);
    rc = swap_headers(p->fd, header, header, err);
    if (rc == SS_ERR_TEMPORARY && err && strstr(err->msg, "ended"))
        return ss_fail(err, SS_ERR_AUTH,
                       "peer: the other end closed the session during the "
                       "handshake (it does not take this device)");
    if (rc) return rc;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&p->rx, header, rx_key))
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: a stream header that is not one");
    return SS_OK;
}

static ss_rc peer_new(int fd, ss_peer **ret_peer, ss_err *err)
{
    ss_peer *p = sodium_malloc(sizeof *p);
    if (!p) {
        close(fd);
        return ss_fail(err, SS_ERR_NOMEM, "peer: out of memory");
    }
    memset(p, 0, sizeof *p);
    p->fd = fd;
    *ret_peer = p;
    return SS_OK;
}

static ss_rc client_steps(ss_peer *p, handshake *hs, const ss_peer_trust *t, ss_err *err)
{
    uint8_t msg2[SS_PEER_MSG2_BYTES], box[SS_PEER_MSG3_BYTES];
    ss_rc rc;
    make_hello(hs, t->keys);
    rc = write_all(p->fd, hs->msg1, sizeof hs->msg1, "saying hello", err);
    if (rc) return rc;
    rc = read_all(p->fd, msg2, sizeof msg2, "waiting for the peer's answer", err);
    if (rc == SS_ERR_TEMPORARY && err && strstr(err->msg, "ended"))
        return ss_fail(err, SS_ERR_AUTH, "peer: the other end does not serve this repository");
    if (rc) return rc;
    memcpy(hs->other_pk, msg2, SS_PEER_PK_BYTES);
    rc = derive(hs, t->keys, hs->other_pk, err);
    if (rc) return rc;
    rc =
        open_identity(hs, t, SS_PEER_SIG_SERVER, hs->box_keys, msg2 + SS_PEER_PK_BYTES, p->id, err);
    if (rc) return rc;
    seal_identity(hs, t->me, SS_PEER_SIG_CLIENT, hs->box_keys + 32, box);
    rc = write_all(p->fd, box, sizeof box, "proving who this device is", err);
    if (rc) return rc;
    return open_streams(p, hs->stream_keys, hs->stream_keys + 32, err);
}

ss_rc ss_peer_connect(int fd, const ss_peer_trust *t, ss_peer **ret_peer, ss_err *err)
{
    ss_peer *p = NULL; /* owned until handed out */
    handshake hs;
    ss_rc rc;
    *ret_peer = NULL;
    rc = peer_new(fd, &p, err);
    if (rc) return rc;
    rc = client_steps(p, &hs, t, err);
    sodium_memzero(&hs, sizeof hs);
    if (rc) {
        ss_peer_free(p);
        return rc;
    }
    *ret_peer = p;
    return SS_OK;
}

/* The repository of msg1 among trusts (N1): its index, or n. */
static size_t which_repository(const uint8_t msg1[SS_PEER_MSG1_BYTES], const ss_peer_trust *trusts,
                               size_t n)
{
    static const uint8_t zero[4];
    uint8_t tag[SS_PEER_HASH_BYTES];
    if (memcmp(msg1, SS_PEER_MAGIC, 4) || memcmp(msg1 + 4, zero, 4)) return n;
    for (size_t i = 0; i < n; i++) {
        hello_tag(trusts[i].keys, msg1 + 8, tag);
        if (!sodium_memcmp(tag, msg1 + 8 + SS_PEER_PK_BYTES, sizeof tag)) return i;
    }
    return n;
}

static ss_rc server_steps(ss_peer *p, handshake *hs, const ss_peer_trust *trusts, size_t n,
                          size_t *ret_which, ss_err *err)
{
    uint8_t msg2[SS_PEER_MSG2_BYTES], box[SS_PEER_MSG3_BYTES];
    const ss_peer_trust *t;
    ss_rc rc = read_all(p->fd, hs->msg1, sizeof hs->msg1, "reading a hello", err);
    if (rc) return rc;
    *ret_which = which_repository(hs->msg1, trusts, n);
    if (*ret_which == n)
        return ss_fail(err, SS_ERR_AUTH, "peer: a hello for no repository served here");
    t = &trusts[*ret_which];
    crypto_kx_keypair(hs->e_pk, hs->e_sk);
    memcpy(hs->other_pk, hs->msg1 + 8, SS_PEER_PK_BYTES);
    rc = derive(hs, t->keys, hs->e_pk, err);
    if (rc) return rc;
    memcpy(msg2, hs->e_pk, SS_PEER_PK_BYTES);
    seal_identity(hs, t->me, SS_PEER_SIG_SERVER, hs->box_keys, msg2 + SS_PEER_PK_BYTES);
    rc = write_all(p->fd, msg2, sizeof msg2, "answering a hello", err);
    if (rc) return rc;
    rc = read_all(p->fd, box, sizeof box, "waiting for the peer's proof", err);
    if (rc) return rc;
    rc = open_identity(hs, t, SS_PEER_SIG_CLIENT, hs->box_keys + 32, box, p->id, err);
    if (rc) return rc;
    return open_streams(p, hs->stream_keys + 32, hs->stream_keys, err);
}

ss_rc ss_peer_accept(int fd, const ss_peer_trust *trusts, size_t n, ss_peer **ret_peer,
                     size_t *ret_which, ss_err *err)
{
    ss_peer *p = NULL; /* owned until handed out */
    handshake hs;
    size_t which = n;
    ss_rc rc;
    *ret_peer = NULL;
    *ret_which = 0;
    rc = peer_new(fd, &p, err);
    if (rc) return rc;
    rc = server_steps(p, &hs, trusts, n, &which, err);
    sodium_memzero(&hs, sizeof hs);
    if (rc) {
        ss_peer_free(p);
        return rc;
    }
    *ret_peer = p;
    *ret_which = which;
    return SS_OK;
}

void ss_peer_free(ss_peer *p)
{
    if (!p) return;
    if (p->fd >= 0) close(p->fd);
    sodium_free(p); /* wipes the stream states */
}

const uint8_t *ss_peer_device(const ss_peer *p)
{
    return p->id;
}

/* --- messages (N3, N4) ------------------------------------------------------------------- */

static ss_rc send_record(ss_peer *p, const void *msg, size_t len, unsigned char tag, ss_err *err)
{
    unsigned long long clen = 0;
    if (p->finished) return ss_fail(err, SS_ERR_INVALID, "peer: a message after this end's last");
    if (len > SS_PEER_MSG_MAX)
        return ss_fail(err, SS_ERR_INVALID, "peer: a message of %zu bytes is too long", len);
    crypto_secretstream_xchacha20poly1305_push(&p->tx, p->record + 4, &clen, msg, len, NULL, 0,
                                               tag);
    ss_le_put32(p->record, (uint32_t)clen);
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) p->finished = 1;
    return write_all(p->fd, p->record, 4 + (size_t)clen, "sending", err);
}

ss_rc ss_peer_send(ss_peer *p, const void *msg, size_t len, ss_err *err)
{
    ss_rc rc = send_record(p, msg, len, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, err);
    if (!rc) p->sent += len;
    return rc;
}

void ss_peer_bytes(const ss_peer *p, uint64_t *ret_sent, uint64_t *ret_received)
{
    *ret_sent = p->sent;
    *ret_received = p->received;
}

ss_rc ss_peer_finish(ss_peer *p, ss_err *err)
{
    return send_record(p, NULL, 0, crypto_secretstream_xchacha20poly1305_TAG_FINAL, err);
}

ss_rc ss_peer_recv(ss_peer *p, void *buf, size_t cap, size_t *ret_len, int *ret_end, ss_err *err)
{
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    uint32_t clen;
    ss_rc rc;
    *ret_len = 0;
    *ret_end = 0;
    if (p->ended) return ss_fail(err, SS_ERR_INVALID, "peer: reading after the other end's last");
    rc = read_all(p->fd, p->record, 4, "receiving", err);
    if (rc) return rc;
    clen = ss_le_get32(p->record);
    if (clen < SS_PEER_RECORD_ABYTES || clen > RECORD_MAX || clen - SS_PEER_RECORD_ABYTES > cap)
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: a record of %u bytes", clen);
    rc = read_all(p->fd, p->record + 4, clen, "receiving", err);
    if (rc) return rc;
    if (crypto_secretstream_xchacha20poly1305_pull(&p->rx, buf, &mlen, &tag, p->record + 4, clen,
                                                   NULL, 0))
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: a record that does not authenticate");
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        p->ended = 1;
        if (mlen) return ss_fail(err, SS_ERR_INTEGRITY, "peer: a last record that is not empty");
        *ret_end = 1;
        return SS_OK;
    }
    if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: a record with tag %u", tag);
    *ret_len = (size_t)mlen;
    p->received += mlen;
    return SS_OK;
}
