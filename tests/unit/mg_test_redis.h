/*
 * A real redis-server for the store's tests: started on a free loopback
 * port with no persistence, in a temporary directory, stopped by PID.
 * The server dies with the process that started it (PR_SET_PDEATHSIG), so
 * a test that crashes leaves nothing behind.
 */
#ifndef MG_TEST_REDIS_H
#define MG_TEST_REDIS_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "mg_store.h"

#define MG_TEST_REDIS_BIN "/usr/bin/redis-server"
#define MG_TEST_REDIS_MAXARGS 16

typedef struct mg_test_redis {
    pid_t pid;
    int port;
    char dir[64];
    char sock[128];
    char password[64];          /* for the helper's own admin connection */
    char *extra[MG_TEST_REDIS_MAXARGS];
    int nextra;
} mg_test_redis_t;

static inline int64_t mg_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t mg_test_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void mg_test_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A port nobody listens on right now (the kernel's pick). */
static inline int mg_test_free_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0
        && getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* An admin connection of the test's own (not the store under test). */
static inline redisContext *mg_test_redis_connect(const mg_test_redis_t *r)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);

    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (r->password[0] != '\0') {
        const char *argv[2] = { "AUTH", r->password };
        redisReply *rep = redisCommandArgv(c, 2, argv, NULL);
        if (rep != NULL)
            freeReplyObject(rep);
    }
    return c;
}

/* Run one command given as NULL-terminated strings; the reply or NULL. */
static inline redisReply *mg_test_redis_do(const mg_test_redis_t *r, const char *cmd, ...)
{
    const char *argv[32];
    int argc = 0;
    va_list ap;
    redisContext *c = mg_test_redis_connect(r);
    redisReply *rep = NULL;

    if (c == NULL)
        return NULL;
    argv[argc++] = cmd;
    va_start(ap, cmd);
    while (argc < 32 && (argv[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    rep = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return rep;
}

/* The same, for an integer reply (-1 on anything else). */
static inline long long mg_test_redis_int(const mg_test_redis_t *r, const char *cmd, ...)
{
    const char *argv[32];
    int argc = 0;
    va_list ap;
    long long v = -1;
    redisContext *c = mg_test_redis_connect(r);
    redisReply *rep;

    if (c == NULL)
        return -1;
    argv[argc++] = cmd;
    va_start(ap, cmd);
    while (argc < 32 && (argv[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    rep = redisCommandArgv(c, argc, argv, NULL);
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
        v = rep->integer;
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return v;
}

static inline int mg_test_redis_wait_up(const mg_test_redis_t *r, int ms)
{
    int64_t end = mg_test_mono_ms() + ms;

    while (mg_test_mono_ms() < end) {
        redisContext *c = mg_test_redis_connect(r);
        if (c != NULL) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep != NULL && (rep->type == REDIS_REPLY_STATUS
                                     || rep->type == REDIS_REPLY_ERROR);
            if (rep != NULL)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid)
            return -1;
        mg_test_sleep_ms(10);
    }
    return -1;
}

static inline int mg_test_redis_spawn(mg_test_redis_t *r)
{
    char portbuf[16], logbuf[160];
    const char *argv[16 + MG_TEST_REDIS_MAXARGS];
    int argc = 0;
    pid_t parent = getpid();

    snprintf(portbuf, sizeof(portbuf), "%d", r->port);
    snprintf(logbuf, sizeof(logbuf), "%s/redis.log", r->dir);
    argv[argc++] = MG_TEST_REDIS_BIN;
    argv[argc++] = "--port";
    argv[argc++] = portbuf;
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = r->dir;
    argv[argc++] = "--unixsocket";
    argv[argc++] = r->sock;
    argv[argc++] = "--logfile";
    argv[argc++] = logbuf;
    for (int i = 0; i < r->nextra; i++)
        argv[argc++] = r->extra[i];
    argv[argc] = NULL;

    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(MG_TEST_REDIS_BIN, (char *const *)argv);
        _exit(127);
    }
    return mg_test_redis_wait_up(r, 5000);
}

/* Start a server; extra: more redis-server arguments, NULL-terminated (or
 * NULL).  Retries with another port if the one picked got taken. */
static inline int mg_test_redis_start(mg_test_redis_t *r, const char *const *extra)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/mg_test_redis.XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        return -1;
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    for (int i = 0; extra != NULL && extra[i] != NULL && i < MG_TEST_REDIS_MAXARGS; i++)
        r->extra[r->nextra++] = strdup(extra[i]);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = mg_test_free_port();
        if (r->port > 0 && mg_test_redis_spawn(r) == 0)
            return 0;
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            r->pid = 0;
        }
    }
    return -1;
}

/* Kill -9 (no chance to say goodbye) and reap. */
static inline void mg_test_redis_kill(mg_test_redis_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

/* Start again on the same port and arguments: an empty server, its
 * script cache empty. */
static inline int mg_test_redis_restart(mg_test_redis_t *r)
{
    mg_test_redis_kill(r);
    for (int attempt = 0; attempt < 50; attempt++) {
        if (mg_test_redis_spawn(r) == 0)
            return 0;
        mg_test_redis_kill(r);
        mg_test_sleep_ms(50);
    }
    return -1;
}

static inline void mg_test_redis_stop(mg_test_redis_t *r)
{
    char path[160];

    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        for (int i = 0; i < 200 && waitpid(r->pid, NULL, WNOHANG) != r->pid; i++)
            mg_test_sleep_ms(10);
        mg_test_redis_kill(r);
    }
    for (int i = 0; i < r->nextra; i++)
        free(r->extra[i]);
    r->nextra = 0;
    snprintf(path, sizeof(path), "%s/redis.log", r->dir);
    unlink(path);
    unlink(r->sock);
    rmdir(r->dir);
}

/* A store on r (TCP) with the given timeouts (0 = defaults). */
static inline mg_store_t *mg_test_store(const mg_test_redis_t *r, const char *userinfo,
                                        int db, int connect_ms, int command_ms)
{
    char url[512];
    const char *why = NULL;
    mg_store_cfg_t cfg;

    memset(&cfg, 0, sizeof(cfg));
    snprintf(url, sizeof(url), "redis://%s%s127.0.0.1:%d/%d", userinfo ? userinfo : "",
             userinfo ? "@" : "", r->port, db);
    if (mg_store_url_parse(url, &cfg.url, &why) != 0)
        return NULL;
    cfg.prefix = MG_STORE_DEFAULT_PREFIX;
    cfg.connect_timeout_ms = connect_ms;
    cfg.command_timeout_ms = command_ms;
    return mg_store_new(&cfg);
}

#endif
