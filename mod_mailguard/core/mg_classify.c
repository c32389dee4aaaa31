/*
 * Login classification.  See mg_classify.h for the contract; each rule
 * below says which lines of the webmail's source it rests on.
 */
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "mg_classify.h"

#define MG_SQM_SCRIPT "/src/redirect.php"

/* ---- PHP's view of a query string ---- */

/* A cursor over one query component that yields the bytes PHP decodes
 * ('+' is a space, %XX a byte; a '%' without two hex digits stays). */
typedef struct mg_qcur {
    const char *p;
    const char *end;
} mg_qcur_t;

static int mg_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The next decoded byte, or -1 at the end. */
static int mg_qnext(mg_qcur_t *c)
{
    char ch;

    if (c->p >= c->end) {
        return -1;
    }
    ch = *c->p++;
    if (ch == '+') {
        return ' ';
    }
    if (ch == '%' && c->end - c->p >= 2 && mg_hexval(c->p[0]) >= 0 && mg_hexval(c->p[1]) >= 0) {
        int v = mg_hexval(c->p[0]) * 16 + mg_hexval(c->p[1]);
        c->p += 2;
        return v;
    }
    return (unsigned char)ch;
}

/*
 * Is the name s[0..n) `want` once PHP has registered it
 * (main/php_variables.c, php_register_variable_ex): the name ends at a
 * NUL; leading spaces are dropped; ' ' and '.' become '_'; at the first
 * '[' the name ends when a ']' follows (an array of that name), and when
 * none follows the '[' becomes '_' and so does every later ' ', '.' or
 * '['.  Streamed: names of any length are read.
 */
static int mg_php_name_is(const char *s, size_t n, const char *want)
{
    mg_qcur_t c = { s, s + n };
    int ch, lead = 1, seen_open = 0, closes = 0;
    size_t k = 0;

    /* First pass: does a ']' follow the first '['? */
    while ((ch = mg_qnext(&c)) > 0) {
        if (!seen_open && ch == '[') {
            seen_open = 1;
        }
        else if (seen_open && ch == ']') {
            closes = 1;
            break;
        }
    }
    seen_open = 0;
    c.p = s;
    while ((ch = mg_qnext(&c)) > 0) {
        if (lead && ch == ' ') {
            continue;
        }
        lead = 0;
        if (ch == '[') {
            if (!seen_open && closes) {
                break;
            }
            seen_open = 1;
            ch = '_';
        }
        else if (ch == ' ' || ch == '.') {
            ch = '_';
        }
        if (want[k] == '\0' || want[k] != (char)ch) {
            return 0;
        }
        k++;
    }
    return k > 0 && want[k] == '\0';
}

/*
 * Calls fn(name, name_len, value, value_len, arg) for each component of
 * the query, in order (PHP's arg_separator.input is "&").  value is NULL
 * for a component without '='.
 */
typedef void (*mg_qvisit_fn)(const char *name, size_t nlen, const char *value, size_t vlen,
                             void *arg);

static void mg_query_each(const char *query, mg_qvisit_fn fn, void *arg)
{
    const char *p = query;

    if (query == NULL) {
        return;
    }
    for (;;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);

        if (n > 0) {
            if (eq != NULL) {
                fn(p, (size_t)(eq - p), eq + 1, n - (size_t)(eq + 1 - p), arg);
            }
            else {
                fn(p, n, NULL, 0, arg);
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
}

typedef struct mg_hasvar {
    const char *name;
    int found;
} mg_hasvar_t;

static void mg_hasvar_visit(const char *name, size_t nlen, const char *value, size_t vlen,
                            void *arg)
{
    mg_hasvar_t *h = arg;

    (void)value;
    (void)vlen;
    if (!h->found && mg_php_name_is(name, nlen, h->name)) {
        h->found = 1;
    }
}

int mg_query_has_var(const char *query, const char *name)
{
    mg_hasvar_t h = { name, 0 };

    mg_query_each(query, mg_hasvar_visit, &h);
    return h.found;
}

/*
 * Roundcube cleans a task name to [A-Za-z0-9_-] (rcube_utils::asciiwords
 * in rcmail::set_task).  The value is streamed, so a "login" padded with
 * any number of characters Roundcube drops is still "login".
 */
static int mg_task_value_is_login(const char *v, size_t n)
{
    static const char login[] = "login";
    mg_qcur_t c = { v, v + n };
    size_t k = 0;
    int ch;

    while ((ch = mg_qnext(&c)) >= 0) {
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '_' || ch == '-')) {
            continue;
        }
        if (ch >= 'A' && ch <= 'Z') {
            ch += 'a' - 'A';
        }
        if (k >= sizeof(login) - 1 || login[k] != ch) {
            return 0;
        }
        k++;
    }
    return k == sizeof(login) - 1;
}

/* Does PHP read the name s[0..n) as an array ("_task[]", "_task[x]")? */
static int mg_php_name_is_array(const char *s, size_t n)
{
    mg_qcur_t c = { s, s + n };
    int ch, inside = 0;

    while ((ch = mg_qnext(&c)) > 0) {
        if (ch == '[') {
            inside = 1;
        }
        else if (inside && ch == ']') {
            return 1;
        }
    }
    return 0;
}

static void mg_task_visit(const char *name, size_t nlen, const char *value, size_t vlen,
                          void *arg)
{
    mg_task_t *t = arg;

    if (!mg_php_name_is(name, nlen, "_task")) {
        return;
    }
    /* "_task[]=login" makes an array, which Roundcube reads as an empty
     * task: not the login task. */
    if (value == NULL || mg_php_name_is_array(name, nlen)) {
        *t = MG_TASK_OTHER;
        return;
    }
    *t = mg_task_value_is_login(value, vlen) ? MG_TASK_LOGIN : MG_TASK_OTHER;
}

mg_task_t mg_query_task(const char *query)
{
    mg_task_t t = MG_TASK_ABSENT;

    mg_query_each(query, mg_task_visit, &t);
    return t;
}

/* ---- the webmails ---- */

static int mg_is_post(const mg_login_req_t *rq)
{
    /* PHP fills $_POST only for this exact method name (SAPI
     * request_method compared with strcmp): "post" carries no form. */
    return rq->method != NULL && strcmp(rq->method, "POST") == 0;
}

static int mg_is_redirect(int status)
{
    return status == 302 || status == 303;
}

/*
 * Roundcube, from its index.php and rcmail.php (1.4.1 to 1.6):
 *  - the password is read with INPUT_POST only (`_pass`, `_user`): only a
 *    POST can carry one;
 *  - index.php sends 401 only when $error_message is set, and only the
 *    login branch sets it; that branch runs for task "login" and action
 *    "login", where rcmail::set_task() forces "login" on anyone not
 *    logged in and _action is read from the body as well as the query.
 *    So the query cannot tell a login apart: every POST answered 401 is
 *    a failed login, whatever its query says;
 *  - the 401 also covers what is not a password check (storage down,
 *    a forged request without token, the rate-limit lock): the plugin
 *    answers those 503, 400 and 429, which are not counted here;
 *  - `_framed=1`/`_remote=1` turn a failed login into a 200 that looks
 *    like any logged-in request: only the plugin (which answers 401
 *    whatever they say) makes those visible;
 *  - a success redirects (302 under PHP 8.2 as measured, 303 kept for
 *    other SAPIs); a query naming another task is a logged-in request.
 */
mg_outcome_t mg_classify_roundcube(const mg_login_req_t *rq)
{
    if (!mg_is_post(rq)) {
        return MG_OUTCOME_NONE;
    }
    if (rq->status == 401) {
        return MG_OUTCOME_FAILURE;
    }
    if (mg_is_redirect(rq->status) && mg_query_task(rq->query) != MG_TASK_OTHER) {
        return MG_OUTCOME_SUCCESS;
    }
    return MG_OUTCOME_NONE;
}

static int mg_ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);

    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * SquirrelMail 1.4 (src/redirect.php, functions/global.php):
 *  - redirect.php reads login_username/secretkey with sqGetGlobalVar,
 *    which looks in $_POST and then $_GET: a POST (body unseen) or any
 *    method whose query defines login_username is a login attempt;
 *  - a rejected password ends in logout_error() with status 200, a
 *    success in `Location: webmail.php` (302);
 *  - without the plugin the 200 also covers IMAP unreachable and a POST
 *    without credentials; the plugin answers those 503 and 400.
 */
mg_outcome_t mg_classify_squirrelmail(const mg_login_req_t *rq)
{
    if (rq->path == NULL || !mg_ends_with(rq->path, rq->path_len, MG_SQM_SCRIPT)) {
        return MG_OUTCOME_NONE;
    }
    if (!mg_is_post(rq) && !mg_query_has_var(rq->query, "login_username")) {
        return MG_OUTCOME_NONE;
    }
    if (rq->status == 200) {
        return MG_OUTCOME_FAILURE;
    }
    if (mg_is_redirect(rq->status)) {
        return MG_OUTCOME_SUCCESS;
    }
    return MG_OUTCOME_NONE;
}

static int mg_re_matches(const pcre2_code *re, const char *s, size_t n)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int rc;

    if (md == NULL) {
        return 0;
    }
    rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

int mg_classify_rule(const char *method, const void *re, const int *status, int nstatus,
                     const mg_login_req_t *rq)
{
    int i, hit = 0;

    if (method != NULL && (rq->method == NULL || strcmp(method, rq->method) != 0)) {
        return 0;
    }
    for (i = 0; i < nstatus && !hit; i++) {
        hit = status[i] == rq->status;
    }
    if (!hit || re == NULL || rq->path == NULL) {
        return 0;
    }
    if (mg_re_matches(re, rq->path, rq->path_len)) {
        return 1;
    }
    return rq->uri != NULL && strlen(rq->uri) != rq->path_len
           && mg_re_matches(re, rq->uri, strlen(rq->uri));
}
