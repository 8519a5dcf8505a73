/*
 * histgen: make a long history fast, for bench-history.sh: open a synced
 * folder once and push N transactions in-process, each rewriting one small
 * file (FILE_COUNT of them, in turn). Through the CLI each push would pay a
 * process start and a folder open; here it pays the PUT of its log object.
 *
 *   histgen DIR N
 *   histgen --purge STORE_URL     delete every key under the store (clean-up)
 *   histgen --list STORE_URL      print "SIZE KEY" for every key under the store
 *
 * --list is how bench-revoke.sh sees what a command wrote (epochs/, keys/,
 * log/) in any store, with or without the aws CLI.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3store.h"
#include "s3sync.h"

#define FILE_COUNT 10

typedef struct keys {
    char **v;
    size_t n;
} keys;

static int print_key(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)ctx;
    return printf("%" PRIu64 " %s\n", st->size, key) < 0;
}

static int list(const char *url)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_store_open(url, NULL, &s, &err);
    if (!rc) rc = ss_store_list(s, "", NULL, print_key, NULL, &err);
    ss_store_free(s);
    if (rc) fprintf(stderr, "histgen: %s\n", err.msg);
    return rc ? 1 : 0;
}

static int collect(void *ctx, const char *key, const ss_store_stat *st)
{
    keys *k = ctx;
    char **nv = realloc(k->v, (k->n + 1) * sizeof *nv);
    (void)st;
    if (!nv || !(nv[k->n] = strdup(key))) return 1;
    k->v = nv;
    k->n++;
    return 0;
}

static int purge(const char *url)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    keys k = {0};
    ss_rc rc = ss_store_open(url, NULL, &s, &err);
    if (!rc) rc = ss_store_list(s, "", NULL, collect, &k, &err);
    for (size_t i = 0; i < k.n; i++) {
        if (!rc) rc = ss_store_delete(s, k.v[i], &err);
        free(k.v[i]);
    }
    free(k.v);
    ss_store_free(s);
    if (rc) fprintf(stderr, "histgen: %s\n", err.msg);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    ss_folder *f = NULL;
    ss_err err = {{0}};
    ss_stats st = {0};
    unsigned long n;
    ss_rc rc;
    if (argc == 3 && !strcmp(argv[1], "--purge")) return purge(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--list")) return list(argv[2]);
    if (argc != 3 || !(n = strtoul(argv[2], NULL, 10))) {
        fprintf(stderr, "usage: histgen DIR N\n");
        return 2;
    }
    if ((rc = ss_folder_open(argv[1], NULL, NULL, &f, &err))) {
        fprintf(stderr, "histgen: %s\n", err.msg);
        return 1;
    }
    for (unsigned long i = 0; i < n && !rc; i++) {
        char path[4096];
        FILE *out;
        snprintf(path, sizeof path, "%s/f%lu.txt", argv[1], i % FILE_COUNT);
        if (!(out = fopen(path, "w"))) {
            perror(path);
            rc = SS_ERR_IO;
            break;
        }
        fprintf(out, "transaction %lu of %lu\n", i + 1, n);
        fclose(out);
        ss_stats_clear(&st);
        rc = ss_push(f, &st, &err);
    }
    if (rc)
        fprintf(stderr, "histgen: %s\n", err.msg);
    else
        printf("%" PRIu64 "\n", st.seq);
    ss_stats_clear(&st);
    ss_folder_free(f);
    return rc ? 1 : 0;
}
