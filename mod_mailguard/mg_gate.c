/*
 * Deny: refuse a banned client before authentication and before any
 * handler runs.
 *
 * The hook is post_perdir_config.  In httpd's ap_process_request_internal
 * (server/request.c) it runs right after the final location walk has
 * settled the per-directory configuration, for the initial request, every
 * internal redirect (ErrorDocument, mod_rewrite, CGI Location) and every
 * subrequest, and nothing before it can skip it: header_parser does not run
 * for subrequests, the access_checker_ex hooks are skipped under
 * `Satisfy Any` when a plain access checker said OK, and every access,
 * authentication and authorization hook (check_access, check_authn,
 * check_authz, so Basic auth and `Require`) and fixups come after it.  A
 * status returned here ends the request before any handler (PHP,
 * FastCGI, proxy) runs.
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

#include "mg_gate.h"
#include "mg_shm.h"
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
 * Was the client already checked, and let through, during this request?
 * When the initial request's scope is guarded it was checked there; if it
 * still has a success status it was not denied, and a subrequest or
 * redirect it makes needs no second lookup.  A denied (or otherwise
 * failed) initial request is followed only by its ErrorDocument: that one
 * is checked again, so an error page inside a guarded scope never runs for
 * a banned client.  Reads only: nothing is written on the common path.
 */
static int mg_already_passed(const request_rec *r)
{
    const request_rec *first = mg_initial(r);

    return mg_dir_engine(mg_dir_conf(first->per_dir_config))
           && !ap_is_HTTP_ERROR(first->status);
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

int mg_gate_post_perdir_config(request_rec *r)
{
    const mg_bantable_t *bt;
    mg_addr_t client;

    if (!mg_dir_engine(mg_dir_conf(r->per_dir_config))) {
        return DECLINED;
    }
    /* A subrequest or an internal redirect into a guarded scope is
     * checked unless the client already passed during this request. */
    if ((r->main != NULL || r->prev != NULL) && mg_already_passed(r)) {
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
