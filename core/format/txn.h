/*
 * txn: encoder and streaming decoder of transactions, the plaintext of
 * log/<seq> (docs/FORMAT.md "Transactions", normative).
 *
 * Owns the byte layout and every rule a decoder enforces on it: paths
 * validated and strictly increasing in ss_path_cmp order (invariant 6), and
 * memory bounded by the limits, never by the number of ops or chunks
 * (invariant 7): ops and chunk refs are pulled one at a time, and only the
 * pack table (capped by SS_TXN_MAX_PACKS) is held. The encoder checks
 * the same rules, so it never writes what a decoder refuses.
 *
 * Knows nothing of crypto, framing or the store: bytes in, bytes out.
 */
#ifndef SS_TXN_H
#define SS_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "io.h"
#include "ss_error.h"

typedef enum ss_txn_type {
    SS_TXN_UPSERT = SS_TXN_OP_UPSERT,
    SS_TXN_DELETE = SS_TXN_OP_DELETE,
} ss_txn_type;

typedef enum ss_txn_kind {
    SS_TXN_FILE = SS_TXN_KIND_FILE,
    SS_TXN_DIR = SS_TXN_KIND_DIR,
    SS_TXN_SYMLINK = SS_TXN_KIND_SYMLINK,
} ss_txn_kind;

typedef enum ss_txn_storage {
    SS_TXN_INLINE = SS_TXN_STORAGE_INLINE,
    SS_TXN_CHUNKS = SS_TXN_STORAGE_CHUNKS,
} ss_txn_storage;

/* From the repository config; encoder and decoder of one repository share them. */
typedef struct ss_txn_limits {
    uint32_t inline_limit; /* files up to this size may be inline; <= SS_CONFIG_INLINE_LIMIT_MAX */
    uint32_t max_chunk_size; /* chunker max size; 1..SS_CONFIG_CHUNK_MAX_LIMIT */
    uint32_t max_packs;      /* 0: SS_TXN_MAX_PACKS; less only in tests */
} ss_txn_limits;

/*
 * One entry of the device section (FORMAT.md "Devices and signatures"). In a
 * log transaction: the signer enrolling itself (or, with approval on, a
 * device it approves), a device it revokes, or the enrollment policy, at
 * the transaction's sequence; in a checkpoint: the device table at its
 * sequence. The decoder checks the layout; what an entry may say given the
 * table before it is the engine's (devices.h).
 */
typedef struct ss_txn_device {
    uint8_t type; /* SS_TXN_DEV_ENROLL, _REVOKE or _POLICY (id all zero) */
    uint8_t mode; /* policy: SS_ENROLL_OPEN or SS_ENROLL_APPROVE */
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
    uint64_t seq;                          /* when it took effect: 1..the header's seq */
    uint8_t pk[SS_DEVICE_PK_BYTES];        /* enroll */
    char name[SS_TXN_DEVICE_NAME_MAX + 1]; /* enroll: NUL-terminated */
    size_t name_len;
} ss_txn_device;

typedef struct ss_txn_header {
    uint64_t seq;     /* >= 1 */
    uint64_t time_ns; /* Unix nanoseconds */
    uint8_t device_id[SS_TXN_DEVICE_ID_BYTES];
    const char *device_name; /* UTF-8, no NUL; decoded: NUL-terminated */
    size_t device_name_len;  /* <= SS_TXN_DEVICE_NAME_MAX */
    uint32_t n_packs;
    const char *const *pack_keys; /* n_packs NUL-terminated data/ keys, by pack index */
    uint32_t n_devices;           /* <= SS_TXN_MAX_DEVICES */
    const ss_txn_device *devices; /* in strictly increasing (id, type) order */
    uint32_t n_ops;
} ss_txn_header;

/* One chunk of a chunked file, where it lives in a data/ pack. */
typedef struct ss_chunk_ref {
    uint32_t pack;       /* index into the pack table */
    uint64_t offset;     /* of the sealed chunk in the pack */
    uint32_t sealed_len; /* SS_CHUNK_SEAL_FIXED + a bucket <= ss_pad_size(1 + plain_len) */
    uint32_t plain_len;  /* 1 .. max_chunk_size */
    uint8_t id[SS_CHUNK_ID_LEN];
} ss_chunk_ref;

/*
 * One op. Only path is meaningful for a delete. Pointers are borrowed: from
 * the caller for the encoder; for the decoder, valid until its next call.
 */
typedef struct ss_txn_entry {
    ss_txn_type type;
    const char *path; /* decoded: NUL-terminated */
    size_t path_len;
    ss_txn_kind kind;
    uint32_t mode; /* permission bits */
    int64_t mtime_s;
    uint32_t mtime_ns;
    uint64_t size; /* file: bytes; directory: 0; symlink: target length */
    uint8_t content_id[SS_TXN_CONTENT_ID_BYTES]; /* files */
    ss_txn_storage storage;                      /* files */
    const uint8_t *inline_data;                  /* SS_TXN_INLINE: size bytes */
    uint32_t n_chunks;                           /* SS_TXN_CHUNKS: refs that follow */
    const char *target; /* symlink: size bytes, no NUL; decoded: NUL-terminated */
} ss_txn_entry;

/* SS_ERR_INVALID unless lim is usable. */
ss_rc ss_txn_limits_check(const ss_txn_limits *lim, ss_err *err);

/* ---- Encoder ---- */

typedef struct ss_txn_writer ss_txn_writer;

/*
 * Checks h (counts and pack table are declared up front, as the format puts
 * them first) and writes the header and pack table to out, which receives
 * the transaction in pieces; out returning non-zero fails the writer with
 * SS_ERR_IO. Every put checks what the decoder checks and refuses with
 * SS_ERR_INVALID; a writer that failed refuses everything after.
 */
ss_rc ss_txn_writer_new(const ss_txn_limits *lim, const ss_txn_header *h, ss_write_fn out,
                        void *ctx, ss_txn_writer **ret_writer, ss_err *err);
/* e->type is ignored. A file with SS_TXN_CHUNKS is followed by exactly e->n_chunks puts. */
ss_rc ss_txn_put_upsert(ss_txn_writer *w, const ss_txn_entry *e, ss_err *err);
ss_rc ss_txn_put_chunk(ss_txn_writer *w, const ss_chunk_ref *r, ss_err *err);
ss_rc ss_txn_put_delete(ss_txn_writer *w, const char *path, size_t len, ss_err *err);
/*
 * Signs what out received: called once every byte before the signature went
 * to out, it writes the 64-byte signature (FORMAT.md "Devices and
 * signatures"; the caller hashes out's bytes and signs).
 */
typedef ss_rc (*ss_txn_sign_fn)(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES], ss_err *err);
/*
 * Checks that n_ops ops and all chunks were put, flushes them to out, then
 * writes the signature sign makes.
 */
ss_rc ss_txn_writer_finish(ss_txn_writer *w, ss_txn_sign_fn sign, void *ctx, ss_err *err);
void ss_txn_writer_free(ss_txn_writer *w); /* NULL safe; does not flush */

/* ---- Decoder ---- */

typedef struct ss_txn_reader ss_txn_reader;

/*
 * Reads and checks the header and pack table from src (only src->read is
 * used; src->ctx must outlive the reader). Every malformed byte is
 * SS_ERR_INTEGRITY naming what was wrong; src failing is SS_ERR_IO.
 *
 * Streaming means some faults (truncation, a later op out of order, trailing
 * bytes) show only after earlier entries were handed out. A transaction is
 * valid only once ss_txn_next reports its end: a caller that applies must
 * walk it once first (rewind the source, open a second reader) or stage
 * everything until then (invariant 2: nothing of a bad transaction applies).
 */
ss_rc ss_txn_reader_new(const ss_txn_limits *lim, const ss_reader *src, ss_txn_reader **ret_reader,
                        ss_err *err);
/* Borrowed, valid until ss_txn_reader_free. */
const ss_txn_header *ss_txn_reader_header(const ss_txn_reader *r);
/*
 * The next op in *ret_entry (borrowed, valid until the next call), or NULL
 * at the end, once no trailing byte was found. Chunk refs the caller did
 * not read are read, checked and skipped. After a failure every call fails.
 */
ss_rc ss_txn_next(ss_txn_reader *r, const ss_txn_entry **ret_entry, ss_err *err);
/*
 * The next chunk ref of the current entry, checked (pack index, lengths,
 * and at the last one: plain lengths sum to the size). Calling it with no
 * chunk left is SS_ERR_INVALID.
 */
ss_rc ss_txn_next_chunk(ss_txn_reader *r, ss_chunk_ref *ret_ref, ss_err *err);
uint32_t ss_txn_chunks_left(const ss_txn_reader *r);
/*
 * Once ss_txn_next reported the end: the signature (borrowed, valid until
 * ss_txn_reader_free) and in *ret_signed_len how many bytes of the source
 * came before it, the bytes it signs. NULL before the end.
 */
const uint8_t *ss_txn_reader_signature(const ss_txn_reader *r, uint64_t *ret_signed_len);
void ss_txn_reader_free(ss_txn_reader *r); /* NULL safe */

#endif
