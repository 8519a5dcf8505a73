/*
 * test-path: the '/'-lowest path order (against a depth-first walk with
 * names sorted by strcmp), ancestry, validation (FORMAT.md path rules,
 * invariant 6) and the quoting used in messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"
#include "reserved-names.h"

static int cmp(const char *a, const char *b)
{
    int c = ss_path_cmp(a, strlen(a), b, strlen(b));
    return c < 0 ? -1 : c > 0;
}

static void test_cmp_table(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int want;
    } cases[] = {
        {"a", "a", 0},         {"a", "a/b", -1},      {"a/b", "a-c", -1},   {"a-c", "b", -1},
        {"a/b", "a/b/c", -1},  {"a/b/c", "a/b", 1},   {"a/b", "a/b", 0},    {"ab", "a", 1},
        {"a", "ab", -1},       {"a/z", "a.txt", -1},  {"a/z", "a0", -1},    {"a b", "a/b", 1},
        {"a/b/c", "a/bc", -1}, {"a/b-c", "a/b/c", 1}, {"A", "a", -1},       {"\x7f", "\x80", -1},
        {"\xff", "a", 1},      {"x/\xff", "x!", -1},  {"dir/", "dir!", -1}, {"", "a", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = cmp(cases[i].a, cases[i].b);
        if (got != cases[i].want)
            fprintf(stderr, "cmp(\"%s\", \"%s\") = %d, want %d\n", cases[i].a, cases[i].b, got,
                    cases[i].want);
        assert_int_equal(got, cases[i].want);
        assert_int_equal(cmp(cases[i].b, cases[i].a), -cases[i].want);
    }
}

/* NUL is ordered too (just above '/'), so the order is total on any bytes. */
static void test_cmp_nul(void **state)
{
    (void)state;
    assert_true(ss_path_cmp("a\0", 2, "a/", 2) > 0);
    assert_true(ss_path_cmp("a\0", 2, "a\x01", 2) < 0);
    assert_true(ss_path_cmp("a", 1, "a\0", 2) < 0);
}

/* A depth-first walk, names sorted by strcmp, is already in ss_path_cmp order. */
static void test_cmp_is_walk_order(void **state)
{
    (void)state;
    static const char *walk[] = {
        "a",  "a/b",  "a/b/c", "a/b/d", "a/b-", "a/b.x", "a/bb",  "a!",  "a-c",   "a-c/x", "a.txt",
        "a0", "a0/!", "a0/0",  "aa",    "b",    "b/x",   "b/x/y", "b c", "b c/d", "b!",    "b0",
    };
    size_t n = sizeof walk / sizeof walk[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int want = i < j ? -1 : i > j;
            if (cmp(walk[i], walk[j]) != want)
                fprintf(stderr, "walk order: \"%s\" vs \"%s\"\n", walk[i], walk[j]);
            assert_int_equal(cmp(walk[i], walk[j]), want);
        }
}

static void test_ancestor(void **state)
{
    (void)state;
    assert_true(ss_path_is_ancestor("a", 1, "a/b", 3));
    assert_true(ss_path_is_ancestor("a", 1, "a/b/c", 5));
    assert_true(ss_path_is_ancestor("a/b", 3, "a/b/c", 5));
    assert_false(ss_path_is_ancestor("a", 1, "a", 1));
    assert_false(ss_path_is_ancestor("a", 1, "a-b", 3));
    assert_false(ss_path_is_ancestor("a", 1, "ab/c", 4));
    assert_false(ss_path_is_ancestor("a/b", 3, "a", 1));
    assert_false(ss_path_is_ancestor("b", 1, "a/b", 3));
}

static void test_validate_accept(void **state)
{
    (void)state;
    static const char *ok[] = {
        "a",        "a/b",   "a/b/c.txt", "...",  ".hidden",       ".s3sync2",
        ".s3syn",   "x/..y", "..a/b",     "a./b", "a b/ c ",       "\xc3\xa9t\xc3\xa9",
        "\xff\xfe", "a\\b",  "a:b*?<>|",  "-",    ".s3sync-old/x",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ss_err err = {{0}};
        ss_rc rc = ss_path_validate(ok[i], strlen(ok[i]), &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, SS_OK);
    }
    char longest[SS_PATH_MAX];
    memset(longest, 'x', sizeof longest);
    for (size_t i = 100; i < sizeof longest; i += 100)
        longest[i] = '/';
    assert_int_equal(ss_path_validate(longest, sizeof longest, NULL), SS_OK);
}

static void test_validate_reject(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t len; /* 0: strlen */
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {"/a", 0, "absolute"},
        {"/", 0, "absolute"},
        {"a/", 0, "trailing '/'"},
        {"a//b", 0, "empty segment"},
        {".", 0, "'.' segment"},
        {"a/./b", 0, "'.' segment"},
        {"a/.", 0, "'.' segment"},
        {"..", 0, "'..' segment"},
        {"../a", 0, "'..' segment"},
        {"a/../b", 0, "'..' segment"},
        {"a/..", 0, "'..' segment"},
        {".s3sync", 0, "inside .s3sync/"},
        {".s3sync/state.db", 0, "inside .s3sync/"},
        {"a/.s3sync", 0, "inside .s3sync/"},
        {"a/b/.s3sync/config", 0, "inside .s3sync/"},
        {"sub/.S3SYNC/master.key", 0, ".s3sync/ on a case-insensitive file system"},
        {"a\0b", 3, "contains NUL"},
        {"a\0", 2, "contains NUL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ss_err err = {{0}};
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].p);
        ss_rc rc = ss_path_validate(bad[i].p, len, &err);
        assert_int_equal(rc, SS_ERR_INTEGRITY);
        if (!strstr(err.msg, bad[i].why)) fprintf(stderr, "case %zu: %s\n", i, err.msg);
        assert_non_null(strstr(err.msg, bad[i].why));
    }
}

/* Every alias of the control folder, alone, first, in the middle and last. */
static void test_validate_reserved_aliases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof g_reserved / sizeof g_reserved[0]; i++) {
        const char *n = g_reserved[i].name;
        char p[4][128];
        snprintf(p[0], sizeof p[0], "%s", n);
        snprintf(p[1], sizeof p[1], "%s/config", n);
        snprintf(p[2], sizeof p[2], "sub/%s/master.key", n);
        snprintf(p[3], sizeof p[3], "a/b/%s", n);
        if (!ss_path_reserved(n, strlen(n))) fail_msg("%s: not reserved", g_reserved[i].what);
        for (int j = 0; j < 4; j++) {
            ss_err err = {{0}};
            if (ss_path_validate(p[j], strlen(p[j]), &err) != SS_ERR_INTEGRITY)
                fail_msg("%s: \"%s\" is taken for a valid path", g_reserved[i].what, p[j]);
            if (!strstr(err.msg, ".s3sync/")) fail_msg("%s: %s", g_reserved[i].what, err.msg);
        }
    }
    for (size_t i = 0; i < sizeof g_dot_aliases / sizeof g_dot_aliases[0]; i++) {
        char p[64];
        ss_err err = {{0}};
        snprintf(p, sizeof p, "a/%s/escape.txt", g_dot_aliases[i].name);
        if (ss_path_validate(p, strlen(p), &err) != SS_ERR_INTEGRITY)
            fail_msg("%s: taken for a valid path", g_dot_aliases[i].what);
        if (!strstr(err.msg, "'.' or '..'")) fail_msg("%s: %s", g_dot_aliases[i].what, err.msg);
    }
    for (size_t i = 0; i < sizeof g_not_reserved / sizeof g_not_reserved[0]; i++) {
        const char *n = g_not_reserved[i].name;
        char p[64];
        ss_err err = {{0}};
        snprintf(p, sizeof p, "sub/%s/x", n);
        if (ss_path_reserved(n, strlen(n)) || ss_path_validate(p, strlen(p), &err))
            fail_msg("%s: refused: %s", g_not_reserved[i].what, err.msg);
    }
}

static void test_validate_length(void **state)
{
    (void)state;
    char *p = malloc(SS_PATH_MAX + 1);
    assert_non_null(p);
    memset(p, 'a', SS_PATH_MAX + 1);
    ss_err err = {{0}};
    assert_int_equal(ss_path_validate(p, SS_PATH_MAX, &err), SS_OK);
    assert_int_equal(ss_path_validate(p, SS_PATH_MAX + 1, &err), SS_ERR_INTEGRITY);
    assert_non_null(strstr(err.msg, "4097 bytes"));
    assert_true(strlen(err.msg) < 300); /* the quote is cut short */
    free(p);
}

/* A hostile name must not reach a terminal raw: no control byte in the message. */
static void test_validate_quotes_safely(void **state)
{
    (void)state;
    ss_err err = {{0}};
    const char p[] = "\x1b[31m/../\"q\"\\\n\xff";
    assert_int_equal(ss_path_validate(p, sizeof p - 1, &err), SS_ERR_INTEGRITY);
    for (const char *c = err.msg; *c; c++)
        assert_true(*c >= 0x20 && *c < 0x7f);
    assert_non_null(strstr(err.msg, "\"\\x1b[31m/../\\\"q\\\"\\\\\\x0a\\xff\""));
}

static void test_quote(void **state)
{
    (void)state;
    char q[16];
    assert_string_equal(ss_path_quote(q, sizeof q, "ab", 2), "\"ab\"");
    assert_string_equal(ss_path_quote(q, sizeof q, "", 0), "\"\"");
    assert_string_equal(ss_path_quote(q, sizeof q, "a\0b", 3), "\"a\\x00b\"");
    ss_path_quote(q, sizeof q, "0123456789abcdefghij", 20);
    assert_true(strlen(q) < sizeof q);
    assert_non_null(strstr(q, "...\""));
    char small[8];
    ss_path_quote(small, sizeof small, "\x01\x02\x03\x04", 4);
    assert_true(strlen(small) < sizeof small);
}

/* What a terminal would act on never comes out raw; readable UTF-8 does. */
static void test_escape_for_terminal(void **state)
{
    (void)state;
    static const struct {
        const char *in, *escaped, *quoted;
    } cases[] = {
        {"\x1b]0;owned\x07", "\\x1b]0;owned\\x07", "\"\\x1b]0;owned\\x07\""},
        {"\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H", "\"\\x1b[2J\\x1b[H\""},
        {"a\rb\nc\td", "a\\x0db\\x0ac\\x09d", "\"a\\x0db\\x0ac\\x09d\""},
        {"del\x7f", "del\\x7f", "\"del\\x7f\""},
        {"csi\xc2\x9b"
         "31m",
         "csi\\xc2\\x9b31m", "\"csi\\xc2\\x9b31m\""}, /* U+009B */
        {"rlo\xe2\x80\xae"
         "txt.exe",
         "rlo\\xe2\\x80\\xaetxt.exe", NULL}, /* U+202E */
        {"ls\xe2\x80\xa8"
         "x",
         "ls\\xe2\\x80\\xa8x", NULL}, /* U+2028 */
        {"caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80",
         "\"caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80\""},
        {"bad\xff\xc3", "bad\\xff\\xc3", "\"bad\\xff\\xc3\""},
        {"over\xc0\xae", "over\\xc0\\xae", NULL},
        {"q\"b\\s", "q\"b\\s", "\"q\\\"b\\\\s\""},
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        assert_string_equal(ss_path_escape(out, sizeof out, cases[i].in, len), cases[i].escaped);
        if (cases[i].quoted)
            assert_string_equal(ss_path_quote(out, sizeof out, cases[i].in, len), cases[i].quoted);
    }
    /* Any bytes at all: no C0, DEL or C1 byte pair comes out, and it fits. */
    srand(7);
    for (int round = 0; round < 20000; round++) {
        unsigned char in[24];
        char small[40];
        size_t len = (size_t)(rand() % (int)sizeof in);
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)(rand() % 4 ? rand() : 0x80 + rand() % 0x40);
        ss_path_escape(small, sizeof small, (const char *)in, len);
        assert_true(strlen(small) < sizeof small);
        for (const unsigned char *c = (const unsigned char *)small; *c; c++) {
            assert_false(*c < 0x20 || *c == 0x7f);
            assert_false(c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmp_table),
        cmocka_unit_test(test_cmp_nul),
        cmocka_unit_test(test_cmp_is_walk_order),
        cmocka_unit_test(test_ancestor),
        cmocka_unit_test(test_validate_accept),
        cmocka_unit_test(test_validate_reject),
        cmocka_unit_test(test_validate_reserved_aliases),
        cmocka_unit_test(test_validate_length),
        cmocka_unit_test(test_validate_quotes_safely),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_escape_for_terminal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
