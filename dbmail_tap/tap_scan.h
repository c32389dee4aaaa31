/*
 * The scanners: every line of a block or of a followed file counted, and
 * only the lines that hold a pattern's required literal handed to the
 * matcher (tap_match.h) one by one.
 *
 * They also see what a single line cannot show: DBMail's file log (and
 * stderr) does not escape the username, so a username holding newlines
 * writes lines of its own, DBMail's format included.  A login line whose
 * message does not end on it opens a window as long as the rest of the
 * message can be (DBMail cuts a message at TAP_DBMAIL_MSG_MAX bytes): no
 * line starting inside the window is ever a failure, whatever it looks
 * like or whatever closing it shows (the username can hold a closing of
 * its own, so only the byte count ends a window); the lines that would
 * have matched are TAP_SUSPICIOUS.  An unfinished login line inside a
 * window may be a real one after a shorter message, so it extends the
 * window: one forged login keeps at most about twice DBMail's limit from
 * counting.  The window runs on into the next block of the same file
 * through a tap_stream_t.
 */
#ifndef TAP_SCAN_H
#define TAP_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "tap_outcome.h"

struct tap_matcher;

/* Counters kept by the scanners; add up across calls. */
typedef struct tap_scan_stats {
    uint64_t lines; /* complete lines seen (long ones included) */
    uint64_t failures;
    uint64_t ignored; /* long lines included */
    uint64_t toolong; /* lines longer than TAP_MAX_LINE (also in ignored) */
} tap_scan_stats_t;   /* missed = lines - failures - ignored - suspicious; the
                            suspicious ones are counted by the matcher
                            (tap_matcher_suspicious) */

/*
 * Called for each TAP_FAILURE, TAP_IGNORED and TAP_SUSPICIOUS line (and
 * TAP_MISSED lines too with TAP_SCAN_MISSED).  addr is valid for
 * TAP_FAILURE only; line is the text without its newline and only valid
 * during the call (for a too long line it is its first TAP_MAX_LINE
 * bytes, or NULL with len 0 when it was dropped across reads).  Return 0
 * to go on; non-zero stops the scan after this line.
 */
typedef int (*tap_scan_fn)(void *baton, tap_outcome_t outcome, const mg_addr_t *addr,
                           const char *line, size_t len);

/* Flags for the scanners. */
#define TAP_SCAN_MISSED 1u /* also report missed lines (slower: no prefilter skip) */

/*
 * Scan the complete lines of buf[0..len): everything up to and including
 * the last '\n'.  Returns the bytes consumed: the end of the last complete
 * line, or less when fn asked to stop (the end of the line it was called
 * for).  The unterminated tail is left to the caller; a too long line is
 * counted when it is complete here.  stats may be NULL.
 *
 * Lines that cannot contain a required literal of every failure pattern
 * (nor a login message's opening) are counted without being looked at
 * one by one; only a literal hit costs a full match on its line.  stream
 * carries the window of an unfinished DBMail message from the block that
 * ended where buf starts (a block starts where the last one's consumed
 * bytes ended); it must belong to this file alone.
 */
size_t tap_scan_block_stream(struct tap_matcher *m, tap_stream_t *stream, const char *buf,
                             size_t len, unsigned flags, tap_scan_fn fn, void *baton,
                             tap_scan_stats_t *stats);

/*
 * The same for callers that keep no stream of their own: the matcher
 * keeps one, right for a matcher that scans one file.  A matcher shared
 * by several files should get tap_scan_block_stream() with one stream per
 * file, or a window opened in one file shortens the next block of another.
 */
size_t tap_scan_block(struct tap_matcher *m, const char *buf, size_t len, unsigned flags,
                      tap_scan_fn fn, void *baton, tap_scan_stats_t *stats);

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
tap_scanner_t *tap_scanner_new(struct tap_matcher *m, unsigned flags, tap_scan_fn fn,
                               void *baton);
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

/* Forget buffered bytes, any long-line skip and any open window
 * (truncation, rotation). */
void tap_scanner_reset(tap_scanner_t *sc);

/* Counters since creation. */
const tap_scan_stats_t *tap_scanner_stats(const tap_scanner_t *sc);

#endif
