/* progress: the progress bar and colour on stderr (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FIRST_DRAW_NS 300000000LL /* quick commands show no bar at all */
#define REDRAW_NS 100000000LL

#define SGR_RED "\033[31m"
#define SGR_YELLOW "\033[33m"
#define SGR_GREEN "\033[32m"
#define SGR_OFF "\033[0m"

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

void cli_out_init(cli_out *o, int tty, int quiet)
{
    const char *nc = getenv("NO_COLOR");
    memset(o, 0, sizeof *o);
    o->bar = tty && !quiet;
    o->color = tty && !(nc && *nc);
    clock_gettime(CLOCK_MONOTONIC, &o->start);
}

const char *cli_out_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5)
        v /= 1024, u++;
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.1f %s", v, unit[u]);
    return buf;
}

static int term_width(void)
{
    struct winsize ws;
    if (!ioctl(2, TIOCGWINSZ, &ws) && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

static void eta_text(uint64_t left, uint64_t rate, char *buf, size_t cap)
{
    if (!rate) {
        snprintf(buf, cap, "ETA --:--");
        return;
    }
    uint64_t s = left / rate;
    if (s >= 3600)
        snprintf(buf, cap, "ETA %llu:%02llu:%02llu", (unsigned long long)(s / 3600),
                 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
    else
        snprintf(buf, cap, "ETA %llu:%02llu", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
}

/* "push  [=====>     ]  42%  12/30 files  1.2 GiB/3.0 GiB  85.0 MiB/s  ETA 0:21" */
static void draw(cli_out *o, const ss_progress *p)
{
    char done[32], total[32], rate[32], eta[32], txn[48] = "", tail[256], line[512];
    int width = term_width();
    uint64_t bt = p->bytes_total > p->bytes_done ? p->bytes_total : p->bytes_done;
    int pct = bt ? (int)(p->bytes_done * 100 / bt) : 0;
    eta_text(bt - p->bytes_done, o->rate_bytes, eta, sizeof eta);
    if (p->txn_total > 1)
        snprintf(txn, sizeof txn, "  txn %llu/%llu", (unsigned long long)p->txn_done,
                 (unsigned long long)p->txn_total);
    snprintf(tail, sizeof tail, " %3d%%  %llu/%llu files  %s/%s  %s/s  %s%s", pct,
             (unsigned long long)p->files_done, (unsigned long long)p->files_total,
             cli_out_bytes(p->bytes_done, done, sizeof done),
             cli_out_bytes(bt, total, sizeof total),
             cli_out_bytes(o->rate_bytes, rate, sizeof rate), eta, txn);
    const char *phase = p->phase;
    int bar = width - 1 - (int)strlen(tail) - (int)strlen(phase) - 4;
    if (bar > 40) bar = 40;
    if (bar < 5) { /* a narrow terminal: the figures only */
        snprintf(line, sizeof line, "%s%s", phase, tail);
    } else {
        int fill = bar * pct / 100, n = 0;
        char cells[64];
        for (; n < fill; n++)
            cells[n] = '=';
        if (n < bar) cells[n++] = '>';
        for (; n < bar; n++)
            cells[n] = ' ';
        cells[bar] = '\0';
        snprintf(line, sizeof line, "%s [%s%s%s]%s", phase, o->color ? SGR_GREEN : "", cells,
                 o->color ? SGR_OFF : "", tail);
    }
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    o->drawn = 1;
}

void cli_out_progress(cli_out *o, const ss_progress *p)
{
    struct timespec now;
    if (!o->bar || !p->phase) return; /* no phase: a walk (verify, restore) that sets no totals */
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long since_start = ns_between(&o->start, &now);
    if (since_start < FIRST_DRAW_NS) return;
    int last_file =
        p->files_total && p->files_done == p->files_total && o->last_files != p->files_done;
    if (o->ever && ns_between(&o->last, &now) < REDRAW_NS && !last_file) return;
    long long dt = o->ever ? ns_between(&o->last, &now) : since_start;
    uint64_t moved = p->bytes_done >= o->last_bytes ? p->bytes_done - o->last_bytes : 0;
    uint64_t now_rate = dt > 0 ? (uint64_t)((double)moved * 1e9 / (double)dt) : 0;
    /* Smoothed over about a second of redraws, so ETA does not jump with every chunk. */
    o->rate_bytes = o->ever ? (o->rate_bytes * 7 + now_rate * 3) / 10 : now_rate;
    o->ever = 1;
    o->last_bytes = p->bytes_done;
    o->last_files = p->files_done;
    o->last = now;
    draw(o, p);
}

void cli_out_clear(cli_out *o)
{
    if (!o->drawn) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    o->drawn = 0;
}

const char *cli_out_safe(char *buf, size_t cap, const char *s)
{
    return ss_display_path(buf, cap, s);
}

void cli_out_line(cli_out *o, int kind, const char *prefix, const char *text)
{
    const char *on = !o->color ? "" : kind == 'e' ? SGR_RED : kind == 'w' ? SGR_YELLOW : "";
    char safe[CLI_SAFE_CAP];
    cli_out_clear(o); /* the next progress call draws the bar again, under the line */
    fprintf(stderr, "%s%s:%s %s\n", on, prefix, *on ? SGR_OFF : "",
            cli_out_safe(safe, sizeof safe, text));
}
