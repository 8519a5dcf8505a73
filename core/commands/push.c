/*
 * push: publish local changes as transaction seq = watermark + 1.
 *
 * The scan and the previous state are merged in path order; each changed
 * path becomes one op, spooled to a temp file while new chunks are sealed
 * into data/ packs and uploaded in parallel (engine/packer.c). Then the
 * transaction is written from the spool, framed, and created as log/<seq>
 * with If-None-Match: * (push_txn.c). The state changes in one SQLite transaction that
 * commits only after log/<seq> is in the store (so a crash before that
 * leaves the state as it was, and the packs are unreferenced garbage);
 * a 412 means another device took seq: pull, then build again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "fault.h"
#include "fsio.h"
#include "path.h"
#include "spool.h"
#include "push_impl.h"
#include "ss_buf.h"

#define MAX_ATTEMPTS 8
/* Files up to this size are read ahead on a first push: the scan runs ~2,000 entries ahead. */
#define PUSH_READ_AHEAD_MAX (64 * 1024)

/* --- chunks of the file being pushed ------------------------------------------- */

static ss_rc add_ref(push *p, const ss_chunk_ref *r, ss_err *err)
{
    if (SS_ARRAY_GROW(p->refs, p->n_refs + 1, p->cap_refs))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    p->refs[p->n_refs++] = *r;
    if (ss_state_body_add(&p->body, eng_packer_key(p->packer, r->pack), r))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    return SS_OK;
}

/* Per chunk of a changed file: reference it if known, else seal it into a pack. */
static ss_rc on_file_chunk(void *ctx, const uint8_t *data, size_t len,
                           const uint8_t id[SS_CHUNK_ID_LEN], ss_err *err)
{
    push *p = ctx;
    ss_chunk_ref r;
    ss_rc rc = eng_packer_add(p->packer, data, len, id, &r, err);
    if (rc) return rc;
    p->file_bytes += len;
    p->f->prog.bytes_done += len;
    eng_progress(p->f);
    return add_ref(p, &r, err);
}

/* --- one path ------------------------------------------------------------------------ */

static void verbose(push *p, const char *what, const char *path)
{
    if (p->f->hooks.verbose) p->f->hooks.verbose(p->f->hooks.ctx, what, path);
}

static void warn(push *p, const char *fmt, const char *path, const char *why)
{
    char msg[4200];
    if (!p->f->hooks.warn) return;
    snprintf(msg, sizeof msg, fmt, path, why);
    p->f->hooks.warn(p->f->hooks.ctx, msg);
}

/* Record an upsert in the spool and the new row in the state (over old, its row now). */
static ss_rc publish(push *p, const ss_txn_entry *e, const struct stat *st, const void *body,
                     size_t body_len, const ss_state_row *old, ss_err *err)
{
    ss_state_row row = eng_row_of(e, body, body_len);
    ss_rc rc = ss_spool_put(p->spool, e, p->refs, err);
    if (rc) return rc;
    for (uint32_t i = 0; e->kind == SS_TXN_FILE && i < e->n_chunks; i++)
        eng_packer_use(p->packer, p->refs[i].pack);
    eng_row_set_stat(&row, st);
    verbose(p, "push", e->path);
    return ss_state_put_over(p->f->state, &row, old, err);
}

/*
 * The mtime the store holds for row is st's. Files and symlinks sync their
 * mtimes: a touch alone is a change (an op that reuses every chunk).
 */
static int same_mtime(const ss_state_row *row, const struct stat *st)
{
    return row->mtime_s == st->st_mtim.tv_sec && row->mtime_ns == (uint32_t)st->st_mtim.tv_nsec;
}

/*
 * The mode to publish for a path lstat says st of. While it has the local
 * mode last synced, the store's stays (a pull may have masked it: a setuid
 * bit never applied here is no change to send); a mode changed here goes
 * as it is.
 */
static uint32_t mode_to_send(const ss_state_row *row, const struct stat *st)
{
    uint32_t mode = st->st_mode & 07777;
    if (row && row->kind == eng_kind_of(st->st_mode) && row->local_mode == mode) return row->mode;
    return mode;
}

/* Only the local stat moved (a new inode, a copy back): remembered, so scans stay cheap. */
static ss_rc restat(push *p, const ss_state_row *old, const struct stat *st, ss_err *err)
{
    ss_state_row row = *old;
    eng_row_set_stat(&row, st);
    row.size = (uint64_t)st->st_size;
    row.mtime_s = st->st_mtim.tv_sec;
    row.mtime_ns = (uint32_t)st->st_mtim.tv_nsec;
    return ss_state_put_over(p->f->state, &row, old, err);
}

/* Identify an open file; *ret_changed 1 when it changed while being read. */
static int64_t ns_of(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/*
 * A file's mtime comes from the kernel's coarse clock, up to a tick (1 to
 * 10 ms) behind the real one. A write during a read moves the mtime only when
 * it lands in a later tick than the write before the read did, so a read
 * that began within a tick of the file's mtime cannot tell "unchanged" from
 * "written again in the same tick" (a torn read passing for a whole one).
 * Two ticks, for the margin.
 */
static int64_t mtime_tick_ns(void)
{
    struct timespec res;
    if (clock_getres(CLOCK_REALTIME_COARSE, &res)) return 20000000;
    return 2 * ns_of(&res);
}

/*
 * The read that began at start cannot vouch for a file of mtime m: wait until
 * one could. An mtime after start was set by hand (touch -d, a pull): the
 * kernel's own are never ahead of the clock, so any write moves it.
 */
static int racy_read(const struct timespec *m, const struct timespec *start)
{
    struct timespec now;
    int64_t until = ns_of(m) + mtime_tick_ns(), wait;
    if (until <= ns_of(start) || ns_of(m) > ns_of(start)) return 0;
    clock_gettime(CLOCK_REALTIME, &now);
    wait = until - ns_of(&now);
    if (wait > 0) nanosleep(&(struct timespec){wait / 1000000000, wait % 1000000000}, NULL);
    return 1;
}

/* st: fstat of fd just before the first attempt (taken again before any later one). */
static ss_rc read_file_once(push *p, int fd, int attempt, struct stat *st,
                            uint8_t cid[SS_TXN_CONTENT_ID_BYTES], uint8_t **inl, int *ret_changed,
                            ss_err *err)
{
    struct stat after;
    struct timespec start;
    int racy;
    ss_rc rc;
    p->n_refs = 0;
    p->body.len = 0;
    p->file_bytes = 0;
    *ret_changed = 0;
    clock_gettime(CLOCK_REALTIME, &start);
    if (attempt && (lseek(fd, 0, SEEK_SET) < 0 || fstat(fd, st)))
        return ss_fail(err, SS_ERR_IO, "read %s: %s", "file", strerror(errno));
    rc = eng_identify(p->f, fd, (uint64_t)st->st_size, on_file_chunk, p, cid, inl, err);
    if (rc) return rc;
    if (fstat(fd, &after)) return ss_fail(err, SS_ERR_IO, "stat: %s", strerror(errno));
    racy = racy_read(&st->st_mtim, &start); /* so read it again */
    if (racy || after.st_size != st->st_size || after.st_mtim.tv_sec != st->st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != st->st_mtim.tv_nsec ||
        (!*inl && p->file_bytes != (uint64_t)st->st_size)) {
        free(*inl);
        *inl = NULL;
        *ret_changed = 1;
    }
    return SS_OK;
}

/* The cause at the end of an fsio message ("open a/b: Permission denied"). */
static const char *last_part(const char *msg)
{
    const char *at = msg, *next;
    while ((next = strstr(at, ": ")))
        at = next + 2;
    return at;
}

static ss_rc push_file(push *p, const char *path, const ss_state_row *row, ss_err *err)
{
    uint8_t cid[SS_TXN_CONTENT_ID_BYTES], *inl = NULL;
    struct stat st;
    int fd, changed = 1;
    ss_err why = {{0}};
    ss_rc rc = SS_OK;
    ss_txn_entry e = {
        .type = SS_TXN_UPSERT, .path = path, .path_len = strlen(path), .kind = SS_TXN_FILE};

    ss_fault_point("push.before-read");
    /* No symlink anywhere on the way (a directory swapped since the scan), no fifo waited on. */
    rc = ss_fs_open(p->f->root_fd, path, O_RDONLY | O_NONBLOCK, &fd, &why);
    if (rc == SS_ERR_NOT_FOUND) return SS_OK; /* gone since the scan: the next push sees it */
    if (rc == SS_ERR_IO) { /* unreadable, or a symlink on its way: the rest goes on */
        warn(p, "skipping %s: %s", path, last_part(why.msg));
        return SS_OK;
    }
    if (rc) {
        if (err) *err = why;
        return rc;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { /* swapped for a fifo or such since the scan */
        close(fd);
        warn(p, "skipping %s: %s", path, "not a regular file");
        return SS_OK;
    }
    for (int attempt = 0; attempt < 3 && changed; attempt++) {
        rc = read_file_once(p, fd, attempt, &st, cid, &inl, &changed, err);
        if (rc) break;
    }
    close(fd);
    if (rc) {
        if (err) {
            ss_err inner = *err;
            ss_fail(err, rc, "push %s: %s", path, inner.msg);
        }
        goto out;
    }
    if (changed) {
        warn(p, "skipping %s: %s", path, "it keeps changing while being read");
        goto out;
    }
    /* The same bytes, mode and mtime: nothing to say (a new inode, a touch that set it back). */
    e.mode = mode_to_send(row, &st);
    if (row && row->kind == SS_TXN_FILE && !memcmp(row->content_id, cid, SS_TXN_CONTENT_ID_BYTES) &&
        row->mode == e.mode && same_mtime(row, &st)) {
        rc = restat(p, row, &st, err);
        goto out;
    }
    memcpy(e.content_id, cid, SS_TXN_CONTENT_ID_BYTES);
    e.mtime_s = st.st_mtim.tv_sec;
    e.mtime_ns = (uint32_t)st.st_mtim.tv_nsec;
    e.size = (uint64_t)st.st_size;
    e.storage = inl ? SS_TXN_INLINE : SS_TXN_CHUNKS;
    e.inline_data = inl;
    e.n_chunks = inl ? 0 : p->n_refs;
    rc = inl ? publish(p, &e, &st, inl, (size_t)st.st_size, row, err)
             : publish(p, &e, &st, p->body.p, p->body.len, row, err);
out:
    free(inl);
    return rc;
}

static ss_rc push_symlink(push *p, const char *path, const struct stat *st, const ss_state_row *row,
                          ss_err *err)
{
    char target[SS_TXN_TARGET_MAX + 1];
    size_t n = 0;
    ss_err why = {{0}};
    ss_rc rc = ss_fs_readlink(p->f->root_fd, path, target, sizeof target - 1, &n, &why);
    ss_txn_entry e = {.type = SS_TXN_UPSERT,
                      .path = path,
                      .path_len = strlen(path),
                      .kind = SS_TXN_SYMLINK,
                      .mode = mode_to_send(row, st),
                      .mtime_s = st->st_mtim.tv_sec,
                      .mtime_ns = (uint32_t)st->st_mtim.tv_nsec};
    if (rc == SS_ERR_NOT_FOUND) return SS_OK; /* gone since the scan */
    if (rc == SS_ERR_IO) {
        warn(p, "skipping %s: %s", path, last_part(why.msg));
        return SS_OK;
    }
    if (rc) {
        if (err) *err = why;
        return rc;
    }
    target[n] = '\0';
    if (row && row->kind == SS_TXN_SYMLINK && row->body_len == (size_t)n &&
        !memcmp(row->body, target, n) && row->mode == e.mode && same_mtime(row, st))
        return restat(p, row, st, err);
    e.size = (uint64_t)n;
    e.target = target;
    return publish(p, &e, st, target, n, row, err);
}

static ss_rc push_dir(push *p, const char *path, const struct stat *st, const ss_state_row *row,
                      ss_err *err)
{
    ss_txn_entry e = {.type = SS_TXN_UPSERT,
                      .path = path,
                      .path_len = strlen(path),
                      .kind = SS_TXN_DIR,
                      .mode = mode_to_send(row, st),
                      .mtime_s = st->st_mtim.tv_sec,
                      .mtime_ns = (uint32_t)st->st_mtim.tv_nsec};
    /* A directory's mtime moves with every entry in it; only its mode is worth syncing. */
    if (row && row->kind == SS_TXN_DIR && row->mode == e.mode) return restat(p, row, st, err);
    return publish(p, &e, st, NULL, 0, row, err);
}

static ss_rc push_delete(push *p, const ss_state_row *row, ss_err *err)
{
    ss_txn_entry e = {.type = SS_TXN_DELETE, .path = row->path, .path_len = strlen(row->path)};
    ss_rc rc;
    if (ss_ignore_match(p->f->ign, row->path, row->kind == SS_TXN_DIR)) return SS_OK;
    if (p->counting) return SS_OK;
    /* Applied before the path rules refused it (a .s3sync at depth): forgotten, never sent. */
    if (ss_path_validate(row->path, strlen(row->path), NULL))
        return ss_state_remove(p->f->state, row->path, err);
    rc = ss_spool_put(p->spool, &e, NULL, err);
    if (rc) return rc;
    verbose(p, "delete", row->path);
    return ss_state_remove(p->f->state, row->path, err);
}

static ss_rc push_entry(push *p, const ss_scan_entry *se, const ss_state_row *row, ss_err *err)
{
    ss_rc rc;
    if (row && eng_stat_matches(row, &se->st)) return SS_OK;
    if (p->counting) {
        p->f->prog.files_total++;
        if (se->kind == SS_TXN_FILE) p->f->prog.bytes_total += (uint64_t)se->st.st_size;
        return SS_OK;
    }
    switch (se->kind) {
    case SS_TXN_FILE: {
        uint64_t before = p->f->prog.bytes_done; /* inline files are not chunked: count by size */
        rc = push_file(p, se->path, row, err);
        p->f->prog.bytes_done = before + (uint64_t)se->st.st_size;
        break;
    }
    case SS_TXN_SYMLINK: rc = push_symlink(p, se->path, &se->st, row, err); break;
    default: rc = push_dir(p, se->path, &se->st, row, err); break;
    }
    p->f->prog.files_done++;
    eng_progress(p->f);
    return rc;
}

/* One path of the scan merged with the previous state (eng_merge). */
static ss_rc diff_one(void *ctx, const ss_scan_entry *e, const ss_state_row *r, ss_err *err)
{
    push *p = ctx;
    if (!e) return push_delete(p, r, err);
    return push_entry(p, e, r, err);
}

static ss_rc diff(push *p, ss_err *err)
{
    ss_warn_fn warn_fn = p->counting ? NULL : p->f->hooks.warn; /* the real pass warns, once */
    /* A first push reads every file: small ones are read ahead by the scan's thread. */
    return eng_merge(p->f, warn_fn, p->f->hooks.ctx, p->counting ? 0 : PUSH_READ_AHEAD_MAX,
                     diff_one, p, err);
}

/* --- the transaction ---------------------------------------------------------------- */

static void push_free(push *p)
{
    ss_keys_free(p->keys);
    sodium_memzero(p->epoch_key, sizeof p->epoch_key);
    ss_spool_free(p->spool);
    ss_xfer_free(p->xfer);      /* waits for what is in flight */
    eng_packer_free(p->packer); /* after: uploads in flight name its keys */
    free(p->refs);
    ss_state_body_free(&p->body);
}

/* The epoch log/<seq> began is the repository's now: held, and kept in .s3sync/epochs. */
static ss_rc commit_epoch(push *p, ss_err *err)
{
    uint32_t epoch = ss_keys_epoch(p->keys);
    ss_rc rc = ss_repo_add_epoch(p->f->repo, epoch, p->seq, p->epoch_key, err);
    if (rc) return rc;
    rc = eng_epochs_save(p->f, err);
    if (rc) return rc;
    eng_epoch_pending_forget(p->f);
    return SS_OK;
}

/* What a push is asked to say besides the folder's changes (device entries, a new epoch). */
typedef struct push_ask {
    const uint8_t *revoke;      /* a device id to revoke */
    const ss_txn_device *extra; /* a device approved, or the enrollment policy */
    int force;                  /* write even with no file change */
    int rotate;                 /* begin a key epoch */
} push_ask;

static ss_rc push_once(ss_folder *f, const push_ask *ask, const uint8_t *rotate, ss_stats *stats,
                       ss_err *err)
{
    const uint8_t *revoke = ask->revoke;
    int force = ask->force;
    push p = {.f = f,
              .stats = stats,
              .revoke = revoke,
              .extra = ask->extra,
              .force = force || rotate,
              .rotate = !!rotate};
    ss_devices *next = NULL; /* owned until committed */
    uint8_t prev[SS_CHAIN_BYTES], chain[SS_CHAIN_BYTES];
    ss_state_applied obj;
    uint64_t wm;
    int fd;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, prev, err);
    if (rc) return rc;
    p.seq = wm + 1;
    if (rotate) memcpy(p.epoch_key, rotate, sizeof p.epoch_key);
    rc = push_device_entries(&p, err);
    if (rc) goto out;
    if (revoke && !p.revoke) p.rotate = 0; /* revoked meanwhile, by a device that rotated */
    if (p.force && !p.n_devs && !p.rotate) p.force = 0; /* enrolled or revoked meanwhile */
    if (!force) {
        rc = eng_load_ignore(f, err);
        if (rc) return rc;
    }
    f->prog = (ss_progress){.phase = "push"};
    if (f->hooks.progress && !force) { /* a terminal is watching: count first, for the totals */
        p.counting = 1;
        rc = diff(&p, err);
        p.counting = 0;
        if (rc) return rc;
    }
    rc = ss_state_begin(f->state, err);
    if (rc) return rc;
    rc = push_devices_after(&p, &next, err);
    if (rc) goto fail;
    p.after = next;
    if (p.rotate) {
        rc = push_begin_epoch(&p, next, err);
        if (rc) goto fail;
    }
    rc = eng_tmpfile(f, &fd, err);
    if (rc) goto fail;
    rc = ss_spool_new(fd, &p.spool, err);
    if (rc) goto fail;
    rc = ss_xfer_new(f->store, &p.xfer, err);
    if (rc) goto fail;
    rc = eng_packer_new(f, p.xfer, p.seq, &p.packer, err);
    if (rc) goto fail;
    if (!force) {
        rc = diff(&p, err);
        if (rc) goto fail;
    }
    rc = eng_packer_flush(p.packer, err);
    if (rc) goto fail;
    rc = ss_xfer_wait(p.xfer, err);
    if (rc) goto fail;
    if (!ss_spool_count(p.spool) && !p.force) { /* nothing to say: the store is not touched */
        rc = ss_state_commit(f->state, err);
        stats->seq = wm;
        goto out;
    }
    /* Never write on top of a log/<wm> that is not the one this device has (a fork). */
    rc = eng_fork_check_now(f, wm, err);
    if (rc) goto fail;
    rc = push_upload_log(&p, prev, chain, &obj, err);
    if (rc) goto fail;
    rc = ss_state_set_watermark(f->state, p.seq, chain, prev, err);
    if (rc) goto fail;
    rc = ss_state_set_applied(f->state, &obj, err);
    if (rc) goto fail;
    rc = ss_state_devices_save(f->state, next, err);
    if (rc) goto fail;
    /* Counted in this commit, not one of its own. log/1 is not: a checkpoint at 1 repeats it. */
    eng_checkpoint_count(f, p.seq > 1 ? p.log_bytes : 0);
    ss_fault_point("push.before-commit");
    rc = ss_state_commit(f->state, err);
    if (rc) goto fail;
    if (p.rotate) { /* committed: this device holds the epoch from now on */
        rc = commit_epoch(&p, err);
        if (rc) goto out;
    }
    ss_devices_free(f->devices);
    f->devices = next;
    next = NULL;
    eng_inflight_clear(f);
    eng_checkpoint_auto(f, p.seq);
    stats->seq = p.seq;
    stats->files += ss_spool_count(p.spool);
    goto out;
fail:
    ss_state_rollback(f->state);
out:
    ss_devices_free(next);
    push_free(&p);
    return rc;
}

/* Push with the retry rule: another device took our sequence (412), so pull and build again. */
static ss_rc push_with(ss_folder *f, const push_ask *ask, ss_stats *stats, ss_err *err)
{
    uint8_t key[SS_EPOCH_KEY_BYTES]; /* the new epoch's, the same in every attempt */
    uint8_t chain[SS_CHAIN_BYTES];
    uint64_t before = 0;
    ss_rc rc = ss_state_watermark(f->state, &before, chain, err);
    if (rc) return rc;
    randombytes_buf(key, sizeof key);
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        if (attempt) stats->retries++; /* a rebuild on what the pull brought */
        rc = push_once(f, ask, ask->rotate ? key : NULL, stats, err);
        if (rc != SS_ERR_EXISTS) break;
        /* Another device wrote our sequence first: take its changes, then build again. */
        usleep(randombytes_uniform(50000u << (attempt < 4 ? attempt : 4)));
        rc = ss_pull(f, stats, err);
        if (rc) break;
        rc = SS_ERR_EXISTS;
    }
    sodium_memzero(key, sizeof key);
    f->fork_checked = 0; /* a pull's check serves the push right after it only */
    if (rc == SS_ERR_EXISTS)
        rc = ss_fail(err, SS_ERR_TEMPORARY, "push: other devices kept writing first (%d tries)",
                     MAX_ATTEMPTS);
    if (!rc) eng_peers_announce(f, before);
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}

ss_rc ss_push(ss_folder *f, ss_stats *stats, ss_err *err)
{
    return push_with(f, &(push_ask){0}, stats, err);
}

ss_rc eng_push_enroll(ss_folder *f, ss_stats *stats, ss_err *err)
{
    const ss_device *me = ss_devices_find(f->devices, f->device_id);
    if (me && !me->revoked) return SS_OK;
    return push_with(f, &(push_ask){.force = !me}, stats, err); /* a revoked one: refused */
}

ss_rc eng_push_revoke(ss_folder *f, const uint8_t id[SS_TXN_DEVICE_ID_BYTES], ss_stats *stats,
                      ss_err *err)
{
    /* a revocation begins a key epoch */
    return push_with(f, &(push_ask){.revoke = id, .force = 1, .rotate = 1}, stats, err);
}

ss_rc eng_push_rotate(ss_folder *f, ss_stats *stats, ss_err *err)
{
    return push_with(f, &(push_ask){.force = 1, .rotate = 1}, stats, err);
}

ss_rc eng_push_entry(ss_folder *f, const ss_txn_device *entry, ss_stats *stats, ss_err *err)
{
    return push_with(f, &(push_ask){.extra = entry, .force = 1}, stats, err);
}
