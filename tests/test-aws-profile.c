/*
 * test-aws-profile: the AWS shared files read as the AWS CLI reads them
 * (s3store/aws_profile.c): section names in either file, the credentials
 * file beating the config file, an s3 block's endpoint_url, comments, the
 * AWS_* file and profile variables, and every refusal. Then what the s3
 * backend makes of a profile against the environment's keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws_profile.h"
#include "s3store.h"

static const char creds_text[] = "# comment\n"
                                 "[default]\n"
                                 "aws_access_key_id = AKDEFAULT\n"
                                 "aws_secret_access_key=SKDEFAULT\n"
                                 "\n"
                                 "[work]\n"
                                 "aws_access_key_id  =  AKWORK  \n"
                                 "; another comment\n"
                                 "aws_secret_access_key = SKWORK\n"
                                 "aws_session_token = TOKWORK\n"
                                 "[profile work]\n" /* not a credentials-file name: ignored there */
                                 "aws_access_key_id = WRONG\n";

static const char config_text[] =
    "[default]\n"
    "region = eu-west-1\n"
    "[profile work]\n"
    "region = us-west-2\n"
    "aws_access_key_id = CONFIGKEY\n" /* the credentials file's wins */
    "endpoint_url = http://top.example:9000\n"
    "s3 =\n"
    "  endpoint_url = http://s3.example:7480\n"
    "  addressing_style = path\n"
    "output = json\n"
    "[work]\n" /* in config, a bare name other than default is not a profile */
    "region = WRONG\n"
    "[profile sso]\n"
    "sso_session = corp\n"
    "region = ap-south-1\n"
    "[profile plain]\n"
    "endpoint_url = http://plain.example\n";

static void test_parse_table(void **state)
{
    (void)state;
    static const struct {
        const char *name, *key, *secret, *token, *region, *endpoint, *unsupported;
        int found;
    } v[] = {
        {"default", "AKDEFAULT", "SKDEFAULT", NULL, "eu-west-1", NULL, NULL, 1},
        {"work", "AKWORK", "SKWORK", "TOKWORK", "us-west-2", "http://s3.example:7480", NULL, 1},
        {"sso", NULL, NULL, NULL, "ap-south-1", NULL, "sso_session", 1},
        {"plain", NULL, NULL, NULL, NULL, "http://plain.example", NULL, 1},
        {"absent", NULL, NULL, NULL, NULL, NULL, NULL, 0},
    };
#define EQ(a, b) ((a) ? assert_non_null(b), assert_string_equal(a, b) : assert_null(b))
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ss_aws_profile p = {0};
        ss_aws_profile_parse(creds_text, v[i].name, 0, &p);
        ss_aws_profile_parse(config_text, v[i].name, 1, &p);
        EQ(v[i].key, p.access_key);
        EQ(v[i].secret, p.secret_key);
        EQ(v[i].token, p.session_token);
        EQ(v[i].region, p.region);
        EQ(v[i].endpoint, p.endpoint_url);
        EQ(v[i].unsupported, p.unsupported);
        assert_int_equal(v[i].found, p.found);
        ss_aws_profile_clear(&p);
    }
#undef EQ
}

/* A temp HOME with ~/.aws/credentials and ~/.aws/config; every AWS_* variable unset. */
static char home[64];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    char path[128];
    (void)state;
    snprintf(home, sizeof home, "/tmp/ss-awsprof-XXXXXX");
    if (!mkdtemp(home)) return -1;
    snprintf(path, sizeof path, "%s/.aws", home);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/.aws/credentials", home);
    write_file(path, creds_text);
    snprintf(path, sizeof path, "%s/.aws/config", home);
    write_file(path, config_text);
    setenv("HOME", home, 1);
    static const char *vars[] = {
        "AWS_PROFILE",        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
        "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY",       "AWS_SESSION_TOKEN",
        "AWS_REGION",         "AWS_DEFAULT_REGION",          "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf %s", home);
    return system(cmd) ? -1 : 0;
}

static void test_load(void **state)
{
    ss_aws_profile p;
    ss_err err = {{0}};
    (void)state;
    assert_int_equal(SS_OK, ss_aws_profile_load(NULL, &p, &err)); /* default */
    assert_string_equal("AKDEFAULT", p.access_key);
    ss_aws_profile_clear(&p);
    setenv("AWS_PROFILE", "work", 1);
    assert_int_equal(SS_OK, ss_aws_profile_load(NULL, &p, &err));
    assert_string_equal("AKWORK", p.access_key);
    ss_aws_profile_clear(&p);
    assert_int_equal(SS_OK,
                     ss_aws_profile_load("default", &p, &err)); /* the caller's beats AWS_PROFILE */
    assert_string_equal("AKDEFAULT", p.access_key);
    ss_aws_profile_clear(&p);
    /* A named profile nobody has is refused, naming both files. */
    assert_int_equal(SS_ERR_INVALID, ss_aws_profile_load("nope", &p, &err));
    assert_non_null(strstr(err.msg, "'nope'"));
    assert_non_null(strstr(err.msg, "/.aws/credentials"));
    assert_null(p.access_key);
    setenv("AWS_PROFILE", "nope", 1);
    assert_int_equal(SS_ERR_INVALID, ss_aws_profile_load(NULL, &p, &err));
    unsetenv("AWS_PROFILE");
    /* The file variables move both files; "~/" is the home directory. */
    char path[128];
    snprintf(path, sizeof path, "%s/other", home);
    write_file(path, "[default]\naws_access_key_id = AKOTHER\naws_secret_access_key = S\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    assert_int_equal(SS_OK, ss_aws_profile_load(NULL, &p, &err));
    assert_string_equal("AKOTHER", p.access_key);
    assert_null(p.region); /* the config file moved away */
    ss_aws_profile_clear(&p);
    /* No files at all: an empty default, not an error. */
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    assert_int_equal(SS_OK, ss_aws_profile_load(NULL, &p, &err));
    assert_null(p.access_key);
    assert_int_equal(0, p.found);
    ss_aws_profile_clear(&p);
    /* Files that cannot be read (ENOTDIR: root reads any mode) are as absent, as for the AWS
     * CLI, unless a profile was named: then the error names the file. */
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/etc/passwd/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/etc/passwd/config", 1);
    assert_int_equal(SS_OK, ss_aws_profile_load(NULL, &p, &err));
    assert_int_equal(0, p.found);
    ss_aws_profile_clear(&p);
    assert_int_equal(SS_ERR_INVALID, ss_aws_profile_load("work", &p, &err));
    assert_non_null(strstr(err.msg, "/etc/passwd/credentials"));
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
}

/* What the s3 backend takes: opened only (nothing is contacted until the first operation). */
static void test_store_choices(void **state)
{
    ss_store *s = NULL;
    ss_err err = {{0}};
    ss_store_opts o = {0};
    (void)state;
    /* The default profile's keys, no variables: opens. */
    assert_int_equal(SS_OK, ss_store_open("s3://bucket/p", &o, &s, &err));
    ss_store_free(s);
    /* An sso profile without keys is refused, naming the profile and the key. */
    o.profile = "sso";
    assert_int_equal(SS_ERR_INVALID, ss_store_open("s3://bucket/p", &o, &s, &err));
    assert_non_null(strstr(err.msg, "'sso'"));
    assert_non_null(strstr(err.msg, "sso_session"));
    /* ...unless the variables give keys and the profile was not named by the caller. */
    o.profile = NULL;
    setenv("AWS_PROFILE", "sso", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
    assert_int_equal(SS_OK, ss_store_open("s3://bucket/p", &o, &s, &err));
    ss_store_free(s);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    /* No keys anywhere: the message says where to put them. */
    o.profile = "plain";
    assert_int_equal(SS_ERR_INVALID, ss_store_open("s3://bucket/p", &o, &s, &err));
    assert_non_null(strstr(err.msg, "no credentials"));
    assert_non_null(strstr(err.msg, "'plain'"));
    unsetenv("AWS_PROFILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_store_choices),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
