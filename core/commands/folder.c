/*
 * folder: a synced folder's lifecycle: DIR/.s3sync/ (settings, master key,
 * state, lock), init (create or join the repository) and open.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "path.h"
#include "settings.h"

#define MASTER_FILE "master.key"

void ss_stats_clear(ss_stats *s)
{
    for (size_t i = 0; i < s->n_conflicts; i++)
        free(s->conflicts[i]);
    free(s->conflicts);
    free(s->peers);
    memset(s, 0, sizeof *s);
}

struct ss_repo *ss_folder_repo(ss_folder *f)
{
    return f->repo;
}

void ss_folder_store_stats(ss_folder *f, ss_stats *stats)
{
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
}

void ss_folder_free(ss_folder *f)
{
    if (!f) return;
    eng_usage_record(f); /* for s3sync cost */
    eng_peers_detach(f);
    ss_state_free(f->state);
    ss_repo_free(f->repo);
    ss_store_free(f->store);
    ss_chunker_free(f->chunker);
    ss_ignore_free(f->ign);
    ss_device_key_free(f->key);
    ss_devices_free(f->devices);
    eng_epoch_pending_clear(f);
    if (f->root_fd >= 0) close(f->root_fd);
    if (f->lock_fd >= 0) close(f->lock_fd); /* drops the lock */
    free(f->root);
    free(f->meta);
    free(f->settings);
    free(f);
}

/*
 * The bits of a mode from the store this device never applies: setuid,
 * setgid and sticky, and the group and world write bits its umask masks,
 * unless preserve_modes (as tar and rsync treat a user who is not root).
 */
static uint32_t mode_mask(int preserve)
{
    mode_t um = umask(0); /* read, then put back: the process makes no files meanwhile */
    umask(um);
    return 07000 | (preserve ? 0 : (uint32_t)(um & 022));
}

static ss_rc new_folder(const char *dir, const ss_hooks *hooks, ss_folder **ret, ss_err *err)
{
    ss_folder *f = calloc(1, sizeof *f);
    char abs[PATH_MAX];
    *ret = NULL;
    if (!f) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    f->root_fd = f->lock_fd = -1;
    f->mode_mask = mode_mask(0);
    if (hooks) f->hooks = *hooks;
    if (!realpath(dir, abs)) {
        free(f);
        return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "folder %s: %s", dir,
                       strerror(errno));
    }
    f->root = strdup(abs);
    if (!f->root || asprintf(&f->meta, "%s/.s3sync", abs) < 0) {
        f->meta = NULL;
        ss_folder_free(f);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    f->root_fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->root_fd < 0) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "folder %s: %s", abs, strerror(errno));
        ss_folder_free(f);
        return rc;
    }
    *ret = f;
    return SS_OK;
}

/* One command at a time per folder; a second waits briefly, then gives up (exit 75). */
static ss_rc take_lock(ss_folder *f, ss_err *err)
{
    char *path = NULL;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (asprintf(&path, "%s/lock", f->meta) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    f->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    if (f->lock_fd < 0)
        return ss_fail(err, SS_ERR_IO, "lock %s/lock: %s", f->meta, strerror(errno));
    for (int i = 0; i < 300; i++) { /* 30 s */
        if (!fcntl(f->lock_fd, F_OFD_SETLK, &fl)) {
            eng_stage_clean(f); /* ours now: what a killed pull staged goes */
            return SS_OK;
        }
        if (errno != EAGAIN && errno != EACCES)
            return ss_fail(err, SS_ERR_IO, "lock %s/lock: %s", f->meta, strerror(errno));
        usleep(100000);
    }
    return ss_fail(err, SS_ERR_TEMPORARY, "%s is busy: another s3sync command runs on it", f->root);
}

static void default_device_name(char *out, size_t cap)
{
    if (gethostname(out, cap) || !out[0]) snprintf(out, cap, "device");
    out[cap - 1] = '\0';
    for (char *p = out; *p; p++) /* it ends up in file names of conflict copies */
        if (*p == '/' || *p == ' ' || *p == '.') *p = '-';
}

ss_rc ss_folder_set_setting(const char *dir, const char *key, const char *value,
                            const ss_store_opts *store_opts, ss_err *err)
{
    const settings_key *k = settings_find_key(key, err);
    ss_folder *f = NULL;
    char *text = NULL, *edited = NULL;
    const char *want;
    ss_rc rc;
    if (!k) return SS_ERR_INVALID;
    if (k->info.read_only) return ss_fail(err, SS_ERR_INVALID, "%s is read-only", key);
    if (!value && k->kind == K_STORE) return ss_fail(err, SS_ERR_INVALID, "store cannot be unset");
    want = value ? settings_bad_value(k, value) : NULL;
    if (want) return ss_fail(err, SS_ERR_INVALID, "%s: '%s' is not %s", key, value, want);
    /* Under the folder lock: a sync reads the settings once at open, and two sets do not race. */
    rc = new_folder(dir, NULL, &f, err);
    if (rc) return rc;
    rc = settings_read(f->root, &text, err);
    if (rc) goto out; /* names a folder that is not synced */
    free(text);
    text = NULL;
    rc = take_lock(f, err);
    if (rc) goto out;
    rc = settings_read(f->root, &text, err);
    if (rc) goto out;
    if (k->kind == K_STORE) {
        rc = settings_check_same_repo(f, text, value, store_opts, err);
        if (rc) goto out;
    }
    edited = settings_edit(text, key, value);
    if (!edited) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    rc = eng_meta_write(f, SETTINGS_FILE, edited, strlen(edited), err);
out:
    free(text);
    free(edited);
    ss_folder_free(f);
    return rc;
}

/* --- opening the parts ---------------------------------------------------------- */

ss_rc eng_load_ignore(ss_folder *f, ss_err *err)
{
    char file[4096];
    ss_ignore *ign = NULL;
    int named = ss_folder_setting(f, "ignore_file", file, sizeof file);
    ss_rc rc = ss_ignore_load(f->root, named ? file : NULL, &ign, err);
    if (rc) return rc;
    ss_ignore_free(f->ign);
    f->ign = ign;
    return SS_OK;
}

/*
 * The ignore patterns are read by what scans (eng_load_ignore), not here: a
 * bad .s3syncignore (another device made it a symlink) must not stop the
 * pull that brings the fix.
 */
static ss_rc open_common(ss_folder *f, ss_err *err)
{
    char *db = NULL;
    ss_rc rc;
    const ss_config *cfg = ss_repo_config(f->repo);
    f->limits.inline_limit = cfg->inline_limit;
    f->limits.max_chunk_size = cfg->chunker.max_size;
    rc = ss_chunker_new(&cfg->chunker, &f->chunker, err);
    if (rc) return rc;
    if (asprintf(&db, "%s/state.db", f->meta) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_state_open(db, 1, &f->state, err);
    free(db);
    if (rc) return rc;
    rc = ss_devices_new(&f->devices, err);
    if (rc) return rc;
    rc = ss_state_devices_load(f->state, f->devices, err);
    if (rc) return rc;
    return eng_epochs_load(f, err);
}

/*
 * A command killed inside a directory it had opened to its owner left the
 * journal (dirmodes.h): the modes go back before anything looks at them.
 * Once: a failure is told, and the journal is gone either way.
 */
static void put_back_dir_modes(ss_folder *f)
{
    char *journal = NULL;
    ss_err err = {{0}};
    if (asprintf(&journal, "%s/" ENG_DIRMODES_FILE, f->meta) < 0) return;
    if (ss_dirmodes_recover(f->root_fd, journal, &err) && f->hooks.warn) {
        char msg[sizeof err.msg + 64];
        snprintf(msg, sizeof msg, "directory modes a killed command left open: %s", err.msg);
        f->hooks.warn(f->hooks.ctx, msg);
    }
    free(journal);
}

/* The signing key, which must be the device id the settings name. */
static ss_rc load_device_key(ss_folder *f, ss_err *err)
{
    ss_rc rc = ss_device_key_load(f->meta, &f->key, err);
    if (rc == SS_ERR_NOT_FOUND)
        return ss_fail(err, SS_ERR_INVALID,
                       "%s/" SS_DEVICE_KEY_FILE " is missing: this folder "
                       "cannot sign; set it up again with s3sync init in a new folder",
                       f->meta);
    if (rc) return rc;
    if (sodium_memcmp(ss_device_key_id(f->key), f->device_id, sizeof f->device_id))
        rc = ss_fail(err, SS_ERR_INVALID,
                     "%s/" SS_DEVICE_KEY_FILE " is not the key of this "
                     "folder's device_id",
                     f->meta);
    return rc;
}

static ss_rc load_master(ss_folder *f, uint8_t master[SS_MASTER_KEY_BYTES], ss_err *err)
{
    char *path = NULL, *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    if (asprintf(&path, "%s/" MASTER_FILE, f->meta) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = settings_read_file(path, &buf, &len, err);
    if (rc) goto done;
    if (len != SS_MASTER_KEY_BYTES) {
        rc = ss_fail(err, SS_ERR_IO, "%s: not a master key (%zu bytes)", path, len);
        goto done;
    }
    memcpy(master, buf, SS_MASTER_KEY_BYTES);
done:
    if (buf) sodium_memzero(buf, len);
    free(buf);
    free(path);
    return rc;
}

ss_rc ss_folder_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                     ss_folder **ret_folder, ss_err *err)
{
    ss_folder *f = NULL;
    char *settings = NULL, *path = NULL, url[4096], idhex[64], flag[16];
    uint8_t master[SS_MASTER_KEY_BYTES];
    ss_store_opts so = store_opts ? *store_opts : (ss_store_opts){0};
    settings_store_opts fso;
    ss_rc rc;
    *ret_folder = NULL;
    rc = new_folder(dir, hooks, &f, err);
    if (rc) return rc;
    if (asprintf(&path, "%s/" SETTINGS_FILE, f->meta) < 0) {
        path = NULL;
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rc = settings_read_file(path, &settings, NULL, err);
    if (rc == SS_ERR_NOT_FOUND)
        rc = ss_fail(err, rc, "%s is not a synced folder (run s3sync init)", f->root);
    if (rc) goto fail;
    if (!eng_setting(settings, "store", url, sizeof url) ||
        !eng_setting(settings, "device_id", idhex, sizeof idhex) ||
        sodium_hex2bin(f->device_id, sizeof f->device_id, idhex, strlen(idhex), NULL, NULL, NULL) ||
        !eng_setting(settings, "device", f->device_name, sizeof f->device_name)) {
        rc = ss_fail(err, SS_ERR_INVALID, "%s: missing store, device or device_id", path);
        goto fail;
    }
    settings_apply_store(settings, f->root, &so, &fso);
    f->mode_mask = mode_mask(eng_setting(settings, "preserve_modes", flag, sizeof flag) &&
                             !strcmp(flag, "true"));
    rc = take_lock(f, err);
    if (rc) goto fail;
    rc = load_device_key(f, err);
    if (rc) goto fail;
    rc = ss_store_open(url, &so, &f->store, err);
    if (rc) goto fail;
    rc = load_master(f, master, err);
    if (rc) goto fail;
    put_back_dir_modes(f); /* under the lock */
    free(path);
    if (asprintf(&path, "%s/" REPO_CONFIG_FILE, f->meta) < 0) path = NULL;
    char *cfg = NULL;
    size_t cfg_len = 0;
    if (path && settings_read_file(path, &cfg, &cfg_len, NULL)) cfg = NULL; /* no cache: fetch it */
    rc = ss_repo_open_master(f->store, master, (const uint8_t *)cfg, cfg_len, &f->repo, err);
    free(cfg);
    sodium_memzero(master, sizeof master);
    f->settings = settings;
    settings = NULL;
    if (rc) goto fail;
    rc = open_common(f, err);
    if (rc) goto fail;
    rc = eng_peers_attach(f, err);
    if (rc) goto fail;
    free(path);
    *ret_folder = f;
    return SS_OK;
fail:
    free(settings);
    free(path);
    ss_folder_free(f);
    return rc;
}

/* --- nesting -------------------------------------------------------------------- */

/* dir holds a .s3sync/ directory: it is a synced folder's root (or claims to be). */
static int holds_meta(const char *dir)
{
    char probe[PATH_MAX + 16];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/" SS_TXN_RESERVED_DIR, dir);
    return !stat(probe, &st) && S_ISDIR(st.st_mode);
}

/* The nearest proper ancestor of abs (resolved) that holds a .s3sync/, into out; 0: none. */
static int synced_above(const char *abs, char *out, size_t cap)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", abs);
    for (char *slash = strrchr(dir, '/'); slash && slash != dir; slash = strrchr(dir, '/')) {
        *slash = '\0';
        if (holds_meta(dir)) {
            snprintf(out, cap, "%s", dir);
            return 1;
        }
    }
    return 0;
}

/*
 * A .s3sync/ below another synced folder's root is never adopted: no
 * version that refuses such paths writes one, but an older one applied any
 * path another device sent (sub/.s3sync/config naming the sender's store),
 * and a folder inside another one is synced by the outer one anyway.
 */
static ss_rc refuse_nested(const char *dir, const char *outer, ss_err *err)
{
    return ss_fail(err, SS_ERR_INVALID,
                   "%s lies inside the synced folder %s: refusing its " SS_TXN_RESERVED_DIR
                   "/ (a folder inside another one is never synced on its own; "
                   "move one of them out of the other)",
                   dir, outer);
}

/* --- init ---------------------------------------------------------------------- */

/* An option init records in the settings (value may be NULL: not given) must suit its key. */
static ss_rc check_init_setting(const char *key, const char *value, ss_err *err)
{
    const char *want = value ? settings_bad_value(settings_find_key(key, NULL), value) : NULL;
    return want ? ss_fail(err, SS_ERR_INVALID, "--%s %s: want %s", key, value, want) : SS_OK;
}

/* The first settings: the store, this device, and the endpoint and profile init was given. */
static ss_rc write_settings(ss_folder *f, const char *url, const ss_store_opts *so, ss_err *err)
{
    char idhex[2 * SS_TXN_DEVICE_ID_BYTES + 1], *text = NULL;
    const char *ep = so ? so->endpoint : NULL, *profile = so ? so->profile : NULL;
    ss_rc rc;
    sodium_bin2hex(idhex, sizeof idhex, f->device_id, sizeof f->device_id);
    if (asprintf(&text,
                 "# s3sync folder settings\nstore = %s\ndevice = %s\ndevice_id = %s\n%s%s%s%s%s%s",
                 url, f->device_name, idhex, ep ? "endpoint = " : "", ep ? ep : "", ep ? "\n" : "",
                 profile ? "profile = " : "", profile ? profile : "", profile ? "\n" : "") < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = eng_meta_write(f, SETTINGS_FILE, text, strlen(text), err);
    free(text);
    return rc;
}

ss_rc ss_folder_init(const char *dir, const ss_init_opts *o, const ss_hooks *hooks,
                     ss_folder **ret_folder, int *ret_created, ss_err *err)
{
    ss_folder *f = NULL;
    uint8_t cfg[SS_CONFIG_BYTES], fp[SS_FINGERPRINT_BYTES];
    char outer[PATH_MAX];
    int made_dir = 0; /* init made dir: a failed init removes it again */
    ss_rc rc;
    *ret_folder = NULL;
    *ret_created = 0;
    if (o->expect_fingerprint) {
        rc = ss_fingerprint_parse(o->expect_fingerprint, fp, err);
        if (rc) return rc; /* a typo is told before the passphrase's key derivation, not after */
    }
    /* They go into the settings (and transactions, file names) as they are. */
    rc = check_init_setting("endpoint", o->store_opts ? o->store_opts->endpoint : NULL, err);
    if (rc) return rc;
    rc = check_init_setting("profile", o->store_opts ? o->store_opts->profile : NULL, err);
    if (rc) return rc;
    rc = check_init_setting("device", o->device_name, err);
    if (rc) return rc;
    if (!mkdir(dir, 0755))
        made_dir = 1;
    else if (errno != EEXIST)
        return ss_fail(err, SS_ERR_IO, "create folder %s: %s", dir, strerror(errno));
    rc = new_folder(dir, hooks, &f, err);
    if (rc) goto fail;
    if (!access(f->meta, F_OK)) {
        rc = ss_fail(err, SS_ERR_EXISTS, "%s is already a synced folder", f->root);
        goto fail;
    }
    if (synced_above(f->root, outer, sizeof outer)) {
        rc = refuse_nested(f->root, outer, err);
        goto fail;
    }
    rc = ss_store_open(o->store_url, o->store_opts, &f->store, err);
    if (rc) goto fail;
    /* Named before create: the first key file is labelled with it. */
    if (o->device_name)
        snprintf(f->device_name, sizeof f->device_name, "%s", o->device_name);
    else
        default_device_name(f->device_name, sizeof f->device_name);
    /* Join first: nothing is written locally until the passphrase proved itself. */
    rc = ss_repo_join(f->store, o->passphrase, o->passlen, &f->repo, err);
    if (o->expect_fingerprint) {
        if (rc == SS_ERR_NOT_FOUND)
            rc = ss_fail(err, rc,
                         "%s holds no repository to join (--expect-fingerprint never creates one)",
                         o->store_url);
        if (rc) goto fail;
        rc = ss_repo_check_fingerprint(f->repo, o->expect_fingerprint, err);
        if (rc) goto fail;
    }
    /* Direct mode rests on create-only puts: refuse a store that ignores them. */
    if (rc == SS_OK || rc == SS_ERR_NOT_FOUND) {
        ss_rc probe = ss_store_probe_create_only(f->store, err);
        if (probe) {
            rc = probe;
            goto fail;
        }
    }
    if (rc == SS_ERR_NOT_FOUND) {
        size_t passlen = o->passlen;
        if (o->confirm_new) {
            rc = o->confirm_new(o->confirm_ctx, &passlen, err);
            if (rc) goto fail;
        }
        rc = ss_repo_create(f->store, o->passphrase, passlen, f->device_name, &f->repo, err);
        if (rc) goto fail;
        *ret_created = 1;
    }
    if (rc) goto fail;
    if (mkdir(f->meta, 0700) && errno != EEXIST) {
        rc = ss_fail(err, SS_ERR_IO, "create %s: %s", f->meta, strerror(errno));
        goto fail;
    }
    rc = ss_device_key_create(f->meta, &f->key, err);
    if (rc) goto fail;
    memcpy(f->device_id, ss_device_key_id(f->key), sizeof f->device_id);
    rc = take_lock(f, err);
    if (rc) goto fail;
    rc = eng_meta_write(f, MASTER_FILE, ss_keys_master(ss_repo_keys(f->repo)), SS_MASTER_KEY_BYTES,
                        err);
    if (rc) goto fail;
    rc = eng_epochs_save(f, err); /* a key file of a later epoch opened them all */
    if (rc) goto fail;
    rc = ss_config_encode(ss_repo_keys(f->repo), ss_repo_config(f->repo), cfg, err);
    if (rc) goto fail;
    rc = eng_meta_write(f, REPO_CONFIG_FILE, cfg, sizeof cfg, err);
    if (rc) goto fail;
    rc = open_common(f, err);
    if (rc) goto fail;
    rc = write_settings(f, o->store_url, o->store_opts, err);
    if (rc) goto fail;
    *ret_folder = f;
    return SS_OK;
fail:
    ss_folder_free(f);
    if (made_dir) rmdir(dir); /* left as it was; not empty: something of the user's, kept */
    return rc;
}

ss_rc ss_folder_find(const char *path, char **ret_dir, ss_err *err)
{
    char abs[PATH_MAX], outer[PATH_MAX];
    *ret_dir = NULL;
    if (!realpath(path, abs)) return ss_fail(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        if (holds_meta(abs)) {
            if (synced_above(abs, outer, sizeof outer)) return refuse_nested(abs, outer, err);
            *ret_dir = strdup(abs);
            return *ret_dir ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
        }
        char *slash = strrchr(abs, '/');
        if (!slash || slash == abs) break;
        *slash = '\0';
    }
    return ss_fail(err, SS_ERR_NOT_FOUND,
                   "%s is not inside a synced folder (no .s3sync/ above it; run s3sync init)",
                   path);
}
