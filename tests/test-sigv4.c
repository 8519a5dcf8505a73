/*
 * test-sigv4: proves s3store/sigv4.c against every vector of the AWS SigV4
 * test suite (both signing modes, every stage: canonical request, string to
 * sign, signature), S3's own presign example, and the S3 rules around them
 * (encoding, expiry range, session tokens, what the signer refuses).
 *
 * The suite is vendored in tests/vectors/sigv4 (SS_SIGV4_SUITE_DIR);
 * argv[1] or $SS_SIGV4_SUITE point elsewhere. Without it the test fails:
 * a signer checked against no vectors is not checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "sigv4.h"

#ifndef SS_SIGV4_SUITE_DIR
#define SS_SIGV4_SUITE_DIR ""
#endif

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_HEADERS 16

static const char *suite_dir;

typedef struct vector {
    const char *name;
    const char *differs; /* why this S3 signer must not reproduce it, or NULL */
} vector;

#define NORMALISED                                                                                 \
    "normalisation rewrites the path; S3 signs the path as sent, as its -unnormalized twin does"

/* Every directory under v4/; test_table_complete fails when the suite gains one. */
static const vector vectors[] = {
    {"get-header-key-duplicate", NULL},
    {"get-header-value-multiline", NULL},
    {"get-header-value-order", NULL},
    {"get-header-value-trim", NULL},
    {"get-relative-normalized", NORMALISED},
    {"get-relative-relative-normalized", NORMALISED},
    {"get-relative-relative-unnormalized", NULL},
    {"get-relative-unnormalized", NULL},
    {"get-slash-dot-slash-normalized", NORMALISED},
    {"get-slash-dot-slash-unnormalized", NULL},
    {"get-slash-normalized", NORMALISED},
    {"get-slash-pointless-dot-normalized", NORMALISED},
    {"get-slash-pointless-dot-unnormalized", NULL},
    {"get-slash-unnormalized", NULL},
    {"get-slashes-normalized", NORMALISED},
    {"get-slashes-unnormalized", NULL},
    {"get-space-normalized", NULL}, /* normalising "/example space/" changes nothing */
    {"get-space-unnormalized", NULL},
    {"get-unreserved", NULL},
    {"get-utf8", NULL},
    {"get-vanilla", NULL},
    {"get-vanilla-empty-query-key", NULL},
    {"get-vanilla-query", NULL},
    {"get-vanilla-query-order-encoded", NULL},
    {"get-vanilla-query-order-key-case", NULL},
    {"get-vanilla-query-unreserved", NULL},
    {"get-vanilla-utf8-query", NULL},
    {"get-vanilla-with-session-token", NULL},
    {"post-header-key-case", NULL},
    {"post-header-key-sort", NULL},
    {"post-header-value-case", NULL},
    {"post-sts-header-after", NULL},
    {"post-sts-header-before", NULL},
    {"post-vanilla", NULL},
    {"post-vanilla-empty-query-value", NULL},
    {"post-vanilla-query", NULL},
    {"post-x-www-form-urlencoded", NULL},
    {"post-x-www-form-urlencoded-parameters", NULL},
};
#define N_VECTORS (sizeof vectors / sizeof *vectors)

/* One vector, loaded: request.txt parsed in place, context.json kept for its strings. */
typedef struct vcase {
    const vector *v;
    char *request; /* request.txt; the fields below point into it */
    json_t *ctx;
    const char *method, *host, *query, *body;
    char *path; /* encoded once, as an S3 caller passes it */
    ss_sigv4_header headers[MAX_HEADERS + 1];
    size_t n_headers;
    ss_sigv4_creds creds;
    time_t now;
    int sign_body, normalize;
    unsigned expires;
    char payload_hash[65];
    ss_sigv4_parts hp, qp;
} vcase;

static char *vpath(char *buf, size_t size, const char *vname, const char *file)
{
    int n = snprintf(buf, size, "%s/%s/%s", suite_dir, vname, file);
    assert_true(n > 0 && (size_t)n < size);
    return buf;
}

static char *slurp(const char *vname, const char *file)
{
    char path[4096];
    FILE *f = fopen(vpath(path, sizeof path, vname, file), "rb");
    char *buf = NULL;
    long len;

    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Expected outputs: the file's text without its trailing newline, if any. */
static char *expected(const char *vname, const char *file)
{
    char *s = slurp(vname, file);
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[n - 1] = '\0';
    return s;
}

static time_t parse_timestamp(const char *ts)
{
    struct tm tm = {0};
    assert_int_equal(sscanf(ts, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                     6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static void load_context(vcase *c)
{
    char path[4096];
    json_error_t jerr;
    const char *token = NULL, *ts = NULL;
    int omit_token = 0, expires = 0;

    c->ctx = json_load_file(vpath(path, sizeof path, c->v->name, "context.json"), 0, &jerr);
    if (!c->ctx) fail_msg("%s: %s", path, jerr.text);
    if (json_unpack_ex(c->ctx, &jerr, 0, "{s:{s:s, s:s, s?s}, s:s, s:s, s:s, s:b, s:b, s:i, s?b}",
                       "credentials", "access_key_id", &c->creds.access_key, "secret_access_key",
                       &c->creds.secret_key, "token", &token, "region", &c->creds.region, "service",
                       &c->creds.service, "timestamp", &ts, "sign_body", &c->sign_body, "normalize",
                       &c->normalize, "expiration_in_seconds", &expires, "omit_session_token",
                       &omit_token))
        fail_msg("%s: %s", path, jerr.text);
    /* omit_session_token: the token is added after signing (post-sts-header-after), not signed */
    c->creds.session_token = omit_token ? NULL : token;
    c->now = parse_timestamp(ts);
    assert_true(expires > 0);
    c->expires = (unsigned)expires;
}

static char *request_line(vcase *c, char *p)
{
    char *nl = strchr(p, '\n'), *sp1, *sp2, *q;

    assert_non_null(nl);
    *nl = '\0';
    /* Split at the first and last space: "GET /example space/ HTTP/1.1" has one inside. */
    sp1 = strchr(p, ' ');
    sp2 = strrchr(p, ' ');
    assert_true(sp1 && sp2 > sp1);
    *sp1 = *sp2 = '\0';
    c->method = p;
    q = strchr(sp1 + 1, '?');
    if (q) *q = '\0';
    c->query = q ? q + 1 : NULL;
    /* The vectors hold raw paths (a space, UTF-8); an S3 caller passes them encoded once. */
    c->path = ss_sigv4_uri_encode(sp1 + 1, 1);
    assert_non_null(c->path);
    return nl + 1;
}

/*
 * Header lines until a blank line. A line starting with whitespace continues
 * the previous value; the fold is left in so the signer's unfolding is tested.
 */
static char *header_lines(vcase *c, char *p)
{
    while (*p && *p != '\n') {
        char *end = strchr(p, '\n'), *next, *colon;
        while (end && (end[1] == ' ' || end[1] == '\t'))
            end = strchr(end + 1, '\n');
        next = end ? end + 1 : p + strlen(p);
        if (end) *end = '\0';
        colon = strchr(p, ':');
        assert_non_null(colon);
        *colon = '\0';
        if (strcasecmp(p, "host") == 0) {
            c->host = colon + 1;
        } else {
            assert_true(c->n_headers < MAX_HEADERS);
            c->headers[c->n_headers++] = (ss_sigv4_header){p, colon + 1};
        }
        p = next;
    }
    return *p == '\n' ? p + 1 : p;
}

static int setup_vector(void **state)
{
    vcase *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->v = *state;
    *state = c;
    load_context(c);
    c->request = slurp(c->v->name, "request.txt");
    c->body = header_lines(c, request_line(c, c->request));
    assert_non_null(c->host);
    /* The canonical requests show sha256(body) with sign_body, the empty-body hash otherwise. */
    if (c->sign_body)
        ss_sigv4_sha256_hex(c->body, strlen(c->body), c->payload_hash);
    else
        ss_sigv4_sha256_hex("", 0, c->payload_hash);
    return 0;
}

static int teardown_vector(void **state)
{
    vcase *c = *state;
    ss_sigv4_parts_clear(&c->hp);
    ss_sigv4_parts_clear(&c->qp);
    json_decref(c->ctx);
    free(c->path);
    free(c->request);
    free(c);
    return 0;
}

static ss_sigv4_req vcase_req(const vcase *c, size_t n_headers)
{
    return (ss_sigv4_req){
        .method = c->method,
        .host = c->host,
        .path = c->path,
        .query = c->query,
        .headers = c->headers,
        .n_headers = n_headers,
        .payload_hash = c->payload_hash,
        .now = c->now,
    };
}

static void sign_both(vcase *c)
{
    ss_err err = {{0}};
    size_t n = c->n_headers;

    /* aws-c-auth signs x-amz-content-sha256 with sign_body; our S3 caller passes it. */
    if (c->sign_body) c->headers[n++] = (ss_sigv4_header){"X-Amz-Content-Sha256", c->payload_hash};
    ss_sigv4_req req = vcase_req(c, n);
    if (ss_sigv4_sign(&c->creds, &req, &c->hp, &err) != SS_OK) fail_msg("sign: %s", err.msg);
    req = vcase_req(c, c->n_headers);
    if (ss_sigv4_presign(&c->creds, &req, c->expires, &c->qp, &err) != SS_OK)
        fail_msg("presign: %s", err.msg);
}

static void assert_file(const char *vname, const char *file, const char *actual)
{
    char *want = expected(vname, file);
    if (strcmp(want, actual) != 0) {
        print_error("%s/%s differs\n--- expected\n%s\n--- actual\n%s\n", vname, file, want, actual);
        free(want);
        fail();
    }
    free(want);
}

/* The Authorization line of header-signed-request.txt, which is what goes on the wire. */
static void assert_authorization(const vcase *c)
{
    char *signed_req = slurp(c->v->name, "header-signed-request.txt");
    char *line = strstr(signed_req, "\nAuthorization:");
    assert_non_null(line);
    line += strlen("\nAuthorization:");
    line[strcspn(line, "\n")] = '\0';
    assert_string_equal(c->hp.authorization, line);
    free(signed_req);
}

/* parts.query is the canonical query (third line of the canonical request) plus the signature. */
static void assert_presigned_query(const vcase *c)
{
    static const char sig_key[] = "&X-Amz-Signature=";
    char *want = expected(c->v->name, "query-canonical-request.txt");
    char *sig = expected(c->v->name, "query-signature.txt");
    char *line = strchr(strchr(want, '\n') + 1, '\n') + 1;
    size_t n = strcspn(line, "\n");

    assert_true(strncmp(c->qp.query, line, n) == 0);
    assert_true(strncmp(c->qp.query + n, sig_key, strlen(sig_key)) == 0);
    assert_string_equal(c->qp.query + n + strlen(sig_key), sig);
    free(want);
    free(sig);
}

static void test_vector(void **state)
{
    vcase *c = *state;
    const char *name = c->v->name;

    sign_both(c);
    if (c->v->differs) {
        /* Still prove the reason: ours differs from this vector and equals the twin's. */
        char twin[128];
        size_t stem = strlen(name) - strlen("-normalized");
        assert_true(c->normalize);
        assert_int_equal(strcmp(name + stem, "-normalized"), 0);
        snprintf(twin, sizeof twin, "%.*s-unnormalized", (int)stem, name);
        char *want = expected(name, "header-canonical-request.txt");
        assert_string_not_equal(c->hp.canonical_request, want);
        free(want);
        assert_file(twin, "header-canonical-request.txt", c->hp.canonical_request);
        assert_file(twin, "query-canonical-request.txt", c->qp.canonical_request);
        assert_file(twin, "header-signature.txt", c->hp.signature);
        assert_file(twin, "query-signature.txt", c->qp.signature);
        print_message("    %s: skipped, %s\n", name, c->v->differs);
        skip();
    }
    assert_file(name, "header-canonical-request.txt", c->hp.canonical_request);
    assert_file(name, "header-string-to-sign.txt", c->hp.string_to_sign);
    assert_file(name, "header-signature.txt", c->hp.signature);
    assert_authorization(c);
    assert_file(name, "query-canonical-request.txt", c->qp.canonical_request);
    assert_file(name, "query-string-to-sign.txt", c->qp.string_to_sign);
    assert_file(name, "query-signature.txt", c->qp.signature);
    assert_presigned_query(c);
}

static void test_table_complete(void **state)
{
    DIR *d = opendir(suite_dir);
    struct dirent *e;
    size_t n = 0;

    (void)state;
    assert_non_null(d);
    while ((e = readdir(d))) {
        char path[4096];
        struct stat st;
        size_t i = 0;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", suite_dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        while (i < N_VECTORS && strcmp(vectors[i].name, e->d_name) != 0)
            i++;
        if (i == N_VECTORS) fail_msg("vector %s is not in the table", e->d_name);
        n++;
    }
    closedir(d);
    assert_int_equal(n, N_VECTORS);
    assert_int_equal(N_VECTORS, 38);
}

/* ---- S3 specifics ---- */

static const ss_sigv4_creds s3_creds = {
    .access_key = "AKIAIOSFODNN7EXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "s3",
};

static time_t t_20130524(void)
{
    struct tm tm = {.tm_year = 113, .tm_mon = 4, .tm_mday = 24};
    return timegm(&tm);
}

static ss_sigv4_req s3_req(void)
{
    return (ss_sigv4_req){
        .method = "GET",
        .host = "examplebucket.s3.amazonaws.com",
        .path = "/test.txt",
        .payload_hash = SS_SIGV4_UNSIGNED,
        .now = t_20130524(),
    };
}

/* s3-presign-example.md: S3's documented presigned GET. */
static void test_s3_presign_example(void **state)
{
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;
    ss_err err = {{0}};

    (void)state;
    assert_int_equal(ss_sigv4_presign(&s3_creds, &req, 86400, &p, &err), SS_OK);
    assert_string_equal(p.amz_date, "20130524T000000Z");
    assert_string_equal(p.canonical_request,
                        "GET\n/test.txt\n"
                        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%"
                        "2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                        "X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
                        "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
    assert_string_equal(p.signature,
                        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    assert_string_equal(p.query,
                        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%"
                        "2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                        "X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    assert_null(p.authorization);
    ss_sigv4_parts_clear(&p);
}

/*
 * S3's documented header-signed GET (Signature V4 docs, "Example: GET
 * Object"): the S3 caller passes x-amz-content-sha256 among the headers.
 */
static void test_s3_get_example(void **state)
{
    const ss_sigv4_header h[] = {{"Range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY_SHA256}};
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;

    (void)state;
    req.headers = h;
    req.n_headers = 2;
    req.payload_hash = EMPTY_SHA256;
    assert_int_equal(ss_sigv4_sign(&s3_creds, &req, &p, NULL), SS_OK);
    assert_string_equal(p.canonical_request,
                        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                        "x-amz-content-sha256:" EMPTY_SHA256 "\nx-amz-date:20130524T000000Z\n\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
    assert_string_equal(
        p.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
        "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_null(p.query);
    ss_sigv4_parts_clear(&p);
}

/* How lockd presigns a create-only PUT: if-none-match becomes a signed header. */
static void test_presign_extra_header(void **state)
{
    const ss_sigv4_header h[] = {{"If-None-Match", "*"}};
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;

    (void)state;
    req.method = "PUT";
    req.headers = h;
    req.n_headers = 1;
    assert_int_equal(ss_sigv4_presign(&s3_creds, &req, 600, &p, NULL), SS_OK);
    assert_non_null(strstr(p.query, "&X-Amz-SignedHeaders=host%3Bif-none-match&"));
    assert_non_null(strstr(p.canonical_request,
                           "\nhost:examplebucket.s3.amazonaws.com\nif-none-match:*\n\n"
                           "host;if-none-match\nUNSIGNED-PAYLOAD"));
    ss_sigv4_parts_clear(&p);
}

static void test_uri_encode(void **state)
{
    static const struct {
        const char *in;
        int keep_slash;
        const char *out;
    } cases[] = {
        {"", 0, ""},
        {"a b", 0, "a%20b"},
        {"+", 0, "%2B"},
        {"=", 0, "%3D"},
        {"~", 0, "~"},
        {"%", 0, "%25"},
        {"%20", 1, "%2520"},       /* encoded once: the input is never decoded */
        {"\xc3\xa9", 0, "%C3%A9"}, /* é */
        {"/a/b/", 1, "/a/b/"},
        {"/a/b/", 0, "%2Fa%2Fb%2F"},
        {"dir/a b+c=d.txt", 1, "dir/a%20b%2Bc%3Dd.txt"},
        {"-_.~AZaz09", 0, "-_.~AZaz09"},
        {"*'()!?&#:@,;$\x7f", 0, "%2A%27%28%29%21%3F%26%23%3A%40%2C%3B%24%7F"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = ss_sigv4_uri_encode(cases[i].in, cases[i].keep_slash);
        assert_non_null(out);
        assert_string_equal(out, cases[i].out);
        free(out);
    }
    assert_null(ss_sigv4_uri_encode(NULL, 0));
}

static void test_sha256_hex(void **state)
{
    char hex[65];
    (void)state;
    ss_sigv4_sha256_hex(NULL, 0, hex);
    assert_string_equal(hex, EMPTY_SHA256);
    ss_sigv4_sha256_hex("Param1=value1", 13, hex);
    assert_string_equal(hex, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

static int parts_empty(const ss_sigv4_parts *p)
{
    return !p->canonical_request && !p->string_to_sign && !p->authorization && !p->query &&
           !p->signature[0] && !p->amz_date[0];
}

static void test_expires_range(void **state)
{
    static const unsigned bad[] = {0, SS_SIGV4_MAX_EXPIRES + 1, 0xffffffffu};
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;
    ss_err err;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&p, 0xa5, sizeof p); /* cleared on entry even on failure */
        err.msg[0] = '\0';
        assert_int_equal(ss_sigv4_presign(&s3_creds, &req, bad[i], &p, &err), SS_ERR_INVALID);
        assert_true(parts_empty(&p));
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(ss_sigv4_presign(&s3_creds, &req, 1, &p, NULL), SS_OK);
    assert_non_null(strstr(p.query, "&X-Amz-Expires=1&"));
    ss_sigv4_parts_clear(&p);
    assert_int_equal(ss_sigv4_presign(&s3_creds, &req, SS_SIGV4_MAX_EXPIRES, &p, NULL), SS_OK);
    assert_non_null(strstr(p.query, "&X-Amz-Expires=604800&"));
    ss_sigv4_parts_clear(&p);
}

static void test_session_token(void **state)
{
    ss_sigv4_creds creds = s3_creds;
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;

    (void)state;
    creds.session_token = NULL;
    assert_int_equal(ss_sigv4_sign(&creds, &req, &p, NULL), SS_OK);
    assert_null(strstr(p.canonical_request, "x-amz-security-token"));
    assert_non_null(strstr(p.authorization, ", SignedHeaders=host;x-amz-date, "));
    assert_null(p.query);
    ss_sigv4_parts_clear(&p);
    assert_int_equal(ss_sigv4_presign(&creds, &req, 60, &p, NULL), SS_OK);
    assert_null(strstr(p.query, "Security-Token"));
    ss_sigv4_parts_clear(&p);

    creds.session_token = "tok/en+=";
    assert_int_equal(ss_sigv4_sign(&creds, &req, &p, NULL), SS_OK);
    assert_non_null(strstr(p.canonical_request, "\nx-amz-security-token:tok/en+=\n\n"));
    assert_non_null(
        strstr(p.authorization, ", SignedHeaders=host;x-amz-date;x-amz-security-token, "));
    ss_sigv4_parts_clear(&p);
    assert_int_equal(ss_sigv4_presign(&creds, &req, 60, &p, NULL), SS_OK);
    assert_non_null(strstr(p.query, "&X-Amz-Security-Token=tok%2Fen%2B%3D&X-Amz-SignedHeaders="));
    ss_sigv4_parts_clear(&p);
}

/* The query line of a header-signed canonical request for `query`. */
static char *canonical_query_of(const char *query)
{
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;
    ss_err err;
    char *line, *out;

    req.query = query;
    if (ss_sigv4_sign(&s3_creds, &req, &p, &err) != SS_OK) fail_msg("%s", err.msg);
    line = strchr(strchr(p.canonical_request, '\n') + 1, '\n') + 1;
    out = strndup(line, strcspn(line, "\n"));
    ss_sigv4_parts_clear(&p);
    assert_non_null(out);
    return out;
}

static void test_query_canonical(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"list-type=2&prefix=log%2F&start-after=", "list-type=2&prefix=log%2F&start-after="},
        {"uploads", "uploads="},
        {"b=2&a=&c&a=1", "a=&a=1&b=2&c="},
        {"k=b&k=a", "k=a&k=b"},
        {"%7e=x&%7E=y&~=z", "~=x&~=y&~=z"},
        {"a=b+c%20d", "a=b%2Bc%20d"}, /* '+' is a plus, never a space */
        {"a=1&&b=2&", "a=1&b=2"},
        {"x=%C3%A9&y=\xc3\xa9", "x=%C3%A9&y=%C3%A9"},
        {"a=%00", "a=%00"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = canonical_query_of(cases[i].in);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

static void expect_invalid_sign(const ss_sigv4_creds *creds, const ss_sigv4_req *req)
{
    ss_sigv4_parts p;
    ss_err err = {{0}};
    memset(&p, 0x5a, sizeof p);
    assert_int_equal(ss_sigv4_sign(creds, req, &p, &err), SS_ERR_INVALID);
    assert_true(parts_empty(&p));
    assert_true(err.msg[0] != '\0');
}

static void test_rejects(void **state)
{
    ss_sigv4_header h[1];
    ss_sigv4_creds creds = s3_creds;
    ss_sigv4_req req = s3_req();
    ss_sigv4_parts p;

    (void)state;
    expect_invalid_sign(NULL, &req);
    expect_invalid_sign(&creds, NULL);
    creds.secret_key = "";
    expect_invalid_sign(&creds, &req);
    creds = s3_creds;
    req.path = "test.txt";
    expect_invalid_sign(&creds, &req);
    req = s3_req();
    req.query = "a=%zz";
    expect_invalid_sign(&creds, &req);
    req.query = "a=%4";
    expect_invalid_sign(&creds, &req);
    req = s3_req();
    req.headers = h;
    req.n_headers = 1;
    static const char *const bad_names[] = {"Host",     "X-Amz-Date", "x-amz-security-token",
                                            "bad name", "",           "colon:"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        h[0] = (ss_sigv4_header){bad_names[i], "v"};
        expect_invalid_sign(&creds, &req);
    }
    h[0] = (ss_sigv4_header){"x-ok", NULL};
    expect_invalid_sign(&creds, &req);
    req = s3_req();
    assert_int_equal(ss_sigv4_sign(&creds, &req, NULL, NULL), SS_ERR_INVALID);
    req.query = "X-Amz-Signature=abc";
    memset(&p, 0, sizeof p);
    assert_int_equal(ss_sigv4_presign(&creds, &req, 60, &p, NULL), SS_ERR_INVALID);
    assert_true(parts_empty(&p));
}

int main(int argc, char **argv)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_table_complete),  cmocka_unit_test(test_s3_presign_example),
        cmocka_unit_test(test_s3_get_example),  cmocka_unit_test(test_presign_extra_header),
        cmocka_unit_test(test_uri_encode),      cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_expires_range),   cmocka_unit_test(test_session_token),
        cmocka_unit_test(test_query_canonical), cmocka_unit_test(test_rejects),
    };
    struct CMUnitTest tests[sizeof fixed / sizeof *fixed + N_VECTORS];
    struct stat st;
    size_t n = 0;

    if (sodium_init() < 0) return 1;
    suite_dir = argc > 1 ? argv[1] : getenv("SS_SIGV4_SUITE");
    if (!suite_dir || !*suite_dir) suite_dir = SS_SIGV4_SUITE_DIR;
    if (!*suite_dir || stat(suite_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "test-sigv4: no SigV4 test suite at '%s'\n", suite_dir);
        return 1;
    }
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < N_VECTORS; i++) {
        tests[n++] = (struct CMUnitTest){
            .name = vectors[i].name,
            .test_func = test_vector,
            .setup_func = setup_vector,
            .teardown_func = teardown_vector,
            .initial_state = (void *)&vectors[i],
        };
    }
    return _cmocka_run_group_tests("sigv4", tests, n, NULL, NULL);
}
