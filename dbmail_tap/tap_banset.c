/*
 * Bans the keeper ends itself; see tap_banset.h.
 */
#include "tap_banset.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    mg_addr_t key; /* plen 0: empty */
    int64_t expiry;
} slot_t;

struct tap_banset {
    slot_t *v;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

tap_banset_t *tap_banset_new(void)
{
    return calloc(1, sizeof(tap_banset_t));
}

void tap_banset_free(tap_banset_t *s)
{
    if (s != NULL) {
        free(s->v);
        free(s);
    }
}

static slot_t *find(const tap_banset_t *s, const mg_addr_t *key)
{
    size_t mask = s->cap - 1, i = (size_t)mg_addr_hash(key) & mask;

    for (;; i = (i + 1) & mask) {
        if (s->v[i].key.plen == 0 || mg_addr_equal(&s->v[i].key, key)) {
            return &s->v[i];
        }
    }
}

static int grow(tap_banset_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    slot_t *old = s->v, *nv = calloc(cap, sizeof(*nv));
    size_t oldcap = s->cap;

    if (nv == NULL) {
        return -1;
    }
    s->v = nv;
    s->cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key.plen != 0) {
            *find(s, &old[i].key) = old[i];
        }
    }
    free(old);
    return 0;
}

int tap_banset_put(tap_banset_t *s, const mg_addr_t *key, int64_t expiry)
{
    slot_t *e;

    /* at most half full: probes stay short */
    if ((s->n + 1) * 2 > s->cap && grow(s) != 0) {
        return -1;
    }
    e = find(s, key);
    if (e->key.plen == 0) {
        e->key = *key;
        s->n++;
    }
    e->expiry = expiry;
    return 0;
}

/* Remove slot i, moving later members of its cluster back so that no
 * probe stops early (no tombstones needed). */
static void remove_at(tap_banset_t *s, size_t i)
{
    size_t mask = s->cap - 1, j = i;

    memset(&s->v[i], 0, sizeof(s->v[i]));
    s->n--;
    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (s->v[j].key.plen == 0) {
            return;
        }
        home = (size_t)mg_addr_hash(&s->v[j].key) & mask;
        /* j's entry stays unless i lies on its path from home to j */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->v[i] = s->v[j];
            memset(&s->v[j], 0, sizeof(s->v[j]));
            i = j;
        }
    }
}

int tap_banset_del(tap_banset_t *s, const mg_addr_t *key)
{
    slot_t *e;

    if (s->n == 0) {
        return 0;
    }
    e = find(s, key);
    if (e->key.plen == 0) {
        return 0;
    }
    remove_at(s, (size_t)(e - s->v));
    return 1;
}

void tap_banset_clear(tap_banset_t *s)
{
    if (s->v != NULL) {
        memset(s->v, 0, s->cap * sizeof(*s->v));
    }
    s->n = 0;
}

size_t tap_banset_count(const tap_banset_t *s)
{
    return s->n;
}

void tap_banset_sweep(tap_banset_t *s, int64_t now,
                      void (*fn)(void *baton, const mg_addr_t *key), void *baton)
{
    size_t i = 0;

    while (i < s->cap && s->n > 0) {
        if (s->v[i].key.plen != 0 && s->v[i].expiry <= now) {
            mg_addr_t key = s->v[i].key;
            remove_at(s, i);
            fn(baton, &key);
            /* slot i may now hold a moved entry: look at it again */
            continue;
        }
        i++;
    }
}
