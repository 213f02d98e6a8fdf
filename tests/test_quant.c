/* test_quant.c: the quantized weight formats (src/quant).
 *
 * Checks: fp16/bf16 conversions against known bit patterns (and the
 * compiler's _Float16 where it has one); every type's dequantizer against
 * blocks built by hand from the layout, decoded here by an independent
 * reading of the layout (scattering bytes to elements, where the library
 * gathers); quantize -> dequantize error on Gaussian data (and exactness
 * where it is expected); quant_vec_dot against float dots; quant_matmul
 * against a float matmul and across thread counts; and bad inputs.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "quant/quant.h"
#include "testutil.h"

/* The expected values are ggml's formulas as separate float operations. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static const quant_type k_all[] = {
    QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0,
    QUANT_Q5_1, QUANT_Q8_0, QUANT_Q8_1, QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K,
    QUANT_Q5_K, QUANT_Q6_K, QUANT_Q8_K,
};
#define N_ALL ((int)(sizeof k_all / sizeof k_all[0]))

static const char *tname(quant_type t) {
    const quant_traits *tr = quant_get_traits(t);
    return tr ? tr->name : "?";
}

/* Standard normal samples (Box-Muller over the splitmix stream). */
static float gauss(tu_rng *r) {
    const double u1 = ((double)(tu_next(r) >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = ((double)(tu_next(r) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static void fill_gauss(tu_rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = gauss(r);
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ------------------------------------------------------------ fp16 / bf16 */

static void test_fp16(void) {
    const char *name = "fp16_known_patterns";
    struct { float f; uint16_t h; } cases[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800}, {65504.0f, 0x7bff},
        {-65504.0f, 0xfbff}, {0.0f, 0x0000}, {-0.0f, 0x8000},
        {5.9604644775390625e-08f, 0x0001},        /* 2^-24, smallest subnormal */
        {6.097555160522461e-05f, 0x03ff},         /* largest subnormal */
        {6.103515625e-05f, 0x0400},               /* 2^-14, smallest normal */
        {2.98023223876953125e-08f, 0x0000},       /* 2^-25: tie -> even (0) */
        {8.940696716308594e-08f, 0x0002},         /* 1.5 * 2^-24: tie -> even (2) */
        {4.470348358154297e-08f, 0x0001},         /* 0.75 * 2^-24 -> 1 */
        {1.00048828125f, 0x3c00},                 /* 1 + 2^-11: tie -> even */
        {1.00146484375f, 0x3c02},                 /* 1 + 3 * 2^-11: tie -> even */
        {1.0004883766174316f, 0x3c01},            /* just above the tie */
        {65519.0f, 0x7bff}, {65520.0f, 0x7c00},   /* 65520 ties up to Inf */
        {1e10f, 0x7c00}, {-1e10f, 0xfc00}, {1e-10f, 0x0000},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = quant_fp32_to_fp16(cases[i].f);
        if (h != cases[i].h) {
            tu_fail(name, "fp32_to_fp16(%.9g) = 0x%04x, expected 0x%04x",
                    (double)cases[i].f, h, cases[i].h);
            bad = 1;
        }
    }
    if (quant_fp32_to_fp16(INFINITY) != 0x7c00 || quant_fp32_to_fp16(-INFINITY) != 0xfc00) {
        tu_fail(name, "Inf -> 0x%04x, -Inf -> 0x%04x", quant_fp32_to_fp16(INFINITY),
                quant_fp32_to_fp16(-INFINITY));
        bad = 1;
    }
    uint16_t hn = quant_fp32_to_fp16(NAN);
    if ((hn & 0x7c00) != 0x7c00 || (hn & 0x3ff) == 0) {
        tu_fail(name, "NaN -> 0x%04x is not a NaN", hn);
        bad = 1;
    }
    /* fp16 -> fp32 of known patterns */
    struct { uint16_t h; float f; } back[] = {
        {0x3c00, 1.0f}, {0xc000, -2.0f}, {0x7bff, 65504.0f}, {0x0001, 5.9604644775390625e-08f},
        {0x03ff, 6.097555160522461e-05f}, {0x0400, 6.103515625e-05f}, {0x8000, -0.0f},
        {0x3555, 0.333251953125f},
    };
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
        float f = quant_fp16_to_fp32(back[i].h);
        if (fbits(f) != fbits(back[i].f)) {
            tu_fail(name, "fp16_to_fp32(0x%04x) = %.9g, expected %.9g", back[i].h,
                    (double)f, (double)back[i].f);
            bad = 1;
        }
    }
    if (!isinf(quant_fp16_to_fp32(0x7c00)) || quant_fp16_to_fp32(0xfc00) > 0 ||
        !isnan(quant_fp16_to_fp32(0x7e00)) || !isnan(quant_fp16_to_fp32(0xfc01))) {
        tu_fail(name, "Inf/NaN patterns decode wrong");
        bad = 1;
    }
    if (!bad) tu_ok(name);

    /* Every fp16 value survives fp16 -> fp32 -> fp16 (NaN stays NaN). */
    name = "fp16_roundtrip_all_65536";
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_fp16_to_fp32((uint16_t)h);
        uint16_t h2 = quant_fp32_to_fp16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !(isnan(f) && (h2 & 0x7c00) == 0x7c00 && (h2 & 0x3ff)) : h2 != h) {
            tu_fail(name, "0x%04x -> %.9g -> 0x%04x", h, (double)f, h2);
            bad = 1;
            break;
        }
    }
    if (!bad) tu_ok(name);

    /* Round to nearest even, by value: the result must be the nearer of the
     * two fp16 neighbours (the even one on a tie), checked in double. */
    name = "fp16_rounding_random";
    bad = 0;
    tu_rng r = {12345};
    for (int i = 0; i < 1000000 && !bad; i++) {
        uint32_t u = (uint32_t)tu_next(&r);
        /* keep exponents near the fp16 range so that the cases matter */
        u = (u & 0x807fffffu) | ((uint32_t)(96 + (tu_next(&r) % 50)) << 23);
        float f = bitsf(u);
        uint16_t h = quant_fp32_to_fp16(f);
        double v = fabs((double)f);
        uint16_t hm = h & 0x7fff;
        if ((h & 0x8000) != ((u >> 16) & 0x8000)) { bad = 1; }
        double got = hm == 0x7c00 ? INFINITY : (double)quant_fp16_to_fp32(hm);
        double up = hm + 1 >= 0x7c00 ? 65536.0 : (double)quant_fp16_to_fp32((uint16_t)(hm + 1));
        double dn = hm == 0 ? -1.0 : (double)quant_fp16_to_fp32((uint16_t)(hm - 1));
        if (hm == 0x7c00) {
            if (v < 65520.0) bad = 1;
        } else {
            double e = fabs(got - v), eu = fabs(up - v), ed = dn < 0 ? INFINITY : fabs(dn - v);
            if (e > eu || e > ed) bad = 1;
            if ((e == eu || e == ed) && (hm & 1)) bad = 1; /* tie not to even */
        }
        if (bad) tu_fail(name, "fp32 0x%08x (%.9g) -> fp16 0x%04x", u, (double)f, h);
    }
#ifdef __FLT16_MANT_DIG__
    /* and, where the compiler has _Float16, bit-equal to its conversion */
    for (int i = 0; i < 1000000 && !bad; i++) {
        uint32_t u = (uint32_t)tu_next(&r);
        u = (u & 0x807fffffu) | ((uint32_t)(96 + (tu_next(&r) % 50)) << 23);
        _Float16 c = (_Float16)bitsf(u);
        uint16_t hc;
        memcpy(&hc, &c, 2);
        if (hc != quant_fp32_to_fp16(bitsf(u))) {
            tu_fail(name, "fp32 0x%08x: ours 0x%04x, _Float16 0x%04x", u,
                    quant_fp32_to_fp16(bitsf(u)), hc);
            bad = 1;
        }
    }
#endif
    if (!bad) tu_ok(name);
}

static void test_bf16(void) {
    const char *name = "bf16_known_patterns";
    struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 */
        {0xc0000000u, 0xc000}, /* -2.0 */
        {0x3f808000u, 0x3f80}, /* tie -> even */
        {0x3f818000u, 0x3f82}, /* tie -> even (up) */
        {0x3f808001u, 0x3f81}, /* above the tie */
        {0x3f807fffu, 0x3f80}, /* below the tie */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to Inf */
        {0x7f800000u, 0x7f80}, /* Inf */
        {0xff800000u, 0xff80}, /* -Inf */
        {0x00000001u, 0x0000}, /* smallest f32 subnormal -> 0 */
        {0x00018000u, 0x0002}, /* subnormal tie -> even */
        {0x00010000u, 0x0001}, /* smallest bf16 subnormal, exact */
        {0x80000000u, 0x8000}, /* -0 */
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = quant_fp32_to_bf16(bitsf(cases[i].f));
        if (h != cases[i].h) {
            tu_fail(name, "fp32_to_bf16(0x%08x) = 0x%04x, expected 0x%04x", cases[i].f, h,
                    cases[i].h);
            bad = 1;
        }
    }
    uint16_t hn = quant_fp32_to_bf16(NAN);
    if ((hn & 0x7f80) != 0x7f80 || (hn & 0x7f) == 0 || !isnan(quant_bf16_to_fp32(hn))) {
        tu_fail(name, "NaN -> 0x%04x", hn);
        bad = 1;
    }
    /* a signalling NaN whose payload lies in the low 16 bits stays NaN */
    hn = quant_fp32_to_bf16(bitsf(0x7f800001u));
    if (!isnan(quant_bf16_to_fp32(hn))) {
        tu_fail(name, "NaN 0x7f800001 -> 0x%04x is not NaN", hn);
        bad = 1;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_bf16_to_fp32((uint16_t)h);
        if (fbits(f) != h << 16) { tu_fail(name, "bf16_to_fp32(0x%04x)", h); bad = 1; break; }
        if (!isnan(f) && quant_fp32_to_bf16(f) != h) {
            tu_fail(name, "bf16 0x%04x does not round trip", h);
            bad = 1;
            break;
        }
    }
    if (!bad) tu_ok(name);
}

/* ------------------------------------------------------ hand-made blocks */

static int compare_exact(const char *name, const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++) {
        if (fbits(got[i]) != fbits(want[i])) {
            tu_fail(name, "element %d: got %.9g, expected %.9g", i, (double)got[i],
                    (double)want[i]);
            return 1;
        }
    }
    return 0;
}

static int dequant_ok(const char *name, quant_type t, const void *blk, int n, float *out) {
    moe_error err = {{0}};
    moe_status st = quant_dequantize_row(t, blk, out, n, &err);
    if (st != MOE_OK) {
        tu_fail(name, "status %d: %s", st, err.msg);
        return 0;
    }
    return 1;
}

/* The 32-weight types with fixed patterns; every product is exact. */
static void test_hand_32(void) {
    float got[64], want[64];
    uint8_t raw[64];

    { /* Q4_0: d = 0.5; byte j holds j (low) and 15 - j (high) */
        const char *name = "hand_q4_0";
        raw[0] = 0x00; raw[1] = 0x38;
        for (int j = 0; j < 16; j++) raw[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        for (int j = 0; j < 16; j++) { want[j] = (j - 8) * 0.5f; want[16 + j] = (7 - j) * 0.5f; }
        if (dequant_ok(name, QUANT_Q4_0, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    { /* Q4_1: d = 0.5, m = -1.0 */
        const char *name = "hand_q4_1";
        raw[0] = 0x00; raw[1] = 0x38; raw[2] = 0x00; raw[3] = 0xbc;
        for (int j = 0; j < 16; j++) raw[4 + j] = (uint8_t)(((j * 5) & 15) | ((j * 3 % 16) << 4));
        for (int j = 0; j < 16; j++) {
            want[j] = (float)((j * 5) & 15) * 0.5f - 1.0f;
            want[16 + j] = (float)(j * 3 % 16) * 0.5f - 1.0f;
        }
        if (dequant_ok(name, QUANT_Q4_1, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    /* Q5_0 / Q5_1: qh bytes a5 0f f0 3c: bit e of the little-endian word */
    const uint8_t qh[4] = {0xa5, 0x0f, 0xf0, 0x3c};
    { /* Q5_0: d = 0.25 */
        const char *name = "hand_q5_0";
        raw[0] = 0x00; raw[1] = 0x34;
        memcpy(raw + 2, qh, 4);
        for (int j = 0; j < 16; j++) raw[6 + j] = (uint8_t)(j | ((j ^ 9) << 4));
        for (int e = 0; e < 32; e++) {
            int hb = (qh[e / 8] >> (e % 8)) & 1;
            int lo = e < 16 ? e : ((e - 16) ^ 9);
            want[e] = (float)(lo + 16 * hb - 16) * 0.25f;
        }
        if (dequant_ok(name, QUANT_Q5_0, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    { /* Q5_1: d = 0.5, m = 0.25 */
        const char *name = "hand_q5_1";
        raw[0] = 0x00; raw[1] = 0x38; raw[2] = 0x00; raw[3] = 0x34;
        memcpy(raw + 4, qh, 4);
        for (int j = 0; j < 16; j++) raw[8 + j] = (uint8_t)((15 - j) | (j << 4));
        for (int e = 0; e < 32; e++) {
            int hb = (qh[e / 8] >> (e % 8)) & 1;
            int lo = e < 16 ? 15 - e : e - 16;
            want[e] = (float)(lo + 16 * hb) * 0.5f + 0.25f;
        }
        if (dequant_ok(name, QUANT_Q5_1, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    { /* Q8_0: d = 0.125, q = 7j - 100 */
        const char *name = "hand_q8_0";
        raw[0] = 0x00; raw[1] = 0x30;
        for (int j = 0; j < 32; j++) raw[2 + j] = (uint8_t)(int8_t)(7 * j - 100);
        for (int j = 0; j < 32; j++) want[j] = (float)(7 * j - 100) * 0.125f;
        if (dequant_ok(name, QUANT_Q8_0, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    { /* Q8_1: d = 2.0, s ignored by the dequantizer */
        const char *name = "hand_q8_1";
        raw[0] = 0x00; raw[1] = 0x40; raw[2] = 0x00; raw[3] = 0x3c;
        for (int j = 0; j < 32; j++) raw[4 + j] = (uint8_t)(int8_t)(127 - 8 * j);
        for (int j = 0; j < 32; j++) want[j] = (float)(127 - 8 * j) * 2.0f;
        if (dequant_ok(name, QUANT_Q8_1, raw, 32, got) && !compare_exact(name, got, want, 32))
            tu_ok(name);
    }
    { /* F16 / BF16 / F32 rows: little-endian values */
        const char *name = "hand_float_rows";
        const uint8_t f16[8] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00};
        const uint8_t b16[6] = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40};
        const uint8_t f32[4] = {0x00, 0x00, 0x40, 0x40};
        float w16[4] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f};
        float wb[3] = {1.0f, -2.0f, 3.140625f};
        float w32[1] = {3.0f};
        if (dequant_ok(name, QUANT_F16, f16, 4, got) && !compare_exact(name, got, w16, 4) &&
            dequant_ok(name, QUANT_BF16, b16, 3, got) && !compare_exact(name, got, wb, 3) &&
            dequant_ok(name, QUANT_F32, f32, 1, got) && !compare_exact(name, got, w32, 1))
            tu_ok(name);
    }
}

/* The K types. Expected values are built by walking the bytes of the block
 * and scattering each field to the elements it belongs to. Scales are powers
 * of two (fixed patterns, exact) or random (then the float formula is ggml's:
 * (d*sc)*q - (dmin*m) for Q2_K/Q4_K/Q5_K, (d*(sc-32))*q for Q3_K, (d*sc)*q
 * for Q6_K). */

static uint16_t rand_half(tu_rng *r) { /* a finite positive fp16 in [2^-10, 1) */
    float v = ldexpf(1.0f + (float)(tu_next(r) % 1024) / 1024.0f, -(int)(1 + tu_next(r) % 10));
    return quant_fp32_to_fp16(v);
}

static void expect_q2_K(const uint8_t *blk, float *want) {
    const uint8_t *scales = blk, *qs = blk + 16;
    float d = quant_fp16_to_fp32((uint16_t)(blk[80] | blk[81] << 8));
    float dmin = quant_fp16_to_fp32((uint16_t)(blk[82] | blk[83] << 8));
    int q[256];
    /* byte b of qs: half h = b / 32, l = b % 32; its 4 bit pairs are elements
     * 128h + l, +32, +64, +96 */
    for (int b = 0; b < 64; b++)
        for (int p = 0; p < 4; p++) q[128 * (b / 32) + 32 * p + b % 32] = (qs[b] >> (2 * p)) & 3;
    for (int e = 0; e < 256; e++) {
        int sb = scales[e / 16];
        want[e] = (d * (float)(sb & 15)) * (float)q[e] - dmin * (float)(sb >> 4);
    }
}

static void expect_q3_K(const uint8_t *blk, float *want) {
    const uint8_t *hmask = blk, *qs = blk + 32, *sc = blk + 96;
    float d = quant_fp16_to_fp32((uint16_t)(blk[108] | blk[109] << 8));
    int q[256], s[16];
    for (int b = 0; b < 64; b++)
        for (int p = 0; p < 4; p++) q[128 * (b / 32) + 32 * p + b % 32] = (qs[b] >> (2 * p)) & 3;
    /* hmask byte l, bit k -> element 32k + l: bit set means no -4 */
    for (int l = 0; l < 32; l++)
        for (int k = 0; k < 8; k++)
            if (!((hmask[l] >> k) & 1)) q[32 * k + l] -= 4;
    /* scales: bytes 0-7 low nibbles = s0..s7 low 4 bits, high nibbles =
     * s8..s15 low 4 bits; bytes 8-11: 2-bit pairs, byte 8+i pair p = s(4p+i) */
    for (int b = 0; b < 8; b++) { s[b] = sc[b] & 15; s[b + 8] = sc[b] >> 4; }
    for (int i = 0; i < 4; i++)
        for (int p = 0; p < 4; p++) s[4 * p + i] |= ((sc[8 + i] >> (2 * p)) & 3) << 4;
    for (int e = 0; e < 256; e++) want[e] = (d * (float)(s[e / 16] - 32)) * (float)q[e];
}

/* Q4_K / Q5_K scales: 12 bytes -> 8 scales, 8 mins */
static void unpack_k4_scales(const uint8_t *sc, int *s, int *m) {
    for (int i = 0; i < 4; i++) {
        s[i] = sc[i] & 63;
        m[i] = sc[i + 4] & 63;
        s[i + 4] = (sc[i + 8] & 15) | ((sc[i] >> 6) << 4);
        m[i + 4] = (sc[i + 8] >> 4) | ((sc[i + 4] >> 6) << 4);
    }
}

static void expect_q4_K(const uint8_t *blk, float *want) {
    float d = quant_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8));
    float dmin = quant_fp16_to_fp32((uint16_t)(blk[2] | blk[3] << 8));
    const uint8_t *qs = blk + 16;
    int s[8], m[8], q[256];
    unpack_k4_scales(blk + 4, s, m);
    for (int b = 0; b < 128; b++) {
        q[64 * (b / 32) + b % 32] = qs[b] & 15;
        q[64 * (b / 32) + 32 + b % 32] = qs[b] >> 4;
    }
    for (int e = 0; e < 256; e++)
        want[e] = (d * (float)s[e / 32]) * (float)q[e] - dmin * (float)m[e / 32];
}

static void expect_q5_K(const uint8_t *blk, float *want) {
    float d = quant_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8));
    float dmin = quant_fp16_to_fp32((uint16_t)(blk[2] | blk[3] << 8));
    const uint8_t *qh = blk + 16, *qs = blk + 48;
    int s[8], m[8], q[256];
    unpack_k4_scales(blk + 4, s, m);
    for (int b = 0; b < 128; b++) {
        q[64 * (b / 32) + b % 32] = qs[b] & 15;
        q[64 * (b / 32) + 32 + b % 32] = qs[b] >> 4;
    }
    for (int l = 0; l < 32; l++)
        for (int k = 0; k < 8; k++) q[32 * k + l] += ((qh[l] >> k) & 1) * 16;
    for (int e = 0; e < 256; e++)
        want[e] = (d * (float)s[e / 32]) * (float)q[e] - dmin * (float)m[e / 32];
}

static void expect_q6_K(const uint8_t *blk, float *want) {
    const uint8_t *ql = blk, *qh = blk + 128;
    const int8_t *sc = (const int8_t *)(blk + 192);
    float d = quant_fp16_to_fp32((uint16_t)(blk[208] | blk[209] << 8));
    int q[256];
    /* ql byte b: half h = b / 64, r = b % 64: low nibble -> element 128h + r,
     * high nibble -> element 128h + 64 + r */
    for (int b = 0; b < 128; b++) {
        q[128 * (b / 64) + b % 64] = ql[b] & 15;
        q[128 * (b / 64) + 64 + b % 64] = ql[b] >> 4;
    }
    /* qh byte b: half h = b / 32, l = b % 32: pair p -> element 128h + 32p + l */
    for (int b = 0; b < 64; b++)
        for (int p = 0; p < 4; p++) q[128 * (b / 32) + 32 * p + b % 32] |= ((qh[b] >> (2 * p)) & 3) << 4;
    for (int e = 0; e < 256; e++) want[e] = (d * (float)sc[e / 16]) * (float)(q[e] - 32);
}

static void expect_q8_K(const uint8_t *blk, float *want) {
    uint32_t u = (uint32_t)blk[0] | (uint32_t)blk[1] << 8 | (uint32_t)blk[2] << 16 | (uint32_t)blk[3] << 24;
    float d = bitsf(u);
    for (int e = 0; e < 256; e++) want[e] = d * (float)(int8_t)blk[4 + e];
}

typedef void (*expect_fn)(const uint8_t *, float *);

static void test_hand_K(void) {
    struct { quant_type t; expect_fn f; } ks[] = {
        {QUANT_Q2_K, expect_q2_K}, {QUANT_Q3_K, expect_q3_K}, {QUANT_Q4_K, expect_q4_K},
        {QUANT_Q5_K, expect_q5_K}, {QUANT_Q6_K, expect_q6_K}, {QUANT_Q8_K, expect_q8_K},
    };
    uint8_t blk[2 * 292];
    float got[512], want[512];
    char name[64];

    /* Fixed patterns with exact arithmetic, and the scale layouts spelled out */
    { /* Q4_K: d = 0.5, dmin = 0.25, scales sc_j = 1 + 9j (1..64 -> 6 bit), m_j = 63 - 8j */
        snprintf(name, sizeof name, "hand_q4_K_pattern");
        memset(blk, 0, sizeof blk);
        blk[0] = 0x00; blk[1] = 0x38; blk[2] = 0x00; blk[3] = 0x34;
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) { sc[j] = (1 + 9 * j) & 63; mn[j] = 63 - 8 * j; }
        uint8_t *s = blk + 4;
        for (int j = 0; j < 4; j++) {
            s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
            s[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
            s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        for (int b = 0; b < 128; b++) blk[16 + b] = (uint8_t)((b % 16) | ((15 - b % 16) << 4));
        /* direct: element 64c + l (l < 32) = low nibble of byte 32c + l */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int e0 = 64 * c + l, e1 = 64 * c + 32 + l;
                want[e0] = 0.5f * (float)sc[e0 / 32] * (float)(l % 16) - 0.25f * (float)mn[e0 / 32];
                want[e1] = 0.5f * (float)sc[e1 / 32] * (float)(15 - l % 16) - 0.25f * (float)mn[e1 / 32];
            }
        if (dequant_ok(name, QUANT_Q4_K, blk, 256, got) && !compare_exact(name, got, want, 256))
            tu_ok(name);
    }
    { /* Q3_K: d = 1, scale_j = j*4 (stored j*4 so value j*4 - 32), all low bits 3, hmask alternating */
        snprintf(name, sizeof name, "hand_q3_K_pattern");
        memset(blk, 0, sizeof blk);
        int sv[16];
        for (int j = 0; j < 16; j++) sv[j] = (4 * j + 1) & 63;
        uint8_t *s = blk + 96;
        for (int j = 0; j < 16; j++) {
            if (j < 8) s[j] |= (uint8_t)(sv[j] & 15);
            else s[j - 8] |= (uint8_t)((sv[j] & 15) << 4);
            s[8 + j % 4] |= (uint8_t)((sv[j] >> 4) << (2 * (j / 4)));
        }
        memset(blk + 32, 0xe4, 64); /* pairs 0,1,2,3 from the low bits up */
        memset(blk, 0x55, 32);      /* hmask bits 0,2,4,6 set */
        blk[108] = 0x00; blk[109] = 0x3c;
        for (int e = 0; e < 256; e++) {
            int k = e / 32;        /* bit pair (e/32)%4, hmask bit e/32 */
            int low = k % 4;       /* 0xe4 = 11 10 01 00 */
            int q = low - ((k % 2 == 0) ? 0 : 4);
            want[e] = (float)(sv[e / 16] - 32) * (float)q;
        }
        if (dequant_ok(name, QUANT_Q3_K, blk, 256, got) && !compare_exact(name, got, want, 256))
            tu_ok(name);
    }
    { /* Q6_K: d = 0.5, scales -8..7, q = (e % 64) - 32 built via the layout */
        snprintf(name, sizeof name, "hand_q6_K_pattern");
        memset(blk, 0, sizeof blk);
        int qv[256];
        for (int e = 0; e < 256; e++) qv[e] = (e * 37) % 64;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++)
                for (int k = 0; k < 4; k++) {
                    int v = qv[128 * h + 32 * k + l];
                    int lb = 64 * h + l + (k & 1) * 32;
                    blk[lb] |= (uint8_t)(k < 2 ? (v & 15) : (v & 15) << 4);
                    blk[128 + 32 * h + l] |= (uint8_t)((v >> 4) << (2 * k));
                }
        for (int j = 0; j < 16; j++) blk[192 + j] = (uint8_t)(int8_t)(j - 8);
        blk[208] = 0x00; blk[209] = 0x38;
        for (int e = 0; e < 256; e++) want[e] = 0.5f * (float)(e / 16 - 8) * (float)(qv[e] - 32);
        if (dequant_ok(name, QUANT_Q6_K, blk, 256, got) && !compare_exact(name, got, want, 256))
            tu_ok(name);
    }

    /* Random blocks (two per row), decoded by the scatter readers above */
    tu_rng r = {777};
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
        const quant_traits *tr = quant_get_traits(ks[k].t);
        snprintf(name, sizeof name, "hand_%s_random_blocks", tr->name);
        int bad = 0;
        for (int rep = 0; rep < 50 && !bad; rep++) {
            for (size_t i = 0; i < 2 * tr->block_bytes; i++) blk[i] = (uint8_t)tu_next(&r);
            for (int b = 0; b < 2; b++) { /* finite scales */
                uint8_t *p = blk + b * tr->block_bytes;
                uint16_t h1 = rand_half(&r), h2 = rand_half(&r);
                switch (ks[k].t) {
                case QUANT_Q2_K: p[80] = h1 & 255; p[81] = h1 >> 8; p[82] = h2 & 255; p[83] = h2 >> 8; break;
                case QUANT_Q3_K: p[108] = h1 & 255; p[109] = h1 >> 8; break;
                case QUANT_Q4_K: case QUANT_Q5_K:
                    p[0] = h1 & 255; p[1] = h1 >> 8; p[2] = h2 & 255; p[3] = h2 >> 8; break;
                case QUANT_Q6_K: p[208] = h1 & 255; p[209] = h1 >> 8; break;
                case QUANT_Q8_K: {
                    uint32_t u = fbits(quant_fp16_to_fp32(h1));
                    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
                    break;
                }
                default: break;
                }
                ks[k].f(p, want + 256 * b);
            }
            if (!dequant_ok(name, ks[k].t, blk, 512, got)) { bad = 1; break; }
            bad = compare_exact(name, got, want, 512);
        }
        if (!bad) tu_ok(name);
    }

    /* The 32-weight types with random bytes too (finite d, m) */
    {
        const quant_type ts[] = {QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            const quant_traits *tr = quant_get_traits(ts[k]);
            snprintf(name, sizeof name, "hand_%s_random_blocks", tr->name);
            int bad = 0;
            for (int rep = 0; rep < 200 && !bad; rep++) {
                uint8_t b[36];
                for (size_t i = 0; i < tr->block_bytes; i++) b[i] = (uint8_t)tu_next(&r);
                uint16_t hd = rand_half(&r), hm = (uint16_t)(rand_half(&r) | 0x8000);
                b[0] = hd & 255; b[1] = hd >> 8;
                int has_m = ts[k] == QUANT_Q4_1 || ts[k] == QUANT_Q5_1;
                if (has_m) { b[2] = hm & 255; b[3] = hm >> 8; }
                const float d = quant_fp16_to_fp32(hd), m = quant_fp16_to_fp32(hm);
                const uint8_t *p = b + 2 + (has_m ? 2 : 0);
                uint32_t qhw = 0;
                int five = ts[k] == QUANT_Q5_0 || ts[k] == QUANT_Q5_1;
                if (five) { qhw = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; p += 4; }
                for (int e = 0; e < 32; e++) {
                    if (ts[k] == QUANT_Q8_0) { want[e] = (float)(int8_t)p[e] * d; continue; }
                    int q = e < 16 ? (p[e] & 15) : (p[e - 16] >> 4);
                    if (five) q |= (int)((qhw >> e) & 1) << 4;
                    if (ts[k] == QUANT_Q4_0) want[e] = (float)(q - 8) * d;
                    else if (ts[k] == QUANT_Q5_0) want[e] = (float)(q - 16) * d;
                    else want[e] = (float)q * d + m;
                }
                if (!dequant_ok(name, ts[k], b, 32, got)) { bad = 1; break; }
                bad = compare_exact(name, got, want, 32);
            }
            if (!bad) tu_ok(name);
        }
    }
}

/* ------------------------------------------------------------ round trip */

/* Relative RMS error bounds on N(0,1) data; our measured values are printed. */
static double rt_bound(quant_type t) {
    switch (t) {
    case QUANT_Q4_0: return 0.120;
    case QUANT_Q4_1: return 0.100;
    case QUANT_Q5_0: return 0.060;
    case QUANT_Q5_1: return 0.050;
    case QUANT_Q8_0: return 0.0080;
    case QUANT_Q8_1: return 0.0080;
    case QUANT_Q2_K: return 0.350;
    case QUANT_Q3_K: return 0.190;
    case QUANT_Q4_K: return 0.090;
    case QUANT_Q5_K: return 0.045;
    case QUANT_Q6_K: return 0.022;
    case QUANT_Q8_K: return 0.0085;
    case QUANT_F16: return 5e-4;
    case QUANT_BF16: return 4e-3;
    default: return 0.0;
    }
}

static void test_roundtrip(void) {
    const int n = 256 * 256;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    void *q = malloc((size_t)n * 4 + 64);
    tu_rng r = {2024};
    fill_gauss(&r, x, n);
    char name[64];
    for (int k = 0; k < N_ALL; k++) {
        quant_type t = k_all[k];
        moe_error err = {{0}};
        snprintf(name, sizeof name, "roundtrip_gauss_%s", tname(t));
        if (quant_quantize_row(t, x, q, n, &err) != MOE_OK ||
            quant_dequantize_row(t, q, y, n, &err) != MOE_OK) {
            tu_fail(name, "%s", err.msg);
            continue;
        }
        double se = 0, sx = 0;
        for (int i = 0; i < n; i++) {
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        printf("# %-5s rel RMS error %.5f (%.4f bits/weight)\n", tname(t), rel,
               8.0 * (double)quant_row_size(t, n) / n);
        if (rel > rt_bound(t) || !isfinite(rel))
            tu_fail(name, "relative RMS error %.5f > %.5f", rel, rt_bound(t));
        else
            tu_ok(name);
    }

    /* Scaled inputs (tiny, huge, all-zero blocks, constant blocks) */
    {
        const char *nm = "roundtrip_scales_and_edge_blocks";
        int bad = 0;
        /* 1e-6: the fp16 block scales become subnormal (few bits) in every
         * format, so only "no worse than dropping the signal" is asked there */
        const float scl[] = {0.02f, 1e3f, 1e-6f};
        for (int k = 0; k < N_ALL && !bad; k++) {
            quant_type t = k_all[k];
            for (int s = 0; s < 3 && !bad; s++) {
                const double bound = s == 2 ? 1.0 : 1.5 * rt_bound(t) + 1e-7;
                for (int i = 0; i < 1024; i++) y[i] = x[i] * scl[s];
                for (int i = 0; i < 256; i++) y[i] = 0.0f;           /* zero block */
                for (int i = 256; i < 512; i++) y[i] = 0.75f * scl[s]; /* constant */
                moe_error err = {{0}};
                float z[1024];
                if (quant_quantize_row(t, y, q, 1024, &err) != MOE_OK ||
                    quant_dequantize_row(t, q, z, 1024, &err) != MOE_OK) {
                    tu_fail(nm, "%s: %s", tname(t), err.msg);
                    bad = 1;
                    break;
                }
                double se = 0, sx = 0;
                for (int i = 0; i < 1024; i++) {
                    se += ((double)z[i] - y[i]) * ((double)z[i] - y[i]);
                    sx += (double)y[i] * y[i];
                    if (i < 256 && z[i] != 0.0f) {
                        tu_fail(nm, "%s scale %g: zero block element %d -> %g", tname(t),
                                (double)scl[s], i, (double)z[i]);
                        bad = 1;
                        break;
                    }
                }
                if (!bad && !(sqrt(se / sx) <= bound)) {
                    tu_fail(nm, "%s scale %g: relative RMS %.5f", tname(t), (double)scl[s],
                            sqrt(se / sx));
                    bad = 1;
                }
            }
        }
        if (!bad) tu_ok(nm);
    }

    /* Exact round trips */
    {
        const char *nm = "roundtrip_exact_f32_f16_bf16_q8_0";
        int bad = 0;
        moe_error err = {{0}};
        float a[256], b[256];
        for (int i = 0; i < 256; i++) a[i] = x[i] * 1e5f;
        quant_quantize_row(QUANT_F32, a, q, 256, &err);
        quant_dequantize_row(QUANT_F32, q, b, 256, &err);
        if (memcmp(a, b, sizeof a)) { tu_fail(nm, "F32 not exact"); bad = 1; }
        for (int i = 0; i < 256; i++) a[i] = quant_bf16_to_fp32(quant_fp32_to_bf16(x[i] * 1e20f));
        quant_quantize_row(QUANT_BF16, a, q, 256, &err);
        quant_dequantize_row(QUANT_BF16, q, b, 256, &err);
        if (memcmp(a, b, sizeof a)) { tu_fail(nm, "BF16 of bf16 values not exact"); bad = 1; }
        for (int i = 0; i < 256; i++) a[i] = quant_fp16_to_fp32(quant_fp32_to_fp16(x[i] * 1e-5f));
        quant_quantize_row(QUANT_F16, a, q, 256, &err);
        quant_dequantize_row(QUANT_F16, q, b, 256, &err);
        if (memcmp(a, b, sizeof a)) { tu_fail(nm, "F16 of f16 values not exact"); bad = 1; }
        /* Q8_0: each block k * d with d an fp16 value and max |k| = 127 */
        for (int blkno = 0; blkno < 8; blkno++) {
            float d = quant_fp16_to_fp32(rand_half(&r));
            for (int j = 0; j < 32; j++) {
                int kq = (int)(tu_next(&r) % 255) - 127;
                if (j == (blkno * 5) % 32) kq = (blkno & 1) ? 127 : -127;
                a[32 * blkno + j] = (float)kq * d;
            }
        }
        quant_quantize_row(QUANT_Q8_0, a, q, 256, &err);
        quant_dequantize_row(QUANT_Q8_0, q, b, 256, &err);
        for (int i = 0; i < 256; i++)
            if (fbits(a[i]) != fbits(b[i])) {
                tu_fail(nm, "Q8_0 element %d: %.9g -> %.9g", i, (double)a[i], (double)b[i]);
                bad = 1;
                break;
            }
        if (!bad) tu_ok(nm);
    }

    /* ggml's reference Q4_0 / Q8_0 / Q8_K quantizers on a hand case */
    {
        const char *nm = "quantize_reference_semantics";
        int bad = 0;
        moe_error err = {{0}};
        float a[256];
        uint8_t b[292];
        /* Q4_0: max-magnitude value -4 -> d = 0.5, q = x/d + 8 */
        for (int j = 0; j < 32; j++) a[j] = (float)((j % 16) - 8) * 0.5f * (j == 0 ? 1 : 0.999f);
        a[0] = -4.0f;
        quant_quantize_row(QUANT_Q4_0, a, b, 32, &err);
        if (b[0] != 0x00 || b[1] != 0x38) { tu_fail(nm, "Q4_0 d = 0x%02x%02x", b[1], b[0]); bad = 1; }
        for (int j = 0; j < 16 && !bad; j++) {
            int q0 = b[2 + j] & 15, q1 = b[2 + j] >> 4;
            int e0 = (int)(a[j] / 0.5f + 8.5f), e1 = (int)(a[j + 16] / 0.5f + 8.5f);
            if (e0 > 15) e0 = 15;
            if (e1 > 15) e1 = 15;
            if (q0 != e0 || q1 != e1) { tu_fail(nm, "Q4_0 nibbles %d: %d %d vs %d %d", j, q0, q1, e0, e1); bad = 1; }
        }
        /* Q8_K: max 2.54 -> q of max = -127 ... d = -2.54 / 127 */
        for (int j = 0; j < 256; j++) a[j] = 0.01f * (float)(j % 200 - 100);
        a[17] = 2.54f;
        quant_quantize_row(QUANT_Q8_K, a, b, 256, &err);
        float d;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        d = bitsf(u);
        if (fbits(d) != fbits(1.0f / (-127.f / 2.54f)) || (int8_t)b[4 + 17] != -127) {
            tu_fail(nm, "Q8_K d = %.9g q[17] = %d", (double)d, (int8_t)b[4 + 17]);
            bad = 1;
        }
        for (int g = 0; g < 16 && !bad; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += (int8_t)b[4 + 16 * g + j];
            int16_t bs = (int16_t)(b[260 + 2 * g] | b[261 + 2 * g] << 8);
            if (bs != s) { tu_fail(nm, "Q8_K bsums[%d] = %d, sum %d", g, bs, s); bad = 1; }
        }
        if (!bad) tu_ok(nm);
    }
    free(x);
    free(y);
    free(q);
}

/* -------------------------------------------------------------- products */

static void test_vec_dot(void) {
    const int n = 1024;
    float *w = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n);
    float *wd = malloc(sizeof(float) * n), *ad = malloc(sizeof(float) * n);
    uint8_t *wq = malloc((size_t)n * 4 + 64), *aq = malloc((size_t)n * 4 + 64);
    tu_rng r = {99};
    char name[64];
    for (int k = 0; k < N_ALL; k++) {
        quant_type t = k_all[k];
        const quant_traits *tr = quant_get_traits(t);
        moe_error err = {{0}};
        snprintf(name, sizeof name, "vec_dot_%s", tr->name);
        fill_gauss(&r, w, n);
        fill_gauss(&r, a, n);
        quant_quantize_row(t, w, wq, n, &err);
        quant_dequantize_row(t, wq, wd, n, &err);
        const void *act;
        if (tr->vec_dot_type == QUANT_F32) {
            memcpy(ad, a, sizeof(float) * n);
            act = a;
        } else {
            quant_quantize_row(tr->vec_dot_type, a, aq, n, &err);
            quant_dequantize_row(tr->vec_dot_type, aq, ad, n, &err);
            act = aq;
        }
        double ref = 0, mag = 0, truth = 0, wn = 0, xn = 0;
        for (int i = 0; i < n; i++) {
            ref += (double)wd[i] * ad[i];
            mag += fabs((double)wd[i] * ad[i]);
            truth += (double)w[i] * a[i];
            wn += (double)w[i] * w[i];
            xn += (double)a[i] * a[i];
        }
        /* Q8_1's s = fp16(d * sum q) stands in for the exact d * sum q in the
         * min term of Q4_1 / Q5_1: add that difference to the reference. */
        if (tr->vec_dot_type == QUANT_Q8_1 && (t == QUANT_Q4_1 || t == QUANT_Q5_1)) {
            const size_t wb = tr->block_bytes;
            for (int b = 0; b < n / 32; b++) {
                const uint8_t *ab = aq + 36 * b, *wbk = wq + wb * b;
                float ad0 = quant_fp16_to_fp32((uint16_t)(ab[0] | ab[1] << 8));
                float s = quant_fp16_to_fp32((uint16_t)(ab[2] | ab[3] << 8));
                float m = quant_fp16_to_fp32((uint16_t)(wbk[2] | wbk[3] << 8));
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += (int8_t)ab[4 + j];
                ref += (double)m * ((double)s - (double)ad0 * sum);
                mag += fabs((double)m * s);
            }
        }
        float got = quant_vec_dot(t, n, wq, act);
        double e = fabs((double)got - ref);
        double tol = 1e-5 * mag + 1e-30;
        double e_true = fabs((double)got - truth) / sqrt(wn * xn);
        printf("# vec_dot %-5s vs dequantized %.3g (of sum|terms|), vs fp32 activations "
               "%.3g (of |w||x|)\n", tr->name, e / (mag + 1e-30), e_true);
        if (!(e <= tol))
            tu_fail(name, "got %.9g, dot of dequantized rows %.9g (error %.3g > %.3g)",
                    (double)got, ref, e, tol);
        else if (!(e_true < 0.02))
            tu_fail(name, "got %.9g, fp32 dot %.9g: error %.3g of |w||x|", (double)got,
                    truth, e_true);
        else
            tu_ok(name);
    }
    free(w); free(a); free(wd); free(ad); free(wq); free(aq);
}

static void test_matmul(void) {
    const int M = 3, N = 37, K = 512;
    float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K);
    float *wd = malloc(sizeof(float) * N * K);
    float *y1 = malloc(sizeof(float) * M * N), *y2 = malloc(sizeof(float) * M * N);
    float *y3 = malloc(sizeof(float) * M * N), *yr = malloc(sizeof(float) * M * N);
    uint8_t *wq = malloc((size_t)N * K * 4);
    tu_rng r = {31337};
    fill_gauss(&r, x, (size_t)M * K);
    fill_gauss(&r, wf, (size_t)N * K);
    char name[64];
    for (int k = 0; k < N_ALL; k++) {
        quant_type t = k_all[k];
        const quant_traits *tr = quant_get_traits(t);
        moe_error err = {{0}};
        snprintf(name, sizeof name, "matmul_%s", tr->name);
        const size_t rs = quant_row_size(t, K);
        for (int nn = 0; nn < N; nn++) {
            quant_quantize_row(t, wf + (size_t)nn * K, wq + rs * nn, K, &err);
            quant_dequantize_row(t, wq + rs * nn, wd + (size_t)nn * K, K, &err);
        }
        size_t ws = quant_matmul_work_size(t, M, K);
        void *work = ws ? malloc(ws) : NULL;
        moe_status s1 = quant_matmul(y1, x, wq, t, M, N, K, 1, work, ws, &err);
        moe_status s2 = quant_matmul(y2, x, wq, t, M, N, K, 2, NULL, 0, &err);
        moe_status s3 = quant_matmul(y3, x, wq, t, M, N, K, 5, work, ws, &err);
        free(work);
        if (s1 || s2 || s3) { tu_fail(name, "status %d %d %d: %s", s1, s2, s3, err.msg); continue; }
        if (memcmp(y1, y2, sizeof(float) * M * N) || memcmp(y1, y3, sizeof(float) * M * N)) {
            tu_fail(name, "thread counts 1, 2 and 5 differ");
            continue;
        }
        double worst = 0;
        int wi = 0;
        for (int m = 0; m < M; m++)
            for (int nn = 0; nn < N; nn++) {
                double acc = 0, wn = 0, xn = 0;
                for (int kk = 0; kk < K; kk++) {
                    acc += (double)wd[(size_t)nn * K + kk] * x[(size_t)m * K + kk];
                    wn += (double)wd[(size_t)nn * K + kk] * wd[(size_t)nn * K + kk];
                    xn += (double)x[(size_t)m * K + kk] * x[(size_t)m * K + kk];
                }
                yr[m * N + nn] = (float)acc;
                double e = fabs(acc - y1[m * N + nn]) / sqrt(wn * xn);
                if (e > worst) { worst = e; wi = m * N + nn; }
            }
        /* float weights: only float rounding; quantized: Q8 activation error */
        double tol = tr->is_quantized ? 0.01 : 1e-5;
        if (!(worst <= tol))
            tu_fail(name, "y[%d] = %.9g, float matmul %.9g (error %.3g of |w||x| > %.3g)", wi,
                    (double)y1[wi], (double)yr[wi], worst, tol);
        else
            tu_ok(name);
    }
    free(x); free(wf); free(wd); free(y1); free(y2); free(y3); free(yr); free(wq);
}

/* ------------------------------------------------------------ bad inputs */

static void expect_err(const char *name, moe_status got, moe_status want, const moe_error *e,
                       int *bad) {
    if (got != want || e->msg[0] == '\0') {
        tu_fail(name, "status %d (expected %d), message \"%s\"", got, want, e->msg);
        *bad = 1;
    }
}

static void test_bad_inputs(void) {
    const char *name = "bad_inputs";
    int bad = 0;
    float x[600] = {0}, y[600];
    uint8_t q[4096];
    moe_error e;
    memset(q, 0, sizeof q);

    e.msg[0] = 0;
    expect_err(name, quant_dequantize_row(QUANT_Q4_0, q, y, 33, &e), MOE_ERR_SHAPE, &e, &bad);
    e.msg[0] = 0;
    expect_err(name, quant_quantize_row(QUANT_Q4_K, x, q, 512 + 32, &e), MOE_ERR_SHAPE, &e, &bad);
    e.msg[0] = 0;
    expect_err(name, quant_dequantize_row(QUANT_Q6_K, q, y, -256, &e), MOE_ERR_SHAPE, &e, &bad);
    const int ids[] = {4, 5, 16, 29, 31, 99, -1};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        e.msg[0] = 0;
        expect_err(name, quant_dequantize_row((quant_type)ids[i], q, y, 32, &e), MOE_ERR_ARG, &e, &bad);
        e.msg[0] = 0;
        expect_err(name, quant_quantize_row((quant_type)ids[i], x, q, 32, &e), MOE_ERR_ARG, &e, &bad);
        if (quant_get_traits((quant_type)ids[i]) != NULL || quant_type_valid((quant_type)ids[i])) {
            tu_fail(name, "type id %d has traits", ids[i]);
            bad = 1;
        }
    }
    x[5] = NAN;
    e.msg[0] = 0;
    expect_err(name, quant_quantize_row(QUANT_Q8_0, x, q, 32, &e), MOE_ERR_NONFINITE, &e, &bad);
    x[5] = INFINITY;
    e.msg[0] = 0;
    expect_err(name, quant_quantize_row(QUANT_Q3_K, x, q, 256, &e), MOE_ERR_NONFINITE, &e, &bad);
    x[5] = 0.0f;
    e.msg[0] = 0;
    expect_err(name, quant_matmul(y, x, q, QUANT_Q4_K, 1, 1, 300, 1, NULL, 0, &e), MOE_ERR_SHAPE, &e, &bad);
    e.msg[0] = 0;
    expect_err(name, quant_matmul(y, x, q, (quant_type)17, 1, 1, 256, 1, NULL, 0, &e), MOE_ERR_ARG, &e, &bad);
    e.msg[0] = 0;
    expect_err(name, quant_matmul(y, x, q, QUANT_Q4_0, 1, 1, 64, 1, q + 100, 10, &e), MOE_ERR_ARG, &e, &bad);
    e.msg[0] = 0;
    expect_err(name, quant_matmul(y, x, q, QUANT_Q4_0, -1, 1, 64, 1, NULL, 0, &e), MOE_ERR_SHAPE, &e, &bad);
    x[3] = NAN;
    e.msg[0] = 0;
    expect_err(name, quant_matmul(y, x, q, QUANT_Q8_0, 1, 1, 64, 1, NULL, 0, &e), MOE_ERR_NONFINITE, &e, &bad);
    if (!bad) tu_ok(name);
}

static void test_traits(void) {
    const char *name = "traits_table";
    struct { quant_type t; const char *nm; int bs; size_t bytes; int q; quant_type dot; } want[] = {
        {QUANT_F32, "f32", 1, 4, 0, QUANT_F32}, {QUANT_F16, "f16", 1, 2, 0, QUANT_F32},
        {QUANT_BF16, "bf16", 1, 2, 0, QUANT_F32}, {QUANT_Q4_0, "q4_0", 32, 18, 1, QUANT_Q8_0},
        {QUANT_Q4_1, "q4_1", 32, 20, 1, QUANT_Q8_1}, {QUANT_Q5_0, "q5_0", 32, 22, 1, QUANT_Q8_0},
        {QUANT_Q5_1, "q5_1", 32, 24, 1, QUANT_Q8_1}, {QUANT_Q8_0, "q8_0", 32, 34, 1, QUANT_Q8_0},
        {QUANT_Q8_1, "q8_1", 32, 36, 1, QUANT_Q8_1}, {QUANT_Q2_K, "q2_K", 256, 84, 1, QUANT_Q8_K},
        {QUANT_Q3_K, "q3_K", 256, 110, 1, QUANT_Q8_K}, {QUANT_Q4_K, "q4_K", 256, 144, 1, QUANT_Q8_K},
        {QUANT_Q5_K, "q5_K", 256, 176, 1, QUANT_Q8_K}, {QUANT_Q6_K, "q6_K", 256, 210, 1, QUANT_Q8_K},
        {QUANT_Q8_K, "q8_K", 256, 292, 1, QUANT_Q8_K},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const quant_traits *t = quant_get_traits(want[i].t);
        if (!t || strcmp(t->name, want[i].nm) || t->block_size != want[i].bs ||
            t->block_bytes != want[i].bytes || t->is_quantized != want[i].q ||
            t->vec_dot_type != want[i].dot) {
            tu_fail(name, "type %d (%s)", (int)want[i].t, want[i].nm);
            bad = 1;
        }
    }
    if (quant_row_size(QUANT_Q4_K, 4096) != 16 * 144) { tu_fail(name, "row size"); bad = 1; }
    if (!bad) tu_ok(name);
}

int main(void) {
    test_traits();
    test_fp16();
    test_bf16();
    test_hand_32();
    test_hand_K();
    test_roundtrip();
    test_vec_dot();
    test_matmul();
    test_bad_inputs();
    return tu_exit_code();
}
