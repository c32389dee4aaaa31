/*
 * The gate (mg_gate.c): deny a banned client before any handler runs,
 * from the shared-memory mirror only.
 */
#ifndef MG_GATE_H
#define MG_GATE_H

#include "httpd.h"

/* post_perdir_config hook: after mod_remoteip, with the real address. */
int mg_gate_post_perdir_config(request_rec *r);

#endif
