/*
 * dpsgd.h - one DP-SGD gradient at a time (Abadi et al. 2016), in the form
 * the accountant analyses:
 *
 *   1. Poisson subsampling: each of the N local examples joins the batch
 *      independently with probability q (drawn from the CSPRNG), so batch
 *      sizes vary; this is what the subsampled-Gaussian RDP bound assumes.
 *   2. Every sampled example's gradient, over ALL layers, is clipped to L2
 *      norm C' (the model's two-pass per-example API: norms first, then one
 *      weighted GEMM per layer with weights min(1, C'/||g_i||)), and the
 *      clipped gradients are summed.
 *   3. The sum gets Gaussian noise of standard deviation sigma*C per
 *      coordinate from the attack-resistant grid sampler (dp/noise.h).
 *      C' = C - sqrt(d)*g absorbs the grid rounding, so the rounded sum's
 *      sensitivity is at most C.
 *   4. The result is divided by the EXPECTED batch size q*N (not the
 *      realised one, which would leak the batch size).
 *
 * The noise is added even when the sampled batch is empty, as the mechanism
 * requires. Fixed shuffled batches are offered only as the explicitly
 * named, non-default ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED: the accountant's
 * bound does not cover them.
 *
 * A roost_dpsgd holds every buffer a step needs (allocated once); a step
 * never allocates. One thread at a time; it borrows the model and the rng.
 */
#ifndef ROOST_DP_DPSGD_H
#define ROOST_DP_DPSGD_H

#include <roost/roost.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/model.h"
#include "common/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum roost_dpsgd_sampling {
    ROOST_DPSGD_POISSON = 0,
    /* Fixed-size batches from a shuffle: NOT covered by the accountant's
     * subsampled-Gaussian bound; for comparisons only. */
    ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED = 1,
} roost_dpsgd_sampling;

typedef struct roost_dpsgd_config {
    double sampling_rate;    /* q in (0, 1] */
    double noise_multiplier; /* sigma > 0 */
    double clip_norm;        /* C > 0 */
    roost_dpsgd_sampling sampling;
    unsigned grid_bits; /* noise grid, 0: ROOST_NOISE_GRID_BITS_DEFAULT */
    size_t micro_batch; /* examples per GEMM pass, 0: 128 */
    /* Optional: the noise sampler's tables come from (and stay in) this
     * memo, shared with every other sampler it made for the same sigma,
     * clip and grid (roost_noise_create_memo; the same draws). NULL: the
     * step builds its own (about 20 ms). The memo may go before the
     * handle: the sampler keeps its tables alive. */
    struct roost_noise_memo *noise_memo;
} roost_dpsgd_config;

/* What one step did (for logs and metrics; none of it is released
 * outside the device by the library). */
typedef struct roost_dpsgd_step_info {
    size_t batch;    /* examples sampled */
    size_t clipped;  /* of those, how many were scaled down */
    size_t excluded; /* of those, how many were left out for a non-finite
                        gradient (they add 0; see roost_dpsgd_step) */
    double loss_sum; /* sum of their losses (before the step) */
    size_t correct;  /* not computed: 0 */
} roost_dpsgd_step_info;

typedef struct roost_dpsgd roost_dpsgd;

/*
 * Where per-example gradients come from. roost_dpsgd_create uses the
 * built-in model (common/model.h); roost_dpsgd_create_ops takes an
 * application's trainer. The privacy guarantee then rests on the trainer:
 * example_norms must return the true squared L2 norm of each example's
 * gradient over all parameters, and weighted_grad the exact weighted sum
 * of those same gradients; an under-reported norm defeats the clipping.
 */
typedef struct roost_grad_ops {
    /* Pass 1 over a batch (batch <= max_batch): norms_sq[i] = ||g_i||^2,
     * *loss_sum = sum of the examples' losses (may be NULL). */
    int (*example_norms)(void *arg, const float *params, const float *x,
                         const uint8_t *labels, size_t batch, double *norms_sq,
                         double *loss_sum);
    /* Pass 2: grad = sum_i weights[i] * g_i for the batch of pass 1. */
    int (*weighted_grad)(void *arg, const float *weights, float *grad);
    void *arg;
    size_t max_batch;
} roost_grad_ops;

/*
 * roost_dpsgd_create - a DP-SGD gradient source for model m over n_examples
 * local examples. rng supplies sampling and noise (an insecure
 * deterministic rng makes both predictable: tests and simulations only).
 * Returns ROOST_OK, ROOST_EINVAL (bad config, message names the field;
 * clip too small for the noise grid; a noise multiplier so small that a
 * clipped sum over n_examples could leave the noise grid's range),
 * ROOST_ENOMEM; *out NULL on failure.
 */
int roost_dpsgd_create(roost_dpsgd **out, const roost_allocator *alloc,
                       const roost_model *m, size_t n_examples,
                       const roost_dpsgd_config *cfg, roost_rng *rng,
                       roost_errmsg *em);

/* roost_dpsgd_create_ops - the same over an application's gradient
 * source for a model of n_params parameters and inputs of input_dim
 * floats. ops is copied; ops->arg must outlive the handle. */
int roost_dpsgd_create_ops(roost_dpsgd **out, const roost_allocator *alloc,
                           const roost_grad_ops *ops, size_t n_params,
                           size_t input_dim, size_t n_examples,
                           const roost_dpsgd_config *cfg, roost_rng *rng,
                           roost_errmsg *em);

/* roost_dpsgd_destroy - NULL does nothing. */
void roost_dpsgd_destroy(roost_dpsgd *d);

/*
 * roost_dpsgd_step - one privatized gradient at params into grad
 * (param_count floats, caller-owned): sample, clip, sum, noise, divide.
 * ds holds the examples; indices[0..n_examples) name the local ones (NULL:
 * examples 0..n_examples-1 of ds). info may be NULL.
 * A sampled example whose gradient is not finite is left out (its term is
 * zero) rather than failing the step, so that whether a step succeeds does
 * not depend on the data; info->excluded counts them.
 * Returns ROOST_OK, ROOST_EINVAL, ROOST_ECRYPTO (the rng failed: grad must
 * not be used), ROOST_ENONFINITE (the clipped sum was not finite though
 * every norm was: an application trainer whose weighted_grad does not
 * match its example_norms).
 */
int roost_dpsgd_step(roost_dpsgd *d, const float *params,
                     const roost_dataset *ds, const uint32_t *indices,
                     float *grad, roost_dpsgd_step_info *info,
                     roost_errmsg *em);

/*
 * roost_dpsgd_step_sgd - roost_dpsgd_step followed by
 * roost_sgd_step(sgd, params, grad, global_params), with the same result,
 * but the update of each chunk of coordinates runs as soon as its noise is
 * added, while it is in cache (one pass over the gradient fewer). grad is
 * scratch of param_count floats and ends holding the noised gradient.
 * Errors as roost_dpsgd_step; after ROOST_ECRYPTO params may be partly
 * updated and must be discarded, like grad.
 */
int roost_dpsgd_step_sgd(roost_dpsgd *d, float *params, const roost_dataset *ds,
                         const uint32_t *indices, float *grad, roost_sgd *sgd,
                         const float *global_params,
                         roost_dpsgd_step_info *info, roost_errmsg *em);

/* The clip norm actually applied per example (C minus the grid slack). */
double roost_dpsgd_effective_clip(const roost_dpsgd *d);

/* Noise values drawn so far (coordinates x steps), for
 * roost_noise_charge(). */
double roost_dpsgd_noise_draws(const roost_dpsgd *d);

/* The sampler, for roost_noise_charge() and roost_noise_closeness(). */
const struct roost_noise *roost_dpsgd_noise(const roost_dpsgd *d);

#endif
