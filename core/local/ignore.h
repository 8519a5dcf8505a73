/*
 * ignore: .s3syncignore, a gitignore-style subset. One pattern a line;
 * blank lines and lines starting with '#' are skipped; '!' negates; the last
 * matching pattern wins. A trailing '/' matches directories only. A pattern
 * with no other '/' matches the name at any depth; otherwise it is anchored
 * at the folder's root ('/' in the pattern never matched by '*' or '?'), and
 * a leading "**" + "/" matches at any depth. Wildcards: '*', '?', '[...]'.
 * A path under an ignored directory is ignored.
 */
#ifndef SS_IGNORE_H
#define SS_IGNORE_H

#include "ss_error.h"

#define SS_IGNORE_FILE ".s3syncignore"
#define SS_IGNORE_MAX (1 << 20) /* bytes: an ignore file beyond this is refused */

typedef struct ss_ignore ss_ignore;

/*
 * Read the patterns of file (relative to root, or absolute; NULL:
 * .s3syncignore). A missing .s3syncignore yields an empty set; a missing
 * file named otherwise is an error (the folder's config, ignore_file, names it).
 * The file is never followed when it lies in the folder (another device may
 * have made it a symlink: to /dev/zero, to a fifo) and must be a regular
 * file of at most SS_IGNORE_MAX bytes; else a one-line error names it.
 */
ss_rc ss_ignore_load(const char *root, const char *file, ss_ignore **ret_ign, ss_err *err);
/* Parse patterns from a string (tests; ss_ignore_load uses it). */
ss_rc ss_ignore_parse(const char *text, ss_ignore **ret_ign, ss_err *err);
void ss_ignore_free(ss_ignore *ign);

/* 1 when the relative path (or one of its parent directories) is ignored. */
int ss_ignore_match(const ss_ignore *ign, const char *path, int is_dir);

#endif
