/*
 * state_body: the body column of state.db for a chunked file: its chunk
 * refs with their pack keys spelled out, so a pull or restore finds every
 * chunk of the version it holds without the log.
 */
#include "state_body.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

static int body_put(ss_state_body *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->len || SS_ARRAY_GROW(b->p, b->len + n, b->cap)) return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

ss_rc ss_state_body_add(ss_state_body *b, const char *pack, const ss_chunk_ref *r)
{
    uint8_t klen = (uint8_t)strlen(pack);
    if (body_put(b, &klen, 1) || body_put(b, pack, klen) || body_put(b, &r->offset, 8) ||
        body_put(b, &r->sealed_len, 4) || body_put(b, &r->plain_len, 4) ||
        body_put(b, r->id, sizeof r->id))
        return SS_ERR_NOMEM;
    return SS_OK;
}

void ss_state_body_free(ss_state_body *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

int ss_state_body_next(const void *body, size_t len, size_t *pos, const char **ret_pack,
                       size_t *ret_pack_len, ss_chunk_ref *ret_ref)
{
    const unsigned char *p = body;
    size_t at = *pos, klen;
    if (at >= len) return 0;
    klen = p[at];
    if (len - at < 1 + klen + SS_STATE_BODY_REF) return 0;
    memset(ret_ref, 0, sizeof *ret_ref);
    *ret_pack = (const char *)p + at + 1;
    *ret_pack_len = klen;
    at += 1 + klen;
    memcpy(&ret_ref->offset, p + at, 8);
    memcpy(&ret_ref->sealed_len, p + at + 8, 4);
    memcpy(&ret_ref->plain_len, p + at + 12, 4);
    memcpy(ret_ref->id, p + at + 16, sizeof ret_ref->id);
    *pos = at + SS_STATE_BODY_REF;
    return 1;
}
