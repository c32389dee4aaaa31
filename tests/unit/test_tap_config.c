/* dbmail_tap's configuration: values, defaults, scoping and every error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "mg_test.h"
#include "tap_config.h"
#include "tap_ini.h"

static tap_config_t *parse_ok(const char *text)
{
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];

    int rc = tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err));
    ck_assert_msg(rc == 0, "unexpected error: %s", err);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* The text must fail with a message containing every fragment. */
static void parse_bad(const char *text, const char *frag1, const char *frag2)
{
    tap_config_t *cfg = (tap_config_t *)1;
    char err[TAP_CONFIG_ERRLEN];

    err[0] = '\0';
    int rc = tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err));
    ck_assert_msg(rc == -1, "accepted: %s", text);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, frag1) != NULL, "'%s' not in '%s'", frag1, err);
    if (frag2 != NULL)
        ck_assert_msg(strstr(err, frag2) != NULL, "'%s' not in '%s'", frag2, err);
}

static int ignored(const tap_jail_t *j, const char *addr)
{
    mg_addr_t a;
    const char *why;

    ck_assert_int_eq(mg_addr_parse(addr, &a, &why), 0);
    return mg_cidrset_contains(j->ignoreip, &a);
}

#define ISSUE_EXAMPLE \
    "[DEFAULT]\n" \
    "redis = redis://127.0.0.1:6379\n" \
    "ignoreip = 127.0.0.1/8 ::1\n" \
    "maxretry = 5\n" \
    "findtime = 10m\n" \
    "bantime = 1h\n" \
    "statefile = /var/lib/dbmail_tap/state\n" \
    "\n" \
    "[dbmail-imap]\n" \
    "enabled = true\n" \
    "filter = dbmail-imap\n" \
    "logpath = /var/log/dbmail/dbmail.err\n"

START_TEST(issue_example)
{
    tap_config_t *cfg = parse_ok(ISSUE_EXAMPLE);

    ck_assert_str_eq(cfg->path, "t.conf");
    ck_assert_str_eq(cfg->redis, "redis://127.0.0.1:6379");
    ck_assert_str_eq(cfg->redis_url.host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis_url.port, 6379);
    ck_assert_str_eq(cfg->prefix, "mailguard:");
    ck_assert_str_eq(cfg->statefile, "/var/lib/dbmail_tap/state");
    ck_assert_int_eq(cfg->banaction, TAP_BANACTION_NONE);
    ck_assert_uint_eq(cfg->nports, 5);
    ck_assert_uint_eq(cfg->ports[0], 143);
    ck_assert_uint_eq(cfg->ports[4], 4190);
    ck_assert_uint_eq(cfg->njails, 1);
    ck_assert_uint_eq(tap_config_enabled(cfg), 1);
    const tap_jail_t *j = tap_config_jail(cfg, "dbmail-imap");
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_null(tap_config_jail(cfg, "DEFAULT"));
    ck_assert_int_eq(j->enabled, 1);
    ck_assert_uint_eq(j->line, 9);
    ck_assert_str_eq(j->filter, "dbmail-imap");
    ck_assert_uint_eq(j->nlogpaths, 1);
    ck_assert_str_eq(j->logpaths[0], "/var/log/dbmail/dbmail.err");
    ck_assert_uint_eq(j->policy.maxretry, 5);
    ck_assert_int_eq(j->policy.findtime, 600);
    ck_assert_int_eq(j->policy.bantime, 3600);
    ck_assert(ignored(j, "127.0.0.1"));
    ck_assert(ignored(j, "127.9.9.9"));
    ck_assert(ignored(j, "::1"));
    ck_assert(!ignored(j, "203.0.113.5"));
    /* the jail's matcher is ready */
    mg_addr_t a;
    const char *line = "Notice: [0x1] login rejected: user [bob] from [203.0.113.5:1]";
    ck_assert_int_eq(tap_match_line(j->matcher, line, strlen(line), &a), TAP_FAILURE);
    tap_config_free(cfg);
}
END_TEST

START_TEST(defaults)
{
    tap_config_t *cfg = parse_ok("[imap]\nlogpath = /var/log/dbmail/dbmail.log\n");
    const tap_jail_t *j = &cfg->jails[0];

    ck_assert_str_eq(cfg->redis, "redis://127.0.0.1:6379");
    ck_assert_str_eq(cfg->statefile, TAP_DEFAULT_STATEFILE);
    ck_assert_str_eq(tap_banaction_name(cfg->banaction), "none");
    ck_assert_int_eq(j->enabled, 0);     /* as in Fail2Ban */
    ck_assert_uint_eq(tap_config_enabled(cfg), 0);
    ck_assert_uint_eq(j->policy.maxretry, 5);
    ck_assert_int_eq(j->policy.findtime, 600);
    ck_assert_int_eq(j->policy.bantime, 3600);
    ck_assert_int_eq(j->policy.increment, 0);
    ck_assert(j->policy.factor == 2.0);
    ck_assert_int_eq(j->policy.maxtime, 7 * 86400);
    ck_assert_uint_eq(j->ipv6prefix, 64);
    ck_assert(ignored(j, "127.0.0.1"));
    ck_assert(ignored(j, "::1"));
    ck_assert_ptr_null(j->filter);
    ck_assert_uint_eq(j->nfailregex, 0);
    tap_config_free(cfg);

    /* a byte order mark is skipped */
    cfg = parse_ok("\xEF\xBB\xBF[DEFAULT]\nmaxretry = 2\n[j]\n");
    ck_assert_uint_eq(cfg->jails[0].policy.maxretry, 2);
    tap_config_free(cfg);

    /* an empty file is a valid configuration without jails */
    cfg = parse_ok("");
    ck_assert_uint_eq(cfg->njails, 0);
    tap_config_free(cfg);
}
END_TEST

START_TEST(inheritance_and_override)
{
    tap_config_t *cfg = parse_ok(
        "[imap]\n"
        "enabled = yes\n"
        "filter = dbmail-imap\n"
        "logpath = /var/log/a.log\n"
        "bantime = 2h\n"
        "ignoreip = 10.0.0.0/8\n"
        "\n"
        "[pop]\n"
        "filter = dbmail-pop3\n"
        "logpath = /var/log/b.log\n"
        "enabled = off\n"
        "\n"
        "# DEFAULT after the jails still applies to them\n"
        "[DEFAULT]\n"
        "enabled = true\n"
        "maxretry = 3\n"
        "bantime = 30m\n"
        "bantime.increment = true\n"
        "bantime.factor = 1.5\n"
        "bantime.maxtime = 2d\n"
        "ipv6prefix = 56\n"
        "banaction = nftables\n"
        "port = 143, 993,4190\n"
        "prefix = mg-test:\n"
        "redis = unix:/run/redis/redis.sock?db=2\n");

    ck_assert_uint_eq(cfg->njails, 2);
    ck_assert_int_eq(cfg->banaction, TAP_BANACTION_NFTABLES);
    ck_assert_str_eq(tap_banaction_name(cfg->banaction), "nftables");
    ck_assert_uint_eq(cfg->nports, 3);
    ck_assert_uint_eq(cfg->ports[1], 993);
    ck_assert_str_eq(cfg->prefix, "mg-test:");
    ck_assert_str_eq(cfg->redis_url.path, "/run/redis/redis.sock");
    ck_assert_int_eq(cfg->redis_url.db, 2);
    const tap_jail_t *imap = tap_config_jail(cfg, "imap");
    const tap_jail_t *pop = tap_config_jail(cfg, "pop");
    ck_assert_int_eq(imap->enabled, 1);
    ck_assert_int_eq(pop->enabled, 0);
    ck_assert_uint_eq(imap->policy.maxretry, 3);
    ck_assert_int_eq(imap->policy.bantime, 7200);
    ck_assert_int_eq(pop->policy.bantime, 1800);
    ck_assert_int_eq(pop->policy.increment, 1);
    ck_assert(pop->policy.factor == 1.5);
    ck_assert_int_eq(pop->policy.maxtime, 2 * 86400);
    ck_assert_uint_eq(pop->ipv6prefix, 56);
    /* ignoreip replaces the default list */
    ck_assert(ignored(imap, "10.1.2.3"));
    ck_assert(!ignored(imap, "127.0.0.1"));
    ck_assert(ignored(pop, "127.0.0.1"));
    ck_assert_uint_eq(tap_config_enabled(cfg), 1);
    tap_config_free(cfg);
}
END_TEST

START_TEST(multiline_values_and_comments)
{
    tap_config_t *cfg = parse_ok(
        "# a comment\n"
        "; another\n"
        "[DEFAULT]\n"
        "  # an indented comment\n"
        "ignoreip = 127.0.0.1/8 ::1 ; webmail logs in from here\n"
        "           192.0.2.0/24, 2001:db8::/32\n"
        "\n"
        "[imap]\r\n"
        "Enabled: true\n"
        "failregex = login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$\n"
        "            user \\[.*\\] coming from \\[<HOST>\\] tried to login with wrong password\n"
        "\n"
        "            # blank and comment lines inside the value are skipped\n"
        "            ^100%% <HOST>$\n"
        "ignoreregex =\n"
        "    user \\[admin\\]\n"
        "logpath = /var/log/dbmail/imap.log\n"
        "          /var/log/dbmail/pop.log /var/log/dbmail/imap.log\n"
        "          /var/log/dbmail/dbmail.err\n");
    const tap_jail_t *j = tap_config_jail(cfg, "imap");

    ck_assert_int_eq(j->enabled, 1);
    ck_assert_uint_eq(j->nfailregex, 3);
    ck_assert_str_eq(j->failregex[0], "login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$");
    ck_assert_str_eq(j->failregex[2], "^100% <HOST>$");
    ck_assert_uint_eq(j->nignoreregex, 1);
    ck_assert_uint_eq(j->nlogpaths, 3);     /* the duplicate is dropped */
    ck_assert_str_eq(j->logpaths[2], "/var/log/dbmail/dbmail.err");
    ck_assert(ignored(j, "192.0.2.77"));
    ck_assert(ignored(j, "2001:db8:ffff::1"));
    ck_assert(ignored(j, "127.0.0.1"));
    ck_assert(!ignored(j, "198.51.100.1"));

    mg_addr_t a;
    const char *l1 = "x login rejected: user [admin] from [203.0.113.5:1]";
    const char *l2 = "x login rejected: user [bob] from [203.0.113.5:1]";
    const char *l3 = "100% 198.51.100.4";
    ck_assert_int_eq(tap_match_line(j->matcher, l1, strlen(l1), &a), TAP_IGNORED);
    ck_assert_int_eq(tap_match_line(j->matcher, l2, strlen(l2), &a), TAP_FAILURE);
    ck_assert_int_eq(tap_match_line(j->matcher, l3, strlen(l3), &a), TAP_FAILURE);
    tap_config_free(cfg);

    /* a filter and failregex together: both apply */
    cfg = parse_ok("[j]\nfilter = dbmail-pop3\nfailregex = ^x <HOST>$\n");
    ck_assert_uint_eq(tap_matcher_count(cfg->jails[0].matcher), 2);
    tap_config_free(cfg);
    /* a single value may sit on the line below its key */
    cfg = parse_ok("[j]\nmaxretry =\n    7\n");
    ck_assert_uint_eq(cfg->jails[0].policy.maxretry, 7);
    tap_config_free(cfg);
    /* empty ignoreip: nothing is ignored */
    cfg = parse_ok("[j]\nignoreip =\n");
    ck_assert(!ignored(&cfg->jails[0], "127.0.0.1"));
    tap_config_free(cfg);
}
END_TEST

START_TEST(value_errors)
{
    /* file, line, key, what is wrong and the value */
    parse_bad("[DEFAULT]\n\n\n\n\n\n\n\n\n\n\nmaxretry = abc\n",
              "t.conf:12: maxretry: not a count from 1 to 100000 (not a decimal number): 'abc'", NULL);
    parse_bad("[j]\nmaxretry = 0\n", "t.conf:2: maxretry: not a count from 1 to 100000 (number below the minimum): '0'", NULL);
    parse_bad("[j]\nmaxretry = -3\n", "maxretry", "'-3'");
    parse_bad("[j]\nmaxretry =\n", "maxretry: not a count from 1 to 100000", NULL);
    parse_bad("[j]\nenabled = maybe\n", "t.conf:2: enabled: not a boolean", "'maybe'");
    parse_bad("[j]\nfindtime = 10x\n", "t.conf:2: findtime: not a duration", "'10x'");
    parse_bad("[j]\nfindtime = 0\n", "findtime: not a duration of at least 1s", "(must be at least 1 second)");
    parse_bad("[j]\nbantime = -1\n", "bantime: not a duration", "'-1'");
    parse_bad("[j]\nbantime = 1h\n  30m\n", "t.conf:3: bantime: takes a single value", NULL);
    parse_bad("[j]\nmaxretry = 5\n  6\n", "t.conf:3: maxretry: takes a single value", "'6'");
    parse_bad("[DEFAULT]\nbanaction = nftables\n  ipfw\n", "banaction: takes a single", NULL);
    parse_bad("[j]\nfilter = dbmail-imap\n  dbmail-pop3\n", "filter: takes a single", NULL);
    parse_bad("[j]\nbantime.increment = sometimes\n", "bantime.increment: not a boolean",
              NULL);
    parse_bad("[j]\nbantime.factor = 0.5\n", "bantime.factor: not a number from 1 to 1000",
              "'0.5'");
    parse_bad("[j]\nbantime.factor = two\n", "bantime.factor", "'two'");
    parse_bad("[j]\nbantime.factor = inf\n", "bantime.factor", NULL);
    parse_bad("[j]\nbantime.factor = 2x\n", "bantime.factor", NULL);
    parse_bad("[j]\nbantime.maxtime = forever\n", "bantime.maxtime: not a duration", NULL);
    parse_bad("[j]\nipv6prefix = 129\n", "ipv6prefix: not a prefix length 1-128", "'129'");
    parse_bad("[j]\nipv6prefix = 0\n", "ipv6prefix", NULL);
    parse_bad("[j]\nignoreip = 127.0.0.1/8 not-an-ip\n",
              "t.conf:2: ignoreip: not an address or CIDR range", "'not-an-ip'");
    parse_bad("[j]\nignoreip = 127.0.0.1\n  10.0.0.0/33\n", "t.conf:3: ignoreip", "10.0.0.0/33");
    parse_bad("[j]\nignoreip = 0.0.0.0/0\n", "ignoreip", NULL);
    parse_bad("[j]\nlogpath = var/log/x\n", "t.conf:2: logpath: not an absolute path",
              "'var/log/x'");
    parse_bad("[j]\nlogpath = /var/log/a\n  /var/log/*.log\n",
              "t.conf:3: logpath: wildcards are not supported", NULL);
    parse_bad("[j]\nlogpath = /var/log/a tail\n", "logpath: not an absolute path", "'tail'");
    parse_bad("[DEFAULT]\nredis = http://x\n", "t.conf:2: redis: not a Redis URL", NULL);
    parse_bad("[DEFAULT]\nredis = redis://u:s3cret@\n", "redis: not a Redis URL", NULL);
    parse_bad("[DEFAULT]\nprefix =\n", "prefix: must be 1 to 64 characters", NULL);
    parse_bad("[DEFAULT]\nprefix = a b\n", "prefix: contains a space or control character", NULL);
    parse_bad("[DEFAULT]\nstatefile = state\n", "statefile: not an absolute path", NULL);
    parse_bad("[DEFAULT]\nbanaction = iptables\n",
              "t.conf:2: banaction: not one of none, nftables, ipfw: 'iptables'", NULL);
    parse_bad("[DEFAULT]\nport = imap,993\n", "t.conf:2: port: not a port number", "'imap'");
    parse_bad("[DEFAULT]\nport = 0\n", "port: not a port number", "'0'");
    parse_bad("[DEFAULT]\nport = 70000\n", "port", "'70000'");
    parse_bad("[DEFAULT]\nport = ,\n", "port: empty list", NULL);
    parse_bad("[j]\nfilter = dbmail-smtp\n", "t.conf:2: filter: unknown filter 'dbmail-smtp'",
              NULL);
    parse_bad("[j]\nfilter = dbmail-imap[mode=aggressive]\n", "filter: filter options", NULL);
}
END_TEST

START_TEST(redis_password_not_echoed)
{
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];
    const char *text = "[DEFAULT]\nredis = redis://user:hunter2@host:notaport\n";

    ck_assert_int_eq(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "redis"));
    ck_assert_ptr_null(strstr(err, "hunter2"));
}
END_TEST

/* Every configuration error that quotes a line or a value: none may
 * show the password, whichever form the URL takes. */
START_TEST(no_config_error_prints_a_password)
{
    static const struct {
        const char *text;
        const char *frag;
    } cases[] = {
        { "[DEFAULT]\nredis = redis://:hunter2@h\n    redis://:hunter2@h2\n",
          "t.conf:3: redis: takes a single value" },
        { "[DEFAULT]\nredis =\n    unix:/run/r.sock?password=hunter2\n    x\n",
          "t.conf:4: redis: takes a single value" },
        { "redis = redis://u:hunter2@h\n[DEFAULT]\n", "'redis = redis://u:***@h' before any" },
        { "[DEFAULT]\n= redis://hunter2@host\n", "no key before '=': '= redis://***@host'" },
        { "  redis = redis://:hunter2@host/0\n", "continuation line without a key" },
        { "[j]\nlogpath = unix:/s?db=1&password=hunter2&user=u\n",
          "'unix:/s?db=1&password=***&user=u'" },
        { "[DEFAULT]\nmaxretry = u:hunter2@host\n", "'u:***@host'" },
        { "[redis://:hunter2@h]\n", "bad jail name [redis://:***@h]" },
        { "[DEFAULT]\nredis = redis://u:hunter2@host:notaport\n",
          "redis: not a Redis URL (redis://[[user]:password@]host" },
    };
    char err[TAP_CONFIG_ERRLEN];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tap_config_t *cfg = NULL;
        const char *text = cases[i].text;
        err[0] = '\0';
        ck_assert_int_eq(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)),
                         -1);
        ck_assert_msg(strstr(err, cases[i].frag) != NULL, "'%s' not in '%s'", cases[i].frag,
                      err);
        ck_assert_msg(strstr(err, "hunter2") == NULL, "password in: %s", err);
    }
}
END_TEST

/* A message cut to a small buffer is masked before the cut: no prefix of
 * the password survives whatever the buffer size. */
START_TEST(a_cut_error_shows_no_part_of_a_password)
{
    const char *text = "[DEFAULT]\nredis redis://:hunter2hunter2@host\n";

    for (size_t size = 1; size < 80; size++) {
        tap_config_t *cfg = NULL;
        char err[80];
        memset(err, 'Z', sizeof(err));
        ck_assert_int_eq(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, size), -1);
        ck_assert_uint_lt(strlen(err), size);
        ck_assert_msg(strstr(err, "hun") == NULL, "size %zu: %s", size, err);
    }
}
END_TEST

START_TEST(redact_masks_user_info_and_password_parameters)
{
    static const char *const cases[][2] = {
        { "redis://:pw@host", "redis://:***@host" },
        { "redis://user:p@ss:w@host:6379/1", "redis://user:***@host:6379/1" },
        { "redis://secret@host", "redis://***@host" },
        { "x 'redis://u:a/b@h' y", "x 'redis://u:***@h' y" },
        { "unix:/s?password=pw&db=2", "unix:/s?password=***&db=2" },
        { "unix:/s?PASSWORD=pw", "unix:/s?PASSWORD=***" },
        { "u:pw@h and bob@example.org", "u:***@h and bob@example.org" },
        { "no secret here: [DEFAULT]", "no secret here: [DEFAULT]" },
        { "", "" },
    };
    char out[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tap_ini_redact(cases[i][0], out, sizeof(out));
        ck_assert_str_eq(out, cases[i][1]);
    }
    tap_ini_redact("redis://:pw@host", out, 5);
    ck_assert_str_eq(out, "redi");
    tap_ini_redact("abc", out, 1);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(regex_errors)
{
    parse_bad("[j]\nfailregex = from \\[<HOST>(\n", "t.conf:2: failregex: bad regex", NULL);
    parse_bad("[j]\nfailregex =\n    ^ok <HOST>$\n    login rejected\n",
              "t.conf:4: failregex", "<HOST>");
    parse_bad("[j]\nfailregex = from <DNS>\n", "failregex", "<DNS>");
    parse_bad("[j]\nignoreregex = a[\n", "t.conf:2: ignoreregex: bad regex", NULL);
}
END_TEST

START_TEST(structure_errors)
{
    parse_bad("maxretry = 3\n[j]\n", "t.conf:1:", "before any section header");
    parse_bad("[j]\nmaxretry = 3\n[j]\n", "t.conf:3: duplicate section [j] (first at line 1)",
              NULL);
    parse_bad("[DEFAULT]\n[DEFAULT]\n", "t.conf:2: duplicate section", NULL);
    parse_bad("[j]\nmaxretry = 3\nMaxRetry = 4\n",
              "t.conf:3: maxretry: duplicate key in [j] (first at line 2)", NULL);
    parse_bad("[j]\n   continued\n", "t.conf:2: continuation line without a key", NULL);
    parse_bad("[j]\nthis line has no delimiter\n", "t.conf:2: not 'key = value'", NULL);
    parse_bad("[j]\n= 3\n", "t.conf:2: no key before '='", NULL);
    parse_bad("[j\n", "t.conf:1: unterminated section header", NULL);
    parse_bad("[j] extra\n", "t.conf:1: text after the section header", NULL);
    parse_bad("[ ]\n", "t.conf:1: empty section name", NULL);
    parse_bad("[a]b]\n", "t.conf:1: bad section header", NULL);
    parse_bad("[bad name]\n", "t.conf:1: bad jail name [bad name]", NULL);
    parse_bad("[abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij]\n", "bad jail name", NULL);
    parse_bad("[INCLUDES]\nbefore = x.conf\n", "[INCLUDES] is not supported", NULL);
    parse_bad("[j]\nbogus = 1\n", "t.conf:2: bogus: unknown key", NULL);
    parse_bad("[j]\nbackend = auto\n", "t.conf:2: backend: unknown key (a Fail2Ban setting",
              NULL);
    parse_bad("[DEFAULT]\naction = %(action_)s\n", "t.conf:2: action: %(name)s interpolation",
              NULL);
    parse_bad("[j]\nredis = redis://127.0.0.1\n", "t.conf:2: redis: only valid in [DEFAULT]",
              NULL);
    parse_bad("[j]\nport = 143\n", "port: only valid in [DEFAULT]", NULL);
    parse_bad("[j]\nlogpath = %(dbmail_log)s\n", "logpath: %(name)s interpolation is not "
              "supported", NULL);
    parse_bad("[j]\nfailregex = ^100% <HOST>$\n", "failregex: a literal '%' must be written "
              "'%%'", NULL);
    parse_bad("[j]\nfailregex = ^x\n   100%\n", "t.conf:3: failregex: a literal '%'", NULL);
    static const char nul[] = "[j]\nmax\0retry = 3\n";
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];
    ck_assert_int_eq(tap_config_parse(nul, sizeof(nul) - 1, "t.conf", &cfg, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "t.conf:2: NUL byte"));
}
END_TEST

START_TEST(enabled_jail_checks)
{
    parse_bad("[DEFAULT]\nenabled = true\n\n[imap]\nfilter = dbmail-imap\n",
              "t.conf:4: [imap]: enabled jail has no logpath", NULL);
    parse_bad("[imap]\nenabled = true\nlogpath = /var/log/x\n",
              "t.conf:1: [imap]: enabled jail has neither filter nor failregex", NULL);
    parse_bad("[imap]\nenabled = true\nlogpath = /var/log/x\nfilter =\n", "neither filter",
              NULL);
    /* disabled jails may be incomplete, but their values are still checked */
    tap_config_t *cfg = parse_ok("[imap]\nenabled = false\n");
    tap_config_free(cfg);
    parse_bad("[imap]\nenabled = false\nmaxretry = x\n", "t.conf:3: maxretry", NULL);
    /* a bad jail value in [DEFAULT] is reported even with no jail */
    parse_bad("[DEFAULT]\nfindtime = soon\n", "t.conf:2: findtime", NULL);
}
END_TEST

START_TEST(load_from_disk)
{
    char path[] = "/tmp/test_tap_config.XXXXXX";
    int fd = mkstemp(path);
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, ISSUE_EXAMPLE, strlen(ISSUE_EXAMPLE)), (int)strlen(ISSUE_EXAMPLE));
    close(fd);
    ck_assert_int_eq(tap_config_load(path, &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_uint_eq(cfg->njails, 1);
    tap_config_free(cfg);

    /* errors name the file */
    fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "maxretry = lots\n", 16), 16);
    close(fd);
    ck_assert_int_eq(tap_config_load(path, &cfg, err, sizeof(err)), -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:13: maxretry: not a count from 1 to 100000 (not a decimal number): 'lots'", path);
    ck_assert_str_eq(err, want);
    unlink(path);

    ck_assert_int_eq(tap_config_load(path, &cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot read"));
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(tap_config_load("/tmp", &cfg, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
}
END_TEST

START_TEST(small_error_buffer)
{
    tap_config_t *cfg = NULL;
    char err[8];
    const char *text = "[j]\nmaxretry = abcdefghijklmnopqrstuvwxyz\n";

    ck_assert_int_eq(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)), -1);
    ck_assert_uint_lt(strlen(err), sizeof(err));
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("tap_config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, issue_example);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, inheritance_and_override);
    tcase_add_test(tc, multiline_values_and_comments);
    tcase_add_test(tc, value_errors);
    tcase_add_test(tc, redis_password_not_echoed);
    tcase_add_test(tc, no_config_error_prints_a_password);
    tcase_add_test(tc, a_cut_error_shows_no_part_of_a_password);
    tcase_add_test(tc, redact_masks_user_info_and_password_parameters);
    tcase_add_test(tc, regex_errors);
    tcase_add_test(tc, structure_errors);
    tcase_add_test(tc, enabled_jail_checks);
    tcase_add_test(tc, load_from_disk);
    tcase_add_test(tc, small_error_buffer);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(config_suite)
