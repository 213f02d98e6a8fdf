/* test_gguf.c: the GGUF reader and writer, and atomic file writing.
 *
 * Round trip (every metadata type, tensors of many types and shapes, memory
 * and disk), the typed getters, writer argument checks, and a corpus of
 * broken files: every truncated prefix, crafted bad headers / counts /
 * lengths / types / shapes / offsets / duplicates / alignments, seeded
 * random buffers and random byte flips of a valid file. Every broken file
 * must be rejected with a message, never crash or read out of bounds (each
 * image is copied into a malloc of exactly its size so ASan sees over-reads).
 * Atomic files: commit, abort, simulated and real (RLIMIT_FSIZE) failures
 * mid-write, and a writer killed mid-write leave the old file intact.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "io/gguf.h"
#include "quant/quant.h"
#include "testutil.h"

static char tmpdir[256];

/* ------------------------------------------------------------ helpers */

/* Opens an exact-size heap copy of buf[0..n) (so ASan sees over-reads). */
static moe_status open_copy(const void *buf, size_t n, gguf_ctx **g, moe_error *err) {
    void *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, buf, n);
    moe_status s = gguf_open_memory(g, copy, n, "case.gguf", err);
    /* tensor data points into copy: touch it all before freeing */
    if (s == MOE_OK) {
        volatile unsigned sum = 0;
        for (size_t i = 0; i < gguf_n_kv(*g); i++) {
            const gguf_kv *kv = gguf_kv_at(*g, i);
            sum += (unsigned)strlen(kv->key.s) + (unsigned char)kv->key.s[kv->key.n];
            if (kv->type == GGUF_VT_STR) sum += (unsigned char)kv->v.str.s[kv->v.str.n];
            if (kv->type == GGUF_VT_ARR && kv->arr_n) {
                if (kv->arr_type == GGUF_VT_STR) {
                    const gguf_str *t = kv->arr;
                    for (uint64_t j = 0; j < kv->arr_n; j++) sum += (unsigned char)t[j].s[t[j].n];
                } else {
                    const unsigned char *p = kv->arr;
                    size_t bytes = (size_t)kv->arr_n * gguf_vtype_size(kv->arr_type);
                    for (size_t j = 0; j < bytes; j++) sum += p[j];
                }
            }
        }
        for (size_t i = 0; i < gguf_n_tensors(*g); i++) {
            const gguf_tensor *t = gguf_tensor_at(*g, i);
            const unsigned char *p = t->data;
            for (size_t j = 0; j < t->nbytes; j++) sum += p[j];
            if (gguf_find_tensor(*g, t->name.s) == NULL && strlen(t->name.s) == t->name.n)
                sum += 1000000; /* cannot happen: every name must be found */
        }
        (void)sum;
        gguf_close(*g);
        *g = NULL;
    }
    free(copy);
    return s;
}

/* A byte builder for crafted files. */
typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;
static void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, x, 4);
}
static void bb_u64(bb *b, uint64_t v) { bb_u32(b, (uint32_t)v); bb_u32(b, (uint32_t)(v >> 32)); }
static void bb_str(bb *b, const char *s) { bb_u64(b, strlen(s)); bb_put(b, s, strlen(s)); }
static void bb_zeros(bb *b, size_t n) { for (size_t i = 0; i < n; i++) bb_u8(b, 0); }
static void bb_pad(bb *b, size_t a) { while (b->n % a) bb_u8(b, 0); }
static void bb_hdr(bb *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, nt);
    bb_u64(b, nkv);
}
static void bb_kv_u32(bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_u32(b, GGUF_VT_U32); bb_u32(b, v); }
static void bb_kv_str(bb *b, const char *k, const char *v) { bb_str(b, k); bb_u32(b, GGUF_VT_STR); bb_str(b, v); }
static void bb_tinfo(bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                     uint64_t off) {
    bb_str(b, name);
    bb_u32(b, nd);
    for (uint32_t d = 0; d < nd; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}

/* Number of temporary files (".*.tmp.*") left in tmpdir. */
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}
static void remove_temp_files(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

/* Reads a whole file; NULL if it cannot. */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    return buf;
}
static int write_raw(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* --------------------------------------------------------- type table */

static void test_types(void) {
    static const struct { uint32_t t; int64_t bs; size_t bytes; const char *name; } want[] = {
        {0, 1, 4, "f32"}, {1, 1, 2, "f16"}, {2, 32, 18, "q4_0"}, {3, 32, 20, "q4_1"},
        {6, 32, 22, "q5_0"}, {7, 32, 24, "q5_1"}, {8, 32, 34, "q8_0"}, {9, 32, 36, "q8_1"},
        {10, 256, 84, "q2_K"}, {11, 256, 110, "q3_K"}, {12, 256, 144, "q4_K"},
        {13, 256, 176, "q5_K"}, {14, 256, 210, "q6_K"}, {15, 256, 292, "q8_K"},
        {24, 1, 1, "i8"}, {25, 1, 2, "i16"}, {26, 1, 4, "i32"}, {27, 1, 8, "i64"},
        {28, 1, 8, "f64"}, {30, 1, 2, "bf16"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (gguf_type_block_size(want[i].t) != want[i].bs ||
            gguf_type_block_bytes(want[i].t) != want[i].bytes ||
            strcmp(gguf_type_name(want[i].t), want[i].name) != 0) {
            tu_fail("gguf/type_table", "type %u: got %s %lld %zu, want %s %lld %zu", want[i].t,
                    gguf_type_name(want[i].t), (long long)gguf_type_block_size(want[i].t),
                    gguf_type_block_bytes(want[i].t), want[i].name, (long long)want[i].bs,
                    want[i].bytes);
            bad = 1;
        }
    }
    const uint32_t unknown[] = {4, 5, 31, 32, 33, 34, 100, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        if (gguf_type_block_size(unknown[i]) != 0 || gguf_type_block_bytes(unknown[i]) != 0) {
            tu_fail("gguf/type_table", "type %u should be unknown", unknown[i]);
            bad = 1;
        }
    /* nbytes */
    moe_error e;
    size_t nb = 0;
    int64_t ne_k[2] = {256, 3}, ne_q[1] = {33}, ne_big[2] = {INT64_MAX, 2}, ne_zero[2] = {32, 0};
    int64_t ne_bytes[1] = {INT64_MAX - 31};
    if (gguf_tensor_nbytes(GGUF_T_Q4_K, 2, ne_k, &nb, &e) || nb != 3 * 144) {
        tu_fail("gguf/type_table", "q4_K {256,3}: nbytes %zu, want 432", nb);
        bad = 1;
    }
    e.msg[0] = 0;
    if (!gguf_tensor_nbytes(GGUF_T_Q4_0, 1, ne_q, &nb, &e) || !strstr(e.msg, "multiple")) {
        tu_fail("gguf/type_table", "q4_0 {33} accepted or bad message '%s'", e.msg);
        bad = 1;
    }
    if (!gguf_tensor_nbytes(GGUF_T_F32, 2, ne_big, &nb, &e) ||
        !gguf_tensor_nbytes(GGUF_T_F32, 2, ne_zero, &nb, &e) ||
        !gguf_tensor_nbytes(GGUF_T_F32, 1, ne_bytes, &nb, &e) ||
        !gguf_tensor_nbytes(GGUF_T_F32, 0, ne_k, &nb, &e) ||
        !gguf_tensor_nbytes(GGUF_T_F32, 5, ne_k, &nb, &e) ||
        !gguf_tensor_nbytes(4, 1, ne_k, &nb, &e)) {
        tu_fail("gguf/type_table", "an overflowing / empty / bad tensor shape was accepted");
        bad = 1;
    }
    if (!bad) tu_ok("gguf/type_table");
}

/* ---------------------------------------------------------- round trip */

#define NT 9
typedef struct rt_tensor {
    const char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
} rt_tensor;
static const rt_tensor rt_tensors[NT] = {
    {"token_embd.weight", GGUF_T_F32, 2, {8, 5, 1, 1}},
    {"a.f16", GGUF_T_F16, 1, {3, 1, 1, 1}},
    {"blk.0.q4_0", GGUF_T_Q4_0, 2, {64, 3, 1, 1}},
    {"blk.0.q8_0", GGUF_T_Q8_0, 3, {32, 2, 2, 1}},
    {"blk.0.ffn_gate_exps.weight", GGUF_T_Q4_K, 3, {256, 2, 4, 1}},
    {"blk.1.q6_k", GGUF_T_Q6_K, 4, {512, 1, 1, 2}},
    {"bf16", GGUF_T_BF16, 3, {7, 3, 2, 1}},
    {"i32", GGUF_T_I32, 1, {5, 1, 1, 1}},
    {"q5_1", GGUF_T_Q5_1, 2, {32, 1, 1, 1}},
};
static const char *const rt_tokens[] = {"<unk>", "", "<0x00>", "\xe2\x96\x81the", "a b", "end"};
static const uint8_t rt_u8[] = {0, 1, 255};
static const int8_t rt_i8[] = {-128, 0, 127};
static const uint16_t rt_u16[] = {0, 65535, 1234};
static const int16_t rt_i16[] = {-32768, 32767, -1};
static const uint32_t rt_u32[] = {0, 4000000000u, 7};
static const int32_t rt_i32[] = {1, 2, 3, 6, -5};
static const uint64_t rt_u64[] = {UINT64_MAX, 1};
static const int64_t rt_i64[] = {INT64_MIN, INT64_MAX, 0};
static const double rt_f64[] = {1e300, -0.0, 3.5};
static const uint8_t rt_bool[] = {1, 0, 1, 1};
static float rt_f32[1000];

/* Builds the round-trip writer; tensor data from data[] (each nbytes). */
static gguf_writer *rt_writer(uint8_t *data[NT], uint32_t alignment) {
    moe_error e;
    gguf_writer *w;
    if (gguf_writer_create(&w, &e)) return NULL;
    int bad = 0;
    bad |= gguf_writer_set_str(w, "general.architecture", "llama", &e);
    bad |= gguf_writer_set_u32(w, "general.alignment", alignment, &e);
    bad |= gguf_writer_set_u8(w, "t.u8", 200, &e);
    bad |= gguf_writer_set_i8(w, "t.i8", -100, &e);
    bad |= gguf_writer_set_u16(w, "t.u16", 60000, &e);
    bad |= gguf_writer_set_i16(w, "t.i16", -30000, &e);
    bad |= gguf_writer_set_u32(w, "t.u32", 4000000000u, &e);
    bad |= gguf_writer_set_i32(w, "t.i32", -2000000000, &e);
    bad |= gguf_writer_set_f32(w, "t.f32", 3.25f, &e);
    bad |= gguf_writer_set_bool(w, "t.bool", 1, &e);
    bad |= gguf_writer_set_str(w, "t.str", "hello, \xd0\xbc\xd0\xb8\xd1\x80", &e);
    bad |= gguf_writer_set_strn(w, "t.strn", "a\0b", 3, &e);
    bad |= gguf_writer_set_u64(w, "t.u64", 0x8000000000000005ull, &e);
    bad |= gguf_writer_set_i64(w, "t.i64", -(1ll << 62), &e);
    bad |= gguf_writer_set_f64(w, "t.f64", -1e300, &e);
    bad |= gguf_writer_set_i32(w, "t.i32pos", 77, &e);
    bad |= gguf_writer_set_arr(w, "a.u8", GGUF_VT_U8, rt_u8, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.i8", GGUF_VT_I8, rt_i8, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.u16", GGUF_VT_U16, rt_u16, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.i16", GGUF_VT_I16, rt_i16, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.u32", GGUF_VT_U32, rt_u32, 3, &e);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, rt_i32, 5, &e);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, rt_f32, 1000, &e);
    bad |= gguf_writer_set_arr(w, "a.bool", GGUF_VT_BOOL, rt_bool, 4, &e);
    bad |= gguf_writer_set_arr(w, "a.u64", GGUF_VT_U64, rt_u64, 2, &e);
    bad |= gguf_writer_set_arr(w, "a.i64", GGUF_VT_I64, rt_i64, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.f64", GGUF_VT_F64, rt_f64, 3, &e);
    bad |= gguf_writer_set_arr(w, "a.empty", GGUF_VT_U32, NULL, 0, &e);
    bad |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", rt_tokens, 6, &e);
    bad |= gguf_writer_set_arr_str(w, "a.empty_str", NULL, 0, &e);
    for (int i = 0; i < NT; i++) {
        const rt_tensor *t = &rt_tensors[i];
        size_t nb;
        gguf_tensor_nbytes(t->type, t->n_dims, t->ne, &nb, &e);
        bad |= gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data[i], nb, &e);
    }
    if (bad) {
        tu_fail("gguf/roundtrip", "building the writer failed: %s", e.msg);
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

/* Compares a read file against what rt_writer wrote; returns a description
 * of the first difference, or NULL. */
static const char *rt_check(const gguf_ctx *g, uint8_t *data[NT], uint32_t alignment,
                            char *why, size_t whyn) {
    moe_error e;
    uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; int b;
    const char *s; size_t n;
#define CHECK(c, ...) do { if (!(c)) { snprintf(why, whyn, __VA_ARGS__); return why; } } while (0)
    CHECK(gguf_version(g) == 3, "version %u", gguf_version(g));
    CHECK(gguf_alignment(g) == alignment, "alignment %u", gguf_alignment(g));
    CHECK(gguf_n_kv(g) == 30, "n_kv %zu", gguf_n_kv(g));
    CHECK(gguf_n_tensors(g) == NT, "n_tensors %zu", gguf_n_tensors(g));
    CHECK(strcmp(gguf_kv_at(g, 0)->key.s, "general.architecture") == 0, "kv order");
    CHECK(strcmp(gguf_kv_at(g, 29)->key.s, "a.empty_str") == 0, "kv order (last)");
    CHECK(!gguf_get_str(g, "general.architecture", &s, &n, &e) && !strcmp(s, "llama") && n == 5,
          "general.architecture");
    CHECK(!gguf_get_u32(g, "t.u8", &u32, &e) && u32 == 200, "t.u8");
    CHECK(gguf_find_kv(g, "t.u8")->type == GGUF_VT_U8, "t.u8 type");
    CHECK(!gguf_get_i32(g, "t.i8", &i32, &e) && i32 == -100, "t.i8");
    CHECK(!gguf_get_u32(g, "t.u16", &u32, &e) && u32 == 60000, "t.u16");
    CHECK(!gguf_get_i32(g, "t.i16", &i32, &e) && i32 == -30000, "t.i16");
    CHECK(!gguf_get_u32(g, "t.u32", &u32, &e) && u32 == 4000000000u, "t.u32");
    CHECK(!gguf_get_i32(g, "t.i32", &i32, &e) && i32 == -2000000000, "t.i32");
    CHECK(!gguf_get_f32(g, "t.f32", &f32, &e) && f32 == 3.25f, "t.f32");
    CHECK(gguf_find_kv(g, "t.f32")->type == GGUF_VT_F32, "t.f32 type");
    CHECK(!gguf_get_bool(g, "t.bool", &b, &e) && b == 1, "t.bool");
    CHECK(!gguf_get_str(g, "t.str", &s, &n, &e) && n == 13 && !strcmp(s, "hello, \xd0\xbc\xd0\xb8\xd1\x80"),
          "t.str");
    CHECK(!gguf_get_str(g, "t.strn", &s, &n, &e) && n == 3 && !memcmp(s, "a\0b", 4), "t.strn");
    CHECK(!gguf_get_u64(g, "t.u64", &u64, &e) && u64 == 0x8000000000000005ull, "t.u64");
    CHECK(!gguf_get_i64(g, "t.i64", &i64, &e) && i64 == -(1ll << 62), "t.i64");
    CHECK(!gguf_get_f64(g, "t.f64", &f64, &e) && f64 == -1e300, "t.f64");
    CHECK(!gguf_get_u32(g, "t.i32pos", &u32, &e) && u32 == 77, "t.i32pos as u32");
    CHECK(!gguf_get_u64(g, "t.u8", &u64, &e) && u64 == 200, "t.u8 as u64");
    CHECK(!gguf_get_i64(g, "t.i8", &i64, &e) && i64 == -100, "t.i8 as i64");

    /* the getters' refusals */
    e.msg[0] = 0;
    CHECK(gguf_get_u32(g, "t.i8", &u32, &e) && strstr(e.msg, "out of range"), "neg as u32: %s", e.msg);
    CHECK(gguf_get_u32(g, "t.u64", &u32, &e) && strstr(e.msg, "t.u64"), "u64 as u32: %s", e.msg);
    CHECK(gguf_get_i64(g, "t.u64", &i64, &e), "2^63+5 as i64 accepted");
    CHECK(gguf_get_i32(g, "t.u32", &i32, &e), "4e9 as i32 accepted");
    CHECK(gguf_get_u32(g, "t.str", &u32, &e) && strstr(e.msg, "string"), "str as u32: %s", e.msg);
    CHECK(gguf_get_u32(g, "t.bool", &u32, &e), "bool as u32 accepted");
    CHECK(gguf_get_bool(g, "t.u8", &b, &e) && strstr(e.msg, "expected bool"), "u8 as bool");
    CHECK(gguf_get_f32(g, "t.u32", &f32, &e), "u32 as f32 accepted");
    CHECK(gguf_get_str(g, "t.u32", &s, &n, &e) && strstr(e.msg, "expected string"), "u32 as str");
    CHECK(gguf_get_u32(g, "no.such.key", &u32, &e) == MOE_ERR_FORMAT && strstr(e.msg, "not found")
          && strstr(e.msg, "no.such.key"), "missing key: %s", e.msg);
    CHECK(gguf_find_kv(g, "no.such.key") == NULL, "find missing key");
    CHECK(gguf_get_arr(g, "t.u8", NULL, &u64, (const void **)&s, &e), "u8 as array accepted");

    /* arrays */
    const void *d;
    gguf_vtype et;
    struct { const char *key; gguf_vtype t; const void *want; uint64_t n; } arrs[] = {
        {"a.u8", GGUF_VT_U8, rt_u8, 3}, {"a.i8", GGUF_VT_I8, rt_i8, 3},
        {"a.u16", GGUF_VT_U16, rt_u16, 3}, {"a.i16", GGUF_VT_I16, rt_i16, 3},
        {"a.u32", GGUF_VT_U32, rt_u32, 3}, {"tokenizer.ggml.token_type", GGUF_VT_I32, rt_i32, 5},
        {"tokenizer.ggml.scores", GGUF_VT_F32, rt_f32, 1000}, {"a.bool", GGUF_VT_BOOL, rt_bool, 4},
        {"a.u64", GGUF_VT_U64, rt_u64, 2}, {"a.i64", GGUF_VT_I64, rt_i64, 3},
        {"a.f64", GGUF_VT_F64, rt_f64, 3}, {"a.empty", GGUF_VT_U32, NULL, 0},
    };
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        CHECK(!gguf_get_arr(g, arrs[i].key, &et, &u64, &d, &e), "%s: %s", arrs[i].key, e.msg);
        CHECK(et == arrs[i].t && u64 == arrs[i].n, "%s: type %d n %llu", arrs[i].key, (int)et,
              (unsigned long long)u64);
        size_t es = gguf_vtype_size(et);
        CHECK(u64 == 0 || ((uintptr_t)d % es == 0 && !memcmp(d, arrs[i].want, es * u64)),
              "%s: contents or alignment", arrs[i].key);
        CHECK(!gguf_get_arr_of(g, arrs[i].key, arrs[i].t, &u64, &d, &e), "%s typed", arrs[i].key);
    }
    const gguf_str *toks;
    CHECK(!gguf_get_arr_of(g, "tokenizer.ggml.tokens", GGUF_VT_STR, &u64, &d, &e) && u64 == 6,
          "tokens");
    toks = d;
    for (int i = 0; i < 6; i++)
        CHECK(toks[i].n == strlen(rt_tokens[i]) && !strcmp(toks[i].s, rt_tokens[i]), "token %d", i);
    CHECK(!gguf_get_arr_of(g, "a.empty_str", GGUF_VT_STR, &u64, &d, &e) && u64 == 0, "empty str arr");
    CHECK(gguf_get_arr_of(g, "tokenizer.ggml.scores", GGUF_VT_I32, &u64, &d, &e) &&
          strstr(e.msg, "array of f32"), "scores as i32: %s", e.msg);

    /* tensors */
    CHECK(gguf_data_offset(g) % alignment == 0, "data offset %zu", gguf_data_offset(g));
    for (int i = 0; i < NT; i++) {
        const rt_tensor *w = &rt_tensors[i];
        const gguf_tensor *t = gguf_find_tensor(g, w->name);
        CHECK(t != NULL, "tensor %s not found", w->name);
        CHECK(t == gguf_tensor_at(g, (size_t)i), "tensor %s order", w->name);
        CHECK(t->type == (gguf_ttype)w->type && t->n_dims == w->n_dims, "tensor %s type/dims",
              w->name);
        for (int dd = 0; dd < 4; dd++) CHECK(t->ne[dd] == w->ne[dd], "tensor %s ne[%d]", w->name, dd);
        size_t nb;
        gguf_tensor_nbytes(w->type, w->n_dims, w->ne, &nb, &e);
        CHECK(t->nbytes == nb && t->offset % alignment == 0, "tensor %s size/offset", w->name);
        CHECK(!memcmp(t->data, data[i], nb), "tensor %s data", w->name);
    }
    const gguf_tensor *t;
    CHECK(gguf_get_tensor(g, "missing.weight", &t, &e) && strstr(e.msg, "missing.weight"),
          "missing tensor");
    CHECK(gguf_find_tensor(g, "token_embd.weigh") == NULL, "prefix name found");
#undef CHECK
    return NULL;
}

static uint8_t *rt_data[NT];
static void rt_make_data(void) {
    tu_rng r = {42};
    moe_error e;
    for (int i = 0; i < NT; i++) {
        size_t nb;
        gguf_tensor_nbytes(rt_tensors[i].type, rt_tensors[i].n_dims, rt_tensors[i].ne, &nb, &e);
        rt_data[i] = malloc(nb);
        for (size_t j = 0; j < nb; j++) rt_data[i][j] = (uint8_t)tu_next(&r);
    }
    for (int i = 0; i < 1000; i++) rt_f32[i] = tu_uniform(&r);
}

static void test_roundtrip(void) {
    moe_error e;
    char why[256], path[512];
    const uint32_t aligns[] = {32, 64, 1, 4096};
    int bad = 0;
    for (size_t ai = 0; ai < 4 && !bad; ai++) {
        uint32_t al = aligns[ai];
        gguf_writer *w = rt_writer(rt_data, al);
        if (!w) return;
        void *img;
        size_t n;
        if (gguf_writer_write_mem(w, &img, &n, &e)) {
            tu_fail("gguf/roundtrip", "write_mem: %s", e.msg);
            gguf_writer_free(w);
            return;
        }
        if (n != gguf_writer_size(w)) {
            tu_fail("gguf/roundtrip", "size %zu != gguf_writer_size %zu", n, gguf_writer_size(w));
            bad = 1;
        }
        gguf_ctx *g = NULL;
        if (!bad && gguf_open_memory(&g, img, n, "rt.gguf", &e)) {
            tu_fail("gguf/roundtrip", "alignment %u: open_memory: %s", al, e.msg);
            bad = 1;
        }
        if (!bad && rt_check(g, rt_data, al, why, sizeof why)) {
            tu_fail("gguf/roundtrip", "alignment %u, memory: %s", al, why);
            bad = 1;
        }
        gguf_close(g);
        g = NULL;
        /* on disk: same bytes, same contents through mmap */
        snprintf(path, sizeof path, "%s/rt%u.gguf", tmpdir, al);
        if (!bad && gguf_writer_write(w, path, &e)) {
            tu_fail("gguf/roundtrip", "write %s: %s", path, e.msg);
            bad = 1;
        }
        size_t fn = 0;
        uint8_t *fb = bad ? NULL : slurp(path, &fn);
        if (!bad && (!fb || fn != n || memcmp(fb, img, n))) {
            tu_fail("gguf/roundtrip", "file on disk differs from the memory image");
            bad = 1;
        }
        free(fb);
        if (!bad && gguf_open_file(&g, path, &e)) {
            tu_fail("gguf/roundtrip", "open_file: %s", e.msg);
            bad = 1;
        }
        if (!bad && rt_check(g, rt_data, al, why, sizeof why)) {
            tu_fail("gguf/roundtrip", "alignment %u, file: %s", al, why);
            bad = 1;
        }
        if (!bad && strcmp(gguf_name(g), path) != 0) {
            tu_fail("gguf/roundtrip", "name '%s'", gguf_name(g));
            bad = 1;
        }
        gguf_close(g);
        /* version 2 is the same layout */
        ((uint8_t *)img)[4] = 2;
        g = NULL;
        if (!bad && (gguf_open_memory(&g, img, n, "v2.gguf", &e) || gguf_version(g) != 2)) {
            tu_fail("gguf/roundtrip", "version 2 image: %s", e.msg);
            bad = 1;
        }
        gguf_close(g);
        unlink(path);
        free(img);
        gguf_writer_free(w);
    }
    if (!bad && count_temp_files() != 0) {
        tu_fail("gguf/roundtrip", "temporary files left in %s", tmpdir);
        bad = 1;
    }
    if (!bad) tu_ok("gguf/roundtrip (4 alignments, memory and disk, every value type)");
}

/* An empty file (no metadata, no tensors) is valid. */
static void test_empty_file(void) {
    moe_error e;
    gguf_writer *w;
    void *img;
    size_t n;
    gguf_ctx *g = NULL;
    gguf_writer_create(&w, &e);
    moe_status s = gguf_writer_write_mem(w, &img, &n, &e);
    if (!s) s = gguf_open_memory(&g, img, n, NULL, &e);
    if (s || gguf_n_kv(g) || gguf_n_tensors(g) || gguf_alignment(g) != 32)
        tu_fail("gguf/empty_file", "%s", e.msg);
    else
        tu_ok("gguf/empty_file");
    gguf_close(g);
    if (!s) free(img);
    gguf_writer_free(w);
}

/* The writer refuses bad input with a message. */
static void test_writer_errors(void) {
    moe_error e;
    gguf_writer *w;
    gguf_writer_create(&w, &e);
    uint8_t buf[1024] = {0};
    int64_t ne2[2] = {32, 2}, ne_q[1] = {33};
    const uint8_t bools[2] = {1, 2};
    int fails = 0, cases = 0;
#define EXPECT_FAIL(call, what)                                              \
    do {                                                                     \
        cases++;                                                             \
        e.msg[0] = 0;                                                        \
        if ((call) == MOE_OK || !e.msg[0]) {                                 \
            tu_fail("gguf/writer_errors", "%s accepted", what);              \
            fails++;                                                         \
        }                                                                    \
    } while (0)
    gguf_writer_set_u32(w, "k", 1, &e);
    gguf_writer_add_tensor(w, "t", GGUF_T_F32, 2, ne2, buf, 256, &e);
    EXPECT_FAIL(gguf_writer_set_str(w, "k", "x", &e), "duplicate key");
    EXPECT_FAIL(gguf_writer_set_u32(w, NULL, 1, &e), "NULL key");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "t", GGUF_T_F32, 2, ne2, buf, 256, &e), "duplicate tensor");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", GGUF_T_F32, 2, ne2, buf, 255, &e), "wrong nbytes");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", 4, 2, ne2, buf, 256, &e), "type 4");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", 99, 2, ne2, buf, 256, &e), "type 99");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", GGUF_T_F32, 5, ne2, buf, 256, &e), "n_dims 5");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", GGUF_T_Q4_0, 1, ne_q, buf, 18, &e), "q4_0 row 33");
    EXPECT_FAIL(gguf_writer_add_tensor(w, "u", GGUF_T_F32, 2, ne2, NULL, 256, &e), "NULL data");
    EXPECT_FAIL(gguf_writer_set_u32(w, "general.alignment", 0, &e), "alignment 0");
    EXPECT_FAIL(gguf_writer_set_u32(w, "general.alignment", 3, &e), "alignment 3");
    EXPECT_FAIL(gguf_writer_set_u64(w, "general.alignment", 64, &e), "alignment as u64");
    EXPECT_FAIL(gguf_writer_set_arr(w, "a", GGUF_VT_STR, buf, 1, &e), "array of STR via set_arr");
    EXPECT_FAIL(gguf_writer_set_arr(w, "a", GGUF_VT_ARR, buf, 1, &e), "nested array");
    EXPECT_FAIL(gguf_writer_set_arr(w, "a", (gguf_vtype)13, buf, 1, &e), "array of type 13");
    EXPECT_FAIL(gguf_writer_set_arr(w, "a", GGUF_VT_BOOL, bools, 2, &e), "bool value 2");
    EXPECT_FAIL(gguf_writer_set_str(w, "s", NULL, &e), "NULL string");
    EXPECT_FAIL(gguf_writer_write(w, "/nonexistent-dir-moe/x.gguf", &e), "write to a missing dir");
#undef EXPECT_FAIL
    /* the writer is still usable and consistent after the refusals */
    void *img;
    size_t n;
    gguf_ctx *g = NULL;
    if (gguf_writer_write_mem(w, &img, &n, &e) || gguf_open_memory(&g, img, n, NULL, &e) ||
        gguf_n_kv(g) != 1 || gguf_n_tensors(g) != 1 || gguf_alignment(g) != 32) {
        tu_fail("gguf/writer_errors", "writer unusable after refusals: %s", e.msg);
        fails++;
    }
    gguf_close(g);
    free(img);
    gguf_writer_free(w);
    if (!fails) {
        char name[64];
        snprintf(name, sizeof name, "gguf/writer_errors (%d cases)", cases);
        tu_ok(name);
    }
}

/* ------------------------------------------------------- broken files */

/* A small valid file: a few keys (string array too) and three tensors. */
static void *small_file(size_t *n, size_t *genuine_end) {
    moe_error e;
    gguf_writer *w;
    gguf_writer_create(&w, &e);
    static uint8_t d0[4 * 8 * 2], d1[34 * 2], d2[4 * 3];
    for (size_t i = 0; i < sizeof d0; i++) d0[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof d1; i++) d1[i] = (uint8_t)(i * 3 + 2);
    for (size_t i = 0; i < sizeof d2; i++) d2[i] = (uint8_t)(i + 5);
    static const char *const toks[] = {"a", "bc", ""};
    static const float sc[3] = {0.5f, -1.0f, 2.0f};
    int64_t ne0[2] = {8, 2}, ne1[2] = {32, 2}, ne2[1] = {3};
    gguf_writer_set_str(w, "general.architecture", "llama", &e);
    gguf_writer_set_u32(w, "llama.block_count", 2, &e);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, sc, 3, &e);
    gguf_writer_set_bool(w, "b", 1, &e);
    gguf_writer_add_tensor(w, "w0", GGUF_T_F32, 2, ne0, d0, sizeof d0, &e);
    gguf_writer_add_tensor(w, "w1", GGUF_T_Q8_0, 2, ne1, d1, sizeof d1, &e);
    gguf_writer_add_tensor(w, "w2", GGUF_T_F32, 1, ne2, d2, sizeof d2, &e);
    void *img = NULL;
    gguf_writer_write_mem(w, &img, n, &e);
    gguf_writer_free(w);
    gguf_ctx *g;
    *genuine_end = 0;
    if (gguf_open_memory(&g, img, *n, NULL, &e) == MOE_OK) {
        for (size_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            size_t end = gguf_data_offset(g) + (size_t)t->offset + t->nbytes;
            if (end > *genuine_end) *genuine_end = end;
        }
        gguf_close(g);
    }
    return img;
}

static void test_truncated(void) {
    size_t n, end;
    uint8_t *img = small_file(&n, &end);
    int bad = 0;
    size_t cases = 0;
    for (size_t len = 0; len <= n && !bad; len++, cases++) {
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        moe_status s = open_copy(img, len, &g, &e);
        if (len < end && (s == MOE_OK || !e.msg[0] || g)) {
            tu_fail("gguf/truncated_prefixes", "prefix of %zu/%zu bytes: status %d msg '%s'", len,
                    n, (int)s, e.msg);
            bad = 1;
        }
        if (len >= end && s != MOE_OK) {
            tu_fail("gguf/truncated_prefixes", "complete prefix of %zu bytes rejected: %s", len,
                    e.msg);
            bad = 1;
        }
    }
    free(img);
    if (!bad) {
        char name[96];
        snprintf(name, sizeof name, "gguf/truncated_prefixes (%zu cases)", cases);
        tu_ok(name);
    }
}

/* Crafted bad files. Each builds an image and names a message fragment. */
typedef struct crafted {
    const char *what;
    const char *expect; /* must appear in the message; NULL: OK expected */
} crafted;

static void craft(int k, bb *b, crafted *c) {
    static const uint64_t one[1] = {32}, two[2] = {32, 2};
    uint64_t dims[4];
    b->n = 0;
    c->expect = "";
    switch (k) {
    case 0: c->what = "valid control"; c->expect = NULL;
        bb_hdr(b, 3, 1, 1); bb_kv_str(b, "general.name", "x"); bb_tinfo(b, "w", 1, one, 0, 0);
        bb_pad(b, 32); bb_zeros(b, 128); break;
    case 1: c->what = "overlapping tensors (allowed)"; c->expect = NULL;
        bb_hdr(b, 3, 2, 0); bb_tinfo(b, "a", 1, one, 0, 0); bb_tinfo(b, "b", 2, two, 0, 0);
        bb_pad(b, 32); bb_zeros(b, 256); break;
    case 2: c->what = "alignment 64 (valid)"; c->expect = NULL;
        bb_hdr(b, 3, 1, 1); bb_kv_u32(b, "general.alignment", 64); bb_tinfo(b, "w", 1, one, 0, 64);
        bb_pad(b, 64); bb_zeros(b, 192); break;
    case 3: c->what = "wrong magic"; c->expect = "magic";
        bb_put(b, "GGML", 4); bb_u32(b, 3); bb_u64(b, 0); bb_u64(b, 0); break;
    case 4: c->what = "version 1"; c->expect = "version 1";
        bb_hdr(b, 1, 0, 0); break;
    case 5: c->what = "version 4"; c->expect = "unknown version 4";
        bb_hdr(b, 4, 0, 0); break;
    case 6: c->what = "big-endian version"; c->expect = "big-endian";
        bb_hdr(b, 0x03000000u, 0, 0); break;
    case 7: c->what = "version 0"; c->expect = "version";
        bb_hdr(b, 0, 0, 0); break;
    case 8: c->what = "tensor count 2^63"; c->expect = "tensor count";
        bb_hdr(b, 3, 1ull << 63, 0); bb_zeros(b, 64); break;
    case 9: c->what = "kv count 2^63"; c->expect = "metadata count";
        bb_hdr(b, 3, 0, 1ull << 63); bb_zeros(b, 64); break;
    case 10: c->what = "kv count 2^64-1"; c->expect = "metadata count";
        bb_hdr(b, 3, 0, UINT64_MAX); break;
    case 11: c->what = "kv count one too many"; c->expect = "file ends";
        bb_hdr(b, 3, 0, 2); bb_kv_u32(b, "a", 1); bb_zeros(b, 10); break;
    case 12: c->what = "key length 2^63"; c->expect = "string length";
        bb_hdr(b, 3, 0, 1); bb_u64(b, 1ull << 63); bb_zeros(b, 32); break;
    case 13: c->what = "key length 2^64-1"; c->expect = "string length";
        bb_hdr(b, 3, 0, 1); bb_u64(b, UINT64_MAX); bb_zeros(b, 32); break;
    case 14: c->what = "string value length 2^63"; c->expect = "string length";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_STR); bb_u64(b, 1ull << 63);
        bb_zeros(b, 32); break;
    case 15: c->what = "u32 array length 2^63"; c->expect = "array of";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_U32);
        bb_u64(b, 1ull << 63); bb_zeros(b, 32); break;
    case 16: c->what = "u64 array length 2^61+1 (bytes overflow)"; c->expect = "array of";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_U64);
        bb_u64(b, (1ull << 61) + 1); bb_zeros(b, 32); break;
    case 17: c->what = "string array length 2^62"; c->expect = "strings";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_STR);
        bb_u64(b, 1ull << 62); bb_zeros(b, 32); break;
    case 18: c->what = "string array element length huge"; c->expect = "element 1";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_STR);
        bb_u64(b, 3); bb_str(b, "ok"); bb_u64(b, 1ull << 40); bb_zeros(b, 32); break;
    case 19: c->what = "value type 13"; c->expect = "value type 13";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, 13); bb_zeros(b, 16); break;
    case 20: c->what = "value type 2^32-1"; c->expect = "unknown";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, 0xFFFFFFFFu); bb_zeros(b, 16); break;
    case 21: c->what = "array element type 99"; c->expect = "element type 99";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, 99); bb_u64(b, 0);
        break;
    case 22: c->what = "nested array"; c->expect = "nested";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_ARR);
        bb_u64(b, 1); bb_u32(b, GGUF_VT_U8); bb_u64(b, 1); bb_u8(b, 1); break;
    case 23: c->what = "bool value 2"; c->expect = "bool";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_BOOL); bb_u8(b, 2); break;
    case 24: c->what = "bool array element 7"; c->expect = "bool array";
        bb_hdr(b, 3, 0, 1); bb_str(b, "k"); bb_u32(b, GGUF_VT_ARR); bb_u32(b, GGUF_VT_BOOL);
        bb_u64(b, 2); bb_u8(b, 1); bb_u8(b, 7); break;
    case 25: c->what = "n_dims 0"; c->expect = "n_dims = 0";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 0, one, 0, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 26: c->what = "n_dims 5"; c->expect = "n_dims = 5";
        dims[0] = dims[1] = dims[2] = dims[3] = 1;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 4, dims, 0, 0); b->p[24 + 8 + 1] = 5;
        bb_u64(b, 1); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 27: c->what = "n_dims 2^32-1"; c->expect = "n_dims";
        bb_hdr(b, 3, 1, 0); bb_str(b, "w"); bb_u32(b, 0xFFFFFFFFu); bb_zeros(b, 64); break;
    case 28: c->what = "dim 0"; c->expect = "dims[1] = 0";
        dims[0] = 32; dims[1] = 0;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 2, dims, 0, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 29: c->what = "dim 2^63"; c->expect = "dims[0]";
        dims[0] = 1ull << 63;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, dims, 0, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 30: c->what = "dims 2^32 x 2^32 (count overflow)"; c->expect = "overflow";
        dims[0] = 1ull << 32; dims[1] = 1ull << 32;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 2, dims, 0, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 31: c->what = "dims 2^61 f64 (bytes overflow)"; c->expect = "overflow";
        dims[0] = 1ull << 61; dims[1] = 2;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 2, dims, GGUF_T_F64, 0); bb_pad(b, 32); bb_zeros(b, 64);
        break;
    case 32: c->what = "tensor type 4 (removed)"; c->expect = "type 4";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 4, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 33: c->what = "tensor type 1000"; c->expect = "type 1000";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 1000, 0); bb_pad(b, 32); bb_zeros(b, 128); break;
    case 34: c->what = "q4_0 row of 33"; c->expect = "multiple";
        dims[0] = 33;
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, dims, GGUF_T_Q4_0, 0); bb_pad(b, 32); bb_zeros(b, 64);
        break;
    case 35: c->what = "misaligned offset"; c->expect = "alignment";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 0, 16); bb_pad(b, 32); bb_zeros(b, 256); break;
    case 36: c->what = "offset past the end"; c->expect = "exceeds";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "blk.0.attn_q.weight", 1, one, 0, 1 << 20); bb_pad(b, 32);
        bb_zeros(b, 256); break;
    case 37: c->what = "offset + size overflows"; c->expect = "exceeds";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 0, UINT64_MAX - 31); bb_pad(b, 32);
        bb_zeros(b, 256); break;
    case 38: c->what = "data section one byte short"; c->expect = "exceeds";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 0, 0); bb_pad(b, 32); bb_zeros(b, 127); break;
    case 39: c->what = "no data section at all"; c->expect = "exceeds";
        bb_hdr(b, 3, 1, 0); bb_tinfo(b, "w", 1, one, 0, 0); break;
    case 40: c->what = "duplicate tensor names"; c->expect = "duplicate tensor";
        bb_hdr(b, 3, 2, 0); bb_tinfo(b, "w", 1, one, 0, 0); bb_tinfo(b, "w", 1, one, 0, 128);
        bb_pad(b, 32); bb_zeros(b, 256); break;
    case 41: c->what = "duplicate keys"; c->expect = "duplicate key";
        bb_hdr(b, 3, 0, 3); bb_kv_u32(b, "a", 1); bb_kv_str(b, "b", "x"); bb_kv_str(b, "a", "y");
        break;
    case 42: c->what = "alignment 0"; c->expect = "power of two";
        bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "general.alignment", 0); break;
    case 43: c->what = "alignment 3"; c->expect = "power of two";
        bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "general.alignment", 3); break;
    case 44: c->what = "alignment as u64"; c->expect = "expected u32";
        bb_hdr(b, 3, 0, 1); bb_str(b, "general.alignment"); bb_u32(b, GGUF_VT_U64); bb_u64(b, 32);
        break;
    case 45: c->what = "alignment 2^31, offset beyond file"; c->expect = "exceeds";
        bb_hdr(b, 3, 1, 1); bb_kv_u32(b, "general.alignment", 1u << 31);
        bb_tinfo(b, "w", 1, one, 0, 0); bb_zeros(b, 256); break;
    case 46: c->what = "empty file"; c->expect = "too short";
        break;
    case 47: c->what = "header cut in the counts"; c->expect = "tensor count";
        bb_put(b, "GGUF", 4); bb_u32(b, 3); bb_u32(b, 0); break;
    case 48: c->what = "tensor info cut in the dims"; c->expect = "dims";
        bb_hdr(b, 3, 1, 0); bb_str(b, "w"); bb_u32(b, 4); bb_u64(b, 32); bb_u64(b, 1);
        bb_zeros(b, 4); break;
    case 49: c->what = "tensor count one too many"; c->expect = "n_dims = 0";
        bb_hdr(b, 3, 2, 0); bb_tinfo(b, "w", 1, one, 0, 0); bb_zeros(b, 32); break;
    default: c->what = NULL; break;
    }
}

static void test_crafted(void) {
    bb b = {0};
    crafted c;
    int bad = 0, k;
    for (k = 0;; k++) {
        craft(k, &b, &c);
        if (!c.what) break;
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        moe_status s = open_copy(b.p, b.n, &g, &e);
        if (c.expect == NULL) {
            if (s != MOE_OK) {
                tu_fail("gguf/crafted", "%s: rejected: %s", c.what, e.msg);
                bad = 1;
            }
        } else if (s == MOE_OK || !e.msg[0] || !strstr(e.msg, c.expect) ||
                   !strstr(e.msg, "case.gguf")) {
            tu_fail("gguf/crafted", "%s: status %d, message '%s' (expected it to name the file "
                    "and '%s')", c.what, (int)s, e.msg, c.expect);
            bad = 1;
        }
    }
    if (!bad) {
        char name[64];
        snprintf(name, sizeof name, "gguf/crafted (%d cases)", k);
        tu_ok(name);
    }
    /* show the quality of one message */
    craft(36, &b, &c);
    gguf_ctx *g;
    moe_error e;
    open_copy(b.p, b.n, &g, &e);
    if (!strstr(e.msg, "tensor 'blk.0.attn_q.weight': offset 1048576 + size 128 exceeds the data "
                       "section of"))
        tu_fail("gguf/message_format", "got '%s'", e.msg);
    else
        tu_ok("gguf/message_format");
    free(b.p);
}

static void test_random_buffers(void) {
    tu_rng r = {1234};
    int bad = 0, accepted = 0;
    const int N = 4000;
    uint8_t buf[700];
    for (int i = 0; i < N && !bad; i++) {
        size_t n = (size_t)(tu_next(&r) % sizeof buf);
        for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)tu_next(&r);
        int mode = i % 4;
        if (mode >= 1 && n >= 24) { /* a plausible header so parsing goes deeper */
            memcpy(buf, "GGUF", 4);
            buf[4] = (uint8_t)(2 + (i & 1)); buf[5] = buf[6] = buf[7] = 0;
            uint64_t nt = 1 + tu_next(&r) % 4, nkv = 1 + tu_next(&r) % 4;
            for (int q = 0; q < 8; q++) {
                buf[8 + q] = (uint8_t)(nt >> (8 * q));
                buf[16 + q] = (uint8_t)(nkv >> (8 * q));
            }
            if (mode >= 2 && n >= 40) { /* a short first key, then a small type */
                buf[24] = (uint8_t)(tu_next(&r) % 8);
                memset(buf + 25, 0, 7);
                size_t tp = 32 + buf[24];
                if (tp + 4 <= n) {
                    buf[tp] = (uint8_t)(tu_next(&r) % 13);
                    memset(buf + tp + 1, 0, 3);
                }
                if (mode == 3 && tp + 16 <= n && buf[tp] == GGUF_VT_ARR) {
                    buf[tp + 4] = (uint8_t)(tu_next(&r) % 13);
                    memset(buf + tp + 5, 0, 3);
                    buf[tp + 8] = (uint8_t)(tu_next(&r) % 64);
                    memset(buf + tp + 9, 0, 7);
                }
            }
        }
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        moe_status s = open_copy(buf, n, &g, &e);
        if (s == MOE_OK) accepted++;
        else if (!e.msg[0] || g) {
            tu_fail("gguf/random_buffers", "case %d: status %d with an empty message", i, (int)s);
            bad = 1;
        }
    }
    if (!bad) {
        char name[96];
        snprintf(name, sizeof name, "gguf/random_buffers (%d cases, %d valid by chance)", N,
                 accepted);
        tu_ok(name);
    }
}

static void test_byte_flips(void) {
    size_t n, end;
    uint8_t *img = small_file(&n, &end);
    uint8_t *m = malloc(n);
    tu_rng r = {99};
    int bad = 0, accepted = 0;
    const int N = 6000;
    for (int i = 0; i < N && !bad; i++) {
        memcpy(m, img, n);
        int flips = 1 + (int)(tu_next(&r) % 4);
        for (int f = 0; f < flips; f++) {
            size_t lim = (tu_next(&r) % 5) ? end - 96 : n; /* mostly the header */
            size_t pos = (size_t)(tu_next(&r) % lim);
            switch (tu_next(&r) % 4) {
            case 0: m[pos] ^= (uint8_t)(1u << (tu_next(&r) % 8)); break;
            case 1: m[pos] = (uint8_t)tu_next(&r); break;
            case 2: m[pos] = 0xFF; break;
            default: m[pos] = 0; break;
            }
        }
        /* sometimes also cut the file */
        size_t len = (i % 7 == 0) ? (size_t)(tu_next(&r) % (n + 1)) : n;
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        moe_status s = open_copy(m, len, &g, &e);
        if (s == MOE_OK) accepted++;
        else if (!e.msg[0] || g) {
            tu_fail("gguf/byte_flips", "case %d: status %d with an empty message", i, (int)s);
            bad = 1;
        }
    }
    free(m);
    free(img);
    if (!bad) {
        char name[96];
        snprintf(name, sizeof name, "gguf/byte_flips (%d cases, %d still valid)", N, accepted);
        tu_ok(name);
    }
}

/* Broken files on disk through gguf_open_file. */
static void test_disk_broken(void) {
    size_t n, end;
    uint8_t *img = small_file(&n, &end);
    char path[512];
    int bad = 0, cases = 0;
    struct { const char *name; size_t len; int garbage; } files[] = {
        {"half.gguf", 0, 0}, {"garbage.gguf", 300, 1}, {"empty.gguf", 0, 0}, {"tiny.gguf", 10, 0},
    };
    files[0].len = n / 2;
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i].name);
        uint8_t *content = malloc(files[i].len + 1);
        for (size_t j = 0; j < files[i].len; j++)
            content[j] = files[i].garbage ? (uint8_t)(j * 131 + 7) : img[j];
        write_raw(path, content, files[i].len);
        free(content);
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        cases++;
        if (gguf_open_file(&g, path, &e) == MOE_OK || !strstr(e.msg, path) || g) {
            tu_fail("gguf/disk_broken", "%s: accepted or message without the path: '%s'", path,
                    e.msg);
            bad = 1;
            gguf_close(g);
        }
        unlink(path);
    }
    const char *others[2] = {"/nonexistent-dir-moe/x.gguf", tmpdir};
    for (int i = 0; i < 2; i++) {
        gguf_ctx *g = NULL;
        moe_error e;
        e.msg[0] = 0;
        cases++;
        if (gguf_open_file(&g, others[i], &e) == MOE_OK || !strstr(e.msg, others[i])) {
            tu_fail("gguf/disk_broken", "%s: accepted or bad message '%s'", others[i], e.msg);
            bad = 1;
            gguf_close(g);
        }
    }
    free(img);
    if (!bad) {
        char name[64];
        snprintf(name, sizeof name, "gguf/disk_broken (%d cases)", cases);
        tu_ok(name);
    }
}

/* -------------------------------------------------------- atomic files */

static int file_equals(const char *path, const void *want, size_t n) {
    size_t got_n = 0;
    uint8_t *got = slurp(path, &got_n);
    int ok = got && got_n == n && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static void test_atomic(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/state.bin", tmpdir);
    const char *v1 = "the original content\n";
    atomic_file f;
    moe_error e;
    int bad = 0;
#define FAILIF(c, ...) do { if (!bad && (c)) { tu_fail("atomic_file", __VA_ARGS__); bad = 1; } } while (0)
    /* commit */
    FAILIF(atomic_file_open(&f, path, &e), "open: %s", e.msg);
    FAILIF(atomic_file_write(&f, v1, strlen(v1), &e), "write: %s", e.msg);
    FAILIF(count_temp_files() != 1, "no temporary file while writing");
    FAILIF(atomic_file_commit(&f, &e), "commit: %s", e.msg);
    FAILIF(!file_equals(path, v1, strlen(v1)), "content after commit");
    FAILIF(count_temp_files() != 0, "temporary file left after commit");

    /* abort: the original stays */
    FAILIF(atomic_file_open(&f, path, &e), "open 2: %s", e.msg);
    FAILIF(atomic_file_write(&f, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 38, &e), "write 2");
    atomic_file_abort(&f);
    atomic_file_abort(&f); /* twice is harmless */
    FAILIF(!file_equals(path, v1, strlen(v1)), "content changed by an aborted write");
    FAILIF(count_temp_files() != 0, "temporary file left after abort");

    /* a write failing half way (simulated full disk) */
    FAILIF(atomic_file_open(&f, path, &e), "open 3: %s", e.msg);
    f.fail_after = 100;
    FAILIF(atomic_file_write(&f, "0123456789", 10, &e), "write 3");
    e.msg[0] = 0;
    static const uint8_t chunk[200];
    FAILIF(atomic_file_write(&f, chunk, sizeof chunk, &e) != MOE_ERR_IO || !strstr(e.msg, path),
           "simulated failure not reported: '%s'", e.msg);
    FAILIF(atomic_file_commit(&f, &e) == MOE_OK, "commit after a failed write succeeded");
    atomic_file_abort(&f);
    FAILIF(!file_equals(path, v1, strlen(v1)), "content changed by a failed write");
    FAILIF(count_temp_files() != 0, "temporary file left after a failed write");

    /* large and mixed writes through the buffer */
    size_t big = 3 * ATOMIC_FILE_BUF + 12345;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i * 2654435761u >> 13);
    FAILIF(atomic_file_open(&f, path, &e), "open 4: %s", e.msg);
    size_t pos = 0, step = 1;
    while (!bad && pos < big) {
        size_t k = step < big - pos ? step : big - pos;
        FAILIF(atomic_file_write(&f, data + pos, k, &e), "write 4: %s", e.msg);
        pos += k;
        step = step * 3 + 1;
    }
    FAILIF(atomic_file_commit(&f, &e), "commit 4: %s", e.msg);
    FAILIF(!file_equals(path, data, big), "content of a %zu-byte mixed write", big);

    /* a writer killed mid-write: the old file stays complete */
    pid_t pid = fork();
    if (pid == 0) {
        atomic_file cf;
        if (atomic_file_open(&cf, path, NULL) == MOE_OK) {
            atomic_file_write(&cf, v1, strlen(v1), NULL);
            atomic_file_write(&cf, data, big, NULL);
        }
        kill(getpid(), SIGKILL);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    FAILIF(!WIFSIGNALED(st), "child was not killed");
    FAILIF(!file_equals(path, data, big), "content changed by a killed writer");
    remove_temp_files(); /* a killed process cannot clean up: its temp file is inert */

    /* the target's directory does not exist */
    e.msg[0] = 0;
    FAILIF(atomic_file_open(&f, "/nonexistent-dir-moe/x", &e) != MOE_ERR_IO ||
           !strstr(e.msg, "/nonexistent-dir-moe/x"), "missing directory: '%s'", e.msg);
    atomic_file_abort(&f);
    free(data);
    unlink(path);
#undef FAILIF
    if (!bad) tu_ok("atomic_file (commit, abort, simulated failure, killed writer)");
}

/* A GGUF write that fails for real (RLIMIT_FSIZE: EFBIG) keeps the old file. */
static void test_gguf_write_failure(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.gguf", tmpdir);
    size_t n_old, end;
    uint8_t *old = small_file(&n_old, &end);
    write_raw(path, old, n_old);
    gguf_writer *w = rt_writer(rt_data, 32);
    if (!w) {
        free(old);
        return;
    }
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 1000;
    moe_error e;
    e.msg[0] = 0;
    moe_status s = MOE_OK;
    int limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    if (limited) s = gguf_writer_write(w, path, &e);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    if (!limited) {
        tu_skip("gguf/write_failure_keeps_old_file", "setrlimit(RLIMIT_FSIZE) failed");
    } else if (s == MOE_OK || !strstr(e.msg, path)) {
        tu_fail("gguf/write_failure_keeps_old_file", "status %d, message '%s'", (int)s, e.msg);
    } else if (!file_equals(path, old, n_old)) {
        tu_fail("gguf/write_failure_keeps_old_file", "the old file was damaged");
    } else if (count_temp_files() != 0) {
        tu_fail("gguf/write_failure_keeps_old_file", "temporary file left behind");
    } else {
        gguf_ctx *g = NULL;
        if (gguf_open_file(&g, path, &e) != MOE_OK)
            tu_fail("gguf/write_failure_keeps_old_file", "old file unreadable: %s", e.msg);
        else
            tu_ok("gguf/write_failure_keeps_old_file");
        gguf_close(g);
    }
    /* and a successful write then replaces it */
    if (gguf_writer_write(w, path, &e) != MOE_OK || file_equals(path, old, n_old))
        tu_fail("gguf/write_replaces_file", "%s", e.msg);
    else
        tu_ok("gguf/write_replaces_file");
    unlink(path);
    gguf_writer_free(w);
    free(old);
}

/* The container's type table (which validates files) and the kernels' table
 * (which computes on them) are kept apart; they must agree on every type the
 * kernels know. */
static void test_tables_agree(void) {
    int n = 0;
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
        const quant_traits *q = quant_get_traits((quant_type)t);
        if (!q) continue;
        n++;
        if (gguf_type_block_size((uint32_t)t) != q->block_size ||
            gguf_type_block_bytes((uint32_t)t) != q->block_bytes || strcmp(gguf_type_name((uint32_t)t), q->name)) {
            tu_fail("gguf/type_table_matches_quant", "type %d: gguf %s %lld/%zu, quant %s %d/%zu", t,
                    gguf_type_name((uint32_t)t), (long long)gguf_type_block_size((uint32_t)t),
                    gguf_type_block_bytes((uint32_t)t), q->name, q->block_size, q->block_bytes);
            return;
        }
    }
    char m[80];
    snprintf(m, sizeof m, "gguf/type_table_matches_quant (%d types)", n);
    tu_ok(m);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moe_gguf_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tu_fail("gguf/setup", "mkdtemp: %s", strerror(errno));
        return tu_exit_code();
    }
    rt_make_data();
    test_types();
    test_roundtrip();
    test_empty_file();
    test_writer_errors();
    test_truncated();
    test_crafted();
    test_random_buffers();
    test_byte_flips();
    test_disk_broken();
    test_atomic();
    test_gguf_write_failure();
    test_tables_agree();
    for (int i = 0; i < NT; i++) free(rt_data[i]);
    remove_temp_files();
    rmdir(tmpdir);
    return tu_exit_code();
}
