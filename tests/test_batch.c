/* test_batch.c: moe_infer_batch_eval against the single-stream engine.
 *
 * Several sequences of different lengths run through one context in mixed
 * steps (a prompt in chunks, whole prompts, decode tokens, all in one step,
 * one sequence with its own experts per token); each sequence's logits must
 * equal those of moe_infer_eval over the same tokens on a context of one
 * sequence (<= 1e-6 relative; they are in fact bitwise equal) and its greedy
 * tokens must be the same, for small synthetic models of several
 * architectures in F32 and Q4_K. Plus: a batch that breaks the rules is
 * refused with nothing run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe_infer.h"
#include "testutil.h"

static char tmpdir[256];

#define NSEQ 4
#define MAXT 40

typedef struct seqstate {
    int32_t tok[MAXT];
    int n;               /* tokens given so far */
    int prompt;          /* prompt length */
    float *lg;           /* [MAXT, V] logits from the batch, by position */
    unsigned char has[MAXT];
} seqstate;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* One mixed run on model file path; returns 0 when every check passed. */
static void run_case(const char *name, const char *arch, const char *wtype) {
    char path[512], tn[128];
    snprintf(path, sizeof path, "%s/%s_%s.gguf", tmpdir, arch, wtype);
    snprintf(tn, sizeof tn, "batch_%s", name);
    moe_error err = {0};
    moe_synth_config sc;
    moe_synth_config_default(&sc);
    sc.arch = arch;
    sc.wtype = wtype;
    sc.seed = 7;
    if (moe_synth_model(path, &sc, NULL, &err) != MOE_OK) {
        tu_fail(tn, "synth: %s", err.msg);
        return;
    }
    moe_infer_model *mdl = NULL;
    moe_infer *b = NULL, *one = NULL;
    if (moe_infer_model_open(&mdl, path, &err) != MOE_OK) { tu_fail(tn, "open: %s", err.msg); return; }
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.ctx_len = 64;
    o.max_batch = 48;
    o.n_seq = NSEQ;
    o.n_threads = 2;
    if (moe_infer_create(&b, mdl, &o, &err) != MOE_OK) { tu_fail(tn, "create: %s", err.msg); goto out; }
    o.n_seq = 1;
    if (moe_infer_create(&one, mdl, &o, &err) != MOE_OK) { tu_fail(tn, "create: %s", err.msg); goto out; }
    const moe_infer_info *info = moe_infer_get_info(b);
    const int V = info->vocab_size, E = info->n_experts;
    const int k3 = E > 0 ? 1 : 0; /* sequence 3 runs with one expert per token */
    if (k3 && moe_infer_seq_set_top_k(b, 3, k3, &err) != MOE_OK) { tu_fail(tn, "%s", err.msg); goto out; }

    seqstate s[NSEQ];
    const int plen[NSEQ] = {5, 9, 3, 12};
    tu_rng r = {42};
    for (int q = 0; q < NSEQ; q++) {
        memset(&s[q], 0, sizeof s[q]);
        s[q].prompt = plen[q];
        s[q].lg = calloc((size_t)MAXT * V, sizeof(float));
        for (int i = 0; i < plen[q]; i++) s[q].tok[i] = (int32_t)(tu_next(&r) % (uint64_t)V);
    }
    /* the steps: how many tokens each sequence feeds (0: sits out); after
       its prompt a sequence feeds its greedy token */
    const int plan[][NSEQ] = {{5, 4, 3, 0}, {1, 5, 1, 12}, {1, 1, 0, 1}, {1, 1, 1, 1},
                              {0, 1, 1, 1}, {1, 1, 1, 1}, {1, 0, 1, 1}};
    const int nsteps = (int)(sizeof plan / sizeof plan[0]);
    int32_t tok[64], sq[64], ps[64];
    int8_t want[64];
    float *lg = malloc(sizeof(float) * (size_t)64 * V);
    for (int st = 0; st < nsteps; st++) {
        int n = 0;
        for (int q = 0; q < NSEQ; q++)
            for (int j = 0; j < plan[st][q]; j++) {
                const int p = s[q].n + j;
                tok[n] = s[q].tok[p];
                sq[n] = q;
                ps[n] = p;
                want[n] = j + 1 == plan[st][q] || (st == 1 && q == 3); /* all rows of seq 3's prompt */
                n++;
            }
        if (moe_infer_batch_eval(b, tok, sq, ps, want, n, lg, &err) != MOE_OK) {
            tu_fail(tn, "step %d: %s", st, err.msg);
            goto done;
        }
        int o_i = 0;
        for (int i = 0; i < n; i++) {
            if (!want[i]) continue;
            const int q = sq[i];
            memcpy(s[q].lg + (size_t)ps[i] * V, lg + (size_t)o_i * V, sizeof(float) * V);
            s[q].has[ps[i]] = 1;
            o_i++;
        }
        for (int q = 0; q < NSEQ; q++) {
            s[q].n += plan[st][q];
            if (plan[st][q] && s[q].n >= s[q].prompt) /* the next token: greedy */
                s[q].tok[s[q].n] = argmax(s[q].lg + (size_t)(s[q].n - 1) * V, V);
            if (moe_infer_seq_len(b, q) != s[q].n) {
                tu_fail(tn, "step %d: seq %d holds %d positions, expected %d", st, q,
                        moe_infer_seq_len(b, q), s[q].n);
                goto done;
            }
        }
    }
    /* the single-stream reference: each sequence's tokens in one call */
    double worst = 0;
    int checked = 0;
    for (int q = 0; q < NSEQ; q++) {
        moe_infer_reset(one);
        if (E > 0 && moe_infer_set_top_k(one, q == 3 ? k3 : info->top_k, &err) != MOE_OK) {
            tu_fail(tn, "%s", err.msg);
            goto done;
        }
        float *ref = malloc(sizeof(float) * (size_t)s[q].n * V);
        if (moe_infer_eval(one, s[q].tok, s[q].n, 0, ref, 1, &err) != MOE_OK) {
            tu_fail(tn, "single-stream eval: %s", err.msg);
            free(ref);
            goto done;
        }
        for (int p = 0; p < s[q].n; p++) {
            if (!s[q].has[p]) continue;
            size_t wi;
            const double e = tu_rel_err(s[q].lg + (size_t)p * V, ref + (size_t)p * V, V, &wi);
            if (e > worst) worst = e;
            checked++;
            if (e > 1e-6 || argmax(s[q].lg + (size_t)p * V, V) != argmax(ref + (size_t)p * V, V)) {
                tu_fail(tn, "seq %d pos %d: rel err %.3g at %zu (batch %g, single %g)", q, p, e,
                        wi, s[q].lg[(size_t)p * V + wi], ref[(size_t)p * V + wi]);
                free(ref);
                goto done;
            }
        }
        free(ref);
    }
    tu_okf("%s (%d logit rows of %d sequences, worst rel err %.3g)", tn, checked, NSEQ, worst);
done:
    free(lg);
    for (int q = 0; q < NSEQ; q++) free(s[q].lg);
out:
    moe_infer_close(b);
    moe_infer_close(one);
    moe_infer_model_close(mdl);
}

/* Batches that break the rules are refused and leave the sequences alone. */
static void test_refusals(void) {
    const char *tn = "batch_refusals";
    char path[512];
    snprintf(path, sizeof path, "%s/mixtral_f32.gguf", tmpdir);
    moe_error err = {0};
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.ctx_len = 16;
    o.max_batch = 8;
    o.n_seq = 2;
    moe_infer *b = NULL;
    if (moe_infer_open(&b, path, &o, &err) != MOE_OK) { tu_fail(tn, "open: %s", err.msg); return; }
    const int32_t t[4] = {1, 2, 3, 4};
    const int32_t s_split[4] = {0, 1, 0, 1}, s_ok[4] = {0, 0, 1, 1}, s_bad[4] = {0, 0, 2, 2};
    const int32_t p_ok[4] = {0, 1, 0, 1}, p_gap[4] = {0, 2, 0, 1}, p_far[4] = {1, 2, 0, 1};
    struct { const int32_t *s, *p; int n; const char *what; } bad[] = {
        {s_split, p_ok, 4, "split"}, {s_bad, p_ok, 4, "seq range"}, {s_ok, p_gap, 4, "gap"},
        {s_ok, p_far, 4, "beyond length"}, {s_ok, p_ok, 9, "n > max_batch"}};
    int32_t t9[9] = {0}, s9[9] = {0}, p9[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int big = bad[i].n == 9;
        if (moe_infer_batch_eval(b, big ? t9 : t, big ? s9 : bad[i].s, big ? p9 : bad[i].p, NULL,
                                 bad[i].n, NULL, &err) != MOE_ERR_ARG) {
            tu_fail(tn, "%s accepted", bad[i].what);
            moe_infer_close(b);
            return;
        }
        if (moe_infer_seq_len(b, 0) != 0 || moe_infer_seq_len(b, 1) != 0) {
            tu_fail(tn, "%s changed a sequence", bad[i].what);
            moe_infer_close(b);
            return;
        }
    }
    if (moe_infer_batch_eval(b, t, s_ok, p_ok, NULL, 4, NULL, &err) != MOE_OK ||
        moe_infer_seq_len(b, 1) != 2) {
        tu_fail(tn, "a valid batch: %s", err.msg);
    } else {
        tu_ok(tn);
    }
    moe_infer_close(b);
}

/* moe_infer_get_times: the products' times are parts of the evaluation's,
 * counted per forward pass, and a reset clears them (consistency only, no
 * speed asserted). */
static void test_times(void) {
    const char *tn = "batch_times";
    char path[512];
    snprintf(path, sizeof path, "%s/mixtral_q4_K.gguf", tmpdir);
    moe_error err = {0};
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.ctx_len = 16;
    o.max_batch = 8;
    o.n_seq = 4;
    moe_infer *b = NULL;
    if (moe_infer_open(&b, path, &o, &err) != MOE_OK) { tu_fail(tn, "open: %s", err.msg); return; }
    const int32_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8}, s[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    const int32_t p[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    moe_infer_times a, z;
    if (moe_infer_batch_eval(b, t, s, p, NULL, 8, NULL, &err) != MOE_OK) {
        tu_fail(tn, "eval: %s", err.msg);
    } else {
        moe_infer_get_times(b, &a);
        moe_infer_reset(b);
        moe_infer_get_times(b, &z);
        if (a.n_evals != 1 || !(a.eval_s > 0) || !(a.expert_mm_s > 0) || !(a.other_mm_s > 0) ||
            a.expert_mm_s + a.other_mm_s > a.eval_s)
            tu_fail(tn, "evals %lld, eval %g s, expert products %g s, other %g s",
                    (long long)a.n_evals, a.eval_s, a.expert_mm_s, a.other_mm_s);
        else if (z.n_evals != 0 || z.eval_s != 0 || z.expert_mm_s != 0 || z.other_mm_s != 0)
            tu_fail(tn, "not cleared by moe_infer_reset");
        else
            tu_ok(tn);
    }
    moe_infer_close(b);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_batch_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        tu_fail("batch_tmpdir", "mkdtemp");
        return 1;
    }
    run_case("mixtral_f32", "mixtral", "f32");
    run_case("qwen2moe_f32", "qwen2moe", "f32");
    run_case("deepseek_f32", "deepseek", "f32");
    run_case("olmoe_f32", "olmoe", "f32");
    run_case("llama_f32", "llama", "f32");
    run_case("mixtral_q4_K", "mixtral", "q4_K");
    run_case("qwen2moe_q8_0", "qwen2moe", "q8_0");
    test_refusals();
    test_times();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmpdir);
    return tu_exit_code();
}
