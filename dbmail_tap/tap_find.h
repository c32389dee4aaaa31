/*
 * Vector byte searches over log text: the literal search behind the
 * matchers' prefilter and the newline count behind the scanner's line
 * totals.  A leaf: it depends on nothing else of the tap.
 */
#ifndef TAP_FIND_H
#define TAP_FIND_H

#include <stddef.h>
#include <stdint.h>

/*
 * memmem tuned for log text: compares the literal's first and last bytes
 * 16 or 32 positions at a time and checks the middle only where both
 * agree.  The first occurrence of lit[0..k) in h[0..n), or NULL.
 */
const char *tap_find(const char *h, size_t n, const char *lit, size_t k);

/* Number of '\n' bytes in b[0..n). */
uint64_t tap_count_nl(const char *b, size_t n);

#endif
