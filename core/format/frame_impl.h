/*
 * frame_impl: what the frame writer (frame.c), reader (frame_read.c) and the
 * whole-buffer helpers (frame_buf.c) share, private to them: the record
 * sizes, the per-object authentication context, the argument rule, and a
 * block of zeros for the padding.
 */
#ifndef SS_FRAME_IMPL_H
#define SS_FRAME_IMPL_H

#include <stdint.h>

#include "frame.h"

enum { REC = SS_FRAME_RECORD_BYTES, WIRE = SS_FRAME_WIRE_RECORD_BYTES };

/* Padding is written and checked a block of these at a time. */
extern const uint8_t ss_frame_zeros[4096];

/* The context every record of the object authenticates (FORMAT.md "Framed objects"). */
void ss_frame_context(const ss_keys *keys, const uint8_t header[SS_FRAME_HEADER_BYTES],
                      const char *key, uint64_t seq, const uint8_t prev_chain[SS_CHAIN_BYTES],
                      uint8_t out[SS_FRAME_CONTEXT_BYTES]);

/* SS_ERR_INVALID unless kind is a known one and key a short enough object key. */
ss_rc ss_frame_check_args(unsigned kind, const char *key, ss_err *err);

#endif
