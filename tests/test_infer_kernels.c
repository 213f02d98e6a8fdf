/* test_infer_kernels.c: the inference engine's attention kernels (src/kernels/attn_decode*.c;
 * attn_decode.h) and the engine's promise that logits do not depend on the prompt
 * split nor on the thread count.
 *
 * Kernels: every kernel this processor runs (portable, AVX2, AVX-512), on
 * head sizes each accepts, against a scalar double-precision reference of
 * causal attention over the same cache (tolerance 1e-5 of the row's largest
 * output: the kernels sum in float, with exp_vec ~2 ulp, over <= 300 keys);
 * bitwise invariance of a row to the group it is computed in (alone, with
 * other rows, other causal lengths, another order); NaN planted in the
 * cache past the longest row must not reach any output (lanes past np are
 * computed but ignored).
 * Engine: tiny synthetic models (GQA groups spanning tokens, and G = 1), F32
 * and Q8_0, evaluated in one batch, token by token, and in uneven chunks
 * with a small max_batch and other thread counts: logits bitwise equal; the
 * MoE block's experts in several waves (top_k raised after the open) and in
 * one: bitwise equal.
 * A speed note for the best kernel on a prefill-shaped workload (printed,
 * not asserted).
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/attn_decode.h"
#include "moe_infer.h"
#include "testutil.h"

#define C_MAX 300 /* cache positions in the kernel checks (not a multiple of 16) */

/* o[hd] = causal attention of q over keys 0 .. np-1 of K, V [C][hd], in double. */
static void ref_row(double *o, const float *q, const float *K, const float *V, int np, int hd,
                    float scale) {
    double s[C_MAX], mx = -1e300, z = 0;
    for (int j = 0; j < np; j++) {
        double dot = 0;
        for (int c = 0; c < hd; c++) dot += (double)q[c] * K[(size_t)j * hd + c];
        s[j] = dot * scale;
        if (s[j] > mx) mx = s[j];
    }
    for (int j = 0; j < np; j++) { s[j] = exp(s[j] - mx); z += s[j]; }
    for (int c = 0; c < hd; c++) {
        double a = 0;
        for (int j = 0; j < np; j++) a += s[j] * V[(size_t)j * hd + c];
        o[c] = a / z;
    }
}

/* A cache of C_MAX random keys and values, K also as rows for the reference. */
typedef struct cache {
    int hd;
    float *K, *V, *kt; /* [C][hd], [C][hd], attn_kt_floats */
    float *q;          /* [8][hd] query rows */
} cache;

static void cache_make(cache *c, int hd, uint64_t seed) {
    tu_rng r = {seed};
    c->hd = hd;
    c->K = malloc(sizeof(float) * C_MAX * hd);
    c->V = malloc(sizeof(float) * C_MAX * hd);
    c->kt = malloc(sizeof(float) * attn_kt_floats(C_MAX, hd));
    c->q = malloc(sizeof(float) * 8 * hd);
    tu_fill(&r, c->K, (size_t)C_MAX * hd, 1.0f);
    tu_fill(&r, c->V, (size_t)C_MAX * hd, 1.0f);
    tu_fill(&r, c->q, (size_t)8 * hd, 2.0f); /* peaked enough to make exp matter */
    const float nan = nanf("");
    for (size_t i = 0; i < attn_kt_floats(C_MAX, hd); i++) c->kt[i] = nan; /* unwritten lanes */
    for (int j = 0; j < C_MAX; j++) attn_store_k(c->kt, c->K + (size_t)j * hd, j, hd);
}

/* Plants NaN in keys and values from position p on (kept for the rest). */
static void cache_poison(cache *c, int p) {
    const float nan = nanf("");
    float row[512];
    for (int i = 0; i < c->hd; i++) row[i] = nan;
    for (int j = p; j < C_MAX; j++) {
        attn_store_k(c->kt, row, j, c->hd);
        memcpy(c->V + (size_t)j * c->hd, row, sizeof(float) * c->hd);
    }
}

static void cache_free(cache *c) { free(c->K); free(c->V); free(c->kt); free(c->q); }

/* Runs kernel fn on rows (query index qi[r], length np[r]) into out[R][hd]. */
static void run_group(attn_kernel_fn fn, const cache *c, int R, const int *qi, const int *np,
                      float *out, float *s, size_t lds, float scale) {
    attn_group g;
    g.R = R;
    for (int r = 0; r < R; r++) {
        g.q[r] = c->q + (size_t)qi[r] * c->hd;
        g.o[r] = out + (size_t)r * c->hd;
        g.np[r] = np[r];
    }
    fn(&g, c->kt, c->V, c->hd, scale, s, lds);
}

/* The groups every kernel is checked on: R rows, their queries and lengths. */
typedef struct gcase { int R; int qi[ATTN_RMAX]; int np[ATTN_RMAX]; } gcase;
static const gcase cases[] = {
    {1, {0}, {1}},           {1, {1}, {5}},           {1, {2}, {16}},
    {1, {3}, {17}},          {1, {4}, {C_MAX}},       {4, {0, 1, 2, 3}, {100, 100, 100, 100}},
    {4, {4, 5, 6, 7}, {97, 98, 99, 100}},             {4, {0, 1, 2, 3}, {1, 2, 3, 4}},
    {3, {5, 6, 7}, {16, 17, 18}},                     {2, {1, 6}, {33, 290}},
    {4, {7, 0, 3, 3}, {64, 65, 64, 200}},
    {8, {0, 1, 2, 3, 4, 5, 6, 7}, {48, 48, 48, 48, 49, 49, 49, 49}},
    {8, {7, 6, 5, 4, 3, 2, 1, 0}, {1, 2, 3, 4, 5, 6, 7, 8}},
    {8, {0, 1, 2, 3, 4, 5, 6, 7}, {C_MAX, 290, 260, 250, 17, 16, 15, 257}},
    {7, {0, 1, 2, 3, 4, 5, 6}, {33, 33, 34, 34, 35, 35, 36}},
    {6, {2, 3, 4, 5, 6, 7}, {128, 128, 128, 129, 129, 129}},
    {5, {1, 2, 3, 4, 5}, {70, 70, 70, 70, 71}},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

static void check_kernel(int kernel, int hd) {
    char name[96];
    snprintf(name, sizeof name, "attn/%s/hd%d", attn_kernel_name(kernel), hd);
    if (!attn_kernel_supported(kernel, hd)) {
        tu_skip(name, "kernel not supported by this processor for this head size");
        return;
    }
    const attn_kernel_fn fn = attn_kernel_get(kernel, hd);
    const float scale = 1.0f / sqrtf((float)hd);
    cache c;
    cache_make(&c, hd, 1000 + (uint64_t)hd * 7 + (uint64_t)kernel);
    const size_t lds = (C_MAX + ATTN_KB - 1) / ATTN_KB * ATTN_KB;
    float *s = malloc(sizeof(float) * ATTN_RMAX * lds);
    float *out = malloc(sizeof(float) * ATTN_RMAX * hd), *one = malloc(sizeof(float) * hd);
    double *want = malloc(sizeof(double) * hd);
    double worst = 0;
    int worst_case = -1, worst_c = 0, bad_inv = -1;
    float got_w = 0;
    double want_w = 0;
    for (int t = 0; t < N_CASES && bad_inv < 0; t++) {
        const gcase *g = &cases[t];
        run_group(fn, &c, g->R, g->qi, g->np, out, s, lds, scale);
        for (int r = 0; r < g->R; r++) {
            ref_row(want, c.q + (size_t)g->qi[r] * hd, c.K, c.V, g->np[r], hd, scale);
            double mx = 1e-30, e = 0;
            int ec = 0;
            for (int i = 0; i < hd; i++) mx = fmax(mx, fabs(want[i]));
            for (int i = 0; i < hd; i++) {
                const double d = fabs(out[(size_t)r * hd + i] - want[i]);
                if (!(d <= e)) { e = d; ec = i; }
            }
            if (!(e / mx <= worst)) {
                worst = e / mx; worst_case = t; worst_c = r * 1000 + ec;
                got_w = out[(size_t)r * hd + ec]; want_w = want[ec];
            }
            /* the same row alone: bitwise */
            run_group(fn, &c, 1, &g->qi[r], &g->np[r], one, s, lds, scale);
            if (memcmp(one, out + (size_t)r * hd, sizeof(float) * hd) != 0) bad_inv = t * 10 + r;
        }
        if (g->R > 1 && bad_inv < 0) { /* reversed order: bitwise */
            int qi[ATTN_RMAX], np[ATTN_RMAX];
            float *rev = malloc(sizeof(float) * ATTN_RMAX * hd);
            for (int r = 0; r < g->R; r++) {
                qi[r] = g->qi[g->R - 1 - r];
                np[r] = g->np[g->R - 1 - r];
            }
            run_group(fn, &c, g->R, qi, np, rev, s, lds, scale);
            for (int r = 0; r < g->R; r++)
                if (memcmp(rev + (size_t)(g->R - 1 - r) * hd, out + (size_t)r * hd,
                           sizeof(float) * hd) != 0) bad_inv = t * 10 + r;
            free(rev);
        }
    }
    if (!(worst <= 1e-5))
        tu_fail(name, "case %d row %d col %d: %g vs reference %g (rel err %.3g > 1e-5)",
                worst_case, worst_c / 1000, worst_c % 1000, got_w, want_w, worst);
    else if (bad_inv >= 0)
        tu_fail(name, "case %d row %d: not bitwise equal to the row computed alone / in "
                "another order", bad_inv / 10, bad_inv % 10);
    else
        tu_okf("%s (worst rel err %.2e, limit 1e-5; rows bitwise equal alone and regrouped)",
               name, worst);

    /* NaN past the longest row of a group must not reach any output. */
    snprintf(name, sizeof name, "attn/%s/hd%d/ignores_past_np", attn_kernel_name(kernel), hd);
    const int qi[ATTN_RMAX] = {0, 1, 2, 3, 4, 5, 6, 7};
    const int np[ATTN_RMAX] = {37, 38, 39, 40, 1, 2, 17, 33};
    float *before = malloc(sizeof(float) * ATTN_RMAX * hd);
    run_group(fn, &c, ATTN_RMAX, qi, np, before, s, lds, scale);
    cache_poison(&c, 40);
    run_group(fn, &c, ATTN_RMAX, qi, np, out, s, lds, scale);
    if (memcmp(before, out, sizeof(float) * ATTN_RMAX * hd) != 0)
        tu_fail(name, "outputs changed when keys/values past np were NaN");
    else
        tu_ok(name);
    free(before);
    free(s); free(out); free(one); free(want);
    cache_free(&c);
}

/* GFLOP/s of the best kernel on a 512-token prompt of 16 heads (4 kv heads) of
 * 128, grouped as the engine does: 8 rows = 2 tokens x the 4 heads of a kv head. */
static void speed_note(void) {
    const int hd = 128, T = 512, Hkv = 4;
    const int k = attn_best_kernel(hd);
    const attn_kernel_fn fn = attn_kernel_get(k, hd);
    float *kt = calloc(attn_kt_floats(T, hd), sizeof(float));
    float *V = calloc((size_t)T * hd, sizeof(float)), *q = calloc(8 * hd, sizeof(float));
    float *o = malloc(sizeof(float) * 8 * hd), *s = malloc(sizeof(float) * 8 * T);
    tu_rng r = {5};
    tu_fill(&r, kt, attn_kt_floats(T, hd), 1.0f);
    tu_fill(&r, V, (size_t)T * hd, 1.0f);
    tu_fill(&r, q, (size_t)8 * hd, 1.0f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double flops = 0;
    for (int h = 0; h < Hkv; h++)
        for (int i = 0; i < T; i += 2) {
            attn_group g = {.R = 8};
            for (int x = 0; x < 8; x++) {
                g.q[x] = q + x * hd;
                g.o[x] = o + x * hd;
                g.np[x] = i + 1 + x / 4;
                flops += 4.0 * g.np[x] * hd;
            }
            fn(&g, kt, V, hd, 0.088f, s, (size_t)T);
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double t = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("# note attention kernel %s: one layer of a %d-token prompt (16 heads of %d) in "
           "%.2f ms on one thread, %.1f GFLOP/s\n", attn_kernel_name(k), T, hd, 1e3 * t,
           flops / t * 1e-9);
    free(kt); free(V); free(q); free(o); free(s);
}

/* ---------------------------------------------------------------- engine */

/* Logits [T, V] of tok in chunks (NULL: one call; sizes repeat cyclically). */
static int eval_chunks(moe_infer *m, const int32_t *tok, int T, const int *chunks, int nc,
                       float *out, moe_error *e) {
    const int V = moe_infer_get_info(m)->vocab_size;
    moe_infer_reset(m);
    for (int pos = 0, c = 0; pos < T; c++) {
        int n = chunks ? chunks[c % nc] : T;
        if (pos + n > T) n = T - pos;
        if (moe_infer_eval(m, tok + pos, n, pos, out + (size_t)pos * V, 1, e) != MOE_OK) return 0;
        pos += n;
    }
    return 1;
}

static void check_engine(const char *dir, const char *arch, const char *wtype, int d_model) {
    char name[96], path[512];
    snprintf(name, sizeof name, "engine/%s_%s_d%d/split_and_threads_bitwise", arch, wtype,
             d_model);
    snprintf(path, sizeof path, "%s/%s_%s_%d.gguf", dir, arch, wtype, d_model);
    moe_synth_config sc;
    moe_synth_config_default(&sc);
    sc.arch = arch;
    sc.wtype = wtype;
    sc.d_model = d_model;
    sc.seed = 3;
    moe_error e;
    if (moe_synth_model(path, &sc, NULL, &e) != MOE_OK) {
        tu_fail(name, "synth: %s", e.msg);
        return;
    }
    enum { T = 41, RUNS = 5 };
    /* threads, max_batch, chunk sizes */
    static const int ones[] = {1}, mixed[] = {3, 1, 16, 7, 2}, big[] = {20, 21};
    const struct { int nt, mb; const int *ch; int nc; } runs[RUNS] = {
        {1, 0, NULL, 0}, {1, 0, ones, 1}, {2, 0, mixed, 5}, {3, 5, NULL, 0}, {2, 0, big, 2}};
    float *lg[RUNS] = {NULL};
    int32_t tok[T];
    int ok = 1, V = 0;
    for (int r = 0; r < RUNS && ok; r++) {
        moe_infer_options o;
        moe_infer_options_default(&o);
        o.n_threads = runs[r].nt;
        o.max_batch = runs[r].mb;
        o.ctx_len = 64;
        moe_infer *mm;
        if (moe_infer_open(&mm, path, &o, &e) != MOE_OK) {
            tu_fail(name, "open: %s", e.msg);
            ok = 0;
            break;
        }
        V = moe_infer_get_info(mm)->vocab_size;
        if (r == 0) for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 7919 + 13) % V);
        lg[r] = malloc(sizeof(float) * (size_t)T * V);
        if (!eval_chunks(mm, tok, T, runs[r].ch, runs[r].nc, lg[r], &e)) {
            tu_fail(name, "run %d: %s", r, e.msg);
            ok = 0;
        }
        moe_infer_close(mm);
    }
    for (int r = 1; r < RUNS && ok; r++)
        for (size_t i = 0; i < (size_t)T * V; i++)
            if (memcmp(&lg[r][i], &lg[0][i], sizeof(float)) != 0) {
                tu_fail(name, "run %d (threads %d, max_batch %d, chunks %s) differs at token "
                        "%zu, logit %zu: %.9g vs %.9g (one batch, 1 thread)", r, runs[r].nt,
                        runs[r].mb, runs[r].ch ? "split" : "whole", i / V, i % V, lg[r][i],
                        lg[0][i]);
                ok = 0;
                break;
            }
    if (ok) tu_ok(name);
    for (int r = 0; r < RUNS; r++) free(lg[r]);
    unlink(path);
}

/* Experts in several waves (top_k raised after the open, so the scratch holds
 * fewer rows than a chunk has assignments) vs one wave (opened with that
 * top_k): logits bitwise equal. */
static void check_waves(const char *dir) {
    const char *name = "engine/mixtral_f32/expert_waves_bitwise";
    char path[512];
    snprintf(path, sizeof path, "%s/waves.gguf", dir);
    moe_synth_config sc;
    moe_synth_config_default(&sc);
    sc.arch = "mixtral";
    sc.n_experts = 6;
    sc.top_k = 1;
    sc.seed = 9;
    moe_error e;
    if (moe_synth_model(path, &sc, NULL, &e) != MOE_OK) {
        tu_fail(name, "synth: %s", e.msg);
        return;
    }
    enum { T = 30 };
    float *lg[2] = {NULL, NULL};
    int ok = 1, V = 0;
    int32_t tok[T];
    for (int r = 0; r < 2 && ok; r++) {
        moe_infer_options o;
        moe_infer_options_default(&o);
        o.ctx_len = 32;
        o.n_threads = 2;
        o.experts_per_token = r == 0 ? 5 : 0; /* run 1: opened with k = 1, then 5 */
        moe_infer *mm;
        if (moe_infer_open(&mm, path, &o, &e) != MOE_OK ||
            (r == 1 && moe_infer_set_top_k(mm, 5, &e) != MOE_OK)) {
            tu_fail(name, "open: %s", e.msg);
            ok = 0;
            break;
        }
        V = moe_infer_get_info(mm)->vocab_size;
        for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 31 + 5) % V);
        lg[r] = malloc(sizeof(float) * (size_t)T * V);
        ok = eval_chunks(mm, tok, T, NULL, 0, lg[r], &e);
        if (!ok) tu_fail(name, "eval: %s", e.msg);
        moe_infer_close(mm);
    }
    if (ok) {
        size_t i = 0;
        while (i < (size_t)T * V && memcmp(&lg[0][i], &lg[1][i], sizeof(float)) == 0) i++;
        if (i < (size_t)T * V)
            tu_fail(name, "token %zu logit %zu: %.9g (waves) vs %.9g (one wave)", i / V, i % V,
                    lg[1][i], lg[0][i]);
        else
            tu_ok(name);
    }
    free(lg[0]); free(lg[1]);
    unlink(path);
}

int main(void) {
    static const int hds[] = {6, 8, 16, 24, 64, 80, 128};
    for (int k = 0; k < ATTN_KERNEL_COUNT; k++)
        for (size_t i = 0; i < sizeof hds / sizeof hds[0]; i++) {
            if (k != ATTN_KERNEL_PORTABLE && hds[i] % 8 != 0) continue; /* never eligible */
            if (k == ATTN_KERNEL_AVX512 && hds[i] % 16 != 0) continue;
            check_kernel(k, hds[i]);
        }
    speed_note();

    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_infer_kernels_XXXXXX");
    if (!mkdtemp(dir)) { tu_fail("engine", "mkdtemp"); return tu_exit_code(); }
    printf("# attention kernel for head_dim 64: %s, 16: %s\n",
           attn_kernel_name(attn_best_kernel(64)), attn_kernel_name(attn_best_kernel(16)));
    check_engine(dir, "mixtral", "f32", 256);  /* hd 64, G = 2: groups span tokens */
    check_engine(dir, "mixtral", "q8_0", 256);
    check_engine(dir, "olmoe", "f32", 128);    /* hd 32, G = 1 */
    check_engine(dir, "llama", "q4_K", 0);     /* the preset (hd 16 x 4 for K types) */
    check_waves(dir);
    rmdir(dir);
    return tu_exit_code();
}
