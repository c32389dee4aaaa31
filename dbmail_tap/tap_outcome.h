/*
 * What one log line turned out to be: the vocabulary shared by the
 * matcher (tap_match.h), which decides it, and the scanners (tap_scan.h),
 * which count it.  A leaf, so neither of the two needs the other's header.
 */
#ifndef TAP_OUTCOME_H
#define TAP_OUTCOME_H

/* Lines longer than this (newline excluded) are skipped and counted. */
#define TAP_MAX_LINE (64 * 1024)

typedef enum tap_outcome {
    TAP_MISSED = 0,
    TAP_FAILURE = 1,
    TAP_IGNORED = 2
} tap_outcome_t;

#endif
