/*
 * `dbmail_tap run`: the daemon.
 *
 * Three threads, each with one job, its own state and its own Redis
 * connection:
 *   - the reader (this, the main thread; tap_reader.c) follows the logs,
 *     matches lines and queues failures.  It never talks to Redis, so
 *     Redis can never stall it.  It also saves the statefile
 *     (tap_resume.c) and takes the signals;
 *   - the writer (tap_writer.c) stores the queued failures in Redis in
 *     rounds, as soon as anything is queued;
 *   - the firewall keeper (banaction other than none, tap_keeper.c)
 *     follows the shared ban set's change log, so bans made anywhere (the
 *     webmail module's included) reach the firewall within a round trip.
 * The queue (tap_queue.h) is all the reader and the writer share; the
 * keeper shares nothing but the stop flag.  The reader also writes the
 * metrics file (tap_metrics.h) from its own counts and what the writer and
 * the keeper publish through their accessors.
 *
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
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "mg_store.h"
#include "tap_clock.h"
#include "tap_cmd.h"
#include "tap_config.h"
#include "tap_keeper.h"
#include "tap_log.h"
#include "tap_metrics.h"
#include "tap_queue.h"
#include "tap_reader.h"
#include "tap_resume.h"
#include "tap_writer.h"

#define TAP_STATE_MS 1000 /* statefile written at most this often */

/* What the command owns; each thread has its own context besides. */
typedef struct run {
    tap_config_t *cfg;
    const tap_jail_t **jails; /* enabled jails; index = tap_failure_t.jail */
    size_t njails;
    tap_queue_t *q;
    tap_reader_t *rd;
    tap_writer_t *writer;
    tap_keeper_t *keeper;
    tap_resume_t resume;
    tap_state_t state; /* the statefile as loaded */
    mg_store_cfg_t scfg;
    int sfd;         /* signalfd */
    atomic_int stop; /* 1: stop reading; writer flushes */
    /* the metrics file */
    tap_metrics_t metrics;
    tap_metrics_jail_t *mjails; /* one row per enabled jail */
    tap_keeper_stats_t kstats;  /* the keeper's, as last read */
    int64_t start_time;
} run_t;

/* ---- options ---- */

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

/* The options into *config and *use_inotify.  -1 to go on, else the exit
 * status (0 after --help, 2 for a usage error). */
static int parse_options(int argc, char **argv, const char **config, int *use_inotify)
{
    static const struct option opts[] = { { "config", required_argument, NULL, 'c' },
                                          { "log-level", required_argument, NULL, 'l' },
                                          { "poll", no_argument, NULL, 'p' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    tap_log_level_t lv;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            *config = optarg;
            break;
        case 'l':
            if (tap_log_parse_level(optarg, &lv) != 0) {
                fprintf(stderr, "dbmail_tap run: unknown log level '%s'\n", optarg);
                return 2;
            }
            tap_log_set_level(lv);
            break;
        case 'p':
            *use_inotify = 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            tap_cmd_bad_option("run", optopt, argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dbmail_tap run: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* ---- set-up ---- */

/* Configuration, jails, queue, reader and the files where the statefile
 * left them.  0, or -1 (said on stderr: the daemon has not started). */
static int setup(run_t *r, const char *config, int use_inotify)
{
    char err[TAP_CONFIG_ERRLEN];

    if (tap_config_load(config, &r->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "dbmail_tap: %s\n", err);
        return -1;
    }
    r->njails = tap_config_enabled(r->cfg);
    if (r->njails == 0) {
        fprintf(stderr, "dbmail_tap: %s: no enabled jail\n", config);
        return -1;
    }
    /* tap_failure_t.jail is 8 bits */
    if (r->njails > 255) {
        fprintf(stderr, "dbmail_tap: %s: more than 255 enabled jails\n", config);
        return -1;
    }
    r->jails = calloc(r->njails, sizeof(*r->jails));
    r->mjails = calloc(r->njails, sizeof(*r->mjails));
    r->q = tap_queue_new(TAP_QUEUE_DEFAULT_CAPACITY);
    if (r->jails == NULL || r->mjails == NULL || r->q == NULL) {
        goto oom;
    }
    r->njails = 0;
    for (size_t j = 0; j < r->cfg->njails; j++) {
        if (r->cfg->jails[j].enabled) {
            r->jails[r->njails++] = &r->cfg->jails[j];
        }
    }
    r->rd = tap_reader_new(r->jails, r->njails, r->q, use_inotify);
    if (r->rd == NULL) {
        goto oom;
    }
    tap_config_store_cfg(r->cfg, 500, 1000, &r->scfg);
    r->metrics.path = r->cfg->metrics_file;
    r->start_time = (int64_t)time(NULL);
    tap_resume_init(&r->resume, r->cfg->statefile);
    tap_resume_load(&r->resume, &r->state);
    if (tap_reader_add_files(r->rd, &r->state) != 0) {
        goto oom;
    }
    return 0;
oom:
    fprintf(stderr, "dbmail_tap: out of memory\n");
    return -1;
}

/* Block the signals the reader takes by signalfd (every thread started
 * later inherits the mask).  0, or -1 (logged). */
static int take_signals(run_t *r)
{
    sigset_t sigs;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    r->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (r->sfd < 0) {
        tap_error("MG0607: signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void log_start(const run_t *r)
{
    char red[512];

    mg_store_url_redacted(&r->cfg->redis_url, red, sizeof(red));
    tap_notice("MG0600: dbmail_tap %s starting: %zu jails, %u files, redis %s, banaction %s",
               TAP_VERSION, r->njails, tap_follow_count(tap_reader_follow(r->rd)), red,
               tap_banaction_name(r->cfg->banaction));
}

/* ---- the metrics file ---- */

/* Gather every thread's counts (the reader's own, the writer's and the
 * keeper's through their accessors) and write the file. */
static void write_metrics(run_t *r, int running)
{
    tap_follow_t *fol = tap_reader_follow(r->rd);
    tap_metrics_snap_t m;
    unsigned nfiles = tap_follow_count(fol), open = 0;

    if (r->metrics.path == NULL) {
        return;
    }
    for (size_t j = 0; j < r->njails; j++) {
        tap_metrics_jail_t *row = &r->mjails[j];
        tap_reader_jail_t rj;
        tap_reader_jail_counts(r->rd, j, &rj);
        row->name = r->jails[j]->name;
        row->lines = rj.lines;
        row->matched = rj.matched;
        row->ignored = rj.ignored;
        row->suspicious = rj.suspicious;
        row->missed = rj.missed;
        row->ignoreip = rj.ignoreip;
        tap_writer_counts(r->writer, j, &row->stored, &row->duplicate, &row->bans);
    }
    for (unsigned i = 0; i < nfiles; i++) {
        tap_follow_pos_t pos;
        uint32_t gen;
        open += (unsigned)tap_follow_position(fol, i, &pos, &gen);
    }
    if (r->keeper != NULL) {
        tap_keeper_stats(r->keeper, &r->kstats);
    }
    memset(&m, 0, sizeof(m));
    m.jails = r->mjails;
    m.njails = r->njails;
    m.running = (uint64_t)running;
    m.start_time = (uint64_t)r->start_time;
    m.queue_len = tap_queue_len(r->q);
    m.queue_capacity = TAP_QUEUE_DEFAULT_CAPACITY;
    m.queue_dropped = tap_queue_dropped(r->q);
    m.redis_up = (uint64_t)tap_writer_redis_up(r->writer);
    m.writer_failed_rounds = tap_writer_failed_rounds(r->writer);
    m.files = nfiles;
    m.files_open = open;
    m.lines_too_long = tap_follow_skipped(fol);
    m.banaction = tap_banaction_name(r->cfg->banaction);
    m.keeper = r->cfg->banaction != TAP_BANACTION_NONE ? &r->kstats : NULL;
    tap_metrics_publish(&r->metrics, &m);
}

/* ---- the reader loop ---- */

static void log_stop(const run_t *r)
{
    tap_reader_totals_t t;

    tap_reader_totals(r->rd, &t);
    tap_notice("MG0602: stopping: %" PRIu64 " lines, %" PRIu64 " failures, %" PRIu64
               " ignored by ignoreip, %" PRIu64 " suspicious (per jail), %" PRIu64
               " long lines skipped, %zu queued",
               t.lines, t.failures, t.ignored_ip, t.suspicious,
               tap_follow_skipped(tap_reader_follow(r->rd)), tap_queue_len(r->q));
}

/* Read the pending signals.  1 when the daemon is to stop. */
static int handle_signals(run_t *r)
{
    struct signalfd_siginfo si;
    int quit = 0;

    while (read(r->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            tap_notice("MG0601: SIGHUP: reopening the log files");
            tap_follow_reopen(tap_reader_follow(r->rd));
        }
        else {
            quit = 1;
        }
    }
    return quit;
}

/* Once a second: the statefile, when something moved. */
static void every_second(run_t *r)
{
    /* a backlog that overflowed the queue is over once it drained: the
     * next overflow is news again */
    if (tap_queue_len(r->q) == 0) {
        tap_reader_backlog_gone(r->rd);
    }
    tap_resume_save(&r->resume, tap_reader_follow(r->rd), r->q, 0);
}

/* Follow the files until a stop signal (or a poll error).  Everything
 * the reader does happens in the follower's callbacks from here. */
static void reader_loop(run_t *r)
{
    tap_follow_t *fol = tap_reader_follow(r->rd);
    int64_t next_state = tap_mono_ms() + TAP_STATE_MS;
    /* without a metrics file the timer never fires (nor shortens a poll) */
    int64_t next_metrics = r->metrics.path != NULL ? tap_mono_ms() + TAP_METRICS_MS : INT64_MAX;

    tap_follow_start(fol);
    /* at once: the file says the daemon runs, and which files are open */
    write_metrics(r, 1);
    for (;;) {
        struct pollfd pf[2];
        int np = 1, tmo = tap_follow_timeout(fol);
        int64_t now = tap_mono_ms();
        int64_t ds = (next_state < next_metrics ? next_state : next_metrics) - now;

        if (ds < tmo) {
            tmo = ds < 0 ? 0 : (int)ds;
        }
        pf[0].fd = r->sfd;
        pf[0].events = POLLIN;
        pf[0].revents = 0;
        if (tap_follow_fd(fol) >= 0) {
            pf[1].fd = tap_follow_fd(fol);
            pf[1].events = POLLIN;
            pf[1].revents = 0;
            np = 2;
        }
        if (poll(pf, (nfds_t)np, tmo) < 0 && errno != EINTR) {
            tap_error("MG0619: poll: %s", strerror(errno));
            return;
        }
        if ((pf[0].revents & POLLIN) && handle_signals(r)) {
            log_stop(r);
            return;
        }
        if (np == 2 && (pf[1].revents & POLLIN)) {
            tap_follow_events(fol);
        }
        tap_follow_tick(fol);
        if (tap_mono_ms() >= next_state) {
            every_second(r);
            next_state = tap_mono_ms() + TAP_STATE_MS;
        }
        if (tap_mono_ms() >= next_metrics) {
            write_metrics(r, 1);
            next_metrics = tap_mono_ms() + TAP_METRICS_MS;
        }
    }
}

/* ---- the command ---- */

/* Stop the other threads (the writer flushes first), save the state and
 * leave the last metrics (running 0, the writer's final counts). */
static void stop_threads(run_t *r)
{
    atomic_store(&r->stop, 1);
    tap_queue_shutdown(r->q);
    tap_writer_wait(r->writer);
    if (r->keeper != NULL) {
        tap_keeper_stats(r->keeper, &r->kstats);
        tap_keeper_join(r->keeper);
        r->keeper = NULL;
    }
    tap_resume_save(&r->resume, tap_reader_follow(r->rd), r->q, 1);
    write_metrics(r, 0);
    tap_writer_free(r->writer);
    r->writer = NULL;
}

static void teardown(run_t *r)
{
    if (r->sfd >= 0) {
        close(r->sfd);
    }
    tap_state_free(&r->state);
    tap_reader_free(r->rd);
    tap_queue_free(r->q);
    free(r->mjails);
    free(r->jails);
    tap_config_free(r->cfg);
}

int tap_cmd_run(int argc, char **argv)
{
    const char *config = TAP_DEFAULT_CONFIG;
    int use_inotify = 1, rc;
    run_t r;

    memset(&r, 0, sizeof(r));
    r.sfd = -1;
    rc = parse_options(argc, argv, &config, &use_inotify);
    if (rc >= 0) {
        return rc;
    }
    rc = 1;
    if (setup(&r, config, use_inotify) != 0 || take_signals(&r) != 0) {
        goto end;
    }
    log_start(&r);
    r.writer = tap_writer_start(&r.scfg, r.q, r.jails, r.njails, &r.stop);
    if (r.writer == NULL) {
        goto end;
    }
    if (r.cfg->banaction != TAP_BANACTION_NONE) {
        r.keeper = tap_keeper_start(r.cfg, &r.scfg, &r.stop);
        if (r.keeper == NULL) {
            goto stop;
        }
    }
    reader_loop(&r);
    rc = 0;
stop:
    stop_threads(&r);
end:
    teardown(&r);
    return rc;
}
