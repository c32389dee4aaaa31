/*
 * The configuration rules shared by the module and dbmail_tap (see
 * mg_rules.h).  Pure functions: no httpd, no logging.
 */
#include "mg_rules.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mg_policy.h"

int mg_rule_jail_name(const char *s, const char **why)
{
    size_t n = strlen(s);

    if (n == 0 || n > MG_JAIL_NAME_MAX) {
        *why = "must be 1 to 47 characters";
        return -1;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-') {
            *why = "may contain only letters, digits, '.', '_' and '-'";
            return -1;
        }
    }
    return 0;
}

int mg_rule_key_prefix(const char *s, const char **why)
{
    size_t n = strlen(s);

    if (n == 0 || n > MG_KEY_PREFIX_MAX) {
        *why = "must be 1 to 64 characters";
        return -1;
    }
    for (; *s; s++) {
        if (!isgraph((unsigned char)*s)) {
            *why = "contains a space or control character";
            return -1;
        }
    }
    return 0;
}

int mg_rule_maxretry(const char *s, unsigned *out, const char **why)
{
    unsigned long v;

    if (mg_parse_uint(s, 1, MG_MAXRETRY_MAX, &v, why) != 0) {
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

int mg_rule_policy_duration(const char *s, int64_t *out, const char **why)
{
    int64_t v;

    if (mg_duration_parse(s, &v, why) != 0) {
        return -1;
    }
    if (v < 1) {
        *why = "must be at least 1 second";
        return -1;
    }
    *out = v;
    return 0;
}

int mg_rule_factor(const char *s, double *out, const char **why)
{
    char *end = NULL;
    double v;

    /* a plain decimal: strtod alone would skip leading space and take
     * "inf", "nan", hex and exponents, none of them a factor anyone means */
    if (*s == '\0' || strspn(s, "0123456789.") != strlen(s)) {
        *why = "not a decimal number";
        return -1;
    }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v)) {
        *why = "not a decimal number";
        return -1;
    }
    if (v < 1.0 || v > MG_FACTOR_MAX) {
        *why = "out of range";
        return -1;
    }
    *out = v;
    return 0;
}

int mg_rule_v6prefix(const char *s, unsigned *out, const char **why)
{
    unsigned long v;

    if (mg_parse_uint(s, 1, 128, &v, why) != 0) {
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

int mg_rule_prefix_floor(const char *v4, const char *v6, unsigned *f4, unsigned *f6,
                         const char **why)
{
    unsigned long a, b;

    if (mg_parse_uint(v4 + (*v4 == '/'), 1, 32, &a, why) != 0) {
        *why = "the IPv4 length is not a number from 1 to 32";
        return -1;
    }
    if (mg_parse_uint(v6 + (*v6 == '/'), 1, 128, &b, why) != 0) {
        *why = "the IPv6 length is not a number from 1 to 128";
        return -1;
    }
    *f4 = (unsigned)a;
    *f6 = (unsigned)b;
    return 0;
}
