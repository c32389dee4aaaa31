/*
 * Inside the Redis store: shared by mg_store.c (commands) and
 * mg_store_events.c (subscriber).  Not for other users of the core.
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
    MG_SCRIPT_UNBAN_ALL,
    MG_SCRIPT_LIST,
    MG_SCRIPT_IS_BANNED,
    MG_SCRIPT_COUNT
};

#define MG_STORE_PREFIX_MAX 128

struct mg_store_batch;

struct mg_store {
    mg_store_url_t url;
    char where[300];                    /* host:port or unix path, for errors */
    char prefix[MG_STORE_PREFIX_MAX];
    size_t prefix_len;
    struct timeval connect_tv;
    struct timeval command_tv;
    redisContext *c;                    /* command connection, NULL until needed */
    redisContext *sub;                  /* SUBSCRIBE connection */
    char sha[MG_SCRIPT_COUNT][41];      /* SCRIPT LOAD answers on c */
    struct mg_store_batch *batch;       /* scratch for mg_store_record_failures */
    unsigned bad_events;                /* malformed event messages skipped */
    char err[MG_STORE_ERRLEN];
};

/* Format the error text; anything quoting the password is withheld. */
void mg_store_seterr(mg_store_t *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The error of a failed hiredis call on c ("timed out" for a timeout). */
void mg_store_ctxerr(mg_store_t *st, const char *what, const redisContext *c, int saved_errno);

/* Connect, authenticate and (for a command connection) SELECT the database
 * and load every script.  NULL with the error set on failure. */
redisContext *mg_store_connect(mg_store_t *st, int for_subscribe);

/* 1 when s is one word of printable ASCII (no spaces, no controls): the
 * jail names the store sends and the subscriber accepts. */
int mg_store_jail_word(const char *s);

#endif
