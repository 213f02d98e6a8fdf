/* trainer.c: a training run: data -> tokenizer -> token cache -> model ->
 * AdamW steps -> validation -> checkpoints, and its exact resume.
 * Not for: printing, progress bars or metrics files (the CLI does those from
 * the step reports), nor the file layouts (src/model/model_file.c, state_file.c).
 *
 * A run directory holds:
 *   tokens.bin   the token cache (data.h), reused while sources and
 *                tokenizer are the same
 *   model.gguf   the model with its tokenizer (what `moe sample` and
 *                `moe run` read)
 *   state.gguf   the model again plus the optimizer moments, the step, the
 *                data loader's and routers' random states and the training
 *                configuration: everything a resume needs, in one file, so a
 *                crash between the two writes can never pair a model with the
 *                wrong optimizer state.
 */
#include "moe.h"
#include "core/autothreads.h"
#include "core/cancel.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/model_file.h"
#include "train/state_file.h"
#include "corpus/corpus.h"
#include "train/data.h"
#include "train/sources.h"
#include "train/src_routing.h"
#include "text/tokenizer.h"
#include "train/trainer_internal.h"
#include "model/model.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKENIZER_SAMPLE_BYTES ((size_t)8 << 20) /* text the BPE trains on, at most */

/* The defaults are the demo's run: a 4-layer MoE (8 experts top-2) on the
 * built-in corpus, about 1.2M tokens, a couple of minutes on 2 cores. */
void moe_train_config_default(moe_train_config *c) {
    memset(c, 0, sizeof *c);
    moe_model_config_default(&c->model);
    c->model.vocab_size = 768;
    c->model.n_kv_heads = 2;
    c->model.moe.aux_loss_coef = 0.01f;
    c->model.moe.z_loss_coef = 0.001f;
    moe_adamw_config_default(&c->adamw);
    c->batch = 16;
    c->model.max_batch = 16;
    c->accum = 1;
    c->steps = 600;
    c->lr = 4e-3f;
    c->min_lr = 4e-4f;
    c->warmup = 30;
    c->eval_every = 150;
    c->eval_batches = 16;
    c->save_every = 100;  /* kill -9 loses at most this many steps */
    c->val_fraction = 0.05f;
    c->seed = 1;
    c->corpus_bytes = 3 << 20;
    c->eval_capacity = MOE_DROPLESS;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void moe_trainer_free(moe_trainer *t) {
    if (!t) return;
    trainer_dist_free(t);
    moe_adamw_free(t->opt);
    moe_model_free(t->model);
    moe_tokenizer_free(t->tok);
    free(t->tokens);
    free(t->notes);
    free(t->x);
    free(t->y);
    free(t->dir);
    src_map_free(&t->srcmap);
    src_routing_free(&t->srcroute);
    free(t);
}

static uint64_t tokenizer_fingerprint(const moe_tokenizer *tok) {
    const bpe_tokenizer *b = &tok->bpe;
    uint64_t h = data_fingerprint((const uint8_t *)b->merges, sizeof(bpe_merge) * (size_t)b->n_merges);
    return h ^ ((uint64_t)b->n_vocab * 0x9E3779B97F4A7C15ull);
}

/* Encodes text in pieces cut at blank lines (documents) and at the ends of
 * sources (src_end[n_src], increasing, the last = n), in parallel; the
 * pieces are fixed by the text alone, so the result is too. counts[n_src]
 * gets each source's tokens. */
static moe_status encode_all(moe_trainer *t, const uint8_t *text, size_t n, const size_t *src_end, size_t n_src,
                             uint64_t *counts, moe_error *err) {
    enum { PIECE = 1 << 20 };
    size_t n_pieces = n / PIECE + n_src + 1;
    size_t *cut = malloc(sizeof(size_t) * (n_pieces + 1));
    size_t *cnt = calloc(n_pieces, sizeof(size_t));
    size_t *which = malloc(sizeof(size_t) * n_pieces);
    int32_t *out = malloc(sizeof(int32_t) * (n + 1));
    if (!cut || !cnt || !which || !out) {
        free(cut); free(cnt); free(which); free(out);
        return moe_err(err, MOE_ERR_NOMEM, "tokenizing %zu bytes: out of memory", n);
    }
    cut[0] = 0;
    size_t np = 0, s = 0;
    while (cut[np] < n) {
        while (src_end[s] <= cut[np]) s++;
        size_t end = src_end[s], c = cut[np] + PIECE;
        if (c >= end) c = end;
        else {
            while (c < end && !(text[c - 1] == '\n' && text[c] == '\n')) c++;
            if (c < end) c++;
        }
        which[np] = s;
        cut[++np] = c;
    }
    int failed = 0;
    size_t n_done = 0; /* pieces done (progress, from thread 0) */
    const moe_progress_fn fn = t->cfg.progress;
    #pragma omp parallel for schedule(dynamic, 1)
    for (size_t p = 0; p < np; p++) {
        size_t got;
        if (moe_cancel_requested()) { failed = 1; cnt[p] = 0; continue; }
        if (bpe_encode(&t->tok->bpe, text + cut[p], cut[p + 1] - cut[p], out + cut[p], cut[p + 1] - cut[p], &got, NULL))
            failed = 1;
        cnt[p] = got;
        size_t d;
        #pragma omp atomic capture
        d = ++n_done;
        if (fn && omp_get_thread_num() == 0) fn(t->cfg.progress_user, "tokenizing", (int64_t)d, (int64_t)np);
    }
    if (fn) fn(t->cfg.progress_user, "tokenizing", (int64_t)np, (int64_t)np);
    if (failed) {
        free(cut); free(cnt); free(which); free(out);
        if (moe_cancel_requested()) return cancel_check(err, "tokenizing the data");
        return moe_err(err, MOE_ERR_ARG, "tokenizing the data failed");
    }
    size_t w = 0;
    memset(counts, 0, sizeof(uint64_t) * n_src);
    for (size_t p = 0; p < np; p++) {
        memmove(out + w, out + cut[p], sizeof(int32_t) * cnt[p]);
        w += cnt[p];
        counts[which[p]] += cnt[p];
    }
    free(cut);
    free(cnt);
    free(which);
    t->tokens = out;
    t->n_tokens = w;
    return MOE_OK;
}

/* Appends a formatted line (and its '\n') to t->notes; out of memory drops
 * it (notes are advice). */
__attribute__((format(printf, 2, 3))) static void add_note(moe_trainer *t, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int l = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (l < 0) return;
    if ((size_t)l >= sizeof line) l = (int)sizeof line - 1;
    size_t have = t->notes ? strlen(t->notes) : 0;
    char *p = realloc(t->notes, have + (size_t)l + 2);
    if (!p) return;
    memcpy(p + have, line, (size_t)l);
    p[have + (size_t)l] = '\n';
    p[have + (size_t)l + 1] = '\0';
    t->notes = p;
}

typedef struct val_share { uint64_t n; size_t src; } val_share;
static int cmp_share(const void *a, const void *b) {
    const val_share *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    return x->src < y->src ? -1 : x->src > y->src;
}

/* The note that says where validation comes from: the sources that give the
 * most held-out tokens, by name when names are known (names[n_src] or NULL). */
static void note_validation(moe_trainer *t, const uint64_t *val_per_src, size_t n_src, const char *const *names) {
    val_share *v = malloc(sizeof *v * n_src);
    if (!v) return;
    size_t used = 0;
    uint64_t total = 0;
    for (size_t s = 0; s < n_src; s++) {
        v[s] = (val_share){val_per_src[s], s};
        used += val_per_src[s] > 0;
        total += val_per_src[s];
    }
    qsort(v, n_src, sizeof *v, cmp_share);
    t->info.n_sources = (int64_t)n_src;
    t->info.n_val_sources = (int64_t)used;
    char list[768];
    size_t at = 0;
    list[0] = '\0';
    if (names && total) {
        size_t shown = 0;
        for (size_t i = 0; i < n_src && v[i].n && shown < 8 && at < sizeof list - 64; i++, shown++) {
            char esc[64]; /* a name from the file system must not reach the terminal raw */
            moe_escape_ctrl(esc, sizeof esc, names[v[i].src], strlen(names[v[i].src]), 0);
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%s %.1f%%", shown ? ", " : ": ", esc,
                                   100.0 * (double)v[i].n / (double)total);
        }
        if (used > shown && at < sizeof list - 32)
            snprintf(list + at, sizeof list - at, ", and %zu more", used - shown);
    }
    add_note(t, "validation: %llu tokens, the last %g%% of every block of up to %zu tokens of each source, from %zu "
             "of %zu source%s%s", (unsigned long long)total, 100.0 * (double)t->cfg.val_fraction, DATA_VAL_BLOCK,
             used, n_src, n_src == 1 ? "" : "s", list);
    free(v);
}

/* Splits tokens (a share of every source when counts[n_src] is known,
 * else the last tokens: a version-1 cache), sets up the loader and the
 * batch buffers. names[n_src] (or NULL) name the sources in the note. */
static moe_status setup_data(moe_trainer *t, const uint64_t *counts, size_t n_src, const char *const *names,
                             moe_error *err) {
    const moe_train_config *c = &t->cfg;
    moe_status st;
    if (counts) {
        int32_t *out = malloc(sizeof(int32_t) * (t->n_tokens + 1));
        uint64_t *vps = malloc(sizeof(uint64_t) * n_src);
        if (!out || !vps) { free(out); free(vps); return moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory"); }
        st = data_split_sources(out, t->tokens, t->n_tokens, counts, n_src, c->val_fraction, c->model.ctx_len,
                                c->batch, &t->train, &t->val, vps, err);
        if (st == MOE_OK) {
            free(t->tokens);
            t->tokens = out;
            note_validation(t, vps, n_src, names);
        } else {
            free(out);
        }
        free(vps);
    } else {
        st = data_split_tokens(t->tokens, t->n_tokens, c->val_fraction, c->model.ctx_len, c->batch, &t->train,
                               &t->val, err);
        if (st == MOE_OK)
            add_note(t, "note: this run's token cache is of version 1: validation stays the last %g%% of the tokens, "
                     "as when the run began", 100.0 * (double)c->val_fraction);
    }
    if (st != MOE_OK) return st;
    data_loader_init(&t->loader, t->train, c->batch, c->model.ctx_len, c->seed ^ 0xDA7A5EEDull);
    size_t bt = (size_t)c->batch * (size_t)c->model.ctx_len;
    t->x = malloc(sizeof(int32_t) * bt);
    t->y = malloc(sizeof(int32_t) * bt);
    if (!t->x || !t->y) return moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory");
    t->info.train_tokens = (int64_t)t->train.n;
    t->info.val_tokens = (int64_t)t->val.n;
    t->info.unigram_bits = data_unigram_entropy_bits(t->tokens, t->n_tokens, c->model.vocab_size);
    return MOE_OK;
}

static moe_status check_train_config(const moe_train_config *c, moe_error *err) {
    moe_status st;
    if (c->batch < 1 || c->accum < 1 || c->steps < 1)
        return moe_err(err, MOE_ERR_ARG, "train config: batch = %d, accum = %d, steps = %lld must be >= 1", c->batch,
                       c->accum, (long long)c->steps);
    if (c->accum > MOE_MAX_ACCUM)
        return moe_err(err, MOE_ERR_ARG, "train config: accum = %d, expected 1..%d", c->accum, MOE_MAX_ACCUM);
    if (!(c->lr > 0) || !(c->min_lr >= 0) || c->min_lr > c->lr || !isfinite(c->lr))
        return moe_err(err, MOE_ERR_ARG, "train config: lr = %g, min_lr = %g: expected 0 <= min_lr <= lr, lr > 0 "
                       "and finite", (double)c->lr, (double)c->min_lr);
    if (c->corpus_bytes < 0 || c->corpus_bytes > MOE_MAX_CORPUS_BYTES)
        return moe_err(err, MOE_ERR_ARG, "train config: corpus_bytes = %lld, expected 0..%lld", (long long)c->corpus_bytes,
                       (long long)MOE_MAX_CORPUS_BYTES);
    if (!isfinite(c->eval_capacity) || (c->eval_capacity < 0 && c->eval_capacity != MOE_DROPLESS) ||
        c->eval_capacity > MOE_MAX_CAPACITY_FACTOR)
        return moe_err(err, MOE_ERR_ARG, "train config: eval_capacity = %g, expected 0..%g or MOE_DROPLESS (-1)",
                       (double)c->eval_capacity, (double)MOE_MAX_CAPACITY_FACTOR);
    st = moe_adamw_config_check(&c->adamw, err);
    if (st != MOE_OK) return st;
    if (c->warmup < 0 || c->eval_every < 0 || c->save_every < 0 || c->eval_batches < 0)
        return moe_err(err, MOE_ERR_ARG, "train config: warmup, eval_every, save_every, eval_batches must be >= 0");
    if (!(c->val_fraction > 0 && c->val_fraction < 0.5f))
        return moe_err(err, MOE_ERR_ARG, "train config: val_fraction = %g, expected in (0, 0.5)", (double)c->val_fraction);
    if (c->model.max_batch != c->batch)
        return moe_err(err, MOE_ERR_ARG, "train config: model.max_batch = %d must equal batch = %d",
                       c->model.max_batch, c->batch);
    st = moe_model_config_check(&c->model, err);
    if (st != MOE_OK) return st;
    /* before any data work */
    st = moe_model_check_memory(&c->model, err);
    if (st != MOE_OK) return st;
    return MOE_OK;
}

moe_status moe_train_config_check(const moe_train_config *c, moe_error *err) {
    moe_err_clear(err);
    if (!c) return moe_err(err, MOE_ERR_ARG, "train config: NULL");
    moe_train_config k = *c;
    k.model.max_batch = k.batch; /* as moe_trainer_create sets it */
    return check_train_config(&k, err);
}

/* The token sources in the order setup_data left the tokens in: the same
 * split applied to the source ids (data_split_sources is a function of the
 * positions and the table only). */
static moe_status sources_order(moe_trainer *t, const uint64_t *counts, size_t n_src, moe_error *err) {
    if (!counts) return MOE_OK; /* a version-1 cache: the tokens keep their order */
    const moe_train_config *c = &t->cfg;
    int32_t *out = malloc(sizeof(int32_t) * (t->srcmap.n_tokens + 1));
    if (!out) return moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory");
    data_split tr, va;
    moe_status st = data_split_sources(out, t->srcmap.src_of, t->srcmap.n_tokens, counts, n_src, c->val_fraction,
                                       c->model.ctx_len, c->batch, &tr, &va, NULL, err);
    if (st != MOE_OK) { free(out); return st; }
    free(t->srcmap.src_of);
    t->srcmap.src_of = out;
    return MOE_OK;
}

/* The per-source routing of validation (src_routing.h). */
static moe_status sources_routing(moe_trainer *t, moe_error *err) {
    static const int32_t none = 0;
    const int inside = t->srcmap.n_tokens == t->n_tokens && t->val.n > 0 && t->val.tokens >= t->tokens &&
                       t->val.tokens + t->val.n <= t->tokens + t->n_tokens;
    return src_routing_init(&t->srcroute, t->model, (const char *const *)t->srcmap.names, t->srcmap.n_src,
                            inside ? t->srcmap.src_of + (t->val.tokens - t->tokens) : &none,
                            inside ? t->val : (data_split){t->tokens, 0}, t->cfg.batch, t->cfg.model.ctx_len, err);
}

moe_status moe_trainer_create(moe_trainer **out, const moe_train_config *cfg, const char *const *data, int n_data,
                              const char *dir, moe_error *err) {
    if (!out || !cfg) return moe_err(err, MOE_ERR_ARG, "moe_trainer_create: %s is NULL", out ? "config" : "out");
    *out = NULL;
    moe_train_config c = *cfg;
    c.model.max_batch = c.batch;
    moe_status st = check_train_config(&c, err);
    if (st != MOE_OK) return st;
    if (!dir || !*dir) return moe_err(err, MOE_ERR_ARG, "trainer: no output directory");
    const int made_dir = mkdir(dir, 0777) == 0; /* removed again on failure (if still empty) */
    if (!made_dir && errno != EEXIST)
        return moe_err(err, MOE_ERR_IO, "cannot create the run directory %s: %s", dir, strerror(errno));
    moe_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        if (made_dir) rmdir(dir);
        return moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory");
    }
    t->cfg = c;
    t->schedule_steps = c.steps;
    t->dir = strdup(dir);
    char *state = join(dir, "state.gguf"), *model = join(dir, "model.gguf"), *cache = join(dir, "tokens.bin");
    uint8_t *text = NULL;
    size_t n_text = 0, n_src = 0, *src_end = NULL;
    uint64_t *counts = NULL;
    const char **names = NULL;
    data_sources srcs;
    memset(&srcs, 0, sizeof srcs);
    src_text tags = {0};
    corpus_docs docs = {0};
    if (!t->dir || !state || !model || !cache) { st = moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory"); goto done; }
    if (file_exists(state) || file_exists(model)) {
        st = moe_err(err, MOE_ERR_ARG, "%s already holds a checkpoint: continue it with --resume %s, or choose "
                     "another --out (nothing was overwritten)", dir, dir);
        goto done;
    }
    /* the text, and which bytes came from which file */
    if (data && n_data > 0) {
        st = data_read_sources(&text, &n_text, &srcs, data, n_data, c.skip_bad, err);
        t->notes = srcs.notes; /* the warnings and notes of reading come first */
        srcs.notes = NULL;
        t->info.n_skipped = srcs.n_skipped;
    } else {
        st = corpus_generate_docs(&text, &n_text, &docs, (size_t)c.corpus_bytes, c.seed, err);
    }
    /* the report's sources: each byte tagged (src_routing.h) */
    if (st == MOE_OK) st = srcs.n ? src_tags_files(&tags, n_text, &srcs, data, n_data, err)
                                  : src_tags_corpus(&tags, n_text, &docs, err);
    if (st == MOE_OK) st = cancel_check(err, "reading the data");
    if (st != MOE_OK) goto done;
    n_src = srcs.n ? srcs.n : 1;
    src_end = malloc(sizeof(size_t) * n_src);
    counts = malloc(sizeof(uint64_t) * n_src);
    names = malloc(sizeof(char *) * n_src);
    if (!src_end || !counts || !names) { st = moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory"); goto done; }
    for (size_t s = 0; s < n_src; s++) {
        src_end[s] = srcs.n ? srcs.v[s].off + srcs.v[s].len : n_text;
        names[s] = srcs.n ? srcs.v[s].path : "the built-in corpus";
    }
    t->info.text_bytes = (int64_t)n_text;
    t->src_fp = data_fingerprint(text, n_text);
    /* the tokenizer, trained on (a prefix of) the text; a vocabulary of the
       256 bytes alone gets the two special tokens on top */
    int want_vocab = c.model.vocab_size;
    if (want_vocab >= 256 && want_vocab < 256 + 2) {
        want_vocab = 256 + 2;
        add_note(t, "note: a vocabulary of %d is the 256 bytes alone (no merges): the model gets %d ids, the bytes "
                 "and <|bos|>, <|eos|>", c.model.vocab_size, want_vocab);
    }
    t->tok = calloc(1, sizeof *t->tok);
    if (!t->tok) { st = moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory"); goto done; }
    st = bpe_train_progress(&t->tok->bpe, text, n_text < TOKENIZER_SAMPLE_BYTES ? n_text : TOKENIZER_SAMPLE_BYTES,
                            want_vocab, c.progress, c.progress_user, err);
    if (st != MOE_OK) { free(t->tok); t->tok = NULL; goto done; }
    if (moe_tokenizer_n_vocab(t->tok) != c.model.vocab_size) {
        /* the text ran out of pairs (or bytes alone): the model uses what the tokenizer has */
        t->cfg.model.vocab_size = moe_tokenizer_n_vocab(t->tok);
    }
    t->tok_fp = tokenizer_fingerprint(t->tok);
    /* the tokens: from the cache when it matches (and has this run's table
       of sources), else encode and cache */
    uint64_t *cached = NULL;
    size_t n_cached = 0;
    st = data_cache_read(cache, &t->tokens, &t->n_tokens, &cached, &n_cached, (uint32_t)t->cfg.model.vocab_size,
                         t->tok_fp, t->src_fp, err);
    if (st == MOE_OK && n_cached == n_src) {
        memcpy(counts, cached, sizeof(uint64_t) * n_src);
        t->info.cache_reused = 1;
    } else {
        free(t->tokens);
        t->tokens = NULL;
        st = encode_all(t, text, n_text, src_end, n_src, counts, err);
        if (st == MOE_OK)
            st = data_cache_write(cache, t->tokens, t->n_tokens, counts, n_src, (uint32_t)t->cfg.model.vocab_size,
                                  t->tok_fp, t->src_fp, err);
    }
    free(cached);
    if (st != MOE_OK) goto done;
    /* the source of each token, kept as sources.txt, before the split reorders the tokens */
    st = src_map_build(&t->srcmap, &tags, n_text, &t->tok->bpe, t->tokens, t->n_tokens, err);
    if (st == MOE_OK) {
        char *sp = join(dir, "sources.txt");
        st = sp ? src_map_save(&t->srcmap, sp, err) : moe_err(err, MOE_ERR_NOMEM, "trainer: out of memory");
        free(sp);
    }
    if (st != MOE_OK) goto done;
    free(text);
    text = NULL;
    st = cancel_check(err, "tokenizing the data");
    if (st == MOE_OK) st = setup_data(t, counts, n_src, names, err);
    if (st == MOE_OK) st = sources_order(t, counts, n_src, err);
    if (st != MOE_OK) goto done;
    trainer_shard(&c, &t->e_lo, &t->e_hi);
    st = model_create(&t->model, &t->cfg.model, t->e_lo, t->e_hi, err);
    if (st != MOE_OK) goto done;
    moe_model_init_params(t->model, t->cfg.seed);
    st = sources_routing(t, err);
    if (st != MOE_OK) goto done;
    st = moe_adamw_create(&t->opt, t->model, &t->cfg.adamw, err);
done:
    free(text);
    free(state);
    free(model);
    free(cache);
    free(src_end);
    free(counts);
    free(names);
    data_sources_free(&srcs);
    src_text_free(&tags);
    free(docs.d);
    if (st != MOE_OK) {
        if (made_dir) rmdir(dir); /* a run that never started leaves no empty folder */
        moe_trainer_free(t);
        return st;
    }
    t->cfg.progress = NULL; /* the callback is for creation only */
    t->cfg.progress_user = NULL;
    t->cfg.dist = NULL;     /* and the job for the allocation (attach follows) */
    *out = t;
    return MOE_OK;
}

/* Scales every gradient (the mean over accumulated micro-batches), on the
 * model's threads (a pass over all gradients: 600 MB for 151M parameters). */
static void scale_grads(moe_model *m, float s) {
    const int cnt = moe_model_get_config(m)->n_threads;
    const int nt = cnt > 0 ? cnt : omp_get_max_threads();
    for (int i = 0; i < moe_model_n_tensors(m); i++) {
        moe_tensor tn;
        moe_model_tensor(m, i, &tn, NULL);
        float *g = tn.grad;
        #pragma omp parallel for num_threads(nt) schedule(static) if (tn.held_n > 65536)
        for (int64_t j = 0; j < tn.held_n; j++) g[j] *= s;
    }
}

static moe_status trainer_step(moe_trainer *t, moe_train_step_info *info, moe_error *err) {
    const moe_train_config *c = &t->cfg;
    const moe_model_config *mc = moe_model_get_config(t->model);
    double t0 = now_s();
    moe_model_drop_grads(t->model);
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L && mc->moe.global_stats) moe_layer_reset_stats(L);
    }
    moe_train_step_info r;
    memset(&r, 0, sizeof r);
    /* distributed: every rank cuts the same global batch and runs its share,
       rows [rank B / P, (rank + 1) B / P) */
    const int P = t->comm ? t->comm->size : 1, Bl = c->batch / P;
    const size_t off = t->comm ? (size_t)t->comm->rank * (size_t)Bl * (size_t)mc->ctx_len : 0;
    for (int a = 0; a < c->accum; a++) {
        data_loader_next(&t->loader, t->x, t->y);
        float loss;
        moe_error me;
        moe_status st = moe_model_forward(t->model, t->x + off, t->y + off, Bl, mc->ctx_len, 1, &loss, &me);
        if (st == MOE_OK && t->comm) st = trainer_dist_loss(t, &loss, &me);
        if (st == MOE_OK && t->comm) trainer_dist_before_backward(t, a == c->accum - 1);
        if (st == MOE_OK) st = moe_model_backward(t->model, &me);
        if (st != MOE_OK) return moe_err(err, st, "step %lld: %s", (long long)t->step + 1, me.msg);
        moe_model_losses ls = moe_model_get_losses(t->model);
        r.loss += loss / (float)c->accum;
        r.aux += ls.aux / (float)c->accum;
        r.z += ls.z / (float)c->accum;
        r.router += ls.router / (float)c->accum;
    }
    if (t->comm) {
        moe_status st = trainer_dist_sync_grads(t, err);
        if (st != MOE_OK) return st;
    }
    if (c->accum > 1) scale_grads(t->model, 1.0f / (float)c->accum);
    /* the cosine of the run's first length; past its end (a resume with a
       larger --steps) the rate holds at min_lr: it never jumps back up */
    r.lr = t->step < t->schedule_steps ? moe_lr_schedule(t->step, t->schedule_steps, c->warmup, c->lr, c->min_lr)
                                       : c->min_lr;
    moe_status st = moe_adamw_step(t->opt, r.lr, &r.grad_norm, err);
    if (st != MOE_OK) return st;
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L) moe_layer_update_balance(L);
    }
    t->step++;
    r.step = t->step;
    r.tokens = (double)c->accum * c->batch * mc->ctx_len;
    r.seconds = now_s() - t0;
    if (info) *info = r;
    return MOE_OK;
}

/* With no thread count given, each step runs at the count measured fastest
 * now (core/autothreads.h; a training step is the unit); the model is left
 * at the default count for everything else (evaluation, sampling). */
moe_status moe_trainer_step(moe_trainer *t, moe_train_step_info *info, moe_error *err) {
    if (t->cfg.model.n_threads > 0) return trainer_step(t, info, err);
    if (!t->at_ready) {
        autothreads_init(&t->at, omp_get_max_threads(), 1);
        t->at_ready = 1;
    }
    moe_model_set_threads(t->model, autothreads_begin(&t->at));
    moe_status st = trainer_step(t, info, err);
    if (st == MOE_OK) autothreads_end(&t->at);
    moe_model_set_threads(t->model, 0);
    return st;
}

moe_status moe_trainer_eval(moe_trainer *t, float *val_loss, moe_error *err) {
    const moe_train_config *c = &t->cfg;
    const moe_model_config *mc = moe_model_get_config(t->model);
    int nb = data_val_batches(t->val, c->batch, mc->ctx_len);
    if (c->eval_batches > 0 && c->eval_batches < nb) nb = c->eval_batches; /* spread over the whole split */
    if (nb < 1) return moe_err(err, MOE_ERR_ARG, "validation: fewer tokens than one batch");
    /* validation routes without dropping (or as configured) */
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L && mc->moe.select != MOE_SELECT_EXPERT_CHOICE) moe_layer_set_capacity_factor(L, c->eval_capacity, NULL);
    }
    double sum = 0;
    moe_status st = MOE_OK;
    moe_error me;
    me.msg[0] = '\0';
    src_routing_begin(&t->srcroute);
    for (int b = 0; b < nb && st == MOE_OK; b++) {
        data_val_batch(t->val, b, nb, c->batch, mc->ctx_len, t->x, t->y);
        float loss;
        const int P = t->comm ? t->comm->size : 1, Bl = c->batch / P;
        const size_t off = t->comm ? (size_t)t->comm->rank * (size_t)Bl * (size_t)mc->ctx_len : 0;
        st = moe_model_forward(t->model, t->x + off, t->y + off, Bl, mc->ctx_len, 0, &loss, &me);
        if (st == MOE_OK && t->comm) st = trainer_dist_loss(t, &loss, &me);
        /* the per-source routing; in a distributed run every rank's layers
           hold the routing of the whole batch (layer_dist.c routes the
           gathered logits of all ranks, in batch order), so each rank counts
           the same and rank 0 writes it */
        if (st == MOE_OK) src_routing_add(&t->srcroute, t->model, b, nb, c->batch, mc->ctx_len);
        sum += loss;
    }
    src_routing_end(&t->srcroute);
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L && mc->moe.select != MOE_SELECT_EXPERT_CHOICE) moe_layer_set_capacity_factor(L, mc->moe.capacity_factor, NULL);
    }
    if (st != MOE_OK) return moe_err(err, st, "validation: %s", me.msg);
    *val_loss = (float)(sum / nb);
    return MOE_OK;
}

/* ------------------------------------------------------------ checkpoints */

#define TRY(x) do { st = (x); if (st != MOE_OK) goto done; } while (0)

moe_status moe_trainer_save(moe_trainer *t, moe_error *err) {
    /* distributed: the experts' parameters and moments are gathered from
       their owners (every rank calls this); rank 0 writes */
    float **whole = NULL; /* [3 n] the tensors held in parts, gathered (rank 0) */
    if (t->comm) {
        moe_status gs = trainer_dist_gather(t, &whole, err);
        if (gs != MOE_OK || t->comm->rank != 0) return gs;
    }
    const moe_model_config *mc = moe_model_get_config(t->model);
    char *state = join(t->dir, "state.gguf"), *model = join(t->dir, "model.gguf");
    gguf_writer *w = NULL;
    moe_status st = MOE_OK;
    char (*names)[80] = NULL;
    uint64_t *rngs = NULL;
    if (!state || !model) { st = moe_err(err, MOE_ERR_NOMEM, "save: out of memory"); goto done; }
    /* state.gguf: model + training configuration + optimizer + random state */
    TRY(gguf_writer_create(&w, err));
    moe_hash h;
    moe_hash_init(&h);
    const int n = moe_model_n_tensors(t->model);
    TRY(model_file_add(w, t->model, &t->tok->bpe, 1, whole, &h, err));
    TRY(state_file_add_train_config(w, &t->cfg, err));
    TRY(gguf_writer_set_i64(w, "moe.train.step", t->step, err));
    TRY(gguf_writer_set_i64(w, "moe.train.adam_t", moe_adamw_steps(t->opt), err));
    TRY(gguf_writer_set_i64(w, "moe.train.schedule_steps", t->schedule_steps, err));
    TRY(gguf_writer_set_u64(w, "moe.train.loader_state", data_loader_state(&t->loader), err));
    TRY(gguf_writer_set_u64(w, "moe.train.tokenizer_fp", t->tok_fp, err));
    TRY(gguf_writer_set_u64(w, "moe.train.source_fp", t->src_fp, err));
    rngs = calloc((size_t)mc->n_layers, sizeof(uint64_t));
    names = calloc((size_t)(2 * n + mc->n_layers), sizeof *names);
    if (!rngs || !names) { st = moe_err(err, MOE_ERR_NOMEM, "save: out of memory"); goto done; }
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (L) rngs[l] = moe_layer_rng_state(L);
    }
    TRY(gguf_writer_set_arr(w, "moe.train.layer_rng", GGUF_VT_U64, rngs, (uint64_t)mc->n_layers, err));
    for (int i = 0; i < n; i++) {
        moe_tensor tn;
        moe_model_tensor(t->model, i, &tn, NULL);
        int64_t ne[3];
        for (int j = 0; j < tn.n_dims; j++) ne[j] = tn.shape[tn.n_dims - 1 - j];
        for (int which = 0; which < 2; which++) {
            const float *mom = whole && whole[(1 + which) * n + i] ? whole[(1 + which) * n + i]
                                                                   : moe_adamw_moment(t->opt, i, which);
            if (tn.held_n != tn.n && mom == moe_adamw_moment(t->opt, i, which)) {
                st = moe_err(err, MOE_ERR_ARG, "save: the moments of %s are held in parts", tn.name);
                goto done;
            }
            snprintf(names[2 * i + which], sizeof names[0], "%s.adam_%c", tn.name, which ? 'v' : 'm');
            TRY(gguf_writer_add_tensor(w, names[2 * i + which], GGUF_T_F32, (uint32_t)tn.n_dims, ne, mom,
                                       (size_t)tn.n * sizeof(float), err));
            moe_hash_update(&h, mom, (size_t)tn.n * sizeof(float));
        }
    }
    TRY(gguf_writer_set_u64(w, "moe.checksum", moe_hash_final(&h), err));
    TRY(gguf_writer_write(w, state, err));
    /* model.gguf: what inference reads */
    TRY(model_file_save(t->model, &t->tok->bpe, whole, model, err));
done:
    trainer_dist_whole_free(t, whole);
    gguf_writer_free(w);
    free(names);
    free(rngs);
    free(state);
    free(model);
    return st;
}

moe_status moe_trainer_read_config(const char *dir, moe_train_config *c, moe_error *err) {
    if (!dir || !c) return moe_err(err, MOE_ERR_ARG, "moe_trainer_read_config: %s is NULL", dir ? "c" : "dir");
    char *state = join(dir, "state.gguf");
    if (!state) return moe_err(err, MOE_ERR_NOMEM, "resume: out of memory");
    if (!file_exists(state)) {
        moe_status s = moe_err(err, MOE_ERR_IO, "resume: %s has no checkpoint (%s is missing)", dir, state);
        free(state);
        return s;
    }
    gguf_ctx *g = NULL;
    moe_status st;
    moe_train_config_default(c);
    TRY(gguf_open_file(&g, state, err));
    TRY(state_file_read_train_config(g, c, err));
    c->model.max_batch = c->batch;
    TRY(model_file_read_config(g, &c->model, err));
done:
    gguf_close(g);
    free(state);
    return st;
}

moe_status moe_trainer_resume(moe_trainer **out, const char *dir, const moe_train_config *want, moe_error *err) {
    if (!out || !dir) return moe_err(err, MOE_ERR_ARG, "moe_trainer_resume: %s is NULL", out ? "dir" : "out");
    *out = NULL;
    moe_train_config saved;
    moe_status st = moe_trainer_read_config(dir, &saved, err);
    if (st != MOE_OK) return st;
    char diff[256];
    if (want && state_file_train_config_diff(&saved, want, diff, sizeof diff))
        return moe_err(err, MOE_ERR_ARG, "resume: the configuration differs from the checkpoint in %s/state.gguf "
                       "(saved vs asked): %s", dir, diff);
    moe_train_config c = want ? *want : saved;
    c.model.max_batch = c.batch;
    st = check_train_config(&c, err);
    if (st != MOE_OK) return st;
    moe_trainer *t = calloc(1, sizeof *t);
    char *state = join(dir, "state.gguf"), *cache = join(dir, "tokens.bin");
    gguf_ctx *g = NULL;
    uint64_t *counts = NULL;
    size_t n_src = 0;
    if (!t || !state || !cache) { st = moe_err(err, MOE_ERR_NOMEM, "resume: out of memory"); goto done; }
    t->cfg = c;
    t->dir = strdup(dir);
    TRY(gguf_open_file(&g, state, err));
    TRY(model_file_verify_checksum(g, err));
    TRY(model_file_check_size(g, &t->cfg.model, err));
    t->tok = calloc(1, sizeof *t->tok);
    if (!t->dir || !t->tok) { st = moe_err(err, MOE_ERR_NOMEM, "resume: out of memory"); goto done; }
    TRY(model_file_read_tokenizer(g, &t->tok->bpe, err));
    TRY(gguf_get_u64(g, "moe.train.tokenizer_fp", &t->tok_fp, err));
    TRY(gguf_get_u64(g, "moe.train.source_fp", &t->src_fp, err));
    if (tokenizer_fingerprint(t->tok) != t->tok_fp) {
        st = moe_err(err, MOE_ERR_FORMAT, "resume: %s: the tokenizer does not match its fingerprint", state);
        goto done;
    }
    TRY(data_cache_read(cache, &t->tokens, &t->n_tokens, &counts, &n_src, (uint32_t)c.model.vocab_size, t->tok_fp,
                        t->src_fp, err));
    t->info.cache_reused = 1;
    {
        char *sp = join(dir, "sources.txt");
        if (!sp) { st = moe_err(err, MOE_ERR_NOMEM, "resume: out of memory"); goto done; }
        st = src_map_load(&t->srcmap, sp, t->n_tokens, err);
        free(sp);
        if (st != MOE_OK) goto done;
    }
    TRY(setup_data(t, counts, n_src, NULL, err));
    TRY(sources_order(t, counts, n_src, err));
    /* a rank of an expert-parallel job reads its own experts' slices */
    trainer_shard(&c, &t->e_lo, &t->e_hi);
    t->cfg.dist = NULL;
    TRY(model_create(&t->model, &t->cfg.model, t->e_lo, t->e_hi, err));
    TRY(model_file_load_tensors(g, t->model, err));
    TRY(sources_routing(t, err));
    TRY(moe_adamw_create(&t->opt, t->model, &t->cfg.adamw, err));
    int n = moe_model_n_tensors(t->model);
    for (int i = 0; i < n; i++) {
        moe_tensor tn;
        moe_model_tensor(t->model, i, &tn, NULL);
        for (int which = 0; which < 2; which++) {
            char name[80];
            snprintf(name, sizeof name, "%s.adam_%c", tn.name, which ? 'v' : 'm');
            const gguf_tensor *gt;
            TRY(gguf_get_tensor(g, name, &gt, err));
            if (gt->type != GGUF_T_F32 || gt->n_elem != tn.n) {
                st = moe_err(err, MOE_ERR_FORMAT, "resume: %s: tensor %s is not F32 of %lld elements", state, name,
                             (long long)tn.n);
                goto done;
            }
            memcpy(moe_adamw_moment(t->opt, i, which), (const float *)gt->data + tn.held_lo,
                   sizeof(float) * (size_t)tn.held_n);
        }
    }
    int64_t adam_t, step;
    uint64_t ls;
    TRY(gguf_get_i64(g, "moe.train.adam_t", &adam_t, err));
    TRY(gguf_get_i64(g, "moe.train.step", &step, err));
    TRY(gguf_get_u64(g, "moe.train.loader_state", &ls, err));
    if (step < 0 || adam_t < 0) { st = moe_err(err, MOE_ERR_FORMAT, "resume: %s: negative step", state); goto done; }
    moe_adamw_set_steps(t->opt, adam_t);
    t->step = step;
    /* checkpoints from before this key: the cosine ran over the saved steps */
    t->schedule_steps = saved.steps;
    if (gguf_find_kv(g, "moe.train.schedule_steps"))
        TRY(gguf_get_i64(g, "moe.train.schedule_steps", &t->schedule_steps, err));
    if (t->schedule_steps < 1) {
        st = moe_err(err, MOE_ERR_FORMAT, "resume: %s: moe.train.schedule_steps = %lld, expected >= 1", state,
                     (long long)t->schedule_steps);
        goto done;
    }
    data_loader_set_state(&t->loader, ls);
    const moe_model_config *mc = &t->cfg.model;
    uint64_t nr;
    const void *rng;
    TRY(gguf_get_arr_of(g, "moe.train.layer_rng", GGUF_VT_U64, &nr, &rng, err));
    if (nr != (uint64_t)mc->n_layers) {
        st = moe_err(err, MOE_ERR_FORMAT, "resume: %s: moe.train.layer_rng has %llu entries, expected %d", state,
                     (unsigned long long)nr, mc->n_layers);
        goto done;
    }
    for (int l = 0; l < mc->n_layers; l++) {
        moe_layer *L = moe_model_moe_layer(t->model, l);
        if (!L) continue;
        moe_layer_set_rng_state(L, ((const uint64_t *)rng)[l]);
    }
done:
    gguf_close(g);
    free(state);
    free(cache);
    free(counts);
    if (st != MOE_OK) { moe_trainer_free(t); return st; }
    *out = t;
    return MOE_OK;
}

int64_t moe_trainer_steps_done(const moe_trainer *t) { return t->step; }
int64_t moe_trainer_schedule_steps(const moe_trainer *t) { return t->schedule_steps; }
const moe_train_config *moe_trainer_config(const moe_trainer *t) { return &t->cfg; }
moe_model *moe_trainer_model(moe_trainer *t) { return t->model; }
const moe_tokenizer *moe_trainer_tokenizer(const moe_trainer *t) { return t->tok; }
moe_data_info moe_trainer_data_info(const moe_trainer *t) { return t->info; }
const char *moe_trainer_data_notes(const moe_trainer *t) { return t && t->notes ? t->notes : ""; }
const moe_eval_routing *moe_trainer_eval_routing(const moe_trainer *t) { return &t->srcroute.pub; }
