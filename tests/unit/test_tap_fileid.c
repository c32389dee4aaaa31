/* What names a followed file across restarts: where a file opened at a
 * path starts and its epoch, the identity of its lines, and the files
 * rotated away from a path, remembered and found again by inode. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "tap_fileid.h"
#include "tap_log.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/tap_fileid.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tap_log_set_level(TAP_LOG_ERROR);   /* MG0618 is expected here */
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Write text to dir/name; its descriptor (open for reading) and stat. */
static int make_file(const char *name, const char *text, struct stat *st)
{
    char path[160];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    ck_assert_int_eq(fstat(fd, st), 0);
    return fd;
}

static tap_follow_pos_t pos_of(int fd, const struct stat *st, int64_t off, uint32_t epoch)
{
    tap_follow_pos_t p = { (uint64_t)st->st_ino, off, 0, 0, epoch };

    p.has_hash = tap_fileid_first_hash(fd, &p.hash) == 0;
    return p;
}

START_TEST(the_first_line_hash_waits_for_a_whole_line)
{
    struct stat st;
    uint64_t a, b;
    int fd = make_file("x", "no newline yet", &st);

    ck_assert_int_eq(tap_fileid_first_hash(fd, &a), -1);
    ck_assert_int_eq(write(fd, "\nsecond\n", 8), 8);
    ck_assert_int_eq(tap_fileid_first_hash(fd, &a), 0);
    ck_assert_int_eq(write(fd, "third\n", 6), 6);
    ck_assert_int_eq(tap_fileid_first_hash(fd, &b), 0);
    ck_assert_uint_eq(a, b);        /* the first line only */
    close(fd);
}
END_TEST

START_TEST(epoch_0_keeps_the_identity_every_other_epoch_changes_it)
{
    /* epoch 0 is the identity earlier versions gave: pinned here */
    uint64_t h = 0x1234;
    h ^= (7 * 0x9e3779b97f4a7c15ULL) + (99ULL << 1);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    ck_assert_uint_eq(tap_fileid_identity(7, 99, 0x1234, 1, 0), h);
    ck_assert_uint_ne(tap_fileid_identity(7, 99, 0x1234, 1, 1), h);
    ck_assert_uint_ne(tap_fileid_identity(7, 99, 0x1234, 1, 1),
                      tap_fileid_identity(7, 99, 0x1234, 1, 2));
    /* no first line yet: the hash does not count */
    ck_assert_uint_eq(tap_fileid_identity(7, 99, 0x1234, 0, 0),
                      tap_fileid_identity(7, 99, 0x9999, 0, 0));
    ck_assert_uint_ne(tap_fileid_identity(0, 0, 0, 0, 0), 0);
}
END_TEST

START_TEST(a_file_starts_where_the_statefile_left_it_or_from_0_with_the_right_epoch)
{
    struct stat st, st2;
    const char *how;
    uint32_t epoch = 9;
    int fd = make_file("a", "line one\nline two\n", &st);
    tap_follow_pos_t saved = pos_of(fd, &st, 9, 3);

    /* the same file, long enough: resumed, epoch kept */
    ck_assert_int_eq(tap_fileid_start(fd, &st, &saved, 0, &epoch, &how), 9);
    ck_assert_str_eq(how, "resuming");
    ck_assert_uint_eq(epoch, 3);
    /* emptied while stopped (same inode, shorter): the next epoch */
    saved.off = 1000;
    ck_assert_int_eq(tap_fileid_start(fd, &st, &saved, 0, &epoch, &how), 0);
    ck_assert_str_eq(how, "replaced while stopped: from the start");
    ck_assert_uint_eq(epoch, 4);
    /* rewritten in place with another first line: the next epoch too */
    saved.off = 9;
    saved.hash ^= 1;
    ck_assert_int_eq(tap_fileid_start(fd, &st, &saved, 0, &epoch, &how), 0);
    ck_assert_uint_eq(epoch, 4);
    /* another inode: a new file, epoch 0 */
    int fd2 = make_file("b", "line one\nline two\n", &st2);
    saved = pos_of(fd, &st, 9, 3);
    ck_assert_int_eq(tap_fileid_start(fd2, &st2, &saved, 0, &epoch, &how), 0);
    ck_assert_uint_eq(epoch, 0);
    /* nothing saved: from the end when never seen, else from 0 */
    ck_assert_int_eq(tap_fileid_start(fd2, &st2, NULL, 1, &epoch, &how), st2.st_size);
    ck_assert_str_eq(how, "never seen: from its end");
    ck_assert_int_eq(tap_fileid_start(fd2, &st2, NULL, 0, &epoch, &how), 0);
    ck_assert_str_eq(how, "new file: from the start");
    close(fd);
    close(fd2);
}
END_TEST

START_TEST(the_last_four_rotated_generations_are_kept_until_forgotten)
{
    tap_rotated_t r;
    tap_follow_pos_t id = { 0, 55, 0xab, 1, 2 }, got[8];
    uint32_t gen[8];

    memset(&r, 0, sizeof(r));
    for (uint32_t g = 1; g <= 6; g++) {
        id.ino = 100 + g;
        tap_rotated_remember(&r, &id, g);
    }
    ck_assert_uint_eq(tap_rotated_list(&r, got, gen, 8), TAP_FOLLOW_ROTATED);
    ck_assert_uint_eq(gen[0], 3);           /* the oldest dropped */
    ck_assert_uint_eq(got[0].ino, 103);
    ck_assert_int_eq(got[0].off, 0);        /* identity only */
    ck_assert_uint_eq(got[0].epoch, 2);
    ck_assert_uint_eq(gen[3], 6);
    tap_rotated_forget(&r, 4);
    tap_rotated_forget(&r, 42);             /* unknown: nothing */
    ck_assert_uint_eq(tap_rotated_list(&r, got, gen, 8), 3);
    ck_assert_uint_eq(gen[0], 3);
    ck_assert_uint_eq(gen[1], 5);
    ck_assert_uint_eq(tap_rotated_list(&r, got, gen, 1), 1);
}
END_TEST

START_TEST(rotated_files_are_found_again_by_inode_and_first_line)
{
    tap_rotated_t r;
    struct stat st, st_gone, st_new;
    tap_follow_pos_t p, want, other;
    char path[160];
    int fd = make_file("mail.log.1", "first\nsecond\nthird\n", &st);
    int fd_new = make_file("mail.log", "first\nnew\n", &st_new);
    int fd_gone = make_file("gone", "first\n", &st_gone);

    memset(&r, 0, sizeof(r));
    want = pos_of(fd, &st, 6, 1);
    other = pos_of(fd_gone, &st_gone, 0, 0);
    snprintf(path, sizeof(path), "%s/gone", dir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(tap_rotated_add(&r, &other, 1), 0);      /* gone */
    ck_assert_int_eq(tap_rotated_add(&r, &want, 1), 0);
    /* the path's own file is never taken for a rotated one */
    p = pos_of(fd_new, &st_new, 0, 0);
    ck_assert_int_eq(tap_rotated_add(&r, &p, 0), 0);
    ck_assert(r.successor);
    snprintf(path, sizeof(path), "%s/mail.log", dir);
    int got = tap_rotated_next(&r, path, dir, "mail.log", &p, &st);
    ck_assert_int_ge(got, 0);
    ck_assert_uint_eq(p.ino, want.ino);
    ck_assert_uint_eq(p.epoch, 1);
    ck_assert_int_eq(lseek(got, 0, SEEK_CUR), 6);
    close(got);
    ck_assert_int_eq(tap_rotated_next(&r, path, dir, "mail.log", &p, &st), -1);
    /* consumed: empty again */
    ck_assert_uint_eq(r.nresume, 0);
    close(fd);
    close(fd_new);
    close(fd_gone);
}
END_TEST

START_TEST(a_rotated_file_with_another_first_line_or_too_short_is_not_it)
{
    tap_rotated_t r;
    struct stat st;
    tap_follow_pos_t p, want;
    int fd = make_file("mail.log.1", "first\nsecond\n", &st);

    memset(&r, 0, sizeof(r));
    want = pos_of(fd, &st, 3, 0);
    want.hash ^= 1;                         /* another first line */
    ck_assert_int_eq(tap_rotated_add(&r, &want, 1), 0);
    want.hash ^= 1;
    want.off = 1000;                        /* shorter than where it was */
    ck_assert_int_eq(tap_rotated_add(&r, &want, 1), 0);
    ck_assert_int_eq(tap_rotated_next(&r, "/x/mail.log", dir, "mail.log", &p, &st), -1);
    close(fd);
}
END_TEST

START_TEST(four_rotated_files_and_the_saved_position_at_most)
{
    tap_rotated_t r;
    tap_follow_pos_t p = { 1, 0, 0, 0, 0 };

    memset(&r, 0, sizeof(r));
    for (int i = 0; i < TAP_FOLLOW_ROTATED; i++) {
        ck_assert_int_eq(tap_rotated_add(&r, &p, 1), 0);
    }
    ck_assert_int_eq(tap_rotated_add(&r, &p, 1), -1);
    ck_assert_int_eq(tap_rotated_add(&r, &p, 0), 0);
    ck_assert_int_eq(tap_rotated_add(&r, &p, 0), -1);
}
END_TEST

static Suite *fileid_suite(void)
{
    Suite *s = suite_create("tap_fileid");
    TCase *tc = tcase_create("fileid");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, the_first_line_hash_waits_for_a_whole_line);
    tcase_add_test(tc, epoch_0_keeps_the_identity_every_other_epoch_changes_it);
    tcase_add_test(tc, a_file_starts_where_the_statefile_left_it_or_from_0_with_the_right_epoch);
    tcase_add_test(tc, the_last_four_rotated_generations_are_kept_until_forgotten);
    tcase_add_test(tc, rotated_files_are_found_again_by_inode_and_first_line);
    tcase_add_test(tc, a_rotated_file_with_another_first_line_or_too_short_is_not_it);
    tcase_add_test(tc, four_rotated_files_and_the_saved_position_at_most);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(fileid_suite)
