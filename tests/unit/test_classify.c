/*
 * Login classification: every rule, and every way around it that was
 * found against the real Roundcube 1.6 and SquirrelMail 1.4.23.
 */
#include <stdio.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "mg_classify.h"
#include "mg_test.h"

static mg_login_req_t req(const char *method, const char *path, const char *query, int status)
{
    mg_login_req_t rq;

    rq.method = method;
    rq.path = path;
    rq.path_len = strlen(path);
    rq.uri = NULL;
    rq.query = query;
    rq.status = status;
    return rq;
}

static mg_outcome_t rc(const char *method, const char *query, int status)
{
    mg_login_req_t rq = req(method, "/index.php", query, status);
    return mg_classify_roundcube(&rq);
}

static mg_outcome_t sqm(const char *method, const char *path, const char *query, int status)
{
    mg_login_req_t rq = req(method, path, query, status);
    return mg_classify_squirrelmail(&rq);
}

/* ---- PHP's names ---- */

START_TEST(query_var_names_as_php_reads_them)
{
    ck_assert(mg_query_has_var("login_username=bob", "login_username"));
    ck_assert(mg_query_has_var("a=1&login_username=bob&b", "login_username"));
    ck_assert(mg_query_has_var("login_username", "login_username"));
    ck_assert(mg_query_has_var("login_username=", "login_username"));
    /* ' ' and '.' become '_', leading spaces go, '+' is a space. */
    ck_assert(mg_query_has_var("login.username=bob", "login_username"));
    ck_assert(mg_query_has_var("login+username=bob", "login_username"));
    ck_assert(mg_query_has_var("login%20username=bob", "login_username"));
    ck_assert(mg_query_has_var("++login_username=bob", "login_username"));
    ck_assert(mg_query_has_var("%6cogin_%75sername=bob", "login_username"));
    /* An array of that name, and a NUL that ends the name. */
    ck_assert(mg_query_has_var("login_username[]=bob", "login_username"));
    ck_assert(mg_query_has_var("login_username[x]=bob", "login_username"));
    ck_assert(mg_query_has_var("login_username%00junk=bob", "login_username"));
    /* A '[' without ']' becomes '_' (PHP 8), and so does every later one. */
    ck_assert(mg_query_has_var("login[username=bob", "login_username"));
    /* Not it. */
    ck_assert(!mg_query_has_var("login_usernamex=bob", "login_username"));
    ck_assert(!mg_query_has_var("xlogin_username=bob", "login_username"));
    ck_assert(!mg_query_has_var("login=bob&username=x", "login_username"));
    ck_assert(!mg_query_has_var("a=login_username", "login_username"));
    ck_assert(!mg_query_has_var("", "login_username"));
    ck_assert(!mg_query_has_var(NULL, "login_username"));
    ck_assert(!mg_query_has_var("[login_username]=x", "login_username"));
}
END_TEST

START_TEST(query_var_name_of_any_length)
{
    char q[4096];

    /* An array index of any length does not hide the name. */
    snprintf(q, sizeof(q), "login_username[%0*d]=bob", 3000, 7);
    ck_assert(mg_query_has_var(q, "login_username"));
    snprintf(q, sizeof(q), "%0*d=1&login_username=bob", 3000, 7);
    ck_assert(mg_query_has_var(q, "login_username"));
}
END_TEST

START_TEST(query_task_last_one_wins)
{
    ck_assert_int_eq(mg_query_task(NULL), MG_TASK_ABSENT);
    ck_assert_int_eq(mg_query_task(""), MG_TASK_ABSENT);
    ck_assert_int_eq(mg_query_task("_action=login"), MG_TASK_ABSENT);
    ck_assert_int_eq(mg_query_task("_task=login"), MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=LOGIN"), MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=mail"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task("_task=mail&_task=login"), MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=login&_task=mail"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task("_task"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task("_task[]=login"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task("_task%5B%5D=login"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task(" _task=login"), MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=lo%67in"), MG_TASK_LOGIN);
    /* Roundcube keeps only [A-Za-z0-9_-] of a task name. */
    ck_assert_int_eq(mg_query_task("_task=l.o!g%00i+n"), MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=logins"), MG_TASK_OTHER);
    ck_assert_int_eq(mg_query_task("_task=log"), MG_TASK_OTHER);
}
END_TEST

/* Issue 9: a _task value over 31 decoded bytes was not recognised. */
START_TEST(query_task_value_of_any_length_is_read)
{
    char q[8192];
    size_t n;

    n = (size_t)snprintf(q, sizeof(q), "_task=login");
    while (n + 3 < sizeof(q) - 1) {
        memcpy(q + n, "%21", 3);   /* '!', which Roundcube drops */
        n += 3;
    }
    q[n] = '\0';
    ck_assert_int_eq(mg_query_task(q), MG_TASK_LOGIN);
    q[6] = 'x';   /* "xogin" + padding */
    ck_assert_int_eq(mg_query_task(q), MG_TASK_OTHER);
    /* 40 plain characters, then "login": Roundcube cleans the value to
     * "login" only when every other character is dropped. */
    ck_assert_int_eq(mg_query_task("_task=........................................login"),
                     MG_TASK_LOGIN);
    ck_assert_int_eq(mg_query_task("_task=loginloginloginloginloginloginloginlogin"),
                     MG_TASK_OTHER);
}
END_TEST

/* ---- Roundcube ---- */

START_TEST(roundcube_post_answered_401_is_a_failure)
{
    ck_assert_int_eq(rc("POST", "_task=login", 401), MG_OUTCOME_FAILURE);
    ck_assert_int_eq(rc("POST", NULL, 401), MG_OUTCOME_FAILURE);
}
END_TEST

/* Roundcube forces the task to "login" for anyone not logged in and reads
 * _action from the body: the query's _task tells nothing. */
START_TEST(roundcube_task_in_body_is_counted)
{
    ck_assert_int_eq(rc("POST", "_task=mail", 401), MG_OUTCOME_FAILURE);
    ck_assert_int_eq(rc("POST", "_task=mail&_action=send", 401), MG_OUTCOME_FAILURE);
    ck_assert_int_eq(rc("POST", "_task=settings&_task=mail", 401), MG_OUTCOME_FAILURE);
}
END_TEST

START_TEST(roundcube_success_is_a_redirect_of_a_login_post)
{
    ck_assert_int_eq(rc("POST", "_task=login", 302), MG_OUTCOME_SUCCESS);
    ck_assert_int_eq(rc("POST", "_task=login", 303), MG_OUTCOME_SUCCESS);
    ck_assert_int_eq(rc("POST", NULL, 302), MG_OUTCOME_SUCCESS);
    /* A logged-in user's POST to another task may redirect too. */
    ck_assert_int_eq(rc("POST", "_task=mail&_action=send", 302), MG_OUTCOME_NONE);
}
END_TEST

START_TEST(roundcube_get_and_other_methods_never_count)
{
    /* Roundcube 1.4.0 answered every render of the login page 401; a GET
     * carries no _pass (read from $_POST only). */
    ck_assert_int_eq(rc("GET", "_task=login", 401), MG_OUTCOME_NONE);
    ck_assert_int_eq(rc("HEAD", "_task=login", 401), MG_OUTCOME_NONE);
    ck_assert_int_eq(rc("PUT", "_task=login", 401), MG_OUTCOME_NONE);
    ck_assert_int_eq(rc("post", "_task=login", 401), MG_OUTCOME_NONE);
    ck_assert_int_eq(rc(NULL, "_task=login", 401), MG_OUTCOME_NONE);
    ck_assert_int_eq(rc("GET", "_task=login", 302), MG_OUTCOME_NONE);
}
END_TEST

/* The plugin's vocabulary: what is not a password check is never a
 * failure. */
START_TEST(roundcube_plugin_statuses_are_not_counted)
{
    static const int not_counted[] = { 200, 400, 403, 429, 500, 503 };
    size_t i;

    for (i = 0; i < sizeof(not_counted) / sizeof(not_counted[0]); i++) {
        ck_assert_int_eq(rc("POST", "_task=login", not_counted[i]), MG_OUTCOME_NONE);
    }
}
END_TEST

/* ---- SquirrelMail ---- */

START_TEST(squirrelmail_post_to_redirect_php)
{
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 200), MG_OUTCOME_FAILURE);
    ck_assert_int_eq(sqm("POST", "/squirrelmail/src/redirect.php", NULL, 200),
                     MG_OUTCOME_FAILURE);
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 302), MG_OUTCOME_SUCCESS);
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 303), MG_OUTCOME_SUCCESS);
}
END_TEST

/* redirect.php reads login_username/secretkey from the query too. */
START_TEST(squirrelmail_query_credentials_with_any_method_are_counted)
{
    static const char *const methods[] = { "GET", "HEAD", "PUT", "OPTIONS", "DELETE",
                                           "PATCH", "PROPFIND", "post" };
    const char *q = "login_username=bob&secretkey=x";
    size_t i;

    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        ck_assert_int_eq(sqm(methods[i], "/src/redirect.php", q, 200), MG_OUTCOME_FAILURE);
        ck_assert_int_eq(sqm(methods[i], "/src/redirect.php", q, 302), MG_OUTCOME_SUCCESS);
    }
    ck_assert_int_eq(sqm("GET", "/src/redirect.php", "login.username=bob", 200),
                     MG_OUTCOME_FAILURE);
    ck_assert_int_eq(sqm("GET", "/src/redirect.php", "login_username[]=bob", 200),
                     MG_OUTCOME_FAILURE);
}
END_TEST

START_TEST(squirrelmail_not_a_login)
{
    /* A GET without credentials shows the "must be logged in" page. */
    ck_assert_int_eq(sqm("GET", "/src/redirect.php", NULL, 200), MG_OUTCOME_NONE);
    ck_assert_int_eq(sqm("GET", "/src/redirect.php", "secretkey=x", 200), MG_OUTCOME_NONE);
    /* Other scripts. */
    ck_assert_int_eq(sqm("POST", "/src/webmail.php", NULL, 200), MG_OUTCOME_NONE);
    ck_assert_int_eq(sqm("POST", "/src/redirect.phpx", NULL, 200), MG_OUTCOME_NONE);
    ck_assert_int_eq(sqm("POST", "/redirect.php", NULL, 200), MG_OUTCOME_NONE);
    /* The plugin's statuses, and Roundcube's 401. */
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 503), MG_OUTCOME_NONE);
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 400), MG_OUTCOME_NONE);
    ck_assert_int_eq(sqm("POST", "/src/redirect.php", NULL, 401), MG_OUTCOME_NONE);
}
END_TEST

/* The script path is what the caller passes: PATH_INFO already cut. */
START_TEST(squirrelmail_path_info_does_not_hide_the_script)
{
    mg_login_req_t rq = req("POST", "/src/redirect.php/x", NULL, 200);

    rq.path_len = strlen("/src/redirect.php");
    rq.uri = "/src/redirect.php/x";
    ck_assert_int_eq(mg_classify_squirrelmail(&rq), MG_OUTCOME_FAILURE);
}
END_TEST

/* ---- MailGuardFailure rules ---- */

static pcre2_code *re(const char *pattern)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off,
                                  NULL);

    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(rule_method_status_and_path)
{
    pcre2_code *c = re("^/horde/login\\.php$");
    int st[] = { 200, 401 };
    mg_login_req_t rq = req("POST", "/horde/login.php", NULL, 200);

    ck_assert(mg_classify_rule("POST", c, st, 2, &rq));
    ck_assert(mg_classify_rule(NULL, c, st, 2, &rq));
    ck_assert(!mg_classify_rule("GET", c, st, 2, &rq));
    rq.status = 302;
    ck_assert(!mg_classify_rule("POST", c, st, 2, &rq));
    rq = req("POST", "/x/horde/login.php", NULL, 401);
    ck_assert(!mg_classify_rule("POST", c, st, 2, &rq));
    rq.method = NULL;
    ck_assert(!mg_classify_rule("POST", c, st, 2, &rq));
    ck_assert(!mg_classify_rule("POST", NULL, st, 2, &rq));
    pcre2_code_free(c);
}
END_TEST

/* Issue 8: /horde/login.php/x ran login.php and was never counted. */
START_TEST(rule_matches_the_script_path_without_path_info)
{
    pcre2_code *c = re("^/horde/login\\.php$");
    pcre2_code *route = re("^/app/index\\.php/login$");
    int st[] = { 401 };
    mg_login_req_t rq = req("POST", "/horde/login.php/x", NULL, 401);

    rq.uri = rq.path;
    rq.path_len = strlen("/horde/login.php");
    ck_assert(mg_classify_rule("POST", c, st, 1, &rq));
    /* A rule written for a front controller's route still matches the
     * whole path. */
    rq = req("POST", "/app/index.php/login", NULL, 401);
    rq.uri = rq.path;
    rq.path_len = strlen("/app/index.php");
    ck_assert(mg_classify_rule("POST", route, st, 1, &rq));
    pcre2_code_free(c);
    pcre2_code_free(route);
}
END_TEST

static Suite *classify_suite(void)
{
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, query_var_names_as_php_reads_them);
    tcase_add_test(tc, query_var_name_of_any_length);
    tcase_add_test(tc, query_task_last_one_wins);
    tcase_add_test(tc, query_task_value_of_any_length_is_read);
    tcase_add_test(tc, roundcube_post_answered_401_is_a_failure);
    tcase_add_test(tc, roundcube_task_in_body_is_counted);
    tcase_add_test(tc, roundcube_success_is_a_redirect_of_a_login_post);
    tcase_add_test(tc, roundcube_get_and_other_methods_never_count);
    tcase_add_test(tc, roundcube_plugin_statuses_are_not_counted);
    tcase_add_test(tc, squirrelmail_post_to_redirect_php);
    tcase_add_test(tc, squirrelmail_query_credentials_with_any_method_are_counted);
    tcase_add_test(tc, squirrelmail_not_a_login);
    tcase_add_test(tc, squirrelmail_path_info_does_not_hide_the_script);
    tcase_add_test(tc, rule_method_status_and_path);
    tcase_add_test(tc, rule_matches_the_script_path_without_path_info);
    suite_add_tcase(s, tc);
    return s;
}

MG_TEST_MAIN(classify_suite)
