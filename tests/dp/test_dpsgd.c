/*
 * test_dpsgd.c - the DP-SGD gradient against a direct computation: with
 * q = 1 and negligible noise it equals the mean of per-example gradients
 * each clipped to the effective clip norm (computed here one example at a
 * time with roost_model_grad); Poisson batch sizes have the binomial mean
 * and variance; the noise has the configured standard deviation; an
 * insecure deterministic rng reproduces a step exactly; examples with a
 * non-finite gradient are left out of a step rather than failing it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dp/dpsgd.h"
#include "test_util.h"

#define N_EX 40
#define DIM 6

struct fixture {
    roost_model *model;
    roost_dataset *ds;
    roost_rng *rng;
    float *params;
    size_t n;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    roost_errmsg em;
    assert_int_equal(roost_model_create(&f->model, NULL, "dense:5,tanh,dense:3",
                                        1, 2, 3, &em),
                     ROOST_OK);
    f->n = roost_model_param_count(f->model);
    assert_int_equal(
        roost_rng_create_insecure_deterministic(&f->rng, NULL, 5, 0), ROOST_OK);
    float x[N_EX * DIM];
    uint8_t y[N_EX];
    for (int i = 0; i < N_EX; i++) {
        for (int j = 0; j < DIM; j++) {
            double u;
            assert_int_equal(roost_rng_uniform(f->rng, &u), ROOST_OK);
            x[i * DIM + j] = (float)(4.0 * u - 2.0);
        }
        y[i] = (uint8_t)(i % 3);
    }
    assert_int_equal(roost_dataset_create_from_arrays(&f->ds, NULL, N_EX, 1, 2,
                                                      3, x, y, 3, &em),
                     ROOST_OK);
    f->params = malloc(f->n * sizeof(float));
    assert_int_equal(roost_model_init_params(f->model, f->params, f->rng),
                     ROOST_OK);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    free(f->params);
    roost_dataset_destroy(f->ds);
    roost_rng_destroy(f->rng);
    roost_model_destroy(f->model);
    free(f);
    return 0;
}

/* A trainer whose per-example gradient is the example itself: the norms
 * DP-SGD sees and the weights it returns are recorded. */
enum { CW_N = 2000, CW_DIM = 4 };
struct clip_probe {
    double norms[CW_N];
    float weights[CW_N];
    size_t seen, base, batch; /* examples so far; this micro-batch */
    const float *x;
};

static int
probe_norms(void *arg, const float *params, const float *x,
            const uint8_t *labels, size_t batch, double *norms_sq,
            double *loss_sum)
{
    (void)params;
    (void)labels;
    struct clip_probe *p = arg;
    if (p->seen + batch > CW_N)
        return ROOST_EINVAL;
    p->base = p->seen;
    p->seen += batch;
    p->batch = batch;
    p->x = x;
    for (size_t i = 0; i < batch; i++) {
        double s = 0;
        for (size_t j = 0; j < CW_DIM; j++)
            s += (double)x[i * CW_DIM + j] * (double)x[i * CW_DIM + j];
        norms_sq[i] = s;
        p->norms[p->base + i] = sqrt(s);
    }
    if (loss_sum != NULL)
        *loss_sum = 0;
    return ROOST_OK;
}

static int
probe_weighted(void *arg, const float *weights, float *grad)
{
    struct clip_probe *p = arg;
    memset(grad, 0, CW_DIM * sizeof(float));
    for (size_t i = 0; i < p->batch; i++) {
        p->weights[p->base + i] = weights[i];
        for (size_t j = 0; j < CW_DIM; j++)
            grad[j] += weights[i] * p->x[i * CW_DIM + j];
    }
    return ROOST_OK;
}

/* The float clip weight never scales an example above the effective clip
 * norm: clip_eff / norm rounded to float lands above the exact quotient
 * about half the time, so the weight must be rounded down. */
static void
clip_weight_never_exceeds_effective_clip(void **state)
{
    struct fixture *f = *state;
    static struct clip_probe probe;
    static float x[CW_N * CW_DIM];
    uint8_t *y = calloc(CW_N, 1);
    for (size_t i = 0; i < CW_N * CW_DIM; i++) {
        double u;
        assert_int_equal(roost_rng_uniform(f->rng, &u), ROOST_OK);
        x[i] = (float)(1.0 + 9.0 * u); /* every norm is >= 2: all clip */
    }
    roost_dataset *ds = NULL;
    assert_int_equal(roost_dataset_create_from_arrays(&ds, NULL, CW_N, 1, 2, 2,
                                                      x, y, 2, NULL),
                     ROOST_OK);
    roost_grad_ops ops = {probe_norms, probe_weighted, &probe, CW_N};
    roost_dpsgd_config cfg = {
        .sampling_rate = 1.0, .noise_multiplier = 1.0, .clip_norm = 1.0};
    roost_dpsgd *d = NULL;
    assert_int_equal(roost_dpsgd_create_ops(&d, NULL, &ops, CW_DIM, CW_DIM,
                                            CW_N, &cfg, f->rng, NULL),
                     ROOST_OK);
    float params[CW_DIM] = {0}, grad[CW_DIM];
    roost_dpsgd_step_info info;
    assert_int_equal(roost_dpsgd_step(d, params, ds, NULL, grad, &info, NULL),
                     ROOST_OK);
    assert_int_equal(probe.seen, CW_N);
    assert_int_equal(info.clipped, CW_N);
    double clip_eff = roost_dpsgd_effective_clip(d);
    for (size_t i = 0; i < CW_N; i++) {
        double scaled = (double)probe.weights[i] * probe.norms[i];
        assert_true(scaled <= clip_eff);
        /* Rounded down by at most a few ulps, not clipped harder. */
        assert_true(scaled > clip_eff * (1.0 - 1e-6));
    }
    roost_dpsgd_destroy(d);
    roost_dataset_destroy(ds);
    free(y);
}

static void
full_batch_equals_mean_of_clipped_gradients(void **state)
{
    struct fixture *f = *state;
    roost_dpsgd_config cfg = {.sampling_rate = 1.0,
                              .noise_multiplier = 1e-7,
                              .clip_norm = 0.5,
                              .micro_batch = 16}; /* 3 micro-batches */
    roost_dpsgd *d;
    roost_errmsg em;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, &em),
        ROOST_OK);
    double c_eff = roost_dpsgd_effective_clip(d);
    assert_true(c_eff < 0.5 && c_eff > 0.49);
    float *grad = malloc(f->n * sizeof(float));
    roost_dpsgd_step_info info;
    assert_int_equal(
        roost_dpsgd_step(d, f->params, f->ds, NULL, grad, &info, &em),
        ROOST_OK);
    assert_int_equal(info.batch, N_EX);
    assert_true(info.clipped > 0);

    /* Reference: clip each example's gradient separately. */
    roost_workspace *ws;
    assert_int_equal(roost_workspace_create(&ws, f->model, 1, &em), ROOST_OK);
    double *ref = calloc(f->n, sizeof(double));
    float *g = malloc(f->n * sizeof(float));
    size_t clipped = 0;
    for (uint32_t i = 0; i < N_EX; i++) {
        const float *xi = roost_dataset_example(f->ds, i);
        uint8_t yi = roost_dataset_labels(f->ds)[i];
        assert_int_equal(roost_model_grad(ws, f->params, xi, &yi, 1, g, NULL),
                         ROOST_OK);
        double norm = 0;
        for (size_t j = 0; j < f->n; j++)
            norm += (double)g[j] * (double)g[j];
        norm = sqrt(norm);
        double w = norm > c_eff ? c_eff / norm : 1.0;
        clipped += norm > c_eff;
        for (size_t j = 0; j < f->n; j++)
            ref[j] += w * (double)g[j] / N_EX;
    }
    assert_int_equal(clipped, info.clipped);
    for (size_t j = 0; j < f->n; j++)
        assert_near(grad[j], ref[j], 1e-4);
    free(g);
    free(ref);
    free(grad);
    roost_workspace_destroy(ws);
    roost_dpsgd_destroy(d);
}

/* A trainer whose per-example gradient is the example itself, as
 * clip_probe's, except that an example whose first feature is above 1e30
 * has a non-finite gradient (NaN): an overflow in a model. Its NaN also
 * reaches pass 2 if the example is there, even at weight 0. */
enum { NF_N = 40, NF_DIM = 4 };
struct nf_probe {
    const float *x;
    size_t batch;
};

static int
nf_norms(void *arg, const float *params, const float *x, const uint8_t *labels,
         size_t batch, double *norms_sq, double *loss_sum)
{
    (void)params;
    (void)labels;
    struct nf_probe *p = arg;
    p->x = x;
    p->batch = batch;
    for (size_t i = 0; i < batch; i++) {
        double s = 0;
        for (size_t j = 0; j < NF_DIM; j++)
            s += (double)x[i * NF_DIM + j] * (double)x[i * NF_DIM + j];
        norms_sq[i] = x[i * NF_DIM] > 1e30f ? (double)NAN : s;
    }
    if (loss_sum != NULL)
        *loss_sum = (double)batch;
    return ROOST_OK;
}

static int
nf_weighted(void *arg, const float *weights, float *grad)
{
    struct nf_probe *p = arg;
    memset(grad, 0, NF_DIM * sizeof(float));
    for (size_t i = 0; i < p->batch; i++)
        for (size_t j = 0; j < NF_DIM; j++)
            grad[j] += p->x[i * NF_DIM] > 1e30f
                           ? weights[i] * NAN
                           : weights[i] * p->x[i * NF_DIM + j];
    return ROOST_OK;
}

/* Examples whose gradient is not finite are left out of the step, which
 * goes on with the others, instead of failing it: a failed step would
 * decide from one example's data whether the device sends an update.
 * Here a whole first micro-batch (the path that must still write grad),
 * one example of another and one of the last are bad; the step equals
 * the mean (over all NF_N, the expected batch) of the other examples'
 * clipped gradients. It used to fail with ROOST_ENONFINITE. */
static void
nonfinite_examples_are_left_out(void **state)
{
    struct fixture *f = *state;
    float x[NF_N * NF_DIM];
    uint8_t y[NF_N] = {0};
    bool bad[NF_N] = {false};
    for (uint32_t i = 0; i < NF_N; i++) {
        bad[i] = i < 8 || i == 10 || i == 35;
        for (size_t j = 0; j < NF_DIM; j++) {
            double u;
            assert_int_equal(roost_rng_uniform(f->rng, &u), ROOST_OK);
            x[i * NF_DIM + j] = (float)(2.0 * u - 1.0);
        }
        if (bad[i])
            x[i * NF_DIM] = 3e38f;
    }
    roost_dataset *ds = NULL;
    roost_errmsg em;
    assert_int_equal(roost_dataset_create_from_arrays(&ds, NULL, NF_N, 1, 2, 2,
                                                      x, y, 2, &em),
                     ROOST_OK);
    struct nf_probe probe = {0};
    roost_grad_ops ops = {nf_norms, nf_weighted, &probe, 8};
    roost_dpsgd_config cfg = {.sampling_rate = 1.0,
                              .noise_multiplier = 1e-7,
                              .clip_norm = 1.0,
                              .micro_batch = 8}; /* 5 micro-batches */
    roost_dpsgd *d = NULL;
    assert_int_equal(roost_dpsgd_create_ops(&d, NULL, &ops, NF_DIM, NF_DIM,
                                            NF_N, &cfg, f->rng, &em),
                     ROOST_OK);
    double c_eff = roost_dpsgd_effective_clip(d);
    float params[NF_DIM] = {0}, grad[NF_DIM];
    roost_dpsgd_step_info info;
    assert_int_equal(roost_dpsgd_step(d, params, ds, NULL, grad, &info, &em),
                     ROOST_OK);
    assert_int_equal(info.batch, NF_N);
    assert_int_equal(info.excluded, 10);
    /* The loss is the kept examples' (the probe's loss is 1 each). */
    assert_true(info.loss_sum == (double)(NF_N - 10));
    double ref[NF_DIM] = {0};
    for (size_t i = 0; i < NF_N; i++) {
        if (bad[i])
            continue;
        double norm = 0;
        for (size_t j = 0; j < NF_DIM; j++)
            norm += (double)x[i * NF_DIM + j] * (double)x[i * NF_DIM + j];
        norm = sqrt(norm);
        double w = norm > c_eff ? c_eff / norm : 1.0;
        for (size_t j = 0; j < NF_DIM; j++)
            ref[j] += w * (double)x[i * NF_DIM + j] / NF_N;
    }
    for (size_t j = 0; j < NF_DIM; j++)
        assert_near(grad[j], ref[j], 1e-5);
    roost_dpsgd_destroy(d);
    roost_dataset_destroy(ds);
}

static void
poisson_batches_and_noise_scale(void **state)
{
    struct fixture *f = *state;
    /* Zero parameters make every per-example gradient small but nonzero;
     * the noise then dominates: each coordinate of grad * q*N has stddev
     * about sigma*C. */
    roost_dpsgd_config cfg = {
        .sampling_rate = 0.25, .noise_multiplier = 2.0, .clip_norm = 1.0};
    roost_dpsgd *d;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, NULL),
        ROOST_OK);
    float *grad = malloc(f->n * sizeof(float));
    const int steps = 400;
    double sum_b = 0, sum_b2 = 0, sum_g = 0, sum_g2 = 0;
    size_t count_g = 0;
    for (int s = 0; s < steps; s++) {
        roost_dpsgd_step_info info;
        assert_int_equal(
            roost_dpsgd_step(d, f->params, f->ds, NULL, grad, &info, NULL),
            ROOST_OK);
        sum_b += (double)info.batch;
        sum_b2 += (double)info.batch * (double)info.batch;
        for (size_t j = 0; j < f->n; j++) {
            double v = (double)grad[j] * 0.25 * N_EX;
            sum_g += v;
            sum_g2 += v * v;
            count_g++;
        }
    }
    double mean_b = sum_b / steps;
    double var_b = sum_b2 / steps - mean_b * mean_b;
    /* Binomial(40, 0.25): mean 10, variance 7.5. */
    assert_true(fabs(mean_b - 10.0) < 0.6);
    assert_true(var_b > 5.0 && var_b < 10.5);
    double sd = sqrt(sum_g2 / (double)count_g -
                     (sum_g / (double)count_g) * (sum_g / (double)count_g));
    /* sigma*C = 2, plus the clipped signal (norm <= 1 per example). */
    assert_true(sd > 1.9 && sd < 2.3);
    assert_true(roost_dpsgd_noise_draws(d) == (double)steps * (double)f->n);
    free(grad);
    roost_dpsgd_destroy(d);
}

static void
deterministic_rng_reproduces_a_step(void **state)
{
    struct fixture *f = *state;
    roost_dpsgd_config cfg = {
        .sampling_rate = 0.3, .noise_multiplier = 1.0, .clip_norm = 1.0};
    float *a = malloc(f->n * sizeof(float));
    float *b = malloc(f->n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        roost_rng *rng;
        assert_int_equal(
            roost_rng_create_insecure_deterministic(&rng, NULL, 11, 3),
            ROOST_OK);
        roost_dpsgd *d;
        assert_int_equal(
            roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, rng, NULL),
            ROOST_OK);
        assert_int_equal(
            roost_dpsgd_step(d, f->params, f->ds, NULL, k ? b : a, NULL, NULL),
            ROOST_OK);
        roost_dpsgd_destroy(d);
        roost_rng_destroy(rng);
    }
    assert_memory_equal(a, b, f->n * sizeof(float));
    free(a);
    free(b);
}

/* The fused step (noise and momentum SGD chunk by chunk) gives exactly
 * what the step followed by roost_sgd_step gives, over several steps (so
 * the velocity carries over), at a size with several noise chunks. */
static void
fused_update_matches_step_then_sgd(void **state)
{
    struct fixture *f = *state;
    /* A wider model than the fixture's: 1,000 hidden units give 10,003
     * parameters, five noise chunks. */
    roost_model *model;
    assert_int_equal(roost_model_create(&model, NULL, "dense:1000,tanh,dense:3",
                                        1, 2, 3, NULL),
                     ROOST_OK);
    size_t n = roost_model_param_count(model);
    assert_true(n > 4 * 2048);
    float *init = malloc(n * sizeof(float));
    assert_non_null(init);
    assert_int_equal(roost_model_init_params(model, init, f->rng), ROOST_OK);
    roost_dpsgd_config cfg = {
        .sampling_rate = 0.3, .noise_multiplier = 1.0, .clip_norm = 1.0};
    roost_sgd_config sc = {.lr = 0.05f, .momentum = 0.9f, .prox_mu = 0.01f};
    float *p[2], *grad = malloc(n * sizeof(float));
    float *global = malloc(n * sizeof(float));
    assert_non_null(grad);
    assert_non_null(global);
    for (size_t i = 0; i < n; i++)
        global[i] = init[i] * 0.5f;
    for (int k = 0; k < 2; k++) {
        p[k] = malloc(n * sizeof(float));
        assert_non_null(p[k]);
        memcpy(p[k], init, n * sizeof(float));
        roost_rng *rng;
        assert_int_equal(
            roost_rng_create_insecure_deterministic(&rng, NULL, 5, 9),
            ROOST_OK);
        roost_dpsgd *d;
        assert_int_equal(
            roost_dpsgd_create(&d, NULL, model, N_EX, &cfg, rng, NULL),
            ROOST_OK);
        roost_sgd *sgd;
        assert_int_equal(roost_sgd_create(&sgd, NULL, n, &sc, NULL), ROOST_OK);
        for (int s = 0; s < 3; s++) {
            if (k == 0) {
                assert_int_equal(
                    roost_dpsgd_step(d, p[k], f->ds, NULL, grad, NULL, NULL),
                    ROOST_OK);
                assert_int_equal(roost_sgd_step(sgd, p[k], grad, global),
                                 ROOST_OK);
            } else {
                assert_int_equal(roost_dpsgd_step_sgd(d, p[k], f->ds, NULL,
                                                      grad, sgd, global, NULL,
                                                      NULL),
                                 ROOST_OK);
            }
        }
        roost_errmsg em;
        if (k == 1) {
            /* FedProx without the anchor, and a mismatched optimiser. */
            assert_int_equal(roost_dpsgd_step_sgd(d, p[k], f->ds, NULL, grad,
                                                  sgd, NULL, NULL, &em),
                             ROOST_EINVAL);
            assert_non_null(strstr(em.text, "FedProx"));
            assert_int_equal(roost_dpsgd_step_sgd(NULL, p[k], f->ds, NULL, grad,
                                                  sgd, global, NULL, &em),
                             ROOST_EINVAL);
            roost_sgd *small;
            assert_int_equal(roost_sgd_create(&small, NULL, 3, &sc, NULL),
                             ROOST_OK);
            assert_int_equal(roost_dpsgd_step_sgd(d, p[k], f->ds, NULL, grad,
                                                  small, global, NULL, &em),
                             ROOST_EINVAL);
            roost_sgd_destroy(small);
        }
        roost_sgd_destroy(sgd);
        roost_dpsgd_destroy(d);
        roost_rng_destroy(rng);
    }
    assert_memory_equal(p[0], p[1], n * sizeof(float));
    assert_memory_not_equal(p[0], init, n * sizeof(float));
    free(p[0]);
    free(p[1]);
    free(grad);
    free(global);
    free(init);
    roost_model_destroy(model);
}

static void
bad_configs_are_refused(void **state)
{
    struct fixture *f = *state;
    roost_dpsgd *d;
    roost_errmsg em;
    roost_dpsgd_config cfg = {
        .sampling_rate = 0.0, .noise_multiplier = 1.0, .clip_norm = 1.0};
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, &em),
        ROOST_EINVAL);
    assert_null(d);
    assert_non_null(strstr(em.text, "sampling rate"));
    cfg.sampling_rate = 0.5;
    cfg.noise_multiplier = 0.0;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, &em),
        ROOST_EINVAL);
    assert_non_null(strstr(em.text, "noise multiplier"));
    cfg.noise_multiplier = 1.0;
    cfg.clip_norm = NAN;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, &em),
        ROOST_EINVAL);
    cfg.clip_norm = 1.0;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, 0, &cfg, f->rng, &em),
        ROOST_EINVAL);
    /* A multiplier so small that a clipped sum over 1,000 examples could
     * leave the noise grid's range (the step would then fail or not with
     * the data) is refused up front; over N_EX examples it is accepted. */
    cfg.noise_multiplier = 1e-7;
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, 1000, &cfg, f->rng, &em),
        ROOST_EINVAL);
    assert_null(d);
    assert_non_null(strstr(em.text, "too small for 1000 examples"));
    assert_int_equal(
        roost_dpsgd_create(&d, NULL, f->model, N_EX, &cfg, f->rng, &em),
        ROOST_OK);
    roost_dpsgd_destroy(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            full_batch_equals_mean_of_clipped_gradients, setup, teardown),
        cmocka_unit_test_setup_teardown(
            clip_weight_never_exceeds_effective_clip, setup, teardown),
        cmocka_unit_test_setup_teardown(nonfinite_examples_are_left_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(poisson_batches_and_noise_scale, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fused_update_matches_step_then_sgd,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(deterministic_rng_reproduces_a_step,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_configs_are_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
