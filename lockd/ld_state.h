/*
 * ld_state.h: lockd's state behind one interface with two backends (issue 19).
 *
 * Built (issue 19): the interface and its design below; the SQLite
 * backend (db_state.c, over the tables of db.c) and the bucket backend
 * (state_s3.c, its objects parsed in state_s3_json.c) that docs/PROTOCOL.md
 * "State backends" specifies; lease.c, lease_repo.c, the routes and the
 * admin commands decide and read through it alone.
 *
 *   state = sqlite:/var/lib/s3sync-lockd/lockd.db   one process (the default)
 *   state = s3://BUCKET/PREFIX                       any number of replicas
 *
 * The model. Everything a lease or head decision reads of one repository
 * is one record (ld_record: the repository row, its lease if any). Every
 * change of it is one transition, the same on both backends:
 *
 *     read the record; decide; write it back only if nobody changed it
 *     since the read; a lost race reads again and decides again.
 *
 *     ld_state_update(st, repo, decide, ctx, clock, ret_rec, err)
 *
 * decide(ctx, rec, now_ms) edits rec in place and answers LD_WRITE (write
 * rec back), LD_KEEP (the answer stands on what was read: nothing written)
 * or refuses (its ss_rc goes up, nothing written). It must be a function of
 * rec, ctx and now_ms alone: it may run more than once (once per lost
 * race), it makes no request, and what it puts in ctx is overwritten by each
 * run. Work that needs the bucket (a commit's HEAD of log/<seq>,
 * reconciliation's LIST of log/) happens before the update, and the decision
 * checks again what that work relied on (head unchanged, the lease still
 * the caller's, dirty_gen unchanged).
 *
 *   SQLite: under db->mu, decide on the cached record (db_cache.c: valid
 *     while PRAGMA data_version and this connection's changes stand still);
 *     a refusal or LD_KEEP answers at once, as today's hot paths do. LD_WRITE:
 *     BEGIN IMMEDIATE, read the rows, decide again, write the rows that
 *     changed, COMMIT: the write lock makes the race impossible, so decide
 *     runs at most twice.
 *   Bucket: GET the record's object (its ETag with it), decide; LD_WRITE is
 *     a PUT with If-Match: ETAG (ss_store_put_if; the first version
 *     If-None-Match: *); SS_ERR_CHANGED: again, at most LD_STATE_TRIES times
 *     in all, then SS_ERR_TEMPORARY (503 with Retry-After: the client's
 *     retry, not a fault). A replica may skip the GET by swapping on the
 *     ETag it last wrote or read, but only for an LD_WRITE: a successful
 *     swap proves the record it decided on was current. LD_KEEP and a
 *     refusal were decided on a record fetched by this very update.
 *
 * Invariants (PROTOCOL.md "Guarantees" numbers in brackets; S for the
 * state layer's own). On SQLite, S1 is tested by test-lockd-unit
 * test_unit_state_decides_again and the rest by the tests of lease.c's
 * invariants; on the bucket they come with its backend, tested with two and
 * three replicas:
 *
 *  S1. A transition is atomic against every other transition of the same
 *      repository, in every process and replica: SQLite by its write lock,
 *      the bucket by one compare-and-swap of the one object that holds the
 *      record. Nothing about a repository's lease or head lives elsewhere.
 *  S2. [2] Fencing tokens strictly increase per repository, across replicas
 *      and restarts: next_fencing is in the record, and a grant takes it and
 *      writes next_fencing + 1 in the same transition. A swap that lost wrote
 *      nothing, and its retry reads the winner's next_fencing. A token is
 *      durable (COMMIT or the PUT answered) before any client hears of it.
 *  S3. [1] At most one unexpired lease per repository: the record has one
 *      lease slot, and a grant decides on the slot it read in the same
 *      transition.
 *  S4. [3] Head only rises (but by rewind): a commit writes head + 1 from
 *      the head it read; reconciliation writes max(head, found).
 *  S5. [5] dirty, once set, is cleared only by a reconciliation whose LIST
 *      began after it was set: each setting increments dirty_gen, and the
 *      raise clears dirty only while dirty_gen is what it read before its
 *      LIST. SQLite keeps no counter (reads 0, drops what a decision adds),
 *      as before this interface: its server is ordered by the slot mutex,
 *      but an admin's `device revoke` in another process during a
 *      reconciliation's LIST is not covered there.
 *  S6. Expiry: decisions compare expires_ms (the granting replica's clock)
 *      with the deciding replica's. Replicas' clocks may differ by up to
 *      skew_ms (configuration, default 2000 on a bucket, 0 on SQLite): a
 *      lease is taken over only once now >= expires_ms + skew_ms, and PUT
 *      URLs expire no later than expires_ms by the signer's clock, so no
 *      replica grants while another's holder may still upload [4].
 *  S7. Reads without a decision (GET head, the access check's head, an
 *      acquire's refusal) may be up to head_cache_ms old (configuration,
 *      default 1000 on a bucket, 0 on SQLite): one GET of the record per
 *      repository per interval per replica, however many devices ask. A
 *      stale read only ever answers "head N" for a head since raised, or
 *      "lease held" (retry_after at most head_cache_ms) for a lease since
 *      ended; it never grants, signs or commits, which all decide inside an
 *      update (lease.c refuse_held_cached: devices waiting for a lease must
 *      not queue, one GET each, in front of its holder's commit).
 *  S8. Device tokens: a replica caches a token hash's device for at most
 *      token_cache_ms (default 5000 on a bucket; SQLite's cache is exact).
 *      A revocation writes the device object first, so every replica refuses
 *      the token within token_cache_ms, then ends the device's leases (one
 *      update per repository), as `device revoke` does today.
 */
#ifndef LD_STATE_H
#define LD_STATE_H

#include "lockd.h"

#define LD_STATE_TRIES 8 /* swaps one bucket update tries before SS_ERR_TEMPORARY */

typedef struct ld_state ld_state;

/* A repository's record: what one transition reads and writes back. */
typedef struct ld_record {
    ld_repo_row repo;   /* head, next_fencing, dirty, rewinding, urls_until_ms, head object */
    ld_lease_row lease; /* when leased */
    int leased;
    uint64_t dirty_gen; /* S5: incremented whenever dirty is set */
    /* Set by a decision that hands out PUT URLs of lease.put_seq: lease.device joins its
     * writers (GET writers). Not read back: 0 in every record read. */
    int add_writer;
    /* Set by a rewind's decision: the writers of every sequence above repo.head are
     * forgotten. Not read back either. */
    int drop_writers;
} ld_record;

typedef enum ld_decision { LD_KEEP, LD_WRITE } ld_decision;

/* The writers of one sequence (migrate). */
typedef struct ld_seq_writers {
    uint64_t seq;
    ld_writers w;
} ld_seq_writers;

/* One decision (the model above): rec in, rec out; SS_OK with *ret, or a refusal. */
typedef ss_rc (*ld_decide_fn)(void *ctx, ld_record *rec, int64_t now_ms, ld_decision *ret,
                              ss_err *err);

/*
 * What a backend provides: an ops table, as s3store's backends (store_impl.h).
 * Every call may come from any of the server's threads at once.
 */
typedef struct ld_state_ops {
    const char *scheme; /* "sqlite", "s3" */
    void (*close)(ld_state *st);
    /* The key of the device tokens' hash, made by the first lockd on this state. */
    ss_rc (*secret)(ld_state *st, unsigned char out[LD_SECRET_LEN], ss_err *err);
    /*
     * The record of repo: fresh (read now) or through S7's cache (GET head).
     * SS_ERR_NOT_FOUND when the repository is not in the state.
     */
    ss_rc (*read)(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err);
    /* The model above; ret_rec (may be NULL): the record as written, or as read on LD_KEEP. */
    ss_rc (*update)(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                    const ld_clock *clock, ld_record *ret_rec, ss_err *err);
    /*
     * Adds the repository (head 0, next_fencing 1), or moves it to url: head 0 and
     * dirty (head belongs to the old location; reconciliation finds the new one's),
     * the rest of its record kept. *ret_changed: 1 when it moved (0 when it added: a
     * new repository has no head to lose).
     */
    ss_rc (*repo_put)(ld_state *st, const char *name, const char *url, int *ret_changed,
                      ss_err *err);
    /* Every repository's row, by name; fn answering nonzero stops the walk. */
    ss_rc (*repo_list)(ld_state *st, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                       ss_err *err);
    /* The writers of seq (lockd.h ld_writers): none (n = 0) when nobody was given it. */
    ss_rc (*writers)(ld_state *st, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err);
    /* d as given (its hash, revoked as it says: migrate copies revoked devices too);
     * SS_ERR_EXISTS when the name is taken (revoked or not): names are never reused. */
    ss_rc (*device_add)(ld_state *st, const ld_device *d, ss_err *err);
    /* S8. SS_ERR_NOT_FOUND when no device has this hash; a revoked one is returned (the
     * caller refuses it); ret_hash: the hash as stored, for the constant-time check. */
    ss_rc (*device_by_hash)(ld_state *st, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                            unsigned char ret_hash[LD_HASH_LEN], ss_err *err);
    /* The device marked revoked (SS_ERR_NOT_FOUND: no such name); nothing else: its leases
     * are ended by ld_state_device_revoke, one update per repository. */
    ss_rc (*device_revoke)(ld_state *st, const char *name, ss_err *err);
    ss_rc (*device_list)(ld_state *st, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                         ss_err *err);
    /*
     * migrate: the record of rec->repo.name (with its url) written as given, its
     * writers w[0..n) with it; SS_ERR_EXISTS when the repository is in the state.
     */
    ss_rc (*repo_import)(ld_state *st, const ld_record *rec, const ld_seq_writers *w, size_t n,
                         ss_err *err);
    /* The bucket requests this state made so far (/metrics); NULL: none (SQLite). */
    uint64_t (*requests)(ld_state *st);
} ld_state_ops;

/* For a backend: a state over ops and its impl (ops->close is given the state to free it). */
ss_rc ld_state_new(const ld_state_ops *ops, void *impl, int64_t skew_ms, int64_t stale_ms,
                   ld_state **ret, ss_err *err);
void *ld_state_impl(const ld_state *st);

/* The SQLite backend (db_state.c) over db (borrowed: it must outlive the state), or
 * over the database at path, opened (made when absent) and closed with the state. */
ss_rc ld_state_sqlite(ld_db *db, ld_state **ret, ss_err *err);
ss_rc ld_state_sqlite_open(const char *path, ld_state **ret, ss_err *err);

#define LD_STATE_WRITERS_KEPT 64 /* sequences a bucket record keeps the writers of */

/* The bucket backend's settings (ld_config's state_* keys). */
typedef struct ld_state_s3_opts {
    int64_t skew_ms;        /* S6 */
    int64_t head_cache_ms;  /* S7 */
    int64_t token_cache_ms; /* S8 */
    const ld_clock *clock;  /* the caches' clock (borrowed) */
    /* NULL, or the token secret meta.json must hold (migrate): made with it when absent,
     * SS_ERR_CONFLICT when it holds another (tokens made under the other would fail). */
    const unsigned char *secret;
} ld_state_s3_opts;

/*
 * The bucket backend (state_s3.c) on store, opened at s3://BUCKET/PREFIX
 * (owned: closed with the state; on failure the caller still owns it).
 * Runs ss_store_probe_if_match first and refuses, in one line, a store that
 * takes a stale swap; makes meta.json (the token secret) when absent.
 */
ss_rc ld_state_s3(ss_store *store, const ld_state_s3_opts *o, ld_state **ret, ss_err *err);

/*
 * The state cfg names (`state =`, or the older `db =`, default sqlite):
 * "sqlite:PATH" or "s3://BUCKET/PREFIX", the latter with the config's s3_*
 * settings and refused when PREFIX lies inside, or around, a repository's
 * (devices get URLs inside their repository's prefix only).
 */
ss_rc ld_state_open(const ld_config *cfg, const ld_clock *clock, ld_state **ret, ss_err *err);
/* The same, a bucket state made with (or refused unless it holds) secret: migrate. */
ss_rc ld_state_open_with_secret(const ld_config *cfg, const ld_clock *clock,
                                const unsigned char secret[LD_SECRET_LEN], ld_state **ret,
                                ss_err *err);
void ld_state_close(ld_state *st);
const char *ld_state_scheme(const ld_state *st);
uint64_t ld_state_requests(ld_state *st);
/* S6: 0 on SQLite. */
int64_t ld_state_skew_ms(const ld_state *st);
/* S7: how old a read that does not ask for fresh may be; 0 on SQLite (exact). */
int64_t ld_state_stale_ms(const ld_state *st);

ss_rc ld_state_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                      const ld_clock *clock, ld_record *ret_rec, ss_err *err);
ss_rc ld_state_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err);

ss_rc ld_state_secret(ld_state *st, unsigned char out[LD_SECRET_LEN], ss_err *err);
ss_rc ld_state_repo_put(ld_state *st, const char *name, const char *url, int *ret_changed,
                        ss_err *err);
ss_rc ld_state_repo_list(ld_state *st, int (*fn)(void *ctx, const ld_repo_row *r), void *ctx,
                         ss_err *err);
ss_rc ld_state_writers(ld_state *st, const char *repo, uint64_t seq, ld_writers *ret, ss_err *err);
ss_rc ld_state_device_add(ld_state *st, const ld_device *d, ss_err *err);
ss_rc ld_state_device_by_hash(ld_state *st, const unsigned char hash[LD_HASH_LEN], ld_device *ret,
                              unsigned char ret_hash[LD_HASH_LEN], ss_err *err);
ss_rc ld_state_device_list(ld_state *st, int (*fn)(void *ctx, const ld_device *d), void *ctx,
                           ss_err *err);

/* Copies every repository's record (with the writers of its last LD_STATE_WRITERS_KEPT
 * sequences) and every device of from into to, which must hold none of them. */
ss_rc ld_state_migrate(ld_state *from, ld_state *to, FILE *out, ss_err *err);

/* Transitions that are the same on every backend (ld_state.c), each one update. */

/* A lease ends (released, committed with release, taken over, revoked, rewound): with
 * PUT URLs out above head the repository is dirty (S5); the URLs it was given stay
 * valid until its expiry, which a rewind must wait for (urls_until_ms). */
void ld_record_end_lease(ld_record *rec);

/* S8: the device refused first, then each repository's lease of it ended as a release. */
ss_rc ld_state_device_revoke(ld_state *st, const char *name, const ld_clock *clock, ss_err *err);
/* The repository reconciles before its next grant (a moved URL, a start). */
ss_rc ld_state_mark_dirty(ld_state *st, const char *repo, const ld_clock *clock, ss_err *err);
/*
 * An admin's rewind (rewind.c), in two steps. begin: head = seq (at most head),
 * the lease ended (its PUT URLs counted into urls_until_ms), rewinding set (no
 * grant, no reconciliation until end), the writers above seq forgotten;
 * *ret_before and *ret_after the repository row around it. end: rewinding
 * cleared, once the bucket holds nothing above seq.
 */
ss_rc ld_state_rewind_begin(ld_state *st, const char *repo, uint64_t seq, const ld_clock *clock,
                            ld_repo_row *ret_before, ld_repo_row *ret_after, ss_err *err);
ss_rc ld_state_rewind_end(ld_state *st, const char *repo, const ld_clock *clock, ss_err *err);

/*
 * The transitions of lease.c are decisions, each a function of (record,
 * request, now): grant (refuses a live lease [1], ends an expired one as a
 * release would, asks for reconciliation on a dirty record, takes
 * next_fencing [2]); renew; release; begin_put (put_seq = head + 1,
 * add_writer; LD_KEEP when already so); commit (head + 1 with the HEAD's
 * stat, the lease ended on release; LD_KEEP for a repeated commit); raise
 * (lease_repo.c, reconciliation: max(head, found), dirty cleared under S5).
 * Later: rewind_begin and rewind_end; `migrate` copies a SQLite state into a
 * bucket by create-only puts, refusing a prefix that holds one already.
 */

#endif
