/*
 * fuzz-s3xml: libFuzzer target for the XML an S3 store answers with: a
 * ListObjectsV2 page (s3_list_page, which the s3 and lockd backends share)
 * and an error body (describe_http_error), both in s3store/s3_http.c.
 *
 * describe_http_error is static, so this file includes the source whole
 * (the target is built from it and the rest of s3store/, not from
 * ss_store): a change of either function's signature breaks this build,
 * on purpose. Byte 0 picks the parser (bit 0) and its setting; the rest is
 * the body:
 *   0 list   prefix "" or "p/" (bit 1); the callback stops after 1..7 keys
 *            (bits 2-4; 0: never). Every key handed out must be a string
 *            under the prefix, the result SS_OK or SS_ERR_STORE.
 *   1 error  status 403/404/412/500 (bits 1-2), 1 or 2 attempts (bit 3),
 *            cut at its cap or not (bit 4); the message must stay a
 *            NUL-terminated string.
 * Seeds: corpus-s3xml/.
 */
#include "../../s3store/s3_http.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    unsigned n, stop_after;
} seen;

static int on_key(void *ctx, const char *key, const ss_store_stat *st)
{
    seen *s = ctx;
    if (strlen(st->etag) >= sizeof st->etag) abort();
    (void)strlen(key); /* ASan: a string, readable to its NUL */
    return s->stop_after && ++s->n >= s->stop_after;
}

static void list_page(uint8_t mode, const uint8_t *d, size_t n)
{
    const char *prefix = mode & 2 ? "p/" : "";
    ss_buf pg = {0};
    seen s = {0, (unsigned)(mode >> 2 & 7)};
    s3_page page = {0};
    ss_err err = {{0}};
    if (ss_buf_append(&pg, d, n)) abort();
    ss_rc rc = s3_list_page(&pg, prefix, prefix, on_key, &s, &page, &err);
    if (rc != SS_OK && rc != SS_ERR_STORE && rc != SS_ERR_NOMEM) abort();
    if (page.stopped && !s.stop_after) abort();
    if (s.stop_after && s.n > s.stop_after) abort(); /* called again after it asked to stop */
    if (page.last_key) (void)strlen(page.last_key);
    free(page.next_token);
    free(page.last_key);
    ss_buf_free(&pg);
}

static void error_body(uint8_t mode, const uint8_t *d, size_t n)
{
    static const long status[4] = {403, 404, 412, 500};
    s3_req r = {.op = "GET", .key = "log/00000000000000000001"};
    r.status = status[mode >> 1 & 3];
    r.attempts = 1 + (mode >> 3 & 1);
    r.errbody_cut = mode >> 4 & 1; /* the body went on past SS_CAP_ERROR_BODY */
    r.errbody_len = n < SS_CAP_ERROR_BODY ? n : SS_CAP_ERROR_BODY;
    if (!(r.errbody = malloc(r.errbody_len + 1))) abort();
    memcpy(r.errbody, d, r.errbody_len);
    describe_http_error(&r, SS_ERR_STORE);
    if (!memchr(r.err.msg, '\0', sizeof r.err.msg)) abort();
    free(r.errbody);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1)
        error_body(data[0], data + 1, size - 1);
    else
        list_page(data[0], data + 1, size - 1);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    xmlInitParser();
    return 0;
}
