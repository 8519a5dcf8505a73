/* usage: the command line's help text. */
#ifndef CLI_USAGE_H
#define CLI_USAGE_H

extern const char cli_usage_text[];

#endif
