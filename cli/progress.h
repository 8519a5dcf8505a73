/*
 * progress: the one-line progress bar on stderr, and colour, for a human at
 * a terminal. The bar is drawn only when stderr is a terminal and not -q or
 * --json; it waits 300 ms before the first draw (a quick command shows
 * nothing) and redraws at most ten times a second, but at once when the
 * last file is done (the last upload or the commit may take a while yet:
 * the count says every file is). Anything else written to stderr goes
 * through cli_out_line, which first erases the bar.
 * Colour only when stderr is a terminal and NO_COLOR is unset or empty
 * (https://no-color.org).
 *
 * Names from elsewhere (paths and device names from the store, messages
 * that quote them) reach the terminal through cli_out_safe: a hostile
 * name's escape sequences come out as text (core/path.h ss_path_escape).
 */
#ifndef SS_CLI_PROGRESS_H
#define SS_CLI_PROGRESS_H

#include <stdint.h>
#include <time.h>

#include "s3sync.h"

typedef struct cli_out {
    int bar;   /* draw the bar */
    int color; /* use colour */
    int drawn; /* a bar is on the screen now */
    int ever;  /* drawn at least once: last and rate_bytes are meaningful */
    struct timespec start, last;
    uint64_t rate_bytes; /* bytes per second, smoothed */
    uint64_t last_bytes;
    uint64_t last_files; /* files_done of the last draw */
} cli_out;

/* tty: stderr is a terminal; quiet: -q or --json (no bar). */
void cli_out_init(cli_out *o, int tty, int quiet);
/* The engine's progress hook (ctx: cli_out *). */
void cli_out_progress(cli_out *o, const ss_progress *p);
/* Erase the bar if it is drawn. */
void cli_out_clear(cli_out *o);
/*
 * One line on stderr, the bar erased first: "PREFIX: TEXT". kind 'e' (error:
 * red prefix), 'w' (warning: yellow), else plain. TEXT goes through
 * cli_out_safe.
 */
void cli_out_line(cli_out *o, int kind, const char *prefix, const char *text);

#define CLI_SAFE_CAP (4 * 4096 + 16) /* room for any path, escaped */
/* s as it may reach a terminal, in buf (cut with "..." past cap); returns buf. */
const char *cli_out_safe(char *buf, size_t cap, const char *s);

/* "1.5 MiB" into buf. */
const char *cli_out_bytes(uint64_t n, char *buf, size_t cap);

#endif
