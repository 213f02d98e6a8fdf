/* test_eval.c: moe_infer_perplexity (src/infer/eval.c), the library part of
 * `moe eval`.
 *  1. The trainer's validation loss (moe_trainer_eval: windows of ctx
 *     tokens, targets shifted by one, dropless) equals the mean nll of
 *     moe_infer_perplexity with stride = ctx on the same validation tokens,
 *     from model.gguf alone (relative 1e-5).
 *  2. Each scored target's nll (sliding with stride < ctx, and llama.cpp's
 *     scoring) equals a brute-force evaluation of exactly the context that
 *     scoring gives it (fresh cache, last logits, log-softmax in double);
 *     every target scored once (sliding) / the second half of each chunk
 *     (llama), BOS in front of every chunk when the stream starts with it.
 *  3. The result does not depend on the batch size (1e-12 relative).
 *  4. Bad arguments are refused with a message.
 */
#include "testutil.h"
#include "moe.h"
#include "moe_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -ln softmax(l)[tok], double throughout (the reference). */
static double ref_nll(const float *l, int V, int tok) {
    double mx = l[0], s = 0;
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) s += exp((double)l[i] - mx);
    return -((double)l[tok] - mx - log(s));
}

/* nll of tokens[t] given ctx[0, n) evaluated from an empty cache. */
static double brute(moe_infer *m, const int32_t *ctx, int n, int tok, float *lg, int V) {
    moe_error err;
    moe_infer_reset(m);
    if (moe_infer_eval(m, ctx, n, 0, lg, 0, &err) != MOE_OK) return NAN;
    return ref_nll(lg, V, tok);
}

static char *make_text(size_t *n) {
    /* one paragraph (no blank line), so the trainer tokenizes it in one piece */
    static const char *words[] = {"the", "router", "sends", "each", "token", "to", "two", "experts", "and",
                                  "mixes", "their", "outputs", "with", "weights", "12", "345,", "café", "code:",
                                  "x", "=", "f(y);", "then", "a", "model", "learns"};
    const size_t nw = sizeof words / sizeof words[0];
    size_t cap = 60000, len = 0;
    char *t = malloc(cap);
    unsigned s = 7;
    while (t && len + 32 < cap) {
        s = s * 1103515245u + 12345u;
        const char *w = words[(s >> 16) % nw];
        len += (size_t)snprintf(t + len, cap - len, "%s%s", w, (s >> 8) % 11 == 0 ? ".\n" : " ");
    }
    *n = len;
    return t;
}

int main(void) {
    moe_error err;
    char dir[128], path[160], data[160];
    snprintf(dir, sizeof dir, "/tmp/moe-test-eval-%d", (int)getpid());
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    snprintf(data, sizeof data, "/tmp/moe-test-eval-%d.txt", (int)getpid());
    size_t tn;
    char *text = make_text(&tn);
    FILE *f = fopen(data, "wb");
    if (!text || !f) { tu_fail("test_eval", "setup"); return 1; }
    fwrite(text, 1, tn, f);
    fclose(f);

    moe_train_config c;
    moe_train_config_default(&c);
    c.model.vocab_size = 300;
    c.model.d_model = 48;
    c.model.n_layers = 2;
    c.model.n_heads = 4;
    c.model.n_kv_heads = 2;
    c.model.ctx_len = 32;
    c.model.d_ff = 64;
    c.model.moe.n_experts = 4;
    c.model.moe.top_k = 2;
    c.model.moe.d_ff = 48;
    c.model.n_threads = 2;
    c.batch = 1;
    c.steps = 3;
    c.eval_every = 0;
    c.eval_batches = 0;
    c.val_fraction = 0.1f;
    const char *srcs[1] = {data};
    moe_trainer *tr = NULL;
    moe_infer *m = NULL;
    int32_t *tok = NULL;
    float *lg = NULL;
    double *nll = NULL, *nll2 = NULL;
    if (moe_trainer_create(&tr, &c, srcs, 1, dir, &err) != MOE_OK) { tu_fail("trainer", "%s", err.msg); goto done; }
    for (int s = 0; s < 3; s++)
        if (moe_trainer_step(tr, NULL, &err) != MOE_OK) { tu_fail("trainer step", "%s", err.msg); goto done; }
    float val_loss;
    if (moe_trainer_eval(tr, &val_loss, &err) != MOE_OK || moe_trainer_save(tr, &err) != MOE_OK) {
        tu_fail("trainer eval/save", "%s", err.msg);
        goto done;
    }
    /* the same tokens as the trainer: one piece, the last floor(n * f) for validation */
    const moe_tokenizer *tk = moe_trainer_tokenizer(tr);
    tok = malloc(sizeof(int32_t) * tn);
    size_t n = 0;
    if (!tok || moe_tokenizer_encode(tk, text, tn, tok, tn, &n, &err) != MOE_OK) { tu_fail("encode", "%s", err.msg); goto done; }
    moe_data_info di = moe_trainer_data_info(tr);
    if ((int64_t)n != di.train_tokens + di.val_tokens) {
        tu_fail("tokens", "%zu tokens here, the trainer has %lld + %lld", n, (long long)di.train_tokens,
                (long long)di.val_tokens);
        goto done;
    }
    const int T = c.model.ctx_len;
    const size_t n_val = (size_t)((double)n * (double)c.val_fraction);
    const int32_t *val = tok + (n - n_val);
    const int64_t W = (int64_t)(n_val - 1) / T;

    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = 2;
    if (moe_infer_open(&m, path, &io, &err) != MOE_OK) { tu_fail("open", "%s", err.msg); goto done; }
    const int V = moe_infer_get_info(m)->vocab_size;
    lg = malloc(sizeof(float) * (size_t)V);
    nll = malloc(sizeof(double) * n);
    nll2 = malloc(sizeof(double) * n);
    if (!lg || !nll || !nll2) goto done;

    /* 1. trainer validation = moe_infer_perplexity, stride = ctx */
    moe_ppl_options po;
    moe_ppl_options_default(&po);
    po.ctx = T;
    moe_ppl_result r;
    if (moe_infer_perplexity(m, val, W * T + 1, &po, NULL, &r, &err) != MOE_OK) {
        tu_fail("perplexity = trainer validation", "%s", err.msg);
    } else {
        const double mean = r.nll / (double)r.n_scored, rel = fabs(mean - val_loss) / fabs(val_loss);
        if (r.n_scored != W * T || r.n_windows != W || !(rel <= 1e-5))
            tu_fail("perplexity = trainer validation", "engine %.9g over %lld targets in %lld windows, trainer %.9g "
                    "over %lld windows of %d (rel %.3g)", mean, (long long)r.n_scored, (long long)r.n_windows,
                    (double)val_loss, (long long)W, T, rel);
        else tu_okf("perplexity = trainer validation (%lld windows of %d tokens: %.7f vs %.7f, rel %.2g)",
                    (long long)W, T, mean, (double)val_loss, rel);
    }

    /* 2. per-target nll vs brute force, sliding with stride < ctx and llama */
    const int64_t N = 150;
    for (int mode = 0; mode < 2; mode++) {
        const char *name = mode ? "llama scoring: each target's context, second halves" :
                                  "sliding stride 12, ctx 32: each target scored once with its window's context";
        moe_ppl_options_default(&po);
        po.ctx = T;
        po.batch = 5;
        int32_t in[160];
        memcpy(in, tok, sizeof(int32_t) * (size_t)N);
        const int bos = moe_vocab_bos(moe_infer_vocab(m));
        if (mode) { po.scoring = MOE_PPL_LLAMA; in[0] = bos; }
        else po.stride = 12;
        if (moe_infer_perplexity(m, in, N, &po, nll, &r, &err) != MOE_OK) { tu_fail(name, "%s", err.msg); continue; }
        double worst = 0, sum = 0;
        int64_t cnt = 0, bad_t = -1;
        for (int64_t t = 1; t < N; t++) {
            int64_t s0 = -1;  /* start of the window that scores t, -1: none */
            if (mode) {
                const int64_t k = (t - 1) / T, j = (t - 1) % T;
                if (k < N / T && j >= T / 2 && j <= T - 2) s0 = k * T;
            } else {
                /* window k = max(0, ceil((t - T) / 12)) is the first whose positions reach t */
                int64_t k = t - T <= 0 ? 0 : (t - T + 11) / 12;
                s0 = k * 12;
            }
            if (s0 < 0) {
                if (!isnan(nll[t])) { bad_t = t; worst = INFINITY; }
                continue;
            }
            int32_t ctxb[64];
            const int len = (int)(t - s0);
            memcpy(ctxb, in + s0, sizeof(int32_t) * (size_t)len);
            if (mode && bos >= 0) ctxb[0] = bos;
            const double b = brute(m, ctxb, len, in[t], lg, V);
            const double e = fabs(nll[t] - b) / fmax(1.0, fabs(b));
            if (!(e <= worst)) { worst = e; bad_t = t; }
            sum += b;
            cnt++;
        }
        if (!(worst <= 1e-5) || cnt != r.n_scored || fabs(sum - r.nll) > 1e-4 * fabs(sum))
            tu_fail(name, "worst %.3g at target %lld; %lld scored (expected %lld); sum %.9g vs %.9g", worst,
                    (long long)bad_t, (long long)r.n_scored, (long long)cnt, r.nll, sum);
        else tu_okf("%s (%lld targets, worst %.2g)", name, (long long)cnt, worst);
    }

    /* 3. batch size independence */
    {
        moe_ppl_result r1, r2;
        moe_ppl_options_default(&po);
        po.ctx = T;
        po.stride = 20;
        po.batch = 1;
        moe_status s1 = moe_infer_perplexity(m, tok, 200, &po, nll, &r1, &err);
        po.batch = 512;
        moe_status s2 = s1 ? s1 : moe_infer_perplexity(m, tok, 200, &po, nll2, &r2, &err);
        if (s1 || s2) tu_fail("batch 1 = batch 512", "%s", err.msg);
        else if (fabs(r1.nll - r2.nll) > 1e-9 * fabs(r2.nll) || r1.n_scored != r2.n_scored || r1.n_bytes != r2.n_bytes)
            tu_fail("batch 1 = batch 512", "%.12g vs %.12g", r1.nll, r2.nll);
        else tu_okf("batch 1 = batch 512 (nll %.9g, %lld bytes)", r2.nll, (long long)r2.n_bytes);
    }

    /* 4. bad arguments */
    {
        struct { int ctx, stride; moe_ppl_scoring sc; int64_t n; const char *want; } bad[] = {
            {T, 0, MOE_PPL_SLIDING, 1, "at least 2"},
            {4096, 0, MOE_PPL_SLIDING, 100, "window of 4096"},
            {T, T + 1, MOE_PPL_SLIDING, 100, "stride"},
            {T, 0, MOE_PPL_LLAMA, T - 1, "fewer than one chunk"},
            {1, 0, MOE_PPL_SLIDING, 100, "window of 1"},
        };
        int fails = 0;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            moe_ppl_options_default(&po);
            po.ctx = bad[i].ctx;
            po.stride = bad[i].stride;
            po.scoring = bad[i].sc;
            err.msg[0] = '\0';
            if (moe_infer_perplexity(m, tok, bad[i].n, &po, NULL, &r, &err) == MOE_OK || !strstr(err.msg, bad[i].want)) {
                tu_fail("perplexity bad arguments", "case %zu: '%s' (expected '%s')", i, err.msg, bad[i].want);
                fails++;
            }
        }
        if (!fails) tu_ok("perplexity bad arguments refused with a message (5 cases)");
    }
done:
    moe_infer_close(m);
    moe_trainer_free(tr);
    free(text);
    free(tok);
    free(lg);
    free(nll);
    free(nll2);
    remove(data);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_exit_code();
}
