/*
 * The reader; see tap_reader.h.
 *
 * One block of new lines of one file goes through every jail that reads
 * the file; the failures the jails find are collected, put back in file
 * order and queued together, and the writer is woken once per block, not
 * once per failure.
 */
#include "tap_reader.h"

#include <stdlib.h>
#include <string.h>

#include "tap_clock.h"
#include "tap_fileid.h"
#include "tap_log.h"
#include "tap_match.h"
#include "tap_scan.h"

/* The jails reading one file, each with its own stream: a DBMail message
 * left open at the end of one block goes on at the start of the next
 * block of the same file only (never of another file, nor of the file's
 * next generation after a rotation). */
typedef struct file_jails {
    uint8_t *jails;
    tap_stream_t *streams;
    size_t n;
    uint32_t gen;
} file_jails_t;

/* The block being scanned: where the matched lines come from. */
typedef struct block {
    unsigned file;
    uint32_t gen;
    const char *buf;
    int64_t base; /* file offset of buf[0] */
    int64_t now;  /* wall ms: every failure of the block gets it */
    uint64_t fid; /* tap_follow_identity() of the file read */
    uint8_t jail; /* the jail scanning it now */
} block_t;

/* One jail's counts.  Kept by the scanners and on_match() as plain
 * additions in this thread (the scanners add a block's count of lines at
 * once): the hot loop pays no atomic operation.  Others see them through
 * tap_reader_jail_counts(), called in this thread too. */
typedef struct jail_stats {
    tap_scan_stats_t scan; /* lines, failures, ignored */
    uint64_t ignoreip;     /* failures whose address is in ignoreip */
} jail_stats_t;

struct tap_reader {
    const tap_jail_t *const *jails; /* index = tap_failure_t.jail */
    size_t njails;
    jail_stats_t *jst;   /* per jail */
    file_jails_t *files; /* index = the follower's file index */
    unsigned nfiles;
    tap_follow_t *fol;
    tap_queue_t *q;
    block_t cur;
    /* the block's failures, before they are sorted and queued */
    tap_failure_t *pend;
    size_t npend, cappend;
    int overflowing; /* MG0623 logged for this backlog */
    uint64_t lines, failures;
};

/* ---- one block ---- */

static int on_match(void *baton, tap_outcome_t outcome, const mg_addr_t *addr, const char *line,
                    size_t len)
{
    tap_reader_t *r = baton;
    const tap_jail_t *j = r->jails[r->cur.jail];
    tap_failure_t *f;

    (void)len;
    if (outcome != TAP_FAILURE || addr == NULL) {
        return 0;
    }
    if (mg_cidrset_contains(j->ignoreip, addr)) {
        r->jst[r->cur.jail].ignoreip++;
        return 0;
    }
    if (r->npend == r->cappend) {
        size_t ncap = r->cappend ? r->cappend * 2 : 64;
        tap_failure_t *np = realloc(r->pend, ncap * sizeof(*np));
        if (np == NULL) {
            tap_error("MG0603: out of memory: a failure was not counted");
            return 0;
        }
        r->pend = np;
        r->cappend = ncap;
    }
    f = &r->pend[r->npend++];
    memset(f, 0, sizeof(*f));
    mg_addr_ban_key(addr, j->ipv6prefix, &f->key);
    f->jail = r->cur.jail;
    f->file = (uint16_t)r->cur.file;
    f->gen = r->cur.gen;
    f->time_ms = r->cur.now;
    f->fid = r->cur.fid;
    /* the offset of the line's first byte is what the statefile points
     * at while the failure is not stored: a restart reads it again */
    f->off = line != NULL ? r->cur.base + (int64_t)(line - r->cur.buf) : r->cur.base;
    return 0;
}

static int off_cmp(const void *a, const void *b)
{
    const tap_failure_t *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Queue the block's failures in file order and wake the writer once. */
static void queue_pending(tap_reader_t *r, size_t jails_on_file)
{
    /* Queue order must follow file order: the statefile points at the
     * oldest unstored failure and everything after it is read again.  The
     * jails of one file each found theirs in order; merge them. */
    if (jails_on_file > 1) {
        qsort(r->pend, r->npend, sizeof(*r->pend), off_cmp);
    }
    for (size_t i = 0; i < r->npend; i++) {
        if (tap_queue_push(r->q, &r->pend[i]) != 0 && !r->overflowing) {
            tap_error("MG0623: failure queue full (%zu): dropping the oldest failures",
                      (size_t)TAP_QUEUE_DEFAULT_CAPACITY);
            r->overflowing = 1;
        }
    }
    r->failures += r->npend;
    tap_queue_kick(r->q);
}

static void on_lines(void *baton, unsigned file, uint32_t gen, const char *buf, size_t len,
                     int64_t base_off)
{
    tap_reader_t *r = baton;
    file_jails_t *fj = &r->files[file];
    uint64_t lines_before = fj->n > 0 ? r->jst[fj->jails[0]].scan.lines : 0;

    r->cur.file = file;
    r->cur.gen = gen;
    r->cur.buf = buf;
    r->cur.base = base_off;
    r->cur.now = tap_wall_ms();
    r->cur.fid = tap_follow_identity(r->fol, file, gen);
    r->npend = 0;
    /* A new generation (rotation, truncation) starts with no open
     * message: a window never runs from one file into its successor. */
    if (gen != fj->gen) {
        memset(fj->streams, 0, fj->n * sizeof(*fj->streams));
        fj->gen = gen;
    }
    /* Each jail's scan counts the block's lines into that jail's counts;
     * the first one's count is also the daemon's line total. */
    for (size_t i = 0; i < fj->n; i++) {
        r->cur.jail = fj->jails[i];
        tap_scan_block_stream(r->jails[fj->jails[i]]->matcher, &fj->streams[i], buf, len, 0,
                              on_match, r, &r->jst[fj->jails[i]].scan);
    }
    if (fj->n > 0) {
        r->lines += r->jst[fj->jails[0]].scan.lines - lines_before;
    }
    if (r->npend > 0) {
        queue_pending(r, fj->n);
    }
}

/* ---- files ---- */

/* The index of path among the followed files, adding it when new; -1 on
 * failure (logged, or out of memory). */
static long file_index(tap_reader_t *r, const char *path, const tap_state_t *state)
{
    unsigned idx, n = tap_follow_count(r->fol);
    file_jails_t *nf;

    for (idx = 0; idx < n; idx++) {
        if (strcmp(tap_follow_path(r->fol, idx), path) == 0) {
            return (long)idx;
        }
    }
    /* tap_failure_t.file is 16 bits */
    if (n >= UINT16_MAX) {
        tap_error("MG0606: too many log files");
        return -1;
    }
    if (tap_follow_add(r->fol, path, tap_state_find(state, path)) < 0) {
        return -1;
    }
    /* files rotated away from path with failures a previous run did not
     * store: read again at start */
    for (size_t i = 0; i < state->n; i++) {
        if (state->v[i].rotated && strcmp(state->v[i].path, path) == 0
            && tap_rotated_add(tap_follow_rotations(r->fol, n), &state->v[i].pos, 1) != 0) {
            tap_warn("MG0627: %s: the statefile names more than %d files rotated away from "
                     "it; the later ones are not read again",
                     path, TAP_FOLLOW_ROTATED);
            break;
        }
    }
    nf = realloc(r->files, (n + 1) * sizeof(*nf));
    if (nf == NULL) {
        return -1;
    }
    r->files = nf;
    memset(&r->files[n], 0, sizeof(r->files[n]));
    r->nfiles = n + 1;
    return (long)n;
}

/* Let jail j scan file fj (once, however often it lists the path). */
static int attach_jail(file_jails_t *fj, size_t j)
{
    uint8_t *nj;
    tap_stream_t *ns;

    for (size_t k = 0; k < fj->n; k++) {
        if (fj->jails[k] == j) {
            return 0;
        }
    }
    nj = realloc(fj->jails, fj->n + 1);
    if (nj == NULL) {
        return -1;
    }
    fj->jails = nj;
    ns = realloc(fj->streams, (fj->n + 1) * sizeof(*ns));
    if (ns == NULL) {
        return -1;
    }
    fj->streams = ns;
    memset(&fj->streams[fj->n], 0, sizeof(*ns));
    fj->jails[fj->n++] = (uint8_t)j;
    return 0;
}

int tap_reader_add_files(tap_reader_t *r, const tap_state_t *state)
{
    for (size_t j = 0; j < r->njails; j++) {
        const tap_jail_t *jl = r->jails[j];
        for (size_t p = 0; p < jl->nlogpaths; p++) {
            long idx = file_index(r, jl->logpaths[p], state);
            if (idx < 0 || attach_jail(&r->files[idx], j) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* ---- life cycle ---- */

tap_reader_t *tap_reader_new(const tap_jail_t *const *jails, size_t njails, tap_queue_t *q,
                             int use_inotify)
{
    tap_reader_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->jails = jails;
    r->njails = njails;
    r->q = q;
    r->jst = calloc(njails ? njails : 1, sizeof(*r->jst));
    r->fol = tap_follow_new(on_lines, r, use_inotify);
    if (r->jst == NULL || r->fol == NULL) {
        tap_follow_free(r->fol);
        free(r->jst);
        free(r);
        return NULL;
    }
    return r;
}

void tap_reader_free(tap_reader_t *r)
{
    if (r == NULL) {
        return;
    }
    tap_follow_free(r->fol);
    for (unsigned i = 0; i < r->nfiles; i++) {
        free(r->files[i].jails);
        free(r->files[i].streams);
    }
    free(r->files);
    free(r->pend);
    free(r->jst);
    free(r);
}

tap_follow_t *tap_reader_follow(tap_reader_t *r)
{
    return r->fol;
}

void tap_reader_backlog_gone(tap_reader_t *r)
{
    r->overflowing = 0;
}

void tap_reader_totals(const tap_reader_t *r, tap_reader_totals_t *out)
{
    out->lines = r->lines;
    out->failures = r->failures;
    out->ignored_ip = 0;
    out->suspicious = 0;
    for (size_t j = 0; j < r->njails; j++) {
        out->ignored_ip += r->jst[j].ignoreip;
        out->suspicious += tap_matcher_suspicious(r->jails[j]->matcher);
    }
}

void tap_reader_jail_counts(const tap_reader_t *r, size_t jail, tap_reader_jail_t *out)
{
    const jail_stats_t *js = &r->jst[jail];
    uint64_t judged;

    out->lines = js->scan.lines;
    out->matched = js->scan.failures;
    out->ignored = js->scan.ignored;
    out->suspicious = tap_matcher_suspicious(r->jails[jail]->matcher);
    out->ignoreip = js->ignoreip;
    /* every line is exactly one of the four outcomes (tap_outcome.h) */
    judged = out->matched + out->ignored + out->suspicious;
    out->missed = out->lines > judged ? out->lines - judged : 0;
}
