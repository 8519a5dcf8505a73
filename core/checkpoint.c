/*
 * checkpoint: writing, listing and reading checkpoints/<seq> (see
 * checkpoint.h and docs/FORMAT.md "Checkpoints").
 *
 * Design notes.
 *   C1. A checkpoint is written from state.db right after the state reached
 *       the head (a pull, or the push that made it): rows hold exactly what
 *       the store said about each path, so the checkpoint is state(seq), not
 *       the folder. It streams: two passes over the rows (the pack table is
 *       declared before the ops), memory grows with the packs, not the files.
 *   C2. Reading verifies before anything is used, as for log objects: the
 *       frame (bound to the key checkpoints/<seq>), the header, and every op
 *       decoded once (a delete op is refused) before the caller sees it.
 *   C3. The automatic rule never fails a push: the push is committed
 *       already, and a checkpoint can be written by any later run.
 *   C4. verify replays the log into a temporary table (on disk, not in
 *       memory) and compares each later checkpoint with it, path by path:
 *       every path it holds equal (kind, mode, mtime, size, content id,
 *       chunk refs or bytes), and as many paths as the replay.
 *   C5. Crash points (fault.h), for the test that kills a checkpoint write:
 *       checkpoint.before-put (encoded, not created) and checkpoint.after-put
 *       (created, not yet remembered in state.db), on each path that writes
 *       one: the command, gc's first checkpoint, the push rule.
 */
#include "checkpoint.h"

#include <errno.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "ss_buf.h"

#define META_SEQ "checkpoint.seq"     /* the newest checkpoint this device knows of */
#define META_BYTES "checkpoint.bytes" /* log bytes this device saw after it */

/* --- listing --------------------------------------------------------------------------- */

ss_rc eng_list_checkpoints(ss_folder *f, eng_log_list *l, ss_err *err)
{
    ss_rc rc;
    l->prefix = SS_KEY_CHECKPOINTS_PREFIX;
    rc = ss_store_list(f->store, SS_KEY_CHECKPOINTS_PREFIX, "", eng_collect_seq, l, err);
    if (rc) return rc;
    if (l->bad == 2) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (l->bad) return ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s", l->bad_key);
    return SS_OK;
}

/* --- reading (C2) ------------------------------------------------------------------------ */

typedef struct cp_sink {
    int fd;
    uint8_t hdr[SS_CHECKPOINT_HEADER_BYTES];
    size_t got; /* header bytes seen */
} cp_sink;

/* The header into hdr, the transaction after it into the stage. */
static int cp_write(void *ctx, const void *buf, size_t len)
{
    cp_sink *s = ctx;
    const uint8_t *p = buf;
    if (s->got < sizeof s->hdr) {
        size_t n = sizeof s->hdr - s->got < len ? sizeof s->hdr - s->got : len;
        memcpy(s->hdr + s->got, p, n);
        s->got += n;
        p += n;
        len -= n;
    }
    return len ? ss_fd_sink(&s->fd, p, len) : 0;
}

typedef struct cp_feed {
    ss_frame_reader *r;
    ss_err err;
    ss_rc rc;
} cp_feed;

static int cp_feed_frame(void *ctx, const void *buf, size_t len)
{
    cp_feed *fd = ctx;
    fd->rc = ss_frame_feed(fd->r, buf, len, &fd->err);
    return fd->rc ? -1 : 0;
}

static ss_rc check_header(const char *key, const cp_sink *s, ss_err *err)
{
    static const uint8_t zero[3] = {0};
    if (s->got < sizeof s->hdr)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: shorter than a checkpoint header", key);
    if (memcmp(s->hdr, SS_CHECKPOINT_MAGIC, 4))
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: not a checkpoint (bad magic)", key);
    if (s->hdr[SS_CHECKPOINT_OFF_VERSION] != SS_CHECKPOINT_VERSION)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: checkpoint version %u is not supported", key,
                       s->hdr[SS_CHECKPOINT_OFF_VERSION]);
    if (memcmp(s->hdr + SS_CHECKPOINT_OFF_ZERO, zero, sizeof zero))
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: nonzero reserved header bytes", key);
    return SS_OK;
}

/* Every op decoded once; upserts only; then its device table and signature (C2). */
static ss_rc check_ops(ss_folder *f, const char *key, int fd, uint64_t seq, const uint8_t chain[32],
                       uint64_t *ret_time, ss_devices **ret_table, ss_err *err)
{
    ss_devices *table = NULL; /* owned until handed out */
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    ss_txn_reader *r = NULL; /* owned */
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(f, &src, &rd, seq, &r, err);
    if (!rc && ret_time) *ret_time = ss_txn_reader_header(r)->time_ns;
    while (!rc && !(rc = ss_txn_next(r, &e, err)) && e)
        if (e->type != SS_TXN_UPSERT)
            rc = ss_fail(err, SS_ERR_INTEGRITY, "%s: a checkpoint holds a delete (%s)", key,
                         e->path);
    if (!rc) rc = eng_checkpoint_table(f, r, fd, chain, &table, err);
    if (!rc && ret_table) {
        *ret_table = table;
        table = NULL;
    }
    ss_devices_free(table);
    ss_txn_reader_free(r);
    if (rc && rc != SS_ERR_NOMEM && rc != SS_ERR_IO) {
        if (err && !strstr(err->msg, key)) {
            ss_err inner = *err;
            ss_fail(err, SS_ERR_INTEGRITY, "%s: %s", key, inner.msg);
        }
        rc = SS_ERR_INTEGRITY;
    }
    return rc;
}

ss_rc eng_fetch_checkpoint(ss_folder *f, uint64_t seq, int *ret_fd, uint8_t ret_chain[32],
                           uint64_t *ret_time_ns, ss_devices **ret_table, ss_err *err)
{
    static const uint8_t zero_chain[SS_CHAIN_BYTES] = {0};
    char key[SS_KEY_NAME_MAX];
    cp_sink sink = {.fd = -1};
    cp_feed fd = {0};
    ss_rc rc;
    *ret_fd = -1;
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    if ((rc = eng_tmpfile(f, &sink.fd, err)) ||
        (rc =
             ss_frame_reader_new(ss_repo_keys(f->repo), SS_FRAME_KIND_CHECKPOINT, key, seq,
                                 zero_chain, SS_CHECKPOINT_PLAIN_MAX, cp_write, &sink, &fd.r, err)))
        goto fail;
    rc = ss_store_get_stream(f->store, key, 0, SS_TO_END, cp_feed_frame, &fd, err);
    if (fd.rc) {
        rc = fd.rc;
        if (err) *err = fd.err;
    }
    if (!rc) rc = ss_frame_end(fd.r, NULL, err);
    if (!rc) rc = check_header(key, &sink, err);
    if (!rc)
        rc = check_ops(f, key, sink.fd, seq, sink.hdr + SS_CHECKPOINT_OFF_CHAIN, ret_time_ns,
                       ret_table, err);
    if (rc) goto fail;
    ss_frame_reader_free(fd.r);
    memcpy(ret_chain, sink.hdr + SS_CHECKPOINT_OFF_CHAIN, SS_CHAIN_BYTES);
    *ret_fd = sink.fd;
    return SS_OK;
fail:
    ss_frame_reader_free(fd.r);
    if (sink.fd >= 0) close(sink.fd);
    return rc;
}

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
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        void *nv = realloc(ps->keys, cap * sizeof *ps->keys);
        if (!nv) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        ps->keys = nv;
        ps->cap = cap;
    }
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
    while (!rc && !(rc = ss_state_iter_next(it, &row, err)) && row) {
        const char *pack;
        size_t pos = 0, len;
        ss_chunk_ref ref;
        rows++;
        if (row->kind != SS_TXN_FILE || row->storage != SS_TXN_CHUNKS) continue;
        while (!rc && eng_body_next(row->body, row->body_len, &pos, &pack, &len, &ref))
            rc = packs_add(ps, pack, len, err);
    }
    ss_state_iter_free(it);
    if (rc) return rc;
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
               eng_body_next(row->body, row->body_len, &pos, &pack, &len, &ref))
            e.n_chunks++;
    } else if (row->kind == SS_TXN_SYMLINK) {
        e.target = row->body;
    } else {
        e.size = 0;
    }
    if ((rc = ss_txn_put_upsert(tw, &e, err))) return rc;
    for (pos = 0;
         !rc && e.n_chunks && eng_body_next(row->body, row->body_len, &pos, &pack, &len, &ref);) {
        char k[SS_TXN_PACK_KEY_LEN + 1];
        const char(*hit)[SS_TXN_PACK_KEY_LEN + 1];
        snprintf(k, sizeof k, "%.*s", (int)len, pack);
        hit = bsearch(k, ps->keys, ps->n, sizeof *ps->keys, key_cmp);
        ref.pack = (uint32_t)(hit - ps->keys);
        rc = ss_txn_put_chunk(tw, &ref, err);
    }
    return rc;
}

typedef struct frame_out {
    ss_frame_writer *w;
    ss_err err;
} frame_out;

static int to_frame(void *ctx, const void *buf, size_t len)
{
    frame_out *o = ctx;
    return ss_frame_write(o->w, buf, len, &o->err) ? -1 : 0;
}

/* Pass 2: header, then every row as an upsert, framed into the temp file fd. */
static ss_rc encode(ss_folder *f, uint64_t seq, const uint8_t chain[32], const packset *ps,
                    uint32_t rows, int fd, ss_err *err)
{
    static const uint8_t zero_chain[SS_CHAIN_BYTES] = {0};
    char key[SS_KEY_NAME_MAX];
    uint8_t hdr[SS_CHECKPOINT_HEADER_BYTES] = {0};
    const char **table = calloc(ps->n + 1, sizeof *table); /* owned */
    ss_txn_header h = {.seq = seq, .n_packs = (uint32_t)ps->n, .pack_keys = table, .n_ops = rows};
    ss_txn_device *devs = NULL; /* owned */
    frame_out out = {0};
    eng_signer sg;
    ss_txn_writer *tw = NULL; /* owned */
    ss_state_iter *it = NULL; /* owned */
    const ss_state_row *row;
    struct timespec now;
    ss_rc rc;
    if (!table) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if ((rc = ss_devices_entries(f->devices, &devs, &h.n_devices, err))) {
        free(table);
        return rc;
    }
    h.devices = devs;
    eng_signer_init(&sg, f, SS_FRAME_KIND_CHECKPOINT, seq, chain, to_frame, &out);
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
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    if (!(rc = ss_frame_writer_new(ss_repo_keys(f->repo), SS_FRAME_KIND_CHECKPOINT, key, seq,
                                   zero_chain, (int)ss_repo_config(f->repo)->zstd_level, ss_fd_sink,
                                   &fd, &out.w, err)) &&
        !(rc = ss_frame_write(out.w, hdr, sizeof hdr, err)) &&
        !(rc = ss_txn_writer_new(&f->limits, &h, eng_signer_write, &sg, &tw, err)) &&
        !(rc = ss_state_iter_new(f->state, &it, err)))
        while (!(rc = ss_state_iter_next(it, &row, err)) && row)
            if ((rc = put_row(tw, ps, row, err))) break;
    if (!rc) rc = ss_txn_writer_finish(tw, eng_signer_sign, &sg, err);
    if (!rc) rc = ss_frame_finish(out.w, NULL, err);
    if (rc == SS_ERR_IO && out.err.msg[0] && err) *err = out.err;
    ss_state_iter_free(it);
    ss_txn_writer_free(tw);
    ss_frame_writer_free(out.w);
    free(devs);
    free(table);
    return rc;
}

static void remember(ss_folder *f, uint64_t seq, uint64_t bytes)
{
    char v[32];
    snprintf(v, sizeof v, "%" PRIu64, seq);
    ss_state_meta_set(f->state, META_SEQ, v, NULL);
    snprintf(v, sizeof v, "%" PRIu64, bytes);
    ss_state_meta_set(f->state, META_BYTES, v, NULL);
}

/* checkpoints/<watermark> from the state (C1). */
static ss_rc write_checkpoint(ss_folder *f, ss_checkpoint_result *res, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t chain[32];
    packset ps = {0};
    uint32_t rows = 0;
    int fd = -1; /* owned */
    off_t size;
    ss_rc rc;
    if ((rc = ss_state_watermark(f->state, &res->seq, chain, err))) return rc;
    if (!res->seq) return ss_fail(err, SS_ERR_INVALID, "nothing to checkpoint: no transaction yet");
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, res->seq);
    if ((rc = collect(f, &ps, &rows, err)) || (rc = eng_tmpfile(f, &fd, err)) ||
        (rc = encode(f, res->seq, chain, &ps, rows, fd, err)))
        goto out;
    res->paths = rows;
    size = lseek(fd, 0, SEEK_END);
    res->bytes = size > 0 ? (uint64_t)size : 0;
    ss_fault_point("checkpoint.before-put");
    rc = ss_store_put_file(f->store, key, fd, 0, res->bytes, SS_PUT_CREATE_ONLY, err);
    if (rc == SS_ERR_EXISTS) { /* another device wrote state(seq) first: the same state */
        res->existed = 1;
        rc = SS_OK;
    }
    if (!rc) ss_fault_point("checkpoint.after-put");
    if (!rc) remember(f, res->seq, 0);
out:
    free(ps.keys);
    if (fd >= 0) close(fd);
    return rc;
}

/*
 * Readers check who signed a checkpoint, so a device that signed nothing yet
 * enrolls first (a transaction of its enrollment alone), unless the state
 * at the head has its checkpoint already: then there is nothing to write.
 */
static ss_rc enroll_unless_written(ss_folder *f, ss_checkpoint_result *res, ss_stats *stats,
                                   ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t chain[32];
    ss_store_stat st;
    ss_rc rc = ss_state_watermark(f->state, &res->seq, chain, err);
    if (rc || !res->seq) return rc;
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, res->seq);
    rc = ss_store_head(f->store, key, &st, err);
    if (!rc) {
        res->existed = 1;
        remember(f, res->seq, 0);
        return SS_OK;
    }
    return rc == SS_ERR_NOT_FOUND ? eng_push_enroll(f, stats, err) : rc;
}

ss_rc ss_checkpoint(ss_folder *f, ss_checkpoint_result *ret_result, ss_stats *stats, ss_err *err)
{
    ss_rc rc;
    memset(ret_result, 0, sizeof *ret_result);
    rc = ss_pull(f, stats, err);
    if (!rc && !ss_devices_find(f->devices, f->device_id))
        rc = enroll_unless_written(f, ret_result, stats, err);
    if (!rc && !ret_result->existed) rc = write_checkpoint(f, ret_result, err);
    stats->seq = ret_result->seq;
    stats->requests = ss_store_counts(f->store)->requests;
    stats->bytes_up = ss_store_counts(f->store)->bytes_up;
    stats->bytes_down = ss_store_counts(f->store)->bytes_down;
    return rc;
}

/* --- the automatic rule (C3) ------------------------------------------------------------- */

/* The folder's setting (s3sync config), else the variable, else dflt. */
static uint64_t setting(ss_folder *f, const char *key, const char *env, uint64_t dflt)
{
    char buf[32];
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
    char v[32];
    if (!log_bytes) return;
    snprintf(v, sizeof v, "%" PRIu64, meta_u64(f, META_BYTES) + log_bytes);
    ss_state_meta_set(f->state, META_BYTES, v, NULL);
}

static int due(uint64_t seq, uint64_t cp, uint64_t bytes, uint64_t every_txns, uint64_t every_bytes)
{
    return (every_txns && seq >= cp + every_txns) || (every_bytes && bytes >= every_bytes);
}

void eng_checkpoint_auto(ss_folder *f, uint64_t seq, uint64_t log_bytes)
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
    eng_checkpoint_count(f, log_bytes);
    bytes = meta_u64(f, META_BYTES);
    if (!due(seq, cp, bytes, every_txns, every_bytes)) return;
    /* Another device may have written one since: one LIST, only when the rule may fire. */
    if ((rc = eng_list_checkpoints(f, &l, &err))) goto out;
    if (l.n && l.seqs[l.n - 1] > cp) {
        cp = l.seqs[l.n - 1];
        bytes = 0; /* the log bytes after it are not known here: counted again from now */
        remember(f, cp, bytes);
    }
    if (due(seq, cp, bytes, every_txns, every_bytes)) rc = write_checkpoint(f, &res, &err);
out:
    eng_log_list_free(&l);
    if (rc && f->hooks.warn) {
        char msg[sizeof err.msg + 64];
        snprintf(msg, sizeof msg, "no checkpoint written after this push: %s", err.msg);
        f->hooks.warn(f->hooks.ctx, msg);
    }
}

/* --- a replayed state, for verify (C4) ------------------------------------------------ */

#define UNDER "(path > ?1 || '/' AND path < ?1 || '0')"

enum { R_PUT, R_DROP_TREE, R_DROP_BELOW, R_GET, R_COUNT_ROWS, R_N };

static const char *const replay_sql[R_N] = {
    [R_PUT] = "INSERT OR REPLACE INTO st VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [R_DROP_TREE] = "DELETE FROM st WHERE path = ?1 OR " UNDER,
    [R_DROP_BELOW] = "DELETE FROM st WHERE " UNDER,
    [R_GET] = "SELECT kind, mode, mtime_s, mtime_ns, size, cid, body FROM st WHERE path = ?1",
    [R_COUNT_ROWS] = "SELECT count(*) FROM st",
};

struct eng_replay {
    sqlite3 *db;
    sqlite3_stmt *q[R_N];
    eng_body body; /* the current entry's: chunk refs, inline bytes or target */
};

ss_rc eng_replay_new(eng_replay **ret, ss_err *err)
{
    eng_replay *rp = calloc(1, sizeof *rp);
    ss_rc rc;
    *ret = NULL;
    if (!rp) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = eng_tempdb_open("CREATE TABLE st(path TEXT PRIMARY KEY, kind INTEGER, mode INTEGER,"
                         "  mtime_s INTEGER, mtime_ns INTEGER, size INTEGER, cid BLOB, body BLOB)"
                         "  WITHOUT ROWID;",
                         &rp->db, err);
    for (int i = 0; !rc && i < R_N; i++)
        if (sqlite3_prepare_v2(rp->db, replay_sql[i], -1, &rp->q[i], NULL))
            rc = eng_tempdb_fail(rp->db, "prepare", err);
    if (rc) {
        eng_replay_free(rp);
        return rc;
    }
    *ret = rp;
    return SS_OK;
}

void eng_replay_free(eng_replay *rp)
{
    if (!rp) return;
    for (int i = 0; i < R_N; i++)
        sqlite3_finalize(rp->q[i]);
    sqlite3_close(rp->db);
    eng_body_free(&rp->body);
    free(rp);
}

static ss_rc rstep(eng_replay *rp, int q, ss_err *err)
{
    int r = sqlite3_step(rp->q[q]);
    sqlite3_reset(rp->q[q]);
    return r == SQLITE_DONE || r == SQLITE_ROW ? SS_OK : eng_tempdb_fail(rp->db, "replay", err);
}

/* The entry's body into rp->body: chunk refs with their pack keys, inline bytes, or target. */
static ss_rc entry_body(eng_replay *rp, const ss_txn_header *h, ss_txn_reader *r,
                        const ss_txn_entry *e, ss_err *err)
{
    ss_chunk_ref ref;
    ss_rc rc = SS_OK;
    rp->body.len = 0;
    if (e->kind == SS_TXN_FILE && e->storage == SS_TXN_CHUNKS) {
        while (!rc && ss_txn_chunks_left(r) && !(rc = ss_txn_next_chunk(r, &ref, err)))
            if (eng_body_add(&rp->body, h->pack_keys[ref.pack], &ref))
                rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        return rc;
    }
    const void *p = e->kind == SS_TXN_SYMLINK ? (const void *)e->target
                    : e->kind == SS_TXN_FILE  ? (const void *)e->inline_data
                                              : NULL;
    size_t n = e->kind == SS_TXN_DIR ? 0 : (size_t)e->size;
    if (n && (rp->body.cap < n)) {
        unsigned char *np = realloc(rp->body.p, n);
        if (!np) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        rp->body.p = np;
        rp->body.cap = n;
    }
    if (n) memcpy(rp->body.p, p, n);
    rp->body.len = n;
    return SS_OK;
}

const eng_body *eng_replay_body(const eng_replay *rp)
{
    return &rp->body;
}

ss_rc eng_replay_op(eng_replay *rp, const ss_txn_header *h, ss_txn_reader *r, const ss_txn_entry *e,
                    ss_err *err)
{
    sqlite3_stmt *q = rp->q[R_PUT];
    int drop = e->type == SS_TXN_DELETE ? R_DROP_TREE : e->kind != SS_TXN_DIR ? R_DROP_BELOW : -1;
    ss_rc rc = SS_OK;
    rp->body.len = 0;
    if (drop >= 0) {
        sqlite3_bind_text(rp->q[drop], 1, e->path, (int)e->path_len, SQLITE_STATIC);
        if ((rc = rstep(rp, drop, err))) return rc;
    }
    if (e->type == SS_TXN_DELETE || (rc = entry_body(rp, h, r, e, err))) return rc;
    sqlite3_bind_text(q, 1, e->path, (int)e->path_len, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, (int)e->kind);
    sqlite3_bind_int64(q, 3, e->mode);
    sqlite3_bind_int64(q, 4, e->mtime_s);
    sqlite3_bind_int64(q, 5, e->mtime_ns);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)(e->kind == SS_TXN_DIR ? 0 : e->size));
    if (e->kind == SS_TXN_FILE)
        sqlite3_bind_blob(q, 7, e->content_id, 32, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 7);
    sqlite3_bind_blob(q, 8, rp->body.p ? (const void *)rp->body.p : "", (int)rp->body.len,
                      SQLITE_STATIC);
    return rstep(rp, R_PUT, err);
}

/* The replayed row of e->path equals e (body: rp->body). */
static int same_row(eng_replay *rp, const ss_txn_entry *e)
{
    sqlite3_stmt *q = rp->q[R_GET];
    int same;
    sqlite3_bind_text(q, 1, e->path, (int)e->path_len, SQLITE_STATIC);
    same = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == (int)e->kind &&
           (uint32_t)sqlite3_column_int64(q, 1) == e->mode &&
           sqlite3_column_int64(q, 2) == e->mtime_s &&
           (uint32_t)sqlite3_column_int64(q, 3) == e->mtime_ns &&
           (uint64_t)sqlite3_column_int64(q, 4) == (e->kind == SS_TXN_DIR ? 0 : e->size) &&
           (e->kind != SS_TXN_FILE || (sqlite3_column_bytes(q, 5) == 32 &&
                                       !memcmp(sqlite3_column_blob(q, 5), e->content_id, 32))) &&
           (size_t)sqlite3_column_bytes(q, 6) == rp->body.len &&
           (!rp->body.len || !memcmp(sqlite3_column_blob(q, 6), rp->body.p, rp->body.len));
    sqlite3_reset(q);
    return same;
}

ss_rc eng_replay_compare(ss_folder *f, eng_replay *rp, int fd, uint64_t seq, char **ret_diff,
                         ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    ss_txn_reader *r = NULL; /* owned */
    const ss_txn_entry *e;
    uint64_t n = 0;
    ss_rc rc = eng_open_txn(f, &src, &rd, seq, &r, err);
    *ret_diff = NULL;
    while (!rc && !*ret_diff && !(rc = ss_txn_next(r, &e, err)) && e) {
        n++;
        if ((rc = entry_body(rp, ss_txn_reader_header(r), r, e, err))) break;
        if (!same_row(rp, e) && !(*ret_diff = strdup(e->path)))
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (!rc && !*ret_diff) { /* every path it holds matches: then it must hold as many */
        if (sqlite3_step(rp->q[R_COUNT_ROWS]) == SQLITE_ROW &&
            (uint64_t)sqlite3_column_int64(rp->q[R_COUNT_ROWS], 0) != n &&
            !(*ret_diff = strdup("(a path it lacks)")))
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        sqlite3_reset(rp->q[R_COUNT_ROWS]);
    }
    ss_txn_reader_free(r);
    return rc;
}
