/*
 * body.c: request bodies -> checked fields (see body.h). The messages are
 * the ones docs/PROTOCOL.md's clients have always been given; routes.c and
 * presign.c turn a refusal into its answer.
 */
#include "body.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ss_rc refuse(ld_outcome *out, ld_why why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ss_rc refuse(ld_outcome *out, ld_why why, const char *fmt, ...)
{
    va_list ap;
    ss_rc rc = why == LD_WHY_BAD_KEY ? SS_ERR_AUTH : SS_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->why = why;
    va_start(ap, fmt);
    ss_vfail(&out->err, rc, fmt, ap);
    va_end(ap);
    return rc;
}

ss_rc ld_body_load(const char *buf, size_t len, json_t **ret, ld_outcome *out)
{
    json_error_t jerr;
    json_t *body;
    *ret = NULL;
    if (!len) {
        if (!(*ret = json_object())) {
            memset(out, 0, sizeof *out);
            out->why = LD_WHY_INTERNAL;
            return ss_fail(&out->err, SS_ERR_NOMEM, "out of memory");
        }
        return SS_OK;
    }
    body = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(body)) {
        ss_rc rc = refuse(out, LD_WHY_BAD_REQUEST, "body must be a JSON object: %s",
                          body ? "not an object" : jerr.text);
        json_decref(body);
        return rc;
    }
    *ret = body;
    return SS_OK;
}

ss_rc ld_body_parse_ttl(const json_t *body, int64_t default_ms, int64_t *ret_ttl_ms,
                        ld_outcome *out)
{
    json_t *ms = json_object_get(body, "ttl_ms"), *sec = json_object_get(body, "ttl");
    *ret_ttl_ms = default_ms;
    if (ms) {
        if (!json_is_integer(ms)) goto bad;
        *ret_ttl_ms = json_integer_value(ms);
    } else if (sec) {
        double v = json_number_value(sec);
        /* Bounded both ways before the conversion: a double beyond int64_t
         * (-1e300) is undefined behaviour to convert, not a TTL. */
        if (!json_is_number(sec) || v > 1e9 || v < -1e9) goto bad;
        *ret_ttl_ms = (int64_t)(v * 1000.0);
    }
    return SS_OK;
bad:
    return refuse(out, LD_WHY_BAD_REQUEST, "ttl must be a number of seconds, or ttl_ms an integer");
}

ss_rc ld_body_parse_fencing(const json_t *body, const char *query, uint64_t *ret_fencing,
                            ld_outcome *out)
{
    json_t *f = json_object_get(body, "fencing_token");
    char *end = NULL;
    *ret_fencing = 0;
    if (f) {
        if (!json_is_integer(f) || json_integer_value(f) < 1) goto bad;
        *ret_fencing = (uint64_t)json_integer_value(f);
        return SS_OK;
    }
    /* DELETE carries it in the query; strtoull would take "-1" for 2^64-1. */
    if (!query || !*query || *query == '-') goto bad;
    errno = 0;
    *ret_fencing = strtoull(query, &end, 10);
    if (!errno && !*end && *ret_fencing) return SS_OK;
bad:
    *ret_fencing = 0;
    return refuse(out, LD_WHY_BAD_REQUEST, "fencing_token (integer >= 1) is required");
}

ss_rc ld_body_parse_commit(const json_t *body, const char *query, ld_body_commit *ret,
                           ld_outcome *out)
{
    json_t *seq = json_object_get(body, "seq"), *rel = json_object_get(body, "release");
    memset(ret, 0, sizeof *ret);
    ret->lease_id = json_string_value(json_object_get(body, "lease_id"));
    if (!ret->lease_id || !json_is_integer(seq) || json_integer_value(seq) < 1 ||
        (rel && !json_is_boolean(rel))) {
        ret->lease_id = NULL;
        return refuse(out, LD_WHY_BAD_REQUEST,
                      "commit needs lease_id (string), fencing_token and seq (integers >= 1), "
                      "and optionally release (boolean)");
    }
    ret->seq = (uint64_t)json_integer_value(seq);
    ret->release = json_is_true(rel);
    return ld_body_parse_fencing(body, query, &ret->fencing, out);
}

ss_rc ld_body_parse_presign(const json_t *body, ld_body_presign *ret, ld_outcome *out)
{
    const char *op = json_string_value(json_object_get(body, "op"));
    memset(ret, 0, sizeof *ret);
    ret->put = op && !strcmp(op, "put");
    if (ret->put)
        ret->op = SS_PRESIGN_PUT;
    else if (op && !strcmp(op, "list"))
        ret->op = SS_PRESIGN_LIST;
    else if (op && !strcmp(op, "get"))
        ret->op = SS_PRESIGN_GET;
    else
        return refuse(out, LD_WHY_BAD_REQUEST, "presign: op must be get, put or list");
    ret->op_name = op;
    if (ret->op == SS_PRESIGN_LIST) {
        const char *prefix = json_string_value(json_object_get(body, "prefix"));
        const char *after = json_string_value(json_object_get(body, "start_after"));
        ret->prefix = prefix ? prefix : "";
        ret->start_after = after ? after : "";
        if (!ld_key_ok(ret->prefix, 1, 1) || !ld_key_ok(ret->start_after, 1, 0))
            return refuse(out, LD_WHY_BAD_KEY,
                          "presign: prefix or start_after '%.200s' not allowed",
                          ld_key_ok(ret->prefix, 1, 1) ? ret->start_after : ret->prefix);
        return SS_OK;
    }
    ret->keys = json_object_get(body, "keys");
    ret->n_keys = json_array_size(ret->keys);
    if (!json_is_array(ret->keys) || ret->n_keys == 0 || ret->n_keys > LD_PRESIGN_MAX_KEYS)
        return refuse(out, LD_WHY_BAD_REQUEST, "presign: keys must be an array of 1 to %d keys",
                      LD_PRESIGN_MAX_KEYS);
    for (size_t i = 0; i < ret->n_keys; i++) {
        const char *k = ld_body_presign_key(ret, i);
        if (!k || !ld_key_ok(k, 0, 0))
            return refuse(out, LD_WHY_BAD_KEY, "presign: key '%.200s' not allowed", k ? k : "");
    }
    if (ret->put) {
        json_t *jf = json_object_get(body, "fencing_token");
        ret->lease_id = json_string_value(json_object_get(body, "lease_id"));
        if (!ret->lease_id || !json_is_integer(jf) || json_integer_value(jf) < 1)
            return refuse(out, LD_WHY_BAD_REQUEST, "presign: put needs lease_id and fencing_token");
        ret->fencing = (uint64_t)json_integer_value(jf);
    }
    return SS_OK;
}

const char *ld_body_presign_key(const ld_body_presign *p, size_t i)
{
    return json_string_value(json_array_get(p->keys, i));
}
