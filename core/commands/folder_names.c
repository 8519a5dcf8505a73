/*
 * folder_names: which names and paths of a folder a sync takes, for a
 * caller that does not hold the folder open (s3sync watch): the folder's
 * ignore rules as push and status read them, the names never synced, and
 * names from other devices made safe to print.
 */
#include <stdlib.h>
#include <string.h>

#include "fsio.h"
#include "ignore.h"
#include "path.h"
#include "s3sync.h"

struct ss_folder_ignore {
    ss_ignore *ign;
    char *file; /* the ignore_file setting; NULL: .s3syncignore */
};

ss_rc ss_folder_ignore_load(const char *dir, ss_folder_ignore **ret_ign, ss_err *err)
{
    ss_folder_ignore *fi = NULL;
    ss_rc rc;
    *ret_ign = NULL;
    fi = calloc(1, sizeof *fi);
    if (!fi) return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    rc = ss_folder_get_setting(dir, "ignore_file", &fi->file, NULL);
    if (rc) fi->file = NULL; /* unset: .s3syncignore */
    rc = ss_ignore_load(dir, fi->file, &fi->ign, err);
    if (rc) goto fail;
    *ret_ign = fi;
    return SS_OK;
fail:
    ss_folder_ignore_free(fi);
    return rc;
}

void ss_folder_ignore_free(ss_folder_ignore *ign)
{
    if (!ign) return;
    ss_ignore_free(ign->ign);
    free(ign->file);
    free(ign);
}

int ss_folder_ignored(const ss_folder_ignore *ign, const char *path, int is_dir)
{
    return ign && ss_ignore_match(ign->ign, path, is_dir);
}

const char *ss_folder_ignore_file(const ss_folder_ignore *ign)
{
    if (!ign || !ign->file) return SS_IGNORE_FILE;
    return ign->file[0] == '/' ? "" : ign->file;
}

int ss_folder_name_skipped(const char *name)
{
    return ss_path_reserved(name, strlen(name)) ||
           !strncmp(name, SS_FS_TMP_PREFIX, strlen(SS_FS_TMP_PREFIX));
}

char *ss_display_path(char *dst, size_t cap, const char *path)
{
    return ss_path_escape(dst, cap, path, strlen(path));
}
