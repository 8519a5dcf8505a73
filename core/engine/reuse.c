/*
 * reuse: the local copy of a file as a source of the chunks a pull needs.
 *
 * When a pulled transaction changes a file, most of its new chunks are
 * usually chunks of the version this device already has: a one-byte edit
 * of a large file changes one chunk. The state row of the path says where
 * each chunk of the last synced version sits in the file, so those chunks
 * are read from the local file instead of the store.
 *
 * Nothing read here is trusted: each chunk is re-hashed with the keyed
 * chunk id and used only when the id matches the one the transaction
 * names (verify on read), and the bytes that were hashed are the bytes
 * written to the stage. So the local file may have changed since it was
 * synced (a conflict in the making), or may change while it is read: a
 * chunk that no longer matches is simply fetched from the store.
 */
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "engine.h"
#include "fsio.h"

typedef struct where {
    uint8_t id[SS_CHUNK_ID_LEN];
    uint64_t off; /* in the local file */
    uint32_t len;
} where;

struct eng_reuse {
    ss_folder *f;
    int fd;
    where *v; /* sorted by id */
    size_t n;
    uint8_t *buf; /* a chunk read back */
    size_t buf_cap;
};

static int where_cmp(const void *a, const void *b)
{
    return memcmp(((const where *)a)->id, ((const where *)b)->id, SS_CHUNK_ID_LEN);
}

/* The chunk map of the row's body; 0 on success, -1 when out of memory. */
static int map_body(eng_reuse *r, const ss_state_row *row)
{
    size_t pos = 0, cap = 0, pack_len;
    uint64_t off = 0;
    const char *pack;
    ss_chunk_ref ref;
    while (ss_state_body_next(row->body, row->body_len, &pos, &pack, &pack_len, &ref)) {
        if (SS_ARRAY_GROW(r->v, r->n + 1, cap)) return -1;
        memcpy(r->v[r->n].id, ref.id, SS_CHUNK_ID_LEN);
        r->v[r->n].off = off;
        r->v[r->n++].len = ref.plain_len;
        off += ref.plain_len;
    }
    qsort(r->v, r->n, sizeof *r->v, where_cmp);
    return 0;
}

/* The file at path, opened without following a symlink anywhere; -1 when not. */
static int open_local(ss_folder *f, const char *path)
{
    int fd = -1;
    return ss_fs_open(f->root_fd, path, O_RDONLY | O_NONBLOCK, &fd, NULL) ? -1 : fd;
}

ss_rc eng_reuse_open(ss_folder *f, const char *path, eng_reuse **ret_reuse, ss_err *err)
{
    ss_state_row row;
    struct stat st;
    int found = 0;
    eng_reuse *r = NULL;
    ss_rc rc;
    *ret_reuse = NULL;
    rc = ss_state_lookup(f->state, path, &row, &found, err);
    if (rc) return rc;
    if (!found || row.kind != SS_TXN_FILE || row.storage != SS_TXN_CHUNKS) return SS_OK;
    r = calloc(1, sizeof *r);
    if (!r) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    r->f = f;
    r->fd = -1;
    if (map_body(r, &row)) {
        eng_reuse_free(r);
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    if (r->n) r->fd = open_local(f, path);
    /* Not there, not a file, not readable: nothing to reuse, and not an error. */
    if (r->fd < 0 || fstat(r->fd, &st) || !S_ISREG(st.st_mode)) {
        eng_reuse_free(r);
        return SS_OK;
    }
    *ret_reuse = r;
    return SS_OK;
}

int eng_reuse_chunk(eng_reuse *r, const ss_chunk_ref *ref, int out_fd, uint64_t out_off)
{
    where key, *w;
    uint8_t id[SS_CHUNK_ID_LEN];
    if (!r) return 0;
    memcpy(key.id, ref->id, SS_CHUNK_ID_LEN);
    w = bsearch(&key, r->v, r->n, sizeof *r->v, where_cmp);
    if (!w || w->len != ref->plain_len) return 0;
    if (SS_ARRAY_GROW(r->buf, w->len, r->buf_cap)) return 0;
    if (pread(r->fd, r->buf, w->len, (off_t)w->off) != (ssize_t)w->len) return 0;
    ss_chunk_id(ss_keys_subkey(ss_repo_keys(r->f->repo), SS_SUBKEY_CHUNK_ID), r->buf, w->len, id);
    if (sodium_memcmp(id, ref->id, sizeof id)) return 0;
    if (pwrite(out_fd, r->buf, w->len, (off_t)out_off) != (ssize_t)w->len) return 0;
    r->f->prog.bytes_done += w->len;
    eng_progress(r->f);
    return 1;
}

void eng_reuse_free(eng_reuse *r)
{
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->v);
    free(r->buf);
    free(r);
}
