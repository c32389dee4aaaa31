/*
 * `dbmail_tap check [-c FILE]`: read and validate the configuration as
 * `run` would (every key, every regex compiled), print what it means, and
 * touch nothing: no Redis, no firewall, no statefile.  The tap's
 * `apachectl configtest` and `fail2ban-client -t`: run it before a restart.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mg_policy.h"
#include "tap_cmd.h"
#include "tap_config.h"

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: dbmail_tap check [-c FILE]\n"
            "  Validate the configuration (default %s) and print its jails.\n"
            "  Exit status 0: valid; 1: invalid (the error names file, line and key).\n",
            TAP_DEFAULT_CONFIG);
}

static const char *banaction_name(tap_banaction_t b)
{
    switch (b) {
    case TAP_BANACTION_NFTABLES:
        return "nftables";
    case TAP_BANACTION_IPFW:
        return "ipfw";
    default:
        return "none";
    }
}

static void print_jail(const tap_jail_t *j)
{
    char ft[32], bt[32], mt[32];

    printf("[%s] %s: maxretry %u, findtime %s, bantime %s", j->name,
           j->enabled ? "enabled" : "disabled", j->policy.maxretry,
           mg_duration_format(j->policy.findtime, ft, sizeof(ft)),
           mg_duration_format(j->policy.bantime, bt, sizeof(bt)));
    if (j->policy.increment) {
        printf(", increment x%g up to %s", j->policy.factor,
               mg_duration_format(j->policy.maxtime, mt, sizeof(mt)));
    }
    printf(", ipv6prefix /%u, %zu log file%s\n", j->ipv6prefix, j->nlogpaths,
           j->nlogpaths == 1 ? "" : "s");
}

int tap_cmd_check(int argc, char **argv)
{
    static const struct option opts[] = { { "config", required_argument, NULL, 'c' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    const char *config = TAP_DEFAULT_CONFIG;
    char err[TAP_CONFIG_ERRLEN];
    tap_config_t *cfg = NULL;
    size_t enabled = 0;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            tap_cmd_bad_option("check", optopt, argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dbmail_tap check: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (tap_config_load(config, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "dbmail_tap check: %s\n", err);
        return 1;
    }
    /* the URL is not printed: it may hold a password */
    printf("prefix %s, banaction %s, prefixfloor /%u /%u\n", cfg->prefix,
           banaction_name(cfg->banaction), cfg->floor4, cfg->floor6);
    for (size_t i = 0; i < cfg->njails; i++) {
        print_jail(&cfg->jails[i]);
        enabled += cfg->jails[i].enabled != 0;
    }
    printf("Syntax OK: %zu jail%s, %zu enabled\n", cfg->njails, cfg->njails == 1 ? "" : "s",
           enabled);
    tap_config_free(cfg);
    return 0;
}
