/* attn_avx2.c: the AVX2 + FMA attention kernel of the inference engine
 * (attn.h): up to 8 query rows of one kv head against its cache, 4 at a
 * time.
 *
 * For: the same tiles as attn_avx512.c with 8-lane vectors and 16
 * registers: scores R rows x NB key blocks (a block of 16 keys is 2 ymm;
 * NB = 1 for R >= 3, else 2), output R rows x up to 3 vectors of 8 columns.
 * The chains per element are those of attn.h (c in order, then j in
 * order), so tiles change speed, never results.
 * Not for: being called on a processor without AVX2 and FMA (attn.c
 * checks), nor hd not a multiple of 8. Compiled with -mavx2 -mfma (Makefile
 * rule for *_avx2.c).
 */
#include "kernels/attn_decode.h"

#include <immintrin.h>
#include <stddef.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8") /* tiles live in registers only when unrolled */
#define NB_MAX 2 /* key blocks per score tile */
#define CV_MAX 3 /* 8-column vectors per output tile */
#define VL 8     /* lanes */
#define RT 4     /* rows per tile at most */

/* s[r][16 (b0 + b) + l] = scale * q_r . k_{16 (b0 + b) + l} for b < NB. */
AI void qk_tile(const int R, const int NB, const float *const *q, const float *kt, int hd,
                float scale, float *s, size_t lds, int b0) {
    enum { NV = 2 * NB_MAX }; /* vectors per row: 2 per block of 16 keys */
    __m256 acc[RT][NV];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int b = 0; b < 2 * NB; b++) acc[r][b] = _mm256_setzero_ps();
    const size_t bs = (size_t)hd * ATTN_KB;
    const float *k0 = kt + (size_t)b0 * bs;
    for (int c = 0; c < hd; c++) {
        __m256 kv[NV];
        UNROLL
        for (int b = 0; b < 2 * NB; b++)
            kv[b] = _mm256_loadu_ps(k0 + (b / 2) * bs + (size_t)c * ATTN_KB + VL * (b % 2));
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 qb = _mm256_set1_ps(q[r][c]);
            UNROLL
            for (int b = 0; b < 2 * NB; b++) acc[r][b] = _mm256_fmadd_ps(qb, kv[b], acc[r][b]);
        }
    }
    const __m256 sc = _mm256_set1_ps(scale);
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int b = 0; b < 2 * NB; b++)
            _mm256_storeu_ps(s + (size_t)r * lds + (size_t)b0 * ATTN_KB + VL * b,
                             _mm256_mul_ps(acc[r][b], sc));
}

/* All nb key blocks of R rows. */
AI void qk_rows(const int R, const float *const *q, const float *kt, int hd, float scale,
                float *s, size_t lds, int nb) {
    int b = 0;
    if (R <= 2)
        for (; b + 2 <= nb; b += 2) qk_tile(R, 2, q, kt, hd, scale, s, lds, b);
    for (; b < nb; b++) qk_tile(R, 1, q, kt, hd, scale, s, lds, b);
}

/* o[r][c0 .. c0 + 8 CV) = inv[r] * sum_{j < np[r]} e[r][j] v_j; keys below
 * jmin = min np are shared by all rows, the rest go row by row. */
AI void pv_tile(const int R, const int CV, const float *const *e, const int *np, int jmin,
                int jmax, const float *v, int hd, int c0, float *const *o, const float *inv) {
    __m256 acc[RT][CV_MAX];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int x = 0; x < CV; x++) acc[r][x] = _mm256_setzero_ps();
    const float *vc = v + c0;
    for (int j = 0; j < jmin; j++) {
        __m256 vv[CV_MAX];
        UNROLL
        for (int x = 0; x < CV; x++) vv[x] = _mm256_loadu_ps(vc + (size_t)j * hd + VL * x);
        UNROLL
        for (int r = 0; r < R; r++) {
            const __m256 eb = _mm256_set1_ps(e[r][j]);
            UNROLL
            for (int x = 0; x < CV; x++) acc[r][x] = _mm256_fmadd_ps(eb, vv[x], acc[r][x]);
        }
    }
    for (int j = jmin; j < jmax; j++) {
        __m256 vv[CV_MAX];
        UNROLL
        for (int x = 0; x < CV; x++) vv[x] = _mm256_loadu_ps(vc + (size_t)j * hd + VL * x);
        UNROLL
        for (int r = 0; r < R; r++) {
            if (j >= np[r]) continue;
            const __m256 eb = _mm256_set1_ps(e[r][j]);
            UNROLL
            for (int x = 0; x < CV; x++) acc[r][x] = _mm256_fmadd_ps(eb, vv[x], acc[r][x]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) {
        const __m256 iv = _mm256_set1_ps(inv[r]);
        UNROLL
        for (int x = 0; x < CV; x++)
            _mm256_storeu_ps(o[r] + c0 + VL * x, _mm256_mul_ps(acc[r][x], iv));
    }
}

/* Every column block of R rows. */
AI void pv_rows(const int R, const float *const *e, const int *np, int jmin, int jmax,
                const float *v, int hd, float *const *o, const float *inv) {
    int c0 = 0;
    for (; c0 + VL * CV_MAX <= hd; c0 += VL * CV_MAX)
        pv_tile(R, CV_MAX, e, np, jmin, jmax, v, hd, c0, o, inv);
    switch ((hd - c0) / VL) {
    case 2: pv_tile(R, 2, e, np, jmin, jmax, v, hd, c0, o, inv); break;
    case 1: pv_tile(R, 1, e, np, jmin, jmax, v, hd, c0, o, inv); break;
    default: break;
    }
}

void attn_group_avx2(const attn_group *g, const float *kt, const float *v, int hd,
                     float scale, float *s, size_t lds) {
    if (g->R > 4) { /* 16 registers: at most 4 rows at a time (same chains per row) */
        attn_group a = *g, b = *g;
        a.R = 4;
        b.R = g->R - 4;
        for (int r = 0; r < b.R; r++) {
            b.q[r] = g->q[4 + r];
            b.o[r] = g->o[4 + r];
            b.np[r] = g->np[4 + r];
        }
        attn_group_avx2(&a, kt, v, hd, scale, s, lds);
        attn_group_avx2(&b, kt, v, hd, scale, s, lds);
        return;
    }
    const int R = g->R;
    int jmin = g->np[0], jmax = g->np[0];
    for (int r = 1; r < R; r++) {
        jmin = g->np[r] < jmin ? g->np[r] : jmin;
        jmax = g->np[r] > jmax ? g->np[r] : jmax;
    }
    const int nb = (jmax + ATTN_KB - 1) / ATTN_KB;
    switch (R) {
    case 1: qk_rows(1, g->q, kt, hd, scale, s, lds, nb); break;
    case 2: qk_rows(2, g->q, kt, hd, scale, s, lds, nb); break;
    case 3: qk_rows(3, g->q, kt, hd, scale, s, lds, nb); break;
    default: qk_rows(4, g->q, kt, hd, scale, s, lds, nb); break;
    }
    float inv[RT];
    const float *e[RT];
    for (int r = 0; r < R; r++) {
        e[r] = s + (size_t)r * lds;
        inv[r] = attn_softmax_row(s + (size_t)r * lds, g->np[r]);
    }
    switch (R) {
    case 1: pv_rows(1, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    case 2: pv_rows(2, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    case 3: pv_rows(3, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    default: pv_rows(4, e, g->np, jmin, jmax, v, hd, g->o, inv); break;
    }
}
