/* inspect.c: moe_gguf_dump (moe_infer.h): a readable listing of a GGUF
 * file's header, metadata and tensor table, written to a stream the caller
 * gives.
 *
 * For: `moe inspect` and anyone who wants to see what a file holds through
 * the public API. Not for: interpreting the metadata as a model (arch.c;
 * moe_infer_open's info does that) or validating it (gguf.c did, before
 * anything is printed).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"
#include "moe_infer.h"

#define STR_CUT 80   /* bytes of a string value shown */
#define ARR_SHOW 6   /* elements of an array shown */
#define ARR_STR_CUT 24

/* Writes s[0, n) quoted, escaping control bytes, at most cut bytes. */
static void put_str(FILE *f, const char *s, size_t n, size_t cut) {
    fputc('"', f);
    const size_t m = n < cut ? n : cut;
    for (size_t i = 0; i < m; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else if (c == 0xc2 && i + 1 < m && (unsigned char)s[i + 1] >= 0x80 &&
                 (unsigned char)s[i + 1] <= 0x9f) { /* a C1 control (CSI ...) in UTF-8 */
            fprintf(f, "\\x%02x\\x%02x", c, (unsigned char)s[i + 1]);
            i++;
        }
        else fputc(c, f);
    }
    fputc('"', f);
    if (n > cut) fprintf(f, "... (%zu bytes)", n);
}

/* Element i of an array of fixed-size type t (see gguf_kv.arr). */
static void put_elem(FILE *f, gguf_vtype t, const void *a, uint64_t i) {
    switch (t) {
    case GGUF_VT_U8: fprintf(f, "%u", (unsigned)((const uint8_t *)a)[i]); break;
    case GGUF_VT_I8: fprintf(f, "%d", (int)((const int8_t *)a)[i]); break;
    case GGUF_VT_U16: fprintf(f, "%u", (unsigned)((const uint16_t *)a)[i]); break;
    case GGUF_VT_I16: fprintf(f, "%d", (int)((const int16_t *)a)[i]); break;
    case GGUF_VT_U32: fprintf(f, "%" PRIu32, ((const uint32_t *)a)[i]); break;
    case GGUF_VT_I32: fprintf(f, "%" PRId32, ((const int32_t *)a)[i]); break;
    case GGUF_VT_U64: fprintf(f, "%" PRIu64, ((const uint64_t *)a)[i]); break;
    case GGUF_VT_I64: fprintf(f, "%" PRId64, ((const int64_t *)a)[i]); break;
    case GGUF_VT_F32: fprintf(f, "%g", (double)((const float *)a)[i]); break;
    case GGUF_VT_F64: fprintf(f, "%g", ((const double *)a)[i]); break;
    case GGUF_VT_BOOL: fputs(((const uint8_t *)a)[i] ? "true" : "false", f); break;
    case GGUF_VT_STR: {
        const gguf_str *s = (const gguf_str *)a + i;
        put_str(f, s->s, s->n, ARR_STR_CUT);
        break;
    }
    default: fputs("?", f); break;
    }
}

/* A name from the file (a key, a tensor name) for the terminal: control
 * characters escaped (a file must not send escape sequences to it). */
static const char *safe_name(char *buf, size_t cap, const gguf_str *s) {
    moe_escape_ctrl(buf, cap, s->s, s->n, 0);
    return buf;
}

static void put_kv(FILE *f, const gguf_kv *kv) {
    char key[1024];
    fprintf(f, "  %-44s ", safe_name(key, sizeof key, &kv->key));
    switch (kv->type) {
    case GGUF_VT_U8: case GGUF_VT_U16: case GGUF_VT_U32: case GGUF_VT_U64:
        fprintf(f, "%-6s %" PRIu64, gguf_vtype_name(kv->type), kv->v.u);
        break;
    case GGUF_VT_I8: case GGUF_VT_I16: case GGUF_VT_I32: case GGUF_VT_I64:
        fprintf(f, "%-6s %" PRId64, gguf_vtype_name(kv->type), kv->v.i);
        break;
    case GGUF_VT_F32: case GGUF_VT_F64:
        fprintf(f, "%-6s %g", gguf_vtype_name(kv->type), kv->v.f);
        break;
    case GGUF_VT_BOOL:
        fprintf(f, "%-6s %s", "bool", kv->v.u ? "true" : "false");
        break;
    case GGUF_VT_STR:
        fprintf(f, "%-6s ", "str");
        put_str(f, kv->v.str.s, kv->v.str.n, STR_CUT);
        break;
    case GGUF_VT_ARR: {
        char ty[32];
        snprintf(ty, sizeof ty, "[%s]", gguf_vtype_name(kv->arr_type));
        fprintf(f, "%-6s %" PRIu64 " elements", ty, kv->arr_n);
        if (kv->arr_n > 0) {
            fputs(": ", f);
            const uint64_t show = kv->arr_n < ARR_SHOW ? kv->arr_n : ARR_SHOW;
            for (uint64_t i = 0; i < show; i++) {
                if (i) fputs(", ", f);
                put_elem(f, kv->arr_type, kv->arr, i);
            }
            if (show < kv->arr_n) fputs(", ...", f);
        }
        break;
    }
    default:
        fprintf(f, "(type %u)", (unsigned)kv->type);
        break;
    }
    fputc('\n', f);
}

moe_status moe_gguf_dump(const char *path, FILE *out, moe_error *err) {
    if (!path || !out)
        return moe_err(err, MOE_ERR_ARG, "moe_gguf_dump: %s is NULL", path ? "out" : "path");
    gguf_ctx *g;
    moe_status st = gguf_open_file(&g, path, err);
    if (st) return st;

    const size_t nkv = gguf_n_kv(g), nt = gguf_n_tensors(g);
    fprintf(out, "%s: GGUF v%u, %zu bytes (%.1f MiB), alignment %u, data at offset %zu\n", path,
            (unsigned)gguf_version(g), gguf_file_size(g), gguf_file_size(g) / 1048576.0,
            (unsigned)gguf_alignment(g), gguf_data_offset(g));
    fprintf(out, "metadata (%zu keys):\n", nkv);
    for (size_t i = 0; i < nkv; i++) put_kv(out, gguf_kv_at(g, i));

    size_t name_w = 4;
    char name[1024];
    for (size_t i = 0; i < nt; i++) {
        const size_t n = strlen(safe_name(name, sizeof name, &gguf_tensor_at(g, i)->name));
        if (n > name_w) name_w = n;
    }
    if (name_w > 60) name_w = 60;
    fprintf(out, "tensors (%zu):\n  %-*s %-6s %-22s %14s %14s\n", nt, (int)name_w, "name", "type",
            "dims", "bytes", "offset");
    int64_t elems = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        char dims[96];
        int o = 0;
        for (uint32_t d = 0; d < t->n_dims && o < (int)sizeof dims; d++)
            o += snprintf(dims + o, sizeof dims - (size_t)o, "%s%" PRId64, d ? " x " : "", t->ne[d]);
        fprintf(out, "  %-*s %-6s %-22s %14zu %14" PRIu64 "\n", (int)name_w,
                safe_name(name, sizeof name, &t->name),
                gguf_type_name(t->type), dims, t->nbytes, t->offset);
        elems += t->n_elem;
        bytes += t->nbytes;
    }
    fprintf(out, "total: %zu tensors, %" PRId64 " elements, %" PRIu64 " bytes (%.1f MiB)\n", nt,
            elems, bytes, bytes / 1048576.0);
    gguf_close(g);
    return MOE_OK;
}
