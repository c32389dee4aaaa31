/*
 * The status page (mg_status.c): plain "Key: value" lines, or
 * Prometheus's text format, from one table of fields.
 */
#ifndef MG_STATUS_H
#define MG_STATUS_H

#include "httpd.h"

#define MG_STATUS_HANDLER "mailguard-status"

int mg_status_handler(request_rec *r);

#endif
