/*
 * local_train.c - one task's local training (see local_train.h).
 *
 * Non-private tasks run shuffled minibatches of batch_size for
 * local_epochs epochs. DP tasks run exactly plan.steps DP-SGD steps, the
 * number the ledger was charged for. Either way the optimiser is SGD with
 * momentum, weight decay and the FedProx term anchored at the global
 * model -- post-processing of the privatized gradients.
 */
#include "client/src/local_train.h"

#include "dp/dpsgd.h"
#include "dp/noise.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* More noisy steps than this in one round is certainly a misconfigured
 * task (q tiny), not a plan to honour. */
#define ROOST_LOCAL_MAX_STEPS 10000000u

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

/* Plain minibatch SGD over shuffled local data. */
static int
train_plain(const roost_model *m, const roost_dataset *ds, const uint32_t *idx,
            size_t n, const float *global, float *params,
            const roost_local_task *task, roost_rng *rng,
            const volatile int *cancel, roost_sgd *sgd, float *grad,
            roost_local_result *res, roost_errmsg *em)
{
    size_t batch = task->batch_size < n ? task->batch_size : n;
    size_t dim = roost_model_input_dim(m);
    roost_workspace *ws = NULL;
    int rc = roost_workspace_create(&ws, m, batch, em);
    if (rc != ROOST_OK)
        return rc;
    uint32_t *perm = malloc(n * sizeof(*perm));
    uint32_t *bidx = malloc(batch * sizeof(*bidx));
    float *x = malloc(batch * dim * sizeof(float));
    uint8_t *y = malloc(batch);
    if (perm == NULL || bidx == NULL || x == NULL || y == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "local training: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (uint32_t e = 0; e < task->local_epochs; e++) {
        for (size_t j = n - 1; j > 0; j--) {
            uint64_t r;
            rc = roost_rng_below(rng, j + 1, &r);
            if (rc != ROOST_OK)
                goto out;
            uint32_t t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        double loss_sum = 0;
        size_t n_batches = 0;
        for (size_t start = 0; start < n; start += batch) {
            if (cancel != NULL && *cancel) {
                rc = ROOST_ECANCELED;
                goto out;
            }
            size_t b = n - start < batch ? n - start : batch;
            for (size_t i = 0; i < b; i++)
                bidx[i] = idx != NULL ? idx[perm[start + i]] : perm[start + i];
            rc = roost_dataset_gather(ds, bidx, b, x, y);
            if (rc != ROOST_OK)
                goto out;
            double loss = 0;
            rc = roost_model_grad(ws, params, x, y, b, grad, &loss);
            if (rc == ROOST_OK)
                rc = roost_sgd_step(sgd, params, grad, global);
            if (rc != ROOST_OK) {
                roost_fail(em, rc, "local training step failed");
                goto out;
            }
            loss_sum += loss;
            n_batches++;
            res->steps++;
        }
        res->loss = n_batches ? loss_sum / (double)n_batches : (double)NAN;
    }
out:
    free(perm);
    free(bidx);
    free(x);
    free(y);
    roost_workspace_destroy(ws);
    return rc;
}

static int
train_dp(const roost_model *m, const roost_dataset *ds, const uint32_t *idx,
         size_t n, const float *global, float *params,
         const roost_local_task *task, roost_rng *rng,
         const volatile int *cancel, roost_sgd *sgd, float *grad,
         roost_local_result *res, roost_errmsg *em)
{
    roost_local_plan_info plan;
    int rc = roost_local_plan(task, n, &plan, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dpsgd_config cfg = {
        .sampling_rate = plan.q,
        .noise_multiplier = task->noise_multiplier,
        .clip_norm = task->clip_norm,
        .sampling = ROOST_DPSGD_POISSON,
    };
    roost_dpsgd *d = NULL;
    rc = roost_dpsgd_create(&d, NULL, m, n, &cfg, rng, em);
    if (rc != ROOST_OK)
        return rc;
    /* Report the loss of the last epoch's worth of steps. */
    uint64_t per_epoch = (uint64_t)ceil(1.0 / plan.q);
    double loss_sum = 0;
    size_t loss_n = 0;
    for (uint64_t s = 0; s < plan.steps; s++) {
        if (cancel != NULL && *cancel) {
            rc = ROOST_ECANCELED;
            break;
        }
        roost_dpsgd_step_info info;
        rc = roost_dpsgd_step(d, params, ds, idx, grad, &info, em);
        if (rc == ROOST_OK)
            rc = roost_sgd_step(sgd, params, grad, global);
        if (rc != ROOST_OK)
            break;
        if (plan.steps - s <= per_epoch) {
            loss_sum += info.loss_sum;
            loss_n += info.batch;
        }
        res->steps++;
    }
    res->loss = loss_n ? loss_sum / (double)loss_n : (double)NAN;
    res->noise_draws = roost_dpsgd_noise_draws(d);
    roost_noise_closeness(roost_dpsgd_noise(d), &res->noise_mu,
                          &res->noise_beta);
    roost_dpsgd_destroy(d);
    return rc;
}

int
roost_local_train(const roost_model *m, const roost_dataset *ds,
                  const uint32_t *idx, size_t n, const float *global,
                  float *params, const roost_local_task *task, roost_rng *rng,
                  const volatile int *cancel, roost_local_result *result,
                  roost_errmsg *em)
{
    if (m == NULL || ds == NULL || global == NULL || params == NULL ||
        task == NULL || rng == NULL || result == NULL)
        return roost_fail(em, ROOST_EINVAL, "local training: NULL argument");
    memset(result, 0, sizeof(*result));
    result->loss = (double)NAN;
    if (n == 0)
        return roost_fail(em, ROOST_EINVAL, "no local examples");
    if (roost_dataset_dim(ds) != roost_model_input_dim(m))
        return roost_fail(em, ROOST_ESHAPE,
                          "local data has %zu features per example, the "
                          "model takes %zu",
                          roost_dataset_dim(ds), roost_model_input_dim(m));
    int rc = check_task(task, em);
    if (rc != ROOST_OK)
        return rc;
    size_t n_params = roost_model_param_count(m);
    memcpy(params, global, n_params * sizeof(float));
    roost_sgd_config sc = {
        .lr = (float)task->learning_rate,
        .momentum = (float)task->momentum,
        .weight_decay = (float)task->weight_decay,
        .prox_mu = (float)task->prox_mu,
    };
    roost_sgd *sgd = NULL;
    rc = roost_sgd_create(&sgd, NULL, n_params, &sc, em);
    if (rc != ROOST_OK)
        return rc;
    float *grad = malloc(n_params * sizeof(float));
    if (grad == NULL) {
        roost_sgd_destroy(sgd);
        return roost_fail(em, ROOST_ENOMEM, "local training: out of memory");
    }
    result->examples = n;
    rc = task->dp ? train_dp(m, ds, idx, n, global, params, task, rng, cancel,
                             sgd, grad, result, em)
                  : train_plain(m, ds, idx, n, global, params, task, rng,
                                cancel, sgd, grad, result, em);
    free(grad);
    roost_sgd_destroy(sgd);
    return rc;
}
