/* batch.c: the batch part of moe_infer.h: one step over many sequences of a
 * context (moe_infer_batch_eval), and each sequence's length, clearing and
 * experts per token.
 *
 * For: checking a batch (sequences, positions, token ids) and laying it out
 * as rows for infer_forward, which groups every row's tokens per expert
 * across all the sequences (one grouped product per expert per layer).
 * Not for: the forward itself (forward.c, moe_ffn.c) or the single-stream
 * moe_infer_eval (engine.c, which runs sequence 0 through the same forward).
 */
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "infer/engine.h"

int moe_infer_n_seq(const moe_infer *m) { return m->n_seq; }

int moe_infer_max_batch(const moe_infer *m) { return m->max_batch; }

int moe_infer_seq_len(const moe_infer *m, int seq) {
    return seq >= 0 && seq < m->n_seq ? m->seq_len[seq] : 0;
}

moe_status moe_infer_seq_clear(moe_infer *m, int seq, int keep, moe_error *err) {
    if (seq < 0 || seq >= m->n_seq)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_seq_clear: seq = %d (expected 0..%d)", seq,
                       m->n_seq - 1);
    if (keep < 0)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_seq_clear: keep = %d (expected >= 0)", keep);
    if (keep < m->seq_len[seq]) m->seq_len[seq] = keep;
    return MOE_OK;
}

moe_status moe_infer_seq_set_top_k(moe_infer *m, int seq, int k, moe_error *err) {
    const int E = m->am->hp.n_experts;
    if (seq < 0 || seq >= m->n_seq)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_seq_set_top_k: seq = %d (expected 0..%d)",
                       seq, m->n_seq - 1);
    if (k != 0 && E == 0)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_seq_set_top_k: the model is dense (no "
                       "experts)");
    if (k < 0 || k > E)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_seq_set_top_k: k = %d (expected 1..%d, or "
                       "0: the context's)", k, E);
    m->seq_k[seq] = k;
    return MOE_OK;
}

moe_status moe_infer_batch_eval(moe_infer *m, const int32_t *tokens, const int32_t *seq,
                                const int32_t *pos, const int8_t *want_logits, int n,
                                float *logits, moe_error *err) {
    if (!m) return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: the context is NULL");
    if (n < 0 || n > m->max_batch)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: n = %d rows (expected 0..%d, "
                       "the context's max_batch)", n, m->max_batch);
    if (n == 0) return MOE_OK;
    if (!tokens || !seq || !pos)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: %s is NULL",
                       !tokens ? "tokens" : !seq ? "seq" : "pos");
    const int V = m->am->hp.vocab_size;
    int n_runs = 0, n_out = 0;
    for (int i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= m->n_seq)
            return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: seq[%d] = %d (expected "
                           "0..%d)", i, (int)seq[i], m->n_seq - 1);
        if (tokens[i] < 0 || tokens[i] >= V)
            return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: tokens[%d] = %d out of "
                           "range (vocabulary of %d)", i, (int)tokens[i], V);
        if (pos[i] < 0 || pos[i] >= m->ctx_len)
            return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: pos[%d] = %d (expected "
                           "0..%d, ctx_len %d)", i, (int)pos[i], m->ctx_len - 1, m->ctx_len);
        if (i == 0 || seq[i] != seq[i - 1]) { /* a new run: the sequence's first row */
            for (int r = 0; r < n_runs; r++)
                if (seq[m->run_i0[r]] == seq[i])
                    return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: the rows of "
                                   "sequence %d are not consecutive (row %d)", (int)seq[i], i);
            if (pos[i] > m->seq_len[seq[i]])
                return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: pos[%d] = %d, but "
                               "sequence %d holds positions 0..%d only", i, (int)pos[i],
                               (int)seq[i], m->seq_len[seq[i]] - 1);
            m->run_i0[n_runs++] = i;
        } else if (pos[i] != pos[i - 1] + 1) {
            return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: pos[%d] = %d after %d "
                           "(a sequence's rows take consecutive positions)", i, (int)pos[i],
                           (int)pos[i - 1]);
        }
        if (want_logits && want_logits[i]) m->out_rows[n_out++] = i;
    }
    if (n_runs > 1 && m->info.one_seq_per_step)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: expert-choice routing picks "
                       "tokens over the whole step; one sequence per step (%d given)", n_runs);
    if (n_out > 0 && !logits)
        return moe_err(err, MOE_ERR_ARG, "moe_infer_batch_eval: logits is NULL but %d rows "
                       "want them", n_out);
    for (int i = 0; i < n; i++) {
        const int s = seq[i];
        m->row_seq[i] = s;
        m->row_pos[i] = pos[i];
        m->row_k[i] = m->seq_k[s] > 0 ? m->seq_k[s] : m->top_k;
    }
    for (int r = 0; r < n_runs; r++) {
        const int i0 = m->run_i0[r];
        m->seq_len[seq[i0]] = pos[i0]; /* later positions are overwritten from here on */
    }
    if (m->auto_threads) { /* the count chosen last by the single-stream decode (or the first guess) */
        m->nt = autothreads_current(&m->at);
        m->n_threads = m->nt;
    }
    moe_status st = infer_forward(m, tokens, n, n_out ? logits : NULL, n_out, err);
    if (st != MOE_OK) return st;
    for (int i = 0; i < n; i++)
        if (i + 1 == n || seq[i + 1] != seq[i]) m->seq_len[seq[i]] = pos[i] + 1;
    return MOE_OK;
}
