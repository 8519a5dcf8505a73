/*
 * path: path order, validation and quoting.
 *
 * Owns the '/'-lowest comparison and the rules of a stored path; see path.h.
 */
#include "path.h"

#include <stdint.h>
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

/*
 * The code point that UTF-8 encodes at s (n > 0 bytes left) and its length,
 * or 0 when s starts no valid sequence (a stray byte, an overlong form, a
 * surrogate, beyond U+10FFFF, or cut short).
 */
static size_t utf8_at(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
    uint32_t c = s[0], min;
    size_t len;
    *ret_cp = 0;
    if (c < 0x80) {
        *ret_cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, c &= 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, c &= 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, c &= 0x07, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *ret_cp = c;
    return len;
}

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

static int in_ranges(const cp_range *r, size_t n, uint32_t cp)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

/*
 * What a terminal must not get raw: C0 controls and DEL, C1 controls (some
 * terminals take U+009B as CSI), and the marks that reorder or break what
 * is shown (bidi controls, line and paragraph separators).
 */
static int unsafe_to_show(uint32_t cp)
{
    static const cp_range bad[] = {{0x00, 0x1f},     {0x7f, 0x9f},     {0x061c, 0x061c},
                                   {0x200e, 0x200f}, {0x2028, 0x202e}, {0x2066, 0x2069}};
    return in_ranges(bad, sizeof bad / sizeof bad[0], cp);
}

/*
 * p for messages: valid UTF-8 that is safe to show as is, every other byte
 * as \xNN; with quoted, between double quotes with '"' and '\\' escaped.
 * Cut with "..." so the result fits cap (>= 8).
 */
static char *escape(char *dst, size_t cap, const char *p, size_t len, int quoted)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)p;
    size_t o = 0, room = cap - (quoted ? 5 : 4), n; /* "...", the closing quote and NUL */
    if (quoted) dst[o++] = '"';
    for (size_t i = 0; i < len; i += n) {
        char piece[16];
        size_t k = 0;
        uint32_t cp;
        n = utf8_at(u + i, len - i, &cp);
        if (quoted && (cp == '"' || cp == '\\')) {
            piece[k++] = '\\';
            piece[k++] = (char)cp;
        } else if (n && !unsafe_to_show(cp)) {
            memcpy(piece, p + i, n);
            k = n;
        } else {
            n = n ? n : 1; /* a stray byte alone; a whole sequence that must not show raw */
            for (size_t j = 0; j < n; j++) {
                piece[k++] = '\\';
                piece[k++] = 'x';
                piece[k++] = hex[u[i + j] >> 4];
                piece[k++] = hex[u[i + j] & 15];
            }
        }
        if (o + k > room) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(dst + o, piece, k);
        o += k;
    }
    if (quoted) dst[o++] = '"';
    dst[o] = '\0';
    return dst;
}

int ss_path_printable(const char *p, size_t len)
{
    size_t n;
    for (size_t i = 0; i < len; i += n) {
        uint32_t cp;
        n = utf8_at((const unsigned char *)p + i, len - i, &cp);
        if (!n || unsafe_to_show(cp)) return 0;
    }
    return 1;
}

char *ss_path_quote(char *dst, size_t cap, const char *p, size_t len)
{
    return escape(dst, cap, p, len, 1);
}

char *ss_path_escape(char *dst, size_t cap, const char *p, size_t len)
{
    return escape(dst, cap, p, len, 0);
}

/*
 * A code point's NFD and full case folding (Unicode CaseFolding.txt, status
 * C and F), when that is ASCII: its length in out, else 0. Beyond A-Z, the
 * only code points whose canonical decomposition or folding is all ASCII.
 */
static size_t fold_ascii(uint32_t cp, char out[4])
{
    static const struct {
        uint32_t cp;
        const char *to;
    } other[] = {
        {0x00df, "ss"},  {0x017f, "s"},  {0x037e, ";"},  {0x1e9e, "ss"}, {0x1fef, "`"},
        {0x212a, "k"},   {0xfb00, "ff"}, {0xfb01, "fi"}, {0xfb02, "fl"}, {0xfb03, "ffi"},
        {0xfb04, "ffl"}, {0xfb05, "st"}, {0xfb06, "st"},
    };
    if (cp < 0x80) {
        out[0] = (char)(cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp);
        return 1;
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (other[i].cp == cp) {
            size_t n = strlen(other[i].to);
            memcpy(out, other[i].to, n);
            return n;
        }
    return 0;
}

/* Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, 15.1). */
static int ignorable(uint32_t cp)
{
    static const cp_range di[] = {
        {0x00ad, 0x00ad},   {0x034f, 0x034f}, {0x061c, 0x061c},   {0x115f, 0x1160},
        {0x17b4, 0x17b5},   {0x180b, 0x180f}, {0x200b, 0x200f},   {0x202a, 0x202e},
        {0x2060, 0x206f},   {0x3164, 0x3164}, {0xfe00, 0xfe0f},   {0xfeff, 0xfeff},
        {0xffa0, 0xffa0},   {0xfff0, 0xfff8}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
        {0xe0000, 0xe0fff},
    };
    return in_ranges(di, sizeof di / sizeof di[0], cp);
}

/*
 * Segment [s, s+n) as a case-insensitive file system compares it: ignorable
 * code points dropped, the rest folded. 0 when some code point does not fold
 * to ASCII or the result would pass cap bytes: such a segment is none of the
 * names asked about.
 */
static int fold_segment(const char *s, size_t n, char *out, size_t cap, size_t *ret_len)
{
    size_t o = 0, len;
    *ret_len = 0;
    for (size_t i = 0; i < n; i += len) {
        char piece[4];
        size_t k;
        uint32_t cp;
        if (!(len = utf8_at((const unsigned char *)s + i, n - i, &cp))) return 0;
        if (ignorable(cp)) continue;
        if (!(k = fold_ascii(cp, piece)) || o + k > cap) return 0;
        memcpy(out + o, piece, k);
        o += k;
    }
    *ret_len = o;
    return 1;
}

int ss_path_reserved(const char *s, size_t n)
{
    const size_t want = strlen(SS_TXN_RESERVED_DIR);
    char f[16];
    size_t len;
    if (!fold_segment(s, n, f, sizeof f, &len)) return 0;
    while (len > want && (f[len - 1] == '.' || f[len - 1] == ' '))
        len--;
    return len == want && !memcmp(f, SS_TXN_RESERVED_DIR, want);
}

/* Segment [s, s+n) is "." or ".." once ignorable code points are dropped (".\u200d"). */
static int dot_alias(const char *s, size_t n)
{
    char f[2];
    size_t len;
    return fold_segment(s, n, f, sizeof f, &len) && len && f[0] == '.' && (len == 1 || f[1] == '.');
}

const char *ss_path_segment_fault(const char *s, size_t n)
{
    if (n == 0) return "empty segment";
    /*
     * Every name refused below begins with '.' once folded; a first byte that
     * is ASCII is its own code point, never ignorable, and folds to '.' only
     * if it is one. The common name is settled here (a scan asks per entry).
     */
    if ((unsigned char)s[0] < 0x80 && s[0] != '.') return NULL;
    if (n == 1 && s[0] == '.') return "'.' segment";
    if (n == 2 && s[0] == '.' && s[1] == '.') return "'..' segment";
    if (n == strlen(SS_TXN_RESERVED_DIR) && !memcmp(s, SS_TXN_RESERVED_DIR, n))
        return "inside " SS_TXN_RESERVED_DIR "/, which is never synced";
    if (ss_path_reserved(s, n))
        return "a segment that is " SS_TXN_RESERVED_DIR "/ on a case-insensitive file system, "
               "which is never synced";
    if (dot_alias(s, n)) return "a segment that is '.' or '..' on a case-insensitive file system";
    return NULL;
}

static ss_rc invalid(ss_err *err, const char *p, size_t len, const char *why)
{
    char q[160];
    return ss_fail(err, SS_ERR_INTEGRITY, "invalid path %s: %s", ss_path_quote(q, sizeof q, p, len),
                   why);
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
        const char *why = ss_path_segment_fault(p + start, i - start);
        if (why) return invalid(err, p, len, why);
        start = i + 1;
    }
    return SS_OK;
}

int ss_path_at_or_under(const char *top, size_t top_len, const char *path, size_t len)
{
    return !top_len || (len == top_len && !memcmp(path, top, len)) ||
           ss_path_is_ancestor(top, top_len, path, len);
}
