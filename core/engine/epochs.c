/*
 * epochs: the key epochs this device holds, and how it comes to hold one
 * (docs/FORMAT.md "Key epochs"). .s3sync/epochs keeps every K_E (E >= 1)
 * the device learned, so a cron run opens the repository in its newest
 * epoch with no request. A pull learns an epoch when a log object states
 * one the device does not hold (eng_epoch_learn, from the grant epochs/<E>
 * has for it), and a revocation or rotation begins one (eng_epoch_begin).
 *
 * .s3sync/epochs is this device's, not part of the repository format:
 * records of u32 epoch | u64 start | K_E (44 bytes), epochs 1.. in order,
 * mode 0600 like master.key beside it.
 *
 * Invariants:
 *   E1. An epoch learned from a log object that begins it (start == seq) is
 *       used to decrypt that object before the device's table knows what
 *       the object revokes; its grants are verified against the table after
 *       it (eng_epoch_verify_pending, from eng_check_txn) before anything of
 *       it applies, and the pull stops if they do not verify.
 *   E2. An epoch is written to .s3sync/epochs only once its grant opened and
 *       its key matched the object's check: a key there is one the
 *       repository's devices sealed to this device.
 *   E3. A device never holds an epoch that does not follow the ones it
 *       holds (ss_keys_with_epoch): a store cannot skip it past one.
 *   E4. A device beginning an epoch keeps its key in .s3sync/epoch-pending
 *       before it creates epochs/<E>, so a crash before the transaction
 *       commits leaves no object it cannot recognise as its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "epoch.h"
#include "le.h"

#define EPOCHS_FILE "epochs"
#define RECORD_BYTES (4 + 8 + SS_EPOCH_KEY_BYTES)

void eng_epoch_pending_clear(ss_folder *f)
{
    free(f->epoch_pending.obj);
    f->epoch_pending = (eng_epoch_pending){0};
}

/*
 * A small secret file of this device whole into secure memory, its size a
 * multiple of rec (at most SS_EPOCHS_MAX records); SS_ERR_NOT_FOUND when
 * there is none.
 */
static ss_rc read_secret(const char *path, size_t rec, uint8_t **ret_buf, size_t *ret_len,
                         ss_err *err)
{
    struct stat st;
    uint8_t *buf = NULL;
    ss_rc rc = SS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO, "read %s: %s", path,
                       strerror(errno));
    if (fstat(fd, &st) || st.st_size % (off_t)rec ||
        st.st_size > (off_t)SS_EPOCHS_MAX * (off_t)rec || !st.st_size) {
        rc = ss_fail(err, SS_ERR_IO, "%s: not what this device wrote there", path);
        goto done;
    }
    buf = sodium_malloc((size_t)st.st_size);
    if (!buf) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of secure memory");
        goto done;
    }
    if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) { /* a small local file: one read */
        rc = ss_fail(err, SS_ERR_IO, "read %s: %s", path, strerror(errno));
        goto done;
    }
    *ret_buf = buf;
    *ret_len = (size_t)st.st_size;
    buf = NULL;
done:
    sodium_free(buf);
    close(fd);
    return rc;
}

ss_rc eng_epochs_load(ss_folder *f, ss_err *err)
{
    char *path = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    ss_rc rc;
    if (asprintf(&path, "%s/" EPOCHS_FILE, f->meta) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = read_secret(path, RECORD_BYTES, &buf, &len, err);
    if (rc == SS_ERR_NOT_FOUND) rc = SS_OK; /* epoch 0 only */
    for (size_t off = 0; off < len && !rc; off += RECORD_BYTES) {
        const uint8_t *r = buf + off;
        rc = ss_repo_add_epoch(f->repo, ss_le_get32(r), ss_le_get64(r + 4), r + 12, err);
    }
    sodium_free(buf);
    free(path);
    return rc;
}

ss_rc eng_epochs_save(ss_folder *f, ss_err *err)
{
    const ss_keys *k = ss_repo_keys(f->repo);
    uint32_t n = ss_keys_epoch(k);
    uint8_t *buf = NULL, *r;
    ss_rc rc;
    if (!n) return SS_OK;
    buf = sodium_malloc((size_t)n * RECORD_BYTES);
    if (!buf) return ss_fail(err, SS_ERR_NOMEM, "out of secure memory");
    r = buf;
    for (uint32_t e = 1; e <= n; e++, r += RECORD_BYTES) {
        ss_le_put32(r, e);
        ss_le_put64(r + 4, ss_keys_epoch_start(k, e));
        memcpy(r + 12, ss_keys_epoch_key(k, e), SS_EPOCH_KEY_BYTES);
    }
    rc = eng_meta_write(f, EPOCHS_FILE, buf, (size_t)n * RECORD_BYTES, err);
    sodium_free(buf);
    if (!rc) f->epochs_unsaved = 0;
    return rc;
}

/*
 * Our grant in obj (epochs/<epoch>), then the links down to the epoch we
 * hold: chain[i] is epoch held + i; the last link must lead to the key and
 * start we hold, else the object is not of our past. early: with a table
 * from before the epoch began (E1); else with the table we hold, from after.
 */
static ss_rc open_chain(ss_folder *f, const uint8_t *obj, size_t len, uint32_t epoch,
                        uint64_t start, int early, ss_epoch_secret *chain, ss_err *err)
{
    const ss_keys *k = ss_repo_keys(f->repo);
    uint32_t held = ss_keys_epoch(k), n = epoch - held;
    ss_rc rc;
    chain[n].epoch = epoch;
    chain[n].start = start;
    if (early)
        rc = ss_epoch_open_early(obj, len, epoch, ss_keys_repo_id(k), f->devices, start, f->key,
                                 chain[n].key, chain[n - 1].key, &chain[n - 1].start, err);
    else
        rc = ss_epoch_open(obj, len, epoch, ss_keys_repo_id(k), f->devices, start, f->key,
                           chain[n].key, chain[n - 1].key, &chain[n - 1].start, err);
    if (rc) return rc;
    chain[n - 1].epoch = epoch - 1;
    rc = ss_repo_unlink_down(f->store, ss_keys_repo_id(k), held, epoch - 1, chain, err);
    if (rc) return rc;
    if (sodium_memcmp(chain[0].key, ss_keys_epoch_key(k, held), SS_EPOCH_KEY_BYTES) ||
        chain[0].start != ss_keys_epoch_start(k, held))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       SS_KEY_EPOCH_FMT ": its links do not lead to the epoch this device holds",
                       epoch);
    return SS_OK;
}

ss_rc eng_epoch_learn(ss_folder *f, unsigned kind, const ss_frame_reader *r, uint64_t seq,
                      ss_err *err)
{
    const ss_keys *k = ss_repo_keys(f->repo);
    uint32_t held = ss_keys_epoch(k), epoch;
    int log = kind == SS_FRAME_KIND_LOG;
    ss_epoch_secret *chain = NULL; /* epochs held .. epoch */
    uint8_t *obj = NULL;
    size_t len = 0;
    uint64_t start;
    ss_rc rc = ss_frame_reader_epoch(r, &epoch, &start);
    if (rc)
        return ss_fail(err, SS_ERR_INTEGRITY, "%s/%020" PRIu64 ": no header",
                       log ? "log" : "checkpoints", seq);
    /* A log read in order meets each epoch where it begins; a checkpoint may skip some. */
    if (epoch <= held || (log && epoch != held + 1) || start > seq ||
        start <= ss_keys_epoch_start(k, held))
        return ss_fail(err, SS_ERR_INTEGRITY,
                       "%s/%020" PRIu64 ": sealed under key epoch %" PRIu32 " from log/%020" PRIu64
                       ", which cannot follow epoch %" PRIu32 " that this device holds",
                       log ? "log" : "checkpoints", seq, epoch, start, held);
    rc = ss_repo_epoch_object(f->store, epoch, &obj, &len, err);
    if (rc) return rc;
    chain = sodium_allocarray((size_t)(epoch - held) + 1, sizeof *chain);
    if (!chain) {
        rc = ss_fail(err, SS_ERR_NOMEM, "out of secure memory");
        goto done;
    }
    rc = open_chain(f, obj, len, epoch, start, !log || start == seq, chain, err);
    if (rc == SS_ERR_REVOKED && !ss_devices_find(f->devices, f->device_id))
        rc = ss_fail(
            err, SS_ERR_REVOKED,
            "this device (%s) had not enrolled (it pushed nothing yet) when key epoch %" PRIu32
            " began at log/%020" PRIu64 ", so it holds no key of it: join again with the "
            "current passphrase (s3sync init in a new folder)",
            f->device_name, epoch, start);
    else if (rc == SS_ERR_REVOKED)
        rc = ss_fail(err, SS_ERR_REVOKED,
                     "this device (%s) was revoked: key epoch %" PRIu32 " began at log/%020" PRIu64
                     " without it, so it reads nothing written since; to sync from this machine "
                     "again, enroll it anew (s3sync init a new folder)",
                     f->device_name, epoch, start);
    for (uint32_t e = held + 1; !rc && e <= epoch; e++)
        rc = ss_repo_add_epoch(f->repo, e, chain[e - held].start, chain[e - held].key, err);
    if (rc) goto done;
    f->epochs_unsaved = 1;
    if (!log || start == seq) { /* E1: its grants are checked once a table after start is known */
        eng_epoch_pending_clear(f);
        f->epoch_pending =
            (eng_epoch_pending){.obj = obj, .len = len, .epoch = epoch, .start = start};
        obj = NULL;
    }
done:
    sodium_free(chain);
    free(obj);
    return rc;
}

ss_rc eng_epoch_verify_pending(ss_folder *f, uint64_t seq, const ss_devices *table, ss_err *err)
{
    eng_epoch_pending *p = &f->epoch_pending;
    ss_rc rc;
    if (!p->obj || seq < p->start) return SS_OK;
    /* Any table from the epoch's start on names the same readers (epoch.h). */
    rc = ss_epoch_verify(p->obj, p->len, p->epoch, ss_keys_repo_id(ss_repo_keys(f->repo)), table,
                         p->start, err);
    if (rc) return rc;
    eng_epoch_pending_clear(f);
    return SS_OK;
}

/* ---- beginning an epoch ------------------------------------------------------------- */

/* Is obj the epoch object this device began with key (an earlier attempt of this run)? */
static int ours(ss_folder *f, uint32_t epoch, const uint8_t key[SS_EPOCH_KEY_BYTES])
{
    uint8_t *obj = NULL, k[SS_EPOCH_KEY_BYTES], prev[SS_EPOCH_KEY_BYTES];
    size_t len = 0;
    uint64_t ps = 0;
    ss_err e;
    int yes = 0;
    if (ss_repo_epoch_object(f->store, epoch, &obj, &len, &e)) return 0;
    yes = !ss_epoch_open_early(obj, len, epoch, ss_keys_repo_id(ss_repo_keys(f->repo)), f->devices,
                               ss_keys_epoch_start(ss_repo_keys(f->repo), epoch - 1) + 1, f->key, k,
                               prev, &ps, &e) &&
          !sodium_memcmp(k, key, SS_EPOCH_KEY_BYTES);
    sodium_memzero(k, sizeof k);
    sodium_memzero(prev, sizeof prev);
    free(obj);
    return yes;
}

/*
 * .s3sync/epoch-pending: "u32 epoch || key" of the epoch this device is
 * beginning, written before epochs/<E> is, removed once the epoch is held:
 * after a crash between the two, the next attempt takes the same key, knows
 * the object for its own and replaces it (E4).
 */
#define PENDING_FILE "epoch-pending"

static void pending_take(ss_folder *f, uint32_t epoch, uint8_t key[SS_EPOCH_KEY_BYTES])
{
    uint8_t *buf = NULL;
    size_t len = 0;
    char *path = NULL;
    if (asprintf(&path, "%s/" PENDING_FILE, f->meta) < 0) return;
    if (!read_secret(path, 4 + SS_EPOCH_KEY_BYTES, &buf, &len, NULL) && ss_le_get32(buf) == epoch)
        memcpy(key, buf + 4, SS_EPOCH_KEY_BYTES);
    sodium_free(buf);
    free(path);
}

static ss_rc pending_keep(ss_folder *f, uint32_t epoch, const uint8_t key[SS_EPOCH_KEY_BYTES],
                          ss_err *err)
{
    uint8_t *buf = sodium_malloc(4 + SS_EPOCH_KEY_BYTES);
    ss_rc rc;
    if (!buf) return ss_fail(err, SS_ERR_NOMEM, "out of secure memory");
    ss_le_put32(buf, epoch);
    memcpy(buf + 4, key, SS_EPOCH_KEY_BYTES);
    rc = eng_meta_write(f, PENDING_FILE, buf, 4 + SS_EPOCH_KEY_BYTES, err);
    sodium_free(buf);
    return rc;
}

void eng_epoch_pending_forget(ss_folder *f)
{
    char *path = NULL;
    if (asprintf(&path, "%s/" PENDING_FILE, f->meta) < 0) return;
    unlink(path);
    free(path);
}

ss_rc eng_epoch_begin(ss_folder *f, uint64_t at_seq, const ss_devices *after,
                      uint8_t key[SS_EPOCH_KEY_BYTES], ss_keys **ret_keys, ss_err *err)
{
    const ss_keys *k = ss_repo_keys(f->repo);
    uint32_t epoch = ss_keys_epoch(k) + 1;
    char name[SS_KEY_NAME_MAX];
    uint8_t *obj = NULL;
    size_t len = 0;
    ss_rc rc;
    *ret_keys = NULL;
    snprintf(name, sizeof name, SS_KEY_EPOCH_FMT, epoch);
    pending_take(f, epoch, key); /* a crashed attempt's key, if there was one (E4) */
    rc = pending_keep(f, epoch, key, err);
    if (rc) return rc;
    ss_fault_point("epoch.after-pending");
    rc = ss_epoch_encode(epoch, ss_keys_repo_id(k), key, ss_keys_epoch_key(k, epoch - 1),
                         ss_keys_epoch_start(k, epoch - 1), after, at_seq, f->key, &obj, &len, err);
    if (rc) return rc;
    rc = ss_store_put(f->store, name, obj, len, SS_PUT_CREATE_ONLY, err);
    if (rc == SS_ERR_EXISTS && ours(f, epoch, key)) { /* our attempt that lost its sequence */
        rc = ss_store_delete(f->store, name, err);
        if (rc) goto done;
        rc = ss_store_put(f->store, name, obj, len, SS_PUT_CREATE_ONLY, err);
    }
    if (rc == SS_ERR_EXISTS)
        rc = ss_fail(err, SS_ERR_TEMPORARY,
                     "another device is beginning key epoch %" PRIu32 " (%s exists, no transaction "
                     "uses it yet): try again once it committed",
                     epoch, name);
    if (rc) goto done;
    ss_fault_point("epoch.after-object");
    rc = ss_keys_with_epoch(k, epoch, at_seq, key, ret_keys, err);
done:
    free(obj);
    return rc;
}
