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
#include "tap_config_int.h"
#include "tap_ini.h"
#include "mg_rules.h"

#define MAX_FILE         (4 * 1024 * 1024)
#define DEFAULT_IGNOREIP "127.0.0.1/8 ::1"

/* The key tables are kept in lines of words, not the formatter's columns. */
/* clang-format off */
static const char *const global_keys[] = {
    "redis", "prefix", "statefile", "metrics_file", "banaction", "port", "prefixfloor",
    NULL,
};

static const char *const jail_keys[] = {
    "enabled", "filter", "failregex", "ignoreregex", "logpath", "maxretry", "findtime", "bantime",
    "bantime.increment", "bantime.factor", "bantime.maxtime", "ignoreip", "ipv6prefix",
    NULL,
};

/* Fail2Ban keys a migrated jail.local may carry: named in the error so
 * the user knows why they are refused. */
static const char *const f2b_keys[] = {
    "action", "backend", "usedns", "ignoreself", "ignorecommand", "destemail", "sender", "mta",
    "protocol", "chain", "logencoding", "datepattern", "journalmatch", "maxlines", "before",
    "after", "mode", "bantime.rndtime", "bantime.formula", "bantime.multipliers",
    "bantime.overalljails", "banaction_allports", "maxmatches", "prefregex", "dbfile",
    "dbpurgeage", "loglevel", "logtarget", "socket", "pidfile", NULL,
};
/* clang-format on */

static int in_list(const char *const *list, const char *k)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0)
            return 1;
    return 0;
}

/* Check every key of a section: known, and in the right scope. */
static int check_keys(tap_cfg_ctx_t *c, const tap_ini_section_t *s, int is_default)
{
    for (size_t i = 0; i < s->nentries; i++) {
        const tap_ini_entry_t *e = &s->entries[i];
        if (in_list(jail_keys, e->key))
            continue;
        if (in_list(global_keys, e->key)) {
            if (is_default)
                continue;
            return tap_cfg_fail(c, e->line,
                                "%s: only valid in [DEFAULT] (it applies to the whole "
                                "daemon), not in [%s]",
                                e->key, s->name);
        }
        if (in_list(f2b_keys, e->key))
            return tap_cfg_fail(c, e->line,
                                "%s: unknown key (a Fail2Ban setting dbmail_tap does "
                                "not use: remove it)",
                                e->key);
        return tap_cfg_fail(c, e->line, "%s: unknown key", e->key);
    }
    return 0;
}

static int add_ignoreip(void *b, const char *tok)
{
    tap_cfg_tokctx_t *t = b;
    const char *why = "bad address";

    if (mg_cidrset_add(t->target, tok, &why) != 0)
        return tap_cfg_fail(t->c, tap_cfg_token_line(t->e, tok),
                            "%s: not an address or CIDR range (%s): '%s'", t->e->key, why, tok);
    return 0;
}

typedef struct pathlist {
    char **v;
    size_t n;
} pathlist_t;

static int add_logpath(void *b, const char *tok)
{
    tap_cfg_tokctx_t *t = b;
    pathlist_t *pl = t->target;
    unsigned line = tap_cfg_token_line(t->e, tok);

    if (tok[0] != '/')
        return tap_cfg_fail(t->c, line, "%s: not an absolute path: '%s'", t->e->key, tok);
    if (strpbrk(tok, "*?[") != NULL)
        return tap_cfg_fail(t->c, line, "%s: wildcards are not supported, list each file: '%s'",
                            t->e->key, tok);
    if (strlen(tok) >= 4095)
        return tap_cfg_fail(t->c, line, "%s: path too long", t->e->key);
    for (size_t i = 0; i < pl->n; i++)
        if (strcmp(pl->v[i], tok) == 0)
            return 0;
    char **v = realloc(pl->v, (pl->n + 1) * sizeof(*v));
    if (v == NULL)
        return tap_cfg_fail(t->c, line, "out of memory");
    pl->v = v;
    if ((pl->v[pl->n] = strdup(tok)) == NULL)
        return tap_cfg_fail(t->c, line, "out of memory");
    pl->n++;
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
static int add_regexes(tap_cfg_ctx_t *c, tap_jail_t *j, const tap_ini_entry_t *e, int ignore)
{
    char merr[TAP_MATCH_ERRLEN];

    for (size_t i = 0; i < e->nitems; i++) {
        const char *re = e->items[i];
        if (re[0] == '\0')
            continue;
        int rc = ignore ? tap_matcher_add_ignoreregex(j->matcher, re, merr, sizeof(merr))
                        : tap_matcher_add_failregex(j->matcher, re, merr, sizeof(merr));
        if (rc != 0)
            return tap_cfg_fail(c, e->item_lines[i], "%s: %s", e->key, merr);
        if (ignore ? strv_push(&j->ignoreregex, &j->nignoreregex, re)
                   : strv_push(&j->failregex, &j->nfailregex, re))
            return tap_cfg_fail(c, e->item_lines[i], "out of memory");
    }
    return 0;
}

/*
 * Build jail j from section s (NULL when building [DEFAULT]'s own
 * template) over def.  Checks that need a real jail (logpath, a pattern)
 * only apply to enabled jails.
 */
static int build_jail(tap_cfg_ctx_t *c, const tap_ini_section_t *s,
                      const tap_ini_section_t *def, tap_jail_t *j)
{
    const tap_ini_section_t *own = s ? s : def;
    const tap_ini_entry_t *e;
    tap_cfg_tokctx_t t = { c, NULL, NULL };

    memset(j, 0, sizeof(*j));
    j->name = strdup(own ? own->name : "DEFAULT");
    j->line = own ? own->line : 0;
    mg_policy_defaults(&j->policy);
    j->policy.maxretry = TAP_DEF_MAXRETRY;
    j->ipv6prefix = MG_V6PREFIX_DEFAULT;
    j->ignoreip = mg_cidrset_new();
    j->matcher = tap_matcher_new();
    if (j->name == NULL || j->ignoreip == NULL || j->matcher == NULL)
        return tap_cfg_fail(c, j->line, "out of memory");

    if ((e = lookup(s, def, "enabled")) && tap_cfg_bool(c, e, &j->enabled))
        return -1;
    if ((e = lookup(s, def, "maxretry"))
        && tap_cfg_count(c, e, mg_rule_maxretry, "not a count from 1 to 100000",
                         &j->policy.maxretry))
        return -1;
    if ((e = lookup(s, def, "findtime")) && tap_cfg_duration(c, e, &j->policy.findtime))
        return -1;
    if ((e = lookup(s, def, "bantime")) && tap_cfg_duration(c, e, &j->policy.bantime))
        return -1;
    if ((e = lookup(s, def, "bantime.increment")) && tap_cfg_bool(c, e, &j->policy.increment))
        return -1;
    if ((e = lookup(s, def, "bantime.factor")) && tap_cfg_factor(c, e, &j->policy.factor))
        return -1;
    if ((e = lookup(s, def, "bantime.maxtime")) && tap_cfg_duration(c, e, &j->policy.maxtime))
        return -1;
    if ((e = lookup(s, def, "ipv6prefix"))
        && tap_cfg_count(c, e, mg_rule_v6prefix, "not a prefix length 1-128", &j->ipv6prefix))
        return -1;

    /* ignoreip replaces the default list, as in Fail2Ban */
    e = lookup(s, def, "ignoreip");
    if (e != NULL) {
        t.e = e;
        t.target = j->ignoreip;
        if (tap_cfg_tokens(e->value, " \t\r\n,", add_ignoreip, &t) != 0)
            return -1;
    }
    else {
        const char *why;
        if (mg_cidrset_add(j->ignoreip, "127.0.0.1/8", &why) != 0
            || mg_cidrset_add(j->ignoreip, "::1", &why) != 0)
            return tap_cfg_fail(c, j->line, "ignoreip: default list refused (%s)", why);
    }

    if ((e = lookup(s, def, "logpath")) != NULL) {
        pathlist_t pl = { NULL, 0 };
        t.e = e;
        t.target = &pl;
        int rc = tap_cfg_tokens(e->value, " \t\r\n", add_logpath, &t);
        j->logpaths = pl.v;
        j->nlogpaths = pl.n;
        if (rc != 0)
            return -1;
    }

    if ((e = lookup(s, def, "filter")) != NULL) {
        char merr[TAP_MATCH_ERRLEN];
        const char *f = tap_cfg_single(c, e);
        if (f == NULL)
            return -1;
        if (strchr(f, '[') != NULL)
            return tap_cfg_fail(c, e->line,
                                "%s: filter options (name[...]) are not supported: '%s'",
                                e->key, f);
        if (f[0] != '\0' && tap_matcher_add_filter(j->matcher, f, merr, sizeof(merr)) != 0)
            return tap_cfg_fail(c, e->line, "%s: %s", e->key, merr);
        if (f[0] != '\0' && (j->filter = strdup(f)) == NULL)
            return tap_cfg_fail(c, e->line, "out of memory");
    }
    if ((e = lookup(s, def, "failregex")) != NULL && add_regexes(c, j, e, 0) != 0)
        return -1;
    if ((e = lookup(s, def, "ignoreregex")) != NULL && add_regexes(c, j, e, 1) != 0)
        return -1;

    if (s != NULL && j->enabled) {
        if (j->nlogpaths == 0)
            return tap_cfg_fail(c, j->line, "[%s]: enabled jail has no logpath", j->name);
        if (tap_matcher_count(j->matcher) == 0)
            return tap_cfg_fail(c, j->line,
                                "[%s]: enabled jail has neither filter nor failregex", j->name);
    }
    return 0;
}

static int check_jail_name(tap_cfg_ctx_t *c, const tap_ini_section_t *s)
{
    const char *why = NULL;

    if (strcmp(s->name, "INCLUDES") == 0)
        return tap_cfg_fail(c, s->line,
                            "[INCLUDES] is not supported: put everything in one file");
    if (mg_rule_jail_name(s->name, &why) != 0)
        return tap_cfg_fail(c, s->line, "bad jail name [%s]: %s", s->name, why);
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
    tap_cfg_ctx_t c = { name, err, errlen };
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
        tap_cfg_fail(&c, 0, "out of memory");
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
    if (tap_cfg_globals(&c, def, cfg) != 0)
        goto end;
    if (build_jail(&c, NULL, def, &tmpl) != 0)
        goto end;
    size_t njails = ini->nsections - (def ? 1 : 0);
    cfg->jails = calloc(njails ? njails : 1, sizeof(*cfg->jails));
    if (cfg->jails == NULL) {
        tap_cfg_fail(&c, 0, "out of memory");
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
