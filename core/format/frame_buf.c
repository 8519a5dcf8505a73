/*
 * frame_buf: framed objects sealed from and opened into whole buffers, for
 * objects small enough to hold in memory (the streaming writer and reader
 * are frame.c and frame_read.c).
 */
#include "array.h"
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* ---- whole buffers ---- */

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
    int nomem;
} membuf;

static int membuf_add(void *ctx, const void *buf, size_t len)
{
    membuf *m = ctx;
    if (len > SIZE_MAX - m->len) return m->nomem = -1;
    if (SS_ARRAY_GROW(m->p, m->len + len, m->cap)) return m->nomem = -1;
    if (len) memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static ss_rc membuf_take(membuf *m, void **ret_buf, size_t *ret_len, const char *key, ss_err *err)
{
    /* An empty result is still a real allocation, so NULL always means failure. */
    if (!m->nomem && !m->p) {
        m->p = malloc(1);
        if (!m->p) m->nomem = 1;
    }
    if (m->nomem) return ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    *ret_buf = m->p;
    *ret_len = m->len;
    m->p = NULL;
    return SS_OK;
}

/* Results cleared on entry; SS_ERR_INVALID when there is nowhere to put them. */
static ss_rc clear_results(void **ret_buf, size_t *ret_len, uint8_t *ret_hash, ss_err *err)
{
    if (ret_buf) *ret_buf = NULL;
    if (ret_len) *ret_len = 0;
    if (ret_hash) memset(ret_hash, 0, SS_OBJECT_HASH_BYTES);
    if (!ret_buf || !ret_len) return ss_fail(err, SS_ERR_INVALID, "frame: no result pointer");
    return SS_OK;
}

/*
 * The end both directions share: the buffer and hash handed out when rc is
 * SS_OK, an output that ran out of memory said as such, and what is left of
 * the buffer wiped (it may hold plaintext) and freed.
 */
static ss_rc hand_out(ss_rc rc, membuf *m, const uint8_t hash[SS_OBJECT_HASH_BYTES], void **ret_buf,
                      size_t *ret_len, uint8_t *ret_hash, const char *key, ss_err *err)
{
    if (rc == SS_ERR_IO && m->nomem)
        rc = ss_fail(err, SS_ERR_NOMEM, "object %s: out of memory", key);
    if (rc) goto out;
    rc = membuf_take(m, ret_buf, ret_len, key, err);
    if (rc) goto out;
    if (ret_hash) memcpy(ret_hash, hash, SS_OBJECT_HASH_BYTES);
out:
    if (m->p) sodium_memzero(m->p, m->len);
    free(m->p);
    return rc;
}

ss_rc ss_frame_seal_buf(const ss_keys *keys, unsigned kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], int level, const void *plain,
                        size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_frame_writer *w = NULL;
    membuf m = {0};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_rc rc = clear_results(ret_buf, ret_len, ret_object_hash, err);
    if (rc) return rc;
    rc = ss_frame_writer_new(keys, kind, key, seq, prev_chain, level, membuf_add, &m, &w, err);
    if (rc) goto done;
    rc = ss_frame_write(w, plain, len, err);
    if (rc) goto done;
    rc = ss_frame_finish(w, hash, err);
done:
    ss_frame_writer_free(w);
    return hand_out(rc, &m, hash, ret_buf, ret_len, ret_object_hash, key, err);
}

ss_rc ss_frame_open_buf(const ss_keys *keys, unsigned expected_kind, const char *key, uint64_t seq,
                        const uint8_t prev_chain[SS_CHAIN_BYTES], uint64_t max_plain,
                        const void *obj, size_t len, void **ret_buf, size_t *ret_len,
                        uint8_t ret_object_hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_frame_reader *r = NULL;
    membuf m = {0};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_rc rc = clear_results(ret_buf, ret_len, ret_object_hash, err);
    if (rc) return rc;
    rc = ss_frame_reader_new(keys, expected_kind, key, seq, prev_chain, max_plain, membuf_add, &m,
                             &r, err);
    if (rc) goto done;
    rc = ss_frame_feed(r, obj, len, err);
    if (rc) goto done;
    rc = ss_frame_end(r, hash, err);
done:
    ss_frame_reader_free(r);
    return hand_out(rc, &m, hash, ret_buf, ret_len, ret_object_hash, key, err);
}
