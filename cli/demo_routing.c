/* demo_routing.c: `moe demo routing`, the MoE layer alone: routes a batch drawn from four clearly different input "domains" through a
 * MoE layer, prints the expert loads, the drops at capacity factor 1.25 and a
 * domain-by-expert routing table, then takes gradient steps on the router
 * with only the load-balancing and z losses and shows the loads even out. */
#include "cli.h"
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 64, F = 128, E = 8, K = 2, T = 4096, DOMAINS = 4 };

static float urand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xFFFF) / 65536.0f;
}

static void print_loads(moe_layer *L, const int *domain) {
    const moe_route_stats *st = moe_layer_stats(L);
    int *ex = malloc(sizeof(int) * T * K), *kept = malloc(sizeof(int) * T * K);
    if (!ex || !kept) { free(ex); free(kept); return; }
    moe_layer_routing(L, ex, NULL, kept);
    double mean = (double)st->assignments / E, mx = 0;
    printf("  expert  routed  kept   load\n");
    for (int e = 0; e < E; e++) {
        int r = st->tokens_per_expert[e];
        mx = r > mx ? r : mx;
        printf("  %6d  %6d  %4d   ", e, r, st->kept_per_expert[e]);
        for (int b = 0; b < (int)(40.0 * r / (2.0 * mean) + 0.5) && b < 60; b++) putchar('#');
        putchar('\n');
    }
    printf("  capacity %d per expert, dropped %lld of %lld assignments (%.1f%%), max-violation %.2f\n",
           st->capacity, (long long)st->dropped, (long long)st->assignments,
           100.0 * st->dropped / st->assignments, mx / mean - 1.0);
    printf("  balance E*sum(f*P) = %.3f (1 = balanced), router entropy %.3f nats (max %.3f)\n",
           st->balance, st->entropy, log((double)E));
    printf("  share of each domain's first choices per expert (%%):\n  domain ");
    for (int e = 0; e < E; e++) printf("%5d", e);
    putchar('\n');
    for (int g = 0; g < DOMAINS; g++) {
        int cnt[E] = {0}, tot = 0;
        for (int t = 0; t < T; t++)
            if (domain[t] == g) { cnt[ex[t * K]]++; tot++; }
        printf("  %6d ", g);
        for (int e = 0; e < E; e++) printf("%5.0f", tot ? 100.0 * cnt[e] / tot : 0.0);
        putchar('\n');
    }
    free(ex);
    free(kept);
}

int cmd_demo_routing(int argc, char **argv, int n_threads) {
    if (argc > 0 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        printf("usage: moe demo routing   (no options)\n"
               "  routes a batch of tokens from several domains through one MoE layer and prints the loads\n");
        return 0;
    }
    if (argc > 0) return cli_unknown("demo routing", argv[0]);
    moe_layer_config c;
    moe_layer_config_default(&c, D, F, E, K);
    c.max_tokens = T;
    c.n_threads = n_threads;
    c.capacity_factor = 1.25f;
    c.aux_loss_coef = 1.0f;
    c.z_loss_coef = 0.01f;
    moe_layer *L;
    moe_error err;
    if (moe_layer_create(&L, &c, &err) != MOE_OK) { fprintf(stderr, "moe demo: %s\n", err.msg); return 1; }
    moe_layer_init_params(L, 42);
    moe_layer_weights w = moe_layer_params(L), g = moe_layer_grads(L);
    /* a router that starts out lopsided, as real routers often do */
    for (int i = 0; i < D; i++) w.router[i] *= 6.0f;

    /* four domains: Gaussian clusters around well-separated centres */
    float *x = malloc(sizeof(float) * T * D), *y = malloc(sizeof(float) * T * D);
    float *dy = calloc((size_t)T * D, sizeof(float)), *dx = malloc(sizeof(float) * T * D);
    int *domain = malloc(sizeof(int) * T);
    float centre[DOMAINS][D];
    if (!x || !y || !dy || !dx || !domain) { fprintf(stderr, "moe demo: out of memory\n"); return 1; }
    unsigned s = 7;
    for (int k = 0; k < DOMAINS; k++)
        for (int i = 0; i < D; i++) centre[k][i] = 2.0f * (urand(&s) - 0.5f) * 2.0f;
    for (int t = 0; t < T; t++) {
        domain[t] = t % DOMAINS;
        for (int i = 0; i < D; i++) x[t * D + i] = centre[domain[t]][i] + 0.5f * (urand(&s) - 0.5f);
    }

    printf("moe demo: one MoE layer, d=%d d_ff=%d, %d experts, top-%d, %d tokens from %d input domains,\n"
           "capacity factor %.2f (drop by position), balance loss coefficient %.2f\n\n",
           D, F, E, K, T, DOMAINS, c.capacity_factor, c.aux_loss_coef);
    double t0 = cli_now();
    if (moe_layer_forward(L, y, x, T, 1, &err) != MOE_OK) { fprintf(stderr, "moe demo: %s\n", err.msg); return 1; }
    printf("routing at initialisation (forward pass %.1f ms):\n", 1e3 * (cli_now() - t0));
    print_loads(L, domain);

    /* gradient descent on the router alone, objective = balance + z losses
       (dy = 0, so the experts' outputs do not pull) */
    const int steps = 200;
    const float lr = 0.05f;
    for (int step = 0; step < steps; step++) {
        moe_layer_zero_grads(L);
        if (moe_layer_forward(L, y, x, T, 1, &err) != MOE_OK || moe_layer_backward(L, dx, dy, &err) != MOE_OK) {
            fprintf(stderr, "moe demo: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < E * D; i++) w.router[i] -= lr * g.router[i];
        if (step % 50 == 0)
            printf("  step %3d: balance loss %.4f, dropped %5.1f%%\n", step, moe_layer_stats(L)->aux_loss,
                   100.0 * moe_layer_stats(L)->dropped / moe_layer_stats(L)->assignments);
    }
    moe_layer_forward(L, y, x, T, 1, NULL);
    printf("\nrouting after %d router steps on the balance loss:\n", steps);
    print_loads(L, domain);
    free(x); free(y); free(dy); free(dx); free(domain);
    moe_layer_free(L);
    return 0;
}
