/* The rules the module and dbmail_tap share (mg_rules.h), at their
 * bounds, and the tap's defaults pinned to the module's. */
#include <string.h>

#include "mg_follow.h"
#include "mg_policy.h"
#include "mg_rules.h"
#include "mg_test.h"
#include "tap_config.h"

START_TEST(jail_names)
{
    static const char *const ok[] = { "a", "imap", "web.mail-1_2", "manual",
                                      "jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj" };
    static const char *const bad[] = { "", "a b", "a/b", "a:b", "caf\xc3\xa9", "a\tb",
                                       "jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj" };
    const char *why;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        why = NULL;
        ck_assert_msg(mg_rule_jail_name(ok[i], &why) == 0, "%s: %s", ok[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        ck_assert_msg(mg_rule_jail_name(bad[i], &why) == -1, "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(why);
    }
    ck_assert_uint_eq(strlen(ok[4]), MG_JAIL_NAME_MAX);
}
END_TEST

START_TEST(key_prefixes)
{
    char p64[65], p65[66];
    const char *why = NULL;

    memset(p64, 'p', 64);
    p64[64] = '\0';
    memset(p65, 'p', 65);
    p65[65] = '\0';
    ck_assert_int_eq(mg_rule_key_prefix("mailguard:", &why), 0);
    ck_assert_int_eq(mg_rule_key_prefix(p64, &why), 0);
    ck_assert_int_eq(mg_rule_key_prefix(p65, &why), -1);
    ck_assert_int_eq(mg_rule_key_prefix("", &why), -1);
    ck_assert_int_eq(mg_rule_key_prefix("a b", &why), -1);
    ck_assert_int_eq(mg_rule_key_prefix("a\x7f", &why), -1);
}
END_TEST

START_TEST(counts_and_lengths)
{
    unsigned v = 0;
    const char *why = NULL;

    ck_assert_int_eq(mg_rule_maxretry("1", &v, &why), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(mg_rule_maxretry("100000", &v, &why), 0);
    ck_assert_uint_eq(v, MG_MAXRETRY_MAX);
    v = 7;
    ck_assert_int_eq(mg_rule_maxretry("100001", &v, &why), -1);
    ck_assert_int_eq(mg_rule_maxretry("0", &v, &why), -1);
    ck_assert_int_eq(mg_rule_maxretry("-1", &v, &why), -1);
    ck_assert_int_eq(mg_rule_maxretry(" 5", &v, &why), -1);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(mg_rule_v6prefix("128", &v, &why), 0);
    ck_assert_uint_eq(v, 128);
    ck_assert_int_eq(mg_rule_v6prefix("0", &v, &why), -1);
    ck_assert_int_eq(mg_rule_v6prefix("129", &v, &why), -1);
    ck_assert_int_eq(mg_rule_v6prefix("/64", &v, &why), -1);
}
END_TEST

START_TEST(durations)
{
    int64_t v = -1;
    const char *why = NULL;

    ck_assert_int_eq(mg_rule_policy_duration("1", &v, &why), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(mg_rule_policy_duration("1h30m", &v, &why), 0);
    ck_assert_int_eq(v, 5400);
    v = -1;
    ck_assert_int_eq(mg_rule_policy_duration("0", &v, &why), -1);
    ck_assert_str_eq(why, "must be at least 1 second");
    ck_assert_int_eq(mg_rule_policy_duration("0s", &v, &why), -1);
    ck_assert_int_eq(mg_rule_policy_duration("1y", &v, &why), -1);
    ck_assert_int_eq(v, -1);
}
END_TEST

START_TEST(factors)
{
    static const char *const bad[] = { "", "0.5", ".5", "1000.5", "0x2", "2e0", "inf", "nan",
                                       "-2", " 2", "2 ", "1..5", "." };
    double v = 0;
    const char *why = NULL;

    ck_assert_int_eq(mg_rule_factor("1", &v, &why), 0);
    ck_assert(v == 1.0);
    ck_assert_int_eq(mg_rule_factor("1.5", &v, &why), 0);
    ck_assert(v == 1.5);
    ck_assert_int_eq(mg_rule_factor("1000", &v, &why), 0);
    ck_assert(v == MG_FACTOR_MAX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 42;
        why = NULL;
        ck_assert_msg(mg_rule_factor(bad[i], &v, &why) == -1, "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(why);
        ck_assert(v == 42);
    }
}
END_TEST

START_TEST(prefix_floors)
{
    unsigned a = 0, b = 0;
    const char *why = NULL;

    ck_assert_int_eq(mg_rule_prefix_floor("16", "32", &a, &b, &why), 0);
    ck_assert_uint_eq(a, 16);
    ck_assert_uint_eq(b, 32);
    ck_assert_int_eq(mg_rule_prefix_floor("/8", "/128", &a, &b, &why), 0);
    ck_assert_uint_eq(a, 8);
    ck_assert_uint_eq(b, 128);
    ck_assert_int_eq(mg_rule_prefix_floor("0", "32", &a, &b, &why), -1);
    ck_assert_int_eq(mg_rule_prefix_floor("33", "32", &a, &b, &why), -1);
    ck_assert_int_eq(mg_rule_prefix_floor("16", "129", &a, &b, &why), -1);
    ck_assert_int_eq(mg_rule_prefix_floor("//16", "32", &a, &b, &why), -1);
    ck_assert_uint_eq(a, 8);
}
END_TEST

/* The tap's jail defaults are the module's, but maxretry, which keeps
 * Fail2Ban's; the follower's prefix floor is the configurations'. */
START_TEST(tap_defaults_are_the_module_s)
{
    static const char text[] = "[DEFAULT]\n[imap]\n";
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];
    mg_policy_t mod;
    mg_follow_cfg_t fc;

    ck_assert_msg(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)) == 0,
                  "%s", err);
    mg_policy_defaults(&mod);
    ck_assert_uint_eq(mod.maxretry, 10);
    ck_assert_uint_eq(cfg->jails[0].policy.maxretry, TAP_DEF_MAXRETRY);
    ck_assert_uint_eq(TAP_DEF_MAXRETRY, 5);
    ck_assert_int_eq(cfg->jails[0].policy.findtime, mod.findtime);
    ck_assert_int_eq(cfg->jails[0].policy.bantime, mod.bantime);
    ck_assert_int_eq(cfg->jails[0].policy.increment, mod.increment);
    ck_assert(cfg->jails[0].policy.factor == mod.factor);
    ck_assert_int_eq(cfg->jails[0].policy.maxtime, mod.maxtime);
    ck_assert_uint_eq(cfg->jails[0].ipv6prefix, MG_V6PREFIX_DEFAULT);
    mg_follow_cfg_defaults(&fc);
    ck_assert_uint_eq(cfg->floor4, fc.min_plen4);
    ck_assert_uint_eq(cfg->floor6, fc.min_plen6);
    ck_assert_uint_eq(cfg->floor4, MG_FLOOR4_DEFAULT);
    ck_assert_uint_eq(cfg->floor6, MG_FLOOR6_DEFAULT);
    tap_config_free(cfg);
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, jail_names);
    tcase_add_test(tc, key_prefixes);
    tcase_add_test(tc, counts_and_lengths);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, factors);
    tcase_add_test(tc, prefix_floors);
    tcase_add_test(tc, tap_defaults_are_the_module_s);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(rules_suite)
