/*
 * test-malicious: a device that holds the key turns against the others.
 *
 * Owns the scenarios beyond test-sync's tampering (a flipped byte, a gap, a
 * replayed object, a cut pack) where the attacker can seal valid objects:
 * the forger (below) joins with the passphrase, walks the log to the hash
 * chain's head, and writes hand-made transaction bytes (docs/FORMAT.md
 * "Transactions", byte by byte: the encoder refuses to write them) as the
 * next log object, correctly framed and chained. Each crafted transaction
 * starts with a harmless op where path order allows, so "applies nothing"
 * is seen: device B's `s3sync pull` must exit 3 with one line on stderr,
 * leave B's folder as it was (byte for byte) and create nothing outside it.
 * The forged object is then deleted and the next case forged at the same
 * sequence. Then the attacks that need no key: a log object of another
 * repository with the same passphrase, and a store rolled back (objects
 * deleted, then the sequence rewritten by a device that never saw them).
 * Last, what needs no forging at all: setuid, setgid and sticky modes pushed
 * by an ordinary device (test_special_modes, on file:// and on RGW).
 *
 * What else a device (one holding the key, or an ordinary one) can send:
 * the rows an older version kept after applying sub/.s3sync/... must not
 * stop a push for good (test_legacy_control_rows).
 * A .s3syncignore made a symlink to /dev/zero or a fifo, or over 1 MiB,
 * must not hang or flood another device (test_ignore_file_not_followed).
 * Escape sequences in file and device names must reach no terminal raw
 * (test_hostile_names).
 *
 * The store is s3:// on RGW when AWS_ENDPOINT_URL and S3SYNC_TEST_BUCKET
 * are set (ci/test.sh), file:// otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "chunker.h"
#include "cli-fixture.h"
#include "format.h"
#include "frame.h"
#include "path.h"
#include "repo.h"
#include "s3store.h"
#include "seal.h"
#include "state.h"
#include "forger.h"
#include "txn-fixture.h"

#define PASS "correct horse battery staple"

/* --- worlds ------------------------------------------------------------------------- */

/* A second repository's store beside the world's (same bucket or root, its own prefix). */
static void other_url(const world *w, char *url, size_t cap)
{
    if ((size_t)snprintf(url, cap, "%.240s-other", w->url) >= cap) failf("URL too long");
}

/* The fixture's world_close empties the world's own prefix; the other one goes here. */
static int world_teardown(void **state)
{
    const world *w = *state;
    char other[300];
    other_url(w, other, sizeof other);
    if (!strncmp(other, "s3://", 5)) {
        listing k = store_listing(other, "");
        ss_store *s = NULL;
        if (!ss_store_open(other, NULL, &s, NULL))
            for (size_t i = 0; i < k.n; i++)
                ss_store_delete(s, k.v[i], NULL);
        ss_store_free(s);
        listing_free(&k);
    }
    return world_close(state);
}

static void check(ss_rc rc, const ss_err *err, const char *what)
{
    if (rc) failf("%s: %s", what, err->msg);
}

static void *get_obj(ss_store *s, const char *key, size_t *len)
{
    void *obj = NULL;
    ss_err err = {{0}};
    check(ss_store_get(s, key, 0, SS_TO_END, &obj, len, &err), &err, key);
    return obj;
}

/* --- crafted transactions ------------------------------------------------------------------ */

#define BENIGN "!benign.txt" /* sorts before every path the cases break */
#define EVIL "evil"          /* what no case may leave anywhere */

typedef struct ctx {
    const world *w;
    const forger *f;
    uint64_t seq;
    char abs[256];    /* an absolute path outside every folder */
    const char *path; /* the case's hostile path, for the cases made from a table */
} ctx;

static void c_dotdot(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "../escape.txt", 13, EVIL);
}

static void c_dotdot_inner(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "d/../../escape.txt", 18, EVIL);
}

static void c_absolute(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2); /* '/' sorts lowest: the absolute path first */
    t_file(b, c->f, c->abs, strlen(c->abs), EVIL);
    t_file(b, c->f, "zz-benign.txt", 13, "harmless");
}

static void c_meta_file(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, ".s3sync/master.key", 18, EVIL);
}

static void c_meta_delete(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_delete(b, ".s3sync/state.db");
}

static void c_meta_dir(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_link(b, ".s3sync", "/", 1);
}

/* A file at the case's path: a control folder below the root, or an alias of one. */
static void c_hostile_path(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, c->path, strlen(c->path), EVIL);
}

static void c_nul(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "nul\0../../escape.txt", 20, EVIL);
}

static void c_empty_segment(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "a//b", 4, EVIL);
}

static void c_dot(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "./x", 3, EVIL);
}

/* A symlink out of the folder and a file through it, in one transaction. */
static void c_link_then_through(const ctx *c, buf *b)
{
    char through[300];
    snprintf(through, sizeof through, "lnk/escape.txt");
    t_header(b, c->f, NULL, c->seq, 0, 3);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_link(b, "lnk", c->w->root, strlen(c->w->root));
    t_file(b, c->f, through, strlen(through), EVIL);
}

/* Through "out", a symlink out of the folder that an earlier transaction made. */
static void c_through_old_link(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, "out/escape.txt", 14, EVIL);
}

static void c_delete_through_old_link(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_delete(b, "out/victim.txt");
}

static void c_path_too_long(const ctx *c, buf *b)
{
    char *p = malloc(SS_PATH_MAX + 2);
    memset(p, 'p', SS_PATH_MAX + 1);
    p[SS_PATH_MAX + 1] = '\0';
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_file(b, c->f, p, SS_PATH_MAX + 1, EVIL);
    free(p);
}

static void c_huge_ops(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, UINT32_MAX);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
}

static void c_huge_packs(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, UINT32_MAX, 1);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
}

static void c_huge_path_len(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    b_uint(b, 0xffff, 2); /* declares 65535 bytes, holds 4 */
    b_mem(b, "evil", 4);
}

static void c_huge_inline(const ctx *c, buf *b)
{
    uint8_t cid[32] = {0};
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    t_path(b, "big.bin", 7);
    t_attrs(b, SS_TXN_KIND_FILE, UINT32_MAX);
    b_mem(b, cid, sizeof cid);
    b_uint(b, SS_TXN_STORAGE_INLINE, 1);
    b_uint(b, UINT32_MAX, 4);
    b_mem(b, EVIL, 4);
}

static void c_huge_chunks(const ctx *c, buf *b)
{
    uint8_t cid[32] = {0};
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    t_path(b, "big.bin", 7);
    t_attrs(b, SS_TXN_KIND_FILE, UINT64_MAX);
    b_mem(b, cid, sizeof cid);
    b_uint(b, SS_TXN_STORAGE_CHUNKS, 1);
    b_uint(b, UINT32_MAX, 4);
}

static void c_huge_target(const ctx *c, buf *b)
{
    char *t = malloc(SS_TXN_TARGET_MAX + 1);
    memset(t, 't', SS_TXN_TARGET_MAX + 1);
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    t_link(b, "link", t, SS_TXN_TARGET_MAX + 1);
    free(t);
}

static void c_wrong_seq(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq + 1000, 0, 1);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
}

static void c_trailing(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 1);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    b_mem(b, EVIL, 4);
}

static void c_out_of_order(const ctx *c, buf *b)
{
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, "zz-benign.txt", 13, "harmless");
    t_file(b, c->f, BENIGN, strlen(BENIGN), EVIL);
}

/* Bytes that are not what the content id says: a device would take it for another version. */
static void c_bad_content_id(const ctx *c, buf *b)
{
    size_t at;
    t_header(b, c->f, NULL, c->seq, 0, 2);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    at = b->len;
    t_file(b, c->f, "victim.txt", 10, EVIL);
    b->p[at + 1 + 2 + 10 + 25] ^= 1; /* type, path, kind/mode/mtime/size: the content id */
}

/*
 * A 4-byte file stored as a chunk (a real one, sealed and uploaded) under a
 * content id that lies: a reader that checked content ids only of inline
 * files and of files above the inline limit would apply it.
 */
static void c_small_as_chunks(const ctx *c, buf *b)
{
    const ss_keys *keys = ss_repo_keys(c->f->repo);
    char pack[64];
    uint8_t cid[32] = {0}, chunk_id[SS_CHUNK_ID_LEN];
    void *sealed = NULL;
    size_t sealed_len = 0;
    ss_err err = {{0}};
    snprintf(pack, sizeof pack, "data/%020" PRIu64 "-0123456789abcdef", c->seq);
    ss_chunk_id(ss_keys_subkey(keys, SS_SUBKEY_CHUNK_ID), EVIL, 4, chunk_id);
    check(ss_chunk_seal(keys, 0, chunk_id, EVIL, 4, 0, 1, &sealed, &sealed_len, &err), &err,
          "seal");
    check(ss_store_put(c->f->store, pack, sealed, sealed_len, SS_PUT_CREATE_ONLY, &err), &err,
          pack);
    free(sealed);
    t_header(b, c->f, NULL, c->seq, 1, 2);
    t_path(b, pack, strlen(pack));
    t_devices_none(b);
    t_file(b, c->f, BENIGN, strlen(BENIGN), "harmless");
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    t_path(b, "small.txt", 9);
    t_attrs(b, SS_TXN_KIND_FILE, 4);
    b_mem(b, cid, sizeof cid);
    b_uint(b, SS_TXN_STORAGE_CHUNKS, 1);
    b_uint(b, 1, 4);
    b_uint(b, 0, 4); /* pack index, offset, sealed and plain length, id */
    b_uint(b, 0, 8);
    b_uint(b, sealed_len, 4);
    b_uint(b, 4, 4);
    b_mem(b, chunk_id, sizeof chunk_id);
}

typedef struct mal_case {
    const char *what;
    void (*craft)(const ctx *c, buf *b);
} mal_case;

static const mal_case g_cases[] = {
    {"../ at the start", c_dotdot},
    {"../ inside", c_dotdot_inner},
    {"an absolute path", c_absolute},
    {"a file in .s3sync/", c_meta_file},
    {"a delete in .s3sync/", c_meta_delete},
    {".s3sync replaced by a symlink", c_meta_dir},
    {"a NUL inside a path", c_nul},
    {"an empty segment", c_empty_segment},
    {"a . segment", c_dot},
    {"a symlink out and a file through it", c_link_then_through},
    {"a file through an applied symlink", c_through_old_link},
    {"a delete through an applied symlink", c_delete_through_old_link},
    {"a path over 4096 bytes", c_path_too_long},
    {"2^32-1 ops declared", c_huge_ops},
    {"2^32-1 packs declared", c_huge_packs},
    {"a path length past the end", c_huge_path_len},
    {"a 4 GiB inline file", c_huge_inline},
    {"2^32-1 chunks of a 2^64-1 byte file", c_huge_chunks},
    {"a symlink target over 4096 bytes", c_huge_target},
    {"a header seq that is not the object's", c_wrong_seq},
    {"trailing bytes", c_trailing},
    {"paths out of order", c_out_of_order},
    {"a content id that lies", c_bad_content_id},
    {"a 4-byte file stored as chunks", c_small_as_chunks},
};

/* c_hostile_path's paths: control folders below the root, and aliases of .s3sync. */
static const struct {
    const char *what, *path;
} g_paths[] = {
    /* Run a command in sub/ and it would use the sender's settings (its store, its lockd). */
    {"sub/.s3sync/config", "sub/.s3sync/config"},
    {"sub/.s3sync/master.key", "sub/.s3sync/master.key"},
    /* On a case-insensitive or casefolded file system, each of these is .s3sync itself. */
    {".S3SYNC/config", ".S3SYNC/config"},
    {"sub/.s3sYnc/state.db", "sub/.s3sYnc/state.db"},
    {".\\u017f3sync/config (long s)", ".\xc5\xbf"
                                      "3sync/config"},
    {".s3\\u200dsync/config (zero width joiner)", ".s3\xe2\x80\x8d"
                                                  "sync/config"},
    {".s3sync\\ufe0f/config (variation selector)", ".s3sync\xef\xb8\x8f/config"},
    {".s3sync./config (trailing dot)", ".s3sync./config"},
    {"..\\u200d/escape.txt ('..' to a casefolding file system)", "..\xe2\x80\x8d/escape.txt"},
};

/* B pulls: exit 3, one line, nothing changed in B, nothing made outside. */
static void expect_refused(const world *w, const char *snap, const char *forged)
{
    outcome o = run_cli(NULL, ARGS("-C", w->dev[B], "pull"));
    struct stat st;
    expect_exit(&o, 3, "pull of a forged transaction");
    if (!*o.err || strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
        failf("not one line: %s", o.err);
    if (!strstr(o.err, forged)) failf("%s is not named: %s", forged, o.err);
    outcome_free(&o);
    expect_same_tree(w->dev[B], snap);
    if (!lstat(at_dir(w->root, "escape.txt"), &st)) failf("escape.txt was written outside B");
    if (lstat(at_dir(w->root, "victim.txt"), &st)) failf("victim.txt outside B was deleted");
}

static void test_forged(void **state)
{
    world *w = *state;
    forger f;
    ctx c = {w, &f, 0, "", NULL};
    char snap[200], forged[SS_KEY_NAME_MAX];
    ss_err err = {{0}};
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    snprintf(c.abs, sizeof c.abs, "%s/abs-escape.txt", w->root + 1); /* no leading '/' yet */
    memmove(c.abs + 1, c.abs, strlen(c.abs) + 1);
    c.abs[0] = '/';
    join(w, A);
    join(w, B);
    /* A legal symlink out of the folder, and a victim beside the folders. */
    write_bytes(at_dir(w->root, "victim.txt"), "victim", 6);
    write_bytes(at(w, A, "a.txt"), "a", 1);
    if (symlink(w->root, at(w, A, "out"))) failf("symlink: %s", strerror(errno));
    ok(w, A, "push");
    ok(w, B, "pull");
    forger_open(&f, w->url, PASS);
    forger_enroll(&f); /* a device of the repository, so only the content is hostile */
    ok(w, B, "pull");
    snapshot(w->dev[B], snap);
    for (size_t i = 0; i < COUNT(g_cases) + COUNT(g_paths); i++) {
        int crafted = i < COUNT(g_cases); /* else a hostile path of g_paths */
        buf b = {0};
        snprintf(g_step, sizeof g_step, "%s",
                 crafted ? g_cases[i].what : g_paths[i - COUNT(g_cases)].what);
        c.seq = f.head + 1;
        c.path = crafted ? NULL : g_paths[i - COUNT(g_cases)].path;
        (crafted ? g_cases[i].craft : c_hostile_path)(&c, &b);
        forge(&f, &b, SIG_OWN, forged);
        free(b.p);
        expect_refused(w, snap, forged);
        if (!lstat(c.abs, &(struct stat){0})) failf("%s was written", c.abs);
        check(ss_store_delete(f.store, forged, &err), &err, forged);
    }
    g_step[0] = '\0';
    /* What the forger may do it can do through the front door: B takes it. */
    {
        buf b = {0};
        c.seq = f.head + 1;
        t_header(&b, &f, NULL, c.seq, 0, 1);
        t_file(&b, &f, BENIGN, strlen(BENIGN), "harmless");
        forge(&f, &b, SIG_OWN, forged);
        free(b.p);
        ok(w, B, "pull");
        expect_content(at(w, B, BENIGN), "harmless");
    }
    forger_free(&f);
    rm_rf(snap);
}

/* --- names a terminal would act on ------------------------------------------------------ */

/* Nothing raw that drives a terminal (ESC, BEL, C1), and the hostile name shown escaped. */
static void expect_shown_safely(const char *text, const char *what, const char *escaped)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if ((*c < 0x20 && *c != '\n') || *c == 0x7f ||
            (c[0] == 0xc2 && c[1] >= 0x80 && c[1] < 0xa0))
            failf("%s: a raw control byte 0x%02x reaches the terminal: %s", what, *c, text);
    if (escaped && !strstr(text, escaped)) failf("%s: \"%s\" not shown: %s", what, escaped, text);
}

/*
 * An enrolled device whose name and file name carry escape sequences (a
 * window title, a cleared screen, hidden text, a C1 CSI): B's pull -v, the
 * conflict warning, log -v and device list show them escaped.
 */
static void test_hostile_names(void **state)
{
    static const char path[] = "\x1b]0;owned\x07\x1b[2J\xc2\x9b"
                               "31m.txt";
    world *w = *state;
    forger f;
    buf b = {0};
    char forged[SS_KEY_NAME_MAX];
    outcome o;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "a.txt"), "a", 1);
    ok(w, A, "push");
    ok(w, B, "pull");
    forger_open(&f, w->url, PASS);
    snprintf(f.name, sizeof f.name, "EVE\x1b[8m");
    forger_enroll(&f);
    write_bytes(at(w, B, path), "B's own", 7); /* the forged file meets a local one: a conflict */
    t_header(&b, &f, NULL, f.head + 1, 0, 1);
    t_file(&b, &f, path, strlen(path), "from EVE");
    forge(&f, &b, SIG_OWN, forged);
    free(b.p);
    snprintf(g_step, sizeof g_step, "pull -v");
    o = run_cli(NULL, ARGS("-C", w->dev[B], "-v", "pull"));
    expect_exit(&o, 0, "pull of a hostile name");
    expect_shown_safely(o.err, "pull -v", "\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b31m.txt");
    if (!strstr(o.err, "conflict")) failf("no conflict warning: %s", o.err);
    outcome_free(&o);
    expect_content(at(w, B, path), "from EVE");
    snprintf(g_step, sizeof g_step, "log -v PATH");
    o = run_cli(NULL, ARGS("-C", w->dev[B], "-v", "log", at(w, B, path)));
    expect_exit(&o, 0, "log -v");
    expect_shown_safely(o.out, "log -v", "EVE\\x1b[8m");
    expect_shown_safely(o.out, "log -v", "\\x1b]0;owned");
    outcome_free(&o);
    snprintf(g_step, sizeof g_step, "device list");
    o = run_cli(NULL, ARGS("-C", w->dev[B], "device", "list"));
    expect_exit(&o, 0, "device list");
    expect_shown_safely(o.out, "device list", "EVE\\x1b[8m");
    outcome_free(&o);
    g_step[0] = '\0';
    forger_free(&f);
}

/* --- files the engine reads from the folder -------------------------------------------- */

/* s3sync -C dev ARGS, killed if it takes a minute (a hang is a failure, not a stuck suite). */
static outcome run_within(const world *w, int d, const char *const *args)
{
    const char *argv[8] = {"-C", w->dev[d]};
    for (size_t i = 0; args[i]; i++) {
        assert_true(i + 3 < COUNT(argv));
        argv[i + 2] = args[i];
    }
    return finish_within(start_cli(NULL, argv), 60);
}

/* B's command fails at once with one line naming .s3syncignore and why. */
static void expect_ignore_refused(const world *w, const char *cmd, const char *why)
{
    outcome o = run_within(w, B, ARGS(cmd));
    if (o.sig) failf("%s was killed after a minute: it hung on .s3syncignore", cmd);
    expect_exit(&o, 1, cmd);
    if (!strstr(o.err, ".s3syncignore") || !strstr(o.err, why) ||
        strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
        failf("%s: not one line naming .s3syncignore (%s): %s", cmd, why, o.err);
    fprintf(stderr, "  %s: %s", cmd, o.err);
    outcome_free(&o);
}

/* B pulls what A made of its .s3syncignore: the pull itself never reads it. */
static void push_and_pull(const world *w)
{
    outcome o;
    ok(w, A, "push");
    o = run_within(w, B, ARGS("pull"));
    if (o.sig) failf("pull was killed after a minute: it hung on .s3syncignore");
    expect_exit(&o, 0, "pull");
    outcome_free(&o);
}

/*
 * A device (its own patterns in ignore_file, so it is not bothered itself)
 * makes .s3syncignore a symlink to /dev/zero, then to a fifo, then a 2 MiB
 * file. Once every command on every device hung there (and ate memory);
 * now B's pull goes on, its push and status fail with one line naming the
 * file, and once A removes it B's sync heals.
 */
static void test_ignore_file_not_followed(void **state)
{
    world *w = *state;
    char fifo[200];
    outcome o;
    snprintf(fifo, sizeof fifo, "%s/fifo", w->root);
    if (mkfifo(fifo, 0644)) failf("mkfifo: %s", strerror(errno));
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, ".myignore"), "*.tmp\n", 6);
    o = run_cli(NULL, ARGS("-C", w->dev[A], "config", "set", "ignore_file", ".myignore"));
    expect_exit(&o, 0, "config set ignore_file");
    outcome_free(&o);
    snprintf(g_step, sizeof g_step, ".s3syncignore -> /dev/zero");
    if (symlink("/dev/zero", at(w, A, ".s3syncignore"))) failf("symlink: %s", strerror(errno));
    push_and_pull(w);
    expect_ignore_refused(w, "push", "symlink");
    expect_ignore_refused(w, "status", "symlink");
    snprintf(g_step, sizeof g_step, ".s3syncignore -> a fifo");
    if (unlink(at(w, A, ".s3syncignore")) || symlink(fifo, at(w, A, ".s3syncignore")))
        failf("symlink: %s", strerror(errno));
    push_and_pull(w);
    expect_ignore_refused(w, "sync", "symlink");
    snprintf(g_step, sizeof g_step, ".s3syncignore of 2 MiB");
    unlink(at(w, A, ".s3syncignore"));
    write_random(at(w, A, ".s3syncignore"), 2 * MIB);
    push_and_pull(w);
    expect_ignore_refused(w, "push", "1024 KiB");
    snprintf(g_step, sizeof g_step, ".s3syncignore removed by A");
    unlink(at(w, A, ".s3syncignore"));
    ok(w, A, "push");
    o = run_within(w, B, ARGS("sync"));
    expect_exit(&o, 0, "sync once A removed it");
    outcome_free(&o);
    ok(w, A, "pull");
    expect_same_tree(w->dev[A], w->dev[B]);
    g_step[0] = '\0';
}

/*
 * What an older s3sync left after applying a hostile sub/.s3sync/config:
 * the file, and rows in its state (put here through the state's own API,
 * as it put them). The next push must not fail for good on paths no
 * transaction may hold: it skips the folder with a warning, forgets the
 * rows, and sends nothing of them.
 */
static void test_legacy_control_rows(void **state)
{
    static const char *const paths[] = {"sub/.s3sync", "sub/.s3sync/config"};
    world *w = *state;
    ss_state *st = NULL;
    ss_err err = {{0}};
    outcome o;
    json_t *j;
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "sub/a.txt"), "a", 1);
    ok(w, A, "push");
    ok(w, B, "pull");
    write_bytes(at(w, B, "sub/.s3sync/config"), "store = file:///elsewhere\n", 26);
    check(ss_state_open(at(w, B, ".s3sync/state.db"), 0, &st, &err), &err, "state");
    check(ss_state_begin(st, &err), &err, "begin");
    for (size_t i = 0; i < COUNT(paths); i++) {
        ss_state_row row = {.path = paths[i],
                            .kind = i ? SS_TXN_FILE : SS_TXN_DIR,
                            .mode = i ? 0644 : 0755,
                            .size = i ? 26 : 0,
                            .ctime_s = -1};
        check(ss_state_put(st, &row, &err), &err, paths[i]);
    }
    check(ss_state_commit(st, &err), &err, "commit");
    ss_state_free(st);
    o = run_cmd(w, B, NULL, "push");
    expect_exit(&o, 0, "push beside rows an older version left");
    if (!strstr(o.err, "skipping sub/.s3sync")) failf("no warning for sub/.s3sync: %s", o.err);
    outcome_free(&o);
    ok(w, A, "pull");
    expect_content(at(w, A, "sub/.s3sync/config"), NULL);
    j = ok_json(w, B, "status");
    if (jint(j, "pending_local")) failf("status still counts the forgotten rows");
    json_decref(j);
}

/* --- attacks without the key --------------------------------------------------------------- */

static void copy_obj(ss_store *from, ss_store *to, const char *key, unsigned flags)
{
    size_t len = 0;
    void *obj = get_obj(from, key, &len);
    ss_err err = {{0}};
    check(ss_store_put(to, key, obj, len, flags, &err), &err, key);
    free(obj);
}

/* A and B on one repository, D (in C's slot) on another with the same passphrase. */
static void test_swapped_repositories(void **state)
{
    world *w = *state;
    world other = *w;
    ss_store *mine = NULL, *theirs = NULL;
    ss_err err = {{0}};
    char snap[200], key[SS_KEY_NAME_MAX];
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    other_url(w, other.url, sizeof other.url);
    join(w, A);
    join(w, B);
    join(&other, C);
    for (int i = 0; i < 3; i++) { /* both at seq 3 */
        char name[16];
        snprintf(name, sizeof name, "f%d.txt", i);
        write_bytes(at(w, A, name), "mine", 4);
        write_bytes(at(&other, C, name), "theirs", 6);
        ok(w, A, "push");
        ok(&other, C, "push");
    }
    ok(w, B, "pull");
    snapshot(w->dev[B], snap);
    write_bytes(at(&other, C, "next.txt"), EVIL, 4);
    ok(&other, C, "push"); /* theirs: log/4 */
    check(ss_store_open(w->url, NULL, &mine, &err), &err, w->url);
    check(ss_store_open(other.url, NULL, &theirs, &err), &err, other.url);
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, (uint64_t)4);
    snprintf(g_step, sizeof g_step, "their log/4 as ours");
    copy_obj(theirs, mine, key, SS_PUT_CREATE_ONLY);
    {
        outcome o = run_cli(NULL, ARGS("-C", w->dev[B], "pull"));
        expect_exit(&o, 3, "pull of another repository's object");
        if (!strstr(o.err, key)) failf("%s is not named: %s", key, o.err);
        outcome_free(&o);
    }
    expect_same_tree(w->dev[B], snap);
    /* Their log/1 over ours: a device that joins now refuses it too. */
    snprintf(g_step, sizeof g_step, "their log/1 over ours, a new device joins");
    check(ss_store_delete(mine, key, &err), &err, key);
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, (uint64_t)1);
    copy_obj(theirs, mine, key, 0);
    rm_rf(w->dev[C]);
    {
        char name[2] = "C";
        outcome o = run_cli(NULL, ARGS("--device", name, "init", w->url, w->dev[C]));
        expect_exit(&o, 3, "join of a store holding another repository's log/1");
        outcome_free(&o);
    }
    g_step[0] = '\0';
    ss_store_free(mine);
    ss_store_free(theirs);
    rm_rf(snap);
}

/*
 * A store rolled back below what B applied: first the newest objects simply
 * gone, then the same sequences written again by C, which never saw them
 * (as after restoring a bucket backup and syncing on).
 */
static void test_rolled_back(void **state)
{
    world *w = *state;
    ss_store *s = NULL;
    ss_err err = {{0}};
    char snap[200], key[SS_KEY_NAME_MAX];
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    join(w, A);
    join(w, B);
    join(w, C);
    write_bytes(at(w, A, "base.txt"), "base", 4);
    ok(w, A, "push"); /* seq 1 */
    ok(w, C, "pull");
    write_bytes(at(w, A, "lost1.txt"), "lost1", 5);
    ok(w, A, "push"); /* seq 2 */
    write_bytes(at(w, A, "lost2.txt"), "lost2", 5);
    ok(w, A, "push"); /* seq 3 */
    ok(w, B, "pull");
    snapshot(w->dev[B], snap);
    check(ss_store_open(w->url, NULL, &s, &err), &err, w->url);
    snprintf(g_step, sizeof g_step, "log/2 and log/3 deleted");
    for (uint64_t q = 2; q <= 3; q++) {
        snprintf(key, sizeof key, SS_KEY_LOG_FMT, q);
        check(ss_store_delete(s, key, &err), &err, key);
    }
    {
        outcome o = run_cli(NULL, ARGS("-C", w->dev[B], "pull"));
        expect_exit(&o, 3, "pull of a store rolled back");
        if (!strstr(o.err, key)) failf("%s is not named: %s", key, o.err);
        outcome_free(&o);
    }
    expect_same_tree(w->dev[B], snap);
    snprintf(g_step, sizeof g_step, "log/2 and log/3 written again by C");
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d.txt", i);
        write_bytes(at(w, C, name), "from C", 6);
        ok(w, C, "push"); /* seq 2, 3, 4 */
    }
    {
        outcome o = run_cli(NULL, ARGS("-C", w->dev[B], "pull"));
        expect_exit(&o, 3, "pull of a store rolled back and rewritten");
        if (!strchr(o.err, '\n') || !strstr(o.err, "log/")) failf("no log object named: %s", o.err);
        outcome_free(&o);
    }
    expect_same_tree(w->dev[B], snap);
    g_step[0] = '\0';
    ss_store_free(s);
    rm_rf(snap);
}

/* --- modes an enrolled device pushes ------------------------------------------------------- */

static mode_t mode_of(const char *path)
{
    struct stat st;
    if (lstat(path, &st)) failf("lstat %s: %s", path, strerror(errno));
    return st.st_mode & 07777;
}

static void expect_mode(const world *w, int d, const char *rel, mode_t want)
{
    mode_t got = mode_of(at(w, d, rel));
    if (got != want) failf("%c's %s has mode 0%o, not 0%o", 'A' + d, rel, got, want);
}

/*
 * No ordinary push needs forging to hand out setuid files: A's root user
 * makes them (chmod 4777, 6755, 1777; directories too) and pushes. The store
 * keeps each mode as A had it (FORMAT.md "Transactions"); a pulling device
 * never applies setuid, setgid or sticky, and masks group and world write
 * with its umask (022 here) unless preserve_modes is set (C). The masked
 * modes are no local change: B's next sync sends nothing, A keeps its modes,
 * and when B edits such a file, its push carries the store's mode, not the
 * masked one (C, keeping world write, sees 0777).
 */
static void test_special_modes(void **state)
{
    static const struct {
        const char *path;
        mode_t mode, masked, preserved;
    } m[] = {
        {"suid", 04777, 0755, 0777},           {"sgid", 06755, 0755, 0755},
        {"sticky", 01777, 0755, 0777},         {"dir-suid", 04777, 0755, 0777},
        {"dir-sgid", 02775, 0755, 0775},       {"dir-tmp", 01777, 0755, 0777},
        {"dir-tmp/inside", 06777, 0755, 0777},
    };
    world *w = *state;
    mode_t old = umask(022); /* every s3sync child inherits it */
    join(w, A);
    join(w, B);
    join(w, C);
    {
        json_t *j = ok_on(w, C, ARGS("config", "set", "preserve_modes", "true"));
        outcome o = run_on(w, C, NULL, ARGS("config", "set", "preserve_modes", "yes"));
        expect_exit(&o, 2, "config set preserve_modes yes");
        outcome_free(&o);
        json_decref(j);
    }
    for (size_t i = 0; i < COUNT(m); i++) {
        if (!strncmp(m[i].path, "dir-", 4) && !strchr(m[i].path, '/')) {
            if (mkdir(at(w, A, m[i].path), 0755)) failf("mkdir %s", m[i].path);
        } else {
            write_bytes(at(w, A, m[i].path), "#!/bin/sh\nid\n", 13);
        }
    }
    for (size_t i = COUNT(m); i-- > 0;) /* the inside first: a directory's own bits last */
        if (chmod(at(w, A, m[i].path), m[i].mode))
            failf("chmod %s: %s", m[i].path, strerror(errno));
    ok(w, A, "push");
    ok(w, B, "pull");
    ok(w, C, "pull");
    for (size_t i = 0; i < COUNT(m); i++) {
        snprintf(g_step, sizeof g_step, "%s pushed as 0%o", m[i].path, m[i].mode);
        expect_mode(w, A, m[i].path, m[i].mode);
        expect_mode(w, B, m[i].path, m[i].masked);
        expect_mode(w, C, m[i].path, m[i].preserved);
    }
    snprintf(g_step, sizeof g_step, "the masked modes are no local change");
    expect_idle_sync(w, B);
    expect_idle_sync(w, C);
    expect_idle_sync(w, A);
    for (size_t i = 0; i < COUNT(m); i++)
        expect_mode(w, A, m[i].path, m[i].mode);
    snprintf(g_step, sizeof g_step, "B edits a masked file: the store keeps its mode");
    write_bytes(at(w, B, "suid"), "#!/bin/sh\necho B\n", 17);
    ok(w, B, "sync");
    ok(w, C, "sync");
    expect_content(at(w, C, "suid"), "#!/bin/sh\necho B\n");
    expect_mode(w, C, "suid", 0777);
    expect_idle_sync(w, B);
    snprintf(g_step, sizeof g_step, "a mode changed on B after the masking is pushed");
    if (chmod(at(w, B, "sgid"), 0700)) failf("chmod");
    ok(w, B, "sync");
    ok(w, A, "sync");
    expect_mode(w, A, "sgid", 0700);
    g_step[0] = '\0';
    umask(old);
}

/*
 * A store fork: the store loses A's newest object, log/2, and B, which never
 * saw it, writes a different log/2. A's log/2 is there by name, not by
 * content: A's pull and push must say so (exit 3 naming sequence 2) and
 * change nothing, even after B wrote log/3 on its side of the fork.
 */
static void test_fork(void **state)
{
    world *w = *state;
    ss_store *s = NULL;
    ss_err err = {{0}};
    char snap[200], key[SS_KEY_NAME_MAX];
    snprintf(snap, sizeof snap, "%s/snapshot", w->root);
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, (uint64_t)2);
    join(w, A);
    join(w, B);
    write_bytes(at(w, A, "base.txt"), "base", 4);
    ok(w, A, "push"); /* seq 1 */
    ok(w, B, "pull");
    /* The check costs nothing while the listing's ETag is the one recorded. */
    expect_idle_sync(w, B); /* log/1 as B pulled it */
    write_bytes(at(w, A, "mine.txt"), "A's seq 2", 9);
    ok(w, A, "push");       /* seq 2 */
    expect_idle_sync(w, A); /* log/2 as A wrote it */
    check(ss_store_open(w->url, NULL, &s, &err), &err, w->url);
    snprintf(g_step, sizeof g_step, "log/2 restored byte for byte");
    {
        size_t len = 0;
        void *obj = get_obj(s, key, &len);
        check(ss_store_delete(s, key, &err), &err, key);
        check(ss_store_put(s, key, obj, len, SS_PUT_CREATE_ONLY, &err), &err, key);
        free(obj);
    }
    ok(w, A, "pull");       /* a new ETag maybe (file://: a new inode), the same object */
    expect_idle_sync(w, A); /* and the ETag it has now is remembered */
    snprintf(g_step, sizeof g_step, "log/2 lost, B writes another log/2");
    check(ss_store_delete(s, key, &err), &err, key);
    write_bytes(at(w, B, "theirs.txt"), "B's seq 2", 9);
    ok(w, B, "push"); /* seq 2 again */
    snapshot(w->dev[A], snap);
    expect_fork(w, A, "pull", snap, 2);
    write_bytes(at(w, A, "later.txt"), "not on a fork", 13);
    rm_rf(snap);
    snapshot(w->dev[A], snap);
    expect_fork(w, A, "push", snap, 2);
    expect_fork(w, A, "sync", snap, 2);
    snprintf(g_step, sizeof g_step, "B writes log/3 on its side");
    write_bytes(at(w, B, "theirs3.txt"), "B's seq 3", 9);
    ok(w, B, "push"); /* seq 3 */
    expect_fork(w, A, "pull", snap, 2);
    /* README "A store fork": A joins again in place; its side comes back as local changes. */
    snprintf(g_step, sizeof g_step, "A joins again");
    if (rename(at(w, A, ".s3sync"), at_dir(w->root, "A.s3sync-forked")))
        failf("rename: %s", strerror(errno));
    join(w, A);
    ok(w, A, "sync");
    ok(w, B, "sync");
    expect_converged(w);
    expect_content(at(w, B, "mine.txt"), "A's seq 2");
    expect_content(at(w, B, "later.txt"), "not on a fork");
    expect_content(at(w, A, "theirs3.txt"), "B's seq 3");
    g_step[0] = '\0';
    ss_store_free(s);
    rm_rf(snap);
}

#define WORLD_TEST(f) cmocka_unit_test_setup_teardown(f, world_open, world_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WORLD_TEST(test_forged),
        WORLD_TEST(test_hostile_names),
        WORLD_TEST(test_ignore_file_not_followed),
        WORLD_TEST(test_legacy_control_rows),
        WORLD_TEST(test_swapped_repositories),
        WORLD_TEST(test_rolled_back),
    };
    const struct CMUnitTest both_stores[] = {
        WORLD_TEST(test_special_modes),
        WORLD_TEST(test_fork),
    };
    int failed;
    if (fixture_init("mal")) return 1;
    fixture_use_s3(fixture_bucket() != NULL); /* RGW when there is one, else file:// */
    fprintf(stderr, "malicious: store %s\n", fixture_bucket() ? "s3:// (RGW)" : "file:// (no RGW)");
    failed = cmocka_run_group_tests_name("malicious", tests, NULL, NULL);
    return failed | fixture_run_file_and_s3(both_stores, COUNT(both_stores));
}
