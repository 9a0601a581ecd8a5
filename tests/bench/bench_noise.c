/*
 * bench_noise.c - throughput of the secure Gaussian noise sampler
 * (dp/noise.c) next to baselines measured in the same run:
 *   - raw AES-256-CTR keystream from the CSPRNG layer (bytes/s, and the
 *     draws/s it would allow at the sampler's 8 bytes per draw),
 *   - textbook Box-Muller on the same CSPRNG's uniforms (the naive
 *     floating-point sampler the secure one replaces),
 *   - roost_noise_fill_standard (integer draws scaled to doubles),
 *   - roost_noise_add on a float vector of 200,000 coordinates (the MLP's
 *     DP-SGD step: grid rounding + noise, in place).
 * Each figure is the median of several runs, as draws per second of this
 * thread's CPU time (the per-core rate, robust to other processes on a
 * shared machine) and, in brackets, per second of wall-clock time. Not a
 * pass/fail test.
 *
 * Usage: bench_noise [runs (default 7)] [sigma (default 1.0)]
 */
#include "common/rng.h"
#include "dp/noise.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DRAWS 4000000
#define MLP_PARAMS 200000

static double
clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A pair of timers: thread CPU time and wall-clock time. */
typedef struct timer {
    double cpu, wall;
} timer;

static timer
timer_start(void)
{
    timer t = {clock_s(CLOCK_THREAD_CPUTIME_ID), clock_s(CLOCK_MONOTONIC)};
    return t;
}

/* Rates of `work` units per CPU second and per wall second since t. */
static void
timer_rate(timer t, double work, double *cpu_rate, double *wall_rate)
{
    *cpu_rate = work / (clock_s(CLOCK_THREAD_CPUTIME_ID) - t.cpu);
    *wall_rate = work / (clock_s(CLOCK_MONOTONIC) - t.wall);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Box-Muller from 64-bit CSPRNG words in blocks, as a naive but
 * vectorisation-friendly baseline (two draws per pair of words). */
static int
box_muller(roost_rng *rng, uint64_t *words, size_t nwords, double *out,
           size_t n)
{
    const double two_pi = 6.283185307179586;
    for (size_t base = 0; base < n; base += nwords) {
        size_t c = n - base < nwords ? n - base : nwords;
        c &= ~(size_t)1;
        if (c == 0)
            break;
        if (roost_rng_bytes(rng, words, c * sizeof(*words)) != ROOST_OK)
            return 1;
        for (size_t i = 0; i < c; i += 2) {
            double u1 = ((double)(words[i] >> 11) + 1.0) * 0x1.0p-53;
            double u2 = (double)(words[i + 1] >> 11) * 0x1.0p-53;
            double r = sqrt(-2.0 * log(u1));
            out[base + i] = r * cos(two_pi * u2);
            out[base + i + 1] = r * sin(two_pi * u2);
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    double sigma = argc > 2 ? atof(argv[2]) : 1.0;
    if (runs < 1 || runs > 101 || !(sigma > 0.0)) {
        fprintf(stderr, "usage: bench_noise [runs 1..101] [sigma > 0]\n");
        return 2;
    }
    roost_rng *rng = NULL;
    if (roost_rng_create(&rng, NULL) != ROOST_OK) {
        fprintf(stderr, "rng: failed\n");
        return 1;
    }
    roost_errmsg em;
    roost_noise *noise = NULL;
    timer t0 = timer_start();
    if (roost_noise_create(&noise, NULL, rng, sigma, 1.0,
                           ROOST_NOISE_GRID_BITS_DEFAULT, &em) != ROOST_OK) {
        fprintf(stderr, "noise: %s\n", roost_errmsg_text(&em));
        return 1;
    }
    double build_ms = (clock_s(CLOCK_THREAD_CPUTIME_ID) - t0.cpu) * 1e3;

    size_t nbytes = (size_t)1 << 20;
    unsigned char *bytes = malloc(nbytes);
    double *out = malloc(DRAWS * sizeof(*out));
    uint64_t *words = malloc(4096 * sizeof(*words));
    float *params = malloc(MLP_PARAMS * sizeof(*params));
    /* [measure][cpu=0 / wall=1][run] */
    double *t = calloc((size_t)(4 * 2 * runs), sizeof(double));
#define RATE(m, w, r) t[((m)*2 + (w)) * runs + (r)]
    if (!bytes || !out || !words || !params || !t) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    memset(out, 0, DRAWS * sizeof(*out)); /* first touch outside timing */
    for (size_t i = 0; i < MLP_PARAMS; i++)
        params[i] = 0.001f * (float)(i % 1000);
    int rc = 0;
    double sink = 0.0;

    for (int r = 0; r < runs; r++) {
        /* Raw keystream: 64 MiB in 1 MiB requests. */
        t0 = timer_start();
        for (int i = 0; i < 64; i++)
            rc |= roost_rng_bytes(rng, bytes, nbytes);
        timer_rate(t0, 64.0 * (double)nbytes, &RATE(0, 0, r), &RATE(0, 1, r));
        sink += bytes[17];

        t0 = timer_start();
        rc |= box_muller(rng, words, 4096, out, DRAWS);
        timer_rate(t0, DRAWS, &RATE(1, 0, r), &RATE(1, 1, r));
        sink += out[DRAWS / 2];

        t0 = timer_start();
        rc |= roost_noise_fill_standard(noise, out, DRAWS);
        timer_rate(t0, DRAWS, &RATE(2, 0, r), &RATE(2, 1, r));
        sink += out[DRAWS / 3];

        /* 20 DP-SGD steps' worth of noise on the MLP's parameters. */
        t0 = timer_start();
        for (int step = 0; step < 20; step++)
            rc |= roost_noise_add(noise, params, MLP_PARAMS, NULL);
        timer_rate(t0, 20.0 * MLP_PARAMS, &RATE(3, 0, r), &RATE(3, 1, r));
        sink += (double)params[123];
        for (size_t i = 0; i < MLP_PARAMS; i++)
            params[i] = 0.001f * (float)(i % 1000);
    }
    if (rc != 0) {
        fprintf(stderr, "a call failed\n");
        return 1;
    }
    double med[4][2];
    for (int m = 0; m < 4; m++)
        for (int w = 0; w < 2; w++)
            med[m][w] = median(&RATE(m, w, 0), runs);
    double mu, beta;
    roost_noise_closeness(noise, &mu, &beta);

    printf("bench_noise: sigma %.3g, clip 1, grid 2^%d, %d runs (median), one "
           "thread\n",
           sigma, (int)log2(roost_noise_grid(noise)), runs);
    printf("rates per CPU second [per wall second]\n");
    printf("  table build (CPU)               %8.1f ms\n", build_ms);
    printf("  per-draw closeness              mu = %.3g, beta = %.3g\n", mu,
           beta);
    printf("  AES-256-CTR keystream (rng)     %8.0f MB/s      [%.0f]\n",
           med[0][0] / 1e6, med[0][1] / 1e6);
    printf("    = bound at 8 bytes per draw   %8.1f M draws/s\n",
           med[0][0] / 8.0 / 1e6);
    printf("  Box-Muller on CSPRNG (naive)    %8.1f M draws/s [%.1f]\n",
           med[1][0] / 1e6, med[1][1] / 1e6);
    printf("  secure fill_standard            %8.1f M draws/s [%.1f]\n",
           med[2][0] / 1e6, med[2][1] / 1e6);
    printf("  secure add, %d floats       %8.1f M draws/s [%.1f]  (%.3f ms "
           "CPU per step)\n",
           MLP_PARAMS, med[3][0] / 1e6, med[3][1] / 1e6,
           MLP_PARAMS / med[3][0] * 1e3);
    printf("  ratio secure add / Box-Muller   %8.2f\n", med[3][0] / med[1][0]);
    printf("  ratio secure add / rng bound    %8.2f\n",
           med[3][0] / (med[0][0] / 8.0));
    printf("  (checksum %g)\n", sink);
#undef RATE

    free(bytes);
    free(out);
    free(words);
    free(params);
    free(t);
    roost_noise_destroy(noise);
    roost_rng_destroy(rng);
    return 0;
}
