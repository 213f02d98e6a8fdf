/* quant_matmul.c: the threaded quantized matrix products: one product
 * (quant_matmul) or a batch of independent products in one parallel region
 * (quant_matmul_batch), activations quantized once per distinct input.
 *
 * For: the inference engine's projections. A batch runs its products one
 * after the other inside a single OpenMP region, each split across all the
 * threads, with no barrier between them: at decode a layer's ~10 products
 * of a few hundred microseconds each would otherwise pay a fork, a join and
 * the imbalance of two threads each time. Products that read the same x
 * (q, k and v; an expert's gate and up) share its quantized rows.
 * Not for: the kernels (quant_avx2.c, quant_avx512vnni.c,
 * quant_gemm_*avx512vnni.c; the scalar ones in quant.c, quant_k.c).
 * Every output element is one kernel evaluation bitwise equal to
 * quant_vec_dot, so neither the split nor the batching can change it.
 */
#include "quant/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

#include "core/error.h"
#include "quant/quant_simd.h"

size_t quant_matmul_work_size(quant_type type, int64_t M, int64_t K) {
    const quant_traits *t = quant_get_traits(type);
    if (!t || M <= 0 || K <= 0 || !t->is_quantized) return 0;
    const quant_traits *a = quant_get_traits(t->vec_dot_type);
    if (K % a->block_size != 0) return 0;
    return (size_t)M * (quant_row_size(t->vec_dot_type, K) + quant_act_side_bytes(type, K));
}

/* From this many activation rows on, a level's multi-row kernel (which
 * unpacks each weight block once per panel of 16 (AVX2: 8) rows) beats one
 * dot per output: 2 for the types whose panels are unpacked by loads and
 * transposes (AVX-512 Q8_0 and Q4_K: 2 rows cost 1.3x and 1.8x one row;
 * AVX2 Q4_K: 1.5x; `moe bench qmatmul`), 3 for the others (gathers). */
static int64_t gemm_min_rows(int level, quant_type t) {
    if (t == QUANT_Q4_K && level >= QUANT_LEVEL_AVX2) return 2;
    return level == QUANT_LEVEL_AVX512 && t == QUANT_Q8_0 ? 2 : 3;
}

/* Products of a batch whose bookkeeping lives on the stack. */
#define MM_STACK 16

/* One distinct activation matrix of a batch, quantized once for every
 * product that reads it. */
typedef struct mm_act {
    const float *x;            /* [M, K] */
    int64_t M, K;
    quant_type atype;          /* the weights' vec_dot_type */
    quant_act_fn act;          /* NULL: the scalar quantizer */
    size_t a_row, s_row;       /* bytes per row: quantized, side data */
    uint8_t *aq;               /* [M][a_row] quantized rows, then [M][s_row] side */
    int bad;                   /* set when a row of x is not finite */
} mm_act;

/* One product y[M, N] = x[M, K] w^T of a batch. */
typedef struct mm_job {
    float *y;
    const float *x;
    const uint8_t *w;          /* N rows of w_row bytes */
    int64_t M, N, K;
    size_t w_row;
    mm_act *a;                 /* its quantized x; NULL: float weights, x read as is */
    quant_dot_fn dot;
    quant_rows_fn rows;        /* NULL: one dot per output */
    quant_gemm_fn gemm;        /* NULL: rows or dots */
} mm_job;

/* Everything the threads of a batch share. */
typedef struct mm_batch {
    mm_job *jobs;
    int n_jobs;
    mm_act *acts;
    int n_acts;
    int64_t q_rows;            /* activation rows to quantize, over all acts */
    int quant_here;            /* 1: the threads quantize; 0: done before */
} mm_batch;

/* 1 if the n floats at x are all finite (a branch-free pass the compiler can
 * vectorize; the exact index is found later, on the error path only). */
static int all_finite(const float *x, int64_t n) {
    uint32_t acc = 0;
    #pragma omp simd reduction(|:acc)
    for (int64_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, x + k, 4);
        acc |= ((u & 0x7f800000u) == 0x7f800000u);
    }
    return acc == 0;
}

static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(x[k])) return k;
    return -1;
}

/* [*lo, *hi) = part i of n items cut in parts near-equal contiguous pieces. */
static void split(int64_t n, int parts, int i, int64_t *lo, int64_t *hi) {
    *lo = n * i / parts;
    *hi = n * (i + 1) / parts;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Quantizes rows [m0, m1) of a (and their side data); a row that is not
 * finite sets a->bad instead. */
static void mm_quantize(mm_act *a, int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
        const float *xr = a->x + m * a->K;
        if (!all_finite(xr, a->K)) {
            #pragma omp atomic write
            a->bad = 1;
            continue;
        }
        uint8_t *ar = a->aq + (size_t)m * a->a_row;
        if (a->act) a->act(xr, ar, a->K);
        else quant_quantize_unchecked(a->atype, xr, ar, a->K);
        if (a->s_row)
            quant_act_side_q8_0(ar, a->K, a->aq + (size_t)a->M * a->a_row + (size_t)m * a->s_row);
    }
}

/* Rows [r0, r1) of the activation rows of all acts, numbered act after act. */
static void mm_quantize_range(mm_batch *b, int64_t r0, int64_t r1) {
    int64_t base = 0;
    for (int i = 0; i < b->n_acts && base < r1; i++) {
        mm_act *a = &b->acts[i];
        const int64_t lo = max64(r0, base) - base, hi = min64(r1, base + a->M) - base;
        if (lo < hi) mm_quantize(a, lo, hi);
        base += a->M;
    }
}

/* Thread tid of nth computes its block of j->y. */
static void mm_compute(const mm_job *j, int tid, int nth) {
    const mm_act *a = j->a;
    const uint8_t *ab = a ? a->aq : (const uint8_t *)j->x;
    const size_t a_stride = a ? a->a_row : (size_t)j->K * sizeof(float);
    if (j->gemm) {
        /* panels of 16 weight rows; threads split the panels, and the
         * activation rows too when there are fewer panels than threads */
        const int64_t P = (j->N + 15) / 16;
        const int tn = P < nth ? (int)P : nth, tm = nth / tn;
        if (tid >= tn * tm) return;
        int64_t p0, p1, m0, m1;
        split(P, tn, tid % tn, &p0, &p1);
        split(j->M, tm, tid / tn, &m0, &m1);
        const int64_t n0 = 16 * p0, n1 = 16 * p1 < j->N ? 16 * p1 : j->N;
        if (n1 <= n0 || m1 <= m0) return;
        const uint8_t *side = a && a->s_row ? a->aq + (size_t)a->M * a->a_row + (size_t)m0 * a->s_row
                                            : NULL;
        j->gemm(j->y + m0 * j->N + n0, j->N, j->w + (size_t)n0 * j->w_row, j->w_row, n1 - n0,
                ab + (size_t)m0 * a_stride, a_stride, side, a ? a->s_row : 0, m1 - m0, j->K);
        return;
    }
    int64_t n0, n1;
    split(j->N, nth, tid, &n0, &n1);
    if (j->rows) {
        /* a slice of weight rows stays in cache for all the activation rows */
        for (int64_t s0 = n0; s0 < n1; s0 += 64) {
            const int64_t s1 = s0 + 64 < n1 ? s0 + 64 : n1;
            for (int64_t m = 0; m < j->M; m++)
                j->rows(j->y + m * j->N + s0, j->w + (size_t)s0 * j->w_row, j->w_row, s1 - s0,
                        ab + (size_t)m * a_stride, j->K);
        }
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *wr = j->w + (size_t)n * j->w_row;
        for (int64_t m = 0; m < j->M; m++)
            j->y[m * j->N + n] = j->dot(j->K, wr, ab + (size_t)m * a_stride);
    }
}

/* Thread tid of nth: its share of the activation rows (unless quantized
 * before), one barrier, then its block of every product in turn. */
static void mm_thread(mm_batch *b, int tid, int nth) {
    if (b->quant_here) {
        int64_t r0, r1;
        split(b->q_rows, nth, tid, &r0, &r1);
        mm_quantize_range(b, r0, r1);
        #pragma omp barrier
    }
    for (int i = 0; i < b->n_jobs; i++) {
        const mm_job *j = &b->jobs[i];
        if (j->a) {
            int bad;
            #pragma omp atomic read
            bad = j->a->bad;
            if (bad) continue; /* reported after the region */
        }
        mm_compute(j, tid, nth);
    }
}

/* 1 if products p and q read the same activations, quantized the same way. */
static int same_act(const quant_mm *p, const quant_mm *q) {
    return p->x == q->x && p->M == q->M && p->K == q->K &&
           quant_get_traits(p->type)->vec_dot_type == quant_get_traits(q->type)->vec_dot_type &&
           quant_act_side_bytes(p->type, p->K) == quant_act_side_bytes(q->type, q->K);
}

/* 1 if product i quantizes its x (quantized weights, some work). */
static int needs_act(const quant_mm *p) {
    return p->M > 0 && p->N > 0 && p->K > 0 && quant_get_traits(p->type)->is_quantized;
}

/* The first earlier product whose activations product i can reuse, or -1. */
static int shared_with(const quant_mm *p, int i) {
    for (int k = 0; k < i; k++)
        if (needs_act(&p[k]) && same_act(&p[k], &p[i])) return k;
    return -1;
}

size_t quant_matmul_batch_index_size(int n) {
    if (n <= MM_STACK) return 0;
    const size_t b = (size_t)n * (sizeof(mm_job) + sizeof(mm_act) + sizeof(int));
    return (b + 63) / 64 * 64;
}

size_t quant_matmul_batch_work_size(const quant_mm *p, int n) {
    size_t need = quant_matmul_batch_index_size(n);
    for (int i = 0; i < n; i++) {
        if (!quant_get_traits(p[i].type) || !needs_act(&p[i]) || shared_with(p, i) >= 0) continue;
        need += quant_matmul_work_size(p[i].type, p[i].M, p[i].K);
    }
    return need;
}

/* The name of product i in messages. */
static void who_of(char *who, size_t size, int n, int i) {
    if (n == 1) snprintf(who, size, "quant_matmul");
    else snprintf(who, size, "quant_matmul_batch: product %d", i);
}

moe_status quant_matmul_batch(const quant_mm *p, int n, int n_threads, void *work,
                              size_t work_size, moe_error *err) {
    char who[64];
    if (n < 0) return moe_err(err, MOE_ERR_ARG, "quant_matmul_batch: %d products", n);
    for (int i = 0; i < n; i++) {
        who_of(who, sizeof who, n, i);
        char what[96];
        snprintf(what, sizeof what, "%s (K, the row length of w)", who);
        moe_status st = quant_check_row(p[i].type, p[i].K, what, err);
        if (st != MOE_OK) return st;
        if (p[i].M < 0 || p[i].N < 0)
            return moe_err(err, MOE_ERR_SHAPE, "%s: M = %lld, N = %lld (expected >= 0)", who,
                           (long long)p[i].M, (long long)p[i].N);
        if (!quant_get_traits(p[i].type)->is_quantized && p[i].M > 0 && p[i].N > 0 &&
            !all_finite(p[i].x, p[i].M * p[i].K)) { /* float weights: x is read as is */
            const int64_t bad = first_nonfinite(p[i].x, p[i].M * p[i].K);
            return moe_err(err, MOE_ERR_NONFINITE, "%s: x[%lld, %lld] = %g is not finite", who,
                           (long long)(bad / p[i].K), (long long)(bad % p[i].K),
                           (double)p[i].x[bad]);
        }
    }
    const size_t need = quant_matmul_batch_work_size(p, n);
    void *owned = NULL;
    if (need > 0 && work == NULL) {
        owned = malloc(need);
        if (!owned)
            return moe_err(err, MOE_ERR_NOMEM, "%s: %zu bytes of work space for the activation "
                           "rows", n == 1 ? "quant_matmul" : "quant_matmul_batch", need);
        work = owned;
    } else if (need > work_size) {
        return n == 1 ? moe_err(err, MOE_ERR_ARG, "quant_matmul: work space of %zu bytes, need "
                                "quant_matmul_work_size = %zu", work_size, need)
                      : moe_err(err, MOE_ERR_ARG, "quant_matmul_batch: work space of %zu bytes, "
                                "need quant_matmul_batch_work_size = %zu", work_size, need);
    }
    /* one job per product with work, one act per distinct quantized x: on
     * the stack for the engine's usual batches (q k v; a few experts' gate
     * and up), else at the start of the work space */
    mm_job job_st[MM_STACK];
    mm_act act_st[MM_STACK];
    int act_of_st[MM_STACK];
    mm_job *jobs = job_st;
    mm_act *acts = act_st;
    int *act_of = act_of_st;
    const size_t index = quant_matmul_batch_index_size(n);
    if (index > 0) {
        jobs = work;
        acts = (mm_act *)(jobs + n);
        act_of = (int *)(acts + n);
    }
    const int level = quant_level_best();
    const quant_kernels *kt = quant_kernels_of(level);
    mm_batch b = {.jobs = jobs, .acts = acts};
    uint8_t *next = work ? (uint8_t *)work + index : NULL; /* NULL: nothing to quantize */
    int64_t units = 0;
    for (int i = 0; i < n; i++) {
        const quant_mm *q = &p[i];
        if (q->M == 0 || q->N == 0) continue;
        if (q->K == 0) {
            for (int64_t e = 0; e < q->M * q->N; e++) q->y[e] = 0.0f;
            continue;
        }
        const quant_traits *t = quant_get_traits(q->type);
        mm_job *j = &jobs[b.n_jobs++];
        *j = (mm_job){.y = q->y, .x = q->x, .w = (const uint8_t *)q->w, .M = q->M, .N = q->N,
                      .K = q->K, .w_row = quant_row_size(q->type, q->K), .dot = kt->dot[q->type],
                      .rows = kt->rows[q->type]};
        if (t->is_quantized) {
            const int k = shared_with(p, i);
            if (k >= 0) {
                j->a = &acts[act_of[k]];
            } else {
                mm_act *a = &acts[b.n_acts];
                act_of[i] = b.n_acts;
                b.n_acts++;
                *a = (mm_act){.x = q->x, .M = q->M, .K = q->K, .atype = t->vec_dot_type,
                              .a_row = quant_row_size(t->vec_dot_type, q->K),
                              .s_row = quant_act_side_bytes(q->type, q->K), .aq = next};
                a->act = t->vec_dot_type == QUANT_Q8_0 ? kt->act_q8_0 :
                         t->vec_dot_type == QUANT_Q8_K ? kt->act_q8_K : NULL;
                next += (size_t)a->M * (a->a_row + a->s_row);
                b.q_rows += a->M;
                j->a = a;
            }
            /* the kernels index a panel's rows with 32-bit offsets */
            if (q->M >= gemm_min_rows(level, q->type) && j->w_row <= (size_t)INT32_MAX / 16)
                j->gemm = kt->gemm[q->type];
        } else if (j->w_row <= (size_t)INT32_MAX / 16) {
            /* float weights: a level's kernel runs several sequential sums in
             * lanes, which pays for any M */
            j->gemm = kt->gemm[q->type];
        }
        units += j->gemm ? (q->N + 15) / 16 * q->M : q->N;
    }
    int nt = n_threads > 0 ? n_threads :
#ifdef _OPENMP
        omp_get_max_threads();
#else
        1;
#endif
    /* no more threads than there is work for: the decode case's rows alone */
    if (units < nt) nt = (int)(units > 0 ? units : 1);
    /* a few rows are quantized here, which spares the threads a barrier */
    b.quant_here = b.q_rows > 2 && nt > 1;
    if (!b.quant_here) mm_quantize_range(&b, 0, b.q_rows);
    if (b.n_jobs == 0) {
        /* nothing to compute */
    } else if (nt <= 1) {
        mm_thread(&b, 0, 1);
    } else {
        #pragma omp parallel num_threads(nt)
        mm_thread(&b, omp_get_thread_num(), omp_get_num_threads());
    }
    moe_status st = MOE_OK;
    for (int i = 0, ji = 0; i < n && st == MOE_OK; i++) {
        const quant_mm *q = &p[i];
        if (q->M == 0 || q->N == 0 || q->K == 0) continue;
        const mm_job *j = &jobs[ji++];
        if (!j->a || !j->a->bad) continue;
        const int64_t bad = first_nonfinite(q->x, q->M * q->K);
        who_of(who, sizeof who, n, i);
        st = moe_err(err, MOE_ERR_NONFINITE, "%s: x[%lld, %lld] = %g is not finite", who,
                     (long long)(bad / q->K), (long long)(bad % q->K), (double)q->x[bad]);
    }
    free(owned);
    return st;
}

moe_status quant_matmul(float *y, const float *x, const void *w, quant_type type,
                        int64_t M, int64_t N, int64_t K, int n_threads,
                        void *work, size_t work_size, moe_error *err) {
    const quant_mm p = {.y = y, .x = x, .w = w, .type = type, .M = M, .N = N, .K = K};
    return quant_matmul_batch(&p, 1, n_threads, work, work_size, err);
}
