/* doctor: `s3sync doctor [STORE]`, ss_doctor's lines printed (see doctor.h). */
#include "doctor.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct doctor_out {
    const cli_doctor *d;
    json_t *checks; /* --json */
} doctor_out;

static void on_check(void *ctx, const char *check, ss_check_status st, const char *msg)
{
    static const char *const word[] = {"ok", "FAIL", "--"}, *const json_word[] = {"ok", "fail",
                                                                                  "skip"};
    doctor_out *o = ctx;
    char safe[CLI_SAFE_CAP];
    if (o->checks) {
        json_array_append_new(o->checks, json_pack("{s:s, s:s, s:s}", "check", check, "status",
                                                   json_word[st], "message", msg));
        return;
    }
    if (o->d->quiet && st != SS_CHECK_FAIL) return;
    printf("%-4s  %-13s  %s\n", word[st], check, cli_out_safe(safe, sizeof safe, msg));
}

const char *cli_doctor_check(int argc)
{
    return argc > 1 ? "doctor takes at most one STORE" : NULL;
}

int cli_doctor_run(const cli_doctor *d, int argc, char **argv)
{
    doctor_out o = {d, d->json ? json_array() : NULL};
    char *dir = NULL;
    ss_err err = {{0}};
    int failed = 0;
    ss_rc rc;
    /* Outside a synced folder, a STORE alone is checked; with -C the folder must be one. */
    rc = ss_folder_find(d->dir ? d->dir : ".", &dir, &err);
    if (rc && !d->dir && argc == 1) rc = SS_OK;
    if (!rc) {
        ss_doctor_opts opts = {dir, argc == 1 ? argv[0] : NULL, d->store_opts};
        rc = ss_doctor(&opts, on_check, &o, &failed, &err);
    }
    free(dir);
    if (rc) cli_out_line(d->out, 'e', "s3sync doctor", err.msg[0] ? err.msg : ss_strerror(rc));
    if (o.checks) {
        json_t *j = json_pack("{s:s, s:b, s:o}", "command", "doctor", "ok", !rc && !failed,
                              "checks", o.checks);
        if (rc)
            json_object_set_new(j, "error", json_string(err.msg[0] ? err.msg : ss_strerror(rc)));
        char *text = json_dumps(j, JSON_COMPACT);
        if (text) puts(text);
        free(text);
        json_decref(j);
    }
    return rc || failed ? 1 : 0;
}
