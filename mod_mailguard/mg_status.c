/*
 * SetHandler mailguard-status: the module's counters and states, on two
 * pages drawn from one table (MG_STATUS_FIELDS) and one snapshot, so they
 * cannot disagree on what they report:
 *   - plain "Key: value" lines (like mod_status's ?auto), for monitoring
 *     scripts: the default, or ?format=plain;
 *   - ?format=prometheus: Prometheus's text exposition format (0.0.4),
 *     families "mailguard_...", counters ending in _total, # HELP and
 *     # TYPE before every family.
 * The numbers are those of this httpd server (every virtual host and
 * every jail together: the shared memory keeps no count per jail), so no
 * sample carries a jail label.  Reads shared memory without locks; each
 * number is a snapshot of its own.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "mg_status.h"
#include "mg_redis_pool.h"
#include "mg_shm.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

#define MG_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum mg_mtype {
    MG_COUNTER,
    MG_GAUGE
} mg_mtype_t;

/* A field's value in the snapshot.  Zero is "absent": no line on either
 * page. */
typedef enum mg_vkind {
    MG_V_ABSENT = 0,
    MG_V_UINT, /* a number, the same on both pages */
    MG_V_INT,
    MG_V_INFO,  /* text; Prometheus: 1, with the text as the label's value */
    MG_V_STATE, /* one of states[]; Prometheus: 1 for it and 0 for the others */
    MG_V_TIME   /* Unix seconds, 0 = never; plain: UTC time or "never" */
} mg_vkind_t;

typedef struct mg_val {
    mg_vkind_t kind;
    apr_uint64_t u;
    apr_int64_t i;
    const char *text;
    const char *label;
    const char *const *states;
} mg_val_t;

static const char *const mg_redis_states[] = { "up", "down", "none", NULL };

static mg_val_t mg_v_uint(apr_uint64_t u)
{
    mg_val_t v = { MG_V_UINT, u, 0, NULL, NULL, NULL };
    return v;
}

static mg_val_t mg_v_int(apr_int64_t i)
{
    mg_val_t v = { MG_V_INT, 0, i, NULL, NULL, NULL };
    return v;
}

static mg_val_t mg_v_info(const char *label, const char *text)
{
    mg_val_t v = { MG_V_INFO, 0, 0, text, label, NULL };
    return v;
}

static mg_val_t mg_v_state(const char *label, const char *text, const char *const *states)
{
    mg_val_t v = { MG_V_STATE, 0, 0, text, label, states };
    return v;
}

static mg_val_t mg_v_time(apr_int64_t secs)
{
    mg_val_t v = { MG_V_TIME, 0, secs, NULL, NULL, NULL };
    return v;
}

static mg_val_t mg_v_absent(void)
{
    mg_val_t v = { MG_V_ABSENT, 0, 0, NULL, NULL, NULL };
    return v;
}

/*
 * Every field, in the order of the plain page (whose keys are a contract:
 * scripts read them):
 *     X(plain key, Prometheus family, type, value, help)
 * The value is an expression over the snapshot's locals in
 * mg_status_snapshot(): st (the counters), bt (the mirror), pending,
 * where (the Redis URL, password as ***), redis_state, last (the sync
 * job's last check, Unix seconds, 0 = never) and now.
 */
#define MG_STATUS_FIELDS(X)                                                                   \
    X("Redis", "mailguard_redis_info", MG_GAUGE, mg_v_info("url", where),                     \
      "The Redis server this httpd uses (password shown as ***); always 1.")                  \
    X("RedisState", "mailguard_redis_state", MG_GAUGE,                                        \
      mg_v_state("state", redis_state, mg_redis_states),                                      \
      "1 for the state of Redis as the circuit breaker sees it: up, down (unreachable: "      \
      "failures are counted locally), none (MailGuardRedis none).")                           \
    X("BansMirrored", "mailguard_bans_mirrored", MG_GAUGE, mg_v_uint(mg_bantable_count(bt)),  \
      "Bans held in this server's shared-memory mirror.")                                     \
    X("BanTableSize", "mailguard_ban_table_size", MG_GAUGE,                                   \
      mg_v_uint(mg_bantable_capacity(bt)), "Capacity of the mirror (MailGuardBanTableSize).") \
    X("Denied", "mailguard_denied_total", MG_COUNTER, mg_v_uint(mg_stat_get(&st->denied)),    \
      "Requests refused because the client is banned (this server, every virtual host).")     \
    X("FailuresSeen", "mailguard_failures_seen_total", MG_COUNTER,                            \
      mg_v_uint(mg_stat_get(&st->fail_seen)),                                                 \
      "Failed logins recognised (this server, every jail).")                                  \
    X("FailuresRecorded", "mailguard_failures_recorded_total", MG_COUNTER,                    \
      mg_v_uint(mg_stat_get(&st->fail_redis)), "Failed logins recorded in Redis.")            \
    X("FailuresLocal", "mailguard_failures_local_total", MG_COUNTER,                          \
      mg_v_uint(mg_stat_get(&st->fail_local)),                                                \
      "Failed logins counted in the local windows while Redis was unavailable.")              \
    X("FailuresIgnored", "mailguard_failures_ignored_total", MG_COUNTER,                      \
      mg_v_uint(mg_stat_get(&st->fail_ignored)),                                              \
      "Failed logins not counted: address in MailGuardIgnoreIP, or not usable.")              \
    X("FailuresUnattributable", "mailguard_failures_unattributable_total", MG_COUNTER,        \
      mg_v_uint(mg_stat_get(&st->fail_unattributable)),                                       \
      "Failed logins not counted: a trusted proxy named no usable client address.")           \
    X("FailuresQueued", "mailguard_failures_queued_total", MG_COUNTER,                        \
      mg_v_uint(mg_stat_get(&st->fail_queued)),                                               \
      "Failed logins queued for Redis (a call that timed out, an outage) and sent later.")    \
    X("FailuresDuplicate", "mailguard_failures_duplicate_total", MG_COUNTER,                  \
      mg_v_uint(mg_stat_get(&st->fail_duplicate)),                                            \
      "Failed logins Redis had already counted (sent again after a timeout): not twice.")     \
    X("FailuresDropped", "mailguard_failures_dropped_total", MG_COUNTER,                      \
      mg_v_uint(mg_stat_get(&st->fail_dropped)),                                              \
      "Queued failed logins lost: the queue was full, or they were older than findtime.")     \
    X("QueuedFailures", "mailguard_queued_failures", MG_GAUGE,                                \
      mg_v_uint(mg_fqueue_count(mg_shm_fqueue())),                                            \
      "Failed logins waiting in the queue for Redis.")                                        \
    X("Successes", "mailguard_login_successes_total", MG_COUNTER,                             \
      mg_v_uint(mg_stat_get(&st->successes)), "Successful logins recognised.")                \
    X("BansMade", "mailguard_bans_made_total", MG_COUNTER,                                    \
      mg_v_uint(mg_stat_get(&st->bans_made)),                                                 \
      "Bans this server made (in Redis, or locally while Redis was unavailable).")            \
    X("PendingBans", "mailguard_pending_bans", MG_GAUGE, mg_v_uint(pending),                  \
      "Bans made locally that wait to be written to Redis.")                                  \
    X("NotMirrored", "mailguard_bans_not_mirrored", MG_GAUGE,                                 \
      mg_v_uint(mg_stat_get(&st->not_mirrored)),                                              \
      "Live bans in Redis the full mirror does not hold.")                                    \
    X("LiveInRedis", "mailguard_bans_live_in_redis", MG_GAUGE,                                \
      mg_v_uint(mg_stat_get(&st->live_in_redis)),                                             \
      "Live bans in Redis at the sync job's last check.")                                     \
    X("BansEvicted", "mailguard_bans_evicted_total", MG_COUNTER,                              \
      mg_v_uint(mg_bantable_evicted(bt)),                                                     \
      "Bans dropped from the full mirror to make room for longer ones.")                      \
    X("InStep", "mailguard_in_step", MG_GAUGE, mg_v_uint(mg_flag_get(&st->in_step)),          \
      "1 while the mirror follows Redis's change log, 0 during a snapshot or an outage.")     \
    X("EventsApplied", "mailguard_changes_applied_total", MG_COUNTER,                         \
      mg_v_uint(mg_stat_get(&st->events)),                                                    \
      "Changes from the change log applied to the mirror.")                                   \
    X("ChangesRefused", "mailguard_changes_refused_total", MG_COUNTER,                        \
      mg_v_uint(mg_stat_get(&st->refused)),                                                   \
      "Changes or members from Redis refused (not an address, or a prefix too wide).")        \
    X("Syncs", "mailguard_snapshots_total", MG_COUNTER, mg_v_uint(mg_stat_get(&st->syncs)),   \
      "Whole-set reads of the ban set committed.")                                            \
    X("SyncErrors", "mailguard_sync_errors_total", MG_COUNTER,                                \
      mg_v_uint(mg_stat_get(&st->sync_errors)), "Redis calls of the sync job that failed.")   \
    X("LastSync", "mailguard_last_sync_timestamp_seconds", MG_GAUGE, mg_v_time(last),         \
      "Unix time of the sync job's last check of the change log (0: never).")                 \
    X("LastSyncAge", "mailguard_last_sync_age_seconds", MG_GAUGE,                             \
      last > 0 ? mg_v_int(now - last) : mg_v_absent(),                                        \
      "Seconds since the sync job's last check of the change log (absent: never).")           \
    X("SyncPid", "mailguard_sync_pid", MG_GAUGE, mg_v_uint(mg_flag_get(&st->sync_leader)),    \
      "Process id of the sync job (0: none running).")

typedef struct mg_field {
    const char *key;    /* plain page */
    const char *family; /* Prometheus */
    mg_mtype_t type;
    const char *help;
} mg_field_t;

#define MG_FIELD_ROW(key, family, type, value, help) { key, family, type, help },
static const mg_field_t mg_fields[] = { MG_STATUS_FIELDS(MG_FIELD_ROW) };
#undef MG_FIELD_ROW

#define MG_NFIELDS (sizeof(mg_fields) / sizeof(mg_fields[0]))

static const char *mg_redis_state(const server_rec *s)
{
    if (!mg_srv_redis_enabled(s)) {
        return "none";
    }
    return mg_breaker_open() ? "down" : "up";
}

/* Every field's value, in table order.  where must outlive v. */
static void mg_status_snapshot(request_rec *r, const mg_stats_t *st, mg_bantable_t *bt,
                               mg_localwin_t *lw, char *where, apr_size_t wsize,
                               mg_val_t v[MG_NFIELDS])
{
    const mg_store_url_t *url = mg_srv_redis_url(r->server);
    const char *redis_state = mg_redis_state(r->server);
    /* the queue length is a plain load of a counter; no lock */
    apr_uint32_t pending = mg_localwin_pending(lw);
    apr_int64_t last = mg_time_get(&st->last_sync);
    apr_int64_t now = (apr_int64_t)apr_time_sec(apr_time_now());
    apr_size_t i = 0;

    if (url != NULL) {
        mg_store_url_redacted(url, where, wsize);
    }
    else {
        apr_cpystrn(where, "none", wsize);
    }
#define MG_FIELD_VALUE(key, family, type, value, help) v[i++] = (value);
    MG_STATUS_FIELDS(MG_FIELD_VALUE)
#undef MG_FIELD_VALUE
}

/* ---- the plain page ---- */

static void mg_plain_page(request_rec *r, const mg_val_t *v)
{
    char when[32];

    for (apr_size_t i = 0; i < MG_NFIELDS; i++) {
        const char *key = mg_fields[i].key;
        switch (v[i].kind) {
        case MG_V_ABSENT:
            break;
        case MG_V_UINT:
            ap_rprintf(r, "%s: %" APR_UINT64_T_FMT "\n", key, v[i].u);
            break;
        case MG_V_INT:
            ap_rprintf(r, "%s: %" APR_INT64_T_FMT "\n", key, v[i].i);
            break;
        case MG_V_INFO:
        case MG_V_STATE:
            ap_rprintf(r, "%s: %s\n", key, v[i].text);
            break;
        case MG_V_TIME:
            ap_rprintf(r, "%s: %s\n", key,
                       v[i].i > 0 ? mg_time_format_utc(v[i].i, when, sizeof(when)) : "never");
            break;
        }
    }
}

/* ---- the Prometheus page ---- */

/* A label value as the text format wants it: \ " and newline escaped. */
static const char *mg_prom_label(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    char *out, *o;

    for (const char *c = s; *c; c++) {
        n += (*c == '\\' || *c == '"' || *c == '\n') ? 2 : 1;
    }
    o = out = apr_palloc(p, n + 1);
    for (const char *c = s; *c; c++) {
        if (*c == '\\' || *c == '"' || *c == '\n') {
            *o++ = '\\';
            *o++ = *c == '\n' ? 'n' : *c;
        }
        else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

static void mg_prom_samples(request_rec *r, const char *name, const mg_val_t *v)
{
    switch (v->kind) {
    case MG_V_ABSENT:
        break;
    case MG_V_UINT:
        ap_rprintf(r, "%s %" APR_UINT64_T_FMT "\n", name, v->u);
        break;
    case MG_V_INT:
    case MG_V_TIME:
        ap_rprintf(r, "%s %" APR_INT64_T_FMT "\n", name, v->i);
        break;
    case MG_V_INFO:
        ap_rprintf(r, "%s{%s=\"%s\"} 1\n", name, v->label, mg_prom_label(r->pool, v->text));
        break;
    case MG_V_STATE:
        /* every state, so a graph or an alert never sees a series vanish */
        for (const char *const *s = v->states; *s != NULL; s++) {
            ap_rprintf(r, "%s{%s=\"%s\"} %d\n", name, v->label, *s, strcmp(*s, v->text) == 0);
        }
        break;
    }
}

static void mg_prom_page(request_rec *r, const mg_val_t *v)
{
    for (apr_size_t i = 0; i < MG_NFIELDS; i++) {
        const mg_field_t *f = &mg_fields[i];
        if (v[i].kind == MG_V_ABSENT) {
            continue;
        }
        ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", f->family, f->help, f->family,
                   f->type == MG_COUNTER ? "counter" : "gauge");
        mg_prom_samples(r, f->family, &v[i]);
    }
}

/* ---- the handler ---- */

/*
 * Which page the query asks for: 0 plain, 1 Prometheus, -1 an unknown
 * format (answered 400, so a typo in a scrape config shows at once).  Any
 * other parameter is left alone, as mod_status's ?auto and cache-busting
 * parameters are.
 */
static int mg_status_format(const char *args)
{
    int prom = 0;

    while (args != NULL && *args != '\0') {
        apr_size_t len = strcspn(args, "&;");
        if (len >= 7 && strncmp(args, "format=", 7) == 0) {
            const char *val = args + 7;
            apr_size_t vlen = len - 7;
            if (vlen == 10 && strncmp(val, "prometheus", 10) == 0) {
                prom = 1;
            }
            else if (vlen == 5 && strncmp(val, "plain", 5) == 0) {
                prom = 0;
            }
            else {
                return -1;
            }
        }
        args += len;
        if (*args != '\0') {
            args++;
        }
    }
    return prom;
}

static int mg_status_page(request_rec *r)
{
    const mg_stats_t *st;
    mg_bantable_t *bt;
    char where[512];
    mg_val_t v[MG_NFIELDS];
    int prom;

    if (r->method_number != M_GET) {
        r->allowed = (AP_METHOD_BIT << M_GET);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    prom = mg_status_format(r->args);
    if (prom < 0) {
        return HTTP_BAD_REQUEST;
    }
    st = mg_shm_stats();
    bt = mg_shm_bantable();
    if (st == NULL || bt == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    mg_status_snapshot(r, st, bt, mg_shm_localwin(), where, sizeof(where), v);
    ap_set_content_type(r, prom ? MG_PROM_CONTENT_TYPE : "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    if (prom) {
        mg_prom_page(r, v);
    }
    else {
        mg_plain_page(r, v);
    }
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
