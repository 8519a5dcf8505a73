/*
 * settings: the folder's settings, .s3sync/config (see settings.h): the keys
 * `s3sync config` reads and writes, their values, and the store a folder
 * may move to.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"
#include "peer.h"
#include "settings.h"

ss_rc settings_read_file(const char *path, char **ret, size_t *ret_len, ss_err *err)
{
    FILE *fp = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0;
    *ret = NULL;
    if (!fp)
        return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "read %s: %s", path,
                       strerror(errno));
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    while (m) {
        size_t n = fread(chunk, 1, sizeof chunk, fp);
        if (!n) break;
        fwrite(chunk, 1, n, m);
    }
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

static const settings_key known[] = {
    {{"store",
      "the repository: s3://BUCKET/PREFIX, file:///ABS/PATH or lockd:http(s)://HOST:PORT/REPO "
      "(moving it: the same repository only)",
      0},
     K_STORE},
    {{"endpoint",
      "S3 endpoint http(s)://HOST[:PORT] (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, "
      "the profile's endpoint_url, else AWS)",
      0},
     K_URL},
    {{"region",
      "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1)",
      0},
     K_WORD},
    {{"profile",
      "AWS profile in ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE, else default)",
      0},
     K_WORD},
    {{"token_file",
      "lockd device token file (default: S3SYNC_TOKEN_FILE, else "
      "$XDG_CONFIG_HOME/s3sync/token when it exists)",
      0},
     K_PATH},
    {{"device", "this device's name in transactions and conflict copies (default: the host name)",
      0},
     K_NAME},
    {{"ignore_file", "ignore patterns, relative to the folder or absolute (default: .s3syncignore)",
      0},
     K_PATH},
    {{"checkpoint_txns",
      "write a checkpoint after this many transactions since the last one; 0: never "
      "(default: S3SYNC_CHECKPOINT_TXNS, else 1000)",
      0},
     K_COUNT},
    {{"checkpoint_bytes",
      "write a checkpoint after this many log bytes since the last one; 0: never "
      "(default: S3SYNC_CHECKPOINT_BYTES, else 64 MiB)",
      0},
     K_COUNT},
    {{"preserve_modes",
      "true: group and world write bits from the store are applied as they are, not masked by "
      "the umask (default false; setuid, setgid and sticky bits are never applied)",
      0},
     K_BOOL},
    {{"device_id", "this device's id, from its signing key (set by init)", 1}, K_FIXED},
    {{"peers",
      "devices of this repository to fetch from before the store: HOST:PORT or [V6]:PORT, "
      "comma-separated (docs/PEERS.md; default: none)",
      0},
     K_PEERS},
    {{"peer_listen",
      "where s3sync serve takes peers: HOST:PORT or [V6]:PORT (port 0: any free one; [::] "
      "takes IPv4 too), or off (default [::]:21470)",
      0},
     K_LISTEN},
    {{"peer_discovery",
      "find this repository's serving devices on the local network: on (IPv4 broadcast and "
      "IPv6 group ff02::5333:5044, port 21470), a broadcast HOST:PORT, an IPv6 "
      "[GROUP%IF]:PORT, or off (default off)",
      0},
     K_DISCOVERY},
    {{"cache_size",
      "bytes of objects kept in .s3sync/cache to serve peers; 0: no cache, nothing served "
      "(default 1073741824, 1 GiB)",
      0},
     K_COUNT},
    {{"max_requests",
      "push, pull and sync stop (exit 75) before a store request past this many; the next run "
      "goes on (default: none)",
      0},
     K_COUNT},
    /* s3sync cost; defaults: AWS S3 Standard in us-east-1, as aws.amazon.com/s3/pricing lists. */
    {{"price_put", "USD per 1000 PUT requests, for s3sync cost (default 0.005)", 0}, K_PRICE},
    {{"price_get", "USD per 1000 GET requests (default 0.0004)", 0}, K_PRICE},
    {{"price_list", "USD per 1000 LIST requests (default 0.005)", 0}, K_PRICE},
    {{"price_delete", "USD per 1000 DELETE requests (default 0)", 0}, K_PRICE},
    {{"price_head", "USD per 1000 HEAD requests (default 0.0004)", 0}, K_PRICE},
    {{"price_download", "USD per GB downloaded from the store (default 0.09)", 0}, K_PRICE},
};
#define N_KNOWN (sizeof known / sizeof known[0])

const ss_setting_info *ss_folder_settings(size_t *ret_n)
{
    static ss_setting_info infos[N_KNOWN];
    for (size_t i = 0; i < N_KNOWN; i++)
        infos[i] = known[i].info;
    *ret_n = N_KNOWN;
    return infos;
}

const settings_key *settings_find_key(const char *key, ss_err *err)
{
    char names[512] = "";
    for (size_t i = 0; i < N_KNOWN; i++) {
        if (!strcmp(known[i].info.name, key)) return &known[i];
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                 known[i].info.name);
    }
    ss_fail(err, SS_ERR_INVALID, "unknown setting '%s' (known: %s)", key, names);
    return NULL;
}

static int all_of(const char *v, const char *set)
{
    return *v && strspn(v, set) == strlen(v);
}

#define WORD_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

/* NULL when value suits k, else what it should look like. */
const char *settings_bad_value(const settings_key *k, const char *v)
{
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return "no control characters";
    if (!*v || *v == ' ' || v[strlen(v) - 1] == ' ')
        return "a value without leading or trailing spaces";
    switch (k->kind) {
    case K_STORE:
        return !strncmp(v, "s3://", 5) || !strncmp(v, "file:///", 8) ||
                       !strncmp(v, "lockd:http://", 13) || !strncmp(v, "lockd:https://", 14)
                   ? NULL
                   : "s3://BUCKET/PREFIX, file:///ABS/PATH or lockd:http(s)://HOST:PORT/REPO";
    case K_URL:
        return (!strncmp(v, "http://", 7) && v[7]) || (!strncmp(v, "https://", 8) && v[8])
                   ? NULL
                   : "http(s)://HOST[:PORT]";
    case K_WORD: return all_of(v, WORD_CHARS) ? NULL : "letters, digits, '.', '_' and '-'";
    case K_NAME: /* it names transactions and conflict copies, and is shown everywhere */
        return strlen(v) <= SS_TXN_DEVICE_NAME_MAX && !strpbrk(v, "/. ") &&
                       ss_path_printable(v, strlen(v))
                   ? NULL
                   : "a name of at most 255 bytes of printable UTF-8 without '/', '.' or spaces";
    case K_COUNT: return all_of(v, "0123456789") && strlen(v) < 19 ? NULL : "a whole number";
    case K_BOOL: return !strcmp(v, "true") || !strcmp(v, "false") ? NULL : "true or false";
    case K_PRICE:
        return all_of(v, "0123456789.") && strchr(v, '.') == strrchr(v, '.') && *v != '.' &&
                       strlen(v) < 19
                   ? NULL
                   : "a decimal number such as 0.005";
    case K_PEERS: {
        ss_peers *ps = NULL;
        int bad = ss_peers_new(v, NULL, NULL, NULL, &ps, NULL) != SS_OK;
        ss_peers_free(ps);
        return bad ? "HOST:PORT or [V6]:PORT, comma-separated, at most 16" : NULL;
    }
    case K_LISTEN:
        return !strcmp(v, "off") || eng_listen_parse(v, NULL, 0, NULL) == 0 ? NULL
                                                                            : "HOST:PORT or off";
    case K_DISCOVERY:
        return !strcmp(v, "on") || !strcmp(v, "off") || eng_listen_parse(v, NULL, 0, NULL) == 0
                   ? NULL
                   : "on, off, HOST:PORT or [GROUP]:PORT";
    default: return NULL;
    }
}

ss_rc settings_read(const char *dir, char **ret_text, ss_err *err)
{
    char *path = NULL;
    ss_rc rc;
    *ret_text = NULL;
    if (asprintf(&path, "%s/.s3sync/" SETTINGS_FILE, dir) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = settings_read_file(path, ret_text, NULL, err);
    if (rc == SS_ERR_NOT_FOUND)
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "%s is not a synced folder (run s3sync init)", dir);
    free(path);
    return rc;
}

ss_rc ss_folder_get_setting(const char *dir, const char *key, char **ret_value, ss_err *err)
{
    char *text = NULL, value[4096];
    ss_rc rc;
    *ret_value = NULL;
    if (!settings_find_key(key, err)) return SS_ERR_INVALID;
    rc = settings_read(dir, &text, err);
    if (rc) return rc;
    if (!eng_setting(text, key, value, sizeof value)) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND, "%s is not set", key);
        goto done;
    }
    *ret_value = strdup(value);
    if (!*ret_value) rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
done:
    free(text);
    return rc;
}

/* text with key's line replaced by "key = value" (or dropped when value is NULL). */
char *settings_edit(const char *text, const char *key, const char *value)
{
    char *out = NULL;
    size_t len = 0, kl = strlen(key);
    int done = 0;
    FILE *m = open_memstream(&out, &len);
    if (!m) return NULL;
    for (const char *l = text; *l;) {
        size_t n = strcspn(l, "\n");
        const char *k = l + strspn(l, " "), *after = k + kl;
        int is_key = !strncmp(k, key, kl) && after[strspn(after, " ")] == '=';
        if (!is_key)
            fprintf(m, "%.*s\n", (int)n, l);
        else if (value && !done++)
            fprintf(m, "%s = %s\n", key, value);
        l += n + (l[n] == '\n');
    }
    if (value && !done) fprintf(m, "%s = %s\n", key, value);
    if (fclose(m)) {
        free(out);
        return NULL;
    }
    return out;
}

void settings_apply_store(const char *text, const char *root, ss_store_opts *so,
                          settings_store_opts *fso)
{
    if (!so->token_file && eng_setting(text, "token_file", fso->token, sizeof fso->token)) {
        snprintf(fso->token_path, sizeof fso->token_path, "%s%s%s",
                 fso->token[0] == '/' ? "" : root, fso->token[0] == '/' ? "" : "/", fso->token);
        so->token_file = fso->token_path;
    }
    if (!so->endpoint && eng_setting(text, "endpoint", fso->endpoint, sizeof fso->endpoint))
        so->endpoint = fso->endpoint;
    if (!so->region && eng_setting(text, "region", fso->region, sizeof fso->region))
        so->region = fso->region;
    if (!so->profile && eng_setting(text, "profile", fso->profile, sizeof fso->profile))
        so->profile = fso->profile;
}

/*
 * The folder's store may move only to a store holding this very repository
 * (a copied bucket, a new endpoint): in an empty prefix or another
 * repository the next push would start a history no other device sees.
 * The store's config object must be byte for byte the one cached at join.
 */
ss_rc settings_check_same_repo(ss_folder *f, const char *settings, const char *url,
                               const ss_store_opts *store_opts, ss_err *err)
{
    ss_store_opts so = store_opts ? *store_opts : (ss_store_opts){0};
    settings_store_opts fso;
    char *path = NULL, *cached = NULL;
    void *cfg = NULL;
    size_t len = 0, cached_len = 0;
    ss_store *s = NULL;
    ss_rc rc;
    settings_apply_store(settings, f->root, &so, &fso);
    if (asprintf(&path, "%s/" REPO_CONFIG_FILE, f->meta) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = settings_read_file(path, &cached, &cached_len, err);
    if (rc) goto done;
    rc = ss_store_open(url, &so, &s, err);
    if (rc) goto done;
    rc = ss_store_get_max(s, SS_KEY_CONFIG, SS_CONFIG_READ_MAX, &cfg, &len, err);
    if (rc) goto done;
    if (len != cached_len || memcmp(cfg, cached, len))
        rc = ss_fail(err, SS_ERR_CONFLICT,
                     "%s holds another repository: the store can only move to a copy of this "
                     "folder's repository",
                     url);
done:
    if (rc == SS_ERR_NOT_FOUND && cached) /* the cache is there: the store is what lacks it */
        rc = ss_fail(err, SS_ERR_CONFLICT,
                     "%s holds no repository: the store can only move to a copy of this "
                     "folder's repository",
                     url);
    free(cfg);
    free(cached);
    free(path);
    ss_store_free(s);
    return rc;
}
