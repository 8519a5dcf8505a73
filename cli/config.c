/* config: the `s3sync config` command and XDG paths (see config.h). */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3sync.h"

#define EXIT_USAGE 2

int cli_xdg_config_file(const char *leaf, char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;
    buf[0] = '\0';
    /* The spec: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/s3sync/%s", xdg, leaf);
    else if (home && *home)
        n = snprintf(buf, cap, "%s/.config/s3sync/%s", home, leaf);
    else
        return 0;
    if (n < 0 || (size_t)n >= cap || access(buf, F_OK)) {
        buf[0] = '\0';
        return 0;
    }
    return 1;
}

static int fail(const cli_config *c, int code, const char *msg)
{
    if (c->json) {
        json_t *o = json_pack("{s:s, s:b, s:s, s:i}", "command", "config", "ok", 0, "error", msg,
                              "exit", code);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text) puts(text);
        free(text);
        json_decref(o);
    }
    cli_out_line(c->out, 'e', "s3sync config", msg);
    return code;
}

static int print_json(json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) puts(text);
    free(text);
    json_decref(o);
    return 0;
}

/* Every known key; all: unset ones and the help too (config list), else only what is set. */
static int show(const cli_config *c, const char *dir, int all)
{
    size_t n;
    const ss_setting_info *keys = ss_folder_settings(&n);
    json_t *set = c->json ? json_object() : NULL, *help = c->json && all ? json_object() : NULL;
    for (size_t i = 0; i < n; i++) {
        char *v = NULL;
        ss_err err = {{0}};
        ss_rc rc = ss_folder_get_setting(dir, keys[i].name, &v, &err);
        if (rc && rc != SS_ERR_NOT_FOUND) {
            json_decref(set);
            json_decref(help);
            return fail(c, 1, err.msg);
        }
        if (set && v) json_object_set_new(set, keys[i].name, json_string(v));
        if (help) json_object_set_new(help, keys[i].name, json_string(keys[i].help));
        if (!c->json && all)
            printf("%-16s %-24s %s\n", keys[i].name, v ? v : "(unset)", keys[i].help);
        else if (!c->json && v)
            printf("%s = %s\n", keys[i].name, v);
        free(v);
    }
    if (!c->json) return 0;
    json_t *o = json_pack("{s:s, s:b, s:o}", "command", "config", "ok", 1, "settings", set);
    if (help) json_object_set_new(o, "help", help);
    return print_json(o);
}

static int get(const cli_config *c, const char *dir, const char *key)
{
    char *v = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_folder_get_setting(dir, key, &v, &err);
    if (rc == SS_ERR_NOT_FOUND && strstr(err.msg, "is not set")) {
        size_t n;
        const ss_setting_info *keys = ss_folder_settings(&n);
        for (size_t i = 0; i < n; i++)
            if (!strcmp(keys[i].name, key))
                snprintf(err.msg, sizeof err.msg, "%s is not set: %s", key, keys[i].help);
        /* As git config: an unset key is exit 1, said on stderr unless -q. */
        if (c->quiet && !c->json) return 1;
        return fail(c, 1, err.msg);
    }
    if (rc) return fail(c, rc == SS_ERR_INVALID ? EXIT_USAGE : 1, err.msg);
    if (c->json)
        print_json(json_pack("{s:s, s:b, s:s, s:s}", "command", "config", "ok", 1, "key", key,
                             "value", v));
    else
        puts(v);
    free(v);
    return 0;
}

static int set(const cli_config *c, const char *dir, const char *key, const char *value)
{
    ss_err err = {{0}};
    ss_rc rc = ss_folder_set_setting(dir, key, value, c->store_opts, &err);
    if (rc)
        return fail(c,
                    rc == SS_ERR_INVALID     ? EXIT_USAGE
                    : rc == SS_ERR_TEMPORARY ? 75
                                             : 1,
                    err.msg);
    if (c->json)
        print_json(json_pack("{s:s, s:b, s:s, s:o}", "command", "config", "ok", 1, "key", key,
                             "value", value ? json_string(value) : json_null()));
    return 0;
}

int cli_config_run(const cli_config *c, int argc, char **argv)
{
    char *dir = NULL;
    ss_err err = {{0}};
    const char *sub = argc ? argv[0] : "";
    int code;
    int args_ok = argc == 0 || (argc == 1 && !strcmp(sub, "list")) ||
                  (argc == 2 && (!strcmp(sub, "get") || !strcmp(sub, "unset"))) ||
                  (argc == 3 && !strcmp(sub, "set"));
    if (!args_ok)
        return fail(c, EXIT_USAGE,
                    "usage: s3sync config [list | get KEY | set KEY VALUE | unset KEY]");
    ss_rc rc = ss_folder_find(c->dir ? c->dir : ".", &dir, &err);
    if (rc) return fail(c, 1, err.msg);
    if (argc == 0)
        code = show(c, dir, 0);
    else if (!strcmp(sub, "list"))
        code = show(c, dir, 1);
    else if (!strcmp(sub, "get"))
        code = get(c, dir, argv[1]);
    else if (!strcmp(sub, "set"))
        code = set(c, dir, argv[1], argv[2]);
    else
        code = set(c, dir, argv[1], NULL);
    free(dir);
    return code;
}
