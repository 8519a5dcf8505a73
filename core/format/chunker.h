/*
 * chunker: content-defined chunking (FastCDC with normalized chunking) and
 * keyed chunk ids.
 *
 * Owns where a file's bytes are cut into chunks and what a chunk is called.
 * Boundaries depend only on the content and the parameters, never on how the
 * bytes were fed in, so an edit moves only the boundaries near it and the
 * chunks elsewhere keep their ids (the delta engine's "a one-byte edit in a
 * 1 GiB file uploads about one chunk"). The parameters are recorded in the
 * repository config: every device must cut with the same ones.
 *
 * Memory is bounded by max_size, never by the input (invariant 7).
 */
#ifndef SS_CHUNKER_H
#define SS_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#include "ss_error.h"

#define SS_CHUNK_ID_BYTES 32
#define SS_CHUNK_KEY_BYTES 32
#define SS_CHUNKER_MAX_LIMIT (8u * 1024 * 1024) /* largest max_size a config may record */

typedef struct ss_chunker ss_chunker; /* immutable once made: share it between threads */

typedef struct ss_chunker_params {
    uint32_t min_size; /* no cut before this many bytes (>= 64) */
    uint32_t avg_size; /* normal size: a power of two, min < avg < max */
    uint32_t max_size; /* forced cut here (<= SS_CHUNKER_MAX_LIMIT) */
} ss_chunker_params;

/* 64 KiB / 256 KiB / 1 MiB: chosen by measurement, see chunker.c. */
extern const ss_chunker_params ss_chunker_default;

/* SS_ERR_INVALID, naming the rule broken, unless p is usable (e.g. read from a config). */
ss_rc ss_chunker_params_check(const ss_chunker_params *p, ss_err *err);

/* Also calls sodium_init(), which ss_chunk_id() relies on for its fast BLAKE2b. */
ss_rc ss_chunker_new(const ss_chunker_params *p, ss_chunker **ret_chunker, ss_err *err);
void ss_chunker_free(ss_chunker *c); /* NULL safe */

const ss_chunker_params *ss_chunker_params_of(const ss_chunker *c);

/*
 * Pure boundary finder: the length of the chunk starting at buf[0], found in
 * buf[0..len), or 0 when no cut point is there yet and !eof. A cut, once
 * returned, is final: more bytes after it would not move it. The caller
 * supplies at least max_size bytes or sets eof to be sure of a nonzero answer;
 * with eof the rest (at most max_size) is the last chunk. Returns 0 only for
 * len == 0 or !eof; an empty input has no chunks.
 */
size_t ss_chunker_next(const ss_chunker *c, const uint8_t *buf, size_t len, int eof);

/*
 * Per chunk of ss_chunker_fd: data is valid only during the call; offset is
 * where the chunk starts in the stream. Anything but SS_OK stops the scan and
 * is returned as is (the callback fills err).
 */
typedef ss_rc (*ss_chunk_fn)(void *arg, const uint8_t *data, size_t len, uint64_t offset,
                             ss_err *err);

/*
 * Read fd (file or pipe) from its current position to its end and call fn on
 * each chunk in order, through one buffer of 2 * max_size bytes.
 */
ss_rc ss_chunker_fd(const ss_chunker *c, int fd, ss_chunk_fn fn, void *arg, ss_err *err);

/* Chunk id: BLAKE2b-256 keyed with the repository's chunk-id subkey, never a plain hash. */
void ss_chunk_id(const uint8_t key[SS_CHUNK_KEY_BYTES], const void *data, size_t len,
                 uint8_t out[SS_CHUNK_ID_BYTES]);

#endif
