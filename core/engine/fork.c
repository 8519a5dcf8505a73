/*
 * fork: the check that log/<watermark> is still the object this device
 * applied or wrote (FORMAT.md "The fork check"), not merely a key of that
 * name. A store that lost a device's newest object and then took another
 * device's different object at that sequence has forked: the two devices
 * hold different histories that each verify on their own. The key's name
 * cannot tell; its bytes can.
 *
 * Cost: pull lists log/ from the watermark's own key (log_list.c), so the
 * listing brings that key's ETag and size with no extra request; push lists
 * once more before it writes on top of the watermark, unless the same
 * command's pull has just checked that very watermark (a sync: the push
 * then sends one LIST fewer). Only when they differ
 * from what state.db recorded (ss_state_applied) is the object fetched and
 * its BLAKE2b-256 compared: the ETag is the store's word and may change
 * form (a copied bucket), the hash is the chain's. A listing that says
 * nothing of the key (lockd tells the head's ETag only) leaves the check to
 * the chain: the next object after the watermark only verifies on top of
 * the one this device applied, and when it does not, log/<watermark> is
 * read to tell a fork from a damaged object (eng_fork_explain).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "format.h"

_Static_assert(sizeof((ss_state_applied *)0)->tag == ENG_ETAG_TAG_TEXT, "state.db's tag column");

void eng_etag_tag(const char *etag, char out[ENG_ETAG_TAG_TEXT])
{
    uint8_t d[ENG_ETAG_TAG_BYTES];
    out[0] = '\0';
    if (!etag[0]) return;
    crypto_generichash(d, sizeof d, (const uint8_t *)etag, strlen(etag), NULL, 0);
    sodium_bin2hex(out, ENG_ETAG_TAG_TEXT, d, sizeof d);
}

/* The bytes of log/<seq>, hashed as they stream, up to max + 1 of them. */
typedef struct hasher {
    crypto_generichash_state h;
    uint64_t n, max;
} hasher;

static int hash_bytes(void *ctx, const void *buf, size_t len)
{
    hasher *x = ctx;
    x->n += len;
    if (x->n > x->max) return 1; /* longer than what was applied: not it, read no further */
    crypto_generichash_update(&x->h, buf, len);
    return 0;
}

/* *ret_same: the object at key is rec's (same length, same BLAKE2b-256). */
static ss_rc same_bytes(ss_folder *f, const char *key, const ss_state_applied *rec, int *ret_same,
                        ss_err *err)
{
    hasher x = {.max = rec->size};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_rc rc;
    *ret_same = 0;
    crypto_generichash_init(&x.h, NULL, 0, sizeof hash);
    rc = ss_store_get_stream(f->store, key, 0, SS_TO_END, hash_bytes, &x, err);
    if (rc == SS_ERR_IO && x.n > x.max) return SS_OK; /* cut short by hash_bytes */
    if (rc == SS_ERR_NOT_FOUND) return SS_OK;         /* gone since the listing: not it either */
    if (rc) return rc;
    crypto_generichash_final(&x.h, hash, sizeof hash);
    *ret_same = x.n == rec->size && !sodium_memcmp(hash, rec->hash, sizeof hash);
    return SS_OK;
}

static ss_rc fork_check(ss_folder *f, uint64_t wm, const ss_store_stat *st, ss_err *err)
{
    static const ss_store_stat unknown;
    char key[SS_KEY_NAME_MAX], tag[ENG_ETAG_TAG_TEXT];
    ss_state_applied rec;
    int found = 0, same = 0;
    ss_rc rc = ss_state_applied_get(f->state, &rec, &found, err);
    if (rc || !found || rec.seq != wm) return rc; /* nothing recorded for it: a checkpoint base */
    eng_etag_tag(st ? st->etag : "", tag);
    if (!st)
        st = &unknown; /* read it in any case */
    else if (!tag[0] && (!st->size || st->size == rec.size))
        return SS_OK; /* cannot tell */
    if (tag[0] && !strcmp(tag, rec.tag) && st->size == rec.size) return SS_OK;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, wm);
    rc = same_bytes(f, key, &rec, &same, err);
    if (rc) return rc;
    if (!same)
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "%s is not the transaction this device applied at sequence %" PRIu64
                       ": the store lost it and took another one there (a fork); nothing was "
                       "applied or written (README: \"A store fork\")",
                       key, wm);
    if (!tag[0]) return SS_OK;
    memcpy(rec.tag, tag, sizeof rec.tag); /* the same object, the store's ETag of it now */
    return ss_state_set_applied(f->state, &rec, err);
}

ss_rc eng_fork_check(ss_folder *f, uint64_t wm, const ss_store_stat *st, ss_err *err)
{
    ss_rc rc = fork_check(f, wm, st, err);
    if (rc == SS_OK) f->fork_checked = wm;
    return rc;
}

/* The first key a listing gives, and its stat. */
typedef struct first_key {
    char key[SS_KEY_NAME_MAX];
    ss_store_stat st;
} first_key;

static int take_first(void *ctx, const char *key, const ss_store_stat *st)
{
    first_key *k = ctx;
    snprintf(k->key, sizeof k->key, "%s", key);
    if (st) k->st = *st;
    return 1;
}

ss_rc eng_fork_check_now(ss_folder *f, uint64_t wm, ss_err *err)
{
    char after[SS_KEY_NAME_MAX], own[SS_KEY_NAME_MAX];
    first_key k = {.key = ""};
    ss_rc rc;
    uint64_t checked = f->fork_checked; /* good for the one push after the pull that set it */
    f->fork_checked = 0;
    /* The pull just before this push listed log/<wm> and checked it (sync): no second LIST. */
    if (!wm || checked == wm) return SS_OK;
    snprintf(after, sizeof after, SS_KEY_LOG_FMT, wm - 1);
    snprintf(own, sizeof own, SS_KEY_LOG_FMT, wm);
    rc = ss_store_list(f->store, SS_KEY_LOG_PREFIX, after, take_first, &k, err);
    /* log/<wm> gone (gc, or a rollback the next pull reports) is not this check's to judge. */
    if (rc || strcmp(k.key, own)) return rc;
    return eng_fork_check(f, wm, &k.st, err);
}

ss_rc eng_fork_explain(ss_folder *f, uint64_t wm, ss_rc rc, ss_err *err)
{
    ss_err fork = {{0}};
    if (rc != SS_ERR_INTEGRITY || eng_fork_check(f, wm, NULL, &fork) != SS_ERR_INTEGRITY) return rc;
    if (err) *err = fork;
    return rc;
}
