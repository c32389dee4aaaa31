/*
 * Fuzz target: one failed IMAP login whose username is every byte the
 * fuzzer can think of, written into the log exactly as DBMail writes it,
 * between two real failed logins of other clients.
 *
 * Input: byte 0 picks the log's shape and the jail's patterns, bytes 1-2
 * a block boundary, the rest is the username.  The message is built the
 * way src/dm_debug.c builds it: the username cut at its first NUL (a C
 * string), the message cut at 4094 bytes, a newline added unless the
 * message ends in one; through syslog, rsyslog's escaping of control
 * characters ("#ooo").  The real client is REAL; the two bystanders sit
 * right before the message and BLIND_MAX bytes after its start.
 *
 * What must hold, whatever the username:
 *   - through syslog (escaped), the login yields at most one failure, and
 *     only for REAL;
 *   - in the unescaped logs (file log, unescaped syslog, stderr raw and
 *     through the journal), the same when the username holds no newline;
 *     with newlines, no line of the message counts at all unless its
 *     first line already ends in a closing on its own (the one shape a
 *     line reader cannot tell from two real logins: README, "What
 *     remains");
 *   - both bystanders always count, exactly once: what one message keeps
 *     from counting ends within BLIND_MAX bytes of its start (its own
 *     window, or the window of an unfinished login line written inside it,
 *     which may be a real one that follows a shorter message);
 *   - a block boundary anywhere (the stream carried over), or the stream
 *     scanner fed in uneven pieces, changes no count;
 *   - a failure carries its address, nothing else does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_filters.h"
#include "tap_match.h"
#include "tap_scan.h"

#define SEED "login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$"
#define PTR "[0x55d0c0ffee10] "
#define REAL "203.0.113.250"
#define BEFORE "198.51.100.1"
#define AFTER "198.51.100.2"
/* DBMail's limit, plus a login line that starts inside the message (its
 * header at most ~600 bytes: host 255, program 64, function 128, ...) and
 * runs to DBMail's limit again */
#define BLIND_MAX (2 * TAP_DBMAIL_MSG_MAX + 1024)
#define FILE_HDR "Nov 26 10:00:01 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] " \
                 "dbmail_imap_session_handle_auth(+1448): "

enum { F_FILE, F_SYSLOG31_RAW, F_SYSLOG_ESCAPED, F_STDERR, F_JOURNAL, F_COUNT };

static const char *const headers[F_COUNT] = {
    FILE_HDR,
    "Nov 26 10:00:01 mail dbmail/imap4d[1234]: Notice:[imap] "
    "dbmail_imap_session_handle_auth(+1448): ",
    "2026-11-26T10:00:01.000001+00:00 mail dbmail/imap4d[1234]: Notice: ",
    "Notice: ",
    "Nov 26 10:00:01 mail dbmail-imapd[1234]: Notice: ",
};

typedef struct text {
    char *buf;
    size_t len, cap;
} text_t;

static void put(text_t *t, const void *p, size_t n)
{
    if (t->len + n > t->cap)
        abort();
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void puts_(text_t *t, const char *s)
{
    put(t, s, strlen(s));
}

typedef struct seen {
    size_t msg_from, msg_to;    /* lines starting in [from, to) are the message's */
    const char *base;
    unsigned inside, inside_real, before, after, other, total;
} seen_t;

static int on_line(void *baton, tap_outcome_t o, const mg_addr_t *addr, const char *line,
                   size_t len)
{
    seen_t *s = baton;
    char a[MG_ADDR_STRLEN];

    (void)len;
    if ((o == TAP_FAILURE) != (addr != NULL))
        abort();
    if (o != TAP_FAILURE)
        return 0;
    if (addr->plen != 128 || line == NULL)
        abort();
    mg_addr_format(addr, a, sizeof(a));
    size_t off = (size_t)(line - s->base);
    s->total++;
    if (off >= s->msg_from && off < s->msg_to) {
        s->inside++;
        if (strcmp(a, REAL) == 0)
            s->inside_real++;
    } else if (strcmp(a, BEFORE) == 0) {
        s->before++;
    } else if (strcmp(a, AFTER) == 0) {
        s->after++;
    } else {
        s->other++;
    }
    return 0;
}

static void same(const seen_t *a, const seen_t *b)
{
    if (a->inside != b->inside || a->before != b->before || a->after != b->after
        || a->other != b->other || a->total != b->total) {
        fprintf(stderr, "counts differ between block splits\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tap_matcher_t *jails[3];
    static char *buf;
    static const size_t cap = 64 * 1024;
    char err[TAP_MATCH_ERRLEN];

    if (size < 3)
        return 0;
    if (jails[0] == NULL) {
        jails[0] = tap_matcher_new();
        jails[1] = tap_matcher_new();
        jails[2] = tap_matcher_new();
        buf = malloc(cap);
        if (jails[0] == NULL || jails[1] == NULL || jails[2] == NULL || buf == NULL
            || tap_matcher_add_filter(jails[0], "dbmail-imap", err, sizeof(err)) != 0
            || tap_matcher_add_filter(jails[1], "dbmail", err, sizeof(err)) != 0
            || tap_matcher_add_failregex(jails[2], SEED, err, sizeof(err)) != 0)
            abort();
    }
    int form = data[0] % F_COUNT;
    tap_matcher_t *m = jails[(data[0] / F_COUNT) % 3];
    size_t split = ((size_t)data[1] << 8 | data[2]);
    const char *u = (const char *)data + 3;
    size_t ulen = size - 3;

    /* the message as DBMail formats it */
    static char msg[8192];
    const char *nul = memchr(u, '\0', ulen);
    if (nul != NULL)
        ulen = (size_t)(nul - u);
    if (ulen > 6000)
        ulen = 6000;
    size_t n = (size_t)snprintf(msg, sizeof(msg), PTR "login rejected: user [");
    memcpy(msg + n, u, ulen);
    n += ulen;
    n += (size_t)snprintf(msg + n, sizeof(msg) - n, "] from [" REAL ":4444]");
    if (n > TAP_DBMAIL_MSG_MAX)
        n = TAP_DBMAIL_MSG_MAX;
    int has_nl = memchr(msg, '\n', n) != NULL;

    text_t t = { buf, 0, cap };
    puts_(&t, FILE_HDR PTR "login rejected: user [bob] from [" BEFORE ":1]\n");
    size_t line0 = t.len;
    puts_(&t, headers[form]);
    size_t ms = t.len;
    if (form == F_SYSLOG_ESCAPED) {
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)msg[i];
            if (c < 0x20 || c == 0x7f) {
                char e[5];
                snprintf(e, sizeof(e), "#%03o", c);
                put(&t, e, 4);
            } else {
                put(&t, &msg[i], 1);
            }
        }
        has_nl = 0;
        puts_(&t, "\n");
    } else {
        put(&t, msg, n);
        if (msg[n - 1] != '\n')
            puts_(&t, "\n");
    }
    size_t msg_end = t.len;
    /* pad with lines holding no literal up to BLIND_MAX after the
     * message's start, then the second bystander */
    size_t to = ms + BLIND_MAX;
    if (to < t.len + 2)
        to = t.len + 2;
    while (t.len < to) {
        size_t k = to - t.len > 200 ? 100 : to - t.len;
        for (size_t i = 0; i + 1 < k; i++)
            put(&t, "n", 1);
        put(&t, "\n", 1);
    }
    puts_(&t, FILE_HDR PTR "login rejected: user [bob] from [" AFTER ":1]\n");

    /* does the first line of the message end in a closing of its own?
     * (the built-in filter's reading: a failure, or an address nobody
     * has; an unfinished one is suspicious) */
    const char *fl_end = memchr(t.buf + line0, '\n', msg_end - line0);
    tap_outcome_t first = tap_match_line(jails[0], t.buf + line0,
                                         (size_t)(fl_end - (t.buf + line0)), NULL);
    int known_limit = has_nl && (first == TAP_FAILURE || first == TAP_IGNORED);

    /* one block */
    seen_t whole = { line0, msg_end, t.buf, 0, 0, 0, 0, 0, 0 };
    tap_stream_t st = { 0 };
    if (tap_scan_block_stream(m, &st, t.buf, t.len, 0, on_line, &whole, NULL) != t.len)
        abort();
    if (whole.before != 1 || whole.after != 1 || whole.other != 0) {
        fprintf(stderr, "bystanders %u/%u, other %u\n", whole.before, whole.after, whole.other);
        abort();
    }
    if (!known_limit && whole.inside != whole.inside_real) {
        fprintf(stderr, "a failure inside the message for another address\n");
        abort();
    }
    if (!has_nl && whole.inside > 1)
        abort();
    if (has_nl && !known_limit && whole.inside != 0) {
        fprintf(stderr, "a line of an unfinished message counted\n");
        abort();
    }

    /* two blocks, split anywhere, the stream carried over */
    seen_t two = { line0, msg_end, t.buf, 0, 0, 0, 0, 0, 0 };
    tap_stream_t st2 = { 0 };
    size_t p = split % (t.len + 1);
    size_t u1 = tap_scan_block_stream(m, &st2, t.buf, p, 0, on_line, &two, NULL);
    size_t u2 = tap_scan_block_stream(m, &st2, t.buf + u1, t.len - u1, 0, on_line, &two, NULL);
    if (u1 + u2 != t.len)
        abort();
    same(&whole, &two);

    /* the stream scanner in uneven pieces */
    seen_t pieces = { line0, msg_end, NULL, 0, 0, 0, 0, 0, 0 };
    tap_scanner_t *sc = tap_scanner_new(m, 0, on_line, &pieces);
    if (sc != NULL) {
        size_t off = 0, step = split % 97 + 1;
        while (off < t.len) {
            size_t room;
            char *q = tap_scanner_space(sc, &room);
            size_t k = t.len - off < step ? t.len - off : step;
            if (k > room)
                k = room;
            memcpy(q, t.buf + off, k);
            /* line pointers are into the scanner's buffer: map them back */
            pieces.base = q - off;
            tap_scanner_commit(sc, k);
            off += k;
            step = step * 5 % 4099 + 1;
        }
        if (tap_scanner_pending(sc) != 0)
            abort();
        tap_scanner_free(sc);
        same(&whole, &pieces);
    }
    return 0;
}
