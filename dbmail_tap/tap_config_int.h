/*
 * Inside dbmail_tap's configuration reader, shared by its files:
 * tap_config_values.c (the value parsers, a leaf), tap_config_global.c
 * (the [DEFAULT]-only keys) and tap_config.c (keys, scoping, jails, the
 * public calls).  Each parser returns 0, or -1 with the message (file,
 * line, key, value) in the context's buffer.  Not for other files.
 */
#ifndef TAP_CONFIG_INT_H
#define TAP_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tap_config.h"
#include "tap_ini.h"

typedef struct tap_cfg_ctx {
    const char *fname;
    char *err;
    size_t errlen;
} tap_cfg_ctx_t;

/* A token of a list value, and where it goes (tap_cfg_tokens). */
typedef struct tap_cfg_tokctx {
    tap_cfg_ctx_t *c;
    const tap_ini_entry_t *e;
    void *target;
} tap_cfg_tokctx_t;

/* A count checked by one of the shared rules (mg_rules.h). */
typedef int (*tap_cfg_rule_fn)(const char *s, unsigned *out, const char **why);

__attribute__((format(printf, 3, 4))) int tap_cfg_fail(tap_cfg_ctx_t *c, unsigned line,
                                                       const char *fmt, ...);

/* The one value of a single-valued key; NULL with the message when there
 * are several lines. */
const char *tap_cfg_single(tap_cfg_ctx_t *c, const tap_ini_entry_t *e);
int tap_cfg_bool(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, int *out);
int tap_cfg_count(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, tap_cfg_rule_fn rule,
                  const char *what, unsigned *out);
int tap_cfg_duration(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, int64_t *out);
int tap_cfg_factor(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, double *out);

/* Split s on any of seps; fn(b, token) for each, stopping at the first
 * non-zero return. */
int tap_cfg_tokens(const char *s, const char *seps, int (*fn)(void *, const char *), void *b);
/* The physical line of the item holding tok (multi-line values). */
unsigned tap_cfg_token_line(const tap_ini_entry_t *e, const char *tok);

/* redis, prefix, statefile, metrics_file, banaction, port, prefixfloor. */
int tap_cfg_globals(tap_cfg_ctx_t *c, const tap_ini_section_t *def, tap_config_t *cfg);

#endif
