/*
 * The Redis store against a real redis-server started here: counting,
 * windows, escalation, bans, lists, concurrency, the batch API, restarts,
 * authentication, timeouts.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mg_addr.h"
#include "mg_policy.h"
#include "mg_store.h"
#include "mg_store_log.h"
#include "mg_test.h"
#include "mg_test_shared_redis.h"

static mg_policy_t policy(unsigned maxretry, int64_t findtime, int64_t bantime)
{
    mg_policy_t p;
    mg_policy_defaults(&p);
    p.maxretry = maxretry;
    p.findtime = findtime;
    p.bantime = bantime;
    p.increment = 0;
    p.factor = 2;
    p.maxtime = 7 * 86400;
    return p;
}

/* The score of member in P bans as text ("" when absent). */
static void zscore(const mg_test_redis_t *r, const char *member, char *out, size_t size)
{
    redisReply *rep = mg_test_redis_do(r, "ZSCORE", "mailguard:bans", member, NULL);
    ck_assert_ptr_nonnull(rep);
    snprintf(out, size, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
}

/* ---------- counting and banning ---------- */

START_TEST(test_counts_then_bans_at_maxretry)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(3, 600, 3600);
    mg_addr_t a = addr("203.0.113.5");
    mg_record_result_t res;
    int64_t t = 1700000000123LL;
    unsigned hist = 99;
    char score[64], want[64];

    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(mg_store_connected(st), 0);    /* lazy: nothing opened yet */
    ck_assert_int_eq(mg_store_record_failure(st, "webmail", &a, t, NULL, &p, &res), 0);
    ck_assert_int_eq(mg_store_connected(st), 1);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(res.banned, 0);
    ck_assert_int_eq(res.expiry, 0);
    ck_assert_int_eq(mg_store_record_failure(st, "webmail", &a, t + 1000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    ck_assert_int_eq(res.banned, 0);
    /* another jail has its own window */
    ck_assert_int_eq(mg_store_record_failure(st, "imap", &a, t + 1500, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(mg_store_record_failure(st, "webmail", &a, t + 2000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 3);
    ck_assert_int_eq(res.banned, 1);
    ck_assert_int_eq(res.expiry, 1700000002LL + 3600);
    ck_assert_uint_eq(res.bans, 1);

    zscore(&srv, "203.0.113.5", score, sizeof(score));
    snprintf(want, sizeof(want), "%lld", 1700000002LL + 3600);
    ck_assert_str_eq(score, want);
    /* the window is gone, the history stays much longer than the ban */
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:fail:webmail:203.0.113.5",
                                       NULL), 0);
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:fail:imap:203.0.113.5",
                                       NULL), 1);
    ck_assert_int_ge(mg_test_redis_int(&srv, "TTL", "mailguard:history:203.0.113.5", NULL),
                     30 * 86400 - 5);
    ck_assert_int_eq(mg_store_history(st, &a, &hist), 0);
    ck_assert_uint_eq(hist, 1);
    hist = 99;
    mg_addr_t other = addr("198.51.100.1");
    ck_assert_int_eq(mg_store_history(st, &other, &hist), 0);
    ck_assert_uint_eq(hist, 0);
    mg_store_free(st);
}
END_TEST

START_TEST(test_window_ttl_and_ipv6_prefix_member)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(2, 60, 100);
    mg_addr_t a = addr("2001:db8:1:2::/64");
    mg_record_result_t res;
    int64_t t = mg_test_now_ms();
    long long pttl;

    ck_assert_int_eq(mg_store_record_failure(st, "webmail", &a, t, NULL, &p, &res), 0);
    pttl = mg_test_redis_int(&srv, "PTTL", "mailguard:fail:webmail:2001:db8:1:2::/64", NULL);
    ck_assert_int_gt(pttl, 55000);
    ck_assert_int_le(pttl, 60000);
    ck_assert_int_eq(mg_store_record_failure(st, "webmail", &a, t + 1, NULL, &p, &res), 0);
    ck_assert_int_eq(res.banned, 1);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:bans", NULL), 1);
    int banned = 0;
    int64_t exp = 0;
    ck_assert_int_eq(mg_store_is_banned(st, &a, t / 1000, &banned, &exp), 0);
    ck_assert_int_eq(banned, 1);
    ck_assert_int_eq(exp, res.expiry);
    mg_store_free(st);
}
END_TEST

START_TEST(test_window_edge_is_exact)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(2, 10, 100);
    mg_addr_t a = addr("192.0.2.10"), b = addr("192.0.2.11");
    mg_record_result_t res;
    int64_t t = 1700000000000LL;

    /* exactly findtime apart: the first no longer counts */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, NULL, &p, &res), 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t + 10000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(res.banned, 0);
    /* one millisecond less: both count */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t, NULL, &p, &res), 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 9999, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    ck_assert_int_eq(res.banned, 1);
    mg_store_free(st);
}
END_TEST

START_TEST(test_same_millisecond_counts_each_failure)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(50, 60, 100);
    mg_addr_t a = addr("192.0.2.20");
    mg_record_result_t res;
    int64_t t = 1700000000000LL;

    for (unsigned i = 1; i <= 5; i++) {
        ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, NULL, &p, &res), 0);
        ck_assert_uint_eq(res.count, i);
    }
    /* later entries, then one more at the shared time: still unique */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t + 5, NULL, &p, &res), 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 7);
    /* a batch names entries the same way a single call does */
    mg_addr_t two[2] = { a, a };
    int64_t at[2] = { t, t };
    mg_record_result_t r2[2];
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 2, two, at, NULL, r2, NULL), 0);
    ck_assert_uint_eq(r2[0].count, 8);
    ck_assert_uint_eq(r2[1].count, 9);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 10);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:fail:w:192.0.2.20", NULL), 10);
    /* the shared time leaves the window all at once */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t + 60000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    /* and so does a group */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t + 60004, NULL, &p, &res), 0);
    at[0] = t + 60004;
    at[1] = t + 120005;
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 2, two, at, NULL, r2, NULL), 0);
    ck_assert_uint_eq(r2[0].count, 4);
    ck_assert_uint_eq(r2[1].count, 1);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:fail:w:192.0.2.20", NULL), 1);
    mg_store_free(st);
}
END_TEST

/* Ban number k (1-based) with increment; unban between so each is new. */
static int64_t nth_ban_seconds(mg_store_t *st, const mg_policy_t *p, const mg_addr_t *a,
                               int64_t t, unsigned k)
{
    mg_record_result_t res;
    int removed = 0;

    ck_assert_int_eq(mg_store_record_failure(st, "w", a, t, NULL, p, &res), 0);
    ck_assert_int_eq(res.banned, 1);
    ck_assert_uint_eq(res.bans, k);
    ck_assert_int_eq(mg_store_unban(st, a, &removed), 0);
    ck_assert_int_eq(removed, 1);
    return res.expiry - t / 1000;
}

START_TEST(test_escalation_doubles_and_caps)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(1, 60, 100);
    mg_addr_t a = addr("192.0.2.30"), b = addr("192.0.2.31");
    int64_t t = 1700000000000LL;

    p.increment = 1;
    p.factor = 2;
    p.maxtime = 350;
    ck_assert_int_eq(nth_ban_seconds(st, &p, &a, t, 1), 100);
    ck_assert_int_eq(nth_ban_seconds(st, &p, &a, t + 1000, 2), 200);
    ck_assert_int_eq(nth_ban_seconds(st, &p, &a, t + 2000, 3), 350);   /* 400 capped */
    ck_assert_int_eq(nth_ban_seconds(st, &p, &a, t + 3000, 4), 350);
    /* the C rule gives the same numbers */
    for (unsigned prev = 0; prev < 4; prev++)
        ck_assert_int_eq(mg_policy_ban_seconds(&p, prev),
                         prev == 0 ? 100 : prev == 1 ? 200 : 350);
    /* history outlives the ban: max(30 days, 2 * maxtime) */
    ck_assert_int_ge(mg_test_redis_int(&srv, "TTL", "mailguard:history:192.0.2.30", NULL),
                     30 * 86400 - 5);

    /* without increment every ban is bantime; maxtime below bantime never
     * shortens a ban */
    p.increment = 0;
    ck_assert_int_eq(nth_ban_seconds(st, &p, &b, t, 1), 100);
    ck_assert_int_eq(nth_ban_seconds(st, &p, &b, t, 2), 100);
    p.increment = 1;
    p.maxtime = 50;
    ck_assert_int_eq(nth_ban_seconds(st, &p, &b, t, 3), 100);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 2), 100);
    /* a long maxtime keeps the history twice as long */
    p.maxtime = 40 * 86400;
    ck_assert_int_eq(nth_ban_seconds(st, &p, &b, t, 4), 800);
    ck_assert_int_ge(mg_test_redis_int(&srv, "TTL", "mailguard:history:192.0.2.31", NULL),
                     80 * 86400 - 5);
    mg_store_free(st);
}
END_TEST

START_TEST(test_ban_only_raises_and_inf)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(1, 60, 100);
    mg_addr_t a = addr("192.0.2.40");
    mg_record_result_t res;
    char score[64];
    int banned = 0;
    int64_t exp = 0, now = 1700000000;

    ck_assert_int_eq(mg_store_ban(st, &a, now + 500, "manual"), 0);
    ck_assert_int_eq(mg_store_ban(st, &a, now + 100, "manual"), 0);
    zscore(&srv, "192.0.2.40", score, sizeof(score));
    ck_assert_str_eq(score, "1700000500");
    ck_assert_int_eq(mg_store_ban(st, &a, MG_EXPIRY_NEVER, "manual"), 0);
    zscore(&srv, "192.0.2.40", score, sizeof(score));
    ck_assert_str_eq(score, "inf");
    ck_assert_int_eq(mg_store_ban(st, &a, now + 900, "manual"), 0);
    zscore(&srv, "192.0.2.40", score, sizeof(score));
    ck_assert_str_eq(score, "inf");
    ck_assert_int_eq(mg_store_is_banned(st, &a, now, &banned, &exp), 0);
    ck_assert_int_eq(banned, 1);
    ck_assert_int_eq(exp, MG_EXPIRY_NEVER);
    /* failures of a permanently banned address make no new ban */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, now * 1000, NULL, &p, &res), 0);
    ck_assert_int_eq(res.banned, 0);
    zscore(&srv, "192.0.2.40", score, sizeof(score));
    ck_assert_str_eq(score, "inf");
    /* manual bans leave the history alone */
    unsigned hist = 9;
    ck_assert_int_eq(mg_store_history(st, &a, &hist), 0);
    ck_assert_uint_eq(hist, 0);
    /* a policy ban never shortens a longer manual one */
    mg_addr_t b = addr("192.0.2.41");
    ck_assert_int_eq(mg_store_ban(st, &b, now + 5, "manual"), 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &b, (now + 10) * 1000, NULL, &p, &res), 0);
    ck_assert_int_eq(res.banned, 1);
    ck_assert_int_eq(res.expiry, now + 110);
    /* refusals */
    ck_assert_int_eq(mg_store_ban(st, &a, 0, "manual"), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "expiry"));
    ck_assert_int_eq(mg_store_ban(st, &a, now, "two words"), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "jail"));
    mg_store_free(st);
}
END_TEST

START_TEST(test_is_banned_and_unban)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t a = addr("192.0.2.50"), b = addr("192.0.2.51");
    int banned = 7, removed = 7;
    int64_t exp = 7, now = 1700000000;

    ck_assert_int_eq(mg_store_is_banned(st, &a, now, &banned, &exp), 0);
    ck_assert_int_eq(banned, 0);
    ck_assert_int_eq(exp, 0);
    ck_assert_int_eq(mg_store_ban(st, &a, now + 10, "manual"), 0);
    ck_assert_int_eq(mg_store_is_banned(st, &a, now + 9, &banned, &exp), 0);
    ck_assert_int_eq(banned, 1);
    ck_assert_int_eq(exp, now + 10);
    /* an expiry at now is over */
    ck_assert_int_eq(mg_store_is_banned(st, &a, now + 10, &banned, &exp), 0);
    ck_assert_int_eq(banned, 0);
    ck_assert_int_eq(mg_store_unban(st, &a, &removed), 0);
    ck_assert_int_eq(removed, 1);
    ck_assert_int_eq(mg_store_unban(st, &a, &removed), 0);
    ck_assert_int_eq(removed, 0);
    ck_assert_int_eq(mg_store_unban(st, &b, NULL), 0);

    unsigned n = 99;
    ck_assert_int_eq(mg_store_ban(st, &a, now + 10, "manual"), 0);
    ck_assert_int_eq(mg_store_ban(st, &b, MG_EXPIRY_NEVER, "manual"), 0);
    ck_assert_int_eq(mg_store_unban_all(st, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:bans", NULL), 0);
    ck_assert_int_eq(mg_store_unban_all(st, &n), 0);
    ck_assert_uint_eq(n, 0);
    mg_store_free(st);
}
END_TEST

/* ---------- scan, range, prune ---------- */

struct seen {
    unsigned n;
    char text[8][MG_ADDR_STRLEN];
    int64_t expiry[8];
    unsigned stop_after;
};

static int collect(void *baton, const mg_addr_t *key, int64_t expiry)
{
    struct seen *s = baton;
    if (s->stop_after && s->n == s->stop_after)
        return 1;
    ck_assert_uint_lt(s->n, 8);
    mg_addr_format(key, s->text[s->n], sizeof(s->text[s->n]));
    s->expiry[s->n++] = expiry;
    return 0;
}

static int seen_has(const struct seen *s, const char *text, int64_t expiry)
{
    for (unsigned i = 0; i < s->n; i++)
        if (strcmp(s->text[i], text) == 0 && s->expiry[i] == expiry)
            return 1;
    return 0;
}

static void add_sample_set(void)
{
    redisReply *r = mg_test_redis_do(&srv, "ZADD", "mailguard:bans", "1699999990", "192.0.2.60",
                                     "1700000000", "192.0.2.61", "1700000100", "192.0.2.62",
                                     "1700000200", "not-an-address", "1700000300",
                                     "2001:db8:1:2::/64", "inf", "192.0.2.63", "1700000400",
                                     "10.0.0.1/0", NULL);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
}

START_TEST(test_scan_returns_live_bans_and_skips_garbage)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    struct seen s;
    unsigned skipped = 0, calls = 0;
    uint64_t cursor = 0;

    add_sample_set();
    memset(&s, 0, sizeof(s));
    do {
        ck_assert_int_eq(mg_store_scan(st, &cursor, 2, 1700000000, collect, &s, &skipped), 0);
        calls++;
    } while (cursor != 0 && calls < 100);
    ck_assert_uint_eq(cursor, 0);
    ck_assert_uint_eq(skipped, 2);
    /* ended bans (expiry <= now) are not handed on */
    ck_assert_uint_eq(s.n, 3);
    ck_assert(seen_has(&s, "192.0.2.62", 1700000100));
    ck_assert(seen_has(&s, "2001:db8:1:2::/64", 1700000300));
    ck_assert(seen_has(&s, "192.0.2.63", MG_EXPIRY_NEVER));
    /* a callback can stop the page; that is reported */
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    cursor = 0;
    ck_assert_int_eq(mg_store_scan(st, &cursor, 100, 1700000000, collect, &s, NULL), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "stopped"));
    ck_assert_uint_eq(s.n, 1);
    mg_store_free(st);
}
END_TEST

START_TEST(test_range_lists_in_expiry_order_across_ties)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_range_pos_t pos = { 1700000000 + 1, 0 };
    struct seen s;
    unsigned got = 0, skipped = 0, pages = 0;
    redisReply *r;

    add_sample_set();
    /* three permanent bans: pages of one must walk through the tie */
    r = mg_test_redis_do(&srv, "ZADD", "mailguard:bans", "inf", "192.0.2.64", "inf",
                         "192.0.2.65", NULL);
    freeReplyObject(r);
    memset(&s, 0, sizeof(s));
    do {
        ck_assert_int_eq(mg_store_range(st, &pos, 1, collect, &s, &got, &skipped), 0);
        pages++;
    } while (got == 1 && pages < 20);
    ck_assert_uint_eq(skipped, 2);
    ck_assert_uint_eq(s.n, 5);
    ck_assert_str_eq(s.text[0], "192.0.2.62");
    ck_assert_str_eq(s.text[1], "2001:db8:1:2::/64");
    ck_assert_str_eq(s.text[2], "192.0.2.63");
    ck_assert_str_eq(s.text[3], "192.0.2.64");
    ck_assert_str_eq(s.text[4], "192.0.2.65");
    ck_assert_int_eq(s.expiry[4], MG_EXPIRY_NEVER);
    mg_store_free(st);
}
END_TEST

START_TEST(test_prune_drops_ended_bans_a_bounded_number_at_a_time)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t a = addr("192.0.2.66");
    unsigned removed = 99;

    add_sample_set();
    ck_assert_int_eq(mg_store_prune(st, 1700000000, 1, &removed), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_int_eq(mg_store_prune(st, 1700000000, 10, &removed), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_int_eq(mg_store_prune(st, 1700000000, 10, &removed), 0);
    ck_assert_uint_eq(removed, 0);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZSCORE", "mailguard:bans", "192.0.2.61", NULL), -1);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:bans", NULL), 5);
    /* the scripts' count follows a prune: a ban and an unban keep it equal
     * to ZCARD once it was right */
    ck_assert_int_eq(mg_store_resync(st, 0, NULL), 0);
    ck_assert_int_eq(mg_store_ban(st, &a, 1800000000, "manual"), 0);
    ck_assert_int_eq(mg_store_prune(st, 1700000150, 10, &removed), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_int_eq(mg_store_unban(st, &a, NULL), 0);
    {
        mg_store_logstate_t ls;
        ck_assert_int_eq(mg_store_check(st, 1700000150, &ls), 0);
        ck_assert_int_eq(ls.card, (int64_t)ls.zcard);
        ck_assert_uint_eq(ls.zcard, 4);
    }
    mg_store_free(st);
}
END_TEST

START_TEST(test_history_garbage_is_an_error)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t a = addr("192.0.2.70");
    unsigned n = 5;
    redisReply *r = mg_test_redis_do(&srv, "HSET", "mailguard:history:192.0.2.70", "count",
                                     "lots", NULL);
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_history(st, &a, &n), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "not a number"));
    ck_assert_uint_eq(n, 5);
    /* a wrong type is a Redis error; the connection stays usable */
    r = mg_test_redis_do(&srv, "SET", "mailguard:bans", "x", NULL);
    freeReplyObject(r);
    {
        uint64_t cursor = 0;
        ck_assert_int_eq(mg_store_scan(st, &cursor, 10, 1, NULL, NULL, NULL), -1);
    }
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "WRONGTYPE"));
    ck_assert_int_eq(mg_store_connected(st), 1);
    ck_assert_int_eq(mg_store_ping(st), 0);
    mg_store_free(st);
}
END_TEST

START_TEST(test_bad_arguments_refused)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(3, 60, 100), q;
    mg_addr_t a = addr("192.0.2.80");
    mg_record_result_t res;
    char longjail[64];

    memset(longjail, 'j', sizeof(longjail));
    longjail[48] = '\0';
    ck_assert_int_eq(mg_store_record_failure(st, "", &a, 1, NULL, &p, &res), -1);
    ck_assert_int_eq(mg_store_record_failure(st, NULL, &a, 1, NULL, &p, &res), -1);
    ck_assert_int_eq(mg_store_record_failure(st, "a b", &a, 1, NULL, &p, &res), -1);
    ck_assert_int_eq(mg_store_record_failure(st, "a\nb", &a, 1, NULL, &p, &res), -1);
    ck_assert_int_eq(mg_store_record_failure(st, longjail, &a, 1, NULL, &p, &res), -1);
    longjail[47] = '\0';
    ck_assert_int_eq(mg_store_record_failure(st, longjail, &a, 1, NULL, &p, &res), 0);
    q = p;
    q.maxretry = 0;
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1, NULL, &q, &res), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "policy"));
    q = p;
    q.factor = 0.5;
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1, NULL, &q, &res), -1);
    q = p;
    q.findtime = 0;
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1, NULL, &q, &res), -1);
    q = p;
    q.bantime = MG_DURATION_MAX + 1;
    ck_assert_int_eq(mg_store_record_failures(st, "w", &q, 1, &a, &(int64_t){ 1 }, NULL, &res, NULL),
                     -1);
    /* nothing reached Redis from the refused calls */
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:fail:w:192.0.2.80", NULL), 0);
    mg_store_free(st);
}
END_TEST

/* ---------- concurrency ---------- */

struct worker {
    const mg_test_redis_t *srv;
    mg_policy_t pol;
    int64_t t0;
    unsigned n;
    unsigned bans;
    unsigned errors;
    unsigned maxcount;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    mg_store_t *st = mg_test_store(w->srv, NULL, 0, 1000, 1000);
    mg_addr_t a;
    const char *why;

    mg_addr_parse("198.51.100.77", &a, &why);
    for (unsigned i = 0; i < w->n; i++) {
        mg_record_result_t res;
        if (st == NULL
            || mg_store_record_failure(st, "webmail", &a, w->t0 + i, NULL, &w->pol, &res) != 0) {
            w->errors++;
            continue;
        }
        w->bans += res.banned != 0;
        if (res.count > w->maxcount)
            w->maxcount = res.count;
    }
    mg_store_free(st);
    return NULL;
}

static void run_concurrent(unsigned maxretry)
{
    pthread_t th[8];
    struct worker w[8];
    unsigned bans = 0, errors = 0, hist = 0, maxcount = 0;
    mg_addr_t a = addr("198.51.100.77");
    mg_store_t *st;

    for (int i = 0; i < 8; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].srv = &srv;
        w[i].pol = policy(maxretry, 600, 3600);
        w[i].t0 = mg_test_now_ms();
        w[i].n = 25;
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        bans += w[i].bans;
        errors += w[i].errors;
        if (w[i].maxcount > maxcount)
            maxcount = w[i].maxcount;
    }
    ck_assert_uint_eq(errors, 0);
    ck_assert_uint_eq(bans, 1);
    ck_assert_uint_eq(maxcount, maxretry);
    st = mg_test_store(&srv, NULL, 0, 0, 0);
    ck_assert_int_eq(mg_store_history(st, &a, &hist), 0);
    ck_assert_uint_eq(hist, 1);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:bans", NULL), 1);
    mg_store_free(st);
}

/* 200 failures, maxretry 200: the 200th and only the 200th bans; every
 * count 1..200 is handed out once, so the largest seen is exactly 200. */
START_TEST(test_200_failures_8_clients_one_ban_maxretry_200)
{
    run_concurrent(200);
}
END_TEST

/* maxretry 10: the first ban is made at the 10th failure; every later
 * threshold finds a live ban and makes none, so there is still one ban
 * and one history entry however the 8 clients interleave. */
START_TEST(test_200_failures_8_clients_one_ban_maxretry_10)
{
    run_concurrent(10);
}
END_TEST

/* ---------- batch ---------- */

static redisReply *dump_db(int db, const char *cmd, const char *key)
{
    redisContext *c = mg_test_redis_connect(&srv);
    char dbtxt[8];
    redisReply *r;
    const char *sel[2] = { "SELECT", dbtxt };
    const char *argv[6] = { cmd, key, "0", "-1", "WITHSCORES", NULL };

    ck_assert_ptr_nonnull(c);
    snprintf(dbtxt, sizeof(dbtxt), "%d", db);
    r = redisCommandArgv(c, 2, sel, NULL);
    freeReplyObject(r);
    r = redisCommandArgv(c, 5, argv, NULL);
    redisFree(c);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(test_batch_equals_single_calls)
{
    enum { N = 3000, ADDRS = 60 };
    static mg_addr_t keys[N];
    static int64_t now[N];
    static mg_record_result_t one[N], many[N];
    mg_store_t *a = mg_test_store(&srv, NULL, 1, 0, 1000);
    mg_store_t *b = mg_test_store(&srv, NULL, 2, 0, 1000);
    mg_policy_t p = policy(5, 30, 100);
    int64_t t = 1700000000000LL;
    unsigned seed = 12345, bans = 0;
    size_t done = 0;
    redisReply *ra, *rb;

    p.increment = 1;
    p.maxtime = 1000;
    for (int i = 0; i < N; i++) {
        char text[64];
        unsigned k;
        seed = seed * 1103515245u + 12345u;
        k = (seed >> 16) % ADDRS;
        if (k % 3 == 0)
            snprintf(text, sizeof(text), "2001:db8:%x::/64", k);
        else
            snprintf(text, sizeof(text), "192.0.2.%u", k);
        keys[i] = addr(text);
        /* several failures share a millisecond; time moves on in steps
         * so windows expire and bans repeat */
        t += (seed >> 8) % 3 == 0 ? 0 : (int64_t)((seed >> 4) % 700);
        /* now and then a failure that arrives late (another server's
         * clock, a queued failure) */
        now[i] = (seed >> 12) % 17 == 0 ? t - 2500 : t;
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(mg_store_record_failure(a, "imap", &keys[i], now[i], NULL, &p, &one[i]), 0);
    ck_assert_int_eq(mg_store_record_failures(b, "imap", &p, N, keys, now, NULL, many, &done), 0);
    ck_assert_uint_eq(done, N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(one[i].count == many[i].count && one[i].banned == many[i].banned
                          && one[i].expiry == many[i].expiry && one[i].bans == many[i].bans,
                      "pair %d differs", i);
        bans += one[i].banned;
    }
    ck_assert_uint_gt(bans, 10);   /* the sequence exercises bans and escalation */
    ra = dump_db(1, "ZRANGE", "mailguard:bans");
    rb = dump_db(2, "ZRANGE", "mailguard:bans");
    ck_assert_uint_eq(ra->elements, rb->elements);
    ck_assert_uint_gt(ra->elements, 0);
    for (size_t i = 0; i < ra->elements; i++)
        ck_assert_str_eq(ra->element[i]->str, rb->element[i]->str);
    freeReplyObject(ra);
    freeReplyObject(rb);
    /* n = 0 is a no-op, results may be NULL */
    ck_assert_int_eq(mg_store_record_failures(b, "imap", &p, 0, keys, now, NULL, NULL, &done), 0);
    ck_assert_uint_eq(done, 0);
    mg_store_free(a);
    mg_store_free(b);
}
END_TEST

/* One call of a pipelined batch refused (a key of the wrong type): the
 * others still count, the result says exactly which pairs were not
 * confirmed, and *done is the confirmed prefix in the caller's order. */
START_TEST(test_batch_partial_failure_reports_what_is_confirmed)
{
    enum { N = 600 };
    static mg_addr_t keys[N];
    static int64_t now[N];
    static mg_record_result_t res[N];
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 1000);
    mg_policy_t p = policy(5, 60, 100);
    size_t done = 99;
    redisReply *r;

    /* caller's order j holds address 10.0.x.y number 599 - j, so the
     * store's address order runs backwards through the caller's */
    for (int j = 0; j < N; j++) {
        char text[32];
        int i = N - 1 - j;
        snprintf(text, sizeof(text), "10.0.%d.%d", i / 256, i % 256);
        keys[j] = addr(text);
        now[j] = 1700000000000LL;
    }
    r = mg_test_redis_do(&srv, "SET", "mailguard:fail:w:10.0.1.44", "x", NULL); /* i = 300 */
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, N, keys, now, NULL, res, &done), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "WRONGTYPE"));
    /* the calls for i 0..255 and 512..599 ran; 256..511 (with 300) did not
     * complete */
    for (int j = 0; j < N; j++) {
        int i = N - 1 - j;
        ck_assert_uint_eq(res[j].count, ((i >= 256 && i < 512) ? 0u : 1u));
    }
    ck_assert_uint_eq(done, 88);    /* j 0..87 = i 599..512 */
    ck_assert_int_eq(mg_store_connected(st), 1);   /* a Redis error, not I/O */
    mg_store_free(st);
}
END_TEST

/* CPU time (ms) a process has used so far, from /proc. */
static long cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, stime = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    /* fields after the name: state ppid pgrp session tty tpgid flags
     * minflt cminflt majflt cmajflt utime stime */
    ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &ut, &stime), 2);
    return (long)((ut + stime) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* The tap's ingest: 100,000 failures of 10,000 addresses in one call.
 * Wall time depends on what else the machine runs; the server's CPU time
 * is the stable figure, so that is what is held to a bound. */
START_TEST(test_batch_rate_100k)
{
    enum { N = 100000 };
    static mg_addr_t keys[N];
    static int64_t now[N];
    static mg_record_result_t res[N];
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 10000);
    mg_policy_t p = policy(5, 600, 3600);
    int64_t t = 1700000000000LL, t0, t1;
    long c0, c1;
    size_t done = 0;
    unsigned bans = 0;

    /* 10,000 addresses, v4 and v6, ten failures each spread over the log */
    for (int i = 0; i < N; i++) {
        char text[64];
        unsigned k = (unsigned)(i * 7919) % 10000;
        if (k % 2)
            snprintf(text, sizeof(text), "10.%u.%u.%u", k >> 16, (k >> 8) & 255, k & 255);
        else
            snprintf(text, sizeof(text), "2001:db8:%x::/64", k);
        keys[i] = addr(text);
        now[i] = t + i / 10;
    }
    ck_assert_int_eq(mg_store_ping(st), 0);
    c0 = cpu_ms(srv.pid);
    t0 = mg_test_mono_ms();
    ck_assert_int_eq(mg_store_record_failures(st, "imap", &p, N, keys, now, NULL, res, &done), 0);
    t1 = mg_test_mono_ms();
    c1 = cpu_ms(srv.pid);
    ck_assert_uint_eq(done, N);
    for (int i = 0; i < N; i++) {
        bans += res[i].banned;
        /* the k-th failure of an address counts k, the 5th bans, the 10th
         * finds the ban live */
        ck_assert_uint_eq(res[i].count, (unsigned)(i / 10000) % 5 + 1);
    }
    ck_assert_uint_eq(bans, 10000);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:bans", NULL), 10000);
    fprintf(stderr, "batch: %d failures in %lld ms wall (%.0f/s), redis-server cpu %ld ms\n",
            N, (long long)(t1 - t0), N * 1000.0 / (double)(t1 - t0 > 0 ? t1 - t0 : 1),
            c1 - c0);
    ck_assert_int_lt(c1 - c0, 1000);
    ck_assert_int_lt(t1 - t0, 10000);
    mg_store_free(st);
}
END_TEST

/* ---------- exactly once ---------- */

START_TEST(test_a_failure_sent_twice_counts_once)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(3, 600, 3600);
    mg_addr_t a = addr("192.0.2.120");
    mg_record_result_t res;
    int64_t t = 1700000000000LL;

    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, "srv1-7", &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(res.duplicate, 0);
    /* the same failure again (a call that timed out but ran, a resend) */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, "srv1-7", &p, &res), 0);
    ck_assert_int_eq(res.duplicate, 1);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(res.banned, 0);
    /* another failure at the same time is another failure */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, "srv1-8", &p, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    /* without an identity there is nothing to recognise */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t + 1, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 3);
    ck_assert_int_eq(res.banned, 1);
    /* a failure that was counted toward the ban, sent again after it: not
     * the first of a new window */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, "srv1-8", &p, &res), 0);
    ck_assert_int_eq(res.duplicate, 1);
    ck_assert_int_eq(res.banned, 0); /* it did not make the ban */
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:fail:w:192.0.2.120", NULL),
                     0);
    /* the identity is forgotten with the window it could count in */
    ck_assert_int_gt(mg_test_redis_int(&srv, "PTTL", "mailguard:seen:w:192.0.2.120", NULL), 0);
    ck_assert_int_le(mg_test_redis_int(&srv, "PTTL", "mailguard:seen:w:192.0.2.120", NULL),
                     600000);
    /* the failure that made a ban, sent again because its answer was
     * lost: a duplicate that reports the ban it made, exactly as made */
    {
        mg_addr_t b = addr("192.0.2.122");
        mg_record_result_t first;

        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t, "b1", &p, &res), 0);
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 1, "b2", &p, &res), 0);
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 2, "b3", &p, &first), 0);
        ck_assert_int_eq(first.banned, 1);
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 2, "b3", &p, &res), 0);
        ck_assert_int_eq(res.duplicate, 1);
        ck_assert_int_eq(res.banned, 1);
        ck_assert_int_eq(res.expiry, first.expiry);
        ck_assert_uint_eq(res.bans, first.bans);
        ck_assert_uint_eq(res.count, 3);
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 1, "b2", &p, &res), 0);
        ck_assert_int_eq(res.duplicate, 1);
        ck_assert_int_eq(res.banned, 0);
        /* once the ban is lifted there is nothing to report */
        ck_assert_int_eq(mg_test_redis_int(&srv, "ZREM", "mailguard:bans", "192.0.2.122", NULL),
                         1);
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, t + 2, "b3", &p, &res), 0);
        ck_assert_int_eq(res.duplicate, 1);
        ck_assert_int_eq(res.banned, 0);
    }
    /* identities a caller could not mean */
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, "two words", &p, &res), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "identity"));
    {
        char longid[100];
        memset(longid, 'x', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        ck_assert_int_eq(mg_store_record_failure(st, "w", &a, t, longid, &p, &res), -1);
    }
    mg_store_free(st);
}
END_TEST

START_TEST(test_a_batch_sent_again_counts_nothing_twice)
{
    enum { N = 600 };
    static mg_addr_t keys[N];
    static int64_t now[N];
    static char idtext[N][32];
    static const char *ids[N];
    static mg_record_result_t res[N], again[N];
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 5000);
    mg_policy_t p = policy(4, 600, 3600);
    size_t done = 0;
    unsigned bans = 0, dups = 0;

    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "10.9.%d.%d", (i % 50) / 250, (i % 50) % 250 + 1);
        keys[i] = addr(text);
        now[i] = 1700000000000LL + i;
        snprintf(idtext[i], sizeof(idtext[i]), "t:%d", i);
        ids[i] = idtext[i];
    }
    /* one failure twice in the batch (same address, same identity): the
     * second is a duplicate */
    ids[7] = ids[6];
    keys[7] = keys[6];
    ck_assert_int_eq(mg_store_record_failures(st, "imap", &p, N, keys, now, ids, res, &done),
                     0);
    ck_assert_uint_eq(done, N);
    ck_assert_int_eq(res[7].duplicate, 1);
    for (int i = 0; i < N; i++)
        bans += res[i].banned;
    ck_assert_uint_eq(bans, 50);
    /* the whole batch again (a resend after a timeout, a log read again
     * after kill -9): every one a duplicate, no window or ban moves */
    ck_assert_int_eq(mg_store_record_failures(st, "imap", &p, N, keys, now, ids, again, &done),
                     0);
    bans = 0;
    for (int i = 0; i < N; i++) {
        dups += again[i].duplicate;
        /* only the failures that made a ban report it, as made */
        ck_assert_int_eq(again[i].banned, res[i].banned);
        if (res[i].banned) {
            ck_assert_int_eq(again[i].expiry, res[i].expiry);
            bans++;
        }
    }
    ck_assert_uint_eq(dups, N);
    ck_assert_uint_eq(bans, 50);
    ck_assert_int_eq(mg_test_redis_int(&srv, "ZCARD", "mailguard:bans", NULL), 50);
    mg_store_free(st);
}
END_TEST

START_TEST(test_errors_say_what_kind_they_are)
{
    mg_test_redis_t own;
    const char *oom[] = { "--maxmemory", "2mb", "--maxmemory-policy", "noeviction", NULL };
    mg_store_t *st;
    mg_policy_t p = policy(3, 600, 3600);
    mg_addr_t a = addr("192.0.2.121");
    mg_record_result_t res;
    redisReply *r;

    ck_assert_int_eq(mg_test_redis_start(&own, oom), 0);
    st = mg_test_store(&own, NULL, 0, 0, 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1700000000000LL, "x1", &p, &res), 0);
    /* fill Redis past maxmemory: record_failure is refused before it
     * writes anything (the script declares itself), kind "refused" */
    r = mg_test_redis_do(&own, "EVAL",
                         "for i=1,40000 do redis.call('SET','fill'..i,string.rep('x',100)) "
                         "end return 1", "0", NULL);
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1700000000001LL, "x2", &p, &res), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "OOM"));
    ck_assert_int_eq(mg_store_error_kind(st), MG_STORE_EREFUSED);
    ck_assert_int_eq(mg_test_redis_int(&own, "ZCARD", "mailguard:fail:w:192.0.2.121", NULL), 1);
    ck_assert_int_eq(mg_test_redis_int(&own, "EXISTS", "mailguard:seen:w:192.0.2.121", NULL),
                     1);
    /* memory back: it works again, and x2 was never counted */
    r = mg_test_redis_do(&own, "FLUSHDB", NULL);
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1700000000002LL, "x2", &p, &res), 0);
    ck_assert_int_eq(res.duplicate, 0);
    /* gone: down */
    mg_test_redis_kill(&own);
    ck_assert_int_eq(mg_store_ping(st), -1);
    ck_assert_int_eq(mg_store_error_kind(st), MG_STORE_EDOWN);
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    /* stopped (SIGSTOP): no answer in time, the call may still run */
    ck_assert_int_eq(mg_store_ping(st), 0);
    kill(own.pid, SIGSTOP);
    mg_store_free(st);
    st = mg_test_store(&own, NULL, 0, 200, 200);
    {
        mg_store_t *warm = st;
        /* connect works (the kernel accepts), the command gets nothing */
        ck_assert_int_eq(mg_store_record_failure(warm, "w", &a, 1700000000003LL, "x3", &p, &res),
                         -1);
        ck_assert(mg_store_error_kind(warm) == MG_STORE_ETIMEOUT
                  || mg_store_error_kind(warm) == MG_STORE_EDOWN);
    }
    kill(own.pid, SIGCONT);
    mg_store_free(st);
    mg_test_redis_stop(&own);
}
END_TEST

/* ---------- script cache and restarts ---------- */

START_TEST(test_noscript_falls_back_to_eval)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_policy_t p = policy(3, 60, 100);
    mg_addr_t a = addr("192.0.2.90");
    mg_addr_t keys[600];
    int64_t now[600];
    mg_record_result_t res, many[600];
    size_t done;
    redisReply *r;

    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1000, NULL, &p, &res), 0);
    r = mg_test_redis_do(&srv, "SCRIPT", "FLUSH", NULL);
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 2000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 2);
    ck_assert_int_eq(mg_store_connected(st), 1);
    r = mg_test_redis_do(&srv, "SCRIPT", "FLUSH", NULL);
    freeReplyObject(r);
    for (int i = 0; i < 600; i++) {
        char text[32];
        snprintf(text, sizeof(text), "192.0.3.%d", i % 200);
        keys[i] = addr(text);
        now[i] = 5000 + i;
    }
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 600, keys, now, NULL, many, &done), 0);
    ck_assert_uint_eq(done, 600);
    for (int i = 0; i < 600; i++)
        ck_assert_uint_eq(many[i].count, (unsigned)(i / 200 + 1));
    r = mg_test_redis_do(&srv, "SCRIPT", "FLUSH", NULL);
    freeReplyObject(r);
    ck_assert_int_eq(mg_store_ban(st, &a, 2000000000, "manual"), 0);
    mg_store_free(st);
}
END_TEST

START_TEST(test_killed_and_restarted_redis)
{
    mg_test_redis_t own;
    mg_store_t *st;
    mg_policy_t p = policy(3, 60, 100);
    mg_addr_t a = addr("192.0.2.91");
    mg_record_result_t res;
    int64_t t0;

    ck_assert_int_eq(mg_test_redis_start(&own, NULL), 0);
    st = mg_test_store(&own, NULL, 0, 200, 200);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);

    /* down: the call fails cleanly and quickly */
    mg_test_redis_kill(&own);
    t0 = mg_test_mono_ms();
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 2000, NULL, &p, &res), -1);
    ck_assert_int_lt(mg_test_mono_ms() - t0, 1000);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "127.0.0.1"));
    ck_assert_int_eq(mg_store_connected(st), 0);
    ck_assert_int_eq(mg_store_ping(st), -1);

    /* back, empty, no scripts: the next call just works */
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 3000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);

    /* restarted while the connection sat idle: the stale connection is
     * noticed before anything is sent, so even the first call works */
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    mg_test_sleep_ms(50);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 4000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 1, &a, &(int64_t){ 4001 }, NULL, &res,
                                              NULL), 0);
    ck_assert_uint_eq(res.count, 2);

    /* killed with a batch to send: -1, nothing confirmed, then fine again */
    size_t done = 99;
    mg_test_redis_kill(&own);
    ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 1, &a, &(int64_t){ 4002 }, NULL, &res,
                                              &done), -1);
    ck_assert_uint_eq(done, 0);
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    ck_assert_int_eq(mg_store_ping(st), 0);
    mg_store_free(st);
    mg_test_redis_stop(&own);
}
END_TEST

/* ---------- connections: auth, db, unix, refused, timeout ---------- */

START_TEST(test_auth_with_password)
{
    static const char *const args[] = { "--requirepass", "pa:ss@wd", NULL };
    mg_test_redis_t own;
    mg_store_t *st;
    mg_policy_t p = policy(3, 60, 100);
    mg_addr_t a = addr("192.0.2.92");
    mg_record_result_t res;

    ck_assert_int_eq(mg_test_redis_start(&own, args), 0);
    snprintf(own.password, sizeof(own.password), "pa:ss@wd");
    st = mg_test_store(&own, ":pa%3Ass%40wd", 0, 0, 0);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1000, NULL, &p, &res), 0);
    ck_assert_uint_eq(res.count, 1);
    mg_store_free(st);

    /* wrong password: a clean error that names AUTH, never the password */
    st = mg_test_store(&own, ":WrongSecret99", 0, 0, 0);
    ck_assert_int_eq(mg_store_ping(st), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "AUTH"));
    ck_assert_ptr_null(strstr(mg_store_error(st), "WrongSecret99"));
    ck_assert_int_eq(mg_store_connected(st), 0);
    mg_store_free(st);

    /* no password at all */
    st = mg_test_store(&own, NULL, 0, 0, 0);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1000, NULL, &p, &res), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "NOAUTH"));
    mg_store_free(st);
    mg_test_redis_stop(&own);
}
END_TEST

START_TEST(test_auth_with_acl_user)
{
    mg_test_redis_t own;
    mg_store_t *st;
    redisReply *r;
    mg_addr_t a = addr("192.0.2.93");

    ck_assert_int_eq(mg_test_redis_start(&own, NULL), 0);
    /* the least a store needs, as the README documents it */
    /* (two calls: the helper takes at most 32 arguments) */
    r = mg_test_redis_do(&own, "ACL", "SETUSER", "guard", "reset", "on", ">s3cr3t-Pw",
                         "~mailguard:*", "&mailguard:events", "+ping", "+select", "+evalsha",
                         "+eval", "+script|load", "+get", "+set", "+incr", "+decrby", "+hget",
                         "+subscribe", "+zadd", "+zrem", "+zrange", NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = mg_test_redis_do(&own, "ACL", "SETUSER", "guard", "+zremrangebyscore", "+zscore",
                         "+zcount", "+zcard", "+zscan", "+del", "+pexpire", "+expire",
                         "+hincrby", "+hset", "+publish", "+xadd", "+xread", "+xrevrange",
                         "+zmscore", "+wait", "+role", NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    st = mg_test_store(&own, "guard:s3cr3t-Pw", 0, 0, 0);
    ck_assert_msg(mg_store_ban(st, &a, 2000000000, "manual") == 0, "%s", mg_store_error(st));
    ck_assert_int_eq(mg_test_redis_int(&own, "ZCARD", "mailguard:bans", NULL), 1);
    {
        mg_store_t *sub = mg_test_store(&own, "guard:s3cr3t-Pw", 0, 0, 0);
        mg_policy_t p = policy(2, 60, 100);
        mg_addr_t b = addr("192.0.2.193"), two[2] = { b, b };
        int64_t at[2] = { 1700000000000LL, 1700000000001LL };
        mg_record_result_t res[2];
        mg_store_event_t ev;
        unsigned n = 0;
        int removed = 0, banned = 0;
        int64_t exp = 0;

        ck_assert_int_eq(mg_store_subscribe(sub), 0);
        const char *ids[2] = { "acl-2", "acl-3" };
        ck_assert_int_eq(mg_store_record_failure(st, "w", &b, at[0], "acl-1", &p, &res[0]), 0);
        ck_assert_int_eq(mg_store_record_failures(st, "w", &p, 2, two, at, ids, res, NULL), 0);
        ck_assert_int_eq(res[0].banned, 1);
        ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
        ck_assert_int_eq(mg_store_is_banned(st, &b, 1700000000, &banned, &exp), 0);
        ck_assert_int_eq(banned, 1);
        ck_assert_int_eq(mg_store_history(st, &b, &n), 0);
        ck_assert_uint_eq(n, 1);
        {
            uint64_t cursor = 0;
            mg_store_logstate_t ls;
            unsigned got = 0, pruned = 0;
            mg_store_range_pos_t pos = { 1, 0 };
            ck_assert_int_eq(mg_store_scan(st, &cursor, 10, 1700000000, NULL, NULL, NULL), 0);
            ck_assert_int_eq(mg_store_range(st, &pos, 10, NULL, NULL, &got, NULL), 0);
            ck_assert_int_eq(mg_store_check(st, 1700000000, &ls), 0);
            ck_assert_int_eq(mg_store_prune(st, 1700000000, 10, &pruned), 0);
            ck_assert_int_eq(mg_store_resync(st, 1, NULL), 0);
            ck_assert_uint_gt(ls.logseq, 0);
        }
        ck_assert_int_eq(mg_store_unban(st, &b, &removed), 0);
        ck_assert_int_eq(mg_store_unban_all(st, &n), 0);
        ck_assert_int_eq(mg_store_ping(st), 0);
        mg_store_free(sub);
    }
    mg_store_free(st);

    st = mg_test_store(&own, "guard:Nope-Pw", 0, 0, 0);
    ck_assert_int_eq(mg_store_ping(st), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "WRONGPASS"));
    ck_assert_ptr_null(strstr(mg_store_error(st), "Nope-Pw"));
    mg_store_free(st);
    mg_test_redis_stop(&own);
}
END_TEST

START_TEST(test_select_db)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 3, 0, 0);
    mg_addr_t a = addr("192.0.2.94");
    redisReply *r;

    ck_assert_int_eq(mg_store_ban(st, &a, 2000000000, "manual"), 0);
    ck_assert_int_eq(mg_test_redis_int(&srv, "EXISTS", "mailguard:bans", NULL), 0);
    r = dump_db(3, "ZRANGE", "mailguard:bans");
    ck_assert_uint_eq(r->elements, 2);
    ck_assert_str_eq(r->element[0]->str, "192.0.2.94");
    freeReplyObject(r);
    mg_store_free(st);
    /* a database the server does not have: a clean error */
    st = mg_test_store(&srv, NULL, 999, 0, 0);
    ck_assert_int_eq(mg_store_ping(st), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "SELECT"));
    mg_store_free(st);
}
END_TEST

START_TEST(test_unix_socket)
{
    char url[256];
    const char *why;
    mg_store_cfg_t cfg;
    mg_store_t *st;
    mg_addr_t a = addr("192.0.2.95");
    int banned = 0;
    int64_t exp = 0;

    memset(&cfg, 0, sizeof(cfg));
    snprintf(url, sizeof(url), "unix:%s?db=2", srv.sock);
    ck_assert_int_eq(mg_store_url_parse(url, &cfg.url, &why), 0);
    st = mg_store_new(&cfg);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(mg_store_ban(st, &a, MG_EXPIRY_NEVER, "manual"), 0);
    ck_assert_int_eq(mg_store_is_banned(st, &a, 1, &banned, &exp), 0);
    ck_assert_int_eq(banned, 1);
    ck_assert_int_eq(exp, MG_EXPIRY_NEVER);
    mg_store_free(st);
}
END_TEST

START_TEST(test_connection_refused)
{
    mg_test_redis_t nobody;
    mg_store_t *st;
    int64_t t0;

    memset(&nobody, 0, sizeof(nobody));
    nobody.port = mg_test_free_port();
    st = mg_test_store(&nobody, NULL, 0, 200, 200);
    t0 = mg_test_mono_ms();
    ck_assert_int_eq(mg_store_ping(st), -1);
    ck_assert_int_lt(mg_test_mono_ms() - t0, 500);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "connect"));
    ck_assert_int_eq(mg_store_connected(st), 0);
    /* every call fails the same way, none hangs or crashes */
    mg_addr_t a = addr("192.0.2.96");
    unsigned n;
    ck_assert_int_eq(mg_store_unban_all(st, &n), -1);
    ck_assert_int_eq(mg_store_history(st, &a, &n), -1);
    {
        uint64_t cursor = 0;
        ck_assert_int_eq(mg_store_scan(st, &cursor, 10, 1, NULL, NULL, NULL), -1);
    }
    mg_store_free(st);
    mg_store_free(NULL);
}
END_TEST

START_TEST(test_command_timeout)
{
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 200, 100);
    mg_policy_t p = policy(3, 60, 100);
    mg_addr_t a = addr("192.0.2.97");
    mg_record_result_t res;
    redisReply *r;
    int64_t t0, took;

    ck_assert_int_eq(mg_store_ping(st), 0);
    r = mg_test_redis_do(&srv, "CLIENT", "PAUSE", "500", NULL);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    t0 = mg_test_mono_ms();
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 1000, NULL, &p, &res), -1);
    took = mg_test_mono_ms() - t0;
    ck_assert_int_ge(took, 90);
    /* 100 ms and scheduling; well before the pause ends (had it waited,
     * the call would have succeeded) */
    ck_assert_int_lt(took, 300);
    ck_assert_ptr_nonnull(strstr(mg_store_error(st), "timed out"));
    ck_assert_int_eq(mg_store_connected(st), 0);
    mg_test_sleep_ms(600);
    ck_assert_int_eq(mg_store_record_failure(st, "w", &a, 2000, NULL, &p, &res), 0);
    /* the timed-out call was sent: it ran once the pause ended */
    ck_assert_uint_ge(res.count, 1);
    mg_store_free(st);
}
END_TEST

START_TEST(test_error_text_and_new)
{
    mg_store_cfg_t cfg;
    char prefix[200];
    mg_store_t *st;

    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(mg_store_url_parse(MG_STORE_DEFAULT_URL, &cfg.url, NULL), 0);
    memset(prefix, 'p', sizeof(prefix));
    prefix[sizeof(prefix) - 1] = '\0';
    cfg.prefix = prefix;
    ck_assert_ptr_null(mg_store_new(&cfg));
    cfg.prefix = NULL;   /* the default prefix */
    st = mg_store_new(&cfg);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(mg_store_error(st), "no error");
    mg_store_free(st);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("shared");
    TCase *own = tcase_create("own_server");

    tcase_add_unchecked_fixture(tc, shared_start, shared_stop);
    tcase_add_checked_fixture(tc, flush, NULL);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_counts_then_bans_at_maxretry);
    tcase_add_test(tc, test_window_ttl_and_ipv6_prefix_member);
    tcase_add_test(tc, test_window_edge_is_exact);
    tcase_add_test(tc, test_same_millisecond_counts_each_failure);
    tcase_add_test(tc, test_escalation_doubles_and_caps);
    tcase_add_test(tc, test_ban_only_raises_and_inf);
    tcase_add_test(tc, test_is_banned_and_unban);
    tcase_add_test(tc, test_scan_returns_live_bans_and_skips_garbage);
    tcase_add_test(tc, test_range_lists_in_expiry_order_across_ties);
    tcase_add_test(tc, test_prune_drops_ended_bans_a_bounded_number_at_a_time);
    tcase_add_test(tc, test_history_garbage_is_an_error);
    tcase_add_test(tc, test_bad_arguments_refused);
    tcase_add_test(tc, test_200_failures_8_clients_one_ban_maxretry_200);
    tcase_add_test(tc, test_200_failures_8_clients_one_ban_maxretry_10);
    tcase_add_test(tc, test_batch_equals_single_calls);
    tcase_add_test(tc, test_batch_partial_failure_reports_what_is_confirmed);
    tcase_add_test(tc, test_batch_rate_100k);
    tcase_add_test(tc, test_a_failure_sent_twice_counts_once);
    tcase_add_test(tc, test_a_batch_sent_again_counts_nothing_twice);
    tcase_add_test(tc, test_noscript_falls_back_to_eval);
    tcase_add_test(tc, test_select_db);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_command_timeout);
    suite_add_tcase(s, tc);

    tcase_set_timeout(own, 30);
    tcase_add_test(own, test_killed_and_restarted_redis);
    tcase_add_test(own, test_auth_with_password);
    tcase_add_test(own, test_auth_with_acl_user);
    tcase_add_test(own, test_connection_refused);
    tcase_add_test(own, test_errors_say_what_kind_they_are);
    tcase_add_test(own, test_error_text_and_new);
    suite_add_tcase(s, own);
    return s;
}

MG_TEST_MAIN(store_suite)
