/*
 * The follower; see mg_follow.h for what it guarantees and why.
 *
 * The correctness of a snapshot rests on three facts:
 *   1. its position jumps to the end of the log before the first page is
 *      read, so every change made before the scan is already in Redis's
 *      set and every change made after it comes through the log;
 *   2. ZSCAN returns every member present for the whole scan at least
 *      once (a member that comes or goes meanwhile has a change in the log,
 *      applied after the page that may or may not have seen it);
 *   3. pages and changes reach the consumer in the order they were read,
 *      and each change carries the member's resulting state (the expiry the
 *      set holds afterwards), so the last thing handed over for a member is
 *      the newest.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mg_follow.h"
#include "mg_rules.h"

/* Changes taken per XREAD; pruned members per prune call, calls per check. */
#define MG_FOLLOW_READ_COUNT  1000
#define MG_FOLLOW_PRUNE       1000
#define MG_FOLLOW_PRUNE_CALLS 8
/* Longest back-off between snapshots the consumer keeps failing. */
#define MG_FOLLOW_BACKOFF_MAX_MS 60000

struct mg_follow {
    mg_follow_cfg_t cfg;
    mg_follow_ops_t ops;
    void *baton;
    mg_store_t *st;
    /* position: the consumer's copy is in step with the log up to here */
    char last_id[MG_STORE_IDLEN];
    uint64_t last_seq;
    int have_pos;
    /* connection */
    int up;
    int64_t retry_at;   /* monotonic ms */
    int64_t next_check; /* monotonic ms */
    /* snapshot in progress */
    int snapping;
    mg_follow_why_t why;
    uint64_t cursor;
    uint64_t snap_bans;
    uint64_t snap_unusable; /* members of this snapshot not handed on */
    int64_t snap_t0;
    int pending_snap; /* a snapshot is due (set while reading changes) */
    mg_follow_why_t pending_why;
    int64_t snap_not_before; /* monotonic ms: back-off after the consumer failed */
    int stop_batch;          /* a snapshot became due during this read */
    unsigned snap_failures;  /* consecutive snapshots the consumer gave up */
    mg_ban_t *page;          /* scratch for one page */
    size_t npage, cappage;
    int refused_noted;
    int card_seen; /* P card existed at a check: its loss is data loss */
    mg_follow_stats_t stats;
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note(mg_follow_t *f, mg_follow_note_t what, const char *detail)
{
    if (f->ops.note != NULL)
        f->ops.note(f->baton, what, detail);
}

void mg_follow_cfg_defaults(mg_follow_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->block_ms = 500;
    cfg->check_ms = 2500;
    cfg->retry_ms = 1000;
    /* about 0.7 ms of Redis time per ZSCAN page at a million members:
     * far from the 10 ms that would show in a slow log */
    cfg->page = 500;
    cfg->min_plen4 = MG_FLOOR4_DEFAULT;
    cfg->min_plen6 = MG_FLOOR6_DEFAULT;
    cfg->store.connect_timeout_ms = 500;
    cfg->store.command_timeout_ms = 2000;
}

mg_follow_t *mg_follow_new(const mg_follow_cfg_t *cfg, const mg_follow_ops_t *ops, void *baton)
{
    mg_follow_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->cfg = *cfg;
    if (f->cfg.block_ms <= 0)
        f->cfg.block_ms = 500;
    if (f->cfg.check_ms <= 0)
        f->cfg.check_ms = 2500;
    if (f->cfg.retry_ms <= 0)
        f->cfg.retry_ms = 1000;
    if (f->cfg.page == 0)
        f->cfg.page = 500;
    /* an XREAD must never outlive the command timeout */
    if (f->cfg.store.command_timeout_ms <= f->cfg.block_ms)
        f->cfg.store.command_timeout_ms = f->cfg.block_ms + 1000;
    f->ops = *ops;
    f->baton = baton;
    f->st = mg_store_new(&f->cfg.store);
    if (f->st == NULL) {
        free(f);
        return NULL;
    }
    strcpy(f->last_id, "0-0");
    return f;
}

void mg_follow_free(mg_follow_t *f)
{
    if (f == NULL)
        return;
    if (f->snapping && f->ops.replace_abort != NULL)
        f->ops.replace_abort(f->baton);
    mg_store_free(f->st);
    free(f->page);
    free(f);
}

void mg_follow_resume(mg_follow_t *f, const char *last_id, uint64_t last_seq)
{
    size_t n = last_id != NULL ? strlen(last_id) : 0;

    if (n == 0 || n >= MG_STORE_IDLEN)
        return;
    memcpy(f->last_id, last_id, n + 1);
    f->last_seq = last_seq;
    f->have_pos = 1;
}

int mg_follow_position(const mg_follow_t *f, char id[MG_STORE_IDLEN], uint64_t *seq)
{
    if (!f->have_pos || f->snapping || f->pending_snap)
        return 0;
    memcpy(id, f->last_id, MG_STORE_IDLEN);
    *seq = f->last_seq;
    return 1;
}

const mg_follow_stats_t *mg_follow_stats(const mg_follow_t *f)
{
    return &f->stats;
}

int mg_follow_key_ok(const mg_follow_t *f, const mg_addr_t *key)
{
    unsigned fplen = mg_addr_family_plen(key);

    return fplen >= (mg_addr_is_v4(key) ? f->cfg.min_plen4 : f->cfg.min_plen6);
}

/* Stream ids "ms-seq" in numeric order: -1, 0, 1. */
static int id_cmp(const char *x, const char *y)
{
    unsigned long long xm = 0, xs = 0, ym = 0, ys = 0;

    sscanf(x, "%llu-%llu", &xm, &xs);
    sscanf(y, "%llu-%llu", &ym, &ys);
    if (xm != ym)
        return xm < ym ? -1 : 1;
    return xs < ys ? -1 : xs > ys;
}

static const char *why_text(mg_follow_why_t why)
{
    switch (why) {
    case MG_SNAP_START:
        return "start";
    case MG_SNAP_GAP:
        return "changes were missed (the log no longer holds them)";
    case MG_SNAP_RESYNC:
        return "the set was edited by hand or a resync was asked for";
    case MG_SNAP_LOST:
        return "Redis lost data: known bans are kept and written back";
    case MG_SNAP_REBUILD:
        return "the copy may be wrong (an update failed)";
    }
    return "?";
}

static void went_down(mg_follow_t *f)
{
    f->stats.errors++;
    if (f->snapping) {
        f->snapping = 0;
        f->ops.replace_abort(f->baton);
        /* the snapshot starts over once Redis is back */
        f->pending_snap = 1;
        f->pending_why = f->why;
    }
    if (f->up) {
        f->up = 0;
        f->stats.up = 0;
        note(f, MG_NOTE_DOWN, mg_store_error(f->st));
    }
    f->stats.in_step = 0;
    f->retry_at = mono_ms() + f->cfg.retry_ms;
}

/* A snapshot is due: started at the next step, after the current batch. */
static void want_snapshot(mg_follow_t *f, mg_follow_why_t why)
{
    /* data loss outranks the others: it decides what the consumer keeps */
    if (!f->pending_snap || why == MG_SNAP_LOST)
        f->pending_why = why;
    f->pending_snap = 1;
    f->stop_batch = 1;
}

static void refused(mg_follow_t *f, const mg_addr_t *key, const char *what)
{
    char txt[MG_ADDR_STRLEN], msg[MG_ADDR_STRLEN + 64];

    f->stats.refused++;
    if (strcmp(what, "ban") == 0)
        f->stats.unusable++;
    else if (strcmp(what, "unban") == 0 && f->stats.unusable > 0)
        f->stats.unusable--;
    else if (strcmp(what, "member") == 0)
        f->snap_unusable++;
    if (f->refused_noted)
        return;
    f->refused_noted = 1;
    mg_addr_format(key, txt, sizeof(txt));
    snprintf(msg, sizeof(msg), "%s %s (wider than the accepted prefix)", what, txt);
    note(f, MG_NOTE_REFUSED, msg);
}

/* Changes read from the log, in order. */
static int take_change(void *baton, const mg_store_change_t *ch)
{
    mg_follow_t *f = baton;

    if (ch->seq == 0) {
        /* no number: not written by our scripts, never applied */
        f->stats.refused++;
    }
    else {
        /* A number other than the next: the stream was trimmed past us,
         * or it restarted (a lower number: Redis lost its data).  The
         * change itself is still a real one and is applied; the snapshot
         * fixes what was missed. */
        if (ch->seq != f->last_seq + 1)
            want_snapshot(f, ch->seq <= f->last_seq ? MG_SNAP_LOST : MG_SNAP_GAP);
        if (ch->kind == MG_CHANGE_RESYNC) {
            want_snapshot(f, MG_SNAP_RESYNC);
        }
        else if (ch->kind == MG_CHANGE_BAN || ch->kind == MG_CHANGE_UNBAN) {
            if (!mg_follow_key_ok(f, &ch->ev.key)) {
                refused(f, &ch->ev.key, ch->kind == MG_CHANGE_BAN ? "ban" : "unban");
            }
            else {
                f->ops.apply(f->baton, &ch->ev);
                f->stats.applied++;
            }
        }
        else {
            f->stats.refused++;
        }
        f->last_seq = ch->seq;
        f->stats.seq = ch->seq;
    }
    memcpy(f->last_id, ch->id, MG_STORE_IDLEN);
    /* stop the batch once a snapshot became due: it jumps to the end */
    return f->stop_batch;
}

/* The next snapshot the consumer asked for or gave up, not at once:
 * 1 s after the first failure, doubling up to a minute while they keep
 * failing (reading a large set costs Redis a second of work each time). */
static void snapshot_later(mg_follow_t *f, mg_follow_why_t why)
{
    int64_t delay = 1000;

    for (unsigned i = 0; i < f->snap_failures && delay < MG_FOLLOW_BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > MG_FOLLOW_BACKOFF_MAX_MS)
        delay = MG_FOLLOW_BACKOFF_MAX_MS;
    f->snap_not_before = mono_ms() + delay;
    want_snapshot(f, why);
}

static void consumer_failed(mg_follow_t *f, mg_follow_why_t why)
{
    snapshot_later(f, why);
    f->snap_failures++;
}

void mg_follow_rebuild(mg_follow_t *f)
{
    /* one due is enough: asking again must not push it further away */
    if (!f->pending_snap && !f->snapping)
        snapshot_later(f, MG_SNAP_REBUILD);
}

/* Read what the log holds after the position; block_ms 0: do not wait. */
static int read_log(mg_follow_t *f, int block_ms)
{
    unsigned n = 0;

    f->stop_batch = 0;
    if (mg_store_log_read(f->st, f->last_id, block_ms, MG_FOLLOW_READ_COUNT, take_change, f, &n)
        != 0)
        return -1;
    return 0;
}

/* Begin a snapshot: the position jumps to the end of the log. */
static int begin_snapshot(mg_follow_t *f, mg_follow_why_t why)
{
    mg_store_logstate_t ls;

    if (f->snapping) {
        f->snapping = 0;
        f->ops.replace_abort(f->baton);
    }
    f->pending_snap = 0;
    if (mg_store_check(f->st, (int64_t)time(NULL), &ls) != 0)
        return -1;
    memcpy(f->last_id, ls.last_id, MG_STORE_IDLEN);
    f->last_seq = ls.last_seq;
    f->stats.seq = ls.last_seq;
    f->stats.live = ls.live;
    f->stats.live_seq = ls.last_seq;
    if (f->ops.replace_begin(f->baton, why) != 0) {
        consumer_failed(f, why);
        return 0;
    }
    f->snapping = 1;
    f->why = why;
    f->cursor = 0;
    f->snap_bans = 0;
    f->snap_unusable = 0;
    f->snap_t0 = mono_ms();
    f->have_pos = 1;
    f->stats.in_step = 0;
    f->refused_noted = 0;
    note(f, MG_NOTE_SNAP_BEGIN, why_text(why));
    return 0;
}

static int page_add(void *baton, const mg_addr_t *key, int64_t expiry)
{
    mg_follow_t *f = baton;

    if (!mg_follow_key_ok(f, key)) {
        refused(f, key, "member");
        return 0;
    }
    if (f->npage == f->cappage) {
        size_t ncap = f->cappage ? f->cappage * 2 : 1024;
        mg_ban_t *np = realloc(f->page, ncap * sizeof(*np));
        if (np == NULL)
            return -1;
        f->page = np;
        f->cappage = ncap;
    }
    f->page[f->npage].key = *key;
    f->page[f->npage].expiry = expiry;
    f->npage++;
    return 0;
}

/* One page of the snapshot, then the changes made meanwhile. */
static int snapshot_step(mg_follow_t *f)
{
    unsigned skipped = 0;
    char done[64];

    f->npage = 0;
    if (mg_store_scan(f->st, &f->cursor, f->cfg.page, (int64_t)time(NULL), page_add, f,
                      &skipped)
        != 0)
        return -1;
    f->stats.skipped += skipped;
    f->snap_unusable += skipped;
    if (f->npage > 0 && f->ops.replace_add(f->baton, f->page, f->npage) != 0) {
        f->snapping = 0;
        f->ops.replace_abort(f->baton);
        consumer_failed(f, f->why);
        return 0;
    }
    f->snap_bans += f->npage;
    if (read_log(f, 0) != 0)
        return -1;
    if (f->pending_snap)
        return 0; /* started over at the next step */
    if (f->cursor != 0)
        return 0;
    f->snapping = 0;
    if (f->ops.replace_commit(f->baton) != 0) {
        consumer_failed(f, f->why);
        return 0;
    }
    f->snap_failures = 0;
    f->stats.unusable = f->snap_unusable;
    f->stats.snapshots++;
    f->stats.last_snapshot_bans = f->snap_bans;
    f->stats.last_snapshot_ms = mono_ms() - f->snap_t0;
    f->stats.in_step = 1;
    snprintf(done, sizeof(done), "%llu bans in %lld ms", (unsigned long long)f->snap_bans,
             (long long)f->stats.last_snapshot_ms);
    note(f, MG_NOTE_SNAP_DONE, done);
    return 0;
}

/*
 * Where the log stands: hand edits are announced, data loss and a stream
 * that moved on past us start a snapshot, ended bans are pruned.
 */
static int check(mg_follow_t *f)
{
    mg_store_logstate_t ls;
    int64_t now = (int64_t)time(NULL);

    if (mg_store_check(f->st, now, &ls) != 0)
        return -1;
    f->stats.live = ls.live;
    f->stats.live_seq = ls.last_seq;
    f->stats.last_check = now;
    if (!f->have_pos) {
        want_snapshot(f, MG_SNAP_START);
    }
    else if (ls.logseq < f->last_seq
             || (ls.last_seq > f->last_seq && id_cmp(ls.last_id, f->last_id) <= 0)
             || (f->card_seen && ls.card < 0)) {
        /* Fewer changes than we applied, newer ones filed before ours, or
         * the count gone that every check since the first has seen (a
         * store that never logged a change has nothing else to lose): this
         * is not the store we followed. */
        want_snapshot(f, MG_SNAP_LOST);
    }
    /* Otherwise the next XREAD tells whether the log still holds the
     * change after ours: its number must be ours + 1. */
    f->card_seen = 1; /* it exists from here on: set below if missing */
    if (ls.card != (int64_t)ls.zcard) {
        int announced = 0;
        if (mg_store_resync(f->st, 0, &announced) != 0)
            return -1;
        /* no count at all: a store written by an older version, not a
         * hand edit (the followers read it once all the same) */
        if (announced && ls.card >= 0)
            note(f, MG_NOTE_HAND_EDIT, NULL);
    }
    for (int i = 0; i < MG_FOLLOW_PRUNE_CALLS && ls.zcard > ls.live; i++) {
        unsigned removed = 0;
        if (mg_store_prune(f->st, now, MG_FOLLOW_PRUNE, &removed) != 0)
            return -1;
        if (removed < MG_FOLLOW_PRUNE)
            break;
    }
    f->next_check = mono_ms() + f->cfg.check_ms;
    return 0;
}

static void nap(int ms)
{
    if (ms > 0)
        poll(NULL, 0, ms);
}

int mg_follow_step(mg_follow_t *f, int wait_ms)
{
    int64_t now = mono_ms();
    int first = 0;

    if (wait_ms > f->cfg.block_ms)
        wait_ms = f->cfg.block_ms;
    if (!f->up) {
        if (now < f->retry_at) {
            int64_t left = f->retry_at - now;
            nap((int)(left < wait_ms ? left : wait_ms));
            return -1;
        }
        first = 1;
    }
    if (first || now >= f->next_check) {
        if (check(f) != 0)
            goto down;
        if (first) {
            f->up = 1;
            f->stats.up = 1;
            f->stats.in_step = f->have_pos && !f->pending_snap;
            note(f, MG_NOTE_UP, NULL);
        }
    }
    if (f->pending_snap && now >= f->snap_not_before) {
        if (begin_snapshot(f, f->pending_why) != 0)
            goto down;
        return 0;
    }
    if (f->snapping) {
        if (snapshot_step(f) != 0)
            goto down;
        return 0;
    }
    /* wait for changes, but not past the next check */
    now = mono_ms();
    if (f->next_check - now < wait_ms)
        wait_ms = f->next_check - now > 0 ? (int)(f->next_check - now) : 0;
    if (read_log(f, wait_ms) != 0)
        goto down;
    return 0;
down:
    /* A connection that broke may only mean Redis restarted (or closed an
     * idle client): one immediate try tells, and if it fails, its error is
     * the real reason (WRONGPASS after a password change, refused...),
     * not "connection closed". */
    if (f->up && mg_store_error_kind(f->st) == MG_STORE_EDOWN && mg_store_ping(f->st) == 0) {
        f->stats.errors++;
        return 0;
    }
    went_down(f);
    return -1;
}
