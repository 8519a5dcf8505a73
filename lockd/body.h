/*
 * body.h: the JSON bodies of s3sync-lockd's requests, from bytes to checked
 * fields (ld_body_*). Owns what each route reads from its body and the 400
 * (and 403 key_not_allowed) refusals of malformed ones, as docs/PROTOCOL.md
 * states them; decides nothing about leases, devices or keys beyond their
 * shape. Touches no database, clock or network, so every parser here can be
 * fuzzed alone (tests/fuzz/fuzz-lockd-body.c); routes.c and presign.c call it.
 *
 * A refusal fills out (LD_WHY_BAD_REQUEST or LD_WHY_BAD_KEY, the one-line
 * message for the client) and returns its ss_rc; strings in the results are
 * borrowed from the body and live as long as it does.
 */
#ifndef LD_BODY_H
#define LD_BODY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lockd.h"

/*
 * A request body's bytes as a JSON object (*ret, the caller's): no bytes is
 * {} (every field takes its default); anything else must be one object
 * without duplicate keys (400). LD_WHY_INTERNAL when out of memory.
 */
ss_rc ld_body_load(const char *buf, size_t len, json_t **ret, ld_outcome *out);

/* POST lease, POST lease/{id}/renew: ttl_ms (integer) or ttl (seconds, may
 * be fractional), else default_ms. Bounds are the lease module's business. */
ss_rc ld_body_parse_ttl(const json_t *body, int64_t default_ms, int64_t *ret_ttl_ms,
                        ld_outcome *out);

/* renew, release, commit: fencing_token (integer >= 1) from the body, else
 * from the query's ?fencing_token= (query: its value, NULL when absent). */
ss_rc ld_body_parse_fencing(const json_t *body, const char *query, uint64_t *ret_fencing,
                            ld_outcome *out);

/* POST commit: what the body names. */
typedef struct ld_body_commit {
    const char *lease_id;
    uint64_t fencing, seq; /* both >= 1 */
    int release;           /* default 0 */
} ld_body_commit;

ss_rc ld_body_parse_commit(const json_t *body, const char *query, ld_body_commit *ret,
                           ld_outcome *out);

/* POST presign: one operation and its keys. */
typedef struct ld_body_presign {
    ss_presign_op op;
    const char *op_name;     /* "get", "put" or "list", as the answer echoes it */
    int put;                 /* set even on a refusal: see ld_body_parse_presign */
    const char *prefix;      /* list: a prefix ("" when absent) */
    const char *start_after; /* list: a key ("" when absent) */
    const json_t *keys;      /* get, put: 1..LD_PRESIGN_MAX_KEYS strings, each ld_key_ok */
    size_t n_keys;
    const char *lease_id; /* put */
    uint64_t fencing;     /* put: >= 1 */
} ld_body_presign;

/*
 * Checks in the order clients have always seen: op (400), list's prefix and
 * start_after (403 key_not_allowed), the keys array (400) and each key's
 * shape (403), put's lease_id and fencing_token (400). ret->put tells
 * whether the body asks for PUT URLs even when it is refused, because the
 * device's write access is checked (403 read_only) before the body's fields.
 * Which keys a lease holder may create is presign.c's (ld_put_key_ok).
 */
ss_rc ld_body_parse_presign(const json_t *body, ld_body_presign *ret, ld_outcome *out);

/* The i-th key of a parsed presign body (i < n_keys). */
const char *ld_body_presign_key(const ld_body_presign *p, size_t i);

#endif
