/*
 * pull: apply every transaction after the watermark, in order.
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
 *       key must be the watermark's own (else the store was rolled back).
 *   P3. A file is its old or its new content (fsio's temp + rename), and
 *       the state and watermark of seq commit in one SQLite transaction
 *       after every file of seq is in place: killed anywhere, the next pull
 *       re-applies seq, and files already in place are recognised by content
 *       id (no conflict copy of our own write).
 *   P4. A local change is never overwritten: a path changed since the last
 *       sync keeps its local version as a conflict copy; modify beats delete.
 *
 *   state per store transaction:
 *     LISTED --eng_fetch_txn--> STAGED --eng_check_txn--> VERIFIED --stage_data--> DATA STAGED
 *     DATA STAGED --apply_txn (per op: apply_upsert / apply_delete)--> APPLIED
 *     APPLIED --ss_state_commit (watermark = seq, chain)--> COMMITTED
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

#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "fsio.h"
#include "path.h"
#include "seal.h"

#define MAX_TXN_PLAIN (1ull << 36) /* a transaction's plaintext beyond this is refused */

void eng_log_list_free(eng_log_list *l)
{
    free(l->seqs);
    free(l->sizes);
    memset(l, 0, sizeof *l);
}

static int collect_log(void *ctx, const char *key, const ss_store_stat *st)
{
    eng_log_list *l = ctx;
    const char *d = key + strlen(SS_KEY_LOG_PREFIX);
    char *end = NULL;
    uint64_t seq;
    seq = strtoull(d, &end, 10);
    if (strlen(d) != SS_SEQ_DIGITS || *end || !seq) {
        l->bad = 1;
        snprintf(l->bad_key, sizeof l->bad_key, "%s", key);
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint64_t *nv = realloc(l->seqs, cap * sizeof *nv);
        uint64_t *ns = nv ? realloc(l->sizes, cap * sizeof *ns) : NULL;
        if (nv) l->seqs = nv;
        if (!ns) {
            l->bad = 2;
            return 1;
        }
        l->sizes = ns;
        l->cap = cap;
    }
    l->sizes[l->n] = st ? st->size : 0;
    l->seqs[l->n++] = seq;
    return 0;
}

/* Sequences after the watermark; checks P2 on what the store lists. */
ss_rc eng_list_log(ss_folder *f, uint64_t wm, eng_log_list *l, ss_err *err)
{
    char after[SS_KEY_NAME_MAX] = "";
    size_t first = 0;
    ss_rc rc;
    if (wm) snprintf(after, sizeof after, SS_KEY_LOG_FMT, wm - 1);
    rc = ss_store_list(f->store, SS_KEY_LOG_PREFIX, after, collect_log, l, err);
    if (rc) return rc;
    if (l->bad == 2) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (l->bad) return ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s in the log", l->bad_key);
    if (wm) {
        if (!l->n || l->seqs[0] != wm)
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "the store no longer holds log/%020" PRIu64 ", which this device "
                           "applied: it was rolled back or tampered with",
                           wm);
        first = 1;
    }
    for (size_t i = first; i < l->n; i++)
        if (l->seqs[i] != wm + 1 + (i - first))
            return ss_fail(err, SS_ERR_INTEGRITY,
                           "log/%020" PRIu64 " is missing: the sequence has a gap before %020" PRIu64,
                           wm + 1 + (i - first), l->seqs[i]);
    if (first) { /* seqs is NULL when the list is empty */
        memmove(l->seqs, l->seqs + first, (l->n - first) * sizeof *l->seqs);
        memmove(l->sizes, l->sizes + first, (l->n - first) * sizeof *l->sizes);
    }
    l->n -= first;
    return SS_OK;
}

/* --- fetch and verify one transaction (P1) -------------------------------------------- */

typedef struct feed {
    ss_frame_reader *r;
    ss_err err;
    ss_rc rc;
} feed;

static int feed_frame(void *ctx, const void *buf, size_t len)
{
    feed *fd = ctx;
    fd->rc = ss_frame_feed(fd->r, buf, len, &fd->err);
    return fd->rc ? -1 : 0;
}

static int stage_write(void *ctx, const void *buf, size_t len)
{
    int fd = *(int *)ctx;
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ss_rc eng_fetch_txn(ss_folder *f, uint64_t seq, const uint8_t prev[32], const void *obj,
                    size_t obj_len, int *ret_fd, uint8_t chain[32], ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t hash[32];
    feed fd = {0};
    int stage = -1;
    ss_rc rc;
    *ret_fd = -1;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    if ((rc = eng_tmpfile(f, &stage, err)) ||
        (rc = ss_frame_reader_new(ss_repo_keys(f->repo), SS_FRAME_KIND_LOG, key, seq, prev,
                                  MAX_TXN_PLAIN, stage_write, &stage, &fd.r, err)))
        goto fail;
    if (obj) /* fetched already (history.c fetches several at once) */
        rc = ss_frame_feed(fd.r, obj, obj_len, err);
    else
        rc = ss_store_get_stream(f->store, key, 0, SS_TO_END, feed_frame, &fd, err);
    if (fd.rc) {
        rc = fd.rc;
        if (err) *err = fd.err;
    }
    if (!rc) rc = ss_frame_end(fd.r, hash, err);
    if (rc) goto fail;
    ss_frame_reader_free(fd.r);
    ss_chain_next(ss_repo_keys(f->repo), prev, hash, chain);
    *ret_fd = stage;
    return SS_OK;
fail:
    ss_frame_reader_free(fd.r);
    if (stage >= 0) close(stage);
    return rc;
}

/* A reader of the staged plaintext. */
static long staged_read(void *ctx, void *buf, size_t len)
{
    eng_staged *s = ctx;
    ssize_t n = pread(s->fd, buf, len, (off_t)s->pos);
    if (n < 0) return -1;
    s->pos += (uint64_t)n;
    return (long)n;
}

ss_rc eng_open_txn(ss_folder *f, eng_staged *src, ss_store_reader *rd, uint64_t seq,
                   ss_txn_reader **ret, ss_err *err)
{
    ss_rc rc;
    src->pos = 0;
    *rd = (ss_store_reader){staged_read, NULL, src};
    rc = ss_txn_reader_new(&f->limits, rd, ret, err);
    if (!rc && ss_txn_reader_header(*ret)->seq != seq) {
        uint64_t claimed = ss_txn_reader_header(*ret)->seq;
        ss_txn_reader_free(*ret);
        *ret = NULL;
        rc = ss_fail(err, SS_ERR_INTEGRITY, "log/%020" PRIu64 " claims sequence %" PRIu64, seq,
                     claimed);
    }
    return rc;
}

/* Walk every op and chunk once: a malformed op anywhere refuses the whole transaction. */
ss_rc eng_check_txn(ss_folder *f, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    ss_txn_reader *r = NULL;
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(f, &src, &rd, seq, &r, err);
    while (!rc && !(rc = ss_txn_next(r, &e, err)) && e) {
        ss_chunk_ref ref;
        while (!rc && ss_txn_chunks_left(r)) rc = ss_txn_next_chunk(r, &ref, err);
    }
    ss_txn_reader_free(r);
    if (rc && rc != SS_ERR_NOMEM && rc != SS_ERR_IO) rc = SS_ERR_INTEGRITY;
    return rc;
}

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
    int deferred_pass;
    int kept;           /* clear_way left a directory holding local files */
    deferral *deferred; /* ops that wait until the rest of the transaction applied */
    size_t n_deferred;
    /* Every chunked file's data, verified, back to back in transaction order (P1). */
    int stage_fd;
    uint64_t stage_off; /* where the current op's data starts in it */
    eng_body body; /* state body of the chunked file being applied */
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
        char target[4097];
        ssize_t n = readlinkat(a->f->root_fd, e->path, target, sizeof target);
        *ret_same = n == (ssize_t)e->size && !memcmp(target, e->target, (size_t)n);
    } else if ((uint64_t)l->st.st_size == e->size) {
        uint8_t cid[32];
        int fd = openat(a->f->root_fd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ss_rc rc;
        if (fd < 0) return ss_fail(err, SS_ERR_IO, "read %s: %s", e->path, strerror(errno));
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
        snprintf(msg, sizeof msg, "conflict: %s changed here and on another device; "
                 "the local version is kept as %s", path, name);
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
        if ((rc = ss_txn_next_chunk(a->r, &ref, err))) break;
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
        if (!is_chunked(e)) continue;
        if (a->stage_fd < 0 && (rc = eng_tmpfile(a->f, &a->stage_fd, err))) break;
        x.out_fd = a->stage_fd;
        rc = fetch_chunks(a, &x, e, err);
        a->stage_off += e->size;
    }
    ss_txn_reader_free(a->r);
    a->r = NULL;
    wrc = eng_fetch_wait(&x, rc ? NULL : err); /* all of it, even after a failure: buffers in flight */
    return rc ? rc : wrc;
}

/* The state body of the current chunked entry, from its chunk refs. */
static ss_rc read_body(apply *a, ss_err *err)
{
    ss_chunk_ref ref;
    ss_rc rc = SS_OK;
    a->body.len = 0;
    while (!rc && ss_txn_chunks_left(a->r) && !(rc = ss_txn_next_chunk(a->r, &ref, err)))
        if (eng_body_add(&a->body, ss_txn_reader_header(a->r)->pack_keys[ref.pack], &ref))
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
        if (n <= 0 || pwrite(out, buf, (size_t)n, (off_t)done) != n)
            return ss_fail(err, SS_ERR_IO, "write %s: %s", e->path,
                           n == 0 ? "short stage" : strerror(errno));
        done += (uint64_t)n;
    }
    return SS_OK;
}

/* Record the path as applied: remote fields from e, local ones from what is there now. */
static ss_rc record(apply *a, const ss_txn_entry *e, const void *body, size_t body_len, ss_err *err)
{
    ss_state_row row = {.path = e->path, .kind = (int)e->kind, .mode = e->mode, .size = e->size,
                        .mtime_s = e->mtime_s, .mtime_ns = e->mtime_ns, .body = body,
                        .body_len = body_len, .storage = (int)e->storage};
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
    memcpy(row.content_id, e->content_id, 32);
    eng_row_set_stat(&row, &st);
    if (a->f->hooks.verbose) a->f->hooks.verbose(a->f->hooks.ctx, "pull", e->path);
    return ss_state_put(a->f->state, &row, err);
}

static ss_rc write_file(apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_atomic *at = NULL;
    ss_rc rc = ss_atomic_begin(a->f->root_fd, e->path, &at, err);
    if (rc) return rc;
    if (e->storage == SS_TXN_INLINE) {
        if (e->size && pwrite(ss_atomic_fd(at), e->inline_data, e->size, 0) != (ssize_t)e->size)
            rc = ss_fail(err, SS_ERR_IO, "write %s: %s", e->path, strerror(errno));
    } else if (!(rc = read_body(a, err))) {
        rc = copy_staged(a, e, ss_atomic_fd(at), err);
    }
    if (rc) {
        ss_atomic_abort(at);
        return rc;
    }
    rc = ss_atomic_commit(at, e->mode, e->mtime_s, e->mtime_ns, err);
    if (rc) return rc;
    a->stats->files++;
    return e->storage == SS_TXN_INLINE ? record(a, e, e->inline_data, e->size, err)
                                       : record(a, e, a->body.p, a->body.len, err);
}

static ss_rc write_entry(apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_rc rc;
    switch (e->kind) {
    case SS_TXN_FILE: return write_file(a, e, err);
    case SS_TXN_SYMLINK:
        rc = ss_fs_symlink(a->f->root_fd, e->path, e->target, err);
        if (!rc) a->stats->files++;
        return rc ? rc : record(a, e, e->target, e->size, err);
    default:
        rc = ss_fs_mkdir(a->f->root_fd, e->path, e->mode, err);
        if (!rc) a->stats->files++;
        return rc ? rc : record(a, e, NULL, 0, err);
    }
}

static ss_rc defer(apply *a, const char *path, int del, ss_err *err)
{
    deferral *nv = realloc(a->deferred, (a->n_deferred + 1) * sizeof *nv);
    if (!nv) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    a->deferred = nv;
    nv[a->n_deferred].del = del;
    if (!(nv[a->n_deferred].path = strdup(path)))
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
        if (c < 0) lo = mid + 1;
        else hi = mid;
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
    *ret_deferred = 0;
    a->kept = 0;
    if (l->kind != SS_TXN_DIR) return ss_fs_remove(a->f->root_fd, path, err);
    if (!unlinkat(a->f->root_fd, path, AT_REMOVEDIR)) return SS_OK;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return ss_fail(err, SS_ERR_IO, "remove directory %s: %s", path, strerror(errno));
    if (!a->deferred_pass) {
        *ret_deferred = 1; /* its children's deletes come later in this transaction */
        return defer(a, path, for_delete, err);
    }
    a->kept = for_delete;
    return for_delete ? SS_OK : keep_as_conflict(a, path, err); /* it holds local files */
}

static ss_rc apply_upsert(apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int same = 0, deferred = 0;
    ss_rc rc = look(a, e->path, &l, err);
    if (rc) return rc;
    if (l.state == L_DIRTY && (rc = same_as_local(a, e, &l, &same, err))) return rc;
    if (same && e->kind != SS_TXN_DIR) { /* already there: a re-run after a crash */
        if (e->storage == SS_TXN_CHUNKS)
            return (rc = read_body(a, err)) ? rc : record(a, e, a->body.p, a->body.len, err);
        return record(a, e, e->kind == SS_TXN_FILE ? (const void *)e->inline_data : e->target,
                      e->size, err);
    }
    if (l.state == L_DIRTY && !same) {
        if (l.kind == SS_TXN_DIR && e->kind == SS_TXN_DIR) {
            /* both sides have the directory: nothing to keep apart */
        } else if ((rc = keep_as_conflict(a, e->path, err))) {
            return rc;
        }
    } else if (l.state == L_CLEAN && l.kind != (int)e->kind) {
        if ((rc = clear_way(a, e->path, &l, 0, &deferred, err)) || deferred) return rc;
    }
    if (e->kind == SS_TXN_DIR && l.kind == SS_TXN_DIR && l.state == L_DIRTY)
        return record(a, e, NULL, 0, err); /* keep a locally changed mode */
    return write_entry(a, e, err);
}

static ss_rc apply_delete(apply *a, const ss_txn_entry *e, ss_err *err)
{
    local l;
    int deferred = 0;
    ss_rc rc = look(a, e->path, &l, err);
    if (rc) return rc;
    if (l.state == L_CLEAN || (l.state == L_DIRTY && l.kind == SS_TXN_DIR)) {
        if ((rc = clear_way(a, e->path, &l, 1, &deferred, err)) || deferred) return rc;
        if (!a->kept) a->stats->files++;
        if (!a->kept && a->f->hooks.verbose) a->f->hooks.verbose(a->f->hooks.ctx, "delete", e->path);
    }
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
        ss_txn_entry e = {.type = SS_TXN_DELETE, .path = a->deferred[i].path,
                          .path_len = strlen(a->deferred[i].path)};
        if (a->deferred[i].del) rc = apply_delete(a, &e, err);
    }
    return rc;
}

static ss_rc walk_ops(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err);
    uint64_t next_off = 0;
    while (!rc && !(rc = ss_txn_next(a->r, &e, err)) && e) {
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
    ss_state_row row = {.path = e->path, .kind = (int)e->kind, .mode = e->mode, .size = e->size,
                        .mtime_s = e->mtime_s, .mtime_ns = e->mtime_ns, .ctime_s = -1,
                        .storage = (int)e->storage};
    ss_rc rc;
    if (e->type == SS_TXN_DELETE) return ss_state_remove(a->f->state, e->path, err);
    if (is_chunked(e)) {
        const char *pack;
        size_t pos = 0, pack_len;
        ss_chunk_ref ref;
        if ((rc = read_body(a, err))) return rc;
        row.body = a->body.p;
        row.body_len = a->body.len;
        while (!rc && eng_body_next(a->body.p, a->body.len, &pos, &pack, &pack_len, &ref)) {
            ss_chunk_loc loc = {.off = ref.offset, .sealed_len = ref.sealed_len,
                                .plain_len = ref.plain_len};
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
    memcpy(row.content_id, e->content_id, 32);
    return ss_state_put(a->f->state, &row, err);
}

static ss_rc adopt_txn(apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(a->f, &src, &rd, seq, &a->r, err);
    while (!rc && !(rc = ss_txn_next(a->r, &e, err)) && e) rc = adopt_entry(a, e, err);
    ss_txn_reader_free(a->r);
    a->r = NULL;
    return rc;
}

static ss_rc apply_txn(ss_folder *f, ss_stats *stats, int fd, uint64_t seq,
                       const uint8_t chain[32], ss_err *err)
{
    apply a = {.f = f, .stats = stats, .stage_fd = -1};
    int ours = eng_inflight_is(f, seq, chain);
    ss_rc rc;
    if ((rc = ss_xfer_new(f->store, &a.xfer, err)) || (rc = ss_state_begin(f->state, err)))
        goto out;
    if (ours) {
        rc = adopt_txn(&a, fd, seq, err);
    } else {
        rc = stage_data(&a, fd, seq, err);
        if (!rc) rc = walk_ops(&a, fd, seq, err);
    }
    if (!rc && a.n_deferred) {
        a.deferred_pass = 1;
        rc = delete_deferred(&a, err);
        if (!rc) rc = walk_ops(&a, fd, seq, err);
    }
    if (!rc) rc = ss_fs_sync(f->root_fd, err); /* P3: the files are durable before the state says so */
    if (!rc) rc = ss_state_set_watermark(f->state, seq, chain, err);
    ss_fault_point("pull.before-commit");
    if (!rc) rc = ss_state_commit(f->state, err);
    if (rc) ss_state_rollback(f->state);
    if (!rc && ours) eng_inflight_clear(f);
out:
    for (size_t i = 0; i < a.n_deferred; i++) free(a.deferred[i].path);
    free(a.deferred);
    if (a.stage_fd >= 0) close(a.stage_fd);
    eng_body_free(&a.body);
    ss_xfer_free(a.xfer);
    return rc;
}

ss_rc ss_pull(ss_folder *f, ss_stats *stats, ss_err *err)
{
    eng_log_list l = {0};
    uint8_t chain[32], next[32];
    uint64_t wm;
    ss_rc rc;
    if ((rc = ss_state_watermark(f->state, &wm, chain, err)) || (rc = eng_list_log(f, wm, &l, err)))
        goto out;
    for (size_t i = 0; i < l.n && !rc; i++) {
        int fd = -1;
        assert(l.seqs[i] == wm + 1); /* P2 */
        if (!(rc = eng_fetch_txn(f, l.seqs[i], chain, NULL, 0, &fd, next, err)) &&
            !(rc = eng_check_txn(f, fd, l.seqs[i], err)) &&
            !(rc = apply_txn(f, stats, fd, l.seqs[i], next, err))) {
            wm = l.seqs[i];
            memcpy(chain, next, 32);
        }
        if (fd >= 0) close(fd);
    }
    stats->seq = wm;
out:
    eng_log_list_free(&l);
    stats->requests = ss_store_counts(f->store)->requests;
    stats->bytes_up = ss_store_counts(f->store)->bytes_up;
    stats->bytes_down = ss_store_counts(f->store)->bytes_down;
    return rc;
}

ss_rc ss_sync(ss_folder *f, ss_stats *stats, ss_err *err)
{
    ss_rc rc = ss_pull(f, stats, err);
    return rc ? rc : ss_push(f, stats, err);
}
