/*
 * validate.c - shape, finiteness, norm and example-count checks on a model
 * update before aggregation (see validate.h for the contract).
 *
 * One pass: the sum of squares is accumulated in double precision, and that
 * sum alone tells whether every element was finite. A float is at most
 * FLT_MAX ~ 3.4e38, so its square in double is at most ~1.2e77, and a sum of
 * fewer than 2^64 such squares stays below ~2.2e96, far from DBL_MAX. So
 * the sum is finite exactly when no element is NaN or infinite (a NaN
 * propagates, an infinity squares to +inf, and squares are never negative,
 * so inf - inf cannot arise). The good path therefore reads memory once and
 * branches only at the end; only a refused update pays a second scan to
 * find the first bad index for the message.
 *
 * The loop keeps sixteen independent partial sums so the compiler can keep
 * several floating-point additions in flight (and vectorise them) without
 * -ffast-math: the summation order is fixed by the code, not by the
 * optimiser, so results are reproducible across optimisation levels. On
 * x86-64 Linux with GCC the loop is compiled three times (AVX-512, AVX2,
 * baseline SSE2) and the best one for the CPU is picked at load time;
 * all three compute the same bits.
 *
 * No state, no allocation, no locking.
 */
#include "server/validate.h"

#include <math.h>

int
roost_validate_config_check(const roost_validate_config *cfg, roost_errmsg *em)
{
    if (cfg == NULL)
        return roost_fail(em, ROOST_EINVAL, "validate: NULL configuration");
    if (cfg->n == 0)
        return roost_fail(em, ROOST_ECONFIG,
                          "validate: model size n must be positive");
    if (!isfinite(cfg->max_norm) || cfg->max_norm < 0)
        return roost_fail(em, ROOST_ECONFIG,
                          "validate: max_norm must be finite and >= 0 "
                          "(0 disables the bound), got %g",
                          cfg->max_norm);
    if (cfg->norm_policy != ROOST_NORM_REJECT &&
        cfg->norm_policy != ROOST_NORM_CLIP)
        return roost_fail(em, ROOST_ECONFIG, "validate: unknown norm policy %d",
                          (int)cfg->norm_policy);
    return ROOST_OK;
}

/* One lane of the sum of squares: v = x[i + j]; s<j> += v * v. */
#define ROOST_SQ_LANE(j)                                                       \
    do {                                                                       \
        double v_ = (double)x[i + (j)];                                        \
        s##j += v_ * v_;                                                       \
    } while (0)

/*
 * sum_of_squares - sum of x[i]^2 in double, over sixteen partial sums.
 * Named scalars, not an array, so the partial sums live in registers (an
 * array indexed in an inner loop is kept in memory by GCC at -O2, which
 * serialises the loop on store-to-load forwarding). Sixteen lanes give
 * four independent 4-wide chains under AVX2 and two 8-wide under AVX-512,
 * enough to hide the add latency. The order of every addition is fixed by
 * this code, and -std=c11 forbids contracting into FMAs, so each clone
 * returns the same bits.
 */
ROOST_VECTOR_CLONES static double
sum_of_squares(const float *x, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    double s8 = 0, s9 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0, s14 = 0, s15 = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        ROOST_SQ_LANE(0);
        ROOST_SQ_LANE(1);
        ROOST_SQ_LANE(2);
        ROOST_SQ_LANE(3);
        ROOST_SQ_LANE(4);
        ROOST_SQ_LANE(5);
        ROOST_SQ_LANE(6);
        ROOST_SQ_LANE(7);
        ROOST_SQ_LANE(8);
        ROOST_SQ_LANE(9);
        ROOST_SQ_LANE(10);
        ROOST_SQ_LANE(11);
        ROOST_SQ_LANE(12);
        ROOST_SQ_LANE(13);
        ROOST_SQ_LANE(14);
        ROOST_SQ_LANE(15);
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        s0 += v * v;
    }
    double a = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    double b = ((s8 + s9) + (s10 + s11)) + ((s12 + s13) + (s14 + s15));
    return a + b;
}

#undef ROOST_SQ_LANE

double
roost_validate_l2_norm(const float *x, size_t n, size_t *first_bad)
{
    double sum = sum_of_squares(x, n);
    if (isfinite(sum))
        return sqrt(sum);
    if (first_bad != NULL) {
        for (size_t k = 0; k < n; k++) {
            if (!isfinite(x[k])) {
                *first_bad = k;
                break;
            }
        }
    }
    return HUGE_VAL;
}

int
roost_validate_update(const roost_validate_config *cfg, float *delta,
                      size_t len, uint64_t reported_examples,
                      roost_validate_result *res, roost_errmsg *em)
{
    if (res == NULL || cfg == NULL)
        return roost_fail(em, ROOST_EINVAL, "validate: NULL argument");
    res->norm = 0;
    res->clipped = false;
    res->scale = 1.0;
    res->reported_examples = reported_examples;
    res->examples = reported_examples;
    res->capped = false;
    res->bad_index = 0;
    int rc = roost_validate_config_check(cfg, em);
    if (rc != ROOST_OK)
        return rc;
    if (delta == NULL && len > 0)
        return roost_fail(em, ROOST_EINVAL, "validate: NULL delta");
    if (len != cfg->n)
        return roost_fail(em, ROOST_ESHAPE,
                          "update has %zu coordinates, the model has %zu", len,
                          cfg->n);

    size_t bad = 0;
    double norm = roost_validate_l2_norm(delta, len, &bad);
    res->norm = norm;
    if (!isfinite(norm)) {
        res->bad_index = bad;
        return roost_fail(em, ROOST_ENONFINITE, "update coordinate %zu is %s",
                          bad, isnan(delta[bad]) ? "NaN" : "infinite");
    }

    if (cfg->max_norm > 0 && norm > cfg->max_norm) {
        if (cfg->norm_policy == ROOST_NORM_REJECT)
            return roost_fail(em, ROOST_ENORM,
                              "update L2 norm %.9g exceeds the bound %.9g",
                              norm, cfg->max_norm);
        /* Scale in double and round each coordinate once. Rounding moves
         * each coordinate by at most a relative 2^-24, so the clipped norm
         * could exceed max_norm by that relative amount; the factor is
         * shrunk by 2^-23 so the clipped update never exceeds the bound,
         * which matters when the bound is a DP sensitivity. */
        double scale = cfg->max_norm / norm;
        scale *= 1.0 - 0x1p-23;
        for (size_t i = 0; i < len; i++)
            delta[i] = (float)((double)delta[i] * scale);
        res->clipped = true;
        res->scale = scale;
    }

    if (cfg->max_examples > 0 && reported_examples > cfg->max_examples) {
        res->examples = cfg->max_examples;
        res->capped = true;
    }
    return ROOST_OK;
}
