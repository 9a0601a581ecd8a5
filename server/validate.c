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
 * The loop keeps eight independent partial sums so the compiler can keep
 * several floating-point additions in flight (and vectorise them) without
 * -ffast-math: the summation order is fixed by the code, not by the
 * optimiser, so results are reproducible across optimisation levels.
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

double
roost_validate_l2_norm(const float *x, size_t n, size_t *first_bad)
{
    /* Named scalars, not an array, so the partial sums live in registers
     * (an array indexed in an inner loop is kept in memory by GCC at -O2,
     * which serialises the loop on store-to-load forwarding). */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        double v0 = (double)x[i], v1 = (double)x[i + 1];
        double v2 = (double)x[i + 2], v3 = (double)x[i + 3];
        double v4 = (double)x[i + 4], v5 = (double)x[i + 5];
        double v6 = (double)x[i + 6], v7 = (double)x[i + 7];
        s0 += v0 * v0;
        s1 += v1 * v1;
        s2 += v2 * v2;
        s3 += v3 * v3;
        s4 += v4 * v4;
        s5 += v5 * v5;
        s6 += v6 * v6;
        s7 += v7 * v7;
    }
    for (; i < n; i++) {
        double v = (double)x[i];
        s0 += v * v;
    }
    double sum = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
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
