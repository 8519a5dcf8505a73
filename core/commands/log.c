/*
 * log: `s3sync log` (ss_log): every transaction in the store, newest first,
 * collected by a walk (engine/walk.c) into a temporary database; and the
 * command line's paths as paths of the folder (ss_history_relpath).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "path.h"

/* --- command-line paths -------------------------------------------------------------- */

/*
 * norm ("/a/b/c", lexically normal) with symlinks resolved in its longest
 * existing ancestor; the last segment stays as named (it may be a link, or
 * gone). NULL when out of memory.
 */
static char *resolve_parent(const char *norm)
{
    char real[PATH_MAX];
    char *head = strdup(norm), *full = NULL; /* owned; full returned */
    if (!head) return NULL;
    if (!head[0]) {
        free(head);
        return strdup("/");
    }
    for (char *cut = strrchr(head, '/'); cut; cut = strrchr(head, '/')) {
        *cut = '\0';
        if (!realpath(head[0] ? head : "/", real)) continue;
        if (asprintf(&full, "%s/%s", strcmp(real, "/") ? real : "", norm + (cut - head) + 1) < 0)
            full = NULL;
        break;
    }
    free(head);
    return full;
}

ss_rc ss_history_relpath(ss_folder *f, const char *arg, char **ret_rel, ss_err *err)
{
    char *abs = NULL, *norm = NULL, *full = NULL; /* owned */
    char cwd[PATH_MAX];
    size_t n = 0, rootlen = strlen(f->root);
    ss_rc rc = SS_OK;
    *ret_rel = NULL;
    if (arg[0] != '/' && !getcwd(cwd, sizeof cwd))
        return ss_fail(err, SS_ERR_IO, "current directory: %s", strerror(errno));
    if (asprintf(&abs, "%s/%s", arg[0] == '/' ? "" : cwd, arg) < 0) {
        abs = NULL;
        goto nomem;
    }
    norm = malloc(strlen(abs) + 2);
    if (!norm) goto nomem;
    /* Lexically: drop empty and "." segments; ".." takes one back. */
    for (char *save = NULL, *seg = strtok_r(abs, "/", &save); seg;
         seg = strtok_r(NULL, "/", &save)) {
        if (!strcmp(seg, ".")) continue;
        if (!strcmp(seg, "..")) {
            while (n && norm[--n] != '/') {
            }
            continue;
        }
        n += (size_t)sprintf(norm + n, "/%s", seg);
    }
    norm[n] = '\0';
    full = resolve_parent(norm);
    if (!full) goto nomem;
    if (!strcmp(full, f->root)) {
        *ret_rel = strdup("");
    } else if (!strncmp(full, f->root, rootlen) && full[rootlen] == '/') {
        const char *rel = full + rootlen + 1;
        if (ss_path_validate(rel, strlen(rel), err))
            rc = ss_fail(err, SS_ERR_INVALID, "%s: not a path s3sync syncs", arg);
        else
            *ret_rel = strdup(rel);
    } else {
        rc = ss_fail(err, SS_ERR_INVALID, "%s is outside the synced folder %s", arg, f->root);
    }
    if (!rc && !*ret_rel) goto nomem;
    free(abs);
    free(norm);
    free(full);
    return rc;
nomem:
    free(abs);
    free(norm);
    free(full);
    return ss_fail(err, SS_ERR_NOMEM, "out of memory");
}

/* --- log ----------------------------------------------------------------------------- */

static const char log_schema[] =
    "CREATE TABLE txn(seq INTEGER PRIMARY KEY, time INTEGER, device TEXT, upserts INTEGER,"
    "  deletes INTEGER, bytes INTEGER, obj INTEGER, cp INTEGER, device_id TEXT, devices TEXT);"
    "CREATE TABLE path(seq INTEGER, path TEXT, del INTEGER);"
    "CREATE INDEX path_seq ON path(seq);";

typedef struct logw {
    sqlite3 *db;
    sqlite3_stmt *add_txn, *add_path;
    const char *filter; /* NULL: every transaction */
    size_t filter_len;
    int touched;
    uint64_t upserts, deletes, bytes;
} logw;

static ss_rc log_txn(void *ctx, const eng_walk_txn *t, int *ret_stop, ss_err *err)
{
    logw *l = ctx;
    (void)t;
    (void)err;
    *ret_stop = 0;
    l->touched = !l->filter;
    l->upserts = l->deletes = l->bytes = 0;
    return SS_OK;
}

static ss_rc log_op(void *ctx, const eng_walk_txn *t, ss_txn_reader *r, const ss_txn_entry *e,
                    ss_err *err)
{
    logw *l = ctx;
    (void)r;
    if (e->type == SS_TXN_DELETE)
        l->deletes++;
    else
        l->upserts++;
    if (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE) l->bytes += e->size;
    if (!l->filter || !ss_path_at_or_under(l->filter, l->filter_len, e->path, e->path_len))
        return SS_OK;
    l->touched = 1;
    sqlite3_bind_int64(l->add_path, 1, (sqlite3_int64)t->seq);
    sqlite3_bind_text(l->add_path, 2, e->path, (int)e->path_len, SQLITE_STATIC);
    sqlite3_bind_int(l->add_path, 3, e->type == SS_TXN_DELETE);
    return eng_tempdb_step(l->db, l->add_path, "add a path", err);
}

/* What a log transaction's device entries did, in words: "enrolled; revoked 0123456789abcdef". */
static void device_words(const ss_txn_header *h, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < h->n_devices && n < cap; i++) {
        char id[17];
        ss_device_id_short(h->devices[i].id, id);
        int k = h->devices[i].type == SS_TXN_DEV_ENROLL
                    ? snprintf(out + n, cap - n, "%senrolled", n ? "; " : "")
                    : snprintf(out + n, cap - n, "%srevoked %s", n ? "; " : "", id);
        if (k < 0) break;
        n += (size_t)k;
    }
}

static ss_rc log_done(void *ctx, const eng_walk_txn *t, ss_err *err)
{
    logw *l = ctx;
    sqlite3_stmt *q = l->add_txn;
    char id[17], words[256];
    if (!l->touched) return SS_OK;
    ss_device_id_short(t->h->device_id, id);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)t->seq);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)t->h->time_ns);
    sqlite3_bind_text(q, 3, t->h->device_name, (int)t->h->device_name_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)l->upserts);
    sqlite3_bind_int64(q, 5, (sqlite3_int64)l->deletes);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)l->bytes);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)t->object_size);
    sqlite3_bind_int(q, 8, t->checkpoint);
    sqlite3_bind_text(q, 9, id, -1, SQLITE_TRANSIENT);
    device_words(t->h, words, sizeof words);
    if (!t->checkpoint && words[0]) /* bindings outlive a reset: set it every time */
        sqlite3_bind_text(q, 10, words, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 10);
    return eng_tempdb_step(l->db, q, "add a transaction", err);
}

/* The paths of one transaction (filtered logs only), into *ret (owned; strings in it too). */
static ss_rc log_paths(logw *l, sqlite3_stmt *q, uint64_t seq, ss_log_path **ret, size_t *ret_n,
                       ss_err *err)
{
    ss_log_path *v = NULL; /* owned */
    size_t n = 0, cap = 0;
    int r;
    *ret = NULL;
    *ret_n = 0;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    for (;;) {
        r = sqlite3_step(q);
        if (r != SQLITE_ROW) break;
        if (SS_ARRAY_GROW(v, n + 1, cap)) break;
        v[n].deleted = sqlite3_column_int(q, 1);
        v[n].path = strdup((const char *)sqlite3_column_text(q, 0));
        if (!v[n].path) break;
        n++;
    }
    sqlite3_reset(q);
    if (r != SQLITE_DONE) {
        for (size_t i = 0; i < n; i++)
            free((char *)v[i].path);
        free(v);
        return r == SQLITE_ROW ? ss_fail(err, SS_ERR_NOMEM, "out of memory")
                               : eng_tempdb_fail(l->db, "read paths", err);
    }
    *ret = v;
    *ret_n = n;
    return SS_OK;
}

/* Hand out the collected transactions, newest first. */
static ss_rc log_emit(logw *l, ss_log_fn fn, void *ctx, ss_err *err)
{
    sqlite3_stmt *q = NULL, *qp = NULL; /* owned */
    ss_rc rc = SS_OK;
    int r;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT seq, time, device, upserts, deletes, bytes, obj, cp, device_id, "
                           "devices "
                           "FROM txn "
                           "ORDER BY seq DESC",
                           -1, &q, NULL) ||
        sqlite3_prepare_v2(l->db, "SELECT path, del FROM path WHERE seq = ?1 ORDER BY rowid", -1,
                           &qp, NULL)) {
        rc = eng_tempdb_fail(l->db, "read", err);
        goto out;
    }
    for (;;) {
        r = sqlite3_step(q);
        if (r == SQLITE_DONE) break;
        if (r != SQLITE_ROW) {
            rc = eng_tempdb_fail(l->db, "read", err);
            goto out;
        }
        ss_log_path *paths = NULL; /* owned */
        ss_log_entry e = {
            .seq = (uint64_t)sqlite3_column_int64(q, 0),
            .time_ns = (uint64_t)sqlite3_column_int64(q, 1),
            .device = (const char *)sqlite3_column_text(q, 2),
            .upserts = (uint64_t)sqlite3_column_int64(q, 3),
            .deletes = (uint64_t)sqlite3_column_int64(q, 4),
            .bytes = (uint64_t)sqlite3_column_int64(q, 5),
            .object_bytes = (uint64_t)sqlite3_column_int64(q, 6),
            .checkpoint = sqlite3_column_int(q, 7),
            .device_id = (const char *)sqlite3_column_text(q, 8),
            .devices = (const char *)sqlite3_column_text(q, 9),
        };
        if (l->filter) {
            rc = log_paths(l, qp, e.seq, &paths, &e.n_paths, err);
            if (rc) goto out;
        }
        e.paths = paths;
        rc = fn(ctx, &e, err);
        for (size_t i = 0; i < e.n_paths; i++)
            free((char *)paths[i].path);
        free(paths);
        if (rc) goto out;
    }
out:
    sqlite3_finalize(q);
    sqlite3_finalize(qp);
    return rc;
}

ss_rc ss_log(ss_folder *f, const char *path, ss_log_fn fn, void *ctx, ss_stats *stats, ss_err *err)
{
    logw l = {.filter = path && *path ? path : NULL};
    eng_walk w = {.txn = log_txn, .op = log_op, .txn_done = log_done, .ctx = &l};
    ss_rc rc;
    l.filter_len = l.filter ? strlen(l.filter) : 0;
    rc = eng_tempdb_open(log_schema, &l.db, err);
    if (rc) return rc;
    if (sqlite3_prepare_v2(l.db, "INSERT INTO txn VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                           -1, &l.add_txn, NULL) ||
        sqlite3_prepare_v2(l.db, "INSERT INTO path VALUES (?1, ?2, ?3)", -1, &l.add_path, NULL)) {
        rc = eng_tempdb_fail(l.db, "prepare", err);
        goto done;
    }
    rc = eng_walk_log(f, &w, err);
    stats->seq = w.head;
    if (rc) goto done;
    rc = log_emit(&l, fn, ctx, err);
done:
    sqlite3_finalize(l.add_txn);
    sqlite3_finalize(l.add_path);
    sqlite3_close(l.db);
    eng_stats_from_store(f, stats, ENG_STATS_ALL);
    return rc;
}
