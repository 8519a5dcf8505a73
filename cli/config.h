/*
 * config: `s3sync config` over DIR/.s3sync/config (the keys core/folder.c
 * knows: ss_folder_settings), and the per-user paths of the XDG base
 * directory spec.
 *
 *   s3sync config                 every key that is set, "key = value"
 *   s3sync config list            every known key: its value or "(unset)", and what it is
 *   s3sync config get KEY         its value (exit 1 when unset)
 *   s3sync config set KEY VALUE   check and store it (exit 2 for an unknown key or bad value)
 *   s3sync config unset KEY
 */
#ifndef SS_CLI_CONFIG_H
#define SS_CLI_CONFIG_H

#include <stddef.h>

#include "progress.h"
#include "s3store.h"

typedef struct cli_config {
    const char *dir; /* -C, or NULL: the folder holding "." */
    int json, quiet;
    cli_out *out;                    /* for error lines */
    const ss_store_opts *store_opts; /* --endpoint, --token-file...: to check a new store */
} cli_config;

/* The exit code. */
int cli_config_run(const cli_config *c, int argc, char **argv);

/*
 * $XDG_CONFIG_HOME/s3sync/LEAF (default ~/.config/s3sync/LEAF) into buf:
 * 1 when the file exists, 0 otherwise (buf then empty).
 */
int cli_xdg_config_file(const char *leaf, char *buf, size_t cap);

#endif
