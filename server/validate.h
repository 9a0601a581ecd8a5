/*
 * validate.h - checks an uploaded model update before it reaches a strategy.
 *
 * An update is a parameter DELTA (the client's new weights minus the global
 * weights it trained from), n float32 coordinates, plus the number of
 * training examples the client reports. Validation refuses, with a specific
 * code and a message naming the problem:
 *   - a delta whose length is not the model's n         ROOST_ESHAPE
 *   - a delta with a NaN or an infinity                 ROOST_ENONFINITE
 *   - a delta whose L2 norm exceeds the bound, when the
 *     policy is REJECT                                  ROOST_ENORM
 * and, when it accepts, may change the update:
 *   - under the CLIP policy a delta above the bound is scaled in place to
 *     norm exactly max_norm (as in DP-FedAvg's server-side clipping);
 *   - the reported example count is capped at max_examples, so one client
 *     cannot claim an arbitrary share of a weighted average.
 * The result struct says what was measured and what was changed, for the
 * store's per-update record.
 *
 * Nothing here allocates or keeps state; any thread may call any function.
 */
#ifndef ROOST_SERVER_VALIDATE_H
#define ROOST_SERVER_VALIDATE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * ROOST_VECTOR_CLONES - put on a hot loop (the norm here, the fold and the
 * distances of strategy.c) to have GCC compile it for AVX-512, AVX2 and
 * the x86-64 baseline and pick the best at load time (an ifunc), since the
 * project builds for the baseline. Elsewhere it expands to nothing. The
 * loops it marks fix their order of operations in the code, so every clone
 * computes the same bits. Not under ThreadSanitizer: its instrumented
 * ifunc resolver runs before the TSan runtime is up and crashes the
 * program before main.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&         \
    defined(__linux__) && !defined(__SANITIZE_THREAD__)
#define ROOST_VECTOR_CLONES                                                    \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROOST_VECTOR_CLONES
#endif

/* What to do with an update whose L2 norm exceeds max_norm. */
typedef enum roost_norm_policy {
    ROOST_NORM_REJECT = 0, /* refuse it with ROOST_ENORM */
    ROOST_NORM_CLIP = 1    /* scale it down to norm max_norm and accept it */
} roost_norm_policy;

typedef struct roost_validate_config {
    /* Number of coordinates of the model; an update must have exactly n. */
    size_t n;
    /* Bound on the L2 norm of a delta. 0 means no bound (the norm is still
     * measured and reported). Must be finite and >= 0. */
    double max_norm;
    /* What to do above the bound (ignored when max_norm is 0). */
    roost_norm_policy norm_policy;
    /* Cap on the reported example count; 0 means no cap. */
    uint64_t max_examples;
} roost_validate_config;

typedef struct roost_validate_result {
    /* L2 norm of the delta as received (before any clipping), computed in
     * double precision. HUGE_VAL when the update was non-finite. */
    double norm;
    /* true when the delta was scaled down to max_norm; scale is the factor
     * applied (1.0 when not clipped). */
    bool clipped;
    double scale;
    /* The count the client reported, and the count to use for weighting
     * (min(reported, max_examples)); capped says whether they differ. */
    uint64_t reported_examples;
    uint64_t examples;
    bool capped;
    /* For ROOST_ENONFINITE: the index of the first NaN or infinity. */
    size_t bad_index;
} roost_validate_result;

/*
 * roost_validate_config_check - ROOST_OK when cfg is usable, else
 * ROOST_ECONFIG with a message naming the field (n == 0, max_norm negative,
 * NaN or infinite, unknown policy).
 */
int roost_validate_config_check(const roost_validate_config *cfg,
                                roost_errmsg *em);

/*
 * roost_validate_update - validate delta[0..len) and the reported example
 * count against cfg.
 *
 * delta is caller-owned; it is modified (scaled) only when the CLIP policy
 * applies and the call returns ROOST_OK with res->clipped set. The finite
 * check and the norm share one pass over the memory; clipping, when needed,
 * is a second pass. res (required) is filled on every return where the
 * fields are known: on ROOST_ESHAPE only reported_examples; on
 * ROOST_ENONFINITE also bad_index; on ROOST_ENORM also norm.
 *
 * Returns ROOST_OK, ROOST_EINVAL (NULL cfg/res, or NULL delta with len > 0),
 * ROOST_ECONFIG (bad cfg), ROOST_ESHAPE, ROOST_ENONFINITE or ROOST_ENORM,
 * with detail in em (may be NULL).
 */
int roost_validate_update(const roost_validate_config *cfg, float *delta,
                          size_t len, uint64_t reported_examples,
                          roost_validate_result *res, roost_errmsg *em);

/*
 * roost_validate_l2_norm - the L2 norm of x[0..n) in double precision, or
 * HUGE_VAL when any element is NaN or infinite (in which case, if
 * first_bad is not NULL, *first_bad is the index of the first such
 * element). One pass over the memory when all elements are finite.
 */
double roost_validate_l2_norm(const float *x, size_t n, size_t *first_bad);

#endif
