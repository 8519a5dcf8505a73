/*
 * test-repo: creating, joining and the key files of a repository (core/repo.c)
 * on a file:// store: a wrong passphrase opens nothing and writes nothing,
 * every key file opens the same repository, a removed passphrase no longer
 * opens it, and the last key file cannot be removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "repo.h"

#define PASS1 "first passphrase"
#define PASS2 "second passphrase"

static char url[256];

static int setup(void **state)
{
    char dir[] = "/tmp/ss-repo-XXXXXX";
    ss_store *s = NULL;
    if (!mkdtemp(dir)) return -1;
    snprintf(url, sizeof url, "file://%s/store", dir);
    if (ss_store_open(url, NULL, &s, NULL)) return -1;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    ss_store_free(*state);
    return 0;
}

static int count(void *ctx, const ss_key_info *k)
{
    (void)k;
    (*(int *)ctx)++;
    return 0;
}

static int count_objects(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key;
    (void)st;
    (*(int *)ctx)++;
    return 0;
}

typedef struct pick {
    const char *skip;
    char found[17];
} pick;

static int pick_other(void *ctx, const ss_key_info *k)
{
    pick *p = ctx;
    if (strcmp(k->id, p->skip)) snprintf(p->found, sizeof p->found, "%s", k->id);
    return 0;
}

static ss_repo *join(ss_store *s, const char *pass, ss_rc want)
{
    ss_repo *r = NULL;
    ss_err err = {{0}};
    ss_rc rc = ss_repo_join(s, pass, strlen(pass), &r, &err);
    if (rc != want) fail_msg("join with '%s': %s (%s)", pass, ss_strerror(rc), err.msg);
    if (rc == SS_ERR_PASSPHRASE) assert_non_null(strstr(err.msg, "wrong passphrase"));
    if (rc) assert_null(r);
    return r;
}

static void test_lifecycle(void **state)
{
    ss_store *s = *state;
    ss_repo *a = NULL, *b = NULL, *c = NULL;
    ss_err err = {{0}};
    char id2[17];
    int n = 0, before = 0, after = 0;

    /* Nothing there yet: joining finds no repository. */
    join(s, PASS1, SS_ERR_NOT_FOUND);
    assert_int_equal(ss_repo_create(s, PASS1, strlen(PASS1), "first", &a, &err), SS_OK);
    assert_int_equal(ss_repo_create(s, PASS1, strlen(PASS1), "first", &b, &err), SS_ERR_EXISTS);
    assert_null(b);

    /* A wrong passphrase opens nothing and writes nothing. */
    assert_int_equal(ss_store_list(s, "", NULL, count_objects, &before, &err), SS_OK);
    join(s, "not it", SS_ERR_PASSPHRASE);
    assert_int_equal(ss_store_list(s, "", NULL, count_objects, &after, &err), SS_OK);
    assert_int_equal(before, after);

    /* A second key file opens the same repository. */
    assert_int_equal(ss_repo_key_add(a, PASS2, strlen(PASS2), "second", id2, &err), SS_OK);
    assert_int_equal(strlen(id2), 16);
    b = join(s, PASS2, SS_OK);
    assert_memory_equal(ss_keys_master(ss_repo_keys(a)), ss_keys_master(ss_repo_keys(b)), 32);
    assert_memory_equal(ss_repo_config(a)->repo_id, ss_repo_config(b)->repo_id, 16);
    assert_int_equal(ss_repo_key_list(a, count, &n, &err), SS_OK);
    assert_int_equal(n, 2);

    /* Remove the first key file: its passphrase no longer opens the repository. */
    pick pk = {id2, ""};
    assert_int_equal(ss_repo_key_list(a, pick_other, &pk, &err), SS_OK);
    assert_int_equal(strlen(pk.found), 16);
    assert_int_equal(ss_repo_key_remove(a, pk.found, &err), SS_OK);
    join(s, PASS1, SS_ERR_PASSPHRASE);
    c = join(s, PASS2, SS_OK);
    ss_repo_free(c);

    /* Never the last key file, and never one that is not there. */
    assert_int_equal(ss_repo_key_remove(a, id2, &err), SS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "last key"));
    assert_int_equal(ss_repo_key_remove(a, pk.found, &err), SS_ERR_NOT_FOUND);
    ss_repo_free(join(s, PASS2, SS_OK));
    ss_repo_free(a);
    ss_repo_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown)};
    if (sodium_init() < 0) return 1;
    setenv("S3SYNC_KDF", "interactive", 1);
    return cmocka_run_group_tests_name("repo", tests, NULL, NULL);
}
