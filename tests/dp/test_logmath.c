/*
 * test_logmath.c - log-space arithmetic against direct computation where
 * that is exact enough, and at the extremes where direct computation
 * overflows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "dp/logmath.h"
#include "test_util.h"

static void
addexp_matches_direct(void **state)
{
    (void)state;
    assert_near(roost_logaddexp(log(2.0), log(3.0)), log(5.0), 1e-12);
    assert_near(roost_logaddexp(-HUGE_VAL, 1.5), 1.5, 0);
    assert_near(roost_logaddexp(1000.0, 1000.0), 1000.0 + log(2.0), 1e-9);
    assert_true(isfinite(roost_logaddexp(800.0, -800.0)));
}

static void
subexp_matches_direct(void **state)
{
    (void)state;
    assert_near(roost_logsubexp(log(5.0), log(3.0)), log(2.0), 1e-12);
    assert_true(roost_logsubexp(2.0, 2.0) == -HUGE_VAL);
    assert_true(isnan(roost_logsubexp(1.0, 2.0)));
    /* Close arguments keep relative precision. */
    double a = 1.0, b = 1.0 - 1e-12;
    assert_near(roost_logsubexp(a, b), a + log(1e-12), 1e-3);
}

static void
logbinom_values(void **state)
{
    (void)state;
    assert_near(roost_logbinom(10, 3), log(120.0), 1e-10);
    assert_near(roost_logbinom(5, 0), 0.0, 1e-12);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addexp_matches_direct),
        cmocka_unit_test(subexp_matches_direct),
        cmocka_unit_test(logbinom_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
