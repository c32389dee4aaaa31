/*
 * What every subcommand says about a bad option (tap_cmd.h): one line on
 * stderr, in the same words whichever command it is.
 */
#include <stdio.h>
#include <string.h>

#include "tap_cmd.h"

void tap_cmd_bad_option(const char *cmd, int optopt, const char *arg)
{
    /* getopt_long() with opterr 0: optopt is the option's letter when a
     * known option lacks its value or a short one is unknown, 0 for an
     * unknown long option */
    if (optopt == 'c') {
        fprintf(stderr, "dbmail_tap %s: -c needs a FILE\n", cmd);
    }
    else if (optopt != 0 && strncmp(arg, "--", 2) == 0) {
        fprintf(stderr, "dbmail_tap %s: option '%s' needs a value\n", cmd, arg);
    }
    else if (optopt != 0) {
        fprintf(stderr, "dbmail_tap %s: unknown option '-%c'\n", cmd, optopt);
    }
    else {
        fprintf(stderr, "dbmail_tap %s: unknown option '%s'\n", cmd, arg);
    }
}
