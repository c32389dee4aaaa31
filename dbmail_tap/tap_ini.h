/*
 * The INI reader behind dbmail_tap's configuration, with the rules of
 * Fail2Ban's jail.local (Python's configparser as Fail2Ban sets it up):
 *   - "[name]" starts a section; "key = value" or "key: value" (the first
 *     '=' or ':' splits); keys are case-insensitive (stored lower-case);
 *   - a line that starts with whitespace continues the previous value
 *     (a multi-line value: one item per line); blank lines are skipped;
 *   - lines whose first non-blank character is '#' or ';' are comments,
 *     and " ;" (whitespace, then ';') starts a comment inside a line;
 *   - "%%" stands for "%"; "%(name)s" interpolation is refused;
 *   - a duplicate section or a duplicate key in one section is an error.
 * Errors read "FILE:LINE: reason".
 */
#ifndef TAP_INI_H
#define TAP_INI_H

#include <stdarg.h>
#include <stddef.h>

typedef struct tap_ini_entry {
    char *key;            /* lower-case */
    unsigned line;        /* line of "key =" */
    char **items;         /* the value's lines: the first (may be "") and each continuation */
    unsigned *item_lines; /* line of each item */
    size_t nitems;
    char *value; /* items joined with '\n', for single-valued keys */
} tap_ini_entry_t;

typedef struct tap_ini_section {
    char *name;
    unsigned line;
    tap_ini_entry_t *entries;
    size_t nentries;
} tap_ini_section_t;

typedef struct tap_ini {
    tap_ini_section_t *sections;
    size_t nsections;
} tap_ini_t;

/* Parse text[0..len) (NUL bytes are an error); fname names it in
 * messages.  0 and *out, or -1 with err filled. */
int tap_ini_parse(const char *text, size_t len, const char *fname, tap_ini_t **out, char *err,
                  size_t errlen);
void tap_ini_free(tap_ini_t *ini);

/* The section called name (case-sensitive), or NULL. */
const tap_ini_section_t *tap_ini_section(const tap_ini_t *ini, const char *name);
/* The entry for key (lower-case) in s, or NULL; s may be NULL. */
const tap_ini_entry_t *tap_ini_get(const tap_ini_section_t *s, const char *key);

/*
 * Error messages for the configuration: "FILE:LINE: " and the formatted
 * text into err (errlen bytes, always NUL-terminated), with every password
 * the text quotes replaced by "***" (tap_ini_redact) before it is cut to
 * size.  Both the INI reader and the configuration report through it, so
 * no configuration error ever prints a password, whatever line it quotes.
 */
void tap_ini_verror(char *err, size_t errlen, const char *fname, unsigned line, const char *fmt,
                    va_list ap);

/*
 * Copy in to out (size bytes, NUL-terminated, cut to fit) with the
 * passwords it may hold masked, token by token (tokens end at blanks and
 * quotes): the password of "scheme://user:password@host" or
 * "user:password@host" (all of the user info after "scheme://" when it has
 * no colon) and the value of any "password=" parameter become "***".
 * Generous on purpose: a regex or a path that looks like user info is
 * masked too.  The one exception is the URL syntax the redis error spells
 * out, "[[user]:password@]".
 */
void tap_ini_redact(const char *in, char *out, size_t size);

#endif
