/* server.c: the HTTP-free core of `moe serve` (moe_server_* in
 * moe_infer.h): the model, the batch context and the scheduler behind one
 * handle; request bodies in, response bytes out (JSON bodies, server-sent
 * events, OpenAI-shaped errors); the GET endpoints (models, health,
 * Prometheus metrics).
 *
 * For: everything the HTTP layer (cli/serve.c) needs that is not HTTP, so
 * that libmoe does not depend on an HTTP library. Not for: checking request
 * fields (request.c) or running requests (sched.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "serve/serve.h"

struct moe_server {
    moe_infer_model *mdl;
    moe_infer *ctx;
    sched *sc;
    serve_limits lim;
    char model_id[256];
    int64_t created;
    uint64_t next_id;
    int draining;
    int parallel;
    int n_layers, n_experts;
    pthread_mutex_t mu;        /* the HTTP counters */
    int64_t http_status[6];    /* responses by class 1xx .. 5xx */
};

void moe_server_close(moe_server *s) {
    if (!s) return;
    sched_destroy(s->sc);
    moe_infer_close(s->ctx);
    moe_infer_model_close(s->mdl);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *moe_server_model_id(const moe_server *s) { return s->model_id; }

static moe_status open_checked(moe_server *s, const char *path, const moe_server_options *o,
                               moe_error *err) {
    moe_status st = moe_infer_model_open(&s->mdl, path, err);
    if (st != MOE_OK) return st;
    if (!moe_infer_model_vocab(s->mdl))
        return moe_err(err, MOE_ERR_FORMAT, "%s: no tokenizer (tokenizer.ggml.* metadata); the "
                       "server needs one", path);
    moe_infer_options io;
    moe_infer_options_default(&io);
    io.n_threads = o->n_threads;
    io.ctx_len = o->ctx_len;
    io.n_seq = s->parallel;
    io.max_batch = o->max_batch > 0 ? o->max_batch : 256;
    if (io.max_batch < s->parallel) io.max_batch = s->parallel;
    if ((st = moe_infer_create(&s->ctx, s->mdl, &io, err)) != MOE_OK) return st;
    const moe_infer_info *in = moe_infer_get_info(s->ctx);
    s->n_layers = in->n_layers;
    s->n_experts = in->n_experts;
    if (o->alias && *o->alias) {
        snprintf(s->model_id, sizeof s->model_id, "%s", o->alias);
    } else {
        const char *base = strrchr(path, '/');
        snprintf(s->model_id, sizeof s->model_id, "%s", base ? base + 1 : path);
        const size_t n = strlen(s->model_id);
        if (n > 5 && !strcmp(s->model_id + n - 5, ".gguf")) s->model_id[n - 5] = 0;
    }
    s->lim.model_id = s->model_id;
    s->lim.vocab = moe_infer_model_vocab(s->mdl);
    s->lim.chat_tmpl = moe_chat_template_for(path);
    s->lim.ctx_len = in->ctx_len;
    s->lim.vocab_size = in->vocab_size;
    s->lim.n_experts = in->n_experts;
    s->lim.top_k = in->top_k;
    s->created = (int64_t)time(NULL);
    const int qmax = o->queue_max == 0 ? 64 : o->queue_max < 0 ? 0 : o->queue_max;
    return sched_create(&s->sc, s->ctx, qmax, err);
}

moe_status moe_server_open(moe_server **out, const char *path, const moe_server_options *o,
                           moe_error *err) {
    if (!out || !path)
        return moe_err(err, MOE_ERR_ARG, "moe_server_open: %s is NULL", out ? "path" : "out");
    *out = NULL;
    moe_server_options d = {0};
    if (!o) o = &d;
    if (o->parallel < 0 || o->parallel > 1024 || o->ctx_len < 0 || o->max_batch < 0)
        return moe_err(err, MOE_ERR_ARG, "moe_server_open: parallel = %d (0..1024), ctx_len = "
                       "%d, max_batch = %d (>= 0)", o->parallel, o->ctx_len, o->max_batch);
    moe_server *s = calloc(1, sizeof *s);
    if (!s) return moe_err(err, MOE_ERR_NOMEM, "moe_server_open");
    pthread_mutex_init(&s->mu, NULL);
    s->parallel = o->parallel > 0 ? o->parallel : 4;
    moe_status st = open_checked(s, path, o, err);
    if (st != MOE_OK) {
        moe_server_close(s);
        return st;
    }
    *out = s;
    return MOE_OK;
}

/* ------------------------------------------------------------ JSON */

static void error_json(jbuf *b, const serve_error *e) {
    strbuf_puts(b, "{\"error\":{\"message\":");
    jb_str(b, e->msg, strlen(e->msg));
    strbuf_puts(b, ",\"type\":");
    jb_str(b, e->type, strlen(e->type));
    strbuf_puts(b, ",\"param\":");
    if (e->param[0]) jb_str(b, e->param, strlen(e->param));
    else strbuf_puts(b, "null");
    strbuf_puts(b, ",\"code\":");
    if (e->code[0]) jb_str(b, e->code, strlen(e->code));
    else strbuf_puts(b, "null");
    strbuf_puts(b, "}}");
}

/* The buffer's bytes handed over (malloc'd), or NULL when it ran out of memory. */
static char *take(jbuf *b, size_t *len) {
    if (b->oom || !b->p) {
        strbuf_free(b);
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = b->n;
    return b->p;
}

static const char *type_for(int status) {
    return status >= 500 ? "server_error" : "invalid_request_error";
}

char *moe_server_error_json(int status, const char *code, const char *message) {
    serve_error e;
    serve_error_set(&e, status, type_for(status), NULL, code, "%s", message ? message : "");
    jbuf b = {0};
    error_json(&b, &e);
    return take(&b, NULL);
}

void moe_server_count_status(moe_server *s, int status) {
    pthread_mutex_lock(&s->mu);
    if (status >= 100 && status < 600) s->http_status[status / 100]++;
    pthread_mutex_unlock(&s->mu);
}

static const char *fin_name(int f) { return f == FIN_LENGTH ? "length" : "stop"; }

static void usage_json(jbuf *b, const serve_req *r) {
    strbuf_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
              r->n_prompt, r->n_gen, r->n_prompt + r->n_gen);
}

/* The head of every body or chunk: id, object, created, model, k. */
static void head_json(jbuf *b, const moe_server *s, const serve_req *r, const char *object) {
    strbuf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->id, object,
              (long long)r->created);
    jb_str(b, s->model_id, strlen(s->model_id));
    strbuf_printf(b, ",\"system_fingerprint\":\"moe\",\"experts_per_token\":%d,", r->k_used);
}

/* The whole body of a finished non-streamed request (locked). */
static void full_json(jbuf *b, const moe_server *s, const serve_req *r) {
    const int chat = r->kind == REQ_CHAT;
    head_json(b, s, r, chat ? "chat.completion" : "text_completion");
    strbuf_puts(b, "\"choices\":[{\"index\":0,");
    if (chat) {
        strbuf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        jb_str(b, r->out ? r->out : "", r->out_n);
        strbuf_puts(b, "},\"logprobs\":null,");
    } else {
        strbuf_puts(b, "\"text\":");
        jb_str(b, r->out ? r->out : "", r->out_n);
        strbuf_puts(b, ",\"logprobs\":null,");
    }
    strbuf_printf(b, "\"finish_reason\":\"%s\"}],", fin_name(r->finish));
    usage_json(b, r);
    strbuf_puts(b, "}");
}

/* One server-sent event: the role (chat's first), text, or the finish. */
static void chunk_json(jbuf *b, const moe_server *s, const serve_req *r, const char *text,
                       size_t n, int role, int fin) {
    const int chat = r->kind == REQ_CHAT;
    strbuf_puts(b, "data: ");
    head_json(b, s, r, chat ? "chat.completion.chunk" : "text_completion");
    strbuf_puts(b, "\"choices\":[{\"index\":0,");
    if (chat) {
        strbuf_puts(b, "\"delta\":{");
        if (role) strbuf_puts(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (!fin) { strbuf_puts(b, "\"content\":"); jb_str(b, text, n); }
        strbuf_puts(b, "},");
    } else {
        strbuf_puts(b, "\"text\":");
        jb_str(b, text, n);
        strbuf_puts(b, ",");
    }
    strbuf_puts(b, "\"logprobs\":null,\"finish_reason\":");
    if (fin) strbuf_printf(b, "\"%s\"", fin_name(r->finish));
    else strbuf_puts(b, "null");
    strbuf_puts(b, "}]");
    if (fin && r->include_usage) {
        strbuf_puts(b, ",");
        usage_json(b, r);
    }
    strbuf_puts(b, "}\n\n");
}

/* --------------------------------------------------------- requests */

int moe_server_submit(moe_server *s, moe_server_endpoint ep, const char *body, size_t n,
                      moe_server_req **out, int *stream, char **err_json) {
    *out = NULL;
    *err_json = NULL;
    if (stream) *stream = 0;
    serve_error e;
    serve_req *r = NULL;
    const int kind = ep == MOE_SERVER_COMPLETION ? REQ_COMPLETION : REQ_CHAT;
    if (!serve_parse_request(&r, kind, body ? body : "", body ? n : 0, &s->lim, &e)) {
        jbuf b = {0};
        error_json(&b, &e);
        *err_json = take(&b, NULL);
        return e.status;
    }
    snprintf(r->id, sizeof r->id, "%s-%llx", kind == REQ_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)__atomic_add_fetch(&s->next_id, 1, __ATOMIC_RELAXED));
    r->created = (int64_t)time(NULL);
    r->k_used = r->k > 0 ? r->k : s->lim.top_k;
    const int st = r->stream;
    if (!sched_submit(s->sc, r)) {
        serve_req_free(r);
        *err_json = moe_server_error_json(503, "overloaded",
                                          __atomic_load_n(&s->draining, __ATOMIC_RELAXED)
                                              ? "the server is shutting down"
                                              : "the server is busy (queue full); retry later");
        return 503;
    }
    *out = r;
    if (stream) *stream = st;
    return 200;
}

int moe_server_read(moe_server *s, moe_server_req *r, int wait_ms, char **text, size_t *len,
                    int *status) {
    *text = NULL;
    *len = 0;
    *status = 200;
    if (r->rd_phase == 2) return 1;
    jbuf b = {0};
    for (int pass = 0; pass < 2; pass++) {
        sched_lock(s->sc);
        const int fin = r->finish;
        if (!r->stream) {
            if (fin == FIN_STOP || fin == FIN_LENGTH) {
                full_json(&b, s, r);
            } else if (fin != FIN_NONE) {
                serve_error e;
                *status = fin == FIN_CANCEL ? 503 : 500;
                serve_error_set(&e, *status, "server_error", NULL, NULL, "%s",
                                fin == FIN_CANCEL ? "the request was cancelled (the server is "
                                "shutting down)" : r->err_msg);
                error_json(&b, &e);
            }
            if (fin != FIN_NONE) r->rd_phase = 2;
        } else {
            if (r->rd_phase == 0) {
                if (r->kind == REQ_CHAT) chunk_json(&b, s, r, NULL, 0, 1, 0);
                r->rd_phase = 1;
            }
            if (r->out_n > r->rd_seen) {
                chunk_json(&b, s, r, r->out + r->rd_seen, r->out_n - r->rd_seen, 0, 0);
                r->rd_seen = r->out_n;
            }
            if (fin == FIN_STOP || fin == FIN_LENGTH) {
                chunk_json(&b, s, r, "", 0, 0, 1);
                strbuf_puts(&b, "data: [DONE]\n\n");
                r->rd_phase = 2;
            } else if (fin != FIN_NONE) {
                serve_error e;
                serve_error_set(&e, 500, "server_error", NULL, NULL, "%s",
                                fin == FIN_CANCEL ? "the request was cancelled (the server is "
                                "shutting down)" : r->err_msg);
                strbuf_puts(&b, "data: ");
                error_json(&b, &e);
                strbuf_puts(&b, "\n\ndata: [DONE]\n\n");
                r->rd_phase = 2;
            }
        }
        const size_t seen = r->stream ? r->rd_seen : (size_t)-1;
        sched_unlock(s->sc);
        if (b.n || b.oom || pass == 1 || wait_ms <= 0) break;
        sched_wait(s->sc, r, seen, wait_ms);
    }
    if (b.oom) {
        strbuf_free(&b);
        r->rd_phase = 2;
        *status = 500;
        return 1;
    }
    if (b.n) *text = take(&b, len);
    else strbuf_free(&b);
    return r->rd_phase == 2;
}

void moe_server_release(moe_server *s, moe_server_req *r) {
    if (r) sched_release(s->sc, r);
}

void moe_server_drain(moe_server *s) {
    __atomic_store_n(&s->draining, 1, __ATOMIC_RELAXED);
    sched_drain(s->sc);
}

void moe_server_cancel_all(moe_server *s) { sched_cancel_all(s->sc); }

int moe_server_busy(moe_server *s) { return sched_busy(s->sc); }

/* ------------------------------------------------------------- GET */

static void models_json(jbuf *b, const moe_server *s, int one) {
    if (!one) strbuf_puts(b, "{\"object\":\"list\",\"data\":[");
    strbuf_puts(b, "{\"id\":");
    jb_str(b, s->model_id, strlen(s->model_id));
    const moe_infer_info *in = moe_infer_get_info(s->ctx);
    strbuf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"moe\",\"meta\":{"
              "\"arch\":", (long long)s->created);
    jb_str(b, in->arch, strlen(in->arch));
    strbuf_printf(b, ",\"n_ctx\":%d,\"n_experts\":%d,\"experts_per_token\":%d,\"n_params\":%lld,"
              "\"parallel\":%d}}", in->ctx_len, in->n_experts, in->top_k,
              (long long)in->params_total, s->parallel);
    if (!one) strbuf_puts(b, "]}");
}

static void metrics_text(jbuf *b, moe_server *s) {
    serve_stats st;
    const size_t nc = (size_t)s->n_layers * (size_t)s->n_experts;
    int64_t *counts = calloc(nc + 1, sizeof(int64_t));
    if (!counts) { b->oom = 1; return; }
    sched_get_stats(s->sc, &st, counts, nc);
#define METRIC(name, type, help, fmt, val) \
    strbuf_printf(b, "# HELP moe_" name " " help "\n# TYPE moe_" name " " type "\nmoe_" name " " fmt "\n", val)
    strbuf_printf(b, "# HELP moe_requests_total Requests by outcome.\n# TYPE moe_requests_total counter\n"
              "moe_requests_total{outcome=\"ok\"} %lld\nmoe_requests_total{outcome=\"error\"} %lld\n"
              "moe_requests_total{outcome=\"cancelled\"} %lld\n"
              "moe_requests_total{outcome=\"rejected\"} %lld\n",
              (long long)st.requests_ok, (long long)st.requests_err,
              (long long)st.requests_cancelled, (long long)st.requests_rejected);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", "%lld",
           (long long)st.tokens_prompt);
    METRIC("generated_tokens_total", "counter", "Tokens generated.", "%lld",
           (long long)st.tokens_gen);
    METRIC("queue_length", "gauge", "Requests waiting for a sequence.", "%d", st.queued);
    METRIC("running_sequences", "gauge", "Requests running in the batch.", "%d", st.running);
    METRIC("batch_size", "gauge", "Rows (tokens) of the latest batch step.", "%d", st.last_batch);
    METRIC("batch_steps_total", "counter", "Batch steps run.", "%lld", (long long)st.steps);
    METRIC("batch_rows_total", "counter", "Rows (tokens) over all batch steps.", "%lld",
           (long long)st.rows);
    METRIC("busy_seconds_total", "counter", "Seconds spent in batch steps.", "%.3f", st.busy_s);
    METRIC("generated_tokens_per_second", "gauge", "Generation rate over the last ~2 s.", "%.2f",
           st.tok_s);
#undef METRIC
    pthread_mutex_lock(&s->mu);
    strbuf_puts(b, "# HELP moe_http_responses_total HTTP responses by status class.\n"
               "# TYPE moe_http_responses_total counter\n");
    for (int k = 2; k <= 5; k++)
        strbuf_printf(b, "moe_http_responses_total{class=\"%dxx\"} %lld\n", k,
                  (long long)s->http_status[k]);
    pthread_mutex_unlock(&s->mu);
    if (s->n_experts > 0) {
        strbuf_puts(b, "# HELP moe_expert_tokens_total Tokens routed to each expert of each MoE "
                   "layer.\n# TYPE moe_expert_tokens_total counter\n");
        for (int l = 0; l < s->n_layers; l++)
            for (int e = 0; e < s->n_experts; e++)
                strbuf_printf(b, "moe_expert_tokens_total{layer=\"%d\",expert=\"%d\"} %lld\n", l, e,
                          (long long)counts[(size_t)l * s->n_experts + e]);
    }
    free(counts);
}

char *moe_server_get(moe_server *s, const char *path, int *status, const char **content_type) {
    jbuf b = {0};
    *status = 200;
    *content_type = "application/json";
    if (!strcmp(path, "/health")) {
        if (__atomic_load_n(&s->draining, __ATOMIC_RELAXED)) {
            *status = 503;
            strbuf_puts(&b, "{\"status\":\"shutting down\"}");
        } else {
            strbuf_puts(&b, "{\"status\":\"ok\"}");
        }
    } else if (!strcmp(path, "/metrics")) {
        *content_type = "text/plain; version=0.0.4";
        metrics_text(&b, s);
    } else if (!strcmp(path, "/v1/models")) {
        models_json(&b, s, 0);
    } else if (!strncmp(path, "/v1/models/", 11) && !strcmp(path + 11, s->model_id)) {
        models_json(&b, s, 1);
    } else {
        const int model = !strncmp(path, "/v1/models/", 11);
        *status = 404;
        return moe_server_error_json(404, model ? "model_not_found" : "not_found",
                                     model ? "no such model" : "no such endpoint");
    }
    return take(&b, NULL);
}
