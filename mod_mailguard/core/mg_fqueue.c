/*
 * Failures waiting for Redis (see mg_fqueue.h).
 *
 * Layout: the header, then capacity entries; offsets only, so any mapping
 * address (and a region kept from a previous httpd generation) works.
 */
#include "mg_fqueue.h"

#include <string.h>

#define MG_FQ_MAGIC   0x5146474dU /* "MGFQ" */
#define MG_FQ_VERSION 1U
#define MG_FQ_MAX     (1U << 24)

struct mg_fqueue {
    uint32_t magic;
    uint32_t version;
    uint32_t capacity;
    uint32_t head;  /* oldest entry */
    uint32_t count; /* read unlocked by status pages: atomic loads/stores */
    uint32_t pad;
    uint64_t dropped;
    uint64_t ent_off;
};

static size_t mg_fq_header(void)
{
    return (sizeof(struct mg_fqueue) + 63) & ~(size_t)63;
}

size_t mg_fqueue_size(uint32_t capacity)
{
    if (capacity == 0 || capacity > MG_FQ_MAX) {
        return 0;
    }
    return mg_fq_header() + (size_t)capacity * sizeof(mg_pending_failure_t);
}

static mg_pending_failure_t *mg_fq_entries(mg_fqueue_t *q)
{
    return (mg_pending_failure_t *)(void *)((char *)q + q->ent_off);
}

mg_fqueue_t *mg_fqueue_init(void *mem, size_t size, uint32_t capacity)
{
    mg_fqueue_t *q = mem;
    size_t need = mg_fqueue_size(capacity);

    if (mem == NULL || need == 0 || size < need || ((uintptr_t)mem % 8) != 0) {
        return NULL;
    }
    memset(q, 0, sizeof(*q));
    q->magic = MG_FQ_MAGIC;
    q->version = MG_FQ_VERSION;
    q->capacity = capacity;
    q->ent_off = mg_fq_header();
    return q;
}

mg_fqueue_t *mg_fqueue_attach(void *mem, size_t size, uint32_t capacity)
{
    mg_fqueue_t *q = mem;
    size_t need = mg_fqueue_size(capacity);

    if (mem == NULL || need == 0 || size < need || q->magic != MG_FQ_MAGIC
        || q->version != MG_FQ_VERSION || q->capacity != capacity
        || q->ent_off != mg_fq_header() || q->head >= capacity || q->count > capacity) {
        return NULL;
    }
    return q;
}

int mg_fqueue_push(mg_fqueue_t *q, const mg_pending_failure_t *f)
{
    uint32_t n = q->count;
    int dropped = 0;

    if (n == q->capacity) {
        /* full: the oldest goes (it is also the least likely to count) */
        q->head = (q->head + 1) % q->capacity;
        n--;
        q->dropped++;
        dropped = 1;
    }
    mg_fq_entries(q)[(q->head + n) % q->capacity] = *f;
    __atomic_store_n(&q->count, n + 1, __ATOMIC_RELAXED);
    return dropped;
}

size_t mg_fqueue_pop(mg_fqueue_t *q, mg_pending_failure_t *out, size_t max)
{
    size_t k = 0;

    while (k < max && q->count > 0) {
        out[k++] = mg_fq_entries(q)[q->head];
        q->head = (q->head + 1) % q->capacity;
        __atomic_store_n(&q->count, q->count - 1, __ATOMIC_RELAXED);
    }
    return k;
}

uint32_t mg_fqueue_count(const mg_fqueue_t *q)
{
    return __atomic_load_n(&q->count, __ATOMIC_RELAXED);
}

uint64_t mg_fqueue_dropped(const mg_fqueue_t *q)
{
    return q->dropped;
}

void mg_fqueue_foreach(const mg_fqueue_t *q,
                       int (*fn)(void *baton, const mg_pending_failure_t *f), void *baton)
{
    const mg_pending_failure_t *e =
        (const mg_pending_failure_t *)(const void *)((const char *)q + q->ent_off);

    for (uint32_t i = 0; i < q->count; i++) {
        if (fn(baton, &e[(q->head + i) % q->capacity]) != 0) {
            return;
        }
    }
}
