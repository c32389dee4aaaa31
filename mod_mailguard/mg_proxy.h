/*
 * Trusted proxies (mg_proxy.c): failures mod_remoteip could not attribute
 * to a client are not counted against the proxy.
 */
#ifndef MG_PROXY_H
#define MG_PROXY_H

#include "httpd.h"
#include "apr_pools.h"

/* Reads mod_remoteip's directives from the configuration tree
 * (post_config, in the parent). */
apr_status_t mg_proxy_post_config(apr_pool_t *pconf, server_rec *s);
/* A failure from a trusted proxy whose header mod_remoteip could not use:
 * the address is the proxy's, not the client's. */
int mg_proxy_unattributable(const request_rec *r);

#endif
