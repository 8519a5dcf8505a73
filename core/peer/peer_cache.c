/*
 * peer_cache: the objects a device keeps to serve its peers,
 * .s3sync/cache/<log|data|checkpoints>/<rest of the key> (docs/PEERS.md
 * "Cache"): the packs and log objects it uploaded, and the log objects and
 * checkpoints it downloaded whole, at most max_bytes of them, the least
 * recently used going first.
 *
 * Only keys of the three servable shapes are ever turned into paths, so a
 * key cannot name anything outside the cache; files are written as a temp
 * file and renamed, opened with O_NOFOLLOW. What the cache holds is not
 * trusted by anyone: a device verifies what a peer sends as it verifies the
 * bucket's bytes.
 */
#include "peer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const KINDS[] = {"log", "data", "checkpoints"};
#define N_KINDS 3

struct ss_peer_cache {
    char *dir;
    uint64_t max, bytes;
    int ready; /* its folders made and bytes counted: at the first put, not at open */
};

int ss_peer_key_servable(const char *key)
{
    static const struct {
        const char *prefix, *shape; /* d: a digit, x: lowercase hex, -: itself */
    } kinds[] = {
        {SS_KEY_LOG_PREFIX, "dddddddddddddddddddd"},
        {SS_KEY_CHECKPOINTS_PREFIX, "dddddddddddddddddddd"},
        {SS_KEY_DATA_PREFIX, "dddddddddddddddddddd-xxxxxxxxxxxxxxxx"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t plen = strlen(kinds[i].prefix), k = 0;
        const char *s = kinds[i].shape, *c = key + plen;
        if (strncmp(key, kinds[i].prefix, plen) || strlen(c) != strlen(s)) continue;
        for (; c[k]; k++) {
            int digit = c[k] >= '0' && c[k] <= '9', hex = digit || (c[k] >= 'a' && c[k] <= 'f');
            if (s[k] == 'd' ? !digit : s[k] == 'x' ? !hex : c[k] != s[k]) break;
        }
        if (!c[k]) return 1;
    }
    return 0;
}

/* dir/key: a servable key is "kind/name" with no other slash. */
static int path_of(const ss_peer_cache *c, const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", c->dir, key);
    return ss_peer_key_servable(key) && n > 0 && (size_t)n < cap;
}

typedef struct entry {
    char name[SS_KEY_NAME_MAX];
    struct timespec used;
    uint64_t size;
} entry;

/* Every object held, into *ret (malloc'ed), and their total. */
static size_t scan(const ss_peer_cache *c, entry **ret, uint64_t *ret_bytes)
{
    entry *v = NULL;
    size_t n = 0, cap = 0;
    *ret_bytes = 0;
    for (int k = 0; k < N_KINDS; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", c->dir, KINDS[k]);
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            struct stat st;
            entry e;
            if (strlen(KINDS[k]) + 1 + strlen(de->d_name) >= sizeof e.name) continue;
            memset(&e, 0, sizeof e);
            memcpy(e.name, KINDS[k], strlen(KINDS[k]));
            e.name[strlen(KINDS[k])] = '/';
            memcpy(e.name + strlen(KINDS[k]) + 1, de->d_name, strlen(de->d_name));
            if (!ss_peer_key_servable(e.name) ||
                fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
                continue;
            if (n == cap) {
                entry *nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
                if (!nv) break;
                v = nv;
            }
            e.used = st.st_mtim;
            e.size = (uint64_t)st.st_size;
            *ret_bytes += e.size;
            v[n++] = e;
        }
        if (d) closedir(d);
    }
    *ret = v;
    return n;
}

static int older(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    return (x->used.tv_nsec > y->used.tv_nsec) - (x->used.tv_nsec < y->used.tv_nsec);
}

/* Least recently used out first until want more bytes fit. */
static void make_room(ss_peer_cache *c, uint64_t want)
{
    entry *v = NULL;
    size_t n = scan(c, &v, &c->bytes);
    qsort(v, n, sizeof *v, older);
    for (size_t i = 0; i < n && c->bytes + want > c->max; i++) {
        char path[4096];
        if (path_of(c, v[i].name, path, sizeof path) && !unlink(path)) c->bytes -= v[i].size;
    }
    free(v);
}

/*
 * Every command opens the cache, few put anything: its folders are made and
 * its bytes counted when the first object comes. 0 when it is ready.
 */
static int get_ready(ss_peer_cache *c)
{
    entry *v = NULL;
    if (c->ready) return 0;
    for (int k = -1; k < N_KINDS; k++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s%s%s", c->dir, k < 0 ? "" : "/", k < 0 ? "" : KINDS[k]);
        if (mkdir(sub, 0700) && errno != EEXIST) return -1;
    }
    scan(c, &v, &c->bytes);
    free(v);
    c->ready = 1;
    return 0;
}

ss_rc ss_peer_cache_open(const char *dir, uint64_t max_bytes, ss_peer_cache **ret_cache,
                         ss_err *err)
{
    ss_peer_cache *c = calloc(1, sizeof *c);
    *ret_cache = NULL;
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    c->max = max_bytes;
    *ret_cache = c;
    return SS_OK;
}

void ss_peer_cache_free(ss_peer_cache *c)
{
    if (!c) return;
    free(c->dir);
    free(c);
}

void ss_peer_cache_put(ss_peer_cache *c, const char *key, const void *buf, size_t len)
{
    char path[4096], tmp[4096 + 16];
    struct stat st;
    int fd;
    if (!c || len > c->max || !path_of(c, key, path, sizeof path) || get_ready(c)) return;
    if (!lstat(path, &st)) return; /* objects never change: the one held is the one */
    if (c->bytes + len > c->max) make_room(c, len);
    snprintf(tmp, sizeof tmp, "%s/tmp.XXXXXX", c->dir);
    fd = mkstemp(tmp);
    if (fd < 0) return;
    if (write(fd, buf, len) != (ssize_t)len || close(fd) || rename(tmp, path)) {
        unlink(tmp);
        return;
    }
    c->bytes += len;
}

ss_rc ss_peer_cache_open_key(void *ctx, const char *key, int *ret_fd, uint64_t *ret_size)
{
    ss_peer_cache *c = ctx;
    char path[4096];
    struct stat st;
    int fd;
    *ret_fd = -1;
    *ret_size = 0;
    if (!path_of(c, key, path, sizeof path)) return SS_ERR_NOT_FOUND;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return SS_ERR_NOT_FOUND;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return SS_ERR_NOT_FOUND;
    }
    futimens(fd, NULL); /* recently used: the last to go */
    *ret_fd = fd;
    *ret_size = (uint64_t)st.st_size;
    return SS_OK;
}
