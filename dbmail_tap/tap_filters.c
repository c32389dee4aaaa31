/*
 * Built-in filters for DBMail's failed-login lines.
 *
 * Two rules keep a username from framing anyone.
 *
 * 1. A line counts only when it is DBMail's, from its first byte: the
 *    header must be one DBMail (or syslog, or the journal) writes for the
 *    right program, the level and module those of the failed-login
 *    message, and the message must start right there.  A Postfix line
 *    that ends in an attacker's "login rejected: user [x] from [V:1]"
 *    fails this: its header names postfix, and the text sits at its end.
 *
 *      form                            header                          body before the message
 *      file log (logfile = FILE)       DATE HOST dbmail-imapd[PID]: [0xT]  Notice:[imap] FUNC(+N):
 *      syslog 3.1-3.5.3                DATE HOST dbmail/imap4d[PID]:   Notice:[imap] FUNC(+N):
 *      syslog 3.5.4+                   DATE HOST dbmail/imap4d[PID]:   Notice:
 *      logfile = stderr, raw           (none: the line starts there)   either of the two
 *      logfile = stderr, via journal   DATE HOST dbmail-imapd[PID]:    either of the two
 *
 *    (POP3 the same with dbmail-pop3d, dbmail/pop3d, "Error:[pop3]";
 *    IMAP 2.2 with dbmail/imap4d or dbmail-imapd and "Message "; DATE is
 *    "Mon dd HH:MM:SS" or RFC 3339.)
 *
 * 2. DBMail writes the username as the client sent it, so everything
 *    between "user [" and the address is attacker text.  The address is
 *    read from the END of the line, where DBMail's own fixed suffix sits:
 *    the last '[' there (an address never contains one), with the fixed
 *    words checked before it, so a username such as
 *    "x] from [203.0.113.66:1" only adds text before the real suffix.
 *
 * What a line-by-line reader cannot see on its own: a username holding
 * newlines writes lines of its own.  A login line whose message does not
 * end on it therefore reports a window (how far its message may run,
 * bounded by DBMail's own message limit), and the scanner never counts a
 * line that starts inside one.  A message that reaches that limit may have
 * lost its real ending, so its last "from [...]" is not trusted either.
 * Lines that fail these checks but end like a failed login are
 * TAP_SUSPICIOUS: somebody's text imitates DBMail.
 *
 * What no reader of the file can see: a username whose first line ends
 * in a closing of its own, followed by lines in DBMail's exact format, is
 * byte for byte what several real logins write (README, "What remains").
 * Through syslog, which escapes control characters, no username starts a
 * line and these rules are exact.
 */
#include <string.h>

#include "tap_filters.h"
#include "tap_find.h"

/* DBMail 2.2 formats with g_strdup_vprintf: no limit of its own.  Its
 * window takes the longest line the tap reads, far beyond any real
 * username. */
#define MSG_MAX_22 TAP_MAX_LINE

/* Body shapes before the message (see the table above). */
#define B_DETAIL   1u /* 3.x: "Level:[module] function(+line): " */
#define B_SIMPLE   2u /* 3.5.4+ syslog and stderr: "Level: " */
#define B_22       4u /* 2.2: "Level " */
#define B_22DETAIL 8u /* 2.2 at debug: "Level:[module] file,function(+line): " */

typedef struct hdr {
    int has_date;     /* 0: a bare stderr line, the body starts at 0 */
    const char *prog; /* program name of a dated line */
    size_t proglen;
    int thread;  /* "[0x...] " after the tag: DBMail's file log */
    size_t body; /* offset of the body */
} hdr_t;

/* One accepted combination of header and body for a filter. */
typedef struct form {
    int dated;        /* 1: DATE HOST PROG...; 0: a bare line */
    const char *prog; /* for dated lines */
    int thread;       /* the file log's "[0x...] " after the tag */
    unsigned bodies;
} form_t;

typedef struct shape {
    const char *level;
    const char *module; /* of B_DETAIL */
    const form_t *forms;
    size_t nforms;
} shape_t;

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int lit_at(const char *s, size_t n, size_t i, const char *lit, size_t k)
{
    return i <= n && n - i >= k && memcmp(s + i, lit, k) == 0;
}

#define LIT_AT(s, n, i, lit) lit_at(s, n, i, lit, sizeof(lit) - 1)

/* Digits at s[i..]: how many (0..max); more than max is 0. */
static size_t run_digits(const char *s, size_t n, size_t i, size_t max)
{
    size_t k = 0;

    while (i + k < n && is_digit(s[i + k])) {
        if (++k > max)
            return 0;
    }
    return k;
}

/* "HH:MM:SS" at s[i..]: the offset after it, or 0. */
static size_t clock_at(const char *s, size_t n, size_t i)
{
    if (n - i < 8 || run_digits(s, n, i, 2) != 2 || s[i + 2] != ':'
        || run_digits(s, n, i + 3, 2) != 2 || s[i + 5] != ':'
        || run_digits(s, n, i + 6, 2) != 2)
        return 0;
    return i + 8;
}

/*
 * A timestamp at the start of the line: "Mon dd HH:MM:SS" (DBMail's
 * "%b %d", syslog's space-padded day) or RFC 3339 with optional
 * fraction and zone (rsyslog's default since Debian 12).  The offset
 * after it, or 0.
 */
static size_t date_at(const char *s, size_t n)
{
    size_t i;

    if (n >= 15 && is_alpha(s[0]) && is_alpha(s[1]) && is_alpha(s[2]) && s[3] == ' ') {
        i = 4;
        if (s[i] == ' ')
            i++;
        size_t d = run_digits(s, n, i, 2);
        if (d == 0 || i + d >= n || s[i + d] != ' ')
            return 0;
        return clock_at(s, n, i + d + 1);
    }
    if (n >= 19 && run_digits(s, n, 0, 4) == 4 && s[4] == '-' && run_digits(s, n, 5, 2) == 2
        && s[7] == '-' && run_digits(s, n, 8, 2) == 2 && s[10] == 'T') {
        i = clock_at(s, n, 11);
        if (i == 0)
            return 0;
        if (i < n && s[i] == '.') {
            size_t f = run_digits(s, n, i + 1, 9);
            if (f == 0)
                return 0;
            i += 1 + f;
        }
        if (i < n && s[i] == 'Z')
            return i + 1;
        if (i < n && (s[i] == '+' || s[i] == '-') && run_digits(s, n, i + 1, 2) == 2
            && i + 3 < n && s[i + 3] == ':' && run_digits(s, n, i + 4, 2) == 2)
            return i + 6;
        return 0;
    }
    return 0;
}

/* "[0x" HEX "] " at s[i..] (a %p of glibc): the offset after it, or 0. */
static size_t ptr_at(const char *s, size_t n, size_t i)
{
    size_t k = 0;

    if (!LIT_AT(s, n, i, "[0x"))
        return 0;
    i += 3;
    while (i + k < n && is_hex(s[i + k]) && k <= 16)
        k++;
    if (k == 0 || k > 16 || !LIT_AT(s, n, i + k, "] "))
        return 0;
    return i + k + 2;
}

/*
 * The header of a line: "DATE HOST PROG[PID]: " (the PID optional),
 * followed in DBMail's file log by "[0xTHREAD] "; or nothing at all, for
 * a bare stderr line.  0 when a line has a date but no proper header
 * after it (it then is nobody's DBMail line).
 */
static int parse_hdr(const char *s, size_t n, hdr_t *h)
{
    size_t i = date_at(s, n), k;

    memset(h, 0, sizeof(*h));
    if (i == 0)
        return 1;
    h->has_date = 1;
    if (i >= n || s[i] != ' ')
        return 0;
    i++;
    for (k = 0; i + k < n && s[i + k] != ' '; k++)
        if ((unsigned char)s[i + k] < 0x21 || s[i + k] == 0x7f || k >= 255)
            return 0;
    if (k == 0 || i + k >= n)
        return 0;
    i += k + 1; /* the host and its space */
    h->prog = s + i;
    for (k = 0; i + k < n; k++) {
        char c = s[i + k];
        if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.' || c == '/'))
            break;
    }
    if (k == 0 || k > 64)
        return 0;
    h->proglen = k;
    i += k;
    if (i < n && s[i] == '[') {
        size_t d = run_digits(s, n, i + 1, 10);
        if (d == 0 || i + 1 + d >= n || s[i + 1 + d] != ']')
            return 0;
        i += d + 2;
    }
    if (!LIT_AT(s, n, i, ": "))
        return 0;
    i += 2;
    k = ptr_at(s, n, i);
    if (k != 0) {
        h->thread = 1;
        i = k;
    }
    h->body = i;
    return 1;
}

/* "name(+digits): " at s[i..], name drawn from the characters allowed
 * (2.2's "file,function" included): the offset after it, or 0. */
static size_t func_at(const char *s, size_t n, size_t i, int with_file)
{
    size_t k = 0;
    int comma = 0;

    while (i + k < n && k <= 128) {
        char c = s[i + k];
        if (is_alpha(c) || is_digit(c) || c == '_' || (with_file && (c == '.' || c == '-')))
            k++;
        else if (with_file && c == ',' && !comma && k > 0) {
            comma = 1;
            k++;
        }
        else
            break;
    }
    if (k == 0 || k > 128 || (with_file && !comma) || !LIT_AT(s, n, i + k, "(+"))
        return 0;
    i += k + 2;
    k = run_digits(s, n, i, 7);
    if (k == 0 || !LIT_AT(s, n, i + k, "): "))
        return 0;
    return i + k + 3;
}

/* The body shapes of bodies at s[i..]: the offset of the message, or 0. */
static size_t body_at(const char *s, size_t n, size_t i, const char *level, const char *module,
                      unsigned bodies)
{
    size_t ll = strlen(level), ml = strlen(module);

    if (!lit_at(s, n, i, level, ll))
        return 0;
    i += ll;
    if ((bodies & B_SIMPLE) && LIT_AT(s, n, i, ": "))
        return i + 2;
    if ((bodies & B_22) && i < n && s[i] == ' ')
        return i + 1;
    if (!LIT_AT(s, n, i, ":["))
        return 0;
    i += 2;
    if (bodies & B_DETAIL) {
        if (lit_at(s, n, i, module, ml) && LIT_AT(s, n, i + ml, "] "))
            return func_at(s, n, i + ml + 2, 0);
    }
    if (bodies & B_22DETAIL) {
        size_t k = 0;
        while (i + k < n && (is_alpha(s[i + k]) || is_digit(s[i + k]) || s[i + k] == '_')
               && k < 32)
            k++;
        if (k > 0 && LIT_AT(s, n, i + k, "] "))
            return func_at(s, n, i + k + 2, 1);
    }
    return 0;
}

/* Where the message of a line of this shape starts, or 0 when the line
 * is not one DBMail writes for it. */
static size_t msg_start(const char *s, size_t n, const shape_t *sh)
{
    hdr_t h;

    if (!parse_hdr(s, n, &h))
        return 0;
    for (size_t i = 0; i < sh->nforms; i++) {
        const form_t *f = &sh->forms[i];
        if (f->dated != h.has_date)
            continue;
        if (f->dated
            && (f->thread != h.thread || strlen(f->prog) != h.proglen
                || memcmp(f->prog, h.prog, h.proglen) != 0))
            continue;
        size_t m = body_at(s, n, h.body, sh->level, sh->module, f->bodies);
        if (m != 0)
            return m;
    }
    return 0;
}

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
 * The closing "] from [ADDR:PORT]" of an IMAP 3.x line trimmed to n: the
 * address into *a and *alen (the port split off at the LAST colon: IPv6 is
 * printed without brackets).  1 when the line ends that way with its
 * "] from " at or after from_min, 0 when not, -1 when it does but the
 * port is not a number (nobody's address).
 */
static int imap3_close(const char *s, size_t n, size_t from_min, const char **a, size_t *alen)
{
    static const char from[] = "] from ";
    const size_t flen = sizeof(from) - 1;

    if (n == 0 || s[n - 1] != ']')
        return 0;
    long o = bracket_before(s, n - 1, from, flen);
    if (o < 0 || (size_t)o - flen < from_min)
        return 0;
    *a = s + o + 1;
    const char *colon = memrchr(*a, ':', n - 1 - (size_t)o - 1);
    if (colon == NULL)
        return -1;
    for (const char *p = colon + 1; p < s + n - 1; p++)
        if (!is_digit(*p))
            return -1;
    *alen = (size_t)(colon - *a);
    return 1;
}

/*
 * A line of somebody else's that ends the way a failure of this filter
 * does: text imitating DBMail (another daemon quoting a client, a success
 * line whose username spells a rejection).  Suspicious when its address
 * parses; missed otherwise (nothing anyone could ban).
 */
static tap_outcome_t imitation(tap_outcome_t shape_ok)
{
    return shape_ok == TAP_FAILURE ? TAP_SUSPICIOUS : TAP_MISSED;
}

/* ---- IMAP 3.x: "[%p] login rejected: user [%s] from [%s:%s]" ---- */

static const form_t imap3_forms[] = {
    { 1, "dbmail-imapd", 1, B_DETAIL },
    { 1, "dbmail/imap4d", 0, B_DETAIL | B_SIMPLE },
    { 1, "dbmail-imapd", 0, B_DETAIL | B_SIMPLE },
    { 0, NULL, 0, B_DETAIL | B_SIMPLE },
};
static const shape_t imap3_shape = { "Notice", "imap", imap3_forms,
                                     sizeof(imap3_forms) / sizeof(imap3_forms[0]) };

static tap_outcome_t match_imap3(const char *s, size_t n, mg_addr_t *addr, size_t *window)
{
    static const char key[] = "login rejected: user [";
    size_t t = trim_end(s, n), m = msg_start(s, n, &imap3_shape), u0;
    const char *a;
    size_t alen;
    mg_addr_t tmp;

    *window = 0;
    if (m != 0) {
        u0 = ptr_at(s, n, m);
        if (u0 == 0 || !LIT_AT(s, n, u0, key))
            m = 0;
        else
            u0 += sizeof(key) - 1;
    }
    if (m == 0) {
        /* a success line ends the same way: only the words of a
         * rejection make it an imitation */
        int c = imap3_close(s, t, 0, &a, &alen);
        if (c != 1 || tap_find(s, t, key, sizeof(key) - 1) == NULL)
            return TAP_MISSED;
        return imitation(addr_outcome(a, alen, &tmp));
    }
    int c = imap3_close(s, t, u0, &a, &alen);
    if (c == 0) {
        /* no closing: the username went on past a newline (or the
         * message was cut): its lines follow, up to DBMail's limit */
        *window = m + TAP_DBMAIL_MSG_MAX;
        return TAP_SUSPICIOUS;
    }
    if (n - m >= TAP_DBMAIL_MSG_MAX) {
        /* cut at the limit: the closing may be the username's.  A window
         * that ends inside this very line marks it for every matcher,
         * regexes included, and leaves the next line alone. */
        *window = m + TAP_DBMAIL_MSG_MAX;
        return TAP_SUSPICIOUS;
    }
    if (c < 0)
        return TAP_IGNORED;
    return addr_outcome(a, alen, addr);
}

/*
 * Shared shape of IMAP 2.2 and POP3: "LEAD user MID[ADDR]SUFFIX", no port.
 * 1 and the address when the line trimmed to n ends that way with MID at
 * or after from_min, 0 when not.
 */
static int noport_close(const char *s, size_t n, size_t from_min, const char *mid,
                        size_t midlen, const char *suffix, size_t suflen, const char **a,
                        size_t *alen)
{
    if (!ends_with(s, n, suffix, suflen))
        return 0;
    size_t close = n - suflen; /* s[close] == ']' (suffix starts with it) */
    long o = bracket_before(s, close, mid, midlen);
    if (o < 0 || (size_t)o - midlen < from_min)
        return 0;
    *a = s + o + 1;
    *alen = close - (size_t)o - 1;
    return 1;
}

/* ---- IMAP 2.2: "user (name %s) coming from [%s] login rejected", maybe after "[%p] " ---- */

static const form_t imap22_forms[] = {
    { 1, "dbmail/imap4d", 0, B_22 | B_22DETAIL },
    { 1, "dbmail-imapd", 0, B_22 | B_22DETAIL },
    { 0, NULL, 0, B_22 | B_22DETAIL },
};
static const shape_t imap22_shape = { "Message", "", imap22_forms,
                                      sizeof(imap22_forms) / sizeof(imap22_forms[0]) };

static tap_outcome_t match_imap22(const char *s, size_t n, mg_addr_t *addr, size_t *window)
{
    static const char lead[] = "user (name ";
    static const char mid[] = ") coming from ";
    static const char suf[] = "] login rejected";
    size_t t = trim_end(s, n), m = msg_start(s, n, &imap22_shape), u0 = 0;
    const char *a;
    size_t alen;
    mg_addr_t tmp;

    *window = 0;
    if (m != 0) {
        size_t p = ptr_at(s, n, m);
        u0 = p != 0 ? p : m;
        if (!LIT_AT(s, n, u0, lead))
            m = 0;
        else
            u0 += sizeof(lead) - 1;
    }
    if (m == 0) {
        int c = noport_close(s, t, 0, mid, sizeof(mid) - 1, suf, sizeof(suf) - 1, &a, &alen);
        return imitation(c ? addr_outcome(a, alen, &tmp) : TAP_MISSED);
    }
    if (!noport_close(s, t, u0, mid, sizeof(mid) - 1, suf, sizeof(suf) - 1, &a, &alen)) {
        *window = m + MSG_MAX_22;
        return TAP_SUSPICIOUS;
    }
    if (n - m >= TAP_DBMAIL_MSG_MAX) {
        *window = m + TAP_DBMAIL_MSG_MAX; /* see match_imap3 */
        return TAP_SUSPICIOUS;
    }
    return addr_outcome(a, alen, addr);
}

/* ---- POP3: "user [%s] coming from [%s] tried to login with wrong password" ---- */

static const form_t pop3_forms[] = {
    { 1, "dbmail-pop3d", 1, B_DETAIL },
    { 1, "dbmail/pop3d", 0, B_DETAIL | B_SIMPLE | B_22 | B_22DETAIL },
    { 1, "dbmail-pop3d", 0, B_DETAIL | B_SIMPLE | B_22 | B_22DETAIL },
    { 0, NULL, 0, B_DETAIL | B_SIMPLE | B_22 | B_22DETAIL },
};
static const shape_t pop3_shape = { "Error", "pop3", pop3_forms,
                                    sizeof(pop3_forms) / sizeof(pop3_forms[0]) };

/* The username comes from one POP3 command line: it holds no newline, so
 * a POP3 line never opens a window. */
static tap_outcome_t match_pop3(const char *s, size_t n, mg_addr_t *addr, size_t *window)
{
    static const char lead[] = "user [";
    static const char mid[] = "] coming from ";
    static const char suf[] = "] tried to login with wrong password";
    size_t t = trim_end(s, n), m = msg_start(s, n, &pop3_shape);
    const char *a;
    size_t alen;
    mg_addr_t tmp;

    *window = 0;
    if (m != 0 && !LIT_AT(s, n, m, lead))
        m = 0;
    if (m == 0) {
        int c = noport_close(s, t, 0, mid, sizeof(mid) - 1, suf, sizeof(suf) - 1, &a, &alen);
        return imitation(c ? addr_outcome(a, alen, &tmp) : TAP_MISSED);
    }
    if (!noport_close(s, t, m + sizeof(lead) - 1, mid, sizeof(mid) - 1, suf, sizeof(suf) - 1,
                      &a, &alen))
        return TAP_MISSED;
    if (n - m >= TAP_DBMAIL_MSG_MAX)
        return TAP_SUSPICIOUS;
    return addr_outcome(a, alen, addr);
}

static const tap_filter_t filters[] = {
    { "dbmail-imap", "login rejected: user [", "login rejected: user [", 0, match_imap3 },
    { "dbmail-imap22", "] login rejected", "(name ", 1, match_imap22 },
    { "dbmail-pop3", "] tried to login with wrong password", NULL, 1, match_pop3 },
};

static const char *const names[] = { "dbmail-imap", "dbmail-imap22", "dbmail-pop3", "dbmail",
                                     NULL };

static const tap_filter_t *const multiline[] = { &filters[0], &filters[1], NULL };

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

const tap_filter_t *const *tap_filters_multiline(void)
{
    return multiline;
}
