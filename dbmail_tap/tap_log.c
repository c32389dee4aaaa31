/*
 * stderr logger; see tap_log.h.
 */
#include "tap_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile int log_level = TAP_LOG_NOTICE;
static int log_journal = -1; /* -1 = not decided yet */

static const char *const level_names[8] = { "emerg",   "alert",  "crit", "error",
                                            "warning", "notice", "info", "debug" };

void tap_log_set_level(tap_log_level_t level)
{
    log_level = (int)level;
}

tap_log_level_t tap_log_get_level(void)
{
    return (tap_log_level_t)log_level;
}

int tap_log_parse_level(const char *s, tap_log_level_t *out)
{
    int i;

    if (s == NULL) {
        return -1;
    }
    for (i = TAP_LOG_ERROR; i <= TAP_LOG_DEBUG; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (tap_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warn") == 0) {
        *out = TAP_LOG_WARN;
        return 0;
    }
    return -1;
}

void tap_vlog(tap_log_level_t level, const char *fmt, va_list ap)
{
    char buf[1024];
    size_t n = 0;
    int r;

    if ((int)level > log_level) {
        return;
    }
    if (log_journal < 0) {
        log_journal = getenv("JOURNAL_STREAM") != NULL;
    }
    if (log_journal) {
        r = snprintf(buf, sizeof(buf), "<%d>", (int)level);
    }
    else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        r = snprintf(buf, sizeof(buf),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ dbmail_tap[%ld]: %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, (long)getpid(), level_names[level & 7]);
    }
    if (r > 0) {
        n = (size_t)r;
    }
    r = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    if (r > 0) {
        n += (size_t)r < sizeof(buf) - n - 1 ? (size_t)r : sizeof(buf) - n - 2;
    }
    /* A message never spans lines: a newline inside (an attacker's
     * username, say) would forge a log entry. */
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n' || buf[i] == '\r') {
            buf[i] = ' ';
        }
    }
    buf[n++] = '\n';
    {
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(STDERR_FILENO, buf + off, n - off);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                break;
            }
            off += (size_t)w;
        }
    }
}

void tap_log(tap_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_vlog(level, fmt, ap);
    va_end(ap);
}
