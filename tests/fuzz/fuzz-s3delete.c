/*
 * fuzz-s3delete: libFuzzer target for S3's multi-object delete XML
 * (s3store/s3_delete.c). Byte 0 picks the half (bit 0); the rest is:
 *   0 answer  a store's answer to a DeleteObjects of the keys "p/a", "p/b",
 *             "p/&<c>" (prefix "p/" stripped in messages): the result is
 *             one of the codes s3_delete_check promises, its message a
 *             NUL-terminated string, and SS_OK only when the answer names
 *             every key asked (checked here by a plain search).
 *   1 body    keys split at '\n': each s3_delete_key_ok passes goes into
 *             s3_delete_body, and libxml2 must read back exactly those
 *             keys in that order (escaping is the library's: a key never
 *             comes back changed, nor as more or fewer keys).
 * Seeds: corpus-s3delete/.
 */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_delete.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void answer(const uint8_t *d, size_t n)
{
    static const char *const keys[] = {"p/a", "p/b", "p/&<c>"};
    ss_buf a = {0};
    ss_err err = {{0}};
    ss_rc rc;
    if (ss_buf_append(&a, d, n)) abort();
    rc = s3_delete_check(&a, keys, 3, 2, &err);
    if (rc != SS_OK && rc != SS_ERR_STORE && rc != SS_ERR_AUTH && rc != SS_ERR_TEMPORARY &&
        rc != SS_ERR_NOMEM)
        abort();
    if (!memchr(err.msg, '\0', sizeof err.msg)) abort();
    if (rc == SS_OK &&
        (!memmem(d, n, "p/a", 3) || !memmem(d, n, "p/b", 3) || !memmem(d, n, "c", 1)))
        abort(); /* a key the answer cannot have named was taken as deleted */
    ss_buf_free(&a);
}

static void body(const uint8_t *d, size_t n)
{
    char *text = malloc(n + 1), *keys[64];
    size_t k = 0, got = 0;
    ss_buf b = {0};
    xmlDoc *doc = NULL;
    if (!text) abort();
    memcpy(text, d, n);
    text[n] = '\0';
    for (char *s = text, *e; s && k < 64; s = e ? e + 1 : NULL) {
        e = strchr(s, '\n');
        if (e) *e = '\0';
        if (s3_delete_key_ok(s)) keys[k++] = s;
    }
    if (!k || s3_delete_body((const char *const *)keys, k, &b, NULL)) goto out;
    doc = xmlReadMemory((const char *)b.p, (int)b.len, "d.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) abort();
    for (xmlNode *o = xmlDocGetRootElement(doc)->children; o; o = o->next) {
        if (o->type != XML_ELEMENT_NODE || strcmp((const char *)o->name, "Object")) continue;
        xmlChar *key = xmlNodeGetContent(o->children);
        if (got >= k || !key || strcmp((const char *)key, keys[got])) abort();
        got++;
        xmlFree(key);
    }
    if (got != k) abort();
out:
    xmlFreeDoc(doc);
    ss_buf_free(&b);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1)
        body(data + 1, size - 1);
    else
        answer(data + 1, size - 1);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    xmlInitParser();
    return 0;
}
