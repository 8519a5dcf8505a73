/* engine: helpers shared by push and pull (see engine.h). */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "fault.h"
#include "format.h"
#include "fsio.h"

#define RACY_SECONDS 2 /* mtimes this recent may still change within their granularity */
/* The in-flight record: "<seq> <chain in hex>\n" and its NUL. */
#define INFLIGHT_FILE "inflight"
#define INFLIGHT_LINE (SS_SEQ_DIGITS + 1 + 2 * SS_CHAIN_BYTES + 2)

typedef struct identify {
    ss_folder *f;
    crypto_generichash_state h;
    eng_chunk_fn fn;
    void *ctx;
} identify;

static ss_rc on_chunk(void *arg, const uint8_t *data, size_t len, uint64_t offset, ss_err *err)
{
    identify *id = arg;
    uint8_t cid[SS_CHUNK_ID_BYTES];
    (void)offset;
    ss_chunk_id(ss_keys_subkey(ss_repo_keys(id->f->repo), SS_SUBKEY_CHUNK_ID), data, len, cid);
    crypto_generichash_update(&id->h, cid, sizeof cid);
    return id->fn ? id->fn(id->ctx, data, len, cid, err) : SS_OK;
}

static ss_rc read_all(int fd, uint8_t *buf, size_t len, ss_err *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ss_fail(err, SS_ERR_IO, "read: %s", strerror(errno));
        if (n == 0) return ss_fail(err, SS_ERR_IO, "file shrank while being read");
        done += (size_t)n;
    }
    return SS_OK;
}

/* A chunked file's content id: keyed BLAKE2b of the label and its chunk ids (FORMAT.md). */
static void content_init(crypto_generichash_state *h, const uint8_t key[SS_SUBKEY_BYTES])
{
    crypto_generichash_init(h, key, SS_SUBKEY_BYTES, SS_TXN_CONTENT_ID_BYTES);
    crypto_generichash_update(h, (const uint8_t *)SS_TXN_CONTENT_LABEL,
                              strlen(SS_TXN_CONTENT_LABEL));
}

ss_rc eng_identify(ss_folder *f, int fd, uint64_t size, eng_chunk_fn fn, void *ctx,
                   uint8_t ret_content_id[SS_TXN_CONTENT_ID_BYTES], uint8_t **ret_inline,
                   ss_err *err)
{
    const uint8_t *key = ss_keys_subkey(ss_repo_keys(f->repo), SS_SUBKEY_CHUNK_ID);
    identify id = {.f = f, .fn = fn, .ctx = ctx};
    uint8_t *buf = NULL; /* owned: an inline-sized file's bytes */
    ss_rc rc;
    if (ret_inline) *ret_inline = NULL;
    if (size > f->limits.inline_limit) {
        content_init(&id.h, key);
        rc = ss_chunker_fd(f->chunker, fd, on_chunk, &id, err);
        if (rc) return rc;
        crypto_generichash_final(&id.h, ret_content_id, SS_TXN_CONTENT_ID_BYTES);
        return SS_OK;
    }
    buf = malloc(size ? size : 1);
    if (!buf) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = read_all(fd, buf, (size_t)size, err);
    if (rc) {
        free(buf);
        return rc;
    }
    crypto_generichash(ret_content_id, SS_TXN_CONTENT_ID_BYTES, buf, (size_t)size, key,
                       SS_SUBKEY_BYTES);
    if (ret_inline) {
        *ret_inline = buf;
        buf = NULL;
    }
    free(buf);
    return SS_OK;
}

ss_rc eng_check_content(ss_folder *f, ss_txn_reader *r, const ss_txn_entry *e, ss_err *err)
{
    const uint8_t *key = ss_keys_subkey(ss_repo_keys(f->repo), SS_SUBKEY_CHUNK_ID);
    int file = e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE;
    int by_chunks = file && e->storage == SS_TXN_CHUNKS; /* above the inline limit (decoder) */
    uint8_t want[SS_TXN_CONTENT_ID_BYTES], got[SS_TXN_CONTENT_ID_BYTES];
    crypto_generichash_state h;
    ss_chunk_ref ref;
    char *path = NULL; /* e is the reader's: what is needed after reading on is copied */
    ss_rc rc = SS_OK;
    if (file) memcpy(want, e->content_id, sizeof want);
    if (by_chunks) {
        path = strdup(e->path);
        if (!path) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        content_init(&h, key);
    }
    if (file && e->storage == SS_TXN_INLINE)
        crypto_generichash(got, sizeof got, e->inline_data, (size_t)e->size, key, SS_SUBKEY_BYTES);
    while (ss_txn_chunks_left(r)) {
        rc = ss_txn_next_chunk(r, &ref, err);
        if (rc) goto done;
        if (by_chunks) crypto_generichash_update(&h, ref.id, sizeof ref.id);
    }
    if (by_chunks) crypto_generichash_final(&h, got, sizeof got);
    if (file && sodium_memcmp(got, want, sizeof got))
        rc = ss_fail(err, SS_ERR_INTEGRITY, "\"%s\": its content id does not match its %s",
                     by_chunks ? path : e->path, by_chunks ? "chunks" : "bytes");
done:
    free(path);
    return rc;
}

int eng_row_holds(const ss_state_row *row, const ss_txn_entry *e)
{
    if (row->kind != (int)e->kind || row->mode != e->mode) return 0;
    if (e->kind == SS_TXN_FILE)
        return !memcmp(row->content_id, e->content_id, SS_TXN_CONTENT_ID_BYTES);
    if (e->kind == SS_TXN_SYMLINK)
        return row->body_len == e->size && !memcmp(row->body, e->target, e->size);
    return 1;
}

ss_state_row eng_row_of(const ss_txn_entry *e, const void *body, size_t body_len)
{
    ss_state_row row = {.path = e->path,
                        .kind = (int)e->kind,
                        .mode = e->mode,
                        .size = e->size,
                        .mtime_s = e->mtime_s,
                        .mtime_ns = e->mtime_ns,
                        .ctime_s = -1,
                        .local_mode = e->mode,
                        .body = body,
                        .body_len = body_len,
                        .storage = (int)e->storage};
    memcpy(row.content_id, e->content_id, sizeof row.content_id);
    return row;
}

uint32_t eng_mode_applied(const ss_folder *f, uint32_t mode)
{
    return mode & 07777 & ~f->mode_mask;
}

int eng_kind_of(mode_t mode)
{
    return S_ISREG(mode)   ? SS_TXN_FILE
           : S_ISDIR(mode) ? SS_TXN_DIR
           : S_ISLNK(mode) ? SS_TXN_SYMLINK
                           : 0;
}

/* st's ctime; its mtime when a test stands in a file system whose ctime cannot tell (fault.h). */
static struct timespec seen_ctime(const struct stat *st)
{
    return ss_fault_on("ctime-is-mtime") ? st->st_mtim : st->st_ctim;
}

int eng_stat_matches(const ss_state_row *row, const struct stat *st)
{
    struct timespec ctime = seen_ctime(st);
    if (row->ctime_s < 0) return 0; /* recorded while racy: re-read */
    if (row->kind != eng_kind_of(st->st_mode)) return 0;
    if (row->kind == SS_TXN_DIR) return row->local_mode == (uint32_t)(st->st_mode & 07777);
    return row->ino == (uint64_t)st->st_ino && row->size == (uint64_t)st->st_size &&
           row->mtime_s == st->st_mtim.tv_sec && row->mtime_ns == (uint32_t)st->st_mtim.tv_nsec &&
           row->ctime_s == ctime.tv_sec && row->ctime_ns == (uint32_t)ctime.tv_nsec &&
           row->local_mode == (uint32_t)(st->st_mode & 07777);
}

ss_rc eng_local_matches(ss_folder *f, const ss_state_row *row, const char *path,
                        const struct stat *st, int *ret_match, ss_err *err)
{
    uint8_t cid[SS_TXN_CONTENT_ID_BYTES];
    int fd;
    ss_rc rc;
    *ret_match = eng_stat_matches(row, st);
    if (*ret_match || row->kind != eng_kind_of(st->st_mode) ||
        row->local_mode != (uint32_t)(st->st_mode & 07777))
        return SS_OK;
    if (row->kind == SS_TXN_DIR) {
        *ret_match = 1;
    } else if (row->kind == SS_TXN_SYMLINK) {
        char target[SS_TXN_TARGET_MAX + 1];
        size_t n = 0;
        *ret_match = !ss_fs_readlink(f->root_fd, path, target, sizeof target, &n, NULL) &&
                     n == row->body_len && !memcmp(target, row->body, n);
    } else if ((uint64_t)st->st_size == row->size) {
        ss_err why = {{0}};
        rc = ss_fs_open(f->root_fd, path, O_RDONLY | O_NONBLOCK, &fd, &why);
        if (rc && errno == EACCES) return SS_OK; /* a mode 000 file: unknown, so changed */
        if (rc) {
            if (err) *err = why;
            return rc;
        }
        rc = eng_identify(f, fd, row->size, NULL, NULL, cid, NULL, err);
        close(fd);
        if (rc) return rc;
        *ret_match = !memcmp(cid, row->content_id, sizeof cid);
    }
    return SS_OK;
}

void eng_row_set_stat(ss_state_row *row, const struct stat *st)
{
    struct timespec ctime = seen_ctime(st);
    row->ino = (uint64_t)st->st_ino;
    row->ctime_s = ctime.tv_sec;
    row->ctime_ns = (uint32_t)ctime.tv_nsec;
    row->local_mode = (uint32_t)(st->st_mode & 07777);
    /* As git's racy-index rule: a write in the same tick could leave size and mtime unchanged. */
    if (!S_ISDIR(st->st_mode) && time(NULL) - st->st_mtim.tv_sec < RACY_SECONDS) row->ctime_s = -1;
}

/* --- conflicts -------------------------------------------------------------------- */

ss_rc eng_conflict_name(ss_folder *f, const char *path, char **ret_name, ss_err *err)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    *ret_name = NULL;
    if (!dot || dot == base) dot = base + strlen(base); /* ".bashrc" has no extension */
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    for (int n = 0; n < 1000; n++) {
        char *name = NULL, suffix[16] = "";
        struct stat st;
        if (n) snprintf(suffix, sizeof suffix, "-%d", n);
        if (asprintf(&name, "%.*s.sync-conflict-%s-%s%s%s", (int)(dot - path), path, stamp,
                     f->device_name, suffix, dot) < 0)
            return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        if (ss_fs_lstat(f->root_fd, name, &st, NULL) == SS_ERR_NOT_FOUND) {
            *ret_name = name;
            return SS_OK;
        }
        free(name);
    }
    return ss_fail(err, SS_ERR_IO, "no free conflict name for %s", path);
}

void eng_progress(ss_folder *f)
{
    if (f->hooks.progress) f->hooks.progress(f->hooks.ctx, &f->prog);
}

ss_rc eng_stats_conflict(ss_stats *s, const char *path)
{
    /* ss_stats keeps no capacity: the slots known to be there, the NULL's included. */
    size_t cap = s->conflicts ? s->n_conflicts + 1 : 0;
    char *copy = strdup(path);
    if (!copy) return SS_ERR_NOMEM;
    if (SS_ARRAY_GROW(s->conflicts, s->n_conflicts + 2, cap)) {
        free(copy);
        return SS_ERR_NOMEM;
    }
    s->conflicts[s->n_conflicts++] = copy;
    s->conflicts[s->n_conflicts] = NULL;
    return SS_OK;
}

ss_rc eng_tmp_rewind(int fd, ss_err *err)
{
    if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET))
        return ss_fail(err, SS_ERR_IO, "stage in .s3sync/tmp: %s", strerror(errno));
    return SS_OK;
}

ss_rc eng_meta_write(ss_folder *f, const char *name, const void *buf, size_t len, ss_err *err)
{
    char *tmp = NULL, *path = NULL;
    int fd = -1;
    ss_rc rc = SS_OK;
    if (asprintf(&tmp, "%s/%s.tmp", f->meta, name) < 0) tmp = NULL;
    if (!tmp || asprintf(&path, "%s/%s", f->meta, name) < 0) {
        free(tmp);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) || rename(tmp, path))
        rc = ss_fail(err, SS_ERR_IO, "write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (rc) unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

static char *inflight_path(ss_folder *f)
{
    char *p = NULL;
    return asprintf(&p, "%s/" INFLIGHT_FILE, f->meta) < 0 ? NULL : p;
}

ss_rc eng_inflight_set(ss_folder *f, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES], ss_err *err)
{
    char hex[2 * SS_CHAIN_BYTES + 1], line[INFLIGHT_LINE];
    int n;
    sodium_bin2hex(hex, sizeof hex, chain, SS_CHAIN_BYTES);
    n = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)seq, hex);
    return eng_meta_write(f, INFLIGHT_FILE, line, (size_t)n, err);
}

int eng_inflight_is(ss_folder *f, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES])
{
    char hex[2 * SS_CHAIN_BYTES + 1], want[INFLIGHT_LINE], line[INFLIGHT_LINE] = "";
    char *path = inflight_path(f);
    FILE *fp = path ? fopen(path, "re") : NULL;
    free(path);
    if (!fp) return 0;
    if (!fgets(line, sizeof line, fp)) line[0] = '\0';
    fclose(fp);
    sodium_bin2hex(hex, sizeof hex, chain, SS_CHAIN_BYTES);
    snprintf(want, sizeof want, "%llu %s\n", (unsigned long long)seq, hex);
    return !strcmp(line, want);
}

void eng_inflight_clear(ss_folder *f)
{
    char *path = inflight_path(f);
    if (path) unlink(path);
    free(path);
}

ss_rc eng_dirmodes_new(ss_folder *f, ss_dirmodes **ret_dm, ss_err *err)
{
    char *journal = NULL;
    ss_rc rc;
    *ret_dm = NULL;
    if (asprintf(&journal, "%s/" ENG_DIRMODES_FILE, f->meta) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_dirmodes_new(f->root_fd, journal, ret_dm, err);
    free(journal);
    return rc;
}

/* ss_scan_open_fn: only a directory with the local mode last synced is this device's to open. */
static int open_synced(void *ctx, const char *path, const struct stat *st)
{
    eng_scan *s = ctx;
    ss_state_row row;
    int found = 0;
    if (ss_state_lookup(s->f->state, path, &row, &found, NULL)) return -1;
    if (!found || row.kind != SS_TXN_DIR || row.local_mode != (uint32_t)(st->st_mode & 07777))
        return -1;
    return ss_dirmodes_open(s->dm, path, S_IRUSR | S_IXUSR, NULL) ? -1 : 0;
}

ss_rc eng_scan_new(ss_folder *f, ss_warn_fn warn, void *warn_ctx, eng_scan *s, ss_err *err)
{
    ss_rc rc;
    *s = (eng_scan){.f = f};
    rc = eng_dirmodes_new(f, &s->dm, err);
    if (rc) return rc;
    rc = ss_scan_new(f->root_fd, f->ign, warn, warn_ctx, &s->sc, err);
    if (rc) {
        ss_dirmodes_free(s->dm);
        s->dm = NULL;
        return rc;
    }
    ss_scan_set_opener(s->sc, open_synced, s);
    return SS_OK;
}

ss_rc eng_scan_next(eng_scan *s, const ss_scan_entry **ret_entry, ss_err *err)
{
    ss_rc rc = ss_scan_next(s->sc, ret_entry, err);
    if (rc || !*ret_entry) return rc;
    /* The caller is done with what came before: directories the scan left close again. */
    return ss_dirmodes_leave(s->dm, (*ret_entry)->path, err);
}

ss_rc eng_scan_end(eng_scan *s, ss_rc rc, ss_err *err)
{
    ss_rc put = s->dm ? ss_dirmodes_finish(s->dm, rc ? NULL : err) : SS_OK;
    ss_dirmodes_free(s->dm);
    ss_scan_free(s->sc);
    *s = (eng_scan){0};
    return rc ? rc : put;
}

ss_rc eng_tmpfile(ss_folder *f, int *ret_fd, ss_err *err)
{
    char *dir = NULL;
    *ret_fd = -1;
    if (asprintf(&dir, "%s/tmp", f->meta) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (mkdir(dir, 0700) && errno != EEXIST) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "create %s: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    /* O_TMPFILE: nothing to clean up after a crash. */
    *ret_fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (*ret_fd < 0) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "temp file in %s: %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    free(dir);
    return SS_OK;
}

void eng_stats_from_store(ss_folder *f, ss_stats *stats, int which)
{
    const ss_store_counters *c = ss_store_counts(f->store);
    stats->requests = c->requests;
    memcpy(stats->requests_by_class, c->by_class, sizeof stats->requests_by_class);
    if (which != ENG_STATS_NO_UP) stats->bytes_up = c->bytes_up;
    stats->bytes_down = c->bytes_down;
    stats->bytes_peer = ss_peers_bytes(f->peers);
}

/* --- settings ------------------------------------------------------------------- */

int eng_setting(const char *text, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ')
            l++;
        if (strncmp(l, key, kl)) continue;
        const char *v = l + kl;
        while (*v == ' ')
            v++;
        if (*v++ != '=') continue;
        while (*v == ' ')
            v++;
        size_t n = strcspn(v, "\n");
        while (n && v[n - 1] == ' ')
            n--;
        if (n >= cap) return 0;
        memcpy(out, v, n);
        out[n] = '\0';
        return 1;
    }
    return 0;
}

int ss_folder_setting(const ss_folder *f, const char *key, char *buf, size_t cap)
{
    return f->settings && eng_setting(f->settings, key, buf, cap);
}
