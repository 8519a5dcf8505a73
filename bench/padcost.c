/*
 * padcost: what size padding (FORMAT.md "Size padding") costs in a real
 * store, object by object, beside the same objects unpadded.
 *
 *   padcost STORE_URL MASTER_KEY_FILE
 *
 * Opens the repository with the master key a device keeps (DIR/.s3sync/
 * master.key), walks log/1.. through the hash chain, and for every object
 * computes its size as stored and the size it would have without padding:
 * a framed object less its padding and the record tags that padding added;
 * a sealed chunk as 40 + its unpadded body (opened here, unpad read off the
 * plaintext); a data/ pack as the sum of its chunks' unpadded sizes (the
 * filler gone). Prints one Markdown table row per kind and a total.
 * config and key files have fixed sizes and are left out.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "frame.h"
#include "repo.h"
#include "txn.h"

typedef struct kind {
    const char *name;
    uint64_t n, stored, unpadded;
} kind;

typedef struct pack {
    char key[SS_KEY_NAME_MAX];
    uint64_t size, unpadded;
} pack;

typedef struct walk {
    ss_store *store;
    const ss_keys *keys;
    const ss_config *cfg;
    pack *packs;
    size_t n_packs;
    uint64_t *seen; /* (pack index << 40 | offset) of chunks counted */
    size_t n_seen, cap_seen;
    kind log, chunk;
} walk;

static void die(const char *what, const ss_err *err)
{
    fprintf(stderr, "padcost: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static int on_pack(void *ctx, const char *key, const ss_store_stat *st)
{
    walk *w = ctx;
    pack *np = realloc(w->packs, (w->n_packs + 1) * sizeof *np);
    if (!np) return 1;
    w->packs = np;
    snprintf(np[w->n_packs].key, sizeof np->key, "%s", key);
    np[w->n_packs].size = st->size;
    np[w->n_packs++].unpadded = 0;
    return 0;
}

static pack *find_pack(walk *w, const char *key)
{
    for (size_t i = 0; i < w->n_packs; i++)
        if (!strcmp(w->packs[i].key, key)) return &w->packs[i];
    return NULL;
}

static int seen_before(walk *w, uint64_t tag)
{
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i] == tag) return 1;
    if (w->n_seen == w->cap_seen) {
        w->cap_seen = w->cap_seen ? 2 * w->cap_seen : 1024;
        w->seen = realloc(w->seen, w->cap_seen * sizeof *w->seen);
        if (!w->seen) die("out of memory", NULL);
    }
    w->seen[w->n_seen++] = tag;
    return 0;
}

/* The unpadded size of one sealed chunk: 40 + its body before padding. */
static uint64_t chunk_unpadded(walk *w, const char *key, const ss_chunk_ref *r)
{
    void *buf = NULL;
    size_t len = 0, unpadded = 0;
    ss_err err = {{0}};
    uint8_t ad[15 + SS_REPO_ID_BYTES + SS_CHUNK_ID_LEN];
    if (ss_store_get(w->store, key, r->offset, r->sealed_len, &buf, &len, &err)) die(key, &err);
    uint8_t *body = malloc(len);
    memcpy(ad, SS_CHUNK_LABEL, 15);
    memcpy(ad + 15, ss_keys_repo_id(w->keys), SS_REPO_ID_BYTES);
    memcpy(ad + 15 + SS_REPO_ID_BYTES, r->id, SS_CHUNK_ID_LEN);
    if (!body || len != r->sealed_len ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            body, NULL, NULL, (uint8_t *)buf + 24, len - 24, ad, sizeof ad, buf,
            ss_keys_content_key(w->keys, 0, SS_SUBKEY_CHUNK)) ||
        sodium_unpad(&unpadded, body, len - 40, len - 40))
        die("a chunk does not open", NULL);
    free(body);
    free(buf);
    return SS_CHUNK_SEAL_FIXED + unpadded;
}

typedef struct membuf {
    uint8_t *p;
    size_t len, cap, pos;
} membuf;

static int mem_add(void *ctx, const void *buf, size_t len)
{
    membuf *m = ctx;
    if (m->len + len > m->cap) {
        m->cap = 2 * (m->len + len);
        if (!(m->p = realloc(m->p, m->cap))) return -1;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static long mem_read(void *ctx, void *buf, size_t len)
{
    membuf *m = ctx;
    size_t k = m->len - m->pos < len ? m->len - m->pos : len;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return (long)k;
}

static uint64_t records(uint64_t stream)
{
    return stream ? (stream + 65535) / 65536 : 1;
}

/* log/seq: its sizes, then every new chunk its ops reference. */
static void one_log(walk *w, uint64_t seq, uint8_t chain[SS_CHAIN_BYTES])
{
    char key[SS_KEY_NAME_MAX];
    void *obj = NULL;
    size_t olen = 0;
    membuf plain = {0};
    ss_frame_reader *fr = NULL;
    ss_txn_reader *tr = NULL;
    ss_err err = {{0}};
    uint8_t hash[SS_OBJECT_HASH_BYTES];
    snprintf(key, sizeof key, SS_KEY_LOG_FMT, seq);
    if (ss_store_get(w->store, key, 0, SS_TO_END, &obj, &olen, &err) ||
        ss_frame_reader_new(w->keys, SS_FRAME_KIND_LOG, key, seq, chain, UINT64_MAX, mem_add,
                            &plain, &fr, &err) ||
        ss_frame_feed(fr, obj, olen, &err) || ss_frame_end(fr, hash, &err))
        die(key, &err);
    uint64_t pad = ss_frame_reader_padding(fr);
    uint64_t recs = (olen - SS_FRAME_PREFIX_BYTES + SS_FRAME_WIRE_RECORD_BYTES - 1) /
                    SS_FRAME_WIRE_RECORD_BYTES;
    uint64_t p = olen - SS_FRAME_PREFIX_BYTES - SS_FRAME_RECORD_ABYTES * recs; /* padded stream */
    w->log.n++;
    w->log.stored += olen;
    w->log.unpadded +=
        SS_FRAME_PREFIX_BYTES + (p - pad) + SS_FRAME_RECORD_ABYTES * records(p - pad);
    ss_chain_next(w->keys, chain, hash, chain);

    ss_txn_limits lim = {w->cfg->inline_limit, w->cfg->chunker.max_size, 0};
    ss_reader src = {mem_read, NULL, &plain};
    const ss_txn_entry *e = NULL;
    if (ss_txn_reader_new(&lim, &src, &tr, &err)) die(key, &err);
    const ss_txn_header *h = ss_txn_reader_header(tr);
    while (!ss_txn_next(tr, &e, &err) && e) {
        for (uint32_t i = ss_txn_chunks_left(tr); i > 0; i--) {
            ss_chunk_ref r;
            if (ss_txn_next_chunk(tr, &r, &err)) die(key, &err);
            pack *pk = find_pack(w, h->pack_keys[r.pack]);
            if (!pk) die(h->pack_keys[r.pack], NULL);
            if (seen_before(w, (uint64_t)(pk - w->packs) << 40 | r.offset)) continue;
            uint64_t u = chunk_unpadded(w, pk->key, &r);
            pk->unpadded += u;
            w->chunk.n++;
            w->chunk.stored += r.sealed_len;
            w->chunk.unpadded += u;
        }
    }
    if (err.msg[0]) die(key, &err);
    ss_txn_reader_free(tr);
    ss_frame_reader_free(fr);
    free(plain.p);
    free(obj);
}

static int count_log(void *ctx, const char *key, const ss_store_stat *st)
{
    (void)key, (void)st;
    ++*(uint64_t *)ctx;
    return 0;
}

static void row(const kind *k)
{
    printf("| %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %.2f%% |\n", k->name,
           k->n, k->unpadded, k->stored, k->stored - k->unpadded,
           k->unpadded ? 100.0 * (double)(k->stored - k->unpadded) / (double)k->unpadded : 0.0);
}

int main(int argc, char **argv)
{
    ss_store *store = NULL;
    ss_repo *repo = NULL;
    ss_err err = {{0}};
    uint8_t master[SS_MASTER_KEY_BYTES], chain[SS_CHAIN_BYTES] = {0};
    uint64_t n_logs = 0;
    walk w = {0};
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: padcost STORE_URL MASTER_KEY_FILE\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;
    if (!(f = fopen(argv[2], "rb")) || fread(master, 1, sizeof master, f) != sizeof master)
        die(argv[2], NULL);
    fclose(f);
    if (ss_store_open(argv[1], NULL, &store, &err) ||
        ss_repo_open_master(store, master, NULL, 0, &repo, &err))
        die(argv[1], &err);
    sodium_memzero(master, sizeof master);
    w.store = store;
    w.keys = ss_repo_keys(repo);
    w.cfg = ss_repo_config(repo);
    w.log.name = "log/ objects";
    w.chunk.name = "sealed chunks";
    if (ss_store_list(store, SS_KEY_DATA_PREFIX, NULL, on_pack, &w, &err) ||
        ss_store_list(store, SS_KEY_LOG_PREFIX, NULL, count_log, &n_logs, &err))
        die("list", &err);
    for (uint64_t seq = 1; seq <= n_logs; seq++)
        one_log(&w, seq, chain);

    kind packs = {"data/ packs (chunks + filler)", 0, 0, 0}, total = {"total", 0, 0, 0};
    for (size_t i = 0; i < w.n_packs; i++) {
        packs.n++;
        packs.stored += w.packs[i].size;
        packs.unpadded += w.packs[i].unpadded;
    }
    total.n = w.log.n + packs.n;
    total.stored = w.log.stored + packs.stored;
    total.unpadded = w.log.unpadded + packs.unpadded;
    printf("| objects | count | bytes unpadded | bytes stored | padding | cost |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    row(&w.log);
    row(&w.chunk);
    row(&packs);
    row(&total);
    ss_repo_free(repo);
    ss_store_free(store);
    free(w.packs);
    free(w.seen);
    return 0;
}
