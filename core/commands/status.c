/*
 * status: what push and pull would do, without doing it. Local: new paths,
 * deleted ones, and paths whose content, target, kind or mode changed. As
 * push, it reads a file only when its lstat no longer matches the previous
 * state or was recorded too recently to trust (the racy-mtime rule): a
 * touched file, or one just pulled, is no change. Remote: what pull would
 * apply, found as pull finds it (eng_log_start): the transactions after the
 * watermark, and a checkpoint to start from (one, whatever it holds).
 * With -v or --json, the peers (ss_status_peers): contacted now, and those
 * .s3sync/peers remembers (docs/PEERS.md "Status").
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "format.h"

/* A head a peer announced that the store, showing up to shown, still does not: said. */
static void withheld(ss_folder *f, uint64_t shown, ss_stats *stats)
{
    char msg[600];
    stats->withheld = eng_peer_head_withheld(f, shown, msg, sizeof msg);
    if (stats->withheld && f->hooks.warn) f->hooks.warn(f->hooks.ctx, msg);
}

ss_rc ss_status(ss_folder *f, ss_stats *stats, ss_err *err)
{
    uint8_t chain[SS_CHAIN_BYTES];
    eng_log_list l = {0};
    uint64_t wm, bytes, base, base_size;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) return rc;
    stats->seq = wm;
    /* Where pull would start: a checkpoint it applies first counts as one. */
    rc = eng_log_start(f, wm, &l, &base, &base_size, err);
    stats->pending_remote = l.n + (base ? 1 : 0);
    if (!rc) withheld(f, l.n ? l.seqs[l.n - 1] : base > wm ? base : wm, stats);
    eng_log_list_free(&l);
    if (rc) return rc;
    rc = eng_load_ignore(f, err);
    if (rc) return rc;
    rc = eng_local_changes(f, &stats->pending_local, &bytes, NULL, err);
    if (rc) return rc;
    eng_stats_from_store(f, stats, ENG_STATS_NO_UP);
    return SS_OK;
}

/* v's device, name and last sequence from the device table. */
static void who(const ss_folder *f, const uint8_t id[SS_TXN_DEVICE_ID_BYTES], ss_peer_seen *v)
{
    const ss_device *d = ss_devices_find(f->devices, id);
    ss_device_id_short(id, v->device);
    if (!d) return;
    snprintf(v->name, sizeof v->name, "%s", d->name);
    v->last_seq = d->last;
}

static void from_row(ss_peer_seen *v, const eng_ledger_row *r)
{
    v->received = r->received;
    v->served = r->served;
    v->head = r->head;
    v->seen = (long long)r->seen;
}

ss_rc ss_status_peers(ss_folder *f, ss_stats *stats, ss_err *err)
{
    eng_ledger_row *rows = NULL; /* owned */
    char *used = NULL;           /* owned: rows shown with a peer */
    ss_peer_seen *v = NULL;
    size_t n_rows = 0, n = 0, k = 0;
    ss_rc rc = eng_ledger_read(f->meta, &rows, &n_rows, err);
    if (rc) return rc;
    ss_peers_probe(f->peers); /* discovery's answers join here */
    n = ss_peers_count(f->peers);
    v = calloc(n + n_rows + 1, sizeof *v);
    used = calloc(n_rows + 1, 1);
    if (!v || !used) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++, k++) {
        ss_peers_info in;
        ss_peers_info_at(f->peers, i, &in);
        snprintf(v[k].addr, sizeof v[k].addr, "%s", in.addr);
        v[k].reachable = in.reachable;
        snprintf(v[k].why, sizeof v[k].why, "%s", in.why);
        if (!in.known) continue;
        who(f, in.device, &v[k]);
        for (size_t r = 0; r < n_rows; r++)
            if (!used[r] && !memcmp(rows[r].device, in.device, sizeof in.device)) {
                used[r] = 1;
                from_row(&v[k], &rows[r]);
            }
    }
    for (size_t r = 0; r < n_rows; r++) { /* known from earlier runs only */
        if (used[r]) continue;
        who(f, rows[r].device, &v[k]);
        from_row(&v[k], &rows[r]);
        k++;
    }
    stats->peers = v;
    stats->n_peers = k;
    v = NULL;
done:
    free(v);
    free(used);
    free(rows);
    return rc;
}
