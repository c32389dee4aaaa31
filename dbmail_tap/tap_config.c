/*
 * dbmail_tap's configuration: keys, defaults, scoping and validation on
 * top of the INI reader.
 *
 * Scoping: redis, prefix, statefile, metrics_file, banaction, port and prefixfloor
 * belong to the whole daemon (one Redis, one firewall set for every ban) and are valid
 * in [DEFAULT] only.  Every other key is a jail key: a jail takes its own
 * value, else [DEFAULT]'s, else the built-in default, whatever the order
 * of the sections.  [DEFAULT]'s jail keys are validated even when no jail
 * uses them, so a typo there never waits for the day a jail needs it.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap_config.h"
#include "tap_ini.h"
#include "mg_rules.h"

#define MAX_FILE (4 * 1024 * 1024)
#define DEFAULT_PORTS "143,993,110,995,4190"
#define DEFAULT_IGNOREIP "127.0.0.1/8 ::1"

typedef struct ctx {
    const char *fname;
    char *err;
    size_t errlen;
} ctx_t;

__attribute__((format(printf, 3, 4)))
static int fail(ctx_t *c, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_ini_verror(c->err, c->errlen, c->fname, line, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *const global_keys[] = {
    "redis", "prefix", "statefile", "metrics_file", "banaction", "port", "prefixfloor", NULL
};

static const char *const jail_keys[] = {
    "enabled", "filter", "failregex", "ignoreregex", "logpath", "maxretry", "findtime",
    "bantime", "bantime.increment", "bantime.factor", "bantime.maxtime", "ignoreip",
    "ipv6prefix", NULL
};

/* Fail2Ban keys a migrated jail.local may carry: named in the error so
 * the user knows why they are refused. */
static const char *const f2b_keys[] = {
    "action", "backend", "usedns", "ignoreself", "ignorecommand", "destemail", "sender",
    "mta", "protocol", "chain", "logencoding", "datepattern", "journalmatch", "maxlines",
    "before", "after", "mode", "bantime.rndtime", "bantime.formula", "bantime.multipliers",
    "bantime.overalljails", "banaction_allports", "maxmatches", "prefregex", "dbfile",
    "dbpurgeage", "loglevel", "logtarget", "socket", "pidfile", NULL
};

static int in_list(const char *const *list, const char *k)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0)
            return 1;
    return 0;
}

/* Check every key of a section: known, and in the right scope. */
static int check_keys(ctx_t *c, const tap_ini_section_t *s, int is_default)
{
    for (size_t i = 0; i < s->nentries; i++) {
        const tap_ini_entry_t *e = &s->entries[i];
        if (in_list(jail_keys, e->key))
            continue;
        if (in_list(global_keys, e->key)) {
            if (is_default)
                continue;
            return fail(c, e->line, "%s: only valid in [DEFAULT] (it applies to the whole "
                        "daemon), not in [%s]", e->key, s->name);
        }
        if (in_list(f2b_keys, e->key))
            return fail(c, e->line, "%s: unknown key (a Fail2Ban setting dbmail_tap does "
                        "not use: remove it)", e->key);
        return fail(c, e->line, "%s: unknown key", e->key);
    }
    return 0;
}

/* ---- value parsers: 0, or -1 with the message ---- */

/*
 * The one value of a single-valued key: its only non-empty line ("key =" on
 * one line and the value indented below is fine).  NULL with the message
 * when there are several.
 */
static const char *single(ctx_t *c, const tap_ini_entry_t *e)
{
    const char *v = "";
    size_t n = 0;

    for (size_t i = 0; i < e->nitems; i++) {
        if (e->items[i][0] == '\0')
            continue;
        if (n++ > 0) {
            /* the redis URL is not quoted at all: it may hold a password in
             * a form the masking does not recognise */
            if (strcmp(e->key, "redis") == 0)
                fail(c, e->item_lines[i], "%s: takes a single value, not several lines",
                     e->key);
            else
                fail(c, e->item_lines[i], "%s: takes a single value, not several lines: '%s'",
                     e->key, e->items[i]);
            return NULL;
        }
        v = e->items[i];
    }
    return v;
}

static int parse_bool(ctx_t *c, const tap_ini_entry_t *e, int *out)
{
    const char *why;
    const char *v = single(c, e);

    if (v == NULL)
        return -1;
    if (mg_parse_bool(v, out, &why) != 0)
        return fail(c, e->line, "%s: not a boolean (true/false, yes/no, on/off, 1/0): '%s'",
                    e->key, v);
    return 0;
}

/* The value checks are the module's too (mg_rules.h): a jail moved
 * between Apache and the tap means the same thing in both. */
typedef int (*count_rule_fn)(const char *s, unsigned *out, const char **why);

static int parse_count(ctx_t *c, const tap_ini_entry_t *e, count_rule_fn rule,
                       const char *what, unsigned *out)
{
    const char *why = "invalid";
    const char *s = single(c, e);

    if (s == NULL)
        return -1;
    if (rule(s, out, &why) != 0)
        return fail(c, e->line, "%s: %s (%s): '%s'", e->key, what, why, s);
    return 0;
}

static int parse_duration(ctx_t *c, const tap_ini_entry_t *e, int64_t *out)
{
    const char *why = "bad duration";
    const char *s = single(c, e);

    if (s == NULL)
        return -1;
    if (mg_rule_policy_duration(s, out, &why) != 0)
        return fail(c, e->line, "%s: not a duration of at least 1s like 30s, 10m, 1h, 2d, "
                    "1w (%s): '%s'", e->key, why, s);
    return 0;
}

static int parse_factor(ctx_t *c, const tap_ini_entry_t *e, double *out)
{
    const char *why = "invalid";
    const char *s = single(c, e);

    if (s == NULL)
        return -1;
    if (mg_rule_factor(s, out, &why) != 0)
        return fail(c, e->line, "%s: not a number from 1 to 1000 (%s): '%s'", e->key, why, s);
    return 0;
}

/* Split on whitespace and commas; calls fn for each token. */
static int tokens(const char *s, const char *seps, int (*fn)(void *, const char *), void *b)
{
    char tok[4096];

    while (*s) {
        size_t skip = strspn(s, seps);
        s += skip;
        if (*s == '\0')
            break;
        size_t n = strcspn(s, seps);
        if (n >= sizeof(tok))
            n = sizeof(tok) - 1;    /* the parser of the token refuses it */
        memcpy(tok, s, n);
        tok[n] = '\0';
        s += strcspn(s, seps);
        int rc = fn(b, tok);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct tokctx {
    ctx_t *c;
    const tap_ini_entry_t *e;
    void *target;
} tokctx_t;

/* The physical line of the item holding token tok (for multi-line values). */
static unsigned token_line(const tap_ini_entry_t *e, const char *tok)
{
    for (size_t i = 0; i < e->nitems; i++)
        if (strstr(e->items[i], tok) != NULL)
            return e->item_lines[i];
    return e->line;
}

static int add_ignoreip(void *b, const char *tok)
{
    tokctx_t *t = b;
    const char *why = "bad address";

    if (mg_cidrset_add(t->target, tok, &why) != 0)
        return fail(t->c, token_line(t->e, tok), "%s: not an address or CIDR range (%s): '%s'",
                    t->e->key, why, tok);
    return 0;
}

typedef struct pathlist {
    char **v;
    size_t n;
} pathlist_t;

static int add_logpath(void *b, const char *tok)
{
    tokctx_t *t = b;
    pathlist_t *pl = t->target;
    unsigned line = token_line(t->e, tok);

    if (tok[0] != '/')
        return fail(t->c, line, "%s: not an absolute path: '%s'", t->e->key, tok);
    if (strpbrk(tok, "*?[") != NULL)
        return fail(t->c, line, "%s: wildcards are not supported, list each file: '%s'",
                    t->e->key, tok);
    if (strlen(tok) >= 4095)
        return fail(t->c, line, "%s: path too long", t->e->key);
    for (size_t i = 0; i < pl->n; i++)
        if (strcmp(pl->v[i], tok) == 0)
            return 0;
    char **v = realloc(pl->v, (pl->n + 1) * sizeof(*v));
    if (v == NULL)
        return fail(t->c, line, "out of memory");
    pl->v = v;
    if ((pl->v[pl->n] = strdup(tok)) == NULL)
        return fail(t->c, line, "out of memory");
    pl->n++;
    return 0;
}

static int add_port(void *b, const char *tok)
{
    tokctx_t *t = b;
    tap_config_t *cfg = t->target;
    unsigned long v;
    const char *why;

    if (mg_parse_uint(tok, 1, 65535, &v, &why) != 0)
        return fail(t->c, t->e->line, "%s: not a port number 1-65535 (names such as 'imap' "
                    "are not accepted): '%s'", t->e->key, tok);
    for (size_t i = 0; i < cfg->nports; i++)
        if (cfg->ports[i] == v)
            return 0;
    if (cfg->nports == TAP_MAX_PORTS)
        return fail(t->c, t->e->line, "%s: more than %d ports", t->e->key, TAP_MAX_PORTS);
    cfg->ports[cfg->nports++] = (uint16_t)v;
    return 0;
}

/* ---- jails ---- */

static void jail_clear(tap_jail_t *j)
{
    free(j->name);
    mg_cidrset_free(j->ignoreip);
    for (size_t i = 0; i < j->nlogpaths; i++)
        free(j->logpaths[i]);
    free(j->logpaths);
    free(j->filter);
    for (size_t i = 0; i < j->nfailregex; i++)
        free(j->failregex[i]);
    free(j->failregex);
    for (size_t i = 0; i < j->nignoreregex; i++)
        free(j->ignoreregex[i]);
    free(j->ignoreregex);
    tap_matcher_free(j->matcher);
    memset(j, 0, sizeof(*j));
}

/* The jail's own entry for key, else [DEFAULT]'s. */
static const tap_ini_entry_t *lookup(const tap_ini_section_t *s, const tap_ini_section_t *def,
                                     const char *key)
{
    const tap_ini_entry_t *e = tap_ini_get(s, key);

    return e ? e : tap_ini_get(def, key);
}

static int strv_push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));

    if (nv == NULL)
        return -1;
    *v = nv;
    if ((nv[*n] = strdup(s)) == NULL)
        return -1;
    (*n)++;
    return 0;
}

/* failregex / ignoreregex: one regex per non-empty line of the value. */
static int add_regexes(ctx_t *c, tap_jail_t *j, const tap_ini_entry_t *e, int ignore)
{
    char merr[TAP_MATCH_ERRLEN];

    for (size_t i = 0; i < e->nitems; i++) {
        const char *re = e->items[i];
        if (re[0] == '\0')
            continue;
        int rc = ignore ? tap_matcher_add_ignoreregex(j->matcher, re, merr, sizeof(merr))
                        : tap_matcher_add_failregex(j->matcher, re, merr, sizeof(merr));
        if (rc != 0)
            return fail(c, e->item_lines[i], "%s: %s", e->key, merr);
        if (ignore ? strv_push(&j->ignoreregex, &j->nignoreregex, re)
                   : strv_push(&j->failregex, &j->nfailregex, re))
            return fail(c, e->item_lines[i], "out of memory");
    }
    return 0;
}

/*
 * Build jail j from section s (NULL when building [DEFAULT]'s own
 * template) over def.  Checks that need a real jail (logpath, a pattern)
 * only apply to enabled jails.
 */
static int build_jail(ctx_t *c, const tap_ini_section_t *s, const tap_ini_section_t *def,
                      tap_jail_t *j)
{
    const tap_ini_section_t *own = s ? s : def;
    const tap_ini_entry_t *e;
    tokctx_t t = { c, NULL, NULL };

    memset(j, 0, sizeof(*j));
    j->name = strdup(own ? own->name : "DEFAULT");
    j->line = own ? own->line : 0;
    mg_policy_defaults(&j->policy);
    j->policy.maxretry = TAP_DEF_MAXRETRY;
    j->ipv6prefix = MG_V6PREFIX_DEFAULT;
    j->ignoreip = mg_cidrset_new();
    j->matcher = tap_matcher_new();
    if (j->name == NULL || j->ignoreip == NULL || j->matcher == NULL)
        return fail(c, j->line, "out of memory");

    if ((e = lookup(s, def, "enabled")) && parse_bool(c, e, &j->enabled))
        return -1;
    if ((e = lookup(s, def, "maxretry"))
        && parse_count(c, e, mg_rule_maxretry, "not a count from 1 to 100000",
                       &j->policy.maxretry))
        return -1;
    if ((e = lookup(s, def, "findtime")) && parse_duration(c, e, &j->policy.findtime))
        return -1;
    if ((e = lookup(s, def, "bantime")) && parse_duration(c, e, &j->policy.bantime))
        return -1;
    if ((e = lookup(s, def, "bantime.increment")) && parse_bool(c, e, &j->policy.increment))
        return -1;
    if ((e = lookup(s, def, "bantime.factor")) && parse_factor(c, e, &j->policy.factor))
        return -1;
    if ((e = lookup(s, def, "bantime.maxtime")) && parse_duration(c, e, &j->policy.maxtime))
        return -1;
    if ((e = lookup(s, def, "ipv6prefix"))
        && parse_count(c, e, mg_rule_v6prefix, "not a prefix length 1-128", &j->ipv6prefix))
        return -1;

    /* ignoreip replaces the default list, as in Fail2Ban */
    e = lookup(s, def, "ignoreip");
    if (e != NULL) {
        t.e = e;
        t.target = j->ignoreip;
        if (tokens(e->value, " \t\r\n,", add_ignoreip, &t) != 0)
            return -1;
    } else {
        const char *why;
        if (mg_cidrset_add(j->ignoreip, "127.0.0.1/8", &why) != 0
            || mg_cidrset_add(j->ignoreip, "::1", &why) != 0)
            return fail(c, j->line, "ignoreip: default list refused (%s)", why);
    }

    if ((e = lookup(s, def, "logpath")) != NULL) {
        pathlist_t pl = { NULL, 0 };
        t.e = e;
        t.target = &pl;
        int rc = tokens(e->value, " \t\r\n", add_logpath, &t);
        j->logpaths = pl.v;
        j->nlogpaths = pl.n;
        if (rc != 0)
            return -1;
    }

    if ((e = lookup(s, def, "filter")) != NULL) {
        char merr[TAP_MATCH_ERRLEN];
        const char *f = single(c, e);
        if (f == NULL)
            return -1;
        if (strchr(f, '[') != NULL)
            return fail(c, e->line, "%s: filter options (name[...]) are not supported: '%s'",
                        e->key, f);
        if (f[0] != '\0' && tap_matcher_add_filter(j->matcher, f, merr, sizeof(merr)) != 0)
            return fail(c, e->line, "%s: %s", e->key, merr);
        if (f[0] != '\0' && (j->filter = strdup(f)) == NULL)
            return fail(c, e->line, "out of memory");
    }
    if ((e = lookup(s, def, "failregex")) != NULL && add_regexes(c, j, e, 0) != 0)
        return -1;
    if ((e = lookup(s, def, "ignoreregex")) != NULL && add_regexes(c, j, e, 1) != 0)
        return -1;

    if (s != NULL && j->enabled) {
        if (j->nlogpaths == 0)
            return fail(c, j->line, "[%s]: enabled jail has no logpath", j->name);
        if (tap_matcher_count(j->matcher) == 0)
            return fail(c, j->line, "[%s]: enabled jail has neither filter nor failregex",
                        j->name);
    }
    return 0;
}

static int check_jail_name(ctx_t *c, const tap_ini_section_t *s)
{
    const char *why = NULL;

    if (strcmp(s->name, "INCLUDES") == 0)
        return fail(c, s->line, "[INCLUDES] is not supported: put everything in one file");
    if (mg_rule_jail_name(s->name, &why) != 0)
        return fail(c, s->line, "bad jail name [%s]: %s", s->name, why);
    return 0;
}

/* ---- globals ---- */

/*
 * metrics_file: an absolute path to a file, written next to its temporary
 * "FILE.tmp" (tap_metrics.h), so neither may end in '/' or name the
 * statefile; no spaces or control characters (a typo, not a file name
 * anyone means).  Absent: no metrics file.
 */
static int build_metrics_file(ctx_t *c, const tap_ini_entry_t *e, tap_config_t *cfg)
{
    const char *v = single(c, e);
    size_t n;

    if (v == NULL)
        return -1;
    n = strlen(v);
    if (v[0] != '/')
        return fail(c, e->line, "metrics_file: not an absolute path: '%s'", v);
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)v[i]))
            return fail(c, e->line, "metrics_file: no spaces or control characters: '%s'", v);
    if (v[n - 1] == '/' || (n >= 2 && strcmp(v + n - 2, "/.") == 0)
        || (n >= 3 && strcmp(v + n - 3, "/..") == 0))
        return fail(c, e->line, "metrics_file: names a directory, not a file: '%s'", v);
    if (n > TAP_METRICS_PATH_MAX)
        return fail(c, e->line, "metrics_file: path longer than %d bytes", TAP_METRICS_PATH_MAX);
    if (strcmp(v, cfg->statefile) == 0)
        return fail(c, e->line, "metrics_file: the same file as statefile: '%s'", v);
    cfg->metrics_file = strdup(v);
    if (cfg->metrics_file == NULL)
        return fail(c, e->line, "out of memory");
    return 0;
}

static int build_globals(ctx_t *c, const tap_ini_section_t *def, tap_config_t *cfg)
{
    const tap_ini_entry_t *e;
    const char *why = "bad URL";
    tokctx_t t = { c, NULL, cfg };

    const char *v;

    e = tap_ini_get(def, "redis");
    if (e != NULL && (v = single(c, e)) == NULL)
        return -1;
    cfg->redis = strdup(e ? v : MG_STORE_DEFAULT_URL);
    if (cfg->redis == NULL)
        return fail(c, e ? e->line : 0, "out of memory");
    /* the value is not echoed: it may hold a password */
    if (mg_store_url_parse(cfg->redis, &cfg->redis_url, &why) != 0)
        return fail(c, e ? e->line : 0, "redis: not a Redis URL "
                    "(redis://[[user]:password@]host[:port][/db] or unix:/path[?db=N]): %s",
                    why);

    e = tap_ini_get(def, "prefix");
    if (e != NULL && (v = single(c, e)) == NULL)
        return -1;
    cfg->prefix = strdup(e ? v : MG_STORE_DEFAULT_PREFIX);
    if (cfg->prefix == NULL)
        return fail(c, e ? e->line : 0, "out of memory");
    if (e != NULL && mg_rule_key_prefix(cfg->prefix, &why) != 0)
        return fail(c, e->line, "prefix: %s: '%s'", why, cfg->prefix);

    e = tap_ini_get(def, "statefile");
    if (e != NULL && (v = single(c, e)) == NULL)
        return -1;
    cfg->statefile = strdup(e ? v : TAP_DEFAULT_STATEFILE);
    if (cfg->statefile == NULL)
        return fail(c, e ? e->line : 0, "out of memory");
    if (e != NULL && (cfg->statefile[0] != '/' || strpbrk(cfg->statefile, " \t\n") != NULL))
        return fail(c, e->line, "statefile: not an absolute path: '%s'", cfg->statefile);

    e = tap_ini_get(def, "metrics_file");
    if (e != NULL && build_metrics_file(c, e, cfg) != 0)
        return -1;

    e = tap_ini_get(def, "banaction");
    cfg->banaction = TAP_BANACTION_NONE;
    if (e != NULL) {
        if ((v = single(c, e)) == NULL)
            return -1;
        if (strcmp(v, "none") == 0)
            cfg->banaction = TAP_BANACTION_NONE;
        else if (strcmp(v, "nftables") == 0)
            cfg->banaction = TAP_BANACTION_NFTABLES;
        else if (strcmp(v, "ipfw") == 0)
            cfg->banaction = TAP_BANACTION_IPFW;
        else
            return fail(c, e->line, "banaction: not one of none, nftables, ipfw: '%s'", v);
    }

    /* "16 32": the widest IPv4 and IPv6 prefix bans the firewall takes
     * from Redis, as MailGuardPrefixFloor for the module */
    cfg->floor4 = MG_FLOOR4_DEFAULT;
    cfg->floor6 = MG_FLOOR6_DEFAULT;
    e = tap_ini_get(def, "prefixfloor");
    if (e != NULL) {
        char a4[16], a6[16], extra[2];
        if (sscanf(e->value, " %15s %15s %1s", a4, a6, extra) != 2
            || mg_rule_prefix_floor(a4, a6, &cfg->floor4, &cfg->floor6, &why) != 0)
            return fail(c, e->line, "prefixfloor: not two prefix lengths, IPv4 1-32 and "
                        "IPv6 1-128, like '16 32': '%s'", e->value);
    }

    e = tap_ini_get(def, "port");
    if (e != NULL) {
        t.e = e;
        if (tokens(e->value, " \t\r\n,", add_port, &t) != 0)
            return -1;
        if (cfg->nports == 0)
            return fail(c, e->line, "port: empty list");
    } else {
        tap_ini_entry_t dflt;
        memset(&dflt, 0, sizeof(dflt));
        dflt.key = (char *)"port";
        t.e = &dflt;
        if (tokens(DEFAULT_PORTS, ",", add_port, &t) != 0)
            return -1;
    }
    return 0;
}

/* ---- public ---- */

void tap_config_free(tap_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->njails; i++)
        jail_clear(&cfg->jails[i]);
    free(cfg->jails);
    free(cfg->path);
    free(cfg->redis);
    free(cfg->prefix);
    free(cfg->statefile);
    free(cfg->metrics_file);
    memset(&cfg->redis_url, 0, sizeof(cfg->redis_url));
    free(cfg);
}

int tap_config_parse(const char *text, size_t len, const char *name, tap_config_t **out,
                     char *err, size_t errlen)
{
    ctx_t c = { name, err, errlen };
    tap_ini_t *ini = NULL;
    tap_config_t *cfg = NULL;
    tap_jail_t tmpl;
    int rc = -1;

    *out = NULL;
    memset(&tmpl, 0, sizeof(tmpl));
    if (tap_ini_parse(text, len, name, &ini, err, errlen) != 0)
        return -1;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || (cfg->path = strdup(name)) == NULL) {
        fail(&c, 0, "out of memory");
        goto end;
    }
    const tap_ini_section_t *def = tap_ini_section(ini, "DEFAULT");
    for (size_t i = 0; i < ini->nsections; i++) {
        const tap_ini_section_t *s = &ini->sections[i];
        if (s != def && check_jail_name(&c, s) != 0)
            goto end;
        if (check_keys(&c, s, s == def) != 0)
            goto end;
    }
    if (build_globals(&c, def, cfg) != 0)
        goto end;
    if (build_jail(&c, NULL, def, &tmpl) != 0)
        goto end;
    size_t njails = ini->nsections - (def ? 1 : 0);
    cfg->jails = calloc(njails ? njails : 1, sizeof(*cfg->jails));
    if (cfg->jails == NULL) {
        fail(&c, 0, "out of memory");
        goto end;
    }
    for (size_t i = 0; i < ini->nsections; i++) {
        const tap_ini_section_t *s = &ini->sections[i];
        if (s == def)
            continue;
        tap_jail_t *j = &cfg->jails[cfg->njails++];
        if (build_jail(&c, s, def, j) != 0)
            goto end;
    }
    *out = cfg;
    cfg = NULL;
    rc = 0;
end:
    jail_clear(&tmpl);
    tap_config_free(cfg);
    tap_ini_free(ini);
    return rc;
}

int tap_config_load(const char *path, tap_config_t **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto end;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
        snprintf(err, errlen, "%s: cannot read: %s", path,
                 S_ISREG(st.st_mode) ? "larger than 4 MiB" : "not a regular file");
        goto end;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: cannot read: out of memory", path);
        goto end;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto end;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    rc = tap_config_parse(buf, len, path, out, err, errlen);
end:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

const tap_jail_t *tap_config_jail(const tap_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->njails; i++)
        if (strcmp(cfg->jails[i].name, name) == 0)
            return &cfg->jails[i];
    return NULL;
}

size_t tap_config_enabled(const tap_config_t *cfg)
{
    size_t n = 0;

    for (size_t i = 0; i < cfg->njails; i++)
        n += cfg->jails[i].enabled != 0;
    return n;
}

void tap_config_store_cfg(const tap_config_t *cfg, int connect_timeout_ms,
                          int command_timeout_ms, mg_store_cfg_t *out)
{
    memset(out, 0, sizeof(*out));
    out->url = cfg->redis_url;
    out->prefix = cfg->prefix;
    out->connect_timeout_ms = connect_timeout_ms;
    out->command_timeout_ms = command_timeout_ms;
}

const char *tap_banaction_name(tap_banaction_t a)
{
    switch (a) {
    case TAP_BANACTION_NFTABLES:
        return "nftables";
    case TAP_BANACTION_IPFW:
        return "ipfw";
    case TAP_BANACTION_NONE:
    default:
        return "none";
    }
}
