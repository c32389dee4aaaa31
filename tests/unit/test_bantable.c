/* The shared-memory ban mirror: entries, prefixes, rebuilds, re-attach,
 * and lock-free readers racing a writer. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

#include "mg_bantable.h"
#include "mg_test.h"

#define NOW ((int64_t)1700000000)

static mg_addr_t addr(const char *s)
{
    mg_addr_t a;
    const char *why = NULL;

    ck_assert_msg(mg_cidr_parse(s, &a, &why) == 0, "%s: %s", s, why);
    return a;
}

static mg_addr_t v4n(uint32_t n)
{
    mg_addr_t a;

    memset(&a, 0, sizeof(a));
    a.a[10] = 0xff;
    a.a[11] = 0xff;
    a.a[12] = (uint8_t)(n >> 24);
    a.a[13] = (uint8_t)(n >> 16);
    a.a[14] = (uint8_t)(n >> 8);
    a.a[15] = (uint8_t)n;
    a.plen = 128;
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

static void *region(uint32_t cap, size_t *size)
{
    void *mem;

    *size = mg_bantable_size(cap);
    ck_assert_uint_gt(*size, 0);
    mem = aligned_alloc(64, (*size + 63) & ~(size_t)63);
    ck_assert_ptr_nonnull(mem);
    memset(mem, 0xa5, *size);   /* garbage: init must format it */
    return mem;
}

static mg_bantable_t *table(uint32_t cap, void **mem)
{
    size_t size;
    mg_bantable_t *t;

    *mem = region(cap, &size);
    t = mg_bantable_init(*mem, size, cap);
    ck_assert_ptr_eq(t, *mem);
    return t;
}

static int banned(const mg_bantable_t *t, const char *s, int64_t now, int64_t *exp)
{
    mg_addr_t a = addr(s);

    return mg_bantable_lookup(t, &a, now, exp);
}

START_TEST(sizes_and_init_errors)
{
    size_t size;
    void *mem;

    ck_assert_uint_eq(mg_bantable_size(0), 0);
    ck_assert_uint_eq(mg_bantable_size(UINT32_MAX), 0);
    ck_assert_uint_gt(mg_bantable_size(1), 0);
    ck_assert_uint_gt(mg_bantable_size(1000), mg_bantable_size(100));
    /* two tables of >= 2*capacity 32-byte slots */
    ck_assert_uint_ge(mg_bantable_size(50000), 2u * 2 * 50000 * 32);
    ck_assert_uint_le(mg_bantable_size(50000), 2u * 4 * 50000 * 32 + 65536);

    mem = region(16, &size);
    ck_assert_ptr_null(mg_bantable_init(NULL, size, 16));
    ck_assert_ptr_null(mg_bantable_init(mem, size - 1, 16));
    ck_assert_ptr_null(mg_bantable_init(mem, size, 0));
    ck_assert_ptr_null(mg_bantable_init((char *)mem + 4, size - 4, 1));   /* misaligned */
    ck_assert_ptr_eq(mg_bantable_init(mem, size, 16), mem);
    ck_assert_uint_eq(mg_bantable_capacity(mem), 16);
    ck_assert_uint_eq(mg_bantable_count(mem), 0);
    free(mem);
}
END_TEST

START_TEST(put_lookup_del)
{
    void *mem;
    mg_bantable_t *t = table(64, &mem);
    mg_addr_t a = addr("203.0.113.5");
    int64_t exp = 0;

    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, &exp), 0);
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 3600), 0);
    ck_assert_uint_eq(mg_bantable_count(t), 1);
    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 3600);
    ck_assert_int_eq(banned(t, "::ffff:203.0.113.5", NOW, &exp), 1);
    ck_assert_int_eq(banned(t, "203.0.113.6", NOW, &exp), 0);
    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, NULL), 1);   /* expiry optional */

    /* later expiry kept, earlier ignored */
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 60), 0);
    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 3600);
    ck_assert_int_eq(mg_bantable_put(t, &a, MG_EXPIRY_NEVER), 0);
    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, &exp), 1);
    ck_assert_int_eq(exp, MG_EXPIRY_NEVER);
    ck_assert_uint_eq(mg_bantable_count(t), 1);

    ck_assert_int_eq(mg_bantable_del(t, &a), 1);
    ck_assert_int_eq(mg_bantable_del(t, &a), 0);
    ck_assert_int_eq(banned(t, "203.0.113.5", NOW, &exp), 0);
    ck_assert_uint_eq(mg_bantable_count(t), 0);

    /* invalid keys */
    a.plen = 0;
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 1), -1);
    ck_assert_int_eq(mg_bantable_del(t, &a), 0);
    a.plen = 129;
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 1), -1);
    ck_assert_uint_eq(mg_bantable_count(t), 0);
    free(mem);
}
END_TEST

START_TEST(expiry_edges)
{
    void *mem;
    mg_bantable_t *t = table(8, &mem);
    mg_addr_t a = addr("2001:db8::7");
    int64_t exp = 0;

    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
    ck_assert_int_eq(banned(t, "2001:db8::7", NOW + 9, &exp), 1);
    /* the expiry is the first second the address is free again */
    ck_assert_int_eq(banned(t, "2001:db8::7", NOW + 10, &exp), 0);
    ck_assert_int_eq(banned(t, "2001:db8::7", NOW + 11, &exp), 0);
    /* expired entries still occupy the table until a rebuild */
    ck_assert_uint_eq(mg_bantable_count(t), 1);
    free(mem);
}
END_TEST

START_TEST(prefix_bans)
{
    void *mem;
    mg_bantable_t *t = table(64, &mem);
    mg_addr_t k;
    int64_t exp = 0;

    mg_addr_ban_key(pa("2001:db8:1:2:3:4:5:6"), 64, &k);
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100), 0);
    k = addr("192.0.2.0/24");
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 200), 0);
    k = addr("198.51.100.9");
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 300), 0);

    ck_assert_int_eq(banned(t, "2001:db8:1:2::1", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 100);
    ck_assert_int_eq(banned(t, "2001:db8:1:2:ffff:ffff:ffff:ffff", NOW, &exp), 1);
    ck_assert_int_eq(banned(t, "2001:db8:1:3::1", NOW, &exp), 0);
    ck_assert_int_eq(banned(t, "192.0.2.77", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 200);
    ck_assert_int_eq(banned(t, "::ffff:192.0.2.1", NOW, &exp), 1);
    ck_assert_int_eq(banned(t, "192.0.3.1", NOW, &exp), 0);
    ck_assert_int_eq(banned(t, "198.51.100.9", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 300);
    ck_assert_int_eq(banned(t, "198.51.100.10", NOW, &exp), 0);

    /* a host entry that expired does not hide a live prefix over it */
    k = addr("192.0.2.5");
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW - 5), 0);
    ck_assert_int_eq(banned(t, "192.0.2.5", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 200);
    /* the longest live match wins */
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 50), 0);
    ck_assert_int_eq(banned(t, "192.0.2.5", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 50);

    /* families do not mix: an IPv6 prefix over ::ffff:0:0/96 bans no IPv4 client */
    k = addr("::/64");
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100), 0);
    ck_assert_int_eq(banned(t, "10.0.0.1", NOW, &exp), 0);
    ck_assert_int_eq(banned(t, "::5", NOW, &exp), 1);

    /* deleting the last entry of a length stops matching it */
    k = addr("192.0.2.0/24");
    ck_assert_int_eq(mg_bantable_del(t, &k), 1);
    ck_assert_int_eq(banned(t, "192.0.2.77", NOW, &exp), 0);
    /* a host key with stray bits beyond plen is stored masked */
    k = addr("2001:db8:9:9::1");
    k.plen = 64;
    ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100), 0);
    ck_assert_int_eq(banned(t, "2001:db8:9:9::abcd", NOW, &exp), 1);
    k = addr("2001:db8:9:9::/64");
    ck_assert_int_eq(mg_bantable_del(t, &k), 1);
    ck_assert_int_eq(banned(t, "2001:db8:9:9::abcd", NOW, &exp), 0);
    free(mem);
}
END_TEST

START_TEST(every_prefix_length)
{
    void *mem;
    mg_bantable_t *t = table(256, &mem);
    unsigned len;
    char text[64];
    int64_t exp;

    for (len = 1; len <= 32; len++) {
        mg_addr_t k = v4n(((uint32_t)len << 24) | 0x00ffffffu);

        mg_addr_mask(&k, len);
        ck_assert_int_eq(mg_bantable_put(t, &k, NOW + len), 0);
    }
    for (len = 48; len <= 128; len++) {
        mg_addr_t k;

        snprintf(text, sizeof(text), "2001:db8:%x::1/%u", len, len);
        k = addr(text);
        ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 1000 + len), 0);
    }
    /* IPv4: 1.x.x.x is covered by the /1 (0.0.0.0/1) and /8 entries; a
     * host 32.255.255.255 matches exactly */
    ck_assert_int_eq(banned(t, "32.255.255.255", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 32);
    ck_assert_int_eq(banned(t, "31.255.255.254", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 31);
    ck_assert_int_eq(banned(t, "8.0.0.1", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 8);
    ck_assert_int_eq(banned(t, "200.1.1.1", NOW, &exp), 0);
    for (len = 48; len <= 128; len++) {
        snprintf(text, sizeof(text), "2001:db8:%x::1", len);
        ck_assert_int_eq(banned(t, text, NOW, &exp), 1);
        ck_assert_int_eq(exp, NOW + 1000 + len);
    }
    ck_assert_int_eq(banned(t, "2001:db8:ffff::1", NOW, &exp), 0);
    free(mem);
}
END_TEST

START_TEST(full_table)
{
    void *mem;
    mg_bantable_t *t = table(100, &mem);
    uint32_t i;
    mg_addr_t a;
    int64_t exp;

    for (i = 0; i < 100; i++) {
        a = v4n(0x0a000000u + i);
        ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 100 + i), 0);
    }
    ck_assert_uint_eq(mg_bantable_count(t), 100);
    a = v4n(0x0b000000u);
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 1), -1);
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 0);
    /* updating an existing entry still works when full */
    a = v4n(0x0a000005u);
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 9999), 0);
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 9999);
    /* a delete makes room */
    ck_assert_int_eq(mg_bantable_del(t, &a), 1);
    a = v4n(0x0b000000u);
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 1), 0);
    ck_assert_uint_eq(mg_bantable_count(t), 100);
    for (i = 0; i < 100; i++) {
        a = v4n(0x0a000000u + i);
        ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), i != 5);
    }
    free(mem);
}
END_TEST

START_TEST(tombstone_reuse)
{
    void *mem;
    mg_bantable_t *t = table(4, &mem);
    uint32_t i;
    mg_addr_t keep = v4n(0xc0000201u), a;
    int64_t exp;

    ck_assert_int_eq(mg_bantable_put(t, &keep, NOW + 77), 0);
    /* 10,000 distinct put/del cycles in an 8-slot table: tombstones must
     * be reused or compacted away, never exhaust the table */
    for (i = 0; i < 10000; i++) {
        a = v4n(0x0a000000u + i);
        ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
        ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);
        ck_assert_int_eq(mg_bantable_del(t, &a), 1);
        ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 0);
        ck_assert_int_eq(mg_bantable_lookup(t, &keep, NOW, &exp), 1);
        ck_assert_int_eq(exp, NOW + 77);
    }
    ck_assert_uint_eq(mg_bantable_count(t), 1);
    /* still fills to capacity afterwards */
    for (i = 0; i < 3; i++) {
        a = v4n(0x0b000000u + i);
        ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
    }
    a = v4n(0x0c000000u);
    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), -1);
    free(mem);
}
END_TEST

START_TEST(rebuild_flip)
{
    void *mem;
    mg_bantable_t *t = table(16, &mem);
    mg_addr_t a = addr("198.51.100.1"), b = addr("198.51.100.2"), c = addr("2001:db8::/48");
    mg_addr_t d = addr("198.51.100.4"), e = addr("198.51.100.5");
    int64_t exp;
    uint32_t i;

    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
    ck_assert_int_eq(mg_bantable_put(t, &e, NOW + 10), 0);
    ck_assert_int_eq(mg_bantable_put(t, pa("198.51.100.99"), NOW - 10), 0);   /* expired */
    ck_assert_uint_eq(mg_bantable_count(t), 3);
    /* add outside a rebuild is refused */
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &b, NOW + 10), -1);
    /* commit without begin changes nothing */
    mg_bantable_rebuild_commit(t);
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);

    mg_bantable_rebuild_begin(t);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &b, NOW + 20), 0);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &c, NOW + 30), 0);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &e, NOW + 40), 0);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &(mg_addr_t){ .plen = 0 }, NOW), -1);
    /* nothing visible before commit */
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);
    ck_assert_int_eq(mg_bantable_lookup(t, &b, NOW, &exp), 0);
    ck_assert_int_eq(banned(t, "2001:db8::1", NOW, &exp), 0);
    /* a ban and an unban made during the rebuild survive the commit */
    ck_assert_int_eq(mg_bantable_put(t, &d, NOW + 50), 0);
    ck_assert_int_eq(mg_bantable_lookup(t, &d, NOW, &exp), 1);
    ck_assert_int_eq(mg_bantable_del(t, &e), 1);
    ck_assert_int_eq(mg_bantable_lookup(t, &e, NOW, &exp), 0);
    mg_bantable_rebuild_commit(t);

    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 0);
    ck_assert_int_eq(mg_bantable_lookup(t, &b, NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 20);
    ck_assert_int_eq(banned(t, "2001:db8:0:ffff::1", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 30);
    ck_assert_int_eq(mg_bantable_lookup(t, &d, NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 50);
    ck_assert_int_eq(mg_bantable_lookup(t, &e, NOW, &exp), 0);
    ck_assert_uint_eq(mg_bantable_count(t), 3);

    /* a rebuild refuses more than capacity entries */
    mg_bantable_rebuild_begin(t);
    for (i = 0; i < 16; i++) {
        mg_addr_t k = v4n(0x0a000000u + i);

        ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 5), 0);
    }
    {
        mg_addr_t k = v4n(0x0b000000u);

        ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 5), -1);
    }
    mg_bantable_rebuild_commit(t);
    ck_assert_uint_eq(mg_bantable_count(t), 16);
    ck_assert_int_eq(mg_bantable_lookup(t, &b, NOW, &exp), 0);
    /* an empty rebuild empties the table */
    mg_bantable_rebuild_begin(t);
    mg_bantable_rebuild_commit(t);
    ck_assert_uint_eq(mg_bantable_count(t), 0);
    free(mem);
}
END_TEST

START_TEST(attach_previous_region)
{
    size_t size;
    void *mem = region(32, &size);
    void *moved;
    mg_bantable_t *t = mg_bantable_init(mem, size, 32);
    mg_addr_t a = addr("203.0.113.9"), p = addr("2001:db8:5:6::/64");
    int64_t exp;

    ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
    ck_assert_int_eq(mg_bantable_put(t, &p, NOW + 20), 0);
    /* an unfinished rebuild of the previous generation does not count */
    mg_bantable_rebuild_begin(t);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, pa("10.0.0.1"), NOW + 5), 0);

    /* same memory */
    t = mg_bantable_attach(mem, size, 32);
    ck_assert_ptr_eq(t, mem);
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);
    ck_assert_int_eq(banned(t, "2001:db8:5:6::99", NOW, &exp), 1);
    ck_assert_int_eq(banned(t, "10.0.0.1", NOW, &exp), 0);
    ck_assert_int_eq(mg_bantable_rebuild_add(t, &a, NOW + 5), -1);

    /* the same bytes at another address: position independent */
    moved = aligned_alloc(64, (size + 63) & ~(size_t)63);
    memcpy(moved, mem, size);
    memset(mem, 0, size);
    t = mg_bantable_attach(moved, size, 32);
    ck_assert_ptr_eq(t, moved);
    ck_assert_int_eq(mg_bantable_lookup(t, &a, NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 10);
    ck_assert_int_eq(banned(t, "2001:db8:5:6::99", NOW, &exp), 1);
    ck_assert_uint_eq(mg_bantable_count(t), 2);
    ck_assert_int_eq(mg_bantable_filter_maybe(t, &a), 1);
    ck_assert_int_eq(mg_bantable_filter_maybe(t, &p), 1);

    /* refusals */
    ck_assert_ptr_null(mg_bantable_attach(mem, size, 32));        /* zeroed: no magic */
    ck_assert_ptr_null(mg_bantable_attach(moved, size, 16));      /* other capacity */
    ck_assert_ptr_null(mg_bantable_attach(moved, size - 1, 32));  /* region too small */
    ck_assert_ptr_null(mg_bantable_attach(NULL, size, 32));
    ((uint32_t *)moved)[1] ^= 0x100;                               /* layout version */
    ck_assert_ptr_null(mg_bantable_attach(moved, size, 32));
    ((uint32_t *)moved)[1] ^= 0x100;
    ck_assert_ptr_nonnull(mg_bantable_attach(moved, size, 32));
    ((uint32_t *)moved)[0] ^= 1;                                   /* magic */
    ck_assert_ptr_null(mg_bantable_attach(moved, size, 32));
    ((uint32_t *)moved)[0] ^= 1;
    ((uint32_t *)moved)[3] *= 2;                                   /* slot count */
    ck_assert_ptr_null(mg_bantable_attach(moved, size, 32));
    free(mem);
    free(moved);
}
END_TEST

typedef struct seen {
    int n;
    int v6;
    int64_t sum;
} seen_t;

static int visit(void *baton, const mg_addr_t *key, int64_t expiry)
{
    seen_t *s = baton;

    s->n++;
    s->sum += expiry - NOW;
    if (!mg_addr_is_v4(key)) {
        char buf[MG_ADDR_STRLEN];

        mg_addr_format(key, buf, sizeof(buf));
        ck_assert_str_eq(buf, "2001:db8:1:2::/64");
        s->v6++;
    }
    return 0;
}

static int visit_stop(void *baton, const mg_addr_t *key, int64_t expiry)
{
    (void)key;
    (void)expiry;
    return ++*(int *)baton >= 2;
}

START_TEST(foreach_and_copy)
{
    void *m1, *m2, *m3;
    mg_bantable_t *src = table(64, &m1), *dst = table(1000, &m2), *tiny = table(2, &m3);
    uint32_t i;
    seen_t s = { 0, 0, 0 };
    int stops = 0;
    int64_t exp;

    for (i = 0; i < 10; i++) {
        mg_addr_t k = v4n(0x0a000000u + i);

        ck_assert_int_eq(mg_bantable_put(src, &k, NOW + (i < 3 ? -1 : (int64_t)i)), 0);
    }
    ck_assert_int_eq(mg_bantable_put(src, pa("2001:db8:1:2::/64"), NOW + 100), 0);
    mg_bantable_foreach(src, NOW, visit, &s);
    ck_assert_int_eq(s.n, 8);          /* 3 expired skipped */
    ck_assert_int_eq(s.v6, 1);
    ck_assert_int_eq(s.sum, 3 + 4 + 5 + 6 + 7 + 8 + 9 + 100);
    mg_bantable_foreach(src, NOW, visit_stop, &stops);
    ck_assert_int_eq(stops, 2);

    ck_assert_uint_eq(mg_bantable_copy(dst, src, NOW), 8);
    ck_assert_uint_eq(mg_bantable_count(dst), 8);
    ck_assert_int_eq(banned(dst, "10.0.0.9", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 9);
    ck_assert_int_eq(banned(dst, "10.0.0.1", NOW - 10, &exp), 0);   /* expired: not copied */
    ck_assert_int_eq(banned(dst, "2001:db8:1:2::5", NOW, &exp), 1);
    /* copy into a smaller table: the longest bans win, whatever the order */
    ck_assert_uint_ge(mg_bantable_copy(tiny, src, NOW), 2);
    ck_assert_uint_eq(mg_bantable_count(tiny), 2);
    ck_assert_int_eq(banned(tiny, "2001:db8:1:2::5", NOW, &exp), 1);
    ck_assert_int_eq(banned(tiny, "10.0.0.9", NOW, &exp), 1);
    ck_assert_int_eq(banned(tiny, "10.0.0.8", NOW, &exp), 0);
    ck_assert_uint_eq(mg_bantable_copy(dst, dst, NOW), 0);
    ck_assert_uint_eq(mg_bantable_copy(NULL, src, NOW), 0);
    free(m1);
    free(m2);
    free(m3);
}
END_TEST

/* ---- concurrency: readers race one writer ---- */

#define CC_KEYS     512       /* keys the writer churns */
#define CC_STABLE   64        /* keys always present */
#define CC_PREFIX   32        /* /64 prefixes the writer churns */
#define CC_READERS  4

typedef struct cc_state {
    mg_bantable_t *t;
    volatile int stop;
    long lookups[CC_READERS];
    long hits[CC_READERS];
    int bad[CC_READERS];
    char why[CC_READERS][128];
} cc_state_t;

static int64_t cc_expiry(uint32_t n)
{
    return NOW + 1000 + n * 7;
}

static mg_addr_t cc_v6host(uint32_t p, uint32_t host)
{
    mg_addr_t a;

    memset(&a, 0, sizeof(a));
    a.a[0] = 0x20;
    a.a[1] = 0x01;
    a.a[2] = 0x0d;
    a.a[3] = 0xb8;
    a.a[6] = (uint8_t)(p >> 8);
    a.a[7] = (uint8_t)p;
    a.a[12] = (uint8_t)(host >> 24);
    a.a[15] = (uint8_t)host;
    a.plen = 128;
    return a;
}

typedef struct cc_arg {
    cc_state_t *st;
    int id;
} cc_arg_t;

static void *cc_reader(void *p)
{
    cc_arg_t *arg = p;
    cc_state_t *st = arg->st;
    uint32_t x = 2463534242u + (uint32_t)arg->id * 7919u;
    long n = 0;

    while (!st->stop && !st->bad[arg->id] && n < 20000000) {
        uint32_t r;
        mg_addr_t a;
        int64_t exp = 0;
        int hit;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        r = x % (CC_KEYS + CC_STABLE + CC_PREFIX + 64);
        if (r < CC_KEYS + CC_STABLE) {
            /* churned (0..CC_KEYS-1) or stable (CC_KEYS..) IPv4 hosts */
            a = v4n(0x0a000000u + r);
            hit = mg_bantable_lookup(st->t, &a, NOW, &exp);
            if (hit && exp != cc_expiry(r)) {
                snprintf(st->why[arg->id], 128, "key %u: expiry %lld", r, (long long)exp);
                st->bad[arg->id] = 1;
            }
            if (r >= CC_KEYS && !hit) {
                snprintf(st->why[arg->id], 128, "stable key %u missing", r);
                st->bad[arg->id] = 1;
            }
        }
        else if (r < CC_KEYS + CC_STABLE + CC_PREFIX) {
            uint32_t pfx = r - CC_KEYS - CC_STABLE;

            a = cc_v6host(pfx, x);
            hit = mg_bantable_lookup(st->t, &a, NOW, &exp);
            if (hit && exp != cc_expiry(100000 + pfx)) {
                snprintf(st->why[arg->id], 128, "prefix %u: expiry %lld", pfx, (long long)exp);
                st->bad[arg->id] = 1;
            }
        }
        else {
            /* never banned by anyone */
            a = v4n(0x0b000000u + r);
            hit = mg_bantable_lookup(st->t, &a, NOW, &exp);
            if (hit) {
                snprintf(st->why[arg->id], 128, "never-banned %u found", r);
                st->bad[arg->id] = 1;
            }
            a = cc_v6host(5000 + r, x);
            if (mg_bantable_lookup(st->t, &a, NOW, &exp)) {
                snprintf(st->why[arg->id], 128, "never-banned v6 %u found", r);
                st->bad[arg->id] = 1;
            }
        }
        st->hits[arg->id] += hit;
        n++;
    }
    st->lookups[arg->id] = n;
    return NULL;
}

static void cc_put_stable(mg_bantable_t *t, int rebuild)
{
    uint32_t i;

    for (i = CC_KEYS; i < CC_KEYS + CC_STABLE; i++) {
        mg_addr_t a = v4n(0x0a000000u + i);

        if (rebuild) {
            ck_assert_int_eq(mg_bantable_rebuild_add(t, &a, cc_expiry(i)), 0);
        }
        else {
            ck_assert_int_eq(mg_bantable_put(t, &a, cc_expiry(i)), 0);
        }
    }
}

START_TEST(concurrent_readers)
{
    void *mem;
    /* small on purpose: many compactions and long probe chains */
    mg_bantable_t *t = table(CC_KEYS + CC_STABLE + CC_PREFIX, &mem);
    cc_state_t st;
    cc_arg_t args[CC_READERS];
    pthread_t th[CC_READERS];
    struct timespec t0, t1;
    uint32_t x = 88172645u;
    long ops = 0, rebuilds = 0, total_lookups = 0, total_hits = 0;
    int i;

    memset(&st, 0, sizeof(st));
    st.t = t;
    cc_put_stable(t, 0);
    for (i = 0; i < CC_READERS; i++) {
        args[i].st = &st;
        args[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, cc_reader, &args[i]), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uint32_t r;
        mg_addr_t a;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        r = x % 1000;
        if (r < 2) {
            /* full resync: stable keys plus some churned ones */
            uint32_t j;

            mg_bantable_rebuild_begin(t);
            cc_put_stable(t, 1);
            for (j = 0; j < CC_KEYS; j += 1 + (x >> 28)) {
                a = v4n(0x0a000000u + j);
                ck_assert_int_eq(mg_bantable_rebuild_add(t, &a, cc_expiry(j)), 0);
            }
            mg_bantable_rebuild_commit(t);
            rebuilds++;
        }
        else if (r < 40) {
            uint32_t pfx = (x >> 8) % CC_PREFIX;
            mg_addr_t k;

            a = cc_v6host(pfx, 1);
            mg_addr_ban_key(&a, 64, &k);
            if (r & 1) {
                (void)mg_bantable_put(t, &k, cc_expiry(100000 + pfx));
            }
            else {
                (void)mg_bantable_del(t, &k);
            }
        }
        else {
            uint32_t key = (x >> 8) % CC_KEYS;

            a = v4n(0x0a000000u + key);
            if (r & 1) {
                ck_assert_int_eq(mg_bantable_put(t, &a, cc_expiry(key)), 0);
            }
            else {
                (void)mg_bantable_del(t, &a);
            }
        }
        ops++;
        if ((ops & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > 700000000L
                || ops >= 5000000) {
                break;
            }
        }
    }
    st.stop = 1;
    for (i = 0; i < CC_READERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(!st.bad[i], "reader %d: %s", i, st.why[i]);
        total_lookups += st.lookups[i];
        total_hits += st.hits[i];
    }
    ck_assert_int_gt(ops, 1000);
    ck_assert_int_gt(rebuilds, 0);
    ck_assert_int_gt(total_lookups, 10000);
    ck_assert_int_gt(total_hits, 0);
    ck_assert_int_lt(total_hits, total_lookups);
    free(mem);
}
END_TEST

/*
 * Flip storm: the writer does nothing but full rebuilds, so the table a
 * reader started in is cleared and refilled under it all the time.  Each
 * lookup probes many lengths before its match (the /8 is the shortest
 * present), which keeps readers inside a table long enough to see that.
 */
typedef struct fs_state {
    mg_bantable_t *t;
    volatile int stop;
    int bad;
    long lookups;
    char why[128];
} fs_state_t;

static void *fs_reader(void *p)
{
    fs_state_t *st = p;
    uint32_t x = 0x9e3779b9u;
    long n = 0;

    while (!st->stop && !st->bad && n < 20000000) {
        mg_addr_t a;
        int64_t exp = 0;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        a = v4n(0x0a000000u | (x & 0x00ffffffu));
        if (!mg_bantable_lookup(st->t, &a, NOW, &exp) || exp != NOW + 8) {
            snprintf(st->why, sizeof(st->why), "10.0.0.0/8 missed (exp %lld)", (long long)exp);
            st->bad = 1;
        }
        a = v4n(0x0b000000u | (x & 0x00ffffffu));
        if (mg_bantable_lookup(st->t, &a, NOW, &exp)) {
            snprintf(st->why, sizeof(st->why), "11.x found");
            st->bad = 1;
        }
        n++;
    }
    st->lookups = n;
    return NULL;
}

static void fs_fill(mg_bantable_t *t, int rebuild)
{
    unsigned len;

    for (len = 8; len <= 32; len++) {
        /* 10.0.0.0/8, then 12+len.x.x.x/len: every length 8..32 present */
        mg_addr_t k = v4n(len == 8 ? 0x0a000000u : ((12u + len) << 24) | 0x00ffffffu);

        mg_addr_mask(&k, len);
        if (rebuild) {
            ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + len), 0);
        }
        else {
            ck_assert_int_eq(mg_bantable_put(t, &k, NOW + len), 0);
        }
    }
}

START_TEST(concurrent_flip_storm)
{
    void *mem;
    mg_bantable_t *t = table(64, &mem);
    fs_state_t st;
    pthread_t th[2];
    struct timespec t0, t1;
    long flips = 0;
    int i;

    memset(&st, 0, sizeof(st));
    st.t = t;
    fs_fill(t, 0);
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, fs_reader, &st), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        mg_bantable_rebuild_begin(t);
        fs_fill(t, 1);
        mg_bantable_rebuild_commit(t);
        flips++;
        if ((flips & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > 500000000L
                || flips >= 2000000 || st.bad) {
                break;
            }
        }
    }
    st.stop = 1;
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_msg(!st.bad, "%s", st.why);
    ck_assert_int_gt(flips, 100);
    ck_assert_int_gt(st.lookups, 1000);
    free(mem);
}
END_TEST

/* ---- presence filter ---- */

/* A deterministic spread of keys of every shape the module stores: IPv4
 * hosts, IPv4 prefixes, IPv6 /64s and IPv6 hosts. */
static mg_addr_t pf_key(uint32_t i)
{
    uint32_t h = i * 2654435761u;
    mg_addr_t a;

    switch (i % 4) {
    case 0:
        return v4n(0x0a000000u | (h & 0x00ffffffu));
    case 1:
        a = v4n(0x0b000000u | (h & 0x00ffffffu));
        mg_addr_mask(&a, 24);
        return a;
    case 2:
        a = cc_v6host(h & 0xffffu, h);
        a.a[4] = (uint8_t)(i >> 8);
        a.a[5] = (uint8_t)i;
        mg_addr_mask(&a, 64);
        return a;
    default:
        a = cc_v6host(h & 0xffffu, h);
        a.a[4] = (uint8_t)(i >> 8);
        a.a[5] = (uint8_t)i;
        a.a[10] = 0x77;
        return a;
    }
}

/* Host addresses nobody bans (12.0.0.0/8, 2001:db8:ffff::/48). */
static mg_addr_t pf_absent(uint32_t i)
{
    mg_addr_t a;

    if (i % 2) {
        return v4n(0x0c000000u | ((i * 2654435761u) & 0x00ffffffu));
    }
    a = cc_v6host(0xffffu, i * 2654435761u);
    a.a[4] = 0xff;
    a.a[5] = 0xff;
    return a;
}

/* Fraction (in percent) of absent keys the filter lets through. */
static unsigned pf_pass_rate(const mg_bantable_t *t, uint32_t n)
{
    uint32_t i, pass = 0;

    for (i = 0; i < n; i++) {
        mg_addr_t a = pf_absent(i);

        pass += (uint32_t)mg_bantable_filter_maybe(t, &a);
    }
    return pass * 100u / n;
}

static void pf_assert_present(const mg_bantable_t *t, uint32_t from, uint32_t to,
                              uint32_t step, int64_t exp_base)
{
    uint32_t i;

    for (i = from; i < to; i += step) {
        mg_addr_t k = pf_key(i);
        int64_t exp = 0;

        ck_assert_msg(mg_bantable_filter_maybe(t, &k) == 1, "key %u: filter says absent", i);
        ck_assert_msg(mg_bantable_lookup(t, &k, NOW, &exp) == 1, "key %u: not found", i);
        ck_assert_int_eq(exp, exp_base + i);
    }
}

START_TEST(filter_no_false_negatives)
{
    void *mem;
    mg_bantable_t *t = table(4096, &mem);
    uint32_t i;
    unsigned rate;

    /* empty: nothing passes */
    ck_assert_uint_eq(pf_pass_rate(t, 2000), 0);
    for (i = 0; i < 4000; i++) {
        mg_addr_t k = pf_key(i);

        ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100 + i), 0);
    }
    pf_assert_present(t, 0, 4000, 1, NOW + 100);
    /* at most one bit in 16 is set when full: few absent keys pass */
    rate = pf_pass_rate(t, 20000);
    ck_assert_msg(rate <= 12, "filter lets %u%% of absent keys through", rate);

    /* deletes leave the other keys' bits alone; deleted keys are gone
     * whatever their (stale) bit says */
    for (i = 0; i < 4000; i += 2) {
        mg_addr_t k = pf_key(i);
        int64_t exp;

        ck_assert_int_eq(mg_bantable_del(t, &k), 1);
        ck_assert_int_eq(mg_bantable_lookup(t, &k, NOW, &exp), 0);
    }
    pf_assert_present(t, 1, 4000, 2, NOW + 100);

    /* a rebuild writes a fresh filter: the kept keys, new ones, and a ban
     * made during the rebuild are all found after the flip */
    mg_bantable_rebuild_begin(t);
    for (i = 1; i < 4000; i += 2) {
        mg_addr_t k = pf_key(i);

        ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 100 + i), 0);
    }
    for (i = 10000; i < 10050; i++) {
        mg_addr_t k = pf_key(i);

        ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 100 + i), 0);
    }
    {
        mg_addr_t k = pf_key(20000);

        ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100 + 20000), 0);
    }
    /* before the commit the live table still answers */
    pf_assert_present(t, 1, 4000, 2, NOW + 100);
    mg_bantable_rebuild_commit(t);
    pf_assert_present(t, 1, 4000, 2, NOW + 100);
    pf_assert_present(t, 10000, 10050, 1, NOW + 100);
    pf_assert_present(t, 20000, 20001, 1, NOW + 100);

    /* two rebuilds of a small set clear both filters: the 4000 keys of
     * before now pass no more often than any absent key */
    for (i = 0; i < 2; i++) {
        mg_addr_t k = pf_key(30000);

        mg_bantable_rebuild_begin(t);
        ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 100 + 30000), 0);
        mg_bantable_rebuild_commit(t);
    }
    pf_assert_present(t, 30000, 30001, 1, NOW + 100);
    {
        uint32_t pass = 0;

        for (i = 0; i < 4000; i++) {
            mg_addr_t k = pf_key(i);

            pass += (uint32_t)mg_bantable_filter_maybe(t, &k);
        }
        ck_assert_msg(pass <= 40, "%u stale bits survived two rebuilds", pass);
    }
    ck_assert_uint_le(pf_pass_rate(t, 20000), 1);

    /* invalid keys: no answer but "absent" */
    {
        mg_addr_t k = pf_key(1);

        k.plen = 0;
        ck_assert_int_eq(mg_bantable_filter_maybe(t, &k), 0);
        k.plen = 200;
        ck_assert_int_eq(mg_bantable_filter_maybe(t, &k), 0);
    }
    free(mem);
}
END_TEST

START_TEST(filter_survives_compaction)
{
    void *mem;
    mg_bantable_t *t = table(4, &mem);
    mg_addr_t keep = addr("2001:db8:77::/48"), host = v4n(0xc6336407u), a;
    uint32_t i;
    int64_t exp;

    ck_assert_int_eq(mg_bantable_put(t, &keep, NOW + 77), 0);
    ck_assert_int_eq(mg_bantable_put(t, &host, NOW + 78), 0);
    /* 8 slots: churn compacts into the spare table and flips many times;
     * the copies must carry their filter bits along */
    for (i = 0; i < 5000; i++) {
        a = pf_key(i);
        ck_assert_int_eq(mg_bantable_put(t, &a, NOW + 10), 0);
        ck_assert_int_eq(mg_bantable_filter_maybe(t, &a), 1);
        ck_assert_int_eq(mg_bantable_del(t, &a), 1);
        ck_assert_int_eq(mg_bantable_filter_maybe(t, &keep), 1);
        ck_assert_int_eq(mg_bantable_filter_maybe(t, &host), 1);
        ck_assert_int_eq(banned(t, "2001:db8:77:1::5", NOW, &exp), 1);
        ck_assert_int_eq(exp, NOW + 77);
        ck_assert_int_eq(mg_bantable_lookup(t, &host, NOW, &exp), 1);
        ck_assert_int_eq(exp, NOW + 78);
    }
    free(mem);
}
END_TEST

/* Resident pages of [p, p + len) (mincore works on shared memory too). */
static size_t resident(void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = (len + (size_t)pg - 1) / (size_t)pg, r = 0;
    unsigned char *v = malloc(n);

    ck_assert_int_eq(mincore(p, len, v), 0);
    for (size_t i = 0; i < n; i++)
        r += v[i] & 1;
    free(v);
    return r * (size_t)pg;
}

/*
 * In shared memory, as httpd has it: a fresh table costs no memory until
 * bans arrive, clearing a table for a rebuild gives its pages back instead
 * of writing every slot, and the table stays right throughout.
 */
START_TEST(shared_memory_is_used_as_bans_arrive_and_given_back)
{
    uint32_t cap = 1u << 20;
    size_t size = mg_bantable_size(cap), before, full;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    mg_bantable_t *t;
    int64_t exp;

    ck_assert_ptr_ne(mem, MAP_FAILED);
    t = mg_bantable_init_zeroed(mem, size, cap);
    ck_assert_ptr_nonnull(t);
    before = resident(mem, size);
    ck_assert_uint_lt(before, 64 * 1024);
    for (uint32_t i = 0; i < 200000; i++) {
        mg_addr_t k = v4n(0x0b000000u + i * 7919u);
        ck_assert_int_eq(mg_bantable_put(t, &k, NOW + 100), 0);
    }
    full = resident(mem, size);
    ck_assert_uint_gt(full, 32u << 20);
    /* two rebuilds with a handful of bans: each clears the spare, which
     * held the 200,000, and gives its pages back */
    for (int round = 0; round < 2; round++) {
        mg_bantable_rebuild_begin(t);
        for (uint32_t i = 0; i < 10; i++) {
            mg_addr_t k = v4n(0x0c000000u + i);
            ck_assert_int_eq(mg_bantable_rebuild_add(t, &k, NOW + 100), 0);
        }
        mg_bantable_rebuild_commit(t);
    }
    ck_assert_uint_lt(resident(mem, size), full / 8);
    ck_assert_uint_eq(mg_bantable_count(t), 10);
    ck_assert_int_eq(banned(t, "12.0.0.3", NOW, &exp), 1);
    ck_assert_int_eq(exp, NOW + 100);
    ck_assert_int_eq(banned(t, "11.0.0.0", NOW, &exp), 0);
    /* and it works on: inserts, deletes, another rebuild */
    ck_assert_int_eq(mg_bantable_put(t, pa("192.0.2.1"), NOW + 5), 0);
    ck_assert_int_eq(banned(t, "192.0.2.1", NOW, &exp), 1);
    ck_assert_int_eq(mg_bantable_del(t, pa("12.0.0.3")), 1);
    ck_assert_int_eq(banned(t, "12.0.0.3", NOW, &exp), 0);
    munmap(mem, size);
}
END_TEST

static Suite *bantable_suite(void)
{
    Suite *s = suite_create("bantable");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, sizes_and_init_errors);
    tcase_add_test(tc, put_lookup_del);
    tcase_add_test(tc, expiry_edges);
    tcase_add_test(tc, prefix_bans);
    tcase_add_test(tc, every_prefix_length);
    tcase_add_test(tc, full_table);
    tcase_add_test(tc, tombstone_reuse);
    tcase_add_test(tc, rebuild_flip);
    tcase_add_test(tc, attach_previous_region);
    tcase_add_test(tc, foreach_and_copy);
    tcase_add_test(tc, concurrent_readers);
    tcase_add_test(tc, concurrent_flip_storm);
    tcase_add_test(tc, filter_no_false_negatives);
    tcase_add_test(tc, filter_survives_compaction);
    tcase_add_test(tc, shared_memory_is_used_as_bans_arrive_and_given_back);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(bantable_suite)
