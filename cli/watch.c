/*
 * watch: s3sync watch (see watch.h). Owns the event loop, the directory
 * watches (inotify), the debounce and poll timers, the retry policy and the
 * watch's output; every sync or pull is one call into core/.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "progress.h"
#include "s3sync.h"
#include "serve.h"
#include "watch.h"

#define QUIET_MS 300      /* a sync starts once the folder was quiet this long */
#define MAX_DELAY_MS 2000 /* or this long after the first change, if it never is */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 30000
#define DEFAULT_INTERVAL_S 10.0
#define MAX_INTERVAL_S 86400.0

/* Changes that make the folder differ from its state; IN_ACCESS and IN_OPEN do not. */
#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |            \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* The signal to stop on; whether a sync runs (then a second signal abandons it). */
static volatile sig_atomic_t g_stop, g_busy;
static int g_wake[2] = {-1, -1}; /* self-pipe: a signal wakes poll() without a race */

typedef struct watcher {
    cli_watch *o;
    char *root; /* absolute */
    ss_folder_ignore *ign;
    char *ignore_file;   /* the folder's ignore_file setting (NULL: .s3syncignore) */
    int ifd;             /* inotify */
    char **dirs;         /* by watch descriptor: the directory's path ("" the root) */
    size_t cap, live;    /* wds are handed out increasingly: rewatch when sparse */
    int unwatched;       /* a directory could not be watched: every poll scans too */
    int rewatch;         /* rebuild the watches before the next sync */
    int root_gone;       /* the folder itself was moved or removed */
    int dirty;           /* local changes not yet synced */
    const char *trigger; /* what made it dirty: "start", "local", "overflow", "rescan" */
    int64_t first_change, last_change, next_poll, retry_at, backoff_ms, interval_ms;
    int failing; /* an outage was reported; its end is too */
    int64_t failing_since;
    cli_serve serve; /* peer_listen set: the peers served meanwhile (cli/serve.c) */
    ss_server *srv;
    int lfd;
    cli_heads heads; /* a head a peer announced: pulled at once */
    int head_now;    /* ... before any debounce of local changes runs out */
    cli_disc disc;   /* peer_discovery set too: queries answered, announcements */
} watcher;

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    int saved = errno;
    if (g_stop && g_busy) _exit(128 + sig); /* the second: abandon the sync (crash-safe) */
    g_stop = sig;
    if (write(g_wake[1], "", 1) < 0) { /* full pipe: poll wakes anyway */
    }
    errno = saved;
}

static int setup_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* file and store I/O go on; only the loop's poll() wakes */
    if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK)) return -1;
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) return -1;
    return 0;
}

/* --- output --------------------------------------------------------------------------- */

static void emit(json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) {
        puts(text);
        fflush(stdout);
    }
    free(text);
    json_decref(o);
}

static void report_done(watcher *w, const char *what, const char *trigger, const ss_stats *s,
                        int64_t ms)
{
    int changed = s->files || s->n_conflicts;
    if (!w->o->verbose && !changed && strcmp(what, "sync")) return; /* an idle poll */
    if (w->o->json) {
        json_t *conf = json_array();
        for (size_t i = 0; i < s->n_conflicts; i++)
            json_array_append_new(conf, json_string(s->conflicts[i]));
        emit(json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:I}", "event", what,
                       "trigger", trigger, "ok", 1, "seq", (json_int_t)s->seq, "files",
                       (json_int_t)s->files, "bytes_up", (json_int_t)s->bytes_up, "bytes_down",
                       (json_int_t)s->bytes_down, "requests", (json_int_t)s->requests, "conflicts",
                       conf, "ms", (json_int_t)ms));
    } else if (w->o->verbose) {
        fprintf(stderr,
                "watch: %s (%s): %llu path%s changed, at sequence %llu, %llu request%s, %lld ms\n",
                what, trigger, (unsigned long long)s->files, s->files == 1 ? "" : "s",
                (unsigned long long)s->seq, (unsigned long long)s->requests,
                s->requests == 1 ? "" : "s", (long long)ms);
    } else if (changed && !w->o->quiet) {
        /* One line per sync that changed something, the same at a terminal and in the journal. */
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%s  %s %llu path%s, at sequence %llu\n", when,
               strcmp(what, "pull") ? "synced" : "pulled", (unsigned long long)s->files,
               s->files == 1 ? "" : "s", (unsigned long long)s->seq);
        fflush(stdout);
    }
}

/* "s3sync watch: MSG" on stderr; a message may quote a path from another device. */
static void say(const char *msg)
{
    char safe[CLI_SAFE_CAP];
    fprintf(stderr, "s3sync watch: %s\n", cli_out_safe(safe, sizeof safe, msg));
}

/* One line per outage, not per attempt; fatal failures end the watch. */
static void report_failure(watcher *w, const char *what, ss_rc rc, const ss_err *err, int fatal)
{
    const char *msg = err->msg[0] ? err->msg : ss_strerror(rc);
    char safe[CLI_SAFE_CAP];
    if (w->failing && !fatal) return;
    if (fatal)
        say(msg);
    else
        fprintf(stderr, "s3sync watch: %s (%s failed; retrying in %lld s, watching on)\n",
                cli_out_safe(safe, sizeof safe, msg), what, (long long)(w->backoff_ms / 1000));
    if (w->o->json)
        emit(json_pack("{s:s, s:s, s:b, s:s, s:b, s:I, s:i}", "event", "error", "command", what,
                       "ok", 0, "error", msg, "fatal", fatal, "retry_ms",
                       (json_int_t)(fatal ? 0 : w->backoff_ms), "exit",
                       fatal ? (rc == SS_ERR_INTEGRITY ? 3 : 1) : 0));
}

static void report_recovered(watcher *w, int64_t now)
{
    long long s = (long long)((now - w->failing_since) / 1000);
    if (w->o->json)
        emit(json_pack("{s:s, s:I}", "event", "recovered", "after_s", (json_int_t)s));
    else if (!w->o->quiet)
        fprintf(stderr, "s3sync watch: working again after %lld s\n", s);
}

/* --- the directory watches -------------------------------------------------------------- */

static int remember(watcher *w, int wd, const char *rel)
{
    char *copy = strdup(rel);
    if (!copy) return -1;
    if ((size_t)wd >= w->cap) {
        size_t old = w->cap;
        if (SS_ARRAY_GROW(w->dirs, (size_t)wd + 1, w->cap)) {
            free(copy);
            return -1;
        }
        memset(w->dirs + old, 0, (w->cap - old) * sizeof *w->dirs); /* unused wds: none */
    }
    if (w->dirs[wd])
        free(w->dirs[wd]); /* the same directory again (a bind mount, a race) */
    else
        w->live++;
    w->dirs[wd] = copy;
    return 0;
}

static void forget(watcher *w, int wd)
{
    if (wd < 0 || (size_t)wd >= w->cap || !w->dirs[wd]) return;
    free(w->dirs[wd]);
    w->dirs[wd] = NULL;
    w->live--;
}

static void forget_all(watcher *w)
{
    for (size_t i = 0; i < w->cap; i++)
        free(w->dirs[i]);
    free(w->dirs);
    w->dirs = NULL;
    w->cap = w->live = 0;
}

static char *join_rel(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0) return NULL;
    return p;
}

/* A directory that cannot be watched (the watch limit, no permission) is found at each poll. */
static void cannot_watch(watcher *w, const char *abs)
{
    int limit = errno == ENOSPC, e = errno;
    char safe[CLI_SAFE_CAP];
    if (!w->unwatched && !w->o->quiet)
        fprintf(stderr, "s3sync watch: cannot watch %s: %s; changes there are found at each poll\n",
                cli_out_safe(safe, sizeof safe, abs),
                limit ? "the inotify watch limit is reached (sysctl fs.inotify.max_user_watches)"
                      : strerror(e));
    w->unwatched = 1;
}

static int is_dir_entry(DIR *d, const struct dirent *e)
{
    struct stat st;
    if (e->d_type != DT_UNKNOWN) return e->d_type == DT_DIR;
    return !fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode);
}

/* Watch directory rel and every directory under it (the watch first: nothing made after is missed).
 */
static ss_rc watch_tree(watcher *w, const char *rel, ss_err *err)
{
    char *abs = NULL;
    DIR *d = NULL;
    struct dirent *e;
    ss_rc rc = SS_OK;
    int wd;
    if (!(abs = *rel ? join_rel(w->root, rel) : strdup(w->root)))
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    wd = inotify_add_watch(w->ifd, abs, WATCH_MASK);
    if (wd < 0) {
        if (errno != ENOENT && errno != ENOTDIR) cannot_watch(w, abs); /* gone meanwhile: fine */
        goto out;
    }
    if (remember(w, wd, rel)) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (!(d = opendir(abs))) { /* removed meanwhile: fine; unreadable, or out of fds: poll it */
        if (errno != ENOENT && errno != ENOTDIR) cannot_watch(w, abs);
        goto out;
    }
    while (!rc && (e = readdir(d))) {
        char *child = NULL;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            ss_folder_name_skipped(e->d_name) || !is_dir_entry(d, e))
            continue;
        if (!(child = join_rel(rel, e->d_name)))
            rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        else if (!ss_folder_ignored(w->ign, child, 1))
            rc = watch_tree(w, child, err);
        free(child);
    }
out:
    if (d) closedir(d);
    free(abs);
    return rc;
}

/* The folder's ignore_file setting changed since the watches were made (`s3sync config set`). */
static int ignore_setting_changed(const watcher *w)
{
    char *now = NULL;
    int changed;
    if (ss_folder_get_setting(w->root, "ignore_file", &now, NULL)) now = NULL;
    changed = (now == NULL) != (w->ignore_file == NULL) || (now && strcmp(now, w->ignore_file));
    free(now);
    return changed;
}

/* The ignore file's path in the folder ("" when it lies outside), to notice its edits. */
static const char *ignore_rel(const watcher *w)
{
    if (!w->ignore_file) return ".s3syncignore";
    return w->ignore_file[0] == '/' ? "" : w->ignore_file;
}

/* Start over: a fresh inotify instance (wds from 1 again), the ignore file read again, every
 * directory. */
static ss_rc rewatch(watcher *w, ss_err *err)
{
    ss_folder_ignore *ign = NULL;
    char *file = NULL;
    ss_rc rc = ss_folder_get_setting(w->root, "ignore_file", &file, NULL);
    if (rc) file = NULL; /* unset: .s3syncignore */
    rc = ss_folder_ignore_load(w->root, &ign, err);
    if (rc && !w->ign) {
        free(file);
        return rc;
    }
    /* Unreadable: the old patterns stay (the syncs fail on it and say so) until it is edited. */
    if (rc) say(err->msg);
    free(w->ignore_file);
    w->ignore_file = file; /* tried: not again at every poll */
    if (!rc) {
        ss_folder_ignore_free(w->ign);
        w->ign = ign;
    }
    if (w->ifd >= 0) close(w->ifd);
    forget_all(w);
    w->unwatched = 0;
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd < 0) return ss_fail(err, SS_ERR_IO, "inotify: %s", strerror(errno));
    return watch_tree(w, "", err);
}

/* --- events ------------------------------------------------------------------------------ */

static void note_change(watcher *w, int64_t now, const char *trigger)
{
    if (!w->dirty) {
        w->first_change = now;
        w->trigger = trigger;
    }
    w->dirty = 1;
    w->last_change = now;
}

static void on_child(watcher *w, const struct inotify_event *ev, const char *dir, int64_t now)
{
    int is_dir = !!(ev->mask & IN_ISDIR);
    char *child = NULL;
    ss_err err = {{0}};
    if (ss_folder_name_skipped(ev->name)) return; /* never synced, at any depth */
    if (!(child = join_rel(dir, ev->name))) {
        w->rewatch = 1; /* out of memory: start over later */
        return;
    }
    if (!strcmp(child, ignore_rel(w))) {
        w->rewatch = 1; /* what is watched may change */
    } else if (ss_folder_ignored(w->ign, child, is_dir)) {
        free(child);
        return;
    }
    /* A directory moved: the paths of the watches under it are stale (or it left the folder). */
    if (is_dir && (ev->mask & (IN_MOVED_FROM | IN_MOVED_TO)))
        w->rewatch = 1;
    else if (is_dir && (ev->mask & IN_CREATE) && watch_tree(w, child, &err))
        w->rewatch = 1;
    free(child);
    note_change(w, now, "local");
}

static void on_event(watcher *w, const struct inotify_event *ev, int64_t now)
{
    const char *dir = ev->wd >= 0 && (size_t)ev->wd < w->cap ? w->dirs[ev->wd] : NULL;
    if (ev->mask & IN_Q_OVERFLOW) { /* events were lost: rebuild and sync everything */
        w->rewatch = 1;
        note_change(w, now, "overflow");
        w->trigger = "overflow"; /* over "local": this sync is the one that must scan */
        return;
    }
    if (ev->mask & IN_IGNORED) { /* the directory is gone or no longer watched */
        forget(w, ev->wd);
        return;
    }
    if (!dir) return;
    if (!ev->len) { /* the directory itself; its parent told of a subdirectory's move */
        if (!*dir && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))) w->root_gone = 1;
        return;
    }
    on_child(w, ev, dir, now);
}

static void read_events(watcher *w)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    int fd = w->ifd;
    ssize_t n;
    /* on_event may not replace the instance: a rewatch waits for the loop */
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        int64_t now = now_ms();
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            on_event(w, ev, now);
            p += sizeof *ev + ev->len;
        }
    }
}

/* --- syncing ------------------------------------------------------------------------------ */

static int fatal_rc(ss_rc rc)
{
    /* The store failed verification, the folder's settings are bad, or this device was
     * revoked: retrying cannot help. */
    return rc == SS_ERR_INTEGRITY || rc == SS_ERR_INVALID || rc == SS_ERR_PASSPHRASE ||
           rc == SS_ERR_REVOKED;
}

/*
 * One sync (full: local changes or an overflow) or pull (an idle poll), the
 * folder opened for it alone. Returns -1 to go on, else the exit code.
 */
static int step(watcher *w, int full)
{
    ss_folder *f = NULL;
    ss_stats st = {0};
    ss_err err = {{0}};
    ss_store_opts so = *w->o->store_opts;
    const char *what = full ? "sync" : "pull";
    const char *trigger = full ? w->trigger : w->head_now ? "head" : "poll";
    int64_t t0 = now_ms(), now;
    int code = -1;
    ss_rc rc;
    /* Fail fast (a poll at once, a sync within ~3 s): the loop retries, with backoff, forever. */
    if (!so.max_retries && !getenv("AWS_MAX_ATTEMPTS")) so.max_retries = full ? 3 : 1;
    if (!full && !so.timeout_ms) so.timeout_ms = 30000;
    if (full) w->dirty = 0; /* a change from now on needs another sync */
    w->head_now = 0;
    g_busy = 1;
    rc = ss_folder_open(w->root, &so, &w->o->hooks, &f, &err);
    if (rc) goto closed;
    if (w->disc.fd >= 0) cli_disc_heard(&w->disc, f); /* no query: who serves said so */
    rc = full ? ss_sync(f, &st, &err) : ss_pull(f, &st, &err);
    if (!rc && w->srv) ss_serve_take(w->srv, f, NULL); /* whom it serves: as of this pull */
closed:
    ss_folder_free(f); /* releases the folder lock */
    g_busy = 0;
    now = now_ms();
    w->next_poll = now + w->interval_ms;
    if (!rc) {
        if (w->failing) report_recovered(w, now);
        w->failing = 0;
        w->backoff_ms = w->retry_at = 0;
        report_done(w, what, trigger, &st, now - t0);
        cli_heads_pulled(&w->serve, &w->heads, st.seq, 3 * w->interval_ms);
    } else {
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_FIRST_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
        w->retry_at = now + w->backoff_ms;
        if (full) note_change(w, now, trigger);
        report_failure(w, what, rc, &err, fatal_rc(rc));
        if (!w->failing) w->failing_since = t0;
        w->failing = 1;
        if (fatal_rc(rc)) code = rc == SS_ERR_INTEGRITY ? 3 : 1;
    }
    ss_stats_clear(&st);
    return code;
}

/* When the next sync or poll is due. */
static int64_t due_at(const watcher *w)
{
    int64_t t = w->next_poll;
    if (w->head_now) {
        t = 0;
    } else if (w->dirty) {
        t = w->last_change + QUIET_MS;
        if (t > w->first_change + MAX_DELAY_MS) t = w->first_change + MAX_DELAY_MS;
    }
    return t > w->retry_at ? t : w->retry_at;
}

static void wait_for_events(watcher *w, int64_t timeout_ms)
{
    struct pollfd p[4] = {{.fd = w->ifd, .events = POLLIN},
                          {.fd = g_wake[0], .events = POLLIN},
                          {.fd = w->lfd, .events = POLLIN},
                          {.fd = w->disc.fd, .events = POLLIN}};
    char drain[64];
    int64_t tick = w->srv ? cli_disc_tick(&w->disc, w->srv) : INT64_MAX;
    if (tick < timeout_ms) timeout_ms = tick;
    if (timeout_ms > INT32_MAX) timeout_ms = INT32_MAX;
    if (poll(p, w->lfd < 0 ? 2 : w->disc.fd < 0 ? 3 : 4, (int)timeout_ms) <= 0) return;
    if (p[0].revents) read_events(w);
    if (w->lfd >= 0 && w->disc.fd >= 0 && p[3].revents)
        cli_disc_readable(&w->disc, &w->serve, w->srv);
    if (w->lfd >= 0 && p[2].revents) {
        uint64_t known = w->heads.seq;
        cli_serve_one(&w->serve, w->srv, w->lfd, &w->heads);
        if (w->heads.seq > known) w->head_now = 1; /* pull now, not at the next poll */
    }
    while (read(g_wake[0], drain, sizeof drain) > 0) {
    }
}

static int loop(watcher *w)
{
    ss_err err = {{0}};
    int code = -1;
    while (!g_stop && code < 0) {
        int64_t now = now_ms(), due;
        if (w->root_gone) {
            fprintf(stderr, "s3sync watch: %s was moved or removed; stopping\n", w->root);
            return 1;
        }
        if (w->rewatch || (w->cap > 1024 && w->cap > 4 * w->live) ||
            (now >= due_at(w) && ignore_setting_changed(w))) {
            w->rewatch = 0;
            if (rewatch(w, &err)) {
                say(err.msg);
                return 1;
            }
            note_change(w, now, "rescan");
        }
        due = due_at(w);
        /* A head: a pull at once (it keeps local changes); their sync waits for quiet. */
        if (now >= due)
            code = step(w, !w->head_now && (w->dirty || w->unwatched));
        else
            wait_for_events(w, due - now);
    }
    return code < 0 ? 0 : code;
}

static void report_start(watcher *w)
{
    if (w->o->json)
        emit(json_pack("{s:s, s:s, s:I, s:f}", "event", "start", "dir", w->root, "directories",
                       (json_int_t)w->live, "interval", w->o->interval_s));
    else if (w->o->verbose)
        fprintf(stderr, "watch: watching %s (%zu director%s), polling every %g s\n", w->root,
                w->live, w->live == 1 ? "y" : "ies", w->o->interval_s);
}

static void report_stop(watcher *w)
{
    const char *sig = g_stop == SIGINT ? "SIGINT" : "SIGTERM";
    if (w->o->json)
        emit(json_pack("{s:s, s:s}", "event", "stop", "signal", sig));
    else if (w->o->verbose)
        fprintf(stderr, "watch: stopped (%s)\n", sig);
}

/* --- entry points ------------------------------------------------------------------------- */

const char *cli_watch_check(cli_watch *w, int argc)
{
    char *end = NULL;
    if (argc) return "watch takes no arguments (only --interval SECONDS)";
    w->interval_s = DEFAULT_INTERVAL_S;
    if (!w->interval) return NULL;
    w->interval_s = strtod(w->interval, &end);
    if (end == w->interval || *end || !isfinite(w->interval_s) || w->interval_s < 0.1 ||
        w->interval_s > MAX_INTERVAL_S)
        return "--interval needs SECONDS between 0.1 and 86400";
    return NULL;
}

/*
 * Serve peers meanwhile when the folder sets peer_listen (watch opens no
 * port unless asked; s3sync serve does by default): a port taken or a
 * cache_size of 0 is said once, and the watch goes on without.
 */
static void start_serving(watcher *w)
{
    char *listen = NULL;
    ss_err err = {{0}};
    char msg[sizeof err.msg + 32];
    w->serve = (cli_serve){.dir = w->root,
                           .store_opts = w->o->store_opts,
                           .hooks = w->o->hooks,
                           .quiet = w->o->quiet,
                           .verbose = w->o->verbose,
                           .json = w->o->json};
    if (ss_folder_get_setting(w->root, "peer_listen", &listen, NULL) || !strcmp(listen, "off")) {
        free(listen);
        return;
    }
    free(listen);
    w->lfd = cli_serve_start(&w->serve, w->root, &w->srv, &err);
    if (w->lfd >= 0) {
        cli_disc_open(&w->disc, &w->serve, w->srv, w->lfd);
        return;
    }
    snprintf(msg, sizeof msg, "not serving peers: %s", err.msg);
    say(msg);
}

int cli_watch_run(cli_watch *o)
{
    watcher w = {.o = o, .ifd = -1, .trigger = "start", .lfd = -1, .disc = {.fd = -1}};
    ss_err err = {{0}};
    ss_rc rc;
    int code = 1;
    w.interval_ms = (int64_t)(o->interval_s * 1000);
    if (setup_signals()) {
        fprintf(stderr, "s3sync watch: signals: %s\n", strerror(errno));
        return 1;
    }
    rc = ss_folder_find(o->dir ? o->dir : ".", &w.root, &err);
    if (rc) goto failed;
    rc = rewatch(&w, &err);
failed:
    if (rc) {
        say(err.msg[0] ? err.msg : ss_strerror(rc));
        goto out;
    }
    report_start(&w);
    start_serving(&w);
    w.dirty = 1; /* a sync first: what changed while nobody watched */
    w.first_change = w.last_change = now_ms() - MAX_DELAY_MS;
    code = loop(&w);
    if (g_stop && !code) report_stop(&w);
out:
    cli_disc_close(&w.disc);
    if (w.lfd >= 0) close(w.lfd);
    ss_serve_free(w.srv);
    if (w.ifd >= 0) close(w.ifd);
    forget_all(&w);
    ss_folder_ignore_free(w.ign);
    free(w.ignore_file);
    free(w.root);
    return code;
}
