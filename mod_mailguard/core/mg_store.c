/*
 * The Redis store: one script call per operation (record a failure, ban,
 * unban, look up), and the store's lifetime.  The connection and the
 * script runner are in mg_store_conn.c, the arguments and replies the
 * single and batch calls share in mg_store_args.c, the pipelined batch of
 * failures in mg_store_batch.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_store_int.h"

/* Here, not with mg_store_new() in mg_store_conn.c: the connection file
 * knows nothing of the batch scratch it would have to free. */
void mg_store_free(mg_store_t *st)
{
    if (st == NULL)
        return;
    mg_store_drop(st);
    if (st->sub != NULL)
        redisFree(st->sub);
    mg_store_batch_free(st);
    memset(&st->url, 0, sizeof(st->url));
    /* the URL holds the password: keep the compiler from dropping the wipe */
    __asm__ __volatile__("" : : "r"(&st->url) : "memory");
    free(st);
}

int mg_store_record_failure(mg_store_t *st, const char *jail, const mg_addr_t *key,
                            int64_t now_ms, const char *id, const mg_policy_t *pol,
                            mg_record_result_t *res)
{
    const char *argv[MG_RECORD_HEAD + 5];
    size_t len[MG_RECORD_HEAD + 5];
    mg_store_policy_args_t pa;
    char addr[MG_ADDR_STRLEN], now[24], cut[24];
    redisReply *r = NULL;
    int rc = -1;

    if (mg_store_jail_ok(st, jail) != 0 || mg_store_policy_ok(st, pol) != 0
        || mg_store_id_ok(st, id) != 0)
        goto end;
    mg_store_policy_argv(st, jail, pol, &pa, argv, len);
    len[MG_RECORD_HEAD] = mg_addr_format(key, addr, sizeof(addr));
    argv[MG_RECORD_HEAD] = addr;
    argv[MG_RECORD_HEAD + 1] = "1";
    len[MG_RECORD_HEAD + 1] = 1;
    argv[MG_RECORD_HEAD + 2] = id != NULL ? id : "";
    len[MG_RECORD_HEAD + 2] = strlen(argv[MG_RECORD_HEAD + 2]);
    len[MG_RECORD_HEAD + 3] = (size_t)snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    argv[MG_RECORD_HEAD + 3] = now;
    len[MG_RECORD_HEAD + 4] =
        (size_t)snprintf(cut, sizeof(cut), "%lld", (long long)(now_ms - pol->findtime * 1000));
    argv[MG_RECORD_HEAD + 4] = cut;
    r = mg_store_run_script(st, MG_SCRIPT_RECORD, MG_RECORD_HEAD + 5, argv, len);
    if (r == NULL)
        goto end;
    rc = mg_store_parse_record(st, r, 1, NULL, res);
    if (rc == 0 && mg_store_confirm(st) != 0)
        rc = -1;
end:
    if (r != NULL)
        freeReplyObject(r);
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
    return mg_store_ban_many(st, jail, 1, key, &expiry, NULL);
}

/* Unban the n member texts in one script call; *removed. */
static int unban_members(mg_store_t *st, int n, const char **members, const size_t *mlen,
                         unsigned *removed)
{
    const char *argv[4 + MG_STORE_UNBAN_CHUNK];
    size_t len[4 + MG_STORE_UNBAN_CHUNK];
    redisReply *r = NULL;
    int rc = -1;

    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    for (int i = 0; i < n; i++) {
        argv[4 + i] = members[i];
        len[4 + i] = mlen[i];
    }
    r = mg_store_run_script(st, MG_SCRIPT_UNBAN, 4 + n, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
        mg_store_seterr(st, "%s: unban: unexpected reply", st->where);
        goto end;
    }
    *removed = (unsigned)r->integer;
    rc = mg_store_confirm(st);
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_unban(mg_store_t *st, const mg_addr_t *key, int *removed)
{
    char addr[MG_ADDR_STRLEN];
    const char *m = addr;
    size_t mlen = mg_addr_format(key, addr, sizeof(addr));
    unsigned n = 0;

    if (unban_members(st, 1, &m, &mlen, &n) != 0)
        return -1;
    if (removed != NULL)
        *removed = n > 0;
    return 0;
}

/*
 * Every member goes, MG_STORE_UNBAN_CHUNK per script call (each announced
 * like a single unban), so no call holds Redis for long however large the
 * set.  Members are removed whatever they are, hand-written garbage too.
 * The rounds are bounded by the size at the start: a ban added meanwhile
 * by someone else may survive, as it would a moment later anyway.
 */
int mg_store_unban_all(mg_store_t *st, unsigned *count)
{
    const char *argv[4];
    size_t len[4];
    char key[MG_STORE_PREFIX_MAX + 8], last[16];
    redisReply *r = NULL;
    unsigned total = 0;
    long long rounds;
    int rc = -1;

    argv[0] = "ZCARD";
    len[0] = 5;
    len[1] = (size_t)snprintf(key, sizeof(key), "%sbans", st->prefix);
    argv[1] = key;
    r = mg_store_command(st, "ZCARD", 2, argv, len);
    if (r == NULL || mg_store_check_reply(st, "ZCARD", r, REDIS_REPLY_INTEGER) != 0)
        goto end;
    rounds = r->integer / MG_STORE_UNBAN_CHUNK + 2;
    freeReplyObject(r);
    r = NULL;
    argv[0] = "ZRANGE";
    len[0] = 6;
    argv[2] = "0";
    len[2] = 1;
    len[3] = (size_t)snprintf(last, sizeof(last), "%d", MG_STORE_UNBAN_CHUNK - 1);
    argv[3] = last;
    while (rounds-- > 0) {
        const char *members[MG_STORE_UNBAN_CHUNK];
        size_t mlen[MG_STORE_UNBAN_CHUNK];
        unsigned removed = 0;
        int n;

        r = mg_store_command(st, "ZRANGE", 4, argv, len);
        if (r == NULL || mg_store_check_reply(st, "ZRANGE", r, REDIS_REPLY_ARRAY) != 0)
            goto end;
        if (r->elements == 0)
            break;
        n = (int)(r->elements < MG_STORE_UNBAN_CHUNK ? r->elements : MG_STORE_UNBAN_CHUNK);
        for (int i = 0; i < n; i++) {
            members[i] = r->element[i]->str;
            mlen[i] = r->element[i]->len;
        }
        if (unban_members(st, n, members, mlen, &removed) != 0)
            goto end;
        total += removed;
        freeReplyObject(r);
        r = NULL;
    }
    rc = 0;
end:
    if (count != NULL)
        *count = total;
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_is_banned(mg_store_t *st, const mg_addr_t *key, int64_t now, int *banned,
                       int64_t *expiry)
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
    r = mg_store_run_script(st, MG_SCRIPT_IS_BANNED, 6, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_NIL && mg_store_elem_expiry(r, &e) != 0) {
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
    r = mg_store_command(st, "HGET history", 3, argv, len);
    if (r == NULL)
        goto end;
    if (mg_store_check_reply(st, "HGET history", r, 0) != 0)
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
