/*
 * lockd-writers: the correctness half of the s3sync-lockd load benchmark
 * (bench/bench-lockd.sh). N clients (threads, one curl handle and one
 * keep-alive connection each) share one repository for D seconds and loop:
 *
 *   POST lease {ttl}         409 lease_held: sleep min(retry_after_ms, 20..80 ms)
 *                            (the s3sync client polls the same way), again
 *   POST presign put [log/<head+1>]
 *   PUT the URL to RGW with If-None-Match: *   (a 412 would mean a sequence
 *                            written twice: counted as an error)
 *   POST commit {seq, release: true}
 *
 * At the end it GETs head, lists log/ in the bucket through presigned LIST
 * URLs (paged), and checks that the keys are exactly log/1..log/head, that
 * every committed sequence was committed once and by one client, and that
 * the count of commits is head - head_at_start. Prints one line of figures;
 * exit 0 when every check passed, 1 otherwise.
 *
 *   lockd-writers URL REPO TOKEN [CLIENTS [SECONDS [TTL_MS]]]
 *
 * URL is lockd's base (http://127.0.0.1:PORT); TOKEN a read-write device of
 * REPO.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

static const char *base, *repo, *token;
static int clients = 50;
static double seconds = 10;
static long ttl_ms = 5000;
static double t_end;

static atomic_long n_commits, n_acquired, n_held, n_errors, n_412;
static atomic_long n_requests;

/* committed_by[seq]: the client (1-based) whose commit of seq got 200. */
#define MAX_SEQ 1000000
static _Atomic int *committed_by;
static atomic_long n_dup;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct buf {
    char *p;
    size_t len;
} buf;

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
    buf *b = ctx;
    char *q = realloc(b->p, b->len + sz * n + 1);
    if (!q) return 0;
    memcpy(q + b->len, p, sz * n);
    b->p = q;
    b->len += sz * n;
    b->p[b->len] = '\0';
    return sz * n;
}

/* One request; the status (0 on a transport error), the body into *out. */
static long call(CURL *c, const char *method, const char *url, const char *body,
                 struct curl_slist *hdrs, buf *out)
{
    long status = 0;
    free(out->p);
    out->p = NULL;
    out->len = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, -1L);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    atomic_fetch_add(&n_requests, 1);
    if (curl_easy_perform(c) != CURLE_OK) return 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static json_t *parse(const buf *b)
{
    return b->p ? json_loads(b->p, 0, NULL) : NULL;
}

static void complain(int id, const char *what, long status, const buf *b)
{
    atomic_fetch_add(&n_errors, 1);
    if (atomic_load(&n_errors) <= 10)
        fprintf(stderr, "lockd-writers: client %d: %s: HTTP %ld %.200s\n", id, what, status,
                b->p ? b->p : "");
}

static void *client(void *arg)
{
    int id = (int)(intptr_t)arg;
    CURL *c = curl_easy_init(), *s3 = curl_easy_init();
    struct curl_slist *h = NULL, *put_h = NULL;
    char auth[128], url[1024], body[512];
    unsigned seed = (unsigned)id * 2654435761u;
    buf b = {0};
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    put_h = curl_slist_append(put_h, "If-None-Match: *");
    put_h = curl_slist_append(put_h, "Content-Type:");
    put_h = curl_slist_append(put_h, "Expect:");

    while (now_s() < t_end) {
        /* acquire */
        snprintf(url, sizeof url, "%s/v1/repos/%s/lease", base, repo);
        snprintf(body, sizeof body, "{\"ttl_ms\":%ld}", ttl_ms);
        long st = call(c, "POST", url, body, h, &b);
        json_t *j = parse(&b);
        if (st == 409 && j && !strcmp(json_string_value(json_object_get(j, "error")) ?: "", "lease_held")) {
            long ra = (long)json_integer_value(json_object_get(j, "retry_after_ms"));
            long wait = 20 + (long)(rand_r(&seed) % 61);
            if (ra < wait) wait = ra < 1 ? 1 : ra;
            atomic_fetch_add(&n_held, 1);
            json_decref(j);
            usleep((useconds_t)wait * 1000);
            continue;
        }
        if (st != 201 || !j) {
            complain(id, "acquire", st, &b);
            json_decref(j);
            usleep(100000);
            continue;
        }
        atomic_fetch_add(&n_acquired, 1);
        char lease[64];
        snprintf(lease, sizeof lease, "%s", json_string_value(json_object_get(j, "lease_id")) ?: "");
        json_int_t fence = json_integer_value(json_object_get(j, "fencing_token"));
        json_int_t head = json_integer_value(json_object_get(j, "head"));
        json_decref(j);
        json_int_t seq = head + 1;
        char key[64];
        snprintf(key, sizeof key, "log/%020" PRId64, (int64_t)seq);

        /* presign PUT of log/<head+1> */
        snprintf(url, sizeof url, "%s/v1/repos/%s/presign", base, repo);
        snprintf(body, sizeof body,
                 "{\"op\":\"put\",\"lease_id\":\"%s\",\"fencing_token\":%" PRId64
                 ",\"keys\":[\"%s\"]}",
                 lease, (int64_t)fence, key);
        st = call(c, "POST", url, body, h, &b);
        j = parse(&b);
        const char *put_url = j ? json_string_value(json_object_get(
                                      json_array_get(json_object_get(j, "urls"), 0), "url"))
                                : NULL;
        int ok = st == 200 && put_url;
        if (!ok) complain(id, "presign put", st, &b);
        char purl[2048] = "";
        if (ok) snprintf(purl, sizeof purl, "%s", put_url);
        json_decref(j);

        /* PUT to RGW, create-only */
        if (ok) {
            char tx[96];
            snprintf(tx, sizeof tx, "client %d fencing %" PRId64 " seq %" PRId64 "\n", id,
                     (int64_t)fence, (int64_t)seq);
            st = call(s3, "PUT", purl, tx, put_h, &b);
            if (st == 412) atomic_fetch_add(&n_412, 1);
            if (st != 200) {
                complain(id, "PUT log", st, &b);
                ok = 0;
            }
        }

        /* commit + release (or just release after a failure) */
        if (ok) {
            snprintf(url, sizeof url, "%s/v1/repos/%s/commit", base, repo);
            snprintf(body, sizeof body,
                     "{\"lease_id\":\"%s\",\"fencing_token\":%" PRId64 ",\"seq\":%" PRId64
                     ",\"release\":true}",
                     lease, (int64_t)fence, (int64_t)seq);
            st = call(c, "POST", url, body, h, &b);
            j = parse(&b);
            if (st == 200 && j && json_integer_value(json_object_get(j, "head")) == seq) {
                atomic_fetch_add(&n_commits, 1);
                if (seq > 0 && seq < MAX_SEQ) {
                    int expect = 0;
                    if (!atomic_compare_exchange_strong(&committed_by[seq], &expect, id))
                        atomic_fetch_add(&n_dup, 1);
                } else {
                    complain(id, "commit: sequence out of range", st, &b);
                }
            } else {
                complain(id, "commit", st, &b);
                ok = 0;
            }
            json_decref(j);
        }
        if (!ok) {
            snprintf(url, sizeof url, "%s/v1/repos/%s/lease/%s?fencing_token=%" PRId64, base, repo,
                     lease, (int64_t)fence);
            call(c, "DELETE", url, NULL, h, &b);
        }
    }
    free(b.p);
    curl_slist_free_all(h);
    curl_slist_free_all(put_h);
    curl_easy_cleanup(c);
    curl_easy_cleanup(s3);
    return NULL;
}

static json_int_t get_head(CURL *c, struct curl_slist *h)
{
    char url[512];
    buf b = {0};
    snprintf(url, sizeof url, "%s/v1/repos/%s/head", base, repo);
    long st = call(c, "GET", url, NULL, h, &b);
    json_t *j = parse(&b);
    json_int_t head = st == 200 && j ? json_integer_value(json_object_get(j, "head")) : -1;
    json_decref(j);
    free(b.p);
    return head;
}

/* Every log/ key in the bucket, via presigned LISTs: checks them against
 * 1..head in order; the number of problems. */
static long check_bucket(CURL *c, struct curl_slist *h, json_int_t head, long *listed)
{
    char url[512], body[256], after[160] = "";
    buf b = {0}, x = {0};
    long problems = 0, next = 1;
    *listed = 0;
    for (;;) {
        snprintf(url, sizeof url, "%s/v1/repos/%s/presign", base, repo);
        if (after[0])
            snprintf(body, sizeof body, "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"%s\"}",
                     after);
        else
            snprintf(body, sizeof body, "{\"op\":\"list\",\"prefix\":\"log/\"}");
        long st = call(c, "POST", url, body, h, &b);
        json_t *j = parse(&b);
        json_t *u0 = j ? json_array_get(json_object_get(j, "urls"), 0) : NULL;
        const char *lurl = u0 ? json_string_value(json_object_get(u0, "url")) : NULL;
        const char *kp = j ? json_string_value(json_object_get(j, "key_prefix")) : NULL;
        if (st != 200 || !lurl || !kp) {
            fprintf(stderr, "lockd-writers: presign list: HTTP %ld\n", st);
            json_decref(j);
            problems++;
            break;
        }
        char prefix[512];
        snprintf(prefix, sizeof prefix, "%slog/", kp);
        st = call(c, "GET", lurl, NULL, NULL, &x);
        json_decref(j);
        if (st != 200 || !x.p) {
            fprintf(stderr, "lockd-writers: LIST: HTTP %ld\n", st);
            problems++;
            break;
        }
        long page = 0;
        for (const char *p = strstr(x.p, "<Key>"); p; p = strstr(p, "<Key>")) {
            p += 5;
            const char *e = strstr(p, "</Key>");
            if (!e) break;
            size_t plen = strlen(prefix), klen = (size_t)(e - p);
            char k[128] = "";
            if (klen > plen && klen - plen < 64 && !strncmp(p, prefix, plen)) {
                memcpy(k, p + plen, klen - plen);
                k[klen - plen] = '\0';
            }
            char *end = NULL;
            long long v = strtoll(k, &end, 10);
            if (strlen(k) != 20 || !end || *end) {
                fprintf(stderr, "lockd-writers: unexpected key %.*s\n", (int)klen, p);
                problems++;
            } else if (v != next) {
                fprintf(stderr, "lockd-writers: log/%lld where log/%ld was expected\n", v, next);
                problems++;
                next = (long)v + 1;
            } else {
                next++;
            }
            snprintf(after, sizeof after, "log/%s", k);
            page++;
            (*listed)++;
            p = e;
        }
        if (!strstr(x.p, "<IsTruncated>true</IsTruncated>") || page == 0) break;
    }
    if (next - 1 != head) {
        fprintf(stderr, "lockd-writers: bucket ends at log/%ld, head is %" PRId64 "\n", next - 1,
                (int64_t)head);
        problems++;
    }
    free(b.p);
    free(x.p);
    return problems;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL REPO TOKEN [CLIENTS [SECONDS [TTL_MS]]]\n", argv[0]);
        return 2;
    }
    base = argv[1];
    repo = argv[2];
    token = argv[3];
    if (argc > 4) clients = atoi(argv[4]);
    if (argc > 5) seconds = atof(argv[5]);
    if (argc > 6) ttl_ms = atol(argv[6]);
    if (clients < 1 || clients > 1000 || seconds <= 0) return 2;
    committed_by = calloc(MAX_SEQ, sizeof *committed_by);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    json_int_t head0 = get_head(c, h);
    if (head0 < 0) {
        fprintf(stderr, "lockd-writers: GET head failed\n");
        return 1;
    }

    pthread_t *t = calloc((size_t)clients, sizeof *t);
    double t0 = now_s();
    t_end = t0 + seconds;
    for (int i = 0; i < clients; i++)
        pthread_create(&t[i], NULL, client, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    double el = now_s() - t0;

    json_int_t head = get_head(c, h);
    long listed = 0, problems = check_bucket(c, h, head, &listed);
    long commits = atomic_load(&n_commits), missing = 0;
    for (json_int_t s = head0 + 1; s <= head && s < MAX_SEQ; s++)
        if (!atomic_load(&committed_by[s])) missing++;
    if (head - head0 != commits) problems++;
    problems += missing + atomic_load(&n_dup) + atomic_load(&n_412) + atomic_load(&n_errors);

    printf("lockd-writers: %d clients, %.1f s: %ld commits (%.1f commits/s), head %" PRId64
           " -> %" PRId64 ", bucket log/ keys %ld (1..%" PRId64 " expected), "
           "acquires %ld granted / %ld lease_held, duplicate commits %ld, uncommitted in 1..head %ld, "
           "PUT 412 %ld, other errors %ld, %ld HTTP requests: %s\n",
           clients, el, commits, (double)commits / el, (int64_t)head0, (int64_t)head, listed,
           (int64_t)head, atomic_load(&n_acquired), atomic_load(&n_held), atomic_load(&n_dup),
           missing, atomic_load(&n_412), atomic_load(&n_errors), atomic_load(&n_requests),
           problems ? "FAIL" : "gapless and unique");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(t);
    free(committed_by);
    return problems ? 1 : 0;
}
