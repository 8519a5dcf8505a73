/*
 * history: walking the whole log (eng_walk_log, shared with restore.c),
 * `s3sync log` and `s3sync verify` (see history.h).
 *
 * Design notes.
 *   H1. Every log object is verified exactly as pull verifies it, with pull's
 *       own helpers (engine.h): eng_fetch_txn (frame, chain from log/1 on),
 *       eng_check_txn (every op and chunk ref decoded), and only then is the
 *       transaction handed out, decoded a second time from the stage.
 *   H2. A broken link ends the walk: nothing after a log object that failed
 *       (or a missing one) can be verified, since its successor's context
 *       binds chain(N). The walk says where (eng_walk.broken_key).
 *   H3. Memory barely grows with the history: transaction summaries and
 *       chunk locations go to a temporary SQLite database on disk; only the
 *       listing (16 bytes per log object, as pull's) stays in memory.
 *   H4. verify reports a bad data object and goes on to the next one; a
 *       store that cannot be reached (SS_ERR_TEMPORARY) ends it as an error,
 *       not as a problem of the repository.
 */
#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "path.h"

/* --- the walk ------------------------------------------------------------------------ */

/* Hand out the ops of a verified, staged transaction. */
static ss_rc hand_out(ss_folder *f, eng_walk *w, int fd, eng_walk_txn *t, int *ret_stop,
                      ss_err *err)
{
    eng_staged src = {fd, 0};
    ss_store_reader rd;
    ss_txn_reader *r = NULL; /* owned */
    const ss_txn_entry *e;
    ss_rc rc = eng_open_txn(f, &src, &rd, t->seq, &r, err);
    *ret_stop = 0;
    if (rc) goto out;
    t->h = ss_txn_reader_header(r);
    if (w->txn && ((rc = w->txn(w->ctx, t, ret_stop, err)) || *ret_stop)) goto out;
    while (!(rc = ss_txn_next(r, &e, err)) && e)
        if (w->op && (rc = w->op(w->ctx, t, r, e, err))) break;
    if (!rc && w->txn_done) rc = w->txn_done(w->ctx, t, err);
out:
    t->h = NULL;
    ss_txn_reader_free(r);
    return rc;
}

/*
 * Log objects are fetched in batches, in parallel (ss_xfer), then verified
 * one by one in order: a GET of a small object costs a round trip or more
 * (on RGW ~40 ms: headers and body come in two segments), so one at a time
 * the walk would be bound by latency. A batch is bounded in objects and
 * bytes; an object larger than PREFETCH_ONE is streamed alone.
 */
#define PREFETCH_BYTES (32u << 20)
#define PREFETCH_ONE (8u << 20)

static void got_log(void *ctx, ss_rc rc, const ss_err *err)
{
    eng_fetched *p = ctx;
    p->rc = rc;
    if (rc) snprintf(p->err.msg, sizeof p->err.msg, "%s", err ? err->msg : ss_strerror(rc));
}

ss_rc eng_prefetch(ss_xfer *x, const eng_log_list *l, size_t i, size_t end, eng_fetched *b,
                   size_t *ret_n, ss_err *err)
{
    size_t n = 0, bytes = 0;
    ss_rc rc = SS_OK;
    /* Size 0: unknown (a lockd listing) or empty; either way streamed, alone. */
    while (i + n < end && n < ENG_PREFETCH_MAX && l->sizes[i + n] &&
           l->sizes[i + n] <= PREFETCH_ONE && bytes + l->sizes[i + n] <= PREFETCH_BYTES) {
        char key[SS_KEY_NAME_MAX];
        eng_fetched *p = &b[n];
        memset(p, 0, sizeof *p);
        p->len = (size_t)l->sizes[i + n];
        if (!(p->buf = malloc(p->len ? p->len : 1))) {
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(key, sizeof key, SS_KEY_LOG_FMT, l->seqs[i + n]);
        bytes += p->len;
        n++;
        if ((rc = ss_xfer_get(x, key, 0, p->len, p->buf, got_log, p))) {
            rc = ss_fail(err, rc, "fetch %s: %s", key, ss_strerror(rc));
            break;
        }
    }
    ss_xfer_wait(x, NULL);                        /* each object's outcome is in b */
    if (!n && !rc) memset(&b[n++], 0, sizeof *b); /* too big or size unknown: streamed */
    *ret_n = n;
    return rc;
}

/* Verify one listed object (prefetched or streamed) and hand out its ops. */
static ss_rc walk_one(ss_folder *f, eng_walk *w, eng_walk_txn *t, const eng_fetched *p,
                      uint8_t chain[32], int *ret_stop, ss_err *err)
{
    uint8_t next[32];
    int fd = -1;             /* owned: the staged plaintext */
    ss_devices *devs = NULL; /* owned: the device table after it */
    ss_rc rc = p->rc;
    if (rc && err) *err = p->err;
    if (!rc) rc = eng_fetch_txn(f, t->seq, chain, p->buf, p->len, &fd, next, NULL, err);
    if (!rc) rc = eng_check_txn(f, fd, t->seq, chain, w->devices, &devs, err);
    if (!rc) {
        ss_devices_free(w->devices);
        w->devices = devs;
    }
    if (rc == SS_ERR_INTEGRITY || rc == SS_ERR_NOT_FOUND) { /* H2 */
        w->broken = 1;
        snprintf(w->broken_key, sizeof w->broken_key, SS_KEY_LOG_FMT, t->seq);
    }
    if (!rc) rc = hand_out(f, w, fd, t, ret_stop, err);
    if (fd >= 0) close(fd);
    if (!rc && !*ret_stop) {
        w->last = t->seq;
        memcpy(chain, next, 32);
    }
    return rc;
}

/* Hand out checkpoints/<seq> (verified whole first) as the walk's first "transaction". */
static ss_rc walk_cp(ss_folder *f, eng_walk *w, uint64_t seq, uint64_t size, uint8_t chain[32],
                     int *ret_stop, ss_err *err)
{
    eng_walk_txn t = {.seq = seq, .object_size = size, .checkpoint = 1};
    uint64_t time_ns = 0;
    int fd = -1;             /* owned */
    ss_devices *devs = NULL; /* owned: its device table */
    ss_rc rc = eng_fetch_checkpoint(f, seq, &fd, chain, &time_ns, &devs, err);
    *ret_stop = 0;
    if (!rc && w->cp_ok && !w->cp_ok(w->ctx, seq, time_ns))
        rc = SS_ERR_NOT_FOUND; /* not this one */
    if (!rc) {
        ss_devices_free(w->devices);
        w->devices = devs;
        devs = NULL;
    }
    ss_devices_free(devs);
    if (!rc) rc = hand_out(f, w, fd, &t, ret_stop, err);
    if (!rc) w->start = w->last = seq;
    if (fd >= 0) close(fd);
    return rc;
}

/*
 * Where the walk starts (H1 with checkpoints): the newest checkpoint at or
 * before upto that cp_ok accepts (ENG_FROM_NEWEST), else log/1; or log/1, and
 * the oldest checkpoint when gc took log/1 (ENG_FROM_FIRST). A checkpoint
 * that fails verification makes way for an older one (ENG_FROM_NEWEST).
 */
static ss_rc walk_start(ss_folder *f, eng_walk *w, const eng_log_list *cps, eng_log_list *l,
                        uint8_t chain[32], int *ret_stop, ss_err *err)
{
    ss_err bad = {{0}}; /* a checkpoint that failed verification: said if nothing else serves */
    ss_rc rc = SS_ERR_NOT_FOUND, bad_rc = SS_OK;
    *ret_stop = 0;
    for (size_t j = cps->n; w->from == ENG_FROM_NEWEST && j-- > 0 && rc;) {
        if (w->upto && cps->seqs[j] > w->upto) continue;
        rc = walk_cp(f, w, cps->seqs[j], cps->sizes[j], chain, ret_stop, &bad);
        if (rc == SS_ERR_INTEGRITY)
            bad_rc = rc;
        else if (rc && rc != SS_ERR_NOT_FOUND)
            return ss_fail(err, rc, "%s", bad.msg);
    }
    if (!rc) return SS_OK;
    memset(chain, 0, 32);
    if ((rc = eng_list_log_after(f, 0, l, NULL)) && rc != SS_ERR_INTEGRITY)
        return ss_fail(err, rc, "list the log: %s", ss_strerror(rc));
    if ((l->n && l->seqs[0] == 1) || !cps->n) return SS_OK;
    /* gc took log/1: a state before the oldest checkpoint is gone */
    if (bad_rc) return ss_fail(err, bad_rc, "%s", bad.msg);
    if (w->upto && w->upto < cps->seqs[0])
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "sequence %" PRIu64 " is no longer kept: gc removed what came before "
                       "checkpoints/%020" PRIu64,
                       w->upto, cps->seqs[0]);
    if (w->from == ENG_FROM_NEWEST)
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "that state is no longer kept: gc removed what came before "
                       "checkpoints/%020" PRIu64,
                       cps->seqs[0]);
    if ((rc = walk_cp(f, w, cps->seqs[0], cps->sizes[0], chain, ret_stop, err))) {
        w->broken = 1;
        snprintf(w->broken_key, sizeof w->broken_key, SS_KEY_CHECKPOINT_FMT, cps->seqs[0]);
        return rc;
    }
    eng_log_list_free(l);
    return SS_OK;
}

/* A checkpoint after the start, reached by the walk: verify can compare what it records. */
static void reached(eng_walk *w, const eng_log_list *cps, size_t *j, uint64_t seq,
                    const uint8_t chain[32])
{
    while (*j < cps->n && cps->seqs[*j] <= seq) {
        if (cps->seqs[*j] == seq && seq > w->start && w->cp_check)
            w->cp_check(w->ctx, seq, chain, w->devices);
        (*j)++;
    }
}

ss_rc eng_walk_log(ss_folder *f, eng_walk *w, ss_err *err)
{
    eng_log_list l = {0}, cps = {0}; /* owned */
    ss_xfer *x = NULL;               /* owned */
    eng_fetched *b = NULL;           /* owned, with each buf */
    uint8_t chain[32] = {0};
    size_t run = 0, end, j = 0;
    ss_rc rc = SS_OK;
    int stop = 0;
    w->head = w->last = w->start = 0;
    w->broken = 0;
    w->broken_key[0] = '\0';
    ss_devices_free(w->devices);
    w->devices = NULL;
    if ((rc = ss_devices_new(&w->devices, err)) || (rc = eng_list_checkpoints(f, &cps, err)) ||
        (rc = walk_start(f, w, &cps, &l, chain, &stop, err)) || stop)
        goto out;
    if (w->start && (rc = eng_list_log_after(f, w->start, &l, NULL)) && rc != SS_ERR_INTEGRITY) {
        rc = ss_fail(err, rc, "list the log: %s", ss_strerror(rc));
        goto out;
    }
    rc = SS_OK;
    while (run < l.n && l.seqs[run] == w->start + run + 1)
        run++; /* the listing's gap-free start: all that can be verified */
    w->head = l.n ? l.seqs[l.n - 1] : w->start;
    if (run == l.n && !l.bad && w->upto > w->head) {
        rc = ss_fail(err, SS_ERR_NOT_FOUND,
                     "there is no sequence %" PRIu64 ": the newest is %" PRIu64, w->upto, w->head);
        goto out;
    }
    end = w->upto && w->upto - w->start < run ? (size_t)(w->upto - w->start) : run;
    if (end && ((rc = ss_xfer_new(f->store, &x, err)) ||
                (!(b = calloc(ENG_PREFETCH_MAX, sizeof *b)) &&
                 (rc = ss_fail(err, SS_ERR_NOMEM, "out of memory")))))
        goto out;
    for (size_t i = 0; i < end && !rc && !stop;) {
        size_t n = 0, k;
        rc = eng_prefetch(x, &l, i, end, b, &n, err);
        for (k = 0; k < n && !rc && !stop; k++, i++) {
            eng_walk_txn t = {.seq = l.seqs[i], .object_size = l.sizes[i]};
            if (!(rc = walk_one(f, w, &t, &b[k], chain, &stop, err)) && !stop)
                reached(w, &cps, &j, t.seq, chain);
        }
        for (k = 0; k < n; k++)
            free(b[k].buf);
    }
    if (!rc && !stop && (run < l.n || l.bad) && (!w->upto || w->upto > w->start + run)) {
        w->broken = 1;
        if (l.bad == 1) {
            snprintf(w->broken_key, sizeof w->broken_key, "%s", l.bad_key);
            rc = ss_fail(err, SS_ERR_INTEGRITY, "unexpected object %s in the log", l.bad_key);
        } else {
            snprintf(w->broken_key, sizeof w->broken_key, SS_KEY_LOG_FMT, w->start + run + 1);
            rc = ss_fail(err, SS_ERR_INTEGRITY, "%s is missing: the sequence has a gap",
                         w->broken_key);
        }
    }
out:
    free(b);
    ss_xfer_free(x);
    eng_log_list_free(&l);
    eng_log_list_free(&cps);
    ss_devices_free(w->devices);
    w->devices = NULL;
    return rc;
}

/* --- temporary databases ------------------------------------------------------------- */

ss_rc eng_tempdb_fail(sqlite3 *db, const char *what, ss_err *err)
{
    int code = db ? sqlite3_errcode(db) : SQLITE_NOMEM;
    return ss_fail(err, code == SQLITE_NOMEM ? SS_ERR_NOMEM : SS_ERR_IO,
                   "temporary database: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

ss_rc eng_tempdb_open(const char *schema, sqlite3 **ret_db, ss_err *err)
{
    sqlite3 *db = NULL; /* owned until returned */
    ss_rc rc;
    *ret_db = NULL;
    /* "": a private on-disk database, deleted when closed; pages beyond the cache go to disk. */
    if (sqlite3_open_v2("", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;", NULL, NULL, NULL) ||
        sqlite3_exec(db, schema, NULL, NULL, NULL)) {
        rc = eng_tempdb_fail(db, "create", err);
        sqlite3_close(db);
        return rc;
    }
    *ret_db = db;
    return SS_OK;
}

/* Step a statement that returns no row, then reset it. */
static ss_rc step_done(sqlite3 *db, sqlite3_stmt *q, const char *what, ss_err *err)
{
    int r = sqlite3_step(q);
    sqlite3_reset(q);
    return r == SQLITE_DONE ? SS_OK : eng_tempdb_fail(db, what, err);
}

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
    if (!(norm = malloc(strlen(abs) + 2))) goto nomem;
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
    if (!(full = resolve_parent(norm))) goto nomem;
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

int eng_path_at_or_under(const char *top, size_t top_len, const char *path, size_t len)
{
    return !top_len || (len == top_len && !memcmp(path, top, len)) ||
           ss_path_is_ancestor(top, top_len, path, len);
}

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
    if (!l->filter || !eng_path_at_or_under(l->filter, l->filter_len, e->path, e->path_len))
        return SS_OK;
    l->touched = 1;
    sqlite3_bind_int64(l->add_path, 1, (sqlite3_int64)t->seq);
    sqlite3_bind_text(l->add_path, 2, e->path, (int)e->path_len, SQLITE_STATIC);
    sqlite3_bind_int(l->add_path, 3, e->type == SS_TXN_DELETE);
    return step_done(l->db, l->add_path, "add a path", err);
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
    return step_done(l->db, q, "add a transaction", err);
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
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            ss_log_path *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        v[n].deleted = sqlite3_column_int(q, 1);
        if (!(v[n].path = strdup((const char *)sqlite3_column_text(q, 0)))) break;
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
    while (!rc && (r = sqlite3_step(q)) == SQLITE_ROW) {
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
        if (l->filter && (rc = log_paths(l, qp, e.seq, &paths, &e.n_paths, err))) break;
        e.paths = paths;
        rc = fn(ctx, &e, err);
        for (size_t i = 0; i < e.n_paths; i++)
            free((char *)paths[i].path);
        free(paths);
    }
    if (!rc && r != SQLITE_DONE) rc = eng_tempdb_fail(l->db, "read", err);
out:
    sqlite3_finalize(q);
    sqlite3_finalize(qp);
    return rc;
}

static void stats_from_store(ss_folder *f, ss_stats *stats)
{
    stats->requests = ss_store_counts(f->store)->requests;
    stats->bytes_up = ss_store_counts(f->store)->bytes_up;
    stats->bytes_down = ss_store_counts(f->store)->bytes_down;
}

ss_rc ss_log(ss_folder *f, const char *path, ss_log_fn fn, void *ctx, ss_stats *stats, ss_err *err)
{
    logw l = {.filter = path && *path ? path : NULL};
    eng_walk w = {.txn = log_txn, .op = log_op, .txn_done = log_done, .ctx = &l};
    ss_rc rc;
    l.filter_len = l.filter ? strlen(l.filter) : 0;
    if ((rc = eng_tempdb_open(log_schema, &l.db, err))) return rc;
    if (sqlite3_prepare_v2(l.db, "INSERT INTO txn VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                           -1, &l.add_txn, NULL) ||
        sqlite3_prepare_v2(l.db, "INSERT INTO path VALUES (?1, ?2, ?3)", -1, &l.add_path, NULL))
        rc = eng_tempdb_fail(l.db, "prepare", err);
    if (!rc) rc = eng_walk_log(f, &w, err);
    stats->seq = w.head;
    if (!rc) rc = log_emit(&l, fn, ctx, err);
    sqlite3_finalize(l.add_txn);
    sqlite3_finalize(l.add_path);
    sqlite3_close(l.db);
    stats_from_store(f, stats);
    return rc;
}

/* --- verify -------------------------------------------------------------------------- */

static const char verify_schema[] =
    "CREATE TABLE chunk(pack TEXT, off INTEGER, sealed INTEGER, plain INTEGER, id BLOB,"
    "  PRIMARY KEY(pack, off)) WITHOUT ROWID;";

typedef struct verifyw {
    ss_folder *f;
    sqlite3 *db;
    sqlite3_stmt *add;
    eng_replay *rp; /* the state the walk replays, for each later checkpoint */
    ss_problem_fn fn;
    void *ctx;
    ss_verify_report *rep;
    /* the pack being checked */
    uint64_t bad;
    ss_rc hard;   /* the store could not be asked: not a problem of the repository */
    ss_err first; /* the first bad chunk's reason */
    uint64_t first_off;
} verifyw;

/* One problem, its message naming the key. */
static void problem(verifyw *v, const char *key, const char *msg)
{
    char named[1024];
    v->rep->problems++;
    if (!strstr(msg, key))
        snprintf(named, sizeof named, "%s: %s", key, msg);
    else
        snprintf(named, sizeof named, "%s", msg);
    if (v->fn) v->fn(v->ctx, key, named);
}

/* Replay every op (later checkpoints are compared with it); with --data, note its chunks. */
static ss_rc verify_op(void *ctx, const eng_walk_txn *t, ss_txn_reader *r, const ss_txn_entry *e,
                       ss_err *err)
{
    verifyw *v = ctx;
    const eng_body *b;
    const char *pack;
    size_t pos = 0, pack_len;
    ss_chunk_ref ref;
    ss_rc rc = eng_replay_op(v->rp, t->h, r, e, err);
    if (rc || !v->db || e->type != SS_TXN_UPSERT || e->kind != SS_TXN_FILE ||
        e->storage != SS_TXN_CHUNKS)
        return rc;
    b = eng_replay_body(v->rp);
    while (!rc && eng_body_next(b->p, b->len, &pos, &pack, &pack_len, &ref)) {
        sqlite3_bind_text(v->add, 1, pack, (int)pack_len, SQLITE_STATIC);
        sqlite3_bind_int64(v->add, 2, (sqlite3_int64)ref.offset);
        sqlite3_bind_int64(v->add, 3, ref.sealed_len);
        sqlite3_bind_int64(v->add, 4, ref.plain_len);
        sqlite3_bind_blob(v->add, 5, ref.id, sizeof ref.id, SQLITE_STATIC);
        rc = step_done(v->db, v->add, "add a chunk", err);
    }
    return rc;
}

static void on_bad_chunk(void *ctx, const char *pack, const ss_chunk_ref *ref, ss_rc rc,
                         const char *msg)
{
    verifyw *v = ctx;
    (void)pack;
    if (rc == SS_ERR_TEMPORARY || rc == SS_ERR_NOMEM || rc == SS_ERR_AUTH) {
        if (!v->hard) v->hard = rc;
        return;
    }
    if (!v->bad++) {
        snprintf(v->first.msg, sizeof v->first.msg, "%s", msg);
        v->first_off = ref->offset;
    }
}

/* Check one pack's chunks (submitted together, in parallel), then report it once. */
static ss_rc verify_pack(verifyw *v, ss_xfer *xfer, sqlite3_stmt *q, int *ret_row, ss_err *err)
{
    char pack[SS_KEY_NAME_MAX];
    eng_fetch x = {.f = v->f, .xfer = xfer, .out_fd = -1, .bad = on_bad_chunk, .ctx = v};
    uint64_t n = 0;
    ss_rc rc = SS_OK;
    snprintf(pack, sizeof pack, "%s", (const char *)sqlite3_column_text(q, 0));
    v->bad = 0;
    do {
        ss_chunk_ref ref = {.offset = (uint64_t)sqlite3_column_int64(q, 1),
                            .sealed_len = (uint32_t)sqlite3_column_int64(q, 2),
                            .plain_len = (uint32_t)sqlite3_column_int64(q, 3)};
        if (sqlite3_column_bytes(q, 4) == sizeof ref.id)
            memcpy(ref.id, sqlite3_column_blob(q, 4), sizeof ref.id);
        if ((rc = eng_fetch_chunk(&x, pack, &ref, 0, err))) break;
        n++;
        *ret_row = sqlite3_step(q);
    } while (*ret_row == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), pack));
    eng_fetch_wait(&x, NULL); /* failures went to on_bad_chunk */
    v->rep->checked_chunks += n;
    if (rc) return rc;
    if (v->hard) return ss_fail(err, v->hard, "%s: %s", pack, ss_strerror(v->hard));
    if (v->bad) {
        char msg[sizeof v->first.msg + 160];
        snprintf(msg, sizeof msg,
                 "%s: %" PRIu64 " of %" PRIu64 " chunks fail verification (at offset %" PRIu64
                 ": %s)",
                 pack, v->bad, n, v->first_off, v->first.msg);
        problem(v, pack, msg);
    }
    return SS_OK;
}

static ss_rc verify_data(verifyw *v, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    ss_xfer *xfer = NULL;   /* owned */
    ss_rc rc;
    int r;
    if (sqlite3_prepare_v2(v->db,
                           "SELECT pack, off, sealed, plain, id FROM chunk ORDER BY pack, off", -1,
                           &q, NULL))
        return eng_tempdb_fail(v->db, "read", err);
    rc = ss_xfer_new(v->f->store, &xfer, err);
    r = sqlite3_step(q);
    while (!rc && r == SQLITE_ROW)
        rc = verify_pack(v, xfer, q, &r, err);
    if (!rc && r != SQLITE_DONE) rc = eng_tempdb_fail(v->db, "read", err);
    ss_xfer_free(xfer);
    sqlite3_finalize(q);
    return rc;
}

/*
 * A later checkpoint must verify, record the walked chain, and hold the
 * replayed state and device table.
 */
static void verify_cp(void *ctx, uint64_t seq, const uint8_t chain[32], const ss_devices *devices)
{
    verifyw *v = ctx;
    char key[SS_KEY_NAME_MAX], msg[SS_KEY_NAME_MAX + 4200], why[400];
    char *diff = NULL;        /* owned */
    ss_devices *table = NULL; /* owned */
    uint8_t recorded[32];
    ss_err e = {{0}};
    int fd = -1; /* owned */
    ss_rc rc = eng_fetch_checkpoint(v->f, seq, &fd, recorded, NULL, &table, &e);
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    if (!rc && sodium_memcmp(recorded, chain, 32))
        problem(v, key, "records another chain value than the log holds at its sequence");
    else if (!rc && ss_devices_differ(devices, table, 1, why, sizeof why)) {
        snprintf(msg, sizeof msg, "holds another device table than the log's at its sequence (%s)",
                 why);
        problem(v, key, msg);
    } else if (!rc && (rc = eng_replay_compare(v->f, v->rp, fd, seq, &diff, &e)) == SS_OK && diff) {
        snprintf(msg, sizeof msg,
                 "does not hold the state the log replays to at %" PRIu64
                 " (first difference: %.4096s)",
                 seq, diff);
        problem(v, key, msg);
    } else if (!rc)
        v->rep->checked_checkpoints++;
    if (rc == SS_ERR_INTEGRITY || rc == SS_ERR_NOT_FOUND)
        problem(v, key, e.msg);
    else if (rc && !v->hard)
        v->hard = rc;
    free(diff);
    ss_devices_free(table);
    if (fd >= 0) close(fd);
}

ss_rc ss_verify(ss_folder *f, int data, ss_problem_fn fn, void *ctx, ss_verify_report *ret_report,
                ss_stats *stats, ss_err *err)
{
    verifyw v = {.f = f, .fn = fn, .ctx = ctx, .rep = ret_report};
    eng_walk w = {.op = verify_op, .cp_check = verify_cp, .ctx = &v};
    ss_err werr = {{0}};
    ss_rc rc;
    memset(ret_report, 0, sizeof *ret_report);
    if ((rc = eng_replay_new(&v.rp, err))) return rc;
    if (data &&
        ((rc = eng_tempdb_open(verify_schema, &v.db, err)) ||
         (sqlite3_prepare_v2(v.db, "INSERT OR IGNORE INTO chunk VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                             &v.add, NULL) &&
          (rc = eng_tempdb_fail(v.db, "prepare", err)))))
        goto out;
    rc = eng_walk_log(f, &w, &werr);
    stats->seq = w.head;
    ret_report->checked_logs = w.last > w.start ? w.last - w.start : 0;
    if (w.start && w.last >= w.start) ret_report->checked_checkpoints++;
    if (!rc && v.hard) rc = ss_fail(err, v.hard, "a checkpoint: %s", ss_strerror(v.hard));
    if (rc && w.broken) { /* H2: report it, then check the data of what did verify */
        uint64_t after = w.head > w.last + 1 ? w.head - w.last - 1 : 0;
        char msg[sizeof werr.msg + 128];
        ret_report->unchecked_logs = after;
        if (after)
            snprintf(msg, sizeof msg,
                     "%s; the %" PRIu64 " log object%s after it cannot be verified", werr.msg,
                     after, after == 1 ? "" : "s");
        else
            snprintf(msg, sizeof msg, "%s", werr.msg);
        problem(&v, w.broken_key, msg);
        rc = SS_OK;
    } else if (rc) {
        if (err) *err = werr;
        goto out;
    }
    if (data) rc = verify_data(&v, err);
out:
    sqlite3_finalize(v.add);
    sqlite3_close(v.db);
    eng_replay_free(v.rp);
    stats_from_store(f, stats);
    return rc;
}
