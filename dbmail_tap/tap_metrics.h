/*
 * The metrics file of `dbmail_tap run` (metrics_file =): the daemon's
 * counters in Prometheus's text exposition format (0.0.4), for
 * node_exporter's textfile collector (--collector.textfile.directory),
 * so the tap needs no HTTP server of its own.
 *
 * Families are "mailguard_tap_...": per jail (label jail) the lines read
 * by outcome, the failures stored and the bans made; daemon-wide the
 * queue, the writer's Redis state, the files followed and, with a
 * banaction, the firewall keeper's state.  Counters end in _total.
 *
 * The file is replaced atomically: written in full to "FILE.tmp" in the
 * same directory (always a new file, O_EXCL | O_NOFOLLOW: a symlink
 * planted there is never followed; a leftover of a crash is replaced),
 * then renamed over FILE, so a reader sees the old or the new text, never
 * part of one.  Not fsync'ed: after a crash the next write, a few seconds
 * later, replaces whatever is there, and an fsync would stall the reader
 * thread on a busy disk.  Mode 0644: node_exporter runs as another user,
 * and the file holds no secret (no Redis URL, no address).
 */
#ifndef TAP_METRICS_H
#define TAP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "tap_keeper.h"

/* Written this often while the daemon runs, at start and at exit. */
#define TAP_METRICS_MS 5000

typedef struct tap_metrics_jail {
    const char *name;
    uint64_t lines;   /* lines of the jail's files */
    uint64_t matched; /* failure lines with an address (ignoreip included) */
    uint64_t ignored; /* ignoreregex, an address that does not parse */
    uint64_t suspicious;
    uint64_t missed;
    uint64_t ignoreip;  /* matched, not counted: the address is in ignoreip */
    uint64_t stored;    /* failures Redis counted */
    uint64_t duplicate; /* failures Redis had counted before: not again */
    uint64_t bans;      /* bans they made */
} tap_metrics_jail_t;

typedef struct tap_metrics_snap {
    const tap_metrics_jail_t *jails;
    size_t njails;
    uint64_t running;    /* 1; 0 in the file written at exit */
    uint64_t start_time; /* Unix seconds */
    uint64_t queue_len;
    uint64_t queue_capacity;
    uint64_t queue_dropped;
    uint64_t redis_up; /* the writer's view: 0 after a failed round */
    uint64_t writer_failed_rounds;
    uint64_t files;      /* paths followed */
    uint64_t files_open; /* of those, open now */
    uint64_t lines_too_long;
    const char *banaction;            /* "none", "nftables", "ipfw" */
    const tap_keeper_stats_t *keeper; /* NULL without a firewall keeper */
} tap_metrics_snap_t;

/* The text of m, NUL-terminated, in a malloc'd buffer (*len bytes without
 * the NUL); NULL when out of memory. */
char *tap_metrics_render(const tap_metrics_snap_t *m, size_t *len);

/* Replace path with text atomically (see above).  0, or -1 with err; the
 * old file stays then. */
int tap_metrics_write(const char *path, const char *text, size_t len, char *err, size_t errlen);

/* The periodic writer: logs a failure once (MG0634) until a write works
 * again (MG0635). */
typedef struct tap_metrics {
    const char *path; /* borrowed; NULL: no metrics file */
    int err_logged;
} tap_metrics_t;

void tap_metrics_publish(tap_metrics_t *mt, const tap_metrics_snap_t *m);

#endif
