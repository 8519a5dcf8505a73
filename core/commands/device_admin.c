/*
 * device_admin: `s3sync device list`, `device revoke`, `key rotate` and
 * approved enrollment (`device enrollment`, `device approve`, the requests
 * a new device writes) on an open folder (s3sync.h); the table and its
 * rules are devices.c's, the signed transactions push.c's, the key epochs
 * epochs.c's, requests/ request.c's.
 */
#include <ctype.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

static void info_of(const ss_folder *f, const ss_device *d, ss_device_info *ret)
{
    memset(ret, 0, sizeof *ret);
    ret->name = d->name;
    sodium_bin2hex(ret->id, sizeof ret->id, d->id, sizeof d->id);
    ret->enrolled = d->enrolled;
    ret->revoked = d->revoked;
    ret->last = d->last;
    ret->self = !memcmp(d->id, f->device_id, sizeof d->id);
}

void ss_folder_device_id(const ss_folder *f, char out[33])
{
    sodium_bin2hex(out, 33, f->device_id, sizeof f->device_id);
}

const char *ss_folder_device_name(const ss_folder *f)
{
    return f->device_name;
}

ss_rc ss_folder_devices(ss_folder *f, ss_device_fn fn, void *ctx, ss_stats *stats, ss_err *err)
{
    ss_device_info info;
    ss_rc rc = ss_pull(f, stats, err);
    if (rc) return rc;
    for (size_t i = 0; i < ss_devices_count(f->devices); i++) {
        info_of(f, ss_devices_at(f->devices, i), &info);
        rc = fn(ctx, &info, err);
        if (rc) return rc;
    }
    return SS_OK;
}

/* who names d: its whole name, or a prefix (4 hex digits or more) of its id. */
static int names(const ss_device *d, const char *who)
{
    char hex[2 * SS_TXN_DEVICE_ID_BYTES + 1];
    size_t n = strlen(who);
    if (!strcmp(d->name, who)) return 1;
    if (n < 4 || n > 2 * SS_TXN_DEVICE_ID_BYTES) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)who[i])) return 0;
    sodium_bin2hex(hex, sizeof hex, d->id, sizeof d->id);
    return !strncasecmp(hex, who, n);
}

/* The one device who names; those already revoked only when no other matches. */
static ss_rc resolve(ss_folder *f, const char *who, const ss_device **ret, ss_err *err)
{
    const ss_device *live = NULL, *gone = NULL;
    size_t n_live = 0;
    char a[17], b[17];
    for (size_t i = 0; i < ss_devices_count(f->devices); i++) {
        const ss_device *d = ss_devices_at(f->devices, i);
        if (!names(d, who)) continue;
        if (d->revoked) {
            gone = d;
        } else {
            if (n_live++) ss_device_id_short(live->id, a);
            if (n_live > 1) ss_device_id_short(d->id, b);
            if (n_live == 2)
                return ss_fail(err, SS_ERR_INVALID,
                               "%s names more than one device (%s, %s): give its id instead "
                               "(s3sync device list)",
                               who, a, b);
            live = d;
        }
    }
    *ret = live ? live : gone;
    if (!*ret)
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "no enrolled device is named %s (s3sync device list shows them)", who);
    if (!live) {
        ss_device_id_short(gone->id, a);
        return ss_fail(err, SS_ERR_INVALID,
                       "device %s (%s) was revoked already, at log/%020" PRIu64, gone->name, a,
                       gone->revoked);
    }
    return SS_OK;
}

/*
 * A new key epoch began (was): the passphrase given is written as a key
 * file of it, then every other key file is retired (moved to retired/),
 * since whoever was revoked may have seen those passphrases. Killed in
 * between, the old key files open only older epochs and `key add` writes
 * one of the new. lockd signs no DELETE: there the old ones stay, said so.
 */
static ss_rc new_passphrase(ss_folder *f, uint32_t was, const char *pass, size_t passlen,
                            ss_stats *stats, ss_err *err)
{
    char id[SS_KEYFILE_ID_HEX + 1], msg[300];
    ss_err why = {{0}};
    ss_rc rc;
    if (ss_folder_epoch(f) == was) return SS_OK; /* nothing written: nothing to retire */
    rc = ss_repo_key_add(f->repo, pass, passlen, f->device_name, id, &why);
    if (rc) { /* what was asked is done; what is left must be said with it */
        ss_fail(err, rc,
                "key epoch %u began, but its passphrase was not saved (%s): run s3sync key add "
                "on this device, or no device can join",
                ss_folder_epoch(f), why.msg);
        goto done;
    }
    if (!ss_store_is_lockd(f->store)) {
        rc = ss_repo_key_retire_others(f->repo, id, &why);
        if (rc)
            ss_fail(err, rc,
                    "key epoch %u began and its passphrase is saved as key %s, but the older "
                    "passphrases are not all retired (%s): s3sync key list, then key remove each "
                    "other one",
                    ss_folder_epoch(f), id, why.msg);
        goto done;
    }
    if (f->hooks.warn) {
        snprintf(msg, sizeof msg,
                 "the older key files stay (lockd signs no DELETE): they open only the key epochs "
                 "before %u; remove them with the bucket's credentials",
                 ss_folder_epoch(f));
        f->hooks.warn(f->hooks.ctx, msg);
    }
done:
    eng_stats_from_store(f, stats, ENG_STATS_ALL); /* the key files' requests count too */
    return rc;
}

ss_rc ss_folder_revoke(ss_folder *f, const char *who, const char *pass, size_t passlen,
                       ss_device_info *ret_revoked, ss_stats *stats, ss_err *err)
{
    const ss_device *d = NULL;
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
    uint32_t was;
    ss_rc rc;
    memset(ret_revoked, 0, sizeof *ret_revoked);
    if (!pass || !passlen)
        return ss_fail(err, SS_ERR_INVALID, "a revocation needs a new passphrase");
    rc = ss_pull(f, stats, err);
    if (rc) return rc;
    rc = resolve(f, who, &d, err);
    if (rc) return rc;
    memcpy(id, d->id, sizeof id); /* d points into the table the push replaces */
    was = ss_folder_epoch(f);
    rc = eng_push_revoke(f, id, stats, err);
    if (rc) return rc;
    rc = new_passphrase(f, was, pass, passlen, stats, err);
    if (rc) return rc;
    d = ss_devices_find(f->devices, id);
    if (d) info_of(f, d, ret_revoked);
    return SS_OK;
}

ss_rc ss_folder_rotate(ss_folder *f, const char *pass, size_t passlen, ss_stats *stats, ss_err *err)
{
    uint32_t was;
    ss_rc rc;
    if (!pass || !passlen)
        return ss_fail(err, SS_ERR_INVALID, "a key rotation needs a new passphrase");
    rc = ss_pull(f, stats, err);
    if (rc) return rc;
    was = ss_folder_epoch(f);
    rc = eng_push_rotate(f, stats, err);
    if (rc) return rc;
    return new_passphrase(f, was, pass, passlen, stats, err);
}

uint32_t ss_folder_epoch(const ss_folder *f)
{
    return ss_keys_epoch(ss_repo_keys(f->repo));
}

/* ---- approved enrollment ---------------------------------------------------------- */

typedef struct request_out {
    ss_request_fn fn;
    void *ctx;
} request_out;

static ss_rc tell_request(void *ctx, const ss_txn_device *d, ss_err *err)
{
    request_out *o = ctx;
    ss_request_info info = {.name = d->name};
    sodium_bin2hex(info.id, sizeof info.id, d->id, sizeof d->id);
    return o->fn(o->ctx, &info, err);
}

ss_rc ss_folder_requests(ss_folder *f, ss_request_fn fn, void *ctx, ss_err *err)
{
    request_out o = {fn, ctx};
    return eng_requests_each(f, tell_request, &o, err);
}

typedef struct approve_find {
    const char *who;
    ss_txn_device found;
    int n;
} approve_find;

static ss_rc match_request(void *ctx, const ss_txn_device *d, ss_err *err)
{
    approve_find *a = ctx;
    char hex[2 * SS_TXN_DEVICE_ID_BYTES + 1];
    (void)err;
    sodium_bin2hex(hex, sizeof hex, d->id, sizeof d->id);
    if (strlen(a->who) < 4 || strncasecmp(hex, a->who, strlen(a->who))) return SS_OK;
    a->found = *d;
    a->n++;
    return SS_OK;
}

ss_rc ss_folder_approve(ss_folder *f, const char *who, ss_request_info *ret, ss_stats *stats,
                        ss_err *err)
{
    approve_find a = {.who = who};
    char key[SS_KEY_NAME_MAX];
    ss_err ignored;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    rc = ss_pull(f, stats, err);
    if (rc) return rc;
    rc = eng_requests_each(f, match_request, &a, err);
    if (rc) return rc;
    if (a.n != 1)
        return ss_fail(err, a.n ? SS_ERR_INVALID : SS_ERR_NOT_FOUND,
                       a.n ? "%s names more than one request: give more of its id"
                           : "no enrollment request has an id starting with %s "
                             "(s3sync device list shows them)",
                       who);
    rc = eng_push_entry(f, &a.found, stats, err);
    if (rc) return rc;
    eng_request_key(a.found.id, key);
    ss_store_delete(f->store, key, &ignored); /* answered: a leftover is skipped anyway */
    sodium_bin2hex(ret->id, sizeof ret->id, a.found.id, sizeof a.found.id);
    snprintf(ret->name_buf, sizeof ret->name_buf, "%s", a.found.name);
    ret->name = ret->name_buf;
    return SS_OK;
}

ss_rc ss_folder_set_enrollment(ss_folder *f, int approve, ss_stats *stats, ss_err *err)
{
    ss_txn_device e = {.type = SS_TXN_DEV_POLICY,
                       .mode = approve ? SS_ENROLL_APPROVE : SS_ENROLL_OPEN};
    ss_rc rc = ss_pull(f, stats, err);
    if (rc) return rc;
    return eng_push_entry(f, &e, stats, err);
}

int ss_folder_enrollment(const ss_folder *f)
{
    uint8_t mode;
    uint64_t seq;
    ss_devices_policy(f->devices, &mode, &seq);
    return mode == SS_ENROLL_APPROVE;
}
