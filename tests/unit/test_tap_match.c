/* Line matching: built-in DBMail filters, Fail2Ban regexes, the scanners. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "tap_match.h"
#include "tap_scan.h"
#include "tap_regex.h"

#define PTR "[0x55d0c0ffee10] "
#define FILE_PREFIX "Nov 26 10:00:01 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] " \
                    "dbmail_imap_session_handle_auth(+1448): "
#define SYSLOG31 "Nov 26 10:00:01 mail dbmail/imap4d[1234]: Notice:[imap] " \
                 "dbmail_imap_session_handle_auth(+1448): "
#define SYSLOG354 "Nov 26 10:00:01 mail dbmail/imap4d[1234]: Notice: "
#define SEED "login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$"

static tap_matcher_t *with_filter(const char *name)
{
    char err[TAP_MATCH_ERRLEN];
    tap_matcher_t *m = tap_matcher_new();

    ck_assert_ptr_nonnull(m);
    ck_assert_msg(tap_matcher_add_filter(m, name, err, sizeof(err)) == 0, "%s", err);
    return m;
}

static tap_matcher_t *with_regex(const char *re)
{
    char err[TAP_MATCH_ERRLEN];
    tap_matcher_t *m = tap_matcher_new();

    ck_assert_ptr_nonnull(m);
    ck_assert_msg(tap_matcher_add_failregex(m, re, err, sizeof(err)) == 0, "%s", err);
    return m;
}

/* Outcome of one line, and the address text when it is a failure. */
static tap_outcome_t match(tap_matcher_t *m, const char *line, char *addr)
{
    mg_addr_t a;
    tap_outcome_t o = tap_match_line(m, line, strlen(line), &a);

    addr[0] = '\0';
    if (o == TAP_FAILURE)
        mg_addr_format(&a, addr, MG_ADDR_STRLEN);
    return o;
}

static void expect_failure(tap_matcher_t *m, const char *line, const char *want)
{
    char got[MG_ADDR_STRLEN];
    tap_outcome_t o = match(m, line, got);

    ck_assert_msg(o == TAP_FAILURE, "expected failure for: %s (got %d)", line, o);
    ck_assert_str_eq(got, want);
}

static void expect(tap_matcher_t *m, const char *line, tap_outcome_t want)
{
    char got[MG_ADDR_STRLEN];
    tap_outcome_t o = match(m, line, got);

    ck_assert_msg(o == want, "expected %d for: %s (got %d, addr '%s')", want, line, o, got);
}

START_TEST(imap3_every_prefix)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    const char *tail = "login rejected: user [bob] from [203.0.113.5:51234]";
    const char *prefixes[] = { FILE_PREFIX PTR, SYSLOG31 PTR, SYSLOG354 PTR, "Notice: " PTR,
                               PTR, "" };
    char line[512];

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        snprintf(line, sizeof(line), "%s%s", prefixes[i], tail);
        expect_failure(m, line, "203.0.113.5");
    }
    /* a CRLF log and trailing blanks */
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:1]\r",
                   "203.0.113.5");
    expect_failure(m, SYSLOG354 PTR "login rejected: user [bob] from [203.0.113.5:1]  ",
                   "203.0.113.5");
    tap_matcher_free(m);
}
END_TEST

START_TEST(imap3_addresses_and_ports)
{
    tap_matcher_t *m = with_filter("dbmail-imap");

    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [2001:db8::5:51234]",
                   "2001:db8::5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [2001:db8::5:143]",
                   "2001:db8::5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [b] from [2001:db8:0:0:1:2:3:4:993]",
                   "2001:db8::1:2:3:4");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [::ffff:203.0.113.5:993]",
                   "203.0.113.5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [fe80::1%eth0:51234]",
                   "fe80::1");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [::1:143]", "::1");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:]",
                   "203.0.113.5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [] from [198.51.100.1:1]",
                   "198.51.100.1");
    /* the shape is right but no address can be read: ignored, never a failure */
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5]", TAP_IGNORED);
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [999.1.1.1:143]", TAP_IGNORED);
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [mail.example.org:143]",
           TAP_IGNORED);
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:14x]", TAP_IGNORED);
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [:143]", TAP_IGNORED);
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [2001:db8::5]", TAP_IGNORED);
    tap_matcher_free(m);
}
END_TEST

START_TEST(imap3_username_injection)
{
    tap_matcher_t *m = with_filter("dbmail-imap");

    /* a fake suffix inside the username never moves the address */
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [x] from [203.0.113.66:1] from "
                   "[198.51.100.7:5]", "198.51.100.7");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [x] from [203.0.113.66:1]] from "
                   "[198.51.100.7:5]", "198.51.100.7");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user []]]] from [[[] from [198.51.100.7:5]",
                   "198.51.100.7");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [login rejected: user [a] from "
                   "[203.0.113.66:1] from [198.51.100.7:5]", "198.51.100.7");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [a b\tc ] from [ 1.2.3.4:1 ] x] "
                   "from [198.51.100.7:5]", "198.51.100.7");
    /* a success line whose username imitates a rejection */
    expect(m, FILE_PREFIX PTR "login accepted: id [5] user [x] " PTR "login rejected: user [a] "
           "from [203.0.113.66:1] from [198.51.100.7:5]", TAP_MISSED);
    /* a rejected line ending in text after the address is not DBMail's */
    expect(m, FILE_PREFIX PTR "login rejected: user [x] from [203.0.113.66:1] trailing",
           TAP_MISSED);
    /* the real suffix must follow the username's opening bracket */
    expect(m, "] from [203.0.113.66:1] login rejected: user [x", TAP_MISSED);
    expect(m, FILE_PREFIX PTR "login rejected: user [", TAP_MISSED);
    expect(m, FILE_PREFIX PTR "login rejected: user [] from [", TAP_MISSED);
    tap_matcher_free(m);
}
END_TEST

START_TEST(imap22_and_pop3)
{
    tap_matcher_t *i22 = with_filter("dbmail-imap22");
    tap_matcher_t *pop = with_filter("dbmail-pop3");
    tap_matcher_t *all = with_filter("dbmail");
    const char *l22 = "Nov 26 10:00:01 mail dbmail-imapd[1]: user (name bob) coming from "
                      "[203.0.113.5] login rejected";
    const char *lpop = "Nov 26 10:00:01 mail dbmail/pop3d[9]: Error:[pop3] pop3(+400): user "
                       "[bob] coming from [2001:db8::7] tried to login with wrong password";
    const char *limap = FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.9:1]";

    expect_failure(i22, l22, "203.0.113.5");
    expect_failure(pop, lpop, "2001:db8::7");
    expect_failure(all, l22, "203.0.113.5");
    expect_failure(all, lpop, "2001:db8::7");
    expect_failure(all, limap, "203.0.113.9");
    expect(i22, limap, TAP_MISSED);
    expect(pop, limap, TAP_MISSED);
    ck_assert_uint_eq(tap_matcher_count(all), 3);

    /* injection through the username, both formats */
    expect_failure(i22, "user (name x) coming from [203.0.113.66] login rejected) coming from "
                   "[198.51.100.7] login rejected", "198.51.100.7");
    expect_failure(pop, "user [x] coming from [203.0.113.66] tried to login with wrong password] "
                   "coming from [198.51.100.7] tried to login with wrong password",
                   "198.51.100.7");
    /* mapped addresses, bad addresses, broken shapes */
    expect_failure(pop, "user [bob] coming from [::ffff:198.51.100.8] tried to login with "
                   "wrong password", "198.51.100.8");
    expect(pop, "user [bob] coming from [unknown] tried to login with wrong password",
           TAP_IGNORED);
    expect(pop, "user [bob] coming from [198.51.100.8:110] tried to login with wrong password",
           TAP_IGNORED);
    expect(pop, "coming from [198.51.100.8] tried to login with wrong password", TAP_MISSED);
    expect(pop, "user [bob] coming from [198.51.100.8] tried to login with wrong password x",
           TAP_MISSED);
    expect(i22, "user (name bob) coming from [] login rejected", TAP_IGNORED);
    expect(i22, "coming from [203.0.113.5] login rejected", TAP_MISSED);
    tap_matcher_free(i22);
    tap_matcher_free(pop);
    tap_matcher_free(all);
}
END_TEST

START_TEST(noise_is_missed)
{
    tap_matcher_t *m = with_filter("dbmail");
    const char *lines[] = {
        "",
        "\r",
        "login rejected",
        FILE_PREFIX PTR "login accepted: id [12] user [bob] from [203.0.113.5:51234]",
        "Nov 26 10:00:01 mail dbmail-imapd[1]: [0x1] Notice:[server] server_sock_cb(+1): "
        "connection from [203.0.113.5] on [0.0.0.0:993]",
        "\x01\x02\xff\xfe garbage ] from [1.2.3.4:5]",
        "]]]][[[[::::",
    };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect(m, lines[i], TAP_MISSED);
    tap_matcher_free(m);
}
END_TEST

START_TEST(seed_regex_verbatim)
{
    tap_matcher_t *m = with_regex(SEED);

    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:51234]",
                   "203.0.113.5");
    expect_failure(m, SYSLOG354 PTR "login rejected: user [bob] from [2001:db8::5:51234]",
                   "2001:db8::5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [::ffff:203.0.113.5:993]",
                   "203.0.113.5");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [fe80::1%eth0:993]",
                   "fe80::1");
    /* greedy .* keeps the seed safe against a fake suffix too */
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [x] from [203.0.113.66:1] from "
                   "[198.51.100.7:5]", "198.51.100.7");
    expect_failure(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:1]\r",
                   "203.0.113.5");
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5]", TAP_MISSED);
    expect(m, FILE_PREFIX PTR "login accepted: id [1] user [bob] from [203.0.113.5:1]",
           TAP_MISSED);
    /* the regex takes a dotted run the parser refuses: ignored */
    expect(m, FILE_PREFIX PTR "login rejected: user [bob] from [300.1.1.1:1]", TAP_IGNORED);
    tap_matcher_free(m);
}
END_TEST

START_TEST(regex_tags_and_errors)
{
    char err[TAP_MATCH_ERRLEN];
    tap_matcher_t *m = tap_matcher_new();

    ck_assert_int_eq(tap_matcher_add_failregex(m, "login rejected", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "<HOST>"));
    ck_assert_int_eq(tap_matcher_add_failregex(m, "from \\[<HOST>(", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "bad regex"));
    ck_assert_int_eq(tap_matcher_add_failregex(m, "from <DNS>", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "<DNS>"));
    ck_assert_int_eq(tap_matcher_add_failregex(m, "<SKIPLINES>x <HOST>", err, sizeof(err)), -1);
    ck_assert_int_eq(tap_matcher_add_filter(m, "dbmail-smtp", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown filter 'dbmail-smtp'"));
    ck_assert_int_eq(tap_matcher_add_ignoreregex(m, "a(", err, sizeof(err)), -1);
    ck_assert_uint_eq(tap_matcher_count(m), 0);
    /* a long regex error stays inside the buffer */
    char small[16];
    ck_assert_int_eq(tap_matcher_add_failregex(m, "x", small, sizeof(small)), -1);
    ck_assert_uint_lt(strlen(small), sizeof(small));

    /* <IP4>, <IP6>, <ADDR> and <F-USER> groups */
    ck_assert_int_eq(tap_matcher_add_failregex(m, "^v4 <IP4>$", err, sizeof(err)), 0);
    ck_assert_int_eq(tap_matcher_add_failregex(m, "^v6 <IP6>$", err, sizeof(err)), 0);
    ck_assert_int_eq(tap_matcher_add_failregex(m,
                         "^user <F-USER>\\S+</F-USER> at (?:<ADDR>|<HOST>)$", err, sizeof(err)),
                     0);
    expect_failure(m, "v4 192.0.2.1", "192.0.2.1");
    expect_failure(m, "v6 2001:db8::1", "2001:db8::1");
    expect(m, "v4 2001:db8::1", TAP_MISSED);
    expect_failure(m, "user bob at 2001:db8::2", "2001:db8::2");
    expect_failure(m, "user bob at 192.0.2.9", "192.0.2.9");
    ck_assert_uint_eq(tap_matcher_count(m), 3);

    /* an escaped tag is literal text */
    tap_matcher_t *lit = with_regex("\\<HOST> <HOST>");
    expect_failure(lit, "<HOST> 192.0.2.3", "192.0.2.3");
    tap_matcher_free(lit);
    tap_matcher_free(m);
}
END_TEST

START_TEST(ignoreregex_and_clone)
{
    char err[TAP_MATCH_ERRLEN];
    tap_matcher_t *m = with_filter("dbmail-imap");

    ck_assert_int_eq(tap_matcher_add_ignoreregex(m, "user \\[(?:admin|probe)\\]", err,
                                                 sizeof(err)), 0);
    const char *admin = FILE_PREFIX PTR "login rejected: user [admin] from [203.0.113.5:1]";
    const char *bob = FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:1]";
    expect(m, admin, TAP_IGNORED);
    expect_failure(m, bob, "203.0.113.5");
    /* an ignoreregex alone never turns a missed line into anything */
    expect(m, "user [admin] nothing else", TAP_MISSED);

    tap_matcher_t *c = tap_matcher_clone(m);
    ck_assert_ptr_nonnull(c);
    expect(c, admin, TAP_IGNORED);
    expect_failure(c, bob, "203.0.113.5");
    tap_matcher_free(m);
    expect_failure(c, bob, "203.0.113.5");
    tap_matcher_free(c);

    tap_matcher_t *all = with_filter("dbmail");
    tap_matcher_t *c2 = tap_matcher_clone(all);
    ck_assert_uint_eq(tap_matcher_count(c2), 3);
    tap_matcher_free(all);
    tap_matcher_free(c2);
}
END_TEST

START_TEST(giant_line)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    size_t n = TAP_MAX_LINE + 100;
    char *line = malloc(n + 128);

    memset(line, 'a', n);
    strcpy(line + n, " login rejected: user [bob] from [203.0.113.5:1]");
    expect(m, line, TAP_IGNORED);
    /* exactly at the limit still counts */
    const char *tail = "login rejected: user [bob] from [203.0.113.5:1]";
    memset(line, 'a', TAP_MAX_LINE);
    memcpy(line + TAP_MAX_LINE - strlen(tail), tail, strlen(tail) + 1);
    ck_assert_uint_eq(strlen(line), TAP_MAX_LINE);
    expect_failure(m, line, "203.0.113.5");
    free(line);
    tap_matcher_free(m);
}
END_TEST

START_TEST(regex_literal)
{
    char lit[256];
    int at = -1;

    ck_assert_uint_eq(tap_regex_literal(SEED, lit, sizeof(lit), &at), 22);
    ck_assert_str_eq(lit, "login rejected: user [");
    ck_assert_int_eq(at, 1);
    ck_assert_uint_gt(tap_regex_literal("^login rejected <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_int_eq(at, 0);
    ck_assert_uint_gt(tap_regex_literal("foo\\.bar <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_str_eq(lit, "foo.bar ");
    ck_assert_uint_eq(tap_regex_literal("abc|def <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_uint_eq(tap_regex_literal("(?i)login rejected <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_uint_eq(tap_regex_literal("\\x41bcdef <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_uint_eq(tap_regex_literal("\\Qabc\\E <HOST>", lit, sizeof(lit), &at), 0);
    ck_assert_uint_eq(tap_regex_literal("ab(*ACCEPT)cdefgh <HOST>", lit, sizeof(lit), &at), 0);
    /* optional characters are left out, groups and classes end a run */
    ck_assert_uint_gt(tap_regex_literal("abcdX?efg(hijklmnop)q[rs]tuv", lit, sizeof(lit), &at), 0);
    ck_assert_str_eq(lit, "abcd");
    ck_assert_uint_gt(tap_regex_literal("xy+zzzz", lit, sizeof(lit), &at), 0);
    ck_assert_str_eq(lit, "zzzz");
    ck_assert_uint_gt(tap_regex_literal("(a|b)cdef", lit, sizeof(lit), &at), 0);
    ck_assert_str_eq(lit, "cdef");
    ck_assert_int_eq(at, 0);
    ck_assert_uint_eq(tap_regex_literal(".*\\d+", lit, sizeof(lit), &at), 0);
}
END_TEST

/* ---- scanners ---- */

typedef struct seen {
    int failures, ignored, missed;
    char last[MG_ADDR_STRLEN];
    int stop_after;     /* stop when this many callbacks have run (0: never) */
    int calls;
} seen_t;

static int on_line(void *baton, tap_outcome_t o, const mg_addr_t *addr, const char *line,
                   size_t len)
{
    seen_t *s = baton;

    (void)line;
    (void)len;
    s->calls++;
    if (o == TAP_FAILURE) {
        s->failures++;
        ck_assert_ptr_nonnull(addr);
        mg_addr_format(addr, s->last, sizeof(s->last));
    } else if (o == TAP_IGNORED) {
        s->ignored++;
        ck_assert_ptr_null(addr);
    } else {
        s->missed++;
    }
    return s->stop_after && s->calls >= s->stop_after;
}

#define FAIL_A FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:1]\n"
#define FAIL_B SYSLOG354 PTR "login rejected: user [eve] from [2001:db8::9:77]\n"
#define NOISE FILE_PREFIX PTR "login accepted: id [1] user [bob] from [203.0.113.5:1]\n"
#define BADADDR FILE_PREFIX PTR "login rejected: user [bob] from [bogus:1]\n"

START_TEST(scan_block_counts)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    const char *buf = NOISE FAIL_A NOISE "\n" FAIL_B BADADDR "partial line login rejected";
    tap_scan_stats_t st = { 0, 0, 0, 0 };
    seen_t s;

    memset(&s, 0, sizeof(s));
    size_t used = tap_scan_block(m, buf, strlen(buf), 0, on_line, &s, &st);
    ck_assert_uint_eq(used, strlen(buf) - strlen("partial line login rejected"));
    ck_assert_uint_eq(st.lines, 6);
    ck_assert_uint_eq(st.failures, 2);
    ck_assert_uint_eq(st.ignored, 1);
    ck_assert_int_eq(s.failures, 2);
    ck_assert_int_eq(s.ignored, 1);
    ck_assert_int_eq(s.missed, 0);
    ck_assert_str_eq(s.last, "2001:db8::9");

    /* with missed lines reported the totals are the same */
    tap_scan_stats_t st2 = { 0, 0, 0, 0 };
    memset(&s, 0, sizeof(s));
    ck_assert_uint_eq(tap_scan_block(m, buf, strlen(buf), TAP_SCAN_MISSED, on_line, &s, &st2),
                      used);
    ck_assert_uint_eq(st2.lines, st.lines);
    ck_assert_uint_eq(st2.failures, st.failures);
    ck_assert_int_eq(s.missed, 3);

    /* no newline at all: nothing consumed; NULL stats and callback are fine */
    ck_assert_uint_eq(tap_scan_block(m, "abc", 3, 0, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(tap_scan_block(m, "", 0, 0, NULL, NULL, NULL), 0);
    tap_matcher_free(m);
}
END_TEST

START_TEST(scan_block_stop)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    const char *buf = FAIL_A NOISE FAIL_B FAIL_A;
    seen_t s;

    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    size_t used = tap_scan_block(m, buf, strlen(buf), 0, on_line, &s, NULL);
    ck_assert_uint_eq(used, strlen(FAIL_A NOISE FAIL_B));
    ck_assert_int_eq(s.failures, 2);
    tap_matcher_free(m);
}
END_TEST

/* The prefilter must agree with matching every line, for a custom regex
 * whose literal sits in the middle, and for several literals. */
START_TEST(prefilter_agrees)
{
    const char *res[] = { SEED, "user \\[\\w+\\] coming from \\[<HOST>\\] tried", NULL };
    tap_matcher_t *m = tap_matcher_new();
    char err[TAP_MATCH_ERRLEN];
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    unsigned seed = 7;

    for (size_t i = 0; res[i]; i++)
        ck_assert_int_eq(tap_matcher_add_failregex(m, res[i], err, sizeof(err)), 0);
    while (len + 300 < cap) {
        seed = seed * 1103515245u + 12345u;
        switch ((seed >> 16) % 5) {
        case 0: len += (size_t)sprintf(buf + len, "%s", FAIL_A); break;
        case 1: len += (size_t)sprintf(buf + len, "user [u%u] coming from [198.51.100.%u] "
                                       "tried x\n", seed % 100, seed % 250 + 1); break;
        case 2: len += (size_t)sprintf(buf + len, "%s", NOISE); break;
        case 3: len += (size_t)sprintf(buf + len, "login rejected: user [%u]\n", seed); break;
        default: len += (size_t)sprintf(buf + len, "login rejected: user [x] from "
                                        "[300.1.1.%u:1]\n", seed % 200); break;
        }
    }
    tap_scan_stats_t fast = { 0, 0, 0, 0 }, slow = { 0, 0, 0, 0 };
    ck_assert_uint_eq(tap_scan_block(m, buf, len, 0, NULL, NULL, &fast), len);
    ck_assert_uint_eq(tap_scan_block(m, buf, len, TAP_SCAN_MISSED, NULL, NULL, &slow), len);
    ck_assert_uint_gt(fast.failures, 0);
    ck_assert_uint_gt(fast.ignored, 0);
    ck_assert_uint_eq(fast.lines, slow.lines);
    ck_assert_uint_eq(fast.failures, slow.failures);
    ck_assert_uint_eq(fast.ignored, slow.ignored);
    free(buf);
    tap_matcher_free(m);
}
END_TEST

START_TEST(scan_long_lines_in_block)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    size_t big = TAP_MAX_LINE + 10;
    size_t cap = 3 * big + 1024;
    char *buf = malloc(cap);
    size_t len = 0;
    seen_t s;

    /* a long line without the literal, one with it, then a real failure */
    memset(buf, 'x', big);
    len = big;
    buf[len++] = '\n';
    memset(buf + len, 'y', big);
    memcpy(buf + len + 10, "login rejected: user [", 22);
    len += big;
    buf[len++] = '\n';
    len += (size_t)sprintf(buf + len, "%s", FAIL_A);
    memset(&s, 0, sizeof(s));
    tap_scan_stats_t st = { 0, 0, 0, 0 };
    ck_assert_uint_eq(tap_scan_block(m, buf, len, 0, on_line, &s, &st), len);
    ck_assert_uint_eq(st.lines, 3);
    ck_assert_uint_eq(st.toolong, 2);
    ck_assert_uint_eq(st.ignored, 2);
    ck_assert_uint_eq(st.failures, 1);
    ck_assert_int_eq(s.ignored, 2);
    free(buf);
    tap_matcher_free(m);
}
END_TEST

/* Write text into the scanner in pieces of at most step bytes (callers
 * whose callback never stops). */
static void feed(tap_scanner_t *sc, const char *text, size_t len, size_t step)
{
    while (len > 0) {
        size_t room;
        char *p = tap_scanner_space(sc, &room);
        size_t n = len < step ? len : step;
        if (n > room)
            n = room;
        ck_assert_uint_gt(n, 0);
        memcpy(p, text, n);
        ck_assert_int_eq(tap_scanner_commit(sc, n), 0);
        text += n;
        len -= n;
    }
}

START_TEST(scanner_partial_lines)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    const char *text = NOISE FAIL_A FAIL_B NOISE;
    size_t len = strlen(text);

    /* every split point, byte by byte and in odd steps */
    size_t steps[] = { 1, 3, 7, 64, 1000 };
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        seen_t s;
        memset(&s, 0, sizeof(s));
        tap_scanner_t *sc = tap_scanner_new(m, 0, on_line, &s);
        feed(sc, text, len, steps[k]);
        const tap_scan_stats_t *st = tap_scanner_stats(sc);
        ck_assert_uint_eq(st->lines, 4);
        ck_assert_uint_eq(st->failures, 2);
        ck_assert_int_eq(s.failures, 2);
        ck_assert_uint_eq(tap_scanner_pending(sc), 0);
        tap_scanner_free(sc);
    }

    /* a line counts only when its newline arrives */
    seen_t s;
    memset(&s, 0, sizeof(s));
    tap_scanner_t *sc = tap_scanner_new(m, 0, on_line, &s);
    const char *half = FILE_PREFIX PTR "login rejected: user [bob] from [203.0.113.5:1]";
    feed(sc, half, strlen(half), 4096);
    ck_assert_uint_eq(tap_scanner_stats(sc)->lines, 0);
    ck_assert_uint_eq(tap_scanner_pending(sc), strlen(half));
    feed(sc, "\n", 1, 1);
    ck_assert_uint_eq(tap_scanner_stats(sc)->failures, 1);
    ck_assert_uint_eq(tap_scanner_pending(sc), 0);
    /* reset drops a partial line */
    feed(sc, "login rejected: user [x] from [203.0.", 37, 100);
    tap_scanner_reset(sc);
    ck_assert_uint_eq(tap_scanner_pending(sc), 0);
    feed(sc, "1.2.3.4:1]\n", 11, 100);
    ck_assert_uint_eq(tap_scanner_stats(sc)->failures, 1);
    ck_assert_uint_eq(tap_scanner_stats(sc)->lines, 2);
    tap_scanner_free(sc);
    tap_matcher_free(m);
}
END_TEST

START_TEST(scanner_giant_line_across_reads)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    seen_t s;
    size_t big = 3 * 1024 * 1024;
    char *junk = malloc(big);

    memset(junk, 'z', big);
    memcpy(junk + 100, "login rejected: user [a] from [1.2.3.4:1]", 41);
    memset(&s, 0, sizeof(s));
    tap_scanner_t *sc = tap_scanner_new(m, 0, on_line, &s);
    feed(sc, FAIL_A, strlen(FAIL_A), 1 << 20);
    feed(sc, junk, big, 1 << 20);
    /* the giant line is being skipped, its bytes still pending */
    ck_assert_uint_eq(tap_scanner_pending(sc), big);
    feed(sc, "\n" FAIL_B, 1 + strlen(FAIL_B), 1 << 20);
    const tap_scan_stats_t *st = tap_scanner_stats(sc);
    ck_assert_uint_eq(st->lines, 3);
    ck_assert_uint_eq(st->toolong, 1);
    ck_assert_uint_eq(st->failures, 2);
    ck_assert_uint_eq(st->ignored, 1);
    ck_assert_str_eq(s.last, "2001:db8::9");
    ck_assert_uint_eq(tap_scanner_pending(sc), 0);
    tap_scanner_free(sc);
    free(junk);
    tap_matcher_free(m);
}
END_TEST

START_TEST(scanner_stop_and_resume)
{
    tap_matcher_t *m = with_filter("dbmail-imap");
    const char *text = FAIL_A FAIL_B FAIL_A NOISE;
    seen_t s;

    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    tap_scanner_t *sc = tap_scanner_new(m, 0, on_line, &s);
    size_t room;
    char *p = tap_scanner_space(sc, &room);
    memcpy(p, text, strlen(text));
    ck_assert_int_eq(tap_scanner_commit(sc, strlen(text)), 1);
    ck_assert_int_eq(s.failures, 1);
    ck_assert_uint_eq(tap_scanner_pending(sc), strlen(text) - strlen(FAIL_A));
    s.stop_after = 0;
    ck_assert_int_eq(tap_scanner_commit(sc, 0), 0);
    ck_assert_int_eq(s.failures, 3);
    ck_assert_uint_eq(tap_scanner_pending(sc), 0);
    ck_assert_uint_eq(tap_scanner_stats(sc)->lines, 4);
    tap_scanner_free(sc);
    tap_matcher_free(m);
}
END_TEST

START_TEST(filter_names)
{
    const char *const *names = tap_filter_names();
    size_t n = 0;

    for (; names[n]; n++)
        ck_assert(tap_filter_exists(names[n]));
    ck_assert_uint_eq(n, 4);
    ck_assert(!tap_filter_exists("dbmail-sieve"));
    ck_assert(!tap_filter_exists(""));
}
END_TEST

static Suite *match_suite(void)
{
    Suite *s = suite_create("tap_match");
    TCase *tc = tcase_create("match");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, imap3_every_prefix);
    tcase_add_test(tc, imap3_addresses_and_ports);
    tcase_add_test(tc, imap3_username_injection);
    tcase_add_test(tc, imap22_and_pop3);
    tcase_add_test(tc, noise_is_missed);
    tcase_add_test(tc, seed_regex_verbatim);
    tcase_add_test(tc, regex_tags_and_errors);
    tcase_add_test(tc, ignoreregex_and_clone);
    tcase_add_test(tc, giant_line);
    tcase_add_test(tc, regex_literal);
    tcase_add_test(tc, scan_block_counts);
    tcase_add_test(tc, scan_block_stop);
    tcase_add_test(tc, prefilter_agrees);
    tcase_add_test(tc, scan_long_lines_in_block);
    tcase_add_test(tc, scanner_partial_lines);
    tcase_add_test(tc, scanner_giant_line_across_reads);
    tcase_add_test(tc, scanner_stop_and_resume);
    tcase_add_test(tc, filter_names);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(match_suite)
