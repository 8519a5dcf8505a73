/*
 * repo: a repository in a store: its config, its key files, and the keys
 * that open it. Creating writes config and the first key file create-only;
 * joining tries a passphrase against every key file and writes nothing;
 * a device that already joined opens it with the master key it kept.
 * The store is borrowed: the caller frees it after the repo. Key file
 * management and the fingerprint are public (s3sync.h).
 */
#ifndef SS_REPO_H
#define SS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "s3sync.h"

/* SS_ERR_EXISTS when the store already holds a repository. label: the first key file's. */
ss_rc ss_repo_create(ss_store *store, const char *pass, size_t passlen, const char *label,
                     ss_repo **ret_repo, ss_err *err);
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

/*
 * Borrowed; valid until ss_repo_free, even after ss_repo_add_epoch replaced
 * them (a reader may still hold them).
 */
const ss_keys *ss_repo_keys(const ss_repo *repo);
/*
 * The keys from now on also hold key epoch epoch (ss_keys_with_epoch's
 * rules). An epoch held already with this key and start: nothing changes.
 */
ss_rc ss_repo_add_epoch(ss_repo *repo, uint32_t epoch, uint64_t start,
                        const uint8_t key[SS_EPOCH_KEY_BYTES], ss_err *err);
const ss_config *ss_repo_config(const ss_repo *repo);
ss_store *ss_repo_store(const ss_repo *repo);

/*
 * epochs/<epoch> whole, at most SS_EPOCH_READ_MAX bytes; a missing one is
 * SS_ERR_INTEGRITY naming it (whoever asks knows the epoch began).
 * *ret_buf is malloc'ed, the caller's.
 */
ss_rc ss_repo_epoch_object(ss_store *store, uint32_t epoch, uint8_t **ret_buf, size_t *ret_len,
                           ss_err *err);
/*
 * The links of epochs/<top> .. epochs/<low + 1> opened one after the other:
 * chain[i] is epoch low + i; chain[top - low] holds epoch top's key, and
 * the rest is filled down to chain[0] (epoch low's key and start).
 */
ss_rc ss_repo_unlink_down(ss_store *store, const uint8_t repo_id[SS_REPO_ID_BYTES], uint32_t low,
                          uint32_t top, ss_epoch_secret *chain, ss_err *err);

/*
 * Every key file but keys/<keep_id> moved to retired/: the passphrases of
 * older key epochs are retired (joining with one says so).
 */
ss_rc ss_repo_key_retire_others(ss_repo *repo, const char *keep_id, ss_err *err);

/* SS_ERR_INTEGRITY naming both fingerprints when expected (text form) is not repo's. */
ss_rc ss_repo_check_fingerprint(const ss_repo *repo, const char *expected, ss_err *err);

#endif
