/*
 * The ban mirror: a fixed-capacity open-addressing table in memory the
 * caller provides (httpd: shared memory created before the children fork).
 *
 * Readers never lock and never write: each slot carries a sequence counter
 * (a seqlock); a reader retries while a writer is inside the slot.  Writers
 * (the sync job, a request that just made a ban) must be serialised by the
 * caller (one global mutex).  A full resync rebuilds the spare of two
 * tables and flips an index, so tombstones never accumulate and readers
 * see either the old or the new set, never a half-built one.
 *
 * Keys are mg_addr_t (address + prefix length).  A lookup probes the exact
 * address and every prefix length present in the table for that family
 * (a bitmap kept in the header), so a /64 ban and a /24 ban are found
 * without scanning.  Entries whose expiry has passed count as absent.
 * Each table has a presence filter (one bit per key hash, never a false
 * "absent"), so a key that is not there usually costs a hash and one
 * load, no slot read.
 *
 * The memory layout is position-independent (no pointers), so a region
 * mapped at different addresses in different processes works, and a region
 * kept from a previous httpd generation can be re-attached.
 */
#ifndef MG_BANTABLE_H
#define MG_BANTABLE_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_policy.h"

typedef struct mg_bantable mg_bantable_t;

/* Bytes needed for capacity live entries (both tables, header included). */
size_t mg_bantable_size(uint32_t capacity);

/* Format mem as an empty table; returns it (mem itself). */
mg_bantable_t *mg_bantable_init(void *mem, size_t size, uint32_t capacity);

/* The same for a region known to be all zero (fresh anonymous shared
 * memory): only the header is written, so the kernel hands out the slot
 * pages as bans arrive instead of all at start. */
mg_bantable_t *mg_bantable_init_zeroed(void *mem, size_t size, uint32_t capacity);

/* Re-attach a region formatted earlier (a previous generation).  NULL when
 * it does not hold a table of this layout version and capacity. */
mg_bantable_t *mg_bantable_attach(void *mem, size_t size, uint32_t capacity);

/* Copy every live entry of src into dst (dst's writer lock held): keeps
 * what a previous generation knew when the table size changed. */
size_t mg_bantable_copy(mg_bantable_t *dst, const mg_bantable_t *src, int64_t now);

/*
 * Lock-free read.  Is client (a host address, plen 128) banned at now?
 * Returns 1 and the expiry of the matching entry, 0 when not.
 */
int mg_bantable_lookup(const mg_bantable_t *t, const mg_addr_t *client, int64_t now,
                       int64_t *expiry);

/* Writers (caller holds the writer lock). */
/* Insert or update; keeps the later expiry.  A full table makes room by
 * dropping an entry that ends sooner (found among a few hundred slots, so
 * longer and permanent bans win over shorter ones); -1 when none of those
 * ends sooner: the new ban is the one left out. */
int mg_bantable_put(mg_bantable_t *t, const mg_addr_t *key, int64_t expiry);
/* Remove; 1 when it was there. */
int mg_bantable_del(mg_bantable_t *t, const mg_addr_t *key);

/* Full resync: begin() clears the spare table, add() fills it, commit()
 * makes it the live one.  Nothing a reader sees changes before commit(). */
void mg_bantable_rebuild_begin(mg_bantable_t *t);
int mg_bantable_rebuild_add(mg_bantable_t *t, const mg_addr_t *key, int64_t expiry);
void mg_bantable_rebuild_commit(mg_bantable_t *t);
/* Give up a rebuild: the live table stays as it is. */
void mg_bantable_rebuild_abort(mg_bantable_t *t);
/* During a rebuild: 1 when the spare already holds key exactly. */
int mg_bantable_rebuild_has(mg_bantable_t *t, const mg_addr_t *key);

/* Entries dropped so far to make room for longer bans. */
uint64_t mg_bantable_evicted(const mg_bantable_t *t);

/* The live table's presence filter for key (masked to its plen): 0 when
 * the key is certainly absent, 1 when it may be present.  Never 0 for a
 * key that is there; may be 1 for one deleted since the last rebuild. */
int mg_bantable_filter_maybe(const mg_bantable_t *t, const mg_addr_t *key);

/* Entries in the live table, expired ones included until the next rebuild. */
uint32_t mg_bantable_count(const mg_bantable_t *t);
uint32_t mg_bantable_capacity(const mg_bantable_t *t);

/* Visit every live (unexpired) entry; stops early when fn returns non-zero. */
typedef int (*mg_bantable_visit_fn)(void *baton, const mg_addr_t *key, int64_t expiry);
void mg_bantable_foreach(const mg_bantable_t *t, int64_t now, mg_bantable_visit_fn fn,
                         void *baton);

#endif
