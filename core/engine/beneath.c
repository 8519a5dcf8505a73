/*
 * beneath: invariant 6 against this device's previous state, before a pull
 * applies anything.
 *
 * The decoder refuses a path that is malformed on its own (txn.c) and a
 * path below a symlink or file the same transaction makes. What it cannot
 * see is a path below an entry that an *earlier* transaction made a symlink
 * or a file: "out" applied as a link to /etc, then "out/passwd" upserted. No
 * device that built its transaction on the state this device holds writes
 * such an op (it would first make "out" a directory, in the same
 * transaction), so one that does is forged: SS_ERR_INTEGRITY (exit 3),
 * before the first file is written. Without this, the apply's own guard
 * (fsio refuses to write through a link) stopped the pull midway with
 * exit 1, after the transaction's earlier files were already in place.
 *
 * Memory stays bounded by path depth, not by the number of ops (invariant
 * 7): ops come in depth-first order, so the directories the transaction
 * makes that may still be ancestors form one chain.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "engine.h"

typedef struct chain {
    char **dir; /* directories this transaction upserts, each an ancestor of the next */
    size_t n, cap;
    char *clean; /* the last parent whose ancestors were all found directories */
} chain;

static int is_below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && path[n] == '/';
}

static int made_here(const chain *c, const char *dir)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->dir[i], dir)) return 1;
    return 0;
}

/* Every proper ancestor of path is a directory in the state, absent, or made by this txn. */
static ss_rc check_parents(ss_folder *f, chain *c, const char *path, uint64_t seq, ss_err *err)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    char *p = NULL; /* owned: the parent, cut at each ancestor in turn */
    ss_rc rc = SS_OK;
    if (!slash) return SS_OK;
    if (c->clean && strlen(c->clean) == len && !strncmp(c->clean, path, len)) return SS_OK;
    p = strndup(path, len);
    if (!p) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    for (char *s = p;; s++) {
        ss_state_row row;
        int found = 0, end = !*s;
        if (*s && *s != '/') continue;
        *s = '\0';
        if (!made_here(c, p)) {
            rc = ss_state_lookup(f->state, p, &row, &found, err);
            if (rc) goto fail;
        }
        if (found && row.kind != SS_TXN_DIR) {
            rc = ss_fail(err, SS_ERR_INTEGRITY,
                         "log/%020" PRIu64 " reaches %s below %s, which this device holds as a %s: "
                         "refusing a path through it",
                         seq, path, p, row.kind == SS_TXN_SYMLINK ? "symlink" : "file");
            goto fail;
        }
        if (end) break;
        *s = '/';
    }
    free(c->clean);
    c->clean = p;
    return SS_OK;
fail:
    free(p);
    return rc;
}

static ss_rc push_dir(chain *c, const char *path, ss_err *err)
{
    char *copy = strdup(path);
    if (!copy || SS_ARRAY_GROW(c->dir, c->n + 1, c->cap)) {
        free(copy);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    c->dir[c->n++] = copy;
    return SS_OK;
}

ss_rc eng_check_beneath(ss_folder *f, int fd, uint64_t seq, ss_err *err)
{
    eng_txn_iter it = {0};
    const ss_txn_entry *e = NULL;
    chain c = {0};
    ss_rc rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) goto done;
    for (;;) {
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
        while (c.n && !is_below(e->path, c.dir[c.n - 1]))
            free(c.dir[--c.n]);
        rc = check_parents(f, &c, e->path, seq, err);
        if (rc) goto done;
        if (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_DIR) {
            rc = push_dir(&c, e->path, err);
            if (rc) goto done;
        }
    }
done:
    eng_txn_close(&it);
    while (c.n)
        free(c.dir[--c.n]);
    free(c.dir);
    free(c.clean);
    return rc;
}
