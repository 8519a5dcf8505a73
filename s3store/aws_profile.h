/*
 * aws_profile: one profile of the AWS shared files, read as the AWS CLI
 * reads them, so `aws configure` is all a user of s3:// stores needs.
 *
 *   credentials  AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials: [NAME]
 *   config       AWS_CONFIG_FILE, else ~/.aws/config: [default], [profile NAME]
 *
 * Keys read: aws_access_key_id, aws_secret_access_key, aws_session_token
 * (the credentials file wins over the config file for these), region, and
 * endpoint_url (an "s3 =" sub-section's beats the profile's own). Lines
 * starting with '#' or ';' are comments. Profiles that get credentials from
 * elsewhere (credential_process, sso_*, role_arn, web identity) are reported
 * as unsupported rather than silently sending no credentials.
 */
#ifndef SS_AWS_PROFILE_H
#define SS_AWS_PROFILE_H

#include "ss_error.h"

typedef struct ss_aws_profile {
    char *access_key, *secret_key, *session_token; /* owned; secrets wiped on clear */
    char *region, *endpoint_url;                   /* owned */
    char *unsupported; /* owned: the first key naming a credential source we cannot use */
    int found;         /* the profile's section exists in either file */
    char name[128];    /* the profile read (for messages) */
} ss_aws_profile;

/*
 * Load profile name (NULL: AWS_PROFILE, else "default"). A profile named by
 * the caller or by AWS_PROFILE that neither file holds is SS_ERR_INVALID,
 * naming both files; a missing "default" is just empty. Clears *ret first.
 */
ss_rc ss_aws_profile_load(const char *name, ss_aws_profile *ret, ss_err *err);

/* Fill what p still lacks from one file's text (tests use it directly). */
void ss_aws_profile_parse(const char *text, const char *name, int is_config, ss_aws_profile *p);

void ss_aws_profile_clear(ss_aws_profile *p); /* safe on a zeroed or cleared profile */

#endif
