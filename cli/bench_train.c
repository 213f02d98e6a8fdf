/* bench_train.c: `moe bench train`: tokens/s and model FLOP/s of training
 * steps (forward, backward, AdamW) for the demo's model and for the
 * reference configuration (d=512, 8 layers, 8 experts top-2, context 256),
 * next to a dense GEMM timed in the same run. Random tokens: the speed of
 * a step does not depend on the text. Prints figures; asserts nothing.
 *
 * Options: --experts N and --layers N change the chosen configuration;
 * --accum G runs G forward/backward micro-batches per AdamW step (tokens/s
 * count all of them); --scaling times the configuration with 8 and with 64
 * experts (same d, d_ff, k, context) in one run and prints the ratio. */
#include "cli.h"
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reference configuration of the performance targets (bench/train_torch.py
 * builds the same model in PyTorch). */
static void big_config(moe_train_config *c) {
    moe_train_config_default(c);
    c->model.vocab_size = 4096;
    c->model.d_model = 512;
    c->model.n_layers = 8;
    c->model.n_heads = 8;
    c->model.n_kv_heads = 8;
    c->model.ctx_len = 256;
    c->model.d_ff = 1408;
    c->model.moe.n_experts = 8;
    c->model.moe.top_k = 2;
    c->model.moe.d_ff = 1408;
    c->model.moe.renormalize = 1;
    c->model.moe.aux_loss_coef = 0.01f;
    c->model.moe.z_loss_coef = 0.001f;
    c->batch = 8;
}

/* Runs `steps` timed steps (after one warm-up) of c; *tps_out = the best
 * tokens/s. Returns 0 on success. */
static int run_one(const char *name, moe_train_config *c, int steps, int accum, int nt, double gemm_gflops,
                   double *tps_out) {
    c->model.max_batch = c->batch;
    c->model.n_threads = nt;
    moe_model *m = NULL;
    moe_adamw *o = NULL;
    moe_error err;
    int rc = 1;
    const int B = c->batch, T = c->model.ctx_len, N = B * T;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)N), *y = malloc(sizeof(int32_t) * (size_t)N);
    if (!x || !y) goto done;
    if (moe_model_create(&m, &c->model, &err) != MOE_OK || moe_adamw_create(&o, m, &c->adamw, &err) != MOE_OK) {
        fprintf(stderr, "moe bench train: %s\n", err.msg);
        goto done;
    }
    moe_model_init_params(m, 1);
    unsigned s = 12345;
    double best = 1e30, total = 0, fwd_best = 1e30, opt_best = 1e30;
    for (int it = 0; it <= steps; it++) { /* step 0 warms up */
        double t0 = cli_now(), fwd = 0;
        moe_model_drop_grads(m);
        for (int a = 0; a < accum; a++) {
            for (int i = 0; i < N; i++) {
                s = s * 1664525u + 1013904223u;
                x[i] = (int32_t)((s >> 8) % (unsigned)c->model.vocab_size);
                y[i] = (int32_t)((s >> 4) % (unsigned)c->model.vocab_size);
            }
            double ta = cli_now();
            float loss;
            if (moe_model_forward(m, x, y, B, T, 1, &loss, &err) != MOE_OK) {
                fprintf(stderr, "moe bench train: %s\n", err.msg);
                goto done;
            }
            fwd += cli_now() - ta;
            if (moe_model_backward(m, &err) != MOE_OK) {
                fprintf(stderr, "moe bench train: %s\n", err.msg);
                goto done;
            }
        }
        double t2 = cli_now();
        if (moe_adamw_step(o, 1e-4f, NULL, &err) != MOE_OK) {
            fprintf(stderr, "moe bench train: %s\n", err.msg);
            goto done;
        }
        const double t3 = cli_now(), t = t3 - t0, opt = t3 - t2;
        if (it > 0) {
            best = t < best ? t : best;
            fwd_best = fwd < fwd_best ? fwd : fwd_best;
            opt_best = opt < opt_best ? opt : opt_best;
            total += t;
        }
    }
    moe_model_counts k;
    moe_model_count(&c->model, &k);
    double tps = (double)N * accum / best, mean_tps = (double)N * accum * steps / total;
    double gf = k.train_flops * tps * 1e-9;
    printf("%-5s d=%d L=%d E=%d k=%d ctx=%d batch=%d x accum %d: %.1fM params (%.1fM active), %.0f MFLOP/token\n",
           name, c->model.d_model, c->model.n_layers, c->model.moe.n_experts, c->model.moe.top_k, T, B, accum,
           k.params / 1e6, k.active_params / 1e6, k.train_flops / 1e6);
    printf("      step %.1f ms (forward %.1f ms, AdamW %.1f ms), best of %d: %.0f tokens/s (mean %.0f), %.1f GFLOP/s "
           "model = %.2f of the dense GEMM's %.1f\n",
           best * 1e3, fwd_best * 1e3, opt_best * 1e3, steps, tps, mean_tps, gf, gf / gemm_gflops, gemm_gflops);
    if (tps_out) *tps_out = tps;
    rc = 0;
done:
    moe_adamw_free(o);
    moe_model_free(m);
    free(x);
    free(y);
    return rc;
}

int bench_train(int argc, char **argv, int nt) {
    int steps = 5, bad = 0, which = 0; /* 0 both, 1 demo, 2 big */
    int experts = 0, layers = 0, accum = 1, scaling = 0;
    moe_train_config demo, big;
    moe_train_config_default(&demo); /* the demo's run */
    big_config(&big);
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: moe bench train [--demo | --big] [--steps N] [--experts E] [--layers L] [--accum G]\n"
                   "                       [--scaling]\n"
                   "  training tokens/s and model GFLOP/s against a dense GEMM; default both models,\n"
                   "  --steps %d, --experts and --layers 0 (the model's), --accum %d; --scaling: thread scaling\n",
                   steps, accum);
            return 0;
        }
        if (cli_int_opt("--steps", argc, argv, &i, &steps, &bad)) continue;
        if (cli_int_opt("--experts", argc, argv, &i, &experts, &bad)) continue;
        if (cli_int_opt("--layers", argc, argv, &i, &layers, &bad)) continue;
        if (cli_int_opt("--accum", argc, argv, &i, &accum, &bad)) continue;
        if (!strcmp(argv[i], "--demo")) { which = 1; continue; }
        if (!strcmp(argv[i], "--big")) { which = 2; continue; }
        if (!strcmp(argv[i], "--scaling")) { scaling = 1; continue; }
        return cli_unknown("bench train", argv[i]);
    }
    if (bad) return 2;
    if (steps < 1 || accum < 1 || experts < 0 || layers < 0) return 2;
    if (scaling && which == 0) which = 2;
    moe_train_config *cfgs[2] = {&demo, &big};
    for (int j = 0; j < 2; j++) {
        if (experts > 0) cfgs[j]->model.moe.n_experts = experts;
        if (layers > 0) cfgs[j]->model.n_layers = layers;
    }
    double tg = bench_time_gemm(nt, 2048, 2048, 512, 5);
    double gemm = 2.0 * 2048 * 2048 * 512 / tg * 1e-9;
    printf("moe bench train (gemm kernel %s, threads %d); dense GEMM 2048x2048x512 in the same run: %.1f GFLOP/s\n",
           moe_sgemm_kernel_name(), nt, gemm);
    const int big_steps = steps < 3 ? steps : 3;
    if (scaling) { /* the same configuration with 8 and with 64 experts */
        moe_train_config *c = which == 1 ? &demo : &big;
        const char *name = which == 1 ? "demo" : "big";
        double t8 = 0, t64 = 0;
        c->model.moe.n_experts = 8;
        if (run_one(name, c, which == 1 ? steps : big_steps, accum, nt, gemm, &t8)) return 1;
        c->model.moe.n_experts = 64;
        if (run_one(name, c, which == 1 ? steps : big_steps, accum, nt, gemm, &t64)) return 1;
        printf("expert scaling: 64 experts run at %.2f of the tokens/s of 8 experts (%.0f vs %.0f)\n", t64 / t8, t64,
               t8);
        return 0;
    }
    int rc = 0;
    if (which != 2) rc |= run_one("demo", &demo, steps, accum, nt, gemm, NULL);
    if (which != 1) rc |= run_one("big", &big, big_steps, accum, nt, gemm, NULL);
    return rc;
}
