/* Addresses, prefixes, canonical text and CIDR sets. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mg_addr.h"
#include "mg_test.h"

/* Parse s (host or CIDR) and return its canonical text in a static buffer. */
static const char *canon(const char *s)
{
    static char buf[MG_ADDR_STRLEN];
    mg_addr_t a;
    const char *why = NULL;

    if (mg_cidr_parse(s, &a, &why) != 0) {
        snprintf(buf, sizeof(buf), "ERR:%s", why ? why : "?");
        return buf;
    }
    mg_addr_format(&a, buf, sizeof(buf));
    return buf;
}

static mg_addr_t addr(const char *s)
{
    mg_addr_t a;
    const char *why = NULL;

    ck_assert_msg(mg_cidr_parse(s, &a, &why) == 0, "%s: %s", s, why);
    return a;
}

/* Pointer to a parsed address; a small ring so several fit in one call. */
static const mg_addr_t *pa(const char *s)
{
    static mg_addr_t ring[8];
    static unsigned next;
    mg_addr_t *p = &ring[next++ % 8];

    *p = addr(s);
    return p;
}

START_TEST(parse_v4)
{
    mg_addr_t a;
    const char *why = NULL;
    static const uint8_t want[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 5 };

    ck_assert_int_eq(mg_addr_parse("203.0.113.5", &a, &why), 0);
    ck_assert_int_eq(a.plen, 128);
    ck_assert_mem_eq(a.a, want, 16);
    ck_assert(mg_addr_is_v4(&a));
    ck_assert_uint_eq(mg_addr_family_plen(&a), 32);
    ck_assert_str_eq(canon("203.0.113.5"), "203.0.113.5");
    ck_assert_str_eq(canon("0.0.0.0"), "0.0.0.0");
    ck_assert_str_eq(canon("255.255.255.255"), "255.255.255.255");
}
END_TEST

START_TEST(parse_v6)
{
    mg_addr_t a;
    const char *why = NULL;

    ck_assert_int_eq(mg_addr_parse("2001:db8::5", &a, &why), 0);
    ck_assert(!mg_addr_is_v4(&a));
    ck_assert_uint_eq(mg_addr_family_plen(&a), 128);
    ck_assert_int_eq(a.a[0], 0x20);
    ck_assert_int_eq(a.a[1], 0x01);
    ck_assert_int_eq(a.a[15], 5);
}
END_TEST

START_TEST(parse_mapped_is_v4)
{
    mg_addr_t a, b;
    const char *why = NULL;

    ck_assert_int_eq(mg_addr_parse("::ffff:1.2.3.4", &a, &why), 0);
    ck_assert_int_eq(mg_addr_parse("1.2.3.4", &b, &why), 0);
    ck_assert(mg_addr_is_v4(&a));
    ck_assert(mg_addr_equal(&a, &b));
    ck_assert_str_eq(canon("::ffff:1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(canon("::FFFF:102:304"), "1.2.3.4");
    /* IPv4-compatible (not mapped) stays IPv6 */
    ck_assert_str_eq(canon("::1.2.3.4"), "::102:304");
}
END_TEST

START_TEST(parse_zone_dropped)
{
    mg_addr_t a, b;
    const char *why = NULL;

    ck_assert_int_eq(mg_addr_parse("fe80::1%eth0", &a, &why), 0);
    ck_assert_int_eq(mg_addr_parse("fe80::1", &b, &why), 0);
    ck_assert(mg_addr_equal(&a, &b));
    ck_assert_int_eq(mg_addr_parse("fe80::1%", &a, &why), -1);
    ck_assert_str_eq(why, "empty zone after %");
    ck_assert_int_eq(mg_addr_parse("1.2.3.4%eth0", &a, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "zone"));
    ck_assert_int_eq(mg_addr_parse("fe80::1%et h0", &a, &why), -1);
    ck_assert_str_eq(why, "bad character in the zone");
    ck_assert_int_eq(mg_addr_parse("fe80::1%eth0%1", &a, &why), -1);
}
END_TEST

START_TEST(parse_errors)
{
    static const char *const bad[] = {
        "", " ", " 1.2.3.4", "1.2.3.4 ", "1.2.3", "1.2.3.4.5", "256.1.1.1",
        "01.2.3.4", "1.2.3.4x", "[::1]", "[::1]:80", "1.2.3.4:80", "::1]",
        "2001:db8::5:51234", "example.com", "1.2.3.4/32", "::1/128",
        "2001:db8:::1", "2001:db8::1::2", "12345::", "g::1", "-1.2.3.4",
        "1.2.3.4\n", ":", "::ffff:1.2.3",
    };
    size_t i;
    mg_addr_t a;

    memset(&a, 0xaa, sizeof(a));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        mg_addr_t before = a;

        ck_assert_msg(mg_addr_parse(bad[i], &a, &why) == -1, "accepted '%s'", bad[i]);
        ck_assert_msg(why != NULL && *why, "no reason for '%s'", bad[i]);
        ck_assert_msg(memcmp(&before, &a, sizeof(a)) == 0, "output touched for '%s'", bad[i]);
    }
}
END_TEST

START_TEST(parse_reasons)
{
    mg_addr_t a;
    const char *why = NULL;
    char big[200];

    ck_assert_int_eq(mg_addr_parse("", &a, &why), -1);
    ck_assert_str_eq(why, "empty");
    ck_assert_int_eq(mg_addr_parse(NULL, &a, &why), -1);
    ck_assert_str_eq(why, "empty");
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(mg_addr_parse(big, &a, &why), -1);
    ck_assert_str_eq(why, "too long");
    ck_assert_int_eq(mg_addr_parse("[2001:db8::1]", &a, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "brackets"));
    ck_assert_int_eq(mg_addr_parse("10.0.0.0/8", &a, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "prefix"));
    ck_assert_int_eq(mg_addr_parse("1.2.3", &a, &why), -1);
    ck_assert_str_eq(why, "not an IPv4 or IPv6 address");
    /* why may be NULL */
    ck_assert_int_eq(mg_addr_parse("nope", &a, NULL), -1);
}
END_TEST

START_TEST(parse_counted)
{
    mg_addr_t a, b;
    const char *why = NULL;
    const char line[] = "from [203.0.113.5:51234]";
    char nul[] = "1.2.3.4\0" "5";
    char *heap;

    /* a slice of a longer buffer, not NUL-terminated at len */
    ck_assert_int_eq(mg_addr_parse_n(line + 6, 11, &a, &why), 0);
    ck_assert_int_eq(mg_addr_parse("203.0.113.5", &b, &why), 0);
    ck_assert(mg_addr_equal(&a, &b));
    ck_assert_int_eq(mg_addr_parse_n(line + 6, 12, &a, &why), -1);
    /* embedded NUL */
    ck_assert_int_eq(mg_addr_parse_n(nul, 9, &a, &why), -1);
    ck_assert_str_eq(why, "embedded NUL character");
    ck_assert_int_eq(mg_addr_parse_n(nul, 7, &a, &why), 0);
    ck_assert_int_eq(mg_addr_parse_n(nul, 0, &a, &why), -1);
    ck_assert_str_eq(why, "empty");
    ck_assert_int_eq(mg_addr_parse_n(NULL, 5, &a, &why), -1);
    ck_assert_int_eq(mg_addr_parse_n("1.2.3.4", 200, &a, &why), -1);
    ck_assert_str_eq(why, "too long");
    /* exact-size heap allocation: a read past len would be caught by ASan */
    heap = malloc(7);
    memcpy(heap, "::1abc", 6);
    ck_assert_int_eq(mg_addr_parse_n(heap, 3, &a, &why), 0);
    ck_assert_int_eq(a.a[15], 1);
    ck_assert_int_eq(mg_addr_parse_n(heap, 6, &a, &why), 0);
    ck_assert_int_eq(a.a[14], 0x1a);
    ck_assert_int_eq(a.a[15], 0xbc);
    free(heap);
    heap = malloc(11);
    memcpy(heap, "2001:db8::5", 11);
    ck_assert_int_eq(mg_addr_parse_n(heap, 11, &a, &why), 0);
    free(heap);
}
END_TEST

START_TEST(format_rfc5952)
{
    ck_assert_str_eq(canon("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
    ck_assert_str_eq(canon("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
    ck_assert_str_eq(canon("::"), "::");
    ck_assert_str_eq(canon("::1"), "::1");
    ck_assert_str_eq(canon("1::"), "1::");
    ck_assert_str_eq(canon("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
    ck_assert_str_eq(canon("2001:db8:0:0:1:0:0:0"), "2001:db8:0:0:1::");
    ck_assert_str_eq(canon("0:0:1:0:0:0:0:1"), "0:0:1::1");
    ck_assert_str_eq(canon("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
    ck_assert_str_eq(canon("1:0:1:0:1:0:1:0"), "1:0:1:0:1:0:1:0");
    ck_assert_str_eq(canon("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789"),
                     "abcd:ef01:2345:6789:abcd:ef01:2345:6789");
    ck_assert_str_eq(canon("fe80::0001:0010:0100:1000"), "fe80::1:10:100:1000");
    ck_assert_str_eq(canon("0:0:0:0:0:0:0:1"), "::1");
    ck_assert_str_eq(canon("1:2:3:4:5:6:7::"), "1:2:3:4:5:6:7:0");
    ck_assert_str_eq(canon("::2:3:4:5:6:7:8"), "0:2:3:4:5:6:7:8");
}
END_TEST

START_TEST(format_truncates)
{
    mg_addr_t a = addr("2001:db8::1");
    char small[6];
    char big[MG_ADDR_STRLEN];

    ck_assert_uint_eq(mg_addr_format(&a, big, sizeof(big)), strlen("2001:db8::1"));
    ck_assert_uint_eq(mg_addr_format(&a, small, sizeof(small)), strlen("2001:db8::1"));
    ck_assert_str_eq(small, "2001:");
    ck_assert_uint_eq(mg_addr_format(&a, small, 0), strlen("2001:db8::1"));
    a = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
    ck_assert_uint_lt(mg_addr_format(&a, big, sizeof(big)), MG_ADDR_STRLEN);
    ck_assert_str_eq(big, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
}
END_TEST

START_TEST(cidr_parse_ok)
{
    mg_addr_t a;
    const char *why = NULL;

    ck_assert_str_eq(canon("10.0.0.0/8"), "10.0.0.0/8");
    ck_assert_str_eq(canon("127.0.0.1/8"), "127.0.0.0/8");
    ck_assert_str_eq(canon("192.168.1.77/24"), "192.168.1.0/24");
    ck_assert_str_eq(canon("192.168.1.77/32"), "192.168.1.77");
    ck_assert_str_eq(canon("192.168.1.77/1"), "128.0.0.0/1");
    ck_assert_str_eq(canon("2001:db8::/32"), "2001:db8::/32");
    ck_assert_str_eq(canon("2001:db8:1:2:3:4:5:6/64"), "2001:db8:1:2::/64");
    ck_assert_str_eq(canon("2001:db8::1/128"), "2001:db8::1");
    ck_assert_str_eq(canon("2001:db8::1/127"), "2001:db8::/127");
    ck_assert_str_eq(canon("ffff::/1"), "8000::/1");
    ck_assert_str_eq(canon("::ffff:10.1.2.3/104"), "10.0.0.0/8");
    ck_assert_str_eq(canon("::ffff:10.1.2.3/120"), "10.1.2.0/24");
    /* a mapped address with a prefix shorter than the mapping is IPv6 */
    ck_assert_str_eq(canon("::ffff:10.1.2.3/64"), "::/64");
    ck_assert_int_eq(mg_cidr_parse("10.9.8.7/12", &a, &why), 0);
    ck_assert_int_eq(a.plen, 108);
    ck_assert_uint_eq(mg_addr_family_plen(&a), 12);
    ck_assert_int_eq(a.a[13], 0);
    ck_assert_int_eq(a.a[12], 10);
}
END_TEST

START_TEST(cidr_parse_errors)
{
    static const struct { const char *in; const char *why; } bad[] = {
        { "10.0.0.0/0", "/0" },
        { "0.0.0.0/0", "/0" },
        { "::/0", "/0" },
        { "::ffff:0.0.0.0/96", "/0" },
        { "10.0.0.0/33", "above 32" },
        { "2001:db8::/129", "above 128" },
        { "10.0.0.0/", "missing" },
        { "10.0.0.0/-8", "missing" },
        { "10.0.0.0/+8", "missing" },
        { "10.0.0.0/8x", "decimal" },
        { "10.0.0.0/ 8", "missing" },
        { "10.0.0.0/8/8", "decimal" },
        { "10.0.0.0/08", "leading zero" },
        { "10.0.0.0/1000", "out of range" },
        { "10.0.0/8", "not an IPv4" },
        { "/8", "empty" },
        { "", "empty" },
        { "[2001:db8::]/32", "brackets" },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mg_addr_t a;
        const char *why = NULL;

        ck_assert_msg(mg_cidr_parse(bad[i].in, &a, &why) == -1, "accepted %s", bad[i].in);
        ck_assert_msg(why && strstr(why, bad[i].why), "%s: reason '%s' lacks '%s'",
                      bad[i].in, why ? why : "(null)", bad[i].why);
    }
    ck_assert_int_eq(mg_cidr_parse(NULL, &(mg_addr_t){ 0 }, NULL), -1);
}
END_TEST

START_TEST(mask_and_in)
{
    mg_addr_t a = addr("2001:db8:1:2:3:4:5:6");
    mg_addr_t v4 = addr("192.0.2.200");
    mg_addr_t net;
    char buf[MG_ADDR_STRLEN];

    net = a;
    mg_addr_mask(&net, 64);
    mg_addr_format(&net, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2001:db8:1:2::/64");
    ck_assert(mg_addr_in(&a, &net));
    ck_assert(!mg_addr_in(&net, &a));
    ck_assert(mg_addr_in(&net, &net));
    net = a;
    mg_addr_mask(&net, 200);   /* clamped */
    ck_assert(mg_addr_equal(&net, &a));
    net = a;
    mg_addr_mask(&net, 0);
    ck_assert_int_eq(net.plen, 0);
    mg_addr_format(&net, buf, sizeof(buf));
    ck_assert_str_eq(buf, "::/0");

    net = v4;
    mg_addr_mask(&net, 25);
    mg_addr_format(&net, buf, sizeof(buf));
    ck_assert_str_eq(buf, "192.0.2.128/25");
    ck_assert(mg_addr_in(&v4, &net));
    ck_assert(mg_addr_in(&v4, &(mg_addr_t){ .plen = 0 }));
    mg_addr_mask(&net, 99);    /* clamped to 32: unchanged prefix */
    ck_assert_uint_eq(mg_addr_family_plen(&net), 32);
    ck_assert(!mg_addr_in(pa("192.0.2.1"), pa("192.0.2.128/25")));
    ck_assert(mg_addr_in(pa("192.0.2.129"), pa("192.0.2.128/25")));
    ck_assert(mg_addr_in(pa("10.1.2.3"), pa("10.0.0.0/8")));
    ck_assert(!mg_addr_in(pa("11.1.2.3"), pa("10.0.0.0/8")));
    ck_assert(mg_addr_in(pa("10.1.2.0/24"), pa("10.0.0.0/8")));
    ck_assert(!mg_addr_in(pa("10.0.0.0/7"), pa("10.0.0.0/8")));
    /* a v4 host is not inside an unrelated v6 net, but is inside ::/64 by construction */
    ck_assert(!mg_addr_in(pa("10.1.2.3"), pa("2001:db8::/32")));
    ck_assert(mg_addr_in(pa("10.1.2.3"), pa("::/64")));
    ck_assert(!mg_addr_equal(pa("10.0.0.0/8"), pa("10.0.0.0/9")));
}
END_TEST

START_TEST(ban_key)
{
    mg_addr_t k;
    char buf[MG_ADDR_STRLEN];

    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 64, &k);
    mg_addr_format(&k, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2001:db8:1:2::/64");
    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 48, &k);
    mg_addr_format(&k, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2001:db8:1::/48");
    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 128, &k);
    mg_addr_format(&k, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2001:db8:1:2:3:4:5:6");
    /* out-of-range prefixes fall back to the host, never wider */
    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 0, &k);
    ck_assert_int_eq(k.plen, 128);
    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 500, &k);
    ck_assert_int_eq(k.plen, 128);
    /* IPv4 is the host whatever the v6 prefix */
    mg_addr_ban_key(pa("198.51.100.7"), 64, &k);
    mg_addr_format(&k, buf, sizeof(buf));
    ck_assert_str_eq(buf, "198.51.100.7");
    mg_addr_ban_key(pa("::ffff:198.51.100.7"), 1, &k);
    mg_addr_format(&k, buf, sizeof(buf));
    ck_assert_str_eq(buf, "198.51.100.7");
}
END_TEST

START_TEST(cidrset_basic)
{
    mg_cidrset_t *s = mg_cidrset_new();
    const char *why = NULL;

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(mg_cidrset_count(s), 0);
    ck_assert(!mg_cidrset_contains(s, pa("1.2.3.4")));
    ck_assert_int_eq(mg_cidrset_add(s, "127.0.0.1/8", &why), 0);
    ck_assert_int_eq(mg_cidrset_add(s, "::1", &why), 0);
    ck_assert_int_eq(mg_cidrset_add(s, "2001:db8::/32", &why), 0);
    ck_assert_int_eq(mg_cidrset_add(s, "127.0.0.0/8", &why), 0);   /* duplicate */
    ck_assert_uint_eq(mg_cidrset_count(s), 3);
    ck_assert(mg_cidrset_contains(s, pa("127.0.0.1")));
    ck_assert(mg_cidrset_contains(s, pa("127.255.1.2")));
    ck_assert(mg_cidrset_contains(s, pa("::ffff:127.9.9.9")));
    ck_assert(!mg_cidrset_contains(s, pa("128.0.0.1")));
    ck_assert(mg_cidrset_contains(s, pa("::1")));
    ck_assert(!mg_cidrset_contains(s, pa("::2")));
    ck_assert(mg_cidrset_contains(s, pa("2001:db8:ffff::1")));
    ck_assert(!mg_cidrset_contains(s, pa("2001:db9::1")));
    /* a prefix is contained only in a shorter-or-equal entry */
    ck_assert(mg_cidrset_contains(s, pa("2001:db8:1::/48")));
    ck_assert(!mg_cidrset_contains(s, pa("2001:db8::/31")));

    /* bad entries leave the set unchanged */
    ck_assert_int_eq(mg_cidrset_add(s, "10.0.0.0/0", &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "/0"));
    ck_assert_int_eq(mg_cidrset_add(s, "nonsense", &why), -1);
    ck_assert_int_eq(mg_cidrset_add(s, NULL, &why), -1);
    ck_assert_uint_eq(mg_cidrset_count(s), 3);
    ck_assert_int_eq(mg_cidrset_add_addr(s, &(mg_addr_t){ .a = { 0 }, .plen = 0 }), -1);
    ck_assert_int_eq(mg_cidrset_add_addr(s, &(mg_addr_t){ .a = { 0 }, .plen = 129 }), -1);
    ck_assert_uint_eq(mg_cidrset_count(s), 3);
    mg_cidrset_free(s);
}
END_TEST

START_TEST(cidrset_null_is_empty)
{
    const char *why = NULL;
    mg_cidrset_t *s = mg_cidrset_new();

    ck_assert(!mg_cidrset_contains(NULL, pa("1.2.3.4")));
    ck_assert_uint_eq(mg_cidrset_count(NULL), 0);
    ck_assert_int_eq(mg_cidrset_add(NULL, "1.2.3.4", &why), -1);
    ck_assert_int_eq(mg_cidrset_add_addr(NULL, pa("1.2.3.4")), -1);
    ck_assert_int_eq(mg_cidrset_add_all(s, NULL), 0);
    ck_assert_int_eq(mg_cidrset_add_all(NULL, s), -1);
    ck_assert_int_eq(mg_cidrset_add_all(s, s), 0);
    ck_assert_uint_eq(mg_cidrset_count(s), 0);
    mg_cidrset_free(NULL);
    mg_cidrset_free(s);
}
END_TEST

START_TEST(cidrset_add_addr_masks)
{
    mg_cidrset_t *s = mg_cidrset_new();
    mg_addr_t raw;

    /* host bits set beyond plen: the set masks its own copy */
    raw = addr("10.1.2.3");
    raw.plen = 120;
    ck_assert_int_eq(mg_cidrset_add_addr(s, &raw), 0);
    ck_assert(mg_cidrset_contains(s, pa("10.1.2.200")));
    ck_assert(!mg_cidrset_contains(s, pa("10.1.3.1")));
    mg_cidrset_free(s);
}
END_TEST

START_TEST(cidrset_many_lengths)
{
    mg_cidrset_t *s = mg_cidrset_new();
    mg_cidrset_t *m = mg_cidrset_new();
    unsigned len;
    char text[64];
    const char *why = NULL;

    /* every IPv4 length: 10.<len>.0.0/len has a distinct network for len >= 16 */
    for (len = 16; len <= 32; len++) {
        snprintf(text, sizeof(text), "10.%u.0.1/%u", len, len);
        ck_assert_msg(mg_cidrset_add(s, text, &why) == 0, "%s: %s", text, why);
    }
    /* every IPv6 length from 16 to 128 under 2001:db8:<len>:: */
    for (len = 48; len <= 128; len++) {
        snprintf(text, sizeof(text), "2001:db8:%x::1/%u", len, len);
        ck_assert_msg(mg_cidrset_add(s, text, &why) == 0, "%s: %s", text, why);
    }
    ck_assert_uint_eq(mg_cidrset_count(s), 17 + 81);
    for (len = 16; len <= 32; len++) {
        snprintf(text, sizeof(text), "10.%u.0.1", len);
        ck_assert_msg(mg_cidrset_contains(s, pa(text)), "%s", text);
        snprintf(text, sizeof(text), "::ffff:10.%u.0.1", len);
        ck_assert_msg(mg_cidrset_contains(s, pa(text)), "%s", text);
        if (len < 31) {
            snprintf(text, sizeof(text), "10.%u.0.3", len);
            ck_assert_msg(mg_cidrset_contains(s, pa(text)), "%s", text);
        }
        snprintf(text, sizeof(text), "10.%u.0.1", len + 100);
        ck_assert_msg(!mg_cidrset_contains(s, pa(text)), "%s", text);
    }
    ck_assert(!mg_cidrset_contains(s, pa("10.32.0.2")));
    ck_assert(mg_cidrset_contains(s, pa("10.31.0.0")));
    ck_assert(!mg_cidrset_contains(s, pa("10.31.0.2")));
    ck_assert(mg_cidrset_contains(s, pa("10.16.255.255")));
    for (len = 48; len <= 128; len++) {
        snprintf(text, sizeof(text), "2001:db8:%x::1", len);
        ck_assert_msg(mg_cidrset_contains(s, pa(text)), "%s", text);
        snprintf(text, sizeof(text), "2001:db8:%x::2", len);
        ck_assert_msg(mg_cidrset_contains(s, pa(text)) == (len <= 126), "%s", text);
        snprintf(text, sizeof(text), "2001:db8:%x::1", len + 200);
        ck_assert_msg(!mg_cidrset_contains(s, pa(text)), "%s", text);
    }

    /* merge: add_all gives the union, duplicates ignored */
    ck_assert_int_eq(mg_cidrset_add(m, "192.0.2.0/24", &why), 0);
    ck_assert_int_eq(mg_cidrset_add(m, "10.20.0.0/20", &why), 0);   /* already in s */
    ck_assert_int_eq(mg_cidrset_add_all(m, s), 0);
    ck_assert_uint_eq(mg_cidrset_count(m), 17 + 81 + 1);
    ck_assert(mg_cidrset_contains(m, pa("192.0.2.9")));
    ck_assert(mg_cidrset_contains(m, pa("2001:db8:40::1")));
    ck_assert(!mg_cidrset_contains(s, pa("192.0.2.9")));
    mg_cidrset_free(s);
    mg_cidrset_free(m);
}
END_TEST

START_TEST(cidrset_large)
{
    mg_cidrset_t *s = mg_cidrset_new();
    unsigned i;
    mg_addr_t a = addr("172.16.0.0");

    /* insertion in descending order exercises the sorted insert */
    for (i = 0; i < 2000; i++) {
        unsigned v = 1999 - i;

        a.a[14] = (uint8_t)(v >> 8);
        a.a[15] = (uint8_t)v;
        ck_assert_int_eq(mg_cidrset_add_addr(s, &a), 0);
    }
    ck_assert_uint_eq(mg_cidrset_count(s), 2000);
    for (i = 0; i < 2100; i++) {
        a.a[14] = (uint8_t)(i >> 8);
        a.a[15] = (uint8_t)i;
        ck_assert_int_eq(mg_cidrset_contains(s, &a), i < 2000);
    }
    mg_cidrset_free(s);
}
END_TEST

/*
 * The quick dotted-quad path of mg_addr_parse()/mg_addr_parse_n() against
 * the general one.  mg_cidr_parse() always takes the general path (copy,
 * checks, inet_pton), and for text without '/' it must agree with
 * mg_addr_parse() on everything: result, address, reason.  inet_pton()
 * itself is the second witness for every text it is asked about.
 */
static uint32_t qp_rand_state = 0x12345678u;

static uint32_t qp_rand(void)
{
    qp_rand_state ^= qp_rand_state << 13;
    qp_rand_state ^= qp_rand_state >> 17;
    qp_rand_state ^= qp_rand_state << 5;
    return qp_rand_state;
}

/* Compare mg_addr_parse(s) with the general path and with inet_pton. */
static void qp_check(const char *s, unsigned *accepted)
{
    mg_addr_t fast, gen;
    const char *why_fast = "untouched", *why_gen = "untouched";
    int rf, rg;

    memset(&fast, 0x5a, sizeof(fast));
    memset(&gen, 0x5a, sizeof(gen));
    rf = mg_addr_parse(s, &fast, &why_fast);
    if (strchr(s, '/')) {
        ck_assert_msg(rf == -1, "'%s' accepted with a '/'", s);
        return;
    }
    rg = mg_cidr_parse(s, &gen, &why_gen);
    ck_assert_msg(rf == rg, "'%s': quick %d, general %d", s, rf, rg);
    ck_assert_msg(memcmp(&fast, &gen, sizeof(fast)) == 0, "'%s': different output", s);
    ck_assert_msg(strcmp(why_fast, why_gen) == 0, "'%s': reason '%s' vs '%s'", s, why_fast,
                  why_gen);
    if (rf == 0) {
        ck_assert_str_eq(why_fast, "untouched");
        (*accepted)++;
    }
    if (strlen(s) <= 70 && !strpbrk(s, ":%[]")) {
        struct in_addr v4;
        int ok = inet_pton(AF_INET, s, &v4) == 1;

        ck_assert_msg(ok == (rf == 0), "'%s': inet_pton says %d, parse %d", s, ok, rf);
        if (ok) {
            ck_assert(mg_addr_is_v4(&fast));
            ck_assert_int_eq(memcmp(fast.a + 12, &v4.s_addr, 4), 0);
            ck_assert_uint_eq(fast.plen, 128);
        }
    }
}

/* The same for mg_addr_parse_n(buf, len): general reference on a
 * NUL-terminated copy, or the embedded-NUL refusal. */
static void qp_check_n(const char *buf, size_t len, unsigned *accepted)
{
    mg_addr_t fast, gen;
    const char *why_fast = "untouched", *why_gen = "untouched";
    char copy[128];
    int rf, rg;

    ck_assert_uint_lt(len, sizeof(copy));
    memset(&fast, 0x5a, sizeof(fast));
    memset(&gen, 0x5a, sizeof(gen));
    rf = mg_addr_parse_n(buf, len, &fast, &why_fast);
    memcpy(copy, buf, len);
    copy[len] = '\0';
    if (len > 0 && memchr(buf, '\0', len) && len <= 70) {
        ck_assert_msg(rf == -1, "len %zu with a NUL accepted", len);
        ck_assert_str_eq(why_fast, "embedded NUL character");
        ck_assert_uint_eq(fast.a[0], 0x5a);
        return;
    }
    if (strchr(copy, '/')) {
        ck_assert_int_eq(rf, -1);
        return;
    }
    rg = mg_cidr_parse(copy, &gen, &why_gen);
    ck_assert_msg(rf == rg, "'%s' (len %zu): quick %d, general %d", copy, len, rf, rg);
    ck_assert_msg(memcmp(&fast, &gen, sizeof(fast)) == 0, "'%s': different output", copy);
    ck_assert_msg(strcmp(why_fast, why_gen) == 0, "'%s': reason '%s' vs '%s'", copy, why_fast,
                  why_gen);
    *accepted += rf == 0;
}

/* One part of a near-quad: digits with or without leading zeros, values
 * around 255, empty, or a stray character. */
static void qp_part(char *out, size_t size)
{
    static const char *const odd[] = { "", "-1", "+1", " 1", "1 ", "0x1", "a", ":", "%",
                                       "/", "\t", "1e", "\xff", "00", "000", "0000", "01",
                                       "010", "099", "256", "299", "999", "1000", "255",
                                       "25", "2", "0", "9" };
    uint32_t r = qp_rand() % 16;

    if (r < 9) {
        snprintf(out, size, "%u", qp_rand() % 256);
    }
    else if (r < 11) {
        snprintf(out, size, "%0*u", (int)(qp_rand() % 4) + 1, qp_rand() % 300);
    }
    else if (r < 12) {
        snprintf(out, size, "%u", qp_rand() % 100000);
    }
    else {
        snprintf(out, size, "%s", odd[qp_rand() % (sizeof(odd) / sizeof(odd[0]))]);
    }
}

static void qp_near_quad(char *out, size_t size)
{
    uint32_t r = qp_rand() % 16;
    unsigned parts = r < 11 ? 4 : r < 13 ? 3 : r < 14 ? 5 : 1 + qp_rand() % 7;
    size_t n = 0;
    unsigned i;

    out[0] = '\0';
    if (qp_rand() % 32 == 0) {
        n += (size_t)snprintf(out + n, size - n, ".");
    }
    for (i = 0; i < parts && n < size - 8; i++) {
        char part[16];

        qp_part(part, sizeof(part));
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? (qp_rand() % 64 ? "." : "..")
                                                          : "", part);
    }
    if (qp_rand() % 32 == 0 && n < size - 2) {
        n += (size_t)snprintf(out + n, size - n, qp_rand() % 2 ? "." : "x");
    }
}

START_TEST(quick_quad_matches_general)
{
    static const char *const edge[] = {
        "0.0.0.0", "255.255.255.255", "1.2.3.4", "127.0.0.1", "10.20.30.40",
        "192.0.2.1", "100.100.100.100", "9.99.199.249", "250.251.252.253",
        "256.1.1.1", "1.256.1.1", "1.1.256.1", "1.1.1.256", "300.1.1.1", "999.1.1.1",
        "1000.1.1.1", "01.2.3.4", "1.02.3.4", "1.2.03.4", "1.2.3.04", "00.0.0.0",
        "0.00.0.0", "1.2.3.004", "1.2.3", "1.2", "1", "1.2.3.4.5", "1.2.3.4.",
        ".1.2.3.4", "1..2.3", "1.2..3.4", "1.2.3.", "...", "....", "", ".",
        "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "1.2.3.4x", "1.2.3.4:80", "1.2.3.4/32",
        "1.2.3.4%eth0", "::ffff:1.2.3.4", "::1", "2001:db8::5", "1.2.3.-4", "+1.2.3.4",
        "1.2.3.4\xff", "\xff", "0x1.2.3.4", "1.2.3.0x4", "255.255.255.2555",
        "25.5.255.255", "2550.1.1.1", "1.2.3.45678", "[1.2.3.4]", "1,2,3,4",
        "12345678901234567890", "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",
    };
    char buf[96];
    unsigned accepted = 0, accepted_n = 0, i;
    size_t k;

    for (i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
        qp_check(edge[i], &accepted);
        qp_check_n(edge[i], strlen(edge[i]), &accepted_n);
    }
    /* near-quads: the shapes a fast parser gets wrong */
    for (i = 0; i < 60000; i++) {
        qp_near_quad(buf, sizeof(buf));
        qp_check(buf, &accepted);
    }
    /* any text over the quad's alphabet, up to 18 characters */
    for (i = 0; i < 60000; i++) {
        size_t len = qp_rand() % 19;

        for (k = 0; k < len; k++) {
            uint32_t r = qp_rand() % 16;

            buf[k] = r < 11 ? (char)('0' + qp_rand() % 10) : r < 15 ? '.' : ":x/ "[qp_rand() % 4];
        }
        buf[len] = '\0';
        qp_check(buf, &accepted);
    }
    /* counted strings: slices of a quad-rich buffer, NULs inside, no
     * terminator at len */
    for (i = 0; i < 60000; i++) {
        size_t len, off;

        qp_near_quad(buf, 48);
        k = strlen(buf);
        if (qp_rand() % 8 == 0 && k > 0) {
            buf[qp_rand() % k] = '\0';
        }
        buf[k] = qp_rand() % 2 ? '.' : '7';   /* no NUL right after */
        if (qp_rand() % 2) {
            /* the whole text, followed by a character that is not a NUL */
            off = 0;
            len = k;
        }
        else {
            off = qp_rand() % 3;
            len = qp_rand() % 19;
            if (off + len > k + 1) {
                len = k + 1 > off ? k + 1 - off : 0;
            }
        }
        qp_check_n(buf + off, len, &accepted_n);
    }
    /* the generators do reach the accepting path, often */
    ck_assert_uint_gt(accepted, 4000);
    ck_assert_uint_gt(accepted_n, 2000);
}
END_TEST

START_TEST(quick_quad_every_octet)
{
    char text[32];
    unsigned v, pos, accepted = 0;

    /* every value 0..999 in every position, as written and with a leading
     * zero: exactly 0..255 as written are accepted */
    for (pos = 0; pos < 4; pos++) {
        for (v = 0; v < 1000; v++) {
            unsigned o[4] = { 192, 0, 2, 1 };

            o[pos] = v;
            snprintf(text, sizeof(text), "%u.%u.%u.%u", o[0], o[1], o[2], o[3]);
            qp_check(text, &accepted);
            snprintf(text, sizeof(text), pos == 0 ? "0%u.%u.%u.%u" : pos == 1 ? "%u.0%u.%u.%u"
                     : pos == 2 ? "%u.%u.0%u.%u" : "%u.%u.%u.0%u", o[0], o[1], o[2], o[3]);
            qp_check(text, &accepted);
        }
    }
    ck_assert_uint_eq(accepted, 4 * 256);
}
END_TEST

/* Addresses that share their leading bytes (one IPv4 /16, hosts of one
 * IPv6 /64, /64 prefixes of one /48) fill the low 16 bits of the hash as
 * random keys would: about 63% of 65536 slots for 65536 keys. */
static unsigned low_bits_used(const mg_addr_t *keys, size_t n)
{
    static unsigned char seen[65536];
    unsigned used = 0;

    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < n; i++) {
        unsigned slot = (unsigned)(mg_addr_hash(&keys[i]) & 0xffff);
        used += !seen[slot];
        seen[slot] = 1;
    }
    return used;
}

START_TEST(hash_spreads_clustered_addresses)
{
    static mg_addr_t keys[65536];
    char txt[64];
    const char *why;

    for (unsigned i = 0; i < 65536; i++) {
        snprintf(txt, sizeof(txt), "10.1.%u.%u", i >> 8, i & 255);
        ck_assert_int_eq(mg_addr_parse(txt, &keys[i], &why), 0);
    }
    ck_assert_uint_ge(low_bits_used(keys, 65536), 39000);
    for (unsigned i = 0; i < 65536; i++) {
        snprintf(txt, sizeof(txt), "2001:db8:1:2::%x", i);
        ck_assert_int_eq(mg_addr_parse(txt, &keys[i], &why), 0);
    }
    ck_assert_uint_ge(low_bits_used(keys, 65536), 39000);
    for (unsigned i = 0; i < 65536; i++) {
        snprintf(txt, sizeof(txt), "2001:db8:1:%x::/64", i);
        ck_assert_int_eq(mg_cidr_parse(txt, &keys[i], &why), 0);
    }
    ck_assert_uint_ge(low_bits_used(keys, 65536), 39000);
    /* the prefix length is part of the key */
    ck_assert_int_eq(mg_cidr_parse("2001:db8:1:2::/64", &keys[0], &why), 0);
    ck_assert_int_eq(mg_cidr_parse("2001:db8:1:2::/63", &keys[1], &why), 0);
    ck_assert(mg_addr_hash(&keys[0]) != mg_addr_hash(&keys[1]));
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("core");

    /* the quick-path comparisons run a few hundred thousand parses, slow
     * under the sanitizers */
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, parse_v4);
    tcase_add_test(tc, parse_v6);
    tcase_add_test(tc, parse_mapped_is_v4);
    tcase_add_test(tc, parse_zone_dropped);
    tcase_add_test(tc, parse_errors);
    tcase_add_test(tc, parse_reasons);
    tcase_add_test(tc, parse_counted);
    tcase_add_test(tc, format_rfc5952);
    tcase_add_test(tc, format_truncates);
    tcase_add_test(tc, cidr_parse_ok);
    tcase_add_test(tc, cidr_parse_errors);
    tcase_add_test(tc, mask_and_in);
    tcase_add_test(tc, ban_key);
    tcase_add_test(tc, cidrset_basic);
    tcase_add_test(tc, cidrset_null_is_empty);
    tcase_add_test(tc, cidrset_add_addr_masks);
    tcase_add_test(tc, cidrset_many_lengths);
    tcase_add_test(tc, cidrset_large);
    tcase_add_test(tc, quick_quad_matches_general);
    tcase_add_test(tc, quick_quad_every_octet);
    tcase_add_test(tc, hash_spreads_clustered_addresses);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(addr_suite)
