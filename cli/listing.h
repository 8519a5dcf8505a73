/*
 * listing: the lines and --json objects of `key list` and `device list`.
 */
#ifndef CLI_LISTING_H
#define CLI_LISTING_H

#include <jansson.h>

#include "s3sync.h"

/* ss_repo_key_fn: ctx is a JSON array to append to (--json), or NULL to print a line. */
int cli_print_key(void *ctx, const ss_key_info *k);

typedef struct cli_device_out {
    json_t *list; /* --json: objects appended here; NULL: a table printed */
    int header, self_seen;
} cli_device_out;
/* ss_device_fn: ctx is a cli_device_out. */
ss_rc cli_print_device(void *ctx, const ss_device_info *d, ss_err *err);
json_t *cli_json_device(const ss_device_info *d); /* new reference */

#endif
