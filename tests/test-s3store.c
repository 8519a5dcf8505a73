/*
 * test-s3store: the store conformance suite. The same tests run against the
 * file backend (always) and the s3 backend on the RGW that ci/test.sh
 * started (when AWS_ENDPOINT_URL and S3SYNC_TEST_BUCKET are set). Each run
 * works under a fresh random prefix, so runs never see each other.
 * Batch deletes: 1016 keys in 2 DeleteObjects and a DELETE on s3 (a key XML
 * cannot carry goes alone), key by key on file; on s3 also through
 * faultproxy rewriting the answer (a key left out, a key failed, no
 * DeleteResult at all), each refused naming the key.
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

#include "faultproxy.h"
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

/* --- batch deletes ----------------------------------------------------------- */

static int count_key(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key;
    (void)st;
    (*(size_t *)ctx)++;
    return 0;
}

static size_t count_under(ss_store *s, const char *prefix)
{
    size_t n = 0;
    ss_err err = {{0}};
    if (ss_store_list(s, prefix, NULL, count_key, &n, &err)) fail_msg("list: %s", err.msg);
    return n;
}

static int is_s3(const ss_store *s)
{
    return !strncmp(ss_store_url(s), "s3://", 5);
}

/*
 * 1013 keys, one that XML must escape, one it cannot carry at all (a
 * control character: deleted alone) and one that is not there: all go, in
 * 2 DeleteObjects and 1 DELETE on s3, key by key elsewhere.
 */
static void test_delete_batch(void **state)
{
    ss_store *s = *state;
    enum { N = 1013, ALL = N + 3 };
    static char keys[N][32];
    const char *v[ALL];
    ss_xfer *x = NULL;
    ss_err err = {{0}};
    uint64_t before;
    assert_int_equal(ss_xfer_new(s, &x, &err), SS_OK);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "bd/%05d", i);
        v[i] = keys[i];
        assert_int_equal(ss_xfer_put(x, keys[i], "x", 1, 0, NULL, NULL), SS_OK);
    }
    if (ss_xfer_wait(x, &err)) fail_msg("%s", err.msg);
    ss_xfer_free(x);
    v[N] = "bd/amp&lt<gt>]]>'\"";
    v[N + 1] = "bdc/control\x01char"; /* apart: an S3 listing cannot carry it either */
    v[N + 2] = "bd/never-there";
    put_ok(s, v[N], "x");
    put_ok(s, v[N + 1], "x");
    assert_int_equal(count_under(s, "bd/"), N + 1);
    before = ss_store_counts(s)->by_class[SS_REQ_DELETE];
    if (ss_store_delete_batch(s, v, ALL, &err)) fail_msg("delete batch: %s", err.msg);
    assert_int_equal(count_under(s, "bd/"), 0);
    assert_int_equal(ss_store_head(s, v[N + 1], &(ss_store_stat){0}, &err), SS_ERR_NOT_FOUND);
    assert_int_equal(ss_store_counts(s)->by_class[SS_REQ_DELETE] - before, is_s3(s) ? 3 : ALL);
    assert_int_equal(ss_store_delete_batch_max(s), is_s3(s) ? SS_DELETE_BATCH_MAX : 1);
    assert_int_equal(ss_store_delete_batch(s, v, 0, &err), SS_OK);
}

/* --- S3-only: a store whose answer to a batch delete lies ------------------- */

/* body as a NUL-terminated copy, to search. */
static char *cstr(const char *body, size_t len)
{
    char *c = malloc(len + 1);
    assert_non_null(c);
    memcpy(c, body, len);
    c[len] = '\0';
    return c;
}

/* The answer without its first <Deleted> element: a key the store says nothing of. */
static char *drop_deleted(void *ctx, const char *body, size_t len, size_t *ret_len)
{
    char *c = cstr(body, len), *a = strstr(c, "<Deleted>"), *b = a ? strstr(a, "</Deleted>") : NULL;
    (void)ctx;
    if (!b) return c[0] = '\0', *ret_len = 0, c;
    b += strlen("</Deleted>");
    memmove(a, b, strlen(b) + 1);
    *ret_len = strlen(c);
    return c;
}

/* The first <Deleted> key reported as an <Error> AccessDenied. */
static char *deleted_to_error(void *ctx, const char *body, size_t len, size_t *ret_len)
{
    char *c = cstr(body, len), *out = NULL;
    char *a = strstr(c, "<Deleted>"), *k = a ? strstr(a, "<Key>") : NULL;
    char *ke = k ? strstr(k, "</Key>") : NULL, *b = ke ? strstr(ke, "</Deleted>") : NULL;
    (void)ctx;
    assert_non_null(b);
    *a = '\0';
    if (asprintf(&out,
                 "%s<Error>%.*s<Code>AccessDenied</Code><Message>injected by the "
                 "test</Message></Error>%s",
                 c, (int)(ke + 6 - k), k, b + strlen("</Deleted>")) < 0)
        fail();
    free(c);
    *ret_len = strlen(out);
    return out;
}

/* Something else than a DeleteResult, with a 200. */
static char *not_a_result(void *ctx, const char *body, size_t len, size_t *ret_len)
{
    (void)ctx;
    (void)body;
    (void)len;
    *ret_len = strlen("<Error><Code>Nope</Code></Error>");
    return strdup("<Error><Code>Nope</Code></Error>");
}

static void test_delete_batch_lies(void **state)
{
    static const struct {
        char *(*rewrite)(void *, const char *, size_t, size_t *);
        ss_rc rc;
        const char *says;
    } lies[] = {
        {drop_deleted, SS_ERR_STORE, "says nothing of it"},
        {deleted_to_error, SS_ERR_AUTH, "AccessDenied: injected by the test"},
        {not_a_result, SS_ERR_STORE, "not a DeleteResult but Nope"},
    };
    const char *keys[] = {"bl/a", "bl/b", "bl/c"};
    faultproxy *fp = fp_start(getenv("AWS_ENDPOINT_URL"), 1);
    ss_store_opts o = {.max_retries = 1};
    ss_store *s = NULL;
    (void)state;
    assert_non_null(fp);
    o.endpoint = fp_url(fp);
    s = open_store(s3_url, &o);
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        fp_rates r = {.match = "POST *", .rewrite = lies[i].rewrite};
        ss_err err = {{0}};
        for (size_t k = 0; k < 3; k++)
            put_ok(s, keys[k], "x");
        r.permille[FP_REWRITE] = 1000;
        fp_set(fp, &r, 1);
        assert_int_equal(ss_store_delete_batch(s, keys, 3, &err), lies[i].rc);
        if (!strstr(err.msg, lies[i].says) || (i < 2 && !strstr(err.msg, "bl/")))
            fail_msg("lie %zu: %s", i, err.msg);
        fp_set(fp, NULL, 1);
    }
    ss_store_free(s);
    fp_stop(fp);
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
        cmocka_unit_test(test_file_and_stream), cmocka_unit_test(test_delete_batch)

int main(void)
{
    const struct CMUnitTest file_tests[] = {CONFORMANCE, cmocka_unit_test(test_file_cannot_presign),
                                            cmocka_unit_test(test_bad_urls)};
    const struct CMUnitTest s3_tests[] = {
        CONFORMANCE, cmocka_unit_test(test_wrong_secret), cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_presign), cmocka_unit_test(test_delete_batch_lies)};
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
