/*
 * state_s3_json.c: the bucket state's objects <-> structs (state_s3_json.h),
 * and the writers list of a record. Every parser takes the bytes as hostile:
 * one JSON object, no duplicate or unknown field, "v": 1, each field of its
 * type and range; a failure is SS_ERR_INTEGRITY naming the key.
 */
#include "state_s3_json.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* --- keys ---------------------------------------------------------------------- */

void s3st_repo_key(const char *repo, char out[S3ST_KEY_MAX])
{
    snprintf(out, S3ST_KEY_MAX, "repos/%s.json", repo);
}

void s3st_device_key(const unsigned char hash[LD_HASH_LEN], char out[S3ST_KEY_MAX])
{
    char hex[2 * LD_HASH_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, hash, LD_HASH_LEN);
    snprintf(out, S3ST_KEY_MAX, "devices/%s.json", hex);
}

void s3st_name_key(const char *device, char out[S3ST_KEY_MAX])
{
    snprintf(out, S3ST_KEY_MAX, "names/%s.json", device);
}

/* Exactly n bytes as 2n lower-case hex digits (what the dumps write, nothing looser). */
static int hex_ok(const char *s, size_t len, size_t n, unsigned char *out)
{
    if (len != 2 * n) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return !out || sodium_hex2bin(out, n, s, len, NULL, NULL, NULL) == 0;
}

int s3st_device_key_hash(const char *key, unsigned char ret[LD_HASH_LEN])
{
    static const char pre[] = "devices/", suf[] = ".json";
    size_t len = strlen(key), hex = 2 * LD_HASH_LEN;
    if (len != strlen(pre) + hex + strlen(suf)) return 0;
    if (strncmp(key, pre, strlen(pre)) || strcmp(key + strlen(pre) + hex, suf)) return 0;
    return hex_ok(key + strlen(pre), hex, LD_HASH_LEN, ret);
}

/* --- checked fields ------------------------------------------------------------ */

static ss_rc refuse(ss_err *err, const char *key, const char *field, const char *what)
{
    return ss_fail(err, SS_ERR_INTEGRITY, "state object %s: \"%s\" %s", key, field, what);
}

/* Every field of o is one of allowed (NULL-terminated): a v1 object holds nothing else. */
static ss_rc only_fields(const json_t *o, const char *const *allowed, const char *key, ss_err *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], k))
            i++;
        if (!allowed[i]) return refuse(err, key, k, "is no field of this object");
    }
    return SS_OK;
}

static ss_rc get_int(const json_t *o, const char *f, int64_t min, int64_t max, int64_t *ret,
                     const char *key, ss_err *err)
{
    const json_t *v = json_object_get(o, f);
    if (!json_is_integer(v)) return refuse(err, key, f, "is not an integer");
    if (json_integer_value(v) < min || json_integer_value(v) > max)
        return refuse(err, key, f, "is out of range");
    *ret = json_integer_value(v);
    return SS_OK;
}

static ss_rc get_u64(const json_t *o, const char *f, uint64_t min, uint64_t *ret, const char *key,
                     ss_err *err)
{
    int64_t v = 0;
    ss_rc rc = get_int(o, f, (int64_t)min, INT64_MAX, &v, key, err);
    if (rc) return rc;
    *ret = (uint64_t)v;
    return SS_OK;
}

static ss_rc get_bool(const json_t *o, const char *f, int *ret, const char *key, ss_err *err)
{
    const json_t *v = json_object_get(o, f);
    if (!json_is_boolean(v)) return refuse(err, key, f, "is not true or false");
    *ret = json_is_true(v);
    return SS_OK;
}

/* A string without NUL that fits out[cap] with its terminator. */
static ss_rc get_str(const json_t *o, const char *f, char *out, size_t cap, const char *key,
                     ss_err *err)
{
    const json_t *v = json_object_get(o, f);
    size_t n;
    if (!json_is_string(v)) return refuse(err, key, f, "is not a string");
    n = json_string_length(v);
    if (n >= cap || memchr(json_string_value(v), '\0', n))
        return refuse(err, key, f, "is too long or holds a NUL");
    memcpy(out, json_string_value(v), n);
    out[n] = '\0';
    return SS_OK;
}

static ss_rc get_name(const json_t *o, const char *f, char out[LD_NAME_MAX + 1], const char *key,
                      ss_err *err)
{
    ss_rc rc = get_str(o, f, out, LD_NAME_MAX + 1, key, err);
    if (rc) return rc;
    if (!ld_name_ok(out)) return refuse(err, key, f, "is not a name ([A-Za-z0-9._-], 1..64)");
    return SS_OK;
}

/* One object of bytes, "v": 1, only the allowed fields. *ret the caller's. */
static ss_rc load(const char *key, const void *buf, size_t len, const char *const *allowed,
                  json_t **ret, ss_err *err)
{
    json_error_t je;
    json_t *o = NULL;
    int64_t v = 0;
    ss_rc rc = SS_OK;
    *ret = NULL;
    o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return ss_fail(err, SS_ERR_INTEGRITY, "state object %s: not JSON (line %d: %s)", key,
                       je.line, je.text);
    if (!json_is_object(o)) {
        rc = ss_fail(err, SS_ERR_INTEGRITY, "state object %s: not a JSON object", key);
        goto fail;
    }
    rc = get_int(o, "v", 1, 1, &v, key, err);
    if (rc) goto fail;
    rc = only_fields(o, allowed, key, err);
    if (rc) goto fail;
    *ret = o;
    return SS_OK;
fail:
    json_decref(o);
    return rc;
}

static ss_rc dumped(json_t *o, char **ret, size_t *ret_len, ss_err *err)
{
    char *s = NULL;
    *ret = NULL;
    *ret_len = 0;
    if (o) s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s) return ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
    *ret = s;
    *ret_len = strlen(s);
    return SS_OK;
}

/* --- the record ---------------------------------------------------------------- */

static const char *const record_fields[] = {
    "v",         "repo",          "url",         "head",  "next_fencing", "dirty", "dirty_gen",
    "rewinding", "urls_until_ms", "head_object", "lease", "writers",      "nonce", NULL};
static const char *const head_fields[] = {"seq", "etag", "size", NULL};
static const char *const lease_fields[] = {"id",         "device",  "fencing", "granted_ms",
                                           "expires_ms", "put_seq", NULL};
static const char *const writer_fields[] = {"seq", "devices", NULL};

static int etag_ok(const char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e || *s == '"') return 0;
    return 1;
}

static ss_rc parse_head_object(const json_t *h, ld_repo_row *r, const char *key, ss_err *err)
{
    uint64_t seq = 0;
    ss_rc rc;
    if (json_is_null(h)) return SS_OK;
    if (!json_is_object(h)) return refuse(err, key, "head_object", "is not an object or null");
    rc = only_fields(h, head_fields, key, err);
    if (rc) return rc;
    rc = get_u64(h, "seq", 0, &seq, key, err);
    if (rc) return rc;
    if (seq != r->head) return refuse(err, key, "head_object", "is not of the head's sequence");
    rc = get_str(h, "etag", r->head_etag, sizeof r->head_etag, key, err);
    if (rc) return rc;
    if (!r->head_etag[0] || !etag_ok(r->head_etag)) /* "" is written as no head_object */
        return refuse(err, key, "etag", "is empty or holds a character no ETag has");
    return get_u64(h, "size", 0, &r->head_size, key, err);
}

static ss_rc parse_lease(const json_t *l, ld_record *rec, const char *key, ss_err *err)
{
    ld_lease_row *x = &rec->lease;
    ss_rc rc;
    if (json_is_null(l)) return SS_OK;
    if (!json_is_object(l)) return refuse(err, key, "lease", "is not an object or null");
    rc = only_fields(l, lease_fields, key, err);
    if (rc) return rc;
    rc = get_str(l, "id", x->id, sizeof x->id, key, err);
    if (rc) return rc;
    if (!hex_ok(x->id, strlen(x->id), LD_LEASE_ID_BYTES, NULL))
        return refuse(err, key, "id", "is not 32 lower-case hex digits");
    rc = get_name(l, "device", x->device, key, err);
    if (rc) return rc;
    /* S2: the token handed out lies below the next one, or a grant would repeat it. */
    rc = get_u64(l, "fencing", 1, &x->fencing, key, err);
    if (rc) return rc;
    if (x->fencing >= rec->repo.next_fencing)
        return refuse(err, key, "fencing", "is not below next_fencing");
    rc = get_int(l, "granted_ms", 0, INT64_MAX, &x->granted_ms, key, err);
    if (rc) return rc;
    rc = get_int(l, "expires_ms", x->granted_ms, INT64_MAX, &x->expires_ms, key, err);
    if (rc) return rc;
    rc = get_u64(l, "put_seq", 0, &x->put_seq, key, err);
    if (rc) return rc;
    rec->leased = 1;
    return SS_OK;
}

static ss_rc parse_writer(const json_t *e, ld_seq_writers *w, uint64_t after, const char *key,
                          ss_err *err)
{
    const json_t *devs = NULL;
    ss_rc rc;
    if (!json_is_object(e)) return refuse(err, key, "writers", "holds a non-object");
    rc = only_fields(e, writer_fields, key, err);
    if (rc) return rc;
    rc = get_u64(e, "seq", 1, &w->seq, key, err);
    if (rc) return rc;
    if (w->seq <= after) return refuse(err, key, "writers", "are not in rising order");
    devs = json_object_get(e, "devices");
    if (!json_is_array(devs) || json_array_size(devs) < 1 || json_array_size(devs) > LD_WRITERS_MAX)
        return refuse(err, key, "devices", "is not an array of 1..4 names");
    for (size_t i = 0; i < json_array_size(devs); i++) {
        const json_t *d = json_array_get(devs, i);
        const char *s = json_string_value(d);
        if (!s || json_string_length(d) > LD_NAME_MAX || !ld_name_ok(s))
            return refuse(err, key, "devices", "holds something not a name");
        memcpy(w->w.name[i], s, json_string_length(d) + 1);
    }
    w->w.n = json_array_size(devs);
    return SS_OK;
}

static ss_rc parse_writers(const json_t *a, s3st_record *r, const char *key, ss_err *err)
{
    ss_rc rc;
    if (!json_is_array(a) || json_array_size(a) > LD_STATE_WRITERS_KEPT)
        return refuse(err, key, "writers", "is not an array of at most 64");
    for (size_t i = 0; i < json_array_size(a); i++) {
        rc = parse_writer(json_array_get(a, i), &r->w[i], i ? r->w[i - 1].seq : 0, key, err);
        if (rc) return rc;
    }
    r->n_w = json_array_size(a);
    return SS_OK;
}

static ss_rc parse_repo(const json_t *o, const char *repo, ld_repo_row *x, uint64_t *ret_gen,
                        const char *key, ss_err *err)
{
    ss_rc rc = get_name(o, "repo", x->name, key, err);
    if (rc) return rc;
    if (strcmp(x->name, repo)) return refuse(err, key, "repo", "names another repository");
    rc = get_str(o, "url", x->url, sizeof x->url, key, err);
    if (rc) return rc;
    if (strncmp(x->url, "s3://", 5)) return refuse(err, key, "url", "does not start s3://");
    rc = get_u64(o, "head", 0, &x->head, key, err);
    if (rc) return rc;
    rc = get_u64(o, "next_fencing", 1, &x->next_fencing, key, err);
    if (rc) return rc;
    rc = get_bool(o, "dirty", &x->dirty, key, err);
    if (rc) return rc;
    rc = get_u64(o, "dirty_gen", 0, ret_gen, key, err);
    if (rc) return rc;
    rc = get_bool(o, "rewinding", &x->rewinding, key, err);
    if (rc) return rc;
    return get_int(o, "urls_until_ms", 0, INT64_MAX, &x->urls_until_ms, key, err);
}

ss_rc s3st_record_parse(const char *key, const char *repo, const void *buf, size_t len,
                        s3st_record *ret, ss_err *err)
{
    json_t *o = NULL;
    s3st_record *r = ret;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    rc = load(key, buf, len, record_fields, &o, err);
    if (rc) return rc;
    rc = parse_repo(o, repo, &r->rec.repo, &r->rec.dirty_gen, key, err);
    if (rc) goto fail;
    rc = parse_head_object(json_object_get(o, "head_object"), &r->rec.repo, key, err);
    if (rc) goto fail;
    if (!json_object_get(o, "lease")) {
        rc = refuse(err, key, "lease", "is missing");
        goto fail;
    }
    rc = parse_lease(json_object_get(o, "lease"), &r->rec, key, err);
    if (rc) goto fail;
    rc = parse_writers(json_object_get(o, "writers"), r, key, err);
    if (rc) goto fail;
    rc = get_str(o, "nonce", r->nonce, sizeof r->nonce, key, err);
    if (rc) goto fail;
    if (!hex_ok(r->nonce, strlen(r->nonce), S3ST_NONCE_BYTES, NULL)) {
        rc = refuse(err, key, "nonce", "is not 32 lower-case hex digits");
        goto fail;
    }
    json_decref(o);
    return SS_OK;
fail:
    json_decref(o);
    memset(ret, 0, sizeof *ret);
    return rc;
}

static json_t *dump_head_object(const ld_repo_row *x)
{
    if (!x->head_etag[0]) return json_null();
    return json_pack("{s:I, s:s, s:I}", "seq", (json_int_t)x->head, "etag", x->head_etag, "size",
                     (json_int_t)x->head_size);
}

static json_t *dump_lease(const ld_record *rec)
{
    const ld_lease_row *l = &rec->lease;
    if (!rec->leased) return json_null();
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "id", l->id, "device", l->device, "fencing",
                     (json_int_t)l->fencing, "granted_ms", (json_int_t)l->granted_ms, "expires_ms",
                     (json_int_t)l->expires_ms, "put_seq", (json_int_t)l->put_seq);
}

static json_t *dump_writers(const s3st_record *r)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < r->n_w; i++) {
        json_t *devs = json_array();
        for (size_t j = 0; devs && j < r->w[i].w.n; j++)
            if (json_array_append_new(devs, json_string(r->w[i].w.name[j]))) {
                json_decref(devs);
                devs = NULL;
            }
        if (!devs ||
            json_array_append_new(
                a, json_pack("{s:I, s:o}", "seq", (json_int_t)r->w[i].seq, "devices", devs))) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

ss_rc s3st_record_dump(const s3st_record *r, char **ret, size_t *ret_len, ss_err *err)
{
    const ld_repo_row *x = &r->rec.repo;
    json_t *ho = dump_head_object(x), *lease = dump_lease(&r->rec), *w = dump_writers(r);
    json_t *o = NULL;
    s3st_record *check = NULL;
    char key[S3ST_KEY_MAX];
    ss_rc rc;
    *ret = NULL;
    *ret_len = 0;
    if (ho && lease && w) /* "o" steals each: on failure json_pack has freed them */
        o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:b, s:I, s:b, s:I, s:o, s:o, s:o}", "v", 1,
                      "nonce", r->nonce, "repo", x->name, "url", x->url, "head",
                      (json_int_t)x->head, "next_fencing", (json_int_t)x->next_fencing, "dirty",
                      x->dirty, "dirty_gen", (json_int_t)r->rec.dirty_gen, "rewinding",
                      x->rewinding, "urls_until_ms", (json_int_t)x->urls_until_ms, "head_object",
                      ho, "lease", lease, "writers", w);
    else {
        json_decref(ho);
        json_decref(lease);
        json_decref(w);
    }
    rc = dumped(o, ret, ret_len, err);
    if (rc) return rc;
    /* Never write what a replica would refuse to read back: that would stop the repository. */
    check = malloc(sizeof *check);
    if (!check) {
        rc = ss_fail(err, SS_ERR_NOMEM, "state: out of memory");
        goto fail;
    }
    s3st_repo_key(x->name, key);
    rc = s3st_record_parse(key, x->name, *ret, *ret_len, check, err);
    if (rc) goto fail;
    free(check);
    return SS_OK;
fail:
    free(check);
    free(*ret);
    *ret = NULL;
    *ret_len = 0;
    return rc;
}

/* --- writers ------------------------------------------------------------------- */

void s3st_writers_get(const s3st_record *r, uint64_t seq, ld_writers *ret)
{
    memset(ret, 0, sizeof *ret);
    for (size_t i = 0; i < r->n_w; i++)
        if (r->w[i].seq == seq) *ret = r->w[i].w;
}

static void add_writer(s3st_record *r, uint64_t seq, const char *device)
{
    size_t i = 0;
    ld_writers *w;
    while (i < r->n_w && r->w[i].seq < seq)
        i++;
    if (i == r->n_w || r->w[i].seq != seq) {
        if (r->n_w == LD_STATE_WRITERS_KEPT) { /* the oldest sequence's writers go */
            if (i == 0) return;
            memmove(&r->w[0], &r->w[1], (r->n_w - 1) * sizeof r->w[0]);
            r->n_w--;
            i--;
        }
        memmove(&r->w[i + 1], &r->w[i], (r->n_w - i) * sizeof r->w[0]);
        memset(&r->w[i], 0, sizeof r->w[i]);
        r->w[i].seq = seq;
        r->n_w++;
    }
    w = &r->w[i].w;
    for (size_t j = 0; j < w->n; j++)
        if (!strcmp(w->name[j], device)) return;
    if (w->n < LD_WRITERS_MAX) snprintf(w->name[w->n++], sizeof w->name[0], "%s", device);
}

void s3st_writers_apply(s3st_record *r)
{
    ld_record *rec = &r->rec;
    if (rec->add_writer && rec->leased && rec->lease.put_seq > 0)
        add_writer(r, rec->lease.put_seq, rec->lease.device);
    if (rec->drop_writers)
        while (r->n_w > 0 && r->w[r->n_w - 1].seq > rec->repo.head)
            r->n_w--;
    rec->add_writer = rec->drop_writers = 0;
}

/* --- devices, names, meta ------------------------------------------------------ */

static const char *const device_fields[] = {"v",       "name",       "repo", "read_only",
                                            "revoked", "created_ms", NULL};
static const char *const name_fields[] = {"v", "hash", NULL};
static const char *const meta_fields[] = {"v", "token_secret", NULL};

ss_rc s3st_device_parse(const char *key, const unsigned char hash[LD_HASH_LEN], const void *buf,
                        size_t len, ld_device *ret, ss_err *err)
{
    json_t *o = NULL;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    rc = load(key, buf, len, device_fields, &o, err);
    if (rc) return rc;
    rc = get_name(o, "name", ret->name, key, err);
    if (rc) goto fail;
    rc = get_name(o, "repo", ret->repo, key, err);
    if (rc) goto fail;
    rc = get_bool(o, "read_only", &ret->read_only, key, err);
    if (rc) goto fail;
    rc = get_bool(o, "revoked", &ret->revoked, key, err);
    if (rc) goto fail;
    rc = get_int(o, "created_ms", 0, INT64_MAX, &ret->created_ms, key, err);
    if (rc) goto fail;
    memcpy(ret->hash, hash, LD_HASH_LEN);
    json_decref(o);
    return SS_OK;
fail:
    json_decref(o);
    memset(ret, 0, sizeof *ret);
    return rc;
}

ss_rc s3st_device_dump(const ld_device *d, char **ret, size_t *ret_len, ss_err *err)
{
    *ret = NULL;
    *ret_len = 0;
    if (!ld_name_ok(d->name) || !ld_name_ok(d->repo) || d->created_ms < 0)
        return ss_fail(err, SS_ERR_INVALID, "device '%s' of '%s': bad name or time", d->name,
                       d->repo);
    return dumped(json_pack("{s:i, s:s, s:s, s:b, s:b, s:I}", "v", 1, "name", d->name, "repo",
                            d->repo, "read_only", d->read_only, "revoked", d->revoked, "created_ms",
                            (json_int_t)d->created_ms),
                  ret, ret_len, err);
}

static ss_rc get_hex(const json_t *o, const char *f, unsigned char *out, size_t n, const char *key,
                     ss_err *err)
{
    const json_t *v = json_object_get(o, f);
    if (!json_is_string(v) || !hex_ok(json_string_value(v), json_string_length(v), n, out))
        return refuse(err, key, f, "is not 64 lower-case hex digits");
    return SS_OK;
}

ss_rc s3st_name_parse(const char *key, const void *buf, size_t len, unsigned char ret[LD_HASH_LEN],
                      ss_err *err)
{
    json_t *o = NULL;
    ss_rc rc = load(key, buf, len, name_fields, &o, err);
    if (rc) return rc;
    rc = get_hex(o, "hash", ret, LD_HASH_LEN, key, err);
    json_decref(o);
    return rc;
}

ss_rc s3st_name_dump(const unsigned char hash[LD_HASH_LEN], char **ret, size_t *ret_len,
                     ss_err *err)
{
    char hex[2 * LD_HASH_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, hash, LD_HASH_LEN);
    return dumped(json_pack("{s:i, s:s}", "v", 1, "hash", hex), ret, ret_len, err);
}

ss_rc s3st_meta_parse(const void *buf, size_t len, unsigned char ret[LD_SECRET_LEN], ss_err *err)
{
    json_t *o = NULL;
    json_t *v = NULL;
    ss_rc rc = load(S3ST_META_KEY, buf, len, meta_fields, &o, err);
    if (rc) return rc;
    rc = get_hex(o, "token_secret", ret, LD_SECRET_LEN, S3ST_META_KEY, err);
    v = json_object_get(o, "token_secret");
    /* jansson frees without wiping: wipe its copy of the secret in place first. */
    if (json_is_string(v)) sodium_memzero((char *)json_string_value(v), json_string_length(v));
    json_decref(o);
    return rc;
}

/* By hand, not json_dumps: jansson's buffers would keep the secret unwiped. */
size_t s3st_meta_dump(const unsigned char secret[LD_SECRET_LEN], char out[S3ST_SMALL_MAX])
{
    char hex[2 * LD_SECRET_LEN + 1];
    int n;
    sodium_bin2hex(hex, sizeof hex, secret, LD_SECRET_LEN);
    n = snprintf(out, S3ST_SMALL_MAX, "{\"token_secret\":\"%s\",\"v\":1}", hex);
    sodium_memzero(hex, sizeof hex);
    return (size_t)n;
}
