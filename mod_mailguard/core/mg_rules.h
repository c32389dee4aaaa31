/*
 * The rules the module's directives and dbmail_tap's keys share: every
 * bound, default and syntax both configurations accept, written once, so
 * the two cannot drift apart (a test pins them together).  Each check
 * returns 0, or -1 with *why set to a short reason; the callers add the
 * directive or key name and the value.
 */
#ifndef MG_RULES_H
#define MG_RULES_H

#include <stdint.h>

/* A jail name goes into Redis keys and space-separated event messages. */
#define MG_JAIL_NAME_MAX 47
#define MG_JAIL_BUF      (MG_JAIL_NAME_MAX + 1)

/* Generous bounds: a value outside them is a typo, not a wish. */
#define MG_KEY_PREFIX_MAX 64
#define MG_MAXRETRY_MAX   100000
#define MG_FACTOR_MAX     1000.0

/* IPv6 clients count and ban by this prefix. */
#define MG_V6PREFIX_DEFAULT 64

/* The widest prefix ban taken from Redis, per family. */
#define MG_FLOOR4_DEFAULT 16
#define MG_FLOOR6_DEFAULT 32

/* 1-47 letters, digits, '.', '_' or '-'. */
int mg_rule_jail_name(const char *s, const char **why);

/* 1-64 printable characters, no space. */
int mg_rule_key_prefix(const char *s, const char **why);

/* 1..MG_MAXRETRY_MAX. */
int mg_rule_maxretry(const char *s, unsigned *out, const char **why);

/* findtime, bantime, bantime.maxtime: a duration of at least 1 s. */
int mg_rule_policy_duration(const char *s, int64_t *out, const char **why);

/* A decimal from 1 to MG_FACTOR_MAX, no leading space. */
int mg_rule_factor(const char *s, double *out, const char **why);

/* 1..128. */
int mg_rule_v6prefix(const char *s, unsigned *out, const char **why);

/* Two lengths, IPv4 1..32 and IPv6 1..128, each with or without a
 * leading '/'. */
int mg_rule_prefix_floor(const char *v4, const char *v6, unsigned *f4, unsigned *f6,
                         const char **why);

#endif
