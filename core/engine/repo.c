/* repo: config and key files of a repository in a store (see repo.h). */
#include "repo.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "array.h"
#include "epoch.h"

struct ss_repo {
    ss_store *store; /* borrowed */
    ss_keys *keys;
    ss_config cfg;
    ss_keys **retired; /* keys replaced by ss_repo_add_epoch, still lent out: freed last */
    size_t n_retired, cap_retired;
};

const ss_keys *ss_repo_keys(const ss_repo *repo)
{
    return repo->keys;
}

const ss_config *ss_repo_config(const ss_repo *repo)
{
    return &repo->cfg;
}

ss_store *ss_repo_store(const ss_repo *repo)
{
    return repo->store;
}

void ss_repo_free(ss_repo *repo)
{
    if (!repo) return;
    ss_keys_free(repo->keys);
    for (size_t i = 0; i < repo->n_retired; i++)
        ss_keys_free(repo->retired[i]);
    free(repo->retired);
    free(repo);
}

ss_rc ss_repo_add_epoch(ss_repo *repo, uint32_t epoch, uint64_t start,
                        const uint8_t key[SS_EPOCH_KEY_BYTES], ss_err *err)
{
    ss_keys *next = NULL;
    ss_rc rc;
    if (epoch <= ss_keys_epoch(repo->keys)) { /* held: the same key and start, or a lie */
        rc = ss_keys_with_epoch(repo->keys, epoch, start, key, &next, err);
        ss_keys_free(next);
        return rc;
    }
    if (SS_ARRAY_GROW(repo->retired, repo->n_retired + 1, repo->cap_retired))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_keys_with_epoch(repo->keys, epoch, start, key, &next, err);
    if (rc) return rc;
    repo->retired[repo->n_retired++] = repo->keys;
    repo->keys = next;
    return SS_OK;
}

static ss_repo *new_repo(ss_store *store)
{
    ss_repo *repo = calloc(1, sizeof *repo);
    if (repo) repo->store = store;
    return repo;
}

/* lim: from the environment, at least the repository's floor (checked by the caller). */
static ss_rc put_keyfile(ss_repo *repo, const char *pass, size_t passlen, const ss_kdf_limits *lim,
                         const char *label, char ret_id[SS_KEYFILE_ID_HEX + 1], ss_err *err)
{
    uint8_t file[SS_KEYFILE_INFO_BYTES];
    char key[SS_KEY_NAME_MAX];
    uint64_t id;
    ss_rc rc;
    randombytes_buf(&id, sizeof id);
    rc = ss_keyfile_seal_info(repo->keys, pass, passlen, lim, (uint64_t)time(NULL), label, file,
                              err);
    if (rc) return rc;
    snprintf(key, sizeof key, SS_KEY_KEYFILE_FMT, id);
    rc = ss_store_put(repo->store, key, file, sizeof file, SS_PUT_CREATE_ONLY, err);
    if (rc) return rc;
    if (ret_id) snprintf(ret_id, SS_KEYFILE_ID_HEX + 1, "%016" PRIx64, id);
    return SS_OK;
}

ss_rc ss_repo_create(ss_store *store, const char *pass, size_t passlen, const char *label,
                     ss_repo **ret_repo, ss_err *err)
{
    ss_repo *repo = NULL;
    uint8_t cfg[SS_CONFIG_BYTES];
    ss_store_stat st;
    ss_kdf_limits lim;
    ss_rc rc;
    *ret_repo = NULL;
    rc = ss_kdf_limits_from_env(&lim, err);
    if (rc) return rc;
    rc = ss_store_head(store, SS_KEY_CONFIG, &st, err);
    if (rc == SS_OK) /* found */
        return ss_fail(err, SS_ERR_EXISTS, "%s already holds a repository", ss_store_url(store));
    if (rc != SS_ERR_NOT_FOUND) return rc;
    repo = new_repo(store);
    if (!repo) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_keys_generate(&repo->keys, err);
    if (rc) goto fail;
    ss_config_init(&repo->cfg, repo->keys, (uint64_t)time(NULL));
    /* The first key file's limits become the floor no later key file may go below. */
    repo->cfg.kdf_min = lim;
    /* Key file first: a config without a key would be a repository nobody can open. */
    rc = put_keyfile(repo, pass, passlen, &lim, label, NULL, err);
    if (rc) goto fail;
    rc = ss_config_encode(repo->keys, &repo->cfg, cfg, err);
    if (rc) goto fail;
    rc = ss_store_put(store, SS_KEY_CONFIG, cfg, sizeof cfg, SS_PUT_CREATE_ONLY, err);
    if (rc) goto fail;
    *ret_repo = repo;
    return SS_OK;
fail:
    if (rc == SS_ERR_EXISTS)
        ss_fail(err, rc, "%s: another device created a repository first", ss_store_url(store));
    ss_repo_free(repo);
    return rc;
}

/* Fetch config and parse it without verifying: its repository id opens the key files. */
static ss_rc fetch_config(ss_store *store, uint8_t **ret_buf, size_t *ret_len, ss_config *ret_cfg,
                          ss_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc = ss_store_get_max(store, SS_KEY_CONFIG, SS_CONFIG_READ_MAX, &buf, &len, err);
    *ret_buf = NULL;
    if (rc == SS_ERR_NOT_FOUND)
        return ss_fail(err, rc, "%s holds no repository (no config object)", ss_store_url(store));
    if (rc) return rc;
    rc = ss_config_parse_unverified(buf, len, ret_cfg, err);
    if (rc) {
        free(buf);
        return rc;
    }
    *ret_buf = buf;
    *ret_len = len;
    return SS_OK;
}

typedef struct key_names {
    char **v;
    size_t n, cap;
    int failed; /* out of memory, or more than SS_KEYFILES_MAX: the listing stopped */
} key_names;

static int collect_key(void *ctx, const char *key, const ss_store_stat *st)
{
    key_names *k = ctx;
    (void)st;
    if (k->n == SS_KEYFILES_MAX) return k->failed = 1;
    if (SS_ARRAY_GROW(k->v, k->n + 1, k->cap)) return k->failed = 1;
    k->v[k->n] = strdup(key);
    if (!k->v[k->n]) return k->failed = 1;
    k->n++;
    return 0;
}

/*
 * The key files of the store under prefix (keys/, or retired/), at most
 * SS_KEYFILES_MAX of them (docs/FORMAT.md "Bounded reads").
 */
static ss_rc list_prefix(ss_store *store, const char *prefix, key_names *names, ss_err *err)
{
    ss_rc rc = ss_store_list(store, prefix, NULL, collect_key, names, err);
    if (rc || !names->failed) return rc;
    if (names->n < SS_KEYFILES_MAX) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    return ss_fail(err, SS_ERR_INTEGRITY,
                   "%s lists more than %u key files, the most a reader takes", ss_store_url(store),
                   SS_KEYFILES_MAX);
}

static ss_rc list_keys(ss_store *store, key_names *names, ss_err *err)
{
    return list_prefix(store, SS_KEY_KEYS_PREFIX, names, err);
}

static void free_names(key_names *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
}

ss_rc ss_repo_epoch_object(ss_store *store, uint32_t epoch, uint8_t **ret_buf, size_t *ret_len,
                           ss_err *err)
{
    char name[SS_KEY_NAME_MAX];
    void *buf = NULL;
    ss_rc rc;
    *ret_buf = NULL;
    snprintf(name, sizeof name, SS_KEY_EPOCH_FMT, epoch);
    rc = ss_store_get_max(store, name, SS_EPOCH_READ_MAX, &buf, ret_len, err);
    if (rc == SS_ERR_NOT_FOUND)
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "%s is missing: key epoch %" PRIu32 " began, but the store has no key for it",
                     name, epoch);
    if (rc) return rc;
    *ret_buf = buf;
    return SS_OK;
}

ss_rc ss_repo_unlink_down(ss_store *store, const uint8_t repo_id[SS_REPO_ID_BYTES], uint32_t low,
                          uint32_t top, ss_epoch_secret *chain, ss_err *err)
{
    for (uint32_t e = top; e > low; e--) {
        ss_epoch_secret *at = &chain[e - low], *below = at - 1;
        uint8_t *obj = NULL;
        size_t len = 0;
        ss_rc rc = ss_repo_epoch_object(store, e, &obj, &len, err);
        if (rc) return rc;
        below->epoch = e - 1;
        rc = ss_epoch_link_open(obj, len, e, repo_id, at->key, below->key, &below->start, err);
        free(obj);
        if (rc) return rc;
    }
    return SS_OK;
}

/*
 * The keys of a key file of epoch sec->epoch: the links of epochs/ walked
 * back to the master key, then every epoch added again from 1 on (E3).
 */
static ss_rc keys_of_secret(ss_store *store, const uint8_t *repo_id, const ss_epoch_secret *sec,
                            ss_keys **ret_keys, ss_err *err)
{
    uint32_t n = sec->epoch;
    ss_epoch_secret *chain = NULL; /* chain[e]: epoch e's key and start */
    ss_keys *keys = NULL, *next = NULL;
    ss_rc rc;
    *ret_keys = NULL;
    chain = sodium_allocarray((size_t)n + 1, sizeof *chain);
    if (!chain) return ss_fail(err, SS_ERR_NOMEM, "out of secure memory");
    chain[n] = *sec;
    rc = ss_repo_unlink_down(store, repo_id, 0, n, chain, err);
    if (rc) goto fail;
    rc = ss_keys_from_master(chain[0].key, repo_id, &keys, err);
    if (rc) goto fail;
    for (uint32_t e = 1; e <= n; e++) {
        rc = ss_keys_with_epoch(keys, e, chain[e].start, chain[e].key, &next, err);
        if (rc) goto fail;
        ss_keys_free(keys);
        keys = next;
    }
    *ret_keys = keys;
    keys = NULL;
fail:
    ss_keys_free(keys);
    sodium_free(chain);
    return rc;
}

/* The keys the key file buf opens to with pass, and its KDF limits. */
static ss_rc open_keyfile(ss_store *store, const void *buf, size_t len, const uint8_t *repo_id,
                          const char *pass, size_t passlen, ss_keys **ret_keys,
                          ss_kdf_limits *ret_limits, ss_err *err)
{
    ss_epoch_secret *sec = NULL;
    ss_rc rc = ss_keyfile_open_epoch(buf, len, repo_id, pass, passlen, &sec, err);
    if (rc) return rc;
    rc = keys_of_secret(store, repo_id, sec, ret_keys, err);
    ss_epoch_secret_free(sec);
    if (rc) return rc;
    return ss_keyfile_limits(buf, len, ret_limits, err);
}

/* *ret_limits, *ret_name: the limits and key of the file that opened. */
static ss_rc try_keyfiles(ss_store *store, const key_names *names, const uint8_t *repo_id,
                          const char *pass, size_t passlen, ss_keys **ret_keys,
                          ss_kdf_limits *ret_limits, const char **ret_name, ss_err *err)
{
    ss_rc rc = SS_ERR_PASSPHRASE;
    for (size_t i = 0; i < names->n && rc == SS_ERR_PASSPHRASE; i++) {
        void *buf = NULL;
        size_t len = 0;
        ss_err e = {{0}};
        rc = ss_store_get_max(store, names->v[i], SS_KEYFILE_READ_MAX, &buf, &len, err);
        if (rc) return rc;
        rc = open_keyfile(store, buf, len, repo_id, pass, passlen, ret_keys, ret_limits, &e);
        *ret_name = names->v[i];
        free(buf);
        if (rc && rc != SS_ERR_PASSPHRASE) return ss_fail(err, rc, "%s: %s", names->v[i], e.msg);
    }
    if (rc == SS_ERR_PASSPHRASE)
        ss_fail(err, rc, "wrong passphrase: none of the %zu key files of %s opens with it",
                names->n, ss_store_url(store));
    return rc;
}

/*
 * No key file opens with pass: if a retired one does, err says so and when
 * (a key file of epoch E was retired as epoch E + 1 began). Best effort.
 */
static void retired_says(ss_store *store, const uint8_t *repo_id, const char *pass, size_t passlen,
                         ss_err *err)
{
    key_names names = {0};
    ss_err ignored;
    if (list_prefix(store, SS_KEY_RETIRED_PREFIX, &names, &ignored)) goto done;
    for (size_t i = 0; i < names.n; i++) {
        void *buf = NULL;
        size_t len = 0;
        ss_epoch_secret *sec = NULL;
        if (ss_store_get_max(store, names.v[i], SS_KEYFILE_READ_MAX, &buf, &len, &ignored))
            continue;
        if (!ss_keyfile_open_epoch(buf, len, repo_id, pass, passlen, &sec, &ignored))
            ss_fail(err, SS_ERR_PASSPHRASE,
                    "this passphrase was retired when key epoch %" PRIu32 " began (a device was "
                    "revoked, or the key rotated): ask someone who holds the current one",
                    sec->epoch + 1);
        ss_epoch_secret_free(sec);
        free(buf);
        if (sec) break;
    }
done:
    free_names(&names);
}

ss_rc ss_repo_join(ss_store *store, const char *pass, size_t passlen, ss_repo **ret_repo,
                   ss_err *err)
{
    ss_repo *repo = NULL;
    uint8_t *cfgbuf = NULL;
    size_t cfglen = 0;
    key_names names = {0};
    ss_kdf_limits lim;
    const char *opened = NULL;
    ss_rc rc;
    *ret_repo = NULL;
    repo = new_repo(store);
    if (!repo) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = fetch_config(store, &cfgbuf, &cfglen, &repo->cfg, err);
    if (rc) goto fail;
    rc = list_keys(store, &names, err);
    if (rc) goto fail;
    if (!names.n) {
        rc =
            ss_fail(err, SS_ERR_INTEGRITY, "%s has a config but no key files", ss_store_url(store));
        goto fail;
    }
    /* The floor is only trusted once config's MAC verified, so it is checked after the KDF. */
    rc = try_keyfiles(store, &names, repo->cfg.repo_id, pass, passlen, &repo->keys, &lim, &opened,
                      err);
    if (rc == SS_ERR_PASSPHRASE) retired_says(store, repo->cfg.repo_id, pass, passlen, err);
    if (rc) goto fail;
    rc = ss_config_open(repo->keys, cfgbuf, cfglen, &repo->cfg, err);
    if (rc) goto fail;
    rc = ss_config_check_kdf(&repo->cfg, &lim, opened, err);
    if (rc) goto fail;
    free(cfgbuf);
    free_names(&names);
    *ret_repo = repo;
    return SS_OK;
fail:
    free(cfgbuf);
    free_names(&names);
    ss_repo_free(repo);
    return rc;
}

ss_rc ss_repo_open_master(ss_store *store, const uint8_t master[SS_MASTER_KEY_BYTES],
                          const uint8_t *cfg, size_t cfg_len, ss_repo **ret_repo, ss_err *err)
{
    ss_repo *repo = NULL;
    uint8_t *cfgbuf = NULL;
    size_t cfglen = 0;
    ss_rc rc;
    *ret_repo = NULL;
    repo = new_repo(store);
    if (!repo) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (cfg) {
        rc = ss_config_parse_unverified(cfg, cfg_len, &repo->cfg, err);
    } else {
        rc = fetch_config(store, &cfgbuf, &cfglen, &repo->cfg, err);
        cfg = cfgbuf;
        cfg_len = cfglen;
    }
    if (rc) goto fail;
    rc = ss_keys_from_master(master, repo->cfg.repo_id, &repo->keys, err);
    if (rc) goto fail;
    rc = ss_config_open(repo->keys, cfg, cfg_len, &repo->cfg, err);
    if (rc) goto fail;
    free(cfgbuf);
    *ret_repo = repo;
    return SS_OK;
fail:
    free(cfgbuf);
    ss_repo_free(repo);
    return rc;
}

ss_rc ss_repo_key_add(ss_repo *repo, const char *pass, size_t passlen, const char *label,
                      char ret_id[SS_KEYFILE_ID_HEX + 1], ss_err *err)
{
    ss_kdf_limits lim;
    ss_rc rc;
    ret_id[0] = '\0';
    rc = ss_kdf_limits_from_env(&lim, err);
    if (rc) return rc;
    if (ss_config_check_kdf(&repo->cfg, &lim, "the new key file", err))
        return ss_fail(err, SS_ERR_INVALID,
                       "%s=%s is weaker than this repository's KDF minimum (opslimit %llu, "
                       "memlimit %llu): choose a stronger setting",
                       SS_KDF_ENV, getenv(SS_KDF_ENV) ? getenv(SS_KDF_ENV) : "",
                       (unsigned long long)repo->cfg.kdf_min.opslimit,
                       (unsigned long long)repo->cfg.kdf_min.memlimit);
    /* One more than readers take would lock every joining device out. */
    key_names names = {0};
    rc = list_keys(repo->store, &names, err);
    size_t n = names.n;
    free_names(&names);
    if (rc) return rc;
    if (n >= SS_KEYFILES_MAX)
        return ss_fail(err, SS_ERR_INVALID,
                       "%s holds %zu key files, the most a reader takes: remove one first",
                       ss_store_url(repo->store), n);
    return put_keyfile(repo, pass, passlen, &lim, label, ret_id, err);
}

void ss_repo_fingerprint(const ss_repo *repo, char out[SS_FINGERPRINT_TEXT])
{
    uint8_t fp[SS_FINGERPRINT_BYTES];
    ss_keys_fingerprint(repo->keys, fp);
    ss_fingerprint_text(fp, out);
}

ss_rc ss_repo_check_fingerprint(const ss_repo *repo, const char *expected, ss_err *err)
{
    uint8_t want[SS_FINGERPRINT_BYTES], have[SS_FINGERPRINT_BYTES];
    char text[SS_FINGERPRINT_TEXT];
    ss_rc rc = ss_fingerprint_parse(expected, want, err);
    if (rc) return rc;
    ss_keys_fingerprint(repo->keys, have);
    if (!sodium_memcmp(want, have, sizeof have)) return SS_OK;
    ss_fingerprint_text(have, text);
    return ss_fail(err, SS_ERR_INTEGRITY,
                   "%s holds a repository with fingerprint %s, not the expected %s: refusing "
                   "to join (the store may have swapped in a repository of its own)",
                   ss_store_url(repo->store), text, expected);
}

/* One key file's id, time and label; a trailer that does not open is refused naming the file. */
static ss_rc key_info(ss_repo *repo, const char *name, ss_keyfile_info *info, ss_err *err)
{
    void *buf = NULL;
    size_t len = 0;
    ss_err e = {{0}};
    ss_rc rc = ss_store_get_max(repo->store, name, SS_KEYFILE_READ_MAX, &buf, &len, err);
    if (rc) return rc;
    rc = ss_keyfile_info_open(repo->keys, buf, len, info, &e);
    free(buf);
    if (rc) return ss_fail(err, rc, "%s: %s", name, e.msg);
    return SS_OK;
}

ss_rc ss_repo_key_list(ss_repo *repo, ss_repo_key_fn fn, void *ctx, ss_err *err)
{
    key_names names = {0};
    ss_keyfile_info *info = NULL;
    ss_rc rc = list_keys(repo->store, &names, err);
    if (rc) goto done;
    info = calloc(names.n ? names.n : 1, sizeof *info);
    if (!info) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* Every trailer verified before the first line: a refused listing prints nothing. */
    for (size_t i = 0; i < names.n; i++) {
        rc = key_info(repo, names.v[i], &info[i], err);
        if (rc) goto done;
    }
    for (size_t i = 0; i < names.n; i++) {
        ss_key_info k = {names.v[i] + strlen(SS_KEY_KEYS_PREFIX), info[i].created,
                         info[i].present ? info[i].label : NULL};
        if (fn(ctx, &k)) break;
    }
done:
    free(info);
    free_names(&names);
    return rc;
}

ss_rc ss_repo_key_remove(ss_repo *repo, const char *id, ss_err *err)
{
    key_names names = {0};
    char key[SS_KEY_NAME_MAX];
    size_t found = 0;
    ss_rc rc = list_keys(repo->store, &names, err);
    if (rc) goto done;
    snprintf(key, sizeof key, SS_KEY_KEYS_PREFIX "%s", id);
    for (size_t i = 0; i < names.n; i++)
        found += !strcmp(names.v[i], key);
    if (!found) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "no key file %s (s3sync key list shows them)", id);
        goto done;
    }
    if (names.n < 2) {
        rc = ss_fail(err, SS_ERR_INVALID, "refusing to remove %s: it is the last key file", id);
        goto done;
    }
    rc = ss_store_delete(repo->store, key, err);
done:
    free_names(&names);
    return rc;
}

/*
 * keys/<id> moved to retired/<id>: its passphrase opens nothing current,
 * but a device joining with it is told it was retired rather than wrong.
 */
static ss_rc retire(ss_store *store, const char *key, ss_err *err)
{
    char to[SS_KEY_NAME_MAX];
    void *buf = NULL;
    size_t len = 0;
    ss_rc rc = ss_store_get_max(store, key, SS_KEYFILE_READ_MAX, &buf, &len, err);
    if (rc) return rc;
    snprintf(to, sizeof to, SS_KEY_RETIRED_PREFIX "%s", key + strlen(SS_KEY_KEYS_PREFIX));
    rc = ss_store_put(store, to, buf, len, 0, err);
    free(buf);
    if (rc) return rc;
    return ss_store_delete(store, key, err);
}

ss_rc ss_repo_key_retire_others(ss_repo *repo, const char *keep_id, ss_err *err)
{
    key_names names = {0};
    char keep[SS_KEY_NAME_MAX];
    ss_rc rc = list_keys(repo->store, &names, err);
    if (rc) goto done;
    snprintf(keep, sizeof keep, SS_KEY_KEYS_PREFIX "%s", keep_id);
    for (size_t i = 0; i < names.n && !rc; i++)
        if (strcmp(names.v[i], keep)) rc = retire(repo->store, names.v[i], err);
done:
    free_names(&names);
    return rc;
}
