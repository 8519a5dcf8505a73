/*
 * doctor (ss_doctor): is this store and this folder fit to sync? Each check
 * is one line to the caller, OK or what to do, and a failing check never
 * stops the next: a user fixing a setup wants every problem at once. It
 * opens its own store handle (few retries, a short deadline: a store that
 * does not answer should be told, not waited for) and never takes the
 * folder's lock or keys: it must run where a sync cannot.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "s3sync.h"

/* SigV4 refuses past 15 minutes; a lease's timing wants far less skew than that. */
#define CLOCK_SKEW_MAX_S 300
/* A pull writes a file whole beside it before the rename, and state.db grows: room for both. */
#define FREE_DISK_MIN (256ull << 20)

typedef struct doctor {
    ss_doctor_fn fn;
    void *ctx;
    int failed;
} doctor;

static void tell(doctor *d, const char *check, ss_check_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void tell(doctor *d, const char *check, ss_check_status st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (st == SS_CHECK_FAIL) d->failed = 1;
    d->fn(d->ctx, check, st, msg);
}

/* --- the store -------------------------------------------------------------------- */

static int stop_at_first(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)ctx, (void)key, (void)st;
    return 1;
}

/* The store answers a LIST with these credentials; 0 when it does not (the rest is moot). */
static int check_answers(doctor *d, ss_store *s)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_list(s, "config", NULL, stop_at_first, NULL, &err);
    const char *url = ss_store_url(s);
    if (!rc) {
        tell(d, "store", SS_CHECK_OK, "%s answers%s", url,
             strncmp(url, "file:", 5) ? " and takes the credentials" : "");
        return 1;
    }
    if (rc == SS_ERR_AUTH)
        tell(d, "store", SS_CHECK_FAIL,
             "%s refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
             "--profile or the folder's profile setting, and the clock (%s)",
             url, err.msg);
    else if (rc == SS_ERR_NOT_FOUND)
        tell(d, "store", SS_CHECK_FAIL,
             "%s: the bucket does not exist; create it (aws s3 mb s3://BUCKET) (%s)", url, err.msg);
    else
        tell(d, "store", SS_CHECK_FAIL,
             "%s does not answer: check the endpoint (--endpoint, AWS_ENDPOINT_URL) and the "
             "network (%s)",
             url, err.msg);
    return 0;
}

/*
 * The versions named: Ceph's conditional PUT (tracker #8562) is in v0.91,
 * so in Hammer 0.94, its first stable release after it; AWS announced
 * If-None-Match on PutObject in August 2024; MinIO took "*" as an ETag
 * (minio/minio#19682) in RELEASE.2024-05-07T06-41-25Z, before which its
 * If-None-Match on PUT compared ETags only.
 */
static void check_create_only(doctor *d, ss_store *s)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_probe_create_only(s, &err);
    if (!rc)
        tell(d, "create-only", SS_CHECK_OK, "PUT with If-None-Match: * refuses an existing key");
    else if (rc == SS_ERR_STORE)
        tell(d, "create-only", SS_CHECK_FAIL,
             "the store ignores If-None-Match: * on PUT, so two devices could write one "
             "sequence: upgrade it (Ceph RGW honours it since Hammer 0.94, AWS S3 since "
             "August 2024, MinIO since RELEASE.2024-05-07T06-41-25Z) or sync through "
             "s3sync-lockd (a lockd: store)");
    else
        tell(d, "create-only", SS_CHECK_FAIL, "could not try it: %s", err.msg);
}

static void check_paging(doctor *d, ss_store *s)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_probe_paging(s, &err);
    if (!rc)
        tell(d, "paging", SS_CHECK_OK, "ListObjectsV2 pages follow to the end, each key once");
    else if (rc == SS_ERR_STORE)
        tell(d, "paging", SS_CHECK_FAIL,
             "ListObjectsV2 paging is broken (%s): a pull would miss or repeat transactions; "
             "use another store or s3sync-lockd",
             err.msg);
    else
        tell(d, "paging", SS_CHECK_FAIL, "could not try it: %s", err.msg);
}

/* The store's Date header of the last answer against this clock. */
static void check_clock(doctor *d, ss_store *s)
{
    const ss_store_counters *c = ss_store_counts(s);
    int64_t skew = c->date_skew;
    if (!c->date_seen) {
        tell(d, "clock", SS_CHECK_SKIP, "the store sent no Date to compare with");
        return;
    }
    if (ss_fault_on("clock-ahead")) skew -= 3600; /* a test stands in a clock an hour fast */
    if (skew > -CLOCK_SKEW_MAX_S && skew < CLOCK_SKEW_MAX_S)
        tell(d, "clock", SS_CHECK_OK, "within %" PRId64 " s of the store's",
             skew < 0 ? -skew : skew);
    else
        tell(d, "clock", SS_CHECK_FAIL,
             "%" PRId64 " s %s the store's: SigV4 fails beyond 15 minutes; set the clock "
             "(timedatectl set-ntp true)",
             skew < 0 ? -skew : skew, skew < 0 ? "ahead of" : "behind");
}

/* reachable, token, lease, presigned PUT: each step needs the one before. */
static void check_lockd(doctor *d, ss_store *s)
{
    ss_err err = {{0}};
    ss_rc rc = ss_store_lockd_check(s, SS_LOCKD_HEAD, &err);
    if (rc == SS_ERR_TEMPORARY) {
        tell(d, "lockd", SS_CHECK_FAIL, "unreachable: is s3sync-lockd running there? (%s)",
             err.msg);
        return;
    }
    tell(d, "lockd", SS_CHECK_OK, "s3sync-lockd answers");
    if (rc) {
        tell(d, "token", SS_CHECK_FAIL,
             "lockd refused the device token: check --token-file, config set token_file or "
             "S3SYNC_TOKEN_FILE, and that the device was not removed (%s)",
             err.msg);
        return;
    }
    tell(d, "token", SS_CHECK_OK, "lockd takes the device token");
    rc = ss_store_lockd_check(s, SS_LOCKD_LEASE, &err);
    if (rc) {
        tell(d, "lease", SS_CHECK_FAIL,
             rc == SS_ERR_AUTH ? "lockd refuses this device a lease (a read-only device?): %s"
             : rc == SS_ERR_TEMPORARY
                 ? "none now (another device holds it, or lockd's bucket failed); try again: %s"
                 : "no lease: %s",
             err.msg);
        return;
    }
    tell(d, "lease", SS_CHECK_OK, "lease acquired and released");
    rc = ss_store_lockd_check(s, SS_LOCKD_PUT, &err);
    if (rc == SS_ERR_NOT_FOUND)
        tell(d, "presigned-put", SS_CHECK_SKIP, "no repository there yet to try a PUT on");
    else if (rc)
        tell(d, "presigned-put", SS_CHECK_FAIL,
             "the bucket did not judge lockd's presigned PUT as it must (refused, or took it): "
             "check lockd's bucket, its credentials and its clock (%s)",
             err.msg);
    else
        tell(d, "presigned-put", SS_CHECK_OK, "the bucket takes lockd's presigned PUTs");
}

static void check_store(doctor *d, const char *url, const ss_store_opts *opts)
{
    ss_store_opts so = opts ? *opts : (ss_store_opts){0};
    ss_store *s = NULL;
    ss_err err = {{0}};
    if (!so.max_retries) so.max_retries = 1;
    if (!so.timeout_ms) so.timeout_ms = 20000;
    if (ss_store_open(url, &so, &s, &err)) {
        tell(d, "store", SS_CHECK_FAIL, "%s", err.msg);
        return;
    }
    if (ss_store_is_lockd(s)) {
        check_lockd(d, s);
    } else if (check_answers(d, s)) {
        check_create_only(d, s);
        check_paging(d, s);
    }
    check_clock(d, s);
    ss_store_free(s);
}

/* --- the folder ------------------------------------------------------------------- */

/*
 * .s3sync/ and its keys: nobody but the owner may enter or read them (init
 * makes the directory 0700 and the keys 0600; a cp -r or an unpacked backup
 * may not have kept that).
 */
static void check_modes(doctor *d, const char *dir)
{
    static const char *const names[] = {"", "/master.key", "/device.key"};
    char path[PATH_MAX];
    struct stat st;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/.s3sync%s", dir, names[i]);
        if (lstat(path, &st)) {
            if (errno == ENOENT && i) continue;
            tell(d, "folder", SS_CHECK_FAIL, "%s: %s", path, strerror(errno));
            return;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 077)) {
            tell(d, "folder", SS_CHECK_FAIL,
                 "%s is mode %04o, owner %u: others may read the keys; chmod -R go-rwx "
                 "%s/.s3sync",
                 path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, dir);
            return;
        }
    }
    tell(d, "folder", SS_CHECK_OK, "%s/.s3sync is the owner's alone", dir);
}

static void check_disk(doctor *d, const char *dir)
{
    struct statvfs v;
    unsigned long long avail;
    if (statvfs(dir, &v)) {
        tell(d, "disk", SS_CHECK_FAIL, "%s: %s", dir, strerror(errno));
        return;
    }
    avail = (unsigned long long)v.f_bavail * v.f_frsize;
    if (avail >= FREE_DISK_MIN)
        tell(d, "disk", SS_CHECK_OK, "%llu MiB free", avail >> 20);
    else
        tell(d, "disk", SS_CHECK_FAIL,
             "%llu MiB free under %s: a pull needs room for a file beside the one it replaces; "
             "free at least %llu MiB",
             avail >> 20, dir, FREE_DISK_MIN >> 20);
}

/* --- the folder's store ----------------------------------------------------------- */

/* The folder's settings under the caller's options, as ss_folder_open takes them. */
typedef struct folder_opts {
    char *store, *endpoint, *region, *profile, *token;
    char token_path[PATH_MAX];
} folder_opts;

static void folder_opts_clear(folder_opts *fo)
{
    free(fo->store);
    free(fo->endpoint);
    free(fo->region);
    free(fo->profile);
    free(fo->token);
}

static void fill(const char *dir, const char *key, const char **field, char **owned)
{
    ss_err ignored;
    if (*field || ss_folder_get_setting(dir, key, owned, &ignored)) return;
    *field = *owned;
}

static void folder_store_opts(const char *dir, ss_store_opts *so, folder_opts *fo)
{
    ss_err ignored;
    fill(dir, "endpoint", &so->endpoint, &fo->endpoint);
    fill(dir, "region", &so->region, &fo->region);
    fill(dir, "profile", &so->profile, &fo->profile);
    if (!so->token_file && !ss_folder_get_setting(dir, "token_file", &fo->token, &ignored)) {
        snprintf(fo->token_path, sizeof fo->token_path, "%s%s%s", fo->token[0] == '/' ? "" : dir,
                 fo->token[0] == '/' ? "" : "/", fo->token);
        so->token_file = fo->token_path;
    }
}

ss_rc ss_doctor(const ss_doctor_opts *o, ss_doctor_fn fn, void *ctx, int *ret_failed, ss_err *err)
{
    doctor d = {fn, ctx, 0};
    ss_store_opts so = o->store_opts ? *o->store_opts : (ss_store_opts){0};
    folder_opts fo = {0};
    const char *url = o->store_url;
    *ret_failed = 0;
    if (o->dir) {
        folder_store_opts(o->dir, &so, &fo);
        if (!url && ss_folder_get_setting(o->dir, "store", &fo.store, err)) {
            folder_opts_clear(&fo);
            return ss_fail(err, SS_ERR_INVALID, "%s/.s3sync/config names no store", o->dir);
        }
        if (!url) url = fo.store;
    }
    check_store(&d, url, &so);
    if (o->dir) {
        check_modes(&d, o->dir);
        check_disk(&d, o->dir);
    } else {
        tell(&d, "folder", SS_CHECK_SKIP, "not in a synced folder");
    }
    folder_opts_clear(&fo);
    *ret_failed = d.failed;
    return SS_OK;
}
