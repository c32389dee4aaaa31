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
    const tap_filter_t *filter;     /* built-in, or NULL for a regex */
    pcre2_code *re;
    uint32_t hostgrp[TAP_REGEX_MAX_HOSTS];  /* capture numbers of the address tags */
    size_t nhosts;
    char *src;                      /* the text it was built from */
    char *lit;                      /* required literal (NULL: none known) */
    size_t litlen;
    int lit_at_start;               /* the regex begins with lit */
} tap_pattern_t;

struct tap_matcher {
    tap_pattern_t *fail;
    size_t nfail;
    tap_pattern_t *ign;
    size_t nign;
    pcre2_match_data *md;
    uint32_t ovecmax;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    int prefilter;                  /* every failure pattern has a literal */
};

#endif
