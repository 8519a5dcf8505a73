/*
 * usage: what each command cost the store, kept in DIR/.s3sync/usage so
 * that `s3sync cost` can tell a month's bill at the current rate. A line
 * per command that made requests, appended when its folder closes:
 *
 *   UNIX-SECONDS PUT GET LIST DELETE HEAD LOCKD BYTES-UP BYTES-DOWN
 *
 * One write(2) with O_APPEND per line, so two commands never interleave
 * (the folder lock orders them anyway). Past USAGE_MAX_BYTES the file is
 * cut to its newer half (a cron job every minute keeps about two weeks).
 * A line that does not parse is skipped: this is an estimate, never a
 * reason for a sync to fail, so recording failures are silent too.
 *
 * And the other side of it: a request budget for one command (max_requests),
 * which the store keeps (ss_store_set_budget). Stopping there leaves nothing
 * half done because every step already survives a store that stops
 * answering: pull stages a transaction's data before the folder changes and
 * commits the watermark per transaction (apply.c P1, P3), and push publishes
 * with its log object, its last request (packs without one are gc's).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

#define USAGE_FILE "usage"
#define USAGE_MAX_BYTES (1u << 20)
_Static_assert(SS_REQ_CLASSES == 6, "a usage line holds six request classes");

/* Keep the newer half of the file (whole lines), through a temp file and a rename. */
static void usage_trim(const char *path)
{
    char tmp[4300];
    FILE *in = fopen(path, "r"), *out = NULL;
    struct stat st;
    char line[512];
    if (!in) return;
    if (fstat(fileno(in), &st) || st.st_size <= (off_t)USAGE_MAX_BYTES ||
        fseeko(in, st.st_size / 2, SEEK_SET) || !fgets(line, sizeof line, in))
        goto out; /* the first, cut line is dropped */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    out = fopen(tmp, "w");
    if (!out) goto out;
    while (fgets(line, sizeof line, in))
        fputs(line, out);
    if (fclose(out) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
out:
    fclose(in);
}

void eng_usage_record(ss_folder *f)
{
    const ss_store_counters *c;
    char path[4200], line[512];
    int n, fd;
    struct stat st;
    if (!f->store || !f->state || !f->meta) return; /* not a folder opened whole */
    c = ss_store_counts(f->store);
    if (!c->requests) return;
    n = snprintf(line, sizeof line, "%lld", (long long)time(NULL));
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %" PRIu64, c->by_class[i]);
    n += snprintf(line + n, sizeof line - (size_t)n, " %" PRIu64 " %" PRIu64 "\n", c->bytes_up,
                  c->bytes_down);
    snprintf(path, sizeof path, "%s/" USAGE_FILE, f->meta);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    if (write(fd, line, (size_t)n) != n || fstat(fd, &st)) st.st_size = 0;
    close(fd);
    if (st.st_size > (off_t)USAGE_MAX_BYTES) usage_trim(path);
}

ss_rc ss_folder_usage(const char *dir, uint64_t days, ss_usage *ret, ss_err *err)
{
    char path[4200], line[512];
    FILE *in;
    int64_t now = (int64_t)time(NULL), from = now - (int64_t)days * 86400;
    memset(ret, 0, sizeof *ret);
    ret->until = now;
    snprintf(path, sizeof path, "%s/.s3sync/" USAGE_FILE, dir);
    in = fopen(path, "r");
    if (!in && errno == ENOENT) return SS_OK; /* nothing recorded yet */
    if (!in) return ss_fail(err, SS_ERR_IO, "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, in)) {
        long long t;
        uint64_t v[SS_REQ_CLASSES + 2];
        if (sscanf(line,
                   "%lld %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                   " %" SCNu64 " %" SCNu64,
                   &t, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 9)
            continue;
        if (!ret->first || t < ret->first) ret->first = t;
        if (t < from || t > now) continue;
        ret->runs++;
        for (unsigned i = 0; i < SS_REQ_CLASSES; i++)
            ret->requests_by_class[i] += v[i];
        ret->bytes_up += v[SS_REQ_CLASSES];
        ret->bytes_down += v[SS_REQ_CLASSES + 1];
    }
    fclose(in);
    return SS_OK;
}

void ss_folder_limit_requests(ss_folder *f, uint64_t max)
{
    ss_store_set_budget(f->store, max);
}
