/*
 * Built-in filters for DBMail's own failed-login lines (internal to the
 * matcher).  Each filter names a literal that every line it accepts
 * contains, so the block scanner can skip lines without it.
 */
#ifndef TAP_FILTERS_H
#define TAP_FILTERS_H

#include <stddef.h>
#include "mg_addr.h"
#include "tap_outcome.h"

typedef tap_outcome_t (*tap_filter_fn)(const char *line, size_t len, mg_addr_t *addr);

typedef struct tap_filter {
    const char *name;
    const char *literal;    /* present in every line the filter accepts */
    tap_filter_fn match;    /* line without newline; addr may be NULL */
} tap_filter_t;

/*
 * The single filters a name stands for ("dbmail" is all three): fills
 * out[0..*n) and returns *n (0 for an unknown name).  out needs room for
 * TAP_FILTERS_MAX entries.
 */
#define TAP_FILTERS_MAX 3
size_t tap_filters_lookup(const char *name, const tap_filter_t **out);

/* Every name tap_filters_lookup() knows, NULL-terminated. */
const char *const *tap_filters_names(void);

#endif
