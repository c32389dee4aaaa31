/*
 * The sync job: keeps the shared-memory ban mirror in step with the Redis
 * ban set.  One per server, in a process of its own.
 *
 * Why a process and not a thread in a child: a second thread makes glibc
 * take its slower cancellable path on every read and writev of that
 * process, a measurable part of a static request.  Request-serving
 * processes (every prefork child, the single -X process) must stay
 * single-threaded, so post_config forks the job off the parent, as
 * mod_cgid does with its daemon:
 *  - the child drops to User/Group like the MPM's children, re-attaches
 *    the global mutex, closes the listeners (the port must not stay open
 *    in a process that never accepts), and runs the loop in its main
 *    thread;
 *  - SIGTERM and SIGINT are blocked and polled between steps, so a stop
 *    never interrupts a Redis call halfway (that would be reported as an
 *    outage); the signals httpd sends its process group for restarts
 *    (SIGHUP, SIGUSR1, SIGWINCH) are ignored, since the parent replaces
 *    the job at every restart anyway; PR_SET_PDEATHSIG and a getppid()
 *    test end it should the parent die without stopping it;
 *  - the parent registers it as an "other child": the MPM's wait loop
 *    reports its death and it is forked again (after a back-off when it
 *    died soon after starting), and a cleanup of pconf, cleared at every
 *    restart and at shutdown, stops it (SIGTERM, bounded wait, SIGKILL).
 *    With -X nobody reaps children, so a job that dies there stays dead.
 * Every wait in the loop is bounded (event wait 200 ms, Redis timeouts),
 * so it stops promptly.
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
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_listen.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_signal.h"
#include "apr_thread_proc.h"

#include "mod_mailguard.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

#define MG_SYNC_CONNECT_MS  200
#define MG_SYNC_COMMAND_MS  1000   /* a full list of a large set takes a while */
#define MG_SYNC_WAIT_MS     200
#define MG_SYNC_RETRY       apr_time_from_sec(1)
#define MG_RESTORED_JAIL    "restored"
/* A job that ran less than this before dying waits before its successor
 * starts: 1 s, doubling up to the cap.  Bounds a crash loop to one fork
 * per MG_SYNC_BACKOFF_MAX seconds. */
#define MG_SYNC_STABLE      apr_time_from_sec(10)
#define MG_SYNC_BACKOFF_MAX 32
/* How long the parent waits for the job to leave after SIGTERM: longer
 * than its slowest step (a Redis command timeout), short enough not to
 * hold up a restart. */
#define MG_SYNC_STOP_WAIT   apr_time_from_sec(5)

static struct {
    /* parent */
    server_rec *s;
    apr_pool_t *pconf;
    apr_proc_t proc;
    pid_t owner;            /* the process that forked the job */
    int running;            /* proc is a live child not yet reaped */
    int registered;         /* proc is on APR's other-child list */
    int delay;              /* seconds the next job waits before it starts */
    apr_time_t began;       /* when the current job's loop began */
    /* sync process */
    pid_t parent;
    int stop;
} mg_sync;

typedef struct mg_ban {
    mg_addr_t key;
    int64_t expiry;
} mg_ban_t;

typedef struct mg_banvec {
    mg_ban_t *v;
    size_t n, cap;
    int oom;
} mg_banvec_t;

/* Asked to stop (SIGTERM or SIGINT pending), or orphaned. */
static int mg_stopping(void)
{
    sigset_t pending;

    if (mg_sync.stop) {
        return 1;
    }
    if (getppid() != mg_sync.parent
        || (sigpending(&pending) == 0
            && (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1))) {
        mg_sync.stop = 1;
    }
    return mg_sync.stop;
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

    /* The count is a plain load (the loop and the status page read it
     * unlocked too); it only bounds the loop, each pop is locked. */
    n = mg_localwin_pending(lw);
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
    /* An empty live set may come with no array at all: qsort and bsearch
     * must not see a null base. */
    if (nlive > 0) {
        qsort(live->v, nlive, sizeof(mg_ban_t), mg_ban_cmp);
    }
    for (i = 0; i < mine.n && !mg_stopping(); i++) {
        if (nlive > 0
            && bsearch(&mine.v[i], live->v, nlive, sizeof(mg_ban_t), mg_ban_cmp) != NULL) {
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
typedef struct mg_pend_add {
    mg_bantable_t *bt;
    int64_t now;
    unsigned dropped;
} mg_pend_add_t;

static int mg_sync_keep_pending(void *baton, const mg_pending_ban_t *ban)
{
    mg_pend_add_t *p = baton;

    if (ban->expiry > p->now && mg_bantable_rebuild_add(p->bt, &ban->key, ban->expiry) != 0) {
        p->dropped++;
    }
    return 0;
}

/* -1 when the mirror could not be locked: nothing was committed, and the
 * resync must count as failed rather than report Redis and the mirror in
 * step. */
static int mg_sync_commit(server_rec *s, const mg_banvec_t *live, int64_t now)
{
    static int warned_full;
    mg_bantable_t *bt = mg_shm_bantable();
    mg_localwin_t *lw = mg_shm_localwin();
    mg_stats_t *stats = mg_shm_stats();
    mg_pend_add_t pend;
    size_t k;
    unsigned dropped = 0;

    if (mg_shm_lock(s) != APR_SUCCESS) {
        return -1;
    }
    mg_bantable_rebuild_begin(bt);
    for (k = 0; k < live->n; k++) {
        if (mg_bantable_rebuild_add(bt, &live->v[k].key, live->v[k].expiry) != 0) {
            dropped++;
        }
    }
    /* Bans still waiting for Redis are not in the list just read: keep
     * them mirrored. */
    pend.bt = bt;
    pend.now = now;
    pend.dropped = 0;
    mg_localwin_foreach_pending(lw, mg_sync_keep_pending, &pend);
    dropped += pend.dropped;
    mg_bantable_rebuild_commit(bt);
    mg_shm_unlock(s);

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
    return 0;
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
    if (mg_sync_commit(s, &live, now) != 0) {
        goto end;
    }
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

/* SyncPid must not name a process that is gone. */
static void mg_sync_forget(pid_t pid)
{
    apr_uint32_t was = (apr_uint32_t)pid;

    if (mg_shm_stats() != NULL) {
        __atomic_compare_exchange_n(&mg_shm_stats()->sync_leader, &was, 0, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
}

/* The job's loop; returns the sync process's exit status. */
static int mg_sync_run(server_rec *s)
{
    mg_store_cfg_t cfg;
    mg_store_t *cmd = NULL;
    mg_store_t *sub = NULL;
    mg_store_event_t ev;
    apr_interval_time_t interval = apr_time_from_sec(mg_srv_sync_interval(s));
    apr_time_t next_try = 0, next_resync = 0, next_drain = 0;
    int subscribed = 0;
    int outage = 0;
    int code = 1;

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
            else if (!mg_stopping()) {
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
    code = 0;
end:
    mg_sync_forget(getpid());
    if (cmd != NULL) {
        mg_store_free(cmd);
    }
    if (sub != NULL) {
        mg_store_free(sub);
    }
    return code;
}

/* The sync process from fork to exit.  Leaves with _exit(): exit() would
 * run atexit handlers inherited from the parent, and nothing of the
 * parent's (pools, the mutex, shared memory) is this process's to tear
 * down. */
static void mg_sync_child(server_rec *s, pid_t parent, int delay)
{
    apr_pool_t *p = NULL;
    sigset_t stopset;
    int waited, code = 1;

    mg_sync.parent = parent;
    mg_sync.stop = 0;
    /* Blocked, not caught: a handler would interrupt a Redis call, which
     * then fails and reports an outage.  Default disposition, because a
     * blocked signal that is ignored is discarded rather than pending. */
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGINT);
    sigprocmask(SIG_SETMASK, &stopset, NULL);
    apr_signal(SIGTERM, SIG_DFL);
    apr_signal(SIGINT, SIG_DFL);
    apr_signal(SIGPIPE, SIG_IGN);
    apr_signal(SIGHUP, SIG_IGN);
    apr_signal(SIGUSR1, SIG_IGN);
    apr_signal(SIGWINCH, SIG_IGN);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
    if (getppid() != parent) {
        _exit(0);   /* the parent died before the death signal was set */
    }
    ap_close_listeners();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        _exit(1);
    }
    apr_pool_tag(p, "mailguard_sync");
    if (ap_run_drop_privileges(p, s) != OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "MG0073: the sync process cannot switch to User/Group: it stops");
        _exit(1);
    }
    mg_shm_child_init(p, s);
    for (waited = 0; waited < delay * 10 && !mg_stopping(); waited++) {
        apr_sleep(apr_time_from_msec(100));
    }
    if (!mg_stopping()) {
        code = mg_sync_run(s);
    }
    else {
        code = 0;
    }
    apr_pool_destroy(p);
    _exit(code);
}

static void mg_sync_maint(int reason, void *data, apr_wait_t status);

static apr_status_t mg_sync_fork(void)
{
    pid_t parent = getpid();
    apr_status_t rv;

    rv = apr_proc_fork(&mg_sync.proc, mg_sync.pconf);
    if (rv == APR_INCHILD) {
        mg_sync_child(mg_sync.s, parent, mg_sync.delay);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, mg_sync.s,
                     "MG0068: cannot start the sync process: bans made elsewhere are not "
                     "mirrored by this server");
        return rv;
    }
    mg_sync.running = 1;
    mg_sync.registered = 1;
    mg_sync.began = apr_time_now() + apr_time_from_sec(mg_sync.delay);
    apr_proc_other_child_register(&mg_sync.proc, mg_sync_maint, &mg_sync.proc, NULL,
                                  mg_sync.pconf);
    return APR_SUCCESS;
}

/* APR's unregister dereferences a record it did not find: call it only
 * while registered. */
static void mg_sync_unregister(void)
{
    if (mg_sync.registered) {
        mg_sync.registered = 0;
        apr_proc_other_child_unregister(&mg_sync.proc);
    }
}

/* Called by the MPM's wait loop (parent only).  A death during a restart
 * or shutdown is expected: the pconf cleanup and the next post_config
 * take care of it.  Any other death or loss is replaced. */
static void mg_sync_maint(int reason, void *data, apr_wait_t status)
{
    int state = AP_MPMQ_STOPPING;
    pid_t pid = mg_sync.proc.pid;
    apr_time_t lived;

    (void)data;
    if (reason == APR_OC_REASON_UNREGISTER) {
        /* Our own unregister, or APR's pconf cleanup: off the list. */
        mg_sync.registered = 0;
        return;
    }
    if (reason != APR_OC_REASON_DEATH && reason != APR_OC_REASON_LOST) {
        return;   /* RUNNING, RESTART: the pconf cleanup stops it */
    }
    mg_sync.running = 0;
    mg_sync_unregister();
    mg_sync_forget(pid);
    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS || state == AP_MPMQ_STOPPING) {
        return;
    }
    lived = apr_time_now() - mg_sync.began;
    if (lived >= MG_SYNC_STABLE) {
        mg_sync.delay = 0;
    }
    else {
        mg_sync.delay = mg_sync.delay == 0 ? 1 : mg_sync.delay * 2;
        if (mg_sync.delay > MG_SYNC_BACKOFF_MAX) {
            mg_sync.delay = MG_SYNC_BACKOFF_MAX;
        }
    }
    if (reason == APR_OC_REASON_LOST) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, mg_sync.s,
                     "MG0074: lost track of the sync process %ld: starting another "
                     "in %d s", (long)pid, mg_sync.delay);
    }
    else {
        /* The MPM hands over APR's exit code, which is the exit status or
         * the signal number: it cannot tell which. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, mg_sync.s,
                     "MG0074: the sync process %ld ended (exit status or signal %d): "
                     "starting another in %d s", (long)pid, (int)status, mg_sync.delay);
    }
    mg_sync_fork();
}

/* pconf cleanup, cleared at every restart and at shutdown: the job of
 * this generation goes; post_config forks the next one's. */
static apr_status_t mg_sync_stop(void *data)
{
    apr_time_t deadline;
    pid_t pid, got;
    int status;

    (void)data;
    /* Only the process that forked the job: the MPM's children inherit
     * this cleanup with the pool. */
    if (getpid() != mg_sync.owner) {
        return APR_SUCCESS;
    }
    mg_sync_unregister();
    if (!mg_sync.running) {
        return APR_SUCCESS;
    }
    mg_sync.running = 0;
    pid = mg_sync.proc.pid;
    kill(pid, SIGTERM);
    deadline = apr_time_now() + MG_SYNC_STOP_WAIT;
    for (;;) {
        got = waitpid(pid, &status, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR)) {
            break;   /* gone, or already reaped */
        }
        if (apr_time_now() >= deadline) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, mg_sync.s,
                         "MG0075: the sync process %ld did not stop within %d s: killed",
                         (long)pid, (int)apr_time_sec(MG_SYNC_STOP_WAIT));
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        apr_sleep(apr_time_from_msec(20));
    }
    mg_sync_forget(pid);
    return APR_SUCCESS;
}

apr_status_t mg_sync_post_config(apr_pool_t *pconf, server_rec *s)
{
    memset(&mg_sync, 0, sizeof(mg_sync));
    mg_sync.s = s;
    mg_sync.pconf = pconf;
    mg_sync.owner = getpid();
    if (!mg_srv_redis_enabled(s) || mg_shm_bantable() == NULL) {
        /* MailGuardRedis none: this server alone, nothing to mirror. */
        return APR_SUCCESS;
    }
    apr_pool_cleanup_register(pconf, NULL, mg_sync_stop, apr_pool_cleanup_null);
    /* Not fatal: requests are still judged by the bans this server makes
     * and the mirror it has; the error is logged. */
    (void)mg_sync_fork();
    return APR_SUCCESS;
}
