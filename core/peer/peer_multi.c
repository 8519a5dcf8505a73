/*
 * peer_multi: several objects at once from several peers, each object from
 * one (docs/PEERS.md "Fetching"): the GETs a parallel transfer (ss_xfer)
 * begins are queued here and each handed to an idle peer that has not yet
 * been asked for it; what no peer has, or what a peer failed in the middle
 * of, ends "not delivered" and the caller asks the store.
 *
 * One thread per busy peer session, not poll-driven I/O: a session is a
 * blocking request/answer stream (peer.c reads whole sealed records with
 * the socket's timeouts), and a thread that runs exactly one ss_peer_get
 * keeps that code as it is, with nothing shared but the job it fills.
 * Everything else (sessions opened, peers left out, warnings, counts) runs
 * in the caller's thread, in ss_peers_begin and ss_peers_step: the trust
 * callback and the device table are never read from a peer's thread.
 *
 * Memory: a job holds its key and borrows the caller's buffer, and the
 * caller bounds how many it begins (ss_xfer: the store's max_parallel);
 * each busy thread holds one message (SS_PEER_MSG_MAX) and one stack. At
 * most one thread per peer (SS_PEERS_MAX), so at most SS_PEERS_MAX objects
 * at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peer_set_impl.h"

typedef enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_ENDED, JOB_DONE, JOB_FAILED } job_state;

typedef struct peers_job {
    ss_peers *ps;
    const void *owner;
    void *tag;
    char key[SS_KEY_NAME_MAX];
    uint64_t off;
    size_t len, got;
    uint8_t *dst;    /* borrowed: exactly len bytes */
    uint32_t tried;  /* the peers asked already */
    size_t peer;     /* while running: whose thread */
    job_state state; /* ENDED is set by the thread, under mu; the rest by the caller */
    ss_rc rc;        /* the thread's */
    ss_err err;
    struct peers_job *next;
} peers_job;

static int exact_sink(void *ctx, const void *buf, size_t len)
{
    peers_job *j = ctx;
    if (len > j->len - j->got) return -1;
    memcpy(j->dst + j->got, buf, len);
    j->got += len;
    return 0;
}

/* A peer's thread: one GET on its session, told to the caller through ps->cv. */
static void *run_job(void *arg)
{
    peers_job *j = arg;
    ss_peers *ps = j->ps;
    ss_peer *p = NULL;
    pthread_mutex_lock(&ps->mu); /* handed over under mu: what the caller set is seen */
    p = ps->v[j->peer].session;
    pthread_mutex_unlock(&ps->mu);
    j->got = 0;
    j->rc = ss_peer_get(p, j->key, j->off, j->len, j->len, exact_sink, j, &j->err);
    if (!j->rc && j->got != j->len)
        j->rc = ss_fail(&j->err, SS_ERR_INTEGRITY, "peer: a short answer for %s", j->key);
    pthread_mutex_lock(&ps->mu);
    j->state = JOB_ENDED;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    return NULL;
}

/* Hand j to an idle peer not asked yet; JOB_FAILED when none is left that could take it. */
static void dispatch_one(ss_peers *ps, peers_job *j)
{
    int waiting = 0; /* a peer not asked yet is busy: j waits for it */
    for (size_t k = 0; k < ps->n; k++) {
        size_t i = (ps->next + k) % ps->n; /* in turn: one object at a time spreads too */
        peer_entry *e = &ps->v[i];
        if (e->out || (j->tried & (1u << i))) continue;
        if (e->busy) {
            waiting = 1;
            continue;
        }
        if (!peers_session(ps, e)) {
            j->tried |= 1u << i; /* not now: the store, rather than waiting */
            continue;
        }
        j->tried |= 1u << i;
        j->peer = i;
        pthread_mutex_lock(&ps->mu);
        j->state = JOB_RUNNING;
        e->busy = j;
        int bad = pthread_create(&e->thread, NULL, run_job, j);
        if (bad) {
            e->busy = NULL;
            j->state = JOB_QUEUED;
        }
        pthread_mutex_unlock(&ps->mu);
        if (bad) continue;
        ps->next = i + 1;
        return;
    }
    if (!waiting) j->state = JOB_FAILED;
}

static void dispatch(ss_peers *ps)
{
    for (peers_job *j = ps->jobs; j; j = j->next)
        if (j->state == JOB_QUEUED) dispatch_one(ps, j);
}

/* Threads that ended: joined, their outcome taken (a job not delivered is queued again). */
static void reap(ss_peers *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        peers_job *j = e->busy;
        pthread_mutex_lock(&ps->mu);
        int ended = j && j->state == JOB_ENDED;
        pthread_mutex_unlock(&ps->mu);
        if (!ended) continue;
        pthread_join(e->thread, NULL);
        e->busy = NULL;
        if (e->out) { /* blamed while its thread ran: nothing more of it, and its session ends */
            ss_peer_free(e->session);
            e->session = NULL;
            j->state = JOB_QUEUED;
        } else if (j->rc == SS_OK) {
            j->state = JOB_DONE;
            peers_delivered(ps, i, j->key, j->off, j->len);
        } else {
            j->state = JOB_QUEUED; /* the next peer, or the store */
            if (j->rc != SS_ERR_NOT_FOUND) peers_leave_out(ps, e, j->err.msg);
        }
    }
}

int ss_peers_begin(ss_peers *ps, const void *owner, const char *key, uint64_t off, size_t len,
                   void *dst, void *tag)
{
    peers_job *j = NULL;
    if (!ps || !len || len > SS_PEER_OBJECT_MAX || strlen(key) >= SS_KEY_NAME_MAX ||
        !ss_peer_key_servable(key))
        return -1;
    if (ps->disc[0]) peers_discover_now(ps);
    j = calloc(1, sizeof *j);
    if (!j) return -1;
    *j = (peers_job){.ps = ps, .owner = owner, .tag = tag, .off = off, .len = len, .dst = dst};
    snprintf(j->key, sizeof j->key, "%s", key);
    dispatch_one(ps, j);
    if (j->state == JOB_FAILED) { /* no peer to ask: the store at once */
        free(j);
        return -1;
    }
    j->next = ps->jobs;
    ps->jobs = j;
    return 0;
}

/* Jobs of owner that are over, moved into tags/ok; how many. */
static size_t collect(ss_peers *ps, const void *owner, void **tags, int *ok, size_t cap)
{
    size_t n = 0;
    for (peers_job **pj = &ps->jobs; *pj && n < cap;) {
        peers_job *j = *pj;
        if (j->owner != owner || (j->state != JOB_DONE && j->state != JOB_FAILED)) {
            pj = &j->next;
            continue;
        }
        tags[n] = j->tag;
        ok[n++] = j->state == JOB_DONE;
        *pj = j->next;
        free(j);
    }
    return n;
}

static int has_jobs(const ss_peers *ps, const void *owner)
{
    for (const peers_job *j = ps->jobs; j; j = j->next)
        if (j->owner == owner) return 1;
    return 0;
}

static int any_ended(const ss_peers *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->v[i].busy && ps->v[i].busy->state == JOB_ENDED) return 1;
    return 0;
}

size_t ss_peers_step(ss_peers *ps, const void *owner, int wait_ms, void **tags, int *ok, size_t cap)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (!ps) return 0;
    for (;;) {
        reap(ps);
        dispatch(ps);
        size_t n = collect(ps, owner, tags, ok, cap);
        if (n || wait_ms <= 0 || !has_jobs(ps, owner)) return n;
        pthread_mutex_lock(&ps->mu);
        int timed_out = 0;
        while (!any_ended(ps) && !timed_out)
            timed_out = pthread_cond_timedwait(&ps->cv, &ps->mu, &until) != 0;
        pthread_mutex_unlock(&ps->mu);
        if (timed_out) wait_ms = 0; /* one last look */
    }
}

/* Here rather than in peer_set.c: the set ends with its threads (and peer_set.c calls nothing
 * here). */
void ss_peers_free(ss_peers *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) {
        peer_entry *e = &ps->v[i];
        if (e->busy) pthread_join(e->thread, NULL);
        e->busy = NULL;
        if (e->session) ss_peer_finish(e->session, NULL);
        ss_peer_free(e->session);
    }
    while (ps->jobs) {
        peers_job *j = ps->jobs;
        ps->jobs = j->next;
        free(j);
    }
    pthread_cond_destroy(&ps->cv);
    pthread_mutex_destroy(&ps->mu);
    free(ps);
}
