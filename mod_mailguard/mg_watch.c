/*
 * Watch: classify a finished login request and record a failure.
 *
 * Which request decides:
 *  - the status is the final one, on the last request of the r->next
 *    chain (what %>s logs): an ErrorDocument or other internal redirect
 *    does not hide a 401;
 *  - the method, URI, query string and per-dir configuration are those of
 *    the request the client sent (the head of the chain), because that
 *    request is the login attempt; an error page it was redirected to is
 *    not.  Its r->uri is the decoded path as httpd mapped it: for a
 *    directory served by DirectoryIndex that is the index file
 *    (/webmail/ -> /webmail/index.php), because mod_dir rewrites it in
 *    place.  MailGuardFailure regexes match that path.
 *
 * Nothing here runs for a request that is not a candidate login (engine
 * off, no rule, wrong method), and Redis is asked only for a failure.
 */
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_lib.h"
#include "apr_strings.h"

#include "mod_mailguard.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

typedef enum { MG_OUT_NONE = 0, MG_OUT_FAILURE, MG_OUT_SUCCESS } mg_outcome_t;

#define MG_SQM_SCRIPT "/src/redirect.php"
#define MG_QTOKEN_MAX 32
/* A failure this quick comes from a dead socket, not a slow Redis. */
#define MG_STALE_MS 20

const char *mg_format_time(apr_int64_t secs, char *buf, apr_size_t size)
{
    apr_time_exp_t tm;

    /* Beyond year 9999 is "forever" for every practical purpose, and
     * keeps apr_time_from_sec() from overflowing. */
    if (secs == MG_EXPIRY_NEVER || secs > APR_INT64_C(253402300799)) {
        apr_cpystrn(buf, "forever", size);
        return buf;
    }
    if (secs < 0 || apr_time_exp_gmt(&tm, apr_time_from_sec(secs)) != APR_SUCCESS) {
        apr_cpystrn(buf, "?", size);
        return buf;
    }
    apr_snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

static int mg_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* URL-decode s[0..n) as PHP decodes a query string ('+' is a space) into
 * out (at most cap-1 bytes, NUL-terminated).  -1 when it does not fit:
 * such a component cannot be "_task" or "login". */
static int mg_qdecode(const char *s, apr_size_t n, char *out, apr_size_t cap)
{
    apr_size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        }
        else if (c == '%' && i + 2 < n && mg_hexval(s[i + 1]) >= 0
                 && mg_hexval(s[i + 2]) >= 0) {
            c = (char)(mg_hexval(s[i + 1]) * 16 + mg_hexval(s[i + 2]));
            i += 2;
        }
        if (o + 1 >= cap) {
            return -1;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

/* Is this query-string variable name "_task" once PHP has mangled it
 * (leading spaces dropped, ' ' and '.' turned into '_', "_task[...]" an
 * array of the same name)? */
static int mg_is_task_name(char *name)
{
    char *p = name;
    char *q;

    while (*p == ' ') {
        p++;
    }
    for (q = p; *q; q++) {
        if (*q == '[') {
            *q = '\0';
            break;
        }
        if (*q == ' ' || *q == '.') {
            *q = '_';
        }
    }
    return strcmp(p, "_task") == 0;
}

/* Roundcube keeps only [A-Za-z0-9_-] of a task name. */
static int mg_is_login_value(const char *v)
{
    char clean[MG_QTOKEN_MAX];
    apr_size_t o = 0;

    for (; *v && o + 1 < sizeof(clean); v++) {
        if (apr_isalnum(*v) || *v == '_' || *v == '-') {
            clean[o++] = *v;
        }
    }
    clean[o] = '\0';
    return strcasecmp(clean, "login") == 0;
}

/*
 * A Roundcube login POST: the query string says _task=login.  PHP gives
 * the query string precedence over the body for _task, so when the query
 * has no _task at all the body decides and we cannot see it: such a POST
 * is treated as a login too (a 401 from Roundcube is a login error
 * anyway), so leaving _task out of the URL does not escape counting.  A
 * query naming another task (the last occurrence wins, as in PHP) is not
 * a login.
 */
static int mg_roundcube_login(const char *args)
{
    const char *p = args;
    int found = 0;
    int login = 0;

    if (args == NULL) {
        return 1;
    }
    while (*p) {
        const char *end = strchr(p, '&');
        const char *eq;
        apr_size_t n = end ? (apr_size_t)(end - p) : strlen(p);
        char name[MG_QTOKEN_MAX];
        char value[MG_QTOKEN_MAX];

        eq = memchr(p, '=', n);
        if (mg_qdecode(p, eq ? (apr_size_t)(eq - p) : n, name, sizeof(name)) >= 0
            && mg_is_task_name(name)) {
            found = 1;
            login = eq != NULL
                    && mg_qdecode(eq + 1, n - (apr_size_t)(eq + 1 - p), value,
                                  sizeof(value)) >= 0
                    && mg_is_login_value(value);
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return !found || login;
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

static int mg_squirrelmail_login(const request_rec *r)
{
    apr_size_t n = mg_script_len(r);
    apr_size_t k = sizeof(MG_SQM_SCRIPT) - 1;

    return n >= k && memcmp(r->uri + n - k, MG_SQM_SCRIPT, k) == 0;
}

static int mg_rule_matches(const mg_rule_t *rule, const request_rec *r, int status)
{
    pcre2_match_data *md;
    int i, hit = 0, rc;

    if (rule->method != NULL && strcmp(rule->method, r->method) != 0) {
        return 0;
    }
    for (i = 0; i < rule->nstatus && !hit; i++) {
        hit = rule->status[i] == status;
    }
    if (!hit) {
        return 0;
    }
    md = pcre2_match_data_create(1, NULL);
    if (md == NULL) {
        return 0;
    }
    rc = pcre2_match(rule->re, (PCRE2_SPTR)r->uri, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

static mg_outcome_t mg_classify(const request_rec *r, const mg_dir_conf_t *d, int status)
{
    int watch = mg_dir_watch(d);
    const apr_array_header_t *rules = mg_dir_rules(d);
    int redirected = status == HTTP_MOVED_TEMPORARILY || status == HTTP_SEE_OTHER;
    int i;

    if (r->method_number == M_POST && watch != 0) {
        if ((watch & MG_WATCH_ROUNDCUBE) && mg_roundcube_login(r->args)) {
            if (status == HTTP_UNAUTHORIZED) {
                return MG_OUT_FAILURE;
            }
            if (redirected) {
                return MG_OUT_SUCCESS;
            }
        }
        if ((watch & MG_WATCH_SQUIRRELMAIL) && mg_squirrelmail_login(r)) {
            if (status == HTTP_OK) {
                return MG_OUT_FAILURE;
            }
            if (redirected) {
                return MG_OUT_SUCCESS;
            }
        }
    }
    if (rules != NULL) {
        for (i = 0; i < rules->nelts; i++) {
            if (mg_rule_matches(APR_ARRAY_IDX(rules, i, const mg_rule_t *), r, status)) {
                return MG_OUT_FAILURE;
            }
        }
    }
    return MG_OUT_NONE;
}

static void mg_log_ban(request_rec *r, const mg_addr_t *key, const char *jail,
                       unsigned count, apr_int64_t expiry)
{
    char addr[MG_ADDR_STRLEN];
    char until[32];

    mg_addr_format(key, addr, sizeof(addr));
    mg_format_time(expiry, until, sizeof(until));
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                  "MG0050: Ban %s (jail %s, %u failures, until %s)", addr, jail, count, until);
}

/* Redis unavailable: the local window decides, under the writer mutex
 * (no I/O inside).  A ban made here is mirrored at once and queued for
 * Redis. */
static void mg_record_local(request_rec *r, const mg_dir_conf_t *d, const mg_addr_t *key,
                            const mg_policy_t *pol, apr_time_t now)
{
    mg_stats_t *stats = mg_shm_stats();
    mg_record_result_t res;
    const char *jail = mg_dir_jail(d);
    int rc, full = 0;

    memset(&res, 0, sizeof(res));
    if (mg_shm_lock(r->server) != APR_SUCCESS) {
        return;
    }
    rc = mg_localwin_record(mg_shm_localwin(), jail, key, (int64_t)apr_time_sec(now), pol,
                            &res);
    if (rc == 0 && res.banned) {
        full = mg_bantable_put(mg_shm_bantable(), key, res.expiry) < 0;
        if (mg_srv_redis_enabled(r->server)) {
            mg_localwin_queue_ban(mg_shm_localwin(), key, res.expiry, jail);
        }
    }
    mg_shm_unlock(r->server);
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

static void mg_record_failure(request_rec *r, const mg_dir_conf_t *d)
{
    mg_stats_t *stats = mg_shm_stats();
    mg_addr_t client, key;
    mg_policy_t pol;
    mg_record_result_t res;
    const char *why = NULL;
    const char *jail = mg_dir_jail(d);
    apr_time_t now = apr_time_now();
    mg_store_t *st;
    int rc = -1;

    mg_stat_inc(&stats->fail_seen);
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

    st = mg_redis_checkout(r->server);
    if (st != NULL) {
        int was_connected = mg_store_connected(st);

        rc = mg_store_record_failure(st, jail, &key, (int64_t)apr_time_as_msec(now), &pol, &res);
        /* A pooled socket left over from before a Redis restart fails at
         * once (reset or EOF, the script never ran): one fresh try, so a
         * restart is not mistaken for an outage.  A slow failure (timeout)
         * is not retried: the script may still run. */
        if (rc != 0 && was_connected
            && apr_time_now() - now < apr_time_from_msec(MG_STALE_MS)) {
            rc = mg_store_record_failure(st, jail, &key, (int64_t)apr_time_as_msec(now), &pol,
                                         &res);
        }
        mg_redis_checkin(r->server, st, rc == 0);
    }
    if (rc != 0) {
        mg_record_local(r, d, &key, &pol, now);
        return;
    }
    mg_stat_inc(&stats->fail_redis);
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
static __attribute__((noinline)) int mg_watch_finished(request_rec *r, const mg_dir_conf_t *d)
{
    const request_rec *last = r;
    mg_outcome_t out;

    while (last->next != NULL) {
        last = last->next;
    }
    out = mg_classify(r, d, last->status);
    if (out == MG_OUT_SUCCESS) {
        mg_stat_inc(&mg_shm_stats()->successes);
    }
    else if (out == MG_OUT_FAILURE) {
        mg_record_failure(r, d);
    }
    return OK;
}

int mg_watch_log_transaction(request_rec *r)
{
    const mg_dir_conf_t *d = mg_dir_conf(r->per_dir_config);

    /* Cheapest tests first: the engine, then the method.  The built-in
     * rules only ever count a POST: every other request leaves here
     * unless a MailGuardFailure rule applies. */
    if (!mg_dir_engine(d) || (r->method_number != M_POST && mg_dir_rules(d) == NULL)) {
        return DECLINED;
    }
    if (r->main != NULL || r->prev != NULL || mg_shm_stats() == NULL || !mg_dir_watching(d)) {
        return DECLINED;
    }
    return mg_watch_finished(r, d);
}
