/*
 * peers: the engine's side of peer assist (docs/PEERS.md). A folder with a
 * cache keeps the objects it uploads (packs, log objects) and downloads
 * whole (log objects, checkpoints) in .s3sync/cache, which `s3sync serve`
 * serves; a folder with `peers` set asks them before the store. Both hang
 * on the store as its source (ss_store_set_source), so every reader above
 * sees one store and verifies what it gets as it always does; a pull that
 * finds peer bytes bad leaves those peers out and reads the store again
 * (eng_peers_blame).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

int eng_discovery_at(const char *settings, char *where, size_t cap)
{
    char v[300];
    if (!eng_setting(settings, "peer_discovery", v, sizeof v) || !strcmp(v, "off")) return 0;
    snprintf(where, cap, "%s", v); /* "on": ss_peer_beacon_open knows where that is */
    return 1;
}

int eng_listen_parse(const char *v, char *host, size_t hcap, char port[8])
{
    const char *colon = strrchr(v, ':');
    size_t hlen = colon ? (size_t)(colon - v) : 0, plen = colon ? strlen(colon + 1) : 0;
    char *end = NULL;
    unsigned long n;
    if (!colon || !hlen || !plen || plen > 5 || strspn(colon + 1, "0123456789") != plen) return -1;
    n = strtoul(colon + 1, &end, 10);
    if (n > 65535) return -1;
    if (hlen >= 3 && v[0] == '[' && v[hlen - 1] == ']') v++, hlen -= 2; /* [V6]:PORT */
    if (host && (hlen >= hcap)) return -1;
    if (host) {
        memcpy(host, v, hlen);
        host[hlen] = '\0';
    }
    if (port) snprintf(port, 8, "%lu", n);
    return 0;
}

static void trust_now(void *ctx, ss_peer_trust *ret)
{
    ss_folder *f = ctx;
    *ret =
        (ss_peer_trust){ss_repo_keys(f->repo), f->peer_table ? f->peer_table : f->devices, f->key};
}

static void warn(void *ctx, const char *msg)
{
    ss_folder *f = ctx;
    if (f->hooks.warn) f->hooks.warn(f->hooks.ctx, msg);
}

static ss_rc source_get(void *ctx, const char *key, uint64_t off, uint64_t len,
                        ss_store_write_fn write, void *wctx)
{
    ss_folder *f = ctx;
    return ss_peers_get(f->peers, key, off, len == SS_TO_END ? 0 : len, write, wctx);
}

static int source_begin(void *ctx, const void *owner, const char *key, uint64_t off, size_t len,
                        void *dst, void *tag)
{
    ss_folder *f = ctx;
    return ss_peers_begin(f->peers, owner, key, off, len, dst, tag);
}

static size_t source_step(void *ctx, const void *owner, int wait_ms, void **tags, int *ok,
                          size_t cap)
{
    ss_folder *f = ctx;
    return ss_peers_step(f->peers, owner, wait_ms, tags, ok, cap);
}

/* What this device uploaded, and the log objects and checkpoints it read whole. */
static void source_note(void *ctx, const char *key, const void *buf, size_t len, int put)
{
    ss_folder *f = ctx;
    int data = !strncmp(key, SS_KEY_DATA_PREFIX, strlen(SS_KEY_DATA_PREFIX));
    if (f->cache && (put || !data)) ss_peer_cache_put(f->cache, key, buf, len);
}

/* The folder's setting key as a number; dflt when unset. */
static uint64_t setting_u64(ss_folder *f, const char *key, uint64_t dflt)
{
    char v[32];
    return eng_setting(f->settings, key, v, sizeof v) ? strtoull(v, NULL, 10) : dflt;
}

ss_rc eng_peers_cache_open(ss_folder *f, ss_peer_cache **ret_cache, ss_err *err)
{
    uint64_t max = setting_u64(f, "cache_size", SS_PEER_CACHE_DEFAULT);
    char *dir = NULL;
    ss_rc rc;
    *ret_cache = NULL;
    if (!max) return SS_OK;
    if (asprintf(&dir, "%s/cache", f->meta) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_peer_cache_open(dir, max, ret_cache, err);
    free(dir);
    return rc;
}

ss_rc eng_peers_attach(ss_folder *f, ss_err *err)
{
    char list[1024] = "", where[300];
    int discover = eng_discovery_at(f->settings, where, sizeof where);
    ss_store_source src = {source_get, source_note, source_begin, source_step, f};
    ss_rc rc = SS_OK;
    if (eng_setting(f->settings, "peers", list, sizeof list) || discover) {
        rc = ss_peers_new(list, trust_now, warn, f, &f->peers, err);
        if (rc) return rc;
    }
    if (discover) ss_peers_discover(f->peers, where);
    rc = eng_peers_cache_open(f, &f->cache, err);
    if (rc) return rc;
    if (!f->peers) src.get = NULL, src.begin = NULL, src.step = NULL;
    if (f->peers || f->cache) ss_store_set_source(f->store, &src);
    return SS_OK;
}

void ss_folder_add_peer(ss_folder *f, const char *entry)
{
    if (f->peers) ss_peers_add(f->peers, entry);
}

void eng_peers_detach(ss_folder *f)
{
    for (size_t i = 0; i < ss_peers_count(f->peers); i++) { /* status -v: .s3sync/peers */
        ss_peers_info in;
        ss_peers_info_at(f->peers, i, &in);
        if (in.known && in.bytes) eng_ledger_add(f->meta, in.device, in.bytes, 0, 0);
    }
    if (f->store) ss_store_set_source(f->store, NULL);
    ss_peers_free(f->peers);
    ss_peer_cache_free(f->cache);
    f->peers = NULL;
    f->cache = NULL;
}

uint64_t eng_peers_mark(const ss_folder *f)
{
    return ss_peers_delivered(f->peers);
}

void eng_peers_suspect(ss_folder *f, const char *key, uint64_t off)
{
    ss_peers_suspect(f->peers, key, off);
}

int eng_peers_blame(ss_folder *f, uint64_t mark, const char *what)
{
    return ss_peers_blame(f->peers, mark, what);
}

void eng_peers_announce(ss_folder *f, uint64_t before)
{
    uint8_t msg[SS_PEER_HEAD_MSG_BYTES];
    ss_peer_head h;
    if (!f->peers) return;
    memset(&h, 0, sizeof h);
    if (ss_state_watermark(f->state, &h.seq, h.chain, NULL) || h.seq <= before) return;
    memcpy(h.device, f->device_id, sizeof h.device);
    ss_peer_head_message(msg, ss_keys_repo_id(ss_repo_keys(f->repo)), h.seq, h.chain);
    ss_device_key_sign(f->key, msg, sizeof msg, h.sig);
    ss_peers_announce(f->peers, &h);
}

/* meta "peer_head": "SEQ UNIX-SECONDS-FIRST-HEARD DEVICE" (PEERS.md "Heads"). */
#define META_PEER_HEAD "peer_head"

void eng_peer_head_note(ss_folder *f, uint64_t seq, const char *device)
{
    char *old = NULL, line[400];
    uint64_t wm = 0, known = 0;
    uint8_t chain[SS_CHAIN_BYTES];
    if (ss_state_watermark(f->state, &wm, chain, NULL)) return;
    ss_state_meta_get(f->state, META_PEER_HEAD, &old, NULL);
    if (old) known = strtoull(old, NULL, 10);
    free(old);
    if (seq > wm && seq > known) {
        snprintf(line, sizeof line, "%" PRIu64 " %lld %.255s", seq, (long long)time(NULL), device);
        ss_state_meta_set(f->state, META_PEER_HEAD, line, NULL);
    }
}

uint64_t eng_peer_head_withheld(ss_folder *f, uint64_t shown, char *msg, size_t cap)
{
    char *line = NULL, *end = NULL;
    uint64_t seq = 0;
    long long heard = 0, age;
    ss_state_meta_get(f->state, META_PEER_HEAD, &line, NULL);
    if (!line) return 0;
    seq = strtoull(line, &end, 10);
    if (end && *end == ' ') heard = strtoll(end + 1, &end, 10);
    age = (long long)time(NULL) - heard;
    const char *g = getenv(SS_PEER_HEAD_GRACE_ENV);
    long long grace = g && *g ? strtoll(g, NULL, 10) : SS_PEER_HEAD_GRACE_S;
    if (seq <= shown) { /* shown now (or "0": none kept): nothing withheld */
        if (seq) ss_state_meta_set(f->state, META_PEER_HEAD, "0", NULL);
        seq = 0;
    } else if (age < grace) {
        seq = 0;
    } else {
        snprintf(msg, cap,
                 "device %.255s announced log/%020" PRIu64 ", signed, %lld s ago, and the store "
                 "does not show it: is the store withholding objects?",
                 end && *end == ' ' ? end + 1 : "?", seq, age);
    }
    free(line);
    return seq;
}
