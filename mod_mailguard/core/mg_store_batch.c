/*
 * The Redis store: many failures of one jail at once (dbmail_tap's
 * ingest), grouped by address and pipelined; see
 * mg_store_record_failures() in mg_store.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_store_int.h"

/* Pairs per record_failure call in a batch. */
#define MG_STORE_CHUNK 256

struct mg_store_batch {
    const char *argv[MG_RECORD_HEAD + 5 * MG_STORE_CHUNK];
    size_t len[MG_RECORD_HEAD + 5 * MG_STORE_CHUNK];
    char addr[MG_STORE_CHUNK][MG_ADDR_STRLEN];
    char k[MG_STORE_CHUNK][12];
    char now[MG_STORE_CHUNK][24];
    char cut[MG_STORE_CHUNK][24];
    size_t *order;     /* pair indexes grouped by address */
    unsigned char *ok; /* per pair: confirmed recorded */
    size_t cap;
};

static int by_address(const void *x, const void *y, void *arg)
{
    const mg_addr_t *keys = arg;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = memcmp(keys[i].a, keys[j].a, sizeof(keys[i].a));

    if (c == 0)
        c = (int)keys[i].plen - (int)keys[j].plen;
    if (c == 0)
        c = i < j ? -1 : i > j; /* keeps each address's failures in order */
    return c;
}

/* Append one record_failure call for the pairs ord[0..n): consecutive
 * pairs of one address become one group (addr, k, times...). */
static int append_chunk(mg_store_t *st, int eval, const char *jail, const mg_policy_t *pol,
                        mg_store_policy_args_t *pa, const size_t *ord, size_t n,
                        const mg_addr_t *keys, const int64_t *now_ms, const char *const *ids)
{
    struct mg_store_batch *b = st->batch;
    size_t a = MG_RECORD_HEAD, g = 0, kslot = 0, k = 0;

    mg_store_policy_argv(st, jail, pol, pa, b->argv, b->len);
    b->argv[0] = eval ? "EVAL" : "EVALSHA";
    b->len[0] = strlen(b->argv[0]);
    b->argv[1] = eval ? mg_store_scripts[MG_SCRIPT_RECORD].src : st->sha[MG_SCRIPT_RECORD];
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
        b->argv[a] = ids != NULL && ids[ord[i]] != NULL ? ids[ord[i]] : "";
        b->len[a] = strlen(b->argv[a]);
        a++;
        b->len[a] =
            (size_t)snprintf(b->now[i], sizeof(b->now[i]), "%lld", (long long)now_ms[ord[i]]);
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
        mg_store_replyerr(st, "record_failure", r);
        return -1;
    }
    if (mg_store_parse_record(st, r, n, ord, res) != 0)
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

int mg_store_record_failures(mg_store_t *st, const char *jail, const mg_policy_t *pol, size_t n,
                             const mg_addr_t *keys, const int64_t *now_ms,
                             const char *const *ids, mg_record_result_t *res, size_t *done)
{
    mg_store_policy_args_t pa;
    redisReply *r = NULL;
    size_t next = 0, confirmed = 0, *ord;
    int rc = -1, tracked = 0;

    if (res != NULL && n > 0)
        memset(res, 0, n * sizeof(*res));
    if (mg_store_jail_ok(st, jail) != 0 || mg_store_policy_ok(st, pol) != 0)
        goto end;
    for (size_t i = 0; ids != NULL && i < n; i++)
        if (mg_store_id_ok(st, ids[i]) != 0)
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
    if (mg_store_ready(st) != 0)
        goto end;

    while (next < n) {
        size_t start[MG_STORE_PIPELINE], count[MG_STORE_PIPELINE];
        int noscript[MG_STORE_PIPELINE];
        int k = 0, failed = 0;

        /* send up to MG_STORE_PIPELINE calls, then read their replies */
        while (k < MG_STORE_PIPELINE && next < n) {
            start[k] = next;
            count[k] = n - next < MG_STORE_CHUNK ? n - next : MG_STORE_CHUNK;
            if (append_chunk(st, 0, jail, pol, &pa, ord + next, count[k], keys, now_ms, ids)
                != REDIS_OK) {
                mg_store_ctxerr(st, "record_failure", st->c, errno);
                mg_store_drop(st);
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
                mg_store_drop(st);
                goto end;
            }
            r = vr;
            /* every reply is read and used: the calls after a refused one
             * ran all the same */
            if (mg_store_is_noscript(r))
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
            if (append_chunk(st, 1, jail, pol, &pa, ord + start[j], count[j], keys, now_ms, ids)
                    != REDIS_OK
                || redisGetReply(st->c, &vr) != REDIS_OK || vr == NULL) {
                mg_store_ctxerr(st, "record_failure", st->c, errno);
                mg_store_drop(st);
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
    if (mg_store_confirm(st) != 0) {
        /* the primary changed under the batch: none of it is sure; with
         * identities, sending it all again is safe */
        memset(st->batch->ok, 0, n);
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

void mg_store_batch_free(mg_store_t *st)
{
    if (st->batch != NULL) {
        free(st->batch->order);
        free(st->batch->ok);
        free(st->batch);
        st->batch = NULL;
    }
}

/* ---------- bans, many at once ---------- */

/* One ban call for the pairs [from, from + n): prefix, jail, addr, expiry... */
static int append_bans(mg_store_t *st, int eval, const char *jail, size_t from, size_t n,
                       const mg_addr_t *keys, const int64_t *expiry)
{
    const char *argv[5 + 2 * MG_STORE_BAN_CHUNK];
    size_t len[5 + 2 * MG_STORE_BAN_CHUNK];
    char addr[MG_STORE_BAN_CHUNK][MG_ADDR_STRLEN], exp[MG_STORE_BAN_CHUNK][24];
    int a = 5;

    argv[0] = eval ? "EVAL" : "EVALSHA";
    len[0] = strlen(argv[0]);
    argv[1] = eval ? mg_store_scripts[MG_SCRIPT_BAN].src : st->sha[MG_SCRIPT_BAN];
    len[1] = strlen(argv[1]);
    argv[2] = "0";
    len[2] = 1;
    argv[3] = st->prefix;
    len[3] = st->prefix_len;
    argv[4] = jail;
    len[4] = strlen(jail);
    for (size_t i = 0; i < n; i++) {
        len[a] = mg_addr_format(&keys[from + i], addr[i], sizeof(addr[i]));
        argv[a++] = addr[i];
        mg_store_format_expiry(expiry[from + i], exp[i], sizeof(exp[i]), &len[a]);
        argv[a++] = exp[i];
    }
    /* hiredis copies the arguments into its output buffer here */
    return redisAppendCommandArgv(st->c, a, argv, len);
}

static int bans_reply(mg_store_t *st, const redisReply *r, size_t n)
{
    if (r->type == REDIS_REPLY_ERROR) {
        mg_store_replyerr(st, "ban", r);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        mg_store_seterr(st, "%s: ban: unexpected reply", st->where);
        return -1;
    }
    return 0;
}

int mg_store_ban_many(mg_store_t *st, const char *jail, size_t n, const mg_addr_t *keys,
                      const int64_t *expiry, size_t *done)
{
    size_t next = 0, confirmed = 0;
    redisReply *r = NULL;
    int rc = -1;

    if (mg_store_jail_ok(st, jail) != 0)
        goto end;
    for (size_t i = 0; i < n; i++) {
        if (expiry[i] <= 0) {
            mg_store_seterr(st, "ban: expiry must be a positive Unix time");
            goto end;
        }
    }
    if (n > 0 && mg_store_ready(st) != 0)
        goto end;
    while (next < n) {
        size_t start[MG_STORE_PIPELINE], count[MG_STORE_PIPELINE];
        int noscript[MG_STORE_PIPELINE];
        int k = 0, failed = 0, retry = 0;

        while (k < MG_STORE_PIPELINE && next < n) {
            start[k] = next;
            count[k] = n - next < MG_STORE_BAN_CHUNK ? n - next : MG_STORE_BAN_CHUNK;
            if (append_bans(st, 0, jail, next, count[k], keys, expiry) != REDIS_OK)
                goto io;
            next += count[k++];
        }
        /* Every reply is read (the calls after a refused one ran all the
         * same).  A call refused with NOSCRIPT did not run: it goes again
         * with EVAL, which also caches the script. */
        for (int j = 0; j < k; j++) {
            void *vr = NULL;

            if (redisGetReply(st->c, &vr) != REDIS_OK || vr == NULL)
                goto io;
            r = vr;
            noscript[j] = mg_store_is_noscript(r);
            if (!noscript[j] && bans_reply(st, r, count[j]) != 0)
                failed = 1;
            freeReplyObject(r);
            r = NULL;
            if (!failed && !noscript[j] && !retry)
                confirmed = start[j] + count[j];
            retry |= noscript[j];
        }
        for (int j = 0; j < k && !failed; j++) {
            void *vr = NULL;

            if (!noscript[j])
                continue;
            if (append_bans(st, 1, jail, start[j], count[j], keys, expiry) != REDIS_OK
                || redisGetReply(st->c, &vr) != REDIS_OK || vr == NULL)
                goto io;
            r = vr;
            failed = bans_reply(st, r, count[j]) != 0;
            freeReplyObject(r);
            r = NULL;
        }
        if (failed)
            goto end;
        confirmed = next;
    }
    if (mg_store_confirm(st) != 0) {
        confirmed = 0; /* bans only raise: sending them again is harmless */
        goto end;
    }
    rc = 0;
    goto end;
io:
    mg_store_ctxerr(st, "ban", st->c, errno);
    mg_store_drop(st);
end:
    if (r != NULL)
        freeReplyObject(r);
    if (done != NULL)
        *done = confirmed;
    return rc;
}
