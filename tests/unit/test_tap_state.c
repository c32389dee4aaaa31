/* The statefile: round trip, and a temporary file that is never followed
 * through a symlink and survives a crash's leftovers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "tap_state.h"

static char dir[64];
static char statefile[128];
static char tmpname[160];

static void setup(void)
{
    strcpy(dir, "/tmp/tap_state.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(statefile, sizeof(statefile), "%s/state", dir);
    snprintf(tmpname, sizeof(tmpname), "%s.tmp.%ld", statefile, (long)getpid());
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
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

static int exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Save one entry and check the statefile reads back as it. */
static void save_and_check(void)
{
    tap_state_entry_t e = { (char *)"/var/log/dbmail/dbmail.log", { 42, 1234, 0xabcdef, 1, 0 }, 0 };
    tap_state_t st;
    unsigned bad = 9;
    char err[256];

    ck_assert_msg(tap_state_save(statefile, &e, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_eq(st.n, 1);
    const tap_follow_pos_t *p = tap_state_find(&st, "/var/log/dbmail/dbmail.log");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->ino, 42);
    ck_assert_int_eq(p->off, 1234);
    ck_assert_uint_eq(p->hash, 0xabcdef);
    tap_state_free(&st);
    ck_assert(!exists(tmpname));
}

START_TEST(saved_state_reads_back)
{
    save_and_check();
    /* a second save replaces the first atomically */
    save_and_check();
}
END_TEST

START_TEST(a_symlink_planted_at_the_temp_name_is_never_followed)
{
    char victim[160], buf[64];
    struct stat st;

    snprintf(victim, sizeof(victim), "%s/victim", dir);
    write_file(victim, "precious\n");
    ck_assert_int_eq(symlink(victim, tmpname), 0);
    save_and_check();
    read_file(victim, buf, sizeof(buf));
    ck_assert_str_eq(buf, "precious\n");
    ck_assert_int_eq(lstat(statefile, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
}
END_TEST

START_TEST(a_dangling_symlink_at_the_temp_name_creates_nothing_where_it_points)
{
    char target[160];

    snprintf(target, sizeof(target), "%s/created-through-the-link", dir);
    ck_assert_int_eq(symlink(target, tmpname), 0);
    save_and_check();
    ck_assert(!exists(target));
}
END_TEST

START_TEST(a_stale_temp_file_from_a_crash_is_replaced)
{
    write_file(tmpname, "v1 1 2 - /half/written\nv1 garb");
    save_and_check();
}
END_TEST

START_TEST(an_unremovable_temp_name_is_an_error_not_a_crash)
{
    char err[256];
    tap_state_entry_t e = { (char *)"/x", { 1, 2, 0, 0, 0 }, 0 };

    ck_assert_int_eq(mkdir(tmpname, 0700), 0);
    ck_assert_int_eq(tap_state_save(statefile, &e, 1, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, tmpname));
    ck_assert(!exists(statefile));
}
END_TEST

START_TEST(load_removes_the_temp_files_of_processes_that_are_gone)
{
    char dead[200], mine[200], notpid[200], other[200], live[200];
    tap_state_t st;
    unsigned bad;
    char err[256];

    /* far beyond any pid_max: no such process */
    snprintf(dead, sizeof(dead), "%s.tmp.999999999", statefile);
    snprintf(notpid, sizeof(notpid), "%s.tmp.12ab", statefile);
    snprintf(other, sizeof(other), "%s/elsewhere.tmp.999999999", dir);
    snprintf(live, sizeof(live), "%s.tmp.%ld", statefile, (long)getppid());
    strcpy(mine, tmpname);
    write_file(dead, "x");
    write_file(notpid, "x");
    write_file(other, "x");
    write_file(live, "x");
    write_file(mine, "x");
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(st.n, 0);
    ck_assert(!exists(dead));
    ck_assert(!exists(mine));
    ck_assert(exists(live));
    ck_assert(exists(notpid));
    ck_assert(exists(other));
    tap_state_free(&st);
}
END_TEST

START_TEST(a_truncated_files_epoch_reads_back_and_older_lines_read_as_epoch_0)
{
    tap_state_entry_t e[2] = {
        { (char *)"/var/log/a.log", { 7, 100, 0x1234, 1, 0 }, 0 },
        { (char *)"/var/log/b.log", { 8, 200, 0, 0, 3 }, 0 },
    };
    tap_state_t st;
    unsigned bad = 9;
    char err[256], text[512];
    const tap_follow_pos_t *p;

    ck_assert_msg(tap_state_save(statefile, e, 2, err, sizeof(err)) == 0, "%s", err);
    /* never truncated: the line an earlier version reads too */
    read_file(statefile, text, sizeof(text));
    ck_assert_ptr_nonnull(strstr(text, "\nv1 7 100 0000000000001234 /var/log/a.log\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nv2 8 200 - 3 /var/log/b.log\n"));
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(bad, 0);
    p = tap_state_find(&st, "/var/log/a.log");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->epoch, 0);
    ck_assert_uint_eq(p->hash, 0x1234);
    p = tap_state_find(&st, "/var/log/b.log");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->epoch, 3);
    ck_assert_int_eq(p->off, 200);
    ck_assert(!p->has_hash);
    tap_state_free(&st);
}
END_TEST

START_TEST(a_malformed_epoch_is_an_unreadable_line)
{
    tap_state_t st;
    unsigned bad = 0;
    char err[256];

    write_file(statefile, "v2 1 2 - /no/epoch\n"
                          "v2 1 2 - x /letters\n"
                          "v2 1 2 - 4294967296 /too/big\n"
                          "v2 1 2 - -1 /negative\n"
                          "v3 1 2 - 1 /unknown/version\n"
                          "r1 1 2 - /rotated/without/epoch\n"
                          "v2 1 2 00ff 4294967295 /largest\n");
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(bad, 6);
    ck_assert_uint_eq(st.n, 1);
    ck_assert_uint_eq(tap_state_find(&st, "/largest")->epoch, 4294967295u);
    tap_state_free(&st);
}
END_TEST

START_TEST(a_rotated_file_reads_back_apart_from_the_one_at_its_path)
{
    tap_state_entry_t e[3] = {
        { (char *)"/var/log/a.log", { 11, 300, 0xfeed, 1, 0 }, 1 },
        { (char *)"/var/log/a.log", { 12, 40, 0xbeef, 1, 2 }, 1 },
        { (char *)"/var/log/a.log", { 13, 50, 0xcafe, 1, 0 }, 0 },
    };
    tap_state_t st;
    unsigned bad = 9;
    char err[256], text[512];
    const tap_follow_pos_t *p;

    ck_assert_msg(tap_state_save(statefile, e, 3, err, sizeof(err)) == 0, "%s", err);
    read_file(statefile, text, sizeof(text));
    ck_assert_ptr_nonnull(strstr(text, "\nr2 11 300 000000000000feed 0 /var/log/a.log\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nr2 12 40 000000000000beef 2 /var/log/a.log\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nv1 13 50 000000000000cafe /var/log/a.log\n"));
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_eq(st.n, 3);
    /* the path's own position is the file at the path, whatever the order */
    p = tap_state_find(&st, "/var/log/a.log");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->ino, 13);
    ck_assert(st.v[0].rotated && st.v[1].rotated && !st.v[2].rotated);
    ck_assert_uint_eq(st.v[0].pos.ino, 11);
    ck_assert_int_eq(st.v[0].pos.off, 300);
    ck_assert_uint_eq(st.v[1].pos.epoch, 2);
    tap_state_free(&st);
    /* only a rotated line: the path itself has no position */
    write_file(statefile, "r2 11 300 - 0 /var/log/b.log\n");
    ck_assert_int_eq(tap_state_load(statefile, &st, &bad, err, sizeof(err)), 0);
    ck_assert_uint_eq(st.n, 1);
    ck_assert_ptr_null(tap_state_find(&st, "/var/log/b.log"));
    tap_state_free(&st);
}
END_TEST

static Suite *state_suite(void)
{
    Suite *s = suite_create("tap_state");
    TCase *tc = tcase_create("state");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, saved_state_reads_back);
    tcase_add_test(tc, a_symlink_planted_at_the_temp_name_is_never_followed);
    tcase_add_test(tc, a_dangling_symlink_at_the_temp_name_creates_nothing_where_it_points);
    tcase_add_test(tc, a_stale_temp_file_from_a_crash_is_replaced);
    tcase_add_test(tc, an_unremovable_temp_name_is_an_error_not_a_crash);
    tcase_add_test(tc, load_removes_the_temp_files_of_processes_that_are_gone);
    tcase_add_test(tc, a_truncated_files_epoch_reads_back_and_older_lines_read_as_epoch_0);
    tcase_add_test(tc, a_malformed_epoch_is_an_unreadable_line);
    tcase_add_test(tc, a_rotated_file_reads_back_apart_from_the_one_at_its_path);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(state_suite)
