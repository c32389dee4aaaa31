/*
 * The Redis writer of `dbmail_tap run`: a thread of its own with its own
 * Redis connection, taking the failure queue (tap_queue.h) in rounds.
 *
 * A round peeks up to TAP_BATCH failures from the queue's head, records
 * them with the store's pipelined batch call (one call per jail), and pops
 * only what Redis took: while Redis is away the failures wait in the queue
 * with the time their line was read and go out when it returns, and the
 * statefile keeps pointing at the oldest one not stored.  A lone failure
 * goes at once (a failure line becomes a ban about a round trip after it
 * is written); a burst is let grow for a moment so that one round takes it
 * whole (Redis's cost is per address group, not per failure).
 *
 * A failure is never stored twice by the writer: a round that fails part
 * way remembers which entries beyond its popped prefix Redis took, and the
 * next round skips them.
 */
#ifndef TAP_WRITER_H
#define TAP_WRITER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "mg_store.h"
#include "tap_config.h"
#include "tap_queue.h"

typedef struct tap_writer tap_writer_t;

/*
 * Start the thread.  jails are the enabled jails (tap_failure_t.jail
 * indexes them), q the queue; both are borrowed and must outlive the
 * writer.  store: the connection settings (the writer sets its own
 * command timeout).  The writer runs until *stop is set and the queue is
 * shut down, then stores what Redis takes within TAP_FLUSH_MS and ends.
 * NULL (logged) when it cannot start.
 */
tap_writer_t *tap_writer_start(const mg_store_cfg_t *store, tap_queue_t *q,
                               const tap_jail_t *const *jails, size_t njails, atomic_int *stop);

/* Wait for the thread to end (after *stop and tap_queue_shutdown()); the
 * counts below stay readable until tap_writer_free(). */
void tap_writer_wait(tap_writer_t *w);
void tap_writer_free(tap_writer_t *w);

/* For any thread, while the writer exists.  Per jail: failures Redis took
 * and the bans they made (each failure counted once, even when a round
 * that failed part way is sent again). */
void tap_writer_counts(const tap_writer_t *w, size_t jail, uint64_t *stored, uint64_t *dups,
                       uint64_t *bans);
/* 1 unless the last round failed (also 1 before the first round: the
 * connection opens on first use). */
int tap_writer_redis_up(const tap_writer_t *w);
/* Rounds that failed (Redis unreachable, slow or answering errors). */
uint64_t tap_writer_failed_rounds(const tap_writer_t *w);

#endif
