/*
 * dirmodes: a directory's mode set after what is inside it, and directories
 * opened to their owner while a command works inside them.
 *
 * A user who is not root cannot fill a directory that already has mode 555
 * or 000, nor write into one a later transaction finds so. A walk that
 * writes paths (pull, restore) calls ss_dirmodes_enter before each write:
 * every directory held for paths the walk has left gets its mode back,
 * deepest first, and the parents of the path are opened to their owner as
 * the write needs (u+rx on the way down, u+rwx for the parent), each held
 * with the mode to put back. A directory the walk writes itself
 * (ss_dirmodes_mkdir) stays open (its mode | u+rwx) until the walk leaves
 * it. A scan that must read a directory opens it with ss_dirmodes_open.
 * Walks in ss_path_cmp order change each mode at most twice; any order is
 * correct, only slower.
 *
 * The held directories form one chain, each an ancestor of the next, so
 * memory is bounded by the depth of a path. With a journal (the folder's
 * .s3sync/dirmodes) the modes to put back are written there, synced,
 * before a directory is opened: a command killed inside one leaves the
 * journal, and the next command puts the modes back (ss_dirmodes_recover,
 * at folder open) before an open mode could pass for a local change and be
 * pushed. A mode the user changed meanwhile is left as the user set it.
 */
#ifndef SS_DIRMODES_H
#define SS_DIRMODES_H

#include <stdint.h>

#include "ss_error.h"

typedef struct ss_dirmodes ss_dirmodes;

/* Paths are relative to root_fd; journal (may be NULL) is a file's path. */
ss_rc ss_dirmodes_new(int root_fd, const char *journal, ss_dirmodes **ret_dm, ss_err *err);
/* The walk writes path next (a file, link, directory, rename or delete there). */
ss_rc ss_dirmodes_enter(ss_dirmodes *dm, const char *path, ss_err *err);
/*
 * Make directory path (entered already) or change its mode: it gets mode once the walk leaves it.
 * *ret_made (may be NULL): 1 when this call made it (ss_fs_mkdir).
 */
ss_rc ss_dirmodes_mkdir(ss_dirmodes *dm, const char *path, uint32_t mode, int *ret_made,
                        ss_err *err);
/*
 * The walk is at directory path and needs the owner bits need (S_IRUSR |
 * S_IXUSR to list it): held open until the walk leaves it. Gone or no
 * directory: SS_ERR_NOT_FOUND.
 */
ss_rc ss_dirmodes_open(ss_dirmodes *dm, const char *path, uint32_t need, ss_err *err);
/* The walk is at path: directories it is not at or under get their modes back. */
ss_rc ss_dirmodes_leave(ss_dirmodes *dm, const char *path, ss_err *err);
/*
 * 1 when the walk moving on to path (enter, mkdir or leave) would put a
 * mode back: a writer with renames still to make in the directories it
 * leaves (apply's batch) makes them first, while they are open.
 */
int ss_dirmodes_closes(const ss_dirmodes *dm, const char *path);
/* Every directory held gets its mode back and the journal goes; the first failure is returned. */
ss_rc ss_dirmodes_finish(ss_dirmodes *dm, ss_err *err);
void ss_dirmodes_free(ss_dirmodes *dm); /* finishes first (failures ignored); NULL safe */

/* Put back the modes a killed command's journal holds, deepest first, and remove it. */
ss_rc ss_dirmodes_recover(int root_fd, const char *journal, ss_err *err);

#endif
