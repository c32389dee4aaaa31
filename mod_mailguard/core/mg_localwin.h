/*
 * The local failure window and the pending-ban queue: what keeps counting
 * while Redis is unreachable.  Lives in caller-provided memory (httpd:
 * shared memory, so all children count together); writers are serialised
 * by the caller's lock, like the ban table.
 *
 * Same semantics as record_failure.lua: an exact sliding window (a failure
 * counts for exactly findtime seconds), a ban at maxretry, the window
 * cleared by the ban, escalation from a local history.  When the table is
 * full the least recently touched entry is evicted (attackers cannot grow
 * it).  Bans made here are queued so the sync job can write them to Redis
 * when it returns; the queue is a ring that drops its oldest entry when
 * full (the ban is still enforced locally).
 */
#ifndef MG_LOCALWIN_H
#define MG_LOCALWIN_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_policy.h"
#include "mg_rules.h"

/* Local windows remember at most this many failures per address; larger
 * maxretry values count exactly in Redis but saturate here. */
#define MG_LOCALWIN_MAXRETRY 64

typedef struct mg_localwin mg_localwin_t;

size_t mg_localwin_size(uint32_t entries, uint32_t queue);
mg_localwin_t *mg_localwin_init(void *mem, size_t size, uint32_t entries, uint32_t queue);
mg_localwin_t *mg_localwin_attach(void *mem, size_t size, uint32_t entries, uint32_t queue);

/* Record one failure of key (already the ban key) for jail at now. */
int mg_localwin_record(mg_localwin_t *w, const char *jail, const mg_addr_t *key, int64_t now,
                       const mg_policy_t *pol, mg_record_result_t *res);

typedef struct mg_pending_ban {
    mg_addr_t key;
    int64_t expiry;
    char jail[MG_JAIL_BUF];
} mg_pending_ban_t;

/* Queue a ban for Redis; pop the oldest (0 when empty).  The caller pops,
 * writes to Redis outside the lock, and re-queues on failure. */
void mg_localwin_queue_ban(mg_localwin_t *w, const mg_addr_t *key, int64_t expiry,
                           const char *jail);
int mg_localwin_pop_ban(mg_localwin_t *w, mg_pending_ban_t *out);
uint32_t mg_localwin_pending(const mg_localwin_t *w);
/* Visit the queued bans, oldest first, without removing them (the caller
 * holds the lock); stops early when fn returns non-zero. */
typedef int (*mg_localwin_pending_fn)(void *baton, const mg_pending_ban_t *ban);
void mg_localwin_foreach_pending(const mg_localwin_t *w, mg_localwin_pending_fn fn,
                                 void *baton);

#endif
