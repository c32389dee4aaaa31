/* Redis URL parsing and redacted printing: every accepted form and every
 * refusal, and no reason or redacted text that shows the password. */
#include <stdio.h>
#include <string.h>

#include "mg_store.h"
#include "mg_test.h"

static mg_store_url_t u;
static const char *why;

static int parse(const char *s)
{
    memset(&u, 0x5a, sizeof(u));
    why = NULL;
    return mg_store_url_parse(s, &u, &why);
}

START_TEST(test_plain_host)
{
    ck_assert_int_eq(parse("redis://127.0.0.1"), 0);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_str_eq(u.path, "");
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "");
    ck_assert_ptr_null(why);
}
END_TEST

START_TEST(test_port_and_db)
{
    ck_assert_int_eq(parse("redis://redis.example-site.net:6380/7"), 0);
    ck_assert_str_eq(u.host, "redis.example-site.net");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 7);
    ck_assert_int_eq(parse("redis://localhost/"), 0);
    ck_assert_int_eq(u.db, 0);
    ck_assert_int_eq(parse("redis://localhost/15"), 0);
    ck_assert_int_eq(u.db, 15);
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(parse("redis://h:65535/65535"), 0);
    ck_assert_int_eq(u.port, 65535);
    ck_assert_int_eq(u.db, 65535);
}
END_TEST

START_TEST(test_ipv6_host)
{
    ck_assert_int_eq(parse("redis://[::1]:7000/2"), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.db, 2);
    ck_assert_int_eq(parse("redis://[2001:db8::5]"), 0);
    ck_assert_str_eq(u.host, "2001:db8::5");
    ck_assert_int_eq(u.port, 6379);
}
END_TEST

START_TEST(test_password_only)
{
    ck_assert_int_eq(parse("redis://:s3cret@10.0.0.1:6379/1"), 0);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "s3cret");
    ck_assert_str_eq(u.host, "10.0.0.1");
    ck_assert_int_eq(u.db, 1);
}
END_TEST

START_TEST(test_user_and_password_decoded)
{
    /* %40 = '@', %3A = ':', %2F = '/', %25 = '%' */
    ck_assert_int_eq(parse("redis://mail%2Dguard:p%40ss%3Aw%2Frd%25@[::1]:6390"), 0);
    ck_assert_str_eq(u.user, "mail-guard");
    ck_assert_str_eq(u.password, "p@ss:w/rd%");
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6390);
}
END_TEST

START_TEST(test_unix_forms)
{
    ck_assert_int_eq(parse("unix:/run/redis/redis.sock"), 0);
    ck_assert_str_eq(u.path, "/run/redis/redis.sock");
    ck_assert_str_eq(u.host, "");
    ck_assert_int_eq(u.db, 0);
    ck_assert_int_eq(parse("unix:/run/redis.sock?db=3"), 0);
    ck_assert_str_eq(u.path, "/run/redis.sock");
    ck_assert_int_eq(u.db, 3);
    ck_assert_int_eq(parse("unix:///run/redis.sock?db=4"), 0);
    ck_assert_str_eq(u.path, "/run/redis.sock");
    ck_assert_int_eq(u.db, 4);
    ck_assert_int_eq(parse("unix:/s?password=a%26b&user=bob&db=1"), 0);
    ck_assert_str_eq(u.password, "a&b");
    ck_assert_str_eq(u.user, "bob");
    ck_assert_int_eq(u.db, 1);
}
END_TEST

static const struct {
    const char *url;
    const char *reason_part;
} bad[] = {
    { "", "empty" },
    { "http://127.0.0.1", "redis://" },
    { "rediss://127.0.0.1", "TLS" },
    { "redis://", "empty host" },
    { "redis://:6379", "empty host" },
    { "redis://host:0", "port" },
    { "redis://host:65536", "port" },
    { "redis://host:-1", "port" },
    { "redis://host:12ab", "port" },
    { "redis://host:", "port" },
    { "redis://host/abc", "database" },
    { "redis://host/-1", "database" },
    { "redis://host/65536", "database" },
    { "redis://host/1/2", "database" },
    { "redis://host?db=1", "query" },
    { "redis://host#x", "query" },
    { "redis://ho st", "space" },
    { "redis://host\n", "control" },
    { "redis://h\xc3\xa9", "non-ASCII" },
    { "redis://ho$t", "bad character" },
    { "redis://[::1", "unterminated" },
    { "redis://[]:1", "IPv6" },
    { "redis://[not:v6:zz]", "IPv6" },
    { "redis://[::1]x", "unexpected" },
    { "redis://user@host", "needs a password" },
    { "redis://user:@host", "empty password" },
    { "redis://:@host", "empty password" },
    { "redis://:pw%4@host", "percent-escape in the password" },
    { "redis://:pw%zz@host", "percent-escape in the password" },
    { "redis://:pw%00x@host", "percent-escape in the password" },
    { "redis://u%0a:pw@host", "control character" },
    { "redis://u%g0:pw@host", "percent-escape in the user" },
    { "unix:", "absolute" },
    { "unix:relative.sock", "absolute" },
    { "unix://host/path.sock", "host" },
    { "unix:/s?db=x", "database" },
    { "unix:/s?db=1&db=2", "repeated" },
    { "unix:/s?foo=1", "unknown" },
    { "unix:/s?db", "without '='" },
    { "unix:/s?user=bob", "needs a password" },
    { "unix:/s?password=", "empty password" },
    { "unix:/s%20", "bad character" },
};

START_TEST(test_refusals)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mg_store_url_t before;
        memset(&before, 0x5a, sizeof(before));
        ck_assert_msg(parse(bad[i].url) == -1, "accepted: %s", bad[i].url);
        ck_assert_msg(why != NULL && strstr(why, bad[i].reason_part) != NULL,
                      "%s: reason '%s' lacks '%s'", bad[i].url, why ? why : "(null)",
                      bad[i].reason_part);
        /* a refused URL leaves the output alone */
        ck_assert_msg(memcmp(&before, &u, sizeof(u)) == 0, "output touched: %s", bad[i].url);
    }
}
END_TEST

START_TEST(test_limits)
{
    char url[3000], pw[300];

    memset(pw, 'p', sizeof(pw));
    pw[sizeof(pw) - 1] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", pw);
    ck_assert_int_eq(parse(url), -1);
    ck_assert_str_eq(why, "password too long");
    pw[255] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", pw);
    ck_assert_int_eq(parse(url), 0);
    ck_assert_uint_eq(strlen(u.password), 255);

    memset(pw, 'h', sizeof(pw));
    pw[sizeof(pw) - 1] = '\0';
    snprintf(url, sizeof(url), "redis://%s", pw);
    ck_assert_int_eq(parse(url), -1);
    ck_assert_str_eq(why, "host name too long");

    snprintf(url, sizeof(url), "unix:/%s", pw);
    ck_assert_int_eq(parse(url), -1);
    ck_assert_str_eq(why, "unix socket path too long");

    memset(url, 'a', sizeof(url));
    memcpy(url, "redis://", 8);
    url[sizeof(url) - 1] = '\0';
    ck_assert_int_eq(parse(url), -1);
    ck_assert_str_eq(why, "URL too long");
    ck_assert_int_eq(mg_store_url_parse(NULL, &u, &why), -1);
    /* why may be NULL */
    ck_assert_int_eq(mg_store_url_parse("redis://x:0", &u, NULL), -1);
}
END_TEST

START_TEST(test_reasons_never_hold_the_password)
{
    static const char *const urls[] = {
        "redis://:Secr3tPW%zz@host", "redis://bob:Secr3tPW@host:99999",
        "redis://bob:Secr3tPW@ho$t", "redis://bob:Secr3tPW@host/x",
        "unix:/s?password=Secr3tPW&db=q", "unix:/s?password=Secr3tPW%",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        ck_assert_int_eq(parse(urls[i]), -1);
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_null(strstr(why, "Secr3tPW"));
    }
}
END_TEST

START_TEST(test_redacted)
{
    char buf[600];

    ck_assert_int_eq(parse("redis://bob:Secr3tPW@[::1]:7000/3"), 0);
    mg_store_url_redacted(&u, buf, sizeof(buf));
    ck_assert_str_eq(buf, "redis://bob:***@[::1]:7000/3");
    ck_assert_int_eq(parse("redis://:Secr3tPW@127.0.0.1"), 0);
    mg_store_url_redacted(&u, buf, sizeof(buf));
    ck_assert_str_eq(buf, "redis://:***@127.0.0.1:6379/0");
    ck_assert_int_eq(parse("redis://127.0.0.1"), 0);
    mg_store_url_redacted(&u, buf, sizeof(buf));
    ck_assert_str_eq(buf, "redis://127.0.0.1:6379/0");
    ck_assert_int_eq(parse("unix:/run/r.sock?db=2&password=Secr3tPW&user=al"), 0);
    mg_store_url_redacted(&u, buf, sizeof(buf));
    ck_assert_str_eq(buf, "unix:/run/r.sock?db=2&user=al&password=***");
    ck_assert_ptr_null(strstr(buf, "Secr3tPW"));
    /* truncation is safe and still NUL-terminated */
    mg_store_url_redacted(&u, buf, 8);
    ck_assert_uint_eq(strlen(buf), 7);
    buf[0] = 'x';
    mg_store_url_redacted(&u, buf, 0);
    ck_assert_int_eq(buf[0], 'x');
}
END_TEST

START_TEST(test_sentinel_forms)
{
    char buf[1024];

    ck_assert_int_eq(parse("redis-sentinel://s1,s2:26380,[::1]:26381/mymaster"), 0);
    ck_assert_int_eq(u.nsentinels, 3);
    ck_assert_str_eq(u.sentinel[0].host, "s1");
    ck_assert_int_eq(u.sentinel[0].port, 26379);
    ck_assert_str_eq(u.sentinel[1].host, "s2");
    ck_assert_int_eq(u.sentinel[1].port, 26380);
    ck_assert_str_eq(u.sentinel[2].host, "::1");
    ck_assert_int_eq(u.sentinel[2].port, 26381);
    ck_assert_str_eq(u.master, "mymaster");
    ck_assert_int_eq(u.db, 0);
    ck_assert_str_eq(u.host, "");
    ck_assert_str_eq(u.sentinel_password, "");
    /* the data nodes' credentials, a database, the sentinels' own */
    ck_assert_int_eq(parse("redis-sentinel://guard:p%40ss@10.0.0.1:26379/main/3"
                           "?sentinel_user=watch&sentinel_password=s3cr%26t"), 0);
    ck_assert_str_eq(u.user, "guard");
    ck_assert_str_eq(u.password, "p@ss");
    ck_assert_str_eq(u.master, "main");
    ck_assert_int_eq(u.db, 3);
    ck_assert_str_eq(u.sentinel_user, "watch");
    ck_assert_str_eq(u.sentinel_password, "s3cr&t");
    mg_store_url_redacted(&u, buf, sizeof(buf));
    ck_assert_str_eq(buf, "redis-sentinel://guard:***@10.0.0.1:26379/main/3"
                          "?sentinel_user=watch&sentinel_password=***");
    ck_assert_ptr_null(strstr(buf, "p@ss"));
    ck_assert_ptr_null(strstr(buf, "s3cr"));
    /* refusals */
    ck_assert_int_eq(parse("redis-sentinel://s1:26379"), -1);
    ck_assert_ptr_nonnull(strstr(why, "NAME"));
    ck_assert_int_eq(parse("redis-sentinel:///main"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1,,s2/main"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1,/main"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1:0/main"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1/ma$ter"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1/main/x"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1/main?sentinel_password="), -1);
    ck_assert_str_eq(why, "empty sentinel password");
    ck_assert_int_eq(parse("redis-sentinel://s1/main?sentinel_user=a&x"), -1);
    ck_assert_str_eq(why, "query parameter without '='");
    ck_assert_int_eq(parse("redis-sentinel://s1/main?sentinel_user=a"), -1);
    ck_assert_int_eq(parse("redis-sentinel://s1/main?password=x"), -1);
    ck_assert_int_eq(parse("redis-sentinel://a,b,c,d,e,f,g,h,i/main"), -1);
    ck_assert_ptr_nonnull(strstr(why, "8"));
    ck_assert_int_eq(parse("redis-sentinel://:hunter2@s1/main?sentinel_password=%zz"), -1);
    ck_assert_ptr_null(strstr(why, "hunter2"));
    ck_assert_str_eq(why, "bad percent-escape in the sentinel password");
}
END_TEST

static Suite *store_url_suite(void)
{
    Suite *s = suite_create("store_url");
    TCase *tc = tcase_create("url");

    tcase_add_test(tc, test_plain_host);
    tcase_add_test(tc, test_port_and_db);
    tcase_add_test(tc, test_ipv6_host);
    tcase_add_test(tc, test_password_only);
    tcase_add_test(tc, test_user_and_password_decoded);
    tcase_add_test(tc, test_unix_forms);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_reasons_never_hold_the_password);
    tcase_add_test(tc, test_redacted);
    tcase_add_test(tc, test_sentinel_forms);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(store_url_suite)
