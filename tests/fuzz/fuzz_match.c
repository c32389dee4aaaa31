/*
 * Fuzz target for the line matcher and the block scanner.
 *
 * The first byte picks the patterns (the built-in filters, the seed's
 * regex, or the first line of the input as a failregex); the rest is log
 * text.  Besides memory errors it checks what must stay true: the
 * prefilter never changes a count or a forged-line window (scanning with
 * and without it agrees), feeding the scanner in pieces gives the same
 * counts as one block, and a failure always carries a parsed address.
 * fuzz_forge.c fuzzes the usernames of otherwise real DBMail lines.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_match.h"
#include "tap_scan.h"

#define SEED "login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$"

static int check_cb(void *baton, tap_outcome_t o, const mg_addr_t *addr, const char *line,
                    size_t len)
{
    (void)baton;
    if ((unsigned)o > TAP_SUSPICIOUS)
        abort();
    if (o == TAP_FAILURE && (addr == NULL || addr->plen != 128))
        abort();
    if (o != TAP_FAILURE && addr != NULL)
        abort();
    if (len > TAP_MAX_LINE || (line == NULL && len != 0))
        abort();
    return 0;
}

static void same(const tap_scan_stats_t *a, const tap_scan_stats_t *b)
{
    if (a->lines != b->lines || a->failures != b->failures || a->ignored != b->ignored
        || a->toolong != b->toolong) {
        fprintf(stderr, "counts differ: %llu/%llu/%llu/%llu vs %llu/%llu/%llu/%llu\n",
                (unsigned long long)a->lines, (unsigned long long)a->failures,
                (unsigned long long)a->ignored, (unsigned long long)a->toolong,
                (unsigned long long)b->lines, (unsigned long long)b->failures,
                (unsigned long long)b->ignored, (unsigned long long)b->toolong);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[TAP_MATCH_ERRLEN];
    tap_matcher_t *m;
    const char *text;
    size_t len;

    /* the fixed pattern sets are built once: compiling is not what is tested */
    static tap_matcher_t *fixed[3];
    int mode;

    if (size < 1)
        return 0;
    if (fixed[0] == NULL) {
        fixed[0] = tap_matcher_new();
        fixed[1] = tap_matcher_new();
        fixed[2] = tap_matcher_new();
        if (fixed[0] == NULL || fixed[1] == NULL || fixed[2] == NULL
            || tap_matcher_add_filter(fixed[0], "dbmail", err, sizeof(err)) != 0
            || tap_matcher_add_failregex(fixed[1], SEED, err, sizeof(err)) != 0
            || tap_matcher_add_ignoreregex(fixed[1], "user \\[admin\\]", err, sizeof(err)) != 0
            || tap_matcher_add_filter(fixed[2], "dbmail-imap", err, sizeof(err)) != 0)
            abort();
    }
    text = (const char *)data + 1;
    len = size - 1;
    mode = data[0] % 4;
    m = mode < 3 ? fixed[mode] : tap_matcher_new();
    if (m == NULL)
        return 0;
    switch (mode) {
    case 0:
    case 1:
    case 2:
        break;
    default: {
        /* the first line is a failregex of the input's choosing */
        const char *nl = memchr(text, '\n', len);
        size_t rl = nl ? (size_t)(nl - text) : len;
        char *re = malloc(rl + 1);
        if (re == NULL)
            break;
        memcpy(re, text, rl);
        re[rl] = '\0';
        if (strlen(re) == rl)
            tap_matcher_add_failregex(m, re, err, sizeof(err));
        free(re);
        text += rl;
        len -= rl;
        break;
    }
    }

    /* one block, with and without the prefilter, each from a fresh stream */
    tap_scan_stats_t fast = { 0, 0, 0, 0 }, slow = { 0, 0, 0, 0 };
    tap_stream_t s1 = { 0 }, s2 = { 0 };
    uint64_t q0 = tap_matcher_suspicious(m);
    size_t u1 = tap_scan_block_stream(m, &s1, text, len, 0, check_cb, NULL, &fast);
    uint64_t q1 = tap_matcher_suspicious(m);
    size_t u2 = tap_scan_block_stream(m, &s2, text, len, TAP_SCAN_MISSED, check_cb, NULL, &slow);
    uint64_t q2 = tap_matcher_suspicious(m);
    if (u1 != u2 || q1 - q0 != q2 - q1 || s1.window_left != s2.window_left)
        abort();
    same(&fast, &slow);

    /* the stream scanner in uneven pieces, then a final newline */
    tap_scanner_t *sc = tap_scanner_new(m, 0, check_cb, NULL);
    if (sc != NULL) {
        size_t off = 0, step = (size % 61) + 1;
        while (off < u1) {
            size_t room;
            char *p = tap_scanner_space(sc, &room);
            size_t n = u1 - off < step ? u1 - off : step;
            if (n > room)
                n = room;
            memcpy(p, text + off, n);
            tap_scanner_commit(sc, n);
            off += n;
            step = step * 7 % 4099 + 1;
        }
        same(tap_scanner_stats(sc), &fast);
        if (tap_scanner_pending(sc) != 0)
            abort();
        tap_scanner_free(sc);
    }

    /* each line on its own, through the clone */
    tap_matcher_t *c = tap_matcher_clone(m);
    if (c != NULL) {
        mg_addr_t a;
        const char *p = text, *end = text + u1;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            tap_match_line(c, p, (size_t)(nl - p), &a);
            p = nl + 1;
        }
        tap_matcher_free(c);
    }
    if (mode == 3)
        tap_matcher_free(m);
    return 0;
}
