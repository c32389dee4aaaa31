/*
 * The sync process (mg_sync.c): one per server, forked at post_config,
 * that keeps the shared-memory mirror in step with Redis's ban set and
 * sends the queued failures.
 */
#ifndef MG_SYNC_H
#define MG_SYNC_H

#include "httpd.h"
#include "apr_pools.h"

/* Forks the sync process (none with MailGuardRedis none). */
apr_status_t mg_sync_post_config(apr_pool_t *pconf, server_rec *s);

#endif
