/*
 * auth.c: device tokens. A token is 32 random bytes, base64url; lockd keeps
 * only BLAKE2b-256 keyed with the database's token secret, so the database
 * alone neither reveals tokens nor lets guesses be tested offline. A request's
 * Bearer token is hashed, looked up by hash, and the stored hash compared
 * again in constant time (sodium_memcmp), so timing tells nothing about how
 * close a guess came.
 */
#include "lockd.h"
#include "ld_state.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

void ld_auth_token_new(char out[LD_TOKEN_LEN + 1])
{
    unsigned char raw[LD_TOKEN_BYTES];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, LD_TOKEN_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

void ld_auth_hash(const unsigned char secret[LD_SECRET_LEN], const char *token,
                  unsigned char out[LD_HASH_LEN])
{
    crypto_generichash(out, LD_HASH_LEN, (const unsigned char *)token, strlen(token), secret,
                       LD_SECRET_LEN);
}

ss_rc ld_auth_check(ld_state *state, const unsigned char secret[LD_SECRET_LEN],
                    const char *authorization, ld_device *ret_dev, ld_auth_result *ret_result,
                    ss_err *err)
{
    unsigned char hash[LD_HASH_LEN], stored[LD_HASH_LEN];
    const char *tok;
    ss_rc rc;

    memset(ret_dev, 0, sizeof *ret_dev);
    *ret_result = LD_AUTH_MISSING;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) return SS_OK;
    tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    *ret_result = LD_AUTH_BAD;
    /* Only well-formed tokens reach the database: a length check leaks
     * nothing, every token has the same length. */
    if (strlen(tok) != LD_TOKEN_LEN ||
        strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789-_") != LD_TOKEN_LEN)
        return SS_OK;
    ld_auth_hash(secret, tok, hash);
    rc = ld_state_device_by_hash(state, hash, ret_dev, stored, err);
    if (rc == SS_ERR_NOT_FOUND) return SS_OK;
    if (rc) return rc;
    if (sodium_memcmp(hash, stored, LD_HASH_LEN) != 0) return SS_OK;
    *ret_result = ret_dev->revoked ? LD_AUTH_REVOKED : LD_AUTH_OK;
    return SS_OK;
}
