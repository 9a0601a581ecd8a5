/*
 * test_noise.c - the grid-based Gaussian noise sampler: argument checks,
 * the grid, the closeness figures, moments and a Kolmogorov-Smirnov test
 * over 10^6 draws against N(0,1), exact-distribution chi-square tests at
 * small scales (single table and the B + K*A convolution), the grid
 * property of roost_noise_add, reproducibility with the insecure
 * deterministic rng, the exact tie paths of a 32-bit draw, and the AVX2
 * and scalar paths giving the same output from the same stream. Seeds are
 * fixed, so every statistical verdict is reproducible; the thresholds are set
 * at strict alphas (1e-3 to 1e-6).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "dp/accountant.h"
#include "dp/noise.h"
#include "dp/noise_int.h"
#include "test_util.h"

#define N_DRAWS 1000000

static roost_rng *
det_rng(uint64_t seed)
{
    roost_rng *r = NULL;
    assert_int_equal(roost_rng_create_insecure_deterministic(&r, NULL, seed, 0),
                     ROOST_OK);
    return r;
}

/* Two samplers with equal parameters on two generators of the same seed:
 * they see the same stream, so their outputs can be compared. */
struct twin {
    roost_rng *r1, *r2;
    roost_noise *a, *b;
};

static void
twin_create(struct twin *t, uint64_t seed, double sigma, double clip,
            unsigned grid_bits)
{
    t->r1 = det_rng(seed);
    t->r2 = det_rng(seed);
    t->a = t->b = NULL;
    assert_int_equal(
        roost_noise_create(&t->a, NULL, t->r1, sigma, clip, grid_bits, NULL),
        ROOST_OK);
    assert_int_equal(
        roost_noise_create(&t->b, NULL, t->r2, sigma, clip, grid_bits, NULL),
        ROOST_OK);
}

static void
twin_destroy(struct twin *t)
{
    roost_noise_destroy(t->a);
    roost_noise_destroy(t->b);
    roost_rng_destroy(t->r1);
    roost_rng_destroy(t->r2);
}

static double
normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov statistic of sorted v against N(0, scale^2). */
static double
ks_stat(const double *v, size_t n, double scale)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double f = normal_cdf(v[i] / scale);
        double lo = f - (double)i / (double)n;
        double hi = (double)(i + 1) / (double)n - f;
        if (lo > d)
            d = lo;
        if (hi > d)
            d = hi;
    }
    return d;
}

static void
create_rejects_bad_arguments(void **state)
{
    (void)state;
    roost_rng *r = det_rng(1);
    roost_noise *nz = (roost_noise *)&nz; /* must be reset to NULL */
    roost_errmsg em;
    assert_int_equal(roost_noise_create(&nz, NULL, r, 0.0, 1.0, 20, &em),
                     ROOST_EINVAL);
    assert_null(nz);
    assert_non_null(strstr(roost_errmsg_text(&em), "sigma"));
    assert_int_equal(
        roost_noise_create(&nz, NULL, r, (double)NAN, 1.0, 20, &em),
        ROOST_EINVAL);
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1.0, -1.0, 20, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "clip"));
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1.0, HUGE_VAL, 20, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1.0, 1.0,
                                        ROOST_NOISE_GRID_BITS_MAX + 1, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "grid_bits"));
    assert_int_equal(roost_noise_create(&nz, NULL, NULL, 1.0, 1.0, 20, &em),
                     ROOST_EINVAL);
    /* A grid below the float range. */
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1e-35, 1e-3, 20, &em),
                     ROOST_EINVAL);
    assert_null(nz);
    /* sigma * clip underflows to 0: refused by the range check, named. */
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1e-200, 1e-200, 20, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "float range"));
    assert_null(nz);
    roost_noise_destroy(NULL);
    roost_rng_destroy(r);
}

static void
grid_and_closeness(void **state)
{
    (void)state;
    roost_rng *r = det_rng(2);
    const double sigmas[] = {0.5, 1.0, 1.1, 3.7, 12.0};
    for (size_t i = 0; i < sizeof(sigmas) / sizeof(sigmas[0]); i++) {
        roost_noise *nz = NULL;
        double clip = 0.75;
        assert_int_equal(roost_noise_create(&nz, NULL, r, sigmas[i], clip,
                                            ROOST_NOISE_GRID_BITS_DEFAULT,
                                            NULL),
                         ROOST_OK);
        double g = roost_noise_grid(nz);
        int e = 0;
        assert_true(frexp(g, &e) == 0.5); /* a power of two */
        double s = roost_noise_stddev(nz) / g;
        assert_true(s >= 0x1p20 && s < 0x1p21);
        assert_near(roost_noise_stddev(nz), sigmas[i] * clip, 1e-15);

        double mu, beta;
        roost_noise_closeness(nz, &mu, &beta);
        /* The design gives mu ~ 2^-51 and beta ~ 2^-68 per draw. */
        assert_true(mu > 0.0 && mu < 0x1p-48);
        assert_true(beta > 0.0 && beta < 0x1p-60);

        /* Charging 2e9 draws (200k coordinates x 10^4 steps). */
        double eps2, delta2;
        assert_int_equal(roost_noise_charge(nz, 2e9, 3.0, 1e-5, &eps2, &delta2),
                         ROOST_OK);
        assert_true(eps2 > 3.0 && eps2 < 3.0 + 1e-5);
        assert_true(delta2 > 1e-5 && delta2 < 1.0001e-5);
        assert_int_equal(
            roost_noise_charge(nz, -1.0, 3.0, 1e-5, &eps2, &delta2),
            ROOST_EINVAL);
        assert_int_equal(
            roost_noise_charge(nz, 1.0, (double)NAN, 1e-5, &eps2, &delta2),
            ROOST_EINVAL);

        double c;
        assert_int_equal(roost_noise_clip_for_dim(nz, 200000, &c), ROOST_OK);
        assert_near(c, clip - sqrt(200000.0) * g, 1e-15);
        assert_true(c < clip && c > 0.99 * clip);
        assert_int_equal(roost_noise_clip_for_dim(nz, (size_t)1 << 62, &c),
                         ROOST_EINVAL);
        roost_noise_destroy(nz);
    }
    roost_rng_destroy(r);
}

/* Sign of t^2 (1 + k^2) - s^2, exactly: t and s as 53-bit integers times
 * powers of two, the products in 128-bit integers (k < 2^10 here). */
static int
cmp_conv_variance(double t, int64_t k, double s)
{
    int et, es;
    __extension__ typedef unsigned __int128 u128;
    u128 tm = (u128)(uint64_t)ldexp(frexp(t, &et), 53);
    u128 sm = (u128)(uint64_t)ldexp(frexp(s, &es), 53);
    u128 lhs = tm * tm * (u128)(1 + k * k); /* < 2^126 */
    u128 rhs = sm * sm;                     /* < 2^106 */
    int shift = 2 * (es - et);              /* s^2 / t^2 ~ 1 + k^2 */
    assert_true(shift >= 0 && shift <= 21);
    rhs <<= shift;
    return (lhs > rhs) - (lhs < rhs);
}

/* The convolution B + K*A approximates the rounded Gaussian of variance
 * t^2 (1 + K^2), with t = s / sqrt(1 + K^2) computed in double. When that
 * rounds t down, the sampler's noise is narrower than sigma*clip and the
 * distance from P_s grows like z^2/s^2 times the shortfall towards the
 * tails (about 40x mu at the default grid), outside what mu bounds; at or
 * above s the output is a post-processing of the Gaussian of sigma*clip.
 * So t^2 (1 + K^2) >= s^2 must hold exactly, for every sigma. */
static void
convolution_variance_covers_the_target(void **state)
{
    (void)state;
    roost_rng *r = det_rng(5);
    int checked = 0;
    for (int i = 0; i < 400; i++) {
        double sigma = ldexp(1.0 + (double)i / 400.0, (i % 5) - 2);
        roost_noise *nz = NULL;
        assert_int_equal(roost_noise_create(&nz, NULL, r, sigma, 1.0, 12, NULL),
                         ROOST_OK);
        int64_t k;
        double t;
        roost_noise_debug_params(nz, &k, &t);
        double s = roost_noise_stddev(nz) / roost_noise_grid(nz);
        assert_true(k >= 2);
        if (cmp_conv_variance(t, k, s) < 0)
            print_error("sigma %.17g: t %.17g, K %lld below s %.17g\n", sigma,
                        t, (long long)k, s);
        assert_true(cmp_conv_variance(t, k, s) >= 0);
        /* And only just: t is the smallest such double, or close to it. */
        assert_true(t <= s / sqrt(1.0 + (double)(k * k)) * (1.0 + 1e-15));
        checked++;
        roost_noise_destroy(nz);
    }
    assert_int_equal(checked, 400);
    roost_rng_destroy(r);
}

/* 10^6 draws at the default grid: mean, variance, excess kurtosis and KS
 * against N(0,1); the same KS rejects the draws scaled by 1.02. */
static void
moments_and_ks(void **state)
{
    (void)state;
    roost_rng *r = det_rng(20261125);
    roost_noise *nz = NULL;
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1.3, 1.0,
                                        ROOST_NOISE_GRID_BITS_DEFAULT, NULL),
                     ROOST_OK);
    double *v = malloc(N_DRAWS * sizeof(*v));
    assert_non_null(v);
    assert_int_equal(roost_noise_fill_standard(nz, v, N_DRAWS), ROOST_OK);
    double m1 = 0.0;
    for (size_t i = 0; i < N_DRAWS; i++)
        m1 += v[i];
    m1 /= N_DRAWS;
    double m2 = 0.0, m4 = 0.0;
    for (size_t i = 0; i < N_DRAWS; i++) {
        double d = v[i] - m1;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= N_DRAWS;
    m4 /= N_DRAWS;
    double kurt = m4 / (m2 * m2) - 3.0;
    print_message("mean %.5f var %.5f excess kurtosis %.5f\n", m1, m2, kurt);
    /* Standard errors: 1e-3, sqrt(2/n) = 1.4e-3, sqrt(24/n) = 4.9e-3;
     * 5 standard errors each (two-sided alpha ~ 6e-7). */
    assert_near(m1, 0.0, 5e-3);
    assert_near(m2, 1.0, 7.1e-3);
    assert_near(kurt, 0.0, 2.45e-2);

    qsort(v, N_DRAWS, sizeof(*v), cmp_double);
    double d = ks_stat(v, N_DRAWS, 1.0);
    /* Asymptotic KS critical value at alpha = 0.001: 1.9495/sqrt(n). The
     * discreteness (steps of 2^-20) moves the CDF by < 1e-6. */
    double crit = 1.9495 / sqrt((double)N_DRAWS);
    print_message("KS D = %.6f (critical %.6f at alpha 0.001)\n", d, crit);
    assert_true(d < crit);
    /* The test has power: a 2% error in the standard deviation fails. */
    assert_true(ks_stat(v, N_DRAWS, 1.02) > crit);
    free(v);
    roost_noise_destroy(nz);
    roost_rng_destroy(r);
}

/* Chi-square of n draws v (in units of s_draw, so v * s_draw is the
 * integer Z) against the exact rounded Gaussian round(N(0, s_ref^2)), bins
 * merged so each expects >= 20. */
static void
chi2_rounded(const double *v, size_t n, double s_draw, double s_ref,
             double *chi2, int *df)
{
    int64_t half = (int64_t)ceil(6.0 * s_ref) + 1;
    size_t nb = (size_t)(2 * half + 1);
    double *obs = calloc(nb, sizeof(*obs));
    assert_non_null(obs);
    for (size_t i = 0; i < n; i++) {
        double z = v[i] * s_draw;
        assert_true(fabs(z - nearbyint(z)) < 1e-6); /* integer-valued */
        int64_t k = (int64_t)nearbyint(z);
        if (k < -half)
            k = -half;
        if (k > half)
            k = half;
        obs[k + half] += 1.0;
    }
    *chi2 = 0.0;
    *df = -1;
    double acc_o = 0.0, acc_e = 0.0;
    for (int64_t k = -half; k <= half; k++) {
        /* P(cell) from the upper tail on each side, without cancellation. */
        double lo = k == -half ? -HUGE_VAL : ((double)k - 0.5) / s_ref;
        double hi = k == half ? HUGE_VAL : ((double)k + 0.5) / s_ref;
        double p = hi <= 0.0 ? normal_cdf(hi) - normal_cdf(lo)
                             : normal_cdf(-lo) - normal_cdf(-hi);
        acc_o += obs[k + half];
        acc_e += p * (double)n;
        if (acc_e >= 20.0 || k == half) {
            *chi2 += (acc_o - acc_e) * (acc_o - acc_e) / acc_e;
            (*df)++;
            acc_o = acc_e = 0.0;
        }
    }
    free(obs);
}

/* Wilson-Hilferty upper quantile of chi-square with df degrees at the
 * standard normal quantile zq. */
static double
chi2_crit(int df, double zq)
{
    double k = (double)df, a = 2.0 / (9.0 * k);
    double c = 1.0 - a + zq * sqrt(a);
    return k * c * c * c;
}

/* Small scales, where a histogram sees the whole distribution: the
 * single-table path (s < 10.5) and the B + K*A path (K = 2, 5, 11). */
static void
exact_distribution_small_scales(void **state)
{
    (void)state;
    struct {
        double sigma;
        unsigned bits;
        double s;
    } cases[] = {{1.0, 0, 1.0},
                 {1.5, 0, 1.5},
                 {12.0, 3, 12.0},
                 {40.0, 5, 40.0},
                 {200.0, 7, 200.0}};
    size_t n = 400000;
    double *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        roost_rng *r = det_rng(100 + c);
        roost_noise *nz = NULL;
        assert_int_equal(roost_noise_create(&nz, NULL, r, cases[c].sigma, 1.0,
                                            cases[c].bits, NULL),
                         ROOST_OK);
        double s = roost_noise_stddev(nz) / roost_noise_grid(nz);
        assert_true(s == cases[c].s);
        assert_int_equal(roost_noise_fill_standard(nz, v, n), ROOST_OK);
        double chi2;
        int df;
        chi2_rounded(v, n, s, s, &chi2, &df);
        double crit = chi2_crit(df, 4.753); /* alpha = 1e-6 */
        print_message("s = %g: chi2 = %.1f, df = %d, critical %.1f\n", s, chi2,
                      df, crit);
        assert_true(chi2 < crit);
        /* Power: the same draws against a 5% wider Gaussian fail. */
        chi2_rounded(v, n, s, 1.05 * s, &chi2, &df);
        print_message("  against 1.05 s: chi2 = %.1f, df = %d\n", chi2, df);
        assert_true(chi2 > chi2_crit(df, 4.753));
        roost_noise_destroy(nz);
        roost_rng_destroy(r);
    }
    free(v);
}

/* roost_noise_add: the output is round(x/g)*g + Z*g exactly, every output
 * is a multiple of g, and Z matches the fill_standard stream of an
 * identically seeded sampler. */
static void
add_is_on_grid_and_matches_stream(void **state)
{
    (void)state;
    size_t n = 5000; /* more than two chunks */
    float *x = malloc(n * sizeof(*x));
    float *y = malloc(n * sizeof(*y));
    double *z = malloc(n * sizeof(*z));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(z);
    roost_rng *src = det_rng(5);
    for (size_t i = 0; i < n; i++) {
        double u;
        assert_int_equal(roost_rng_uniform(src, &u), ROOST_OK);
        x[i] = (float)((u - 0.5) * 8.0);
    }
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 1e-30f;
    roost_rng_destroy(src);
    memcpy(y, x, n * sizeof(*x));

    struct twin t;
    twin_create(&t, 9, 1.0, 0.5, ROOST_NOISE_GRID_BITS_DEFAULT);
    roost_noise *a = t.a, *b = t.b;
    assert_int_equal(roost_noise_add(a, y, n, NULL), ROOST_OK);
    assert_int_equal(roost_noise_fill_standard(b, z, n), ROOST_OK);
    double g = roost_noise_grid(a);
    double s = roost_noise_stddev(a) / g;
    double sum_sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        double k = (double)y[i] / g;
        assert_true(k == nearbyint(k)); /* a multiple of the grid */
        double m = nearbyint((double)x[i] / g);
        double zi = nearbyint(z[i] * s);
        float expect = (float)((m + zi) * g);
        assert_true(y[i] == expect);
        sum_sq += ((double)y[i] - m * g) * ((double)y[i] - m * g);
    }
    /* Noise of the right size: rms 0.5 within 5%. */
    assert_near(sqrt(sum_sq / (double)n), 0.5, 0.025);
    twin_destroy(&t);
    free(x);
    free(y);
    free(z);
}

static void
reproducible_with_deterministic_rng(void **state)
{
    (void)state;
    size_t n = 10000;
    double *u = malloc(n * sizeof(*u)), *v = malloc(n * sizeof(*v)),
           *w = malloc(n * sizeof(*w));
    assert_true(u != NULL && v != NULL && w != NULL);
    uint64_t seeds[3] = {77, 77, 78};
    double *outs[3] = {u, v, w};
    for (int k = 0; k < 3; k++) {
        roost_rng *r = det_rng(seeds[k]);
        roost_noise *nz = NULL;
        assert_int_equal(roost_noise_create(&nz, NULL, r, 2.0, 1.0,
                                            ROOST_NOISE_GRID_BITS_DEFAULT,
                                            NULL),
                         ROOST_OK);
        /* Split into uneven calls: the stream must not depend on it. */
        size_t done = 0, step = k == 1 ? 777 : n;
        while (done < n) {
            size_t c = n - done < step ? n - done : step;
            assert_int_equal(roost_noise_fill_standard(nz, outs[k] + done, c),
                             ROOST_OK);
            done += c;
        }
        roost_noise_destroy(nz);
        roost_rng_destroy(r);
    }
    assert_memory_equal(u, v, n * sizeof(*u));
    assert_memory_not_equal(u, w, n * sizeof(*u));
    free(u);
    free(v);
    free(w);
}

static void
add_rejects_bad_input_untouched(void **state)
{
    (void)state;
    roost_rng *r = det_rng(3);
    roost_noise *nz = NULL;
    assert_int_equal(roost_noise_create(&nz, NULL, r, 1.0, 1.0,
                                        ROOST_NOISE_GRID_BITS_DEFAULT, NULL),
                     ROOST_OK);
    float x[4] = {1.0f, 2.0f, NAN, 3.0f};
    float keep[4];
    memcpy(keep, x, sizeof(x));
    roost_errmsg em;
    assert_int_equal(roost_noise_add(nz, x, 4, &em), ROOST_ENONFINITE);
    assert_non_null(strstr(roost_errmsg_text(&em), "coordinate 2"));
    assert_memory_equal(x, keep, sizeof(x));
    x[2] = HUGE_VALF;
    assert_int_equal(roost_noise_add(nz, x, 4, &em), ROOST_ENONFINITE);
    x[2] = 1e30f; /* 2^20 steps per unit: beyond 2^51 steps */
    assert_int_equal(roost_noise_add(nz, x, 4, &em), ROOST_EOVERFLOW);
    assert_non_null(strstr(roost_errmsg_text(&em), "coordinate 2"));
    assert_int_equal(roost_noise_add(nz, NULL, 4, &em), ROOST_EINVAL);
    assert_int_equal(roost_noise_add(nz, NULL, 0, &em), ROOST_OK);
    roost_noise_destroy(nz);
    roost_rng_destroy(r);
}

__extension__ typedef unsigned __int128 u128;

/* Ideal probability of |value| = j for table `which` with parameter t,
 * computed independently of dp/noise.c (erfc differences / direct
 * formula, accurate to ~1e-15 relative at the scales used here). */
static long double
ideal_fold(int which, long double t, int64_t j)
{
    long double jl = (long double)j, r2 = sqrtl(2.0L);
    if (which == ROOST_NOISE_TABLE_B) {
        if (j == 0)
            return erfl(0.5L / (t * r2));
        return erfcl((jl - 0.5L) / (t * r2)) - erfcl((jl + 0.5L) / (t * r2));
    }
    long double pi = acosl(-1.0L);
    long double p = expl(-jl * jl / (2.0L * t * t)) / (sqrtl(2.0L * pi) * t);
    return j == 0 ? p : 2.0L * p;
}

/* The distribution a table samples, read off its slots (own threshold plus
 * the alias shares), sums to exactly 2^127 and matches the ideal one. */
static void
check_table_distribution(roost_noise *nz, int which, double max_rel)
{
    int64_t k;
    double t;
    roost_noise_debug_params(nz, &k, &t);
    unsigned bits;
    assert_int_equal(roost_noise_debug_table(nz, which, &bits), ROOST_OK);
    size_t n_slots = (size_t)1 << bits;
    const u128 cap = (u128)1 << (127 - bits);
    u128 *q = calloc(n_slots, sizeof(*q));
    assert_non_null(q);
    for (size_t i = 0; i < n_slots; i++) {
        uint64_t hi, lo, alias;
        assert_int_equal(roost_noise_debug_slot(nz, which, i, &hi, &lo, &alias),
                         ROOST_OK);
        u128 thr = ((u128)hi << 64) | lo;
        assert_true(thr < cap);
        assert_true(alias < n_slots);
        q[i] += thr;
        q[alias] += cap - thr;
    }
    u128 sum = 0;
    size_t support = 0;
    double worst = 0.0;
    for (size_t j = 0; j < n_slots; j++) {
        sum += q[j];
        if (q[j] == 0)
            continue;
        assert_true(j == support); /* the support is 0..h, no holes */
        support++;
        long double qj = ldexpl((long double)q[j], -127);
        long double pj = ideal_fold(which, (long double)t, (int64_t)j);
        if (pj > 1e-15L) {
            double rel = (double)fabsl(qj / pj - 1.0L);
            if (rel > worst)
                worst = rel;
        }
    }
    assert_true(sum == (u128)1 << 127);
    /* Beyond the support the ideal mass is negligible. */
    long double tail = 0.0L;
    for (int64_t j = (int64_t)support; j < (int64_t)support + 50; j++)
        tail += ideal_fold(which, (long double)t, j);
    print_message("table %d: t = %.3f, %zu entries in 2^%u slots, max "
                  "|Q/P-1| = %.3g, tail %.3Lg\n",
                  which, t, support, bits, worst, tail);
    assert_true(worst <= max_rel);
    assert_true(tail < 1e-18L);
    free(q);
}

static void
tables_sample_the_ideal_distribution(void **state)
{
    (void)state;
    roost_rng *r = det_rng(4);
    struct {
        double sigma;
        unsigned bits;
    } cases[] = {{1.5, 0}, {40.0, 5}, {1.0, ROOST_NOISE_GRID_BITS_DEFAULT}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        roost_noise *nz = NULL;
        assert_int_equal(roost_noise_create(&nz, NULL, r, cases[c].sigma, 1.0,
                                            cases[c].bits, NULL),
                         ROOST_OK);
        int64_t k;
        double t;
        roost_noise_debug_params(nz, &k, &t);
        /* erfc differences lose ~log2(t) bits: allow 1e-12 at large t. */
        double tol = t > 100.0 ? 1e-12 : 1e-14;
        check_table_distribution(nz, ROOST_NOISE_TABLE_B, tol);
        unsigned bits;
        if (k != 0)
            check_table_distribution(nz, ROOST_NOISE_TABLE_A, tol);
        else
            assert_int_equal(
                roost_noise_debug_table(nz, ROOST_NOISE_TABLE_A, &bits),
                ROOST_EINVAL);
        roost_noise_destroy(nz);
    }
    roost_rng_destroy(r);
}

/* Crafted 32-bit draws reach the rare comparison paths: position bits just
 * below, equal to and just above the threshold's first 31 - bits bits;
 * equality draws one more word from the rng, which decides against the
 * threshold's next 64 bits. */
static void
tie_paths_are_exact(void **state)
{
    (void)state;
    roost_rng *r1 = det_rng(8), *r2 = det_rng(8);
    roost_noise *nz = NULL;
    assert_int_equal(roost_noise_create(&nz, NULL, r1, 1.0, 1.0,
                                        ROOST_NOISE_GRID_BITS_DEFAULT, NULL),
                     ROOST_OK);
    for (int which = 0; which < 2; which++) {
        unsigned bits;
        assert_int_equal(roost_noise_debug_table(nz, which, &bits), ROOST_OK);
        size_t n_slots = (size_t)1 << bits, tested = 0;
        const uint64_t rmax = UINT32_MAX >> (bits + 1);
        for (size_t slot = 1; slot < n_slots && tested < 200; slot += 37) {
            uint64_t hi, lo, alias;
            assert_int_equal(
                roost_noise_debug_slot(nz, which, slot, &hi, &lo, &alias),
                ROOST_OK);
            uint64_t top = hi >> 32; /* thr >> 96 */
            uint64_t mid = (hi << 32) | (lo >> 32);
            if (top == 0 || top == rmax || alias == slot)
                continue;
            tested++;
            for (uint64_t sign = 0; sign < 2; sign++) {
                uint64_t base = ((uint64_t)slot << (32 - bits)) | sign;
                int64_t v, expect_sign = sign ? -1 : 1;
                /* Below: own value; above: alias; no extra word. */
                assert_int_equal(roost_noise_debug_draw(
                                     nz, which, base | (top - 1) << 1, &v),
                                 ROOST_OK);
                assert_true(v == expect_sign * (int64_t)slot);
                assert_int_equal(roost_noise_debug_draw(
                                     nz, which, base | (top + 1) << 1, &v),
                                 ROOST_OK);
                assert_true(v == expect_sign * (int64_t)alias);
                /* Equal: the next rng word decides. */
                uint64_t next;
                assert_int_equal(roost_rng_u64(r2, &next), ROOST_OK);
                assert_true(next != mid); /* probability 2^-64 */
                assert_int_equal(
                    roost_noise_debug_draw(nz, which, base | top << 1, &v),
                    ROOST_OK);
                int64_t mag = next < mid ? (int64_t)slot : (int64_t)alias;
                assert_true(v == expect_sign * mag);
            }
        }
        assert_true(tested > 50);
    }
    /* Both rngs consumed exactly the same words. */
    uint64_t a, b;
    assert_int_equal(roost_rng_u64(r1, &a), ROOST_OK);
    assert_int_equal(roost_rng_u64(r2, &b), ROOST_OK);
    assert_true(a == b);
    roost_noise_destroy(nz);
    roost_rng_destroy(r1);
    roost_rng_destroy(r2);
}

/* The AVX2 and the scalar paths give the same noise from the same stream,
 * ties included (10^6 coordinates at the default grid have dozens), for
 * add, add_scaled and fill_standard. Skipped without AVX2. */
static void
simd_and_scalar_paths_agree(void **state)
{
    (void)state;
    size_t n = 1000003; /* not a multiple of the chunk or the group */
    float *x = malloc(n * sizeof(*x)), *y = malloc(n * sizeof(*y));
    double *u = malloc(n * sizeof(*u)), *v = malloc(n * sizeof(*v));
    assert_true(x != NULL && y != NULL && u != NULL && v != NULL);
    roost_rng *src = det_rng(12);
    for (size_t i = 0; i < n; i++) {
        double w;
        assert_int_equal(roost_rng_uniform(src, &w), ROOST_OK);
        x[i] = (float)((w - 0.5) * 4.0);
    }
    roost_rng_destroy(src);
    memcpy(y, x, n * sizeof(*x));
    struct {
        double sigma;
        unsigned bits;
    } cases[] = {{1.0, ROOST_NOISE_GRID_BITS_DEFAULT}, {1.5, 0}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct twin t;
        twin_create(&t, 13, cases[c].sigma, 1.0, cases[c].bits);
        roost_noise *a = t.a, *b = t.b;
        if (!roost_noise_debug_use_simd(a, true)) {
            print_message("no AVX2: only the scalar path is tested\n");
        }
        roost_noise_debug_use_simd(b, false);
        assert_int_equal(roost_noise_fill_standard(a, u, n), ROOST_OK);
        assert_int_equal(roost_noise_fill_standard(b, v, n), ROOST_OK);
        assert_memory_equal(u, v, n * sizeof(*u));
        assert_int_equal(roost_noise_add_scaled(a, x, n, 0.37f, NULL),
                         ROOST_OK);
        assert_int_equal(roost_noise_add_scaled(b, y, n, 0.37f, NULL),
                         ROOST_OK);
        assert_memory_equal(x, y, n * sizeof(*x));
        /* Both consumed the same number of words. */
        uint64_t wa, wb;
        assert_int_equal(roost_rng_u64(t.r1, &wa), ROOST_OK);
        assert_int_equal(roost_rng_u64(t.r2, &wb), ROOST_OK);
        assert_true(wa == wb);
        twin_destroy(&t);
    }
    free(x);
    free(y);
    free(u);
    free(v);
}

/* add_scaled is add followed by a float multiplication. */
static void
add_scaled_is_add_then_scale(void **state)
{
    (void)state;
    size_t n = 5000;
    float *x = malloc(n * sizeof(*x)), *y = malloc(n * sizeof(*y));
    assert_true(x != NULL && y != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = y[i] = (float)i * 0.001f - 2.0f;
    struct twin t;
    twin_create(&t, 21, 1.0, 1.0, ROOST_NOISE_GRID_BITS_DEFAULT);
    roost_noise *a = t.a, *b = t.b;
    const float scale = 1.0f / 3.0f;
    assert_int_equal(roost_noise_add(a, x, n, NULL), ROOST_OK);
    for (size_t i = 0; i < n; i++)
        x[i] *= scale;
    assert_int_equal(roost_noise_add_scaled(b, y, n, scale, NULL), ROOST_OK);
    assert_memory_equal(x, y, n * sizeof(*x));
    twin_destroy(&t);
    free(x);
    free(y);
}

/* An allocator that fails once `budget` allocations have succeeded and
 * counts what is still live. */
struct counting_alloc {
    long budget;
    long live;
};

static void *
counting_malloc(void *arg, size_t size)
{
    struct counting_alloc *ca = arg;
    if (ca->budget == 0)
        return NULL;
    ca->budget--;
    void *p = malloc(size ? size : 1);
    if (p != NULL)
        ca->live++;
    return p;
}

static void *
counting_realloc(void *arg, void *ptr, size_t size)
{
    if (ptr == NULL)
        return counting_malloc(arg, size);
    return realloc(ptr, size ? size : 1);
}

static void
counting_free(void *arg, void *ptr)
{
    struct counting_alloc *ca = arg;
    if (ptr != NULL)
        ca->live--;
    free(ptr);
}

/* Every allocation failure inside create returns ROOST_ENOMEM, sets *out
 * to NULL and leaves nothing allocated. */
static void
create_survives_allocation_failure(void **state)
{
    (void)state;
    roost_rng *r = det_rng(12);
    int succeeded = 0;
    for (long budget = 0; budget < 64 && !succeeded; budget++) {
        struct counting_alloc ca = {budget, 0};
        roost_allocator alloc = {counting_malloc, counting_realloc,
                                 counting_free, &ca};
        roost_noise *nz = (roost_noise *)&ca;
        roost_errmsg em;
        int rc = roost_noise_create(&nz, &alloc, r, 1.0, 1.0,
                                    ROOST_NOISE_GRID_BITS_DEFAULT, &em);
        if (rc == ROOST_OK) {
            succeeded = 1;
            float x[3] = {1.0f, 2.0f, 3.0f};
            assert_int_equal(roost_noise_add(nz, x, 3, NULL), ROOST_OK);
            roost_noise_destroy(nz);
        } else {
            assert_int_equal(rc, ROOST_ENOMEM);
            assert_null(nz);
        }
        assert_int_equal(ca.live, 0);
    }
    assert_true(succeeded);
    roost_rng_destroy(r);
}

/* n noise values on zeros from nz (caller frees). */
static float *
noise_on_zeros(roost_noise *nz, size_t n)
{
    float *x = calloc(n, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(roost_noise_add(nz, x, n, NULL), ROOST_OK);
    return x;
}

/* Samplers from a memo draw exactly what a sampler built for the same
 * key draws from the same stream: the first one (which builds the memo's
 * tables) and a later one, which builds nothing: it allocates its own
 * two blocks and the memo's allocator nothing. */
static void
memo_sampler_draws_what_its_own_would(void **state)
{
    (void)state;
    const size_t n = 50000;
    struct counting_alloc in_memo = {-1, 0}, own = {-1, 0};
    roost_allocator memo_alloc = {counting_malloc, counting_realloc,
                                  counting_free, &in_memo};
    roost_allocator own_alloc = {counting_malloc, counting_realloc,
                                 counting_free, &own};
    roost_noise_memo *memo = NULL;
    assert_int_equal(roost_noise_memo_create(&memo, &memo_alloc, NULL),
                     ROOST_OK);
    long memo_alone = in_memo.live;
    roost_rng *r0 = det_rng(21), *r1 = det_rng(21), *r2 = det_rng(21);
    roost_noise *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(roost_noise_create(&a, NULL, r0, 1.3, 0.7,
                                        ROOST_NOISE_GRID_BITS_DEFAULT, NULL),
                     ROOST_OK);
    assert_int_equal(roost_noise_create_memo(&b, &own_alloc, memo, r1, 1.3, 0.7,
                                             ROOST_NOISE_GRID_BITS_DEFAULT,
                                             NULL),
                     ROOST_OK);
    long tables = in_memo.live;
    long one = own.live;
    assert_true(tables > memo_alone);
    assert_int_equal(one, 2);
    long budget = in_memo.budget; /* counts down with every allocation */
    assert_int_equal(roost_noise_create_memo(&c, &own_alloc, memo, r2, 1.3, 0.7,
                                             ROOST_NOISE_GRID_BITS_DEFAULT,
                                             NULL),
                     ROOST_OK);
    assert_int_equal(in_memo.budget, budget); /* nothing built */
    assert_int_equal(in_memo.live, tables);
    assert_int_equal(own.live, 2 * one);

    float *x = noise_on_zeros(a, n), *y = noise_on_zeros(b, n),
          *z = noise_on_zeros(c, n);
    assert_memory_equal(x, y, n * sizeof(*x));
    assert_memory_equal(x, z, n * sizeof(*x));
    double mu_a, beta_a, mu_c, beta_c;
    roost_noise_closeness(a, &mu_a, &beta_a);
    roost_noise_closeness(c, &mu_c, &beta_c);
    assert_true(mu_a == mu_c && beta_a == beta_c);
    assert_true(roost_noise_grid(a) == roost_noise_grid(c));

    roost_noise_destroy(b);
    roost_noise_destroy(c);
    assert_int_equal(own.live, 0);
    assert_int_equal(in_memo.live, tables); /* the memo keeps them */
    roost_noise_memo_destroy(memo);
    assert_int_equal(in_memo.live, 0);
    roost_noise_destroy(a);
    free(x);
    free(y);
    free(z);
    roost_rng_destroy(r0);
    roost_rng_destroy(r1);
    roost_rng_destroy(r2);
}

/* A sampler keeps its tables when the memo replaces its key with newer
 * ones and when the memo is destroyed first: it goes on drawing what a
 * sampler of its own draws, and the tables go with the last user. */
static void
memo_sampler_outlives_its_memo(void **state)
{
    (void)state;
    const size_t n = 20000;
    struct counting_alloc in_memo = {-1, 0};
    roost_allocator memo_alloc = {counting_malloc, counting_realloc,
                                  counting_free, &in_memo};
    roost_noise_memo *memo = NULL;
    assert_int_equal(roost_noise_memo_create(&memo, &memo_alloc, NULL),
                     ROOST_OK);
    roost_rng *r = det_rng(22), *ref_r = det_rng(22), *other = det_rng(23);
    roost_noise *a = NULL, *ref = NULL;
    assert_int_equal(roost_noise_create_memo(&a, NULL, memo, r, 2.0, 1.0,
                                             ROOST_NOISE_GRID_BITS_DEFAULT,
                                             NULL),
                     ROOST_OK);
    assert_int_equal(roost_noise_create(&ref, NULL, ref_r, 2.0, 1.0,
                                        ROOST_NOISE_GRID_BITS_DEFAULT, NULL),
                     ROOST_OK);
    /* More keys than the memo holds, through both ways in. */
    for (int i = 1; i <= 12; i++) {
        roost_noise *o = NULL;
        double mu, beta;
        assert_int_equal(roost_noise_create_memo(&o, NULL, memo, other, 2.0 + i,
                                                 1.0, 8, NULL),
                         ROOST_OK);
        roost_noise_destroy(o);
        assert_int_equal(
            roost_noise_closeness_for(memo, 20.0 + i, 1.0, 8, &mu, &beta, NULL),
            ROOST_OK);
    }
    float *x = noise_on_zeros(a, n), *y = noise_on_zeros(ref, n);
    assert_memory_equal(x, y, n * sizeof(*x));
    free(x);
    free(y);

    roost_noise_memo_destroy(memo);
    assert_true(in_memo.live > 0); /* a's tables */
    x = noise_on_zeros(a, n);
    y = noise_on_zeros(ref, n);
    assert_memory_equal(x, y, n * sizeof(*x));
    roost_noise_destroy(a);
    assert_int_equal(in_memo.live, 0);
    free(x);
    free(y);
    roost_noise_destroy(ref);
    roost_rng_destroy(r);
    roost_rng_destroy(ref_r);
    roost_rng_destroy(other);
}

/* The closeness figures of a built sampler, for comparison. */
static void
built_closeness(double sigma, double clip, unsigned grid_bits, double *mu,
                double *beta)
{
    roost_rng *r = det_rng(13);
    roost_noise *nz = NULL;
    assert_int_equal(
        roost_noise_create(&nz, NULL, r, sigma, clip, grid_bits, NULL),
        ROOST_OK);
    roost_noise_closeness(nz, mu, beta);
    roost_noise_destroy(nz);
    roost_rng_destroy(r);
}

/* roost_noise_closeness_for gives exactly the built sampler's figures,
 * on both sides of a power of two of sigma*clip (where the grid, hence
 * the tables, change), again when asked a second time (the cached path)
 * and after more distinct keys than the cache holds; grid_bits 0 is the
 * default grid. */
static void
closeness_for_matches_built_sampler(void **state)
{
    (void)state;
    const struct {
        double sigma, clip;
    } cases[] = {
        {1.0, 1.0},   {0.7262, 1.0},
        {3.7, 0.75},  {nextafter(2.0, 0.0), 1.0}, /* just below 2 */
        {2.0, 1.0},   {1.999, 0.5},               /* sigma*clip just below 1 */
        {2.001, 0.5},                             /* just above 1 */
        {12.0, 0.1},  {0.3, 2.5},
    };
    const size_t n = sizeof(cases) / sizeof(cases[0]);
    roost_noise_memo *memo = NULL;
    assert_int_equal(roost_noise_memo_create(&memo, NULL, NULL), ROOST_OK);
    double mu[sizeof(cases) / sizeof(cases[0])];
    double beta[sizeof(cases) / sizeof(cases[0])];
    for (size_t i = 0; i < n; i++) {
        double bmu, bbeta;
        built_closeness(cases[i].sigma, cases[i].clip,
                        ROOST_NOISE_GRID_BITS_DEFAULT, &bmu, &bbeta);
        roost_errmsg em;
        assert_int_equal(roost_noise_closeness_for(memo, cases[i].sigma,
                                                   cases[i].clip, 0, &mu[i],
                                                   &beta[i], &em),
                         ROOST_OK);
        assert_true(mu[i] == bmu);
        assert_true(beta[i] == bbeta);
        double mu2 = -1.0, beta2 = -1.0;
        assert_int_equal(roost_noise_closeness_for(
                             memo, cases[i].sigma, cases[i].clip,
                             ROOST_NOISE_GRID_BITS_DEFAULT, &mu2, &beta2, &em),
                         ROOST_OK);
        assert_true(mu2 == bmu);
        assert_true(beta2 == bbeta);
    }
    /* The figures do differ across the boundary (else the check above
     * would not tell the two samplers apart). */
    assert_true(mu[3] != mu[4] || beta[3] != beta[4]);
    /* More keys than slots have passed: the first ones were rebuilt. */
    for (size_t i = 0; i < n; i++) {
        double mu2, beta2;
        assert_int_equal(roost_noise_closeness_for(memo, cases[i].sigma,
                                                   cases[i].clip, 0, &mu2,
                                                   &beta2, NULL),
                         ROOST_OK);
        assert_true(mu2 == mu[i] && beta2 == beta[i]);
    }
    /* A grid other than the default is its own key. */
    double bmu, bbeta, fmu, fbeta;
    built_closeness(1.0, 1.0, 16, &bmu, &bbeta);
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, 1.0, 16, &fmu, &fbeta, NULL),
        ROOST_OK);
    assert_true(fmu == bmu && fbeta == bbeta);
    assert_true(fmu != mu[0] || fbeta != beta[0]);
    roost_noise_memo_destroy(memo);
    /* Without a memo: the same figures, built each time. */
    assert_int_equal(roost_noise_closeness_for(NULL, cases[1].sigma,
                                               cases[1].clip, 0, &fmu, &fbeta,
                                               NULL),
                     ROOST_OK);
    assert_true(fmu == mu[1] && fbeta == beta[1]);
    roost_noise_memo_destroy(NULL);
}

/* Invalid input is refused as roost_noise_create refuses it, cached keys
 * or not, and leaves the outputs alone. */
static void
closeness_for_rejects_bad_arguments(void **state)
{
    (void)state;
    roost_errmsg em;
    double mu = 7.0, beta = 7.0;
    roost_noise_memo *memo = NULL;
    assert_int_equal(roost_noise_memo_create(&memo, NULL, NULL), ROOST_OK);
    assert_int_equal(roost_noise_memo_create(NULL, NULL, &em), ROOST_EINVAL);
    assert_int_equal(
        roost_noise_closeness_for(memo, 0.0, 1.0, 0, &mu, &beta, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "sigma"));
    assert_int_equal(
        roost_noise_closeness_for(memo, (double)NAN, 1.0, 0, &mu, &beta, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, -1.0, 0, &mu, &beta, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "clip"));
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, HUGE_VAL, 0, &mu, &beta, &em),
        ROOST_EINVAL);
    assert_int_equal(roost_noise_closeness_for(memo, 1.0, 1.0,
                                               ROOST_NOISE_GRID_BITS_MAX + 1,
                                               &mu, &beta, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "grid_bits"));
    assert_int_equal(
        roost_noise_closeness_for(memo, 1e-200, 1e-200, 0, &mu, &beta, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "float range"));
    assert_true(mu == 7.0 && beta == 7.0);
    /* A valid key, now cached, still needs somewhere to put the answer. */
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, 1.0, 0, &mu, &beta, NULL),
        ROOST_OK);
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, 1.0, 0, NULL, &beta, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_noise_closeness_for(memo, 1.0, 1.0, 0, &mu, NULL, &em),
        ROOST_EINVAL);
    roost_noise_memo_destroy(memo);
}

/* The check a budget will run: roost_dp_epsilon_sampled of (q, sigma,
 * steps) with the terms of the sampler for sigma, capped at target. */
static double
charged_epsilon(double q, uint64_t steps, double draws, double clip,
                double delta, double target, double sigma)
{
    double mu, beta, eps;
    assert_int_equal(
        roost_noise_closeness_for(NULL, sigma, clip, 0, &mu, &beta, NULL),
        ROOST_OK);
    roost_dp_event ev = {.q = q, .sigma = sigma, .steps = steps};
    assert_int_equal(roost_dp_epsilon_sampled(&ev, 1, draws * mu, draws * beta,
                                              target, delta, &eps, NULL, NULL),
                     ROOST_OK);
    return eps;
}

/* The calibrated sigma passes the check and sigma * (1 - 1e-5) does not,
 * both where the sampler's terms are negligible (the roost sim default:
 * 199210 parameters x 19 steps x 4 rounds) and where its tail term takes
 * a large part of delta (roost train's logreg at epsilon 22); with no
 * draws the answer is exactly roost_dp_calibrate_sigma's. */
static void
calibrate_sampled_meets_target_minimally(void **state)
{
    (void)state;
    const struct {
        double q;
        uint64_t steps;
        double draws, clip, delta, eps;
    } cases[] = {
        {0.05333, 76, 199210.0 * 76.0, 1.0, 1e-5, 8.0},
        {0.1, 10, 7850.0 * 10.0 * 2.0, 1.0, 1e-5, 22.0},
        {0.01, 1000, 1e5 * 1000.0, 0.5, 1e-6, 1.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double q = cases[i].q, draws = cases[i].draws, clip = cases[i].clip;
        double delta = cases[i].delta, target = cases[i].eps;
        uint64_t steps = cases[i].steps;
        double ideal, sigma, sigma0;
        roost_errmsg em;
        assert_int_equal(
            roost_dp_calibrate_sigma(q, steps, delta, target, &ideal, &em),
            ROOST_OK);
        assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, 0.0,
                                                          clip, 0, delta,
                                                          target, &sigma0, &em),
                         ROOST_OK);
        assert_true(sigma0 == ideal);
        assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                          clip, 0, delta,
                                                          target, &sigma, &em),
                         ROOST_OK);
        assert_true(charged_epsilon(q, steps, draws, clip, delta, target,
                                    sigma) <= target);
        assert_true(charged_epsilon(q, steps, draws, clip, delta, target,
                                    sigma * (1.0 - 1e-5)) > target);
        /* No sigma below the ideal calibration's tolerance passes. */
        assert_true(sigma >= ideal * (1.0 - ROOST_DP_CALIBRATE_RTOL));
    }
}

/* A target whose tail term e^eps * n * beta alone reaches delta is
 * refused with ROOST_EBUDGET, naming ln(delta / (n beta)), the largest
 * reachable epsilon; below that the same run calibrates. Bad arguments
 * are refused. */
static void
calibrate_sampled_refuses_unreachable(void **state)
{
    (void)state;
    const double q = 0.1, draws = 1.5e5, delta = 1e-5;
    const uint64_t steps = 10;
    double ideal, mu, beta, sigma = -1.0;
    assert_int_equal(
        roost_dp_calibrate_sigma(q, steps, delta, 30.0, &ideal, NULL),
        ROOST_OK);
    assert_int_equal(
        roost_noise_closeness_for(NULL, ideal, 1.0, 0, &mu, &beta, NULL),
        ROOST_OK);
    double reach = log(delta / (draws * beta));
    assert_true(reach > 20.0 && reach < 30.0);
    char want[64];
    snprintf(want, sizeof(want), "reachable only for epsilon below %.2f",
             reach);
    roost_errmsg em;
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                      1.0, 0, delta, 30.0,
                                                      &sigma, &em),
                     ROOST_EBUDGET);
    assert_non_null(strstr(roost_errmsg_text(&em), "tail term"));
    assert_non_null(strstr(roost_errmsg_text(&em), want));
    assert_true(sigma == -1.0);
    /* An enormous target: e^eps overflows, still refused the same way. */
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                      1.0, 0, delta, 1000.0,
                                                      &sigma, &em),
                     ROOST_EBUDGET);
    assert_non_null(strstr(roost_errmsg_text(&em), "reachable only"));
    /* A little below the reachable epsilon it calibrates. */
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                      1.0, 0, delta,
                                                      reach - 1.0, &sigma, &em),
                     ROOST_OK);
    assert_true(charged_epsilon(q, steps, draws, 1.0, delta, reach - 1.0,
                                sigma) <= reach - 1.0);
    /* Too small a target is the accountant's own refusal. */
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                      1.0, 0, delta, 1e-4,
                                                      &sigma, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "unreachable"));
    /* Bad arguments. */
    assert_int_equal(roost_dp_calibrate_sigma_sampled(
                         NULL, q, steps, -1.0, 1.0, 0, delta, 8.0, &sigma, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps,
                                                      (double)NAN, 1.0, 0,
                                                      delta, 8.0, &sigma, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws,
                                                      0.0, 0, delta, 8.0,
                                                      &sigma, &em),
                     ROOST_EINVAL);
    assert_non_null(strstr(roost_errmsg_text(&em), "clip"));
    assert_int_equal(
        roost_dp_calibrate_sigma_sampled(NULL, q, steps, draws, 1.0,
                                         ROOST_NOISE_GRID_BITS_MAX + 1, delta,
                                         8.0, &sigma, &em),
        ROOST_EINVAL);
    assert_int_equal(roost_dp_calibrate_sigma_sampled(
                         NULL, q, steps, draws, 1.0, 0, delta, 8.0, NULL, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_calibrate_sigma_sampled(NULL, 0.0, steps, draws,
                                                      1.0, 0, delta, 8.0,
                                                      &sigma, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dp_calibrate_sigma_sampled(
                         NULL, q, steps, draws, 1.0, 0, 1.5, 8.0, &sigma, &em),
                     ROOST_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_rejects_bad_arguments),
        cmocka_unit_test(create_survives_allocation_failure),
        cmocka_unit_test(memo_sampler_draws_what_its_own_would),
        cmocka_unit_test(memo_sampler_outlives_its_memo),
        cmocka_unit_test(closeness_for_matches_built_sampler),
        cmocka_unit_test(closeness_for_rejects_bad_arguments),
        cmocka_unit_test(calibrate_sampled_meets_target_minimally),
        cmocka_unit_test(calibrate_sampled_refuses_unreachable),
        cmocka_unit_test(grid_and_closeness),
        cmocka_unit_test(convolution_variance_covers_the_target),
        cmocka_unit_test(moments_and_ks),
        cmocka_unit_test(exact_distribution_small_scales),
        cmocka_unit_test(tables_sample_the_ideal_distribution),
        cmocka_unit_test(tie_paths_are_exact),
        cmocka_unit_test(simd_and_scalar_paths_agree),
        cmocka_unit_test(add_scaled_is_add_then_scale),
        cmocka_unit_test(add_is_on_grid_and_matches_stream),
        cmocka_unit_test(reproducible_with_deterministic_rng),
        cmocka_unit_test(add_rejects_bad_input_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
