/*
 * settings: the folder's settings, .s3sync/config ("key = value" lines),
 * private to commands/: the keys `s3sync config` knows and what each value
 * must look like, reading and editing the text, the S3 settings a folder
 * lends its store, and the check that a new store holds the same
 * repository. folder.c opens folders with them and sets one under the
 * folder's lock.
 */
#ifndef SS_SETTINGS_H
#define SS_SETTINGS_H

#include <stddef.h>

#include "engine.h"

#define SETTINGS_FILE "config"
#define REPO_CONFIG_FILE "repo.config" /* the store's config object, cached at join */

enum {
    K_STORE,
    K_URL,
    K_WORD,
    K_PATH,
    K_NAME,
    K_COUNT,
    K_BOOL,
    K_FIXED,
    K_PRICE,
    K_PEERS,
    K_LISTEN,
    K_DISCOVERY
};

typedef struct settings_key {
    ss_setting_info info;
    int kind;
} settings_key;

/* The known key named key, or NULL (SS_ERR_INVALID in err, naming the known ones). */
const settings_key *settings_find_key(const char *key, ss_err *err);

/* NULL when value suits k, else what it should look like. */
const char *settings_bad_value(const settings_key *k, const char *v);

/* The whole of the file at path, malloc'ed; SS_ERR_NOT_FOUND when there is none. */
ss_rc settings_read_file(const char *path, char **ret, size_t *ret_len, ss_err *err);

/* The settings text of the folder at dir; SS_ERR_NOT_FOUND: not a synced folder. */
ss_rc settings_read(const char *dir, char **ret_text, ss_err *err);

/* text with key's line replaced by "key = value" (or dropped when value is NULL); NULL: no memory.
 */
char *settings_edit(const char *text, const char *key, const char *value);

/*
 * The folder's S3 settings under the command line's: so->field is set only
 * when the command line left it NULL. fso holds the strings; token_file is
 * relative to root.
 */
typedef struct settings_store_opts {
    char endpoint[1024], region[128], profile[256], token[4096], token_path[8192];
} settings_store_opts;

void settings_apply_store(const char *text, const char *root, ss_store_opts *so,
                          settings_store_opts *fso);

/* SS_ERR_CONFLICT unless the store at url holds the repository f joined (store_opts may be NULL).
 */
ss_rc settings_check_same_repo(ss_folder *f, const char *settings, const char *url,
                               const ss_store_opts *store_opts, ss_err *err);

#endif
