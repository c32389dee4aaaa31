/*
 * Events: the strict message parser, and a subscriber on a real
 * redis-server receiving what bans, unbans and record_failure publish.
 */
#include <stdio.h>
#include <string.h>

#include "mg_addr.h"
#include "mg_store.h"
#include "mg_test.h"
#include "mg_test_shared_redis.h"

static int parse(const char *msg, mg_store_event_t *ev)
{
    return mg_store_parse_event(msg, strlen(msg), ev);
}

static void key_text(const mg_store_event_t *ev, char *buf)
{
    mg_addr_format(&ev->key, buf, MG_ADDR_STRLEN);
}

/* ---------- parser ---------- */

START_TEST(test_parse_ban)
{
    mg_store_event_t ev;
    char a[MG_ADDR_STRLEN];

    ck_assert_int_eq(parse("ban 203.0.113.5 1700003600 webmail", &ev), 0);
    ck_assert_int_eq(ev.is_ban, 1);
    key_text(&ev, a);
    ck_assert_str_eq(a, "203.0.113.5");
    ck_assert_int_eq(ev.expiry, 1700003600);
    ck_assert_str_eq(ev.jail, "webmail");

    ck_assert_int_eq(parse("ban 2001:db8:1:2::/64 inf manual", &ev), 0);
    key_text(&ev, a);
    ck_assert_str_eq(a, "2001:db8:1:2::/64");
    ck_assert_int_eq(ev.expiry, MG_EXPIRY_NEVER);
    ck_assert_str_eq(ev.jail, "manual");

    ck_assert_int_eq(parse("ban ::ffff:198.51.100.7 +inf dbmail-imap", &ev), 0);
    key_text(&ev, a);
    ck_assert_str_eq(a, "198.51.100.7");
    ck_assert_int_eq(ev.expiry, MG_EXPIRY_NEVER);
    ck_assert_str_eq(ev.jail, "dbmail-imap");

    /* the longest jail that fits */
    char msg[128], jail[48];
    memset(jail, 'j', 47);
    jail[47] = '\0';
    snprintf(msg, sizeof(msg), "ban 10.0.0.1 5 %s", jail);
    ck_assert_int_eq(parse(msg, &ev), 0);
    ck_assert_str_eq(ev.jail, jail);
    ck_assert_int_eq(ev.expiry, 5);
}
END_TEST

START_TEST(test_parse_unban)
{
    mg_store_event_t ev;
    char a[MG_ADDR_STRLEN];

    ck_assert_int_eq(parse("unban 2001:db8::5", &ev), 0);
    ck_assert_int_eq(ev.is_ban, 0);
    key_text(&ev, a);
    ck_assert_str_eq(a, "2001:db8::5");
    ck_assert_int_eq(ev.expiry, 0);
    ck_assert_str_eq(ev.jail, "");
    /* counted length: what follows is not part of the message */
    ck_assert_int_eq(mg_store_parse_event("unban 10.1.2.3trailing", 14, &ev), 0);
    key_text(&ev, a);
    ck_assert_str_eq(a, "10.1.2.3");
}
END_TEST

static const char *const bad_events[] = {
    "",
    "ban",
    "ban ",
    "unban",
    "unban ",
    "BAN 10.0.0.1 5 j",
    "Ban 10.0.0.1 5 j",
    " ban 10.0.0.1 5 j",
    "ban  10.0.0.1 5 j",
    "ban 10.0.0.1  5 j",
    "ban 10.0.0.1 5  j",
    "ban 10.0.0.1 5 j ",
    "ban 10.0.0.1 5 j extra",
    "ban\t10.0.0.1 5 j",
    "ban 10.0.0.1\t5 j",
    "ban 10.0.0.1 5",
    "ban 10.0.0.1 5 ",
    "ban 10.0.0.1",
    "ban 10.0.0.1 ",
    "ban not-an-address 5 j",
    "ban 10.0.0.256 5 j",
    "ban 10.0.0.1/0 5 j",
    "ban 10.0.0.1/33 5 j",
    "ban [2001:db8::1] 5 j",
    "ban 10.0.0.1:80 5 j",
    "ban 10.0.0.1 -5 j",
    "ban 10.0.0.1 0 j",
    "ban 10.0.0.1 05 j",
    "ban 10.0.0.1 5a j",
    "ban 10.0.0.1 1.5 j",
    "ban 10.0.0.1 1e9 j",
    "ban 10.0.0.1 -inf j",
    "ban 10.0.0.1 Inf j",
    "ban 10.0.0.1 infinity j",
    "ban 10.0.0.1 nan j",
    "ban 10.0.0.1 9999999999999999999 j",
    "ban 10.0.0.1 5 jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj",
    "ban 10.0.0.1 5 j\x01",
    "ban 10.0.0.1 5 j\x7f",
    "ban 10.0.0.1 5 j\xc3\xa9",
    "unban 10.0.0.1 5",
    "unban 10.0.0.1 ",
    "unban  10.0.0.1",
    "unban not-an-address",
    "unban 10.0.0.1/0",
    "unbanned 10.0.0.1",
    "subscribe mailguard:events 1",
    "ban 0123456789012345678901234567890123456789012345678901234567890123456789 5 j",
};

START_TEST(test_parse_refusals)
{
    for (size_t i = 0; i < sizeof(bad_events) / sizeof(bad_events[0]); i++) {
        mg_store_event_t ev;
        memset(&ev, 0x5a, sizeof(ev));
        ck_assert_msg(parse(bad_events[i], &ev) == -1, "accepted: '%s'", bad_events[i]);
        /* nothing half-filled is left behind */
        ck_assert_int_eq(ev.is_ban, 0);
        ck_assert_int_eq(ev.expiry, 0);
        ck_assert_int_eq(ev.jail[0], '\0');
    }
}
END_TEST

START_TEST(test_parse_embedded_nul_and_null)
{
    mg_store_event_t ev;
    static const char msg[] = "ban 10.0.0.1 5 j\0x";

    ck_assert_int_eq(mg_store_parse_event(msg, sizeof(msg) - 1, &ev), -1);
    ck_assert_int_eq(mg_store_parse_event(msg, 16, &ev), 0);
    ck_assert_int_eq(mg_store_parse_event("unban 10.0.0.1\0", 15, &ev), -1);
    ck_assert_int_eq(mg_store_parse_event(NULL, 0, &ev), -1);
}
END_TEST

/* ---------- subscriber ---------- */

static void publish(const mg_test_redis_t *r, const char *msg)
{
    long long n = mg_test_redis_int(r, "PUBLISH", "mailguard:events", msg, NULL);
    ck_assert_int_ge(n, 1);
}

START_TEST(test_unban_reaches_the_subscriber)
{
    mg_store_t *sub = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_t *cmd = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t a = addr("203.0.113.9");
    mg_store_event_t ev;
    char text[MG_ADDR_STRLEN];
    int removed = 0;

    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    ck_assert_int_eq(mg_store_ban(cmd, &a, 2000000000, "manual"), 0);
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.is_ban, 1);
    key_text(&ev, text);
    ck_assert_str_eq(text, "203.0.113.9");
    ck_assert_int_eq(ev.expiry, 2000000000);
    ck_assert_str_eq(ev.jail, "manual");

    ck_assert_int_eq(mg_store_unban(cmd, &a, &removed), 0);
    ck_assert_int_eq(removed, 1);
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.is_ban, 0);
    key_text(&ev, text);
    ck_assert_str_eq(text, "203.0.113.9");
    /* removing what is not there publishes nothing */
    ck_assert_int_eq(mg_store_unban(cmd, &a, &removed), 0);
    ck_assert_int_eq(removed, 0);
    ck_assert_int_eq(mg_store_next_event(sub, 100, &ev), 0);
    mg_store_free(sub);
    mg_store_free(cmd);
}
END_TEST

START_TEST(test_policy_ban_and_raise_publish_the_set_expiry)
{
    mg_store_t *sub = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_t *cmd = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_addr_t a = addr("2001:db8:7:7::/64");
    mg_policy_t p;
    mg_record_result_t res;
    mg_store_event_t ev;
    char text[MG_ADDR_STRLEN];

    mg_policy_defaults(&p);
    p.maxretry = 2;
    p.findtime = 60;
    p.bantime = 600;
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    ck_assert_int_eq(mg_store_record_failure(cmd, "webmail", &a, 1700000000000LL, NULL, &p, &res), 0);
    ck_assert_int_eq(mg_store_next_event(sub, 50, &ev), 0);
    ck_assert_int_eq(mg_store_record_failure(cmd, "webmail", &a, 1700000001000LL, NULL, &p, &res), 0);
    ck_assert_int_eq(res.banned, 1);
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.is_ban, 1);
    key_text(&ev, text);
    ck_assert_str_eq(text, "2001:db8:7:7::/64");
    ck_assert_int_eq(ev.expiry, 1700000001 + 600);
    ck_assert_str_eq(ev.jail, "webmail");
    /* a shorter manual ban changes nothing, so nothing is announced */
    ck_assert_int_eq(mg_store_ban(cmd, &a, 1700000100, "manual"), 0);
    ck_assert_int_eq(mg_store_next_event(sub, 100, &ev), 0);
    /* a longer one is, with the expiry the set holds */
    ck_assert_int_eq(mg_store_ban(cmd, &a, MG_EXPIRY_NEVER, "manual"), 0);
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.expiry, MG_EXPIRY_NEVER);
    mg_store_free(sub);
    mg_store_free(cmd);
}
END_TEST

START_TEST(test_timeout_keeps_the_subscription)
{
    mg_store_t *sub = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_event_t ev;
    int64_t t0, took;

    ck_assert_int_eq(mg_store_next_event(sub, 10, &ev), -1);   /* not subscribed */
    ck_assert_ptr_nonnull(strstr(mg_store_error(sub), "not subscribed"));
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    for (int i = 0; i < 3; i++) {
        t0 = mg_test_mono_ms();
        ck_assert_int_eq(mg_store_next_event(sub, 150, &ev), 0);
        took = mg_test_mono_ms() - t0;
        ck_assert_int_ge(took, 140);
        ck_assert_int_lt(took, 400);
    }
    /* zero and negative waits only look */
    ck_assert_int_eq(mg_store_next_event(sub, 0, &ev), 0);
    ck_assert_int_eq(mg_store_next_event(sub, -5, &ev), 0);
    /* published between waits: not lost */
    publish(&srv, "unban 192.0.2.1");
    publish(&srv, "unban 192.0.2.2");
    mg_test_sleep_ms(100);
    /* both have arrived: a zero wait takes them, the second from what the
     * first read already buffered or from the socket */
    ck_assert_int_eq(mg_store_next_event(sub, 0, &ev), 1);
    ck_assert_int_eq(mg_store_next_event(sub, 0, &ev), 1);
    char text[MG_ADDR_STRLEN];
    key_text(&ev, text);
    ck_assert_str_eq(text, "192.0.2.2");
    mg_store_free(sub);
}
END_TEST

START_TEST(test_garbage_is_skipped_not_returned)
{
    mg_store_t *sub = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_event_t ev;
    char text[MG_ADDR_STRLEN];

    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    ck_assert_uint_eq(mg_store_bad_events(sub), 0);
    publish(&srv, "ban not-an-address 5 x");
    publish(&srv, "hello");
    publish(&srv, "unban 10.0.0.1 and more");
    ck_assert_int_eq(mg_store_next_event(sub, 150, &ev), 0);
    publish(&srv, "garbage again");
    publish(&srv, "ban 10.9.8.7 1800000000 imap");
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_uint_eq(mg_store_bad_events(sub), 4);
    key_text(&ev, text);
    ck_assert_str_eq(text, "10.9.8.7");
    ck_assert_str_eq(ev.jail, "imap");
    /* the subscriber is still healthy */
    publish(&srv, "unban 10.9.8.7");
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.is_ban, 0);
    mg_store_free(sub);
}
END_TEST

START_TEST(test_unban_all_publishes_each)
{
    mg_store_t *sub = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_t *cmd = mg_test_store(&srv, NULL, 0, 0, 0);
    mg_store_event_t ev;
    unsigned n = 0, unbans = 0;
    const char *const list[] = { "192.0.2.10", "192.0.2.11", "2001:db8::/48" };

    for (int i = 0; i < 3; i++) {
        mg_addr_t a = addr(list[i]);
        ck_assert_int_eq(mg_store_ban(cmd, &a, 2000000000 + i, "manual"), 0);
    }
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    ck_assert_int_eq(mg_store_unban_all(cmd, &n), 0);
    ck_assert_uint_eq(n, 3);
    while (mg_store_next_event(sub, 300, &ev) == 1) {
        char text[MG_ADDR_STRLEN];
        ck_assert_int_eq(ev.is_ban, 0);
        key_text(&ev, text);
        ck_assert_str_eq(text, list[unbans]);
        unbans++;
    }
    ck_assert_uint_eq(unbans, 3);
    mg_store_free(sub);
    mg_store_free(cmd);
}
END_TEST

START_TEST(test_subscriber_survives_a_restart_by_resubscribing)
{
    mg_test_redis_t own;
    mg_store_t *sub;
    mg_store_event_t ev;
    int64_t t0;

    ck_assert_int_eq(mg_test_redis_start(&own, NULL), 0);
    sub = mg_test_store(&own, NULL, 0, 200, 200);
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    mg_test_redis_kill(&own);
    t0 = mg_test_mono_ms();
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), -1);
    ck_assert_int_lt(mg_test_mono_ms() - t0, 1000);
    ck_assert_ptr_nonnull(strstr(mg_store_error(sub), "closed"));
    /* down: subscribing fails cleanly */
    ck_assert_int_eq(mg_store_subscribe(sub), -1);
    ck_assert_int_eq(mg_store_next_event(sub, 10, &ev), -1);
    ck_assert_int_eq(mg_test_redis_restart(&own), 0);
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    publish(&own, "unban 192.0.2.99");
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    /* subscribing again replaces the old subscription */
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    ck_assert_int_eq(mg_test_redis_int(&own, "PUBLISH", "mailguard:events", "unban 10.0.0.2",
                                       NULL), 1);
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    mg_store_free(sub);
    mg_test_redis_stop(&own);
}
END_TEST

START_TEST(test_subscribe_with_password)
{
    static const char *const args[] = { "--requirepass", "ev-secret", NULL };
    mg_test_redis_t own;
    mg_store_t *sub;
    mg_store_event_t ev;

    ck_assert_int_eq(mg_test_redis_start(&own, args), 0);
    snprintf(own.password, sizeof(own.password), "ev-secret");
    sub = mg_test_store(&own, NULL, 0, 0, 0);
    ck_assert_int_eq(mg_store_subscribe(sub), -1);
    ck_assert_ptr_nonnull(strstr(mg_store_error(sub), "NOAUTH"));
    mg_store_free(sub);
    sub = mg_test_store(&own, ":ev-secret", 0, 0, 0);
    ck_assert_int_eq(mg_store_subscribe(sub), 0);
    publish(&own, "ban 192.0.2.5 inf manual");
    ck_assert_int_eq(mg_store_next_event(sub, 1000, &ev), 1);
    ck_assert_int_eq(ev.expiry, MG_EXPIRY_NEVER);
    mg_store_free(sub);
    mg_test_redis_stop(&own);
}
END_TEST

static Suite *store_events_suite(void)
{
    Suite *s = suite_create("store_events");
    TCase *p = tcase_create("parse");
    TCase *live = tcase_create("subscriber");
    TCase *own = tcase_create("own_server");

    tcase_add_test(p, test_parse_ban);
    tcase_add_test(p, test_parse_unban);
    tcase_add_test(p, test_parse_refusals);
    tcase_add_test(p, test_parse_embedded_nul_and_null);
    suite_add_tcase(s, p);

    tcase_add_unchecked_fixture(live, shared_start, shared_stop);
    tcase_add_checked_fixture(live, flush, NULL);
    tcase_set_timeout(live, 20);
    tcase_add_test(live, test_unban_reaches_the_subscriber);
    tcase_add_test(live, test_policy_ban_and_raise_publish_the_set_expiry);
    tcase_add_test(live, test_timeout_keeps_the_subscription);
    tcase_add_test(live, test_garbage_is_skipped_not_returned);
    tcase_add_test(live, test_unban_all_publishes_each);
    suite_add_tcase(s, live);

    tcase_set_timeout(own, 20);
    tcase_add_test(own, test_subscriber_survives_a_restart_by_resubscribing);
    tcase_add_test(own, test_subscribe_with_password);
    suite_add_tcase(s, own);
    return s;
}

MG_TEST_MAIN(store_events_suite)
