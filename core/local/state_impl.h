/*
 * state_impl: what the two halves of state.db share, private to them: the
 * rows and chunks (state.c) and the small tables beside them, meta and
 * devices (state_meta.c). Every statement is prepared once, in state.c.
 */
#ifndef SS_STATE_IMPL_H
#define SS_STATE_IMPL_H

#include <sqlite3.h>

#include "state.h"

enum {
    Q_META_GET,
    Q_META_SET,
    Q_LOOKUP,
    Q_PUT,
    Q_REMOVE,
    Q_REMOVE_TREE,
    Q_CHUNK_FIND,
    Q_CHUNK_ADD,
    Q_CHUNK_REF,
    Q_CHUNK_UNREF,
    Q_BODY,
    Q_BODIES_TREE,
    Q_PRUNE,
    Q_DEV_ALL,
    Q_DEV_CLEAR,
    Q_DEV_PUT,
    Q_COUNT
};

struct ss_state {
    sqlite3 *wr, *rd;
    sqlite3_stmt *q[Q_COUNT];
    char *path;
    int in_txn;
};

/* A failure of db, mapped to ss_rc (busy: SS_ERR_CONFLICT), naming the database and what. */
ss_rc ss_state_db_fail(ss_state *st, sqlite3 *db, ss_err *err, const char *what);

/* Step a write statement to completion and reset it. */
ss_rc ss_state_run(ss_state *st, sqlite3_stmt *q, ss_err *err, const char *what);

#endif
