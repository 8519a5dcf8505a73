/*
 * txn_impl: what the transaction encoder (txn_write.c) and decoder (txn.c)
 * share, private to them: the layout's fixed sizes, and the rules. Each rule is written once, so
 * the encoder can never write what the decoder refuses. A rule returns nonzero with the reason in
 * why (SS_TXN_WHY bytes); the caller adds context and its own error code.
 */
#ifndef SS_TXN_IMPL_H
#define SS_TXN_IMPL_H

#include <stdint.h>

#include "le.h"
#include "path.h"
#include "txn.h"

#define SS_TXN_HEADER_FIXED 40 /* magic, version, reserved, seq, time, device id */
#define SS_TXN_ATTR_BYTES 25   /* kind, mode, mtime seconds and nanoseconds, size */
#define SS_TXN_IO_BUF (64u * 1024)
#define SS_TXN_WHY 256 /* room for one reason */

/* Formats the reason into why; returns 1, so a rule reads `return ss_txn_say(...)`. */
int ss_txn_say(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* lim->max_packs, or the default when 0. */
uint32_t ss_txn_max_packs(const ss_txn_limits *lim);

int ss_txn_name_fault(const char *name, size_t len, char *why);
/* A pack key of a transaction with sequence seq. */
int ss_txn_pack_key_fault(const char *k, size_t len, uint64_t seq, char *why);
int ss_txn_path_fault(const char *p, size_t len, char *why);
/* Kind, mode, time and the size rules that hold before any body byte is read. */
int ss_txn_attr_fault(const ss_txn_entry *e, char *why);
/* Storage, inline limit, and whether n_chunks can hold size. */
int ss_txn_file_fault(const ss_txn_limits *lim, const ss_txn_entry *e, char *why);
int ss_txn_target_fault(const char *t, size_t len, char *why);
/* Chunk r of a file with plain_left bytes not yet covered; last: no chunk follows. */
int ss_txn_chunk_fault(const ss_txn_limits *lim, uint32_t n_packs, const ss_chunk_ref *r,
                       uint64_t plain_left, int last, char *why);

/*
 * Device entry d of a transaction with sequence seq, after prev (NULL for
 * the first): known type, seq in 1..seq, a valid name, strictly increasing
 * (id, type), and a revoke no earlier than the same device's enroll.
 */
int ss_txn_device_fault(const ss_txn_device *prev, const ss_txn_device *d, uint64_t seq, char *why);

/*
 * Order of ops: strictly increasing paths. The barrier is the last path the
 * transaction deletes or upserts as a file or symlink; nothing may be
 * upserted below it (a file "a" with a file "a/b" contradicts itself, and a
 * symlink "a" with "a/b" would write through the link). Its subtree follows
 * it directly in this order, so one barrier is all there is to remember.
 */
typedef struct ss_txn_order {
    int have_prev, have_bar;
    size_t prev_len, bar_len;
    char prev[SS_PATH_MAX], bar[SS_PATH_MAX];
} ss_txn_order;

/* Checks e (path already valid) against the ops before it, then records it. */
int ss_txn_order_step(ss_txn_order *o, const ss_txn_entry *e, char *why);

#endif
