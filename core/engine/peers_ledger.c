/*
 * peers_ledger: .s3sync/peers, what this device exchanged with each peer
 * over all its runs (docs/PEERS.md "Status"): per device id, the bytes
 * received from it (pulls), the bytes served to it (serve, watch), the
 * newest head it announced here, and when it was last seen. A pull and a
 * serve of one folder may run at once, so every update is a read, change
 * and rewrite under flock. Counters only: a line that does not parse is
 * dropped, and nothing here is trusted for anything but `status -v`.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "ss_buf.h"

#define LEDGER_NAME "peers"
#define LEDGER_ROWS 256     /* devices kept; the one seen longest ago goes first */
#define LEDGER_LINE_MAX 160 /* "HEX RECEIVED SERVED HEAD SEEN" */

static int hex_id(const char *s, uint8_t id[SS_TXN_DEVICE_ID_BYTES])
{
    for (size_t i = 0; i < SS_TXN_DEVICE_ID_BYTES; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        id[i] = (uint8_t)v;
    }
    return s[2 * SS_TXN_DEVICE_ID_BYTES] == ' ' ? 0 : -1;
}

/* The rows of text (NUL-terminated) into rows, at most LEDGER_ROWS; how many. */
static size_t parse(const char *text, eng_ledger_row *rows)
{
    size_t n = 0;
    for (const char *p = text; *p && n < LEDGER_ROWS;) {
        eng_ledger_row r = {0};
        long long seen = 0;
        if (!hex_id(p, r.device) &&
            sscanf(p + 2 * SS_TXN_DEVICE_ID_BYTES, " %" SCNu64 " %" SCNu64 " %" SCNu64 " %lld",
                   &r.received, &r.served, &r.head, &seen) == 4) {
            r.seen = (int64_t)seen;
            rows[n++] = r;
        }
        p += strcspn(p, "\n");
        p += *p == '\n';
    }
    return n;
}

/* fd's whole text, NUL-terminated, in b. */
static int read_text(int fd, ss_buf *b)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (!n) break;
        if (ss_buf_append(b, chunk, (size_t)n)) return -1;
    }
    return ss_buf_append(b, "", 1);
}

static int write_rows(int fd, const eng_ledger_row *rows, size_t n)
{
    ss_buf b = {0};
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) {
        char line[LEDGER_LINE_MAX], *q = line;
        for (size_t k = 0; k < SS_TXN_DEVICE_ID_BYTES; k++, q += 2)
            snprintf(q, 3, "%02x", rows[i].device[k]);
        snprintf(q, sizeof line - (size_t)(q - line), " %" PRIu64 " %" PRIu64 " %" PRIu64 " %lld\n",
                 rows[i].received, rows[i].served, rows[i].head, (long long)rows[i].seen);
        bad = ss_buf_append(&b, line, strlen(line));
    }
    if (!bad) bad = ftruncate(fd, 0) || pwrite(fd, b.p, b.len, 0) != (ssize_t)b.len;
    ss_buf_free(&b);
    return bad ? -1 : 0;
}

void eng_ledger_add(const char *meta, const uint8_t device[SS_TXN_DEVICE_ID_BYTES],
                    uint64_t received, uint64_t served, uint64_t head)
{
    eng_ledger_row *rows = NULL; /* owned */
    ss_buf text = {0};
    char *path = NULL;
    size_t n = 0, i = 0;
    int fd = -1;
    if (asprintf(&path, "%s/%s", meta, LEDGER_NAME) < 0) return;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    rows = calloc(LEDGER_ROWS + 1, sizeof *rows);
    if (fd < 0 || !rows || flock(fd, LOCK_EX) || read_text(fd, &text)) goto done;
    n = parse((const char *)text.p, rows);
    while (i < n && memcmp(rows[i].device, device, SS_TXN_DEVICE_ID_BYTES))
        i++;
    if (i == n) { /* a new one: in the place of the one seen longest ago when full */
        if (n == LEDGER_ROWS)
            for (size_t k = i = 0; k < n; k++)
                i = rows[k].seen < rows[i].seen ? k : i;
        else
            n++;
        memset(&rows[i], 0, sizeof rows[i]);
        memcpy(rows[i].device, device, SS_TXN_DEVICE_ID_BYTES);
    }
    rows[i].received += received;
    rows[i].served += served;
    if (head > rows[i].head) rows[i].head = head;
    rows[i].seen = (int64_t)time(NULL);
    write_rows(fd, rows, n); /* best effort: counters */
done:
    if (fd >= 0) close(fd); /* and its lock */
    ss_buf_free(&text);
    free(rows);
    free(path);
}

ss_rc eng_ledger_read(const char *meta, eng_ledger_row **ret_rows, size_t *ret_n, ss_err *err)
{
    eng_ledger_row *rows = NULL; /* owned */
    ss_buf text = {0};
    char *path = NULL;
    int fd = -1;
    ss_rc rc = SS_OK;
    *ret_rows = NULL;
    *ret_n = 0;
    if (asprintf(&path, "%s/%s", meta, LEDGER_NAME) < 0)
        return ss_fail(err, SS_ERR_NOMEM, "out of memory");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) goto done; /* no peer yet */
    rows = calloc(LEDGER_ROWS, sizeof *rows);
    if (!rows || flock(fd, LOCK_SH) || read_text(fd, &text)) {
        rc = ss_fail(err, SS_ERR_IO, "%s: %s", path, rows ? strerror(errno) : "out of memory");
        goto done;
    }
    *ret_n = parse((const char *)text.p, rows);
    *ret_rows = rows;
    rows = NULL;
done:
    if (fd >= 0) close(fd);
    ss_buf_free(&text);
    free(rows);
    free(path);
    return rc;
}
