/*
 * The INI reader (see tap_ini.h for the rules it follows).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_ini.h"

typedef struct parser {
    const char *fname;
    char *err;
    size_t errlen;
    tap_ini_t *ini;
} parser_t;

__attribute__((format(printf, 3, 4))) static int fail(parser_t *p, unsigned line,
                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_ini_verror(p->err, p->errlen, p->fname, line, fmt, ap);
    va_end(ap);
    return -1;
}

/* Bytes that end a token of a quoted value: a password never spans them
 * (an unencoded one would not parse as a URL either). */
static int token_end(char ch)
{
    return ch == '\0' || strchr(" \t\r\n'\"", ch) != NULL;
}

static int starts_ci(const char *s, const char *word)
{
    for (; *word; s++, word++)
        if (tolower((unsigned char)*s) != *word)
            return 0;
    return 1;
}

typedef struct out {
    char *p;
    size_t size, n;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->n + 1 < o->size; i++)
        o->p[o->n++] = s[i];
}

/* One token: mask "user:PASSWORD@" (after "scheme://", all of the user
 * info when it has no colon) and the value of "password=". */
static void redact_token(out_t *o, const char *t, size_t n)
{
    static const char hint[] = "[[user]:password@]";
    const char *at = memrchr(t, '@', n);
    size_t i = 0;

    /* the URL syntax the redis error spells out is no password */
    if (at != NULL && memmem(t, n, hint, sizeof(hint) - 1) != NULL)
        at = NULL;
    if (at != NULL) {
        const char *sep = memmem(t, (size_t)(at - t), "://", 3);
        const char *user = sep != NULL ? sep + 3 : t;
        const char *colon = memchr(user, ':', (size_t)(at - user));
        const char *from = colon != NULL ? colon + 1 : (sep != NULL ? user : NULL);
        if (from != NULL) {
            put(o, t, (size_t)(from - t));
            put(o, "***", 3);
            i = (size_t)(at - t);
        }
    }
    while (i < n) {
        if (n - i >= 9 && starts_ci(t + i, "password=")) {
            put(o, t + i, 9);
            put(o, "***", 3);
            i += 9;
            while (i < n && t[i] != '&' && t[i] != '#')
                i++;
            continue;
        }
        put(o, t + i, 1);
        i++;
    }
}

void tap_ini_redact(const char *in, char *out, size_t size)
{
    out_t o = { out, size, 0 };

    if (size == 0)
        return;
    for (size_t i = 0; in[i] != '\0';) {
        size_t n = 0;
        while (!token_end(in[i + n]))
            n++;
        if (n == 0) {
            put(&o, in + i, 1);
            i++;
            continue;
        }
        redact_token(&o, in + i, n);
        i += n;
    }
    out[o.n] = '\0';
}

void tap_ini_verror(char *err, size_t errlen, const char *fname, unsigned line, const char *fmt,
                    va_list ap)
{
    char *msg = NULL;
    int n;

    if (err == NULL || errlen == 0)
        return;
    n = snprintf(err, errlen, "%s:%u: ", fname, line);
    if (n < 0 || (size_t)n >= errlen)
        return;
    /* Formatted whole before it is cut to size, so a cut can never fall
     * between a password and the '@' that marks it as one. */
    if (vasprintf(&msg, fmt, ap) < 0) {
        snprintf(err + n, errlen - (size_t)n, "(no memory for the message)");
        return;
    }
    tap_ini_redact(msg, err + n, errlen - (size_t)n);
    free(msg);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

/* Trim [*s, *s+*n) of blanks on both sides. */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_blank(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_blank((*s)[*n - 1]))
        (*n)--;
}

/* "%%" -> "%"; any other '%' is refused as Fail2Ban's parser would. */
static char *unescape(parser_t *p, unsigned line, const char *key, const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    if (out == NULL) {
        fail(p, line, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 1 < n && s[i + 1] == '%') {
            out[o++] = '%';
            i++;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '(')
            fail(p, line, "%s: %%(name)s interpolation is not supported: write the value out",
                 key);
        else
            fail(p, line, "%s: a literal '%%' must be written '%%%%' (as in Fail2Ban)", key);
        free(out);
        return NULL;
    }
    out[o] = '\0';
    return out;
}

static int add_item(parser_t *p, tap_ini_entry_t *e, char *item, unsigned line)
{
    char **items = realloc(e->items, (e->nitems + 1) * sizeof(*items));
    if (items == NULL)
        goto oom;
    e->items = items;
    unsigned *lines = realloc(e->item_lines, (e->nitems + 1) * sizeof(*lines));
    if (lines == NULL)
        goto oom;
    e->item_lines = lines;
    e->items[e->nitems] = item;
    e->item_lines[e->nitems] = line;
    e->nitems++;
    return 0;
oom:
    free(item);
    return fail(p, line, "out of memory");
}

static void entry_free(tap_ini_entry_t *e)
{
    for (size_t i = 0; i < e->nitems; i++)
        free(e->items[i]);
    free(e->items);
    free(e->item_lines);
    free(e->key);
    free(e->value);
}

void tap_ini_free(tap_ini_t *ini)
{
    if (ini == NULL)
        return;
    for (size_t i = 0; i < ini->nsections; i++) {
        tap_ini_section_t *s = &ini->sections[i];
        for (size_t j = 0; j < s->nentries; j++)
            entry_free(&s->entries[j]);
        free(s->entries);
        free(s->name);
    }
    free(ini->sections);
    free(ini);
}

const tap_ini_section_t *tap_ini_section(const tap_ini_t *ini, const char *name)
{
    for (size_t i = 0; i < ini->nsections; i++)
        if (strcmp(ini->sections[i].name, name) == 0)
            return &ini->sections[i];
    return NULL;
}

const tap_ini_entry_t *tap_ini_get(const tap_ini_section_t *s, const char *key)
{
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < s->nentries; i++)
        if (strcmp(s->entries[i].key, key) == 0)
            return &s->entries[i];
    return NULL;
}

static int new_section(parser_t *p, const char *s, size_t n, unsigned line)
{
    /* s[0] == '[' */
    if (n < 2 || s[n - 1] != ']') {
        const char *close = memchr(s, ']', n);
        if (close != NULL)
            return fail(p, line, "text after the section header: '%.*s'", (int)n, s);
        return fail(p, line, "unterminated section header: '%.*s'", (int)n, s);
    }
    const char *name = s + 1;
    size_t nlen = n - 2;
    trim(&name, &nlen);
    if (nlen == 0)
        return fail(p, line, "empty section name");
    if (memchr(name, '[', nlen) != NULL || memchr(name, ']', nlen) != NULL)
        return fail(p, line, "bad section header: '%.*s'", (int)n, s);
    for (size_t i = 0; i < p->ini->nsections; i++) {
        const tap_ini_section_t *o = &p->ini->sections[i];
        if (strlen(o->name) == nlen && memcmp(o->name, name, nlen) == 0)
            return fail(p, line, "duplicate section [%.*s] (first at line %u)", (int)nlen, name,
                        o->line);
    }
    tap_ini_section_t *secs =
        realloc(p->ini->sections, (p->ini->nsections + 1) * sizeof(*secs));
    if (secs == NULL)
        return fail(p, line, "out of memory");
    p->ini->sections = secs;
    tap_ini_section_t *sec = &secs[p->ini->nsections];
    memset(sec, 0, sizeof(*sec));
    sec->name = strndup(name, nlen);
    if (sec->name == NULL)
        return fail(p, line, "out of memory");
    sec->line = line;
    p->ini->nsections++;
    return 0;
}

static tap_ini_entry_t *new_entry(parser_t *p, tap_ini_section_t *sec, const char *key,
                                  size_t klen, unsigned line)
{
    char lk[128];

    if (klen >= sizeof(lk)) {
        fail(p, line, "key too long: '%.*s'", (int)klen, key);
        return NULL;
    }
    for (size_t i = 0; i < klen; i++)
        lk[i] = (char)tolower((unsigned char)key[i]);
    lk[klen] = '\0';
    const tap_ini_entry_t *dup = tap_ini_get(sec, lk);
    if (dup != NULL) {
        fail(p, line, "%s: duplicate key in [%s] (first at line %u)", lk, sec->name, dup->line);
        return NULL;
    }
    tap_ini_entry_t *es = realloc(sec->entries, (sec->nentries + 1) * sizeof(*es));
    if (es == NULL) {
        fail(p, line, "out of memory");
        return NULL;
    }
    sec->entries = es;
    tap_ini_entry_t *e = &es[sec->nentries];
    memset(e, 0, sizeof(*e));
    e->key = strdup(lk);
    if (e->key == NULL) {
        fail(p, line, "out of memory");
        return NULL;
    }
    e->line = line;
    sec->nentries++;
    return e;
}

/* Join every entry's items into its value. */
static int join_values(parser_t *p)
{
    for (size_t i = 0; i < p->ini->nsections; i++) {
        tap_ini_section_t *s = &p->ini->sections[i];
        for (size_t j = 0; j < s->nentries; j++) {
            tap_ini_entry_t *e = &s->entries[j];
            size_t total = 1;
            for (size_t k = 0; k < e->nitems; k++)
                total += strlen(e->items[k]) + 1;
            e->value = malloc(total);
            if (e->value == NULL)
                return fail(p, e->line, "out of memory");
            size_t o = 0;
            for (size_t k = 0; k < e->nitems; k++) {
                size_t l = strlen(e->items[k]);
                if (k > 0)
                    e->value[o++] = '\n';
                memcpy(e->value + o, e->items[k], l);
                o += l;
            }
            e->value[o] = '\0';
        }
    }
    return 0;
}

int tap_ini_parse(const char *text, size_t len, const char *fname, tap_ini_t **out, char *err,
                  size_t errlen)
{
    parser_t p = { fname, err, errlen, NULL };
    tap_ini_entry_t *cur = NULL; /* the entry continuation lines extend */
    unsigned line = 0;
    size_t pos = 0;

    *out = NULL;
    p.ini = calloc(1, sizeof(*p.ini));
    if (p.ini == NULL)
        return fail(&p, 0, "out of memory");
    if (memchr(text, '\0', len) != NULL) {
        const char *z = memchr(text, '\0', len);
        unsigned zl = 1;
        for (const char *c = text; c < z; c++)
            zl += *c == '\n';
        fail(&p, zl, "NUL byte in the file");
        goto bad;
    }
    /* a UTF-8 byte order mark, as some editors write one */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (n > 0 && s[n - 1] == '\r')
            n--;

        const char *t = s;
        size_t tn = n;
        trim(&t, &tn);
        if (tn == 0 || t[0] == '#' || t[0] == ';')
            continue;
        /* an inline comment: ';' after whitespace */
        for (size_t i = 1; i < tn; i++) {
            if (t[i] == ';' && is_blank(t[i - 1])) {
                tn = i;
                break;
            }
        }
        trim(&t, &tn);

        if (is_blank(s[0])) {
            if (cur == NULL) {
                fail(&p, line, "continuation line without a key: '%.*s'", (int)tn, t);
                goto bad;
            }
            char *item = unescape(&p, line, cur->key, t, tn);
            if (item == NULL || add_item(&p, cur, item, line) != 0)
                goto bad;
            continue;
        }
        if (t[0] == '[') {
            if (new_section(&p, t, tn, line) != 0)
                goto bad;
            cur = NULL;
            continue;
        }
        if (p.ini->nsections == 0) {
            fail(&p, line, "'%.*s' before any section header: start with [DEFAULT] or [jail]",
                 (int)tn, t);
            goto bad;
        }
        size_t d = 0;
        while (d < tn && t[d] != '=' && t[d] != ':')
            d++;
        if (d == tn) {
            fail(&p, line, "not 'key = value': '%.*s'", (int)tn, t);
            goto bad;
        }
        const char *k = t;
        size_t kn = d;
        trim(&k, &kn);
        if (kn == 0) {
            fail(&p, line, "no key before '%c': '%.*s'", t[d], (int)tn, t);
            goto bad;
        }
        const char *v = t + d + 1;
        size_t vn = tn - d - 1;
        trim(&v, &vn);
        cur = new_entry(&p, &p.ini->sections[p.ini->nsections - 1], k, kn, line);
        if (cur == NULL)
            goto bad;
        char *item = unescape(&p, line, cur->key, v, vn);
        if (item == NULL || add_item(&p, cur, item, line) != 0)
            goto bad;
    }
    if (join_values(&p) != 0)
        goto bad;
    *out = p.ini;
    return 0;
bad:
    tap_ini_free(p.ini);
    return -1;
}
