/* quant_k_lanes.c: the K quantizers' group fits (fit_affine, fit_symmetric
 * of quant_k.c) run for 8 groups at once, one group per SIMD lane.
 *
 * Each lane performs exactly the scalar fit's float operations in the same
 * order (the serial sums stay serial per lane; branches become per-lane
 * masks and selects), so the results are bitwise those of the scalar fits
 * in quant_k.c, which stay as the reference (tests/test_quant_k_lanes.c
 * compares the two). Portable GCC/clang vector extensions: 8 x f32 is one
 * AVX register, two SSE registers, or whatever the target has.
 *
 * Layouts: xt[8 j + g], wt[8 j + g]: element j (< n <= 32) of group g.
 * Outputs per group g: L[n g + j], scale[g], mn[g] (affine) as the scalar.
 *
 * Not for: the block layouts and scale packing (quant_k.c).
 */
#include "quant/quant_k_lanes.h"

#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* only static functions pass vectors: no ABI concern when the target has
 * no AVX (gcc warns about one) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));

static inline vf ldf(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline vf sf(float f) { return (vf){f, f, f, f, f, f, f, f}; }
static inline vi si(int32_t i) { return (vi){i, i, i, i, i, i, i, i}; }
/* m ? a : b per lane (m: all ones or zero) */
static inline vf self(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
static inline vi seli(vi m, vi a, vi b) { return (m & a) | (~m & b); }
static inline vf cvt(vi i) { return __builtin_convertvector(i, vf); }
static inline int any(vi m) {
    int32_t t[8];
    memcpy(t, &m, sizeof t);
    return (t[0] | t[1] | t[2] | t[3] | t[4] | t[5] | t[6] | t[7]) != 0;
}

/* round_clamp of quant_k.c per lane: NaN and v < lo give lo, v > hi gives
 * hi, else quant_nearest_int(v). */
static inline vi rc(vf v, int lo, int hi) {
    const vf t = v + sf(12582912.f);
    vi r = ((vi)t & si(0x007fffff)) - si(0x00400000);
    r = seli(v > sf((float)hi), si(hi), r);
    return seli(~(v >= sf((float)lo)), si(lo), r);
}

static inline vf vabs(vf v) { return (vf)((vi)v & si(0x7fffffff)); }

void quant_k_fit_affine8(int n, int nmax, const float *xt, const float *wt, uint8_t *L,
                         float *scale, float *mn) {
    vf x[32] = {0}, w[32] = {0};
    vi la[32];
    for (int j = 0; j < n; j++) {
        x[j] = ldf(xt + 8 * j);
        w[j] = ldf(wt + 8 * j);
    }
    const vf zero = sf(0.0f);
    vf lo = x[0], hi = x[0], sw = zero, sx = zero;
    for (int j = 0; j < n; j++) {
        lo = self(x[j] < lo, x[j], lo);
        hi = self(x[j] > hi, x[j], hi);
        sw = sw + w[j];
        sx = sx + w[j] * x[j];
    }
    lo = self(lo > zero, zero, lo);
    const vi flat = hi == lo;
    const vf range = hi - lo;
    vf best_a = range / sf((float)nmax), best_b = lo, best_err = zero;
    for (int j = 0; j < n; j++) {
        const vf diff = best_a * cvt(rc((x[j] - lo) / best_a, 0, nmax)) + lo - x[j];
        best_err = best_err + w[j] * diff * diff;
    }
    for (int step = 0; step <= 24; step++) {
        const vf iscale = sf((float)nmax - 1.0f + 0.1f * (float)step) / range;
        vi active = ~flat;
        for (int refine = 0; refine < 3 && any(active); refine++) {
            vf sl = zero, sl2 = zero, sxl = zero;
            for (int j = 0; j < n; j++) {
                const vi l = refine == 0 ? rc(iscale * (x[j] - lo), 0, nmax)
                                         : rc((x[j] - best_b) / best_a, 0, nmax);
                la[j] = l;
                const vf lf = cvt(l);
                sl = sl + w[j] * lf;
                sl2 = sl2 + w[j] * cvt(l * l);
                sxl = sxl + w[j] * lf * x[j];
            }
            const vf D = sw * sl2 - sl * sl;
            active &= D > zero;
            vf a = (sw * sxl - sx * sl) / D;
            vf b = (sl2 * sx - sl * sxl) / D;
            const vi pos = b > zero;
            b = self(pos, zero, b);
            a = self(pos, sxl / sl2, a);
            active &= a > zero;
            if (!any(active)) break;
            vf err = zero;
            for (int j = 0; j < n; j++) {
                const vf diff = a * cvt(la[j]) + b - x[j];
                err = err + w[j] * diff * diff;
            }
            active &= err < best_err;
            best_err = self(active, err, best_err);
            best_a = self(active, a, best_a);
            best_b = self(active, b, best_b);
        }
    }
    for (int j = 0; j < n; j++) {
        const vi l = seli(flat, si(0), rc((x[j] - best_b) / best_a, 0, nmax));
        int32_t t[8];
        memcpy(t, &l, sizeof t);
        for (int g = 0; g < 8; g++) L[n * g + j] = (uint8_t)t[g];
    }
    const vf s = self(flat, zero, best_a), m = self(flat, -lo, -best_b);
    memcpy(scale, &s, sizeof s);
    memcpy(mn, &m, sizeof m);
}

void quant_k_fit_symmetric8(int n, int nmax, const float *xt, const float *wt, int8_t *L,
                            float *scale) {
    vf x[32] = {0}, w[32] = {0};
    for (int j = 0; j < n; j++) {
        x[j] = ldf(xt + 8 * j);
        w[j] = ldf(wt + 8 * j);
    }
    const vf zero = sf(0.0f);
    vf amax = zero, xmax = zero;
    for (int j = 0; j < n; j++) {
        const vi gt = vabs(x[j]) > amax;
        amax = self(gt, vabs(x[j]), amax);
        xmax = self(gt, x[j], xmax);
    }
    const vi tiny = amax < sf(1e-15f);
    vf best_scale = zero, best = sf(-1.0f);
    for (int is = -10; is <= 10; is++) {
        const vf iscale = sf(-((float)nmax + 0.1f * (float)is)) / xmax;
        vf sumlx = zero, suml2 = zero;
        for (int j = 0; j < n; j++) {
            const vi l = rc(iscale * x[j], -nmax, nmax - 1);
            sumlx = sumlx + w[j] * x[j] * cvt(l);
            suml2 = suml2 + w[j] * cvt(l * l);
        }
        const vi upd = ~tiny & (suml2 > zero) & (sumlx * sumlx > best * suml2);
        best = self(upd, sumlx * sumlx / suml2, best);
        best_scale = self(upd, sumlx / suml2, best_scale);
    }
    vi active = ~tiny;
    for (int it = 0; it < 3; it++) {
        active &= best_scale != zero;
        if (!any(active)) break;
        vf sumlx = zero, suml2 = zero;
        for (int j = 0; j < n; j++) {
            const vi l = rc(x[j] / best_scale, -nmax, nmax - 1);
            sumlx = sumlx + w[j] * x[j] * cvt(l);
            suml2 = suml2 + w[j] * cvt(l * l);
        }
        active &= (suml2 > zero) & (sumlx * sumlx > best * suml2);
        best = self(active, sumlx * sumlx / suml2, best);
        best_scale = self(active, sumlx / suml2, best_scale);
    }
    best_scale = self(tiny, zero, best_scale);
    const vi nz = best_scale != zero;
    for (int j = 0; j < n; j++) {
        const vi l = seli(nz, rc(x[j] / best_scale, -nmax, nmax - 1), si(0)) + si(nmax);
        int32_t t[8];
        memcpy(t, &l, sizeof t);
        for (int g = 0; g < 8; g++) L[n * g + j] = (int8_t)t[g];
    }
    memcpy(scale, &best_scale, sizeof best_scale);
}
