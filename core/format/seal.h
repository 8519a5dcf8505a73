/*
 * seal: sealed chunks, the unit of data/ packs; docs/FORMAT.md "Sealed
 * chunks and data/ packs".
 *
 * Each chunk is sealed alone (random nonce, XChaCha20-Poly1305, associated
 * data binding the repository and the chunk id), so a reader fetches and
 * verifies one chunk with one ranged GET. Chunks are at most the chunker's
 * max size (8 MiB), so whole buffers are fine here; bounded memory comes from
 * the chunk size, not from streaming.
 *
 * Borrowed: keys, id, input buffers. *ret_buf is malloc'ed; the caller frees.
 */
#ifndef SS_SEAL_H
#define SS_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "keys.h"
#include "ss_error.h"

/*
 * A pack data/<seq>-<random> holds chunks sealed under the key epoch in force
 * at seq (ss_keys_epoch_at): the epoch argument below. Writers name a pack
 * with the sequence they commit it under, and a push that finds a newer
 * epoch before it commits seals its packs again under new names.
 */
/* The seq of a pack key data/<20 digits>-...; 0 when key is not one. */
uint64_t ss_pack_key_seq(const char *key);

/*
 * Seal chunk data whose id (ss_chunk_id with the chunk-id subkey) is id.
 * try_compress: store zstd at level when strictly smaller, else raw (level
 * 1..19). Output is SS_CHUNK_SEAL_FIXED + ss_pad_size(1 + stored payload
 * bytes) (pad.h). len is at most SS_CONFIG_CHUNK_MAX_LIMIT.
 */
ss_rc ss_chunk_seal(const ss_keys *keys, uint32_t epoch, const uint8_t id[SS_CHUNK_ID_LEN],
                    const void *data, size_t len, int try_compress, int level, void **ret_buf,
                    size_t *ret_len, ss_err *err);

/*
 * Authenticate, decompress (never beyond max_plain bytes: more is refused,
 * which stops decompression bombs) and check that the plaintext has this id.
 * An epoch not held is SS_ERR_EPOCH. Every other refusal is SS_ERR_INTEGRITY naming the chunk id;
 * callers add the pack key. The caller compares *ret_len with the plain length it expected.
 */
ss_rc ss_chunk_open(const ss_keys *keys, uint32_t epoch, const uint8_t id[SS_CHUNK_ID_LEN],
                    const void *sealed, size_t sealed_len, size_t max_plain, void **ret_buf,
                    size_t *ret_len, ss_err *err);

#endif
