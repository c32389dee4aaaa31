/*
 * Inside the Redis store: shared by its files (mg_store_conn.c the
 * connection and script runner, mg_store_args.c the arguments and
 * replies, mg_store.c the single calls and the store's end,
 * mg_store_batch.c the pipelined failures, mg_store_log.c the change log,
 * mg_store_events.c the subscriber).  Calls go one way only: conn is a
 * leaf, args calls conn, the others call both.  Not for other users of
 * the core.
 */
#ifndef MG_STORE_INT_H
#define MG_STORE_INT_H

#include <sys/time.h>
#include <hiredis/hiredis.h>

#include "mg_store.h"

enum mg_script_id {
    MG_SCRIPT_RECORD,
    MG_SCRIPT_BAN,
    MG_SCRIPT_UNBAN,
    MG_SCRIPT_IS_BANNED,
    MG_SCRIPT_CHECK,
    MG_SCRIPT_RESYNC,
    MG_SCRIPT_PRUNE,
    MG_SCRIPT_COUNT
};

#define MG_STORE_PREFIX_MAX 128
/* EVALSHA sha 0 + 8 policy arguments; then per group addr, k, and k
 * triples (identity, time, cutoff) */
#define MG_RECORD_HEAD 11
/* Pairs per ban call and addresses per unban call: each costs Redis a
 * few commands, so one call stays well under a millisecond (a script
 * blocks every other client while it runs). */
#define MG_STORE_BAN_CHUNK   128
#define MG_STORE_UNBAN_CHUNK 256
/* Calls sent before their replies are read. */
#define MG_STORE_PIPELINE 8

typedef struct mg_store_script {
    const char *name;
    const char *src;
} mg_store_script_t;

/* Every script, by id: loaded on each new command connection. */
extern const mg_store_script_t mg_store_scripts[MG_SCRIPT_COUNT];

/* The policy as script arguments; lives while the argv that points into it. */
typedef struct mg_store_policy_args {
    char maxretry[16], findtime[24], bantime[24], factor[40], maxtime[24];
} mg_store_policy_args_t;

struct mg_store_batch;

struct mg_store {
    mg_store_url_t url;
    char where[300];   /* host:port or unix path, for errors */
    int sentinel_at;   /* the sentinel to ask first */
    char primary[256]; /* the primary connected to (sentinels) */
    int primary_port;
    int replicas; /* replicas the primary had at connect */
    int stale;    /* reconnect before the next call (READONLY) */
    char prefix[MG_STORE_PREFIX_MAX];
    size_t prefix_len;
    struct timeval connect_tv;
    struct timeval command_tv;
    redisContext *c;               /* command connection, NULL until needed */
    redisContext *sub;             /* SUBSCRIBE connection */
    char sha[MG_SCRIPT_COUNT][41]; /* SCRIPT LOAD answers on c */
    struct mg_store_batch *batch;  /* scratch for mg_store_record_failures */
    unsigned bad_events;           /* malformed event messages skipped */
    mg_store_errkind_t kind;       /* of err */
    char err[MG_STORE_ERRLEN];
};

/* Format the error text; anything quoting the password is withheld. */
void mg_store_seterr(mg_store_t *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The error of a failed hiredis call on c ("timed out" for a timeout). */
void mg_store_ctxerr(mg_store_t *st, const char *what, const redisContext *c, int saved_errno);

/* The error of an error reply r to what (kind MG_STORE_EREFUSED). */
void mg_store_replyerr(mg_store_t *st, const char *what, const redisReply *r);

/* Connect, authenticate and (for a command connection) SELECT the database
 * and load every script.  NULL with the error set on failure. */
redisContext *mg_store_connect(mg_store_t *st, int for_subscribe);

/* Free the command connection (after an I/O or protocol error). */
void mg_store_drop(mg_store_t *st);

/* The command connection, opened (or, when an idle one was closed by the
 * server, re-opened) as needed; 0 when ready. */
int mg_store_ready(mg_store_t *st);

/* -1 with the error set for an error reply or (type != 0) a reply of
 * another type. */
int mg_store_check_reply(mg_store_t *st, const char *what, redisReply *r, int type);

/* One plain command on the command connection: its reply (error replies
 * included, for the caller to judge), or NULL with the error set and a
 * broken connection dropped. */
redisReply *mg_store_command(mg_store_t *st, const char *what, int argc, const char **argv,
                             const size_t *len);

/* 1 for a NOSCRIPT error reply. */
int mg_store_is_noscript(const redisReply *r);

/* Run script id: argv[0..2] are filled here, the script's ARGV follow.
 * NOSCRIPT is retried once with EVAL.  The reply, or NULL with the error
 * set (an error reply included). */
redisReply *mg_store_run_script(mg_store_t *st, int id, int argc, const char **argv,
                                size_t *len);

/* A reply element (integer or score text) as an expiry; -1 when neither. */
int mg_store_elem_expiry(const redisReply *e, int64_t *out);

/* An expiry as a script argument: integer text, or "inf" when permanent. */
void mg_store_format_expiry(int64_t expiry, char *buf, size_t size, size_t *len);

/* A member and its score as a ban: 0, or -1 when the member is not an
 * address or prefix (hand-written garbage) or the score not an expiry. */
int mg_store_member(const redisReply *m, const redisReply *score, mg_addr_t *key,
                    int64_t *expiry);

/* Argument checks shared by the single and the batch calls; -1 with the
 * error set. */
int mg_store_jail_ok(mg_store_t *st, const char *jail);
int mg_store_id_ok(mg_store_t *st, const char *id);
int mg_store_policy_ok(mg_store_t *st, const mg_policy_t *p);

/* Fill argv[3..10] with the record_failure head (prefix, jail, policy). */
void mg_store_policy_argv(const mg_store_t *st, const char *jail, const mg_policy_t *p,
                          mg_store_policy_args_t *pa, const char **argv, size_t *len);

/* Results of n pairs from a record_failure reply; pair j's result goes to
 * res[ord[j]] (res[j] when ord is NULL). */
int mg_store_parse_record(mg_store_t *st, const redisReply *r, size_t n, const size_t *ord,
                          mg_record_result_t *res);

/* With sentinels, after a write: 0 when a replica has it too, or when the
 * sentinels still name this primary (a primary without a replica); -1
 * when the primary changed meanwhile (the write may be lost in the
 * failover: send it again, identities make that safe), the connection
 * then dropped.  Always 0 without sentinels. */
int mg_store_confirm(mg_store_t *st);

/* The batch scratch, freed with the store. */
void mg_store_batch_free(mg_store_t *st);

/* 1 when s is one word of printable ASCII (no spaces, no controls): what
 * a failure identity may be (jail names follow mg_rule_jail_name). */
int mg_store_id_word(const char *s);

#endif
