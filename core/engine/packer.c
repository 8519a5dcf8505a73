/*
 * packer: the data/ packs of one push (engine.h, "packer"). Owns the
 * push's pack table (every pack a chunk of it lies in, new or old, and
 * whether an op references it) and the pack being filled.
 *
 * A chunk the state knows is referenced where it lies. A new one is sealed
 * into the current pack and recorded in the state at once, so a repeat
 * within the same push is referenced, not sealed again. A pack goes out
 * (create-only, through the push's xfer, in parallel with the scan) once
 * it holds about PACK_TARGET bytes, padded with random bytes to its size
 * bucket (FORMAT.md "Size padding"), like ciphertext.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "engine.h"
#include "fault.h"
#include "pad.h"
#include "seal.h"

#define PACK_TARGET ENG_PACK_TARGET
#define PACK_RESERVE (PACK_TARGET + (2u << 20)) /* room a new pack starts with */

typedef struct pack {
    char *key;    /* data/<seq>-<random> */
    uint8_t used; /* referenced by a spooled op (a file read but unchanged is not) */
} pack;

struct eng_packer {
    ss_folder *f;
    ss_xfer *xfer; /* borrowed: the push's */
    uint64_t seq;
    pack *v; /* the pack table */
    size_t n, cap;
    uint8_t *cur; /* the pack being filled, sealed chunks back to back */
    size_t len, cur_cap;
    uint32_t index; /* the current pack's in the table; UINT32_MAX when none */
};

ss_rc eng_packer_new(ss_folder *f, ss_xfer *xfer, uint64_t seq, eng_packer **ret_packer,
                     ss_err *err)
{
    eng_packer *pk = calloc(1, sizeof *pk);
    *ret_packer = NULL;
    if (!pk) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    pk->f = f;
    pk->xfer = xfer;
    pk->seq = seq;
    pk->index = UINT32_MAX;
    *ret_packer = pk;
    return SS_OK;
}

void eng_packer_free(eng_packer *pk)
{
    if (!pk) return;
    free(pk->cur);
    for (size_t i = 0; i < pk->n; i++)
        free(pk->v[i].key);
    free(pk->v);
    free(pk);
}

uint32_t eng_packer_count(const eng_packer *pk)
{
    return (uint32_t)pk->n;
}

const char *eng_packer_key(const eng_packer *pk, uint32_t i)
{
    return pk->v[i].key;
}

int eng_packer_used(const eng_packer *pk, uint32_t i)
{
    return pk->v[i].used;
}

void eng_packer_use(eng_packer *pk, uint32_t i)
{
    pk->v[i].used = 1;
}

/* The index of the pack named key in the table, added when not there yet. */
static ss_rc pack_index(eng_packer *pk, const char *key, uint32_t *ret, ss_err *err)
{
    for (size_t i = pk->n; i-- > 0;)
        if (!strcmp(pk->v[i].key, key)) {
            *ret = (uint32_t)i;
            return SS_OK;
        }
    if (SS_ARRAY_GROW(pk->v, pk->n + 1, pk->cap))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    pk->v[pk->n].key = strdup(key);
    if (!pk->v[pk->n].key) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    pk->v[pk->n].used = 0;
    *ret = (uint32_t)pk->n++;
    return SS_OK;
}

static void upload_done(void *ctx, ss_rc rc, const ss_err *err)
{
    (void)rc;
    (void)err;
    free(ctx); /* the pack's bytes; failures are collected by ss_xfer_wait */
}

ss_rc eng_packer_flush(eng_packer *pk, ss_err *err)
{
    ss_rc rc;
    if (!pk->len) return SS_OK;
    /* Filler to the pack's size bucket (FORMAT.md "Size padding"): random, like ciphertext. */
    size_t padded = (size_t)ss_pad_size(pk->len - 1);
    if (SS_ARRAY_GROW(pk->cur, padded, pk->cur_cap))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    randombytes_buf(pk->cur + pk->len, padded - pk->len);
    pk->len = padded;
    ss_fault_point("push.pack");
    rc = ss_xfer_put(pk->xfer, pk->v[pk->index].key, pk->cur, pk->len, SS_PUT_CREATE_ONLY,
                     upload_done, pk->cur);
    pk->cur = NULL; /* the upload owns it, even when refused */
    pk->len = pk->cur_cap = 0;
    pk->index = UINT32_MAX;
    if (rc) return ss_fail(err, rc, "upload: out of memory");
    return SS_OK;
}

static ss_rc new_pack(eng_packer *pk, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint64_t rnd;
    randombytes_buf(&rnd, sizeof rnd);
    snprintf(key, sizeof key, SS_KEY_DATA_FMT, pk->seq, rnd);
    return pack_index(pk, key, &pk->index, err);
}

/* Seal a new chunk into the current pack; *ret gets its reference. */
static ss_rc pack_chunk(eng_packer *pk, const uint8_t *data, size_t len,
                        const uint8_t id[SS_CHUNK_ID_LEN], ss_chunk_ref *ret, ss_err *err)
{
    const ss_config *cfg = ss_repo_config(pk->f->repo);
    void *sealed = NULL;
    size_t slen = 0;
    ss_chunk_loc loc;
    const ss_keys *keys = ss_repo_keys(pk->f->repo);
    ss_rc rc = ss_chunk_seal(keys, ss_keys_epoch_at(keys, pk->seq), id, data, len, 1,
                             cfg->zstd_level, &sealed, &slen, err);
    if (rc) return rc;
    if (pk->index == UINT32_MAX) {
        rc = new_pack(pk, err);
        if (rc) goto out;
    }
    size_t want = pk->len + slen;
    if (want < PACK_RESERVE) want = PACK_RESERVE; /* a new pack starts with room for most of it */
    if (SS_ARRAY_GROW(pk->cur, want, pk->cur_cap)) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    *ret = (ss_chunk_ref){.pack = pk->index,
                          .offset = pk->len,
                          .sealed_len = (uint32_t)slen,
                          .plain_len = (uint32_t)len};
    memcpy(ret->id, id, SS_CHUNK_ID_LEN);
    memcpy(pk->cur + pk->len, sealed, slen);
    pk->len += slen;
    /* Known from now on, so a repeat within this push is referenced, not sealed again. */
    snprintf(loc.pack, sizeof loc.pack, "%s", pk->v[pk->index].key);
    loc.off = ret->offset;
    loc.sealed_len = ret->sealed_len;
    loc.plain_len = ret->plain_len;
    rc = ss_state_chunk_add(pk->f->state, id, &loc, err);
    if (rc) goto out;
    if (pk->len >= PACK_TARGET) rc = eng_packer_flush(pk, err);
out:
    free(sealed);
    return rc;
}

ss_rc eng_packer_add(eng_packer *pk, const uint8_t *data, size_t len,
                     const uint8_t id[SS_CHUNK_ID_LEN], ss_chunk_ref *ret_ref, ss_err *err)
{
    ss_chunk_loc loc;
    ss_chunk_ref r;
    int found;
    ss_rc rc;
    memset(ret_ref, 0, sizeof *ret_ref);
    rc = ss_state_chunk_find(pk->f->state, id, &loc, &found, err);
    if (rc) return rc;
    if (!found) {
        rc = pack_chunk(pk, data, len, id, &r, err);
        if (rc) return rc;
        *ret_ref = r;
        return SS_OK;
    }
    r = (ss_chunk_ref){.offset = loc.off, .sealed_len = loc.sealed_len, .plain_len = loc.plain_len};
    memcpy(r.id, id, SS_CHUNK_ID_LEN);
    rc = pack_index(pk, loc.pack, &r.pack, err);
    if (rc) return rc;
    *ret_ref = r;
    return SS_OK;
}
