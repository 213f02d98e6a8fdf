/* test_hostile.c: the reproducers of issue #19 ("Hostile files"), the
 * problems fuzzing found, each as a small input built here, plus the replay
 * of every input under tests/fuzz/regressions (see docs/TESTING.md).
 *
 *   1. quant/tiny_*: the scalar quantizers computed id = 1/d = inf for a
 *      block whose largest magnitude is below ~3.7e-37 and cast x * id to
 *      an 8-bit integer (undefined). Checked directly (every type, the quants
 *      must be the zero level, as for an all-zero block) and through the
 *      engine: a valid model whose attn_norm.weight is 1e-38 (activations
 *      quantized at decode) must evaluate.
 *   2. safetensors/empty_header: a 10-byte "{}" file reached qsort(NULL, 0).
 *   3. layer/sizes: set_pointers did arithmetic on a NULL pointer while
 *      sizing a layer (caught by UBSan under clang: make sanitize CC=clang).
 *   4. convert/huge_config: a 300-byte config.json (100000 layers of 65536
 *      experts) made moe_convert_hf look up ~2e10 tensor names (~48 CPU
 *      minutes) before failing; now refused at once (a 60 s alarm fails the
 *      check instead of hanging the suite).
 *   5. safetensors/hidden_overlap: an empty tensor sorted between two
 *      overlapping ones hid the overlap from the neighbour-only check.
 *   6. escape/...: key and tensor names printed unescaped by moe_gguf_dump
 *      (moe inspect), and names from files in error messages and in
 *      moe_infer_info.name: a file could send terminal escape sequences.
 * Found later by the hour of fuzzing (docs/TESTING.md):
 *   model_file/size_keys: size keys of a model file (not covered by its
 *      checksum) made moe_model_load allocate GBs before checking tensors.
 * The undefined-behaviour ones (1, 2, 3) fail loudly under `make sanitize`
 * (UBSan aborts); 1, 4, 5 and 6 also fail in the normal build before their
 * fix.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "moe.h"
#include "moe_infer.h"
#include "quant/quant.h"
#include "testutil.h"
#include "tools/synth.h"

static char tmpdir[256];

static int write_file(const char *p, const void *data, size_t n) {
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    ok &= fclose(f) == 0;
    return ok;
}

/* ------------------------------------------------------------ 1: quant */

static const quant_type k_block_types[] = {
    QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0, QUANT_Q8_1,
    QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_Q8_K,
};
#define N_BLOCK_TYPES ((int)(sizeof k_block_types / sizeof k_block_types[0]))

/* For the 32-weight types: 1 if the quants of block b are the zero level
 * (what an all-zero block gets: q4_0 8, q5_0 16, the others 0). */
static int zero_level(quant_type t, const uint8_t *b, char *why, size_t cap) {
    int want_lo = 0;   /* every nibble / byte of qs */
    uint32_t want_qh = 0;
    const uint8_t *qs = NULL, *qh = NULL;
    int nqs = 16;
    switch (t) {
    case QUANT_Q4_0: qs = ((const quant_block_q4_0 *)b)->qs; want_lo = 0x88; break;
    case QUANT_Q4_1: qs = ((const quant_block_q4_1 *)b)->qs; break;
    case QUANT_Q5_0:
        qs = ((const quant_block_q5_0 *)b)->qs;
        qh = ((const quant_block_q5_0 *)b)->qh;
        want_qh = 0xffffffffu;
        break;
    case QUANT_Q5_1:
        qs = ((const quant_block_q5_1 *)b)->qs;
        qh = ((const quant_block_q5_1 *)b)->qh;
        break;
    case QUANT_Q8_0: qs = (const uint8_t *)((const quant_block_q8_0 *)b)->qs; nqs = 32; break;
    case QUANT_Q8_1: qs = (const uint8_t *)((const quant_block_q8_1 *)b)->qs; nqs = 32; break;
    default: return 1;
    }
    for (int j = 0; j < nqs; j++)
        if (qs[j] != want_lo) {
            snprintf(why, cap, "qs[%d] = 0x%02x, the zero level is 0x%02x", j, qs[j], want_lo);
            return 0;
        }
    if (qh && quant_rd32(qh) != want_qh) {
        snprintf(why, cap, "qh = 0x%08x, the zero level is 0x%08x", quant_rd32(qh), want_qh);
        return 0;
    }
    return 1;
}

/* Blocks of 256 values whose largest magnitude is below ~3.7e-37: constant,
 * a ramp, mixed signs, the smallest subnormal. Each must quantize to a block
 * that dequantizes to zeros, with the zero level in the 32-weight types. */
static void test_quant_tiny(void) {
    const int n = 256;
    float x[256], y[256];
    uint8_t q[4 * 256];
    static const float mags[] = {1e-38f, 3e-37f, 2e-39f, 1e-45f};
    int bad = 0, cases = 0;
    char why[160];
    for (int ti = 0; ti < N_BLOCK_TYPES && !bad; ti++) {
        const quant_type t = k_block_types[ti];
        for (int mi = 0; mi < 4 && !bad; mi++)
            for (int shape = 0; shape < 3 && !bad; shape++) {
                for (int j = 0; j < n; j++) {
                    const float m = mags[mi];
                    x[j] = shape == 0 ? m : shape == 1 ? m * (float)(j % 32) / 31.0f
                                                       : ((j & 1) ? m : -m * 0.5f);
                }
                moe_error err;
                cases++;
                if (quant_quantize_row(t, x, q, n, &err) != MOE_OK ||
                    quant_dequantize_row(t, q, y, n, &err) != MOE_OK) {
                    tu_fail("quant/tiny_blocks", "%s: %s", quant_get_traits(t)->name, err.msg);
                    bad = 1;
                    break;
                }
                const size_t bb = quant_get_traits(t)->block_bytes;
                const int bs = quant_get_traits(t)->block_size;
                /* 3e-37 keeps a finite 1 / d in some types: its levels are ggml's */
                for (int b = 0; b < n / bs && !bad && mags[mi] < 1e-37f; b++)
                    if (!zero_level(t, q + (size_t)b * bb, why, sizeof why)) {
                        tu_fail("quant/tiny_blocks", "%s, magnitude %g, shape %d, block %d: %s",
                                quant_get_traits(t)->name, (double)mags[mi], shape, b, why);
                        bad = 1;
                    }
                for (int j = 0; j < n && !bad; j++)
                    if (fabsf(y[j]) > 1e-30f) {
                        tu_fail("quant/tiny_blocks", "%s, magnitude %g, shape %d: w[%d] = %g, "
                                "expected ~0", quant_get_traits(t)->name, (double)mags[mi], shape,
                                j, (double)y[j]);
                        bad = 1;
                    }
            }
    }
    if (!bad) tu_okf("quant/tiny_blocks (%d rows over %d types)", cases, N_BLOCK_TYPES);
}

/* Blocks near FLT_MAX: the range max - min of Q4_1 / Q5_1 overflows to inf
 * (id = 0, x - min = inf, inf * 0 = NaN before the cast). No undefined
 * behaviour; the values past fp16's range are not representable anyway. */
static void test_quant_huge(void) {
    const int n = 256;
    float x[256], y[256];
    uint8_t q[4 * 256];
    int bad = 0;
    for (int ti = 0; ti < N_BLOCK_TYPES && !bad; ti++) {
        const quant_type t = k_block_types[ti];
        for (int j = 0; j < n; j++) x[j] = (j & 1) ? 3.4e38f : -3.4e38f * ((float)(j % 7) / 6.0f);
        moe_error err;
        if (quant_quantize_row(t, x, q, n, &err) != MOE_OK ||
            quant_dequantize_row(t, q, y, n, &err) != MOE_OK) {
            tu_fail("quant/huge_blocks", "%s: %s", quant_get_traits(t)->name, err.msg);
            bad = 1;
        }
    }
    if (!bad) tu_ok("quant/huge_blocks");
}

/* Writes value into every element of the F32 tensors whose name ends with
 * suffix, in place in the file. Returns how many tensors were changed. */
static int patch_tensors(const char *path, const char *suffix, float value) {
    gguf_ctx *g = NULL;
    moe_error err;
    if (gguf_open_file(&g, path, &err) != MOE_OK) return -1;
    int fd = open(path, O_WRONLY), n = 0;
    for (size_t i = 0; fd >= 0 && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const size_t ln = strlen(t->name.s), ls = strlen(suffix);
        if (ln < ls || strcmp(t->name.s + ln - ls, suffix) || t->type != GGUF_T_F32) continue;
        const off_t at = (off_t)(gguf_data_offset(g) + t->offset);
        for (int64_t k = 0; k < t->n_elem; k++) {
            uint8_t b[4];
            quant_wr32(b, quant_f32_to_bits(value));
            if (pwrite(fd, b, 4, at + 4 * k) != 4) { n = -1; break; }
        }
        if (n < 0) break;
        n++;
    }
    if (fd >= 0) close(fd);
    gguf_close(g);
    return n;
}

/* A valid model whose attn_norm.weight is 1e-38: every attention input is
 * ~1e-38, quantized at decode (Q8_1 for Q4_1 weights by the scalar
 * quantizer, Q8_0 and Q8_K by the SIMD ones where present). */
static void test_engine_tiny_norm(void) {
    static const char *const types[] = {"q4_1", "q5_1", "q4_0", "q8_0", "q4_K"};
    char path[300];
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "quant/engine_tiny_norm_%s", types[i]);
        snprintf(path, sizeof path, "%s/tiny_norm_%s.gguf", tmpdir, types[i]);
        moe_synth_config c;
        moe_synth_config_default(&c);
        c.wtype = types[i];
        moe_error err;
        if (moe_synth_model(path, &c, NULL, &err) != MOE_OK) { tu_fail(name, "synth: %s", err.msg); continue; }
        const int np = patch_tensors(path, "attn_norm.weight", 1e-38f);
        if (np <= 0) { tu_fail(name, "no attn_norm.weight to patch in %s", path); continue; }
        moe_infer_options o;
        moe_infer_options_default(&o);
        o.ctx_len = 16;
        o.n_threads = 1;
        moe_infer *m = NULL;
        if (moe_infer_open(&m, path, &o, &err) != MOE_OK) { tu_fail(name, "open: %s", err.msg); continue; }
        const int V = moe_infer_get_info(m)->vocab_size;
        float *logits = malloc(sizeof(float) * (size_t)V);
        int32_t tok[4] = {1, 2, 3, 4};
        moe_status st = moe_infer_eval(m, tok, 4, 0, logits, 0, &err);
        if (st == MOE_OK) st = moe_infer_eval(m, tok, 1, 4, logits, 0, &err); /* one decode step */
        int finite = 1;
        for (int k = 0; k < V && st == MOE_OK; k++) finite &= isfinite(logits[k]) != 0;
        if (st != MOE_OK) tu_fail(name, "eval: %s", err.msg);
        else if (!finite) tu_fail(name, "non-finite logits");
        else tu_okf("%s (%d norms at 1e-38)", name, np);
        free(logits);
        moe_infer_close(m);
        unlink(path);
    }
}

/* -------------------------------------------------- 2, 5: safetensors */

/* A safetensors file: header text, then data bytes of zeros. */
static int write_st(const char *p, const char *hdr, size_t data_len) {
    const size_t hn = strlen(hdr);
    uint8_t *buf = calloc(1, 8 + hn + data_len);
    if (!buf) return 0;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(buf + 8, hdr, hn);
    int ok = write_file(p, buf, 8 + hn + data_len);
    free(buf);
    return ok;
}

static void test_st_empty_header(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/empty.safetensors", tmpdir);
    if (!write_st(p, "{}", 0)) { tu_fail("safetensors/empty_header", "cannot write %s", p); return; }
    struct stat sb;
    stat(p, &sb);
    st_model *m = NULL;
    moe_error err;
    moe_status st = st_open_file(&m, p, &err);
    if (st != MOE_OK) tu_fail("safetensors/empty_header", "a valid empty file refused: %s", err.msg);
    else if (st_count(m) != 0) tu_fail("safetensors/empty_header", "%zu tensors in {}", st_count(m));
    else tu_okf("safetensors/empty_header (%lld bytes, no tensors)", (long long)sb.st_size);
    st_close(m);
    unlink(p);
}

/* The 259-byte file of the issue: 'a' [0, 8) and 'c' [4, 12) overlap; 'b',
 * empty at [4, 4), sorts between them. */
static void test_st_hidden_overlap(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/overlap.safetensors", tmpdir);
    const char *hdr =
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
        "\"b\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}, "
        "\"c\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}, "
        "\"__metadata__\": {\"format\": \"pt\", \"note\": \"empty mid\"}}";
    const size_t data_len = 12;
    if (!write_st(p, hdr, data_len)) { tu_fail("safetensors/hidden_overlap", "cannot write %s", p); return; }
    const size_t size = 8 + strlen(hdr) + data_len;
    st_model *m = NULL;
    moe_error err;
    memset(&err, 0, sizeof err);
    moe_status st = st_open_file(&m, p, &err);
    if (st == MOE_OK) tu_fail("safetensors/hidden_overlap", "a %zu-byte file with overlapping tensors "
                              "'a' [0, 8) and 'c' [4, 12) opened", size);
    else if (!strstr(err.msg, "overlap") || !strstr(err.msg, "'a'") || !strstr(err.msg, "'c'"))
        tu_fail("safetensors/hidden_overlap", "refused, but the message does not name the overlap "
                "of 'a' and 'c': %s", err.msg);
    else tu_okf("safetensors/hidden_overlap (%zu bytes)", size);
    st_close(m);
    /* the same with the overlap far apart: 'a' [0, 16) holds 'd' [8, 12)
     * behind 'b' [4, 8) which ends first */
    const char *hdr2 =
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
        "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}, "
        "\"d\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}";
    write_st(p, hdr2, 16);
    st = st_open_file(&m, p, &err);
    if (st == MOE_OK) tu_fail("safetensors/nested_overlap", "'b' and 'd' inside 'a' opened");
    else tu_ok("safetensors/nested_overlap");
    st_close(m);
    /* and adjacent tensors with empty ones anywhere still open */
    const char *hdr3 =
        "{\"e0\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}, "
        "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
        "\"e1\": {\"dtype\": \"F16\", \"shape\": [0, 3], \"data_offsets\": [4, 4]}, "
        "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}, "
        "\"e2\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]}}";
    write_st(p, hdr3, 8);
    st = st_open_file(&m, p, &err);
    if (st != MOE_OK) tu_fail("safetensors/adjacent_with_empty", "%s", err.msg);
    else if (st_count(m) != 5) tu_fail("safetensors/adjacent_with_empty", "%zu tensors", st_count(m));
    else tu_ok("safetensors/adjacent_with_empty");
    st_close(m);
    unlink(p);
}

/* ------------------------------------------------------------ 4: convert */

static void on_alarm(int sig) {
    (void)sig;
    static const char m[] = "FAIL convert/huge_config: moe_convert_hf still running after 60 s "
                            "(it looks up every layer's and expert's tensor names first)\n";
    if (write(1, m, sizeof m - 1) < 0) _exit(1);
    _exit(1);
}

static void test_convert_huge_config(void) {
    char dir[300], p[400], out[400];
    snprintf(dir, sizeof dir, "%s/hf_huge", tmpdir);
    mkdir(dir, 0700);
    const char *cfg =
        "{\"model_type\": \"mixtral\", \"vocab_size\": 4, \"hidden_size\": 8, "
        "\"num_hidden_layers\": 100000, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
        "\"intermediate_size\": 8, \"num_local_experts\": 65536, \"num_experts_per_tok\": 2, "
        "\"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 64, \"note\": \"300 bytes......\"}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, cfg, strlen(cfg));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_st(p, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [4, 8], "
                "\"data_offsets\": [0, 128]}}", 128);
    snprintf(out, sizeof out, "%s/out.gguf", tmpdir);
    moe_error err;
    memset(&err, 0, sizeof err);
    signal(SIGALRM, on_alarm);
    alarm(60);
    moe_status st = moe_convert_hf(dir, out, "q8_0", &err);
    alarm(0);
    if (st == MOE_OK) tu_fail("convert/huge_config", "converted");
    else if (!strstr(err.msg, "num_hidden_layers") && !strstr(err.msg, "num_local_experts"))
        tu_fail("convert/huge_config", "the message names neither size: %s", err.msg);
    else tu_okf("convert/huge_config (a %zu-byte config.json: %s)", strlen(cfg), err.msg);
    /* one layer, but 65536 experts of which no tensor is present */
    const char *cfg1 =
        "{\"model_type\": \"mixtral\", \"hidden_size\": 8, \"num_hidden_layers\": 1, "
        "\"num_attention_heads\": 2, \"intermediate_size\": 8, \"num_local_experts\": 65536, "
        "\"num_experts_per_tok\": 2}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, cfg1, strlen(cfg1));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_st(p, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [4, 8], "
                "\"data_offsets\": [0, 128]}, \"a\": {\"dtype\": \"F32\", \"shape\": [0], "
                "\"data_offsets\": [0, 0]}, \"b\": {\"dtype\": \"F32\", \"shape\": [0], "
                "\"data_offsets\": [0, 0]}, \"c\": {\"dtype\": \"F32\", \"shape\": [0], "
                "\"data_offsets\": [0, 0]}}", 128);
    st = moe_convert_hf(dir, out, "q8_0", &err);
    if (st == MOE_OK || !strstr(err.msg, "num_local_experts"))
        tu_fail("convert/huge_expert_count", "%s", st == MOE_OK ? "converted" : err.msg);
    else tu_okf("convert/huge_expert_count (%s)", err.msg);
    /* issue #19, 2 through convert: weights in a 10-byte "{}" file */
    write_st(p, "{}", 0);
    st = moe_convert_hf(dir, out, "q4_0", &err);
    if (st == MOE_OK || !strstr(err.msg, "embed_tokens"))
        tu_fail("convert/empty_safetensors", "expected a missing model.embed_tokens.weight: %s",
                st == MOE_OK ? "converted" : err.msg);
    else tu_ok("convert/empty_safetensors");
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    unlink(out);
    rmdir(dir);
}

/* ------------------------------------------------------------ 6: escapes */

/* 1 if buf[0, n) holds a control character other than '\n' (C0, DEL, or
 * a C1 control in UTF-8); *at gets its offset. */
static int has_ctrl(const char *buf, size_t n, size_t *at) {
    const unsigned char *s = (const unsigned char *)buf;
    for (size_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\n') || s[i] == 0x7f ||
            (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)) {
            *at = i;
            return 1;
        }
    return 0;
}

static const char k_evil[] = "\x1b]0;owned\x07\x1b[2J\r\xc2\x9b" "31m";

/* A GGUF file: a key, a string, a tensor name and general.name with
 * escape sequences; general.architecture arch. */
static int write_evil(const char *path, const char *arch) {
    gguf_writer *w = NULL;
    moe_error err;
    float x[4] = {1, 2, 3, 4};
    int64_t ne[1] = {4};
    char key[64];
    snprintf(key, sizeof key, "evil.%s.key", k_evil);
    int ok = gguf_writer_create(&w, &err) == MOE_OK &&
             gguf_writer_set_str(w, "general.architecture", arch, &err) == MOE_OK &&
             gguf_writer_set_str(w, "general.name", k_evil, &err) == MOE_OK &&
             gguf_writer_set_u32(w, key, 7, &err) == MOE_OK &&
             gguf_writer_add_tensor(w, "blk.0.\x1b[5mattn_norm.weight", 0, 1, ne, x, sizeof x, &err) == MOE_OK &&
             gguf_writer_write(w, path, &err) == MOE_OK;
    gguf_writer_free(w);
    return ok;
}

static void test_escapes(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/evil.gguf", tmpdir);
    if (!write_evil(p, "llama")) { tu_fail("escape/setup", "cannot write %s", p); return; }
    /* moe inspect's listing */
    char *out = NULL;
    size_t n = 0, at = 0;
    FILE *f = open_memstream(&out, &n);
    moe_error err;
    moe_status st = moe_gguf_dump(p, f, &err);
    fclose(f);
    if (st != MOE_OK) tu_fail("escape/gguf_dump", "%s", err.msg);
    else if (has_ctrl(out, n, &at))
        tu_fail("escape/gguf_dump", "control byte 0x%02x at %zu of the listing: \"%.40s\"",
                (unsigned char)out[at], at, out + (at > 20 ? at - 20 : 0));
    else if (!strstr(out, "evil.\\x1b]0;owned\\x07") || !strstr(out, "blk.0.\\x1b[5mattn_norm"))
        tu_fail("escape/gguf_dump", "the key or the tensor name is not in the listing as escapes");
    else tu_ok("escape/gguf_dump");
    free(out);
    /* an error naming the file's architecture (moe run / inspect print it) */
    char arch[64];
    snprintf(arch, sizeof arch, "x%s", k_evil);
    write_evil(p, arch);
    moe_infer_options o;
    moe_infer_options_default(&o);
    moe_infer *m = NULL;
    st = moe_infer_open(&m, p, &o, &err);
    if (st == MOE_OK) tu_fail("escape/error_message", "an unknown architecture opened");
    else if (has_ctrl(err.msg, strlen(err.msg), &at))
        tu_fail("escape/error_message", "control byte 0x%02x in: %s", (unsigned char)err.msg[at], err.msg);
    else if (!strstr(err.msg, "\\x1b"))
        tu_fail("escape/error_message", "the architecture is not in the message: %s", err.msg);
    else tu_okf("escape/error_message (%s)", err.msg);
    moe_infer_close(m);
    /* moe_infer_info.name (general.name) of a model that runs */
    moe_synth_config c;
    moe_synth_config_default(&c);
    char q[300];
    snprintf(q, sizeof q, "%s/named.gguf", tmpdir);
    gguf_ctx *g = NULL;
    gguf_writer *w = NULL;
    int ok = moe_synth_model(q, &c, NULL, &err) == MOE_OK && gguf_open_file(&g, q, &err) == MOE_OK &&
             gguf_writer_create(&w, &err) == MOE_OK;
    for (size_t i = 0; ok && i < gguf_n_kv(g); i++)
        if (strcmp(gguf_kv_at(g, i)->key.s, "general.name"))
            ok = synth_copy_kv(w, gguf_kv_at(g, i), &err) == MOE_OK;
    if (ok) ok = gguf_writer_set_str(w, "general.name", k_evil, &err) == MOE_OK;
    for (size_t i = 0; ok && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        ok = gguf_writer_add_tensor(w, t->name.s, t->type, t->n_dims, t->ne, t->data, t->nbytes, &err) == MOE_OK;
    }
    if (ok) ok = gguf_writer_write(w, p, &err) == MOE_OK;
    gguf_writer_free(w);
    gguf_close(g);
    unlink(q);
    if (!ok) tu_fail("escape/info_name", "setup: %s", err.msg);
    else if (moe_infer_open(&m, p, &o, &err) != MOE_OK) tu_fail("escape/info_name", "open: %s", err.msg);
    else {
        const char *nm = moe_infer_get_info(m)->name;
        if (has_ctrl(nm, strlen(nm), &at)) tu_fail("escape/info_name", "control byte 0x%02x in the name", (unsigned char)nm[at]);
        else tu_okf("escape/info_name (%s)", nm);
        moe_infer_close(m);
    }
    unlink(p);
}

/* ------------------------------------- found by the hour of fuzzing */

/* A model file whose metadata (which moe.checksum does not cover) asks for
 * a shared expert of 16580352 rows (fuzz_checkpoint's out-of-memory input):
 * moe_model_load created the model, 1.6 GB of weights and as much of
 * gradients, before looking at the tensors. Now refused first. */
static void test_model_size_keys(void) {
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/small.gguf", tmpdir);
    snprintf(q, sizeof q, "%s/lying.gguf", tmpdir);
    moe_model_config c;
    moe_model_config_default(&c);
    c.vocab_size = 260; c.d_model = 8; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 1;
    c.ctx_len = 8; c.d_ff = 8; c.max_batch = 1; c.n_threads = 1;
    c.moe.n_experts = 2; c.moe.top_k = 1; c.moe.d_ff = 4;
    const char *text = "a tiny corpus for a tiny tokenizer, a tiny corpus";
    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    moe_error err;
    int ok = moe_model_create(&m, &c, &err) == MOE_OK &&
             moe_tokenizer_train(&tok, text, strlen(text), 260, &err) == MOE_OK &&
             moe_model_save(m, tok, p, &err) == MOE_OK;
    moe_model_free(m);
    moe_tokenizer_free(tok);
    m = NULL;
    tok = NULL;
    gguf_ctx *g = NULL;
    gguf_writer *w = NULL;
    int found = 0;
    if (ok) ok = gguf_open_file(&g, p, &err) == MOE_OK && gguf_writer_create(&w, &err) == MOE_OK;
    for (size_t i = 0; ok && i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (!strcmp(kv->key.s, "moe.router.shared_d_ff")) {
            found = 1;
            ok = gguf_writer_set_i32(w, kv->key.s, 1000000, &err) == MOE_OK; /* within the config bounds: refused by the size check */
        } else {
            ok = synth_copy_kv(w, kv, &err) == MOE_OK;
        }
    }
    for (size_t i = 0; ok && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        ok = gguf_writer_add_tensor(w, t->name.s, t->type, t->n_dims, t->ne, t->data, t->nbytes, &err) == MOE_OK;
    }
    if (ok) ok = gguf_writer_write(w, q, &err) == MOE_OK;
    gguf_writer_free(w);
    gguf_close(g);
    if (!ok || !found) {
        tu_fail("model_file/size_keys", "setup: %s", found ? err.msg : "no moe.router.shared_d_ff key");
    } else {
        moe_status st = moe_model_load(&m, &tok, q, 1, 1, &err);
        if (st == MOE_OK) tu_fail("model_file/size_keys", "a model with a 1000000-row shared expert loaded");
        else if (!strstr(err.msg, "needs")) tu_fail("model_file/size_keys", "refused late: %s", err.msg);
        else tu_okf("model_file/size_keys (%s)", err.msg);
        moe_model_free(m);
        moe_tokenizer_free(tok);
    }
    unlink(p);
    unlink(q);
}

/* ------------------------------------------------------------ 3: layer */

/* Sizing a layer (set_pointers with no buffer) on every creation: under
 * clang's UBSan the old code reported "applying non-zero offset to null
 * pointer". A few shapes: SwiGLU and GELU, shared experts, noisy gate. */
static void test_layer_sizes(void) {
    int bad = 0;
    for (int v = 0; v < 4 && !bad; v++) {
        moe_layer_config c;
        moe_layer_config_default(&c, 16, 8, 4, 2);
        c.max_tokens = 8;
        if (v & 1) c.expert = MOE_EXPERT_GELU;
        if (v & 2) { c.shared_d_ff = 8; c.shared_gate = 1; c.noisy_gate = 1; }
        moe_layer *L = NULL;
        moe_error err;
        if (moe_layer_create(&L, &c, &err) != MOE_OK) {
            tu_fail("layer/sizes", "variant %d: %s", v, err.msg);
            bad = 1;
        }
        moe_layer_free(L);
    }
    if (!bad) tu_ok("layer/sizes");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moe_test_hostile_%d", (int)getpid());
    if (mkdir(tmpdir, 0700) != 0 && errno != EEXIST) {
        tu_fail("setup", "mkdir %s: %s", tmpdir, strerror(errno));
        return tu_exit_code();
    }
    test_quant_tiny();
    test_quant_huge();
    test_engine_tiny_norm();
    test_st_empty_header();
    test_st_hidden_overlap();
    test_layer_sizes();
    test_convert_huge_config();
    test_escapes();
    test_model_size_keys();
    rmdir(tmpdir);
    return tu_exit_code();
}
