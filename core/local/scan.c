/* scan: the ordered folder walk (see scan.h). */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "fsio.h"
#include "path.h"
#include "scan_stats.h"

#define MAX_PATH 4096

typedef struct frame {
    char **names;
    size_t n, next;
    size_t path_len; /* length of the directory's path in sc->path ("" for the root) */
} frame;

/*
 * The top frame's names are statted up to STAT_WINDOW at a time, half of
 * them on scan_stats' helper thread (scan_stats.h says why). A window ends
 * at the first name readdir did not say is no directory: the walk goes
 * into a directory right after it, so a window is never kept across a
 * descent (one window for the scan; no stat taken twice or kept while a
 * subtree is walked). Each name's d_type sits after its NUL (push_dir).
 */
#define STAT_WINDOW 256

static unsigned char name_type(const char *name)
{
    return (unsigned char)name[strlen(name) + 1];
}

/*
 * The walk runs ahead on a thread of its own (the producer), so its system
 * calls (getdents, fstatat, openat: the kernel's half of a scan) overlap
 * with what the caller does with each entry (the state, on its own thread):
 * a no-change sync of 1,000,000 files took 1.3x a find of the tree on one
 * thread. The walk fills batches (entries, their paths, and what it has to
 * say); the caller takes them in order. Warnings and the opener (which uses
 * the caller's state and dirmodes) are not the producer's to call: they go
 * into the batch as items, and the caller calls them when it reaches them,
 * so in the same order as before; the producer waits for the opener's
 * answer. The caller is always behind the walk, so a directory dirmodes
 * closes again (ss_dirmodes_leave) is one the walk has left for good.
 * Memory: SCAN_BATCHES batches of SCAN_BATCH_ITEMS items and SCAN_BATCH_BYTES
 * of paths, whatever the folder's size.
 */
#define SCAN_BATCHES 4
#define SCAN_BATCH_ITEMS 512
#define SCAN_BATCH_BYTES (64 * 1024)
_Static_assert(SCAN_BATCH_BYTES > 2 * (MAX_PATH + 256), "an item always fits an empty batch");

enum { ITEM_WARN = 10, ITEM_OPEN }; /* besides an entry's kind, 1..3 */

typedef struct item {
    int kind;
    struct stat st;
    size_t off; /* its path (or message), NUL-terminated, in the batch's bytes */
} item;

typedef struct batch {
    item items[SCAN_BATCH_ITEMS];
    size_t n, used;
    int last; /* the walk ended after these items: end_rc says how */
    char bytes[SCAN_BATCH_BYTES];
} batch;

typedef struct ahead {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    batch *b[SCAN_BATCHES];
    size_t head, filled; /* the caller's next batch; how many are the caller's */
    batch *fill;         /* the producer's current batch, or NULL */
    batch *cur;          /* the caller's current batch, or NULL */
    size_t pos;          /* the caller's next item in cur */
    int stop;            /* the caller is gone: the producer ends */
    int asked, answer;   /* an ITEM_OPEN waiting for the caller, and its answer */
    ss_rc end_rc;
    ss_err end_err;
} ahead;

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
    ahead *ah;         /* NULL: the walk runs on the caller's thread */
    scan_stats *stats; /* NULL: every stat on the walk's thread */
    int stats_tried;   /* the walk tried to start it (once) */
    /* The stats of the top frame's names[win_lo..win_lo + win_n) (entry_stat). */
    struct stat *win_st;
    int *win_err;
    size_t win_lo, win_n;
    int ahead_tried;   /* the caller tried to start the producer (once) */
    off_t ra_max;      /* ss_scan_set_readahead */
    ss_scan_entry out; /* the caller's entry, from a batch */
};

/* The scan whose walk this thread runs as its producer, if any. */
static _Thread_local const ss_scan *tl_producer;

static void say(ss_scan *sc, const char *msg);
static int ask_open(ss_scan *sc, const char *path, const struct stat *st);

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
    say(sc, msg);
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

/* e's name, with its d_type after the NUL (name_type). */
static char *name_copy(const struct dirent *e)
{
    size_t len = strlen(e->d_name);
    char *copy = malloc(len + 2);
    if (!copy) return NULL;
    memcpy(copy, e->d_name, len + 1);
    copy[len + 1] = (char)e->d_type;
    return copy;
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
        if (!(f.names[f.n] = name_copy(e))) goto nomem;
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
    sc->win_n = 0; /* the window was the parent's */
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

void ss_scan_set_readahead(ss_scan *sc, off_t max_size)
{
    sc->ra_max = max_size;
}

void ss_scan_set_opener(ss_scan *sc, ss_scan_open_fn fn, void *ctx)
{
    sc->open = fn;
    sc->open_ctx = ctx;
}

static void ahead_end(ss_scan *sc);

void ss_scan_free(ss_scan *sc)
{
    if (!sc) return;
    ahead_end(sc);
    scan_stats_free(sc->stats); /* after the walk's thread ended: it was the one using it */
    free(sc->win_st);
    free(sc->win_err);
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
    sc->win_n = 0; /* the window was the child's */
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

/* Fill the window from the top frame's entry i on; 0, or -1 out of memory. */
static int fill_window(ss_scan *sc, const frame *f, size_t i)
{
    size_t n = 0;
    while (i + n < f->n && n < STAT_WINDOW) {
        unsigned char t = name_type(f->names[i + n++]);
        if (t == DT_DIR || t == DT_UNKNOWN) break; /* the walk may go into it next */
    }
    if (!sc->win_st) {
        sc->win_st = malloc(STAT_WINDOW * sizeof *sc->win_st);
        sc->win_err = malloc(STAT_WINDOW * sizeof *sc->win_err);
    }
    if (!sc->win_st || !sc->win_err) return -1;
    if (!sc->stats_tried && n >= SCAN_STATS_SPLIT_MIN) {
        sc->stats_tried = 1;
        sc->stats = scan_stats_new();
    }
    scan_stats_run(sc->stats, sc->dir_fd, f->names + i, n, sc->win_st, sc->win_err);
    sc->win_lo = i;
    sc->win_n = n;
    return 0;
}

/* lstat of the top frame's entry i (in sc->dir_fd), from the window: 0, or -1 with errno. */
static int entry_stat(ss_scan *sc, const frame *f, size_t i, struct stat *st)
{
    int inside = i >= sc->win_lo && i < sc->win_lo + sc->win_n;
    if (!inside && fill_window(sc, f, i)) /* out of memory: this one on its own */
        return fstatat(sc->dir_fd, f->names[i], st, AT_SYMLINK_NOFOLLOW);
    errno = sc->win_err[i - sc->win_lo];
    if (errno) return -1;
    *st = sc->win_st[i - sc->win_lo];
    return 0;
}

/* Classify the top frame's entry i; 0 = skip it. */
static int classify(ss_scan *sc, const frame *f, size_t i, struct stat *st, ss_err *err, ss_rc *rc)
{
    if (entry_stat(sc, f, i, st)) {
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

/*
 * A file the caller will read (ss_scan_set_readahead): the kernel is asked
 * for its bytes now, from the walk's thread, so the caller's read finds them
 * in memory. Opened as the walk stats (O_NOFOLLOW, beneath the open
 * directory; O_NONBLOCK: a fifo swapped in is not waited on); nothing is
 * read here, and a failure only means no readahead.
 */
static void read_ahead(ss_scan *sc, const char *name, const struct stat *st)
{
    if (st->st_size <= 0 || st->st_size > sc->ra_max || tl_producer != sc) return;
    int fd = openat(sc->dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    posix_fadvise(fd, 0, st->st_size, POSIX_FADV_WILLNEED);
    close(fd);
}

/* Descend into directory name (just handed out as sc->path, len bytes) from the top frame. */
static ss_rc descend(ss_scan *sc, const char *name, size_t len, ss_err *err)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(sc->dir_fd, name, flags);
    if (fd < 0 && errno == EACCES && sc->open) {
        if (!ask_open(sc, sc->path, &sc->entry.st))
            fd = openat(sc->dir_fd, name, flags); /* its owner may read it now */
        else
            errno = EACCES; /* the refusal, whatever the opener's calls left in errno */
    }
    /* Gone or swapped for a symlink since its stat: nothing below it is there for this scan. */
    if (fd < 0 && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)) return SS_OK;
    if (fd < 0) return scan_fail(sc, err, errno);
    return push_dir(sc, fd, len, err);
}

/* The walk itself: the next entry, on whichever thread runs it. */
static ss_rc walk_next(ss_scan *sc, const ss_scan_entry **ret_entry, ss_err *err)
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
        int kind = classify(sc, f, f->next - 1, &sc->entry.st, err, &rc);
        if (rc) return rc;
        if (!kind || ss_ignore_match(sc->ign, sc->path, kind == 2)) continue;
        sc->entry.kind = kind;
        sc->entry.path = sc->path;
        if (kind == 1) read_ahead(sc, name, &sc->entry.st);
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

/* --- the walk ahead on its own thread ---------------------------------------------- */

/* Hand the producer's batch to the caller (under mu). */
static void publish(ahead *ah)
{
    ah->fill = NULL;
    ah->filled++;
    pthread_cond_broadcast(&ah->cond);
}

/* The producer's batch with room for an item of len bytes; 0 when the caller is gone. */
static batch *room(ahead *ah, size_t len)
{
    batch *b = ah->fill;
    if (b && b->n < SCAN_BATCH_ITEMS && b->used + len + 1 <= SCAN_BATCH_BYTES) return b;
    pthread_mutex_lock(&ah->mu);
    if (b) publish(ah);
    while (!ah->stop && ah->filled == SCAN_BATCHES)
        pthread_cond_wait(&ah->cond, &ah->mu);
    b = NULL;
    if (!ah->stop) {
        b = ah->b[(ah->head + ah->filled) % SCAN_BATCHES];
        b->n = b->used = 0;
        b->last = 0;
        ah->fill = b;
    }
    pthread_mutex_unlock(&ah->mu);
    return b;
}

/* Add an item (text: its path or message) to the producer's batch; 0 when the caller is gone. */
static int add_item(ahead *ah, int kind, const char *text, const struct stat *st)
{
    size_t len = strlen(text);
    batch *b = room(ah, len);
    if (!b) return 0;
    item *it = &b->items[b->n++];
    it->kind = kind;
    if (st) it->st = *st;
    it->off = b->used;
    memcpy(b->bytes + b->used, text, len + 1);
    b->used += len + 1;
    return 1;
}

static void say(ss_scan *sc, const char *msg)
{
    if (tl_producer == sc)
        add_item(sc->ah, ITEM_WARN, msg, NULL); /* a caller gone has no use for it */
    else
        sc->warn(sc->warn_ctx, msg);
}

/* The opener, called by the caller when it reaches the request; the producer waits. */
static int ask_open(ss_scan *sc, const char *path, const struct stat *st)
{
    ahead *ah = sc->ah;
    int answer = -1;
    if (tl_producer != sc) return sc->open(sc->open_ctx, path, st);
    if (!add_item(ah, ITEM_OPEN, path, st)) return -1;
    pthread_mutex_lock(&ah->mu);
    ah->asked = 1;
    publish(ah); /* the caller must see the request to answer it */
    while (!ah->stop && ah->asked)
        pthread_cond_wait(&ah->cond, &ah->mu);
    if (!ah->stop) answer = ah->answer;
    pthread_mutex_unlock(&ah->mu);
    return answer;
}

static void *produce(void *arg)
{
    ss_scan *sc = arg;
    ahead *ah = sc->ah;
    const ss_scan_entry *e = NULL;
    ss_err err = {{0}};
    ss_rc rc = SS_OK;
    tl_producer = sc;
    for (;;) {
        rc = walk_next(sc, &e, &err);
        if (rc || !e || !add_item(ah, e->kind, e->path, &e->st)) break;
    }
    if (!room(ah, 0)) return NULL; /* the caller is gone */
    pthread_mutex_lock(&ah->mu);
    ah->end_rc = rc;
    ah->end_err = err;
    ah->fill->last = 1;
    publish(ah);
    pthread_mutex_unlock(&ah->mu);
    return NULL;
}

static void ahead_free(ahead *ah)
{
    for (size_t i = 0; i < SCAN_BATCHES; i++)
        free(ah->b[i]);
    free(ah);
}

/* Start the producer; NULL (the walk stays on the caller's thread) when it cannot start. */
static ahead *ahead_start(ss_scan *sc)
{
    ahead *ah = calloc(1, sizeof *ah);
    if (!ah) return NULL;
    for (size_t i = 0; i < SCAN_BATCHES; i++)
        if (!(ah->b[i] = malloc(sizeof *ah->b[i]))) {
            ahead_free(ah);
            return NULL;
        }
    pthread_mutex_init(&ah->mu, NULL);
    pthread_cond_init(&ah->cond, NULL);
    sc->ah = ah;
    if (pthread_create(&ah->thread, NULL, produce, sc)) {
        sc->ah = NULL;
        pthread_cond_destroy(&ah->cond);
        pthread_mutex_destroy(&ah->mu);
        ahead_free(ah);
        return NULL;
    }
    return ah;
}

static void ahead_end(ss_scan *sc)
{
    ahead *ah = sc->ah;
    if (!ah) return;
    pthread_mutex_lock(&ah->mu);
    ah->stop = 1;
    pthread_cond_broadcast(&ah->cond);
    pthread_mutex_unlock(&ah->mu);
    pthread_join(ah->thread, NULL);
    pthread_cond_destroy(&ah->cond);
    pthread_mutex_destroy(&ah->mu);
    ahead_free(ah);
    sc->ah = NULL;
}

/* The caller's next item, waiting for the producer as needed; NULL after the last one. */
static const item *take(ahead *ah, batch **ret_b)
{
    for (;;) {
        batch *b = ah->cur;
        if (b && ah->pos < b->n) {
            *ret_b = b;
            return &b->items[ah->pos++];
        }
        if (b && b->last) return NULL;
        pthread_mutex_lock(&ah->mu);
        if (b) { /* done with it: the producer may fill it again */
            ah->cur = NULL;
            ah->head = (ah->head + 1) % SCAN_BATCHES;
            ah->filled--;
            pthread_cond_broadcast(&ah->cond);
        }
        while (!ah->filled)
            pthread_cond_wait(&ah->cond, &ah->mu);
        ah->cur = ah->b[ah->head];
        ah->pos = 0;
        pthread_mutex_unlock(&ah->mu);
    }
}

ss_rc ss_scan_next(ss_scan *sc, const ss_scan_entry **ret_entry, ss_err *err)
{
    ahead *ah = sc->ah;
    const item *it;
    batch *b = NULL;
    *ret_entry = NULL;
    if (!ah && !sc->ahead_tried) {
        sc->ahead_tried = 1;
        ah = ahead_start(sc);
    }
    if (!ah) return walk_next(sc, ret_entry, err);
    while ((it = take(ah, &b))) {
        const char *text = b->bytes + it->off;
        if (it->kind == ITEM_WARN) {
            sc->warn(sc->warn_ctx, text);
        } else if (it->kind == ITEM_OPEN) {
            int answer = sc->open(sc->open_ctx, text, &it->st);
            pthread_mutex_lock(&ah->mu);
            ah->answer = answer;
            ah->asked = 0;
            pthread_cond_broadcast(&ah->cond);
            pthread_mutex_unlock(&ah->mu);
        } else {
            sc->out.kind = it->kind;
            sc->out.st = it->st;
            sc->out.path = text; /* the batch stays the caller's until the next call */
            *ret_entry = &sc->out;
            return SS_OK;
        }
    }
    if (ah->end_rc && err) *err = ah->end_err;
    return ah->end_rc;
}
