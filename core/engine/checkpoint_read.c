/*
 * checkpoint_read: reading a checkpoint back verified (a
 * joining device, a device re-based after gc, log, verify, restore and gc
 * start there; docs/FORMAT.md "Checkpoints").
 *
 *   C2. Reading verifies before anything is used, as for log objects: the
 *       frame (bound to the key checkpoints/<seq>), the header, and every op
 *       decoded once (a delete op is refused) before the caller sees it.
 *   C6. A checkpoint's device table is vouched for by a log object: the
 *       next one, log/<seq+1>, whose signature commits to the table after it
 *       (checked as pull applies it), or, when none is listed after it (a
 *       checkpoint at the head), log/<seq> itself (eng_checkpoint_endorsed,
 *       for a pull's base and a walk's start): it must
 *       open with the chain(seq - 1) the header records, lead to its
 *       chain(seq), and be signed over the checkpoint's table by a device
 *       that table shows enrolled. So a device turned against the others
 *       cannot hand a joining device a table of its own making (drop a
 *       revocation, invent a device) by writing the newest checkpoint: gc
 *       keeps the newest log object for this.
 */
#include "s3sync.h"

#include <errno.h>
#include <sodium.h>
#include <sqlite3.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "frame.h"
#include "ss_buf.h"

/* --- reading (C2) ------------------------------------------------------------------------ */

typedef struct cp_sink {
    int fd;
    uint8_t hdr[SS_CHECKPOINT_HEADER_BYTES];
    size_t got; /* header bytes seen */
} cp_sink;

/* The header into hdr, the transaction after it into the stage. */
static int cp_write(void *ctx, const void *buf, size_t len)
{
    cp_sink *s = ctx;
    const uint8_t *p = buf;
    if (s->got < sizeof s->hdr) {
        size_t n = sizeof s->hdr - s->got < len ? sizeof s->hdr - s->got : len;
        memcpy(s->hdr + s->got, p, n);
        s->got += n;
        p += n;
        len -= n;
    }
    return len ? ss_fd_sink(&s->fd, p, len) : 0;
}

typedef struct cp_feed {
    ss_frame_reader *r;
    ss_err err;
    ss_rc rc;
} cp_feed;

static int cp_feed_frame(void *ctx, const void *buf, size_t len)
{
    cp_feed *fd = ctx;
    fd->rc = ss_frame_feed(fd->r, buf, len, &fd->err);
    return fd->rc ? -1 : 0;
}

static ss_rc check_header(const char *key, const cp_sink *s, ss_err *err)
{
    static const uint8_t zero[3] = {0};
    if (s->got < sizeof s->hdr)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: shorter than a checkpoint header", key);
    if (memcmp(s->hdr, SS_CHECKPOINT_MAGIC, 4))
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: not a checkpoint (bad magic)", key);
    if (s->hdr[SS_CHECKPOINT_OFF_VERSION] != SS_CHECKPOINT_VERSION)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: checkpoint version %u is not supported", key,
                       s->hdr[SS_CHECKPOINT_OFF_VERSION]);
    if (memcmp(s->hdr + SS_CHECKPOINT_OFF_ZERO, zero, sizeof zero))
        return ss_fail(err, SS_ERR_INTEGRITY, "%s: nonzero reserved header bytes", key);
    return SS_OK;
}

/* Every op decoded once; upserts only; then its device table and signature (C2). */
static ss_rc check_ops(ss_folder *f, const char *key, int fd, uint64_t seq,
                       const uint8_t chain[SS_CHAIN_BYTES], uint64_t *ret_time,
                       ss_devices **ret_table, ss_err *err)
{
    ss_devices *table = NULL; /* owned until handed out */
    eng_txn_iter it = {0};
    const ss_txn_entry *e;
    ss_rc rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) goto done;
    if (ret_time) *ret_time = ss_txn_reader_header(it.r)->time_ns;
    for (;;) {
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
        if (e->type != SS_TXN_UPSERT) {
            rc = ss_fail(err, SS_ERR_INTEGRITY, "%s: a checkpoint holds a delete (%s)", key,
                         e->path);
            goto done;
        }
    }
    rc = eng_checkpoint_table(f, it.r, fd, chain, &table, err);
    if (rc) goto done;
    rc = eng_epoch_verify_pending(f, seq, table, err); /* an epoch this checkpoint taught us */
    if (rc) goto done;
    if (ret_table) {
        *ret_table = table;
        table = NULL;
    }
done:
    ss_devices_free(table);
    eng_txn_close(&it);
    if (rc && rc != SS_ERR_NOMEM && rc != SS_ERR_IO) {
        if (err && !strstr(err->msg, key)) {
            ss_err inner = *err;
            ss_fail(err, SS_ERR_INTEGRITY, "%s: %s", key, inner.msg);
        }
        rc = SS_ERR_INTEGRITY;
    }
    return rc;
}

/* One try at key into sink: the reader kept in fd for the epoch its header states. */
static ss_rc fetch_once(ss_folder *f, const char *key, uint64_t seq, cp_sink *sink, cp_feed *fd,
                        ss_err *err)
{
    static const uint8_t zero_chain[SS_CHAIN_BYTES] = {0};
    ss_rc rc =
        ss_frame_reader_new(ss_repo_keys(f->repo), SS_FRAME_KIND_CHECKPOINT, key, seq, zero_chain,
                            SS_CHECKPOINT_PLAIN_MAX, cp_write, sink, &fd->r, err);
    if (rc) return rc;
    rc = ss_store_get_stream(f->store, key, 0, SS_TO_END, cp_feed_frame, fd, err);
    if (fd->rc) {
        rc = fd->rc;
        if (err) *err = fd->err;
    }
    if (rc) return rc;
    return ss_frame_end(fd->r, NULL, err);
}

/* The checkpoint is under a key epoch this device lacks: learn it, then start again. */
static ss_rc learn_epoch(ss_folder *f, uint64_t seq, cp_sink *sink, cp_feed *fd, ss_err *err)
{
    ss_rc rc = eng_epoch_learn(f, SS_FRAME_KIND_CHECKPOINT, fd->r, seq, err);
    if (rc) return rc;
    ss_frame_reader_free(fd->r);
    *fd = (cp_feed){0};
    sink->got = 0;
    return eng_tmp_rewind(sink->fd, err);
}

ss_rc eng_fetch_checkpoint(ss_folder *f, uint64_t seq, int *ret_fd, eng_cp_head *ret_head,
                           ss_devices **ret_table, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    cp_sink sink = {.fd = -1};
    cp_feed fd = {0};
    eng_cp_head head = {.time_ns = 0};
    ss_rc rc;
    *ret_fd = -1;
    memset(ret_head, 0, sizeof *ret_head);
    if (ret_table) *ret_table = NULL;
    snprintf(key, sizeof key, SS_KEY_CHECKPOINT_FMT, seq);
    rc = eng_tmpfile(f, &sink.fd, err);
    if (rc) goto fail;
    rc = fetch_once(f, key, seq, &sink, &fd, err);
    if (rc == SS_ERR_EPOCH) {
        rc = learn_epoch(f, seq, &sink, &fd, err);
        if (rc) goto fail;
        rc = fetch_once(f, key, seq, &sink, &fd, err);
    }
    if (rc) goto fail;
    rc = check_header(key, &sink, err);
    if (rc) goto fail;
    rc = check_ops(f, key, sink.fd, seq, sink.hdr + SS_CHECKPOINT_OFF_CHAIN, &head.time_ns,
                   ret_table, err);
    if (rc) goto fail;
    ss_frame_reader_free(fd.r);
    memcpy(head.chain, sink.hdr + SS_CHECKPOINT_OFF_CHAIN, SS_CHAIN_BYTES);
    memcpy(head.prev, sink.hdr + SS_CHECKPOINT_OFF_PREV, SS_CHAIN_BYTES);
    *ret_head = head;
    *ret_fd = sink.fd;
    return SS_OK;
fail:
    ss_frame_reader_free(fd.r);
    if (sink.fd >= 0) close(sink.fd);
    return rc;
}

/* Read log/<seq> to its end from fd; C6 against table. */
static ss_rc endorsement(ss_folder *f, int fd, uint64_t seq, const uint8_t prev[SS_CHAIN_BYTES],
                         const ss_devices *table, ss_err *err)
{
    eng_txn_iter it = {0};
    const ss_txn_entry *e = NULL;
    ss_rc rc = eng_txn_open(&it, f, fd, seq, err);
    if (rc) return rc;
    for (;;) { /* the signature is read after the last op */
        rc = eng_txn_next(&it, &e, err);
        if (rc) goto done;
        if (!e) break;
    }
    rc = eng_check_endorsement(f, table, it.r, fd, prev, err);
done:
    eng_txn_close(&it);
    return rc;
}

ss_rc eng_checkpoint_endorsed(ss_folder *f, uint64_t seq, const eng_cp_head *head,
                              const ss_devices *table, ss_err *err)
{
    uint8_t chain[SS_CHAIN_BYTES];
    int fd = -1; /* owned */
    ss_rc rc = eng_fetch_txn(f, seq, head->prev, NULL, 0, &fd, chain, NULL, err);
    if (rc == SS_ERR_NOT_FOUND)
        rc = ss_fail(err, SS_ERR_INTEGRITY, "log/%020" PRIu64 " is not in the store", seq);
    if (rc) goto done;
    if (sodium_memcmp(chain, head->chain, SS_CHAIN_BYTES)) {
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "log/%020" PRIu64 " does not lead to the chain value the checkpoint records",
                     seq);
        goto done;
    }
    rc = endorsement(f, fd, seq, head->prev, table, err);
done:
    if (fd >= 0) close(fd);
    if (rc && rc != SS_ERR_NOMEM && rc != SS_ERR_IO && rc != SS_ERR_TEMPORARY) {
        ss_err inner = err ? *err : (ss_err){{0}};
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "checkpoints/%020" PRIu64 " is the newest state and its own log object does "
                     "not vouch for its device table: %s",
                     seq, inner.msg);
    }
    return rc;
}

ss_rc eng_fetch_base(ss_folder *f, uint64_t seq, int at_head, int *ret_fd, eng_cp_head *ret_head,
                     ss_devices **ret_table, ss_err *err)
{
    ss_devices *devs = NULL; /* owned until handed out */
    eng_cp_head head;
    char why[400];
    int fd = -1;
    ss_rc rc;
    *ret_fd = -1;
    *ret_table = NULL;
    memset(ret_head, 0, sizeof *ret_head);
    rc = eng_fetch_checkpoint(f, seq, &fd, &head, &devs, err);
    if (rc) goto fail;
    /* What this device knows of the table must still hold in the newer one. */
    if (ss_devices_differ(f->devices, devs, 0, why, sizeof why)) {
        rc = ss_fail(err, SS_ERR_INTEGRITY,
                     "checkpoints/%020" PRIu64 ": its device table contradicts this device's: %s",
                     seq, why);
        goto fail;
    }
    if (at_head) {
        rc = eng_checkpoint_endorsed(f, seq, &head, devs, err);
        if (rc) goto fail;
    }
    *ret_fd = fd;
    *ret_head = head;
    *ret_table = devs;
    return SS_OK;
fail:
    ss_devices_free(devs);
    if (fd >= 0) close(fd);
    return rc;
}
