/*
 * routes.c: what each of s3sync-lockd's routes means: the table of method,
 * path pattern and handler (ld_routes), the matching of a request's path
 * against it, and the handlers, which call lease.c and presign.c and turn
 * their outcome into an answer (the statuses of docs/PROTOCOL.md). Nothing
 * here reads a socket or a header: http.c does, then calls ld_route_serve.
 */
#include "body.h"
#include "routes.h"
#include "ld_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_REWINDING_MS 1000 /* Retry-After of 503 rewinding and store_unavailable */
#define SEQ_PARAM_DIGITS 18     /* {seq}: 1..18 digits, below 2^63 whatever they are */

/* --- answers ---------------------------------------------------------------------- */

void ld_reply_error(ld_reply *r, unsigned status, const char *code, const char *msg)
{
    r->status = status;
    json_decref(r->json);
    r->json = json_pack("{s:s, s:s}", "error", code, "message", msg);
    /* A message quoting the client's bytes may be cut inside a UTF-8
     * sequence; jansson refuses that, the code alone still tells. */
    if (!r->json) r->json = json_pack("{s:s, s:s}", "error", code, "message", code);
}

void ld_reply_outcome(ld_reply *r, ss_rc rc, const ld_outcome *o)
{
    static const struct {
        ld_why why;
        unsigned status;
        const char *code;
    } map[] = {
        {LD_WHY_NO_REPO, 404, "no_such_repository"},
        {LD_WHY_READ_ONLY, 403, "read_only"},
        {LD_WHY_FOREIGN, 403, "forbidden"},
        {LD_WHY_LEASE_HELD, 409, "lease_held"},
        {LD_WHY_STALE_LEASE, 409, "stale_lease"},
        {LD_WHY_STALE_FENCING, 409, "stale_fencing_token"},
        {LD_WHY_BAD_SEQ, 409, "wrong_sequence"},
        {LD_WHY_OBJECT_MISSING, 409, "object_missing"},
        {LD_WHY_BAD_KEY, 403, "key_not_allowed"},
        {LD_WHY_BAD_REQUEST, 400, "bad_request"},
        {LD_WHY_REWINDING, 503, "rewinding"},
    };
    unsigned status = 500;
    const char *code = "internal";
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].why == o->why) {
            status = map[i].status;
            code = map[i].code;
        }
    if (o->why == LD_WHY_STORE) {
        status = rc == SS_ERR_TEMPORARY ? 503 : 502;
        code = rc == SS_ERR_TEMPORARY ? "store_unavailable" : "store_error";
        r->retry_ms = rc == SS_ERR_TEMPORARY ? RETRY_REWINDING_MS : 0;
    }
    if (o->why == LD_WHY_REWINDING) r->retry_ms = RETRY_REWINDING_MS;
    if (status >= 500) fprintf(stderr, "s3sync-lockd: %u %s: %s\n", status, code, o->err.msg);
    ld_reply_error(r, status, code, o->err.msg[0] ? o->err.msg : ss_strerror(rc));
    if (!r->json) return;
    if (status == 409) json_object_set_new(r->json, "head", json_integer((json_int_t)o->head));
    if (o->why == LD_WHY_LEASE_HELD) {
        r->retry_ms = o->retry_after_ms;
        json_object_set_new(r->json, "retry_after_ms", json_integer(o->retry_after_ms));
        json_object_set_new(r->json, "holder", json_string(o->holder));
    }
}

/* ttl_ms <= 0: not a grant or renewal, so no TTL to report. */
static json_t *lease_json(const char *repo, const ld_lease *l, int64_t ttl_ms)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "repo", repo, "lease_id", l->id,
                          "fencing_token", (json_int_t)l->fencing, "head", (json_int_t)l->head,
                          "expires_in_ms", (json_int_t)l->expires_in_ms, "expires_at_ms",
                          (json_int_t)l->expires_ms);
    if (j && ttl_ms > 0) json_object_set_new(j, "ttl_ms", json_integer(ttl_ms));
    return j;
}

/* --- handlers ------------------------------------------------------------------------ */

static ss_rc serve_healthz(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    (void)call, (void)o;
    r->status = 200;
    r->json = json_pack("{s:s}", "status", "ok");
    return SS_OK;
}

static ss_rc serve_metrics(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    (void)o;
    r->status = 200;
    r->text = ld_metrics_render(call->ctx->metrics, ld_state_requests(call->ctx->state));
    if (!r->text) ld_reply_error(r, 500, "internal", "out of memory");
    return SS_OK;
}

static ss_rc serve_head(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo;
    ss_store_stat obj;
    uint64_t head = 0;
    int leased = 0;
    ss_rc rc = ld_lease_head(call->ctx->leases, repo, &head, &leased, &obj, o);
    if (rc) return rc;
    r->status = 200;
    r->json =
        json_pack("{s:s, s:I, s:b}", "repo", repo, "head", (json_int_t)head, "leased", leased);
    /* log/<head> as lockd saw it: the devices' fork check (PROTOCOL.md, GET head) */
    if (r->json && obj.etag[0]) {
        json_object_set_new(r->json, "etag", json_string(obj.etag));
        json_object_set_new(r->json, "size", json_integer((json_int_t)obj.size));
    }
    return SS_OK;
}

static ss_rc serve_acquire(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo;
    ld_lease lease;
    int64_t ttl = 0;
    ss_rc rc = ld_body_parse_ttl(call->body, call->ctx->cfg->ttl_default_ms, &ttl, o);
    if (rc) return rc;
    rc = ld_lease_acquire(call->ctx->leases, call->dev, repo, ttl, &lease, o);
    if (rc) return rc;
    r->status = 201;
    r->json = lease_json(repo, &lease, ttl);
    return SS_OK;
}

static ss_rc serve_renew(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo;
    ld_lease lease;
    int64_t ttl = 0;
    uint64_t fencing = 0;
    ss_rc rc = ld_body_parse_ttl(call->body, call->ctx->cfg->ttl_default_ms, &ttl, o);
    if (rc) return rc;
    rc = ld_body_parse_fencing(call->body, call->query_fencing, &fencing, o);
    if (rc) return rc;
    rc = ld_lease_renew(call->ctx->leases, call->dev, repo, call->p->lease_id, fencing, ttl, &lease,
                        o);
    if (rc) return rc;
    r->status = 200;
    r->json = lease_json(repo, &lease, ttl);
    return SS_OK;
}

static ss_rc serve_release(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo, *lease_id = call->p->lease_id;
    uint64_t fencing = 0;
    ss_rc rc = ld_body_parse_fencing(call->body, call->query_fencing, &fencing, o);
    if (rc) return rc;
    rc = ld_lease_release(call->ctx->leases, call->dev, repo, lease_id, fencing, o);
    if (rc) return rc;
    r->status = 200;
    r->json = json_pack("{s:s, s:s, s:b}", "repo", repo, "lease_id", lease_id, "released", 1);
    return SS_OK;
}

static ss_rc serve_presign(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const ld_config *cfg = call->ctx->cfg;
    json_t *res = NULL;
    ss_rc rc =
        ld_presign(call->ctx->leases, &(ld_presign_limits){cfg->put_expires_max, cfg->get_expires},
                   call->dev, call->p->repo, call->body, &res, o);
    if (rc) return rc;
    const char *op_s = json_string_value(json_object_get(res, "op"));
    size_t n = json_array_size(json_object_get(res, "urls"));
    ld_counter ctr = !strcmp(op_s, "put")    ? LD_C_PRESIGN_PUT
                     : !strcmp(op_s, "list") ? LD_C_PRESIGN_LIST
                                             : LD_C_PRESIGN_GET;
    ld_metrics_add(call->ctx->metrics, ctr, n);
    r->status = 200;
    r->json = res;
    return SS_OK;
}

static ss_rc serve_commit(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo;
    ld_body_commit cm;
    ld_lease lease;
    int released = 0;
    ss_rc rc = ld_body_parse_commit(call->body, call->query_fencing, &cm, o);
    if (rc) return rc;
    rc = ld_lease_commit(call->ctx->leases, call->dev, repo, cm.lease_id, cm.fencing, cm.seq,
                         cm.release, &lease, &released, o);
    if (rc) return rc;
    r->status = 200;
    r->json = json_pack("{s:s, s:I, s:b}", "repo", repo, "head", (json_int_t)lease.head, "released",
                        released);
    if (r->json && !released) json_object_set_new(r->json, "lease", lease_json(repo, &lease, 0));
    return SS_OK;
}

/* GET writers/{seq}: the devices given the PUT URLs of log/<seq> (docs/PROTOCOL.md). */
static ss_rc serve_writers(const ld_call *call, ld_reply *r, ld_outcome *o)
{
    const char *repo = call->p->repo;
    ld_writers w;
    json_t *names = NULL;
    ss_rc rc = ld_state_writers(call->ctx->state, repo, call->p->seq, &w, &o->err);
    if (rc) {
        o->why = LD_WHY_INTERNAL;
        return rc;
    }
    names = json_array();
    for (size_t i = 0; i < w.n; i++)
        json_array_append_new(names, json_string(w.name[i]));
    r->status = 200;
    r->json = json_pack("{s:s, s:I, s:o}", "repo", repo, "seq", (json_int_t)call->p->seq, "devices",
                        names);
    return SS_OK;
}

/* --- the table ---------------------------------------------------------------------- */

/* Presign and writers read (presign checks a PUT's rights itself). */
static const ld_route_def routes[] = {
    {"GET", "/healthz", LD_R_HEALTHZ, LD_OPEN, serve_healthz},
    {"GET", "/metrics", LD_R_METRICS, LD_OPEN, serve_metrics},
    {"GET", "/v1/repos/{repo}/head", LD_R_HEAD, LD_READ, serve_head},
    {"POST", "/v1/repos/{repo}/lease", LD_R_ACQUIRE, LD_READ_WRITE, serve_acquire},
    {"POST", "/v1/repos/{repo}/lease/{lease}/renew", LD_R_RENEW, LD_READ_WRITE, serve_renew},
    {"DELETE", "/v1/repos/{repo}/lease/{lease}", LD_R_RELEASE, LD_READ_WRITE, serve_release},
    {"POST", "/v1/repos/{repo}/presign", LD_R_PRESIGN, LD_READ, serve_presign},
    {"POST", "/v1/repos/{repo}/commit", LD_R_COMMIT, LD_READ_WRITE, serve_commit},
    {"GET", "/v1/repos/{repo}/writers/{seq}", LD_R_WRITERS, LD_READ, serve_writers},
};

/* One path segment s[0..n) against the pattern's segment pat[0..pn); 1 when it matches. */
static int segment_match(const char *pat, size_t pn, const char *s, size_t n, ld_params *p)
{
    if (pn == strlen("{repo}") && !strncmp(pat, "{repo}", pn)) {
        if (!n || n > LD_NAME_MAX) return 0;
        memcpy(p->repo, s, n);
        p->repo[n] = '\0';
        return ld_name_ok(p->repo);
    }
    if (pn == strlen("{lease}") && !strncmp(pat, "{lease}", pn)) {
        if (n != LD_LEASE_ID_LEN || strspn(s, "0123456789abcdef") < n) return 0;
        memcpy(p->lease_id, s, n);
        p->lease_id[n] = '\0';
        return 1;
    }
    if (pn == strlen("{seq}") && !strncmp(pat, "{seq}", pn)) {
        if (!n || n > SEQ_PARAM_DIGITS || strspn(s, "0123456789") < n) return 0;
        p->seq = strtoull(s, NULL, 10);
        return 1;
    }
    return pn == n && !strncmp(pat, s, n);
}

/* 1 when url matches pattern, segment by segment ('/' separated, all of both). */
static int path_match(const char *pattern, const char *url, ld_params *p)
{
    for (;;) {
        size_t pn = strcspn(pattern, "/"), n = strcspn(url, "/");
        if (!segment_match(pattern, pn, url, n, p)) return 0;
        pattern += pn;
        url += n;
        if (!*pattern || !*url) return !*pattern && !*url;
        pattern++; /* both at a '/' */
        url++;
    }
}

const ld_route_def *ld_route_find(const char *url, const char *method, ld_params *p,
                                  int *ret_allowed)
{
    *ret_allowed = 0;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        ld_params q;
        memset(&q, 0, sizeof q);
        if (!path_match(routes[i].path, url, &q)) continue;
        *p = q;
        *ret_allowed = !strcmp(method, routes[i].method);
        return &routes[i];
    }
    return NULL;
}

void ld_route_serve(const ld_route_def *def, const ld_call *call, ld_reply *r)
{
    ld_outcome o;
    ss_rc rc;
    /* Who may do what comes before what the body says (PROTOCOL.md, Errors);
     * the lease operations check again, presign checks PUT itself. */
    if (def->kind != LD_OPEN) {
        rc = ld_lease_access(call->ctx->leases, call->dev, call->p->repo,
                             def->kind == LD_READ_WRITE, &o);
        if (rc) goto fail;
    }
    memset(&o, 0, sizeof o);
    rc = def->serve(call, r, &o);
    if (rc) goto fail;
    return;
fail:
    ld_reply_outcome(r, rc, &o);
}
