/*
 * test-s3store: the store conformance suite. The same tests run against the
 * file backend (always) and the s3 backend on the RGW that ci/test.sh
 * started (when AWS_ENDPOINT_URL and S3SYNC_TEST_BUCKET are set). Each run
 * works under a fresh random prefix, so runs never see each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "s3store.h"

static char file_root[256];
static char s3_url[256];

static ss_store *open_store(const char *url, const ss_store_opts *opts)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_store_open(url, opts, &s, &err);
    if (rc) fprintf(stderr, "open %s: %s\n", url, err.msg);
    assert_int_equal(rc, SS_OK);
    return s;
}

static int setup_file(void **state)
{
    *state = open_store(file_root, NULL);
    return 0;
}

static int setup_s3(void **state)
{
    *state = open_store(s3_url, NULL);
    return 0;
}

static int teardown(void **state)
{
    ss_store_free(*state);
    return 0;
}

static void put_ok(ss_store *s, const char *key, const char *data)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_put(s, key, data, strlen(data), 0, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
}

static void expect_content(ss_store *s, const char *key, const char *data)
{
    void *buf = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    ss_rc rc = ss_store_get(s, key, 0, SS_TO_END, &buf, &len, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, SS_OK);
    assert_int_equal(len, strlen(data));
    assert_memory_equal(buf, data, len);
    free(buf);
}

static void test_roundtrip(void **state)
{
    ss_store *s = *state;
    put_ok(s, "rt/a", "hello world");
    expect_content(s, "rt/a", "hello world");
    put_ok(s, "rt/empty", "");
    expect_content(s, "rt/empty", "");
    put_ok(s, "rt/a", "replaced"); /* a plain put overwrites */
    expect_content(s, "rt/a", "replaced");
}

static void test_create_only_conflict(void **state)
{
    ss_store *s = *state;
    ss_err err = {{0}};
    assert_int_equal(ss_store_put(s, "co/x", "first", 5, SS_PUT_CREATE_ONLY, &err), SS_OK);
    assert_int_equal(ss_store_put(s, "co/x", "second", 6, SS_PUT_CREATE_ONLY, &err), SS_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "co/x"));
    expect_content(s, "co/x", "first");
}

static const struct {
    const char *name;
    uint64_t off, len;
    const char *want;
} ranges[] = {
    {"head", 0, 4, "0123"},      {"middle", 3, 4, "3456"}, {"to-end", 7, SS_TO_END, "789"},
    {"cut-short", 8, 100, "89"}, {"past-end", 20, 5, ""},  {"zero-length", 2, 0, ""},
};

static void test_ranges(void **state)
{
    ss_store *s = *state;
    put_ok(s, "range/obj", "0123456789");
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        void *buf = NULL;
        size_t len = 0;
        ss_err err = {{0}};
        ss_rc rc = ss_store_get(s, "range/obj", ranges[i].off, ranges[i].len, &buf, &len, &err);
        if (rc) fprintf(stderr, "%s: %s\n", ranges[i].name, err.msg);
        assert_int_equal(rc, SS_OK);
        if (len != strlen(ranges[i].want) || memcmp(buf, ranges[i].want, len))
            fail_msg("range %s: got '%.*s'", ranges[i].name, (int)len, (char *)buf);
        free(buf);
    }
}

static void test_missing(void **state)
{
    ss_store *s = *state;
    void *buf = NULL;
    size_t len = 0;
    ss_store_stat st;
    ss_err err = {{0}};
    assert_int_equal(ss_store_get(s, "missing/nothing", 0, SS_TO_END, &buf, &len, &err),
                     SS_ERR_NOT_FOUND);
    assert_null(buf);
    assert_non_null(strstr(err.msg, "missing/nothing"));
    assert_int_equal(ss_store_head(s, "missing/nothing", &st, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ss_store_delete(s, "missing/nothing", &err), SS_OK);
}

static void test_head_delete(void **state)
{
    ss_store *s = *state;
    ss_store_stat st, st2;
    ss_err err = {{0}};
    put_ok(s, "hd/obj", "twelve bytes");
    assert_int_equal(ss_store_head(s, "hd/obj", &st, &err), SS_OK);
    assert_int_equal(st.size, 12);
    assert_true(st.etag[0] != '\0');
    put_ok(s, "hd/obj", "other content");
    assert_int_equal(ss_store_head(s, "hd/obj", &st2, &err), SS_OK);
    assert_int_equal(st2.size, 13);
    assert_string_not_equal(st.etag, st2.etag);
    assert_int_equal(ss_store_delete(s, "hd/obj", &err), SS_OK);
    assert_int_equal(ss_store_head(s, "hd/obj", &st, &err), SS_ERR_NOT_FOUND);
}

static const char *const odd_keys[] = {
    "odd/with space",       "odd/plus+sign",      "odd/equals=sign",
    "odd/tilde~",           "odd/percent%20not",  "odd/unicode-é-日本",
    "odd/deep/nested/path", "odd/semi;colon&amp", "odd/quote'\"",
};

static int collect(void *ctx, const char *key, const ss_store_stat *st)
{
    char ***v = ctx;
    size_t n = 0;
    (void)st;
    while ((*v) && (*v)[n])
        n++;
    *v = realloc(*v, (n + 2) * sizeof **v);
    (*v)[n] = strdup(key);
    (*v)[n + 1] = NULL;
    return 0;
}

static void free_keys(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_odd_keys(void **state)
{
    ss_store *s = *state;
    size_t n = sizeof odd_keys / sizeof *odd_keys;
    const char *sorted[sizeof odd_keys / sizeof *odd_keys];
    char **got = NULL;
    ss_err err = {{0}};
    for (size_t i = 0; i < n; i++) {
        put_ok(s, odd_keys[i], odd_keys[i]);
        expect_content(s, odd_keys[i], odd_keys[i]);
        sorted[i] = odd_keys[i];
    }
    qsort(sorted, n, sizeof *sorted, strp_cmp);
    assert_int_equal(ss_store_list(s, "odd/", NULL, collect, &got, &err), SS_OK);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(got[i]);
        assert_string_equal(got[i], sorted[i]);
    }
    assert_null(got[n]);
    free_keys(got);
}

static void test_list_many(void **state)
{
    ss_store *s = *state;
    enum { N = 1100 };
    static char keys[N][32];
    char **got = NULL;
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    size_t n = 0;

    assert_int_equal(ss_xfer_new(s, &x, &err), SS_OK);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "many/%020d", i);
        assert_int_equal(
            ss_xfer_put(x, keys[i], keys[i], strlen(keys[i]), SS_PUT_CREATE_ONLY, NULL, NULL),
            SS_OK);
    }
    if (ss_xfer_wait(x, &err)) fail_msg("%s", err.msg);
    ss_xfer_free(x);
    put_ok(s, "many-not-in-prefix", "x"); /* sorts right after the prefix: must not leak in */

    assert_int_equal(ss_store_list(s, "many/", NULL, collect, &got, &err), SS_OK);
    while (got[n]) {
        assert_string_equal(got[n], keys[n]);
        n++;
    }
    assert_int_equal(n, N);
    free_keys(got);
    got = NULL;

    /* start-after lists exactly what is newer than a watermark. */
    assert_int_equal(ss_store_list(s, "many/", keys[1049], collect, &got, &err), SS_OK);
    for (n = 0; got[n]; n++)
        assert_string_equal(got[n], keys[1050 + n]);
    assert_int_equal(n, 50);
    free_keys(got);
}

typedef struct par_get {
    int done;
    ss_rc rc;
} par_get;

static void on_done(void *ctx, ss_rc rc, const ss_err *err)
{
    par_get *p = ctx;
    (void)err;
    p->done = 1;
    p->rc = rc;
}

static void test_parallel_get(void **state)
{
    ss_store *s = *state;
    enum { N = 20 };
    char key[32], dst[N][16];
    par_get res[N] = {{0}};
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "par/%02d", i);
        snprintf(dst[i], sizeof dst[i], "value-%02d-pad", i);
        put_ok(s, key, dst[i]);
    }
    memset(dst, 0, sizeof dst);
    assert_int_equal(ss_xfer_new(s, &x, &err), SS_OK);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "par/%02d", i);
        assert_int_equal(ss_xfer_get(x, key, 6, 2, dst[i], on_done, &res[i]), SS_OK);
    }
    assert_int_equal(ss_xfer_get(x, "par/missing", 0, 4, dst[0] + 8, on_done, &res[0]), SS_OK);
    assert_int_equal(ss_xfer_wait(x, &err), SS_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "par/missing"));
    ss_xfer_free(x);
    for (int i = 0; i < N; i++) {
        char want[3];
        snprintf(want, sizeof want, "%02d", i);
        assert_true(res[i].done);
        assert_memory_equal(dst[i], want, 2);
    }
}

static void test_file_and_stream(void **state)
{
    ss_store *s = *state;
    char path[] = "/tmp/ss-store-test-XXXXXX";
    int fd = mkstemp(path);
    size_t len = 3 * 1024 * 1024 + 17;
    unsigned char *data = malloc(len), *back = NULL;
    size_t back_len = 0;
    ss_err err = {{0}};
    assert_true(fd >= 0);
    randombytes_buf(data, len);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    /* Only a window of the file: offset 100, all but the last 50 bytes. */
    assert_int_equal(ss_store_put_file(s, "big/file", fd, 100, len - 150, 0, &err), SS_OK);
    assert_int_equal(ss_store_get(s, "big/file", 0, SS_TO_END, (void **)&back, &back_len, &err),
                     SS_OK);
    assert_int_equal(back_len, len - 150);
    assert_memory_equal(back, data + 100, len - 150);
    free(back);
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(ss_store_get_file(s, "big/file", 1000, 5000, fd, &err), SS_OK);
    back = malloc(5000);
    assert_int_equal(pread(fd, back, 5000, 0), 5000);
    assert_memory_equal(back, data + 1100, 5000);
    free(back);
    close(fd);
    unlink(path);
    free(data);
}

/* --- S3-only: the failure modes a user meets first ------------------------- */

static void test_wrong_secret(void **state)
{
    (void)state;
    ss_store_opts o = {.secret_key = "definitely-not-the-secret", .max_retries = 1};
    ss_store *s = open_store(s3_url, &o);
    ss_err err = {{0}};
    assert_int_equal(ss_store_put(s, "auth/x", "x", 1, 0, &err), SS_ERR_AUTH);
    assert_non_null(strstr(err.msg, "SignatureDoesNotMatch"));
    assert_non_null(strstr(err.msg, "auth/x"));
    ss_store_free(s);
}

static void test_unreachable(void **state)
{
    (void)state;
    ss_store_opts o = {.endpoint = "http://127.0.0.1:9", .max_retries = 2, .timeout_ms = 5000};
    ss_store *s = open_store(s3_url, &o);
    ss_err err = {{0}};
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(ss_store_get(s, "x", 0, SS_TO_END, &buf, &len, &err), SS_ERR_TEMPORARY);
    assert_non_null(strstr(err.msg, "127.0.0.1:9"));
    assert_int_equal(ss_store_requests(s), 3); /* first try and two retries */
    ss_store_free(s);
}

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static long http(const char *method, const char *url, const char *header, const char *body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
    long status = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_presign(void **state)
{
    ss_store *s = *state;
    ss_sigv4_header inm = {"if-none-match", "*"};
    char *put = NULL, *get = NULL, *list = NULL, *other = NULL;
    ss_err err = {{0}};

    assert_int_equal(ss_store_presign(s, SS_PRESIGN_PUT, "pre/obj", NULL, &inm, 1, 300, &put, &err),
                     SS_OK);
    /* A client that drops the signed if-none-match header is refused. */
    assert_int_equal(http("PUT", put, NULL, "body"), 403);
    assert_int_equal(http("PUT", put, "If-None-Match: *", "body"), 200);
    assert_int_equal(http("PUT", put, "If-None-Match: *", "again"), 412);
    expect_content(s, "pre/obj", "body");

    /* The URL is for one key only. */
    other = strdup(put);
    char *at = strstr(other, "pre/obj");
    memcpy(at, "pre/oth", 7);
    assert_int_equal(http("PUT", other, "If-None-Match: *", "body"), 403);

    assert_int_equal(ss_store_presign(s, SS_PRESIGN_GET, "pre/obj", NULL, NULL, 0, 300, &get, &err),
                     SS_OK);
    assert_int_equal(http("GET", get, NULL, NULL), 200);
    assert_int_equal(
        ss_store_presign(s, SS_PRESIGN_LIST, "pre/", "pre/a", NULL, 0, 300, &list, &err), SS_OK);
    assert_int_equal(http("GET", list, NULL, NULL), 200);
    free(get);
    assert_int_equal(
        ss_store_presign(s, SS_PRESIGN_GET, "pre/obj", NULL, NULL, 0, 604801, &get, &err),
        SS_ERR_INVALID);
    assert_null(get);
    free(put);
    free(list);
    free(other);
}

static void test_file_cannot_presign(void **state)
{
    char *url = NULL;
    ss_err err = {{0}};
    assert_int_equal(ss_store_presign(*state, SS_PRESIGN_GET, "x", NULL, NULL, 0, 60, &url, &err),
                     SS_ERR_INVALID);
    assert_null(url);
}

static void test_bad_urls(void **state)
{
    static const char *const bad[] = {"nothing", "ftp://x/y", "file://relative/path", "s3://ab/x"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ss_store *s = NULL;
        ss_err err = {{0}};
        assert_int_equal(ss_store_open(bad[i], NULL, &s, &err), SS_ERR_INVALID);
        assert_null(s);
        assert_true(err.msg[0] != '\0');
    }
}

#define CONFORMANCE                                                                                \
    cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_create_only_conflict),                 \
        cmocka_unit_test(test_ranges), cmocka_unit_test(test_missing),                             \
        cmocka_unit_test(test_head_delete), cmocka_unit_test(test_odd_keys),                       \
        cmocka_unit_test(test_list_many), cmocka_unit_test(test_parallel_get),                     \
        cmocka_unit_test(test_file_and_stream)

int main(void)
{
    const struct CMUnitTest file_tests[] = {CONFORMANCE, cmocka_unit_test(test_file_cannot_presign),
                                            cmocka_unit_test(test_bad_urls)};
    const struct CMUnitTest s3_tests[] = {CONFORMANCE, cmocka_unit_test(test_wrong_secret),
                                          cmocka_unit_test(test_unreachable),
                                          cmocka_unit_test(test_presign)};
    unsigned char rnd[6];
    char tag[13];
    char dir[] = "/tmp/ss-store-XXXXXX";
    const char *bucket = getenv("S3SYNC_TEST_BUCKET");
    int failed;

    if (sodium_init() < 0) return 1;
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(tag, sizeof tag, rnd, sizeof rnd);
    if (!mkdtemp(dir)) return 1;
    snprintf(file_root, sizeof file_root, "file://%s/store", dir);
    failed = cmocka_run_group_tests_name("s3store/file", file_tests, setup_file, teardown);
    if (!bucket || !getenv("AWS_ENDPOINT_URL")) {
        fprintf(stderr, "s3 backend: skipped (no RGW: run through ci/test.sh)\n");
        return failed;
    }
    snprintf(s3_url, sizeof s3_url, "s3://%s/conformance-%s", bucket, tag);
    failed |= cmocka_run_group_tests_name("s3store/s3", s3_tests, setup_s3, teardown);
    return failed;
}
