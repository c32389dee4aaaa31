/*
 * `dbmail_tap test LOGFILE FILTER|REGEX [--print-missed] [--print-ignored]
 * [--print-suspicious] [--top N]`: run a built-in filter or a
 * Fail2Ban-style regex over a file and summarise, like fail2ban-regex.
 * Exit 0 when it ran, 1 when the file cannot be read, 2 on usage errors
 * and bad regexes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_policy.h"
#include "tap_cmd.h"
#include "tap_match.h"
#include "tap_scan.h"

/* Distinct addresses and their counts: open addressing, linear probing. */
typedef struct slot {
    mg_addr_t addr;
    uint64_t count; /* 0 = empty */
} slot_t;

typedef struct counts {
    slot_t *s;
    size_t cap, used;
    int oom;
    int print_missed;
    int print_ignored;
    int print_suspicious;
} counts_t;

static slot_t *find_slot(slot_t *s, size_t cap, const mg_addr_t *a)
{
    size_t i = (size_t)mg_addr_hash(a) & (cap - 1);

    while (s[i].count != 0 && !mg_addr_equal(&s[i].addr, a))
        i = (i + 1) & (cap - 1);
    return &s[i];
}

static int counts_add(counts_t *c, const mg_addr_t *a)
{
    /* grown at three quarters full: with a hash that spreads, linear
     * probes stay short, and the table stays small enough to keep its
     * misses in the cache (1M addresses: 2M slots, 64 MB) */
    if ((c->used + 1) * 4 > c->cap * 3) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        slot_t *ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return -1;
        for (size_t i = 0; i < c->cap; i++)
            if (c->s[i].count != 0)
                *find_slot(ns, ncap, &c->s[i].addr) = c->s[i];
        free(c->s);
        c->s = ns;
        c->cap = ncap;
    }
    slot_t *sl = find_slot(c->s, c->cap, a);
    if (sl->count == 0) {
        sl->addr = *a;
        c->used++;
    }
    sl->count++;
    return 0;
}

static int on_line(void *baton, tap_outcome_t o, const mg_addr_t *addr, const char *line,
                   size_t len)
{
    counts_t *c = baton;

    if (o == TAP_FAILURE) {
        if (counts_add(c, addr) != 0)
            c->oom = 1;
    }
    else if ((o == TAP_MISSED && c->print_missed) || (o == TAP_IGNORED && c->print_ignored)
             || (o == TAP_SUSPICIOUS && c->print_suspicious)) {
        printf("%s| %.*s\n",
               o == TAP_MISSED    ? "missed    "
               : o == TAP_IGNORED ? "ignored   "
                                  : "suspicious",
               (int)len, line ? line : "");
    }
    return c->oom;
}

static int by_count(const void *x, const void *y)
{
    const slot_t *a = x, *b = y;

    if (a->count != b->count)
        return a->count < b->count ? 1 : -1;
    return memcmp(a->addr.a, b->addr.a, sizeof(a->addr.a));
}

/* 1 when a ranks after b (fewer failures, or as many and a larger address). */
static int after(const slot_t *a, const slot_t *b)
{
    return by_count(a, b) > 0;
}

static void sift_down(slot_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && after(&h[l], &h[m]))
            m = l;
        if (r < n && after(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        slot_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/*
 * Move the top n of s[0..k) (by count, then address) to s[0..n), sorted;
 * returns how many that is.  A heap of n whose root is the weakest kept
 * entry: k log n, where sorting everything cost k log k and most of the
 * time of a log with a million addresses.
 */
static size_t top_n(slot_t *s, size_t k, size_t n)
{
    if (n > k)
        n = k;
    if (n == 0)
        return 0;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(s, n, i);
    for (size_t i = n; i < k; i++) {
        if (after(&s[0], &s[i])) {
            s[0] = s[i];
            sift_down(s, n, 0);
        }
    }
    qsort(s, n, sizeof(*s), by_count);
    return n;
}

static void usage(FILE *f)
{
    const char *const *names = tap_filter_names();

    fprintf(f, "usage: dbmail_tap test LOGFILE FILTER|REGEX [--print-missed] "
               "[--print-ignored] [--print-suspicious] [--top N]\n"
               "  FILTER is a built-in filter:");
    for (size_t i = 0; names[i]; i++)
        fprintf(f, " %s", names[i]);
    fprintf(f,
            "\n  REGEX is a Fail2Ban failregex with <HOST>, e.g.\n"
            "    'login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$'\n"
            "  Prints lines read, matched, ignored, suspicious (lines that imitate DBMail's,\n"
            "  or that a username's newline wrote) and missed, and the addresses found.\n");
}

/* Read the whole file through the scanner; -1 with errno on a read error. */
static int scan_fd(int fd, tap_scanner_t *sc)
{
    for (;;) {
        size_t room;
        char *p = tap_scanner_space(sc, &room);
        ssize_t n = read(fd, p, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        if (tap_scanner_commit(sc, (size_t)n) != 0)
            return 0; /* stopped: out of memory for the counts */
    }
    /* the last line counts even without its newline, as fail2ban-regex does */
    if (tap_scanner_pending(sc) > 0) {
        size_t room;
        char *p = tap_scanner_space(sc, &room);
        if (room > 0) {
            *p = '\n';
            tap_scanner_commit(sc, 1);
        }
    }
    return 0;
}

int tap_cmd_test(int argc, char **argv)
{
    const char *file = NULL, *pattern = NULL;
    counts_t c;
    unsigned long top = 20;
    int rc = 2, fd = -1;
    tap_matcher_t *m = NULL;
    tap_scanner_t *sc = NULL;
    char err[TAP_MATCH_ERRLEN];

    memset(&c, 0, sizeof(c));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        else if (strcmp(a, "--print-missed") == 0) {
            c.print_missed = 1;
        }
        else if (strcmp(a, "--print-ignored") == 0) {
            c.print_ignored = 1;
        }
        else if (strcmp(a, "--print-suspicious") == 0) {
            c.print_suspicious = 1;
        }
        else if (strcmp(a, "--top") == 0) {
            const char *why;
            if (i + 1 >= argc || mg_parse_uint(argv[i + 1], 1, 1000000, &top, &why) != 0) {
                fprintf(stderr, "dbmail_tap test: --top needs a number 1..1000000\n");
                return 2;
            }
            i++;
        }
        else if (file == NULL) {
            file = a;
        }
        else if (pattern == NULL) {
            pattern = a;
        }
        else {
            fprintf(stderr, "dbmail_tap test: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (file == NULL || pattern == NULL) {
        usage(stderr);
        return 2;
    }

    m = tap_matcher_new();
    if (m == NULL) {
        fprintf(stderr, "dbmail_tap test: out of memory\n");
        rc = 1;
        goto end;
    }
    if (tap_filter_exists(pattern) ? tap_matcher_add_filter(m, pattern, err, sizeof(err))
                                   : tap_matcher_add_failregex(m, pattern, err, sizeof(err))) {
        fprintf(stderr, "dbmail_tap test: %s\n", err);
        rc = 2;
        goto end;
    }
    fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "dbmail_tap test: %s: %s\n", file, strerror(errno));
        rc = 1;
        goto end;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    sc = tap_scanner_new(m, (c.print_missed ? TAP_SCAN_MISSED : 0u), on_line, &c);
    if (sc == NULL) {
        fprintf(stderr, "dbmail_tap test: out of memory\n");
        rc = 1;
        goto end;
    }
    if (scan_fd(fd, sc) != 0) {
        fprintf(stderr, "dbmail_tap test: %s: %s\n", file, strerror(errno));
        rc = 1;
        goto end;
    }
    if (c.oom) {
        fprintf(stderr, "dbmail_tap test: out of memory counting addresses\n");
        rc = 1;
        goto end;
    }

    const tap_scan_stats_t *st = tap_scanner_stats(sc);
    uint64_t suspicious = tap_matcher_suspicious(m);
    printf("Log file:  %s\n", file);
    printf("Pattern:   %s%s\n", pattern,
           tap_filter_exists(pattern) ? " (built-in filter)" : "");
    printf("Lines:     %llu read, %llu matched, %llu ignored, %llu suspicious, %llu missed"
           " (%llu longer than %u bytes, in ignored)\n",
           (unsigned long long)st->lines, (unsigned long long)st->failures,
           (unsigned long long)st->ignored, (unsigned long long)suspicious,
           (unsigned long long)(st->lines - st->failures - st->ignored - suspicious),
           (unsigned long long)st->toolong, (unsigned)TAP_MAX_LINE);

    /* compact the table and sort the addresses by count */
    size_t k = 0;
    for (size_t i = 0; i < c.cap; i++)
        if (c.s[i].count != 0)
            c.s[k++] = c.s[i];
    size_t shown = top_n(c.s, k, top);
    printf("Addresses: %zu distinct%s\n", k, k > top ? " (top by count)" : "");
    for (size_t i = 0; i < shown; i++) {
        char buf[MG_ADDR_STRLEN];
        mg_addr_format(&c.s[i].addr, buf, sizeof(buf));
        printf("  %8llu  %s\n", (unsigned long long)c.s[i].count, buf);
    }
    rc = 0;
end:
    if (fd > STDIN_FILENO)
        close(fd);
    tap_scanner_free(sc);
    tap_matcher_free(m);
    free(c.s);
    return rc;
}
