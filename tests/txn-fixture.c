/* txn-fixture: shared pieces of test-txn; see txn-fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn-fixture.h"

/* tests/fuzz/fuzz-txn.c decodes with the same limits, so the seeds stay valid. */
const ss_txn_limits LIM = {.inline_limit = 64, .max_chunk_size = 4096, .max_packs = 8};

/* ---- byte buffers, sinks and sources ---- */

void b_mem(buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}

void b_uint(buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        uint8_t c = i < 8 ? (uint8_t)(v >> (8 * i)) : 0; /* wider: zero-extended */
        b_mem(b, &c, 1);
    }
}

int buf_sink(void *ctx, const void *d, size_t n)
{
    b_mem(ctx, d, n);
    return 0;
}

long msrc_read(void *ctx, void *dst, size_t n)
{
    msrc *s = ctx;
    size_t k = s->len - s->pos;
    if (k > n) k = n;
    if (k > s->step) k = s->step;
    memcpy(dst, s->p + s->pos, k);
    s->pos += k;
    return (long)k;
}

int msrc_rewind(void *ctx)
{
    ((msrc *)ctx)->pos = 0;
    return 0;
}

ss_txn_reader *open_mem(msrc *s, const uint8_t *p, size_t len, size_t step)
{
    *s = (msrc){p, len, 0, step};
    ss_reader src = {msrc_read, msrc_rewind, s};
    ss_txn_reader *r = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_txn_reader_new(&LIM, &src, &r, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
    return r;
}

/* Walks everything; read_chunks 0 leaves the chunk refs to ss_txn_next to skip. */
ss_rc decode_all(const uint8_t *p, size_t len, size_t step, int read_chunks, ss_err *err)
{
    msrc s = {p, len, 0, step};
    ss_reader src = {msrc_read, msrc_rewind, &s};
    ss_txn_reader *r = NULL;
    const ss_txn_entry *e = NULL;
    ss_rc rc = ss_txn_reader_new(&LIM, &src, &r, err);
    if (rc) return rc;
    while (!(rc = ss_txn_next(r, &e, err)) && e) {
        for (uint32_t i = 0; read_chunks && i < e->n_chunks && !rc; i++) {
            ss_chunk_ref c;
            rc = ss_txn_next_chunk(r, &c, err);
        }
        if (rc) break;
    }
    if (rc) { /* a failed reader stays failed */
        ss_err again;
        assert_int_equal(ss_txn_next(r, &e, &again), rc);
        assert_null(e);
    }
    ss_txn_reader_free(r);
    return rc;
}

/* ---- the sample: one op of every kind ---- */

static const char *const sample_keys[] = {KEY5, KEY7};

const uint8_t sample_sig[SS_TXN_SIG_BYTES] = {0x51, 0x6e, [31] = 0x77, [63] = 0x99};

ss_rc sign_sample(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES], ss_err *err)
{
    (void)ctx, (void)err;
    memcpy(ret_sig, sample_sig, SS_TXN_SIG_BYTES);
    return SS_OK;
}

/* The signer enrolling itself, and a device it revokes (ids in order). */
const ss_txn_device sample_devices[2] = {
    {.type = SS_TXN_DEV_REVOKE, .id = {0x11, 0x22}, .seq = 7},
    {.type = SS_TXN_DEV_ENROLL,
     .id = {0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde,
            0xdf, 0xe0},
     .seq = 7,
     .pk = {0xaa, [31] = 0xbb},
     .name = "laptop \xc3\xa9t\xc3\xa9",
     .name_len = 12},
};

const ss_txn_header sample_hdr = {
    .seq = 7,
    .time_ns = UINT64_C(1700000000123456789),
    .device_id = {0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
                  0xde, 0xdf, 0xe0},
    .device_name = "laptop \xc3\xa9t\xc3\xa9",
    .device_name_len = 12,
    .n_packs = 2,
    .pack_keys = sample_keys,
    .n_devices = 2,
    .devices = sample_devices,
    .n_ops = 7,
};

const ss_chunk_ref sample_chunks[3] = {
    /* Sealed lengths: 40 + a size bucket, at most the bucket of 1 + plain (pad.h). */
    {.pack = 0, .offset = 0, .sealed_len = 40 + 4352, .plain_len = 4096, .id = {1, 1}},
    {.pack = 1, .offset = 0, .sealed_len = 40 + 256, .plain_len = 4096, .id = {2, 2}},
    {.pack = 1, .offset = 296, .sealed_len = 40 + 256, .plain_len = 100, .id = {3, 3}},
};

/* clang-format off */
const ss_txn_entry sample_ops[7] = {
    {UP, .path = "a", .path_len = 1, .kind = SS_TXN_DIR, .mode = 0755, .mtime_s = -5,
     .mtime_ns = 999999999},
    {UP, .path = "a/empty", .path_len = 7, .kind = SS_TXN_FILE, .mode = 0600, .mtime_s = 1,
     .content_id = {9}, .storage = SS_TXN_INLINE, .inline_data = NULL},
    {UP, .path = "a/hello.txt", .path_len = 11, .kind = SS_TXN_FILE, .mode = 04644,
     .mtime_s = 1700000000, .mtime_ns = 5, .size = 5, .content_id = {7, 7},
     .storage = SS_TXN_INLINE, .inline_data = (const uint8_t *)"hello"},
    {UP, .path = "a/link", .path_len = 6, .kind = SS_TXN_SYMLINK, .mode = 0777, .mtime_s = 2,
     .size = 12, .target = "../b/big.bin"},
    {UP, .path = "b", .path_len = 1, .kind = SS_TXN_DIR, .mode = 07777},
    {UP, .path = "b/big.bin", .path_len = 9, .kind = SS_TXN_FILE, .mode = 0644,
     .mtime_s = INT64_MAX, .size = 8292, .content_id = {0xcc}, .storage = SS_TXN_CHUNKS,
     .n_chunks = 3},
    {.type = SS_TXN_DELETE, .path = "c/gone", .path_len = 6},
};
/* clang-format on */

/* Encodes ops; chunked files take their refs from chunks in order. */
void encode(const ss_txn_header *h, const ss_txn_entry *ops, size_t n, const ss_chunk_ref *chunks,
            buf *out)
{
    ss_txn_writer *w = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_txn_writer_new(&LIM, h, buf_sink, out, &w, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        if (ops[i].type == SS_TXN_DELETE) {
            rc = ss_txn_put_delete(w, ops[i].path, ops[i].path_len, &err);
            continue;
        }
        rc = ss_txn_put_upsert(w, &ops[i], &err);
        for (uint32_t j = 0; !rc && ops[i].storage == SS_TXN_CHUNKS && j < ops[i].n_chunks; j++)
            rc = ss_txn_put_chunk(w, chunks++, &err);
    }
    if (!rc) rc = ss_txn_writer_finish(w, sign_sample, NULL, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
    ss_txn_writer_free(w);
}

void encode_sample(buf *out)
{
    encode(&sample_hdr, sample_ops, 7, sample_chunks, out);
}

void check_chunk(const ss_chunk_ref *c, const ss_chunk_ref *x)
{
    assert_int_equal(c->pack, x->pack);
    assert_true(c->offset == x->offset);
    assert_int_equal(c->sealed_len, x->sealed_len);
    assert_int_equal(c->plain_len, x->plain_len);
    assert_memory_equal(c->id, x->id, SS_CHUNK_ID_LEN);
}

void check_header(const ss_txn_header *h)
{
    assert_int_equal(h->seq, 7);
    assert_true(h->time_ns == sample_hdr.time_ns);
    assert_memory_equal(h->device_id, sample_hdr.device_id, SS_TXN_DEVICE_ID_BYTES);
    assert_int_equal(h->device_name_len, 12);
    assert_string_equal(h->device_name, sample_hdr.device_name);
    assert_int_equal(h->n_packs, 2);
    assert_string_equal(h->pack_keys[0], KEY5);
    assert_string_equal(h->pack_keys[1], KEY7);
    assert_int_equal(h->n_devices, 2);
    for (int i = 0; i < 2; i++) {
        const ss_txn_device *d = &h->devices[i], *x = &sample_devices[i];
        assert_int_equal(d->type, x->type);
        assert_memory_equal(d->id, x->id, sizeof d->id);
        assert_true(d->seq == x->seq);
        assert_int_equal(d->name_len, x->name_len);
        if (x->type == SS_TXN_DEV_ENROLL) {
            assert_memory_equal(d->pk, x->pk, sizeof d->pk);
            assert_string_equal(d->name, x->name);
        }
    }
    assert_int_equal(h->n_ops, 7);
}

void check_entry(const ss_txn_entry *e, const ss_txn_entry *x)
{
    assert_int_equal(e->type, x->type);
    assert_int_equal(e->path_len, x->path_len);
    assert_string_equal(e->path, x->path);
    if (x->type == SS_TXN_DELETE) return;
    assert_int_equal(e->kind, x->kind);
    assert_int_equal(e->mode, x->mode);
    assert_true(e->mtime_s == x->mtime_s);
    assert_int_equal(e->mtime_ns, x->mtime_ns);
    assert_true(e->size == x->size);
    if (x->kind == SS_TXN_SYMLINK) assert_string_equal(e->target, x->target);
    if (x->kind != SS_TXN_FILE) return;
    assert_memory_equal(e->content_id, x->content_id, SS_TXN_CONTENT_ID_BYTES);
    assert_int_equal(e->storage, x->storage);
    if (x->storage == SS_TXN_CHUNKS) assert_int_equal(e->n_chunks, x->n_chunks);
    if (x->storage == SS_TXN_INLINE) {
        assert_non_null(e->inline_data);
        if (x->size) assert_memory_equal(e->inline_data, x->inline_data, (size_t)x->size);
    }
}
