/*
 * test_accountant.c - the RDP accountant against Opacus's published value,
 * closed forms, an independent numerical integration of the privacy-loss
 * moment, and the properties a privacy accountant must have (monotone in
 * steps and q, decreasing in sigma, composition, no NaN/Inf anywhere).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <string.h>

#include "dp/accountant.h"
#include "test_util.h"

static double
epsilon_of(double q, double sigma, uint64_t steps, double delta)
{
    roost_dp_event e = {q, sigma, steps};
    roost_errmsg em;
    double eps = -1.0;
    int rc = roost_dp_epsilon(&e, 1, delta, &eps, NULL, &em);
    if (rc != ROOST_OK)
        print_error("roost_dp_epsilon: %s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    return eps;
}

/* Opacus tests/accountants_test.py: RDPAccountant, noise 1.5, sample rate
 * 0.04, int(90 / 0.04) = 2250 steps, delta 1e-5 -> 7.32911117143. Checked
 * on our default grid and on Opacus's own DEFAULT_ALPHAS. */
static void
opacus_reference_value(void **state)
{
    (void)state;
    roost_dp_event e = {0.04, 1.5, 2250};
    double eps, order;
    assert_int_equal(roost_dp_epsilon(&e, 1, 1e-5, &eps, &order, NULL),
                     ROOST_OK);
    assert_rel_near(eps, 7.32911117143, 1e-4);
    assert_rel_near(eps, 7.32911117143, 1e-9);
    assert_near(order, 3.9, 1e-12);

    double opacus_orders[99 + 52];
    size_t n = 0;
    for (int x = 1; x < 100; x++)
        opacus_orders[n++] = 1.0 + (double)x / 10.0;
    for (int a = 12; a < 64; a++)
        opacus_orders[n++] = (double)a;
    assert_int_equal(roost_dp_epsilon_orders(&e, 1, opacus_orders, n, 1e-5,
                                             &eps, &order, NULL),
                     ROOST_OK);
    assert_rel_near(eps, 7.32911117143, 1e-4);
}

static void
default_grid_shape(void **state)
{
    (void)state;
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    assert_int_equal(roost_rdp_default_orders(orders, 10), 0);
    assert_int_equal(roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS),
                     ROOST_RDP_DEFAULT_ORDERS);
    assert_near(orders[0], 1.1, 1e-15);
    assert_near(orders[98], 10.9, 1e-15);
    assert_near(orders[99], 11.0, 0);
    assert_near(orders[152], 64.0, 0);
    assert_near(orders[156], 1024.0, 0);
    for (size_t k = 1; k < ROOST_RDP_DEFAULT_ORDERS; k++)
        assert_true(orders[k] > orders[k - 1]);
}

/* q = 1: the Gaussian mechanism, rdp = alpha / (2 sigma^2) per step. */
static void
full_batch_is_exact_gaussian(void **state)
{
    (void)state;
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    double rdp[ROOST_RDP_DEFAULT_ORDERS];
    size_t n = roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS);
    assert_int_equal(roost_rdp_compute(1.0, 2.0, 10, orders, n, rdp, NULL),
                     ROOST_OK);
    for (size_t k = 0; k < n; k++)
        assert_rel_near(rdp[k], 10.0 * orders[k] / 8.0, 1e-15);
    /* The epsilon is the minimum of the conversion over the grid. */
    double best = HUGE_VAL;
    for (size_t k = 0; k < n; k++) {
        double a = orders[k];
        double e =
            rdp[k] - (log(1e-6) + log(a)) / (a - 1.0) + log((a - 1.0) / a);
        best = fmin(best, e);
    }
    assert_rel_near(epsilon_of(1.0, 2.0, 10, 1e-6), best, 1e-12);
}

/* A_alpha = E_{z ~ N(0, s^2)} [((1-q) + q exp((2z - 1) / (2 s^2)))^alpha],
 * by Simpson's rule in log space: an independent check of both the integer
 * expansion and the fractional two-series sum. */
static double
rdp_by_quadrature(double q, double sigma, double alpha)
{
    const int n = 400000; /* even */
    double lo = -30.0 * sigma, hi = 30.0 * sigma + alpha;
    double h = (hi - lo) / n;
    double s2 = sigma * sigma;
    double sum = 0.0;
    for (int i = 0; i <= n; i++) {
        double z = lo + h * i;
        double ratio = (1.0 - q) + q * exp((2.0 * z - 1.0) / (2.0 * s2));
        double f = exp(alpha * log(ratio) - z * z / (2.0 * s2)) /
                   (sqrt(2.0 * 3.14159265358979323846) * sigma);
        double w = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
        sum += w * f;
    }
    return log(sum * h / 3.0) / (alpha - 1.0);
}

static void
matches_numerical_integration(void **state)
{
    (void)state;
    static const double cases[][2] = {
        {0.04, 1.5}, {0.01, 0.8}, {0.3, 2.0}, {0.7, 3.0}, {0.001, 0.5}};
    static const double orders[] = {1.1, 1.5, 2.0, 2.5, 3.9, 7.3, 10.9, 16.0};
    double rdp[8];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        assert_int_equal(roost_rdp_compute(cases[c][0], cases[c][1], 1, orders,
                                           8, rdp, NULL),
                         ROOST_OK);
        for (size_t k = 0; k < 8; k++) {
            double ref = rdp_by_quadrature(cases[c][0], cases[c][1], orders[k]);
            if (!(fabs(rdp[k] - ref) <= 1e-7 * ref + 1e-14))
                print_error("q=%g sigma=%g alpha=%g: %.12g vs %.12g\n",
                            cases[c][0], cases[c][1], orders[k], rdp[k], ref);
            assert_near(rdp[k], ref, 1e-7 * ref + 1e-14);
        }
    }
}

/* The fractional-order series is cut once its terms fall below e^-30 of A
 * (which is >= 1); past alpha each series alternates with terms shrinking
 * in magnitude, so where it is cut decides the sign of the error. Cutting
 * after a negative term left A short by up to e^-30 and the RDP below the
 * truth (by about 1e-14 here, more at other points): not an upper bound.
 * References: mpmath at 40 digits, both by quadrature of A_alpha and by
 * the same series summed to 2e5 terms (they agree to 30 digits). */
static void
fractional_orders_are_upper_bounds(void **state)
{
    (void)state;
    static const double cases[][4] = {
        {1e-5, 0.6, 1.1, 8.2891078711663279344e-10},
        {1e-3, 0.6, 1.1, 7.8664253882754608423e-6},
        {1e-3, 0.6, 1.5, 1.0964670662815492578e-5},
        {0.01, 0.8, 1.3, 2.3387913446831309191e-4},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        double rdp;
        assert_int_equal(roost_rdp_compute(cases[c][0], cases[c][1], 1,
                                           &cases[c][2], 1, &rdp, NULL),
                         ROOST_OK);
        double ref = cases[c][3];
        /* Never below the truth beyond the log-space rounding (about
         * 1e-16 in log A, divided by alpha - 1), and the cut-off that
         * makes it an upper bound costs at most e^-30 in A. */
        double slack = 4e-16 / (cases[c][2] - 1.0);
        if (!(rdp >= ref - slack))
            print_error("q=%g sigma=%g alpha=%g: %.17g below %.17g\n",
                        cases[c][0], cases[c][1], cases[c][2], rdp, ref);
        assert_true(rdp >= ref - slack);
        assert_true(rdp <= ref + 2.0 * exp(-30.0) / (cases[c][2] - 1.0));
    }
}

static void
monotone_in_steps_q_and_sigma(void **state)
{
    (void)state;
    double prev = 0.0;
    for (uint64_t steps = 1; steps <= 100000; steps *= 10) {
        double e = epsilon_of(0.01, 1.1, steps, 1e-5);
        assert_true(e > prev);
        prev = e;
    }
    prev = 0.0;
    for (double q = 1e-4; q <= 1.0; q *= 2.0) {
        double e = epsilon_of(q, 1.0, 100, 1e-5);
        assert_true(e >= prev);
        prev = e;
    }
    prev = HUGE_VAL;
    for (double sigma = 0.3; sigma < 50.0; sigma *= 1.3) {
        double e = epsilon_of(0.05, sigma, 1000, 1e-5);
        assert_true(e <= prev);
        prev = e;
    }
    /* Decreasing in delta too. */
    assert_true(epsilon_of(0.05, 1.0, 1000, 1e-7) >
                epsilon_of(0.05, 1.0, 1000, 1e-3));
    /* RDP is non-decreasing in the order (fractional and integer orders
     * interleave consistently). */
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    double rdp[ROOST_RDP_DEFAULT_ORDERS];
    size_t n = roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS);
    static const double qs[] = {1e-3, 0.04, 0.2, 0.5, 0.9};
    static const double sigmas[] = {0.5, 1.0, 1.5, 4.0};
    for (size_t a = 0; a < 5; a++) {
        for (size_t b = 0; b < 4; b++) {
            assert_int_equal(
                roost_rdp_compute(qs[a], sigmas[b], 1, orders, n, rdp, NULL),
                ROOST_OK);
            for (size_t k = 1; k < n; k++)
                assert_true(rdp[k] >= rdp[k - 1] * (1.0 - 1e-9));
        }
    }
}

static void
composition_of_identical_parts(void **state)
{
    (void)state;
    roost_dp_event parts[4] = {
        {0.02, 1.2, 100}, {0.02, 1.2, 250}, {0.02, 1.2, 150}, {0.02, 1.2, 0}};
    double eps_parts, eps_one, ord_parts, ord_one;
    assert_int_equal(
        roost_dp_epsilon(parts, 4, 1e-5, &eps_parts, &ord_parts, NULL),
        ROOST_OK);
    roost_dp_event one = {0.02, 1.2, 500};
    assert_int_equal(roost_dp_epsilon(&one, 1, 1e-5, &eps_one, &ord_one, NULL),
                     ROOST_OK);
    assert_rel_near(eps_parts, eps_one, 1e-12);
    assert_near(ord_parts, ord_one, 0);
}

/* Heterogeneous events: epsilon of the list equals the conversion of the
 * summed RDP curves, also past the merge table's capacity (40 distinct
 * events). */
static void
heterogeneous_composition(void **state)
{
    (void)state;
    enum { N = 40 };
    roost_dp_event ev[N];
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    double rdp[ROOST_RDP_DEFAULT_ORDERS];
    double sum[ROOST_RDP_DEFAULT_ORDERS] = {0};
    size_t n = roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS);
    for (int i = 0; i < N; i++) {
        ev[i].q = 0.005 * (1 + i % 7);
        ev[i].sigma = 0.9 + 0.05 * i;
        ev[i].steps = (uint64_t)(10 + 3 * i);
        assert_int_equal(roost_rdp_compute(ev[i].q, ev[i].sigma, ev[i].steps,
                                           orders, n, rdp, NULL),
                         ROOST_OK);
        for (size_t k = 0; k < n; k++)
            sum[k] += rdp[k];
    }
    double eps_list, eps_sum, o1, o2;
    assert_int_equal(roost_dp_epsilon(ev, N, 1e-5, &eps_list, &o1, NULL),
                     ROOST_OK);
    assert_int_equal(
        roost_rdp_to_epsilon(orders, sum, n, 1e-5, &eps_sum, &o2, NULL),
        ROOST_OK);
    assert_rel_near(eps_list, eps_sum, 1e-12);
    assert_near(o1, o2, 0);
    /* Adding an event never lowers epsilon. */
    double eps_fewer;
    assert_int_equal(roost_dp_epsilon(ev, N - 1, 1e-5, &eps_fewer, NULL, NULL),
                     ROOST_OK);
    assert_true(eps_list > eps_fewer);
}

static void
zero_cost_events(void **state)
{
    (void)state;
    roost_dp_event ev[2] = {{0.0, 1.0, 1000}, {0.5, 1.0, 0}};
    double eps = -1, order = -1;
    assert_int_equal(roost_dp_epsilon(ev, 2, 1e-5, &eps, &order, NULL),
                     ROOST_OK);
    assert_near(eps, 0.0, 0);
    assert_near(order, 0.0, 0);
    assert_int_equal(roost_dp_epsilon(NULL, 0, 1e-5, &eps, &order, NULL),
                     ROOST_OK);
    assert_near(eps, 0.0, 0);
}

static void
invalid_inputs_rejected(void **state)
{
    (void)state;
    roost_errmsg em;
    double eps, orders[2] = {2.0, 3.0}, rdp[2];
    roost_dp_event bad_q = {1.5, 1.0, 1}, bad_sigma = {0.1, 0.0, 1},
                   nan_q = {NAN, 1.0, 1}, inf_sigma = {0.1, HUGE_VAL, 1},
                   ok = {0.1, 1.0, 1};
    assert_int_equal(roost_dp_epsilon(&bad_q, 1, 1e-5, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(em.text, "q"));
    assert_int_equal(roost_dp_epsilon(&bad_sigma, 1, 1e-5, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon(&nan_q, 1, 1e-5, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon(&inf_sigma, 1, 1e-5, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon(&ok, 1, 0.0, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(em.text, "delta"));
    assert_int_equal(roost_dp_epsilon(&ok, 1, 1.0, &eps, NULL, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon(&ok, 1, NAN, &eps, NULL, &em),
                     ROOST_EINVAL);
    orders[1] = 1.0;
    assert_int_equal(roost_rdp_compute(0.1, 1.0, 1, orders, 2, rdp, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(em.text, "order"));
    orders[1] = NAN;
    assert_int_equal(roost_rdp_compute(0.1, 1.0, 1, orders, 2, rdp, &em),
                     ROOST_EINVAL);
    /* An empty order grid is no curve, not "nothing spent". */
    orders[1] = 3.0;
    rdp[0] = rdp[1] = 50.0;
    eps = -1.0;
    assert_int_equal(
        roost_rdp_to_epsilon(orders, rdp, 0, 1e-5, &eps, NULL, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(em.text, "orders"));
    assert_true(eps == -1.0);
    assert_int_equal(
        roost_rdp_to_epsilon(orders, rdp, 2, 1e-5, &eps, NULL, &em), ROOST_OK);
    assert_true(eps > 50.0);
}

/* No NaN or Inf for any valid input: a sweep of extreme q, sigma, steps.
 * Either a finite epsilon or ROOST_EOVERFLOW (sigma so small that no order
 * has a finite privacy loss). */
static void
extreme_inputs_stay_finite(void **state)
{
    (void)state;
    static const double qs[] = {0.0, 1e-300, 1e-12, 1e-6,        1e-3, 0.04,
                                0.5, 0.9,    0.999, 1.0 - 1e-12, 1.0};
    static const double sigmas[] = {1e-300, 1e-150, 1e-10, 1e-3, 0.1,  0.7,
                                    1.0,    3.0,    100.0, 1e8,  1e300};
    static const uint64_t steps[] = {1, 1000, UINT64_MAX};
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    double rdp[ROOST_RDP_DEFAULT_ORDERS];
    size_t n = roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS);
    int overflowed = 0;
    for (size_t a = 0; a < sizeof(qs) / sizeof(qs[0]); a++) {
        for (size_t b = 0; b < sizeof(sigmas) / sizeof(sigmas[0]); b++) {
            for (size_t c = 0; c < 3; c++) {
                assert_int_equal(roost_rdp_compute(qs[a], sigmas[b], steps[c],
                                                   orders, n, rdp, NULL),
                                 ROOST_OK);
                for (size_t k = 0; k < n; k++)
                    assert_true(isfinite(rdp[k]) && rdp[k] >= 0.0);
                roost_dp_event e = {qs[a], sigmas[b], steps[c]};
                double eps = -1, order = -1;
                int rc = roost_dp_epsilon(&e, 1, 1e-5, &eps, &order, NULL);
                if (rc == ROOST_EOVERFLOW) {
                    /* Only when sigma^-2 (times steps) leaves the range
                     * of a double. */
                    assert_true(sigmas[b] <= 1e-150);
                    overflowed++;
                    continue;
                }
                assert_int_equal(rc, ROOST_OK);
                assert_true(isfinite(eps) && eps >= 0.0);
                assert_true(isfinite(order));
            }
        }
    }
    assert_true(overflowed > 0);
}

static void
calibration_round_trip(void **state)
{
    (void)state;
    static const double cases[][3] = {
        /* q, steps, target epsilon */
        {0.04, 2250, 7.32911117143},
        {0.01, 10000, 3.0},
        {0.256, 60, 1.0},
        {1.0, 1, 8.0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        double q = cases[c][0], target = cases[c][2];
        uint64_t steps = (uint64_t)cases[c][1];
        double sigma;
        roost_errmsg em;
        int rc = roost_dp_calibrate_sigma(q, steps, 1e-5, target, &sigma, &em);
        if (rc != ROOST_OK)
            print_error("%s\n", em.text);
        assert_int_equal(rc, ROOST_OK);
        /* Private side: at the returned sigma the target holds... */
        assert_true(epsilon_of(q, sigma, steps, 1e-5) <= target);
        /* ...and it is the smallest such sigma to the stated tolerance. */
        double below = sigma * (1.0 - 2.0 * ROOST_DP_CALIBRATE_RTOL);
        assert_true(epsilon_of(q, below, steps, 1e-5) > target);
    }
    /* The Opacus plan calibrates back to its sigma of 1.5. */
    double sigma;
    assert_int_equal(
        roost_dp_calibrate_sigma(0.04, 2250, 1e-5, 7.32911117143, &sigma, NULL),
        ROOST_OK);
    assert_rel_near(sigma, 1.5, 1e-5);
}

static void
calibration_refuses_impossible(void **state)
{
    (void)state;
    roost_errmsg em;
    double sigma;
    /* Below the floor set by delta and the largest order. */
    assert_int_equal(
        roost_dp_calibrate_sigma(0.01, 100, 1e-5, 1e-4, &sigma, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(em.text, "unreachable"));
    assert_int_equal(roost_dp_calibrate_sigma(0.0, 100, 1e-5, 1.0, &sigma, &em),
                     ROOST_EINVAL);
    assert_int_equal(
        roost_dp_calibrate_sigma(0.01, 100, 1e-5, -1.0, &sigma, &em),
        ROOST_EINVAL);
}

/* The sampler's terms: none gives the plain accountant; some give an
 * epsilon above it that is a real guarantee (its charged delta fits) and
 * close to the smallest one; a tail that alone exceeds delta gives
 * infinity; a loose cap changes nothing below it. */
static void
sampled_epsilon_charges_the_sampler(void **state)
{
    (void)state;
    roost_dp_event e = {0.01, 1.1, 3000};
    const double delta = 1e-5, cap = 8.0;
    double plain = epsilon_of(e.q, e.sigma, e.steps, delta);
    double eps = -1.0;
    assert_int_equal(
        roost_dp_epsilon_sampled(&e, 1, 0.0, 0.0, cap, delta, &eps, NULL, NULL),
        ROOST_OK);
    assert_true(eps == plain);

    /* 2e9 draws at the default grid's per-draw figures, with beta scaled
     * up 1e4 times so that the tail term matters. */
    const double n_mu = 2e9 * 7.7e-16, n_beta = 2e9 * 7e-21 * 1e4;
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, cap, delta,
                                              &eps, NULL, NULL),
                     ROOST_OK);
    assert_true(eps > plain + 2 * n_mu);
    /* A guarantee: the accountant's epsilon at the delta left after the
     * tail term at eps, plus 2 n_mu, is at most eps, and the charged delta
     * fits. */
    double d0 = (delta - exp(eps) * n_beta) * exp(-n_mu);
    assert_true(d0 > 0 && d0 < delta);
    double e0 = epsilon_of(e.q, e.sigma, e.steps, d0);
    assert_true(e0 + 2 * n_mu <= eps);
    assert_true(exp(n_mu) * d0 + exp(e0 + 2 * n_mu) * n_beta <= delta);
    /* ... and nearly the smallest: 1e-6 less is not one. */
    double lower = eps - 1e-6;
    double d1 = (delta - exp(lower) * n_beta) * exp(-n_mu);
    assert_true(epsilon_of(e.q, e.sigma, e.steps, d1) + 2 * n_mu > lower);
    /* A loose cap gives the same value. */
    double loose = -1.0;
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, 1e9, delta,
                                              &loose, NULL, NULL),
                     ROOST_OK);
    assert_true(loose == eps);
    /* A cap below the answer: a value above the cap. */
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, 0.5, delta,
                                              &loose, NULL, NULL),
                     ROOST_OK);
    assert_true(loose > 0.5);

    /* The tail alone reaches delta: no epsilon works. */
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, n_mu, delta, 1e9, delta,
                                              &eps, NULL, NULL),
                     ROOST_OK);
    assert_true(isinf(eps));
    /* No events: only the sampler's epsilon term. */
    assert_int_equal(roost_dp_epsilon_sampled(NULL, 0, n_mu, 0.0, cap, delta,
                                              &eps, NULL, NULL),
                     ROOST_OK);
    assert_true(eps == 2 * n_mu);

    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, -1.0, 0.0, cap, delta,
                                              &eps, NULL, NULL),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, 0.0, (double)NAN, cap,
                                              delta, &eps, NULL, NULL),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_epsilon_sampled(&e, 1, 0.0, 0.0, HUGE_VAL, delta,
                                              &eps, NULL, NULL),
                     ROOST_EINVAL);
    assert_int_equal(
        roost_dp_epsilon_sampled(&e, 1, 0.0, 0.0, cap, 1.0, &eps, NULL, NULL),
        ROOST_EINVAL);
}

/* Whether c is a valid epsilon for the sampler's terms, computed here
 * from the definition. */
static bool
certifies(const roost_dp_event *e, double n_mu, double n_beta, double delta,
          double c)
{
    double d0 = (delta - exp(c) * n_beta) * exp(-n_mu);
    return d0 > 0 && epsilon_of(e->q, e->sigma, e->steps, d0) + 2 * n_mu <= c;
}

/* Sweeping the tail term up to where no epsilon is valid (through the
 * region where the fixed-point iteration crawls and the search bisects):
 * every answer is valid and within 1e-6 of the smallest valid one, the
 * answers never fall as the tail grows, and where the answer is infinite
 * no epsilon on a fine grid up to the cap is valid (below 15 the
 * accountant's epsilon alone exceeds it here). */
static void
sampled_epsilon_near_the_tail_limit(void **state)
{
    (void)state;
    roost_dp_event e = {0.0533333, 0.3982, 19};
    const double delta = 1e-5, cap = 30.0, n_mu = 1.5e5 * 7.7e-16;
    double prev = 0.0;
    int finite = 0, infinite = 0;
    for (int k = 0; k <= 60; k++) {
        double n_beta = 1e-17 * pow(10.0, k / 15.0); /* 1e-17 .. 1e-13 */
        double eps = -1.0;
        assert_int_equal(roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, cap,
                                                  delta, &eps, NULL, NULL),
                         ROOST_OK);
        assert_true(eps >= prev);
        prev = eps;
        if (isinf(eps)) {
            /* The first two beyond the limit, on a 0.05 grid. */
            if (infinite++ < 2)
                for (double c = 15.0; c <= cap; c += 0.05)
                    assert_false(certifies(&e, n_mu, n_beta, delta, c));
            continue;
        }
        finite++;
        assert_true(certifies(&e, n_mu, n_beta, delta, eps));
        assert_false(certifies(&e, n_mu, n_beta, delta, eps - 1e-6));
    }
    /* The sweep crossed the limit. */
    assert_true(finite > 5 && infinite > 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opacus_reference_value),
        cmocka_unit_test(default_grid_shape),
        cmocka_unit_test(full_batch_is_exact_gaussian),
        cmocka_unit_test(matches_numerical_integration),
        cmocka_unit_test(fractional_orders_are_upper_bounds),
        cmocka_unit_test(monotone_in_steps_q_and_sigma),
        cmocka_unit_test(composition_of_identical_parts),
        cmocka_unit_test(heterogeneous_composition),
        cmocka_unit_test(zero_cost_events),
        cmocka_unit_test(invalid_inputs_rejected),
        cmocka_unit_test(extreme_inputs_stay_finite),
        cmocka_unit_test(calibration_round_trip),
        cmocka_unit_test(calibration_refuses_impossible),
        cmocka_unit_test(sampled_epsilon_charges_the_sampler),
        cmocka_unit_test(sampled_epsilon_near_the_tail_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
