/*
 * What the store's single calls (mg_store.c) and its pipelined batch
 * (mg_store_batch.c) share: argument checks, the policy's script
 * arguments, and the parsing of expiries, members and record_failure
 * replies.  Depends on the connection file for error reporting only.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_store_int.h"

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
int mg_store_elem_expiry(const redisReply *e, int64_t *out)
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

int mg_store_member(const redisReply *m, const redisReply *score, mg_addr_t *key,
                    int64_t *expiry)
{
    const char *why;

    /* A member a person or another tool wrote by hand may be anything:
     * only what parses back into an address is handed on. */
    if (m->type != REDIS_REPLY_STRING || strlen(m->str) != m->len
        || mg_cidr_parse(m->str, key, &why) != 0 || mg_store_elem_expiry(score, expiry) != 0)
        return -1;
    return 0;
}

void mg_store_format_expiry(int64_t expiry, char *buf, size_t size, size_t *len)
{
    if (expiry == MG_EXPIRY_NEVER)
        *len = (size_t)snprintf(buf, size, "inf");
    else
        *len = (size_t)snprintf(buf, size, "%lld", (long long)expiry);
}

int mg_store_id_word(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Jail names travel in keys and event messages: the configurations'
 * rule, checked again here for callers that did not read a file. */
int mg_store_jail_ok(mg_store_t *st, const char *jail)
{
    const char *why = NULL;

    if (jail == NULL || mg_rule_jail_name(jail, &why) != 0) {
        mg_store_seterr(st, "jail name: %s", why != NULL ? why : "missing");
        return -1;
    }
    return 0;
}

int mg_store_policy_ok(mg_store_t *st, const mg_policy_t *p)
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
void mg_store_policy_argv(const mg_store_t *st, const char *jail, const mg_policy_t *p,
                          mg_store_policy_args_t *pa, const char **argv, size_t *len)
{
    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    argv[4] = jail;
    len[4] = strlen(jail);
    len[5] = (size_t)snprintf(pa->maxretry, sizeof(pa->maxretry), "%u", p->maxretry);
    argv[5] = pa->maxretry;
    len[6] =
        (size_t)snprintf(pa->findtime, sizeof(pa->findtime), "%lld", (long long)p->findtime);
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
int mg_store_parse_record(mg_store_t *st, const redisReply *r, size_t n, const size_t *ord,
                          mg_record_result_t *res)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 * n) {
        mg_store_seterr(st, "%s: record_failure: unexpected reply", st->where);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *c = r->element[4 * i], *e = r->element[4 * i + 1],
                         *h = r->element[4 * i + 2], *d = r->element[4 * i + 3];
        mg_record_result_t *out;
        int64_t expiry;

        if (c->type != REDIS_REPLY_INTEGER || h->type != REDIS_REPLY_INTEGER
            || d->type != REDIS_REPLY_INTEGER || c->integer < (d->integer ? 0 : 1)
            || h->integer < 0 || mg_store_elem_expiry(e, &expiry) != 0) {
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
        out->duplicate = d->integer != 0;
    }
    return 0;
}

int mg_store_id_ok(mg_store_t *st, const char *id)
{
    size_t n;

    if (id == NULL)
        return 0;
    n = strlen(id);
    if (n >= MG_FAILURE_IDLEN || (n > 0 && !mg_store_id_word(id))) {
        mg_store_seterr(st,
                        "failure identity must be at most %d printable characters "
                        "without spaces",
                        MG_FAILURE_IDLEN - 1);
        return -1;
    }
    return 0;
}
