/*
 * faultproxy: the fault-injecting HTTP/1.1 proxy of test-faults (see faultproxy.h).
 *
 * One accept thread; one thread per client connection, which reads a request
 * head (request line and headers), picks the request's fault, and relays the
 * head and body (Content-Length or chunked) to its upstream connection, then
 * the response head and body back (Content-Length, chunked, or until close;
 * none for HEAD, 1xx, 204, 304). Bytes are relayed unchanged. Tests only:
 * plain sockets and pthreads, blocking I/O; fp_stop() shuts every socket
 * down to wake the threads.
 */
#include "faultproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 65536
#define BUF_SIZE 65536

typedef struct faultproxy faultproxy;

typedef struct stream {
    int fd;
    size_t off, len;
    faultproxy *p; /* whose link rate its relayed bytes keep to */
    char buf[BUF_SIZE];
} stream;

typedef struct conn {
    faultproxy *p;
    stream cl, up; /* client, upstream (fd -1 until needed) */
    struct conn *next;
} conn;

struct faultproxy {
    int lfd;
    char url[64], host[256], port[16];
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when a connection thread ends */
    conn *conns;
    unsigned n_conns;
    int stopping;
    fp_rates rates;
    int pass; /* no rates: relay everything */
    uint64_t seed, next_req;
    unsigned injected; /* under the current rates */
    int log;           /* FAULTPROXY_LOG=1 */
    uint64_t counts[FP_KINDS];
    uint64_t paced_ns; /* bytes_per_s: when the link is free again (CLOCK_MONOTONIC) */
    char *first_page;  /* FP_FIRST_PAGE: the last listing's first page, as answered */
    size_t first_page_len;
};

static const char *const names[FP_KINDS] = {"none",     "drop-before", "drop-after", "500",
                                            "503",      "stall",       "truncate",   "overwrite",
                                            "no-token", "first-page",  "rewrite",    "timeout"};

const char *fp_name(fp_fault f)
{
    return f < FP_KINDS ? names[f] : "?";
}

/* --- the schedule ------------------------------------------------------------------ */

static uint64_t mix(uint64_t x) /* splitmix64 */
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static fp_fault pick(faultproxy *p, const char *head, unsigned *stall_ms, unsigned *timeout_ms)
{
    fp_fault f = FP_NONE;
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(head, "\r\n"), head);
    pthread_mutex_lock(&p->mu);
    unsigned r = (unsigned)(mix(p->seed ^ mix(p->next_req++)) % 1000), sum = 0;
    int eligible = !p->pass && (!p->rates.match || !fnmatch(p->rates.match, line, 0)) &&
                   (!p->rates.limit || p->injected < p->rates.limit);
    for (int k = FP_DROP_BEFORE; eligible && k < FP_TIMEOUT && f == FP_NONE; k++) {
        sum += p->rates.permille[k];
        if (r < sum) f = (fp_fault)k;
    }
    if (f != FP_NONE) p->injected++;
    *stall_ms = p->rates.stall_ms;
    *timeout_ms = p->rates.timeout_ms;
    pthread_mutex_unlock(&p->mu);
    if (f != FP_NONE && p->log) fprintf(stderr, "faultproxy: %s: %s\n", fp_name(f), line);
    return f;
}

static void count(faultproxy *p, fp_fault f)
{
    pthread_mutex_lock(&p->mu);
    p->counts[f]++;
    pthread_mutex_unlock(&p->mu);
}

/* --- buffered sockets -------------------------------------------------------------- */

/* Bytes buffered, reading more when none are; 0 at end or error. With
 * timeout_ms, a read that waits longer fails with *timed_out set. */
static size_t s_fill(stream *s, unsigned timeout_ms, int *timed_out)
{
    ssize_t n;
    if (s->off < s->len) return s->len - s->off;
    if (timeout_ms) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        int r;
        while ((r = poll(&pfd, 1, (int)timeout_ms)) < 0 && errno == EINTR) {
        }
        if (r == 0) {
            if (timed_out) *timed_out = 1;
            return 0;
        }
    }
    while ((n = recv(s->fd, s->buf, sizeof s->buf, 0)) < 0 && errno == EINTR) {
    }
    s->off = 0;
    s->len = n > 0 ? (size_t)n : 0;
    return s->len;
}

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read through the first "\r\n\r\n" (a head) or "\n" (a line) into out, NUL-terminated. */
static int s_until(stream *s, const char *end, char *out, size_t cap, size_t *ret_len,
                   unsigned timeout_ms, int *timed_out)
{
    size_t n = 0, elen = strlen(end);
    while (n < elen || memcmp(out + n - elen, end, elen)) {
        if (n + 1 >= cap || !s_fill(s, timeout_ms, timed_out)) return -1;
        out[n++] = s->buf[s->off++];
    }
    out[n] = '\0';
    *ret_len = n;
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Wait until n more bytes fit in the link's rate: one link shared by every connection. */
static void pace(faultproxy *p, size_t n)
{
    uint64_t now, done;
    if (!p || !p->rates.bytes_per_s) return;
    pthread_mutex_lock(&p->mu);
    now = mono_ns();
    if (p->paced_ns < now) p->paced_ns = now;
    p->paced_ns += (uint64_t)n * 1000000000u / p->rates.bytes_per_s;
    done = p->paced_ns;
    pthread_mutex_unlock(&p->mu);
    if (done > now) {
        struct timespec ts = {(time_t)((done - now) / 1000000000u),
                              (long)((done - now) % 1000000000u)};
        while (nanosleep(&ts, &ts) && errno == EINTR) {
        }
    }
}

/* Move len bytes from s to dst (dst < 0: discard), at p's rate (p may be NULL). */
static int s_relay(stream *s, int dst, uint64_t len)
{
    while (len) {
        size_t have = s_fill(s, 0, NULL), n = have < len ? have : (size_t)len;
        if (dst >= 0) pace(s->p, n);
        if (!have || (dst >= 0 && send_all(dst, s->buf + s->off, n))) return -1;
        s->off += n;
        len -= n;
    }
    return 0;
}

/* --- HTTP framing ------------------------------------------------------------------ */

typedef struct framing {
    int chunked;
    int64_t len; /* -1: until the connection closes */
} framing;

/* The value of header name in head, or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        if (!strncasecmp(l + 2, name, n) && l[2 + n] == ':') {
            const char *v = l + 3 + n;
            return v + strspn(v, " \t");
        }
    }
    return NULL;
}

static framing body_framing(const char *head, int is_response, int no_body)
{
    const char *te = header(head, "Transfer-Encoding"), *cl = header(head, "Content-Length");
    framing f = {0, 0};
    if (no_body) return f;
    if (te && !strncasecmp(te, "chunked", 7))
        f.chunked = 1;
    else if (cl)
        f.len = strtoll(cl, NULL, 10);
    else if (is_response)
        f.len = -1;
    return f;
}

static int relay_body(stream *s, int dst, framing f)
{
    char line[1024];
    size_t n;
    if (!f.chunked) {
        if (f.len >= 0) return s_relay(s, dst, (uint64_t)f.len);
        while (s_fill(s, 0, NULL)) /* until close */
            if (s_relay(s, dst, s->len - s->off)) return -1;
        return 0;
    }
    for (;;) { /* chunk-size line, data, CRLF; after the last chunk, trailers to an empty line */
        unsigned long long size;
        if (s_until(s, "\n", line, sizeof line, &n, 0, NULL)) return -1;
        if (dst >= 0 && send_all(dst, line, n)) return -1;
        size = strtoull(line, NULL, 16);
        if (size == 0) break;
        if (s_relay(s, dst, size + 2)) return -1;
    }
    do {
        if (s_until(s, "\n", line, sizeof line, &n, 0, NULL)) return -1;
        if (dst >= 0 && send_all(dst, line, n)) return -1;
    } while (strcmp(line, "\r\n"));
    return 0;
}

static int connect_upstream(conn *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1, one = 1;
    if (getaddrinfo(c->p->host, c->p->port, &hints, &ai)) return -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&c->p->mu);
    c->up.fd = c->p->stopping ? (close(fd), -1) : fd;
    c->up.off = c->up.len = 0;
    pthread_mutex_unlock(&c->p->mu);
    return c->up.fd < 0 ? -1 : 0;
}

static int answer_error(int fd, int status, const char *code, const char *msg)
{
    char body[512], head[512];
    int bn = snprintf(body, sizeof body,
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                      "<Message>%s</Message><RequestId>faultproxy</RequestId></Error>",
                      code, msg);
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n"
                      "Content-Length: %d\r\nx-amz-request-id: faultproxy\r\n\r\n",
                      status,
                      status == 503   ? "Slow Down"
                      : status == 504 ? "Gateway Timeout"
                                      : "Internal Server Error",
                      bn);
    return send_all(fd, head, (size_t)hn) || send_all(fd, body, (size_t)bn);
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) && errno == EINTR) {
    }
}

/* --- the paging faults ------------------------------------------------------------ */

#define PAGE_MAX (4u << 20)

static int s_take(stream *s, char *out, size_t len)
{
    while (len) {
        size_t have = s_fill(s, 0, NULL), k = have < len ? have : len;
        if (!have) return -1;
        memcpy(out, s->buf + s->off, k);
        s->off += k;
        out += k;
        len -= k;
    }
    return 0;
}

/* A whole response body (chunks joined) into a malloc'd *ret; -1 past PAGE_MAX or unframed. */
static int read_body(stream *s, framing f, char **ret, size_t *ret_len)
{
    char line[1024], *buf = malloc(PAGE_MAX);
    size_t n = 0, ln;
    unsigned long long size;
    if (!buf) return -1;
    if (!f.chunked) {
        if (f.len < 0 || (uint64_t)f.len > PAGE_MAX || s_take(s, buf, (size_t)f.len)) goto fail;
        n = (size_t)f.len;
    } else {
        for (;;) {
            if (s_until(s, "\n", line, sizeof line, &ln, 0, NULL)) goto fail;
            size = strtoull(line, NULL, 16);
            if (!size) break;
            if (size > PAGE_MAX - n || s_take(s, buf + n, (size_t)size) ||
                s_until(s, "\n", line, sizeof line, &ln, 0, NULL))
                goto fail;
            n += (size_t)size;
        }
        do { /* trailers, to the empty line */
            if (s_until(s, "\n", line, sizeof line, &ln, 0, NULL)) goto fail;
        } while (strcmp(line, "\r\n"));
    }
    *ret = buf;
    *ret_len = n;
    return 0;
fail:
    free(buf);
    return -1;
}

/* rhead with its framing headers replaced by a Content-Length for body, then body. */
static int send_reframed(int fd, const char *rhead, const char *body, size_t len)
{
    static __thread char out[HEAD_MAX + 64];
    size_t n = 0;
    for (const char *l = rhead; *l && strncmp(l, "\r\n", 2);) {
        size_t ll = strcspn(l, "\n") + (l[strcspn(l, "\n")] == '\n');
        if (strncasecmp(l, "Content-Length:", 15) && strncasecmp(l, "Transfer-Encoding:", 18)) {
            memcpy(out + n, l, ll);
            n += ll;
        }
        l += ll;
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "Content-Length: %zu\r\n\r\n", len);
    return send_all(fd, out, n) || send_all(fd, body, len);
}

/*
 * A 200 listing answered as a store with broken paging would: FP_NO_TOKEN
 * cuts NextContinuationToken out (IsTruncated stays true); FP_FIRST_PAGE
 * keeps each first page and answers a later page (a continuation-token
 * request) with it again. 0 to keep the connection.
 */
static int break_paging(conn *c, fp_fault f, const char *head, const char *rhead, framing resp)
{
    static const char open_tag[] = "<NextContinuationToken>",
                      close_tag[] = "</NextContinuationToken>";
    faultproxy *p = c->p;
    char *body = NULL, *tok, *end;
    size_t len, line_len = strcspn(head, "\r\n");
    int later = memmem(head, line_len, "continuation-token=", 19) != NULL, changed = 0, rc;
    if (read_body(&c->up, resp, &body, &len)) return -1;
    tok = f == FP_NO_TOKEN ? memmem(body, len, open_tag, sizeof open_tag - 1) : NULL;
    end = tok ? memmem(tok, len - (size_t)(tok - body), close_tag, sizeof close_tag - 1) : NULL;
    if (end) {
        end += sizeof close_tag - 1;
        memmove(tok, end, len - (size_t)(end - body));
        len -= (size_t)(end - tok);
        changed = 1;
    }
    pthread_mutex_lock(&p->mu);
    if (f == FP_FIRST_PAGE && !later) {
        char *keep = malloc(len ? len : 1);
        if (keep) {
            memcpy(keep, body, len);
            free(p->first_page);
            p->first_page = keep;
            p->first_page_len = len;
        }
    } else if (f == FP_FIRST_PAGE && p->first_page && p->first_page_len <= PAGE_MAX) {
        memcpy(body, p->first_page, p->first_page_len);
        len = p->first_page_len;
        changed = 1;
    }
    pthread_mutex_unlock(&p->mu);
    count(p, changed ? f : FP_NONE);
    rc = send_reframed(c->cl.fd, rhead, body, len);
    free(body);
    const char *conn_hdr = header(rhead, "Connection");
    return rc || (conn_hdr && !strncasecmp(conn_hdr, "close", 5)) ? -1 : 0;
}

/* FP_REWRITE: the answer rhead/body with its body through the test's rewrite function. */
static int send_rewritten(conn *c, const char *rhead, framing resp)
{
    char *body = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    int rc;
    if (read_body(&c->up, resp, &body, &len)) return -1;
    out = c->p->rates.rewrite(c->p->rates.rewrite_ctx, body, len, &out_len);
    rc = out ? send_reframed(c->cl.fd, rhead, out, out_len)
             : send_reframed(c->cl.fd, rhead, body, len);
    free(body);
    free(out);
    return rc ? -1 : 0;
}

/* One request and its response; 0 to keep the connection, -1 to close it. */
static int serve_one(conn *c)
{
    static __thread char head[HEAD_MAX], rhead[HEAD_MAX];
    size_t hn, rn;
    unsigned stall_ms, timeout_ms;
    int timed_out = 0;
    if (s_until(&c->cl, "\r\n\r\n", head, sizeof head, &hn, 0, NULL)) return -1;
    fp_fault f = pick(c->p, head, &stall_ms, &timeout_ms);
    int is_head = !strncmp(head, "HEAD ", 5);
    framing req = body_framing(head, 0, 0);
    switch (f) {
    case FP_DROP_BEFORE: count(c->p, f); return -1;
    case FP_500:
    case FP_503:
        count(c->p, f);
        if (relay_body(&c->cl, -1, req)) return -1;
        return f == FP_500
                   ? answer_error(c->cl.fd, 500, "InternalError", "injected by faultproxy")
                   : answer_error(c->cl.fd, 503, "SlowDown", "Please reduce your request rate.");
    case FP_STALL: sleep_ms(stall_ms); break;
    default: break;
    }
    if (c->up.fd < 0 && connect_upstream(c)) return -1;
    struct timeval tv = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000};
    setsockopt(c->up.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* 0: block */
    errno = 0;
    if (send_all(c->up.fd, head, hn) || relay_body(&c->cl, c->up.fd, req)) {
        timed_out = errno == EAGAIN || errno == EWOULDBLOCK;
        if (!timed_out) return -1;
    }
    if (timed_out ||
        s_until(&c->up, "\r\n\r\n", rhead, sizeof rhead, &rn, timeout_ms, &timed_out)) {
        if (!timed_out) return -1;
        /* The upstream hangs: answer as a gateway would, and forget that connection. */
        count(c->p, FP_TIMEOUT);
        shutdown(c->up.fd, SHUT_RDWR);
        answer_error(c->cl.fd, 504, "GatewayTimeout", "the store did not answer in time");
        return -1;
    }
    int status = atoi(rhead + strcspn(rhead, " "));
    framing resp =
        body_framing(rhead, 1, is_head || status / 100 == 1 || status == 204 || status == 304);
    if (f == FP_TRUNCATE && resp.chunked) { /* the head, the first chunk's size and half its data */
        char line[1024];
        size_t ln;
        unsigned long long size;
        if (s_until(&c->up, "\n", line, sizeof line, &ln, 0, NULL)) return -1;
        if ((size = strtoull(line, NULL, 16)) >= 2) {
            count(c->p, f);
            if (!send_all(c->cl.fd, rhead, rn) && !send_all(c->cl.fd, line, ln))
                s_relay(&c->up, c->cl.fd, size / 2);
            return -1;
        }
    } else if (f == FP_TRUNCATE && resp.len >= 2) {
        count(c->p, f);
        if (!send_all(c->cl.fd, rhead, rn)) s_relay(&c->up, c->cl.fd, (uint64_t)resp.len / 2);
        return -1;
    }
    if (f == FP_OVERWRITE && status == 412) { /* the object stays as it was: only the answer lies */
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                 "ETag: \"faultproxy\"\r\n\r\n";
        count(c->p, f);
        return relay_body(&c->up, -1, resp) || resp.len < 0 || send_all(c->cl.fd, ok, sizeof ok - 1)
                   ? -1
                   : 0;
    }
    if ((f == FP_NO_TOKEN || f == FP_FIRST_PAGE) && status == 200)
        return break_paging(c, f, head, rhead, resp);
    if (f == FP_REWRITE && status / 100 == 2 && resp.len != -1 && c->p->rates.rewrite) {
        count(c->p, f);
        return send_rewritten(c, rhead, resp);
    }
    if (f == FP_OVERWRITE || f == FP_NO_TOKEN || f == FP_FIRST_PAGE || f == FP_REWRITE) f = FP_NONE;
    if (f == FP_DROP_AFTER || f == FP_TRUNCATE) { /* no body to cut: drop the answer instead */
        count(c->p, FP_DROP_AFTER);
        return -1; /* the store has answered: it has done the request */
    }
    count(c->p, f);
    if (send_all(c->cl.fd, rhead, rn) || relay_body(&c->up, c->cl.fd, resp) || resp.len < 0)
        return -1;
    const char *conn_hdr = header(rhead, "Connection");
    return conn_hdr && !strncasecmp(conn_hdr, "close", 5) ? -1 : 0;
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    faultproxy *p = c->p;
    while (!serve_one(c)) {
    }
    pthread_mutex_lock(&p->mu);
    for (conn **pp = &p->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    close(c->cl.fd);
    if (c->up.fd >= 0) close(c->up.fd);
    p->n_conns--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    faultproxy *p = arg;
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), one = 1;
        pthread_t t;
        conn *c;
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break; /* the listening socket was shut down */
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!(c = calloc(1, sizeof *c))) {
            close(fd);
            continue;
        }
        c->p = c->cl.p = c->up.p = p;
        c->cl.fd = fd;
        c->up.fd = -1;
        pthread_mutex_lock(&p->mu);
        if (p->stopping || pthread_create(&t, NULL, conn_main, c)) {
            pthread_mutex_unlock(&p->mu);
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
        c->next = p->conns;
        p->conns = c;
        p->n_conns++;
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* --- the API ----------------------------------------------------------------------- */

faultproxy *fp_start(const char *upstream, uint64_t seed)
{
    faultproxy *p = calloc(1, sizeof *p);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    const char *h = upstream && !strncmp(upstream, "http://", 7) ? upstream + 7 : NULL;
    size_t hl = h ? strcspn(h, ":/") : 0;
    if (!p || !h || !hl || hl >= sizeof p->host) {
        fprintf(stderr, "faultproxy: need an http://host:port upstream, not %s\n",
                upstream ? upstream : "(none)");
        free(p);
        return NULL;
    }
    memcpy(p->host, h, hl);
    snprintf(p->port, sizeof p->port, "%.*s", h[hl] == ':' ? (int)strcspn(h + hl + 1, "/") : 2,
             h[hl] == ':' ? h + hl + 1 : "80");
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(p->lfd, 128) ||
        getsockname(p->lfd, (struct sockaddr *)&sa, &sl)) {
        perror("faultproxy: listen");
        if (p->lfd >= 0) close(p->lfd);
        free(p);
        return NULL;
    }
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%u", ntohs(sa.sin_port));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->pass = 1;
    p->seed = seed;
    p->log = getenv("FAULTPROXY_LOG") && !strcmp(getenv("FAULTPROXY_LOG"), "1");
    if (pthread_create(&p->acceptor, NULL, accept_main, p)) {
        close(p->lfd);
        free(p);
        return NULL;
    }
    return p;
}

const char *fp_url(const faultproxy *p)
{
    return p->url;
}

void fp_set(faultproxy *p, const fp_rates *rates, uint64_t seed)
{
    pthread_mutex_lock(&p->mu);
    p->pass = !rates;
    p->rates = rates ? *rates : (fp_rates){.match = NULL};
    p->seed = seed;
    p->next_req = 0;
    p->injected = 0;
    pthread_mutex_unlock(&p->mu);
}

void fp_counts(faultproxy *p, uint64_t out[FP_KINDS])
{
    pthread_mutex_lock(&p->mu);
    memcpy(out, p->counts, sizeof p->counts);
    pthread_mutex_unlock(&p->mu);
}

void fp_stop(faultproxy *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    shutdown(p->lfd, SHUT_RDWR);
    for (conn *c = p->conns; c; c = c->next) {
        shutdown(c->cl.fd, SHUT_RDWR);
        if (c->up.fd >= 0) shutdown(c->up.fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->acceptor, NULL);
    pthread_mutex_lock(&p->mu);
    while (p->n_conns)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    close(p->lfd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->idle);
    free(p->first_page);
    free(p);
}
