/*
 * Running the firewall's programs; see tap_exec.h.
 */
#include "tap_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct tap_spawn {
    pid_t pid;
    int in;  /* its stdin, non-blocking */
    int out; /* the anonymous file holding its output */
    const char *prog;
};

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child(const char *const argv[], int in, int out)
{
    sigset_t none;
    struct sigaction sa;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

tap_spawn_t *tap_spawn(const char *const argv[], char *err, size_t errlen)
{
    tap_spawn_t *sp = calloc(1, sizeof(*sp));
    int inp[2] = { -1, -1 };

    if (sp == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sp->in = sp->out = -1;
    sp->prog = argv[0];
    sp->out = memfd_create("dbmail_tap-out", MFD_CLOEXEC);
    if (sp->out < 0 || pipe2(inp, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "%s: %s", sp->out < 0 ? "memfd_create" : "pipe", strerror(errno));
        goto fail;
    }
    sp->pid = fork();
    if (sp->pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        goto fail;
    }
    if (sp->pid == 0) {
        child(argv, inp[0], sp->out);
    }
    close(inp[0]);
    sp->in = inp[1];
    fcntl(sp->in, F_SETFL, O_NONBLOCK);
    return sp;
fail:
    if (inp[0] >= 0) {
        close(inp[0]);
        close(inp[1]);
    }
    if (sp->out >= 0) {
        close(sp->out);
    }
    free(sp);
    return NULL;
}

int tap_spawn_write(tap_spawn_t *sp, const char *buf, size_t len, int timeout_ms)
{
    struct timespec t0;
    size_t done = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (done < len) {
        ssize_t w = write(sp->in, buf + done, len - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return -1; /* EPIPE: it died */
        }
        long left = timeout_ms - elapsed_ms(&t0);
        struct pollfd p = { .fd = sp->in, .events = POLLOUT };
        if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR)) {
            return -1;
        }
    }
    return 0;
}

static void read_output(int fd, char *out, size_t outlen)
{
    ssize_t r;

    if (outlen == 0) {
        return;
    }
    out[0] = '\0';
    r = pread(fd, out, outlen - 1, 0);
    if (r > 0) {
        out[r] = '\0';
    }
}

static void free_spawn(tap_spawn_t *sp)
{
    if (sp->in >= 0) {
        close(sp->in);
    }
    if (sp->out >= 0) {
        close(sp->out);
    }
    free(sp);
}

int tap_spawn_finish(tap_spawn_t *sp, char *out, size_t outlen, int timeout_ms)
{
    struct timespec t0;
    int status = 0, rc = -1;
    pid_t got;

    close(sp->in);
    sp->in = -1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        got = waitpid(sp->pid, &status, WNOHANG);
        if (got == sp->pid || (got < 0 && errno != EINTR)) {
            break;
        }
        if (elapsed_ms(&t0) >= timeout_ms) {
            kill(sp->pid, SIGKILL);
            while (waitpid(sp->pid, &status, 0) < 0 && errno == EINTR) {
            }
            read_output(sp->out, out, outlen);
            snprintf(out, outlen, "%s: killed after %d ms", sp->prog, timeout_ms);
            free_spawn(sp);
            return -1;
        }
        poll(NULL, 0, 5);
    }
    read_output(sp->out, out, outlen);
    if (got == sp->pid && WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
        if (rc == 127 && out[0] == '\0') {
            snprintf(out, outlen, "%s: cannot be run", sp->prog);
        }
    }
    free_spawn(sp);
    return rc;
}

void tap_spawn_kill(tap_spawn_t *sp)
{
    int status;

    kill(sp->pid, SIGKILL);
    while (waitpid(sp->pid, &status, 0) < 0 && errno == EINTR) {
    }
    free_spawn(sp);
}

int tap_exec(const char *const argv[], const char *in, size_t inlen, char *out, size_t outlen,
             int timeout_ms)
{
    struct timespec t0;
    tap_spawn_t *sp;
    long left;

    if (outlen > 0) {
        out[0] = '\0';
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sp = tap_spawn(argv, out, outlen);
    if (sp == NULL) {
        return -1;
    }
    /* A program that stops reading is judged by its exit status and
     * output, not by the failed write. */
    if (inlen > 0) {
        (void)tap_spawn_write(sp, in, inlen, timeout_ms);
    }
    left = timeout_ms - elapsed_ms(&t0);
    return tap_spawn_finish(sp, out, outlen, left > 0 ? (int)left : 1);
}
