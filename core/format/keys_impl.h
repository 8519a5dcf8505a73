/*
 * keys_impl: what keys.c and keyfile.c share, private to them: the layout
 * of ss_keys and the helpers both use.
 */
#ifndef SS_KEYS_IMPL_H
#define SS_KEYS_IMPL_H

#include "keys.h"

/* One key epoch held: K_E, where it begins, and the content subkeys of its objects. */
typedef struct epoch_slot {
    uint64_t start; /* first sequence written under it */
    uint8_t key[SS_EPOCH_KEY_BYTES];
    uint8_t object[SS_SUBKEY_BYTES];
    uint8_t chunk[SS_SUBKEY_BYTES];
} epoch_slot;

struct ss_keys {
    uint8_t master[SS_MASTER_KEY_BYTES];
    uint8_t subkeys[SS_SUBKEY_COUNT][SS_SUBKEY_BYTES];
    uint8_t repo_id[SS_REPO_ID_BYTES];
    uint32_t n_epochs;   /* epochs 0 .. n_epochs - 1, always contiguous */
    epoch_slot epochs[]; /* epochs[0]: the master key, from sequence 1 */
};

/* master NULL: a random one drawn in place (it never exists outside the guarded page). */
ss_rc ss_keys_build(const uint8_t *master, const uint8_t *repo_id, ss_keys **ret_keys, ss_err *err);
/* The one-line error for a format version this s3sync does not read. */
ss_rc ss_keys_version_fail(ss_err *err, ss_rc rc, const char *what, unsigned version);
int ss_keys_all_zero(const uint8_t *p, size_t n);

/* KDF limits below the floor a repository may set, or above what a reader runs. */
static inline int ss_kdf_limits_weak(uint64_t ops, uint64_t mem)
{
    return ops < SS_KDF_OPSLIMIT_MIN || mem < SS_KDF_MEMLIMIT_MIN;
}

static inline int ss_kdf_limits_huge(uint64_t ops, uint64_t mem)
{
    return ops > SS_KDF_OPSLIMIT_MAX || mem > SS_KDF_MEMLIMIT_MAX;
}

#endif
