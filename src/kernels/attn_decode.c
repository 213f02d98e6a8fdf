/* attn.c: the portable attention kernel of the inference engine, the
 * softmax every kernel shares, and choosing a kernel at run time (attn.h).
 *
 * For: the plain C kernel (any processor, any head size; the compiler
 * vectorises its lane loops) and the dispatch. Not for: the SIMD kernels
 * (attn_avx512.c, attn_avx2.c) or the threading (forward.c).
 */
#include "kernels/attn_decode.h"

#include <math.h>

#include "core/cpu.h"
#include "kernels/fastmath.h"

float attn_softmax_row(float *s, int np) {
    float mx[ATTN_KB], acc[ATTN_KB];
    for (int l = 0; l < ATTN_KB; l++) { mx[l] = -INFINITY; acc[l] = 0.0f; }
    int j = 0;
    for (; j + ATTN_KB <= np; j += ATTN_KB)
        for (int l = 0; l < ATTN_KB; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
    for (int l = 0; j + l < np; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
    float m = mx[0];
    for (int l = 1; l < ATTN_KB; l++) m = mx[l] > m ? mx[l] : m;

    #pragma omp simd
    for (int i = 0; i < np; i++) s[i] = exp_vec(s[i] - m);
    for (j = 0; j + ATTN_KB <= np; j += ATTN_KB)
        for (int l = 0; l < ATTN_KB; l++) acc[l] += s[j + l];
    for (int l = 0; j + l < np; l++) acc[l] += s[j + l];
    for (int w = ATTN_KB / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return 1.0f / acc[0];
}

void attn_group_portable(const attn_group *g, const float *kt, const float *v, int hd,
                         float scale, float *s, size_t lds) {
    for (int r = 0; r < g->R; r++) {
        const int np = g->np[r], nb = (np + ATTN_KB - 1) / ATTN_KB;
        const float *q = g->q[r];
        float *sr = s + (size_t)r * lds;
        for (int b = 0; b < nb; b++) { /* s[16 keys] = q . k, c in order */
            const float *kb = kt + (size_t)b * hd * ATTN_KB;
            float acc[ATTN_KB] = {0};
            for (int c = 0; c < hd; c++) {
                const float qc = q[c];
                for (int l = 0; l < ATTN_KB; l++) acc[l] += qc * kb[(size_t)c * ATTN_KB + l];
            }
            for (int l = 0; l < ATTN_KB; l++) sr[b * ATTN_KB + l] = acc[l] * scale;
        }
        const float inv = attn_softmax_row(sr, np);
        float *o = g->o[r];
        for (int c = 0; c < hd; c++) o[c] = 0.0f;
        for (int j = 0; j < np; j++) { /* o += e_j v_j, j in order */
            const float e = sr[j];
            const float *vj = v + (size_t)j * hd;
            for (int c = 0; c < hd; c++) o[c] += e * vj[c];
        }
        for (int c = 0; c < hd; c++) o[c] *= inv;
    }
}

/* ---------------------------------------------------- kernel selection */

int attn_kernel_supported(int kernel, int hd) {
    if (hd < 1) return 0;
    switch (kernel) {
    case ATTN_KERNEL_PORTABLE: return 1;
    case ATTN_KERNEL_AVX2: return hd % 8 == 0 && moe_cpu_has(MOE_CPU_AVX2 | MOE_CPU_FMA);
    case ATTN_KERNEL_AVX512: /* the file is built with F, BW, DQ, VL */
        return hd % 16 == 0 && moe_cpu_has(MOE_CPU_AVX512F | MOE_CPU_AVX512BW |
                                           MOE_CPU_AVX512DQ | MOE_CPU_AVX512VL);
    default: return 0;
    }
}

int attn_best_kernel(int hd) {
    for (int k = ATTN_KERNEL_COUNT - 1; k > 0; k--)
        if (attn_kernel_supported(k, hd)) return k;
    return ATTN_KERNEL_PORTABLE;
}

const char *attn_kernel_name(int kernel) {
    static const char *const names[ATTN_KERNEL_COUNT] = {"portable", "avx2", "avx512"};
    if (kernel < 0 || kernel >= ATTN_KERNEL_COUNT) return "?";
    return names[kernel];
}

attn_kernel_fn attn_kernel_get(int kernel, int hd) {
    if (!attn_kernel_supported(kernel, hd)) return attn_group_portable;
    switch (kernel) {
    case ATTN_KERNEL_AVX2: return attn_group_avx2;
    case ATTN_KERNEL_AVX512: return attn_group_avx512;
    default: return attn_group_portable;
    }
}
