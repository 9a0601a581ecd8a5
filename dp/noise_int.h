/*
 * noise_int.h - read-only views of the noise sampler's tables and a
 * single-word draw, for tests that check the exact table distribution and
 * the rare tie paths with crafted words. Not for production code.
 */
#ifndef ROOST_DP_NOISE_INT_H
#define ROOST_DP_NOISE_INT_H

#include "dp/noise.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* which: 0 = the B table (rounded Gaussian), 1 = the A table (discrete
 * Gaussian, absent when *k == 0). */
#define ROOST_NOISE_TABLE_B 0
#define ROOST_NOISE_TABLE_A 1

/* The convolution parameters: Z = B + k*A, both tables of parameter t. */
void roost_noise_debug_params(const roost_noise *noise, int64_t *k, double *t);

/* Table shape: 2^bits slots. ROOST_EINVAL for an absent table. */
int roost_noise_debug_table(const roost_noise *noise, int which,
                            unsigned *bits);

/* Slot contents: its value is |value| = slot below the threshold
 * thr = thr_hi * 2^64 + thr_lo (out of 2^(127-bits)), alias above it. */
int roost_noise_debug_slot(const roost_noise *noise, int which, size_t slot,
                           uint64_t *thr_hi, uint64_t *thr_lo, uint64_t *alias);

/* One signed draw from table `which` driven by the 32-bit value in the
 * low half of `word` (slot in its top bits, sign in bit 0; the further
 * words an exact comparison needs come from the sampler's rng). */
int roost_noise_debug_draw(roost_noise *noise, int which, uint64_t word,
                           int64_t *value);

/* Use the AVX2 paths (on = true, if the CPU has AVX2) or the scalar ones;
 * returns whether the AVX2 paths are now in use. Both must give the same
 * output for the same rng stream. */
bool roost_noise_debug_use_simd(roost_noise *noise, bool on);

#endif
