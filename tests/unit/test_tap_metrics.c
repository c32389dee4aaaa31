/* The metrics file: the configuration key, what the text says, and an
 * atomic replacement that never follows a planted symlink. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "tap_config.h"
#include "tap_metrics.h"

static char dir[64];
static char file[128];
static char tmpname[160];

static void setup(void)
{
    strcpy(dir, "/tmp/tap_metrics.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/dbmail_tap.prom", dir);
    snprintf(tmpname, sizeof(tmpname), "%s.tmp", file);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    ck_assert_int_ge(fd, 0);
    n = read(fd, buf, size - 1);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    close(fd);
}

/* ---- the configuration key ---- */

static tap_config_t *parse_ok(const char *text)
{
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];

    err[0] = '\0';
    ck_assert_msg(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)) == 0,
                  "%s", err);
    return cfg;
}

static void parse_bad(const char *text, const char *want)
{
    tap_config_t *cfg = (tap_config_t *)1;
    char err[TAP_CONFIG_ERRLEN];

    err[0] = '\0';
    ck_assert_msg(tap_config_parse(text, strlen(text), "t.conf", &cfg, err, sizeof(err)) == -1,
                  "accepted: %s", text);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' not in '%s'", want, err);
}

START_TEST(metrics_file_defaults_to_none_and_takes_an_absolute_path)
{
    tap_config_t *cfg = parse_ok("[DEFAULT]\n");

    ck_assert_ptr_null(cfg->metrics_file);
    tap_config_free(cfg);
    cfg = parse_ok("[DEFAULT]\nmetrics_file = /var/lib/prometheus/node-exporter/dbmail_tap.prom\n");
    ck_assert_str_eq(cfg->metrics_file, "/var/lib/prometheus/node-exporter/dbmail_tap.prom");
    tap_config_free(cfg);
}
END_TEST

START_TEST(a_metrics_file_that_is_not_a_file_path_is_refused_with_its_line)
{
    char longpath[TAP_METRICS_PATH_MAX + 64];

    parse_bad("[DEFAULT]\nmetrics_file = dbmail_tap.prom\n",
              "t.conf:2: metrics_file: not an absolute path: 'dbmail_tap.prom'");
    parse_bad("[DEFAULT]\n\nmetrics_file =\n", "t.conf:3: metrics_file: not an absolute path");
    parse_bad("[DEFAULT]\nmetrics_file = /var/lib/a b.prom\n",
              "t.conf:2: metrics_file: no spaces or control characters");
    parse_bad("[DEFAULT]\nmetrics_file = /var/lib/\n", "metrics_file: names a directory");
    parse_bad("[DEFAULT]\nmetrics_file = /var/lib/.\n", "metrics_file: names a directory");
    parse_bad("[DEFAULT]\nmetrics_file = /var/lib/..\n", "metrics_file: names a directory");
    parse_bad("[DEFAULT]\nmetrics_file = /a.prom\n  /b.prom\n",
              "metrics_file: takes a single value");
    parse_bad("[DEFAULT]\nstatefile = /var/lib/t/s\nmetrics_file = /var/lib/t/s\n",
              "t.conf:3: metrics_file: the same file as statefile");
    parse_bad("[DEFAULT]\nmetrics_file = /var/lib/dbmail_tap/state\n",
              "metrics_file: the same file as statefile");
    parse_bad("[imap]\nmetrics_file = /tmp/x.prom\n",
              "t.conf:2: metrics_file: only valid in [DEFAULT]");
    memset(longpath, 'a', sizeof(longpath));
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    {
        char text[sizeof(longpath) + 64];
        snprintf(text, sizeof(text), "[DEFAULT]\nmetrics_file = %s\n", longpath);
        parse_bad(text, "metrics_file: path longer than");
    }
}
END_TEST

/* ---- the text ---- */

static tap_metrics_snap_t snap(tap_metrics_jail_t *jails, size_t n,
                               const tap_keeper_stats_t *k)
{
    tap_metrics_snap_t m;

    memset(&m, 0, sizeof(m));
    m.jails = jails;
    m.njails = n;
    m.running = 1;
    m.start_time = 1700000000;
    m.queue_len = 7;
    m.queue_capacity = 1048576;
    m.redis_up = 1;
    m.files = 2;
    m.files_open = 1;
    m.lines_too_long = 3;
    m.banaction = k != NULL ? "nftables" : "none";
    m.keeper = k;
    return m;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

START_TEST(the_text_has_every_jail_under_each_family_with_help_and_type)
{
    tap_metrics_jail_t j[2] = {
        { "dbmail-imap", 15, 5, 1, 1, 8, 1, 4, 2, 1 },
        { "dbmail-pop3", 15, 3, 0, 0, 12, 0, 3, 0, 1 },
    };
    tap_metrics_snap_t m = snap(j, 2, NULL);
    size_t len = 0;
    char *t = tap_metrics_render(&m, &len);

    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(strlen(t), len);
    ck_assert(len > 0 && t[len - 1] == '\n');
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_lines_read_total{jail=\"dbmail-imap\"} 15\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_lines_missed_total{jail=\"dbmail-pop3\"} 12\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_failures_stored_total{jail=\"dbmail-imap\"} 4\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "mailguard_tap_failures_duplicate_total{jail=\"dbmail-imap\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_bans_total{jail=\"dbmail-pop3\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE mailguard_tap_bans_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_queue_length 7\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_lines_too_long_total 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_banaction{banaction=\"none\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_banaction{banaction=\"ipfw\"} 0\n"));
    /* one HELP and one TYPE per family, no keeper families without one */
    ck_assert_uint_eq(count(t, "# HELP "), count(t, "# TYPE "));
    ck_assert_uint_eq(count(t, "# TYPE mailguard_tap_lines_read_total "), 1);
    ck_assert_ptr_null(strstr(t, "firewall"));
    free(t);
}
END_TEST

START_TEST(the_keeper_families_come_with_a_keeper)
{
    tap_metrics_jail_t j[1] = { { "imap", 0, 0, 0, 0, 0, 0, 0, 0, 0 } };
    tap_keeper_stats_t k = { 1, 0, 2, 40, 1, 3, 9, 1700000100, 5 };
    tap_metrics_snap_t m = snap(j, 1, &k);
    size_t len = 0;
    char *t = tap_metrics_render(&m, &len);

    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_redis_up 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_in_step 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_snapshots_total 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_changes_applied_total 40\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_changes_refused_total 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_redis_errors_total 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_bans_live_in_redis 9\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nmailguard_tap_firewall_failures_total 5\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nmailguard_tap_firewall_last_check_timestamp_seconds 1700000100\n"));
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_banaction{banaction=\"nftables\"} 1\n"));
    free(t);
}
END_TEST

START_TEST(a_label_value_is_escaped)
{
    tap_metrics_jail_t j[1] = { { "a\"b\\c\nd", 1, 0, 0, 0, 1, 0, 0, 0, 0 } };
    tap_metrics_snap_t m = snap(j, 1, NULL);
    size_t len = 0;
    char *t = tap_metrics_render(&m, &len);

    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, "mailguard_tap_lines_read_total{jail=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(t);
}
END_TEST

/* ---- the file ---- */

START_TEST(the_file_is_replaced_whole_and_readable_by_others)
{
    char err[256], buf[256];
    struct stat st;
    mode_t old = umask(077);

    ck_assert_int_eq(tap_metrics_write(file, "a 1\n", 4, err, sizeof(err)), 0);
    ck_assert_int_eq(tap_metrics_write(file, "b 2\n", 4, err, sizeof(err)), 0);
    umask(old);
    read_file(file, buf, sizeof(buf));
    ck_assert_str_eq(buf, "b 2\n");
    ck_assert_int_eq(stat(file, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0644);
    ck_assert_int_eq(access(tmpname, F_OK), -1);
}
END_TEST

START_TEST(a_symlink_planted_at_the_temp_name_is_never_followed)
{
    char err[256], buf[256], victim[160];
    int fd;

    snprintf(victim, sizeof(victim), "%s/victim", dir);
    fd = open(victim, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "keep\n", 5), 5);
    close(fd);
    ck_assert_int_eq(symlink(victim, tmpname), 0);
    ck_assert_int_eq(tap_metrics_write(file, "a 1\n", 4, err, sizeof(err)), 0);
    read_file(victim, buf, sizeof(buf));
    ck_assert_str_eq(buf, "keep\n");
    read_file(file, buf, sizeof(buf));
    ck_assert_str_eq(buf, "a 1\n");
}
END_TEST

START_TEST(a_failed_write_keeps_the_old_file_and_says_why)
{
    char err[256], buf[256], gone[160];

    ck_assert_int_eq(tap_metrics_write(file, "a 1\n", 4, err, sizeof(err)), 0);
    snprintf(gone, sizeof(gone), "%s/nodir/x.prom", dir);
    err[0] = '\0';
    ck_assert_int_eq(tap_metrics_write(gone, "b 2\n", 4, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "nodir/x.prom.tmp"));
    ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
    /* a directory where the file should be: the rename fails, the
     * temporary file is removed */
    snprintf(gone, sizeof(gone), "%s/adir", dir);
    ck_assert_int_eq(mkdir(gone, 0755), 0);
    ck_assert_int_eq(tap_metrics_write(gone, "b 2\n", 4, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "rename"));
    snprintf(gone, sizeof(gone), "%s/adir.tmp", dir);
    ck_assert_int_eq(access(gone, F_OK), -1);
    read_file(file, buf, sizeof(buf));
    ck_assert_str_eq(buf, "a 1\n");
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("tap_metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, metrics_file_defaults_to_none_and_takes_an_absolute_path);
    tcase_add_test(tc, a_metrics_file_that_is_not_a_file_path_is_refused_with_its_line);
    tcase_add_test(tc, the_text_has_every_jail_under_each_family_with_help_and_type);
    tcase_add_test(tc, the_keeper_families_come_with_a_keeper);
    tcase_add_test(tc, a_label_value_is_escaped);
    tcase_add_test(tc, the_file_is_replaced_whole_and_readable_by_others);
    tcase_add_test(tc, a_symlink_planted_at_the_temp_name_is_never_followed);
    tcase_add_test(tc, a_failed_write_keeps_the_old_file_and_says_why);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(metrics_suite)
