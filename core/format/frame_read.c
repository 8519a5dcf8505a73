/*
 * frame_read: the streaming reader of framed objects (frame.c writes them).
 *
 * Records are found by counting (every record but the last is
 * SS_FRAME_WIRE_RECORD_BYTES on the wire), each authenticated before a byte
 * of it goes on. The padding of the record stream (FORMAT.md "Size padding")
 * is held back: a trailing 0x80 and the zeros after it (as a count: they are
 * zeros) until the reader knows whether more follows, so the padding never
 * reaches zstd or the consumer, and is checked at the end to be the canonical one.
 */
#include "frame_impl.h"
#include "le.h"
#include "pad.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zstd.h>

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
    uint32_t epoch;      /* the header's, once epoch_known */
    uint64_t start;
    int epoch_known;
    ss_rc failed;
    ss_err first; /* repeated by every call after a failure */
    uint8_t wire[WIRE];
    uint8_t plain[REC];
};

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
    rc = ss_frame_check_args(expected_kind, key, err);
    if (rc) return rc;
    r = calloc(1, sizeof *r);
    if (r) r->key = strdup(key);
    if (!r || !r->key) {
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

/*
 * The key epoch the header states (FORMAT.md "Framed objects"). One this
 * device does not hold is SS_ERR_EPOCH, so the caller can fetch it from
 * epochs/ and try again. A held one must begin where the header says and
 * be the one in force at the object's sequence: a log object under an
 * older epoch than that (written with a key a revoked device still holds)
 * is refused; a checkpoint may be written under any later epoch.
 */
static ss_rc r_epoch(ss_frame_reader *r, const uint8_t *h, ss_err *err)
{
    uint32_t in_force;

    r->epoch = ss_le_get32(h + SS_FRAME_OFF_EPOCH);
    r->start = ss_le_get64(h + SS_FRAME_OFF_START);
    r->epoch_known = 1;
    if (r->epoch > ss_keys_epoch(r->keys)) {
        r->failed = SS_ERR_EPOCH;
        ss_fail(&r->first, SS_ERR_EPOCH,
                "object %s: sealed under key epoch %" PRIu32 ", which this device does not hold",
                r->key, r->epoch);
        if (err) *err = r->first;
        return SS_ERR_EPOCH;
    }
    if (ss_keys_epoch_start(r->keys, r->epoch) != r->start)
        return r_fail(r, err,
                      "key epoch %" PRIu32 " said to begin at sequence %" PRIu64 ", not %" PRIu64,
                      r->epoch, r->start, ss_keys_epoch_start(r->keys, r->epoch));
    in_force = ss_keys_epoch_at(r->keys, r->seq);
    if (r->kind == SS_FRAME_KIND_LOG ? r->epoch != in_force : r->epoch < in_force)
        return r_fail(r, err,
                      "sealed under key epoch %" PRIu32 ", but epoch %" PRIu32
                      " is in force at sequence %" PRIu64,
                      r->epoch, in_force, r->seq);
    return SS_OK;
}

static ss_rc r_prefix(ss_frame_reader *r, ss_err *err)
{
    const uint8_t *h = r->prefix;
    ss_rc rc;

    if (memcmp(h, SS_FRAME_MAGIC, 4) != 0) return r_fail(r, err, "not a framed object (magic)");
    if (h[SS_FRAME_OFF_VERSION] != SS_FORMAT_VERSION)
        return r_fail(r, err, "unknown format version %u", h[SS_FRAME_OFF_VERSION]);
    if (h[SS_FRAME_OFF_KIND] != r->kind)
        return r_fail(r, err, "object kind %u, expected %u", h[SS_FRAME_OFF_KIND], r->kind);
    if ((h[SS_FRAME_OFF_FLAGS] & ~SS_FRAME_FLAG_ZSTD) != 0 || h[SS_FRAME_OFF_ZERO] != 0)
        return r_fail(r, err, "unknown header flags");
    rc = r_epoch(r, h, err);
    if (rc) return rc;
    ss_frame_context(r->keys, h, r->key, r->seq, r->prev_chain, r->ctx);
    if (crypto_secretstream_xchacha20poly1305_init_pull(
            &r->st, h + SS_FRAME_HEADER_BYTES,
            ss_keys_content_key(r->keys, r->epoch, SS_SUBKEY_OBJECT)) != 0)
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
        if (o.pos) {
            rc = r_deliver(r, r->zbuf, o.pos, err);
            if (rc) return rc;
        }
        if (left == 0) r->zdone = 1;
        more = left != 0 && o.pos == o.size; /* output full: zstd may hold more */
    }
    return SS_OK;
}

static ss_rc r_zeros(ss_frame_reader *r, uint64_t n, ss_err *err)
{
    while (n) {
        size_t k = n < sizeof ss_frame_zeros ? (size_t)n : sizeof ss_frame_zeros;
        ss_rc rc = r_plain(r, ss_frame_zeros, k, err);
        if (rc) return rc;
        n -= k;
    }
    return SS_OK;
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

/* As much of the input (*p, *len) as dst (holding *fill of cap) takes; both advance. */
static void fill_from(uint8_t *dst, size_t *fill, size_t cap, const uint8_t **p, size_t *len)
{
    size_t k = cap - *fill < *len ? cap - *fill : *len;
    memcpy(dst + *fill, *p, k);
    *fill += k;
    *p += k;
    *len -= k;
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
        if (!r->started) {
            fill_from(r->prefix, &r->prefix_fill, SS_FRAME_PREFIX_BYTES, &p, &len);
            if (r->prefix_fill < SS_FRAME_PREFIX_BYTES) continue;
            rc = r_prefix(r, err);
            if (rc) return rc;
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
        fill_from(r->wire, &r->fill, WIRE, &p, &len);
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

ss_rc ss_frame_reader_epoch(const ss_frame_reader *r, uint32_t *ret_epoch, uint64_t *ret_start)
{
    if (ret_epoch) *ret_epoch = 0;
    if (ret_start) *ret_start = 0;
    if (!r || !r->epoch_known) return SS_ERR_NOT_FOUND;
    if (ret_epoch) *ret_epoch = r->epoch;
    if (ret_start) *ret_start = r->start;
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
