/*
 * Directives and configuration records.
 *
 * Two records: a per-directory one (server, <VirtualHost>, <Directory>,
 * <Location>) and a per-server one.  Every field starts as a sentinel
 * (-1 or NULL) so a merge can tell "not set here" from "set to the
 * default"; the getters below resolve sentinels against one defaults
 * table, so no caller ever sees a sentinel.  The innermost scope that sets
 * a directive wins, lists included (MailGuardIgnoreIP, MailGuardFailure):
 * a <Location> that sets them replaces what it inherits, as a Fail2Ban
 * jail's ignoreip replaces [DEFAULT]'s.
 */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include "httpd.h"
#include "http_config.h"
#include "apr_tables.h"

#include "mg_addr.h"
#include "mg_policy.h"
#include "mg_store.h"

/* MailGuardWatch values (a bit set). */
#define MG_WATCH_ROUNDCUBE    0x1
#define MG_WATCH_SQUIRRELMAIL 0x2

#define MG_RULE_MAX_STATUS 16

/* One MailGuardFailure line, compiled at configuration time. */
typedef struct mg_rule {
    const char *method; /* NULL = any method ("*") */
    void *re;           /* pcre2_code *, freed with pconf */
    int nstatus;
    int status[MG_RULE_MAX_STATUS];
} mg_rule_t;

typedef struct mg_dir_conf {
    int engine;                /* -1 unset, 0, 1 */
    int deny_status;           /* -1 unset */
    int watch;                 /* -1 unset, else MG_WATCH_* bits (0 = none) */
    apr_array_header_t *rules; /* mg_rule_t *; NULL unset */
    const char *jail;          /* NULL unset */
    int maxretry;              /* -1 unset */
    apr_int64_t findtime;      /* seconds, -1 unset */
    apr_int64_t bantime;
    apr_int64_t maxtime;
    int increment;        /* -1 unset */
    double factor;        /* < 0 unset */
    mg_cidrset_t *ignore; /* NULL unset */
} mg_dir_conf_t;

typedef struct mg_srv_conf {
    int v6prefix; /* -1 unset */
    /* Server-config-only settings: set on the main server, copied to
     * every virtual host by the merge so any server_rec answers. */
    int redis_set;             /* MailGuardRedis seen */
    int redis_none;            /* "none": shared memory only */
    mg_store_url_t *redis_url; /* parsed, NULL unset */
    const char *prefix;        /* NULL unset */
    int table_size;            /* -1 unset */
    apr_int64_t sync_interval; /* seconds, -1 unset */
    int floor4, floor6;        /* widest prefix applied from Redis, -1 unset */
} mg_srv_conf_t;

extern const command_rec mg_cmds[];

void *mg_create_dir_conf(apr_pool_t *p, char *dir);
void *mg_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
void *mg_create_srv_conf(apr_pool_t *p, server_rec *s);
void *mg_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

/* Typed getters: defaults applied, never a sentinel. */
extern module AP_MODULE_DECLARE_DATA mailguard_module;

/* Inline: read on every request. */
static inline const mg_dir_conf_t *mg_dir_conf(ap_conf_vector_t *per_dir)
{
    return ap_get_module_config(per_dir, &mailguard_module);
}
static inline int mg_dir_engine(const mg_dir_conf_t *d)
{
    return d != NULL && d->engine > 0;
}
int mg_dir_deny_status(const mg_dir_conf_t *d);
int mg_dir_watch(const mg_dir_conf_t *d);
const apr_array_header_t *mg_dir_rules(const mg_dir_conf_t *d);
const char *mg_dir_jail(const mg_dir_conf_t *d);
void mg_dir_policy(const mg_dir_conf_t *d, mg_policy_t *out);
const mg_cidrset_t *mg_dir_ignore(const mg_dir_conf_t *d);
/* True when any watch rule (built-in or MailGuardFailure) applies. */
int mg_dir_watching(const mg_dir_conf_t *d);

unsigned mg_srv_v6prefix(const server_rec *s);
int mg_srv_redis_enabled(const server_rec *s);
/* NULL when Redis is off ("none"). */
const mg_store_url_t *mg_srv_redis_url(const server_rec *s);
const char *mg_srv_key_prefix(const server_rec *s);
apr_uint32_t mg_srv_table_size(const server_rec *s);
apr_int64_t mg_srv_sync_interval(const server_rec *s);
/* The store settings of this server's Redis (URL, key prefix) with the
 * caller's timeouts, in milliseconds. */
void mg_srv_store_cfg(const server_rec *s, mg_store_cfg_t *cfg, int connect_ms, int command_ms);
/* MailGuardPrefixFloor: the shortest IPv4 / IPv6 prefix (family-relative)
 * a ban from Redis may have to be applied. */
void mg_srv_prefix_floor(const server_rec *s, unsigned *v4, unsigned *v6);

#endif
