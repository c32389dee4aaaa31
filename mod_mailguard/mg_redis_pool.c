/*
 * Per-process Redis connections for request threads, and the circuit
 * breaker every process shares.
 *
 * Connections are made lazily, in the child, by the first thread that
 * needs one (never in the parent: a socket opened before fork would be
 * shared by every child).  At most one per worker thread exists, so a
 * thread never waits for another's connection; when all are busy the
 * caller counts locally instead of queueing.
 *
 * The breaker lives in shared memory: once any process sees Redis fail,
 * every request goes straight to the local windows until the retry time,
 * then exactly one caller probes (a compare-and-swap on the retry time
 * elects it).  The state change is also a compare-and-swap, so across all
 * processes exactly one line is logged when Redis goes away and one when
 * it returns.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_thread_mutex.h"

#include "mg_redis_pool.h"
#include "mg_shm.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

/* Request threads wait at most this long for Redis; the response is
 * already sent, but a keep-alive connection's next request waits. */
#define MG_POOL_CONNECT_MS 100
#define MG_POOL_COMMAND_MS 100
/* While Redis is down, one probe per this interval. */
#define MG_BREAKER_RETRY apr_time_from_msec(1000)
/* Timeouts alone open the breaker only when this many come in a row
 * within MG_SLOW_WINDOW: one slow call (Redis busy with someone else's
 * long command, a CPU-starved box) is not an outage, a Redis that stopped
 * answering is. */
#define MG_SLOW_STREAK 3
#define MG_SLOW_WINDOW apr_time_from_msec(2000)

typedef struct mg_slot {
    mg_store_t *st;
    int busy;
} mg_slot_t;

static struct {
    apr_thread_mutex_t *lock;
    mg_slot_t *slots;
    int size;
} mg_pool;

/* Runs when the child's pool goes.  Under prefork that can be inside
 * the SIGTERM handler (just_die), on top of a request that is half-way
 * through a Redis call: a store still checked out is left to the exit
 * rather than freed under its user's feet (its buffers may be the very
 * ones malloc was working on), and no lock is taken (its holder may be
 * the interrupted code).  The pool is closed first so nothing checks a
 * store out of it again. */
static apr_status_t mg_pool_cleanup(void *data)
{
    int i, n = mg_pool.size;

    (void)data;
    mg_pool.lock = NULL;
    mg_pool.size = 0;
    for (i = 0; i < n; i++) {
        if (mg_pool.slots[i].st != NULL && !mg_pool.slots[i].busy) {
            mg_store_free(mg_pool.slots[i].st);
            mg_pool.slots[i].st = NULL;
        }
    }
    return APR_SUCCESS;
}

void mg_redis_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 1;
    apr_status_t rv;

    memset(&mg_pool, 0, sizeof(mg_pool));
    if (!mg_srv_redis_enabled(s)) {
        return;
    }
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS || threads < 1) {
        threads = 1;
    }
    rv = apr_thread_mutex_create(&mg_pool.lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "MG0030: cannot create the Redis pool lock: failures are "
                     "counted locally in this process");
        mg_pool.lock = NULL;
        return;
    }
    mg_pool.slots = apr_pcalloc(pchild, sizeof(mg_slot_t) * (apr_size_t)threads);
    mg_pool.size = threads;
    apr_pool_cleanup_register(pchild, NULL, mg_pool_cleanup, apr_pool_cleanup_null);
}

/* May a call be tried now?  Only checkout asks. */
static int mg_breaker_allow(apr_time_t now)
{
    mg_stats_t *st = mg_shm_stats();
    apr_int64_t at;

    if (st == NULL || !mg_flag_get(&st->redis_down)) {
        return 1;
    }
    at = mg_time_get(&st->redis_retry_at);
    if (now < at) {
        return 0;
    }
    /* Half-open: the one caller that moves the retry time probes. */
    return mg_time_swap(&st->redis_retry_at, at, (apr_int64_t)(now + MG_BREAKER_RETRY));
}

mg_store_t *mg_redis_checkout(server_rec *s)
{
    mg_store_t *st = NULL;
    mg_slot_t *empty = NULL;
    int i;

    if (mg_pool.lock == NULL || !mg_breaker_allow(apr_time_now())) {
        return NULL;
    }
    if (apr_thread_mutex_lock(mg_pool.lock) != APR_SUCCESS) {
        return NULL;
    }
    for (i = 0; i < mg_pool.size; i++) {
        mg_slot_t *sl = &mg_pool.slots[i];
        if (sl->busy) {
            continue;
        }
        if (sl->st != NULL) {
            sl->busy = 1;
            st = sl->st;
            goto end;
        }
        if (empty == NULL) {
            empty = sl;
        }
    }
    if (empty != NULL) {
        mg_store_cfg_t cfg;
        /* No socket yet: the store connects on its first call. */
        mg_srv_store_cfg(s, &cfg, MG_POOL_CONNECT_MS, MG_POOL_COMMAND_MS);
        empty->st = mg_store_new(&cfg);
        if (empty->st != NULL) {
            empty->busy = 1;
            st = empty->st;
        }
    }
end:
    apr_thread_mutex_unlock(mg_pool.lock);
    return st;
}

/* A call timed out: an outage only if the streak says so. */
static void mg_breaker_slow(server_rec *s, const char *why)
{
    mg_stats_t *st = mg_shm_stats();
    apr_time_t now = apr_time_now();
    apr_int64_t since;
    apr_uint32_t streak;

    if (st == NULL) {
        return;
    }
    since = mg_time_get(&st->slow_since);
    if (since == 0 || now - since > MG_SLOW_WINDOW) {
        /* a new streak (races only blur which call starts it) */
        mg_time_set(&st->slow_since, (apr_int64_t)now);
        mg_flag_set(&st->slow_streak, 1);
        return;
    }
    streak = mg_flag_add(&st->slow_streak, 1);
    if (streak >= MG_SLOW_STREAK) {
        mg_breaker_report(s, 0, why);
    }
}

void mg_redis_checkin(server_rec *s, mg_store_t *st, int rc)
{
    mg_stats_t *stats = mg_shm_stats();
    int i;

    if (st == NULL) {
        return;
    }
    /* The store dropped its connection on an error; it reconnects on the
     * next call, so it can go back to the pool either way. */
    if (rc == 0) {
        if (stats != NULL && mg_flag_get(&stats->slow_streak) != 0) {
            mg_flag_set(&stats->slow_streak, 0);
            mg_time_set(&stats->slow_since, 0);
        }
        mg_breaker_report(s, 1, NULL);
    }
    else if (mg_store_error_kind(st) == MG_STORE_ETIMEOUT) {
        mg_breaker_slow(s, mg_store_error(st));
    }
    else if (mg_store_error_kind(st) != MG_STORE_EOTHER) {
        /* gone (refused, reset, closed) or refusing (OOM, READONLY,
         * NOAUTH, WRONGPASS): no point in the next call trying */
        mg_breaker_report(s, 0, mg_store_error(st));
    }
    if (mg_pool.lock == NULL || apr_thread_mutex_lock(mg_pool.lock) != APR_SUCCESS) {
        return; /* the pool is closed: the exit takes the store */
    }
    for (i = 0; i < mg_pool.size; i++) {
        if (mg_pool.slots[i].st == st) {
            mg_pool.slots[i].busy = 0;
            break;
        }
    }
    apr_thread_mutex_unlock(mg_pool.lock);
}

int mg_breaker_open(void)
{
    const mg_stats_t *st = mg_shm_stats();

    return st != NULL && mg_flag_get(&st->redis_down) != 0;
}

void mg_breaker_report(server_rec *s, int ok, const char *why)
{
    mg_stats_t *st = mg_shm_stats();
    const mg_store_url_t *url = mg_srv_redis_url(s);
    char where[512];

    if (st == NULL || url == NULL) {
        return;
    }
    if (ok) {
        if (mg_flag_get(&st->redis_down) && mg_flag_swap(&st->redis_down, 1, 0)) {
            mg_store_url_redacted(url, where, sizeof(where));
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         "MG0031: Redis at %s is reachable again: failures are recorded "
                         "there and bans made meanwhile are written back",
                         where);
        }
        return;
    }
    mg_time_set(&st->redis_retry_at, (apr_int64_t)(apr_time_now() + MG_BREAKER_RETRY));
    if (mg_flag_swap(&st->redis_down, 0, 1)) {
        mg_store_url_redacted(url, where, sizeof(where));
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "MG0032: Redis at %s is unreachable (%s): failures are counted "
                     "locally, known bans stay enforced",
                     where, why ? why : "error");
    }
}
