/* cpu.c: the processor probe of cpu.h (cpuid + xgetbv).
 * Not for: kernel tables (gemm.c, attn_decode.c, quant.c choose from these
 * bits). */
#include "core/cpu.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define MOE_CPU_X86 1
#endif

#ifdef MOE_CPU_X86
/* XCR0: which register states the operating system saves. */
static unsigned long long xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static unsigned probe(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned c1 = c;
    if (!(c1 & (1u << 27)) || !(c1 & (1u << 28))) return 0; /* OSXSAVE, AVX */
    const unsigned long long x = xcr0();
    if ((x & 0x6) != 0x6) return 0; /* XMM and YMM state */
    const int zmm = (x & 0xE0) == 0xE0; /* opmask, ZMM 0-15 upper halves, ZMM 16-31 */
    if (c1 & (1u << 12)) f |= MOE_CPU_FMA;
    if (c1 & (1u << 29)) f |= MOE_CPU_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    if (b & (1u << 5)) f |= MOE_CPU_AVX2;
    if (zmm) {
        if (b & (1u << 16)) f |= MOE_CPU_AVX512F;
        if (b & (1u << 17)) f |= MOE_CPU_AVX512DQ;
        if (b & (1u << 30)) f |= MOE_CPU_AVX512BW;
        if (b & (1u << 31)) f |= MOE_CPU_AVX512VL;
        if (c & (1u << 11)) f |= MOE_CPU_AVX512VNNI;
    }
    return f;
}
#else
static unsigned probe(void) { return 0; }
#endif

unsigned moe_cpu_features(void) {
    /* bit 31 marks "probed"; a constant of the machine, not mutable state */
    static unsigned cache;
    unsigned v = __atomic_load_n(&cache, __ATOMIC_RELAXED);
    if (!v) {
        v = probe() | 0x80000000u;
        __atomic_store_n(&cache, v, __ATOMIC_RELAXED);
    }
    return v & 0x7FFFFFFFu;
}
