/*
 * The follower: keeps a copy of the shared ban set in step with Redis at a
 * cost that grows with the number of changes, not with the size of the
 * set.  One implementation for both programs: the module's sync process
 * mirrors into shared memory, dbmail_tap's firewall keeper into nftables
 * or ipfw.  The consumer supplies two things through mg_follow_ops_t:
 * apply one change, and replace the whole set (begin, pages of bans,
 * commit or abort).
 *
 * How it stays in step (the keys are described in mg_store_log.h):
 *   - it starts with a snapshot: its position jumps to the end of the
 *     change log, then the set is read in ZSCAN pages while changes after
 *     that position keep being applied, so the consumer ends with exactly
 *     Redis's set once the last page is in; the consumer's live copy only
 *     switches at commit;
 *   - then it follows the log from its position with a blocking XREAD:
 *     each change is applied within a round trip of being made, and a
 *     follower that was cut off catches up exactly from where it was;
 *   - every check_ms it asks where the log stands (a script of O(1) and
 *     O(log N) commands): a hand edit (ZCARD differs from the scripts'
 *     count) is announced to every follower as "resync"; a sequence number
 *     that is not last + 1 (the stream was trimmed past it) or a logseq
 *     below its own (Redis lost data: a restart without persistence, a
 *     failover that lost the last writes) starts a new snapshot; ended bans
 *     are pruned, a bounded number per call.
 * So Redis sees one blocked XREAD per wait period and one check per
 * check_ms when nothing changes, and reads the whole set only at start,
 * after a gap, after a hand edit and after data loss.
 *
 * Changes and members that are not a ban or unban of an address or a
 * prefix at least min_plen4 / min_plen6 long (family-relative) are
 * refused: a forged "ban 0.0.0.0/1" must not lock out half the world.
 *
 * Not thread-safe; one follower per thread.  Never logs: state changes
 * reach the consumer's note callback.
 */
#ifndef MG_FOLLOW_H
#define MG_FOLLOW_H

#include <stddef.h>
#include <stdint.h>
#include "mg_store.h"
#include "mg_store_log.h"

typedef struct mg_ban {
    mg_addr_t key;
    int64_t expiry; /* Unix seconds, MG_EXPIRY_NEVER = permanent */
} mg_ban_t;

/* Why a snapshot starts. */
typedef enum mg_follow_why {
    MG_SNAP_START,  /* no position yet */
    MG_SNAP_GAP,    /* the log no longer holds what was missed */
    MG_SNAP_RESYNC, /* a hand edit, or `dbmail_tap resync` */
    MG_SNAP_LOST,   /* Redis lost data: keep what the copy has */
    MG_SNAP_REBUILD /* the consumer asked (its copy may be wrong) */
} mg_follow_why_t;

typedef enum mg_follow_note {
    MG_NOTE_UP,         /* detail: NULL */
    MG_NOTE_DOWN,       /* detail: the store's error */
    MG_NOTE_SNAP_BEGIN, /* detail: why (text) */
    MG_NOTE_SNAP_DONE,  /* detail: "N bans in M ms" */
    MG_NOTE_REFUSED,    /* detail: the refused change (first one per snapshot/follow period) */
    MG_NOTE_HAND_EDIT   /* detail: NULL */
} mg_follow_note_t;

typedef struct mg_follow_ops {
    /* One change, in the order Redis made it (during a snapshot too: it
     * is then newer than every page handed over before it). */
    void (*apply)(void *baton, const mg_store_event_t *ev);
    /* Replace the whole set.  why == MG_SNAP_LOST: Redis lost data; the
     * consumer should keep (and may write back) what it holds.  Every
     * callback returns 0, or -1 to abort the snapshot: it is tried again
     * after 1 s, then 2, 4 ... up to a minute while it keeps failing, with
     * changes still applied meanwhile. */
    int (*replace_begin)(void *baton, mg_follow_why_t why);
    int (*replace_add)(void *baton, const mg_ban_t *bans, size_t n);
    int (*replace_commit)(void *baton);
    void (*replace_abort)(void *baton);
    /* A state change worth one log line (may be NULL). */
    void (*note)(void *baton, mg_follow_note_t what, const char *detail);
} mg_follow_ops_t;

typedef struct mg_follow_cfg {
    mg_store_cfg_t store; /* command timeout must exceed block_ms */
    int block_ms;         /* longest XREAD wait (default 500) */
    int check_ms;         /* between checks (default 2500) */
    int retry_ms;         /* between reconnect attempts (default 1000) */
    unsigned page;        /* members per ZSCAN page (default 500) */
    unsigned min_plen4;   /* widest IPv4 prefix accepted (default 16) */
    unsigned min_plen6;   /* widest IPv6 prefix accepted (default 32) */
} mg_follow_cfg_t;

typedef struct mg_follow_stats {
    uint64_t applied;   /* changes handed to apply() */
    uint64_t refused;   /* changes and members refused */
    uint64_t skipped;   /* members that are not addresses (hand-written) */
    uint64_t snapshots; /* snapshots committed */
    uint64_t errors;    /* Redis calls that failed */
    uint64_t last_snapshot_bans;
    int64_t last_snapshot_ms;
    uint64_t live;      /* live bans in Redis at the last check */
    uint64_t live_seq;  /* the log's last sequence number then */
    uint64_t seq;       /* the last sequence number applied */
    uint64_t unusable;  /* of those, members known not to be applied
                             * (not addresses, or refused): as of the last
                             * snapshot and the changes since */
    int64_t last_check; /* Unix seconds of the last successful check */
    int up;             /* 1 while in touch with Redis */
    int in_step;        /* 1 when following (no snapshot in progress) */
} mg_follow_stats_t;

typedef struct mg_follow mg_follow_t;

void mg_follow_cfg_defaults(mg_follow_cfg_t *cfg);

/* NULL when out of memory or the store settings are refused. */
mg_follow_t *mg_follow_new(const mg_follow_cfg_t *cfg, const mg_follow_ops_t *ops, void *baton);
void mg_follow_free(mg_follow_t *f);

/*
 * Start from a position saved earlier (a restart of the consumer whose
 * copy was in step there): no snapshot unless the log has moved on past
 * what it still holds, or Redis lost data.  Without it the first step
 * takes a snapshot.
 */
void mg_follow_resume(mg_follow_t *f, const char *last_id, uint64_t last_seq);

/* The position the consumer's copy is in step with: 1 and id/seq, or 0
 * while there is none (before the first snapshot commits, or during one). */
int mg_follow_position(const mg_follow_t *f, char id[MG_STORE_IDLEN], uint64_t *seq);

/*
 * Do one piece of work: reconnect, one snapshot page, a check, or one
 * blocking read of the log (at most wait_ms, capped at block_ms).  While
 * Redis is unreachable it waits out the retry interval (at most wait_ms)
 * instead of returning at once.  Returns 0 when in touch with Redis, -1
 * when not.
 */
int mg_follow_step(mg_follow_t *f, int wait_ms);

const mg_follow_stats_t *mg_follow_stats(const mg_follow_t *f);

/* The consumer's copy may be wrong (a firewall command failed): read the
 * whole set again (with the same back-off as a failed snapshot). */
void mg_follow_rebuild(mg_follow_t *f);

/* 0 when key is a prefix wider than min_plen4 / min_plen6 allow. */
int mg_follow_key_ok(const mg_follow_t *f, const mg_addr_t *key);

#endif
