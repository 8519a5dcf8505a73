/*
 * engine: what push.c, pull.c and folder.c share, private to core/.
 *
 * The folder handle, how a local file becomes a content id and chunks (the
 * same way on both sides, so a device can tell "same content" without the
 * store), the state body of a chunked file, and conflict-copy names.
 */
#ifndef SS_ENGINE_H
#define SS_ENGINE_H

#include <sys/stat.h>

#include "chunker.h"
#include "ignore.h"
#include "repo.h"
#include "state.h"
#include "sync.h"
#include "txn.h"

struct ss_folder {
    char *root;   /* absolute */
    char *meta;   /* root/.s3sync */
    int root_fd;  /* O_DIRECTORY; every change goes through fsio relative to it */
    int lock_fd;
    ss_store *store;
    ss_repo *repo;
    ss_state *state;
    ss_chunker *chunker;
    ss_ignore *ign;
    ss_txn_limits limits;
    uint8_t device_id[SS_TXN_DEVICE_ID_BYTES];
    char device_name[SS_TXN_DEVICE_NAME_MAX + 1];
    ss_hooks hooks;
};

/* Called per chunk of a file being identified; data valid during the call. */
typedef ss_rc (*eng_chunk_fn)(void *ctx, const uint8_t *data, size_t len, const uint8_t id[32],
                              ss_err *err);

/*
 * Content id of the open file fd of size bytes (FORMAT.md: inline files hash
 * their bytes, others their chunk ids). For inline-sized files *ret_inline
 * gets the bytes (malloc'ed) when wanted; for others fn sees every chunk.
 */
ss_rc eng_identify(ss_folder *f, int fd, uint64_t size, eng_chunk_fn fn, void *ctx,
                   uint8_t ret_content_id[32], uint8_t **ret_inline, ss_err *err);

/* The state row's local columns match what lstat says now (no read needed). */
int eng_stat_matches(const ss_state_row *row, const struct stat *st);
/*
 * The local path (lstat st) still holds what row says, reading it only when
 * the stat does not tell (a racily recent mtime, a copy with a new inode).
 */
ss_rc eng_local_matches(ss_folder *f, const ss_state_row *row, const char *path,
                        const struct stat *st, int *ret_match, ss_err *err);
/* Fill row's local columns from st; racily-recent mtimes are marked to re-check. */
void eng_row_set_stat(ss_state_row *row, const struct stat *st);

/* State body of a chunked file: chunk refs with their pack keys spelled out. */
typedef struct eng_body {
    unsigned char *p;
    size_t len, cap;
} eng_body;
ss_rc eng_body_add(eng_body *b, const char *pack, const ss_chunk_ref *r);
void eng_body_free(eng_body *b);
/* Walk a body; *ret_pack points into it (not NUL-terminated: length in *ret_pack_len). */
int eng_body_next(const void *body, size_t len, size_t *pos, const char **ret_pack,
                  size_t *ret_pack_len, ss_chunk_ref *ret_ref);

/* "dir/name.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.ext", not yet existing. *ret owned. */
ss_rc eng_conflict_name(ss_folder *f, const char *path, char **ret_name, ss_err *err);

/* The kind a stat describes (0 for special files). */
int eng_kind_of(mode_t mode);

/* Append a path to stats->conflicts. */
ss_rc eng_stats_conflict(ss_stats *s, const char *path);

/* Path of a temp file under .s3sync/tmp/ (created empty, O_RDWR); unlinked already. */
ss_rc eng_tmpfile(ss_folder *f, int *ret_fd, ss_err *err);

#endif
