/* Local failure windows (Redis unreachable) and the pending-ban queue. */
#include <stdio.h>
#include <string.h>

#include "mg_localwin.h"
#include "mg_test.h"

#define T0 ((int64_t)1700000000)

static mg_addr_t addr(const char *s)
{
    mg_addr_t a;
    const char *why = NULL;

    ck_assert_msg(mg_cidr_parse(s, &a, &why) == 0, "%s: %s", s, why);
    return a;
}

static void *region(uint32_t entries, uint32_t queue, size_t *size)
{
    void *mem;

    *size = mg_localwin_size(entries, queue);
    ck_assert_uint_gt(*size, 0);
    mem = aligned_alloc(64, (*size + 63) & ~(size_t)63);
    ck_assert_ptr_nonnull(mem);
    memset(mem, 0x5a, *size);
    return mem;
}

static mg_localwin_t *win(uint32_t entries, uint32_t queue, void **mem)
{
    size_t size;
    mg_localwin_t *w;

    *mem = region(entries, queue, &size);
    w = mg_localwin_init(*mem, size, entries, queue);
    ck_assert_ptr_eq(w, *mem);
    return w;
}

static mg_policy_t policy(unsigned maxretry, int64_t findtime, int64_t bantime)
{
    mg_policy_t p;

    mg_policy_defaults(&p);
    p.maxretry = maxretry;
    p.findtime = findtime;
    p.bantime = bantime;
    return p;
}

static mg_record_result_t rec(mg_localwin_t *w, const char *jail, const char *a, int64_t now,
                              const mg_policy_t *p)
{
    mg_record_result_t r;
    mg_addr_t k = addr(a);

    memset(&r, 0x77, sizeof(r));
    ck_assert_int_eq(mg_localwin_record(w, jail, &k, now, p, &r), 0);
    return r;
}

START_TEST(sizes_and_init)
{
    size_t size;
    void *mem;

    ck_assert_uint_eq(mg_localwin_size(0, 10), 0);
    ck_assert_uint_eq(mg_localwin_size(UINT32_MAX, 10), 0);
    ck_assert_uint_eq(mg_localwin_size(10, UINT32_MAX), 0);
    ck_assert_uint_gt(mg_localwin_size(10, 0), 0);
    ck_assert_uint_gt(mg_localwin_size(10, 10), mg_localwin_size(10, 0));
    ck_assert_uint_gt(mg_localwin_size(11, 10), mg_localwin_size(10, 10));

    mem = region(8, 4, &size);
    ck_assert_ptr_null(mg_localwin_init(NULL, size, 8, 4));
    ck_assert_ptr_null(mg_localwin_init(mem, size - 1, 8, 4));
    ck_assert_ptr_null(mg_localwin_init(mem, size, 0, 4));
    ck_assert_ptr_null(mg_localwin_init((char *)mem + 4, size - 4, 1, 0));
    ck_assert_ptr_eq(mg_localwin_init(mem, size, 8, 4), mem);
    ck_assert_uint_eq(mg_localwin_pending(mem), 0);
    ck_assert_uint_eq(mg_localwin_pending(NULL), 0);
    free(mem);
}
END_TEST

START_TEST(ban_at_maxretry)
{
    void *mem;
    mg_localwin_t *w = win(64, 8, &mem);
    mg_policy_t p = policy(3, 600, 3600);
    mg_record_result_t r;

    r = rec(w, "webmail", "203.0.113.5", T0, &p);
    ck_assert_uint_eq(r.count, 1);
    ck_assert_int_eq(r.banned, 0);
    ck_assert_int_eq(r.expiry, 0);
    ck_assert_uint_eq(r.bans, 0);
    r = rec(w, "webmail", "203.0.113.5", T0 + 1, &p);
    ck_assert_uint_eq(r.count, 2);
    ck_assert_int_eq(r.banned, 0);
    r = rec(w, "webmail", "203.0.113.5", T0 + 2, &p);
    ck_assert_uint_eq(r.count, 3);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_int_eq(r.expiry, T0 + 2 + 3600);
    ck_assert_uint_eq(r.bans, 1);
    /* the ban cleared the window */
    r = rec(w, "webmail", "203.0.113.5", T0 + 3, &p);
    ck_assert_uint_eq(r.count, 1);
    ck_assert_int_eq(r.banned, 0);
    /* failures in flight during the running ban do not ban again */
    rec(w, "webmail", "203.0.113.5", T0 + 4, &p);
    r = rec(w, "webmail", "203.0.113.5", T0 + 5, &p);
    ck_assert_uint_eq(r.count, 3);
    ck_assert_int_eq(r.banned, 0);
    ck_assert_int_eq(r.expiry, 0);
    ck_assert_uint_eq(r.bans, 0);
    r = rec(w, "webmail", "203.0.113.5", T0 + 6, &p);
    ck_assert_uint_eq(r.count, 1);
    /* other addresses and other jails count on their own */
    r = rec(w, "webmail", "203.0.113.6", T0 + 6, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "imap", "203.0.113.5", T0 + 6, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "webmail", "2001:db8:1:2::/64", T0 + 6, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "webmail", "2001:db8:1:2::/63", T0 + 6, &p);
    ck_assert_uint_eq(r.count, 1);
    /* maxretry 1: the first failure bans */
    p.maxretry = 1;
    r = rec(w, "strict", "198.51.100.1", T0, &p);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_uint_eq(r.count, 1);
    free(mem);
}
END_TEST

START_TEST(exact_window_edges)
{
    void *mem;
    mg_localwin_t *w = win(64, 8, &mem);
    mg_policy_t p = policy(2, 10, 100);
    mg_record_result_t r;

    /* a failure at t no longer counts at t + findtime */
    rec(w, "j", "10.0.0.1", T0, &p);
    r = rec(w, "j", "10.0.0.1", T0 + 10, &p);
    ck_assert_uint_eq(r.count, 1);
    ck_assert_int_eq(r.banned, 0);
    /* ... but still counts one second earlier */
    rec(w, "j", "10.0.0.2", T0, &p);
    r = rec(w, "j", "10.0.0.2", T0 + 9, &p);
    ck_assert_uint_eq(r.count, 2);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_int_eq(r.expiry, T0 + 9 + 100);
    /* the failure at t+10 of 10.0.0.1 counts until t+19 */
    r = rec(w, "j", "10.0.0.1", T0 + 19, &p);
    ck_assert_uint_eq(r.count, 2);
    ck_assert_int_eq(r.banned, 1);
    /* two failures in the same second count twice */
    rec(w, "j", "10.0.0.3", T0, &p);
    r = rec(w, "j", "10.0.0.3", T0, &p);
    ck_assert_int_eq(r.banned, 1);
    /* times slightly out of order (several processes) */
    p.maxretry = 5;
    rec(w, "j", "10.0.0.4", T0 + 5, &p);
    rec(w, "j", "10.0.0.4", T0 + 3, &p);
    r = rec(w, "j", "10.0.0.4", T0 + 4, &p);
    ck_assert_uint_eq(r.count, 3);
    r = rec(w, "j", "10.0.0.4", T0 + 14, &p);   /* cutoff t+4: keeps t+5 only */
    ck_assert_uint_eq(r.count, 2);
    r = rec(w, "j", "10.0.0.4", T0 + 100, &p);
    ck_assert_uint_eq(r.count, 1);
    free(mem);
}
END_TEST

START_TEST(escalation)
{
    void *mem;
    mg_localwin_t *w = win(64, 8, &mem);
    mg_policy_t p = policy(1, 60, 100);
    mg_record_result_t r;
    int64_t t = T0;

    p.increment = 1;
    p.factor = 2;
    p.maxtime = 1000;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 100);
    ck_assert_uint_eq(r.bans, 1);
    t = r.expiry;                      /* the ban is over at its expiry */
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_int_eq(r.expiry, t + 200);
    ck_assert_uint_eq(r.bans, 2);
    t = r.expiry;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 400);
    t = r.expiry;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 800);
    t = r.expiry;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 1000);   /* capped at maxtime */
    ck_assert_uint_eq(r.bans, 5);
    /* the history is forgotten max(30 days, 2 * maxtime) after the last ban */
    t += 30 * 86400 + 1;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 100);
    ck_assert_uint_eq(r.bans, 1);
    /* within that time it is kept */
    t = r.expiry + 30 * 86400 - 200;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_uint_eq(r.bans, 2);
    ck_assert_int_eq(r.expiry, t + 200);
    /* without increment: always bantime, history still counted */
    p.increment = 0;
    t = r.expiry;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, t + 100);
    ck_assert_uint_eq(r.bans, 3);
    /* an escalated ban that would pass the int64 range is permanent */
    p.increment = 1;
    p.factor = 1e300;
    p.maxtime = INT64_MAX;
    t = r.expiry;
    r = rec(w, "j", "192.0.2.1", t, &p);
    ck_assert_int_eq(r.expiry, MG_EXPIRY_NEVER);
    free(mem);
}
END_TEST

START_TEST(maxretry_beyond_capacity)
{
    void *mem;
    mg_localwin_t *w = win(16, 8, &mem);
    mg_policy_t p = policy(MG_LOCALWIN_MAXRETRY + 1, 3600, 100);
    mg_record_result_t r;
    int i;

    /* never a local ban: the window cannot hold maxretry failures */
    for (i = 0; i < 3 * MG_LOCALWIN_MAXRETRY; i++) {
        r = rec(w, "big", "10.9.9.9", T0 + i, &p);
        ck_assert_int_eq(r.banned, 0);
        ck_assert_uint_eq(r.count, i < MG_LOCALWIN_MAXRETRY ? (unsigned)i + 1 : MG_LOCALWIN_MAXRETRY);
    }
    /* the saturated window still slides: the oldest kept were dropped */
    r = rec(w, "big", "10.9.9.9", T0 + 3 * MG_LOCALWIN_MAXRETRY - 1 + 3600 - 10, &p);
    ck_assert_uint_eq(r.count, 11);
    /* exactly at capacity it bans */
    p.maxretry = MG_LOCALWIN_MAXRETRY;
    for (i = 0; i < MG_LOCALWIN_MAXRETRY - 1; i++) {
        r = rec(w, "cap", "10.8.8.8", T0 + i, &p);
        ck_assert_int_eq(r.banned, 0);
    }
    r = rec(w, "cap", "10.8.8.8", T0 + i, &p);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_uint_eq(r.count, MG_LOCALWIN_MAXRETRY);
    free(mem);
}
END_TEST

START_TEST(bad_arguments)
{
    void *mem;
    mg_localwin_t *w = win(8, 2, &mem);
    mg_policy_t p = policy(3, 60, 60);
    mg_record_result_t r;
    mg_addr_t k = addr("10.0.0.1"), bad = k;
    char longjail[MG_JAIL_BUF + 8];

    memset(longjail, 'x', sizeof(longjail) - 1);
    longjail[sizeof(longjail) - 1] = '\0';
    ck_assert_int_eq(mg_localwin_record(NULL, "j", &k, T0, &p, &r), -1);
    ck_assert_int_eq(mg_localwin_record(w, NULL, &k, T0, &p, &r), -1);
    ck_assert_int_eq(mg_localwin_record(w, "j", NULL, T0, &p, &r), -1);
    ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, NULL, &r), -1);
    ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, &p, NULL), -1);
    ck_assert_int_eq(mg_localwin_record(w, "", &k, T0, &p, &r), -1);
    ck_assert_int_eq(mg_localwin_record(w, longjail, &k, T0, &p, &r), -1);
    longjail[MG_JAIL_NAME_MAX] = '\0';   /* 47 characters: the longest accepted */
    ck_assert_int_eq(mg_localwin_record(w, longjail, &k, T0, &p, &r), 0);
    longjail[MG_JAIL_NAME_MAX] = 'x';
    longjail[MG_JAIL_BUF] = '\0';       /* 48: one too many */
    ck_assert_int_eq(mg_localwin_record(w, longjail, &k, T0, &p, &r), -1);
    bad.plen = 0;
    ck_assert_int_eq(mg_localwin_record(w, "j", &bad, T0, &p, &r), -1);
    bad.plen = 200;
    ck_assert_int_eq(mg_localwin_record(w, "j", &bad, T0, &p, &r), -1);
    p.maxretry = 0;
    ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, &p, &r), -1);
    p = policy(3, 0, 60);
    ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, &p, &r), -1);
    p = policy(3, 60, 0);
    ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, &p, &r), -1);
    /* refused calls counted nothing */
    p = policy(3, 60, 60);
    r = rec(w, "j", "10.0.0.1", T0, &p);
    ck_assert_uint_eq(r.count, 1);
    free(mem);
}
END_TEST

START_TEST(eviction)
{
    void *mem;
    mg_localwin_t *w = win(4, 2, &mem);
    mg_policy_t p = policy(5, 3600, 60);
    mg_record_result_t r;
    char text[32];
    unsigned i;

    /* four entries, touched at T0+1..T0+4 (twice each) */
    for (i = 1; i <= 4; i++) {
        snprintf(text, sizeof(text), "10.0.0.%u", i);
        rec(w, "j", text, T0 + i, &p);
        rec(w, "j", text, T0 + i, &p);
    }
    /* 10.0.0.1 was touched longest ago: a newcomer replaces it */
    r = rec(w, "j", "10.0.0.5", T0 + 10, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "j", "10.0.0.2", T0 + 11, &p);
    ck_assert_uint_eq(r.count, 3);
    r = rec(w, "j", "10.0.0.3", T0 + 12, &p);
    ck_assert_uint_eq(r.count, 3);
    r = rec(w, "j", "10.0.0.4", T0 + 13, &p);
    ck_assert_uint_eq(r.count, 3);
    /* 10.0.0.1 was forgotten (it starts over), and in coming back it
     * evicted 10.0.0.5, the least recently touched now */
    r = rec(w, "j", "10.0.0.1", T0 + 14, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "j", "10.0.0.2", T0 + 15, &p);
    ck_assert_uint_eq(r.count, 4);

    /* a flood of distinct addresses stays bounded and keeps working */
    for (i = 0; i < 20000; i++) {
        mg_addr_t k = addr("10.1.0.0");

        k.a[14] = (uint8_t)(i >> 8);
        k.a[15] = (uint8_t)i;
        ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0 + 20 + i, &p, &r), 0);
        ck_assert_uint_eq(r.count, 1);
    }
    r = rec(w, "j", "10.0.0.9", T0 + 30000, &p);
    ck_assert_uint_eq(r.count, 1);
    r = rec(w, "j", "10.0.0.9", T0 + 30001, &p);
    ck_assert_uint_eq(r.count, 2);
    free(mem);
}
END_TEST

START_TEST(eviction_large_table)
{
    void *mem;
    mg_localwin_t *w = win(1000, 2, &mem);
    mg_policy_t p = policy(50, 3600, 60);
    mg_record_result_t r;
    unsigned i, kept = 0;

    /* 500 addresses in a 1000-entry table: all remembered */
    for (i = 0; i < 500; i++) {
        mg_addr_t k = addr("172.16.0.0");

        k.a[14] = (uint8_t)(i >> 8);
        k.a[15] = (uint8_t)i;
        ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0, &p, &r), 0);
    }
    for (i = 0; i < 500; i++) {
        mg_addr_t k = addr("172.16.0.0");

        k.a[14] = (uint8_t)(i >> 8);
        k.a[15] = (uint8_t)i;
        ck_assert_int_eq(mg_localwin_record(w, "j", &k, T0 + 1, &p, &r), 0);
        kept += r.count == 2;
    }
    ck_assert_uint_eq(kept, 500);
    free(mem);
}
END_TEST

START_TEST(pending_queue)
{
    void *mem;
    mg_localwin_t *w = win(8, 3, &mem);
    mg_pending_ban_t pb;
    char text[32];
    unsigned i;
    char longjail[100];

    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 0);
    for (i = 1; i <= 5; i++) {
        mg_addr_t k;

        snprintf(text, sizeof(text), "192.0.2.%u", i);
        k = addr(text);
        mg_localwin_queue_ban(w, &k, T0 + i, i % 2 ? "webmail" : "imap");
        ck_assert_uint_eq(mg_localwin_pending(w), i < 3 ? i : 3);
    }
    /* the oldest two were dropped */
    for (i = 3; i <= 5; i++) {
        char buf[MG_ADDR_STRLEN];

        ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
        mg_addr_format(&pb.key, buf, sizeof(buf));
        snprintf(text, sizeof(text), "192.0.2.%u", i);
        ck_assert_str_eq(buf, text);
        ck_assert_int_eq(pb.expiry, T0 + i);
        ck_assert_str_eq(pb.jail, i % 2 ? "webmail" : "imap");
    }
    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 0);
    ck_assert_uint_eq(mg_localwin_pending(w), 0);

    /* wrap-around keeps order; re-queue after a failed write goes last */
    for (i = 0; i < 10; i++) {
        mg_addr_t k = addr("198.51.100.1");

        k.a[15] = (uint8_t)i;
        mg_localwin_queue_ban(w, &k, T0 + i, "j");
        if (i % 2) {
            ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
            mg_localwin_queue_ban(w, &pb.key, pb.expiry, pb.jail);
        }
    }
    ck_assert_uint_eq(mg_localwin_pending(w), 3);
    {
        /* worked by hand: each full queue drops its head, each re-queue
         * moves the head (the element 0) to the tail */
        static const int64_t want[3] = { 8, 9, 0 };

        for (i = 0; i < 3; i++) {
            ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
            ck_assert_int_eq(pb.expiry, T0 + want[i]);
            ck_assert_int_eq(pb.key.a[15], (uint8_t)want[i]);
            ck_assert_str_eq(pb.jail, "j");
        }
        ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 0);
    }

    /* long and missing jail names, NULL arguments */
    memset(longjail, 'y', sizeof(longjail) - 1);
    longjail[sizeof(longjail) - 1] = '\0';
    pb.key = addr("10.0.0.1");
    mg_localwin_queue_ban(w, &pb.key, T0, longjail);
    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
    ck_assert_uint_eq(strlen(pb.jail), MG_JAIL_NAME_MAX);
    mg_localwin_queue_ban(w, &pb.key, T0, NULL);
    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
    ck_assert_str_eq(pb.jail, "");
    mg_localwin_queue_ban(NULL, &pb.key, T0, "j");
    mg_localwin_queue_ban(w, NULL, T0, "j");
    ck_assert_uint_eq(mg_localwin_pending(w), 0);
    ck_assert_int_eq(mg_localwin_pop_ban(NULL, &pb), 0);
    ck_assert_int_eq(mg_localwin_pop_ban(w, NULL), 0);
    free(mem);
}
END_TEST

START_TEST(queue_of_zero)
{
    void *mem;
    mg_localwin_t *w = win(8, 0, &mem);
    mg_pending_ban_t pb;
    mg_addr_t k = addr("10.0.0.1");

    mg_localwin_queue_ban(w, &k, T0, "j");
    ck_assert_uint_eq(mg_localwin_pending(w), 0);
    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 0);
    free(mem);
}
END_TEST

START_TEST(attach_previous_region)
{
    size_t size;
    void *mem = region(32, 4, &size), *moved;
    mg_localwin_t *w = mg_localwin_init(mem, size, 32, 4);
    mg_policy_t p = policy(3, 600, 60);
    mg_record_result_t r;
    mg_pending_ban_t pb;
    mg_addr_t k = addr("2001:db8:1:2::/64");

    rec(w, "j", "10.0.0.1", T0, &p);
    rec(w, "j", "10.0.0.1", T0 + 1, &p);
    mg_localwin_queue_ban(w, &k, T0 + 99, "imap");

    moved = aligned_alloc(64, (size + 63) & ~(size_t)63);
    memcpy(moved, mem, size);
    memset(mem, 0, size);
    ck_assert_ptr_null(mg_localwin_attach(mem, size, 32, 4));   /* no magic */
    w = mg_localwin_attach(moved, size, 32, 4);
    ck_assert_ptr_eq(w, moved);
    r = rec(w, "j", "10.0.0.1", T0 + 2, &p);
    ck_assert_uint_eq(r.count, 3);
    ck_assert_int_eq(r.banned, 1);
    ck_assert_uint_eq(mg_localwin_pending(w), 1);
    ck_assert_int_eq(mg_localwin_pop_ban(w, &pb), 1);
    ck_assert(mg_addr_equal(&pb.key, &k));
    ck_assert_str_eq(pb.jail, "imap");

    ck_assert_ptr_null(mg_localwin_attach(moved, size, 31, 4));
    ck_assert_ptr_null(mg_localwin_attach(moved, size, 32, 5));
    ck_assert_ptr_null(mg_localwin_attach(moved, size - 1, 32, 4));
    ck_assert_ptr_null(mg_localwin_attach(NULL, size, 32, 4));
    ((uint32_t *)moved)[1] ^= 0x100;   /* layout version */
    ck_assert_ptr_null(mg_localwin_attach(moved, size, 32, 4));
    ((uint32_t *)moved)[1] ^= 0x100;
    ck_assert_ptr_nonnull(mg_localwin_attach(moved, size, 32, 4));
    free(mem);
    free(moved);
}
END_TEST

/* The sync job reads the queue without draining it. */
static int collect(void *baton, const mg_pending_ban_t *ban)
{
    int64_t *seen = baton;

    seen[++seen[0]] = ban->expiry;
    return seen[0] == 2;   /* stop after the second */
}

START_TEST(pending_foreach_leaves_queue)
{
    void *mem;
    mg_localwin_t *w = win(8, 3, &mem);
    int64_t seen[8] = { 0 };
    unsigned i;

    mg_localwin_foreach_pending(w, collect, seen);
    ck_assert_int_eq(seen[0], 0);
    for (i = 1; i <= 4; i++) {
        mg_addr_t k = addr(i == 1 ? "192.0.2.1" : i == 2 ? "192.0.2.2"
                               : i == 3 ? "192.0.2.3" : "192.0.2.4");
        mg_localwin_queue_ban(w, &k, T0 + i, "j");
    }
    /* oldest first (the first was dropped by the ring), early stop honoured */
    mg_localwin_foreach_pending(w, collect, seen);
    ck_assert_int_eq(seen[0], 2);
    ck_assert_int_eq(seen[1], T0 + 2);
    ck_assert_int_eq(seen[2], T0 + 3);
    ck_assert_uint_eq(mg_localwin_pending(w), 3);
    mg_localwin_foreach_pending(NULL, collect, seen);
    mg_localwin_foreach_pending(w, NULL, seen);
    ck_assert_int_eq(seen[0], 2);
    free(mem);
}
END_TEST

static Suite *localwin_suite(void)
{
    Suite *s = suite_create("localwin");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, sizes_and_init);
    tcase_add_test(tc, ban_at_maxretry);
    tcase_add_test(tc, exact_window_edges);
    tcase_add_test(tc, escalation);
    tcase_add_test(tc, maxretry_beyond_capacity);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, eviction);
    tcase_add_test(tc, eviction_large_table);
    tcase_add_test(tc, pending_queue);
    tcase_add_test(tc, pending_foreach_leaves_queue);
    tcase_add_test(tc, queue_of_zero);
    tcase_add_test(tc, attach_previous_region);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(localwin_suite)
