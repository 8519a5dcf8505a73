/*
 * frame: streaming writer of framed objects, and the hash chain; the reader
 * is frame_read.c, the whole-buffer helpers frame_buf.c.
 *
 * Owns the record cut (FORMAT.md "Framed objects"): every record but the last
 * carries exactly SS_FRAME_RECORD_BYTES, so on the wire a reader finds record
 * boundaries by counting (65553 bytes each) and needs no length fields; the
 * last record is whatever is left when the object ends. The writer keeps a
 * full record back until it knows more follows, so a plaintext of k * 65536
 * bytes ends in a full FINAL record, never in an empty one.
 *
 * Also owns the padding of the record stream (FORMAT.md "Size padding"): the
 * writer appends 0x80 and zeros up to the bucket of what it wrote (the
 * reader, frame_read.c, holds them back and checks them).
 */
#include "frame_impl.h"
#include "le.h"
#include "pad.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zstd.h>

_Static_assert(SS_FRAME_STREAM_HEADER_BYTES == crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "stream header size");
_Static_assert(SS_FRAME_RECORD_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES,
               "record overhead");
_Static_assert(SS_FRAME_CONTEXT_BYTES == crypto_generichash_BYTES, "context size");

struct ss_frame_writer {
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_generichash_state hash; /* of every object byte, for the chain */
    uint8_t ctx[SS_FRAME_CONTEXT_BYTES];
    char *key; /* owned copy, for messages */
    ss_write_fn out;
    void *out_ctx;
    ZSTD_CStream *zc; /* NULL: raw */
    uint8_t *zbuf;    /* zstd output, before it is cut into records */
    size_t zcap;
    size_t fill; /* bytes in plain */
    uint64_t records;
    uint64_t stream; /* record plaintext bytes so far, padding not yet included */
    ss_rc failed;
    int finished;
    uint8_t plain[REC];
    uint8_t wire[WIRE];
};

const uint8_t ss_frame_zeros[4096];

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void ss_frame_context(const ss_keys *keys, const uint8_t header[SS_FRAME_HEADER_BYTES],
                      const char *key, uint64_t seq, const uint8_t prev_chain[SS_CHAIN_BYTES],
                      uint8_t out[SS_FRAME_CONTEXT_BYTES])
{
    crypto_generichash_state h;
    size_t klen = strlen(key);
    uint8_t b[8];

    crypto_generichash_init(&h, NULL, 0, SS_FRAME_CONTEXT_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)SS_FRAME_CONTEXT_LABEL,
                              sizeof SS_FRAME_CONTEXT_LABEL - 1);
    crypto_generichash_update(&h, ss_keys_repo_id(keys), SS_REPO_ID_BYTES);
    crypto_generichash_update(&h, header, SS_FRAME_HEADER_BYTES);
    put_le(b, klen, 2);
    crypto_generichash_update(&h, b, 2);
    crypto_generichash_update(&h, (const uint8_t *)key, klen);
    put_le(b, seq, 8);
    crypto_generichash_update(&h, b, 8);
    crypto_generichash_update(&h, prev_chain, SS_CHAIN_BYTES);
    crypto_generichash_final(&h, out, SS_FRAME_CONTEXT_BYTES);
}

void ss_chain_next(const ss_keys *keys, const uint8_t prev[SS_CHAIN_BYTES],
                   const uint8_t object_hash[SS_OBJECT_HASH_BYTES], uint8_t out[SS_CHAIN_BYTES])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, ss_keys_subkey(keys, SS_SUBKEY_CHAIN), SS_SUBKEY_BYTES,
                            SS_CHAIN_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)SS_CHAIN_LABEL, sizeof SS_CHAIN_LABEL - 1);
    crypto_generichash_update(&h, prev, SS_CHAIN_BYTES);
    crypto_generichash_update(&h, object_hash, SS_OBJECT_HASH_BYTES);
    crypto_generichash_final(&h, out, SS_CHAIN_BYTES);
}

ss_rc ss_frame_check_args(unsigned kind, const char *key, ss_err *err)
{
    if (!key) return ss_fail(err, SS_ERR_INVALID, "frame: no object key");
    if (kind != SS_FRAME_KIND_LOG && kind != SS_FRAME_KIND_CHECKPOINT)
        return ss_fail(err, SS_ERR_INVALID, "object %s: unknown kind %u", key, kind);
    if (strlen(key) > UINT16_MAX)
        return ss_fail(err, SS_ERR_INVALID, "object %.64s...: key too long", key);
    return SS_OK;
}

/* ---- writer ---- */

static ss_rc w_fail(ss_frame_writer *w, ss_err *err, ss_rc rc, const char *what)
{
    w->failed = rc;
    return ss_fail(err, rc, "object %s: %s", w->key, what);
}

static ss_rc w_emit(ss_frame_writer *w, const uint8_t *p, size_t n, ss_err *err)
{
    crypto_generichash_update(&w->hash, p, n);
    if (w->out(w->out_ctx, p, n) != 0) return w_fail(w, err, SS_ERR_IO, "output refused the bytes");
    return SS_OK;
}

static ss_rc w_push(ss_frame_writer *w, unsigned char tag, ss_err *err)
{
    unsigned long long clen = 0;

    crypto_secretstream_xchacha20poly1305_push(&w->st, w->wire, &clen, w->plain, w->fill, w->ctx,
                                               sizeof w->ctx, tag);
    w->fill = 0;
    w->records++;
    return w_emit(w, w->wire, (size_t)clen, err);
}

/* A full record is held back until a byte after it arrives: only then is it not the last. */
static ss_rc w_append(ss_frame_writer *w, const uint8_t *p, size_t n, ss_err *err)
{
    w->stream += n;
    while (n > 0) {
        if (w->fill == REC) {
            ss_rc rc = w_push(w, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE, err);
            if (rc != SS_OK) return rc;
        }
        size_t k = n < REC - w->fill ? n : REC - w->fill;
        memcpy(w->plain + w->fill, p, k);
        w->fill += k;
        p += k;
        n -= k;
    }
    return SS_OK;
}

ss_rc ss_frame_writer_new(const ss_keys *keys, unsigned kind, const char *key, uint64_t seq,
                          const uint8_t prev_chain[SS_CHAIN_BYTES], int level, ss_write_fn out,
                          void *out_ctx, ss_frame_writer **ret_writer, ss_err *err)
{
    ss_frame_writer *w = NULL;
    uint8_t prefix[SS_FRAME_PREFIX_BYTES] = {0};
    uint32_t epoch;
    ss_rc rc;

    if (ret_writer) *ret_writer = NULL;
    if (!keys || !prev_chain || !out || !ret_writer)
        return ss_fail(err, SS_ERR_INVALID, "frame writer: missing argument");
    rc = ss_frame_check_args(kind, key, err);
    if (rc) return rc;
    if (level < 0 || level > (int)SS_CONFIG_ZSTD_LEVEL_MAX)
        return ss_fail(err, SS_ERR_INVALID, "object %s: zstd level %d is outside 0..%u", key, level,
                       SS_CONFIG_ZSTD_LEVEL_MAX);

    w = calloc(1, sizeof *w);
    if (w) w->key = strdup(key);
    if (!w || !w->key) {
        rc = ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
        goto fail;
    }
    w->out = out;
    w->out_ctx = out_ctx;
    if (level > 0) {
        w->zcap = ZSTD_CStreamOutSize();
        w->zc = ZSTD_createCStream();
        w->zbuf = malloc(w->zcap);
        if (!w->zc || !w->zbuf ||
            ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, level))) {
            rc = ss_fail(err, SS_ERR_NOMEM, "object %s: cannot set up zstd", key);
            goto fail;
        }
    }

    memcpy(prefix, SS_FRAME_MAGIC, 4);
    prefix[SS_FRAME_OFF_VERSION] = SS_FORMAT_VERSION;
    prefix[SS_FRAME_OFF_KIND] = (uint8_t)kind;
    prefix[SS_FRAME_OFF_FLAGS] = level > 0 ? SS_FRAME_FLAG_ZSTD : 0;
    epoch = ss_keys_epoch(keys);
    ss_le_put32(prefix + SS_FRAME_OFF_EPOCH, epoch);
    ss_le_put64(prefix + SS_FRAME_OFF_START, ss_keys_epoch_start(keys, epoch));
    ss_frame_context(keys, prefix, key, seq, prev_chain, w->ctx);
    crypto_secretstream_xchacha20poly1305_init_push(
        &w->st, prefix + SS_FRAME_HEADER_BYTES, ss_keys_content_key(keys, epoch, SS_SUBKEY_OBJECT));
    crypto_generichash_init(&w->hash, NULL, 0, SS_OBJECT_HASH_BYTES);
    rc = w_emit(w, prefix, sizeof prefix, err);
    if (rc) goto fail;
    *ret_writer = w;
    return SS_OK;
fail:
    ss_frame_writer_free(w);
    return rc;
}

static ss_rc w_check(ss_frame_writer *w, ss_err *err)
{
    if (!w) return ss_fail(err, SS_ERR_INVALID, "frame writer: NULL");
    if (w->failed) return ss_fail(err, w->failed, "object %s: writer failed before", w->key);
    if (w->finished) return ss_fail(err, SS_ERR_INVALID, "object %s: already finished", w->key);
    return SS_OK;
}

/* Run zstd over in with the given directive, cutting its output into records. */
static ss_rc w_compress(ss_frame_writer *w, ZSTD_inBuffer *in, ZSTD_EndDirective mode, ss_err *err)
{
    for (;;) {
        ZSTD_outBuffer o = {w->zbuf, w->zcap, 0};
        size_t left = ZSTD_compressStream2(w->zc, &o, in, mode);
        if (ZSTD_isError(left)) return w_fail(w, err, SS_ERR_NOMEM, ZSTD_getErrorName(left));
        ss_rc rc = w_append(w, w->zbuf, o.pos, err);
        if (rc != SS_OK) return rc;
        if (mode == ZSTD_e_end ? left == 0 : in->pos == in->size) return SS_OK;
    }
}

int ss_frame_out_write(void *ctx, const void *buf, size_t len)
{
    ss_frame_out *s = ctx;
    return ss_frame_write(s->w, buf, len, &s->err) ? -1 : 0;
}

ss_rc ss_frame_write(ss_frame_writer *w, const void *buf, size_t len, ss_err *err)
{
    ss_rc rc = w_check(w, err);

    if (rc != SS_OK) return rc;
    if (!buf && len) return ss_fail(err, SS_ERR_INVALID, "object %s: NULL buffer", w->key);
    if (len == 0) return SS_OK;
    if (!w->zc) return w_append(w, buf, len, err);
    ZSTD_inBuffer in = {buf, len, 0};
    return w_compress(w, &in, ZSTD_e_continue, err);
}

/* 0x80, then zeros up to the bucket of the stream (what sodium_pad writes). */
static ss_rc w_pad(ss_frame_writer *w, ss_err *err)
{
    static const uint8_t marker = 0x80;
    uint64_t left = ss_pad_size(w->stream) - w->stream - 1;
    ss_rc rc = w_append(w, &marker, 1, err);
    if (rc) return rc;
    while (left) {
        size_t k = left < sizeof ss_frame_zeros ? (size_t)left : sizeof ss_frame_zeros;
        rc = w_append(w, ss_frame_zeros, k, err);
        if (rc) return rc;
        left -= k;
    }
    return SS_OK;
}

ss_rc ss_frame_finish(ss_frame_writer *w, uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES],
                      ss_err *err)
{
    ss_rc rc;

    if (ret_object_hash) memset(ret_object_hash, 0, SS_OBJECT_HASH_BYTES);
    rc = w_check(w, err);
    if (rc) return rc;
    if (w->zc) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        rc = w_compress(w, &in, ZSTD_e_end, err);
        if (rc) return rc;
    }
    rc = w_pad(w, err);
    if (rc) return rc;
    rc = w_push(w, crypto_secretstream_xchacha20poly1305_TAG_FINAL, err);
    if (rc) return rc;
    w->finished = 1;
    if (ret_object_hash) crypto_generichash_final(&w->hash, ret_object_hash, SS_OBJECT_HASH_BYTES);
    return SS_OK;
}

void ss_frame_writer_free(ss_frame_writer *w)
{
    if (!w) return;
    ZSTD_freeCStream(w->zc); /* its window held plaintext too; zstd frees, cannot wipe */
    if (w->zbuf) sodium_memzero(w->zbuf, w->zcap);
    free(w->zbuf);
    free(w->key);
    sodium_memzero(w, sizeof *w);
    free(w);
}
