/*
 * bench_dpsgd.c - DP-SGD throughput against the same model's plain SGD,
 * measured in the same run, single-threaded BLAS.
 *
 *   bench_dpsgd [--model mlp|SPEC] [--batch B] [--seconds S] [--reps R]
 *               [--json]
 *
 * A DP step is the whole mechanism as clients run it: Poisson sampling of
 * N = 64 * B examples with q = 1/64 (expected batch B), per-example norms
 * over all layers, the clip-weighted sum, secure grid-rounded noise on
 * every coordinate (dp/noise.h), division by the expected batch, and the
 * SGD update. A plain step is the fused forward/backward/update at batch
 * B, measured two ways: as non-DP local training runs it (client/src/
 * local_train.c: a batch of a per-epoch shuffled order gathered from the
 * dataset, then the step; the baseline of the DP/plain ratio, since a DP
 * step gathers its sampled examples the same way), and on a contiguous
 * slice of the data (no gather; the bare step, shown for reference).
 * Samples/s counts expected examples per second of process CPU time
 * (one thread does the work, so this is per core, and it stays meaningful
 * when other jobs share the machine). Alternating repetitions, median
 * reported, with the DP/plain ratio and the share of a DP step spent
 * drawing noise (timed separately on the same vector size). --json prints
 * one JSON object per repetition instead (for tests/bench/bench_dpsgd.sh,
 * which runs it next to the PyTorch baselines of torch_dpsgd.py).
 */
#include "common/dataset.h"
#include "common/model.h"
#include "dp/dpsgd.h"
#include "dp/noise.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
check(int rc, const char *what, const roost_errmsg *em)
{
    if (rc != ROOST_OK) {
        fprintf(stderr, "bench_dpsgd: %s: %s %s\n", what, roost_errname(rc),
                em ? em->text : "");
        exit(1);
    }
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    const char *spec = "mlp";
    size_t batch = 64;
    double seconds = 2.0;
    int reps = 5;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        if (i + 1 == argc)
            break;
        if (strcmp(argv[i], "--model") == 0)
            spec = argv[i + 1];
        else if (strcmp(argv[i], "--batch") == 0)
            batch = (size_t)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = strtod(argv[i + 1], NULL);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        i++;
    }
    if (batch == 0 || reps < 1 || reps > 64 || !(seconds > 0)) {
        fprintf(stderr, "usage: bench_dpsgd [--model M] [--batch B] "
                        "[--seconds S] [--reps R] [--json]\n");
        return 2;
    }
    openblas_set_num_threads(1);
    roost_errmsg em;
    roost_model *m;
    check(roost_model_create(&m, NULL, spec, 1, 28, 28, &em), "model", &em);
    size_t n_params = roost_model_param_count(m), dim = 784;
    size_t n_local = 64 * batch;
    roost_rng *rng;
    check(roost_rng_create(&rng, NULL), "rng", NULL);
    float *x = malloc(n_local * dim * sizeof(float));
    uint8_t *y = malloc(n_local);
    for (size_t i = 0; i < n_local * dim; i++) {
        double u;
        roost_rng_uniform(rng, &u);
        x[i] = (float)u;
    }
    for (size_t i = 0; i < n_local; i++)
        y[i] = (uint8_t)(i % 10);
    roost_dataset *ds;
    check(roost_dataset_create_from_arrays(&ds, NULL, n_local, 1, 28, 28, x, y,
                                           10, &em),
          "dataset", &em);
    float *params = malloc(n_params * sizeof(float));
    float *grad = malloc(n_params * sizeof(float));
    check(roost_model_init_params(m, params, rng), "init", NULL);
    roost_sgd_config sc = {.lr = 0.01f, .momentum = 0.9f};
    roost_sgd *sgd;
    check(roost_sgd_create(&sgd, NULL, n_params, &sc, &em), "sgd", &em);
    roost_workspace *ws;
    check(roost_workspace_create(&ws, m, batch, &em), "workspace", &em);
    roost_dpsgd_config dc = {.sampling_rate = 1.0 / 64,
                             .noise_multiplier = 1.0,
                             .clip_norm = 1.0,
                             .micro_batch = batch + batch / 2};
    roost_dpsgd *dp;
    check(roost_dpsgd_create(&dp, NULL, m, n_local, &dc, rng, &em), "dpsgd",
          &em);
    roost_noise *noise;
    check(roost_noise_create(&noise, NULL, rng, 1.0, 1.0,
                             ROOST_NOISE_GRID_BITS_DEFAULT, &em),
          "noise", &em);

    /* Non-DP local training's batches: a shuffled order, reshuffled each
     * epoch, gathered batch by batch (as client/src/local_train.c). */
    uint32_t *perm = malloc(n_local * sizeof(*perm));
    uint32_t *bidx = malloc(batch * sizeof(*bidx));
    float *xb = malloc(batch * dim * sizeof(float));
    uint8_t *yb = malloc(batch);
    if (perm == NULL || bidx == NULL || xb == NULL || yb == NULL) {
        fprintf(stderr, "bench_dpsgd: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n_local; i++)
        perm[i] = (uint32_t)i;
    size_t pos = n_local;

    double plain[64], gathered[64], dps[64], noise_ms[64];
    for (int r = 0; r < reps; r++) {
        size_t steps = 0;
        double t0 = now_seconds(), t;
        do {
            size_t off = (steps * batch) % (n_local - batch + 1);
            check(roost_model_sgd_step(ws, params, x + off * dim, y + off,
                                       batch, sgd, NULL, NULL),
                  "sgd step", NULL);
            steps++;
        } while ((t = now_seconds() - t0) < seconds);
        plain[r] = (double)(steps * batch) / t;

        steps = 0;
        t0 = now_seconds();
        do {
            if (pos + batch > n_local) {
                for (size_t j = n_local - 1; j > 0; j--) {
                    uint64_t k;
                    check(roost_rng_below(rng, j + 1, &k), "shuffle", NULL);
                    uint32_t tmp = perm[j];
                    perm[j] = perm[k];
                    perm[k] = tmp;
                }
                pos = 0;
            }
            memcpy(bidx, perm + pos, batch * sizeof(*bidx));
            pos += batch;
            check(roost_dataset_gather(ds, bidx, batch, xb, yb), "gather",
                  NULL);
            check(roost_model_sgd_step(ws, params, xb, yb, batch, sgd, NULL,
                                       NULL),
                  "sgd step", NULL);
            steps++;
        } while ((t = now_seconds() - t0) < seconds);
        gathered[r] = (double)(steps * batch) / t;

        steps = 0;
        t0 = now_seconds();
        do {
            check(roost_dpsgd_step_sgd(dp, params, ds, NULL, grad, sgd, NULL,
                                       NULL, &em),
                  "dp step", &em);
            steps++;
        } while ((t = now_seconds() - t0) < seconds);
        dps[r] = (double)(steps * batch) / t;

        /* The noise alone, on a vector of the model's size, at the grid
         * the DP step uses. */
        memset(grad, 0, n_params * sizeof(float));
        steps = 0;
        t0 = now_seconds();
        do {
            check(roost_noise_add(noise, grad, n_params, &em), "noise", &em);
            steps++;
        } while ((t = now_seconds() - t0) < seconds / 4);
        noise_ms[r] = 1e3 * t / (double)steps;
        if (json)
            printf("{\"impl\": \"roost\", \"batch\": %zu, "
                   "\"plain_samples_per_s\": %.1f, "
                   "\"plain_contiguous_samples_per_s\": %.1f, "
                   "\"samples_per_s\": %.1f, "
                   "\"noise_ms\": %.4f, \"params\": %zu}\n",
                   batch, gathered[r], plain[r], dps[r], noise_ms[r], n_params);
        else
            fprintf(stderr,
                    "rep %d: plain %.0f/s (contiguous %.0f/s), dp %.0f/s, "
                    "noise %.3f ms\n",
                    r + 1, gathered[r], plain[r], dps[r], noise_ms[r]);
        fflush(stdout);
    }
    qsort(plain, (size_t)reps, sizeof(double), cmp);
    qsort(gathered, (size_t)reps, sizeof(double), cmp);
    qsort(dps, (size_t)reps, sizeof(double), cmp);
    qsort(noise_ms, (size_t)reps, sizeof(double), cmp);
    double p = gathered[reps / 2], pc = plain[reps / 2], d = dps[reps / 2],
           nz = noise_ms[reps / 2];
    if (json)
        goto done;
    double dp_step_ms = 1e3 * (double)batch / d;
    printf("model %s (%zu parameters), expected batch %zu, 1 thread, "
           "medians of %d:\n",
           roost_model_spec(m), n_params, batch, reps);
    printf("  plain SGD        %10.0f samples/s  (shuffled batches gathered, "
           "as local training runs)\n",
           p);
    printf("  plain SGD        %10.0f samples/s  (contiguous slices, no "
           "gather)\n",
           pc);
    printf("  DP-SGD           %10.0f samples/s  (%.2fx plain; %.2fx the "
           "contiguous step)\n",
           d, d / p, d / pc);
    printf("  noise per step   %10.3f ms = %.0f%% of a DP step (%.0fM "
           "draws/s)\n",
           nz, 100.0 * nz / dp_step_ms, (double)n_params / nz / 1e3);
done:
    free(perm);
    free(bidx);
    free(xb);
    free(yb);
    roost_noise_destroy(noise);
    roost_dpsgd_destroy(dp);
    roost_workspace_destroy(ws);
    roost_sgd_destroy(sgd);
    roost_dataset_destroy(ds);
    roost_model_destroy(m);
    roost_rng_destroy(rng);
    free(x);
    free(y);
    free(params);
    free(grad);
    return 0;
}
