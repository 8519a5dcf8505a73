/*
 * fuzz-lockd-body: libFuzzer target for s3sync-lockd's request bodies, the
 * bytes any holder of a device token may send: ld_body_load (json_loadb),
 * then every route's field extraction and checks in lockd/body.c (ttl for
 * acquire and renew; fencing_token, from the body or the query, for renew,
 * release and commit; commit; presign with its key rules from presign.c),
 * all of them on each body, as each route would read it.
 *
 * Input: byte 0 is a mode; bit 0 set: the query's ?fencing_token= value
 * follows, up to the first '\n' (at most 40 bytes); bits 1-7 are a head
 * (0..127) that each presigned key is checked against (ld_put_key_ok). The
 * rest is the body. Checked: a body is accepted only as an object; a field
 * accepted has the shape body.h promises (fencing and seq >= 1, presign
 * keys well formed, 1..1000 of them, list prefixes well formed); a refusal
 * is a 400 or 403 with a NUL-terminated message.
 * Seeds: corpus-lockd-body/ (mode byte 0x00 or 0x01 + real bodies).
 */
#include "body.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void refused(ss_rc rc, const ld_outcome *o)
{
    if (rc != SS_ERR_INVALID && rc != SS_ERR_AUTH) abort();
    if (o->why != LD_WHY_BAD_REQUEST && o->why != LD_WHY_BAD_KEY) abort();
    if (!memchr(o->err.msg, '\0', sizeof o->err.msg) || !o->err.msg[0]) abort();
    /* What http.c does with it: a JSON error object (a cut UTF-8 sequence
     * makes jansson refuse the message; http.c then sends the code alone). */
    json_decref(json_pack("{s:s, s:s}", "error", "bad_request", "message", o->err.msg));
}

/* PROTOCOL.md's rule for a presigned key, said once more independently of
 * ld_key_ok: segments of [A-Za-z0-9._-] separated by one '/', none empty,
 * "." or "..", at most 1024 bytes. */
static int inside(const char *k)
{
    size_t len = strlen(k);
    if (!len || len > 1024 || k[0] == '/' || k[len - 1] == '/' || strstr(k, "//")) return 0;
    if (strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != len)
        return 0;
    for (const char *seg = k; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
        size_t n = strcspn(seg, "/");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
    }
    return 1;
}

static void presign(const json_t *body, uint64_t head)
{
    ld_body_presign p;
    ld_outcome o;
    ss_rc rc = ld_body_parse_presign(body, &p, &o);
    const char *op = json_string_value(json_object_get(body, "op"));
    if (p.put != (op && !strcmp(op, "put"))) abort(); /* the access check depends on it */
    if (rc) {
        refused(rc, &o);
        return;
    }
    if (!p.op_name || strcmp(p.op_name, op)) abort();
    if (p.op == SS_PRESIGN_LIST) {
        if (!ld_key_ok(p.prefix, 1, 1) || !ld_key_ok(p.start_after, 1, 0)) abort();
        return;
    }
    if (p.op != SS_PRESIGN_GET && p.op != SS_PRESIGN_PUT) abort();
    if (p.n_keys < 1 || p.n_keys > LD_PRESIGN_MAX_KEYS) abort();
    for (size_t i = 0; i < p.n_keys; i++) {
        const char *k = ld_body_presign_key(&p, i);
        if (!k || !inside(k)) abort();
        (void)ld_put_key_ok(k, head);
    }
    if (p.put && (!p.lease_id || p.fencing < 1)) abort();
}

static void routes(const json_t *body, const char *query, uint64_t head)
{
    ld_outcome o;
    int64_t ttl = 0;
    uint64_t fencing = 0;
    ld_body_commit cm;
    ss_rc rc;

    if ((rc = ld_body_parse_ttl(body, 30000, &ttl, &o))) refused(rc, &o);
    if ((rc = ld_body_parse_fencing(body, query, &fencing, &o)))
        refused(rc, &o);
    else if (fencing < 1)
        abort();
    if ((rc = ld_body_parse_commit(body, query, &cm, &o)))
        refused(rc, &o);
    else if (!cm.lease_id || cm.seq < 1 || cm.fencing < 1 || (cm.release & ~1))
        abort();
    presign(body, head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char query[41], *q = NULL;
    json_t *body = NULL;
    ld_outcome o;
    ss_rc rc;
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++, size--;
    if (mode & 1) {
        const uint8_t *nl = memchr(data, '\n', size < 40 ? size : 40);
        size_t n = nl ? (size_t)(nl - data) : (size < 40 ? size : 40);
        memcpy(query, data, n);
        query[n] = '\0';
        q = query;
        data += n + (nl ? 1 : 0), size -= n + (nl ? 1 : 0);
    }
    if ((rc = ld_body_load((const char *)data, size, &body, &o))) {
        if (body) abort();
        refused(rc, &o);
        return 0;
    }
    if (!json_is_object(body)) abort();
    routes(body, q, mode >> 1);
    json_decref(body);
    return 0;
}
