/*
 * The shared-memory ban mirror as the follower's consumer (mg_follow.h):
 * changes go straight into the live table, a snapshot is built in the
 * spare table and switched in whole.  Runs in the sync process only.
 */
#ifndef MG_MIRROR_H
#define MG_MIRROR_H

#include "httpd.h"
#include "mg_follow.h"
#include "mg_store.h"

typedef struct mg_mirror mg_mirror_t;

/* NULL when out of memory. */
mg_mirror_t *mg_mirror_new(server_rec *s);
void mg_mirror_free(mg_mirror_t *m);

/* The callbacks to give mg_follow_new() with m as baton. */
extern const mg_follow_ops_t mg_mirror_ops;

/*
 * What Redis should hold and does not: bans made here while Redis was
 * away, failures queued for it (a call that timed out, an outage: each
 * sent with its identity and time, so it counts exactly once and in its
 * place; a ban it makes is mirrored and logged here), then the bans the
 * mirror kept when Redis lost its data.  Writes one bounded piece per call
 * (pipelined), so the follower keeps applying changes between pieces.  1
 * when there is more to write, 0 when done, -1 on a Redis error (the rest
 * stays queued); *wrote is set when Redis took a write.
 */
int mg_mirror_write_back(mg_mirror_t *m, mg_store_t *cmd, int *wrote);

/* After a step: counters, the position kept for the next sync process,
 * and the bans Redis holds that the table could not take (logged once;
 * read again once the table has room). */
void mg_mirror_account(mg_mirror_t *m, mg_follow_t *f);

/* A saved position to resume from, when it belongs to this Redis and
 * prefix: 1 and id/seq, else 0. */
int mg_mirror_saved_position(server_rec *s, char id[MG_STORE_IDLEN], uint64_t *seq);

#endif
