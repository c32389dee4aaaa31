/*
 * The firewall keeper: a thread of `dbmail_tap run` (banaction other than
 * none) that keeps the host firewall equal to the live shared ban set,
 * through the core's follower (mg_follow.h): the set is written whole at
 * start and after a gap or a hand edit, and each change made anywhere (the
 * tap's own bans, the webmail module's, `dbmail_tap ban`/`unban`) reaches
 * the firewall one transaction per batch, about a round trip after it was
 * made.  It has its own Redis connection and never touches the reader's or
 * the writer's state.
 */
#ifndef TAP_KEEPER_H
#define TAP_KEEPER_H

#include <stdatomic.h>
#include <stdint.h>
#include "mg_store.h"
#include "tap_config.h"

typedef struct tap_keeper tap_keeper_t;

/* Start the thread; NULL (logged) when it cannot.  It runs until *stop is
 * set, then finishes its current step (at most a Redis timeout). */
tap_keeper_t *tap_keeper_start(const tap_config_t *cfg, const mg_store_cfg_t *store,
                               atomic_int *stop);
/* Wait for it and free it. */
void tap_keeper_join(tap_keeper_t *k);

/* What the keeper reports (the metrics file), as of its last step. */
typedef struct tap_keeper_stats {
    int up;               /* 1 while in touch with Redis */
    int in_step;          /* 1 while following the change log (no snapshot) */
    uint64_t snapshots;   /* whole-set writes committed */
    uint64_t applied;     /* changes applied */
    uint64_t refused;     /* changes and members refused (prefix too wide, not ours) */
    uint64_t errors;      /* Redis calls that failed */
    uint64_t live;        /* live bans in Redis at the last check */
    int64_t last_check;   /* Unix seconds of the last check, 0 = none yet */
    uint64_t fw_failures; /* firewall updates that failed (a batch of changes,
                               a whole-set write): each one is followed by a
                               rebuild */
} tap_keeper_stats_t;

/* A copy of the stats; callable from any thread while the keeper runs. */
void tap_keeper_stats(tap_keeper_t *k, tap_keeper_stats_t *out);

#endif
