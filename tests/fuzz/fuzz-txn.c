/*
 * fuzz-txn: libFuzzer target for the transaction decoder (core/txn.c).
 *
 * Each input is decoded twice: once through a source that hands out a few
 * bytes per read, leaving the chunk refs of every other file for ss_txn_next
 * to skip, and once reading everything. Both walks must agree on accept or
 * refuse. An accepted input is re-encoded entry by entry and must come out
 * byte for byte the same: the encoding is canonical, so the encoder and the
 * decoder can disagree on nothing. Any refusal but SS_ERR_INTEGRITY aborts.
 *
 * Limits match tests/test-txn.c, whose seeds live in corpus-txn/
 * (SS_TXN_CORPUS_DIR=tests/fuzz/corpus-txn build/tests/test-txn).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ss_txn_limits lim = {.inline_limit = 64, .max_chunk_size = 4096, .max_packs = 8};

typedef struct src {
    const uint8_t *p;
    size_t len, pos, step;
} src;

static long src_read(void *ctx, void *dst, size_t n)
{
    src *s = ctx;
    size_t k = s->len - s->pos;
    if (k > n) k = n;
    if (k > s->step) k = s->step;
    memcpy(dst, s->p + s->pos, k);
    s->pos += k;
    return (long)k;
}

/* A sink that compares what the encoder writes with the input. */
typedef struct same {
    const uint8_t *p;
    size_t len, pos;
    int differs;
} same;

static int same_write(void *ctx, const void *buf, size_t n)
{
    same *s = ctx;
    if (n > s->len - s->pos || memcmp(s->p + s->pos, buf, n) != 0) s->differs = 1;
    if (!s->differs) s->pos += n;
    return 0;
}

static void check_rc(ss_rc rc, const ss_err *err)
{
    if (rc == SS_OK || rc == SS_ERR_INTEGRITY) return;
    fprintf(stderr, "unexpected rc %d: %s\n", rc, err->msg);
    abort();
}

/* w NULL: skip the refs of every other file. Otherwise re-encode into w. */
static ss_rc walk(ss_txn_reader *r, ss_txn_writer *w, ss_err *err)
{
    const ss_txn_entry *e = NULL;
    ss_rc rc;
    uint32_t i = 0;
    ss_err werr;
    while (!(rc = ss_txn_next(r, &e, err)) && e) {
        if (w && e->type == SS_TXN_DELETE && ss_txn_put_delete(w, e->path, e->path_len, &werr))
            goto encoder_refused;
        if (w && e->type == SS_TXN_UPSERT && ss_txn_put_upsert(w, e, &werr)) goto encoder_refused;
        uint32_t n = !w && i++ % 2 ? 0 : e->n_chunks;
        for (uint32_t j = 0; j < n; j++) {
            ss_chunk_ref c;
            if ((rc = ss_txn_next_chunk(r, &c, err))) return rc;
            if (w && ss_txn_put_chunk(w, &c, &werr)) goto encoder_refused;
        }
    }
    return rc;
encoder_refused:
    fprintf(stderr, "the encoder refused what the decoder accepted: %s\n", werr.msg);
    abort();
}

/* The re-encoding's signature: the decoded one (signing is the engine's, not the codec's). */
static ss_rc copy_signature(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES], ss_err *err)
{
    uint64_t signed_len;
    const uint8_t *sig = ss_txn_reader_signature(ctx, &signed_len);
    (void)err;
    if (!sig) abort(); /* the decoder reached the end, so it has one */
    memcpy(ret_sig, sig, SS_TXN_SIG_BYTES);
    return SS_OK;
}

static ss_rc decode(const uint8_t *data, size_t size, size_t step, same *reencode)
{
    src s = {data, size, 0, step};
    ss_reader in = {src_read, NULL, &s};
    ss_txn_reader *r = NULL;
    ss_txn_writer *w = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_txn_reader_new(&lim, &in, &r, &err);
    if (!rc && reencode &&
        ss_txn_writer_new(&lim, ss_txn_reader_header(r), same_write, reencode, &w, &err)) {
        fprintf(stderr, "the encoder refused a decoded header: %s\n", err.msg);
        abort();
    }
    if (!rc) rc = walk(r, reencode ? w : NULL, &err);
    if (!rc && w && ss_txn_writer_finish(w, copy_signature, r, &err)) {
        fprintf(stderr, "the encoder could not finish: %s\n", err.msg);
        abort();
    }
    check_rc(rc, &err);
    ss_txn_writer_free(w);
    ss_txn_reader_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    same s = {data, size, 0, 0};
    ss_rc skim = decode(data, size, 1 + size % 13, NULL);
    ss_rc full = decode(data, size, 1 << 16, &s);
    if (skim != full) {
        fprintf(stderr, "skipping chunk refs gave %d, reading them %d\n", skim, full);
        abort();
    }
    if (full == SS_OK && (s.differs || s.pos != size)) {
        fprintf(stderr, "re-encoding differs from the input at byte %zu\n", s.pos);
        abort();
    }
    return 0;
}
