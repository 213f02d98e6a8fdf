/* safetensors.h: reading safetensors files and sharded folders (internal).
 *
 * For: the weights of Hugging Face model folders: one file
 * (model.safetensors) or several shards listed by
 * model.safetensors.index.json ({"weight_map": {"tensor": "file", ...}}).
 * Each file is mapped read-only; tensors point into the mapping. Reading a
 * row converts F32 / F16 / BF16 to float; other dtypes are known (so the
 * file validates) but reading them is a clear error naming the tensor.
 * Not for: writing safetensors, or GGUF (io/gguf.h).
 *
 * The format (little-endian): u64 N, then N bytes of a JSON object
 * {"name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [b, e]},
 *  ..., "__metadata__": {"k": "v", ...} (optional)}, then the data section;
 * offsets are relative to its start (8 + N). Checked before anything is
 * trusted: N against the file size, every dtype known, every shape
 * dimension >= 0, e - b = elements * dtype size, e within the data section,
 * no two tensors' byte ranges overlapping. Shards: every file the index
 * names must exist and hold the tensors the index says, a tensor name may
 * appear in one file only.
 */
#ifndef MOE_IO_SAFETENSORS_H
#define MOE_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_F64,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_U16,
    ST_U32,
    ST_U64,
    ST_BOOL,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    const char *name;          /* NUL-terminated, owned by the st_model */
    st_dtype dtype;
    int n_dims;                /* 0 (a scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];/* outermost first, as in the file */
    int64_t n_elem;
    const uint8_t *data;       /* [nbytes] in the mapping (any alignment) */
    size_t nbytes;
    const char *file;          /* the file it came from (for messages) */
} st_tensor;

typedef struct st_model st_model;

/* "F32", "BF16", ...; "unknown" out of range. */
const char *st_dtype_name(st_dtype t);

/* Opens one safetensors file. On failure *out is NULL. */
moe_status st_open_file(st_model **out, const char *path, moe_error *err);

/* Opens a model folder: model.safetensors.index.json with its shards when
 * present, else model.safetensors, else the only *.safetensors file. */
moe_status st_open_dir(st_model **out, const char *dir, moe_error *err);

void st_close(st_model *m); /* NULL is fine */

size_t st_count(const st_model *m);
const st_tensor *st_at(const st_model *m, size_t i); /* sorted by name */
/* The tensor of a name, NULL when absent. */
const st_tensor *st_find(const st_model *m, const char *name);

/* Rows of a tensor seen as a matrix [rows, cols]: cols = the innermost
 * dimension (1 for a scalar), rows = the product of the others. */
static inline int64_t st_cols(const st_tensor *t) {
    return t->n_dims ? t->shape[t->n_dims - 1] : 1;
}
static inline int64_t st_rows(const st_tensor *t) {
    int64_t c = st_cols(t);
    return c ? t->n_elem / c : 0;
}

/* dst[n] = elements [first, first + n) of t as float. Errors: a dtype other
 * than F32/F16/BF16 (MOE_ERR_UNSUPPORTED naming the tensor and its file),
 * a range outside the tensor (MOE_ERR_ARG). */
moe_status st_read_f32(const st_tensor *t, int64_t first, int64_t n, float *dst,
                       moe_error *err);

#endif /* MOE_IO_SAFETENSORS_H */
