/*
 * The proxy is never the client.
 *
 * mod_remoteip replaces r->useragent_ip with the address its header
 * (RemoteIPHeader) names, but only for a peer it trusts and only when the
 * rightmost value parses (and, through an external RemoteIPTrustedProxy,
 * is not a private address).  Otherwise it leaves the peer's own address:
 * a garbage X-Forwarded-For through the trusted proxy would make every
 * failure count against the proxy, and after MaxRetry everyone behind it
 * is denied.  Such a failure is "unattributable": counted on the status
 * page, never recorded.  A client that sends the header itself, from an
 * address mod_remoteip does not trust, is still counted by that address.
 *
 * Which peers mod_remoteip trusts is its private configuration.  Rather
 * than read its structures, this file reads the same directives from the
 * configuration tree httpd keeps (ap_conftree, public), once, after the
 * configuration is read, with mod_remoteip's own rules: a <VirtualHost>
 * that lists proxies uses its list, else the main server's; with a header
 * but no list at all, every peer is trusted.  So the operator writes the
 * proxies once, in mod_remoteip's directives.
 *
 * At request time (failures only) the test is: the server has a header,
 * the request carries it, the address is still the peer's, and the peer
 * is trusted.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "util_cfgtree.h"
#include "apr_hash.h"
#include "apr_lib.h"
#include "apr_network_io.h"
#include "apr_strings.h"

#include "mg_addr.h"
#include "mg_proxy.h"

APLOG_USE_MODULE(mailguard);

/* What mod_remoteip's directives say in one scope (the main server or
 * one <VirtualHost>). */
typedef struct mg_remoteip_scope {
    const char *header;    /* RemoteIPHeader, NULL when not set here */
    mg_cidrset_t *proxies; /* NULL when no proxy directive here */
} mg_remoteip_scope_t;

/* One server's effective settings, resolved as mod_remoteip merges them. */
typedef struct mg_proxy_server {
    const server_rec *s;
    const char *header;          /* NULL: mod_remoteip reads no header here */
    const mg_cidrset_t *proxies; /* NULL: every peer is trusted */
} mg_proxy_server_t;

/* Built in the parent by post_config, read by the children it forks. */
static apr_array_header_t *mg_proxy_servers;

static apr_status_t mg_proxy_cidrset_cleanup(void *data)
{
    mg_cidrset_free(data);
    return APR_SUCCESS;
}

/* One word of RemoteIPInternalProxy/TrustedProxy: an address, a range,
 * or a host name (mod_remoteip resolves names at start-up too). */
static void mg_proxy_add_word(apr_pool_t *p, mg_remoteip_scope_t *sc, const char *word)
{
    apr_sockaddr_t *sa = NULL;

    if (sc->proxies == NULL) {
        sc->proxies = mg_cidrset_new();
        if (sc->proxies == NULL) {
            return;
        }
        apr_pool_cleanup_register(p, sc->proxies, mg_proxy_cidrset_cleanup,
                                  apr_pool_cleanup_null);
    }
    if (mg_cidrset_add(sc->proxies, word, NULL) == 0) {
        return;
    }
    if (ap_strchr_c(word, '/') == NULL
        && apr_sockaddr_info_get(&sa, word, APR_UNSPEC, 0, 0, p) == APR_SUCCESS) {
        for (; sa != NULL; sa = sa->next) {
            char *ip = NULL;

            if (apr_sockaddr_ip_get(&ip, sa) == APR_SUCCESS) {
                mg_cidrset_add(sc->proxies, ip, NULL);
            }
        }
    }
    /* Anything else (a netmask in dotted form) mod_remoteip may accept
     * and we do not: that proxy's failures are attributed to it, as
     * without this file.  README asks for MailGuardIgnoreIP as well. */
}

static void mg_proxy_add_words(apr_pool_t *p, mg_remoteip_scope_t *sc, const char *args)
{
    const char *w;

    while (*args && *(w = ap_getword_conf(p, &args))) {
        mg_proxy_add_word(p, sc, w);
    }
}

static void mg_proxy_add_file(apr_pool_t *p, mg_remoteip_scope_t *sc, const char *name)
{
    ap_configfile_t *cfp;
    char line[MAX_STRING_LEN];
    const char *path = ap_server_root_relative(p, name);

    if (path == NULL || ap_pcfg_openfile(&cfp, p, path) != APR_SUCCESS) {
        return;
    }
    while (!ap_cfg_getline(line, sizeof(line), cfp)) {
        char *hash = strchr(line, '#');

        if (hash != NULL) {
            *hash = '\0';
        }
        mg_proxy_add_words(p, sc, line);
    }
    ap_cfg_closefile(cfp);
}

static void mg_proxy_read(apr_pool_t *p, const ap_directive_t *d, mg_remoteip_scope_t *sc,
                          apr_hash_t *vhosts)
{
    for (; d != NULL; d = d->next) {
        const char *name = d->directive;

        if (strcasecmp(name, "<VirtualHost") == 0) {
            mg_remoteip_scope_t *vsc = apr_pcalloc(p, sizeof(*vsc));

            mg_proxy_read(p, d->first_child, vsc, NULL);
            if (vhosts != NULL) {
                apr_hash_set(vhosts, apr_psprintf(p, "%s:%d", d->filename, d->line_num),
                             APR_HASH_KEY_STRING, vsc);
            }
        }
        else if (strcasecmp(name, "RemoteIPHeader") == 0) {
            const char *args = d->args;
            sc->header = ap_getword_conf(p, &args);
        }
        else if (strcasecmp(name, "RemoteIPInternalProxy") == 0
                 || strcasecmp(name, "RemoteIPTrustedProxy") == 0) {
            mg_proxy_add_words(p, sc, d->args);
        }
        else if (strcasecmp(name, "RemoteIPInternalProxyList") == 0
                 || strcasecmp(name, "RemoteIPTrustedProxyList") == 0) {
            const char *args = d->args;
            mg_proxy_add_file(p, sc, ap_getword_conf(p, &args));
        }
        else if (d->first_child != NULL) {
            /* <IfModule>, <IfDefine> and the like: same scope.  The
             * RemoteIP directives are not allowed in <Directory> or
             * <Location>, so nothing else is found inside those. */
            mg_proxy_read(p, d->first_child, sc, vhosts);
        }
    }
}

apr_status_t mg_proxy_post_config(apr_pool_t *pconf, server_rec *s)
{
    mg_remoteip_scope_t main_sc;
    apr_hash_t *vhosts = apr_hash_make(pconf);
    server_rec *v;

    memset(&main_sc, 0, sizeof(main_sc));
    mg_proxy_read(pconf, ap_conftree, &main_sc, vhosts);
    mg_proxy_servers = apr_array_make(pconf, 4, sizeof(mg_proxy_server_t));
    for (v = s; v != NULL; v = v->next) {
        mg_proxy_server_t *e = apr_array_push(mg_proxy_servers);
        const mg_remoteip_scope_t *vsc = NULL;

        if (v != s && v->defn_name != NULL) {
            vsc = apr_hash_get(vhosts,
                               apr_psprintf(pconf, "%s:%d", v->defn_name, v->defn_line_number),
                               APR_HASH_KEY_STRING);
        }
        e->s = v;
        e->header = vsc != NULL && vsc->header != NULL ? vsc->header : main_sc.header;
        e->proxies = vsc != NULL && vsc->proxies != NULL ? vsc->proxies : main_sc.proxies;
    }
    return APR_SUCCESS;
}

static const mg_proxy_server_t *mg_proxy_server(const server_rec *s)
{
    int i;

    if (mg_proxy_servers == NULL) {
        return NULL;
    }
    for (i = 0; i < mg_proxy_servers->nelts; i++) {
        const mg_proxy_server_t *e = &APR_ARRAY_IDX(mg_proxy_servers, i, mg_proxy_server_t);

        if (e->s == s) {
            return e;
        }
    }
    return NULL;
}

int mg_proxy_unattributable(const request_rec *r)
{
    const conn_rec *c = r->connection;
    const mg_proxy_server_t *e = mg_proxy_server(r->server);
    mg_addr_t peer;

    if (e == NULL || e->header == NULL || apr_table_get(r->headers_in, e->header) == NULL) {
        return 0;
    }
    /* mod_remoteip took an address: the failure is that client's. */
    if (r->useragent_ip == NULL || c->client_ip == NULL
        || strcmp(r->useragent_ip, c->client_ip) != 0) {
        return 0;
    }
    if (e->proxies == NULL) {
        return 1;
    }
    return mg_addr_parse(c->client_ip, &peer, NULL) == 0
           && mg_cidrset_contains(e->proxies, &peer);
}
