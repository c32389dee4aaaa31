/*
 * mod_mailguard: recognise failed webmail logins, count them in Redis,
 * deny banned clients before any handler runs.
 *
 * This file is the table of contents: the module record and the hooks,
 * each with the reason it sits where it does.  The work is in the glue
 * files, one header each:
 *
 *   mg_config.c      directives, create/merge, typed getters
 *   mg_shm.c         shared memory: ban mirror, local windows, send queue,
 *                    counters and cross-process state, the writer mutex
 *   mg_gate.c        deny banned clients before any handler
 *   mg_watch.c       classify finished logins, record failures, log bans
 *   mg_redis_pool.c  per-process Redis connections and the circuit breaker
 *   mg_sync.c        the sync process: mirror, write-back, send queue
 *   mg_mirror.c      what the sync process does with the change log
 *   mg_status.c      the mailguard-status handler (plain and Prometheus)
 *   mg_proxy.c       failures mod_remoteip could not attribute to a client
 *
 * The policy itself (addresses, windows, rules, scripts, the ban table,
 * login classification) is in core/, shared with dbmail_tap, and never
 * includes an httpd header.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "http_protocol.h"

#include "mg_gate.h"
#include "mg_proxy.h"
#include "mg_redis_pool.h"
#include "mg_shm.h"
#include "mg_status.h"
#include "mg_sync.h"
#include "mg_watch.h"
#include "mg_config.h"

static int mg_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    return mg_shm_pre_config(pconf) == APR_SUCCESS ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static int mg_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    (void)plog;
    (void)ptemp;
    /* The first pass only checks the syntax; shared memory and the
     * sync process belong to the configuration that will really run.
     * The sync process is forked after shared memory and the mutex exist:
     * it inherits both. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    if (mg_shm_post_config(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* Which peers mod_remoteip trusts, read once so a failure it could
     * not attribute is never charged to the proxy. */
    if (mg_proxy_post_config(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (mg_sync_post_config(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static void mg_child_init(apr_pool_t *pchild, server_rec *s)
{
    mg_shm_child_init(pchild, s);
    mg_redis_child_init(pchild, s);
}

static void mg_register_hooks(apr_pool_t *p)
{
    /* mod_remoteip sets r->useragent_ip in post_read_request, which runs
     * before any access hook, so we always read the address it produced:
     * a trusted proxy's X-Forwarded-For counts, an untrusted one does not.
     * Naming it here records the dependency and would order us after it
     * should it ever rewrite the address in this hook too. */
    static const char *const after_remoteip[] = { "mod_remoteip.c", NULL };

    (void)p;
    /* Register the writer mutex type so `Mutex mailguard-shm ...` works. */
    ap_hook_pre_config(mg_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* Create (or re-attach) shared memory and the global mutex before the
     * children fork, then fork the sync process off the parent: a thread
     * in a request-serving process would make every read and writev there
     * take glibc's slower multi-threaded path. */
    ap_hook_post_config(mg_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* Re-open the global mutex in each child; prepare the lazy Redis pool
     * (no socket is ever opened in the parent). */
    ap_hook_child_init(mg_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    /* Deny: as soon as the per-dir config is known (so MailGuardEngine
     * and MailGuardDenyStatus can differ per <Location>), for the initial
     * request, internal redirects and subrequests alike, before every
     * access, authentication and authorization hook and before any
     * handler (PHP, FastCGI, proxy) runs.  Not check_access_ex: httpd
     * skips that one under `Satisfy Any` when mod_access_compat said OK.
     * mod_remoteip has set the address earlier, in post_read_request. */
    ap_hook_post_perdir_config(mg_gate_post_perdir_config, after_remoteip, NULL,
                               APR_HOOK_FIRST);
    /* Watch: the response is final and sent, so its status is known and
     * the client never waits for Redis.  LAST: the access log is written
     * before a possible Redis round trip. */
    ap_hook_log_transaction(mg_watch_log_transaction, NULL, NULL, APR_HOOK_LAST);
    /* SetHandler mailguard-status: plain-text counters for monitoring. */
    ap_hook_handler(mg_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(mailguard) = {
    STANDARD20_MODULE_STUFF,
    mg_create_dir_conf, /* per-directory: server, vhost, <Directory>, <Location> */
    mg_merge_dir_conf,
    mg_create_srv_conf, /* per-server: MailGuardIPv6Prefix and the global settings */
    mg_merge_srv_conf,
    mg_cmds,
    mg_register_hooks,
    AP_MODULE_FLAG_NONE
};
