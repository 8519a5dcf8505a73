/*
 * plan: push --dry-run and sync --dry-run (ss_plan_run). The local side is
 * status's count (engine/merge.c) with the bytes push would read; the
 * remote side starts where pull would (a checkpoint first, for a device
 * joining or re-based after gc), then fetches and verifies it and each
 * pending log object as pull does (staged in an unlinked temp file, never
 * applied) to count its ops and the chunks this device lacks. Nothing is
 * written to the folder's files, its state or the store; the requests it
 * makes (LISTs, a GET per log object or checkpoint) are real and billed, so
 * they go to .s3sync/usage as any command's do. The requests of the real
 * run are estimated from what was counted.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "path.h"

static void add(ss_plan *p, ss_req_class c, uint64_t n)
{
    p->requests_by_class[c] += n;
    p->requests_estimated += n;
}

/* One op's chunks this device lacks: their bytes, and a GET per pack not read from yet. */
static ss_rc count_chunks(ss_folder *f, ss_txn_reader *r, const ss_txn_entry *e, uint32_t n_packs,
                          uint8_t *read_from, ss_plan *p, ss_err *err)
{
    for (uint32_t i = 0; i < e->n_chunks; i++) {
        ss_chunk_ref ref;
        ss_chunk_loc loc;
        int found = 0;
        ss_rc rc = ss_txn_next_chunk(r, &ref, err);
        if (rc) return rc;
        rc = ss_state_chunk_find(f->state, ref.id, &loc, &found, err);
        if (rc) return rc;
        if (found || ref.pack >= n_packs) continue;
        p->bytes_down += ref.sealed_len;
        if (!read_from[ref.pack]) add(p, SS_REQ_GET, 1);
        read_from[ref.pack] = 1;
    }
    return SS_OK;
}

/*
 * The ops of the verified transaction staged in fd that a pull would apply;
 * GETs: one per pack it reads chunks from. base: a checkpoint applied as a
 * base (apply.c): a path the state holds alike is left alone, and a path
 * the state holds that the checkpoint lacks is deleted.
 */
static ss_rc count_txn(ss_folder *f, int fd, uint64_t seq, int base, ss_plan *p, ss_err *err)
{
    eng_txn_iter it = {0};
    ss_state_iter *rows = NULL; /* owned: base only */
    const ss_state_row *row = NULL;
    const ss_txn_entry *e = NULL;
    uint8_t *read_from = NULL; /* owned: per pack index, 1 once a chunk is read from it */
    uint32_t n_packs;
    ss_rc rc;
    rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) goto fail;
    n_packs = ss_txn_reader_header(it.r)->n_packs;
    read_from = calloc(n_packs ? n_packs : 1, 1);
    if (!read_from) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (base) {
        rc = ss_state_iter_new(f->state, &rows, err);
        if (rc) goto fail;
        rc = ss_state_iter_next(rows, &row, err);
        if (rc) goto fail;
    }
    for (;;) {
        int c = 1, same = 0;
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto fail;
        while (row) { /* both in path order: a row before e is one the checkpoint lacks */
            c = !e ? -1 : ss_path_cmp(row->path, strlen(row->path), e->path, e->path_len);
            if (c >= 0) break;
            p->files_down++;
            rc = ss_state_iter_next(rows, &row, err);
            if (rc) goto fail;
        }
        if (!e) break;
        if (row && c == 0) {
            same = eng_row_holds(row, e);
            rc = ss_state_iter_next(rows, &row, err);
            if (rc) goto fail;
        }
        if (same) continue;
        p->files_down++;
        if (e->type != SS_TXN_UPSERT || e->kind != SS_TXN_FILE || e->storage != SS_TXN_CHUNKS)
            continue;
        rc = count_chunks(f, it.r, e, n_packs, read_from, p, err);
        if (rc) goto fail;
    }
fail:
    free(read_from);
    ss_state_iter_free(rows);
    eng_txn_close(&it);
    return rc;
}

/*
 * checkpoints/<seq>, fetched and verified as pull does before it applies
 * one as a base (with log/<seq> when it is at the head), then counted;
 * *table and chain become its device table and chain(seq).
 */
static ss_rc plan_base(ss_folder *f, uint64_t seq, int at_head, ss_devices **table,
                       uint8_t chain[SS_CHAIN_BYTES], ss_plan *p, ss_err *err)
{
    eng_cp_head head;
    ss_devices *devs = NULL; /* owned */
    int fd = -1;
    ss_rc rc = eng_fetch_base(f, seq, at_head, &fd, &head, &devs, err);
    if (rc) goto done;
    rc = count_txn(f, fd, seq, 1, p, err);
    if (rc) goto done;
    ss_devices_free(*table);
    *table = devs;
    devs = NULL;
    memcpy(chain, head.chain, SS_CHAIN_BYTES);
    if (at_head) add(p, SS_REQ_GET, 1); /* log/<seq>, its endorsement */
done:
    ss_devices_free(devs);
    if (fd >= 0) close(fd);
    return rc;
}

/*
 * Where pull would start (a checkpoint first, for a device joining or
 * re-based after gc), then each log object after it, verified as pull
 * verifies it, then counted. The LISTs are the ones the real run makes.
 */
static ss_rc plan_remote(ss_folder *f, ss_plan *p, ss_err *err)
{
    eng_log_list l = {0};
    ss_devices *table = NULL; /* owned: the device table after the last object checked */
    uint8_t chain[SS_CHAIN_BYTES], next[SS_CHAIN_BYTES];
    uint64_t wm, base, base_size, lists = ss_store_counts(f->store)->by_class[SS_REQ_LIST];
    int fd = -1;
    ss_rc rc;
    rc = ss_state_watermark(f->state, &wm, chain, err);
    if (rc) goto out;
    rc = eng_log_start(f, wm, &l, &base, &base_size, err);
    if (rc) goto out;
    add(p, SS_REQ_LIST, ss_store_counts(f->store)->by_class[SS_REQ_LIST] - lists);
    if (base) {
        rc = plan_base(f, base, !l.n, &table, chain, p, err);
        if (rc) goto out;
        p->bytes_down += base_size;
        add(p, SS_REQ_GET, 1);
    }
    for (size_t i = 0; i < l.n; i++) {
        ss_devices *after = NULL;
        rc = eng_fetch_txn(f, l.seqs[i], chain, NULL, 0, &fd, next, NULL, err);
        if (rc) goto out;
        rc = eng_check_txn(f, fd, l.seqs[i], chain, table ? table : f->devices, &after, err);
        if (rc) goto out;
        ss_devices_free(table);
        table = after;
        rc = count_txn(f, fd, l.seqs[i], 0, p, err);
        if (rc) goto out;
        close(fd);
        fd = -1;
        memcpy(chain, next, SS_CHAIN_BYTES);
        p->bytes_down += l.sizes[i];
        add(p, SS_REQ_GET, 1);
    }
out:
    if (fd >= 0) close(fd);
    ss_devices_free(table);
    eng_log_list_free(&l);
    return rc;
}

ss_rc ss_plan_run(ss_folder *f, int with_pull, ss_plan *ret, ss_err *err)
{
    ss_plan p = {0};
    uint64_t chunked;
    ss_rc rc;
    memset(ret, 0, sizeof *ret);
    if (with_pull) {
        rc = plan_remote(f, &p, err);
        if (rc) return rc;
    }
    rc = eng_load_ignore(f, err);
    if (rc) return rc;
    rc = eng_local_changes(f, &p.files_up, &p.bytes_up, &chunked, err);
    if (rc) return rc;
    if (p.files_up) { /* the fork check's LIST, the packs (inline files need none), log/<seq> */
        add(&p, SS_REQ_LIST, 1);
        add(&p, SS_REQ_PUT, (chunked + ENG_PACK_TARGET - 1) / ENG_PACK_TARGET + 1);
    }
    *ret = p;
    return SS_OK;
}
