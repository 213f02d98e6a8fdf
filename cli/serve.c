/* serve.c: `moe serve MODEL.gguf`: the OpenAI-compatible HTTP server
 * (docs/SERVE.md): libmicrohttpd in front of moe_server (moe_infer.h).
 *
 * For: HTTP alone: routing the endpoints, reading bodies under a limit,
 * streaming what moe_server_read gives, noticing clients that leave,
 * a deadline for receiving a request (slow-drip clients), SIGTERM/SIGINT.
 * Not for: requests, JSON or scheduling (src/serve/, behind the public API).
 *
 * Threads: libmicrohttpd runs one thread per connection (bounded by
 * --max-connections); a non-streamed request blocks its thread until the
 * scheduler finishes it, a streamed one is a response whose reader blocks
 * for the next events. Both check every 100 ms whether the client hung up
 * (POLLRDHUP on the socket) and then release (cancel) the request. A
 * watchdog thread shuts down the socket of a connection that has not
 * delivered its whole request within --timeout seconds: libmicrohttpd's
 * own timeout is an idle one, which a client sending a byte a second never
 * meets. Built without libmicrohttpd (MOE_NO_HTTP), the command says so.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "moe_infer.h"

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: moe serve MODEL.gguf [options]   an OpenAI-compatible HTTP server\n"
            "  --host ADDR          numeric IPv4/IPv6 address to listen on (127.0.0.1)\n"
            "  --port N             port (8080; 0: any free port, printed)\n"
            "  --parallel N         sequences decoded together in one batch (4)\n"
            "  --ctx N              tokens per sequence (min(model's, 4096))\n"
            "  --threads N          compute threads (global option)\n"
            "  --batch N            tokens per batch step at most (256)\n"
            "  --queue N            requests waiting beyond the sequences before 503 (64)\n"
            "  --max-body BYTES     request body limit, 413 beyond (1048576)\n"
            "  --timeout S          a request must arrive within S seconds; idle\n"
            "                       connections close after S (30)\n"
            "  --drain S            on SIGTERM: S seconds for running requests (10)\n"
            "  --max-connections N  open connections at most (256)\n"
            "  --alias NAME         the model id clients use (the file name without .gguf)\n"
            "endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
            "           GET /health, GET /metrics (Prometheus). TLS: run it behind a proxy.\n");
}

#ifdef MOE_NO_HTTP
int cmd_serve(int argc, char **argv, int n_threads) {
    (void)n_threads;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            break;
        }
    fprintf(stderr, "moe serve: this build has no HTTP server: libmicrohttpd was missing when "
                    "it was built (install libmicrohttpd-dev, then make clean && make)\n");
    return 1;
}
#else
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct serve_opts {
    const char *host, *alias;
    int port, parallel, ctx, batch, queue, timeout, drain, max_conn;
    long max_body;
} serve_opts;

/* A connection, for the watchdog: its socket and when its current request
 * began; received once the whole request is in. */
typedef struct conn_ent {
    int fd;
    double t0;
    int received, killed;
    struct conn_ent *prev, *next;
} conn_ent;

typedef struct server {
    moe_server *s;
    serve_opts o;
    pthread_mutex_t mu;        /* the connection list */
    conn_ent *conns;
    int wd_stop;
    int active;                /* requests begun and not completed (atomic) */
} server;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------- responses */

/* Queues body (taken: freed here) with status; Retry-After for 503/429. */
static enum MHD_Result send_body(server *sv, struct MHD_Connection *c, int status,
                                 const char *type, char *body) {
    if (!body) return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    if (status == 503 || status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    moe_server_count_status(sv->s, status);
    enum MHD_Result r = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result send_err(server *sv, struct MHD_Connection *c, int status,
                                const char *code, const char *msg) {
    return send_body(sv, c, status, "application/json", moe_server_error_json(status, code, msg));
}

static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* ------------------------------------------------------------ streams */

typedef struct stream_state {
    server *sv;
    moe_server_req *r;
    struct MHD_Connection *c;
    char *pend;          /* bytes not yet given to libmicrohttpd */
    size_t n, off;
    int done;            /* the last bytes are in pend */
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *ss = cls;
    for (;;) {
        if (ss->off < ss->n) {
            size_t k = ss->n - ss->off;
            if (k > max) k = max;
            memcpy(buf, ss->pend + ss->off, k);
            ss->off += k;
            return (ssize_t)k;
        }
        free(ss->pend);
        ss->pend = NULL;
        ss->n = ss->off = 0;
        if (ss->done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(ss->c)) return MHD_CONTENT_READER_END_WITH_ERROR;
        int status;
        ss->done = moe_server_read(ss->sv->s, ss->r, 100, &ss->pend, &ss->n, &status);
        if (ss->done && !ss->pend && status != 200) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls) {
    stream_state *ss = cls;
    moe_server_release(ss->sv->s, ss->r);
    free(ss->pend);
    free(ss);
}

/* ------------------------------------------------------------ requests */

typedef struct conn_req {
    char *body;
    size_t n, cap;
    size_t total;        /* bytes offered, kept or not */
    int too_big, oom;
} conn_req;

static void set_received(server *sv, struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    pthread_mutex_lock(&sv->mu);
    if (ci && ci->socket_context) ((conn_ent *)ci->socket_context)->received = 1;
    pthread_mutex_unlock(&sv->mu);
}

static enum MHD_Result run_request(server *sv, struct MHD_Connection *c,
                                   moe_server_endpoint ep, const conn_req *cr) {
    moe_server_req *r;
    int stream;
    char *ej;
    const int st = moe_server_submit(sv->s, ep, cr->body ? cr->body : "", cr->n, &r, &stream, &ej);
    if (st != 200) return send_body(sv, c, st, "application/json", ej);
    if (stream) {
        stream_state *ss = calloc(1, sizeof *ss);
        struct MHD_Response *resp =
            ss ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, ss,
                                                   stream_free)
               : NULL;
        if (!resp) {
            free(ss);
            moe_server_release(sv->s, r);
            return MHD_NO;
        }
        ss->sv = sv;
        ss->r = r;
        ss->c = c;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        moe_server_count_status(sv->s, 200);
        enum MHD_Result res = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return res;
    }
    /* not streamed: wait here, on this connection's thread */
    char *text = NULL;
    size_t len;
    int status = 200;
    for (;;) {
        if (moe_server_read(sv->s, r, 100, &text, &len, &status)) break;
        free(text);
        text = NULL;
        if (client_gone(c)) {
            moe_server_release(sv->s, r);
            return MHD_NO;
        }
    }
    moe_server_release(sv->s, r);
    if (!text) return send_err(sv, c, 500, NULL, "out of memory");
    return send_body(sv, c, status, "application/json", text);
}

/* Request headers beyond HEADER_LIMIT bytes are answered 431 in OpenAI's
 * shape. libmicrohttpd answers headers that overflow a connection's memory
 * pool with an HTML page of its own (no option replaces it), so its pool
 * (MHD_POOL) is larger than HEADER_LIMIT: only headers beyond the pool's
 * read buffer (about half of it) still get that page. */
#define HEADER_LIMIT (64 * 1024)
#define MHD_POOL (512 * 1024)

static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value) {
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *sv = cls;
    const size_t limit = (size_t)sv->o.max_body;
    int kind = -1;
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions"))
        kind = MOE_SERVER_CHAT;
    else if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions"))
        kind = MOE_SERVER_COMPLETION;
    const int post = !strcmp(method, "POST");
    if (!*con_cls) { /* the first call: the headers */
        conn_req *cr = calloc(1, sizeof *cr);
        if (!cr) return MHD_NO;
        *con_cls = cr;
        __atomic_add_fetch(&sv->active, 1, __ATOMIC_SEQ_CST);
        size_t hb = strlen(method) + strlen(url) + 12; /* the request line */
        MHD_get_connection_values(c, MHD_HEADER_KIND, add_header_bytes, &hb);
        if (hb > HEADER_LIMIT) {
            char msg[96];
            set_received(sv, c);
            snprintf(msg, sizeof msg, "the request headers are larger than the limit of %d bytes",
                     HEADER_LIMIT);
            return send_err(sv, c, 431, "request_header_fields_too_large", msg);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)limit * 16) {
            set_received(sv, c); /* far too big: answer now (the body is not read) */
            return send_err(sv, c, 413, "request_too_large", "the body is larger than the limit");
        }
        return MHD_YES;
    }
    conn_req *cr = *con_cls;
    if (*upload_size) {
        const size_t k = *upload_size;
        *upload_size = 0;
        cr->total += k;
        if (cr->too_big || cr->total > limit || kind < 0 || !post) {
            cr->too_big = cr->too_big || cr->total > limit;
            free(cr->body);
            cr->body = NULL;
            cr->n = cr->cap = 0;
            if (cr->total > limit * 16) {
                set_received(sv, c);
                return send_err(sv, c, 413, "request_too_large", "the body is larger than the limit");
            }
            return MHD_YES;
        }
        if (cr->n + k + 1 > cr->cap) {
            size_t cap = cr->cap ? cr->cap * 2 : 4096;
            while (cap < cr->n + k + 1) cap *= 2;
            char *p = realloc(cr->body, cap);
            if (!p) { cr->oom = 1; return MHD_YES; }
            cr->body = p;
            cr->cap = cap;
        }
        memcpy(cr->body + cr->n, upload, k);
        cr->n += k;
        cr->body[cr->n] = 0;
        return MHD_YES;
    }
    set_received(sv, c);
    if (kind >= 0) {
        if (!post) return send_err(sv, c, 405, "method_not_allowed", "use POST");
        if (cr->too_big) {
            char msg[96];
            snprintf(msg, sizeof msg, "the body is larger than the limit of %zu bytes", limit);
            return send_err(sv, c, 413, "request_too_large", msg);
        }
        if (cr->oom) return send_err(sv, c, 500, NULL, "out of memory");
        return run_request(sv, c, (moe_server_endpoint)kind, cr);
    }
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const int known = !strcmp(url, "/health") || !strcmp(url, "/metrics") ||
                      !strncmp(url, "/v1/models", 10);
    if (known && !get) return send_err(sv, c, 405, "method_not_allowed", "use GET");
    if (cr->too_big) return send_err(sv, c, 413, "request_too_large", "the body is too large");
    int status;
    const char *type;
    char *body = moe_server_get(sv->s, url, &status, &type);
    return send_body(sv, c, status, type, body);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    server *sv = cls;
    conn_req *cr = *con_cls;
    if (cr) {
        free(cr->body);
        free(cr);
        *con_cls = NULL;
        __atomic_sub_fetch(&sv->active, 1, __ATOMIC_SEQ_CST);
    }
    /* the next request on this connection gets its own deadline */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    pthread_mutex_lock(&sv->mu);
    if (ci && ci->socket_context) {
        conn_ent *ce = ci->socket_context;
        ce->received = 0;
        ce->t0 = now_s();
    }
    pthread_mutex_unlock(&sv->mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    server *sv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_ent *ce = calloc(1, sizeof *ce);
        if (!ce) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        ce->fd = ci ? ci->connect_fd : -1;
        ce->t0 = now_s();
        pthread_mutex_lock(&sv->mu);
        ce->next = sv->conns;
        if (sv->conns) sv->conns->prev = ce;
        sv->conns = ce;
        pthread_mutex_unlock(&sv->mu);
        *socket_context = ce;
    } else if (*socket_context) {
        conn_ent *ce = *socket_context;
        pthread_mutex_lock(&sv->mu);
        if (ce->prev) ce->prev->next = ce->next;
        else sv->conns = ce->next;
        if (ce->next) ce->next->prev = ce->prev;
        pthread_mutex_unlock(&sv->mu);
        free(ce);
        *socket_context = NULL;
    }
}

/* Shuts down the sockets of connections that took longer than the timeout
 * to deliver their request (their threads then see the end of the input). */
static void *watchdog_main(void *p) {
    server *sv = p;
    for (;;) {
        pthread_mutex_lock(&sv->mu);
        const int stop = sv->wd_stop;
        const double t = now_s();
        for (conn_ent *ce = sv->conns; ce && !stop; ce = ce->next)
            if (!ce->received && !ce->killed && ce->fd >= 0 && t - ce->t0 > sv->o.timeout) {
                shutdown(ce->fd, SHUT_RDWR);
                ce->killed = 1;
            }
        pthread_mutex_unlock(&sv->mu);
        if (stop) return NULL;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int parse_opts(serve_opts *o, int argc, char **argv, const char **path) {
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { serve_usage(stdout); return 0; }
        if (cli_int_opt("--port", argc, argv, &i, &o->port, &bad) ||
            cli_int_opt("--parallel", argc, argv, &i, &o->parallel, &bad) ||
            cli_int_opt("--ctx", argc, argv, &i, &o->ctx, &bad) ||
            cli_int_opt("--batch", argc, argv, &i, &o->batch, &bad) ||
            cli_int_opt("--queue", argc, argv, &i, &o->queue, &bad) ||
            cli_int_opt("--timeout", argc, argv, &i, &o->timeout, &bad) ||
            cli_int_opt("--drain", argc, argv, &i, &o->drain, &bad) ||
            cli_int_opt("--max-connections", argc, argv, &i, &o->max_conn, &bad)) {
            if (bad) return -1;
            continue;
        }
        int mb = -1;
        if (cli_int_opt("--max-body", argc, argv, &i, &mb, &bad)) {
            if (bad) return -1;
            o->max_body = mb;
            continue;
        }
        if ((!strcmp(a, "--host") || !strcmp(a, "--alias")) && i + 1 < argc) {
            if (!strcmp(a, "--host")) o->host = argv[++i];
            else o->alias = argv[++i];
            continue;
        }
        if (a[0] == '-' || *path) {
            fprintf(stderr, "moe serve: unexpected argument '%s'\n", a);
            serve_usage(stderr);
            return -1;
        }
        *path = a;
    }
    if (!*path) { serve_usage(stderr); return -1; }
    if (o->port < 0 || o->port > 65535 || o->parallel < 1 || o->parallel > 1024 || o->ctx < 0 ||
        o->batch < 0 || o->queue < 0 || o->timeout < 1 || o->drain < 0 || o->max_conn < 1 ||
        o->max_body < 1) {
        fprintf(stderr, "moe serve: an option is out of range (port 0..65535, parallel 1..1024, "
                        "timeout >= 1, max-connections >= 1, max-body >= 1, others >= 0)\n");
        return -1;
    }
    return 1;
}

static struct MHD_Daemon *listen_on(server *sv) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_POLL;
    if (inet_pton(AF_INET, sv->o.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)sv->o.port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, sv->o.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)sv->o.port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "moe serve: --host %s is not a numeric IPv4 or IPv6 address\n", sv->o.host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)sv->o.port, NULL, NULL, on_request, sv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)sv->o.timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MHD_POOL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->o.max_conn,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, sv, MHD_OPTION_END);
    if (!d)
        fprintf(stderr, "moe serve: cannot listen on %s port %d (in use, or not an address of "
                        "this machine)\n", sv->o.host, sv->o.port);
    return d;
}

int cmd_serve(int argc, char **argv, int n_threads) {
    server sv;
    memset(&sv, 0, sizeof sv);
    serve_opts *o = &sv.o;
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .parallel = 4, .queue = 64,
                      .timeout = 30, .drain = 10, .max_conn = 256, .max_body = 1 << 20};
    const char *path = NULL;
    const int pr = parse_opts(o, argc, argv, &path);
    if (pr <= 0) return pr == 0 ? 0 : 2;

    /* SIGTERM and SIGINT blocked in every thread (the scheduler's and
       libmicrohttpd's inherit the mask), so that none has a system call
       interrupted; the main thread takes them with sigtimedwait */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    moe_server_options so = {0};
    so.parallel = o->parallel;
    so.ctx_len = o->ctx;
    so.n_threads = n_threads;
    so.max_batch = o->batch;
    so.queue_max = o->queue > 0 ? o->queue : -1;
    so.alias = o->alias;
    moe_error err;
    if (moe_server_open(&sv.s, path, &so, &err) != MOE_OK) {
        fprintf(stderr, "moe serve: %s\n", err.msg);
        return 1;
    }
    pthread_mutex_init(&sv.mu, NULL);
    int rc = 1;
    pthread_t wd;
    int wd_started = 0;
    struct MHD_Daemon *d = listen_on(&sv);
    if (!d) goto done;
    if (pthread_create(&wd, NULL, watchdog_main, &sv) != 0) {
        fprintf(stderr, "moe serve: cannot start a thread\n");
        goto done;
    }
    wd_started = 1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("moe serve: %s on http://%s:%d (parallel %d)\n", moe_server_model_id(sv.s), o->host,
           di ? (int)di->port : o->port, o->parallel);
    fflush(stdout);
    for (;;) {
        const struct timespec ts = {1, 0};
        const int sig = sigtimedwait(&stop_set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) break;
    }
    /* graceful: no new connections, drain_s for what runs, then cancel the rest */
    fprintf(stderr, "moe serve: stopping (%d requests running or queued)\n",
            moe_server_busy(sv.s));
    const MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    moe_server_drain(sv.s);
    const double t0 = now_s();
    /* requests still running, or whose answers are still being sent */
    while ((moe_server_busy(sv.s) > 0 || __atomic_load_n(&sv.active, __ATOMIC_SEQ_CST) > 0) &&
           now_s() - t0 < o->drain) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    moe_server_cancel_all(sv.s);
    while ((moe_server_busy(sv.s) > 0 || __atomic_load_n(&sv.active, __ATOMIC_SEQ_CST) > 0) &&
           now_s() - t0 < o->drain + 5.0) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rc = 0;
done:
    if (d) MHD_stop_daemon(d);
    if (wd_started) {
        pthread_mutex_lock(&sv.mu);
        sv.wd_stop = 1;
        pthread_mutex_unlock(&sv.mu);
        pthread_join(wd, NULL);
    }
    moe_server_close(sv.s);
    pthread_mutex_destroy(&sv.mu);
    return rc;
}
#endif
