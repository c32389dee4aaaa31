/*
 * Fuzz target for login classification.  Whatever the query string holds,
 * nothing in it can move a password check out of "failure":
 *  - a Roundcube POST answered 401 is a failure;
 *  - a SquirrelMail request to redirect.php whose query ends with a
 *    login_username is a login, and a POST to it always is;
 *  - the last _task of a query decides, so appending "_task=login" makes
 *    it the login task;
 *  - the classifiers never read past the strings they are given (ASan).
 * Input: byte 0 picks the method, bytes 1-2 the status, the rest is the
 * query string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mg_classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = { "POST", "GET", "HEAD", "PUT", "post", "OPTIONS" };

static void check(const mg_login_req_t *rq, const char *query)
{
    mg_login_req_t r = *rq;
    mg_outcome_t o;

    r.query = query;
    o = mg_classify_roundcube(&r);
    if (strcmp(r.method, "POST") == 0 && r.status == 401 && o != MG_OUTCOME_FAILURE)
        abort();
    if (strcmp(r.method, "POST") != 0 && o != MG_OUTCOME_NONE)
        abort();
    r.path = "/mail/src/redirect.php";
    r.path_len = strlen(r.path);
    o = mg_classify_squirrelmail(&r);
    if (r.status == 200 && strcmp(r.method, "POST") == 0 && o != MG_OUTCOME_FAILURE)
        abort();
    if (r.status != 200 && r.status != 302 && r.status != 303 && o != MG_OUTCOME_NONE)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_login_req_t rq;
    char *q, *q2, *q3;
    size_t n;

    if (size < 3)
        return 0;
    memset(&rq, 0, sizeof(rq));
    rq.method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
    rq.status = 100 + (int)(((unsigned)data[1] << 8 | data[2]) % 500);
    rq.path = "/index.php";
    rq.path_len = strlen(rq.path);
    n = size - 3;
    q = malloc(n + 1);
    q2 = malloc(n + 32);
    q3 = malloc(n + 32);
    if (q == NULL || q2 == NULL || q3 == NULL)
        abort();
    memcpy(q, data + 3, n);
    q[n] = '\0';   /* a NUL inside ends the query, as in httpd's r->args */

    check(&rq, q);
    check(&rq, NULL);

    strcpy(q2, q);
    strcat(q2, "&login_username=x");
    if (!mg_query_has_var(q2, "login_username"))
        abort();
    rq.status = 200;
    rq.path = "/src/redirect.php";
    rq.path_len = strlen(rq.path);
    rq.query = q2;
    if (mg_classify_squirrelmail(&rq) != MG_OUTCOME_FAILURE)
        abort();

    strcpy(q3, q);
    strcat(q3, "&_task=login");
    if (mg_query_task(q3) != MG_TASK_LOGIN)
        abort();
    strcpy(q3, q);
    strcat(q3, "&_task=mail");
    if (mg_query_task(q3) != MG_TASK_OTHER)
        abort();

    free(q);
    free(q2);
    free(q3);
    return 0;
}
