/*
 * db_impl.h: what the files of lockd's database share, private to them: the
 * connection and its read cache, the prepared statements by call site, and
 * the helpers that run them. db.c owns the connection, schema and SQL;
 * db_admin.c devices and repositories; db_head.c the leases, head, the
 * writers of each sequence and the rewind; db_cache.c the read cache.
 * Every helper here but db_begin and db_run_locked expects db->mu held.
 */
#ifndef LD_DB_IMPL_H
#define LD_DB_IMPL_H

#include <sqlite3.h>

#include "lockd.h"

/*
 * Prepared statements, one per call site (enum below, text in db_stmt_sql).
 * Compiling SQL was a third of lockd's CPU per request; now each statement
 * is compiled once, on first use, and kept. A statement is taken out of its
 * slot while in use and given back reset with its bindings cleared, so a
 * nested use of the same call site (a helper reached again while its
 * statement is still being stepped: the likely cause of an earlier cache's
 * 100% CPU spin) gets a fresh statement instead of resetting the one in use; a
 * statement never goes back un-reset, which in WAL mode would keep its read
 * transaction (and an old snapshot) open. All of it under db->mu.
 */
typedef enum stmt_id {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_DATA_VERSION,
    S_DEVICE_ADD,
    S_DEVICE_BY_HASH,
    S_DEVICE_REVOKE,
    S_DEVICE_REVOKE_DIRTY,
    S_DEVICE_REVOKE_LEASES,
    S_DEVICE_LIST,
    S_REPO_GET,
    S_REPO_INSERT,
    S_REPO_MOVE,
    S_REPO_LIST,
    S_REPO_MARK_DIRTY,
    S_REPO_RAISE_HEAD,
    S_LEASE_GET,
    S_GRANT_DIRTY,
    S_GRANT_DELETE,
    S_GRANT_FENCING,
    S_LEASE_EXPIRY,
    S_LEASE_PUT_SEQ,
    S_DELETE_DIRTY,
    S_LEASE_DELETE,
    S_COMMIT_HEAD,
    S_URLS_UNTIL,
    S_URLS_UNTIL_DEVICE,
    S_WRITER_ADD,
    S_WRITERS_GET,
    S_WRITERS_DROP,
    S_REWIND_BEGIN,
    S_REWIND_END,
    S_HEAD_OBJECT,
    S_STATE_REPO,
    S_STATE_LEASE,
    S_COUNT
} stmt_id;

#define DEVICE_COLS "id, name, repo, read_only, revoked, created_ms, token_hash"
/* The head's object as lockd last saw it, only while it is the head's (seq = head). */
#define REPO_COLS                                                                                  \
    "r.name, r.url, r.head, r.next_fencing, r.dirty, r.rewinding, r.urls_until_ms, h.etag, h.size"
#define REPO_FROM "repositories r LEFT JOIN head_objects h ON h.repo = r.name AND h.seq = r.head"
#define LEASE_COLS "id, device, fencing, granted_ms, expires_ms, put_seq"

/* Their SQL, by call site (db.c). */
extern const char *const db_stmt_sql[S_COUNT];

/*
 * The read cache: token hash -> device, and repository -> (repository row,
 * lease row), so the hot reads (every request's Bearer check, GET head)
 * touch no SQL while nothing changed. Direct-mapped on a few bytes of the
 * key (token hashes are keyed BLAKE2b, so uniform); a collision only evicts.
 * Unknown tokens are not cached: nobody can fill the cache from outside.
 *
 * Validity: lockd is NOT the only writer. The admin commands (device revoke,
 * which also deletes the device's lease; device add; repo add) run in
 * another process beside the server, and a revoked token must get 401 on the
 * very next request (tests/test-lockd-http.c, test_http_auth). So invalidating on
 * lockd's own write paths alone would be wrong. The cache is checked before
 * each use against two numbers: PRAGMA data_version, which changes when
 * another connection committed, and sqlite3_total_changes64, which changes
 * when this connection wrote a row (a rolled-back write flushes in vain,
 * which is harmless). Either one moved: the cache is emptied. The check is
 * one prepared statement step (a WAL read-lock round trip), against three
 * compiled-and-run queries before.
 */
#define CACHE_SLOTS 64

typedef struct dev_slot {
    int used;
    unsigned char hash[LD_HASH_LEN];
    ld_device dev;
} dev_slot;

typedef struct repo_slot {
    int used, lease_found;
    ld_repo_row repo;
    ld_lease_row lease;
} repo_slot;

struct ld_db {
    sqlite3 *sql;
    pthread_mutex_t mu;
    unsigned char *secret; /* the token secret: sodium_malloc'ed (locked, wiped when freed) */
    sqlite3_stmt *stmts[S_COUNT]; /* idle prepared statements; NULL while in use */
    int64_t seen_version, seen_changes;
    dev_slot devs[CACHE_SLOTS];
    repo_slot repos[CACHE_SLOTS];
};

ss_rc db_sql_fail(ld_db *db, ss_err *err, const char *what);
/* The statement of call site id, ready to bind: the kept one, or a fresh one
 * when it is in use further up the stack (or was never compiled). */
ss_rc db_take(ld_db *db, stmt_id id, sqlite3_stmt **st, ss_err *err);
/* Back to its slot, reset (its read transaction ends) and unbound; a second
 * copy from a nested use is finalized. NULL is fine. */
void db_give(ld_db *db, stmt_id id, sqlite3_stmt *st);
/* Run a statement that returns no rows. */
ss_rc db_step_done(ld_db *db, sqlite3_stmt *st, const char *what, ss_err *err);
/* BEGIN, BEGIN IMMEDIATE, COMMIT or ROLLBACK. */
ss_rc db_txn(ld_db *db, stmt_id id, ss_err *err);
/* After a failed step inside a transaction: undo it, keep the first error. */
void db_rollback(ld_db *db);
/* The end of a transaction that got to rc: COMMIT when SS_OK, else (or when
 * the COMMIT fails) ROLLBACK; the outcome. */
ss_rc db_finish(ld_db *db, ss_rc rc, ss_err *err);
/* A write transaction of its own: db_begin takes db->mu and begins (on
 * failure it holds nothing); db_end(rc) is db_finish, then lets go of db->mu.
 * Every change of state is one db_begin ... db_end. */
ss_rc db_begin(ld_db *db, ss_err *err);
ss_rc db_end(ld_db *db, ss_rc rc, ss_err *err);
void db_copy_text(char *dst, size_t cap, const unsigned char *src);
/* Run one statement inside the caller's transaction with ?1 = repo, ?2 = id,
 * ?3 = n; binding a number the statement does not use is harmless. */
ss_rc db_run(ld_db *db, stmt_id id, const char *repo, const char *lease_id, int64_t n, ss_err *err);
/* db_run with ?1 = repo, ?3 = n, as a transaction of its own (takes db->mu). */
ss_rc db_run_locked(ld_db *db, stmt_id id, const char *repo, int64_t n, ss_err *err);

/* db_cache.c: empty the cache; empty it if the database changed since the
 * last check, 0 when the cache may be used (on a database error the cache is
 * emptied and not used). */
void db_cache_flush(ld_db *db);
int db_cache_valid(ld_db *db);

/* db_admin.c: the rows, uncached (SS_ERR_NOT_FOUND when absent). */
ss_rc db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                        unsigned char ret_hash[LD_HASH_LEN], ss_err *err);
ss_rc db_repo_get(ld_db *db, const char *name, ld_repo_row *ret, ss_err *err);

/* db_head.c: the lease row of repo (*ret_found 0: none), uncached. */
ss_rc db_lease_get(ld_db *db, const char *repo, ld_lease_row *ret, int *ret_found, ss_err *err);
/* db_state.c: the lease row of repo becomes *lease (inserted or replaced); inside a
 * transaction. */
ss_rc db_lease_write(ld_db *db, const char *repo, const ld_lease_row *lease, ss_err *err);
/* Record obj (NULL or without an ETag: nothing) as log/<seq>'s; inside a transaction. */
ss_rc db_head_object(ld_db *db, const char *repo, uint64_t seq, const ss_store_stat *obj,
                     ss_err *err);

#endif
