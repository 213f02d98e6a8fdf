/* model.c: building and freeing the model, its parameter table (names,
 * shapes, data, gradients), initialisation, and the public wrappers.
 * Not for: the forward and backward passes (model_pass.c) or the
 * configuration rules (model_config.c). */
#include "model/model.h"
#include "core/bigalloc.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "layer/layer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Aligned, zeroed allocation recorded for moe_model_free; NULL on failure. */
static void *model_alloc(moe_model *m, size_t bytes) { return moe_allocs_get(&m->mem, bytes); }

void moe_model_free(moe_model *m) {
    if (!m) return;
    if (m->blocks)
        for (int l = 0; l < m->cfg.n_layers; l++) moe_layer_free(m->blocks[l].moe);
    moe_allocs_free(&m->mem);
    gemm_ws_free(&m->gws);
    free(m);
}

static void add_tensor(moe_model *m, const char *name, int n_dims, int64_t d0, int64_t d1,
                       int64_t d2, float *data, float *grad, int decay) {
    moe_tensor *t = &m->tensors[m->n_tensors];
    m->n_tensors++;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->shape[0] = d0;
    t->shape[1] = n_dims > 1 ? d1 : 1;
    t->shape[2] = n_dims > 2 ? d2 : 1;
    t->n = t->shape[0] * t->shape[1] * t->shape[2];
    t->data = data;
    t->grad = grad;
    t->decay = decay;
    t->held_lo = 0;
    t->held_n = t->n;
}

/* A stacked expert tensor [E, r, c] of which experts [ex_lo, ex_hi) are held. */
static void add_experts(moe_model *m, const char *name, int64_t E, int64_t r, int64_t c, float *data,
                        float *grad) {
    add_tensor(m, name, 3, E, r, c, data, grad, 1);
    moe_tensor *t = &m->tensors[m->n_tensors - 1];
    t->held_lo = (int64_t)m->ex_lo * r * c;
    t->held_n = (int64_t)(m->ex_hi - m->ex_lo) * r * c;
}

/* The table of every parameter, in a fixed order: token_embd, each block,
 * output_norm, output. */
static void build_tensor_table(moe_model *m) {
    const moe_model_config *c = &m->cfg;
    const int64_t d = c->d_model, V = c->vocab_size, qd = (int64_t)c->n_heads * m->hd,
                  kvd = (int64_t)c->n_kv_heads * m->hd;
    char nm[64];
    add_tensor(m, "token_embd.weight", 2, V, d, 0, m->token_embd, m->g_token_embd, 1);
    for (int l = 0; l < c->n_layers; l++) {
        model_block *b = &m->blocks[l], *g = &m->gblocks[l];
#define T2(suffix, r, cc, p, gp, dec) \
        (snprintf(nm, sizeof nm, "blk.%d." suffix, l), add_tensor(m, nm, 2, r, cc, 0, p, gp, dec))
#define T1(suffix, r, p, gp) \
        (snprintf(nm, sizeof nm, "blk.%d." suffix, l), add_tensor(m, nm, 1, r, 0, 0, p, gp, 0))
        T1("attn_norm.weight", d, b->attn_norm, g->attn_norm);
        T2("attn_q.weight", qd, d, b->wq, g->wq, 1);
        T2("attn_k.weight", kvd, d, b->wk, g->wk, 1);
        T2("attn_v.weight", kvd, d, b->wv, g->wv, 1);
        T2("attn_output.weight", d, qd, b->wo, g->wo, 1);
        T1("ffn_norm.weight", d, b->ffn_norm, g->ffn_norm);
        if (b->moe) {
            const moe_layer_config *lc = moe_layer_get_config(b->moe);
            const int64_t E = lc->n_experts, F = lc->d_ff;
            moe_layer_weights w = moe_layer_params(b->moe), gw = moe_layer_grads(b->moe);
            if (lc->select != MOE_SELECT_HASH) T2("ffn_gate_inp.weight", E, d, w.router, gw.router, 1);
            if (w.gate) {
                snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", l);
                add_experts(m, nm, E, F, d, w.gate, gw.gate);
            }
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", l);
            add_experts(m, nm, E, F, d, w.up, gw.up);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", l);
            add_experts(m, nm, E, d, F, w.down, gw.down);
            if (w.noise) T2("ffn_gate_inp_noise.weight", E, d, w.noise, gw.noise, 1);
            if (w.shared_up) {
                const int64_t Fs = lc->shared_d_ff;
                T2("ffn_gate_shexp.weight", Fs, d, w.shared_gate, gw.shared_gate, 1);
                T2("ffn_up_shexp.weight", Fs, d, w.shared_up, gw.shared_up, 1);
                T2("ffn_down_shexp.weight", d, Fs, w.shared_down, gw.shared_down, 1);
                if (w.shared_router) T1("ffn_gate_inp_shexp.weight", d, w.shared_router, gw.shared_router);
            }
        } else {
            T2("ffn_gate.weight", c->d_ff, d, b->ffn_gate, g->ffn_gate, 1);
            T2("ffn_up.weight", c->d_ff, d, b->ffn_up, g->ffn_up, 1);
            T2("ffn_down.weight", d, c->d_ff, b->ffn_down, g->ffn_down, 1);
        }
#undef T1
#undef T2
    }
    add_tensor(m, "output_norm.weight", 1, d, 0, 0, m->output_norm, m->g_output_norm, 0);
    if (!c->tie_embeddings) add_tensor(m, "output.weight", 2, V, d, 0, m->output, m->g_output, 1);
}

/* Physical memory of this machine in bytes (0 when unknown). */
static double phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (double)pages * (double)psz : 0.0;
}

moe_status moe_model_check_memory(const moe_model_config *cfg, moe_error *err) {
    double need = (double)moe_model_memory_bytes(cfg), have = phys_bytes();
    if (have > 0 && need > 0.9 * have)
        return moe_err(err, MOE_ERR_NOMEM,
                       "model config needs about %.1f GiB (parameters, gradients, activations for %d x %d tokens) "
                       "but this machine has %.1f GiB: use a smaller model, --batch or --ctx",
                       need / 1073741824.0, cfg->max_batch, cfg->ctx_len, have / 1073741824.0);
    return MOE_OK;
}

moe_status moe_model_create(moe_model **out, const moe_model_config *cfg, moe_error *err) {
    return model_create(out, cfg, 0, cfg ? cfg->moe.n_experts : 0, err);
}

moe_status model_create(moe_model **out, const moe_model_config *cfg, int ex_lo, int ex_hi, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_model_create: out is NULL");
    *out = NULL;
    if (!cfg) return moe_err(err, MOE_ERR_ARG, "moe_model_create: cfg is NULL");
    moe_status st = moe_model_config_check(cfg, err);
    if (st != MOE_OK) return st;
    if (ex_lo < 0 || ex_hi > cfg->moe.n_experts || ex_lo >= ex_hi)
        return moe_err(err, MOE_ERR_ARG, "moe_model_create: experts [%d, %d) held of %d", ex_lo, ex_hi,
                       cfg->moe.n_experts);
    st = moe_model_check_memory(cfg, err);
    if (st != MOE_OK) return st;

    moe_model *m = calloc(1, sizeof *m);
    if (!m) return moe_err(err, MOE_ERR_NOMEM, "moe_model_create: out of memory");
    m->cfg = *cfg;
    m->ex_lo = ex_lo;
    m->ex_hi = ex_hi;
    const moe_model_config *c = &m->cfg;
    m->hd = c->head_dim ? c->head_dim : c->d_model / c->n_heads;
    m->n_threads = c->n_threads > 0 ? c->n_threads : omp_get_max_threads();
    {
        /* for the threads asked now or the OpenMP default, whichever is more */
        const int dflt = omp_get_max_threads();
        st = gemm_ws_init(&m->gws, m->n_threads > dflt ? m->n_threads : dflt, err);
        if (st != MOE_OK) { free(m); return st; }
    }
    const size_t d = (size_t)c->d_model, V = (size_t)c->vocab_size, L = (size_t)c->n_layers;
    const size_t qd = (size_t)c->n_heads * (size_t)m->hd, kvd = (size_t)c->n_kv_heads * (size_t)m->hd;
    const size_t F = (size_t)c->d_ff;

    /* non-expert parameters, one buffer */
    size_t n = V * d + d + (c->tie_embeddings ? 0 : V * d);
    for (size_t l = 0; l < L; l++) {
        n += 2 * d + 2 * qd * d + 2 * kvd * d;
        if (!moe_model_layer_is_moe(c, (int)l)) n += 3 * F * d;
    }
    m->n_params = n;
    m->params = model_alloc(m, n * sizeof(float));
    m->grads = model_alloc(m, n * sizeof(float));
    m->blocks = model_alloc(m, L * sizeof(model_block));
    m->gblocks = model_alloc(m, L * sizeof(model_block));
    m->tensors = model_alloc(m, (L * MODEL_MAX_TENSORS_PER_LAYER + 4) * sizeof(moe_tensor));
    if (!m->params || !m->grads || !m->blocks || !m->gblocks || !m->tensors) goto nomem;
    for (int pass = 0; pass < 2; pass++) {
        float *p = pass ? m->grads : m->params;
        model_block *bl = pass ? m->gblocks : m->blocks;
        float **emb = pass ? &m->g_token_embd : &m->token_embd;
        float **onorm = pass ? &m->g_output_norm : &m->output_norm;
        float **outp = pass ? &m->g_output : &m->output;
        *emb = p; p += V * d;
        *onorm = p; p += d;
        if (c->tie_embeddings) *outp = *emb;
        else { *outp = p; p += V * d; }
        for (size_t l = 0; l < L; l++) {
            model_block *b = &bl[l];
            b->attn_norm = p; p += d;
            b->wq = p; p += qd * d;
            b->wk = p; p += kvd * d;
            b->wv = p; p += kvd * d;
            b->wo = p; p += d * qd;
            b->ffn_norm = p; p += d;
            if (!moe_model_layer_is_moe(c, (int)l)) {
                b->ffn_gate = p; p += F * d;
                b->ffn_up = p; p += F * d;
                b->ffn_down = p; p += d * F;
            }
        }
    }
    /* MoE layers own their experts and router */
    for (int l = 0; l < c->n_layers; l++) {
        if (!moe_model_layer_is_moe(c, l)) continue;
        moe_layer_config lc = c->moe;
        lc.d_model = c->d_model;
        lc.max_tokens = c->max_batch * c->ctx_len;
        lc.n_threads = m->n_threads;
        lc.seed = c->moe.seed + 0x9E3779B97F4A7C15ull * (uint64_t)(l + 1);
        if (lc.seq_aux_loss_coef > 0 && lc.seq_len == 0) lc.seq_len = c->ctx_len;
        st = layer_create_with(&m->blocks[l].moe, &lc, &m->gws, ex_lo, ex_hi, err);
        if (st != MOE_OK) { moe_model_free(m); return st; }
        m->gblocks[l].moe = m->blocks[l].moe;
    }
    build_tensor_table(m);

    /* activations */
    const size_t N = (size_t)c->max_batch * (size_t)c->ctx_len;
    m->maxN = (int)N;
    m->tokens = model_alloc(m, N * sizeof(int32_t));
    m->targets = model_alloc(m, N * sizeof(int32_t));
    m->pos = model_alloc(m, N * sizeof(int32_t));
    m->rope_cos = model_alloc(m, (size_t)c->ctx_len * (size_t)m->hd / 2 * sizeof(float));
    m->rope_sin = model_alloc(m, (size_t)c->ctx_len * (size_t)m->hd / 2 * sizeof(float));
    m->res = model_alloc(m, (L + 1) * sizeof(float *));
    m->acts = model_alloc(m, L * sizeof(model_acts));
    if (!m->tokens || !m->targets || !m->pos || !m->rope_cos || !m->rope_sin || !m->res || !m->acts) goto nomem;
    for (size_t l = 0; l <= L; l++)
        if (!(m->res[l] = model_alloc(m, N * d * sizeof(float)))) goto nomem;
    size_t att = (size_t)c->max_batch * (size_t)c->n_heads * (size_t)c->ctx_len * (size_t)c->ctx_len;
    for (size_t l = 0; l < L; l++) {
        model_acts *a = &m->acts[l];
        int dense = !moe_model_layer_is_moe(c, (int)l);
        a->n1 = model_alloc(m, N * d * sizeof(float));
        a->rstd1 = model_alloc(m, N * sizeof(float));
        a->q = model_alloc(m, N * qd * sizeof(float));
        a->k = model_alloc(m, N * kvd * sizeof(float));
        a->v = model_alloc(m, N * kvd * sizeof(float));
        a->att = model_alloc(m, att * sizeof(float));
        a->ao = model_alloc(m, N * qd * sizeof(float));
        a->h = model_alloc(m, N * d * sizeof(float));
        a->n2 = model_alloc(m, N * d * sizeof(float));
        a->rstd2 = model_alloc(m, N * sizeof(float));
        if (!a->n1 || !a->rstd1 || !a->q || !a->k || !a->v || !a->att || !a->ao || !a->h || !a->n2 || !a->rstd2)
            goto nomem;
        if (dense) {
            a->g = model_alloc(m, N * F * sizeof(float));
            a->u = model_alloc(m, N * F * sizeof(float));
            a->a = model_alloc(m, N * F * sizeof(float));
            if (!a->g || !a->u || !a->a) goto nomem;
        }
    }
    int any_dense = 0;
    for (int l = 0; l < c->n_layers; l++) any_dense |= !moe_model_layer_is_moe(c, l);
    m->nf = model_alloc(m, N * d * sizeof(float));
    m->rstdf = model_alloc(m, N * sizeof(float));
    m->logits = model_alloc(m, N * V * sizeof(float));
    m->lse = model_alloc(m, N * sizeof(float));
    m->dres = model_alloc(m, N * d * sizeof(float));
    m->dh = model_alloc(m, N * d * sizeof(float));
    m->dn = model_alloc(m, N * d * sizeof(float));
    m->dq = model_alloc(m, N * qd * sizeof(float));
    m->dk = model_alloc(m, N * kvd * sizeof(float));
    m->dv = model_alloc(m, N * kvd * sizeof(float));
    m->dao = model_alloc(m, N * qd * sizeof(float));
    m->scratch_threads = m->n_threads;
    m->att_scratch = model_alloc(m, attention_scratch_floats(c->max_batch, c->ctx_len, c->n_heads, c->n_kv_heads,
                                                             m->hd, m->scratch_threads) * sizeof(float));
    if (!m->nf || !m->rstdf || !m->logits || !m->lse || !m->dres || !m->dh || !m->dn || !m->dq || !m->dk ||
        !m->dv || !m->dao || !m->att_scratch)
        goto nomem;
    if (any_dense) {
        m->dg = model_alloc(m, N * F * sizeof(float));
        m->du = model_alloc(m, N * F * sizeof(float));
        m->da = model_alloc(m, N * F * sizeof(float));
        if (!m->dg || !m->du || !m->da) goto nomem;
    }
    rope_table(m->rope_cos, m->rope_sin, c->ctx_len, m->hd, c->rope_theta);
    *out = m;
    return MOE_OK;
nomem:
    moe_model_free(m);
    return moe_err(err, MOE_ERR_NOMEM, "moe_model_create: out of memory (about %.2f GiB asked)",
                   (double)moe_model_memory_bytes(cfg) / 1073741824.0);
}

const moe_model_config *moe_model_get_config(const moe_model *m) { return &m->cfg; }

void moe_model_set_threads(moe_model *m, int n_threads) {
    if (n_threads > MOE_MAX_THREADS) n_threads = MOE_MAX_THREADS;
    m->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    m->cfg.n_threads = n_threads;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->blocks[l].moe) moe_layer_set_threads(m->blocks[l].moe, m->n_threads);
}

int moe_model_n_tensors(const moe_model *m) { return m->n_tensors; }

moe_status moe_model_tensor(moe_model *m, int i, moe_tensor *out, moe_error *err) {
    if (!m || !out) return moe_err(err, MOE_ERR_ARG, "moe_model_tensor: %s is NULL", m ? "out" : "model");
    if (i < 0 || i >= m->n_tensors)
        return moe_err(err, MOE_ERR_ARG, "moe_model_tensor: index %d outside 0..%d", i, m->n_tensors - 1);
    *out = m->tensors[i];
    return MOE_OK;
}

int moe_model_find_tensor(const moe_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

/* Output projections of the residual branches get a smaller scale (GPT-2). */
static int is_residual_out(const char *name) {
    return strstr(name, "attn_output.") || strstr(name, "ffn_down");
}

void moe_model_init_params(moe_model *m, uint64_t seed) {
    const float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        moe_tensor *t = &m->tensors[i];
        moe_rng r;
        /* one stream per tensor, so adding a tensor does not move the others */
        moe_rng_seed(&r, moe_fnv1a(seed ^ 0xA0761D6478BD642Full, t->name, strlen(t->name)));
        if (t->n_dims == 1) {
            for (int64_t j = 0; j < t->held_n; j++) t->data[j] = 1.0f;
        } else {
            /* every element's draw in order, the held ones kept: a shard
               gets the values of the whole tensor */
            float s = is_residual_out(t->name) ? std_out : std;
            for (int64_t j = 0; j < t->n; j++) {
                float v = s * moe_rng_normal(&r);
                if (j >= t->held_lo && j - t->held_lo < t->held_n) t->data[j - t->held_lo] = v;
            }
        }
    }
}

void moe_model_zero_grads(moe_model *m) {
    moe_big_zero(m->grads, m->n_params, m->n_threads);
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->blocks[l].moe) moe_layer_zero_grads(m->blocks[l].moe);
    m->grads_dropped = 0;
}

/* The layers are marked by model_backward, block by block, so that a
 * backward that fails half-way and is run again still writes them all. */
void moe_model_drop_grads(moe_model *m) { m->grads_dropped = 1; }
int moe_model_grads_ready(const moe_model *m) { return !m->grads_dropped; }

moe_status moe_model_forward(moe_model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
                             int train, float *loss, moe_error *err) {
    moe_err_clear(err);
    if (!m) return moe_err(err, MOE_ERR_ARG, "moe_model_forward: model is NULL");
    return model_forward(m, tokens, targets, B, T, train, loss, err);
}

moe_status moe_model_backward(moe_model *m, moe_error *err) {
    moe_err_clear(err);
    if (!m) return moe_err(err, MOE_ERR_ARG, "moe_model_backward: model is NULL");
    return model_backward(m, err);
}

const float *moe_model_logits(const moe_model *m) { return m->logits; }
moe_model_losses moe_model_get_losses(const moe_model *m) { return m->losses; }

moe_layer *moe_model_moe_layer(moe_model *m, int l) {
    if (l < 0 || l >= m->cfg.n_layers) return NULL;
    return m->blocks[l].moe;
}
