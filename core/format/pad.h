/*
 * pad: the size buckets of docs/FORMAT.md "Size padding", shared by the
 * writers and readers of framed objects, sealed chunks and data/ packs.
 *
 * A padded length is a multiple of a block that grows with the length
 * (Padme, Nikitin et al., PETS 2019): an object's size then tells only about
 * the top bits of its length, at a cost of at most 1/16 of the length plus
 * the SS_PAD_MIN_BYTES floor. Header-only: pure arithmetic, nothing to link.
 */
#ifndef SS_PAD_H
#define SS_PAD_H

#include <stdint.h>

#include "format.h"

/* floor(log2 n) for n >= 1. */
static inline unsigned ss_pad_log2(uint64_t n)
{
    unsigned e = 0;
    while (n >>= 1)
        e++;
    return e;
}

/* The block a length of n bytes (n >= 1, the 0x80 marker included) is padded to. */
static inline uint64_t ss_pad_block(uint64_t n)
{
    unsigned e = ss_pad_log2(n), s = ss_pad_log2(e ? e : 1) + 1;
    uint64_t b = e > s ? (uint64_t)1 << (e - s) : 1;
    return b < SS_PAD_MIN_BYTES ? SS_PAD_MIN_BYTES : b;
}

/*
 * Padded length of len bytes: the least multiple of ss_pad_block(len + 1)
 * above len (sodium_pad with that block size writes exactly this). 0 when it
 * would not fit 64 bits.
 */
static inline uint64_t ss_pad_size(uint64_t len)
{
    if (len > UINT64_MAX / 2) return 0;
    uint64_t b = ss_pad_block(len + 1);
    return (len / b + 1) * b;
}

/*
 * p is a bucket: some length pads to it. ss_pad_size does not decrease, and
 * the block only grows at powers of two, which are buckets themselves; so
 * when any length pads to p, p - 1 does.
 */
static inline int ss_pad_is_bucket(uint64_t p)
{
    return p >= SS_PAD_MIN_BYTES && ss_pad_size(p - 1) == p;
}

#endif
