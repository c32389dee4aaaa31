/*
 * The change log and the paged reads a follower needs; see mg_store_log.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_store_int.h"
#include "mg_store_log.h"

/* An unsigned decimal of at most 19 digits from a reply: the numbers in
 * the log fit easily; anything else is refused. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int reply_u64(const redisReply *e, uint64_t *out)
{
    if (e->type == REDIS_REPLY_INTEGER && e->integer >= 0) {
        *out = (uint64_t)e->integer;
        return 0;
    }
    if (e->type == REDIS_REPLY_STRING)
        return parse_u64(e->str, e->len, out);
    return -1;
}

/* The stream's key or the ban set's, into buf. */
static size_t key_name(const mg_store_t *st, const char *what, char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "%s%s", st->prefix, what);
}

int mg_store_check(mg_store_t *st, int64_t now, mg_store_logstate_t *out)
{
    const char *argv[5];
    size_t len[5];
    char nowtxt[24];
    redisReply *r = NULL;
    uint64_t v[6];
    int rc = -1;

    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    len[4] = (size_t)snprintf(nowtxt, sizeof(nowtxt), "%lld", (long long)now);
    argv[4] = nowtxt;
    r = mg_store_run_script(st, MG_SCRIPT_CHECK, 5, argv, len);
    if (r == NULL)
        goto end;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6
        || r->element[1]->type != REDIS_REPLY_STRING || r->element[1]->len >= MG_STORE_IDLEN
        || r->element[5]->type != REDIS_REPLY_INTEGER)
        goto bad;
    for (int i = 0; i < 5; i++)
        if (i != 1 && reply_u64(r->element[i], &v[i]) != 0)
            goto bad;
    memset(out, 0, sizeof(*out));
    out->logseq = v[0];
    memcpy(out->last_id, r->element[1]->str, r->element[1]->len);
    out->last_seq = v[2];
    out->live = v[3];
    out->zcard = v[4];
    out->card = r->element[5]->integer < 0 ? -1 : (int64_t)r->element[5]->integer;
    rc = 0;
    goto end;
bad:
    mg_store_seterr(st, "%s: check: unexpected reply", st->where);
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* A script taking the prefix and one more argument, answering an integer. */
static int int_script(mg_store_t *st, int id, const char *what, int argc, const char **argv,
                      size_t *len, long long *value)
{
    redisReply *r;
    int rc = -1;

    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    r = mg_store_run_script(st, id, argc, argv, len);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        mg_store_seterr(st, "%s: %s: unexpected reply", st->where, what);
    else {
        *value = r->integer;
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

int mg_store_resync(mg_store_t *st, int force, int *announced)
{
    const char *argv[5];
    size_t len[5];
    long long v = 0;

    argv[4] = force ? "1" : "0";
    len[4] = 1;
    if (int_script(st, MG_SCRIPT_RESYNC, "resync", 5, argv, len, &v) != 0)
        return -1;
    if (announced != NULL)
        *announced = v > 0;
    return 0;
}

int mg_store_prune(mg_store_t *st, int64_t now, unsigned most, unsigned *removed)
{
    const char *argv[6];
    size_t len[6];
    char nowtxt[24], mosttxt[16];
    long long v = 0;

    len[4] = (size_t)snprintf(nowtxt, sizeof(nowtxt), "%lld", (long long)now);
    argv[4] = nowtxt;
    len[5] = (size_t)snprintf(mosttxt, sizeof(mosttxt), "%u", most > 0 ? most : 1);
    argv[5] = mosttxt;
    if (int_script(st, MG_SCRIPT_PRUNE, "prune", 6, argv, len, &v) != 0)
        return -1;
    if (removed != NULL)
        *removed = (unsigned)v;
    return 0;
}

/* Hand the member/score pairs of arr to fn (live ones only when now > 0).
 * -1 when fn stopped. */
static int take_pairs(mg_store_t *st, const redisReply *arr, int64_t now, mg_store_ban_fn fn,
                      void *baton, unsigned *skipped)
{
    for (size_t i = 0; i + 1 < arr->elements; i += 2) {
        mg_addr_t key;
        int64_t expiry;

        if (mg_store_member(arr->element[i], arr->element[i + 1], &key, &expiry) != 0) {
            if (skipped != NULL)
                (*skipped)++;
            continue;
        }
        if (expiry <= now)
            continue;
        if (fn != NULL && fn(baton, &key, expiry) != 0) {
            mg_store_seterr(st, "stopped by the caller");
            return -1;
        }
    }
    return 0;
}

int mg_store_scan(mg_store_t *st, uint64_t *cursor, unsigned count, int64_t now,
                  mg_store_ban_fn fn, void *baton, unsigned *skipped)
{
    const char *argv[5];
    size_t len[5];
    char key[MG_STORE_PREFIX_MAX + 8], cur[24], cnt[16];
    redisReply *r = NULL;
    uint64_t next;
    int rc = -1;

    argv[0] = "ZSCAN";
    len[0] = 5;
    len[1] = key_name(st, "bans", key, sizeof(key));
    argv[1] = key;
    len[2] = (size_t)snprintf(cur, sizeof(cur), "%llu", (unsigned long long)*cursor);
    argv[2] = cur;
    argv[3] = "COUNT";
    len[3] = 5;
    len[4] = (size_t)snprintf(cnt, sizeof(cnt), "%u", count > 0 ? count : 1);
    argv[4] = cnt;
    r = mg_store_command(st, "ZSCAN", 5, argv, len);
    if (r == NULL || mg_store_check_reply(st, "ZSCAN", r, REDIS_REPLY_ARRAY) != 0)
        goto end;
    if (r->elements != 2 || reply_u64(r->element[0], &next) != 0
        || r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0) {
        mg_store_seterr(st, "%s: ZSCAN: unexpected reply", st->where);
        goto end;
    }
    if (take_pairs(st, r->element[1], now, fn, baton, skipped) != 0)
        goto end;
    *cursor = next;
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int mg_store_range(mg_store_t *st, mg_store_range_pos_t *pos, unsigned count,
                   mg_store_ban_fn fn, void *baton, unsigned *got, unsigned *skipped)
{
    const char *argv[9];
    size_t len[9];
    char key[MG_STORE_PREFIX_MAX + 8], lo[24], off[16], cnt[16];
    redisReply *r = NULL;
    int rc = -1;

    *got = 0;
    argv[0] = "ZRANGE";
    len[0] = 6;
    len[1] = key_name(st, "bans", key, sizeof(key));
    argv[1] = key;
    mg_store_format_expiry(pos->from, lo, sizeof(lo), &len[2]);
    argv[2] = lo;
    argv[3] = "+inf";
    len[3] = 4;
    argv[4] = "BYSCORE";
    len[4] = 7;
    argv[5] = "LIMIT";
    len[5] = 5;
    len[6] = (size_t)snprintf(off, sizeof(off), "%u", pos->skip);
    argv[6] = off;
    len[7] = (size_t)snprintf(cnt, sizeof(cnt), "%u", count > 0 ? count : 1);
    argv[7] = cnt;
    argv[8] = "WITHSCORES";
    len[8] = 10;
    r = mg_store_command(st, "ZRANGE", 9, argv, len);
    if (r == NULL || mg_store_check_reply(st, "ZRANGE", r, REDIS_REPLY_ARRAY) != 0)
        goto end;
    if (r->elements % 2 != 0) {
        mg_store_seterr(st, "%s: ZRANGE: unexpected reply", st->where);
        goto end;
    }
    *got = (unsigned)(r->elements / 2);
    if (take_pairs(st, r, 0, fn, baton, skipped) != 0)
        goto end;
    for (size_t i = 1; i < r->elements; i += 2) {
        int64_t e;
        if (mg_store_elem_expiry(r->element[i], &e) != 0)
            continue; /* Redis prints every score; nothing to page by */
        if (e == pos->from) {
            pos->skip++;
        }
        else {
            pos->from = e;
            pos->skip = 1;
        }
    }
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

void mg_store_parse_change(const char *id, const char *seq, size_t seqlen, const char *text,
                           size_t textlen, mg_store_change_t *ch)
{
    size_t idlen = id != NULL ? strlen(id) : 0;

    memset(ch, 0, sizeof(*ch));
    ch->kind = MG_CHANGE_BAD;
    if (idlen >= MG_STORE_IDLEN)
        idlen = 0; /* no stream id is that long: treat as missing */
    if (idlen > 0)
        memcpy(ch->id, id, idlen);
    if (seq == NULL || parse_u64(seq, seqlen, &ch->seq) != 0)
        ch->seq = 0;
    if (text == NULL)
        return;
    if (textlen == 6 && memcmp(text, "resync", 6) == 0)
        ch->kind = MG_CHANGE_RESYNC;
    else if (mg_store_parse_event(text, textlen, &ch->ev) == 0)
        ch->kind = ch->ev.is_ban ? MG_CHANGE_BAN : MG_CHANGE_UNBAN;
}

/* One stream entry [id, [field, value, ...]] as a change. */
static int take_entry(const redisReply *e, mg_store_change_t *ch)
{
    const redisReply *f;
    const char *seq = NULL, *text = NULL;
    size_t seqlen = 0, textlen = 0;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
        || e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= MG_STORE_IDLEN)
        return -1;
    f = e->element[1];
    if (f->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
                continue;
            if (k->str[0] == 's') {
                seq = v->str;
                seqlen = v->len;
            }
            else if (k->str[0] == 'e') {
                text = v->str;
                textlen = v->len;
            }
        }
    }
    mg_store_parse_change(e->element[0]->str, seq, seqlen, text, textlen, ch);
    return 0;
}

int mg_store_log_read(mg_store_t *st, const char *after_id, int block_ms, unsigned count,
                      mg_store_change_fn fn, void *baton, unsigned *n)
{
    const char *argv[8];
    size_t len[8];
    char key[MG_STORE_PREFIX_MAX + 8], cnt[16], blk[16];
    redisReply *r = NULL;
    const redisReply *entries;
    int a = 0, rc = -1;

    *n = 0;
    argv[a] = "XREAD";
    len[a++] = 5;
    if (block_ms > 0) {
        argv[a] = "BLOCK";
        len[a++] = 5;
        len[a] = (size_t)snprintf(blk, sizeof(blk), "%d", block_ms);
        argv[a++] = blk;
    }
    argv[a] = "COUNT";
    len[a++] = 5;
    len[a] = (size_t)snprintf(cnt, sizeof(cnt), "%u", count > 0 ? count : 1);
    argv[a++] = cnt;
    argv[a] = "STREAMS";
    len[a++] = 7;
    len[a] = key_name(st, "log", key, sizeof(key));
    argv[a++] = key;
    argv[a] = after_id;
    len[a++] = strlen(after_id);
    r = mg_store_command(st, "XREAD", a, argv, len);
    if (r == NULL || mg_store_check_reply(st, "XREAD", r, 0) != 0)
        goto end;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0; /* nothing new within block_ms */
        goto end;
    }
    /* [[key, [entry, ...]]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1
        || r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2
        || r->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        mg_store_seterr(st, "%s: XREAD: unexpected reply", st->where);
        goto end;
    }
    entries = r->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        mg_store_change_t ch;

        if (take_entry(entries->element[i], &ch) != 0) {
            mg_store_seterr(st, "%s: XREAD: unexpected entry", st->where);
            goto end;
        }
        (*n)++;
        if (fn(baton, &ch) != 0) {
            rc = 0;
            goto end;
        }
    }
    rc = 0;
end:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}
