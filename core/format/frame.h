/*
 * frame: framed objects (log/<seq>, checkpoints/<seq>) and the hash chain;
 * docs/FORMAT.md sections "Framed objects" and "Hash chain".
 *
 * An object is a 20-byte header (naming the key epoch it is sealed under), a secretstream header,
 * and records of 65536 plaintext bytes, each authenticated with a context that binds the
 * repository, the header, the object key, the sequence and the previous chain
 * value. Writer and reader stream: memory is one record plus a zstd stream
 * context, whatever the object's size (invariant 7).
 *
 * The reader is push-style, to be fed straight from ss_store_get_stream. It
 * emits a record's plaintext only after that record authenticated, but an
 * object cut short (or extended) is only known to be bad at its end: a
 * consumer that must apply all or nothing stages what it receives (temp file,
 * SQLite transaction) and commits only after ss_frame_end returned SS_OK.
 *
 * Borrowed: keys (must outlive the writer/reader), key and prev_chain (copied
 * or hashed during _new), the callbacks' ctx. Every verification failure is
 * SS_ERR_INTEGRITY with a message naming the object key; after any failure a
 * writer or reader only fails again.
 */
#ifndef SS_FRAME_H
#define SS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "keys.h"
#include "io.h"
#include "ss_error.h"

typedef struct ss_frame_writer ss_frame_writer;
typedef struct ss_frame_reader ss_frame_reader;

/*
 * kind: SS_FRAME_KIND_*. prev_chain: chain(seq - 1) for a log object; 32 zero
 * bytes for a checkpoint (see FORMAT.md). level: zstd level 1..19, or 0 to
 * store the plaintext raw. The object's bytes go to out in order; a non-zero
 * return from out fails the writer with SS_ERR_IO (out's ctx may keep the
 * cause). The header is emitted by _new.
 */
ss_rc ss_frame_writer_new(const ss_keys *keys, unsigned kind, const char *key, uint64_t seq,
                          const uint8_t prev_chain[SS_CHAIN_BYTES], int level, ss_write_fn out,
                          void *out_ctx, ss_frame_writer **ret_writer, ss_err *err);
ss_rc ss_frame_write(ss_frame_writer *w, const void *buf, size_t len, ss_err *err);
/*
 * A frame writer as a sink (an ss_write_fn, ctx the ss_frame_out): what a
 * transaction writer writes into to be framed. A failure keeps its detail
 * in err for the caller, since a sink can only say -1.
 */
typedef struct ss_frame_out {
    ss_frame_writer *w;
    ss_err err;
} ss_frame_out;
int ss_frame_out_write(void *ctx, const void *buf, size_t len);
/* Emit the last record; ret_object_hash (may be NULL): BLAKE2b-256 of all object bytes. */
ss_rc ss_frame_finish(ss_frame_writer *w, uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES],
                      ss_err *err);
void ss_frame_writer_free(ss_frame_writer *w); /* NULL safe; wipes buffers */

/*
 * Verified plaintext goes to plaintext_out (non-zero return: SS_ERR_IO).
 * max_plain caps the plaintext (after zstd): an object that would yield more
 * is refused as SS_ERR_INTEGRITY, which also stops decompression bombs.
 */
ss_rc ss_frame_reader_new(const ss_keys *keys, unsigned expected_kind, const char *key,
                          uint64_t seq, const uint8_t prev_chain[SS_CHAIN_BYTES],
                          uint64_t max_plain, ss_write_fn plaintext_out, void *out_ctx,
                          ss_frame_reader **ret_reader, ss_err *err);
/* The object's bytes, sliced any way. */
ss_rc ss_frame_feed(ss_frame_reader *r, const void *buf, size_t len, ss_err *err);
/*
 * ss_frame_feed as an ss_write_fn (ctx: the reader), to pass straight
 * to ss_store_get_stream. On failure it returns non-zero and the store call
 * fails with its own message; ss_frame_end then returns the reader's reason.
 */
int ss_frame_sink(void *reader, const void *buf, size_t len);
/* End of the object: SS_OK only when it ended exactly after its final record. */
ss_rc ss_frame_end(ss_frame_reader *r, uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err);
void ss_frame_reader_free(ss_frame_reader *r); /* NULL safe; wipes buffers */
/*
 * The key epoch and its first sequence as the object's header states them,
 * once the header was fed (even when the reader then failed with
 * SS_ERR_EPOCH: where to look in epochs/); SS_ERR_NOT_FOUND before. Not
 * authenticated until the object is.
 */
ss_rc ss_frame_reader_epoch(const ss_frame_reader *r, uint32_t *ret_epoch, uint64_t *ret_start);
/* After ss_frame_end succeeded: bytes of padding the record stream carried (bench/padcost). */
uint64_t ss_frame_reader_padding(const ss_frame_reader *r);

/* Whole-buffer wrappers over the streaming path. *ret_buf is malloc'ed; caller frees. */
ss_rc ss_frame_seal_buf(const ss_keys *keys, unsigned kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], int level, const void *plain,
                        size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err);
ss_rc ss_frame_open_buf(const ss_keys *keys, unsigned expected_kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], uint64_t max_plain,
                        const void *obj, size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err);

/* chain(N) from chain(N-1) and the hash of log/N's bytes. out may alias prev. */
void ss_chain_next(const ss_keys *keys, const uint8_t prev[SS_CHAIN_BYTES],
                   const uint8_t object_hash[SS_OBJECT_HASH_BYTES], uint8_t out[SS_CHAIN_BYTES]);

#endif
