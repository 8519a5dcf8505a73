/*
 * s3_http: curl multi engine with retries for the s3 and lockd backends (see
 * s3_http.h).
 *
 * A request moves: start -> active (in the multi) -> finished, or
 * active -> waiting (backoff) -> active on a retryable failure. Error
 * bodies are parsed with libxml2 into "OP KEY: HTTP 403 Code: Message";
 * listing pages into keys (s3_list_page).
 */
#include "s3_http.h"
#include "array.h"
#include "ss_buf.h"
#include "store_impl.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sodium.h>

#define CONNECT_TIMEOUT_MS 10000L
#define STALL_SECONDS 30L /* a transfer moving under 1 byte/s this long is dead */
#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 10000

struct s3_http {
    CURLM *multi;
    s3_req *waiting;  /* backing off until retry_at_ms */
    s3_req *finished; /* done, not yet collected */
    unsigned active;
    unsigned max_retries;
    unsigned timeout_ms;
    char *ca_bundle;
    ss_store_counters *counts;
};

/*
 * CLOCK_BOOTTIME counts the time a laptop spent suspended, which the
 * lifetimes measured with it (leases, presigned URLs, the GET URL cache) go
 * on spending meanwhile; CLOCK_MONOTONIC stands still then.
 */
int64_t s3_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ss_rc s3_http_new(const ss_store_opts *opts, ss_store_counters *counts, s3_http **ret, ss_err *err)
{
    static int curl_ready;
    s3_http *h = NULL;
    const char *ca = opts->ca_bundle;

    *ret = NULL;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT))
            return ss_fail(err, SS_ERR_NOMEM, "libcurl initialisation failed");
        curl_ready = 1;
    }
    if (!ca) ca = getenv("AWS_CA_BUNDLE");
    if (!ca) ca = getenv("CURL_CA_BUNDLE");
    h = calloc(1, sizeof *h);
    if (!h || !(h->multi = curl_multi_init()) || (ca && *ca && !(h->ca_bundle = strdup(ca))))
        goto nomem;
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    /* Keep every connection of a full batch: curl's default cache (4 per handle attached)
     * shrinks when a batch drains, and the next batch would connect again. */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
                      (long)(opts->max_parallel ? opts->max_parallel : 8));
    h->max_retries = opts->max_retries ? opts->max_retries : 6;
    /* AWS convention: AWS_MAX_ATTEMPTS counts the first try too. */
    const char *attempts = getenv("AWS_MAX_ATTEMPTS");
    if (!opts->max_retries && attempts && atoi(attempts) >= 1)
        h->max_retries = (unsigned)atoi(attempts) - 1;
    h->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 300000;
    h->counts = counts;
    *ret = h;
    return SS_OK;
nomem:
    s3_http_free(h);
    return ss_fail(err, SS_ERR_NOMEM, "S3 engine: out of memory");
}

void s3_http_free(s3_http *h)
{
    if (!h) return;
    if (h->multi) curl_multi_cleanup(h->multi);
    free(h->ca_bundle);
    free(h);
}

void s3_req_cleanup(s3_req *r)
{
    if (r->easy) curl_easy_cleanup(r->easy);
    r->easy = NULL;
    /* Header lines may carry a credential (lockd's Bearer token): wiped, not just freed. */
    for (struct curl_slist *l = r->headers; l; l = l->next)
        sodium_memzero(l->data, strlen(l->data));
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    free(r->url);
    r->url = NULL;
    free(r->errbody);
    r->errbody = NULL;
    r->errbody_len = r->errbody_cap = 0;
    r->errbody_cut = 0;
}

ss_rc s3_header_add(struct curl_slist **l, const char *name, const char *value)
{
    char *line = NULL;
    struct curl_slist *n = NULL;
    if (asprintf(&line, "%s: %s", name, value) < 0) return SS_ERR_NOMEM;
    n = curl_slist_append(*l, line);
    sodium_memzero(line, strlen(line));
    free(line);
    if (!n) return SS_ERR_NOMEM;
    *l = n;
    return SS_OK;
}

void s3_req_get_range(s3_req *r, uint64_t off, uint64_t len, ss_store_write_fn write, void *ctx)
{
    r->sink = write;
    r->sink_ctx = ctx;
    r->use_range = off != 0 || len != SS_TO_END;
    r->range_off = off;
    r->range_len = len;
}

void s3_req_put_stat(const s3_req *r, uint64_t len, ss_store_stat *ret_stat)
{
    memset(ret_stat, 0, sizeof *ret_stat);
    ret_stat->size = len;
    memcpy(ret_stat->etag, r->etag, sizeof ret_stat->etag);
}

/* --- curl callbacks ------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    s3_req *r = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        if (r->whole_body && n > r->whole_body - r->delivered) {
            r->over_cap = 1;
            return 0; /* aborts the transfer: the rest is never read */
        }
        if (r->sink && r->sink(r->sink_ctx, data, n)) {
            r->sink_failed = 1;
            return 0; /* aborts the transfer */
        }
        r->delivered += n;
        r->http->counts->bytes_down += n;
        return n;
    }
    size_t keep = n < SS_CAP_ERROR_BODY - r->errbody_len ? n : SS_CAP_ERROR_BODY - r->errbody_len;
    if (SS_ARRAY_GROW(r->errbody, r->errbody_len + keep + 1, r->errbody_cap)) return 0;
    memcpy(r->errbody + r->errbody_len, data, keep);
    r->errbody_len += keep;
    r->errbody[r->errbody_len] = '\0';
    if (keep < n) { /* an error body without end: what it says is in the first 64 KiB */
        r->errbody_cut = 1;
        return 0;
    }
    return n;
}

/* The header line data[0, n)'s value after name (with its colon), spaces and quotes
 * trimmed, into out[cap] cut to fit; 0 if the line is not name's. */
static int header_value(const char *data, size_t n, const char *name, char *out, size_t cap)
{
    size_t skip = strlen(name), len;
    const char *v;
    if (n <= skip || strncasecmp(data, name, skip)) return 0;
    v = data + skip;
    len = n - skip;
    while (len && (*v == ' ' || *v == '"'))
        v++, len--;
    while (len &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == '"' || v[len - 1] == ' '))
        len--;
    if (len >= cap) len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    s3_req *r = ud;
    size_t n = size * nmemb;
    if (header_value(data, n, "ETag:", r->etag, sizeof r->etag) ||
        header_value(data, n, S3_WRITE_ID_HEADER ":", r->write_id, sizeof r->write_id))
        return n;
    if (n > 5 && !strncasecmp(data, "Date:", 5)) {
        /* SigV4 fails past 15 minutes of skew: doctor tells it before a request does. */
        char date[64];
        size_t len = n - 5 < sizeof date - 1 ? n - 5 : sizeof date - 1;
        memcpy(date, data + 5, len);
        date[len] = '\0';
        time_t t = curl_getdate(date, NULL);
        if (t > 0) {
            r->http->counts->date_seen = 1;
            r->http->counts->date_skew = (int64_t)t - (int64_t)time(NULL);
        }
    } else if (n > 15 && !strncasecmp(data, "Content-Length:", 15)) {
        r->content_length = strtoull(data + 15, NULL, 10);
    } else if (n > 14 && !strncasecmp(data, "Content-Range:", 14)) {
        /* "bytes A-B/SIZE"; a range past the end gets an asterisk for A-B */
        const char *slash = memchr(data, '/', n);
        char *end = NULL;
        if (slash && slash[1] >= '0' && slash[1] <= '9') {
            r->range_total = strtoull(slash + 1, &end, 10);
            r->has_range_total = end && (*end == '\r' || *end == '\n');
        }
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    s3_req *r = ud;
    long n = r->body->read(r->body->ctx, buf, size * nmemb);
    if (n < 0) return CURL_READFUNC_ABORT;
    r->http->counts->bytes_up += (uint64_t)n;
    return (size_t)n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    s3_req *r = ud;
    if (offset != 0 || origin != SEEK_SET || !r->body->rewind) return CURL_SEEKFUNC_CANTSEEK;
    return r->body->rewind(r->body->ctx) ? CURL_SEEKFUNC_FAIL : CURL_SEEKFUNC_OK;
}

/* --- one attempt --------------------------------------------------------- */

/*
 * What the bucket bills r as: a LIST is a GET to it, lockd's store HEAD a
 * ranged GET, a DeleteObjects (a POST) a DELETE.
 */
static ss_req_class req_class(const s3_req *r)
{
    if (r->lockd_api) return SS_REQ_LOCKD;
    if (!strcmp(r->op, "LIST")) return SS_REQ_LIST;
    if (!strcmp(r->op, "DELETE-BATCH")) return SS_REQ_DELETE;
    if (!strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) return SS_REQ_PUT;
    if (!strcmp(r->method, "HEAD")) return SS_REQ_HEAD;
    if (!strcmp(r->method, "DELETE")) return SS_REQ_DELETE;
    return SS_REQ_GET;
}

static ss_rc add_range(s3_req *r)
{
    char hdr[96];
    uint64_t off = r->range_off + r->delivered;
    struct curl_slist *l;
    if (!r->use_range && !r->delivered) return SS_OK;
    if (r->use_range && r->range_len != SS_TO_END) {
        uint64_t last = r->range_off + r->range_len - 1;
        if (r->range_len == 0 || off > last) return SS_OK; /* caller handles empty ranges */
        snprintf(hdr, sizeof hdr, "Range: bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)last);
    } else {
        snprintf(hdr, sizeof hdr, "Range: bytes=%llu-", (unsigned long long)off);
    }
    l = curl_slist_append(r->headers, hdr);
    if (!l) return SS_ERR_NOMEM;
    r->headers = l;
    return SS_OK;
}

static ss_rc setup_attempt(s3_http *h, s3_req *r)
{
    r->http = h;
    CURL *e;
    struct curl_slist *l;
    int64_t left = r->deadline_ms - s3_now_ms();
    ss_rc rc;

    s3_req_cleanup(r);
    r->etag[0] = r->write_id[0] = '\0';  /* what an answer's headers tell is its own attempt's */
    if (r->whole_body && r->delivered) { /* a cut listing cannot be resumed with Range */
        ((ss_buf *)r->sink_ctx)->len = 0;
        r->delivered = 0;
    }
    rc = r->sign(r->sign_ctx, r, &r->url, &r->headers);
    if (rc) return rc;
    rc = add_range(r);
    if (rc) return ss_fail(&r->err, rc, "%s %s: out of memory", r->op, r->key);
    l = curl_slist_append(r->headers, "Expect:");
    if (!l) return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: out of memory", r->op, r->key);
    r->headers = l;
    e = curl_easy_init();
    r->easy = e;
    if (!e) return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: out of memory", r->op, r->key);
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    /* Endpoints and lockd's URLs are checked to be http(s) already; curl also refuses any other. */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(left > 1000 ? left : 1000));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (h->ca_bundle) curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle);
    if (r->body) { /* PUT or POST */
        if (r->body->rewind && r->body->rewind(r->body->ctx))
            return ss_fail(&r->err, SS_ERR_IO, "%s %s: cannot rewind the body", r->op, r->key);
        if (!strcmp(r->method, "POST")) {
            curl_easy_setopt(e, CURLOPT_POST, 1L);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        } else {
            curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        }
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
    } else if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET")) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    rc = ss_store_charge(h->counts, req_class(r), r->op, r->key, &r->err);
    if (rc) {
        r->rc = rc;
        return rc;
    }
    r->attempts++;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
        return ss_fail(&r->err, SS_ERR_NOMEM, "%s %s: cannot start transfer", r->op, r->key);
    h->active++;
    return SS_OK;
}

/* --- classification ------------------------------------------------------ */

static char *xml_child_text(xmlNode *parent, const char *name)
{
    for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name))
            return (char *)xmlNodeGetContent(n);
    return NULL;
}

/* One line from an S3 error: "OP KEY: HTTP 403 Code: Message". */
static void describe_http_error(s3_req *r, ss_rc rc)
{
    char *code = NULL, *msg = NULL;
    xmlDoc *doc = NULL;
    if (r->errbody_len)
        doc = xmlReadMemory(r->errbody, (int)r->errbody_len, "error.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc) {
        xmlNode *root = xmlDocGetRootElement(doc);
        code = xml_child_text(root, "Code");
        msg = xml_child_text(root, "Message");
    }
    if (!code && r->status == 404) code = (char *)xmlStrdup((const xmlChar *)"NoSuchKey");
    /* The store's words go into a one-line message: no control characters from it. */
    for (char *p = msg; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    for (char *p = code; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    snprintf(r->code, sizeof r->code, "%s", code ? code : "");
    ss_fail(&r->err, rc, "%s %s: HTTP %ld%s%s%s%s%s%s", r->op, r->key, r->status, code ? " " : "",
            code ? code : "", msg && *msg ? ": " : "", msg ? msg : "",
            r->errbody_cut ? " (error body cut at 64 KiB)" : "",
            r->attempts > 1 ? " (after retries)" : "");
    xmlFree(code);
    xmlFree(msg);
    xmlFreeDoc(doc);
}

ss_rc s3_list_page(const ss_buf *pg, const char *strip, const char *what, ss_store_list_fn fn,
                   void *ctx, s3_page *page, ss_err *err)
{
    xmlDoc *doc = xmlReadMemory((const char *)pg->p, (int)pg->len, "list.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    size_t slen = strlen(strip);
    char *trunc = NULL;
    ss_rc rc = SS_OK;
    if (!root || strcmp((const char *)root->name, "ListBucketResult")) {
        xmlFreeDoc(doc);
        return ss_fail(err, SS_ERR_STORE,
                       "LIST %s: the store answered with something that is not a listing", what);
    }
    for (xmlNode *n = root->children; n && !page->stopped && !rc; n = n->next) {
        if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "Contents")) continue;
        char *key = xml_child_text(n, "Key"), *size = xml_child_text(n, "Size");
        char *etag = xml_child_text(n, "ETag");
        ss_store_stat st = {0};
        if (size) st.size = strtoull(size, NULL, 10);
        if (etag) {
            const char *e = etag + (*etag == '"');
            snprintf(st.etag, sizeof st.etag, "%.*s", (int)strcspn(e, "\""), e);
        }
        if (key && !strncmp(key, strip, slen)) {
            free(page->last_key);
            page->last_key = strdup(key + slen);
            if (!page->last_key)
                rc = ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", what);
            else if (fn(ctx, key + slen, &st))
                page->stopped = 1;
        }
        xmlFree(key);
        xmlFree(size);
        xmlFree(etag);
    }
    trunc = xml_child_text(root, "IsTruncated");
    page->truncated = trunc && !strcmp(trunc, "true");
    if (!rc && page->truncated) {
        char *t = xml_child_text(root, "NextContinuationToken");
        if (t && !(page->next_token = strdup(t)))
            rc = ss_fail(err, SS_ERR_NOMEM, "LIST %s: out of memory", what);
        xmlFree(t);
    }
    xmlFree(trunc);
    xmlFreeDoc(doc);
    return rc;
}

static int retryable_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return 1;
    default: return 0;
    }
}

static ss_rc status_rc(long status)
{
    if (status == 404) return SS_ERR_NOT_FOUND;
    if (status == 412) return SS_ERR_EXISTS;
    if (status == 401 || status == 403) return SS_ERR_AUTH;
    if (status >= 500 || status == 429 || status == 408) return SS_ERR_TEMPORARY;
    return SS_ERR_STORE;
}

/* Decide a finished attempt's fate: 0 done (r->rc set), 1 retry. */
static int classify(s3_http *h, s3_req *r, CURLcode cc)
{
    int transient;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->over_cap) {
        r->rc = ss_fail(&r->err, SS_ERR_STORE,
                        "%s %s: the answer runs past %zu bytes, the most one may hold: refused",
                        r->op, r->key, r->whole_body);
        return 0;
    }
    if (r->errbody_cut) cc = CURLE_OK; /* cut by us: the status stands */
    if (r->sink_failed) {
        r->rc = ss_fail(&r->err, SS_ERR_IO, "%s %s: the receiver refused the data", r->op, r->key);
        return 0;
    }
    if (cc == CURLE_OK && r->status >= 200 && r->status < 300) {
        r->rc = SS_OK;
        return 0;
    }
    if (cc == CURLE_OK && r->status == 416) { /* a range past the end: empty, as files do */
        r->rc = SS_OK;
        return 0;
    }
    transient = cc != CURLE_OK ? retryable_curl(cc) : status_rc(r->status) == SS_ERR_TEMPORARY;
    if (transient && r->attempts <= h->max_retries && s3_now_ms() < r->deadline_ms) return 1;
    if (cc != CURLE_OK) {
        /* The URL without its query: a presigned URL's signature is a capability, not a detail. */
        r->rc = ss_fail(&r->err, transient ? SS_ERR_TEMPORARY : SS_ERR_STORE, "%s %s: %s (%.*s)%s",
                        r->op, r->key, curl_easy_strerror(cc), (int)strcspn(r->url, "?"), r->url,
                        r->attempts > 1 ? ", after retries" : "");
        if (cc == CURLE_READ_ERROR || cc == CURLE_ABORTED_BY_CALLBACK) r->rc = SS_ERR_IO;
        return 0;
    }
    r->rc = status_rc(r->status);
    describe_http_error(r, r->rc);
    return 0;
}

static int64_t backoff_ms(unsigned attempts)
{
    int64_t cap = BACKOFF_BASE_MS << (attempts < 6 ? attempts : 6);
    if (cap > BACKOFF_CAP_MS) cap = BACKOFF_CAP_MS;
    return (int64_t)randombytes_uniform((uint32_t)cap) + 1; /* full jitter */
}

static void push(s3_req **list, s3_req *r)
{
    r->next = *list;
    *list = r;
}

static void finish(s3_http *h, s3_req *r)
{
    r->finished = 1;
    if (r->easy) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    push(&h->finished, r);
}

void s3_http_start(s3_http *h, s3_req *r)
{
    r->deadline_ms = s3_now_ms() + h->timeout_ms;
    if (setup_attempt(h, r)) {
        r->rc = r->rc ? r->rc : SS_ERR_NOMEM;
        if (!r->err.msg[0]) ss_fail(&r->err, r->rc, "%s %s: cannot start", r->op, r->key);
        finish(h, r);
    }
}

static void collect_done(s3_http *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        s3_req *r = NULL;
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(h->multi, m->easy_handle);
        h->active--;
        if (classify(h, r, m->data.result)) {
            r->retry_at_ms = s3_now_ms() + backoff_ms(r->attempts);
            push(&h->waiting, r);
        } else {
            finish(h, r);
        }
    }
}

/* Restart requests whose backoff ended; returns ms until the next one is due. */
static int64_t restart_due(s3_http *h)
{
    int64_t now = s3_now_ms(), next = -1;
    s3_req **pp = &h->waiting;
    while (*pp) {
        s3_req *r = *pp;
        if (r->retry_at_ms > now) {
            if (next < 0 || r->retry_at_ms - now < next) next = r->retry_at_ms - now;
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->status = 0;
        if (setup_attempt(h, r)) {
            r->rc = r->rc ? r->rc : SS_ERR_NOMEM;
            finish(h, r);
        }
    }
    return next;
}

s3_req *s3_http_step(s3_http *h, int block)
{
    s3_req *done;
    for (;;) {
        int running;
        int64_t next_retry = restart_due(h);
        curl_multi_perform(h->multi, &running);
        collect_done(h);
        if (h->finished || !block || (!h->active && !h->waiting)) break;
        int wait = next_retry >= 0 && next_retry < 1000 ? (int)next_retry : 1000;
        curl_multi_poll(h->multi, NULL, 0, wait, NULL);
    }
    done = h->finished;
    h->finished = NULL;
    return done;
}

ss_rc s3_http_run(s3_http *h, s3_req *r)
{
    s3_req *others = NULL;
    s3_http_start(h, r);
    for (s3_req **pp = &h->finished; *pp; pp = &(*pp)->next)
        if (*pp == r) { /* failed to start: already finished */
            *pp = r->next;
            break;
        }
    while (!r->finished) {
        s3_req *done = s3_http_step(h, 1);
        while (done) {
            s3_req *next = done->next;
            if (done != r) push(&others, done);
            done = next;
        }
    }
    while (others) { /* hand the others back for their owner's next step */
        s3_req *next = others->next;
        push(&h->finished, others);
        others = next;
    }
    return r->rc;
}

ss_rc s3_http_call(s3_http *h, s3_req *r, ss_err *err)
{
    ss_rc rc = s3_http_run(h, r);
    if (rc && err) *err = r->err;
    return rc;
}

void s3_http_xfer_step(ss_store *s, s3_http *h, int block, s3_xfer_done_fn done_fn,
                       ss_xfer_op **ret_done)
{
    s3_req *done = s3_http_step(h, block);
    *ret_done = NULL;
    while (done) {
        s3_req *next = done->next;
        ss_xfer_op *op = done_fn(s, done);
        op->next = *ret_done;
        *ret_done = op;
        done = next;
    }
}

void s3_req_bind_xfer(s3_req *r, ss_xfer_op *op, ss_mem_reader *mem, ss_store_reader *rd,
                      ss_xfer_dst *dst)
{
    dst->op = op;
    if (op->is_put) {
        ss_mem_reader_init(mem, op->buf, op->len, rd);
        r->body = rd;
        r->body_len = op->len;
        return;
    }
    r->sink = ss_xfer_dst_write;
    r->sink_ctx = dst;
    r->use_range = 1;
    r->range_off = op->off;
    r->range_len = op->len;
}
