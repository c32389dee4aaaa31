/*
 * Bounded failure queue; see tap_queue.h.
 */
#include "tap_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Give the pages back only after a backlog this large (in entries). */
#define TAP_QUEUE_TRIM_AFTER 4096

struct tap_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tap_failure_t *ring;
    size_t cap;
    size_t map_len;
    uint64_t head; /* sequence number of the oldest entry */
    uint64_t tail; /* sequence number of the next entry */
    uint64_t dropped;
    size_t high; /* highest slot index touched since the last trim */
    int shutdown;
};

tap_queue_t *tap_queue_new(size_t capacity)
{
    tap_queue_t *q;
    void *m;

    if (capacity == 0) {
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    q->map_len = capacity * sizeof(tap_failure_t);
    m = mmap(NULL, q->map_len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        free(q);
        return NULL;
    }
    q->ring = m;
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    return q;
}

void tap_queue_free(tap_queue_t *q)
{
    if (q == NULL) {
        return;
    }
    munmap(q->ring, q->map_len);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* Called with the lock held when the queue just became empty. */
static void queue_trim(tap_queue_t *q)
{
    if (q->high >= TAP_QUEUE_TRIM_AFTER) {
        madvise(q->ring, q->map_len, MADV_DONTNEED);
        q->high = 0;
        /* Restart at slot 0 so a quiet daemon touches only the first pages. */
        q->head = q->tail = (q->tail + q->cap - 1) / q->cap * q->cap;
    }
}

unsigned tap_queue_push(tap_queue_t *q, const tap_failure_t *f)
{
    unsigned dropped = 0;
    size_t slot;

    pthread_mutex_lock(&q->mu);
    if (q->tail - q->head >= q->cap) {
        q->head++;
        q->dropped++;
        dropped = 1;
    }
    slot = (size_t)(q->tail % q->cap);
    q->ring[slot] = *f;
    if (slot >= q->high) {
        q->high = slot + 1;
    }
    q->tail++;
    pthread_mutex_unlock(&q->mu);
    return dropped;
}

void tap_queue_kick(tap_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void tap_queue_shutdown(tap_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutdown = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

size_t tap_queue_peek_wait(tap_queue_t *q, tap_failure_t *out, size_t max, int timeout_ms,
                           uint64_t *seq)
{
    size_t n, i;

    pthread_mutex_lock(&q->mu);
    if (q->tail == q->head && timeout_ms != 0 && !q->shutdown) {
        if (timeout_ms < 0) {
            while (q->tail == q->head && !q->shutdown) {
                pthread_cond_wait(&q->cv, &q->mu);
            }
        }
        else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += timeout_ms / 1000;
            ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (q->tail == q->head && !q->shutdown) {
                if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT) {
                    break;
                }
            }
        }
    }
    n = (size_t)(q->tail - q->head);
    if (n > max) {
        n = max;
    }
    for (i = 0; i < n; i++) {
        out[i] = q->ring[(size_t)((q->head + i) % q->cap)];
    }
    *seq = q->head;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void tap_queue_pop(tap_queue_t *q, uint64_t seq, size_t n)
{
    pthread_mutex_lock(&q->mu);
    if (seq + n > q->head) {
        q->head = seq + n > q->tail ? q->tail : seq + n;
    }
    if (q->head == q->tail) {
        queue_trim(q);
    }
    pthread_mutex_unlock(&q->mu);
}

size_t tap_queue_len(tap_queue_t *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = (size_t)(q->tail - q->head);
    pthread_mutex_unlock(&q->mu);
    return n;
}

uint64_t tap_queue_dropped(tap_queue_t *q)
{
    uint64_t n;

    pthread_mutex_lock(&q->mu);
    n = q->dropped;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int tap_queue_first_offset(tap_queue_t *q, uint16_t file, uint32_t gen, int64_t *off)
{
    int found = 0;
    uint64_t s;

    pthread_mutex_lock(&q->mu);
    for (s = q->head; s != q->tail; s++) {
        const tap_failure_t *f = &q->ring[(size_t)(s % q->cap)];
        if (f->file == file && f->gen == gen) {
            *off = f->off;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return found;
}
