/*
 * test_strategy.c - every aggregation strategy against results computed by
 * hand on tiny vectors (the arithmetic is in the comments), streaming FedAvg
 * against the batch formula, Krum and Multi-Krum against brute-force scores,
 * weight edge cases, Byzantine robustness of Krum and trimmed mean,
 * memory-bound refusals, atomicity of finish, and allocation failure during
 * create.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "dp/noise.h"
#include "server/strategy.h"
#include "test_util.h"

/* Tolerance for results that end as float32: a few ulps of values ~1. */
#define FTOL 1e-6

static roost_strategy *
make(roost_strategy_config *cfg, size_t n)
{
    roost_strategy *s = NULL;
    roost_errmsg em;
    int rc = roost_strategy_create(&s, NULL, cfg, n, &em);
    if (rc != ROOST_OK)
        print_error("create: %s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    assert_non_null(s);
    return s;
}

static void
add_ok(roost_strategy *s, const float *d, double w)
{
    roost_errmsg em;
    int rc = roost_strategy_add(s, d, w, &em);
    if (rc != ROOST_OK)
        print_error("add: %s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
}

static void
finish_ok(roost_strategy *s, float *x)
{
    roost_errmsg em;
    int rc = roost_strategy_finish(s, x, &em);
    if (rc != ROOST_OK)
        print_error("finish: %s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
}

static void
fedavg_hand(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    assert_near(cfg.server_lr, 1.0, 0);
    roost_strategy *s = make(&cfg, 3);

    /* d1 = [1, 2, -1] weight 1, d2 = [3, 0, 1] weight 3:
     * sum w d = [1 + 9, 2 + 0, -1 + 3] = [10, 2, 2], W = 4,
     * mean = [2.5, 0.5, 0.5]; x = [1, 1, 1] + 1 * mean = [3.5, 1.5, 1.5]. */
    const float d1[] = {1, 2, -1}, d2[] = {3, 0, 1};
    float x[] = {1, 1, 1};
    roost_strategy_begin_round(s);
    add_ok(s, d1, 1);
    add_ok(s, d2, 3);
    assert_int_equal(roost_strategy_round_updates(s), 2);
    assert_near(roost_strategy_round_weight(s), 4, 0);
    finish_ok(s, x);
    assert_near(x[0], 3.5, FTOL);
    assert_near(x[1], 1.5, FTOL);
    assert_near(x[2], 1.5, FTOL);
    roost_strategy_destroy(s);

    /* Server learning rate 0.5: x = [1, 1, 1] + 0.5 * [2.5, 0.5, 0.5]
     * = [2.25, 1.25, 1.25]. */
    cfg.server_lr = 0.5;
    s = make(&cfg, 3);
    float y[] = {1, 1, 1};
    roost_strategy_begin_round(s);
    add_ok(s, d1, 1);
    add_ok(s, d2, 3);
    finish_ok(s, y);
    assert_near(y[0], 2.25, FTOL);
    assert_near(y[1], 1.25, FTOL);
    assert_near(y[2], 1.25, FTOL);
    roost_strategy_destroy(s);
}

static void
fedprox_is_fedavg_and_carries_mu(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDPROX);
    assert_near(cfg.prox_mu, 0.01, 0);
    cfg.prox_mu = 0.25;
    roost_strategy *s = make(&cfg, 2);
    assert_near(roost_strategy_config_of(s)->prox_mu, 0.25, 0);
    /* [2, 4] weight 1 and [4, 0] weight 1: mean [3, 2]; x = [0, 0] + mean. */
    const float a[] = {2, 4}, b[] = {4, 0};
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    add_ok(s, a, 1);
    add_ok(s, b, 1);
    finish_ok(s, x);
    assert_near(x[0], 3, FTOL);
    assert_near(x[1], 2, FTOL);
    roost_strategy_destroy(s);
}

static void
fedavgm_hand(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVGM);
    assert_near(cfg.momentum, 0.9, 0);
    roost_strategy *s = make(&cfg, 2);
    float x[] = {0, 0};
    /* Round 1: mean delta [1, -2]; v = 0.9 * 0 + [1, -2] = [1, -2];
     * x = [0, 0] + [1, -2] = [1, -2]. */
    const float d1[] = {1, -2};
    roost_strategy_begin_round(s);
    add_ok(s, d1, 5);
    finish_ok(s, x);
    assert_near(x[0], 1, FTOL);
    assert_near(x[1], -2, FTOL);
    /* Round 2: mean delta [2, 2]; v = 0.9 * [1, -2] + [2, 2] = [2.9, 0.2];
     * x = [1, -2] + [2.9, 0.2] = [3.9, -1.8]. */
    const float d2[] = {2, 2};
    roost_strategy_begin_round(s);
    add_ok(s, d2, 1);
    finish_ok(s, x);
    assert_near(x[0], 3.9, FTOL);
    assert_near(x[1], -1.8, FTOL);
    roost_strategy_destroy(s);
}

/*
 * Adaptive strategies, two rounds, one client each, with beta1 = 0.9,
 * beta2 = 0.99, tau = 0.1, eta = 0.1, so v starts at tau^2 = 0.01 and m at
 * 0; x0 = [0, 1]; round 1 delta [1, -0.5], round 2 delta [0.05, 0.5].
 * m is the same for all three:
 *   m1 = 0.1 * [1, -0.5] = [0.1, -0.05]
 *   m2 = 0.9 * m1 + 0.1 * [0.05, 0.5] = [0.095, 0.005]
 * and x += 0.1 * m / (sqrt(v) + 0.1).
 */
static void
run_adaptive(roost_strategy_kind kind, const double expect1[2],
             const double expect2[2])
{
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, kind);
    assert_near(cfg.beta1, 0.9, 0);
    assert_near(cfg.beta2, 0.99, 0);
    assert_near(cfg.tau, 1e-3, 0);
    assert_near(cfg.server_lr, 1e-2, 0);
    cfg.tau = 0.1;
    cfg.server_lr = 0.1;
    roost_strategy *s = make(&cfg, 2);
    float x[] = {0, 1};
    const float d1[] = {1, -0.5f}, d2[] = {0.05f, 0.5f};
    roost_strategy_begin_round(s);
    add_ok(s, d1, 1);
    finish_ok(s, x);
    assert_near(x[0], expect1[0], FTOL);
    assert_near(x[1], expect1[1], FTOL);
    roost_strategy_begin_round(s);
    add_ok(s, d2, 1);
    finish_ok(s, x);
    assert_near(x[0], expect2[0], FTOL);
    assert_near(x[1], expect2[1], FTOL);
    roost_strategy_destroy(s);
}

static void
fedadam_hand(void **state)
{
    (void)state;
    /* Adam: v = 0.99 v + 0.01 g^2.
     * v1 = [0.0099 + 0.01, 0.0099 + 0.0025] = [0.0199, 0.0124]
     * x1 = [0 + 0.01 / (0.1410674 + 0.1), 1 - 0.005 / (0.1113553 + 0.1)]
     *    = [0.041482182, 0.976343152]
     * v2 = [0.99 * 0.0199 + 0.01 * 0.0025, 0.99 * 0.0124 + 0.01 * 0.25]
     *    = [0.019726, 0.014776]
     * x2 = x1 + [0.0095 / (0.1404493 + 0.1), 0.0005 / (0.1215566 + 0.1)]
     *    = [0.080991554, 0.978599912] */
    const double e1[] = {0.041482182, 0.976343152};
    const double e2[] = {0.080991554, 0.978599912};
    run_adaptive(ROOST_STRATEGY_FEDADAM, e1, e2);
}

static void
fedyogi_hand(void **state)
{
    (void)state;
    /* Yogi: v = v - 0.01 g^2 sign(v - g^2).
     * Round 1: g^2 = [1, 0.25] > v = 0.01, sign -1:
     * v1 = [0.01 + 0.01, 0.01 + 0.0025] = [0.02, 0.0125]
     * x1 = [0.01 / (0.1414214 + 0.1), 1 - 0.005 / (0.1118034 + 0.1)]
     *    = [0.041421356, 0.976393202]     (0.041421356 = (sqrt 2 - 1) / 10)
     * Round 2: g^2 = [0.0025, 0.25]; coordinate 0 has v > g^2 (sign +1),
     * coordinate 1 has v < g^2 (sign -1):
     * v2 = [0.02 - 0.000025, 0.0125 + 0.0025] = [0.019975, 0.015]
     * x2 = x1 + [0.0095 / (0.1413329 + 0.1), 0.0005 / (0.1224745 + 0.1)]
     *    = [0.080786061, 0.978640651] */
    const double e1[] = {0.041421356, 0.976393202};
    const double e2[] = {0.080786061, 0.978640651};
    run_adaptive(ROOST_STRATEGY_FEDYOGI, e1, e2);
}

static void
fedadagrad_hand(void **state)
{
    (void)state;
    /* Adagrad: v = v + g^2.
     * v1 = [0.01 + 1, 0.01 + 0.25] = [1.01, 0.26]
     * x1 = [0.01 / (1.0049876 + 0.1), 1 - 0.005 / (0.5099020 + 0.1)]
     *    = [0.009049876, 0.991801961]
     * v2 = [1.01 + 0.0025, 0.26 + 0.25] = [1.0125, 0.51]
     * x2 = x1 + [0.0095 / (1.0062306 + 0.1), 0.0005 / (0.7141428 + 0.1)]
     *    = [0.017637597, 0.992416104] */
    const double e1[] = {0.009049876, 0.991801961};
    const double e2[] = {0.017637597, 0.992416104};
    run_adaptive(ROOST_STRATEGY_FEDADAGRAD, e1, e2);
}

static void
median_hand(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_MEDIAN);
    roost_strategy *s = make(&cfg, 2);
    /* Odd k = 5. Coordinate 0: {1, 100, 2, -50, 3} sorted
     * {-50, 1, 2, 3, 100}, median 2. Coordinate 1: {0, 0, 0, 0, 7},
     * median 0. x = [10, 10] + [2, 0] = [12, 10]. */
    const float u[5][2] = {{1, 0}, {100, 0}, {2, 0}, {-50, 0}, {3, 7}};
    float x[] = {10, 10};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 5; i++)
        add_ok(s, u[i], 1);
    finish_ok(s, x);
    assert_near(x[0], 12, FTOL);
    assert_near(x[1], 10, FTOL);
    /* Even k = 4, weights ignored: coordinate 0 {4, 1, 3, 2} -> middle
     * values 2 and 3 -> 2.5; coordinate 1 {-1, -1, 5, 6} -> (-1 + 5) / 2
     * = 2. x = [12, 10] + [2.5, 2] = [14.5, 12]. */
    const float v[4][2] = {{4, -1}, {1, 5}, {3, -1}, {2, 6}};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 4; i++)
        add_ok(s, v[i], (double)(i * 100));
    finish_ok(s, x);
    assert_near(x[0], 14.5, FTOL);
    assert_near(x[1], 12, FTOL);
    roost_strategy_destroy(s);
}

/* Insertion sort, the reference the selection code is checked against. */
static void
sort_floats(float *a, int len)
{
    for (int i = 1; i < len; i++)
        for (int j = i; j > 0 && a[j - 1] > a[j]; j--) {
            float t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
}

static void
robust_many_match_sort(void **state)
{
    (void)state;
    /* 101 updates of 37 coordinates (not a multiple of the 16-wide block),
     * above the small-array cutoff of the selection, with many ties: the
     * median must be the middle of a full sort, and the trimmed mean with
     * beta = 0.1 (floor(10.1) = 10 dropped per end) the mean of sorted
     * ranks 10..90. */
    enum { K = 101, N = 37, TRIM = 10 };
    static float u[K][N];
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 7, 0),
                     ROOST_OK);
    for (int i = 0; i < K; i++)
        for (int j = 0; j < N; j++) {
            uint64_t r;
            assert_int_equal(roost_rng_below(rng, 9 + (uint64_t)j * 50, &r),
                             ROOST_OK);
            u[i][j] = (float)r - 4.0f * (float)j;
        }
    roost_rng_destroy(rng);
    roost_strategy_kind kinds[] = {ROOST_STRATEGY_MEDIAN,
                                   ROOST_STRATEGY_TRIMMED_MEAN};
    for (int kk = 0; kk < 2; kk++) {
        roost_strategy_config cfg;
        roost_strategy_config_init(&cfg, kinds[kk]);
        roost_strategy *s = make(&cfg, N);
        float x[N] = {0};
        roost_strategy_begin_round(s);
        for (int i = 0; i < K; i++)
            add_ok(s, u[i], 1);
        finish_ok(s, x);
        for (int j = 0; j < N; j++) {
            float col[K];
            for (int i = 0; i < K; i++)
                col[i] = u[i][j];
            sort_floats(col, K);
            double want = col[K / 2];
            if (kk == 1) {
                double sum = 0;
                for (int i = TRIM; i < K - TRIM; i++)
                    sum += (double)col[i];
                want = sum / (K - 2 * TRIM);
            }
            assert_near(x[j], want, 1e-4);
        }
        roost_strategy_destroy(s);
    }
}

static void
robust_every_k_matches_sort(void **state)
{
    (void)state;
    /* Every k from 1 to 40 (both sides of the small-array cutoff, odd and
     * even), values with many ties, median and trimmed mean with
     * beta = 0.25 against a full sort. */
    enum { KMAX = 40, N = 5 };
    static float u[KMAX][N];
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 9, 0),
                     ROOST_OK);
    for (int k = 1; k <= KMAX; k++) {
        for (int i = 0; i < k; i++)
            for (int j = 0; j < N; j++) {
                uint64_t r;
                assert_int_equal(roost_rng_below(rng, 2 + (uint64_t)j * 7, &r),
                                 ROOST_OK);
                u[i][j] = (float)r;
            }
        for (int kind = 0; kind < 2; kind++) {
            roost_strategy_config cfg;
            roost_strategy_config_init(&cfg, kind == 0
                                                 ? ROOST_STRATEGY_MEDIAN
                                                 : ROOST_STRATEGY_TRIMMED_MEAN);
            cfg.trim_fraction = 0.25;
            roost_strategy *s = make(&cfg, N);
            float x[N] = {0};
            roost_strategy_begin_round(s);
            for (int i = 0; i < k; i++)
                add_ok(s, u[i], 1);
            finish_ok(s, x);
            for (int j = 0; j < N; j++) {
                float col[KMAX];
                for (int i = 0; i < k; i++)
                    col[i] = u[i][j];
                sort_floats(col, k);
                double want;
                if (kind == 0) {
                    want = k % 2 ? (double)col[k / 2]
                                 : 0.5 * ((double)col[k / 2 - 1] +
                                          (double)col[k / 2]);
                } else {
                    int t = k / 4; /* floor(0.25 k) */
                    double sum = 0;
                    for (int i = t; i < k - t; i++)
                        sum += (double)col[i];
                    want = sum / (k - 2 * t);
                }
                assert_near(x[j], want, 1e-5);
            }
            roost_strategy_destroy(s);
        }
    }
    roost_rng_destroy(rng);
}

static void
trimmed_mean_hand(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_TRIMMED_MEAN);
    assert_near(cfg.trim_fraction, 0.1, 0);
    cfg.trim_fraction = 0.2;
    roost_strategy *s = make(&cfg, 2);
    /* k = 5, beta = 0.2: floor(0.2 * 5) = 1 value dropped at each end.
     * Coordinate 0: {1, 100, 2, -50, 3} -> drop -50 and 100 -> mean of
     * {1, 2, 3} = 2. Coordinate 1: {10, 20, 30, 40, 1e6} -> drop 10 and
     * 1e6 -> mean of {20, 30, 40} = 30. x = [0, 0] + [2, 30]. */
    const float u[5][2] = {{1, 10}, {100, 20}, {2, 30}, {-50, 40}, {3, 1e6f}};
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 5; i++)
        add_ok(s, u[i], 1);
    finish_ok(s, x);
    assert_near(x[0], 2, FTOL);
    assert_near(x[1], 30, FTOL);
    roost_strategy_destroy(s);

    /* beta = 0.1 with k = 5: floor(0.5) = 0, nothing trimmed, plain mean:
     * coordinate 0: (1 + 100 + 2 - 50 + 3) / 5 = 56 / 5 = 11.2. */
    cfg.trim_fraction = 0.1;
    s = make(&cfg, 2);
    float y[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 5; i++)
        add_ok(s, u[i], 1);
    finish_ok(s, y);
    assert_near(y[0], 11.2, FTOL);
    roost_strategy_destroy(s);

    /* beta = 0.1 with k = 10: floor(1.0) = 1 (not 0 from 0.1 * 10 =
     * 0.99999...). Values 1..9 and one outlier 1000: drop 1 and 1000,
     * mean of 2..9 = 44 / 8 = 5.5. */
    s = make(&cfg, 2);
    float z[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 1; i <= 10; i++) {
        float d[2] = {i == 10 ? 1000.0f : (float)i, 0};
        add_ok(s, d, 1);
    }
    finish_ok(s, z);
    assert_near(z[0], 5.5, FTOL);
    roost_strategy_destroy(s);
}

static void
krum_hand(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_KRUM);
    assert_int_equal(cfg.byzantine_f, 1);
    /* k = 5, f = 1: each score sums the k - f - 2 = 2 smallest squared
     * distances to the others.
     *   h1 = [1, 1], h2 = [1.1, 1], h3 = [1, 0.9], h4 = [0.9, 1.1],
     *   b = [100, -100] (Byzantine).
     * d(h1,h2) = 0.01, d(h1,h3) = 0.01, d(h1,h4) = 0.02, d(h2,h3) = 0.02,
     * d(h2,h4) = 0.05, d(h3,h4) = 0.05, d(b, h*) ~ 19800.
     * score(h1) = 0.01 + 0.01 = 0.02, score(h2) = 0.01 + 0.02 = 0.03,
     * score(h3) = 0.01 + 0.02 = 0.03, score(h4) = 0.02 + 0.05 = 0.07,
     * score(b) ~ 39600. Krum picks h1: x = [0, 0] + [1, 1]. */
    const float u[5][2] = {
        {1, 1}, {1.1f, 1}, {100, -100}, {1, 0.9f}, {0.9f, 1.1f}};
    roost_strategy *s = make(&cfg, 2);
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 5; i++)
        add_ok(s, u[i], 1);
    finish_ok(s, x);
    assert_near(x[0], 1, FTOL);
    assert_near(x[1], 1, FTOL);
    roost_strategy_destroy(s);

    /* Multi-Krum m = 3: the three best are h1, h2, h3; their mean is
     * [(1 + 1.1 + 1) / 3, (1 + 1 + 0.9) / 3] = [1.0333333, 0.9666667]. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_MULTIKRUM);
    cfg.multikrum_m = 3;
    s = make(&cfg, 2);
    float y[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 5; i++)
        add_ok(s, u[i], 1);
    finish_ok(s, y);
    assert_near(y[0], 3.1 / 3, FTOL);
    assert_near(y[1], 2.9 / 3, FTOL);
    roost_strategy_destroy(s);

    /* Multi-Krum default m = k - f = 4: all four honest updates,
     * mean [(1 + 1.1 + 1 + 0.9) / 4, (1 + 1 + 0.9 + 1.1) / 4] = [1, 1]. A
     * configured m above k - f is capped to k - f (m = 5 would include
     * b). */
    cfg.multikrum_m = 0;
    for (int pass = 0; pass < 2; pass++) {
        s = make(&cfg, 2);
        float z[] = {0, 0};
        roost_strategy_begin_round(s);
        for (int i = 0; i < 5; i++)
            add_ok(s, u[i], 1);
        finish_ok(s, z);
        assert_near(z[0], 1, FTOL);
        assert_near(z[1], 1, FTOL);
        roost_strategy_destroy(s);
        cfg.multikrum_m = 5;
    }
}

static void
krum_resists_colluding_byzantines(void **state)
{
    (void)state;
    /* f = 2 colluders send the same large vector, so they are at distance
     * 0 from each other; with k = 7 each score sums k - f - 2 = 3
     * distances, so a colluder still pays for two distances to honest
     * updates. Honest updates: e_j * 0.01 around [1, 1, 1, 1]. */
    enum { N = 4 };
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_KRUM);
    cfg.byzantine_f = 2;
    roost_strategy *s = make(&cfg, N);
    float honest[5][N], bad[N] = {50, 50, -50, 50};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < N; j++)
            honest[i][j] = 1.0f + (i == j ? 0.01f : 0.0f);
    float x[N] = {0};
    roost_strategy_begin_round(s);
    add_ok(s, bad, 1000);
    add_ok(s, honest[0], 1);
    add_ok(s, honest[1], 1);
    add_ok(s, bad, 1000);
    add_ok(s, honest[2], 1);
    add_ok(s, honest[3], 1);
    add_ok(s, honest[4], 1);
    finish_ok(s, x);
    for (int j = 0; j < N; j++) {
        assert_true(x[j] > 0.99f && x[j] < 1.02f);
    }
    /* Too few updates for f = 2 (needs 2f + 3 = 7): refused, x unchanged. */
    roost_strategy_begin_round(s);
    for (int i = 0; i < 6; i++)
        add_ok(s, honest[i % 5], 1);
    float before[N];
    memcpy(before, x, sizeof(x));
    roost_errmsg em;
    assert_int_equal(roost_strategy_finish(s, x, &em), ROOST_ESTATE);
    assert_non_null(strstr(em.text, "at least 7"));
    assert_memory_equal(before, x, sizeof(x));
    roost_strategy_destroy(s);
}

/* Brute-force Krum score of update i among u[0..k) (rows of n floats):
 * the sum of its k - f - 2 smallest squared distances to the others,
 * found by repeatedly taking the smallest not yet used. */
static double
krum_score_reference(const float *u, size_t k, size_t n, size_t f, size_t i)
{
    double d[64];
    bool used[64] = {false};
    size_t len = 0;
    for (size_t j = 0; j < k; j++) {
        if (j == i)
            continue;
        double s = 0;
        for (size_t c = 0; c < n; c++) {
            double t = (double)u[i * n + c] - (double)u[j * n + c];
            s += t * t;
        }
        d[len++] = s;
    }
    double score = 0;
    for (size_t r = 0; r < k - f - 2; r++) {
        size_t best = len;
        for (size_t j = 0; j < len; j++)
            if (!used[j] && (best == len || d[j] < d[best]))
                best = j;
        used[best] = true;
        score += d[best];
    }
    return score;
}

static void
krum_matches_brute_force(void **state)
{
    (void)state;
    /* Random rounds for f = 0..3, every k from the minimum 2f + 3 (f at
     * its limit) to 2f + 12, Krum and Multi-Krum with m = 0 (k - f),
     * 1, 3 and 100 (capped at k - f), against scores computed by brute
     * force: the result must be the mean of the m lowest-scored updates,
     * ties to the earlier one. Every fifth round repeats one update so
     * that distances of zero and tied scores occur. */
    enum { N = 7, KMAX = 18 };
    static float u[KMAX * N];
    roost_rng *rng;
    assert_int_equal(
        roost_rng_create_insecure_deterministic(&rng, NULL, 2017, 0), ROOST_OK);
    const size_t ms[] = {0, 1, 3, 100};
    for (size_t f = 0; f <= 3; f++) {
        for (size_t k = 2 * f + 3; k <= 2 * f + 12; k++) {
            for (size_t i = 0; i < k * N; i++) {
                double g;
                assert_int_equal(roost_rng_uniform(rng, &g), ROOST_OK);
                u[i] = (float)(4 * g - 2);
            }
            if (k % 5 == 0)
                memcpy(u + N, u, N * sizeof(float));
            double score[KMAX];
            for (size_t i = 0; i < k; i++)
                score[i] = krum_score_reference(u, k, N, f, i);
            for (size_t mi = 0; mi < 5; mi++) {
                roost_strategy_config cfg;
                roost_strategy_config_init(&cfg,
                                           mi == 4 ? ROOST_STRATEGY_KRUM
                                                   : ROOST_STRATEGY_MULTIKRUM);
                cfg.byzantine_f = f;
                size_t m = 1;
                if (mi < 4) {
                    cfg.multikrum_m = ms[mi];
                    m = ms[mi] == 0 || ms[mi] > k - f ? k - f : ms[mi];
                }
                /* The m lowest scores, the earlier index among equals. */
                bool taken[KMAX] = {false};
                double want[N] = {0};
                for (size_t r = 0; r < m; r++) {
                    size_t best = k;
                    for (size_t i = 0; i < k; i++)
                        if (!taken[i] && (best == k || score[i] < score[best]))
                            best = i;
                    taken[best] = true;
                    for (size_t c = 0; c < N; c++)
                        want[c] += (double)u[best * N + c] / (double)m;
                }
                roost_strategy *s = make(&cfg, N);
                float x[N] = {0};
                roost_strategy_begin_round(s);
                for (size_t i = 0; i < k; i++)
                    add_ok(s, u + i * N, 1);
                finish_ok(s, x);
                for (size_t c = 0; c < N; c++)
                    assert_near(x[c], want[c], FTOL);
                roost_strategy_destroy(s);
            }
        }
    }
    roost_rng_destroy(rng);
}

static void
fedavg_streaming_equals_batch(void **state)
{
    (void)state;
    /* 500 updates of 1000 coordinates with weights 0..999: the streaming
     * fold must equal sum_j w_j d_j / sum_j w_j computed afterwards from
     * the stored updates, to 1e-6. */
    enum { K = 500, N = 1000 };
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 42, 1),
                     ROOST_OK);
    float *u = calloc((size_t)K * N, sizeof(float));
    double *w = calloc(K, sizeof(double));
    double *num = calloc(N, sizeof(double));
    assert_non_null(u);
    assert_non_null(w);
    assert_non_null(num);
    for (size_t i = 0; i < (size_t)K * N; i++) {
        double r;
        assert_int_equal(roost_rng_uniform(rng, &r), ROOST_OK);
        u[i] = (float)(2 * r - 1);
    }
    for (int j = 0; j < K; j++) {
        uint64_t r;
        assert_int_equal(roost_rng_below(rng, 1000, &r), ROOST_OK);
        w[j] = (double)r;
    }
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    roost_strategy *s = make(&cfg, N);
    float x[N];
    for (int i = 0; i < N; i++)
        x[i] = 0.5f;
    roost_strategy_begin_round(s);
    for (int j = 0; j < K; j++)
        add_ok(s, u + (size_t)j * N, w[j]);
    finish_ok(s, x);
    double W = 0;
    for (int j = 0; j < K; j++)
        W += w[j];
    for (int j = 0; j < K; j++)
        for (int i = 0; i < N; i++)
            num[i] += w[j] * (double)u[(size_t)j * N + i];
    for (int i = 0; i < N; i++)
        assert_near(x[i], 0.5 + num[i] / W, 1e-6);
    roost_strategy_destroy(s);
    roost_rng_destroy(rng);
    free(u);
    free(w);
    free(num);
}

static void
weights_edge_cases(void **state)
{
    (void)state;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    roost_strategy *s = make(&cfg, 2);
    roost_errmsg em;

    /* Zero weight counts but contributes nothing: [1, 1] w 0, [3, 5] w 2
     * -> mean [3, 5]. */
    const float a[] = {1, 1}, b[] = {3, 5};
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    add_ok(s, a, 0);
    add_ok(s, b, 2);
    assert_int_equal(roost_strategy_round_updates(s), 2);
    finish_ok(s, x);
    assert_near(x[0], 3, FTOL);
    assert_near(x[1], 5, FTOL);

    /* Single client: the mean is its delta, whatever its weight. */
    roost_strategy_begin_round(s);
    add_ok(s, a, 7);
    finish_ok(s, x);
    assert_near(x[0], 4, FTOL);
    assert_near(x[1], 6, FTOL);

    /* All weights zero: refused, model unchanged. */
    roost_strategy_begin_round(s);
    add_ok(s, a, 0);
    assert_int_equal(roost_strategy_finish(s, x, &em), ROOST_ESTATE);
    assert_non_null(strstr(em.text, "zero"));
    assert_near(x[0], 4, 0);

    /* Bad weights are refused. */
    roost_strategy_begin_round(s);
    assert_int_equal(roost_strategy_add(s, a, -1, &em), ROOST_EINVAL);
    assert_int_equal(roost_strategy_add(s, a, NAN, &em), ROOST_EINVAL);
    assert_int_equal(roost_strategy_add(s, a, HUGE_VAL, &em), ROOST_EINVAL);
    assert_int_equal(roost_strategy_round_updates(s), 0);
    /* No updates: refused. */
    assert_int_equal(roost_strategy_finish(s, x, &em), ROOST_ESTATE);
    /* The round is closed after finish: add and finish need begin. */
    assert_int_equal(roost_strategy_add(s, a, 1, &em), ROOST_ESTATE);
    assert_int_equal(roost_strategy_finish(s, x, &em), ROOST_ESTATE);
    roost_strategy_destroy(s);
}

static void
finish_is_all_or_nothing(void **state)
{
    (void)state;
    /* FedAdam whose step would push coordinate 1 past FLT_MAX: the round is
     * refused with the coordinate named, and neither x nor m, v changes,
     * so a following good round gives exactly a fresh handle's result. */
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDADAM);
    cfg.server_lr = 1e38;
    roost_strategy *s = make(&cfg, 2), *fresh = make(&cfg, 2);
    float x[] = {0, 3e38f}, y[] = {0, 3e38f};
    const float big[] = {1, 1}, small[] = {-1, -1};
    roost_errmsg em;
    roost_strategy_begin_round(s);
    add_ok(s, big, 1);
    assert_int_equal(roost_strategy_finish(s, x, &em), ROOST_ENONFINITE);
    assert_non_null(strstr(em.text, "coordinate 1"));
    assert_true(x[0] == 0 && x[1] == 3e38f);

    roost_strategy_begin_round(s);
    add_ok(s, small, 1);
    finish_ok(s, x);
    roost_strategy_begin_round(fresh);
    add_ok(fresh, small, 1);
    finish_ok(fresh, y);
    assert_memory_equal(x, y, sizeof(x));
    roost_strategy_destroy(s);
    roost_strategy_destroy(fresh);
}

static void
memory_bound_refusal(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_strategy_config cfg;
    const size_t n = 1000;

    /* Streaming kinds: O(n), independent of k. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    size_t b10, b10000;
    assert_int_equal(roost_strategy_memory_bound(&cfg, n, 10, &b10, &em), 0);
    assert_int_equal(roost_strategy_memory_bound(&cfg, n, 10000, &b10000, &em),
                     0);
    assert_true(b10 == b10000);
    assert_true(b10 >= n * sizeof(double));

    /* Median: k * n floats. A cap of 3 updates refuses the 4th. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_MEDIAN);
    cfg.max_buffered_updates = 3;
    roost_strategy *s = make(&cfg, n);
    float *d = calloc(n, sizeof(float));
    assert_non_null(d);
    roost_strategy_begin_round(s);
    for (int i = 0; i < 3; i++)
        add_ok(s, d, 1);
    assert_int_equal(roost_strategy_add(s, d, 1, &em), ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "max_buffered_updates"));
    assert_int_equal(roost_strategy_round_updates(s), 3);
    size_t b3;
    assert_int_equal(roost_strategy_memory_bound(&cfg, n, 3, &b3, &em), 0);
    assert_true(b3 >= 3 * n * sizeof(float));
    float x[1000] = {0};
    finish_ok(s, x);
    assert_true(roost_strategy_memory_used(s) <= b3);
    roost_strategy_destroy(s);

    /* A byte cap that fits exactly two updates refuses the third. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_TRIMMED_MEAN);
    size_t b2;
    assert_int_equal(roost_strategy_memory_bound(&cfg, n, 2, &b2, &em), 0);
    cfg.max_buffered_bytes = b2;
    s = make(&cfg, n);
    roost_strategy_begin_round(s);
    add_ok(s, d, 1);
    add_ok(s, d, 1);
    assert_int_equal(roost_strategy_add(s, d, 1, &em), ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "max_buffered_bytes"));
    roost_strategy_destroy(s);

    /* Krum's bound includes the k*k distance matrix, and a handle whose
     * limits cannot hold 2f + 3 updates is refused at create. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_KRUM);
    size_t bk;
    assert_int_equal(roost_strategy_memory_bound(&cfg, n, 100, &bk, &em), 0);
    assert_true(bk >= 100 * n * sizeof(float) + 100 * 100 * sizeof(double));
    cfg.max_buffered_updates = 4; /* f = 1 needs 5 */
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, n, &em),
                     ROOST_ETOOBIG);
    assert_null(s);
    cfg.max_buffered_updates = 1000;
    cfg.max_buffered_bytes = 5 * n * sizeof(float); /* no room for the rest */
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, n, &em),
                     ROOST_ETOOBIG);
    assert_null(s);

    /* Overflow is reported, not wrapped. */
    assert_int_equal(
        roost_strategy_memory_bound(&cfg, SIZE_MAX / 2, 1000, &bk, &em),
        ROOST_EOVERFLOW);
    free(d);
}

static void
robust_refuses_nonfinite(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_MEDIAN);
    roost_strategy *s = make(&cfg, 3);
    const float bad[] = {1, NAN, 2};
    roost_strategy_begin_round(s);
    assert_int_equal(roost_strategy_add(s, bad, 1, &em), ROOST_ENONFINITE);
    assert_int_equal(roost_strategy_round_updates(s), 0);
    roost_strategy_destroy(s);
}

static void
parse_names(void **state)
{
    (void)state;
    roost_errmsg em;
    const char *names[] = {"fedavg",     "fedavgm",  "fedadam", "fedyogi",
                           "fedadagrad", "fedprox",  "median",  "trimmed_mean",
                           "krum",       "multikrum"};
    for (int i = 0; i < 10; i++) {
        roost_strategy_kind k;
        assert_int_equal(roost_strategy_kind_parse(names[i], &k, &em), 0);
        assert_int_equal((int)k, i);
        assert_string_equal(roost_strategy_kind_name(k), names[i]);
    }
    roost_strategy_kind k;
    const char *bad[] = {"FedAvg", "", "krumm", "trimmed-mean", "fedavg "};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(roost_strategy_kind_parse(bad[i], &k, &em),
                         ROOST_ECONFIG);
        assert_non_null(strstr(em.text, "unknown strategy"));
        assert_non_null(strstr(em.text, "multikrum"));
    }
    assert_int_equal(roost_strategy_kind_parse(NULL, &k, &em), ROOST_EINVAL);
    assert_string_equal(roost_strategy_kind_name(ROOST_STRATEGY_KIND_COUNT_),
                        "unknown");
}

static void
config_errors(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_strategy *s = (roost_strategy *)&em; /* must be reset to NULL */
    roost_strategy_config cfg;

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    cfg.server_lr = 0;
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 4, &em),
                     ROOST_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(em.text, "server_lr"));
    cfg.server_lr = NAN;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVGM);
    cfg.momentum = 1.0;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "momentum"));

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDYOGI);
    cfg.beta2 = -0.1;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "beta2"));
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDADAM);
    cfg.tau = 0;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "tau"));

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_TRIMMED_MEAN);
    cfg.trim_fraction = 0.5;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "trim_fraction"));

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_KRUM);
    cfg.central_dp = true;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "central DP"));

    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 0, &em),
                     ROOST_EINVAL);
    assert_null(s);
    assert_int_equal(roost_strategy_create(&s, NULL, NULL, 4, &em),
                     ROOST_EINVAL);

    /* Central DP configuration errors: no rng, z = 0, and a noise grid
     * too coarse for n (z = 2e6, C = 1: grid g = 1 and sqrt(4) * g >= C). */
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 1, 0),
                     ROOST_OK);
    cfg.central_dp = true;
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 4, &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "random generator"));
    cfg.dp_rng = rng;
    cfg.dp_noise_multiplier = 0;
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 4, &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "dp_noise_multiplier"));
    cfg.dp_noise_multiplier = 2e6;
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 4, &em),
                     ROOST_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(em.text, "too coarse"));
    roost_rng_destroy(rng);

    roost_strategy_destroy(NULL);
}

static void
central_dp_clips_and_ignores_weights(void **state)
{
    (void)state;
    /* C = 1, z = 1e-6 (noise on the mean ~5e-7, far below the tolerance).
     * [3, 4] (norm 5, weight 1) is clipped to [0.6, 0.8]; [0, 0.5] (norm
     * 0.5, weight 100) is kept; weights are ignored:
     * mean = [(0.6 + 0) / 2, (0.8 + 0.5) / 2] = [0.3, 0.65].
     * With the fixed denominator D = 4: [0.15, 0.325]. */
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    cfg.central_dp = true;
    cfg.dp_clip_norm = 1;
    cfg.dp_noise_multiplier = 1e-6;
    cfg.dp_rng = rng;
    const float a[] = {3, 4}, b[] = {0, 0.5f};
    for (int pass = 0; pass < 2; pass++) {
        cfg.dp_expected_updates = pass == 0 ? 0 : 4;
        roost_strategy *s = make(&cfg, 2);
        float x[] = {0, 0};
        roost_strategy_begin_round(s);
        add_ok(s, a, 1);
        add_ok(s, b, 100);
        finish_ok(s, x);
        double scale = pass == 0 ? 1.0 : 0.5;
        assert_near(x[0], 0.3 * scale, 1e-5);
        assert_near(x[1], 0.65 * scale, 1e-5);
        roost_strategy_dp_info info;
        assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
        assert_true(info.enabled);
        assert_true(info.insecure_rng);
        assert_near(info.denominator, pass == 0 ? 2 : 4, 0);
        assert_near(info.mean_noise_stddev, 1e-6 / info.denominator, 1e-18);
        assert_true(info.update_clip_norm < 1 && info.update_clip_norm > 0.99);
        assert_int_equal(info.draws_per_round, 2);
        roost_strategy_destroy(s);
    }
    roost_rng_destroy(rng);

    /* Without central DP the info says so. */
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    roost_strategy *s = make(&cfg, 2);
    roost_strategy_dp_info info;
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_false(info.enabled);
    roost_strategy_destroy(s);
}

static void
central_dp_noise_has_the_stated_stddev(void **state)
{
    (void)state;
    /* Two all-zero updates, z = 1, C = 1, D = 2: every coordinate of the
     * new model is pure noise of standard deviation z*C/D = 0.5. Over
     * 20000 coordinates the sample standard deviation has a relative
     * standard error of about 1/sqrt(2 * 20000) = 0.5%; accept 3%. The
     * same seed reproduces the same noise; another seed does not. */
    enum { N = 20000 };
    static float zero[N], x[N], y[N];
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    cfg.central_dp = true;
    cfg.dp_clip_norm = 1;
    cfg.dp_noise_multiplier = 1;
    float *out[] = {x, y};
    for (int run = 0; run < 2; run++) {
        roost_rng *rng;
        assert_int_equal(
            roost_rng_create_insecure_deterministic(&rng, NULL, 11, 0),
            ROOST_OK);
        cfg.dp_rng = rng;
        roost_strategy *s = make(&cfg, N);
        memset(out[run], 0, sizeof(x));
        roost_strategy_begin_round(s);
        add_ok(s, zero, 1);
        add_ok(s, zero, 1);
        finish_ok(s, out[run]);
        roost_strategy_destroy(s);
        roost_rng_destroy(rng);
    }
    assert_memory_equal(x, y, sizeof(x));
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; i++) {
        sum += (double)x[i];
        sum2 += (double)x[i] * (double)x[i];
    }
    double mean = sum / N, sd = sqrt(sum2 / N - mean * mean);
    assert_near(mean, 0, 4 * 0.5 / sqrt((double)N));
    assert_near(sd, 0.5, 0.015);
}

static void
central_dp_adaptive_clip_tracks_the_quantile(void **state)
{
    (void)state;
    /* C0 = 1, z = 0.05, m = 10 expected updates, sigma_b = 0.05, target
     * quantile 0.5, step 0.2. The sum gets z_u = (0.05^-2 - 0.1^-2)^-1/2
     * = (400 - 100)^-1/2 = 0.0577350. */
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 4, 0),
                     ROOST_OK);
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    cfg.central_dp = true;
    cfg.dp_clip_norm = 1;
    cfg.dp_noise_multiplier = 0.05;
    cfg.dp_expected_updates = 10;
    cfg.dp_rng = rng;
    cfg.dp_adaptive_clip = true;
    cfg.dp_count_sigma = 0.05;
    roost_strategy *s = make(&cfg, 2);
    roost_strategy_dp_info info;
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_true(info.adaptive_clip);
    assert_near(info.update_noise_multiplier, 1 / sqrt(300.0), 1e-12);
    assert_near(info.next_clip_norm, 1, 0);
    /* The count release's sampler (sigma_b, clip 1) is reported for the
     * charge: one draw per round. */
    double cmu, cbeta;
    assert_int_equal(
        roost_noise_closeness_for(NULL, 0.05, 1.0, 0, &cmu, &cbeta, NULL),
        ROOST_OK);
    assert_int_equal(info.count_draws_per_round, 1);
    assert_true(info.count_closeness_mu == cmu && cmu > 0);
    assert_true(info.count_closeness_beta == cbeta && cbeta > 0);

    /* Round 1: ten updates of norm 0.1, all under C: the released fraction
     * is (10 - 5 + N(0, 0.05^2)) / 10 + 0.5 = 1 +- 0.005, clamped to 1,
     * so C1 = exp(-0.2 * (1 - 0.5)) = exp(-0.1) = 0.904837 (to 0.1%). The
     * mean is [0.1, 0] with noise 0.0577 * 1 / 10 = 0.006 per coordinate. */
    const float small[] = {0.1f, 0}, big[] = {10, 0};
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 10; i++)
        add_ok(s, small, 1);
    finish_ok(s, x);
    assert_near(x[0], 0.1, 0.04);
    assert_near(x[1], 0, 0.04);
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_near(info.clip_norm, 1, 0);
    assert_near(info.noised_fraction, 1, 0.02);
    double c1 = info.next_clip_norm;
    assert_near(c1, exp(-0.1), 0.001 * exp(-0.1) + 0.002);
    assert_true(info.update_clip_norm < c1);

    /* Round 2: ten updates of norm 10, all clipped to ~C1: the fraction is
     * 0 +- 0.005, clamped to 0, so C2 = C1 * exp(0.2 * 0.5) = C1 * e^0.1,
     * and the mean moves by ~[C1, 0]. */
    float y[] = {0, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 10; i++)
        add_ok(s, big, 1);
    finish_ok(s, y);
    assert_near(y[0], c1, 0.04);
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_near(info.clip_norm, c1, 0);
    assert_near(info.next_clip_norm, c1 * exp(0.1), 0.002 * c1);
    assert_near(info.mean_noise_stddev, info.update_noise_multiplier * c1 / 10,
                1e-12);
    roost_strategy_destroy(s);

    /* A round refused at the last step (the new model would overflow
     * float) leaves the clip tracker where it was. */
    roost_errmsg em;
    cfg.server_lr = 1e39; /* 3e38 + 1e39 * ~0.1 > FLT_MAX */
    s = make(&cfg, 2);
    float z[] = {3e38f, 0};
    roost_strategy_begin_round(s);
    for (int i = 0; i < 10; i++)
        add_ok(s, small, 1);
    assert_int_equal(roost_strategy_finish(s, z, &em), ROOST_ENONFINITE);
    assert_true(z[0] == 3e38f);
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_near(info.next_clip_norm, 1, 0);
    assert_near(info.denominator, 0, 0); /* no round has been applied */
    roost_strategy_destroy(s);
    cfg.server_lr = 1;

    /* Configuration errors. */
    cfg.dp_count_sigma = 0.02; /* 2 sigma_b = 0.04 <= z = 0.05 */
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 2, &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "dp_count_sigma"));
    /* A count noise of 2^20 puts the count sampler's grid at 1, which
     * would round the centred count: refused when the handle is made. */
    cfg.dp_count_sigma = 1048576;
    assert_int_equal(roost_strategy_create(&s, NULL, &cfg, 2, &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "too large for the noise grid"));
    cfg.dp_count_sigma = 0; /* m / 20 = 0.5: fine */
    s = make(&cfg, 2);
    assert_int_equal(roost_strategy_dp_info_get(s, &info), ROOST_OK);
    assert_near(info.count_sigma, 0.5, 1e-15);
    roost_strategy_destroy(s);
    cfg.dp_expected_updates = 0;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "dp_expected_updates"));
    cfg.dp_expected_updates = 10;
    cfg.dp_target_quantile = 1.5;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    cfg.dp_target_quantile = 0.5;
    cfg.central_dp = false;
    assert_int_equal(roost_strategy_config_check(&cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "needs central_dp"));
    roost_rng_destroy(rng);
}

static void
state_round_trip(void **state)
{
    (void)state;
    /* FedAdam and FedAvgM: two rounds on handle a, save, load into a fresh
     * handle b; a third identical round on both gives the same bits. */
    roost_strategy_kind kinds[] = {ROOST_STRATEGY_FEDADAM,
                                   ROOST_STRATEGY_FEDAVGM};
    const float d1[] = {1, -0.5f, 0.25f}, d2[] = {0.05f, 0.5f, -2},
                d3[] = {-1, 1, 0.125f};
    roost_errmsg em;
    for (int kk = 0; kk < 2; kk++) {
        roost_strategy_config cfg;
        roost_strategy_config_init(&cfg, kinds[kk]);
        roost_strategy *a = make(&cfg, 3), *b = make(&cfg, 3);
        float xa[] = {0, 1, 2};
        const float *ds[] = {d1, d2};
        for (int r = 0; r < 2; r++) {
            roost_strategy_begin_round(a);
            add_ok(a, ds[r], 1);
            finish_ok(a, xa);
        }
        size_t size, len;
        assert_int_equal(roost_strategy_state_size(a, &size), ROOST_OK);
        /* header 24 + 3 doubles per vector (FedAdam: m and v) */
        assert_int_equal(size, kk == 0 ? 24 + 2 * 24 : 24 + 24);
        unsigned char blob[128];
        assert_int_equal(roost_strategy_state_save(a, blob, 10, &len, &em),
                         ROOST_ETOOSMALL);
        assert_int_equal(len, size);
        assert_int_equal(
            roost_strategy_state_save(a, blob, sizeof(blob), &len, &em),
            ROOST_OK);
        assert_int_equal(len, size);
        assert_int_equal(roost_strategy_state_load(b, blob, len, &em),
                         ROOST_OK);
        float xb[3];
        memcpy(xb, xa, sizeof(xa));
        roost_strategy_begin_round(a);
        add_ok(a, d3, 1);
        finish_ok(a, xa);
        roost_strategy_begin_round(b);
        add_ok(b, d3, 1);
        finish_ok(b, xb);
        assert_memory_equal(xa, xb, sizeof(xa));
        roost_strategy_destroy(a);
        roost_strategy_destroy(b);
    }

    /* FedAvg has no state: a header-only blob, which loads. */
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    roost_strategy *s = make(&cfg, 3);
    unsigned char hdr[24];
    size_t len;
    assert_int_equal(roost_strategy_state_save(s, hdr, sizeof(hdr), &len, &em),
                     ROOST_OK);
    assert_int_equal(len, 24);
    assert_int_equal(roost_strategy_state_load(s, hdr, len, &em), ROOST_OK);
    roost_strategy_destroy(s);
}

static void
state_adaptive_clip_round_trip(void **state)
{
    (void)state;
    /* The adaptive clip norm is part of the state: after one round (C moves
     * to ~exp(-0.1)) a fresh handle that loads the blob clips with the same
     * C. */
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 8, 0),
                     ROOST_OK);
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    cfg.central_dp = true;
    cfg.dp_noise_multiplier = 0.05;
    cfg.dp_expected_updates = 10;
    cfg.dp_rng = rng;
    cfg.dp_adaptive_clip = true;
    cfg.dp_count_sigma = 0.05;
    roost_strategy *a = make(&cfg, 2), *b = make(&cfg, 2);
    const float small[] = {0.1f, 0};
    float x[] = {0, 0};
    roost_strategy_dp_info before;
    roost_strategy_dp_info_get(a, &before);
    roost_strategy_begin_round(a);
    for (int i = 0; i < 10; i++)
        add_ok(a, small, 1);
    finish_ok(a, x);
    unsigned char blob[64];
    size_t len;
    roost_errmsg em;
    assert_int_equal(
        roost_strategy_state_save(a, blob, sizeof(blob), &len, &em), ROOST_OK);
    assert_int_equal(len, 24 + 8 + 16);
    assert_int_equal(roost_strategy_state_load(b, blob, len, &em), ROOST_OK);
    roost_strategy_dp_info ia, ib;
    roost_strategy_dp_info_get(a, &ia);
    roost_strategy_dp_info_get(b, &ib);
    assert_true(ia.next_clip_norm < 0.95);
    assert_near(ib.next_clip_norm, ia.next_clip_norm, 0);
    assert_near(ib.update_clip_norm, ia.update_clip_norm, 0);
    /* The round's draws are charged to the samplers that made them: two
     * from the round's update sampler (the one before finish, replaced by
     * the next C's) and one from the count's; the sums travel with the
     * state. */
    assert_true(ia.sampler_n_mu ==
                2.0 * before.closeness_mu + before.count_closeness_mu);
    assert_true(ia.sampler_n_beta ==
                2.0 * before.closeness_beta + before.count_closeness_beta);
    assert_false(ia.sampler_sums_loaded);
    assert_true(ib.sampler_n_mu == ia.sampler_n_mu &&
                ib.sampler_n_beta == ia.sampler_n_beta);
    assert_true(ib.sampler_sums_loaded);
    /* A blob saved before the sums were kept (flags 4: the clip only)
     * still loads its clip, without sums. */
    unsigned char old[32];
    memcpy(old, blob, 32);
    old[12] = 4;
    roost_strategy *d = make(&cfg, 2);
    assert_int_equal(roost_strategy_state_load(d, old, sizeof(old), &em),
                     ROOST_OK);
    roost_strategy_dp_info id;
    roost_strategy_dp_info_get(d, &id);
    assert_near(id.next_clip_norm, ia.next_clip_norm, 0);
    assert_false(id.sampler_sums_loaded);
    assert_true(id.sampler_n_mu == 0.0);
    roost_strategy_destroy(d);
    /* Sums that are negative or not finite are refused, and the handle
     * keeps its own. */
    unsigned char bad[48];
    memcpy(bad, blob, 48);
    const double wrong[] = {-1e-9, (double)NAN, HUGE_VAL};
    for (size_t k = 0; k < 3; k++) {
        memcpy(bad + 32 + 8 * (k % 2), &wrong[k], 8);
        roost_strategy *e = make(&cfg, 2);
        assert_int_equal(roost_strategy_state_load(e, bad, 48, &em),
                         ROOST_ENONFINITE);
        roost_strategy_dp_info ie;
        roost_strategy_dp_info_get(e, &ie);
        assert_false(ie.sampler_sums_loaded);
        roost_strategy_destroy(e);
        memcpy(bad, blob, 48);
    }
    /* A fixed-clip handle refuses the adaptive blob. */
    cfg.dp_adaptive_clip = false;
    roost_strategy *c = make(&cfg, 2);
    assert_int_equal(roost_strategy_state_load(c, blob, len, &em),
                     ROOST_ECONFIG);
    roost_strategy_destroy(a);
    roost_strategy_destroy(b);
    roost_strategy_destroy(c);
    roost_rng_destroy(rng);
}

static void
state_load_refuses_bad_blobs(void **state)
{
    (void)state;
    roost_errmsg em;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDYOGI);
    roost_strategy *s = make(&cfg, 2), *fresh = make(&cfg, 2);
    const float d[] = {1, -1};
    float x[] = {0, 0};
    roost_strategy_begin_round(s);
    add_ok(s, d, 1);
    finish_ok(s, x);
    unsigned char good[24 + 32], bad[24 + 32];
    size_t len;
    assert_int_equal(
        roost_strategy_state_save(s, good, sizeof(good), &len, &em), ROOST_OK);
    assert_int_equal(len, sizeof(good));

    /* Magic, version, truncation, trailing bytes: EDECODE. */
    memcpy(bad, good, len);
    bad[0] = 'X';
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_EDECODE);
    memcpy(bad, good, len);
    bad[4] = 2;
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_EDECODE);
    assert_non_null(strstr(em.text, "version"));
    assert_int_equal(roost_strategy_state_load(fresh, good, len - 1, &em),
                     ROOST_EDECODE);
    assert_int_equal(roost_strategy_state_load(fresh, good, 10, &em),
                     ROOST_EDECODE);
    /* Another kind (FedAdam's code in the kind field): ECONFIG. */
    memcpy(bad, good, len);
    bad[8] = (unsigned char)ROOST_STRATEGY_FEDADAM;
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "saved by fedadam"));
    /* Another n: ESHAPE. */
    memcpy(bad, good, len);
    bad[16] = 3;
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_ESHAPE);
    /* A NaN in m (the first double after the header), a negative v:
     * ENONFINITE. */
    memcpy(bad, good, len);
    memset(bad + 24, 0xff, 8);
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_ENONFINITE);
    memcpy(bad, good, len);
    bad[24 + 16 + 7] |= 0x80; /* sign bit of v[0] */
    assert_int_equal(roost_strategy_state_load(fresh, bad, len, &em),
                     ROOST_ENONFINITE);
    /* None of the refusals changed fresh: its next round equals that of a
     * handle that never saw a blob. */
    roost_strategy *pristine = make(&cfg, 2);
    float y[] = {0, 0}, z[] = {0, 0};
    roost_strategy_begin_round(fresh);
    add_ok(fresh, d, 1);
    /* Loading during a round: ESTATE. */
    assert_int_equal(roost_strategy_state_load(fresh, good, len, &em),
                     ROOST_ESTATE);
    finish_ok(fresh, y);
    roost_strategy_begin_round(pristine);
    add_ok(pristine, d, 1);
    finish_ok(pristine, z);
    assert_memory_equal(y, z, sizeof(y));
    roost_strategy_destroy(s);
    roost_strategy_destroy(fresh);
    roost_strategy_destroy(pristine);
}

/* An allocator that fails after a set number of successful allocations,
 * counting live blocks, so every failure point of create is exercised. */
struct failing_alloc {
    int remaining;
    int live;
};

static void *
fa_malloc(void *arg, size_t size)
{
    struct failing_alloc *fa = arg;
    if (fa->remaining-- <= 0)
        return NULL;
    fa->live++;
    return malloc(size);
}

static void *
fa_realloc(void *arg, void *p, size_t size)
{
    (void)arg;
    return realloc(p, size);
}

static void
fa_free(void *arg, void *p)
{
    struct failing_alloc *fa = arg;
    if (p != NULL)
        fa->live--;
    free(p);
}

static void
create_allocation_failure(void **state)
{
    (void)state;
    /* FedAdam, Krum, and FedAvg with central DP, fixed and adaptive clip
     * (whose noise samplers allocate through the same hooks). */
    roost_strategy_kind kinds[] = {ROOST_STRATEGY_FEDADAM, ROOST_STRATEGY_KRUM,
                                   ROOST_STRATEGY_FEDAVG,
                                   ROOST_STRATEGY_FEDAVG};
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 5, 0),
                     ROOST_OK);
    for (int kk = 0; kk < 4; kk++) {
        roost_strategy_config cfg;
        roost_strategy_config_init(&cfg, kinds[kk]);
        if (kk >= 2) {
            cfg.central_dp = true;
            cfg.dp_rng = rng;
        }
        if (kk == 3) {
            cfg.dp_adaptive_clip = true;
            cfg.dp_expected_updates = 100;
        }
        int succeeded = 0;
        for (int budget = 0; budget < 40 && !succeeded; budget++) {
            struct failing_alloc fa = {budget, 0};
            roost_allocator a = {fa_malloc, fa_realloc, fa_free, &fa};
            roost_strategy *s = (roost_strategy *)&fa;
            roost_errmsg em;
            int rc = roost_strategy_create(&s, &a, &cfg, 8, &em);
            if (rc == ROOST_OK) {
                succeeded = 1;
                roost_strategy_destroy(s);
            } else {
                assert_int_equal(rc, ROOST_ENOMEM);
                assert_null(s);
            }
            assert_int_equal(fa.live, 0);
        }
        assert_true(succeeded);
    }
    roost_rng_destroy(rng);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fedavg_hand),
        cmocka_unit_test(fedprox_is_fedavg_and_carries_mu),
        cmocka_unit_test(fedavgm_hand),
        cmocka_unit_test(fedadam_hand),
        cmocka_unit_test(fedyogi_hand),
        cmocka_unit_test(fedadagrad_hand),
        cmocka_unit_test(median_hand),
        cmocka_unit_test(robust_many_match_sort),
        cmocka_unit_test(robust_every_k_matches_sort),
        cmocka_unit_test(trimmed_mean_hand),
        cmocka_unit_test(krum_hand),
        cmocka_unit_test(krum_resists_colluding_byzantines),
        cmocka_unit_test(krum_matches_brute_force),
        cmocka_unit_test(fedavg_streaming_equals_batch),
        cmocka_unit_test(weights_edge_cases),
        cmocka_unit_test(finish_is_all_or_nothing),
        cmocka_unit_test(memory_bound_refusal),
        cmocka_unit_test(robust_refuses_nonfinite),
        cmocka_unit_test(parse_names),
        cmocka_unit_test(config_errors),
        cmocka_unit_test(central_dp_clips_and_ignores_weights),
        cmocka_unit_test(central_dp_noise_has_the_stated_stddev),
        cmocka_unit_test(central_dp_adaptive_clip_tracks_the_quantile),
        cmocka_unit_test(state_round_trip),
        cmocka_unit_test(state_adaptive_clip_round_trip),
        cmocka_unit_test(state_load_refuses_bad_blobs),
        cmocka_unit_test(create_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
