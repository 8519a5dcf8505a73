/* scan: the ordered folder walk (see scan.h). */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "fsio.h"
#include "path.h"

#define MAX_PATH 4096

typedef struct frame {
    char **names;
    size_t n, next;
    size_t path_len; /* length of the directory's path in sc->path ("" for the root) */
} frame;

struct ss_scan {
    int root_fd;
    int dir_fd; /* the top frame's directory; -1 after a pop, until reopened */
    const ss_ignore *ign;
    ss_warn_fn warn;
    void *warn_ctx;
    ss_scan_open_fn open;
    void *open_ctx;
    frame *stack;
    size_t depth, cap;
    char path[MAX_PATH + 1];
    ss_scan_entry entry;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void frame_free(frame *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->names[i]);
    free(f->names);
    memset(f, 0, sizeof *f);
}

static void warnf(ss_scan *sc, const char *fmt, const char *path, const char *why)
{
    char msg[MAX_PATH + 256];
    if (!sc->warn) return;
    snprintf(msg, sizeof msg, fmt, path, why);
    sc->warn(sc->warn_ctx, msg);
}

static ss_rc scan_fail(ss_scan *sc, ss_err *err, int e)
{
    return ss_fail(err, e == ENOMEM ? SS_ERR_NOMEM : SS_ERR_IO, "scan %s: %s",
                   sc->path[0] ? sc->path : ".", strerror(e));
}

/* A name a transaction cannot hold is skipped (the root's own .s3sync/ without a word). */
static int skip_name(ss_scan *sc, size_t path_len, const char *name)
{
    char at[MAX_PATH + 1];
    const char *why = ss_path_segment_fault(name, strlen(name));
    if (!why) return 0;
    if (!path_len && !strcmp(name, SS_TXN_RESERVED_DIR)) return 1;
    snprintf(at, sizeof at, "%.*s%s%s", (int)path_len, sc->path, path_len ? "/" : "", name);
    warnf(sc, "skipping %s: %s", at,
          ss_path_reserved(name, strlen(name))
              ? "a name of s3sync's control folder (" SS_TXN_RESERVED_DIR "), never synced"
              : why);
    return 1;
}

/* The names in directory fd, sorted, as a new frame on top; fd becomes the top's directory. */
static ss_rc push_dir(ss_scan *sc, int fd, size_t path_len, ss_err *err)
{
    DIR *d = NULL;
    struct dirent *e;
    frame f = {.path_len = path_len};
    size_t cap = 0;
    int listing = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset */
    sc->path[path_len] = '\0';
    if (listing < 0 || !(d = fdopendir(listing))) {
        ss_rc rc = scan_fail(sc, err, errno);
        if (listing >= 0) close(listing);
        close(fd);
        return rc;
    }
    while ((errno = 0, e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!strncmp(e->d_name, SS_FS_TMP_PREFIX, strlen(SS_FS_TMP_PREFIX))) {
            /* Left by a command killed mid-write (commands hold the folder's lock). */
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (skip_name(sc, path_len, e->d_name)) continue;
        if (SS_ARRAY_GROW(f.names, f.n + 1, cap)) goto nomem;
        if (!(f.names[f.n] = strdup(e->d_name))) goto nomem;
        f.n++;
    }
    if (errno) {
        ss_rc rc = scan_fail(sc, err, errno);
        closedir(d);
        close(fd);
        frame_free(&f);
        return rc;
    }
    closedir(d);
    if (f.n) qsort(f.names, f.n, sizeof *f.names, name_cmp); /* names is NULL when empty */
    if (SS_ARRAY_GROW(sc->stack, sc->depth + 1, sc->cap)) goto nomem_closed;
    sc->stack[sc->depth++] = f;
    if (sc->dir_fd >= 0) close(sc->dir_fd);
    sc->dir_fd = fd;
    return SS_OK;
nomem:
    closedir(d);
nomem_closed:
    close(fd);
    frame_free(&f);
    return ss_fail(err, SS_ERR_NOMEM, "scan: out of memory");
}

ss_rc ss_scan_new(int root_fd, const ss_ignore *ign, ss_warn_fn warn, void *warn_ctx,
                  ss_scan **ret_scan, ss_err *err)
{
    ss_scan *sc = calloc(1, sizeof *sc);
    int fd;
    ss_rc rc;
    *ret_scan = NULL;
    if (!sc) return ss_fail(err, SS_ERR_NOMEM, "scan: out of memory");
    sc->root_fd = root_fd;
    sc->dir_fd = -1;
    sc->ign = ign;
    sc->warn = warn;
    sc->warn_ctx = warn_ctx;
    fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = fd < 0 ? scan_fail(sc, err, errno) : push_dir(sc, fd, 0, err);
    if (rc) {
        ss_scan_free(sc);
        return rc;
    }
    *ret_scan = sc;
    return SS_OK;
}

void ss_scan_set_opener(ss_scan *sc, ss_scan_open_fn fn, void *ctx)
{
    sc->open = fn;
    sc->open_ctx = ctx;
}

void ss_scan_free(ss_scan *sc)
{
    if (!sc) return;
    while (sc->depth)
        frame_free(&sc->stack[--sc->depth]);
    if (sc->dir_fd >= 0) close(sc->dir_fd);
    free(sc->stack);
    free(sc);
}

/*
 * The top frame's directory again, after its child's frame was done: by
 * its path beneath the root, no symlink followed. Gone or no directory now
 * (removed, or swapped for a symlink meanwhile): *ret_gone, and the rest of
 * its names are not there for this scan.
 */
static ss_rc reopen_top(ss_scan *sc, int *ret_gone, ss_err *err)
{
    frame *f = &sc->stack[sc->depth - 1];
    ss_err why = {{0}};
    ss_rc rc;
    *ret_gone = 0;
    if (!f->path_len) {
        sc->dir_fd = openat(sc->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return sc->dir_fd < 0 ? scan_fail(sc, err, errno) : SS_OK;
    }
    sc->path[f->path_len] = '\0';
    rc = ss_fs_open(sc->root_fd, sc->path, O_RDONLY | O_DIRECTORY, &sc->dir_fd, &why);
    if (rc && (errno == ENOENT || errno == ELOOP || errno == EXDEV || errno == ENOTDIR)) {
        *ret_gone = 1;
        return SS_OK;
    }
    if (rc && err) *err = why;
    return rc;
}

/* Classify name in the top frame's directory; 0 = skip it. */
static int classify(ss_scan *sc, const char *name, struct stat *st, ss_err *err, ss_rc *rc)
{
    if (fstatat(sc->dir_fd, name, st, AT_SYMLINK_NOFOLLOW)) {
        if (errno == ENOENT) return 0; /* vanished while scanning: the next scan sees it gone */
        *rc = scan_fail(sc, err, errno);
        return 0;
    }
    if (S_ISREG(st->st_mode)) return 1;
    if (S_ISDIR(st->st_mode)) return 2;
    if (S_ISLNK(st->st_mode)) return 3;
    warnf(sc, "skipping %s: %s", sc->path, "not a regular file, directory or symlink");
    return 0;
}

/* Descend into directory name (just handed out as sc->path, len bytes) from the top frame. */
static ss_rc descend(ss_scan *sc, const char *name, size_t len, ss_err *err)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(sc->dir_fd, name, flags);
    if (fd < 0 && errno == EACCES && sc->open) {
        if (!sc->open(sc->open_ctx, sc->path, &sc->entry.st))
            fd = openat(sc->dir_fd, name, flags); /* its owner may read it now */
        else
            errno = EACCES; /* the refusal, whatever the opener's calls left in errno */
    }
    /* Gone or swapped for a symlink since its stat: nothing below it is there for this scan. */
    if (fd < 0 && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)) return SS_OK;
    if (fd < 0) return scan_fail(sc, err, errno);
    return push_dir(sc, fd, len, err);
}

ss_rc ss_scan_next(ss_scan *sc, const ss_scan_entry **ret_entry, ss_err *err)
{
    *ret_entry = NULL;
    while (sc->depth) {
        frame *f = &sc->stack[sc->depth - 1];
        ss_rc rc = SS_OK;
        int gone = 0;
        if (f->next == f->n) {
            frame_free(f);
            sc->depth--;
            if (sc->dir_fd >= 0) close(sc->dir_fd);
            sc->dir_fd = -1;
            continue;
        }
        if (sc->dir_fd < 0) {
            rc = reopen_top(sc, &gone, err);
            if (rc) return rc;
            if (gone) {
                f->next = f->n;
                continue;
            }
        }
        const char *name = f->names[f->next++];
        size_t len = f->path_len + (f->path_len ? 1 : 0) + strlen(name);
        if (len > MAX_PATH) {
            warnf(sc, "skipping %s...: %s", name, "path longer than 4096 bytes");
            continue;
        }
        snprintf(sc->path + f->path_len, MAX_PATH + 1 - f->path_len, "%s%s", f->path_len ? "/" : "",
                 name);
        int kind = classify(sc, name, &sc->entry.st, err, &rc);
        if (rc) return rc;
        if (!kind || ss_ignore_match(sc->ign, sc->path, kind == 2)) continue;
        sc->entry.kind = kind;
        sc->entry.path = sc->path;
        /* Descend after handing out the directory itself. */
        if (kind == 2) {
            rc = descend(sc, name, len, err);
            if (rc) return rc;
        }
        *ret_entry = &sc->entry;
        return SS_OK;
    }
    return SS_OK;
}
