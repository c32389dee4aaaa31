/*
 * Redis URL parsing and redacted printing.
 *
 *   redis://[[user]:password@]host[:port][/db]     host may be [IPv6]
 *   unix:/path/to/socket[?db=N][&user=U][&password=P]
 *   redis-sentinel://[[user]:password@]host[:port],.../NAME[/db]
 *       [?sentinel_user=U&sentinel_password=P]
 *
 * Every refusal names what is wrong with a static reason; no reason ever
 * quotes the input, so a password can never leak into a log through it.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "mg_store.h"

/* Highest database index accepted; Redis's own limit is its "databases"
 * setting (16 by default), checked by SELECT at connect time. */
#define MG_STORE_DB_MAX 65535

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..len) into out (size bytes, NUL-terminated).  A bad
 * escape, an escape for NUL and an output that does not fit are refused. */
static int pct_decode(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return -1;
            i += 2;
        }
        if (o + 1 >= size)
            return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* Strict decimal in [min,max] from s[0..len). */
static int parse_num(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '.' || c == '-' || c == '_';
}

/* A user name is printed in logs: no control characters once decoded. */
static int decode_user(const char *s, size_t len, char *out, size_t size, const char **why)
{
    int rc = pct_decode(s, len, out, size);

    if (rc != 0) {
        *why = rc == -2 ? "user name too long" : "bad percent-escape in the user name";
        return -1;
    }
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            *why = "control character in the user name";
            return -1;
        }
    return 0;
}

/* A password (of Redis, or with sentinel set of the sentinels): never
 * empty, decoded into out. */
static int decode_password(const char *s, size_t len, char *out, size_t size, int sentinel,
                           const char **why)
{
    static const char *const msg[2][3] = {
        { "empty password", "password too long", "bad percent-escape in the password" },
        { "empty sentinel password", "sentinel password too long",
          "bad percent-escape in the sentinel password" },
    };
    int rc;

    if (len == 0) {
        *why = msg[sentinel][0];
        return -1;
    }
    rc = pct_decode(s, len, out, size);
    if (rc != 0) {
        *why = msg[sentinel][rc == -2 ? 1 : 2];
        return -1;
    }
    return 0;
}

/* The next key=value of a query (*q at its '?' or '&'): 1 with the key
 * and value, 0 at the end, -1 when malformed. */
static int next_param(const char **q, const char **k, size_t *klen, const char **v,
                      size_t *vlen, const char **why)
{
    const char *amp, *kend, *eq;

    if (*q == NULL) {
        return 0;
    }
    *k = *q + 1;
    amp = strchr(*k, '&');
    kend = amp != NULL ? amp : *k + strlen(*k);
    eq = memchr(*k, '=', (size_t)(kend - *k));
    if (eq == NULL) {
        *why = "query parameter without '='";
        return -1;
    }
    *klen = (size_t)(eq - *k);
    *v = eq + 1;
    *vlen = (size_t)(kend - eq - 1);
    *q = amp;
    return 1;
}

static int key_is(const char *k, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(k, name, klen) == 0;
}

static int parse_userinfo(const char *s, size_t len, mg_store_url_t *out, const char **why)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen, plen;

    if (colon == NULL) {
        *why = "a user needs a password (user:password@)";
        return -1;
    }
    ulen = (size_t)(colon - s);
    plen = len - ulen - 1;
    if (plen == 0) {
        *why = "empty password";
        return -1;
    }
    if (decode_user(s, ulen, out->user, sizeof(out->user), why) != 0)
        return -1;
    return decode_password(colon + 1, plen, out->password, sizeof(out->password), 0, why);
}

/* host[:port] from s[0..len) (host may be [IPv6]); *port keeps its
 * default when none is given. */
static int parse_hostport(const char *s, size_t len, char *host, size_t hsize, int *port,
                          const char **why)
{
    const char *end = s + len, *hend;
    size_t hlen;
    long v;

    if (s < end && *s == '[') {
        char v6[INET6_ADDRSTRLEN];
        unsigned char buf[16];
        const char *rb = memchr(s, ']', len);
        if (rb == NULL) {
            *why = "unterminated [IPv6] host";
            return -1;
        }
        hlen = (size_t)(rb - s - 1);
        if (hlen == 0 || hlen >= sizeof(v6)) {
            *why = "bad IPv6 host";
            return -1;
        }
        memcpy(v6, s + 1, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, buf) != 1) {
            *why = "bad IPv6 host";
            return -1;
        }
        memcpy(host, v6, hlen + 1);
        hend = rb + 1;
        if (hend < end && *hend != ':') {
            *why = "unexpected text after the [IPv6] host";
            return -1;
        }
    }
    else {
        for (hend = s; hend < end && *hend != ':'; hend++)
            if (!host_char_ok(*hend)) {
                *why = "bad character in the host name";
                return -1;
            }
        hlen = (size_t)(hend - s);
        if (hlen == 0) {
            *why = "empty host";
            return -1;
        }
        if (hlen >= hsize) {
            *why = "host name too long";
            return -1;
        }
        memcpy(host, s, hlen);
        host[hlen] = '\0';
    }
    if (hend < end && *hend == ':') {
        if (parse_num(hend + 1, (size_t)(end - hend - 1), 1, 65535, &v) != 0) {
            *why = "port must be a number 1-65535";
            return -1;
        }
        *port = (int)v;
    }
    return 0;
}

/* The user information before the last '@' ahead of limit (the password
 * may hold '@' only percent-encoded); *rest where the hosts start. */
static int parse_auth(const char *s, const char *limit, mg_store_url_t *out, const char **rest,
                      const char **why)
{
    const char *at = NULL;

    for (const char *p = s; p < limit; p++)
        if (*p == '@')
            at = p;
    *rest = s;
    if (at == NULL)
        return 0;
    if (parse_userinfo(s, (size_t)(at - s), out, why) != 0)
        return -1;
    *rest = at + 1;
    return 0;
}

static int parse_tcp(const char *s, mg_store_url_t *out, const char **why)
{
    const char *end = s + strlen(s);
    const char *slash, *hp;
    long v;

    if (strpbrk(s, "?#") != NULL) {
        *why = "query or fragment not supported in a redis:// URL";
        return -1;
    }
    slash = strchr(s, '/');
    if (slash == NULL)
        slash = end;
    if (parse_auth(s, slash, out, &hp, why) != 0
        || parse_hostport(hp, (size_t)(slash - hp), out->host, sizeof(out->host), &out->port,
                          why)
               != 0)
        return -1;
    /* db: "/" alone means the default database */
    if (slash < end && slash + 1 < end) {
        if (parse_num(slash + 1, (size_t)(end - slash - 1), 0, MG_STORE_DB_MAX, &v) != 0) {
            *why = "database must be a number 0-65535";
            return -1;
        }
        out->db = (int)v;
    }
    return 0;
}

/* The query of a redis-sentinel:// URL: the sentinels' own credentials. */
static int parse_sentinel_query(const char *q, mg_store_url_t *out, const char **why)
{
    const char *k, *v;
    size_t klen, vlen;
    int seen_user = 0, seen_pw = 0, more;

    while ((more = next_param(&q, &k, &klen, &v, &vlen, why)) > 0) {
        if (key_is(k, klen, "sentinel_user") && !seen_user) {
            if (decode_user(v, vlen, out->sentinel_user, sizeof(out->sentinel_user), why) != 0)
                return -1;
            seen_user = 1;
        }
        else if (key_is(k, klen, "sentinel_password") && !seen_pw) {
            if (decode_password(v, vlen, out->sentinel_password, sizeof(out->sentinel_password),
                                1, why)
                != 0)
                return -1;
            seen_pw = 1;
        }
        else {
            *why = "unknown or repeated query parameter (sentinel_user, sentinel_password)";
            return -1;
        }
    }
    if (more < 0)
        return -1;
    if (seen_user && !seen_pw) {
        *why = "a sentinel user needs a sentinel password";
        return -1;
    }
    return 0;
}

/* [[user]:password@]host[:port],host[:port].../NAME[/db][?query] */
static int parse_sentinel(const char *s, mg_store_url_t *out, const char **why)
{
    const char *q = strchr(s, '?');
    const char *end = q != NULL ? q : s + strlen(s);
    const char *slash, *hp, *name, *nend;
    long v;

    if (strchr(s, '#') != NULL) {
        *why = "fragment not supported";
        return -1;
    }
    slash = memchr(s, '/', (size_t)(end - s));
    if (slash == NULL) {
        *why = "redis-sentinel:// needs /NAME: the primary's name the sentinels know";
        return -1;
    }
    if (parse_auth(s, slash, out, &hp, why) != 0)
        return -1;
    while (hp < slash) {
        const char *comma = memchr(hp, ',', (size_t)(slash - hp));
        const char *hend = comma != NULL ? comma : slash;
        mg_store_hostport_t *h;

        if (out->nsentinels == MG_STORE_SENTINELS_MAX) {
            *why = "more than 8 sentinels";
            return -1;
        }
        h = &out->sentinel[out->nsentinels];
        h->port = MG_STORE_SENTINEL_PORT;
        if (parse_hostport(hp, (size_t)(hend - hp), h->host, sizeof(h->host), &h->port, why)
            != 0)
            return -1;
        out->nsentinels++;
        hp = comma != NULL ? comma + 1 : slash;
        if (comma != NULL && hp == slash) {
            *why = "empty host";
            return -1;
        }
    }
    if (out->nsentinels == 0) {
        *why = "no sentinel given";
        return -1;
    }
    name = slash + 1;
    nend = memchr(name, '/', (size_t)(end - name));
    if (nend == NULL)
        nend = end;
    if (nend == name || (size_t)(nend - name) >= sizeof(out->master)) {
        *why = "the primary's name must be 1-127 characters";
        return -1;
    }
    for (const char *p = name; p < nend; p++)
        if (!host_char_ok(*p)) {
            *why = "bad character in the primary's name";
            return -1;
        }
    memcpy(out->master, name, (size_t)(nend - name));
    out->master[nend - name] = '\0';
    if (nend < end && nend + 1 < end) {
        if (parse_num(nend + 1, (size_t)(end - nend - 1), 0, MG_STORE_DB_MAX, &v) != 0) {
            *why = "database must be a number 0-65535";
            return -1;
        }
        out->db = (int)v;
    }
    return parse_sentinel_query(q, out, why);
}

/* unix:/path[?db=N&user=U&password=P] */
static int parse_unix(const char *s, mg_store_url_t *out, const char **why)
{
    const char *q = strchr(s, '?');
    size_t plen = q != NULL ? (size_t)(q - s) : strlen(s);
    const char *k, *v;
    size_t klen, vlen;
    long num;
    int seen_db = 0, seen_user = 0, seen_pw = 0, more;

    /* "unix:///run/redis.sock" is the same path with an empty authority */
    if (plen >= 3 && s[0] == '/' && s[1] == '/' && s[2] == '/') {
        s += 2;
        plen -= 2;
    }
    if (plen == 0 || s[0] != '/') {
        *why = "unix socket path must be absolute";
        return -1;
    }
    if (s[1] == '/') {
        *why = "unix:// with a host is not supported";
        return -1;
    }
    if (plen >= sizeof(out->path)) {
        *why = "unix socket path too long";
        return -1;
    }
    memcpy(out->path, s, plen);
    out->path[plen] = '\0';
    if (strpbrk(out->path, "#%") != NULL) {
        *why = "bad character in the unix socket path";
        return -1;
    }

    while ((more = next_param(&q, &k, &klen, &v, &vlen, why)) > 0) {
        if (key_is(k, klen, "db") && !seen_db) {
            if (parse_num(v, vlen, 0, MG_STORE_DB_MAX, &num) != 0) {
                *why = "database must be a number 0-65535";
                return -1;
            }
            out->db = (int)num;
            seen_db = 1;
        }
        else if (key_is(k, klen, "user") && !seen_user) {
            if (decode_user(v, vlen, out->user, sizeof(out->user), why) != 0)
                return -1;
            seen_user = 1;
        }
        else if (key_is(k, klen, "password") && !seen_pw) {
            if (decode_password(v, vlen, out->password, sizeof(out->password), 0, why) != 0)
                return -1;
            seen_pw = 1;
        }
        else {
            *why = "unknown or repeated query parameter (db, user, password)";
            return -1;
        }
    }
    if (more < 0)
        return -1;
    if (seen_user && !seen_pw) {
        *why = "a user needs a password";
        return -1;
    }
    return 0;
}

int mg_store_url_parse(const char *url, mg_store_url_t *out, const char **why)
{
    const char *dummy;
    mg_store_url_t u;
    int rc;

    if (why == NULL)
        why = &dummy;
    *why = NULL;
    memset(&u, 0, sizeof(u));
    u.port = 6379;
    if (url == NULL || *url == '\0') {
        *why = "empty URL";
        return -1;
    }
    if (strlen(url) > 2048) {
        *why = "URL too long";
        return -1;
    }
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = "URL contains a space or a control or non-ASCII character";
            return -1;
        }
    if (strncmp(url, "redis://", 8) == 0)
        rc = parse_tcp(url + 8, &u, why);
    else if (strncmp(url, "redis-sentinel://", 17) == 0)
        rc = parse_sentinel(url + 17, &u, why);
    else if (strncmp(url, "unix:", 5) == 0)
        rc = parse_unix(url + 5, &u, why);
    else if (strncmp(url, "rediss://", 9) == 0) {
        *why = "TLS (rediss://) is not supported";
        rc = -1;
    }
    else {
        *why = "URL must start with redis://, redis-sentinel:// or unix:";
        rc = -1;
    }
    if (rc == 0)
        *out = u;
    /* the parsed copy may hold a password: do not leave it on the stack */
    memset(&u, 0, sizeof(u));
    __asm__ __volatile__("" : : "r"(&u) : "memory");
    return rc;
}

void mg_store_url_redacted(const mg_store_url_t *u, char *buf, size_t size)
{
    if (size == 0)
        return;
    if (u->nsentinels > 0) {
        size_t o = (size_t)snprintf(buf, size, "redis-sentinel://%s%s", u->user,
                                    u->password[0] ? ":***@" : (u->user[0] ? "@" : ""));
        for (int i = 0; i < u->nsentinels && o < size; i++) {
            int v6 = strchr(u->sentinel[i].host, ':') != NULL;
            o += (size_t)snprintf(buf + o, size - o, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "",
                                  u->sentinel[i].host, v6 ? "]" : "", u->sentinel[i].port);
        }
        if (o < size)
            o += (size_t)snprintf(buf + o, size - o, "/%s/%d", u->master, u->db);
        if (o < size && u->sentinel_password[0])
            snprintf(buf + o, size - o, "?%s%s%ssentinel_password=***",
                     u->sentinel_user[0] ? "sentinel_user=" : "", u->sentinel_user,
                     u->sentinel_user[0] ? "&" : "");
        return;
    }
    if (u->path[0] != '\0') {
        snprintf(buf, size, "unix:%s?db=%d%s%s%s", u->path, u->db, u->user[0] ? "&user=" : "",
                 u->user, u->password[0] ? "&password=***" : "");
        return;
    }
    int v6 = strchr(u->host, ':') != NULL;

    snprintf(buf, size, "redis://%s%s%s%s%s:%d/%d", u->user,
             u->password[0] ? ":***@" : (u->user[0] ? "@" : ""), v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port, u->db);
}
