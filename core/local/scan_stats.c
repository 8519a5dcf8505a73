/* scan_stats: the lstat of a directory's names on two threads (see scan_stats.h). */
#include "scan_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct job {
    int dir_fd;
    char *const *names;
    struct stat *st;
    int *errs;
    size_t n;
} job;

struct scan_stats {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int posted, done, stop; /* a job for the helper; it finished; end the helper */
    job j;
};

static void stat_all(const job *j)
{
    for (size_t i = 0; i < j->n; i++)
        j->errs[i] = fstatat(j->dir_fd, j->names[i], &j->st[i], AT_SYMLINK_NOFOLLOW) ? errno : 0;
}

static void *helper(void *arg)
{
    scan_stats *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->posted && !s->stop)
            pthread_cond_wait(&s->cond, &s->mu);
        if (s->stop) break;
        s->posted = 0;
        pthread_mutex_unlock(&s->mu);
        stat_all(&s->j);
        pthread_mutex_lock(&s->mu);
        s->done = 1;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

scan_stats *scan_stats_new(void)
{
    scan_stats *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!pthread_create(&s->thread, NULL, helper, s)) return s;
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

void scan_stats_free(scan_stats *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void scan_stats_run(scan_stats *s, int dir_fd, char *const *names, size_t n, struct stat *st,
                    int *errs)
{
    size_t half = n / 2;
    job mine = {.dir_fd = dir_fd, .names = names, .st = st, .errs = errs, .n = half};
    if (!s || n < SCAN_STATS_SPLIT_MIN) {
        mine.n = n;
        stat_all(&mine);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->j = (job){dir_fd, names + half, st + half, errs + half, n - half};
    s->posted = 1;
    s->done = 0;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    stat_all(&mine);
    pthread_mutex_lock(&s->mu);
    while (!s->done)
        pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
}
