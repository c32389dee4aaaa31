/*
 * The Redis store: the one place that speaks to Redis (hiredis 0.14 API
 * only).  Every read-modify-write is a Lua script from core/lua/, embedded
 * at build time, loaded once per connection and called with EVALSHA (EVAL
 * fallback on NOSCRIPT); every argument goes through redisCommandArgv and
 * every address through mg_addr_format() first.
 *
 * A store is one connection, not thread-safe: the module keeps a small
 * per-process pool of them, dbmail_tap one per thread.  No socket is
 * opened until the first call.  On any I/O error the connection is dropped
 * and the call fails; the next call reconnects (at most once per call), so
 * a restarted Redis with an empty script cache works without help.  An
 * idle connection the server has closed is noticed before a command is
 * sent, so that case costs no failed call.  hiredis writes with write(2):
 * the process must ignore SIGPIPE (httpd does; dbmail_tap sets it).
 *
 * Keys (prefix P, default "mailguard:"):
 *   P bans              zset   member = canonical address, score = expiry (Unix s, +inf)
 *   P events            pubsub "ban <addr> <expiry> <jail>" / "unban <addr>"
 *   P log               stream the change log: {s: sequence, e: event text or "resync"}
 *   P logseq            string the last sequence number given out
 *   P card              string ZCARD P bans as the scripts left it (a bare
 *                              ZADD/ZREM makes them differ)
 *   P fail:<jail>:<addr> zset  the failure window (score = time in ms)
 *   P seen:<jail>:<addr> zset  identities of the failures counted (score =
 *                              time in ms), kept findtime: exactly once
 *   P history:<addr>    hash   {count, last}: ban history for escalation
 * The change log side (reading it, paging through the set) is in
 * mg_store_log.h.  Redis 7.0 or later: the write scripts declare themselves
 * (#!lua), so a Redis out of memory refuses them before they write.
 */
#ifndef MG_STORE_H
#define MG_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_policy.h"
#include "mg_rules.h"

#define MG_STORE_DEFAULT_URL    "redis://127.0.0.1:6379"
#define MG_STORE_DEFAULT_PREFIX "mailguard:"
#define MG_STORE_ERRLEN         256

/* A parsed Redis URL:
 *   redis://[[user]:password@]host[:port][/db]   (host may be [v6])
 *   unix:/path/to/socket[?db=N]
 *   redis-sentinel://[[user]:password@]host[:port],host[:port].../NAME[/db]
 *       [?sentinel_user=U&sentinel_password=P]
 * Percent-escapes (%40 ...) are decoded in user and password.  With
 * sentinels, user and password are the data nodes'; the sentinels' own,
 * if they need one, are the query parameters. */
#define MG_STORE_SENTINELS_MAX 8
#define MG_STORE_SENTINEL_PORT 26379

typedef struct mg_store_hostport {
    char host[256];
    int port;
} mg_store_hostport_t;

typedef struct mg_store_url {
    char host[256];     /* empty for unix sockets and sentinels */
    int port;           /* 6379 */
    char path[108];     /* unix socket path, empty for TCP */
    char user[128];     /* ACL user, may be empty */
    char password[256]; /* may be empty; never printed */
    int db;             /* 0 */
    /* Sentinel: the primary of master is asked of these at every connect */
    int nsentinels; /* 0: not Sentinel */
    mg_store_hostport_t sentinel[MG_STORE_SENTINELS_MAX];
    char master[128];
    char sentinel_user[128];
    char sentinel_password[256]; /* never printed */
} mg_store_url_t;

/* -1 with a reason (which never contains the password) on a bad URL. */
int mg_store_url_parse(const char *url, mg_store_url_t *out, const char **why);
/* The URL with the password replaced by "***", for logs. */
void mg_store_url_redacted(const mg_store_url_t *u, char *buf, size_t size);

typedef struct mg_store_cfg {
    mg_store_url_t url;
    const char *prefix;     /* copied */
    int connect_timeout_ms; /* default 200 */
    int command_timeout_ms; /* default 200 */
} mg_store_cfg_t;

typedef struct mg_store mg_store_t;

mg_store_t *mg_store_new(const mg_store_cfg_t *cfg);
void mg_store_free(mg_store_t *st);
/* Last error text (never contains secrets). */
const char *mg_store_error(const mg_store_t *st);

/* What kind of failure the last error was: callers tell a slow Redis from
 * one that is gone. */
typedef enum mg_store_errkind {
    MG_STORE_EOTHER = 1, /* bad arguments, an unexpected reply */
    MG_STORE_ETIMEOUT,   /* no answer in time: the call may still run in Redis */
    MG_STORE_EDOWN,      /* cannot connect, or the connection broke */
    MG_STORE_EREFUSED    /* Redis said no: OOM, READONLY, NOAUTH, WRONGPASS ... */
} mg_store_errkind_t;
mg_store_errkind_t mg_store_error_kind(const mg_store_t *st);
/* 1 while a connection is open (after a successful call). */
int mg_store_connected(const mg_store_t *st);
/* Connect (if needed) and PING; 0 on success. */
int mg_store_ping(mg_store_t *st);

/* All calls: 0 on success, -1 on a Redis or I/O error (mg_store_error()). */

/* A failure's identity: the same failure sent twice (a call that timed out
 * but ran, a resend after an outage, a log line read again after a
 * restart) is counted once, for as long as it could count (findtime).  At
 * most MG_FAILURE_IDLEN - 1 printable characters, no spaces; NULL or ""
 * for a failure without one. */
#define MG_FAILURE_IDLEN 64

/* The record_failure script; now in milliseconds.  res->bans is filled
 * when this failure banned (0 otherwise); res->duplicate when id was
 * counted before (nothing changes then; res->banned, expiry and bans then
 * report the live ban this very failure made, if it made one).  Reaching maxretry while the
 * address already holds a live ban makes no new ban and no history entry
 * (those failures were in flight when the ban was made); the window is
 * cleared all the same.  The jail name must be 1-47 printable characters
 * without spaces (it travels in event messages). */
int mg_store_record_failure(mg_store_t *st, const char *jail, const mg_addr_t *key,
                            int64_t now_ms, const char *id, const mg_policy_t *pol,
                            mg_record_result_t *res);

/*
 * The same for n failures of one jail at once (dbmail_tap's ingest): pair i
 * is keys[i] at now_ms[i] with identity ids[i] (ids, or an entry, may be
 * NULL), res[i] (res may be NULL) its result, with the
 * outcome of n calls of mg_store_record_failure in that order.  Failures
 * of one address are grouped (the script reads and writes its window once
 * per group), so the larger the batch, the cheaper each failure; pairs go
 * 256 per script call, 8 calls per round trip.  *done (may be NULL) is the
 * number of leading pairs (in the caller's order) confirmed recorded, n on
 * success.  After a failure, res[i].count and res[i].duplicate are both 0
 * exactly for the pairs not confirmed (a recorded failure counts at least
 * 1; a duplicate was recorded before): pairs after *done that are
 * confirmed must not be sent again; those of a call in flight when the
 * connection failed may have been recorded (with identities, sending them
 * again is harmless: they come back as duplicates).
 */
int mg_store_record_failures(mg_store_t *st, const char *jail, const mg_policy_t *pol, size_t n,
                             const mg_addr_t *keys, const int64_t *now_ms,
                             const char *const *ids, mg_record_result_t *res, size_t *done);

/* Ban key until expiry (Unix s, MG_EXPIRY_NEVER = +inf); keeps a later
 * existing expiry; announces "ban" (published and logged) when the set
 * changed.  jail may be "manual". */
int mg_store_ban(mg_store_t *st, const mg_addr_t *key, int64_t expiry, const char *jail);
/* The same for n bans of one jail (writing bans back after Redis lost
 * them): MG_STORE_BAN_CHUNK per script call, calls pipelined.  *done (may
 * be NULL) counts the leading bans confirmed; a ban is idempotent, so the
 * rest may simply be sent again. */
int mg_store_ban_many(mg_store_t *st, const char *jail, size_t n, const mg_addr_t *keys,
                      const int64_t *expiry, size_t *done);
/* Remove a ban (its failure history is left alone); announces "unban".
 * *removed = 1 when it was there. */
int mg_store_unban(mg_store_t *st, const mg_addr_t *key, int *removed);
/* Remove every ban, a bounded number per script call, announcing one
 * "unban" each; *count removed (also after a failure). */
int mg_store_unban_all(mg_store_t *st, unsigned *count);

/* A ban handed to a caller: the reads of mg_store_log.h call one per
 * member.  Non-zero stops the walk. */
typedef int (*mg_store_ban_fn)(void *baton, const mg_addr_t *key, int64_t expiry);

/* *banned = 1 and *expiry when key itself is a live member. */
int mg_store_is_banned(mg_store_t *st, const mg_addr_t *key, int64_t now, int *banned,
                       int64_t *expiry);

/* History count of key (0 when none): for tests and `dbmail_tap bans`. */
int mg_store_history(mg_store_t *st, const mg_addr_t *key, unsigned *count);

/*
 * Subscriber side: a second connection in SUBSCRIBE mode on P events.
 * mg_store_subscribe() connects and subscribes (blocking, connect timeout);
 * mg_store_next_event() waits up to timeout_ms for one message and parses
 * it.  Returns 1 with *ev filled, 0 on timeout, -1 on error (resubscribe).
 * Malformed messages are skipped (and counted), never returned; a timeout
 * leaves the subscription intact, so no message is lost between calls.
 */
typedef struct mg_store_event {
    int is_ban; /* 1 ban, 0 unban */
    mg_addr_t key;
    int64_t expiry; /* for ban */
    char jail[MG_JAIL_BUF];
} mg_store_event_t;

int mg_store_subscribe(mg_store_t *st);
int mg_store_next_event(mg_store_t *st, int timeout_ms, mg_store_event_t *ev);
/* Malformed event messages skipped so far (for status pages). */
unsigned mg_store_bad_events(const mg_store_t *st);

/* Parse one events message (exposed for unit tests and fuzzing).
 * -1 for anything malformed, including an address that does not parse. */
int mg_store_parse_event(const char *msg, size_t len, mg_store_event_t *ev);

#endif
