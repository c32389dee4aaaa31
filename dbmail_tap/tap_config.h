/*
 * dbmail_tap's configuration: an INI file shaped like Fail2Ban's
 * jail.local.  [DEFAULT] holds the global keys (redis, prefix, statefile,
 * metrics_file, banaction, port: valid there only) and defaults for every jail key; each
 * other section is a jail that inherits [DEFAULT]'s jail keys and overrides
 * them, whatever the order of the sections in the file.
 *
 * Loading validates everything (keys, values, regexes, addresses, the
 * Redis URL) and fails on the first problem with a message
 * "FILE:LINE: KEY: reason: 'value'".  A loaded configuration is read-only.
 */
#ifndef TAP_CONFIG_H
#define TAP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_policy.h"
#include "mg_store.h"
#include "tap_match.h"

#define TAP_CONFIG_ERRLEN 512

/* Fail2Ban's default maxretry, kept for jails migrated from it: mail
 * clients retry a stored password, so fewer failures say more than on
 * webmail (the module's default, mg_policy_defaults(), is 10).  The other
 * defaults and every bound are the module's (mg_policy.h, mg_rules.h). */
#define TAP_DEF_MAXRETRY 5

#define TAP_DEFAULT_STATEFILE "/var/lib/dbmail_tap/state"
/* Longest metrics_file (room left for the temporary file's suffix). */
#define TAP_METRICS_PATH_MAX 4000
#define TAP_MAX_PORTS        64

typedef enum tap_banaction {
    TAP_BANACTION_NONE = 0,
    TAP_BANACTION_NFTABLES,
    TAP_BANACTION_IPFW
} tap_banaction_t;

typedef struct tap_jail {
    char *name;             /* section name */
    unsigned line;          /* line of the section header */
    int enabled;            /* default 0, as in Fail2Ban */
    mg_policy_t policy;     /* maxretry 5, findtime 10m, bantime 1h,
                                   increment off, factor 2, maxtime 1w */
    unsigned ipv6prefix;    /* 1..128, default 64 */
    mg_cidrset_t *ignoreip; /* default 127.0.0.1/8 ::1; never NULL */
    char **logpaths;        /* absolute paths, in file order */
    size_t nlogpaths;
    char *filter;     /* built-in filter name or NULL */
    char **failregex; /* as written (after %% unescaping) */
    size_t nfailregex;
    char **ignoreregex;
    size_t nignoreregex;
    tap_matcher_t *matcher; /* filter + failregex + ignoreregex, compiled;
                                   not thread-safe: tap_matcher_clone() for
                                   another thread */
} tap_jail_t;

typedef struct tap_config {
    char *path;                    /* the file it was read from */
    char *redis;                   /* URL text (default MG_STORE_DEFAULT_URL) */
    mg_store_url_t redis_url;      /* parsed */
    char *prefix;                  /* default MG_STORE_DEFAULT_PREFIX */
    char *statefile;               /* default TAP_DEFAULT_STATEFILE */
    char *metrics_file;            /* absolute path, or NULL (the default): no file */
    tap_banaction_t banaction;     /* default none */
    uint16_t ports[TAP_MAX_PORTS]; /* default 143,993,110,995,4190 */
    unsigned floor4, floor6;       /* prefixfloor: widest prefix ban taken from Redis
                                   (default MG_FLOOR4_DEFAULT, MG_FLOOR6_DEFAULT) */
    size_t nports;
    tap_jail_t *jails; /* every jail section, enabled or not, in file order */
    size_t njails;
} tap_config_t;

/*
 * Read and validate a file.  Returns 0 and *out (free with
 * tap_config_free), or -1 with the message in err (errlen >=
 * TAP_CONFIG_ERRLEN recommended): "PATH: cannot read: ..." when the file
 * cannot be opened, "PATH:LINE: KEY: ..." for a bad value.
 */
int tap_config_load(const char *path, tap_config_t **out, char *err, size_t errlen);

/* The same from memory; name is used in messages.  text need not be
 * NUL-terminated; NUL bytes inside are an error. */
int tap_config_parse(const char *text, size_t len, const char *name, tap_config_t **out,
                     char *err, size_t errlen);

void tap_config_free(tap_config_t *cfg);

/* The jail called name, or NULL. */
const tap_jail_t *tap_config_jail(const tap_config_t *cfg, const char *name);

/* Number of enabled jails. */
size_t tap_config_enabled(const tap_config_t *cfg);

/* Store settings for cfg's redis and prefix (pointing into cfg, which must
 * outlive them) with the caller's timeouts: every command that opens the
 * store gets them the same way. */
void tap_config_store_cfg(const tap_config_t *cfg, int connect_timeout_ms,
                          int command_timeout_ms, mg_store_cfg_t *out);

/* Text for a banaction value ("none", "nftables", "ipfw"). */
const char *tap_banaction_name(tap_banaction_t a);

#endif
