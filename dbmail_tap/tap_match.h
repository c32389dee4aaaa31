/*
 * Line matching: built-in DBMail filters and Fail2Ban-style regexes.  The
 * scanners that feed it whole blocks are in tap_scan.h.
 *
 * A matcher holds any number of failure patterns (built-in filters and
 * failregex) and ignore patterns (ignoreregex).  One line gives one
 * outcome (tap_outcome.h): missed, failure, ignored or suspicious.
 *
 * Built-in filters accept a line only in one of the shapes DBMail itself
 * writes, for the right program, and read the address from the END of
 * the line: the username DBMail logs is attacker-controlled and not
 * escaped, so only the last "from [ADDR:PORT]" of a line ending that way
 * is trusted.  A failregex matches the whole line, as Fail2Ban's does:
 * anchoring the program is up to the regex.  What no line shows on its
 * own, a username's newline, is the scanners' business (tap_scan.h).
 *
 * A matcher owns PCRE2 match data: it is not thread-safe.  Use one per
 * thread (tap_matcher_clone() is cheap compared with compiling).
 */
#ifndef TAP_MATCH_H
#define TAP_MATCH_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "tap_outcome.h"

/* Room for a matcher error message. */
#define TAP_MATCH_ERRLEN 256

typedef struct tap_matcher tap_matcher_t;

tap_matcher_t *tap_matcher_new(void);
void tap_matcher_free(tap_matcher_t *m);

/* A second matcher with the same patterns (for another thread); NULL on
 * allocation failure. */
tap_matcher_t *tap_matcher_clone(const tap_matcher_t *m);

/* 1 when name is a built-in filter: "dbmail-imap" (3.x), "dbmail-imap22"
 * (2.2), "dbmail-pop3", "dbmail" (all three). */
int tap_filter_exists(const char *name);
/* The built-in filter names, NULL-terminated (for help texts). */
const char *const *tap_filter_names(void);

/*
 * Add patterns.  0 on success; -1 with a message in err (never longer than
 * errlen, NUL-terminated) for an unknown filter, a regex that does not
 * compile, or a failregex without an address tag (<HOST>, <ADDR>, <IP4>,
 * <IP6>).  The matcher is unchanged on error.
 */
int tap_matcher_add_filter(tap_matcher_t *m, const char *name, char *err, size_t errlen);
int tap_matcher_add_failregex(tap_matcher_t *m, const char *re, char *err, size_t errlen);
int tap_matcher_add_ignoreregex(tap_matcher_t *m, const char *re, char *err, size_t errlen);

/* Number of failure patterns: each regex counts one, a built-in filter one
 * per DBMail format it reads ("dbmail" counts three). */
size_t tap_matcher_count(const tap_matcher_t *m);

/*
 * Match one line on its own (no newline; a trailing '\r' is tolerated).
 * On TAP_FAILURE *addr holds the client address as logged (a host, plen
 * 128; the caller applies the IPv6 ban prefix and the ignore list).
 * addr may be NULL.  A line that opens a login message which does not end
 * on it is TAP_SUSPICIOUS; the lines after it are judged only by the
 * scanners, which see them in order.
 */
tap_outcome_t tap_match_line(tap_matcher_t *m, const char *line, size_t len, mg_addr_t *addr);

/* TAP_SUSPICIOUS lines the scanners reported with this matcher since it
 * was created (not tap_match_line's): lines that imitate a DBMail failure
 * or that a username's newline wrote. */
uint64_t tap_matcher_suspicious(const tap_matcher_t *m);

#endif
