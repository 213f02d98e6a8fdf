/* serve.h: the pieces of `moe serve` (internal): a growable byte buffer with
 * a JSON writer, the parsed request, and the scheduler of sequences.
 *
 * For: sharing types between request.c (JSON body -> serve_req, checked),
 * sched.c (the thread that runs batch steps over every running request)
 * and http.c (libmicrohttpd: endpoints, streaming, limits, shutdown).
 * Not for: the engine (src/infer) or HTTP parsing (libmicrohttpd does it).
 *
 * A request's life: http.c parses and checks it (request.c), tokenizes its
 * prompt and queues it (sched_submit); the scheduler admits it into a free
 * sequence of the batch context, feeds its prompt in chunks and then one
 * token per step, samples, cuts at stop strings, and appends the released
 * text to req->out under the lock, waking the HTTP side, which writes it
 * (a whole JSON body, or server-sent events). Either side may let go first:
 * a reference count frees the request when both have.
 */
#ifndef MOE_SERVE_SERVE_H
#define MOE_SERVE_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "moe_infer.h"

/* ------------------------------------------------------------ buffers */

typedef strbuf jbuf;    /* core/strbuf.h */

/* A JSON string literal of s[0, n): quotes, escapes, and each ill-formed
 * UTF-8 subsequence (maximal subpart, as Python's "replace") as U+FFFD. */
void jb_str(jbuf *b, const char *s, size_t n);
/* Bytes of s[0, n) that may be released without splitting a UTF-8
 * character that later bytes could complete. */
size_t utf8_safe_len(const char *s, size_t n);

/* ------------------------------------------------------------ requests */

enum { REQ_CHAT = 0, REQ_COMPLETION = 1 };
enum { FIN_NONE = 0, FIN_STOP, FIN_LENGTH, FIN_CANCEL, FIN_ERROR };
#define REQ_MAX_STOP 4

typedef struct moe_server_req serve_req;
struct moe_server_req {
    /* what was asked (request.c) */
    int kind;                    /* REQ_CHAT, REQ_COMPLETION */
    int stream, include_usage;
    int max_tokens;              /* -1: until the context is full */
    float temperature, top_p, min_p, presence, frequency;
    int top_k;
    uint64_t seed;
    char *stop[REQ_MAX_STOP];
    int n_stop;
    int k;                       /* experts_per_token; 0: the model's */
    int ignore_eos;              /* llama-server's extension: generate past EOS */
    int32_t *prompt;             /* [n_prompt] token ids */
    int n_prompt;
    char id[48];
    int64_t created;

    /* shared with the HTTP side (under the scheduler's lock) */
    int refs;                    /* 2 while both hold it */
    int cancelled;               /* the client left */
    int finish;                  /* FIN_* once done */
    char *out;                   /* released text */
    size_t out_n, out_cap;
    int n_gen;                   /* tokens generated */
    char err_msg[256];           /* FIN_ERROR */
    int k_used;                  /* experts per token it ran with */

    /* the scheduler's alone */
    serve_req *next;             /* queue link */
    int slot;                    /* sequence; -1 while queued */
    int n_fed;                   /* prompt tokens evaluated */
    int32_t last;                /* the token to feed next (decode) */
    int32_t *hist;               /* [n_prompt + max generated] prompt then generated */
    int n_hist;
    int *tok_count;              /* [V] times each token was generated (penalties) or NULL */
    moe_sampler *smp;
    char *gen;                   /* generated text not yet released */
    size_t gen_n, gen_cap;
    double t_submit, t_first, t_last;

    /* the reading side's alone (server.c) */
    int rd_phase;                /* 0: the role chunk next, 1: text, 2: all given */
    size_t rd_seen;              /* bytes of out already given */
};

/* A request's error: the HTTP status, OpenAI's type, the parameter and the
 * code (the last two may be ""). */
typedef struct serve_error {
    int status;
    char type[40], param[40], code[40];
    char msg[400];
} serve_error;

void serve_error_set(serve_error *e, int status, const char *type, const char *param,
                     const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* What the model allows, for checking requests. */
typedef struct serve_limits {
    const char *model_id;        /* the one model's id */
    const moe_vocab *vocab;
    const char *chat_tmpl;
    int ctx_len, vocab_size, n_experts, top_k;
} serve_limits;

/* Parses body[0, n) as a request of kind; on success *out is a new request
 * (refs 0, prompt tokenized), else e says why (status 400, 404 ...). */
int serve_parse_request(serve_req **out, int kind, const char *body, size_t n,
                        const serve_limits *lim, serve_error *e);
void serve_req_free(serve_req *r);

/* ----------------------------------------------------------- scheduler */

typedef struct serve_stats {
    int64_t requests_ok, requests_err, requests_cancelled, requests_rejected;
    int64_t tokens_prompt, tokens_gen;
    int64_t steps, rows;           /* batch steps, rows over them */
    int last_batch;                /* rows of the latest step */
    int running, queued;
    double tok_s;                  /* generated tokens per second, last ~2 s */
    double busy_s;                 /* seconds spent in steps */
} serve_stats;

typedef struct sched sched;

moe_status sched_create(sched **out, moe_infer *ctx, int queue_max, moe_error *err);
/* Stops the thread (cancelling what still runs) and frees it. */
void sched_destroy(sched *s);
/* Queues r (refs 2 from here on). 0 when the queue is full or the
 * scheduler drains (the caller answers 503 and still owns r). */
int sched_submit(sched *s, serve_req *r);
/* The HTTP side lets go of r (cancelling it when not done). */
void sched_release(sched *s, serve_req *r);
/* Waits up to ms milliseconds for r to change (new text or done). */
void sched_wait(sched *s, serve_req *r, size_t seen, int ms);
void sched_lock(sched *s);
void sched_unlock(sched *s);
/* No new requests from now on. */
void sched_drain(sched *s);
/* Cancels every request (running or queued). */
void sched_cancel_all(sched *s);
int sched_busy(sched *s); /* running + queued (locks) */
void sched_get_stats(sched *s, serve_stats *st, int64_t *counts, size_t n_counts);

#endif
