/*
 * The subscriber side of the store: a second connection in SUBSCRIBE mode
 * on P events, and the strict parser for its messages.
 *
 * Waiting is done with poll() on the socket, not with a socket timeout:
 * hiredis 0.14 reports a receive timeout as REDIS_ERR_IO (errno EAGAIN)
 * and then refuses every later read on that context, so a timeout would
 * force a reconnect and lose whatever was published in between.  Reading
 * only what poll() says is there keeps the subscription alive across
 * timeouts; the command timeout still bounds a reply that stalls halfway.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mg_store_int.h"

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop_sub(mg_store_t *st)
{
    if (st->sub != NULL) {
        redisFree(st->sub);
        st->sub = NULL;
    }
}

int mg_store_subscribe(mg_store_t *st)
{
    const char *argv[2];
    size_t len[2];
    char channel[MG_STORE_PREFIX_MAX + 8];
    redisContext *c;
    redisReply *r = NULL;
    int rc = -1;

    drop_sub(st);
    c = mg_store_connect(st, 1);
    if (c == NULL)
        goto end;
    argv[0] = "SUBSCRIBE";
    len[0] = 9;
    len[1] = (size_t)snprintf(channel, sizeof(channel), "%sevents", st->prefix);
    argv[1] = channel;
    r = redisCommandArgv(c, 2, argv, len);
    if (r == NULL) {
        mg_store_ctxerr(st, "SUBSCRIBE", c, errno);
        goto end;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_seterr(st, "%s: SUBSCRIBE: %s", st->where, r->str);
        goto end;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[0]->type != REDIS_REPLY_STRING
        || strcmp(r->element[0]->str, "subscribe") != 0) {
        mg_store_seterr(st, "%s: SUBSCRIBE: unexpected reply", st->where);
        goto end;
    }
    st->sub = c;
    c = NULL;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return rc;
}

/* 1 and *ev for a well-formed "message" on our channel, 0 for anything
 * else the connection may carry (confirmations, malformed payloads). */
static int take_message(mg_store_t *st, const redisReply *r, mg_store_event_t *ev)
{
    const redisReply *p;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[0]->type != REDIS_REPLY_STRING
        || strcmp(r->element[0]->str, "message") != 0)
        return 0;
    p = r->element[2];
    if (p->type != REDIS_REPLY_STRING || mg_store_parse_event(p->str, p->len, ev) != 0) {
        st->bad_events++;
        return 0;
    }
    return 1;
}

int mg_store_next_event(mg_store_t *st, int timeout_ms, mg_store_event_t *ev)
{
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    redisReply *r = NULL;
    int polled = 0, rc = -1;

    if (st->sub == NULL) {
        mg_store_seterr(st, "not subscribed");
        goto end;
    }
    for (;;) {
        void *vr = NULL;
        struct pollfd p;
        int64_t left;
        int n;

        /* whole replies already read come first */
        if (redisGetReplyFromReader(st->sub, &vr) != REDIS_OK) {
            mg_store_ctxerr(st, "events", st->sub, errno);
            drop_sub(st);
            goto end;
        }
        if (vr != NULL) {
            r = vr;
            if (take_message(st, r, ev)) {
                rc = 1;
                goto end;
            }
            freeReplyObject(r);
            r = NULL;
            continue;
        }
        left = deadline - mono_ms();
        if (left <= 0) {
            if (polled) {
                rc = 0;
                goto end;
            }
            left = 0;
        }
        p.fd = st->sub->fd;
        p.events = POLLIN;
        p.revents = 0;
        n = poll(&p, 1, (int)left);
        polled = 1;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mg_store_seterr(st, "%s: events: poll: %s", st->where, strerror(errno));
            drop_sub(st);
            goto end;
        }
        if (n == 0) {
            rc = 0;
            goto end;
        }
        /* one read(): poll said there is data (or EOF), so it cannot block */
        if (redisBufferRead(st->sub) != REDIS_OK) {
            mg_store_ctxerr(st, "events", st->sub, errno);
            drop_sub(st);
            goto end;
        }
    }
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

unsigned mg_store_bad_events(const mg_store_t *st)
{
    return st->bad_events;
}

/* Copy one space-free token of s[0..n) starting at *pos into buf; the
 * token must end at a single space or at the end. */
static int token(const char *s, size_t n, size_t *pos, char *buf, size_t size)
{
    size_t i = *pos, k = 0;

    while (i < n && s[i] != ' ') {
        if (k + 1 >= size)
            return -1;
        buf[k++] = s[i++];
    }
    if (k == 0)
        return -1;
    buf[k] = '\0';
    if (i < n)
        i++; /* the separator */
    if (i == n && s[n - 1] == ' ')
        return -1; /* trailing space */
    *pos = i;
    return 0;
}

static int parse_expiry_text(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t n = strlen(s);

    if (strcmp(s, "inf") == 0 || strcmp(s, "+inf") == 0) {
        *out = MG_EXPIRY_NEVER;
        return 0;
    }
    if (n == 0 || n > 18 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_event(const char *msg, size_t len, mg_store_event_t *ev)
{
    char addr[MG_ADDR_STRLEN], exp[24];
    size_t pos;
    const char *why;
    int is_ban;

    if (msg == NULL || memchr(msg, '\0', len) != NULL)
        return -1;
    if (len > 4 && memcmp(msg, "ban ", 4) == 0) {
        is_ban = 1;
        pos = 4;
    }
    else if (len > 6 && memcmp(msg, "unban ", 6) == 0) {
        is_ban = 0;
        pos = 6;
    }
    else {
        return -1;
    }
    if (token(msg, len, &pos, addr, sizeof(addr)) != 0)
        return -1;
    if (mg_cidr_parse(addr, &ev->key, &why) != 0)
        return -1;
    if (!is_ban)
        return pos == len ? 0 : -1;
    if (pos == len || token(msg, len, &pos, exp, sizeof(exp)) != 0
        || parse_expiry_text(exp, &ev->expiry) != 0)
        return -1;
    if (pos == len || token(msg, len, &pos, ev->jail, sizeof(ev->jail)) != 0 || pos != len
        || mg_rule_jail_name(ev->jail, &why) != 0)
        return -1;
    ev->is_ban = 1;
    return 0;
}

int mg_store_parse_event(const char *msg, size_t len, mg_store_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    if (parse_event(msg, len, ev) != 0) {
        memset(ev, 0, sizeof(*ev));
        return -1;
    }
    return 0;
}
