/*
 * spool: ops of a transaction being built, parked in a temp file. The
 * transaction format puts the op count and pack table first, which a push
 * knows only after scanning; so the scan spools ops here, then the
 * transaction is written from the spool in one pass. Private format, never
 * stored: native-endian records, read back by the same process.
 */
#ifndef SS_SPOOL_H
#define SS_SPOOL_H

#include <stdio.h>

#include "txn.h"

typedef struct ss_spool ss_spool;

ss_rc ss_spool_new(int fd, ss_spool **ret, ss_err *err); /* takes fd */
void ss_spool_free(ss_spool *sp);
/* e->inline_data / e->target per kind; chunks holds e->n_chunks refs. */
ss_rc ss_spool_put(ss_spool *sp, const ss_txn_entry *e, const ss_chunk_ref *chunks, ss_err *err);
uint32_t ss_spool_count(const ss_spool *sp);
/* Replay every op into w, in the order spooled; chunk pack indices i become remap[i]. */
ss_rc ss_spool_replay(ss_spool *sp, ss_txn_writer *w, const uint32_t *remap, ss_err *err);

#endif
