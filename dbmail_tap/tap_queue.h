/*
 * The failures read from the logs on their way to Redis: a bounded FIFO
 * between the reader (which never waits on it) and the Redis writer.
 *
 * The writer peeks a batch, stores it, and only then pops it, so while
 * Redis is away the failures stay queued with the time their line was
 * read.  When the queue is full the oldest failure is dropped and counted:
 * reading never stops because Redis is gone.  Entries carry the file and
 * line offset they came from so the statefile can point at the oldest
 * failure not yet stored (a restart then reads it again, exactly once).
 *
 * The storage is one anonymous mapping touched only as far as it is used;
 * each time the queue empties after a backlog its pages are given back.
 */
#ifndef TAP_QUEUE_H
#define TAP_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"

#define TAP_QUEUE_DEFAULT_CAPACITY ((size_t)1 << 20)

typedef struct tap_failure {
    mg_addr_t key;   /* the ban key: address, or IPv6 prefix */
    uint8_t jail;    /* index into the configuration's jails */
    uint16_t file;   /* index of the followed file */
    uint32_t gen;    /* that file's generation (bumped on rotation) */
    int64_t time_ms; /* when the line was read (Unix ms) */
    int64_t off;     /* offset of the line's first byte */
    uint64_t fid;    /* the file read (tap_follow_identity): with off, the line */
} tap_failure_t;

typedef struct tap_queue tap_queue_t;

/* NULL when the mapping fails.  capacity >= 1. */
tap_queue_t *tap_queue_new(size_t capacity);
void tap_queue_free(tap_queue_t *q);

/* Append; when full the oldest entry is dropped.  Returns the number of
 * entries dropped by this call (0 or 1).  Does not wake the consumer:
 * call tap_queue_kick() once after a burst. */
unsigned tap_queue_push(tap_queue_t *q, const tap_failure_t *f);
/* Wake a consumer blocked in tap_queue_peek_wait(). */
void tap_queue_kick(tap_queue_t *q);
/* Make every current and future tap_queue_peek_wait() return at once. */
void tap_queue_shutdown(tap_queue_t *q);

/*
 * Copy up to max entries from the head into out without removing them,
 * waiting up to timeout_ms (0 = no wait, <0 = forever) while the queue is
 * empty.  *seq receives the sequence number of the first entry, for
 * tap_queue_pop().  Returns the number copied.
 */
size_t tap_queue_peek_wait(tap_queue_t *q, tap_failure_t *out, size_t max, int timeout_ms,
                           uint64_t *seq);
/* Remove the entries [seq, seq+n) that were stored (those already dropped
 * by an overflow are skipped). */
void tap_queue_pop(tap_queue_t *q, uint64_t seq, size_t n);

size_t tap_queue_len(tap_queue_t *q);
uint64_t tap_queue_dropped(tap_queue_t *q);

/* Offset of the oldest queued failure of (file, gen); 1 when found. */
int tap_queue_first_offset(tap_queue_t *q, uint16_t file, uint32_t gen, int64_t *off);

#endif
