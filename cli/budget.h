/*
 * budget: what runs cost. --json's "requests_by_class" (put, get, list,
 * delete, head, lockd; their sum is "requests"), and `s3sync cost [--days
 * N]`: the folder's recorded usage (.s3sync/usage) of the last N days
 * (default 7) as a month at that rate, priced by the folder's price_*
 * settings (defaults: AWS S3 Standard, us-east-1; uploads are free there,
 * lockd's own calls are no bucket's). And what a dry run would cost.
 */
#ifndef SS_CLI_BUDGET_H
#define SS_CLI_BUDGET_H

#include <jansson.h>

#include "progress.h"
#include "s3sync.h"

/* {"put": N, "get": N, ...} of s (a new reference). */
json_t *cli_requests_json(const ss_stats *s);

/*
 * The answer of push --dry-run or sync --dry-run, on stdout (a query's,
 * so in a pipe too): human units, or raw numbers in --json. made: the
 * requests the dry run itself made.
 */
void cli_plan_print(const char *command, const ss_plan *p, const ss_stats *made, int json);

typedef struct cli_cost {
    const char *dir;  /* -C, or NULL: the folder holding "." */
    const char *days; /* --days, or NULL: 7 */
    int json;
    cli_out *out; /* for error lines */
} cli_cost;

/* The exit code. */
int cli_cost_run(const cli_cost *c, int argc);

#endif
