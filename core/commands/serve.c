/*
 * serve: what `s3sync serve` needs of the engine (docs/PEERS.md "Serving"):
 * the trust a session is checked against and the cache it answers from,
 * copied out of the folder so the folder is not held (and its lock not
 * taken) between pulls; a pull that brings the device table and the cache
 * up to date; one session on an accepted socket. The socket, the loop and
 * the signals are cli/serve.c's.
 */
#include "s3sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

struct ss_server {
    char *dir;
    char *meta; /* its .s3sync: what each session served goes in its peers file */
    ss_store_opts store_opts;
    ss_hooks hooks;
    ss_keys *keys;          /* epoch 0: the peer key */
    ss_devices *devices;    /* the table at the last pull */
    ss_device_key *key;     /* this device's */
    ss_peer_cache *cache;   /* its own handle on .s3sync/cache */
    char listen[300];       /* peer_listen */
    char discover[300];     /* peer_discovery: on, HOST:PORT, [GROUP]:PORT; "" off */
    ss_peer_beacon *beacon; /* its socket, once opened */
    uint16_t port;          /* the TCP port announced */
    struct {
        uint8_t tag[16];      /* a device's tag in its announcements (changes each window) */
        char at[300];         /* where it was first heard */
    } heard_at[SS_PEERS_MAX]; /* a device is one peer, whatever addresses it announces on */
    size_t next_heard;
    uint64_t head;        /* the newest head announced in the session being served */
    uint64_t heard;       /* the newest head announced since the last take_trust */
    char heard_from[256]; /* by this device */
};

/* The server's copies of f's trust: keys, device table, device key, cache. */
static ss_rc take_trust(ss_server *s, ss_folder *f, ss_err *err)
{
    const ss_keys *k = ss_repo_keys(f->repo);
    ss_devices *devs = NULL;
    ss_rc rc;
    if (!f->cache)
        return ss_fail(err, SS_ERR_INVALID,
                       "%s: cache_size is 0, so there is nothing to serve (s3sync config "
                       "cache_size BYTES)",
                       f->root);
    if (s->heard) eng_peer_head_note(f, s->heard, s->heard_from); /* status, verify */
    s->heard = 0;
    rc = ss_devices_copy(f->devices, &devs, err);
    if (rc) return rc;
    ss_devices_free(s->devices);
    s->devices = devs;
    if (s->keys) return SS_OK;
    rc = ss_keys_from_master(ss_keys_master(k), ss_keys_repo_id(k), &s->keys, err);
    if (rc) return rc;
    rc = ss_device_key_load(f->meta, &s->key, err);
    if (rc) return rc;
    return eng_peers_cache_open(f, &s->cache, err);
}

ss_rc ss_serve_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                    ss_server **ret_server, ss_err *err)
{
    ss_server *s = calloc(1, sizeof *s);
    ss_folder *f = NULL;
    ss_rc rc;
    *ret_server = NULL;
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (store_opts) s->store_opts = *store_opts;
    if (hooks) s->hooks = *hooks;
    rc = ss_folder_open(dir, &s->store_opts, &s->hooks, &f, err);
    if (rc) goto fail;
    if (!ss_folder_setting(f, "peer_listen", s->listen, sizeof s->listen))
        snprintf(s->listen, sizeof s->listen, "[::]:%d", SS_PEER_PORT); /* IPv4 too */
    if (!eng_discovery_at(f->settings, s->discover, sizeof s->discover)) s->discover[0] = '\0';
    rc = take_trust(s, f, err);
    if (rc) goto fail;
    s->meta = strdup(f->meta);
    if (!s->meta) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    ss_folder_free(f);
    *ret_server = s;
    return SS_OK;
fail:
    ss_folder_free(f);
    ss_serve_free(s);
    return rc;
}

void ss_serve_free(ss_server *s)
{
    if (!s) return;
    ss_keys_free(s->keys);
    ss_devices_free(s->devices);
    ss_device_key_free(s->key);
    ss_peer_cache_free(s->cache);
    free(s->meta);
    ss_peer_beacon_free(s->beacon);
    free(s->dir);
    free(s);
}

const char *ss_serve_listen(const ss_server *s)
{
    return s->listen;
}

int ss_serve_disc_open(ss_server *s, uint16_t port, ss_err *err)
{
    if (!s->discover[0]) return -1;
    ss_peer_beacon_free(s->beacon);
    s->beacon = NULL;
    s->port = port;
    if (ss_peer_beacon_open(s->discover, 1, &s->beacon, err)) return -1;
    return ss_peer_beacon_fd(s->beacon);
}

void ss_serve_disc_announce(ss_server *s)
{
    uint8_t d[SS_PEER_DISC_BYTES];
    if (!s->beacon) return;
    ss_peer_disc_make(d, s->keys, ss_device_key_id(s->key), s->port, (uint64_t)time(NULL));
    ss_peer_beacon_send(s->beacon, d, sizeof d);
}

int ss_serve_disc_readable(ss_server *s, char *peer, size_t cap)
{
    uint8_t d[SS_PEER_DISC_BYTES + 1];
    char host[300];
    uint16_t port = 0;
    uint64_t now = (uint64_t)time(NULL);
    ssize_t n = s->beacon ? ss_peer_beacon_recv(s->beacon, d, sizeof d, host, sizeof host) : -1;
    if (n <= 0) return 0;
    switch (ss_peer_disc_parse(d, (size_t)n, s->keys, ss_device_key_id(s->key), now, &port)) {
    case SS_PEER_DISC_QUERY:
        ss_peer_disc_make(d, s->keys, ss_device_key_id(s->key), s->port, now);
        ss_peer_beacon_reply(s->beacon, d, SS_PEER_DISC_BYTES);
        return 0;
    case SS_PEER_DISC_ANNOUNCE:
        snprintf(peer, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
        for (size_t i = 0; i < SS_PEERS_MAX; i++)
            if (!memcmp(s->heard_at[i].tag, d + 32, 16)) return !strcmp(s->heard_at[i].at, peer);
        memcpy(s->heard_at[s->next_heard].tag, d + 32, 16);
        snprintf(s->heard_at[s->next_heard].at, sizeof s->heard_at[0].at, "%s", peer);
        s->next_heard = (s->next_heard + 1) % SS_PEERS_MAX;
        return 1;
    default: return 0;
    }
}

ss_rc ss_serve_take(ss_server *s, ss_folder *f, ss_err *err)
{
    return take_trust(s, f, err);
}

ss_rc ss_serve_pull(ss_server *s, ss_stats *stats, ss_err *err)
{
    ss_folder *f = NULL;
    ss_rc rc = ss_folder_open(s->dir, &s->store_opts, &s->hooks, &f, err);
    if (rc) return rc;
    rc = ss_pull(f, stats, err);
    if (rc) goto done;
    rc = ss_serve_take(s, f, err); /* a revocation pulled holds from the next session on */
done:
    ss_folder_free(f);
    return rc;
}

static ss_rc open_cached(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size)
{
    ss_server *s = ctx;
    return ss_peer_cache_open_key(s->cache, key, ret_fd, ret_size);
}

/* A head the client announced: taken when its device signed it (PEERS.md "Heads"). */
static ss_rc take_head(void *ctx, const ss_peer_head *h)
{
    ss_server *s = ctx;
    const ss_device *d = ss_devices_find(s->devices, h->device);
    ss_rc rc = ss_peer_head_check(h, s->keys, s->devices, NULL);
    if (rc) return rc;
    if (h->seq > s->head) s->head = h->seq;
    if (h->seq > s->heard) {
        s->heard = h->seq;
        snprintf(s->heard_from, sizeof s->heard_from, "%s", d ? d->name : "?");
    }
    return SS_OK;
}

ss_rc ss_serve_session(ss_server *s, int fd, ss_served *ret, ss_err *err)
{
    ss_peer_trust t = {s->keys, s->devices, s->key};
    ss_peer_handler h = {open_cached, take_head, s};
    const ss_device *d;
    ss_peer *p = NULL;
    size_t which = 0;
    uint64_t received = 0;
    ss_rc rc = ss_peer_accept(fd, &t, 1, &p, &which, err);
    memset(ret, 0, sizeof *ret);
    if (rc) return rc;
    d = ss_devices_find(s->devices, ss_peer_device(p));
    snprintf(ret->device, sizeof ret->device, "%s", d ? d->name : "?");
    s->head = 0;
    rc = ss_peer_serve(p, &h, err);
    ret->head = s->head;
    ss_peer_bytes(p, &ret->bytes, &received);
    eng_ledger_add(s->meta, ss_peer_device(p), 0, ret->bytes, ret->head); /* status -v */
    ss_peer_free(p);
    return rc;
}
