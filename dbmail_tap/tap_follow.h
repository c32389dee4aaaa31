/*
 * Following log files the way `tail -F` does, for dbmail_tap.
 *
 * Each path is watched with inotify (the file itself and its directory)
 * and re-checked on a short timer, so a missing inotify or a missed event
 * costs at most one poll interval.  A file missing at start is picked up
 * when it appears.  Rotation by rename: the old descriptor is read to its
 * end, the new file is read from offset 0, and the old one is still read
 * for a short grace time (writers reopen late).  copytruncate: a size
 * below the read offset, or a changed first line, restarts at 0.
 *
 * Lines are handed over only when their newline has arrived; several
 * whole lines at once when they came in one read.  Lines longer than
 * TAP_FOLLOW_MAX_LINE bytes are skipped and counted.
 */
#ifndef TAP_FOLLOW_H
#define TAP_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#define TAP_FOLLOW_MAX_LINE 65536 /* bytes, newline excluded */
#define TAP_FOLLOW_GRACE_MS 2000  /* old file still read after a rename */

/*
 * Called with buf holding one or more whole lines, each ending in '\n';
 * base_off is the file offset of buf[0] and gen the file's generation
 * (bumped at each rotation or truncation).
 */
typedef void (*tap_follow_lines_fn)(void *baton, unsigned file, uint32_t gen, const char *buf,
                                    size_t len, int64_t base_off);

/* Where a file was left, as the statefile remembers it. */
typedef struct tap_follow_pos {
    uint64_t ino;
    int64_t off;   /* end of the last complete line handed over */
    uint64_t hash; /* of the first line (tap_fileid_first_hash) */
    int has_hash;
    /* Times the file was seen emptied or rewritten in place (truncation):
     * what tells its new content from its old one when both start with
     * the same line (see tap_follow_identity). */
    uint32_t epoch;
} tap_follow_pos_t;

typedef struct tap_follow tap_follow_t;

/* use_inotify 0 forces polling (tests, filesystems without events). */
tap_follow_t *tap_follow_new(tap_follow_lines_fn fn, void *baton, int use_inotify);
void tap_follow_free(tap_follow_t *f);

/*
 * Add a path.  saved is where a previous run left it, or NULL for a file
 * never seen (then reading starts at its current end; a file that appears
 * later, or after a rotation, is read from the start).  Returns the file's
 * index, or -1 on allocation failure.
 */
int tap_follow_add(tap_follow_t *f, const char *path, const tap_follow_pos_t *saved);

/* Open what exists and read what is there.  Call once after the adds. */
void tap_follow_start(tap_follow_t *f);

/* The inotify descriptor to poll for input, or -1 when polling only. */
int tap_follow_fd(const tap_follow_t *f);
/* Milliseconds until tap_follow_tick() is due (0 when data is pending). */
int tap_follow_timeout(const tap_follow_t *f);
/* Handle readable inotify events. */
void tap_follow_events(tap_follow_t *f);
/* Re-check every file (timer); also continues bounded reads. */
void tap_follow_tick(tap_follow_t *f);
/* SIGHUP: reopen every path (rotation rules apply), re-add the watches. */
void tap_follow_reopen(tap_follow_t *f);

/*
 * The files rotated away from file index's path (tap_fileid.h): the
 * statefile names those whose failures wait for Redis, and the reader
 * adds those a previous run named, before tap_follow_start() reads them.
 * NULL for an unknown index.
 */
struct tap_rotated *tap_follow_rotations(tap_follow_t *f, unsigned file);
/* Forget generation gen of file index rotated away, once none of its
 * failures waits any more (kept while the file is still read: more may
 * come). */
void tap_follow_forget_rotated(tap_follow_t *f, unsigned file, uint32_t gen);

unsigned tap_follow_count(const tap_follow_t *f);
const char *tap_follow_path(const tap_follow_t *f, unsigned file);
/* 1 and *pos when the file is open; *gen is its current generation. */
int tap_follow_position(const tap_follow_t *f, unsigned file, tap_follow_pos_t *pos,
                        uint32_t *gen);
/*
 * A number naming the file that generation gen of file index is read
 * from: its device, inode, first line and epoch (truncations seen, kept in
 * the statefile), so it stays the same across a restart of the daemon and
 * differs for the next file at that path (even one given the same inode)
 * and for the content written after a truncation (even one that starts
 * with the same line).  With a line's offset it names the line, which lets
 * Redis count a line sent twice once.  0 when that generation is no longer
 * open.
 */
uint64_t tap_follow_identity(tap_follow_t *f, unsigned file, uint32_t gen);
/* Over-long lines skipped so far.  (Lines handed over are counted by the
 * caller's scanner, which looks at every newline anyway.) */
uint64_t tap_follow_skipped(const tap_follow_t *f);
/* Bumped whenever a position may have changed (for the statefile). */
uint64_t tap_follow_changes(const tap_follow_t *f);

#endif
