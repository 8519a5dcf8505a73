/*
 * test-frame: framed objects and the hash chain (core/frame.h) against
 * docs/FORMAT.md. Every refusal must be
 * SS_ERR_INTEGRITY, and the reader must never have handed out a byte that
 * did not authenticate: the sink records all it got, and each test checks
 * that it is a prefix of the true plaintext no longer than the records that
 * came before the damage. Readers are fed in odd slices to prove streaming.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <zstd.h>

#include "frame.h"
#include "pad.h"

#define KEY1 "log/00000000000000000001"
#define KEY2 "log/00000000000000000002"
#define MiB (1024u * 1024)

static const uint8_t ZERO_CHAIN[32];
/* FORMAT.md "Framed objects": the 20-byte header, then the 24-byte stream header. */
enum { HDR = 20, PFX = 44 };
_Static_assert(HDR == SS_FRAME_HEADER_BYTES && PFX == SS_FRAME_PREFIX_BYTES, "spec and code");
static ss_keys *keys, *other_keys, *same_repo_other_master;

typedef struct sink {
    uint8_t *p;
    size_t len, cap;
    int refuse; /* return non-zero from the callback */
} sink;

static int sink_add(void *ctx, const void *buf, size_t len)
{
    sink *s = ctx;
    if (s->refuse) return -1;
    if (len == 0) return 0;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2 + 1024;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->len, buf, len);
    s->len += len;
    return 0;
}

/* Half random, half runs of text: zstd shrinks it, records still vary. */
static uint8_t *make_data(size_t len, int compressible)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    randombytes_buf(p, len);
    if (compressible)
        for (size_t i = 0; i < len; i++)
            if ((i / 512) % 2 == 0) p[i] = (uint8_t) "the quick brown fox "[i % 20];
    return p;
}

static uint8_t *seal_obj(unsigned kind, const char *key, uint64_t seq, const uint8_t *prev,
                         int level, const uint8_t *data, size_t len, size_t *ret_len,
                         uint8_t hash[32])
{
    void *obj = NULL;
    ss_err err = {{0}};
    ss_rc rc =
        ss_frame_seal_buf(keys, kind, key, seq, prev, level, data, len, &obj, ret_len, hash, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
    return obj;
}

typedef struct read_args {
    const ss_keys *keys;
    unsigned kind;
    const char *key;
    uint64_t seq;
    const uint8_t *prev;
    uint64_t max_plain;
} read_args;

static const read_args RA_DEFAULT = {NULL, SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, UINT64_MAX};

/* Feed obj in slices of `slice` bytes (0: all at once) and end; the first failure is returned. */
static ss_rc read_obj(read_args a, const uint8_t *obj, size_t len, size_t slice, sink *out,
                      uint8_t hash[32], ss_err *err)
{
    ss_frame_reader *r = NULL;
    ss_rc rc = ss_frame_reader_new(a.keys ? a.keys : keys, a.kind, a.key, a.seq, a.prev,
                                   a.max_plain, sink_add, out, &r, err);
    assert_int_equal(rc, SS_OK);
    for (size_t off = 0; off < len && rc == SS_OK;) {
        size_t n = slice && len - off > slice ? slice : len - off;
        rc = ss_frame_feed(r, obj + off, n, err);
        off += n;
    }
    if (rc == SS_OK) rc = ss_frame_end(r, hash, err);
    if (rc != SS_OK) { /* failure is sticky */
        ss_err again = {{0}};
        assert_int_equal(ss_frame_feed(r, "x", 1, &again), rc);
        assert_int_equal(ss_frame_end(r, NULL, &again), rc);
    }
    ss_frame_reader_free(r);
    return rc;
}

/* What a refused read may have emitted: a true prefix, at most `allowed` bytes. */
static void assert_prefix(const sink *s, const uint8_t *data, size_t allowed)
{
    assert_true(s->len <= allowed);
    if (s->len) assert_memory_equal(s->p, data, s->len);
}

static void expect_refused(read_args a, const uint8_t *obj, size_t len, const uint8_t *data,
                           size_t allowed, const char *what)
{
    static const size_t slices[] = {0, 1, 7, 65553};
    for (size_t i = 0; i < sizeof slices / sizeof slices[0]; i++) {
        sink s = {0};
        ss_err err = {{0}};
        ss_rc rc = read_obj(a, obj, len, slices[i], &s, NULL, &err);
        if (rc != SS_ERR_INTEGRITY)
            fprintf(stderr, "%s (slice %zu): rc %d %s\n", what, slices[i], rc, err.msg);
        assert_int_equal(rc, SS_ERR_INTEGRITY);
        assert_non_null(strstr(err.msg, a.key)); /* names the object */
        assert_prefix(&s, data, allowed);
        free(s.p);
        if (len > 300000 && slices[i] == 0) break; /* big objects: one slicing is enough */
    }
}

/* The record stream holds n bytes padded to their bucket (FORMAT.md "Size padding"). */
static size_t raw_object_size(size_t n)
{
    size_t p = (size_t)ss_pad_size(n), records = (p + 65535) / 65536;
    return PFX + p + 17 * records;
}

/* src padded as sodium_pad would: 0x80, zeros, to padded bytes (0: its bucket). */
static uint8_t *padded(const void *src, size_t n, size_t to, size_t *ret_len)
{
    if (!to) to = (size_t)ss_pad_size(n);
    uint8_t *p = calloc(1, to + 1);
    if (!p || to <= n) abort();
    if (n) memcpy(p, src, n);
    p[n] = 0x80;
    *ret_len = to;
    return p;
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 65536 + 5, 5 * MiB};
    static const size_t slices[] = {0, 1, 7, 65552, 65553, 65554};
    static const struct {
        int level, compressible;
    } modes[] = {{0, 0}, {3, 0}, {3, 1}, {19, 1}};

    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i], olen = 0;
            if (modes[m].level == 19 && n > 65537) continue; /* slow and adds nothing */
            uint8_t *data = make_data(n, modes[m].compressible), wh[32], rh[32], h[32];
            uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, modes[m].level, data, n,
                                    &olen, wh);
            crypto_generichash(h, 32, obj, olen, NULL, 0);
            assert_memory_equal(wh, h, 32); /* the writer's hash is of all object bytes */
            if (modes[m].level == 0) assert_int_equal(olen, raw_object_size(n));
            if (modes[m].compressible && n > 65536) assert_true(olen < n * 3 / 4);
            assert_int_equal(obj[6], modes[m].level ? SS_FRAME_FLAG_ZSTD : 0);
            for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++) {
                if (slices[s] == 1 && n > 4 * 65536) continue; /* 5M calls: no new path */
                sink out = {0};
                ss_err err = {{0}};
                ss_rc rc = read_obj(RA_DEFAULT, obj, olen, slices[s], &out, rh, &err);
                if (rc) fprintf(stderr, "size %zu slice %zu: %s\n", n, slices[s], err.msg);
                assert_int_equal(rc, SS_OK);
                assert_int_equal(out.len, n);
                if (n) assert_memory_equal(out.p, data, n);
                assert_memory_equal(rh, wh, 32);
                free(out.p);
            }
            free(obj);
            free(data);
        }
    }
}

/* Written through many small ss_frame_write calls, the object is the same record layout. */
static void test_streaming_writer(void **state)
{
    (void)state;
    static const size_t pieces[] = {1, 7, 1000, 65536, 70000};
    size_t n = 3 * 65536 + 5;
    uint8_t *data = make_data(n, 0);

    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        ss_frame_writer *w = NULL;
        sink obj = {0}, out = {0};
        ss_err err = {{0}};
        uint8_t wh[32], rh[32];
        assert_int_equal(ss_frame_writer_new(keys, SS_FRAME_KIND_CHECKPOINT, "checkpoints/7", 7,
                                             ZERO_CHAIN, 0, sink_add, &obj, &w, &err),
                         SS_OK);
        for (size_t off = 0; off < n; off += pieces[i])
            assert_int_equal(
                ss_frame_write(w, data + off, n - off < pieces[i] ? n - off : pieces[i], &err),
                SS_OK);
        assert_int_equal(ss_frame_finish(w, wh, &err), SS_OK);
        assert_int_equal(ss_frame_write(w, "x", 1, &err), SS_ERR_INVALID); /* finished */
        ss_frame_writer_free(w);
        assert_int_equal(obj.len, raw_object_size(n));
        read_args a = {NULL, SS_FRAME_KIND_CHECKPOINT, "checkpoints/7", 7, ZERO_CHAIN, n};
        assert_int_equal(read_obj(a, obj.p, obj.len, 7, &out, rh, &err), SS_OK);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.p, data, n);
        assert_memory_equal(rh, wh, 32);
        free(obj.p);
        free(out.p);
    }
    free(data);
}

/* The layout by hand: context recomputed from FORMAT.md, records pulled with the primitive. */
static void test_wire_format(void **state)
{
    (void)state;
    size_t n = 65536 + 10, olen = 0;
    uint8_t *data = make_data(n, 0), ctx[32], b[8], plain[65536];
    uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY2, 2, ZERO_CHAIN + 0, 0, data, n, &olen, NULL);
    crypto_generichash_state h;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned long long mlen;
    unsigned char tag;

    /* magic, version 2, kind 1 (log), raw, zero, epoch 0 from sequence 1 */
    assert_memory_equal(obj, "S3SO\x02\x01\x00\x00\0\0\0\0\x01\0\0\0\0\0\0\0", HDR);
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-object-v1", 16);
    crypto_generichash_update(&h, ss_keys_repo_id(keys), 16);
    crypto_generichash_update(&h, obj, HDR);
    b[0] = sizeof KEY2 - 1;
    b[1] = 0;
    crypto_generichash_update(&h, b, 2);
    crypto_generichash_update(&h, (const uint8_t *)KEY2, sizeof KEY2 - 1);
    memset(b, 0, 8);
    b[0] = 2;
    crypto_generichash_update(&h, b, 8);
    crypto_generichash_update(&h, ZERO_CHAIN, 32);
    crypto_generichash_final(&h, ctx, 32);

    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(
                         &st, obj + HDR, ss_keys_content_key(keys, 0, SS_SUBKEY_OBJECT)),
                     0);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&st, plain, &mlen, &tag, obj + PFX,
                                                                65553, ctx, 32),
                     0);
    assert_int_equal(mlen, 65536);
    assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    assert_memory_equal(plain, data, 65536);
    /* 65546 bytes pad to 67584 (block 2048): 10 bytes, 0x80, 2037 zeros in the last record. */
    assert_int_equal(ss_pad_size(n), 67584);
    assert_int_equal(olen - PFX - 65553, 2048 + 17);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(
                         &st, plain, &mlen, &tag, obj + PFX + 65553, 2048 + 17, ctx, 32),
                     0);
    assert_int_equal(mlen, 2048);
    assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    assert_memory_equal(plain, data + 65536, 10);
    assert_int_equal(plain[10], 0x80);
    for (size_t i = 11; i < 2048; i++)
        assert_int_equal(plain[i], 0);
    free(obj);
    free(data);
}

static void test_flipped_bits(void **state)
{
    (void)state;
    size_t n = 3 * 65536 + 5;
    for (int level = 0; level <= 3; level += 3) {
        size_t olen = 0;
        uint8_t *data = make_data(n, level != 0);
        uint8_t *obj =
            seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, level, data, n, &olen, NULL);
        size_t last = olen - 1;
        const struct {
            const char *name;
            size_t off;
        } cases[] = {
            {"magic", 0},
            {"version", 4},
            {"kind", 5},
            {"flags", 6},
            {"zero byte", 7},
            {"epoch start", 12},
            {"epoch start last", 19},
            {"stream header first", HDR},
            {"stream header mid", HDR + 12},
            {"stream header last", PFX - 1},
            {"record 0 tag byte", PFX},
            {"record 0 body", PFX + 100},
            {"record 0 MAC", PFX + 65552},
            {"record 1 body", PFX + 65553 + 5},
            {"last record MAC", last - 3},
            {"last byte", last},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (cases[i].off >= olen) continue;
            size_t rec = cases[i].off < PFX ? 0 : (cases[i].off - PFX) / 65553;
            obj[cases[i].off] ^= 0x01;
            /* Raw: nothing of the damaged record or after it. zstd: still only a true prefix. */
            expect_refused(RA_DEFAULT, obj, olen, data, level ? n : rec * 65536, cases[i].name);
            obj[cases[i].off] ^= 0x01;
        }
        free(obj);
        free(data);
    }
}

static void test_truncated(void **state)
{
    (void)state;
    size_t n = 3 * 65536 + 5, olen = 0;
    uint8_t *data = make_data(n, 0);
    uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, data, n, &olen, NULL);
    const size_t R = 65553;
    const size_t cuts[] = {
        0,           1,       7,           8,           HDR - 1,     HDR,
        PFX - 1,     PFX,     PFX + 1,     PFX + 16,    PFX + 17,    PFX + 1000,
        PFX + R - 1, PFX + R, PFX + R + 1, PFX + 2 * R, PFX + 3 * R, PFX + 3 * R + 17,
        olen - 1};

    assert_int_equal(olen, raw_object_size(n));
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t whole = cuts[i] < PFX ? 0 : (cuts[i] - PFX) / R; /* records before the cut */
        char name[32];
        snprintf(name, sizeof name, "cut at %zu", cuts[i]);
        expect_refused(RA_DEFAULT, obj, cuts[i], data, whole * 65536, name);
    }
    /* The same with an object whose last record is full (131000 bytes pad to 2 * 65536). */
    free(obj);
    obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, data, 131000, &olen, NULL);
    assert_int_equal(olen, PFX + 2 * R);
    expect_refused(RA_DEFAULT, obj, PFX + R, data, 65536, "full final record dropped");
    expect_refused(RA_DEFAULT, obj, olen - 1, data, 65536, "full final record cut");
    free(obj);
    free(data);
}

static void test_extended(void **state)
{
    (void)state;
    static const size_t sizes[] = {5, 65536, 65537};
    const size_t R = 65553;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], olen = 0;
        uint8_t *data = make_data(n, 0);
        uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, data, n, &olen, NULL);
        uint8_t *ext = malloc(olen + R);
        memcpy(ext, obj, olen);
        /* One byte, a tag's worth, and a copy of a whole record after TAG_FINAL. */
        ext[olen] = 0;
        expect_refused(RA_DEFAULT, ext, olen + 1, data, n, "one extra byte");
        randombytes_buf(ext + olen, 17);
        expect_refused(RA_DEFAULT, ext, olen + 17, data, n, "extra empty record");
        memcpy(ext + olen, obj + PFX, olen - PFX < R ? olen - PFX : R);
        expect_refused(RA_DEFAULT, ext, olen + (olen - PFX < R ? olen - PFX : R), data, n,
                       "extra whole record");
        free(ext);
        free(obj);
        free(data);
    }
}

static void test_wrong_context(void **state)
{
    (void)state;
    size_t n = 70000, olen = 0;
    uint8_t *data = make_data(n, 1), chain[32], other_chain[32];
    randombytes_buf(chain, 32);
    memcpy(other_chain, chain, 32);
    other_chain[31] ^= 0x80;
    uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY2, 2, chain, 3, data, n, &olen, NULL);
    const struct {
        const char *name;
        read_args a;
    } cases[] = {
        {"moved to another key", {NULL, SS_FRAME_KIND_LOG, KEY1, 2, chain, UINT64_MAX}},
        {"replayed as another seq", {NULL, SS_FRAME_KIND_LOG, KEY2, 3, chain, UINT64_MAX}},
        {"forged chain", {NULL, SS_FRAME_KIND_LOG, KEY2, 2, other_chain, UINT64_MAX}},
        {"zero chain", {NULL, SS_FRAME_KIND_LOG, KEY2, 2, ZERO_CHAIN, UINT64_MAX}},
        {"read as a checkpoint", {NULL, SS_FRAME_KIND_CHECKPOINT, KEY2, 2, chain, UINT64_MAX}},
        {"another repository", {other_keys, SS_FRAME_KIND_LOG, KEY2, 2, chain, UINT64_MAX}},
        {"wrong master key",
         {same_repo_other_master, SS_FRAME_KIND_LOG, KEY2, 2, chain, UINT64_MAX}},
    };
    sink s = {0};
    ss_err err = {{0}};
    read_args right = {NULL, SS_FRAME_KIND_LOG, KEY2, 2, chain, UINT64_MAX};
    assert_int_equal(read_obj(right, obj, olen, 0, &s, NULL, &err), SS_OK);
    free(s.p);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].a, obj, olen, data, 0, cases[i].name);

    /* The kind byte rewritten to match the reader: the header is in the context. */
    obj[5] = SS_FRAME_KIND_CHECKPOINT;
    read_args as_cp = {NULL, SS_FRAME_KIND_CHECKPOINT, KEY2, 2, chain, UINT64_MAX};
    expect_refused(as_cp, obj, olen, data, 0, "kind byte rewritten");
    free(obj);
    free(data);
}

static void test_plaintext_cap(void **state)
{
    (void)state;
    size_t n = 5 * MiB, olen = 0;
    uint8_t *zeros = calloc(1, n);
    for (int level = 0; level <= 3; level += 3) {
        uint8_t *obj =
            seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, level, zeros, n, &olen, NULL);
        if (level) assert_true(olen < 4096); /* the bomb: a few hundred bytes for 5 MiB */
        read_args a = RA_DEFAULT;
        a.max_plain = MiB;
        expect_refused(a, obj, olen, zeros, MiB, "over the cap");
        a.max_plain = n; /* exactly the size is fine */
        sink s = {0};
        ss_err err = {{0}};
        assert_int_equal(read_obj(a, obj, olen, 65553, &s, NULL, &err), SS_OK);
        assert_int_equal(s.len, n);
        free(s.p);
        free(obj);
    }
    free(zeros);
}

static void test_callback_refusal_and_misuse(void **state)
{
    (void)state;
    ss_frame_writer *w = NULL;
    sink out = {.refuse = 1};
    ss_err err = {{0}};
    uint8_t h[32];
    size_t olen = 0;

    assert_int_equal(ss_frame_writer_new(keys, SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, sink_add,
                                         &out, &w, &err),
                     SS_ERR_IO);
    assert_null(w);
    assert_int_equal(ss_frame_writer_new(keys, 3, KEY1, 1, ZERO_CHAIN, 0, sink_add, &out, &w, &err),
                     SS_ERR_INVALID);
    assert_int_equal(
        ss_frame_writer_new(keys, 1, KEY1, 1, ZERO_CHAIN, 20, sink_add, &out, &w, &err),
        SS_ERR_INVALID);
    assert_int_equal(
        ss_frame_writer_new(keys, 1, KEY1, 1, ZERO_CHAIN, -1, sink_add, &out, &w, &err),
        SS_ERR_INVALID);

    uint8_t *obj =
        seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, (const uint8_t *)"abc", 3, &olen, NULL);
    sink refusing = {.refuse = 1};
    assert_int_equal(read_obj(RA_DEFAULT, obj, olen, 0, &refusing, h, &err), SS_ERR_IO);
    free(obj);
}

/* The store-facing adapter: a refusal stops the stream, ss_frame_end gives the reason. */
static void test_sink_adapter(void **state)
{
    (void)state;
    size_t n = 200000, olen = 0;
    uint8_t *data = make_data(n, 0);
    uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, data, n, &olen, NULL);
    for (int damage = 0; damage <= 1; damage++) {
        ss_frame_reader *r = NULL;
        sink s = {0};
        ss_err err = {{0}};
        int stopped = 0;
        obj[olen / 2] ^= (uint8_t)damage;
        assert_int_equal(ss_frame_reader_new(keys, SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, n,
                                             sink_add, &s, &r, &err),
                         SS_OK);
        for (size_t off = 0; off < olen && !stopped; off += 16384)
            stopped = ss_frame_sink(r, obj + off, olen - off < 16384 ? olen - off : 16384) != 0;
        assert_int_equal(stopped, damage);
        assert_int_equal(ss_frame_end(r, NULL, &err), damage ? SS_ERR_INTEGRITY : SS_OK);
        if (damage) assert_non_null(strstr(err.msg, "does not authenticate"));
        assert_prefix(&s, data, damage ? 65536 : n);
        assert_int_equal(s.len, damage ? 65536 : n);
        ss_frame_reader_free(r);
        free(s.p);
    }
    free(obj);
    free(data);
}

static void test_chain(void **state)
{
    (void)state;
    uint8_t prev[32], oh[32], base[32], v[32], want[32];
    crypto_generichash_state h;

    randombytes_buf(prev, 32);
    randombytes_buf(oh, 32);
    ss_chain_next(keys, prev, oh, base);
    crypto_generichash_init(&h, ss_keys_subkey(keys, SS_SUBKEY_CHAIN), 32, 32);
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-chain-v1", 15);
    crypto_generichash_update(&h, prev, 32);
    crypto_generichash_update(&h, oh, 32);
    crypto_generichash_final(&h, want, 32);
    assert_memory_equal(base, want, 32);

    ss_chain_next(keys, prev, oh, v);
    assert_memory_equal(v, base, 32); /* deterministic */
    for (int i = 0; i < 32; i += 31) {
        prev[i] ^= 1;
        ss_chain_next(keys, prev, oh, v);
        assert_memory_not_equal(v, base, 32);
        prev[i] ^= 1;
        oh[i] ^= 1;
        ss_chain_next(keys, prev, oh, v);
        assert_memory_not_equal(v, base, 32);
        oh[i] ^= 1;
    }
    ss_chain_next(other_keys, prev, oh, v);
    assert_memory_not_equal(v, base, 32);
    memcpy(v, prev, 32);
    ss_chain_next(keys, v, oh, v); /* out may alias prev */
    assert_memory_equal(v, base, 32);

    /* End to end: log/2 opens only with chain(1) computed from log/1's bytes. */
    size_t l1 = 0, l2 = 0;
    uint8_t h1[32], c1[32], rh[32];
    uint8_t *o1 =
        seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 3, (const uint8_t *)"one", 3, &l1, h1);
    ss_chain_next(keys, ZERO_CHAIN, h1, c1);
    uint8_t *o2 = seal_obj(SS_FRAME_KIND_LOG, KEY2, 2, c1, 3, (const uint8_t *)"two", 3, &l2, NULL);
    sink s = {0};
    ss_err err = {{0}};
    assert_int_equal(read_obj(RA_DEFAULT, o1, l1, 0, &s, rh, &err), SS_OK);
    assert_memory_equal(rh, h1, 32);
    ss_chain_next(keys, ZERO_CHAIN, rh, v);
    read_args a2 = {NULL, SS_FRAME_KIND_LOG, KEY2, 2, v, UINT64_MAX};
    assert_int_equal(read_obj(a2, o2, l2, 0, &s, NULL, &err), SS_OK);
    /* log/1 replaced by another valid object: chain(1) moves, log/2 fails. */
    free(o1);
    o1 = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 3, (const uint8_t *)"one", 3, &l1, h1);
    ss_chain_next(keys, ZERO_CHAIN, h1, v);
    expect_refused(a2, o2, l2, (const uint8_t *)"two", 0, "chain after a replaced predecessor");
    free(s.p);
    free(o1);
    free(o2);
}

/*
 * Objects built from primitives, with any header flags, record tags and
 * payload, correctly authenticated: only the reader's own checks can refuse.
 */
typedef struct hand_rec {
    const void *p;
    size_t n;
    unsigned char tag;
} hand_rec;

static uint8_t *hand_object(uint8_t flags, const hand_rec *recs, size_t nrec, size_t *ret_len)
{
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_generichash_state h;
    uint8_t ctx[32], b[8] = {0}, *obj, *p;
    unsigned long long clen;
    size_t total = PFX;

    for (size_t i = 0; i < nrec; i++)
        total += recs[i].n + 17;
    obj = malloc(total);
    p = obj + PFX;

    memcpy(obj, "S3SO\x02\x01\x00\x00\0\0\0\0\x01\0\0\0\0\0\0\0", HDR);
    obj[6] = flags;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)"s3sync-object-v1", 16);
    crypto_generichash_update(&h, ss_keys_repo_id(keys), 16);
    crypto_generichash_update(&h, obj, HDR);
    b[0] = sizeof KEY1 - 1;
    crypto_generichash_update(&h, b, 2);
    crypto_generichash_update(&h, (const uint8_t *)KEY1, sizeof KEY1 - 1);
    b[0] = 1;
    crypto_generichash_update(&h, b, 8);
    crypto_generichash_update(&h, ZERO_CHAIN, 32);
    crypto_generichash_final(&h, ctx, 32);
    crypto_secretstream_xchacha20poly1305_init_push(&st, obj + HDR,
                                                    ss_keys_content_key(keys, 0, SS_SUBKEY_OBJECT));
    for (size_t i = 0; i < nrec; i++) {
        crypto_secretstream_xchacha20poly1305_push(&st, p, &clen, recs[i].p, recs[i].n, ctx, 32,
                                                   recs[i].tag);
        p += clen;
    }
    *ret_len = (size_t)(p - obj);
    return obj;
}

static void test_hand_built_objects(void **state)
{
    (void)state;
    enum {
        M = crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
        F = crypto_secretstream_xchacha20poly1305_TAG_FINAL,
        P = crypto_secretstream_xchacha20poly1305_TAG_PUSH
    };
    size_t n = 300000, zlen, wlen = 0, olen = 0;
    uint8_t *data = malloc(n), *z = malloc(2 * ZSTD_compressBound(n)), *wide;
    for (size_t i = 0; i < n; i++) /* compresses to a few KiB: fits one record */
        data[i] = (uint8_t)("the quick brown fox "[i % 20] + (i / 4096) % 7);
    zlen = ZSTD_compress(z, ZSTD_compressBound(n), data, n, 3);
    assert_true(2 * zlen + 1 < 65536);
    memcpy(z + zlen, z, zlen); /* a second frame after the first */
    /* A frame declaring a 128 MiB window (size unknown, so zstd keeps the window). */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    wide = malloc(ZSTD_compressBound(n));
    ZSTD_inBuffer in = {data, n, 0};
    ZSTD_outBuffer o = {wide, ZSTD_compressBound(n), 0};
    assert_false(ZSTD_isError(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_continue)));
    assert_int_equal(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end), 0);
    wlen = o.pos;
    assert_true(wlen < 65536);
    ZSTD_freeCCtx(cc);
    /* Record streams padded as a writer pads them, so only the rule under test can refuse. */
    size_t l_full, l_z, l_cut, l_two, l_byte, l_not, l_empty, l_wide, l_10, l_over, l_span;
    uint8_t *full = padded(data, 65535, 0, &l_full); /* the marker ends record 0 */
    uint8_t *pz = padded(z, zlen, 0, &l_z), *pcut = padded(z, zlen - 5, 0, &l_cut);
    uint8_t *ptwo = padded(z, 2 * zlen, 0, &l_two), *pbyte = padded(z, zlen + 1, 0, &l_byte);
    uint8_t *pnot = padded(data + 1000, 100, 0, &l_not), *pempty = padded("", 0, 0, &l_empty);
    uint8_t *pwide = padded(wide, wlen, 0, &l_wide), *p10 = padded(data, 10, 0, &l_10);
    uint8_t *pover = padded(data, 10, 512, &l_over);  /* a bucket, not the one 10 bytes get */
    uint8_t *pspan = padded(data, 70000, 0, &l_span); /* zeros run on into the last record */

    const struct {
        const char *name;
        uint8_t flags;
        hand_rec recs[3];
        size_t nrec;
        ss_rc rc;
        size_t plain; /* on success */
    } cases[] = {
        {"message then empty final (not what we write, still valid)",
         0,
         {{full, 65536, M}, {"", 0, F}},
         2,
         SS_OK,
         65535},
        {"padding across records",
         0,
         {{pspan, 65536, M}, {pspan + 65536, l_span - 65536, F}},
         2,
         SS_OK,
         70000},
        {"unpadded", 0, {{data, 10, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"padded to another bucket", 0, {{pover, l_over, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"no 0x80 marker in a bucket's length", 0, {{data, 256, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"padded, then data", 0, {{p10, l_10, M}, {data, 10, F}}, 2, SS_ERR_INTEGRITY, 0},
        {"short last record tagged message",
         0,
         {{data, 65536, M}, {data, 10, M}},
         2,
         SS_ERR_INTEGRITY,
         0},
        {"push tag", 0, {{data, 65536, P}, {data, 5, F}}, 2, SS_ERR_INTEGRITY, 0},
        {"unknown header flag", 0x02, {{p10, l_10, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"zstd frame", 1, {{pz, l_z, F}}, 1, SS_OK, 300000},
        {"zstd frame cut short", 1, {{pcut, l_cut, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"two zstd frames", 1, {{ptwo, l_two, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"zstd frame and a byte", 1, {{pbyte, l_byte, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"not zstd", 1, {{pnot, l_not, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"empty, flagged zstd", 1, {{pempty, l_empty, F}}, 1, SS_ERR_INTEGRITY, 0},
        {"window above 8 MiB", 1, {{pwide, l_wide, F}}, 1, SS_ERR_INTEGRITY, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *obj = hand_object(cases[i].flags, cases[i].recs, cases[i].nrec, &olen);
        sink s = {0};
        ss_err err = {{0}};
        ss_rc rc = read_obj(RA_DEFAULT, obj, olen, 7, &s, NULL, &err);
        if (rc != cases[i].rc) fprintf(stderr, "%s: rc %d %s\n", cases[i].name, rc, err.msg);
        assert_int_equal(rc, cases[i].rc);
        if (rc == SS_OK) {
            assert_int_equal(s.len, cases[i].plain);
            assert_memory_equal(s.p, data, s.len);
        } else {
            assert_prefix(&s, data, n);
        }
        free(s.p);
        free(obj);
    }
    uint8_t *bufs[] = {full, pz, pcut, ptwo, pbyte, pnot, pempty, pwide, p10, pover, pspan};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(wide);
    free(z);
    free(data);
}

/* Data that looks like padding (0x80, zeros) at record ends and the end survives the trip. */
static void test_padding_lookalikes(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n, marker; /* marker: index of a 0x80 in zeros (n: none) */
    } cases[] = {
        {"zeros", 200000, 200000},
        {"0x80 ends record 0", 65536 + 3, 65535},
        {"0x80 then zeros to the end", 70000, 60000},
        {"ends in 0x80", 4097, 4096},
        {"one 0x80", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].n, olen = 0;
        uint8_t *data = calloc(1, n);
        if (cases[i].marker < n) data[cases[i].marker] = 0x80;
        uint8_t *obj = seal_obj(SS_FRAME_KIND_LOG, KEY1, 1, ZERO_CHAIN, 0, data, n, &olen, NULL);
        assert_int_equal(olen, raw_object_size(n));
        for (size_t slice = 0; slice < 3; slice++) {
            sink out = {0};
            ss_err err = {{0}};
            size_t sl = slice == 0 ? 0 : slice == 1 ? 7 : 65553;
            ss_rc rc = read_obj(RA_DEFAULT, obj, olen, sl, &out, NULL, &err);
            if (rc) fprintf(stderr, "%s: %s\n", cases[i].name, err.msg);
            assert_int_equal(rc, SS_OK);
            assert_int_equal(out.len, n);
            assert_memory_equal(out.p, data, n);
            free(out.p);
        }
        free(obj);
        free(data);
    }
}

static int setup(void **state)
{
    (void)state;
    ss_err err = {{0}};
    if (ss_keys_generate(&keys, &err) || ss_keys_generate(&other_keys, &err)) return -1;
    uint8_t m[32];
    randombytes_buf(m, 32);
    return ss_keys_from_master(m, ss_keys_repo_id(keys), &same_repo_other_master, &err) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ss_keys_free(keys);
    ss_keys_free(other_keys);
    ss_keys_free(same_repo_other_master);
    return 0;
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_streaming_writer),
        cmocka_unit_test(test_wire_format),
        cmocka_unit_test(test_flipped_bits),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_extended),
        cmocka_unit_test(test_wrong_context),
        cmocka_unit_test(test_plaintext_cap),
        cmocka_unit_test(test_callback_refusal_and_misuse),
        cmocka_unit_test(test_sink_adapter),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_hand_built_objects),
        cmocka_unit_test(test_padding_lookalikes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
