/*
 * Fail2Ban regex syntax: tags and the required literal.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_regex.h"

/*
 * The address patterns.  They only have to find the address's extent;
 * mg_addr_parse_n() decides whether it is one.  Possessive hex runs and a
 * bounded group count keep backtracking linear while still letting a
 * following ":\d*" take the port after the LAST colon of
 * "2001:db8::5:51234" (the repetition gives back whole groups).
 */
#define V4 "[0-9]{1,3}+(?:\\.[0-9]{1,3}+){3}"
#define V6                                              \
    "(?:[0-9A-Fa-f]{1,4}+)?(?::[0-9A-Fa-f]{0,4}+){1,8}" \
    "(?:\\.[0-9]{1,3}+){0,3}(?:%[0-9A-Za-z._-]++)?"

typedef struct tag {
    const char *name;
    const char *body; /* NULL = refused */
} tag_t;

static const tag_t tags[] = {
    { "<HOST>", "(?:" V4 "|" V6 ")" },
    { "<ADDR>", "(?:" V4 "|" V6 ")" },
    { "<IP4>", V4 },
    { "<IP6>", V6 },
    { "<DNS>", NULL },
    { "<SKIPLINES>", NULL },
};

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* "<F-NAME>" or "</F-NAME>" at s: its length, else 0. */
static size_t ftag_len(const char *s, int *closing)
{
    size_t i = 1;

    *closing = 0;
    if (s[i] == '/') {
        *closing = 1;
        i++;
    }
    if (s[i] != 'F' || s[i + 1] != '-')
        return 0;
    i += 2;
    size_t start = i;
    while (isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'
           || s[i] == '-')
        i++;
    if (i == start || s[i] != '>')
        return 0;
    return i + 1;
}

char *tap_regex_expand(const char *re, size_t *nhosts, const char **why)
{
    sbuf_t b = { NULL, 0, 0, 0 };
    size_t hosts = 0;

    sb_add(&b, "", 0);
    for (const char *s = re; *s;) {
        if (*s == '\\' && s[1] != '\0') {
            sb_add(&b, s, 2); /* an escaped '<' stays literal */
            s += 2;
            continue;
        }
        if (*s == '<') {
            const tag_t *t = NULL;
            for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
                if (strncmp(s, tags[i].name, strlen(tags[i].name)) == 0) {
                    t = &tags[i];
                    break;
                }
            }
            if (t != NULL) {
                if (t->body == NULL) {
                    *why =
                        strcmp(t->name, "<DNS>") == 0
                            ? "<DNS> is not supported (no name lookups): use <HOST>"
                            : "<SKIPLINES> is not supported (lines are matched one at a time)";
                    goto fail;
                }
                if (hosts == TAP_REGEX_MAX_HOSTS) {
                    *why = "too many address tags";
                    goto fail;
                }
                char name[32];
                int n = snprintf(name, sizeof(name), "(?<tapH%zu>", hosts++);
                sb_add(&b, name, (size_t)n);
                sb_add(&b, t->body, strlen(t->body));
                sb_add(&b, ")", 1);
                s += strlen(t->name);
                continue;
            }
            int closing;
            size_t fl = ftag_len(s, &closing);
            if (fl > 0) {
                sb_add(&b, closing ? ")" : "(?:", closing ? 1 : 3);
                s += fl;
                continue;
            }
        }
        sb_add(&b, s, 1);
        s++;
    }
    if (b.oom) {
        *why = "out of memory";
        goto fail;
    }
    if (hosts == 0) {
        *why = "no address tag: the regex needs <HOST> (or <ADDR>, <IP4>, <IP6>)";
        goto fail;
    }
    *nhosts = hosts;
    return b.p;
fail:
    free(b.p);
    return NULL;
}

/* Index just past the group that opens at re[i] == '(' (or strlen). */
static size_t skip_group(const char *re, size_t i)
{
    int depth = 0;
    int in_class = 0;

    for (; re[i]; i++) {
        char c = re[i];
        if (c == '\\' && re[i + 1]) {
            i++;
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = 0;
            continue;
        }
        if (c == '[') {
            in_class = 1;
            if (re[i + 1] == '^')
                i++;
            if (re[i + 1] == ']')
                i++;
        }
        else if (c == '(') {
            depth++;
        }
        else if (c == ')') {
            if (--depth == 0)
                return i + 1;
        }
    }
    return i;
}

/* Index just past the class that opens at re[i] == '['. */
static size_t skip_class(const char *re, size_t i)
{
    i++;
    if (re[i] == '^')
        i++;
    if (re[i] == ']')
        i++;
    for (; re[i]; i++) {
        if (re[i] == '\\' && re[i + 1]) {
            i++;
            continue;
        }
        if (re[i] == ']')
            return i + 1;
    }
    return i;
}

static int is_quant(char c)
{
    return c == '*' || c == '?' || c == '+' || c == '{';
}

size_t tap_regex_literal(const char *re, char *lit, size_t size, int *at_start)
{
    char cur[256];
    size_t cl = 0, best = 0;
    size_t i = 0, run_start = 0;

    *at_start = 0;
    if (size == 0)
        return 0;
    lit[0] = '\0';
    /* Verbs such as (*ACCEPT), inline options such as (?i), \\Q quoting
     * and a top-level alternation all change what must be present. */
    if (strstr(re, "(*") != NULL || strstr(re, "\\Q") != NULL)
        return 0;
    for (size_t k = 0, depth = 0; re[k];) {
        if (re[k] == '\\' && re[k + 1]) {
            k += 2;
        }
        else if (re[k] == '[') {
            k = skip_class(re, k);
        }
        else if (re[k] == '(') {
            char o = re[k + 1] == '?' ? re[k + 2] : ':';
            if (o != ':' && o != '<' && o != 'P' && o != '=' && o != '!' && o != '>')
                return 0;
            depth++;
            k++;
        }
        else if (re[k] == ')') {
            if (depth > 0)
                depth--;
            k++;
        }
        else if (re[k] == '|' && depth == 0) {
            return 0;
        }
        else {
            k++;
        }
    }

    while (re[i]) {
        char c = re[i];
        int literal = -1;
        size_t next = i + 1;

        if (c == '\\') {
            char e = re[i + 1];
            if (e == '\0')
                break;
            if (!isalnum((unsigned char)e) && e != '\n')
                literal = (unsigned char)e;
            else if (strchr("dDsSwWhHvVbBAzZGKRXtnrfae", e) == NULL)
                return 0; /* an escape with an argument (\x41, \p{L}, \1 ...) */
            next = i + 2;
        }
        else if (c == '(') {
            next = skip_group(re, i);
        }
        else if (c == '[') {
            next = skip_class(re, i);
        }
        else if (c == '<') {
            /* an expanded tag is not literal text */
            const char *gt = strchr(re + i, '>');
            int closing;
            if (gt != NULL
                && (ftag_len(re + i, &closing) > 0 || strncmp(re + i, "<HOST>", 6) == 0
                    || strncmp(re + i, "<ADDR>", 6) == 0 || strncmp(re + i, "<IP4>", 5) == 0
                    || strncmp(re + i, "<IP6>", 5) == 0))
                next = (size_t)(gt - re) + 1;
            else
                literal = '<';
        }
        else if (c == '.' || c == '^' || c == '$' || c == '|' || c == ')' || is_quant(c)
                 || c == '\n' || c == '\r') {
            literal = -1;
        }
        else {
            literal = (unsigned char)c;
        }

        if (literal >= 0 && is_quant(re[next])) {
            /* x? x* x{..} may be absent; x+ is there once but the run ends */
            if (re[next] == '+' && cl < sizeof(cur) - 1)
                cur[cl++] = (char)literal;
            literal = -1;
        }
        if (literal >= 0 && cl < sizeof(cur) - 1) {
            if (cl == 0)
                run_start = i;
            cur[cl++] = (char)literal;
        }
        else {
            if (cl > best && cl < size) {
                memcpy(lit, cur, cl);
                lit[cl] = '\0';
                best = cl;
                *at_start = run_start == 0;
            }
            cl = 0;
        }
        i = next;
    }
    if (cl > best && cl < size) {
        memcpy(lit, cur, cl);
        lit[cl] = '\0';
        best = cl;
        *at_start = run_start == 0;
    }
    return best;
}
