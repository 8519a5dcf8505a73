/* ignore: parsing and matching of .s3syncignore patterns (see ignore.h). */
#include "ignore.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "path.h"
#include "fsio.h"

typedef struct pattern {
    char *glob;
    int negate, dir_only, anchored;
} pattern;

struct ss_ignore {
    pattern *v;
    size_t n, cap;
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
    if (SS_ARRAY_GROW(ign->v, ign->n + 1, ign->cap)) return SS_ERR_NOMEM;
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

/*
 * The ignore file, opened: in the folder beneath its root, no symlink
 * followed anywhere (a synced symlink to /dev/zero or to a fifo is refused,
 * not read); an absolute path the user named as given. Never waits on a
 * fifo (O_NONBLOCK). -1 with errno when it cannot.
 */
static int open_ignore(const char *root, const char *file)
{
    int root_fd, fd = -1, e;
    ss_rc rc;
    if (file && file[0] == '/') return open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) return -1;
    rc = ss_fs_open(root_fd, file ? file : SS_IGNORE_FILE, O_RDONLY | O_NONBLOCK, &fd, NULL);
    e = errno;
    close(root_fd);
    errno = e;
    return rc ? -1 : fd;
}

static ss_rc too_big(const char *shown, ss_err *err)
{
    return ss_fail(err, SS_ERR_IO, "ignore file %s is over %d KiB, more than patterns need", shown,
                   SS_IGNORE_MAX / 1024);
}

/* All of fd, a regular file of at most SS_IGNORE_MAX bytes, NUL-terminated in *ret_text. */
static ss_rc read_capped(int fd, const char *shown, char **ret_text, ss_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    ssize_t n = 1;
    *ret_text = NULL;
    if (fstat(fd, &st))
        return ss_fail(err, SS_ERR_IO, "ignore file %s: %s", shown, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ss_fail(err, SS_ERR_IO, "ignore file %s is not a regular file", shown);
    if (st.st_size > SS_IGNORE_MAX) return too_big(shown, err);
    buf = malloc(SS_IGNORE_MAX + 2);
    if (!buf) return ss_fail(err, SS_ERR_NOMEM, "ignore file %s: out of memory", shown);
    while (len <= SS_IGNORE_MAX && n) { /* it may grow while read: the cap holds anyway */
        n = read(fd, buf + len, SS_IGNORE_MAX + 1 - len);
        if (n > 0) len += (size_t)n;
        if (n < 0 && errno != EINTR) break;
    }
    if (n < 0 || len > SS_IGNORE_MAX) {
        ss_rc rc = n < 0 ? ss_fail(err, SS_ERR_IO, "ignore file %s: %s", shown, strerror(errno))
                         : too_big(shown, err);
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *ret_text = buf;
    return SS_OK;
}

ss_rc ss_ignore_load(const char *root, const char *file, ss_ignore **ret_ign, ss_err *err)
{
    char *shown = NULL, *text = NULL;
    int fd;
    ss_rc rc;
    *ret_ign = NULL;
    if ((file && file[0] == '/'
             ? asprintf(&shown, "%s", file)
             : asprintf(&shown, "%s/%s", root, file ? file : SS_IGNORE_FILE)) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    fd = open_ignore(root, file);
    if (fd < 0 && errno == ENOENT && !file) { /* no .s3syncignore: nothing is ignored */
        free(shown);
        return ss_ignore_parse("", ret_ign, err);
    }
    if (fd < 0 && (errno == ELOOP || errno == EXDEV || errno == ENOTDIR))
        rc = ss_fail(err, SS_ERR_IO,
                     "ignore file %s is a symlink or lies below one: refusing to follow it "
                     "(make it a regular file)",
                     shown);
    else if (fd < 0)
        rc = ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "ignore file %s: %s%s",
                     shown, strerror(errno),
                     file ? " (named by ignore_file: s3sync config set ignore_file PATH)" : "");
    else
        rc = read_capped(fd, shown, &text, err);
    if (fd >= 0) close(fd);
    if (rc) goto done;
    rc = ss_ignore_parse(text, ret_ign, err);
done:
    free(text);
    free(shown);
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
    char buf[SS_PATH_MAX + 1]; /* the longest valid path and its NUL */
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
