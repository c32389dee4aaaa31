/*
 * What names a followed file across restarts of dbmail_tap, and finds it
 * again: the hash of its first line, the identity its lines are sent to
 * Redis under (so a line sent twice is counted once), and the files
 * rotated away from a path whose failures may still wait for Redis.
 *
 * Those are remembered while the daemon runs (the last TAP_FOLLOW_ROTATED
 * per path), named in the statefile while any of their failures is
 * queued, and looked for at the next start by inode in the path's
 * directory: logrotate renames next to the file.  Bookkeeping and file
 * lookups only; tap_follow.c reads what is found.
 */
#ifndef TAP_FILEID_H
#define TAP_FILEID_H

#include <stdint.h>
#include <sys/stat.h>
#include "tap_follow.h"

#define TAP_FOLLOW_ROTATED 4

/*
 * Hash identifying a file's content: FNV-1a over its first line, newline
 * included, or over its first 4096 bytes when the line is longer.  Returns
 * 0 and *hash, or -1 when the first line is not complete yet.
 */
int tap_fileid_first_hash(int fd, uint64_t *hash);

/*
 * The identity of a file: its device, inode, first line (when it has one)
 * and epoch (truncations seen), mixed so that identities differ in all
 * bits.  Epoch 0 adds nothing: files never truncated keep the identities
 * earlier versions gave.  Never 0.
 */
uint64_t tap_fileid_identity(uint64_t dev, uint64_t ino, uint64_t hash, int has_hash,
                             uint32_t epoch);

/*
 * Where a file just opened at a path starts, and its epoch (*how says
 * which, for the log).  saved: the position the statefile held for the
 * path, if this is the first file opened there; it is resumed when the
 * file is the same one (inode, first line) at least that long, else the
 * file was replaced while the daemon was stopped and is read from 0 (an
 * emptied one, same inode, gets the next epoch: its lines are new ones
 * even where they repeat the old first line).  Without it, from_end: a
 * file never seen is read from its end; otherwise from 0.
 */
int64_t tap_fileid_start(int fd, const struct stat *st, const tap_follow_pos_t *saved,
                         int from_end, uint32_t *epoch, const char **how);

/* The files rotated away from one path.  Zeroed is empty. */
typedef struct tap_rotated {
    tap_follow_pos_t id[TAP_FOLLOW_ROTATED]; /* oldest first; off unused */
    uint32_t gen[TAP_FOLLOW_ROTATED];        /* their generations */
    unsigned n;
    /* to read at start: ROTATED from the statefile, + the saved position */
    tap_follow_pos_t resume[TAP_FOLLOW_ROTATED + 1];
    int queued[TAP_FOLLOW_ROTATED + 1]; /* 1: held failures not stored */
    unsigned nresume, next;
    int successor; /* the path's file came after those: read it all */
} tap_rotated_t;

/* Remember generation gen, rotated away, under identity id (the oldest is
 * dropped when full); forget it once none of its failures waits. */
void tap_rotated_remember(tap_rotated_t *r, const tap_follow_pos_t *id, uint32_t gen);
void tap_rotated_forget(tap_rotated_t *r, uint32_t gen);
/* Up to max of them, oldest first; returns how many. */
unsigned tap_rotated_list(const tap_rotated_t *r, tap_follow_pos_t *pos, uint32_t *gen,
                          unsigned max);

/*
 * Before the first read: a file to finish at start, from pos->off
 * (queued: a statefile's "r2" line, whose failures were not all stored;
 * else the position the statefile held for a path that now names another
 * file).  0, or -1 when TAP_FOLLOW_ROTATED are already waiting.
 */
int tap_rotated_add(tap_rotated_t *r, const tap_follow_pos_t *pos, int queued);
/*
 * The next of them found in dir (by inode and first line, at least
 * pos->off long, never the file named base), opened and positioned at
 * pos->off: its descriptor, *pos and *st.  Those not found are skipped,
 * with MG0618 when they held failures.  -1 when none is left.
 */
int tap_rotated_next(tap_rotated_t *r, const char *path, const char *dir, const char *base,
                     tap_follow_pos_t *pos, struct stat *st);

#endif
