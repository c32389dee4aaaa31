/*
 * One redis-server shared by a suite's cases (Check's unchecked fixture
 * shared_start/shared_stop), and the small helpers every store test uses
 * with it.  Included by exactly one test file per binary.
 */
#ifndef MG_TEST_SHARED_REDIS_H
#define MG_TEST_SHARED_REDIS_H

#include "mg_addr.h"
#include "mg_test.h"
#include "mg_test_redis.h"

static mg_test_redis_t srv;

static void shared_start(void)
{
    ck_assert_int_eq(mg_test_redis_start(&srv, NULL), 0);
}

static void shared_stop(void)
{
    mg_test_redis_stop(&srv);
}

/* Cases sharing the server start from an empty data set. */
static void flush(void)
{
    redisReply *r = mg_test_redis_do(&srv, "FLUSHALL", NULL);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
}

/* An address or prefix from its text; a typo fails the case, not later. */
static mg_addr_t addr(const char *s)
{
    mg_addr_t a;
    const char *why;
    ck_assert_msg(mg_cidr_parse(s, &a, &why) == 0, "%s: %s", s, why);
    return a;
}

#endif
