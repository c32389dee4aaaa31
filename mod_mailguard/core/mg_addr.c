/*
 * Client addresses and prefixes (see mg_addr.h; the CIDR sets are in
 * mg_cidrset.c).
 *
 * Parsing is delegated to inet_pton() so that exactly the forms the C
 * library accepts are accepted; formatting is done here so that the text
 * written to Redis is RFC 5952 canonical whatever the C library prints.
 *
 * One exception, for speed: a canonical dotted quad (what httpd, APR and
 * mod_remoteip print for every IPv4 client) is read directly, without the
 * copy and inet_pton() that cost several hundred instructions per request.
 * It accepts a subset of what inet_pton(AF_INET) accepts (four parts of
 * one to three digits, no leading zero, each at most 255, nothing
 * around), with the same result; anything else takes the general path, so
 * which path ran never changes an outcome or a reason.
 */
#include "mg_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest accepted input: a full IPv6 address in mixed notation (45
 * characters) plus a "%zone" of up to 16 characters, plus "/128". */
#define MG_ADDR_INPUT_MAX 70

static const uint8_t mg_v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int mg_addr_is_v4(const mg_addr_t *a)
{
    return a->plen >= 96 && memcmp(a->a, mg_v4mapped_prefix, 12) == 0;
}

unsigned mg_addr_family_plen(const mg_addr_t *a)
{
    return mg_addr_is_v4(a) ? (unsigned)a->plen - 96u : (unsigned)a->plen;
}

void mg_addr_mask_bytes(uint8_t *a, unsigned plen)
{
    unsigned i;

    if (plen >= 128) {
        return;
    }
    i = plen / 8;
    if (plen % 8) {
        a[i] &= (uint8_t)(0xffu << (8 - plen % 8));
        i++;
    }
    for (; i < 16; i++) {
        a[i] = 0;
    }
}

/*
 * The parser proper, on a NUL-terminated copy it may modify.  "buf" holds
 * no prefix: the callers split it off first.
 */
static int mg_parse_host(char *buf, mg_addr_t *out, const char **why)
{
    char *pct;
    struct in_addr v4;

    if (buf[0] == '\0') {
        *why = "empty";
        return -1;
    }
    if (buf[0] == '[' || strchr(buf, ']')) {
        *why = "brackets are not allowed around an address";
        return -1;
    }
    pct = strchr(buf, '%');
    if (pct) {
        const char *z;

        /* A zone names an interface of this host: meaningless for a ban
         * or a counter, so it is dropped, but it must look like one. */
        *pct = '\0';
        if (!strchr(buf, ':')) {
            *why = "a zone (%...) is only allowed on IPv6 addresses";
            return -1;
        }
        if (pct[1] == '\0') {
            *why = "empty zone after %";
            return -1;
        }
        for (z = pct + 1; *z; z++) {
            if (*z <= ' ' || *z > '~' || *z == '%' || *z == '/') {
                *why = "bad character in the zone";
                return -1;
            }
        }
    }
    if (strchr(buf, ':')) {
        if (inet_pton(AF_INET6, buf, out->a) != 1) {
            *why = "not an IPv4 or IPv6 address";
            return -1;
        }
    }
    else {
        if (inet_pton(AF_INET, buf, &v4) != 1) {
            *why = "not an IPv4 or IPv6 address";
            return -1;
        }
        memcpy(out->a, mg_v4mapped_prefix, 12);
        memcpy(out->a + 12, &v4.s_addr, 4);
    }
    out->plen = 128;
    return 0;
}

/* Longest canonical dotted quad: "255.255.255.255". */
#define MG_QUAD_MAX 15

/* sep as mg_quad_part() compares it: the character minus '0', unsigned. */
#define MG_QUAD_SEP(c) ((unsigned)(c) - '0')

/*
 * One part of a canonical dotted quad at *ps, followed by the separator
 * sep (an MG_QUAD_SEP() value): its value, or -1.  Reads a character only
 * after the one before it was a digit, so never past the terminating NUL.
 */
static inline __attribute__((always_inline)) int mg_quad_part(const char **ps, unsigned sep)
{
    const char *s = *ps;
    unsigned c0 = (unsigned)(unsigned char)s[0] - '0';
    unsigned c1, c2, c3, v;

    if (c0 > 9) {
        return -1;
    }
    c1 = (unsigned)(unsigned char)s[1] - '0';
    if (c1 == sep) {
        *ps = s + 2;
        return (int)c0;
    }
    /* A leading zero: inet_pton refuses it too. */
    if (c1 > 9 || c0 == 0) {
        return -1;
    }
    c2 = (unsigned)(unsigned char)s[2] - '0';
    if (c2 == sep) {
        *ps = s + 3;
        return (int)(c0 * 10 + c1);
    }
    if (c2 > 9) {
        return -1;
    }
    c3 = (unsigned)(unsigned char)s[3] - '0';
    v = c0 * 100 + c1 * 10 + c2;
    if (c3 != sep || v > 255) {
        return -1;
    }
    *ps = s + 4;
    return (int)v;
}

/*
 * The canonical dotted quad at the start of s (NUL-terminated) as the low
 * word of its IPv4-mapped form, host order (never 0), with *n set to its
 * length; 0 when s is not one.
 */
static inline __attribute__((always_inline)) uint64_t mg_quad_parse(const char *s, size_t *n)
{
    const char *p = s;
    int a = mg_quad_part(&p, MG_QUAD_SEP('.')), b, c, d;

    if (a < 0 || (b = mg_quad_part(&p, MG_QUAD_SEP('.'))) < 0
        || (c = mg_quad_part(&p, MG_QUAD_SEP('.'))) < 0
        || (d = mg_quad_part(&p, MG_QUAD_SEP('\0'))) < 0) {
        return 0;
    }
    *n = (size_t)(p - s) - 1;
    return (uint64_t)0xffffU << 32 | (uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8
           | (uint32_t)d;
}

/* ::ffff:a.b.c.d from the low word mg_quad_parse() gave. */
static inline __attribute__((always_inline)) void mg_quad_store(uint64_t lo, mg_addr_t *out)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    lo = __builtin_bswap64(lo);
#endif
    memset(out->a, 0, 8);
    memcpy(out->a + 8, &lo, 8);
    out->plen = 128;
}

/* Copy a counted string into buf (size MG_ADDR_INPUT_MAX + 1) with the
 * checks that need the length: never reads beyond s[len - 1]. */
static int mg_copy_input(const char *s, size_t len, char *buf, const char **why)
{
    if (s == NULL || len == 0) {
        *why = "empty";
        return -1;
    }
    if (len > MG_ADDR_INPUT_MAX) {
        *why = "too long";
        return -1;
    }
    if (memchr(s, '\0', len)) {
        *why = "embedded NUL character";
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

/* The general path of mg_addr_parse_n(): copy, checks, inet_pton().
 * Out of line, so that the quick path needs no stack frame. */
static __attribute__((noinline)) int mg_addr_parse_general(const char *s, size_t len,
                                                           mg_addr_t *out, const char **why)
{
    char buf[MG_ADDR_INPUT_MAX + 1];
    const char *dummy;
    mg_addr_t tmp;

    if (why == NULL) {
        why = &dummy;
    }
    if (mg_copy_input(s, len, buf, why) < 0) {
        return -1;
    }
    if (strchr(buf, '/')) {
        *why = "a prefix length is not allowed here";
        return -1;
    }
    if (mg_parse_host(buf, &tmp, why) < 0) {
        return -1;
    }
    *out = tmp;
    return 0;
}

int mg_addr_parse_n(const char *s, size_t len, mg_addr_t *out, const char **why)
{
    if (s != NULL && len >= 7 && len <= MG_QUAD_MAX) {
        char quad[MG_QUAD_MAX + 1];
        size_t n = 0;
        uint64_t lo;

        /* The quad must fill all len characters: one followed by a NUL
         * inside the string is refused by the general path. */
        memcpy(quad, s, len);
        quad[len] = '\0';
        lo = mg_quad_parse(quad, &n);
        if (lo != 0 && n == len) {
            mg_quad_store(lo, out);
            return 0;
        }
    }
    return mg_addr_parse_general(s, len, out, why);
}

/* mg_addr_parse() for everything but a canonical dotted quad. */
static __attribute__((noinline)) int mg_addr_parse_other(const char *s, mg_addr_t *out,
                                                         const char **why)
{
    /* Bounded scan: a huge string is refused without reading all of it.
     * The general path refuses NULL and "" alike ("empty"). */
    return mg_addr_parse_general(s, s != NULL ? strnlen(s, MG_ADDR_INPUT_MAX + 1) : 0, out,
                                 why);
}

int mg_addr_parse(const char *s, mg_addr_t *out, const char **why)
{
    if (s != NULL) {
        size_t n;
        uint64_t lo = mg_quad_parse(s, &n);

        if (lo != 0) {
            mg_quad_store(lo, out);
            return 0;
        }
    }
    return mg_addr_parse_other(s, out, why);
}

int mg_cidr_parse(const char *s, mg_addr_t *out, const char **why)
{
    char buf[MG_ADDR_INPUT_MAX + 1];
    const char *dummy;
    char *slash;
    mg_addr_t tmp;
    unsigned long plen;
    unsigned width;

    if (why == NULL) {
        why = &dummy;
    }
    if (s == NULL) {
        *why = "empty";
        return -1;
    }
    if (mg_copy_input(s, strnlen(s, MG_ADDR_INPUT_MAX + 1), buf, why) < 0) {
        return -1;
    }
    slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
    }
    if (mg_parse_host(buf, &tmp, why) < 0) {
        return -1;
    }
    if (!slash) {
        *out = tmp;
        return 0;
    }

    {
        const char *p = slash + 1;
        size_t n = 0;

        plen = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++) {
            if (n >= 3) {
                *why = "prefix length out of range";
                return -1;
            }
            plen = plen * 10 + (unsigned long)(*p - '0');
        }
        if (n == 0) {
            *why = "missing prefix length after /";
            return -1;
        }
        if (*p != '\0') {
            *why = "prefix length is not a decimal number";
            return -1;
        }
        if (n > 1 && slash[1] == '0') {
            *why = "prefix length has a leading zero";
            return -1;
        }
    }

    /* A prefix written on a mapped address ("::ffff:10.0.0.0/104") is
     * counted in the IPv6 space; one written on a dotted quad in IPv4's. */
    width = strchr(buf, ':') ? 128u : 32u;
    if (plen > width) {
        *why = width == 32 ? "IPv4 prefix length above 32" : "IPv6 prefix length above 128";
        return -1;
    }
    if (width == 32) {
        plen += 96;
    }
    if (plen == 0 || (mg_addr_is_v4(&tmp) && plen == 96)) {
        *why = "a /0 prefix would match every address";
        return -1;
    }
    mg_addr_mask_bytes(tmp.a, (unsigned)plen);
    tmp.plen = (uint8_t)plen;
    *out = tmp;
    return 0;
}

void mg_addr_mask(mg_addr_t *a, unsigned fplen)
{
    unsigned plen;

    if (mg_addr_is_v4(a)) {
        plen = 96u + (fplen > 32 ? 32u : fplen);
    }
    else {
        plen = fplen > 128 ? 128u : fplen;
    }
    mg_addr_mask_bytes(a->a, plen);
    a->plen = (uint8_t)plen;
}

void mg_addr_ban_key(const mg_addr_t *client, unsigned v6prefix, mg_addr_t *out)
{
    unsigned want;

    *out = *client;
    if (mg_addr_is_v4(client)) {
        return;
    }
    /* 0 or anything out of range would widen a ban beyond what was
     * configured: fall back to the host, which can never lock out others. */
    want = (v6prefix == 0 || v6prefix > 128) ? 128u : v6prefix;
    if (want < out->plen) {
        mg_addr_mask(out, want);
    }
}

/* RFC 5952 text of the eight groups into p; returns the length. */
static size_t mg_format_v6(const uint8_t *a, char *p)
{
    static const char hex[] = "0123456789abcdef";
    unsigned g[8];
    int best = -1, bestlen = 0, i;
    char *start = p;

    for (i = 0; i < 8; i++) {
        g[i] = ((unsigned)a[2 * i] << 8) | a[2 * i + 1];
    }
    /* Longest run of zero groups, leftmost on a tie; a lone zero group is
     * never compressed (RFC 5952 4.2.2). */
    for (i = 0; i < 8;) {
        int j = i;

        while (j < 8 && g[j] == 0) {
            j++;
        }
        if (j - i > bestlen) {
            best = i;
            bestlen = j - i;
        }
        i = j > i ? j : i + 1;
    }
    if (bestlen < 2) {
        best = -1;
        bestlen = 0;
    }
    for (i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            *p++ = ':';
            i += bestlen - 1;
            continue;
        }
        if (i > 0 && i != best + bestlen) {
            *p++ = ':';
        }
        {
            int shift, started = 0;

            for (shift = 12; shift >= 0; shift -= 4) {
                unsigned nib = (g[i] >> shift) & 0xf;

                if (nib || started || shift == 0) {
                    *p++ = hex[nib];
                    started = 1;
                }
            }
        }
    }
    *p = '\0';
    return (size_t)(p - start);
}

size_t mg_addr_format(const mg_addr_t *a, char *buf, size_t size)
{
    char tmp[MG_ADDR_STRLEN];
    size_t n;
    unsigned fplen = mg_addr_family_plen(a);
    int v4 = mg_addr_is_v4(a);

    if (v4) {
        n = (size_t)snprintf(tmp, sizeof(tmp), "%u.%u.%u.%u", a->a[12], a->a[13], a->a[14],
                             a->a[15]);
    }
    else {
        n = mg_format_v6(a->a, tmp);
    }
    /* a host is written bare, a network with its length */
    if (fplen < (v4 ? 32u : 128u)) {
        n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "/%u", fplen);
    }
    /* snprintf-like: the full length is returned, the copy is truncated. */
    if (size > 0) {
        size_t c = n < size - 1 ? n : size - 1;

        memcpy(buf, tmp, c);
        buf[c] = '\0';
    }
    return n;
}

int mg_addr_in(const mg_addr_t *a, const mg_addr_t *net)
{
    unsigned full, rem;

    if (a->plen < net->plen) {
        return 0;
    }
    full = net->plen / 8u;
    rem = net->plen % 8u;
    if (memcmp(a->a, net->a, full) != 0) {
        return 0;
    }
    if (rem) {
        uint8_t m = (uint8_t)(0xffu << (8 - rem));

        return (a->a[full] & m) == (net->a[full] & m);
    }
    return 1;
}

int mg_addr_equal(const mg_addr_t *x, const mg_addr_t *y)
{
    return x->plen == y->plen && memcmp(x->a, y->a, 16) == 0;
}

/* murmur3's 64-bit finaliser */
static uint64_t mg_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Both halves go through the finaliser: IPv4 (::ffff:a.b.c.d) has a
 * constant first half and the address in the top bytes of the second,
 * and a multiply alone carries bits only upwards, so a hash that
 * multiplied and kept the low bits put every address of a /16 (or all of
 * IPv4) into a handful of slots. */
uint64_t mg_addr_hash(const mg_addr_t *a)
{
    uint64_t x, y;

    memcpy(&x, a->a, 8);
    memcpy(&y, a->a + 8, 8);
    return mg_mix64(x ^ mg_mix64(y ^ ((uint64_t)a->plen << 56)));
}
