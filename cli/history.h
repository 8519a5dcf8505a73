/*
 * history: the history commands of s3sync (cli/history.c):
 *   log [PATH]                     the transactions, newest first
 *   verify [--data]                check the chain, every log object, and the data
 *   restore PATH [--at SEQ|--at TIME] [--to DEST]
 *   checkpoint                     the whole state at the head to checkpoints/<seq>
 *   gc [--keep-days N | --keep-last N] [--dry-run]
 * main.c parses the global options (getopt sees --data, --at and --to too,
 * since options may stand anywhere), opens the folder and reports failures
 * with its exit codes; these check their own arguments and print their own
 * output, human or --json.
 */
#ifndef SS_CLI_HISTORY_H
#define SS_CLI_HISTORY_H

#include <stdint.h>

#include "s3sync.h"

typedef struct cli_hist {
    /* from main.c */
    const char *command;
    const char *dir; /* -C: relative PATH and DEST are taken from there, as git -C does */
    int json, quiet, verbose;
    int data;                          /* --data */
    const char *at;                    /* --at */
    const char *to;                    /* --to */
    const char *keep_days, *keep_last; /* gc */
    int dry_run;
    /* parsed */
    const char *path;
    uint64_t at_seq;
    int by_time;
    int64_t at_time;
    uint64_t keep; /* --keep-days or --keep-last N */
    /* out: the command printed its own output although it failed (verify's problems) */
    int printed;
} cli_hist;

/* 1 for log, verify, restore, checkpoint and gc. */
int cli_hist_is(const char *command);
/* NULL when the arguments are fine, else what is wrong (for the usage message). */
const char *cli_hist_parse(cli_hist *h, int argc, char **argv);
/* Run the command on f and print its output; a failure is left in err for main.c. */
ss_rc cli_hist_run(cli_hist *h, ss_folder *f, ss_err *err);

#endif
