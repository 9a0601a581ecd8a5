/*
 * accountant.h - Renyi differential privacy (RDP) of the Poisson-subsampled
 * Gaussian mechanism, composition over heterogeneous events, conversion to
 * (epsilon, delta), and noise calibration.
 *
 * The analysis is that of Mironov, Talwar and Zhang, "Renyi Differential
 * Privacy of the Sampled Gaussian Mechanism" (2019): integer orders by the
 * binomial expansion, fractional orders by the two-series method. RDP is
 * converted with Balle et al. 2020, Theorem 21, the conversion Opacus's
 * get_privacy_spent() uses:
 *
 *   eps(alpha) = rdp(alpha) - (log(delta) + log(alpha)) / (alpha - 1)
 *                + log((alpha - 1) / alpha),
 *
 * minimised over the order grid. Everything is computed in log space.
 *
 * All functions are pure (no state, no allocation) and any thread may call
 * them. Errors: ROOST_EINVAL for inputs outside their domain (the message in
 * em, which may be NULL, names the argument), ROOST_EOVERFLOW when no order
 * yields a finite bound (sigma so small that the privacy loss exceeds the
 * range of a double).
 */
#ifndef ROOST_DP_ACCOUNTANT_H
#define ROOST_DP_ACCOUNTANT_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

/* Number of orders in the default grid: 1.1, 1.2, ..., 10.9 (99 orders,
 * computed as 1 + x/10 like Opacus), 11, 12, ..., 64 (54 orders), and 128,
 * 256, 512, 1024 (4 orders). It contains Opacus's default grid
 * ([1 + x/10 for x in 1..99] + range(12, 64)). */
#define ROOST_RDP_DEFAULT_ORDERS 157

/* Largest grid the epsilon functions accept (they keep per-order sums on the
 * stack) and the largest order accepted (bounds the cost of the integer
 * expansion, which has alpha + 1 terms). */
#define ROOST_RDP_MAX_ORDERS 512
#define ROOST_RDP_MAX_ORDER 10000.0

/* An RDP value of DBL_MAX means "larger than a double can hold": no usable
 * guarantee at that order. Sums saturate there instead of reaching Inf. */

/* One privacy event: steps compositions of the Gaussian mechanism with
 * noise multiplier sigma (noise stddev / L2 sensitivity) on a Poisson
 * subsample of rate q. q = 0 or steps = 0 costs nothing; q = 1 is the plain
 * Gaussian mechanism, accounted exactly (rdp = alpha / (2 sigma^2)). */
typedef struct roost_dp_event {
    double q;       /* 0 <= q <= 1 */
    double sigma;   /* > 0, finite */
    uint64_t steps; /* any */
} roost_dp_event;

/* roost_rdp_default_orders - write the default grid (ascending) into out,
 * which must hold ROOST_RDP_DEFAULT_ORDERS doubles; returns that count, or 0
 * (writing nothing) when cap is too small. */
size_t roost_rdp_default_orders(double *out, size_t cap);

/*
 * roost_rdp_compute - rdp_out[k] = RDP at orders[k] of one event (q, sigma)
 * composed steps times. orders: n values, each finite, > 1 and <=
 * ROOST_RDP_MAX_ORDER. Values are >= 0 and finite (DBL_MAX saturated). A
 * fractional order whose two-series sum loses its precision to cancellation
 * (or does not converge within its term cap) is given the RDP of the next
 * integer order instead, a valid upper bound because RDP is non-decreasing
 * in the order.
 */
int roost_rdp_compute(double q, double sigma, uint64_t steps,
                      const double *orders, size_t n, double *rdp_out,
                      roost_errmsg *em);

/*
 * roost_rdp_to_epsilon - the (epsilon, delta) bound of an RDP curve, with
 * the order that attains it. 0 < delta < 1, n >= 1 (no orders is
 * ROOST_EINVAL). When every rdp[k] is 0 (nothing spent) *eps is 0 and
 * *best_order is 0. epsilon is clamped at >= 0.
 * best_order may be NULL.
 */
int roost_rdp_to_epsilon(const double *orders, const double *rdp, size_t n,
                         double delta, double *eps, double *best_order,
                         roost_errmsg *em);

/*
 * roost_dp_epsilon - epsilon (at delta) of the composition of n events, on
 * the default order grid; *best_order receives the minimising order (may be
 * NULL). n may be 0 (epsilon 0). Events with the same (q, sigma) are merged
 * (RDP is linear in steps), so a ledger of many identical rounds costs one
 * RDP evaluation.
 */
int roost_dp_epsilon(const roost_dp_event *events, size_t n, double delta,
                     double *eps, double *best_order, roost_errmsg *em);

/*
 * roost_dp_epsilon_sampled - epsilon (at delta) of events whose noise came
 * from a discrete sampler at a bounded distance from the ideal Gaussian
 * (dp/noise.h, roost_noise_closeness): n_mu and n_beta are the sums over
 * every noise value drawn of the per-draw terms mu and beta (sum of
 * draws * mu, sum of draws * beta; 0 and 0 give roost_dp_epsilon). The
 * implemented mechanism is (epsilon, delta)-DP when the ideal one is
 * (e0, d0)-DP with epsilon = e0 + 2 n_mu and
 * e^(n_mu) d0 + e^epsilon n_beta <= delta (docs/privacy.md, "The
 * sampler's distance"). The result is the smallest epsilon found for
 * which the accountant's e0 at d0 = (delta - e^epsilon n_beta) e^(-n_mu)
 * satisfies that, to within a relative 1e-9: a value that is a guarantee.
 * eps_cap is the largest epsilon the caller would accept (a budget); a
 * result above it is only a lower bound of every valid epsilon, which is
 * all a refusal needs. *eps is HUGE_VAL when the tail term leaves no
 * delta for the ideal mechanism (e^epsilon n_beta reaches delta before a
 * valid epsilon is found). ROOST_EINVAL for negative or non-finite n_mu,
 * n_beta or eps_cap.
 */
int roost_dp_epsilon_sampled(const roost_dp_event *events, size_t n,
                             double n_mu, double n_beta, double eps_cap,
                             double delta, double *eps, double *best_order,
                             roost_errmsg *em);

/* roost_dp_epsilon_orders - roost_dp_epsilon on a caller's order grid
 * (norders <= ROOST_RDP_MAX_ORDERS). */
int roost_dp_epsilon_orders(const roost_dp_event *events, size_t n,
                            const double *orders, size_t norders, double delta,
                            double *eps, double *best_order, roost_errmsg *em);

/* Relative tolerance of calibration: the returned sigma is within this
 * factor of the smallest sigma meeting the target. */
#define ROOST_DP_CALIBRATE_RTOL 1e-6

/*
 * roost_dp_calibrate_sigma - the smallest noise multiplier (to within
 * ROOST_DP_CALIBRATE_RTOL, relative) such that steps compositions at rate q
 * stay within (target_eps, delta), on the default grid. Errs on the private
 * side: the epsilon of the returned sigma is <= target_eps. Epsilon is
 * decreasing in sigma, so this is a bisection on log(sigma). Fails with
 * ROOST_EINVAL when q = 0 or steps = 0 (any sigma meets any target) or when
 * target_eps is below what any sigma up to 1e6 reaches (as sigma grows,
 * epsilon tends to a positive floor set by delta and the largest order).
 */
int roost_dp_calibrate_sigma(double q, uint64_t steps, double delta,
                             double target_eps, double *sigma,
                             roost_errmsg *em);

#endif
