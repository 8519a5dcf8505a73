/*
 * s3_delete: the XML of S3's multi-object delete (POST /BUCKET?delete,
 * DeleteObjects): the request body that names up to SS_DELETE_BATCH_MAX
 * keys, and the reading of the answer, where every key asked must come
 * back, as <Deleted> or as <Error>. Pure functions over buffers: no I/O,
 * so the fuzzer and the unit tests reach them without a store.
 */
#ifndef SS_S3_DELETE_H
#define SS_S3_DELETE_H

#include <stddef.h>

#include "ss_buf.h"
#include "ss_error.h"

/*
 * 1 when key can travel in the XML body as it is: valid UTF-8 (no
 * overlong form, no surrogate) without control characters (XML 1.0 has no
 * way to carry most of them, and a parser turns "\r" into "\n") nor
 * U+FFFE, U+FFFF; at most 1024 bytes, S3's limit. Others are deleted one by
 * one (DELETE /KEY takes any bytes).
 */
int s3_delete_key_ok(const char *key);

/*
 * The DeleteObjects body for keys[0..n) (full keys, the store's prefix
 * included), Quiet off so the answer accounts for every key. *ret_body is
 * the caller's (ss_buf_free). Every key must pass s3_delete_key_ok.
 */
ss_rc s3_delete_body(const char *const *keys, size_t n, ss_buf *ret_body, ss_err *err);

/*
 * Check the answer to a DeleteObjects of keys[0..n): every key comes back
 * once, as <Deleted>, or as <Error> with Code NoSuchKey (gone already: what
 * a delete wants). Otherwise fails naming the key as the caller knows it
 * (without its first strip bytes, the prefix): an <Error> is SS_ERR_AUTH
 * for AccessDenied, SS_ERR_TEMPORARY for InternalError, SlowDown and
 * ServiceUnavailable, else SS_ERR_STORE, with its Code and Message; a key
 * the answer leaves out, or one it names that was not asked, or an answer
 * that is no DeleteResult, is SS_ERR_STORE: a store that answers so cannot
 * be trusted to have deleted anything.
 */
ss_rc s3_delete_check(const ss_buf *answer, const char *const *keys, size_t n, size_t strip,
                      ss_err *err);

#endif
