/*
 * txn_read: reading a log object and checking it before anything of it is
 * used (pull's P1 and P5, see apply.c): fetch and verify its frame and the
 * hash chain, staging the plaintext in a temp file; open a transaction
 * reader on the staged plaintext; decode every op and chunk ref once and
 * check content ids, device entries and the signature.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dirmodes.h"
#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "fsio.h"
#include "path.h"
#include "seal.h"
#include "ss_buf.h"

/* --- fetch and verify one transaction (P1) -------------------------------------------- */

typedef struct feed {
    ss_frame_reader *r;
    ss_err err;
    ss_rc rc;
    uint64_t bytes;
} feed;

static int feed_frame(void *ctx, const void *buf, size_t len)
{
    feed *fd = ctx;
    fd->bytes += len;
    fd->rc = ss_frame_feed(fd->r, buf, len, &fd->err);
    return fd->rc ? -1 : 0;
}

/* One try at log/<seq>: *ret_reader kept for its header's epoch when the try failed. */
static ss_rc fetch_once(ss_folder *f, const char *key, uint64_t seq,
                        const uint8_t prev[SS_CHAIN_BYTES], const void *obj, size_t obj_len,
                        int stage, feed *fd, uint8_t hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_rc rc;
    rc = ss_frame_reader_new(ss_repo_keys(f->repo), SS_FRAME_KIND_LOG, key, seq, prev,
                             SS_TXN_PLAIN_MAX, ss_fd_sink, &stage, &fd->r, err);
    if (rc) return rc;
    fd->bytes = obj_len;
    if (obj) /* fetched already (prefetch.c fetches several at once) */
        rc = ss_frame_feed(fd->r, obj, obj_len, err);
    else
        rc = ss_store_get_stream(f->store, key, 0, SS_TO_END, feed_frame, fd, err);
    if (fd->rc) {
        rc = fd->rc;
        if (err) *err = fd->err;
    }
    if (rc) return rc;
    return ss_frame_end(fd->r, hash, err);
}

ss_rc eng_fetch_txn(ss_folder *f, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES], const void *obj,
                    size_t obj_len, int *ret_fd, uint8_t chain[SS_CHAIN_BYTES],
                    ss_state_applied *ret_obj, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    feed fd = {0};
    int stage = -1;
    ss_rc rc;
    *ret_fd = -1;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    rc = eng_tmpfile(f, &stage, err);
    if (rc) goto fail;
    rc = fetch_once(f, key, seq, prev, obj, obj_len, stage, &fd, hash, err);
    if (rc == SS_ERR_EPOCH) { /* an epoch not held yet: learn it, then read again */
        rc = eng_epoch_learn(f, SS_FRAME_KIND_LOG, fd.r, seq, err);
        if (rc) goto fail;
        rc = eng_tmp_rewind(stage, err);
        if (rc) goto fail;
        ss_frame_reader_free(fd.r);
        fd = (feed){0};
        rc = fetch_once(f, key, seq, prev, obj, obj_len, stage, &fd, hash, err);
    }
    if (rc) goto fail;
    ss_frame_reader_free(fd.r);
    ss_chain_next(ss_repo_keys(f->repo), prev, hash, chain);
    if (ret_obj) {
        *ret_obj = (ss_state_applied){.seq = seq, .size = fd.bytes};
        memcpy(ret_obj->hash, hash, sizeof hash);
    }
    *ret_fd = stage;
    return SS_OK;
fail:
    ss_frame_reader_free(fd.r);
    if (stage >= 0) close(stage);
    return rc;
}

/* --- the staged transaction's ops --------------------------------------------------------- */

static long staged_read(void *ctx, void *buf, size_t len)
{
    eng_txn_iter *it = ctx;
    ssize_t n = pread(it->fd, buf, len, (off_t)it->pos);
    if (n < 0) return -1;
    it->pos += (uint64_t)n;
    return (long)n;
}

ss_rc eng_txn_open(eng_txn_iter *it, ss_folder *f, int fd, uint64_t seq, ss_err *err)
{
    uint64_t claimed;
    ss_rc rc;
    *it = (eng_txn_iter){.fd = fd, .src = {staged_read, NULL, it}};
    rc = ss_txn_reader_new(&f->limits, &it->src, &it->r, err);
    if (rc) return rc;
    claimed = ss_txn_reader_header(it->r)->seq;
    if (claimed == seq) return SS_OK;
    eng_txn_close(it);
    return ss_fail(err, SS_ERR_INTEGRITY, "log/%020" PRIu64 " claims sequence %" PRIu64, seq,
                   claimed);
}

ss_rc eng_txn_next(eng_txn_iter *it, const ss_txn_entry **ret_entry, ss_err *err)
{
    return ss_txn_next(it->r, ret_entry, err);
}

void eng_txn_close(eng_txn_iter *it)
{
    ss_txn_reader_free(it->r);
    it->r = NULL;
}

ss_rc eng_txn_body(ss_txn_reader *r, ss_state_body *body, ss_err *err)
{
    const ss_txn_header *h = ss_txn_reader_header(r);
    ss_chunk_ref ref;
    ss_rc rc;
    body->len = 0;
    while (ss_txn_chunks_left(r)) {
        rc = ss_txn_next_chunk(r, &ref, err);
        if (rc) return rc;
        if (ss_state_body_add(body, h->pack_keys[ref.pack], &ref))
            return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    return SS_OK;
}

/* --- checking it (P1, P5) ----------------------------------------------------------------- */

/*
 * Walk every op and chunk once: a malformed op anywhere refuses the whole
 * transaction; then who signed it, and whether they may.
 */
ss_rc eng_check_txn(ss_folder *f, int fd, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES],
                    const ss_devices *table, ss_devices **ret_next, ss_err *err)
{
    ss_devices *next = NULL; /* owned until handed out */
    eng_txn_iter it = {0};
    const ss_txn_entry *e;
    ss_rc rc;
    if (ret_next) *ret_next = NULL;
    rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) goto done;
    for (;;) {
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
        f->prog.files_total++; /* pull's totals grow as each transaction is verified */
        if (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE) f->prog.bytes_total += e->size;
        rc = eng_check_content(f, it.r, e, err);
        if (rc) goto done;
    }
    rc = eng_check_signature(f, table, it.r, fd, prev, &next, err);
    if (rc) goto done;
    rc = eng_epoch_verify_pending(f, seq, next, err);
    if (rc || !ret_next) goto done;
    *ret_next = next;
    next = NULL;
done:
    ss_devices_free(next);
    eng_txn_close(&it);
    if (rc && rc != SS_ERR_NOMEM && rc != SS_ERR_IO) rc = SS_ERR_INTEGRITY;
    if (rc == SS_ERR_INTEGRITY && err && !strstr(err->msg, "log/")) { /* name the object */
        ss_err why = *err;
        ss_fail(err, rc, "log/%020" PRIu64 ": %s", seq, why.msg);
    }
    return rc;
}
