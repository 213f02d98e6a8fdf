/* fuzz_gguf.c: the GGUF reader (src/io/gguf.c) on any bytes: validate an
 * image in memory, then read back every key (by name, with every typed
 * getter) and every tensor (by name, and the first row dequantized, so the
 * dequantizers see hostile blocks: NaN, infinite and subnormal scales). */
#include "fuzz_util.h"
#include "io/gguf.h"
#include "quant/quant.h"

static volatile size_t sink; /* keeps the reads of the string arrays */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_ctx *g = NULL;
    moe_error err;
    if (gguf_open_memory(&g, data, size, "fuzz", &err) != MOE_OK) return 0;
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        const char *k = kv->key.s;
        /* every key can be found (one holding a NUL byte only up to it) */
        if (strlen(k) == kv->key.n && gguf_find_kv(g, k) == NULL) abort();
        uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f; double d; int b;
        const char *s; size_t n;
        gguf_get_u32(g, k, &u32, NULL);
        gguf_get_i32(g, k, &i32, NULL);
        gguf_get_u64(g, k, &u64, NULL);
        gguf_get_i64(g, k, &i64, NULL);
        gguf_get_f32(g, k, &f, NULL);
        gguf_get_f64(g, k, &d, NULL);
        gguf_get_bool(g, k, &b, NULL);
        if (gguf_get_str(g, k, &s, &n, NULL) == MOE_OK && strlen(s) > n) abort();
        gguf_vtype et;
        uint64_t an;
        const void *arr;
        if (gguf_get_arr(g, k, &et, &an, &arr, NULL) == MOE_OK && an > 0 && et == GGUF_VT_STR) {
            const gguf_str *sv = arr;
            for (uint64_t j = 0; j < an; j++) sink += sv[j].n ? (unsigned char)sv[j].s[sv[j].n - 1] : 0;
        }
    }
    float row[4096];
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (strlen(t->name.s) == t->name.n && gguf_find_tensor(g, t->name.s) == NULL) abort();
        const quant_traits *tr = quant_get_traits((quant_type)t->type);
        if (!tr || t->ne[0] <= 0 || t->ne[0] > 4096 || t->ne[0] % tr->block_size) continue;
        if (quant_row_size((quant_type)t->type, t->ne[0]) > t->nbytes) abort();
        quant_dequantize_row((quant_type)t->type, t->data, row, t->ne[0], NULL);
    }
    gguf_close(g);
    return 0;
}
