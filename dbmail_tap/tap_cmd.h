/*
 * dbmail_tap's subcommands.  tap_main.c dispatches on argv[1]; each command
 * parses its own options (argv[0] is the command name) and returns the
 * process exit status: 0 success, 1 failure at run time, 2 usage errors.
 */
#ifndef TAP_CMD_H
#define TAP_CMD_H

#define TAP_DEFAULT_CONFIG "/etc/mailguard/dbmail_tap.conf"

#ifndef TAP_VERSION
#define TAP_VERSION "0.1.0"
#endif

int tap_cmd_run(int argc, char **argv);   /* the daemon */
int tap_cmd_test(int argc, char **argv);  /* fail2ban-regex-like matcher test */
int tap_cmd_check(int argc, char **argv); /* validate the configuration */
int tap_cmd_bans(int argc, char **argv);  /* list live bans */
int tap_cmd_ban(int argc, char **argv);
int tap_cmd_unban(int argc, char **argv);
int tap_cmd_resync(int argc, char **argv); /* every follower reads the set again */

/* After getopt_long() returned '?' (opterr 0): one line on stderr naming
 * what was wrong with arg (argv[optind - 1]). */
void tap_cmd_bad_option(const char *cmd, int optopt, const char *arg);

#endif
