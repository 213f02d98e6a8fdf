/* rng.h: a small seedable random number generator (internal).
 * For: parameter initialisation, noise, sampling. The state lives in a struct
 * the caller owns; there is no global generator. Not for cryptography. */
#ifndef MOE_CORE_RNG_H
#define MOE_CORE_RNG_H

#include <math.h>
#include <stdint.h>

#include "core/hash.h"

typedef struct moe_rng { uint64_t s; } moe_rng; /* splitmix64 state */

static inline void moe_rng_seed(moe_rng *r, uint64_t seed) { r->s = seed; }

static inline uint64_t moe_rng_u64(moe_rng *r) {
    return moe_mix64(r->s += 0x9E3779B97F4A7C15ull);
}

/* Uniform in [0, 1) with 24 bits, exactly representable in float. */
static inline float moe_rng_f32(moe_rng *r) {
    return (float)(moe_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal by Box-Muller (one value per call; simple and reproducible). */
static inline float moe_rng_normal(moe_rng *r) {
    double u1 = ((double)(moe_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(moe_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
