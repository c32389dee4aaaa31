/*
 * Deny: refuse a banned client before authentication and before any
 * handler runs.
 *
 * This runs for every request where MailGuardEngine is On, so it must
 * stay a memory lookup: no allocation, no system call, no lock, no log
 * line per denial (a log line per denied request costs more than the
 * denial itself; denials are counted instead).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_request.h"

#include "mod_mailguard.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

/* The request the client actually sent, for a subrequest or an internal
 * redirect. */
static const request_rec *mg_initial(const request_rec *r)
{
    while (r->main != NULL || r->prev != NULL) {
        r = r->main != NULL ? r->main : r->prev;
    }
    return r;
}

/* A banned client: count it, refuse it.  Out of line, so the common
 * path (not banned) keeps a small frame. */
static __attribute__((noinline)) int mg_gate_deny(request_rec *r)
{
    mg_stat_inc(&mg_shm_stats()->denied);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MG0020: denied banned client %s",
                  r->useragent_ip);
    return mg_dir_deny_status(mg_dir_conf(r->per_dir_config));
}

int mg_gate_check_access(request_rec *r)
{
    const mg_bantable_t *bt;
    mg_addr_t client;

    /* Subrequests and internal redirects: the initial request was already
     * checked when the engine was on for it.  When it was not (engine off
     * at the URL the client asked for, on where it leads), check here so
     * that no path into a guarded scope goes unchecked. */
    if ((r->main != NULL || r->prev != NULL)
        && mg_dir_engine(mg_dir_conf(mg_initial(r)->per_dir_config))) {
        return DECLINED;
    }
    if (!mg_dir_engine(mg_dir_conf(r->per_dir_config))) {
        return DECLINED;
    }
    bt = mg_shm_bantable();
    if (bt == NULL || mg_bantable_count(bt) == 0 || r->useragent_ip == NULL) {
        return DECLINED;
    }
    /* A canonical dotted quad (every IPv4 client) takes the core's quick
     * path: no copy, no inet_pton. */
    if (mg_addr_parse(r->useragent_ip, &client, NULL) != 0) {
        /* Not an address (cannot happen with a connected socket); never
         * refuse for it. */
        return DECLINED;
    }
    /* request_time was taken when the request line arrived: no clock
     * read here. */
    if (!mg_bantable_lookup(bt, &client, (int64_t)apr_time_sec(r->request_time), NULL)) {
        return DECLINED;
    }
    return mg_gate_deny(r);
}
