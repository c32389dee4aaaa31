/*
 * The Redis writer; see tap_writer.h.
 *
 * One round, in order:
 *   round_size    wait for failures; let a burst grow (TAP_LINGER_*);
 *   round_take    peek them into the round's columns, marking those a
 *                 failed earlier round already stored;
 *   round_store   one store call per jail present in the round;
 *   round_settle  pop the leading stored entries; remember the stored
 *                 ones beyond them for the next round.
 * Then the Redis state is logged once per change (MG0620 / MG0622) and a
 * failed round waits out a back-off before the next try.
 */
#include "tap_writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "tap_clock.h"
#include "tap_log.h"

#define TAP_BATCH             131072 /* most failures per writer round */
#define TAP_BATCH_SMALL       1024   /* rounds up to this use the standing buffers */
#define TAP_LINGER_MAX_MS     200    /* longest wait for a burst to end */
#define TAP_LINGER_US         2000   /* the queue is looked at this often meanwhile */
#define TAP_FLUSH_MS          10000  /* longest flush at SIGTERM */
#define TAP_WRITER_TIMEOUT_MS 2000   /* Redis command timeout for batches */
#define TAP_BACKOFF_MIN_MS    100    /* after a failed round; doubles ... */
#define TAP_BACKOFF_MAX_MS    2000   /* ... up to this */

/*
 * The columns of one round, one row per failure taken from the queue.
 * batch and sent describe the queue entries; idx, keys, times and res are
 * the store call's arguments for one jail at a time (its k <= n rows,
 * gathered by gather_jail()).  A new per-failure argument of the store
 * (say the identity of the failure's line, so that a resend is counted
 * once) is one more line here and one more assignment in gather_jail():
 * the buffers are sized and carved from this list.
 */
/* "t" + the file's identity + "-" + the line's offset, both in hex: what
 * Redis keeps for a while to count a line sent twice (after a lost answer
 * or a restart that reads the line again) once. */
typedef struct line_id {
    char s[40];
} line_id_t;

#define WBUF_COLUMNS(X)                                                             \
    X(tap_failure_t, batch)    /* the queue entries, in queue order */              \
    X(uint8_t, sent)           /* 1: Redis has it (this round or an earlier one) */ \
    X(size_t, idx)             /* store argument m -> row of batch */               \
    X(mg_addr_t, keys)         /* the ban key of row idx[m] */                      \
    X(int64_t, times)          /* when its line was read (Unix ms) */               \
    X(line_id_t, idtxt)        /* the identity of its line, as text */              \
    X(const char *, ids)       /* -> idtxt[m], as the store takes them */           \
    X(mg_record_result_t, res) /* the store's answer for it */

#define WBUF_FIELD(type, name) type *name;

/*
 * A round's buffers.  A quiet daemon uses the small set allocated once; a
 * burst gets a mapping of its own that is unmapped after the round, so the
 * memory of a flood is given back.
 */
typedef struct wbuf {
    WBUF_COLUMNS(WBUF_FIELD)
    void *map;
    size_t maplen;
} wbuf_t;

struct tap_writer {
    pthread_t thread;
    const tap_jail_t *const *jails;
    size_t njails;
    tap_queue_t *q;
    atomic_int *stop;
    mg_store_t *st;
    wbuf_t small;
    void *small_mem;
    /* Rows a failed round stored beyond the prefix it could pop: queue
     * sequence numbers [sent_base, sent_base + sent_len), sent_prev[i] = 1
     * for those Redis has.  The next round starts from the same head and
     * skips them. */
    uint8_t *sent_prev;
    uint64_t sent_base;
    size_t sent_len, sent_cap;
    /* Rows before this queue sequence number were in a call that failed:
     * one that comes back a duplicate that made a ban made it in a call
     * whose answer was lost, so that ban is logged now.  (A line read
     * again after a restart is a new row and logged its ban before.) */
    uint64_t retry_end;
    int down;    /* MG0620 said, MG0622 not yet */
    int backoff; /* ms before the next try after a failure */
    /* For other threads (the metrics file): added once per store call
     * and per round, never per failure. */
    _Atomic uint64_t *stored; /* per jail: failures Redis counted */
    _Atomic uint64_t *dups;   /* per jail: failures Redis had counted before */
    _Atomic uint64_t *bans;   /* per jail: bans they made */
    atomic_int redis_up;      /* 0 after a failed round, until one works */
    _Atomic uint64_t failed_rounds;
};

/* ---- buffers ---- */

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* Bytes for n rows of every column, each column aligned for its type. */
static size_t wbuf_bytes(size_t n)
{
    size_t b = 0;
#define WBUF_BYTES(type, name) b = align_up(b, _Alignof(type)) + n * sizeof(type);
    WBUF_COLUMNS(WBUF_BYTES)
#undef WBUF_BYTES
    return b;
}

/* Point every column into mem (malloc'd or mapped: aligned for any type). */
static void wbuf_carve(wbuf_t *w, void *mem, size_t n)
{
    char *base = mem;
    size_t b = 0;
#define WBUF_CARVE(type, name)            \
    b = align_up(b, _Alignof(type));      \
    w->name = (type *)(void *)(base + b); \
    b += n * sizeof(type);
    WBUF_COLUMNS(WBUF_CARVE)
#undef WBUF_CARVE
}

/* Buffers for n rows: the small set, or a mapping (-1: the small set, for
 * at most TAP_BATCH_SMALL rows, because the mapping failed). */
static int wbuf_get(wbuf_t *w, const wbuf_t *small, size_t n)
{
    if (n <= TAP_BATCH_SMALL) {
        *w = *small;
        return 0;
    }
    w->maplen = wbuf_bytes(n);
    w->map = mmap(NULL, w->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->map == MAP_FAILED) {
        *w = *small;
        return -1;
    }
    wbuf_carve(w, w->map, n);
    return 0;
}

static void wbuf_put(wbuf_t *w)
{
    if (w->map != NULL) {
        munmap(w->map, w->maplen);
        w->map = NULL;
    }
}

/* ---- one round ---- */

/* Sleep up to ms, waking early when the daemon stops. */
static void nap(const tap_writer_t *w, int ms)
{
    while (ms > 0 && !atomic_load(w->stop)) {
        struct timespec ts = { 0, 50 * 1000000L };
        if (ms < 50) {
            ts.tv_nsec = (long)ms * 1000000L;
        }
        nanosleep(&ts, NULL);
        ms -= 50;
    }
}

/* How many failures the next round takes (0: none yet). */
static size_t round_size(tap_writer_t *w, int stopping)
{
    uint64_t seq;
    size_t n;

    /* wakes when the reader kicks the queue, or after a second anyway (to
     * notice a stop) */
    tap_queue_peek_wait(w->q, NULL, 0, stopping ? 0 : 1000, &seq);
    n = tap_queue_len(w->q);
    if (n > 1 && !stopping) {
        /* A burst is being read: wait while it grows so that one round
         * takes it whole.  The store groups a round's failures by
         * address, and Redis's cost is per address group, not per
         * failure.  A lone failure (the latency case) goes at once. */
        int64_t until = tap_mono_ms() + TAP_LINGER_MAX_MS;
        size_t before;
        do {
            struct timespec ts = { 0, TAP_LINGER_US * 1000L };
            before = n;
            nanosleep(&ts, NULL);
            n = tap_queue_len(w->q);
        } while (n > before && n < TAP_BATCH && tap_mono_ms() < until);
    }
    return n > TAP_BATCH ? TAP_BATCH : n;
}

/* Peek up to n failures into b (mapped when large); returns how many and
 * the sequence number of the first.  Rows an earlier failed round stored
 * are marked sent. */
static size_t round_take(tap_writer_t *w, wbuf_t *b, size_t n, uint64_t *seq)
{
    b->map = NULL;
    b->maplen = 0;
    if (wbuf_get(b, &w->small, n) != 0 && n > TAP_BATCH_SMALL) {
        n = TAP_BATCH_SMALL;
    }
    n = tap_queue_peek_wait(w->q, b->batch, n, 0, seq);
    for (size_t i = 0; i < n; i++) {
        uint64_t sq = *seq + i;
        b->sent[i] = sq >= w->sent_base && sq < w->sent_base + w->sent_len
                         ? w->sent_prev[sq - w->sent_base]
                         : 0;
    }
    return n;
}

/* The store arguments for the rows of jail from row `from` on that Redis
 * does not have yet.  Returns their number. */
static size_t gather_jail(wbuf_t *b, size_t from, size_t n, uint8_t jail)
{
    size_t k = 0;

    for (size_t x = from; x < n; x++) {
        if (!b->sent[x] && b->batch[x].jail == jail) {
            b->idx[k] = x;
            b->keys[k] = b->batch[x].key;
            b->times[k] = b->batch[x].time_ms;
            snprintf(b->idtxt[k].s, sizeof(b->idtxt[k].s), "t%016llx-%llx",
                     (unsigned long long)b->batch[x].fid, (unsigned long long)b->batch[x].off);
            b->ids[k] = b->idtxt[k].s;
            k++;
        }
    }
    return k;
}

static void log_ban(const tap_jail_t *j, const mg_addr_t *key, const mg_record_result_t *res)
{
    char txt[MG_ADDR_STRLEN], until[32];

    mg_addr_format(key, txt, sizeof(txt));
    mg_time_format_utc(res->expiry, until, sizeof(until));
    tap_notice("MG0621: Ban %s [%s] after %u failures until %s (ban #%u)", txt, j->name,
               res->count, until, res->bans);
}

/* Record the round's rows, one store call per jail: the jails of a shared
 * log interleave, and a call per run of one jail would cost Redis a script
 * call per few failures.  *dups: the rows Redis had counted before (their
 * line read again after a restart, or a call that timed out but ran).  0,
 * or -1 when a call failed (what it stored is marked all the same). */
static int round_store(tap_writer_t *w, wbuf_t *b, size_t n, uint64_t seq, size_t *dups)
{
    *dups = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t jail = b->batch[i].jail;
        const tap_jail_t *j = w->jails[jail];
        size_t k, done = 0;
        uint64_t stored = 0, banned = 0, dup = 0;
        int failed;

        if (b->sent[i]) {
            continue;
        }
        k = gather_jail(b, i, n, jail);
        failed = mg_store_record_failures(w->st, j->name, &j->policy, k, b->keys, b->times,
                                          b->ids, b->res, &done)
                 != 0;
        /* Beyond done, a pair with a count was recorded all the same (the
         * store groups a batch by address): resending it would count that
         * failure twice. */
        for (size_t m = 0; m < k; m++) {
            if (m >= done && b->res[m].count == 0 && !b->res[m].duplicate) {
                continue;
            }
            b->sent[b->idx[m]] = 1;
            if (b->res[m].duplicate) {
                dup++;
                if (b->res[m].banned && seq + b->idx[m] < w->retry_end) {
                    banned++;
                    log_ban(j, &b->keys[m], &b->res[m]);
                }
                continue;
            }
            stored++;
            if (b->res[m].banned) {
                banned++;
                log_ban(j, &b->keys[m], &b->res[m]);
            }
        }
        *dups += dup;
        atomic_fetch_add_explicit(&w->stored[jail], stored, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->dups[jail], dup, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->bans[jail], banned, memory_order_relaxed);
        if (failed) {
            return -1;
        }
    }
    return 0;
}

/* Pop the leading stored rows; remember the stored ones after a gap so
 * the next round (which starts at the gap) does not send them again.
 * Returns the number popped. */
static size_t round_settle(tap_writer_t *w, const wbuf_t *b, size_t n, uint64_t seq)
{
    size_t stored = 0;

    while (stored < n && b->sent[stored]) {
        stored++;
    }
    w->sent_len = 0;
    if (stored < n) {
        if (w->sent_cap < n) {
            uint8_t *np = realloc(w->sent_prev, n);
            if (np != NULL) {
                w->sent_prev = np;
                w->sent_cap = n;
            }
        }
        /* without room the rows are sent again: the store then counts
         * them twice, the lesser harm than losing them */
        if (w->sent_cap >= n) {
            memcpy(w->sent_prev, b->sent, n);
            w->sent_base = seq;
            w->sent_len = n;
        }
    }
    tap_queue_pop(w->q, seq, stored);
    return stored;
}

/* Log a change of Redis's state and pace the retries.  Returns 1 when the
 * writer should stop now. */
static int after_round(tap_writer_t *w, int failed, int stopping, int64_t flush_deadline)
{
    atomic_store_explicit(&w->redis_up, !failed, memory_order_relaxed);
    if (failed) {
        atomic_fetch_add_explicit(&w->failed_rounds, 1, memory_order_relaxed);
        if (!w->down) {
            tap_error("MG0620: Redis unavailable (%s): failures are queued until it returns",
                      mg_store_error(w->st));
            w->down = 1;
        }
        if (stopping) {
            return 1;
        }
        nap(w, w->backoff);
        w->backoff = w->backoff * 2 > TAP_BACKOFF_MAX_MS ? TAP_BACKOFF_MAX_MS : w->backoff * 2;
        return 0;
    }
    if (w->down) {
        tap_notice("MG0622: Redis is back: queued failures sent");
        w->down = 0;
    }
    w->backoff = TAP_BACKOFF_MIN_MS;
    return stopping && tap_mono_ms() > flush_deadline;
}

static void *writer_main(void *arg)
{
    tap_writer_t *w = arg;
    int64_t flush_deadline = 0;

    for (;;) {
        int stopping = atomic_load(w->stop);
        uint64_t seq;
        size_t n, stored, dups;
        int failed;
        int64_t t0;
        wbuf_t b;

        if (stopping && flush_deadline == 0) {
            flush_deadline = tap_mono_ms() + TAP_FLUSH_MS;
        }
        n = round_size(w, stopping);
        if (n == 0) {
            if (stopping) {
                break;
            }
            continue;
        }
        n = round_take(w, &b, n, &seq);
        t0 = tap_mono_ms();
        failed = round_store(w, &b, n, seq, &dups) != 0;
        if (failed && seq + n > w->retry_end) {
            w->retry_end = seq + n;
        }
        stored = round_settle(w, &b, n, seq);
        wbuf_put(&b);
        tap_debug("MG0625: round of %zu failures: %zu stored in %lld ms", n, stored,
                  (long long)(tap_mono_ms() - t0));
        /* rare (a restart, a lost answer) and worth knowing: the count
         * proves the resend cost nothing */
        if (dups > 0) {
            tap_notice("MG0626: %zu failures already counted in Redis (read again after a "
                       "restart, or sent again after a lost answer): not counted again",
                       dups);
        }
        if (after_round(w, failed, stopping, flush_deadline)) {
            break;
        }
    }
    if (tap_queue_len(w->q) > 0) {
        tap_warn("MG0624: %zu failures not stored in Redis at exit: they are read again at the "
                 "next start",
                 tap_queue_len(w->q));
    }
    return NULL;
}

/* ---- life cycle ---- */

void tap_writer_free(tap_writer_t *w)
{
    if (w == NULL) {
        return;
    }
    mg_store_free(w->st);
    free(w->small_mem);
    free(w->sent_prev);
    free((void *)w->stored);
    free((void *)w->dups);
    free((void *)w->bans);
    free(w);
}

tap_writer_t *tap_writer_start(const mg_store_cfg_t *store, tap_queue_t *q,
                               const tap_jail_t *const *jails, size_t njails, atomic_int *stop)
{
    tap_writer_t *w = calloc(1, sizeof(*w));
    mg_store_cfg_t scfg = *store;

    if (w == NULL) {
        tap_error("MG0604: out of memory starting the Redis writer");
        return NULL;
    }
    w->jails = jails;
    w->njails = njails;
    w->q = q;
    w->stop = stop;
    w->backoff = TAP_BACKOFF_MIN_MS;
    atomic_init(&w->redis_up, 1);
    atomic_init(&w->failed_rounds, 0);
    scfg.command_timeout_ms = TAP_WRITER_TIMEOUT_MS;
    w->st = mg_store_new(&scfg);
    w->small_mem = malloc(wbuf_bytes(TAP_BATCH_SMALL));
    /* calloc: a zero-filled atomic integer is a valid zero */
    w->stored = calloc(njails ? njails : 1, sizeof(*w->stored));
    w->dups = calloc(njails ? njails : 1, sizeof(*w->dups));
    w->bans = calloc(njails ? njails : 1, sizeof(*w->bans));
    if (w->st == NULL || w->small_mem == NULL || w->stored == NULL || w->dups == NULL
        || w->bans == NULL) {
        tap_error("MG0604: out of memory starting the Redis writer");
        tap_writer_free(w);
        return NULL;
    }
    wbuf_carve(&w->small, w->small_mem, TAP_BATCH_SMALL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        tap_error("MG0608: cannot start the Redis writer");
        tap_writer_free(w);
        return NULL;
    }
    return w;
}

void tap_writer_wait(tap_writer_t *w)
{
    if (w != NULL) {
        pthread_join(w->thread, NULL);
    }
}

void tap_writer_counts(const tap_writer_t *w, size_t jail, uint64_t *stored, uint64_t *dups,
                       uint64_t *bans)
{
    *stored = atomic_load_explicit(&w->stored[jail], memory_order_relaxed);
    *dups = atomic_load_explicit(&w->dups[jail], memory_order_relaxed);
    *bans = atomic_load_explicit(&w->bans[jail], memory_order_relaxed);
}

int tap_writer_redis_up(const tap_writer_t *w)
{
    return atomic_load_explicit(&w->redis_up, memory_order_relaxed);
}

uint64_t tap_writer_failed_rounds(const tap_writer_t *w)
{
    return atomic_load_explicit(&w->failed_rounds, memory_order_relaxed);
}
