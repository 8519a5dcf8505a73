/*
 * requests: enrollment requests/ (docs/FORMAT.md "Approved enrollment"):
 * written by a device waiting for approval, listed and opened for `device
 * list` and `device approve` (commands/device_admin.c); the bytes are
 * format/request.c's.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "request.h"

void eng_request_key(const uint8_t id[SS_TXN_DEVICE_ID_BYTES], char out[SS_KEY_NAME_MAX])
{
    char hex[2 * SS_TXN_DEVICE_ID_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, id, SS_TXN_DEVICE_ID_BYTES);
    snprintf(out, SS_KEY_NAME_MAX, SS_KEY_REQUESTS_PREFIX "%s", hex);
}

ss_rc eng_request_enrollment(ss_folder *f, ss_err *err)
{
    uint8_t req[SS_REQUEST_BYTES];
    char key[SS_KEY_NAME_MAX], hex[2 * SS_TXN_DEVICE_ID_BYTES + 1];
    ss_rc rc = ss_request_seal(ss_repo_keys(f->repo), ss_device_key_public(f->key), f->device_name,
                               req, err);
    if (rc) return rc;
    eng_request_key(f->device_id, key);
    rc = ss_store_put(f->store, key, req, sizeof req, SS_PUT_CREATE_ONLY, err);
    if (rc && rc != SS_ERR_EXISTS) return rc; /* asked already: the first request stands */
    sodium_bin2hex(hex, sizeof hex, f->device_id, sizeof f->device_id);
    return ss_fail(err, SS_ERR_TEMPORARY,
                   "this repository enrolls devices by approval, and this one (%s) is not "
                   "enrolled yet: on an enrolled device, check that its id is %s, then run "
                   "s3sync device approve %.16s",
                   f->device_name, hex, hex);
}

typedef struct request_names {
    char **v;
    size_t n;
    int over;
} request_names;

static int collect_request(void *ctx, const char *key, const ss_store_stat *st)
{
    request_names *r = ctx;
    (void)st;
    if (r->n == SS_REQUESTS_MAX) return r->over = 1;
    r->v[r->n] = strdup(key);
    if (!r->v[r->n]) return r->over = 1;
    r->n++;
    return 0;
}

/* A request of requests/<hex>, opened: its id, key and name. */
static ss_rc open_request(ss_folder *f, const char *key, ss_txn_device *ret, ss_err *err)
{
    const char *hex = key + strlen(SS_KEY_REQUESTS_PREFIX);
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    if (strlen(hex) != 2 * SS_TXN_DEVICE_ID_BYTES ||
        sodium_hex2bin(ret->id, sizeof ret->id, hex, strlen(hex), NULL, NULL, NULL))
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: not a request's name", key);
    rc = ss_store_get_max(f->store, key, SS_REQUEST_BYTES, &buf, &len, err);
    if (rc) return rc;
    ss_err why = {{0}};
    rc = ss_request_open(ss_repo_keys(f->repo), buf, len, ret->id, ret->pk, ret->name, &why);
    free(buf);
    if (rc) return ss_fail(err, rc, "%s: %s", key, why.msg);
    ret->type = SS_TXN_DEV_ENROLL;
    ret->name_len = strlen(ret->name);
    return SS_OK;
}

ss_rc eng_requests_each(ss_folder *f, eng_request_fn fn, void *ctx, ss_err *err)
{
    request_names names = {calloc(SS_REQUESTS_MAX, sizeof(char *)), 0, 0};
    ss_txn_device d;
    ss_rc rc = SS_OK;
    if (!names.v) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_store_list(f->store, SS_KEY_REQUESTS_PREFIX, NULL, collect_request, &names, err);
    if (!rc && names.over)
        rc = ss_fail(err, SS_ERR_INTEGRITY, "more than %u enrollment requests (or out of memory)",
                     SS_REQUESTS_MAX);
    for (size_t i = 0; i < names.n && !rc; i++) {
        rc = open_request(f, names.v[i], &d, err);
        if (!rc && !ss_devices_find(f->devices, d.id)) rc = fn(ctx, &d, err);
    }
    for (size_t i = 0; i < names.n; i++)
        free(names.v[i]);
    free(names.v);
    return rc;
}
