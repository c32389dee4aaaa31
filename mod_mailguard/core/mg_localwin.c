/*
 * Local failure windows and the pending-ban queue (see mg_localwin.h).
 *
 * Layout of the region, offsets only so any mapping address works:
 *
 *   struct mg_localwin     header: magic, version, sizes, queue indexes
 *   entries[entries]       one per (jail, ban key)
 *   queue[queue]           ring of mg_pending_ban_t
 *
 * Entries are found by hashing (jail, key) and probing at most
 * MG_LW_PROBE consecutive slots.  Entries are never deleted, only
 * replaced, so a probe may stop at the first empty slot; when the probe
 * window is full the entry touched longest ago is evicted.  Eviction only
 * ever forgets failures (and history), so it can delay a ban but never
 * cause a wrong one, and an attacker with many addresses cannot grow the
 * table or lengthen a probe.
 *
 * The semantics follow record_failure.lua:
 * - a failure at t counts for failures at t' with t <= t' < t + findtime;
 * - reaching maxretry clears the window and bans for
 *   mg_policy_ban_seconds(previous bans), unless this entry's previous
 *   ban is still running (then the burst was already dealt with);
 * - the history of bans is forgotten max(30 days, 2 * maxtime) after the
 *   last ban.  Locally the history is per (jail, key) while Redis keeps it
 *   per key: the local count can only be lower, hence the ban shorter.
 *
 * maxretry above MG_LOCALWIN_MAXRETRY: a window keeps at most that many
 * timestamps (the oldest is dropped when it is full), so its count can
 * never reach maxretry and no local ban is ever made for such a jail.
 * Banning at the saturated count would ban users the configuration
 * allows; while Redis is reachable its exact count still bans.
 *
 * Writers are serialised by the caller's lock; nothing here is read
 * without it, so plain loads and stores suffice.
 */
#include "mg_localwin.h"

#include <string.h>

#define MG_LW_MAGIC       0x4e574c4dU /* "MLWN" */
#define MG_LW_VERSION     1U
#define MG_LW_PROBE       16U
#define MG_LW_MAX         (1U << 24)
#define MG_LW_HISTORY_MIN ((int64_t)30 * 86400)

typedef struct mg_lw_entry {
    char jail[MG_JAIL_BUF];
    uint8_t key[16];
    uint8_t plen;
    uint8_t used;
    uint8_t n; /* timestamps in ts[0..n-1], any order */
    uint8_t pad;
    uint32_t bans;        /* local ban history */
    int64_t last_touch;   /* newest failure seen: eviction order */
    int64_t last_ban;     /* when the last local ban was made */
    int64_t banned_until; /* expiry of that ban */
    int64_t ts[MG_LOCALWIN_MAXRETRY];
} mg_lw_entry_t;

struct mg_localwin {
    uint32_t magic;
    uint32_t version;
    uint32_t entries;
    uint32_t queue;
    uint64_t size;
    uint64_t ent_off;
    uint64_t q_off;
    uint32_t q_head; /* oldest pending ban */
    uint32_t q_count;
    uint32_t used; /* entries in use */
    uint32_t pad;
    uint64_t evicted; /* entries replaced while in use */
    uint64_t dropped; /* pending bans pushed out of a full queue */
};

static size_t mg_lw_header_size(void)
{
    return (sizeof(struct mg_localwin) + 63) & ~(size_t)63;
}

size_t mg_localwin_size(uint32_t entries, uint32_t queue)
{
    if (entries == 0 || entries > MG_LW_MAX || queue > MG_LW_MAX) {
        return 0;
    }
    return mg_lw_header_size() + (size_t)entries * sizeof(mg_lw_entry_t)
           + (size_t)queue * sizeof(mg_pending_ban_t);
}

static mg_lw_entry_t *mg_lw_entries(mg_localwin_t *w)
{
    return (mg_lw_entry_t *)((char *)w + w->ent_off);
}

static mg_pending_ban_t *mg_lw_queue(mg_localwin_t *w)
{
    return (mg_pending_ban_t *)((char *)w + w->q_off);
}

static int mg_lw_region_ok(const void *mem, size_t size, uint32_t entries, uint32_t queue)
{
    size_t need = mg_localwin_size(entries, queue);

    return mem != NULL && need != 0 && size >= need && ((uintptr_t)mem % 8) == 0;
}

mg_localwin_t *mg_localwin_init(void *mem, size_t size, uint32_t entries, uint32_t queue)
{
    mg_localwin_t *w = mem;

    if (!mg_lw_region_ok(mem, size, entries, queue)) {
        return NULL;
    }
    memset(mem, 0, mg_localwin_size(entries, queue));
    w->magic = MG_LW_MAGIC;
    w->version = MG_LW_VERSION;
    w->entries = entries;
    w->queue = queue;
    w->size = mg_localwin_size(entries, queue);
    w->ent_off = mg_lw_header_size();
    w->q_off = w->ent_off + (uint64_t)entries * sizeof(mg_lw_entry_t);
    return w;
}

mg_localwin_t *mg_localwin_attach(void *mem, size_t size, uint32_t entries, uint32_t queue)
{
    mg_localwin_t *w = mem;

    if (!mg_lw_region_ok(mem, size, entries, queue)) {
        return NULL;
    }
    if (w->magic != MG_LW_MAGIC || w->version != MG_LW_VERSION || w->entries != entries
        || w->queue != queue || w->size != mg_localwin_size(entries, queue)
        || w->ent_off != mg_lw_header_size()
        || w->q_off != w->ent_off + (uint64_t)entries * sizeof(mg_lw_entry_t)
        || w->used > entries || w->q_count > queue || (queue && w->q_head >= queue)) {
        return NULL;
    }
    return w;
}

/* FNV-1a over the jail name and the key: writer path only, so simplicity
 * wins over speed. */
static uint32_t mg_lw_hash(const char *jail, size_t jlen, const mg_addr_t *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < jlen; i++) {
        h = (h ^ (uint8_t)jail[i]) * 0x100000001b3ULL;
    }
    h = (h ^ 0xff) * 0x100000001b3ULL;
    for (i = 0; i < 16; i++) {
        h = (h ^ key->a[i]) * 0x100000001b3ULL;
    }
    h = (h ^ key->plen) * 0x100000001b3ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static int mg_lw_match(const mg_lw_entry_t *e, const char *jail, size_t jlen,
                       const mg_addr_t *key)
{
    return e->plen == key->plen && memcmp(e->key, key->a, 16) == 0
           && memcmp(e->jail, jail, jlen + 1) == 0;
}

/* The entry of (jail, key), claimed (empty or evicted) when absent. */
static mg_lw_entry_t *mg_lw_slot(mg_localwin_t *w, const char *jail, size_t jlen,
                                 const mg_addr_t *key)
{
    mg_lw_entry_t *ent = mg_lw_entries(w);
    uint32_t probe = w->entries < MG_LW_PROBE ? w->entries : MG_LW_PROBE;
    uint32_t start = mg_lw_hash(jail, jlen, key) % w->entries;
    /* the first slot probed until an older one is seen (entries >= 1) */
    mg_lw_entry_t *victim = &ent[start], *e;
    uint32_t i;

    for (i = 0; i < probe; i++) {
        e = &ent[(start + i) % w->entries];
        if (!e->used) {
            w->used++;
            victim = e;
            goto claim;
        }
        if (mg_lw_match(e, jail, jlen, key)) {
            return e;
        }
        if (e->last_touch < victim->last_touch) {
            victim = e;
        }
    }
    w->evicted++;

claim:
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->jail, jail, jlen + 1);
    memcpy(victim->key, key->a, 16);
    victim->plen = key->plen;
    victim->used = 1;
    return victim;
}

int mg_localwin_record(mg_localwin_t *w, const char *jail, const mg_addr_t *key, int64_t now,
                       const mg_policy_t *pol, mg_record_result_t *res)
{
    mg_lw_entry_t *e;
    int64_t cutoff, keep;
    size_t jlen;
    unsigned i, n;

    if (!w || !jail || !key || !pol || !res) {
        return -1;
    }
    jlen = strnlen(jail, MG_JAIL_BUF);
    if (jlen == 0 || jlen >= MG_JAIL_BUF || key->plen == 0 || key->plen > 128
        || pol->maxretry == 0 || pol->findtime < 1 || pol->bantime < 1) {
        return -1;
    }
    memset(res, 0, sizeof(*res));
    e = mg_lw_slot(w, jail, jlen, key);
    if (now > e->last_touch) {
        e->last_touch = now;
    }

    keep = pol->maxtime > INT64_MAX / 2           ? INT64_MAX
           : pol->maxtime > MG_LW_HISTORY_MIN / 2 ? pol->maxtime * 2
                                                  : MG_LW_HISTORY_MIN;
    if (e->bans && now - e->last_ban > keep) {
        e->bans = 0;
    }

    /* Drop what left the window; times may arrive slightly out of order
     * (several processes), so filter rather than pop from one end. */
    cutoff = now - pol->findtime;
    for (i = 0, n = 0; i < e->n; i++) {
        if (e->ts[i] > cutoff) {
            e->ts[n++] = e->ts[i];
        }
    }
    if (n == MG_LOCALWIN_MAXRETRY) {
        /* Full: forget the oldest.  The count saturates (see above). */
        unsigned oldest = 0;

        for (i = 1; i < n; i++) {
            if (e->ts[i] < e->ts[oldest]) {
                oldest = i;
            }
        }
        e->ts[oldest] = e->ts[--n];
    }
    e->ts[n++] = now;
    e->n = (uint8_t)n;
    res->count = n;

    if (pol->maxretry > MG_LOCALWIN_MAXRETRY || n < pol->maxretry) {
        return 0;
    }
    e->n = 0;
    if (now < e->banned_until) {
        /* Failures in flight when the running ban was made. */
        return 0;
    }
    {
        int64_t secs = mg_policy_ban_seconds(pol, e->bans);

        res->expiry = secs > MG_EXPIRY_NEVER - now ? MG_EXPIRY_NEVER : now + secs;
    }
    e->bans++;
    e->last_ban = now;
    e->banned_until = res->expiry;
    res->banned = 1;
    res->bans = e->bans;
    return 0;
}

void mg_localwin_queue_ban(mg_localwin_t *w, const mg_addr_t *key, int64_t expiry,
                           const char *jail)
{
    mg_pending_ban_t *q;

    if (!w || !key || w->queue == 0) {
        return;
    }
    q = mg_lw_queue(w);
    if (w->q_count == w->queue) {
        /* Drop the oldest: it is still enforced here, and the periodic
         * resync makes the newest ones the most useful to carry. */
        w->q_head = (w->q_head + 1) % w->queue;
        w->q_count--;
        w->dropped++;
    }
    q = &q[(w->q_head + w->q_count) % w->queue];
    memset(q, 0, sizeof(*q));
    q->key = *key;
    q->expiry = expiry;
    if (jail) {
        size_t len = strnlen(jail, MG_JAIL_NAME_MAX);

        memcpy(q->jail, jail, len);
    }
    w->q_count++;
}

int mg_localwin_pop_ban(mg_localwin_t *w, mg_pending_ban_t *out)
{
    if (!w || !out || w->q_count == 0) {
        return 0;
    }
    *out = mg_lw_queue(w)[w->q_head];
    w->q_head = (w->q_head + 1) % w->queue;
    w->q_count--;
    return 1;
}

uint32_t mg_localwin_pending(const mg_localwin_t *w)
{
    return w ? w->q_count : 0;
}

void mg_localwin_foreach_pending(const mg_localwin_t *w, mg_localwin_pending_fn fn, void *baton)
{
    const mg_pending_ban_t *q;
    uint32_t i;

    if (!w || !fn) {
        return;
    }
    q = mg_lw_queue((mg_localwin_t *)(uintptr_t)w);
    for (i = 0; i < w->q_count; i++) {
        if (fn(baton, &q[(w->q_head + i) % w->queue]) != 0) {
            return;
        }
    }
}
