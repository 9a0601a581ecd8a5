/*
 * bench_aggregate.c - how fast the coordinator absorbs updates with FedAvg,
 * and how much memory it holds while doing so, next to the memory
 * bandwidth of the same machine measured in the same run.
 *
 * For each model size n (float32 parameters) a child process (so that peak
 * RSS is per size) times, over U updates:
 *   baseline  memcpy of the update's 4n bytes into a staging buffer, and a
 *             streaming read (sum) of the same bytes: the floor any
 *             per-update work must pay;
 *   validate  roost_validate_update (finite check + L2 norm, one pass);
 *   add       roost_strategy_add, the streaming FedAvg fold into the
 *             double accumulator (reads 4n bytes, reads and writes 8n);
 *   finish    roost_strategy_finish (divide, dry-run check, commit).
 * and prints updates/s, GB/s, the ratio of add to the baselines, and the
 * peak RSS (getrusage) against the model's size and the target of
 * 3x the model + 64 MiB. Timing and memory run in separate child
 * processes, so the RSS figure holds only what a coordinator holds (global
 * model, one update buffer, the strategy's accumulator), not the
 * baselines' staging buffer.
 *
 * The coordinator reuses one update buffer (the decrypted payload) per
 * update, as this benchmark does; for models whose working set (12n bytes)
 * fits in the last-level cache, both add and the baselines run from cache.
 *
 * It also runs one round of each robust strategy (median, trimmed mean,
 * Krum, Multi-Krum), which must buffer every update: time per add and of
 * finish, and the memory held next to the bound the strategy states.
 *
 * usage: bench_aggregate [n [updates]]   (default: a sweep of sizes, with
 *        1,000 updates at n = 1M, then the robust strategies)
 *        bench_aggregate robust [n [k]]  (default n = 100,000, k = 100)
 */
#include "common/rng.h"
#include "server/strategy.h"
#include "server/validate.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Time is this thread's CPU time, not wall time: the machine is shared
 * (other builds, fuzzers), and time spent descheduled is not the
 * aggregation's cost. Everything measured here is single-threaded. */
static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double
peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* Keeps the compiler from discarding the baseline loops. */
static volatile double sink;

#define REPS 3

static double
min_d(double a, double b)
{
    return a < b ? a : b;
}

/*
 * run_size - time the phases (timing mode), or, in memory mode, do only
 * what the coordinator does (one global model, one update buffer, the
 * strategy; validate, add and finish) so the peak RSS is the coordinator's
 * and not inflated by the baselines' staging buffer.
 */
static int
run_size(size_t n, size_t updates, bool memory_mode)
{
    double rss_start = peak_rss_mib();
    const double model_mib = (double)n * sizeof(float) / (1024.0 * 1024.0);
    float *global = malloc(n * sizeof(float));
    float *update = malloc(n * sizeof(float));
    float *staging = memory_mode ? NULL : malloc(n * sizeof(float));
    if (global == NULL || update == NULL || (staging == NULL && !memory_mode)) {
        fprintf(stderr, "out of memory for n=%zu\n", n);
        return 1;
    }
    roost_rng *rng;
    if (roost_rng_create_insecure_deterministic(&rng, NULL, 1, 0) != 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        double r;
        roost_rng_uniform(rng, &r);
        update[i] = (float)(r - 0.5) * 1e-3f;
        global[i] = 0.0f;
    }
    if (staging != NULL)
        memset(staging, 0, n * sizeof(float));
    roost_rng_destroy(rng);

    roost_errmsg em;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, ROOST_STRATEGY_FEDAVG);
    roost_strategy *s;
    if (roost_strategy_create(&s, NULL, &cfg, n, &em) != 0) {
        fprintf(stderr, "create: %s\n", em.text);
        return 1;
    }
    roost_validate_config vcfg = {n, 1e9, ROOST_NORM_REJECT, 60000};

    /* Warm-up: touch every page once so no timing pays first touch. */
    roost_strategy_begin_round(s);
    roost_strategy_add(s, update, 1.0, &em);

    const double bytes = (double)n * sizeof(float);
    /* Each phase runs REPS times, interleaved, and the fastest run counts:
     * the machine is shared, and interference only ever slows a run. */
    double t_memcpy = HUGE_VAL, t_read = HUGE_VAL, t_validate = HUGE_VAL;
    double t_add = HUGE_VAL, t_finish = HUGE_VAL, t0;
    for (int rep = 0; rep < (memory_mode ? 1 : REPS); rep++) {
        if (!memory_mode) {
            t0 = now_s();
            for (size_t u = 0; u < updates; u++) {
                update[u % n] += 0.0f; /* a store the loop cannot hoist */
                memcpy(staging, update, n * sizeof(float));
            }
            t_memcpy = min_d(t_memcpy, now_s() - t0);
            sink = (double)staging[n / 2];

            t0 = now_s();
            for (size_t u = 0; u < updates; u++) {
                /* XOR of the bytes in 8-byte words, four independent chains:
                 * the arithmetic costs one cycle per word, so this measures
                 * reading. */
                const unsigned char *p = (const unsigned char *)update;
                const size_t len = n * sizeof(float);
                uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
                for (size_t i = 0; i + 32 <= len; i += 32) {
                    uint64_t w0, w1, w2, w3;
                    memcpy(&w0, p + i, 8);
                    memcpy(&w1, p + i + 8, 8);
                    memcpy(&w2, p + i + 16, 8);
                    memcpy(&w3, p + i + 24, 8);
                    x0 ^= w0;
                    x1 ^= w1;
                    x2 ^= w2;
                    x3 ^= w3;
                }
                sink = (double)((x0 ^ x1) ^ (x2 ^ x3));
            }
            t_read = min_d(t_read, now_s() - t0);
        }
        t0 = now_s();
        for (size_t u = 0; u < updates; u++) {
            roost_validate_result r;
            if (roost_validate_update(&vcfg, update, n, 100, &r, &em) != 0) {
                fprintf(stderr, "validate: %s\n", em.text);
                return 1;
            }
            sink = r.norm;
        }
        t_validate = min_d(t_validate, now_s() - t0);

        roost_strategy_begin_round(s);
        t0 = now_s();
        for (size_t u = 0; u < updates; u++) {
            if (roost_strategy_add(s, update, (double)(1 + u % 500), &em) !=
                0) {
                fprintf(stderr, "add: %s\n", em.text);
                return 1;
            }
        }
        t_add = min_d(t_add, now_s() - t0);

        memset(global, 0, n * sizeof(float));
        t0 = now_s();
        if (roost_strategy_finish(s, global, &em) != 0) {
            fprintf(stderr, "finish: %s\n", em.text);
            return 1;
        }
        t_finish = min_d(t_finish, now_s() - t0);
    }
    /* The average of identical updates is the update itself. */
    double err = 0;
    for (size_t i = 0; i < n; i += n / 64 + 1) {
        double e = (double)global[i] - (double)update[i];
        if (e < 0)
            e = -e;
        if (e > err)
            err = e;
    }

    double rss_peak = peak_rss_mib();
    double u = (double)updates;
    if (memory_mode) {
        printf("  memory: peak RSS %.1f MiB (process start %.1f MiB) = %.2f x "
               "model, while validating and adding %zu updates and "
               "finishing; the strategy holds %.1f MiB; target 3 x model + "
               "64 MiB = %.1f MiB: %s\n",
               rss_peak, rss_start, rss_peak / model_mib, updates,
               (double)roost_strategy_memory_used(s) / (1024.0 * 1024.0),
               3 * model_mib + 64,
               rss_peak <= 3 * model_mib + 64 ? "met" : "NOT met");
    } else {
        printf("n=%zu (model %.1f MiB), %zu updates, best of %d runs\n", n,
               model_mib, updates, REPS);
        printf("  baseline memcpy  %10.0f updates/s  %6.1f GB/s\n",
               u / t_memcpy, u * bytes / t_memcpy / 1e9);
        printf("  baseline read    %10.0f updates/s  %6.1f GB/s\n", u / t_read,
               u * bytes / t_read / 1e9);
        printf("  validate         %10.0f updates/s  %6.1f GB/s of update\n",
               u / t_validate, u * bytes / t_validate / 1e9);
        printf("  fedavg add       %10.0f updates/s  %6.1f GB/s of update "
               "(%.1f GB/s incl. accumulator traffic)\n",
               u / t_add, u * bytes / t_add / 1e9, u * bytes * 5 / t_add / 1e9);
        printf("  ratio add/memcpy time %.2f, add/read time %.2f, "
               "validate+add per update %.3f ms\n",
               t_add / t_memcpy, t_add / t_read,
               1e3 * (t_add + t_validate) / u);
        printf("  finish           %10.3f ms (max |avg - update| = %.2g)\n",
               1e3 * t_finish, err);
    }
    fflush(stdout);
    roost_strategy_destroy(s);
    free(global);
    free(update);
    free(staging);
    return 0;
}

/*
 * run_robust - a robust strategy (which buffers every update) over one
 * round of k distinct random updates of n coordinates: time per add, time
 * of finish, and memory held against the stated bound and peak RSS.
 */
static int
run_robust(roost_strategy_kind kind, size_t n, size_t k)
{
    roost_errmsg em;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, kind);
    cfg.max_buffered_updates = k;
    cfg.max_buffered_bytes = SIZE_MAX;
    size_t bound;
    roost_strategy *s;
    if (roost_strategy_memory_bound(&cfg, n, k, &bound, &em) != 0 ||
        roost_strategy_create(&s, NULL, &cfg, n, &em) != 0) {
        fprintf(stderr, "%s: %s\n", roost_strategy_kind_name(kind), em.text);
        return 1;
    }
    float *update = malloc(n * sizeof(float));
    float *global = calloc(n, sizeof(float));
    roost_rng *rng;
    if (update == NULL || global == NULL ||
        roost_rng_create_insecure_deterministic(&rng, NULL, 2, 0) != 0)
        return 1;
    double t_add = 0;
    roost_strategy_begin_round(s);
    for (size_t u = 0; u < k; u++) {
        for (size_t i = 0; i < n; i++) {
            double r;
            roost_rng_uniform(rng, &r);
            update[i] = (float)(r - 0.5);
        }
        double t0 = now_s();
        if (roost_strategy_add(s, update, 1.0, &em) != 0) {
            fprintf(stderr, "add: %s\n", em.text);
            return 1;
        }
        t_add += now_s() - t0;
    }
    double t0 = now_s();
    if (roost_strategy_finish(s, global, &em) != 0) {
        fprintf(stderr, "finish: %s\n", em.text);
        return 1;
    }
    double t_finish = now_s() - t0;
    const double mib = 1024.0 * 1024.0;
    printf("  %-12s add %7.3f ms/update, finish %9.1f ms; holds %.1f MiB, "
           "stated bound %.1f MiB, peak RSS %.1f MiB\n",
           roost_strategy_kind_name(kind), 1e3 * t_add / (double)k,
           1e3 * t_finish, (double)roost_strategy_memory_used(s) / mib,
           (double)bound / mib, peak_rss_mib());
    fflush(stdout);
    roost_rng_destroy(rng);
    roost_strategy_destroy(s);
    free(update);
    free(global);
    return 0;
}

static int
run_robust_in_child(roost_strategy_kind kind, size_t n, size_t k)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return run_robust(kind, n, k);
    if (pid == 0)
        _exit(run_robust(kind, n, k));
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status);
}

static int
run_robust_all(size_t n, size_t k)
{
    static const roost_strategy_kind kinds[] = {
        ROOST_STRATEGY_MEDIAN, ROOST_STRATEGY_TRIMMED_MEAN, ROOST_STRATEGY_KRUM,
        ROOST_STRATEGY_MULTIKRUM};
    printf("robust strategies, n=%zu (model %.1f MiB), one round of %zu "
           "updates\n",
           n, (double)n * sizeof(float) / (1024.0 * 1024.0), k);
    int rc = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        rc |= run_robust_in_child(kinds[i], n, k);
    return rc;
}

static int
run_in_child(size_t n, size_t updates, bool memory_mode)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return run_size(n, updates, memory_mode);
    if (pid == 0)
        _exit(run_size(n, updates, memory_mode));
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status);
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "robust") == 0) {
        unsigned long long n = 100000, k = 100;
        char *end = NULL;
        if (argc > 2)
            n = strtoull(argv[2], &end, 10);
        if (argc > 3 && (end == NULL || *end == '\0'))
            k = strtoull(argv[3], &end, 10);
        if ((end != NULL && *end != '\0') || n == 0 || k < 5) {
            fprintf(stderr, "usage: %s robust [n [k >= 5]]\n", argv[0]);
            return 2;
        }
        return run_robust_all((size_t)n, (size_t)k);
    }
    if (argc > 1) {
        char *end;
        unsigned long long n = strtoull(argv[1], &end, 10);
        unsigned long long updates = 1000;
        if (*end != '\0' || n == 0) {
            fprintf(stderr, "usage: %s [n [updates]]\n", argv[0]);
            return 2;
        }
        if (argc > 2) {
            updates = strtoull(argv[2], &end, 10);
            if (*end != '\0' || updates == 0) {
                fprintf(stderr, "usage: %s [n [updates]]\n", argv[0]);
                return 2;
            }
        }
        return run_in_child((size_t)n, (size_t)updates, false) |
               run_in_child((size_t)n, (size_t)updates, true);
    }
    static const size_t sizes[] = {(size_t)1 << 16, (size_t)1 << 18, 1000000,
                                   (size_t)1 << 22, (size_t)1 << 24};
    int rc = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        /* 1,000 updates up to 1M parameters, then the same total bytes. */
        size_t updates = n <= 1000000 ? 1000 : 1000 * (size_t)1000000 / n;
        rc |= run_in_child(n, updates, false);
        rc |= run_in_child(n, updates, true);
    }
    rc |= run_robust_all(100000, 100);
    return rc;
}
