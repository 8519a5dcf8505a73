/*
 * peer_disc: the datagrams of discovery on the local network (docs/PEERS.md
 * "Discovery"). What a stranger sees is a tag of the time window under the
 * repository's peer key, a second tag of the window and the device id, and
 * a port: it cannot tell which repository, nor link a device across
 * windows. Nothing here trusts a datagram beyond its tag: a device found
 * this way is a TCP address to try, and the handshake decides.
 */
#include "peer.h"

#include <sodium.h>
#include <string.h>

#include "le.h"

static void tag(uint8_t out[16], const ss_keys *keys, const char *label, uint64_t window,
                const uint8_t *device)
{
    crypto_generichash_state st;
    uint8_t w[8];
    ss_le_put64(w, window);
    crypto_generichash_init(&st, ss_keys_subkey(keys, SS_SUBKEY_PEER), SS_SUBKEY_BYTES, 16);
    crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
    crypto_generichash_update(&st, w, sizeof w);
    if (device) crypto_generichash_update(&st, device, SS_TXN_DEVICE_ID_BYTES);
    crypto_generichash_final(&st, out, 16);
}

void ss_peer_disc_make(uint8_t out[SS_PEER_DISC_BYTES], const ss_keys *keys,
                       const uint8_t device[SS_TXN_DEVICE_ID_BYTES], uint16_t port, uint64_t now)
{
    uint64_t window = now / SS_PEER_DISC_WINDOW_S;
    memset(out, 0, SS_PEER_DISC_BYTES);
    memcpy(out, SS_PEER_DISC_MAGIC, 4);
    out[4] = 1;
    out[5] = port ? SS_PEER_DISC_ANNOUNCE : SS_PEER_DISC_QUERY;
    ss_le_put16(out + 6, port);
    ss_le_put64(out + 8, window);
    tag(out + 16, keys, SS_PEER_DISC_LABEL, window, NULL);
    if (port) tag(out + 32, keys, SS_PEER_DISC_DEV_LABEL, window, device);
}

int ss_peer_disc_parse(const uint8_t *d, size_t n, const ss_keys *keys,
                       const uint8_t me[SS_TXN_DEVICE_ID_BYTES], uint64_t now, uint16_t *ret_port)
{
    uint64_t window, here = now / SS_PEER_DISC_WINDOW_S;
    uint8_t want[16];
    *ret_port = 0;
    if (n != SS_PEER_DISC_BYTES || memcmp(d, SS_PEER_DISC_MAGIC, 4) || d[4] != 1) return 0;
    window = ss_le_get64(d + 8);
    if (window + 1 < here || window > here + 1) return 0;
    tag(want, keys, SS_PEER_DISC_LABEL, window, NULL);
    if (sodium_memcmp(want, d + 16, 16)) return 0;
    if (d[5] == SS_PEER_DISC_QUERY && ss_le_get16(d + 6) == 0) return SS_PEER_DISC_QUERY;
    if (d[5] != SS_PEER_DISC_ANNOUNCE || !ss_le_get16(d + 6)) return 0;
    tag(want, keys, SS_PEER_DISC_DEV_LABEL, window, me);
    if (!sodium_memcmp(want, d + 32, 16)) return 0; /* this device's own */
    *ret_port = ss_le_get16(d + 6);
    return SS_PEER_DISC_ANNOUNCE;
}
