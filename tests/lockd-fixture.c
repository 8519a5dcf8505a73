/*
 * lockd-fixture: a real s3sync-lockd for the tests (see lockd-fixture.h): its
 * config, admin commands and devices, start and stop (every daemon started
 * is tracked, so lockd_kill_all leaves none behind), and a small HTTP client
 * for lockd's API and for the presigned URLs it hands out.
 */
#include "lockd-fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#ifndef S3SYNC_LOCKD_BIN
#error "S3SYNC_LOCKD_BIN must name the s3sync-lockd binary"
#endif

char bucket_base[256];
const char *cafile;
char state_base[256];

void write_text(const char *path, const char *fmt, ...)
{
    va_list ap;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(f), 0);
}

/* A config for the directory dir (db inside it) serving repositories
 * "NAME NAME ..." under bucket_base. */
void lockd_config(lockd_proc *p, const char *dir, const char *repos, const char *extra)
{
    char line[4096] = "", *names = strdup(repos), *save = NULL;
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    mkdir(dir, 0700);
    snprintf(p->conf, sizeof p->conf, "%s/lockd.conf", dir);
    snprintf(p->port_file, sizeof p->port_file, "%s/port", dir);
    for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save)) {
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, "repo %s = %s/%s\n", n, bucket_base, n);
    }
    free(names);
    char state[600] = "db = lockd.db\n";
    /* One machine, one clock: no skew allowance, so expiry means what it does on SQLite;
     * no caches, so what an admin command changes (a revocation) counts from the next
     * request, as on SQLite. test-lockd-replicas checks the caches' bounds. */
    if (state_base[0])
        snprintf(state, sizeof state,
                 "state = %s/%s\nstate_skew_ms = 0\nstate_head_cache_ms = 0\n"
                 "state_token_cache_ms = 0\n",
                 state_base, strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
    write_text(p->conf, "listen = 127.0.0.1:0\n%slease_ttl_min = 1\n%s%s", state, line,
               extra ? extra : "");
}

/* Run `s3sync-lockd --config CONF ARGS...`, its stdout into out. */
int admin(const lockd_proc *p, char *out, size_t cap, ...)
{
    const char *argv[16] = {S3SYNC_LOCKD_BIN, "--config", p->conf};
    int n = 3, fds[2], status = -1;
    va_list ap;
    va_start(ap, cap);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)))
        n++;
    va_end(ap);
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(S3SYNC_LOCKD_BIN, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (out && got + 1 < cap && (r = read(fds[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    if (out) {
        out[got] = '\0';
        while (got && (out[got - 1] == '\n'))
            out[--got] = '\0';
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void add_device(const lockd_proc *p, const char *name, const char *repo, int ro, char *tok)
{
    int rc = ro ? admin(p, tok, 64, "device", "add", name, "--repo", repo, "--read-only", NULL)
                : admin(p, tok, 64, "device", "add", name, "--repo", repo, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(tok), LD_TOKEN_LEN);
}

static pid_t live[8]; /* started and not yet stopped: killed at the end whatever happens */

static void track(pid_t old, pid_t new_pid)
{
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (live[i] == old) {
            live[i] = new_pid;
            return;
        }
}

void lockd_start(lockd_proc *p)
{
    char listen[64];
    const char *argv[] = {S3SYNC_LOCKD_BIN, "--config", p->conf, "--port-file",
                          p->port_file,     "--listen", listen,  NULL};
    snprintf(listen, sizeof listen, "127.0.0.1:%u", p->port);
    if (!p->keep_port || !p->port) argv[5] = NULL; /* the config's listen */
    unlink(p->port_file);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        execv(S3SYNC_LOCKD_BIN, (char *const *)argv);
        _exit(127);
    }
    track(0, p->pid);
    for (int i = 0; i < 1500; i++) { /* 30 s: an ASan build starts slower */
        FILE *f = fopen(p->port_file, "r");
        int status;
        if (f) {
            int ok = fscanf(f, "%u", &p->port) == 1;
            fclose(f);
            if (ok) return;
        }
        assert_int_equal(waitpid(p->pid, &status, WNOHANG), 0); /* it must not have died */
        usleep(20000);
    }
    fail_msg("s3sync-lockd did not start");
}

/* Stop with sig; the exit status (0..255) or 1000 + the killing signal. */
int lockd_stop(lockd_proc *p, int sig)
{
    int status = 0;
    if (p->pid <= 0) return -1;
    kill(p->pid, sig);
    waitpid(p->pid, &status, 0);
    track(p->pid, 0);
    p->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

/* --- an HTTP client ------------------------------------------------------------ */

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
    resp *r = ctx;
    char *b = realloc(r->body, r->len + sz * n + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, sz * n);
    r->body = b;
    r->len += sz * n;
    b[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
    resp *r = ctx;
    if (!strncasecmp(p, "Retry-After:", 12))
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)strcspn(p + 13, "\r\n"),
                 p + 13);
    if (!strncasecmp(p, "WWW-Authenticate:", 17)) r->www_auth = 1;
    return sz * n;
}

/* One request; `headers` NULL-terminated extra lines. */
resp http(const char *method, const char *url, const char *const *headers, const char *body)
{
    resp r = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    assert_non_null(c);
    for (; headers && *headers; headers++)
        h = curl_slist_append(h, *headers);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (cafile) curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body && r.len && r.body[0] == '{') r.json = json_loads(r.body, 0, NULL);
    return r;
}

void resp_free(resp *r)
{
    json_decref(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* A lockd call: path under the daemon, Bearer token (may be NULL), body printf-style. */
resp call(const lockd_proc *p, const char *method, const char *tok, const char *path,
          const char *fmt, ...)
{
    char url[1024], auth[128], *body = NULL;
    const char *hdrs[3] = {NULL, NULL, NULL};
    va_list ap;
    snprintf(url, sizeof url, "%s://127.0.0.1:%u%s", p->tls ? "https" : "http", p->port, path);
    if (tok) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        hdrs[0] = auth;
        hdrs[1] = "Content-Type: application/json";
    }
    if (fmt) {
        va_start(ap, fmt);
        assert_true(vasprintf(&body, fmt, ap) >= 0);
        va_end(ap);
    }
    resp r = http(method, url, hdrs, body);
    free(body);
    return r;
}

const char *jstr(const resp *r, const char *k)
{
    const char *v = json_string_value(json_object_get(r->json, k));
    return v ? v : "";
}

long long jint(const resp *r, const char *k)
{
    return json_integer_value(json_object_get(r->json, k));
}

void expect(const resp *r, long status, const char *error)
{
    if (r->status != status || (error && strcmp(jstr(r, "error"), error)))
        fail_msg("expected %ld %s, got %ld: %s", status, error ? error : "", r->status,
                 r->body ? r->body : "(no body)");
}

lease_t lease_of(const resp *r)
{
    lease_t l = {{0}, 0, 0};
    snprintf(l.id, sizeof l.id, "%s", jstr(r, "lease_id"));
    l.fencing = jint(r, "fencing_token");
    l.head = jint(r, "head");
    assert_int_equal(strlen(l.id), LD_LEASE_ID_LEN);
    assert_true(l.fencing >= 1);
    return l;
}

lease_t acquire(const lockd_proc *p, const char *tok, const char *repo, double ttl)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/lease", repo);
    resp r = call(p, "POST", tok, path, "{\"ttl\": %g}", ttl);
    expect(&r, 201, NULL);
    lease_t l = lease_of(&r);
    resp_free(&r);
    return l;
}

resp release(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/lease/%s?fencing_token=%lld", repo, l->id,
             l->fencing);
    return call(p, "DELETE", tok, path, NULL);
}

resp presign_put(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
                 long long fencing, const char *keys_json)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/presign", repo);
    return call(p, "POST", tok, path,
                "{\"op\":\"put\",\"keys\":%s,\"lease_id\":\"%s\",\"fencing_token\":%lld}",
                keys_json, l->id, fencing);
}

resp commit(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
            long long fencing, long long seq, int rel)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/commit", repo);
    return call(p, "POST", tok, path,
                "{\"lease_id\":\"%s\",\"fencing_token\":%lld,\"seq\":%lld,\"release\":%s}", l->id,
                fencing, seq, rel ? "true" : "false");
}

long long head(const lockd_proc *p, const char *tok, const char *repo)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/repos/%s/head", repo);
    resp r = call(p, "GET", tok, path, NULL);
    expect(&r, 200, NULL);
    long long h = jint(&r, "head");
    resp_free(&r);
    return h;
}

/* The value of the unlabelled counter `name` in lockd's /metrics. */
long long metric(const lockd_proc *p, const char *name)
{
    resp r = call(p, "GET", NULL, "/metrics", NULL);
    size_t n = strlen(name);
    long long v = -1;
    expect(&r, 200, NULL);
    for (const char *line = r.body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, name, n) && line[n] == ' ') v = atoll(line + n + 1);
    if (v < 0) fail_msg("no %s in /metrics:\n%s", name, r.body);
    resp_free(&r);
    return v;
}

/* The i-th URL of a presign answer (malloc'ed). */
char *url_of(const resp *r, size_t i)
{
    const char *u = json_string_value(
        json_object_get(json_array_get(json_object_get(r->json, "urls"), i), "url"));
    assert_non_null(u);
    return strdup(u);
}

/* A request to a presigned URL, straight to RGW. */
long s3_call(const char *method, const char *url, int inm, const char *body, char **ret_body)
{
    const char *hdrs[] = {inm ? "If-None-Match: *" : NULL, NULL};
    resp r = http(method, url, hdrs, body);
    long st = r.status;
    if (ret_body) {
        *ret_body = r.body;
        r.body = NULL;
    }
    resp_free(&r);
    return st;
}

void lockd_kill_all(void)
{
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}
