/*
 * Internal declarations shared by the module's files (not an API).
 *
 * mod_mailguard.c   module record and hook registration
 * mg_config.c       directives, create/merge, getters
 * mg_shm.c          shared memory (ban mirror, local windows, counters,
 *                   Redis breaker state) and the global writer mutex
 * mg_gate.c         deny banned clients before any handler
 * mg_watch.c        classify finished logins, record failures, log bans
 * mg_redis_pool.c   per-process Redis connections and the circuit breaker
 * mg_sync.c         the sync process that mirrors the Redis ban set
 * mg_status.c       the mailguard-status handler
 * mg_proxy.c        failures mod_remoteip could not attribute to a client
 */
#ifndef MOD_MAILGUARD_H
#define MOD_MAILGUARD_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_time.h"

#include "mg_addr.h"
#include "mg_bantable.h"
#include "mg_fqueue.h"
#include "mg_localwin.h"
#include "mg_policy.h"
#include "mg_store.h"

extern module AP_MODULE_DECLARE_DATA mailguard_module;

#define MG_MUTEX_TYPE "mailguard-shm"
#define MG_STATUS_HANDLER "mailguard-status"

/*
 * Counters and cross-process state, in shared memory.  Updated with
 * atomic operations only (never under the mutex), read without locks by
 * the status handler.
 */
typedef struct mg_stats {
    apr_uint64_t denied;          /* requests refused because of a ban */
    apr_uint64_t fail_seen;       /* failed logins classified */
    apr_uint64_t fail_redis;      /* ... recorded in Redis */
    apr_uint64_t fail_local;      /* ... recorded in the local windows */
    apr_uint64_t fail_ignored;    /* ... not counted: ignore list, bad address */
    apr_uint64_t successes;       /* successful logins classified */
    apr_uint64_t bans_made;       /* bans this server made (Redis or local) */
    apr_uint64_t events;          /* ban/unban messages applied */
    apr_uint64_t syncs;           /* full resyncs committed */
    apr_uint64_t sync_errors;     /* resyncs that failed */
    apr_uint64_t not_mirrored;    /* bans dropped because the table was full */
    apr_int64_t last_sync;        /* Unix seconds of the last resync, 0 = never */
    apr_uint32_t redis_down;      /* breaker: 1 while Redis is unreachable */
    apr_uint32_t sync_leader;     /* pid of the process running the sync job */
    apr_int64_t redis_retry_at;   /* breaker: apr_time_t of the next probe */
    apr_uint64_t refused;         /* changes from Redis refused (prefix too wide, not ours) */
    apr_uint64_t live_in_redis;   /* live bans in Redis at the sync job's last check */
    apr_uint32_t in_step;         /* 1 while the mirror follows the change log */
    apr_uint32_t pad;
    apr_uint64_t fail_unattributable; /* failures through a trusted proxy that
                                       * named no usable client address */
    apr_uint64_t fail_queued;     /* failures queued for Redis (timeout, outage) */
    apr_uint64_t fail_dropped;    /* queued failures lost: queue full, or too old */
    apr_uint64_t fail_duplicate;  /* failures Redis had already counted */
    apr_uint32_t slow_streak;     /* breaker: consecutive timed-out calls */
    apr_uint32_t pad3;
    apr_int64_t slow_since;       /* breaker: apr_time_t of the streak's first */
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
    apr_uint64_t origin;          /* which Redis and prefix (mg_mirror.c) */
    char id[48];
} mg_shm_pos_t;

static inline void mg_stat_inc(apr_uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

static inline apr_uint64_t mg_stat_get(const apr_uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* mg_shm.c */
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

/* mg_gate.c */
int mg_gate_post_perdir_config(request_rec *r);

/* mg_watch.c */
int mg_watch_log_transaction(request_rec *r);
/* "2026-11-26T19:45:05Z", or "forever" for MG_EXPIRY_NEVER. */
const char *mg_format_time(apr_int64_t secs, char *buf, apr_size_t size);

/* mg_redis_pool.c */
void mg_redis_child_init(apr_pool_t *pchild, server_rec *s);
/* A connection for one call, or NULL: Redis off, breaker open, or every
 * connection busy.  Give it back with the call's return code: the breaker
 * opens when Redis is gone or refuses (the store's error kind), or after a
 * few timeouts in a row, never for one slow call. */
mg_store_t *mg_redis_checkout(server_rec *s);
void mg_redis_checkin(server_rec *s, mg_store_t *st, int rc);
/* Store settings for a new connection (timeouts in milliseconds). */
void mg_redis_store_cfg(server_rec *s, mg_store_cfg_t *cfg, int connect_ms, int command_ms);
/* Breaker: report the outcome of a call made outside the pool. */
void mg_breaker_report(server_rec *s, int ok, const char *why);

/* mg_sync.c: forks the sync process (none with MailGuardRedis none). */
apr_status_t mg_sync_post_config(apr_pool_t *pconf, server_rec *s);

/* mg_proxy.c: reads mod_remoteip's directives from the configuration
 * tree (post_config, in the parent). */
apr_status_t mg_proxy_post_config(apr_pool_t *pconf, server_rec *s);
/* A failure from a trusted proxy whose header mod_remoteip could not use:
 * the address is the proxy's, not the client's. */
int mg_proxy_unattributable(const request_rec *r);

/* mg_status.c */
int mg_status_handler(request_rec *r);

#endif
