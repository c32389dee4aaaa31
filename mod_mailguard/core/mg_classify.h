/*
 * Login classification: was this finished request a failed login, a
 * successful one, or neither?
 *
 * Pure logic on what httpd still knows when the response has been sent:
 * the method the application saw, the script path, the raw query string
 * and the final status.  The request body is gone by then, so every rule
 * here is written so that what an attacker may put in the body cannot
 * move a password check out of "failure".  The reasons, read in each
 * webmail's own source, are next to each rule in mg_classify.c.
 *
 * The status vocabulary of the webmail plugins shipped in
 * mod_mailguard/webmail/ (the module needs no setting to know whether a
 * plugin is installed; the plugins only move outcomes that are not
 * password checks out of the counted status):
 *
 *   Roundcube  401  password rejected by IMAP          (counted)
 *              503  storage unreachable (+Retry-After) (never counted)
 *              429  Roundcube's own rate-limit lock    (never counted)
 *              400  invalid request: token, session,
 *                   cookies, host                      (never counted)
 *              403  any other 401 Roundcube would send
 *                   (error pages, killcache)           (never counted)
 *   SquirrelMail 200 password rejected (SquirrelMail's own failure page)
 *              503  IMAP unreachable (+Retry-After)    (never counted)
 *              400  no credentials in the request      (never counted)
 *
 * No httpd or APR header: this file is shared with the unit tests and the
 * fuzz target.
 */
#ifndef MG_CLASSIFY_H
#define MG_CLASSIFY_H

#include <stddef.h>

typedef enum mg_outcome {
    MG_OUTCOME_NONE = 0, /* not a login, or not a password check */
    MG_OUTCOME_FAILURE,  /* a password was checked and rejected */
    MG_OUTCOME_SUCCESS   /* a login that went through */
} mg_outcome_t;

/* One finished request, as the application saw it. */
typedef struct mg_login_req {
    const char *method; /* "POST", ...: the method the application ran with */
    const char *path;   /* decoded path of the script: no PATH_INFO */
    size_t path_len;
    const char *uri;   /* decoded path with PATH_INFO (NULL: same as path) */
    const char *query; /* raw query string, NULL when there is none */
    int status;        /* final status of the response */
} mg_login_req_t;

/* MailGuardWatch roundcube (1.4.1 and later). */
mg_outcome_t mg_classify_roundcube(const mg_login_req_t *rq);

/* MailGuardWatch squirrelmail (1.4). */
mg_outcome_t mg_classify_squirrelmail(const mg_login_req_t *rq);

/*
 * One MailGuardFailure rule: method (NULL = any), a compiled PCRE2 pattern
 * (pcre2_code *), the statuses that mean failure.  The pattern is tried on
 * the script path and, when the request had PATH_INFO, on the whole path:
 * extra path segments after the script never hide a login, and a rule
 * written for a front controller's route (/index.php/login) still works.
 * 1 when the rule says failure.
 */
int mg_classify_rule(const char *method, const void *re, const int *status, int nstatus,
                     const mg_login_req_t *rq);

/* ---- query-string helpers, exposed for the unit tests ---- */

/* Does the raw query string define variable `name` once PHP has decoded
 * and mangled the names (leading spaces dropped, ' ' and '.' turned into
 * '_', "name[...]" an array of that name, a NUL ends the name)? */
int mg_query_has_var(const char *query, const char *name);

typedef enum mg_task {
    MG_TASK_ABSENT = 0, /* the query names no _task */
    MG_TASK_LOGIN,      /* its last _task is "login" once Roundcube cleans it */
    MG_TASK_OTHER       /* its last _task is something else */
} mg_task_t;

/* The Roundcube task the query string names (the last _task wins, as in
 * PHP).  Values of any length are read. */
mg_task_t mg_query_task(const char *query);

#endif
