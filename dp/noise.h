/*
 * noise.h - Gaussian noise for DP-SGD that resists the floating-point
 * attacks on textbook samplers (Mironov 2012; Jin et al. 2021).
 *
 * The mechanism works on an integer grid. With s = sigma*clip, the grid is
 * the power of two g = 2^(floor(log2 s) - grid_bits), so s/g lies in
 * [2^grid_bits, 2^(grid_bits+1)). roost_noise_add() rounds every input
 * coordinate to the nearest multiple of g (an exact operation on floats),
 * adds an integer Z times g, and converts back to float. Z is drawn from a
 * table-driven sampler (an exact alias method over 128-bit probabilities,
 * fed by raw CSPRNG words) whose output is provably close to the rounded
 * Gaussian round(N(0, (s/g)^2)): the output is then, up to the closeness
 * charged by roost_noise_charge(), a post-processing of the continuous
 * Gaussian mechanism the accountant analyses. Rounding the input to the
 * grid raises the L2 sensitivity by at most sqrt(dim)*g;
 * roost_noise_clip_for_dim() gives the clip norm that absorbs it.
 * docs/privacy.md ("Noise") states the output distribution and the proof.
 *
 * A roost_noise is not thread-safe; it borrows its roost_rng (same thread,
 * must outlive the sampler). roost_noise_closeness_for() and
 * roost_dp_calibrate_sigma_sampled() need no sampler; any thread may call
 * them (sharing a roost_noise_memo is safe). All calls are deterministic
 * functions of the rng's stream, so an insecure deterministic rng reproduces
 * them exactly.
 */
#ifndef ROOST_DP_NOISE_H
#define ROOST_DP_NOISE_H

#include <roost/roost.h>

#include "common/error.h"
#include "common/rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct roost_noise roost_noise;

/* Default grid resolution: s/g in [2^20, 2^21). Rounding to this grid
 * inflates the L2 sensitivity by at most sqrt(dim) * sigma*clip * 2^-20. */
#define ROOST_NOISE_GRID_BITS_DEFAULT 20u
/* Largest accepted grid_bits (the tables grow like 2^(grid_bits/2)). */
#define ROOST_NOISE_GRID_BITS_MAX 22u

/*
 * roost_noise_create - build the sampler for noise of standard deviation
 * sigma*clip (sigma > 0 the noise multiplier, clip > 0 the L2 clip norm),
 * on the grid described above (grid_bits <= ROOST_NOISE_GRID_BITS_MAX; 0 is
 * allowed and gives a coarse grid, useful only in tests). Builds two tables
 * of 20 bytes per slot (at the default grid_bits, 2^14 or 2^15 slots
 * each, of which a 4-byte hot part is read on the fast path); takes about
 * 20 ms of CPU.
 *
 * alloc may be NULL (C library). rng is borrowed, not owned. em may be NULL;
 * on failure it receives a message. Returns ROOST_OK, ROOST_EINVAL (bad
 * argument, message names it), ROOST_ENOMEM, or ROOST_EOVERFLOW if an
 * internal consistency check of the tables fails (not expected); *out is
 * NULL on failure.
 */
int roost_noise_create(roost_noise **out, const roost_allocator *alloc,
                       roost_rng *rng, double sigma, double clip,
                       unsigned grid_bits, roost_errmsg *em);

/* roost_noise_destroy - wipes and frees; NULL does nothing. */
void roost_noise_destroy(roost_noise *noise);

/*
 * roost_noise_add - x[i] <- float((round(x[i]/g) + Z_i) * g) for i < n, Z_i
 * independent draws, standard deviation sigma*clip. All inputs are checked
 * before any is changed: a NaN or infinity gives ROOST_ENONFINITE, a
 * coordinate with |x|/g >= 2^51 gives ROOST_EOVERFLOW (x is then
 * unchanged, no randomness used). ROOST_ECRYPTO if the rng fails (x may
 * then be partly noised and must not be released). em may be NULL.
 */
int roost_noise_add(roost_noise *noise, float *x, size_t n, roost_errmsg *em);

/*
 * roost_noise_add_scaled - roost_noise_add followed by x[i] *= scale in
 * float (the same values as the two steps, in one pass): DP-SGD's division
 * by the expected batch, which is post-processing of the noised sum.
 */
int roost_noise_add_scaled(roost_noise *noise, float *x, size_t n, float scale,
                           roost_errmsg *em);

/*
 * roost_noise_add_scaled_each - roost_noise_add_scaled, calling
 * each(arg, off, count) as soon as coordinates [off, off + count) have
 * their final values (chunks in order, a few thousand coordinates each),
 * so a consumer such as the optimiser can use them while they are in
 * cache. Nothing is called when the input is rejected. On ROOST_ECRYPTO
 * some chunks may have been passed to each already.
 */
int
roost_noise_add_scaled_each(roost_noise *noise, float *x, size_t n, float scale,
                            void (*each)(void *arg, size_t off, size_t count),
                            void *arg, roost_errmsg *em);

/*
 * roost_noise_fill_standard - out[i] = Z_i / (s/g): the same integer draws,
 * scaled to unit standard deviation (variance 1 + (g/s)^2/12, the rounding
 * of the Gaussian adds 1/12 grid unit squared). For statistical tests.
 * ROOST_OK or ROOST_ECRYPTO.
 */
int roost_noise_fill_standard(roost_noise *noise, double *out, size_t n);

/* The grid g (a power of two) and the noise standard deviation
 * sigma*clip. */
double roost_noise_grid(const roost_noise *noise);
double roost_noise_stddev(const roost_noise *noise);

/*
 * roost_noise_clip_for_dim - the per-example clip norm to use for a vector
 * of dim coordinates so that the grid-rounded sum has L2 sensitivity at
 * most clip (the value given to create): *clip_out = clip - sqrt(dim)*g.
 * ROOST_EINVAL if that is not positive (grid too coarse for dim).
 */
int roost_noise_clip_for_dim(const roost_noise *noise, size_t dim,
                             double *clip_out);

/*
 * roost_noise_closeness - per-draw distance of the implemented sampler Q
 * from the ideal rounded Gaussian P: for every set E of integers,
 * Q(E) <= e^mu P(E) and P(E) <= e^mu Q(E) + beta. Computed from the
 * actual tables when the sampler was built.
 */
void roost_noise_closeness(const roost_noise *noise, double *mu, double *beta);

/*
 * roost_noise_memo - keeps the samplers' tables (about 1.3 MB each at
 * the default grid) of the last few (sigma, clip, grid_bits) asked of
 * roost_noise_closeness_for or roost_noise_create_memo, which otherwise
 * build them (about 20 ms) on every call. It builds with the allocator
 * given here. One memo may be shared by several threads (it has its own
 * mutex). create: ROOST_OK, ROOST_EINVAL (NULL
 * out), ROOST_ENOMEM; destroy accepts NULL.
 */
typedef struct roost_noise_memo roost_noise_memo;
int roost_noise_memo_create(roost_noise_memo **out,
                            const roost_allocator *alloc, roost_errmsg *em);
void roost_noise_memo_destroy(roost_noise_memo *memo);

/*
 * roost_noise_create_memo - roost_noise_create, sharing the tables with
 * every other sampler this memo made for the same (sigma, clip,
 * grid_bits): the first such call builds them (about 20 ms, with the
 * memo's allocator) and the memo keeps them; later ones take about a
 * microsecond. The tables are a function of the key alone and are only
 * read after they are built, so the samplers draw exactly what
 * roost_noise_create's would, and may run on different threads (each
 * with its own rng). A sampler keeps its tables alive past a
 * roost_noise_memo_destroy or the memo replacing the key, and whichever
 * thread drops the last reference frees them with the memo's allocator
 * (which must then allow it); the memo keeps the tables of at most its
 * last few keys. grid_bits 0 is the coarse test
 * grid, as in roost_noise_create. memo NULL: roost_noise_create. Errors
 * as roost_noise_create.
 */
int roost_noise_create_memo(roost_noise **out, const roost_allocator *alloc,
                            roost_noise_memo *memo, roost_rng *rng,
                            double sigma, double clip, unsigned grid_bits,
                            roost_errmsg *em);

/*
 * roost_noise_closeness_for - the (mu, beta) that roost_noise_closeness()
 * gives for the sampler roost_noise_create(.., sigma, clip, grid_bits, ..)
 * builds, without the caller building one; grid_bits 0 here means
 * ROOST_NOISE_GRID_BITS_DEFAULT (as in roost_dpsgd_config), not the coarse
 * test grid. With a memo, a key it holds costs a lookup and a new one is
 * built with the memo's allocator and remembered; with memo NULL every
 * call builds the tables (default allocator). No randomness is drawn.
 * Returns ROOST_OK, ROOST_EINVAL (NULL mu or beta, or an argument
 * roost_noise_create refuses, with the same message), ROOST_ENOMEM or
 * ROOST_EOVERFLOW as roost_noise_create. em may be NULL.
 */
int roost_noise_closeness_for(roost_noise_memo *memo, double sigma, double clip,
                              unsigned grid_bits, double *mu, double *beta,
                              roost_errmsg *em);

/*
 * roost_dp_calibrate_sigma_sampled - roost_dp_calibrate_sigma for a run
 * whose noise comes from this sampler: the smallest sigma (to within
 * ROOST_DP_CALIBRATE_RTOL, relative) such that
 *
 *   roost_dp_epsilon_sampled(&(roost_dp_event){q, sigma, steps}, 1,
 *                            draws * mu, draws * beta, target_eps, delta)
 *
 * is <= target_eps, with (mu, beta) = roost_noise_closeness_for(memo,
 * sigma, clip, grid_bits) (memo may be NULL) and the two products computed
 * as written: that call is
 * the final check, so a budget that charges the same call accepts the
 * planned run. draws is the number of noise values the whole run draws
 * (parameters times steps); draws = 0 gives exactly
 * roost_dp_calibrate_sigma's answer. grid_bits 0 is the default grid.
 * The sampler's figures move a little with sigma, not monotonically, so
 * "smallest" holds within the tolerance wherever their effect is smaller
 * than it; the returned sigma always passes the check. Builds a handful of
 * samplers (about 20 ms each) unless their figures are cached.
 *
 * Errors: those of roost_dp_calibrate_sigma (ROOST_EINVAL for bad q,
 * steps, delta or target, or a target unreachable even without the
 * sampler); ROOST_EINVAL for negative or non-finite draws, or a clip or
 * grid_bits roost_noise_create refuses; ROOST_EBUDGET when the sampler's
 * own terms rule the target out (e^target_eps * draws * beta >= delta,
 * or 2 * draws * mu >= target_eps), the message naming the largest epsilon
 * reachable at delta, ln(delta / (draws * beta)). em may be NULL.
 */
int roost_dp_calibrate_sigma_sampled(roost_noise_memo *memo, double q,
                                     uint64_t steps, double draws, double clip,
                                     unsigned grid_bits, double delta,
                                     double target_eps, double *sigma,
                                     roost_errmsg *em);

/*
 * roost_noise_charge - turn an (epsilon, delta) guarantee computed by the
 * accountant for the ideal mechanism (continuous Gaussian, post-processed)
 * into one for this sampler, for a run that draws `draws` noise values in
 * total (coordinates times steps): epsilon' = epsilon + 2*draws*mu,
 * delta' = e^(draws*mu)*delta + e^(epsilon + 2*draws*mu)*draws*beta, see
 * docs/privacy.md. ROOST_EINVAL on negative or non-finite inputs.
 */
int roost_noise_charge(const roost_noise *noise, double draws, double epsilon,
                       double delta, double *epsilon_out, double *delta_out);

#endif
