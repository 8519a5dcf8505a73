/*
 * main.c: the s3sync-lockd command: arguments, the admin commands that work
 * on the database without a server (device add/list/revoke, repo add/list/rewind),
 * and the server's life: open the db, open each repository's store,
 * reconcile head with the bucket, listen, wait for SIGTERM or SIGINT, stop.
 *
 * Exit codes: 0 done, 1 failed, 2 usage.
 */
#include "lockd.h"
#include "ld_state.h"
#include "array.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef S3SYNC_VERSION
#define S3SYNC_VERSION "dev"
#endif

static const char usage_text[] =
    "usage: s3sync-lockd --config FILE [--state SPEC] [--listen ADDR:PORT] [--port-file FILE]\n"
    "       s3sync-lockd (--config FILE | --state SPEC | --db FILE) COMMAND\n"
    "SPEC: sqlite:PATH (--db PATH) or s3://BUCKET/PREFIX\n"
    "commands (on the state; the server need not run):\n"
    "  device add NAME --repo REPO [--read-only]   print the new device's token, once\n"
    "  device list\n"
    "  device revoke NAME\n"
    "  repo add NAME s3://BUCKET/PREFIX\n"
    "  repo list\n"
    "  repo rewind NAME SEQ                         head back to SEQ; deletes log/, data/ and\n"
    "                                               checkpoints/ above it from the bucket\n"
    "  migrate s3://BUCKET/PREFIX                   copy this SQLite state into a bucket state\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static int fail(const char *what, const ss_err *err)
{
    fprintf(stderr, "s3sync-lockd: %s%s%s\n", what, err && err->msg[0] ? ": " : "",
            err ? err->msg : "");
    return 1;
}

/* --- admin commands -------------------------------------------------------- */

static int print_device(void *ctx, const ld_device *d)
{
    char when[32] = "";
    time_t t = (time_t)(d->created_ms / 1000);
    struct tm tm;
    (void)ctx;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-24s %-24s %-10s %-8s %s\n", d->name, d->repo,
           d->read_only ? "read-only" : "read-write", d->revoked ? "revoked" : "active", when);
    return 0;
}

static int print_repo(void *ctx, const ld_repo_row *r)
{
    (void)ctx;
    printf("%-24s %-12llu %s%s\n", r->name, (unsigned long long)r->head, r->url,
           r->dirty ? "  (reconciles on next lease)" : "");
    return 0;
}

static int repo_known(ld_state *st, const char *name)
{
    ld_record r;
    ss_err err = {{0}};
    return ld_state_read(st, name, 1, &r, &err) == SS_OK;
}

static int cmd_device(ld_state *st, int argc, char **argv)
{
    ss_err err = {{0}};
    if (argc >= 2 && !strcmp(argv[1], "add")) {
        const char *name = argc > 2 ? argv[2] : NULL, *repo = NULL;
        int ro = 0;
        unsigned char secret[LD_SECRET_LEN];
        ld_device d = {0};
        char token[LD_TOKEN_LEN + 1];
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--repo") && i + 1 < argc)
                repo = argv[++i];
            else if (!strcmp(argv[i], "--read-only"))
                ro = 1;
            else
                return usage();
        }
        if (!name || !repo) return usage();
        if (!ld_name_ok(name) || !ld_name_ok(repo)) {
            fprintf(stderr,
                    "s3sync-lockd: names are 1..64 of [A-Za-z0-9._-], not starting with '.'\n");
            return 2;
        }
        if (!repo_known(st, repo))
            fprintf(stderr,
                    "s3sync-lockd: warning: repository %s is not known yet (add it to the "
                    "config or with 'repo add')\n",
                    repo);
        if (ld_state_secret(st, secret, &err)) return fail("device add", &err);
        ld_auth_token_new(token);
        ld_auth_hash(secret, token, d.hash);
        sodium_memzero(secret, sizeof secret);
        snprintf(d.name, sizeof d.name, "%s", name);
        snprintf(d.repo, sizeof d.repo, "%s", repo);
        d.read_only = ro;
        d.created_ms = ld_clock_real.now_ms(ld_clock_real.ctx);
        if (ld_state_device_add(st, &d, &err)) return fail("device add", &err);
        /* The only time the token exists outside the device: the db keeps its hash. */
        printf("%s\n", token);
        sodium_memzero(token, sizeof token);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "list")) {
        printf("%-24s %-24s %-10s %-8s %s\n", "NAME", "REPO", "MODE", "STATUS", "CREATED");
        return ld_state_device_list(st, print_device, NULL, &err) ? fail("device list", &err) : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "revoke"))
        return ld_state_device_revoke(st, argv[2], &ld_clock_real, &err)
                   ? fail("device revoke", &err)
                   : 0;
    return usage();
}

/* repo rewind NAME SEQ */
static int cmd_rewind(const ld_config *cfg, ld_state *st, const char *name, const char *seq_text)
{
    ss_err err = {{0}};
    char *end = NULL;
    unsigned long long seq;
    errno = 0;
    seq = strtoull(seq_text, &end, 10);
    if (!ld_name_ok(name) || !*seq_text || *seq_text == '-' || *end || errno || seq > INT64_MAX) {
        fprintf(stderr, "s3sync-lockd: repo rewind NAME SEQ (SEQ a sequence number, 0 or more)\n");
        return 2;
    }
    if (ld_rewind(cfg, st, name, (uint64_t)seq, stdout, &err)) return fail("repo rewind", &err);
    return 0;
}

static int cmd_repo(const ld_config *cfg, ld_state *st, int argc, char **argv)
{
    ss_err err = {{0}};
    int changed = 0;
    if (argc == 4 && !strcmp(argv[1], "rewind")) return cmd_rewind(cfg, st, argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "add")) {
        if (!ld_name_ok(argv[2]) || strncmp(argv[3], "s3://", 5)) {
            fprintf(stderr, "s3sync-lockd: repo add NAME s3://BUCKET/PREFIX\n");
            return 2;
        }
        if (ld_state_repo_put(st, argv[2], argv[3], &changed, &err)) return fail("repo add", &err);
        if (changed)
            fprintf(stderr,
                    "s3sync-lockd: repository %s moved to %s: head reconciles from the "
                    "bucket at the next start\n",
                    argv[2], argv[3]);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "list")) {
        printf("%-24s %-12s %s\n", "NAME", "HEAD", "URL");
        return ld_state_repo_list(st, print_repo, NULL, &err) ? fail("repo list", &err) : 0;
    }
    return usage();
}

/* migrate s3://BUCKET/PREFIX: this SQLite state copied into a new bucket state, its token
 * secret with it, so every device token keeps working when the config's state moves there. */
static int cmd_migrate(const ld_config *cfg, ld_state *from, int argc, char **argv)
{
    ld_config to_cfg = *cfg;
    ld_state *to = NULL;
    unsigned char secret[LD_SECRET_LEN];
    ss_err err = {{0}};
    int status = 1;
    if (argc != 2 || (strncmp(argv[1], "s3://", 5) && strncmp(argv[1], "file://", 7)))
        return usage();
    if (strcmp(ld_state_scheme(from), "sqlite")) {
        fprintf(stderr, "s3sync-lockd: migrate: the state to copy from must be sqlite:, not %s\n",
                ld_state_scheme(from));
        return 2;
    }
    if (ld_state_secret(from, secret, &err)) return fail("migrate", &err);
    to_cfg.state = argv[1];
    if (ld_state_open_with_secret(&to_cfg, &ld_clock_real, secret, &to, &err) ||
        ld_state_migrate(from, to, stdout, &err))
        fail("migrate", &err);
    else
        status = 0;
    sodium_memzero(secret, sizeof secret);
    ld_state_close(to);
    return status;
}

/* --- the server ------------------------------------------------------------------ */

typedef struct open_ctx {
    const ld_config *cfg;
    ld_state *state;
    ld_leases *leases;
    ss_rc rc;
    ss_err err;
    char (*prefixes)[LD_URL_MAX];
    size_t n, cap;
    ld_repo_row *rows;
    size_t n_rows, cap_rows;
} open_ctx;

/* "BUCKET/PREFIX/" of an s3:// URL, for the overlap check. */
static void location(const char *url, char out[LD_URL_MAX])
{
    const char *p = url + 5;
    size_t n = strlen(p);
    while (n && p[n - 1] == '/')
        n--;
    snprintf(out, LD_URL_MAX, "%.*s/", (int)n, p);
}

/* Copies the rows: the db holds its mutex during a list, and opening or
 * reconciling a repository uses the db again. */
static int collect_repo(void *vctx, const ld_repo_row *r)
{
    open_ctx *c = vctx;
    if (SS_ARRAY_GROW(c->rows, c->n_rows + 1, c->cap_rows)) {
        c->rc = ss_fail(&c->err, SS_ERR_NOMEM, "out of memory");
        return 1;
    }
    c->rows[c->n_rows++] = *r;
    return 0;
}

static int open_repo(open_ctx *c, const ld_repo_row *r)
{
    ss_store_opts o;
    ss_store *store = NULL;
    char loc[LD_URL_MAX];
    if (strncmp(r->url, "s3://", 5)) {
        c->rc = ss_fail(&c->err, SS_ERR_INVALID, "repository %s: %s is not s3://", r->name, r->url);
        return 1;
    }
    /* Nested prefixes would let one repository's devices read another's objects. */
    location(r->url, loc);
    for (size_t i = 0; i < c->n; i++)
        if (!strncmp(c->prefixes[i], loc, strlen(loc)) ||
            !strncmp(loc, c->prefixes[i], strlen(c->prefixes[i]))) {
            c->rc =
                ss_fail(&c->err, SS_ERR_INVALID,
                        "repository %s (%s) overlaps another repository's prefix", r->name, r->url);
            return 1;
        }
    if (SS_ARRAY_GROW(c->prefixes, c->n + 1, c->cap)) {
        c->rc = ss_fail(&c->err, SS_ERR_NOMEM, "out of memory");
        return 1;
    }
    memcpy(c->prefixes[c->n++], loc, sizeof loc);
    ld_config_store_opts(c->cfg, &o);
    c->rc = ss_store_open(r->url, &o, &store, &c->err);
    if (c->rc) return 1;
    c->rc = ld_leases_add_repo(c->leases, r->name, store, &c->err);
    if (c->rc) return 1;
    return 0;
}

static void reconcile(open_ctx *c, const ld_repo_row *r)
{
    ld_outcome o;
    uint64_t head = 0;
    ss_err err = {{0}};
    if (ld_lease_reconcile(c->leases, r->name, &head, &o)) {
        /* Serve anyway (head reads stay cheap); no lease is granted on this
         * repository before a reconciliation succeeds (lease.c invariant 5). */
        fprintf(stderr, "s3sync-lockd: warning: %s: reconcile with the bucket failed: %s\n",
                r->name, o.err.msg);
        if (ld_state_mark_dirty(c->state, r->name, &ld_clock_real, &err))
            fprintf(stderr, "s3sync-lockd: %s: %s\n", r->name, err.msg);
        return;
    }
    if (head != r->head)
        fprintf(stderr, "s3sync-lockd: %s: head %llu -> %llu from the bucket\n", r->name,
                (unsigned long long)r->head, (unsigned long long)head);
}

static ss_rc write_port_file(const char *path, unsigned port, ss_err *err)
{
    char *tmp = NULL;
    FILE *f;
    if (asprintf(&tmp, "%s.tmp", path) < 0) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    if (!(f = fopen(tmp, "w")) || fprintf(f, "%u\n", port) < 0 || fclose(f) || rename(tmp, path)) {
        ss_rc rc = ss_fail(err, SS_ERR_IO, "port file %s: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    free(tmp);
    return SS_OK;
}

/* The config's repositories into the db, so the server and the admin
 * commands see the same set. */
static int sync_repos(const ld_config *cfg, ld_state *st)
{
    ss_err err = {{0}};
    int changed = 0;
    for (size_t i = 0; i < cfg->n_repos; i++) {
        if (ld_state_repo_put(st, cfg->repos[i].name, cfg->repos[i].url, &changed, &err))
            return fail("repository", &err);
        if (changed)
            fprintf(stderr, "s3sync-lockd: %s moved to %s: head comes from the bucket\n",
                    cfg->repos[i].name, cfg->repos[i].url);
    }
    return 0;
}

static int serve(ld_config *cfg, ld_state *st, const char *port_file)
{
    ld_metrics *metrics = NULL;
    ld_leases *leases = NULL;
    ld_server *server = NULL;
    open_ctx oc = {.cfg = cfg, .state = st};
    ld_lease_limits lim = {cfg->ttl_min_ms, cfg->ttl_max_ms};
    sigset_t stop;
    unsigned port = 0;
    int sig = 0, status = 1;
    ss_err err = {{0}};

    /* Block the stop signals before any thread exists, so every thread
     * inherits the mask and only sigwait below sees them. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (ld_metrics_new(&metrics, &err) || ld_leases_new(st, NULL, metrics, &lim, &leases, &err)) {
        fail("start", &err);
        goto out;
    }
    oc.leases = leases;
    if (ld_state_repo_list(st, collect_repo, &oc, &err) || oc.rc) {
        fail("repository", oc.rc ? &oc.err : &err);
        goto out;
    }
    for (size_t i = 0; i < oc.n_rows; i++)
        if (open_repo(&oc, &oc.rows[i])) {
            fail("repository", &oc.err);
            goto out;
        }
    for (size_t i = 0; i < oc.n_rows; i++)
        reconcile(&oc, &oc.rows[i]);
    ld_server_ctx sc = {cfg, st, leases, metrics};
    if (ld_http_start(&sc, &server, &port, &err)) {
        fail("listen", &err);
        goto out;
    }
    if (port_file && write_port_file(port_file, port, &err)) {
        fail("start", &err);
        goto out;
    }
    fprintf(stderr, "s3sync-lockd %s: %s on %s, port %u, %zu repositories, state %s\n",
            S3SYNC_VERSION, cfg->cert ? "https" : "http",
            cfg->listen ? cfg->listen : "127.0.0.1:8443", port, oc.n, ld_state_scheme(st));
    while (sigwait(&stop, &sig) == 0 && sig != SIGTERM && sig != SIGINT)
        ;
    fprintf(stderr, "s3sync-lockd: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
out:
    ld_http_stop(server); /* waits for the requests in flight */
    ld_leases_free(leases);
    ld_metrics_free(metrics);
    free(oc.prefixes);
    free(oc.rows);
    return status;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *db_path = NULL, *state = NULL, *listen = NULL;
    const char *port_file = NULL;
    ld_config cfg;
    ld_state *st = NULL;
    ss_err err = {{0}};
    int i, status = 1;

    ld_config_defaults(&cfg);
    if (argc < 2) return usage();
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--config")      ? &config_path
                           : !strcmp(a, "--db")        ? &db_path
                           : !strcmp(a, "--state")     ? &state
                           : !strcmp(a, "--listen")    ? &listen
                           : !strcmp(a, "--port-file") ? &port_file
                                                       : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf("s3sync-lockd %s\n", S3SYNC_VERSION);
            return 0;
        }
        if (!dst || i + 1 >= argc) return usage();
        *dst = argv[++i];
    }
    if (config_path && ld_config_load(config_path, &cfg, &err)) {
        status = fail(err.msg, NULL);
        goto out;
    }
    if (db_path || state) {
        free(cfg.state);
        cfg.state = NULL;
        if (state)
            cfg.state = strdup(state);
        else if (asprintf(&cfg.state, "sqlite:%s", db_path) < 0)
            cfg.state = NULL;
    }
    if (listen) {
        free(cfg.listen);
        cfg.listen = strdup(listen);
    }
    if (!cfg.state) {
        fprintf(stderr, "s3sync-lockd: no state: give --state SPEC (or --db FILE), or state = "
                        "SPEC in the config\n");
        status = 2;
        goto out;
    }
    if (i == argc && !config_path) {
        status = usage();
        goto out;
    }
    if (ld_state_open(&cfg, &ld_clock_real, &st, &err)) {
        status = fail("state", &err);
        goto out;
    }
    if (sync_repos(&cfg, st))
        status = 1;
    else if (i == argc)
        status = serve(&cfg, st, port_file);
    else if (!strcmp(argv[i], "device"))
        status = cmd_device(st, argc - i, argv + i);
    else if (!strcmp(argv[i], "repo"))
        status = cmd_repo(&cfg, st, argc - i, argv + i);
    else if (!strcmp(argv[i], "migrate"))
        status = cmd_migrate(&cfg, st, argc - i, argv + i);
    else
        status = usage();
out:
    ld_state_close(st);
    ld_config_clear(&cfg);
    return status;
}
