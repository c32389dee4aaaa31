/*
 * The value parsers of dbmail_tap's configuration (tap_config_int.h):
 * one value, a boolean, a count, a duration, a factor, a list.  The checks
 * themselves are the module's (mg_rules.h); these add the file, line, key
 * and value to the message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mg_policy.h"
#include "mg_rules.h"
#include "tap_config_int.h"

int tap_cfg_fail(tap_cfg_ctx_t *c, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_ini_verror(c->err, c->errlen, c->fname, line, fmt, ap);
    va_end(ap);
    return -1;
}

/*
 * The one value of a single-valued key: its only non-empty line ("key =" on
 * one line and the value indented below is fine).  NULL with the message
 * when there are several.
 */
const char *tap_cfg_single(tap_cfg_ctx_t *c, const tap_ini_entry_t *e)
{
    const char *v = "";
    size_t n = 0;

    for (size_t i = 0; i < e->nitems; i++) {
        if (e->items[i][0] == '\0')
            continue;
        if (n++ > 0) {
            /* the redis URL is not quoted at all: it may hold a password in
             * a form the masking does not recognise */
            if (strcmp(e->key, "redis") == 0)
                tap_cfg_fail(c, e->item_lines[i], "%s: takes a single value, not several lines",
                             e->key);
            else
                tap_cfg_fail(c, e->item_lines[i],
                             "%s: takes a single value, not several lines: '%s'", e->key,
                             e->items[i]);
            return NULL;
        }
        v = e->items[i];
    }
    return v;
}

int tap_cfg_bool(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, int *out)
{
    const char *why;
    const char *v = tap_cfg_single(c, e);

    if (v == NULL)
        return -1;
    if (mg_parse_bool(v, out, &why) != 0)
        return tap_cfg_fail(
            c, e->line, "%s: not a boolean (true/false, yes/no, on/off, 1/0): '%s'", e->key, v);
    return 0;
}

/* The value checks are the module's too (mg_rules.h): a jail moved
 * between Apache and the tap means the same thing in both. */
int tap_cfg_count(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, tap_cfg_rule_fn rule,
                  const char *what, unsigned *out)
{
    const char *why = "invalid";
    const char *s = tap_cfg_single(c, e);

    if (s == NULL)
        return -1;
    if (rule(s, out, &why) != 0)
        return tap_cfg_fail(c, e->line, "%s: %s (%s): '%s'", e->key, what, why, s);
    return 0;
}

int tap_cfg_duration(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, int64_t *out)
{
    const char *why = "bad duration";
    const char *s = tap_cfg_single(c, e);

    if (s == NULL)
        return -1;
    if (mg_rule_policy_duration(s, out, &why) != 0)
        return tap_cfg_fail(c, e->line,
                            "%s: not a duration of at least 1s like 30s, 10m, 1h, 2d, "
                            "1w (%s): '%s'",
                            e->key, why, s);
    return 0;
}

int tap_cfg_factor(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, double *out)
{
    const char *why = "invalid";
    const char *s = tap_cfg_single(c, e);

    if (s == NULL)
        return -1;
    if (mg_rule_factor(s, out, &why) != 0)
        return tap_cfg_fail(c, e->line, "%s: not a number from 1 to 1000 (%s): '%s'", e->key,
                            why, s);
    return 0;
}

/* Split on whitespace and commas; calls fn for each token. */
int tap_cfg_tokens(const char *s, const char *seps, int (*fn)(void *, const char *), void *b)
{
    char tok[4096];

    while (*s) {
        size_t skip = strspn(s, seps);
        s += skip;
        if (*s == '\0')
            break;
        size_t n = strcspn(s, seps);
        if (n >= sizeof(tok))
            n = sizeof(tok) - 1; /* the parser of the token refuses it */
        memcpy(tok, s, n);
        tok[n] = '\0';
        s += strcspn(s, seps);
        int rc = fn(b, tok);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The physical line of the item holding token tok (for multi-line values). */
unsigned tap_cfg_token_line(const tap_ini_entry_t *e, const char *tok)
{
    for (size_t i = 0; i < e->nitems; i++)
        if (strstr(e->items[i], tok) != NULL)
            return e->item_lines[i];
    return e->line;
}
