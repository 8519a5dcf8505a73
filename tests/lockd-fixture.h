/*
 * lockd-fixture.h: a real s3sync-lockd (S3SYNC_LOCKD_BIN) for tests that talk
 * to it over HTTP, against the RGW bucket the test names in bucket_base:
 * config, devices, start and stop, and an HTTP client with lockd's calls
 * (each failure is a cmocka failure). Used by test-lockd-http.c.
 */
#ifndef SS_LOCKD_FIXTURE_H
#define SS_LOCKD_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>
#include <jansson.h>

#include "lockd.h"

/* s3://BUCKET/PREFIX the repositories of lockd_config live under: the test sets it. */
extern char bucket_base[256];
/* The CA file http() trusts (a TLS test's own), NULL for the system's. */
extern const char *cafile;
/* "" for SQLite states (each config's lockd.db), or s3://BUCKET/PREFIX: each config
 * directory's daemons keep their state at PREFIX/<the directory's name> (issue 19). */
extern char state_base[256];

typedef struct lockd_proc {
    pid_t pid;
    unsigned port;
    int tls;
    int keep_port; /* restart on the port it had (replicas behind one list of URLs) */
    char dir[512], conf[600], port_file[600];
} lockd_proc;

void write_text(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A config for the directory dir (db inside it, or the state state_base names)
 * serving repositories "NAME NAME ..." under bucket_base, with extra lines appended. */
void lockd_config(lockd_proc *p, const char *dir, const char *repos, const char *extra);
/* Run `s3sync-lockd --config CONF ARGS... NULL`, its stdout into out; its exit status. */
int admin(const lockd_proc *p, char *out, size_t cap, ...);
/* `device add NAME --repo REPO [--read-only]`; the token into tok (LD_TOKEN_LEN + 1). */
void add_device(const lockd_proc *p, const char *name, const char *repo, int ro, char *tok);
/* Start the daemon on a free port (p->port; with keep_port the one it had) and wait
 * until it listens. */
void lockd_start(lockd_proc *p);
/* Stop with sig; the exit status (0..255) or 1000 + the killing signal. */
int lockd_stop(lockd_proc *p, int sig);
/* SIGKILL every daemon started and not stopped (what failed tests left running). */
void lockd_kill_all(void);

typedef struct resp {
    long status;
    json_t *json;
    char *body;
    size_t len;
    char retry_after[32];
    int www_auth;
} resp;

/* One request; `headers` NULL-terminated extra lines. */
resp http(const char *method, const char *url, const char *const *headers, const char *body);
void resp_free(resp *r);
/* A lockd call: path under the daemon, Bearer token (may be NULL), body printf-style. */
resp call(const lockd_proc *p, const char *method, const char *tok, const char *path,
          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
const char *jstr(const resp *r, const char *k);
long long jint(const resp *r, const char *k);
/* Fail unless r has status (and, when error is not NULL, that "error" code). */
void expect(const resp *r, long status, const char *error);

typedef struct lease_t {
    char id[LD_LEASE_ID_LEN + 1];
    long long fencing, head;
} lease_t;

lease_t lease_of(const resp *r); /* of a 201 answer to POST .../lease */
lease_t acquire(const lockd_proc *p, const char *tok, const char *repo, double ttl);
resp release(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l);
resp presign_put(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
                 long long fencing, const char *keys_json);
resp commit(const lockd_proc *p, const char *tok, const char *repo, const lease_t *l,
            long long fencing, long long seq, int rel);
long long head(const lockd_proc *p, const char *tok, const char *repo);
/* The value of the unlabelled counter `name` in lockd's /metrics. */
long long metric(const lockd_proc *p, const char *name);
/* The i-th URL of a presign answer (malloc'ed). */
char *url_of(const resp *r, size_t i);
/* A request to a presigned URL, straight to RGW: its status, the body into *ret_body. */
long s3_call(const char *method, const char *url, int inm, const char *body, char **ret_body);

#endif
