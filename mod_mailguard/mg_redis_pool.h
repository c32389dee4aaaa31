/*
 * Per-process Redis connections for the request path (mg_redis_pool.c),
 * and the circuit breaker every process of the server shares: while it is
 * open, failures are counted locally and no request waits for Redis.
 */
#ifndef MG_REDIS_POOL_H
#define MG_REDIS_POOL_H

#include "httpd.h"
#include "apr_pools.h"

#include "mg_store.h"

void mg_redis_child_init(apr_pool_t *pchild, server_rec *s);
/* A connection for one call, or NULL: Redis off, breaker open, or every
 * connection busy.  Give it back with the call's return code: the breaker
 * opens when Redis is gone or refuses (the store's error kind), or after a
 * few timeouts in a row, never for one slow call. */
mg_store_t *mg_redis_checkout(server_rec *s);
void mg_redis_checkin(server_rec *s, mg_store_t *st, int rc);
/* Breaker: report the outcome of a call made outside the pool. */
void mg_breaker_report(server_rec *s, int ok, const char *why);
/* 1 while the breaker is open (Redis unreachable or refusing). */
int mg_breaker_open(void);

#endif
