/* sched.c: the scheduler of `moe serve`: one thread that runs batch steps
 * (moe_infer_batch_eval) over every running request, continuous batching at
 * token granularity.
 *
 * For: admitting queued requests into free sequences, building each step
 * (one decode row per generating request first, then prompt chunks up to
 * the context's max_batch rows; for an expert-choice model, whose routing
 * over a step would mix the sequences, one sequence per step in turn),
 * sampling (presence and frequency penalties,
 * then the request's sampler), stop strings and EOS, releasing text to the
 * HTTP side, cancellation, statistics. Not for: HTTP (http.c) or checking
 * requests (request.c).
 *
 * Locking: one mutex guards the queue, the slots' membership, every
 * request's shared fields (serve.h) and the statistics; the step itself runs
 * unlocked (only this thread touches the context and the scheduler-only
 * fields). cv_work wakes the thread, cv_out the HTTP threads waiting on a
 * request.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "serve/serve.h"

struct sched {
    moe_infer *ctx;
    const moe_vocab *v;
    int V, n_seq, max_batch, ctx_len, top_k, n_counts;
    int one_seq;                 /* expert choice: one sequence per step (moe_infer_info) */
    int next_seq;                /* one_seq: the slot to look at first, round robin */
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_out;
    int stop, draining;
    serve_req *q_head, *q_tail;  /* waiting, FIFO */
    int n_queued, queue_max;
    serve_req **slot;            /* [n_seq] running requests */
    int n_running;
    /* one step */
    int32_t *tok, *seq, *pos;    /* [max_batch] */
    int8_t *want;                /* [max_batch] */
    serve_req **row_req;         /* [max_batch] */
    float *logits;               /* [n_seq, V] */
    /* statistics */
    serve_stats st;
    int64_t *counts;             /* [n_counts] expert counts after the latest step */
    double rate_t0;
    int64_t rate_n0;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void sched_lock(sched *s) { pthread_mutex_lock(&s->mu); }
void sched_unlock(sched *s) { pthread_mutex_unlock(&s->mu); }

/* Drops one reference of r (locked); frees it at zero. */
static void unref(serve_req *r) {
    if (--r->refs == 0) serve_req_free(r);
}

/* Appends r->gen[0, n) to r->out (locked) and keeps the rest in gen. */
static void release_text(serve_req *r, size_t n) {
    if (n == 0) return;
    if (r->out_n + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap * 2 : 256;
        while (cap < r->out_n + n + 1) cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) {
            r->finish = FIN_ERROR;
            snprintf(r->err_msg, sizeof r->err_msg, "out of memory");
            return;
        }
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_n, r->gen, n);
    r->out_n += n;
    r->out[r->out_n] = 0;
    memmove(r->gen, r->gen + n, r->gen_n - n);
    r->gen_n -= n;
}

/* Ends running request r (locked): the rest of its text, its slot, the
 * scheduler's reference. */
static void finish(sched *s, serve_req *r, int why) {
    if (why != FIN_CANCEL && why != FIN_ERROR) release_text(r, r->gen_n);
    if (r->finish == FIN_NONE) r->finish = why;
    if (why == FIN_CANCEL) s->st.requests_cancelled++;
    else if (why == FIN_ERROR) s->st.requests_err++;
    else s->st.requests_ok++;
    if (r->slot >= 0) {
        s->slot[r->slot] = NULL;
        s->n_running--;
        r->slot = -1;
    }
    unref(r);
}

/* Sets up r to run in sequence i (locked); 0 on failure (r finished). */
static int admit(sched *s, serve_req *r, int i) {
    moe_error err;
    snprintf(err.msg, sizeof err.msg, "out of memory");
    moe_sampler_config c;
    moe_sampler_config_default(&c);
    c.temperature = r->temperature;
    c.top_k = r->top_k;
    c.top_p = r->top_p;
    c.min_p = r->min_p;
    c.repeat_penalty = 1.0f;
    c.seed = r->seed;
    r->slot = i;
    s->slot[i] = r;
    s->n_running++;
    r->hist = malloc(sizeof(int32_t) * (size_t)(r->n_prompt + r->max_tokens + 1));
    if (r->presence != 0.0f || r->frequency != 0.0f)
        r->tok_count = calloc((size_t)s->V, sizeof(int));
    if (!r->hist || ((r->presence != 0.0f || r->frequency != 0.0f) && !r->tok_count) ||
        moe_sampler_create(&r->smp, &c, s->V, &err) != MOE_OK ||
        moe_infer_seq_clear(s->ctx, i, 0, &err) != MOE_OK ||
        moe_infer_seq_set_top_k(s->ctx, i, r->k, &err) != MOE_OK) {
        snprintf(r->err_msg, sizeof r->err_msg, "%.200s", err.msg);
        finish(s, r, FIN_ERROR);
        return 0;
    }
    memcpy(r->hist, r->prompt, sizeof(int32_t) * (size_t)r->n_prompt);
    r->n_hist = r->n_prompt;
    r->n_fed = 0;
    r->k_used = r->k > 0 ? r->k : s->top_k;
    s->st.tokens_prompt += r->n_prompt;
    return 1;
}

/* Drops cancelled requests and fills free sequences from the queue (locked). */
static void admit_all(sched *s) {
    for (int i = 0; i < s->n_seq; i++)
        if (s->slot[i] && s->slot[i]->cancelled) finish(s, s->slot[i], FIN_CANCEL);
    for (int i = 0; i < s->n_seq && s->q_head; i++) {
        if (s->slot[i]) continue;
        serve_req *r = s->q_head;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        s->n_queued--;
        r->next = NULL;
        if (r->cancelled) {
            r->finish = FIN_CANCEL;
            s->st.requests_cancelled++;
            unref(r);
            i--; /* the slot is still free */
            continue;
        }
        admit(s, r, i);
    }
}

/* The longest tail of text[0, n) that begins one of r's stop strings
 * (those bytes may not be released yet). */
static size_t stop_hold(const serve_req *r, const char *text, size_t n) {
    size_t hold = 0;
    for (int k = 0; k < r->n_stop; k++) {
        const size_t L = strlen(r->stop[k]);
        for (size_t t = L - 1 < n ? L - 1 : n; t > hold; t--)
            if (!memcmp(text + n - t, r->stop[k], t)) { hold = t; break; }
    }
    return hold;
}

/* The next token of r from its logits lg[V] (locked); finishes r when done. */
static void next_token(sched *s, serve_req *r, float *lg, double t) {
    if (r->tok_count)
        for (int i = 0; i < s->V; i++)
            if (r->tok_count[i]) lg[i] -= r->presence + r->frequency * (float)r->tok_count[i];
    const int32_t tok = moe_sampler_sample(r->smp, lg, r->hist, r->n_hist);
    if (r->n_gen == 0) r->t_first = t;
    r->t_last = t;
    if (!r->ignore_eos && moe_vocab_is_eog(s->v, tok)) {
        finish(s, r, FIN_STOP);
        return;
    }
    r->n_gen++;
    s->st.tokens_gen++;
    r->hist[r->n_hist++] = tok;
    if (r->tok_count) r->tok_count[tok]++;
    size_t len;
    const char *piece = moe_vocab_piece(s->v, tok, 0, NULL, 0, &len);
    if (r->gen_n + len + 1 > r->gen_cap) {
        size_t cap = r->gen_cap ? r->gen_cap * 2 : 256;
        while (cap < r->gen_n + len + 1) cap *= 2;
        char *p = realloc(r->gen, cap);
        if (!p) {
            snprintf(r->err_msg, sizeof r->err_msg, "out of memory");
            finish(s, r, FIN_ERROR);
            return;
        }
        r->gen = p;
        r->gen_cap = cap;
    }
    memcpy(r->gen + r->gen_n, piece, len);
    r->gen_n += len;
    /* the earliest complete stop string ends the text */
    size_t cut = SIZE_MAX;
    for (int k = 0; k < r->n_stop; k++) {
        const char *hit = memmem(r->gen, r->gen_n, r->stop[k], strlen(r->stop[k]));
        if (hit && (size_t)(hit - r->gen) < cut) cut = (size_t)(hit - r->gen);
    }
    if (cut != SIZE_MAX) {
        r->gen_n = cut;
        finish(s, r, FIN_STOP);
        return;
    }
    if (r->n_gen >= r->max_tokens || r->n_hist >= s->ctx_len) {
        finish(s, r, FIN_LENGTH);
        return;
    }
    release_text(r, utf8_safe_len(r->gen, r->gen_n - stop_hold(r, r->gen, r->gen_n)));
    r->last = tok;
}

/* One batch step over the running requests (unlocked, then locked for the
 * results). */
static void step(sched *s) {
    int n = 0;
    /* an expert-choice model: the running sequences take turns, one per
     * step (its routing over a step would mix them), the next one after
     * the last served */
    int only = -1;
    for (int k = 0; k < s->n_seq && s->one_seq; k++) {
        const int i = (s->next_seq + k) % s->n_seq;
        if (s->slot[i]) { only = i; break; }
    }
    if (only >= 0) s->next_seq = (only + 1) % s->n_seq;
    for (int i = 0; i < s->n_seq; i++) { /* decode rows first */
        serve_req *r = s->slot[i];
        if (!r || r->n_fed < r->n_prompt || (only >= 0 && i != only)) continue;
        s->tok[n] = r->last;
        s->seq[n] = i;
        s->pos[n] = r->n_hist - 1;
        s->want[n] = 1;
        s->row_req[n++] = r;
    }
    for (int i = 0; i < s->n_seq && n < s->max_batch; i++) { /* then prompt chunks */
        serve_req *r = s->slot[i];
        if (!r || r->n_fed >= r->n_prompt || (only >= 0 && i != only)) continue;
        int c = r->n_prompt - r->n_fed;
        if (c > s->max_batch - n) c = s->max_batch - n;
        for (int j = 0; j < c; j++) {
            s->tok[n] = r->prompt[r->n_fed + j];
            s->seq[n] = i;
            s->pos[n] = r->n_fed + j;
            s->want[n] = r->n_fed + j + 1 == r->n_prompt;
            s->row_req[n++] = r;
        }
    }
    const double t0 = now_s();
    moe_error err;
    const moe_status rc = moe_infer_batch_eval(s->ctx, s->tok, s->seq, s->pos, s->want, n,
                                               s->logits, &err);
    const double t1 = now_s();
    sched_lock(s);
    s->st.steps++;
    s->st.rows += n;
    s->st.last_batch = n;
    s->st.busy_s += t1 - t0;
    int o = 0;
    if (rc != MOE_OK) { /* every request of the step fails */
        for (int i = 0; i < s->n_seq; i++) {
            serve_req *r = s->slot[i];
            if (!r) continue;
            snprintf(r->err_msg, sizeof r->err_msg, "%.200s", err.msg);
            finish(s, r, FIN_ERROR);
        }
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        serve_req *r = s->row_req[i];
        if (r->n_fed < r->n_prompt) r->n_fed++;
        if (!s->want[i]) continue;
        float *lg = s->logits + (size_t)o++ * s->V;
        if (r->slot >= 0 && !r->cancelled) next_token(s, r, lg, t1);
    }
    if (s->n_counts > 0) memcpy(s->counts, moe_infer_expert_counts(s->ctx),
                                sizeof(int64_t) * (size_t)s->n_counts);
    if (t1 - s->rate_t0 >= 2.0) {
        s->st.tok_s = (double)(s->st.tokens_gen - s->rate_n0) / (t1 - s->rate_t0);
        s->rate_t0 = t1;
        s->rate_n0 = s->st.tokens_gen;
    }
    pthread_cond_broadcast(&s->cv_out);
    sched_unlock(s);
}

static void *sched_main(void *p) {
    sched *s = p;
    sched_lock(s);
    while (!s->stop) {
        admit_all(s);
        if (s->n_running == 0) {
            pthread_cond_broadcast(&s->cv_out);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->cv_work, &s->mu, &ts);
            continue;
        }
        sched_unlock(s);
        step(s);
        sched_lock(s);
    }
    /* cancel what is left */
    for (int i = 0; i < s->n_seq; i++)
        if (s->slot[i]) finish(s, s->slot[i], FIN_CANCEL);
    while (s->q_head) {
        serve_req *r = s->q_head;
        s->q_head = r->next;
        r->finish = FIN_CANCEL;
        unref(r);
    }
    s->q_tail = NULL;
    s->n_queued = 0;
    pthread_cond_broadcast(&s->cv_out);
    sched_unlock(s);
    return NULL;
}

moe_status sched_create(sched **out, moe_infer *ctx, int queue_max, moe_error *err) {
    *out = NULL;
    sched *s = calloc(1, sizeof *s);
    if (!s) return moe_err(err, MOE_ERR_NOMEM, "serve: the scheduler");
    const moe_infer_info *in = moe_infer_get_info(ctx);
    s->ctx = ctx;
    s->v = moe_infer_vocab(ctx);
    s->V = in->vocab_size;
    s->n_seq = moe_infer_n_seq(ctx);
    s->max_batch = moe_infer_max_batch(ctx);
    s->ctx_len = in->ctx_len;
    s->top_k = in->top_k;
    s->one_seq = in->one_seq_per_step;
    s->n_counts = in->n_layers * in->n_experts;
    s->queue_max = queue_max;
    s->slot = calloc((size_t)s->n_seq, sizeof *s->slot);
    s->tok = calloc((size_t)s->max_batch, sizeof(int32_t));
    s->seq = calloc((size_t)s->max_batch, sizeof(int32_t));
    s->pos = calloc((size_t)s->max_batch, sizeof(int32_t));
    s->want = calloc((size_t)s->max_batch, 1);
    s->row_req = calloc((size_t)s->max_batch, sizeof *s->row_req);
    s->logits = malloc(sizeof(float) * (size_t)s->n_seq * s->V);
    s->counts = calloc((size_t)s->n_counts + 1, sizeof(int64_t));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_out, NULL);
    s->rate_t0 = now_s();
    if (!s->slot || !s->tok || !s->seq || !s->pos || !s->want || !s->row_req || !s->logits ||
        !s->counts) {
        sched_destroy(s);
        return moe_err(err, MOE_ERR_NOMEM, "serve: the scheduler's buffers");
    }
    if (pthread_create(&s->th, NULL, sched_main, s) != 0) {
        sched_destroy(s);
        return moe_err(err, MOE_ERR_IO, "serve: cannot start the scheduler thread");
    }
    s->started = 1;
    *out = s;
    return MOE_OK;
}

void sched_destroy(sched *s) {
    if (!s) return;
    if (s->started) {
        sched_lock(s);
        s->stop = 1;
        pthread_cond_signal(&s->cv_work);
        sched_unlock(s);
        pthread_join(s->th, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_out);
    free(s->slot); free(s->tok); free(s->seq); free(s->pos); free(s->want);
    free(s->row_req); free(s->logits); free(s->counts);
    free(s);
}

int sched_submit(sched *s, serve_req *r) {
    sched_lock(s);
    const int free_slots = s->n_seq - s->n_running;
    if (s->draining || s->stop || s->n_queued - free_slots >= s->queue_max) {
        s->st.requests_rejected++;
        sched_unlock(s);
        return 0;
    }
    r->refs = 2;
    r->t_submit = now_s();
    r->next = NULL;
    if (s->q_tail) s->q_tail->next = r;
    else s->q_head = r;
    s->q_tail = r;
    s->n_queued++;
    pthread_cond_signal(&s->cv_work);
    sched_unlock(s);
    return 1;
}

void sched_release(sched *s, serve_req *r) {
    sched_lock(s);
    if (r->finish == FIN_NONE) r->cancelled = 1;
    unref(r);
    pthread_cond_signal(&s->cv_work);
    sched_unlock(s);
}

void sched_wait(sched *s, serve_req *r, size_t seen, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    sched_lock(s);
    while (r->out_n == seen && r->finish == FIN_NONE)
        if (pthread_cond_timedwait(&s->cv_out, &s->mu, &ts) == ETIMEDOUT) break;
    sched_unlock(s);
}

void sched_drain(sched *s) {
    sched_lock(s);
    s->draining = 1;
    sched_unlock(s);
}

void sched_cancel_all(sched *s) {
    sched_lock(s);
    for (int i = 0; i < s->n_seq; i++)
        if (s->slot[i]) s->slot[i]->cancelled = 1;
    for (serve_req *r = s->q_head; r; r = r->next) r->cancelled = 1;
    pthread_cond_signal(&s->cv_work);
    sched_unlock(s);
}

int sched_busy(sched *s) {
    sched_lock(s);
    const int b = s->n_running + s->n_queued;
    sched_unlock(s);
    return b;
}

void sched_get_stats(sched *s, serve_stats *st, int64_t *counts, size_t n_counts) {
    sched_lock(s);
    *st = s->st;
    st->running = s->n_running;
    st->queued = s->n_queued;
    if (counts && n_counts)
        memcpy(counts, s->counts, sizeof(int64_t) * (n_counts < (size_t)s->n_counts
                                                      ? n_counts : (size_t)s->n_counts));
    sched_unlock(s);
}
