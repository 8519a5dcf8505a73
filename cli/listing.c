/*
 * listing: what `key list` and `device list` print, a line per key file or
 * device at a terminal and an array of objects with --json (cli/main.c
 * runs the commands).
 */
#include "listing.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "progress.h"

/* id, when it was added (local time) and its label: which passphrase is whose. */
int cli_print_key(void *ctx, const ss_key_info *k)
{
    json_t *arr = ctx;
    char when[32] = "-", safe[CLI_SAFE_CAP];
    time_t t = (time_t)k->created;
    struct tm tm;
    if (arr) {
        json_array_append_new(arr, json_pack("{s:s, s:I, s:o}", "id", k->id, "created",
                                             (json_int_t)k->created, "label",
                                             k->label ? json_string(k->label) : json_null()));
        return 0;
    }
    if (k->label && localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s  %-19s  %s\n", k->id, when,
           k->label ? cli_out_safe(safe, sizeof safe, k->label) : "(no label)");
    return 0;
}

static void human_device(const ss_device_info *d)
{
    char revoked[24] = "-", last[24] = "-", name[CLI_SAFE_CAP];
    if (d->revoked) snprintf(revoked, sizeof revoked, "%" PRIu64, d->revoked);
    if (d->last) snprintf(last, sizeof last, "%" PRIu64, d->last);
    printf("%.16s  %-16s  %8" PRIu64 "  %8s  %8s%s\n", d->id,
           cli_out_safe(name, sizeof name, d->name), d->enrolled, revoked, last,
           d->self ? "  (this device)" : "");
}

json_t *cli_json_device(const ss_device_info *d)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "id", d->id, "name", d->name, "enrolled",
                     (json_int_t)d->enrolled, "revoked", (json_int_t)d->revoked, "last",
                     (json_int_t)d->last, "self", d->self);
}

ss_rc cli_print_device(void *ctx, const ss_device_info *d, ss_err *err)
{
    cli_device_out *o = ctx;
    (void)err;
    o->self_seen |= d->self;
    if (o->list) return json_array_append_new(o->list, cli_json_device(d)) ? SS_ERR_NOMEM : SS_OK;
    if (!o->header++)
        printf("%-16s  %-16s  %8s  %8s  %8s\n", "ID", "NAME", "ENROLLED", "REVOKED", "LAST");
    human_device(d);
    return SS_OK;
}
