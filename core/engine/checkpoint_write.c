/*
 * checkpoint_write: writing checkpoints/<seq> from state.db (the command,
 * gc's first checkpoint, the automatic rule after a push), and that rule
 * (docs/FORMAT.md "Checkpoints").
 *
 * Design notes.
 *   C1. A checkpoint is written from state.db right after the state reached
 *       the head (a pull, or the push that made it): rows hold exactly what
 *       the store said about each path, so the checkpoint is state(seq), not
 *       the folder. It streams: two passes over the rows (the pack table is
 *       declared before the ops), memory grows with the packs, not the files.
 *       Its header records chain(seq) and chain(seq - 1), which state.db
 *       keeps with the watermark, for checkpoint_read.c's C6.
 *   C3. The automatic rule never fails a push: the push is committed
 *       already, and a checkpoint can be written by any later run.
 *   C5. Crash points (fault.h), for the test that kills a checkpoint write:
 *       checkpoint.before-put (encoded, not created) and checkpoint.after-put
 *       (created, not yet remembered in state.db), on each path that writes
 *       one: the command, gc's first checkpoint, the push rule.
 */
#include "s3sync.h"

#include <errno.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "ss_buf.h"

#define META_SEQ "checkpoint.seq"     /* the newest checkpoint this device knows of */
#define META_BYTES "checkpoint.bytes" /* log bytes this device saw after it */
#define U64_TEXT 21                   /* a uint64_t in decimal, and its NUL */

/* --- writing (C1) ------------------------------------------------------------------------ */

typedef struct packset {
    char (*keys)[SS_TXN_PACK_KEY_LEN + 1];
    size_t n, cap;
} packset;

static int key_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static ss_rc packs_add(packset *ps, const char *pack, size_t len, ss_err *err)
{
    if (len != SS_TXN_PACK_KEY_LEN)
        return ss_fail(err, SS_ERR_INTEGRITY, "state: a chunk in pack of bad name %.*s", (int)len,
                       pack);
    if (ps->n && !memcmp(ps->keys[ps->n - 1], pack, len)) return SS_OK; /* runs are common */
    if (SS_ARRAY_GROW(ps->keys, ps->n + 1, ps->cap))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    memcpy(ps->keys[ps->n], pack, len);
    ps->keys[ps->n++][len] = '\0';
    return SS_OK;
}

/* Pass 1: count the rows and collect the packs they reference, sorted and distinct. */
static ss_rc collect(ss_folder *f, packset *ps, uint32_t *ret_rows, ss_err *err)
{
    ss_state_iter *it = NULL; /* owned */
    const ss_state_row *row;
    uint64_t rows = 0;
    ss_rc rc = ss_state_iter_new(f->state, &it, err);
    if (rc) goto fail;
    for (;;) {
        const char *pack;
        size_t pos = 0, len;
        ss_chunk_ref ref;
        rc = ss_state_iter_next(it, &row, err);
        if (rc) goto fail;
        if (!row) break;
        rows++;
        if (row->kind != SS_TXN_FILE || row->storage != SS_TXN_CHUNKS) continue;
        while (ss_state_body_next(row->body, row->body_len, &pos, &pack, &len, &ref)) {
            rc = packs_add(ps, pack, len, err);
            if (rc) goto fail;
        }
    }
    ss_state_iter_free(it);
    if (rows > UINT32_MAX) return ss_fail(err, SS_ERR_INVALID, "too many paths for a checkpoint");
    if (ps->n) qsort(ps->keys, ps->n, sizeof *ps->keys, key_cmp);
    size_t out = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (!out || strcmp(ps->keys[out - 1], ps->keys[i]))
            memmove(ps->keys[out++], ps->keys[i], sizeof *ps->keys);
    ps->n = out;
    if (ps->n > SS_TXN_MAX_PACKS)
        return ss_fail(err, SS_ERR_INVALID,
                       "the state references more packs than a checkpoint holds");
    *ret_rows = (uint32_t)rows;
    return SS_OK;
fail:
    ss_state_iter_free(it);
    return rc;
}

/* One state row as an upsert, its chunk refs re-indexed into the checkpoint's pack table. */
static ss_rc put_row(ss_txn_writer *tw, const packset *ps, const ss_state_row *row, ss_err *err)
{
    ss_txn_entry e = {.type = SS_TXN_UPSERT,
                      .path = row->path,
                      .path_len = strlen(row->path),
                      .kind = (ss_txn_kind)row->kind,
                      .mode = row->mode,
                      .mtime_s = row->mtime_s,
                      .mtime_ns = row->mtime_ns,
                      .size = row->size,
                      .storage = (ss_txn_storage)row->storage};
    const char *pack;
    size_t pos = 0, len;
    ss_chunk_ref ref;
    ss_rc rc;
    if (row->kind == SS_TXN_FILE) {
        memcpy(e.content_id, row->content_id, sizeof e.content_id);
        if (row->storage == SS_TXN_INLINE) e.inline_data = row->body;
        while (row->storage == SS_TXN_CHUNKS &&
               ss_state_body_next(row->body, row->body_len, &pos, &pack, &len, &ref))
            e.n_chunks++;
    } else if (row->kind == SS_TXN_SYMLINK) {
        e.target = row->body;
    } else {
        e.size = 0;
    }
    rc = ss_txn_put_upsert(tw, &e, err);
    if (rc) return rc;
    for (pos = 0;
         e.n_chunks && ss_state_body_next(row->body, row->body_len, &pos, &pack, &len, &ref);) {
        char k[SS_TXN_PACK_KEY_LEN + 1];
        const char(*hit)[SS_TXN_PACK_KEY_LEN + 1];
        snprintf(k, sizeof k, "%.*s", (int)len, pack);
        hit = bsearch(k, ps->keys, ps->n, sizeof *ps->keys, key_cmp);
        ref.pack = (uint32_t)(hit - ps->keys);
        rc = ss_txn_put_chunk(tw, &ref, err);
        if (rc) return rc;
    }
    return SS_OK;
}

/*
 * Pass 2: header (chain(seq) and prev = chain(seq - 1)), then every row as an
 * upsert, framed into the temp file fd.
 */
static ss_rc encode(ss_folder *f, uint64_t seq, const uint8_t chain[SS_CHAIN_BYTES],
                    const uint8_t prev[SS_CHAIN_BYTES], const packset *ps, uint32_t rows, int fd,
                    ss_err *err)
{
    static const uint8_t zero_chain[SS_CHAIN_BYTES] = {0};
    char key[SS_KEY_NAME_MAX];
    uint8_t hdr[SS_CHECKPOINT_HEADER_BYTES] = {0};
    const char **table = calloc(ps->n + 1, sizeof *table); /* owned */
    ss_txn_header h = {.seq = seq, .n_packs = (uint32_t)ps->n, .pack_keys = table, .n_ops = rows};
    ss_txn_device *devs = NULL; /* owned */
    ss_frame_out out = {0};
    eng_signer sg;
    ss_txn_writer *tw = NULL; /* owned */
    ss_state_iter *it = NULL; /* owned */
    const ss_state_row *row;
    struct timespec now;
    ss_rc rc;
    if (!table) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_devices_entries(f->devices, &devs, &h.n_devices, err);
    if (rc) goto out;
    h.devices = devs;
    eng_signer_init(&sg, f, SS_FRAME_KIND_CHECKPOINT, seq, chain, f->devices, ss_frame_out_write,
                    &out);
    for (size_t i = 0; i < ps->n; i++)
        table[i] = ps->keys[i];
    clock_gettime(CLOCK_REALTIME, &now);
    h.time_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    memcpy(h.device_id, f->device_id, sizeof h.device_id);
    h.device_name = f->device_name;
    h.device_name_len = strlen(f->device_name);
    memcpy(hdr, SS_CHECKPOINT_MAGIC, 4);
    hdr[SS_CHECKPOINT_OFF_VERSION] = SS_CHECKPOINT_VERSION;
    memcpy(hdr + SS_CHECKPOINT_OFF_CHAIN, chain, SS_CHAIN_BYTES);
    memcpy(hdr + SS_CHECKPOINT_OFF_PREV, prev, SS_CHAIN_BYTES);
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    rc =
        ss_frame_writer_new(ss_repo_keys(f->repo), SS_FRAME_KIND_CHECKPOINT, key, seq, zero_chain,
                            (int)ss_repo_config(f->repo)->zstd_level, ss_fd_sink, &fd, &out.w, err);
    if (rc) goto out;
    rc = ss_frame_write(out.w, hdr, sizeof hdr, err);
    if (rc) goto out;
    rc = ss_txn_writer_new(&f->limits, &h, eng_signer_write, &sg, &tw, err);
    if (rc) goto out;
    rc = ss_state_iter_new(f->state, &it, err);
    if (rc) goto out;
    for (;;) {
        rc = ss_state_iter_next(it, &row, err);
        if (rc) goto out;
        if (!row) break;
        rc = put_row(tw, ps, row, err);
        if (rc) goto out;
    }
    rc = ss_txn_writer_finish(tw, eng_signer_sign, &sg, err);
    if (rc) goto out;
    rc = ss_frame_finish(out.w, NULL, err);
out:
    if (rc == SS_ERR_IO && out.err.msg[0] && err) *err = out.err;
    ss_state_iter_free(it);
    ss_txn_writer_free(tw);
    ss_frame_writer_free(out.w);
    free(devs);
    free(table);
    return rc;
}

void eng_checkpoint_remember(ss_folder *f, uint64_t seq, uint64_t bytes)
{
    char v[U64_TEXT];
    snprintf(v, sizeof v, "%" PRIu64, seq);
    ss_state_meta_set(f->state, META_SEQ, v, NULL);
    snprintf(v, sizeof v, "%" PRIu64, bytes);
    ss_state_meta_set(f->state, META_BYTES, v, NULL);
}

/* checkpoints/<watermark> from the state (C1). */
ss_rc eng_checkpoint_write(ss_folder *f, ss_checkpoint_result *res, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t chain[SS_CHAIN_BYTES], prev[SS_CHAIN_BYTES];
    packset ps = {0};
    uint32_t rows = 0;
    int fd = -1; /* owned */
    off_t size;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &res->seq, chain, err);
    if (rc) return rc;
    if (!res->seq) return ss_fail(err, SS_ERR_INVALID, "nothing to checkpoint: no transaction yet");
    rc = ss_state_chain_prev(f->state, prev, err);
    if (rc) return rc;
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, res->seq);
    rc = collect(f, &ps, &rows, err);
    if (rc) goto out;
    rc = eng_tmpfile(f, &fd, err);
    if (rc) goto out;
    rc = encode(f, res->seq, chain, prev, &ps, rows, fd, err);
    if (rc) goto out;
    res->paths = rows;
    size = lseek(fd, 0, SEEK_END);
    res->bytes = size > 0 ? (uint64_t)size : 0;
    ss_fault_point("checkpoint.before-put");
    rc = ss_store_put_file(f->store, key, fd, 0, res->bytes, SS_PUT_CREATE_ONLY, err);
    if (rc == SS_ERR_EXISTS) { /* another device wrote state(seq) first: the same state */
        res->existed = 1;
        rc = SS_OK;
    }
    if (rc) goto out;
    ss_fault_point("checkpoint.after-put");
    eng_checkpoint_remember(f, res->seq, 0);
out:
    free(ps.keys);
    if (fd >= 0) close(fd);
    return rc;
}
/* --- the automatic rule (C3) ------------------------------------------------------------- */

/* The folder's setting (s3sync config), else the variable, else dflt. */
static uint64_t setting(ss_folder *f, const char *key, const char *env, uint64_t dflt)
{
    char buf[32]; /* a number: a longer value is passed over */
    const char *v = ss_folder_setting(f, key, buf, sizeof buf) ? buf : getenv(env);
    char *end = NULL;
    unsigned long long n;
    if (!v || !*v) return dflt;
    errno = 0;
    n = strtoull(v, &end, 10);
    return errno || *end ? dflt : (uint64_t)n;
}

static uint64_t meta_u64(ss_folder *f, const char *k)
{
    char *v = NULL;
    uint64_t n = 0;
    if (!ss_state_meta_get(f->state, k, &v, NULL) && v) n = strtoull(v, NULL, 10);
    free(v);
    return n;
}

void eng_checkpoint_count(ss_folder *f, uint64_t log_bytes)
{
    char v[U64_TEXT];
    if (!log_bytes) return;
    snprintf(v, sizeof v, "%" PRIu64, meta_u64(f, META_BYTES) + log_bytes);
    ss_state_meta_set(f->state, META_BYTES, v, NULL);
}

static int due(uint64_t seq, uint64_t cp, uint64_t bytes, uint64_t every_txns, uint64_t every_bytes)
{
    return (every_txns && seq >= cp + every_txns) || (every_bytes && bytes >= every_bytes);
}

void eng_checkpoint_auto(ss_folder *f, uint64_t seq)
{
    uint64_t every_txns =
        setting(f, "checkpoint_txns", SS_CHECKPOINT_TXNS_ENV, SS_CHECKPOINT_EVERY_TXNS);
    uint64_t every_bytes =
        setting(f, "checkpoint_bytes", SS_CHECKPOINT_BYTES_ENV, SS_CHECKPOINT_EVERY_BYTES);
    uint64_t cp = meta_u64(f, META_SEQ), bytes;
    eng_log_list l = {0};
    ss_checkpoint_result res = {0};
    ss_err err = {{0}};
    ss_rc rc = SS_OK;
    bytes = meta_u64(f, META_BYTES);
    if (!due(seq, cp, bytes, every_txns, every_bytes)) return;
    /* Another device may have written one since: one LIST, only when the rule may fire. */
    rc = eng_list_checkpoints(f, &l, &err);
    if (rc) goto out;
    if (l.n && l.seqs[l.n - 1] > cp) {
        cp = l.seqs[l.n - 1];
        bytes = 0; /* the log bytes after it are not known here: counted again from now */
        eng_checkpoint_remember(f, cp, bytes);
    }
    if (due(seq, cp, bytes, every_txns, every_bytes)) rc = eng_checkpoint_write(f, &res, &err);
out:
    eng_log_list_free(&l);
    if (rc && f->hooks.warn) {
        char msg[sizeof err.msg + 64]; /* err's and the sentence before it */
        snprintf(msg, sizeof msg, "no checkpoint written after this push: %s", err.msg);
        f->hooks.warn(f->hooks.ctx, msg);
    }
}
