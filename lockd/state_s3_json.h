/*
 * state_s3_json.h: the objects of lockd's bucket state (docs/PROTOCOL.md
 * "State backends"), from bytes to checked structs and back. Owns every
 * rule about what a well-formed meta.json, repos/<repo>.json,
 * devices/<hash>.json and names/<device>.json holds, and the writers list a
 * record carries. Makes no request and keeps no state, so the parsers can
 * be fuzzed alone (tests/fuzz/fuzz-lockd-state.c); state_s3.c calls it.
 *
 * The bytes come from a bucket anyone with its credentials can write: each
 * parser refuses anything but exactly its v1 shape (types, ranges, names,
 * hex lengths, no unknown or duplicate field) with SS_ERR_INTEGRITY naming
 * the key it was read from.
 */
#ifndef LD_STATE_S3_JSON_H
#define LD_STATE_S3_JSON_H

#include "ld_state.h"

#define S3ST_RECORD_MAX (256u << 10) /* a record's bytes (64 writers of 4 names are ~25 KiB) */
#define S3ST_SMALL_MAX (4u << 10)    /* meta.json, a device's or a name's object */
#define S3ST_KEY_MAX 128             /* "devices/" + 64 hex + ".json", "repos/" + a name... */

#define S3ST_NONCE_BYTES 16

/* A record as the bucket holds it: the record, and the writers of its last sequences. */
typedef struct s3st_record {
    ld_record rec;
    /* Random per write (state_s3.c put_record): no two writes of a record have the same
     * bytes, so none has an ETag (the body's MD5) an earlier one had, and an If-Match read
     * before never matches again (docs/PROTOCOL.md "State backends"). */
    char nonce[2 * S3ST_NONCE_BYTES + 1];
    ld_seq_writers w[LD_STATE_WRITERS_KEPT]; /* by seq, strictly rising, each n >= 1 */
    size_t n_w;
} s3st_record;

/* The keys of each object, into out[S3ST_KEY_MAX]. */
void s3st_repo_key(const char *repo, char out[S3ST_KEY_MAX]);
void s3st_device_key(const unsigned char hash[LD_HASH_LEN], char out[S3ST_KEY_MAX]);
void s3st_name_key(const char *device, char out[S3ST_KEY_MAX]);
#define S3ST_META_KEY "meta.json"

/* repos/<repo>.json's bytes: the record of repo (a record naming another is refused). */
ss_rc s3st_record_parse(const char *key, const char *repo, const void *buf, size_t len,
                        s3st_record *ret, ss_err *err);
/* The record's JSON, malloc'ed (*ret, *ret_len); refuses a record parse would refuse. */
ss_rc s3st_record_dump(const s3st_record *r, char **ret, size_t *ret_len, ss_err *err);

/* The writers of seq: those of the record, or none. */
void s3st_writers_get(const s3st_record *r, uint64_t seq, ld_writers *ret);
/* What a decision asked of the writers (rec.add_writer, rec.drop_writers), then cleared. */
void s3st_writers_apply(s3st_record *r);

/* devices/<hash>.json's bytes: the device (its hash the one the key names). */
ss_rc s3st_device_parse(const char *key, const unsigned char hash[LD_HASH_LEN], const void *buf,
                        size_t len, ld_device *ret, ss_err *err);
ss_rc s3st_device_dump(const ld_device *d, char **ret, size_t *ret_len, ss_err *err);
/* "devices/<64 hex>.json" -> the hash; 0 when key is not of that form. */
int s3st_device_key_hash(const char *key, unsigned char ret[LD_HASH_LEN]);

/* names/<device>.json's bytes: the hash of the device of that name. */
ss_rc s3st_name_parse(const char *key, const void *buf, size_t len, unsigned char ret[LD_HASH_LEN],
                      ss_err *err);
ss_rc s3st_name_dump(const unsigned char hash[LD_HASH_LEN], char **ret, size_t *ret_len,
                     ss_err *err);

/* meta.json: the token secret. The dump goes to out[S3ST_SMALL_MAX], which the caller wipes. */
ss_rc s3st_meta_parse(const void *buf, size_t len, unsigned char ret[LD_SECRET_LEN], ss_err *err);
size_t s3st_meta_dump(const unsigned char secret[LD_SECRET_LEN], char out[S3ST_SMALL_MAX]);

#endif
