/* test_gguf_fuzz.c: broken model files through the engine's loader.
 *
 * From valid tiny models written by synth (every architecture, Q8_0 weights
 * and a tokenizer) this builds a corpus of broken files and opens each with
 * moe_infer_open:
 *   - truncations: every length up to 64 bytes, then a coarse grid over the
 *     header and the data, and the size minus one;
 *   - header lies, patched in place: magic, version, tensor and key counts,
 *     key and name lengths, value types, array counts, tensor n_dims, dims,
 *     types (unknown, IQ, other block sizes), offsets (huge, misaligned,
 *     past the end);
 *   - random buffers (with and without a valid header start) and seeded
 *     random byte flips of the header and of the data;
 *   - rebuilt files (read, edited, written again): each tensor missing in
 *     turn, tensors misshaped (dims swapped, wider, an extra dim, a smaller
 *     expert stack), each key missing in turn, keys with the wrong value type
 *     and out-of-range values (zero, huge, inconsistent head and expert
 *     counts), a broken tokenizer.
 * Every case must either fail with a non-empty message or, if the damage is
 * harmless (a flip in the weights, an optional key or tensor), open and then
 * evaluate four tokens without crashing (eval may fail with a message). Files
 * whose damage the engine must notice (truncation, bad magic / version,
 * a required tensor missing or misshaped, a required key missing, head or
 * expert counts that contradict the tensors) must fail. Small files, so the
 * whole corpus runs in a few seconds under ASan + UBSan.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "tools/synth.h"
#include "io/gguf.h"
#include "moe_infer.h"
#include "testutil.h"

static char tmpdir[256];
static char path[300];

/* ------------------------------------------------------------- running */

typedef struct tally {
    int cases, rejected, opened, eval_err;
} tally;

typedef enum expect { MAY_OPEN = 0, MUST_FAIL = 1 } expect;

/* Opens the case file, evaluates 4 tokens if it opened. */
static int open_and_run(expect ex, tally *t, char *why, size_t cap) {
    t->cases++;
    moe_infer_options o;
    moe_infer_options_default(&o);
    o.ctx_len = 16;
    o.max_batch = 4;
    o.n_threads = 1;
    moe_infer *m = NULL;
    moe_error err;
    memset(&err, 0, sizeof err);
    moe_status st = moe_infer_open(&m, path, &o, &err);
    if (st != MOE_OK) {
        t->rejected++;
        if (m) { snprintf(why, cap, "failed open left *out = %p", (void *)m); return 0; }
        if (!err.msg[0]) { snprintf(why, cap, "status %d without a message", (int)st); return 0; }
        return 1;
    }
    t->opened++;
    if (ex == MUST_FAIL) {
        snprintf(why, cap, "opened, but must fail");
        moe_infer_close(m);
        return 0;
    }
    const moe_infer_info *info = moe_infer_get_info(m);
    int V = info->vocab_size;
    int okv = 1;
    if (V < 5 || V > (1 << 24)) {
        snprintf(why, cap, "opened with vocab_size %d", V);
        okv = 0;
    } else {
        int32_t toks[4] = {1, 2, 3, 4};
        float *lg = malloc((size_t)4 * (size_t)V * sizeof *lg);
        memset(&err, 0, sizeof err);
        st = moe_infer_eval(m, toks, 4, 0, lg, 1, &err);
        if (st != MOE_OK) {
            t->eval_err++;
            if (!err.msg[0]) { snprintf(why, cap, "eval status %d without a message", (int)st); okv = 0; }
        }
        free(lg);
    }
    moe_infer_close(m);
    return okv;
}

/* Writes buf to a case file, opens it, evaluates 4 tokens if it opened.
 * Returns 1 if the outcome is acceptable; why says what was not. */
static int try_image(const void *buf, size_t n, expect ex, tally *t, char *why, size_t cap) {
    /* a new file each time, removed right after: truncating and rewriting
     * one file waits for its writeback on a busy disk */
    static unsigned serial = 0;
    snprintf(path, sizeof path, "%s/case%u.gguf", tmpdir, serial++);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || (n && write(fd, buf, n) != (ssize_t)n)) {
        snprintf(why, cap, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    int r = open_and_run(ex, t, why, cap);
    unlink(path);
    return r;
}

/* One named group of cases: ok line with the tally, or the first failures. */
typedef struct group {
    const char *name;
    tally t;
    int failures;
} group;

static void group_case(group *g, const void *buf, size_t n, expect ex, const char *what) {
    char why[512] = "";
    if (!try_image(buf, n, ex, &g->t, why, sizeof why)) {
        if (g->failures < 5) tu_fail(g->name, "%s: %s", what, why);
        g->failures++;
    }
}

static void group_end(group *g) {
    if (g->failures == 0)
        printf("ok %s (%d files: %d rejected, %d opened, %d of those failed eval)\n", g->name,
               g->t.cases, g->t.rejected, g->t.opened, g->t.eval_err);
    else if (g->failures > 5)
        tu_fail(g->name, "... %d failures in all of %d files", g->failures, g->t.cases);
    fflush(stdout);
}

/* ------------------------------------------------- the header, located */

#define MAX_ITEMS 512

typedef struct layout {
    size_t n_tensors_at, n_kv_at;
    int n_kv, n_t;
    size_t kv_key[MAX_ITEMS];    /* key length field */
    size_t kv_type[MAX_ITEMS];   /* value type field */
    size_t kv_val[MAX_ITEMS];    /* value (for arrays: element type field) */
    uint32_t kv_vt[MAX_ITEMS];
    size_t t_name[MAX_ITEMS];    /* name length field */
    size_t t_ndims[MAX_ITEMS];
    size_t t_type[MAX_ITEMS];
    size_t t_off[MAX_ITEMS];
    uint32_t t_nd[MAX_ITEMS];
    size_t header_end;           /* end of the tensor infos */
} layout;

static uint64_t rd(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void wr(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static size_t skip_value(const uint8_t *b, size_t p, uint32_t vt) {
    static const int sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (vt == GGUF_VT_STR) return p + 8 + (size_t)rd(b + p, 8);
    if (vt == GGUF_VT_ARR) {
        uint32_t et = (uint32_t)rd(b + p, 4);
        uint64_t cnt = rd(b + p + 4, 8);
        p += 12;
        for (uint64_t i = 0; i < cnt; i++) p = skip_value(b, p, et);
        return p;
    }
    return p + (size_t)sz[vt];
}

/* Walks a valid image (trusted: we wrote it). */
static void locate(const uint8_t *b, layout *L) {
    memset(L, 0, sizeof *L);
    L->n_tensors_at = 8;
    L->n_kv_at = 16;
    L->n_t = (int)rd(b + 8, 8);
    L->n_kv = (int)rd(b + 16, 8);
    size_t p = 24;
    for (int i = 0; i < L->n_kv && i < MAX_ITEMS; i++) {
        L->kv_key[i] = p;
        p += 8 + (size_t)rd(b + p, 8);
        L->kv_type[i] = p;
        L->kv_vt[i] = (uint32_t)rd(b + p, 4);
        p += 4;
        L->kv_val[i] = p;
        p = skip_value(b, p, L->kv_vt[i]);
    }
    for (int i = 0; i < L->n_t && i < MAX_ITEMS; i++) {
        L->t_name[i] = p;
        p += 8 + (size_t)rd(b + p, 8);
        L->t_ndims[i] = p;
        L->t_nd[i] = (uint32_t)rd(b + p, 4);
        p += 4 + 8 * (size_t)L->t_nd[i];
        L->t_type[i] = p;
        p += 4;
        L->t_off[i] = p;
        p += 8;
    }
    L->header_end = p;
}

/* ------------------------------------------------------ rebuilt files */

typedef struct edit {
    const char *drop_kv;     /* leave this key out */
    const char *set_kv;      /* replace (or add) this key ... */
    int set_kind;            /* 0 u32, 1 i32, 2 f32, 3 string, 4 u64, 5 u8 array */
    uint64_t set_u;
    double set_f;
    const char *set_s;
    const char *drop_tensor; /* leave this tensor out */
    const char *shape_tensor;/* give this tensor new dims (zero data) */
    uint32_t n_dims;
    int64_t ne[4];
} edit;

/* The image of g with the edit applied; NULL if the writer refused it. */
static void *rebuild(const gguf_ctx *g, const edit *e, size_t *n) {
    gguf_writer *w = NULL;
    moe_error err;
    void *out = NULL, *zeros = NULL;
    *n = 0;
    if (gguf_writer_create(&w, &err)) return NULL;
    moe_status st = MOE_OK;
    int set_done = 0;
    for (size_t i = 0; i < gguf_n_kv(g) && !st; i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (e->drop_kv && !strcmp(kv->key.s, e->drop_kv)) continue;
        if (e->set_kv && !strcmp(kv->key.s, e->set_kv)) {
            set_done = 1;
            const char *k = kv->key.s;
            uint8_t arr[3] = {1, 2, 3};
            switch (e->set_kind) {
            case 0: st = gguf_writer_set_u32(w, k, (uint32_t)e->set_u, &err); break;
            case 1: st = gguf_writer_set_i32(w, k, (int32_t)e->set_u, &err); break;
            case 2: st = gguf_writer_set_f32(w, k, (float)e->set_f, &err); break;
            case 3: st = gguf_writer_set_str(w, k, e->set_s, &err); break;
            case 4: st = gguf_writer_set_u64(w, k, e->set_u, &err); break;
            default: st = gguf_writer_set_arr(w, k, GGUF_VT_U8, arr, 3, &err); break;
            }
            continue;
        }
        st = synth_copy_kv(w, kv, &err);
    }
    if (!st && e->set_kv && !set_done) {
        if (e->set_kind == 3) st = gguf_writer_set_str(w, e->set_kv, e->set_s, &err);
        else st = gguf_writer_set_u32(w, e->set_kv, (uint32_t)e->set_u, &err);
    }
    for (size_t i = 0; i < gguf_n_tensors(g) && !st; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (e->drop_tensor && !strcmp(t->name.s, e->drop_tensor)) continue;
        if (e->shape_tensor && !strcmp(t->name.s, e->shape_tensor)) {
            size_t nb = 0;
            if (gguf_tensor_nbytes(t->type, e->n_dims, e->ne, &nb, &err)) { st = MOE_ERR_ARG; break; }
            free(zeros);
            zeros = calloc(nb ? nb : 1, 1);
            st = gguf_writer_add_tensor(w, t->name.s, t->type, e->n_dims, e->ne, zeros, nb, &err);
        } else {
            st = gguf_writer_add_tensor(w, t->name.s, t->type, t->n_dims, t->ne, t->data, t->nbytes, &err);
        }
    }
    if (!st) st = gguf_writer_write_mem(w, &out, n, &err);
    gguf_writer_free(w);
    free(zeros);
    return st ? NULL : out;
}

/* ------------------------------------------------------------- models */

static const char *const archs[] = {"llama", "mixtral", "qwen2moe", "qwen3moe",
                                    "olmoe", "deepseek", "granitemoe"};
#define N_ARCH 7

static void tiny_spec(synth_spec *s, const char *arch) {
    synth_spec_default(s, arch);
    s->n_layers = 1;
    s->d_model = 32;
    s->n_heads = 2;
    s->n_kv_heads = 1;
    s->head_dim = 16;
    s->d_ff = 32;
    s->d_ff_shared = 64;
    s->d_ff_dense = 64;
    s->vocab_size = 260;
    s->ctx_len = 64;
    s->wtype = GGUF_T_Q8_0;
    if (!strcmp(arch, "qwen3moe")) s->head_dim = 32;
    if (!strcmp(arch, "olmoe")) s->n_kv_heads = 2;
    if (!strcmp(arch, "deepseek")) { s->n_layers = 2; s->n_dense_first = 1; }
}

/* The image's own check: it must open and evaluate. */
static int base_ok(const char *name, const void *buf, size_t n) {
    tally t = {0, 0, 0, 0};
    char why[512] = "";
    if (!try_image(buf, n, MAY_OPEN, &t, why, sizeof why) || t.opened != 1 || t.eval_err) {
        tu_fail(name, "the valid base file: %s", why[0] ? why : "did not open or evaluate");
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------ byte-level cases */

static void byte_cases(const uint8_t *base, size_t n) {
    layout L;
    locate(base, &L);
    uint8_t *b = malloc(n);
    char what[128];

    group g = {"fuzz/truncated", {0, 0, 0, 0}, 0};
    size_t data_start = L.header_end;
    for (size_t len = 0; len < n; ) {
        snprintf(what, sizeof what, "first %zu of %zu bytes", len, n);
        group_case(&g, base, len, MUST_FAIL, what);
        if (len < 64) len++;
        else if (len < data_start + 64) len += 61;
        else len += (n - data_start) / 40 + 1;
    }
    group_case(&g, base, n - 1, MUST_FAIL, "size - 1");
    group_end(&g);

    group h = {"fuzz/header_lies", {0, 0, 0, 0}, 0};
#define PATCH(at, val, bytes, ex, ...) do { \
        memcpy(b, base, n); wr(b + (at), (val), (bytes)); \
        snprintf(what, sizeof what, __VA_ARGS__); group_case(&h, b, n, ex, what); } while (0)
    PATCH(0, 0x47475546u, 4, MUST_FAIL, "magic FUGG");
    PATCH(0, 0, 4, MUST_FAIL, "magic zero");
    const uint32_t versions[] = {0, 1, 4, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) PATCH(4, versions[i], 4, MUST_FAIL, "version %u", versions[i]);
    const uint64_t counts[] = {0, 1, 2, (uint64_t)L.n_t + 1, (uint64_t)L.n_t - 1, 1ull << 40, UINT64_MAX};
    for (int i = 0; i < 7; i++) {
        PATCH(L.n_tensors_at, counts[i], 8, MUST_FAIL, "n_tensors %llu", (unsigned long long)counts[i]);
        if (counts[i] != (uint64_t)L.n_t)
            PATCH(L.n_kv_at, counts[i] == (uint64_t)L.n_t - 1 ? (uint64_t)L.n_kv - 1 : counts[i], 8,
                  MUST_FAIL, "n_kv %llu", (unsigned long long)counts[i]);
    }
    for (int i = 0; i < L.n_kv; i += 3) {
        PATCH(L.kv_key[i], 1ull << 40, 8, MUST_FAIL, "key %d length 2^40", i);
        PATCH(L.kv_key[i], rd(base + L.kv_key[i], 8) + 1, 8, MAY_OPEN, "key %d length + 1", i);
        PATCH(L.kv_type[i], 13, 4, MAY_OPEN, "key %d value type 13", i);
        PATCH(L.kv_type[i], (L.kv_vt[i] + 1) % 13, 4, MAY_OPEN, "key %d value type changed", i);
        if (L.kv_vt[i] == GGUF_VT_ARR) {
            PATCH(L.kv_val[i] + 4, UINT64_MAX / 2, 8, MUST_FAIL, "key %d array count huge", i);
            PATCH(L.kv_val[i] + 4, rd(base + L.kv_val[i] + 4, 8) - 1, 8, MAY_OPEN, "key %d array count - 1", i);
            PATCH(L.kv_val[i], GGUF_VT_ARR, 4, MAY_OPEN, "key %d nested array", i);
        }
        if (L.kv_vt[i] == GGUF_VT_STR)
            PATCH(L.kv_val[i], UINT64_MAX, 8, MUST_FAIL, "key %d string length 2^64-1", i);
    }
    for (int i = 0; i < L.n_t; i++) {
        PATCH(L.t_name[i], 1ull << 33, 8, MUST_FAIL, "tensor %d name length 2^33", i);
        PATCH(L.t_ndims[i], 0, 4, MUST_FAIL, "tensor %d n_dims 0", i);
        PATCH(L.t_ndims[i], 5, 4, MUST_FAIL, "tensor %d n_dims 5", i);
        size_t ne0 = L.t_ndims[i] + 4;
        PATCH(ne0, 0, 8, MUST_FAIL, "tensor %d ne[0] = 0", i);
        PATCH(ne0, 1ull << 62, 8, MUST_FAIL, "tensor %d ne[0] = 2^62", i);
        PATCH(ne0, rd(base + ne0, 8) * 2, 8, MAY_OPEN, "tensor %d ne[0] doubled", i);
        if (L.t_nd[i] > 1) {
            PATCH(ne0 + 8, UINT64_MAX, 8, MUST_FAIL, "tensor %d ne[1] = 2^64-1", i);
            PATCH(ne0 + 8, rd(base + ne0 + 8, 8) + 1, 8, MAY_OPEN, "tensor %d ne[1] + 1", i);
        }
        const uint32_t types[] = {4, 16, 23, 31, 99, 0xFFFFFFFFu, GGUF_T_Q4_K, GGUF_T_F16, GGUF_T_Q4_0};
        for (int k = 0; k < 9; k++)
            PATCH(L.t_type[i], types[k], 4, k < 6 ? MUST_FAIL : MAY_OPEN, "tensor %d type %u", i, types[k]);
        PATCH(L.t_off[i], UINT64_MAX - 31, 8, MUST_FAIL, "tensor %d offset huge", i);
        PATCH(L.t_off[i], rd(base + L.t_off[i], 8) + 1, 8, MUST_FAIL, "tensor %d offset misaligned", i);
        PATCH(L.t_off[i], n, 8, MUST_FAIL, "tensor %d offset = file size", i);
        PATCH(L.t_off[i], 0, 8, MAY_OPEN, "tensor %d offset 0 (overlaps)", i);
    }
#undef PATCH
    group_end(&h);

    group r = {"fuzz/random", {0, 0, 0, 0}, 0};
    tu_rng rng = {12345};
    for (int i = 0; i < 100; i++) {
        size_t len = 1 + tu_next(&rng) % (i < 50 ? 256 : n);
        for (size_t j = 0; j < len; j++) b[j] = (uint8_t)tu_next(&rng);
        if (i % 2) { memcpy(b, base, len < 24 ? len : 24); } /* a valid start */
        snprintf(what, sizeof what, "random buffer %d (%zu bytes)", i, len);
        group_case(&r, b, len, MUST_FAIL, what);
    }
    group_end(&r);

    group f = {"fuzz/byte_flips", {0, 0, 0, 0}, 0};
    for (int i = 0; i < 1000; i++) {
        memcpy(b, base, n);
        int nflip = 1 + (int)(tu_next(&rng) % 3);
        size_t region = i < 700 ? L.header_end : n; /* mostly the header */
        for (int j = 0; j < nflip; j++) {
            size_t at = tu_next(&rng) % region;
            b[at] ^= (uint8_t)(1 + tu_next(&rng) % 255);
        }
        snprintf(what, sizeof what, "flip set %d", i);
        group_case(&f, b, n, MAY_OPEN, what);
    }
    group_end(&f);
    free(b);
}

/* --------------------------------------------------- rebuilt-file cases */

/* Keys whose absence must stop the engine (relative to the prefix). */
static int required_key(const char *key, const char *P, int moe) {
    static const char *const req[] = {"block_count", "embedding_length", "attention.head_count"};
    if (!strcmp(key, "general.architecture")) return 1;
    size_t pl = strlen(P);
    if (strncmp(key, P, pl) || key[pl] != '.') return 0;
    key += pl + 1;
    for (int i = 0; i < 3; i++) if (!strcmp(key, req[i])) return 1;
    return moe && (!strcmp(key, "expert_count") || !strcmp(key, "expert_used_count"));
}

static void rebuilt_cases(const char *arch, const void *base, size_t n) {
    gguf_ctx *g = NULL;
    moe_error err;
    char name[96], what[200];
    if (gguf_open_memory(&g, base, n, arch, &err)) {
        tu_fail("fuzz/rebuild", "%s: %s", arch, err.msg);
        return;
    }
    const char *P = NULL;
    gguf_get_str(g, "general.architecture", &P, NULL, NULL);
    char key[128];
    uint32_t E = 0, H = 0, d = 0;
    snprintf(key, sizeof key, "%s.expert_count", P);
    gguf_get_u32(g, key, &E, NULL);
    snprintf(key, sizeof key, "%s.attention.head_count", P);
    gguf_get_u32(g, key, &H, NULL);
    snprintf(key, sizeof key, "%s.embedding_length", P);
    gguf_get_u32(g, key, &d, NULL);

    snprintf(name, sizeof name, "fuzz/%s/missing_tensor", arch);
    group mt = {name, {0, 0, 0, 0}, 0};
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        edit e = {0};
        e.drop_tensor = t->name.s;
        size_t len = 0;
        void *img = rebuild(g, &e, &len);
        snprintf(what, sizeof what, "without %s", t->name.s);
        /* optional: the output head (tied to the embedding when absent) and
         * the q/k/v biases (llama.cpp requires them for qwen2moe; this
         * engine treats biases as optional for every family) */
        int optional = !strcmp(t->name.s, "output.weight") || strstr(t->name.s, ".bias");
        if (img) group_case(&mt, img, len, optional ? MAY_OPEN : MUST_FAIL, what);
        free(img);
    }
    group_end(&mt);

    snprintf(name, sizeof name, "fuzz/%s/misshaped_tensor", arch);
    group ms = {name, {0, 0, 0, 0}, 0};
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int64_t bs = gguf_type_block_size(t->type);
        for (int v = 0; v < 4; v++) {
            edit e = {0};
            e.shape_tensor = t->name.s;
            e.n_dims = t->n_dims;
            memcpy(e.ne, t->ne, sizeof e.ne);
            if (v == 0) { /* swap the first two dims (if that changes anything) */
                if (t->n_dims < 2 || t->ne[0] == t->ne[1] || t->ne[1] % bs) continue;
                e.ne[0] = t->ne[1];
                e.ne[1] = t->ne[0];
            } else if (v == 1) {
                e.ne[0] += bs;
            } else if (v == 2) {
                if (t->n_dims >= GGUF_MAX_DIMS) continue;
                e.ne[e.n_dims++] = 2;
            } else {
                if (t->n_dims < 2) continue;
                e.ne[t->n_dims - 1] += 1;
            }
            size_t len = 0;
            void *img = rebuild(g, &e, &len);
            snprintf(what, sizeof what, "%s as {%lld, %lld, %lld, %lld}/%u", t->name.s, (long long)e.ne[0],
                     (long long)e.ne[1], (long long)e.ne[2], (long long)e.ne[3], e.n_dims);
            if (img) group_case(&ms, img, len, MUST_FAIL, what);
            free(img);
        }
    }
    group_end(&ms);

    snprintf(name, sizeof name, "fuzz/%s/missing_key", arch);
    char opened_keys[1024] = "";
    group mk = {name, {0, 0, 0, 0}, 0};
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        edit e = {0};
        e.drop_kv = kv->key.s;
        size_t len = 0;
        void *img = rebuild(g, &e, &len);
        snprintf(what, sizeof what, "without %s", kv->key.s);
        int before = mk.t.opened;
        if (img) group_case(&mk, img, len, required_key(kv->key.s, P, E > 0) ? MUST_FAIL : MAY_OPEN, what);
        if (mk.t.opened > before && strncmp(kv->key.s, "tokenizer.", 10) && strncmp(kv->key.s, "general.", 8)) {
            size_t used = strlen(opened_keys);
            snprintf(opened_keys + used, sizeof opened_keys - used, " %s", kv->key.s + strlen(P) + 1);
        }
        free(img);
    }
    group_end(&mk);
    printf("# note %s: opens without (defaults):%s\n", arch, opened_keys);

    snprintf(name, sizeof name, "fuzz/%s/bad_values", arch);
    group bv = {name, {0, 0, 0, 0}, 0};
    struct { const char *k; int kind; uint64_t u; double f; const char *s; expect ex; } vals[] = {
        {"block_count", 0, 0, 0, NULL, MUST_FAIL},
        {"block_count", 0, 3, 0, NULL, MUST_FAIL},
        {"block_count", 0, 0x7FFFFFFFu, 0, NULL, MUST_FAIL},
        {"block_count", 0, 0xFFFFFFFFu, 0, NULL, MUST_FAIL},
        {"block_count", 1, (uint64_t)-1, 0, NULL, MUST_FAIL},
        {"block_count", 3, 0, 0, "two", MUST_FAIL},
        {"block_count", 2, 0, 1.0, NULL, MUST_FAIL},
        {"embedding_length", 0, 0, 0, NULL, MUST_FAIL},
        {"embedding_length", 0, (uint64_t)d * 2, 0, NULL, MUST_FAIL},
        {"embedding_length", 4, 1ull << 40, 0, NULL, MUST_FAIL},
        {"attention.head_count", 0, 0, 0, NULL, MUST_FAIL},
        {"attention.head_count", 0, 3, 0, NULL, MUST_FAIL},
        {"attention.head_count", 0, (uint64_t)H * 2, 0, NULL, MUST_FAIL},
        {"attention.head_count", 0, 0x80000000u, 0, NULL, MUST_FAIL},
        {"attention.head_count_kv", 0, 0, 0, NULL, MUST_FAIL},
        {"attention.head_count_kv", 0, (uint64_t)H + 1, 0, NULL, MUST_FAIL},
        {"attention.head_count_kv", 0, 0xFFFFFFFFu, 0, NULL, MUST_FAIL},
        {"attention.key_length", 0, 0, 0, NULL, MUST_FAIL},
        {"attention.key_length", 0, 7, 0, NULL, MUST_FAIL},
        {"rope.dimension_count", 0, 0, 0, NULL, MAY_OPEN},
        {"rope.dimension_count", 0, 7, 0, NULL, MAY_OPEN},
        {"rope.dimension_count", 0, 1u << 30, 0, NULL, MAY_OPEN},
        {"rope.freq_base", 2, 0, 0.0, NULL, MAY_OPEN},
        {"rope.freq_base", 2, 0, -1.0, NULL, MAY_OPEN},
        {"rope.freq_base", 2, 0, NAN, NULL, MAY_OPEN},
        {"attention.layer_norm_rms_epsilon", 2, 0, -1.0, NULL, MAY_OPEN},
        {"attention.layer_norm_rms_epsilon", 2, 0, NAN, NULL, MAY_OPEN},
        {"attention.layer_norm_rms_epsilon", 3, 0, 0, "1e-5", MAY_OPEN},
        {"context_length", 0, 0, 0, NULL, MAY_OPEN},
        {"context_length", 0, 0xFFFFFFFFu, 0, NULL, MAY_OPEN},
        {"context_length", 5, 0, 0, NULL, MAY_OPEN},
        {"vocab_size", 0, 7, 0, NULL, MAY_OPEN},
        {"feed_forward_length", 0, 0, 0, NULL, MAY_OPEN},
        {"feed_forward_length", 0, 0xFFFFFFFFu, 0, NULL, MAY_OPEN},
        {"expert_feed_forward_length", 0, 1u << 30, 0, NULL, MAY_OPEN},
        {"expert_count", 0, 0, 0, NULL, E ? MUST_FAIL : MAY_OPEN},
        {"expert_count", 0, (uint64_t)E + 1, 0, NULL, MUST_FAIL},
        {"expert_count", 0, 0xFFFFFFFFu, 0, NULL, MUST_FAIL},
        {"expert_used_count", 0, 0, 0, NULL, E ? MUST_FAIL : MAY_OPEN},
        {"expert_used_count", 0, (uint64_t)E + 1, 0, NULL, MUST_FAIL},
        {"expert_used_count", 1, (uint64_t)-2, 0, NULL, MUST_FAIL},
        {"expert_shared_count", 0, 0, 0, NULL, MAY_OPEN},
        {"expert_shared_count", 0, 1000, 0, NULL, MUST_FAIL},
        {"leading_dense_block_count", 0, 5, 0, NULL, MUST_FAIL},
        {"leading_dense_block_count", 0, 0, 0, NULL, MUST_FAIL},
        {"expert_weights_scale", 2, 0, NAN, NULL, MAY_OPEN},
        {"logit_scale", 2, 0, 0.0, NULL, MAY_OPEN},
        {"embedding_scale", 2, 0, INFINITY, NULL, MAY_OPEN},
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", P, vals[i].k);
        if (!gguf_find_kv(g, key)) continue; /* keys of other families */
        edit e = {0};
        e.set_kv = key;
        e.set_kind = vals[i].kind;
        e.set_u = vals[i].u;
        e.set_f = vals[i].f;
        e.set_s = vals[i].s;
        size_t len = 0;
        void *img = rebuild(g, &e, &len);
        snprintf(what, sizeof what, "%s = %s%llu / %g", key, vals[i].s ? vals[i].s : "",
                 (unsigned long long)vals[i].u, vals[i].f);
        if (img) group_case(&bv, img, len, vals[i].ex, what);
        free(img);
    }
    /* the architecture and the tokenizer */
    struct { const char *k; int kind; uint64_t u; const char *s; expect ex; } gen[] = {
        {"general.architecture", 3, 0, "gpt5", MUST_FAIL},
        {"general.architecture", 3, 0, "", MUST_FAIL},
        {"general.architecture", 0, 7, NULL, MUST_FAIL},
        {"general.alignment", 0, 64, NULL, MAY_OPEN},    /* valid: the writer aligns to 64 */
        {"tokenizer.ggml.model", 3, 0, "bert", MAY_OPEN},
        {"tokenizer.ggml.model", 0, 1, NULL, MAY_OPEN},
        {"tokenizer.ggml.tokens", 5, 0, NULL, MAY_OPEN},
        {"tokenizer.ggml.token_type", 5, 0, NULL, MAY_OPEN},
        {"tokenizer.ggml.merges", 5, 0, NULL, MAY_OPEN},
        {"tokenizer.ggml.bos_token_id", 0, 100000, NULL, MAY_OPEN},
        {"tokenizer.ggml.eos_token_id", 1, (uint64_t)-5, NULL, MAY_OPEN},
    };
    for (size_t i = 0; i < sizeof gen / sizeof gen[0]; i++) {
        edit e = {0};
        e.set_kv = gen[i].k;
        e.set_kind = gen[i].kind;
        e.set_u = gen[i].u;
        e.set_s = gen[i].s;
        size_t len = 0;
        void *img = rebuild(g, &e, &len);
        snprintf(what, sizeof what, "%s = %s%llu", gen[i].k, gen[i].s ? gen[i].s : "",
                 (unsigned long long)gen[i].u);
        if (img) group_case(&bv, img, len, gen[i].ex, what);
        free(img);
    }
    group_end(&bv);
    gguf_close(g);
}

int main(void) {
    const char *base_dir = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moe_fuzz_XXXXXX", base_dir && *base_dir ? base_dir : "/tmp");
    if (!mkdtemp(tmpdir)) {
        tu_fail("fuzz/setup", "mkdtemp: %s", strerror(errno));
        return tu_exit_code();
    }
    for (int a = 0; a < N_ARCH; a++) {
        synth_spec s;
        tiny_spec(&s, archs[a]);
        void *buf = NULL;
        size_t n = 0;
        moe_error err;
        char name[64];
        snprintf(name, sizeof name, "fuzz/%s/base", archs[a]);
        if (synth_write_mem(&s, &buf, &n, &err)) {
            tu_fail(name, "synth: %s", err.msg);
            continue;
        }
        if (base_ok(name, buf, n)) {
            if (a == 2) byte_cases(buf, n); /* qwen2moe: the most tensor kinds */
            rebuilt_cases(archs[a], buf, n);
        }
        free(buf);
    }
    rmdir(tmpdir);
    return tu_exit_code();
}
