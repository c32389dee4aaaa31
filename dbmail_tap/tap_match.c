/*
 * The matcher: failure and ignore patterns, one outcome per line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_filters.h"
#include "tap_find.h"
#include "tap_match_int.h"
#include "tap_regex.h"

/* Backtracking budget per line: generous for any sane failregex, and a
 * pathological one costs a bounded time per line (the line is missed). */
#define MATCH_LIMIT   200000
#define JIT_STACK_MIN (32 * 1024)
#define JIT_STACK_MAX (512 * 1024)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int update_lits(tap_matcher_t *m);

tap_matcher_t *tap_matcher_new(void)
{
    tap_matcher_t *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->mctx = pcre2_match_context_create(NULL);
    m->jstack = pcre2_jit_stack_create(JIT_STACK_MIN, JIT_STACK_MAX, NULL);
    m->md = pcre2_match_data_create(16, NULL);
    if (m->mctx == NULL || m->md == NULL) {
        tap_matcher_free(m);
        return NULL;
    }
    pcre2_set_match_limit(m->mctx, MATCH_LIMIT);
    if (m->jstack != NULL)
        pcre2_jit_stack_assign(m->mctx, NULL, m->jstack);
    m->ovecmax = 16;
    m->prefilter = 1;
    if (update_lits(m) != 0) {
        tap_matcher_free(m);
        return NULL;
    }
    return m;
}

static void pattern_clear(tap_pattern_t *p)
{
    pcre2_code_free(p->re);
    free(p->src);
    free(p->lit);
}

void tap_matcher_free(tap_matcher_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfail; i++)
        pattern_clear(&m->fail[i]);
    for (size_t i = 0; i < m->nign; i++)
        pattern_clear(&m->ign[i]);
    free(m->fail);
    free(m->ign);
    free(m->lits);
    pcre2_match_data_free(m->md);
    pcre2_jit_stack_free(m->jstack);
    pcre2_match_context_free(m->mctx);
    free(m);
}

static int push(tap_pattern_t **arr, size_t *n, const tap_pattern_t *p)
{
    tap_pattern_t *a = realloc(*arr, (*n + 1) * sizeof(*a));

    if (a == NULL)
        return -1;
    a[*n] = *p;
    *arr = a;
    (*n)++;
    return 0;
}

/* Compile a (tag-expanded) pattern with JIT; grow the match data to fit. */
static pcre2_code *compile(tap_matcher_t *m, const char *pat, char *err, size_t errlen,
                           const char *orig)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);

    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        set_err(err, errlen, "bad regex '%s': %s", orig, (const char *)msg);
        return NULL;
    }
    /* JIT is an optimisation: without it (unsupported CPU, no exec
     * memory) the interpreter gives the same results. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    uint32_t caps = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &caps);
    if (caps + 1 > m->ovecmax) {
        pcre2_match_data *md = pcre2_match_data_create(caps + 1, NULL);
        if (md == NULL) {
            pcre2_code_free(re);
            set_err(err, errlen, "out of memory");
            return NULL;
        }
        pcre2_match_data_free(m->md);
        m->md = md;
        m->ovecmax = caps + 1;
    }
    return re;
}

static void update_prefilter(tap_matcher_t *m, const tap_pattern_t *p)
{
    if (p->litlen == 0)
        m->prefilter = 0;
}

static void add_lit(tap_lit_t *v, size_t *n, const char *s, size_t len)
{
    if (s == NULL || len == 0)
        return;
    for (size_t i = 0; i < *n; i++)
        if (v[i].len == len && memcmp(v[i].s, s, len) == 0)
            return;
    v[*n].s = s;
    v[*n].len = len;
    (*n)++;
}

/* The scanner's literals, rebuilt after the patterns changed: each
 * failure pattern's, then the openers of the multi-line filters the
 * matcher runs (a line that opens an unfinished message must be looked
 * at even when no pattern could match it): 3.x's always, 2.2's when a
 * pattern reads 2.2's lines.  -1 on allocation failure. */
static int update_lits(tap_matcher_t *m)
{
    const tap_filter_t *const *ml = tap_filters_multiline();
    size_t cap = m->nfail, n = 0;
    int v22 = 0;
    unsigned detect = 0;

    for (size_t i = 0; i < m->nfail; i++)
        if (m->fail[i].filter != NULL && m->fail[i].filter->v22)
            v22 = 1;
    for (unsigned k = 0; ml[k]; k++) {
        if (!ml[k]->v22 || v22)
            detect |= 1u << k;
        cap++;
    }
    tap_lit_t *v = malloc((cap ? cap : 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < m->nfail; i++)
        add_lit(v, &n, m->fail[i].lit, m->fail[i].litlen);
    for (unsigned k = 0; ml[k]; k++)
        if (detect & (1u << k))
            add_lit(v, &n, ml[k]->opener, strlen(ml[k]->opener));
    free(m->lits);
    m->lits = v;
    m->nlits = n;
    m->detect = detect;
    return 0;
}

int tap_matcher_add_filter(tap_matcher_t *m, const char *name, char *err, size_t errlen)
{
    const tap_filter_t *f[TAP_FILTERS_MAX];
    size_t n = tap_filters_lookup(name, f);

    if (n == 0) {
        set_err(err, errlen, "unknown filter '%s' (built-in: %s)", name,
                "dbmail-imap, dbmail-imap22, dbmail-pop3, dbmail");
        return -1;
    }
    size_t old = m->nfail;
    for (size_t i = 0; i < n; i++) {
        tap_pattern_t p;
        memset(&p, 0, sizeof(p));
        p.filter = f[i];
        p.lit = strdup(f[i]->literal);
        p.litlen = p.lit ? strlen(p.lit) : 0;
        p.src = strdup(name);
        if (p.lit == NULL || p.src == NULL || push(&m->fail, &m->nfail, &p) != 0) {
            pattern_clear(&p);
            while (m->nfail > old)
                pattern_clear(&m->fail[--m->nfail]);
            set_err(err, errlen, "out of memory");
            return -1;
        }
    }
    if (update_lits(m) != 0) {
        while (m->nfail > old)
            pattern_clear(&m->fail[--m->nfail]);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int tap_matcher_add_failregex(tap_matcher_t *m, const char *re, char *err, size_t errlen)
{
    tap_pattern_t p;
    const char *why = NULL;
    char lit[256];

    memset(&p, 0, sizeof(p));
    char *pat = tap_regex_expand(re, &p.nhosts, &why);
    if (pat == NULL) {
        set_err(err, errlen, "bad regex '%s': %s", re, why);
        return -1;
    }
    p.re = compile(m, pat, err, errlen, re);
    free(pat);
    if (p.re == NULL)
        return -1;
    for (size_t i = 0; i < p.nhosts; i++) {
        char name[32];
        snprintf(name, sizeof(name), "tapH%zu", i);
        int g = pcre2_substring_number_from_name(p.re, (PCRE2_SPTR)name);
        p.hostgrp[i] = g > 0 ? (uint32_t)g : 0;
    }
    p.litlen = tap_regex_literal(re, lit, sizeof(lit), &p.lit_at_start);
    p.lit = p.litlen ? strdup(lit) : NULL;
    p.src = strdup(re);
    if ((p.litlen && p.lit == NULL) || p.src == NULL || push(&m->fail, &m->nfail, &p) != 0) {
        pattern_clear(&p);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    if (update_lits(m) != 0) {
        pattern_clear(&m->fail[--m->nfail]);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    update_prefilter(m, &p);
    return 0;
}

int tap_matcher_add_ignoreregex(tap_matcher_t *m, const char *re, char *err, size_t errlen)
{
    tap_pattern_t p;

    memset(&p, 0, sizeof(p));
    /* tags are allowed (Fail2Ban allows them) but need not be present */
    const char *why = NULL;
    size_t nh = 0;
    char *pat = tap_regex_expand(re, &nh, &why);
    if (pat == NULL && nh == 0 && why != NULL && strncmp(why, "no address tag", 14) == 0)
        pat = strdup(re);
    else if (pat == NULL) {
        set_err(err, errlen, "bad regex '%s': %s", re, why);
        return -1;
    }
    if (pat == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    p.re = compile(m, pat, err, errlen, re);
    free(pat);
    if (p.re == NULL)
        return -1;
    p.src = strdup(re);
    if (p.src == NULL || push(&m->ign, &m->nign, &p) != 0) {
        pattern_clear(&p);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

tap_matcher_t *tap_matcher_clone(const tap_matcher_t *m)
{
    tap_matcher_t *c = tap_matcher_new();
    char err[TAP_MATCH_ERRLEN];

    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < m->nfail; i++) {
        const tap_pattern_t *p = &m->fail[i];
        int rc;
        if (p->filter != NULL) {
            /* "dbmail" expands to several: add each single filter once */
            rc = tap_matcher_add_filter(c, p->filter->name, err, sizeof(err));
        }
        else {
            rc = tap_matcher_add_failregex(c, p->src, err, sizeof(err));
        }
        if (rc != 0) {
            tap_matcher_free(c);
            return NULL;
        }
    }
    for (size_t i = 0; i < m->nign; i++) {
        if (tap_matcher_add_ignoreregex(c, m->ign[i].src, err, sizeof(err)) != 0) {
            tap_matcher_free(c);
            return NULL;
        }
    }
    return c;
}

int tap_filter_exists(const char *name)
{
    const tap_filter_t *f[TAP_FILTERS_MAX];

    return tap_filters_lookup(name, f) > 0;
}

const char *const *tap_filter_names(void)
{
    return tap_filters_names();
}

size_t tap_matcher_count(const tap_matcher_t *m)
{
    return m->nfail;
}

static int run(tap_matcher_t *m, pcre2_code *re, const char *s, size_t n, size_t start)
{
    return pcre2_match(re, (PCRE2_SPTR)s, n, start, 0, m->md, m->mctx);
}

static tap_outcome_t match_regex(tap_matcher_t *m, const tap_pattern_t *p, const char *s,
                                 size_t n, mg_addr_t *addr)
{
    size_t start = 0;

    /* A line without the required literal cannot match; when the regex
     * opens with it, no match starts before its first occurrence. */
    if (p->litlen > 0) {
        const char *h = tap_find(s, n, p->lit, p->litlen);
        if (h == NULL)
            return TAP_MISSED;
        if (p->lit_at_start)
            start = (size_t)(h - s);
    }
    if (run(m, p->re, s, n, start) < 0)
        return TAP_MISSED; /* no match, or the match limit was hit */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    uint32_t ovn = pcre2_get_ovector_count(m->md);
    for (size_t i = 0; i < p->nhosts; i++) {
        uint32_t g = p->hostgrp[i];
        if (g == 0 || g >= ovn || ov[2 * g] == PCRE2_UNSET)
            continue;
        mg_addr_t tmp;
        const char *why;
        if (mg_addr_parse_n(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g], addr ? addr : &tmp, &why)
            == 0)
            return TAP_FAILURE;
        return TAP_IGNORED;
    }
    return TAP_IGNORED;
}

/* How strongly an outcome speaks for the line: the strongest one wins. */
static int rank(tap_outcome_t o)
{
    switch (o) {
    case TAP_FAILURE:
        return 3;
    case TAP_IGNORED:
        return 2;
    case TAP_SUSPICIOUS:
        return 1;
    default:
        return 0;
    }
}

tap_outcome_t tap_match_eval(tap_matcher_t *m, const char *line, size_t len, mg_addr_t *addr,
                             size_t *window)
{
    const tap_filter_t *const *ml = tap_filters_multiline();
    tap_outcome_t best = TAP_MISSED;
    unsigned asked = 0; /* multi-line filters already run, by index in ml */

    *window = 0;
    if (len > TAP_MAX_LINE)
        return TAP_IGNORED;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    for (size_t i = 0; i < m->nfail; i++) {
        const tap_pattern_t *p = &m->fail[i];
        /* once a failure is found its address stays: later patterns get none */
        mg_addr_t *a = best == TAP_FAILURE ? NULL : addr;
        tap_outcome_t o;
        if (p->filter != NULL) {
            size_t w = 0;
            o = p->filter->match(line, len, a, &w);
            if (w > *window)
                *window = w;
            for (unsigned k = 0; ml[k]; k++)
                if (ml[k] == p->filter)
                    asked |= 1u << k;
        }
        else {
            if (best == TAP_FAILURE)
                continue; /* a regex can add nothing but a window */
            o = match_regex(m, p, line, len, a);
        }
        if (rank(o) > rank(best))
            best = o;
    }
    for (unsigned k = 0; ml[k]; k++) {
        size_t w = 0;
        if (!(m->detect & (1u << k)) || (asked & (1u << k))
            || tap_find(line, len, ml[k]->opener, strlen(ml[k]->opener)) == NULL)
            continue;
        (void)ml[k]->match(line, len, NULL, &w);
        if (w > *window)
            *window = w;
    }
    if (*window > 0)
        return TAP_SUSPICIOUS;
    if (best == TAP_FAILURE) {
        for (size_t i = 0; i < m->nign; i++)
            if (run(m, m->ign[i].re, line, len, 0) >= 0)
                return TAP_IGNORED;
    }
    return best;
}

tap_outcome_t tap_match_line(tap_matcher_t *m, const char *line, size_t len, mg_addr_t *addr)
{
    size_t window;

    return tap_match_eval(m, line, len, addr, &window);
}

uint64_t tap_matcher_suspicious(const tap_matcher_t *m)
{
    return m->suspicious;
}
