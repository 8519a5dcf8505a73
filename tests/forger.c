/* forger: a malicious device's log objects, signed or not (see forger.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forger.h"
#include "frame.h"

static void check(ss_rc rc, const ss_err *err, const char *what)
{
    if (rc) fail_msg("forger: %s: %s", what, err->msg);
}

/*
 * t after the transaction plain, as a device applies it: what an honest
 * signer commits to. A header that does not decode leaves t as it is (the
 * reader refuses such a transaction before its signature anyway).
 */
static void apply_devices(const forger *f, const void *plain, size_t len, ss_devices *t)
{
    const ss_config *cfg = ss_repo_config(f->repo);
    ss_txn_limits lim = {cfg->inline_limit, cfg->chunker.max_size, 0};
    msrc m = {plain, len, 0, len};
    ss_reader src = {msrc_read, msrc_rewind, &m};
    ss_txn_reader *r = NULL;
    if (ss_txn_reader_new(&lim, &src, &r, NULL)) return;
    (void)ss_devices_apply_log(t, ss_txn_reader_header(r), NULL);
    ss_txn_reader_free(r);
}

void forger_sync(forger *f)
{
    ss_err err = {{0}};
    ss_devices_free(f->devices);
    f->devices = NULL;
    check(ss_devices_new(&f->devices, &err), &err, "device table");
    memset(f->chain, 0, sizeof f->chain);
    memset(f->prev, 0, sizeof f->prev);
    for (f->head = 0;; f->head++) {
        char key[SS_KEY_NAME_MAX];
        void *obj = NULL, *plain = NULL;
        size_t len = 0, plen = 0;
        uint8_t hash[SS_OBJECT_HASH_BYTES];
        ss_store_stat st;
        snprintf(key, sizeof key, SS_KEY_LOG_FMT, f->head + 1);
        if (ss_store_head(f->store, key, &st, &err) == SS_ERR_NOT_FOUND) return;
        check(ss_store_get(f->store, key, 0, SS_TO_END, &obj, &len, &err), &err, key);
        check(ss_frame_open_buf(ss_repo_keys(f->repo), SS_FRAME_KIND_LOG, key, f->head + 1,
                                f->chain, UINT64_MAX, obj, len, &plain, &plen, hash, &err),
              &err, key);
        memcpy(f->prev, f->chain, sizeof f->prev);
        ss_chain_next(ss_repo_keys(f->repo), f->chain, hash, f->chain);
        apply_devices(f, plain, plen, f->devices);
        free(obj);
        free(plain);
    }
}

static void id_of(const uint8_t pk[32], uint8_t id[16])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 16);
    crypto_generichash_update(&h, (const uint8_t *)SS_DEVICE_ID_LABEL, strlen(SS_DEVICE_ID_LABEL));
    crypto_generichash_update(&h, pk, 32);
    crypto_generichash_final(&h, id, 16);
}

void forger_open(forger *f, const char *url, const char *pass)
{
    forger_open_with(f, url, NULL, pass);
}

void forger_open_with(forger *f, const char *url, const ss_store_opts *opts, const char *pass)
{
    ss_err err = {{0}};
    memset(f, 0, sizeof *f);
    check(ss_store_open(url, opts, &f->store, &err), &err, url);
    check(ss_repo_join(f->store, pass, strlen(pass), &f->repo, &err), &err, "join");
    crypto_sign_keypair(f->pk, f->sk);
    id_of(f->pk, f->id);
    snprintf(f->name, sizeof f->name, "EVE");
    forger_sync(f);
}

void forger_take_key(forger *f, const char *path)
{
    uint8_t sk[65];
    FILE *fp = fopen(path, "rb");
    size_t len = fp ? fread(sk, 1, sizeof sk, fp) : 0;
    if (fp) fclose(fp);
    if (len != 64) fail_msg("forger: %s is not a device key", path);
    memcpy(f->sk, sk, 64);
    memcpy(f->pk, sk + 32, 32);
    id_of(f->pk, f->id);
    sodium_memzero(sk, sizeof sk);
}

void forger_free(forger *f)
{
    ss_devices_free(f->devices);
    ss_repo_free(f->repo);
    ss_store_free(f->store);
    sodium_memzero(f->sk, sizeof f->sk);
}

/*
 * FORMAT.md "Devices and signatures": what a signature signs. after: the
 * table the signer commits to (the one after a log object, a checkpoint's).
 */
static void sign_as(const forger *f, int kind, const buf *plain, uint64_t seq,
                    const ss_devices *after, const uint8_t *sk, uint8_t sig[64])
{
    uint8_t msg[SS_SIG_MESSAGE_BYTES], *m = msg;
    memcpy(m, SS_SIG_LABEL, strlen(SS_SIG_LABEL)), m += strlen(SS_SIG_LABEL);
    memcpy(m, ss_keys_repo_id(ss_repo_keys(f->repo)), SS_REPO_ID_BYTES), m += SS_REPO_ID_BYTES;
    *m++ = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        *m++ = (uint8_t)(seq >> (8 * i));
    memcpy(m, f->chain, 32), m += 32;
    crypto_generichash(m, 32, plain->p, plain->len, NULL, 0), m += 32;
    ss_devices_hash(after, m);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
}

/* A log object's: over the table after it, as the log says it would be. */
static void sign(const forger *f, const buf *plain, uint64_t seq, const uint8_t *sk,
                 uint8_t sig[64])
{
    ss_devices *after = NULL;
    check(ss_devices_copy(f->devices, &after, NULL), &(ss_err){{0}}, "device table");
    apply_devices(f, plain->p, plain->len, after);
    sign_as(f, SS_FRAME_KIND_LOG, plain, seq, after, sk, sig);
    ss_devices_free(after);
}

void forge_checkpoint(forger *f, const ss_devices *table, char *ret_key)
{
    buf t = {0}, whole = {0};
    ss_txn_device *v = NULL;
    uint32_t n = 0;
    uint8_t sig[64];
    void *obj = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    static const uint8_t zero_chain[32];
    check(ss_devices_entries(table, &v, &n, &err), &err, "device entries");
    t_header_only(&t, f, NULL, f->head, 0, 0);
    b_uint(&t, n, 2);
    for (uint32_t i = 0; i < n; i++) {
        b_uint(&t, v[i].type, 1);
        b_mem(&t, v[i].id, sizeof v[i].id);
        b_uint(&t, v[i].seq, 8);
        if (v[i].type != SS_TXN_DEV_ENROLL) continue;
        b_mem(&t, v[i].pk, sizeof v[i].pk);
        b_uint(&t, v[i].name_len, 2);
        b_mem(&t, v[i].name, v[i].name_len);
    }
    sign_as(f, SS_FRAME_KIND_CHECKPOINT, &t, f->head, table, f->sk, sig);
    b_mem(&whole, SS_CHECKPOINT_MAGIC, 4);
    b_uint(&whole, SS_CHECKPOINT_VERSION, 1);
    b_uint(&whole, 0, 3);
    b_mem(&whole, f->chain, SS_CHAIN_BYTES); /* chain(seq) */
    b_mem(&whole, f->prev, SS_CHAIN_BYTES);  /* chain(seq - 1) */
    b_mem(&whole, t.p, t.len);
    b_mem(&whole, sig, sizeof sig);
    snprintf(ret_key, SS_KEY_NAME_MAX, SS_KEY_CHECKPOINT_FMT, f->head);
    check(ss_frame_seal_buf(ss_repo_keys(f->repo), SS_FRAME_KIND_CHECKPOINT, ret_key, f->head,
                            zero_chain, 3, whole.p, whole.len, &obj, &len, NULL, &err),
          &err, "seal");
    check(ss_store_put(f->store, ret_key, obj, len, SS_PUT_CREATE_ONLY, &err), &err, ret_key);
    free(obj);
    free(whole.p);
    free(t.p);
    free(v);
}

void forge(forger *f, const buf *plain, forger_sig how, char *ret_key)
{
    uint8_t sig[64], spk[32], ssk[64];
    buf whole = {0};
    void *obj = NULL;
    size_t len = 0;
    ss_err err = {{0}};
    if (how == SIG_STRANGER) crypto_sign_keypair(spk, ssk);
    sign(f, plain, f->head + 1, how == SIG_STRANGER ? ssk : f->sk, sig);
    if (how == SIG_FLIPPED) sig[17] ^= 0x10;
    b_mem(&whole, plain->p, plain->len);
    b_mem(&whole, sig, sizeof sig);
    snprintf(ret_key, SS_KEY_NAME_MAX, SS_KEY_LOG_FMT, f->head + 1);
    check(ss_frame_seal_buf(ss_repo_keys(f->repo), SS_FRAME_KIND_LOG, ret_key, f->head + 1,
                            f->chain, 3, whole.p, whole.len, &obj, &len, NULL, &err),
          &err, "seal");
    check(ss_store_put(f->store, ret_key, obj, len, SS_PUT_CREATE_ONLY, &err), &err, ret_key);
    free(obj);
    free(whole.p);
}

void forger_enroll(forger *f)
{
    buf b = {0};
    char key[SS_KEY_NAME_MAX];
    uint64_t seq = f->head + 1;
    t_header_only(&b, f, NULL, seq, 0, 0);
    b_uint(&b, 1, 2); /* one device entry: EVE enrolling itself */
    b_uint(&b, SS_TXN_DEV_ENROLL, 1);
    b_mem(&b, f->id, sizeof f->id);
    b_uint(&b, seq, 8);
    b_mem(&b, f->pk, sizeof f->pk);
    b_uint(&b, strlen(f->name), 2);
    b_mem(&b, f->name, strlen(f->name));
    forge(f, &b, SIG_OWN, key);
    free(b.p);
    forger_sync(f);
}

void t_header_only(buf *b, const forger *f, const uint8_t *id, uint64_t seq, uint32_t n_packs,
                   uint32_t n_ops)
{
    b_mem(b, "S3ST", 4);
    b_uint(b, 2, 1); /* format version */
    b_uint(b, 0, 3);
    b_uint(b, seq, 8);
    b_uint(b, 1700000000000000000ull, 8);
    b_mem(b, id ? id : f->id, SS_TXN_DEVICE_ID_BYTES);
    b_uint(b, strlen(f->name), 2);
    b_mem(b, f->name, strlen(f->name));
    b_uint(b, n_packs, 4);
    b_uint(b, n_ops, 4);
}

void t_header(buf *b, const forger *f, const uint8_t *id, uint64_t seq, uint32_t n_packs,
              uint32_t n_ops)
{
    t_header_only(b, f, id, seq, n_packs, n_ops);
    if (!n_packs) t_devices_none(b);
}

void t_devices_none(buf *b)
{
    b_uint(b, 0, 2);
}

void t_path(buf *b, const char *path, size_t len)
{
    b_uint(b, len, 2);
    b_mem(b, path, len);
}

void t_attrs(buf *b, int kind, uint64_t size)
{
    b_uint(b, (uint64_t)kind, 1);
    b_uint(b, 0644, 4);
    b_uint(b, 1700000000, 8);
    b_uint(b, 0, 4);
    b_uint(b, size, 8);
}

void t_file(buf *b, const forger *f, const char *path, size_t path_len, const char *data)
{
    uint8_t cid[32];
    size_t n = strlen(data);
    crypto_generichash(cid, sizeof cid, (const uint8_t *)data, n,
                       ss_keys_subkey(ss_repo_keys(f->repo), SS_SUBKEY_CHUNK_ID), SS_SUBKEY_BYTES);
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    t_path(b, path, path_len);
    t_attrs(b, SS_TXN_KIND_FILE, n);
    b_mem(b, cid, sizeof cid);
    b_uint(b, SS_TXN_STORAGE_INLINE, 1);
    b_uint(b, n, 4);
    b_mem(b, data, n);
}

void t_link(buf *b, const char *path, const char *target, size_t target_len)
{
    b_uint(b, SS_TXN_OP_UPSERT, 1);
    t_path(b, path, strlen(path));
    t_attrs(b, SS_TXN_KIND_SYMLINK, target_len);
    t_path(b, target, target_len);
}

void t_delete(buf *b, const char *path)
{
    b_uint(b, SS_TXN_OP_DELETE, 1);
    t_path(b, path, strlen(path));
}
