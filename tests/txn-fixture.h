/*
 * txn-fixture: what test-txn's files share: byte buffers, a memory source
 * that hands out bytes a few at a time, a decode-everything walker, and the
 * sample transaction (one op of every kind) with its encoder and checks.
 */
#ifndef SS_TXN_FIXTURE_H
#define SS_TXN_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "txn.h"

#define KEY5 "data/00000000000000000005-0123456789abcdef"
#define KEY7 "data/00000000000000000007-fedcba9876543210"
#define UP .type = SS_TXN_UPSERT

/* tests/fuzz/fuzz-txn.c decodes with the same limits, so the seeds stay valid. */
extern const ss_txn_limits LIM;

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

void b_mem(buf *b, const void *d, size_t n);
void b_uint(buf *b, uint64_t v, int bytes); /* little-endian; past 8 bytes, zeros */
int buf_sink(void *ctx, const void *d, size_t n);

/* Bytes from memory, at most step per read: the decoder must not care how they arrive. */
typedef struct msrc {
    const uint8_t *p;
    size_t len, pos, step;
} msrc;

long msrc_read(void *ctx, void *dst, size_t n);
int msrc_rewind(void *ctx);
ss_txn_reader *open_mem(msrc *s, const uint8_t *p, size_t len, size_t step);
/* Walks everything; read_chunks 0 leaves the chunk refs to ss_txn_next to skip. */
ss_rc decode_all(const uint8_t *p, size_t len, size_t step, int read_chunks, ss_err *err);

/* The sample's signature: a fixed pattern (signing is the engine's, not the codec's). */
extern const uint8_t sample_sig[SS_TXN_SIG_BYTES];
ss_rc sign_sample(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES], ss_err *err);

extern const ss_txn_device sample_devices[2];
extern const ss_txn_header sample_hdr;
extern const ss_chunk_ref sample_chunks[3];
extern const ss_txn_entry sample_ops[7];

/* Encodes ops; chunked files take their refs from chunks in order. */
void encode(const ss_txn_header *h, const ss_txn_entry *ops, size_t n, const ss_chunk_ref *chunks,
            buf *out);
void encode_sample(buf *out);
void check_chunk(const ss_chunk_ref *c, const ss_chunk_ref *x);
void check_header(const ss_txn_header *h); /* against sample_hdr */
void check_entry(const ss_txn_entry *e, const ss_txn_entry *x);

#endif
