/*
 * adaclip.h - adaptive clipping by quantile tracking (Andrew, Thakkar,
 * McMahan, Ramaswamy, "Differentially Private Learning with Adaptive
 * Clipping", NeurIPS 2021), for update-level clipping in central DP.
 *
 * Each round every participant i reports one bit b_i = [||update_i|| <= C]
 * along with its update clipped to C. The aggregator privatises the count
 * of unclipped updates and moves C geometrically toward the target
 * quantile gamma of the update norms:
 *
 *   b~ = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2
 *   C <- C * exp(-eta * (b~ - gamma))
 *
 * m is the expected number of participants (public). Centring the bits at
 * 1/2 halves the count's sensitivity to 1/2 when a participant is added or
 * removed. b~ is clamped to [0, 1] before the step (post-processing; it
 * only bounds a step that noise could make large with few participants).
 *
 * Privacy (the paper's Theorem 1 argument): releasing the sum of updates
 * clipped to C with noise multiplier z_u (noise stddev z_u C) together with
 * the count above is, for the accountant, one Gaussian mechanism with noise
 * multiplier
 *
 *   z = (z_u^-2 + (2 sigma_b)^-2)^(-1/2).
 *
 * So to run at a planned noise multiplier z, add noise z_u =
 * roost_adaclip_update_sigma(z, sigma_b) to the summed updates; each round
 * is then the event {q, z, 1} for the accountant (roost_adaclip_event).
 *
 * The state is a plain struct owned by the caller; not thread-safe.
 */
#ifndef ROOST_DP_ADACLIP_H
#define ROOST_DP_ADACLIP_H

#include <roost/roost.h>

#include "common/error.h"
#include "dp/accountant.h"
#include "dp/noise.h"

#include <stdint.h>

typedef struct roost_adaclip {
    double clip;             /* current clip norm C, > 0 */
    double target_quantile;  /* gamma in [0, 1], e.g. 0.5 */
    double learning_rate;    /* eta > 0, e.g. 0.2 */
    double count_sigma;      /* sigma_b > 0, e.g. m / 20 */
    double expected_reports; /* m > 0 */
} roost_adaclip;

/* roost_adaclip_init - fill st after checking every value (ROOST_EINVAL
 * with a message naming the bad one). */
int roost_adaclip_init(roost_adaclip *st, double initial_clip,
                       double target_quantile, double learning_rate,
                       double count_sigma, double expected_reports,
                       roost_errmsg *em);

/*
 * roost_adaclip_update - one round: privatise the count of unclipped
 * updates among `reports` (unclipped <= reports) with noise from `noise`,
 * which must be a sampler built with sigma = st->count_sigma and clip = 1
 * on a grid of at most 1/2 (count_sigma < 2^grid_bits; ROOST_EINVAL
 * otherwise: a coarser grid would round the half-integer centred count and
 * double its sensitivity), then move st->clip. *noised_fraction (may be
 * NULL) receives b~ after clamping. On error st is unchanged.
 */
int roost_adaclip_update(roost_adaclip *st, roost_noise *noise,
                         uint64_t unclipped, uint64_t reports,
                         double *noised_fraction, roost_errmsg *em);

/* roost_adaclip_effective_sigma - z = (z_u^-2 + (2 sigma_b)^-2)^-1/2. */
int roost_adaclip_effective_sigma(double update_sigma, double count_sigma,
                                  double *total_sigma, roost_errmsg *em);

/* roost_adaclip_update_sigma - the z_u that gives total noise multiplier z:
 * (z^-2 - (2 sigma_b)^-2)^-1/2. ROOST_EINVAL unless 2 sigma_b > z (the
 * count alone would already spend more than the plan). */
int roost_adaclip_update_sigma(double total_sigma, double count_sigma,
                               double *update_sigma, roost_errmsg *em);

/* roost_adaclip_event - the accountant event for `rounds` rounds at
 * participation rate q with update noise multiplier update_sigma under
 * st's count noise. */
int roost_adaclip_event(const roost_adaclip *st, double q, double update_sigma,
                        uint64_t rounds, roost_dp_event *out, roost_errmsg *em);

#endif
