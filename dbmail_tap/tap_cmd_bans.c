/*
 * `dbmail_tap bans`, `ban` and `unban`: the operator's view of the shared
 * ban set, through the configuration's redis and prefix.  Exit 0 on
 * success, 1 when the configuration or Redis fails, 2 on usage errors
 * (a bad address or duration included); every error is one line.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mg_policy.h"
#include "mg_store.h"
#include "mg_store_log.h"
#include "tap_cmd.h"
#include "tap_config.h"
#include "tap_log.h"

typedef struct bans_opts {
    const char *config;
    int all;
    int help;
    char **args;
    int nargs;
} bans_opts_t;

static int parse_opts(int argc, char **argv, const char *name, int allow_all, bans_opts_t *o)
{
    static const struct option opts[] = { { "config", required_argument, NULL, 'c' },
                                          { "all", no_argument, NULL, 'a' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    int c;

    memset(o, 0, sizeof(*o));
    o->config = TAP_DEFAULT_CONFIG;
    /* "-5m" is a (negative) duration, not options -5 -m: say so plainly. */
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9') {
            fprintf(stderr, "dbmail_tap %s: bad %s '%s': negative\n", name,
                    strcmp(name, "ban") == 0 ? "duration" : "argument", argv[i]);
            return 2;
        }
    }
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'a':
            if (!allow_all) {
                fprintf(stderr, "dbmail_tap %s: unknown option '--all'\n", name);
                return 2;
            }
            o->all = 1;
            break;
        case 'h':
            o->help = 1;
            return 0;
        default:
            tap_cmd_bad_option(name, optopt, argv[optind - 1]);
            return 2;
        }
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    return 0;
}

/* Config and store; 0 or 1 (error printed). */
static int open_store(const char *name, const char *config, tap_config_t **cfg, mg_store_t **st)
{
    char err[TAP_CONFIG_ERRLEN];
    mg_store_cfg_t sc;

    if (tap_config_load(config, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "dbmail_tap %s: %s\n", name, err);
        return 1;
    }
    tap_config_store_cfg(*cfg, 2000, 5000, &sc);
    *st = mg_store_new(&sc);
    if (*st == NULL) {
        fprintf(stderr, "dbmail_tap %s: out of memory\n", name);
        tap_config_free(*cfg);
        return 1;
    }
    return 0;
}

static void fmt_expiry(int64_t expiry, int64_t now, char *when, size_t wl, char *left,
                       size_t ll)
{
    if (expiry == MG_EXPIRY_NEVER) {
        snprintf(when, wl, "never");
        snprintf(left, ll, "permanent");
        return;
    }
    mg_time_format_utc(expiry, when, wl);
    mg_duration_format(expiry > now ? expiry - now : 0, left, ll);
}

/* Rows are printed as the pages arrive: memory stays bounded whatever
 * the size of the set. */
static int print_row(void *baton, const mg_addr_t *key, int64_t expiry)
{
    size_t *rows = baton;
    int64_t now = (int64_t)time(NULL);
    char txt[MG_ADDR_STRLEN], when[32], left[32];

    mg_addr_format(key, txt, sizeof(txt));
    fmt_expiry(expiry, now, when, sizeof(when), left, sizeof(left));
    printf("%-45s %-21s %s\n", txt, when, left);
    (*rows)++;
    return 0;
}

#define BANS_PAGE 1000

int tap_cmd_bans(int argc, char **argv)
{
    bans_opts_t o;
    tap_config_t *cfg = NULL;
    mg_store_t *st = NULL;
    mg_store_range_pos_t pos;
    size_t rows = 0;
    unsigned got = 0;
    int rc;

    if ((rc = parse_opts(argc, argv, "bans", 0, &o)) != 0) {
        return rc;
    }
    if (o.help) {
        printf("usage: dbmail_tap bans [-c FILE]\n\n"
               "List the live bans of the shared set (every jail, the webmail's too):\n"
               "address, expiry (UTC) and time left, soonest expiry first.\n"
               "  -c, --config FILE   configuration (default %s)\n",
               TAP_DEFAULT_CONFIG);
        return 0;
    }
    if (o.nargs > 0) {
        fprintf(stderr, "dbmail_tap bans: unexpected argument '%s'\n", o.args[0]);
        return 2;
    }
    if (open_store("bans", o.config, &cfg, &st) != 0) {
        return 1;
    }
    /* a ban ending at now is over */
    pos.from = (int64_t)time(NULL) + 1;
    pos.skip = 0;
    printf("%-45s %-21s %s\n", "ADDRESS", "EXPIRES", "LEFT");
    do {
        if (mg_store_range(st, &pos, BANS_PAGE, print_row, &rows, &got, NULL) != 0) {
            fflush(stdout);
            fprintf(stderr, "dbmail_tap bans: redis: %s\n", mg_store_error(st));
            rc = 1;
            goto end;
        }
    } while (got == BANS_PAGE);
    printf("%zu live ban%s\n", rows, rows == 1 ? "" : "s");
end:
    mg_store_free(st);
    tap_config_free(cfg);
    return rc;
}

/* Address or prefix exactly as given (no implicit /64 for a manual ban). */
static int parse_target(const char *name, const char *text, mg_addr_t *key)
{
    const char *why = NULL;

    if (mg_cidr_parse(text, key, &why) != 0) {
        fprintf(stderr, "dbmail_tap %s: bad address '%s': %s\n", name, text,
                why ? why : "not an address");
        return -1;
    }
    return 0;
}

static int64_t default_bantime(const tap_config_t *cfg)
{
    for (size_t j = 0; j < cfg->njails; j++) {
        if (cfg->jails[j].enabled) {
            return cfg->jails[j].policy.bantime;
        }
    }
    return 3600;
}

int tap_cmd_ban(int argc, char **argv)
{
    bans_opts_t o;
    tap_config_t *cfg = NULL;
    mg_store_t *st = NULL;
    mg_addr_t key;
    int64_t secs = -1, expiry, now = (int64_t)time(NULL);
    char txt[MG_ADDR_STRLEN], when[32], left[32];
    int rc;

    if ((rc = parse_opts(argc, argv, "ban", 0, &o)) != 0) {
        return rc;
    }
    if (o.help) {
        printf("usage: dbmail_tap ban ADDR [DURATION] [-c FILE]\n\n"
               "Ban an address (203.0.113.5, 2001:db8::5) or a prefix (2001:db8:1:2::/64)\n"
               "in the shared set, for DURATION (30s, 10m, 1h, 2d, 1w, 1h30m; `permanent`\n"
               "for no end).  Without DURATION: the bantime of the first enabled jail.\n"
               "Every webmail server and firewall following the set applies it at once.\n"
               "  -c, --config FILE   configuration (default %s)\n",
               TAP_DEFAULT_CONFIG);
        return 0;
    }
    if (o.nargs < 1 || o.nargs > 2) {
        fprintf(stderr, "dbmail_tap ban: usage: dbmail_tap ban ADDR [DURATION] [-c FILE]\n");
        return 2;
    }
    if (parse_target("ban", o.args[0], &key) != 0) {
        return 2;
    }
    if (o.nargs == 2) {
        const char *why = NULL;
        if (strcasecmp(o.args[1], "permanent") == 0 || strcasecmp(o.args[1], "forever") == 0) {
            secs = 0;
        }
        else if (mg_duration_parse(o.args[1], &secs, &why) != 0 || secs <= 0) {
            fprintf(stderr, "dbmail_tap ban: bad duration '%s': %s\n", o.args[1],
                    why ? why : "must be more than 0");
            return 2;
        }
    }
    if (open_store("ban", o.config, &cfg, &st) != 0) {
        return 1;
    }
    if (secs < 0) {
        secs = default_bantime(cfg);
    }
    expiry = secs == 0 ? MG_EXPIRY_NEVER : now + secs;
    if (mg_store_ban(st, &key, expiry, "manual") != 0) {
        fprintf(stderr, "dbmail_tap ban: redis: %s\n", mg_store_error(st));
        rc = 1;
        goto end;
    }
    mg_addr_format(&key, txt, sizeof(txt));
    fmt_expiry(expiry, now, when, sizeof(when), left, sizeof(left));
    printf("banned %s until %s (%s)\n", txt, when, left);
end:
    mg_store_free(st);
    tap_config_free(cfg);
    return rc;
}

int tap_cmd_unban(int argc, char **argv)
{
    bans_opts_t o;
    tap_config_t *cfg = NULL;
    mg_store_t *st = NULL;
    mg_addr_t key;
    int rc;

    if ((rc = parse_opts(argc, argv, "unban", 1, &o)) != 0) {
        return rc;
    }
    if (o.help) {
        printf("usage: dbmail_tap unban ADDR|--all [-c FILE]\n\n"
               "Lift the ban of an address or prefix (as `dbmail_tap bans` lists it), or\n"
               "every ban with --all.  Failure history used for escalation is kept.\n"
               "  -c, --config FILE   configuration (default %s)\n",
               TAP_DEFAULT_CONFIG);
        return 0;
    }
    if ((o.all && o.nargs != 0) || (!o.all && o.nargs != 1)) {
        fprintf(stderr, "dbmail_tap unban: usage: dbmail_tap unban ADDR|--all [-c FILE]\n");
        return 2;
    }
    if (!o.all && parse_target("unban", o.args[0], &key) != 0) {
        return 2;
    }
    if (open_store("unban", o.config, &cfg, &st) != 0) {
        return 1;
    }
    if (o.all) {
        unsigned count = 0;
        if (mg_store_unban_all(st, &count) != 0) {
            fprintf(stderr, "dbmail_tap unban: redis: %s\n", mg_store_error(st));
            rc = 1;
            goto end;
        }
        printf("unbanned %u address%s\n", count, count == 1 ? "" : "es");
    }
    else {
        int removed = 0;
        char txt[MG_ADDR_STRLEN];
        if (mg_store_unban(st, &key, &removed) != 0) {
            fprintf(stderr, "dbmail_tap unban: redis: %s\n", mg_store_error(st));
            rc = 1;
            goto end;
        }
        mg_addr_format(&key, txt, sizeof(txt));
        printf(removed ? "unbanned %s\n" : "%s was not banned\n", txt);
    }
end:
    mg_store_free(st);
    tap_config_free(cfg);
    return rc;
}

int tap_cmd_resync(int argc, char **argv)
{
    bans_opts_t o;
    tap_config_t *cfg = NULL;
    mg_store_t *st = NULL;
    int rc;

    if ((rc = parse_opts(argc, argv, "resync", 0, &o)) != 0) {
        return rc;
    }
    if (o.help) {
        printf("usage: dbmail_tap resync [-c FILE]\n\n"
               "Tell every webmail server and firewall keeper to read the whole ban set\n"
               "again: after editing it by hand in a way they cannot notice (a ZADD that\n"
               "only changed a score, or a ZREM and a ZADD between two checks).  Each\n"
               "reads the set in pages; at a million bans that costs Redis about a\n"
               "second of work per reader.\n"
               "  -c, --config FILE   configuration (default %s)\n",
               TAP_DEFAULT_CONFIG);
        return 0;
    }
    if (o.nargs > 0) {
        fprintf(stderr, "dbmail_tap resync: unexpected argument '%s'\n", o.args[0]);
        return 2;
    }
    if (open_store("resync", o.config, &cfg, &st) != 0) {
        return 1;
    }
    if (mg_store_resync(st, 1, NULL) != 0) {
        fprintf(stderr, "dbmail_tap resync: redis: %s\n", mg_store_error(st));
        rc = 1;
    }
    else {
        printf("resync announced\n");
    }
    mg_store_free(st);
    tap_config_free(cfg);
    return rc;
}
