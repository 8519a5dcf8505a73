/*
 * le: little-endian integers in byte strings, the byte order of every
 * format s3sync writes (FORMAT.md: "All integers are little-endian").
 * A put returns the byte after what it wrote, so encoders read as a list.
 */
#ifndef SS_LE_H
#define SS_LE_H

#include <stdint.h>

static inline uint16_t ss_le_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t ss_le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t ss_le_get64(const uint8_t *p)
{
    return (uint64_t)ss_le_get32(p) | (uint64_t)ss_le_get32(p + 4) << 32;
}

static inline uint8_t *ss_le_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static inline uint8_t *ss_le_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static inline uint8_t *ss_le_put64(uint8_t *p, uint64_t v)
{
    ss_le_put32(p, (uint32_t)v);
    return ss_le_put32(p + 4, (uint32_t)(v >> 32));
}

#endif
