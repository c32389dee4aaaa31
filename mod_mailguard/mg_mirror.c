/*
 * The ban mirror as the follower's consumer; see mg_mirror.h.
 *
 * Every write takes the global writer mutex briefly (one change, or one
 * page of a snapshot), never across network I/O, so a request thread that
 * has just made a ban never waits long.  While a snapshot is being built
 * in the spare table, the table itself sends every other write to both
 * tables (mg_bantable_put), so changes applied meanwhile and bans made by
 * requests survive the switch.
 *
 * Never open the door: when Redis lost its data (restarted empty, or a
 * failover lost the last writes), the snapshot keeps every live ban the
 * mirror had that Redis no longer holds, and those are written back, a
 * piece at a time between the follower's steps.  An unban made elsewhere
 * while Redis was losing data is undone by that; the README says so.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_time.h"

#include "mg_shm.h"
#include "mg_redis_pool.h"
#include "mg_config.h"
#include "mg_mirror.h"

APLOG_USE_MODULE(mailguard);

#define MG_RESTORED_JAIL "restored"
/* Bans written back per call of mg_mirror_write_back: one pipelined
 * round trip of ban scripts. */
#define MG_WRITE_BACK 256

struct mg_mirror {
    server_rec *s;
    mg_follow_why_t why; /* of the snapshot in progress */
    mg_ban_t *back;      /* bans to write back (data loss) */
    size_t nback, capback, backat;
    int full_logged; /* the overflow was logged (error, once) */
    uint64_t seen_snapshots;
    int64_t seen_check;
};

static apr_int64_t mg_now(void)
{
    return (apr_int64_t)apr_time_sec(apr_time_now());
}

mg_mirror_t *mg_mirror_new(server_rec *s)
{
    mg_mirror_t *m = calloc(1, sizeof(*m));

    if (m != NULL) {
        m->s = s;
    }
    return m;
}

void mg_mirror_free(mg_mirror_t *m)
{
    if (m != NULL) {
        free(m->back);
        free(m);
    }
}

/* ---- the follower's callbacks ---- */

static void mg_mirror_apply(void *baton, const mg_store_event_t *ev)
{
    mg_mirror_t *m = baton;
    char addr[MG_ADDR_STRLEN];

    if (ev->is_ban) {
        mg_shm_put_ban(m->s, &ev->key, ev->expiry);
    }
    else {
        mg_shm_del_ban(m->s, &ev->key);
    }
    mg_stat_inc(&mg_shm_stats()->events);
    if (APLOGdebug(m->s)) {
        mg_addr_format(&ev->key, addr, sizeof(addr));
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, m->s, "MG0065: %s %s applied",
                     ev->is_ban ? "ban" : "unban", addr);
    }
}

static int mg_mirror_begin(void *baton, mg_follow_why_t why)
{
    mg_mirror_t *m = baton;

    if (mg_shm_lock(m->s) != APR_SUCCESS) {
        return -1;
    }
    mg_bantable_rebuild_begin(mg_shm_bantable());
    mg_shm_unlock(m->s);
    m->why = why;
    return 0;
}

static int mg_mirror_add(void *baton, const mg_ban_t *bans, size_t n)
{
    mg_mirror_t *m = baton;
    mg_bantable_t *bt = mg_shm_bantable();
    size_t i;

    if (mg_shm_lock(m->s) != APR_SUCCESS) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        /* A ban the table cannot take is counted by the overflow check
         * (mg_mirror_account), which compares with Redis's own count. */
        (void)mg_bantable_rebuild_add(bt, &bans[i].key, bans[i].expiry);
    }
    mg_shm_unlock(m->s);
    return 0;
}

typedef struct mg_keep {
    mg_mirror_t *m;
    mg_bantable_t *bt;
    apr_int64_t now;
    int oom;
    unsigned resent;
} mg_keep_t;

/* After data loss: a failure counted recently, still inside its window,
 * goes to Redis again (a duplicate wherever Redis still has it), so the
 * windows Redis lost count on exactly. */
static int mg_mirror_resend(void *baton, const mg_pending_failure_t *f)
{
    mg_keep_t *k = baton;

    if (f->time_ms > (int64_t)k->now * 1000 - f->policy.findtime * 1000) {
        mg_fqueue_push(mg_shm_fqueue(), f);
        k->resent++;
    }
    return 0;
}

/* Bans still waiting for Redis are not in the set just read: keep them. */
static int mg_mirror_keep_pending(void *baton, const mg_pending_ban_t *ban)
{
    mg_keep_t *k = baton;

    if (ban->expiry > k->now) {
        (void)mg_bantable_rebuild_add(k->bt, &ban->key, ban->expiry);
    }
    return 0;
}

/* After data loss: a live ban of the mirror that the snapshot lacks is
 * kept, and queued to be written back. */
static int mg_mirror_keep_lost(void *baton, const mg_addr_t *key, int64_t expiry)
{
    mg_keep_t *k = baton;
    mg_mirror_t *m = k->m;

    if (mg_bantable_rebuild_has(k->bt, key)) {
        return 0;
    }
    if (m->nback == m->capback) {
        size_t cap = m->capback ? m->capback * 2 : 1024;
        mg_ban_t *v = realloc(m->back, cap * sizeof(*v));
        if (v == NULL) {
            k->oom = 1;
            return 0; /* still kept in the mirror, just not written back */
        }
        m->back = v;
        m->capback = cap;
    }
    m->back[m->nback].key = *key;
    m->back[m->nback].expiry = expiry;
    m->nback++;
    (void)mg_bantable_rebuild_add(k->bt, key, expiry);
    return 0;
}

static int mg_mirror_commit(void *baton)
{
    mg_mirror_t *m = baton;
    mg_bantable_t *bt = mg_shm_bantable();
    mg_keep_t k = { m, bt, mg_now(), 0, 0 };
    size_t before = m->nback - m->backat;

    if (mg_shm_lock(m->s) != APR_SUCCESS) {
        return -1;
    }
    mg_localwin_foreach_pending(mg_shm_localwin(), mg_mirror_keep_pending, &k);
    if (m->why == MG_SNAP_LOST) {
        mg_bantable_foreach(bt, k.now, mg_mirror_keep_lost, &k);
        mg_fqueue_foreach(mg_shm_recent(), mg_mirror_resend, &k);
    }
    mg_bantable_rebuild_commit(bt);
    mg_shm_unlock(m->s);
    mg_stat_inc(&mg_shm_stats()->syncs);
    if (m->nback - m->backat > before) {
        /* Info, not notice: the outage itself was already logged once. */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, m->s,
                     "MG0062: Redis lost %lu live ban(s) this server knows: kept, and "
                     "written back",
                     (unsigned long)(m->nback - m->backat - before));
    }
    if (k.resent > 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, m->s,
                     "MG0077: sending %u recent failure(s) to Redis again, so the windows "
                     "it lost count on",
                     k.resent);
    }
    if (k.oom) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, m->s,
                     "MG0070: out of memory: some bans Redis lost stay enforced here but "
                     "are not written back");
    }
    return 0;
}

static void mg_mirror_abort(void *baton)
{
    mg_mirror_t *m = baton;

    if (mg_shm_lock(m->s) == APR_SUCCESS) {
        mg_bantable_rebuild_abort(mg_shm_bantable());
        mg_shm_unlock(m->s);
    }
}

static void mg_mirror_note(void *baton, mg_follow_note_t what, const char *detail)
{
    mg_mirror_t *m = baton;

    switch (what) {
    case MG_NOTE_UP:
        mg_breaker_report(m->s, 1, NULL);
        break;
    case MG_NOTE_DOWN:
        mg_stat_inc(&mg_shm_stats()->sync_errors);
        mg_breaker_report(m->s, 0, detail);
        break;
    case MG_NOTE_SNAP_BEGIN:
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, m->s,
                     "MG0064: reading the whole ban set from Redis: %s", detail);
        break;
    case MG_NOTE_SNAP_DONE:
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, m->s, "MG0066: ban set read: %s", detail);
        break;
    case MG_NOTE_REFUSED:
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, m->s,
                     "MG0069: refused from Redis: %s; only bans of a host or a prefix "
                     "within MailGuardPrefixFloor are applied",
                     detail);
        break;
    case MG_NOTE_HAND_EDIT:
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, m->s,
                     "MG0067: the ban set was changed by hand (bare ZADD/ZREM): every "
                     "server reads it again");
        break;
    }
}

const mg_follow_ops_t mg_mirror_ops = { mg_mirror_apply,  mg_mirror_begin, mg_mirror_add,
                                        mg_mirror_commit, mg_mirror_abort, mg_mirror_note };

/* ---- writing back ---- */

/* Failures taken from the queue per call. */
#define MG_FAILURES_PER_CALL 256

/* What Redis said of one sent failure: a ban is mirrored and logged here
 * (the request that saw the failure has long been answered). */
static void mg_mirror_counted(mg_mirror_t *m, const mg_pending_failure_t *f,
                              const mg_record_result_t *res)
{
    mg_stats_t *stats = mg_shm_stats();
    char addr[MG_ADDR_STRLEN], until[32];

    if (res->duplicate) {
        /* Counted by a call whose answer was lost (it timed out but ran):
         * if that call made the live ban, this is the first word of it
         * here, so it is logged and mirrored now. */
        mg_stat_inc(&stats->fail_duplicate);
        if (!res->banned || res->expiry <= apr_time_sec(apr_time_now())) {
            return;
        }
    }
    else {
        mg_stat_inc(&stats->fail_redis);
        if (mg_shm_lock(m->s) == APR_SUCCESS) {
            mg_fqueue_push(mg_shm_recent(), f);
            mg_shm_unlock(m->s);
        }
        if (!res->banned) {
            return;
        }
    }
    mg_shm_put_ban(m->s, &f->key, res->expiry);
    mg_stat_inc(&stats->bans_made);
    mg_addr_format(&f->key, addr, sizeof(addr));
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, m->s,
                 "MG0050: Ban %s (jail %s, %u failures, until %s)", addr, f->jail, res->count,
                 mg_time_format_utc(res->expiry, until, sizeof(until)));
}

/* Put back what Redis did not confirm (it goes again later; sent twice,
 * it is a duplicate, not a second failure). */
static void mg_mirror_requeue(mg_mirror_t *m, const mg_pending_failure_t *f, size_t n)
{
    if (mg_shm_lock(m->s) != APR_SUCCESS) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (mg_fqueue_push(mg_shm_fqueue(), &f[i])) {
            mg_stat_inc(&mg_shm_stats()->fail_dropped);
        }
    }
    mg_shm_unlock(m->s);
}

/* Send one piece of the queued failures, in runs of one jail and policy. */
static int mg_mirror_send_failures(mg_mirror_t *m, mg_store_t *cmd)
{
    mg_pending_failure_t f[MG_FAILURES_PER_CALL];
    mg_addr_t keys[MG_FAILURES_PER_CALL];
    int64_t times[MG_FAILURES_PER_CALL];
    const char *ids[MG_FAILURES_PER_CALL];
    mg_record_result_t res[MG_FAILURES_PER_CALL];
    int64_t now_ms = (int64_t)apr_time_as_msec(apr_time_now());
    size_t n, i = 0, kept = 0;

    if (mg_shm_lock(m->s) != APR_SUCCESS) {
        return -1;
    }
    n = mg_fqueue_pop(mg_shm_fqueue(), f, MG_FAILURES_PER_CALL);
    mg_shm_unlock(m->s);
    /* a failure older than its window can no longer count anywhere */
    for (i = 0; i < n; i++) {
        if (f[i].time_ms > now_ms - f[i].policy.findtime * 1000) {
            f[kept++] = f[i];
        }
        else {
            mg_stat_inc(&mg_shm_stats()->fail_dropped);
        }
    }
    for (i = 0; i < kept;) {
        size_t j = i, k, done = 0;

        while (j < kept && strcmp(f[j].jail, f[i].jail) == 0
               && memcmp(&f[j].policy, &f[i].policy, sizeof(f[i].policy)) == 0) {
            keys[j - i] = f[j].key;
            times[j - i] = f[j].time_ms;
            ids[j - i] = f[j].id;
            j++;
        }
        k = j - i;
        if (mg_store_record_failures(cmd, f[i].jail, &f[i].policy, k, keys, times, ids, res,
                                     &done)
            != 0) {
            size_t x;
            /* the confirmed ones are done; the rest, and every later run,
             * go back to the queue */
            for (x = 0; x < k; x++) {
                if (res[x].count != 0 || res[x].duplicate) {
                    mg_mirror_counted(m, &f[i + x], &res[x]);
                }
                else {
                    mg_mirror_requeue(m, &f[i + x], 1);
                }
            }
            mg_mirror_requeue(m, &f[j], kept - j);
            return -1;
        }
        for (size_t x = 0; x < k; x++) {
            mg_mirror_counted(m, &f[i + x], &res[x]);
        }
        i = j;
    }
    return mg_fqueue_count(mg_shm_fqueue()) > 0 ? 1 : 0;
}

/* Bans made here while Redis was away, the failures waiting for it, then
 * the bans Redis lost. */
int mg_mirror_write_back(mg_mirror_t *m, mg_store_t *cmd, int *wrote)
{
    mg_localwin_t *lw = mg_shm_localwin();
    size_t n, done = 0;

    if (mg_localwin_pending(lw) > 0) {
        mg_pending_ban_t pb;
        int got;

        if (mg_shm_lock(m->s) != APR_SUCCESS) {
            return -1;
        }
        got = mg_localwin_pop_ban(lw, &pb);
        mg_shm_unlock(m->s);
        if (got && pb.expiry > mg_now()) {
            if (mg_store_ban(cmd, &pb.key, pb.expiry, pb.jail) != 0) {
                if (mg_shm_lock(m->s) == APR_SUCCESS) {
                    mg_localwin_queue_ban(lw, &pb.key, pb.expiry, pb.jail);
                    mg_shm_unlock(m->s);
                }
                return -1;
            }
            *wrote = 1;
        }
        return 1;
    }
    if (mg_fqueue_count(mg_shm_fqueue()) > 0) {
        int rc = mg_mirror_send_failures(m, cmd);
        *wrote = rc >= 0;
        return rc;
    }
    if (m->backat == m->nback) {
        return 0;
    }
    n = m->nback - m->backat;
    if (n > MG_WRITE_BACK) {
        n = MG_WRITE_BACK;
    }
    {
        mg_addr_t keys[MG_WRITE_BACK];
        int64_t exp[MG_WRITE_BACK];
        size_t i;
        int rc;

        for (i = 0; i < n; i++) {
            keys[i] = m->back[m->backat + i].key;
            exp[i] = m->back[m->backat + i].expiry;
        }
        rc = mg_store_ban_many(cmd, MG_RESTORED_JAIL, n, keys, exp, &done);
        m->backat += done;
        if (rc != 0) {
            return -1;
        }
        *wrote = 1;
    }
    if (m->backat == m->nback) {
        m->backat = m->nback = 0;
        return 0;
    }
    return 1;
}

/* ---- the position kept across restarts ---- */

/* Which log a position belongs to: the Redis address, database and key
 * prefix, hashed (FNV-1a).  A restart with another MailGuardRedis or
 * MailGuardKeyPrefix must not resume from a position in someone else's
 * log. */
static apr_uint64_t mg_mirror_origin(server_rec *s)
{
    const mg_store_url_t *u = mg_srv_redis_url(s);
    const char *prefix = mg_srv_key_prefix(s);
    apr_uint64_t h = APR_UINT64_C(14695981039346656037);
    char buf[512];
    apr_size_t i, n;

    n = (apr_size_t)apr_snprintf(buf, sizeof(buf), "%s|%d|%s|%d|%s", u ? u->host : "",
                                 u ? u->port : 0, u ? u->path : "", u ? u->db : 0,
                                 prefix ? prefix : "");
    for (i = 0; i < n && i < sizeof(buf); i++) {
        h = (h ^ (unsigned char)buf[i]) * APR_UINT64_C(1099511628211);
    }
    return h;
}

int mg_mirror_saved_position(server_rec *s, char id[MG_STORE_IDLEN], uint64_t *seq)
{
    const mg_shm_pos_t *pos = mg_shm_position();

    if (pos == NULL || !pos->valid || pos->origin != mg_mirror_origin(s)
        || memchr(pos->id, '\0', sizeof(pos->id)) == NULL) {
        return 0;
    }
    memcpy(id, pos->id, MG_STORE_IDLEN);
    *seq = pos->seq;
    return 1;
}

/* ---- accounting ---- */

typedef struct mg_live_count {
    apr_uint64_t n;
} mg_live_count_t;

static int mg_count_live(void *baton, const mg_addr_t *key, int64_t expiry)
{
    (void)key;
    (void)expiry;
    ((mg_live_count_t *)baton)->n++;
    return 0;
}

/*
 * Live bans in Redis the table does not hold, at least.  Redis counted at
 * its last check, where the log then ended: until the mirror has applied
 * that far (catching up after a cut) the two cannot be compared; each
 * change applied beyond it can have moved the count by one, so that many
 * are given the benefit of the doubt (under attack the shortfall of a full
 * table is far larger).  The table's count includes ended entries until
 * they are dropped, so the exact count (a walk of the table, as of the
 * check's time) is taken only when that count cannot rule an overflow out.
 */
static apr_int64_t mg_mirror_missing(const mg_follow_stats_t *fs)
{
    const mg_bantable_t *bt = mg_shm_bantable();
    mg_live_count_t c = { 0 };
    /* members that are not addresses, or were refused, are not missing */
    apr_uint64_t live = fs->live > fs->unusable ? fs->live - fs->unusable : 0;
    apr_uint64_t moved;

    if (!fs->in_step || fs->seq < fs->live_seq) {
        return -1; /* not comparable now */
    }
    moved = fs->seq - fs->live_seq;
    if (live <= mg_bantable_count(bt) && mg_bantable_count(bt) < mg_bantable_capacity(bt)) {
        return 0;
    }
    mg_bantable_foreach(bt, fs->last_check, mg_count_live, &c);
    return live > c.n + moved ? (apr_int64_t)(live - c.n - moved) : 0;
}

void mg_mirror_account(mg_mirror_t *m, mg_follow_t *f)
{
    const mg_follow_stats_t *fs = mg_follow_stats(f);
    mg_stats_t *st = mg_shm_stats();
    mg_shm_pos_t *pos = mg_shm_position();
    char id[MG_STORE_IDLEN];
    uint64_t seq;

    mg_stat_set(&st->refused, fs->refused);
    mg_stat_set(&st->live_in_redis, fs->live);
    mg_flag_set(&st->in_step, (apr_uint32_t)fs->in_step);
    if (fs->last_check > 0) {
        mg_time_set(&st->last_sync, (apr_int64_t)fs->last_check);
    }
    /* The position goes out only when the mirror is in step with it: a
     * sync process that dies mid-snapshot leaves none, and its successor
     * reads the set again. */
    if (mg_follow_position(f, id, &seq)) {
        if (!pos->valid || pos->seq != seq) {
            pos->valid = 0;
            pos->seq = seq;
            pos->origin = mg_mirror_origin(m->s);
            memcpy(pos->id, id, sizeof(pos->id));
            pos->valid = 1;
        }
    }
    else {
        pos->valid = 0;
    }
    /* once per check or snapshot, not per step */
    if (fs->snapshots != m->seen_snapshots || fs->last_check != m->seen_check) {
        apr_int64_t missing = mg_mirror_missing(fs);

        if (missing < 0) {
            return; /* judged again after the next check */
        }
        m->seen_snapshots = fs->snapshots;
        m->seen_check = fs->last_check;
        mg_stat_set(&st->not_mirrored, (apr_uint64_t)missing);
        if (missing > 0 && !m->full_logged) {
            m->full_logged = 1;
            ap_log_error(
                APLOG_MARK, APLOG_ERR, 0, m->s,
                "MG0063: the ban table is full: this server does not enforce %" APR_UINT64_T_FMT
                " of the %" APR_UINT64_T_FMT " live bans in Redis "
                "(the shortest); raise MailGuardBanTableSize (now %u)",
                (apr_uint64_t)missing, (apr_uint64_t)fs->live,
                (unsigned)mg_bantable_capacity(mg_shm_bantable()));
        }
        else if (missing == 0 && m->full_logged) {
            m->full_logged = 0;
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, m->s,
                         "MG0076: the mirror holds every live ban again");
        }
        /* Bans left out when the table was full are not in any change to
         * come: once there is room again (unbans, ended bans), read the set
         * to take them in (the follower backs off if this repeats). */
        if (missing > 0
            && mg_bantable_count(mg_shm_bantable()) < mg_bantable_capacity(mg_shm_bantable())) {
            mg_follow_rebuild(f);
        }
    }
}
