/*
 * The change log, seen from a follower: the calls that mirror the shared
 * ban set without ever reading it whole in one go.
 *
 * Every script that bans or unbans appends the change to the stream
 * P log (fields s = sequence number from P logseq, e = the event text,
 * "ban <addr> <expiry> <jail>", "unban <addr>" or "resync") in the same
 * atomic step, and keeps P card equal to ZCARD P bans (lua/include/
 * changelog.lua).  A follower:
 *   - reads the whole set in pages (mg_store_scan, plain ZSCAN: a member
 *     present for the whole scan is returned at least once) at start, when
 *     it missed changes, and when told to ("resync");
 *   - then applies the log in order from where it stands
 *     (mg_store_log_read, XREAD), which catches it up exactly after a
 *     disconnect as long as the stream still holds what it missed (about
 *     MG_LOG_KEEP changes, lua/include/changelog.lua);
 *   - and asks now and then where the log stands (mg_store_check, O(1)
 *     and O(log N) commands only): a ZCARD that differs from P card means
 *     someone edited the set by hand (mg_store_resync then tells every
 *     follower), a logseq below its own means Redis lost data.
 * Ended bans are dropped a bounded number at a time (mg_store_prune).
 * Every call here is a plain command or a script of bounded cost.
 */
#ifndef MG_STORE_LOG_H
#define MG_STORE_LOG_H

#include <stddef.h>
#include <stdint.h>
#include "mg_store.h"

/* A stream entry id ("1700000000000-0"), NUL-terminated. */
#define MG_STORE_IDLEN 48

typedef struct mg_store_logstate {
    uint64_t logseq;              /* changes logged so far (P logseq) */
    char last_id[MG_STORE_IDLEN]; /* newest entry, "0-0" when none */
    uint64_t last_seq;            /* its sequence number, 0 when none */
    uint64_t live;                /* bans whose expiry is after now */
    uint64_t zcard;               /* members of P bans, ended ones included */
    int64_t card;                 /* P card, -1 when missing */
} mg_store_logstate_t;

/* Where the log stands, in one atomic read (the check script). */
int mg_store_check(mg_store_t *st, int64_t now, mg_store_logstate_t *out);

/* Append "resync" to the log, telling every follower to read the whole
 * set again: when force, always; otherwise only while ZCARD differs from
 * P card (then P card is set right).  *announced = 1 when it appended. */
int mg_store_resync(mg_store_t *st, int force, int *announced);

/* Drop at most `most` ended bans (expiry <= now); *removed. */
int mg_store_prune(mg_store_t *st, int64_t now, unsigned most, unsigned *removed);

/* One page of the set: ZSCAN from *cursor (0 to start) for about count
 * members; fn for each live one (expiry after now).  *cursor is 0 again
 * when the scan is complete.  Members that are not addresses are skipped
 * and counted in *skipped (may be NULL; added to).  fn returning non-zero
 * stops the page: -1. */
int mg_store_scan(mg_store_t *st, uint64_t *cursor, unsigned count, int64_t now,
                  mg_store_ban_fn fn, void *baton, unsigned *skipped);

/* Where a listing in expiry order goes on: the expiry reached and how many
 * members with that expiry were already read. */
typedef struct mg_store_range_pos {
    int64_t from;
    unsigned skip;
} mg_store_range_pos_t;

/* Bans in expiry order for listing, about count per call: ZRANGE BYSCORE
 * from pos (start with {first expiry wanted, 0}), fn for each; pos moves
 * on; *got members read (garbage included): fewer than count means the
 * end.  Not a snapshot: a member moving meanwhile may be shown twice or
 * not at all. */
int mg_store_range(mg_store_t *st, mg_store_range_pos_t *pos, unsigned count,
                   mg_store_ban_fn fn, void *baton, unsigned *got, unsigned *skipped);

typedef enum mg_change_kind {
    MG_CHANGE_BAN,
    MG_CHANGE_UNBAN,
    MG_CHANGE_RESYNC,
    MG_CHANGE_BAD /* not a change this version understands */
} mg_change_kind_t;

typedef struct mg_store_change {
    char id[MG_STORE_IDLEN];
    uint64_t seq; /* 0 when the entry has none */
    mg_change_kind_t kind;
    mg_store_event_t ev; /* BAN and UNBAN */
} mg_store_change_t;

typedef int (*mg_store_change_fn)(void *baton, const mg_store_change_t *ch);

/*
 * Entries after after_id ("0-0" for all), at most count, in order: fn for
 * each.  block_ms > 0 waits that long for a first entry (XREAD BLOCK; the
 * store's command timeout must be longer), 0 returns at once.  *n entries
 * read.  fn returning non-zero stops (the rest of the batch is not handed
 * on: read again from the last id taken).  -1 on error.
 */
int mg_store_log_read(mg_store_t *st, const char *after_id, int block_ms, unsigned count,
                      mg_store_change_fn fn, void *baton, unsigned *n);

/* Parse one log entry's fields (exposed for unit tests and fuzzing). */
void mg_store_parse_change(const char *id, const char *seq, size_t seqlen, const char *text,
                           size_t textlen, mg_store_change_t *ch);

#endif
