/*
 * routes.h: s3sync-lockd's routes (routes.c), private to http.c and routes.c:
 * the table that maps a method and a path pattern to a handler, what a
 * handler is given and what it answers. http.c owns the connection (headers,
 * authentication, the body, sending); routes.c what each route means.
 * docs/PROTOCOL.md is the contract for every route.
 */
#ifndef LD_ROUTES_H
#define LD_ROUTES_H

#include "lockd.h"

/* What a handler answers. */
typedef struct ld_reply {
    unsigned status;
    json_t *json;      /* owned; NULL for text */
    char *text;        /* owned; text/plain body */
    int64_t retry_ms;  /* > 0: a Retry-After header */
    const char *allow; /* 405: the Allow header */
    int auth_challenge;
} ld_reply;

/* The {repo}, {lease} and {seq} of the path a route matched. */
typedef struct ld_params {
    char repo[LD_NAME_MAX + 1];
    char lease_id[LD_LEASE_ID_LEN + 1];
    uint64_t seq;
} ld_params;

/* What a handler is given: the server's state, the request's device (routes
 * with a token), its path parameters, ?fencing_token= and its JSON body. */
typedef struct ld_call {
    const ld_server_ctx *ctx;
    const ld_device *dev;
    const ld_params *p;
    const char *query_fencing; /* NULL when absent */
    json_t *body;              /* an empty object when the request had none */
} ld_call;

typedef enum ld_route_kind {
    LD_OPEN,       /* no token, no body: answered at the headers (/healthz, /metrics) */
    LD_READ,       /* a device token of the repository */
    LD_READ_WRITE, /* a read-write device token of the repository */
} ld_route_kind;

typedef struct ld_route_def {
    const char *method;
    const char *path; /* segments; {repo}, {lease} and {seq} match a parameter */
    ld_route metric;  /* what metrics.c counts it as */
    ld_route_kind kind;
    /* SS_OK with r set; or refused, with o saying why (ld_reply_outcome answers). */
    ss_rc (*serve)(const ld_call *call, ld_reply *r, ld_outcome *o);
} ld_route_def;

/*
 * The route whose path matches url, parameters into *p. NULL when no path
 * matches (404). A path that matches with another method: the route, with
 * *ret_allowed 0 (405, its method the Allow header); else *ret_allowed 1.
 */
const ld_route_def *ld_route_find(const char *url, const char *method, ld_params *p,
                                  int *ret_allowed);
/* Run the route: the device's access to the repository first (PROTOCOL.md,
 * Errors), then the handler; r is the answer either way. */
void ld_route_serve(const ld_route_def *def, const ld_call *call, ld_reply *r);

/* r becomes the JSON error {error: code, message: msg} with status. */
void ld_reply_error(ld_reply *r, unsigned status, const char *code, const char *msg);
/* r becomes the answer to a refused or failed operation. */
void ld_reply_outcome(ld_reply *r, ss_rc rc, const ld_outcome *o);

#endif
