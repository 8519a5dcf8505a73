/*
 * path: the relative paths a repository stores, their order and their rules.
 *
 * Owns what a valid path is (docs/FORMAT.md "Transactions": 1 to 4096 bytes,
 * no NUL, no empty, "." or ".." segment, no leading or trailing '/', no
 * segment that is ".s3sync" on any file system, see ss_path_reserved;
 * invariant 6), how a name from elsewhere is shown in a message, and the one
 * order every sorted list of paths uses: bytes compared with '/' lowest.
 * That order is a depth-first walk with each directory's names sorted by
 * strcmp, so a directory's subtree follows it directly, before a sibling
 * such as "a-c" or "a.txt"; the scanner, the state index and the
 * transaction codec all rely on it.
 *
 * Paths are (pointer, length) pairs: a decoder checks a name before trusting
 * that it holds no NUL.
 */
#ifndef SS_PATH_H
#define SS_PATH_H

#include <stddef.h>

#include "format.h"
#include "ss_error.h"

#define SS_PATH_MAX SS_TXN_PATH_MAX /* longest valid path, in bytes (no NUL counted) */

/* <0, 0, >0 as a sorts before, equal to, after b. A total order on any bytes. */
int ss_path_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* Nonzero when a is a proper ancestor of b ("a" of "a/b", not of "a-b" nor "a"). */
int ss_path_is_ancestor(const char *a, size_t alen, const char *b, size_t blen);
/* path is top itself or under it ("" is above every path). */
int ss_path_at_or_under(const char *top, size_t top_len, const char *path, size_t len);

/*
 * SS_OK when p is a valid path; else SS_ERR_INTEGRITY with err naming the
 * rule broken and quoting the path (escaped, cut short when long). Callers
 * that check their own input rather than decoded bytes map the code.
 */
ss_rc ss_path_validate(const char *p, size_t len, ss_err *err);

/*
 * Nonzero when the segment [s, s+n) is the control folder ".s3sync" on some
 * file system s3sync runs on: ASCII case ignored (macOS, casefolded ext4,
 * tmpfs and f2fs), and as Linux's utf8 casefolding ("nfdicf") compares
 * names: every Unicode Default_Ignorable_Code_Point dropped (U+200D ZERO
 * WIDTH JOINER, U+00AD SOFT HYPHEN, variation selectors...), then NFD and
 * full case folding, under which U+017F LATIN SMALL LETTER LONG S is 's';
 * then trailing '.' and ' ' dropped (Windows and FAT file systems drop
 * them). Bytes that are not UTF-8 compare as bytes (as casefolding does),
 * so they never make such a segment.
 */
int ss_path_reserved(const char *s, size_t n);

/*
 * Why the name [s, s+n) cannot be a path segment, or NULL when it can:
 * empty, "." or "..", either of those with ignorable code points added (a
 * file system that folds names may take "..\u200d" for ".." itself), or
 * ss_path_reserved. The scan skips what a transaction could not hold.
 */
const char *ss_path_segment_fault(const char *s, size_t n);

/*
 * p for messages, so that a name from the store, another device or the
 * folder cannot drive the terminal: valid UTF-8 as is, except C0 and C1
 * controls, DEL and the marks that reorder or break a line (bidi controls,
 * U+2028, U+2029), which come out as \xNN per byte, as does every byte
 * that is not UTF-8. ss_path_quote puts the result in double quotes with
 * '"' and '\\' escaped as well; ss_path_escape leaves those (a message
 * that quoted a path already). Cut with "..." so the result fits cap (>= 8).
 * Always NUL-terminates; returns dst.
 */
char *ss_path_quote(char *dst, size_t cap, const char *p, size_t len);
/* Nonzero when p is UTF-8 that ss_path_escape shows as it is (a device name must be). */
int ss_path_printable(const char *p, size_t len);
char *ss_path_escape(char *dst, size_t cap, const char *p, size_t len);

#endif
