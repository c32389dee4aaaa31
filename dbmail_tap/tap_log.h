/*
 * dbmail_tap's logger: one line per message on stderr, written with a
 * single write() so lines from different threads never interleave.
 * Under systemd (JOURNAL_STREAM set) each line starts with the "<N>"
 * syslog priority the journal understands and carries no timestamp of its
 * own; elsewhere it starts with an ISO 8601 UTC time.  Messages at debug
 * level or above carry a "MGnnnn: " tag (dbmail_tap's daemon range is
 * MG0600-MG0699).
 */
#ifndef TAP_LOG_H
#define TAP_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tap_log_level {
    TAP_LOG_ERROR = 3,
    TAP_LOG_WARN = 4,
    TAP_LOG_NOTICE = 5,
    TAP_LOG_INFO = 6,
    TAP_LOG_DEBUG = 7
} tap_log_level_t;

/* Messages above this level are dropped (default TAP_LOG_NOTICE). */
void tap_log_set_level(tap_log_level_t level);
tap_log_level_t tap_log_get_level(void);

/* "error", "warning", "notice", "info", "debug" -> level; -1 when unknown. */
int tap_log_parse_level(const char *s, tap_log_level_t *out);

void tap_log(tap_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_vlog(tap_log_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define tap_error(...)  tap_log(TAP_LOG_ERROR, __VA_ARGS__)
#define tap_warn(...)   tap_log(TAP_LOG_WARN, __VA_ARGS__)
#define tap_notice(...) tap_log(TAP_LOG_NOTICE, __VA_ARGS__)
#define tap_info(...)   tap_log(TAP_LOG_INFO, __VA_ARGS__)
#define tap_debug(...)                            \
    do {                                          \
        if (tap_log_get_level() >= TAP_LOG_DEBUG) \
            tap_log(TAP_LOG_DEBUG, __VA_ARGS__);  \
    } while (0)

#endif
