/*
 * Failures waiting to be sent to Redis: a ring in caller-provided memory
 * (httpd: shared memory, so every child queues and the sync process sends).
 *
 * A failure lands here when Redis could not take it at once: a call that
 * timed out (it may or may not have run) or an outage.  Each carries its
 * identity, time and policy, so sending it later counts it exactly once
 * and in its place in the window (record_failure.lua drops identities it
 * has seen).  When the ring is full the oldest entry is dropped (counted);
 * an entry older than its findtime when it is sent could no longer count
 * and is dropped too.
 *
 * The same ring also serves as the memory of failures recently counted:
 * should Redis lose its data, those still inside their window are sent
 * again (as duplicates wherever Redis still has them).
 *
 * Writers are serialised by the caller's lock; the count may be read
 * without it (a snapshot for status pages).
 */
#ifndef MG_FQUEUE_H
#define MG_FQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_localwin.h"
#include "mg_policy.h"
#include "mg_store.h"

typedef struct mg_pending_failure {
    mg_addr_t key; /* the ban key */
    int64_t time_ms;
    mg_policy_t policy;
    char jail[MG_JAIL_BUF];
    char id[MG_FAILURE_IDLEN];
} mg_pending_failure_t;

typedef struct mg_fqueue mg_fqueue_t;

size_t mg_fqueue_size(uint32_t capacity);
/* Format mem as an empty queue (mem need not be zero). */
mg_fqueue_t *mg_fqueue_init(void *mem, size_t size, uint32_t capacity);
/* Re-attach a queue formatted earlier with this capacity; NULL otherwise. */
mg_fqueue_t *mg_fqueue_attach(void *mem, size_t size, uint32_t capacity);

/* Append; 1 when the oldest entry was dropped to make room, else 0. */
int mg_fqueue_push(mg_fqueue_t *q, const mg_pending_failure_t *f);
/* Take up to max of the oldest entries into out; returns how many. */
size_t mg_fqueue_pop(mg_fqueue_t *q, mg_pending_failure_t *out, size_t max);
uint32_t mg_fqueue_count(const mg_fqueue_t *q);
/* Visit every entry, oldest first, without taking it (caller holds the
 * lock); stops early when fn returns non-zero. */
void mg_fqueue_foreach(const mg_fqueue_t *q,
                       int (*fn)(void *baton, const mg_pending_failure_t *f), void *baton);
/* Entries dropped from a full queue so far. */
uint64_t mg_fqueue_dropped(const mg_fqueue_t *q);

#endif
