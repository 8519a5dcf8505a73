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
    json_t *list;     /* --json: objects appended here; NULL: a table printed */
    json_t *requests; /* --json: the pending requests */
    int header, self_seen, request_header;
} cli_device_out;
/* ss_request_fn: ctx is the same cli_device_out, after the devices. */
ss_rc cli_print_request(void *ctx, const ss_request_info *r, ss_err *err);
/* ss_device_fn: ctx is a cli_device_out. */
ss_rc cli_print_device(void *ctx, const ss_device_info *d, ss_err *err);
json_t *cli_json_device(const ss_device_info *d); /* new reference */

/* status -v: the peers of s (ss_status_peers), a line each on stdout; --json: an array. */
void cli_print_peers(const ss_stats *s);
json_t *cli_json_peers(const ss_stats *s); /* new reference */

#endif
