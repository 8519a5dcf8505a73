/* secret: passphrase sources for the CLI (see secret.h). */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_MAX 1024

static ss_rc alloc_secret(cli_secret *s, ss_err *err)
{
    s->buf = sodium_malloc(SECRET_MAX + 1);
    s->len = 0;
    return s->buf ? SS_OK : ss_fail(err, SS_ERR_NOMEM, "out of memory");
}

/* Read up to SECRET_MAX bytes from fd; one trailing newline is not part of it. */
static ss_rc read_fd(int fd, cli_secret *s, const char *what, ss_err *err)
{
    ssize_t n;
    while (s->len < SECRET_MAX && (n = read(fd, s->buf + s->len, SECRET_MAX - s->len)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return ss_fail(err, SS_ERR_IO, "read passphrase from %s: %s", what, strerror(errno));
        s->len += (size_t)n;
    }
    if (s->len && s->buf[s->len - 1] == '\n') s->len--;
    if (s->len && s->buf[s->len - 1] == '\r') s->len--;
    s->buf[s->len] = '\0';
    if (!s->len) return ss_fail(err, SS_ERR_INVALID, "the passphrase from %s is empty", what);
    return SS_OK;
}

static ss_rc from_file(const char *path, cli_secret *s, ss_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ss_rc rc;
    if (fd < 0) return ss_fail(err, SS_ERR_INVALID, "password file %s: %s", path, strerror(errno));
    rc = read_fd(fd, s, path, err);
    close(fd);
    return rc;
}

static ss_rc from_command(const char *cmd, cli_secret *s, ss_err *err)
{
    int fds[2], status;
    pid_t pid;
    ss_rc rc;
    if (pipe(fds)) return ss_fail(err, SS_ERR_IO, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) return ss_fail(err, SS_ERR_IO, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    rc = read_fd(fds[0], s, "S3SYNC_PASSWORD_COMMAND", err);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status)))
        rc = ss_fail(err, SS_ERR_INVALID, "S3SYNC_PASSWORD_COMMAND failed (exit %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return rc;
}

/*
 * While echo is off, a signal that ends the process (^C at the prompt)
 * must not leave the terminal without echo: restore it, then die of the
 * signal as before.
 */
static const int echo_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static struct sigaction echo_prev[sizeof echo_sigs / sizeof echo_sigs[0]];
static int echo_tty = -1;
static struct termios echo_saved;

static void restore_echo(int sig)
{
    if (echo_tty >= 0) tcsetattr(echo_tty, TCSAFLUSH, &echo_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* tty >= 0: guard; -1: give back the handlers there were (SIG_IGN under nohup, say). */
static void guard_echo(int tty, const struct termios *saved)
{
    struct sigaction guard = {.sa_handler = restore_echo};
    sigemptyset(&guard.sa_mask);
    echo_saved = *saved;
    for (size_t i = 0; i < sizeof echo_sigs / sizeof echo_sigs[0]; i++) {
        if (tty >= 0 && echo_tty < 0) {
            sigaction(echo_sigs[i], NULL, &echo_prev[i]);
            if (echo_prev[i].sa_handler != SIG_IGN) sigaction(echo_sigs[i], &guard, NULL);
        } else if (tty < 0 && echo_tty >= 0) {
            sigaction(echo_sigs[i], &echo_prev[i], NULL);
        }
    }
    echo_tty = tty;
}

static ss_rc prompt_once(int tty, const char *prompt, cli_secret *s, ss_err *err)
{
    struct termios old, quiet;
    ss_rc rc = SS_OK;
    ssize_t got;
    char c = 0;
    if (tcgetattr(tty, &old)) return ss_fail(err, SS_ERR_IO, "cannot prompt for the passphrase");
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    guard_echo(tty, &old);
    /* Echo off first, then the prompt: what is typed once the prompt shows is never echoed
     * nor flushed away (TCSAFLUSH drops only what was typed before it). */
    if (tcsetattr(tty, TCSAFLUSH, &quiet) || write(tty, prompt, strlen(prompt)) < 0) {
        tcsetattr(tty, TCSAFLUSH, &old);
        guard_echo(-1, &old);
        return ss_fail(err, SS_ERR_IO, "cannot prompt for the passphrase");
    }
    s->len = 0;
    for (;;) {
        got = read(tty, &c, 1);
        if (got != 1 || c == '\n') break;
        if (s->len < SECRET_MAX) s->buf[s->len++] = c;
    }
    s->buf[s->len] = '\0';
    tcsetattr(tty, TCSAFLUSH, &old);
    guard_echo(-1, &old);
    if (write(tty, "\n", 1) < 0) rc = ss_fail(err, SS_ERR_IO, "cannot prompt for the passphrase");
    /* ^D or a closed terminal: a passphrase cut short is not one to seal the master key under. */
    if (got != 1)
        rc = ss_fail(err, SS_ERR_INVALID, "end of input at the passphrase prompt");
    else if (!s->len)
        rc = ss_fail(err, SS_ERR_INVALID, "empty passphrase");
    return rc;
}

static int open_tty(void)
{
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty >= 0 && !isatty(tty)) {
        close(tty);
        tty = -1;
    }
    return tty;
}

/*
 * s was just typed as prompt: ask for it again; on a mismatch say so and ask
 * both again, CONFIRM_TRIES times in all (a typo would be the passphrase forever).
 */
static ss_rc confirm_on(int tty, const char *prompt, cli_secret *s, int *ret_mismatch, ss_err *err)
{
    static const char differ[] = "the two passphrases differ; try again\n";
    cli_secret again = {0};
    ss_rc rc = alloc_secret(&again, err);
    for (int i = 0; !rc; i++) {
        if (i) rc = prompt_once(tty, prompt, s, err);
        if (rc) break;
        rc = prompt_once(tty, "Repeat it: ", &again, err);
        if (rc) break;
        if (again.len == s->len && !sodium_memcmp(again.buf, s->buf, s->len)) break;
        if (i + 1 == CONFIRM_TRIES) {
            *ret_mismatch = 1;
            rc = ss_fail(err, SS_ERR_INVALID, "the two passphrases differed %d times",
                         CONFIRM_TRIES);
        } else if (write(tty, differ, sizeof differ - 1) < 0) {
            rc = ss_fail(err, SS_ERR_IO, "cannot prompt for the passphrase");
        }
    }
    cli_secret_free(&again);
    return rc;
}

static ss_rc from_prompt(const char *prompt, int confirm, cli_secret *s, int *ret_mismatch,
                         ss_err *err)
{
    int tty = open_tty();
    ss_rc rc;
    if (tty < 0)
        return ss_fail(err, SS_ERR_INVALID,
                       "no passphrase: use --password-file, S3SYNC_PASSWORD_FILE, "
                       "S3SYNC_PASSWORD_COMMAND or S3SYNC_PASSWORD, or run on a terminal");
    rc = prompt_once(tty, prompt, s, err);
    if (!rc && confirm) rc = confirm_on(tty, prompt, s, ret_mismatch, err);
    close(tty);
    return rc;
}

int cli_secret_prompts(const char *file)
{
    const char *vars[] = {"S3SYNC_PASSWORD_FILE", "S3SYNC_PASSWORD_COMMAND", "S3SYNC_PASSWORD"};
    if (file) return 0;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) && *getenv(vars[i])) return 0;
    return 1;
}

ss_rc cli_secret_confirm(const char *prompt, cli_secret *s, int *ret_mismatch, ss_err *err)
{
    int tty = open_tty();
    ss_rc rc;
    *ret_mismatch = 0;
    if (tty < 0) return ss_fail(err, SS_ERR_IO, "cannot prompt for the passphrase");
    rc = confirm_on(tty, prompt, s, ret_mismatch, err);
    close(tty);
    return rc;
}

ss_rc cli_secret_get(const char *file, const char *prompt, int confirm, cli_secret *ret,
                     int *ret_mismatch, ss_err *err)
{
    const char *env;
    ss_rc rc;
    *ret_mismatch = 0;
    rc = alloc_secret(ret, err);
    if (rc) return rc;
    if (file)
        rc = from_file(file, ret, err);
    else if ((env = getenv("S3SYNC_PASSWORD_FILE")) && *env)
        rc = from_file(env, ret, err);
    else if ((env = getenv("S3SYNC_PASSWORD_COMMAND")) && *env)
        rc = from_command(env, ret, err);
    else if ((env = getenv("S3SYNC_PASSWORD")) && *env) {
        size_t n = strlen(env);
        ret->len = n < SECRET_MAX ? n : SECRET_MAX;
        memcpy(ret->buf, env, ret->len);
        ret->buf[ret->len] = '\0';
    } else
        rc = from_prompt(prompt, confirm, ret, ret_mismatch, err);
    if (rc) cli_secret_free(ret);
    return rc;
}

void cli_secret_free(cli_secret *s)
{
    if (s->buf) sodium_free(s->buf); /* wipes */
    s->buf = NULL;
    s->len = 0;
}
