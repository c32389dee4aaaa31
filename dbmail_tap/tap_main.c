/*
 * dbmail_tap: follow DBMail's logs, count failed IMAP/POP3 logins in the
 * shared Redis store, enforce bans at the firewall.  This file only
 * dispatches to the subcommands (tap_cmd.h).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tap_cmd.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "run", tap_cmd_run,
      "run [-c FILE]                        the daemon: follow the logs, count, ban" },
    { "test", tap_cmd_test,
      "test LOGFILE FILTER|REGEX [--print-missed]  try a filter or regex on a log" },
    { "check", tap_cmd_check,
      "check [-c FILE]                      validate the configuration, print its jails" },
    { "bans", tap_cmd_bans,
      "bans [-c FILE]                       list live bans with expiry and time left" },
    { "ban", tap_cmd_ban,
      "ban ADDR [DURATION] [-c FILE]        ban an address or prefix by hand" },
    { "unban", tap_cmd_unban,
      "unban ADDR|--all [-c FILE]           lift one ban, or all of them" },
    { "resync", tap_cmd_resync,
      "resync [-c FILE]                     make every follower read the ban set again" },
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: dbmail_tap COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(fp, "  dbmail_tap %s\n", commands[i].summary);
    }
    fprintf(fp,
            "\n`dbmail_tap COMMAND --help` describes each command; `dbmail_tap --version`\n"
            "prints the version.  The default configuration is %s.\n",
            TAP_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    /* A Redis connection closed under a write must be an error the store
     * reports, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("dbmail_tap %s\n", TAP_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "dbmail_tap: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
