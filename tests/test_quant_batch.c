/* test_quant_batch.c: quant_matmul_batch (src/quant/quant_matmul.c) against
 * quant_matmul called once per product, bit for bit.
 *
 * Checks: batches mixing products that share their x (as q, k, v do; Q4_K
 * and Q6_K share Q8_K activations, Q8_0 and Q4_0 share Q8_0 ones), a product
 * of the same type and K on another x, float weights, an empty product (M = 0) and K = 0,
 * for M in {1, 2, 5, 33} and 1, 2, 3 threads, and a batch of 20 products
 * (more than the batch keeps on the stack): every output equal to the
 * single call's; the work size counts a shared x once; errors name the
 * product (a non-finite x, a bad row length, a too small work space).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "testutil.h"

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* N rows of K weights of type t, quantized from uniform floats. */
static uint8_t *make_weights(tu_rng *r, quant_type t, int64_t N, int64_t K) {
    const size_t wr = quant_row_size(t, K);
    uint8_t *w = malloc(wr * (size_t)N);
    float *row = malloc(sizeof(float) * (size_t)K);
    moe_error err;
    for (int64_t n = 0; n < N; n++) {
        tu_fill(r, row, (size_t)K, 1.0f);
        if (quant_quantize_row(t, row, w + (size_t)n * wr, K, &err) != MOE_OK) abort();
    }
    free(row);
    return w;
}

#define NP 8

static void check_equal(void) {
    tu_rng r = {77};
    const int64_t K = 512, K2 = 256;
    /* products 0-2 share x0 (q, k, v), 3 and 7 share x1, 4 has the type and
     * K of 0 but its own x2, 5 has float weights on x0, 6 is empty */
    const quant_type types[NP] = {QUANT_Q4_K, QUANT_Q6_K, QUANT_Q4_K, QUANT_Q8_0, QUANT_Q4_K,
                                  QUANT_F32, QUANT_Q8_0, QUANT_Q4_0};
    const int64_t Ns[NP] = {100, 37, 64, 48, 17, 8, 5, 21};
    const int Ms[] = {1, 2, 5, 33};
    uint8_t *w[NP];
    for (int i = 0; i < NP; i++) {
        const int64_t k = i == 3 || i == 7 ? K2 : K;
        if (types[i] == QUANT_F32) {
            float *f = malloc(sizeof(float) * (size_t)(Ns[i] * k));
            tu_fill(&r, f, (size_t)(Ns[i] * k), 1.0f);
            w[i] = (uint8_t *)f;
        } else {
            w[i] = make_weights(&r, types[i], Ns[i], k);
        }
    }
    float *x0 = malloc(sizeof(float) * 33 * K), *x1 = malloc(sizeof(float) * 33 * K2);
    float *x2 = malloc(sizeof(float) * 33 * K);
    float *y[NP], *want[NP];
    for (int i = 0; i < NP; i++) {
        y[i] = malloc(sizeof(float) * 33 * (size_t)Ns[i]);
        want[i] = malloc(sizeof(float) * 33 * (size_t)Ns[i]);
    }
    int bad = 0, outs = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0] && !bad; mi++) {
        const int M = Ms[mi];
        tu_fill(&r, x0, (size_t)(M * K), 2.0f);
        tu_fill(&r, x1, (size_t)(M * K2), 0.5f);
        tu_fill(&r, x2, (size_t)(M * K), 1.0f);
        quant_mm p[NP];
        for (int i = 0; i < NP; i++) {
            const int x1_user = i == 3 || i == 7;
            p[i] = (quant_mm){.y = y[i], .x = x1_user ? x1 : i == 4 ? x2 : x0, .w = w[i],
                              .type = types[i],
                              .M = i == 6 ? 0 : M, .N = Ns[i], .K = x1_user ? K2 : K};
        }
        moe_error err;
        for (int i = 0; i < NP; i++)
            if (quant_matmul(want[i], p[i].x, w[i], types[i], p[i].M, Ns[i], p[i].K, 1, NULL, 0,
                             &err) != MOE_OK) {
                tu_fail("batch_equals_single", "single product %d: %s", i, err.msg);
                bad = 1;
            }
        const size_t ws = quant_matmul_batch_work_size(p, NP);
        uint8_t *work = malloc(ws ? ws : 1);
        for (int nt = 1; nt <= 3 && !bad; nt++) {
            for (int i = 0; i < NP; i++) memset(y[i], 0xff, sizeof(float) * 33 * (size_t)Ns[i]);
            if (quant_matmul_batch(p, NP, nt, nt == 2 ? NULL : work, ws, &err) != MOE_OK) {
                tu_fail("batch_equals_single", "M %d threads %d: %s", M, nt, err.msg);
                bad = 1;
                break;
            }
            for (int i = 0; i < NP && !bad; i++)
                for (int64_t e = 0; e < p[i].M * Ns[i] && !bad; e++, outs++)
                    if (fbits(y[i][e]) != fbits(want[i][e])) {
                        tu_fail("batch_equals_single", "M %d threads %d product %d: y[%lld] = "
                                "%.9g, alone %.9g", M, nt, i, (long long)e, y[i][e], want[i][e]);
                        bad = 1;
                    }
            /* the empty product left its output alone */
            if (!bad && fbits(y[6][0]) != 0xffffffffu) {
                tu_fail("batch_equals_single", "the M = 0 product wrote y");
                bad = 1;
            }
        }
        free(work);
    }
    if (!bad) tu_okf("batch_equals_single (%d outputs over M and threads; bitwise)", outs);

    /* K = 0: y = 0, as quant_matmul */
    {
        float yz[6];
        memset(yz, 0xff, sizeof yz);
        quant_mm pz = {.y = yz, .x = x0, .w = w[0], .type = QUANT_Q8_0, .M = 2, .N = 3, .K = 0};
        moe_error err;
        const moe_status st = quant_matmul_batch(&pz, 1, 2, NULL, 0, &err);
        int zeros = 1;
        for (int i = 0; i < 6; i++) zeros &= yz[i] == 0.0f;
        if (st != MOE_OK || !zeros) tu_fail("batch_k_zero", "status %d, zeros %d", (int)st, zeros);
        else tu_ok("batch_k_zero");
    }

    /* work size: a shared x is counted once */
    {
        quant_mm p[3] = {
            {.x = x0, .type = QUANT_Q4_K, .M = 4, .N = 8, .K = K},
            {.x = x0, .type = QUANT_Q6_K, .M = 4, .N = 8, .K = K},
            {.x = x1, .type = QUANT_Q4_K, .M = 4, .N = 8, .K = K},
        };
        const size_t one = quant_matmul_work_size(QUANT_Q4_K, 4, K);
        const size_t s2 = quant_matmul_batch_work_size(p, 2), s3 = quant_matmul_batch_work_size(p, 3);
        if (s2 != one || s3 != 2 * one)
            tu_fail("batch_work_size", "two products on one x: %zu (want %zu); plus one on another "
                    "x: %zu (want %zu)", s2, one, s3, 2 * one);
        else tu_okf("batch_work_size (%zu bytes per distinct x of 4 x 512)", one);
    }
    for (int i = 0; i < NP; i++) {
        free(w[i]);
        free(y[i]);
        free(want[i]);
    }
    free(x0);
    free(x1);
    free(x2);
}

/* st is `want` and the message holds `a` and `b`. */
static void expect(const char *name, moe_status st, moe_status want, const moe_error *e,
                   const char *a, const char *b) {
    if (st != want) tu_fail(name, "status %d, want %d (%s)", (int)st, (int)want, e->msg);
    else if (!strstr(e->msg, a) || (b && !strstr(e->msg, b)))
        tu_fail(name, "message '%s' lacks '%s'%s%s", e->msg, a, b ? " or " : "", b ? b : "");
    else tu_okf("%s (%s)", name, e->msg);
}

static void check_errors(void) {
    tu_rng r = {5};
    const int64_t K = 256;
    uint8_t *w = make_weights(&r, QUANT_Q8_0, 4, K);
    float x[2 * 256], x2[2 * 256], y0[8], y1[8], y2[8];
    tu_fill(&r, x, 2 * 256, 1.0f);
    memcpy(x2, x, sizeof x);
    x2[256 + 7] = 1.0f / 0.0f;
    moe_error e;
    quant_mm p[3] = {
        {.y = y0, .x = x, .w = w, .type = QUANT_Q8_0, .M = 2, .N = 4, .K = K},
        {.y = y1, .x = x, .w = w, .type = QUANT_Q8_0, .M = 2, .N = 4, .K = K},
        {.y = y2, .x = x2, .w = w, .type = QUANT_Q8_0, .M = 2, .N = 4, .K = K},
    };
    expect("batch_error_nonfinite", quant_matmul_batch(p, 3, 2, NULL, 0, &e), MOE_ERR_NONFINITE, &e,
           "product 2", "x[1, 7]");
    p[2].x = x;
    p[1].K = 100;
    expect("batch_error_shape", quant_matmul_batch(p, 3, 2, NULL, 0, &e), MOE_ERR_SHAPE, &e,
           "product 1", NULL);
    p[1].K = K;
    uint8_t small[16];
    expect("batch_error_work", quant_matmul_batch(p, 3, 2, small, sizeof small, &e), MOE_ERR_ARG,
           &e, "quant_matmul_batch_work_size", NULL);
    moe_status st = quant_matmul_batch(p, 0, 2, NULL, 0, &e);
    if (st != MOE_OK) tu_fail("batch_empty", "status %d: %s", (int)st, e.msg);
    else tu_ok("batch_empty");
    free(w);
}

/* More products than the batch keeps on the stack (the heap path, as an
 * engine wave of 64 experts takes): 20 products over 3 distinct x. */
static void check_many(void) {
    tu_rng r = {91};
    enum { P = 20, M = 3, N = 24 };
    const int64_t K = 256;
    uint8_t *w = make_weights(&r, QUANT_Q4_K, N, K);
    float x[3][M * 256], y[P][M * N], want[P][M * N];
    for (int i = 0; i < 3; i++) tu_fill(&r, x[i], M * 256, 1.0f);
    quant_mm p[P];
    moe_error err;
    int bad = 0;
    for (int i = 0; i < P && !bad; i++) {
        p[i] = (quant_mm){.y = y[i], .x = x[i % 3], .w = w, .type = QUANT_Q4_K, .M = M, .N = N, .K = K};
        if (quant_matmul(want[i], x[i % 3], w, QUANT_Q4_K, M, N, K, 1, NULL, 0, &err) != MOE_OK) {
            tu_fail("batch_many", "single product %d: %s", i, err.msg);
            bad = 1;
        }
    }
    const size_t ws = quant_matmul_batch_work_size(p, P);
    /* more than 16 products: their bookkeeping lives in the work space too */
    const size_t want_ws = quant_matmul_batch_index_size(P) + 3 * quant_matmul_work_size(QUANT_Q4_K, M, K);
    if (!bad && (ws != want_ws || quant_matmul_batch_index_size(P) == 0)) {
        tu_fail("batch_many", "work size %zu, want the index's %zu + 3 activations' %zu", ws,
                quant_matmul_batch_index_size(P), 3 * quant_matmul_work_size(QUANT_Q4_K, M, K));
        bad = 1;
    }
    void *work = malloc(ws);
    if (!bad && (!work || quant_matmul_batch(p, P, 2, work, ws, &err) != MOE_OK)) {
        tu_fail("batch_many", "%s", err.msg);
        bad = 1;
    }
    for (int i = 0; i < P && !bad; i++)
        for (int e = 0; e < M * N && !bad; e++)
            if (fbits(y[i][e]) != fbits(want[i][e])) {
                tu_fail("batch_many", "product %d y[%d] = %.9g, alone %.9g", i, e, y[i][e], want[i][e]);
                bad = 1;
            }
    free(work);
    if (!bad) tu_okf("batch_many (%d products, bitwise)", P);
    free(w);
}

int main(void) {
    check_equal();
    check_many();
    check_errors();
    return tu_exit_code();
}
