/*
 * txn_write: the transaction encoder.
 *
 * Owns turning a header, ops and chunk refs into the bytes of
 * docs/FORMAT.md "Transactions". Every put runs the decoder's own rules
 * (txn_impl.h) first and refuses with SS_ERR_INVALID, so what it writes
 * always decodes. Output goes through one fixed buffer to the caller's sink,
 * so memory does not grow with the number of ops or chunks.
 */
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"
#include "txn_impl.h"

struct ss_txn_writer {
    ss_txn_limits lim;
    ss_write_fn out;
    void *ctx;
    uint64_t seq;
    uint32_t n_packs, n_ops, op_i; /* op_i: ops put so far */
    uint32_t chunks_left, chunk_i;
    uint64_t plain_left;
    ss_rc failed; /* sticky */
    int finished;
    ss_txn_order order;
    size_t len;
    uint8_t buf[SS_TXN_IO_BUF];
};

/* Fails w for op number op_no (1-based), naming path when there is one. */
static ss_rc w_fail(ss_txn_writer *w, ss_err *err, uint32_t op_no, const char *path, size_t plen,
                    const char *why)
{
    char q[160];
    w->failed = SS_ERR_INVALID;
    if (!path)
        return ss_fail(err, SS_ERR_INVALID, "transaction writer: op %u/%u: %s", op_no, w->n_ops,
                       why);
    return ss_fail(err, SS_ERR_INVALID, "transaction writer: op %u/%u %s: %s", op_no, w->n_ops,
                   ss_path_quote(q, sizeof q, path, plen), why);
}

/* The same, for the chunked file put last (its path is the order's previous one). */
static ss_rc w_fail_chunk(ss_txn_writer *w, ss_err *err, const char *why)
{
    char msg[SS_TXN_WHY + 32]; /* room for the "chunk N/M: " before why */
    snprintf(msg, sizeof msg, "chunk %u/%u: %s", w->chunk_i + 1, w->chunk_i + w->chunks_left, why);
    return w_fail(w, err, w->op_i, w->order.prev, w->order.prev_len, msg);
}

static ss_rc w_flush(ss_txn_writer *w, ss_err *err)
{
    if (w->len && w->out(w->ctx, w->buf, w->len) != 0) {
        w->failed = SS_ERR_IO;
        return ss_fail(err, SS_ERR_IO, "transaction writer: output refused %zu bytes", w->len);
    }
    w->len = 0;
    return SS_OK;
}

static ss_rc emit(ss_txn_writer *w, const void *data, size_t n, ss_err *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        if (w->len == sizeof w->buf) {
            ss_rc rc = w_flush(w, err);
            if (rc) return rc;
        }
        size_t k = sizeof w->buf - w->len < n ? sizeof w->buf - w->len : n;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
    }
    return SS_OK;
}

static ss_rc w_check_header(const ss_txn_limits *lim, const ss_txn_header *h, ss_err *err)
{
    char why[SS_TXN_WHY];
    if (!h) return ss_fail(err, SS_ERR_INVALID, "transaction writer: header missing");
    if (h->seq == 0) return ss_fail(err, SS_ERR_INVALID, "transaction writer: sequence 0");
    if (ss_txn_name_fault(h->device_name, h->device_name_len, why))
        return ss_fail(err, SS_ERR_INVALID, "transaction writer: %s", why);
    if (h->n_packs > ss_txn_max_packs(lim))
        return ss_fail(err, SS_ERR_INVALID, "transaction writer: %u packs, above the limit %u",
                       h->n_packs, ss_txn_max_packs(lim));
    if (h->n_packs && !h->pack_keys)
        return ss_fail(err, SS_ERR_INVALID, "transaction writer: pack keys missing");
    for (uint32_t i = 0; i < h->n_packs; i++) {
        const char *k = h->pack_keys[i] ? h->pack_keys[i] : "";
        if (ss_txn_pack_key_fault(k, strlen(k), h->seq, why))
            return ss_fail(err, SS_ERR_INVALID, "transaction writer: pack %u: %s", i, why);
    }
    if (h->n_devices > SS_TXN_MAX_DEVICES || (h->n_devices && !h->devices))
        return ss_fail(err, SS_ERR_INVALID, "transaction writer: %u device entries, at most %u",
                       h->n_devices, SS_TXN_MAX_DEVICES);
    for (uint32_t i = 0; i < h->n_devices; i++)
        if (ss_txn_device_fault(i ? &h->devices[i - 1] : NULL, &h->devices[i], h->seq, why))
            return ss_fail(err, SS_ERR_INVALID, "transaction writer: device entry %u: %s", i + 1,
                           why);
    return SS_OK;
}

static ss_rc w_device(ss_txn_writer *w, const ss_txn_device *d, ss_err *err)
{
    uint8_t b[SS_TXN_DEV_FIXED + SS_DEVICE_PK_BYTES + 2];
    size_t n = SS_TXN_DEV_FIXED;
    b[0] = d->type;
    memcpy(b + 1, d->id, SS_TXN_DEVICE_ID_BYTES);
    ss_le_put64(b + 1 + SS_TXN_DEVICE_ID_BYTES, d->seq);
    if (d->type == SS_TXN_DEV_ENROLL) {
        memcpy(b + n, d->pk, SS_DEVICE_PK_BYTES);
        ss_le_put16(b + n + SS_DEVICE_PK_BYTES, (uint16_t)d->name_len);
        n += SS_DEVICE_PK_BYTES + 2;
    } else if (d->type == SS_TXN_DEV_POLICY) {
        b[n++] = d->mode;
    }
    ss_rc rc = emit(w, b, n, err);
    if (rc) return rc;
    if (d->type != SS_TXN_DEV_ENROLL) return SS_OK;
    return emit(w, d->name, d->name_len, err);
}

static ss_rc w_header(ss_txn_writer *w, const ss_txn_header *h, ss_err *err)
{
    uint8_t b[SS_TXN_HEADER_FIXED + 2], *p = b;
    memcpy(p, SS_TXN_MAGIC, 4);
    p[4] = SS_TXN_VERSION;
    p[5] = p[6] = p[7] = 0;
    p = ss_le_put64(p + 8, h->seq);
    p = ss_le_put64(p, h->time_ns);
    memcpy(p, h->device_id, SS_TXN_DEVICE_ID_BYTES);
    ss_le_put16(p + SS_TXN_DEVICE_ID_BYTES, (uint16_t)h->device_name_len);
    ss_rc rc = emit(w, b, sizeof b, err);
    if (rc) return rc;
    rc = emit(w, h->device_name, h->device_name_len, err);
    if (rc) return rc;
    uint8_t counts[8];
    ss_le_put32(ss_le_put32(counts, h->n_packs), h->n_ops);
    rc = emit(w, counts, sizeof counts, err);
    if (rc) return rc;
    for (uint32_t i = 0; i < h->n_packs; i++) {
        uint8_t len[2];
        ss_le_put16(len, SS_TXN_PACK_KEY_LEN);
        rc = emit(w, len, 2, err);
        if (rc) return rc;
        rc = emit(w, h->pack_keys[i], SS_TXN_PACK_KEY_LEN, err);
        if (rc) return rc;
    }
    uint8_t nd[2];
    ss_le_put16(nd, (uint16_t)h->n_devices);
    rc = emit(w, nd, sizeof nd, err);
    if (rc) return rc;
    for (uint32_t i = 0; i < h->n_devices; i++) {
        rc = w_device(w, &h->devices[i], err);
        if (rc) return rc;
    }
    return SS_OK;
}

ss_rc ss_txn_writer_new(const ss_txn_limits *lim, const ss_txn_header *h, ss_write_fn out,
                        void *ctx, ss_txn_writer **ret_writer, ss_err *err)
{
    ss_txn_writer *w = NULL;
    ss_rc rc;
    *ret_writer = NULL;
    rc = ss_txn_limits_check(lim, err);
    if (rc) goto fail;
    rc = w_check_header(lim, h, err);
    if (rc) goto fail;
    if (!out) {
        rc = ss_fail(err, SS_ERR_INVALID, "transaction writer: no output");
        goto fail;
    }
    w = calloc(1, sizeof *w);
    if (!w) {
        rc = ss_fail(err, SS_ERR_NOMEM, "transaction writer");
        goto fail;
    }
    w->lim = *lim;
    w->out = out;
    w->ctx = ctx;
    w->seq = h->seq;
    w->n_packs = h->n_packs;
    w->n_ops = h->n_ops;
    rc = w_header(w, h, err);
    if (rc) goto fail;
    *ret_writer = w;
    return SS_OK;
fail:
    free(w);
    return rc;
}

/* Refuses a put when the writer failed or finished, or the put is not due. */
static ss_rc w_ready(ss_txn_writer *w, int for_chunk, ss_err *err)
{
    if (w->failed) return ss_fail(err, w->failed, "transaction writer stopped by an earlier error");
    if (w->finished) return ss_fail(err, SS_ERR_INVALID, "transaction writer already finished");
    if (for_chunk && w->chunks_left == 0)
        return w_fail(w, err, w->op_i, NULL, 0, "chunk ref put, but no chunk is due");
    if (!for_chunk && w->chunks_left) return w_fail_chunk(w, err, "missing before the next op");
    if (!for_chunk && w->op_i == w->n_ops)
        return w_fail(w, err, w->op_i + 1, NULL, 0, "more ops than declared");
    return SS_OK;
}

static int upsert_fault(const ss_txn_writer *w, const ss_txn_entry *e, char *why)
{
    if (ss_txn_path_fault(e->path, e->path_len, why) || ss_txn_attr_fault(e, why)) return 1;
    if (e->kind == SS_TXN_FILE) {
        if (ss_txn_file_fault(&w->lim, e, why)) return 1;
        if (e->storage == SS_TXN_INLINE && e->size && !e->inline_data)
            return ss_txn_say(why, "inline bytes missing");
    }
    if (e->kind == SS_TXN_SYMLINK) return ss_txn_target_fault(e->target, (size_t)e->size, why);
    return 0;
}

static ss_rc w_upsert_body(ss_txn_writer *w, const ss_txn_entry *e, ss_err *err)
{
    uint8_t b[SS_TXN_CONTENT_ID_BYTES + 1 + 4], *p = b; /* content id | storage | u32 count */
    ss_rc rc;
    if (e->kind == SS_TXN_DIR) return SS_OK;
    if (e->kind == SS_TXN_SYMLINK) {
        ss_le_put16(b, (uint16_t)e->size);
        rc = emit(w, b, 2, err);
        if (rc) return rc;
        return emit(w, e->target, (size_t)e->size, err);
    }
    memcpy(p, e->content_id, SS_TXN_CONTENT_ID_BYTES);
    p += SS_TXN_CONTENT_ID_BYTES;
    *p++ = (uint8_t)e->storage;
    p = ss_le_put32(p, e->storage == SS_TXN_INLINE ? (uint32_t)e->size : e->n_chunks);
    rc = emit(w, b, (size_t)(p - b), err);
    if (rc) return rc;
    if (e->storage != SS_TXN_INLINE) return SS_OK;
    return emit(w, e->inline_data, (size_t)e->size, err);
}

static ss_rc w_op_head(ss_txn_writer *w, ss_txn_type type, const char *path, size_t len,
                       ss_err *err)
{
    uint8_t b[3];
    b[0] = (uint8_t)type;
    ss_le_put16(b + 1, (uint16_t)len);
    ss_rc rc = emit(w, b, sizeof b, err);
    if (rc) return rc;
    return emit(w, path, len, err);
}

ss_rc ss_txn_put_upsert(ss_txn_writer *w, const ss_txn_entry *e, ss_err *err)
{
    char why[SS_TXN_WHY];
    ss_rc rc = w_ready(w, 0, err);
    if (rc) return rc;
    ss_txn_entry u = *e;
    u.type = SS_TXN_UPSERT;
    if (upsert_fault(w, &u, why) || ss_txn_order_step(&w->order, &u, why))
        return w_fail(w, err, w->op_i + 1, u.path, u.path ? u.path_len : 0, why);
    uint8_t b[SS_TXN_ATTR_BYTES], *p = b;
    *p++ = (uint8_t)u.kind;
    p = ss_le_put32(p, u.mode);
    p = ss_le_put64(p, (uint64_t)u.mtime_s);
    p = ss_le_put32(p, u.mtime_ns);
    ss_le_put64(p, u.size);
    rc = w_op_head(w, SS_TXN_UPSERT, u.path, u.path_len, err);
    if (rc) return rc;
    rc = emit(w, b, sizeof b, err);
    if (rc) return rc;
    rc = w_upsert_body(w, &u, err);
    if (rc) return rc;
    w->op_i++;
    if (u.kind == SS_TXN_FILE && u.storage == SS_TXN_CHUNKS) {
        w->chunks_left = u.n_chunks;
        w->chunk_i = 0;
        w->plain_left = u.size;
    }
    return SS_OK;
}

ss_rc ss_txn_put_chunk(ss_txn_writer *w, const ss_chunk_ref *r, ss_err *err)
{
    char why[SS_TXN_WHY];
    ss_rc rc = w_ready(w, 1, err);
    if (rc) return rc;
    if (ss_txn_chunk_fault(&w->lim, w->n_packs, r, w->plain_left, w->chunks_left == 1, why))
        return w_fail_chunk(w, err, why);
    uint8_t b[SS_TXN_CHUNK_REF_BYTES], *p = b;
    p = ss_le_put32(p, r->pack);
    p = ss_le_put64(p, r->offset);
    p = ss_le_put32(p, r->sealed_len);
    p = ss_le_put32(p, r->plain_len);
    memcpy(p, r->id, SS_CHUNK_ID_LEN);
    rc = emit(w, b, sizeof b, err);
    if (rc) return rc;
    w->chunks_left--;
    w->chunk_i++;
    w->plain_left -= r->plain_len;
    return SS_OK;
}

ss_rc ss_txn_put_delete(ss_txn_writer *w, const char *path, size_t len, ss_err *err)
{
    char why[SS_TXN_WHY];
    ss_rc rc = w_ready(w, 0, err);
    if (rc) return rc;
    ss_txn_entry d = {.type = SS_TXN_DELETE, .path = path, .path_len = len};
    if (ss_txn_path_fault(path, len, why) || ss_txn_order_step(&w->order, &d, why))
        return w_fail(w, err, w->op_i + 1, path, path ? len : 0, why);
    rc = w_op_head(w, SS_TXN_DELETE, path, len, err);
    if (rc) return rc;
    w->op_i++;
    return SS_OK;
}

ss_rc ss_txn_writer_finish(ss_txn_writer *w, ss_txn_sign_fn sign, void *ctx, ss_err *err)
{
    uint8_t sig[SS_TXN_SIG_BYTES];
    if (w->failed) return ss_fail(err, w->failed, "transaction writer stopped by an earlier error");
    if (w->finished) return ss_fail(err, SS_ERR_INVALID, "transaction writer already finished");
    if (w->chunks_left) return w_fail_chunk(w, err, "missing at the end");
    if (w->op_i != w->n_ops) {
        char why[SS_TXN_WHY];
        ss_txn_say(why, "%u ops put, %u declared", w->op_i, w->n_ops);
        return w_fail(w, err, w->op_i, NULL, 0, why);
    }
    if (!sign) return w_fail(w, err, w->op_i, NULL, 0, "no signer");
    ss_rc rc = w_flush(w, err); /* sign sees every byte before the signature */
    if (rc) return rc;
    rc = sign(ctx, sig, err);
    if (rc) {
        w->failed = rc;
        return rc;
    }
    rc = emit(w, sig, sizeof sig, err);
    if (rc) return rc;
    rc = w_flush(w, err);
    if (rc) return rc;
    w->finished = 1;
    return SS_OK;
}

void ss_txn_writer_free(ss_txn_writer *w)
{
    free(w);
}
