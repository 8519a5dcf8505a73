/*
 * fuzz-frame: libFuzzer target for the framed-object reader (core/frame.c)
 * and the sealed-chunk opener (core/seal.c), with fixed keys.
 *
 * Bytes that do not authenticate stop at the first record, so besides
 * feeding raw input the target plays the key holder: it seals what the input
 * describes and lets the code under test judge it. Byte 0 picks the mode
 * (low 2 bits) and seeds the slicing (the rest); every object is fed in
 * slices of 1 byte to 2 records:
 *   0 raw     the rest is an object log/1 (seq 1, zero chain)
 *   1 forged  header fields, then records (u8 tag | u16 len | bytes) sealed
 *             here as FORMAT.md says: any header, tag, cut, padding or zstd
 *             payload (byte 3 bit 7: pad the stream in its last record)
 *   2 trip    the rest (repeated) goes through the writer and back, then
 *             one flipped byte, truncation or extension must be refused
 *   3 chunk   a sealed chunk forged from u8 flags || payload (padded to its
 *             bucket unless max_plain's byte is odd), and the raw rest,
 *             opened by ss_chunk_open
 * Any result but SS_OK or SS_ERR_INTEGRITY aborts, and so does an accepted
 * object that breaks a rule of FORMAT.md "Framed objects".
 *
 * S3SYNC_FUZZ_SEEDS=DIR fuzz-frame writes the seeds of corpus-frame/ to DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zstd.h>

#include "chunker.h"
#include "frame.h"
#include "pad.h"
#include "seal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "log/00000000000000000001"
#define MAX_PLAIN (4u << 20) /* caps a decompression bomb */
enum { REC = SS_FRAME_RECORD_BYTES, WIRE = SS_FRAME_WIRE_RECORD_BYTES };

static ss_keys *keys;
static const uint8_t zero_chain[SS_CHAIN_BYTES];

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static int buf_add(void *ctx, const void *data, size_t len)
{
    buf *b = ctx;
    if (len > b->cap - b->len) {
        b->cap = (b->len + len) * 2;
        if (!(b->p = realloc(b->p, b->cap))) abort();
    }
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

/* Refusals: integrity, or a key epoch the reader does not hold (it fetches epochs/). */
static void check_rc(ss_rc rc, const ss_err *err)
{
    if (rc == SS_OK || rc == SS_ERR_INTEGRITY || rc == SS_ERR_EPOCH) return;
    fprintf(stderr, "unexpected rc %d: %s\n", rc, err->msg);
    abort();
}

/* Calls with valid arguments: anything but SS_OK is a bug. */
static void must(ss_rc rc, const ss_err *err)
{
    if (rc == SS_OK) return;
    fprintf(stderr, "rc %d: %s\n", rc, err->msg);
    abort();
}

/* Slice sizes from a xorshift seeded by the input: mostly small, sometimes whole records. */
static size_t next_slice(uint32_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
    return *s & 1 ? 1 + (*s >> 1) % 17 : 1 + (*s >> 1) % (2 * WIRE);
}

/* Read obj with the reader in slices; the plaintext goes to out. */
static ss_rc read_obj(const uint8_t *obj, size_t len, unsigned kind, uint64_t max_plain,
                      uint32_t seed, buf *out)
{
    ss_frame_reader *r = NULL;
    ss_err err = {{0}};
    ss_rc rc =
        ss_frame_reader_new(keys, kind, KEY, 1, zero_chain, max_plain, buf_add, out, &r, &err);
    must(rc, &err);
    for (size_t pos = 0, n; !rc && pos < len; pos += n) {
        n = next_slice(&seed);
        n = n < len - pos ? n : len - pos;
        rc = ss_frame_feed(r, obj + pos, n, &err);
    }
    if (!rc) rc = ss_frame_end(r, NULL, &err);
    check_rc(rc, &err);
    if (rc == SS_OK && out->len > max_plain) abort();
    ss_frame_reader_free(r);
    return rc;
}

/* FORMAT.md "Framed objects": the associated data of every record. */
static void context(const uint8_t header[SS_FRAME_HEADER_BYTES], uint8_t out[32])
{
    crypto_generichash_state h;
    uint8_t b[8] = {sizeof KEY - 1, 0};
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)SS_FRAME_CONTEXT_LABEL, 16);
    crypto_generichash_update(&h, ss_keys_repo_id(keys), SS_REPO_ID_BYTES);
    crypto_generichash_update(&h, header, SS_FRAME_HEADER_BYTES);
    crypto_generichash_update(&h, b, 2);
    crypto_generichash_update(&h, (const uint8_t *)KEY, sizeof KEY - 1);
    b[0] = 1, b[1] = 0; /* u64 seq = 1 */
    crypto_generichash_update(&h, b, 8);
    crypto_generichash_update(&h, zero_chain, 32);
    crypto_generichash_final(&h, out, 32);
}

/* FORMAT.md "Size padding": the unpadded length of a padded stream, or SIZE_MAX. */
static size_t unpadded(const uint8_t *p, size_t n)
{
    size_t i = n;
    while (i > 0 && p[i - 1] == 0)
        i--;
    if (i == 0 || p[i - 1] != 0x80 || ss_pad_size(i - 1) != n) return SIZE_MAX;
    return i - 1;
}

/*
 * Mode 1: u8 kind | u8 flags | u8 byte7 | u8 params, then records: u8 tag (bit 7: fill the
 * record with zeros to a full 65536 bytes) | u16 len | len bytes. params bit 0: kind; bit 7:
 * pad the stream (0x80, zeros) inside the last record when it fits; the rest: max_plain.
 * byte7's bits 1..7, when set, go to the epoch and start fields instead (a header naming
 * an epoch the reader lacks, or epoch 0 said to begin elsewhere).
 */
static void forged(const uint8_t *d, size_t n, uint32_t seed)
{
    crypto_secretstream_xchacha20poly1305_state st;
    /* version 2, key epoch 0 from sequence 1 */
    uint8_t hdr[SS_FRAME_HEADER_BYTES] = {'S', '3', 'S', 'O', 2, 0, 0, 0, 0, 0, 0, 0, 1}, ctx[32];
    static uint8_t rec[REC], wire[WIRE];
    buf obj = {0}, plain = {0}, out = {0};
    size_t k = 0, records = 0;
    int bad_cut = 0, bad_tag = 0;

    if (n < 4) return;
    hdr[5] = d[0], hdr[6] = d[1], hdr[7] = d[2] & 1;
    hdr[SS_FRAME_OFF_EPOCH] = d[2] >> 1 & 7;  /* 0: the one held */
    hdr[SS_FRAME_OFF_START] ^= d[2] >> 4 & 7; /* 0: where epoch 0 begins */
    unsigned kind = 1 + (d[3] & 1);
    int pad = d[3] >> 7;
    uint64_t max_plain = (uint64_t)(d[3] >> 1 & 0x3f) << 16; /* 0 .. 4 MiB */
    context(hdr, ctx);
    buf_add(&obj, hdr, sizeof hdr);
    crypto_secretstream_xchacha20poly1305_init_push(&st, wire,
                                                    ss_keys_content_key(keys, 0, SS_SUBKEY_OBJECT));
    buf_add(&obj, wire, 24);
    for (k = 4; k + 3 <= n; records++) {
        unsigned char tag = d[k] & 3; /* MESSAGE, PUSH, REKEY, FINAL */
        size_t take = (size_t)(d[k + 1] | d[k + 2] << 8), full = d[k] & 0x80;
        k += 3;
        take = n - k < take ? n - k : take;
        size_t len = full ? REC : take;
        memset(rec, 0, len);
        memcpy(rec, d + k, take);
        k += take;
        size_t to = (size_t)ss_pad_size(plain.len + len) - plain.len;
        if (pad && k + 3 > n && to <= REC) { /* the last record carries the padding */
            memset(rec + len, 0, to - len);
            rec[len] = 0x80;
            len = to;
        }
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(&st, wire, &clen, rec, len, ctx, 32, tag);
        buf_add(&obj, wire, (size_t)clen);
        buf_add(&plain, rec, len);
        if (k + 3 <= n && (tag != 0 || len != REC)) bad_cut = 1; /* not the last */
        if (k + 3 > n && tag != 3) bad_tag = 1;
    }
    if (read_obj(obj.p, obj.len, kind, max_plain, seed, &out) == SS_OK) {
        /* Accepted: it must be an object FORMAT.md allows. */
        size_t l = unpadded(plain.p, plain.len);
        if (records == 0 || bad_cut || bad_tag || hdr[5] != kind || (hdr[6] & ~1) || hdr[7] ||
            hdr[SS_FRAME_OFF_EPOCH] || hdr[SS_FRAME_OFF_START] != 1 || l == SIZE_MAX)
            abort();
        if (!(hdr[6] & 1) && (out.len != l || (out.len && memcmp(out.p, plain.p, out.len))))
            abort();
        if ((hdr[6] & 1) && ZSTD_findFrameCompressedSize(plain.p, l) != l) abort();
    }
    free(obj.p), free(plain.p), free(out.p);
}

/* Mode 2: u8 params (level, kind, repeats) | u8 x4 damage spec | plaintext. */
static void trip(const uint8_t *d, size_t n, uint32_t seed)
{
    static const int levels[4] = {0, 1, 3, 0};
    ss_frame_writer *w = NULL;
    ss_err err = {{0}};
    buf obj = {0}, out = {0}, plain = {0};

    if (n < 5) return;
    unsigned kind = 1 + (d[0] >> 2 & 1), reps = 1 + (d[0] >> 3) % 24;
    int level = levels[d[0] & 3];
    uint32_t where = (uint32_t)d[1] | (uint32_t)d[2] << 8 | (uint32_t)d[3] << 16;
    uint8_t what = d[4];
    for (unsigned i = 0; i < reps; i++)
        buf_add(&plain, d + 5, n - 5);
    must(ss_frame_writer_new(keys, kind, KEY, 1, zero_chain, level, buf_add, &obj, &w, &err), &err);
    for (size_t pos = 0, k; pos < plain.len; pos += k) {
        k = next_slice(&seed);
        k = k < plain.len - pos ? k : plain.len - pos;
        must(ss_frame_write(w, plain.p + pos, k, &err), &err);
    }
    must(ss_frame_finish(w, NULL, &err), &err);
    ss_frame_writer_free(w);
    /* The writer's cut of the padded stream: as few records as possible, all but the last full. */
    size_t body = obj.len - SS_FRAME_PREFIX_BYTES, padded = (size_t)ss_pad_size(plain.len);
    if (!level && body != (padded + REC - 1) / REC * 17 + padded) abort();
    if (read_obj(obj.p, obj.len, kind, UINT64_MAX, seed, &out) != SS_OK || out.len != plain.len ||
        (out.len && memcmp(out.p, plain.p, out.len)))
        abort();
    /* Damage: flip a byte, truncate, or extend; each must be refused. */
    if (what & 3) {
        size_t at = where % obj.len;
        if ((what & 3) == 1) obj.p[at] ^= (uint8_t)(what | 4);
        if ((what & 3) == 2) obj.len = at;
        if ((what & 3) == 3) buf_add(&obj, &what, 1);
        out.len = 0;
        ss_rc rc = read_obj(obj.p, obj.len, kind, UINT64_MAX, seed, &out);
        /* a flipped epoch field names an epoch not held: refused as such */
        int epoch_hit = (what & 3) == 1 && at >= SS_FRAME_OFF_EPOCH && at < SS_FRAME_OFF_START;
        if (rc != SS_ERR_INTEGRITY && !(epoch_hit && rc == SS_ERR_EPOCH)) abort();
    }
    free(obj.p), free(out.p), free(plain.p);
}

/* Mode 3: u8 flags | u8 max_plain / 64 | payload, sealed here; then the raw bytes. */
static void chunk(const uint8_t *d, size_t n)
{
    static const uint8_t nonce[SS_CHUNK_NONCE_BYTES];
    const uint8_t *idkey = ss_keys_subkey(keys, SS_SUBKEY_CHUNK_ID);
    uint8_t id[32], ad[15 + 16 + 32], *sealed, *body, *plain = NULL;
    void *got = NULL;
    size_t got_len = 0, plain_len = 0;
    ss_err err = {{0}};

    if (n < 2) return;
    size_t max_plain = (size_t)d[1] * 64, body_len = n - 1;
    if (!(d[1] & 1)) body_len = (size_t)ss_pad_size(n - 1); /* flags || payload, padded */
    /* The id the forger means: of what the payload decodes to, when it does. */
    if (d[0] & SS_CHUNK_FLAG_ZSTD) {
        unsigned long long fcs = ZSTD_getFrameContentSize(d + 2, n - 2);
        if (fcs <= 1u << 16 && (plain = malloc(fcs ? fcs : 1))) {
            size_t r = ZSTD_decompress(plain, fcs, d + 2, n - 2);
            plain_len = ZSTD_isError(r) ? 0 : r;
        }
    }
    ss_chunk_id(idkey, plain_len ? plain : d + 2, plain_len ? plain_len : n - 2, id);
    free(plain);
    memcpy(ad, SS_CHUNK_LABEL, 15);
    memcpy(ad + 15, ss_keys_repo_id(keys), 16);
    memcpy(ad + 31, id, 32);
    sealed = malloc(SS_CHUNK_NONCE_BYTES + body_len + SS_CHUNK_TAG_BYTES);
    body = calloc(1, body_len);
    if (!sealed || !body) abort();
    body[0] = d[0]; /* flags || payload || padding */
    memcpy(body + 1, d + 2, n - 2);
    if (body_len > n - 1) body[n - 1] = 0x80;
    memcpy(sealed, nonce, sizeof nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + 24, NULL, body, body_len, ad, sizeof ad,
                                               NULL, nonce,
                                               ss_keys_content_key(keys, 0, SS_SUBKEY_CHUNK));
    free(body);
    ss_rc rc =
        ss_chunk_open(keys, 0, id, sealed, 24 + body_len + 16, max_plain, &got, &got_len, &err);
    check_rc(rc, &err);
    if (rc == SS_OK) { /* accepted: within the cap, and of this id */
        uint8_t calc[32];
        ss_chunk_id(idkey, got, got_len, calc);
        if (got_len > max_plain || memcmp(calc, id, 32)) abort();
    }
    free(got), free(sealed);
    got = NULL;
    rc = ss_chunk_open(keys, 0, id, d, n, max_plain, &got, &got_len, &err);
    if (rc != SS_ERR_INTEGRITY) abort(); /* raw bytes never authenticate */
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t seed = 0x9e3779b9u ^ data[0];
    buf out = {0};
    switch (data[0] & 3) {
    case 0:
        read_obj(data + 1, size - 1, SS_FRAME_KIND_LOG, MAX_PLAIN, seed, &out);
        free(out.p);
        break;
    case 1: forged(data + 1, size - 1, seed); break;
    case 2: trip(data + 1, size - 1, seed); break;
    case 3: chunk(data + 1, size - 1); break;
    }
    return 0;
}

/* ---- seeds ---- */

static void seed(const char *dir, const char *name, uint8_t mode, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&mode, 1, 1, f) != 1 || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void seed_object(const char *dir, const char *name, int level, size_t len)
{
    uint8_t *plain = malloc(len + 1);
    void *obj = NULL;
    size_t olen = 0;
    ss_err err = {{0}};
    for (size_t i = 0; i < len; i++)
        plain[i] = (uint8_t)(i % 251 < 200 ? "s3sync seed "[i % 12] : i * 7);
    if (ss_frame_seal_buf(keys, SS_FRAME_KIND_LOG, KEY, 1, zero_chain, level, plain, len, &obj,
                          &olen, NULL, &err))
        abort();
    seed(dir, name, 0, obj, olen);
    free(obj), free(plain);
}

static void write_seeds(const char *dir)
{
    /* forged: header log, zstd off / on; a short final record; a full one then a final. */
    static const uint8_t f_raw[] = {1, 0, 0, 0xfe, 3, 5, 0, 'h', 'e', 'l', 'l', 'o'};
    static const uint8_t f_two[] = {1, 0, 0, 0xfe, 0x80, 1, 0, 'a', 3, 2, 0, 'b', 'c'};
    uint8_t f_zstd[64] = {1, 1, 0, 0xfe, 3};
    size_t z = ZSTD_compress(f_zstd + 7, sizeof f_zstd - 7, "zstd zstd zstd zstd", 19, 3);
    f_zstd[5] = (uint8_t)z, f_zstd[6] = 0;
    static const uint8_t t_small[] = {0x09, 0x10, 0, 0, 1, 'r', 'o', 'u', 'n', 'd'};
    static const uint8_t t_zstd[] = {0xf9, 0x20, 0, 0, 2, 'a', 'b', 'c', 'a', 'b', 'c'};
    uint8_t c_raw[] = {0, 0x40, 'c', 'h', 'u', 'n', 'k'}, c_zstd[64] = {1, 0x40};
    size_t cz = ZSTD_compress(c_zstd + 2, sizeof c_zstd - 2, "chunk chunk chunk chunk", 23, 3);

    seed_object(dir, "object-raw", 0, 100);
    seed_object(dir, "object-zstd", 3, 3000);
    seed_object(dir, "object-empty", 0, 0);
    seed(dir, "forged-raw", 1, f_raw, sizeof f_raw);
    seed(dir, "forged-two-records", 1, f_two, sizeof f_two);
    seed(dir, "forged-zstd", 1, f_zstd, 7 + z);
    seed(dir, "trip-small", 2, t_small, sizeof t_small);
    seed(dir, "trip-zstd", 2, t_zstd, sizeof t_zstd);
    uint8_t t_large[3005] = {0xb8, 0x40, 0x1f, 0x01, 1}; /* raw, 24 x 3000 bytes: two records */
    for (size_t i = 5; i < sizeof t_large; i++)
        t_large[i] = (uint8_t)(i * 31 + (i >> 7));
    seed(dir, "trip-large", 2, t_large, sizeof t_large);
    seed(dir, "chunk-raw", 3, c_raw, sizeof c_raw);
    seed(dir, "chunk-zstd", 3, c_zstd, 2 + cz);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint8_t master[SS_MASTER_KEY_BYTES], id[SS_REPO_ID_BYTES];
    ss_err err = {{0}};
    (void)argc, (void)argv;
    for (size_t i = 0; i < sizeof master; i++)
        master[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof id; i++)
        id[i] = (uint8_t)(0xa0 + i);
    if (sodium_init() < 0 || ss_keys_from_master(master, id, &keys, &err)) abort();
    const char *dir = getenv("S3SYNC_FUZZ_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}
