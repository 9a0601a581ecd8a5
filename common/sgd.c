/*
 * sgd.c - stochastic gradient descent with momentum, weight decay and the
 * FedProx proximal term, over one flat parameter vector.
 *
 * Semantics follow torch.optim.SGD (dampening 0, no Nesterov) so results
 * can be compared with PyTorch: d = g + wd*w + mu*(w - w_global);
 * v = momentum*v + d; w -= lr*v. The FedProx term is the gradient of
 * mu/2 ||w - w_global||^2. The velocity buffer is allocated once at
 * create; a step never allocates. No locking: one optimiser per thread.
 */
#include "common/model.h"

#include "common/alloc.h"

#include <math.h>
#include <string.h>

struct roost_sgd {
    const roost_allocator *alloc;
    size_t n;
    roost_sgd_config cfg;
    float *velocity; /* NULL when momentum is 0 */
};

static bool
hyper_ok(float v)
{
    return isfinite(v) && v >= 0.0f;
}

int
roost_sgd_create(roost_sgd **out, const roost_allocator *alloc, size_t n,
                 const roost_sgd_config *cfg, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "sgd: NULL output pointer");
    *out = NULL;
    if (cfg == NULL || n == 0)
        return roost_fail(em, ROOST_EINVAL, "sgd: no config or empty vector");
    if (!hyper_ok(cfg->lr) || !hyper_ok(cfg->momentum) ||
        !hyper_ok(cfg->weight_decay) || !hyper_ok(cfg->prox_mu) ||
        cfg->momentum >= 1.0f)
        return roost_fail(em, ROOST_EINVAL,
                          "sgd: lr, weight decay and prox mu must be finite "
                          "and >= 0, momentum in [0, 1)");
    roost_sgd *opt = roost_alloc_calloc(alloc, 1, sizeof(*opt));
    if (opt == NULL)
        return roost_fail(em, ROOST_ENOMEM, "sgd: out of memory");
    opt->alloc = alloc;
    opt->n = n;
    opt->cfg = *cfg;
    if (cfg->momentum > 0.0f) {
        opt->velocity = roost_alloc_calloc(alloc, n, sizeof(float));
        if (opt->velocity == NULL) {
            roost_alloc_free(alloc, opt);
            return roost_fail(em, ROOST_ENOMEM, "sgd: out of memory");
        }
    }
    *out = opt;
    return ROOST_OK;
}

void
roost_sgd_destroy(roost_sgd *opt)
{
    if (opt == NULL)
        return;
    roost_alloc_free(opt->alloc, opt->velocity);
    roost_alloc_free(opt->alloc, opt);
}

void
roost_sgd_reset(roost_sgd *opt)
{
    if (opt != NULL && opt->velocity != NULL)
        memset(opt->velocity, 0, opt->n * sizeof(float));
}

void
roost_sgd_state(roost_sgd *opt, roost_sgd_config *cfg, float **velocity,
                size_t *n)
{
    *cfg = opt->cfg;
    *velocity = opt->velocity;
    *n = opt->n;
}

int
roost_sgd_set_lr(roost_sgd *opt, float lr)
{
    if (opt == NULL || !hyper_ok(lr))
        return ROOST_EINVAL;
    opt->cfg.lr = lr;
    return ROOST_OK;
}

/* The update loops are written without branches or aliasing so that the
 * compiler vectorises them (this file is built with -O3, see
 * common/CMakeLists.txt): at small batch sizes the step is a visible share
 * of the training time. */
static void
step_plain(float *restrict w, const float *restrict g, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++)
        w[i] -= lr * g[i];
}

static void
step_momentum(float *restrict w, float *restrict v, const float *restrict g,
              size_t n, float lr, float mom)
{
    for (size_t i = 0; i < n; i++) {
        float vi = mom * v[i] + g[i];
        v[i] = vi;
        w[i] -= lr * vi;
    }
}

/* The general case: weight decay and/or the FedProx pull towards anchor
 * (anchor == NULL means mu is 0). */
static void
step_general(float *restrict w, float *restrict v, const float *restrict g,
             const float *restrict anchor, size_t n, float lr, float mom,
             float wd, float mu)
{
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (anchor != NULL)
            d += mu * (w[i] - anchor[i]);
        if (v != NULL) {
            d += mom * v[i];
            v[i] = d;
        }
        w[i] -= lr * d;
    }
}

int
roost_sgd_step_range(roost_sgd *opt, float *params, const float *grad,
                     const float *global_params, size_t off, size_t count)
{
    if (opt == NULL || params == NULL || grad == NULL || off > opt->n ||
        count > opt->n - off)
        return ROOST_EINVAL;
    const float lr = opt->cfg.lr, mom = opt->cfg.momentum;
    const float wd = opt->cfg.weight_decay, mu = opt->cfg.prox_mu;
    if (mu > 0.0f && global_params == NULL)
        return ROOST_EINVAL;
    float *v = opt->velocity != NULL ? opt->velocity + off : NULL;
    params += off;
    grad += off;
    if (wd == 0.0f && mu == 0.0f) {
        if (v == NULL)
            step_plain(params, grad, count, lr);
        else
            step_momentum(params, v, grad, count, lr, mom);
    } else {
        step_general(params, v, grad, mu > 0.0f ? global_params + off : NULL,
                     count, lr, mom, wd, mu);
    }
    return ROOST_OK;
}

int
roost_sgd_step(roost_sgd *opt, float *params, const float *grad,
               const float *global_params)
{
    if (opt == NULL)
        return ROOST_EINVAL;
    return roost_sgd_step_range(opt, params, grad, global_params, 0, opt->n);
}
