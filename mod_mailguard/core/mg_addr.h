/*
 * Client addresses, prefixes and CIDR sets.
 *
 * One representation for both families so that the ban table, the ignore
 * lists and the Redis member text agree: an address is 16 bytes with IPv4
 * stored as IPv4-mapped IPv6 (::ffff:a.b.c.d), plus a prefix length counted
 * in the 128-bit space (IPv4 /24 is 120 internally).  Text is always
 * produced by mg_addr_format(), so every key and command argument uses the
 * canonical form: dotted quad for IPv4 (mapped addresses included), RFC 5952
 * for IPv6, and "/N" (family-relative) only for prefixes shorter than a host.
 *
 * No httpd or APR dependency: shared by the module and dbmail_tap.
 */
#ifndef MG_ADDR_H
#define MG_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* Longest text mg_addr_format() writes, NUL included
 * ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" never happens, but
 * a full IPv6 plus "/128" does). */
#define MG_ADDR_STRLEN 64

typedef struct mg_addr {
    uint8_t a[16]; /* network order; IPv4 as ::ffff:a.b.c.d, host bits beyond plen are zero */
    uint8_t plen;  /* 1..128 in the 128-bit space; 128 = one host.  0 is never valid */
} mg_addr_t;

/* True for IPv4 (stored as mapped). */
int mg_addr_is_v4(const mg_addr_t *a);

/* Prefix length relative to the family: 0..32 for IPv4, 0..128 for IPv6. */
unsigned mg_addr_family_plen(const mg_addr_t *a);

/*
 * Parse one host address: "203.0.113.5", "2001:db8::5", "::ffff:203.0.113.5"
 * (stored as IPv4), optionally with a "%zone" suffix on IPv6 which is
 * dropped.  No prefix, no brackets, no port, no surrounding spaces.
 * Returns 0 and fills *out (plen 128), or -1 with *why set to a static
 * reason ("empty", "too long", "not an IPv4 or IPv6 address", ...).
 */
int mg_addr_parse(const char *s, mg_addr_t *out, const char **why);

/* Same, for a counted string that need not be NUL-terminated. */
int mg_addr_parse_n(const char *s, size_t len, mg_addr_t *out, const char **why);

/*
 * Parse an address or a CIDR prefix: "10.0.0.0/8", "127.0.0.1/8" (host
 * bits are cleared, as Fail2Ban's ignoreip does), "2001:db8::/32", or a
 * bare address (a host).  The prefix length must be 1..32 for IPv4 and
 * 1..128 for IPv6 ("/0" is refused: it would match everybody).
 */
int mg_cidr_parse(const char *s, mg_addr_t *out, const char **why);

/* Clear host bits: keep the first fplen bits, fplen relative to the family
 * (IPv4 0..32 -> 96+fplen).  Values beyond the family's width are clamped. */
void mg_addr_mask(mg_addr_t *a, unsigned fplen);
/* Keep the first plen bits of a 16-byte address (128-bit space) and zero
 * the rest. */
void mg_addr_mask_bytes(uint8_t *a, unsigned plen);

/*
 * The key an address counts and bans under: IPv4 as the host itself, IPv6
 * masked to v6prefix (1..128; 128 = the host).  This is the one place that
 * decides "IPv6 bans default to the /64".
 */
void mg_addr_ban_key(const mg_addr_t *client, unsigned v6prefix, mg_addr_t *out);

/* Canonical text into buf (size >= MG_ADDR_STRLEN); returns the length. */
size_t mg_addr_format(const mg_addr_t *a, char *buf, size_t size);

/* 1 when a (a host or prefix) lies inside net. */
int mg_addr_in(const mg_addr_t *a, const mg_addr_t *net);

int mg_addr_equal(const mg_addr_t *x, const mg_addr_t *y);

/* A 64-bit hash of all 16 bytes and the prefix length, for hash tables
 * indexed by its low bits: every input bit reaches them, so addresses
 * that share their leading bytes (one /16, all of IPv4, one /64) spread
 * as well as random ones. */
uint64_t mg_addr_hash(const mg_addr_t *a);

/*
 * A set of addresses and prefixes (ignore lists).  Lookup cost is bounded by
 * the number of distinct prefix lengths in the set: one binary search per
 * length.  Built at configuration time, then read-only and safe to share
 * between threads.  malloc-based; the caller frees it (the module registers
 * mg_cidrset_free as a pool cleanup).
 */
typedef struct mg_cidrset mg_cidrset_t;

mg_cidrset_t *mg_cidrset_new(void);
void mg_cidrset_free(mg_cidrset_t *set);
/* Add one entry in mg_cidr_parse() syntax; -1 with *why on a bad entry
 * (the set is unchanged then).  Duplicates are harmless. */
int mg_cidrset_add(mg_cidrset_t *set, const char *text, const char **why);
int mg_cidrset_add_addr(mg_cidrset_t *set, const mg_addr_t *net);
/* Add every entry of other (for merging configurations). */
int mg_cidrset_add_all(mg_cidrset_t *set, const mg_cidrset_t *other);
/* 1 when a lies inside any entry. NULL set = empty. */
int mg_cidrset_contains(const mg_cidrset_t *set, const mg_addr_t *a);
size_t mg_cidrset_count(const mg_cidrset_t *set);

#endif
