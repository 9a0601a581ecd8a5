/*
 * rng.h - the CSPRNG layer: every random number in Roost that touches
 * privacy (DP noise, Poisson sampling, client selection, keys) comes from
 * here. No libc rand/random/drand48 anywhere.
 *
 * A roost_rng is an AES-256-CTR keystream under a 256-bit key (computed
 * with VAES on CPUs that have it, else by OpenSSL; the same bytes either
 * way). In normal use the key comes from
 * OpenSSL's private DRBG (RAND_priv_bytes). For reproducible simulations
 * and tests there is an INSECURE deterministic mode keyed from a 64-bit
 * seed; its output is predictable by anyone who knows the seed, so noise
 * drawn from it gives no privacy. Such generators say so through
 * roost_rng_is_insecure(), and everything that prints an epsilon must say
 * so too.
 *
 * A roost_rng is not thread-safe: use one per thread (roost_rng_split
 * derives independent children).
 */
#ifndef ROOST_COMMON_RNG_H
#define ROOST_COMMON_RNG_H

#include <roost/roost.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct roost_rng roost_rng;

/* roost_rng_create - a generator keyed from OpenSSL's DRBG. alloc may be
 * NULL. Returns ROOST_OK, ROOST_ENOMEM or ROOST_ECRYPTO; *out is NULL on
 * failure. */
int roost_rng_create(roost_rng **out, const roost_allocator *alloc);

/* roost_rng_create_insecure_deterministic - TEST/SIMULATION ONLY: a
 * generator whose whole output is determined by (seed, stream). Gives no
 * privacy. */
int roost_rng_create_insecure_deterministic(roost_rng **out,
                                            const roost_allocator *alloc,
                                            uint64_t seed, uint64_t stream);

/* roost_rng_split - a new generator keyed from 32 bytes of parent's output;
 * it inherits parent's insecure flag. Deterministic parents give
 * deterministic children. */
int roost_rng_split(roost_rng *parent, roost_rng **out);

/* roost_rng_destroy - wipes the key and frees; NULL does nothing. */
void roost_rng_destroy(roost_rng *rng);

/* true when rng came from the insecure deterministic constructor (or was
 * split from one). */
bool roost_rng_is_insecure(const roost_rng *rng);

/* roost_rng_bytes - fill buf with n random bytes. ROOST_OK or
 * ROOST_ECRYPTO. */
int roost_rng_bytes(roost_rng *rng, void *buf, size_t n);

/* roost_rng_u64 - one uniform 64-bit integer. */
int roost_rng_u64(roost_rng *rng, uint64_t *out);

/* roost_rng_below - uniform integer in [0, bound), bound > 0, without
 * modulo bias. */
int roost_rng_below(roost_rng *rng, uint64_t bound, uint64_t *out);

/* roost_rng_uniform - uniform double in [0, 1) with 53 random bits. */
int roost_rng_uniform(roost_rng *rng, double *out);

#endif
