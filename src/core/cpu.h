/* cpu.h: which SIMD instruction sets this processor and its operating system
 * support (internal). One probe for every run-time kernel choice: the GEMM
 * (kernels/gemm.c), decode attention (kernels/attn_decode.c) and the quantized
 * dot products (quant/quant.c).
 * Not for: choosing a kernel (each caller keeps its own table), or anything
 * beyond x86 (elsewhere every flag reads 0, so the portable kernels run).
 *
 * Read with cpuid and xgetbv directly (not __builtin_cpu_supports, whose
 * feature names differ between gcc and clang: clang 14 has no "f16c"). A flag
 * is set only when the instructions exist (cpuid) and the operating system
 * saves the registers they use (xgetbv: YMM state for AVX2/FMA/F16C, opmask and
 * ZMM state as well for AVX-512). */
#ifndef MOE_CORE_CPU_H
#define MOE_CORE_CPU_H

/* Feature bits of moe_cpu_features. */
enum {
    MOE_CPU_AVX2 = 1u << 0,
    MOE_CPU_FMA = 1u << 1,
    MOE_CPU_F16C = 1u << 2,
    MOE_CPU_AVX512F = 1u << 3,
    MOE_CPU_AVX512BW = 1u << 4,
    MOE_CPU_AVX512DQ = 1u << 5,
    MOE_CPU_AVX512VL = 1u << 6,
    MOE_CPU_AVX512VNNI = 1u << 7,
};

/* The MOE_CPU_* bits of this machine. Probed once, then read from a cache:
 * the answer is a constant of the machine, so the first callers racing to
 * fill it store the same value. */
unsigned moe_cpu_features(void);

/* 1 if every bit of `want` is supported. */
static inline int moe_cpu_has(unsigned want) {
    return (moe_cpu_features() & want) == want;
}

#endif
