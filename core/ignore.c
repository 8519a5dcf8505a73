/* ignore: parsing and matching of .s3syncignore patterns (see ignore.h). */
#include "ignore.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pattern {
    char *glob;
    int negate, dir_only, anchored;
} pattern;

struct ss_ignore {
    pattern *v;
    size_t n;
};

static ss_rc add_line(ss_ignore *ign, char *line)
{
    pattern p = {0};
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = '\0';
    if (!len || line[0] == '#') return SS_OK;
    if (line[0] == '!') p.negate = 1, line++, len--;
    if (len && line[len - 1] == '/') p.dir_only = 1, line[--len] = '\0';
    if (!len) return SS_OK;
    if (!strncmp(line, "**/", 3)) {
        line += 3;
    } else {
        p.anchored = strchr(line, '/') != NULL;
        if (line[0] == '/') line++;
    }
    pattern *nv = realloc(ign->v, (ign->n + 1) * sizeof *nv);
    if (!nv) return SS_ERR_NOMEM;
    ign->v = nv;
    if (!(p.glob = strdup(line))) return SS_ERR_NOMEM;
    ign->v[ign->n++] = p;
    return SS_OK;
}

ss_rc ss_ignore_parse(const char *text, ss_ignore **ret_ign, ss_err *err)
{
    ss_ignore *ign = calloc(1, sizeof *ign);
    char *copy = strdup(text), *save = NULL;
    *ret_ign = NULL;
    if (!ign || !copy) goto nomem;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (add_line(ign, line)) goto nomem;
    free(copy);
    *ret_ign = ign;
    return SS_OK;
nomem:
    free(copy);
    ss_ignore_free(ign);
    return ss_fail(err, SS_ERR_NOMEM, "ignore patterns: out of memory");
}

ss_rc ss_ignore_load(const char *root, const char *file, ss_ignore **ret_ign, ss_err *err)
{
    char *path = NULL, *text = NULL;
    size_t len = 0;
    FILE *f = NULL;
    ss_rc rc;
    *ret_ign = NULL;
    if ((file && file[0] == '/'
             ? asprintf(&path, "%s", file)
             : asprintf(&path, "%s/%s", root, file ? file : ".s3syncignore")) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    f = fopen(path, "re");
    if (!f && (errno != ENOENT || file)) {
        rc = ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "ignore file %s: %s%s",
                     path, strerror(errno),
                     file ? " (named by ignore_file: s3sync config set ignore_file PATH)" : "");
        free(path);
        return rc;
    }
    if (f) {
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while (m && (n = fread(buf, 1, sizeof buf, f)))
            fwrite(buf, 1, n, m);
        if (m) fclose(m);
        fclose(f);
    }
    rc = ss_ignore_parse(text ? text : "", ret_ign, err);
    free(text);
    free(path);
    return rc;
}

void ss_ignore_free(ss_ignore *ign)
{
    if (!ign) return;
    for (size_t i = 0; i < ign->n; i++)
        free(ign->v[i].glob);
    free(ign->v);
    free(ign);
}

static int match_one(const pattern *p, const char *path, int is_dir)
{
    const char *base = strrchr(path, '/');
    if (p->dir_only && !is_dir) return 0;
    if (p->anchored) return !fnmatch(p->glob, path, FNM_PATHNAME);
    return !fnmatch(p->glob, base ? base + 1 : path, 0);
}

/* The last matching pattern decides one path, ignoring its parents. */
static int decide(const ss_ignore *ign, const char *path, int is_dir)
{
    int ignored = 0;
    for (size_t i = 0; i < ign->n; i++)
        if (match_one(&ign->v[i], path, is_dir)) ignored = !ign->v[i].negate;
    return ignored;
}

int ss_ignore_match(const ss_ignore *ign, const char *path, int is_dir)
{
    char buf[4097];
    size_t len = strlen(path);
    if (!ign || !ign->n || len >= sizeof buf) return 0;
    memcpy(buf, path, len + 1);
    /* A parent directory ignored hides everything below it, as in git. */
    for (char *s = strchr(buf, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        int hit = decide(ign, buf, 1);
        *s = '/';
        if (hit) return 1;
    }
    return decide(ign, buf, is_dir);
}
