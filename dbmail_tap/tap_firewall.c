/*
 * nftables / ipfw actions; see tap_firewall.h.
 */
#include "tap_firewall.h"
#include "tap_banset.h"
#include "tap_exec.h"
#include "tap_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXEC_TIMEOUT_MS 30000
/* A whole set of a million bans takes nft a few seconds. */
#define REPLACE_TIMEOUT_MS 300000
/* Replacement text is handed to nft in pieces of about this size. */
#define REPLACE_CHUNK (256 * 1024)

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

struct tap_fw {
    tap_banaction_t action;
    char nft_ports[TAP_MAX_PORTS * 7 + 8];
    char ipfw_ports[TAP_MAX_PORTS * 7 + 8];
    const char *prog;
    /* nftables: sets that exist, by [v4][family prefix length] */
    uint8_t sets[2][129];
    uint8_t qsets[2][129]; /* declared by the queue */
    sbuf_t q;              /* queued statements (nft) */
    size_t nq;
    /* ipfw: queued commands as (add/delete, key) */
    struct ipfw_op {
        int add;
        mg_addr_t key;
    } * ops;
    size_t nops, capops;
    /* bans the tap ends itself */
    tap_banset_t *timed;
    /* a replacement in progress */
    int replacing, merge;
    tap_spawn_t *rep;
    sbuf_t rq;
    uint8_t rsets[2][129];
    tap_banset_t *rtimed;
    int rep_failed;
    unsigned failures; /* consecutive, for logging once */
};

static void sb_add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    if (b->oom) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        r = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (r < 0) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL && (size_t)r < room) {
            b->len += (size_t)r;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < b->len + (size_t)r + 1) {
            ncap *= 2;
        }
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void sb_reset(sbuf_t *b)
{
    b->len = 0;
    b->oom = 0;
}

static void sb_free(sbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static const char *find_prog(const char *env, const char *a, const char *b)
{
    const char *e = getenv(env);

    if (e != NULL && e[0] == '/') {
        return e;
    }
    if (access(a, X_OK) == 0) {
        return a;
    }
    return b;
}

tap_fw_t *tap_fw_new(tap_banaction_t action, const uint16_t *ports, size_t nports)
{
    tap_fw_t *fw;
    size_t i, o1 = 0, o2 = 0;

    if (action == TAP_BANACTION_NONE) {
        return NULL;
    }
    fw = calloc(1, sizeof(*fw));
    if (fw == NULL) {
        return NULL;
    }
    fw->timed = tap_banset_new();
    if (fw->timed == NULL) {
        free(fw);
        return NULL;
    }
    fw->action = action;
    for (i = 0; i < nports && i < TAP_MAX_PORTS; i++) {
        o1 += (size_t)snprintf(fw->nft_ports + o1, sizeof(fw->nft_ports) - o1, "%s%u",
                               i ? ", " : "", (unsigned)ports[i]);
        o2 += (size_t)snprintf(fw->ipfw_ports + o2, sizeof(fw->ipfw_ports) - o2, "%s%u",
                               i ? "," : "", (unsigned)ports[i]);
    }
    if (action == TAP_BANACTION_NFTABLES) {
        fw->prog = find_prog("DBMAIL_TAP_NFT", "/usr/sbin/nft", "/sbin/nft");
    }
    else {
        fw->prog = find_prog("DBMAIL_TAP_IPFW", "/sbin/ipfw", "/usr/sbin/ipfw");
    }
    return fw;
}

void tap_fw_free(tap_fw_t *fw)
{
    if (fw == NULL) {
        return;
    }
    if (fw->replacing) {
        tap_fw_replace_abort(fw);
    }
    sb_free(&fw->q);
    sb_free(&fw->rq);
    free(fw->ops);
    tap_banset_free(fw->timed);
    free(fw);
}

size_t tap_fw_timed(const tap_fw_t *fw)
{
    return fw != NULL ? tap_banset_count(fw->timed) : 0;
}

static void failed(tap_fw_t *fw, const char *what, int rc, char *out)
{
    size_t l = strlen(out);

    while (l > 0 && (out[l - 1] == '\n' || out[l - 1] == ' ')) {
        out[--l] = '\0';
    }
    tap_error("MG0640: %s %s failed (status %d): %s; the firewall is rebuilt", fw->prog, what,
              rc, out[0] ? out : "no output");
    fw->failures++;
}

static void succeeded(tap_fw_t *fw)
{
    if (fw->failures > 0) {
        tap_notice("MG0641: firewall commands work again");
        fw->failures = 0;
    }
}

static int run(tap_fw_t *fw, const char *const argv[], const char *in, size_t inlen, int quiet)
{
    char out[1024];
    int rc = tap_exec(argv, in, inlen, out, sizeof(out), EXEC_TIMEOUT_MS);

    if (rc != 0 && !quiet) {
        failed(fw, argv[1] ? argv[1] : "", rc, out);
    }
    return rc == 0 ? 0 : -1;
}

/* Does the firewall end this ban itself (a timeout), or must the tap? */
static int self_timed(const tap_fw_t *fw, int64_t expiry, int64_t now)
{
    return fw->action == TAP_BANACTION_NFTABLES && expiry != MG_EXPIRY_NEVER
           && expiry - now <= TAP_NFT_TIMEOUT_MAX;
}

/* Remember (or forget) that the tap must end key itself. */
static void track(tap_banset_t *set, const tap_fw_t *fw, const mg_addr_t *key, int64_t expiry,
                  int64_t now)
{
    if (expiry == MG_EXPIRY_NEVER || self_timed(fw, expiry, now)) {
        tap_banset_del(set, key);
    }
    else if (tap_banset_put(set, key, expiry) != 0) {
        tap_error("MG0646: out of memory: a ban beyond the firewall's timeouts will not "
                  "be lifted when it ends");
    }
}

/* ---- nftables text ---- */

static int is_host(const mg_addr_t *k)
{
    return k->plen == 128;
}

/* "v4", "v6", "v4_24", "v6_64": the set of key's family and length. */
static void nft_set_name(const mg_addr_t *k, char *buf, size_t size)
{
    int v4 = mg_addr_is_v4(k);

    if (is_host(k)) {
        snprintf(buf, size, "%s", v4 ? "v4" : "v6");
    }
    else {
        snprintf(buf, size, "%s_%u", v4 ? "v4" : "v6", mg_addr_family_plen(k));
    }
}

/* The element: the address, or a prefix's network address (the rule
 * masks the source to the set's length). */
static void nft_elem_text(const mg_addr_t *k, char *buf, size_t size)
{
    mg_addr_t host = *k;

    host.plen = 128;
    mg_addr_format(&host, buf, size);
}

/* Declare the set of key's family and length, with its rule. */
static void nft_declare(const tap_fw_t *fw, sbuf_t *b, const mg_addr_t *k)
{
    int v4 = mg_addr_is_v4(k);
    char name[16], match[96];

    nft_set_name(k, name, sizeof(name));
    sb_add(b, "add set inet " TAP_NFT_TABLE " %s { type %s; flags timeout; }\n", name,
           v4 ? "ipv4_addr" : "ipv6_addr");
    if (is_host(k)) {
        snprintf(match, sizeof(match), "%s saddr @%s", v4 ? "ip" : "ip6", name);
    }
    else {
        mg_addr_t mask;
        char mtxt[MG_ADDR_STRLEN];

        /* all ones in the family (IPv4 in its mapped form), then cut */
        memset(mask.a, 0xff, 16);
        if (v4) {
            memset(mask.a, 0, 10);
        }
        mask.plen = 128;
        mg_addr_mask(&mask, mg_addr_family_plen(k));
        mask.plen = 128;
        mg_addr_format(&mask, mtxt, sizeof(mtxt));
        snprintf(match, sizeof(match), "%s saddr & %s @%s", v4 ? "ip" : "ip6", mtxt, name);
    }
    if (fw->nft_ports[0]) {
        sb_add(b, "add rule inet " TAP_NFT_TABLE " input tcp dport { %s } %s drop\n",
               fw->nft_ports, match);
    }
    else {
        sb_add(b, "add rule inet " TAP_NFT_TABLE " input meta l4proto tcp %s drop\n", match);
    }
}

/* Make sure key's set exists in the text being built (have: sets already
 * there; mark: sets declared by this text). */
static void nft_ensure(const tap_fw_t *fw, sbuf_t *b, const uint8_t have[2][129],
                       uint8_t mark[2][129], const mg_addr_t *k)
{
    int v4 = mg_addr_is_v4(k);
    unsigned len = mg_addr_family_plen(k);

    if (!have[v4][len] && !mark[v4][len]) {
        nft_declare(fw, b, k);
        mark[v4][len] = 1;
    }
}

/* Gone from its set whether it was there or not: add, then delete (the
 * add makes the delete safe). */
static void nft_unban(sbuf_t *b, const mg_addr_t *k)
{
    char name[16], e[MG_ADDR_STRLEN];

    nft_set_name(k, name, sizeof(name));
    nft_elem_text(k, e, sizeof(e));
    sb_add(b,
           "add element inet " TAP_NFT_TABLE " %s { %s }\n"
           "delete element inet " TAP_NFT_TABLE " %s { %s }\n",
           name, e, name, e);
}

/* A ban whatever the set held before: out of the set, then in again with
 * the new timeout (a plain add would not change it on older kernels). */
static void nft_ban(sbuf_t *b, const mg_addr_t *k, int64_t expiry, int64_t now)
{
    char name[16], e[MG_ADDR_STRLEN];

    nft_unban(b, k);
    nft_set_name(k, name, sizeof(name));
    nft_elem_text(k, e, sizeof(e));
    if (expiry != MG_EXPIRY_NEVER && expiry - now <= TAP_NFT_TIMEOUT_MAX) {
        sb_add(b, "add element inet " TAP_NFT_TABLE " %s { %s timeout %llds }\n", name, e,
               (long long)(expiry - now < 1 ? 1 : expiry - now));
    }
    else {
        sb_add(b, "add element inet " TAP_NFT_TABLE " %s { %s }\n", name, e);
    }
}

/* The table from scratch: chain and the host sets. */
static void nft_table(const tap_fw_t *fw, sbuf_t *b, int merge, uint8_t sets[2][129])
{
    mg_addr_t h4, h6;
    const char *why;

    if (!merge) {
        sb_add(b, "add table inet " TAP_NFT_TABLE "\n"
                  "delete table inet " TAP_NFT_TABLE "\n");
        memset(sets, 0, 2 * 129);
    }
    sb_add(b, "add table inet " TAP_NFT_TABLE "\n"
              "add chain inet " TAP_NFT_TABLE " input { type filter hook input priority -10; "
              "policy accept; }\n");
    mg_addr_parse("0.0.0.1", &h4, &why);
    mg_addr_parse("::1", &h6, &why);
    /* The host sets always exist, so the table looks the same from the
     * first ban on. */
    if (!sets[1][32]) {
        nft_declare(fw, b, &h4);
        sets[1][32] = 1;
    }
    if (!sets[0][128]) {
        nft_declare(fw, b, &h6);
        sets[0][128] = 1;
    }
}

/* ---- ipfw ---- */

static int ipfw_entry(tap_fw_t *fw, const char *verb, const mg_addr_t *k)
{
    char txt[MG_ADDR_STRLEN];
    const char *argv[] = { fw->prog, "-q", "table", TAP_IPFW_TABLE, verb, txt, NULL };

    mg_addr_format(k, txt, sizeof(txt));
    return run(fw, argv, NULL, 0, 0);
}

static int ipfw_queue(tap_fw_t *fw, int add, const mg_addr_t *key)
{
    if (fw->nops == fw->capops) {
        size_t cap = fw->capops ? fw->capops * 2 : 64;
        struct ipfw_op *v = realloc(fw->ops, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        fw->ops = v;
        fw->capops = cap;
    }
    fw->ops[fw->nops].add = add;
    fw->ops[fw->nops].key = *key;
    fw->nops++;
    return 0;
}

static int ipfw_table(tap_fw_t *fw)
{
    const char *del_rule[] = { fw->prog, "-q", "delete", TAP_IPFW_RULE, NULL };
    const char *destroy[] = { fw->prog, "-q", "table", TAP_IPFW_TABLE, "destroy", NULL };
    const char *create[] = { fw->prog, "-q",   "table", TAP_IPFW_TABLE,
                             "create", "type", "addr",  NULL };

    /* the rule and table may not exist yet: their removal may fail */
    run(fw, del_rule, NULL, 0, 1);
    run(fw, destroy, NULL, 0, 1);
    return run(fw, create, NULL, 0, 0);
}

static int ipfw_rule(tap_fw_t *fw)
{
    const char *rule_ports[] = { fw->prog, "-q",  "add",      TAP_IPFW_RULE,
                                 "deny",   "tcp", "from",     "table(" TAP_IPFW_TABLE ")",
                                 "to",     "any", "dst-port", fw->ipfw_ports,
                                 NULL };
    const char *rule_all[] = { fw->prog, "-q",  "add",  TAP_IPFW_RULE,
                               "deny",   "tcp", "from", "table(" TAP_IPFW_TABLE ")",
                               "to",     "any", NULL };

    return run(fw, fw->ipfw_ports[0] ? rule_ports : rule_all, NULL, 0, 0);
}

/* ---- changes ---- */

void tap_fw_ban(tap_fw_t *fw, const mg_addr_t *key, int64_t expiry, int64_t now)
{
    if (fw == NULL) {
        return;
    }
    track(fw->timed, fw, key, expiry, now);
    if (fw->action == TAP_BANACTION_NFTABLES) {
        nft_ensure(fw, &fw->q, fw->sets, fw->qsets, key);
        nft_ban(&fw->q, key, expiry, now);
        fw->nq++;
        if (fw->replacing) {
            track(fw->rtimed, fw, key, expiry, now);
            nft_ensure(fw, &fw->rq, fw->rsets, fw->rsets, key);
            nft_ban(&fw->rq, key, expiry, now);
        }
    }
    else if (ipfw_queue(fw, 1, key) != 0) {
        fw->q.oom = 1;
    }
}

void tap_fw_unban(tap_fw_t *fw, const mg_addr_t *key)
{
    int v4, len;

    if (fw == NULL) {
        return;
    }
    tap_banset_del(fw->timed, key);
    if (fw->action != TAP_BANACTION_NFTABLES) {
        if (ipfw_queue(fw, 0, key) != 0) {
            fw->q.oom = 1;
        }
        return;
    }
    v4 = mg_addr_is_v4(key);
    len = (int)mg_addr_family_plen(key);
    /* no set for its length: nothing of that length was ever banned */
    if (fw->sets[v4][len] || fw->qsets[v4][len]) {
        nft_unban(&fw->q, key);
        fw->nq++;
    }
    if (fw->replacing) {
        tap_banset_del(fw->rtimed, key);
        if (fw->rsets[v4][len]) {
            nft_unban(&fw->rq, key);
        }
    }
}

typedef struct ender {
    tap_fw_t *fw;
} ender_t;

static void end_one(void *baton, const mg_addr_t *key)
{
    tap_fw_t *fw = ((ender_t *)baton)->fw;

    /* queued like an unban; the set no longer tracks it */
    tap_fw_unban(fw, key);
}

int tap_fw_flush(tap_fw_t *fw, int64_t now)
{
    ender_t e = { fw };
    int rc = 0;

    if (fw == NULL) {
        return 0;
    }
    tap_banset_sweep(fw->timed, now, end_one, &e);
    if (fw->q.oom) {
        tap_error("MG0646: out of memory queueing firewall changes: the firewall is rebuilt");
        sb_reset(&fw->q);
        fw->nq = fw->nops = 0;
        memset(fw->qsets, 0, sizeof(fw->qsets));
        return -1;
    }
    if (fw->action == TAP_BANACTION_NFTABLES) {
        const char *argv[] = { fw->prog, "-f", "-", NULL };

        if (fw->nq == 0) {
            return 0;
        }
        rc = run(fw, argv, fw->q.p, fw->q.len, 0);
        if (rc == 0) {
            for (int f = 0; f < 2; f++) {
                for (int l = 0; l < 129; l++) {
                    fw->sets[f][l] |= fw->qsets[f][l];
                }
            }
        }
        sb_reset(&fw->q);
        fw->nq = 0;
        memset(fw->qsets, 0, sizeof(fw->qsets));
    }
    else {
        for (size_t i = 0; i < fw->nops && rc == 0; i++) {
            rc = ipfw_entry(fw, fw->ops[i].add ? "add" : "delete", &fw->ops[i].key);
        }
        fw->nops = 0;
    }
    if (rc == 0) {
        succeeded(fw);
    }
    return rc;
}

/* ---- replacing the whole set ---- */

/* Hand what is buffered to nft once there is enough of it (or all of it). */
static int rep_push(tap_fw_t *fw, int all)
{
    if (fw->rep_failed || fw->rq.oom) {
        return -1;
    }
    if (fw->rq.len == 0 || (!all && fw->rq.len < REPLACE_CHUNK)) {
        return 0;
    }
    if (tap_spawn_write(fw->rep, fw->rq.p, fw->rq.len, REPLACE_TIMEOUT_MS) != 0) {
        fw->rep_failed = 1;
        return -1;
    }
    sb_reset(&fw->rq);
    return 0;
}

int tap_fw_replace_begin(tap_fw_t *fw, int merge, int64_t now)
{
    (void)now;
    if (fw == NULL) {
        return 0;
    }
    if (fw->replacing) {
        tap_fw_replace_abort(fw);
    }
    fw->merge = merge;
    fw->rep_failed = 0;
    fw->rtimed = tap_banset_new();
    if (fw->rtimed == NULL) {
        return -1;
    }
    if (fw->action == TAP_BANACTION_NFTABLES) {
        const char *argv[] = { fw->prog, "-f", "-", NULL };
        char err[256];

        fw->rep = tap_spawn(argv, err, sizeof(err));
        if (fw->rep == NULL) {
            failed(fw, "-f", -1, err);
            tap_banset_free(fw->rtimed);
            fw->rtimed = NULL;
            return -1;
        }
        sb_reset(&fw->rq);
        memcpy(fw->rsets, fw->sets, sizeof(fw->rsets));
        nft_table(fw, &fw->rq, merge, fw->rsets);
    }
    else if (!merge && ipfw_table(fw) != 0) {
        tap_banset_free(fw->rtimed);
        fw->rtimed = NULL;
        return -1;
    }
    fw->replacing = 1;
    return 0;
}

int tap_fw_replace_add(tap_fw_t *fw, const mg_ban_t *bans, size_t n, int64_t now)
{
    if (fw == NULL) {
        return 0;
    }
    if (fw->action != TAP_BANACTION_NFTABLES) {
        for (size_t i = 0; i < n; i++) {
            if (bans[i].expiry <= now) {
                continue;
            }
            track(fw->rtimed, fw, &bans[i].key, bans[i].expiry, now);
            if (ipfw_entry(fw, "add", &bans[i].key) != 0 && !fw->merge) {
                return -1;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char name[16], e[MG_ADDR_STRLEN];
        int64_t left = bans[i].expiry - now;

        if (bans[i].expiry <= now) {
            continue;
        }
        track(fw->rtimed, fw, &bans[i].key, bans[i].expiry, now);
        nft_ensure(fw, &fw->rq, fw->rsets, fw->rsets, &bans[i].key);
        nft_set_name(&bans[i].key, name, sizeof(name));
        nft_elem_text(&bans[i].key, e, sizeof(e));
        if (bans[i].expiry != MG_EXPIRY_NEVER && left <= TAP_NFT_TIMEOUT_MAX) {
            sb_add(&fw->rq, "add element inet " TAP_NFT_TABLE " %s { %s timeout %llds }\n",
                   name, e, (long long)left);
        }
        else {
            sb_add(&fw->rq, "add element inet " TAP_NFT_TABLE " %s { %s }\n", name, e);
        }
    }
    return rep_push(fw, 0);
}

/* The new set's bans the tap must end, kept from now on. */
static void take_timed(tap_fw_t *fw)
{
    if (fw->merge) {
        /* both: the kept bans and the new ones (a put overwrites) */
        tap_banset_free(fw->rtimed);
    }
    else {
        tap_banset_free(fw->timed);
        fw->timed = fw->rtimed;
    }
    fw->rtimed = NULL;
}

int tap_fw_replace_commit(tap_fw_t *fw)
{
    char out[1024];
    int rc;

    if (fw == NULL) {
        return 0;
    }
    if (!fw->replacing) {
        return -1;
    }
    fw->replacing = 0;
    if (fw->action != TAP_BANACTION_NFTABLES) {
        take_timed(fw);
        return fw->merge ? 0 : ipfw_rule(fw);
    }
    if (rep_push(fw, 1) != 0) {
        tap_spawn_kill(fw->rep);
        fw->rep = NULL;
        tap_error("MG0640: %s -f: could not hand over the new ban set: the firewall is "
                  "rebuilt",
                  fw->prog);
        fw->failures++;
        tap_banset_free(fw->rtimed);
        fw->rtimed = NULL;
        return -1;
    }
    rc = tap_spawn_finish(fw->rep, out, sizeof(out), REPLACE_TIMEOUT_MS);
    fw->rep = NULL;
    if (rc != 0) {
        failed(fw, "-f", rc, out);
        tap_banset_free(fw->rtimed);
        fw->rtimed = NULL;
        return -1;
    }
    memcpy(fw->sets, fw->rsets, sizeof(fw->sets));
    take_timed(fw);
    succeeded(fw);
    return 0;
}

void tap_fw_replace_abort(tap_fw_t *fw)
{
    if (fw == NULL || !fw->replacing) {
        return;
    }
    fw->replacing = 0;
    if (fw->rep != NULL) {
        /* killed before it read the end: nft commits nothing */
        tap_spawn_kill(fw->rep);
        fw->rep = NULL;
    }
    sb_reset(&fw->rq);
    tap_banset_free(fw->rtimed);
    fw->rtimed = NULL;
}
