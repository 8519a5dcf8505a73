/*
 * cli-fixture: the s3sync binary (S3SYNC_BIN) driven as a user drives it,
 * shared by the integration tests (test-sync, test-lockd-sync). A world is
 * a temp dir holding devices A, B, C (folders joined with `s3sync init`) and
 * the store URL they sync through; s3sync is spawned with posix_spawn, its
 * stdout (--json) and stderr captured in memfds; trees are compared byte for
 * byte; scenarios are scripts of steps played by play().
 *
 * Failures go through cmocka (fail()); failf() prefixes the script step
 * being played (g_step).
 */
#ifndef SS_CLI_FIXTURE_H
#define SS_CLI_FIXTURE_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <jansson.h>

#ifndef S3SYNC_BIN
#error "S3SYNC_BIN must name the s3sync binary"
#endif

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define COUNT(a) (sizeof(a) / sizeof *(a))
#define MIB (1024u * 1024)

enum { A, B, C, MAX_DEV };

extern char g_step[256]; /* the script step being played, for failure messages */

void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct world {
    char root[128];           /* temp dir: devices, the file store, outside things */
    char url[256];            /* the store */
    char dev[MAX_DEV][160];   /* device folders */
    char token[MAX_DEV][256]; /* lockd stores: each device's --token-file ("" none) */
    int n;                    /* devices joined */
} world;

/* --- suites and worlds ---------------------------------------------------------------- */

/*
 * What every suite does first: libsodium, a random run tag (so runs never
 * share s3 prefixes), and the environment every s3sync child inherits: a
 * fast KDF, a passphrase, none of the variables that would change what a
 * test sees. suite names the temp dirs and store prefixes. -1 on failure.
 */
int fixture_init(const char *suite);
/* S3SYNC_TEST_BUCKET when an RGW endpoint is set (ci/rgw.sh), else NULL. */
const char *fixture_bucket(void);
/* The store of worlds made from now on: 0 a file:// store in the world's root, 1 RGW. */
void fixture_use_s3(int on);
/*
 * cmocka setup and teardown of one world: a fresh root with device folders
 * (not joined) and a store of its own. world_close empties the world's s3
 * prefix and removes its root, unless S3SYNC_KEEP=1 (then both are printed).
 */
int world_open(void **state);
int world_close(void **state);
/* The keys under prefix of the store at url, in order, with their sizes. */
typedef struct listing {
    char **v;
    uint64_t *size;
    size_t n;
} listing;
listing store_listing(const char *url, const char *prefix);
void listing_free(listing *l);
/* The world's store, opened (the caller frees it). */
struct ss_store;
struct ss_store *world_store(const world *w);
/* Every key of the store at url, in order; NULL-terminated, free with keys_free. */
char **store_keys(const char *url, size_t *ret_n);
void keys_free(char **keys);
/*
 * Run tests once on file:// stores and, with RGW, once more on s3:// ("SUITE/file", "SUITE/s3"):
 * the parts "file" and "s3" (fixture_part).
 */
struct CMUnitTest;
int fixture_run_file_and_s3(const struct CMUnitTest *tests, size_t n);
/*
 * Parts of a long suite: with S3SYNC_TEST_PART=NAME set (tests/CMakeLists.txt's
 * ss_split_test), a suite runs only the part NAME, so ctest can run its parts on two
 * cores at once; unset, every part. fixture_part(name): whether part name runs now.
 * fixture_parts_end(): 1 (and says so) when S3SYNC_TEST_PART named no part of the suite,
 * so a misspelt part fails instead of passing with nothing run; a split suite's main
 * returns it with its result.
 */
int fixture_part(const char *name);
int fixture_parts_end(void);

/* dir/rel in one of a few rotating buffers (valid for the next 15 calls). */
const char *at_dir(const char *dir, const char *rel);
const char *at(const world *w, int d, const char *rel);

/* --- running s3sync ------------------------------------------------------------------ */

typedef struct child {
    pid_t pid;
    int out, err;
} child;

typedef struct outcome {
    int code; /* exit code; -1 when killed */
    int sig;  /* the signal that killed it; 0 when it exited */
    char *out, *err;
    json_t *json; /* stdout parsed; NULL when not JSON */
} outcome;

/* Start argv[0] (a path) with env overrides ("NAME=value" sets, "NAME" unsets). */
child start_prog(const char *const *env, const char *const *argv);
outcome finish(child c); /* wait, collect stdout and stderr */
/* finish, but SIGKILL it when it has not ended within seconds (a hang shows as sig 9). */
outcome finish_within(child c, double seconds);
/* Wait until c stops itself at a pause point (S3SYNC_PAUSE_AT, core/fault.h); SIGCONT goes on. */
void expect_stopped(child c, const char *what);
void outcome_free(outcome *o);
/* s3sync with args (NULL-terminated). */
child start_cli(const char *const *env, const char *const *args);
outcome run_cli(const char *const *env, const char *const *args);
/* s3sync -C DEV --json [--token-file T] CMD */
child start_cmd(const world *w, int d, const char *const *env, const char *cmd);
outcome run_cmd(const world *w, int d, const char *const *env, const char *cmd);
/* s3sync -C DEV --json [--token-file T] ARGS... (NULL-terminated), with env overrides. */
outcome run_on(const world *w, int d, const char *const *env, const char *const *args);
/* The same without env, which must succeed with a JSON object on stdout (the caller decrefs). */
json_t *ok_on(const world *w, int d, const char *const *args);
void expect_exit(outcome *o, int code, const char *what);
/* cmd on d meets a store fork at log/<seq>: exit 3, one line naming it, d's folder still snap. */
void expect_fork(const world *w, int d, const char *cmd, const char *snap, uint64_t seq);
int64_t jint(const json_t *j, const char *key);
/* Run cmd on device d, which must succeed; its --json (the caller decrefs). */
json_t *ok_json(const world *w, int d, const char *cmd);
void ok(const world *w, int d, const char *cmd);
/* Make device d's folder: create the repository or join it. */
void join(world *w, int d);
/* A no-change sync: one request, nothing sent, nothing changed. */
void expect_idle_sync(const world *w, int d);
double now_s(void); /* monotonic seconds */

/* --- files and trees ----------------------------------------------------------------- */

void make_parents(const char *path);
void write_bytes(const char *path, const void *data, size_t len);
/* len fresh pseudo-random bytes (a new seed per call, reproducible per run). */
void write_random(const char *path, size_t len);
void flip_middle_byte(const char *path);
void rm_rf(const char *path);
/* scandir helpers: names but . and .., sorted by name. */
int not_dots(const struct dirent *e);
int by_name(const struct dirent **a, const struct dirent **b);
void free_list(struct dirent **v, int n);
/* The bytes of a regular file (NUL-terminated), or NULL when it cannot be read. */
char *read_file(const char *path, size_t *len);
int same_content(const char *a, const char *b);
/*
 * Trees a and b hold the same names, types, modes, contents, link targets and
 * mtimes of files and links, to the nanosecond (.s3sync/ aside; a directory's
 * mtime moves with its entries and is not kept).
 */
void expect_same_tree(const char *a, const char *b);
void expect_converged(const world *w);
/* Depth-first walk of a folder (.s3sync/ skipped); fn returns non-zero to stop. */
typedef int (*walk_fn)(void *ctx, const char *path, const char *rel, const struct stat *st);
int walk(const char *dir, const char *rel, walk_fn fn, void *ctx);
/* walk_fns for count_in: files holding exactly data; entries whose name contains data. */
int count_content(void *ctx, const char *path, const char *rel, const struct stat *st);
int count_name(void *ctx, const char *path, const char *rel, const struct stat *st);
int count_in(const char *dir, walk_fn fn, const char *data);
void expect_content(const char *path, const char *data); /* data NULL: path is gone */
/* A copy of dir, to compare with later (cp -a keeps modes, links and times). */
void snapshot(const char *dir, const char *copy);
/*
 * walk_fn after a kill (ctx: const char *trees[2], the old and the new
 * tree): a regular file that is neither its old nor its new content is
 * told on stderr and stops the walk; temp files (SS_FS_TMP_PREFIX) are
 * not looked at.
 */
int old_or_new(void *ctx, const char *path, const char *rel, const struct stat *st);
/* Neither A nor B holds a conflict copy or a temp file (after a crash, once synced). */
/* Files in dev's .s3sync/tmp that a pull staged (core/engine/stage.c). */
int staged_files(const char *dev);
void expect_no_leftovers(const world *w);

/* --- scripts -------------------------------------------------------------------------- */

/*
 * One step of a scenario. op:
 *   'w' write data at path          'r' write (decimal) data random bytes at path
 *   'f' flip the middle byte        'm' make directory path
 *   'l' symlink path -> data        'c' chmod path to octal data
 *   'v' rename path to data         'x' remove path (a tree too)
 *   's' sync (data: at most this many bytes up, when set)
 *   'd' sync (data: at most this many bytes down, when set)
 *   '=' every joined device holds the same tree
 *   '?' path holds data (NULL: path is gone)
 *   '1' exactly one file of the folder holds data
 *   'L' path is a symlink to data
 */
typedef struct step {
    int dev;
    char op;
    const char *path, *data;
} step;

/* Sync device d; when max_bytes is set, its --json field (bytes_up, bytes_down) is at most that. */
void sync_dev(const world *w, int d, const char *max_bytes, const char *field);
void play(const world *w, const step *s, size_t n);

#endif
