/* request.c: the body of POST /v1/chat/completions and /v1/completions
 * checked and turned into a serve_req (prompt rendered and tokenized).
 *
 * For: every rule a request must meet, each failure an OpenAI-shaped error
 * with its status (400 wrong type or value, unknown field, a prompt or
 * max_tokens beyond the context; 404 another model). Not for: HTTP (http.c)
 * or running the request (sched.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/json.h"
#include "serve/serve.h"

void serve_error_set(serve_error *e, int status, const char *type, const char *param,
                     const char *code, const char *fmt, ...) {
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

void serve_req_free(serve_req *r) {
    if (!r) return;
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->prompt);
    free(r->out);
    free(r->hist);
    free(r->tok_count);
    free(r->gen);
    moe_sampler_free(r->smp);
    free(r);
}

#define BAD(param, ...) \
    (serve_error_set(e, 400, "invalid_request_error", param, "invalid_value", __VA_ARGS__), 0)

/* The fields each kind takes; any other is an error. */
static const char *const FIELDS_COMMON[] = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k",
    "min_p", "presence_penalty", "frequency_penalty", "seed", "stop", "n", "user",
    "logprobs", "experts_per_token", "ignore_eos", NULL};
static const char *const FIELDS_CHAT[] = {"messages", "max_completion_tokens", NULL};
static const char *const FIELDS_COMPL[] = {"prompt", "echo", "suffix", NULL};

static int known(const char *key, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

/* A number field in [lo, hi] into *out (absent or null: unchanged). */
static int get_num(const json_value *o, const char *key, double lo, double hi, float *out,
                   serve_error *e) {
    const json_value *v = json_get(o, key);
    if (!v || v->type == JSON_NULL) return 1;
    if (v->type != JSON_NUMBER) return BAD(key, "'%s' must be a number, not %s", key,
                                           json_type_name(v->type));
    if (!(v->u.num >= lo && v->u.num <= hi))
        return BAD(key, "'%s' = %g is out of range (expected %g .. %g)", key, v->u.num, lo, hi);
    *out = (float)v->u.num;
    return 1;
}

/* An integer field in [lo, hi] into *out (absent or null: unchanged); *given
 * (may be NULL) set to 1 when present. */
static int get_int(const json_value *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   int *given, serve_error *e) {
    const json_value *v = json_get(o, key);
    if (!v || v->type == JSON_NULL) return 1;
    int64_t x;
    if (v->type != JSON_NUMBER || !json_as_int(v, &x))
        return BAD(key, "'%s' must be an integer, not %s", key,
                   v->type == JSON_NUMBER ? "a fraction or a huge number" : json_type_name(v->type));
    if (x < lo || x > hi)
        return BAD(key, "'%s' = %lld is out of range (expected %lld .. %lld)", key, (long long)x,
                   (long long)lo, (long long)hi);
    *out = x;
    if (given) *given = 1;
    return 1;
}

static int get_bool(const json_value *o, const char *key, int *out, serve_error *e) {
    const json_value *v = json_get(o, key);
    if (!v || v->type == JSON_NULL) return 1;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE)
        return BAD(key, "'%s' must be a boolean, not %s", key, json_type_name(v->type));
    *out = v->type == JSON_TRUE;
    return 1;
}

/* A string without NUL bytes. */
static int plain_str(const json_value *v) {
    return v && v->type == JSON_STRING && strlen(v->u.str.s) == v->u.str.n;
}

/* Tokenizes text into r->prompt (BOS added when the model wants it, special
 * tokens parsed as `moe run` does). */
static int tokenize(serve_req *r, const char *text, const serve_limits *lim, serve_error *e) {
    const size_t n = strlen(text);
    size_t cap = n + 8, got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        free(r->prompt);
        r->prompt = malloc(sizeof(int32_t) * cap);
        if (!r->prompt) {
            serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return 0;
        }
        moe_error err;
        moe_status st = moe_vocab_encode(lim->vocab, text, n, 1, 1, r->prompt, cap, &got, &err);
        if (st == MOE_OK) break;
        if (st != MOE_ERR_SHAPE || attempt) {
            serve_error_set(e, 400, "invalid_request_error", NULL, NULL, "tokenizing: %s",
                            err.msg);
            return 0;
        }
        cap = got;
    }
    r->n_prompt = (int)got;
    if (got == 0 && moe_vocab_bos(lim->vocab) >= 0) {
        r->prompt[0] = moe_vocab_bos(lim->vocab);
        r->n_prompt = 1;
    }
    return 1;
}

/* The text of a message's content: a string, or an array of {"type":
 * "text", "text": ...} parts (joined), or null (""). */
static int content_text(const json_value *c, jbuf *b, serve_error *e) {
    if (!c || c->type == JSON_NULL) return 1;
    if (plain_str(c)) { strbuf_put(b, c->u.str.s, c->u.str.n); return 1; }
    if (c->type != JSON_ARRAY)
        return BAD("messages", "a message's 'content' must be a string or an array of text parts");
    for (size_t i = 0; i < c->u.arr.n; i++) {
        const json_value *p = &c->u.arr.v[i];
        const char *type = NULL;
        const json_value *t = json_get(p, "text");
        if (p->type != JSON_OBJECT || !json_get_str(p, "type", &type) || strcmp(type, "text") ||
            !plain_str(t))
            return BAD("messages", "content part %zu: only {\"type\": \"text\", \"text\": "
                       "string} parts are supported", i);
        strbuf_put(b, t->u.str.s, t->u.str.n);
    }
    return 1;
}

/* messages -> the chat template's text (ending with the assistant's turn). */
static int render_chat(const json_value *msgs, const serve_limits *lim, jbuf *text,
                       serve_error *e) {
    if (!msgs) return BAD("messages", "'messages' is required");
    if (msgs->type != JSON_ARRAY || msgs->u.arr.n == 0)
        return BAD("messages", "'messages' must be a non-empty array");
    const size_t n = msgs->u.arr.n;
    if (n > 4096) return BAD("messages", "%zu messages (at most 4096)", n);
    moe_chat_msg *cm = calloc(n, sizeof *cm);
    jbuf *parts = calloc(n, sizeof *parts);
    int ok = cm && parts;
    if (!ok) serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        const json_value *m = &msgs->u.arr.v[i];
        const char *role = NULL;
        if (m->type != JSON_OBJECT || !json_get_str(m, "role", &role)) {
            ok = BAD("messages", "message %zu must be an object with a string 'role'", i);
            break;
        }
        if (!strcmp(role, "developer")) role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            ok = BAD("messages", "message %zu: role must be system, developer, user or "
                     "assistant", i);
            break;
        }
        for (size_t j = 0; j < m->u.obj.n; j++) {
            const char *k = m->u.obj.m[j].key;
            if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name")) {
                ok = BAD("messages", "message %zu: unknown field '%s'", i, k);
                break;
            }
        }
        if (!ok || !(ok = content_text(json_get(m, "content"), &parts[i], e))) break;
        strbuf_put(&parts[i], "", 0);
        if (parts[i].oom) ok = 0;
        cm[i].role = role;
        cm[i].content = parts[i].p ? parts[i].p : "";
    }
    if (ok) {
        size_t cap = 4096, len = 0;
        for (size_t i = 0; i < n; i++) cap += parts[i].n + 64;
        for (int attempt = 0; attempt < 2 && ok; attempt++) {
            text->n = 0;
            if (!text->p || text->cap < cap + 1) {
                strbuf_free(text);
                strbuf_put(text, "", 0);
                char *p = realloc(text->p, cap + 1);
                if (!p) { ok = 0; break; }
                text->p = p;
                text->cap = cap + 1;
            }
            moe_error err;
            moe_status st = moe_chat_render(lim->chat_tmpl, cm, (int)n, 1, text->p, cap, &len,
                                            &err);
            if (st == MOE_OK) { text->n = len; break; }
            if (st != MOE_ERR_SHAPE || attempt) {
                ok = BAD("messages", "the chat template: %s", err.msg);
                break;
            }
            cap = len + 1;
        }
    }
    for (size_t i = 0; parts && i < n; i++) strbuf_free(&parts[i]);
    free(parts);
    free(cm);
    return ok;
}

/* prompt: a string, an array of one string, or an array of token ids. */
static int completion_prompt(serve_req *r, const json_value *p, const serve_limits *lim,
                             serve_error *e) {
    if (!p) return BAD("prompt", "'prompt' is required");
    if (p->type == JSON_ARRAY && p->u.arr.n == 1 && p->u.arr.v[0].type == JSON_STRING)
        p = &p->u.arr.v[0];
    if (p->type == JSON_STRING) {
        if (!plain_str(p)) return BAD("prompt", "'prompt' contains a NUL character");
        return tokenize(r, p->u.str.s, lim, e);
    }
    if (p->type != JSON_ARRAY || p->u.arr.n == 0)
        return BAD("prompt", "'prompt' must be a string, an array of one string or an array "
                   "of token ids");
    const size_t n = p->u.arr.n;
    if (n >= (size_t)lim->ctx_len)
        return BAD("prompt", "%zu prompt tokens; the context holds %d", n, lim->ctx_len);
    r->prompt = malloc(sizeof(int32_t) * n);
    if (!r->prompt) {
        serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (!json_as_int(&p->u.arr.v[i], &id) || id < 0 || id >= lim->vocab_size)
            return BAD("prompt", "prompt[%zu] is not a token id (0 .. %d)", i, lim->vocab_size - 1);
        r->prompt[i] = (int32_t)id;
    }
    r->n_prompt = (int)n;
    return 1;
}

static int parse_fields(serve_req *r, const json_value *root, const serve_limits *lim,
                        serve_error *e) {
    if (root->type != JSON_OBJECT) return BAD(NULL, "the body must be a JSON object");
    for (size_t i = 0; i < root->u.obj.n; i++) {
        const char *k = root->u.obj.m[i].key;
        if (!known(k, FIELDS_COMMON) &&
            !known(k, r->kind == REQ_CHAT ? FIELDS_CHAT : FIELDS_COMPL))
            return BAD(k, "unknown field '%s'", k);
    }
    const json_value *mv = json_get(root, "model");
    if (mv && mv->type != JSON_NULL) {
        if (mv->type != JSON_STRING) return BAD("model", "'model' must be a string");
        if (strcmp(mv->u.str.s, lim->model_id)) {
            serve_error_set(e, 404, "invalid_request_error", "model", "model_not_found",
                            "The model '%.100s' does not exist (this server has '%.100s')",
                            mv->u.str.s, lim->model_id);
            return 0;
        }
    }
    if (!get_bool(root, "stream", &r->stream, e)) return 0;
    const json_value *so = json_get(root, "stream_options");
    if (so && so->type != JSON_NULL) {
        if (so->type != JSON_OBJECT) return BAD("stream_options", "'stream_options' must be an object");
        for (size_t i = 0; i < so->u.obj.n; i++)
            if (strcmp(so->u.obj.m[i].key, "include_usage"))
                return BAD("stream_options", "unknown field '%s' in stream_options",
                           so->u.obj.m[i].key);
        if (!get_bool(so, "include_usage", &r->include_usage, e)) return 0;
    }
    int64_t x = -1;
    int given = 0;
    if (!get_int(root, "max_tokens", 1, 1 << 30, &x, &given, e)) return 0;
    if (r->kind == REQ_CHAT && !get_int(root, "max_completion_tokens", 1, 1 << 30, &x, &given, e))
        return 0;
    r->max_tokens = given ? (int)x : r->kind == REQ_COMPLETION ? 16 : -1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    if (!get_num(root, "temperature", 0, 2, &r->temperature, e) ||
        !get_num(root, "top_p", 0, 1, &r->top_p, e) ||
        !get_num(root, "min_p", 0, 1, &r->min_p, e) ||
        !get_num(root, "presence_penalty", -2, 2, &r->presence, e) ||
        !get_num(root, "frequency_penalty", -2, 2, &r->frequency, e))
        return 0;
    if (json_get(root, "top_p") && json_get(root, "top_p")->type == JSON_NUMBER && r->top_p <= 0)
        return BAD("top_p", "'top_p' must be > 0");
    x = 0;
    if (!get_int(root, "top_k", 0, 1 << 30, &x, NULL, e)) return 0;
    r->top_k = (int)x;
    x = 0;
    given = 0;
    if (!get_int(root, "seed", -(INT64_C(1) << 53), INT64_C(1) << 53, &x, &given, e)) return 0;
    r->seed = given ? (uint64_t)x : (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)r << 16);
    x = 1;
    if (!get_int(root, "n", 1, 1, &x, NULL, e)) return 0;
    if (!get_bool(root, "ignore_eos", &r->ignore_eos, e)) return 0;
    int flag = 0;
    if (!get_bool(root, "logprobs", &flag, e)) return 0;
    if (flag) return BAD("logprobs", "logprobs are not supported");
    if (r->kind == REQ_COMPLETION) {
        if (!get_bool(root, "echo", &flag, e)) return 0;
        if (flag) return BAD("echo", "echo is not supported");
        const json_value *sf = json_get(root, "suffix");
        if (sf && sf->type != JSON_NULL) return BAD("suffix", "suffix is not supported");
    }
    const json_value *u = json_get(root, "user");
    if (u && u->type != JSON_NULL && u->type != JSON_STRING)
        return BAD("user", "'user' must be a string");
    x = 0;
    given = 0;
    if (!get_int(root, "experts_per_token", 1, lim->n_experts > 0 ? lim->n_experts : 0, &x,
                 &given, e)) {
        if (lim->n_experts == 0)
            return BAD("experts_per_token", "the model is dense: experts_per_token does not apply");
        return 0;
    }
    r->k = (int)x;
    const json_value *st = json_get(root, "stop");
    if (st && st->type != JSON_NULL) {
        const json_value *one = st;
        size_t n = 1;
        if (st->type == JSON_ARRAY) { one = st->u.arr.v; n = st->u.arr.n; }
        if (n > REQ_MAX_STOP) return BAD("stop", "at most %d stop strings", REQ_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            const json_value *s = &one[i];
            if (!plain_str(s) || s->u.str.n == 0 || s->u.str.n > 256)
                return BAD("stop", "'stop' must be a string or an array of up to %d strings of "
                           "1 .. 256 bytes", REQ_MAX_STOP);
            if (!(r->stop[r->n_stop] = strdup(s->u.str.s))) {
                serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
                return 0;
            }
            r->n_stop++;
        }
    }
    if (r->kind == REQ_CHAT) {
        jbuf text = {0};
        int ok = render_chat(json_get(root, "messages"), lim, &text, e) &&
                 tokenize(r, text.p ? text.p : "", lim, e);
        strbuf_free(&text);
        if (!ok) return 0;
    } else if (!completion_prompt(r, json_get(root, "prompt"), lim, e)) {
        return 0;
    }
    if (r->n_prompt == 0) return BAD(r->kind == REQ_CHAT ? "messages" : "prompt", "the prompt is empty");
    if (r->n_prompt >= lim->ctx_len) {
        serve_error_set(e, 400, "invalid_request_error", r->kind == REQ_CHAT ? "messages" : "prompt",
                        "context_length_exceeded", "the prompt has %d tokens; the context "
                        "holds %d (and needs room for the reply)", r->n_prompt, lim->ctx_len);
        return 0;
    }
    if (r->max_tokens > 0 && (int64_t)r->n_prompt + r->max_tokens > lim->ctx_len) {
        serve_error_set(e, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                        "max_tokens = %d with a prompt of %d tokens exceeds the context of "
                        "%d tokens", r->max_tokens, r->n_prompt, lim->ctx_len);
        return 0;
    }
    if (r->max_tokens < 0) r->max_tokens = lim->ctx_len - r->n_prompt;
    return 1;
}

int serve_parse_request(serve_req **out, int kind, const char *body, size_t n,
                        const serve_limits *lim, serve_error *e) {
    *out = NULL;
    json_doc *doc = NULL;
    moe_error err;
    json_limits jl = {64, n + 1};
    if (json_parse(&doc, body, n, "the request body", &jl, &err) != MOE_OK) {
        serve_error_set(e, 400, "invalid_request_error", NULL, "invalid_json", "%s", err.msg);
        return 0;
    }
    serve_req *r = calloc(1, sizeof *r);
    if (!r) {
        json_free(doc);
        serve_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    r->kind = kind;
    r->slot = -1;
    int ok = parse_fields(r, json_root(doc), lim, e);
    json_free(doc);
    if (!ok) {
        serve_req_free(r);
        return 0;
    }
    *out = r;
    return 1;
}
