/*
 * Directives: parsing, validation, create/merge and typed getters.
 *
 * Every setter validates its value and names its directive in the error,
 * so a bad value stops `apachectl configtest`.  Values are parsed with the
 * core's parsers (durations, addresses, URLs) so the module and dbmail_tap
 * accept exactly the same text.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "apr_strings.h"

#include "mg_config.h"
#include "mg_rules.h"

/* The module's own defaults and bounds.  Those it shares with dbmail_tap
 * (the policy, prefixes, jail names) live in the core: mg_policy.c and
 * mg_rules.h. */
#define MG_DEF_DENY_STATUS   HTTP_FORBIDDEN
#define MG_DEF_WATCH         0
#define MG_DEF_JAIL          "webmail"
#define MG_DEF_TABLE_SIZE    1048576 /* 132 MiB reserved; pages used as bans arrive */
#define MG_DEF_SYNC_INTERVAL 5

/* Bounds: generous, but a value outside them is a typo, not a wish. */
#define MG_TABLE_SIZE_MIN    64
#define MG_TABLE_SIZE_MAX    (16 * 1024 * 1024)
#define MG_SYNC_INTERVAL_MAX (24 * 60 * 60)

/* MG_STORE_DEFAULT_URL, parsed: used while MailGuardRedis is not set. */
static const mg_store_url_t mg_default_url = {
    .host = "127.0.0.1",
    .port = 6379,
};

/* ------------------------------------------------------------------ */
/* create / merge                                                      */

void *mg_create_dir_conf(apr_pool_t *p, char *dir)
{
    mg_dir_conf_t *d = apr_pcalloc(p, sizeof(*d));

    (void)dir;
    d->engine = -1;
    d->deny_status = -1;
    d->watch = -1;
    d->rules = NULL;
    d->jail = NULL;
    d->maxretry = -1;
    d->findtime = -1;
    d->bantime = -1;
    d->maxtime = -1;
    d->increment = -1;
    d->factor = -1.0;
    d->ignore = NULL;
    return d;
}

#define MG_PICK(f, unset) (add->f != (unset) ? add->f : base->f)
#define MG_PICKP(f)       (add->f != NULL ? add->f : base->f)

/* Nothing set in this scope (the common case: a <Directory> without any
 * MailGuard directive). */
static int mg_dir_unset(const mg_dir_conf_t *d)
{
    return d->engine < 0 && d->deny_status < 0 && d->watch < 0 && d->rules == NULL
           && d->jail == NULL && d->maxretry < 0 && d->findtime < 0 && d->bantime < 0
           && d->maxtime < 0 && d->increment < 0 && d->factor < 0 && d->ignore == NULL;
}

void *mg_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    const mg_dir_conf_t *base = basev;
    const mg_dir_conf_t *add = addv;
    mg_dir_conf_t *m;

    /* httpd merges per-dir configs on every request that crosses a
     * <Directory> or <Location>: when this scope sets nothing the result
     * is the base itself, with no allocation.  Records are never modified
     * after configuration, so sharing is safe. */
    if (mg_dir_unset(add)) {
        return basev;
    }
    m = apr_pcalloc(p, sizeof(*m));

    m->engine = MG_PICK(engine, -1);
    m->deny_status = MG_PICK(deny_status, -1);
    m->watch = MG_PICK(watch, -1);
    m->rules = MG_PICKP(rules);
    m->jail = MG_PICKP(jail);
    m->maxretry = MG_PICK(maxretry, -1);
    m->findtime = MG_PICK(findtime, -1);
    m->bantime = MG_PICK(bantime, -1);
    m->maxtime = MG_PICK(maxtime, -1);
    m->increment = MG_PICK(increment, -1);
    m->factor = add->factor >= 0 ? add->factor : base->factor;
    m->ignore = MG_PICKP(ignore);
    return m;
}

void *mg_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    mg_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    (void)s;
    c->v6prefix = -1;
    c->redis_set = 0;
    c->redis_none = 0;
    c->redis_url = NULL;
    c->prefix = NULL;
    c->table_size = -1;
    c->sync_interval = -1;
    c->floor4 = -1;
    c->floor6 = -1;
    return c;
}

void *mg_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    const mg_srv_conf_t *base = basev;
    const mg_srv_conf_t *add = addv;
    mg_srv_conf_t *m = apr_pcalloc(p, sizeof(*m));

    m->v6prefix = MG_PICK(v6prefix, -1);
    /* Server-config-only: a virtual host cannot set these (the setters
     * refuse), so the main server's values are what every vhost sees. */
    m->redis_set = add->redis_set ? add->redis_set : base->redis_set;
    m->redis_none = add->redis_set ? add->redis_none : base->redis_none;
    m->redis_url = add->redis_set ? add->redis_url : base->redis_url;
    m->prefix = MG_PICKP(prefix);
    m->table_size = MG_PICK(table_size, -1);
    m->sync_interval = MG_PICK(sync_interval, -1);
    m->floor4 = MG_PICK(floor4, -1);
    m->floor6 = MG_PICK(floor6, -1);
    return m;
}

/* ------------------------------------------------------------------ */
/* getters                                                             */

int mg_dir_deny_status(const mg_dir_conf_t *d)
{
    return d->deny_status > 0 ? d->deny_status : MG_DEF_DENY_STATUS;
}

int mg_dir_watch(const mg_dir_conf_t *d)
{
    return d->watch >= 0 ? d->watch : MG_DEF_WATCH;
}

const apr_array_header_t *mg_dir_rules(const mg_dir_conf_t *d)
{
    return d->rules;
}

const char *mg_dir_jail(const mg_dir_conf_t *d)
{
    return d->jail ? d->jail : MG_DEF_JAIL;
}

void mg_dir_policy(const mg_dir_conf_t *d, mg_policy_t *out)
{
    mg_policy_defaults(out);
    if (d->maxretry > 0) {
        out->maxretry = (unsigned)d->maxretry;
    }
    if (d->findtime > 0) {
        out->findtime = d->findtime;
    }
    if (d->bantime > 0) {
        out->bantime = d->bantime;
    }
    if (d->increment >= 0) {
        out->increment = d->increment;
    }
    if (d->factor >= 0) {
        out->factor = d->factor;
    }
    if (d->maxtime > 0) {
        out->maxtime = d->maxtime;
    }
}

const mg_cidrset_t *mg_dir_ignore(const mg_dir_conf_t *d)
{
    return d->ignore;
}

int mg_dir_watching(const mg_dir_conf_t *d)
{
    return mg_dir_watch(d) != 0 || (d->rules != NULL && d->rules->nelts > 0);
}

static const mg_srv_conf_t *mg_srv(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &mailguard_module);
}

unsigned mg_srv_v6prefix(const server_rec *s)
{
    const mg_srv_conf_t *c = mg_srv(s);
    return (unsigned)(c->v6prefix > 0 ? c->v6prefix : MG_V6PREFIX_DEFAULT);
}

int mg_srv_redis_enabled(const server_rec *s)
{
    return !mg_srv(s)->redis_none;
}

const mg_store_url_t *mg_srv_redis_url(const server_rec *s)
{
    const mg_srv_conf_t *c = mg_srv(s);

    if (c->redis_none) {
        return NULL;
    }
    return c->redis_url ? c->redis_url : &mg_default_url;
}

const char *mg_srv_key_prefix(const server_rec *s)
{
    const mg_srv_conf_t *c = mg_srv(s);
    return c->prefix ? c->prefix : MG_STORE_DEFAULT_PREFIX;
}

apr_uint32_t mg_srv_table_size(const server_rec *s)
{
    const mg_srv_conf_t *c = mg_srv(s);
    return (apr_uint32_t)(c->table_size > 0 ? c->table_size : MG_DEF_TABLE_SIZE);
}

void mg_srv_prefix_floor(const server_rec *s, unsigned *v4, unsigned *v6)
{
    const mg_srv_conf_t *c = mg_srv(s);

    *v4 = c->floor4 > 0 ? (unsigned)c->floor4 : MG_FLOOR4_DEFAULT;
    *v6 = c->floor6 > 0 ? (unsigned)c->floor6 : MG_FLOOR6_DEFAULT;
}

void mg_srv_store_cfg(const server_rec *s, mg_store_cfg_t *cfg, int connect_ms, int command_ms)
{
    const mg_store_url_t *url = mg_srv_redis_url(s);

    memset(cfg, 0, sizeof(*cfg));
    if (url != NULL) {
        cfg->url = *url;
    }
    cfg->prefix = mg_srv_key_prefix(s);
    cfg->connect_timeout_ms = connect_ms;
    cfg->command_timeout_ms = command_ms;
}

apr_int64_t mg_srv_sync_interval(const server_rec *s)
{
    const mg_srv_conf_t *c = mg_srv(s);
    return c->sync_interval > 0 ? c->sync_interval : MG_DEF_SYNC_INTERVAL;
}

/* ------------------------------------------------------------------ */
/* setters                                                             */

static mg_srv_conf_t *mg_srv_mut(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &mailguard_module);
}

/* Server-config-only directives: refuse a <VirtualHost> with a clear
 * message instead of silently ignoring the value. */
static const char *mg_global_only(cmd_parms *cmd)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err != NULL) {
        return apr_pstrcat(cmd->pool, err,
                           " (it applies to the whole server: set it once, "
                           "outside <VirtualHost>)",
                           NULL);
    }
    return NULL;
}

static const char *mg_set_redis(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_srv_conf_t *c = mg_srv_mut(cmd);
    mg_store_url_t *u;
    const char *why = NULL;
    const char *err = mg_global_only(cmd);

    (void)dv;
    if (err) {
        return err;
    }
    if (c->redis_set) {
        return apr_psprintf(cmd->pool, "%s: set more than once", cmd->cmd->name);
    }
    if (strcasecmp(arg, "none") == 0) {
        c->redis_set = 1;
        c->redis_none = 1;
        c->redis_url = NULL;
        return NULL;
    }
    u = apr_pcalloc(cmd->pool, sizeof(*u));
    if (mg_store_url_parse(arg, u, &why) != 0) {
        /* The URL itself is not echoed: it may carry a password. */
        return apr_psprintf(cmd->pool,
                            "%s: not a valid Redis URL (%s); expected "
                            "redis://[[user]:password@]host[:port][/db], "
                            "unix:/path[?db=N] or none",
                            cmd->cmd->name, why ? why : "unparsable");
    }
    c->redis_set = 1;
    c->redis_none = 0;
    c->redis_url = u;
    return NULL;
}

static const char *mg_set_prefix(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_srv_conf_t *c = mg_srv_mut(cmd);
    const char *err = mg_global_only(cmd);
    const char *why = NULL;

    (void)dv;
    if (err) {
        return err;
    }
    if (mg_rule_key_prefix(arg, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' %s", cmd->cmd->name, arg, why);
    }
    c->prefix = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *mg_set_watch(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;

    if (d->watch < 0) {
        d->watch = 0;
    }
    if (strcasecmp(arg, "roundcube") == 0) {
        d->watch |= MG_WATCH_ROUNDCUBE;
    }
    else if (strcasecmp(arg, "squirrelmail") == 0) {
        d->watch |= MG_WATCH_SQUIRRELMAIL;
    }
    else if (strcasecmp(arg, "none") == 0) {
        d->watch = 0;
    }
    else {
        return apr_psprintf(cmd->pool,
                            "%s: unknown webmail '%s' (expected roundcube, "
                            "squirrelmail or none; use MailGuardFailure for others)",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

static apr_status_t mg_regex_cleanup(void *data)
{
    pcre2_code_free(data);
    return APR_SUCCESS;
}

static int mg_is_token(const char *s)
{
    static const char sep[] = "()<>@,;:\\\"/[]?={} \t";

    if (*s == '\0') {
        return 0;
    }
    for (; *s; s++) {
        if (!isgraph((unsigned char)*s) || strchr(sep, *s)) {
            return 0;
        }
    }
    return 1;
}

static const char *mg_parse_statuses(cmd_parms *cmd, mg_rule_t *rule, const char *arg)
{
    const char *p = arg;

    /* Split by hand: "401,,403" is a typo and must not pass silently. */
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *tok =
            comma ? apr_pstrmemdup(cmd->temp_pool, p, (apr_size_t)(comma - p)) : p;
        unsigned long v;
        const char *why = NULL;

        if (mg_parse_uint(tok, 100, 599, &v, &why) != 0) {
            return apr_psprintf(cmd->pool,
                                "%s: bad status '%s' in '%s' (%s; expected "
                                "100-599, comma-separated)",
                                cmd->cmd->name, tok, arg, why ? why : "not a number");
        }
        if (rule->nstatus >= MG_RULE_MAX_STATUS) {
            return apr_psprintf(cmd->pool, "%s: at most %d statuses per rule", cmd->cmd->name,
                                MG_RULE_MAX_STATUS);
        }
        rule->status[rule->nstatus++] = (int)v;
        if (comma == NULL) {
            return NULL;
        }
        p = comma + 1;
    }
}

static const char *mg_set_failure(cmd_parms *cmd, void *dv, int argc, char *const argv[])
{
    mg_dir_conf_t *d = dv;
    mg_rule_t *rule;
    pcre2_code *re;
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    int i;

    if (argc < 3) {
        return apr_psprintf(cmd->pool, "%s: expected METHOD REGEX STATUS[,STATUS...]",
                            cmd->cmd->name);
    }
    rule = apr_pcalloc(cmd->pool, sizeof(*rule));
    if (strcmp(argv[0], "*") == 0) {
        rule->method = NULL;
    }
    else if (mg_is_token(argv[0])) {
        rule->method = apr_pstrdup(cmd->pool, argv[0]);
    }
    else {
        return apr_psprintf(cmd->pool, "%s: bad method '%s' (an HTTP method or *)",
                            cmd->cmd->name, argv[0]);
    }
    for (i = 2; i < argc; i++) {
        const char *err = mg_parse_statuses(cmd, rule, argv[i]);
        if (err) {
            return err;
        }
    }
    if (rule->nstatus == 0) {
        return apr_psprintf(cmd->pool, "%s: no status given", cmd->cmd->name);
    }
    re = pcre2_compile((PCRE2_SPTR)argv[1], PCRE2_ZERO_TERMINATED, 0, &errcode, &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        return apr_psprintf(cmd->pool, "%s: bad regex '%s' at offset %lu: %s", cmd->cmd->name,
                            argv[1], (unsigned long)erroff, (const char *)msg);
    }
    /* JIT is an optimisation: where it is unavailable the interpreter runs. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    apr_pool_cleanup_register(cmd->pool, re, mg_regex_cleanup, apr_pool_cleanup_null);
    rule->re = re;
    if (d->rules == NULL) {
        d->rules = apr_array_make(cmd->pool, 2, sizeof(mg_rule_t *));
    }
    APR_ARRAY_PUSH(d->rules, mg_rule_t *) = rule;
    return NULL;
}

static const char *mg_set_jail(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    const char *why = NULL;

    if (mg_rule_jail_name(arg, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' %s", cmd->cmd->name, arg, why);
    }
    d->jail = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *mg_set_maxretry(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    unsigned v;
    const char *why = NULL;

    if (mg_rule_maxretry(arg, &v, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a count from 1 to %d (%s)",
                            cmd->cmd->name, arg, MG_MAXRETRY_MAX, why);
    }
    d->maxretry = (int)v;
    return NULL;
}

/* Durations share one parser; cmd->info says which field. */
enum {
    MG_DUR_FINDTIME,
    MG_DUR_BANTIME,
    MG_DUR_MAXTIME,
    MG_DUR_SYNC
};

static const char *mg_set_duration(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    int which = (int)(apr_uintptr_t)cmd->info;
    apr_int64_t secs = 0;
    int64_t v = 0;
    const char *why = NULL;

    if (which == MG_DUR_SYNC) {
        const char *err = mg_global_only(cmd);
        if (err) {
            return err;
        }
    }
    /* the parser and the floor of 1 s are the tap's too */
    if (mg_rule_policy_duration(arg, &v, &why) != 0) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not a duration of at least 1 second "
                            "(%s); use e.g. 30, 45s, 10m, 1h, 2d, 1w or 1h30m",
                            cmd->cmd->name, arg, why);
    }
    secs = v;
    switch (which) {
    case MG_DUR_FINDTIME:
        d->findtime = secs;
        break;
    case MG_DUR_BANTIME:
        d->bantime = secs;
        break;
    case MG_DUR_MAXTIME:
        d->maxtime = secs;
        break;
    default:
        if (secs > MG_SYNC_INTERVAL_MAX) {
            return apr_psprintf(cmd->pool, "%s: '%s' is longer than a day", cmd->cmd->name,
                                arg);
        }
        mg_srv_mut(cmd)->sync_interval = secs;
        break;
    }
    return NULL;
}

static const char *mg_set_factor(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    const char *why = NULL;
    double v;

    if (mg_rule_factor(arg, &v, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from 1 to 1000 (%s)",
                            cmd->cmd->name, arg, why);
    }
    d->factor = v;
    return NULL;
}

static apr_status_t mg_cidrset_cleanup(void *data)
{
    mg_cidrset_free(data);
    return APR_SUCCESS;
}

static const char *mg_set_ignore(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    const char *why = NULL;

    /* Lines in one scope accumulate; the first line of a scope starts a
     * fresh set, which then replaces the inherited one in the merge. */
    if (d->ignore == NULL) {
        d->ignore = mg_cidrset_new();
        if (d->ignore == NULL) {
            return apr_psprintf(cmd->pool, "%s: out of memory", cmd->cmd->name);
        }
        apr_pool_cleanup_register(cmd->pool, d->ignore, mg_cidrset_cleanup,
                                  apr_pool_cleanup_null);
    }
    if (strcasecmp(arg, "none") == 0) {
        return NULL;
    }
    if (mg_cidrset_add(d->ignore, arg, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an address or CIDR range (%s)",
                            cmd->cmd->name, arg, why ? why : "invalid");
    }
    return NULL;
}

static const char *mg_set_v6prefix(cmd_parms *cmd, void *dv, const char *arg)
{
    unsigned v;
    const char *why = NULL;

    (void)dv;
    if (mg_rule_v6prefix(arg, &v, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a prefix length from 1 to 128 (%s)",
                            cmd->cmd->name, arg, why);
    }
    mg_srv_mut(cmd)->v6prefix = (int)v;
    return NULL;
}

static const char *mg_set_deny_status(cmd_parms *cmd, void *dv, const char *arg)
{
    mg_dir_conf_t *d = dv;
    unsigned long v;
    const char *why = NULL;

    if (mg_parse_uint(arg, 400, 599, &v, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an HTTP status from 400 to 599",
                            cmd->cmd->name, arg);
    }
    d->deny_status = (int)v;
    return NULL;
}

static const char *mg_set_table_size(cmd_parms *cmd, void *dv, const char *arg)
{
    unsigned long v;
    const char *why = NULL;
    const char *err = mg_global_only(cmd);

    (void)dv;
    if (err) {
        return err;
    }
    if (mg_parse_uint(arg, MG_TABLE_SIZE_MIN, MG_TABLE_SIZE_MAX, &v, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an entry count from %d to %d (%s)",
                            cmd->cmd->name, arg, MG_TABLE_SIZE_MIN, MG_TABLE_SIZE_MAX,
                            why ? why : "invalid");
    }
    mg_srv_mut(cmd)->table_size = (int)v;
    return NULL;
}

static const char *mg_set_prefix_floor(cmd_parms *cmd, void *dv, const char *a4, const char *a6)
{
    unsigned v4, v6;
    const char *why = NULL;
    const char *err = mg_global_only(cmd);

    (void)dv;
    if (err) {
        return err;
    }
    if (mg_rule_prefix_floor(a4, a6, &v4, &v6, &why) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s %s': %s", cmd->cmd->name, a4, a6, why);
    }
    mg_srv_mut(cmd)->floor4 = (int)v4;
    mg_srv_mut(cmd)->floor6 = (int)v6;
    return NULL;
}

#define MG_DIRSCOPE (RSRC_CONF | ACCESS_CONF)

const command_rec mg_cmds[] = {
    AP_INIT_FLAG("MailGuardEngine", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(mg_dir_conf_t, engine), MG_DIRSCOPE,
                 "On|Off: deny banned clients and watch logins in this scope (default Off)"),
    AP_INIT_TAKE1("MailGuardRedis", mg_set_redis, NULL, RSRC_CONF,
                  "Redis URL shared by every server, or none (default " MG_STORE_DEFAULT_URL
                  ")"),
    AP_INIT_TAKE1("MailGuardKeyPrefix", mg_set_prefix, NULL, RSRC_CONF,
                  "Prefix of every Redis key (default " MG_STORE_DEFAULT_PREFIX ")"),
    AP_INIT_ITERATE("MailGuardWatch", mg_set_watch, NULL, MG_DIRSCOPE,
                    "roundcube|squirrelmail|none: built-in login outcome rules"),
    AP_INIT_TAKE_ARGV("MailGuardFailure", mg_set_failure, NULL, MG_DIRSCOPE,
                      "METHOD PATH-REGEX STATUS[,STATUS...]: a failed login looks like this"),
    AP_INIT_TAKE1("MailGuardJail", mg_set_jail, NULL, MG_DIRSCOPE,
                  "Jail (policy) name failures are counted under (default webmail)"),
    AP_INIT_TAKE1("MailGuardMaxRetry", mg_set_maxretry, NULL, MG_DIRSCOPE,
                  "Failures within MailGuardFindTime that ban (default 10)"),
    AP_INIT_TAKE1("MailGuardFindTime", mg_set_duration, (void *)(apr_uintptr_t)MG_DUR_FINDTIME,
                  MG_DIRSCOPE, "Window in which failures count (default 10m)"),
    AP_INIT_TAKE1("MailGuardBanTime", mg_set_duration, (void *)(apr_uintptr_t)MG_DUR_BANTIME,
                  MG_DIRSCOPE, "Length of a ban (default 1h)"),
    AP_INIT_FLAG("MailGuardBanTimeIncrement", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(mg_dir_conf_t, increment), MG_DIRSCOPE,
                 "On|Off: lengthen bans of repeat offenders (default Off)"),
    AP_INIT_TAKE1("MailGuardBanTimeFactor", mg_set_factor, NULL, MG_DIRSCOPE,
                  "Escalation factor per previous ban (default 2)"),
    AP_INIT_TAKE1("MailGuardBanTimeMax", mg_set_duration, (void *)(apr_uintptr_t)MG_DUR_MAXTIME,
                  MG_DIRSCOPE, "Longest escalated ban (default 1w)"),
    AP_INIT_ITERATE("MailGuardIgnoreIP", mg_set_ignore, NULL, MG_DIRSCOPE,
                    "Addresses and CIDR ranges never counted (default none)"),
    AP_INIT_TAKE1("MailGuardIPv6Prefix", mg_set_v6prefix, NULL, RSRC_CONF,
                  "IPv6 clients count and ban by this prefix, 1-128 (default 64)"),
    AP_INIT_TAKE1("MailGuardDenyStatus", mg_set_deny_status, NULL, MG_DIRSCOPE,
                  "HTTP status for a banned client, 400-599 (default 403)"),
    AP_INIT_TAKE1("MailGuardBanTableSize", mg_set_table_size, NULL, RSRC_CONF,
                  "Capacity of the shared-memory ban mirror (default 1048576)"),
    AP_INIT_TAKE1("MailGuardSyncInterval", mg_set_duration, (void *)(apr_uintptr_t)MG_DUR_SYNC,
                  RSRC_CONF, "Check of the change log, twice per interval (default 5s)"),
    AP_INIT_TAKE2("MailGuardPrefixFloor", mg_set_prefix_floor, NULL, RSRC_CONF,
                  "V4 V6: the widest ban prefix taken from Redis (default 16 32)"),
    { NULL }
};
