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

/* file: --password-file or NULL. confirm: prompt twice (a new passphrase). */
ss_rc cli_secret_get(const char *file, const char *prompt, int confirm, cli_secret *ret,
                     ss_err *err);
void cli_secret_free(cli_secret *s);

#endif
