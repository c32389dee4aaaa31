/*
 * The watcher (mg_watch.c): classify a finished login and record a
 * failure in Redis (or locally, or in the send queue).
 */
#ifndef MG_WATCH_H
#define MG_WATCH_H

#include "httpd.h"

/* log_transaction hook: the response status is final there. */
int mg_watch_log_transaction(request_rec *r);

#endif
