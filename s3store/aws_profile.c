/* aws_profile: the AWS CLI's shared credentials and config files (see aws_profile.h). */
#include "aws_profile.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void wipe_free(char *s)
{
    if (s) sodium_memzero(s, strlen(s));
    free(s);
}

void ss_aws_profile_clear(ss_aws_profile *p)
{
    wipe_free(p->access_key);
    wipe_free(p->secret_key);
    wipe_free(p->session_token);
    free(p->region);
    free(p->endpoint_url);
    free(p->unsupported);
    memset(p, 0, sizeof *p);
}

/* [name] in credentials; [default], [profile name] in config. */
static int section_is(const char *s, size_t n, const char *name, int is_config)
{
    size_t nl = strlen(name);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (is_config && n > 8 && !strncmp(s, "profile", 7) && isspace((unsigned char)s[7])) {
        s += 8, n -= 8;
        while (n && isspace((unsigned char)*s))
            s++, n--;
    } else if (is_config && strcmp(name, "default")) {
        return 0; /* in config, only "default" goes without the word profile */
    }
    return n == nl && !strncmp(s, name, nl);
}

static void take(char **dst, const char *v, size_t n)
{
    if (!*dst) *dst = strndup(v, n);
}

static void set_key(ss_aws_profile *p, const char *k, size_t kl, const char *v, size_t vl)
{
#define IS(name) (kl == strlen(name) && !strncmp(k, name, kl))
    if (IS("aws_access_key_id"))
        take(&p->access_key, v, vl);
    else if (IS("aws_secret_access_key"))
        take(&p->secret_key, v, vl);
    else if (IS("aws_session_token"))
        take(&p->session_token, v, vl);
    else if (IS("region"))
        take(&p->region, v, vl);
    else if (IS("credential_process") || IS("role_arn") || IS("sso_session") ||
             IS("sso_start_url") || IS("web_identity_token_file"))
        take(&p->unsupported, k, kl);
#undef IS
}

/* One "key = value" line of the profile: top level, or indented under "s3 =". */
typedef struct line_state {
    int in_s3;
    char *endpoint, *s3_endpoint;
} line_state;

static void profile_line(ss_aws_profile *p, line_state *ls, const char *k, size_t rest,
                         int indented)
{
    const char *eq = memchr(k, '=', rest);
    if (!eq) return;
    size_t kl = (size_t)(eq - k);
    const char *v = eq + 1, *end = k + rest;
    while (kl && isspace((unsigned char)k[kl - 1]))
        kl--;
    while (v < end && isspace((unsigned char)*v))
        v++;
    size_t vl = (size_t)(end - v);
    while (vl && isspace((unsigned char)v[vl - 1]))
        vl--;
    int is_ep = kl == 12 && !strncmp(k, "endpoint_url", 12);
    if (indented) {
        if (ls->in_s3 && is_ep) take(&ls->s3_endpoint, v, vl);
        return;
    }
    ls->in_s3 = kl == 2 && !strncmp(k, "s3", 2) && !vl;
    if (is_ep)
        take(&ls->endpoint, v, vl);
    else
        set_key(p, k, kl, v, vl);
}

void ss_aws_profile_parse(const char *text, const char *name, int is_config, ss_aws_profile *p)
{
    line_state ls = {0};
    int in = 0;
    for (const char *l = text; l && *l;) {
        size_t n = strcspn(l, "\n");
        const char *next = l[n] ? l + n + 1 : l + n, *k = l;
        int indented = *l == ' ' || *l == '\t';
        while (k < l + n && isspace((unsigned char)*k))
            k++;
        size_t rest = (size_t)(l + n - k);
        if (rest && *k == '[') {
            const char *close = memchr(k, ']', rest);
            in = close && section_is(k + 1, (size_t)(close - k - 1), name, is_config);
            p->found |= in;
            ls.in_s3 = 0;
        } else if (in && rest && *k != '#' && *k != ';') {
            profile_line(p, &ls, k, rest, indented);
        }
        l = next;
    }
    /* The first file to name an endpoint wins; within it an s3 block beats the profile's own. */
    if (!p->endpoint_url) {
        p->endpoint_url = ls.s3_endpoint ? ls.s3_endpoint : ls.endpoint;
        if (ls.s3_endpoint)
            ls.s3_endpoint = NULL;
        else
            ls.endpoint = NULL;
    }
    free(ls.endpoint);
    free(ls.s3_endpoint);
}

/* env's path, else ~/.aws/leaf; a leading "~/" is the home directory, as the AWS CLI does. */
static char *file_path(const char *env, const char *leaf)
{
    const char *v = getenv(env), *home = getenv("HOME");
    char *out = NULL;
    if (v && *v && strncmp(v, "~/", 2)) return strdup(v);
    if (!home || !*home) return NULL;
    if (v && *v) return asprintf(&out, "%s%s", home, v + 1) < 0 ? NULL : out;
    return asprintf(&out, "%s/.aws/%s", home, leaf) < 0 ? NULL : out;
}

/*
 * An unreadable file is an error only when a profile was named: as the AWS
 * CLI, a cron job or a sudo run with credentials in the environment must not
 * fail on a $HOME/.aws it cannot read.
 */
static ss_rc parse_file(const char *path, const char *name, int is_config, int named,
                        ss_aws_profile *p, ss_err *err)
{
    FILE *f = path ? fopen(path, "re") : NULL;
    char *text = NULL;
    size_t len = 0;
    if (!f) {
        if (!path || errno == ENOENT || !named) return SS_OK;
        return ss_fail(err, SS_ERR_INVALID, "AWS %s file %s: %s",
                       is_config ? "config" : "credentials", path, strerror(errno));
    }
    FILE *m = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while (m && (n = fread(buf, 1, sizeof buf, f)))
        fwrite(buf, 1, n, m);
    fclose(f);
    if (!m || fclose(m)) {
        free(text);
        return ss_fail(err, SS_ERR_NOMEM, "read %s: out of memory", path);
    }
    ss_aws_profile_parse(text, name, is_config, p);
    sodium_memzero(text, len);
    free(text);
    return SS_OK;
}

ss_rc ss_aws_profile_load(const char *name, ss_aws_profile *ret, ss_err *err)
{
    const char *env = getenv("AWS_PROFILE");
    int named = (name && *name) || (env && *env);
    char *cred = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    char *conf = file_path("AWS_CONFIG_FILE", "config");
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    if (!name || !*name) name = env && *env ? env : "default";
    snprintf(ret->name, sizeof ret->name, "%s", name);
    rc = parse_file(cred, name, 0, named, ret, err);
    if (rc) goto fail;
    rc = parse_file(conf, name, 1, named, ret, err);
    if (rc) goto fail;
    if (named && !ret->found) {
        rc = ss_fail(err, SS_ERR_INVALID, "AWS profile '%s' is in neither %s nor %s", name,
                     cred ? cred : "~/.aws/credentials", conf ? conf : "~/.aws/config");
        goto fail;
    }
    free(cred);
    free(conf);
    return SS_OK;
fail:
    ss_aws_profile_clear(ret);
    free(cred);
    free(conf);
    return rc;
}
