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

#define MASTER_FILE "master.key"
#define SETTINGS_FILE "config"
#define REPO_CONFIG_FILE "repo.config" /* the store's config object, cached at join */

void ss_stats_clear(ss_stats *s)
{
    for (size_t i = 0; i < s->n_conflicts; i++) free(s->conflicts[i]);
    free(s->conflicts);
    memset(s, 0, sizeof *s);
}

struct ss_repo *ss_folder_repo(ss_folder *f)
{
    return f->repo;
}

void ss_folder_free(ss_folder *f)
{
    if (!f) return;
    ss_state_free(f->state);
    ss_repo_free(f->repo);
    ss_store_free(f->store);
    ss_chunker_free(f->chunker);
    ss_ignore_free(f->ign);
    if (f->root_fd >= 0) close(f->root_fd);
    if (f->lock_fd >= 0) close(f->lock_fd); /* drops the lock */
    free(f->root);
    free(f->meta);
    free(f);
}

static ss_rc new_folder(const char *dir, const ss_hooks *hooks, ss_folder **ret, ss_err *err)
{
    ss_folder *f = calloc(1, sizeof *f);
    char abs[PATH_MAX];
    *ret = NULL;
    if (!f) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    f->root_fd = f->lock_fd = -1;
    if (hooks) f->hooks = *hooks;
    if (!realpath(dir, abs)) {
        free(f);
        return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "folder %s: %s", dir,
                       strerror(errno));
    }
    if (!(f->root = strdup(abs)) || asprintf(&f->meta, "%s/.s3sync", abs) < 0) {
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
    if (f->lock_fd < 0) return ss_fail(err, SS_ERR_IO, "lock %s/lock: %s", f->meta, strerror(errno));
    for (int i = 0; i < 300; i++) { /* 30 s */
        if (!fcntl(f->lock_fd, F_OFD_SETLK, &fl)) return SS_OK;
        if (errno != EAGAIN && errno != EACCES)
            return ss_fail(err, SS_ERR_IO, "lock %s/lock: %s", f->meta, strerror(errno));
        usleep(100000);
    }
    return ss_fail(err, SS_ERR_TEMPORARY, "%s is busy: another s3sync command runs on it", f->root);
}

/* --- settings: "key = value" lines ----------------------------------------------- */

static ss_rc read_file(const char *path, char **ret, size_t *ret_len, ss_err *err)
{
    FILE *fp = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0;
    *ret = NULL;
    if (!fp) return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "read %s: %s",
                            path, strerror(errno));
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while (m && (n = fread(chunk, 1, sizeof chunk, fp))) fwrite(chunk, 1, n, m);
    int bad = ferror(fp) || !m;
    fclose(fp);
    if (m) fclose(m);
    if (bad) {
        free(buf);
        return ss_fail(err, SS_ERR_IO, "read %s failed", path);
    }
    *ret = buf;
    if (ret_len) *ret_len = len;
    return SS_OK;
}

/* Value of key in settings text, copied into out; 0 when absent. */
static int setting(const char *text, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ') l++;
        if (strncmp(l, key, kl)) continue;
        const char *v = l + kl;
        while (*v == ' ') v++;
        if (*v++ != '=') continue;
        while (*v == ' ') v++;
        size_t n = strcspn(v, "\n");
        while (n && v[n - 1] == ' ') n--;
        if (n >= cap) return 0;
        memcpy(out, v, n);
        out[n] = '\0';
        return 1;
    }
    return 0;
}

/* Write a file atomically with mode 0600 (settings, master key). */
static ss_rc write_private(const char *dir, const char *name, const void *buf, size_t len,
                           ss_err *err)
{
    char *tmp = NULL, *path = NULL;
    int fd = -1;
    ss_rc rc = SS_OK;
    if (asprintf(&tmp, "%s/%s.tmp", dir, name) < 0 || asprintf(&path, "%s/%s", dir, name) < 0) {
        free(tmp);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) || rename(tmp, path))
        rc = ss_fail(err, SS_ERR_IO, "write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    if (rc) unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

static void default_device_name(char *out, size_t cap)
{
    if (gethostname(out, cap) || !out[0]) snprintf(out, cap, "device");
    out[cap - 1] = '\0';
    for (char *p = out; *p; p++) /* it ends up in file names of conflict copies */
        if (*p == '/' || *p == ' ' || *p == '.') *p = '-';
}

/* --- opening the parts ---------------------------------------------------------- */

static ss_rc open_common(ss_folder *f, ss_err *err)
{
    char *db = NULL;
    ss_rc rc;
    const ss_config *cfg = ss_repo_config(f->repo);
    f->limits.inline_limit = cfg->inline_limit;
    f->limits.max_chunk_size = cfg->chunker.max_size;
    if ((rc = ss_chunker_new(&cfg->chunker, &f->chunker, err)) ||
        (rc = ss_ignore_load(f->root, &f->ign, err)))
        return rc;
    if (asprintf(&db, "%s/state.db", f->meta) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_state_open(db, 1, &f->state, err);
    free(db);
    return rc;
}

static ss_rc load_master(ss_folder *f, uint8_t master[SS_MASTER_KEY_BYTES], ss_err *err)
{
    char *path = NULL, *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    if (asprintf(&path, "%s/" MASTER_FILE, f->meta) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = read_file(path, &buf, &len, err);
    if (!rc && len != SS_MASTER_KEY_BYTES)
        rc = ss_fail(err, SS_ERR_IO, "%s: not a master key (%zu bytes)", path, len);
    if (!rc) memcpy(master, buf, SS_MASTER_KEY_BYTES);
    if (buf) sodium_memzero(buf, len);
    free(buf);
    free(path);
    return rc;
}

ss_rc ss_folder_open(const char *dir, const ss_store_opts *store_opts, const ss_hooks *hooks,
                     ss_folder **ret_folder, ss_err *err)
{
    ss_folder *f = NULL;
    char *settings = NULL, *path = NULL, url[4096], idhex[64];
    uint8_t master[SS_MASTER_KEY_BYTES];
    ss_rc rc;
    *ret_folder = NULL;
    if ((rc = new_folder(dir, hooks, &f, err))) return rc;
    if (asprintf(&path, "%s/" SETTINGS_FILE, f->meta) < 0) {
        path = NULL;
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rc = read_file(path, &settings, NULL, err);
    if (rc == SS_ERR_NOT_FOUND) rc = ss_fail(err, rc, "%s is not a synced folder (run s3sync init)", f->root);
    if (rc) goto fail;
    if (!setting(settings, "store", url, sizeof url) ||
        !setting(settings, "device_id", idhex, sizeof idhex) ||
        sodium_hex2bin(f->device_id, sizeof f->device_id, idhex, strlen(idhex), NULL, NULL, NULL) ||
        !setting(settings, "device", f->device_name, sizeof f->device_name)) {
        rc = ss_fail(err, SS_ERR_INVALID, "%s: missing store, device or device_id", path);
        goto fail;
    }
    if ((rc = take_lock(f, err)) || (rc = ss_store_open(url, store_opts, &f->store, err)) ||
        (rc = load_master(f, master, err)))
        goto fail;
    free(path);
    if (asprintf(&path, "%s/" REPO_CONFIG_FILE, f->meta) < 0) path = NULL;
    char *cfg = NULL;
    size_t cfg_len = 0;
    if (path && read_file(path, &cfg, &cfg_len, NULL)) cfg = NULL; /* no cache: fetch it */
    rc = ss_repo_open_master(f->store, master, (const uint8_t *)cfg, cfg_len, &f->repo, err);
    free(cfg);
    sodium_memzero(master, sizeof master);
    if (rc || (rc = open_common(f, err))) goto fail;
    free(settings);
    free(path);
    *ret_folder = f;
    return SS_OK;
fail:
    free(settings);
    free(path);
    ss_folder_free(f);
    return rc;
}

static ss_rc write_settings(ss_folder *f, const char *url, ss_err *err)
{
    char idhex[2 * SS_TXN_DEVICE_ID_BYTES + 1], *text = NULL;
    ss_rc rc;
    sodium_bin2hex(idhex, sizeof idhex, f->device_id, sizeof f->device_id);
    if (asprintf(&text, "# s3sync folder settings\nstore = %s\ndevice = %s\ndevice_id = %s\n", url,
                 f->device_name, idhex) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = write_private(f->meta, SETTINGS_FILE, text, strlen(text), err);
    free(text);
    return rc;
}

ss_rc ss_folder_init(const char *dir, const ss_init_opts *o, const ss_hooks *hooks,
                     ss_folder **ret_folder, int *ret_created, ss_err *err)
{
    ss_folder *f = NULL;
    uint8_t cfg[SS_CONFIG_BYTES];
    ss_rc rc;
    *ret_folder = NULL;
    *ret_created = 0;
    if (mkdir(dir, 0755) && errno != EEXIST)
        return ss_fail(err, SS_ERR_IO, "create folder %s: %s", dir, strerror(errno));
    if ((rc = new_folder(dir, hooks, &f, err))) return rc;
    if (!access(f->meta, F_OK)) {
        rc = ss_fail(err, SS_ERR_EXISTS, "%s is already a synced folder", f->root);
        goto fail;
    }
    if ((rc = ss_store_open(o->store_url, o->store_opts, &f->store, err))) goto fail;
    /* Join first: nothing is written locally until the passphrase proved itself. */
    rc = ss_repo_join(f->store, o->passphrase, o->passlen, &f->repo, err);
    /* Direct mode rests on create-only puts: refuse a store that ignores them. */
    if (rc == SS_OK || rc == SS_ERR_NOT_FOUND) {
        ss_rc probe = ss_store_probe_create_only(f->store, err);
        if (probe) {
            rc = probe;
            goto fail;
        }
    }
    if (rc == SS_ERR_NOT_FOUND) {
        rc = ss_repo_create(f->store, o->passphrase, o->passlen, &f->repo, err);
        *ret_created = !rc;
    }
    if (rc) goto fail;
    if (mkdir(f->meta, 0700) && errno != EEXIST) {
        rc = ss_fail(err, SS_ERR_IO, "create %s: %s", f->meta, strerror(errno));
        goto fail;
    }
    randombytes_buf(f->device_id, sizeof f->device_id);
    if (o->device_name) snprintf(f->device_name, sizeof f->device_name, "%s", o->device_name);
    else default_device_name(f->device_name, sizeof f->device_name);
    if ((rc = take_lock(f, err)) ||
        (rc = write_private(f->meta, MASTER_FILE, ss_keys_master(ss_repo_keys(f->repo)),
                            SS_MASTER_KEY_BYTES, err)) ||
        (rc = ss_config_encode(ss_repo_keys(f->repo), ss_repo_config(f->repo), cfg, err)) ||
        (rc = write_private(f->meta, REPO_CONFIG_FILE, cfg, sizeof cfg, err)) ||
        (rc = open_common(f, err)) || (rc = write_settings(f, o->store_url, err)))
        goto fail;
    *ret_folder = f;
    return SS_OK;
fail:
    ss_folder_free(f);
    return rc;
}

ss_rc ss_folder_find(const char *path, char **ret_dir, ss_err *err)
{
    char abs[PATH_MAX], probe[PATH_MAX + 16];
    struct stat st;
    *ret_dir = NULL;
    if (!realpath(path, abs)) return ss_fail(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        snprintf(probe, sizeof probe, "%s/.s3sync", abs);
        if (!stat(probe, &st) && S_ISDIR(st.st_mode)) {
            *ret_dir = strdup(abs);
            return *ret_dir ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
        }
        char *slash = strrchr(abs, '/');
        if (!slash || slash == abs) break;
        *slash = '\0';
    }
    return ss_fail(err, SS_ERR_NOT_FOUND,
                   "%s is not inside a synced folder (no .s3sync/ above it; run s3sync init)", path);
}
