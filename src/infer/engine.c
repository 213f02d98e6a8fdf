/* engine.c: the engine part of moe_infer.h: open (map, check, size every
 * buffer once), close, info, eval in chunks, reset, top-k override, expert
 * counts.
 *
 * For: argument checks and the lifetime of a loaded model with its KV cache.
 * Not for: the forward itself (forward.c, moe_ffn.c), the meaning of the file
 * (arch.c) or the tokenizer (vocab.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "infer/engine.h"
#include "text/vocab.h"

void moe_infer_options_default(moe_infer_options *o) {
    o->n_threads = 0;
    o->ctx_len = 0;
    o->experts_per_token = 0;
    o->max_batch = 0;
    o->n_seq = 0;
}

void moe_infer_model_close(moe_infer_model *mm) {
    if (!mm) return;
    moe_vocab_free(mm->vocab);
    arch_free(&mm->am);
    gguf_close(mm->g);
    free(mm);
}

void moe_infer_close(moe_infer *m) {
    if (!m) return;
    if (m->owns_mdl) moe_infer_model_close(m->mdl);
    free(m->seq_len); free(m->seq_k);
    free(m->row_seq); free(m->row_pos); free(m->row_k);
    free(m->run_i0); free(m->run_task0); free(m->out_rows);
    free(m->k_cache); free(m->v_cache);
    free(m->rope_cos); free(m->rope_sin);
    free(m->counts);
    free(m->x); free(m->xn); free(m->y);
    free(m->q); free(m->ao); free(m->k); free(m->v);
    free(m->att); free(m->r_logits); free(m->sel); free(m->sel_w); free(m->picked);
    free(m->sel_sc); free(m->n_sel); free(m->ec_taken);
    free(m->e_count); free(m->e_off); free(m->e_row); free(m->e_w);
    free(m->t_slot); free(m->t_fill);
    free(m->xg); free(m->hg); free(m->hu); free(m->yo); free(m->mm);
    free(m->work);
    free(m);
}

const moe_infer_info *moe_infer_get_info(const moe_infer *m) { return &m->info; }
const moe_vocab *moe_infer_vocab(const moe_infer *m) { return m->mdl->vocab; }
const moe_vocab *moe_infer_model_vocab(const moe_infer_model *mm) { return mm->vocab; }
moe_infer_model *moe_infer_get_model(const moe_infer *m) { return m->mdl; }
const int64_t *moe_infer_expert_counts(const moe_infer *m) { return m->counts; }

void moe_infer_reset(moe_infer *m) {
    for (int s = 0; s < m->n_seq; s++) m->seq_len[s] = 0;
    const arch_hparams *hp = &m->am->hp;
    memset(m->counts, 0, sizeof(int64_t) * ((size_t)hp->n_layers * hp->n_experts + 1));
    memset(&m->times, 0, sizeof m->times);
}

void moe_infer_get_times(const moe_infer *m, moe_infer_times *out) {
    if (!out) return;
    if (m) *out = m->times;
    else memset(out, 0, sizeof *out);
}

static void set_active(moe_infer *m) {
    m->info.top_k = m->am->hp.n_experts > 0 ? m->top_k : 0;
    arch_active(m->am, m->am->hp.n_experts > 0 ? m->top_k : 0, &m->info.params_active,
                &m->info.bytes_active);
}

moe_status moe_infer_set_top_k(moe_infer *m, int k, moe_error *err) {
    const int E = m->am->hp.n_experts;
    if (E == 0)
        return moe_err(err, MOE_ERR_ARG, "set_top_k: the model is dense (no experts)");
    if (k < 1 || k > E)
        return moe_err(err, MOE_ERR_ARG, "set_top_k: k = %d (expected 1..%d experts)", k, E);
    m->top_k = k;
    set_active(m);
    return MOE_OK;
}

/* *need = the larger of *need and the work space of a batch of the products
 * of w, w2, w3 (NULL or without data: absent) over M rows each. */
static void work_need(size_t *need, const arch_mat *w, int64_t M, const arch_mat *w2,
                      const arch_mat *w3) {
    const arch_mat *ws[3] = {w, w2, w3};
    size_t s = 0;
    for (int i = 0; i < 3; i++)
        if (ws[i] && ws[i]->data) s += quant_matmul_work_size(ws[i]->type, M, ws[i]->cols);
    if (s > *need) *need = s;
}

/* Allocates a zeroed array of n elements of size sz into *p; 0 on failure. */
static int alloc0(void *p, size_t n, size_t sz, size_t *total) {
    void **pp = (void **)p;
    *pp = calloc(n ? n : 1, sz);
    *total += n * sz;
    return *pp != NULL;
}

/* A zeroed, 64-byte aligned array of n floats into *p (released with free);
 * 0 on failure. */
static int alloc_floats64(float **p, size_t n, size_t *total) {
    const size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    *p = aligned_alloc(64, bytes);
    if (*p) memset(*p, 0, bytes);
    *total += bytes;
    return *p != NULL;
}

static moe_status alloc_buffers(moe_infer *m, const char *path, moe_error *err) {
    const arch_hparams *hp = &m->am->hp;
    const size_t B = (size_t)m->max_batch, C = (size_t)m->ctx_len, L = (size_t)hp->n_layers;
    const size_t d = (size_t)hp->d_model, qw = (size_t)hp->n_heads * hp->head_dim;
    const size_t kvw = (size_t)hp->n_kv_heads * hp->head_dim;
    const size_t E = (size_t)hp->n_experts, ff = (size_t)hp->n_ff_max, half = (size_t)hp->n_rot / 2;
    const size_t Hkv = (size_t)hp->n_kv_heads;
    const size_t S = (size_t)m->n_seq;
    const double kv_bytes = ((double)L * Hkv * attn_kt_floats(m->ctx_len, hp->head_dim) +
                             (double)L * C * kvw) * sizeof(float) * (double)S;
    if (kv_bytes > (double)SIZE_MAX / 2)
        return moe_err(err, MOE_ERR_NOMEM, "%s: a KV cache of %.0f bytes for ctx_len %d does "
                       "not fit; lower ctx_len", path, kv_bytes, m->ctx_len);
    m->kt_floats = attn_kt_floats(m->ctx_len, hp->head_dim);
    m->att_lds = (C + ATTN_KB - 1) / ATTN_KB * ATTN_KB;
    m->attn = attn_kernel_get(attn_best_kernel(hp->head_dim), hp->head_dim);
    /* the experts' scratch holds all n * top_k rows of a chunk at the top_k of
     * the open (a larger k set later runs in more waves) */
    m->moe_rows = m->max_batch * (E > 0 && m->top_k > 1 ? m->top_k : 1);
    const size_t R = (size_t)m->moe_rows;
    size_t total = 0;
    m->k_seq = L * Hkv * m->kt_floats;
    m->v_seq = L * C * kvw;
    int ok = alloc_floats64(&m->k_cache, S * m->k_seq, &total) &&
             alloc_floats64(&m->v_cache, S * m->v_seq, &total);
    if (!ok)
        return moe_err(err, MOE_ERR_NOMEM, "%s: KV cache of %.1f MiB (%zu layers x %d positions "
                       "x %zu x 2 floats x %zu sequences); lower ctx_len", path,
                       kv_bytes / 1048576.0, L, m->ctx_len, kvw, S);
    ok = alloc0(&m->seq_len, S, sizeof(int), &total) &&
         alloc0(&m->seq_k, S, sizeof(int), &total) &&
         alloc0(&m->row_seq, B, sizeof(int), &total) &&
         alloc0(&m->row_pos, B, sizeof(int), &total) &&
         alloc0(&m->row_k, B, sizeof(int), &total) &&
         alloc0(&m->run_i0, B + 1, sizeof(int), &total) &&
         alloc0(&m->run_task0, B + 1, sizeof(int), &total) &&
         alloc0(&m->out_rows, B, sizeof(int), &total) &&
         alloc0(&m->rope_cos, C * half, sizeof(float), &total) &&
         alloc0(&m->rope_sin, C * half, sizeof(float), &total) &&
         alloc0(&m->counts, L * E + 1, sizeof(int64_t), &total) &&
         alloc0(&m->x, B * d, sizeof(float), &total) &&
         alloc0(&m->xn, B * d, sizeof(float), &total) &&
         alloc0(&m->y, B * d, sizeof(float), &total) &&
         alloc0(&m->q, B * qw, sizeof(float), &total) &&
         alloc0(&m->ao, B * qw, sizeof(float), &total) &&
         alloc0(&m->k, B * kvw, sizeof(float), &total) &&
         alloc0(&m->v, B * kvw, sizeof(float), &total) &&
         alloc_floats64(&m->att, (size_t)m->nt * ATTN_RMAX * m->att_lds, &total) &&
         alloc0(&m->r_logits, B * E, sizeof(float), &total) &&
         alloc0(&m->sel, B * E, sizeof(int), &total) &&
         alloc0(&m->sel_w, B * E, sizeof(float), &total) &&
         alloc0(&m->picked, E, 1, &total) &&
         alloc0(&m->sel_sc, E, sizeof(float), &total) &&
         alloc0(&m->n_sel, B, sizeof(int), &total) &&
         alloc0(&m->ec_taken, B, 1, &total) &&
         alloc0(&m->e_count, E, sizeof(int), &total) &&
         alloc0(&m->e_off, E + 1, sizeof(int), &total) &&
         alloc0(&m->e_row, B * E, sizeof(int), &total) &&
         alloc0(&m->e_w, B * E, sizeof(float), &total) &&
         alloc0(&m->t_slot, B * E, sizeof(int), &total) &&
         alloc0(&m->t_fill, B, sizeof(int), &total) &&
         alloc0(&m->xg, R, d * sizeof(float), &total) &&
         alloc0(&m->hg, R, ff * sizeof(float), &total) &&
         alloc0(&m->hu, R, ff * sizeof(float), &total) &&
         alloc0(&m->yo, R, d * sizeof(float), &total) &&
         alloc0(&m->mm, 2 * E + 3, sizeof(quant_mm), &total);
    if (!ok)
        return moe_err(err, MOE_ERR_NOMEM, "%s: scratch buffers for max_batch %d (about %.1f "
                       "MiB)", path, m->max_batch, total / 1048576.0);

    /* the batches (forward.c, moe_ffn.c): q k v, gate up, and an expert
     * wave's gate up (down) over up to R distinct rows; the sum of the
     * members' needs bounds a batch's (shared activations only lower it) */
    size_t need = 0;
    const int64_t M = m->max_batch;
    work_need(&need, &m->am->output, M, NULL, NULL);
    for (int l = 0; l < hp->n_layers; l++) {
        const arch_layer *ly = &m->am->layers[l];
        work_need(&need, &ly->wq, M, &ly->wk, &ly->wv);
        work_need(&need, &ly->wo, M, NULL, NULL);
        work_need(&need, &ly->ffn_gate, M, &ly->ffn_up, NULL);
        work_need(&need, &ly->ffn_down, M, NULL, NULL);
        work_need(&need, &ly->gate_inp, M, NULL, NULL);
        work_need(&need, &ly->gate_exps, R, &ly->up_exps, NULL);
        work_need(&need, &ly->down_exps, R, NULL, NULL);
        work_need(&need, &ly->gate_shexp, M, &ly->up_shexp, NULL);
        work_need(&need, &ly->down_shexp, M, NULL, NULL);
    }
    /* the largest batch's bookkeeping: a wave of E experts' gate and up */
    need += quant_matmul_batch_index_size(2 * hp->n_experts + 3);
    if (need > 0 && !(m->work = malloc(need)))
        return moe_err(err, MOE_ERR_NOMEM, "%s: %zu bytes of matmul work space", path, need);
    m->work_size = need;

    /* RoPE table: angle(p, i) = p * freq_scale * base^(-2i/n_rot) / freq_factor[i]. */
    for (size_t p = 0; p < C; p++)
        for (size_t i = 0; i < half; i++) {
            double th = (double)p * hp->rope_freq_scale *
                        pow((double)hp->rope_base, -2.0 * (double)i / hp->n_rot);
            if (m->am->rope_freqs) th /= m->am->rope_freqs[i];
            m->rope_cos[p * half + i] = (float)cos(th);
            m->rope_sin[p * half + i] = (float)sin(th);
        }
    return MOE_OK;
}

/* Maps the file, binds the architecture and builds the vocabulary. */
static moe_status model_checked(moe_infer_model *mm, const char *path, moe_error *err) {
    snprintf(mm->path, sizeof mm->path, "%s", path);
    moe_status st = gguf_open_file(&mm->g, path, err);
    if (st != MOE_OK) return st;
    if ((st = arch_load(&mm->am, mm->g, err)) != MOE_OK) return st;
    const arch_hparams *hp = &mm->am.hp;
    if (gguf_find_kv(mm->g, "tokenizer.ggml.model")) {
        if ((st = vocab_from_gguf(&mm->vocab, mm->g, err)) != MOE_OK) return st;
        if (moe_vocab_size(mm->vocab) != hp->vocab_size)
            return moe_err(err, MOE_ERR_FORMAT, "%s: the tokenizer has %d tokens, "
                           "token_embd.weight has %d rows", path, moe_vocab_size(mm->vocab),
                           hp->vocab_size);
    }
    return MOE_OK;
}

moe_status moe_infer_model_open(moe_infer_model **out, const char *path, moe_error *err) {
    if (!out || !path)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_model_open: %s is NULL",
                       out ? "path" : "out");
    *out = NULL;
    moe_infer_model *mm = calloc(1, sizeof *mm);
    if (!mm) return moe_err(err, MOE_ERR_NOMEM, "moe_infer_model_open: %zu bytes", sizeof *mm);
    moe_status st = model_checked(mm, path, err);
    if (st != MOE_OK) {
        moe_infer_model_close(mm);
        return st;
    }
    *out = mm;
    return MOE_OK;
}

/* Sizes the context m on its model from the options (checked). */
static moe_status ctx_checked(moe_infer *m, const moe_infer_options *o, moe_error *err) {
    const char *path = m->mdl->path;
    const arch_hparams *hp = &m->am->hp;
    const gguf_ctx *g = m->mdl->g;
    moe_status st;
    if (o->experts_per_token != 0) {
        if (hp->n_experts == 0)
            return moe_err(err, MOE_ERR_ARG, "%s: experts_per_token = %d but the model is "
                           "dense", path, o->experts_per_token);
        if (o->experts_per_token < 1 || o->experts_per_token > hp->n_experts)
            return moe_err(err, MOE_ERR_ARG, "%s: experts_per_token = %d (expected 1..%d)",
                           path, o->experts_per_token, hp->n_experts);
        m->top_k = o->experts_per_token;
    } else {
        m->top_k = hp->top_k;
    }
    if (o->ctx_len > 0) m->ctx_len = o->ctx_len;
    else m->ctx_len = hp->ctx_train > 0 && hp->ctx_train < 4096 ? hp->ctx_train : 4096;
    m->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    m->max_batch = o->max_batch > 0 ? o->max_batch : 512;
    /* a step holds at most ctx_len rows of each sequence */
    if ((int64_t)m->max_batch > (int64_t)m->ctx_len * m->n_seq)
        m->max_batch = m->ctx_len * m->n_seq;
    m->n_threads = o->n_threads;
#ifdef _OPENMP
    m->nt = o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
#else
    m->nt = 1;
#endif
    if (m->nt < 1) m->nt = 1;
    m->nt_max = m->nt;
    m->auto_threads = o->n_threads <= 0;
    autothreads_init(&m->at, m->nt, 2);
    if ((st = alloc_buffers(m, path, err)) != MOE_OK) return st;

    moe_infer_info *in = &m->info;
    const char *s = NULL;
    gguf_get_str(g, "general.architecture", &s, NULL, NULL);
    snprintf(in->arch, sizeof in->arch, "%s", s ? s : "");
    arch_runs_in(m->am, in->runs_in, sizeof in->runs_in);
    in->one_seq_per_step = hp->select == ARCH_SEL_EC;
    s = NULL;
    /* free text from the file, printed by `moe inspect` and `moe run`: its
     * control characters escaped */
    if (gguf_find_kv(g, "general.name") &&
        gguf_get_str(g, "general.name", &s, NULL, NULL) == MOE_OK)
        moe_escape_ctrl(in->name, sizeof in->name, s, strlen(s), 0);
    in->n_layers = hp->n_layers;
    in->d_model = hp->d_model;
    in->n_heads = hp->n_heads;
    in->n_kv_heads = hp->n_kv_heads;
    in->head_dim = hp->head_dim;
    in->vocab_size = hp->vocab_size;
    in->ctx_len = m->ctx_len;
    in->n_experts = hp->n_experts;
    in->n_dense_layers = hp->n_dense_layers;
    in->params_total = m->am->params_total;
    in->bytes_total = m->am->bytes_total;
    set_active(m);
    return MOE_OK;
}

static moe_status check_options(const moe_infer_options *o, const char *fn, moe_error *err) {
    if (o->ctx_len < 0 || o->max_batch < 0 || o->experts_per_token < 0 || o->n_seq < 0)
        return moe_err(err, MOE_ERR_ARG, "%s: ctx_len = %d, max_batch = %d, "
                       "experts_per_token = %d, n_seq = %d (expected >= 0; 0 = the default)",
                       fn, o->ctx_len, o->max_batch, o->experts_per_token, o->n_seq);
    return MOE_OK;
}

/* A context on mdl (owned when own: closed with it, also on failure). */
static moe_status create_ctx(moe_infer **out, moe_infer_model *mdl, int own,
                             const moe_infer_options *o, moe_error *err) {
    moe_infer *m = calloc(1, sizeof *m);
    if (!m) {
        if (own) moe_infer_model_close(mdl);
        return moe_err(err, MOE_ERR_NOMEM, "moe_infer: %zu bytes", sizeof *m);
    }
    m->mdl = mdl;
    m->owns_mdl = own;
    m->am = &mdl->am;
    moe_status st = ctx_checked(m, o, err);
    if (st != MOE_OK) {
        moe_infer_close(m);
        return st;
    }
    *out = m;
    return MOE_OK;
}

moe_status moe_infer_create(moe_infer **out, moe_infer_model *mdl, const moe_infer_options *opt,
                            moe_error *err) {
    if (!out || !mdl)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_create: %s is NULL", out ? "model" : "out");
    *out = NULL;
    moe_infer_options o;
    if (opt) o = *opt;
    else moe_infer_options_default(&o);
    moe_status st = check_options(&o, "moe_infer_create", err);
    if (st != MOE_OK) return st;
    return create_ctx(out, mdl, 0, &o, err);
}

moe_status moe_infer_open(moe_infer **out, const char *path, const moe_infer_options *opt,
                          moe_error *err) {
    if (!out || !path)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_open: %s is NULL", out ? "path" : "out");
    *out = NULL;
    moe_infer_options o;
    if (opt) o = *opt;
    else moe_infer_options_default(&o);
    moe_status st = check_options(&o, "moe_infer_open", err);
    if (st != MOE_OK) return st;
    moe_infer_model *mdl;
    if ((st = moe_infer_model_open(&mdl, path, err)) != MOE_OK) return st;
    return create_ctx(out, mdl, 1, &o, err);
}

moe_status moe_infer_eval(moe_infer *m, const int32_t *tokens, int n, int pos, float *logits,
                          int all_logits, moe_error *err) {
    if (!m || (n > 0 && !tokens))
        return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: %s is NULL", m ? "tokens" : "model");
    if (n < 0 || pos < 0)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: n = %d, pos = %d (expected >= 0)",
                       n, pos);
    if (pos > m->seq_len[0])
        return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: pos = %d, but the KV cache holds "
                       "positions 0..%d only (evaluate from pos <= %d)", pos, m->seq_len[0] - 1,
                       m->seq_len[0]);
    if ((int64_t)pos + n > m->ctx_len)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: pos + n = %lld exceeds ctx_len = %d",
                       (long long)pos + n, m->ctx_len);
    const int V = m->am->hp.vocab_size;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: tokens[%d] = %d out of range "
                           "(vocabulary of %d)", i, (int)tokens[i], V);
    if (n == 0) return MOE_OK;
    if (logits && moe_overlap(logits, sizeof(float) * (size_t)V * (all_logits ? (size_t)n : 1),
                              tokens, sizeof(int32_t) * (size_t)n))
        return moe_err(err, MOE_ERR_ARG, "moe_infer_eval: logits overlaps tokens");

    m->seq_len[0] = pos; /* later positions are overwritten from here on */
    /* with no thread count given, decoded tokens (n == 1) run at the count
     * measured fastest now (core/autothreads.h; they are its units), longer
     * chunks at the count chosen last */
    const int unit = m->auto_threads && n == 1;
    if (m->auto_threads) {
        m->nt = unit ? autothreads_begin(&m->at) : autothreads_current(&m->at);
        m->n_threads = m->nt;
    }
    const int k = m->seq_k[0] > 0 ? m->seq_k[0] : m->top_k;
    moe_status st = MOE_OK;
    for (int off = 0; off < n && st == MOE_OK; off += m->max_batch) {
        const int nc = n - off < m->max_batch ? n - off : m->max_batch;
        float *lg = NULL;
        int n_out = 0;
        if (logits && all_logits) {
            lg = logits + (size_t)off * V;
            for (int i = 0; i < nc; i++) m->out_rows[n_out++] = i;
        } else if (logits && off + nc == n) {
            lg = logits;
            m->out_rows[n_out++] = nc - 1;
        }
        for (int i = 0; i < nc; i++) {
            m->row_seq[i] = 0;
            m->row_pos[i] = pos + off + i;
            m->row_k[i] = k;
        }
        st = infer_forward(m, tokens + off, nc, lg, n_out, err);
        if (st == MOE_OK) m->seq_len[0] = pos + off + nc;
    }
    if (unit && st == MOE_OK) autothreads_end(&m->at);
    return st;
}

moe_status infer_set_dist(moe_infer *m, moe_comm *comm, moe_error *err) {
    const int E = m->am->hp.n_experts, P = comm->size;
    if (E > 0 && E % P)
        return moe_err(err, MOE_ERR_ARG, "distributed inference: %d experts cannot be sharded evenly over %d ranks "
                       "(E %% P = %d)", E, P, E % P);
    m->ep = comm;
    m->e_lo = E > 0 ? comm->rank * (E / P) : 0;
    m->e_hi = E > 0 ? (comm->rank + 1) * (E / P) : 0;
    return MOE_OK;
}
