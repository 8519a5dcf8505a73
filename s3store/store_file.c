/*
 * store_file: the embedded file:///ABS/PATH backend.
 *
 * Same semantics as S3, from POSIX: a put writes a temp file under
 * ROOT/.s3store-tmp/, fsyncs it, then rename()s it into place (overwrite) or
 * link()s it (create-only: link fails with EEXIST atomically), and fsyncs
 * the directory, so no reader ever sees a partial object. A compare-and-swap
 * (ss_store_put_if) checks the key's ETag and renames under an exclusive
 * flock() of ROOT/.s3store-tmp/lock, which every other put and delete holds
 * shared: between processes and threads alike, nothing changes the key
 * between the check and the rename. Listing walks the
 * tree in byte order of the full key: a directory sorts as "name/", which
 * makes a depth-first walk yield keys in the same order S3 lists them.
 */
#include "store_impl.h"
#include "array.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_DIR ".s3store-tmp"

typedef struct file_store {
    char *root; /* absolute, no trailing '/' */
} file_store;

static file_store *fs_of(ss_store *s)
{
    return s->impl;
}

/* Keys map to paths: refuse what would escape ROOT or collide with the temp dir. */
static ss_rc key_path(ss_store *s, const char *key, char **ret_path, ss_err *err)
{
    const char *p = key;
    *ret_path = NULL;
    if (!strncmp(key, TMP_DIR, strlen(TMP_DIR)))
        return ss_fail(err, SS_ERR_INVALID, "key '%s' is reserved by the file store", key);
    while (*p) {
        const char *e = strchrnul(p, '/');
        size_t n = (size_t)(e - p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return ss_fail(err, SS_ERR_INVALID, "key '%s': empty, '.' or '..' segment", key);
        p = *e ? e + 1 : e;
    }
    if (p > key && p[-1] == '/') return ss_fail(err, SS_ERR_INVALID, "key '%s' ends in '/'", key);
    if (asprintf(ret_path, "%s/%s", fs_of(s)->root, key) < 0) {
        *ret_path = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "key '%s': out of memory", key);
    }
    return SS_OK;
}

static ss_rc io_fail(ss_err *err, const char *what, const char *path)
{
    int e = errno;
    ss_rc rc = e == ENOENT ? SS_ERR_NOT_FOUND : e == ENOMEM ? SS_ERR_NOMEM : SS_ERR_IO;
    return ss_fail(err, rc, "%s %s: %s", what, path, strerror(e));
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* mkdir -p for the parents of path (which lies under root). */
static int make_parents(const char *root, char *path)
{
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r && errno != EEXIST) return -1;
    }
    return 0;
}

static ss_rc fs_open(ss_store *s, const char *location, const ss_store_opts *opts, ss_err *err)
{
    file_store *fs = NULL;
    char *tmp = NULL;
    size_t n = strlen(location);
    (void)opts;

    if (location[0] != '/')
        return ss_fail(err, SS_ERR_INVALID, "store URL '%s': file:// needs an absolute path",
                       s->url);
    while (n > 1 && location[n - 1] == '/')
        n--;
    fs = calloc(1, sizeof *fs);
    if (!fs || !(fs->root = strndup(location, n)) || asprintf(&tmp, "%s/" TMP_DIR, fs->root) < 0) {
        tmp = NULL;
        goto nomem;
    }
    if (mkdir(fs->root, 0700) && errno != EEXIST) {
        ss_rc rc = io_fail(err, "create store directory", fs->root);
        free(tmp);
        free(fs->root);
        free(fs);
        return rc == SS_ERR_NOT_FOUND ? SS_ERR_IO : rc;
    }
    if (mkdir(tmp, 0700) && errno != EEXIST) {
        ss_rc rc = io_fail(err, "create", tmp);
        free(tmp);
        free(fs->root);
        free(fs);
        return rc;
    }
    free(tmp);
    s->impl = fs;
    return SS_OK;
nomem:
    if (fs) free(fs->root);
    free(fs);
    return ss_fail(err, SS_ERR_NOMEM, "store %s: out of memory", s->url);
}

static void fs_close(ss_store *s)
{
    file_store *fs = fs_of(s);
    if (!fs) return;
    free(fs->root);
    free(fs);
}

static ss_rc copy_body(int fd, const ss_store_reader *body, uint64_t len, const char *key,
                       uint64_t *counted, ss_err *err)
{
    char buf[65536];
    uint64_t done = 0;
    while (done < len) {
        long n = body->read(body->ctx, buf, sizeof buf);
        if (n < 0) return ss_fail(err, SS_ERR_IO, "put %s: reading the body failed", key);
        if (n == 0) break;
        for (long w = 0; w < n;) {
            ssize_t k = write(fd, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) return io_fail(err, "put: write temp for", key);
            w += k;
        }
        done += (uint64_t)n;
    }
    *counted += done;
    if (done != len)
        return ss_fail(err, SS_ERR_IO, "put %s: body gave %llu of %llu bytes", key,
                       (unsigned long long)done, (unsigned long long)len);
    return SS_OK;
}

/*
 * The store's change lock, held (shared, or exclusive for a compare-and-swap)
 * from before a change is checked until it is published: *ret_fd, -1 on failure.
 * Closing the descriptor lets go.
 */
static ss_rc change_lock(const char *root, int exclusive, const char *key, int *ret_fd, ss_err *err)
{
    char path[PATH_MAX];
    int fd, r;
    *ret_fd = -1;
    if ((size_t)snprintf(path, sizeof path, "%s/" TMP_DIR "/lock", root) >= sizeof path)
        return ss_fail(err, SS_ERR_INVALID, "put %s: the store's path is too long", key);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return io_fail(err, "open the store's lock for", key);
    do
        r = flock(fd, exclusive ? LOCK_EX : LOCK_SH);
    while (r && errno == EINTR);
    if (r) {
        ss_rc rc = io_fail(err, "lock the store for", key);
        close(fd);
        return rc;
    }
    *ret_fd = fd;
    return SS_OK;
}

/* An object's ETag: its inode, size and mtime to the nanosecond (a link() keeps all three). */
static void stat_to(const struct stat *st, ss_store_stat *ret)
{
    ret->size = (uint64_t)st->st_size;
    snprintf(ret->etag, sizeof ret->etag, "%llx-%llx-%llx.%lx", (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size, (unsigned long long)st->st_mtim.tv_sec,
             (long)st->st_mtim.tv_nsec);
}

/*
 * The compare of a compare-and-swap, under the exclusive change lock: path must
 * hold the object of etag. The new object (fd, not yet published) then gets an
 * mtime past the one it replaces: an inode freed by an earlier swap and reused,
 * with the same size within one tick of the file system's coarse clock, would
 * otherwise carry a stale ETag again (ABA) and let a stale swap through.
 */
static ss_rc if_match_check(const char *path, const char *etag, int fd, const char *key,
                            struct stat *ret_st, ss_err *err)
{
    struct stat cur;
    ss_store_stat have = {0};
    struct timespec t[2];
    if (stat(path, &cur)) {
        if (errno != ENOENT) return io_fail(err, "put: stat", key);
        return ss_fail(err, SS_ERR_CHANGED, "put %s: no object anymore (ETag %s)", key, etag);
    }
    stat_to(&cur, &have);
    if (strcmp(have.etag, etag))
        return ss_fail(err, SS_ERR_CHANGED, "put %s: the object is not the one of ETag %s anymore",
                       key, etag);
    clock_gettime(CLOCK_REALTIME, &t[1]);
    if (t[1].tv_sec < cur.st_mtim.tv_sec ||
        (t[1].tv_sec == cur.st_mtim.tv_sec && t[1].tv_nsec <= cur.st_mtim.tv_nsec)) {
        t[1] = cur.st_mtim;
        if (++t[1].tv_nsec == 1000000000L) {
            t[1].tv_sec++;
            t[1].tv_nsec = 0;
        }
    }
    t[0] = t[1];
    if (futimens(fd, t) || fsync(fd) || fstat(fd, ret_st))
        return io_fail(err, "put: set the time of", key);
    return SS_OK;
}

/* Place tmp at path: link() for create-only (atomic EEXIST), rename() otherwise. */
static ss_rc publish(const char *tmp, char *path, const char *root, unsigned flags, const char *key,
                     ss_err *err)
{
    int r;
    for (int attempt = 0; attempt < 2; attempt++) {
        r = (flags & SS_PUT_CREATE_ONLY) ? link(tmp, path) : rename(tmp, path);
        if (!r || errno != ENOENT || attempt) break;
        if (make_parents(root, path)) return io_fail(err, "put: make directories for", key);
    }
    if (r && errno == EEXIST) return ss_fail(err, SS_ERR_EXISTS, "put %s: object exists", key);
    if (r) return io_fail(err, "put", key);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    r = fsync_dir(path);
    *slash = '/';
    if (r) return io_fail(err, "put: fsync directory of", key);
    return SS_OK;
}

static ss_rc fs_put(ss_store *s, const char *key, uint64_t len, const ss_store_reader *body,
                    const void *buf, unsigned flags, const char *if_match, ss_store_stat *ret_stat,
                    ss_err *err)
{
    file_store *fs = fs_of(s);
    char *path = NULL, *tmp = NULL;
    struct stat st;
    int fd = -1, lock = -1;
    ss_rc rc;
    (void)buf;

    rc = key_path(s, key, &path, err);
    if (rc) return rc;
    rc = ss_store_charge(&s->counts, SS_REQ_PUT, "put", key, err);
    if (rc) {
        free(path);
        return rc;
    }
    if (asprintf(&tmp, "%s/" TMP_DIR "/%ld.XXXXXX", fs->root, (long)getpid()) < 0) {
        tmp = NULL;
        rc = ss_fail(err, SS_ERR_NOMEM, "put %s: out of memory", key);
        goto fail;
    }
    /* A name no other handle of this process picks either (a counter per handle did). */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = io_fail(err, "put: create temp", tmp);
        goto fail;
    }
    if (body->rewind && body->rewind(body->ctx)) {
        rc = ss_fail(err, SS_ERR_IO, "put %s: cannot rewind the body", key);
        goto fail;
    }
    rc = copy_body(fd, body, len, key, &s->counts.bytes_up, err);
    if (rc) goto fail;
    if (fsync(fd) || fstat(fd, &st)) {
        rc = io_fail(err, "put: fsync", key);
        goto fail;
    }
    rc = change_lock(fs->root, if_match != NULL, key, &lock, err);
    if (rc) goto fail;
    if (if_match) {
        rc = if_match_check(path, if_match, fd, key, &st, err);
        if (rc) goto fail;
    }
    close(fd);
    fd = -1;
    rc = publish(tmp, path, fs->root, flags, key, err);
    if (!rc && ret_stat) stat_to(&st, ret_stat);
fail:
    if (lock >= 0) close(lock);
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp); /* after link() the object keeps its own name */
    free(tmp);
    free(path);
    return rc;
}

static ss_rc fs_get(ss_store *s, const char *key, uint64_t off, uint64_t len,
                    ss_store_write_fn write_fn, void *ctx, ss_store_stat *ret_stat, ss_err *err)
{
    char *path = NULL;
    char buf[65536];
    int fd = -1;
    ss_rc rc = key_path(s, key, &path, err);
    if (rc) return rc;
    rc = ss_store_charge(&s->counts, SS_REQ_GET, "get", key, err);
    if (rc) {
        free(path);
        return rc;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? ss_fail(err, SS_ERR_NOT_FOUND, "get %s: no such object", key)
                             : io_fail(err, "get", key);
        goto out;
    }
    if (ret_stat) { /* of the open file: a put renames a new inode in, never rewrites this one */
        struct stat st;
        if (fstat(fd, &st)) {
            rc = io_fail(err, "get", key);
            goto out;
        }
        stat_to(&st, ret_stat);
    }
    while (len) {
        ssize_t n = pread(fd, buf, len < sizeof buf ? (size_t)len : sizeof buf, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = io_fail(err, "get", key);
            goto out;
        }
        if (n == 0) break;
        if (write_fn(ctx, buf, (size_t)n)) {
            rc = ss_fail(err, SS_ERR_IO, "get %s: the receiver refused the data", key);
            goto out;
        }
        off += (uint64_t)n;
        s->counts.bytes_down += (uint64_t)n;
        if (len != SS_TO_END) len -= (uint64_t)n;
    }
out:
    if (fd >= 0) close(fd);
    free(path);
    return rc;
}

static ss_rc fs_head(ss_store *s, const char *key, ss_store_stat *ret_stat, ss_err *err)
{
    char *path = NULL;
    struct stat st;
    ss_rc rc = key_path(s, key, &path, err);
    if (rc) return rc;
    rc = ss_store_charge(&s->counts, SS_REQ_HEAD, "head", key, err);
    if (rc) {
        free(path);
        return rc;
    }
    if (stat(path, &st) || !S_ISREG(st.st_mode))
        rc = errno == ENOENT || !S_ISREG(st.st_mode)
                 ? ss_fail(err, SS_ERR_NOT_FOUND, "head %s: no such object", key)
                 : io_fail(err, "head", key);
    else
        stat_to(&st, ret_stat);
    free(path);
    return rc;
}

static ss_rc fs_del(ss_store *s, const char *key, ss_err *err)
{
    char *path = NULL;
    int lock = -1;
    ss_rc rc = key_path(s, key, &path, err);
    if (rc) return rc;
    rc = ss_store_charge(&s->counts, SS_REQ_DELETE, "delete", key, err);
    if (rc) {
        free(path);
        return rc;
    }
    rc = change_lock(fs_of(s)->root, 0, key, &lock, err);
    if (!rc && unlink(path) && errno != ENOENT) rc = io_fail(err, "delete", key);
    if (lock >= 0) close(lock);
    /* probe/ is init's and doctor's alone: the directories a probe made, probe/ included, are
     * not left behind once empty. Other prefixes keep theirs: a push may be putting into one. */
    if (!rc && !strncmp(key, "probe/", 6)) {
        size_t depth = 0; /* the directories between the store's root and the key */
        for (const char *c = key; *c; c++)
            depth += *c == '/';
        while (depth--) {
            *strrchr(path, '/') = '\0';
            if (rmdir(path)) break; /* another probe's keys in it: ENOTEMPTY, kept */
        }
    }
    free(path);
    return rc;
}

/* --- listing ------------------------------------------------------------- */

typedef struct list_walk {
    const char *prefix, *after;
    ss_store_list_fn fn;
    void *ctx;
    int stopped;
} list_walk;

typedef struct dent {
    char *name; /* directories carry a trailing '/' so they sort as S3 keys do */
    int is_dir;
} dent;

static int dent_cmp(const void *a, const void *b)
{
    return strcmp(((const dent *)a)->name, ((const dent *)b)->name);
}

/*
 * Whether key (a directory's with its trailing '/') can be or hold a key the
 * listing hands out: under the prefix, and after start_after.
 */
static int wanted(const list_walk *w, const char *key, int is_dir)
{
    size_t kl = strlen(key), pl = strlen(w->prefix);
    if (strncmp(key, w->prefix, kl < pl ? kl : pl)) return 0;
    if (is_dir) return strcmp(key, w->after) > 0 || !strncmp(key, w->after, kl);
    return kl >= pl && strcmp(key, w->after) > 0;
}

/*
 * The entries of root/rel the listing wants, sorted. Those it does not
 * (before start_after: a pull lists log/ after its watermark) are left out
 * before the sort, so a listing near the end of a long log/ sorts a few
 * names, not all of them.
 */
static ss_rc read_dir(const char *path, const char *rel, const list_walk *w, dent **ret,
                      size_t *ret_n, ss_err *err)
{
    DIR *d = opendir(path);
    dent *v = NULL;
    size_t n = 0, cap = 0, rl = strlen(rel);
    struct dirent *e;
    char key[PATH_MAX + 2];
    *ret = NULL;
    *ret_n = 0;
    if (!d) return errno == ENOENT ? SS_OK : io_fail(err, "list", path);
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!*rel && !strcmp(e->d_name, TMP_DIR)) continue;
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = !fstatat(dirfd(d), e->d_name, &st, 0) && S_ISDIR(st.st_mode);
        }
        size_t nl = strlen(e->d_name);
        if (rl + nl + 2 <= sizeof key) { /* longer: walk() judges it as before */
            memcpy(key, rel, rl);
            memcpy(key + rl, e->d_name, nl);
            key[rl + nl] = '/';
            key[rl + nl + is_dir] = '\0';
            if (!wanted(w, key, is_dir)) continue;
        }
        if (SS_ARRAY_GROW(v, n + 1, cap)) goto nomem;
        if (asprintf(&v[n].name, "%s%s", e->d_name, is_dir ? "/" : "") < 0) goto nomem;
        v[n++].is_dir = is_dir;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, dent_cmp);
    *ret = v;
    *ret_n = n;
    return SS_OK;
nomem:
    closedir(d);
    while (n)
        free(v[--n].name);
    free(v);
    return ss_fail(err, SS_ERR_NOMEM, "list %s: out of memory", path);
}

/* rel is the key prefix of dir ("" or "a/b/"); full path = root/rel. */
static ss_rc walk(const char *root, const char *rel, list_walk *w, ss_err *err)
{
    dent *v = NULL;
    size_t n = 0;
    char *path = NULL;
    ss_rc rc;
    if (asprintf(&path, "%s/%s", root, rel) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "list: out of memory");
    rc = read_dir(path, rel, w, &v, &n, err);
    free(path);
    for (size_t i = 0; i < n && !rc && !w->stopped; i++) {
        char *key = NULL;
        if (asprintf(&key, "%s%s", rel, v[i].name) < 0) {
            rc = ss_fail(err, SS_ERR_NOMEM, "list: out of memory");
            break;
        }
        /* Descend only where the prefix and start_after can still match (read_dir kept
         * only those, but for a name too long for its buffer). */
        if (!wanted(w, key, v[i].is_dir)) {
            free(key);
            continue;
        }
        if (v[i].is_dir) {
            rc = walk(root, key, w, err);
        } else {
            struct stat st;
            ss_store_stat ss = {0};
            char *full = NULL;
            if (asprintf(&full, "%s/%s", root, key) >= 0 && !stat(full, &st)) stat_to(&st, &ss);
            free(full);
            if (w->fn(w->ctx, key, &ss)) w->stopped = 1;
        }
        free(key);
    }
    while (n)
        free(v[--n].name);
    free(v);
    return rc;
}

static ss_rc fs_list(ss_store *s, const char *prefix, const char *start_after, ss_store_list_fn fn,
                     void *ctx, ss_err *err)
{
    list_walk w = {prefix, start_after, fn, ctx, 0};
    ss_rc rc = ss_store_charge(&s->counts, SS_REQ_LIST, "list", prefix, err);
    if (rc) return rc;
    return walk(fs_of(s)->root, "", &w, err);
}

const ss_store_ops ss_store_file_ops = {
    .scheme = "file",
    .open = fs_open,
    .close = fs_close,
    .put = fs_put,
    .get = fs_get,
    .head = fs_head,
    .del = fs_del,
    .list = fs_list,
};
