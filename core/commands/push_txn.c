/*
 * push_txn: the transaction of a push (push.c scans and spools the ops):
 * its device entries, the spool framed and signed as log/<seq> (only the
 * packs some op references in its pack table), created with If-None-Match,
 * and the device table after it.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "frame.h"
#include "push_impl.h"
#include "ss_buf.h"

/* Frame the spooled ops into a temp file; *ret_fd holds the object, *ret_size its size. */
static ss_rc build_object(push *p, const char *key, const uint8_t prev_chain[SS_CHAIN_BYTES],
                          int *ret_fd, uint8_t hash[SS_OBJECT_HASH_BYTES], ss_err *err)
{
    ss_folder *f = p->f;
    struct timespec now;
    ss_txn_header h = {0};
    ss_txn_writer *tw = NULL;
    ss_frame_out sink = {0};
    eng_signer sg;
    uint32_t n_packs = eng_packer_count(p->packer);
    const char **table = calloc(n_packs + 1, sizeof *table);
    uint32_t *remap = calloc(n_packs + 1, sizeof *remap);
    int fd = -1;
    ss_rc rc;
    *ret_fd = -1;
    if (!table || !remap) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n_packs; i++) /* only the packs some op references */
        if (eng_packer_used(p->packer, i)) {
            remap[i] = h.n_packs;
            table[h.n_packs++] = eng_packer_key(p->packer, i);
        }
    clock_gettime(CLOCK_REALTIME, &now);
    h.seq = p->seq;
    h.time_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    memcpy(h.device_id, f->device_id, sizeof h.device_id);
    h.device_name = f->device_name;
    h.device_name_len = strlen(f->device_name);
    h.pack_keys = table;
    h.n_devices = p->n_devs;
    h.devices = p->devs;
    h.n_ops = ss_spool_count(p->spool);
    eng_signer_init(&sg, f, SS_FRAME_KIND_LOG, p->seq, prev_chain, p->after, ss_frame_out_write,
                    &sink);
    rc = eng_tmpfile(f, &fd, err);
    if (rc) goto fail;
    rc = ss_frame_writer_new(p->keys ? p->keys : ss_repo_keys(f->repo), SS_FRAME_KIND_LOG, key,
                             p->seq, prev_chain, ss_repo_config(f->repo)->zstd_level, ss_fd_sink,
                             &fd, &sink.w, err);
    if (rc) goto fail;
    rc = ss_txn_writer_new(&f->limits, &h, eng_signer_write, &sg, &tw, err);
    if (rc) goto fail;
    rc = ss_spool_replay(p->spool, tw, remap, err);
    if (rc) goto fail;
    rc = ss_txn_writer_finish(tw, eng_signer_sign, &sg, err);
    if (rc) goto fail;
    rc = ss_frame_finish(sink.w, hash, err);
    if (rc) goto fail;
    ss_txn_writer_free(tw);
    ss_frame_writer_free(sink.w);
    free(table);
    free(remap);
    *ret_fd = fd;
    return SS_OK;
fail:
    free(table);
    free(remap);
    if (rc == SS_ERR_IO && sink.err.msg[0] && err) *err = sink.err;
    ss_txn_writer_free(tw);
    ss_frame_writer_free(sink.w);
    if (fd >= 0) close(fd);
    return rc;
}

/* Create log/<seq>; *ret_obj: what it is, for the fork check (fork.c). */
ss_rc push_upload_log(push *p, const uint8_t prev_chain[SS_CHAIN_BYTES],
                      uint8_t chain[SS_CHAIN_BYTES], ss_state_applied *ret_obj, ss_err *err)
{
    char key[SS_KEY_NAME_MAX];
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    ss_store_stat st;
    int fd = -1;
    off_t size;
    ss_rc rc;
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, p->seq);
    rc = build_object(p, key, prev_chain, &fd, hash, err);
    if (rc) return rc;
    size = lseek(fd, 0, SEEK_END);
    p->log_bytes = size > 0 ? (uint64_t)size : 0;
    ss_chain_next(ss_repo_keys(p->f->repo), prev_chain, hash, chain);
    /* If the answer is lost, the object may be in the store without the state knowing it. */
    rc = eng_inflight_set(p->f, p->seq, chain, err);
    if (rc) goto out;
    ss_fault_point("push.before-log");
    rc = ss_store_put_file_stat(p->f->store, key, fd, 0, (uint64_t)size, SS_PUT_CREATE_ONLY, &st,
                                err);
    /* A 412 may still be our own earlier attempt (its check failed too): keep the record;
     * pull compares chains, so another device's object is never taken for ours. */
    if (rc) goto out;
    ss_fault_point("push.after-log");
    *ret_obj = (ss_state_applied){.seq = p->seq, .size = p->log_bytes};
    memcpy(ret_obj->hash, hash, sizeof hash);
    eng_etag_tag(st.etag, ret_obj->tag);
out:
    close(fd);
    return rc;
}

/*
 * The device entries of transaction p->seq (FORMAT.md "Devices and
 * signatures"): this device enrolls itself in the first one it signs, and
 * a revocation asked for goes in; one this device may not sign is refused
 * before anything is built.
 */
ss_rc push_device_entries(push *p, ss_err *err)
{
    ss_folder *f = p->f;
    const ss_device *me = ss_devices_find(f->devices, f->device_id), *target = NULL;
    char hex[17];
    ss_device_id_short(f->device_id, hex);
    if (me && me->revoked)
        return ss_fail(err, SS_ERR_REVOKED,
                       "this device (%s, %s) was revoked at log/%020" PRIu64 ": the repository "
                       "refuses what it signs; to sync from this machine, s3sync init a new folder",
                       f->device_name, hex, me->revoked);
    if (!me && ss_devices_count(f->devices) >= SS_DEVICES_MAX)
        return ss_fail(err, SS_ERR_INVALID,
                       "this device cannot enroll: the repository has %u devices, the most a "
                       "device table holds",
                       SS_DEVICES_MAX);
    if (p->revoke && !(target = ss_devices_find(f->devices, p->revoke)))
        return ss_fail(err, SS_ERR_INVALID, "that device is not enrolled");
    if (target && target->revoked) p->revoke = NULL; /* another device revoked it meanwhile */
    p->n_devs = 0;
    if (!me) {
        ss_txn_device *e = &p->devs[p->n_devs++];
        *e = (ss_txn_device){.type = SS_TXN_DEV_ENROLL, .seq = p->seq};
        memcpy(e->id, f->device_id, sizeof e->id);
        memcpy(e->pk, ss_device_key_public(f->key), sizeof e->pk);
        e->name_len = strlen(f->device_name);
        memcpy(e->name, f->device_name, e->name_len + 1);
    }
    if (p->revoke) {
        ss_txn_device *e = &p->devs[p->n_devs++];
        *e = (ss_txn_device){.type = SS_TXN_DEV_REVOKE, .seq = p->seq};
        memcpy(e->id, p->revoke, sizeof e->id);
    }
    if (p->n_devs == 2 && memcmp(p->devs[0].id, p->devs[1].id, sizeof p->devs[0].id) > 0) {
        ss_txn_device t = p->devs[0]; /* entries go in id order */
        p->devs[0] = p->devs[1];
        p->devs[1] = t;
    }
    return SS_OK;
}

/* The device table after transaction p->seq: what an epoch it begins is granted to, and
 * f->devices once committed. */
ss_rc push_devices_after(push *p, ss_devices **ret_next, ss_err *err)
{
    ss_folder *f = p->f;
    ss_txn_header h = {.seq = p->seq,
                       .device_name = f->device_name,
                       .device_name_len = strlen(f->device_name),
                       .n_devices = p->n_devs,
                       .devices = p->devs};
    ss_devices *next = NULL;
    ss_rc rc;
    memcpy(h.device_id, f->device_id, sizeof h.device_id);
    *ret_next = NULL;
    rc = ss_devices_copy(f->devices, &next, err);
    if (rc) goto fail;
    rc = ss_devices_apply_log(next, &h, err);
    if (rc) goto fail;
    *ret_next = next;
    return SS_OK;
fail:
    ss_devices_free(next);
    return rc;
}

ss_rc push_begin_epoch(push *p, const ss_devices *after, ss_err *err)
{
    return eng_epoch_begin(p->f, p->seq, after, p->epoch_key, &p->keys, err);
}
