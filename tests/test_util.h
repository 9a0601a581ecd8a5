/*
 * test_util.h - small helpers shared by the cmocka tests.
 */
#ifndef ROOST_TEST_UTIL_H
#define ROOST_TEST_UTIL_H

#include <math.h>
#include <stdio.h>

/* assert_near - |a - b| <= tol in double precision (cmocka's own float
 * assertion works in single precision). */
#define assert_near(a, b, tol)                                                 \
    do {                                                                       \
        double roost_a_ = (a), roost_b_ = (b), roost_t_ = (tol);               \
        if (!(fabs(roost_a_ - roost_b_) <= roost_t_)) {                        \
            print_error("%s = %.17g, %s = %.17g, |diff| > %g\n", #a, roost_a_, \
                        #b, roost_b_, roost_t_);                               \
            fail();                                                            \
        }                                                                      \
    } while (0)

/* assert_rel_near - |a - b| <= rel * |b|. */
#define assert_rel_near(a, b, rel)                                             \
    assert_near((a), (b), (rel)*fabs((double)(b)))

#endif
