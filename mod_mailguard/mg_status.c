/*
 * SetHandler mailguard-status: the module's counters as plain
 * "Key: value" lines (like mod_status's ?auto), for monitoring scripts.
 * Reads shared memory without locks; the numbers are a snapshot.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "mod_mailguard.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

static const char *mg_redis_state(const server_rec *s, const mg_stats_t *st)
{
    if (!mg_srv_redis_enabled(s)) {
        return "none";
    }
    return __atomic_load_n(&st->redis_down, __ATOMIC_RELAXED) ? "down" : "up";
}

static int mg_status_page(request_rec *r)
{
    const mg_stats_t *st;
    mg_bantable_t *bt;
    mg_localwin_t *lw;
    const mg_store_url_t *url;
    char where[512];
    char when[32];
    apr_int64_t last;
    apr_uint32_t pending = 0;

    if (r->method_number != M_GET) {
        r->allowed = (AP_METHOD_BIT << M_GET);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    st = mg_shm_stats();
    bt = mg_shm_bantable();
    lw = mg_shm_localwin();
    if (st == NULL || bt == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* Reading the queue length is a plain load of a counter; no lock. */
    pending = mg_localwin_pending(lw);
    url = mg_srv_redis_url(r->server);
    if (url != NULL) {
        mg_store_url_redacted(url, where, sizeof(where));
    }
    else {
        apr_cpystrn(where, "none", sizeof(where));
    }
    last = __atomic_load_n(&st->last_sync, __ATOMIC_RELAXED);

    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    ap_rprintf(r, "Redis: %s\n", where);
    ap_rprintf(r, "RedisState: %s\n", mg_redis_state(r->server, st));
    ap_rprintf(r, "BansMirrored: %u\n", (unsigned)mg_bantable_count(bt));
    ap_rprintf(r, "BanTableSize: %u\n", (unsigned)mg_bantable_capacity(bt));
    ap_rprintf(r, "Denied: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->denied));
    ap_rprintf(r, "FailuresSeen: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_seen));
    ap_rprintf(r, "FailuresRecorded: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_redis));
    ap_rprintf(r, "FailuresLocal: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_local));
    ap_rprintf(r, "FailuresIgnored: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_ignored));
    ap_rprintf(r, "FailuresUnattributable: %" APR_UINT64_T_FMT "\n",
               mg_stat_get(&st->fail_unattributable));
    ap_rprintf(r, "FailuresQueued: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_queued));
    ap_rprintf(r, "FailuresDuplicate: %" APR_UINT64_T_FMT "\n",
               mg_stat_get(&st->fail_duplicate));
    ap_rprintf(r, "FailuresDropped: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->fail_dropped));
    ap_rprintf(r, "QueuedFailures: %u\n", (unsigned)mg_fqueue_count(mg_shm_fqueue()));
    ap_rprintf(r, "Successes: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->successes));
    ap_rprintf(r, "BansMade: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->bans_made));
    ap_rprintf(r, "PendingBans: %u\n", (unsigned)pending);
    ap_rprintf(r, "NotMirrored: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->not_mirrored));
    ap_rprintf(r, "LiveInRedis: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->live_in_redis));
    ap_rprintf(r, "BansEvicted: %" APR_UINT64_T_FMT "\n", mg_bantable_evicted(bt));
    ap_rprintf(r, "InStep: %u\n", (unsigned)__atomic_load_n(&st->in_step, __ATOMIC_RELAXED));
    ap_rprintf(r, "EventsApplied: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->events));
    ap_rprintf(r, "ChangesRefused: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->refused));
    ap_rprintf(r, "Syncs: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->syncs));
    ap_rprintf(r, "SyncErrors: %" APR_UINT64_T_FMT "\n", mg_stat_get(&st->sync_errors));
    if (last > 0) {
        ap_rprintf(r, "LastSync: %s\n", mg_format_time(last, when, sizeof(when)));
        ap_rprintf(r, "LastSyncAge: %" APR_INT64_T_FMT "\n",
                   (apr_int64_t)apr_time_sec(apr_time_now()) - last);
    }
    else {
        ap_rprintf(r, "LastSync: never\n");
    }
    ap_rprintf(r, "SyncPid: %u\n",
               (unsigned)__atomic_load_n(&st->sync_leader, __ATOMIC_RELAXED));
    return OK;
}

/* This hook runs for every request: all but SetHandler mailguard-status
 * leave before the page's frame, clock read and string compare. */
int mg_status_handler(request_rec *r)
{
    if (r->handler == NULL || r->handler[0] != MG_STATUS_HANDLER[0]
        || strcmp(r->handler, MG_STATUS_HANDLER) != 0) {
        return DECLINED;
    }
    return mg_status_page(r);
}
