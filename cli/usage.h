/* usage: the command line's help text. */
#ifndef CLI_USAGE_H
#define CLI_USAGE_H

extern const char cli_usage_text[];
extern int cli_usage_json; /* --json: usage errors are a JSON object on stdout too */

/* "s3sync: MSG" and the synopsis on stderr (and the JSON object): returns EXIT_USAGE (2). */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
