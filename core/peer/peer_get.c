/*
 * peer_get: the one request of a peer session, GET of an object's bytes
 * (docs/PEERS.md "Requests"), asked (ss_peer_get) and answered
 * (ss_peer_serve). The bytes are the store's own objects, still sealed:
 * the asking device verifies them as it verifies the bucket's.
 */
#include "peer.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "le.h"

#define ANSWER_OK_BYTES 9 /* u8 status | u64 length */

/* --- asking ------------------------------------------------------------------------------ */

static ss_rc recv_some(ss_peer *p, uint8_t *buf, size_t *ret_len, const char *key, ss_err *err)
{
    int end = 0;
    ss_rc rc = ss_peer_recv(p, buf, SS_PEER_MSG_MAX, ret_len, &end, err);
    if (rc) return rc;
    if (end)
        return ss_fail(err, SS_ERR_TEMPORARY, "peer: the session ended in the answer for %s", key);
    return SS_OK;
}

/* The answer's header: the length that follows, or why there is none. */
static ss_rc answer_length(const uint8_t *msg, size_t len, const char *key, uint64_t want,
                           uint64_t max, uint64_t *ret_len, ss_err *err)
{
    if (len == 1 && msg[0] == SS_PEER_ANS_MISSING)
        return ss_fail(err, SS_ERR_NOT_FOUND, "peer: %s is not held there", key);
    if (len == 1 && msg[0] == SS_PEER_ANS_BAD)
        return ss_fail(err, SS_ERR_NOT_FOUND, "peer: %s is not served there", key);
    if (len != ANSWER_OK_BYTES || msg[0] != SS_PEER_ANS_OK)
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: an answer for %s out of shape", key);
    *ret_len = ss_le_get64(msg + 1);
    if (*ret_len > max || (want && *ret_len != want))
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: %" PRIu64 " bytes of %s, not what was asked",
                       *ret_len, key);
    return SS_OK;
}

ss_rc ss_peer_get(ss_peer *p, const char *key, uint64_t off, uint64_t len, uint64_t max,
                  ss_write_fn write, void *ctx, ss_err *err)
{
    uint8_t req[1 + 2 + SS_KEY_NAME_MAX + 16], *q = req;
    uint8_t *msg = NULL; /* owned */
    size_t klen = strlen(key), n = 0;
    uint64_t total = 0, got = 0;
    ss_rc rc;
    if (klen >= SS_KEY_NAME_MAX || !ss_peer_key_servable(key))
        return ss_fail(err, SS_ERR_INVALID, "peer: %s is not an object peers serve", key);
    *q++ = SS_PEER_REQ_GET;
    q = ss_le_put16(q, (uint16_t)klen);
    memcpy(q, key, klen);
    q = ss_le_put64(q + klen, off);
    q = ss_le_put64(q, len);
    rc = ss_peer_send(p, req, (size_t)(q - req), err);
    if (rc) return rc;
    msg = malloc(SS_PEER_MSG_MAX);
    if (!msg) return ss_fail(err, SS_ERR_NOMEM, "peer: out of memory");
    rc = recv_some(p, msg, &n, key, err);
    if (rc) goto done;
    rc = answer_length(msg, n, key, len, max, &total, err);
    while (!rc && got < total) {
        rc = recv_some(p, msg, &n, key, err);
        if (rc) break;
        if (!n || n > total - got) {
            rc = ss_fail(err, SS_ERR_INTEGRITY, "peer: more bytes of %s than announced", key);
            break;
        }
        got += n;
        if (write(ctx, msg, n)) rc = ss_fail(err, SS_ERR_IO, "peer: writing %s", key);
    }
done:
    free(msg);
    return rc;
}

/* --- answering --------------------------------------------------------------------------- */

typedef struct request {
    char key[SS_KEY_NAME_MAX];
    uint64_t off, len;
} request;

/* A GET request, bounded (N4 of peer.c); 0 when it is not one. */
static int parse_request(const uint8_t *m, size_t n, request *r)
{
    size_t klen;
    if (n < 3 || m[0] != SS_PEER_REQ_GET) return 0;
    klen = ss_le_get16(m + 1);
    if (klen >= SS_KEY_NAME_MAX || n != 3 + klen + 16) return 0;
    memcpy(r->key, m + 3, klen);
    r->key[klen] = '\0';
    if (strlen(r->key) != klen) return 0; /* a NUL inside */
    r->off = ss_le_get64(m + 3 + klen);
    r->len = ss_le_get64(m + 3 + klen + 8);
    return 1;
}

static ss_rc send_status(ss_peer *p, uint8_t status, ss_err *err)
{
    return ss_peer_send(p, &status, 1, err);
}

/* fd's bytes [off, off + len) as messages after the OK header. */
static ss_rc send_range(ss_peer *p, int fd, uint64_t off, uint64_t len, uint8_t *buf, ss_err *err)
{
    uint8_t head[ANSWER_OK_BYTES] = {SS_PEER_ANS_OK};
    ss_rc rc;
    ss_le_put64(head + 1, len);
    rc = ss_peer_send(p, head, sizeof head, err);
    while (!rc && len) {
        size_t want = len < SS_PEER_MSG_MAX ? (size_t)len : SS_PEER_MSG_MAX;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) /* the object shrank under us: the asker sees a short answer */
            return ss_fail(err, SS_ERR_IO, "peer: reading an object to serve: %s",
                           n ? strerror(errno) : "it shrank");
        rc = ss_peer_send(p, buf, (size_t)n, err);
        ss_fault_point("peer.mid-answer"); /* test-peers: a server gone mid-transfer */
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return rc;
}

static ss_rc answer(ss_peer *p, const request *r, const ss_peer_handler *h, uint8_t *buf,
                    ss_err *err)
{
    uint64_t size = 0, len;
    int fd = -1;
    ss_rc rc;
    if (!ss_peer_key_servable(r->key)) return send_status(p, SS_PEER_ANS_BAD, err);
    rc = h->open(h->ctx, r->key, &fd, &size);
    if (rc) return send_status(p, SS_PEER_ANS_MISSING, err);
    len = r->len ? r->len : size - (r->off < size ? r->off : size);
    if (r->off > size || len > size - r->off)
        rc = send_status(p, SS_PEER_ANS_BAD, err);
    else
        rc = send_range(p, fd, r->off, len, buf, err);
    close(fd);
    return rc;
}

/* A HEAD message into h; 0 when it is not one. */
static int parse_head(const uint8_t *m, size_t n, ss_peer_head *h)
{
    if (n != SS_PEER_HEAD_BYTES || m[0] != SS_PEER_REQ_HEAD) return 0;
    h->seq = ss_le_get64(m + 1);
    memcpy(h->chain, m + 9, sizeof h->chain);
    memcpy(h->device, m + 9 + SS_CHAIN_BYTES, sizeof h->device);
    memcpy(h->sig, m + 9 + SS_CHAIN_BYTES + SS_TXN_DEVICE_ID_BYTES, sizeof h->sig);
    return 1;
}

/* One request: a GET, or a HEAD (taken only from the device the session is with). */
static ss_rc one_request(ss_peer *p, const uint8_t *m, size_t n, const ss_peer_handler *h,
                         uint8_t *buf, ss_err *err)
{
    ss_peer_head head;
    request r;
    if (parse_request(m, n, &r)) return answer(p, &r, h, buf, err);
    if (!parse_head(m, n, &head))
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: a request out of shape");
    if (!h->head || memcmp(head.device, ss_peer_device(p), sizeof head.device) ||
        h->head(h->ctx, &head))
        return send_status(p, SS_PEER_ANS_BAD, err);
    return send_status(p, SS_PEER_ANS_OK, err);
}

ss_rc ss_peer_serve(ss_peer *p, const ss_peer_handler *h, ss_err *err)
{
    uint8_t *buf = malloc(SS_PEER_MSG_MAX), *msg = malloc(SS_PEER_MSG_MAX); /* owned */
    ss_rc rc = buf && msg ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "peer: out of memory");
    while (!rc) {
        size_t n = 0;
        int end = 0;
        rc = ss_peer_recv(p, msg, SS_PEER_MSG_MAX, &n, &end, err);
        if (rc || end) break; /* the client's last record ends the session */
        rc = one_request(p, msg, n, h, buf, err);
    }
    free(buf);
    free(msg);
    return rc;
}

/* --- heads ------------------------------------------------------------------------------- */

void ss_peer_head_message(uint8_t out[SS_PEER_HEAD_MSG_BYTES],
                          const uint8_t repo_id[SS_REPO_ID_BYTES], uint64_t seq,
                          const uint8_t chain[SS_CHAIN_BYTES])
{
    uint8_t *q = out;
    memcpy(q, SS_PEER_HEAD_LABEL, strlen(SS_PEER_HEAD_LABEL));
    q += strlen(SS_PEER_HEAD_LABEL);
    memcpy(q, repo_id, SS_REPO_ID_BYTES);
    q = ss_le_put64(q + SS_REPO_ID_BYTES, seq);
    memcpy(q, chain, SS_CHAIN_BYTES);
}

ss_rc ss_peer_head_check(const ss_peer_head *h, const ss_keys *keys, const ss_devices *table,
                         ss_err *err)
{
    uint8_t msg[SS_PEER_HEAD_MSG_BYTES];
    const ss_device *d = ss_devices_find(table, h->device);
    char hex[17];
    ss_device_id_short(h->device, hex);
    if (!d || d->revoked)
        return ss_fail(err, SS_ERR_AUTH, "a head from device %s, %s", hex,
                       d ? "which was revoked" : "which is not enrolled here");
    ss_peer_head_message(msg, ss_keys_repo_id(keys), h->seq, h->chain);
    if (crypto_sign_verify_detached(h->sig, msg, sizeof msg, d->pk))
        return ss_fail(err, SS_ERR_AUTH, "a head device %s (%s) did not sign", d->name, hex);
    return SS_OK;
}

ss_rc ss_peer_announce(ss_peer *p, const ss_peer_head *h, ss_err *err)
{
    uint8_t m[SS_PEER_HEAD_BYTES], reply[16];
    size_t n = 0;
    int end = 0;
    ss_rc rc;
    m[0] = SS_PEER_REQ_HEAD;
    ss_le_put64(m + 1, h->seq);
    memcpy(m + 9, h->chain, SS_CHAIN_BYTES);
    memcpy(m + 9 + SS_CHAIN_BYTES, h->device, SS_TXN_DEVICE_ID_BYTES);
    memcpy(m + 9 + SS_CHAIN_BYTES + SS_TXN_DEVICE_ID_BYTES, h->sig, SS_TXN_SIG_BYTES);
    rc = ss_peer_send(p, m, sizeof m, err);
    if (rc) return rc;
    rc = ss_peer_recv(p, reply, sizeof reply, &n, &end, err);
    if (rc) return rc;
    if (end || n != 1)
        return ss_fail(err, SS_ERR_INTEGRITY, "peer: an answer to a head out of shape");
    if (reply[0] != SS_PEER_ANS_OK) return ss_fail(err, SS_ERR_AUTH, "peer: the head was refused");
    return SS_OK;
}
