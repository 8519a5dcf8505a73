/*
 * txn: the streaming transaction decoder (docs/FORMAT.md "Transactions";
 * the encoder is txn_write.c, the rules both obey txn_rules.c).
 *
 * The decoder pulls bytes through one
 * fixed buffer and keeps per op only the current path, the previous one and
 * one barrier path (for the order checks), a symlink target and the inline
 * bytes (bounded by the inline limit, grown only as bytes arrive). Chunk
 * refs are never stored: each is checked as it is read. The pack table is
 * the one thing held whole, capped by max_packs and grown as it arrives. So
 * memory is bounded by the limits, never by the counts the input declares
 * (invariant 7), and a declared count is trusted for nothing but a loop.
 */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "path.h"
#include "txn_impl.h"

typedef char key_slot[SS_TXN_PACK_KEY_LEN + 1]; /* a pack key and its NUL */

/* ---- decoder ---- */

enum phase { PH_HEADER, PH_PACKS, PH_DEVICES, PH_OPS, PH_CHUNKS, PH_END };

struct ss_txn_reader {
    ss_txn_limits lim;
    ss_reader src;
    ss_txn_header hdr;
    char name[SS_TXN_DEVICE_NAME_MAX + 1];
    key_slot *keys;        /* one per pack */
    size_t keys_cap;       /* slots allocated */
    const char **key_ptrs; /* hdr.pack_keys */
    ss_txn_device *devs;   /* hdr.devices, grown as entries arrive */
    size_t devs_cap;
    uint32_t dev_i;
    uint64_t signed_len; /* bytes before the signature, once read */
    uint8_t sig[SS_TXN_SIG_BYTES];
    enum phase phase;
    uint32_t pack_i, op_i, chunk_i; /* 1-based: the one being read, for messages */
    uint32_t chunks_left;
    uint64_t plain_left; /* bytes of the current file no chunk covered yet */
    int have_path;
    ss_rc failed;    /* sticky */
    uint64_t offset; /* bytes consumed from src */
    ss_txn_entry entry;
    uint8_t *inl; /* inline bytes, <= inline limit */
    size_t inl_cap;
    ss_txn_order order;
    char path[SS_PATH_MAX + 1];
    char target[SS_TXN_TARGET_MAX + 1];
    size_t pos, len;
    int eof;
    uint8_t buf[SS_TXN_IO_BUF];
};

/* Where the reader is, for messages: "op 3/10 "a/b" chunk 2/4". */
static void where(const ss_txn_reader *r, char *dst, size_t cap)
{
    char q[160];
    int n;
    switch (r->phase) {
    case PH_HEADER: snprintf(dst, cap, "header"); return;
    case PH_PACKS: snprintf(dst, cap, "pack %u/%u", r->pack_i, r->hdr.n_packs); return;
    case PH_DEVICES: snprintf(dst, cap, "device entry %u/%u", r->dev_i, r->hdr.n_devices); return;
    case PH_END: snprintf(dst, cap, "after op %u/%u", r->op_i, r->hdr.n_ops); return;
    case PH_OPS:
    case PH_CHUNKS: break;
    }
    n = snprintf(dst, cap, "op %u/%u", r->op_i, r->hdr.n_ops);
    if (n < 0 || (size_t)n >= cap) return;
    if (r->have_path)
        n += snprintf(dst + n, cap - (size_t)n, " %s",
                      ss_path_quote(q, sizeof q, r->path, r->entry.path_len));
    if (n < 0 || (size_t)n >= cap) return;
    if (r->phase == PH_CHUNKS)
        snprintf(dst + n, cap - (size_t)n, " chunk %u/%u", r->chunk_i, r->entry.n_chunks);
}

static ss_rc bad(ss_txn_reader *r, ss_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ss_rc bad(ss_txn_reader *r, ss_err *err, const char *fmt, ...)
{
    char at[256], why[SS_TXN_WHY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    where(r, at, sizeof at);
    r->failed = SS_ERR_INTEGRITY;
    return ss_fail(err, SS_ERR_INTEGRITY, "transaction %s: %s", at, why);
}

static ss_rc fill(ss_txn_reader *r, ss_err *err)
{
    r->pos = r->len = 0;
    if (r->eof) return SS_OK;
    long n = r->src.read(r->src.ctx, r->buf, sizeof r->buf);
    if (n < 0 || (unsigned long)n > sizeof r->buf) {
        r->failed = SS_ERR_IO;
        return ss_fail(err, SS_ERR_IO, "transaction: reading its source failed at byte %llu",
                       (unsigned long long)r->offset);
    }
    r->eof = n == 0;
    r->len = (size_t)n;
    return SS_OK;
}

/* Exactly n bytes into dst; the end of the source before them is truncation. */
static ss_rc rd(ss_txn_reader *r, void *dst, size_t n, const char *what, ss_err *err)
{
    uint8_t *d = dst;
    while (n > 0) {
        if (r->pos == r->len) {
            ss_rc rc = fill(r, err);
            if (rc) return rc;
            if (r->len == 0)
                return bad(r, err, "truncated at byte %llu, in %s", (unsigned long long)r->offset,
                           what);
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, k);
        d += k;
        r->pos += k;
        r->offset += k;
        n -= k;
    }
    return SS_OK;
}

static ss_rc r_name(ss_txn_reader *r, size_t len, ss_err *err)
{
    char why[SS_TXN_WHY];
    if (len > SS_TXN_DEVICE_NAME_MAX)
        return bad(r, err, "device name of %zu bytes, more than %d", len, SS_TXN_DEVICE_NAME_MAX);
    ss_rc rc = rd(r, r->name, len, "the device name", err);
    if (rc) return rc;
    r->name[len] = '\0';
    if (ss_txn_name_fault(r->name, len, why)) return bad(r, err, "%s", why);
    r->hdr.device_name = r->name;
    r->hdr.device_name_len = len;
    return SS_OK;
}

static ss_rc r_header(ss_txn_reader *r, ss_err *err)
{
    uint8_t b[SS_TXN_HEADER_FIXED + 2], c[8];
    ss_rc rc = rd(r, b, sizeof b, "the fixed fields", err);
    if (rc) return rc;
    if (memcmp(b, SS_TXN_MAGIC, 4) != 0) return bad(r, err, "bad magic: not a transaction");
    if (b[4] != SS_TXN_VERSION)
        return bad(r, err, "format version %u, only %d is known", b[4], SS_TXN_VERSION);
    if (b[5] | b[6] | b[7]) return bad(r, err, "reserved bytes not zero");
    r->hdr.seq = ss_le_get64(b + 8);
    if (r->hdr.seq == 0) return bad(r, err, "sequence 0");
    r->hdr.time_ns = ss_le_get64(b + 16);
    memcpy(r->hdr.device_id, b + 24, SS_TXN_DEVICE_ID_BYTES);
    rc = r_name(r, ss_le_get16(b + SS_TXN_HEADER_FIXED), err);
    if (rc) return rc;
    rc = rd(r, c, sizeof c, "the counts", err);
    if (rc) return rc;
    r->hdr.n_packs = ss_le_get32(c);
    r->hdr.n_ops = ss_le_get32(c + 4);
    if (r->hdr.n_packs > r->lim.max_packs)
        return bad(r, err, "%u packs, above the limit %u", r->hdr.n_packs, r->lim.max_packs);
    return SS_OK;
}

/* Room for slot i: doubled as keys arrive, never sized by the declared count alone. */
static ss_rc grow_keys(ss_txn_reader *r, uint32_t i, ss_err *err)
{
    if (SS_ARRAY_GROW(r->keys, (size_t)i + 1, r->keys_cap)) {
        r->failed = SS_ERR_NOMEM;
        return ss_fail(err, SS_ERR_NOMEM, "transaction pack table of %u keys", i + 1);
    }
    return SS_OK;
}

static ss_rc r_packs(ss_txn_reader *r, ss_err *err)
{
    char why[SS_TXN_WHY];
    for (uint32_t i = 0; i < r->hdr.n_packs; i++) {
        uint8_t lb[2];
        r->pack_i = i + 1;
        ss_rc rc = rd(r, lb, 2, "the pack key length", err);
        if (rc) return rc;
        if (ss_le_get16(lb) != SS_TXN_PACK_KEY_LEN)
            return bad(r, err, "pack key of %u bytes, not %d", ss_le_get16(lb),
                       SS_TXN_PACK_KEY_LEN);
        rc = grow_keys(r, i, err);
        if (rc) return rc;
        char *k = r->keys[i];
        rc = rd(r, k, SS_TXN_PACK_KEY_LEN, "the pack key", err);
        if (rc) return rc;
        k[SS_TXN_PACK_KEY_LEN] = '\0';
        if (ss_txn_pack_key_fault(k, SS_TXN_PACK_KEY_LEN, r->hdr.seq, why))
            return bad(r, err, "%s", why);
    }
    if (r->hdr.n_packs == 0) return SS_OK;
    /* Sized by keys already read (42 bytes each), so the input paid for it. */
    r->key_ptrs = malloc(r->hdr.n_packs * sizeof *r->key_ptrs);
    if (!r->key_ptrs) {
        r->failed = SS_ERR_NOMEM;
        return ss_fail(err, SS_ERR_NOMEM, "transaction pack table");
    }
    for (uint32_t i = 0; i < r->hdr.n_packs; i++)
        r->key_ptrs[i] = r->keys[i];
    r->hdr.pack_keys = r->key_ptrs;
    return SS_OK;
}

/* Room for entry i: doubled as entries arrive, never sized by the declared count alone. */
static ss_rc grow_devs(ss_txn_reader *r, uint32_t i, ss_err *err)
{
    if (SS_ARRAY_GROW(r->devs, (size_t)i + 1, r->devs_cap)) {
        r->failed = SS_ERR_NOMEM;
        return ss_fail(err, SS_ERR_NOMEM, "transaction device section of %u entries", i + 1);
    }
    return SS_OK;
}

static ss_rc r_device(ss_txn_reader *r, ss_txn_device *d, ss_err *err)
{
    uint8_t b[SS_TXN_DEV_FIXED], lb[2];
    ss_rc rc = rd(r, b, sizeof b, "the device entry", err);
    if (rc) return rc;
    memset(d, 0, sizeof *d);
    d->type = b[0];
    memcpy(d->id, b + 1, SS_TXN_DEVICE_ID_BYTES);
    d->seq = ss_le_get64(b + 1 + SS_TXN_DEVICE_ID_BYTES);
    if (d->type == SS_TXN_DEV_POLICY) return rd(r, &d->mode, 1, "the enrollment mode", err);
    if (d->type != SS_TXN_DEV_ENROLL) return SS_OK; /* an unknown type is refused by the rule */
    rc = rd(r, d->pk, sizeof d->pk, "the public key", err);
    if (rc) return rc;
    rc = rd(r, lb, 2, "the device name length", err);
    if (rc) return rc;
    d->name_len = ss_le_get16(lb);
    if (d->name_len > SS_TXN_DEVICE_NAME_MAX)
        return bad(r, err, "device name of %zu bytes, more than %d", d->name_len,
                   SS_TXN_DEVICE_NAME_MAX);
    rc = rd(r, d->name, d->name_len, "the device name", err);
    if (rc) return rc;
    d->name[d->name_len] = '\0';
    return SS_OK;
}

static ss_rc r_devices(ss_txn_reader *r, ss_err *err)
{
    char why[SS_TXN_WHY];
    uint8_t nb[2];
    ss_rc rc = rd(r, nb, 2, "the device entry count", err);
    if (rc) return rc;
    r->hdr.n_devices = ss_le_get16(nb);
    if (r->hdr.n_devices > SS_TXN_MAX_DEVICES)
        return bad(r, err, "%u device entries, above the limit %u", r->hdr.n_devices,
                   SS_TXN_MAX_DEVICES);
    for (uint32_t i = 0; i < r->hdr.n_devices; i++) {
        r->dev_i = i + 1;
        rc = grow_devs(r, i, err);
        if (rc) return rc;
        rc = r_device(r, &r->devs[i], err);
        if (rc) return rc;
        if (ss_txn_device_fault(i ? &r->devs[i - 1] : NULL, &r->devs[i], r->hdr.seq, why))
            return bad(r, err, "%s", why);
    }
    r->hdr.devices = r->devs;
    return SS_OK;
}

ss_rc ss_txn_reader_new(const ss_txn_limits *lim, const ss_reader *src, ss_txn_reader **ret_reader,
                        ss_err *err)
{
    ss_txn_reader *r = NULL;
    ss_rc rc;
    *ret_reader = NULL;
    rc = ss_txn_limits_check(lim, err);
    if (rc) goto fail;
    if (!src || !src->read) {
        rc = ss_fail(err, SS_ERR_INVALID, "transaction reader: no source");
        goto fail;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        rc = ss_fail(err, SS_ERR_NOMEM, "transaction reader");
        goto fail;
    }
    r->lim = *lim;
    r->lim.max_packs = ss_txn_max_packs(lim);
    r->src = *src;
    r->phase = PH_HEADER;
    rc = r_header(r, err);
    if (rc) goto fail;
    r->phase = PH_PACKS;
    rc = r_packs(r, err);
    if (rc) goto fail;
    r->phase = PH_DEVICES;
    rc = r_devices(r, err);
    if (rc) goto fail;
    r->phase = PH_OPS;
    *ret_reader = r;
    return SS_OK;
fail:
    ss_txn_reader_free(r);
    return rc;
}

const ss_txn_header *ss_txn_reader_header(const ss_txn_reader *r)
{
    return &r->hdr;
}

uint32_t ss_txn_chunks_left(const ss_txn_reader *r)
{
    return r->chunks_left;
}

static ss_rc r_attrs(ss_txn_reader *r, ss_err *err)
{
    ss_txn_entry *e = &r->entry;
    uint8_t b[SS_TXN_ATTR_BYTES];
    char why[SS_TXN_WHY];
    ss_rc rc = rd(r, b, sizeof b, "the attributes", err);
    if (rc) return rc;
    e->kind = (ss_txn_kind)b[0];
    e->mode = ss_le_get32(b + 1);
    e->mtime_s = (int64_t)ss_le_get64(b + 5);
    e->mtime_ns = ss_le_get32(b + 13);
    e->size = ss_le_get64(b + 17);
    if (ss_txn_attr_fault(e, why)) return bad(r, err, "%s", why);
    return SS_OK;
}

/* Grows the inline buffer a step at a time as bytes arrive, up to the inline limit. */
static ss_rc r_inline(ss_txn_reader *r, size_t n, ss_err *err)
{
    size_t got = 0;
    while (got < n) {
        size_t step = n - got < SS_TXN_IO_BUF ? n - got : SS_TXN_IO_BUF;
        if (SS_ARRAY_GROW(r->inl, got + step, r->inl_cap)) {
            r->failed = SS_ERR_NOMEM;
            return ss_fail(err, SS_ERR_NOMEM, "transaction inline file of %zu bytes", n);
        }
        ss_rc rc = rd(r, r->inl + got, step, "the inline bytes", err);
        if (rc) return rc;
        got += step;
    }
    r->entry.inline_data = r->inl ? r->inl : (const uint8_t *)"";
    return SS_OK;
}

static ss_rc r_file(ss_txn_reader *r, ss_err *err)
{
    ss_txn_entry *e = &r->entry;
    uint8_t b[SS_TXN_CONTENT_ID_BYTES + 1], nb[4];
    char why[SS_TXN_WHY];
    ss_rc rc = rd(r, b, sizeof b, "the content id and storage", err);
    if (rc) return rc;
    memcpy(e->content_id, b, SS_TXN_CONTENT_ID_BYTES);
    e->storage = (ss_txn_storage)b[SS_TXN_CONTENT_ID_BYTES];
    if (e->storage != SS_TXN_INLINE && e->storage != SS_TXN_CHUNKS)
        return bad(r, err, "unknown storage %u", b[SS_TXN_CONTENT_ID_BYTES]);
    rc = rd(r, nb, 4, "the inline length or chunk count", err);
    if (rc) return rc;
    uint32_t n = ss_le_get32(nb);
    if (e->storage == SS_TXN_INLINE && n != e->size)
        return bad(r, err, "inline length %u, but size %llu", n, (unsigned long long)e->size);
    if (e->storage == SS_TXN_CHUNKS) e->n_chunks = n;
    if (ss_txn_file_fault(&r->lim, e, why)) return bad(r, err, "%s", why);
    if (e->storage == SS_TXN_INLINE) return r_inline(r, n, err);
    r->chunks_left = n;
    r->chunk_i = 0;
    r->plain_left = e->size;
    return SS_OK;
}

static ss_rc r_target(ss_txn_reader *r, ss_err *err)
{
    ss_txn_entry *e = &r->entry;
    uint8_t b[2];
    char why[SS_TXN_WHY];
    ss_rc rc = rd(r, b, 2, "the symlink target length", err);
    if (rc) return rc;
    size_t len = ss_le_get16(b);
    /* size passed ss_txn_attr_fault, so a matching len fits the buffer. */
    if (len != e->size)
        return bad(r, err, "symlink target length %zu, but size %llu", len,
                   (unsigned long long)e->size);
    rc = rd(r, r->target, len, "the symlink target", err);
    if (rc) return rc;
    r->target[len] = '\0';
    if (ss_txn_target_fault(r->target, len, why)) return bad(r, err, "%s", why);
    e->target = r->target;
    return SS_OK;
}

static ss_rc r_op(ss_txn_reader *r, ss_err *err)
{
    ss_txn_entry *e = &r->entry;
    uint8_t b[3];
    char why[SS_TXN_WHY];
    memset(e, 0, sizeof *e);
    r->have_path = 0;
    ss_rc rc = rd(r, b, sizeof b, "the op type and path length", err);
    if (rc) return rc;
    if (b[0] != SS_TXN_UPSERT && b[0] != SS_TXN_DELETE)
        return bad(r, err, "unknown op type %u", b[0]);
    size_t len = ss_le_get16(b + 1);
    if (len == 0 || len > SS_PATH_MAX)
        return bad(r, err, "path length %zu not in 1..%d", len, SS_PATH_MAX);
    rc = rd(r, r->path, len, "the path", err);
    if (rc) return rc;
    r->path[len] = '\0';
    e->type = (ss_txn_type)b[0];
    e->path = r->path;
    e->path_len = len;
    r->have_path = 1;
    if (ss_txn_path_fault(r->path, len, why)) return bad(r, err, "%s", why);
    if (e->type == SS_TXN_UPSERT) {
        rc = r_attrs(r, err);
        if (rc) return rc;
    }
    if (ss_txn_order_step(&r->order, e, why)) return bad(r, err, "%s", why);
    if (e->type == SS_TXN_DELETE || e->kind == SS_TXN_DIR) return SS_OK;
    return e->kind == SS_TXN_FILE ? r_file(r, err) : r_target(r, err);
}

static ss_rc r_chunk(ss_txn_reader *r, ss_chunk_ref *c, ss_err *err)
{
    uint8_t b[SS_TXN_CHUNK_REF_BYTES];
    char why[SS_TXN_WHY];
    r->phase = PH_CHUNKS;
    r->chunk_i++;
    ss_rc rc = rd(r, b, sizeof b, "the chunk ref", err);
    if (rc) return rc;
    c->pack = ss_le_get32(b);
    c->offset = ss_le_get64(b + 4);
    c->sealed_len = ss_le_get32(b + 12);
    c->plain_len = ss_le_get32(b + 16);
    memcpy(c->id, b + 20, SS_CHUNK_ID_LEN);
    if (ss_txn_chunk_fault(&r->lim, r->hdr.n_packs, c, r->plain_left, r->chunks_left == 1, why))
        return bad(r, err, "%s", why);
    r->plain_left -= c->plain_len;
    if (--r->chunks_left == 0) r->phase = PH_OPS;
    return SS_OK;
}

/* After the last op: the signature, then the source must be exhausted. */
static ss_rc r_end(ss_txn_reader *r, ss_err *err)
{
    uint64_t signed_len = r->offset;
    r->phase = PH_END;
    ss_rc rc = rd(r, r->sig, sizeof r->sig, "the signature", err);
    if (rc) return rc;
    if (r->pos == r->len) {
        rc = fill(r, err);
        if (rc) return rc;
    }
    if (r->pos < r->len)
        return bad(r, err, "trailing bytes from byte %llu", (unsigned long long)r->offset);
    r->signed_len = signed_len;
    return SS_OK;
}

const uint8_t *ss_txn_reader_signature(const ss_txn_reader *r, uint64_t *ret_signed_len)
{
    *ret_signed_len = 0;
    if (r->phase != PH_END || r->failed || !r->signed_len) return NULL;
    *ret_signed_len = r->signed_len;
    return r->sig;
}

static ss_rc next(ss_txn_reader *r, const ss_txn_entry **ret_entry, ss_err *err)
{
    ss_chunk_ref c;
    ss_rc rc;
    while (r->chunks_left) {
        rc = r_chunk(r, &c, err); /* unread ones are still checked */
        if (rc) return rc;
    }
    if (r->phase == PH_END) return SS_OK;
    if (r->op_i == r->hdr.n_ops) return r_end(r, err);
    r->op_i++;
    r->phase = PH_OPS;
    rc = r_op(r, err);
    if (rc) return rc;
    *ret_entry = &r->entry;
    return SS_OK;
}

ss_rc ss_txn_next(ss_txn_reader *r, const ss_txn_entry **ret_entry, ss_err *err)
{
    *ret_entry = NULL;
    if (r->failed) return ss_fail(err, r->failed, "transaction reader stopped by an earlier error");
    ss_rc rc = next(r, ret_entry, err);
    if (rc) {
        *ret_entry = NULL;
        r->failed = rc;
    }
    return rc;
}

ss_rc ss_txn_next_chunk(ss_txn_reader *r, ss_chunk_ref *ret_ref, ss_err *err)
{
    ss_chunk_ref c;
    memset(ret_ref, 0, sizeof *ret_ref);
    if (r->failed) return ss_fail(err, r->failed, "transaction reader stopped by an earlier error");
    if (r->chunks_left == 0)
        return ss_fail(err, SS_ERR_INVALID, "transaction reader: no chunk ref left in this op");
    ss_rc rc = r_chunk(r, &c, err);
    if (rc) {
        r->failed = rc;
        return rc;
    }
    *ret_ref = c;
    return SS_OK;
}

void ss_txn_reader_free(ss_txn_reader *r)
{
    if (!r) return;
    free(r->keys);
    free(r->key_ptrs);
    free(r->devs);
    free(r->inl);
    free(r);
}
