/*
 * Policy vocabulary (Fail2Ban's): durations and the jail policy, and the
 * escalation rule shared by the Lua script and the local fallback.
 */
#ifndef MG_POLICY_H
#define MG_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Longest accepted duration: 100 years.  Anything longer is a typo. */
#define MG_DURATION_MAX ((int64_t)100 * 365 * 24 * 3600)

/*
 * Parse a duration into seconds: "30" (seconds), "45s", "10m", "1h", "2d",
 * "1w", and sums of those in decreasing or any order ("1h30m", "1d12h").
 * Units are case-insensitive.  Refused with *why: empty text, a sign, a
 * unit without a number, an unknown unit, trailing garbage, overflow or
 * more than MG_DURATION_MAX.  "0" is valid (callers that need > 0 check).
 */
int mg_duration_parse(const char *s, int64_t *secs, const char **why);

/* Shortest text for secs ("1h30m", "45s", "0s") into buf; returns buf. */
char *mg_duration_format(int64_t secs, char *buf, size_t size);

/* "2026-11-26T19:45:05Z" for secs (Unix seconds, UTC) into buf; "forever"
 * for MG_EXPIRY_NEVER or beyond year 9999, "?" for a negative time.
 * Returns buf.  Every ban line of the module and the tap says its expiry
 * this way. */
char *mg_time_format_utc(int64_t secs, char *buf, size_t size);

typedef struct mg_policy {
    unsigned maxretry; /* failures within findtime that ban (>= 1) */
    int64_t findtime;  /* seconds (>= 1) */
    int64_t bantime;   /* seconds (>= 1) */
    int increment;     /* bantime.increment */
    double factor;     /* bantime.factor (>= 1) */
    int64_t maxtime;   /* bantime.maxtime, seconds: cap of escalation */
} mg_policy_t;

/* Expiry value of a permanent ban (the Redis score +inf). */
#define MG_EXPIRY_NEVER INT64_MAX

/* What recording one failure did: the same fields from Redis and locally. */
typedef struct mg_record_result {
    unsigned
        count; /* failures in the window including this one (= maxretry on a ban; the window is then cleared) */
    int banned;     /* 1 when this failure made a ban */
    int64_t expiry; /* ban expiry (Unix seconds, MG_EXPIRY_NEVER) when banned */
    unsigned bans;  /* history: bans of this address including this one */
    int duplicate;  /* 1: this failure (its identity) was counted before:
                           not counted again; banned only when it was the
                           failure that made the live ban (its first answer
                           was lost) */
} mg_record_result_t;

/* The documented defaults: 10 failures / 10m -> 1h, no increment, factor 2, max 1w. */
void mg_policy_defaults(mg_policy_t *p);

/*
 * Ban duration for an address that was banned prev_bans times before:
 * bantime without increment; bantime * factor^prev_bans capped at maxtime
 * (and never below bantime) with it.  Same rule as record_failure.lua.
 */
int64_t mg_policy_ban_seconds(const mg_policy_t *p, unsigned prev_bans);

/* Parse a strict unsigned decimal in [min,max]; -1 with *why otherwise. */
int mg_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out,
                  const char **why);

/* Parse On/Off, true/false, yes/no, 1/0 (case-insensitive). */
int mg_parse_bool(const char *s, int *out, const char **why);

#endif
