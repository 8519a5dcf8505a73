/*
 * restore: a file or a directory as it was at a sequence (see s3sync.h).
 *
 * Design notes. Invariants this file keeps:
 *   R1. The state at SEQ is the replay of transactions C+1..SEQ over the
 *       newest checkpoint C at or before SEQ (by time: written at or before
 *       it; none: from log/1), each verified as pull verifies it
 *       (eng_walk_log), kept only for the entries at or under PATH, in a
 *       temporary SQLite table: memory grows neither with the repository nor
 *       with the restored tree.
 *   R2. Nothing that exists is overwritten, and a restore is all or nothing:
 *       the file or tree is written under a temp name beside the destination
 *       (SS_FS_TMP_PREFIX: scans skip it), then renamed to the destination
 *       with RENAME_NOREPLACE, which fails if anything took the name. After
 *       a failure the temp tree is removed.
 *   R3. Files are written with fsio's atomic writes (temp, fsync, rename);
 *       chunks are fetched with pull's verified fetch (eng_fetch_chunk).
 *       Modes are applied as pull applies them (eng_mode_applied), and a
 *       directory gets its mode after its contents, as in pull (dirmodes.h:
 *       it stays open to its owner while being filled).
 *   R4. A path gone at the head, restored without --at, comes back as it was
 *       last: the entries are copied aside each time the path disappears
 *       (walking again from the oldest retained state when the newest
 *       checkpoint no longer holds it).
 *
 *   walk log/1..SEQ --op under PATH--> table cur (and saved, R4)
 *   --write_tree--> temp name beside DEST: entries in path order, each
 *   directory's mode once left --publish--> DEST
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dirmodes.h"
#include "engine.h"
#include "fsio.h"
#include "s3sync.h"
#include "path.h"

#define ROW_COLS "path, kind, mode, mtime_s, mtime_ns, size, storage, body"
#define TABLE(name)                                                                                \
    "CREATE TABLE " name "(path TEXT PRIMARY KEY, kind INTEGER, mode INTEGER, mtime_s INTEGER,"    \
    "  mtime_ns INTEGER, size INTEGER, storage INTEGER, body BLOB) WITHOUT ROWID;"
/* ?1 and everything under it: '0' follows '/', so the range is exactly "?1/..." */
#define AT_OR_UNDER "(path = ?1 OR (path > ?1 || '/' AND path < ?1 || '0'))"
#define UNDER "(path > ?1 || '/' AND path < ?1 || '0')"
#define MAX_NAME_TRIES 100

static const char schema[] = TABLE("cur") TABLE("saved");

enum { Q_PUT, Q_DROP_TREE, Q_DROP_BELOW, Q_PRESENT, Q_SAVE_CLEAR, Q_SAVE, Q_COUNT };

static const char *const queries[Q_COUNT] = {
    [Q_PUT] = "INSERT OR REPLACE INTO cur(" ROW_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_DROP_TREE] = "DELETE FROM cur WHERE " AT_OR_UNDER,
    [Q_DROP_BELOW] = "DELETE FROM cur WHERE " UNDER,
    [Q_PRESENT] = "SELECT 1 FROM cur WHERE path = ?1",
    [Q_SAVE_CLEAR] = "DELETE FROM saved",
    [Q_SAVE] = "INSERT INTO saved SELECT * FROM cur",
};

typedef struct rs {
    ss_folder *f;
    const ss_restore_opts *o;
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    const char *path;
    size_t len;
    uint64_t saved_seq; /* the sequence table saved holds (R4); 0: none */
    ss_state_body body;
    /* writing */
    ss_xfer *xfer;
    ss_dirmodes *dm;      /* directory modes after contents, on pfd (R3) */
    int pfd;              /* the destination's parent directory (owned) */
    char *top;            /* owned: the destination, top_base its last segment */
    const char *top_base; /* the name in pfd */
    char tmp[64];         /* what is written, in pfd, until renamed to top_base (R2) */
    int made;             /* tmp exists */
    ss_restore_result *res;
} rs;

static ss_rc run(rs *s, int q, const char *what, ss_err *err)
{
    int r = sqlite3_step(s->q[q]);
    sqlite3_reset(s->q[q]);
    return r == SQLITE_DONE || r == SQLITE_ROW ? SS_OK : eng_tempdb_fail(s->db, what, err);
}

static int present(rs *s)
{
    int r;
    if (!s->len) return 1;
    sqlite3_bind_text(s->q[Q_PRESENT], 1, s->path, (int)s->len, SQLITE_STATIC);
    r = sqlite3_step(s->q[Q_PRESENT]);
    sqlite3_reset(s->q[Q_PRESENT]);
    return r == SQLITE_ROW;
}

/* Remove path (with self) or only what is under it; R4 when that takes PATH away. */
static ss_rc drop(rs *s, uint64_t seq, const char *path, size_t len, int self, ss_err *err)
{
    ss_rc rc;
    if (self && len == s->len && !memcmp(path, s->path, len) && present(s)) {
        rc = run(s, Q_SAVE_CLEAR, "save", err);
        if (rc) return rc;
        rc = run(s, Q_SAVE, "save", err);
        if (rc) return rc;
        s->saved_seq = seq - 1;
    }
    sqlite3_bind_text(s->q[self ? Q_DROP_TREE : Q_DROP_BELOW], 1, path, (int)len, SQLITE_STATIC);
    return run(s, self ? Q_DROP_TREE : Q_DROP_BELOW, "remove", err);
}

static ss_rc replay_txn(void *ctx, const eng_walk_txn *t, int *ret_stop, ss_err *err)
{
    rs *s = ctx;
    (void)err;
    *ret_stop = s->o->by_time && (int64_t)(t->h->time_ns / 1000000000u) > s->o->at_time;
    return SS_OK;
}

/* By time: a checkpoint written at or before the time holds no later transaction. */
static int cp_in_time(void *ctx, uint64_t seq, uint64_t time_ns)
{
    rs *s = ctx;
    (void)seq;
    return (int64_t)(time_ns / 1000000000u) <= s->o->at_time;
}

static ss_rc replay_op(void *ctx, const eng_walk_txn *t, ss_txn_reader *r, const ss_txn_entry *e,
                       ss_err *err)
{
    rs *s = ctx;
    sqlite3_stmt *q = s->q[Q_PUT];
    const void *body = NULL;
    size_t body_len = 0;
    ss_chunk_ref ref;
    ss_rc rc = SS_OK;
    if (!ss_path_at_or_under(s->path, s->len, e->path, e->path_len)) {
        /* An ancestor of PATH deleted or replaced by a non-directory takes PATH with it. */
        if (!ss_path_is_ancestor(e->path, e->path_len, s->path, s->len) ||
            (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_DIR))
            return SS_OK;
        return drop(s, t->seq, s->path, s->len, 1, err);
    }
    if (e->type == SS_TXN_DELETE) return drop(s, t->seq, e->path, e->path_len, 1, err);
    if (e->kind != SS_TXN_DIR) {
        rc = drop(s, t->seq, e->path, e->path_len, 0, err);
        if (rc) return rc;
    }
    if (e->kind == SS_TXN_SYMLINK) {
        body = e->target;
        body_len = e->size;
    } else if (e->kind == SS_TXN_FILE && e->storage == SS_TXN_INLINE) {
        body = e->inline_data;
        body_len = e->size;
    } else if (e->kind == SS_TXN_FILE) {
        s->body.len = 0;
        while (ss_txn_chunks_left(r)) {
            rc = ss_txn_next_chunk(r, &ref, err);
            if (rc) return rc;
            if (ss_state_body_add(&s->body, t->h->pack_keys[ref.pack], &ref))
                return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        }
        body = s->body.p;
        body_len = s->body.len;
    }
    sqlite3_bind_text(q, 1, e->path, (int)e->path_len, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, (int)e->kind);
    sqlite3_bind_int64(q, 3, e->mode);
    sqlite3_bind_int64(q, 4, e->mtime_s);
    sqlite3_bind_int64(q, 5, e->mtime_ns);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)e->size);
    sqlite3_bind_int(q, 7, (int)e->storage);
    sqlite3_bind_blob(q, 8, body ? body : "", (int)body_len, SQLITE_STATIC);
    return run(s, Q_PUT, "add an entry", err);
}

/* --- where to write ------------------------------------------------------------------- */

static int name_free(int at_fd, const char *name)
{
    struct stat st;
    return fstatat(at_fd, name, &st, AT_SYMLINK_NOFOLLOW) && errno == ENOENT;
}

/* "dir/name.restored-SEQ.ext" (directories: no extension), not yet existing (R2). */
static ss_rc beside_name(rs *s, uint64_t seq, int kind, ss_err *err)
{
    const char *slash = strrchr(s->path, '/'), *base = slash ? slash + 1 : s->path;
    const char *dot = kind == SS_TXN_DIR ? NULL : strrchr(base, '.');
    if (!dot || dot == base) dot = base + strlen(base); /* ".bashrc" has no extension */
    for (int n = 1; n <= MAX_NAME_TRIES; n++) {
        char suffix[16] = "";
        if (n > 1) snprintf(suffix, sizeof suffix, "-%d", n);
        if (asprintf(&s->top, "%.*s.restored-%" PRIu64 "%s%s", (int)(dot - s->path), s->path, seq,
                     suffix, dot) < 0) {
            s->top = NULL;
            return ss_fail(err, SS_ERR_NOMEM, "out of memory");
        }
        if (ss_fs_lstat(s->f->root_fd, s->top, &(struct stat){0}, NULL) == SS_ERR_NOT_FOUND) {
            if (!(s->res->dest = strdup(s->top)))
                return ss_fail(err, SS_ERR_NOMEM, "out of memory");
            /* its parent, made again when it was deleted too */
            return ss_fs_parent(s->f->root_fd, s->top, 1, &s->pfd, &s->top_base, err);
        }
        free(s->top);
        s->top = NULL;
    }
    return ss_fail(err, SS_ERR_EXISTS, "%s: no free name for the restored copy", s->path);
}

/* dir is f's .s3sync/ or inside it. */
static int in_meta(ss_folder *f, const char *dir)
{
    char real[PATH_MAX];
    size_t n = strlen(f->meta);
    return realpath(dir, real) && !strncmp(real, f->meta, n) && (!real[n] || real[n] == '/');
}

/* --to: DEST itself, or DEST/<name> when DEST is a directory; its parent opened as pfd. */
static ss_rc to_name(rs *s, ss_err *err)
{
    const char *name = s->len ? strrchr(s->path, '/') : strrchr(s->f->root, '/');
    char *to = strdup(s->o->to), *slash; /* owned */
    const char *parent;
    struct stat st;
    name = name ? name + 1 : s->path;
    if (!to) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    while ((slash = strrchr(to, '/')) && slash != to && !slash[1])
        *slash = '\0'; /* "dest/" names dest */
    if (!stat(to, &st) && S_ISDIR(st.st_mode)) {
        if (asprintf(&s->res->dest, "%s%s%s", to, strcmp(to, "/") ? "/" : "", name) < 0)
            s->res->dest = NULL;
    } else {
        s->res->dest = strdup(to);
    }
    free(to);
    if (s->res->dest) s->top = strdup(s->res->dest);
    if (!s->top) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (!name_free(AT_FDCWD, s->top))
        return ss_fail(err, SS_ERR_EXISTS, "refusing to overwrite %s: it exists", s->top);
    slash = strrchr(s->top, '/');
    if (slash) *slash = '\0';
    parent = !slash ? "." : slash == s->top ? "/" : s->top;
    s->top_base = slash ? slash + 1 : s->top;
    s->pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->pfd < 0)
        return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO,
                       "%s: cannot open its directory %s: %s", s->o->to, parent, strerror(errno));
    if (in_meta(s->f, parent))
        return ss_fail(err, SS_ERR_INVALID, "refusing to write into %s", s->f->meta);
    if (ss_path_validate(s->top_base, strlen(s->top_base), NULL))
        return ss_fail(err, SS_ERR_INVALID, "%s: not a name to restore to", s->res->dest);
    return SS_OK;
}

/* A free temp name beside the destination: the restore is written there, then renamed (R2). */
static ss_rc make_tmp(rs *s, int kind, ss_err *err)
{
    for (int n = 0; n < MAX_NAME_TRIES; n++) {
        snprintf(s->tmp, sizeof s->tmp, SS_FS_TMP_PREFIX "restore-%ld-%d", (long)getpid(), n);
        if (kind == SS_TXN_DIR ? !mkdirat(s->pfd, s->tmp, 0700) : name_free(s->pfd, s->tmp)) {
            s->made = 1;
            return SS_OK;
        }
        if (kind == SS_TXN_DIR && errno != EEXIST)
            return ss_fail(err, SS_ERR_IO, "create directory beside %s: %s", s->res->dest,
                           strerror(errno));
    }
    return ss_fail(err, SS_ERR_IO, "no free temp name beside %s", s->res->dest);
}

/* Remove what this restore made under the temp name (after a failure). */
static void remove_made(int at_fd, const char *name)
{
    int fd = openat(at_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dirent *e;
    DIR *d;
    if (fd < 0) {
        unlinkat(at_fd, name, 0);
        return;
    }
    fchmod(fd, 0700);
    if (!(d = fdopendir(fd))) {
        close(fd);
        return;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove_made(dirfd(d), e->d_name);
    closedir(d);
    unlinkat(at_fd, name, AT_REMOVEDIR);
}

/* The temp name becomes the destination, unless something took that name meanwhile (R2). */
static ss_rc publish(rs *s, ss_err *err)
{
    int r = renameat2(s->pfd, s->tmp, s->pfd, s->top_base, RENAME_NOREPLACE);
    if (r && (errno == EINVAL || errno == ENOSYS)) /* a file system without it */
        r = name_free(s->pfd, s->top_base) ? renameat(s->pfd, s->tmp, s->pfd, s->top_base)
                                           : (errno = EEXIST, -1);
    if (r && errno == EEXIST)
        return ss_fail(err, SS_ERR_EXISTS, "refusing to overwrite %s: it exists now", s->res->dest);
    if (r) return ss_fail(err, SS_ERR_IO, "rename to %s: %s", s->res->dest, strerror(errno));
    s->made = 0;
    if (fsync(s->pfd))
        return ss_fail(err, SS_ERR_IO, "fsync directory of %s: %s", s->res->dest, strerror(errno));
    return SS_OK;
}

/* --- writing ---------------------------------------------------------------------------- */

typedef struct row {
    const char *path;
    int kind;
    uint32_t mode;
    int64_t mtime_s;
    uint32_t mtime_ns;
    uint64_t size;
    int storage;
    const void *body;
    size_t body_len;
} row;

static ss_rc write_chunks(rs *s, const row *r, int fd, ss_err *err)
{
    eng_fetch x = {.f = s->f, .xfer = s->xfer, .out_fd = fd};
    const char *pack;
    size_t pos = 0, pack_len;
    uint64_t off = 0;
    ss_chunk_ref ref;
    ss_rc rc = SS_OK;
    while (!x.rc && ss_state_body_next(r->body, r->body_len, &pos, &pack, &pack_len, &ref)) {
        char key[SS_KEY_NAME_MAX];
        snprintf(key, sizeof key, "%.*s", (int)pack_len, pack);
        rc = eng_fetch_chunk(&x, key, &ref, off, err);
        if (rc) break;
        off += ref.plain_len;
    }
    eng_fetch_wait(&x, NULL); /* failures are in x */
    if (rc) return rc;
    if (x.rc) return ss_fail(err, x.rc, "%s: %s", r->path, x.err.msg);
    if (off != r->size)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: its chunks hold %" PRIu64 " bytes, not %" PRIu64,
                       r->path, off, r->size);
    return SS_OK;
}

static ss_rc write_file(rs *s, const row *r, const char *dest, ss_err *err)
{
    ss_atomic *at = NULL; /* owned */
    ss_rc rc = ss_atomic_begin(s->pfd, dest, &at, err);
    if (rc) return rc;
    if (r->storage == SS_TXN_INLINE) {
        if (r->size && pwrite(ss_atomic_fd(at), r->body, r->size, 0) != (ssize_t)r->size)
            rc = ss_fail(err, SS_ERR_IO, "write %s: %s", r->path, strerror(errno));
    } else {
        rc = write_chunks(s, r, ss_atomic_fd(at), err);
    }
    if (rc) {
        ss_atomic_abort(at);
        return rc;
    }
    s->res->bytes += r->size;
    return ss_atomic_commit(at, eng_mode_applied(s->f, r->mode), r->mtime_s, r->mtime_ns, NULL,
                            err);
}

/* Where entry path goes under the temp name. *ret owned. */
static ss_rc dest_of(rs *s, const char *path, char **ret, ss_err *err)
{
    if (asprintf(ret, "%s%s%s", s->tmp, s->len ? "" : "/", path + s->len) < 0) {
        *ret = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    return SS_OK;
}

static ss_rc write_row(rs *s, const row *r, ss_err *err)
{
    char *dest = NULL; /* owned */
    int top = s->len && strlen(r->path) == s->len;
    ss_rc rc;
    if (top) {
        rc = make_tmp(s, r->kind, err);
        if (rc) return rc;
    }
    rc = dest_of(s, r->path, &dest, err);
    if (rc) return rc;
    rc = ss_dirmodes_enter(s->dm, dest, err);
    if (rc) goto done;
    if (r->kind == SS_TXN_DIR) /* its mode once its contents are in (R3) */
        rc = ss_dirmodes_mkdir(s->dm, dest, eng_mode_applied(s->f, r->mode), NULL, err);
    else if (r->kind == SS_TXN_SYMLINK)
        rc = ss_fs_symlink(s->pfd, dest, r->body, r->mtime_s, r->mtime_ns, err);
    else
        rc = write_file(s, r, dest, err);
    if (rc) goto done;
    s->res->files++;
    if (s->f->hooks.verbose) s->f->hooks.verbose(s->f->hooks.ctx, "restore", r->path);
done:
    free(dest);
    return rc;
}

static ss_rc write_tree(rs *s, const char *tbl, uint64_t seq, ss_err *err)
{
    sqlite3_stmt *q = NULL; /* owned */
    char sql[256];
    ss_rc rc;
    int r, kind = SS_TXN_DIR;
    snprintf(sql, sizeof sql, "SELECT " ROW_COLS " FROM %s WHERE %s ORDER BY path", tbl,
             s->len ? AT_OR_UNDER : "?1 = ?1");
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL)) return eng_tempdb_fail(s->db, "read", err);
    sqlite3_bind_text(q, 1, s->path, (int)s->len, SQLITE_STATIC);
    r = sqlite3_step(q);
    if (s->len && r == SQLITE_ROW) kind = sqlite3_column_int(q, 1);
    if (s->o->to)
        rc = to_name(s, err);
    else if (!s->len)
        rc = ss_fail(err, SS_ERR_INVALID, "restoring the whole folder needs --to DEST");
    else
        rc = beside_name(s, seq, kind, err);
    if (rc) goto done;
    if (!s->len) { /* the folder itself has no row */
        rc = make_tmp(s, SS_TXN_DIR, err);
        if (rc) goto done;
    }
    rc = ss_dirmodes_new(s->pfd, NULL, &s->dm, err);
    if (rc) goto done;
    for (; r == SQLITE_ROW; r = sqlite3_step(q)) {
        row w = {.path = (const char *)sqlite3_column_text(q, 0),
                 .kind = sqlite3_column_int(q, 1),
                 .mode = (uint32_t)sqlite3_column_int64(q, 2),
                 .mtime_s = sqlite3_column_int64(q, 3),
                 .mtime_ns = (uint32_t)sqlite3_column_int64(q, 4),
                 .size = (uint64_t)sqlite3_column_int64(q, 5),
                 .storage = sqlite3_column_int(q, 6),
                 .body = sqlite3_column_blob(q, 7),
                 .body_len = (size_t)sqlite3_column_bytes(q, 7)};
        rc = write_row(s, &w, err);
        if (rc) goto done;
    }
    if (r != SQLITE_DONE) {
        rc = eng_tempdb_fail(s->db, "read", err);
        goto done;
    }
    sqlite3_finalize(q);
    q = NULL;
    rc = ss_dirmodes_finish(s->dm, err);
    if (rc) goto done;
    rc = publish(s, err);
done:
    sqlite3_finalize(q);
    if (s->made) remove_made(s->pfd, s->tmp); /* a failure: nothing of it stays */
    return rc;
}

/* --- the command ------------------------------------------------------------------------ */

void ss_restore_result_clear(ss_restore_result *r)
{
    free(r->dest);
    memset(r, 0, sizeof *r);
}

static ss_rc not_there(rs *s, const eng_walk *w, ss_err *err)
{
    char when[64];
    struct tm tm;
    time_t t = (time_t)s->o->at_time;
    if (!w->last && !s->o->by_time)
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "nothing to restore: the repository has no transactions");
    if (!w->last) {
        localtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        return ss_fail(err, SS_ERR_NOT_FOUND, "nothing was synced at or before %s", when);
    }
    if (s->saved_seq)
        return ss_fail(err, SS_ERR_NOT_FOUND,
                       "%s did not exist at sequence %" PRIu64
                       "; it was last there at sequence %" PRIu64,
                       s->path, w->last, s->saved_seq);
    return ss_fail(err, SS_ERR_NOT_FOUND, "%s did not exist at sequence %" PRIu64, s->path,
                   w->last);
}

/*
 * The statements prepared, the log walked into the temp tables, and PATH
 * found: in the walked state (cur), or (R4) as it was last (*ret_saved).
 */
static ss_rc replay(rs *s, eng_walk *w, int *ret_saved, ss_err *err)
{
    const ss_restore_opts *o = s->o;
    ss_rc rc;
    *ret_saved = 0;
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v2(s->db, queries[i], -1, &s->q[i], NULL))
            return eng_tempdb_fail(s->db, "prepare", err);
    rc = eng_walk_log(s->f, w, err);
    if (rc) return rc;
    if (w->start && !o->at_seq && !o->by_time && !s->saved_seq && !present(s)) {
        /* R4 before the newest checkpoint: gone now, so walk from the oldest retained state */
        w->from = ENG_FROM_FIRST;
        s->saved_seq = 0;
        if (sqlite3_exec(s->db, "DELETE FROM cur; DELETE FROM saved;", NULL, NULL, NULL))
            return eng_tempdb_fail(s->db, "clear", err);
        rc = eng_walk_log(s->f, w, err);
        if (rc) return rc;
    }
    if (w->last && present(s)) return SS_OK;
    if (!o->at_seq && !o->by_time && s->saved_seq) { /* R4: gone now, as it was last */
        *ret_saved = 1;
        return SS_OK;
    }
    return not_there(s, w, err);
}

ss_rc ss_restore(ss_folder *f, const ss_restore_opts *o, ss_restore_result *ret_result,
                 ss_stats *stats, ss_err *err)
{
    rs s = {.f = f, .o = o, .path = o->path, .len = strlen(o->path), .pfd = -1, .res = ret_result};
    eng_walk w = {.upto = o->by_time ? 0 : o->at_seq,
                  .from = ENG_FROM_NEWEST,
                  .cp_ok = o->by_time ? cp_in_time : NULL,
                  .txn = replay_txn,
                  .op = replay_op,
                  .ctx = &s};
    int saved = 0;
    uint64_t seq;
    ss_rc rc;
    memset(ret_result, 0, sizeof *ret_result);
    if (s.len && ss_path_validate(s.path, s.len, err)) return SS_ERR_INVALID;
    rc = eng_tempdb_open(schema, &s.db, err);
    if (rc) return rc;
    rc = replay(&s, &w, &saved, err);
    seq = saved ? s.saved_seq : w.last;
    ret_result->seq = seq; /* told even when PATH was not there */
    stats->seq = seq;
    if (rc) goto done;
    rc = ss_xfer_new(f->store, &s.xfer, err);
    if (rc) goto done;
    rc = write_tree(&s, saved ? "saved" : "cur", seq, err);
done:
    stats->files = ret_result->files;
    eng_stats_from_store(f, stats, ENG_STATS_NO_UP);
    ss_xfer_free(s.xfer);
    ss_dirmodes_free(s.dm);
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s.q[i]);
    sqlite3_close(s.db);
    ss_state_body_free(&s.body);
    free(s.top);
    if (s.pfd >= 0) close(s.pfd);
    return rc;
}
