/* layer_ref.h: a plain scalar reference of the MoE layer, for the tests only.
 *
 * Written token by token and expert by expert with matrix-vector loops in
 * double precision, sharing no code with src/layer/, so the optimized layer
 * (grouped GEMMs, threads, fp32) can be checked against it. It computes the
 * forward pass and, given dy, the gradients of
 *   L = sum(y * dy) + aux_loss + z_loss
 * with respect to x and every parameter.
 */
#ifndef MOE_LAYER_REF_H
#define MOE_LAYER_REF_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

typedef struct ref_out {
    double *y;                       /* [T, d] */
    int *expert;                     /* [T, k] */
    double *weight;                  /* [T, k] */
    int *kept;                       /* [T, k] */
    int *routed, *keptc;             /* [E] */
    double aux, z, entropy;
    int capacity;
    long dropped;
    double *dx;                      /* [T, d] */
    double *dWr, *dWg, *dWu, *dWd;   /* like the parameters (dWg NULL for GELU) */
} ref_out;

static void ref_out_alloc(ref_out *o, const moe_layer_config *c, int T) {
    size_t E = c->n_experts, d = c->d_model, F = c->d_ff, k = c->top_k;
    o->y = calloc((size_t)T * d, sizeof(double));
    o->expert = calloc((size_t)T * k, sizeof(int));
    o->weight = calloc((size_t)T * k, sizeof(double));
    o->kept = calloc((size_t)T * k, sizeof(int));
    o->routed = calloc(E, sizeof(int));
    o->keptc = calloc(E, sizeof(int));
    o->dx = calloc((size_t)T * d, sizeof(double));
    o->dWr = calloc(E * d, sizeof(double));
    o->dWg = c->expert == MOE_EXPERT_SWIGLU ? calloc(E * F * d, sizeof(double)) : NULL;
    o->dWu = calloc(E * F * d, sizeof(double));
    o->dWd = calloc(E * d * F, sizeof(double));
}

static void ref_out_free(ref_out *o) {
    free(o->y); free(o->expert); free(o->weight); free(o->kept); free(o->routed);
    free(o->keptc); free(o->dx); free(o->dWr); free(o->dWg); free(o->dWu); free(o->dWd);
}

static double ref_act(int swiglu, double g, double u, double *dg, double *du) {
    if (swiglu) {
        double s = 1.0 / (1.0 + exp(-g));
        *dg = u * s * (1.0 + g * (1.0 - s));
        *du = g * s;
        return g * s * u;
    }
    const double c = 0.7978845608028654 /* sqrt(2 / pi) */;
    double th = tanh(c * (u + 0.044715 * u * u * u));
    *dg = 0.0;
    *du = 0.5 * (1.0 + th) + 0.5 * u * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * u * u);
    return 0.5 * u * (1.0 + th);
}

/* Forward, and backward when dy is not NULL. */
static void ref_layer(ref_out *o, const moe_layer_config *c, const moe_layer_weights *w,
                      const float *x, const float *dy, int T) {
    const int E = c->n_experts, d = c->d_model, F = c->d_ff, k = c->top_k;
    const int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    double *p = calloc((size_t)T * E, sizeof(double));
    double *lse = calloc((size_t)T, sizeof(double));
    double *dw = calloc((size_t)T * k, sizeof(double));
    double *g = malloc(sizeof(double) * F), *u = malloc(sizeof(double) * F);
    double *a = malloc(sizeof(double) * F), *ga = malloc(sizeof(double) * F);
    double *gu = malloc(sizeof(double) * F), *dO = malloc(sizeof(double) * d);

    /* router */
    o->entropy = 0.0;
    for (int t = 0; t < T; t++) {
        double m = -INFINITY, z[256];
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += (double)x[t * d + i] * w->router[e * d + i];
            z[e] = s;
            if (s > m) m = s;
        }
        double sum = 0;
        for (int e = 0; e < E; e++) sum += exp(z[e] - m);
        lse[t] = m + log(sum);
        for (int e = 0; e < E; e++) {
            p[t * E + e] = exp(z[e] - lse[t]);
            if (p[t * E + e] > 0) o->entropy -= p[t * E + e] * log(p[t * E + e]) / T;
        }
        int used[256] = {0};
        double Z = 0;
        for (int j = 0; j < k; j++) {
            int b = -1;
            for (int e = 0; e < E; e++)
                if (!used[e] && (b < 0 || p[t * E + e] > p[t * E + b])) b = e;
            used[b] = 1;
            o->expert[t * k + j] = b;
            Z += p[t * E + b];
        }
        for (int j = 0; j < k; j++) {
            double pj = p[t * E + o->expert[t * k + j]];
            o->weight[t * k + j] = c->weight_scale * (c->renormalize ? pj / Z : pj);
        }
    }
    /* capacity */
    memset(o->routed, 0, sizeof(int) * E);
    memset(o->keptc, 0, sizeof(int) * E);
    for (int i = 0; i < T * k; i++) o->routed[o->expert[i]]++;
    o->capacity = c->capacity_factor == MOE_DROPLESS ? -1
                  : (int)ceil((double)c->capacity_factor * T * k / E);
    if (o->capacity < 0) {
        for (int i = 0; i < T * k; i++) { o->kept[i] = 1; o->keptc[o->expert[i]]++; }
    } else if (c->drop_policy == MOE_DROP_POSITION) {
        for (int j = 0; j < k; j++)
            for (int t = 0; t < T; t++) {
                int e = o->expert[t * k + j];
                o->kept[t * k + j] = o->keptc[e] < o->capacity;
                o->keptc[e] += o->kept[t * k + j];
            }
    } else {
        /* for each expert: repeatedly take the best remaining candidate */
        int *taken = calloc((size_t)T * k, sizeof(int));
        for (int e = 0; e < E; e++)
            for (int n = 0; n < o->capacity; n++) {
                int best = -1;
                for (int i = 0; i < T * k; i++) {
                    if (o->expert[i] != e || taken[i]) continue;
                    if (best < 0 || p[(i / k) * E + e] > p[(best / k) * E + e]) best = i;
                }
                if (best < 0) break;
                taken[best] = 1;
                o->keptc[e]++;
            }
        for (int i = 0; i < T * k; i++) o->kept[i] = taken[i];
        free(taken);
    }
    o->dropped = 0;
    for (int i = 0; i < T * k; i++) o->dropped += !o->kept[i];

    /* losses */
    double bal = 0, zl = 0;
    for (int e = 0; e < E; e++) {
        double P = 0;
        for (int t = 0; t < T; t++) P += p[t * E + e] / T;
        bal += (double)o->routed[e] / (T * k) * P;
    }
    for (int t = 0; t < T; t++) zl += lse[t] * lse[t] / T;
    o->aux = c->aux_loss_coef * E * bal;
    o->z = c->z_loss_coef * zl;

    /* experts, token by token */
    memset(o->y, 0, sizeof(double) * T * d);
    if (dy) memset(o->dx, 0, sizeof(double) * T * d);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int i = t * k + j, e = o->expert[i];
            dw[i] = 0;
            if (!o->kept[i]) continue;
            const float *xt = x + (size_t)t * d;
            const float *Wg = swiglu ? w->gate + (size_t)e * F * d : NULL;
            const float *Wu = w->up + (size_t)e * F * d, *Wd = w->down + (size_t)e * d * F;
            for (int f = 0; f < F; f++) {
                double sg = 0, su = 0;
                for (int q = 0; q < d; q++) {
                    if (Wg) sg += (double)Wg[f * d + q] * xt[q];
                    su += (double)Wu[f * d + q] * xt[q];
                }
                g[f] = sg; u[f] = su;
                a[f] = ref_act(swiglu, sg, su, &ga[f], &gu[f]);
            }
            for (int q = 0; q < d; q++) {
                double s = 0;
                for (int f = 0; f < F; f++) s += (double)Wd[q * F + f] * a[f];
                o->y[t * d + q] += o->weight[i] * s;
                if (dy) { dw[i] += dy[t * d + q] * s; dO[q] = o->weight[i] * dy[t * d + q]; }
            }
            if (!dy) continue;
            for (int f = 0; f < F; f++) {
                double da = 0;
                for (int q = 0; q < d; q++) {
                    da += (double)Wd[q * F + f] * dO[q];
                    o->dWd[(size_t)e * d * F + q * F + f] += dO[q] * a[f];
                }
                double dg = da * ga[f], du = da * gu[f];
                for (int q = 0; q < d; q++) {
                    if (swiglu) {
                        o->dWg[(size_t)e * F * d + f * d + q] += dg * xt[q];
                        o->dx[t * d + q] += dg * Wg[f * d + q];
                    }
                    o->dWu[(size_t)e * F * d + f * d + q] += du * xt[q];
                    o->dx[t * d + q] += du * Wu[f * d + q];
                }
            }
        }
    if (dy) {
        /* router: dw -> dp -> dlogits (+ balance and z terms) -> dWr, dx */
        for (int t = 0; t < T; t++) {
            double dp[256], Z = 0, dot = 0;
            for (int e = 0; e < E; e++) {
                double f = (double)o->routed[e] / (T * k);
                dp[e] = c->aux_loss_coef * E * f / T;
            }
            for (int j = 0; j < k; j++) {
                double pj = p[t * E + o->expert[t * k + j]];
                Z += pj;
                dot += dw[t * k + j] * pj;
            }
            for (int j = 0; j < k; j++) {
                int e = o->expert[t * k + j];
                dp[e] += c->weight_scale * (c->renormalize ? dw[t * k + j] / Z - dot / (Z * Z)
                                                            : dw[t * k + j]);
            }
            double pd = 0;
            for (int e = 0; e < E; e++) pd += p[t * E + e] * dp[e];
            for (int e = 0; e < E; e++) {
                double dz = p[t * E + e] * (dp[e] - pd) + c->z_loss_coef * 2.0 * lse[t] / T * p[t * E + e];
                for (int q = 0; q < d; q++) {
                    o->dWr[e * d + q] += dz * x[t * d + q];
                    o->dx[t * d + q] += dz * w->router[e * d + q];
                }
            }
        }
    }
    free(p); free(lse); free(dw); free(g); free(u); free(a); free(ga); free(gu); free(dO);
}

#endif
