/*
 * The ban mirror (see mg_bantable.h).
 *
 * Layout of the region, all offsets, no pointers:
 *
 *   struct mg_bantable   header: magic, version, capacity, sizes, the flip
 *                        counter and per-table metadata (bitmaps, counts)
 *   slots[2][nslots]     two open-addressing tables of 32-byte slots
 *   filter[2][nslots]    a presence filter per table: 8 bits per slot
 *
 * nslots is the next power of two >= 2 * capacity, so a full table is at
 * most half used; tombstones are compacted away before used + tombstones
 * pass three quarters, so a probe always meets an empty slot soon.
 *
 * The presence filter is a one-hash Bloom filter over the same key hash
 * (its top bits; the slot index uses the low ones): 8 * nslots bits, so at
 * least 16 bits per entry the table can hold and at most one bit in 16 set
 * when it is full.  A lookup tests the key's bit before probing, so a
 * client that is not banned costs a hash and one load, not a seqlock read
 * of a slot (or several, when its home slot lies in a cluster).  A bit
 * says "maybe", a clear bit "certainly not".  Bits are only ever set,
 * except when a whole table is cleared for a rebuild or a compaction; a
 * deleted entry leaves its bit (a stale bit only costs one probe, and the
 * next rebuild drops it).
 *
 * Memory ordering (the whole reason this file is careful):
 *
 * - Each slot is a seqlock.  The single writer makes the counter odd
 *   (relaxed store), issues a release fence, stores the fields (relaxed
 *   atomics), then stores the next even counter with release.  A reader
 *   loads the counter with acquire, retries if it is odd, loads the fields
 *   (relaxed atomics), issues an acquire fence and loads the counter again:
 *   if any field came from a write after the writer's release fence, the
 *   fence pair makes the odd counter visible to that second load, so the
 *   two counter values differ and the copy is thrown away.  Equal values
 *   mean the copy is one the writer published whole.
 * - The live table never moves an entry: insert fills an empty slot or a
 *   tombstone, delete leaves a tombstone, an update rewrites the expiry in
 *   place.  So a reader probing the live table never misses an entry that
 *   was present for the whole probe.
 * - The spare table is rebuilt while nobody should read it, then published
 *   by a release store of flip + 1 (live = flip & 1).  A reader loads flip
 *   with acquire before probing and again after an acquire fence: an
 *   unchanged value proves the table it read was live throughout (a table
 *   is only rewritten after it stopped being live, which bumps flip).  A
 *   changed value means retry.  The counter never wraps in practice.
 * - Bitmaps of prefix lengths are set (release) before the first entry of
 *   a length is written and cleared after the last one is removed, so a
 *   reader never skips a length for which an entry is visible.
 * - A filter bit is set (atomic OR, release) before the slot write that
 *   publishes its entry, and is never cleared while its table is live (a
 *   delete leaves it).  So any insert that happens before a lookup has its
 *   bit visible to that lookup (coherence on the filter word), and a
 *   reader that found an entry by probing passes the bit on to whatever
 *   happens after it: a clear bit never hides an entry a probe would have
 *   found.  The reader loads the word with acquire, after its acquire load
 *   of flip and before the acquire fence of its flip re-check.
 * - Filters are cleared only inside mg_bt_clear(), on the spare table,
 *   which readers that started before the last flip may still be reading.
 *   A release fence comes first, then relaxed stores of zero; the flip
 *   that retired the table was stored before that fence.  A reader whose
 *   filter load returns a cleared word therefore synchronises through the
 *   fence pair (writer release fence, reader acquire fence before the flip
 *   re-check) with that flip store, sees flip changed and retries, exactly
 *   as for a slot cleared under it.  The rebuild's inserts come after the
 *   clear, so each again sets its bit before its slot is written.
 * - mg_bantable_lookup() tests only the filter bits of the client's
 *   present lengths first.  All clear, with flip unchanged across them
 *   (the same acquire fence and re-check), means "not banned" by the two
 *   points above.  A set bit or a changed flip hands over to the full
 *   lookup, which reads flip again and starts over, so the quick test adds
 *   no case of its own to the argument.
 * - Readers never wait on a writer for long: a slot whose counter stays odd
 *   (a writer that died mid-update) is skipped after a bounded spin rather
 *   than hanging every request; flip retries are bounded the same way.
 *   Such a slot heals on the next two full rebuilds, which rewrite every
 *   slot of both tables whose counter is odd.
 */
#include "mg_bantable.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MG_BT_MAGIC   0x4e42474dU /* "MGBN" */
#define MG_BT_VERSION 3U          /* 2: presence filters; 3: eviction state */
#define MG_BT_CAP_MAX (1U << 28)
#define MG_BT_SPIN    4096
#define MG_BT_FLIPS   64
/* Slots an eviction looks at (about half of them hold entries): enough to
 * find a short ban among long ones, cheap enough for every insert into a
 * full table. */
#define MG_BT_EVICT_SCAN 256
/* Filter bits per slot, as a power of two: 8 (see the layout above). */
#define MG_BT_FBITS_LOG2 3

/* The lookup path is a handful of small helpers; inlining them keeps an
 * unbanned lookup within its instruction budget. */
#define MG_BT_INLINE static inline __attribute__((always_inline))

enum {
    MG_SLOT_EMPTY = 0,
    MG_SLOT_USED = 1,
    MG_SLOT_TOMB = 2
};

typedef struct mg_bt_slot {
    uint32_t seq;  /* odd while the writer is inside */
    uint32_t tag;  /* state | plen << 8 */
    uint64_t k[2]; /* address as two big-endian words, host bits zero */
    int64_t expiry;
} mg_bt_slot_t;

typedef struct mg_bt_meta {
    uint64_t v4bits;          /* bit n: an IPv4 entry of family prefix n (0..32) */
    uint64_t v6bits[3];       /* bit n: an IPv6 entry of prefix n (0..128) */
    uint32_t used;            /* USED slots (readers may peek, relaxed) */
    uint32_t tombs;           /* writer only */
    uint32_t dirty;           /* writer only: a slot was written since the last clear */
    uint32_t per_len[2][129]; /* writer only: entries per [v4?][plen] */
} mg_bt_meta_t;

struct mg_bantable {
    uint32_t magic;
    uint32_t version;
    uint32_t capacity;
    uint32_t nslots;
    uint64_t size;          /* bytes of the whole region */
    uint64_t slots_off;     /* offset of table 0 from the header */
    uint64_t seed;          /* hash seed, fixed at init */
    uint32_t flip;          /* live table = flip & 1 (atomic) */
    uint32_t rebuilding;    /* writer only: a rebuild of the spare is open */
    uint64_t filter_off[2]; /* offset of each table's filter from the header */
    uint32_t filter_shift;  /* filter bit of a key = hash >> filter_shift */
    uint32_t evict_at;      /* writer only: where the next eviction search starts */
    uint64_t evicted;       /* entries dropped for longer bans (writer; read relaxed) */
    mg_bt_meta_t meta[2];
};

/* A reader's consistent copy of one slot. */
typedef struct mg_bt_view {
    uint32_t tag;
    uint64_t k0, k1;
    int64_t expiry;
} mg_bt_view_t;

typedef struct mg_bt_key {
    uint64_t k0, k1;
    unsigned plen;
    int v4;
} mg_bt_key_t;

static size_t mg_bt_header_size(void)
{
    return (sizeof(struct mg_bantable) + 63) & ~(size_t)63;
}

static uint32_t mg_bt_nslots(uint32_t capacity)
{
    uint32_t n = 8;

    while (n < 2 * capacity) {
        n <<= 1;
    }
    return n;
}

/* Bytes of one table's filter: 8 bits per slot, a whole number of
 * 64-bit words since nslots >= 8. */
static size_t mg_bt_filter_bytes(uint32_t nslots)
{
    return ((size_t)nslots << MG_BT_FBITS_LOG2) / 8;
}

size_t mg_bantable_size(uint32_t capacity)
{
    uint32_t n;

    if (capacity == 0 || capacity > MG_BT_CAP_MAX) {
        return 0;
    }
    n = mg_bt_nslots(capacity);
    return mg_bt_header_size() + 2 * (size_t)n * sizeof(mg_bt_slot_t)
           + 2 * mg_bt_filter_bytes(n);
}

static mg_bt_slot_t *mg_bt_table(const mg_bantable_t *t, unsigned which)
{
    return (mg_bt_slot_t *)((char *)(uintptr_t)t + t->slots_off) + (size_t)which * t->nslots;
}

static uint64_t *mg_bt_filter(const mg_bantable_t *t, unsigned which)
{
    return (uint64_t *)(void *)((char *)(uintptr_t)t + t->filter_off[which]);
}

/* 64 - log2(filter bits): the filter index is the hash's top bits. */
static uint32_t mg_bt_filter_shift(uint32_t nslots)
{
    return 64u - MG_BT_FBITS_LOG2 - (uint32_t)__builtin_ctz(nslots);
}

MG_BT_INLINE uint64_t mg_be64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void mg_put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* The prefix (128-bit space) of k0:k1 as two masked words. */
MG_BT_INLINE void mg_bt_mask(uint64_t k0, uint64_t k1, unsigned plen, uint64_t *m0,
                             uint64_t *m1)
{
    if (plen >= 128) {
        *m0 = k0;
        *m1 = k1;
    }
    else if (plen > 64) {
        *m0 = k0;
        *m1 = k1 & (~(uint64_t)0 << (128 - plen));
    }
    else if (plen == 64) {
        *m0 = k0;
        *m1 = 0;
    }
    else {
        *m0 = plen ? k0 & (~(uint64_t)0 << (64 - plen)) : 0;
        *m1 = 0;
    }
}

MG_BT_INLINE int mg_bt_is_v4(uint64_t k0, uint64_t k1, unsigned plen)
{
    return plen >= 96 && k0 == 0 && (k1 >> 32) == 0xffffU;
}

static void mg_bt_key_from(const mg_addr_t *a, mg_bt_key_t *k)
{
    uint64_t k0 = mg_be64(a->a), k1 = mg_be64(a->a + 8);

    k->plen = a->plen > 128 ? 128u : a->plen;
    mg_bt_mask(k0, k1, k->plen, &k->k0, &k->k1);
    k->v4 = mg_bt_is_v4(k->k0, k->k1, k->plen);
}

/* Two words and the length through a multiply-xorshift mix: a few
 * instructions, and every input bit reaches the low bits used as index. */
MG_BT_INLINE uint64_t mg_bt_hash(uint64_t seed, uint64_t k0, uint64_t k1, unsigned plen)
{
    uint64_t h = (k0 ^ seed) * 0x9e3779b97f4a7c15ULL;

    h ^= k1 + plen;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 29;
    return h;
}

/* ---- slot access ---- */

/* Reader, one attempt: 1 with a consistent copy, 0 when a writer was
 * inside the slot (the common case is this single pass, inlined). */
MG_BT_INLINE int mg_bt_read_once(const mg_bt_slot_t *s, mg_bt_view_t *v)
{
    uint32_t s1 = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);

    v->tag = __atomic_load_n(&s->tag, __ATOMIC_RELAXED);
    v->k0 = __atomic_load_n(&s->k[0], __ATOMIC_RELAXED);
    v->k1 = __atomic_load_n(&s->k[1], __ATOMIC_RELAXED);
    v->expiry = __atomic_load_n(&s->expiry, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return !(s1 & 1U) && __atomic_load_n(&s->seq, __ATOMIC_RELAXED) == s1;
}

/* Reader: 1 with a consistent copy, 0 after a bounded spin on a slot a
 * writer never finished (then the caller treats it as a tombstone). */
static int mg_bt_read(const mg_bt_slot_t *s, mg_bt_view_t *v)
{
    int tries;

    for (tries = 0; tries < MG_BT_SPIN; tries++) {
        if (mg_bt_read_once(s, v)) {
            return 1;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    return 0;
}

/* Writer (single, caller-serialised). */
static void mg_bt_write(mg_bt_slot_t *s, uint32_t tag, uint64_t k0, uint64_t k1, int64_t expiry)
{
    uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);

    /* A counter left odd by a writer that died is made even again first. */
    seq |= 1U;
    __atomic_store_n(&s->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->tag, tag, __ATOMIC_RELAXED);
    __atomic_store_n(&s->k[0], k0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->k[1], k1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->expiry, expiry, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 1U, __ATOMIC_RELEASE);
}

static void mg_bt_write_expiry(mg_bt_slot_t *s, int64_t expiry)
{
    uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED) | 1U;

    __atomic_store_n(&s->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->expiry, expiry, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 1U, __ATOMIC_RELEASE);
}

static void mg_bt_write_tag(mg_bt_slot_t *s, uint32_t tag)
{
    uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED) | 1U;

    __atomic_store_n(&s->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->tag, tag, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 1U, __ATOMIC_RELEASE);
}

/* ---- bitmaps and counts (writer) ---- */

static void mg_bt_len_add(mg_bt_meta_t *m, const mg_bt_key_t *k)
{
    if (m->per_len[k->v4][k->plen]++ != 0) {
        return;
    }
    if (k->v4) {
        __atomic_fetch_or(&m->v4bits, (uint64_t)1 << (k->plen - 96), __ATOMIC_RELEASE);
    }
    else {
        __atomic_fetch_or(&m->v6bits[k->plen / 64], (uint64_t)1 << (k->plen % 64),
                          __ATOMIC_RELEASE);
    }
}

static void mg_bt_len_del(mg_bt_meta_t *m, const mg_bt_key_t *k)
{
    if (--m->per_len[k->v4][k->plen] != 0) {
        return;
    }
    if (k->v4) {
        __atomic_fetch_and(&m->v4bits, ~((uint64_t)1 << (k->plen - 96)), __ATOMIC_RELEASE);
    }
    else {
        __atomic_fetch_and(&m->v6bits[k->plen / 64], ~((uint64_t)1 << (k->plen % 64)),
                           __ATOMIC_RELEASE);
    }
}

static void mg_bt_set_used(mg_bt_meta_t *m, uint32_t used)
{
    __atomic_store_n(&m->used, used, __ATOMIC_RELAXED);
}

/* ---- presence filter ---- */

/* Set k's bit in table which's filter: before the slot is written. */
static void mg_bt_filter_add(mg_bantable_t *t, unsigned which, const mg_bt_key_t *k)
{
    uint64_t h = mg_bt_hash(t->seed, k->k0, k->k1, k->plen) >> t->filter_shift;

    __atomic_fetch_or(&mg_bt_filter(t, which)[h >> 6], (uint64_t)1 << (h & 63),
                      __ATOMIC_RELEASE);
}

/* Reader: 0 when the key whose hash is h is certainly not in the table
 * whose filter is filt. */
MG_BT_INLINE int mg_bt_filter_maybe(const uint64_t *filt, uint32_t shift, uint64_t h)
{
    h >>= shift;
    return (int)((__atomic_load_n(&filt[h >> 6], __ATOMIC_ACQUIRE) >> (h & 63)) & 1U);
}

/* ---- probing ---- */

/*
 * Writer-side search in table which: the slot of k, or -1 with *ins set to
 * where it would go (first tombstone on the path, else the empty slot).
 * Only the writer stores into slots, so its own plain reads cannot race
 * (readers only read); the caller's lock orders it after earlier writers.
 */
static long mg_bt_find_w(mg_bantable_t *t, unsigned which, const mg_bt_key_t *k, long *ins)
{
    mg_bt_slot_t *tab = mg_bt_table(t, which);
    uint32_t mask = t->nslots - 1;
    uint32_t i = (uint32_t)mg_bt_hash(t->seed, k->k0, k->k1, k->plen) & mask;
    uint32_t tag = MG_SLOT_USED | (k->plen << 8);
    uint32_t n;

    *ins = -1;
    for (n = 0; n < t->nslots; n++, i = (i + 1) & mask) {
        uint32_t st = tab[i].tag & 0xffU;

        if (st == MG_SLOT_EMPTY) {
            if (*ins < 0) {
                *ins = (long)i;
            }
            return -1;
        }
        if (st == MG_SLOT_TOMB) {
            if (*ins < 0) {
                *ins = (long)i;
            }
            continue;
        }
        if (tab[i].tag == tag && tab[i].k[0] == k->k0 && tab[i].k[1] == k->k1) {
            return (long)i;
        }
    }
    return -1;
}

/*
 * Reader-side probe of one key in table which, once its filter bit said
 * "maybe" (h is the key's hash): 1 with the expiry when the key is there
 * (expired or not), 0 when the probe meets an empty slot.
 */
MG_BT_INLINE int mg_bt_find_r(const mg_bantable_t *t, unsigned which, uint64_t h, uint64_t k0,
                              uint64_t k1, unsigned plen, int64_t *expiry)
{
    const mg_bt_slot_t *tab = mg_bt_table(t, which);
    uint32_t mask = t->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    uint32_t want = MG_SLOT_USED | (plen << 8);
    uint32_t n;

    for (n = 0; n <= mask; n++, i = (i + 1) & mask) {
        mg_bt_view_t v;

        if (!mg_bt_read_once(&tab[i], &v) && !mg_bt_read(&tab[i], &v)) {
            continue;
        }
        if ((v.tag & 0xffU) == MG_SLOT_EMPTY) {
            return 0;
        }
        if (v.tag == want && v.k0 == k0 && v.k1 == k1) {
            *expiry = v.expiry;
            return 1;
        }
    }
    return 0;
}

/* ---- table maintenance (writer) ---- */

/*
 * Give the memory pages lying wholly inside [p, p + len) back to the
 * system: from then on they read as zero, in every process mapping them,
 * and cost nothing until written again.  Only shared memory allows it
 * (MADV_REMOVE); *lo..*hi is the byte range released (empty when none), the
 * caller clears the rest by hand.  A reader of a released page sees zeros,
 * exactly what clearing by hand would have written.
 */
static void mg_bt_release(void *p, size_t len, size_t *lo, size_t *hi)
{
    *lo = *hi = 0;
#if defined(__linux__) && defined(MADV_REMOVE)
    {
        long pg = sysconf(_SC_PAGESIZE);
        uintptr_t base = (uintptr_t)p, a, b;

        if (pg <= 0) {
            return;
        }
        a = (base + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
        b = (base + len) & ~((uintptr_t)pg - 1);
        if (b > a && madvise((void *)a, b - a, MADV_REMOVE) == 0) {
            *lo = a - base;
            *hi = b - base;
        }
    }
#else
    (void)p;
    (void)len;
#endif
}

static void mg_bt_clear(mg_bantable_t *t, unsigned which)
{
    mg_bt_slot_t *tab = mg_bt_table(t, which);
    mg_bt_meta_t *m = &t->meta[which];
    uint64_t *filt = mg_bt_filter(t, which);
    size_t w, nw = mg_bt_filter_bytes(t->nslots) / 8, lo, hi;
    uint32_t i;

    /* Orders the flip that retired this table before every zero a late
     * reader may load (see the header comment). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (m->dirty) {
        /* Most of a large table goes back to the system at once instead of
         * being written slot by slot, and a mostly empty one costs no
         * memory afterwards. */
        mg_bt_release(filt, nw * 8, &lo, &hi);
        for (w = 0; w < nw; w++) {
            if (w * 8 >= lo && w * 8 + 8 <= hi) {
                w = hi / 8 - 1; /* released: zero already */
                continue;
            }
            __atomic_store_n(&filt[w], 0, __ATOMIC_RELAXED);
        }
    }

    __atomic_store_n(&m->v4bits, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->v6bits[0], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->v6bits[1], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->v6bits[2], 0, __ATOMIC_RELAXED);
    mg_bt_set_used(m, 0);
    m->tombs = 0;
    memset(m->per_len, 0, sizeof(m->per_len));
    if (!m->dirty) {
        return; /* never written since it was last cleared: all empty */
    }
    mg_bt_release(tab, (size_t)t->nslots * sizeof(*tab), &lo, &hi);
    for (i = 0; i < t->nslots; i++) {
        size_t off = (size_t)i * sizeof(*tab);
        if (off >= lo && off + sizeof(*tab) <= hi) {
            i = (uint32_t)(hi / sizeof(*tab)) - 1;
            continue;
        }
        if (tab[i].tag != MG_SLOT_EMPTY || (tab[i].seq & 1U)) {
            mg_bt_write(&tab[i], MG_SLOT_EMPTY, 0, 0, 0);
        }
    }
    m->dirty = 0;
}

static int mg_bt_remove(mg_bantable_t *t, unsigned which, const mg_bt_key_t *k);

/*
 * Drop the entry that ends soonest among MG_BT_EVICT_SCAN slots (the
 * window moves on at every call, so successive evictions sample the whole
 * table), provided it ends before expiry.  Ended entries, having the
 * smallest expiries, go first.  -1 when every entry seen lasts at least as
 * long: the new ban is the one left out.
 */
static int mg_bt_evict(mg_bantable_t *t, unsigned which, int64_t expiry)
{
    mg_bt_slot_t *tab = mg_bt_table(t, which);
    uint32_t mask = t->nslots - 1, start = t->evict_at & mask, n;
    long best = -1;
    int64_t best_exp = expiry;
    mg_bt_key_t k;

    for (n = 0; n < MG_BT_EVICT_SCAN && n <= mask; n++) {
        uint32_t i = (start + n) & mask;
        if ((tab[i].tag & 0xffU) == MG_SLOT_USED && tab[i].expiry < best_exp) {
            best = (long)i;
            best_exp = tab[i].expiry;
        }
    }
    t->evict_at = (start + n) & mask;
    if (best < 0) {
        return -1;
    }
    k.k0 = tab[best].k[0];
    k.k1 = tab[best].k[1];
    k.plen = tab[best].tag >> 8;
    k.v4 = mg_bt_is_v4(k.k0, k.k1, k.plen);
    mg_bt_remove(t, which, &k);
    __atomic_store_n(&t->evicted, t->evicted + 1, __ATOMIC_RELAXED);
    return 0;
}

/*
 * Insert or update k in table which.  max_fill bounds used + tombstones
 * after the insert (the probe-length guarantee).  Returns 0, or -1 when
 * the table holds capacity entries or is too crowded to insert.
 */
static int mg_bt_insert(mg_bantable_t *t, unsigned which, const mg_bt_key_t *k, int64_t expiry,
                        uint32_t max_fill)
{
    mg_bt_meta_t *m = &t->meta[which];
    mg_bt_slot_t *tab = mg_bt_table(t, which);
    long ins, at = mg_bt_find_w(t, which, k, &ins);

    if (at >= 0) {
        if (expiry > tab[at].expiry) {
            mg_bt_write_expiry(&tab[at], expiry);
        }
        return 0;
    }
    if (m->used >= t->capacity) {
        /* Full: make room by dropping a ban that ends sooner, so neither
         * an attacker's flood of short bans nor their order can push out
         * a long or permanent one. */
        if (mg_bt_evict(t, which, expiry) != 0) {
            return -1;
        }
        (void)mg_bt_find_w(t, which, k, &ins);
    }
    if (ins < 0) {
        return -1;
    }
    if ((tab[ins].tag & 0xffU) == MG_SLOT_TOMB) {
        m->tombs--;
    }
    else if (m->used + m->tombs + 1 > max_fill) {
        return -1;
    }
    m->dirty = 1;
    /* The length bit and the filter bit go up before the entry can be
     * seen. */
    mg_bt_len_add(m, k);
    mg_bt_filter_add(t, which, k);
    mg_bt_write(&tab[ins], MG_SLOT_USED | (k->plen << 8), k->k0, k->k1, expiry);
    mg_bt_set_used(m, m->used + 1);
    return 0;
}

static int mg_bt_remove(mg_bantable_t *t, unsigned which, const mg_bt_key_t *k)
{
    mg_bt_meta_t *m = &t->meta[which];
    long ins, at = mg_bt_find_w(t, which, k, &ins);

    if (at < 0) {
        return 0;
    }
    mg_bt_write_tag(&mg_bt_table(t, which)[at], MG_SLOT_TOMB);
    mg_bt_set_used(m, m->used - 1);
    m->tombs++;
    /* The length bit goes down only after its last entry is gone. */
    mg_bt_len_del(m, k);
    return 1;
}

static unsigned mg_bt_live(const mg_bantable_t *t)
{
    return __atomic_load_n(&t->flip, __ATOMIC_ACQUIRE) & 1U;
}

static void mg_bt_publish(mg_bantable_t *t)
{
    __atomic_store_n(&t->flip, t->flip + 1U, __ATOMIC_RELEASE);
}

/* Copy every used slot of src table into dst table (both of t). */
static void mg_bt_transfer(mg_bantable_t *t, unsigned src, unsigned dst)
{
    mg_bt_slot_t *tab = mg_bt_table(t, src);
    uint32_t i;

    for (i = 0; i < t->nslots; i++) {
        if ((tab[i].tag & 0xffU) == MG_SLOT_USED) {
            mg_bt_key_t k;

            k.k0 = tab[i].k[0];
            k.k1 = tab[i].k[1];
            k.plen = tab[i].tag >> 8;
            k.v4 = mg_bt_is_v4(k.k0, k.k1, k.plen);
            (void)mg_bt_insert(t, dst, &k, tab[i].expiry, t->nslots - 1);
        }
    }
}

/* Rebuild the live table without its tombstones and make the copy live. */
static void mg_bt_compact(mg_bantable_t *t)
{
    unsigned live = t->flip & 1U;

    mg_bt_clear(t, live ^ 1U);
    mg_bt_transfer(t, live, live ^ 1U);
    mg_bt_publish(t);
}

/* ---- public ---- */

static int mg_bt_region_ok(const void *mem, size_t size, uint32_t capacity)
{
    size_t need = mg_bantable_size(capacity);

    /* 8-byte alignment is what the atomics need; callers give more. */
    return mem != NULL && need != 0 && size >= need && ((uintptr_t)mem % 8) == 0;
}

/* The header of a table whose region is already all zero. */
static mg_bantable_t *mg_bt_format(void *mem, uint32_t capacity)
{
    mg_bantable_t *t = mem;
    struct timespec ts;
    unsigned i;

    memset(t, 0, sizeof(*t));
    t->magic = MG_BT_MAGIC;
    t->version = MG_BT_VERSION;
    t->capacity = capacity;
    t->nslots = mg_bt_nslots(capacity);
    t->size = mg_bantable_size(capacity);
    t->slots_off = mg_bt_header_size();
    t->filter_off[0] = t->slots_off + 2 * (uint64_t)t->nslots * sizeof(mg_bt_slot_t);
    t->filter_off[1] = t->filter_off[0] + mg_bt_filter_bytes(t->nslots);
    t->filter_shift = mg_bt_filter_shift(t->nslots);
    /* The seed only spreads keys; it need not be secret, just not fixed
     * across installations. */
    clock_gettime(CLOCK_REALTIME, &ts);
    t->seed = mg_bt_hash((uint64_t)ts.tv_nsec, (uint64_t)ts.tv_sec, (uint64_t)getpid(), 0);
    for (i = 0; i < 2; i++) {
        mg_bt_set_used(&t->meta[i], 0);
    }
    return t;
}

mg_bantable_t *mg_bantable_init(void *mem, size_t size, uint32_t capacity)
{
    if (!mg_bt_region_ok(mem, size, capacity)) {
        return NULL;
    }
    memset(mem, 0, mg_bantable_size(capacity));
    return mg_bt_format(mem, capacity);
}

mg_bantable_t *mg_bantable_init_zeroed(void *mem, size_t size, uint32_t capacity)
{
    if (!mg_bt_region_ok(mem, size, capacity)) {
        return NULL;
    }
    return mg_bt_format(mem, capacity);
}

mg_bantable_t *mg_bantable_attach(void *mem, size_t size, uint32_t capacity)
{
    mg_bantable_t *t = mem;
    unsigned i;

    if (!mg_bt_region_ok(mem, size, capacity)) {
        return NULL;
    }
    if (t->magic != MG_BT_MAGIC || t->version != MG_BT_VERSION || t->capacity != capacity
        || t->nslots != mg_bt_nslots(capacity) || t->size != mg_bantable_size(capacity)
        || t->slots_off != mg_bt_header_size()
        || t->filter_off[0] != t->slots_off + 2 * (uint64_t)t->nslots * sizeof(mg_bt_slot_t)
        || t->filter_off[1] != t->filter_off[0] + mg_bt_filter_bytes(t->nslots)
        || t->filter_shift != mg_bt_filter_shift(t->nslots)) {
        return NULL;
    }
    for (i = 0; i < 2; i++) {
        if (t->meta[i].used > capacity || t->meta[i].tombs >= t->nslots) {
            return NULL;
        }
    }
    /* A writer of the previous generation may have died inside a rebuild:
     * the spare is cleared by the next one anyway. */
    t->rebuilding = 0;
    return t;
}

/*
 * Probe every length in bits (bit n = prefix base + n), longest first, in
 * table which (filt is its filter); 1 with the expiry of the first live
 * match.
 */
MG_BT_INLINE int mg_bt_scan(const mg_bantable_t *t, unsigned which, const uint64_t *filt,
                            uint64_t k0, uint64_t k1, uint64_t bits, unsigned base,
                            unsigned cplen, int64_t now, int64_t *expiry)
{
    while (bits) {
        unsigned b = 63u - (unsigned)__builtin_clzll(bits);
        unsigned plen = base + b;
        uint64_t m0, m1, h;
        int64_t e = 0;

        bits ^= (uint64_t)1 << b;
        if (plen > cplen) {
            continue;
        }
        mg_bt_mask(k0, k1, plen, &m0, &m1);
        h = mg_bt_hash(t->seed, m0, m1, plen);
        if (mg_bt_filter_maybe(filt, t->filter_shift, h)
            && mg_bt_find_r(t, which, h, m0, m1, plen, &e) && e > now) {
            *expiry = e;
            return 1;
        }
    }
    return 0;
}

/*
 * The whole lookup: every present length of the client's family, filter
 * then slots, retried while the live table changes under it.
 */
static __attribute__((noinline)) int mg_bt_lookup_full(const mg_bantable_t *t, uint64_t k0,
                                                       uint64_t k1, unsigned cplen, int v4,
                                                       int64_t now, int64_t *expiry)
{
    int found = 0, attempt;
    int64_t exp = 0;

    for (attempt = 0; attempt < MG_BT_FLIPS; attempt++) {
        uint32_t f1 = __atomic_load_n(&t->flip, __ATOMIC_ACQUIRE);
        unsigned which = f1 & 1U;
        const mg_bt_meta_t *m = &t->meta[which];
        const uint64_t *filt = mg_bt_filter(t, which);

        /* Only lengths present in the client's family, longest first. */
        if (v4) {
            found =
                mg_bt_scan(t, which, filt, k0, k1,
                           __atomic_load_n(&m->v4bits, __ATOMIC_ACQUIRE), 96, cplen, now, &exp);
        }
        else {
            found = mg_bt_scan(t, which, filt, k0, k1,
                               __atomic_load_n(&m->v6bits[2], __ATOMIC_ACQUIRE), 128, cplen,
                               now, &exp)
                    || mg_bt_scan(t, which, filt, k0, k1,
                                  __atomic_load_n(&m->v6bits[1], __ATOMIC_ACQUIRE), 64, cplen,
                                  now, &exp)
                    || mg_bt_scan(t, which, filt, k0, k1,
                                  __atomic_load_n(&m->v6bits[0], __ATOMIC_ACQUIRE), 0, cplen,
                                  now, &exp);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->flip, __ATOMIC_RELAXED) == f1) {
            break;
        }
    }
    if (found && expiry) {
        *expiry = exp;
    }
    return found;
}

/* 1 when the filter of filt's table says "maybe" for any length in bits
 * (as mg_bt_scan numbers them) that the client can fall under. */
MG_BT_INLINE int mg_bt_filter_any(const mg_bantable_t *t, const uint64_t *filt, uint64_t k0,
                                  uint64_t k1, uint64_t bits, unsigned base, unsigned cplen)
{
    while (bits) {
        unsigned b = 63u - (unsigned)__builtin_clzll(bits);
        unsigned plen = base + b;
        uint64_t m0, m1;

        bits ^= (uint64_t)1 << b;
        if (plen > cplen) {
            continue;
        }
        mg_bt_mask(k0, k1, plen, &m0, &m1);
        if (mg_bt_filter_maybe(filt, t->filter_shift, mg_bt_hash(t->seed, m0, m1, plen))) {
            return 1;
        }
    }
    return 0;
}

static __attribute__((noinline)) int mg_bt_filter_any_v6(const mg_bantable_t *t, unsigned which,
                                                         uint64_t k0, uint64_t k1,
                                                         unsigned cplen)
{
    const mg_bt_meta_t *m = &t->meta[which];
    const uint64_t *filt = mg_bt_filter(t, which);

    return mg_bt_filter_any(t, filt, k0, k1, __atomic_load_n(&m->v6bits[2], __ATOMIC_ACQUIRE),
                            128, cplen)
           || mg_bt_filter_any(t, filt, k0, k1,
                               __atomic_load_n(&m->v6bits[1], __ATOMIC_ACQUIRE), 64, cplen)
           || mg_bt_filter_any(t, filt, k0, k1,
                               __atomic_load_n(&m->v6bits[0], __ATOMIC_ACQUIRE), 0, cplen);
}

/*
 * Filters first: a client none of whose lengths passes the filter of the
 * live table is not banned, provided that table stayed live throughout
 * (flip re-checked after an acquire fence, as in the full lookup).
 * Anything else (a "maybe", a flip) takes the full lookup, which starts
 * over on its own.
 */
static __attribute__((noinline)) int mg_bt_lookup_filtered(const mg_bantable_t *t, uint64_t k0,
                                                           uint64_t k1, unsigned cplen,
                                                           int64_t now, int64_t *expiry)
{
    int v4 = mg_bt_is_v4(k0, k1, cplen);
    uint32_t f1 = __atomic_load_n(&t->flip, __ATOMIC_ACQUIRE);
    unsigned which = f1 & 1U;
    int maybe;

    if (v4) {
        maybe = mg_bt_filter_any(t, mg_bt_filter(t, which), k0, k1,
                                 __atomic_load_n(&t->meta[which].v4bits, __ATOMIC_ACQUIRE), 96,
                                 cplen);
    }
    else {
        maybe = mg_bt_filter_any_v6(t, which, k0, k1, cplen);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (!maybe && __atomic_load_n(&t->flip, __ATOMIC_RELAXED) == f1) {
        return 0;
    }
    return mg_bt_lookup_full(t, k0, k1, cplen, v4, now, expiry);
}

/*
 * The shape of nearly every request: an IPv4 client, and a table whose
 * IPv4 entries are all hosts (the module bans hosts; a prefix comes only
 * from an operator).  Then there is one key to test, the address itself,
 * and its filter bit decides without the bitmap walk.  Every other shape
 * goes through mg_bt_lookup_filtered(), which also covers this one.
 */
int mg_bantable_lookup(const mg_bantable_t *t, const mg_addr_t *client, int64_t now,
                       int64_t *expiry)
{
    uint64_t k0 = mg_be64(client->a), k1 = mg_be64(client->a + 8);

    if (client->plen >= 128 && k0 == 0 && (k1 >> 32) == 0xffffU) {
        uint32_t f1 = __atomic_load_n(&t->flip, __ATOMIC_ACQUIRE);
        unsigned which = f1 & 1U;
        uint64_t bits = __atomic_load_n(&t->meta[which].v4bits, __ATOMIC_ACQUIRE);

        if (bits == (uint64_t)1 << 32
            && !mg_bt_filter_maybe(mg_bt_filter(t, which), t->filter_shift,
                                   mg_bt_hash(t->seed, 0, k1, 128))) {
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&t->flip, __ATOMIC_RELAXED) == f1) {
                return 0;
            }
        }
    }
    return mg_bt_lookup_filtered(t, k0, k1, client->plen > 128 ? 128u : client->plen, now,
                                 expiry);
}

int mg_bantable_put(mg_bantable_t *t, const mg_addr_t *key, int64_t expiry)
{
    mg_bt_key_t k;
    unsigned live = t->flip & 1U;
    mg_bt_meta_t *m = &t->meta[live];
    int rc;

    if (key->plen == 0 || key->plen > 128) {
        return -1;
    }
    mg_bt_key_from(key, &k);
    /* Keep used + tombstones at or below 3/4 of the slots: compact first
     * when an insert would cross it (impossible mid-rebuild, where the
     * spare is taken: then allow up to all but one slot). */
    if (!t->rebuilding && (m->used + m->tombs + 1) * 4 > t->nslots * 3 && m->tombs > 0) {
        mg_bt_compact(t);
        live = t->flip & 1U;
    }
    rc = mg_bt_insert(t, live, &k, expiry, t->rebuilding ? t->nslots - 1 : t->nslots / 4 * 3);
    if (rc == 0 && t->rebuilding) {
        /* A ban made during a resync must survive its commit. */
        (void)mg_bt_insert(t, live ^ 1U, &k, expiry, t->nslots / 4 * 3);
    }
    return rc;
}

int mg_bantable_del(mg_bantable_t *t, const mg_addr_t *key)
{
    mg_bt_key_t k;
    unsigned live = t->flip & 1U;
    int rc;

    if (key->plen == 0 || key->plen > 128) {
        return 0;
    }
    mg_bt_key_from(key, &k);
    rc = mg_bt_remove(t, live, &k);
    if (t->rebuilding) {
        rc |= mg_bt_remove(t, live ^ 1U, &k);
    }
    return rc;
}

void mg_bantable_rebuild_begin(mg_bantable_t *t)
{
    mg_bt_clear(t, (t->flip & 1U) ^ 1U);
    t->rebuilding = 1;
}

int mg_bantable_rebuild_add(mg_bantable_t *t, const mg_addr_t *key, int64_t expiry)
{
    mg_bt_key_t k;

    if (!t->rebuilding || key->plen == 0 || key->plen > 128) {
        return -1;
    }
    mg_bt_key_from(key, &k);
    return mg_bt_insert(t, (t->flip & 1U) ^ 1U, &k, expiry, t->nslots / 4 * 3);
}

void mg_bantable_rebuild_commit(mg_bantable_t *t)
{
    if (!t->rebuilding) {
        return;
    }
    t->rebuilding = 0;
    mg_bt_publish(t);
}

void mg_bantable_rebuild_abort(mg_bantable_t *t)
{
    /* The spare is cleared by the next rebuild_begin; readers never look
     * at it. */
    t->rebuilding = 0;
}

int mg_bantable_rebuild_has(mg_bantable_t *t, const mg_addr_t *key)
{
    mg_bt_key_t k;
    long ins;

    if (!t->rebuilding || key->plen == 0 || key->plen > 128) {
        return 0;
    }
    mg_bt_key_from(key, &k);
    return mg_bt_find_w(t, (t->flip & 1U) ^ 1U, &k, &ins) >= 0;
}

uint64_t mg_bantable_evicted(const mg_bantable_t *t)
{
    return __atomic_load_n(&t->evicted, __ATOMIC_RELAXED);
}

int mg_bantable_filter_maybe(const mg_bantable_t *t, const mg_addr_t *key)
{
    mg_bt_key_t k;
    unsigned live = mg_bt_live(t);

    if (key->plen == 0 || key->plen > 128) {
        return 0;
    }
    mg_bt_key_from(key, &k);
    return mg_bt_filter_maybe(mg_bt_filter(t, live), t->filter_shift,
                              mg_bt_hash(t->seed, k.k0, k.k1, k.plen));
}

uint32_t mg_bantable_count(const mg_bantable_t *t)
{
    return __atomic_load_n(&t->meta[mg_bt_live(t)].used, __ATOMIC_RELAXED);
}

uint32_t mg_bantable_capacity(const mg_bantable_t *t)
{
    return t->capacity;
}

void mg_bantable_foreach(const mg_bantable_t *t, int64_t now, mg_bantable_visit_fn fn,
                         void *baton)
{
    const mg_bt_slot_t *tab = mg_bt_table(t, mg_bt_live(t));
    uint32_t i;

    for (i = 0; i < t->nslots; i++) {
        mg_bt_view_t v;
        mg_addr_t a;

        if (!mg_bt_read(&tab[i], &v) || (v.tag & 0xffU) != MG_SLOT_USED || v.expiry <= now) {
            continue;
        }
        mg_put_be64(a.a, v.k0);
        mg_put_be64(a.a + 8, v.k1);
        a.plen = (uint8_t)(v.tag >> 8);
        if (fn(baton, &a, v.expiry)) {
            return;
        }
    }
}

typedef struct mg_bt_copy_baton {
    mg_bantable_t *dst;
    size_t n;
} mg_bt_copy_baton_t;

static int mg_bt_copy_one(void *baton, const mg_addr_t *key, int64_t expiry)
{
    mg_bt_copy_baton_t *b = baton;

    if (mg_bantable_put(b->dst, key, expiry) == 0) {
        b->n++;
    }
    return 0;
}

size_t mg_bantable_copy(mg_bantable_t *dst, const mg_bantable_t *src, int64_t now)
{
    mg_bt_copy_baton_t b = { dst, 0 };

    if (!dst || !src || dst == src) {
        return 0;
    }
    mg_bantable_foreach(src, now, mg_bt_copy_one, &b);
    return b.n;
}
