/*
 * test_validate.c - update validation: shape, NaN and infinities (with the
 * first bad index), the norm bound under both policies, the example-count
 * cap, configuration errors, and the norm itself against hand values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/validate.h"
#include "test_util.h"

static roost_validate_config
config(size_t n, double max_norm, roost_norm_policy policy, uint64_t cap)
{
    roost_validate_config c;
    memset(&c, 0, sizeof(c));
    c.n = n;
    c.max_norm = max_norm;
    c.norm_policy = policy;
    c.max_examples = cap;
    return c;
}

static void
accepts_good_update(void **state)
{
    (void)state;
    /* [3, 4] has norm 5, under the bound 10: accepted unchanged. */
    roost_validate_config c = config(2, 10, ROOST_NORM_REJECT, 0);
    float d[] = {3, 4};
    roost_validate_result r;
    roost_errmsg em;
    assert_int_equal(roost_validate_update(&c, d, 2, 100, &r, &em), ROOST_OK);
    assert_near(r.norm, 5, 0);
    assert_false(r.clipped);
    assert_near(r.scale, 1, 0);
    assert_false(r.capped);
    assert_int_equal(r.examples, 100);
    assert_int_equal(r.reported_examples, 100);
    assert_true(d[0] == 3 && d[1] == 4);
}

static void
norm_matches_hand_values(void **state)
{
    (void)state;
    /* 11 elements (not a multiple of the 8-wide unrolling): ten 1s and
     * one 3 -> sqrt(10 + 9) = sqrt(19). */
    float x[11];
    for (int i = 0; i < 10; i++)
        x[i] = 1;
    x[10] = 3;
    assert_near(roost_validate_l2_norm(x, 11, NULL), sqrt(19.0), 1e-15);
    /* Empty vector: 0. */
    assert_near(roost_validate_l2_norm(x, 0, NULL), 0, 0);
    /* FLT_MAX squared overflows float but not double: the norm of
     * [FLT_MAX, FLT_MAX] is finite, FLT_MAX * sqrt(2), not a false
     * "non-finite". */
    float big[] = {FLT_MAX, -FLT_MAX};
    double nb = roost_validate_l2_norm(big, 2, NULL);
    assert_true(isfinite(nb));
    assert_near(nb, (double)FLT_MAX * sqrt(2.0), 1e25);
    roost_validate_config c = config(2, 0, ROOST_NORM_REJECT, 0);
    roost_validate_result r;
    assert_int_equal(roost_validate_update(&c, big, 2, 1, &r, NULL), ROOST_OK);
}

static void
refuses_nan_and_inf(void **state)
{
    (void)state;
    enum { N = 37 };
    roost_validate_config c = config(N, 0, ROOST_NORM_REJECT, 0);
    float d[N];
    roost_validate_result r;
    roost_errmsg em;
    const float bad[] = {NAN, HUGE_VALF, -HUGE_VALF};
    const size_t where[] = {0, 17, 36};
    for (int b = 0; b < 3; b++) {
        for (int w = 0; w < 3; w++) {
            for (int i = 0; i < N; i++)
                d[i] = 0.5f;
            d[where[w]] = bad[b];
            if (where[w] + 5 < N)
                d[where[w] + 5] = NAN; /* a later bad one is not reported */
            assert_int_equal(roost_validate_update(&c, d, N, 1, &r, &em),
                             ROOST_ENONFINITE);
            assert_int_equal(r.bad_index, where[w]);
            assert_false(isfinite(r.norm));
            char want[64];
            snprintf(want, sizeof(want), "coordinate %zu is %s", where[w],
                     b == 0 ? "NaN" : "infinite");
            assert_non_null(strstr(em.text, want));
        }
    }
    size_t first = 99;
    d[3] = NAN;
    d[0] = 1;
    assert_false(isfinite(roost_validate_l2_norm(d, 4, &first)));
    assert_int_equal(first, 3);
}

static void
refuses_wrong_shape(void **state)
{
    (void)state;
    roost_validate_config c = config(4, 0, ROOST_NORM_REJECT, 0);
    float d[5] = {0};
    roost_validate_result r;
    roost_errmsg em;
    assert_int_equal(roost_validate_update(&c, d, 3, 9, &r, &em), ROOST_ESHAPE);
    assert_non_null(strstr(em.text, "3 coordinates"));
    assert_non_null(strstr(em.text, "has 4"));
    assert_int_equal(r.reported_examples, 9);
    assert_int_equal(roost_validate_update(&c, d, 5, 9, &r, &em), ROOST_ESHAPE);
    assert_int_equal(roost_validate_update(&c, NULL, 0, 9, &r, &em),
                     ROOST_ESHAPE);
    assert_int_equal(roost_validate_update(&c, NULL, 4, 9, &r, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_validate_update(&c, d, 4, 9, NULL, &em),
                     ROOST_EINVAL);
}

static void
huge_norm_rejected(void **state)
{
    (void)state;
    /* [30, 40] has norm 50 > 10: refused, and left unchanged. */
    roost_validate_config c = config(2, 10, ROOST_NORM_REJECT, 0);
    float d[] = {30, 40};
    roost_validate_result r;
    roost_errmsg em;
    assert_int_equal(roost_validate_update(&c, d, 2, 1, &r, &em), ROOST_ENORM);
    assert_near(r.norm, 50, 0);
    assert_false(r.clipped);
    assert_true(d[0] == 30 && d[1] == 40);
    assert_non_null(strstr(em.text, "norm 50"));
    assert_non_null(strstr(em.text, "bound 10"));
    /* Exactly at the bound is accepted. */
    float e[] = {6, 8};
    assert_int_equal(roost_validate_update(&c, e, 2, 1, &r, &em), ROOST_OK);
    assert_near(r.norm, 10, 0);
}

static void
huge_norm_clipped(void **state)
{
    (void)state;
    /* [30, 40] clipped to norm 10 is [6, 8] up to the 2^-23 safety margin;
     * its norm never exceeds the bound and its direction is kept. */
    roost_validate_config c = config(2, 10, ROOST_NORM_CLIP, 0);
    float d[] = {30, 40};
    roost_validate_result r;
    roost_errmsg em;
    assert_int_equal(roost_validate_update(&c, d, 2, 1, &r, &em), ROOST_OK);
    assert_true(r.clipped);
    assert_near(r.norm, 50, 0);
    assert_near(r.scale, 0.2, 1e-7);
    assert_near(d[0], 6, 1e-5);
    assert_near(d[1], 8, 1e-5);
    assert_true(roost_validate_l2_norm(d, 2, NULL) <= 10.0);

    /* Many coordinates with awkward values: clipped norm <= bound. */
    enum { N = 1001 };
    static float v[N];
    for (int i = 0; i < N; i++)
        v[i] = (float)((i % 7) - 3) * 0.3333333f + 1e-3f * (float)i;
    roost_validate_config cn = config(N, 0.1, ROOST_NORM_CLIP, 0);
    assert_int_equal(roost_validate_update(&cn, v, N, 1, &r, &em), ROOST_OK);
    assert_true(r.clipped);
    double after = roost_validate_l2_norm(v, N, NULL);
    assert_true(after <= 0.1);
    assert_near(after, 0.1, 1e-6);

    /* No bound (max_norm 0): even a huge update passes, norm reported. */
    roost_validate_config none = config(2, 0, ROOST_NORM_CLIP, 0);
    float h[] = {3e30f, 4e30f};
    assert_int_equal(roost_validate_update(&none, h, 2, 1, &r, &em), ROOST_OK);
    assert_false(r.clipped);
    assert_near(r.norm, 5e30, 1e23);
}

static void
example_count_capped(void **state)
{
    (void)state;
    roost_validate_config c = config(1, 0, ROOST_NORM_REJECT, 500);
    float d[] = {1};
    roost_validate_result r;
    assert_int_equal(roost_validate_update(&c, d, 1, 60000, &r, NULL),
                     ROOST_OK);
    assert_true(r.capped);
    assert_int_equal(r.reported_examples, 60000);
    assert_int_equal(r.examples, 500);
    assert_int_equal(roost_validate_update(&c, d, 1, 500, &r, NULL), ROOST_OK);
    assert_false(r.capped);
    assert_int_equal(r.examples, 500);
    assert_int_equal(roost_validate_update(&c, d, 1, 0, &r, NULL), ROOST_OK);
    assert_int_equal(r.examples, 0);
    /* Cap 0 means none. */
    c.max_examples = 0;
    assert_int_equal(roost_validate_update(&c, d, 1, UINT64_MAX, &r, NULL),
                     ROOST_OK);
    assert_false(r.capped);
    assert_true(r.examples == UINT64_MAX);
}

static void
config_errors(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_validate_config c = config(0, 1, ROOST_NORM_CLIP, 0);
    assert_int_equal(roost_validate_config_check(&c, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "n must be positive"));
    c = config(2, -1, ROOST_NORM_CLIP, 0);
    assert_int_equal(roost_validate_config_check(&c, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "max_norm"));
    c = config(2, NAN, ROOST_NORM_CLIP, 0);
    assert_int_equal(roost_validate_config_check(&c, &em), ROOST_ECONFIG);
    c = config(2, HUGE_VAL, ROOST_NORM_CLIP, 0);
    assert_int_equal(roost_validate_config_check(&c, &em), ROOST_ECONFIG);
    c = config(2, 1, (roost_norm_policy)7, 0);
    assert_int_equal(roost_validate_config_check(&c, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "policy"));
    float d[] = {1, 2};
    roost_validate_result r;
    assert_int_equal(roost_validate_update(&c, d, 2, 1, &r, &em),
                     ROOST_ECONFIG);
    assert_int_equal(roost_validate_config_check(NULL, &em), ROOST_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_good_update),
        cmocka_unit_test(norm_matches_hand_values),
        cmocka_unit_test(refuses_nan_and_inf),
        cmocka_unit_test(refuses_wrong_shape),
        cmocka_unit_test(huge_norm_rejected),
        cmocka_unit_test(huge_norm_clipped),
        cmocka_unit_test(example_count_capped),
        cmocka_unit_test(config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
