/*
 * frame: streaming writer and reader of framed objects, and the hash chain.
 *
 * Owns the record cut (FORMAT.md "Framed objects"): every record but the last
 * carries exactly SS_FRAME_RECORD_BYTES, so on the wire a reader finds record
 * boundaries by counting (65553 bytes each) and needs no length fields; the
 * last record is whatever is left when the object ends. The writer keeps a
 * full record back until it knows more follows, so a plaintext of k * 65536
 * bytes ends in a full FINAL record, never in an empty one.
 *
 * Also owns the padding of the record stream (FORMAT.md "Size padding"): the
 * writer appends 0x80 and zeros up to the bucket of what it wrote; the reader
 * holds back a trailing 0x80 and the zeros after it (as a count: they are
 * zeros) until it knows whether more follows, so the padding never reaches
 * zstd or the consumer, and checks at the end that it is the canonical one.
 */
#include "frame.h"
#include "pad.h"

#include <stdarg.h>
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

enum { REC = SS_FRAME_RECORD_BYTES, WIRE = SS_FRAME_WIRE_RECORD_BYTES };

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

struct ss_frame_reader {
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_generichash_state hash;
    uint8_t ctx[SS_FRAME_CONTEXT_BYTES];
    const ss_keys *keys;
    char *key; /* owned copy */
    unsigned kind;
    uint64_t seq;
    uint8_t prev_chain[SS_CHAIN_BYTES];
    uint64_t max_plain, emitted;
    ss_write_fn out;
    void *out_ctx;
    uint8_t prefix[SS_FRAME_PREFIX_BYTES];
    size_t prefix_fill;
    int started, final_seen, ended, zdone;
    ZSTD_DStream *zd; /* NULL: raw */
    uint8_t *zbuf;
    size_t zcap;
    size_t fill; /* bytes in wire */
    uint64_t records;
    uint64_t stream;     /* record plaintext bytes authenticated */
    int pad_held;        /* a 0x80 that may open the padding is held back */
    uint64_t zeros_held; /* and this many zeros after it */
    ss_rc failed;
    ss_err first; /* repeated by every call after a failure */
    uint8_t wire[WIRE];
    uint8_t plain[REC];
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void object_context(const ss_keys *keys, const uint8_t header[SS_FRAME_HEADER_BYTES],
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

static ss_rc check_args(unsigned kind, const char *key, ss_err *err)
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
    ss_rc rc;

    if (ret_writer) *ret_writer = NULL;
    if (!keys || !prev_chain || !out || !ret_writer)
        return ss_fail(err, SS_ERR_INVALID, "frame writer: missing argument");
    rc = check_args(kind, key, err);
    if (rc) return rc;
    if (level < 0 || level > (int)SS_CONFIG_ZSTD_LEVEL_MAX)
        return ss_fail(err, SS_ERR_INVALID, "object %s: zstd level %d is outside 0..%u", key, level,
                       SS_CONFIG_ZSTD_LEVEL_MAX);

    w = calloc(1, sizeof *w);
    if (!w || !(w->key = strdup(key))) {
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
    object_context(keys, prefix, key, seq, prev_chain, w->ctx);
    crypto_secretstream_xchacha20poly1305_init_push(&w->st, prefix + SS_FRAME_HEADER_BYTES,
                                                    ss_keys_subkey(keys, SS_SUBKEY_OBJECT));
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

static const uint8_t zeros[4096];

/* 0x80, then zeros up to the bucket of the stream (what sodium_pad writes). */
static ss_rc w_pad(ss_frame_writer *w, ss_err *err)
{
    static const uint8_t marker = 0x80;
    uint64_t left = ss_pad_size(w->stream) - w->stream - 1;
    ss_rc rc = w_append(w, &marker, 1, err);
    while (!rc && left) {
        size_t k = left < sizeof zeros ? (size_t)left : sizeof zeros;
        rc = w_append(w, zeros, k, err);
        left -= k;
    }
    return rc;
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

/* ---- reader ---- */

static ss_rc r_fail(ss_frame_reader *r, ss_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Every refusal of the reader is an integrity failure naming the object, and sticky. */
static ss_rc r_fail(ss_frame_reader *r, ss_err *err, const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    r->failed = SS_ERR_INTEGRITY;
    ss_fail(&r->first, SS_ERR_INTEGRITY, "object %s: %s", r->key, what);
    if (err) *err = r->first;
    return SS_ERR_INTEGRITY;
}

ss_rc ss_frame_reader_new(const ss_keys *keys, unsigned expected_kind, const char *key,
                          uint64_t seq, const uint8_t prev_chain[SS_CHAIN_BYTES],
                          uint64_t max_plain, ss_write_fn plaintext_out, void *out_ctx,
                          ss_frame_reader **ret_reader, ss_err *err)
{
    ss_frame_reader *r = NULL;
    ss_rc rc;

    if (ret_reader) *ret_reader = NULL;
    if (!keys || !prev_chain || !plaintext_out || !ret_reader)
        return ss_fail(err, SS_ERR_INVALID, "frame reader: missing argument");
    rc = check_args(expected_kind, key, err);
    if (rc) return rc;
    r = calloc(1, sizeof *r);
    if (!r || !(r->key = strdup(key))) {
        free(r);
        return ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    }
    r->keys = keys;
    r->kind = expected_kind;
    r->seq = seq;
    memcpy(r->prev_chain, prev_chain, SS_CHAIN_BYTES);
    r->max_plain = max_plain;
    r->out = plaintext_out;
    r->out_ctx = out_ctx;
    crypto_generichash_init(&r->hash, NULL, 0, SS_OBJECT_HASH_BYTES);
    *ret_reader = r;
    return SS_OK;
}

static ss_rc r_prefix(ss_frame_reader *r, ss_err *err)
{
    const uint8_t *h = r->prefix;

    if (memcmp(h, SS_FRAME_MAGIC, 4) != 0) return r_fail(r, err, "not a framed object (magic)");
    if (h[SS_FRAME_OFF_VERSION] != SS_FORMAT_VERSION)
        return r_fail(r, err, "unknown format version %u", h[SS_FRAME_OFF_VERSION]);
    if (h[SS_FRAME_OFF_KIND] != r->kind)
        return r_fail(r, err, "object kind %u, expected %u", h[SS_FRAME_OFF_KIND], r->kind);
    if ((h[SS_FRAME_OFF_FLAGS] & ~SS_FRAME_FLAG_ZSTD) != 0 || h[SS_FRAME_OFF_ZERO] != 0)
        return r_fail(r, err, "unknown header flags");
    object_context(r->keys, h, r->key, r->seq, r->prev_chain, r->ctx);
    if (crypto_secretstream_xchacha20poly1305_init_pull(
            &r->st, h + SS_FRAME_HEADER_BYTES, ss_keys_subkey(r->keys, SS_SUBKEY_OBJECT)) != 0)
        return r_fail(r, err, "bad stream header");
    if (h[SS_FRAME_OFF_FLAGS] & SS_FRAME_FLAG_ZSTD) {
        r->zcap = ZSTD_DStreamOutSize();
        r->zd = ZSTD_createDStream();
        r->zbuf = malloc(r->zcap);
        if (!r->zd || !r->zbuf ||
            ZSTD_isError(
                ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, SS_ZSTD_WINDOW_LOG_MAX))) {
            r->failed = SS_ERR_NOMEM;
            ss_fail(&r->first, SS_ERR_NOMEM, "object %s: cannot set up zstd", r->key);
            if (err) *err = r->first;
            return SS_ERR_NOMEM;
        }
    }
    r->started = 1;
    return SS_OK;
}

static ss_rc r_deliver(ss_frame_reader *r, const uint8_t *p, size_t n, ss_err *err)
{
    if (n > r->max_plain - r->emitted)
        return r_fail(r, err, "plaintext exceeds the limit of %llu bytes",
                      (unsigned long long)r->max_plain);
    r->emitted += n;
    if (r->out(r->out_ctx, p, n) != 0) {
        r->failed = SS_ERR_IO;
        ss_fail(&r->first, SS_ERR_IO, "object %s: plaintext consumer stopped", r->key);
        if (err) *err = r->first;
        return SS_ERR_IO;
    }
    return SS_OK;
}

static ss_rc r_plain(ss_frame_reader *r, const uint8_t *p, size_t n, ss_err *err)
{
    ZSTD_inBuffer in = {p, n, 0};
    int more = 0;
    ss_rc rc;

    if (!r->zd) return n ? r_deliver(r, p, n, err) : SS_OK;
    while (in.pos < in.size || more) {
        if (r->zdone) return r_fail(r, err, "bytes after the end of its zstd frame");
        ZSTD_outBuffer o = {r->zbuf, r->zcap, 0};
        size_t left = ZSTD_decompressStream(r->zd, &o, &in);
        if (ZSTD_isError(left)) return r_fail(r, err, "zstd: %s", ZSTD_getErrorName(left));
        if (o.pos && (rc = r_deliver(r, r->zbuf, o.pos, err)) != SS_OK) return rc;
        if (left == 0) r->zdone = 1;
        more = left != 0 && o.pos == o.size; /* output full: zstd may hold more */
    }
    return SS_OK;
}

static ss_rc r_zeros(ss_frame_reader *r, uint64_t n, ss_err *err)
{
    ss_rc rc = SS_OK;
    while (!rc && n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        rc = r_plain(r, zeros, k, err);
        n -= k;
    }
    return rc;
}

/* A record's plaintext, less what may be padding: a last 0x80 and the zeros after it. */
static ss_rc r_unpad(ss_frame_reader *r, const uint8_t *p, size_t n, ss_err *err)
{
    static const uint8_t marker = 0x80;
    size_t j = n;
    ss_rc rc = SS_OK;

    r->stream += n;
    while (j > 0 && p[j - 1] == 0)
        j--;
    if (j == 0) { /* zeros only: padding if a marker is held, else data */
        if (r->pad_held) r->zeros_held += n;
        return r->pad_held ? SS_OK : r_zeros(r, n, err);
    }
    if (r->pad_held) { /* not the padding after all */
        rc = r_plain(r, &marker, 1, err);
        if (rc) return rc;
        rc = r_zeros(r, r->zeros_held, err);
        if (rc) return rc;
        r->pad_held = 0;
        r->zeros_held = 0;
    }
    if (p[j - 1] != 0x80) return r_plain(r, p, n, err);
    rc = r_plain(r, p, j - 1, err);
    if (rc) return rc;
    r->pad_held = 1;
    r->zeros_held = n - j;
    return SS_OK;
}

/* At the end: what was held back is the padding the stream's length gets. */
static ss_rc r_pad_end(ss_frame_reader *r, ss_err *err)
{
    if (!r->pad_held || ss_pad_size(r->stream - 1 - r->zeros_held) != r->stream)
        return r_fail(r, err, "padding is not the one its length gets");
    return SS_OK;
}

/* One record, authenticated before a byte of it goes on; at_end: the object ends after it. */
static ss_rc r_record(ss_frame_reader *r, const uint8_t *c, size_t clen, int at_end, ss_err *err)
{
    unsigned long long mlen = 0;
    unsigned char tag = 0;

    if (clen < SS_FRAME_RECORD_ABYTES)
        return r_fail(r, err, "truncated inside record %llu", (unsigned long long)r->records);
    if (crypto_secretstream_xchacha20poly1305_pull(&r->st, r->plain, &mlen, &tag, c, clen, r->ctx,
                                                   sizeof r->ctx) != 0)
        return r_fail(r, err,
                      "record %llu does not authenticate (damaged or truncated, or not the "
                      "object of this key, sequence and chain)",
                      (unsigned long long)r->records);
    r->records++;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        r->final_seen = 1;
    else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return r_fail(r, err, "record %llu has unknown tag %u", (unsigned long long)r->records - 1,
                      tag);
    else if (at_end)
        return r_fail(r, err, "truncated: ends without its final record");
    return r_unpad(r, r->plain, (size_t)mlen, err);
}

static ss_rc r_repeat(ss_frame_reader *r, ss_err *err)
{
    if (err) *err = r->first;
    return r->failed;
}

ss_rc ss_frame_feed(ss_frame_reader *r, const void *buf, size_t len, ss_err *err)
{
    const uint8_t *p = buf;
    ss_rc rc;

    if (!r || (!buf && len)) return ss_fail(err, SS_ERR_INVALID, "frame reader: missing argument");
    if (r->failed) return r_repeat(r, err);
    if (r->ended) return ss_fail(err, SS_ERR_INVALID, "object %s: already ended", r->key);
    crypto_generichash_update(&r->hash, p, len);
    while (len > 0) {
        size_t k;
        if (!r->started) {
            k = SS_FRAME_PREFIX_BYTES - r->prefix_fill;
            k = len < k ? len : k;
            memcpy(r->prefix + r->prefix_fill, p, k);
            r->prefix_fill += k;
            p += k;
            len -= k;
            if (r->prefix_fill == SS_FRAME_PREFIX_BYTES && (rc = r_prefix(r, err)) != SS_OK)
                return rc;
            continue;
        }
        if (r->final_seen)
            return r_fail(r, err, "%zu bytes after its final record (extended)", len);
        if (r->fill == 0 && len >= WIRE) { /* a whole record in the input: no copy */
            rc = r_record(r, p, WIRE, 0, err);
            if (rc) return rc;
            p += WIRE;
            len -= WIRE;
            continue;
        }
        k = WIRE - r->fill;
        k = len < k ? len : k;
        memcpy(r->wire + r->fill, p, k);
        r->fill += k;
        p += k;
        len -= k;
        if (r->fill == WIRE) {
            r->fill = 0;
            rc = r_record(r, r->wire, WIRE, 0, err);
            if (rc) return rc;
        }
    }
    return SS_OK;
}

int ss_frame_sink(void *reader, const void *buf, size_t len)
{
    return ss_frame_feed(reader, buf, len, NULL) == SS_OK ? 0 : -1;
}

ss_rc ss_frame_end(ss_frame_reader *r, uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_rc rc;

    if (ret_object_hash) memset(ret_object_hash, 0, SS_OBJECT_HASH_BYTES);
    if (!r) return ss_fail(err, SS_ERR_INVALID, "frame reader: NULL");
    if (r->failed) return r_repeat(r, err);
    if (r->ended) return ss_fail(err, SS_ERR_INVALID, "object %s: already ended", r->key);
    if (!r->started) return r_fail(r, err, "truncated: shorter than its header");
    if (!r->final_seen) {
        if (r->fill == 0) return r_fail(r, err, "truncated: ends without its final record");
        rc = r_record(r, r->wire, r->fill, 1, err);
        if (rc) return rc;
        r->fill = 0;
    }
    rc = r_pad_end(r, err);
    if (rc) return rc;
    if (r->zd && !r->zdone) return r_fail(r, err, "zstd frame is incomplete");
    r->ended = 1;
    if (ret_object_hash) crypto_generichash_final(&r->hash, ret_object_hash, SS_OBJECT_HASH_BYTES);
    return SS_OK;
}

uint64_t ss_frame_reader_padding(const ss_frame_reader *r)
{
    return r && r->ended ? 1 + r->zeros_held : 0;
}

void ss_frame_reader_free(ss_frame_reader *r)
{
    if (!r) return;
    ZSTD_freeDStream(r->zd);
    if (r->zbuf) sodium_memzero(r->zbuf, r->zcap);
    free(r->zbuf);
    free(r->key);
    sodium_memzero(r, sizeof *r);
    free(r);
}

/* ---- whole buffers ---- */

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
    int nomem;
} membuf;

static int membuf_add(void *ctx, const void *buf, size_t len)
{
    membuf *m = ctx;
    if (len > SIZE_MAX - m->len) return m->nomem = -1;
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap - m->len < len)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        uint8_t *p = realloc(m->p, cap);
        if (!p) return m->nomem = -1;
        m->p = p;
        m->cap = cap;
    }
    if (len) memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static ss_rc membuf_take(membuf *m, void **ret_buf, size_t *ret_len, const char *key, ss_err *err)
{
    /* An empty result is still a real allocation, so NULL always means failure. */
    if (!m->nomem && !m->p && !(m->p = malloc(1))) m->nomem = 1;
    if (m->nomem) return ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    *ret_buf = m->p;
    *ret_len = m->len;
    m->p = NULL;
    return SS_OK;
}

ss_rc ss_frame_seal_buf(const ss_keys *keys, unsigned kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], int level, const void *plain,
                        size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_frame_writer *w = NULL;
    membuf m = {0};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_rc rc;

    if (ret_buf) *ret_buf = NULL;
    if (ret_len) *ret_len = 0;
    if (ret_object_hash) memset(ret_object_hash, 0, SS_OBJECT_HASH_BYTES);
    if (!ret_buf || !ret_len) return ss_fail(err, SS_ERR_INVALID, "frame: no result pointer");
    rc = ss_frame_writer_new(keys, kind, key, seq, prev_chain, level, membuf_add, &m, &w, err);
    if (rc != SS_OK) goto fail;
    rc = ss_frame_write(w, plain, len, err);
    if (rc) goto fail;
    rc = ss_frame_finish(w, hash, err);
    if (rc) goto fail;
    rc = membuf_take(&m, ret_buf, ret_len, key, err);
    if (rc) goto fail;
    if (ret_object_hash) memcpy(ret_object_hash, hash, SS_OBJECT_HASH_BYTES);
fail:
    if (rc == SS_ERR_IO && m.nomem)
        rc = ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    ss_frame_writer_free(w);
    free(m.p);
    return rc;
}

ss_rc ss_frame_open_buf(const ss_keys *keys, unsigned expected_kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], uint64_t max_plain,
                        const void *obj, size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_frame_reader *r = NULL;
    membuf m = {0};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_rc rc;

    if (ret_buf) *ret_buf = NULL;
    if (ret_len) *ret_len = 0;
    if (ret_object_hash) memset(ret_object_hash, 0, SS_OBJECT_HASH_BYTES);
    if (!ret_buf || !ret_len) return ss_fail(err, SS_ERR_INVALID, "frame: no result pointer");
    rc = ss_frame_reader_new(keys, expected_kind, key, seq, prev_chain, max_plain, membuf_add, &m,
                             &r, err);
    if (rc != SS_OK) goto fail;
    rc = ss_frame_feed(r, obj, len, err);
    if (rc) goto fail;
    rc = ss_frame_end(r, hash, err);
    if (rc) goto fail;
    rc = membuf_take(&m, ret_buf, ret_len, key, err);
    if (rc) goto fail;
    if (ret_object_hash) memcpy(ret_object_hash, hash, SS_OBJECT_HASH_BYTES);
fail:
    if (rc == SS_ERR_IO && m.nomem)
        rc = ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    ss_frame_reader_free(r);
    if (m.p) sodium_memzero(m.p, m.len);
    free(m.p);
    return rc;
}
