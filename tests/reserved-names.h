/*
 * reserved-names: names that are the control folder .s3sync on some file
 * system (core/path.h ss_path_reserved), and look-alikes that are not. One
 * table for the rule's unit test (test-path) and for the kernel's own
 * casefolding, which must agree where it folds (test-localfaults).
 */
#ifndef SS_TEST_RESERVED_NAMES_H
#define SS_TEST_RESERVED_NAMES_H

typedef struct reserved_name {
    const char *what, *name;
    int casefold; /* Linux's utf8 casefolding takes it for .s3sync too (not the Windows rules) */
} reserved_name;

static const reserved_name g_reserved[] = {
    {"exact", ".s3sync", 1},
    {"upper case", ".S3SYNC", 1},
    {"mixed case", ".s3sYnc", 1},
    {"U+017F LATIN SMALL LETTER LONG S",
     ".\xc5\xbf"
     "3sync",
     1},
    {"U+017F and upper case",
     ".\xc5\xbf"
     "3SYNC",
     1},
    {"U+200D ZERO WIDTH JOINER inside",
     ".s3\xe2\x80\x8d"
     "sync",
     1},
    {"U+200C ZERO WIDTH NON-JOINER inside",
     ".s3s\xe2\x80\x8c"
     "ync",
     1},
    {"U+00AD SOFT HYPHEN inside",
     ".s3sy\xc2\xad"
     "nc",
     1},
    {"U+FEFF BOM first", "\xef\xbb\xbf.s3sync", 1},
    {"U+2060 WORD JOINER after the dot",
     ".\xe2\x81\xa0"
     "s3sync",
     1},
    {"U+FE0F VARIATION SELECTOR-16 last", ".s3sync\xef\xb8\x8f", 1},
    {"U+034F COMBINING GRAPHEME JOINER last", ".s3sync\xcd\x8f", 1},
    {"U+180B MONGOLIAN FREE VARIATION SELECTOR ONE last", ".s3sync\xe1\xa0\x8b", 1},
    {"U+3164 HANGUL FILLER inside",
     ".s3\xe3\x85\xa4"
     "sync",
     1},
    {"U+E0041 TAG LATIN CAPITAL LETTER A last", ".s3sync\xf3\xa0\x81\x81", 1},
    {"long s, upper case and a joiner",
     ".\xc5\xbf"
     "3S\xe2\x80\x8d"
     "YNC",
     1},
    {"a trailing dot (Windows)", ".s3sync.", 0},
    {"a trailing space (Windows)", ".s3sync ", 0},
    {"trailing dots and spaces, upper case (Windows)", ".S3Sync. .", 0},
};

/* Segments that fold to "." or "..": a file system that folds names could take them for those. */
static const reserved_name g_dot_aliases[] = {
    {"'..' and U+200D", "..\xe2\x80\x8d", 1},
    {"'.' and U+200D", ".\xe2\x80\x8d", 1},
    {"U+00AD and '..'", "\xc2\xad..", 1},
};

/* Look-alikes that are other names everywhere. */
static const reserved_name g_not_reserved[] = {
    {"U+0301 COMBINING ACUTE after c (a different letter)", ".s3sync\xcc\x81", 0},
    {"U+FF13 FULLWIDTH DIGIT THREE (compatibility only)", ".s\xef\xbc\x93sync", 0},
    {"U+00B3 SUPERSCRIPT THREE (compatibility only)", ".s\xc2\xb3sync", 0},
    {"a byte that is not UTF-8", ".s3sync\xff", 0},
    {"an overlong '.' (not UTF-8)",
     "\xc0\xae"
     "s3sync",
     0},
    {"U+2028 LINE SEPARATOR (not ignorable)", ".s3sync\xe2\x80\xa8", 0},
    {"one letter more", ".s3syncs", 0},
    {"an extension", ".s3sync.x", 0},
    {"two leading dots", "..s3sync", 0},
    {"a leading space", " .s3sync", 0},
    {"three dots", "...", 0},
};

#endif
