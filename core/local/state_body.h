/*
 * state_body: the body column of state.db for a chunked file (state_body.c):
 * per chunk, a length-prefixed pack key then the ref (offset 8, sealed
 * length 4, plain length 4, id 32 bytes; host order: the database is this
 * device's alone).
 */
#ifndef SS_STATE_BODY_H
#define SS_STATE_BODY_H

#include <stddef.h>

#include "ss_error.h"
#include "txn.h"

#define SS_STATE_BODY_REF (8 + 4 + 4 + SS_CHUNK_ID_LEN) /* bytes of a ref after its key */

typedef struct ss_state_body {
    unsigned char *p;
    size_t len, cap;
} ss_state_body;
ss_rc ss_state_body_add(ss_state_body *b, const char *pack, const ss_chunk_ref *r);
void ss_state_body_free(ss_state_body *b);
/* Walk a body; *ret_pack points into it (not NUL-terminated: length in *ret_pack_len). */
int ss_state_body_next(const void *body, size_t len, size_t *pos, const char **ret_pack,
                       size_t *ret_pack_len, ss_chunk_ref *ret_ref);

#endif
