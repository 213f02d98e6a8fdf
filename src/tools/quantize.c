/* quantize.c: a GGUF model re-written with its matrices in another weight
 * type (moe_quantize, `moe quantize`), as llama.cpp's llama-quantize does:
 * every metadata key copied (general.file_type updated), tensors in the same
 * order with the same names and shapes.
 *
 * Which tensors change type (the rule, also in docs/INFERENCE.md): a tensor
 * is converted when it has 2 or more dimensions, its name ends in ".weight"
 * and it is not a router (names containing "ffn_gate_inp": the router and the
 * shared expert's gate stay exact, they are tiny and decide the routing).
 * Everything else (norms, biases, exp_probs_b, rope_freqs, any 1-D tensor)
 * is copied byte for byte, so F32 stays F32. Converted tensors are read as
 * floats (F32/F16/BF16, or dequantized from a block type) and quantized row
 * by row, rows in parallel. A row length the type's block size does not
 * divide is an error naming the tensor, or with allow_fallback the tensor
 * is written as Q8_0 (or F16 when 32 does not divide it either).
 *
 * Not for: Hugging Face folders (convert.c), importance matrices or mixed
 * per-tensor recipes (llama-quantize's Q4_K_M etc.: one type for all).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/cancel.h"
#include "core/error.h"
#include "io/gguf.h"
#include "moe_infer.h"
#include "quant/quant.h"
#include "tools/synth.h"

/* Name, GGUF type id, llama.cpp's general.file_type (LLAMA_FTYPE_*). */
static const struct { const char *name; uint32_t id, file_type; } k_qtypes[] = {
    {"f32", GGUF_T_F32, 0},    {"f16", GGUF_T_F16, 1},    {"bf16", GGUF_T_BF16, 32},
    {"q8_0", GGUF_T_Q8_0, 7},  {"q4_0", GGUF_T_Q4_0, 2},  {"q4_1", GGUF_T_Q4_1, 3},
    {"q5_0", GGUF_T_Q5_0, 8},  {"q5_1", GGUF_T_Q5_1, 9},  {"q2_k", GGUF_T_Q2_K, 10},
    {"q3_k", GGUF_T_Q3_K, 12}, {"q4_k", GGUF_T_Q4_K, 15}, {"q5_k", GGUF_T_Q5_K, 17},
    {"q6_k", GGUF_T_Q6_K, 18},
};
#define N_QTYPES (sizeof k_qtypes / sizeof k_qtypes[0])

static int type_index(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < N_QTYPES; i++) {
        const char *a = k_qtypes[i].name, *b = name;
        while (*a && *b && (*a == (*b >= 'A' && *b <= 'Z' ? *b + 32 : *b))) { a++; b++; }
        if (!*a && !*b) return (int)i;
    }
    return -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void moe_quantize_options_default(moe_quantize_options *o) {
    memset(o, 0, sizeof *o);
    o->type = "q8_0";
}

/* 1 if tensor t is converted to the target type (the rule above). */
static int converts(const gguf_tensor *t) {
    const size_t n = t->name.n;
    if (t->n_dims < 2 || n < 7 || strcmp(t->name.s + n - 7, ".weight")) return 0;
    if (strstr(t->name.s, "ffn_gate_inp")) return 0;
    return t->type == GGUF_T_F32 || t->type == GGUF_T_F16 || t->type == GGUF_T_BF16 ||
           quant_type_valid((quant_type)t->type);
}

moe_status moe_quantize(const char *in_path, const char *out_path, const moe_quantize_options *opt,
                        moe_quantize_result *res, moe_error *err) {
    moe_quantize_options o;
    if (opt) o = *opt;
    else moe_quantize_options_default(&o);
    moe_quantize_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!in_path || (!out_path && !o.dry_run))
        return moe_err(err, MOE_ERR_ARG, "quantize: %s path is NULL", in_path ? "output" : "input");
    const int ti = type_index(o.type);
    if (ti < 0)
        return moe_err(err, MOE_ERR_ARG, "quantize: unknown type '%s' (expected f32, f16, bf16, q8_0, q4_0, q4_1, "
                       "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)", o.type ? o.type : "(null)");
    const uint32_t want = k_qtypes[ti].id;
    const double t0 = now_s();
    gguf_ctx *g = NULL;
    moe_status st = gguf_open_file(&g, in_path, err);
    if (st) return st;
    const size_t nt = gguf_n_tensors(g);
    gguf_writer *w = NULL;
    uint32_t *types = calloc(nt ? nt : 1, sizeof *types);
    void **bufs = calloc(nt ? nt : 1, sizeof *bufs);
    if (!types || !bufs) { st = moe_err(err, MOE_ERR_NOMEM, "quantize: out of memory"); goto done; }
    if ((st = gguf_writer_create(&w, err))) goto done;
    int have_ft = 0;
    for (size_t i = 0; i < gguf_n_kv(g) && !st; i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (!strcmp(kv->key.s, "general.file_type")) {
            st = gguf_writer_set_u32(w, kv->key.s, k_qtypes[ti].file_type, err);
            have_ft = 1;
        } else st = synth_copy_kv(w, kv, err);
    }
    if (!st && !have_ft) st = gguf_writer_set_u32(w, "general.file_type", k_qtypes[ti].file_type, err);
    if (st) goto done;

    /* plan: each tensor's output type and size; the rows the block size cannot hold */
    int64_t total = 0;
    for (size_t i = 0; i < nt && !st; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        r.n_tensors++;
        uint32_t ty = t->type;
        if (converts(t)) {
            ty = want;
            if (t->ne[0] % gguf_type_block_size(want)) {
                if (!o.allow_fallback) {
                    st = moe_err(err, MOE_ERR_SHAPE, "quantize: %s: rows of %lld weights do not fill %s blocks of "
                                 "%lld (allow_fallback / --allow-fallback writes such tensors as q8_0 or f16)",
                                 t->name.s, (long long)t->ne[0], gguf_type_name(want),
                                 (long long)gguf_type_block_size(want));
                    break;
                }
                ty = t->ne[0] % 32 == 0 ? GGUF_T_Q8_0 : GGUF_T_F16;
                r.n_fallback++;
            }
            if (ty != t->type) { r.n_quantized++; total += t->n_elem; }
        }
        types[i] = ty;
        size_t nb = 0;
        if (!st) st = gguf_tensor_nbytes(ty, t->n_dims, t->ne, &nb, err);
        if (!st) st = gguf_writer_add_tensor(w, t->name.s, ty, t->n_dims, t->ne,
                                             t->data /* sizes only: not written */, nb, err);
    }
    if (st) goto done;
    r.bytes_in = (int64_t)gguf_file_size(g);
    r.bytes_out = (int64_t)gguf_writer_size(w);
    if (o.dry_run) goto done;

    /* convert, tensor by tensor, rows in parallel */
    gguf_writer_free(w);
    w = NULL;
    if ((st = gguf_writer_create(&w, err))) goto done;
    for (size_t i = 0; i < gguf_n_kv(g) && !st; i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (!strcmp(kv->key.s, "general.file_type")) st = gguf_writer_set_u32(w, kv->key.s, k_qtypes[ti].file_type, err);
        else st = synth_copy_kv(w, kv, err);
    }
    if (!st && !have_ft) st = gguf_writer_set_u32(w, "general.file_type", k_qtypes[ti].file_type, err);
    int64_t done_w = 0;
    const int nth = o.n_threads > 0 ? o.n_threads : 0;
    for (size_t i = 0; i < nt && !st; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        size_t nb = 0;
        if ((st = gguf_tensor_nbytes(types[i], t->n_dims, t->ne, &nb, err))) break;
        if (types[i] != t->type) {
            const int64_t cols = t->ne[0], rows = t->n_elem / cols;
            const size_t in_rb = quant_row_size((quant_type)t->type, cols);
            const size_t out_rb = quant_row_size((quant_type)types[i], cols);
            uint8_t *out = malloc(nb ? nb : 1);
            if (!out) { st = moe_err(err, MOE_ERR_NOMEM, "quantize: %s: out of memory (%zu bytes)", t->name.s, nb); break; }
            bufs[i] = out;
            int failed = 0;
            moe_error e1;
            e1.msg[0] = '\0';
            /* chunks of about 4M weights, so progress moves on big tensors */
            const int64_t per = cols >= ((int64_t)1 << 22) ? 1 : ((int64_t)1 << 22) / cols;
            for (int64_t r0 = 0; r0 < rows && !failed; r0 += per) {
                if (moe_cancel_requested()) break; /* moe_cancel: stop between chunks */
                const int64_t r1 = r0 + per < rows ? r0 + per : rows;
#pragma omp parallel num_threads(nth > 0 ? nth : omp_get_max_threads()) if (r1 - r0 > 1)
                {
                    float *x = malloc(sizeof(float) * (size_t)cols);
                    moe_error e;
#pragma omp for schedule(dynamic, 4)
                    for (int64_t rr = r0; rr < r1; rr++) {
                        const int bad = !x ||
                            quant_dequantize_row((quant_type)t->type, (const uint8_t *)t->data + (size_t)rr * in_rb,
                                                 x, cols, &e) ||
                            quant_quantize_row((quant_type)types[i], x, out + (size_t)rr * out_rb, cols, &e);
                        if (bad) {
#pragma omp critical
                            if (!failed) {
                                failed = 1;
                                snprintf(e1.msg, sizeof e1.msg, "row %lld: %.400s", (long long)rr,
                                         x ? e.msg : "out of memory");
                            }
                        }
                    }
                    free(x);
                }
                done_w += (r1 - r0) * cols;
                if (o.progress) o.progress(o.user, done_w, total);
            }
            if (failed) { st = moe_err(err, MOE_ERR_FORMAT, "quantize: %s: %s", t->name.s, e1.msg); break; }
            if ((st = cancel_check(err, "quantize"))) break;
        }
        st = gguf_writer_add_tensor(w, t->name.s, types[i], t->n_dims, t->ne, bufs[i] ? bufs[i] : t->data, nb, err);
    }
    if (!st) st = gguf_writer_write(w, out_path, err);
done:
    r.seconds = now_s() - t0;
    if (res) *res = r;
    gguf_writer_free(w);
    for (size_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    free(types);
    gguf_close(g);
    return st;
}
