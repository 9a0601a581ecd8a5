/*
 * test_error.c - drift tests for the error table: every code has a distinct
 * name and text, codes are dense from 0, unknown codes are handled, and the
 * error-message helpers truncate safely.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "common/error.h"
#include "common/log.h"

static void
every_code_has_text_and_name(void **state)
{
    (void)state;
    for (int c = 0; c < ROOST_ERR_COUNT_; c++) {
        const char *text = roost_strerror(c);
        const char *name = roost_errname(c);
        assert_non_null(text);
        assert_string_not_equal(text, "unknown error");
        assert_string_not_equal(name, "ROOST_UNKNOWN");
        assert_true(strncmp(name, "ROOST_", 6) == 0);
        for (int d = 0; d < c; d++) {
            assert_string_not_equal(text, roost_strerror(d));
            assert_string_not_equal(name, roost_errname(d));
        }
    }
}

static void
codes_are_stable(void **state)
{
    (void)state;
    /* Codes are ABI and wire values: these must never change. */
    assert_int_equal(ROOST_OK, 0);
    assert_int_equal(ROOST_ENOMEM, 1);
    assert_int_equal(ROOST_EINVAL, 2);
    assert_int_equal(ROOST_EBUDGET, 19);
    assert_int_equal(ROOST_ELEDGER, 20);
    assert_string_equal(roost_errname(ROOST_EBUDGET), "ROOST_EBUDGET");
}

static void
unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(roost_strerror(-1), "unknown error");
    assert_string_equal(roost_strerror(ROOST_ERR_COUNT_), "unknown error");
    assert_string_equal(roost_errname(99999), "ROOST_UNKNOWN");
}

static void
fail_formats_and_truncates(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    assert_string_equal(roost_errmsg_text(&em), "");
    assert_int_equal(roost_fail(&em, ROOST_EDATA, "bad magic %#x", 0x1234),
                     ROOST_EDATA);
    assert_string_equal(em.text, "bad magic 0x1234");
    char big[2 * ROOST_ERRMSG_CAP];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    roost_fail(&em, ROOST_EINVAL, "%s", big);
    assert_int_equal(strlen(em.text), ROOST_ERRMSG_CAP - 1);
    assert_int_equal(roost_fail(NULL, ROOST_EIO, "ignored"), ROOST_EIO);
    assert_string_equal(roost_errmsg_text(NULL), "");
}

struct captured {
    int calls;
    int level;
    char text[64];
};

static void
capture(void *arg, int level, const char *message)
{
    struct captured *c = arg;
    c->calls++;
    c->level = level;
    strncpy(c->text, message, sizeof(c->text) - 1);
}

static void
logger_filters_by_level(void **state)
{
    (void)state;
    struct captured c = {0};
    roost_logger lg = {capture, &c, ROOST_LOG_INFO};
    roost_log(&lg, ROOST_LOG_DEBUG, "dropped");
    assert_int_equal(c.calls, 0);
    roost_log(&lg, ROOST_LOG_WARN, "round %d late", 7);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.level, ROOST_LOG_WARN);
    assert_string_equal(c.text, "round 7 late");
    roost_log(NULL, ROOST_LOG_ERROR, "no logger is fine");
    assert_string_equal(roost_log_level_name(ROOST_LOG_ERROR), "error");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_text_and_name),
        cmocka_unit_test(codes_are_stable),
        cmocka_unit_test(unknown_codes),
        cmocka_unit_test(fail_formats_and_truncates),
        cmocka_unit_test(logger_filters_by_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
