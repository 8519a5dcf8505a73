/*
 * secret: getting a passphrase without it touching argv: --password-file,
 * S3SYNC_PASSWORD_FILE, S3SYNC_PASSWORD_COMMAND, S3SYNC_PASSWORD, else a
 * prompt on the terminal. The buffer is sodium_malloc'ed and wiped on free.
 */
#ifndef SS_CLI_SECRET_H
#define SS_CLI_SECRET_H

#include <stddef.h>

#include "ss_error.h"

typedef struct cli_secret {
    char *buf; /* sodium_malloc'ed, NUL-terminated */
    size_t len;
} cli_secret;

#define CONFIRM_TRIES 3 /* a new passphrase typed twice differently: asked again, then given up */

/*
 * file: --password-file or NULL. confirm: at a prompt, ask twice (a new passphrase);
 * *ret_mismatch 1 when the two differed CONFIRM_TRIES times (exit 2).
 */
ss_rc cli_secret_get(const char *file, const char *prompt, int confirm, cli_secret *ret,
                     int *ret_mismatch, ss_err *err);
/* 1 when cli_secret_get would prompt (no file, no S3SYNC_PASSWORD* variable). */
int cli_secret_prompts(const char *file);
/* s was typed at the prompt: ask it again to confirm (init creating a repository). */
ss_rc cli_secret_confirm(const char *prompt, cli_secret *s, int *ret_mismatch, ss_err *err);
void cli_secret_free(cli_secret *s);

#endif
