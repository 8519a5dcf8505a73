/*
 * store_impl: what a backend provides (the ops table, as Redis's rio) and
 * the shared state the generic layer keeps. Private to s3store/.
 */
#ifndef SS_STORE_IMPL_H
#define SS_STORE_IMPL_H

#include "s3store.h"

/* One queued parallel transfer; owned by the generic layer. */
typedef struct ss_xfer_op {
    int is_put;
    char *key;
    const void *buf; /* put: body */
    void *dst;       /* get: destination of exactly len bytes */
    size_t len;
    uint64_t off;
    unsigned flags;
    ss_xfer_done_fn done;
    void *ctx;
    size_t got;      /* get: bytes a source put in dst */
    int from_source; /* get: the source delivered it all */
    ss_rc rc;
    ss_err err;
    struct ss_xfer_op *next;
} ss_xfer_op;

typedef struct ss_store_ops {
    const char *scheme; /* "s3", "file", "lockd" */
    int nested;         /* its location is a URL of its own: lockd:http://HOST/REPO */
    int leased;         /* writers are serialised by leases: no create-only probe (lockd) */
    ss_rc (*open)(ss_store *s, const char *location, const ss_store_opts *opts, ss_err *err);
    void (*close)(ss_store *s);
    /*
     * buf, when not NULL, is the whole body (body then reads the same bytes). ret_stat (may
     * be NULL): the new object's size and the ETag the store answered ("" if none).
     * if_match (NULL: none): compare-and-swap, ss_store_put_if's semantics, atomically.
     */
    ss_rc (*put)(ss_store *s, const char *key, uint64_t len, const ss_store_reader *body,
                 const void *buf, unsigned flags, const char *if_match, ss_store_stat *ret_stat,
                 ss_err *err);
    /* ret_stat (may be NULL): the ETag of exactly the object the bytes came from. */
    ss_rc (*get)(ss_store *s, const char *key, uint64_t off, uint64_t len, ss_store_write_fn write,
                 void *ctx, ss_store_stat *ret_stat, ss_err *err);
    ss_rc (*head)(ss_store *s, const char *key, ss_store_stat *ret_stat, ss_err *err);
    ss_rc (*del)(ss_store *s, const char *key, ss_err *err);
    /* Optional: delete keys[0..n), 1 <= n <= SS_DELETE_BATCH_MAX, in one request; NULL: del
     * key by key. */
    ss_rc (*del_batch)(ss_store *s, const char *const *keys, size_t n, ss_err *err);
    ss_rc (*list)(ss_store *s, const char *prefix, const char *start_after, ss_store_list_fn fn,
                  void *ctx, ss_err *err);
    /* Optional: who wrote key (ss_store_writer); NULL: nobody knows. */
    ss_rc (*writer)(ss_store *s, const char *key, char *ret, size_t cap, ss_err *err);
    ss_rc (*presign)(ss_store *s, ss_presign_op op, const char *key, const char *start_after,
                     const ss_sigv4_header *headers, size_t n_headers, unsigned expires,
                     char **ret_url, ss_err *err);
    /*
     * Optional parallel engine. xfer_start begins op without blocking;
     * xfer_step makes progress (waiting for some when block) and hands back
     * finished ops, with rc and err set, through *ret_done. NULL: the
     * generic layer runs each op synchronously. A start that fails sets
     * op->rc and op->err and returns it; the op is then not in flight.
     */
    ss_rc (*xfer_start)(ss_store *s, ss_xfer_op *op);
    void (*xfer_step)(ss_store *s, int block, ss_xfer_op **ret_done);
} ss_store_ops;

struct ss_store {
    const ss_store_ops *ops;
    char *url;
    ss_store_counters counts; /* kept up to date by the backends */
    unsigned max_parallel;
    unsigned list_page;     /* keys per LIST page asked for; 0: the store's own (s3: 1000) */
    void *impl;             /* backend state */
    ss_store_source source; /* source.get NULL: none (store_source.c) */
    uint64_t bytes_source;  /* what it delivered */
};

/* store_source.c: the source's half of a GET, and what it hears of puts and whole gets. */
int ss_source_get(ss_store *s, const char *key, uint64_t off, uint64_t len, ss_store_write_fn write,
                  void *ctx); /* 1: it delivered */
void ss_source_note(ss_store *s, const char *key, const void *buf, size_t len, int put);
/* The same for a put of fd's [off, off + len), read back when it is small enough. */
void ss_source_note_fd(ss_store *s, const char *key, int fd, uint64_t off, uint64_t len);

/*
 * Count one request of class cls (every attempt, retries too), or refuse it
 * before it is made when it would pass the budget (ss_store_set_budget):
 * SS_ERR_TEMPORARY naming op and key.
 */
ss_rc ss_store_charge(ss_store_counters *c, ss_req_class cls, const char *op, const char *key,
                      ss_err *err);

/* store_lockd.c's half of ss_store_lockd_check (s is a lockd store). */
ss_rc ss_store_lockd_step(ss_store *s, ss_lockd_check what, ss_err *err);

extern const ss_store_ops ss_store_file_ops;
extern const ss_store_ops ss_store_s3_ops;
extern const ss_store_ops ss_store_lockd_ops;

/* Shared by backends: a reader over a memory buffer. */
typedef struct ss_mem_reader {
    const unsigned char *buf;
    size_t len, pos;
} ss_mem_reader;
void ss_mem_reader_init(ss_mem_reader *m, const void *buf, size_t len, ss_store_reader *ret_rd);

/*
 * Shared by backends: a create-only PUT (rc SS_ERR_EXISTS) that was retried
 * may meet its own earlier attempt (412). When buf (the whole body) is known,
 * the object is fetched: the same bytes mean success. Every body put
 * create-only is named by its hash or carries what only its writer has (a
 * fresh nonce or salt, a device's token hash), or is one whose two writers
 * may both be told "created" (lockd's meta.json from one given secret, a
 * migrated device): the same bytes are the same write or a harmless one.
 * Returns rc otherwise. (A compare-and-swap's body need not be unique: it is
 * settled by its write identity, store_s3.c swap_resolve.)
 */
ss_rc ss_store_resolve_412(ss_store *s, const char *key, const void *buf, size_t len, ss_rc rc,
                           unsigned attempts, unsigned flags, ss_err *err);

/* Shared by backend engines: the sink of a parallel GET, exactly op->len bytes into op->dst. */
typedef struct ss_xfer_dst {
    ss_xfer_op *op;
    size_t got;
    int over; /* the store sent more than op->len: the transfer was stopped */
} ss_xfer_dst;
int ss_xfer_dst_write(void *ctx, const void *buf, size_t len);

/*
 * Settle a parallel transfer a backend engine ran, from its request's rc,
 * err and attempts: a GET that delivered fewer or more than op->len bytes
 * (dst->got, dst->over) is SS_ERR_INTEGRITY; a PUT's 412 goes through
 * ss_store_resolve_412.
 */
void ss_xfer_settle(ss_store *s, ss_xfer_op *op, const ss_xfer_dst *dst, ss_rc rc,
                    const ss_err *err, unsigned attempts);

#endif
