/*
 * s3_delete: DeleteObjects' request body and answer (see s3_delete.h).
 *
 * The body is built with libxml2's tree API, so a key holding '&', '<' or
 * ']]>' is escaped by the library, never by hand. The answer is matched
 * key by key against what was asked (sorted indexes, bsearch): Quiet mode
 * would leave a key that silently failed indistinguishable from one that
 * was deleted, so it is off, and a key missing from the answer is a
 * failure, never taken for a success.
 */
#include "s3_delete.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"

/* The code point UTF-8 starts at p, its length in *ret_len; -1 when malformed or overlong. */
static long utf8_next(const unsigned char *p, size_t *ret_len)
{
    static const long min[5] = {0, 0, 0x80, 0x800, 0x10000}; /* below: overlong */
    size_t n = p[0] < 0x80 ? 1 : p[0] >> 5 == 6 ? 2 : p[0] >> 4 == 14 ? 3 : p[0] >> 3 == 30 ? 4 : 0;
    long c = n == 1 ? p[0] : n == 2 ? p[0] & 0x1f : n == 3 ? p[0] & 0x0f : p[0] & 0x07;
    if (!n) return -1;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return -1; /* the NUL ends a short sequence here too */
        c = c << 6 | (p[i] & 0x3f);
    }
    *ret_len = n;
    return c < min[n] ? -1 : c;
}

int s3_delete_key_ok(const char *key)
{
    const unsigned char *p = (const unsigned char *)key;
    size_t len = strlen(key), n = 0;
    if (!len || len > 1024) return 0;
    for (; *p; p += n) { /* XML 1.0's Char, but for the three controls it allows */
        long c = utf8_next(p, &n);
        if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff) || c == 0xfffe || c == 0xffff || c > 0x10ffff)
            return 0;
    }
    return 1;
}

ss_rc s3_delete_body(const char *const *keys, size_t n, ss_buf *ret_body, ss_err *err)
{
    xmlDoc *doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNode *root = doc ? xmlNewNode(NULL, (const xmlChar *)"Delete") : NULL;
    xmlChar *mem = NULL;
    int size = 0, bad = !root;
    memset(ret_body, 0, sizeof *ret_body);
    if (root) {
        xmlDocSetRootElement(doc, root);
        bad = !xmlNewNs(root, (const xmlChar *)S3_XMLNS, NULL) ||
              !xmlNewTextChild(root, NULL, (const xmlChar *)"Quiet", (const xmlChar *)"false");
    }
    for (size_t i = 0; i < n && !bad; i++) {
        xmlNode *o = xmlNewChild(root, NULL, (const xmlChar *)"Object", NULL);
        /* xmlNewTextChild escapes the content ('&', '<', '>', '\r'); xmlNewChild would not. */
        bad = !o || !xmlNewTextChild(o, NULL, (const xmlChar *)"Key", (const xmlChar *)keys[i]);
    }
    if (!bad) xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    bad = bad || !mem || size <= 0 || ss_buf_append(ret_body, mem, (size_t)size);
    xmlFree(mem);
    xmlFreeDoc(doc);
    if (bad) {
        ss_buf_free(ret_body);
        return ss_fail(err, SS_ERR_NOMEM, "DELETE-BATCH of %zu keys: out of memory", n);
    }
    return SS_OK;
}

/* --- the answer ---------------------------------------------------------------------- */

typedef struct asked {
    const char *const *keys;
    size_t *order; /* indexes of keys, sorted by key */
    size_t n;
} asked;

static int order_cmp(const void *a, const void *b, void *ctx)
{
    const char *const *keys = ctx;
    return strcmp(keys[*(const size_t *)a], keys[*(const size_t *)b]);
}

/* The index of key among those asked, or n. */
static size_t find(const asked *q, const char *key)
{
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(q->keys[q->order[mid]], key);
        if (!c) return q->order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return q->n;
}

static char *child_text(xmlNode *parent, const char *name)
{
    for (xmlNode *c = parent->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
            return (char *)xmlNodeGetContent(c);
    return NULL;
}

/* The store's words go into a one-line message: no control characters from it. */
static const char *tame(char *s)
{
    for (char *p = s; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    return s ? s : "";
}

static ss_rc code_rc(const char *code)
{
    if (!strcmp(code, "AccessDenied")) return SS_ERR_AUTH;
    if (!strcmp(code, "InternalError") || !strcmp(code, "SlowDown") ||
        !strcmp(code, "ServiceUnavailable"))
        return SS_ERR_TEMPORARY;
    return SS_ERR_STORE;
}

/* One <Deleted> or <Error> of the answer, marked in seen; a failure it reports fails. */
static ss_rc one_result(const asked *q, xmlNode *e, unsigned char *seen, size_t strip, ss_err *err)
{
    int is_error = !strcmp((const char *)e->name, "Error");
    char *key = child_text(e, "Key"), *code = NULL, *msg = NULL;
    size_t i = key ? find(q, key) : q->n;
    ss_rc rc = SS_OK;
    if (i == q->n) {
        rc = ss_fail(err, SS_ERR_STORE,
                     "DELETE-BATCH of %zu keys: the answer names %s, which was not asked: refused",
                     q->n, key ? tame(key) : "no key");
        goto out;
    }
    seen[i] = 1;
    if (!is_error) goto out;
    code = child_text(e, "Code");
    msg = child_text(e, "Message");
    if (code && !strcmp(code, "NoSuchKey")) goto out; /* gone already */
    rc = ss_fail(err, code_rc(code ? code : ""), "DELETE %s: %s%s%s (one of %zu keys in a batch)",
                 q->keys[i] + strip, code ? tame(code) : "an error without a code",
                 msg && *msg ? ": " : "", tame(msg), q->n);
out:
    xmlFree(key);
    xmlFree(code);
    xmlFree(msg);
    return rc;
}

ss_rc s3_delete_check(const ss_buf *answer, const char *const *keys, size_t n, size_t strip,
                      ss_err *err)
{
    asked q = {keys, NULL, n};
    unsigned char *seen = NULL; /* owned */
    xmlDoc *doc = NULL;
    xmlNode *root = NULL;
    ss_rc rc = SS_OK;
    if (answer->len && answer->len <= 0x7fffffff)
        doc = xmlReadMemory((const char *)answer->p, (int)answer->len, "delete.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root || strcmp((const char *)root->name, "DeleteResult")) {
        char *code = root ? child_text(root, "Code") : NULL;
        rc = ss_fail(err, SS_ERR_STORE,
                     "DELETE-BATCH of %zu keys: the store answered with something that is not "
                     "a DeleteResult%s%s: nothing taken as deleted",
                     n, code ? " but " : "", code ? tame(code) : "");
        xmlFree(code);
        goto out;
    }
    q.order = malloc((n ? n : 1) * sizeof *q.order);
    seen = calloc(n ? n : 1, 1);
    if (!q.order || !seen) {
        rc = ss_fail(err, SS_ERR_NOMEM, "DELETE-BATCH of %zu keys: out of memory", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        q.order[i] = i;
    qsort_r(q.order, n, sizeof *q.order, order_cmp, (void *)keys);
    for (xmlNode *e = root->children; e && !rc; e = e->next)
        if (e->type == XML_ELEMENT_NODE &&
            (!strcmp((const char *)e->name, "Deleted") || !strcmp((const char *)e->name, "Error")))
            rc = one_result(&q, e, seen, strip, err);
    for (size_t i = 0; i < n && !rc; i++)
        if (!seen[i])
            rc = ss_fail(err, SS_ERR_STORE,
                         "DELETE %s: the store's answer to a batch of %zu keys says nothing of "
                         "it: not taken as deleted",
                         keys[i] + strip, n);
out:
    free(q.order);
    free(seen);
    xmlFreeDoc(doc);
    return rc;
}
