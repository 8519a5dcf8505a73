/*
 * s3sync: the command line. Owns arguments, folder discovery, passphrase
 * input, human and --json output, and the exit codes of DESIGN.md:
 *   0 done; 1 failed; 2 usage; 3 the store failed verification;
 *   75 temporary (store unreachable, folder or lease busy): try again later.
 * No sync logic lives here: every command is one call into core/.
 */
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "budget.h"
#include "config.h"
#include "doctor.h"
#include "history.h"
#include "listing.h"
#include "progress.h"
#include "s3sync.h"
#include "secret.h"
#include "usage.h"
#include "serve.h"
#include "watch.h"

#define EXIT_USAGE 2
#define EXIT_VERIFY 3
#define EXIT_TEMP 75

typedef struct cli {
    const char *dir; /* -C */
    int quiet, verbose, json;
    const char *endpoint;                  /* --endpoint */
    const char *pass_file;                 /* --password-file */
    const char *token_file;                /* --token-file (lockd stores) */
    const char *device;                    /* --device (init) */
    const char *label;                     /* --label (key add) */
    const char *expect_fp;                 /* --expect-fingerprint (init) */
    char fingerprint[SS_FINGERPRINT_TEXT]; /* init, key fingerprint: printed, and in --json */
    int data;                              /* --data (verify) */
    const char *at, *to;                   /* --at, --to (restore) */
    const char *keep_days, *keep_last;     /* --keep-days, --keep-last (gc) */
    int dry_run;                           /* --dry-run (gc, push, sync) */
    const char *interval;                  /* --interval (watch) */
    const char *days;                      /* --days (cost) */
    const char *max_requests;              /* --max-requests (push, pull, sync) */
    const char *command;
    int tty; /* stderr is a terminal */
    ss_store_opts store_opts;
    cli_out out;           /* progress bar and colour on stderr */
    char token_path[4096]; /* $XDG_CONFIG_HOME/s3sync/token, when it exists */
    char bad[160];         /* the first option getopt refused, and why */
    int mismatch;          /* a new passphrase typed twice differently, each try: exit 2 */
    json_t *extra;         /* owned: more fields for the --json object (device list, revoke) */
} cli;

static int exit_code(ss_rc rc)
{
    switch (rc) {
    case SS_OK: return 0;
    case SS_ERR_INTEGRITY: return EXIT_VERIFY;
    case SS_ERR_TEMPORARY: return EXIT_TEMP;
    default: return 1;
    }
}

/* The exit status of a failed command: a usage one when the two passphrases never agreed. */
static int exit_of(const cli *c, ss_rc rc)
{
    return rc && c->mismatch ? EXIT_USAGE : exit_code(rc);
}

/* --- output --------------------------------------------------------------------- */

static void on_warn(void *ctx, const char *msg)
{
    cli *c = ctx;
    if (!c->quiet) cli_out_line(&c->out, 'w', "s3sync", msg);
}

static void on_verbose(void *ctx, const char *what, const char *path)
{
    cli *c = ctx;
    char safe[CLI_SAFE_CAP];
    if (!c->verbose) return;
    cli_out_clear(&c->out);
    fprintf(stderr, "%-6s %s\n", what, cli_out_safe(safe, sizeof safe, path));
}

static void on_progress(void *ctx, const ss_progress *p)
{
    cli *c = ctx;
    cli_out_progress(&c->out, p);
}

/*
 * What to do next, for the failures where the message cannot know it:
 * appended unless the message already says it.
 */
static const char *next_step(const char *command, ss_rc rc, const char *msg)
{
    /* Only pull, sync and watch apply what they read; verify reads log/, checkpoints/, data/. */
    int applies = !strcmp(command, "pull") || !strcmp(command, "sync") || !strcmp(command, "watch");
    int verified = strstr(msg, "log/") || strstr(msg, "checkpoints/") || strstr(msg, "data/");
    if (rc == SS_ERR_TEMPORARY && !strstr(msg, "try again"))
        return " (temporary: try again later; cron can simply rerun)";
    if (rc == SS_ERR_INTEGRITY && !strstr(msg, "verify") && applies &&
        !strstr(msg, "nothing was applied"))
        return " (nothing from it was applied; s3sync verify lists every bad object)";
    if (rc == SS_ERR_INTEGRITY && !strstr(msg, "verify") && (applies || verified))
        return " (s3sync verify lists every bad object)";
    if (strstr(msg, "certificate"))
        return " (a private CA? trust it with AWS_CA_BUNDLE=FILE or CURL_CA_BUNDLE=FILE)";
    if (strstr(msg, "no device token"))
        return " (or, in this folder, s3sync config set token_file FILE)";
    return "";
}

static void error_line(cli *c, ss_rc rc, const ss_err *err)
{
    char prefix[64], text[sizeof err->msg + 128];
    const char *msg = err->msg[0] ? err->msg : ss_strerror(rc);
    snprintf(prefix, sizeof prefix, "s3sync %s", c->command);
    /* init refused a repository before making the folder: there is nothing to verify there. */
    snprintf(text, sizeof text, "%s%s", msg,
             strcmp(c->command, "init") || rc != SS_ERR_INTEGRITY ? next_step(c->command, rc, msg)
                                                                  : "");
    cli_out_line(&c->out, 'e', prefix, text);
}

static void print_json(const cli *c, const ss_stats *s, ss_rc rc, const ss_err *err)
{
    json_t *o = json_object(), *conf = json_array();
    for (size_t i = 0; i < s->n_conflicts; i++)
        json_array_append_new(conf, json_string(s->conflicts[i]));
    json_object_set_new(o, "command", json_string(c->command));
    json_object_set_new(o, "ok", json_boolean(rc == SS_OK));
    json_object_set_new(o, "seq", json_integer((json_int_t)s->seq));
    json_object_set_new(o, "files", json_integer((json_int_t)s->files));
    json_object_set_new(o, "bytes_up", json_integer((json_int_t)s->bytes_up));
    json_object_set_new(o, "bytes_down", json_integer((json_int_t)s->bytes_down));
    json_object_set_new(o, "bytes_peer", json_integer((json_int_t)s->bytes_peer));
    json_object_set_new(o, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(o, "requests_by_class", cli_requests_json(s));
    json_object_set_new(o, "retries", json_integer((json_int_t)s->retries));
    json_object_set_new(o, "conflicts", conf);
    if (c->fingerprint[0]) json_object_set_new(o, "fingerprint", json_string(c->fingerprint));
    if (c->extra) json_object_update(o, c->extra);
    if (!strcmp(c->command, "status")) {
        json_object_set_new(o, "pending_local", json_integer((json_int_t)s->pending_local));
        json_object_set_new(o, "pending_remote", json_integer((json_int_t)s->pending_remote));
        json_object_set_new(o, "withheld", json_integer((json_int_t)s->withheld));
        json_object_set_new(o, "peers", cli_json_peers(s));
    }
    if (rc) {
        json_object_set_new(o, "error", json_string(err->msg[0] ? err->msg : ss_strerror(rc)));
        json_object_set_new(o, "exit", json_integer(exit_of(c, rc)));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) puts(text);
    free(text);
    json_decref(o);
}

/*
 * Commands that move data: they alone print a summary, and only at a terminal (cron: silent).
 * init says what it did in its own words (cmd_init).
 */
static int moves_data(const char *command)
{
    return !strcmp(command, "push") || !strcmp(command, "pull") || !strcmp(command, "sync");
}

static void print_human(const cli *c, const ss_stats *s)
{
    char up[32], down[32];
    cli_out_bytes(s->bytes_up, up, sizeof up);
    cli_out_bytes(s->bytes_down, down, sizeof down);
    if (!strcmp(c->command, "status")) { /* a query: its answer, in a pipe too */
        printf("at sequence %llu; %llu local change%s to push, %llu remote transaction%s to pull\n",
               (unsigned long long)s->seq, (unsigned long long)s->pending_local,
               s->pending_local == 1 ? "" : "s", (unsigned long long)s->pending_remote,
               s->pending_remote == 1 ? "" : "s");
        if (c->verbose) cli_print_peers(s);
    } else if (moves_data(c->command) && !c->quiet && isatty(1)) {
        printf("%s: %llu path%s changed, at sequence %llu (%s up, %s down)\n", c->command,
               (unsigned long long)s->files, s->files == 1 ? "" : "s", (unsigned long long)s->seq,
               up, down);
    }
    /* -v: what it cost, for any command, on stderr so a query's answer stays clean. */
    if (c->verbose)
        fprintf(stderr, "s3sync %s: %llu request%s, %s up, %s down\n", c->command,
                (unsigned long long)s->requests, s->requests == 1 ? "" : "s", up, down);
}

static int finish(cli *c, const ss_stats *s, ss_rc rc, const ss_err *err)
{
    cli_out_clear(&c->out);
    if (rc) error_line(c, rc, err);
    if (c->json)
        print_json(c, s, rc, err);
    else if (!rc)
        print_human(c, s);
    return exit_of(c, rc);
}

/* --- commands -------------------------------------------------------------------- */

static ss_hooks hooks_for(cli *c)
{
    /* The bar's extra counting pass is made only when someone can see the bar. */
    return (ss_hooks){.warn = on_warn,
                      .verbose = on_verbose,
                      .progress = c->out.bar ? on_progress : NULL,
                      .ctx = c};
}

/*
 * The lockd token: --token-file, else the folder's token_file setting
 * (core/folder.c), else S3SYNC_TOKEN_FILE, else $XDG_CONFIG_HOME/s3sync/token
 * when it exists (the store takes the first it is given).
 */
static void choose_token_file(cli *c)
{
    c->store_opts.token_file = c->token_file;
    if (cli_xdg_config_file("token", c->token_path, sizeof c->token_path))
        c->store_opts.token_default = c->token_path;
}

typedef ss_rc (*engine_fn)(ss_folder *, ss_stats *, ss_err *);

/* A command: its name, what runs it, and for push, pull, sync and status the one core call. */
typedef struct command {
    const char *name;
    int (*run)(cli *c, const struct command *cmd, int argc, char **argv);
    engine_fn fn;
} command;

/*
 * init --token-file F: the folder's settings keep F (absolute), so the next command
 * in that folder finds its lockd token without the option.
 */
static ss_rc remember_token(const cli *c, const char *dir, ss_err *err)
{
    char abs[4096];
    if (!realpath(c->token_file, abs))
        return ss_fail(err, SS_ERR_IO, "--token-file %s: %s", c->token_file, strerror(errno));
    return ss_folder_set_setting(dir, "token_file", abs, NULL, err);
}

/* A missing bucket, named, with how to make one: init never creates buckets. */
static void no_bucket(const char *url, ss_err *err)
{
    char bucket[64];
    size_t n;
    if (!strstr(err->msg, "NoSuchBucket") || strncmp(url, "s3://", 5)) return;
    n = strcspn(url + 5, "/");
    snprintf(bucket, sizeof bucket, "%.*s", (int)(n < 63 ? n : 63), url + 5);
    ss_fail(err, SS_ERR_NOT_FOUND,
            "the bucket %s does not exist: create it first (aws s3 mb s3://%s, or the store's "
            "console), then run init again",
            bucket, bucket);
}

/* init at a prompt: a new repository's passphrase is typed twice (cli_secret_confirm). */
typedef struct init_confirm {
    cli_secret *pass;
    int mismatch;
} init_confirm;

static ss_rc confirm_new(void *ctx, size_t *passlen, ss_err *err)
{
    init_confirm *ic = ctx;
    ss_rc rc = cli_secret_confirm("Passphrase: ", ic->pass, &ic->mismatch, err);
    if (!rc) *passlen = ic->pass->len;
    return rc;
}

static void print_init(const char *store, const char *dir, int created, const ss_stats *st,
                       const char *fingerprint)
{
    char safe[CLI_SAFE_CAP];
    cli_out_safe(safe, sizeof safe, dir);
    if (created)
        printf("created a new repository at %s for %s\n", store, safe);
    else if (st->files)
        printf("joined the repository at %s; %s is now synced (%llu path%s pulled, at sequence "
               "%llu)\n",
               store, safe, (unsigned long long)st->files, st->files == 1 ? "" : "s",
               (unsigned long long)st->seq);
    else
        printf("joined the repository at %s in %s (nothing to pull yet)\n", store, safe);
    printf("repository fingerprint: %s\n", fingerprint);
}

static int cmd_init(cli *c, const command *cmd, int argc, char **argv)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    cli_secret pass = {0};
    ss_hooks h = hooks_for(c);
    int created = 0, mismatch = 0;
    ss_rc rc;
    (void)cmd;
    if (argc < 1 || argc > 2) return cli_usage("init needs STORE and at most one DIR");
    const char *dir = argc == 2 ? argv[1] : c->dir ? c->dir : ".";
    rc = cli_secret_get(c->pass_file, "Passphrase: ", 0, &pass, &mismatch, &err);
    if (!rc) {
        init_confirm ic = {&pass, 0};
        ss_init_opts o = {argv[0],
                          &c->store_opts,
                          pass.buf,
                          pass.len,
                          c->device,
                          c->expect_fp,
                          cli_secret_prompts(c->pass_file) ? confirm_new : NULL,
                          &ic};
        rc = ss_folder_init(dir, &o, &h, &f, &created, &err);
        mismatch = ic.mismatch;
    }
    cli_secret_free(&pass);
    if (rc == SS_ERR_STORE || rc == SS_ERR_NOT_FOUND) no_bucket(argv[0], &err);
    if (!rc) ss_repo_fingerprint(ss_folder_repo(f), c->fingerprint);
    if (!rc && !created) rc = ss_pull(f, &st, &err); /* a joining device starts with the files */
    if (!rc && created) ss_folder_store_stats(f, &st);
    ss_folder_free(f);
    if (!rc && c->token_file) rc = remember_token(c, dir, &err);
    if (!rc && !c->quiet && !c->json) /* the fingerprint is for checking out of band: always */
        print_init(argv[0], dir, created, &st, c->fingerprint);
    c->mismatch = mismatch;
    rc = finish(c, &st, rc, &err);
    ss_stats_clear(&st);
    return rc;
}

static ss_rc open_here(cli *c, ss_folder **ret, ss_err *err)
{
    char *dir = NULL;
    ss_hooks h = hooks_for(c);
    ss_rc rc = ss_folder_find(c->dir ? c->dir : ".", &dir, err);
    if (rc) return rc;
    rc = ss_folder_open(dir, &c->store_opts, &h, ret, err);
    free(dir);
    return rc;
}

/* --max-requests N, else the folder's max_requests: the store refuses request N+1. */
static ss_rc limit_requests(cli *c, ss_folder *f, ss_err *err)
{
    char set[32], *end = NULL;
    const char *v = c->max_requests;
    unsigned long long n;
    if (!v && ss_folder_setting(f, "max_requests", set, sizeof set)) v = set;
    if (!v) return SS_OK;
    n = strtoull(v, &end, 10);
    if (!*v || *end || *v == '-')
        return ss_fail(err, SS_ERR_INVALID, "max requests '%s': a whole number (0: no limit)", v);
    ss_folder_limit_requests(f, n);
    return SS_OK;
}

static int cmd_engine(cli *c, const command *cmd, int argc, char **argv)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_plan plan;
    ss_err err = {{0}};
    ss_rc rc;
    (void)argv;
    if (argc) return cli_usage("%s takes no arguments", c->command);
    rc = open_here(c, &f, &err);
    if (rc) goto done;
    if (strcmp(c->command, "status")) {
        rc = limit_requests(c, f, &err);
        if (rc) goto done;
    }
    if (c->dry_run) {
        rc = ss_plan_run(f, !strcmp(c->command, "sync"), &plan, &err);
        ss_folder_store_stats(f, &st);
        if (rc) goto done;
        ss_folder_free(f); /* records the dry run's own requests in .s3sync/usage */
        cli_out_clear(&c->out);
        cli_plan_print(c->command, &plan, &st, c->json);
        return 0;
    }
    rc = cmd->fn(f, &st, &err);
    if (!rc && !strcmp(c->command, "status") && (c->verbose || c->json)) /* contacts them */
        rc = ss_status_peers(f, &st, &err);
done:
    ss_folder_free(f);
    rc = finish(c, &st, rc, &err);
    ss_stats_clear(&st);
    return rc;
}

/* Revocation and rotation retire every passphrase (the thief may have seen them). */
#define NEW_EPOCH_PROMPT "New passphrase (the current ones stop working): "

static int cmd_key(cli *c, const command *cmd, int argc, char **argv)
{
    ss_folder *f = NULL;
    ss_err err = {{0}};
    ss_stats st = {0};
    cli_secret pass = {0};
    json_t *ids = NULL;
    char id[17] = "";
    ss_rc rc;
    (void)cmd;
    if (argc < 1) return cli_usage("key needs add, list, remove, rotate or fingerprint");
    if (!strcmp(argv[0], "remove") ? argc != 2 : argc != 1)
        return cli_usage("key add | key list | key remove ID | key rotate | key fingerprint");
    if (strcmp(argv[0], "add") && strcmp(argv[0], "list") && strcmp(argv[0], "remove") &&
        strcmp(argv[0], "rotate") && strcmp(argv[0], "fingerprint"))
        return cli_usage("unknown key command '%s'", argv[0]);
    if (c->label && strcmp(argv[0], "add")) return cli_usage("--label goes with key add");
    rc = open_here(c, &f, &err);
    if (rc) goto done;
    if (!strcmp(argv[0], "add")) {
        rc = cli_secret_get(c->pass_file, "New passphrase: ", 1, &pass, &c->mismatch, &err);
        if (rc) goto done;
        rc = ss_repo_key_add(ss_folder_repo(f), pass.buf, pass.len,
                             c->label ? c->label : ss_folder_device_name(f), id, &err);
        if (rc) goto done;
        if (!c->json) printf("added key %s\n", id);
    } else if (!strcmp(argv[0], "list")) {
        ids = c->json ? json_array() : NULL;
        rc = ss_repo_key_list(ss_folder_repo(f), cli_print_key, ids, &err);
    } else if (!strcmp(argv[0], "remove")) {
        rc = ss_repo_key_remove(ss_folder_repo(f), argv[1], &err);
    } else if (!strcmp(argv[0], "rotate")) {
        rc = cli_secret_get(c->pass_file, NEW_EPOCH_PROMPT, 1, &pass, &c->mismatch, &err);
        if (rc) goto done;
        rc = ss_folder_rotate(f, pass.buf, pass.len, &st, &err);
        if (!rc && !c->json)
            printf("key epoch %u began at sequence %" PRIu64 "\n", ss_folder_epoch(f), st.seq);
    } else { /* fingerprint */
        ss_repo_fingerprint(ss_folder_repo(f), c->fingerprint);
        if (!c->json) printf("%s\n", c->fingerprint);
    }
done:
    cli_secret_free(&pass);
    ss_folder_free(f);
    if (rc || !c->json) {
        json_decref(ids);
        return finish(c, &st, rc, &err);
    }
    json_t *o = json_pack("{s:s, s:b}", "command", "key", "ok", 1);
    if (ids) json_object_set_new(o, "keys", ids);
    if (id[0]) json_object_set_new(o, "added", json_string(id));
    if (c->fingerprint[0]) json_object_set_new(o, "fingerprint", json_string(c->fingerprint));
    char *text = json_dumps(o, JSON_COMPACT);
    puts(text);
    free(text);
    json_decref(o);
    return 0;
}

/* The new passphrase first: asked before anything is written. */
static ss_rc revoke_device(cli *c, ss_folder *f, const char *who, cli_secret *pass,
                           ss_device_info *gone, ss_stats *st, ss_err *err)
{
    ss_rc rc = cli_secret_get(c->pass_file, NEW_EPOCH_PROMPT, 1, pass, &c->mismatch, err);
    if (rc) return rc;
    return ss_folder_revoke(f, who, pass->buf, pass->len, gone, st, err);
}

/* device list | device revoke NAME|ID (docs/FORMAT.md "Devices and signatures"). */
/* device enrollment approve|open, device approve ID: one signed entry each. */
static ss_rc enrollment(cli *c, ss_folder *f, int argc, char **argv, ss_stats *st, ss_err *err)
{
    ss_request_info r;
    char safe[CLI_SAFE_CAP];
    ss_rc rc;
    if (!strcmp(argv[0], "approve")) {
        rc = ss_folder_approve(f, argv[1], &r, st, err);
        if (rc) return rc;
        if (c->json) c->extra = json_pack("{s:{s:s, s:s}}", "approved", "id", r.id, "name", r.name);
        if (!c->json && !c->quiet)
            printf("approved %s (%.16s): it is enrolled from sequence %" PRIu64 "\n",
                   cli_out_safe(safe, sizeof safe, r.name), r.id, st->seq);
        return SS_OK;
    }
    (void)argc;
    rc = ss_folder_set_enrollment(f, !strcmp(argv[1], "approve"), st, err);
    if (rc) return rc;
    if (c->json)
        c->extra = json_pack("{s:s}", "enrollment", ss_folder_enrollment(f) ? "approve" : "open");
    if (!c->json && !c->quiet)
        puts(ss_folder_enrollment(f)
                 ? "new devices now wait for approval (s3sync device approve ID)"
                 : "new devices now enroll themselves with their first push");
    return SS_OK;
}

static ss_rc list_devices(cli *c, ss_folder *f, ss_stats *st, ss_err *err)
{
    cli_device_out o = {0};
    char self[33];
    ss_rc rc;
    ss_folder_device_id(f, self);
    o.list = c->json ? json_array() : NULL;
    o.requests = c->json ? json_array() : NULL;
    rc = ss_folder_devices(f, cli_print_device, &o, st, err);
    if (rc) goto out;
    rc = ss_folder_requests(f, cli_print_request, &o, err);
    if (rc) goto out;
    if (!o.self_seen && !c->json && !c->quiet)
        printf("this device, %.16s, is not enrolled yet: its first push %s\n", self,
               ss_folder_enrollment(f) ? "asks for approval" : "enrolls it");
    if (o.list)
        c->extra = json_pack("{s:O, s:O, s:s, s:s}", "devices", o.list, "requests", o.requests,
                             "device_id", self, "enrollment",
                             ss_folder_enrollment(f) ? "approve" : "open");
out:
    json_decref(o.list);
    json_decref(o.requests);
    return rc;
}

/* device list | revoke NAME|ID | approve ID | enrollment approve|open (FORMAT.md). */
static int cmd_device(cli *c, const command *cmd, int argc, char **argv)
{
    static const char use[] =
        "device list | device revoke NAME|ID | device approve ID | device enrollment approve|open";
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    cli_secret pass = {0};
    ss_device_info gone;
    char safe[CLI_SAFE_CAP];
    const char *sub = argc ? argv[0] : "";
    ss_rc rc;
    (void)cmd;
    if (!strcmp(sub, "list")                                ? argc != 1
        : !strcmp(sub, "revoke") || !strcmp(sub, "approve") ? argc != 2
        : !strcmp(sub, "enrollment")
            ? argc != 2 || (strcmp(argv[1], "approve") && strcmp(argv[1], "open"))
            : 1)
        return cli_usage("%s", use);
    rc = open_here(c, &f, &err);
    if (!rc && !strcmp(sub, "list")) {
        rc = list_devices(c, f, &st, &err);
    } else if (!rc && strcmp(sub, "revoke")) {
        rc = enrollment(c, f, argc, argv, &st, &err);
    } else if (!rc) {
        rc = revoke_device(c, f, argv[1], &pass, &gone, &st, &err);
        if (!rc && gone.id[0] && c->json)
            c->extra = json_pack("{s:o}", "revoked", cli_json_device(&gone));
        if (!rc && gone.id[0] && !c->json && !c->quiet)
            printf("revoked %s (%.16s) at sequence %" PRIu64 ", where key epoch %u began: it "
                   "reads nothing written from now on, and what it signs is refused\n",
                   cli_out_safe(safe, sizeof safe, gone.name), gone.id, gone.revoked,
                   ss_folder_epoch(f));
    }
    cli_secret_free(&pass);
    ss_folder_free(f);
    rc = finish(c, &st, rc, &err);
    ss_stats_clear(&st);
    json_decref(c->extra);
    c->extra = NULL;
    return rc;
}

/* log, verify, restore: cli/history.c checks their arguments and prints their output. */
static int cmd_history(cli *c, const command *cmd, int argc, char **argv)
{
    cli_hist h = {.command = c->command,
                  .dir = c->dir,
                  .json = c->json,
                  .quiet = c->quiet,
                  .verbose = c->verbose,
                  .data = c->data,
                  .at = c->at,
                  .to = c->to,
                  .keep_days = c->keep_days,
                  .keep_last = c->keep_last,
                  .dry_run = c->dry_run};
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    const char *bad = cli_hist_parse(&h, argc, argv);
    ss_rc rc;
    (void)cmd;
    if (bad) return cli_usage("%s", bad);
    rc = open_here(c, &f, &err);
    if (rc) goto done;
    rc = cli_hist_run(&h, f, &err);
done:
    ss_folder_free(f);
    if (!rc || h.printed) return exit_code(rc);
    return finish(c, &st, rc, &err);
}

/* config: cli/config.c reads and writes the folder's settings. */
static int cmd_config(cli *c, const command *cmd, int argc, char **argv)
{
    cli_config cc = {.dir = c->dir,
                     .json = c->json,
                     .quiet = c->quiet,
                     .out = &c->out,
                     .store_opts = &c->store_opts};
    (void)cmd;
    return cli_config_run(&cc, argc, argv);
}

/* cost: cli/budget.c sums the folder's usage and prices it. */
static int cmd_cost(cli *c, const command *cmd, int argc, char **argv)
{
    cli_cost cc = {.dir = c->dir, .days = c->days, .json = c->json, .out = &c->out};
    (void)cmd;
    (void)argv;
    return argc ? cli_usage("cost takes no arguments but --days N") : cli_cost_run(&cc, argc);
}

/* doctor: cli/doctor.c runs the checks and prints them. */
static int cmd_doctor(cli *c, const command *cmd, int argc, char **argv)
{
    cli_doctor d = {.dir = c->dir,
                    .json = c->json,
                    .quiet = c->quiet,
                    .out = &c->out,
                    .store_opts = &c->store_opts};
    const char *bad = cli_doctor_check(argc);
    (void)cmd;
    return bad ? cli_usage("%s", bad) : cli_doctor_run(&d, argc, argv);
}

/* watch: cli/watch.c runs the loop and prints its own events. */
static int cmd_watch(cli *c, const command *cmd, int argc, char **argv)
{
    cli_watch w = {.dir = c->dir,
                   .store_opts = &c->store_opts,
                   .hooks = hooks_for(c),
                   .quiet = c->quiet,
                   .verbose = c->verbose,
                   .json = c->json,
                   .interval = c->interval};
    const char *bad = cli_watch_check(&w, argc);
    (void)cmd;
    (void)argv;
    return bad ? cli_usage("%s", bad) : cli_watch_run(&w);
}

/* serve: cli/serve.c listens and loops; --interval is the time between pulls. */
static int cmd_serve(cli *c, const command *cmd, int argc, char **argv)
{
    cli_serve s = {.dir = c->dir,
                   .store_opts = &c->store_opts,
                   .hooks = hooks_for(c),
                   .quiet = c->quiet,
                   .verbose = c->verbose,
                   .json = c->json,
                   .interval = c->interval};
    const char *bad = cli_serve_check(&s, argc);
    (void)cmd, (void)argv;
    return bad ? cli_usage("%s", bad) : cli_serve_run(&s);
}

/* --- arguments ------------------------------------------------------------------- */

static int parse(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"endpoint", required_argument, NULL, 'e'},
                                         {"password-file", required_argument, NULL, 'p'},
                                         {"device", required_argument, NULL, 'd'},
                                         {"label", required_argument, NULL, 'l'},
                                         {"token-file", required_argument, NULL, 't'},
                                         {"expect-fingerprint", required_argument, NULL, 'F'},
                                         {"data", no_argument, NULL, 'D'},
                                         {"at", required_argument, NULL, 'a'},
                                         {"to", required_argument, NULL, 'T'},
                                         {"interval", required_argument, NULL, 'I'},
                                         {"profile", required_argument, NULL, 'P'},
                                         {"keep-days", required_argument, NULL, 'K'},
                                         {"keep-last", required_argument, NULL, 'L'},
                                         {"dry-run", no_argument, NULL, 'N'},
                                         {"days", required_argument, NULL, 'y'},
                                         {"max-requests", required_argument, NULL, 'M'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":C:qvh", opts, NULL)) != -1) {
        switch (o) {
        case 'C': c->dir = optarg; break;
        case 'q': c->quiet = 1; break;
        case 'v': c->verbose = 1; break;
        case 'j': c->json = cli_usage_json = 1; break;
        case 'P': c->store_opts.profile = optarg; break;
        case 'e': c->endpoint = optarg; break;
        case 'p': c->pass_file = optarg; break;
        case 't': c->token_file = optarg; break;
        case 'd': c->device = optarg; break;
        case 'l': c->label = optarg; break;
        case 'F': c->expect_fp = optarg; break;
        case 'D': c->data = 1; break;
        case 'a': c->at = optarg; break;
        case 'T': c->to = optarg; break;
        case 'I': c->interval = optarg; break;
        case 'K': c->keep_days = optarg; break;
        case 'L': c->keep_last = optarg; break;
        case 'N': c->dry_run = 1; break;
        case 'y': c->days = optarg; break;
        case 'M': c->max_requests = optarg; break;
        case 'V':
            printf("s3sync %s (repository format %u)\n", S3SYNC_VERSION, SS_FORMAT_VERSION);
            exit(0);
        case 'h': fputs(cli_usage_text, stdout); exit(0);
        default: /* opterr 0: our one line names it, after --json is known */
            if (!c->bad[0])
                snprintf(c->bad, sizeof c->bad,
                         o == ':' ? "option '%s' needs a value" : "unknown option '%s'",
                         argv[optind - 1]);
            break;
        }
    }
    if (c->quiet && c->verbose && !c->bad[0])
        snprintf(c->bad, sizeof c->bad, "-q and -v exclude each other");
    if (c->bad[0]) return -1;
    return optind;
}

/* Every command s3sync takes; the history commands are cli/history.c's. */
static const command commands[] = {
    {"init", cmd_init, NULL},          {"push", cmd_engine, ss_push},
    {"pull", cmd_engine, ss_pull},     {"sync", cmd_engine, ss_sync},
    {"status", cmd_engine, ss_status}, {"key", cmd_key, NULL},
    {"device", cmd_device, NULL},      {"log", cmd_history, NULL},
    {"verify", cmd_history, NULL},     {"restore", cmd_history, NULL},
    {"checkpoint", cmd_history, NULL}, {"gc", cmd_history, NULL},
    {"watch", cmd_watch, NULL},        {"config", cmd_config, NULL},
    {"doctor", cmd_doctor, NULL},      {"cost", cmd_cost, NULL},
    {"serve", cmd_serve, NULL},
};

int main(int argc, char **argv)
{
    cli c = {0};
    int first;
    if (sodium_init() < 0) {
        fputs("s3sync: libsodium failed to initialise\n", stderr);
        return 1;
    }
    first = parse(&c, argc, argv);
    if (first < 0) return cli_usage("%s", c.bad);
    if (first >= argc) return cli_usage("no command");
    /* getopt permuted the options first: options may stand anywhere (s3sync push --json). */
    c.command = argv[first];
    c.store_opts.endpoint = c.endpoint;
    choose_token_file(&c);
    c.tty = isatty(2);
    /* watch prints its own events; a bar there would stand between them. */
    cli_out_init(&c.out, c.tty, c.quiet || !strcmp(c.command, "watch"));
    argc -= first + 1;
    argv += first + 1;
    if ((c.data || c.at || c.to || c.keep_days || c.keep_last) && !cli_hist_is(c.command))
        return cli_usage("--data, --at, --to, --keep-days and --keep-last go with "
                         "verify, restore and gc");
    if (c.dry_run && !cli_hist_is(c.command) && strcmp(c.command, "push") &&
        strcmp(c.command, "sync"))
        return cli_usage("--dry-run goes with push, sync and gc");
    if (c.interval && strcmp(c.command, "watch") && strcmp(c.command, "serve"))
        return cli_usage("--interval goes with watch and serve");
    if (c.days && strcmp(c.command, "cost")) return cli_usage("--days goes with cost");
    if (c.max_requests && strcmp(c.command, "push") && strcmp(c.command, "pull") &&
        strcmp(c.command, "sync"))
        return cli_usage("--max-requests goes with push, pull and sync");
    if (c.expect_fp && strcmp(c.command, "init"))
        return cli_usage("--expect-fingerprint goes with init");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(c.command, commands[i].name))
            return commands[i].run(&c, &commands[i], argc, argv);
    return cli_usage("unknown command '%s'", c.command);
}
