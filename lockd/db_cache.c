/*
 * db_cache.c: the read cache of lockd's database (db_impl.h says how it
 * stays valid) and the two hot reads it serves: a device by token hash
 * (every request's Bearer check) and a repository's state (GET head, and
 * the start of every lease decision).
 */
#include "db_impl.h"

#include <string.h>

void db_cache_flush(ld_db *db)
{
    memset(db->devs, 0, sizeof db->devs);
    memset(db->repos, 0, sizeof db->repos);
}

int db_cache_valid(ld_db *db)
{
    sqlite3_stmt *st = NULL;
    int64_t changes = sqlite3_total_changes64(db->sql), version = -1;
    ss_rc rc = db_take(db, S_DATA_VERSION, &st, NULL);
    if (!rc && sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int64(st, 0);
    db_give(db, S_DATA_VERSION, st);
    if (version < 0) {
        db_cache_flush(db);
        db->seen_version = -1;
        return -1;
    }
    if (version != db->seen_version || changes != db->seen_changes) {
        db_cache_flush(db);
        db->seen_version = version;
        db->seen_changes = changes;
    }
    return 0;
}

static unsigned name_slot(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a: names are few and short */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % CACHE_SLOTS;
}

static unsigned hash_slot(const unsigned char hash[LD_HASH_LEN])
{
    return ((unsigned)hash[0] | (unsigned)hash[1] << 8) % CACHE_SLOTS;
}

ss_rc ld_db_device_by_hash(ld_db *db, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                           unsigned char ret_hash[LD_HASH_LEN], ss_err *err)
{
    dev_slot *c = &db->devs[hash_slot(hash)];
    ss_rc rc = SS_OK;
    pthread_mutex_lock(&db->mu);
    if (db_cache_valid(db) == 0 && c->used && !memcmp(c->hash, hash, LD_HASH_LEN)) {
        *ret = c->dev;
        memcpy(ret_hash, c->hash, LD_HASH_LEN);
        goto out;
    }
    rc = db_device_by_hash(db, hash, ret, ret_hash, err);
    if (rc) goto out;
    if (db->seen_version >= 0) {
        c->used = 1;
        memcpy(c->hash, ret_hash, LD_HASH_LEN);
        c->dev = *ret;
    }
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Both rows from one snapshot: one read transaction, not one per statement. */
static ss_rc state_read(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                        int *ret_found, ss_err *err)
{
    ss_rc rc = db_txn(db, S_BEGIN, err);
    if (rc) return rc;
    rc = db_repo_get(db, repo, ret_repo, err);
    if (rc) goto out;
    rc = db_lease_get(db, repo, ret_lease, ret_found, err);
out:
    return db_finish(db, rc, err);
}

ss_rc ld_db_repo_state(ld_db *db, const char *repo, ld_repo_row *ret_repo, ld_lease_row *ret_lease,
                       int *ret_found, ss_err *err)
{
    repo_slot *c = &db->repos[name_slot(repo)];
    ss_rc rc = SS_OK;
    *ret_found = 0;
    pthread_mutex_lock(&db->mu);
    if (db_cache_valid(db) == 0 && c->used && !strcmp(c->repo.name, repo)) {
        *ret_repo = c->repo;
        *ret_lease = c->lease;
        *ret_found = c->lease_found;
        goto out;
    }
    rc = state_read(db, repo, ret_repo, ret_lease, ret_found, err);
    if (rc) goto out;
    /* Cached only when no write of this connection came between the check and the read. */
    if (db->seen_version >= 0 && sqlite3_total_changes64(db->sql) == db->seen_changes) {
        c->used = 1;
        c->repo = *ret_repo;
        c->lease_found = *ret_found;
        if (*ret_found)
            c->lease = *ret_lease;
        else
            memset(&c->lease, 0, sizeof c->lease);
    }
out:
    pthread_mutex_unlock(&db->mu);
    return rc;
}
