/*
 * adaclip.c - quantile-tracking adaptive clipping (Andrew et al. 2021); see
 * adaclip.h for the update rule and its privacy accounting.
 *
 * Invariant: st->clip stays positive and finite (the geometric step is
 * bounded because the noised fraction is clamped to [0, 1]). The only
 * randomness is the count noise, drawn by the secure sampler of
 * dp/noise.h. No allocation, no locking.
 */
#include "dp/adaclip.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>

static bool
positive_finite(double v)
{
    return v > 0.0 && isfinite(v);
}

int
roost_adaclip_init(roost_adaclip *st, double initial_clip,
                   double target_quantile, double learning_rate,
                   double count_sigma, double expected_reports,
                   roost_errmsg *em)
{
    if (st == NULL)
        return roost_fail(em, ROOST_EINVAL, "adaclip: state is NULL");
    if (!positive_finite(initial_clip))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: initial clip %g must be positive and "
                          "finite",
                          initial_clip);
    if (!(target_quantile >= 0.0 && target_quantile <= 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: target quantile %g is outside [0, 1]",
                          target_quantile);
    if (!positive_finite(learning_rate))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: learning rate %g must be positive and "
                          "finite",
                          learning_rate);
    if (!positive_finite(count_sigma))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: count noise stddev %g must be positive "
                          "and finite",
                          count_sigma);
    if (!positive_finite(expected_reports))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: expected reports %g must be positive and "
                          "finite",
                          expected_reports);
    st->clip = initial_clip;
    st->target_quantile = target_quantile;
    st->learning_rate = learning_rate;
    st->count_sigma = count_sigma;
    st->expected_reports = expected_reports;
    return ROOST_OK;
}

int
roost_adaclip_update(roost_adaclip *st, roost_noise *noise, uint64_t unclipped,
                     uint64_t reports, double *noised_fraction,
                     roost_errmsg *em)
{
    if (st == NULL || noise == NULL)
        return roost_fail(em, ROOST_EINVAL, "adaclip: NULL argument");
    if (unclipped > reports)
        return roost_fail(
            em, ROOST_EINVAL, "adaclip: %llu unclipped of %llu reports",
            (unsigned long long)unclipped, (unsigned long long)reports);
    /* The centred count must be exact in a float (the sampler's type). */
    if (reports > (1u << 24))
        return roost_fail(em, ROOST_EINVAL, "adaclip: %llu reports exceed 2^24",
                          (unsigned long long)reports);
    double want = st->count_sigma;
    if (!(fabs(roost_noise_stddev(noise) - want) <= 1e-12 * want))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: the noise sampler has stddev %g, not the "
                          "count noise %g",
                          roost_noise_stddev(noise), want);
    /* The accounting gives the centred count a sensitivity of exactly 1/2.
     * The sampler rounds its input to its grid, which leaves half-integers
     * unchanged only when the grid is at most 1/2; on a coarser grid (a
     * count noise of 2^20 or more at the default grid_bits) 1/2 rounds to
     * 0 and 1 to 1, doubling the sensitivity behind the accountant's
     * back. */
    if (!(roost_noise_grid(noise) <= 0.5))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: the count noise %g is too large for the "
                          "sampler's grid %g (the centred count needs a grid "
                          "of at most 1/2: a finer grid_bits or a smaller "
                          "count noise)",
                          want, roost_noise_grid(noise));
    float centred = (float)((double)unclipped - 0.5 * (double)reports);
    int rc = roost_noise_add(noise, &centred, 1, em);
    if (rc != ROOST_OK)
        return rc;
    double frac = (double)centred / st->expected_reports + 0.5;
    frac = fmin(1.0, fmax(0.0, frac));
    double next =
        st->clip * exp(-st->learning_rate * (frac - st->target_quantile));
    /* Bounded steps cannot leave the double range in any realistic run;
     * saturate rather than store 0 or Inf if one ever did. */
    if (!(next >= DBL_MIN))
        next = DBL_MIN;
    if (!(next <= DBL_MAX))
        next = DBL_MAX;
    st->clip = next;
    if (noised_fraction != NULL)
        *noised_fraction = frac;
    return ROOST_OK;
}

int
roost_adaclip_effective_sigma(double update_sigma, double count_sigma,
                              double *total_sigma, roost_errmsg *em)
{
    if (!positive_finite(update_sigma) || !positive_finite(count_sigma) ||
        total_sigma == NULL)
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: noise multipliers must be positive and "
                          "finite (update %g, count %g)",
                          update_sigma, count_sigma);
    double b = 2.0 * count_sigma;
    *total_sigma =
        1.0 / sqrt(1.0 / (update_sigma * update_sigma) + 1.0 / (b * b));
    return ROOST_OK;
}

int
roost_adaclip_update_sigma(double total_sigma, double count_sigma,
                           double *update_sigma, roost_errmsg *em)
{
    if (!positive_finite(total_sigma) || !positive_finite(count_sigma) ||
        update_sigma == NULL)
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: noise multipliers must be positive and "
                          "finite (total %g, count %g)",
                          total_sigma, count_sigma);
    double b = 2.0 * count_sigma;
    double rest = 1.0 / (total_sigma * total_sigma) - 1.0 / (b * b);
    if (!(b > total_sigma) || !(rest > 0.0))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: count noise %g is too small for a total "
                          "noise multiplier %g (need 2 * count noise > total)",
                          count_sigma, total_sigma);
    *update_sigma = 1.0 / sqrt(rest);
    return ROOST_OK;
}

int
roost_adaclip_event(const roost_adaclip *st, double q, double update_sigma,
                    uint64_t rounds, roost_dp_event *out, roost_errmsg *em)
{
    if (st == NULL || out == NULL)
        return roost_fail(em, ROOST_EINVAL, "adaclip: NULL argument");
    if (!(q >= 0.0 && q <= 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "adaclip: participation rate q = %g is outside "
                          "[0, 1]",
                          q);
    double z;
    int rc =
        roost_adaclip_effective_sigma(update_sigma, st->count_sigma, &z, em);
    if (rc != ROOST_OK)
        return rc;
    out->q = q;
    out->sigma = z;
    out->steps = rounds;
    return ROOST_OK;
}
