/*
 * Built-in filters for DBMail's own failed-login lines (internal to the
 * matcher).  Each filter names a literal that every line it accepts
 * contains, so the block scanner can skip lines without it, and the
 * literal an IMAP line opens with, so the scanner also finds the lines
 * that open a message a newline in the username left unfinished.
 */
#ifndef TAP_FILTERS_H
#define TAP_FILTERS_H

#include <stddef.h>
#include "mg_addr.h"
#include "tap_outcome.h"

/*
 * DBMail 3.x formats a message into a buffer of 4096 bytes with
 * vsnprintf(buf, 4095, ...) and writes at most this many bytes of it
 * (src/dm_debug.c, MESSAGESIZE): a longer message is cut, its closing
 * "from [ADDR:PORT]" with it.
 */
#define TAP_DBMAIL_MSG_MAX 4094

/*
 * Match one line (no newline; a trailing '\r' already removed).  addr may
 * be NULL.  *window is set to 0, or, when the line opens a DBMail login
 * message that does not end on it, to the offset from the line's first
 * byte at which that message must have ended: every line that starts
 * before it may be the username's text.  A message cut at DBMail's limit
 * gets a window that ends inside its own line: suspicious, nothing after.
 */
typedef tap_outcome_t (*tap_filter_fn)(const char *line, size_t len, mg_addr_t *addr,
                                       size_t *window);

typedef struct tap_filter {
    const char *name;
    const char *literal; /* present in every line the filter accepts */
    const char *opener;  /* present in a line that opens a login message, or NULL */
    int v22;             /* reads DBMail 2.2's lines */
    tap_filter_fn match;
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

/*
 * The filters whose messages can span lines (IMAP 3.x and 2.2: a LOGIN
 * username may be an IMAP literal holding newlines), NULL-terminated.
 * A matcher runs them on the lines that hold their opener, whatever
 * patterns it counts with, so a forged line inside such a message never
 * counts (POP3 reads the username from one command line: no newline):
 * the 3.x one always, the 2.2 one when the matcher reads 2.2's lines
 * (an extra pass over every block that 3.x logs do not need).
 */
const tap_filter_t *const *tap_filters_multiline(void);

#endif
