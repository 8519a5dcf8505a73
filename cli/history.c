/*
 * history: s3sync log, verify, restore, checkpoint and gc (see cli-history.h). Arguments,
 * times and output only; the work is core/history.h's.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "budget.h"
#include "progress.h"
#include "s3sync.h"

static ss_rc run_log(cli_hist *h, ss_folder *f, ss_err *err);
static ss_rc run_verify(cli_hist *h, ss_folder *f, ss_err *err);
static ss_rc run_restore(cli_hist *h, ss_folder *f, ss_err *err);
static ss_rc run_checkpoint(cli_hist *h, ss_folder *f, ss_err *err);
static ss_rc run_gc(cli_hist *h, ss_folder *f, ss_err *err);

/* The history commands and what runs each. */
static const struct {
    const char *name;
    ss_rc (*run)(cli_hist *h, ss_folder *f, ss_err *err);
} hist_commands[] = {
    {"log", run_log},         {"verify", run_verify},
    {"restore", run_restore}, {"checkpoint", run_checkpoint},
    {"gc", run_gc},
};
#define N_HIST (sizeof hist_commands / sizeof hist_commands[0])

int cli_hist_is(const char *command)
{
    for (size_t i = 0; i < N_HIST; i++)
        if (!strcmp(command, hist_commands[i].name)) return 1;
    return 0;
}

/* --- arguments ------------------------------------------------------------------------ */

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* YYYY-MM-DD[THH:MM[:SS]] in local time ('T' or ' '). */
static int parse_date(const char *s, int64_t *ret)
{
    struct tm tm = {0}, want;
    int n = 0, len = (int)strlen(s);
    time_t t;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
        return -1;
    if (len > 10) {
        int m = 0;
        if ((s[10] != 'T' && s[10] != ' ') ||
            sscanf(s + 11, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &m) != 2 || m != 5)
            return -1;
        if (len > 16 && (sscanf(s + 16, ":%2d%n", &tm.tm_sec, &m) != 1 || m != 3 || len != 19))
            return -1;
        if (len != 16 && len != 19) return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    want = tm;
    if ((t = mktime(&tm)) == (time_t)-1) return -1;
    /* mktime normalises 2026-02-30 to March: refuse what was not a real date */
    if (tm.tm_year != want.tm_year || tm.tm_mon != want.tm_mon || tm.tm_mday != want.tm_mday ||
        tm.tm_min != want.tm_min || tm.tm_sec != want.tm_sec)
        return -1;
    *ret = (int64_t)t;
    return 0;
}

static const char *parse_at(cli_hist *h)
{
    const char *at = h->at;
    if (at[0] == '@' && all_digits(at + 1)) {
        errno = 0;
        h->at_time = (int64_t)strtoll(at + 1, NULL, 10);
        h->by_time = 1;
        return errno ? "--at @SECONDS is out of range" : NULL;
    }
    if (all_digits(at)) {
        errno = 0;
        h->at_seq = strtoull(at, NULL, 10);
        return errno || !h->at_seq ? "--at SEQ: sequences start at 1" : NULL;
    }
    if (!parse_date(at, &h->at_time)) {
        h->by_time = 1;
        return NULL;
    }
    return "--at takes a sequence, @UNIX-SECONDS or YYYY-MM-DD[THH:MM[:SS]] (local time)";
}

/* gc's options; NULL when they are fine. */
static const char *parse_gc(cli_hist *h, int argc)
{
    const char *n = h->keep_last ? h->keep_last : h->keep_days;
    int gc = !strcmp(h->command, "gc");
    if ((h->keep_days || h->keep_last) && !gc) return "--keep-days and --keep-last go with gc";
    if (h->dry_run && !gc) return "--dry-run goes with push, sync and gc"; /* as cmd_engine says */
    if (!gc) return NULL;
    if (argc) return "gc takes no arguments but its options";
    if (h->keep_days && h->keep_last) return "give --keep-days or --keep-last, not both";
    h->keep = SS_GC_KEEP_DAYS_DEFAULT;
    if (!n) return NULL;
    if (!all_digits(n) || strlen(n) > 9) return "--keep-days and --keep-last take a number";
    h->keep = strtoull(n, NULL, 10);
    if (h->keep_last && !h->keep) return "--keep-last must be at least 1";
    return NULL;
}

const char *cli_hist_parse(cli_hist *h, int argc, char **argv)
{
    int restore = !strcmp(h->command, "restore");
    const char *bad = parse_gc(h, argc);
    if (bad) return bad;
    if (!strcmp(h->command, "gc")) return NULL;
    if (!strcmp(h->command, "checkpoint")) return argc ? "checkpoint takes no arguments" : NULL;
    if (h->data && strcmp(h->command, "verify")) return "--data goes with verify";
    if ((h->at || h->to) && !restore) return "--at and --to go with restore";
    if (!strcmp(h->command, "log")) {
        if (argc > 1) return "log takes at most one PATH";
    } else if (!strcmp(h->command, "verify")) {
        if (argc) return "verify takes no arguments but --data";
    } else if (argc != 1) {
        return "restore needs exactly one PATH";
    }
    h->path = argc ? argv[0] : NULL;
    if (h->path && !*h->path) return "PATH is empty";
    if (h->to && !*h->to) return "--to DEST is empty";
    return h->at ? parse_at(h) : NULL;
}

/* A relative PATH or DEST from -C DIR, as git -C does. *ret owned. */
static ss_rc from_dir(const cli_hist *h, const char *p, char **ret, ss_err *err)
{
    if (p[0] == '/' || !h->dir)
        *ret = strdup(p);
    else if (asprintf(ret, "%s/%s", h->dir, p) < 0)
        *ret = NULL;
    return *ret ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
}

/* --- output --------------------------------------------------------------------------- */

static void human_bytes(char *buf, size_t cap, uint64_t n)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = -1;
    if (n < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", n);
        return;
    }
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

/* Local time: "2026-11-25 16:50:07", or ISO 8601 with its offset for --json. */
static void local_time(char *buf, size_t cap, uint64_t time_ns, int iso)
{
    time_t t = (time_t)(time_ns / 1000000000u);
    struct tm tm;
    size_t n;
    localtime_r(&t, &tm);
    n = strftime(buf, cap, iso ? "%Y-%m-%dT%H:%M:%S%z" : "%Y-%m-%d %H:%M:%S", &tm);
    if (iso && n == 24 && cap > 25) { /* +0100 -> +01:00 */
        memmove(buf + 23, buf + 22, 3);
        buf[22] = ':';
    }
}

/* A JSON string of s; names that are not UTF-8 get '?' for each byte above ASCII. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    char *copy = NULL; /* owned */
    if (j || !(copy = strdup(s))) return j;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80) *c = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static void put_json(json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) puts(text);
    free(text);
    json_decref(o);
}

/* The fields every --json answer has (DESIGN.md), from stats. */
static json_t *json_base(const cli_hist *h, int ok, const ss_stats *st)
{
    return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:[]}", "command", h->command, "ok",
                     ok, "seq", (json_int_t)st->seq, "files", (json_int_t)st->files, "bytes_up",
                     (json_int_t)st->bytes_up, "bytes_down", (json_int_t)st->bytes_down, "requests",
                     (json_int_t)st->requests, "requests_by_class", cli_requests_json(st),
                     "conflicts");
}

/* --- log ------------------------------------------------------------------------------ */

typedef struct log_out {
    const cli_hist *h;
    json_t *txns; /* --json */
} log_out;

static ss_rc print_txn(void *ctx, const ss_log_entry *e, ss_err *err)
{
    log_out *lo = ctx;
    char when[40], bytes[32], obj[32], safe[CLI_SAFE_CAP];
    (void)err;
    if (lo->txns) {
        json_t *t = NULL;
        local_time(when, sizeof when, e->time_ns, 1);
        t = json_pack("{s:I, s:s, s:I, s:o, s:I, s:I, s:I, s:I}", "seq", (json_int_t)e->seq, "time",
                      when, "time_ns", (json_int_t)e->time_ns, "device", jstr(e->device), "upserts",
                      (json_int_t)e->upserts, "deletes", (json_int_t)e->deletes, "bytes",
                      (json_int_t)e->bytes, "object_bytes", (json_int_t)e->object_bytes);
        json_object_set_new(t, "device_id", jstr(e->device_id));
        if (e->devices) json_object_set_new(t, "devices", jstr(e->devices));
        if (e->checkpoint) json_object_set_new(t, "checkpoint", json_true());
        if (lo->h->path) {
            json_t *paths = json_array();
            for (size_t i = 0; i < e->n_paths; i++)
                json_array_append_new(paths, jstr(e->paths[i].path));
            json_object_set_new(t, "paths", paths);
        }
        json_array_append_new(lo->txns, t);
        return SS_OK;
    }
    local_time(when, sizeof when, e->time_ns, 0);
    human_bytes(bytes, sizeof bytes, e->bytes);
    cli_out_safe(safe, sizeof safe, e->device); /* names and paths are another device's words */
    if (e->checkpoint)
        printf("%6" PRIu64 "  %s  %-12s %.8s  checkpoint: %" PRIu64 " paths, %s (history "
               "before it was gc'd)",
               e->seq, when, safe, e->device_id, e->upserts, bytes);
    else /* the id, because a name is only what a device calls itself */
        printf("%6" PRIu64 "  %s  %-12s %.8s  +%" PRIu64 " -%" PRIu64 "  %s", e->seq, when, safe,
               e->device_id, e->upserts, e->deletes, bytes);
    if (e->devices) printf("  (%s)", cli_out_safe(safe, sizeof safe, e->devices));
    if (lo->h->verbose) {
        human_bytes(obj, sizeof obj, e->object_bytes);
        printf("  (log object %s)", obj);
    }
    putchar('\n');
    for (size_t i = 0; lo->h->verbose && i < e->n_paths; i++)
        printf("        %c %s\n", e->paths[i].deleted ? '-' : '+',
               cli_out_safe(safe, sizeof safe, e->paths[i].path));
    return SS_OK;
}

static ss_rc run_log(cli_hist *h, ss_folder *f, ss_err *err)
{
    log_out lo = {h, h->json ? json_array() : NULL};
    ss_stats st = {0};
    char *arg = NULL, *rel = NULL; /* owned */
    ss_rc rc = SS_OK;
    if (h->path) {
        rc = from_dir(h, h->path, &arg, err);
        if (rc) goto done;
        rc = ss_history_relpath(f, arg, &rel, err);
        if (rc) goto done;
    }
    rc = ss_log(f, rel, print_txn, &lo, &st, err);
    if (rc) goto done;
    if (h->json) {
        json_t *o = json_base(h, 1, &st);
        if (rel) json_object_set_new(o, "path", jstr(rel));
        json_object_set(o, "transactions", lo.txns);
        put_json(o);
    }
done:
    json_decref(lo.txns);
    free(arg);
    free(rel);
    return rc;
}

/* --- verify --------------------------------------------------------------------------- */

static void print_problem(void *ctx, const char *key, const char *msg)
{
    json_t *problems = ctx;
    char safe[CLI_SAFE_CAP];
    fprintf(stderr, "s3sync verify: %s\n", cli_out_safe(safe, sizeof safe, msg));
    if (problems)
        json_array_append_new(problems, json_pack("{s:s, s:o}", "key", key, "problem", jstr(msg)));
}

static ss_rc run_verify(cli_hist *h, ss_folder *f, ss_err *err)
{
    json_t *problems = h->json ? json_array() : NULL;
    ss_verify_report rep = {0};
    ss_stats st = {0};
    ss_rc rc = ss_verify(f, h->data, print_problem, problems, &rep, &st, err);
    if (!rc && rep.problems) {
        rc = ss_fail(err, SS_ERR_INTEGRITY, "%" PRIu64 " problem%s found", rep.problems,
                     rep.problems == 1 ? "" : "s");
        h->printed = 1; /* each problem had its line; the summary follows */
    }
    if ((!rc || h->printed) && h->json) {
        json_t *o = json_base(h, !rc, &st);
        json_object_set_new(o, "checked_logs", json_integer((json_int_t)rep.checked_logs));
        json_object_set_new(o, "checked_chunks", json_integer((json_int_t)rep.checked_chunks));
        json_object_set_new(o, "checked_checkpoints",
                            json_integer((json_int_t)rep.checked_checkpoints));
        json_object_set_new(o, "unchecked_logs", json_integer((json_int_t)rep.unchecked_logs));
        json_object_set(o, "problems", problems);
        if (rc) json_object_set_new(o, "exit", json_integer(3));
        put_json(o);
    } else if ((!rc || h->printed) && !h->quiet) {
        printf("verified %" PRIu64 " log object%s", rep.checked_logs,
               rep.checked_logs == 1 ? "" : "s");
        if (h->data)
            printf(" and %" PRIu64 " chunk%s", rep.checked_chunks,
                   rep.checked_chunks == 1 ? "" : "s");
        if (rep.unchecked_logs) printf(" (%" PRIu64 " more could not be)", rep.unchecked_logs);
        printf(": %s\n", rc ? err->msg : "no problems");
    }
    json_decref(problems);
    return rc;
}

/* --- restore -------------------------------------------------------------------------- */

static ss_rc run_restore(cli_hist *h, ss_folder *f, ss_err *err)
{
    ss_restore_opts o = {.at_seq = h->at_seq, .by_time = h->by_time, .at_time = h->at_time};
    ss_restore_result res = {0};
    ss_stats st = {0};
    char *arg = NULL, *rel = NULL, *to = NULL; /* owned */
    char bytes[32], safe[CLI_SAFE_CAP], dest[CLI_SAFE_CAP];
    ss_rc rc = from_dir(h, h->path, &arg, err);
    if (rc) goto done;
    rc = ss_history_relpath(f, arg, &rel, err);
    if (rc) goto done;
    if (h->to) {
        rc = from_dir(h, h->to, &to, err);
        if (rc) goto done;
    }
    o.path = rel;
    o.to = to;
    rc = ss_restore(f, &o, &res, &st, err);
    if (rc) goto done;
    if (h->json) {
        json_t *out = json_base(h, 1, &st);
        json_object_set_new(out, "path", jstr(rel));
        json_object_set_new(out, "dest", jstr(res.dest));
        json_object_set_new(out, "bytes", json_integer((json_int_t)res.bytes));
        put_json(out);
    } else if (!h->quiet) {
        human_bytes(bytes, sizeof bytes, res.bytes);
        printf("restored %s as it was at sequence %" PRIu64 " to %s (%" PRIu64 " entr%s, %s)\n",
               cli_out_safe(safe, sizeof safe, rel[0] ? rel : "."), res.seq,
               cli_out_safe(dest, sizeof dest, res.dest), res.files, res.files == 1 ? "y" : "ies",
               bytes);
    }
done:
    ss_restore_result_clear(&res);
    free(arg);
    free(rel);
    free(to);
    return rc;
}

/* --- checkpoint, gc --------------------------------------------------------------------- */

static ss_rc run_checkpoint(cli_hist *h, ss_folder *f, ss_err *err)
{
    ss_checkpoint_result res = {0};
    ss_stats st = {0};
    char bytes[32];
    ss_rc rc = ss_checkpoint(f, &res, &st, err);
    if (!rc && h->json) {
        json_t *o = json_base(h, 1, &st);
        json_object_set_new(o, "checkpoint", json_integer((json_int_t)res.seq));
        json_object_set_new(o, "existed", json_boolean(res.existed));
        json_object_set_new(o, "paths", json_integer((json_int_t)res.paths));
        json_object_set_new(o, "bytes", json_integer((json_int_t)res.bytes));
        put_json(o);
    } else if (!rc && !h->quiet) {
        human_bytes(bytes, sizeof bytes, res.bytes);
        printf("checkpoints/%020" PRIu64 ": %" PRIu64 " path%s, %s%s\n", res.seq, res.paths,
               res.paths == 1 ? "" : "s", bytes,
               res.existed ? " (it was there already: nothing written)" : "");
    }
    return rc;
}

typedef struct gc_out {
    const cli_hist *h;
    json_t *keys; /* --json */
} gc_out;

static void print_gone(void *ctx, const char *key, uint64_t bytes)
{
    gc_out *g = ctx;
    if (g->keys)
        json_array_append_new(g->keys,
                              json_pack("{s:s, s:I}", "key", key, "bytes", (json_int_t)bytes));
    else if (g->h->dry_run || g->h->verbose)
        printf("%s %s %" PRIu64 "\n", g->h->dry_run ? "would delete" : "delete", key, bytes);
}

static ss_rc run_gc(cli_hist *h, ss_folder *f, ss_err *err)
{
    ss_gc_opts o = {.by_last = h->keep_last != NULL, .dry_run = h->dry_run};
    gc_out g = {h, h->json ? json_array() : NULL};
    ss_gc_result res = {0};
    ss_stats st = {0};
    char bytes[32], kept[32];
    ss_rc rc;
    if (o.by_last)
        o.keep_last = h->keep;
    else
        o.keep_days = h->keep;
    rc = ss_gc(f, &o, print_gone, &g, &res, &st, err);
    if (!rc && h->json) {
        json_t *out = json_base(h, 1, &st);
        json_object_set_new(out, "dry_run", json_boolean(h->dry_run));
        json_object_set_new(out, "head", json_integer((json_int_t)res.head));
        json_object_set_new(out, "retained", json_integer((json_int_t)res.retained));
        json_object_set_new(out, "checkpoint", json_integer((json_int_t)res.checkpoint));
        json_object_set_new(out, "deleted_objects", json_integer((json_int_t)res.objects));
        json_object_set_new(out, "deleted_bytes", json_integer((json_int_t)res.bytes));
        json_object_set_new(out, "kept_objects", json_integer((json_int_t)res.kept_objects));
        json_object_set_new(out, "kept_bytes", json_integer((json_int_t)res.kept_bytes));
        json_object_set(out, "deleted", g.keys);
        put_json(out);
    } else if (!rc && !h->quiet) {
        human_bytes(bytes, sizeof bytes, res.bytes);
        human_bytes(kept, sizeof kept, res.kept_bytes);
        if (res.checkpoint && h->dry_run)
            printf("there is no checkpoint yet: gc would write one at the head first and delete "
                   "nothing that run; gc again then deletes what it makes unneeded\n");
        else if (res.checkpoint)
            printf("there was no checkpoint: wrote checkpoints/%020" PRIu64
                   "; run gc again to delete what it makes unneeded\n",
                   res.checkpoint);
        else if (!res.retained)
            printf("nothing to delete: no checkpoint is old enough to start the kept history\n");
        else
            printf("%s %" PRIu64 " object%s (%s) before checkpoints/%020" PRIu64 "; %" PRIu64
                   " kept (%s)\n",
                   h->dry_run ? "would delete" : "deleted", res.objects,
                   res.objects == 1 ? "" : "s", bytes, res.retained, res.kept_objects, kept);
    }
    json_decref(g.keys);
    return rc;
}

ss_rc cli_hist_run(cli_hist *h, ss_folder *f, ss_err *err)
{
    for (size_t i = 0; i < N_HIST; i++)
        if (!strcmp(h->command, hist_commands[i].name)) return hist_commands[i].run(h, f, err);
    return ss_fail(err, SS_ERR_INVALID, "unknown command '%s'", h->command);
}
