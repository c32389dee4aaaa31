/* `dbmail_tap test`: its summary, options and exit codes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_test.h"
#include "tap_cmd.h"

#define IMAP(user, addr) "Nov 26 10:00:01 mail dbmail-imapd[1]: [0x1] Notice:[imap] " \
    "dbmail_imap_session_handle_auth(+1448): [0x2] login rejected: user [" user "] from [" \
    addr "]\n"

typedef struct run {
    int rc;
    char out[16384];
    char err[4096];
} run_t;

static void slurp(int fd, char *buf, size_t size)
{
    ssize_t n;
    size_t len = 0;

    lseek(fd, 0, SEEK_SET);
    while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

/* Run the command with stdout and stderr captured (and stdin from a file
 * when in is not NULL). */
static void run_cmd(run_t *r, const char *in, int argc, const char **argv)
{
    char o[] = "/tmp/tap_cmd_out.XXXXXX", e[] = "/tmp/tap_cmd_err.XXXXXX";
    int fo = mkstemp(o), fe = mkstemp(e);
    int so = dup(1), se = dup(2), si = dup(0);

    ck_assert(fo >= 0 && fe >= 0);
    fflush(stdout);
    fflush(stderr);
    dup2(fo, 1);
    dup2(fe, 2);
    if (in != NULL) {
        int fi = open(in, O_RDONLY);
        ck_assert_int_ge(fi, 0);
        dup2(fi, 0);
        close(fi);
    }
    r->rc = tap_cmd_test(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    dup2(si, 0);
    close(so);
    close(se);
    close(si);
    slurp(fo, r->out, sizeof(r->out));
    slurp(fe, r->err, sizeof(r->err));
    close(fo);
    close(fe);
    unlink(o);
    unlink(e);
}

static char logpath[64];

static void write_log(const char *text)
{
    strcpy(logpath, "/tmp/tap_cmd_log.XXXXXX");
    int fd = mkstemp(logpath);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
}

START_TEST(summary_counts_and_ranks)
{
    run_t r;
    write_log(IMAP("bob", "203.0.113.5:1")
              IMAP("x] from [192.0.2.66:1", "2001:db8::5:51234")
              IMAP("eve", "::ffff:203.0.113.5:993")
              "Nov 26 10:00:02 mail dbmail-imapd[1]: [0x1] login accepted: id [1] user [a] "
              "from [203.0.113.9:1]\n"
              IMAP("bob", "bogus:1")
              "\n"
              IMAP("eve", "2001:db8::5:1")
              /* the last line has no newline: it still counts */
              "Notice: [0x2] login rejected: user [z] from [203.0.113.5:7]");
    const char *argv[] = { "test", logpath, "dbmail-imap" };

    run_cmd(&r, NULL, 3, argv);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_msg(strstr(r.out, "Lines:     8 read, 5 matched, 1 ignored, 0 suspicious, "
                                "2 missed") != NULL, "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "Addresses: 2 distinct"));
    /* sorted by count: 203.0.113.5 three times (mapped form folded in) */
    const char *a = strstr(r.out, "       3  203.0.113.5\n");
    const char *b = strstr(r.out, "       2  2001:db8::5\n");
    ck_assert_msg(a != NULL && b != NULL && a < b, "%s", r.out);
    ck_assert_ptr_null(strstr(r.out, "192.0.2.66"));
    ck_assert_str_eq(r.err, "");
    unlink(logpath);
}
END_TEST

START_TEST(regex_top_and_print_missed)
{
    run_t r;
    write_log(IMAP("a", "198.51.100.1:1") IMAP("a", "198.51.100.1:1") IMAP("a", "198.51.100.2:1")
              "noise line\n");
    const char *argv[] = { "test", logpath, "login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$",
                           "--top", "1", "--print-missed" };

    run_cmd(&r, NULL, 6, argv);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "missed    | noise line\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "4 read, 3 matched, 0 ignored, 0 suspicious, 1 missed"));
    ck_assert_ptr_nonnull(strstr(r.out, "Addresses: 2 distinct (top by count)"));
    ck_assert_ptr_nonnull(strstr(r.out, "       2  198.51.100.1\n"));
    ck_assert_ptr_null(strstr(r.out, "198.51.100.2\n"));
    unlink(logpath);
}
END_TEST

START_TEST(stdin_and_ignored_lines)
{
    run_t r;
    write_log("Error: user [bob] coming from [203.0.113.5] tried to login with wrong password\n"
              "Error: user [bob] coming from [nowhere] tried to login with wrong password\n");
    const char *argv[] = { "test", "-", "dbmail-pop3", "--print-ignored" };

    run_cmd(&r, logpath, 4, argv);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "ignored   | Error: user [bob] coming from [nowhere]"));
    ck_assert_ptr_nonnull(strstr(r.out, "2 read, 1 matched, 1 ignored, 0 suspicious, 0 missed"));
    unlink(logpath);
}
END_TEST

/* Addresses that share their leading bytes (a whole /16, IPv4-mapped
 * IPv6) are each counted on their own, through every growth of the table. */
START_TEST(every_address_of_a_16_is_counted_on_its_own)
{
    run_t r;
    size_t cap = 70000 * 200, len = 0;
    char *text = malloc(cap);

    ck_assert_ptr_nonnull(text);
    for (unsigned i = 0; i < 65536; i++)
        len += (size_t)snprintf(text + len, cap - len, IMAP("u", "203.0.%u.%u:1"), i >> 8,
                                i & 255);
    for (unsigned i = 0; i < 3; i++)
        len += (size_t)snprintf(text + len, cap - len, IMAP("u", "::ffff:203.0.0.1:1"));
    len += (size_t)snprintf(text + len, cap - len, IMAP("u", "2001:db8::203.0.0.1:1"));
    ck_assert_uint_lt(len, cap);
    write_log(text);
    free(text);
    const char *argv[] = { "test", logpath, "dbmail-imap", "--top", "2" };

    run_cmd(&r, NULL, 5, argv);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_msg(strstr(r.out, "65540 read, 65540 matched") != NULL, "%s", r.out);
    ck_assert_msg(strstr(r.out, "Addresses: 65537 distinct (top by count)") != NULL, "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "       4  203.0.0.1\n"));
    /* ties are listed in address order: IPv4 (mapped) sorts before 2001: */
    ck_assert_ptr_nonnull(strstr(r.out, "       1  203.0.0.0\n"));
    unlink(logpath);
}
END_TEST

/* The two forging cases: Postfix quoting a client in mail.log, and
 * a username with newlines in DBMail's file log.  Neither counts; both are
 * reported as suspicious and can be listed. */
START_TEST(forged_lines_are_counted_as_suspicious_and_listed)
{
    run_t r;
    write_log("Nov 26 10:00:01 mail postfix/smtpd[4242]: warning: non-SMTP command from "
              "unknown[198.51.100.3]: login rejected: user [x] from [203.0.113.9:1]\n"
              IMAP("bob", "198.51.100.7:1")
              "Nov 26 10:00:01 mail dbmail-imapd[1]: [0x1] Notice:[imap] "
              "dbmail_imap_session_handle_auth(+1448): [0x2] login rejected: user [x\n"
              IMAP("v", "203.0.113.9:1")
              IMAP("v", "203.0.113.9:2")
              "tail] from [198.51.100.250:4444]\n");
    const char *argv[] = { "test", logpath, "dbmail-imap", "--print-suspicious" };

    run_cmd(&r, NULL, 4, argv);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_msg(strstr(r.out, "6 read, 1 matched, 0 ignored, 4 suspicious, 1 missed") != NULL,
                  "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "suspicious| Nov 26 10:00:01 mail postfix/smtpd[4242]"));
    ck_assert_ptr_nonnull(strstr(r.out, "suspicious| Nov 26 10:00:01 mail dbmail-imapd[1]: "
                                        "[0x1] Notice:[imap] dbmail_imap_session_handle_auth"
                                        "(+1448): [0x2] login rejected: user [x\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "Addresses: 1 distinct\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "       1  198.51.100.7\n"));
    ck_assert_ptr_null(strstr(r.out, "  203.0.113.9\n"));
    unlink(logpath);
}
END_TEST

START_TEST(exit_codes)
{
    run_t r;
    const char *none[] = { "test" };
    const char *one[] = { "test", "/tmp" };
    const char *missing[] = { "test", "/nonexistent/dbmail.log", "dbmail-imap" };
    const char *dir[] = { "test", "/tmp", "dbmail-imap" };
    const char *badre[] = { "test", "/tmp", "login rejected (" };
    const char *nohost[] = { "test", "/tmp", "login rejected" };
    const char *extra[] = { "test", "/tmp", "dbmail-imap", "more" };
    const char *badtop[] = { "test", "/tmp", "dbmail-imap", "--top", "0" };
    const char *notop[] = { "test", "/tmp", "dbmail-imap", "--top" };
    const char *help[] = { "test", "--help" };

    run_cmd(&r, NULL, 1, none);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "usage: dbmail_tap test"));
    run_cmd(&r, NULL, 2, one);
    ck_assert_int_eq(r.rc, 2);
    run_cmd(&r, NULL, 3, missing);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/dbmail.log: No such file"));
    run_cmd(&r, NULL, 3, dir);
    ck_assert_int_eq(r.rc, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "/tmp:"));
    run_cmd(&r, NULL, 3, badre);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "bad regex"));
    run_cmd(&r, NULL, 3, nohost);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "<HOST>"));
    run_cmd(&r, NULL, 4, extra);
    ck_assert_int_eq(r.rc, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "unexpected argument 'more'"));
    run_cmd(&r, NULL, 5, badtop);
    ck_assert_int_eq(r.rc, 2);
    run_cmd(&r, NULL, 4, notop);
    ck_assert_int_eq(r.rc, 2);
    run_cmd(&r, NULL, 2, help);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "dbmail-imap22"));
}
END_TEST

static Suite *cmd_test_suite(void)
{
    Suite *s = suite_create("tap_cmd_test");
    TCase *tc = tcase_create("cmd_test");

    tcase_add_test(tc, summary_counts_and_ranks);
    tcase_add_test(tc, regex_top_and_print_missed);
    tcase_add_test(tc, stdin_and_ignored_lines);
    tcase_add_test(tc, every_address_of_a_16_is_counted_on_its_own);
    tcase_add_test(tc, forged_lines_are_counted_as_suspicious_and_listed);
    tcase_add_test(tc, exit_codes);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(cmd_test_suite)
