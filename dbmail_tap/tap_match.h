/*
 * Line matching: built-in DBMail filters and Fail2Ban-style regexes, and
 * the block scanner that keeps the regex off lines that cannot match.
 *
 * A matcher holds any number of failure patterns (built-in filters and
 * failregex) and ignore patterns (ignoreregex).  One line gives one outcome:
 *   TAP_MISSED   no failure pattern matched;
 *   TAP_FAILURE  a failure pattern matched and its address parsed;
 *   TAP_IGNORED  a failure pattern matched but the address did not parse
 *                (mg_addr_parse_n), or an ignoreregex matched too, or the
 *                line is longer than TAP_MAX_LINE.  Never a failure.
 *
 * Built-in filters parse from the END of the line: the username DBMail
 * logs is attacker-controlled and not escaped, so only the last
 * "from [ADDR:PORT]" of a line ending that way is trusted.
 *
 * A matcher owns PCRE2 match data: it is not thread-safe.  Use one per
 * thread (tap_matcher_clone() is cheap compared with compiling).
 */
#ifndef TAP_MATCH_H
#define TAP_MATCH_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"

/* Lines longer than this (newline excluded) are skipped and counted. */
#define TAP_MAX_LINE (64 * 1024)

/* Room for a matcher error message. */
#define TAP_MATCH_ERRLEN 256

typedef enum tap_outcome {
    TAP_MISSED = 0,
    TAP_FAILURE = 1,
    TAP_IGNORED = 2
} tap_outcome_t;

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
int tap_matcher_add_filter(tap_matcher_t *m, const char *name,
                           char *err, size_t errlen);
int tap_matcher_add_failregex(tap_matcher_t *m, const char *re,
                              char *err, size_t errlen);
int tap_matcher_add_ignoreregex(tap_matcher_t *m, const char *re,
                                char *err, size_t errlen);

/* Number of failure patterns: each regex counts one, a built-in filter one
 * per DBMail format it reads ("dbmail" counts three). */
size_t tap_matcher_count(const tap_matcher_t *m);

/*
 * Match one line (no newline; a trailing '\r' is tolerated).  On
 * TAP_FAILURE *addr holds the client address as logged (a host, plen
 * 128; the caller applies the IPv6 ban prefix and the ignore list).
 * addr may be NULL.
 */
tap_outcome_t tap_match_line(tap_matcher_t *m, const char *line, size_t len,
                             mg_addr_t *addr);

/* Counters kept by the scanners; add up across calls. */
typedef struct tap_scan_stats {
    uint64_t lines;      /* complete lines seen (long ones included) */
    uint64_t failures;
    uint64_t ignored;    /* long lines included */
    uint64_t toolong;    /* lines longer than TAP_MAX_LINE (also in ignored) */
} tap_scan_stats_t;      /* missed = lines - failures - ignored */

/*
 * Called for each TAP_FAILURE and TAP_IGNORED line (and TAP_MISSED lines
 * too with TAP_SCAN_MISSED).  addr is valid for TAP_FAILURE only; line is
 * the text without its newline and only valid during the call (for a too
 * long line it is its first TAP_MAX_LINE bytes, or NULL with len 0 when
 * it was dropped across reads).  Return 0 to go on; non-zero stops the
 * scan after this line.
 */
typedef int (*tap_scan_fn)(void *baton, tap_outcome_t outcome,
                           const mg_addr_t *addr, const char *line, size_t len);

/* Flags for the scanners. */
#define TAP_SCAN_MISSED 1u  /* also report missed lines (slower: no prefilter skip) */

/*
 * Scan the complete lines of buf[0..len): everything up to and including
 * the last '\n'.  Returns the bytes consumed: the end of the last complete
 * line, or less when fn asked to stop (the end of the line it was called
 * for).  The unterminated tail is left to the caller; a too long line is
 * counted when it is complete here.  stats may be NULL.
 *
 * Lines that cannot contain a required literal of every failure pattern
 * are counted without being looked at one by one; only a literal hit
 * costs a full match on its line.
 */
size_t tap_scan_block(tap_matcher_t *m, const char *buf, size_t len,
                      unsigned flags, tap_scan_fn fn, void *baton,
                      tap_scan_stats_t *stats);

/*
 * A stream scanner over one file: owns a read buffer (1 MiB plus room for
 * one partial line), carries partial lines across reads and skips lines
 * longer than TAP_MAX_LINE without buffering them.  Usage:
 *
 *     size_t room; char *p = tap_scanner_space(sc, &room);
 *     ssize_t n = read(fd, p, room);
 *     if (n > 0) tap_scanner_commit(sc, (size_t)n);
 *
 * The file offset of the first byte not yet accounted for (where a
 * restart must resume) is always  bytes_read_so_far - tap_scanner_pending().
 */
typedef struct tap_scanner tap_scanner_t;

/* The matcher is borrowed (not freed, not shared with another thread while
 * in use); NULL on allocation failure. */
tap_scanner_t *tap_scanner_new(tap_matcher_t *m, unsigned flags,
                               tap_scan_fn fn, void *baton);
void tap_scanner_free(tap_scanner_t *sc);

/* Where to read next, *room >= 1 bytes.  When the previous commit was
 * stopped by the callback, call tap_scanner_commit(sc, 0) first. */
char *tap_scanner_space(tap_scanner_t *sc, size_t *room);

/*
 * n bytes were written at tap_scanner_space(): scan every complete line.
 * Returns 0 when all complete lines were scanned, 1 when the callback
 * stopped the scan (the remaining lines stay buffered; commit(sc, 0)
 * resumes).
 */
int tap_scanner_commit(tap_scanner_t *sc, size_t n);

/* Bytes read but not yet accounted for: a partial last line (or the part
 * of a too long line being skipped) plus lines left by a stop. */
size_t tap_scanner_pending(const tap_scanner_t *sc);

/* Forget buffered bytes and any long-line skip (truncation, rotation). */
void tap_scanner_reset(tap_scanner_t *sc);

/* Counters since creation. */
const tap_scan_stats_t *tap_scanner_stats(const tap_scanner_t *sc);

#endif
