/*
 * The matcher's insides, shared by tap_match.c (patterns) and
 * tap_scan.c (the block scanner).  Not for other users.
 */
#ifndef TAP_MATCH_INT_H
#define TAP_MATCH_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tap_filters.h"
#include "tap_match.h"
#include "tap_regex.h"

typedef struct tap_pattern {
    const tap_filter_t *filter; /* built-in, or NULL for a regex */
    pcre2_code *re;
    uint32_t hostgrp[TAP_REGEX_MAX_HOSTS]; /* capture numbers of the address tags */
    size_t nhosts;
    char *src; /* the text it was built from */
    char *lit; /* required literal (NULL: none known) */
    size_t litlen;
    int lit_at_start; /* the regex begins with lit */
} tap_pattern_t;

/* A literal the block scanner looks for. */
typedef struct tap_lit {
    const char *s;
    size_t len;
} tap_lit_t;

struct tap_matcher {
    tap_pattern_t *fail;
    size_t nfail;
    tap_pattern_t *ign;
    size_t nign;
    pcre2_match_data *md;
    uint32_t ovecmax;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    int prefilter; /* every failure pattern has a literal */
    /* what the scanner searches a block for: every failure pattern's
     * literal and the openers of the multi-line filters, each once */
    tap_lit_t *lits;
    size_t nlits;
    unsigned detect;     /* multi-line filters run, by index in tap_filters_multiline */
    uint64_t suspicious; /* TAP_SUSPICIOUS lines the scanners reported */
    tap_stream_t stream; /* tap_scan_block's one stream */
};

/*
 * tap_match_line() plus what the scanner needs across lines: *window is 0,
 * or, for a line that opens a DBMail login message that does not end on
 * it, how far from the line's first byte that message may run (any line
 * starting before that may be the username's).  Such a line is itself
 * TAP_SUSPICIOUS.  The multi-line filters in m->detect are asked,
 * configured or not.
 */
tap_outcome_t tap_match_eval(tap_matcher_t *m, const char *line, size_t len, mg_addr_t *addr,
                             size_t *window);

#endif
