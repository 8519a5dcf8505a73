/*
 * signing: transactions and checkpoints signed as they are written, and
 * their signatures checked as they are read (FORMAT.md "Devices and
 * signatures"; the rules are devices.c's, the key device_key.c's).
 *
 * A writer's bytes pass through eng_signer on their way to the frame, so
 * the digest costs no second pass; a reader's digest is taken over the
 * staged plaintext, which pull and the history walks hold in a file anyway.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

void eng_signer_init(eng_signer *s, ss_folder *f, int kind, uint64_t seq,
                     const uint8_t chain[SS_CHAIN_BYTES], const ss_devices *after,
                     ss_store_write_fn out, void *ctx)
{
    memset(s, 0, sizeof *s);
    s->f = f;
    s->kind = kind;
    s->seq = seq;
    memcpy(s->chain, chain, SS_CHAIN_BYTES);
    ss_devices_hash(after, s->table);
    s->out = out;
    s->ctx = ctx;
    crypto_generichash_init(&s->h, NULL, 0, crypto_generichash_BYTES);
}

int eng_signer_write(void *ctx, const void *buf, size_t len)
{
    eng_signer *s = ctx;
    if (!s->signed_) crypto_generichash_update(&s->h, buf, len); /* the signature is not signed */
    return s->out(s->ctx, buf, len);
}

ss_rc eng_signer_sign(void *ctx, uint8_t ret_sig[SS_TXN_SIG_BYTES], ss_err *err)
{
    eng_signer *s = ctx;
    uint8_t digest[crypto_generichash_BYTES], msg[SS_SIG_MESSAGE_BYTES];
    if (s->signed_) return ss_fail(err, SS_ERR_INVALID, "signer used twice");
    crypto_generichash_final(&s->h, digest, sizeof digest);
    ss_devices_sig_message(msg, ss_keys_repo_id(ss_repo_keys(s->f->repo)), s->kind, s->seq,
                           s->chain, digest, s->table);
    ss_device_key_sign(s->f->key, msg, sizeof msg, ret_sig);
    s->signed_ = 1;
    return SS_OK;
}

ss_rc eng_staged_digest(int fd, uint64_t len, uint8_t ret_digest[crypto_generichash_BYTES],
                        ss_err *err)
{
    crypto_generichash_state h;
    uint8_t buf[64 * 1024];
    uint64_t off = 0;
    crypto_generichash_init(&h, NULL, 0, crypto_generichash_BYTES);
    while (off < len) {
        size_t want = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return ss_fail(err, SS_ERR_IO, "read the staged transaction: %s",
                           n ? strerror(errno) : "it shrank");
        crypto_generichash_update(&h, buf, (size_t)n);
        off += (uint64_t)n;
    }
    crypto_generichash_final(&h, ret_digest, crypto_generichash_BYTES);
    return SS_OK;
}

/* The signature of the transaction r read to its end from fd, and the digest of what it signs. */
static ss_rc signed_part(ss_txn_reader *r, int fd, const uint8_t **ret_sig,
                         uint8_t digest[crypto_generichash_BYTES], ss_err *err)
{
    uint64_t signed_len;
    *ret_sig = ss_txn_reader_signature(r, &signed_len);
    if (!*ret_sig) return ss_fail(err, SS_ERR_INVALID, "the transaction was not read to its end");
    return eng_staged_digest(fd, signed_len, digest, err);
}

ss_rc eng_check_signature(ss_folder *f, const ss_devices *table, ss_txn_reader *r, int fd,
                          const uint8_t prev_chain[SS_CHAIN_BYTES], ss_devices **ret_after,
                          ss_err *err)
{
    const uint8_t *sig;
    uint8_t digest[crypto_generichash_BYTES];
    ss_rc rc = signed_part(r, fd, &sig, digest, err);
    if (rc) return rc;
    return ss_devices_check_log(table, ss_keys_repo_id(ss_repo_keys(f->repo)),
                                ss_txn_reader_header(r), prev_chain, digest, sig, ret_after, err);
}

ss_rc eng_check_endorsement(ss_folder *f, const ss_devices *after, ss_txn_reader *r, int fd,
                            const uint8_t prev_chain[SS_CHAIN_BYTES], ss_err *err)
{
    const uint8_t *sig;
    uint8_t digest[crypto_generichash_BYTES];
    ss_rc rc = signed_part(r, fd, &sig, digest, err);
    if (rc) return rc;
    return ss_devices_check_endorsement(after, ss_keys_repo_id(ss_repo_keys(f->repo)),
                                        ss_txn_reader_header(r), prev_chain, digest, sig, err);
}

ss_rc eng_checkpoint_table(ss_folder *f, ss_txn_reader *r, int fd,
                           const uint8_t chain[SS_CHAIN_BYTES], ss_devices **ret_table, ss_err *err)
{
    const uint8_t *sig;
    uint8_t digest[crypto_generichash_BYTES];
    ss_rc rc;
    *ret_table = NULL;
    rc = signed_part(r, fd, &sig, digest, err);
    if (rc) return rc;
    return ss_devices_from_checkpoint(ss_keys_repo_id(ss_repo_keys(f->repo)),
                                      ss_txn_reader_header(r), chain, digest, sig, ret_table, err);
}
