/*
 * local_train.c - one task's local training, a step at a time (see
 * local_train.h).
 *
 * Non-private tasks run shuffled minibatches of batch_size for
 * local_epochs epochs. DP tasks run exactly plan.steps DP-SGD steps, the
 * number the ledger was charged for. Either way the optimiser is SGD with
 * momentum, weight decay and the FedProx term anchored at the global
 * model -- post-processing of the privatized gradients.
 *
 * Invariant: every buffer is allocated in create; a step allocates
 * nothing. No locking (one thread per trainer).
 */
#include "client/src/local_train.h"

#include "common/alloc.h"
#include "dp/noise.h"

#include <math.h>
#include <string.h>

/* More noisy steps than this in one round is certainly a misconfigured
 * task (q tiny), not a plan to honour. */
#define ROOST_LOCAL_MAX_STEPS 10000000u

struct roost_local_trainer {
    const roost_allocator *alloc;
    roost_local_source src;
    const roost_dataset *ds;
    const uint32_t *idx;
    size_t n;
    const float *global;
    float *params;
    roost_local_task task;
    roost_rng *rng;
    roost_sgd *sgd;
    float *grad;
    size_t n_params, dim;
    roost_local_result res;
    uint64_t steps_total;
    bool done;
    /* Training loss summed over examples, and their count: this epoch's
     * (plain) or the last epoch's worth of steps (DP). Summed per example,
     * so that a partial last minibatch weighs each of its examples once. */
    double loss_sum;
    size_t loss_n;
    /* DP */
    roost_dpsgd *dp;
    uint64_t per_epoch;
    size_t correct, seen; /* plain, built-in model: this epoch's accuracy */
    /* plain */
    roost_workspace *ws;
    size_t batch, pos;
    uint32_t epoch;
    uint32_t *perm, *bidx;
    float *x, *weights;
    uint8_t *y;
    double *norms;
};

int
roost_local_plan(const roost_local_task *task, size_t n_local,
                 roost_local_plan_info *out, roost_errmsg *em)
{
    if (n_local == 0)
        return roost_fail(em, ROOST_EINVAL, "no local examples");
    double q = task->sampling_rate;
    if (q == 0.0) {
        if (task->expected_batch == 0)
            return roost_fail(em, ROOST_EINVAL,
                              "DP task gives neither a sampling rate nor an "
                              "expected batch size");
        q = (double)task->expected_batch / (double)n_local;
        if (q > 1.0)
            q = 1.0;
    }
    if (!(q > 0.0 && q <= 1.0))
        return roost_fail(em, ROOST_EINVAL, "sampling rate %g not in (0, 1]",
                          q);
    double steps = ceil((double)task->local_epochs / q - 1e-9);
    if (steps < 1.0)
        steps = 1.0;
    if (steps > ROOST_LOCAL_MAX_STEPS)
        return roost_fail(em, ROOST_EINVAL,
                          "plan of %.0f steps per round exceeds %u", steps,
                          ROOST_LOCAL_MAX_STEPS);
    out->q = q;
    out->steps = (uint64_t)steps;
    return ROOST_OK;
}

static int
check_task(const roost_local_task *t, roost_errmsg *em)
{
    if (t->local_epochs == 0 || t->batch_size == 0)
        return roost_fail(em, ROOST_EINVAL,
                          "task needs local_epochs and batch_size >= 1");
    if (!(t->learning_rate > 0) || !isfinite(t->learning_rate) ||
        !(t->momentum >= 0 && t->momentum < 1) || !(t->weight_decay >= 0) ||
        !(t->prox_mu >= 0) || !isfinite(t->weight_decay) ||
        !isfinite(t->prox_mu))
        return roost_fail(em, ROOST_EINVAL,
                          "task has an invalid optimiser setting (lr %g, "
                          "momentum %g, weight decay %g, mu %g)",
                          t->learning_rate, t->momentum, t->weight_decay,
                          t->prox_mu);
    return ROOST_OK;
}

void
roost_local_trainer_destroy(roost_local_trainer *t)
{
    if (t == NULL)
        return;
    const roost_allocator *a = t->alloc;
    roost_sgd_destroy(t->sgd);
    roost_dpsgd_destroy(t->dp);
    roost_workspace_destroy(t->ws);
    roost_alloc_free(a, t->grad);
    roost_alloc_free(a, t->perm);
    roost_alloc_free(a, t->bidx);
    roost_alloc_free(a, t->x);
    roost_alloc_free(a, t->y);
    roost_alloc_free(a, t->weights);
    roost_alloc_free(a, t->norms);
    roost_alloc_free(a, t);
}

static int
create_plain(roost_local_trainer *t, roost_errmsg *em)
{
    t->batch = t->task.batch_size < t->n ? t->task.batch_size : t->n;
    if (t->src.ops != NULL && t->batch > t->src.ops->max_batch)
        t->batch = t->src.ops->max_batch;
    if (t->src.model != NULL) {
        int rc = roost_workspace_create(&t->ws, t->src.model, t->batch, em);
        if (rc != ROOST_OK)
            return rc;
    } else {
        t->weights = roost_alloc_calloc(t->alloc, t->batch, sizeof(float));
        t->norms = roost_alloc_calloc(t->alloc, t->batch, sizeof(double));
        if (t->weights == NULL || t->norms == NULL)
            return roost_fail(em, ROOST_ENOMEM, "local training: no memory");
    }
    t->perm = roost_alloc_calloc(t->alloc, t->n, sizeof(uint32_t));
    t->bidx = roost_alloc_calloc(t->alloc, t->batch, sizeof(uint32_t));
    t->x = roost_alloc_calloc(t->alloc, t->batch, t->dim * sizeof(float));
    t->y = roost_alloc_calloc(t->alloc, t->batch, 1);
    if (t->perm == NULL || t->bidx == NULL || t->x == NULL || t->y == NULL)
        return roost_fail(em, ROOST_ENOMEM, "local training: no memory");
    for (size_t i = 0; i < t->n; i++)
        t->perm[i] = (uint32_t)i;
    t->pos = t->n; /* shuffle before the first batch */
    size_t per_epoch = (t->n + t->batch - 1) / t->batch;
    t->steps_total = (uint64_t)per_epoch * t->task.local_epochs;
    return ROOST_OK;
}

static int
create_dp(roost_local_trainer *t, roost_errmsg *em)
{
    roost_local_plan_info plan;
    int rc = roost_local_plan(&t->task, t->n, &plan, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dpsgd_config cfg = {
        .sampling_rate = plan.q,
        .noise_multiplier = t->task.noise_multiplier,
        .clip_norm = t->task.clip_norm,
        .sampling = ROOST_DPSGD_POISSON,
        .noise_memo = t->task.noise_memo,
    };
    rc = t->src.model != NULL
             ? roost_dpsgd_create(&t->dp, t->alloc, t->src.model, t->n, &cfg,
                                  t->rng, em)
             : roost_dpsgd_create_ops(&t->dp, t->alloc, t->src.ops, t->n_params,
                                      t->dim, t->n, &cfg, t->rng, em);
    if (rc != ROOST_OK)
        return rc;
    t->steps_total = plan.steps;
    t->per_epoch = (uint64_t)ceil(1.0 / plan.q);
    return ROOST_OK;
}

int
roost_local_trainer_create(roost_local_trainer **out,
                           const roost_allocator *alloc,
                           const roost_local_source *src,
                           const roost_dataset *ds, const uint32_t *idx,
                           size_t n, const float *global, float *params,
                           const roost_local_task *task, roost_rng *rng,
                           roost_errmsg *em)
{
    if (out == NULL || src == NULL || ds == NULL || global == NULL ||
        params == NULL || task == NULL || rng == NULL ||
        (src->model == NULL) == (src->ops == NULL))
        return roost_fail(em, ROOST_EINVAL, "local training: bad argument");
    *out = NULL;
    if (n == 0)
        return roost_fail(em, ROOST_EINVAL, "no local examples");
    int rc = check_task(task, em);
    if (rc != ROOST_OK)
        return rc;
    size_t n_params =
        src->model ? roost_model_param_count(src->model) : src->n_params;
    size_t dim =
        src->model ? roost_model_input_dim(src->model) : src->input_dim;
    if (n_params == 0 || dim == 0)
        return roost_fail(em, ROOST_EINVAL, "local training: empty model");
    if (roost_dataset_dim(ds) != dim)
        return roost_fail(em, ROOST_ESHAPE,
                          "local data has %zu features per example, the "
                          "model takes %zu",
                          roost_dataset_dim(ds), dim);
    if (src->ops != NULL && src->ops->max_batch == 0)
        return roost_fail(em, ROOST_EINVAL, "trainer accepts no batch");
    roost_local_trainer *t = roost_alloc_calloc(alloc, 1, sizeof(*t));
    if (t == NULL)
        return roost_fail(em, ROOST_ENOMEM, "local training: no memory");
    t->alloc = alloc;
    t->src = *src;
    t->ds = ds;
    t->idx = idx;
    t->n = n;
    t->global = global;
    t->params = params;
    t->task = *task;
    t->rng = rng;
    t->n_params = n_params;
    t->dim = dim;
    t->res.loss = (double)NAN;
    t->res.accuracy = (double)NAN;
    t->res.examples = n;
    roost_sgd_config sc = {
        .lr = (float)task->learning_rate,
        .momentum = (float)task->momentum,
        .weight_decay = (float)task->weight_decay,
        .prox_mu = (float)task->prox_mu,
    };
    rc = roost_sgd_create(&t->sgd, alloc, n_params, &sc, em);
    if (rc != ROOST_OK)
        goto fail;
    /* The built-in model's plain steps fuse the update into the backward
     * pass and need no gradient vector. */
    if (task->dp || src->model == NULL) {
        t->grad = roost_alloc_calloc(alloc, n_params, sizeof(float));
        if (t->grad == NULL) {
            rc = roost_fail(em, ROOST_ENOMEM, "local training: no memory");
            goto fail;
        }
    }
    rc = task->dp ? create_dp(t, em) : create_plain(t, em);
    if (rc != ROOST_OK)
        goto fail;
    memcpy(params, global, n_params * sizeof(float));
    *out = t;
    return ROOST_OK;
fail:
    roost_local_trainer_destroy(t);
    return rc;
}

/* The mean gradient of a batch from the app's trainer. It gives
 * per-example passes: weights 1/b make the weighted sum the mean
 * gradient. */
static int
app_grad(roost_local_trainer *t, size_t b, double *loss)
{
    int rc = t->src.ops->example_norms(t->src.ops->arg, t->params, t->x, t->y,
                                       b, t->norms, loss);
    if (rc != ROOST_OK)
        return rc;
    *loss /= (double)b;
    for (size_t i = 0; i < b; i++)
        t->weights[i] = (float)(1.0 / (double)b);
    return t->src.ops->weighted_grad(t->src.ops->arg, t->weights, t->grad);
}

static int
step_plain(roost_local_trainer *t, roost_errmsg *em)
{
    if (t->pos >= t->n) {
        if (t->loss_n > 0)
            t->res.loss = t->loss_sum / (double)t->loss_n;
        if (t->seen > 0)
            t->res.accuracy = (double)t->correct / (double)t->seen;
        t->loss_sum = 0;
        t->loss_n = 0;
        t->correct = t->seen = 0;
        for (size_t j = t->n - 1; j > 0; j--) {
            uint64_t r;
            int rc = roost_rng_below(t->rng, j + 1, &r);
            if (rc != ROOST_OK)
                return roost_fail(em, rc, "random source failed");
            uint32_t tmp = t->perm[j];
            t->perm[j] = t->perm[r];
            t->perm[r] = tmp;
        }
        t->pos = 0;
        t->epoch++;
    }
    size_t b = t->n - t->pos < t->batch ? t->n - t->pos : t->batch;
    for (size_t i = 0; i < b; i++) {
        uint32_t p = t->perm[t->pos + i];
        t->bidx[i] = t->idx != NULL ? t->idx[p] : p;
    }
    t->pos += b;
    int rc = roost_dataset_gather(t->ds, t->bidx, b, t->x, t->y);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "local example index out of range");
    double loss = 0;
    if (t->src.model != NULL) {
        /* The built-in model updates each layer as its gradient is
         * formed (same result as gradient + step, no gradient vector). */
        rc = roost_model_sgd_step(t->ws, t->params, t->x, t->y, b, t->sgd,
                                  t->global, &loss);
    } else {
        rc = app_grad(t, b, &loss);
        if (rc == ROOST_OK)
            rc = roost_sgd_step(t->sgd, t->params, t->grad, t->global);
    }
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "local training step failed");
    t->loss_sum += loss * (double)b;
    t->loss_n += b;
    if (t->src.model != NULL) {
        t->correct += roost_workspace_correct(t->ws);
        t->seen += b;
    }
    return ROOST_OK;
}

static int
step_dp(roost_local_trainer *t, roost_errmsg *em)
{
    roost_dpsgd_step_info info;
    /* The update runs chunk by chunk as the noise is added. */
    int rc = roost_dpsgd_step_sgd(t->dp, t->params, t->ds, t->idx, t->grad,
                                  t->sgd, t->global, &info, em);
    if (rc != ROOST_OK)
        return rc;
    t->res.excluded += info.excluded;
    /* The loss of the last epoch's worth of steps (kept on the device:
     * under DP it is not released). */
    if (t->steps_total - t->res.steps <= t->per_epoch) {
        t->loss_sum += info.loss_sum;
        t->loss_n += info.batch - info.excluded;
    }
    return ROOST_OK;
}

int
roost_local_trainer_step(roost_local_trainer *t, bool *done, roost_errmsg *em)
{
    if (t->done) {
        *done = true;
        return ROOST_OK;
    }
    int rc = t->dp != NULL ? step_dp(t, em) : step_plain(t, em);
    if (rc != ROOST_OK)
        return rc;
    t->res.steps++;
    t->done = t->res.steps >= t->steps_total;
    if (t->done) {
        if (t->dp != NULL) {
            t->res.loss =
                t->loss_n ? t->loss_sum / (double)t->loss_n : (double)NAN;
            t->res.noise_draws = (uint64_t)roost_dpsgd_noise_draws(t->dp);
        } else if (t->loss_n > 0) {
            t->res.loss = t->loss_sum / (double)t->loss_n;
            if (t->seen > 0)
                t->res.accuracy = (double)t->correct / (double)t->seen;
        }
    }
    *done = t->done;
    return ROOST_OK;
}

void
roost_local_trainer_result(const roost_local_trainer *t,
                           roost_local_result *res)
{
    *res = t->res;
}

int
roost_local_train(const roost_model *m, const roost_dataset *ds,
                  const uint32_t *idx, size_t n, const float *global,
                  float *params, const roost_local_task *task, roost_rng *rng,
                  const atomic_int *cancel, roost_local_result *result,
                  roost_errmsg *em)
{
    if (result == NULL)
        return roost_fail(em, ROOST_EINVAL, "local training: NULL result");
    memset(result, 0, sizeof(*result));
    result->loss = (double)NAN;
    result->accuracy = (double)NAN;
    roost_local_source src = {.model = m};
    roost_local_trainer *t = NULL;
    int rc = roost_local_trainer_create(&t, NULL, &src, ds, idx, n, global,
                                        params, task, rng, em);
    bool done = false;
    while (rc == ROOST_OK && !done) {
        if (cancel != NULL &&
            atomic_load_explicit(cancel, memory_order_relaxed) != 0)
            rc = roost_fail(em, ROOST_ECANCELED, "training canceled");
        else
            rc = roost_local_trainer_step(t, &done, em);
    }
    if (t != NULL)
        roost_local_trainer_result(t, result);
    roost_local_trainer_destroy(t);
    return rc;
}

int
roost_local_evaluate(const roost_model *m, const roost_allocator *alloc,
                     const roost_dataset *ds, const uint32_t *idx, size_t n,
                     const float *params, double *loss, double *accuracy,
                     roost_errmsg *em)
{
    if (m == NULL || ds == NULL || params == NULL || loss == NULL ||
        accuracy == NULL)
        return roost_fail(em, ROOST_EINVAL, "evaluation: NULL argument");
    size_t dim = roost_dataset_dim(ds);
    if (n == 0 || n > roost_dataset_count(ds))
        return roost_fail(em, ROOST_EINVAL,
                          "evaluation: %zu examples of %zu available", n,
                          roost_dataset_count(ds));
    if (dim != roost_model_input_dim(m))
        return roost_fail(em, ROOST_EINVAL,
                          "evaluation: examples have %zu features, the model "
                          "takes %zu",
                          dim, roost_model_input_dim(m));
    enum { EVAL_BATCH = 256 };
    size_t cap = n < EVAL_BATCH ? n : EVAL_BATCH;
    roost_workspace *ws = NULL;
    float *x = NULL;
    uint8_t *y = NULL;
    int rc = roost_workspace_create(&ws, m, cap, em);
    if (rc != ROOST_OK)
        return rc;
    if (idx == NULL) {
        /* The first n examples are contiguous: evaluate them in place. */
        rc = roost_model_evaluate(ws, params, roost_dataset_features(ds),
                                  roost_dataset_labels(ds), n, loss, accuracy);
        if (rc != ROOST_OK)
            roost_fail(em, rc, "evaluation failed: %s", roost_strerror(rc));
        goto out;
    }
    x = roost_alloc_malloc(alloc, cap * dim * sizeof(float));
    y = roost_alloc_malloc(alloc, cap);
    if (x == NULL || y == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "evaluation: out of memory");
        goto out;
    }
    double loss_sum = 0, correct = 0;
    for (size_t start = 0; start < n; start += cap) {
        size_t b = n - start < cap ? n - start : cap;
        double bl = 0, ba = 0;
        rc = roost_dataset_gather(ds, idx + start, b, x, y);
        if (rc != ROOST_OK) {
            roost_fail(em, rc, "evaluation: example index out of range");
            goto out;
        }
        rc = roost_model_evaluate(ws, params, x, y, b, &bl, &ba);
        if (rc != ROOST_OK) {
            roost_fail(em, rc, "evaluation failed: %s", roost_strerror(rc));
            goto out;
        }
        loss_sum += bl * (double)b;
        correct += ba * (double)b;
    }
    *loss = loss_sum / (double)n;
    *accuracy = correct / (double)n;
out:
    roost_alloc_free(alloc, x);
    roost_alloc_free(alloc, y);
    roost_workspace_destroy(ws);
    return rc;
}
