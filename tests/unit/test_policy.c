/* Durations, flags, numbers, policy defaults and ban escalation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mg_policy.h"
#include "mg_test.h"

static int64_t dur(const char *s)
{
    int64_t v = -12345;
    const char *why = NULL;

    ck_assert_msg(mg_duration_parse(s, &v, &why) == 0, "%s: %s", s, why ? why : "?");
    return v;
}

START_TEST(duration_ok)
{
    ck_assert_int_eq(dur("0"), 0);
    ck_assert_int_eq(dur("30"), 30);
    ck_assert_int_eq(dur("45s"), 45);
    ck_assert_int_eq(dur("10m"), 600);
    ck_assert_int_eq(dur("1h"), 3600);
    ck_assert_int_eq(dur("2d"), 2 * 86400);
    ck_assert_int_eq(dur("1w"), 7 * 86400);
    ck_assert_int_eq(dur("1h30m"), 5400);
    ck_assert_int_eq(dur("1d12h"), 86400 + 12 * 3600);
    ck_assert_int_eq(dur("30m1h"), 5400);
    ck_assert_int_eq(dur("1H30M"), 5400);
    ck_assert_int_eq(dur("2W1D1h1M1S"), 15 * 86400 + 3661);
    ck_assert_int_eq(dur("0s"), 0);
    ck_assert_int_eq(dur("007"), 7);
    ck_assert_int_eq(dur("5200w"), (int64_t)5200 * 7 * 86400);
    ck_assert_int_eq(dur("36500d"), MG_DURATION_MAX);
}
END_TEST

START_TEST(duration_errors)
{
    static const struct { const char *in; const char *why; } bad[] = {
        { "", "empty" },
        { "-5", "sign" },
        { "+5m", "sign" },
        { "1h-5m", "sign" },
        { "m", "unit without a number" },
        { "h30", "unit without a number" },
        { "1hm", "unit without a number" },
        { "5x", "unknown duration unit" },
        { "5ms", "unit without a number" },
        { "1.5h", "unexpected character" },
        { "10m ", "unexpected character" },
        { " 10m", "unexpected character" },
        { "10 m", "unexpected character" },
        { "1h30", "without a unit" },
        { "10m!", "unexpected character" },
        { "36501d", "too long" },
        { "3155760001", "too long" },
        { "5300w", "too long" },
        { "99999999999999999999999", "too long" },
        { "36500d1s", "too long" },
        { "18446744073709551617s", "too long" },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 4242;
        const char *why = NULL;

        ck_assert_msg(mg_duration_parse(bad[i].in, &v, &why) == -1, "accepted '%s'", bad[i].in);
        ck_assert_msg(why && strstr(why, bad[i].why), "'%s': reason '%s' lacks '%s'",
                      bad[i].in, why ? why : "(null)", bad[i].why);
        ck_assert_int_eq(v, 4242);
    }
    ck_assert_int_eq(mg_duration_parse(NULL, &(int64_t){ 0 }, NULL), -1);
}
END_TEST

START_TEST(duration_format)
{
    char buf[32];
    static const int64_t round[] = {
        0, 1, 59, 60, 61, 3599, 3600, 5400, 86399, 86400, 604800, 604801,
        1234567, MG_DURATION_MAX
    };
    size_t i;

    ck_assert_str_eq(mg_duration_format(5400, buf, sizeof(buf)), "1h30m");
    ck_assert_str_eq(mg_duration_format(45, buf, sizeof(buf)), "45s");
    ck_assert_str_eq(mg_duration_format(0, buf, sizeof(buf)), "0s");
    ck_assert_str_eq(mg_duration_format(604800, buf, sizeof(buf)), "1w");
    ck_assert_str_eq(mg_duration_format(90061, buf, sizeof(buf)), "1d1h1m1s");
    ck_assert_str_eq(mg_duration_format(-90, buf, sizeof(buf)), "-1m30s");
    ck_assert_str_eq(mg_duration_format(INT64_MIN, buf, sizeof(buf)),
                     "-15250284452471w3d15h30m8s");
    /* every formatted value parses back to itself */
    for (i = 0; i < sizeof(round) / sizeof(round[0]); i++) {
        mg_duration_format(round[i], buf, sizeof(buf));
        ck_assert_int_eq(dur(buf), round[i]);
    }
    /* truncation never overflows the buffer */
    {
        char small[4] = "zzz";

        ck_assert_str_eq(mg_duration_format(5400, small, sizeof(small)), "1h3");
        ck_assert_ptr_eq(mg_duration_format(5400, small, 0), small);
        ck_assert_str_eq(small, "1h3");
    }
}
END_TEST

START_TEST(policy_defaults)
{
    mg_policy_t p;

    memset(&p, 0x55, sizeof(p));
    mg_policy_defaults(&p);
    ck_assert_uint_eq(p.maxretry, 10);
    ck_assert_int_eq(p.findtime, 600);
    ck_assert_int_eq(p.bantime, 3600);
    ck_assert_int_eq(p.increment, 0);
    ck_assert(p.factor == 2.0);
    ck_assert_int_eq(p.maxtime, 604800);
}
END_TEST

START_TEST(escalation)
{
    mg_policy_t p;
    unsigned i;

    mg_policy_defaults(&p);
    /* no increment: always bantime */
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 0), 3600);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 5), 3600);
    p.increment = 1;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 0), 3600);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 1), 7200);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 2), 14400);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 7), 3600 * 128);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 8), 604800);   /* 921600 capped */
    /* huge history: no overflow, no inf, just the cap */
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 1000), 604800);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, UINT32_MAX), 604800);
    /* monotonic */
    for (i = 1; i < 200; i++) {
        ck_assert_int_ge(mg_policy_ban_seconds(&p, i), mg_policy_ban_seconds(&p, i - 1));
    }
    /* non-integer factor truncates toward zero */
    p.factor = 1.5;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 1), 5400);
    p.bantime = 7;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 1), 10);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 3), 23);
    /* a factor that cannot grow leaves bantime */
    p.bantime = 3600;
    p.factor = 1.0;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 50), 3600);
    p.factor = 0.5;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 3), 3600);
    p.factor = NAN;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 3), 3600);
    p.factor = INFINITY;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 1), 604800);
    /* maxtime below bantime: never below bantime */
    p.factor = 2;
    p.maxtime = 60;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 4), 3600);
    /* a cap near the int64 limit still caps exactly */
    p.maxtime = INT64_MAX;
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 4000), INT64_MAX);
    ck_assert_int_eq(mg_policy_ban_seconds(&p, 3), 28800);
}
END_TEST

START_TEST(parse_uint)
{
    unsigned long v = 77;
    const char *why = NULL;

    ck_assert_int_eq(mg_parse_uint("10", 1, 100, &v, &why), 0);
    ck_assert_uint_eq(v, 10);
    ck_assert_int_eq(mg_parse_uint("0", 0, 0, &v, &why), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(mg_parse_uint("18446744073709551615", 0, ~0UL, &v, &why), 0);
    ck_assert_uint_eq(v, ~0UL);
    v = 77;
    ck_assert_int_eq(mg_parse_uint("18446744073709551616", 0, ~0UL, &v, &why), -1);
    ck_assert_str_eq(why, "number too large");
    ck_assert_int_eq(mg_parse_uint("0", 1, 100, &v, &why), -1);
    ck_assert_str_eq(why, "number below the minimum");
    ck_assert_int_eq(mg_parse_uint("101", 1, 100, &v, &why), -1);
    ck_assert_str_eq(why, "number above the maximum");
    ck_assert_int_eq(mg_parse_uint("", 1, 100, &v, &why), -1);
    ck_assert_str_eq(why, "empty number");
    ck_assert_int_eq(mg_parse_uint(NULL, 1, 100, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint("-1", 0, 100, &v, &why), -1);
    ck_assert_str_eq(why, "not a decimal number");
    ck_assert_int_eq(mg_parse_uint("+1", 0, 100, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint(" 1", 0, 100, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint("1 ", 0, 100, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint("0x10", 0, 100, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint("1e3", 0, 10000, &v, &why), -1);
    ck_assert_int_eq(mg_parse_uint("12", 0, 100, &v, NULL), 0);
    ck_assert_uint_eq(v, 12);
    ck_assert_int_eq(mg_parse_uint("x", 0, 100, &v, NULL), -1);
    ck_assert_uint_eq(v, 12);
}
END_TEST

START_TEST(parse_bool)
{
    static const char *const on[] = { "On", "on", "ON", "true", "TRUE", "yes", "Yes", "1" };
    static const char *const off[] = { "Off", "off", "OFF", "false", "False", "no", "NO", "0" };
    static const char *const bad[] = { "", "2", "onn", "of", " on", "on ", "enable", "y", "-1" };
    size_t i;
    int v;
    const char *why;

    for (i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        v = -1;
        ck_assert_int_eq(mg_parse_bool(on[i], &v, &why), 0);
        ck_assert_int_eq(v, 1);
    }
    for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        v = -1;
        ck_assert_int_eq(mg_parse_bool(off[i], &v, &why), 0);
        ck_assert_int_eq(v, 0);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = -1;
        why = NULL;
        ck_assert_msg(mg_parse_bool(bad[i], &v, &why) == -1, "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(why);
        ck_assert_int_eq(v, -1);
    }
    ck_assert_int_eq(mg_parse_bool(NULL, &v, NULL), -1);
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, duration_ok);
    tcase_add_test(tc, duration_errors);
    tcase_add_test(tc, duration_format);
    tcase_add_test(tc, policy_defaults);
    tcase_add_test(tc, escalation);
    tcase_add_test(tc, parse_uint);
    tcase_add_test(tc, parse_bool);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(policy_suite)
