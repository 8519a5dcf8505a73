/*
 * budget: what a run cost in requests, for --json ("requests_by_class":
 * put, get, list, delete, head, lockd; their sum is "requests").
 */
#ifndef SS_CLI_BUDGET_H
#define SS_CLI_BUDGET_H

#include <jansson.h>

#include "s3sync.h"

/* {"put": N, "get": N, ...} of s (a new reference). */
json_t *cli_requests_json(const ss_stats *s);

#endif
