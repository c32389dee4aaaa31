/*
 * What one log line turned out to be, and what a stream of lines carries
 * from one block to the next: the vocabulary shared by the matcher
 * (tap_match.h), which decides, and the scanners (tap_scan.h), which
 * count.  A leaf, so neither of the two needs the other's header.
 */
#include <stdint.h>

#ifndef TAP_OUTCOME_H
#define TAP_OUTCOME_H

/* Lines longer than this (newline excluded) are skipped and counted. */
#define TAP_MAX_LINE (64 * 1024)

/*
 *   TAP_MISSED      no failure pattern matched;
 *   TAP_FAILURE     a failure pattern matched and its address parsed;
 *   TAP_IGNORED     a failure pattern matched but the address did not parse,
 *                   or an ignoreregex matched too, or the line is longer
 *                   than TAP_MAX_LINE;
 *   TAP_SUSPICIOUS  the line cannot be DBMail's own failed-login line
 *                   although it reads like one: it ends like a failure but
 *                   comes from another program or another message, it
 *                   opens a login message that does not end on it, or it
 *                   starts inside such a message (a username's newline).
 * Only TAP_FAILURE ever counts against an address.
 */
typedef enum tap_outcome {
    TAP_MISSED = 0,
    TAP_FAILURE = 1,
    TAP_IGNORED = 2,
    TAP_SUSPICIOUS = 3
} tap_outcome_t;

/*
 * One followed file, as the matcher sees it across blocks: how many bytes
 * at the start of the next block still belong to a DBMail login message
 * that an earlier line opened and did not end (a newline in a username).
 * Zero-initialise; reset when the file is truncated or replaced.
 */
typedef struct tap_stream {
    uint64_t window_left;
} tap_stream_t;

#endif
