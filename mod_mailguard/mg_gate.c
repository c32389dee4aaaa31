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

/* 0 until mg_gate_post_config() has checked that the fast parser below
 * agrees with the core's. */
static int mg_fast_v4_ok;

/*
 * Canonical dotted quads only (what APR and mod_remoteip print: four parts
 * of 1-3 digits, no leading zeros, each <= 255), into the core's
 * representation (IPv4 as ::ffff:a.b.c.d, plen 128).  A few dozen
 * instructions instead of the ~500 of the general parser (a copy and
 * inet_pton); anything else returns -1 and goes to mg_addr_parse(), so the
 * outcome never differs.
 */
static int mg_parse_v4_fast(const char *s, mg_addr_t *out)
{
    unsigned char o[4];
    int part;

    for (part = 0; part < 4; part++) {
        unsigned v = (unsigned)(unsigned char)s[0] - '0';
        unsigned d;

        if (v > 9) {
            return -1;
        }
        d = (unsigned)(unsigned char)s[1] - '0';
        s++;
        if (d <= 9) {
            if (v == 0) {
                return -1;   /* leading zero */
            }
            v = v * 10 + d;
            d = (unsigned)(unsigned char)s[1] - '0';
            s++;
            if (d <= 9) {
                v = v * 10 + d;
                s++;
                if (v > 255) {
                    return -1;
                }
            }
        }
        o[part] = (unsigned char)v;
        if (part < 3) {
            if (*s != '.') {
                return -1;
            }
            s++;
        }
    }
    if (*s != '\0') {
        return -1;
    }
    memset(out->a, 0, 10);
    out->a[10] = 0xff;
    out->a[11] = 0xff;
    memcpy(out->a + 12, o, 4);
    out->plen = 128;
    return 0;
}

void mg_gate_post_config(server_rec *s)
{
    static const char *const probe[] = { "192.0.2.1", "0.0.0.0", "255.255.255.255",
                                         "10.20.30.40" };
    mg_addr_t fast, core;
    const char *why = NULL;
    apr_size_t i;

    mg_fast_v4_ok = 1;
    for (i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
        memset(&fast, 0, sizeof(fast));
        memset(&core, 0, sizeof(core));
        if (mg_parse_v4_fast(probe[i], &fast) != 0 || mg_addr_parse(probe[i], &core, &why) != 0
            || memcmp(&fast, &core, sizeof(fast)) != 0) {
            mg_fast_v4_ok = 0;
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                         "MG0021: fast IPv4 parser disagrees with the core: not used");
            return;
        }
    }
}

/* The request the client actually sent, for a subrequest or an internal
 * redirect. */
static const request_rec *mg_initial(const request_rec *r)
{
    while (r->main != NULL || r->prev != NULL) {
        r = r->main != NULL ? r->main : r->prev;
    }
    return r;
}

int mg_gate_check_access(request_rec *r)
{
    const mg_dir_conf_t *d;
    const mg_bantable_t *bt;
    mg_addr_t client;
    const char *why = NULL;
    int64_t expiry = 0;

    /* Subrequests and internal redirects: the initial request was already
     * checked when the engine was on for it.  When it was not (engine off
     * at the URL the client asked for, on where it leads), check here so
     * that no path into a guarded scope goes unchecked. */
    if ((r->main != NULL || r->prev != NULL)
        && mg_dir_engine(mg_dir_conf(mg_initial(r)->per_dir_config))) {
        return DECLINED;
    }
    d = mg_dir_conf(r->per_dir_config);
    if (!mg_dir_engine(d)) {
        return DECLINED;
    }
    bt = mg_shm_bantable();
    if (bt == NULL || mg_bantable_count(bt) == 0 || r->useragent_ip == NULL) {
        return DECLINED;
    }
    if ((!mg_fast_v4_ok || mg_parse_v4_fast(r->useragent_ip, &client) != 0)
        && mg_addr_parse(r->useragent_ip, &client, &why) != 0) {
        /* Not an address (cannot happen with a connected socket); never
         * refuse for it. */
        return DECLINED;
    }
    /* request_time was taken when the request line arrived: no clock
     * read here. */
    if (!mg_bantable_lookup(bt, &client, (int64_t)apr_time_sec(r->request_time), &expiry)) {
        return DECLINED;
    }
    mg_stat_inc(&mg_shm_stats()->denied);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MG0020: denied banned client %s",
                  r->useragent_ip);
    return mg_dir_deny_status(d);
}
