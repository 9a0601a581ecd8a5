/*
 * test_adaclip.c - adaptive clipping: the clip norm converges to the target
 * quantile of the update norms, the count is really noised (by the secure
 * sampler), the privacy composition formula round-trips, and bad inputs
 * are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/rng.h"
#include "dp/adaclip.h"
#include "test_util.h"

struct env {
    roost_rng *rng;
    roost_noise *noise;
};

static void
env_init(struct env *e, double count_sigma, uint64_t seed)
{
    assert_int_equal(
        roost_rng_create_insecure_deterministic(&e->rng, NULL, seed, 0),
        ROOST_OK);
    assert_int_equal(roost_noise_create(&e->noise, NULL, e->rng, count_sigma,
                                        1.0, ROOST_NOISE_GRID_BITS_DEFAULT,
                                        NULL),
                     ROOST_OK);
}

static void
env_free(struct env *e)
{
    roost_noise_destroy(e->noise);
    roost_rng_destroy(e->rng);
}

/* Update norms of m clients spread evenly over (0, 10]: the gamma-quantile
 * is 10 * gamma. */
static uint64_t
count_unclipped(double clip, uint64_t m)
{
    uint64_t n = 0;
    for (uint64_t i = 1; i <= m; i++)
        n += 10.0 * (double)i / (double)m <= clip;
    return n;
}

static void
tracks_the_target_quantile(void **state)
{
    (void)state;
    static const double gammas[] = {0.2, 0.5, 0.8};
    for (size_t g = 0; g < 3; g++) {
        const uint64_t m = 1000;
        struct env e;
        env_init(&e, (double)m / 20.0, 7 + g);
        roost_adaclip st;
        assert_int_equal(roost_adaclip_init(&st, 0.1, gammas[g], 0.2,
                                            (double)m / 20.0, (double)m, NULL),
                         ROOST_OK);
        for (int round = 0; round < 300; round++) {
            uint64_t unclipped = count_unclipped(st.clip, m);
            assert_int_equal(
                roost_adaclip_update(&st, e.noise, unclipped, m, NULL, NULL),
                ROOST_OK);
        }
        /* Within 10% of the quantile (noise 1/40 of m per round and a
         * step of eta * 0.05 keep it close). */
        assert_near(st.clip, 10.0 * gammas[g], 1.0 * gammas[g] + 0.2);
        env_free(&e);
    }
}

static void
count_is_noised(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, 5.0, 1);
    roost_adaclip st;
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, 0.2, 5.0, 100.0, NULL),
                     ROOST_OK);
    double sum = 0.0, sum2 = 0.0;
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        double frac;
        st.clip = 1.0;
        assert_int_equal(
            roost_adaclip_update(&st, e.noise, 50, 100, &frac, NULL), ROOST_OK);
        sum += frac;
        sum2 += frac * frac;
    }
    /* b~ = (0 + N(0, 25)) / 100 + 0.5: mean 0.5, stddev 0.05. */
    double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
    assert_near(mean, 0.5, 0.01);
    assert_near(sd, 0.05, 0.005);
    env_free(&e);
}

static void
privacy_formula(void **state)
{
    (void)state;
    double z, zu;
    /* Count noise sigma_b = m/20 = 5 for m = 100: 2 sigma_b = 10. */
    assert_int_equal(roost_adaclip_update_sigma(1.0, 5.0, &zu, NULL), ROOST_OK);
    assert_true(zu > 1.0);
    assert_int_equal(roost_adaclip_effective_sigma(zu, 5.0, &z, NULL),
                     ROOST_OK);
    assert_rel_near(z, 1.0, 1e-12);
    assert_rel_near(zu, 1.0 / sqrt(1.0 - 0.01), 1e-12);
    roost_errmsg em;
    assert_int_equal(roost_adaclip_update_sigma(10.0, 5.0, &zu, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(em.text, "too small"));
    roost_adaclip st;
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, 0.2, 5.0, 100.0, NULL),
                     ROOST_OK);
    roost_dp_event ev;
    assert_int_equal(roost_adaclip_event(&st, 0.01, zu, 100, &ev, NULL),
                     ROOST_OK);
    assert_rel_near(ev.sigma, 1.0, 1e-12);
    assert_int_equal(ev.steps, 100);
    /* The accounted epsilon is that of the planned multiplier. */
    double eps_ada, eps_plan;
    roost_dp_event plan = {0.01, 1.0, 100};
    assert_int_equal(roost_dp_epsilon(&ev, 1, 1e-5, &eps_ada, NULL, NULL),
                     ROOST_OK);
    assert_int_equal(roost_dp_epsilon(&plan, 1, 1e-5, &eps_plan, NULL, NULL),
                     ROOST_OK);
    assert_rel_near(eps_ada, eps_plan, 1e-9);
}

/* The noised centred count of (unclipped, reports), before clamping, times
 * m; rc receives the update's return code. The same seed gives the same
 * noise draw, so two calls differ only by what the count contributes. */
static double
noised_count(double count_sigma, uint64_t unclipped, uint64_t reports, int *rc)
{
    const double m = 1e9; /* keeps b~ far from the clamp */
    struct env e;
    env_init(&e, count_sigma, 42);
    roost_adaclip st;
    assert_int_equal(
        roost_adaclip_init(&st, 1.0, 0.5, 0.2, count_sigma, m, NULL), ROOST_OK);
    double frac = -1.0;
    *rc = roost_adaclip_update(&st, e.noise, unclipped, reports, &frac, NULL);
    env_free(&e);
    return (frac - 0.5) * m;
}

/* The accounting gives the centred count a sensitivity of 1/2. The sampler
 * rounds its input to its grid g = 2^(floor(log2 sigma_b) - grid_bits);
 * half-integers are on that grid only when g <= 1/2. At sigma_b = 2^20 (g =
 * 1) a neighbour that moves the centred count from 1/2 to 1 moved the
 * released value by 1 (0.5 rounds to 0, ties to even): twice the accounted
 * sensitivity. Such a sampler must be refused. */
static void
count_sensitivity_survives_the_grid(void **state)
{
    (void)state;
    /* Below 2^20 the grid holds half-integers: the neighbours differ by
     * exactly 1/2 in the release. */
    int rc_a, rc_b;
    double a = noised_count(1e6, 2, 3, &rc_a);
    double b = noised_count(1e6, 2, 2, &rc_b);
    assert_int_equal(rc_a, ROOST_OK);
    assert_int_equal(rc_b, ROOST_OK);
    assert_near(b - a, 0.5, 1e-6);
    /* At 2^20 either the release keeps the sensitivity or it is refused. */
    a = noised_count(0x1p20, 2, 3, &rc_a);
    b = noised_count(0x1p20, 2, 2, &rc_b);
    if (rc_a == ROOST_OK && rc_b == ROOST_OK)
        assert_near(b - a, 0.5, 1e-6);
    else
        assert_true(rc_a == ROOST_EINVAL && rc_b == ROOST_EINVAL);
}

static void
invalid_inputs(void **state)
{
    (void)state;
    roost_adaclip st;
    roost_errmsg em;
    assert_int_equal(roost_adaclip_init(&st, 0.0, 0.5, 0.2, 5, 100, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_adaclip_init(&st, 1.0, 1.5, 0.2, 5, 100, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, NAN, 5, 100, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, 0.2, 0, 100, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, 0.2, 5, -1, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_adaclip_init(&st, 1.0, 0.5, 0.2, 5, 100, &em),
                     ROOST_OK);
    struct env e;
    env_init(&e, 5.0, 3);
    assert_int_equal(roost_adaclip_update(&st, e.noise, 11, 10, NULL, &em),
                     ROOST_EINVAL);
    assert_near(st.clip, 1.0, 0);
    env_free(&e);
    /* A sampler of the wrong scale is refused: the accounting assumes
     * count_sigma. */
    env_init(&e, 2.0, 3);
    assert_int_equal(roost_adaclip_update(&st, e.noise, 5, 10, NULL, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(em.text, "stddev"));
    env_free(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tracks_the_target_quantile),
        cmocka_unit_test(count_is_noised),
        cmocka_unit_test(privacy_formula),
        cmocka_unit_test(count_sensitivity_survives_the_grid),
        cmocka_unit_test(invalid_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
