/*
 * Durations, the jail policy and the escalation rule (see mg_policy.h).
 */
#include "mg_policy.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *mg_why_dummy;

/* Seconds per unit letter, 0 for an unknown one. */
static int64_t mg_unit_seconds(char c)
{
    switch (tolower((unsigned char)c)) {
    case 's':
        return 1;
    case 'm':
        return 60;
    case 'h':
        return 3600;
    case 'd':
        return 86400;
    case 'w':
        return 7 * 86400;
    default:
        return 0;
    }
}

int mg_duration_parse(const char *s, int64_t *secs, const char **why)
{
    int64_t total = 0;
    const char *p = s;

    if (why == NULL) {
        why = &mg_why_dummy;
    }
    if (s == NULL || *s == '\0') {
        *why = "empty duration";
        return -1;
    }
    while (*p) {
        int64_t n = 0, unit;
        const char *start = p;

        if (*p == '+' || *p == '-') {
            *why = "a sign is not allowed in a duration";
            return -1;
        }
        if (!isdigit((unsigned char)*p)) {
            *why = mg_unit_seconds(*p) ? "a unit without a number"
                                       : "unexpected character in a duration";
            return -1;
        }
        for (; isdigit((unsigned char)*p); p++) {
            n = n * 10 + (*p - '0');
            if (n > MG_DURATION_MAX) {
                *why = "duration too long (at most 100 years)";
                return -1;
            }
        }
        if (*p == '\0') {
            /* A bare number is seconds, but only on its own: "1h30" is
             * ambiguous (30 seconds or 30 minutes?) and refused. */
            if (start != s) {
                *why = "a number without a unit after another part";
                return -1;
            }
            unit = 1;
        }
        else {
            unit = mg_unit_seconds(*p);
            if (unit == 0) {
                *why = isalpha((unsigned char)*p)
                           ? "unknown duration unit (use s, m, h, d or w)"
                           : "unexpected character in a duration";
                return -1;
            }
            p++;
        }
        if (n > (MG_DURATION_MAX - total) / unit) {
            *why = "duration too long (at most 100 years)";
            return -1;
        }
        total += n * unit;
    }
    *secs = total;
    return 0;
}

char *mg_duration_format(int64_t secs, char *buf, size_t size)
{
    static const struct {
        int64_t len;
        char c;
    } units[] = { { 7 * 86400, 'w' }, { 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' } };
    char tmp[64];
    size_t n = 0, i;
    uint64_t left;

    if (size == 0) {
        return buf;
    }
    if (secs < 0) {
        tmp[n++] = '-';
        left = (uint64_t)0 - (uint64_t)secs;
    }
    else {
        left = (uint64_t)secs;
    }
    if (left == 0) {
        memcpy(tmp + n, "0s", 3);
    }
    else {
        /* Greedy by largest unit: the fewest parts, hence the shortest. */
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            uint64_t q = left / (uint64_t)units[i].len;

            if (q) {
                n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%llu%c", (unsigned long long)q,
                                      units[i].c);
                left -= q * (uint64_t)units[i].len;
            }
        }
        tmp[n] = '\0';
    }
    snprintf(buf, size, "%s", tmp);
    return buf;
}

char *mg_time_format_utc(int64_t secs, char *buf, size_t size)
{
    time_t t = (time_t)secs;
    struct tm tm;

    /* Beyond year 9999 is "forever" for every practical purpose. */
    if (secs == MG_EXPIRY_NEVER || secs > INT64_C(253402300799)) {
        snprintf(buf, size, "forever");
    }
    else if (secs < 0 || gmtime_r(&t, &tm) == NULL
             || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, size, "?");
    }
    return buf;
}

/* The module's defaults; dbmail_tap overrides maxretry with Fail2Ban's
 * (see tap_config.c).  Webmail users mistype more often than mail
 * clients, which retry a stored password. */
void mg_policy_defaults(mg_policy_t *p)
{
    p->maxretry = 10;
    p->findtime = 10 * 60;
    p->bantime = 60 * 60;
    p->increment = 0;
    p->factor = 2.0;
    p->maxtime = 7 * 24 * 60 * 60;
}

int64_t mg_policy_ban_seconds(const mg_policy_t *p, unsigned prev_bans)
{
    double r;

    if (!p->increment || prev_bans == 0 || p->maxtime <= p->bantime) {
        return p->bantime;
    }
    /* A factor that is not a number above 1 cannot escalate. */
    if (!(p->factor > 1.0)) {
        return p->bantime;
    }
    /* pow() saturates to +inf for huge exponents; any comparison with inf
     * is well defined, so the cap catches it.  The product is truncated
     * toward zero, as math.floor does in record_failure.lua. */
    r = (double)p->bantime * pow(p->factor, (double)prev_bans);
    if (!(r < (double)p->maxtime)) {
        return p->maxtime;
    }
    if (r < (double)p->bantime) {
        return p->bantime;
    }
    return (int64_t)r;
}

int mg_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out,
                  const char **why)
{
    unsigned long v = 0;
    const char *p;

    if (why == NULL) {
        why = &mg_why_dummy;
    }
    if (s == NULL || *s == '\0') {
        *why = "empty number";
        return -1;
    }
    for (p = s; *p; p++) {
        unsigned d;

        if (*p < '0' || *p > '9') {
            *why = "not a decimal number";
            return -1;
        }
        d = (unsigned)(*p - '0');
        if (v > (~0UL - d) / 10) {
            *why = "number too large";
            return -1;
        }
        v = v * 10 + d;
    }
    if (v < min || v > max) {
        *why = v < min ? "number below the minimum" : "number above the maximum";
        return -1;
    }
    *out = v;
    return 0;
}

int mg_parse_bool(const char *s, int *out, const char **why)
{
    static const char *const yes[] = { "on", "true", "yes", "1" };
    static const char *const no[] = { "off", "false", "no", "0" };
    size_t i;

    if (why == NULL) {
        why = &mg_why_dummy;
    }
    if (s == NULL || *s == '\0') {
        *why = "empty flag (use On or Off)";
        return -1;
    }
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    *why = "not a flag (use On/Off, true/false, yes/no or 1/0)";
    return -1;
}
