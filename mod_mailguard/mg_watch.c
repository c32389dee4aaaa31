/*
 * Watch: classify a finished login request and record a failure.
 *
 * Which request decides:
 *  - the status is the final one, on the last request of the r->next
 *    chain (what %>s logs): an ErrorDocument or other internal redirect
 *    does not hide a 401;
 *  - the method, path, query string and per-dir configuration are those
 *    of the request that ran the login: the last of the chain, stepping
 *    back over ErrorDocument redirects (a request followed by one ended
 *    in that error itself).  So a mod_rewrite or CGI redirect into a
 *    guarded scope is judged by the scope's configuration, and an error
 *    page is never taken for the login.  The path is the decoded r->uri
 *    without PATH_INFO (after DirectoryIndex: the index file, because
 *    mod_dir rewrites it in place).
 *
 * The rules themselves are in core/mg_classify.c.  Nothing here runs for
 * a request that is not watched (engine off, no rule), and Redis is asked
 * only for a failure.
 */
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include "mg_watch.h"
#include "mg_shm.h"
#include "mg_redis_pool.h"
#include "mg_proxy.h"
#include "mg_config.h"
#include "mg_classify.h"

APLOG_USE_MODULE(mailguard);

/* A failure this quick comes from a dead socket, not a slow Redis. */
#define MG_STALE_MS 20

/* The request that ran the login: see the comment at the top. */
static const request_rec *mg_ran(const request_rec *r)
{
    while (r->next != NULL) {
        r = r->next;
    }
    while (r->prev != NULL && ap_is_HTTP_ERROR(r->prev->status)) {
        r = r->prev;
    }
    return r;
}

/* The method the application saw.  ap_die() turns the method of a request
 * it sends to an ErrorDocument into GET and keeps the original in
 * REQUEST_METHOD of its subprocess_env; failing that, the request line
 * says it. */
static const char *mg_ran_method(const request_rec *q, char *buf, apr_size_t size)
{
    const char *m;
    const char *sp;

    if (q->next == NULL) {
        return q->method;
    }
    m = apr_table_get(q->subprocess_env, "REQUEST_METHOD");
    if (m != NULL) {
        return m;
    }
    if (q->the_request != NULL && (sp = strchr(q->the_request, ' ')) != NULL
        && (apr_size_t)(sp - q->the_request) < size) {
        memcpy(buf, q->the_request, (apr_size_t)(sp - q->the_request));
        buf[sp - q->the_request] = '\0';
        return buf;
    }
    return q->method;
}

/* The script part of the path: r->uri without trailing path info, so
 * POST /src/redirect.php/x (which still runs redirect.php) is seen. */
static apr_size_t mg_script_len(const request_rec *r)
{
    apr_size_t ulen = strlen(r->uri);
    apr_size_t plen = r->path_info ? strlen(r->path_info) : 0;

    if (plen > 0 && plen <= ulen && strcmp(r->uri + ulen - plen, r->path_info) == 0) {
        return ulen - plen;
    }
    return ulen;
}

static mg_outcome_t mg_classify(const request_rec *q, const mg_dir_conf_t *d, int status)
{
    int watch = mg_dir_watch(d);
    const apr_array_header_t *rules = mg_dir_rules(d);
    mg_login_req_t rq;
    mg_outcome_t out = MG_OUTCOME_NONE;
    char mbuf[32];
    int i;

    rq.method = mg_ran_method(q, mbuf, sizeof(mbuf));
    rq.path = q->uri;
    rq.path_len = mg_script_len(q);
    rq.uri = q->uri;
    rq.query = q->args;
    rq.status = status;
    if (watch & MG_WATCH_ROUNDCUBE) {
        out = mg_classify_roundcube(&rq);
    }
    if (out == MG_OUTCOME_NONE && (watch & MG_WATCH_SQUIRRELMAIL)) {
        out = mg_classify_squirrelmail(&rq);
    }
    if (out != MG_OUTCOME_FAILURE && rules != NULL) {
        for (i = 0; i < rules->nelts; i++) {
            const mg_rule_t *rule = APR_ARRAY_IDX(rules, i, const mg_rule_t *);

            if (mg_classify_rule(rule->method, rule->re, rule->status, rule->nstatus, &rq)) {
                return MG_OUTCOME_FAILURE;
            }
        }
    }
    return out;
}

static void mg_log_ban(request_rec *r, const mg_addr_t *key, const char *jail, unsigned count,
                       apr_int64_t expiry)
{
    char addr[MG_ADDR_STRLEN];
    char until[32];

    mg_addr_format(key, addr, sizeof(addr));
    mg_time_format_utc(expiry, until, sizeof(until));
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                  "MG0050: Ban %s (jail %s, %u failures, until %s)", addr, jail, count, until);
}

/* This failure's identity: the server's random token, the process and a
 * counter.  Sent again (a retry, the queue), it is counted once. */
static void mg_failure_id(char id[MG_FAILURE_IDLEN])
{
    static apr_uint64_t seq;
    apr_uint64_t n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);

    apr_snprintf(id, MG_FAILURE_IDLEN,
                 "w%016" APR_UINT64_T_HEX_FMT "-%" APR_PID_T_FMT "-%" APR_UINT64_T_HEX_FMT,
                 mg_shm_token(), getpid(), n);
}

/* Redis could not take the failure now: queue it for the sync process to
 * send (exactly once, in its place), and, when Redis is gone rather than
 * slow, let the local window decide meanwhile.  Under the writer mutex,
 * no I/O inside.  A ban made here is mirrored at once and queued for
 * Redis. */
static void mg_record_later(request_rec *r, const mg_dir_conf_t *d, const mg_addr_t *key,
                            const mg_policy_t *pol, apr_time_t now, const char *id, int local)
{
    mg_stats_t *stats = mg_shm_stats();
    mg_record_result_t res;
    mg_pending_failure_t pf;
    const char *jail = mg_dir_jail(d);
    int rc = 0, full = 0, lost = 0;

    memset(&res, 0, sizeof(res));
    memset(&pf, 0, sizeof(pf));
    pf.key = *key;
    pf.time_ms = (int64_t)apr_time_as_msec(now);
    pf.policy = *pol;
    apr_cpystrn(pf.jail, jail, sizeof(pf.jail));
    apr_cpystrn(pf.id, id, sizeof(pf.id));
    if (mg_shm_lock(r->server) != APR_SUCCESS) {
        return;
    }
    if (mg_srv_redis_enabled(r->server)) {
        lost = mg_fqueue_push(mg_shm_fqueue(), &pf);
    }
    if (local) {
        rc = mg_localwin_record(mg_shm_localwin(), jail, key, (int64_t)apr_time_sec(now), pol,
                                &res);
        if (rc == 0 && res.banned) {
            full = mg_bantable_put(mg_shm_bantable(), key, res.expiry) < 0;
            if (mg_srv_redis_enabled(r->server)) {
                mg_localwin_queue_ban(mg_shm_localwin(), key, res.expiry, jail);
            }
        }
    }
    mg_shm_unlock(r->server);
    if (lost) {
        mg_stat_inc(&stats->fail_dropped);
    }
    if (mg_srv_redis_enabled(r->server)) {
        mg_stat_inc(&stats->fail_queued);
    }
    if (!local) {
        return;
    }
    if (rc != 0) {
        mg_stat_inc(&stats->fail_ignored);
        return;
    }
    mg_stat_inc(&stats->fail_local);
    if (res.banned) {
        mg_stat_inc(&stats->bans_made);
        if (full) {
            mg_stat_inc(&stats->not_mirrored);
        }
        mg_log_ban(r, key, jail, res.count, res.expiry);
    }
}

/* Counted in Redis: remembered while it can count, so that should Redis
 * lose its data the sync job sends it again (mg_mirror.c). */
static void mg_remember(request_rec *r, const mg_addr_t *key, const mg_policy_t *pol,
                        const char *jail, apr_time_t now, const char *id)
{
    mg_pending_failure_t pf;

    memset(&pf, 0, sizeof(pf));
    pf.key = *key;
    pf.time_ms = (int64_t)apr_time_as_msec(now);
    pf.policy = *pol;
    apr_cpystrn(pf.jail, jail, sizeof(pf.jail));
    apr_cpystrn(pf.id, id, sizeof(pf.id));
    if (mg_shm_lock(r->server) == APR_SUCCESS) {
        mg_fqueue_push(mg_shm_recent(), &pf);
        mg_shm_unlock(r->server);
    }
}

static void mg_record_failure(request_rec *r, const mg_dir_conf_t *d)
{
    mg_stats_t *stats = mg_shm_stats();
    mg_addr_t client, key;
    mg_policy_t pol;
    mg_record_result_t res;
    const char *why = NULL;
    const char *jail = mg_dir_jail(d);
    apr_time_t now = apr_time_now();
    char id[MG_FAILURE_IDLEN];
    mg_store_t *st;
    int rc = -1, slow = 0;

    mg_stat_inc(&stats->fail_seen);
    if (mg_proxy_unattributable(r)) {
        mg_stat_inc(&stats->fail_unattributable);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "MG0054: failed login through proxy %s not counted: no usable "
                      "client address in its forwarding header",
                      r->useragent_ip);
        return;
    }
    if (r->useragent_ip == NULL || mg_addr_parse(r->useragent_ip, &client, &why) != 0) {
        mg_stat_inc(&stats->fail_ignored);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "MG0051: failed login from an unparsable address ignored (%s)",
                      why ? why : "no address");
        return;
    }
    if (mg_cidrset_contains(mg_dir_ignore(d), &client)) {
        mg_stat_inc(&stats->fail_ignored);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "MG0052: failed login from %s not counted (MailGuardIgnoreIP)",
                      r->useragent_ip);
        return;
    }
    mg_addr_ban_key(&client, mg_srv_v6prefix(r->server), &key);
    mg_dir_policy(d, &pol);
    memset(&res, 0, sizeof(res));
    mg_failure_id(id);

    st = mg_redis_checkout(r->server);
    if (st != NULL) {
        int was_connected = mg_store_connected(st);

        rc = mg_store_record_failure(st, jail, &key, (int64_t)apr_time_as_msec(now), id, &pol,
                                     &res);
        /* A pooled socket left over from before a Redis restart fails at
         * once (reset or EOF, the script never ran): one fresh try, so a
         * restart is not mistaken for an outage. */
        if (rc != 0 && was_connected && mg_store_error_kind(st) == MG_STORE_EDOWN
            && apr_time_now() - now < apr_time_from_msec(MG_STALE_MS)) {
            rc = mg_store_record_failure(st, jail, &key, (int64_t)apr_time_as_msec(now), id,
                                         &pol, &res);
        }
        slow = rc != 0 && mg_store_error_kind(st) == MG_STORE_ETIMEOUT;
        mg_redis_checkin(r->server, st, rc);
    }
    if (rc != 0) {
        /* Slow (the call may still run): only the queue, whose resend is a
         * duplicate if it did.  Gone: the local window decides too. */
        mg_record_later(r, d, &key, &pol, now, id, !slow || mg_breaker_open());
        return;
    }
    if (res.duplicate) {
        /* the first try ran after all; a ban it made is reported below */
        mg_stat_inc(&stats->fail_duplicate);
        if (!res.banned) {
            return;
        }
    }
    else {
        mg_stat_inc(&stats->fail_redis);
        mg_remember(r, &key, &pol, jail, now, id);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MG0053: failed login %u of %u (jail %s)",
                  res.count, pol.maxretry, jail);
    if (res.banned) {
        /* Every process of this server denies from now on, before the
         * ban's message even comes back from Redis. */
        mg_shm_put_ban(r->server, &key, res.expiry);
        mg_stat_inc(&stats->bans_made);
        mg_log_ban(r, &key, jail, res.count, res.expiry);
    }
}

/* A request that may be a login: classify it and act on the outcome.
 * Out of line, so the hook's early exits need no stack frame. */
static __attribute__((noinline)) int mg_watch_finished(request_rec *r, const request_rec *q,
                                                       const mg_dir_conf_t *d)
{
    const request_rec *last = q;
    mg_outcome_t out;

    while (last->next != NULL) {
        last = last->next;
    }
    out = mg_classify(q, d, last->status);
    if (out == MG_OUTCOME_SUCCESS) {
        mg_stat_inc(&mg_shm_stats()->successes);
    }
    else if (out == MG_OUTCOME_FAILURE) {
        mg_record_failure(r, d);
    }
    return OK;
}

int mg_watch_log_transaction(request_rec *r)
{
    const request_rec *q = r->next == NULL ? r : mg_ran(r);
    const mg_dir_conf_t *d = mg_dir_conf(q->per_dir_config);

    /* Cheapest tests first: the engine, then whether anything is watched
     * in the scope of the request that ran.  Every request comes here:
     * the plain field test (no rule, MailGuardWatch unset or none, whose
     * default is none) spares the getter's call on the common path. */
    if (!mg_dir_engine(d) || (d->rules == NULL && d->watch <= 0) || !mg_dir_watching(d)) {
        return DECLINED;
    }
    if (r->main != NULL || mg_shm_stats() == NULL) {
        return DECLINED;
    }
    return mg_watch_finished(r, q, d);
}
