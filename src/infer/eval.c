/* eval.c: perplexity of a token stream under a model (moe_infer_perplexity):
 * windows of the stream through the engine, -ln p of each scored target by
 * a log-softmax of the logits, sums and byte counts for bits per byte.
 * The two scorings (sliding windows; llama.cpp's llama-perplexity chunks)
 * are described in include/moe_infer.h.
 *
 * Not for: reading or tokenizing files, tables, progress bars (cli/eval.c);
 * the trainer's validation (src/train/trainer.c), which this reproduces with
 * stride = ctx.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/error.h"
#include "moe_infer.h"

void moe_ppl_options_default(moe_ppl_options *o) {
    memset(o, 0, sizeof *o);
    o->scoring = MOE_PPL_SLIDING;
}

/* -ln softmax(l)[tok] over l[0, V), as llama.cpp's perplexity computes it:
 * the max in float, the sum of expf in double. */
static double nll_of(const float *l, int V, int tok) {
    float mx = l[0];
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += expf(l[i] - mx);
    return -((double)(l[tok] - mx) - log(sum));
}

moe_status moe_infer_perplexity(moe_infer *m, const int32_t *tokens, int64_t n,
                                const moe_ppl_options *opt, double *nll_out,
                                moe_ppl_result *r, moe_error *err) {
    if (!m || !tokens || !r) return moe_err(err, MOE_ERR_ARG, "moe_infer_perplexity: NULL %s",
                                            !m ? "model" : !tokens ? "tokens" : "result");
    moe_ppl_options o;
    if (opt) o = *opt;
    else moe_ppl_options_default(&o);
    const moe_infer_info *in = moe_infer_get_info(m);
    const int V = in->vocab_size;
    const int C = o.ctx > 0 ? o.ctx : in->ctx_len;
    const int S = o.stride > 0 ? o.stride : C;
    const int Bt = o.batch > 0 ? o.batch : 512;
    memset(r, 0, sizeof *r);
    if (o.scoring != MOE_PPL_SLIDING && o.scoring != MOE_PPL_LLAMA)
        return moe_err(err, MOE_ERR_ARG, "perplexity: unknown scoring %d", (int)o.scoring);
    if (o.ctx < 0 || o.stride < 0 || o.batch < 0)
        return moe_err(err, MOE_ERR_ARG, "perplexity: ctx %d, stride %d, batch %d (expected >= 0)",
                       o.ctx, o.stride, o.batch);
    if (C < 2 || C > in->ctx_len)
        return moe_err(err, MOE_ERR_ARG, "perplexity: window of %d tokens (expected 2 .. the engine's "
                       "context, %d)", C, in->ctx_len);
    if (S > C) return moe_err(err, MOE_ERR_ARG, "perplexity: stride %d > window %d", S, C);
    if (o.scoring == MOE_PPL_LLAMA && o.stride > 0 && o.stride != C)
        return moe_err(err, MOE_ERR_ARG, "perplexity: llama.cpp's scoring uses non-overlapping windows "
                       "(stride = ctx), not stride %d", o.stride);
    if (n < 2) return moe_err(err, MOE_ERR_ARG, "perplexity: %lld tokens (at least 2 needed)", (long long)n);
    if (o.scoring == MOE_PPL_LLAMA && n < C)
        return moe_err(err, MOE_ERR_ARG, "perplexity: %lld tokens, fewer than one chunk of %d (llama.cpp's "
                       "scoring): use a smaller --ctx", (long long)n, C);

    const moe_vocab *voc = moe_infer_vocab(m);
    const int bos = voc ? moe_vocab_bos(voc) : -1;
    const int half_bos = o.scoring == MOE_PPL_LLAMA && bos >= 0 && tokens[0] == bos;
    const int64_t n_chunks = n / C;
    const int64_t total = o.scoring == MOE_PPL_LLAMA ? n_chunks * (C - 1 - C / 2) : n - 1;
    float *lg = malloc(sizeof(float) * (size_t)Bt * (size_t)V);
    double *row = malloc(sizeof(double) * (size_t)Bt);
    int32_t *win = malloc(sizeof(int32_t) * (size_t)C);
    if (!lg || !row || !win) {
        free(lg); free(row); free(win);
        return moe_err(err, MOE_ERR_NOMEM, "perplexity: out of memory (logits of %d x %d)", Bt, V);
    }
    if (nll_out)
        for (int64_t t = 0; t < n; t++) nll_out[t] = NAN;

    moe_status st = MOE_OK;
    int64_t scored_upto = 0; /* sliding: targets 1 .. scored_upto are done */
    for (int64_t k = 0;; k++) {
        int64_t s;
        int len, first;      /* window tokens[s, s + len); positions >= first are scored */
        if (o.scoring == MOE_PPL_LLAMA) {
            if (k >= n_chunks) break;
            s = k * C;
            len = C;
            first = C / 2;
        } else {
            s = k * (int64_t)S;
            if (s >= n - 1) break;
            len = (int)(n - 1 - s < C ? n - 1 - s : C); /* every input position has a target */
            first = (int)(scored_upto - s); /* position j predicts target s + j + 1 */
            if (first < 0) first = 0;
        }
        memcpy(win, tokens + s, sizeof(int32_t) * (size_t)len);
        if (half_bos) win[0] = bos;
        const int last = o.scoring == MOE_PPL_LLAMA ? len - 1 : len; /* scored positions [first, last) */
        for (int b0 = 0; b0 < len && st == MOE_OK; b0 += Bt) {
            const int nb = len - b0 < Bt ? len - b0 : Bt;
            const int lo = first > b0 ? first : b0, hi = last < b0 + nb ? last : b0 + nb;
            st = cancel_check(err, "perplexity"); /* moe_cancel: stop between batches */
            if (st != MOE_OK) break;
            st = moe_infer_eval(m, win + b0, nb, b0, hi > lo ? lg : NULL, 1, err);
            if (st != MOE_OK) {
                st = moe_err(err, st, "perplexity, window %lld (tokens %lld..%lld): %s", (long long)k,
                             (long long)s, (long long)(s + len - 1), err ? err->msg : "");
                break;
            }
            if (hi <= lo) continue;
            #pragma omp parallel for schedule(static)
            for (int j = lo; j < hi; j++)
                row[j - lo] = nll_of(lg + (size_t)(j - b0) * V, V, tokens[s + j + 1]);
            for (int j = lo; j < hi; j++) { /* in order: the sum does not depend on threads */
                const int32_t tgt = tokens[s + j + 1];
                r->nll += row[j - lo];
                r->n_scored++;
                if (nll_out) nll_out[s + j + 1] = row[j - lo];
                if (voc) {
                    size_t pl = 0;
                    char buf[64];
                    moe_vocab_piece(voc, tgt, 0, buf, sizeof buf, &pl);
                    r->n_bytes += (int64_t)pl;
                }
            }
            if (o.progress) o.progress(o.user, r->n_scored, total);
        }
        if (st != MOE_OK) break;
        r->n_windows++;
        if (o.scoring == MOE_PPL_SLIDING) {
            scored_upto = s + len;
            if (s + len >= n - 1) break;
        }
    }
    moe_infer_reset(m);
    free(lg);
    free(row);
    free(win);
    return st;
}
