/*
 * Built-in filters for DBMail's failed-login lines.
 *
 * DBMail writes the username exactly as the client sent it, brackets and
 * all, so everything between "user [" and the address is attacker text.
 * Each filter therefore anchors at the END of the line, where DBMail's own
 * fixed suffix sits, takes the last '[' there (an address never contains
 * one) and checks the fixed words before it.  A username such as
 * "x] from [203.0.113.66:1" only adds text before the real suffix and can
 * never move the address that is read.
 */
#include <string.h>

#include "tap_filters.h"
#include "tap_find.h"

/* Drop trailing CR, spaces and tabs (CRLF logs, padded syslog lines). */
static size_t trim_end(const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n;
}

static int ends_with(const char *s, size_t n, const char *suffix, size_t slen)
{
    return n >= slen && memcmp(s + n - slen, suffix, slen) == 0;
}

/* The address text [a, a+alen): a failure when it parses, else ignored. */
static tap_outcome_t addr_outcome(const char *a, size_t alen, mg_addr_t *addr)
{
    mg_addr_t tmp;
    const char *why = NULL;

    if (mg_addr_parse_n(a, alen, addr ? addr : &tmp, &why) != 0)
        return TAP_IGNORED;
    return TAP_FAILURE;
}

/*
 * Find "PRE[" ADDR "]" ending at position close (s[close] == ']'): returns
 * the index of '[' or -1.  The '[' is the last one before close, and PRE
 * must sit right before it.
 */
static long bracket_before(const char *s, size_t close, const char *pre, size_t plen)
{
    const char *open = memrchr(s, '[', close);

    if (open == NULL)
        return -1;
    size_t o = (size_t)(open - s);
    if (o < plen || memcmp(s + o - plen, pre, plen) != 0)
        return -1;
    return (long)o;
}

/*
 * IMAP 3.x: "[%p] login rejected: user [%s] from [%s:%s]".  The address is
 * split from the port at the LAST colon (IPv6 is printed without
 * brackets).  A "login accepted:" before the first "login rejected" means
 * the rejected text is part of a username on a success line.
 */
static tap_outcome_t match_imap3(const char *s, size_t n, mg_addr_t *addr)
{
    static const char key[] = "login rejected: user [";
    static const char from[] = "] from ";
    const size_t klen = sizeof(key) - 1;

    n = trim_end(s, n);
    const char *k = tap_find(s, n, key, klen);
    if (k == NULL)
        return TAP_MISSED;
    size_t kpos = (size_t)(k - s);
    if (tap_find(s, kpos, "login accepted:", 15) != NULL)
        return TAP_MISSED;
    if (n == 0 || s[n - 1] != ']')
        return TAP_MISSED;
    long o = bracket_before(s, n - 1, from, sizeof(from) - 1);
    /* the "] from " must begin after the username's own '[' */
    if (o < 0 || (size_t)o - (sizeof(from) - 1) < kpos + klen)
        return TAP_MISSED;
    const char *a = s + o + 1;
    size_t alen = n - 1 - (size_t)o - 1;
    const char *colon = memrchr(a, ':', alen);
    if (colon == NULL)
        return TAP_IGNORED;
    for (const char *p = colon + 1; p < a + alen; p++)
        if (*p < '0' || *p > '9')
            return TAP_IGNORED;
    return addr_outcome(a, (size_t)(colon - a), addr);
}

/*
 * Shared shape of IMAP 2.2 and POP3: "...LEAD...MID[ADDR]SUFFIX" with no
 * port.  lead must occur before the bracket (it opens the username).
 */
static tap_outcome_t match_noport(const char *s, size_t n, mg_addr_t *addr,
                                  const char *lead, size_t leadlen,
                                  const char *mid, size_t midlen,
                                  const char *suffix, size_t suflen)
{
    n = trim_end(s, n);
    if (!ends_with(s, n, suffix, suflen))
        return TAP_MISSED;
    size_t close = n - suflen;          /* s[close] == ']' (suffix starts with it) */
    long o = bracket_before(s, close, mid, midlen);
    if (o < 0)
        return TAP_MISSED;
    const char *l = tap_find(s, (size_t)o - midlen, lead, leadlen);
    if (l == NULL)
        return TAP_MISSED;
    return addr_outcome(s + o + 1, close - (size_t)o - 1, addr);
}

/* IMAP 2.2: "user (name %s) coming from [%s] login rejected". */
static tap_outcome_t match_imap22(const char *s, size_t n, mg_addr_t *addr)
{
    static const char lead[] = "user (name ";
    static const char mid[] = ") coming from ";
    static const char suf[] = "] login rejected";

    return match_noport(s, n, addr, lead, sizeof(lead) - 1, mid, sizeof(mid) - 1,
                        suf, sizeof(suf) - 1);
}

/* POP3: "user [%s] coming from [%s] tried to login with wrong password". */
static tap_outcome_t match_pop3(const char *s, size_t n, mg_addr_t *addr)
{
    static const char lead[] = "user [";
    static const char mid[] = "] coming from ";
    static const char suf[] = "] tried to login with wrong password";

    return match_noport(s, n, addr, lead, sizeof(lead) - 1, mid, sizeof(mid) - 1,
                        suf, sizeof(suf) - 1);
}

static const tap_filter_t filters[] = {
    { "dbmail-imap", "login rejected: user [", match_imap3 },
    { "dbmail-imap22", "] login rejected", match_imap22 },
    { "dbmail-pop3", "] tried to login with wrong password", match_pop3 },
};

static const char *const names[] = {
    "dbmail-imap", "dbmail-imap22", "dbmail-pop3", "dbmail", NULL
};

size_t tap_filters_lookup(const char *name, const tap_filter_t **out)
{
    size_t n = sizeof(filters) / sizeof(filters[0]);

    if (strcmp(name, "dbmail") == 0) {
        for (size_t i = 0; i < n; i++)
            out[i] = &filters[i];
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, filters[i].name) == 0) {
            out[0] = &filters[i];
            return 1;
        }
    }
    return 0;
}

const char *const *tap_filters_names(void)
{
    return names;
}
