/*
 * repo: a repository in a store: its config, its key files, and the keys
 * that open it. Creating writes config and the first key file create-only;
 * joining tries a passphrase against every key file and writes nothing;
 * a device that already joined opens it with the master key it kept.
 * The store is borrowed: the caller frees it after the repo.
 */
#ifndef SS_REPO_H
#define SS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "s3store.h"

typedef struct ss_repo ss_repo;

/* SS_ERR_EXISTS when the store already holds a repository. */
ss_rc ss_repo_create(ss_store *store, const char *pass, size_t passlen, ss_repo **ret_repo,
                     ss_err *err);
/* SS_ERR_NOT_FOUND when there is no repository; SS_ERR_PASSPHRASE when no key file opens. */
ss_rc ss_repo_join(ss_store *store, const char *pass, size_t passlen, ss_repo **ret_repo,
                   ss_err *err);
/*
 * Open with the master key a device kept. cfg, when not NULL, is the config
 * object's bytes the device cached at join (verified here all the same), so
 * opening costs no request.
 */
ss_rc ss_repo_open_master(ss_store *store, const uint8_t master[SS_MASTER_KEY_BYTES],
                          const uint8_t *cfg, size_t cfg_len, ss_repo **ret_repo, ss_err *err);
void ss_repo_free(ss_repo *repo); /* NULL safe; wipes the keys */

const ss_keys *ss_repo_keys(const ss_repo *repo);
const ss_config *ss_repo_config(const ss_repo *repo);
ss_store *ss_repo_store(const ss_repo *repo);

/*
 * Seal the master key under another passphrase; ret_id gets the key file id
 * (16 hex). Limits from $S3SYNC_KDF, refused (SS_ERR_INVALID) below config's floor.
 */
ss_rc ss_repo_key_add(ss_repo *repo, const char *pass, size_t passlen, char ret_id[17],
                      ss_err *err);
typedef int (*ss_repo_key_fn)(void *ctx, const char *id);
ss_rc ss_repo_key_list(ss_repo *repo, ss_repo_key_fn fn, void *ctx, ss_err *err);
/* The fingerprint (FORMAT.md "Repository fingerprint") as text. */
void ss_repo_fingerprint(const ss_repo *repo, char out[SS_FINGERPRINT_TEXT]);
/* SS_ERR_INTEGRITY naming both fingerprints when expected (text form) is not repo's. */
ss_rc ss_repo_check_fingerprint(const ss_repo *repo, const char *expected, ss_err *err);
/* Never removes the last key file (SS_ERR_INVALID). */
ss_rc ss_repo_key_remove(ss_repo *repo, const char *id, ss_err *err);

#endif
