/*
 * The statefile: where each followed log was left, so that a restart
 * reads what was written meanwhile and nothing twice.  One text line per
 * path ("v1 INODE OFFSET HASH PATH", HASH in hex or "-"; "v2 INODE OFFSET
 * HASH EPOCH PATH" once the file was truncated, see tap_follow_pos_t), and
 * one "r2 INODE OFFSET HASH EPOCH PATH" per file rotated away from PATH
 * whose failures were not all stored in Redis yet, so that a restart
 * finds it (by its inode, next to PATH) and reads them again; replaced
 * atomically (temporary file, fsync, rename) so a crash leaves either the
 * old or the new state, never half of one.  The temporary file,
 * "FILE.tmp.PID", is always a new file (O_EXCL | O_NOFOLLOW): a symlink
 * planted there is never followed; a leftover of a crash is replaced, and
 * loading removes those of processes that are gone.
 */
#ifndef TAP_STATE_H
#define TAP_STATE_H

#include <stddef.h>
#include "tap_follow.h"

typedef struct tap_state_entry {
    char *path;
    tap_follow_pos_t pos;
    int rotated; /* 1: a file rotated away from path (an "r2" line) */
} tap_state_entry_t;

typedef struct tap_state {
    tap_state_entry_t *v;
    size_t n;
} tap_state_t;

/*
 * Load file into st (empty when the file does not exist), after removing
 * stale temporary files next to it.  Lines that do
 * not parse are skipped and counted in *bad.  -1 with err on an I/O error
 * other than a missing file.
 */
int tap_state_load(const char *file, tap_state_t *st, unsigned *bad, char *err, size_t errlen);
/* The position of the file at path now (not of one rotated away). */
const tap_follow_pos_t *tap_state_find(const tap_state_t *st, const char *path);
void tap_state_free(tap_state_t *st);

/* Write n entries atomically; -1 with err (the old file stays). */
int tap_state_save(const char *file, const tap_state_entry_t *v, size_t n, char *err,
                   size_t errlen);

#endif
