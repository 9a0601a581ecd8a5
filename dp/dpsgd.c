/*
 * dpsgd.c - the DP-SGD gradient: Poisson sampling, per-example clipping
 * over all layers, grid-rounded Gaussian noise, division by the expected
 * batch (see dpsgd.h for the mechanism and why each step is so).
 *
 * Invariants: every buffer is sized at create for the largest micro-batch
 * and the local data size; a step allocates nothing. The noise is always
 * added to the clipped sum, even for an empty batch. No locking.
 */
#include "dp/dpsgd.h"

#include "common/alloc.h"
#include "dp/noise.h"

#include <math.h>
#include <string.h>

struct roost_dpsgd {
    const roost_allocator *alloc;
    roost_grad_ops ops;
    roost_rng *rng;
    roost_dpsgd_config cfg;
    size_t n_examples, dim, n_params, micro;
    uint64_t threshold; /* Poisson: join iff u64 < threshold (q < 1) */
    bool take_all;      /* q == 1 */
    size_t fixed_batch; /* shuffled mode */
    size_t cursor;      /* shuffled mode: next position in perm */
    double clip_eff;
    double draws;
    roost_noise *noise;
    roost_workspace *ws;
    uint64_t *coins;  /* n_examples random words per step */
    uint32_t *batch;  /* sampled local positions */
    uint32_t *perm;   /* shuffled mode permutation */
    uint32_t *gidx;   /* dataset indices of a micro-batch */
    float *x;         /* micro x dim */
    uint8_t *y;       /* micro */
    double *norms_sq; /* micro */
    float *weights;   /* micro */
    float *part;      /* n_params: one micro-batch's weighted sum */
};

static int
check_config(const roost_dpsgd_config *cfg, size_t n_examples, roost_errmsg *em)
{
    if (!(cfg->sampling_rate > 0.0 && cfg->sampling_rate <= 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: sampling rate q=%g is not in (0, 1]",
                          cfg->sampling_rate);
    if (!(cfg->noise_multiplier > 0.0) || !isfinite(cfg->noise_multiplier))
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: noise multiplier %g must be > 0",
                          cfg->noise_multiplier);
    if (!(cfg->clip_norm > 0.0) || !isfinite(cfg->clip_norm))
        return roost_fail(em, ROOST_EINVAL, "dpsgd: clip norm %g must be > 0",
                          cfg->clip_norm);
    if (n_examples == 0 || n_examples > UINT32_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: %zu local examples (need 1 .. 2^32-1)",
                          n_examples);
    if (cfg->sampling != ROOST_DPSGD_POISSON &&
        cfg->sampling != ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED)
        return roost_fail(em, ROOST_EINVAL, "dpsgd: unknown sampling mode");
    return ROOST_OK;
}

/* The built-in model as a gradient source. */
static int
model_norms(void *arg, const float *params, const float *x,
            const uint8_t *labels, size_t batch, double *norms_sq,
            double *loss_sum)
{
    return roost_model_example_norms(arg, params, x, labels, batch, norms_sq,
                                     loss_sum);
}

static int
model_weighted(void *arg, const float *weights, float *grad)
{
    return roost_model_weighted_grad(arg, weights, grad);
}

static int
create(roost_dpsgd **out, const roost_allocator *alloc,
       const roost_grad_ops *ops, const roost_model *m, size_t n_params,
       size_t input_dim, size_t n_examples, const roost_dpsgd_config *cfg,
       roost_rng *rng, roost_errmsg *em)
{
    *out = NULL;
    int rc = check_config(cfg, n_examples, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dpsgd *d = roost_alloc_calloc(alloc, 1, sizeof(*d));
    if (d == NULL)
        return roost_fail(em, ROOST_ENOMEM, "dpsgd: out of memory");
    d->alloc = alloc;
    d->rng = rng;
    d->cfg = *cfg;
    d->n_examples = n_examples;
    d->dim = input_dim;
    d->n_params = n_params;
    d->micro = cfg->micro_batch ? cfg->micro_batch : 128;
    if (ops != NULL) {
        d->ops = *ops;
        if (d->ops.max_batch < d->micro)
            d->micro = d->ops.max_batch;
    }
    double q = cfg->sampling_rate;
    d->take_all = q >= 1.0;
    /* threshold = floor(q * 2^64), computed without overflow for q < 1:
     * P(u < threshold) = threshold / 2^64, within 2^-64 of q. */
    d->threshold = d->take_all ? UINT64_MAX : (uint64_t)ldexp(q, 64);
    double fb = floor(q * (double)n_examples + 0.5);
    d->fixed_batch = fb < 1.0 ? 1 : (size_t)fb;

    unsigned grid_bits = cfg->grid_bits;
    rc = roost_noise_create_memo(
        &d->noise, alloc, cfg->noise_memo, rng, cfg->noise_multiplier,
        cfg->clip_norm, grid_bits ? grid_bits : ROOST_NOISE_GRID_BITS_DEFAULT,
        em);
    if (rc != ROOST_OK)
        goto fail;
    rc = roost_noise_clip_for_dim(d->noise, d->n_params, &d->clip_eff);
    if (rc != ROOST_OK) {
        roost_fail(em, rc, "dpsgd: clip norm %g too small for the noise grid",
                   cfg->clip_norm);
        goto fail;
    }
    /* The noise refuses a sum coordinate of 2^51 grid steps or more
     * (ROOST_EOVERFLOW). A coordinate of the clipped sum is at most
     * batch * C' <= n_examples * C': refusing here, when even that bound
     * could come within a factor 2 of the limit (room for the float sum's
     * rounding), means no step can fail on it, which would otherwise
     * happen or not depending on the data. It takes a noise multiplier
     * below about n_examples / 2^29, far from any useful one. */
    double steps =
        (double)n_examples * d->clip_eff / roost_noise_grid(d->noise);
    if (!(steps < 0x1p50)) {
        rc = roost_fail(em, ROOST_EINVAL,
                        "dpsgd: noise multiplier %g is too small for %zu "
                        "examples: a clipped sum could exceed the noise "
                        "grid's range (%zu examples need at least %.3g)",
                        cfg->noise_multiplier, n_examples, n_examples,
                        cfg->noise_multiplier * steps / 0x1p50);
        goto fail;
    }
    if (m != NULL) {
        rc = roost_workspace_create(&d->ws, m, d->micro, em);
        if (rc != ROOST_OK)
            goto fail;
        d->ops.example_norms = model_norms;
        d->ops.weighted_grad = model_weighted;
        d->ops.arg = d->ws;
        d->ops.max_batch = d->micro;
    }
    d->coins = roost_alloc_calloc(alloc, n_examples, sizeof(*d->coins));
    d->batch = roost_alloc_calloc(alloc, n_examples, sizeof(*d->batch));
    d->perm = cfg->sampling == ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED
                  ? roost_alloc_calloc(alloc, n_examples, sizeof(*d->perm))
                  : NULL;
    d->gidx = roost_alloc_calloc(alloc, d->micro, sizeof(*d->gidx));
    d->x = roost_alloc_calloc(alloc, d->micro, d->dim * sizeof(float));
    d->y = roost_alloc_calloc(alloc, d->micro, 1);
    d->norms_sq = roost_alloc_calloc(alloc, d->micro, sizeof(double));
    d->weights = roost_alloc_calloc(alloc, d->micro, sizeof(float));
    d->part = roost_alloc_calloc(alloc, d->n_params, sizeof(float));
    if (d->coins == NULL || d->batch == NULL || d->gidx == NULL ||
        d->x == NULL || d->y == NULL || d->norms_sq == NULL ||
        d->weights == NULL || d->part == NULL ||
        (cfg->sampling == ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED &&
         d->perm == NULL)) {
        rc = roost_fail(em, ROOST_ENOMEM, "dpsgd: out of memory");
        goto fail;
    }
    if (d->perm != NULL) {
        for (size_t i = 0; i < n_examples; i++)
            d->perm[i] = (uint32_t)i;
        d->cursor = n_examples; /* shuffle on first use */
    }
    *out = d;
    return ROOST_OK;
fail:
    roost_dpsgd_destroy(d);
    return rc;
}

int
roost_dpsgd_create(roost_dpsgd **out, const roost_allocator *alloc,
                   const roost_model *m, size_t n_examples,
                   const roost_dpsgd_config *cfg, roost_rng *rng,
                   roost_errmsg *em)
{
    if (out == NULL || m == NULL || cfg == NULL || rng == NULL)
        return roost_fail(em, ROOST_EINVAL, "dpsgd: NULL argument");
    return create(out, alloc, NULL, m, roost_model_param_count(m),
                  roost_model_input_dim(m), n_examples, cfg, rng, em);
}

int
roost_dpsgd_create_ops(roost_dpsgd **out, const roost_allocator *alloc,
                       const roost_grad_ops *ops, size_t n_params,
                       size_t input_dim, size_t n_examples,
                       const roost_dpsgd_config *cfg, roost_rng *rng,
                       roost_errmsg *em)
{
    if (out == NULL || ops == NULL || ops->example_norms == NULL ||
        ops->weighted_grad == NULL || ops->max_batch == 0 || n_params == 0 ||
        input_dim == 0 || cfg == NULL || rng == NULL)
        return roost_fail(em, ROOST_EINVAL, "dpsgd: NULL or empty argument");
    return create(out, alloc, ops, NULL, n_params, input_dim, n_examples, cfg,
                  rng, em);
}

void
roost_dpsgd_destroy(roost_dpsgd *d)
{
    if (d == NULL)
        return;
    const roost_allocator *a = d->alloc;
    roost_noise_destroy(d->noise);
    roost_workspace_destroy(d->ws);
    roost_alloc_free(a, d->coins);
    roost_alloc_free(a, d->batch);
    roost_alloc_free(a, d->perm);
    roost_alloc_free(a, d->gidx);
    roost_alloc_free(a, d->x);
    roost_alloc_free(a, d->y);
    roost_alloc_free(a, d->norms_sq);
    roost_alloc_free(a, d->weights);
    roost_alloc_free(a, d->part);
    roost_alloc_free(a, d);
}

/* Sample this step's batch into d->batch; returns its size in *n. */
static int
sample_batch(roost_dpsgd *d, size_t *n)
{
    size_t k = 0;
    if (d->cfg.sampling == ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED) {
        for (size_t i = 0; i < d->fixed_batch; i++) {
            if (d->cursor == d->n_examples) {
                /* Fisher-Yates reshuffle at each epoch boundary. */
                for (size_t j = d->n_examples - 1; j > 0; j--) {
                    uint64_t r;
                    int rc = roost_rng_below(d->rng, j + 1, &r);
                    if (rc != ROOST_OK)
                        return rc;
                    uint32_t t = d->perm[j];
                    d->perm[j] = d->perm[r];
                    d->perm[r] = t;
                }
                d->cursor = 0;
            }
            d->batch[k++] = d->perm[d->cursor++];
        }
        *n = k;
        return ROOST_OK;
    }
    if (d->take_all) {
        for (size_t i = 0; i < d->n_examples; i++)
            d->batch[i] = (uint32_t)i;
        *n = d->n_examples;
        return ROOST_OK;
    }
    int rc =
        roost_rng_bytes(d->rng, d->coins, d->n_examples * sizeof(*d->coins));
    if (rc != ROOST_OK)
        return rc;
    for (size_t i = 0; i < d->n_examples; i++) {
        d->batch[k] = (uint32_t)i;
        k += d->coins[i] < d->threshold;
    }
    *n = k;
    return ROOST_OK;
}

/* The optimiser's update of one noised chunk (roost_dpsgd_step_sgd). */
struct update_arg {
    roost_sgd *sgd;
    float *params;
    const float *grad, *global;
    int rc;
};

static void
update_chunk(void *arg, size_t off, size_t count)
{
    struct update_arg *u = arg;
    int rc =
        roost_sgd_step_range(u->sgd, u->params, u->grad, u->global, off, count);
    if (rc != ROOST_OK && u->rc == ROOST_OK)
        u->rc = rc;
}

/*
 * Pass 1 over the micro-batch of examples d->gidx[0..*mb): gather them and
 * have each one's squared gradient norm in d->norms_sq.
 *
 * An example whose gradient is not finite (a NaN or an infinity in its
 * features, or an overflow in the model) is left out of the step: its
 * term in the clipped sum is zero, as if it had not been sampled, and
 * *excluded counts it. Such an example used to fail the whole step, and
 * with it the device's round, so that whether the device sent an update
 * depended on one example's data: a channel the accountant does not
 * cover. Leaving it out keeps the released sum a sum of per-example terms
 * each of norm at most C' (zero among them), whatever the data. Whether an
 * example is left out depends only on that example and the parameters.
 *
 * The remaining examples' pass 1 is run again: pass 2 works on the batch
 * of pass 1, and a NaN scaled by a weight of 0 is still a NaN. Each run
 * that finds a non-finite norm removes at least one example, so this
 * ends; *mb may end at 0.
 */
static int
finite_norms(roost_dpsgd *d, const float *params, const roost_dataset *ds,
             size_t *mb, double *loss, size_t *excluded, roost_errmsg *em)
{
    while (*mb > 0) {
        int rc = roost_dataset_gather(ds, d->gidx, *mb, d->x, d->y);
        if (rc != ROOST_OK)
            return roost_fail(em, rc, "dpsgd: example index out of range");
        *loss = 0;
        rc = d->ops.example_norms(d->ops.arg, params, d->x, d->y, *mb,
                                  d->norms_sq, loss);
        if (rc != ROOST_OK)
            return roost_fail(em, rc, "dpsgd: per-example gradients failed");
        size_t kept = 0;
        for (size_t i = 0; i < *mb; i++)
            if (isfinite(d->norms_sq[i]) && d->norms_sq[i] >= 0.0)
                d->gidx[kept++] = d->gidx[i];
        if (kept == *mb)
            return ROOST_OK;
        *excluded += *mb - kept;
        *mb = kept;
    }
    *loss = 0;
    return ROOST_OK;
}

/* One DP-SGD step into grad; with u, also the update, chunk by chunk as
 * the noise is added (params changes only after the whole clipped sum is
 * formed, so the gradient is the one at the incoming params). */
static int
step(roost_dpsgd *d, const float *params, const roost_dataset *ds,
     const uint32_t *indices, float *grad, struct update_arg *u,
     roost_dpsgd_step_info *info, roost_errmsg *em)
{
    if (d == NULL || params == NULL || ds == NULL || grad == NULL)
        return roost_fail(em, ROOST_EINVAL, "dpsgd: NULL argument");
    if (roost_dataset_dim(ds) != d->dim)
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: dataset has %zu features, model %zu",
                          roost_dataset_dim(ds), d->dim);
    size_t n_batch;
    int rc = sample_batch(d, &n_batch);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "dpsgd: random source failed");
    roost_dpsgd_step_info local = {0};
    /* The first micro-batch's weighted sum overwrites grad; an empty batch
     * still gets noise, on zeros. */
    if (n_batch == 0)
        memset(grad, 0, d->n_params * sizeof(float));
    for (size_t start = 0; start < n_batch; start += d->micro) {
        size_t mb = n_batch - start < d->micro ? n_batch - start : d->micro;
        for (size_t i = 0; i < mb; i++) {
            uint32_t pos = d->batch[start + i];
            d->gidx[i] = indices != NULL ? indices[pos] : pos;
        }
        double loss = 0;
        rc = finite_norms(d, params, ds, &mb, &loss, &local.excluded, em);
        if (rc != ROOST_OK)
            return rc;
        local.loss_sum += loss;
        if (mb == 0) {
            /* Every example of the micro-batch was left out: it adds 0. */
            if (start == 0)
                memset(grad, 0, d->n_params * sizeof(float));
            continue;
        }
        for (size_t i = 0; i < mb; i++) {
            double norm = sqrt(d->norms_sq[i]);
            float w = 1.0f;
            if (norm > d->clip_eff) {
                /* Rounded to float, clip_eff / norm lands above the exact
                 * quotient about half the time, which would leave the
                 * clipped example a few ulps longer than clip_eff: step
                 * it down until w * norm <= clip_eff holds. */
                w = (float)(d->clip_eff / norm);
                while (w > 0.0f && (double)w * norm > d->clip_eff)
                    w = nextafterf(w, 0.0f);
                local.clipped++;
            }
            d->weights[i] = w;
        }
        /* The first micro-batch writes grad directly; later ones go
         * through part. */
        float *dst = start == 0 ? grad : d->part;
        rc = d->ops.weighted_grad(d->ops.arg, d->weights, dst);
        if (rc != ROOST_OK)
            return roost_fail(em, rc, "dpsgd: clipped sum failed");
        if (start != 0)
            for (size_t j = 0; j < d->n_params; j++)
                grad[j] += d->part[j];
    }
    local.batch = n_batch;
    float scale = (float)(1.0 / (d->cfg.sampling_rate * (double)d->n_examples));
    if (d->cfg.sampling == ROOST_DPSGD_SHUFFLED_NOT_ACCOUNTED)
        scale = (float)(1.0 / (double)d->fixed_batch);
    /* Noise and the division by the expected batch in one pass over grad;
     * the division is post-processing of the noised sum. */
    if (u != NULL)
        rc = roost_noise_add_scaled_each(d->noise, grad, d->n_params, scale,
                                         update_chunk, u, em);
    else
        rc = roost_noise_add_scaled(d->noise, grad, d->n_params, scale, em);
    if (rc != ROOST_OK)
        return rc;
    d->draws += (double)d->n_params;
    if (u != NULL && u->rc != ROOST_OK)
        return roost_fail(em, u->rc, "dpsgd: optimiser step failed");
    if (info != NULL)
        *info = local;
    return ROOST_OK;
}

int
roost_dpsgd_step(roost_dpsgd *d, const float *params, const roost_dataset *ds,
                 const uint32_t *indices, float *grad,
                 roost_dpsgd_step_info *info, roost_errmsg *em)
{
    return step(d, params, ds, indices, grad, NULL, info, em);
}

int
roost_dpsgd_step_sgd(roost_dpsgd *d, float *params, const roost_dataset *ds,
                     const uint32_t *indices, float *grad, roost_sgd *sgd,
                     const float *global_params, roost_dpsgd_step_info *info,
                     roost_errmsg *em)
{
    if (d == NULL || sgd == NULL || params == NULL)
        return roost_fail(em, ROOST_EINVAL, "dpsgd: NULL argument");
    roost_sgd_config cfg;
    float *velocity;
    size_t n;
    roost_sgd_state(sgd, &cfg, &velocity, &n);
    if (n != d->n_params)
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: optimiser for %zu parameters, model has %zu",
                          n, d->n_params);
    if (cfg.prox_mu > 0.0f && global_params == NULL)
        return roost_fail(em, ROOST_EINVAL,
                          "dpsgd: FedProx needs the global parameters");
    struct update_arg u = {sgd, params, grad, global_params, ROOST_OK};
    return step(d, params, ds, indices, grad, &u, info, em);
}

double
roost_dpsgd_effective_clip(const roost_dpsgd *d)
{
    return d->clip_eff;
}

double
roost_dpsgd_noise_draws(const roost_dpsgd *d)
{
    return d->draws;
}

const struct roost_noise *
roost_dpsgd_noise(const roost_dpsgd *d)
{
    return d->noise;
}
