/*
 * The Redis store: connection handling and the script calls.
 *
 * One store owns one command connection (and, for subscribers, a second
 * one in mg_store_events.c).  The connection is opened by the first call;
 * a call opens it at most once; any I/O or protocol error frees it so the
 * next call starts clean (a restarted Redis, its script cache empty, then
 * works with no help).  Redis error replies leave the connection alone:
 * the protocol is still in step.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mg_lua.h"
#include "mg_store_int.h"

/* Pairs per record_failure call in a batch, and calls per round trip. */
#define MG_STORE_CHUNK 256
#define MG_STORE_PIPELINE 8
/* EVALSHA sha 0 + 8 policy arguments; then per group addr, k, and k
 * pairs (time, cutoff) */
#define MG_RECORD_HEAD 11

static const struct {
    const char *name;
    const char *src;
} scripts[MG_SCRIPT_COUNT] = {
    [MG_SCRIPT_RECORD] = { "record_failure", mg_lua_record_failure },
    [MG_SCRIPT_BAN] = { "ban", mg_lua_ban },
    [MG_SCRIPT_UNBAN] = { "unban", mg_lua_unban },
    [MG_SCRIPT_UNBAN_ALL] = { "unban_all", mg_lua_unban_all },
    [MG_SCRIPT_LIST] = { "list", mg_lua_list },
    [MG_SCRIPT_IS_BANNED] = { "is_banned", mg_lua_is_banned },
};

struct mg_store_batch {
    const char *argv[MG_RECORD_HEAD + 4 * MG_STORE_CHUNK];
    size_t len[MG_RECORD_HEAD + 4 * MG_STORE_CHUNK];
    char addr[MG_STORE_CHUNK][MG_ADDR_STRLEN];
    char k[MG_STORE_CHUNK][12];
    char now[MG_STORE_CHUNK][24];
    char cut[MG_STORE_CHUNK][24];
    size_t *order;          /* pair indexes grouped by address */
    unsigned char *ok;      /* per pair: confirmed recorded */
    size_t cap;
};

/* The policy as script arguments; lives while the argv that points into it. */
struct policy_args {
    char maxretry[16], findtime[24], bantime[24], factor[40], maxtime[24];
};

/* ---------- errors ---------- */

void mg_store_seterr(mg_store_t *st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
    /* Redis does not echo passwords, but a proxy or a future version might:
     * a message that quotes it is never kept. */
    if (st->url.password[0] != '\0' && strstr(st->err, st->url.password) != NULL)
        snprintf(st->err, sizeof(st->err), "%.180s: error text withheld (it quoted a secret)",
                 st->where);
}

void mg_store_ctxerr(mg_store_t *st, const char *what, const redisContext *c, int saved_errno)
{
    if (c == NULL) {
        mg_store_seterr(st, "%s: %s: out of memory", st->where, what);
    }
    else if (c->err == REDIS_ERR_IO
             && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK
                 || saved_errno == ETIMEDOUT || saved_errno == EINPROGRESS)) {
        mg_store_seterr(st, "%s: %s: timed out", st->where, what);
    }
    else if (c->err == REDIS_ERR_EOF) {
        mg_store_seterr(st, "%s: %s: connection closed by the server", st->where, what);
    }
    else {
        mg_store_seterr(st, "%s: %s: %s", st->where, what,
                        c->errstr[0] ? c->errstr : "I/O error");
    }
}

static void drop(mg_store_t *st)
{
    if (st->c != NULL) {
        redisFree(st->c);
        st->c = NULL;
    }
}

/* ---------- connecting ---------- */

static int check_reply(mg_store_t *st, const char *what, redisReply *r, int type)
{
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_seterr(st, "%s: %s: %s", st->where, what, r->str);
        return -1;
    }
    if (type != 0 && r->type != type) {
        mg_store_seterr(st, "%s: %s: unexpected reply type %d", st->where, what, r->type);
        return -1;
    }
    return 0;
}

redisContext *mg_store_connect(mg_store_t *st, int for_subscribe)
{
    const char *argv[4];
    size_t len[4];
    char dbtxt[16];
    redisContext *c;
    redisReply *r = NULL;
    int sent = 0, failed = 0, i;
    int sent_auth = 0, sent_select = 0, sent_scripts = 0;

    if (st->url.path[0] != '\0')
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
            argv[2] = scripts[i].src;
            len[2] = strlen(scripts[i].src);
            if (redisAppendCommandArgv(c, 3, argv, len) != REDIS_OK)
                goto io;
        }
        sent_scripts = 1;
    }
    sent = sent_auth + sent_select + (sent_scripts ? MG_SCRIPT_COUNT : 0);

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
        else {
            script = i - sent_auth - sent_select;
            what = "SCRIPT LOAD";
        }
        if (!failed) {
            if (check_reply(st, what, r, script >= 0 ? REDIS_REPLY_STRING : 0) != 0)
                failed = 1;
            else if (script >= 0) {
                if (r->len != 40) {
                    mg_store_seterr(st, "%s: SCRIPT LOAD %s: bad digest", st->where,
                                    scripts[script].name);
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
static int ready(mg_store_t *st)
{
    if (st->c != NULL) {
        struct pollfd p = { .fd = st->c->fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 0)
            drop(st);
    }
    if (st->c == NULL)
        st->c = mg_store_connect(st, 0);
    return st->c != NULL ? 0 : -1;
}

/* One plain command on the command connection: its reply (error replies
 * included, for the caller to judge), or NULL with the error set and a
 * broken connection dropped. */
static redisReply *command(mg_store_t *st, const char *what, int argc, const char **argv,
                           const size_t *len)
{
    redisReply *r;

    if (ready(st) != 0)
        return NULL;
    r = redisCommandArgv(st->c, argc, argv, len);
    if (r == NULL) {
        mg_store_ctxerr(st, what, st->c, errno);
        drop(st);
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
    if (st->url.path[0] != '\0')
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

void mg_store_free(mg_store_t *st)
{
    if (st == NULL)
        return;
    drop(st);
    if (st->sub != NULL)
        redisFree(st->sub);
    if (st->batch != NULL) {
        free(st->batch->order);
        free(st->batch->ok);
        free(st->batch);
    }
    memset(&st->url, 0, sizeof(st->url));
    __asm__ __volatile__("" : : "r"(&st->url) : "memory");
    free(st);
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

    r = command(st, "PING", 1, argv, len);
    if (r == NULL)
        goto end;
    if (check_reply(st, "PING", r, REDIS_REPLY_STATUS) != 0)
        goto end;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* ---------- script calls ---------- */

static int is_noscript(const redisReply *r)
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
static redisReply *run_script(mg_store_t *st, int id, int argc, const char **argv, size_t *len)
{
    redisReply *r;

    if (ready(st) != 0)
        return NULL;
    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = st->sha[id];
    len[1] = 40;
    argv[2] = "0";
    len[2] = 1;
    r = redisCommandArgv(st->c, argc, argv, len);
    if (r != NULL && is_noscript(r)) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        len[0] = 4;
        argv[1] = scripts[id].src;
        len[1] = strlen(scripts[id].src);
        r = redisCommandArgv(st->c, argc, argv, len);
    }
    if (r == NULL) {
        mg_store_ctxerr(st, scripts[id].name, st->c, errno);
        drop(st);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_seterr(st, "%s: %s: %s", st->where, scripts[id].name, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* An expiry as Redis prints a score: integer text or "inf". */
static int parse_expiry(const char *s, size_t n, int64_t *out)
{
    char buf[40], *end;
    double d;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "inf") == 0 || strcmp(buf, "+inf") == 0) {
        *out = MG_EXPIRY_NEVER;
        return 0;
    }
    errno = 0;
    d = strtod(buf, &end);
    if (errno != 0 || *end != '\0' || end == buf || isnan(d) || d < 0)
        return -1;
    if (d >= 9.2e18)
        *out = MG_EXPIRY_NEVER;
    else
        *out = (int64_t)floor(d);
    return 0;
}

/* Reply element as an expiry: integer or text. */
static int elem_expiry(const redisReply *e, int64_t *out)
{
    if (e->type == REDIS_REPLY_INTEGER) {
        if (e->integer < 0)
            return -1;
        *out = e->integer;
        return 0;
    }
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        return parse_expiry(e->str, e->len, out);
    return -1;
}

static void format_expiry(int64_t expiry, char *buf, size_t size, size_t *len)
{
    if (expiry == MG_EXPIRY_NEVER)
        *len = (size_t)snprintf(buf, size, "inf");
    else
        *len = (size_t)snprintf(buf, size, "%lld", (long long)expiry);
}

int mg_store_jail_word(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Jail names travel in event messages: one printable word, bounded so the
 * subscriber's jail field holds it. */
static int jail_ok(mg_store_t *st, const char *jail)
{
    size_t n = jail != NULL ? strlen(jail) : 0;

    if (n == 0 || n >= sizeof(((mg_store_event_t *)0)->jail)) {
        mg_store_seterr(st, "jail name must be 1-%zu characters",
                        sizeof(((mg_store_event_t *)0)->jail) - 1);
        return -1;
    }
    if (!mg_store_jail_word(jail)) {
        mg_store_seterr(st, "jail name must be printable ASCII without spaces");
        return -1;
    }
    return 0;
}

static int policy_ok(mg_store_t *st, const mg_policy_t *p)
{
    if (p->maxretry < 1 || p->findtime < 1 || p->bantime < 1 || p->maxtime < 1
        || p->findtime > MG_DURATION_MAX || p->bantime > MG_DURATION_MAX
        || p->maxtime > MG_DURATION_MAX || !(p->factor >= 1.0) || !isfinite(p->factor)) {
        mg_store_seterr(st, "invalid policy (maxretry, findtime, bantime, maxtime >= 1, "
                            "factor >= 1)");
        return -1;
    }
    return 0;
}

/* Fill argv[3..10] with the script head (prefix, jail, policy). */
static void policy_argv(const mg_store_t *st, const char *jail, const mg_policy_t *p,
                        struct policy_args *pa, const char **argv, size_t *len)
{
    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    argv[4] = jail;
    len[4] = strlen(jail);
    len[5] = (size_t)snprintf(pa->maxretry, sizeof(pa->maxretry), "%u", p->maxretry);
    argv[5] = pa->maxretry;
    len[6] = (size_t)snprintf(pa->findtime, sizeof(pa->findtime), "%lld", (long long)p->findtime);
    argv[6] = pa->findtime;
    len[7] = (size_t)snprintf(pa->bantime, sizeof(pa->bantime), "%lld", (long long)p->bantime);
    argv[7] = pa->bantime;
    argv[8] = p->increment ? "1" : "0";
    len[8] = 1;
    len[9] = (size_t)snprintf(pa->factor, sizeof(pa->factor), "%.17g", p->factor);
    argv[9] = pa->factor;
    len[10] = (size_t)snprintf(pa->maxtime, sizeof(pa->maxtime), "%lld", (long long)p->maxtime);
    argv[10] = pa->maxtime;
}

/* Results of n pairs from a record_failure reply; pair j's result goes to
 * res[ord[j]] (res[j] when ord is NULL). */
static int parse_record(mg_store_t *st, const redisReply *r, size_t n, const size_t *ord,
                        mg_record_result_t *res)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 * n) {
        mg_store_seterr(st, "%s: record_failure: unexpected reply", st->where);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *c = r->element[3 * i], *e = r->element[3 * i + 1],
                         *h = r->element[3 * i + 2];
        mg_record_result_t *out;
        int64_t expiry;

        if (c->type != REDIS_REPLY_INTEGER || h->type != REDIS_REPLY_INTEGER
            || c->integer < 1 || h->integer < 0 || elem_expiry(e, &expiry) != 0) {
            mg_store_seterr(st, "%s: record_failure: unexpected reply", st->where);
            return -1;
        }
        if (res == NULL)
            continue;
        out = &res[ord != NULL ? ord[i] : i];
        out->count = (unsigned)c->integer;
        out->banned = expiry != 0;
        out->expiry = expiry;
        out->bans = (unsigned)h->integer;
    }
    return 0;
}

int mg_store_record_failure(mg_store_t *st, const char *jail, const mg_addr_t *key,
                            int64_t now_ms, const mg_policy_t *pol,
                            mg_record_result_t *res)
{
    const char *argv[MG_RECORD_HEAD + 4];
    size_t len[MG_RECORD_HEAD + 4];
    struct policy_args pa;
    char addr[MG_ADDR_STRLEN], now[24], cut[24];
    redisReply *r = NULL;
    int rc = -1;

    if (jail_ok(st, jail) != 0 || policy_ok(st, pol) != 0)
        goto end;
    policy_argv(st, jail, pol, &pa, argv, len);
    len[MG_RECORD_HEAD] = mg_addr_format(key, addr, sizeof(addr));
    argv[MG_RECORD_HEAD] = addr;
    argv[MG_RECORD_HEAD + 1] = "1";
    len[MG_RECORD_HEAD + 1] = 1;
    len[MG_RECORD_HEAD + 2] = (size_t)snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    argv[MG_RECORD_HEAD + 2] = now;
    len[MG_RECORD_HEAD + 3] = (size_t)snprintf(cut, sizeof(cut), "%lld",
                                               (long long)(now_ms - pol->findtime * 1000));
    argv[MG_RECORD_HEAD + 3] = cut;
    r = run_script(st, MG_SCRIPT_RECORD, MG_RECORD_HEAD + 4, argv, len);
    if (r == NULL)
        goto end;
    rc = parse_record(st, r, 1, NULL, res);
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

static int by_address(const void *x, const void *y, void *arg)
{
    const mg_addr_t *keys = arg;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = memcmp(keys[i].a, keys[j].a, sizeof(keys[i].a));

    if (c == 0)
        c = (int)keys[i].plen - (int)keys[j].plen;
    if (c == 0)
        c = i < j ? -1 : i > j;   /* keeps each address's failures in order */
    return c;
}

/* Append one record_failure call for the pairs ord[0..n): consecutive
 * pairs of one address become one group (addr, k, times...). */
static int append_chunk(mg_store_t *st, int eval, const char *jail, const mg_policy_t *pol,
                        struct policy_args *pa, const size_t *ord, size_t n,
                        const mg_addr_t *keys, const int64_t *now_ms)
{
    struct mg_store_batch *b = st->batch;
    size_t a = MG_RECORD_HEAD, g = 0, kslot = 0, k = 0;

    policy_argv(st, jail, pol, pa, b->argv, b->len);
    b->argv[0] = eval ? "EVAL" : "EVALSHA";
    b->len[0] = strlen(b->argv[0]);
    b->argv[1] = eval ? scripts[MG_SCRIPT_RECORD].src : st->sha[MG_SCRIPT_RECORD];
    b->len[1] = strlen(b->argv[1]);
    b->argv[2] = "0";
    b->len[2] = 1;
    for (size_t i = 0; i < n; i++) {
        const mg_addr_t *key = &keys[ord[i]];
        if (i == 0 || !mg_addr_equal(key, &keys[ord[i - 1]])) {
            if (i > 0) {
                b->len[kslot] = (size_t)snprintf(b->k[g], sizeof(b->k[g]), "%zu", k);
                b->argv[kslot] = b->k[g];
                g++;
            }
            b->len[a] = mg_addr_format(key, b->addr[g], sizeof(b->addr[g]));
            b->argv[a++] = b->addr[g];
            kslot = a++;
            k = 0;
        }
        b->len[a] = (size_t)snprintf(b->now[i], sizeof(b->now[i]), "%lld",
                                     (long long)now_ms[ord[i]]);
        b->argv[a++] = b->now[i];
        b->len[a] = (size_t)snprintf(b->cut[i], sizeof(b->cut[i]), "%lld",
                                     (long long)(now_ms[ord[i]] - pol->findtime * 1000));
        b->argv[a++] = b->cut[i];
        k++;
    }
    b->len[kslot] = (size_t)snprintf(b->k[g], sizeof(b->k[g]), "%zu", k);
    b->argv[kslot] = b->k[g];
    /* hiredis copies the arguments into its output buffer here, so the
     * scratch can take the next chunk at once. */
    return redisAppendCommandArgv(st->c, (int)a, b->argv, b->len);
}

/* One chunk's reply (not NOSCRIPT): its results stored and its pairs
 * marked recorded, or -1 with the error set. */
static int take_chunk_reply(mg_store_t *st, const redisReply *r, const size_t *ord, size_t n,
                            mg_record_result_t *res)
{
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_seterr(st, "%s: record_failure: %s", st->where, r->str);
        return -1;
    }
    if (parse_record(st, r, n, ord, res) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        st->batch->ok[ord[i]] = 1;
    return 0;
}

/* Scratch for a batch of n: argument buffers once per store, the order
 * array grown to the largest batch seen. */
static int batch_scratch(mg_store_t *st, size_t n)
{
    if (st->batch == NULL && (st->batch = calloc(1, sizeof(*st->batch))) == NULL)
        return -1;
    if (st->batch->cap < n) {
        size_t *o = realloc(st->batch->order, n * sizeof(*o));
        unsigned char *ok;
        if (o == NULL)
            return -1;
        st->batch->order = o;
        ok = realloc(st->batch->ok, n);
        if (ok == NULL)
            return -1;
        st->batch->ok = ok;
        st->batch->cap = n;
    }
    return 0;
}

int mg_store_record_failures(mg_store_t *st, const char *jail, const mg_policy_t *pol,
                             size_t n, const mg_addr_t *keys, const int64_t *now_ms,
                             mg_record_result_t *res, size_t *done)
{
    struct policy_args pa;
    redisReply *r = NULL;
    size_t next = 0, confirmed = 0, *ord;
    int rc = -1, tracked = 0;

    if (res != NULL && n > 0)
        memset(res, 0, n * sizeof(*res));
    if (jail_ok(st, jail) != 0 || policy_ok(st, pol) != 0)
        goto end;
    if (n == 0) {
        rc = 0;
        goto end;
    }
    if (batch_scratch(st, n) != 0) {
        mg_store_seterr(st, "out of memory");
        goto end;
    }
    /* Failures of different addresses touch different keys, so grouping
     * by address changes no outcome and turns k failures of one address
     * into one window read and write. */
    ord = st->batch->order;
    for (size_t i = 0; i < n; i++)
        ord[i] = i;
    memset(st->batch->ok, 0, n);
    tracked = 1;
    qsort_r(ord, n, sizeof(*ord), by_address, (void *)keys);
    if (ready(st) != 0)
        goto end;

    while (next < n) {
        size_t start[MG_STORE_PIPELINE], count[MG_STORE_PIPELINE];
        int noscript[MG_STORE_PIPELINE];
        int k = 0, failed = 0;

        /* send up to MG_STORE_PIPELINE calls, then read their replies */
        while (k < MG_STORE_PIPELINE && next < n) {
            start[k] = next;
            count[k] = n - next < MG_STORE_CHUNK ? n - next : MG_STORE_CHUNK;
            if (append_chunk(st, 0, jail, pol, &pa, ord + next, count[k], keys, now_ms)
                != REDIS_OK) {
                mg_store_ctxerr(st, "record_failure", st->c, errno);
                drop(st);
                goto end;
            }
            next += count[k];
            k++;
        }
        for (int j = 0; j < k; j++) {
            void *vr = NULL;
            noscript[j] = 0;
            if (redisGetReply(st->c, &vr) != REDIS_OK || vr == NULL) {
                mg_store_ctxerr(st, "record_failure", st->c, errno);
                drop(st);
                goto end;
            }
            r = vr;
            /* every reply is read and used: the calls after a refused one
             * ran all the same */
            if (is_noscript(r))
                noscript[j] = 1;
            else if (take_chunk_reply(st, r, ord + start[j], count[j], res) != 0)
                failed = 1;
            freeReplyObject(r);
            r = NULL;
        }
        /* A call refused with NOSCRIPT did not run: send it again with
         * EVAL (which caches the script for the rest of the batch). */
        for (int j = 0; j < k && !failed; j++) {
            void *vr = NULL;
            if (!noscript[j])
                continue;
            if (append_chunk(st, 1, jail, pol, &pa, ord + start[j], count[j], keys, now_ms)
                    != REDIS_OK
                || redisGetReply(st->c, &vr) != REDIS_OK || vr == NULL) {
                mg_store_ctxerr(st, "record_failure", st->c, errno);
                drop(st);
                goto end;
            }
            r = vr;
            if (take_chunk_reply(st, r, ord + start[j], count[j], res) != 0)
                failed = 1;
            freeReplyObject(r);
            r = NULL;
        }
        if (failed)
            goto end;
    }
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    /* the leading pairs, in the caller's order, that are known recorded;
     * the results of the others are cleared (count 0 = not confirmed) */
    if (tracked) {
        while (confirmed < n && st->batch->ok[confirmed])
            confirmed++;
        if (rc != 0 && res != NULL)
            for (size_t i = 0; i < n; i++)
                if (!st->batch->ok[i])
                    memset(&res[i], 0, sizeof(res[i]));
    }
    if (done != NULL)
        *done = confirmed;
    return rc;
}

/* Fill argv[3..4] with the prefix and the address, as the scripts that
 * take one address expect them. */
static void key_argv(const mg_store_t *st, const mg_addr_t *key, char addr[MG_ADDR_STRLEN],
                     const char **argv, size_t *len)
{
    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    len[4] = mg_addr_format(key, addr, MG_ADDR_STRLEN);
    argv[4] = addr;
}

/* ---------- bans ---------- */

int mg_store_ban(mg_store_t *st, const mg_addr_t *key, int64_t expiry, const char *jail)
{
    const char *argv[7];
    size_t len[7];
    char addr[MG_ADDR_STRLEN], exp[24];
    redisReply *r = NULL;
    int rc = -1;

    if (jail_ok(st, jail) != 0)
        goto end;
    if (expiry <= 0) {
        mg_store_seterr(st, "ban: expiry must be a positive Unix time");
        goto end;
    }
    key_argv(st, key, addr, argv, len);
    format_expiry(expiry, exp, sizeof(exp), &len[5]);
    argv[5] = exp;
    argv[6] = jail;
    len[6] = strlen(jail);
    r = run_script(st, MG_SCRIPT_BAN, 7, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_STRING) {
        mg_store_seterr(st, "%s: ban: unexpected reply", st->where);
        goto end;
    }
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_unban(mg_store_t *st, const mg_addr_t *key, int *removed)
{
    const char *argv[5];
    size_t len[5];
    char addr[MG_ADDR_STRLEN];
    redisReply *r = NULL;
    int rc = -1;

    key_argv(st, key, addr, argv, len);
    r = run_script(st, MG_SCRIPT_UNBAN, 5, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_INTEGER) {
        mg_store_seterr(st, "%s: unban: unexpected reply", st->where);
        goto end;
    }
    if (removed != NULL)
        *removed = r->integer > 0;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_unban_all(mg_store_t *st, unsigned *count)
{
    const char *argv[4];
    size_t len[4];
    redisReply *r = NULL;
    int rc = -1;

    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    r = run_script(st, MG_SCRIPT_UNBAN_ALL, 4, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
        mg_store_seterr(st, "%s: unban_all: unexpected reply", st->where);
        goto end;
    }
    if (count != NULL)
        *count = (unsigned)r->integer;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_list(mg_store_t *st, int64_t now, mg_store_ban_fn fn, void *baton,
                  unsigned *skipped)
{
    const char *argv[5];
    size_t len[5];
    char nowtxt[24];
    redisReply *r = NULL;
    unsigned bad = 0;
    int rc = -1;

    if (skipped != NULL)
        *skipped = 0;
    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    len[4] = (size_t)snprintf(nowtxt, sizeof(nowtxt), "%lld", (long long)now);
    argv[4] = nowtxt;
    r = run_script(st, MG_SCRIPT_LIST, 5, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        mg_store_seterr(st, "%s: list: unexpected reply", st->where);
        goto end;
    }
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *m = r->element[i], *s = r->element[i + 1];
        mg_addr_t key;
        int64_t expiry;
        const char *why;

        /* A member a person or another tool wrote by hand may be anything:
         * only what parses back into an address is handed on. */
        if (m->type != REDIS_REPLY_STRING || strlen(m->str) != m->len
            || mg_cidr_parse(m->str, &key, &why) != 0 || elem_expiry(s, &expiry) != 0) {
            bad++;
            continue;
        }
        if (fn != NULL && fn(baton, &key, expiry) != 0) {
            mg_store_seterr(st, "list: stopped by the caller");
            goto end;
        }
    }
    rc = 0;
end:
    if (skipped != NULL)
        *skipped = bad;
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_is_banned(mg_store_t *st, const mg_addr_t *key, int64_t now,
                       int *banned, int64_t *expiry)
{
    const char *argv[6];
    size_t len[6];
    char addr[MG_ADDR_STRLEN], nowtxt[24];
    redisReply *r = NULL;
    int64_t e = 0;
    int rc = -1;

    key_argv(st, key, addr, argv, len);
    len[5] = (size_t)snprintf(nowtxt, sizeof(nowtxt), "%lld", (long long)now);
    argv[5] = nowtxt;
    r = run_script(st, MG_SCRIPT_IS_BANNED, 6, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_NIL && elem_expiry(r, &e) != 0) {
        mg_store_seterr(st, "%s: is_banned: unexpected reply", st->where);
        goto end;
    }
    if (banned != NULL)
        *banned = r->type != REDIS_REPLY_NIL;
    if (expiry != NULL)
        *expiry = e;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_history(mg_store_t *st, const mg_addr_t *key, unsigned *count)
{
    const char *argv[3];
    size_t len[3];
    char name[MG_STORE_PREFIX_MAX + 16 + MG_ADDR_STRLEN], addr[MG_ADDR_STRLEN];
    redisReply *r = NULL;
    unsigned long v = 0;
    int rc = -1;

    mg_addr_format(key, addr, sizeof(addr));
    argv[0] = "HGET";
    len[0] = 4;
    len[1] = (size_t)snprintf(name, sizeof(name), "%shistory:%s", st->prefix, addr);
    argv[1] = name;
    argv[2] = "count";
    len[2] = 5;
    r = command(st, "HGET history", 3, argv, len);
    if (r == NULL)
        goto end;
    if (check_reply(st, "HGET history", r, 0) != 0)
        goto end;
    if (r->type == REDIS_REPLY_STRING) {
        char *e;
        errno = 0;
        v = strtoul(r->str, &e, 10);
        if (errno != 0 || *e != '\0' || e == r->str || v > 0xffffffffUL) {
            mg_store_seterr(st, "%s: history count is not a number", st->where);
            goto end;
        }
    }
    else if (r->type != REDIS_REPLY_NIL) {
        mg_store_seterr(st, "%s: HGET history: unexpected reply", st->where);
        goto end;
    }
    if (count != NULL)
        *count = (unsigned)v;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}
