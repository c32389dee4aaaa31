/*
 * The reader of `dbmail_tap run` (the main thread): follows every logpath
 * of the enabled jails (tap_follow.h), scans each block of new lines with
 * the matcher of every jail reading that file (tap_scan.h), applies
 * ignoreip and the IPv6 ban prefix and queues each failure with the time
 * its line was read (DBMail's own timestamps carry no year and no zone).
 * It never talks to Redis, so Redis can never stall it: the queue
 * (tap_queue.h) is the only thing it shares with the writer.
 *
 * Not thread-safe: one thread creates, feeds and reads it.
 */
#ifndef TAP_READER_H
#define TAP_READER_H

#include <stddef.h>
#include <stdint.h>
#include "tap_config.h"
#include "tap_follow.h"
#include "tap_queue.h"
#include "tap_state.h"

typedef struct tap_reader tap_reader_t;

/*
 * jails: the enabled jails, borrowed; a failure's jail is its index here
 * (at most 255 of them, see tap_failure_t).  use_inotify 0 polls only.
 * NULL when out of memory.
 */
tap_reader_t *tap_reader_new(const tap_jail_t *const *jails, size_t njails, tap_queue_t *q,
                             int use_inotify);
void tap_reader_free(tap_reader_t *r);

/* Follow every logpath of every jail (a path shared by several jails is
 * followed once and scanned by each), each from where the statefile left
 * it.  0, or -1 (logged or out of memory). */
int tap_reader_add_files(tap_reader_t *r, const tap_state_t *state);

/* The follower, for the caller's poll loop (tap_follow_fd(), _tick() ...)
 * and the statefile. */
tap_follow_t *tap_reader_follow(tap_reader_t *r);

/* The queue emptied after an overflow: the next overflow is logged again. */
void tap_reader_backlog_gone(tap_reader_t *r);

/* Totals since the start, for the stop line. */
typedef struct tap_reader_totals {
    uint64_t lines;      /* lines of every file (each counted once) */
    uint64_t failures;   /* failures queued */
    uint64_t ignored_ip; /* failures whose address is in ignoreip */
    uint64_t suspicious; /* of every jail */
} tap_reader_totals_t;

void tap_reader_totals(const tap_reader_t *r, tap_reader_totals_t *out);

/* One jail's lines since the start, by outcome (tap_outcome.h): lines of
 * its files; matched (a failure with an address, ignoreip ones included),
 * ignored, suspicious, missed (the rest); and the matched ones not
 * counted because the address is in ignoreip. */
typedef struct tap_reader_jail {
    uint64_t lines;
    uint64_t matched;
    uint64_t ignored;
    uint64_t suspicious;
    uint64_t missed;
    uint64_t ignoreip;
} tap_reader_jail_t;

void tap_reader_jail_counts(const tap_reader_t *r, size_t jail, tap_reader_jail_t *out);

#endif
