/* fastmath.h: a vectorisable float exp for the kernels' softmaxes
 * (attention, cross-entropy) (internal). Library expf does not vectorise
 * here; this one does, within about 2 ulp. Not for: the router, whose gates
 * keep libm's expf so the layer's references stay simple. */
#ifndef MOE_KERNELS_FASTMATH_H
#define MOE_KERNELS_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) in float, vectorisable: x = n ln2 + r with |r| <= ln2/2 (two-part
 * ln2), exp(r) by its Taylor polynomial of degree 7 (truncation < 1e-8
 * relative), times 2^n built in the exponent bits. About 2 ulp of expf for
 * x in [-87, 88]; 0 below -87 (expf would give a denormal or 0; -inf gives
 * 0), clamped above 88 (softmax arguments are <= 0); NaN stays NaN. */
static inline float exp_vec(float x0) {
    float x = x0 < -87.0f ? -87.0f : x0;
    x = x > 88.0f ? 88.0f : x;
    const float t = x * 1.44269504088896341f + 12582912.0f; /* round(x/ln2) + 1.5*2^23 */
    const float n = t - 12582912.0f;
    float r = x - n * 0.693145751953125f;     /* ln2, high bits (exact n*hi) */
    r = r - n * 1.428606765330187045e-06f;    /* ln2, low bits */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);            /* low mantissa bits hold n */
    /* unsigned: a NaN x gives garbage bits here (the result is NaN anyway)
     * and must not overflow a signed int */
    const uint32_t e = (bits - 0x4B400000u + 127u) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return x0 < -87.0f ? 0.0f : p * s; /* exp(-inf) = 0; NaN stays NaN */
}

#endif
