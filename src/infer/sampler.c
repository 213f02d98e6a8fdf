/* sampler.c: picking the next token from logits: repetition penalty, then
 * greedy (temperature 0) or top-k, temperature softmax, top-p, min-p and a
 * draw with the sampler's own splitmix64 generator (core/rng.h).
 * Not for: logits processing beyond these (grammars, logit bias), or running
 * the model.
 *
 * Steps of moe_sampler_sample, in order:
 *   1. penalty: each distinct token among the last repeat_last_n of history
 *      has its logit divided by repeat_penalty if positive, multiplied if not;
 *   2. temperature 0: the argmax (ties: lowest id); done;
 *   3. top-k: keep the k largest logits (ties: lower id first);
 *   4. p_i = softmax(logit_i / temperature) over what is kept;
 *   5. top-p: keep the smallest prefix, by decreasing p, whose mass >= top_p;
 *   6. min-p: keep p_i >= min_p * max p;
 *   7. draw u in [0, mass kept) and walk the kept tokens.
 * Min-p compares p only with the largest p, so without top-p it is applied
 * before top-k (the same set, fewer candidates); top-p sorts only the prefix
 * it keeps (blocks of 64, 128, ... best first). Without top-p the kept tokens
 * are walked in a deterministic order that is not sorted. NaN logits count as
 * -inf; all -inf gives token 0.
 * Memory: every buffer is sized for n_vocab at creation; sampling allocates
 * nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "moe_infer.h"

typedef struct cand {
    float logit; /* after the penalty (then the probability, unnormalised) */
    int32_t id;
} cand;

struct moe_sampler {
    moe_sampler_config c;
    int n_vocab;
    moe_rng rng;
    cand *cand;       /* [n_vocab] */
    uint32_t *stamp;  /* [n_vocab] last call that penalised the token */
    uint32_t calls;   /* calls so far (for stamp) */
};

void moe_sampler_config_default(moe_sampler_config *c) {
    c->temperature = 0.8f;
    c->top_k = 40;
    c->top_p = 0.95f;
    c->min_p = 0.05f;
    c->repeat_penalty = 1.0f;
    c->repeat_last_n = 64;
    c->seed = 1;
}

moe_status moe_sampler_create(moe_sampler **out, const moe_sampler_config *c, int n_vocab, moe_error *err) {
    if (!out) return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: out is NULL");
    *out = NULL;
    if (!c) return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: config is NULL");
    if (n_vocab < 1) return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: n_vocab = %d, expected >= 1", n_vocab);
    if (!(c->temperature >= 0.0f) || !isfinite(c->temperature))
        return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: temperature = %g, expected finite >= 0", c->temperature);
    if (c->top_k < 0) return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: top_k = %d, expected >= 0 (0: off)", c->top_k);
    if (!(c->top_p > 0.0f && c->top_p <= 1.0f))
        return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: top_p = %g, expected in (0, 1] (1: off)", c->top_p);
    if (!(c->min_p >= 0.0f && c->min_p <= 1.0f))
        return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: min_p = %g, expected in [0, 1] (0: off)", c->min_p);
    if (!(c->repeat_penalty > 0.0f) || !isfinite(c->repeat_penalty))
        return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: repeat_penalty = %g, expected finite > 0 (1: off)", c->repeat_penalty);
    if (c->repeat_last_n < 0)
        return moe_err(err, MOE_ERR_ARG, "moe_sampler_create: repeat_last_n = %d, expected >= 0", c->repeat_last_n);
    moe_sampler *s = calloc(1, sizeof *s);
    if (!s) return moe_err(err, MOE_ERR_NOMEM, "moe_sampler_create: out of memory");
    s->c = *c;
    s->n_vocab = n_vocab;
    moe_rng_seed(&s->rng, c->seed);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->stamp = calloc((size_t)n_vocab, sizeof *s->stamp);
    if (!s->cand || !s->stamp) {
        moe_sampler_free(s);
        return moe_err(err, MOE_ERR_NOMEM, "moe_sampler_create: out of memory for %d candidates", n_vocab);
    }
    *out = s;
    return MOE_OK;
}

void moe_sampler_free(moe_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->stamp);
    free(s);
}

/* Decreasing logit, then increasing id. */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Moves the k best of c[0, n) (cand_cmp order; 1 <= k <= n) to the front,
 * unsorted: quickselect with Hoare's partition. Invariant: everything before
 * lo is better than everything in [lo, hi), everything from hi on worse, and
 * the k-th best lies in [lo, hi). */
static void select_top(cand *c, size_t n, size_t k) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        cand pivot = c[lo + (hi - lo - 1) / 2];
        size_t i = lo - 1, j = hi; /* wraps for lo = 0; the first i++ brings it back */
        for (;;) {
            do i++; while (cand_cmp(&c[i], &pivot) < 0);
            do j--; while (cand_cmp(&c[j], &pivot) > 0);
            if (i >= j) break;
            cand t = c[i]; c[i] = c[j]; c[j] = t;
        }
        if (k - 1 <= j) hi = j + 1; /* [lo, j] holds the better part */
        else lo = j + 1;
    }
}

int moe_sampler_sample(moe_sampler *s, float *logits, const int32_t *history, int n_hist) {
    const moe_sampler_config *c = &s->c;
    const int V = s->n_vocab;
    if (c->repeat_penalty != 1.0f && c->repeat_last_n > 0 && history && n_hist > 0) {
        uint32_t stamp = ++s->calls;
        if (stamp == 0) { /* wrapped: start the stamps again */
            memset(s->stamp, 0, (size_t)V * sizeof *s->stamp);
            stamp = s->calls = 1;
        }
        int from = n_hist > c->repeat_last_n ? n_hist - c->repeat_last_n : 0;
        for (int i = from; i < n_hist; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || s->stamp[t] == stamp) continue;
            s->stamp[t] = stamp;
            logits[t] = logits[t] > 0 ? logits[t] / c->repeat_penalty : logits[t] * c->repeat_penalty;
        }
    }
    int best = 0;
    float bl = -INFINITY;
    for (int i = 0; i < V; i++) {
        float l = isnan(logits[i]) ? -INFINITY : logits[i];
        if (l > bl) { bl = l; best = i; }
    }
    if (c->temperature == 0.0f || c->top_k == 1 || bl == -INFINITY) return best;

    cand *cd = s->cand; /* .logit holds exp((l - l_max) / T) from here on */
    size_t n = 0;
    const float inv_t = 1.0f / c->temperature;
    const int prefilter = c->top_p >= 1.0f && c->min_p > 0.0f;
    for (int i = 0; i < V; i++) {
        float l = logits[i];
        if (isnan(l) || l == -INFINITY) continue;
        float p = expf((l - bl) * inv_t);
        if (prefilter && p < c->min_p) continue; /* min-p before top-k: the same set */
        cd[n].logit = p;
        cd[n++].id = i;
    }
    if (c->top_k > 0 && (size_t)c->top_k < n) {
        select_top(cd, n, (size_t)c->top_k);
        n = (size_t)c->top_k;
    }
    double mass = 0;
    for (size_t i = 0; i < n; i++) mass += cd[i].logit;
    if (c->top_p < 1.0f) {
        /* sort only as much as top-p needs: blocks of 64, 128, ... best first */
        double want = c->top_p * mass, acc = 0;
        size_t done = 0, keep = n, block = 64;
        while (done < n && keep == n) {
            size_t take = n - done < block ? n - done : block;
            select_top(cd + done, n - done, take);
            qsort(cd + done, take, sizeof *cd, cand_cmp);
            for (size_t i = done; i < done + take; i++) {
                acc += cd[i].logit;
                if (acc >= want) { keep = i + 1; break; }
            }
            done += take;
            block *= 2;
        }
        n = keep;
        while (n > 1 && cd[n - 1].logit < c->min_p) n--; /* min-p: p / p_max >= min_p */
        mass = 0;
        for (size_t i = 0; i < n; i++) mass += cd[i].logit;
    }
    double u = (double)moe_rng_f32(&s->rng) * mass, acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += cd[i].logit;
        if (u < acc) return cd[i].id;
    }
    return cd[n - 1].id;
}
