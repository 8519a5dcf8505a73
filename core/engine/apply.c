/*
 * apply: apply a verified transaction to the folder and the state (pull's
 * P3-P6; txn_read.c fetches and checks it first, commands/pull.c lists the
 * log and drives both). This file stages the data, walks the ops and
 * commits; apply_op.c applies each op to its path.
 *
 * Design notes. Invariants this file and apply_op.c keep (each asserted or
 * tested):
 *   P1. Nothing of log/<seq> is applied before the whole object verified:
 *       eng_fetch_txn stages the plaintext in a temp file, ss_frame_end checks it
 *       ended at its final record, and eng_check_txn walks every op before
 *       walk_ops touches the folder. The same holds for the data: stage_data
 *       fetches and verifies every chunk of the transaction into the stage
 *       first, a file per chunked op in .s3sync/tmp (stage.c), so a
 *       truncated or altered pack changes nothing either (the stage costs
 *       disk, not memory, and the walk adopts its files instead of copying
 *       them: the data is written once; a re-run after a crash fetches
 *       again, and the next command removes what a killed one staged).
 *   P2. Transactions apply in sequence order without gaps; the first listed
 *       key must be the watermark's own (else the store was rolled back),
 *       unless gc removed it and a checkpoint at or after the watermark is
 *       there to re-base on (commands/pull.c: listing, batches, checkpoints).
 *   P3. A file is its old or its new content, and the state and watermark
 *       of seq commit in one SQLite transaction after every file of seq is
 *       in place, durably. The order, per batch of files (fsio.h
 *       ss_fs_batch, bounded in files, bytes and descriptors; fsio_batch.c
 *       says why it is safe):
 *         a. each file's new version made a temp beside its target: its
 *            stage file linked there (fsio.h ss_atomic_adopt; the stage
 *            wrote it, its writeout started, fault point stage.file) or
 *            its inline bytes written; no fsync (apply_op.c write_file;
 *            fault point apply.staged). The batch's writer thread makes
 *            the temps (creates, writes, mode and mtime, closes) while the
 *            walk decides the next files and renames the batch before;
 *         b. one syncfs: every temp of the batch durable (across a mount
 *            point inside the folder, where no link can be made,
 *            ss_atomic_adopt copies and fsyncs instead)
 *            (apply.batch-synced); made by that thread as soon as the
 *            batch is full and its temps made, while the walk fills the
 *            next batch (apply_op.c rotate; fsio_batch.c says why that is
 *            safe);
 *         c. each temp renamed over its target, the P4 look first
 *            (apply.before-rename, apply.after-rename, apply.batch-renamed),
 *            then recorded in the open SQLite transaction;
 *       a full batch is renamed once the two after it are full (at most
 *       three pending, ENG_SEALED + 1), and all of them before the walk
 *       leaves a directory whose mode it opened (P6) and at the end of
 *       each walk (asserted empty before d);
 *         d. one syncfs for the transaction: every rename durable;
 *         e. the watermark and state commit (pull.before-commit).
 *       Killed anywhere, the next pull re-applies seq: a temp left behind
 *       is the scanner's to remove, files already renamed are recognised by
 *       content id (no conflict copy of our own write). A target is never
 *       renamed over before its new data is durable (b before c), and the
 *       watermark never moves before the renames are (d before e).
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
 *     VERIFIED --stage_data (eng_stage_add, eng_stage_put)--> DATA STAGED
 *     DATA STAGED --walk_ops (per op, apply_op.c: eng_apply_upsert / eng_apply_delete;
 *                   files through P3's batches a-c)--> APPLIED
 *     APPLIED --ss_fs_sync (P3 d)--> DURABLE
 *     DURABLE --ss_state_commit (watermark = seq, chain, device table)--> COMMITTED
 *   any failure before COMMITTED: ss_state_rollback and the temps of the
 *   batch not renamed removed; the folder holds whole files only, and the
 *   next run starts again at STAGED for the same seq.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply_impl.h"
#include "array.h"
#include "fault.h"
#include "fsio.h"
#include "path.h"

/* --- staging the data (P1) ------------------------------------------------------------- */

/*
 * A chunk landed in the stage: its file counts as done for the progress bar
 * once all its bytes have (a pull's files finish as their data arrives, not
 * all at once when the ops apply).
 */
static void landed(void *ctx, uint64_t out_off, uint64_t len)
{
    eng_apply *a = ctx;
    if (eng_stage_landed(a->stage, out_off, len)) a->f->prog.files_done++;
}

static int put(void *ctx, uint64_t out_off, const void *buf, size_t len)
{
    eng_apply *a = ctx;
    return eng_stage_put(a->stage, out_off, buf, len);
}

/* Queue every chunk of the current entry for its stage file i (stage_data waits). */
static ss_rc fetch_chunks(eng_apply *a, eng_fetch *x, const ss_txn_entry *e, size_t i, ss_err *err)
{
    const ss_txn_header *h = ss_txn_reader_header(a->txn.r);
    eng_reuse *mine = NULL; /* owned */
    uint64_t start = eng_stage_start(a->stage, i), off = 0;
    ss_rc rc = eng_reuse_open(a->f, e->path, &mine, err);
    if (rc) goto done;
    for (uint32_t k = 0; k < e->n_chunks; k++) {
        ss_chunk_ref ref;
        ss_chunk_loc loc;
        rc = ss_txn_next_chunk(a->txn.r, &ref, err);
        if (rc) goto done;
        snprintf(loc.pack, sizeof loc.pack, "%s", h->pack_keys[ref.pack]);
        loc.off = ref.offset;
        loc.sealed_len = ref.sealed_len;
        loc.plain_len = ref.plain_len;
        rc = ss_state_chunk_add(a->f->state, ref.id, &loc, err);
        if (rc) goto done;
        if (mine && eng_reuse_chunk(mine, &ref, eng_stage_fd(a->stage, i), off)) {
            landed(a, start + off, ref.plain_len);
        } else {
            rc = eng_fetch_chunk(x, loc.pack, &ref, start + off, err);
            if (rc) goto done;
        }
        off += ref.plain_len;
    }
done:
    eng_reuse_free(mine);
    return rc;
}

/* Record whether the state already holds op e exactly (same kind, mode and content). */
static ss_rc note_same(eng_apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row;
    int found = 0, same = 0;
    ss_rc rc;
    if (SS_ARRAY_GROW(a->same, a->n_ops + 1, a->cap_same))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_state_lookup(a->f->state, e->path, &row, &found, err);
    if (rc) return rc;
    same = found && eng_row_holds(&row, e);
    a->same[a->n_ops++] = (uint8_t)same;
    return SS_OK;
}

/* P1 for the data: every chunked file of the transaction, fetched and verified into the stage. */
static ss_rc stage_data(eng_apply *a, int fd, uint64_t seq, ss_err *err)
{
    eng_fetch x = {
        .f = a->f, .xfer = a->xfer, .out_fd = -1, .landed = landed, .put = put, .ctx = a};
    const ss_txn_entry *e;
    ss_rc rc, wrc;
    rc = eng_stage_new(a->f, &a->stage, err);
    if (rc) return rc;
    rc = eng_txn_open(&a->txn, a->f, fd, seq, err);
    if (rc) goto done;
    for (;;) {
        size_t i;
        rc = eng_txn_next(&a->txn, &e, err);
        if (rc) goto done;
        if (!e) break;
        if (a->base) { /* a checkpoint as a base: what the state holds alike stays */
            rc = note_same(a, e, err);
            if (rc) goto done;
            if (a->same[a->n_ops - 1]) { /* nothing to fetch or write: done */
                a->f->prog.files_done++;
                continue;
            }
        }
        if (!eng_is_chunked(e)) continue;
        rc = eng_stage_add(a->stage, e->size, &i, err);
        if (rc) goto done;
        if (!e->size) a->f->prog.files_done++;
        rc = fetch_chunks(a, &x, e, i, err);
        if (rc) goto done;
    }
done:
    eng_txn_close(&a->txn);
    /* All of it, even after a failure: buffers in flight. */
    wrc = eng_fetch_wait(&x, rc ? NULL : err);
    return rc ? rc : wrc;
}

/* --- a checkpoint as a base: join, or re-base after gc (FORMAT.md "Reading") ---------- */

/*
 * A path the state holds as the checkpoint does: its chunk refs become the
 * checkpoint's (gc may have deleted the packs the old refs named, if another
 * device uploaded the same content elsewhere); its local columns stay.
 */
static ss_rc rebase_row(eng_apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row;
    int found = 0;
    ss_rc rc;
    if (!eng_is_chunked(e)) return SS_OK;
    rc = eng_txn_body(a->txn.r, &a->body, err);
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
static ss_rc delete_missing(eng_apply *a, int fd, uint64_t seq, ss_err *err)
{
    ss_state_iter *it = NULL; /* owned: a snapshot from before this apply */
    const ss_state_row *row = NULL;
    const ss_txn_entry *e = NULL;
    ss_rc rc = eng_txn_open(&a->txn, a->f, fd, seq, err);
    if (rc) goto done;
    rc = ss_state_iter_new(a->f->state, &it, err);
    if (rc) goto done;
    rc = ss_state_iter_next(it, &row, err);
    if (rc) goto done;
    rc = eng_txn_next(&a->txn, &e, err);
    if (rc) goto done;
    while (row) { /* both in path order: a row before the next op is one the checkpoint lacks */
        int c = !e ? -1 : ss_path_cmp(row->path, strlen(row->path), e->path, e->path_len);
        if (c < 0) {
            ss_txn_entry d = {
                .type = SS_TXN_DELETE, .path = row->path, .path_len = strlen(row->path)};
            rc = eng_apply_delete(a, &d, err);
            if (rc) goto done;
        }
        if (c <= 0) {
            rc = ss_state_iter_next(it, &row, err);
            if (rc) goto done;
        }
        if (c >= 0) {
            rc = eng_txn_next(&a->txn, &e, err);
            if (rc) goto done;
        }
    }
done:
    ss_state_iter_free(it);
    eng_txn_close(&a->txn);
    return rc;
}

/* --- the ops, in order (P3, P4) ---------------------------------------------------------- */

static ss_rc walk_ops(eng_apply *a, int fd, uint64_t seq, ss_err *err)
{
    const ss_txn_entry *e;
    size_t next = 0; /* the stage's files are the chunked ops', in order */
    ss_rc rc = eng_txn_open(&a->txn, a->f, fd, seq, err);
    eng_apply_made_clear(a);
    if (rc) goto done;
    for (size_t i = 0;; i++) {
        rc = eng_txn_next(&a->txn, &e, err);
        if (rc) goto done;
        if (!e) break;
        if (a->base && a->same[i]) { /* the folder is left alone; the row takes its chunk refs */
            if (a->deferred_pass) continue;
            rc = rebase_row(a, e, err);
            if (rc) goto done;
            continue;
        }
        a->cur = next;
        next += eng_is_chunked(e);
        if (a->deferred_pass && (e->type == SS_TXN_DELETE || !eng_apply_is_deferred(a, e->path)))
            continue;
        rc = e->type == SS_TXN_DELETE ? eng_apply_delete(a, e, err) : eng_apply_upsert(a, e, err);
        ss_fault_point("pull.op");
        if (rc) goto done;
    }
    rc = eng_apply_flush(a, err); /* the last batch: every file of the walk in place */
done:
    eng_txn_close(&a->txn);
    return rc;
}

/*
 * Our own transaction, put by a push that could not record it (P4): the
 * folder already holds it or newer edits, so only the state takes its ops.
 * Rows get no local stat, so the next push reads those paths again and
 * sends whatever changed since as the next transaction.
 */
static ss_rc adopt_entry(eng_apply *a, const ss_txn_entry *e, ss_err *err)
{
    ss_state_row row = eng_row_of(e, NULL, 0);
    ss_rc rc;
    if (e->type == SS_TXN_DELETE) return ss_state_remove(a->f->state, e->path, err);
    if (eng_is_chunked(e)) {
        const char *pack;
        size_t pos = 0, pack_len;
        ss_chunk_ref ref;
        rc = eng_txn_body(a->txn.r, &a->body, err);
        if (rc) return rc;
        row.body = a->body.p;
        row.body_len = a->body.len;
        while (ss_state_body_next(a->body.p, a->body.len, &pos, &pack, &pack_len, &ref)) {
            ss_chunk_loc loc = {
                .off = ref.offset, .sealed_len = ref.sealed_len, .plain_len = ref.plain_len};
            snprintf(loc.pack, sizeof loc.pack, "%.*s", (int)pack_len, pack);
            rc = ss_state_chunk_add(a->f->state, ref.id, &loc, err); /* ours: reuse them */
            if (rc) return rc;
        }
    } else if (e->kind == SS_TXN_FILE) {
        row.body = e->inline_data;
        row.body_len = e->size;
    } else if (e->kind == SS_TXN_SYMLINK) {
        row.body = e->target;
        row.body_len = e->size;
    }
    return ss_state_put(a->f->state, &row, err);
}

static ss_rc adopt_txn(eng_apply *a, int fd, uint64_t seq, ss_err *err)
{
    const ss_txn_entry *e;
    ss_rc rc = eng_txn_open(&a->txn, a->f, fd, seq, err);
    if (rc) goto done;
    for (;;) {
        rc = eng_txn_next(&a->txn, &e, err);
        if (rc) goto done;
        if (!e) break;
        rc = adopt_entry(a, e, err);
        if (rc) goto done;
    }
done:
    eng_txn_close(&a->txn);
    return rc;
}

/* DATA STAGED to APPLIED: adopted when ours, else every op, then what waited (deferred). */
static ss_rc apply_ops(eng_apply *a, int fd, uint64_t seq, int ours, ss_err *err)
{
    ss_rc rc;
    if (ours) {
        rc = adopt_txn(a, fd, seq, err);
        if (rc) return rc;
    } else {
        rc = stage_data(a, fd, seq, err);
        if (rc) return rc;
        rc = walk_ops(a, fd, seq, err);
        if (rc) return rc;
        if (a->base) {
            rc = delete_missing(a, fd, seq, err);
            if (rc) return rc;
        }
    }
    if (!a->n_deferred) return SS_OK;
    a->deferred_pass = 1;
    rc = eng_apply_deferred(a, err);
    if (rc) return rc;
    return walk_ops(a, fd, seq, err);
}

/* --- the transaction ---------------------------------------------------------------------- */

ss_rc eng_apply_txn(ss_folder *f, ss_stats *stats, int fd, uint64_t seq,
                    const uint8_t prev[SS_CHAIN_BYTES], const uint8_t chain[SS_CHAIN_BYTES],
                    int base, const ss_devices *devices, const ss_state_applied *obj, ss_err *err)
{
    eng_apply a = {.f = f, .stats = stats, .base = base};
    ss_devices *kept = NULL; /* owned: f->devices once committed */
    int ours = !base && eng_inflight_is(f, seq, chain), began = 0;
    ss_rc rc;
    ss_fs_cache_begin(f->root_fd); /* each directory resolved once (fsio.c) */
    rc = ss_xfer_new(f->store, &a.xfer, err);
    if (rc) goto out;
    rc = eng_dirmodes_new(f, &a.dm, err);
    if (rc) goto out;
    rc = ss_state_begin(f->state, err);
    if (rc) goto out;
    began = 1;
    rc = apply_ops(&a, fd, seq, ours, err);
    if (rc) goto out;
    assert(!a.n_pend && !a.n_sealed);   /* P3: each walk renamed its last batches */
    rc = ss_dirmodes_finish(a.dm, err); /* P6: every directory its mode */
    if (rc) goto out;
    rc = ss_fs_sync(f->root_fd, err); /* P3: the renames are durable before the state says so */
    if (rc) goto out;
    rc = ss_state_set_watermark(f->state, seq, chain, prev, err);
    if (rc) goto out;
    if (obj) {
        rc = ss_state_set_applied(f->state, obj, err); /* for the fork check */
        if (rc) goto out;
    }
    rc = ss_state_devices_save(f->state, devices, err); /* moves with the watermark */
    if (rc) goto out;
    rc = ss_devices_copy(devices, &kept, err);
    if (rc) goto out;
    ss_fault_point("pull.before-commit");
    rc = ss_state_commit(f->state, err);
    if (rc) goto out;
    ss_devices_free(f->devices);
    f->devices = kept;
    kept = NULL;
    if (ours) eng_inflight_clear(f);
out:
    if (rc && began) ss_state_rollback(f->state);
    for (size_t i = 0; i < a.n_deferred; i++)
        free(a.deferred[i].path);
    free(a.deferred);
    free(a.same);
    eng_apply_made_clear(&a);
    free(a.made);
    ss_devices_free(kept);
    ss_state_body_free(&a.body);
    eng_apply_batch_free(&a); /* after a failure: the temps not renamed go */
    eng_stage_free(a.stage);  /* and the stage's files not adopted */
    ss_dirmodes_free(a.dm);   /* after a failure too: no directory stays open */
    ss_fs_cache_end();
    ss_xfer_free(a.xfer);
    return rc;
}
