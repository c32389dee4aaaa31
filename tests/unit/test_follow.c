/*
 * The follower against a real redis-server: a snapshot paged while the set
 * changes ends with exactly Redis's set, a follower cut off catches up from
 * the change log without reading the set again, a trimmed log or a Redis
 * that lost its data makes it read the set again, a hand edit reaches
 * every follower, and a change that would ban half the world is refused.
 *
 * The consumer here is a model: a sorted array per copy (live and the one
 * a snapshot builds), compared with ZRANGEBYSCORE of the live set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_follow.h"
#include "mg_store.h"
#include "mg_store_log.h"
#include "mg_test.h"
#include "mg_test_shared_redis.h"

#define NOW_FAR 4000000000LL    /* an expiry far away */

typedef struct model {
    mg_ban_t *live, *next;
    size_t nlive, nnext, cap_live, cap_next;
    int building;
    mg_follow_why_t why;
    unsigned begins, commits, aborts, applies, lost_begins, downs, ups, refused_notes;
    unsigned hand_edits;
    unsigned fail_begins;       /* begins to refuse */
} model_t;

static int key_cmp(const mg_addr_t *x, const mg_addr_t *y)
{
    int c = memcmp(x->a, y->a, 16);
    return c != 0 ? c : (int)x->plen - (int)y->plen;
}

static void set_put(mg_ban_t **v, size_t *n, size_t *cap, const mg_addr_t *k, int64_t e)
{
    for (size_t i = 0; i < *n; i++) {
        if (key_cmp(&(*v)[i].key, k) == 0) {
            if (e > (*v)[i].expiry)
                (*v)[i].expiry = e;
            return;
        }
    }
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *v = realloc(*v, *cap * sizeof(**v));
        ck_assert_ptr_nonnull(*v);
    }
    (*v)[*n].key = *k;
    (*v)[*n].expiry = e;
    (*n)++;
}

static void set_del(mg_ban_t *v, size_t *n, const mg_addr_t *k)
{
    for (size_t i = 0; i < *n; i++) {
        if (key_cmp(&v[i].key, k) == 0) {
            v[i] = v[--*n];
            return;
        }
    }
}

static void m_apply(void *baton, const mg_store_event_t *ev)
{
    model_t *m = baton;

    m->applies++;
    if (ev->is_ban) {
        set_put(&m->live, &m->nlive, &m->cap_live, &ev->key, ev->expiry);
        if (m->building)
            set_put(&m->next, &m->nnext, &m->cap_next, &ev->key, ev->expiry);
    }
    else {
        set_del(m->live, &m->nlive, &ev->key);
        if (m->building)
            set_del(m->next, &m->nnext, &ev->key);
    }
}

static int m_begin(void *baton, mg_follow_why_t why)
{
    model_t *m = baton;

    if (m->fail_begins > 0) {
        m->fail_begins--;
        return -1;
    }
    m->begins++;
    m->lost_begins += why == MG_SNAP_LOST;
    m->why = why;
    m->building = 1;
    m->nnext = 0;
    return 0;
}

static int m_add(void *baton, const mg_ban_t *bans, size_t n)
{
    model_t *m = baton;

    ck_assert(m->building);
    for (size_t i = 0; i < n; i++)
        set_put(&m->next, &m->nnext, &m->cap_next, &bans[i].key, bans[i].expiry);
    return 0;
}

static int m_commit(void *baton)
{
    model_t *m = baton;
    mg_ban_t *t = m->live;
    size_t c = m->cap_live;

    m->commits++;
    /* what a real consumer does after data loss: keep what it had */
    if (m->why == MG_SNAP_LOST)
        for (size_t i = 0; i < m->nlive; i++)
            set_put(&m->next, &m->nnext, &m->cap_next, &m->live[i].key, m->live[i].expiry);
    m->live = m->next;
    m->nlive = m->nnext;
    m->cap_live = m->cap_next;
    m->next = t;
    m->cap_next = c;
    m->nnext = 0;
    m->building = 0;
    return 0;
}

static void m_abort(void *baton)
{
    model_t *m = baton;

    m->aborts++;
    m->building = 0;
}

static void m_note(void *baton, mg_follow_note_t what, const char *detail)
{
    model_t *m = baton;

    (void)detail;
    m->downs += what == MG_NOTE_DOWN;
    m->ups += what == MG_NOTE_UP;
    m->refused_notes += what == MG_NOTE_REFUSED;
    m->hand_edits += what == MG_NOTE_HAND_EDIT;
}

static const mg_follow_ops_t ops = { m_apply, m_begin, m_add, m_commit, m_abort, m_note };

static void model_free(model_t *m)
{
    free(m->live);
    free(m->next);
}

static mg_follow_t *follower(const mg_test_redis_t *r, model_t *m, unsigned page, int check_ms)
{
    mg_follow_cfg_t fc;
    mg_store_t *tmp = mg_test_store(r, NULL, 0, 0, 0);
    mg_follow_t *f;

    ck_assert_ptr_nonnull(tmp);
    mg_store_free(tmp);
    mg_follow_cfg_defaults(&fc);
    {
        char url[128];
        const char *why;
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", r->port);
        ck_assert_int_eq(mg_store_url_parse(url, &fc.store.url, &why), 0);
    }
    fc.store.prefix = MG_STORE_DEFAULT_PREFIX;
    fc.page = page;
    fc.block_ms = 20;
    fc.check_ms = check_ms;
    fc.retry_ms = 50;
    memset(m, 0, sizeof(*m));
    f = mg_follow_new(&fc, &ops, m);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Step until the follower is in step and has read everything logged. */
static void settle(mg_follow_t *f, int max_steps)
{
    for (int i = 0; i < max_steps; i++) {
        mg_store_logstate_t ls;
        mg_store_t *st;
        char id[MG_STORE_IDLEN];
        uint64_t seq;
        int done;

        mg_follow_step(f, 20);
        if (!mg_follow_stats(f)->in_step || !mg_follow_position(f, id, &seq))
            continue;
        st = mg_test_store(&srv, NULL, 0, 0, 0);
        ck_assert_int_eq(mg_store_check(st, 1, &ls), 0);
        mg_store_free(st);
        done = ls.last_seq == seq && ls.card == (int64_t)ls.zcard;
        if (done)
            return;
    }
    ck_abort_msg("the follower did not settle");
}

/* The model equals the live set in Redis (members that parse). */
static void assert_same(const model_t *m)
{
    redisReply *r = mg_test_redis_do(&srv, "ZRANGEBYSCORE", "mailguard:bans", "(1700000000",
                                     "+inf", "WITHSCORES", NULL);
    size_t want = 0;

    ck_assert_ptr_nonnull(r);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        mg_addr_t k;
        const char *why;
        int found = 0;
        if (mg_cidr_parse(r->element[i]->str, &k, &why) != 0)
            continue;
        want++;
        for (size_t j = 0; j < m->nlive && !found; j++)
            found = key_cmp(&m->live[j].key, &k) == 0;
        ck_assert_msg(found, "%s is banned in Redis but not in the copy", r->element[i]->str);
    }
    ck_assert_uint_eq(m->nlive, want);
    freeReplyObject(r);
}

/* n addresses 10.x.y.z from base, banned by hand (ZADD, like a loader). */
static void bare_fill(unsigned base, unsigned n)
{
    redisContext *c = mg_test_redis_connect(&srv);

    ck_assert_ptr_nonnull(c);
    for (unsigned i = 0; i < n; i++) {
        unsigned v = base + i;
        redisAppendCommand(c, "ZADD mailguard:bans %lld 10.%u.%u.%u", NOW_FAR + (long long)i,
                           (v >> 16) & 255, (v >> 8) & 255, v & 255);
    }
    for (unsigned i = 0; i < n; i++) {
        void *rep;
        ck_assert_int_eq(redisGetReply(c, &rep), REDIS_OK);
        freeReplyObject(rep);
    }
    redisFree(c);
}

static mg_addr_t v4(unsigned v)
{
    char t[32];
    snprintf(t, sizeof(t), "10.%u.%u.%u", (v >> 16) & 255, (v >> 8) & 255, v & 255);
    return addr(t);
}

START_TEST(test_snapshot_paged_under_changes_ends_with_redis_set)
{
    model_t m;
    mg_follow_t *f = follower(&srv, &m, 100, 100000);
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    int steps = 0;

    bare_fill(0, 5000);
    ck_assert_int_eq(mg_store_resync(st, 0, NULL), 0);   /* card right: no hand edit */
    /* first step: connect and begin; then pages of ~100 while scripts
     * ban new addresses and unban old ones between every page */
    while (steps < 2000) {
        mg_follow_step(f, 20);
        steps++;
        if (m.begins == 1 && m.commits == 0) {
            unsigned i = (unsigned)steps;
            mg_addr_t fresh = v4(100000 + i), old = v4(i * 7 % 5000);
            ck_assert_int_eq(mg_store_ban(st, &fresh, NOW_FAR, "manual"), 0);
            ck_assert_int_eq(mg_store_unban(st, &old, NULL), 0);
        }
        if (m.commits > 0)
            break;
    }
    ck_assert_uint_eq(m.commits, 1);
    ck_assert_uint_gt(steps, 40);       /* really paged */
    settle(f, 500);
    ck_assert_uint_eq(m.begins, 1);     /* one snapshot, the rest followed */
    assert_same(&m);
    mg_follow_free(f);
    mg_store_free(st);
    model_free(&m);
}
END_TEST

START_TEST(test_a_follower_cut_off_catches_up_without_a_snapshot)
{
    model_t m;
    mg_follow_t *f = follower(&srv, &m, 1000, 100000);
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t keys[300];
    int64_t exp[300];
    redisReply *r;

    bare_fill(0, 200);
    settle(f, 200);
    ck_assert_uint_eq(m.commits, 1);
    /* cut off: its connection is killed, and changes happen meanwhile */
    r = mg_test_redis_do(&srv, "CLIENT", "KILL", "TYPE", "normal", NULL);
    freeReplyObject(r);
    for (unsigned i = 0; i < 300; i++) {
        keys[i] = v4(50000 + i);
        exp[i] = NOW_FAR;
    }
    ck_assert_int_eq(mg_store_ban_many(st, "manual", 300, keys, exp, NULL), 0);
    for (unsigned i = 0; i < 100; i++) {
        mg_addr_t k = v4(i);
        ck_assert_int_eq(mg_store_unban(st, &k, NULL), 0);
    }
    settle(f, 500);
    ck_assert_uint_eq(m.begins, 1);     /* caught up from the log */
    assert_same(&m);
    ck_assert_uint_eq(m.nlive, 200 - 100 + 300);
    mg_follow_free(f);
    mg_store_free(st);
    model_free(&m);
}
END_TEST

START_TEST(test_a_trimmed_log_makes_it_read_the_set_again)
{
    model_t m;
    mg_follow_t *f = follower(&srv, &m, 1000, 100000);
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    redisReply *r;

    settle(f, 200);
    /* changes it has not read yet, then the stream loses all but the
     * last few of them */
    for (unsigned i = 0; i < 50; i++) {
        mg_addr_t k = v4(7000 + i);
        ck_assert_int_eq(mg_store_ban(st, &k, NOW_FAR, "manual"), 0);
    }
    r = mg_test_redis_do(&srv, "XTRIM", "mailguard:log", "MAXLEN", "5", NULL);
    ck_assert_int_ge(r->integer, 45);
    freeReplyObject(r);
    settle(f, 500);
    ck_assert_uint_eq(m.begins, 2);
    ck_assert_int_eq(m.why, MG_SNAP_GAP);
    assert_same(&m);
    ck_assert_uint_eq(m.nlive, 50);
    mg_follow_free(f);
    mg_store_free(st);
    model_free(&m);
}
END_TEST

START_TEST(test_a_hand_edit_reaches_every_follower)
{
    model_t a, b;
    mg_follow_t *fa = follower(&srv, &a, 1000, 50), *fb = follower(&srv, &b, 1000, 60000);
    redisReply *r;

    unsigned edits;

    bare_fill(0, 30);       /* itself a hand edit, seen by the first check */
    settle(fa, 300);
    settle(fb, 300);
    edits = a.hand_edits + b.hand_edits;
    /* a bare ZREM, without the scripts */
    r = mg_test_redis_do(&srv, "ZREM", "mailguard:bans", "10.0.0.3", NULL);
    freeReplyObject(r);
    /* fa checks often and announces it; fb never checks in this test, it
     * learns from the log */
    for (int i = 0; i < 300 && (a.begins < 2 || b.begins < 2); i++) {
        mg_follow_step(fa, 10);
        mg_follow_step(fb, 10);
        mg_test_sleep_ms(2);
    }
    settle(fa, 300);
    settle(fb, 300);
    ck_assert_uint_eq(a.hand_edits + b.hand_edits, edits + 1);
    ck_assert_uint_eq(b.begins, 2);
    ck_assert_int_eq(b.why, MG_SNAP_RESYNC);
    assert_same(&a);
    assert_same(&b);
    ck_assert_uint_eq(b.nlive, 29);
    mg_follow_free(fa);
    mg_follow_free(fb);
    model_free(&a);
    model_free(&b);
}
END_TEST

START_TEST(test_a_ban_wider_than_the_floor_is_refused)
{
    model_t m;
    mg_follow_t *f = follower(&srv, &m, 1000, 100000);
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t half = addr("0.0.0.0/1"), wide6 = addr("2001::/16"), ok = addr("192.0.2.0/24");

    settle(f, 200);
    ck_assert_int_eq(mg_store_ban(st, &half, NOW_FAR, "manual"), 0);
    ck_assert_int_eq(mg_store_ban(st, &wide6, NOW_FAR, "manual"), 0);
    ck_assert_int_eq(mg_store_ban(st, &ok, NOW_FAR, "manual"), 0);
    for (int i = 0; i < 50; i++)
        mg_follow_step(f, 10);
    ck_assert_uint_eq(m.nlive, 1);
    ck_assert_uint_eq(m.refused_notes, 1);      /* logged once */
    ck_assert_uint_eq(mg_follow_stats(f)->refused, 2);
    /* a snapshot refuses them too */
    mg_follow_rebuild(f);
    for (int i = 0; i < 200 && m.commits < 2; i++)
        mg_follow_step(f, 10);
    ck_assert_uint_eq(m.commits, 2);
    ck_assert_uint_eq(m.nlive, 1);
    mg_follow_free(f);
    mg_store_free(st);
    model_free(&m);
}
END_TEST

START_TEST(test_resuming_from_a_saved_position_reads_no_set)
{
    model_t m, n;
    mg_follow_t *f = follower(&srv, &m, 1000, 100000), *g;
    mg_store_t *st = mg_test_store(&srv, NULL, 0, 0, 0);
    char id[MG_STORE_IDLEN];
    uint64_t seq;
    mg_addr_t k = v4(900);

    bare_fill(0, 20);
    settle(f, 200);
    ck_assert(mg_follow_position(f, id, &seq));
    mg_follow_free(f);
    ck_assert_int_eq(mg_store_ban(st, &k, NOW_FAR, "manual"), 0);
    g = follower(&srv, &n, 1000, 100000);
    mg_follow_resume(g, id, seq);
    settle(g, 200);
    ck_assert_uint_eq(n.begins, 0);
    ck_assert_uint_eq(n.applies, 1);
    ck_assert_uint_eq(n.nlive, 1);      /* only what changed since */
    mg_follow_free(g);
    mg_store_free(st);
    model_free(&m);
    model_free(&n);
}
END_TEST

START_TEST(test_redis_that_lost_its_data_keeps_what_the_copy_had)
{
    mg_test_redis_t own;
    model_t m;
    mg_follow_t *f;
    mg_store_t *st;
    mg_addr_t k = v4(1), later = v4(2);

    ck_assert_int_eq(mg_test_redis_start(&own, NULL), 0);
    f = follower(&own, &m, 1000, 50);
    st = mg_test_store(&own, NULL, 0, 0, 0);
    ck_assert_int_eq(mg_store_ban(st, &k, NOW_FAR, "manual"), 0);
    for (int i = 0; i < 100 && m.nlive == 0; i++)
        mg_follow_step(f, 10);
    ck_assert_uint_eq(m.nlive, 1);
    /* killed and started empty: no persistence */
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    ck_assert_int_eq(mg_store_ban(st, &later, NOW_FAR, "manual"), 0);
    for (int i = 0; i < 300 && m.lost_begins == 0; i++)
        mg_follow_step(f, 10);
    for (int i = 0; i < 100 && m.building; i++)
        mg_follow_step(f, 10);
    ck_assert_uint_ge(m.lost_begins, 1);
    ck_assert_uint_eq(m.nlive, 2);      /* the old ban kept, the new one in */
    mg_follow_free(f);
    mg_store_free(st);
    model_free(&m);
    mg_test_redis_stop(&own);
}
END_TEST

START_TEST(test_a_consumer_that_keeps_failing_is_retried_with_back_off)
{
    model_t m;
    mg_follow_t *f = follower(&srv, &m, 1000, 100000);
    int64_t t0;

    settle(f, 200);
    ck_assert_uint_eq(m.begins, 1);
    /* asked twice: one snapshot, after 1 s (a second ask does not delay it) */
    t0 = mg_test_mono_ms();
    mg_follow_rebuild(f);
    mg_follow_rebuild(f);
    while (m.begins < 2 && mg_test_mono_ms() - t0 < 5000)
        mg_follow_step(f, 20);
    ck_assert_uint_eq(m.begins, 2);
    ck_assert_int_ge(mg_test_mono_ms() - t0, 900);
    ck_assert_int_lt(mg_test_mono_ms() - t0, 1900);
    settle(f, 200);
    /* a consumer that refuses twice: tried again after 1 s, then 2 s */
    m.fail_begins = 2;
    t0 = mg_test_mono_ms();
    mg_follow_rebuild(f);
    while (m.begins < 3 && mg_test_mono_ms() - t0 < 8000)
        mg_follow_step(f, 20);
    ck_assert_uint_eq(m.begins, 3);
    ck_assert_int_ge(mg_test_mono_ms() - t0, 1000 + 1000 + 2000 - 100);
    mg_follow_free(f);
    model_free(&m);
}
END_TEST

static Suite *follow_suite(void)
{
    Suite *s = suite_create("follow");
    TCase *tc = tcase_create("shared");

    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, shared_start, shared_stop);
    tcase_add_checked_fixture(tc, flush, NULL);
    tcase_add_test(tc, test_snapshot_paged_under_changes_ends_with_redis_set);
    tcase_add_test(tc, test_a_follower_cut_off_catches_up_without_a_snapshot);
    tcase_add_test(tc, test_a_trimmed_log_makes_it_read_the_set_again);
    tcase_add_test(tc, test_a_hand_edit_reaches_every_follower);
    tcase_add_test(tc, test_a_ban_wider_than_the_floor_is_refused);
    tcase_add_test(tc, test_resuming_from_a_saved_position_reads_no_set);
    tcase_add_test(tc, test_redis_that_lost_its_data_keeps_what_the_copy_had);
    tcase_add_test(tc, test_a_consumer_that_keeps_failing_is_retried_with_back_off);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(follow_suite)
