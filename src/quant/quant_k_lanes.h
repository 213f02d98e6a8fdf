/* quant_k_lanes.h: the K quantizers' group fits for 8 groups at once, one
 * per vector lane, bitwise equal to the scalar fits of quant_k.c
 * (quant_k_lanes.c says how).
 *
 * xt[8 j + g], wt[8 j + g]: element j (j < n, n <= 32) of group g and its
 * weight. Per group g: L[n g + j] the levels, scale[g], and for the affine
 * fit mn[g] (>= 0).
 */
#ifndef MOE_QUANT_K_LANES_H
#define MOE_QUANT_K_LANES_H

#include <stdint.h>

/* x ~ scale * l - mn, l in [0, nmax] (fit_affine). */
void quant_k_fit_affine8(int n, int nmax, const float *xt, const float *wt, uint8_t *L,
                         float *scale, float *mn);
/* x ~ scale * l, l in [-nmax, nmax - 1], L = l + nmax (fit_symmetric). */
void quant_k_fit_symmetric8(int n, int nmax, const float *xt, const float *wt, int8_t *L,
                            float *scale);

#endif
