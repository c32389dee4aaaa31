/*
 * The metrics file; see tap_metrics.h.  The families are three tables
 * (per jail, daemon-wide, firewall keeper): a new count is one row.
 */
#include "tap_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap_log.h"

#define TMP_SUFFIX ".tmp"

typedef struct family {
    const char *name;
    const char *type; /* "counter" (name ends in _total) or "gauge" */
    const char *help;
    size_t off; /* of a uint64_t in the row's struct */
} family_t;

#define JAIL_FAM(name, type, field, help)                     \
    {                                                         \
        name, type, help, offsetof(tap_metrics_jail_t, field) \
    }
#define SNAP_FAM(name, type, field, help)                     \
    {                                                         \
        name, type, help, offsetof(tap_metrics_snap_t, field) \
    }
#define KEEP_U64(name, type, field, help)                     \
    {                                                         \
        name, type, help, offsetof(tap_keeper_stats_t, field) \
    }

static const family_t jail_families[] = {
    JAIL_FAM("mailguard_tap_lines_read_total", "counter", lines,
             "Lines of the jail's log files read."),
    JAIL_FAM("mailguard_tap_lines_matched_total", "counter", matched,
             "Lines the jail's filter matched as a failed login with an address "
             "(those from ignoreip addresses included)."),
    JAIL_FAM("mailguard_tap_lines_ignored_total", "counter", ignored,
             "Failure lines not counted: ignoreregex matched, or the address does not parse."),
    JAIL_FAM("mailguard_tap_lines_suspicious_total", "counter", suspicious,
             "Lines that read like a failed login but cannot be DBMail's own (forged)."),
    JAIL_FAM("mailguard_tap_lines_missed_total", "counter", missed,
             "Lines no failure pattern matched."),
    JAIL_FAM("mailguard_tap_failures_ignoreip_total", "counter", ignoreip,
             "Matched failures not counted because the address is in ignoreip."),
    JAIL_FAM("mailguard_tap_failures_stored_total", "counter", stored,
             "Failures recorded in Redis."),
    JAIL_FAM("mailguard_tap_failures_duplicate_total", "counter", duplicate,
             "Failures Redis had counted before (a line read again after a restart, or "
             "sent again after a lost answer): not counted twice."),
    JAIL_FAM("mailguard_tap_bans_total", "counter", bans,
             "Bans the jail's failures made in Redis."),
};

static const family_t daemon_families[] = {
    SNAP_FAM("mailguard_tap_running", "gauge", running,
             "1 while dbmail_tap runs; 0 in the file it leaves at exit."),
    SNAP_FAM("mailguard_tap_start_time_seconds", "gauge", start_time,
             "Unix time dbmail_tap started."),
    SNAP_FAM("mailguard_tap_queue_length", "gauge", queue_len,
             "Failures read and waiting to be stored in Redis."),
    SNAP_FAM("mailguard_tap_queue_capacity", "gauge", queue_capacity,
             "Most failures the queue holds; beyond it the oldest are dropped."),
    SNAP_FAM("mailguard_tap_queue_dropped_total", "counter", queue_dropped,
             "Failures dropped from a full queue."),
    SNAP_FAM("mailguard_tap_redis_up", "gauge", redis_up,
             "1 unless the writer's last call to Redis failed."),
    SNAP_FAM("mailguard_tap_writer_failed_rounds_total", "counter", writer_failed_rounds,
             "Rounds of the Redis writer that failed (Redis unreachable, slow or in error)."),
    SNAP_FAM("mailguard_tap_files_followed", "gauge", files,
             "Log files followed (every logpath of the enabled jails)."),
    SNAP_FAM("mailguard_tap_files_open", "gauge", files_open,
             "Followed log files open now (the others do not exist yet)."),
    SNAP_FAM("mailguard_tap_lines_too_long_total", "counter", lines_too_long,
             "Lines longer than 64 KiB, skipped."),
};

static const family_t keeper_families[] = {
    KEEP_U64("mailguard_tap_firewall_snapshots_total", "counter", snapshots,
             "Whole ban set written to the firewall (start, gap, hand edit, rebuild)."),
    KEEP_U64("mailguard_tap_firewall_changes_applied_total", "counter", applied,
             "Bans and unbans from the change log applied to the firewall."),
    KEEP_U64("mailguard_tap_firewall_changes_refused_total", "counter", refused,
             "Changes or members refused (not an address, or a prefix too wide)."),
    KEEP_U64("mailguard_tap_firewall_failures_total", "counter", fw_failures,
             "Firewall updates that failed; each is followed by a rewrite of the whole set."),
    KEEP_U64("mailguard_tap_firewall_redis_errors_total", "counter", errors,
             "Redis calls of the firewall keeper that failed."),
    KEEP_U64("mailguard_tap_firewall_bans_live_in_redis", "gauge", live,
             "Live bans in Redis at the keeper's last check."),
};

static const char *const banactions[] = { "none", "nftables", "ipfw", NULL };

/* ---- a growing text ---- */

typedef struct text {
    char *p;
    size_t len, cap;
    int oom;
} text_t;

__attribute__((format(printf, 2, 3))) static void add(text_t *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->oom) {
        return;
    }
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t ncap = (t->cap + (size_t)n + 1) * 2;
        char *np = realloc(t->p, ncap);
        if (np == NULL) {
            t->oom = 1;
            return;
        }
        t->p = np;
        t->cap = ncap;
    }
}

static void head(text_t *t, const family_t *f)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

static uint64_t field(const void *row, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)row + off, sizeof(v));
    return v;
}

/* A label value: \ " and newline escaped (jail names hold none of them,
 * by the configuration's rule; this keeps the file valid regardless). */
static void add_label(text_t *t, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            add(t, "\\%c", *s);
        }
        else if (*s == '\n') {
            add(t, "\\n");
        }
        else {
            add(t, "%c", *s);
        }
    }
}

static void render_jails(text_t *t, const tap_metrics_snap_t *m)
{
    for (size_t i = 0; i < sizeof(jail_families) / sizeof(jail_families[0]); i++) {
        const family_t *f = &jail_families[i];
        head(t, f);
        for (size_t j = 0; j < m->njails; j++) {
            add(t, "%s{jail=\"", f->name);
            add_label(t, m->jails[j].name);
            add(t, "\"} %" PRIu64 "\n", field(&m->jails[j], f->off));
        }
    }
}

static void render_daemon(text_t *t, const tap_metrics_snap_t *m)
{
    for (size_t i = 0; i < sizeof(daemon_families) / sizeof(daemon_families[0]); i++) {
        head(t, &daemon_families[i]);
        add(t, "%s %" PRIu64 "\n", daemon_families[i].name, field(m, daemon_families[i].off));
    }
    /* one series per action, so a dashboard never sees one vanish */
    add(t, "# HELP mailguard_tap_banaction 1 for the configured banaction.\n"
           "# TYPE mailguard_tap_banaction gauge\n");
    for (const char *const *a = banactions; *a != NULL; a++) {
        add(t, "mailguard_tap_banaction{banaction=\"%s\"} %d\n", *a,
            strcmp(*a, m->banaction) == 0);
    }
}

static void render_keeper(text_t *t, const tap_keeper_stats_t *k)
{
    add(t,
        "# HELP mailguard_tap_firewall_redis_up 1 while the firewall keeper is in touch "
        "with Redis.\n# TYPE mailguard_tap_firewall_redis_up gauge\n"
        "mailguard_tap_firewall_redis_up %d\n",
        k->up != 0);
    add(t,
        "# HELP mailguard_tap_firewall_in_step 1 while the firewall follows the change "
        "log, 0 while the whole set is being written or Redis is away.\n"
        "# TYPE mailguard_tap_firewall_in_step gauge\n"
        "mailguard_tap_firewall_in_step %d\n",
        k->in_step != 0);
    for (size_t i = 0; i < sizeof(keeper_families) / sizeof(keeper_families[0]); i++) {
        head(t, &keeper_families[i]);
        add(t, "%s %" PRIu64 "\n", keeper_families[i].name, field(k, keeper_families[i].off));
    }
    add(t,
        "# HELP mailguard_tap_firewall_last_check_timestamp_seconds Unix time of the "
        "keeper's last check of the change log (0: none yet).\n"
        "# TYPE mailguard_tap_firewall_last_check_timestamp_seconds gauge\n"
        "mailguard_tap_firewall_last_check_timestamp_seconds %" PRId64 "\n",
        k->last_check);
}

char *tap_metrics_render(const tap_metrics_snap_t *m, size_t *len)
{
    text_t t = { NULL, 0, 0, 0 };

    t.cap = 8192;
    t.p = malloc(t.cap);
    if (t.p == NULL) {
        return NULL;
    }
    t.p[0] = '\0';
    render_jails(&t, m);
    render_daemon(&t, m);
    if (m->keeper != NULL) {
        render_keeper(&t, m->keeper);
    }
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}

/* ---- the file ---- */

/* The temporary file, always a new one: never through a symlink planted
 * at its name, never into someone else's file.  What sits there already
 * is a leftover of a crash (or planted): unlink removes the name, not what
 * a symlink points to, and the second O_EXCL open fails rather than follow
 * anything that reappears.  The same rule as the statefile's. */
static int open_tmp(const char *tmp)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);

    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    }
    return fd;
}

int tap_metrics_write(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    char tmp[4096];
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s" TMP_SUFFIX, path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    fd = open_tmp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    /* umask may have taken bits away: node_exporter must read it */
    (void)fchmod(fd, 0644);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            snprintf(err, errlen, "%s: %s", tmp, n < 0 ? strerror(errno) : "short write");
            goto fail;
        }
        text += n;
        len -= (size_t)n;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "rename to %s: %s", path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return -1;
}

void tap_metrics_publish(tap_metrics_t *mt, const tap_metrics_snap_t *m)
{
    char err[512];
    size_t len = 0;
    char *text;
    int rc = -1;

    if (mt->path == NULL) {
        return;
    }
    text = tap_metrics_render(m, &len);
    if (text == NULL) {
        snprintf(err, sizeof(err), "out of memory");
    }
    else {
        rc = tap_metrics_write(mt->path, text, len, err, sizeof(err));
        free(text);
    }
    if (rc != 0) {
        if (!mt->err_logged) {
            tap_error("MG0634: cannot write the metrics file: %s", err);
            mt->err_logged = 1;
        }
        return;
    }
    if (mt->err_logged) {
        tap_notice("MG0635: metrics file %s written again", mt->path);
        mt->err_logged = 0;
    }
}
