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

_Static_assert(SS_SERVE_DISC_BYTES == SS_PEER_DISC_BYTES, "a discovery datagram");

struct ss_server {
    char *dir;
    char *meta; /* its .s3sync: what each session served goes in its peers file */
    ss_store_opts store_opts;
    ss_hooks hooks;
    ss_keys *keys;        /* epoch 0: the peer key */
    ss_devices *devices;  /* the table at the last pull */
    ss_device_key *key;   /* this device's */
    ss_peer_cache *cache; /* its own handle on .s3sync/cache */
    char listen[300];     /* peer_listen */
    char discover[300];   /* peer_discovery as a broadcast HOST:PORT; "" off */
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
        snprintf(s->listen, sizeof s->listen, "0.0.0.0:%d", SS_PEER_PORT);
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
    free(s->dir);
    free(s);
}

const char *ss_serve_listen(const ss_server *s)
{
    return s->listen;
}

const char *ss_serve_discovery_at(const ss_server *s)
{
    return s->discover;
}

int ss_serve_discovery(const ss_server *s, const uint8_t *d, size_t n, uint16_t port,
                       uint8_t out[SS_SERVE_DISC_BYTES])
{
    uint16_t other = 0;
    uint64_t now = (uint64_t)time(NULL);
    if (d && ss_peer_disc_parse(d, n, s->keys, ss_device_key_id(s->key), now, &other) !=
                 SS_PEER_DISC_QUERY)
        return 0;
    ss_peer_disc_make(out, s->keys, ss_device_key_id(s->key), port, now);
    return 1;
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
