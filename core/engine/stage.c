/*
 * stage: where a pull's chunked files are fetched to before they are applied
 * (apply.c P1): one file per chunked op in .s3sync/tmp, named by its index
 * in the transaction, written as its verified chunks land (fetch.c's put),
 * then adopted by the walk (fsio.h ss_atomic_adopt: linked beside its
 * target, then renamed into place as any temp).
 *
 * Why a file each, not one stage file the walk copies from: the data is
 * written once, not twice, and a file is created and written while the
 * next ranges are on the wire, not after the last one landed. The folder
 * is not touched before every chunk of the transaction verified (P1): the
 * files wait here, on the folder's file system, until the walk.
 *
 * Chunks land in pack order, mostly file after file, so a few descriptors
 * do: at most STAGE_FDS are open, one closed in turn when another must
 * open (a clock hand over the slots), and opened again by name if more of
 * its chunks land later. A file is
 * closed, its writeout started (ss_fs_writeout, as fsio_batch.c's step 1),
 * when its last byte landed. Each file has a range of offsets in one
 * address space, its data's place in the transaction (fetch.c's out_off).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply_impl.h"
#include "array.h"
#include "fault.h"

#define STAGE_FDS 16 /* descriptors open at once, at most */
#define STAGE_PREFIX "stage-"

typedef struct stage_file {
    uint64_t start, size, left; /* its offsets [start, start + size); bytes still to land */
    int fd;                     /* -1: closed */
    unsigned slot;              /* in slots[], while open */
    int taken;                  /* adopted: no longer the stage's to remove */
} stage_file;

struct eng_stage {
    int dirfd;
    stage_file *v;
    size_t n, cap;
    uint64_t end;            /* where the next file's offsets start */
    size_t slots[STAGE_FDS]; /* the open files' indices; SLOT_FREE: none */
    unsigned hand;           /* the slot to close next when all are taken */
};

#define SLOT_FREE ((size_t)-1)

void eng_stage_clean(ss_folder *f)
{
    char *dir = NULL;
    DIR *d = NULL;
    struct dirent *de;
    int fd;
    if (asprintf(&dir, "%s/tmp", f->meta) < 0) return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); /* ours, not a symlink */
    free(dir);
    if (fd < 0) return; /* none yet */
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX)))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

ss_rc eng_stage_new(ss_folder *f, eng_stage **ret_stage, ss_err *err)
{
    eng_stage *s = NULL;
    char *dir = NULL;
    ss_rc rc = SS_OK;
    *ret_stage = NULL;
    s = calloc(1, sizeof *s);
    if (!s || asprintf(&dir, "%s/tmp", f->meta) < 0) {
        free(s);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    s->dirfd = -1;
    for (size_t k = 0; k < STAGE_FDS; k++)
        s->slots[k] = SLOT_FREE;
    if (mkdir(dir, 0700) && errno != EEXIST) {
        rc = ss_fail(err, SS_ERR_IO, "create %s: %s", dir, strerror(errno));
        goto fail;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = ss_fail(err, SS_ERR_IO, "open %s: %s", dir, strerror(errno));
        goto fail;
    }
    free(dir);
    *ret_stage = s;
    return SS_OK;
fail:
    free(dir);
    eng_stage_free(s);
    return rc;
}

static void close_file(eng_stage *s, stage_file *sf)
{
    if (sf->fd < 0) return;
    close(sf->fd);
    sf->fd = -1;
    s->slots[sf->slot] = SLOT_FREE;
}

void eng_stage_free(eng_stage *s)
{
    char name[32];
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        close_file(s, &s->v[i]);
        if (!s->v[i].taken) unlinkat(s->dirfd, eng_stage_name(s, i, name, sizeof name), 0);
    }
    if (s->dirfd >= 0) close(s->dirfd);
    free(s->v);
    free(s);
}

const char *eng_stage_name(const eng_stage *s, size_t i, char *buf, size_t cap)
{
    (void)s;
    snprintf(buf, cap, STAGE_PREFIX "%zu", i);
    return buf;
}

int eng_stage_dirfd(const eng_stage *s)
{
    return s->dirfd;
}

uint64_t eng_stage_start(const eng_stage *s, size_t i)
{
    return s->v[i].start;
}

/* Give open file i a slot, closing the file in the slot under the hand when none is free. */
static void opened(eng_stage *s, size_t i)
{
    unsigned k = 0;
    while (k < STAGE_FDS && s->slots[k] != SLOT_FREE)
        k++;
    if (k == STAGE_FDS) {
        k = s->hand;
        s->hand = (s->hand + 1) % STAGE_FDS;
        close_file(s, &s->v[s->slots[k]]);
    }
    s->slots[k] = i;
    s->v[i].slot = k;
}

int eng_stage_fd(eng_stage *s, size_t i)
{
    char name[32];
    stage_file *sf = &s->v[i];
    if (sf->fd >= 0) return sf->fd;
    sf->fd = openat(s->dirfd, eng_stage_name(s, i, name, sizeof name),
                    O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (sf->fd < 0) return -1;
    opened(s, i);
    return sf->fd;
}

ss_rc eng_stage_add(eng_stage *s, uint64_t size, size_t *ret_index, ss_err *err)
{
    char name[32];
    stage_file *sf;
    if (SS_ARRAY_GROW(s->v, s->n + 1, s->cap)) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    sf = &s->v[s->n];
    *sf = (stage_file){.start = s->end, .size = size, .left = size, .fd = -1};
    eng_stage_name(s, s->n, name, sizeof name);
    sf->fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (sf->fd < 0) return ss_fail(err, SS_ERR_IO, "stage in .s3sync/tmp: %s", strerror(errno));
    *ret_index = s->n++;
    s->end += size;
    opened(s, *ret_index);
    if (!size) close_file(s, sf); /* nothing will land: done */
    return SS_OK;
}

/* The file whose offsets hold off (files are added in offset order). */
static size_t file_at(const eng_stage *s, uint64_t off)
{
    size_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int eng_stage_put(eng_stage *s, uint64_t off, const void *buf, size_t len)
{
    size_t i = file_at(s, off);
    int fd;
    if (i >= s->n || off + len > s->v[i].start + s->v[i].size) {
        errno = EINVAL; /* not a range the stage handed out */
        return -1;
    }
    fd = eng_stage_fd(s, i);
    if (fd < 0) return -1;
    return ss_fs_pwrite_all(fd, buf, len, (off_t)(off - s->v[i].start));
}

int eng_stage_landed(eng_stage *s, uint64_t off, uint64_t len)
{
    size_t i = file_at(s, off);
    stage_file *sf;
    if (i >= s->n) return 0;
    sf = &s->v[i];
    if (!sf->left) return 0;
    sf->left -= len < sf->left ? len : sf->left;
    if (sf->left) return 0;
    if (sf->fd >= 0) { /* all of it: its writeout starts while the rest lands */
        (void)ss_fs_writeout(sf->fd, sf->size); /* a failure shows at the syncfs */
        close_file(s, sf);
    }
    ss_fault_point("stage.file");
    return 1;
}

void eng_stage_taken(eng_stage *s, size_t i)
{
    assert(i < s->n && !s->v[i].left); /* P1: only a file whose every chunk landed */
    close_file(s, &s->v[i]);
    s->v[i].taken = 1;
}
