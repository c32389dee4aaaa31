/*
 * A set of bans keyed by address or prefix, each with its expiry: the bans
 * the firewall keeper must end itself because the firewall cannot time
 * them out (ipfw has no timeouts; nftables none beyond ~49 days).
 * Open addressing with a hash of the whole key, so addresses that share
 * their leading bytes (one /16, IPv4 in general) spread like any others.
 * Not thread-safe.
 */
#ifndef TAP_BANSET_H
#define TAP_BANSET_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"

typedef struct tap_banset tap_banset_t;

tap_banset_t *tap_banset_new(void);
void tap_banset_free(tap_banset_t *s);
/* Insert or set the expiry; -1 when out of memory. */
int tap_banset_put(tap_banset_t *s, const mg_addr_t *key, int64_t expiry);
/* Remove; 1 when it was there. */
int tap_banset_del(tap_banset_t *s, const mg_addr_t *key);
void tap_banset_clear(tap_banset_t *s);
size_t tap_banset_count(const tap_banset_t *s);
/* Call fn for every entry whose expiry is at or before now and remove it
 * (fn may not touch the set). */
void tap_banset_sweep(tap_banset_t *s, int64_t now,
                      void (*fn)(void *baton, const mg_addr_t *key), void *baton);

#endif
