/*
 * Deny: refuse a banned client before authentication and before any
 * handler runs.
 *
 * This runs for every request where MailGuardEngine is On, so it must
 * stay a memory lookup: no allocation, no system call, no lock, no log
 * line per denial (a log line per denied request costs more than the
 * denial itself; denials are counted instead).
 */
#include <string.h>

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

/*
 * The client's address in the core's form.  When no module rewrote it for
 * this request (mod_remoteip did not, for one), r->useragent_ip is the
 * connection's own text, which APR printed from the binary address the
 * core keeps beside it: that binary is the same address, with no text to
 * read.  Anything else (an address a module set, another family) is
 * parsed, and mg_addr_parse() reads a dotted quad directly.
 */
static int mg_gate_client(const request_rec *r, mg_addr_t *out)
{
    const conn_rec *c = r->connection;
    const apr_sockaddr_t *sa = r->useragent_addr;

    if (sa != NULL && sa == c->client_addr && r->useragent_ip == c->client_ip) {
        if (sa->family == APR_INET) {
            memset(out->a, 0, 10);
            out->a[10] = 0xff;
            out->a[11] = 0xff;
            memcpy(out->a + 12, &sa->sa.sin.sin_addr, 4);
            out->plen = 128;
            return 0;
        }
#if APR_HAVE_IPV6
        if (sa->family == APR_INET6) {
            /* An IPv4-mapped peer is already in the core's IPv4 form. */
            memcpy(out->a, &sa->sa.sin6.sin6_addr, 16);
            out->plen = 128;
            return 0;
        }
#endif
    }
    return mg_addr_parse(r->useragent_ip, out, NULL);
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
    if (mg_gate_client(r, &client) != 0) {
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
