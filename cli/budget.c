/* budget: requests by class in --json, and s3sync cost (see budget.h). */
#include "budget.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static json_t *classes_json(const uint64_t by_class[SS_REQ_CLASSES])
{
    json_t *o = json_object();
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++)
        json_object_set_new(o, ss_req_class_name(i), json_integer((json_int_t)by_class[i]));
    return o;
}

json_t *cli_requests_json(const ss_stats *s)
{
    return classes_json(s->requests_by_class);
}

/* --- push --dry-run, sync --dry-run --------------------------------------------------- */

static void plan_json(const char *command, const ss_plan *p, const ss_stats *made)
{
    json_t *o = json_pack(
        "{s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:o}", "command", command, "ok", 1,
        "dry_run", 1, "files_up", (json_int_t)p->files_up, "bytes_up", (json_int_t)p->bytes_up,
        "files_down", (json_int_t)p->files_down, "bytes_down", (json_int_t)p->bytes_down,
        "requests_estimated", (json_int_t)p->requests_estimated, "requests_estimated_by_class",
        classes_json(p->requests_by_class), "requests", (json_int_t)made->requests,
        "requests_by_class", classes_json(made->requests_by_class));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text) puts(text);
    free(text);
    json_decref(o);
}

void cli_plan_print(const char *command, const ss_plan *p, const ss_stats *made, int json)
{
    char up[32], down[32], classes[160] = "";
    size_t n = 0;
    if (json) {
        plan_json(command, p, made);
        return;
    }
    for (unsigned i = 0; i < SS_REQ_CLASSES && n < sizeof classes; i++)
        if (p->requests_by_class[i])
            n += (size_t)snprintf(classes + n, sizeof classes - n, "%s%" PRIu64 " %s",
                                  n ? ", " : ": ", p->requests_by_class[i], ss_req_class_name(i));
    cli_out_bytes(p->bytes_up, up, sizeof up);
    cli_out_bytes(p->bytes_down, down, sizeof down);
    printf("%s --dry-run: nothing was sent, nothing here changed\n", command);
    printf("  would send     %" PRIu64 " path%s, %s\n", p->files_up, p->files_up == 1 ? "" : "s",
           up);
    printf("  would receive  %" PRIu64 " path%s, %s\n", p->files_down,
           p->files_down == 1 ? "" : "s", down);
    printf("  requests       about %" PRIu64 " (an estimate%s)\n", p->requests_estimated, classes);
}

/* --- s3sync cost ------------------------------------------------------------------- */

#define MONTH_S (30.0 * 86400)
#define MIN_SPAN_S 3600.0 /* a first run minutes ago is no rate to multiply by a month */

typedef struct price {
    const char *setting;
    double usd; /* per 1000 requests; download: per GB (10^9 bytes) */
} price;

/* Per class, as ss_req_class; the last is the download. AWS S3 Standard, us-east-1. */
static price prices[SS_REQ_CLASSES + 1] = {
    {"price_put", 0.005},   {"price_get", 0.0004}, {"price_list", 0.005},    {"price_delete", 0.0},
    {"price_head", 0.0004}, {NULL, 0.0},           {"price_download", 0.09},
};

static void read_prices(const char *dir)
{
    for (size_t i = 0; i < sizeof prices / sizeof *prices; i++) {
        char *v = NULL;
        ss_err ignored;
        if (!prices[i].setting || ss_folder_get_setting(dir, prices[i].setting, &v, &ignored))
            continue;
        prices[i].usd = strtod(v, NULL);
        free(v);
    }
}

static void print_cost(const ss_usage *u, unsigned days, double span, double scale)
{
    double total = 0, usd;
    uint64_t req = 0;
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++)
        req += u->requests_by_class[i];
    printf("last %u day%s (%.1f recorded): %" PRIu64 " command%s, %" PRIu64
           " requests, %.1f MiB up, %.1f MiB down\n",
           days, days == 1 ? "" : "s", span / 86400, u->runs, u->runs == 1 ? "" : "s", req,
           u->bytes_up / 1048576.0, u->bytes_down / 1048576.0);
    printf("a month (30 days) at this rate:\n");
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++) {
        double n = u->requests_by_class[i] * scale;
        if (!prices[i].setting) {
            printf("  %-8s %12.0f requests  (lockd's own, no bucket bills them)\n",
                   ss_req_class_name(i), n);
            continue;
        }
        usd = n / 1000 * prices[i].usd;
        total += usd;
        printf("  %-8s %12.0f requests  x %-7g USD / 1000 = %10.4f USD\n", ss_req_class_name(i), n,
               prices[i].usd, usd);
    }
    usd = u->bytes_down * scale / 1e9 * prices[SS_REQ_CLASSES].usd;
    total += usd;
    printf("  %-8s %12.3f GB        x %-7g USD / GB   = %10.4f USD\n", "download",
           u->bytes_down * scale / 1e9, prices[SS_REQ_CLASSES].usd, usd);
    printf("  total about %.2f USD a month (storage not included; prices: s3sync config list "
           "price_)\n",
           total);
}

static json_t *cost_json(const ss_usage *u, unsigned days, double span, double scale)
{
    json_t *month = json_object(), *usd = json_object();
    double total = 0;
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++) {
        double n = u->requests_by_class[i] * scale;
        json_object_set_new(month, ss_req_class_name(i), json_integer((json_int_t)(n + 0.5)));
        if (!prices[i].setting) continue;
        json_object_set_new(usd, ss_req_class_name(i), json_real(n / 1000 * prices[i].usd));
        total += n / 1000 * prices[i].usd;
    }
    json_object_set_new(month, "bytes_up", json_integer((json_int_t)(u->bytes_up * scale)));
    json_object_set_new(month, "bytes_down", json_integer((json_int_t)(u->bytes_down * scale)));
    json_object_set_new(usd, "download",
                        json_real(u->bytes_down * scale / 1e9 * prices[SS_REQ_CLASSES].usd));
    total += u->bytes_down * scale / 1e9 * prices[SS_REQ_CLASSES].usd;
    json_object_set_new(usd, "total", json_real(total));
    return json_pack("{s:s, s:b, s:i, s:f, s:I, s:o, s:o}", "command", "cost", "ok", 1, "days",
                     (int)days, "recorded_days", span / 86400, "commands", (json_int_t)u->runs,
                     "month", month, "usd", usd);
}

int cli_cost_run(const cli_cost *c, int argc)
{
    char *dir = NULL, *end = NULL;
    ss_err err = {{0}};
    ss_usage u;
    unsigned long days = c->days ? strtoul(c->days, &end, 10) : 7;
    ss_rc rc;
    (void)argc;
    if ((c->days && (*end || !*c->days)) || days < 1 || days > 365) {
        cli_out_line(c->out, 'e', "s3sync cost", "--days takes a whole number of days, 1 to 365");
        return 2;
    }
    rc = ss_folder_find(c->dir ? c->dir : ".", &dir, &err);
    if (rc) goto failed;
    rc = ss_folder_usage(dir, days, &u, &err);
failed:
    if (rc) {
        cli_out_line(c->out, 'e', "s3sync cost", err.msg[0] ? err.msg : ss_strerror(rc));
        free(dir);
        return 1;
    }
    read_prices(dir);
    free(dir);
    double from = (double)u.until - days * 86400.0;
    double start = u.first > from ? (double)u.first : from;
    double span = u.until - start > MIN_SPAN_S ? u.until - start : MIN_SPAN_S;
    double scale = MONTH_S / span;
    if (c->json) {
        json_t *o = cost_json(&u, (unsigned)days, span, scale);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text) puts(text);
        free(text);
        json_decref(o);
    } else if (!u.runs) {
        printf("nothing recorded in the last %lu days: no command here asked the store anything\n",
               days);
    } else {
        print_cost(&u, (unsigned)days, span, scale);
    }
    return 0;
}
