/* test_quant_simd.c: the SIMD kernels of the quantized products
 * (src/quant/quant_simd.h) against the scalar reference, bit for bit.
 *
 * Checks, for every kernel level this processor runs (scalar, avx2,
 * avx512vnni; SKIPPED for the others), called directly through the level's
 * table: each type's one-row dot for K = 256, 512, 2048, 4352 on random and
 * extreme blocks (every quant at its maximum or minimum, -128 / +127
 * activations, zero blocks, fp16 scales huge, subnormal, zero or negative);
 * the several-rows kernels (decode) for 1..9 weight rows;
 * the multi-row kernels for 1..9, 17 and 33 activation rows and 1..37 weight
 * rows; the activation quantizers. Then quant_matmul (which picks the best
 * level) for M in {1, 2, 3, 7, 16, 33, 130}, N = 37 and 100, 1, 2 and 3
 * threads: every output equal to the scalar dot of its pair, with memcmp.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_simd.h"
#include "testutil.h"

static const quant_type k_types[] = {
    QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0, QUANT_Q8_1,
    QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_Q8_K,
};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

/* Byte offsets of the fp16 scale fields in a block of each type (-1 ends). */
static void half_fields(quant_type t, int off[3]) {
    off[0] = off[1] = off[2] = -1;
    switch (t) {
    case QUANT_Q4_0: case QUANT_Q5_0: case QUANT_Q8_0: off[0] = 0; break;
    case QUANT_Q4_1: case QUANT_Q5_1: case QUANT_Q8_1: off[0] = 0; off[1] = 2; break;
    case QUANT_Q2_K: off[0] = 80; off[1] = 82; break;
    case QUANT_Q3_K: off[0] = 108; break;
    case QUANT_Q4_K: case QUANT_Q5_K: off[0] = 0; off[1] = 2; break;
    case QUANT_Q6_K: off[0] = 208; break;
    default: break;
    }
}

/* A finite fp16 of a random kind: ordinary, huge, subnormal, zero, negative. */
static uint16_t rand_half(tu_rng *r) {
    switch (tu_next(r) % 8) {
    case 0: return 0x7bff;                                  /* 65504 */
    case 1: return (uint16_t)(1 + tu_next(r) % 0x3ff);      /* subnormal */
    case 2: return 0;
    case 3: return (uint16_t)(0x8000 | (0x2000 + tu_next(r) % 0x1c00)); /* negative */
    default: return (uint16_t)(0x2000 + tu_next(r) % 0x1c00);          /* ~2^-7 .. 1 */
    }
}

/* n weights of type t: per block either random bytes or an extreme pattern
 * (all bits set, all clear, 0x80 everywhere), then random-kind fp16 scales. */
static void fill_weights(tu_rng *r, quant_type t, uint8_t *w, int64_t n) {
    const quant_traits *tr = quant_get_traits(t);
    const int64_t nb = n / tr->block_size;
    int off[3];
    half_fields(t, off);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * tr->block_bytes;
        const int mode = (int)(tu_next(r) % 6);
        for (size_t i = 0; i < tr->block_bytes; i++)
            blk[i] = mode == 0 ? 0xff : mode == 1 ? 0x00 : mode == 2 ? 0x80 : (uint8_t)tu_next(r);
        for (int f = 0; f < 3 && off[f] >= 0; f++) quant_wr16(blk + off[f], rand_half(r));
        if (t == QUANT_Q8_K) { /* fp32 scale */
            const float d = tu_uniform(r) * 4.0f;
            quant_wr32(blk, quant_f32_to_bits(d));
        }
    }
}

/* n activations of type t (Q8_0, Q8_1 or Q8_K): per block random, all -128,
 * all +127, all 0 or alternating extremes; Q8_K bsums are the true sums. */
static void fill_acts(tu_rng *r, quant_type t, uint8_t *a, int64_t n) {
    const quant_traits *tr = quant_get_traits(t);
    const int64_t nb = n / tr->block_size;
    const int qoff = t == QUANT_Q8_0 ? 2 : 4;
    const int nq = tr->block_size;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = a + b * tr->block_bytes;
        const int mode = (int)(tu_next(r) % 6);
        int8_t *q = (int8_t *)(blk + qoff);
        for (int i = 0; i < nq; i++)
            q[i] = mode == 0 ? -128 : mode == 1 ? 127 : mode == 2 ? 0 :
                   mode == 3 ? (i & 1 ? 127 : -128) : (int8_t)tu_next(r);
        if (t == QUANT_Q8_K) {
            quant_wr32(blk, quant_f32_to_bits(tu_uniform(r) * 2.0f));
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int i = 16 * g; i < 16 * g + 16; i++) s += q[i];
                quant_wr16(blk + 260 + 2 * g, (uint16_t)(int16_t)s);
            }
        } else {
            quant_wr16(blk, rand_half(r));
            if (t == QUANT_Q8_1) quant_wr16(blk + 2, rand_half(r));
        }
    }
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* n floats of varied magnitudes (subnormal to 1e15, both signs, zeros). */
static void fill_f32(tu_rng *r, float *x, int64_t n) {
    static const float mag[] = {1.0f, 1e-3f, 1e15f, 1e-40f, 0.0f, 3.0f};
    for (int64_t i = 0; i < n; i++) x[i] = tu_uniform(r) * mag[tu_next(r) % 6];
}

/* ------------------------------------------------------------ one-row dots */

static void test_dots(int level) {
    const quant_kernels *ref = quant_kernels_of(QUANT_LEVEL_SCALAR);
    const quant_kernels *kt = quant_kernels_of(level);
    static const int64_t Ks[] = {256, 512, 2048, 4352};
    tu_rng r = {1000 + (uint64_t)level};
    for (int ti = 0; ti < N_TYPES; ti++) {
        const quant_type t = k_types[ti];
        const quant_type at = quant_get_traits(t)->vec_dot_type;
        char name[96];
        snprintf(name, sizeof name, "dot_%s_%s", kt->name, quant_get_traits(t)->name);
        int bad = 0, cases = 0;
        for (int ki = 0; ki < 4 && !bad; ki++) {
            const int64_t K = Ks[ki];
            uint8_t *w = malloc(quant_row_size(t, K)), *a = malloc(quant_row_size(at, K));
            for (int rep = 0; rep < 12 && !bad; rep++, cases++) {
                fill_weights(&r, t, w, K);
                fill_acts(&r, at, a, K);
                const float want = ref->dot[t](K, w, a), got = kt->dot[t](K, w, a);
                if (fbits(want) != fbits(got)) {
                    tu_fail(name, "K %lld rep %d: got %.9g (0x%08x), scalar %.9g (0x%08x)",
                            (long long)K, rep, got, fbits(got), want, fbits(want));
                    bad = 1;
                }
            }
            free(w);
            free(a);
        }
        if (!bad) tu_okf("%s (%d rows, bitwise)", name, cases);
    }
}

/* ------------------------------------------------- several rows, one row */

static void test_rows(int level) {
    const quant_kernels *ref = quant_kernels_of(QUANT_LEVEL_SCALAR);
    const quant_kernels *kt = quant_kernels_of(level);
    tu_rng r = {5000 + (uint64_t)level};
    for (int ti = 0; ti < N_TYPES; ti++) {
        const quant_type t = k_types[ti];
        if (!kt->rows[t]) continue;
        const quant_type at = quant_get_traits(t)->vec_dot_type;
        char name[96];
        snprintf(name, sizeof name, "rows_%s_%s", kt->name, quant_get_traits(t)->name);
        int bad = 0, outs = 0;
        const int64_t Ks[] = {256, 4352};
        for (int ki = 0; ki < 2 && !bad; ki++) {
            const int64_t K = Ks[ki];
            const size_t wr = quant_row_size(t, K);
            uint8_t *w = malloc(wr * 9), *a = malloc(quant_row_size(at, K));
            float y[12];
            fill_weights(&r, t, w, K * 9);
            fill_acts(&r, at, a, K);
            for (int nr = 1; nr <= 9 && !bad; nr++) {
                for (int i = 0; i < 12; i++) y[i] = -1.0f;
                kt->rows[t](y, w, wr, nr, a, K);
                for (int i = 0; i < 12 && !bad; i++, outs++) {
                    const float want = i < nr ? ref->dot[t](K, w + i * wr, a) : -1.0f;
                    if (fbits(y[i]) != fbits(want)) {
                        tu_fail(name, "K %lld nr %d: out[%d] = %.9g, scalar %.9g", (long long)K, nr,
                                i, y[i], want);
                        bad = 1;
                    }
                }
            }
            free(w);
            free(a);
        }
        if (!bad) tu_okf("%s (%d outputs, bitwise)", name, outs);
    }
}

/* --------------------------------------------------------- multi-row kernels */

static void test_gemm(int level) {
    const quant_kernels *ref = quant_kernels_of(QUANT_LEVEL_SCALAR);
    const quant_kernels *kt = quant_kernels_of(level);
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 33};
    static const int Ns[] = {1, 15, 16, 17, 37};
    tu_rng r = {2000 + (uint64_t)level};
    for (int ti = -1; ti < N_TYPES; ti++) {
        const quant_type t = ti < 0 ? QUANT_F32 : k_types[ti];
        if (!kt->gemm[t]) continue;
        const quant_type at = quant_get_traits(t)->vec_dot_type;
        char name[96];
        snprintf(name, sizeof name, "gemm_%s_%s", kt->name, quant_get_traits(t)->name);
        int bad = 0, outs = 0;
        const int64_t Ks[] = {256 + 3 * (t == QUANT_F32), 2048 + 256 * (t == QUANT_Q8_0 || t == QUANT_Q4_0)};
        for (int ki = 0; ki < 2 && !bad; ki++) {
            const int64_t K = Ks[ki];
            const size_t wr = quant_row_size(t, K), ar = quant_row_size(at, K);
            const size_t sr = quant_act_side_bytes(t, K);
            uint8_t *w = malloc(wr * 37), *a = malloc(ar * 33), *side = sr ? malloc(sr * 33) : NULL;
            float *y = malloc(sizeof(float) * 33 * 40);
            if (t == QUANT_F32) {
                fill_f32(&r, (float *)w, K * 37);
                fill_f32(&r, (float *)a, K * 33);
            } else {
                fill_weights(&r, t, w, K * 37);
                fill_acts(&r, at, a, K * 33);
            }
            for (int m = 0; m < 33 && side; m++) quant_act_side_q8_0(a + m * ar, K, side + m * sr);
            for (int mi = 0; mi < 18 && !bad; mi++)
                for (int ni = 0; ni < 5 && !bad; ni++) {
                    const int M = Ms[mi], N = Ns[ni];
                    const int64_t ldy = N + 3;
                    for (int i = 0; i < 33 * 40; i++) y[i] = -1.0f;
                    kt->gemm[t](y, ldy, w, wr, N, a, ar, side, sr, M, K);
                    for (int m = 0; m < M && !bad; m++)
                        for (int n = 0; n < N + 3 && !bad; n++) {
                            const float got = y[m * ldy + n];
                            const float want = n < N ? ref->dot[t](K, w + n * wr, a + m * ar) : -1.0f;
                            outs++;
                            if (fbits(got) != fbits(want)) {
                                tu_fail(name, "K %lld M %d N %d: y[%d, %d] = %.9g, scalar %.9g",
                                        (long long)K, M, N, m, n, got, want);
                                bad = 1;
                            }
                        }
                }
            free(w);
            free(a);
            free(side);
            free(y);
        }
        if (!bad) tu_okf("%s (%d outputs, bitwise)", name, outs);
    }
}

/* ------------------------------------------------------ activation quantizers */

/* Rows of floats that stress a quantizer: ties after scaling, equal
 * magnitudes of both signs, zero blocks, tiny and huge values. */
static void fill_floats(tu_rng *r, float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        float v = tu_uniform(r);
        switch (kind) {
        case 1: v = (float)((int)(v * 20.0f)) * 0.5f; break;     /* many ties */
        case 2: v = (i % 256) < 128 ? 0.0f : v * 1e-30f; break;  /* zeros, tiny */
        case 3: v = (i & 1) ? 3.0f : -3.0f; break;               /* +-max */
        case 4: v *= 1e30f; break;
        case 5: /* blocks whose largest magnitude is 1e-36 .. 1e-45, where 1 / scale
                   overflows (issue #19: the scalar quantizers' casts were undefined) */
            v *= (i / 32) % 4 == 0 ? 1e-36f : (i / 32) % 4 == 1 ? 1e-38f
               : (i / 32) % 4 == 2 ? 3e-39f : 1e-45f;
            break;
        case 6: v *= 3e38f; break;                               /* near FLT_MAX */
        default: break;
        }
        x[i] = v;
    }
}

static void test_act(int level) {
    const quant_kernels *kt = quant_kernels_of(level);
    const quant_type ts[2] = {QUANT_Q8_0, QUANT_Q8_K};
    const quant_act_fn fns[2] = {kt->act_q8_0, kt->act_q8_K};
    tu_rng r = {3000 + (uint64_t)level};
    for (int i = 0; i < 2; i++) {
        char name[96];
        snprintf(name, sizeof name, "act_%s_%s", kt->name, quant_get_traits(ts[i])->name);
        if (!fns[i]) { tu_skip(name, "this level quantizes activations with the scalar code"); continue; }
        const int64_t K = 4352;
        float *x = malloc(sizeof(float) * K);
        const size_t bytes = quant_row_size(ts[i], K);
        uint8_t *want = malloc(bytes), *got = malloc(bytes);
        int bad = 0;
        for (int kind = 0; kind < 7 && !bad; kind++)
            for (int rep = 0; rep < 4 && !bad; rep++) {
                fill_floats(&r, x, K, kind);
                moe_error err;
                quant_quantize_row(ts[i], x, want, K, &err);
                memset(got, 0xa5, bytes);
                fns[i](x, got, K);
                for (size_t b = 0; b < bytes && !bad; b++)
                    if (got[b] != want[b]) {
                        tu_fail(name, "kind %d rep %d: byte %zu = 0x%02x, scalar 0x%02x", kind,
                                rep, b, got[b], want[b]);
                        bad = 1;
                    }
            }
        if (!bad) tu_ok(name);
        free(x);
        free(want);
        free(got);
    }
}

/* ------------------------------------------------------------ quant_matmul */

static void test_matmul(void) {
    const quant_kernels *ref = quant_kernels_of(QUANT_LEVEL_SCALAR);
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 33, 130};
    static const int Ns[] = {37, 100};
    static const quant_type ts[] = {QUANT_Q4_0, QUANT_Q8_0, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K,
                                    QUANT_Q3_K, QUANT_F32};
    tu_rng r = {4000};
    const int64_t K = 512;
    for (size_t ti = 0; ti < sizeof ts / sizeof ts[0]; ti++) {
        const quant_type t = ts[ti];
        const quant_type at = quant_get_traits(t)->vec_dot_type;
        char name[96];
        snprintf(name, sizeof name, "matmul_%s", quant_get_traits(t)->name);
        const size_t wr = quant_row_size(t, K), ar = quant_row_size(at, K);
        uint8_t *w = malloc(wr * 100), *aq = malloc(ar * 130);
        float *x = malloc(sizeof(float) * 130 * K), *y = malloc(sizeof(float) * 130 * 100);
        float *want = malloc(sizeof(float) * 130 * 100);
        if (t == QUANT_F32) fill_f32(&r, (float *)w, K * 100);
        else fill_weights(&r, t, w, K * 100);
        int bad = 0, outs = 0;
        for (int mi = 0; mi < (int)(sizeof Ms / sizeof Ms[0]) && !bad; mi++) {
            const int M = Ms[mi];
            fill_floats(&r, x, (int64_t)M * K, mi % 3);
            moe_error err;
            for (int m = 0; m < M; m++) quant_quantize_row(at, x + m * K, aq + m * ar, K, &err);
            for (int ni = 0; ni < 2 && !bad; ni++) {
                const int N = Ns[ni];
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) want[m * N + n] = ref->dot[t](K, w + n * wr, aq + m * ar);
                for (int nt = 1; nt <= 3 && !bad; nt++) {
                    memset(y, 0xff, sizeof(float) * M * N);
                    if (quant_matmul(y, x, w, t, M, N, K, nt, NULL, 0, &err) != MOE_OK) {
                        tu_fail(name, "M %d N %d threads %d: %s", M, N, nt, err.msg);
                        bad = 1;
                        break;
                    }
                    for (int i = 0; i < M * N && !bad; i++, outs++)
                        if (fbits(y[i]) != fbits(want[i])) {
                            tu_fail(name, "M %d N %d threads %d: y[%d, %d] = %.9g, scalar %.9g", M, N,
                                    nt, i / N, i % N, y[i], want[i]);
                            bad = 1;
                        }
                }
            }
        }
        if (!bad) tu_okf("%s (%d outputs over M, N, threads; bitwise)", name, outs);
        free(w);
        free(aq);
        free(x);
        free(y);
        free(want);
    }
}

int main(void) {
    printf("# best level here: %s\n", quant_kernels_of(quant_level_best())->name);
    for (int level = 0; level < QUANT_LEVEL_COUNT; level++) {
        const quant_kernels *kt = quant_kernels_of(level);
        if (!kt || !quant_level_supported(level)) {
            char name[64];
            snprintf(name, sizeof name, "level_%d_%s", level, kt ? kt->name : "absent");
            tu_skip(name, "this processor lacks its instructions");
            continue;
        }
        if (level == QUANT_LEVEL_SCALAR) continue; /* the reference itself */
        test_dots(level);
        test_rows(level);
        test_gemm(level);
        test_act(level);
    }
    test_matmul();
    return tu_exit_code();
}
