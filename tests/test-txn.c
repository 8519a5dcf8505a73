/*
 * test-txn: the transaction codec (core/txn.h, FORMAT.md "Transactions").
 *
 * Roundtrip of every kind of op through small and large reads; 100k ops
 * streamed through a temp file; every prefix of a valid transaction refused
 * as truncated; a named table of malformed transactions, each built byte by
 * byte (not by the encoder, which refuses to write them) and each refused
 * with SS_ERR_INTEGRITY and a message naming the fault; and the encoder's own
 * refusals. With SS_TXN_CORPUS_DIR set, it also writes the fuzz seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pad.h"
#include "txn-fixture.h"
#include "txn.h"

static void test_roundtrip(void **state)
{
    (void)state;
    buf b = {0};
    encode_sample(&b);
    static const size_t steps[] = {1, 3, 7, 52, 1 << 20};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        msrc src;
        ss_txn_reader *r = open_mem(&src, b.p, b.len, steps[s]);
        ss_err err = {{0}};
        const ss_txn_entry *e = NULL;
        size_t chunk = 0;
        check_header(ss_txn_reader_header(r));
        for (size_t i = 0; i < 7; i++) {
            assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
            assert_non_null(e);
            check_entry(e, &sample_ops[i]);
            for (uint32_t j = 0; j < e->n_chunks; j++) {
                ss_chunk_ref c;
                assert_int_equal(ss_txn_chunks_left(r), e->n_chunks - j);
                assert_int_equal(ss_txn_next_chunk(r, &c, &err), SS_OK);
                check_chunk(&c, &sample_chunks[chunk++]);
            }
        }
        assert_int_equal(chunk, 3);
        uint64_t signed_len = 1;
        assert_null(ss_txn_reader_signature(r, &signed_len)); /* not before the end */
        assert_true(signed_len == 0);
        assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
        assert_null(e);
        assert_int_equal(ss_txn_next(r, &e, &err), SS_OK); /* the end stays the end */
        assert_null(e);
        const uint8_t *sig = ss_txn_reader_signature(r, &signed_len);
        assert_non_null(sig);
        assert_memory_equal(sig, sample_sig, SS_TXN_SIG_BYTES);
        assert_true(signed_len == b.len - SS_TXN_SIG_BYTES); /* everything before it */
        ss_txn_reader_free(r);
    }
    free(b.p);
}

/* Chunks left unread (all, or some) are checked and skipped by ss_txn_next. */
static void test_skip_chunks(void **state)
{
    (void)state;
    buf b = {0};
    encode_sample(&b);
    ss_err err = {{0}};
    assert_int_equal(decode_all(b.p, b.len, 5, 0, &err), SS_OK);
    msrc src;
    ss_txn_reader *r = open_mem(&src, b.p, b.len, 1 << 20);
    const ss_txn_entry *e = NULL;
    ss_chunk_ref c;
    for (int i = 0; i < 6; i++)
        assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
    assert_string_equal(e->path, "b/big.bin");
    assert_int_equal(ss_txn_next_chunk(r, &c, &err), SS_OK);
    assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
    assert_string_equal(e->path, "c/gone");
    assert_int_equal(ss_txn_next_chunk(r, &c, &err), SS_ERR_INVALID); /* a delete has none */
    assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
    assert_null(e);
    ss_txn_reader_free(r);
    free(b.p);
}

static void test_empty(void **state)
{
    (void)state;
    ss_txn_header h = sample_hdr;
    h.n_ops = 0;
    h.n_packs = 0;
    h.n_devices = 0;
    h.device_name_len = 0;
    buf b = {0};
    encode(&h, NULL, 0, NULL, &b);
    assert_int_equal(b.len, 50 + 2 + SS_TXN_SIG_BYTES); /* header, no device entry, signature */
    msrc src;
    ss_txn_reader *r = open_mem(&src, b.p, b.len, 1);
    const ss_txn_entry *e = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_txn_reader_header(r)->device_name_len, 0);
    assert_string_equal(ss_txn_reader_header(r)->device_name, "");
    assert_int_equal(ss_txn_next(r, &e, &err), SS_OK);
    assert_null(e);
    ss_txn_reader_free(r);
    free(b.p);
}

/* What the barrier rule still allows: deletes below, and leaving the subtree. */
static void test_barrier_allows(void **state)
{
    (void)state;
    /* clang-format off */
    static const ss_txn_entry ops[] = {
        {UP, .path = "a", .path_len = 1, .kind = SS_TXN_FILE, .storage = SS_TXN_INLINE},
        {.type = SS_TXN_DELETE, .path = "a/b", .path_len = 3},
        {.type = SS_TXN_DELETE, .path = "a/b/c", .path_len = 5},
        {UP, .path = "a-b", .path_len = 3, .kind = SS_TXN_DIR},
        {UP, .path = "a-b/c", .path_len = 5, .kind = SS_TXN_DIR},
        {.type = SS_TXN_DELETE, .path = "d", .path_len = 1},
        {.type = SS_TXN_DELETE, .path = "d/e", .path_len = 3},
        {UP, .path = "l", .path_len = 1, .kind = SS_TXN_SYMLINK, .size = 1, .target = "d"},
        {.type = SS_TXN_DELETE, .path = "l/x", .path_len = 3},
        {UP, .path = "l.txt", .path_len = 5, .kind = SS_TXN_FILE, .storage = SS_TXN_INLINE},
    };
    /* clang-format on */
    ss_txn_header h = sample_hdr;
    h.n_ops = sizeof ops / sizeof ops[0];
    buf b = {0};
    encode(&h, ops, h.n_ops, NULL, &b);
    ss_err err = {{0}};
    assert_int_equal(decode_all(b.p, b.len, 3, 1, &err), SS_OK);
    free(b.p);
}

/* ---- 100k ops through a temp file ---- */

#define BIG_DIRS 100
#define BIG_PER_DIR 999 /* plus the directory itself: 100,000 ops */

static void big_entry(uint32_t i, char *path, ss_txn_entry *e)
{
    uint32_t d = i / (BIG_PER_DIR + 1), f = i % (BIG_PER_DIR + 1);
    memset(e, 0, sizeof *e);
    e->type = SS_TXN_UPSERT;
    e->path = path;
    if (f == 0) {
        e->path_len = (size_t)sprintf(path, "d%02u", d);
        e->kind = SS_TXN_DIR;
        return;
    }
    e->path_len = (size_t)sprintf(path, "d%02u/f%03u", d, f - 1);
    e->kind = SS_TXN_FILE;
    e->mtime_s = i;
    if (f % 3 == 2) e->type = SS_TXN_DELETE;
    if (f % 3 == 1) {
        e->storage = SS_TXN_INLINE;
        e->size = f % 64;
        e->inline_data =
            (const uint8_t *)"0123456789012345678901234567890123456789012345678901234567890123";
    }
    if (f % 3 == 0) {
        e->storage = SS_TXN_CHUNKS;
        e->size = 2 * 4096 + f;
        e->n_chunks = 3;
    }
}

static void big_chunk(uint32_t i, uint32_t j, ss_chunk_ref *c)
{
    memset(c, 0, sizeof *c);
    c->pack = j % 2;
    c->offset = (uint64_t)i * 3 + j;
    c->plain_len = j < 2 ? 4096 : i % (BIG_PER_DIR + 1);
    c->sealed_len = (uint32_t)(SS_CHUNK_SEAL_FIXED + ss_pad_size(1 + (uint64_t)c->plain_len));
    memcpy(c->id, &i, sizeof i);
}

static int file_sink(void *ctx, const void *d, size_t n)
{
    return fwrite(d, 1, n, ctx) == n ? 0 : -1;
}

static long file_read_7(void *ctx, void *dst, size_t n)
{
    return (long)fread(dst, 1, n < 7 ? n : 7, ctx);
}

static int file_rewind(void *ctx)
{
    return fseek(ctx, 0, SEEK_SET);
}

static void big_write(FILE *f, uint32_t n_ops)
{
    ss_txn_header h = sample_hdr;
    h.n_ops = n_ops;
    ss_txn_writer *w = NULL;
    ss_err err = {{0}};
    char path[32];
    assert_int_equal(ss_txn_writer_new(&LIM, &h, file_sink, f, &w, &err), SS_OK);
    for (uint32_t i = 0; i < h.n_ops; i++) {
        ss_txn_entry e;
        ss_chunk_ref c;
        big_entry(i, path, &e);
        if (e.type == SS_TXN_DELETE) {
            assert_int_equal(ss_txn_put_delete(w, e.path, e.path_len, &err), SS_OK);
            continue;
        }
        assert_int_equal(ss_txn_put_upsert(w, &e, &err), SS_OK);
        for (uint32_t j = 0; j < e.n_chunks; j++) {
            big_chunk(i, j, &c);
            assert_int_equal(ss_txn_put_chunk(w, &c, &err), SS_OK);
        }
    }
    assert_int_equal(ss_txn_writer_finish(w, sign_sample, NULL, &err), SS_OK);
    ss_txn_writer_free(w);
}

static void big_check_entry(uint32_t i, const ss_txn_entry *e)
{
    char path[32];
    ss_txn_entry x;
    big_entry(i, path, &x);
    assert_int_equal(e->type, x.type);
    assert_string_equal(e->path, path);
    if (x.type == SS_TXN_UPSERT) {
        assert_int_equal(e->kind, x.kind);
        assert_true(e->size == x.size);
        assert_int_equal(e->n_chunks, x.n_chunks);
    }
}

static void test_large_streaming(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    big_write(f, BIG_DIRS * (BIG_PER_DIR + 1));
    assert_int_equal(fflush(f), 0);
    assert_int_equal(file_rewind(f), 0);
    ss_reader src = {file_read_7, file_rewind, f};
    ss_txn_reader *r = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_txn_reader_new(&LIM, &src, &r, &err), SS_OK);
    const ss_txn_entry *e = NULL;
    uint32_t n = 0, chunks = 0;
    while (ss_txn_next(r, &e, &err) == SS_OK && e) {
        big_check_entry(n, e);
        for (uint32_t j = 0; j < e->n_chunks; j++) {
            ss_chunk_ref c, x;
            assert_int_equal(ss_txn_next_chunk(r, &c, &err), SS_OK);
            big_chunk(n, j, &x);
            check_chunk(&c, &x);
            chunks++;
        }
        n++;
    }
    if (err.msg[0]) fprintf(stderr, "%s\n", err.msg);
    assert_null(e);
    assert_int_equal(n, 100000);
    assert_int_equal(chunks, BIG_DIRS * (BIG_PER_DIR / 3) * 3);
    ss_txn_reader_free(r);
    fclose(f);
}

/* ---- malformed input ---- */

static void test_truncated_every_prefix(void **state)
{
    (void)state;
    buf b = {0};
    encode_sample(&b);
    for (size_t len = 0; len < b.len; len++)
        for (int read_chunks = 0; read_chunks < 2; read_chunks++) {
            ss_err err = {{0}};
            ss_rc rc = decode_all(b.p, len, len % 5 + 1, read_chunks, &err);
            if (rc != SS_ERR_INTEGRITY || !strstr(err.msg, "truncated at byte"))
                fprintf(stderr, "prefix %zu: %d %s\n", len, rc, err.msg);
            assert_int_equal(rc, SS_ERR_INTEGRITY);
            assert_non_null(strstr(err.msg, "truncated at byte"));
        }
    free(b.p);
}

/* Raw builders: write any bytes, valid or not, without the encoder's checks. */

static void hdr_full(buf *b, const char *name, size_t nlen, uint32_t n_packs, uint32_t n_ops,
                     const char *key)
{
    b_mem(b, "S3ST\2\0\0\0", 8);
    b_uint(b, 7, 8);
    b_uint(b, 0, 8);
    b_mem(b, sample_hdr.device_id, SS_TXN_DEVICE_ID_BYTES);
    b_uint(b, nlen, 2);
    b_mem(b, name, nlen);
    b_uint(b, n_packs, 4);
    b_uint(b, n_ops, 4);
    for (uint32_t i = 0; i < n_packs; i++) {
        b_uint(b, strlen(key), 2);
        b_mem(b, key, strlen(key));
    }
}

static void hdr(buf *b, uint32_t n_packs, uint32_t n_ops)
{
    hdr_full(b, "pc", 2, n_packs, n_ops, KEY5);
    b_uint(b, 0, 2); /* no device entry */
}

/* A header with one op and n device entries to follow. */
static void hdr_dev(buf *b, uint32_t n)
{
    hdr_full(b, "pc", 2, 0, 1, KEY5);
    b_uint(b, n, 2);
}

/* A device entry: type, id (first byte), seq; an enroll with name (name_len bytes). */
static void dev(buf *b, unsigned type, uint8_t id0, uint64_t seq, const char *name, size_t name_len)
{
    b_uint(b, type, 1);
    b_uint(b, id0, 1);
    b_uint(b, 0, SS_TXN_DEVICE_ID_BYTES - 1);
    b_uint(b, seq, 8);
    if (type != SS_TXN_DEV_ENROLL) return;
    b_uint(b, 0x5a, SS_DEVICE_PK_BYTES);
    b_uint(b, name_len, 2);
    b_mem(b, name, name_len);
}

static void sig(buf *b)
{
    b_mem(b, sample_sig, SS_TXN_SIG_BYTES);
}

static void oph(buf *b, unsigned type, const char *p, size_t len)
{
    b_uint(b, type, 1);
    b_uint(b, len, 2);
    for (size_t i = 0; i < len; i++)
        b_uint(b, p ? (uint8_t)p[i] : 'a', 1);
}

static void attrs(buf *b, unsigned kind, uint32_t mode, uint32_t ns, uint64_t size)
{
    b_uint(b, kind, 1);
    b_uint(b, mode, 4);
    b_uint(b, 1, 8);
    b_uint(b, ns, 4);
    b_uint(b, size, 8);
}

static void dir(buf *b, const char *p)
{
    oph(b, SS_TXN_UPSERT, p, strlen(p));
    attrs(b, SS_TXN_DIR, 0755, 0, 0);
}

static void del(buf *b, const char *p)
{
    oph(b, SS_TXN_DELETE, p, strlen(p));
}

/* A file's op up to its inline length or chunk count n. */
static void fhead(buf *b, const char *p, uint64_t size, unsigned storage, uint32_t n)
{
    oph(b, SS_TXN_UPSERT, p, strlen(p));
    attrs(b, SS_TXN_FILE, 0644, 0, size);
    b_uint(b, 0, SS_TXN_CONTENT_ID_BYTES);
    b_uint(b, storage, 1);
    b_uint(b, n, 4);
}

static void inl(buf *b, const char *p, const char *data)
{
    fhead(b, p, strlen(data), SS_TXN_INLINE, (uint32_t)strlen(data));
    b_mem(b, data, strlen(data));
}

static void cref(buf *b, uint32_t pack, uint64_t off, uint32_t sealed, uint32_t plain)
{
    b_uint(b, pack, 4);
    b_uint(b, off, 8);
    b_uint(b, sealed, 4);
    b_uint(b, plain, 4);
    b_uint(b, 0xab, SS_CHUNK_ID_LEN);
}

static void lnk(buf *b, const char *p, const char *t, size_t tlen)
{
    oph(b, SS_TXN_UPSERT, p, strlen(p));
    attrs(b, SS_TXN_SYMLINK, 0777, 0, tlen);
    b_uint(b, tlen, 2);
    b_mem(b, t, tlen);
}

/* A one-op transaction deleting p (len bytes; p NULL: that many 'a's). */
static void bad_path(buf *b, const char *p, size_t len)
{
    hdr(b, 0, 1);
    oph(b, SS_TXN_DELETE, p, len);
}

/* A 256-byte device name, one more than allowed. */
static const char *name256(void)
{
    static char n[257];
    memset(n, 'n', 256);
    return n;
}

/* clang-format off */
#define MALFORMED(X) \
    X(bad_magic, "transaction header: bad magic", hdr(b, 0, 0); b->p[0] = 'X') \
    X(version_1, "format version 1, only 2", hdr(b, 0, 0); b->p[4] = 1) \
    X(reserved_nonzero, "reserved bytes not zero", hdr(b, 0, 0); b->p[6] = 1) \
    X(sequence_0, "sequence 0", hdr(b, 0, 0); memset(b->p + 8, 0, 8)) \
    X(device_name_256, "device name of 256 bytes", hdr_full(b, name256(), 256, 0, 0, KEY5)) \
    X(device_name_not_utf8, "not UTF-8", hdr_full(b, "\xc3\x28", 2, 0, 0, KEY5)) \
    X(device_name_overlong, "not UTF-8", hdr_full(b, "\xc0\xaf", 2, 0, 0, KEY5)) \
    X(device_name_surrogate, "not UTF-8", hdr_full(b, "\xed\xa0\x80", 3, 0, 0, KEY5)) \
    X(device_name_nul, "has NUL", hdr_full(b, "a\0b", 3, 0, 0, KEY5)) \
    X(packs_over_limit, "9 packs, above the limit 8", hdr(b, 9, 0)) \
    X(pack_key_41, "pack 1/1: pack key of 41 bytes", \
      hdr_full(b, "", 0, 1, 0, "data/0000000000000000005-0123456789abcdef")) \
    X(pack_key_digit, "is not data/", hdr_full(b, "", 0, 1, 0, "data/0000000000000000000x-0123456789abcdef")) \
    X(pack_key_upper, "is not data/", hdr_full(b, "", 0, 1, 0, "data/00000000000000000005-0123456789ABCDEF")) \
    X(pack_key_prefix, "is not data/", hdr_full(b, "", 0, 1, 0, "keys/00000000000000000005-0123456789abcdef")) \
    X(pack_key_future, "sequence not in 1..7", hdr_full(b, "", 0, 1, 0, "data/00000000000000000008-0123456789abcdef")) \
    X(pack_key_seq_0, "sequence not in 1..7", hdr_full(b, "", 0, 1, 0, "data/00000000000000000000-0123456789abcdef")) \
    X(pack_key_overflow, "overflows", hdr_full(b, "", 0, 1, 0, "data/99999999999999999999-0123456789abcdef")) \
    X(n_ops_above_present, "op 3/3: truncated", hdr(b, 0, 3); dir(b, "a"); dir(b, "b")) \
    X(trailing_byte, "after op 1/1: trailing bytes from byte", hdr(b, 0, 1); dir(b, "a"); sig(b); b_uint(b, 0, 1)) \
    X(n_ops_below_present, "trailing bytes", hdr(b, 0, 1); dir(b, "a"); sig(b); dir(b, "b")) \
    X(signature_cut, "after op 1/1: truncated at byte 146, in the signature", \
      hdr(b, 0, 1); dir(b, "a"); b_uint(b, 0, SS_TXN_SIG_BYTES - 1)) \
    X(no_devices_count, "truncated at byte 52, in the device entry count", hdr_full(b, "pc", 2, 0, 0, KEY5)) \
    X(devices_over_limit, "1025 device entries, above the limit 1024", hdr_dev(b, 1025)) \
    X(device_type_0, "device entry 1/1: unknown device entry type 0", hdr_dev(b, 1); dev(b, 0, 1, 7, NULL, 0)) \
    X(device_type_3, "unknown device entry type 3", hdr_dev(b, 1); dev(b, 3, 1, 7, NULL, 0)) \
    X(device_seq_0, "device entry sequence 0 not in 1..7", hdr_dev(b, 1); dev(b, 2, 1, 0, NULL, 0)) \
    X(device_seq_future, "device entry sequence 8 not in 1..7", hdr_dev(b, 1); dev(b, 2, 1, 8, NULL, 0)) \
    X(device_out_of_order, "device entry 2/2: device entries out of order", \
      hdr_dev(b, 2); dev(b, 2, 2, 7, NULL, 0); dev(b, 2, 1, 7, NULL, 0)) \
    X(device_repeated, "out of order or repeated", hdr_dev(b, 2); dev(b, 2, 1, 7, NULL, 0); dev(b, 2, 1, 7, NULL, 0)) \
    X(device_revoke_then_enroll, "out of order or repeated", \
      hdr_dev(b, 2); dev(b, 2, 1, 7, NULL, 0); dev(b, 1, 1, 7, "a", 1)) \
    X(device_revoked_before_enrolled, "device revoked at 3, before its enrollment at 5", \
      hdr_dev(b, 2); dev(b, 1, 1, 5, "a", 1); dev(b, 2, 1, 3, NULL, 0)) \
    X(device_entry_name_256, "device entry 1/1: device name of 256 bytes", hdr_dev(b, 1); dev(b, 1, 1, 7, name256(), 256)) \
    X(device_entry_name_not_utf8, "not UTF-8", hdr_dev(b, 1); dev(b, 1, 1, 7, "\xc3\x28", 2)) \
    X(device_entry_cut, "truncated at byte 82, in the public key", \
      hdr_dev(b, 1); b_uint(b, 1, 1); b_uint(b, 1, SS_TXN_DEVICE_ID_BYTES); b_uint(b, 7, 8); b_uint(b, 0, 3)) \
    X(op_type_0, "op 1/1: unknown op type 0", hdr(b, 0, 1); oph(b, 0, "a", 1)) \
    X(op_type_3, "unknown op type 3", hdr(b, 0, 1); oph(b, 3, "a", 1)) \
    X(kind_0, "\"a\": unknown kind 0", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 0, 0, 0, 0)) \
    X(kind_4, "unknown kind 4", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 4, 0, 0, 0)) \
    X(storage_0, "unknown storage 0", hdr(b, 0, 1); fhead(b, "a", 0, 0, 0)) \
    X(storage_3, "unknown storage 3", hdr(b, 0, 1); fhead(b, "a", 0, 3, 0)) \
    X(mode_010000, "mode 010000 above 07777", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 2, 010000, 0, 0)) \
    X(nsec_1e9, "nanoseconds 1000000000", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 2, 0, 1000000000u, 0)) \
    X(path_empty, "path length 0 not in 1..4096", bad_path(b, "", 0)) \
    X(path_4097, "path length 4097 not in 1..4096", bad_path(b, NULL, 4097)) \
    X(path_dotdot, "'..' segment", bad_path(b, "a/../b", 6)) \
    X(path_dotdot_alone, "'..' segment", bad_path(b, "..", 2)) \
    X(path_dot, "'.' segment", bad_path(b, "./a", 3)) \
    X(path_absolute, "absolute", bad_path(b, "/etc/passwd", 11)) \
    X(path_nul, "contains NUL", bad_path(b, "a\0b", 3)) \
    X(path_meta_child, "inside .s3sync/", bad_path(b, ".s3sync/x", 9)) \
    X(path_meta, "inside .s3sync/", bad_path(b, ".s3sync", 7)) \
    X(path_empty_segment, "empty segment", bad_path(b, "a//b", 4)) \
    X(path_trailing_slash, "trailing '/'", bad_path(b, "a/", 2)) \
    X(out_of_order, "op 2/2 \"a\": out of order: after \"b\"", hdr(b, 0, 2); dir(b, "b"); dir(b, "a")) \
    X(out_of_order_slash, "out of order: after \"a-c\"", hdr(b, 0, 2); dir(b, "a-c"); dir(b, "a/b")) \
    X(duplicate_path, "path appears twice", hdr(b, 0, 2); dir(b, "a"); del(b, "a")) \
    X(upsert_below_file, "upsert below \"a\"", hdr(b, 0, 2); inl(b, "a", "x"); dir(b, "a/b")) \
    X(upsert_below_symlink, "upsert below \"a\"", hdr(b, 0, 2); lnk(b, "a", "/etc", 4); inl(b, "a/passwd", "x")) \
    X(upsert_below_delete, "op 3/3 \"a/b/c\": upsert below \"a\"", \
      hdr(b, 0, 3); del(b, "a"); del(b, "a/b"); dir(b, "a/b/c")) \
    X(directory_size, "directory of size 1", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 2, 0, 0, 1)) \
    X(inline_len_not_size, "inline length 2, but size 3", hdr(b, 0, 1); fhead(b, "a", 3, 1, 2); b_mem(b, "xy", 2)) \
    X(inline_above_limit, "65 bytes, above the inline limit 64", \
      hdr(b, 0, 1); fhead(b, "a", 65, 1, 65); b_uint(b, 0, 65)) \
    X(chunks_at_inline_limit, "file of 64 bytes stored as chunks, not inline (limit 64)", \
      hdr(b, 1, 1); fhead(b, "a", 64, 2, 1); cref(b, 0, 0, 296, 64)) \
    X(chunks_more_than_bytes, "66 chunks for 65 bytes", hdr(b, 1, 1); fhead(b, "a", 65, 2, 66)) \
    X(chunks_cannot_hold, "1 chunks of at most 4096 bytes cannot hold 5000", hdr(b, 1, 1); fhead(b, "a", 5000, 2, 1)) \
    X(chunk_plain_above_max, "chunk 1/2: plain length 4097 not in 1..4096", \
      hdr(b, 1, 1); fhead(b, "a", 5000, 2, 2); cref(b, 0, 0, 100, 4097)) \
    X(chunk_plain_0, "plain length 0", hdr(b, 1, 1); fhead(b, "a", 100, 2, 2); cref(b, 0, 0, 50, 0)) \
    X(chunk_sum_below_size, "chunk 2/2: plain lengths add up to less than the file size", \
      hdr(b, 1, 1); fhead(b, "a", 300, 2, 2); cref(b, 0, 0, 296, 100); cref(b, 0, 296, 296, 100)) \
    X(chunk_sum_above_size, "chunk 2/2: plain lengths add up to more than the file size", \
      hdr(b, 1, 1); fhead(b, "a", 150, 2, 2); cref(b, 0, 0, 296, 100); cref(b, 0, 296, 296, 100)) \
    X(chunk_pack_index, "pack index 1, but the table has 1 packs", hdr(b, 1, 1); fhead(b, "a", 100, 2, 1); cref(b, 1, 0, 296, 100)) \
    X(chunk_no_packs, "pack index 0, but the table has 0 packs", hdr(b, 0, 1); fhead(b, "a", 100, 2, 1); cref(b, 0, 0, 296, 100)) \
    X(chunk_sealed_41, "sealed length 41", hdr(b, 1, 1); fhead(b, "a", 100, 2, 1); cref(b, 0, 0, 41, 100)) \
    X(chunk_sealed_above_plain, "sealed length 52", hdr(b, 1, 1); fhead(b, "a", 100, 2, 1); cref(b, 0, 0, 52, 100)) \
    X(chunk_offset_overflow, "overflows", hdr(b, 1, 1); fhead(b, "a", 100, 2, 1); cref(b, 0, UINT64_MAX - 10, 296, 100)) \
    X(chunk_ref_missing, "\"a\" chunk 2/2: truncated", hdr(b, 1, 1); fhead(b, "a", 200, 2, 2); cref(b, 0, 0, 296, 100)) \
    X(symlink_target_nul, "symlink target contains NUL", hdr(b, 0, 1); lnk(b, "a", "x\0y", 3)) \
    X(symlink_len_not_size, "symlink target length 4, but size 3", \
      hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 3, 0777, 0, 3); b_uint(b, 4, 2); b_mem(b, "abcd", 4)) \
    X(symlink_target_empty, "symlink target length 0 not in 1..4096", hdr(b, 0, 1); lnk(b, "a", "", 0)) \
    X(symlink_target_4097, "symlink target length 4097 not in", hdr(b, 0, 1); oph(b, 1, "a", 1); attrs(b, 3, 0, 0, 4097))
/* clang-format on */

#define DEFINE_CASE(name, expect, ...)                                                             \
    static void m_##name(buf *b)                                                                   \
    {                                                                                              \
        __VA_ARGS__;                                                                               \
    }
MALFORMED(DEFINE_CASE)

static const struct {
    const char *name;
    void (*build)(buf *b);
    const char *expect;
} malformed[] = {
#define ROW(name, expect, ...) {#name, m_##name, expect},
    MALFORMED(ROW)
#undef ROW
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        for (int read_chunks = 0; read_chunks < 2; read_chunks++) {
            buf b = {0};
            ss_err err = {{0}};
            malformed[i].build(&b);
            ss_rc rc = decode_all(b.p, b.len, 1 + i % 4, read_chunks, &err);
            if (rc != SS_ERR_INTEGRITY || !strstr(err.msg, malformed[i].expect))
                fprintf(stderr, "%s: rc %d: %s\n", malformed[i].name, rc, err.msg);
            assert_int_equal(rc, SS_ERR_INTEGRITY);
            assert_non_null(strstr(err.msg, malformed[i].expect));
            free(b.p);
        }
}

/* ---- the encoder refuses what the decoder would ---- */

static ss_rc wrc;   /* the first failure of a case */
static ss_err werr; /* and its message */

static void wentry(ss_txn_writer *w, const ss_txn_entry *e)
{
    if (!wrc) wrc = ss_txn_put_upsert(w, e, &werr);
}

static void wdir(ss_txn_writer *w, const char *p)
{
    wentry(w, &(ss_txn_entry){.path = p, .path_len = strlen(p), .kind = SS_TXN_DIR});
}

static void wfile(ss_txn_writer *w, const char *p, uint64_t size, ss_txn_storage s, uint32_t n)
{
    static const uint8_t zeros[128];
    wentry(w, &(ss_txn_entry){.path = p,
                              .path_len = strlen(p),
                              .kind = SS_TXN_FILE,
                              .size = size,
                              .storage = s,
                              .n_chunks = n,
                              .inline_data = zeros});
}

static void wdel(ss_txn_writer *w, const char *p)
{
    if (!wrc) wrc = ss_txn_put_delete(w, p, p ? strlen(p) : 1, &werr);
}

static void wchunk(ss_txn_writer *w, uint32_t pack, uint32_t plain, uint32_t sealed)
{
    ss_chunk_ref c = {.pack = pack, .plain_len = plain, .sealed_len = sealed};
    if (!wrc) wrc = ss_txn_put_chunk(w, &c, &werr);
}

static void wfinish(ss_txn_writer *w)
{
    if (!wrc) wrc = ss_txn_writer_finish(w, sign_sample, NULL, &werr);
}

#define E(...) wentry(w, &(ss_txn_entry){.path = "a", .path_len = 1, __VA_ARGS__})

/* clang-format off */
#define REFUSED(X) \
    X(out_of_order, "op 2/2 \"a\": out of order", wdir(w, "b"); wdir(w, "a")) \
    X(duplicate, "appears twice", wdir(w, "a"); wdel(w, "a")) \
    X(dotdot, "'..' segment", wdel(w, "a/../b")) \
    X(absolute, "absolute", wdir(w, "/a")) \
    X(meta, "inside .s3sync/", wdel(w, ".s3sync/x")) \
    X(no_path, "path missing", wdel(w, NULL)) \
    X(upsert_below_file, "upsert below \"a\"", wfile(w, "a", 1, SS_TXN_INLINE, 0); wdir(w, "a/b")) \
    X(inline_above_limit, "above the inline limit", wfile(w, "a", 65, SS_TXN_INLINE, 0)) \
    X(inline_missing, "inline bytes missing", E(.kind = SS_TXN_FILE, .size = 1, .storage = SS_TXN_INLINE)) \
    X(kind_0, "unknown kind 0", E(.mode = 0)) \
    X(mode, "mode 010000", E(.kind = SS_TXN_DIR, .mode = 010000)) \
    X(nsec, "nanoseconds", E(.kind = SS_TXN_DIR, .mtime_ns = 1000000000u)) \
    X(storage_0, "unknown storage 0", E(.kind = SS_TXN_FILE)) \
    X(chunks_below_inline, "file of 10 bytes stored as chunks, not inline (limit 64)", \
      wfile(w, "a", 10, SS_TXN_CHUNKS, 1)) \
    X(symlink_nul, "contains NUL", E(.kind = SS_TXN_SYMLINK, .size = 3, .target = "x\0y")) \
    X(symlink_missing, "target missing", E(.kind = SS_TXN_SYMLINK, .size = 3)) \
    X(chunk_not_due, "no chunk is due", wchunk(w, 0, 10, 296)) \
    X(chunks_missing, "op 1/2 \"a\": chunk 2/2: missing before the next op", \
      wfile(w, "a", 200, SS_TXN_CHUNKS, 2); wchunk(w, 0, 100, 296); wdir(w, "b")) \
    X(chunk_sum, "chunk 2/2: plain lengths add up to less", \
      wfile(w, "a", 200, SS_TXN_CHUNKS, 2); wchunk(w, 0, 100, 296); wchunk(w, 0, 50, 296)) \
    X(chunk_pack, "pack index 2", wfile(w, "a", 100, SS_TXN_CHUNKS, 1); wchunk(w, 2, 100, 296)) \
    X(chunk_sealed, "sealed length 100", wfile(w, "a", 100, SS_TXN_CHUNKS, 1); wchunk(w, 0, 100, 100)) \
    X(chunk_sealed_bucket_too_big, "sealed length 552", wfile(w, "a", 100, SS_TXN_CHUNKS, 1); wchunk(w, 0, 100, 552)) \
    X(chunk_max, "plain length 4097", wfile(w, "a", 8000, SS_TXN_CHUNKS, 2); wchunk(w, 0, 4097, 4138)) \
    X(more_ops, "op 3/2: more ops than declared", wdir(w, "a"); wdir(w, "b"); wdir(w, "c")) \
    X(fewer_ops, "1 ops put, 2 declared", wdir(w, "a"); wfinish(w)) \
    X(finish_owes_chunks, "chunk 2/2: missing at the end", \
      wdir(w, "a"); wfile(w, "b", 200, SS_TXN_CHUNKS, 2); wchunk(w, 0, 100, 296); wfinish(w))
/* clang-format on */

#define DEFINE_REFUSED(name, expect, ...)                                                          \
    static void r_##name(ss_txn_writer *w)                                                         \
    {                                                                                              \
        __VA_ARGS__;                                                                               \
    }
REFUSED(DEFINE_REFUSED)

static const struct {
    const char *name;
    void (*run)(ss_txn_writer *w);
    const char *expect;
} refused[] = {
#define ROW(name, expect, ...) {#name, r_##name, expect},
    REFUSED(ROW)
#undef ROW
};

static void test_encoder_refuses(void **state)
{
    (void)state;
    ss_txn_header h = sample_hdr;
    h.n_ops = 2;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        buf b = {0};
        ss_txn_writer *w = NULL;
        ss_err err = {{0}};
        assert_int_equal(ss_txn_writer_new(&LIM, &h, buf_sink, &b, &w, &err), SS_OK);
        wrc = SS_OK;
        refused[i].run(w);
        if (wrc != SS_ERR_INVALID || !strstr(werr.msg, refused[i].expect))
            fprintf(stderr, "%s: rc %d: %s\n", refused[i].name, wrc, werr.msg);
        assert_int_equal(wrc, SS_ERR_INVALID);
        assert_non_null(strstr(werr.msg, refused[i].expect));
        /* A failed writer writes nothing more. */
        assert_int_equal(ss_txn_put_delete(w, "zz", 2, &err), SS_ERR_INVALID);
        assert_non_null(strstr(err.msg, "earlier error"));
        assert_int_equal(ss_txn_writer_finish(w, sign_sample, NULL, &err), SS_ERR_INVALID);
        ss_txn_writer_free(w);
        free(b.p);
    }
}

static void test_encoder_refuses_header(void **state)
{
    (void)state;
    static const char *const bad_key[] = {"data/1-2"};
    static ss_txn_device devs[2];
    ss_txn_header hs[10];
    for (int i = 0; i < 10; i++)
        hs[i] = sample_hdr;
    memcpy(devs, sample_devices, sizeof devs);
    devs[0].type = 0;
    hs[6].devices = devs; /* an unknown entry type */
    hs[7].n_packs = 1;    /* KEY5 only: sequence 6 may name it */
    hs[7].seq = 6;        /* below its device entries' 7 */
    hs[8].n_devices = SS_TXN_MAX_DEVICES + 1;
    hs[9].devices = NULL;
    hs[0].seq = 0;
    hs[1].device_name = name256();
    hs[1].device_name_len = 256;
    hs[2].n_packs = 1;
    hs[2].pack_keys = bad_key;
    hs[3].n_packs = 9;
    hs[4].pack_keys = NULL;
    hs[5].seq = 6; /* below KEY7's sequence */
    for (int i = 0; i < 10; i++) {
        buf b = {0};
        ss_txn_writer *w = (ss_txn_writer *)&b;
        ss_err err = {{0}};
        assert_int_equal(ss_txn_writer_new(&LIM, &hs[i], buf_sink, &b, &w, &err), SS_ERR_INVALID);
        assert_null(w);
        assert_int_equal(b.len, 0);
    }
}

static long fail_read(void *ctx, void *dst, size_t n)
{
    (void)ctx, (void)dst, (void)n;
    return -1;
}

static int fail_sink(void *ctx, const void *d, size_t n)
{
    (void)ctx, (void)d, (void)n;
    return -1;
}

static void test_io_errors_and_limits(void **state)
{
    (void)state;
    ss_err err = {{0}};
    ss_txn_reader *r = NULL;
    ss_reader src = {fail_read, NULL, NULL};
    assert_int_equal(ss_txn_reader_new(&LIM, &src, &r, &err), SS_ERR_IO);
    src.read = NULL;
    assert_int_equal(ss_txn_reader_new(&LIM, &src, &r, &err), SS_ERR_INVALID);
    ss_txn_writer *w = NULL;
    assert_int_equal(ss_txn_writer_new(&LIM, &sample_hdr, fail_sink, NULL, &w, &err), SS_OK);
    assert_int_equal(ss_txn_put_delete(w, "a", 1, &err), SS_OK); /* still buffered */
    assert_int_equal(ss_txn_writer_finish(w, sign_sample, NULL, &err), SS_ERR_INVALID); /* 1 of 7 */
    ss_txn_writer_free(w);
    ss_txn_header h = sample_hdr;
    h.n_ops = 1;
    assert_int_equal(ss_txn_writer_new(&LIM, &h, fail_sink, NULL, &w, &err), SS_OK);
    assert_int_equal(ss_txn_put_delete(w, "a", 1, &err), SS_OK);
    assert_int_equal(ss_txn_writer_finish(w, sign_sample, NULL, &err), SS_ERR_IO);
    ss_txn_writer_free(w);
    /* No signer, or one that fails: nothing more is written. */
    assert_int_equal(ss_txn_writer_new(&LIM, &h, buf_sink, &(buf){0}, &w, &err), SS_OK);
    assert_int_equal(ss_txn_put_delete(w, "a", 1, &err), SS_OK);
    assert_int_equal(ss_txn_writer_finish(w, NULL, NULL, &err), SS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no signer"));
    ss_txn_writer_free(w);
    static const ss_txn_limits bad[] = {
        {.inline_limit = SS_CONFIG_INLINE_LIMIT_MAX + 1, .max_chunk_size = 4096},
        {.inline_limit = 64, .max_chunk_size = 0},
        {.inline_limit = 64, .max_chunk_size = SS_CONFIG_CHUNK_MAX_LIMIT + 1},
        {.inline_limit = 64, .max_chunk_size = 4096, .max_packs = UINT32_MAX},
    };
    src.read = fail_read;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ss_txn_reader_new(&bad[i], &src, &r, &err), SS_ERR_INVALID);
        assert_int_equal(ss_txn_writer_new(&bad[i], &sample_hdr, buf_sink, NULL, &w, &err),
                         SS_ERR_INVALID);
    }
}

/* ---- fuzz seeds: SS_TXN_CORPUS_DIR=tests/fuzz/corpus-txn ./test-txn ---- */

static int write_seed(const char *dir, const char *name, const buf *b)
{
    char path[512];
    ss_err err = {{0}};
    if (decode_all(b->p, b->len, 7, 1, &err) != SS_OK) {
        fprintf(stderr, "seed %s does not decode: %s\n", name, err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static int write_corpus(const char *out)
{
    buf b = {0};
    int bad = 0;
    encode_sample(&b);
    bad |= write_seed(out, "sample", &b);
    b.len = 0;
    hdr(&b, 1, 6);
    inl(&b, "a", "x");
    del(&b, "a/b");
    lnk(&b, "l", "../t", 4);
    del(&b, "l/x");
    fhead(&b, "m", 4100, SS_TXN_CHUNKS, 2);
    cref(&b, 0, 0, 40 + 4352, 4096); /* sealed: 40 + the bucket of 1 + plain (pad.h) */
    cref(&b, 0, 4392, 40 + 256, 4);
    dir(&b, "z");
    sig(&b);
    bad |= write_seed(out, "barrier", &b);
    b.len = 0;
    hdr(&b, 0, 0);
    sig(&b);
    bad |= write_seed(out, "empty", &b);
    FILE *f = tmpfile();
    if (!f) return 1;
    big_write(f, 60);
    b.len = (size_t)ftell(f);
    b.p = realloc(b.p, b.len);
    rewind(f);
    bad |= fread(b.p, 1, b.len, f) != b.len;
    bad |= write_seed(out, "many", &b);
    fclose(f);
    free(b.p);
    return bad;
}

int main(void)
{
    const char *dir = getenv("SS_TXN_CORPUS_DIR");
    if (dir) return write_corpus(dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_skip_chunks),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_barrier_allows),
        cmocka_unit_test(test_large_streaming),
        cmocka_unit_test(test_truncated_every_prefix),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_encoder_refuses_header),
        cmocka_unit_test(test_io_errors_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
