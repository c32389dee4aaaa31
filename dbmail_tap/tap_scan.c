/*
 * Block scanning: count every line, match only the lines that hold a
 * required literal.
 *
 * A DBMail log is mostly lines that cannot be failures.  Looking at each
 * of them costs a function call and a regex; instead the whole block is
 * searched for the patterns' literals (memmem, which skips ahead by the
 * literal's length) and the newlines are counted with a vector loop.  Only
 * a literal hit costs finding its line's bounds and a full match.
 *
 * The forged-line window (tap_scan.h) needs nothing from the lines
 * skipped that way: a line without any literal is neither a failure nor
 * the opening of a login message, so it can neither count nor open one.
 * Only its end, a byte offset, moves from line to line.
 */
#include <stdlib.h>
#include <string.h>

#include "tap_find.h"
#include "tap_match_int.h"
#include "tap_scan.h"

typedef struct scan {
    tap_matcher_t *m;
    const char *buf;
    unsigned flags;
    tap_scan_fn fn;
    void *baton;
    tap_scan_stats_t *st;
    int stop;
    uint64_t wend; /* lines starting before this offset are inside a window */
} scan_t;

/* One complete line buf[start, start+n) whose outcome has to be known. */
static void one_line(scan_t *sc, size_t start, size_t n)
{
    const char *s = sc->buf + start;
    mg_addr_t addr;
    tap_outcome_t o;
    size_t window;

    sc->st->lines++;
    if (n > TAP_MAX_LINE) {
        sc->st->toolong++;
        sc->st->ignored++;
        if (sc->fn && sc->fn(sc->baton, TAP_IGNORED, NULL, s, TAP_MAX_LINE) != 0)
            sc->stop = 1;
        return;
    }
    o = tap_match_eval(sc->m, s, n, &addr, &window);
    /* inside an unfinished message the line is the username's text,
     * whatever it looks like; an opening inside one may still be a real
     * one, so its own window extends the current one */
    if (start < sc->wend && o != TAP_MISSED)
        o = TAP_SUSPICIOUS;
    if (window > 0 && start + window > sc->wend)
        sc->wend = start + window;
    if (o == TAP_FAILURE)
        sc->st->failures++;
    else if (o == TAP_IGNORED)
        sc->st->ignored++;
    else if (o == TAP_SUSPICIOUS)
        sc->m->suspicious++;
    else if (!(sc->flags & TAP_SCAN_MISSED))
        return;
    if (sc->fn && sc->fn(sc->baton, o, o == TAP_FAILURE ? &addr : NULL, s, n) != 0)
        sc->stop = 1;
}

/* A too long line seen by the counting loop (it holds no literal). */
static void long_line(scan_t *sc, size_t start, size_t nl)
{
    sc->st->toolong++;
    sc->st->ignored++;
    if (sc->fn
        && sc->fn(sc->baton, TAP_IGNORED, NULL, sc->buf + start,
                  nl - start > TAP_MAX_LINE ? TAP_MAX_LINE : nl - start)
               != 0)
        sc->stop = 1;
}

#define COUNT_CHUNK (255 * 16)

/*
 * Count the lines of [from, to): from is a line start and buf[to-1] is a
 * newline.  None of these lines holds a literal, so they are missed unless
 * too long.  A chunk is looked at line by line only when a line in it
 * could be longer than TAP_MAX_LINE.  Returns where counting stopped (to,
 * unless a callback stopped the scan after a long line).
 */
static size_t count_lines(scan_t *sc, size_t from, size_t to)
{
    const char *b = sc->buf;
    size_t start = from; /* current line start */
    size_t i = from;

    while (i < to) {
        size_t e = to - i > COUNT_CHUNK ? i + COUNT_CHUNK : to;
        uint64_t c = tap_count_nl(b + i, e - i);
        if (c == 0) {
            i = e;
            continue;
        }
        if (e - start <= TAP_MAX_LINE) {
            sc->st->lines += c;
            start = (size_t)((const char *)memrchr(b + i, '\n', e - i) - b) + 1;
            i = e;
            continue;
        }
        for (;;) {
            const char *nlp = memchr(b + i, '\n', e - i);
            if (nlp == NULL)
                break;
            size_t p = (size_t)(nlp - b);
            sc->st->lines++;
            if (p - start > TAP_MAX_LINE) {
                long_line(sc, start, p);
                if (sc->stop)
                    return p + 1;
            }
            start = i = p + 1;
        }
        i = e;
    }
    return to;
}

/* Every line one by one (no prefilter possible, or missed lines wanted). */
static size_t scan_slow(scan_t *sc, size_t end)
{
    size_t pos = 0;

    while (pos < end && !sc->stop) {
        const char *nl = memchr(sc->buf + pos, '\n', end - pos);
        size_t e = (size_t)(nl - sc->buf);
        one_line(sc, pos, e - pos);
        pos = e + 1;
    }
    return pos;
}

/* Next occurrence of any pattern literal at or after pos, or end. */
static size_t next_hit(scan_t *sc, size_t *cache, size_t pos, size_t end)
{
    tap_matcher_t *m = sc->m;
    size_t best = end;

    for (size_t k = 0; k < m->nlits; k++) {
        if (cache[k] < pos) {
            const char *h = tap_find(sc->buf + pos, end - pos, m->lits[k].s, m->lits[k].len);
            cache[k] = h ? (size_t)(h - sc->buf) : end;
        }
        if (cache[k] < best)
            best = cache[k];
    }
    return best;
}

/* The scan proper, on buf[0, end) where buf[end-1] is a newline. */
static size_t scan_lines(scan_t *sc, size_t end)
{
    tap_matcher_t *m = sc->m;
    const char *buf = sc->buf;

    if (m->nfail == 0 && !(sc->flags & TAP_SCAN_MISSED))
        return count_lines(sc, 0, end);
    if (!m->prefilter || (sc->flags & TAP_SCAN_MISSED))
        return scan_slow(sc, end);

    size_t cache_small[8];
    size_t *cache = m->nlits <= 8 ? cache_small : malloc(m->nlits * sizeof(*cache));
    if (cache == NULL)
        return scan_slow(sc, end);
    /* cache[k]: the next hit of literal k (end: none); searched again
     * once the scan has moved past it */
    for (size_t k = 0; k < m->nlits; k++) {
        const char *h = tap_find(buf, end, m->lits[k].s, m->lits[k].len);
        cache[k] = h ? (size_t)(h - buf) : end;
    }
    size_t pos = 0;
    while (pos < end) {
        size_t hit = next_hit(sc, cache, pos, end);
        if (hit >= end) {
            pos = count_lines(sc, pos, end);
            break;
        }
        const char *ls = hit > pos ? memrchr(buf + pos, '\n', hit - pos) : NULL;
        size_t lstart = ls ? (size_t)(ls - buf) + 1 : pos;
        if (lstart > pos) {
            size_t c = count_lines(sc, pos, lstart);
            if (sc->stop) {
                pos = c;
                break;
            }
        }
        const char *le = memchr(buf + hit, '\n', end - hit);
        size_t lend = (size_t)(le - buf);
        one_line(sc, lstart, lend - lstart);
        pos = lend + 1;
        if (sc->stop)
            break;
    }
    if (cache != cache_small)
        free(cache);
    return pos;
}

size_t tap_scan_block_stream(tap_matcher_t *m, tap_stream_t *stream, const char *buf,
                             size_t len, unsigned flags, tap_scan_fn fn, void *baton,
                             tap_scan_stats_t *stats)
{
    tap_scan_stats_t dummy = { 0, 0, 0, 0 };
    scan_t sc = { m, buf, flags, fn, baton, stats ? stats : &dummy, 0, stream->window_left };
    const char *last = len ? memrchr(buf, '\n', len) : NULL;

    if (last == NULL)
        return 0;
    size_t used = scan_lines(&sc, (size_t)(last - buf) + 1);
    /* what is left of the window starts the next block, which begins
     * where this one's consumed bytes end */
    stream->window_left = sc.wend > used ? sc.wend - used : 0;
    return used;
}

size_t tap_scan_block(tap_matcher_t *m, const char *buf, size_t len, unsigned flags,
                      tap_scan_fn fn, void *baton, tap_scan_stats_t *stats)
{
    return tap_scan_block_stream(m, &m->stream, buf, len, flags, fn, baton, stats);
}

/* ---- the stream scanner ---- */

#define SCAN_BLOCK (1024 * 1024)

struct tap_scanner {
    tap_matcher_t *m;
    unsigned flags;
    tap_scan_fn fn;
    void *baton;
    char *buf;
    size_t cap;
    size_t start, end; /* unscanned bytes */
    size_t skipping;   /* bytes of a too long line dropped so far (0: none) */
    int stopped;
    tap_scan_stats_t st;
    tap_stream_t stream;
};

/* n bytes went by without tap_scan_block_stream (a too long line being
 * dropped): they count against the window all the same. */
static void skipped(tap_scanner_t *sc, size_t n)
{
    sc->stream.window_left = sc->stream.window_left > n ? sc->stream.window_left - n : 0;
}

tap_scanner_t *tap_scanner_new(tap_matcher_t *m, unsigned flags, tap_scan_fn fn, void *baton)
{
    tap_scanner_t *sc = calloc(1, sizeof(*sc));

    if (sc == NULL)
        return NULL;
    sc->cap = SCAN_BLOCK + TAP_MAX_LINE + 1;
    sc->buf = malloc(sc->cap);
    if (sc->buf == NULL) {
        free(sc);
        return NULL;
    }
    sc->m = m;
    sc->flags = flags;
    sc->fn = fn;
    sc->baton = baton;
    return sc;
}

void tap_scanner_free(tap_scanner_t *sc)
{
    if (sc == NULL)
        return;
    free(sc->buf);
    free(sc);
}

char *tap_scanner_space(tap_scanner_t *sc, size_t *room)
{
    if (sc->start > 0 && !sc->stopped) {
        memmove(sc->buf, sc->buf + sc->start, sc->end - sc->start);
        sc->end -= sc->start;
        sc->start = 0;
    }
    *room = sc->cap - sc->end;
    return sc->buf + sc->end;
}

int tap_scanner_commit(tap_scanner_t *sc, size_t n)
{
    if (n > sc->cap - sc->end)
        n = sc->cap - sc->end;
    sc->end += n;
    sc->stopped = 0;
    if (sc->skipping > 0) {
        const char *nl = memchr(sc->buf + sc->start, '\n', sc->end - sc->start);
        if (nl == NULL) {
            sc->skipping += sc->end - sc->start;
            skipped(sc, sc->end - sc->start);
            sc->start = sc->end = 0;
            return 0;
        }
        sc->skipping = 0;
        skipped(sc, (size_t)(nl - sc->buf) + 1 - sc->start);
        sc->start = (size_t)(nl - sc->buf) + 1;
        sc->st.lines++;
        sc->st.toolong++;
        sc->st.ignored++;
        if (sc->fn && sc->fn(sc->baton, TAP_IGNORED, NULL, NULL, 0) != 0) {
            sc->stopped = 1;
            return 1;
        }
    }
    if (sc->end > sc->start) {
        size_t avail = sc->end - sc->start;
        size_t used = tap_scan_block_stream(sc->m, &sc->stream, sc->buf + sc->start, avail,
                                            sc->flags, sc->fn, sc->baton, &sc->st);
        sc->start += used;
        const char *nl =
            used < avail ? memchr(sc->buf + sc->start, '\n', sc->end - sc->start) : NULL;
        if (nl != NULL) {
            sc->stopped = 1; /* the callback stopped before the last complete line */
            return 1;
        }
    }
    if (sc->end - sc->start > TAP_MAX_LINE) {
        /* an unterminated line already too long: drop it as it comes */
        sc->skipping = sc->end - sc->start;
        skipped(sc, sc->skipping);
        sc->start = sc->end = 0;
    }
    else if (sc->start == sc->end) {
        sc->start = sc->end = 0;
    }
    return 0;
}

size_t tap_scanner_pending(const tap_scanner_t *sc)
{
    return (sc->end - sc->start) + sc->skipping;
}

void tap_scanner_reset(tap_scanner_t *sc)
{
    sc->start = sc->end = 0;
    sc->skipping = 0;
    sc->stopped = 0;
    sc->stream.window_left = 0;
}

const tap_scan_stats_t *tap_scanner_stats(const tap_scanner_t *sc)
{
    return &sc->st;
}
