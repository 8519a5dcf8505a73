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
 *   lockd-writers URL[,URL...] REPO TOKEN [CLIENTS [SECONDS [TTL_MS]]] [--faults] [--jump K]
 *
 * URL is lockd's base (http://127.0.0.1:PORT); TOKEN a read-write device of
 * REPO. Several URLs are replicas serving one state (issue 19): client i
 * starts on replica i mod n and, under --faults, moves to the next one when
 * its replica does not answer, as a load balancer in front of them would.
 *
 * --faults: lockd may be killed and restarted under the clients (the test
 * tests/test-lockd-load.c does). A request that gets no answer (or a 5xx)
 * is retried after 50 ms; a commit whose answer was lost is sent again with
 * the same lease until lockd answers (a 200 then is an acknowledgement; a
 * 409 means it was applied before the crash and the lease went with it, or
 * never); a PUT refused with 403 (URL expired) or 412 (the sequence went to
 * the next holder) is an outcome, not an error. What must still hold: log/
 * is exactly 1..head, no sequence acknowledged twice, every acknowledged
 * commit's object holds what its client uploaded (read back through
 * presigned GETs), no fencing token granted twice, no commit accepted on a
 * lease its client held past expiry.
 *
 * --jump K: clients 1..K see their clock jump once, a third into the run,
 * while they hold a lease and PUT URLs. Odd ones: their clock stands still
 * while they stall for TTL + 500 ms (a laptop suspended: CLOCK_MONOTONIC
 * does not count it), so by their clock the lease is still good; they PUT
 * and commit anyway, and lockd must refuse the commit. Even ones: their
 * clock jumps 2 x TTL ahead, so they think the lease is gone and release it
 * without writing. A jumper that never held the lease after a third of the
 * run goes on up to 10 s past the end, so every jump happens.
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

#define MAX_REPLICAS 8
static const char *bases[MAX_REPLICAS], *repo, *token;
static int n_bases;
static _Atomic int *route; /* [id]: which replica client id asks; 0 is the main thread */
static int clients = 50;
static double seconds = 10;
static long ttl_ms = 5000;
static double t_end, t_jump, t_stopped; /* t_stopped: all clients out of their loops */
static int faults, jumpers;

static atomic_long n_commits, n_acquired, n_held, n_errors, n_412;
static atomic_long n_requests;
/* --faults and --jump outcomes */
static atomic_long n_unreachable, n_resent, n_lost_answer, n_put_refused, n_stale_refused,
    n_stale_accepted, n_gave_up, n_fencing_dup, n_read_back, n_bad_read;
static _Atomic json_int_t max_acked;
static pthread_barrier_t all_stopped;

/* committed_by[seq]: the client (1-based) whose commit of seq got 200. */
#define MAX_SEQ 1000000
static _Atomic int *committed_by;
static _Atomic int64_t *committed_fencing; /* the fencing token of that commit */
static atomic_char *fencing_seen;          /* [token]: granted once already */
static atomic_long n_dup;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A client's clock: the monotonic clock plus the client's own offset, which
 * --jump moves. Only the client's view of its lease reads it; run timing
 * reads now_s(). */
static _Atomic int64_t *skew_ms;

static int64_t client_now_ms(int id)
{
    return (int64_t)(now_s() * 1000) + atomic_load(&skew_ms[id]);
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

/* lockd's URL of this repository's route tail ("/lease", ...), at client id's replica. */
static void api_url(int id, char *out, size_t cap, const char *tail)
{
    snprintf(out, cap, "%s/v1/repos/%s%s", bases[atomic_load(&route[id]) % n_bases], repo, tail);
}

/* Under --faults, no answer or a 5xx means lockd is down or restarting:
 * wait a little and say so (1). Otherwise 0: the caller judges the status. */
static int unreachable(int id, long st)
{
    if (!faults || (st != 0 && st < 500)) return 0;
    atomic_fetch_add(&n_unreachable, 1);
    atomic_fetch_add(&route[id], 1); /* the next replica, if there is one */
    usleep(50000);
    return 1;
}

static const char *jerror(json_t *j)
{
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    return e ? e : "";
}

/* What a client knows of its lease; deadline by its own clock. */
typedef struct held {
    char id[64];
    json_int_t fence, seq;
    int64_t deadline_ms;
} held;

/* One acquire: 1 when granted, 0 to try again (already waited). */
static int acquire(int id, CURL *c, struct curl_slist *h, buf *b, unsigned *seed, held *l)
{
    char url[1024], body[64];
    api_url(id, url, sizeof url, "/lease");
    snprintf(body, sizeof body, "{\"ttl_ms\":%ld}", ttl_ms);
    long st = call(c, "POST", url, body, h, b);
    json_t *j = parse(b);
    if (st == 409 && !strcmp(jerror(j), "lease_held")) {
        long ra = (long)json_integer_value(json_object_get(j, "retry_after_ms"));
        long wait = 20 + (long)(rand_r(seed) % 61);
        if (ra < wait) wait = ra < 1 ? 1 : ra;
        atomic_fetch_add(&n_held, 1);
        json_decref(j);
        usleep((useconds_t)wait * 1000);
        return 0;
    }
    if (st != 201 || !j) {
        if (!unreachable(id, st)) {
            complain(id, "acquire", st, b);
            usleep(100000);
        }
        json_decref(j);
        return 0;
    }
    atomic_fetch_add(&n_acquired, 1);
    snprintf(l->id, sizeof l->id, "%s", json_string_value(json_object_get(j, "lease_id")) ?: "");
    l->fence = json_integer_value(json_object_get(j, "fencing_token"));
    l->seq = json_integer_value(json_object_get(j, "head")) + 1;
    l->deadline_ms = client_now_ms(id) + json_integer_value(json_object_get(j, "expires_in_ms"));
    json_decref(j);
    /* Granted twice would be two writers with one token: across restarts too. */
    if (l->fence < 1 || l->fence >= MAX_SEQ || atomic_exchange(&fencing_seen[l->fence], 1))
        atomic_fetch_add(&n_fencing_dup, 1);
    return 1;
}

/* Presign PUT of log/<seq> into purl; 1 on success. */
static int presign_put(int id, CURL *c, struct curl_slist *h, buf *b, const held *l, char *purl,
                       size_t cap)
{
    char url[1024], body[512];
    api_url(id, url, sizeof url, "/presign");
    snprintf(body, sizeof body,
             "{\"op\":\"put\",\"lease_id\":\"%s\",\"fencing_token\":%" PRId64
             ",\"keys\":[\"log/%020" PRId64 "\"]}",
             l->id, (int64_t)l->fence, (int64_t)l->seq);
    long st = call(c, "POST", url, body, h, b);
    json_t *j = parse(b);
    const char *u =
        j ? json_string_value(json_object_get(json_array_get(json_object_get(j, "urls"), 0), "url"))
          : NULL;
    int ok = st == 200 && u;
    if (ok)
        snprintf(purl, cap, "%s", u);
    else if (!unreachable(id, st) && !(faults && st == 409)) /* 409: expired while lockd was down */
        complain(id, "presign put", st, b);
    json_decref(j);
    return ok;
}

/* PUT the sequence's object to RGW, create-only; 1 on 200. */
static int put_log(int id, CURL *s3, struct curl_slist *put_h, buf *b, const held *l,
                   const char *purl)
{
    char tx[96];
    snprintf(tx, sizeof tx, "client %d fencing %" PRId64 " seq %" PRId64 "\n", id,
             (int64_t)l->fence, (int64_t)l->seq);
    long st = call(s3, "PUT", purl, tx, put_h, b);
    if (st == 200) return 1;
    if (st == 412) /* a sequence written twice: never an outcome, faults or not */
        atomic_fetch_add(&n_412, 1);
    if (faults && st == 403) /* the URL expired with the lease */
        atomic_fetch_add(&n_put_refused, 1);
    else
        complain(id, "PUT log", st, b);
    return 0;
}

/* Commit with release, sent again while lockd does not answer; 1 when acknowledged. */
static int commit(int id, CURL *c, struct curl_slist *h, buf *b, const held *l, int stale)
{
    char url[1024], body[512];
    int resent = 0;
    snprintf(body, sizeof body,
             "{\"lease_id\":\"%s\",\"fencing_token\":%" PRId64 ",\"seq\":%" PRId64
             ",\"release\":true}",
             l->id, (int64_t)l->fence, (int64_t)l->seq);
    for (;;) {
        api_url(id, url, sizeof url, "/commit");
        long st = call(c, "POST", url, body, h, b);
        if (unreachable(id, st) && now_s() < t_end + 30) {
            atomic_fetch_add(&n_resent, 1);
            resent = 1;
            continue;
        }
        json_t *j = parse(b);
        int acked = st == 200 && j && json_integer_value(json_object_get(j, "head")) == l->seq;
        json_decref(j);
        if (acked) {
            int expect = 0;
            if (stale) atomic_fetch_add(&n_stale_accepted, 1);
            atomic_fetch_add(&n_commits, 1);
            if (l->seq <= 0 || l->seq >= MAX_SEQ)
                complain(id, "commit: sequence out of range", st, b);
            else if (!atomic_compare_exchange_strong(&committed_by[l->seq], &expect, id))
                atomic_fetch_add(&n_dup, 1);
            else
                atomic_store(&committed_fencing[l->seq], (int64_t)l->fence);
            for (json_int_t m = atomic_load(&max_acked); m < l->seq;)
                if (atomic_compare_exchange_weak(&max_acked, &m, l->seq)) break;
            return 1;
        }
        if (stale && st == 409)
            atomic_fetch_add(&n_stale_refused, 1);
        else if (resent && st == 409) /* applied before the crash, or never: the bucket tells */
            atomic_fetch_add(&n_lost_answer, 1);
        else
            complain(id, "commit", st, b);
        return 0;
    }
}

/* --jump, once per jumper while it holds PUT URLs: 1 when its clock stood still. */
static int clock_jump(int id)
{
    if (id % 2) {
        usleep((useconds_t)(ttl_ms + 500) * 1000);
        atomic_fetch_sub(&skew_ms[id], ttl_ms + 500);
        return 1;
    }
    atomic_fetch_add(&skew_ms[id], 2 * ttl_ms);
    return 0;
}

/* --faults: every sequence client `owner` had acknowledged, read back through
 * presigned GETs (50 keys a request), holds what it uploaded. Each client
 * checks its own once all have stopped, so the reads go in parallel. */
static void verify_acked(CURL *c, struct curl_slist *h, int owner)
{
    char url[512], want[96];
    buf b = {0}, x = {0};
    json_int_t to = atomic_load(&max_acked);
    for (json_int_t s = 1; s <= to && s < MAX_SEQ;) {
        json_t *keys = json_array(), *req = NULL;
        json_int_t batch[50];
        int n = 0;
        for (; s <= to && s < MAX_SEQ && n < 50; s++) {
            char key[32];
            if (atomic_load(&committed_by[s]) != owner) continue;
            snprintf(key, sizeof key, "log/%020" PRId64, (int64_t)s);
            json_array_append_new(keys, json_string(key));
            batch[n++] = s;
        }
        if (!n) {
            json_decref(keys);
            continue;
        }
        req = json_pack("{s:s, s:o}", "op", "get", "keys", keys);
        char *body = json_dumps(req, JSON_COMPACT);
        long st;
        for (;;) {
            api_url(owner, url, sizeof url, "/presign");
            st = call(c, "POST", url, body, h, &b);
            if (!unreachable(owner, st) || now_s() >= t_end + 30) break;
        }
        free(body);
        json_decref(req);
        json_t *j = parse(&b), *urls = j ? json_object_get(j, "urls") : NULL;
        if (st != 200 || json_array_size(urls) != (size_t)n) {
            fprintf(stderr, "lockd-writers: presign get: HTTP %ld\n", st);
            json_decref(j);
            atomic_fetch_add(&n_bad_read, 1);
            break;
        }
        for (int i = 0; i < n; i++) {
            const char *u = json_string_value(json_object_get(json_array_get(urls, i), "url"));
            json_int_t q = batch[i];
            snprintf(want, sizeof want, "client %d fencing %" PRId64 " seq %" PRId64 "\n",
                     atomic_load(&committed_by[q]), atomic_load(&committed_fencing[q]), (int64_t)q);
            st = u ? call(c, "GET", u, NULL, NULL, &x) : 0;
            if (st != 200 || !x.p || strcmp(x.p, want)) {
                fprintf(stderr, "lockd-writers: log/%" PRId64 " (acknowledged): HTTP %ld, %.80s\n",
                        (int64_t)q, st, x.p ? x.p : "");
                atomic_fetch_add(&n_bad_read, 1);
            }
            atomic_fetch_add(&n_read_back, 1);
        }
        json_decref(j);
    }
    free(b.p);
    free(x.p);
}

static void *client(void *arg)
{
    int id = (int)(intptr_t)arg, jumped = 0;
    CURL *c = curl_easy_init(), *s3 = curl_easy_init();
    struct curl_slist *h = NULL, *put_h = NULL;
    char auth[128], url[1024], purl[2048];
    unsigned seed = (unsigned)id * 2654435761u;
    buf b = {0};
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    put_h = curl_slist_append(put_h, "If-None-Match: *");
    put_h = curl_slist_append(put_h, "Content-Type:");
    put_h = curl_slist_append(put_h, "Expect:");

    /* A jumper that has not met its jump yet (others held the lease every
     * time it asked) stays on for up to 10 s more, when nobody competes. */
    while (now_s() < t_end || (id <= jumpers && !jumped && now_s() < t_end + 10)) {
        held l;
        int stale = 0, ok;
        if (!acquire(id, c, h, &b, &seed, &l)) continue;
        ok = presign_put(id, c, h, &b, &l, purl, sizeof purl);
        if (ok && id <= jumpers && !jumped && now_s() >= t_jump) {
            jumped = 1;
            stale = clock_jump(id);
        }
        if (ok && !stale && client_now_ms(id) >= l.deadline_ms) { /* by my clock: gone */
            atomic_fetch_add(&n_gave_up, 1);
            ok = 0;
        }
        if (ok) ok = put_log(id, s3, put_h, &b, &l, purl);
        /* A stalled client believes its lease is good: it commits whatever
         * its PUT got, and lockd must refuse. */
        if ((ok || stale) && commit(id, c, h, &b, &l, stale)) continue;
        snprintf(url, sizeof url, "%s/v1/repos/%s/lease/%s?fencing_token=%" PRId64,
                 bases[atomic_load(&route[id]) % n_bases], repo, l.id, (int64_t)l.fence);
        call(c, "DELETE", url, NULL, h, &b); /* best effort: else it expires */
    }
    if (faults) {
        if (pthread_barrier_wait(&all_stopped) == PTHREAD_BARRIER_SERIAL_THREAD)
            t_stopped = now_s();
        verify_acked(c, h, id);
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
    api_url(0, url, sizeof url, "/head");
    long st = call(c, "GET", url, NULL, h, &b);
    if (st == 0 || st >= 500) atomic_fetch_add(&route[0], 1); /* next time, the next replica */
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
        api_url(0, url, sizeof url, "/presign");
        if (after[0])
            snprintf(body, sizeof body,
                     "{\"op\":\"list\",\"prefix\":\"log/\",\"start_after\":\"%s\"}", after);
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

/*
 * GET head; under --faults lockd may still be restarting: a few tries. A
 * replica of a bucket state may answer from a record up to head_cache old
 * (PROTOCOL.md S7): below the highest acknowledged commit, ask again for up
 * to 10 s; a head that never gets there is what the check reports.
 */
static json_int_t get_head_patient(CURL *c, struct curl_slist *h)
{
    json_int_t head = get_head(c, h);
    for (int i = 0; ((faults && head < 0) || head < atomic_load(&max_acked)) && i < 100; i++) {
        usleep(100000);
        head = get_head(c, h);
    }
    return head;
}

int main(int argc, char **argv)
{
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--faults"))
            faults = 1;
        else if (!strcmp(argv[i], "--jump") && i + 1 < argc)
            jumpers = atoi(argv[++i]);
        else
            argv[++pos] = argv[i];
    }
    argc = pos + 1;
    if (argc < 4) {
        fprintf(stderr,
                "usage: %s URL[,URL...] REPO TOKEN [CLIENTS [SECONDS [TTL_MS]]] [--faults] [--jump "
                "K]\n",
                argv[0]);
        return 2;
    }
    for (char *u = strtok(argv[1], ","); u && n_bases < MAX_REPLICAS; u = strtok(NULL, ","))
        bases[n_bases++] = u;
    if (!n_bases) return 2;
    repo = argv[2];
    token = argv[3];
    if (argc > 4) clients = atoi(argv[4]);
    if (argc > 5) seconds = atof(argv[5]);
    if (argc > 6) ttl_ms = atol(argv[6]);
    if (clients < 1 || clients > 1000 || seconds <= 0 || jumpers < 0 || jumpers > clients) return 2;
    committed_by = calloc(MAX_SEQ, sizeof *committed_by);
    committed_fencing = calloc(MAX_SEQ, sizeof *committed_fencing);
    fencing_seen = calloc(MAX_SEQ, sizeof *fencing_seen);
    skew_ms = calloc((size_t)clients + 1, sizeof *skew_ms);
    route = calloc((size_t)clients + 1, sizeof *route);
    if (!committed_by || !committed_fencing || !fencing_seen || !skew_ms || !route) return 1;
    for (int i = 0; i <= clients; i++)
        atomic_store(&route[i], i % n_bases);
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
    pthread_barrier_init(&all_stopped, NULL, (unsigned)clients);
    double t0 = now_s();
    t_end = t0 + seconds;
    t_jump = t0 + seconds / 3;
    for (int i = 0; i < clients; i++)
        pthread_create(&t[i], NULL, client, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    double el = (faults ? t_stopped : now_s()) - t0;

    json_int_t head = get_head_patient(c, h);
    long listed = 0, problems = check_bucket(c, h, head, &listed);
    long commits = atomic_load(&n_commits), missing = 0;
    for (json_int_t s = head0 + 1; s <= head && s < MAX_SEQ; s++)
        if (!atomic_load(&committed_by[s])) missing++;
    /* Without faults every sequence is acknowledged; with them a commit whose
     * answer was lost, or a stalled client's upload that reconciliation
     * adopted, is in the log unacknowledged: present, never twice. */
    if (faults ? head - head0 < commits : head - head0 != commits) problems++;
    if (!faults) problems += missing;
    problems += atomic_load(&n_dup) + atomic_load(&n_412) + atomic_load(&n_errors) +
                atomic_load(&n_fencing_dup) + atomic_load(&n_stale_accepted) +
                atomic_load(&n_bad_read);
    if (faults && atomic_load(&n_read_back) != commits) problems++;

    printf(
        "lockd-writers: %d clients, %.1f s: %ld commits (%.1f commits/s), head %" PRId64
        " -> %" PRId64 ", bucket log/ keys %ld (1..%" PRId64 " expected), "
        "acquires %ld granted / %ld lease_held, duplicate commits %ld, uncommitted in 1..head %ld, "
        "PUT 412 %ld, other errors %ld, %ld HTTP requests",
        clients, el, commits, (double)commits / el, (int64_t)head0, (int64_t)head, listed,
        (int64_t)head, atomic_load(&n_acquired), atomic_load(&n_held), atomic_load(&n_dup), missing,
        atomic_load(&n_412), atomic_load(&n_errors), atomic_load(&n_requests));
    if (faults || jumpers)
        printf("; faults: unreachable %ld, commits resent %ld, answers lost %ld, PUT 403 %ld, "
               "acknowledged read back %ld, fencing granted twice %ld; clock jumps (%d clients): "
               "stale commits refused %ld, accepted %ld, leases given up %ld",
               atomic_load(&n_unreachable), atomic_load(&n_resent), atomic_load(&n_lost_answer),
               atomic_load(&n_put_refused), atomic_load(&n_read_back), atomic_load(&n_fencing_dup),
               jumpers, atomic_load(&n_stale_refused), atomic_load(&n_stale_accepted),
               atomic_load(&n_gave_up));
    printf(": %s\n", problems ? "FAIL" : "gapless and unique");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    pthread_barrier_destroy(&all_stopped);
    free(t);
    free(committed_by);
    free((void *)committed_fencing);
    free((void *)fencing_seen);
    free((void *)skew_ms);
    return problems ? 1 : 0;
}
