/*
 * The keys of dbmail_tap's [DEFAULT] section that belong to the whole
 * daemon (one Redis, one firewall set): redis, prefix, statefile,
 * metrics_file, banaction, port, prefixfloor.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mg_policy.h"
#include "mg_rules.h"
#include "tap_config_int.h"

#define DEFAULT_PORTS "143,993,110,995,4190"

static int add_port(void *b, const char *tok)
{
    tap_cfg_tokctx_t *t = b;
    tap_config_t *cfg = t->target;
    unsigned long v;
    const char *why;

    if (mg_parse_uint(tok, 1, 65535, &v, &why) != 0)
        return tap_cfg_fail(t->c, t->e->line,
                            "%s: not a port number 1-65535 (names such as 'imap' "
                            "are not accepted): '%s'",
                            t->e->key, tok);
    for (size_t i = 0; i < cfg->nports; i++)
        if (cfg->ports[i] == v)
            return 0;
    if (cfg->nports == TAP_MAX_PORTS)
        return tap_cfg_fail(t->c, t->e->line, "%s: more than %d ports", t->e->key,
                            TAP_MAX_PORTS);
    cfg->ports[cfg->nports++] = (uint16_t)v;
    return 0;
}

/*
 * metrics_file: an absolute path to a file, written next to its temporary
 * "FILE.tmp" (tap_metrics.h), so neither may end in '/' or name the
 * statefile; no spaces or control characters (a typo, not a file name
 * anyone means).  Absent: no metrics file.
 */
static int build_metrics_file(tap_cfg_ctx_t *c, const tap_ini_entry_t *e, tap_config_t *cfg)
{
    const char *v = tap_cfg_single(c, e);
    size_t n;

    if (v == NULL)
        return -1;
    n = strlen(v);
    if (v[0] != '/')
        return tap_cfg_fail(c, e->line, "metrics_file: not an absolute path: '%s'", v);
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)v[i]))
            return tap_cfg_fail(c, e->line,
                                "metrics_file: no spaces or control characters: '%s'", v);
    if (v[n - 1] == '/' || (n >= 2 && strcmp(v + n - 2, "/.") == 0)
        || (n >= 3 && strcmp(v + n - 3, "/..") == 0))
        return tap_cfg_fail(c, e->line, "metrics_file: names a directory, not a file: '%s'", v);
    if (n > TAP_METRICS_PATH_MAX)
        return tap_cfg_fail(c, e->line, "metrics_file: path longer than %d bytes",
                            TAP_METRICS_PATH_MAX);
    if (strcmp(v, cfg->statefile) == 0)
        return tap_cfg_fail(c, e->line, "metrics_file: the same file as statefile: '%s'", v);
    cfg->metrics_file = strdup(v);
    if (cfg->metrics_file == NULL)
        return tap_cfg_fail(c, e->line, "out of memory");
    return 0;
}

int tap_cfg_globals(tap_cfg_ctx_t *c, const tap_ini_section_t *def, tap_config_t *cfg)
{
    const tap_ini_entry_t *e;
    const char *why = "bad URL";
    tap_cfg_tokctx_t t = { c, NULL, cfg };

    const char *v;

    e = tap_ini_get(def, "redis");
    if (e != NULL && (v = tap_cfg_single(c, e)) == NULL)
        return -1;
    cfg->redis = strdup(e ? v : MG_STORE_DEFAULT_URL);
    if (cfg->redis == NULL)
        return tap_cfg_fail(c, e ? e->line : 0, "out of memory");
    /* the value is not echoed: it may hold a password */
    if (mg_store_url_parse(cfg->redis, &cfg->redis_url, &why) != 0)
        return tap_cfg_fail(
            c, e ? e->line : 0,
            "redis: not a Redis URL "
            "(redis://[[user]:password@]host[:port][/db] or unix:/path[?db=N]): %s",
            why);

    e = tap_ini_get(def, "prefix");
    if (e != NULL && (v = tap_cfg_single(c, e)) == NULL)
        return -1;
    cfg->prefix = strdup(e ? v : MG_STORE_DEFAULT_PREFIX);
    if (cfg->prefix == NULL)
        return tap_cfg_fail(c, e ? e->line : 0, "out of memory");
    if (e != NULL && mg_rule_key_prefix(cfg->prefix, &why) != 0)
        return tap_cfg_fail(c, e->line, "prefix: %s: '%s'", why, cfg->prefix);

    e = tap_ini_get(def, "statefile");
    if (e != NULL && (v = tap_cfg_single(c, e)) == NULL)
        return -1;
    cfg->statefile = strdup(e ? v : TAP_DEFAULT_STATEFILE);
    if (cfg->statefile == NULL)
        return tap_cfg_fail(c, e ? e->line : 0, "out of memory");
    if (e != NULL && (cfg->statefile[0] != '/' || strpbrk(cfg->statefile, " \t\n") != NULL))
        return tap_cfg_fail(c, e->line, "statefile: not an absolute path: '%s'",
                            cfg->statefile);

    e = tap_ini_get(def, "metrics_file");
    if (e != NULL && build_metrics_file(c, e, cfg) != 0)
        return -1;

    e = tap_ini_get(def, "banaction");
    cfg->banaction = TAP_BANACTION_NONE;
    if (e != NULL) {
        if ((v = tap_cfg_single(c, e)) == NULL)
            return -1;
        if (strcmp(v, "none") == 0)
            cfg->banaction = TAP_BANACTION_NONE;
        else if (strcmp(v, "nftables") == 0)
            cfg->banaction = TAP_BANACTION_NFTABLES;
        else if (strcmp(v, "ipfw") == 0)
            cfg->banaction = TAP_BANACTION_IPFW;
        else
            return tap_cfg_fail(c, e->line, "banaction: not one of none, nftables, ipfw: '%s'",
                                v);
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
            return tap_cfg_fail(c, e->line,
                                "prefixfloor: not two prefix lengths, IPv4 1-32 and "
                                "IPv6 1-128, like '16 32': '%s'",
                                e->value);
    }

    e = tap_ini_get(def, "port");
    if (e != NULL) {
        t.e = e;
        if (tap_cfg_tokens(e->value, " \t\r\n,", add_port, &t) != 0)
            return -1;
        if (cfg->nports == 0)
            return tap_cfg_fail(c, e->line, "port: empty list");
    }
    else {
        tap_ini_entry_t dflt;
        memset(&dflt, 0, sizeof(dflt));
        dflt.key = (char *)"port";
        t.e = &dflt;
        if (tap_cfg_tokens(DEFAULT_PORTS, ",", add_port, &t) != 0)
            return -1;
    }
    return 0;
}
