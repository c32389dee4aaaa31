/*
 * The sync job: keeps the shared-memory ban mirror in step with the Redis
 * ban set.  One per server: mod_watchdog's singleton child watchdog elects
 * the process that runs it (another child takes over if that one exits).
 *
 * The watchdog thread itself only starts and stops the job: the job needs
 * to wait on the subscription socket, which the watchdog's fixed 100 ms
 * ticks would turn into up to 100 ms of extra delay per ban.  So the
 * STARTING callback starts a thread of ours (signals blocked, no APR pool
 * shared with the main thread), STOPPING asks it to stop, and a pre-cleanup
 * of the child pool joins it.  Every wait in the thread is bounded (event
 * wait 200 ms, Redis timeouts), so it stops promptly on a graceful restart
 * or shutdown.
 *
 * The loop:
 *  - subscribes to P events and applies ban/unban messages as they arrive;
 *  - every MailGuardSyncInterval (and right after (re)subscribing, since
 *    messages may have been missed): writes bans made locally while Redis
 *    was away, re-reads the live set and rebuilds the spare table, so a
 *    bare ZREM disappears; bans still waiting for Redis are merged in;
 *  - after an outage, bans the mirror holds but Redis lost (a restart
 *    without persistence) are written back rather than dropped: an outage
 *    must not open the door.  An unban made while this server could not
 *    reach Redis is undone by that; repeat it.
 * The writer mutex is never held during network I/O.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_watchdog.h"
#include "apr_optional.h"

#include "mod_mailguard.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

#define MG_WD_NAME          "_mailguard_sync_"
#define MG_SYNC_CONNECT_MS  200
#define MG_SYNC_COMMAND_MS  1000   /* a full list of a large set takes a while */
#define MG_SYNC_WAIT_MS     200
#define MG_SYNC_RETRY       apr_time_from_sec(1)
#define MG_RESTORED_JAIL    "restored"

static struct {
    server_rec *s;
    int use_watchdog;
    pthread_mutex_t lock;   /* guards started/stopped */
    pthread_t thread;
    int started;
    int stopped;
    int stop;               /* atomic: ask the thread to leave */
} mg_sync = { .lock = PTHREAD_MUTEX_INITIALIZER };

typedef struct mg_ban {
    mg_addr_t key;
    int64_t expiry;
} mg_ban_t;

typedef struct mg_banvec {
    mg_ban_t *v;
    size_t n, cap;
    int oom;
} mg_banvec_t;

static int mg_stopping(void)
{
    return __atomic_load_n(&mg_sync.stop, __ATOMIC_ACQUIRE);
}

static int mg_vec_push(void *baton, const mg_addr_t *key, int64_t expiry)
{
    mg_banvec_t *b = baton;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        mg_ban_t *v = realloc(b->v, cap * sizeof(*v));
        if (v == NULL) {
            b->oom = 1;
            return 1;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n].key = *key;
    b->v[b->n].expiry = expiry;
    b->n++;
    return 0;
}

static int mg_ban_cmp(const void *x, const void *y)
{
    return memcmp(&((const mg_ban_t *)x)->key, &((const mg_ban_t *)y)->key, sizeof(mg_addr_t));
}

/* Bans made locally while Redis was away: write them now.  Stops at the
 * first failure (the ban goes back to the queue). */
static int mg_sync_drain(server_rec *s, mg_store_t *cmd, int64_t now)
{
    mg_localwin_t *lw = mg_shm_localwin();
    mg_pending_ban_t pb;
    apr_uint32_t n, i;
    int got;

    if (mg_shm_lock(s) != APR_SUCCESS) {
        return -1;
    }
    n = mg_localwin_pending(lw);
    mg_shm_unlock(s);
    for (i = 0; i < n && !mg_stopping(); i++) {
        if (mg_shm_lock(s) != APR_SUCCESS) {
            return -1;
        }
        got = mg_localwin_pop_ban(lw, &pb);
        mg_shm_unlock(s);
        if (!got) {
            break;
        }
        if (pb.expiry <= now) {
            continue;
        }
        if (mg_store_ban(cmd, &pb.key, pb.expiry, pb.jail) != 0) {
            if (mg_shm_lock(s) == APR_SUCCESS) {
                mg_localwin_queue_ban(lw, &pb.key, pb.expiry, pb.jail);
                mg_shm_unlock(s);
            }
            return -1;
        }
    }
    if (n > 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                     "MG0061: wrote %u locally made ban(s) to Redis", (unsigned)i);
    }
    return 0;
}

/* After an outage: what the mirror knows and Redis does not goes back. */
static int mg_sync_restore(server_rec *s, mg_store_t *cmd, mg_banvec_t *live, int64_t now)
{
    mg_banvec_t mine = { 0 };
    size_t i, nlive = live->n;
    unsigned restored = 0;
    int rc = 0;

    mg_bantable_foreach(mg_shm_bantable(), now, mg_vec_push, &mine);
    if (mine.oom) {
        rc = -1;
        goto end;
    }
    qsort(live->v, nlive, sizeof(mg_ban_t), mg_ban_cmp);
    for (i = 0; i < mine.n && !mg_stopping(); i++) {
        if (bsearch(&mine.v[i], live->v, nlive, sizeof(mg_ban_t), mg_ban_cmp) != NULL) {
            continue;
        }
        if (mg_store_ban(cmd, &mine.v[i].key, mine.v[i].expiry, MG_RESTORED_JAIL) != 0) {
            rc = -1;
            goto end;
        }
        mg_vec_push(live, &mine.v[i].key, mine.v[i].expiry);
        restored++;
    }
end:
    if (restored > 0) {
        /* Info, not notice: the outage itself was already logged once. */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "MG0062: wrote %u ban(s) back to Redis that it no longer held "
                     "(restarted without its data?)", restored);
    }
    free(mine.v);
    return rc;
}

/* Rebuild the spare table from the live set plus bans still waiting for
 * Redis, and make it the live one. */
static void mg_sync_commit(server_rec *s, const mg_banvec_t *live, int64_t now)
{
    static int warned_full;
    mg_bantable_t *bt = mg_shm_bantable();
    mg_localwin_t *lw = mg_shm_localwin();
    mg_stats_t *stats = mg_shm_stats();
    mg_pending_ban_t *pending = NULL;
    apr_uint32_t npend, i;
    size_t k;
    unsigned dropped = 0;

    if (mg_shm_lock(s) != APR_SUCCESS) {
        return;
    }
    mg_bantable_rebuild_begin(bt);
    for (k = 0; k < live->n; k++) {
        if (mg_bantable_rebuild_add(bt, &live->v[k].key, live->v[k].expiry) != 0) {
            dropped++;
        }
    }
    npend = mg_localwin_pending(lw);
    if (npend > 0) {
        pending = malloc(sizeof(*pending) * npend);
    }
    if (pending != NULL) {
        for (i = 0; i < npend && mg_localwin_pop_ban(lw, &pending[i]); i++) {
            if (pending[i].expiry > now
                && mg_bantable_rebuild_add(bt, &pending[i].key, pending[i].expiry) != 0) {
                dropped++;
            }
        }
        npend = i;
        for (i = 0; i < npend; i++) {
            mg_localwin_queue_ban(lw, &pending[i].key, pending[i].expiry, pending[i].jail);
        }
    }
    mg_bantable_rebuild_commit(bt);
    mg_shm_unlock(s);
    free(pending);

    mg_stat_inc(&stats->syncs);
    __atomic_store_n(&stats->last_sync, (apr_int64_t)now, __ATOMIC_RELAXED);
    if (dropped > 0) {
        __atomic_fetch_add(&stats->not_mirrored, dropped, __ATOMIC_RELAXED);
        if (!warned_full) {
            warned_full = 1;
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "MG0063: ban table full: %u live ban(s) not mirrored; raise "
                         "MailGuardBanTableSize (now %u)",
                         dropped, (unsigned)mg_bantable_capacity(bt));
        }
    }
    else {
        warned_full = 0;
    }
}

static int mg_sync_resync(server_rec *s, mg_store_t *cmd, int restore)
{
    mg_banvec_t live = { 0 };
    int64_t now = (int64_t)apr_time_sec(apr_time_now());
    unsigned skipped = 0;
    int rc = -1;

    if (mg_sync_drain(s, cmd, now) != 0) {
        goto end;
    }
    if (mg_store_list(cmd, now, mg_vec_push, &live, &skipped) != 0 || live.oom) {
        goto end;
    }
    if (skipped > 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                     "MG0064: %u member(s) of the ban set are not addresses: ignored", skipped);
    }
    if (restore && mg_sync_restore(s, cmd, &live, now) != 0) {
        goto end;
    }
    mg_sync_commit(s, &live, now);
    rc = 0;
end:
    free(live.v);
    return rc;
}

static void mg_sync_apply(server_rec *s, const mg_store_event_t *ev)
{
    char addr[MG_ADDR_STRLEN];

    if (ev->is_ban) {
        mg_shm_put_ban(s, &ev->key, ev->expiry);
    }
    else {
        mg_shm_del_ban(s, &ev->key);
    }
    mg_stat_inc(&mg_shm_stats()->events);
    if (APLOGdebug(s)) {
        mg_addr_format(&ev->key, addr, sizeof(addr));
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MG0065: %s %s applied",
                     ev->is_ban ? "ban" : "unban", addr);
    }
}

static void *mg_sync_main(void *arg)
{
    server_rec *s = arg;
    mg_store_cfg_t cfg;
    mg_store_t *cmd = NULL;
    mg_store_t *sub = NULL;
    mg_store_event_t ev;
    apr_interval_time_t interval = apr_time_from_sec(mg_srv_sync_interval(s));
    apr_time_t next_try = 0, next_resync = 0, next_drain = 0;
    int subscribed = 0;
    int outage = 0;

    mg_redis_store_cfg(s, &cfg, MG_SYNC_CONNECT_MS, MG_SYNC_COMMAND_MS);
    cmd = mg_store_new(&cfg);
    sub = mg_store_new(&cfg);
    if (cmd == NULL || sub == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "MG0066: cannot set up the sync job's Redis connections");
        goto end;
    }
    __atomic_store_n(&mg_shm_stats()->sync_leader, (apr_uint32_t)getpid(), __ATOMIC_RELAXED);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MG0067: sync job running in pid %ld",
                 (long)getpid());

    while (!mg_stopping()) {
        apr_time_t now = apr_time_now();
        int rc;

        if (!subscribed && now >= next_try) {
            if (mg_store_subscribe(sub) == 0) {
                subscribed = 1;
                next_resync = now;   /* messages may have been missed */
                mg_breaker_report(s, 1, NULL);
                /* The command connection may be a stale socket from before
                 * the outage: start it afresh rather than have its first
                 * call fail and report Redis gone again. */
                mg_store_free(cmd);
                cmd = mg_store_new(&cfg);
                if (cmd == NULL) {
                    ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                                 "MG0072: out of memory: sync job stopped");
                    goto end;
                }
            }
            else {
                mg_breaker_report(s, 0, mg_store_error(sub));
                outage = 1;
                next_try = now + MG_SYNC_RETRY;
            }
        }
        if (subscribed && now >= next_resync) {
            if (mg_sync_resync(s, cmd, outage) == 0) {
                outage = 0;
                next_resync = now + interval;
                mg_breaker_report(s, 1, NULL);
            }
            else {
                mg_stat_inc(&mg_shm_stats()->sync_errors);
                mg_breaker_report(s, 0, mg_store_error(cmd));
                outage = 1;
                next_resync = now + MG_SYNC_RETRY;
            }
        }
        /* Bans made locally while Redis was away go out as soon as it is
         * back, not at the next resync. */
        if (subscribed && now >= next_drain && mg_localwin_pending(mg_shm_localwin()) > 0) {
            if (mg_sync_drain(s, cmd, (int64_t)apr_time_sec(now)) != 0) {
                next_drain = now + MG_SYNC_RETRY;
            }
        }
        if (!subscribed) {
            apr_sleep(apr_time_from_msec(100));
            continue;
        }
        rc = mg_store_next_event(sub, MG_SYNC_WAIT_MS, &ev);
        if (rc == 1) {
            mg_sync_apply(s, &ev);
        }
        else if (rc < 0) {
            /* Reconnect at once; if that fails, once a second. */
            subscribed = 0;
            outage = 1;
            next_try = apr_time_now();
            mg_breaker_report(s, 0, mg_store_error(sub));
        }
    }
end:
    if (mg_shm_stats() != NULL) {
        apr_uint32_t me = (apr_uint32_t)getpid();
        __atomic_compare_exchange_n(&mg_shm_stats()->sync_leader, &me, 0, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
    }
    if (cmd != NULL) {
        mg_store_free(cmd);
    }
    if (sub != NULL) {
        mg_store_free(sub);
    }
    return NULL;
}

/* Start the thread with every signal blocked: the MPM's handlers must run
 * in its own threads (prefork's SIGTERM handler tears the child down and
 * would end up joining this very thread). */
static apr_status_t mg_sync_start(server_rec *s)
{
    sigset_t all, old;
    int rc = 0;

    pthread_mutex_lock(&mg_sync.lock);
    if (!mg_sync.started && !mg_sync.stopped) {
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(&mg_sync.thread, NULL, mg_sync_main, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        mg_sync.started = rc == 0;
    }
    pthread_mutex_unlock(&mg_sync.lock);
    if (rc != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rc, s,
                     "MG0068: cannot start the sync job: bans made elsewhere are not "
                     "mirrored by this server");
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* Child pool pre-cleanup (main thread): stop and join before the child's
 * memory goes away. */
static apr_status_t mg_sync_cleanup(void *data)
{
    int join;

    (void)data;
    __atomic_store_n(&mg_sync.stop, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&mg_sync.lock);
    mg_sync.stopped = 1;
    join = mg_sync.started;
    mg_sync.started = 0;
    pthread_mutex_unlock(&mg_sync.lock);
    if (join) {
        pthread_join(mg_sync.thread, NULL);
    }
    return APR_SUCCESS;
}

static apr_status_t mg_sync_wd_callback(int state, void *data, apr_pool_t *pool)
{
    (void)pool;
    switch (state) {
    case AP_WATCHDOG_STATE_STARTING:
        return mg_sync_start(data);
    case AP_WATCHDOG_STATE_STOPPING:
        __atomic_store_n(&mg_sync.stop, 1, __ATOMIC_RELEASE);
        return APR_SUCCESS;
    default:
        return APR_SUCCESS;
    }
}

apr_status_t mg_sync_post_config(apr_pool_t *pconf, server_rec *s)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *wd_get;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *wd_register;
    ap_watchdog_t *wd = NULL;
    apr_status_t rv;

    mg_sync.s = s;
    mg_sync.use_watchdog = 0;
    mg_sync.started = 0;
    mg_sync.stopped = 0;
    mg_sync.stop = 0;
    if (!mg_srv_redis_enabled(s)) {
        /* MailGuardRedis none: this server alone, nothing to mirror. */
        return APR_SUCCESS;
    }
    wd_get = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    wd_register = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (wd_get == NULL || wd_register == NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "MG0069: mod_watchdog is not available: every child runs its own "
                     "sync job");
        return APR_SUCCESS;
    }
    rv = wd_get(&wd, MG_WD_NAME, 0, 1, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "MG0070: cannot get a watchdog instance");
        return rv;
    }
    /* The interval only paces RUNNING callbacks, which have nothing to do. */
    rv = wd_register(wd, AP_WD_TM_INTERVAL, s, mg_sync_wd_callback);
    if (rv != APR_SUCCESS && rv != APR_EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "MG0071: cannot register the sync job with mod_watchdog");
        return rv;
    }
    mg_sync.use_watchdog = 1;
    return APR_SUCCESS;
}

void mg_sync_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (!mg_srv_redis_enabled(s) || mg_shm_bantable() == NULL) {
        return;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, mg_sync_cleanup);
    if (!mg_sync.use_watchdog) {
        mg_sync_start(s);
    }
}
