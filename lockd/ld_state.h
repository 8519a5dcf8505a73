/*
 * ld_state.h: lockd's state behind one interface with two backends (issue 19).
 *
 * Being built, in slices. This one: the interface, its design, and the
 * SQLite backend of the record (db_state.c, over today's tables), which
 * lease.c and lease_repo.c now decide through; nothing else changed.
 * Next: the admin and route calls (devices, repositories, writers, rewind,
 * the secret) into the ops table, main.c opening ld_state from `state =`,
 * and the bucket backend (state_s3.c) that docs/PROTOCOL.md "State
 * backends" specifies.
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
 *  S7. Reads without a decision (GET head, the access check's head) may be
 *      up to head_cache_ms old (configuration, default 1000 on a bucket, 0
 *      on SQLite): one GET of the record per repository per interval per
 *      replica, however many devices ask. A stale read only ever answers
 *      "head N" for a head since raised; it never grants, signs or commits,
 *      which all decide inside an update.
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
} ld_record;

typedef enum ld_decision { LD_KEEP, LD_WRITE } ld_decision;

/* One decision (the model above): rec in, rec out; SS_OK with *ret, or a refusal. */
typedef ss_rc (*ld_decide_fn)(void *ctx, ld_record *rec, int64_t now_ms, ld_decision *ret,
                              ss_err *err);

/*
 * What a backend provides: an ops table, as s3store's backends (store_impl.h).
 * Next slice, beside these: secret, device_add, device_by_hash (through S8's
 * cache), device_revoke (S8: the device refused first, then its leases
 * ended), device_list, repo_put, repo_list, writers, rewind; each with
 * today's ld_db_* semantics.
 */
typedef struct ld_state_ops {
    const char *scheme; /* "sqlite", "s3" */
    void (*close)(ld_state *st);
    /*
     * The record of repo: fresh (read now) or through S7's cache (GET head).
     * SS_ERR_NOT_FOUND when the repository is not in the state.
     */
    ss_rc (*read)(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err);
    /* The model above; ret_rec (may be NULL): the record as written, or as read on LD_KEEP. */
    ss_rc (*update)(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                    const ld_clock *clock, ld_record *ret_rec, ss_err *err);
} ld_state_ops;

/* For a backend: a state over ops and its impl (ops->close is given the state to free it). */
ss_rc ld_state_new(const ld_state_ops *ops, void *impl, ld_state **ret, ss_err *err);
void *ld_state_impl(const ld_state *st);

/* The SQLite backend (db_state.c) over db (borrowed: it must outlive the state). */
ss_rc ld_state_sqlite(ld_db *db, ld_state **ret, ss_err *err);

#define LD_STATE_WRITERS_KEPT 64

/*
 * Next slice: ld_state_open("sqlite:PATH" or "s3://BUCKET/PREFIX", cfg). The
 * bucket backend first runs ss_store_probe_if_match and refuses, in one
 * line, a store that takes a stale swap; and refuses a PREFIX inside (or
 * around) a served repository's, whose devices could then be given URLs for
 * lockd's objects.
 */
void ld_state_close(ld_state *st);

ss_rc ld_state_update(ld_state *st, const char *repo, ld_decide_fn decide, void *ctx,
                      const ld_clock *clock, ld_record *ret_rec, ss_err *err);
ss_rc ld_state_read(ld_state *st, const char *repo, int fresh, ld_record *ret, ss_err *err);

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
