/* device_key: this device's signing key pair on disk and in locked memory (see device_key.h). */
#include "device_key.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices.h"

struct ss_device_key {
    uint8_t *sk; /* sodium_malloc'ed: seed || public key */
    uint8_t id[SS_TXN_DEVICE_ID_BYTES];
};

static ss_rc key_new(ss_device_key **ret_key, ss_err *err)
{
    ss_device_key *k = NULL;
    *ret_key = NULL;
    if (sodium_init() < 0) return ss_fail(err, SS_ERR_NOMEM, "device key: sodium_init failed");
    k = calloc(1, sizeof *k);
    if (k && !(k->sk = sodium_malloc(SS_DEVICE_SK_BYTES))) {
        free(k);
        k = NULL;
    }
    *ret_key = k;
    return k ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory for the device key");
}

void ss_device_key_free(ss_device_key *k)
{
    if (!k) return;
    sodium_free(k->sk); /* wipes */
    free(k);
}

static ss_rc key_path(const char *dir, char **ret_path, ss_err *err)
{
    if (asprintf(ret_path, "%s/" SS_DEVICE_KEY_FILE, dir) < 0) {
        *ret_path = NULL;
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    }
    return SS_OK;
}

ss_rc ss_device_key_create(const char *dir, ss_device_key **ret_key, ss_err *err)
{
    ss_device_key *k = NULL;
    uint8_t pk[SS_DEVICE_PK_BYTES];
    char *path = NULL;
    int fd = -1;
    ss_rc rc;
    *ret_key = NULL;
    rc = key_new(&k, err);
    if (rc) goto fail;
    rc = key_path(dir, &path, err);
    if (rc) goto fail;
    crypto_sign_keypair(pk, k->sk);
    ss_device_id_of(pk, k->id);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, k->sk, SS_DEVICE_SK_BYTES) != SS_DEVICE_SK_BYTES || fsync(fd)) {
        rc = ss_fail(err, SS_ERR_IO, "write %s: %s", path, strerror(errno));
        if (fd >= 0) unlink(path);
        goto fail;
    }
    *ret_key = k;
    k = NULL;
fail:
    if (fd >= 0) close(fd);
    free(path);
    ss_device_key_free(k);
    return rc;
}

/* A damaged file would sign what nobody can verify: its public half must be its seed's. */
static int halves_agree(const ss_device_key *k)
{
    uint8_t seed[crypto_sign_SEEDBYTES], pk[SS_DEVICE_PK_BYTES];
    uint8_t *sk = sodium_malloc(SS_DEVICE_SK_BYTES);
    int ok = sk != NULL;
    if (ok) {
        crypto_sign_ed25519_sk_to_seed(seed, k->sk);
        crypto_sign_seed_keypair(pk, sk, seed);
        ok = !sodium_memcmp(pk, ss_device_key_public(k), sizeof pk);
        sodium_memzero(seed, sizeof seed);
        sodium_free(sk);
    }
    return ok;
}

ss_rc ss_device_key_load(const char *dir, ss_device_key **ret_key, ss_err *err)
{
    ss_device_key *k = NULL;
    uint8_t extra;
    char *path = NULL;
    int fd = -1;
    ssize_t n;
    ss_rc rc;
    *ret_key = NULL;
    rc = key_new(&k, err);
    if (rc) goto fail;
    rc = key_path(dir, &path, err);
    if (rc) goto fail;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = ss_fail(err, errno == ENOENT ? SS_ERR_NOT_FOUND : SS_ERR_IO,
                     "read %s: %s (this device's signing key)", path, strerror(errno));
        goto fail;
    }
    n = read(fd, k->sk, SS_DEVICE_SK_BYTES);
    if (n != SS_DEVICE_SK_BYTES || read(fd, &extra, 1) != 0) {
        rc = ss_fail(err, SS_ERR_IO, "%s: not a device key (%d bytes expected)", path,
                     SS_DEVICE_SK_BYTES);
        goto fail;
    }
    if (!halves_agree(k)) {
        rc = ss_fail(err, SS_ERR_IO, "%s: damaged (its public key is not its seed's)", path);
        goto fail;
    }
    ss_device_id_of(ss_device_key_public(k), k->id);
    *ret_key = k;
    k = NULL;
fail:
    if (fd >= 0) close(fd);
    free(path);
    ss_device_key_free(k);
    return rc;
}

const uint8_t *ss_device_key_public(const ss_device_key *k)
{
    return k->sk + crypto_sign_SEEDBYTES;
}

const uint8_t *ss_device_key_id(const ss_device_key *k)
{
    return k->id;
}

void ss_device_key_sign(const ss_device_key *k, const uint8_t *msg, size_t len,
                        uint8_t ret_sig[SS_TXN_SIG_BYTES])
{
    crypto_sign_detached(ret_sig, NULL, msg, len, k->sk);
}

int ss_device_key_unseal(const ss_device_key *k, const uint8_t *sealed, size_t len, uint8_t *out)
{
    uint8_t xpk[crypto_box_PUBLICKEYBYTES], xsk[crypto_box_SECRETKEYBYTES];
    int r = -1;
    if (len < crypto_box_SEALBYTES) return -1;
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, k->sk + crypto_sign_SEEDBYTES)) goto done;
    if (crypto_sign_ed25519_sk_to_curve25519(xsk, k->sk)) goto done;
    r = crypto_box_seal_open(out, sealed, len, xpk, xsk);
done:
    sodium_memzero(xsk, sizeof xsk);
    return r;
}
