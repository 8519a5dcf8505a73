/*
 * config.c: the s3sync-lockd configuration file. A small key = value format
 * (docs/PROTOCOL.md, "Configuration"): '#' starts a comment line, blank lines
 * are skipped, values run to the end of the line with surrounding blanks
 * trimmed. Unknown keys are errors, so a typo never silently falls back to a
 * default. Relative paths are taken from the file's own directory, so a
 * configuration works whatever the daemon's working directory.
 */
#include "lockd.h"
#include "array.h"
#include "ss_buf.h"

#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ld_config_defaults(ld_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_connections = 1024;
    /* A household behind one NAT: a few devices, 8 parallel transfers each. */
    c->max_connections_per_ip = 64;
    c->connection_timeout = 30;
    c->ttl_default_ms = 30 * 1000;
    c->ttl_min_ms = 1000;
    c->ttl_max_ms = 600 * 1000;
    c->put_expires_max = 900;
    c->get_expires = 3600;
    c->state_skew_ms = 2000;
    c->state_head_cache_ms = 1000;
    c->state_token_cache_ms = 5000;
}

void ld_config_clear(ld_config *c)
{
    char **strs[] = {&c->listen,   &c->state,  &c->cert,       &c->key,
                     &c->endpoint, &c->region, &c->access_key, &c->ca_bundle};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    sodium_free(c->secret_key); /* wipes */
    sodium_free(c->session_token);
    c->secret_key = c->session_token = NULL;
    for (size_t i = 0; i < c->n_repos; i++)
        free(c->repos[i].url);
    free(c->repos);
    c->repos = NULL;
    c->n_repos = c->cap_repos = 0;
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    *e = '\0';
    return s;
}

/* path, or dir/path when relative. */
static char *resolve(const char *dir, const char *path)
{
    char *r = NULL;
    if (path[0] == '/' || !dir[0]) return strdup(path);
    if (asprintf(&r, "%s/%s", dir, path) < 0) r = NULL;
    return r;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *ret)
{
    char *end = NULL;
    errno = 0;
    if (!*v || *v == '-') return -1;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n > max) return -1;
    *ret = n;
    return 0;
}

static ss_rc set_string(char **dst, char *value)
{
    free(*dst);
    *dst = value;
    return value ? SS_OK : SS_ERR_NOMEM;
}

/* A bucket secret: kept in sodium_malloc'ed memory (locked where the system
 * lets it, wiped when freed). */
static ss_rc set_secret(char **dst, const char *value)
{
    size_t n = strlen(value) + 1;
    char *copy = sodium_malloc(n);
    if (!copy) return SS_ERR_NOMEM;
    memcpy(copy, value, n);
    sodium_free(*dst);
    *dst = copy;
    return SS_OK;
}

/*
 * state = sqlite:PATH | s3://BUCKET/PREFIX | file://DIR, or the older db = PATH
 * (sqlite:PATH). A relative SQLite path is the config directory's, as db's was.
 */
static ss_rc set_state(ld_config *c, const char *dir, const char *k, const char *v, ss_err *err)
{
    char *path = NULL, *spec = NULL;
    const char *sqlite = !strcmp(k, "db") ? v : !strncmp(v, "sqlite:", 7) ? v + 7 : NULL;
    if (!sqlite && strncmp(v, "s3://", 5) && strncmp(v, "file://", 7))
        return ss_fail(err, SS_ERR_INVALID, "state '%s': use sqlite:PATH or s3://BUCKET/PREFIX", v);
    if (sqlite && !*sqlite) return ss_fail(err, SS_ERR_INVALID, "%s: no path", k);
    if (!sqlite)
        return set_string(&c->state, strdup(v))
                   ? ss_fail(err, SS_ERR_NOMEM, "config: out of memory")
                   : SS_OK;
    path = resolve(dir, sqlite);
    if (path && asprintf(&spec, "sqlite:%s", path) < 0) spec = NULL;
    free(path);
    if (set_string(&c->state, spec)) return ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
    return SS_OK;
}

static ss_rc add_repo(ld_config *c, const char *name, const char *url, ss_err *err)
{
    ld_config_repo *t;
    if (!ld_name_ok(name))
        return ss_fail(err, SS_ERR_INVALID, "repository name '%s': use 1..64 of [A-Za-z0-9._-]",
                       name);
    if (strncmp(url, "s3://", 5))
        return ss_fail(err, SS_ERR_INVALID, "repository %s: URL must be s3://BUCKET/PREFIX", name);
    for (size_t i = 0; i < c->n_repos; i++)
        if (!strcmp(c->repos[i].name, name))
            return ss_fail(err, SS_ERR_INVALID, "repository %s named twice", name);
    if (SS_ARRAY_GROW(c->repos, c->n_repos + 1, c->cap_repos))
        return ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
    t = &c->repos[c->n_repos];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->url = strdup(url);
    if (!t->url) return ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
    c->n_repos++;
    return SS_OK;
}

static ss_rc apply(ld_config *c, const char *dir, const char *k, const char *v, ss_err *err)
{
    static const struct {
        const char *key;
        size_t off;
        int path;
    } strs[] = {
        {"listen", offsetof(ld_config, listen), 0},
        {"cert", offsetof(ld_config, cert), 1},
        {"key", offsetof(ld_config, key), 1},
        {"s3_endpoint", offsetof(ld_config, endpoint), 0},
        {"s3_region", offsetof(ld_config, region), 0},
        {"s3_access_key_id", offsetof(ld_config, access_key), 0},
        {"s3_ca_bundle", offsetof(ld_config, ca_bundle), 1},
    };
    unsigned long long n;

    if (!strncmp(k, "repo ", 5)) return add_repo(c, trim((char *)k + 5), v, err);
    if (!strcmp(k, "state") || !strcmp(k, "db")) return set_state(c, dir, k, v, err);
    if (!strcmp(k, "s3_secret_access_key") || !strcmp(k, "s3_session_token")) {
        char **dst = !strcmp(k, "s3_session_token") ? &c->session_token : &c->secret_key;
        if (set_secret(dst, v)) return ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
        return SS_OK;
    }
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (!strcmp(k, strs[i].key)) {
            char **dst = (char **)((char *)c + strs[i].off);
            if (set_string(dst, strs[i].path ? resolve(dir, v) : strdup(v)))
                return ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
            return SS_OK;
        }
    if (parse_uint(v, UINT_MAX, &n))
        return ss_fail(err, SS_ERR_INVALID, "%s: '%s' is not a number (or an unknown key)", k, v);
    if (!strcmp(k, "threads"))
        c->threads = (unsigned)n;
    else if (!strcmp(k, "state_skew_ms"))
        c->state_skew_ms = (int64_t)n;
    else if (!strcmp(k, "state_head_cache_ms"))
        c->state_head_cache_ms = (int64_t)n;
    else if (!strcmp(k, "state_token_cache_ms"))
        c->state_token_cache_ms = (int64_t)n;
    else if (!strcmp(k, "max_connections"))
        c->max_connections = (unsigned)n;
    else if (!strcmp(k, "max_connections_per_ip"))
        c->max_connections_per_ip = (unsigned)n;
    else if (!strcmp(k, "connection_timeout"))
        c->connection_timeout = (unsigned)n;
    else if (!strcmp(k, "lease_ttl_default"))
        c->ttl_default_ms = (int64_t)n * 1000;
    else if (!strcmp(k, "lease_ttl_min"))
        c->ttl_min_ms = (int64_t)n * 1000;
    else if (!strcmp(k, "lease_ttl_max"))
        c->ttl_max_ms = (int64_t)n * 1000;
    else if (!strcmp(k, "presign_put_max"))
        c->put_expires_max = (unsigned)n;
    else if (!strcmp(k, "presign_get"))
        c->get_expires = (unsigned)n;
    else
        return ss_fail(err, SS_ERR_INVALID, "unknown key '%s'", k);
    return SS_OK;
}

static ss_rc check(const ld_config *c, ss_err *err)
{
    if (!c->cert != !c->key) return ss_fail(err, SS_ERR_INVALID, "cert and key go together");
    /* 0 would mean "no limit" to libmicrohttpd: exactly what these keys are against. */
    if (c->max_connections < 1 || c->max_connections_per_ip < 1)
        return ss_fail(err, SS_ERR_INVALID,
                       "max_connections and max_connections_per_ip must be at least 1");
    if (c->connection_timeout < 1 || c->connection_timeout > 3600)
        return ss_fail(err, SS_ERR_INVALID, "connection_timeout must be 1..3600 seconds");
    if (c->ttl_min_ms < 1000 || c->ttl_min_ms > c->ttl_max_ms ||
        c->ttl_default_ms < c->ttl_min_ms || c->ttl_default_ms > c->ttl_max_ms)
        return ss_fail(err, SS_ERR_INVALID,
                       "lease TTLs: need 1 <= lease_ttl_min <= lease_ttl_default <= lease_ttl_max");
    if (c->put_expires_max < 1 || c->put_expires_max > SS_SIGV4_MAX_EXPIRES || c->get_expires < 1 ||
        c->get_expires > SS_SIGV4_MAX_EXPIRES)
        return ss_fail(err, SS_ERR_INVALID, "presign expiries must be 1..%d seconds",
                       SS_SIGV4_MAX_EXPIRES);
    /* A minute bounds how long a revoked token or a stale head may last (ld_state.h S7, S8). */
    if (c->state_skew_ms > 60000 || c->state_head_cache_ms > 60000 ||
        c->state_token_cache_ms > 60000)
        return ss_fail(err, SS_ERR_INVALID,
                       "state_skew_ms, state_head_cache_ms and state_token_cache_ms: 0..60000");
    return SS_OK;
}

/* The next line of text (its '\n' cut), or NULL at the end; *pos moves past it. */
static char *next_line(char *text, size_t len, size_t *pos)
{
    char *line = text + *pos, *nl;
    if (*pos >= len) return NULL;
    nl = memchr(line, '\n', len - *pos);
    if (nl) *nl = '\0';
    *pos = nl ? (size_t)(nl - text) + 1 : len;
    return line;
}

ss_rc ld_config_load(const char *path, ld_config *c, ss_err *err)
{
    char *text = NULL, *dir = NULL, *slash, *line;
    size_t len = 0, pos = 0;
    unsigned lineno = 0;
    ss_rc rc = ss_buf_read_secret(path, LD_CONFIG_MAX, &text, &len, err);

    if (rc) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return ss_fail(err, rc, "config %s", msg);
    }
    if (!(dir = strdup(path))) {
        rc = ss_fail(err, SS_ERR_NOMEM, "config: out of memory");
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        dir[0] = '\0';
    while ((line = next_line(text, len, &pos))) {
        char *s = trim(line), *eq;
        lineno++;
        if (!*s || *s == '#') continue;
        if (!(eq = strchr(s, '='))) {
            rc = ss_fail(err, SS_ERR_INVALID, "config %s:%u: expected key = value", path, lineno);
            goto out;
        }
        *eq = '\0';
        rc = apply(c, dir, trim(s), trim(eq + 1), err);
        if (rc) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ss_fail(err, rc, "config %s:%u: %s", path, lineno, msg);
            goto out;
        }
    }
    rc = check(c, err);
out:
    sodium_free(text); /* wipes: the file may hold the bucket secret */
    free(dir);
    return rc;
}

/* Bucket and prefix of s3://BUCKET/PREFIX, the prefix without its slashes at either end. */
static void split_url(const char *url, char *bucket, size_t bn, const char **ret_prefix,
                      size_t *ret_len)
{
    const char *b = url + strlen("s3://"), *slash = strchr(b, '/');
    const char *p = slash ? slash : b + strlen(b);
    size_t n;
    snprintf(bucket, bn, "%.*s", (int)(p - b), b);
    while (*p == '/')
        p++;
    n = strlen(p);
    while (n && p[n - 1] == '/')
        n--;
    *ret_prefix = p;
    *ret_len = n;
}

/* 1 when one of the prefixes is the other's or lies below it (whole components). */
static int prefix_overlaps(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    if (n == 0) return 1; /* a whole bucket holds everything in it */
    if (memcmp(a, b, n)) return 0;
    return an == bn || (an > n ? a[n] : b[n]) == '/';
}

int ld_url_overlaps(const char *a, const char *b)
{
    char ab[LD_URL_MAX], bb[LD_URL_MAX];
    const char *ap, *bp;
    size_t an, bn;
    split_url(a, ab, sizeof ab, &ap, &an);
    split_url(b, bb, sizeof bb, &bp, &bn);
    return !strcmp(ab, bb) && prefix_overlaps(ap, an, bp, bn);
}

void ld_config_store_opts(const ld_config *c, ss_store_opts *ret)
{
    /* Short deadlines: a commit waits on the bucket while holding the
     * repository's lease mutex, so a dead endpoint must fail, not hang. */
    *ret = (ss_store_opts){.endpoint = c->endpoint,
                           .region = c->region,
                           .access_key = c->access_key,
                           .secret_key = c->secret_key,
                           .session_token = c->session_token,
                           .ca_bundle = c->ca_bundle,
                           .timeout_ms = 30000,
                           .max_retries = 3};
}
