/*
 * fpthrottle UPSTREAM BYTES_PER_S: the tests' fault proxy (tests/faultproxy.c)
 * in front of an S3 endpoint, relaying at most BYTES_PER_S body bytes a
 * second over all connections, both ways: a bucket behind a slow link for
 * bench-peers.sh. Prints its URL on stdout, then runs until SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "faultproxy.h"

int main(int argc, char **argv)
{
    fp_rates rates = {0};
    faultproxy *p;
    sigset_t set;
    int sig = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: fpthrottle UPSTREAM BYTES_PER_S\n");
        return 2;
    }
    rates.bytes_per_s = strtoull(argv[2], NULL, 10);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the proxy's threads inherit it */
    p = fp_start(argv[1], 1);
    if (!p) return 1;
    fp_set(p, &rates, 1);
    printf("%s\n", fp_url(p));
    fflush(stdout);
    sigwait(&set, &sig);
    fp_stop(p);
    return 0;
}
