/* usage: the text `s3sync --help` and every usage error print (cli/main.c). */
#include "usage.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_json;

const char cli_usage_text[] =
    "usage: s3sync [-C DIR] [-q|-v] [--json] [--endpoint URL] [--profile NAME]\n"
    "              [--password-file F] [--token-file F] COMMAND\n"
    "  init STORE [DIR] [--expect-fingerprint F]\n"
    "                        create the repository at STORE, or join it if it exists\n"
    "                        (and only if its fingerprint is F: check F out of band)\n"
    "  push | pull | sync [--max-requests N]\n"
    "                        publish local changes | apply remote ones | both;\n"
    "                        stop (exit 75) before store request N+1\n"
    "  push | sync --dry-run  what they would send and receive, and about how many\n"
    "                        requests; nothing is written here or in the store\n"
    "  status                what is pending either way\n"
    "  log [PATH]            the transactions, newest first (touching PATH)\n"
    "  verify [--data]       check every log object (and every chunk): exit 3 if any is bad\n"
    "  restore PATH [--at SEQ|--at @UNIX-SECONDS|--at YYYY-MM-DD[THH:MM[:SS]]] [--to DEST]\n"
    "                        PATH as it was, beside it as NAME.restored-SEQ.EXT or at DEST\n"
    "                        (relative PATH and DEST: from -C DIR when given)\n"
    "  checkpoint            write the whole state at the head to checkpoints/<seq>\n"
    "  gc [--keep-days N | --keep-last N] [--dry-run]\n"
    "                        delete log objects, checkpoints and packs no state kept needs\n"
    "                        (default --keep-days 30; s3:// and file:// stores only)\n"
    "  key add [--label NAME] | key list | key remove ID | key rotate | key fingerprint\n"
    "  device list | device revoke NAME|ID\n"
    "                        the devices that sign transactions; lock one out from now on\n"
    "  device enrollment approve | device enrollment open | device approve ID\n"
    "                        new devices wait for an enrolled one's approval, or not\n"
    "  watch [--interval SECONDS]\n"
    "                        sync on every change (inotify), pull every SECONDS (default 10),\n"
    "                        until SIGINT or SIGTERM\n"
    "  serve [--interval SECONDS]\n"
    "                        answer this repository's peers from .s3sync/cache on\n"
    "                        peer_listen, pull every SECONDS (default 60) (docs/PEERS.md)\n"
    "  config [list | get KEY | set KEY VALUE | unset KEY]\n"
    "                        this folder's settings (.s3sync/config)\n"
    "  doctor [STORE]        check the store (this folder's, or STORE) and the folder,\n"
    "                        one line each: ok, or what to do\n"
    "  cost [--days N]       a month of this folder's requests and downloads at the rate\n"
    "                        of the last N days (default 7), priced (config price_*)\n"
    "STORE: s3://BUCKET/PREFIX, file:///ABS/PATH or lockd:http(s)://HOST:PORT/REPO\n"
    "  (lockd: the device token from --token-file F or S3SYNC_TOKEN_FILE)\n";

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    char msg[1024];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The line, then the synopsis only: the command list is --help's (cron mail stays short). */
    const char *end = strstr(cli_usage_text, " COMMAND\n");
    int n = end ? (int)(end - cli_usage_text) + 8 : (int)strlen(cli_usage_text);
    fprintf(stderr, "s3sync: %s\n%.*s  (s3sync --help lists the commands)\n", msg, n,
            cli_usage_text);
    if (cli_usage_json) {
        json_t *o = json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "exit", 2);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text) puts(text);
        free(text);
        json_decref(o);
    }
    return 2;
}
