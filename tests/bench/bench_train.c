/*
 * bench_train.c - training throughput of the model engine against the
 * hardware: samples/s of full SGD steps (forward, backward, update) on
 * pre-batched synthetic data, and the GFLOP/s they achieve next to a plain
 * cblas_sgemm of exactly the GEMM shapes one step issues, measured in the
 * same run. Single-threaded BLAS (the deployment setting: parallelism comes
 * from running clients side by side).
 *
 *   bench_train [--model mlp|cnn|logreg|SPEC] [--batch B] [--seconds S]
 *               [--reps R] [--per-example] [--unfused] [--cpu-clock]
 *               [--json]
 *
 * A step is roost_model_sgd_step (gradient and SGD update fused); with
 * --unfused roost_model_grad then roost_sgd_step; with --per-example the
 * DP-SGD path (per-example norms, the clip-weighted sum, the update). Prints
 * one line (or JSON object) per repetition; tests/bench/bench_train.sh runs it
 * interleaved with the PyTorch baseline and takes medians.
 */
#include "common/model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --unfused: roost_model_grad then roost_sgd_step instead of the fused
 * roost_model_sgd_step (for comparing the two). */
static bool unfused = false;

/* Wall clock by default; --cpu-clock times this process's CPU instead,
 * for A/B comparisons of the engine on a machine shared with other work
 * (the PyTorch comparison always uses the wall clock). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
die(const char *what, int rc, const roost_errmsg *em)
{
    fprintf(stderr, "bench_train: %s: %s %s\n", what, roost_errname(rc),
            em ? roost_errmsg_text(em) : "");
    exit(1);
}

static float *
alloc_floats(size_t n, roost_rng *rng)
{
    float *p = malloc(n * sizeof(float));
    if (p == NULL)
        die("malloc", ROOST_ENOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        double u;
        roost_rng_uniform(rng, &u);
        p[i] = (float)u;
    }
    return p;
}

#define N_BATCHES 8

/* Seconds per training step, timed over at least `seconds`. */
static double
time_steps(roost_workspace *ws, roost_sgd *opt, float *params, float *grad,
           float *const *xs, uint8_t *const *ys, size_t batch, bool per_example,
           double *norms, float *weights, double seconds)
{
    size_t steps = 0;
    double t0 = now_seconds(), t = t0;
    while (t - t0 < seconds) {
        for (int k = 0; k < 8; k++, steps++) {
            const float *x = xs[steps % N_BATCHES];
            const uint8_t *y = ys[steps % N_BATCHES];
            int rc;
            if (per_example) {
                rc = roost_model_example_norms(ws, params, x, y, batch, norms,
                                               NULL);
                /* Clip to norm 1: w_i = min(1, C / ||g_i||) / batch. */
                for (size_t b = 0; rc == ROOST_OK && b < batch; b++) {
                    double n = sqrt(norms[b]);
                    weights[b] =
                        (float)((n > 1.0 ? 1.0 / n : 1.0) / (double)batch);
                }
                if (rc == ROOST_OK)
                    rc = roost_model_weighted_grad(ws, weights, grad);
                if (rc == ROOST_OK)
                    rc = roost_sgd_step(opt, params, grad, NULL);
            } else if (unfused) {
                rc = roost_model_grad(ws, params, x, y, batch, grad, NULL);
                if (rc == ROOST_OK)
                    rc = roost_sgd_step(opt, params, grad, NULL);
            } else {
                rc = roost_model_sgd_step(ws, params, x, y, batch, opt, NULL,
                                          NULL);
            }
            if (rc != ROOST_OK)
                die("step", rc, NULL);
        }
        t = now_seconds();
    }
    return (t - t0) / (double)steps;
}

/* Operands of a plain sgemm of each shape of a training step. */
struct gemm_bufs {
    float *a[3 * ROOST_MODEL_MAX_LAYERS], *b[3 * ROOST_MODEL_MAX_LAYERS],
        *c[3 * ROOST_MODEL_MAX_LAYERS];
};

/* Seconds for one plain sgemm of every shape of a training step, timed
 * over at least `seconds`. */
static double
time_gemm_window(const struct gemm_bufs *g, const roost_gemm_shape *s, size_t n,
                 double seconds)
{
    size_t rounds = 0;
    double t0 = now_seconds(), t = t0;
    while (t - t0 < seconds) {
        for (int r = 0; r < 8; r++, rounds++)
            for (size_t i = 0; i < n; i++) {
                int lda = (int)(s[i].trans_a ? s[i].m : s[i].k);
                int ldb = (int)(s[i].trans_b ? s[i].k : s[i].n);
                cblas_sgemm(
                    CblasRowMajor, s[i].trans_a ? CblasTrans : CblasNoTrans,
                    s[i].trans_b ? CblasTrans : CblasNoTrans, (int)s[i].m,
                    (int)s[i].n, (int)s[i].k, 1.0f, g->a[i], lda, g->b[i], ldb,
                    0.0f, g->c[i], (int)s[i].n);
            }
        t = now_seconds();
    }
    return (t - t0) / (double)rounds;
}

int
main(int argc, char **argv)
{
    const char *spec = "mlp";
    size_t batch = 64;
    double seconds = 2.0;
    int reps = 1;
    bool json = false, per_example = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--unfused") == 0)
            unfused = true;
        else if (strcmp(argv[i], "--cpu-clock") == 0)
            bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (strcmp(argv[i], "--per-example") == 0)
            per_example = true;
        else if (i + 1 < argc && strcmp(argv[i], "--model") == 0)
            spec = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0)
            batch = (size_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[++i], NULL);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_train [--model M] [--batch B] "
                    "[--seconds S] [--reps R] [--per-example] [--unfused] "
                    "[--cpu-clock] [--json]\n");
            return 2;
        }
    }
    if (batch == 0 || reps < 1 || !(seconds > 0.0)) {
        fprintf(stderr, "bench_train: bad --batch, --reps or --seconds\n");
        return 2;
    }
    openblas_set_num_threads(1);

    roost_errmsg em;
    roost_model *m;
    roost_workspace *ws;
    roost_rng *rng;
    roost_sgd *opt;
    int rc = roost_model_create(&m, NULL, spec, 1, 28, 28, &em);
    if (rc != ROOST_OK)
        die("model", rc, &em);
    rc = roost_workspace_create(&ws, m, batch, &em);
    if (rc != ROOST_OK)
        die("workspace", rc, &em);
    rc = roost_rng_create_insecure_deterministic(&rng, NULL, 1, 0);
    if (rc != ROOST_OK)
        die("rng", rc, NULL);
    size_t np = roost_model_param_count(m), dim = roost_model_input_dim(m);
    roost_sgd_config cfg = {.lr = 0.01f, .momentum = 0.9f};
    rc = roost_sgd_create(&opt, NULL, np, &cfg, &em);
    if (rc != ROOST_OK)
        die("sgd", rc, &em);
    float *params = calloc(np, sizeof(float));
    float *grad = calloc(np, sizeof(float));
    double *norms = calloc(batch, sizeof(double));
    float *weights = calloc(batch, sizeof(float));
    if (!params || !grad || !norms || !weights)
        die("malloc", ROOST_ENOMEM, NULL);
    roost_model_init_params(m, params, rng);
    float *xs[N_BATCHES];
    uint8_t *ys[N_BATCHES];
    uint32_t classes = roost_model_num_classes(m);
    for (int k = 0; k < N_BATCHES; k++) {
        xs[k] = alloc_floats(batch * dim, rng);
        ys[k] = malloc(batch);
        if (ys[k] == NULL)
            die("malloc", ROOST_ENOMEM, NULL);
        for (size_t b = 0; b < batch; b++) {
            uint64_t v;
            roost_rng_below(rng, classes, &v);
            ys[k][b] = (uint8_t)v;
        }
    }
    roost_gemm_shape shapes[3 * ROOST_MODEL_MAX_LAYERS];
    size_t n_shapes;
    roost_model_gemm_shapes(m, batch, shapes, 3 * ROOST_MODEL_MAX_LAYERS,
                            &n_shapes);
    double flops = roost_model_train_flops(m, batch);
    struct gemm_bufs *gemm_bufs = malloc(sizeof(*gemm_bufs));
    if (gemm_bufs == NULL)
        die("malloc", ROOST_ENOMEM, NULL);
    for (size_t i = 0; i < n_shapes; i++) {
        gemm_bufs->a[i] = alloc_floats(shapes[i].m * shapes[i].k, rng);
        gemm_bufs->b[i] = alloc_floats(shapes[i].k * shapes[i].n, rng);
        gemm_bufs->c[i] = alloc_floats(shapes[i].m * shapes[i].n, rng);
    }

    /* Warm up: page in every buffer, let the clock settle. */
    time_steps(ws, opt, params, grad, xs, ys, batch, per_example, norms,
               weights, 0.3);
    time_gemm_window(gemm_bufs, shapes, n_shapes, 0.1);
    for (int r = 0; r < reps; r++) {
        /* Alternate short windows of training and of plain sgemm so both
         * see the same machine load (the cores may be shared). */
        double step_sum = 0.0, gemm_sum = 0.0;
        for (int w = 0; w < 5; w++) {
            step_sum += time_steps(ws, opt, params, grad, xs, ys, batch,
                                   per_example, norms, weights, seconds / 5);
            gemm_sum +=
                time_gemm_window(gemm_bufs, shapes, n_shapes, seconds / 10);
        }
        double step = step_sum / 5, gemm = gemm_sum / 5;
        double sps = (double)batch / step;
        double gf = flops / step * 1e-9, gf_sgemm = flops / gemm * 1e-9;
        if (json)
            printf("{\"impl\":\"roost\",\"model\":\"%s\",\"batch\":%zu,"
                   "\"per_example\":%s,\"samples_per_s\":%.1f,"
                   "\"gflops\":%.2f,\"sgemm_gflops\":%.2f,"
                   "\"flops_per_step\":%.0f}\n",
                   spec, batch, per_example ? "true" : "false", sps, gf,
                   gf_sgemm, flops);
        else
            printf("%s batch %zu%s: %.0f samples/s, %.1f GFLOP/s; plain "
                   "sgemm of the same shapes %.1f GFLOP/s (%.0f%%)\n",
                   spec, batch, per_example ? " per-example" : "", sps, gf,
                   gf_sgemm, 100.0 * gf / gf_sgemm);
        fflush(stdout);
    }
    for (int k = 0; k < N_BATCHES; k++) {
        free(xs[k]);
        free(ys[k]);
    }
    for (size_t i = 0; i < n_shapes; i++) {
        free(gemm_bufs->a[i]);
        free(gemm_bufs->b[i]);
        free(gemm_bufs->c[i]);
    }
    free(gemm_bufs);
    free(params);
    free(grad);
    free(norms);
    free(weights);
    roost_sgd_destroy(opt);
    roost_rng_destroy(rng);
    roost_workspace_destroy(ws);
    roost_model_destroy(m);
    return 0;
}
