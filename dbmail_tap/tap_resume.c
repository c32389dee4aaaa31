/*
 * The statefile's bookkeeping; see tap_resume.h.
 */
#include "tap_resume.h"

#include <stdlib.h>

#include "tap_fileid.h"
#include "tap_log.h"

void tap_resume_init(tap_resume_t *rs, const char *statefile)
{
    rs->statefile = statefile;
    rs->saved_changes = 0;
    rs->saved_qlen = 0;
    rs->err_logged = 0;
}

void tap_resume_load(const tap_resume_t *rs, tap_state_t *state)
{
    char err[512];
    unsigned bad = 0;

    if (tap_state_load(rs->statefile, state, &bad, err, sizeof(err)) != 0) {
        tap_warn("MG0632: cannot read the statefile (%s): files start at their end", err);
    }
    else if (bad > 0) {
        tap_warn("MG0633: %s: %u unreadable lines ignored", rs->statefile, bad);
    }
}

/* The position of each open file, pulled back to its oldest failure still
 * queued (same generation only); and for each file rotated away whose
 * failures are still queued, where the oldest of them is.  Returns the
 * number of entries (v holds ENTRIES_PER_FILE per file). */
#define ENTRIES_PER_FILE (1 + TAP_FOLLOW_ROTATED)
static size_t positions(tap_follow_t *fol, tap_queue_t *q, tap_state_entry_t *v)
{
    unsigned n = tap_follow_count(fol);
    size_t k = 0;

    for (unsigned i = 0; i < n; i++) {
        tap_follow_pos_t rot[TAP_FOLLOW_ROTATED];
        uint32_t gen, rgen[TAP_FOLLOW_ROTATED];
        unsigned nrot =
            tap_rotated_list(tap_follow_rotations(fol, i), rot, rgen, TAP_FOLLOW_ROTATED);
        int64_t off;

        /* a rotated file with failures waiting: without its line, a stop
         * now would lose them (the path names another file already) */
        for (unsigned r = 0; r < nrot; r++) {
            if (tap_queue_first_offset(q, (uint16_t)i, rgen[r], &off)) {
                v[k].pos = rot[r];
                v[k].pos.off = off;
                v[k].rotated = 1;
                v[k].path = (char *)tap_follow_path(fol, i);
                k++;
            }
            else {
                /* all stored: no need to look for it (nor through the
                 * queue for it) again */
                tap_follow_forget_rotated(fol, i, rgen[r]);
            }
        }
        if (!tap_follow_position(fol, i, &v[k].pos, &gen)) {
            continue; /* not open: the next start finds it as new */
        }
        if (tap_queue_first_offset(q, (uint16_t)i, gen, &off) && off < v[k].pos.off) {
            v[k].pos.off = off;
        }
        v[k].rotated = 0;
        v[k].path = (char *)tap_follow_path(fol, i);
        k++;
    }
    return k;
}

void tap_resume_save(tap_resume_t *rs, tap_follow_t *fol, tap_queue_t *q, int force)
{
    unsigned n = tap_follow_count(fol);
    tap_state_entry_t *v;
    size_t k, qlen = tap_queue_len(q);
    uint64_t changes = tap_follow_changes(fol);
    char err[512];

    if (!force && changes == rs->saved_changes && qlen == rs->saved_qlen) {
        return;
    }
    v = calloc(n ? (size_t)n * ENTRIES_PER_FILE : 1, sizeof(*v));
    if (v == NULL) {
        return;
    }
    k = positions(fol, q, v);
    if (tap_state_save(rs->statefile, v, k, err, sizeof(err)) != 0) {
        if (!rs->err_logged) {
            tap_error("MG0630: cannot write the statefile: %s", err);
            rs->err_logged = 1;
        }
    }
    else {
        if (rs->err_logged) {
            tap_notice("MG0631: statefile %s written again", rs->statefile);
        }
        rs->err_logged = 0;
        rs->saved_changes = changes;
        rs->saved_qlen = qlen;
    }
    free(v);
}
