/* test_synth.c: the random-model generator (src/tools/synth.c) and the
 * engine on every architecture x weight type.
 *
 * Generator: every family writes a file the GGUF reader accepts with the
 * family's keys, the weight count of synth_count, the same bytes for the same
 * spec and different ones for another seed; a tokenizer bpe_import_gguf
 * accepts; invalid specs rejected with a message; benchmark specs of ~1e9
 * weights.
 *
 * Engine, quantized types: for each architecture and each weight type (F32,
 * F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K) the model in that
 * type and its F32 twin (synth_dequantize of the same file: every weight
 * stored as its dequantized value) must give the same logits
 * up to the engine's activation rounding. With float weights the engine
 * multiplies by float activations: tolerance 1e-4 (F32: 0, the files are
 * identical; F16/BF16 measure 0 too). With block-quantized weights it
 * quantizes each activation row to 8 bits per block (Q8_0 / Q8_1 blocks of
 * 32, Q8_K of 256) with the scale amax/127: a rounding error of rms
 * amax/(127 sqrt(12)), 0.55% of the row's rms for Gaussian blocks of 32
 * (amax/rms ~2.4), ~0.7% for blocks of 256 and more for the heavy-tailed
 * SwiGLU products. Each of the ~8 products on the way from the embedding to
 * the logits (q, k, v, o, gate, up, down, output) adds such an independent
 * error, and attention and the SwiGLU pass them on, so the logits move by
 * ~1.5-3% rms: measured 1.2e-2 .. 3.7e-2 (normalised rms error
 * ||q - twin|| / ||twin||) over 7 seeds x 70 models (granitemoe ~2e-3: its
 * residual_scale shrinks every branch). Tolerance TOL_Q8ACT = 5e-2 on that
 * rms error: above the spread of activation rounding, far below what a wrong
 * block layout, scale or row offset gives (O(1)). The comparison runs with
 * experts_per_token = E so that the output is a smooth function of the
 * activations (no top-k boundary to cross); with the model's own k a token
 * whose k-th and (k+1)-th router scores are closer than the rounding error
 * legitimately picks another expert (and changes later tokens through
 * attention), so there the rows beyond the tolerance are only counted.
 * Under AddressSanitizer the architecture x type matrix is thinned to its
 * diagonal (each type once, each architecture at least once).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tools/synth.h"
#include "io/gguf.h"
#include "moe_infer.h"
#include "quant/quant.h"
#include "testutil.h"
#include "text/bpe.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static const char *const archs[] = {"llama", "mixtral", "qwen2moe", "qwen3moe",
                                    "olmoe", "deepseek", "granitemoe"};
#define N_ARCH 7

static char tmpdir[256];

/* Writes buf without fsync (synth_write is atomic and syncs: slow here). */
static int write_file(const char *path, const void *buf, size_t n, char *why, size_t cap) {
    FILE *f = fopen(path, "wb");
    int okw = f && fwrite(buf, 1, n, f) == n;
    if (f && fclose(f)) okw = 0;
    if (!okw) snprintf(why, cap, "writing %s: %s", path, strerror(errno));
    return okw;
}

/* The model of s in path_q and its F32 twin (synth_dequantize of the same
 * bytes) in path_d. */
static int write_twins(const synth_spec *s, const char *path_q, const char *path_d, char *why,
                       size_t cap) {
    void *bq = NULL, *bd = NULL;
    size_t nq = 0, nd = 0;
    moe_error err = {{0}};
    int okw = 0;
    if (synth_write_mem(s, &bq, &nq, &err) || synth_dequantize(bq, nq, &bd, &nd, &err)) {
        snprintf(why, cap, "synth: %s", err.msg);
    } else {
        okw = write_file(path_q, bq, nq, why, cap) && write_file(path_d, bd, nd, why, cap);
    }
    free(bq);
    free(bd);
    return okw;
}

/* ------------------------------------------------------------ generator */

static void test_families(void) {
    for (int a = 0; a < N_ARCH; a++) {
        char name[64];
        snprintf(name, sizeof name, "synth/%s/file", archs[a]);
        synth_spec s;
        synth_spec_default(&s, archs[a]);
        void *b1 = NULL, *b2 = NULL, *b3 = NULL;
        size_t n1 = 0, n2 = 0, n3 = 0;
        moe_error err = {{0}};
        if (synth_write_mem(&s, &b1, &n1, &err) || synth_write_mem(&s, &b2, &n2, &err)) {
            tu_fail(name, "synth_write_mem: %s", err.msg);
            free(b1); free(b2);
            continue;
        }
        s.seed = 2;
        if (synth_write_mem(&s, &b3, &n3, &err)) {
            tu_fail(name, "synth_write_mem (seed 2): %s", err.msg);
            free(b1); free(b2);
            continue;
        }
        s.seed = 1;
        gguf_ctx *g = NULL;
        int64_t total = 0, active = 0, in_file = 0;
        const char *got_arch = NULL;
        uint32_t nl = 0, ne = 0;
        char why[600] = "";
        if (gguf_open_memory(&g, b1, n1, name, &err)) {
            snprintf(why, sizeof why, "reader rejects it: %s", err.msg);
        } else if (synth_count(&s, &total, &active, &err)) {
            snprintf(why, sizeof why, "synth_count: %s", err.msg);
        } else {
            for (size_t i = 0; i < gguf_n_tensors(g); i++) in_file += gguf_tensor_at(g, i)->n_elem;
            char key[96];
            gguf_get_str(g, "general.architecture", &got_arch, NULL, NULL);
            snprintf(key, sizeof key, "%s.block_count", got_arch ? got_arch : "?");
            gguf_get_u32(g, key, &nl, NULL);
            snprintf(key, sizeof key, "%s.expert_count", got_arch ? got_arch : "?");
            gguf_get_u32(g, key, &ne, NULL);
            const char *want_arch = a <= 1 ? "llama" : archs[a];
            if (!got_arch || strcmp(got_arch, want_arch))
                snprintf(why, sizeof why, "general.architecture %s, want %s", got_arch ? got_arch : "(none)", want_arch);
            else if ((int)nl != s.n_layers || (int)ne != s.n_experts)
                snprintf(why, sizeof why, "block_count %u expert_count %u, want %d %d", nl, ne, s.n_layers, s.n_experts);
            else if (in_file != total)
                snprintf(why, sizeof why, "synth_count %lld, file holds %lld weights", (long long)total, (long long)in_file);
            else if (!(active > 0 && active < total))
                snprintf(why, sizeof why, "active %lld of %lld", (long long)active, (long long)total);
            else if (n1 != n2 || memcmp(b1, b2, n1))
                snprintf(why, sizeof why, "two writes of one spec differ");
            else if (n1 == n3 && !memcmp(b1, b3, n1))
                snprintf(why, sizeof why, "seeds 1 and 2 give the same file");
        }
        if (why[0]) tu_fail(name, "%s", why);
        else printf("ok %s (%zu bytes, %lld weights, %lld active)\n", name, n1, (long long)total, (long long)active);
        gguf_close(g);
        free(b1); free(b2); free(b3);
    }
}

/* The tokenizer of the file imports and round-trips text. */
static void test_tokenizer(void) {
    const char *name = "synth/tokenizer";
    synth_spec s;
    synth_spec_default(&s, "mixtral");
    void *buf = NULL;
    size_t n = 0;
    moe_error err = {{0}};
    gguf_ctx *g = NULL;
    bpe_tokenizer tok;
    memset(&tok, 0, sizeof tok);
    char why[600] = "";
    if (synth_write_mem(&s, &buf, &n, &err) || gguf_open_memory(&g, buf, n, name, &err)) {
        snprintf(why, sizeof why, "%s", err.msg);
    } else {
        uint64_t nt = 0, nm = 0, nty = 0;
        const void *toks = NULL, *merges = NULL, *types = NULL;
        uint32_t bos = 0, eos = 0;
        if (gguf_get_arr_of(g, "tokenizer.ggml.tokens", GGUF_VT_STR, &nt, &toks, &err) ||
            gguf_get_arr_of(g, "tokenizer.ggml.merges", GGUF_VT_STR, &nm, &merges, &err) ||
            gguf_get_arr_of(g, "tokenizer.ggml.token_type", GGUF_VT_I32, &nty, &types, &err) ||
            gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos, &err) ||
            gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos, &err)) {
            snprintf(why, sizeof why, "%s", err.msg);
        } else {
            const gguf_str *ts = toks, *ms = merges;
            const char **tp = malloc(nt * sizeof *tp), **mp = malloc((nm ? nm : 1) * sizeof *mp);
            size_t *tl = malloc(nt * sizeof *tl), *ml = malloc((nm ? nm : 1) * sizeof *ml);
            for (uint64_t i = 0; i < nt; i++) { tp[i] = ts[i].s; tl[i] = ts[i].n; }
            for (uint64_t i = 0; i < nm; i++) { mp[i] = ms[i].s; ml[i] = ms[i].n; }
            if (nt != (uint64_t)s.vocab_size || nty != nt || nm < 20)
                snprintf(why, sizeof why, "%llu tokens, %llu types, %llu merges (want %d tokens, >= 20 merges)",
                         (unsigned long long)nt, (unsigned long long)nty, (unsigned long long)nm, s.vocab_size);
            else if (bpe_import_gguf(&tok, tp, tl, types, nt, mp, ml, nm, (int32_t)bos, (int32_t)eos, &err))
                snprintf(why, sizeof why, "bpe_import_gguf: %s", err.msg);
            else {
                const char *text = "The router of the model picks experts.";
                int32_t ids[128];
                uint8_t back[128];
                size_t ni = 0, nb = 0;
                if (bpe_encode(&tok, (const uint8_t *)text, strlen(text), ids, 128, &ni, &err) ||
                    bpe_decode(&tok, ids, ni, 0, back, sizeof back, &nb, &err))
                    snprintf(why, sizeof why, "encode/decode: %s", err.msg);
                else if (nb != strlen(text) || memcmp(back, text, nb))
                    snprintf(why, sizeof why, "round trip gives \"%.*s\"", (int)nb, back);
                else if (ni >= strlen(text))
                    snprintf(why, sizeof why, "no merge used (%zu ids for %zu bytes)", ni, strlen(text));
            }
            free(tp); free(mp); free(tl); free(ml);
        }
    }
    if (why[0]) tu_fail(name, "%s", why);
    else tu_ok(name);
    bpe_free(&tok);
    gguf_close(g);

    /* the engine's tokenizer reads it too (what the CLI uses) */
    name = "synth/vocab_load";
    char path[320];
    snprintf(path, sizeof path, "%s/vocab.gguf", tmpdir);
    why[0] = '\0';
    moe_vocab *v = NULL;
    if (!buf || !write_file(path, buf, n, why, sizeof why)) {
        if (!why[0]) snprintf(why, sizeof why, "no file");
    } else if (moe_vocab_load(&v, path, &err)) {
        snprintf(why, sizeof why, "moe_vocab_load: %s", err.msg);
    } else {
        const char *text = "Experts route tokens.";
        int32_t ids[64];
        size_t ni = 0;
        char out[128] = "", piece[64];
        size_t used = 0;
        if (moe_vocab_size(v) != s.vocab_size || moe_vocab_bos(v) < 0 || moe_vocab_eos(v) < 0)
            snprintf(why, sizeof why, "size %d (want %d), bos %d, eos %d", moe_vocab_size(v), s.vocab_size,
                     moe_vocab_bos(v), moe_vocab_eos(v));
        else if (moe_vocab_encode(v, text, strlen(text), 1, 0, ids, 64, &ni, &err))
            snprintf(why, sizeof why, "encode: %s", err.msg);
        else if (ni < 2 || ids[0] != moe_vocab_bos(v))
            snprintf(why, sizeof why, "encode gave %zu ids, first %d (bos %d)", ni, ni ? ids[0] : -1,
                     moe_vocab_bos(v));
        else {
            for (size_t i = 0; i < ni; i++) {
                size_t len = 0;
                const char *p = moe_vocab_piece(v, ids[i], 0, piece, sizeof piece, &len);
                if (p && used + len < sizeof out) { memcpy(out + used, p, len); used += len; }
            }
            out[used] = '\0';
            if (strcmp(out, text)) snprintf(why, sizeof why, "decodes to \"%s\"", out);
        }
        moe_vocab_free(v);
    }
    unlink(path);
    if (why[0]) tu_fail(name, "%s", why);
    else tu_ok(name);
    free(buf);
}

/* synth_dequantize of a quantized image is byte for byte the image that
 * store_dequantized writes (the same values, keys and order). */
static void test_dequantize(void) {
    const uint32_t types[] = {GGUF_T_Q4_0, GGUF_T_F16, GGUF_T_Q6_K};
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        synth_spec s;
        synth_spec_default(&s, "qwen2moe");
        if (i == 2) synth_spec_scale_dims(&s, 4);
        s.n_layers = 1;
        s.wtype = types[i];
        void *bq = NULL, *bd = NULL, *bs = NULL;
        size_t nq = 0, nd = 0, ns = 0;
        moe_error err = {{0}};
        if (synth_write_mem(&s, &bq, &nq, &err) || synth_dequantize(bq, nq, &bd, &nd, &err)) {
            tu_fail("synth/dequantize", "%s: %s", gguf_type_name(types[i]), err.msg);
            bad = 1;
        } else {
            s.store_dequantized = 1;
            if (synth_write_mem(&s, &bs, &ns, &err) || ns != nd || memcmp(bs, bd, nd)) {
                tu_fail("synth/dequantize", "%s: synth_dequantize gives %zu bytes, store_dequantized "
                        "%zu (%s)", gguf_type_name(types[i]), nd, ns, ns == nd ? "contents differ" : err.msg);
                bad = 1;
            }
        }
        free(bq); free(bd); free(bs);
    }
    if (!bad) tu_ok("synth/dequantize (== store_dequantized for Q4_0, F16, Q6_K)");
}

static void test_invalid_specs(void) {
    struct { const char *what; const char *arch; int field; } cases[] = {
        {"unknown arch", "gpt5", 0},          {"top_k > E", "mixtral", 1},
        {"heads % kv", "mixtral", 2},         {"K type on d 64", "qwen2moe", 3},
        {"vocab < 258 with tokenizer", "olmoe", 4}, {"olmoe kv != heads", "olmoe", 5},
        {"dense_first = n_layers", "deepseek", 6}, {"odd head_dim", "qwen3moe", 7},
        {"experts on llama", "llama", 8},     {"Q8_K weights", "mixtral", 9},
        {"granite scale 0", "granitemoe", 10}, {"n_layers 0", "mixtral", 11},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        synth_spec s;
        synth_spec_default(&s, cases[i].arch);
        s.arch = cases[i].arch;
        switch (cases[i].field) {
        case 1: s.top_k = s.n_experts + 1; break;
        case 2: s.n_kv_heads = 3; break;
        case 3: s.wtype = GGUF_T_Q4_K; break;
        case 4: s.vocab_size = 200; break;
        case 5: s.n_kv_heads = 2; break;
        case 6: s.n_dense_first = s.n_layers; break;
        case 7: s.head_dim = 15; break;
        case 8: s.n_experts = 4; s.top_k = 2; break;
        case 9: s.wtype = GGUF_T_Q8_K; break;
        case 10: s.logit_scale = 0; break;
        case 11: s.n_layers = 0; break;
        default: break;
        }
        void *buf = NULL;
        size_t n = 0;
        moe_error err = {{0}};
        moe_status st = synth_write_mem(&s, &buf, &n, &err);
        if (st == MOE_OK || !err.msg[0] || buf) {
            tu_fail("synth/invalid_specs", "%s: status %d, message \"%s\"", cases[i].what, (int)st, err.msg);
            bad = 1;
        }
        free(buf);
    }
    if (!bad) tu_ok("synth/invalid_specs (12 kinds rejected with a message)");
}

static void test_bench_counts(void) {
    int bad = 0;
    for (int a = 0; a < N_ARCH; a++) {
        synth_spec s;
        synth_spec_bench(&s, archs[a]);
        int64_t tot = 0, act = 0;
        moe_error err = {{0}};
        if (synth_count(&s, &tot, &act, &err) || tot < 900000000LL || tot > 1100000000LL) {
            tu_fail("synth/bench_size", "%s: %lld weights (%s)", archs[a], (long long)tot, err.msg);
            bad = 1;
        } else {
            printf("# note bench %-10s %2d layers, %.3fe9 weights, %.3fe9 active\n", archs[a],
                   s.n_layers, tot * 1e-9, act * 1e-9);
        }
    }
    if (!bad) tu_ok("synth/bench_size (every family 0.9e9 .. 1.1e9 weights)");
}

/* ------------------------------------------------------ engine: types */

/* ||a - b|| / ||b|| over n values (NaN: infinite). */
static double rms_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    double r = sqrt(num / (den > 1e-300 ? den : 1e-300));
    return r == r ? r : INFINITY;
}

static const uint32_t wtypes[] = {GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q8_0, GGUF_T_Q4_0,
                                  GGUF_T_Q4_1, GGUF_T_Q5_0, GGUF_T_Q5_1, GGUF_T_Q2_K, GGUF_T_Q3_K,
                                  GGUF_T_Q4_K, GGUF_T_Q5_K, GGUF_T_Q6_K};
#define N_WT 13
#define TQ 8 /* tokens */
#define TOL_Q8ACT 5e-2 /* rms error with 8-bit activations; see the top */

/* Logits [TQ, V] of path with k experts per token (0: the model's). */
static int run_engine(const char *path, int k, float *logits, int *V, char *why, size_t cap) {
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.ctx_len = 32;
    o.experts_per_token = k;
    o.n_threads = 1; /* tiny products: threads would only add barriers */
    moe_infer *m = NULL;
    moe_error err = {{0}};
    if (moe_infer_open(&m, path, &o, &err)) {
        snprintf(why, cap, "moe_infer_open(%s): %s", path, err.msg);
        return 0;
    }
    *V = moe_infer_get_info(m)->vocab_size;
    int32_t toks[TQ];
    tu_rng r = {77};
    for (int i = 0; i < TQ; i++) toks[i] = (int32_t)(tu_next(&r) % (uint64_t)*V);
    moe_status st = moe_infer_eval(m, toks, TQ, 0, logits, 1, &err);
    if (st) snprintf(why, cap, "moe_infer_eval(%s): %s", path, err.msg);
    moe_infer_close(m);
    return st == MOE_OK;
}

static void test_types_vs_twin(void) {
    double worst_rms[N_WT] = {0}, worst_max[N_WT] = {0}, worst_own[N_WT] = {0};
    int rows_off[N_WT] = {0}, ran[N_WT] = {0};
    for (int a = 0; a < N_ARCH; a++) {
        for (int w = 0; w < N_WT; w++) {
            if (SANITIZED && w % N_ARCH != a) continue;
            const char *tn = gguf_type_name(wtypes[w]);
            char name[96], why[700] = "", pq[320], pd[320];
            snprintf(name, sizeof name, "infer_types/%s/%s", archs[a], tn);
            synth_spec s;
            synth_spec_default(&s, archs[a]); /* widths multiple of 64 */
            if (gguf_type_block_size(wtypes[w]) == 256) {
                synth_spec_scale_dims(&s, 4); /* multiples of 256 */
                s.n_layers = archs[a][0] == 'd' ? 2 : 1; /* deepseek: dense + MoE */
                if (s.n_experts) { /* K quantizing is slow: fewer, smaller matrices */
                    s.n_experts = 2;
                    s.top_k = 1;
                }
            }
            s.with_tokenizer = 0;
            s.vocab_size = 96;
            s.seed = 1000 + 13 * (uint64_t)a + (uint64_t)w;
            s.wtype = wtypes[w];
            snprintf(pq, sizeof pq, "%s/q.gguf", tmpdir);
            snprintf(pd, sizeof pd, "%s/d.gguf", tmpdir);
            if (!write_twins(&s, pq, pd, why, sizeof why)) { tu_fail(name, "%s", why); continue; }
            size_t nl = (size_t)TQ * (size_t)s.vocab_size;
            float *lq = malloc(nl * sizeof *lq), *ld = malloc(nl * sizeof *ld);
            float *oq = malloc(nl * sizeof *oq), *od = malloc(nl * sizeof *od);
            int V = 0, E = s.n_experts;
            int float_w = wtypes[w] == GGUF_T_F32 || wtypes[w] == GGUF_T_F16 || wtypes[w] == GGUF_T_BF16;
            double tol = wtypes[w] == GGUF_T_F32 ? 0.0 : float_w ? 1e-4 : TOL_Q8ACT;
            if (run_engine(pq, E, lq, &V, why, sizeof why) && run_engine(pd, E, ld, &V, why, sizeof why) &&
                run_engine(pq, 0, oq, &V, why, sizeof why) && run_engine(pd, 0, od, &V, why, sizeof why)) {
                size_t wi = 0;
                double emax = tu_rel_err(lq, ld, nl, &wi), e = rms_rel_err(lq, ld, nl);
                /* own k: rows beyond the tolerance (routing may flip): counted only */
                double own = 0;
                int off = 0;
                for (int t = 0; t < TQ; t++) {
                    double r = rms_rel_err(oq + (size_t)t * V, od + (size_t)t * V, (size_t)V);
                    if (!(r <= tol)) off++;
                    if (!(r <= own)) own = r;
                }
                if (!(e <= worst_rms[w])) worst_rms[w] = e;
                if (!(emax <= worst_max[w])) worst_max[w] = emax;
                if (!(own <= worst_own[w])) worst_own[w] = own;
                rows_off[w] += off;
                ran[w]++;
                if (!(e <= tol))
                    tu_fail(name, "experts_per_token = E: rms err %.3e > %.0e (max err %.2e at [%zu, %zu]: "
                            "%s %.7g, F32 twin %.7g)", e, tol, emax, wi / (size_t)V, wi % (size_t)V, tn,
                            lq[wi], ld[wi]);
                else
                    printf("ok %s (rms err %.1e, max %.1e; own k: %d/%d rows beyond)\n", name, e, emax,
                           off, TQ);
            } else {
                tu_fail(name, "%s", why);
            }
            free(lq); free(ld); free(oq); free(od);
            unlink(pq);
            unlink(pd);
        }
    }
    for (int w = 0; w < N_WT; w++)
        if (ran[w])
            printf("# note %-5s vs F32 twin (%d models): worst rms err %.2e, worst max err %.2e; own k: "
                   "%d of %d rows beyond (routing flips), worst row %.2e\n", gguf_type_name(wtypes[w]),
                   ran[w], worst_rms[w], worst_max[w], rows_off[w], ran[w] * TQ, worst_own[w]);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moe_synth_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tu_fail("synth/setup", "mkdtemp: %s", strerror(errno));
        return tu_exit_code();
    }
    test_families();
    test_tokenizer();
    test_invalid_specs();
    test_dequantize();
    test_bench_counts();
    test_types_vs_twin();
    rmdir(tmpdir);
    return tu_exit_code();
}
