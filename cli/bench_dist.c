/* bench_dist.c: `moe bench dist`: one rank of an expert-parallel training
 * job (mpirun -np P moe bench dist --expert-parallel EP): tokens/s of the
 * global batch, the share of a step spent inside collectives, and the bytes
 * each rank received per step against the formula of docs/SCALING.md; the
 * steps alternate between the gradients' all-reduce after the backward and
 * started block by block during it (moe_dist_set_overlap), and the time
 * inside collectives of each says how much of it the overlap hid.
 * Also runs without mpirun (P = 1). The run directory (built-in corpus,
 * its tokenizer) is made by rank 0 in $TMPDIR and removed after.
 * Prints figures (rank 0); asserts nothing.
 *
 * Options: --expert-parallel EP (default: all ranks), --steps N (10),
 * --d N (256), --layers N (4), --experts N (8), --k N (2), --dff N (512),
 * --ctx N (128), --batch N (8, the global batch). */
#include "cli.h"
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bench_dist(int argc, char **argv, int nt) {
    int ep = 0, steps = 10, d = 256, layers = 4, experts = 8, k = 2, dff = 512, ctx = 128, batch = 8, bad = 0;
    for (int i = 0; i < argc; i++) {
        if (cli_int_opt("--expert-parallel", argc, argv, &i, &ep, &bad)) continue;
        if (cli_int_opt("--steps", argc, argv, &i, &steps, &bad)) continue;
        if (cli_int_opt("--d", argc, argv, &i, &d, &bad)) continue;
        if (cli_int_opt("--layers", argc, argv, &i, &layers, &bad)) continue;
        if (cli_int_opt("--experts", argc, argv, &i, &experts, &bad)) continue;
        if (cli_int_opt("--k", argc, argv, &i, &k, &bad)) continue;
        if (cli_int_opt("--dff", argc, argv, &i, &dff, &bad)) continue;
        if (cli_int_opt("--ctx", argc, argv, &i, &ctx, &bad)) continue;
        if (cli_int_opt("--batch", argc, argv, &i, &batch, &bad)) continue;
        fprintf(stderr, "moe bench dist: unknown option '%s'\n", argv[i]);
        return 2;
    }
    if (bad || steps < 1) return 2;
    moe_dist *dist = NULL;
    moe_error err;
    /* EP 0: all ranks */
    if (moe_dist_init(&dist, ep, &err) != MOE_OK) { fprintf(stderr, "moe bench dist: %s\n", err.msg); return 1; }
    const int P = moe_dist_size(dist), rank = moe_dist_rank(dist);
    ep = moe_dist_expert_parallel(dist);

    moe_train_config c;
    moe_train_config_default(&c);
    c.model.d_model = d;
    c.model.n_layers = layers;
    c.model.n_heads = d / 64 > 0 ? d / 64 : 1;
    c.model.n_kv_heads = c.model.n_heads;
    c.model.ctx_len = ctx;
    c.model.d_ff = dff;
    c.model.moe.n_experts = experts;
    c.model.moe.top_k = k;
    c.model.moe.d_ff = dff;
    c.model.n_threads = nt;
    c.batch = batch;
    c.model.max_batch = batch;
    c.steps = 2 * steps + 1;
    c.eval_every = 0;
    c.corpus_bytes = 400000;
    c.dist = dist; /* each rank allocates only its own experts */
    char dir[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/moe-bench-dist-%ld", tmp && *tmp ? tmp : "/tmp", (long)getppid());
    moe_trainer *t = NULL;
    moe_status st = MOE_OK;
    if (rank == 0) st = moe_trainer_create(&t, &c, NULL, 0, dir, &err);
    if (st != MOE_OK) { fprintf(stderr, "moe bench dist: %s\n", err.msg); moe_dist_abort(dist, 1); }
    moe_dist_barrier(dist, &err);
    if (rank) st = moe_trainer_create(&t, &c, NULL, 0, dir, &err);
    if (st == MOE_OK) st = moe_trainer_attach_dist(t, dist, &err);
    if (st != MOE_OK) { fprintf(stderr, "moe bench dist: rank %d: %s\n", rank, err.msg); moe_dist_abort(dist, 1); }
    moe_train_step_info s;
    if (moe_trainer_step(t, &s, &err) != MOE_OK) { /* warm-up */
        fprintf(stderr, "moe bench dist: %s\n", err.msg);
        moe_dist_abort(dist, 1);
    }
    /* the steps alternate: gradients all-reduced after the backward
       (blocking), then block by block during it (overlap); each step
       starts together on every rank (barrier, not timed) */
    double el = 0, comm = 0, el_m[2] = {0, 0}, comm_m[2] = {0, 0};
    const uint64_t b0 = moe_dist_bytes_moved(dist);
    for (int i = 0; i < 2 * steps; i++) {
        const int ov = i % 2;
        moe_dist_set_overlap(dist, ov);
        moe_dist_barrier(dist, &err);
        const double c0 = moe_dist_comm_seconds(dist), t0 = cli_now();
        if (moe_trainer_step(t, &s, &err) != MOE_OK) {
            fprintf(stderr, "moe bench dist: %s\n", err.msg);
            moe_dist_abort(dist, 1);
        }
        el_m[ov] += cli_now() - t0;
        comm_m[ov] += moe_dist_comm_seconds(dist) - c0;
    }
    moe_dist_set_overlap(dist, 0); /* the default: the headline figures are its steps */
    el = el_m[0];
    comm = comm_m[0];
    const double bytes = (double)(moe_dist_bytes_moved(dist) - b0) / (2 * steps);
    if (rank == 0) {
        moe_model_counts cnt;
        moe_model_count(&c.model, &cnt);
        const double T = (double)batch / P * ctx, b = 4.0, E = experts;
        int n_moe = 0;
        for (int l = 0; l < layers; l++) n_moe += moe_model_moe_layer(moe_trainer_model(t), l) != NULL;
        /* per MoE layer and rank (docs/SCALING.md): logits all-gather, x and
           output rows (forward), dw all-gather, d_o and dx rows (backward),
           a row leaving its rank with probability (P - 1) / P */
        const double layer = (P - 1) * T * E * b + (P - 1) * T * k * b + 4.0 * k * T * d * b * (P - 1) / P;
        const double rep = (double)(cnt.params - cnt.expert_params) * b, expg = (double)cnt.expert_params * b / ep;
        const double grads = 2.0 * (P - 1) / P * rep + (P / ep > 1 ? 2.0 * (P / ep - 1) / (P / ep) * expg : 0.0);
        printf("moe bench dist: P = %d (EP %d x DP %d), %d thread(s) per rank; d=%d L=%d E=%d k=%d dff=%d ctx=%d "
               "global batch %d (%.1fM params, %.1fM in experts)\n",
               P, ep, P / ep, nt, d, layers, experts, k, dff, ctx, batch, cnt.params / 1e6, cnt.expert_params / 1e6);
        printf("  step %.1f ms, %.0f tokens/s (global batch), %.1f%% of the step inside collectives (rank 0)\n",
               1e3 * el / steps, (double)batch * ctx * steps / el, 100.0 * comm / el);
        if (P > 1)
            printf("  overlap: inside collectives %.1f ms per step with the gradients' all-reduce after the "
                   "backward (step %.1f ms), %.1f ms with it started block by block (step %.1f ms): %.0f%% of "
                   "the blocking communication hidden\n", 1e3 * comm_m[0] / steps, 1e3 * el_m[0] / steps,
                   1e3 * comm_m[1] / steps, 1e3 * el_m[1] / steps,
                   comm_m[0] > 0 ? 100.0 * (comm_m[0] - comm_m[1]) / comm_m[0] : 0.0);
        printf("  received per step and rank: %.3f MB counted; formula %.3f MB = %d MoE layers x %.3f MB "
               "+ gradients %.3f MB\n", bytes / 1e6, (n_moe * layer + grads) / 1e6, n_moe, layer / 1e6, grads / 1e6);
        fflush(stdout);
    }
    moe_trainer_free(t);
    moe_dist_barrier(dist, &err);
    if (rank == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "moe bench dist: could not remove %s\n", dir);
    }
    moe_dist_free(dist);
    return 0;
}
