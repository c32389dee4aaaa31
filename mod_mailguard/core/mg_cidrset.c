/*
 * Sets of addresses and CIDR ranges (see mg_addr.h): ignore lists and
 * trusted proxies, asked on every counted failure.
 */
#include "mg_addr.h"

#include <stdlib.h>
#include <string.h>

/* All entries of one prefix length, sorted by memcmp order of the masked
 * address, so membership for that length is one binary search. */
typedef struct mg_cidr_group {
    uint8_t plen;
    size_t n, cap;
    uint8_t (*keys)[16];
} mg_cidr_group_t;

struct mg_cidrset {
    size_t ngroups;
    size_t total;
    /* Longest prefix first: a host match is the most likely hit. */
    mg_cidr_group_t groups[128];
};

mg_cidrset_t *mg_cidrset_new(void)
{
    return calloc(1, sizeof(mg_cidrset_t));
}

void mg_cidrset_free(mg_cidrset_t *set)
{
    size_t i;

    if (!set) {
        return;
    }
    for (i = 0; i < set->ngroups; i++) {
        free(set->groups[i].keys);
    }
    free(set);
}

/* Index of key in g, or -(insertion point) - 1. */
static long mg_group_find(const mg_cidr_group_t *g, const uint8_t *key)
{
    size_t lo = 0, hi = g->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(g->keys[mid], key, 16);

        if (c == 0) {
            return (long)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return -(long)lo - 1;
}

int mg_cidrset_add_addr(mg_cidrset_t *set, const mg_addr_t *net)
{
    mg_addr_t k;
    mg_cidr_group_t *g = NULL;
    size_t i;
    long pos;

    if (!set || net->plen == 0 || net->plen > 128) {
        return -1;
    }
    k = *net;
    mg_addr_mask_bytes(k.a, k.plen);

    for (i = 0; i < set->ngroups && set->groups[i].plen >= k.plen; i++) {
        if (set->groups[i].plen == k.plen) {
            g = &set->groups[i];
            break;
        }
    }
    if (!g) {
        /* New length: insert keeping the groups ordered longest first. */
        memmove(&set->groups[i + 1], &set->groups[i],
                (set->ngroups - i) * sizeof(set->groups[0]));
        g = &set->groups[i];
        memset(g, 0, sizeof(*g));
        g->plen = k.plen;
        set->ngroups++;
    }
    pos = mg_group_find(g, k.a);
    if (pos >= 0) {
        return 0;
    }
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 8;
        void *nk = realloc(g->keys, ncap * sizeof(g->keys[0]));

        if (!nk) {
            if (g->n == 0) {
                /* Leave no empty group behind: the set is unchanged. */
                memmove(g, g + 1, (set->ngroups - (size_t)(g - set->groups) - 1) * sizeof(*g));
                set->ngroups--;
            }
            return -1;
        }
        g->keys = nk;
        g->cap = ncap;
    }
    pos = -pos - 1;
    memmove(&g->keys[pos + 1], &g->keys[pos], (g->n - (size_t)pos) * sizeof(g->keys[0]));
    memcpy(g->keys[pos], k.a, 16);
    g->n++;
    set->total++;
    return 0;
}

int mg_cidrset_add(mg_cidrset_t *set, const char *text, const char **why)
{
    mg_addr_t net;
    const char *dummy;

    if (why == NULL) {
        why = &dummy;
    }
    if (!set) {
        *why = "no set";
        return -1;
    }
    if (mg_cidr_parse(text, &net, why) < 0) {
        return -1;
    }
    if (mg_cidrset_add_addr(set, &net) < 0) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

int mg_cidrset_add_all(mg_cidrset_t *set, const mg_cidrset_t *other)
{
    size_t i, j;

    if (!other) {
        return 0;
    }
    if (!set) {
        return -1;
    }
    if (set == other) {
        return 0;
    }
    for (i = 0; i < other->ngroups; i++) {
        const mg_cidr_group_t *g = &other->groups[i];

        for (j = 0; j < g->n; j++) {
            mg_addr_t k;

            memcpy(k.a, g->keys[j], 16);
            k.plen = g->plen;
            if (mg_cidrset_add_addr(set, &k) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

int mg_cidrset_contains(const mg_cidrset_t *set, const mg_addr_t *a)
{
    size_t i;

    if (!set) {
        return 0;
    }
    for (i = 0; i < set->ngroups; i++) {
        const mg_cidr_group_t *g = &set->groups[i];
        uint8_t k[16];

        if (g->plen > a->plen) {
            continue;
        }
        memcpy(k, a->a, 16);
        mg_addr_mask_bytes(k, g->plen);
        if (mg_group_find(g, k) >= 0) {
            return 1;
        }
    }
    return 0;
}

size_t mg_cidrset_count(const mg_cidrset_t *set)
{
    return set ? set->total : 0;
}
