/* Shared main for the Check unit-test binaries: each test file defines
 * one suite and ends with MG_TEST_MAIN(its_suite). */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <check.h>
#include <stdlib.h>

#define MG_TEST_MAIN(suite_fn)                                  \
    int main(void)                                              \
    {                                                           \
        SRunner *sr = srunner_create(suite_fn());               \
        srunner_run_all(sr, CK_NORMAL);                         \
        int failed = srunner_ntests_failed(sr);                 \
        srunner_free(sr);                                       \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;       \
    }

#endif
