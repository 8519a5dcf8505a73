/* scan: the ordered folder walk (see scan.h). */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsio.h"

#define MAX_PATH 4096

typedef struct frame {
    char **names;
    size_t n, next;
    size_t path_len; /* length of the directory's path in sc->path ("" for the root) */
} frame;

struct ss_scan {
    char *root;
    const ss_ignore *ign;
    ss_warn_fn warn;
    void *warn_ctx;
    ss_scan_open_fn open;
    void *open_ctx;
    frame *stack;
    size_t depth, cap;
    char path[MAX_PATH + 1];
    char *full; /* root + "/" + path, for lstat */
    size_t root_len;
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

static ss_rc push_dir(ss_scan *sc, size_t path_len, ss_err *err)
{
    DIR *d = NULL;
    struct dirent *e;
    frame f = {.path_len = path_len};
    size_t cap = 0;
    int e_open;
    sc->path[path_len] = '\0';
    snprintf(sc->full, sc->root_len + MAX_PATH + 2, "%s/%s", sc->root, sc->path);
    d = opendir(sc->full);
    e_open = errno;
    if (!d && e_open == EACCES && path_len && sc->open &&
        !sc->open(sc->open_ctx, sc->path, &sc->entry.st))
        d = opendir(sc->full); /* its owner may read it now (ss_scan_set_opener) */
    if (!d) return ss_fail(err, SS_ERR_IO, "scan %s: %s", sc->full, strerror(e_open));
    while ((errno = 0, e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!path_len && !strcmp(e->d_name, ".s3sync")) continue;
        if (!strncmp(e->d_name, SS_FS_TMP_PREFIX, strlen(SS_FS_TMP_PREFIX))) {
            /* Left by a command killed mid-write (commands hold the folder's lock). */
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (f.n == cap) {
            char **nv = realloc(f.names, (cap = cap ? cap * 2 : 32) * sizeof *nv);
            if (!nv) goto nomem;
            f.names = nv;
        }
        if (!(f.names[f.n] = strdup(e->d_name))) goto nomem;
        f.n++;
    }
    if (errno) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "scan %s: %s", sc->full, strerror(errno));
        closedir(d);
        frame_free(&f);
        return rc;
    }
    closedir(d);
    if (f.n) qsort(f.names, f.n, sizeof *f.names, name_cmp); /* names is NULL when empty */
    if (sc->depth == sc->cap) {
        frame *ns = realloc(sc->stack, (sc->cap = sc->cap ? sc->cap * 2 : 16) * sizeof *ns);
        if (!ns) goto nomem_closed;
        sc->stack = ns;
    }
    sc->stack[sc->depth++] = f;
    return SS_OK;
nomem:
    closedir(d);
nomem_closed:
    frame_free(&f);
    return ss_fail(err, SS_ERR_NOMEM, "scan: out of memory");
}

ss_rc ss_scan_new(const char *root, const ss_ignore *ign, ss_warn_fn warn, void *warn_ctx,
                  ss_scan **ret_scan, ss_err *err)
{
    ss_scan *sc = calloc(1, sizeof *sc);
    ss_rc rc;
    *ret_scan = NULL;
    if (!sc || !(sc->root = strdup(root))) {
        free(sc);
        return ss_fail(err, SS_ERR_NOMEM, "scan: out of memory");
    }
    sc->root_len = strlen(root);
    sc->ign = ign;
    sc->warn = warn;
    sc->warn_ctx = warn_ctx;
    if (!(sc->full = malloc(sc->root_len + MAX_PATH + 2))) {
        ss_scan_free(sc);
        return ss_fail(err, SS_ERR_NOMEM, "scan: out of memory");
    }
    rc = push_dir(sc, 0, err);
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
    free(sc->stack);
    free(sc->full);
    free(sc->root);
    free(sc);
}

static void warnf(ss_scan *sc, const char *fmt, const char *path)
{
    char msg[MAX_PATH + 128];
    if (!sc->warn) return;
    snprintf(msg, sizeof msg, fmt, path);
    sc->warn(sc->warn_ctx, msg);
}

/* Classify the entry at sc->path; 0 = skip it. */
static int classify(ss_scan *sc, struct stat *st, ss_err *err, ss_rc *rc)
{
    snprintf(sc->full, sc->root_len + MAX_PATH + 2, "%s/%s", sc->root, sc->path);
    if (lstat(sc->full, st)) {
        if (errno == ENOENT) return 0; /* vanished while scanning: the next scan sees it gone */
        *rc = ss_fail(err, SS_ERR_IO, "scan %s: %s", sc->full, strerror(errno));
        return 0;
    }
    if (S_ISREG(st->st_mode)) return 1;
    if (S_ISDIR(st->st_mode)) return 2;
    if (S_ISLNK(st->st_mode)) return 3;
    warnf(sc, "skipping %s: not a regular file, directory or symlink", sc->path);
    return 0;
}

ss_rc ss_scan_next(ss_scan *sc, const ss_scan_entry **ret_entry, ss_err *err)
{
    *ret_entry = NULL;
    while (sc->depth) {
        frame *f = &sc->stack[sc->depth - 1];
        ss_rc rc = SS_OK;
        if (f->next == f->n) {
            frame_free(f);
            sc->depth--;
            continue;
        }
        const char *name = f->names[f->next++];
        size_t len = f->path_len + (f->path_len ? 1 : 0) + strlen(name);
        if (len > MAX_PATH) {
            warnf(sc, "skipping %s...: path longer than 4096 bytes", name);
            continue;
        }
        snprintf(sc->path + f->path_len, MAX_PATH + 1 - f->path_len, "%s%s", f->path_len ? "/" : "",
                 name);
        int kind = classify(sc, &sc->entry.st, err, &rc);
        if (rc) return rc;
        if (!kind || ss_ignore_match(sc->ign, sc->path, kind == 2)) continue;
        sc->entry.kind = kind;
        sc->entry.path = sc->path;
        if (kind == 2) {
            /* Descend after handing out the directory itself; push_dir rewrites the path. */
            char keep[MAX_PATH + 1];
            memcpy(keep, sc->path, len + 1);
            rc = push_dir(sc, len, err);
            memcpy(sc->path, keep, len + 1);
            if (rc) return rc;
        }
        *ret_entry = &sc->entry;
        return SS_OK;
    }
    return SS_OK;
}
