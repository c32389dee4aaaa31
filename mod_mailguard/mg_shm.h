/*
 * The module's shared memory (mg_shm.c): the ban mirror, the local
 * failure windows, the queues of failures for Redis, the counters and the
 * cross-process state (Redis breaker, sync leader, change-log position),
 * in one segment created before the children fork.
 *
 * Counters and flags are touched only through the accessors below, never
 * under the mutex: counters with relaxed atomics (the status page reads
 * them without locks), flags other processes act on with acquire/release.
 */
#ifndef MG_SHM_H
#define MG_SHM_H

#include "httpd.h"
#include "apr_pools.h"

#include "mg_addr.h"
#include "mg_bantable.h"
#include "mg_fqueue.h"
#include "mg_localwin.h"

#define MG_MUTEX_TYPE "mailguard-shm"

typedef struct mg_stats {
    apr_uint64_t denied;        /* requests refused because of a ban */
    apr_uint64_t fail_seen;     /* failed logins classified */
    apr_uint64_t fail_redis;    /* ... recorded in Redis */
    apr_uint64_t fail_local;    /* ... recorded in the local windows */
    apr_uint64_t fail_ignored;  /* ... not counted: ignore list, bad address */
    apr_uint64_t successes;     /* successful logins classified */
    apr_uint64_t bans_made;     /* bans this server made (Redis or local) */
    apr_uint64_t events;        /* ban/unban messages applied */
    apr_uint64_t syncs;         /* full resyncs committed */
    apr_uint64_t sync_errors;   /* resyncs that failed */
    apr_uint64_t not_mirrored;  /* bans dropped because the table was full */
    apr_int64_t last_sync;      /* Unix seconds of the last resync, 0 = never */
    apr_uint32_t redis_down;    /* breaker: 1 while Redis is unreachable */
    apr_uint32_t sync_leader;   /* pid of the process running the sync job */
    apr_int64_t redis_retry_at; /* breaker: apr_time_t of the next probe */
    apr_uint64_t refused;       /* changes from Redis refused (prefix too wide, not ours) */
    apr_uint64_t live_in_redis; /* live bans in Redis at the sync job's last check */
    apr_uint32_t in_step;       /* 1 while the mirror follows the change log */
    apr_uint32_t pad;
    apr_uint64_t fail_unattributable; /* failures through a trusted proxy that
                                       * named no usable client address */
    apr_uint64_t fail_queued;         /* failures queued for Redis (timeout, outage) */
    apr_uint64_t fail_dropped;        /* queued failures lost: queue full, or too old */
    apr_uint64_t fail_duplicate;      /* failures Redis had already counted */
    apr_uint32_t slow_streak;         /* breaker: consecutive timed-out calls */
    apr_uint32_t pad3;
    apr_int64_t slow_since; /* breaker: apr_time_t of the streak's first */
} mg_stats_t;

/*
 * Where the mirror stands in Redis's change log, kept in shared memory so
 * the sync process of the next httpd generation (or one started after a
 * crash) resumes from there instead of reading the whole set.  Written by
 * the sync process only; valid is cleared first and set last.
 */
typedef struct mg_shm_pos {
    apr_uint32_t valid;
    apr_uint32_t pad;
    apr_uint64_t seq;
    apr_uint64_t origin; /* which Redis and prefix (mg_mirror.c) */
    char id[48];
} mg_shm_pos_t;

/* ---- counters (relaxed: statistics) ---- */

static inline void mg_stat_inc(apr_uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static inline apr_uint64_t mg_stat_get(const apr_uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static inline void mg_stat_set(apr_uint64_t *counter, apr_uint64_t v)
{
    __atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

/* ---- flags and times other processes act on (acquire/release) ---- */

static inline apr_uint32_t mg_flag_get(const apr_uint32_t *flag)
{
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

static inline void mg_flag_set(apr_uint32_t *flag, apr_uint32_t v)
{
    __atomic_store_n(flag, v, __ATOMIC_RELEASE);
}

/* 1 when *flag held expect and now holds v. */
static inline int mg_flag_swap(apr_uint32_t *flag, apr_uint32_t expect, apr_uint32_t v)
{
    return __atomic_compare_exchange_n(flag, &expect, v, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static inline apr_uint32_t mg_flag_add(apr_uint32_t *flag, apr_uint32_t d)
{
    return __atomic_add_fetch(flag, d, __ATOMIC_ACQ_REL);
}

static inline apr_int64_t mg_time_get(const apr_int64_t *t)
{
    return __atomic_load_n(t, __ATOMIC_ACQUIRE);
}

static inline void mg_time_set(apr_int64_t *t, apr_int64_t v)
{
    __atomic_store_n(t, v, __ATOMIC_RELEASE);
}

/* 1 when *t held expect and now holds v. */
static inline int mg_time_swap(apr_int64_t *t, apr_int64_t expect, apr_int64_t v)
{
    return __atomic_compare_exchange_n(t, &expect, v, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* ---- the segment ---- */

apr_status_t mg_shm_pre_config(apr_pool_t *pconf);
apr_status_t mg_shm_post_config(apr_pool_t *pconf, server_rec *s);
void mg_shm_child_init(apr_pool_t *pchild, server_rec *s);
mg_bantable_t *mg_shm_bantable(void);
mg_localwin_t *mg_shm_localwin(void);
mg_stats_t *mg_shm_stats(void);
mg_shm_pos_t *mg_shm_position(void);
/* Failures waiting to be sent to Redis, and those recently counted there
 * (sent again should Redis lose its data); writers hold the mutex. */
mg_fqueue_t *mg_shm_fqueue(void);
mg_fqueue_t *mg_shm_recent(void);
/* Random, per shared-memory segment: the start of this server's failure
 * identities. */
apr_uint64_t mg_shm_token(void);
/* The one writer lock of the ban table and the local windows.  Never
 * held across network I/O. */
apr_status_t mg_shm_lock(server_rec *s);
void mg_shm_unlock(server_rec *s);
/* Lock, insert/remove, unlock.  0 on success. */
int mg_shm_put_ban(server_rec *s, const mg_addr_t *key, apr_int64_t expiry);
int mg_shm_del_ban(server_rec *s, const mg_addr_t *key);

#endif
