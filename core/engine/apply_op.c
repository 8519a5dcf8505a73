/*
 * apply_op: one op of a verified transaction against the folder and the
 * state (pull's P3, P4 and P6; apply.c holds the invariants and drives the
 * transaction). What is at the path is looked at first: a clean local copy
 * is replaced, a changed one is kept as a conflict copy, and what is in the
 * way (a directory not empty yet, a parent the user replaced) is handled
 * before the new version is written.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply_impl.h"
#include "array.h"
#include "fault.h"
#include "fsio.h"
#include "path.h"

enum { L_ABSENT, L_CLEAN, L_DIRTY };

typedef struct local {
    int state, kind;
    struct stat st;
} local;

/* What the folder holds at path compared with the previous state. */
static ss_rc look(eng_apply *a, const char *path, local *l, ss_err *err)
{
    ss_state_row row;
    ss_err why = {{0}};
    int found = 0, match = 0;
    ss_rc rc;
    memset(l, 0, sizeof *l);
    rc = ss_fs_lstat(a->f->root_fd, path, &l->st, &why);
    if (rc == SS_ERR_NOT_FOUND) { /* L_ABSENT: the path or a parent is not there */
        memset(&l->st, 0, sizeof l->st);
        return SS_OK;
    }
    if (rc) {
        if (err) *err = why;
        return rc;
    }
    l->kind = eng_kind_of(l->st.st_mode);
    rc = ss_state_lookup(a->f->state, path, &row, &found, err);
    if (rc) return rc;
    if (found) {
        rc = eng_local_matches(a->f, &row, path, &l->st, &match, err);
        if (rc) return rc;
    }
    l->state = match ? L_CLEAN : L_DIRTY;
    return SS_OK;
}

/* A dirty local version that equals the incoming one is no conflict (a re-run after a crash). */
static ss_rc same_as_local(eng_apply *a, const ss_txn_entry *e, const local *l, int *ret_same,
                           ss_err *err)
{
    *ret_same = 0;
    if (l->kind != (int)e->kind) return SS_OK;
    if (e->kind == SS_TXN_DIR) {
        *ret_same = 1;
    } else if (e->kind == SS_TXN_SYMLINK) {
        char target[SS_TXN_TARGET_MAX + 1];
        size_t n = 0;
        ss_rc rc = ss_fs_readlink(a->f->root_fd, e->path, target, sizeof target, &n, err);
        if (rc) return rc;
        *ret_same = n == e->size && !memcmp(target, e->target, n);
    } else if ((uint64_t)l->st.st_size == e->size) {
        uint8_t cid[SS_TXN_CONTENT_ID_BYTES];
        int fd = -1;
        ss_err why = {{0}};
        ss_rc rc = ss_fs_open(a->f->root_fd, e->path, O_RDONLY | O_NONBLOCK, &fd, &why);
        if (rc && errno == EACCES) return SS_OK; /* cannot tell: kept as a conflict copy */
        if (rc) {
            if (err) *err = why;
            return rc;
        }
        rc = eng_identify(a->f, fd, e->size, NULL, NULL, cid, NULL, err);
        close(fd);
        if (rc) return rc;
        *ret_same = !memcmp(cid, e->content_id, sizeof cid);
    }
    return SS_OK;
}

/* Keep the local version beside the incoming one (invariant 4). */
static ss_rc keep_as_conflict(eng_apply *a, const char *path, ss_err *err)
{
    char *name = NULL; /* owned */
    ss_rc rc = eng_conflict_name(a->f, path, &name, err);
    if (rc) goto done;
    rc = ss_fs_rename(a->f->root_fd, path, name, err);
    if (rc) goto done;
    if (eng_stats_conflict(a->stats, name)) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (a->f->hooks.warn) {
        char msg[8300];
        snprintf(msg, sizeof msg,
                 "conflict: %s changed here and on another device; "
                 "the local version is kept as %s",
                 path, name);
        a->f->hooks.warn(a->f->hooks.ctx, msg);
    }
done:
    free(name);
    return rc;
}

/*
 * The new version of e's file as an atomic write: its stage file (every
 * chunk verified, P1) adopted, or a temp to be made holding its inline
 * bytes (the batch writes it).
 */
static ss_rc new_version(eng_apply *a, const ss_txn_entry *e, ss_atomic **ret_at, ss_err *err)
{
    char name[32];
    ss_rc rc;
    if (e->storage != SS_TXN_CHUNKS) return ss_atomic_prepare(a->f->root_fd, e->path, ret_at, err);
    rc = ss_atomic_adopt(a->f->root_fd, e->path, eng_stage_dirfd(a->stage),
                         eng_stage_name(a->stage, a->cur, name, sizeof name), ret_at, err);
    if (rc) return rc;
    eng_stage_taken(a->stage, a->cur);
    return SS_OK;
}

/*
 * Record the path as applied: remote fields from e, local ones from what is
 * there now, but for the mode: the one this pull gives it (P6), so a
 * directory that gets its mode later, and one whose mode was kept as the
 * user changed it, compare as they should.
 */
static ss_rc record(eng_apply *a, const ss_txn_entry *e, const void *body, size_t body_len,
                    ss_err *err)
{
    ss_state_row row = eng_row_of(e, body, body_len);
    struct stat st;
    ss_rc rc = ss_fs_lstat(a->f->root_fd, e->path, &st, err);
    if (rc) return rc;
    eng_row_set_stat(&row, &st);
    if (e->kind != SS_TXN_SYMLINK) row.local_mode = eng_mode_applied(a->f, e->mode);
    if (a->f->hooks.verbose) a->f->hooks.verbose(a->f->hooks.ctx, "pull", e->path);
    if (!eng_is_chunked(e)) a->f->prog.files_done++; /* a chunked one was when its data landed */
    if (e->kind == SS_TXN_FILE && e->storage == SS_TXN_INLINE) a->f->prog.bytes_done += e->size;
    eng_progress(a->f);
    return ss_state_put(a->f->state, &row, err);
}

/* ss_atomic_stage's aside: the file changed while its new version was written (P4). */
static ss_rc aside(void *ctx, ss_err *err)
{
    eng_pending *p = ctx;
    return keep_as_conflict(p->a, p->path, err);
}

static void pending_clear(eng_pending *p)
{
    free(p->path);
    free(p->body);
    *p = (eng_pending){0};
}

/* The next slot of a->pend, holding what record() will need of e (its body: inline or refs). */
static ss_rc pend(eng_apply *a, const ss_txn_entry *e, eng_pending **ret_p, ss_err *err)
{
    eng_pending *p;
    const void *body = e->storage == SS_TXN_INLINE ? (const void *)e->inline_data : a->body.p;
    size_t body_len = e->storage == SS_TXN_INLINE ? e->size : a->body.len;
    *ret_p = NULL;
    if (!a->pend && !(a->pend = calloc(SS_FS_BATCH_FILES, sizeof *a->pend)))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    assert(a->n_pend < SS_FS_BATCH_FILES && a->n_pend == ss_fs_batch_count(a->batch));
    p = &a->pend[a->n_pend];
    p->a = a;
    p->e = *e;
    p->e.inline_data = NULL;
    p->e.target = NULL;
    p->path = strdup(e->path);
    p->body = malloc(body_len ? body_len : 1);
    if (!p->path || !p->body) {
        pending_clear(p);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (body_len) memcpy(p->body, body, body_len);
    p->body_len = body_len;
    p->e.path = p->path;
    a->n_pend++;
    *ret_p = p;
    return SS_OK;
}

/* Batch b, whose pending records are pend[0..*n): made durable, renamed, recorded; emptied. */
static ss_rc finish(eng_apply *a, ss_fs_batch *b, eng_pending *pend, size_t *n, ss_err *err)
{
    ss_rc rc = b ? ss_fs_batch_flush(b, err) : SS_OK; /* durable, then renamed */
    for (size_t i = 0; i < *n; i++) {
        eng_pending *p = &pend[i];
        if (!rc) { /* after a failure the rest are only cleared */
            a->stats->files++;
            rc = record(a, &p->e, p->body, p->body_len, err);
        }
        pending_clear(p);
    }
    *n = 0;
    return rc;
}

/* The oldest sealed batch finished (durable, renamed, recorded) and taken off the queue. */
static ss_rc finish_oldest(eng_apply *a, eng_sealed *ret, ss_err *err)
{
    ss_rc rc = finish(a, a->sealed[0].b, a->sealed[0].pend, &a->sealed[0].n, err);
    if (rc) return rc; /* left queued: removed with the apply (eng_apply_batch_free) */
    *ret = a->sealed[0];
    memmove(&a->sealed[0], &a->sealed[1], --a->n_sealed * sizeof a->sealed[0]);
    a->sealed[a->n_sealed] = (eng_sealed){0};
    return SS_OK;
}

ss_rc eng_apply_flush(eng_apply *a, ss_err *err)
{
    while (a->n_sealed) { /* staged first, oldest first */
        eng_sealed done;
        ss_rc rc = finish_oldest(a, &done, err);
        if (rc) return rc;
        ss_fs_batch_free(done.b);
        free(done.pend);
    }
    return finish(a, a->batch, a->pend, &a->n_pend, err);
}

/*
 * The batch is full: its syncfs starts and it joins the sealed ones; the
 * oldest of those is finished first when ENG_SEALED are waiting (its
 * syncfs has had a batch's walk to run), and its batch and records are
 * the next files' (else new ones).
 */
static ss_rc rotate(eng_apply *a, ss_err *err)
{
    eng_sealed reuse = {0};
    if (a->n_sealed == ENG_SEALED) {
        ss_rc rc = finish_oldest(a, &reuse, err);
        if (rc) return rc;
    }
    ss_fs_batch_sync_start(a->batch);
    a->sealed[a->n_sealed++] = (eng_sealed){.b = a->batch, .pend = a->pend, .n = a->n_pend};
    a->batch = reuse.b;
    a->pend = reuse.pend; /* NULL while none is reused: pend() allocates it */
    a->n_pend = 0;
    if (!a->batch) return ss_fs_batch_new(a->f->root_fd, &a->batch, err);
    return SS_OK;
}

static void batch_free(eng_pending **pend, size_t *n, ss_fs_batch **b)
{
    ss_fs_batch_free(*b); /* first: its writer stops, then the bodies it writes from go */
    *b = NULL;
    for (size_t i = 0; i < *n; i++)
        pending_clear(&(*pend)[i]);
    free(*pend);
    *pend = NULL;
    *n = 0;
}

void eng_apply_batch_free(eng_apply *a)
{
    for (size_t i = 0; i < a->n_sealed; i++)
        batch_free(&a->sealed[i].pend, &a->sealed[i].n, &a->sealed[i].b);
    a->n_sealed = 0;
    batch_free(&a->pend, &a->n_pend, &a->batch);
}

/*
 * l: what look() found at e->path, as it stands after clearing the way
 * (P4). The new version goes to a temp in the batch; eng_apply_flush
 * renames it and records it (P3).
 */
static ss_rc write_file(eng_apply *a, const ss_txn_entry *e, const local *l, ss_err *err)
{
    ss_fs_seen seen = {.present = l->state != L_ABSENT, .st = l->st, .aside = aside};
    eng_pending *p = NULL;
    ss_atomic *at = NULL;
    ss_rc rc;
    if (!a->batch) {
        rc = ss_fs_batch_new(a->f->root_fd, &a->batch, err);
        if (rc) return rc;
    }
    if (ss_fs_batch_full(a->batch)) {
        rc = rotate(a, err);
        if (rc) return rc;
    }
    if (e->storage == SS_TXN_CHUNKS) {
        rc = eng_txn_body(a->txn.r, &a->body, err); /* the refs record() keeps */
        if (rc) return rc;
    }
    if (ss_fs_batch_failed(a->batch)) { /* a temp could not be made: told before any more */
        rc = eng_apply_flush(a, err);
        if (rc) return rc;
    }
    rc = pend(a, e, &p, err); /* p->body: the inline bytes the batch writes */
    if (rc) return rc;
    rc = new_version(a, e, &at, err);
    if (rc) goto fail;
    seen.ctx = p;
    rc = ss_atomic_stage(at, a->batch, e->storage == SS_TXN_CHUNKS ? NULL : p->body, e->size,
                         eng_mode_applied(a->f, e->mode), e->mtime_s, e->mtime_ns, &seen, err);
    if (rc) goto fail; /* at is gone with its temp */
    return SS_OK;
fail: /* so is its slot */
    pending_clear(p);
    a->n_pend--;
    return rc;
}

/*
 * A directory this walk made (ss_fs_mkdir says so) was empty then: a file
 * written into it needs no look first (an lstat that says absent, and the
 * fstat of the parent that tells a missing name from a removed directory).
 * What appears there since is what could appear between a look and the
 * rename anyway: the rename looks (RENAME_NOREPLACE, fsio.c) and keeps it
 * as a conflict copy (P4). Only files: a symlink is renamed over what is
 * there. Kept as the chain of made directories above the walk's position,
 * so at most a path's depth of them.
 */
static int is_under(const char *path, const char *dir, size_t dir_len)
{
    return !strncmp(path, dir, dir_len) && path[dir_len] == '/';
}

static ss_rc made_push(eng_apply *a, const char *path, ss_err *err)
{
    char *copy = NULL;
    while (a->n_made && !is_under(path, a->made[a->n_made - 1], strlen(a->made[a->n_made - 1])))
        free(a->made[--a->n_made]);
    if (SS_ARRAY_GROW(a->made, a->n_made + 1, a->cap_made))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    copy = strdup(path);
    if (!copy) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->made[a->n_made++] = copy;
    return SS_OK;
}

/* path's parent is a directory this walk made (see made_push). */
static int in_made(const eng_apply *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    for (size_t i = a->n_made; slash && i-- > 0;)
        if (strlen(a->made[i]) == n && !memcmp(a->made[i], path, n)) return 1;
    return 0;
}

void eng_apply_made_clear(eng_apply *a)
{
    while (a->n_made)
        free(a->made[--a->n_made]);
}

static ss_rc write_entry(eng_apply *a, const ss_txn_entry *e, const local *l, ss_err *err)
{
    int made = 0;
    ss_rc rc;
    switch (e->kind) {
    case SS_TXN_FILE: return write_file(a, e, l, err);
    case SS_TXN_SYMLINK:
        rc = ss_fs_symlink(a->f->root_fd, e->path, e->target, e->mtime_s, e->mtime_ns, err);
        if (rc) return rc;
        a->stats->files++;
        return record(a, e, e->target, e->size, err);
    default: /* its mode once its contents are written (P6) */
        rc = ss_dirmodes_mkdir(a->dm, e->path, eng_mode_applied(a->f, e->mode), &made, err);
        if (rc) return rc;
        if (made) {
            rc = made_push(a, e->path, err);
            if (rc) return rc;
        }
        a->stats->files++;
        return record(a, e, NULL, 0, err);
    }
}

static ss_rc defer(eng_apply *a, const char *path, int del, ss_err *err)
{
    char *copy = NULL;
    if (SS_ARRAY_GROW(a->deferred, a->n_deferred + 1, a->cap_deferred))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    copy = strdup(path);
    if (!copy) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->deferred[a->n_deferred++] = (eng_deferral){.path = copy, .del = del};
    return SS_OK;
}

int eng_apply_is_deferred(const eng_apply *a, const char *path)
{
    size_t lo = 0, hi = a->n_deferred, len = strlen(path);
    while (lo < hi) { /* deferred paths were added in transaction order: sorted */
        size_t mid = (lo + hi) / 2;
        int c = ss_path_cmp(a->deferred[mid].path, strlen(a->deferred[mid].path), path, len);
        if (!c) return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/*
 * Remove what is in the way of a clean replacement or delete. A directory
 * that is not empty waits for the rest of the transaction (its children's
 * deletes come after it); if it still holds local files then, a delete
 * leaves it and a replacement keeps it as a conflict copy.
 */
static ss_rc clear_way(eng_apply *a, const char *path, const local *l, int for_delete,
                       int *ret_deferred, ss_err *err)
{
    ss_rc rc;
    *ret_deferred = 0;
    a->kept = 0;
    ss_fault_point("apply.before-remove");
    if (l->kind != SS_TXN_DIR) return ss_fs_remove(a->f->root_fd, path, err);
    rc = ss_fs_rmdir(a->f->root_fd, path, err); /* through its parent: never a symlink's target */
    if (rc != SS_ERR_EXISTS) return rc;
    if (!a->deferred_pass) {
        *ret_deferred = 1; /* its children's deletes come later in this transaction */
        return defer(a, path, for_delete, err);
    }
    a->kept = for_delete;
    return for_delete ? SS_OK : keep_as_conflict(a, path, err); /* it holds local files */
}

/*
 * The length of the first parent of path that is here but no directory, or
 * 0. eng_check_beneath refused a transaction when the state holds such a
 * parent, so this one is the user's: a directory replaced by a file or a
 * symlink since the last sync. Looked for only when look() failed.
 */
static size_t blocked_at(eng_apply *a, const char *path)
{
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        char *p = strndup(path, (size_t)(s - path));
        struct stat st;
        ss_rc r = p ? ss_fs_lstat(a->f->root_fd, p, &st, NULL) : SS_ERR_NOMEM;
        free(p);
        if (r) return 0;
        if (!S_ISDIR(st.st_mode)) return (size_t)(s - path);
    }
    return 0;
}

/*
 * The batch's renames are made before the walk moves on from a directory
 * whose mode it opened (P6: it gets its mode back then), and before anything
 * that could rename a directory holding a staged temp.
 */
static ss_rc settle(eng_apply *a, const char *path, int always, ss_err *err)
{
    if ((!a->n_pend && !a->n_sealed) || (!always && !ss_dirmodes_closes(a->dm, path))) return SS_OK;
    return eng_apply_flush(a, err);
}

/* look(), once path's parents are open to their owner (P6): either fails on a blocked parent. */
static ss_rc enter_and_look(eng_apply *a, const char *path, local *l, ss_err *err)
{
    ss_rc rc = ss_dirmodes_enter(a->dm, path, err);
    if (rc) return rc;
    return look(a, path, l, err);
}

/* Invariant 4 for a blocked parent: it is kept as a conflict copy, and its directory returns. */
static ss_rc look_unblocked(eng_apply *a, const char *path, local *l, ss_err *err)
{
    char *parent = NULL; /* owned */
    ss_rc rc = look(a, path, l, err);
    size_t n = rc == SS_ERR_IO ? blocked_at(a, path) : 0;
    if (!n) return rc;
    parent = strndup(path, n);
    if (!parent) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = settle(a, parent, 1, err); /* rare: the simplest order is none pending */
    if (rc) goto done;
    rc = ss_dirmodes_enter(a->dm, parent, err);
    if (rc) goto done;
    rc = keep_as_conflict(a, parent, err);
    if (rc) goto done;
    rc = look(a, path, l, err);
done:
    free(parent);
    return rc;
}

ss_rc eng_apply_upsert(eng_apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int same = 0, deferred = 0;
    ss_rc rc = settle(a, e->path, 0, err);
    if (rc) return rc;
    rc = ss_dirmodes_enter(a->dm, e->path, err);
    if (rc) return rc;
    if (e->kind == SS_TXN_FILE && in_made(a, e->path))
        memset(&l, 0, sizeof l); /* L_ABSENT: it was empty, the rename looks */
    else
        rc = look_unblocked(a, e->path, &l, err);
    if (rc) return rc;
    if (l.state == L_DIRTY) {
        rc = same_as_local(a, e, &l, &same, err);
        if (rc) return rc;
    }
    if (same && e->kind != SS_TXN_DIR) { /* already there: a re-run after a crash */
        if (e->storage != SS_TXN_CHUNKS)
            return record(a, e, e->kind == SS_TXN_FILE ? (const void *)e->inline_data : e->target,
                          e->size, err);
        rc = eng_txn_body(a->txn.r, &a->body, err);
        if (rc) return rc;
        return record(a, e, a->body.p, a->body.len, err);
    }
    if (e->kind == SS_TXN_DIR && l.kind == SS_TXN_DIR && l.state == L_DIRTY)
        return record(a, e, NULL, 0, err); /* keep a locally changed mode */
    if (l.state == L_DIRTY && !same) {
        rc = keep_as_conflict(a, e->path, err);
        if (rc) return rc;
        l.state = L_ABSENT; /* moved aside */
    } else if (l.state == L_CLEAN && l.kind != (int)e->kind) {
        rc = clear_way(a, e->path, &l, 0, &deferred, err);
        if (rc || deferred) return rc;
        l.state = L_ABSENT; /* removed, or kept as a conflict copy */
    }
    return write_entry(a, e, &l, err);
}

ss_rc eng_apply_delete(eng_apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int deferred = 0;
    ss_rc rc = settle(a, e->path, 0, err);
    if (rc) return rc;
    rc = enter_and_look(a, e->path, &l, err);
    if (rc == SS_ERR_IO && blocked_at(a, e->path)) { /* the user replaced a parent: gone here */
        rc = SS_OK;
        l.state = L_ABSENT;
    }
    if (rc) return rc;
    if (l.state == L_CLEAN || (l.state == L_DIRTY && l.kind == SS_TXN_DIR)) {
        rc = clear_way(a, e->path, &l, 1, &deferred, err);
        if (rc || deferred) return rc;
        if (!a->kept) a->stats->files++;
        if (!a->kept && a->f->hooks.verbose)
            a->f->hooks.verbose(a->f->hooks.ctx, "delete", e->path);
    }
    a->f->prog.files_done++;
    /* Modify beats delete: a dirty file stays, and without a row the next push sends it. */
    return ss_state_remove(a->f->state, e->path, err);
}

/*
 * Deletes of directories that were not empty when their turn came, deepest
 * first: in reverse path order a directory's subdirectories come before it.
 */
ss_rc eng_apply_deferred(eng_apply *a, ss_err *err)
{
    for (size_t i = a->n_deferred; i-- > 0;) {
        ss_txn_entry e = {.type = SS_TXN_DELETE,
                          .path = a->deferred[i].path,
                          .path_len = strlen(a->deferred[i].path)};
        ss_rc rc;
        if (!a->deferred[i].del) continue;
        rc = eng_apply_delete(a, &e, err);
        if (rc) return rc;
    }
    return SS_OK;
}
