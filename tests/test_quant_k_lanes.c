/* test_quant_k_lanes.c: the K quantizers (Q2_K .. Q6_K), whose group fits
 * run 8 groups at once in vector lanes (src/quant/quant_k_lanes.c), against
 * their scalar references (quant_quant_*_K_ref), byte for byte.
 *
 * Rows of 256 .. 2048 weights of many kinds, each block's groups mixed:
 * uniform and heavy-tailed values at scales 1e-30 .. 1e30, subnormals,
 * all zeros, constant groups (positive, negative), a single non-zero, all
 * positive, all negative, two levels only, groups below the fits' 1e-15
 * threshold, values repeated; plus whole-row patterns. NaN-free (the
 * quantizers' callers refuse non-finite rows).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "testutil.h"

typedef void (*quant_fn)(const float *, void *, int64_t);

static const struct {
    const char *name;
    quant_fn fast, ref;
    size_t block_bytes;
} k_types[] = {
    {"q2_K", quant_quant_q2_K, quant_quant_q2_K_ref, sizeof(quant_block_q2_K)},
    {"q3_K", quant_quant_q3_K, quant_quant_q3_K_ref, sizeof(quant_block_q3_K)},
    {"q4_K", quant_quant_q4_K, quant_quant_q4_K_ref, sizeof(quant_block_q4_K)},
    {"q5_K", quant_quant_q5_K, quant_quant_q5_K_ref, sizeof(quant_block_q5_K)},
    {"q6_K", quant_quant_q6_K, quant_quant_q6_K_ref, sizeof(quant_block_q6_K)},
};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

static const float k_scales[] = {1.0f, 0.02f, 1e-3f, 1e-8f, 1e-16f, 1e-30f, 3e-38f,
                                 1e4f, 1e12f, 1e18f, 1e30f, 6.5e4f, 1e-40f};
#define N_SCALES ((int)(sizeof k_scales / sizeof k_scales[0]))

/* n values (one group, n = 16 or 32, or a run of them) of a random kind. */
static void fill_kind(tu_rng *r, float *x, int n, int kind) {
    const float s = k_scales[tu_next(r) % N_SCALES];
    switch (kind) {
    case 0: for (int j = 0; j < n; j++) x[j] = 0.0f; break;
    case 1: { const float c = s * tu_uniform(r); for (int j = 0; j < n; j++) x[j] = c; } break;
    case 2: for (int j = 0; j < n; j++) x[j] = 0.0f; x[tu_next(r) % (uint64_t)n] = s * tu_uniform(r); break;
    case 3: for (int j = 0; j < n; j++) x[j] = s * fabsf(tu_uniform(r)); break;
    case 4: for (int j = 0; j < n; j++) x[j] = -s * fabsf(tu_uniform(r)); break;
    case 5: for (int j = 0; j < n; j++) x[j] = (tu_next(r) & 1) ? s : -0.5f * s; break;
    case 6: /* heavy tails: uniform ^ 5 */
        for (int j = 0; j < n; j++) { const float u = tu_uniform(r); x[j] = s * u * u * u * u * u; }
        break;
    case 7: for (int j = 0; j < n; j++) x[j] = 1e-16f * tu_uniform(r); break; /* below 1e-15 */
    case 8: /* few distinct values */
        for (int j = 0; j < n; j++) x[j] = s * (float)((int)(tu_next(r) % 3) - 1);
        break;
    case 9: for (int j = 0; j < n; j++) x[j] = s * tu_uniform(r) + s; break; /* offset */
    case 10: for (int j = 0; j < n; j++) x[j] = (j & 1) ? -0.0f : 0.0f; break;
    default: for (int j = 0; j < n; j++) x[j] = s * tu_uniform(r); break;
    }
}

#define N_KINDS 14

/* A row of n: per group of 16 a random kind (mixed blocks), or (one row in
 * four) a whole-row kind. */
static void fill_row(tu_rng *r, float *x, int n) {
    if (tu_next(r) % 4 == 0) {
        fill_kind(r, x, n, (int)(tu_next(r) % N_KINDS));
        return;
    }
    for (int g = 0; g < n; g += 16) {
        const int kind = (int)(tu_next(r) % N_KINDS);
        const int len = (kind == 1 && (tu_next(r) & 1) && g + 32 <= n) ? 32 : 16;
        fill_kind(r, x + g, len, kind);
        if (len == 32) g += 16;
    }
}

int main(void) {
    enum { MAXN = 2048 };
    float *x = malloc(MAXN * sizeof *x);
    uint8_t *a = malloc(MAXN * 2), *b = malloc(MAXN * 2);
    tu_rng r = {0x6b51a4e5ull};
    for (int t = 0; t < N_TYPES; t++) {
        char name[64];
        snprintf(name, sizeof name, "k_lanes_%s_equals_scalar", k_types[t].name);
        int bad = 0, rows = 0;
        for (int it = 0; it < 400 && !bad; it++, rows++) {
            const int n = 256 * (1 + (int)(tu_next(&r) % 8));
            fill_row(&r, x, n);
            const size_t bytes = (size_t)(n / 256) * k_types[t].block_bytes;
            memset(a, 0xa5, bytes);
            memset(b, 0x5a, bytes);
            k_types[t].fast(x, a, n);
            k_types[t].ref(x, b, n);
            if (memcmp(a, b, bytes)) {
                size_t k = 0;
                while (a[k] == b[k]) k++;
                tu_fail(name, "row %d (n %d) differs at byte %zu: %02x vs %02x (scalar)", it, n, k,
                        a[k], b[k]);
                bad = 1;
            }
        }
        if (!bad) tu_okf("%s (%d rows)", name, rows);
    }
    free(x);
    free(a);
    free(b);
    return tu_exit_code();
}
