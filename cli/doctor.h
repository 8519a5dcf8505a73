/*
 * doctor: `s3sync doctor [STORE]`, ss_doctor's checks one line each on
 * stdout ("ok", "FAIL" or "--" for a check that does not apply, its name,
 * what holds or what to do), or one JSON object with --json. Exit 0 when
 * every check holds, 1 otherwise, 2 for a usage error.
 */
#ifndef SS_CLI_DOCTOR_H
#define SS_CLI_DOCTOR_H

#include "progress.h"
#include "s3sync.h"

typedef struct cli_doctor {
    const char *dir; /* -C, or NULL: the folder holding ".", if any */
    int json, quiet;
    cli_out *out;                    /* for error lines */
    const ss_store_opts *store_opts; /* --endpoint, --profile, --token-file */
} cli_doctor;

/* argv: [STORE]. NULL when they are fine, else the usage error. */
const char *cli_doctor_check(int argc);
/* The exit code. */
int cli_doctor_run(const cli_doctor *d, int argc, char **argv);

#endif
