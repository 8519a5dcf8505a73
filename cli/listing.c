/*
 * listing: what `key list` and `device list` print, a line per key file or
 * device at a terminal and an array of objects with --json (cli/main.c
 * runs the commands), and the peers `status -v` lists.
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

ss_rc cli_print_request(void *ctx, const ss_request_info *r, ss_err *err)
{
    cli_device_out *o = ctx;
    char name[CLI_SAFE_CAP];
    (void)err;
    if (o->requests)
        return json_array_append_new(o->requests,
                                     json_pack("{s:s, s:s}", "id", r->id, "name", r->name))
                   ? SS_ERR_NOMEM
                   : SS_OK;
    if (!o->request_header++) printf("waiting for approval (s3sync device approve ID):\n");
    printf("%s  %s\n", r->id, cli_out_safe(name, sizeof name, r->name));
    return SS_OK;
}

void cli_print_peers(const ss_stats *s)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        const ss_peer_seen *p = &s->peers[i];
        char got[32], gave[32], name[CLI_SAFE_CAP], why[CLI_SAFE_CAP];
        cli_out_bytes(p->received, got, sizeof got);
        cli_out_bytes(p->served, gave, sizeof gave);
        cli_out_safe(name, sizeof name, p->name[0] ? p->name : "?");
        cli_out_safe(why, sizeof why, p->why);
        printf("peer %s %s (%s): %s%s; head %" PRIu64 ", last signed %" PRIu64
               "; %s received, %s served\n",
               p->addr[0] ? p->addr : "-", name, p->device[0] ? p->device : "?",
               p->reachable ? "reachable"
               : p->addr[0] ? "not reachable: "
                            : "not in peers",
               p->reachable || !p->addr[0] ? "" : why, p->head, p->last_seq, got, gave);
    }
}

json_t *cli_json_peers(const ss_stats *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->n_peers; i++) {
        const ss_peer_seen *p = &s->peers[i];
        json_t *o = json_object();
        json_object_set_new(o, "addr", json_string(p->addr));
        json_object_set_new(o, "device", json_string(p->device));
        json_object_set_new(o, "name", json_string(p->name));
        json_object_set_new(o, "reachable", json_boolean(p->reachable));
        json_object_set_new(o, "why", json_string(p->why));
        json_object_set_new(o, "head", json_integer((json_int_t)p->head));
        json_object_set_new(o, "last_seq", json_integer((json_int_t)p->last_seq));
        json_object_set_new(o, "received", json_integer((json_int_t)p->received));
        json_object_set_new(o, "served", json_integer((json_int_t)p->served));
        json_object_set_new(o, "seen", json_integer((json_int_t)p->seen));
        json_array_append_new(arr, o);
    }
    return arr;
}
