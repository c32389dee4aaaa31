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
 * Every wait in the loop is bounded (a change-log wait of 200 ms, Redis
 * timeouts), so it stops promptly.
 *
 * The loop is the core's follower (mg_follow.h) feeding the mirror
 * (mg_mirror.c): the whole set is read at start (unless the previous sync
 * process left a position the mirror is in step with), after a gap, a
 * hand edit or data loss; otherwise changes are applied as Redis logs
 * them.  Between the follower's steps, bans Redis should hold and does not
 * (made here during an outage, or lost by Redis) are written back a piece
 * at a time.  The writer mutex is never held during network I/O.
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

#include "mg_sync.h"
#include "mg_shm.h"
#include "mg_redis_pool.h"
#include "mg_config.h"
#include "mg_follow.h"
#include "mg_mirror.h"

APLOG_USE_MODULE(mailguard);

#define MG_SYNC_CONNECT_MS 500
#define MG_SYNC_COMMAND_MS 1000
/* Longest wait for a change: bounds how long a stop takes. */
#define MG_SYNC_WAIT_MS 200
#define MG_SYNC_RETRY   apr_time_from_sec(1)
/* A job that ran less than this before dying waits before its successor
 * starts: 1 s, doubling up to the cap.  Bounds a crash loop to one fork
 * per MG_SYNC_BACKOFF_MAX seconds. */
#define MG_SYNC_STABLE      apr_time_from_sec(10)
#define MG_SYNC_BACKOFF_MAX 32
/* How long the parent waits for the job to leave after SIGTERM: longer
 * than its slowest step (a Redis command timeout), short enough not to
 * hold up a restart. */
#define MG_SYNC_STOP_WAIT apr_time_from_sec(5)
/* How long a cold start waits for the first read of the ban set. */
#define MG_SYNC_START_WAIT apr_time_from_sec(10)

static struct {
    /* parent */
    server_rec *s;
    apr_pool_t *pconf;
    apr_proc_t proc;
    pid_t owner;      /* the process that forked the job */
    int running;      /* proc is a live child not yet reaped */
    int registered;   /* proc is on APR's other-child list */
    int delay;        /* seconds the next job waits before it starts */
    apr_time_t began; /* when the current job's loop began */
    /* sync process */
    pid_t parent;
    int stop;
} mg_sync;

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

/* SyncPid must not name a process that is gone. */
static void mg_sync_forget(pid_t pid)
{
    if (mg_shm_stats() != NULL) {
        mg_flag_swap(&mg_shm_stats()->sync_leader, (apr_uint32_t)pid, 0);
    }
}

/* The follower's settings: the module's Redis and prefix, a check every
 * half MailGuardSyncInterval (so a hand edit is seen within it). */
static void mg_sync_follow_cfg(server_rec *s, mg_follow_cfg_t *fc)
{
    mg_follow_cfg_defaults(fc);
    mg_srv_store_cfg(s, &fc->store, MG_SYNC_CONNECT_MS, MG_SYNC_COMMAND_MS);
    fc->block_ms = MG_SYNC_WAIT_MS;
    fc->check_ms = (int)(mg_srv_sync_interval(s) * 1000 / 2);
    fc->retry_ms = (int)apr_time_as_msec(MG_SYNC_RETRY);
    mg_srv_prefix_floor(s, &fc->min_plen4, &fc->min_plen6);
}

/* The job's loop; returns the sync process's exit status. */
static int mg_sync_run(server_rec *s)
{
    mg_follow_cfg_t fc;
    mg_store_cfg_t cfg;
    mg_follow_t *fol = NULL;
    mg_mirror_t *mir = NULL;
    mg_store_t *cmd = NULL;
    char id[MG_STORE_IDLEN];
    uint64_t seq;
    apr_time_t next_write = 0;
    int code = 1, more = 0;

    mg_sync_follow_cfg(s, &fc);
    mg_srv_store_cfg(s, &cfg, MG_SYNC_CONNECT_MS, MG_SYNC_COMMAND_MS);
    mir = mg_mirror_new(s);
    cmd = mg_store_new(&cfg);
    fol = mir != NULL ? mg_follow_new(&fc, &mg_mirror_ops, mir) : NULL;
    if (mir == NULL || cmd == NULL || fol == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "MG0071: cannot set up the sync job's Redis connections");
        goto end;
    }
    if (mg_mirror_saved_position(s, id, &seq)) {
        /* The mirror was in step there when the previous sync process
         * left: follow on from it rather than read the whole set. */
        mg_follow_resume(fol, id, seq);
    }
    mg_flag_set(&mg_shm_stats()->sync_leader, (apr_uint32_t)getpid());
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MG0072: sync job running in pid %ld",
                 (long)getpid());

    while (!mg_stopping()) {
        /* no waiting for changes while there is something to write */
        int up = mg_follow_step(fol, more ? 0 : MG_SYNC_WAIT_MS) == 0;

        mg_mirror_account(mir, fol);
        /* What Redis should hold and does not (failures queued for it,
         * bans made here during an outage or lost by Redis) goes out a
         * piece per turn, between the follower's steps, so changes made
         * elsewhere keep arriving meanwhile. */
        more = 0;
        if (up && apr_time_now() >= next_write) {
            int wrote = 0;

            more = mg_mirror_write_back(mir, cmd, &wrote);
            /* Writing is the breaker's best probe: Redis can answer reads
             * (the follower is fine) and still refuse writes (maxmemory). */
            if (more < 0) {
                if (mg_store_error_kind(cmd) == MG_STORE_EREFUSED
                    || mg_store_error_kind(cmd) == MG_STORE_EDOWN) {
                    mg_breaker_report(s, 0, mg_store_error(cmd));
                }
                more = 0;
                next_write = apr_time_now() + MG_SYNC_RETRY;
            }
            else if (wrote) {
                mg_breaker_report(s, 1, NULL);
            }
        }
    }
    code = 0;
end:
    mg_sync_forget(getpid());
    mg_follow_free(fol);
    mg_mirror_free(mir);
    if (cmd != NULL) {
        mg_store_free(cmd);
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
        _exit(0); /* the parent died before the death signal was set */
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
        return; /* RUNNING, RESTART: the pconf cleanup stops it */
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
                     "in %d s",
                     (long)pid, mg_sync.delay);
    }
    else {
        /* The MPM hands over APR's exit code, which is the exit status or
         * the signal number: it cannot tell which. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, mg_sync.s,
                     "MG0074: the sync process %ld ended (exit status or signal %d): "
                     "starting another in %d s",
                     (long)pid, (int)status, mg_sync.delay);
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
            break; /* gone, or already reaped */
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

/*
 * A cold start (no mirror kept from a previous generation): let the job
 * read the set before the children serve anyone, so known bans hold from
 * the first request.  Bounded: it stops waiting when the job is in step,
 * when it reports Redis unreachable, or after MG_SYNC_START_WAIT (a million
 * bans take a few seconds).  A restart with a kept mirror does not wait.
 */
static void mg_sync_wait_first(server_rec *s)
{
    mg_stats_t *st = mg_shm_stats();
    const mg_shm_pos_t *pos = mg_shm_position();
    apr_time_t until = apr_time_now() + MG_SYNC_START_WAIT;
    apr_uint64_t errors0;

    if (st == NULL || pos == NULL || pos->valid || mg_bantable_count(mg_shm_bantable()) > 0) {
        return;
    }
    errors0 = mg_stat_get(&st->sync_errors);
    while (apr_time_now() < until && mg_sync.running) {
        /* (a job that died early is left to the MPM to reap and replace:
         * this wait just runs out) */
        if (mg_flag_get(&st->in_step) || mg_stat_get(&st->sync_errors) != errors0) {
            break;
        }
        apr_sleep(apr_time_from_msec(10));
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MG0078: first read of the ban set %s",
                 mg_flag_get(&st->in_step) ? "done before serving" : "still going: serving");
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
    if (mg_sync_fork() == APR_SUCCESS) {
        mg_sync_wait_first(s);
    }
    return APR_SUCCESS;
}
