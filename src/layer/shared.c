/* shared.c: the shared expert (DeepSeekMoE, Qwen-MoE): a dense FFN that every
 * token passes through, optionally scaled by a per-token sigmoid gate.
 * n shared experts of width f are one FFN of width n f (shared_d_ff).
 *
 *   h = x [Wsg; Wsu]^T,  a = act(h),  o = a Wsd^T,  g_t = sigmoid(x_t . w_sg) or 1
 *   y_t += g_t o_t
 * Backward: dg_t = <dy_t, o_t>, dlogit_t = dg_t g_t (1 - g_t),
 *   dO = g dy, dWsd += dO^T a, dA = dO Wsd, dH = act'(dA),
 *   dWsg += dHg^T x, dWsu += dHu^T x, dx += dHg Wsg + dHu Wsu + dlogit w_sg.
 */
#include "layer/layer.h"
#include "kernels/act.h"
#include "kernels/gemm.h"

#include <math.h>
#include <string.h>

void shared_forward(moe_layer *L, float *y, const float *x, int T) {
    const moe_layer_config *c = &L->cfg;
    const int d = c->d_model, F = L->Fs, H = L->Hs, nt = layer_threads(L);
    const int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    gemm_problem pr[2];
    int n = 0;
    if (swiglu) pr[n++] = gemm_make(T, F, d, 0, x, d, 1, L->w.shared_gate, d, L->sh_h, H, 0.0f);
    pr[n++] = gemm_make(T, F, d, 0, x, d, 1, L->w.shared_up, d, L->sh_h + (swiglu ? F : 0), H, 0.0f);
    gemm_grouped(L->gws, nt, pr, n);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *hr = L->sh_h + (size_t)t * H;
        if (swiglu) act_swiglu_forward(L->sh_a + (size_t)t * F, hr, hr + F, (size_t)F);
        else act_gelu_forward(L->sh_a + (size_t)t * F, hr, (size_t)F);
    }
    pr[0] = gemm_make(T, d, F, 0, L->sh_a, F, 1, L->w.shared_down, F, L->sh_o, d, 0.0f);
    gemm_grouped(L->gws, nt, pr, 1);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        float g = 1.0f;
        if (c->shared_gate) {
            float s = 0.0f;
            for (int i = 0; i < d; i++) s += x[(size_t)t * d + i] * L->w.shared_router[i];
            g = 1.0f / (1.0f + expf(-s));
        }
        L->sh_g[t] = g;
        for (int i = 0; i < d; i++) y[(size_t)t * d + i] += g * L->sh_o[(size_t)t * d + i];
    }
}

void shared_backward(moe_layer *L, float *dx, const float *dy, const float *x, int T, float gbeta) {
    const moe_layer_config *c = &L->cfg;
    const int d = c->d_model, F = L->Fs, H = L->Hs, nt = layer_threads(L);
    const int swiglu = c->expert == MOE_EXPERT_SWIGLU;
    float *dlogit = L->sh_dl;
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        float g = L->sh_g[t], dg = 0.0f;
        for (int i = 0; i < d; i++) {
            size_t k = (size_t)t * d + i;
            dg += dy[k] * L->sh_o[k];
            L->d_sh_o[k] = g * dy[k];
        }
        dlogit[t] = dg * g * (1.0f - g);
    }
    gemm_problem pr[3];
    pr[0] = gemm_make(d, F, T, 1, L->d_sh_o, d, 0, L->sh_a, F, L->g.shared_down, F, gbeta);
    pr[1] = gemm_make(T, F, d, 0, L->d_sh_o, d, 0, L->w.shared_down, F, L->d_sh_a, F, 0.0f);
    gemm_grouped(L->gws, nt, pr, 2);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++) {
        const float *hr = L->sh_h + (size_t)t * H;
        float *dh = L->d_sh_h + (size_t)t * H;
        if (swiglu) act_swiglu_backward(dh, dh + F, L->d_sh_a + (size_t)t * F, hr, hr + F, (size_t)F);
        else act_gelu_backward(dh, L->d_sh_a + (size_t)t * F, hr, (size_t)F);
    }
    int n = 0;
    if (swiglu) pr[n++] = gemm_make(F, d, T, 1, L->d_sh_h, H, 0, x, d, L->g.shared_gate, d, gbeta);
    pr[n++] = gemm_make(F, d, T, 1, L->d_sh_h + (swiglu ? F : 0), H, 0, x, d, L->g.shared_up, d, gbeta);
    pr[n++] = gemm_make(T, d, F, 0, L->d_sh_h + (swiglu ? F : 0), H, 0, L->w.shared_up, d, dx, d, 1.0f);
    gemm_grouped(L->gws, nt, pr, n);
    if (swiglu) {
        pr[0] = gemm_make(T, d, F, 0, L->d_sh_h, H, 0, L->w.shared_gate, d, dx, d, 1.0f);
        gemm_grouped(L->gws, nt, pr, 1);
    }
    if (c->shared_gate) {
        if (gbeta == 0.0f) memset(L->g.shared_router, 0, sizeof(float) * (size_t)d); /* a sum of rows */
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) {
                L->g.shared_router[i] += dlogit[t] * x[(size_t)t * d + i];
                dx[(size_t)t * d + i] += dlogit[t] * L->w.shared_router[i];
            }
    }
}
