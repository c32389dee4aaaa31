/*
 * `dbmail_tap run`: the daemon.
 *
 * Three threads, each with one job and its own Redis connection:
 *   - the reader (main thread) follows the logs, matches lines, applies
 *     ignoreip and the IPv6 ban prefix and queues each failure with the
 *     time its line was read (DBMail's own timestamps carry no year and no
 *     zone).  It never talks to Redis, so Redis can never stall it.
 *   - the writer takes the queue in batches (the store's pipelined batch
 *     call) as soon as anything is queued, so a failure line becomes a ban
 *     in Redis about a round trip after it is written; while Redis is away
 *     the failures wait in the queue and go out when it returns.
 *   - the firewall keeper (banaction other than none, tap_keeper.c)
 *     follows the shared ban set's change log, so bans made anywhere (the
 *     webmail module's included) reach the firewall within a round trip.
 * Signals are taken by the reader through a signalfd: SIGTERM/SIGINT stop
 * reading, let the writer flush what Redis will take, save the state and
 * exit 0; SIGHUP reopens the logs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "mg_store.h"
#include "tap_cmd.h"
#include "tap_config.h"
#include "tap_keeper.h"
#include "tap_follow.h"
#include "tap_log.h"
#include "tap_match.h"
#include "tap_scan.h"
#include "tap_queue.h"
#include "tap_state.h"

#define TAP_BATCH 131072            /* most failures per writer round */
#define TAP_BATCH_SMALL 1024        /* rounds up to this use the standing buffers */
#define TAP_LINGER_MAX_MS 200       /* longest wait for a burst to end */
#define TAP_FLUSH_MS 10000          /* longest flush at SIGTERM */
#define TAP_STATE_MS 1000           /* statefile written at most this often */
#define TAP_WRITER_TIMEOUT_MS 2000  /* Redis command timeout for batches */
#define TAP_LINGER_US 2000

/* The jails reading one file, each with its own stream: a DBMail message
 * left open at the end of one block goes on at the start of the next
 * block of the same file only (never of another file, nor of the file's
 * next generation after a rotation). */
typedef struct file_jails {
    uint8_t *jails;
    tap_stream_t *streams;
    size_t n;
    uint32_t gen;
} file_jails_t;

typedef struct run {
    tap_config_t *cfg;
    tap_jail_t **jails;             /* enabled jails; index = tap_failure_t.jail */
    size_t njails;
    file_jails_t *files;
    unsigned nfiles;
    tap_follow_t *fol;
    tap_queue_t *q;
    mg_store_cfg_t scfg;
    atomic_int stop;                /* 1: stop reading; writer flushes */
    /* reader scratch */
    tap_failure_t *pend;
    size_t npend, cappend;
    unsigned cur_file;
    uint32_t cur_gen;
    const char *cur_buf;
    int64_t cur_base, cur_now;
    uint8_t cur_jail;
    uint64_t lines, failures, ignored_ip;
    int overflowing;
    /* statefile */
    uint64_t saved_changes;
    size_t saved_qlen;
    int state_err_logged;
} run_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep up to ms, waking early when the daemon stops. */
static void nap(run_t *r, int ms)
{
    while (ms > 0 && !atomic_load(&r->stop)) {
        struct timespec ts = { 0, 50 * 1000000L };
        if (ms < 50) {
            ts.tv_nsec = (long)ms * 1000000L;
        }
        nanosleep(&ts, NULL);
        ms -= 50;
    }
}

/* ---- reader ---- */

static int on_match(void *baton, tap_outcome_t outcome, const mg_addr_t *addr,
                    const char *line, size_t len)
{
    run_t *r = baton;
    const tap_jail_t *j = r->jails[r->cur_jail];
    tap_failure_t *f;

    (void)len;
    if (outcome != TAP_FAILURE || addr == NULL) {
        return 0;
    }
    if (mg_cidrset_contains(j->ignoreip, addr)) {
        r->ignored_ip++;
        return 0;
    }
    if (r->npend == r->cappend) {
        size_t ncap = r->cappend ? r->cappend * 2 : 64;
        tap_failure_t *np = realloc(r->pend, ncap * sizeof(*np));
        if (np == NULL) {
            tap_error("MG0603: out of memory: a failure was not counted");
            return 0;
        }
        r->pend = np;
        r->cappend = ncap;
    }
    f = &r->pend[r->npend++];
    memset(f, 0, sizeof(*f));
    mg_addr_ban_key(addr, j->ipv6prefix, &f->key);
    f->jail = r->cur_jail;
    f->file = (uint16_t)r->cur_file;
    f->gen = r->cur_gen;
    f->time_ms = r->cur_now;
    f->off = line != NULL ? r->cur_base + (int64_t)(line - r->cur_buf) : r->cur_base;
    return 0;
}

static int off_cmp(const void *a, const void *b)
{
    const tap_failure_t *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void on_lines(void *baton, unsigned file, uint32_t gen, const char *buf, size_t len,
                     int64_t base_off)
{
    run_t *r = baton;
    file_jails_t *fj = &r->files[file];
    tap_scan_stats_t st = { 0, 0, 0, 0 };

    r->cur_file = file;
    r->cur_gen = gen;
    r->cur_buf = buf;
    r->cur_base = base_off;
    r->cur_now = wall_ms();
    r->npend = 0;
    /* Each jail's scan counts the block's lines; the first one's count
     * is the daemon's line total. */
    if (gen != fj->gen) {
        memset(fj->streams, 0, fj->n * sizeof(*fj->streams));
        fj->gen = gen;
    }
    for (size_t i = 0; i < fj->n; i++) {
        r->cur_jail = fj->jails[i];
        tap_scan_block_stream(r->jails[fj->jails[i]]->matcher, &fj->streams[i], buf, len, 0,
                              on_match, r, i == 0 ? &st : NULL);
    }
    r->lines += st.lines;
    if (r->npend == 0) {
        return;
    }
    /* Queue order must follow file order: the statefile points at the
     * oldest unstored failure and everything after it is read again. */
    if (fj->n > 1) {
        qsort(r->pend, r->npend, sizeof(*r->pend), off_cmp);
    }
    for (size_t i = 0; i < r->npend; i++) {
        if (tap_queue_push(r->q, &r->pend[i]) != 0) {
            if (!r->overflowing) {
                tap_error("MG0623: failure queue full (%zu): dropping the oldest failures",
                          (size_t)TAP_QUEUE_DEFAULT_CAPACITY);
                r->overflowing = 1;
            }
        }
    }
    r->failures += r->npend;
    tap_queue_kick(r->q);
}

static void save_state(run_t *r, int force)
{
    unsigned n = tap_follow_count(r->fol);
    tap_state_entry_t *v;
    size_t k = 0, qlen = tap_queue_len(r->q);
    uint64_t changes = tap_follow_changes(r->fol);
    char err[512];

    if (!force && changes == r->saved_changes && qlen == r->saved_qlen) {
        return;
    }
    if (qlen == 0) {
        r->overflowing = 0;
    }
    v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        uint32_t gen;
        int64_t off;
        if (!tap_follow_position(r->fol, i, &v[k].pos, &gen)) {
            continue;
        }
        if (tap_queue_first_offset(r->q, (uint16_t)i, gen, &off) && off < v[k].pos.off) {
            v[k].pos.off = off;
        }
        v[k].path = (char *)tap_follow_path(r->fol, i);
        k++;
    }
    if (tap_state_save(r->cfg->statefile, v, k, err, sizeof(err)) != 0) {
        if (!r->state_err_logged) {
            tap_error("MG0630: cannot write the statefile: %s", err);
            r->state_err_logged = 1;
        }
    }
    else {
        if (r->state_err_logged) {
            tap_notice("MG0631: statefile %s written again", r->cfg->statefile);
        }
        r->state_err_logged = 0;
        r->saved_changes = changes;
        r->saved_qlen = qlen;
    }
    free(v);
}

/* ---- writer ---- */

static void log_ban(const tap_jail_t *j, const mg_addr_t *key, const mg_record_result_t *res)
{
    char txt[MG_ADDR_STRLEN], until[32];

    mg_addr_format(key, txt, sizeof(txt));
    if (res->expiry == MG_EXPIRY_NEVER) {
        snprintf(until, sizeof(until), "forever");
    }
    else {
        tap_log_utc(res->expiry, until, sizeof(until));
    }
    tap_notice("MG0621: Ban %s [%s] after %u failures until %s (ban #%u)", txt, j->name,
               res->count, until, res->bans);
}

/*
 * The writer's arrays for one round of n failures.  A quiet daemon uses the
 * small set allocated once; a burst gets a mapping of its own that is
 * unmapped after the round, so the memory of a flood is given back.
 */
typedef struct wbuf {
    tap_failure_t *batch;
    int64_t *times;
    mg_record_result_t *res;
    size_t *idx;
    mg_addr_t *keys;
    uint8_t *sent;
    void *map;
    size_t maplen;
} wbuf_t;

#define WBUF_ENTRY (sizeof(tap_failure_t) + sizeof(int64_t) + sizeof(mg_record_result_t) \
                    + sizeof(size_t) + sizeof(mg_addr_t) + 1)

static int wbuf_carve(wbuf_t *w, char *p, size_t n)
{
    /* most aligned first */
    w->batch = (tap_failure_t *)(void *)p;
    p += n * sizeof(tap_failure_t);
    w->times = (int64_t *)(void *)p;
    p += n * sizeof(int64_t);
    w->res = (mg_record_result_t *)(void *)p;
    p += n * sizeof(mg_record_result_t);
    w->idx = (size_t *)(void *)p;
    p += n * sizeof(size_t);
    w->keys = (mg_addr_t *)(void *)p;
    p += n * sizeof(mg_addr_t);
    w->sent = (uint8_t *)p;
    return 0;
}

static int wbuf_get(wbuf_t *w, wbuf_t *small, size_t n)
{
    w->map = NULL;
    w->maplen = 0;
    if (n <= TAP_BATCH_SMALL) {
        *w = *small;
        return 0;
    }
    w->maplen = n * WBUF_ENTRY;
    w->map = mmap(NULL, w->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->map == MAP_FAILED) {
        w->map = NULL;
        *w = *small;
        return -1;
    }
    return wbuf_carve(w, w->map, n);
}

static void wbuf_put(wbuf_t *w)
{
    if (w->map != NULL) {
        munmap(w->map, w->maplen);
        w->map = NULL;
    }
}

static void *writer_main(void *arg)
{
    run_t *r = arg;
    mg_store_cfg_t scfg = r->scfg;
    mg_store_t *st;
    wbuf_t small = { 0 };
    char *small_mem = malloc(TAP_BATCH_SMALL * WBUF_ENTRY);
    uint8_t *sent_prev = NULL;
    uint64_t sent_base = 0;
    size_t sent_len = 0, sent_cap = 0;
    int down = 0, backoff = 100;
    int64_t flush_deadline = 0;

    scfg.command_timeout_ms = TAP_WRITER_TIMEOUT_MS;
    st = mg_store_new(&scfg);
    if (st == NULL || small_mem == NULL) {
        tap_error("MG0604: out of memory starting the Redis writer");
        goto end;
    }
    wbuf_carve(&small, small_mem, TAP_BATCH_SMALL);
    for (;;) {
        uint64_t seq;
        size_t n, i, stored = 0;
        int failed = 0;
        int stopping = atomic_load(&r->stop);
        wbuf_t w;

        if (stopping && flush_deadline == 0) {
            flush_deadline = mono_ms() + TAP_FLUSH_MS;
        }
        tap_queue_peek_wait(r->q, NULL, 0, stopping ? 0 : 1000, &seq);
        n = tap_queue_len(r->q);
        if (n == 0) {
            if (stopping) {
                break;
            }
            continue;
        }
        if (n > 1 && !stopping) {
            /* A burst is being read: wait while it grows so that one round
             * takes it whole.  The store groups a round's failures by
             * address, and Redis's cost is per address group, not per
             * failure.  A lone failure (the latency case) goes at once. */
            int64_t until = mono_ms() + TAP_LINGER_MAX_MS;
            size_t before;
            do {
                struct timespec ts = { 0, TAP_LINGER_US * 1000L };
                before = n;
                nanosleep(&ts, NULL);
                n = tap_queue_len(r->q);
            } while (n > before && n < TAP_BATCH && mono_ms() < until);
        }
        if (n > TAP_BATCH) {
            n = TAP_BATCH;
        }
        if (wbuf_get(&w, &small, n) != 0) {
            n = TAP_BATCH_SMALL < n ? TAP_BATCH_SMALL : n;
        }
        n = tap_queue_peek_wait(r->q, w.batch, n, 0, &seq);
        /* Entries a failed round already stored are not sent twice. */
        for (i = 0; i < n; i++) {
            uint64_t sq = seq + i;
            w.sent[i] = sq >= sent_base && sq < sent_base + sent_len
                        ? sent_prev[sq - sent_base] : 0;
        }
        int64_t round_t0 = mono_ms();
        /* One store call per jail (the store pipelines it): the jails of a
         * shared log interleave, and a call per run would cost Redis a
         * script call per few failures. */
        for (i = 0; i < n && !failed; i++) {
            size_t k = 0, done = 0;
            uint8_t jail = w.batch[i].jail;
            const tap_jail_t *j = r->jails[jail];
            if (w.sent[i]) {
                continue;
            }
            for (size_t x = i; x < n; x++) {
                if (!w.sent[x] && w.batch[x].jail == jail) {
                    w.idx[k] = x;
                    w.keys[k] = w.batch[x].key;
                    w.times[k] = w.batch[x].time_ms;
                    k++;
                }
            }
            if (mg_store_record_failures(st, j->name, &j->policy, k, w.keys, w.times, NULL,
                                         w.res, &done) != 0) {
                failed = 1;
            }
            /* Beyond *done, a pair with a count was recorded all the same
             * (the store groups a batch by address): resending it would
             * count that failure twice. */
            for (size_t m = 0; m < k; m++) {
                if (m >= done && w.res[m].count == 0 && !w.res[m].duplicate) {
                    continue;
                }
                w.sent[w.idx[m]] = 1;
                if (w.res[m].banned) {
                    log_ban(j, &w.keys[m], &w.res[m]);
                }
            }
        }
        while (stored < n && w.sent[stored]) {
            stored++;
        }
        sent_len = 0;
        if (stored < n) {
            /* remember what this round stored beyond the popped prefix */
            if (sent_cap < n) {
                uint8_t *np = realloc(sent_prev, n);
                if (np != NULL) {
                    sent_prev = np;
                    sent_cap = n;
                }
            }
            if (sent_cap >= n) {
                memcpy(sent_prev, w.sent, n);
                sent_base = seq;
                sent_len = n;
            }
        }
        wbuf_put(&w);
        tap_queue_pop(r->q, seq, stored);
        tap_debug("MG0625: round of %zu failures: %zu stored in %lld ms", n, stored,
                  (long long)(mono_ms() - round_t0));
        if (failed) {
            if (!down) {
                tap_error("MG0620: Redis unavailable (%s): failures are queued until it returns",
                          mg_store_error(st));
                down = 1;
            }
            if (stopping) {
                break;
            }
            nap(r, backoff);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            continue;
        }
        if (down) {
            tap_notice("MG0622: Redis is back: queued failures sent");
            down = 0;
        }
        backoff = 100;
        if (stopping && mono_ms() > flush_deadline) {
            break;
        }
    }
    if (tap_queue_len(r->q) > 0) {
        tap_warn("MG0624: %zu failures not stored in Redis at exit: they are read again at the next start",
                 tap_queue_len(r->q));
    }
end:
    mg_store_free(st);
    free(small_mem);
    free(sent_prev);
    return NULL;
}

/* ---- setup ---- */

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: dbmail_tap run [-c FILE] [--log-level LEVEL] [--poll]\n"
            "\n"
            "Follow the logpath files of every enabled jail, count failed logins in\n"
            "Redis and keep the firewall (banaction) in step with the live bans.\n"
            "Runs in the foreground and logs to stderr.\n"
            "\n"
            "  -c, --config FILE    configuration (default %s)\n"
            "  --log-level LEVEL    error, warning, notice (default), info, debug\n"
            "  --poll               poll the files instead of using inotify\n"
            "  -h, --help           this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT store what is queued, save the state and exit 0;\n"
            "SIGHUP reopens the log files.\n",
            TAP_DEFAULT_CONFIG);
}

static int add_files(run_t *r, const tap_state_t *state)
{
    for (size_t j = 0; j < r->njails; j++) {
        const tap_jail_t *jl = r->jails[j];
        for (size_t p = 0; p < jl->nlogpaths; p++) {
            unsigned idx, n = tap_follow_count(r->fol);
            file_jails_t *fj;
            for (idx = 0; idx < n; idx++) {
                if (strcmp(tap_follow_path(r->fol, idx), jl->logpaths[p]) == 0) {
                    break;
                }
            }
            if (idx == n) {
                file_jails_t *nf;
                if (n >= UINT16_MAX) {
                    tap_error("MG0606: too many log files");
                    return -1;
                }
                if (tap_follow_add(r->fol, jl->logpaths[p],
                                   tap_state_find(state, jl->logpaths[p])) < 0) {
                    return -1;
                }
                nf = realloc(r->files, (n + 1) * sizeof(*nf));
                if (nf == NULL) {
                    return -1;
                }
                r->files = nf;
                r->files[n].jails = NULL;
                r->files[n].streams = NULL;
                r->files[n].n = 0;
                r->files[n].gen = 0;
                r->nfiles = n + 1;
            }
            fj = &r->files[idx];
            {
                int dup = 0;
                for (size_t k = 0; k < fj->n; k++) {
                    dup |= fj->jails[k] == j;
                }
                if (!dup) {
                    uint8_t *nj = realloc(fj->jails, fj->n + 1);
                    tap_stream_t *ns;
                    if (nj == NULL) {
                        return -1;
                    }
                    fj->jails = nj;
                    ns = realloc(fj->streams, (fj->n + 1) * sizeof(*ns));
                    if (ns == NULL) {
                        return -1;
                    }
                    fj->streams = ns;
                    memset(&fj->streams[fj->n], 0, sizeof(*ns));
                    fj->jails[fj->n++] = (uint8_t)j;
                }
            }
        }
    }
    return 0;
}

int tap_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "log-level", required_argument, NULL, 'l' },
        { "poll", no_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *config = TAP_DEFAULT_CONFIG;
    char err[TAP_CONFIG_ERRLEN];
    run_t r;
    tap_state_t state = { 0 };
    sigset_t sigs;
    int c, sfd = -1, use_inotify = 1, rc = 1;
    pthread_t writer;
    tap_keeper_t *keeper = NULL;
    int have_writer = 0;
    unsigned bad = 0;

    memset(&r, 0, sizeof(r));
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'l': {
            tap_log_level_t lv;
            if (tap_log_parse_level(optarg, &lv) != 0) {
                fprintf(stderr, "dbmail_tap run: unknown log level '%s'\n", optarg);
                return 2;
            }
            tap_log_set_level(lv);
            break;
        }
        case 'p':
            use_inotify = 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (optopt == 'c') {
                fprintf(stderr, "dbmail_tap run: -c needs a FILE\n");
            }
            else if (optopt != 0 && optopt != 'l') {
                fprintf(stderr, "dbmail_tap run: unknown option '-%c'\n", optopt);
            }
            else {
                fprintf(stderr, "dbmail_tap run: unknown option '%s'\n", argv[optind - 1]);
            }
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dbmail_tap run: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (tap_config_load(config, &r.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "dbmail_tap: %s\n", err);
        return 1;
    }
    r.njails = tap_config_enabled(r.cfg);
    if (r.njails == 0) {
        fprintf(stderr, "dbmail_tap: %s: no enabled jail\n", config);
        goto end;
    }
    if (r.njails > 255) {
        fprintf(stderr, "dbmail_tap: %s: more than 255 enabled jails\n", config);
        goto end;
    }
    r.jails = calloc(r.njails, sizeof(*r.jails));
    r.q = tap_queue_new(TAP_QUEUE_DEFAULT_CAPACITY);
    r.fol = tap_follow_new(on_lines, &r, use_inotify);
    if (r.jails == NULL || r.q == NULL || r.fol == NULL) {
        fprintf(stderr, "dbmail_tap: out of memory\n");
        goto end;
    }
    r.njails = 0;
    for (size_t j = 0; j < r.cfg->njails; j++) {
        if (r.cfg->jails[j].enabled) {
            r.jails[r.njails++] = &r.cfg->jails[j];
        }
    }
    tap_config_store_cfg(r.cfg, 500, 1000, &r.scfg);

    if (tap_state_load(r.cfg->statefile, &state, &bad, err, sizeof(err)) != 0) {
        tap_warn("MG0632: cannot read the statefile (%s): files start at their end", err);
    }
    else if (bad > 0) {
        tap_warn("MG0633: %s: %u unreadable lines ignored", r.cfg->statefile, bad);
    }
    if (add_files(&r, &state) != 0) {
        fprintf(stderr, "dbmail_tap: out of memory\n");
        goto end;
    }

    /* Every thread inherits this mask; the reader takes them by signalfd. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        tap_error("MG0607: signalfd: %s", strerror(errno));
        goto end;
    }
    {
        char red[512];
        mg_store_url_redacted(&r.cfg->redis_url, red, sizeof(red));
        tap_notice("MG0600: dbmail_tap %s starting: %zu jails, %u files, redis %s, banaction %s",
                   TAP_VERSION, r.njails, tap_follow_count(r.fol), red,
                   tap_banaction_name(r.cfg->banaction));
    }
    if (pthread_create(&writer, NULL, writer_main, &r) != 0) {
        tap_error("MG0608: cannot start the Redis writer");
        goto end;
    }
    have_writer = 1;
    if (r.cfg->banaction != TAP_BANACTION_NONE) {
        keeper = tap_keeper_start(r.cfg, &r.scfg, &r.stop);
        if (keeper == NULL) {
            goto stop;
        }
    }
    tap_follow_start(r.fol);
    {
        int64_t next_state = mono_ms() + TAP_STATE_MS;
        for (;;) {
            struct pollfd pf[2];
            int np = 1, tmo = tap_follow_timeout(r.fol);
            int64_t ds = next_state - mono_ms();
            if (ds < tmo) {
                tmo = ds < 0 ? 0 : (int)ds;
            }
            pf[0].fd = sfd;
            pf[0].events = POLLIN;
            if (tap_follow_fd(r.fol) >= 0) {
                pf[1].fd = tap_follow_fd(r.fol);
                pf[1].events = POLLIN;
                np = 2;
            }
            if (poll(pf, (nfds_t)np, tmo) < 0 && errno != EINTR) {
                tap_error("MG0619: poll: %s", strerror(errno));
                break;
            }
            if (pf[0].revents & POLLIN) {
                struct signalfd_siginfo si;
                int quit = 0;
                while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                    if (si.ssi_signo == SIGHUP) {
                        tap_notice("MG0601: SIGHUP: reopening the log files");
                        tap_follow_reopen(r.fol);
                    }
                    else {
                        quit = 1;
                    }
                }
                if (quit) {
                    uint64_t suspicious = 0;
                    for (size_t j = 0; j < r.njails; j++) {
                        suspicious += tap_matcher_suspicious(r.jails[j]->matcher);
                    }
                    tap_notice("MG0602: stopping: %" PRIu64 " lines, %" PRIu64
                               " failures, %" PRIu64 " ignored by ignoreip, %" PRIu64
                               " suspicious (per jail), %" PRIu64
                               " long lines skipped, %zu queued",
                               r.lines, r.failures, r.ignored_ip, suspicious,
                               tap_follow_skipped(r.fol), tap_queue_len(r.q));
                    break;
                }
            }
            if (np == 2 && (pf[1].revents & POLLIN)) {
                tap_follow_events(r.fol);
            }
            tap_follow_tick(r.fol);
            if (mono_ms() >= next_state) {
                save_state(&r, 0);
                next_state = mono_ms() + TAP_STATE_MS;
            }
        }
    }
    rc = 0;
stop:
    atomic_store(&r.stop, 1);
    tap_queue_shutdown(r.q);
    if (have_writer) {
        pthread_join(writer, NULL);
    }
    tap_keeper_join(keeper);
    save_state(&r, 1);
end:
    if (sfd >= 0) {
        close(sfd);
    }
    tap_state_free(&state);
    tap_follow_free(r.fol);
    tap_queue_free(r.q);
    for (unsigned i = 0; i < r.nfiles; i++) {
        free(r.files[i].jails);
        free(r.files[i].streams);
    }
    free(r.files);
    free(r.pend);
    free(r.jails);
    tap_config_free(r.cfg);
    return rc;
}
