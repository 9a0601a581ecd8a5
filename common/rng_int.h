/*
 * rng_int.h - test hooks of the CSPRNG layer (not part of the API): a
 * generator under a given key, and a switch between the AES-NI/VAES code
 * and OpenSSL's portable AES-256-CTR, so tests can check that both paths
 * give the same keystream, and that it is AES-256-CTR's.
 */
#ifndef ROOST_COMMON_RNG_INT_H
#define ROOST_COMMON_RNG_INT_H

#include "common/rng.h"

#include <stdbool.h>

/* A generator whose keystream is AES-256-CTR under key, counter blocks
 * 0, 1, 2, ... (big-endian, 128 bits). Marked insecure. */
int roost_rng_debug_create_with_key(roost_rng **out,
                                    const unsigned char key[32]);

/* Use the VAES path when on and the CPU has it, else OpenSSL's EVP; the
 * stream continues where it was. Returns whether VAES is now in use. */
bool roost_rng_debug_use_vaes(roost_rng *rng, bool on);

#endif
