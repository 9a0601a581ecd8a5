/*
 * test_model.c - the model engine: spec parsing and its errors, the
 * parameter layout, finite-difference gradient checks of every layer type
 * and the loss, the per-example norm and weighted-sum API against
 * per-example gradients computed one at a time, batch consistency, SGD
 * semantics and argument checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "test_util.h"

/* A model, workspace and random parameters and data for one test. */
struct fixture {
    roost_model *m;
    roost_workspace *ws;
    roost_rng *rng;
    size_t np, dim, batch;
    float *params, *grad, *x;
    uint8_t *labels;
};

static float
uniform(roost_rng *rng, float lo, float hi)
{
    double u;
    assert_int_equal(roost_rng_uniform(rng, &u), ROOST_OK);
    return lo + (hi - lo) * (float)u;
}

static void
fixture_init(struct fixture *f, const char *spec, uint32_t c, uint32_t h,
             uint32_t w, size_t batch)
{
    roost_errmsg em;
    memset(f, 0, sizeof(*f));
    int rc = roost_model_create(&f->m, NULL, spec, c, h, w, &em);
    if (rc != ROOST_OK)
        print_error("%s: %s\n", spec, roost_errmsg_text(&em));
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(roost_workspace_create(&f->ws, f->m, batch, &em),
                     ROOST_OK);
    assert_int_equal(
        roost_rng_create_insecure_deterministic(&f->rng, NULL, 1234, 0),
        ROOST_OK);
    f->np = roost_model_param_count(f->m);
    f->dim = roost_model_input_dim(f->m);
    f->batch = batch;
    f->params = calloc(f->np, sizeof(float));
    f->grad = calloc(f->np, sizeof(float));
    f->x = calloc(batch * f->dim, sizeof(float));
    f->labels = calloc(batch, 1);
    assert_non_null(f->params);
    assert_non_null(f->grad);
    assert_non_null(f->x);
    assert_non_null(f->labels);
    assert_int_equal(roost_model_init_params(f->m, f->params, f->rng),
                     ROOST_OK);
    /* Non-zero biases so that their gradients are exercised. */
    for (size_t i = 0; i < roost_model_layout_count(f->m); i++) {
        const roost_param_info *p = roost_model_layout(f->m, i);
        if (p->ndims == 1)
            for (size_t j = 0; j < p->count; j++)
                f->params[p->offset + j] = uniform(f->rng, -0.2f, 0.2f);
    }
    for (size_t i = 0; i < batch * f->dim; i++)
        f->x[i] = uniform(f->rng, -1.0f, 1.0f);
    uint32_t k = roost_model_num_classes(f->m);
    for (size_t b = 0; b < batch; b++) {
        uint64_t v;
        assert_int_equal(roost_rng_below(f->rng, k, &v), ROOST_OK);
        f->labels[b] = (uint8_t)v;
    }
}

static void
fixture_free(struct fixture *f)
{
    roost_workspace_destroy(f->ws);
    roost_model_destroy(f->m);
    roost_rng_destroy(f->rng);
    free(f->params);
    free(f->grad);
    free(f->x);
    free(f->labels);
}

static double
loss_at(struct fixture *f)
{
    double loss;
    float *scratch = calloc(f->np, sizeof(float));
    assert_non_null(scratch);
    assert_int_equal(roost_model_grad(f->ws, f->params, f->x, f->labels,
                                      f->batch, scratch, &loss),
                     ROOST_OK);
    free(scratch);
    return loss;
}

/*
 * gradcheck - central differences on every parameter against the analytic
 * gradient. Float32 forward passes limit the precision, so the step is
 * large-ish and the tolerance is mixed absolute/relative; a wrong index or
 * a missing term gives errors orders of magnitude above it. Where a kink
 * lies inside the difference interval, the analytic value must lie between
 * the two one-sided slopes instead.
 */
static void
gradcheck(const char *spec, uint32_t c, uint32_t h, uint32_t w, size_t batch)
{
    struct fixture f;
    fixture_init(&f, spec, c, h, w, batch);
    double loss;
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, batch, f.grad, &loss),
        ROOST_OK);
    assert_true(isfinite(loss) && loss > 0.0);
    const float eps = 1e-3f;
    const double l0 = loss_at(&f);
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < f.np; i++) {
        float saved = f.params[i];
        f.params[i] = saved + eps;
        double lp = loss_at(&f);
        f.params[i] = saved - eps;
        double lm = loss_at(&f);
        f.params[i] = saved;
        double num = (lp - lm) / (2.0 * (double)eps);
        double err = fabs(num - (double)f.grad[i]);
        double tol = 1e-3 + 1e-2 * fabs(num);
        if (err <= tol)
            continue;
        /* A relu or maxpool kink inside [w - eps, w + eps] makes the
         * central difference meaningless, and shows as one-sided slopes
         * that disagree. The analytic gradient is then one of them (or
         * between), so it must lie inside their bracket. */
        double fwd = (lp - l0) / (double)eps, bwd = (l0 - lm) / (double)eps;
        double lo = fwd < bwd ? fwd : bwd, hi = fwd < bwd ? bwd : fwd;
        double g = (double)f.grad[i];
        if (hi - lo > tol && g >= lo - tol && g <= hi + tol)
            continue;
        if (getenv("GRADCHECK_VERBOSE"))
            print_message("%s: param %zu: numeric %g (one-sided %g, %g) "
                          "analytic %g\n",
                          spec, i, num, bwd, fwd, g);
        bad++;
        if (err > worst)
            worst = err;
    }
    /* Kinks are handled by the bracket above, so no parameter may be off:
     * an allowance would let a wrong bias or a dropped term through. */
    if (bad > 0) {
        print_error("%s: %zu of %zu gradients off (worst %g)\n", spec, bad,
                    f.np, worst);
        fail();
    }
    fixture_free(&f);
}

static void
gradcheck_dense_logreg(void **state)
{
    (void)state;
    gradcheck("dense:5", 3, 4, 4, 4);
}

static void
gradcheck_dense_relu(void **state)
{
    (void)state;
    gradcheck("dense:7,relu,dense:6,relu,dense:4", 1, 3, 5, 5);
}

static void
gradcheck_dense_tanh(void **state)
{
    (void)state;
    gradcheck("dense:7,tanh,dense:4", 2, 3, 3, 3);
}

static void
gradcheck_standalone_activations(void **state)
{
    (void)state;
    gradcheck("tanh,dense:6,relu,relu,dense:3", 1, 4, 4, 3);
}

static void
gradcheck_conv_multichannel_input(void **state)
{
    (void)state;
    /* Two input channels: the input is transposed to CBHW; the dense layer
     * after the pool flattens three channels. */
    gradcheck("conv:3x3,relu,maxpool:2,dense:4", 2, 6, 6, 3);
}

static void
gradcheck_conv_stack(void **state)
{
    (void)state;
    /* Odd, non-square sizes, a pool that floors, a tanh conv, a 5x5 kernel
     * wider than the image and a standalone relu after a pool. */
    gradcheck("conv:2x3,tanh,conv:3x5,maxpool:2,relu,dense:3", 1, 5, 7, 3);
}

static void
gradcheck_conv_kernel_larger_than_image(void **state)
{
    (void)state;
    /* Taps that fall entirely outside the image in one or both directions
     * (im2col and its adjoint see empty ranges). */
    gradcheck("conv:2x7,dense:3", 1, 3, 2, 2);
    gradcheck("conv:2x5,relu,conv:2x9,dense:3", 2, 1, 4, 2);
}

static void
gradcheck_relu_before_conv(void **state)
{
    (void)state;
    gradcheck("relu,conv:2x3,maxpool:3,dense:3", 2, 6, 5, 2);
}

static void
gradcheck_conv_pool_fused(void **state)
{
    (void)state;
    /* A conv's bias and activation applied by the maxpool after it: tanh
     * with a pool that floors (rows and columns left over), and a 3x3 pool
     * (the general path; 2x2 has its own). */
    gradcheck("conv:3x3,tanh,maxpool:2,dense:3", 1, 5, 7, 2);
    gradcheck("conv:3x3,relu,maxpool:3,dense:3", 2, 7, 8, 2);
    gradcheck("conv:2x3,maxpool:2,dense:3", 1, 6, 5, 2);
}

/*
 * A maxpool right after a conv applies the conv's bias and relu to the
 * pooled values; a second relu in the spec stops that fusion without
 * changing the function (relu is idempotent). Both must give the same loss
 * and gradients, at sizes with several im2col chunks per conv and pools
 * that floor.
 */
static void
pool_fusion_matches_unfused(void **state)
{
    (void)state;
    static const struct {
        const char *fused, *unfused;
        uint32_t c, h, w;
        size_t batch;
    } cases[] = {
        {"conv:8x5,relu,maxpool:2,conv:16x5,relu,maxpool:2,dense:4",
         "conv:8x5,relu,relu,maxpool:2,conv:16x5,relu,relu,maxpool:2,dense:4",
         1, 28, 28, 9},
        {"conv:3x3,relu,maxpool:2,dense:5",
         "conv:3x3,relu,relu,maxpool:2,dense:5", 2, 7, 9, 4},
        {"conv:3x3,relu,maxpool:3,dense:5",
         "conv:3x3,relu,relu,maxpool:3,dense:5", 1, 8, 7, 3},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct fixture a, b;
        fixture_init(&a, cases[k].fused, cases[k].c, cases[k].h, cases[k].w,
                     cases[k].batch);
        fixture_init(&b, cases[k].unfused, cases[k].c, cases[k].h, cases[k].w,
                     cases[k].batch);
        assert_int_equal(a.np, b.np);
        assert_memory_equal(a.params, b.params, a.np * sizeof(float));
        double la, lb;
        assert_int_equal(roost_model_grad(a.ws, a.params, a.x, a.labels,
                                          a.batch, a.grad, &la),
                         ROOST_OK);
        assert_int_equal(roost_model_grad(b.ws, b.params, b.x, b.labels,
                                          b.batch, b.grad, &lb),
                         ROOST_OK);
        assert_true(fabs(la - lb) <= 1e-6 * fabs(lb));
        for (size_t i = 0; i < a.np; i++)
            assert_true(fabsf(a.grad[i] - b.grad[i]) <=
                        1e-5f + 1e-4f * fabsf(b.grad[i]));
        fixture_free(&a);
        fixture_free(&b);
    }
}

/*
 * An independent reference in double precision: a direct, loop-by-loop
 * forward pass of a spec (PyTorch's conventions: cross-correlation with
 * "same" zero padding, weights [out, in, k, k] and [out, in], flatten in
 * C, H, W order, floor pooling), written without any of the engine's
 * layouts, fusions or chunking. Returns example b's loss.
 */
#define REF_MAX 4096

static double
ref_example_loss(const char *spec, uint32_t c0, uint32_t h0, uint32_t w0,
                 const double *p, const float *x, uint8_t label)
{
    static double bufa[REF_MAX], bufb[REF_MAX];
    double *cur = bufa, *nxt = bufb;
    size_t c = c0, h = h0, w = w0, off = 0;
    assert_true(c * h * w <= REF_MAX);
    for (size_t i = 0; i < c * h * w; i++)
        cur[i] = (double)x[i];
    const char *s = spec;
    while (*s != '\0') {
        unsigned a = 0, k = 0;
        int used = 0;
        if (sscanf(s, "dense:%u%n", &a, &used) == 1) {
            size_t in = c * h * w;
            assert_true(a <= REF_MAX);
            for (size_t o = 0; o < a; o++) {
                double z = p[off + a * in + o];
                for (size_t j = 0; j < in; j++)
                    z += p[off + o * in + j] * cur[j];
                nxt[o] = z;
            }
            off += a * in + a;
            c = a;
            h = w = 1;
        } else if (sscanf(s, "conv:%ux%u%n", &a, &k, &used) == 2) {
            long r = (long)k / 2;
            assert_true(a * h * w <= REF_MAX);
            for (size_t o = 0; o < a; o++)
                for (long y = 0; y < (long)h; y++)
                    for (long xx = 0; xx < (long)w; xx++) {
                        double z = p[off + a * c * k * k + o];
                        for (size_t ci = 0; ci < c; ci++)
                            for (long u = 0; u < (long)k; u++)
                                for (long v = 0; v < (long)k; v++) {
                                    long iy = y + u - r, ix = xx + v - r;
                                    if (iy < 0 || ix < 0 || iy >= (long)h ||
                                        ix >= (long)w)
                                        continue;
                                    z += p[off +
                                           ((o * c + ci) * k + (size_t)u) * k +
                                           (size_t)v] *
                                         cur[(ci * h + (size_t)iy) * w +
                                             (size_t)ix];
                                }
                        nxt[(o * h + (size_t)y) * w + (size_t)xx] = z;
                    }
            off += a * c * k * k + a;
            c = a;
        } else if (sscanf(s, "maxpool:%u%n", &k, &used) == 1) {
            size_t oh = h / k, ow = w / k;
            for (size_t ci = 0; ci < c; ci++)
                for (size_t y = 0; y < oh; y++)
                    for (size_t xx = 0; xx < ow; xx++) {
                        double mx = -INFINITY;
                        for (size_t u = 0; u < k; u++)
                            for (size_t v = 0; v < k; v++)
                                mx = fmax(
                                    mx,
                                    cur[(ci * h + y * k + u) * w + xx * k + v]);
                        nxt[(ci * oh + y) * ow + xx] = mx;
                    }
            h = oh;
            w = ow;
        } else if (strncmp(s, "relu", 4) == 0) {
            used = 4;
            for (size_t i = 0; i < c * h * w; i++)
                nxt[i] = cur[i] > 0.0 ? cur[i] : 0.0;
        } else if (strncmp(s, "tanh", 4) == 0) {
            used = 4;
            for (size_t i = 0; i < c * h * w; i++)
                nxt[i] = tanh(cur[i]);
        } else {
            fail_msg("reference: unknown layer at '%s'", s);
        }
        double *t = cur;
        cur = nxt;
        nxt = t;
        s += used;
        if (*s == ',')
            s++;
    }
    size_t K = c * h * w;
    double mx = cur[0], sum = 0.0;
    for (size_t j = 1; j < K; j++)
        mx = fmax(mx, cur[j]);
    for (size_t j = 0; j < K; j++)
        sum += exp(cur[j] - mx);
    return log(sum) + mx - cur[label];
}

/*
 * The engine's float gradients, batch mean and per example (their squared
 * norms for DP clipping), against central differences of the double
 * reference with a step of 1e-6: those are exact to about 1e-9, so the
 * tolerance only has to cover float rounding in the engine, an order of
 * magnitude or more below what the float finite-difference check above
 * can resolve. The loss is compared too, which pins the layout conventions
 * (a flipped kernel or a transposed flatten would change it).
 */
static void
check_against_reference(const char *spec, uint32_t c, uint32_t h, uint32_t w,
                        size_t batch)
{
    struct fixture f;
    fixture_init(&f, spec, c, h, w, batch);
    double *p = malloc(f.np * sizeof(double));
    double *ref = calloc(batch * f.np, sizeof(double));
    double *norms = calloc(batch, sizeof(double));
    assert_non_null(p);
    assert_non_null(ref);
    assert_non_null(norms);
    for (size_t j = 0; j < f.np; j++)
        p[j] = (double)f.params[j];
    double ref_loss = 0.0;
    for (size_t b = 0; b < batch; b++)
        ref_loss +=
            ref_example_loss(spec, c, h, w, p, f.x + b * f.dim, f.labels[b]);
    ref_loss /= (double)batch;
    const double eps = 1e-6;
    for (size_t j = 0; j < f.np; j++) {
        double saved = p[j];
        for (size_t b = 0; b < batch; b++) {
            p[j] = saved + eps;
            double lp = ref_example_loss(spec, c, h, w, p, f.x + b * f.dim,
                                         f.labels[b]);
            p[j] = saved - eps;
            double lm = ref_example_loss(spec, c, h, w, p, f.x + b * f.dim,
                                         f.labels[b]);
            ref[b * f.np + j] = (lp - lm) / (2.0 * eps);
        }
        p[j] = saved;
    }
    double loss;
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, batch, f.grad, &loss),
        ROOST_OK);
    assert_rel_near(loss, ref_loss, 1e-6);
    size_t bad = 0;
    for (size_t j = 0; j < f.np; j++) {
        double want = 0.0;
        for (size_t b = 0; b < batch; b++)
            want += ref[b * f.np + j];
        want /= (double)batch;
        double err = fabs((double)f.grad[j] - want);
        if (err > 1e-5 + 1e-4 * fabs(want)) {
            if (bad++ < 5)
                print_message("%s: param %zu: engine %.9g reference %.9g\n",
                              spec, j, (double)f.grad[j], want);
        }
    }
    double loss_sum;
    assert_int_equal(roost_model_example_norms(f.ws, f.params, f.x, f.labels,
                                               batch, norms, &loss_sum),
                     ROOST_OK);
    assert_rel_near(loss_sum, ref_loss * (double)batch, 1e-6);
    for (size_t b = 0; b < batch; b++) {
        double want = 0.0;
        for (size_t j = 0; j < f.np; j++)
            want += ref[b * f.np + j] * ref[b * f.np + j];
        if (fabs(norms[b] - want) > 1e-5 + 1e-4 * want) {
            bad++;
            print_message("%s: example %zu: norm^2 engine %.9g reference "
                          "%.9g\n",
                          spec, b, norms[b], want);
        }
    }
    if (bad > 0)
        fail_msg("%s: %zu mismatches against the double reference", spec, bad);
    free(p);
    free(ref);
    free(norms);
    fixture_free(&f);
}

static void
gradients_match_double_reference(void **state)
{
    (void)state;
    check_against_reference("dense:5", 2, 3, 3, 3);
    check_against_reference("dense:6,relu,dense:5,tanh,dense:3", 1, 3, 4, 4);
    check_against_reference("tanh,dense:4,relu,relu,dense:3", 2, 2, 3, 3);
    /* conv + relu + 2x2 pool (fused), conv + tanh + 3x3 pool (fused, the
     * general path), a standalone pool, pools that floor, multi-channel
     * input (CBHW transpose), a kernel wider than the image. */
    check_against_reference("conv:3x3,relu,maxpool:2,dense:4", 2, 6, 5, 3);
    check_against_reference("conv:2x3,tanh,maxpool:3,conv:3x5,dense:3", 1, 7, 8,
                            2);
    check_against_reference("maxpool:2,conv:2x3,relu,dense:3", 3, 5, 6, 2);
    check_against_reference("conv:2x5,conv:3x1,tanh,dense:2", 1, 3, 4, 3);
}
static void
gradcheck_conv_tanh_output(void **state)
{
    (void)state;
    gradcheck("conv:2x1,conv:2x3,tanh,dense:3", 1, 4, 4, 3);
}

static void
loss_matches_definition(void **state)
{
    (void)state;
    /* logreg with zero weights and chosen biases: logits = bias, so the
     * loss is log(sum exp b) - b_y for every example. */
    struct fixture f;
    fixture_init(&f, "logreg", 1, 2, 2, 2);
    memset(f.params, 0, f.np * sizeof(float));
    const roost_param_info *bias = roost_model_layout(f.m, 1);
    assert_string_equal(bias->name, "dense0.bias");
    double s = 0.0;
    for (size_t k = 0; k < 10; k++) {
        f.params[bias->offset + k] = (float)k * 0.25f;
        s += exp((double)k * 0.25);
    }
    f.labels[0] = 3;
    f.labels[1] = 9;
    double want = 0.5 * ((log(s) - 0.75) + (log(s) - 2.25));
    double loss, acc;
    assert_near(loss_at(&f), want, 1e-5);
    assert_int_equal(
        roost_model_evaluate(f.ws, f.params, f.x, f.labels, 2, &loss, &acc),
        ROOST_OK);
    assert_near(loss, want, 1e-5);
    assert_near(acc, 0.5, 1e-12); /* argmax is class 9 */
    assert_int_equal(roost_workspace_correct(f.ws), 1);
    /* A gradient pass counts the same way: both labelled 9 now. */
    f.labels[0] = 9;
    float *g = calloc(f.np, sizeof(float));
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, 2, g, &loss), ROOST_OK);
    assert_int_equal(roost_workspace_correct(f.ws), 2);
    free(g);
    fixture_free(&f);
}

/*
 * Logits around 1e7 (integers, exact in float; a float's spacing there is
 * 1): the loss of each example is log(sum_k exp(z_k - max)) + (max - z_y),
 * both terms small, so it must come out to float precision of those
 * terms, not of the logits, and the gradient must be the finite softmax.
 */
static void
softmax_large_logits(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, "logreg", 1, 2, 2, 2);
    memset(f.params, 0, f.np * sizeof(float));
    const roost_param_info *bias = roost_model_layout(f.m, 1);
    double s = 0.0;
    for (size_t k = 0; k < 10; k++) {
        f.params[bias->offset + k] = 1e7f - (float)k;
        s += exp(-(double)k);
    }
    f.labels[0] = 0;
    f.labels[1] = 9;
    double l0 = log(s), l9 = log(s) + 9.0;
    double loss, acc;
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, 2, f.grad, &loss),
        ROOST_OK);
    assert_near(loss, 0.5 * (l0 + l9), 1e-5);
    /* The bias gradient is the mean over the batch of softmax - onehot. */
    for (size_t k = 0; k < 10; k++) {
        double p = exp(-(double)k) / s;
        double want = p - 0.5 * ((k == 0) + (k == 9));
        assert_near(f.grad[bias->offset + k], want, 1e-6);
    }
    assert_int_equal(
        roost_model_evaluate(f.ws, f.params, f.x, f.labels, 2, &loss, &acc),
        ROOST_OK);
    assert_near(loss, 0.5 * (l0 + l9), 1e-5);
    assert_near(acc, 0.5, 1e-12);
    double norms[2], loss_sum;
    assert_int_equal(roost_model_example_norms(f.ws, f.params, f.x, f.labels, 2,
                                               norms, &loss_sum),
                     ROOST_OK);
    assert_near(loss_sum, l0 + l9, 1e-5);
    fixture_free(&f);
}

/*
 * Evaluation walks the data in chunks of the workspace's batch size: on a
 * dataset whose size is not a multiple of it (the last chunk partial), the
 * loss and accuracy must be the means over all examples, as computed one
 * example at a time.
 */
static void
evaluate_partial_last_chunk(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, "conv:2x3,relu,maxpool:2,dense:3", 2, 5, 4, 7);
    roost_workspace *small;
    roost_errmsg em;
    assert_int_equal(roost_workspace_create(&small, f.m, 3, &em), ROOST_OK);
    double want_loss = 0.0;
    size_t want_correct = 0;
    for (size_t b = 0; b < f.batch; b++) {
        double l;
        assert_int_equal(roost_model_grad(f.ws, f.params, f.x + b * f.dim,
                                          f.labels + b, 1, f.grad, &l),
                         ROOST_OK);
        want_loss += l;
        want_correct += roost_workspace_correct(f.ws);
    }
    want_loss /= (double)f.batch;
    double want_acc = (double)want_correct / (double)f.batch;
    roost_workspace *wss[2] = {f.ws, small};
    for (size_t k = 0; k < 2; k++) {
        double loss, acc;
        assert_int_equal(roost_model_evaluate(wss[k], f.params, f.x, f.labels,
                                              f.batch, &loss, &acc),
                         ROOST_OK);
        assert_rel_near(loss, want_loss, 1e-5);
        assert_near(acc, want_acc, 1e-12);
    }
    roost_workspace_destroy(small);
    fixture_free(&f);
}

/* A maxpool that no conv feeds: first layer on a multi-channel input (read
 * in place after the transpose), and after a standalone tanh. */
static void
gradcheck_standalone_pool(void **state)
{
    (void)state;
    gradcheck("maxpool:2,dense:3", 2, 5, 4, 3);
    gradcheck("conv:2x3,tanh,tanh,maxpool:3,dense:3", 1, 7, 6, 2);
    gradcheck("tanh,maxpool:2,relu,dense:4,tanh,dense:3", 3, 4, 5, 2);
}

/* Per-example gradients, one example at a time with batch 1. */
static float *
per_example_grads(struct fixture *f)
{
    float *g = calloc(f->batch * f->np, sizeof(float));
    assert_non_null(g);
    for (size_t b = 0; b < f->batch; b++)
        assert_int_equal(roost_model_grad(f->ws, f->params, f->x + b * f->dim,
                                          f->labels + b, 1, g + b * f->np,
                                          NULL),
                         ROOST_OK);
    return g;
}

static void
check_per_example(const char *spec, uint32_t c, uint32_t h, uint32_t w,
                  size_t batch)
{
    struct fixture f;
    fixture_init(&f, spec, c, h, w, batch);
    float *g = per_example_grads(&f);
    double *norms = calloc(batch, sizeof(double));
    float *weights = calloc(batch, sizeof(float));
    assert_non_null(norms);
    assert_non_null(weights);
    double loss_sum;
    assert_int_equal(roost_model_example_norms(f.ws, f.params, f.x, f.labels,
                                               batch, norms, &loss_sum),
                     ROOST_OK);
    for (size_t b = 0; b < batch; b++) {
        double want = 0.0;
        for (size_t j = 0; j < f.np; j++)
            want += (double)g[b * f.np + j] * (double)g[b * f.np + j];
        assert_rel_near(norms[b], want, 1e-4);
        weights[b] = uniform(f.rng, 0.0f, 1.0f);
    }
    assert_int_equal(roost_model_weighted_grad(f.ws, weights, f.grad),
                     ROOST_OK);
    double scale = 0.0;
    for (size_t j = 0; j < f.np; j++)
        scale = fmax(scale, fabs((double)g[j]));
    for (size_t j = 0; j < f.np; j++) {
        double want = 0.0;
        for (size_t b = 0; b < batch; b++)
            want += (double)weights[b] * (double)g[b * f.np + j];
        assert_near(f.grad[j], want, 1e-5 * scale + 1e-7);
    }
    /* The accumulating form adds the same sum to what grad holds. */
    float *twice = malloc(f.np * sizeof(float));
    assert_non_null(twice);
    memcpy(twice, f.grad, f.np * sizeof(float));
    assert_int_equal(roost_model_example_norms(f.ws, f.params, f.x, f.labels,
                                               batch, norms, NULL),
                     ROOST_OK);
    assert_int_equal(roost_model_weighted_grad_add(f.ws, weights, twice),
                     ROOST_OK);
    for (size_t j = 0; j < f.np; j++)
        assert_near(twice[j], 2.0 * (double)f.grad[j], 1e-5 * scale + 1e-7);
    free(twice);
    /* The deltas are consumed: a second pass 2 is refused. */
    assert_int_equal(roost_model_weighted_grad(f.ws, weights, f.grad),
                     ROOST_ESTATE);
    /* The summed loss agrees with the mean loss of the fused pass, and the
     * fused mean gradient with the mean of the per-example ones. */
    assert_near(loss_sum / (double)batch, loss_at(&f), 1e-5);
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, batch, f.grad, NULL),
        ROOST_OK);
    for (size_t j = 0; j < f.np; j++) {
        double mean = 0.0;
        for (size_t b = 0; b < batch; b++)
            mean += (double)g[b * f.np + j];
        assert_near(f.grad[j], mean / (double)batch, 1e-5 * scale + 1e-7);
    }
    free(g);
    free(norms);
    free(weights);
    fixture_free(&f);
}

static void
per_example_dense(void **state)
{
    (void)state;
    check_per_example("dense:9,relu,dense:7,tanh,dense:5", 1, 3, 4, 6);
}

static void
per_example_conv(void **state)
{
    (void)state;
    check_per_example("conv:3x3,relu,maxpool:2,conv:4x3,tanh,dense:4", 2, 6, 5,
                      5);
}

static void
per_example_conv_chunked(void **state)
{
    (void)state;
    /* Big enough that conv layers run their batch in several im2col
     * chunks (first conv 13 examples per chunk, second 6, leaving partial
     * last chunks): the chunked batch path must agree with single
     * examples, for norms, the weighted sum and the fused mean. */
    check_per_example("conv:8x5,relu,maxpool:2,conv:16x5,dense:4", 1, 28, 28,
                      20);
}

static void
batch_equals_single_examples(void **state)
{
    (void)state;
    /* The batched CBHW layout must give each example the logits it gets
     * alone, and the mean gradient the mean of the per-example ones. */
    struct fixture f;
    fixture_init(&f, "conv:3x3,relu,maxpool:2,dense:5", 3, 6, 6, 4);
    const float *z;
    size_t K = roost_model_num_classes(f.m);
    float *batched = calloc(f.batch * K, sizeof(float));
    assert_non_null(batched);
    assert_int_equal(roost_model_forward(f.ws, f.params, f.x, f.batch, &z),
                     ROOST_OK);
    memcpy(batched, z, f.batch * K * sizeof(float));
    for (size_t b = 0; b < f.batch; b++) {
        assert_int_equal(
            roost_model_forward(f.ws, f.params, f.x + b * f.dim, 1, &z),
            ROOST_OK);
        for (size_t k = 0; k < K; k++)
            assert_near(z[k], batched[b * K + k], 1e-5);
    }
    float *g = per_example_grads(&f);
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, f.batch, f.grad, NULL),
        ROOST_OK);
    for (size_t j = 0; j < f.np; j++) {
        double mean = 0.0;
        for (size_t b = 0; b < f.batch; b++)
            mean += (double)g[b * f.np + j];
        assert_near(f.grad[j], mean / (double)f.batch, 1e-5);
    }
    free(g);
    free(batched);
    fixture_free(&f);
}

static void
presets_and_layout(void **state)
{
    (void)state;
    roost_model *m;
    assert_int_equal(roost_model_create(&m, NULL, "cnn", 1, 28, 28, NULL),
                     ROOST_OK);
    assert_int_equal(roost_model_param_count(m), 1663370);
    assert_int_equal(roost_model_layout_count(m), 8);
    const roost_param_info *p = roost_model_layout(m, 0);
    assert_string_equal(p->name, "conv0.weight");
    assert_int_equal(p->ndims, 4);
    assert_int_equal(p->shape[0], 32);
    assert_int_equal(p->shape[1], 1);
    assert_int_equal(p->shape[2], 5);
    /* Offsets tile the vector without gaps. */
    size_t off = 0;
    for (size_t i = 0; i < roost_model_layout_count(m); i++) {
        p = roost_model_layout(m, i);
        assert_int_equal(p->offset, off);
        off += p->count;
    }
    assert_int_equal(off, roost_model_param_count(m));
    p = roost_model_layout(m, 4);
    assert_string_equal(p->name, "dense6.weight");
    assert_int_equal(p->shape[0], 512);
    assert_int_equal(p->shape[1], 3136);
    assert_null(roost_model_layout(m, 8));
    assert_string_equal(roost_model_spec(m),
                        "conv:32x5,relu,maxpool:2,conv:64x5,relu,maxpool:2,"
                        "dense:512,relu,dense:10");
    roost_model_destroy(m);

    assert_int_equal(roost_model_create(&m, NULL, "mlp", 1, 28, 28, NULL),
                     ROOST_OK);
    assert_int_equal(roost_model_param_count(m), 199210);
    assert_int_equal(roost_model_num_classes(m), 10);
    roost_model_destroy(m);
    assert_int_equal(roost_model_create(&m, NULL, "logreg", 1, 28, 28, NULL),
                     ROOST_OK);
    assert_int_equal(roost_model_param_count(m), 7850);
    roost_model_destroy(m);
    roost_model_destroy(NULL);
    roost_workspace_destroy(NULL);
}

static void
bad_specs_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        int code;
        const char *needle; /* expected in the message */
    } cases[] = {
        {"", ROOST_ESPEC, "position 1"},
        {"dense:10,", ROOST_ESPEC, "position 10: empty"},
        {"dense:0", ROOST_ESPEC, "position 7"},
        {"dense:abc", ROOST_ESPEC, "unit count"},
        {"dense:10x", ROOST_ESPEC, "unexpected 'x'"},
        {"conv:32x4,dense:10", ROOST_ESPEC, "even"},
        {"conv:32,dense:10", ROOST_ESPEC, "expected 'x'"},
        {"conv:32x99,dense:10", ROOST_ESPEC, "kernel size"},
        {"dense:10,relu", ROOST_ESPEC, "last layer must be dense"},
        {"dense:10,conv:3x3,dense:2", ROOST_ESPEC, "position 10: conv after"},
        {"dense:10;relu", ROOST_ESPEC, "unexpected ';'"},
        {"softmax,dense:10", ROOST_ESPEC, "unknown layer 'softmax'"},
        {"dense:300", ROOST_ESPEC, "300 classes"},
        {"dense:99999999999999999999", ROOST_ESPEC, "unit count"},
        {"dense:65536,dense:65536,dense:10", ROOST_ETOOBIG, "too large"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        roost_model *m = (roost_model *)&m;
        roost_errmsg em;
        roost_errmsg_clear(&em);
        int rc = roost_model_create(&m, NULL, cases[i].spec, 1, 28, 28, &em);
        if (rc != cases[i].code ||
            strstr(roost_errmsg_text(&em), cases[i].needle) == NULL) {
            print_error("spec '%s': rc %d, message '%s'\n", cases[i].spec, rc,
                        roost_errmsg_text(&em));
            fail();
        }
        assert_null(m);
    }
    roost_model *m;
    roost_errmsg em;
    assert_int_equal(
        roost_model_create(&m, NULL, "maxpool:3,dense:10", 1, 2, 2, &em),
        ROOST_ESPEC);
    assert_non_null(strstr(roost_errmsg_text(&em), "maxpool:3 on a 2x2"));
    assert_int_equal(roost_model_create(&m, NULL, NULL, 1, 28, 28, NULL),
                     ROOST_EINVAL);
    assert_int_equal(roost_model_create(&m, NULL, "mlp", 0, 28, 28, NULL),
                     ROOST_EINVAL);
    /* The limits a spec from the wire runs into: layer count, length,
     * total parameters (each layer alone within its own bound) and the
     * input size. */
    char many[65 * 5 + 16] = "";
    for (int i = 0; i < 64; i++)
        strcat(many, "relu,");
    strcat(many, "dense:10");
    assert_int_equal(roost_model_create(&m, NULL, many, 1, 2, 2, &em),
                     ROOST_ESPEC);
    assert_non_null(
        strstr(roost_errmsg_text(&em), "position 321: more than 64 layers"));
    assert_null(m);
    char *longspec = malloc(4098);
    assert_non_null(longspec);
    memset(longspec, ' ', 4097);
    memcpy(longspec + 4097 - 8, "dense:10", 8);
    longspec[4097] = '\0';
    assert_int_equal(roost_model_create(&m, NULL, longspec, 1, 2, 2, &em),
                     ROOST_ESPEC);
    assert_non_null(strstr(roost_errmsg_text(&em), "longer than 4096"));
    longspec[0] = '\0'; /* 4096 bytes: parsed */
    assert_int_equal(roost_model_create(&m, NULL, longspec + 1, 1, 2, 2, &em),
                     ROOST_OK);
    roost_model_destroy(m);
    free(longspec);
    assert_int_equal(roost_model_create(&m, NULL,
                                        "dense:16384,dense:16384,"
                                        "dense:10",
                                        1, 1, 1, &em),
                     ROOST_ETOOBIG);
    assert_non_null(strstr(roost_errmsg_text(&em),
                           "position 13: more than 268435456 parameters"));
    assert_null(m);
    assert_int_equal(
        roost_model_create(&m, NULL, "dense:10", 65535, 65535, 65535, &em),
        ROOST_ETOOBIG);
    assert_non_null(strstr(roost_errmsg_text(&em), "input too large"));
    assert_null(m);
    /* Spaces around layers are accepted. */
    assert_int_equal(
        roost_model_create(&m, NULL, " dense:4 , relu ,dense:3", 1, 2, 2, NULL),
        ROOST_OK);
    assert_int_equal(roost_model_param_count(m), 4 * 4 + 4 + 3 * 4 + 3);
    roost_model_destroy(m);
}

static void
bad_arguments(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f, "dense:3", 1, 2, 2, 4);
    roost_workspace *ws = (roost_workspace *)&ws;
    assert_int_equal(roost_workspace_create(&ws, f.m, 0, NULL), ROOST_EINVAL);
    assert_null(ws);
    /* Batch matrices beyond INT_MAX elements cannot go to BLAS (this one
     * is 2^31 floats, 8 GiB: below the byte cap, above the int range). */
    roost_model *wide;
    assert_int_equal(
        roost_model_create(&wide, NULL, "dense:3", 1, 256, 256, NULL),
        ROOST_OK);
    ws = (roost_workspace *)&ws;
    assert_int_equal(roost_workspace_create(&ws, wide, (size_t)1 << 15, NULL),
                     ROOST_ETOOBIG);
    assert_null(ws);
    roost_model_destroy(wide);
    /* Input dimensions whose product wraps 64 bits (to 0 here, 2^22 x
     * 2^21 x 2^21; they come from the wire) are too large, not empty. */
    wide = (roost_model *)&wide;
    assert_int_equal(roost_model_create(&wide, NULL, "dense:10", 1u << 22,
                                        1u << 21, 1u << 21, NULL),
                     ROOST_ETOOBIG);
    assert_null(wide);
    assert_int_equal(roost_workspace_max_batch(f.ws), 4);
    assert_true(roost_workspace_bytes(f.ws) > 0);
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, 5, f.grad, NULL),
        ROOST_EINVAL);
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, 0, f.grad, NULL),
        ROOST_EINVAL);
    f.labels[2] = 3; /* only classes 0..2 */
    assert_int_equal(
        roost_model_grad(f.ws, f.params, f.x, f.labels, 4, f.grad, NULL),
        ROOST_EINVAL);
    float w[4] = {1, 1, 1, 1};
    assert_int_equal(roost_model_weighted_grad(f.ws, w, f.grad), ROOST_ESTATE);
    fixture_free(&f);
}

static void
sgd_matches_reference(void **state)
{
    (void)state;
    roost_sgd_config cfg = {
        .lr = 0.5f, .momentum = 0.9f, .weight_decay = 0.1f, .prox_mu = 0.2f};
    roost_sgd *opt;
    assert_int_equal(roost_sgd_create(&opt, NULL, 2, &cfg, NULL), ROOST_OK);
    float w[2] = {1.0f, -2.0f}, g[2] = {0.3f, 0.4f}, w0[2] = {0.5f, 0.0f};
    double rw[2] = {1.0, -2.0}, rv[2] = {0.0, 0.0};
    for (int step = 0; step < 3; step++) {
        assert_int_equal(roost_sgd_step(opt, w, g, w0), ROOST_OK);
        for (int i = 0; i < 2; i++) {
            double d =
                (double)g[i] + 0.1 * rw[i] + 0.2 * (rw[i] - (double)w0[i]);
            rv[i] = 0.9 * rv[i] + d;
            rw[i] -= 0.5 * rv[i];
            assert_near(w[i], rw[i], 1e-5);
        }
    }
    /* FedProx needs the anchor. */
    assert_int_equal(roost_sgd_step(opt, w, g, NULL), ROOST_EINVAL);
    roost_sgd_reset(opt);
    roost_sgd_destroy(opt);
    roost_sgd_destroy(NULL);
    cfg.momentum = 1.0f;
    opt = (roost_sgd *)&opt;
    assert_int_equal(roost_sgd_create(&opt, NULL, 2, &cfg, NULL), ROOST_EINVAL);
    assert_null(opt);
    cfg.momentum = 0.0f;
    cfg.lr = NAN;
    assert_int_equal(roost_sgd_create(&opt, NULL, 2, &cfg, NULL), ROOST_EINVAL);
}

/* Plain SGD, momentum alone and weight decay alone take their own loops
 * in sgd.c: each against the PyTorch formula in double, over steps with
 * changing gradients (a velocity that ignored the new gradient or the old
 * velocity would drift from the reference by the second step). */
static void
sgd_variants_match_reference(void **state)
{
    (void)state;
    const roost_sgd_config cfgs[] = {
        {.lr = 0.1f},
        {.lr = 0.1f, .momentum = 0.9f},
        {.lr = 0.1f, .weight_decay = 0.05f},
        {.lr = 0.1f, .prox_mu = 0.3f},
    };
    for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
        roost_sgd *opt;
        assert_int_equal(roost_sgd_create(&opt, NULL, 3, &cfgs[c], NULL),
                         ROOST_OK);
        float w[3] = {1.0f, -2.0f, 0.5f}, w0[3] = {0.5f, 0.0f, -1.0f};
        double rw[3] = {1.0, -2.0, 0.5}, rv[3] = {0.0, 0.0, 0.0};
        for (int step = 0; step < 4; step++) {
            float g[3] = {0.3f * (float)(step + 1), -0.4f, 0.1f * (float)step};
            assert_int_equal(roost_sgd_step(opt, w, g, w0), ROOST_OK);
            for (int i = 0; i < 3; i++) {
                double d = (double)g[i] + (double)cfgs[c].weight_decay * rw[i] +
                           (double)cfgs[c].prox_mu * (rw[i] - (double)w0[i]);
                rv[i] = (double)cfgs[c].momentum * rv[i] + d;
                rw[i] -= (double)cfgs[c].lr * rv[i];
                assert_near(w[i], rw[i], 1e-5);
            }
        }
        roost_sgd_destroy(opt);
    }
}
/* Three fused steps (roost_model_sgd_step) must land where three
 * roost_model_grad + roost_sgd_step steps land. */
static void
check_fused(const char *spec, uint32_t c, uint32_t h, uint32_t w, size_t batch,
            roost_sgd_config cfg)
{
    struct fixture f;
    fixture_init(&f, spec, c, h, w, batch);
    float *p2 = malloc(f.np * sizeof(float));
    float *anchor = malloc(f.np * sizeof(float));
    assert_non_null(p2);
    assert_non_null(anchor);
    for (size_t j = 0; j < f.np; j++)
        anchor[j] = f.params[j] + uniform(f.rng, -0.1f, 0.1f);
    memcpy(p2, f.params, f.np * sizeof(float));
    roost_sgd *a, *b;
    assert_int_equal(roost_sgd_create(&a, NULL, f.np, &cfg, NULL), ROOST_OK);
    assert_int_equal(roost_sgd_create(&b, NULL, f.np, &cfg, NULL), ROOST_OK);
    for (int step = 0; step < 3; step++) {
        double l1, l2;
        assert_int_equal(
            roost_model_grad(f.ws, f.params, f.x, f.labels, batch, f.grad, &l1),
            ROOST_OK);
        assert_int_equal(roost_sgd_step(a, f.params, f.grad, anchor), ROOST_OK);
        assert_int_equal(roost_model_sgd_step(f.ws, p2, f.x, f.labels, batch, b,
                                              anchor, &l2),
                         ROOST_OK);
        assert_rel_near(l2, l1, 1e-5);
    }
    double scale = 0.0;
    for (size_t j = 0; j < f.np; j++)
        scale = fmax(scale, fabs((double)f.params[j]));
    for (size_t j = 0; j < f.np; j++)
        assert_near(p2[j], f.params[j], 1e-5 * scale);
    /* FedProx without its anchor is refused. */
    if (cfg.prox_mu > 0.0f)
        assert_int_equal(
            roost_model_sgd_step(f.ws, p2, f.x, f.labels, batch, b, NULL, NULL),
            ROOST_EINVAL);
    roost_sgd_destroy(a);
    roost_sgd_destroy(b);
    free(p2);
    free(anchor);
    fixture_free(&f);
}

/* A step taken range by range (as DP-SGD's fused update does) equals one
 * whole step, for every optimiser variant, velocity included; ranges that
 * do not fit are refused. */
static void
sgd_range_steps_equal_whole_step(void **state)
{
    (void)state;
    enum { N = 1000 };
    const roost_sgd_config cfgs[] = {
        {.lr = 0.1f},
        {.lr = 0.1f, .momentum = 0.9f},
        {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .prox_mu = 0.1f},
    };
    static float w1[N], w2[N], g[N], anchor[N];
    for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
        roost_sgd *a, *b;
        assert_int_equal(roost_sgd_create(&a, NULL, N, &cfgs[c], NULL),
                         ROOST_OK);
        assert_int_equal(roost_sgd_create(&b, NULL, N, &cfgs[c], NULL),
                         ROOST_OK);
        for (size_t i = 0; i < N; i++) {
            w1[i] = w2[i] = (float)i * 0.001f - 0.3f;
            anchor[i] = 0.1f;
        }
        for (int s = 0; s < 3; s++) {
            for (size_t i = 0; i < N; i++)
                g[i] = (float)((i * 7 + (size_t)s * 13) % 17) * 0.01f - 0.08f;
            assert_int_equal(roost_sgd_step(a, w1, g, anchor), ROOST_OK);
            const size_t cuts[] = {0, 1, 333, 334, 999, N};
            for (size_t k = 0; k + 1 < sizeof(cuts) / sizeof(cuts[0]); k++)
                assert_int_equal(roost_sgd_step_range(b, w2, g, anchor, cuts[k],
                                                      cuts[k + 1] - cuts[k]),
                                 ROOST_OK);
        }
        assert_memory_equal(w1, w2, sizeof(w1));
        assert_int_equal(roost_sgd_step_range(b, w2, g, anchor, N, 1),
                         ROOST_EINVAL);
        assert_int_equal(roost_sgd_step_range(b, w2, g, anchor, 10, N),
                         ROOST_EINVAL);
        assert_int_equal(roost_sgd_step_range(b, w2, g, anchor, N, 0),
                         ROOST_OK);
        roost_sgd_destroy(a);
        roost_sgd_destroy(b);
    }
}

static void
fused_step_matches_grad_then_sgd(void **state)
{
    (void)state;
    const roost_sgd_config cfgs[] = {
        {.lr = 0.01f, .momentum = 0.9f},
        {.lr = 0.01f},
        {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 0.01f, .prox_mu = 0.1f},
        {.lr = 0.01f, .weight_decay = 0.01f, .prox_mu = 0.1f},
        {.lr = 0.01f, .momentum = 0.5f, .weight_decay = 0.01f},
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        check_fused("dense:9,relu,dense:7,tanh,dense:5", 2, 3, 4, 6, cfgs[i]);
        check_fused("conv:8x5,relu,maxpool:2,conv:16x5,dense:4", 1, 28, 28, 20,
                    cfgs[i]);
    }
    /* A vector length other than the model's is refused. */
    struct fixture f;
    fixture_init(&f, "dense:3", 1, 2, 2, 2);
    roost_sgd *opt;
    roost_sgd_config cfg = {.lr = 0.1f};
    assert_int_equal(roost_sgd_create(&opt, NULL, f.np + 1, &cfg, NULL),
                     ROOST_OK);
    assert_int_equal(
        roost_model_sgd_step(f.ws, f.params, f.x, f.labels, 2, opt, NULL, NULL),
        ROOST_EINVAL);
    roost_sgd_destroy(opt);
    fixture_free(&f);
}

static void
training_reduces_loss(void **state)
{
    (void)state;
    /* A learnable synthetic task: the label is the quadrant of the
     * brightest pixel. A few hundred SGD steps must fit it well. */
    struct fixture f;
    fixture_init(&f, "conv:4x3,relu,maxpool:2,dense:16,relu,dense:4", 1, 6, 6,
                 32);
    for (size_t b = 0; b < f.batch; b++) {
        size_t best = 0;
        for (size_t j = 0; j < f.dim; j++)
            if (f.x[b * f.dim + j] > f.x[b * f.dim + best])
                best = j;
        f.labels[b] = (uint8_t)(((best / 6) >= 3) * 2 + ((best % 6) >= 3));
    }
    roost_sgd_config cfg = {.lr = 0.1f, .momentum = 0.9f};
    roost_sgd *opt;
    assert_int_equal(roost_sgd_create(&opt, NULL, f.np, &cfg, NULL), ROOST_OK);
    double first = loss_at(&f), loss = first;
    for (int step = 0; step < 300; step++) {
        assert_int_equal(roost_model_grad(f.ws, f.params, f.x, f.labels,
                                          f.batch, f.grad, &loss),
                         ROOST_OK);
        assert_int_equal(roost_sgd_step(opt, f.params, f.grad, NULL), ROOST_OK);
    }
    double acc;
    assert_int_equal(roost_model_evaluate(f.ws, f.params, f.x, f.labels,
                                          f.batch, &loss, &acc),
                     ROOST_OK);
    assert_true(loss < 0.2 * first);
    assert_true(acc > 0.9);
    roost_sgd_destroy(opt);
    fixture_free(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presets_and_layout),
        cmocka_unit_test(bad_specs_are_refused),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(loss_matches_definition),
        cmocka_unit_test(softmax_large_logits),
        cmocka_unit_test(evaluate_partial_last_chunk),
        cmocka_unit_test(gradcheck_standalone_pool),
        cmocka_unit_test(gradients_match_double_reference),
        cmocka_unit_test(gradcheck_dense_logreg),
        cmocka_unit_test(gradcheck_dense_relu),
        cmocka_unit_test(gradcheck_dense_tanh),
        cmocka_unit_test(gradcheck_standalone_activations),
        cmocka_unit_test(gradcheck_conv_multichannel_input),
        cmocka_unit_test(gradcheck_conv_stack),
        cmocka_unit_test(gradcheck_conv_kernel_larger_than_image),
        cmocka_unit_test(gradcheck_relu_before_conv),
        cmocka_unit_test(gradcheck_conv_pool_fused),
        cmocka_unit_test(pool_fusion_matches_unfused),
        cmocka_unit_test(gradcheck_conv_tanh_output),
        cmocka_unit_test(batch_equals_single_examples),
        cmocka_unit_test(per_example_dense),
        cmocka_unit_test(per_example_conv),
        cmocka_unit_test(per_example_conv_chunked),
        cmocka_unit_test(sgd_matches_reference),
        cmocka_unit_test(sgd_variants_match_reference),
        cmocka_unit_test(sgd_range_steps_equal_whole_step),
        cmocka_unit_test(fused_step_matches_grad_then_sgd),
        cmocka_unit_test(training_reduces_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
