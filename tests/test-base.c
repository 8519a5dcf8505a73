/*
 * test-base: the bottom layer's helpers every other layer leans on:
 * SS_ARRAY_GROW (doubling, the overflow it refuses, the array left whole
 * on failure) and ss_buf (append, printf that outgrows the buffer, the
 * NUL after the text, a failed print leaving the old text whole).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "ss_buf.h"

static void test_grow_doubles(void **state)
{
    int *v = NULL;
    size_t n = 0, cap = 0;
    (void)state;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(SS_ARRAY_GROW(v, n + 1, cap), SS_OK);
        v[n++] = i;
    }
    assert_true(cap >= 1000 && cap < 2000); /* doubled, not grown by one */
    assert_int_equal(cap & (cap - 1), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(v[i], i);
    assert_int_equal(SS_ARRAY_GROW(v, 10, cap), SS_OK); /* room already: unchanged */
    free(v);
}

static void test_grow_refuses_overflow(void **state)
{
    static const size_t wants[] = {SIZE_MAX, SIZE_MAX / 2 + 2, SIZE_MAX / sizeof(uint64_t) + 1};
    (void)state;
    for (size_t i = 0; i < sizeof wants / sizeof *wants; i++) {
        uint64_t *v = NULL;
        size_t cap = 0;
        assert_int_equal(SS_ARRAY_GROW(v, 3, cap), SS_OK);
        v[2] = 42;
        uint64_t *before = v;
        size_t cap_before = cap;
        assert_int_equal(SS_ARRAY_GROW(v, wants[i], cap), SS_ERR_NOMEM);
        assert_ptr_equal(v, before); /* left as it was, still the caller's */
        assert_int_equal(cap, cap_before);
        assert_int_equal(v[2], 42);
        free(v);
    }
}

static void test_buf_append(void **state)
{
    ss_buf b = {0};
    (void)state;
    assert_int_equal(ss_buf_append(&b, "", 0), 0);
    assert_non_null(b.p);
    assert_int_equal(b.p[0], '\0');
    for (int i = 0; i < 100; i++)
        assert_int_equal(ss_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.p[1000], '\0');
    assert_memory_equal(b.p + 990, "0123456789", 10);
    assert_int_equal(ss_buf_append(&b, "x", SIZE_MAX - 2), -1); /* overflowing length */
    assert_int_equal(b.len, 1000);
    ss_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len + b.cap, 0);
}

static void test_buf_printf(void **state)
{
    static const struct {
        const char *name, *fmt, *arg, *want;
    } vectors[] = {
        {"empty", "%s%s", "", ""},
        {"fits", "<%s|%s>", "ab", "<ab|ab>"},
        {"outgrows the first allocation", "%s%s",
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
        ss_buf b = {0};
        print_message("%s\n", vectors[i].name);
        assert_int_equal(ss_buf_append(&b, "pre:", 4), 0);
        assert_int_equal(ss_buf_printf(&b, vectors[i].fmt, vectors[i].arg, vectors[i].arg), 0);
        assert_int_equal(b.len, 4 + strlen(vectors[i].want));
        assert_string_equal((char *)b.p + 4, vectors[i].want);
        assert_memory_equal(b.p, "pre:", 4);
        ss_buf_free(&b);
    }
}

static void test_buf_printf_many(void **state)
{
    ss_buf b = {0};
    char want[16];
    (void)state;
    for (int i = 0; i < 10000; i++)
        assert_int_equal(ss_buf_printf(&b, "%05d\n", i), 0);
    assert_int_equal(b.len, 60000);
    snprintf(want, sizeof want, "%05d\n", 9999);
    assert_string_equal((char *)b.p + 59994, want);
    ss_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_doubles),    cmocka_unit_test(test_grow_refuses_overflow),
        cmocka_unit_test(test_buf_append),      cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_printf_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
