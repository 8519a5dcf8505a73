/*
 * apply: apply a verified transaction to the folder and the state (pull's
 * P3-P6; txn_read.c fetches and checks it first, commands/pull.c lists the
 * log and drives both).
 *
 * Design notes. Invariants this file keeps (each asserted or tested):
 *   P1. Nothing of log/<seq> is applied before the whole object verified:
 *       eng_fetch_txn stages the plaintext in a temp file, ss_frame_end checks it
 *       ended at its final record, and eng_check_txn walks every op before
 *       apply_txn touches the folder. The same holds for the data: stage_data
 *       fetches and verifies every chunk of the transaction into a temp file
 *       first, so a truncated or altered pack changes nothing either (the
 *       stage costs disk, not memory; a re-run after a crash fetches again).
 *   P2. Transactions apply in sequence order without gaps; the first listed
 *       key must be the watermark's own (else the store was rolled back),
 *       unless gc removed it and a checkpoint at or after the watermark is
 *       there to re-base on (commands/pull.c: listing, batches, checkpoints).
 *   P3. A file is its old or its new content (fsio's temp + rename), and
 *       the state and watermark of seq commit in one SQLite transaction
 *       after every file of seq is in place: killed anywhere, the next pull
 *       re-applies seq, and files already in place are recognised by content
 *       id (no conflict copy of our own write).
 *   P4. A local change is never overwritten: a path changed since the last
 *       sync keeps its local version as a conflict copy; modify beats delete.
 *       A file is looked at again right before the new version is renamed
 *       over it (ss_fs_seen): an edit made while it was being written is
 *       kept the same way.
 *   P5. Only what a device may sign is applied: eng_check_txn checks the
 *       signature and device entries against the device table at seq - 1
 *       (devices.c), and the table after seq commits with its watermark, so
 *       a crash can never leave one ahead of the other.
 *   P6. Modes from the store are applied masked (eng_mode_applied), and the
 *       row records the masked mode as the local one, so it is no local
 *       change. A directory gets its mode after its contents, and one this
 *       transaction must write into is opened to its owner meanwhile
 *       (dirmodes.h): a directory pushed as 555 or 000 can be filled by a
 *       user who is not root, and a command killed meanwhile is healed.
 *
 *   state per store transaction:
 *     LISTED --eng_fetch_txn--> STAGED --eng_check_txn (ops, signer)--> VERIFIED
 *     VERIFIED --stage_data--> DATA STAGED
 *     DATA STAGED --apply_txn (per op: apply_upsert / apply_delete)--> APPLIED
 *     APPLIED --ss_state_commit (watermark = seq, chain, device table)--> COMMITTED
 *   any failure before COMMITTED: ss_state_rollback; the folder holds whole
 *   files only, and the next run starts again at STAGED for the same seq.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "dirmodes.h"
#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "fsio.h"
#include "path.h"
#include "seal.h"

/* --- applying one transaction (P3, P4) ----------------------------------------------- */

enum { L_ABSENT, L_CLEAN, L_DIRTY };

typedef struct deferral {
    char *path;
    int del; /* a delete; else a replacement of a directory */
} deferral;

typedef struct apply {
    ss_folder *f;
    ss_stats *stats;
    ss_txn_reader *r;
    ss_xfer *xfer;
    ss_dirmodes *dm; /* directory modes after contents; directories opened meanwhile (P6) */
    int deferred_pass;
    int kept;           /* clear_way left a directory holding local files */
    deferral *deferred; /* ops that wait until the rest of the transaction applied */
    size_t n_deferred, cap_deferred;
    /* Every chunked file's data, verified, back to back in transaction order (P1). */
    int stage_fd;
    uint64_t stage_off; /* where the current op's data starts in it */
    ss_state_body body; /* state body of the chunked file being applied */
    /* A checkpoint applied as a base (join, re-base after gc): per op, 1 when the state holds it.
     */
    int base;
    uint8_t *same;
    size_t n_ops;
} apply;

typedef struct local {
    int state, kind;
    struct stat st;
} local;

/* What the folder holds at path compared with the previous state. */
static ss_rc look(apply *a, const char *path, local *l, ss_err *err)
{
    ss_state_row row;
    const char *base;
    int dirfd, found, match = 0;
    ss_rc rc;
    memset(l, 0, sizeof *l);
    rc = ss_fs_parent(a->f->root_fd, path, 0, &dirfd, &base, err);
    if (rc == SS_ERR_NOT_FOUND) return SS_OK; /* L_ABSENT */
    if (rc) return rc;
    if (fstatat(dirfd, base, &l->st, AT_SYMLINK_NOFOLLOW)) {
        int e = errno;
        close(dirfd);
        if (e == ENOENT) return SS_OK;
        return ss_fail(err, SS_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    close(dirfd);
    l->kind = eng_kind_of(l->st.st_mode);
    if ((rc = ss_state_lookup(a->f->state, path, &row, &found, err)) ||
        (found && (rc = eng_local_matches(a->f, &row, path, &l->st, &match, err))))
        return rc;
    l->state = match ? L_CLEAN : L_DIRTY;
    return SS_OK;
}

/* A dirty local version that equals the incoming one is no conflict (a re-run after a crash). */
static ss_rc same_as_local(apply *a, const ss_txn_entry *e, const local *l, int *ret_same,
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
        uint8_t cid[32];
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
        *ret_same = !memcmp(cid, e->content_id, 32);
    }
    return SS_OK;
}

/* Keep the local version beside the incoming one (invariant 4). */
static ss_rc keep_as_conflict(apply *a, const char *path, ss_err *err)
{
    char *name = NULL;
    ss_rc rc = eng_conflict_name(a->f, path, &name, err);
    if (rc) return rc;
    rc = ss_fs_rename(a->f->root_fd, path, name, err);
    if (!rc && eng_stats_conflict(a->stats, name)) rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (!rc && a->f->hooks.warn) {
        char msg[8300];
        snprintf(msg, sizeof msg,
                 "conflict: %s changed here and on another device; "
                 "the local version is kept as %s",
                 path, name);
        a->f->hooks.warn(a->f->hooks.ctx, msg);
    }
    free(name);
    return rc;
}

/* Queue every chunk of the current entry for the stage at stage_off (stage_data waits). */
static ss_rc fetch_chunks(apply *a, eng_fetch *x, const ss_txn_entry *e, ss_err *err)
{
    const ss_txn_header *h = ss_txn_reader_header(a->r);
    eng_reuse *mine = NULL;
    uint64_t off = 0;
    ss_rc rc = eng_reuse_open(a->f, e->path, &mine, err);
    for (uint32_t i = 0; i < e->n_chunks && !rc; i++) {
        ss_chunk_ref ref;
        ss_chunk_loc loc;
        rc = ss_txn_next_chunk(a->r, &ref, err);
        if (rc) break;
        snprintf(loc.pack, sizeof loc.pack, "%s", h->pack_keys[ref.pack]);
        loc.off = ref.offset;
        loc.sealed_len = ref.sealed_len;
        loc.plain_len = ref.plain_len;
        if (!(rc = ss_state_chunk_add(a->f->state, ref.id, &loc, err)) &&
            !eng_reuse_chunk(mine, &ref, x->out_fd, a->stage_off + off))
            rc = eng_fetch_chunk(x, loc.pack, &ref, a->stage_off + off, err);
        off += ref.plain_len;
    }
    eng_reuse_free(mine);
    return rc;
}

static int is_chunked(const ss_txn_entry *e)
{
    return e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE && e->storage == SS_TXN_CHUNKS;
}

static ss_rc note_same(apply *a, const ss_txn_entry *e, ss_err *err);

/* P1 for the data: every chunked file of the transaction, fetched and verified into the stage. */
static ss_rc stage_data(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    const ss_txn_entry *e;
    eng_fetch x = {.f = a->f, .xfer = a->xfer, .out_fd = -1};
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err), wrc;
    a->stage_off = 0;
    while (!rc && !(rc = ss_txn_next(a->r, &e, err)) && e) {
        if (a->base && ((rc = note_same(a, e, err)) || a->same[a->n_ops - 1])) continue;
        if (!is_chunked(e)) continue;
        if (a->stage_fd < 0 && (rc = eng_tmpfile(a->f, &a->stage_fd, err))) break;
        x.out_fd = a->stage_fd;
        rc = fetch_chunks(a, &x, e, err);
        a->stage_off += e->size;
    }
    ss_txn_reader_free(a->r);
    a->r = NULL;
    wrc = eng_fetch_wait(&x,
                         rc ? NULL : err); /* all of it, even after a failure: buffers in flight */
    return rc ? rc : wrc;
}

/* The state body of the current chunked entry, from its chunk refs. */
static ss_rc read_body(apply *a, ss_err *err)
{
    ss_chunk_ref ref;
    ss_rc rc = SS_OK;
    a->body.len = 0;
    while (!rc && ss_txn_chunks_left(a->r) && !(rc = ss_txn_next_chunk(a->r, &ref, err)))
        if (ss_state_body_add(&a->body, ss_txn_reader_header(a->r)->pack_keys[ref.pack], &ref))
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
    return rc;
}

/* Copy the current entry's staged data into out. */
static ss_rc copy_staged(apply *a, const ss_txn_entry *e, int out, ss_err *err)
{
    uint8_t buf[65536];
    for (uint64_t done = 0; done < e->size;) {
        size_t want = e->size - done < sizeof buf ? (size_t)(e->size - done) : sizeof buf;
        ssize_t n = pread(a->stage_fd, buf, want, (off_t)(a->stage_off + done));
        if (n <= 0 || ss_fs_pwrite_all(out, buf, (size_t)n, (off_t)done))
            return ss_fail(err, SS_ERR_IO, "write %s: %s", e->path,
                           n == 0 ? "short stage" : strerror(errno));
        done += (uint64_t)n;
    }
    return SS_OK;
}

/*
 * Record the path as applied: remote fields from e, local ones from what is
 * there now, but for the mode: the one this pull gives it (P6), so a
 * directory that gets its mode later, and one whose mode was kept as the
 * user changed it, compare as they should.
 */
static ss_rc record(apply *a, const ss_txn_entry *e, const void *body, size_t body_len, ss_err *err)
{
    ss_state_row row = eng_row_of(e, body, body_len);
    struct stat st;
    const char *base;
    int dirfd;
    ss_rc rc = ss_fs_parent(a->f->root_fd, e->path, 0, &dirfd, &base, err);
    if (rc) return rc;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW)) {
        rc = ss_fail(err, SS_ERR_IO, "stat %s: %s", e->path, strerror(errno));
        close(dirfd);
        return rc;
    }
    close(dirfd);
    eng_row_set_stat(&row, &st);
    if (e->kind != SS_TXN_SYMLINK) row.local_mode = eng_mode_applied(a->f, e->mode);
    if (a->f->hooks.verbose) a->f->hooks.verbose(a->f->hooks.ctx, "pull", e->path);
    a->f->prog.files_done++;
    if (e->kind == SS_TXN_FILE && e->storage == SS_TXN_INLINE) a->f->prog.bytes_done += e->size;
    eng_progress(a->f);
    return ss_state_put(a->f->state, &row, err);
}

static ss_rc keep_as_conflict(apply *a, const char *path, ss_err *err);

typedef struct aside_ctx {
    apply *a;
    const char *path;
} aside_ctx;

/* ss_fs_seen's aside: the file changed while its new version was written (P4). */
static ss_rc aside(void *ctx, ss_err *err)
{
    aside_ctx *c = ctx;
    return keep_as_conflict(c->a, c->path, err);
}

/* l: what look() found at e->path, as it stands after clearing the way (P4). */
static ss_rc write_file(apply *a, const ss_txn_entry *e, const local *l, ss_err *err)
{
    aside_ctx ac = {a, e->path};
    ss_fs_seen seen = {.present = l->state != L_ABSENT, .st = l->st, .aside = aside, .ctx = &ac};
    ss_atomic *at = NULL;
    ss_rc rc = ss_atomic_begin(a->f->root_fd, e->path, &at, err);
    if (rc) return rc;
    if (e->storage == SS_TXN_INLINE) {
        if (e->size && ss_fs_pwrite_all(ss_atomic_fd(at), e->inline_data, e->size, 0))
            rc = ss_fail(err, SS_ERR_IO, "write %s: %s", e->path, strerror(errno));
    } else if (!(rc = read_body(a, err))) {
        rc = copy_staged(a, e, ss_atomic_fd(at), err);
    }
    if (rc) {
        ss_atomic_abort(at);
        return rc;
    }
    rc = ss_atomic_commit(at, eng_mode_applied(a->f, e->mode), e->mtime_s, e->mtime_ns, &seen, err);
    if (rc) return rc;
    a->stats->files++;
    return e->storage == SS_TXN_INLINE ? record(a, e, e->inline_data, e->size, err)
                                       : record(a, e, a->body.p, a->body.len, err);
}

static ss_rc write_entry(apply *a, const ss_txn_entry *e, const local *l, ss_err *err)
{
    ss_rc rc;
    switch (e->kind) {
    case SS_TXN_FILE: return write_file(a, e, l, err);
    case SS_TXN_SYMLINK:
        rc = ss_fs_symlink(a->f->root_fd, e->path, e->target, e->mtime_s, e->mtime_ns, err);
        if (!rc) a->stats->files++;
        return rc ? rc : record(a, e, e->target, e->size, err);
    default: /* its mode once its contents are written (P6) */
        rc = ss_dirmodes_mkdir(a->dm, e->path, eng_mode_applied(a->f, e->mode), err);
        if (!rc) a->stats->files++;
        return rc ? rc : record(a, e, NULL, 0, err);
    }
}

static ss_rc defer(apply *a, const char *path, int del, ss_err *err)
{
    if (SS_ARRAY_GROW(a->deferred, a->n_deferred + 1, a->cap_deferred))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->deferred[a->n_deferred].del = del;
    if (!(a->deferred[a->n_deferred].path = strdup(path)))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->n_deferred++;
    return SS_OK;
}

static int is_deferred(const apply *a, const char *path)
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
static ss_rc clear_way(apply *a, const char *path, const local *l, int for_delete,
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
static size_t blocked_at(apply *a, const char *path)
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

/* Invariant 4 for a blocked parent: it is kept as a conflict copy, and its directory returns. */
static ss_rc look_unblocked(apply *a, const char *path, local *l, ss_err *err)
{
    ss_rc rc = look(a, path, l, err);
    size_t n = rc == SS_ERR_IO ? blocked_at(a, path) : 0;
    char *parent = n ? strndup(path, n) : NULL;
    if (!n) return rc;
    if (!parent) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_dirmodes_enter(a->dm, parent, err);
    if (!rc) rc = keep_as_conflict(a, parent, err);
    free(parent);
    return rc ? rc : look(a, path, l, err);
}

static ss_rc apply_upsert(apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int same = 0, deferred = 0;
    ss_rc rc = ss_dirmodes_enter(a->dm, e->path, err);
    if (!rc) rc = look_unblocked(a, e->path, &l, err);
    if (rc) return rc;
    if (l.state == L_DIRTY && (rc = same_as_local(a, e, &l, &same, err))) return rc;
    if (same && e->kind != SS_TXN_DIR) { /* already there: a re-run after a crash */
        if (e->storage == SS_TXN_CHUNKS)
            return (rc = read_body(a, err)) ? rc : record(a, e, a->body.p, a->body.len, err);
        return record(a, e, e->kind == SS_TXN_FILE ? (const void *)e->inline_data : e->target,
                      e->size, err);
    }
    if (e->kind == SS_TXN_DIR && l.kind == SS_TXN_DIR && l.state == L_DIRTY)
        return record(a, e, NULL, 0, err); /* keep a locally changed mode */
    if (l.state == L_DIRTY && !same) {
        rc = keep_as_conflict(a, e->path, err);
        if (rc) return rc;
        l.state = L_ABSENT; /* moved aside */
    } else if (l.state == L_CLEAN && l.kind != (int)e->kind) {
        if ((rc = clear_way(a, e->path, &l, 0, &deferred, err)) || deferred) return rc;
        l.state = L_ABSENT; /* removed, or kept as a conflict copy */
    }
    return write_entry(a, e, &l, err);
}

static ss_rc apply_delete(apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int deferred = 0;
    ss_rc rc = ss_dirmodes_enter(a->dm, e->path, err);
    if (!rc) rc = look(a, e->path, &l, err);
    if (rc == SS_ERR_IO && blocked_at(a, e->path)) { /* the user replaced a parent: gone here */
        rc = SS_OK;
        l.state = L_ABSENT;
    }
    if (rc) return rc;
    if (l.state == L_CLEAN || (l.state == L_DIRTY && l.kind == SS_TXN_DIR)) {
        if ((rc = clear_way(a, e->path, &l, 1, &deferred, err)) || deferred) return rc;
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
static ss_rc delete_deferred(apply *a, ss_err *err)
{
    ss_rc rc = SS_OK;
    for (size_t i = a->n_deferred; i-- > 0 && !rc;) {
        ss_txn_entry e = {.type = SS_TXN_DELETE,
                          .path = a->deferred[i].path,
                          .path_len = strlen(a->deferred[i].path)};
        if (a->deferred[i].del) rc = apply_delete(a, &e, err);
    }
    return rc;
}

/* --- a checkpoint as a base: join, or re-base after gc (FORMAT.md "Reading") ---------- */

/* Record whether the state already holds op e exactly (same kind, mode and content). */
static ss_rc note_same(apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row;
    int found = 0, same = 0;
    uint8_t *nv = realloc(a->same, a->n_ops + 1);
    ss_rc rc;
    if (!nv) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->same = nv;
    rc = ss_state_lookup(a->f->state, e->path, &row, &found, err);
    if (rc) return rc;
    if (found && row.kind == (int)e->kind && row.mode == e->mode) {
        if (e->kind == SS_TXN_FILE)
            same = !memcmp(row.content_id, e->content_id, 32);
        else if (e->kind == SS_TXN_SYMLINK)
            same = row.body_len == e->size && !memcmp(row.body, e->target, e->size);
        else
            same = 1;
    }
    a->same[a->n_ops++] = (uint8_t)same;
    return SS_OK;
}

/*
 * A path the state holds as the checkpoint does: its chunk refs become the
 * checkpoint's (gc may have deleted the packs the old refs named, if another
 * device uploaded the same content elsewhere); its local columns stay.
 */
static ss_rc rebase_row(apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row;
    int found = 0;
    ss_rc rc;
    if (!is_chunked(e)) return SS_OK;
    rc = read_body(a, err);
    if (rc) return rc;
    rc = ss_state_lookup(a->f->state, e->path, &row, &found, err);
    if (rc) return rc;
    if (!found) return SS_OK;
    row.body = a->body.p;
    row.body_len = a->body.len;
    row.storage = SS_TXN_CHUNKS;
    return ss_state_put(a->f->state, &row, err);
}

/* Paths the state holds and the checkpoint does not: deleted, as a delete op would (P4). */
static ss_rc delete_missing(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    ss_state_iter *it = NULL; /* owned: a snapshot from before this apply */
    const ss_state_row *row = NULL;
    const ss_txn_entry *e = NULL;
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err);
    if (!rc) rc = ss_state_iter_new(a->f->state, &it, err);
    if (!rc) rc = ss_state_iter_next(it, &row, err);
    if (!rc) rc = ss_txn_next(a->r, &e, err);
    while (!rc && row) {
        int c = !e ? -1 : ss_path_cmp(row->path, strlen(row->path), e->path, e->path_len);
        if (c < 0) {
            ss_txn_entry d = {
                .type = SS_TXN_DELETE, .path = row->path, .path_len = strlen(row->path)};
            if (!(rc = apply_delete(a, &d, err))) rc = ss_state_iter_next(it, &row, err);
        } else {
            if (!c) rc = ss_state_iter_next(it, &row, err);
            if (!rc) rc = ss_txn_next(a->r, &e, err);
        }
    }
    ss_state_iter_free(it);
    ss_txn_reader_free(a->r);
    a->r = NULL;
    return rc;
}

static ss_rc walk_ops(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err);
    uint64_t next_off = 0;
    for (size_t i = 0; !rc && !(rc = ss_txn_next(a->r, &e, err)) && e; i++) {
        if (a->base && a->same[i]) { /* the folder is left alone; the row takes its chunk refs */
            if (!a->deferred_pass) rc = rebase_row(a, e, err);
            continue;
        }
        a->stage_off = next_off; /* the entry's data in the stage, if it has chunks */
        next_off += is_chunked(e) ? e->size : 0;
        if (a->deferred_pass && (e->type == SS_TXN_DELETE || !is_deferred(a, e->path))) continue;
        rc = e->type == SS_TXN_DELETE ? apply_delete(a, e, err) : apply_upsert(a, e, err);
        ss_fault_point("pull.op");
    }
    ss_txn_reader_free(a->r);
    a->r = NULL;
    return rc;
}

/*
 * Our own transaction, put by a push that could not record it (P4): the
 * folder already holds it or newer edits, so only the state takes its ops.
 * Rows get no local stat, so the next push reads those paths again and
 * sends whatever changed since as the next transaction.
 */
static ss_rc adopt_entry(apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row = eng_row_of(e, NULL, 0);
    ss_rc rc;
    if (e->type == SS_TXN_DELETE) return ss_state_remove(a->f->state, e->path, err);
    if (is_chunked(e)) {
        const char *pack;
        size_t pos = 0, pack_len;
        ss_chunk_ref ref;
        rc = read_body(a, err);
        if (rc) return rc;
        row.body = a->body.p;
        row.body_len = a->body.len;
        while (!rc && ss_state_body_next(a->body.p, a->body.len, &pos, &pack, &pack_len, &ref)) {
            ss_chunk_loc loc = {
                .off = ref.offset, .sealed_len = ref.sealed_len, .plain_len = ref.plain_len};
            snprintf(loc.pack, sizeof loc.pack, "%.*s", (int)pack_len, pack);
            rc = ss_state_chunk_add(a->f->state, ref.id, &loc, err); /* ours: reuse them */
        }
        if (rc) return rc;
    } else if (e->kind == SS_TXN_FILE) {
        row.body = e->inline_data;
        row.body_len = e->size;
    } else if (e->kind == SS_TXN_SYMLINK) {
        row.body = e->target;
        row.body_len = e->size;
    }
    return ss_state_put(a->f->state, &row, err);
}

static ss_rc adopt_txn(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err);
    while (!rc && !(rc = ss_txn_next(a->r, &e, err)) && e)
        rc = adopt_entry(a, e, err);
    ss_txn_reader_free(a->r);
    a->r = NULL;
    return rc;
}

ss_rc eng_apply_txn(ss_folder *f, ss_stats *stats, int fd, uint64_t seq, const uint8_t chain[32],
                    int base, const ss_devices *devices, const ss_state_applied *obj, ss_err *err)
{
    apply a = {.f = f, .stats = stats, .stage_fd = -1, .base = base};
    ss_devices *kept = NULL; /* owned: f->devices once committed */
    int ours = !base && eng_inflight_is(f, seq, chain);
    ss_rc rc;
    rc = ss_xfer_new(f->store, &a.xfer, err);
    if (rc) goto out;
    rc = eng_dirmodes_new(f, &a.dm, err);
    if (rc) goto out;
    rc = ss_state_begin(f->state, err);
    if (rc) goto out;
    if (ours) {
        rc = adopt_txn(&a, fd, seq, err);
    } else {
        rc = stage_data(&a, fd, seq, err);
        if (!rc) rc = walk_ops(&a, fd, seq, err);
        if (!rc && base) rc = delete_missing(&a, fd, seq, err);
    }
    if (!rc && a.n_deferred) {
        a.deferred_pass = 1;
        rc = delete_deferred(&a, err);
        if (!rc) rc = walk_ops(&a, fd, seq, err);
    }
    if (!rc) rc = ss_dirmodes_finish(a.dm, err); /* P6: every directory its mode */
    if (!rc)
        rc = ss_fs_sync(f->root_fd, err); /* P3: the files are durable before the state says so */
    if (!rc) rc = ss_state_set_watermark(f->state, seq, chain, err);
    if (!rc && obj) rc = ss_state_set_applied(f->state, obj, err); /* for the fork check */
    if (!rc) rc = ss_state_devices_save(f->state, devices, err);   /* moves with the watermark */
    if (!rc) rc = ss_devices_copy(devices, &kept, err);
    ss_fault_point("pull.before-commit");
    if (!rc) rc = ss_state_commit(f->state, err);
    if (rc) ss_state_rollback(f->state);
    if (!rc) {
        ss_devices_free(f->devices);
        f->devices = kept;
        kept = NULL;
    }
    if (!rc && ours) eng_inflight_clear(f);
out:
    for (size_t i = 0; i < a.n_deferred; i++)
        free(a.deferred[i].path);
    free(a.deferred);
    free(a.same);
    if (a.stage_fd >= 0) close(a.stage_fd);
    ss_devices_free(kept);
    ss_state_body_free(&a.body);
    ss_dirmodes_free(a.dm); /* after a failure too: no directory stays open */
    ss_xfer_free(a.xfer);
    return rc;
}
