/*
 * path: path order, validation and quoting.
 *
 * Owns the '/'-lowest comparison and the rules of a stored path; see path.h.
 */
#include "path.h"

#include <stdio.h>
#include <string.h>

/* '/' below every other byte, NUL next, so the order stays total on any input. */
static unsigned rank(char c)
{
    unsigned char u = (unsigned char)c;
    return u == '/' ? 0u : u + 1u;
}

int ss_path_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == b[i]) continue;
        return rank(a[i]) < rank(b[i]) ? -1 : 1;
    }
    if (alen == blen) return 0;
    return alen < blen ? -1 : 1;
}

int ss_path_is_ancestor(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen < blen && b[alen] == '/' && memcmp(a, b, alen) == 0;
}

char *ss_path_quote(char *dst, size_t cap, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    /* Room kept for the worst escape (4), "..." (3), the closing quote and NUL. */
    size_t stop = cap > 9 ? cap - 9 : 0;
    dst[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (o >= stop) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return dst;
}

static ss_rc invalid(ss_err *err, const char *p, size_t len, const char *why)
{
    char q[160];
    return ss_fail(err, SS_ERR_INTEGRITY, "invalid path %s: %s", ss_path_quote(q, sizeof q, p, len),
                   why);
}

/* The reason segment [s, s+n) breaks a rule, or NULL; first says it is the first segment. */
static const char *segment_fault(const char *s, size_t n, int first)
{
    if (n == 0) return "empty segment";
    if (n == 1 && s[0] == '.') return "'.' segment";
    if (n == 2 && s[0] == '.' && s[1] == '.') return "'..' segment";
    if (first && n == strlen(SS_TXN_RESERVED_DIR) && memcmp(s, SS_TXN_RESERVED_DIR, n) == 0)
        return "inside " SS_TXN_RESERVED_DIR "/, which is never synced";
    return NULL;
}

ss_rc ss_path_validate(const char *p, size_t len, ss_err *err)
{
    if (len == 0) return ss_fail(err, SS_ERR_INTEGRITY, "invalid path: empty");
    if (len > SS_PATH_MAX) {
        char q[160];
        return ss_fail(err, SS_ERR_INTEGRITY, "invalid path %s: %zu bytes, more than %d",
                       ss_path_quote(q, sizeof q, p, len), len, SS_PATH_MAX);
    }
    if (memchr(p, '\0', len)) return invalid(err, p, len, "contains NUL");
    if (p[0] == '/') return invalid(err, p, len, "absolute");
    if (p[len - 1] == '/') return invalid(err, p, len, "trailing '/'");
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '/') continue;
        const char *why = segment_fault(p + start, i - start, start == 0);
        if (why) return invalid(err, p, len, why);
        start = i + 1;
    }
    return SS_OK;
}
