/*
 * accountant.c - RDP of the Poisson-subsampled Gaussian mechanism
 * (Mironov, Talwar, Zhang 2019), its composition, conversion to (epsilon,
 * delta) (Balle et al. 2020, Theorem 21) and sigma calibration.
 *
 * For a Poisson sample of rate q and noise multiplier sigma the RDP at
 * order alpha is log(A_alpha) / (alpha - 1), where A_alpha is the alpha-th
 * moment of the privacy loss. For integer alpha,
 *
 *   A = sum_{i=0}^{alpha} C(alpha, i) (1-q)^(alpha-i) q^i
 *                         exp((i^2 - i) / (2 sigma^2)),
 *
 * a finite sum of positive terms. For fractional alpha the paper splits the
 * integral at z0 = sigma^2 log(1/q - 1) + 1/2 into two infinite series
 * whose binomial coefficients change sign past alpha; they are summed here
 * with separate positive and negative accumulators so no intermediate goes
 * negative, and the stopping rule is Opacus's (both terms below e^-30, which
 * is relative since A >= 1), applied only past alpha where the series
 * alternate, and only after a positive term. Past alpha the magnitude of
 * each series' terms shrinks (the ratio of consecutive terms is below
 * |alpha - i| / (i + 1), by the bound -d/dx log erfc(x) > 2x), so a partial
 * sum that ends on a positive term is above the full sum, by less than the
 * next term: cut after a negative term, as Opacus does, A would come out
 * short by up to e^-30 and the RDP would not be an upper bound.
 * If cancellation eats the precision (positive and negative
 * parts agree to more than ~1e-9 of their size) the next integer order's
 * value is used instead: RDP is non-decreasing in alpha, so that errs on
 * the private side.
 *
 * Invariants: every RDP value leaving this file is finite and >= 0; a value
 * too large for a double is DBL_MAX ("no guarantee at this order"), and
 * sums saturate at DBL_MAX. No state, no allocation, no locking.
 */
#include "dp/accountant.h"

#include "dp/logmath.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* 0.5 * log(pi), for the asymptotic expansion of erfc. */
#define LOG_SQRT_PI 0.57236494292470008707
#define LOG_HALF (-0.69314718055994530942)
/* The fractional series stops once both terms drop below e^-30 (Opacus's
 * rule); this caps the number of terms for pathological inputs. */
#define FRAC_STOP_LOG (-30.0)
#define FRAC_MAX_TERMS 2000000L
/* Cancellation limit: log(positive part) - log(result) beyond this means
 * fewer than ~6 significant digits survive. */
#define FRAC_CANCEL_LOG 14.0

/* log(erfc(x)) without underflow: erfc itself down to x = 25 (erfc(25) is
 * about 8e-274, still a normal double and accurate in glibc), the
 * asymptotic series beyond (relative error below 1e-10 there). */
static double
log_erfc(double x)
{
    if (x < 25.0)
        return log(erfc(x));
    double x2 = x * x;
    double inv = 1.0 / x2;
    double series =
        1.0 - 0.5 * inv + 0.75 * inv * inv - 1.875 * inv * inv * inv;
    return -x2 - log(x) - LOG_SQRT_PI + log(series);
}

/* Saturating conversion of a log-space result to an RDP value. */
static double
saturate(double v)
{
    if (isnan(v) || v >= DBL_MAX)
        return DBL_MAX;
    return v < 0.0 ? 0.0 : v;
}

/* log A for integer alpha >= 2, by the binomial expansion. */
static double
log_a_int(double q, double sigma, double alpha)
{
    double log_q = log(q);
    double log_1mq = log1p(-q);
    double two_s2 = 2.0 * sigma * sigma;
    double log_a = -HUGE_VAL;
    /* log C(alpha, i) by the ratio (alpha - i) / (i + 1) rather than
     * roost_logbinom: lgamma writes the global signgam, and these functions
     * promise to be callable from any thread. The rounding error grows like
     * i * 1e-16, negligible at the largest order (1e4). */
    double log_coef = 0.0;
    for (double i = 0.0; i <= alpha; i += 1.0) {
        double term =
            log_coef + i * log_q + (alpha - i) * log_1mq + (i * i - i) / two_s2;
        log_a = roost_logaddexp(log_a, term);
        log_coef += log(alpha - i) - log(i + 1.0);
    }
    return log_a;
}

/* log A for fractional alpha by the two series; false when the result
 * cannot be trusted (non-finite, cancellation, no convergence). */
static bool
log_a_frac(double q, double sigma, double alpha, double *out)
{
    double log_q = log(q);
    double log_1mq = log1p(-q);
    double s2 = sigma * sigma;
    double two_s2 = 2.0 * s2;
    double sqrt2_sigma = sqrt(2.0) * sigma;
    double z0 = s2 * (log_1mq - log_q) + 0.5;
    double pos0 = -HUGE_VAL, neg0 = -HUGE_VAL;
    double pos1 = -HUGE_VAL, neg1 = -HUGE_VAL;
    double floor_alpha = floor(alpha);
    /* log|C(alpha, i)|, updated by the ratio (alpha - i) / (i + 1): two logs
     * per term instead of three lgamma calls. */
    double log_coef = 0.0;
    bool converged = false;
    for (long i = 0; i < FRAC_MAX_TERMS; i++) {
        double di = (double)i;
        double j = alpha - di;
        /* C(alpha, i) < 0 exactly when an odd number of the factors
         * (alpha - k), k < i, are negative. */
        bool negative =
            di > floor_alpha + 1.0 && fmod(di - floor_alpha - 1.0, 2.0) != 0.0;
        double log_t0 = log_coef + di * log_q + j * log_1mq;
        double log_t1 = log_coef + j * log_q + di * log_1mq;
        double log_e0 = LOG_HALF + log_erfc((di - z0) / sqrt2_sigma);
        double log_e1 = LOG_HALF + log_erfc((z0 - j) / sqrt2_sigma);
        double log_s0 = log_t0 + (di * di - di) / two_s2 + log_e0;
        double log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;
        if (isnan(log_s0) || isnan(log_s1) || log_s0 == HUGE_VAL ||
            log_s1 == HUGE_VAL)
            return false;
        if (negative) {
            neg0 = roost_logaddexp(neg0, log_s0);
            neg1 = roost_logaddexp(neg1, log_s1);
        } else {
            pos0 = roost_logaddexp(pos0, log_s0);
            pos1 = roost_logaddexp(pos1, log_s1);
        }
        /* Stop on a positive term only, so the partial sums bound the
         * alternating tails from above (see the file comment). */
        if (di > alpha && !negative && fmax(log_s0, log_s1) < FRAC_STOP_LOG) {
            converged = true;
            break;
        }
        log_coef += log(fabs(alpha - di)) - log(di + 1.0);
    }
    if (!converged || !(pos0 > neg0) || !(pos1 > neg1))
        return false;
    double log_a0 = roost_logsubexp(pos0, neg0);
    double log_a1 = roost_logsubexp(pos1, neg1);
    if (pos0 - log_a0 > FRAC_CANCEL_LOG || pos1 - log_a1 > FRAC_CANCEL_LOG)
        return false;
    double log_a = roost_logaddexp(log_a0, log_a1);
    if (!isfinite(log_a))
        return false;
    *out = log_a;
    return true;
}

/* RDP of one step at one order; q in (0, 1), sigma > 0. */
static double
rdp_one_step(double q, double sigma, double alpha)
{
    if (q == 1.0)
        return saturate(alpha / (2.0 * sigma * sigma));
    double log_a;
    if (alpha != floor(alpha)) {
        if (log_a_frac(q, sigma, alpha, &log_a))
            return saturate(log_a / (alpha - 1.0));
        alpha = ceil(alpha); /* upper bound, see the file comment */
    }
    log_a = log_a_int(q, sigma, alpha);
    return saturate(log_a / (alpha - 1.0));
}

static int
check_orders(const double *orders, size_t n, roost_errmsg *em)
{
    if (orders == NULL && n > 0)
        return roost_fail(em, ROOST_EINVAL, "orders is NULL");
    for (size_t k = 0; k < n; k++) {
        if (!(orders[k] > 1.0 && orders[k] <= ROOST_RDP_MAX_ORDER))
            return roost_fail(em, ROOST_EINVAL,
                              "order %zu is %g; orders must be in (1, %g]", k,
                              orders[k], ROOST_RDP_MAX_ORDER);
    }
    return ROOST_OK;
}

static int
check_event(double q, double sigma, roost_errmsg *em)
{
    if (!(q >= 0.0 && q <= 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "sampling rate q = %g is outside [0, 1]", q);
    if (!(sigma > 0.0) || !isfinite(sigma))
        return roost_fail(em, ROOST_EINVAL,
                          "noise multiplier sigma = %g must be positive and "
                          "finite",
                          sigma);
    return ROOST_OK;
}

static int
check_delta(double delta, roost_errmsg *em)
{
    if (!(delta > 0.0 && delta < 1.0))
        return roost_fail(em, ROOST_EINVAL, "delta = %g is outside (0, 1)",
                          delta);
    return ROOST_OK;
}

size_t
roost_rdp_default_orders(double *out, size_t cap)
{
    static const double large[] = {128.0, 256.0, 512.0, 1024.0};
    if (out == NULL || cap < ROOST_RDP_DEFAULT_ORDERS)
        return 0;
    size_t n = 0;
    for (int x = 1; x <= 99; x++)
        out[n++] = 1.0 + (double)x / 10.0;
    for (int a = 11; a <= 64; a++)
        out[n++] = (double)a;
    for (size_t k = 0; k < sizeof(large) / sizeof(large[0]); k++)
        out[n++] = large[k];
    return n;
}

/* Per-step RDP, without the steps multiplication; inputs validated. */
static void
rdp_per_step(double q, double sigma, const double *orders, size_t n,
             double *out)
{
    for (size_t k = 0; k < n; k++)
        out[k] = q == 0.0 ? 0.0 : rdp_one_step(q, sigma, orders[k]);
}

static double
saturating_mul_add(double acc, double per_step, double steps)
{
    double v = acc + per_step * steps;
    return v >= DBL_MAX || isnan(v) ? DBL_MAX : v;
}

int
roost_rdp_compute(double q, double sigma, uint64_t steps, const double *orders,
                  size_t n, double *rdp_out, roost_errmsg *em)
{
    int rc = check_event(q, sigma, em);
    if (rc == ROOST_OK)
        rc = check_orders(orders, n, em);
    if (rc != ROOST_OK)
        return rc;
    if (rdp_out == NULL && n > 0)
        return roost_fail(em, ROOST_EINVAL, "rdp_out is NULL");
    if (steps == 0) {
        for (size_t k = 0; k < n; k++)
            rdp_out[k] = 0.0;
        return ROOST_OK;
    }
    rdp_per_step(q, sigma, orders, n, rdp_out);
    for (size_t k = 0; k < n; k++)
        rdp_out[k] = saturating_mul_add(0.0, rdp_out[k], (double)steps);
    return ROOST_OK;
}

int
roost_rdp_to_epsilon(const double *orders, const double *rdp, size_t n,
                     double delta, double *eps, double *best_order,
                     roost_errmsg *em)
{
    int rc = check_delta(delta, em);
    if (rc == ROOST_OK)
        rc = check_orders(orders, n, em);
    if (rc != ROOST_OK)
        return rc;
    if (eps == NULL || rdp == NULL)
        return roost_fail(em, ROOST_EINVAL, "eps or rdp is NULL");
    /* No orders is no curve, not "nothing spent": an empty grid must not
     * answer epsilon 0. */
    if (n == 0)
        return roost_fail(em, ROOST_EINVAL, "no RDP orders");
    bool all_zero = true;
    for (size_t k = 0; k < n; k++) {
        if (!(rdp[k] >= 0.0) || isnan(rdp[k]))
            return roost_fail(em, ROOST_EINVAL, "rdp[%zu] = %g is not >= 0", k,
                              rdp[k]);
        if (rdp[k] != 0.0)
            all_zero = false;
    }
    if (all_zero) {
        *eps = 0.0;
        if (best_order != NULL)
            *best_order = 0.0;
        return ROOST_OK;
    }
    double log_delta = log(delta);
    double best = HUGE_VAL;
    double best_alpha = 0.0;
    for (size_t k = 0; k < n; k++) {
        if (rdp[k] >= DBL_MAX)
            continue;
        double a = orders[k];
        double e = rdp[k] - (log_delta + log(a)) / (a - 1.0) + log1p(-1.0 / a);
        if (e < best) {
            best = e;
            best_alpha = a;
        }
    }
    if (!(best < DBL_MAX))
        return roost_fail(em, ROOST_EOVERFLOW,
                          "the privacy loss exceeds the range of a double at "
                          "every order (sigma too small): no finite epsilon");
    *eps = best < 0.0 ? 0.0 : best;
    if (best_order != NULL)
        *best_order = best_alpha;
    return ROOST_OK;
}

/* Distinct (q, sigma) pairs merged before the RDP is evaluated. */
#define MERGE_SLOTS 32

struct merged {
    double q, sigma, steps;
};

static void
flush_merged(const struct merged *m, size_t count, const double *orders,
             size_t norders, double *acc, double *scratch)
{
    for (size_t s = 0; s < count; s++) {
        rdp_per_step(m[s].q, m[s].sigma, orders, norders, scratch);
        for (size_t k = 0; k < norders; k++)
            acc[k] = saturating_mul_add(acc[k], scratch[k], m[s].steps);
    }
}

/* acc[k] = the RDP at orders[k] of the composition of the n events
 * (validated here); orders already checked. */
static int
events_rdp(const roost_dp_event *events, size_t n, const double *orders,
           size_t norders, double *acc, roost_errmsg *em)
{
    double scratch[ROOST_RDP_MAX_ORDERS];
    struct merged slots[MERGE_SLOTS];
    size_t used = 0;
    int rc;
    if (events == NULL && n > 0)
        return roost_fail(em, ROOST_EINVAL, "events is NULL");
    if (norders == 0 || norders > ROOST_RDP_MAX_ORDERS)
        return roost_fail(em, ROOST_EINVAL,
                          "%zu orders; between 1 and %d are accepted", norders,
                          ROOST_RDP_MAX_ORDERS);
    for (size_t i = 0; i < n; i++) {
        roost_errmsg why;
        rc = check_event(events[i].q, events[i].sigma, &why);
        if (rc != ROOST_OK)
            return roost_fail(em, rc, "event %zu: %s", i, why.text);
    }
    for (size_t k = 0; k < norders; k++)
        acc[k] = 0.0;
    for (size_t i = 0; i < n; i++) {
        const roost_dp_event *e = &events[i];
        if (e->q == 0.0 || e->steps == 0)
            continue;
        size_t s = 0;
        while (s < used && !(slots[s].q == e->q && slots[s].sigma == e->sigma))
            s++;
        if (s == used) {
            if (used == MERGE_SLOTS) {
                flush_merged(slots, used, orders, norders, acc, scratch);
                used = 0;
                s = 0;
            }
            slots[s].q = e->q;
            slots[s].sigma = e->sigma;
            slots[s].steps = 0.0;
            used++;
        }
        slots[s].steps += (double)e->steps;
    }
    flush_merged(slots, used, orders, norders, acc, scratch);
    return ROOST_OK;
}

int
roost_dp_epsilon_orders(const roost_dp_event *events, size_t n,
                        const double *orders, size_t norders, double delta,
                        double *eps, double *best_order, roost_errmsg *em)
{
    double acc[ROOST_RDP_MAX_ORDERS];
    int rc = check_delta(delta, em);
    if (rc == ROOST_OK)
        rc = check_orders(orders, norders, em);
    if (rc != ROOST_OK)
        return rc;
    if (eps == NULL)
        return roost_fail(em, ROOST_EINVAL, "eps is NULL");
    if ((rc = events_rdp(events, n, orders, norders, acc, em)) != ROOST_OK)
        return rc;
    return roost_rdp_to_epsilon(orders, acc, norders, delta, eps, best_order,
                                em);
}

int
roost_dp_epsilon(const roost_dp_event *events, size_t n, double delta,
                 double *eps, double *best_order, roost_errmsg *em)
{
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    size_t norders = roost_rdp_default_orders(orders, ROOST_RDP_DEFAULT_ORDERS);
    return roost_dp_epsilon_orders(events, n, orders, norders, delta, eps,
                                   best_order, em);
}

/* Rounds of the fixed-point search of roost_dp_epsilon_sampled before it
 * bisects instead; it settles in one or two unless the tail term is close
 * to taking all of delta, where the iteration crawls. */
#define SAMPLED_FAST_ROUNDS 16

/* The composed events' RDP curve, computed once per
 * roost_dp_epsilon_sampled: each epsilon it asks for is then only a
 * conversion at another delta. */
struct rdp_curve {
    double orders[ROOST_RDP_DEFAULT_ORDERS];
    double rdp[ROOST_RDP_DEFAULT_ORDERS];
    size_t n;
};

/* Whether c is a valid epsilon: the accountant's epsilon at
 * d0 = (delta - e^c n_beta) e^(-n_mu), plus 2 n_mu, is at most c; *f
 * receives that sum (HUGE_VAL when no delta is left). */
static int
sampled_certifies(const struct rdp_curve *cv, double n_mu, double n_beta,
                  double delta, double c, bool *ok, double *f,
                  double *best_order, roost_errmsg *em)
{
    double d0 = (delta - exp(c) * n_beta) * exp(-n_mu);
    *ok = false;
    *f = HUGE_VAL;
    if (!(d0 > 0.0))
        return ROOST_OK;
    int rc =
        roost_rdp_to_epsilon(cv->orders, cv->rdp, cv->n, d0, f, best_order, em);
    if (rc != ROOST_OK)
        return rc;
    *f += 2.0 * n_mu;
    *ok = *f <= c;
    return ROOST_OK;
}

int
roost_dp_epsilon_sampled(const roost_dp_event *events, size_t n, double n_mu,
                         double n_beta, double eps_cap, double delta,
                         double *eps, double *best_order, roost_errmsg *em)
{
    if (!(n_mu >= 0.0) || !isfinite(n_mu) || !(n_beta >= 0.0) ||
        !isfinite(n_beta))
        return roost_fail(em, ROOST_EINVAL,
                          "sampler terms n*mu = %g, n*beta = %g must be "
                          "finite and >= 0",
                          n_mu, n_beta);
    if (!(eps_cap >= 0.0) || !isfinite(eps_cap))
        return roost_fail(em, ROOST_EINVAL,
                          "epsilon cap %g must be finite and >= 0", eps_cap);
    int rc = check_delta(delta, em);
    if (rc != ROOST_OK)
        return rc;
    if (eps == NULL)
        return roost_fail(em, ROOST_EINVAL, "eps is NULL");
    if (n_mu == 0.0 && n_beta == 0.0)
        return roost_dp_epsilon(events, n, delta, eps, best_order, em);
    /* f(c) = eps_ideal(d0(c)) + 2 n_mu with d0(c) = (delta - e^c n_beta)
     * e^(-n_mu) is increasing in c, and any c with f(c) <= c is a valid
     * epsilon (the charged delta at the accountant's epsilon f(c) is then
     * at most e^(n_mu) d0(c) + e^c n_beta = delta). Start below every such
     * c, at f(-inf), and iterate upwards; a candidate a hair above the
     * current value is certified as soon as f does not exceed it. Each
     * iterate stays below the smallest valid epsilon. */
    double c = 0.0, d_start = delta * exp(-n_mu);
    if (!(d_start > 0.0)) {
        *eps = HUGE_VAL; /* n_mu so large that no delta is left */
        if (best_order != NULL)
            *best_order = 0.0;
        return ROOST_OK;
    }
    struct rdp_curve cv;
    cv.n = roost_rdp_default_orders(cv.orders, ROOST_RDP_DEFAULT_ORDERS);
    if ((rc = events_rdp(events, n, cv.orders, cv.n, cv.rdp, em)) != ROOST_OK ||
        (rc = roost_rdp_to_epsilon(cv.orders, cv.rdp, cv.n, d_start, &c,
                                   best_order, em)) != ROOST_OK)
        return rc;
    c += 2.0 * n_mu;
    if (n_beta == 0.0) {
        *eps = c; /* d0 does not depend on c */
        return ROOST_OK;
    }
    bool ok = false;
    double f = 0.0;
    for (int round = 0; round < SAMPLED_FAST_ROUNDS; round++) {
        if (c > eps_cap) {
            *eps = c; /* every valid epsilon is above the cap */
            return ROOST_OK;
        }
        double cand = c + 1e-9 * (1.0 + c);
        rc = sampled_certifies(&cv, n_mu, n_beta, delta, cand, &ok, &f,
                               best_order, em);
        if (rc != ROOST_OK)
            return rc;
        if (ok) {
            *eps = cand;
            return ROOST_OK;
        }
        if (f >= HUGE_VAL)
            break; /* the tail term took all of delta below any fixed point */
        c = f;
    }
    /* Slow progress: the tail term is close to taking all of delta, where
     * f nearly touches the diagonal. The valid epsilons form an interval
     * (f - c falls while the accountant's epsilon grows slowly in
     * log(1/d0), then rises as d0 -> 0). Look for a point of it up to the
     * cap (or the c where no delta is left): the cap itself, else the
     * minimum of f(c) - c by ternary search; then bisect between c, which
     * is below the interval, and that point for its lower end. */
    double top = fmin(eps_cap, log(delta / n_beta));
    double found = HUGE_VAL;
    if (c < top) {
        rc =
            sampled_certifies(&cv, n_mu, n_beta, delta, top, &ok, &f, NULL, em);
        if (rc != ROOST_OK)
            return rc;
        if (ok)
            found = top;
        double a = c, b = top;
        while (found >= HUGE_VAL && b - a > 1e-9 * (1.0 + b)) {
            double m1 = a + (b - a) / 3.0, m2 = b - (b - a) / 3.0, f1, f2;
            bool ok1, ok2;
            rc = sampled_certifies(&cv, n_mu, n_beta, delta, m1, &ok1, &f1,
                                   NULL, em);
            if (rc == ROOST_OK)
                rc = sampled_certifies(&cv, n_mu, n_beta, delta, m2, &ok2, &f2,
                                       NULL, em);
            if (rc != ROOST_OK)
                return rc;
            if (ok1 || ok2)
                found = ok1 ? m1 : m2;
            else if (f1 - m1 < f2 - m2)
                b = m2;
            else
                a = m1;
        }
    }
    if (found < HUGE_VAL) {
        double lo = c, hi = found;
        while (hi - lo > 1e-9 * (1.0 + hi)) {
            double mid = lo + (hi - lo) / 2.0;
            rc = sampled_certifies(&cv, n_mu, n_beta, delta, mid, &ok, &f, NULL,
                                   em);
            if (rc != ROOST_OK)
                return rc;
            if (ok)
                hi = mid;
            else
                lo = mid;
        }
        rc = sampled_certifies(&cv, n_mu, n_beta, delta, hi, &ok, &f,
                               best_order, em);
        if (rc == ROOST_OK)
            *eps = hi;
        return rc;
    }
    /* No valid epsilon up to the cap: refuse (a larger one may exist). */
    *eps = HUGE_VAL;
    if (best_order != NULL)
        *best_order = 0.0;
    return ROOST_OK;
}

/* epsilon of (q, sigma, steps) on the default grid; inputs validated. */
static int
plan_epsilon(double q, double sigma, uint64_t steps, double delta, double *eps,
             roost_errmsg *em)
{
    roost_dp_event e = {q, sigma, steps};
    int rc = roost_dp_epsilon(&e, 1, delta, eps, NULL, em);
    if (rc == ROOST_EOVERFLOW) {
        *eps = HUGE_VAL; /* internal only: "too little noise" */
        return ROOST_OK;
    }
    return rc;
}

int
roost_dp_calibrate_sigma(double q, uint64_t steps, double delta,
                         double target_eps, double *sigma, roost_errmsg *em)
{
    static const double sigma_min = 1e-6, sigma_max = 1e6;
    int rc = check_event(q, 1.0, em);
    if (rc == ROOST_OK)
        rc = check_delta(delta, em);
    if (rc != ROOST_OK)
        return rc;
    if (sigma == NULL)
        return roost_fail(em, ROOST_EINVAL, "sigma is NULL");
    if (!(target_eps > 0.0) || !isfinite(target_eps))
        return roost_fail(em, ROOST_EINVAL,
                          "target epsilon %g must be positive and finite",
                          target_eps);
    if (q == 0.0 || steps == 0)
        return roost_fail(em, ROOST_EINVAL,
                          "q = 0 or steps = 0 spends no privacy: every sigma "
                          "meets the target");
    double eps;
    double hi = 1.0;
    while ((rc = plan_epsilon(q, hi, steps, delta, &eps, em)) == ROOST_OK &&
           eps > target_eps) {
        if (hi >= sigma_max) {
            return roost_fail(em, ROOST_EINVAL,
                              "target epsilon %g is unreachable at delta %g: "
                              "sigma = %g still gives epsilon %g",
                              target_eps, delta, hi, eps);
        }
        hi *= 2.0;
    }
    if (rc != ROOST_OK)
        return rc;
    double lo = hi / 2.0;
    while ((rc = plan_epsilon(q, lo, steps, delta, &eps, em)) == ROOST_OK &&
           eps <= target_eps) {
        hi = lo;
        if (lo <= sigma_min) {
            *sigma = hi; /* the target is met by (almost) no noise */
            return ROOST_OK;
        }
        lo /= 2.0;
    }
    if (rc != ROOST_OK)
        return rc;
    /* Invariant: eps(lo) > target >= eps(hi). */
    while (hi - lo > ROOST_DP_CALIBRATE_RTOL * hi) {
        double mid = sqrt(lo * hi);
        rc = plan_epsilon(q, mid, steps, delta, &eps, em);
        if (rc != ROOST_OK)
            return rc;
        if (eps <= target_eps)
            hi = mid;
        else
            lo = mid;
    }
    *sigma = hi;
    return ROOST_OK;
}
