/*
 * Where `dbmail_tap run` resumes after a restart: the statefile's
 * bookkeeping on top of its format (tap_state.h).
 *
 * For each followed file the position saved is the end of the last line
 * read, pulled back to the line of the oldest failure of that file still
 * queued for Redis (tap_queue_first_offset).  So a restart after a stop
 * with Redis away (or a crash) reads those lines again and queues their
 * failures again: a failure not stored is never lost, and one stored is
 * never read twice, because everything before the oldest unstored one was
 * stored (the writer stores and pops the queue in order).  A position is
 * for one generation of the file: failures of a rotated-away generation
 * do not pull the new file's position back: they are saved apart, naming
 * the rotated file by its inode (tap_follow_add_rotated finds it again).
 *
 * Saving is cheap to ask for: nothing is written unless a position or the
 * queue moved since the last save.
 */
#ifndef TAP_RESUME_H
#define TAP_RESUME_H

#include <stddef.h>
#include <stdint.h>
#include "tap_follow.h"
#include "tap_queue.h"
#include "tap_state.h"

typedef struct tap_resume {
    const char *statefile;  /* borrowed */
    uint64_t saved_changes; /* tap_follow_changes() at the last save */
    size_t saved_qlen;      /* queue length then */
    int err_logged;         /* MG0630 said; MG0631 when it works again */
} tap_resume_t;

void tap_resume_init(tap_resume_t *rs, const char *statefile);

/* Read the statefile into *state (empty when it is missing or unreadable:
 * every file then starts at its end; logged). */
void tap_resume_load(const tap_resume_t *rs, tap_state_t *state);

/* Write the positions when something moved (always with force).  Errors
 * are logged once until a save works again; reading goes on either way. */
void tap_resume_save(tap_resume_t *rs, tap_follow_t *fol, tap_queue_t *q, int force);

#endif
