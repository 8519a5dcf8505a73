/*
 * tempdb: a private temporary SQLite database on disk, where log, verify,
 * restore and gc collect what may outgrow the heap (transaction summaries,
 * chunk locations, the entries under a restored path).
 */
#include <sqlite3.h>

#include "engine.h"

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

ss_rc eng_tempdb_step(sqlite3 *db, sqlite3_stmt *q, const char *what, ss_err *err)
{
    int r = sqlite3_step(q);
    sqlite3_reset(q);
    return r == SQLITE_DONE ? SS_OK : eng_tempdb_fail(db, what, err);
}
