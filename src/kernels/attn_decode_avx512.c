/* attn_avx512.c: the AVX-512 attention kernel of the inference engine
 * (attn.h): up to 8 query rows of one kv head against its cache.
 *
 * For: register tiles that share every load of K and V between the rows of
 * a group. Scores: a tile of R rows x NB key blocks (16 keys each), R * NB
 * zmm accumulators (NB = 4 for R <= 4, else 3); each step c loads NB
 * vectors of kt (element c of 16 keys) and broadcasts q[r][c]: R * NB FMAs.
 * Output: a tile of R rows x CV vectors of 16 columns (CV as NB); each key
 * j loads CV vectors of v_j and broadcasts e[r][j]: R * CV FMAs. With 8 rows
 * (two tokens of a 4-head group) a load of K or V from L2 feeds 8 FMAs. The chains per element are those of attn.h (c in
 * order, then j in order), so tiles change speed, never results.
 * Not for: being called on a processor without AVX-512 (attn.c checks), nor
 * hd not a multiple of 16. Compiled with the AVX-512 flags (Makefile rule
 * for *_avx512.c).
 */
#include "kernels/attn_decode.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8") /* tiles live in registers only when unrolled */
#define W_MAX 4 /* key blocks (scores) or 16-column vectors (output) per tile */

/* Tile width for R rows: R x W accumulators of the 32 zmm registers, with
 * room for the W loads and a broadcast. */
#define W_OF(R) ((R) > 4 ? 3 : 4)

/* s[r][16 (b0 + b) + l] = scale * q_r . k_{16 (b0 + b) + l} for b < NB. */
AI void qk_tile(const int R, const int NB, const float *const *q, const float *kt, int hd,
                float scale, float *s, size_t lds, int b0) {
    __m512 acc[ATTN_RMAX][W_MAX];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    const size_t bs = (size_t)hd * ATTN_KB;
    const float *k0 = kt + (size_t)b0 * bs;
    for (int c = 0; c < hd; c++) {
        __m512 kv[W_MAX];
        UNROLL
        for (int b = 0; b < NB; b++) kv[b] = _mm512_loadu_ps(k0 + b * bs + (size_t)c * ATTN_KB);
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m512 qb = _mm512_set1_ps(q[r][c]);
            UNROLL
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(qb, kv[b], acc[r][b]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int b = 0; b < NB; b++)
            _mm512_storeu_ps(s + (size_t)r * lds + (size_t)(b0 + b) * ATTN_KB,
                             _mm512_mul_ps(acc[r][b], sc));
}

/* All nb key blocks of R rows. */
AI void qk_rows(const int R, const float *const *q, const float *kt, int hd, float scale,
                float *s, size_t lds, int nb) {
    const int W = W_OF(R);
    int b = 0;
    for (; b + W <= nb; b += W) qk_tile(R, W, q, kt, hd, scale, s, lds, b);
    switch (nb - b) {
    case 3: qk_tile(R, 3, q, kt, hd, scale, s, lds, b); break;
    case 2: qk_tile(R, 2, q, kt, hd, scale, s, lds, b); break;
    case 1: qk_tile(R, 1, q, kt, hd, scale, s, lds, b); break;
    default: break;
    }
}

/* o[r][c0 .. c0 + 16 CV) = inv[r] * sum_{j < np[r]} e[r][j] v_j; keys below
 * jmin = min np are shared by all rows, the rest go row by row. */
AI void pv_tile(const int R, const int CV, const float *const *e, const int *np, int jmin,
                int jmax, const float *v, int hd, int c0, float *const *o, const float *inv) {
    __m512 acc[ATTN_RMAX][W_MAX];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int x = 0; x < CV; x++) acc[r][x] = _mm512_setzero_ps();
    const float *vc = v + c0;
    for (int j = 0; j < jmin; j++) {
        __m512 vv[W_MAX];
        UNROLL
        for (int x = 0; x < CV; x++) vv[x] = _mm512_loadu_ps(vc + (size_t)j * hd + 16 * x);
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m512 eb = _mm512_set1_ps(e[r][j]);
            UNROLL
            for (int x = 0; x < CV; x++) acc[r][x] = _mm512_fmadd_ps(eb, vv[x], acc[r][x]);
        }
    }
    for (int j = jmin; j < jmax; j++) {
        __m512 vv[W_MAX];
        UNROLL
        for (int x = 0; x < CV; x++) vv[x] = _mm512_loadu_ps(vc + (size_t)j * hd + 16 * x);
        UNROLL
        for (int r = 0; r < R; r++) {
            if (j >= np[r]) continue;
            const __m512 eb = _mm512_set1_ps(e[r][j]);
            UNROLL
            for (int x = 0; x < CV; x++) acc[r][x] = _mm512_fmadd_ps(eb, vv[x], acc[r][x]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) {
        const __m512 iv = _mm512_set1_ps(inv[r]);
        UNROLL
        for (int x = 0; x < CV; x++)
            _mm512_storeu_ps(o[r] + c0 + 16 * x, _mm512_mul_ps(acc[r][x], iv));
    }
}

/* Every column block of R rows. */
AI void pv_rows(const int R, const float *const *e, const int *np, int jmin, int jmax,
                const float *v, int hd, float *const *o, const float *inv) {
    const int W = W_OF(R);
    int c0 = 0;
    for (; c0 + 16 * W <= hd; c0 += 16 * W) pv_tile(R, W, e, np, jmin, jmax, v, hd, c0, o, inv);
    switch ((hd - c0) / 16) {
    case 3: pv_tile(R, 3, e, np, jmin, jmax, v, hd, c0, o, inv); break;
    case 2: pv_tile(R, 2, e, np, jmin, jmax, v, hd, c0, o, inv); break;
    case 1: pv_tile(R, 1, e, np, jmin, jmax, v, hd, c0, o, inv); break;
    default: break;
    }
}

/* exp(x) for softmax arguments (x <= 0): x = n ln2 + r, |r| <= ln2/2 (two-
 * part ln2), the degree-7 Taylor polynomial of exp_vec (fastmath.h) in FMA,
 * times 2^n by vscalefps. Within about 2 ulp of expf; x below -87 counts as
 * -87 (exp ~1.6e-38, nothing next to the max's 1); NaN stays NaN. */
static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x); /* NaN in x is returned as is */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* In place over s[0 .. np): s_j = exp(s_j - max s); returns 1 / sum s_j,
 * summed in 16 lanes (blocks in order) then _mm512_reduce_add_ps. */
static float softmax_row(float *s, int np) {
    const int full = np / 16;
    const __mmask16 tail = (__mmask16)((1u << (np % 16)) - 1);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int b = 0; b < full; b++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + 16 * b));
    if (tail) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, s + 16 * full));
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < full; b++) {
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * b), m));
        _mm512_storeu_ps(s + 16 * b, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (tail) {
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + 16 * full), m));
        _mm512_mask_storeu_ps(s + 16 * full, tail, e);
        acc = _mm512_mask_add_ps(acc, tail, acc, e);
    }
    return 1.0f / _mm512_reduce_add_ps(acc);
}

void attn_group_avx512(const attn_group *g, const float *kt, const float *v, int hd,
                       float scale, float *s, size_t lds) {
    const int R = g->R;
    int jmin = g->np[0], jmax = g->np[0];
    for (int r = 1; r < R; r++) {
        jmin = g->np[r] < jmin ? g->np[r] : jmin;
        jmax = g->np[r] > jmax ? g->np[r] : jmax;
    }
    const int nb = (jmax + ATTN_KB - 1) / ATTN_KB;
#define QK_CASE(RR) case RR: qk_rows(RR, g->q, kt, hd, scale, s, lds, nb); break;
    switch (R) {
    QK_CASE(1) QK_CASE(2) QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6) QK_CASE(7)
    default: qk_rows(8, g->q, kt, hd, scale, s, lds, nb); break;
    }
#undef QK_CASE
    float inv[ATTN_RMAX];
    const float *e[ATTN_RMAX];
    for (int r = 0; r < R; r++) {
        e[r] = s + (size_t)r * lds;
        inv[r] = softmax_row(s + (size_t)r * lds, g->np[r]);
    }
#define PV_CASE(RR) case RR: pv_rows(RR, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    switch (R) {
    PV_CASE(1) PV_CASE(2) PV_CASE(3) PV_CASE(4) PV_CASE(5) PV_CASE(6) PV_CASE(7)
    default: pv_rows(8, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    }
#undef PV_CASE
}
