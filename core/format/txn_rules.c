/*
 * txn_rules: every rule a transaction obeys (docs/FORMAT.md "Transactions"),
 * written once and shared by the encoder (txn_write.c) and the decoder
 * (txn.c) through txn_impl.h, so the encoder can never write what the
 * decoder refuses. Each rule fills why and returns nonzero.
 */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pad.h"
#include "path.h"
#include "txn_impl.h"

int ss_txn_say(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, SS_TXN_WHY, fmt, ap);
    va_end(ap);
    return 1;
}

ss_rc ss_txn_limits_check(const ss_txn_limits *lim, ss_err *err)
{
    if (!lim) return ss_fail(err, SS_ERR_INVALID, "transaction limits missing");
    if (lim->inline_limit > SS_CONFIG_INLINE_LIMIT_MAX)
        return ss_fail(err, SS_ERR_INVALID, "inline limit %u above %u", lim->inline_limit,
                       SS_CONFIG_INLINE_LIMIT_MAX);
    if (lim->max_chunk_size == 0 || lim->max_chunk_size > SS_CONFIG_CHUNK_MAX_LIMIT)
        return ss_fail(err, SS_ERR_INVALID, "max chunk size %u not in 1..%u", lim->max_chunk_size,
                       SS_CONFIG_CHUNK_MAX_LIMIT);
    if (lim->max_packs > SS_TXN_MAX_PACKS)
        return ss_fail(err, SS_ERR_INVALID, "max packs %u above %u", lim->max_packs,
                       SS_TXN_MAX_PACKS);
    return SS_OK;
}

uint32_t ss_txn_max_packs(const ss_txn_limits *lim)
{
    return lim->max_packs ? lim->max_packs : SS_TXN_MAX_PACKS;
}

/* Well-formed UTF-8 (no overlong form, surrogate or code point above U+10FFFF), no NUL. */
static int utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
        if (c == 0 || (c >= 0x80 && (c & 0xf8) == 0xf8) || (c & 0xc0) == 0x80) return 1;
        if (n - i - 1 < k) return 1;
        uint32_t cp = k == 0 ? c : k == 1 ? c & 0x1fu : k == 2 ? c & 0x0fu : c & 0x07u;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 1;
            cp = cp << 6 | (s[i + j] & 0x3fu);
        }
        static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 1;
        i += k + 1;
    }
    return 0;
}

int ss_txn_name_fault(const char *name, size_t len, char *why)
{
    if (len > SS_TXN_DEVICE_NAME_MAX)
        return ss_txn_say(why, "device name of %zu bytes, more than %d", len,
                          SS_TXN_DEVICE_NAME_MAX);
    if (len && !name) return ss_txn_say(why, "device name missing");
    if (utf8_bad((const uint8_t *)name, len))
        return ss_txn_say(why, "device name not UTF-8 or has NUL");
    return 0;
}

static int digits(const char *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(set, s[i])) return 0;
    return 1;
}

/* "data/<20 digits>-<16 lowercase hex>", of a sequence in 1..seq (written with it or before). */
int ss_txn_pack_key_fault(const char *k, size_t len, uint64_t seq, char *why)
{
    char q[96];
    if (len != SS_TXN_PACK_KEY_LEN || memcmp(k, "data/", 5) != 0 ||
        !digits(k + 5, 20, "0123456789") || k[25] != '-' || !digits(k + 26, 16, "0123456789abcdef"))
        return ss_txn_say(why, "pack key %s is not data/<20 digits>-<16 hex>",
                          ss_path_quote(q, sizeof q, k, len));
    uint64_t ps = 0;
    for (int i = 5; i < 25; i++) {
        unsigned d = (unsigned)(k[i] - '0');
        if (ps > (UINT64_MAX - d) / 10)
            return ss_txn_say(why, "pack key %.42s: sequence overflows", k);
        ps = ps * 10 + d;
    }
    if (ps == 0 || ps > seq)
        return ss_txn_say(why, "pack key %.42s: sequence not in 1..%llu", k,
                          (unsigned long long)seq);
    return 0;
}

int ss_txn_path_fault(const char *p, size_t len, char *why)
{
    ss_err e;
    if (!p) return ss_txn_say(why, "path missing");
    if (ss_path_validate(p, len, &e) == SS_OK) return 0;
    return ss_txn_say(why, "%s", e.msg);
}

/* Kind, mode, time and the size rules that hold before any body byte is read. */
int ss_txn_attr_fault(const ss_txn_entry *e, char *why)
{
    if (e->kind != SS_TXN_FILE && e->kind != SS_TXN_DIR && e->kind != SS_TXN_SYMLINK)
        return ss_txn_say(why, "unknown kind %u", (unsigned)e->kind);
    if (e->mode > SS_TXN_MODE_MAX) return ss_txn_say(why, "mode 0%o above 07777", e->mode);
    if (e->mtime_ns >= SS_TXN_NSEC_LIMIT)
        return ss_txn_say(why, "mtime nanoseconds %u not below 10^9", e->mtime_ns);
    if (e->kind == SS_TXN_DIR && e->size != 0)
        return ss_txn_say(why, "directory of size %llu, not 0", (unsigned long long)e->size);
    if (e->kind == SS_TXN_SYMLINK && (e->size == 0 || e->size > SS_TXN_TARGET_MAX))
        return ss_txn_say(why, "symlink target length %llu not in 1..%d",
                          (unsigned long long)e->size, SS_TXN_TARGET_MAX);
    return 0;
}

int ss_txn_file_fault(const ss_txn_limits *lim, const ss_txn_entry *e, char *why)
{
    unsigned long long size = e->size;
    if (e->storage == SS_TXN_INLINE) {
        if (e->size > lim->inline_limit)
            return ss_txn_say(why, "inline file of %llu bytes, above the inline limit %u", size,
                              lim->inline_limit);
        return 0;
    }
    if (e->storage != SS_TXN_CHUNKS)
        return ss_txn_say(why, "unknown storage %u", (unsigned)e->storage);
    /* A writer inlines every file up to the limit; its content id is then checked on its bytes. */
    if (e->size <= lim->inline_limit)
        return ss_txn_say(why, "file of %llu bytes stored as chunks, not inline (limit %u)", size,
                          lim->inline_limit);
    /* Each chunk holds 1..max bytes, so the count alone can prove the size unreachable. */
    if (e->n_chunks > e->size)
        return ss_txn_say(why, "%u chunks for %llu bytes: a chunk is never empty", e->n_chunks,
                          size);
    if (e->size > (uint64_t)e->n_chunks * lim->max_chunk_size)
        return ss_txn_say(why, "%u chunks of at most %u bytes cannot hold %llu bytes", e->n_chunks,
                          lim->max_chunk_size, size);
    return 0;
}

int ss_txn_target_fault(const char *t, size_t len, char *why)
{
    if (!t) return ss_txn_say(why, "symlink target missing");
    if (memchr(t, '\0', len)) return ss_txn_say(why, "symlink target contains NUL");
    return 0;
}

/* The chunk r of a file with plain_left bytes not yet covered; last: no chunk follows. */
int ss_txn_chunk_fault(const ss_txn_limits *lim, uint32_t n_packs, const ss_chunk_ref *r,
                       uint64_t plain_left, int last, char *why)
{
    if (r->pack >= n_packs)
        return ss_txn_say(why, "pack index %u, but the table has %u packs", r->pack, n_packs);
    if (r->plain_len == 0 || r->plain_len > lim->max_chunk_size)
        return ss_txn_say(why, "plain length %u not in 1..%u", r->plain_len, lim->max_chunk_size);
    if (r->plain_len > plain_left)
        return ss_txn_say(why, "plain lengths add up to more than the file size");
    if (last && r->plain_len != plain_left)
        return ss_txn_say(why, "plain lengths add up to less than the file size");
    /* Bounds what one ranged GET may fetch into memory. */
    uint64_t most = SS_CHUNK_SEAL_FIXED + ss_pad_size(1 + (uint64_t)r->plain_len);
    if (r->sealed_len < SS_CHUNK_SEAL_FIXED ||
        !ss_pad_is_bucket(r->sealed_len - SS_CHUNK_SEAL_FIXED) || r->sealed_len > most)
        return ss_txn_say(why,
                          "sealed length %u is not %u + a size bucket of at most %llu (the "
                          "bucket of 1 + plain length)",
                          r->sealed_len, SS_CHUNK_SEAL_FIXED,
                          (unsigned long long)(most - SS_CHUNK_SEAL_FIXED));
    if (r->offset > UINT64_MAX - r->sealed_len)
        return ss_txn_say(why, "offset %llu + sealed length overflows",
                          (unsigned long long)r->offset);
    return 0;
}

int ss_txn_device_fault(const ss_txn_device *prev, const ss_txn_device *d, uint64_t seq, char *why)
{
    static const uint8_t zero_id[SS_TXN_DEVICE_ID_BYTES];
    if (d->type != SS_TXN_DEV_ENROLL && d->type != SS_TXN_DEV_REVOKE &&
        d->type != SS_TXN_DEV_POLICY)
        return ss_txn_say(why, "unknown device entry type %u", d->type);
    if (d->type == SS_TXN_DEV_POLICY &&
        (memcmp(d->id, zero_id, sizeof zero_id) || d->mode > SS_ENROLL_APPROVE))
        return ss_txn_say(why, "an enrollment entry with an id or an unknown mode %u", d->mode);
    if (d->seq == 0 || d->seq > seq)
        return ss_txn_say(why, "device entry sequence %llu not in 1..%llu",
                          (unsigned long long)d->seq, (unsigned long long)seq);
    if (d->type == SS_TXN_DEV_ENROLL && ss_txn_name_fault(d->name, d->name_len, why)) return 1;
    if (!prev) return 0;
    int c = memcmp(prev->id, d->id, SS_TXN_DEVICE_ID_BYTES);
    if (c > 0 || (c == 0 && prev->type >= d->type))
        return ss_txn_say(why, "device entries out of order or repeated");
    if (c == 0 && d->seq < prev->seq) /* enroll, then revoke of the same device */
        return ss_txn_say(why, "device revoked at %llu, before its enrollment at %llu",
                          (unsigned long long)d->seq, (unsigned long long)prev->seq);
    return 0;
}

/* Strictly increasing paths, nothing upserted below the barrier (see txn_impl.h). */
int ss_txn_order_step(ss_txn_order *o, const ss_txn_entry *e, char *why)
{
    char q[160];
    if (o->have_prev) {
        int c = ss_path_cmp(o->prev, o->prev_len, e->path, e->path_len);
        if (c == 0) return ss_txn_say(why, "path appears twice");
        if (c > 0)
            return ss_txn_say(why, "out of order: after %s",
                              ss_path_quote(q, sizeof q, o->prev, o->prev_len));
    }
    if (o->have_bar && !ss_path_is_ancestor(o->bar, o->bar_len, e->path, e->path_len))
        o->have_bar = 0;
    if (o->have_bar && e->type == SS_TXN_UPSERT)
        return ss_txn_say(
            why, "upsert below %s, which this transaction deletes or makes a non-directory",
            ss_path_quote(q, sizeof q, o->bar, o->bar_len));
    if (!o->have_bar && (e->type == SS_TXN_DELETE || e->kind != SS_TXN_DIR)) {
        memcpy(o->bar, e->path, e->path_len);
        o->bar_len = e->path_len;
        o->have_bar = 1;
    }
    memcpy(o->prev, e->path, e->path_len);
    o->prev_len = e->path_len;
    o->have_prev = 1;
    return 0;
}
