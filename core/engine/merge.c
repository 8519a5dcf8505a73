/*
 * merge: the folder's scan against the state, both in path order, the one
 * walk that push, status and the dry runs make over local changes
 * (eng_merge); and the count of those changes that status and a dry run
 * report (eng_local_changes).
 */
#include <string.h>

#include "engine.h"
#include "path.h"

ss_rc eng_merge(ss_folder *f, ss_warn_fn warn, void *warn_ctx, off_t read_max, eng_merge_fn fn,
                void *ctx, ss_err *err)
{
    eng_scan sc = {0};
    ss_state_iter *it = NULL;
    const ss_scan_entry *e = NULL;
    const ss_state_row *r = NULL;
    ss_rc rc;
    rc = eng_scan_new(f, warn, warn_ctx, &sc, err);
    if (rc) goto out;
    rc = ss_state_iter_new(f->state, &it, err);
    if (rc) goto out;
    rc = ss_state_iter_next(it, &r, err);
    if (rc) goto out;
    if (!r && read_max) ss_scan_set_readahead(sc.sc, read_max); /* every file is new */
    rc = eng_scan_next(&sc, &e, err);
    if (rc) goto out;
    while (e || r) {
        int c = !e ? 1 : !r ? -1 : ss_path_cmp(e->path, strlen(e->path), r->path, strlen(r->path));
        rc = fn(ctx, c > 0 ? NULL : e, c < 0 ? NULL : r, err);
        if (rc) goto out;
        if (c <= 0) {
            rc = eng_scan_next(&sc, &e, err);
            if (rc) goto out;
        }
        if (c >= 0) {
            rc = ss_state_iter_next(it, &r, err);
            if (rc) goto out;
        }
    }
out:
    ss_state_iter_free(it);
    return eng_scan_end(&sc, rc, err);
}

typedef struct counted {
    ss_folder *f;
    uint64_t files, bytes, chunked;
} counted;

/* 1 when e holds what row r records; a file that cannot be read counts as changed (push warns). */
static int same_as_row(ss_folder *f, const ss_state_row *r, const ss_scan_entry *e)
{
    ss_err ignored = {{0}};
    int match = eng_stat_matches(r, &e->st);
    if (!match && eng_local_matches(f, r, e->path, &e->st, &match, &ignored)) match = 0;
    return match;
}

static ss_rc count_one(void *ctx, const ss_scan_entry *e, const ss_state_row *r, ss_err *err)
{
    counted *n = ctx;
    (void)err;
    if (e && (!r || !same_as_row(n->f, r, e))) {
        n->files++;
        if (e->kind == SS_TXN_FILE) n->bytes += (uint64_t)e->st.st_size;
        if (e->kind == SS_TXN_FILE && (uint64_t)e->st.st_size > n->f->limits.inline_limit)
            n->chunked += (uint64_t)e->st.st_size;
    }
    if (!e && !ss_ignore_match(n->f->ign, r->path, r->kind == SS_TXN_DIR) &&
        !ss_path_validate(r->path, strlen(r->path), NULL)) /* push forgets those */
        n->files++;
    return SS_OK;
}

ss_rc eng_local_changes(ss_folder *f, uint64_t *ret_files, uint64_t *ret_bytes,
                        uint64_t *ret_chunked, ss_err *err)
{
    counted n = {.f = f};
    ss_rc rc;
    *ret_files = 0;
    *ret_bytes = 0;
    if (ret_chunked) *ret_chunked = 0;
    rc = eng_merge(f, NULL, NULL, 0, count_one, &n, err);
    if (rc) return rc;
    *ret_files = n.files;
    *ret_bytes = n.bytes;
    if (ret_chunked) *ret_chunked = n.chunked;
    return SS_OK;
}
