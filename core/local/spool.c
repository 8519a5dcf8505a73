/* spool: the temp-file queue of ops behind push (see spool.h). */
#include "spool.h"
#include "path.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A record's inline bytes or symlink target: at most the largest inline limit. */
#define SPOOL_DATA_MAX SS_CONFIG_INLINE_LIMIT_MAX
_Static_assert(SS_TXN_TARGET_MAX <= SS_CONFIG_INLINE_LIMIT_MAX, "a target fits a record");

typedef struct rec {
    uint8_t type, kind, storage;
    uint32_t mode, mtime_ns, n_chunks;
    int64_t mtime_s;
    uint64_t size;
    uint32_t path_len, data_len;
    uint8_t content_id[SS_TXN_CONTENT_ID_BYTES];
} rec;

struct ss_spool {
    FILE *fp;
    uint32_t n;
};

ss_rc ss_spool_new(int fd, ss_spool **ret, ss_err *err)
{
    ss_spool *sp = calloc(1, sizeof *sp);
    *ret = NULL;
    if (sp) sp->fp = fdopen(fd, "w+");
    if (!sp || !sp->fp) {
        free(sp);
        close(fd);
        return ss_fail(err, SS_ERR_NOMEM, "spool: out of memory");
    }
    *ret = sp;
    return SS_OK;
}

void ss_spool_free(ss_spool *sp)
{
    if (!sp) return;
    fclose(sp->fp);
    free(sp);
}

uint32_t ss_spool_count(const ss_spool *sp)
{
    return sp->n;
}

ss_rc ss_spool_put(ss_spool *sp, const ss_txn_entry *e, const ss_chunk_ref *chunks, ss_err *err)
{
    rec r = {.type = (uint8_t)e->type,
             .kind = (uint8_t)e->kind,
             .storage = (uint8_t)e->storage,
             .mode = e->mode,
             .mtime_ns = e->mtime_ns,
             .mtime_s = e->mtime_s,
             .size = e->size,
             .path_len = (uint32_t)e->path_len};
    const void *data = NULL;
    if (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_FILE) {
        memcpy(r.content_id, e->content_id, sizeof r.content_id);
        if (e->storage == SS_TXN_INLINE)
            data = e->inline_data, r.data_len = (uint32_t)e->size;
        else
            r.n_chunks = e->n_chunks;
    } else if (e->type == SS_TXN_UPSERT && e->kind == SS_TXN_SYMLINK) {
        data = e->target, r.data_len = (uint32_t)e->size;
    }
    if (fwrite(&r, sizeof r, 1, sp->fp) != 1 ||
        fwrite(e->path, 1, r.path_len, sp->fp) != r.path_len ||
        (r.data_len && fwrite(data, 1, r.data_len, sp->fp) != r.data_len) ||
        (r.n_chunks && fwrite(chunks, sizeof *chunks, r.n_chunks, sp->fp) != r.n_chunks))
        return ss_fail(err, SS_ERR_IO, "spool: write failed (disk full?)");
    sp->n++;
    return SS_OK;
}

static ss_rc replay_one(ss_spool *sp, ss_txn_writer *w, const uint32_t *remap, char *path,
                        uint8_t *data, ss_err *err)
{
    rec r;
    ss_txn_entry e = {0};
    ss_chunk_ref c;
    ss_rc rc;
    if (fread(&r, sizeof r, 1, sp->fp) != 1 || r.path_len > SS_PATH_MAX ||
        r.data_len > SPOOL_DATA_MAX || fread(path, 1, r.path_len, sp->fp) != r.path_len ||
        (r.data_len && fread(data, 1, r.data_len, sp->fp) != r.data_len))
        return ss_fail(err, SS_ERR_IO, "spool: read back failed");
    path[r.path_len] = '\0';
    if (r.type == SS_TXN_DELETE) return ss_txn_put_delete(w, path, r.path_len, err);
    e = (ss_txn_entry){.type = SS_TXN_UPSERT,
                       .path = path,
                       .path_len = r.path_len,
                       .kind = r.kind,
                       .mode = r.mode,
                       .mtime_s = r.mtime_s,
                       .mtime_ns = r.mtime_ns,
                       .size = r.size,
                       .storage = r.storage,
                       .n_chunks = r.n_chunks};
    memcpy(e.content_id, r.content_id, sizeof e.content_id);
    if (r.kind == SS_TXN_SYMLINK)
        e.target = (const char *)data;
    else if (r.kind == SS_TXN_FILE && r.storage == SS_TXN_INLINE)
        e.inline_data = data;
    rc = ss_txn_put_upsert(w, &e, err);
    if (rc) return rc;
    for (uint32_t i = 0; i < r.n_chunks; i++) {
        if (fread(&c, sizeof c, 1, sp->fp) != 1)
            return ss_fail(err, SS_ERR_IO, "spool: read back failed");
        c.pack = remap[c.pack];
        rc = ss_txn_put_chunk(w, &c, err);
        if (rc) return rc;
    }
    return SS_OK;
}

ss_rc ss_spool_replay(ss_spool *sp, ss_txn_writer *w, const uint32_t *remap, ss_err *err)
{
    char *path = malloc(SS_PATH_MAX + 1);
    uint8_t *data = malloc(SPOOL_DATA_MAX);
    ss_rc rc = SS_OK;
    if (!path || !data) {
        rc = ss_fail(err, SS_ERR_NOMEM, "spool: out of memory");
        goto done;
    }
    if (fflush(sp->fp) || fseek(sp->fp, 0, SEEK_SET)) {
        rc = ss_fail(err, SS_ERR_IO, "spool: rewind failed");
        goto done;
    }
    for (uint32_t i = 0; i < sp->n; i++) {
        rc = replay_one(sp, w, remap, path, data, err);
        if (rc) goto done;
    }
done:
    free(path);
    free(data);
    return rc;
}
