/*
 * Fail2Ban regex syntax on top of PCRE2 (internal to the matcher):
 * tag expansion and the required-literal extraction used by the block
 * scanner's prefilter.
 */
#ifndef TAP_REGEX_H
#define TAP_REGEX_H

#include <stddef.h>

/* Most address tags one regex may hold. */
#define TAP_REGEX_MAX_HOSTS 8

/*
 * Expand Fail2Ban tags into PCRE2 syntax: <HOST>, <ADDR> (an IPv4 or IPv6
 * address, IPv6 without brackets, ::ffff: mapped, optional %zone), <IP4>,
 * <IP6>, each as a named group "tapH<n>"; <F-NAME> ... </F-NAME> as plain
 * groups.  <DNS> and <SKIPLINES> are refused (no name lookups, one line
 * at a time).  Returns a malloc'd pattern and *nhosts, or NULL with a
 * static reason in *why.
 */
char *tap_regex_expand(const char *re, size_t *nhosts, const char **why);

/*
 * The longest run of literal text every match of re must contain, into
 * lit (size >= 256), or 0 when none can be proven (alternation at the top
 * level, inline option settings, nothing literal).  Conservative: any
 * construct it does not understand ends the current run.  *at_start is 1
 * when the literal opens the regex, so no match can start before the
 * literal's first occurrence.
 */
size_t tap_regex_literal(const char *re, char *lit, size_t size, int *at_start);

#endif
