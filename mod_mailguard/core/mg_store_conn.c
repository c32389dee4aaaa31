/*
 * The Redis store: the connection, its set-up and the script runner.
 *
 * One store owns one command connection (and, for subscribers, a second
 * one in mg_store_events.c).  The connection is opened by the first call;
 * a call opens it at most once; any I/O or protocol error frees it so the
 * next call starts clean (a restarted Redis, its script cache empty, then
 * works with no help).  Redis error replies leave the connection alone:
 * the protocol is still in step.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mg_lua.h"
#include "mg_store_int.h"

const mg_store_script_t mg_store_scripts[MG_SCRIPT_COUNT] = {
    [MG_SCRIPT_RECORD] = { "record_failure", mg_lua_record_failure },
    [MG_SCRIPT_BAN] = { "ban", mg_lua_ban },
    [MG_SCRIPT_UNBAN] = { "unban", mg_lua_unban },
    [MG_SCRIPT_IS_BANNED] = { "is_banned", mg_lua_is_banned },
    [MG_SCRIPT_CHECK] = { "check", mg_lua_check },
    [MG_SCRIPT_RESYNC] = { "resync", mg_lua_resync },
    [MG_SCRIPT_PRUNE] = { "prune", mg_lua_prune },
};

/* ---------- errors ---------- */

void mg_store_seterr(mg_store_t *st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
    st->kind = MG_STORE_EOTHER;
    /* Redis does not echo passwords, but a proxy or a future version might:
     * a message that quotes one is never kept. */
    if ((st->url.password[0] != '\0' && strstr(st->err, st->url.password) != NULL)
        || (st->url.sentinel_password[0] != '\0'
            && strstr(st->err, st->url.sentinel_password) != NULL))
        snprintf(st->err, sizeof(st->err), "%.180s: error text withheld (it quoted a secret)",
                 st->where);
}

void mg_store_ctxerr(mg_store_t *st, const char *what, const redisContext *c, int saved_errno)
{
    mg_store_errkind_t kind = MG_STORE_EDOWN;

    if (c == NULL) {
        mg_store_seterr(st, "%s: %s: out of memory", st->where, what);
    }
    else if (c->err == REDIS_ERR_IO
             && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT
                 || saved_errno == EINPROGRESS)) {
        mg_store_seterr(st, "%s: %s: timed out", st->where, what);
        /* A connection that cannot even be made in time is a Redis that
         * is not there; a command that got no answer in time may just be
         * waiting behind someone else's slow one. */
        if (strcmp(what, "connect") != 0)
            kind = MG_STORE_ETIMEOUT;
    }
    else if (c->err == REDIS_ERR_EOF) {
        mg_store_seterr(st, "%s: %s: connection closed by the server", st->where, what);
    }
    else {
        mg_store_seterr(st, "%s: %s: %s", st->where, what,
                        c->errstr[0] ? c->errstr : "I/O error");
    }
    st->kind = kind;
}

void mg_store_replyerr(mg_store_t *st, const char *what, const redisReply *r)
{
    mg_store_seterr(st, "%s: %s: %s", st->where, what, r->str);
    st->kind = MG_STORE_EREFUSED;
    /* A replica answering a write: this is no longer the primary (a
     * failover).  The next call connects again, and with sentinels asks
     * them who is primary now. */
    if (strncmp(r->str, "READONLY", 8) == 0)
        st->stale = 1;
}

void mg_store_drop(mg_store_t *st)
{
    if (st->c != NULL) {
        redisFree(st->c);
        st->c = NULL;
    }
}

/* ---------- connecting ---------- */

int mg_store_check_reply(mg_store_t *st, const char *what, redisReply *r, int type)
{
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_replyerr(st, what, r);
        return -1;
    }
    if (type != 0 && r->type != type) {
        mg_store_seterr(st, "%s: %s: unexpected reply type %d", st->where, what, r->type);
        return -1;
    }
    return 0;
}

static void set_where(mg_store_t *st, const char *host, int port)
{
    int v6 = strchr(host, ':') != NULL;

    /* (a host name can be long: the master's name is cut first) */
    snprintf(st->where, sizeof(st->where), "redis %s%.100s%s:%d primary %.40s", v6 ? "[" : "",
             host, v6 ? "]" : "", port, st->url.master);
}

/* Ask one sentinel for the primary's address: 0 and host/port, or -1 with
 * the error set. */
static int ask_sentinel(mg_store_t *st, const mg_store_hostport_t *sn, char *host, size_t hsize,
                        int *port)
{
    const char *argv[3];
    size_t len[3];
    redisContext *c;
    redisReply *r = NULL;
    int rc = -1;

    c = redisConnectWithTimeout(sn->host, sn->port, st->connect_tv);
    if (c == NULL || c->err) {
        mg_store_ctxerr(st, "connect to sentinel", c, errno);
        goto end;
    }
    redisSetTimeout(c, st->command_tv);
    if (st->url.sentinel_password[0] != '\0') {
        int n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;
        if (st->url.sentinel_user[0] != '\0') {
            argv[n] = st->url.sentinel_user;
            len[n++] = strlen(st->url.sentinel_user);
        }
        argv[n] = st->url.sentinel_password;
        len[n++] = strlen(st->url.sentinel_password);
        r = redisCommandArgv(c, n, argv, len);
        if (r == NULL) {
            mg_store_ctxerr(st, "sentinel AUTH", c, errno);
            goto end;
        }
        if (mg_store_check_reply(st, "sentinel AUTH", r, 0) != 0)
            goto end;
        freeReplyObject(r);
    }
    argv[0] = "SENTINEL";
    len[0] = 8;
    argv[1] = "get-master-addr-by-name";
    len[1] = 23;
    argv[2] = st->url.master;
    len[2] = strlen(st->url.master);
    r = redisCommandArgv(c, 3, argv, len);
    if (r == NULL) {
        mg_store_ctxerr(st, "SENTINEL get-master-addr-by-name", c, errno);
        goto end;
    }
    if (mg_store_check_reply(st, "SENTINEL get-master-addr-by-name", r, 0) != 0)
        goto end;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= hsize
        || r->element[1]->type != REDIS_REPLY_STRING) {
        mg_store_seterr(st, "sentinel %s:%d does not know a primary named %s", sn->host,
                        sn->port, st->url.master);
        st->kind = MG_STORE_EDOWN;
        goto end;
    }
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = atoi(r->element[1]->str);
    rc = *port > 0 && *port < 65536 ? 0 : -1;
end:
    if (r != NULL)
        freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return rc;
}

/* The primary, from the first sentinel that knows it (starting with the
 * one that answered last time). */
static int resolve_primary(mg_store_t *st, char *host, size_t hsize, int *port)
{
    for (int i = 0; i < st->url.nsentinels; i++) {
        int k = (st->sentinel_at + i) % st->url.nsentinels;
        if (ask_sentinel(st, &st->url.sentinel[k], host, hsize, port) == 0) {
            st->sentinel_at = k;
            return 0;
        }
    }
    st->kind = MG_STORE_EDOWN;
    return -1;
}

redisContext *mg_store_connect(mg_store_t *st, int for_subscribe)
{
    const char *argv[4];
    size_t len[4];
    char dbtxt[16];
    redisContext *c;
    redisReply *r = NULL;
    int sent = 0, failed = 0, i;
    int sent_auth = 0, sent_select = 0, sent_scripts = 0, sent_role = 0;

    if (st->url.nsentinels > 0) {
        /* Whoever is primary now: asked at every connect, so a failover is
         * followed by the next connection. */
        char host[256];
        int port = 0;

        c = NULL;
        if (resolve_primary(st, host, sizeof(host), &port) != 0)
            goto fail;
        set_where(st, host, port);
        snprintf(st->primary, sizeof(st->primary), "%s", host);
        st->primary_port = port;
        c = redisConnectWithTimeout(host, port, st->connect_tv);
    }
    else if (st->url.path[0] != '\0')
        c = redisConnectUnixWithTimeout(st->url.path, st->connect_tv);
    else
        c = redisConnectWithTimeout(st->url.host, st->url.port, st->connect_tv);
    if (c == NULL || c->err) {
        mg_store_ctxerr(st, "connect", c, errno);
        goto fail;
    }
    if (redisSetTimeout(c, st->command_tv) != REDIS_OK) {
        mg_store_ctxerr(st, "setting the command timeout", c, errno);
        goto fail;
    }

    /* AUTH, SELECT and the scripts go out together: one round trip. */
    if (st->url.password[0] != '\0') {
        int n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;
        if (st->url.user[0] != '\0') {
            argv[n] = st->url.user;
            len[n] = strlen(st->url.user);
            n++;
        }
        argv[n] = st->url.password;
        len[n] = strlen(st->url.password);
        n++;
        if (redisAppendCommandArgv(c, n, argv, len) != REDIS_OK)
            goto io;
        sent_auth = 1;
    }
    if (!for_subscribe && st->url.db != 0) {
        argv[0] = "SELECT";
        len[0] = 6;
        len[1] = (size_t)snprintf(dbtxt, sizeof(dbtxt), "%d", st->url.db);
        argv[1] = dbtxt;
        if (redisAppendCommandArgv(c, 2, argv, len) != REDIS_OK)
            goto io;
        sent_select = 1;
    }
    if (!for_subscribe) {
        for (i = 0; i < MG_SCRIPT_COUNT; i++) {
            argv[0] = "SCRIPT";
            len[0] = 6;
            argv[1] = "LOAD";
            len[1] = 4;
            argv[2] = mg_store_scripts[i].src;
            len[2] = strlen(mg_store_scripts[i].src);
            if (redisAppendCommandArgv(c, 3, argv, len) != REDIS_OK)
                goto io;
        }
        sent_scripts = 1;
    }
    if (st->url.nsentinels > 0) {
        /* a sentinel may still name a primary that was just demoted */
        argv[0] = "ROLE";
        len[0] = 4;
        if (redisAppendCommandArgv(c, 1, argv, len) != REDIS_OK)
            goto io;
        sent_role = 1;
    }
    sent = sent_auth + sent_select + (sent_scripts ? MG_SCRIPT_COUNT : 0) + sent_role;

    /* Read every reply even after a refusal, so the first error reported is
     * the cause (a NOAUTH on SELECT follows a failed AUTH). */
    for (i = 0; i < sent; i++) {
        void *vr = NULL;
        const char *what;
        int script = -1;

        if (redisGetReply(c, &vr) != REDIS_OK || vr == NULL)
            goto io;
        r = vr;
        if (sent_auth && i == 0)
            what = "AUTH";
        else if (sent_select && i == sent_auth)
            what = "SELECT";
        else if (sent_role && i == sent - 1)
            what = "ROLE";
        else {
            script = i - sent_auth - sent_select;
            what = "SCRIPT LOAD";
        }
        if (!failed) {
            if (mg_store_check_reply(st, what, r, script >= 0 ? REDIS_REPLY_STRING : 0) != 0)
                failed = 1;
            else if (script < 0 && strcmp(what, "ROLE") == 0
                     && (r->type != REDIS_REPLY_ARRAY || r->elements < 1
                         || r->element[0]->type != REDIS_REPLY_STRING
                         || strcmp(r->element[0]->str, "master") != 0)) {
                mg_store_seterr(st, "%s: not the primary (yet): a failover is under way",
                                st->where);
                st->kind = MG_STORE_EDOWN;
                failed = 1;
            }
            else if (script < 0 && strcmp(what, "ROLE") == 0) {
                st->replicas = r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY
                                   ? (int)r->element[2]->elements
                                   : 0;
            }
            else if (script >= 0) {
                if (r->len != 40) {
                    mg_store_seterr(st, "%s: SCRIPT LOAD %s: bad digest", st->where,
                                    mg_store_scripts[script].name);
                    failed = 1;
                }
                else {
                    memcpy(st->sha[script], r->str, 40);
                    st->sha[script][40] = '\0';
                }
            }
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (failed)
        goto fail;
    return c;

io:
    mg_store_ctxerr(st, "connection setup", c, errno);
fail:
    if (r != NULL)
        freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return NULL;
}

/* The command connection, opened or checked.  A connection that has been
 * idle may have been closed by the server (restart, "timeout" setting):
 * that is seen here, before anything is sent, so the call reconnects
 * instead of failing; nothing can be pending on an idle connection, so
 * anything readable means it is gone or out of step. */
int mg_store_ready(mg_store_t *st)
{
    if (st->c != NULL && st->stale) {
        st->stale = 0;
        mg_store_drop(st);
    }
    if (st->c != NULL) {
        struct pollfd p = { .fd = st->c->fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 0)
            mg_store_drop(st);
    }
    if (st->c == NULL)
        st->c = mg_store_connect(st, 0);
    return st->c != NULL ? 0 : -1;
}

/* One plain command on the command connection: its reply (error replies
 * included, for the caller to judge), or NULL with the error set and a
 * broken connection dropped. */
redisReply *mg_store_command(mg_store_t *st, const char *what, int argc, const char **argv,
                             const size_t *len)
{
    redisReply *r;

    if (mg_store_ready(st) != 0)
        return NULL;
    r = redisCommandArgv(st->c, argc, argv, len);
    if (r == NULL) {
        mg_store_ctxerr(st, what, st->c, errno);
        mg_store_drop(st);
    }
    return r;
}

/* ---------- lifecycle ---------- */

mg_store_t *mg_store_new(const mg_store_cfg_t *cfg)
{
    mg_store_t *st;
    const char *prefix = cfg->prefix != NULL ? cfg->prefix : MG_STORE_DEFAULT_PREFIX;
    size_t plen = strlen(prefix);
    int cto = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 200;
    int mto = cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : 200;

    if (plen >= MG_STORE_PREFIX_MAX)
        return NULL;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->url = cfg->url;
    if (st->url.nsentinels > 0)
        snprintf(st->where, sizeof(st->where), "redis-sentinel %s", st->url.master);
    else if (st->url.path[0] != '\0')
        snprintf(st->where, sizeof(st->where), "redis unix:%s", st->url.path);
    else if (strchr(st->url.host, ':') != NULL)
        snprintf(st->where, sizeof(st->where), "redis [%s]:%d", st->url.host, st->url.port);
    else
        snprintf(st->where, sizeof(st->where), "redis %s:%d", st->url.host, st->url.port);
    memcpy(st->prefix, prefix, plen + 1);
    st->prefix_len = plen;
    st->connect_tv.tv_sec = cto / 1000;
    st->connect_tv.tv_usec = (cto % 1000) * 1000;
    st->command_tv.tv_sec = mto / 1000;
    st->command_tv.tv_usec = (mto % 1000) * 1000;
    return st;
}

mg_store_errkind_t mg_store_error_kind(const mg_store_t *st)
{
    return st->kind;
}

const char *mg_store_error(const mg_store_t *st)
{
    return st->err[0] ? st->err : "no error";
}

int mg_store_connected(const mg_store_t *st)
{
    return st->c != NULL;
}

int mg_store_ping(mg_store_t *st)
{
    static const char *argv[1] = { "PING" };
    static const size_t len[1] = { 4 };
    redisReply *r = NULL;
    int rc = -1;

    r = mg_store_command(st, "PING", 1, argv, len);
    if (r == NULL)
        goto end;
    if (mg_store_check_reply(st, "PING", r, REDIS_REPLY_STATUS) != 0)
        goto end;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* ---------- script calls ---------- */

int mg_store_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/*
 * Run a script: argv[0..2] are filled here ("EVALSHA" sha "0"), the
 * script's ARGV follow.  A NOSCRIPT answer (the server lost its cache:
 * SCRIPT FLUSH, or a failover) is retried once with EVAL, which also
 * caches the script again.  Returns the reply, or NULL with the error
 * set; an error reply is turned into NULL too.
 */
redisReply *mg_store_run_script(mg_store_t *st, int id, int argc, const char **argv,
                                size_t *len)
{
    redisReply *r;

    if (mg_store_ready(st) != 0)
        return NULL;
    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = st->sha[id];
    len[1] = 40;
    argv[2] = "0";
    len[2] = 1;
    r = redisCommandArgv(st->c, argc, argv, len);
    if (r != NULL && mg_store_is_noscript(r)) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        len[0] = 4;
        argv[1] = mg_store_scripts[id].src;
        len[1] = strlen(mg_store_scripts[id].src);
        r = redisCommandArgv(st->c, argc, argv, len);
    }
    if (r == NULL) {
        mg_store_ctxerr(st, mg_store_scripts[id].name, st->c, errno);
        mg_store_drop(st);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_replyerr(st, mg_store_scripts[id].name, r);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* How long a write waits for a replica to have it (WAIT). */
#define MG_STORE_WAIT_MS "100"

int mg_store_confirm(mg_store_t *st)
{
    static const char *argv[3] = { "WAIT", "1", MG_STORE_WAIT_MS };
    redisReply *r;
    char host[256];
    int port = 0, ok = 0;

    if (st->url.nsentinels == 0 || st->c == NULL)
        return 0;
    if (st->replicas > 0) {
        r = redisCommandArgv(st->c, 3, argv, NULL);
        ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1;
        if (r == NULL) {
            mg_store_ctxerr(st, "WAIT", st->c, errno);
            mg_store_drop(st);
            return -1;
        }
        freeReplyObject(r);
        if (ok)
            return 0;
    }
    /* No replica has it: fine if this is still the primary (one without a
     * replica, or a slow one), not if a failover moved it. */
    if (resolve_primary(st, host, sizeof(host), &port) == 0 && strcmp(host, st->primary) == 0
        && port == st->primary_port)
        return 0;
    mg_store_seterr(st, "%s: the primary changed under a write: it goes again to the new one",
                    st->where);
    st->kind = MG_STORE_ETIMEOUT;
    mg_store_drop(st);
    return -1;
}
