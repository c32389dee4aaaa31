/*
 * nftables / ipfw actions; see tap_firewall.h.
 */
#include "tap_firewall.h"
#include "tap_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXEC_TIMEOUT_MS 30000

struct tap_fw {
    tap_banaction_t action;
    char nft_ports[TAP_MAX_PORTS * 7 + 8];
    char ipfw_ports[TAP_MAX_PORTS * 7 + 8];
    const char *prog;
    tap_fw_ban_t *applied;      /* sorted by key */
    size_t n, cap;
    int need_full;
    unsigned failures;          /* consecutive, for logging once */
};

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

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
        {
            size_t ncap = b->cap ? b->cap * 2 : 4096;
            char *np;
            while (ncap < b->len + (size_t)r + 1) {
                ncap *= 2;
            }
            np = realloc(b->p, ncap);
            if (np == NULL) {
                b->oom = 1;
                return;
            }
            b->p = np;
            b->cap = ncap;
        }
    }
}

static int key_cmp(const mg_addr_t *x, const mg_addr_t *y)
{
    int c = memcmp(x->a, y->a, 16);
    if (c != 0) {
        return c;
    }
    return (int)x->plen - (int)y->plen;
}

static int ban_cmp(const void *x, const void *y)
{
    return key_cmp(&((const tap_fw_ban_t *)x)->key, &((const tap_fw_ban_t *)y)->key);
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
    fw->action = action;
    fw->need_full = 1;
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
    if (fw != NULL) {
        free(fw->applied);
        free(fw);
    }
}

int tap_fw_banlist_add(void *baton, const mg_addr_t *key, int64_t expiry)
{
    tap_fw_banlist_t *b = baton;

    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 256;
        tap_fw_ban_t *nv = realloc(b->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return -1;
        }
        b->v = nv;
        b->cap = ncap;
    }
    b->v[b->n].key = *key;
    b->v[b->n].expiry = expiry;
    b->n++;
    return 0;
}

int tap_fw_exec(const char *const argv[], const char *in, size_t inlen,
                char *out, size_t outlen, int timeout_ms)
{
    int inp[2] = { -1, -1 }, outp[2] = { -1, -1 };
    size_t written = 0, got = 0;
    struct timespec t0, t1;
    pid_t pid;
    int status = -1, rc = -1;

    if (outlen > 0) {
        out[0] = '\0';
    }
    if (pipe2(inp, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        snprintf(out, outlen, "pipe: %s", strerror(errno));
        goto end;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(out, outlen, "fork: %s", strerror(errno));
        goto end;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        sigset_t none;
        struct sigaction sa;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &sa, NULL);
        dup2(inp[0], 0);
        dup2(outp[1], 1);
        dup2(outp[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(inp[0]);
    inp[0] = -1;
    close(outp[1]);
    outp[1] = -1;
    if (inlen == 0) {
        close(inp[1]);
        inp[1] = -1;
    }
    else {
        fcntl(inp[1], F_SETFL, O_NONBLOCK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (outp[0] >= 0 || inp[1] >= 0) {
        struct pollfd pf[2];
        int np = 0, left;
        long el;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        el = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
        left = timeout_ms - (int)el;
        if (left <= 0) {
            kill(pid, SIGKILL);
            snprintf(out, outlen, "%s: killed after %d ms", argv[0], timeout_ms);
            break;
        }
        if (outp[0] >= 0) {
            pf[np].fd = outp[0];
            pf[np].events = POLLIN;
            np++;
        }
        if (inp[1] >= 0) {
            pf[np].fd = inp[1];
            pf[np].events = POLLOUT;
            np++;
        }
        if (poll(pf, (nfds_t)np, left) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        for (int i = 0; i < np; i++) {
            if (pf[i].revents == 0) {
                continue;
            }
            if (pf[i].fd == outp[0]) {
                char tmp[1024];
                ssize_t r = read(outp[0], tmp, sizeof(tmp));
                if (r > 0) {
                    size_t k = (size_t)r;
                    if (outlen > 0 && got < outlen - 1) {
                        if (k > outlen - 1 - got) {
                            k = outlen - 1 - got;
                        }
                        memcpy(out + got, tmp, k);
                        got += k;
                        out[got] = '\0';
                    }
                }
                else if (r == 0 || errno != EINTR) {
                    close(outp[0]);
                    outp[0] = -1;
                }
            }
            else {
                ssize_t w = write(inp[1], in + written, inlen - written);
                if (w > 0) {
                    written += (size_t)w;
                }
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == inlen) {
                    close(inp[1]);
                    inp[1] = -1;
                }
            }
        }
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
        if (rc == 127 && got == 0) {
            snprintf(out, outlen, "%s: cannot be run", argv[0]);
        }
    }
end:
    for (int i = 0; i < 2; i++) {
        if (inp[i] >= 0) {
            close(inp[i]);
        }
        if (outp[i] >= 0) {
            close(outp[i]);
        }
    }
    return rc;
}

static int run(tap_fw_t *fw, const char *const argv[], const char *in, size_t inlen,
               int quiet)
{
    char out[1024];
    int rc = tap_fw_exec(argv, in, inlen, out, sizeof(out), EXEC_TIMEOUT_MS);

    if (rc != 0 && !quiet) {
        size_t l = strlen(out);
        while (l > 0 && (out[l - 1] == '\n' || out[l - 1] == ' ')) {
            out[--l] = '\0';
        }
        tap_error("MG0640: %s %s failed (status %d): %s; retrying at the next sync",
                  argv[0], argv[1] ? argv[1] : "", rc, out[0] ? out : "no output");
        fw->failures++;
    }
    return rc == 0 ? 0 : -1;
}

/* ---- nftables ---- */

static const char *nft_set(const mg_addr_t *k)
{
    int v4 = mg_addr_is_v4(k);
    if (k->plen == 128) {
        return v4 ? "v4" : "v6";
    }
    return v4 ? "v4net" : "v6net";
}

static void nft_elem(sbuf_t *b, const char *verb, const tap_fw_ban_t *e, int with_timeout,
                     int64_t now)
{
    char txt[MG_ADDR_STRLEN];
    int64_t left = e->expiry - now;

    mg_addr_format(&e->key, txt, sizeof(txt));
    if (with_timeout && e->expiry != MG_EXPIRY_NEVER && left <= TAP_NFT_TIMEOUT_MAX) {
        sb_add(b, "%s element inet " TAP_NFT_TABLE " %s { %s timeout %llds }\n", verb,
               nft_set(&e->key), txt, (long long)(left < 1 ? 1 : left));
    }
    else {
        sb_add(b, "%s element inet " TAP_NFT_TABLE " %s { %s }\n", verb, nft_set(&e->key), txt);
    }
}

/* Prefix sets refuse overlapping intervals: a prefix inside one already
 * listed (sorted order puts the wider one first) is covered; skip it. */
static int covered(const tap_fw_ban_t *bans, size_t i, const mg_addr_t **last_net)
{
    const mg_addr_t *k = &bans[i].key;
    if (k->plen == 128) {
        return 0;
    }
    if (*last_net != NULL && mg_addr_in(k, *last_net)) {
        return 1;
    }
    *last_net = k;
    return 0;
}

static int nft_full(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n, int64_t now)
{
    const char *argv[] = { fw->prog, "-f", "-", NULL };
    const mg_addr_t *last_net = NULL;
    sbuf_t b = { 0 };
    const char *fams[4][2] = { { "ip", "v4" }, { "ip", "v4net" }, { "ip6", "v6" }, { "ip6", "v6net" } };
    int rc;

    sb_add(&b, "add table inet " TAP_NFT_TABLE "\n"
               "delete table inet " TAP_NFT_TABLE "\n"
               "add table inet " TAP_NFT_TABLE "\n"
               "add set inet " TAP_NFT_TABLE " v4 { type ipv4_addr; flags timeout; }\n"
               "add set inet " TAP_NFT_TABLE " v4net { type ipv4_addr; flags interval, timeout; }\n"
               "add set inet " TAP_NFT_TABLE " v6 { type ipv6_addr; flags timeout; }\n"
               "add set inet " TAP_NFT_TABLE " v6net { type ipv6_addr; flags interval, timeout; }\n"
               "add chain inet " TAP_NFT_TABLE " input { type filter hook input priority -10; policy accept; }\n");
    for (int i = 0; i < 4; i++) {
        if (fw->nft_ports[0]) {
            sb_add(&b, "add rule inet " TAP_NFT_TABLE " input tcp dport { %s } %s saddr @%s drop\n",
                   fw->nft_ports, fams[i][0], fams[i][1]);
        }
        else {
            sb_add(&b, "add rule inet " TAP_NFT_TABLE " input meta l4proto tcp %s saddr @%s drop\n",
                   fams[i][0], fams[i][1]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!covered(bans, i, &last_net)) {
            nft_elem(&b, "add", &bans[i], 1, now);
        }
    }
    if (b.oom) {
        free(b.p);
        return -1;
    }
    rc = run(fw, argv, b.p, b.len, 0);
    free(b.p);
    return rc;
}

static int nft_changes(tap_fw_t *fw, const tap_fw_ban_t *add, size_t na,
                       const tap_fw_ban_t *del, size_t nd, int64_t now)
{
    const char *argv[] = { fw->prog, "-f", "-", NULL };
    sbuf_t b = { 0 };
    int rc;

    /* "add" first makes the "delete" safe when the kernel has already
     * expired the element; the final add sets the new timeout. */
    for (size_t i = 0; i < nd; i++) {
        nft_elem(&b, "add", &del[i], 0, now);
        nft_elem(&b, "delete", &del[i], 0, now);
    }
    for (size_t i = 0; i < na; i++) {
        nft_elem(&b, "add", &add[i], 0, now);
        nft_elem(&b, "delete", &add[i], 0, now);
        nft_elem(&b, "add", &add[i], 1, now);
    }
    if (b.oom) {
        free(b.p);
        return -1;
    }
    rc = run(fw, argv, b.p, b.len, 0);
    free(b.p);
    return rc;
}

/* ---- ipfw ---- */

static int ipfw_entry(tap_fw_t *fw, const char *verb, const mg_addr_t *k, const char *table)
{
    char txt[MG_ADDR_STRLEN];
    const char *argv[] = { fw->prog, "-q", "table", table, verb, txt, NULL };

    mg_addr_format(k, txt, sizeof(txt));
    return run(fw, argv, NULL, 0, 0);
}

static int ipfw_full(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n)
{
    const char *del_rule[] = { fw->prog, "-q", "delete", TAP_IPFW_RULE, NULL };
    const char *destroy[] = { fw->prog, "-q", "table", TAP_IPFW_TABLE, "destroy", NULL };
    const char *create[] = { fw->prog, "-q", "table", TAP_IPFW_TABLE, "create", "type", "addr", NULL };
    const char *rule_ports[] = { fw->prog, "-q", "add", TAP_IPFW_RULE, "deny", "tcp", "from",
                                 "table(" TAP_IPFW_TABLE ")", "to", "any", "dst-port",
                                 fw->ipfw_ports, NULL };
    const char *rule_all[] = { fw->prog, "-q", "add", TAP_IPFW_RULE, "deny", "tcp", "from",
                               "table(" TAP_IPFW_TABLE ")", "to", "any", NULL };

    /* the rule and table may not exist yet: their removal may fail */
    run(fw, del_rule, NULL, 0, 1);
    run(fw, destroy, NULL, 0, 1);
    if (run(fw, create, NULL, 0, 0) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (ipfw_entry(fw, "add", &bans[i].key, TAP_IPFW_TABLE) != 0) {
            return -1;
        }
    }
    return run(fw, fw->ipfw_ports[0] ? rule_ports : rule_all, NULL, 0, 0);
}

/* ---- shared ---- */

/* Sort, drop duplicates keeping the latest expiry and the ended ones. */
static size_t normalise(tap_fw_ban_t *v, size_t n, int64_t now)
{
    size_t o = 0;

    qsort(v, n, sizeof(*v), ban_cmp);
    for (size_t i = 0; i < n; i++) {
        if (v[i].expiry <= now) {
            continue;
        }
        if (o > 0 && key_cmp(&v[o - 1].key, &v[i].key) == 0) {
            if (v[i].expiry > v[o - 1].expiry) {
                v[o - 1].expiry = v[i].expiry;
            }
            continue;
        }
        v[o++] = v[i];
    }
    return o;
}

static void take(tap_fw_t *fw, tap_fw_ban_t *v, size_t n)
{
    free(fw->applied);
    fw->applied = v;
    fw->n = n;
    fw->cap = n;
}

static void succeeded(tap_fw_t *fw)
{
    if (fw->failures > 0) {
        tap_notice("MG0641: firewall commands work again");
        fw->failures = 0;
    }
}

int tap_fw_sync(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n, int64_t now)
{
    tap_fw_ban_t *want, *add = NULL, *del = NULL;
    size_t nw, na = 0, nd = 0, i = 0, j = 0;
    int rc = -1;

    if (fw == NULL) {
        return 0;
    }
    want = malloc((n ? n : 1) * sizeof(*want));
    if (want == NULL) {
        return -1;
    }
    if (n > 0) {
        memcpy(want, bans, n * sizeof(*want));
    }
    nw = normalise(want, n, now);
    if (fw->need_full) {
        rc = fw->action == TAP_BANACTION_NFTABLES ? nft_full(fw, want, nw, now)
                                                   : ipfw_full(fw, want, nw);
        if (rc == 0) {
            take(fw, want, nw);
            want = NULL;
            fw->need_full = 0;
            succeeded(fw);
            tap_info("MG0642: firewall rebuilt with %zu bans", nw);
        }
        goto end;
    }
    add = malloc((nw ? nw : 1) * sizeof(*add));
    del = malloc((fw->n ? fw->n : 1) * sizeof(*del));
    if (add == NULL || del == NULL) {
        goto end;
    }
    while (i < nw || j < fw->n) {
        int c = i >= nw ? 1 : j >= fw->n ? -1 : key_cmp(&want[i].key, &fw->applied[j].key);
        if (c < 0) {
            add[na++] = want[i++];
        }
        else if (c > 0) {
            del[nd++] = fw->applied[j++];
        }
        else {
            if (want[i].expiry != fw->applied[j].expiry) {
                add[na++] = want[i];
            }
            i++;
            j++;
        }
    }
    rc = 0;
    if (na + nd > 0) {
        if (fw->action == TAP_BANACTION_NFTABLES) {
            rc = nft_changes(fw, add, na, del, nd, now);
        }
        else {
            for (size_t k = 0; k < nd && rc == 0; k++) {
                rc = ipfw_entry(fw, "delete", &del[k].key, TAP_IPFW_TABLE);
            }
            for (size_t k = 0; k < na && rc == 0; k++) {
                /* an expiry change needs no command: ipfw has no timeouts */
                if (fw->n == 0
                    || bsearch(&add[k], fw->applied, fw->n, sizeof(*add), ban_cmp) == NULL) {
                    rc = ipfw_entry(fw, "add", &add[k].key, TAP_IPFW_TABLE);
                }
            }
        }
    }
    if (rc == 0) {
        take(fw, want, nw);
        want = NULL;
        succeeded(fw);
    }
    else {
        fw->need_full = 1;
    }
end:
    free(want);
    free(add);
    free(del);
    return rc;
}

int tap_fw_update(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n,
                  const mg_addr_t *unbans, size_t nu, int64_t now)
{
    tap_fw_ban_t *next;
    size_t nn = 0;
    int rc;

    if (fw == NULL) {
        return 0;
    }
    /* The wanted state is what is applied, minus unbans, plus bans. */
    next = malloc((fw->n + n + 1) * sizeof(*next));
    if (next == NULL) {
        return -1;
    }
    for (size_t i = 0; i < fw->n; i++) {
        int gone = 0;
        for (size_t k = 0; k < nu && !gone; k++) {
            gone = key_cmp(&fw->applied[i].key, &unbans[k]) == 0;
        }
        if (!gone) {
            next[nn++] = fw->applied[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        tap_fw_ban_t *have = fw->n == 0 ? NULL
                             : bsearch(&bans[i], fw->applied, fw->n, sizeof(*next), ban_cmp);
        next[nn] = bans[i];
        /* a ban event never shortens a ban already known (Redis keeps the later expiry) */
        if (have != NULL && have->expiry > bans[i].expiry) {
            next[nn].expiry = have->expiry;
        }
        nn++;
    }
    rc = tap_fw_sync(fw, next, nn, now);
    free(next);
    return rc;
}
