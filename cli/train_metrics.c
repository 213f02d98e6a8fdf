/* train_metrics.c: the records of metrics.jsonl that `moe report` reads
 * beyond the step lines: a header (configuration, sizes, FLOPs, hardware,
 * threads, data sources) when a run starts or resumes, and after each
 * evaluation the held-out routing per MoE layer and per source.
 * Record shapes are documented in docs/REPORT.md. Only the public API. */
#include "cli.h"
#include "moe.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Length of the valid UTF-8 sequence at s (NUL-terminated), 0 if invalid. */
static int utf8_seq(const unsigned char *s) {
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    int len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k < len; k++) if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

/* s as a JSON string: valid UTF-8 always (a byte that does not start a valid
   sequence, as in a token that holds part of a character, becomes U+FFFD),
   control characters escaped. */
void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_seq(p);
        if (n == 0) { fputs("\\ufffd", f); p++; continue; }
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fwrite(p, 1, (size_t)n, f);
        p += n;
    }
    fputc('"', f);
}

static const char *select_name(int s) {
    static const char *n[] = {"topk", "topp", "expert_choice", "hash", "all"};
    return s >= 0 && s < (int)(sizeof n / sizeof n[0]) ? n[s] : "?";
}
static const char *gate_name(int g) {
    static const char *n[] = {"softmax", "sigmoid", "relu"};
    return g >= 0 && g < (int)(sizeof n / sizeof n[0]) ? n[g] : "?";
}

/* The processor's model name from /proc/cpuinfo ("" when unknown). */
static void cpu_name(char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t') c++;
                snprintf(out, n, "%s", c);
                out[strcspn(out, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

void train_metrics_header(FILE *f, moe_trainer *t, const char *label) {
    const moe_train_config *c = moe_trainer_config(t);
    const moe_model_config *m = &c->model;
    const moe_layer_config *r = &m->moe;
    moe_model_counts k;
    moe_model_count(m, &k);
    moe_data_info di = moe_trainer_data_info(t);
    int n_moe = 0;
    for (int l = 0; l < m->n_layers; l++) n_moe += moe_model_layer_is_moe(m, l);
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    fprintf(f, "{\"header\":{\"version\":1,\"moe_version\":\"%s\",\"time\":\"%s\",\"label\":", moe_version(), when);
    cli_json_str(f, label ? label : "");
    fprintf(f, ",\"resumed_at\":%lld,", (long long)moe_trainer_steps_done(t));
    fprintf(f, "\"model\":{\"vocab\":%d,\"d_model\":%d,\"n_layers\":%d,\"n_moe_layers\":%d,\"n_heads\":%d,"
            "\"n_kv_heads\":%d,\"ctx\":%d,\"d_ff\":%d,\"moe_every\":%d,\"n_dense_first\":%d,\"tie\":%d},",
            m->vocab_size, m->d_model, m->n_layers, n_moe, m->n_heads, m->n_kv_heads, m->ctx_len, m->d_ff,
            m->moe_every, m->n_dense_first, m->tie_embeddings);
    fprintf(f, "\"router\":{\"n_experts\":%d,\"top_k\":%d,\"expert_d_ff\":%d,\"gate\":\"%s\",\"select\":\"%s\","
            "\"capacity_factor\":%g,\"renormalize\":%d,\"aux\":%g,\"z\":%g,\"top_p\":%g,\"ec_capacity\":%g,"
            "\"bias_update_rate\":%g,\"shared_d_ff\":%d,\"n_groups\":%d,\"jitter\":%g,\"noisy\":%d},",
            r->n_experts, r->top_k, r->d_ff, gate_name(r->gate), select_name(r->select), r->capacity_factor,
            r->renormalize, r->aux_loss_coef, r->z_loss_coef, r->top_p, r->ec_capacity, r->bias_update_rate,
            r->shared_d_ff, r->n_groups, r->jitter, r->noisy_gate);
    fprintf(f, "\"train\":{\"batch\":%d,\"accum\":%d,\"steps\":%lld,\"lr\":%g,\"min_lr\":%g,\"warmup\":%lld,"
            "\"eval_every\":%lld,\"eval_batches\":%d,\"seed\":%llu,\"weight_decay\":%g,\"grad_clip\":%g},",
            c->batch, c->accum, (long long)c->steps, c->lr, c->min_lr, (long long)c->warmup,
            (long long)c->eval_every, c->eval_batches, (unsigned long long)c->seed, c->adamw.weight_decay,
            c->adamw.grad_clip);
    fprintf(f, "\"params\":%lld,\"active_params\":%lld,\"fwd_flops\":%lld,\"train_flops\":%lld,",
            (long long)k.params, (long long)k.active_params, (long long)k.fwd_flops, (long long)k.train_flops);
    fprintf(f, "\"tokens_per_step\":%lld,", (long long)c->accum * c->batch * m->ctx_len);
    fprintf(f, "\"hardware\":{\"cpu\":");
    cli_json_str(f, cpu);
    fprintf(f, ",\"cores\":%ld,\"memory_gib\":%.1f},\"threads\":%d,",
            cores, pages > 0 && psz > 0 ? (double)pages * (double)psz / 1073741824.0 : 0.0,
            m->n_threads > 0 ? m->n_threads : omp_get_max_threads());
    fprintf(f, "\"data\":{\"text_bytes\":%lld,\"train_tokens\":%lld,\"val_tokens\":%lld,\"unigram_bits\":%.4f}}}\n",
            (long long)di.text_bytes, (long long)di.train_tokens, (long long)di.val_tokens, di.unigram_bits);
}

void train_metrics_eval(FILE *f, moe_trainer *t, int64_t step, double wall) {
    const moe_eval_routing *r = moe_trainer_eval_routing(t);
    if (!r || r->n_layers == 0 || r->tokens == 0) return;
    const int E = r->n_experts, S = r->n_sources;
    fprintf(f, "{\"step\":%lld,\"wall\":%.3f,\"eval_routing\":{\"tokens\":%lld,\"sources\":[", (long long)step, wall,
            (long long)r->tokens);
    for (int s = 0; s < S; s++) {
        if (s) fputc(',', f);
        cli_json_str(f, r->source_names[s]);
    }
    fprintf(f, "],\"source_tokens\":[");
    for (int s = 0; s < S; s++) fprintf(f, "%s%lld", s ? "," : "", (long long)r->source_tokens[s]);
    fprintf(f, "],\"layers\":[");
    for (int j = 0; j < r->n_layers; j++) {
        fprintf(f, "%s{\"layer\":%d,\"load\":[", j ? "," : "", r->layers[j]);
        for (int e = 0; e < E; e++) fprintf(f, "%s%lld", e ? "," : "", (long long)r->load[(size_t)j * E + e]);
        fprintf(f, "],\"max_violation\":%.4f,\"dead_experts\":%d,\"mi_bits\":%.5f,\"counts\":[",
                r->max_violation[j], r->dead_experts[j], r->mi_bits[j]);
        for (int s = 0; s < S; s++) {
            fprintf(f, "%s[", s ? "," : "");
            for (int e = 0; e < E; e++)
                fprintf(f, "%s%lld", e ? "," : "", (long long)r->counts[((size_t)j * S + s) * E + e]);
            fputc(']', f);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "]}}\n");
}
