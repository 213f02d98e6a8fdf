/* gguf.h: the GGUF container, read and written (internal).
 *
 * For: opening a GGUF file (mmap, read-only) or a memory buffer, validating
 * all of its structure against its size, looking up metadata and tensors;
 * and building a GGUF file (version 3) from metadata and tensor pointers,
 * written atomically. Not for: interpreting what the metadata means for a
 * model (architectures, tokenizers) or converting tensor data; that is the
 * loader's job.
 *
 * The format (little-endian):
 *   "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 value type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims] (innermost first),
 *                 u32 tensor type, u64 offset },
 *   zero padding to a multiple of the alignment (general.alignment, u32,
 *   a power of two, default 32), then the data section; each tensor's offset
 *   is relative to it and a multiple of the alignment.
 *   A string is u64 length + bytes (no NUL). An array value is u32 element
 *   type + u64 count + elements. Nested arrays are rejected (unsupported).
 *
 * Trust: nothing read from a file is used before it is checked against the
 * file size; every failure returns a status with a message naming the file,
 * the key or tensor, the field and what was expected. Only little-endian
 * files are read; metadata is decoded byte by byte, so the reader itself runs
 * on any host, but tensor data is handed out raw.
 */
#ifndef MOE_IO_GGUF_H
#define MOE_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* ------------------------------------------------------- metadata types */

typedef enum gguf_vtype {
    GGUF_VT_U8 = 0,
    GGUF_VT_I8 = 1,
    GGUF_VT_U16 = 2,
    GGUF_VT_I16 = 3,
    GGUF_VT_U32 = 4,
    GGUF_VT_I32 = 5,
    GGUF_VT_F32 = 6,
    GGUF_VT_BOOL = 7, /* one byte, 0 or 1 (other values are rejected) */
    GGUF_VT_STR = 8,
    GGUF_VT_ARR = 9,
    GGUF_VT_U64 = 10,
    GGUF_VT_I64 = 11,
    GGUF_VT_F64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

/* "u8", "i8", ..., "string", "array", ...; "unknown" outside 0..12. */
const char *gguf_vtype_name(uint32_t t);
/* Bytes of one value of a fixed-size type; 0 for string, array, unknown. */
size_t gguf_vtype_size(uint32_t t);

/* --------------------------------------------------------- tensor types */

typedef enum gguf_ttype {
    GGUF_T_F32 = 0,
    GGUF_T_F16 = 1,
    GGUF_T_Q4_0 = 2,
    GGUF_T_Q4_1 = 3,
    /* 4, 5: removed from ggml */
    GGUF_T_Q5_0 = 6,
    GGUF_T_Q5_1 = 7,
    GGUF_T_Q8_0 = 8,
    GGUF_T_Q8_1 = 9,
    GGUF_T_Q2_K = 10,
    GGUF_T_Q3_K = 11,
    GGUF_T_Q4_K = 12,
    GGUF_T_Q5_K = 13,
    GGUF_T_Q6_K = 14,
    GGUF_T_Q8_K = 15,
    GGUF_T_IQ2_XXS = 16, /* 16..23, 29: sizes known so files open; */
    GGUF_T_IQ2_XS = 17,  /* the kernels may not support them      */
    GGUF_T_IQ3_XXS = 18,
    GGUF_T_IQ1_S = 19,
    GGUF_T_IQ4_NL = 20,
    GGUF_T_IQ3_S = 21,
    GGUF_T_IQ2_S = 22,
    GGUF_T_IQ4_XS = 23,
    GGUF_T_I8 = 24,
    GGUF_T_I16 = 25,
    GGUF_T_I32 = 26,
    GGUF_T_I64 = 27,
    GGUF_T_F64 = 28,
    GGUF_T_IQ1_M = 29,
    GGUF_T_BF16 = 30,
    GGUF_T_COUNT /* ids >= this are unknown */
} gguf_ttype;

/* "f32", "q4_K", ...; "unknown" for ids this reader does not know. */
const char *gguf_type_name(uint32_t type);
/* Weights per block (1 for plain types, 32 or 256 for quantized ones);
 * 0 for unknown ids. */
int64_t gguf_type_block_size(uint32_t type);
/* Bytes per block; 0 for unknown ids. */
size_t gguf_type_block_bytes(uint32_t type);

/* Bytes of a tensor of this type and shape (ne innermost first, n_dims
 * 1..4). Fails (MOE_ERR_FORMAT) on an unknown type, a dimension < 1, an
 * element count or byte size that overflows int64/size_t, or ne[0] not a
 * multiple of the block size; err then says which (without a file name). */
moe_status gguf_tensor_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne,
                              size_t *nbytes, moe_error *err);

/* ------------------------------------------------------------- reading */

/* A string from the file: s is a NUL-terminated copy owned by the context;
 * n is the length in the file (the bytes may themselves contain NULs). */
typedef struct gguf_str {
    const char *s;
    size_t n;
} gguf_str;

/* One metadata entry. */
typedef struct gguf_kv {
    gguf_str key;
    gguf_vtype type;
    union {
        uint64_t u;   /* U8, U16, U32, U64, BOOL (0 or 1) */
        int64_t i;    /* I8, I16, I32, I64 */
        double f;     /* F32 (exactly), F64 */
        gguf_str str; /* STR */
    } v;
    /* ARR only: */
    gguf_vtype arr_type; /* element type (never ARR) */
    uint64_t arr_n;      /* element count */
    const void *arr;     /* [arr_n] native-endian, aligned: uint8_t for U8 and
                            BOOL, int8_t, uint16_t, ..., float, double; and
                            const gguf_str * for STR. NULL when arr_n == 0. */
} gguf_kv;

/* One tensor. */
typedef struct gguf_tensor {
    gguf_str name;
    gguf_ttype type;
    uint32_t n_dims;            /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];  /* dims, innermost first; 1 past n_dims */
    int64_t n_elem;             /* product of ne */
    uint64_t offset;            /* from the start of the data section */
    size_t nbytes;              /* from the type and shape */
    const void *data;           /* [nbytes] inside the mapping or buffer,
                                   valid until gguf_close */
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

/* Maps path read-only and validates it. On failure *out is NULL. */
moe_status gguf_open_file(gguf_ctx **out, const char *path, moe_error *err);

/* Validates a GGUF image in memory. buf is not copied: tensor data points
 * into it, so it must outlive the context. name is used in messages (NULL:
 * "<memory>"). */
moe_status gguf_open_memory(gguf_ctx **out, const void *buf, size_t size,
                            const char *name, moe_error *err);

/* Unmaps and frees everything; NULL is fine. */
void gguf_close(gguf_ctx *g);

const char *gguf_name(const gguf_ctx *g);    /* path or buffer name */
uint32_t gguf_version(const gguf_ctx *g);    /* 2 or 3 */
uint32_t gguf_alignment(const gguf_ctx *g);
size_t gguf_file_size(const gguf_ctx *g);
size_t gguf_data_offset(const gguf_ctx *g);  /* start of the data section */
size_t gguf_n_kv(const gguf_ctx *g);
const gguf_kv *gguf_kv_at(const gguf_ctx *g, size_t i); /* file order */
size_t gguf_n_tensors(const gguf_ctx *g);
const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, size_t i); /* file order */

/* The entry of a key, NULL when absent. */
const gguf_kv *gguf_find_kv(const gguf_ctx *g, const char *key);
/* The tensor of a name, NULL when absent. */
const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name);
/* As gguf_find_tensor, but a missing tensor is an error (MOE_ERR_FORMAT). */
moe_status gguf_get_tensor(const gguf_ctx *g, const char *name,
                           const gguf_tensor **t, moe_error *err);

/* Typed getters. A missing key is MOE_ERR_FORMAT ("key 'x' not found"); a
 * value of the wrong type or out of range is MOE_ERR_FORMAT too.
 * The integer getters accept every integer type (u8..u64, i8..i64; not bool)
 * whose value fits the result: a u32 field written as i32 or u64 reads fine,
 * a negative one does not. gguf_get_f32/f64 accept f32 and f64.
 * gguf_get_bool accepts only bool. */
moe_status gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, moe_error *err);
moe_status gguf_get_i32(const gguf_ctx *g, const char *key, int32_t *out, moe_error *err);
moe_status gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out, moe_error *err);
moe_status gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out, moe_error *err);
moe_status gguf_get_f32(const gguf_ctx *g, const char *key, float *out, moe_error *err);
moe_status gguf_get_f64(const gguf_ctx *g, const char *key, double *out, moe_error *err);
moe_status gguf_get_bool(const gguf_ctx *g, const char *key, int *out, moe_error *err);
/* *s is NUL-terminated and owned by g; n (may be NULL) gets the length. */
moe_status gguf_get_str(const gguf_ctx *g, const char *key, const char **s, size_t *n,
                        moe_error *err);
/* Any array: element type, count and data (see gguf_kv.arr). */
moe_status gguf_get_arr(const gguf_ctx *g, const char *key, gguf_vtype *elem_type,
                        uint64_t *n, const void **data, moe_error *err);
/* An array whose elements must have type `want` (e.g. GGUF_VT_F32 for
 * tokenizer scores, GGUF_VT_STR for tokens: data is then const gguf_str *). */
moe_status gguf_get_arr_of(const gguf_ctx *g, const char *key, gguf_vtype want,
                           uint64_t *n, const void **data, moe_error *err);

/* ------------------------------------------------------------- writing */

/* Collects metadata (copied) and tensors (pointers, not copied: the data
 * must stay valid until the write) and writes a version 3 file. Keys and
 * tensors are written in the order they were added. Setting
 * "general.alignment" (u32, power of two) changes the alignment used. */
typedef struct gguf_writer gguf_writer;

moe_status gguf_writer_create(gguf_writer **out, moe_error *err);
void gguf_writer_free(gguf_writer *w);

/* Each fails with MOE_ERR_ARG on a NULL or duplicate key. */
moe_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v, moe_error *err);
moe_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v, moe_error *err);
moe_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v, moe_error *err);
moe_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v, moe_error *err);
moe_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, moe_error *err);
moe_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, moe_error *err);
moe_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, moe_error *err);
moe_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v, moe_error *err);
moe_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, moe_error *err);
moe_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v, moe_error *err);
moe_status gguf_writer_set_f64(gguf_writer *w, const char *key, double v, moe_error *err);
/* A NUL-terminated string. */
moe_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, moe_error *err);
/* n bytes of s (may contain NULs). */
moe_status gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, size_t n,
                                moe_error *err);
/* An array of n fixed-size elements of type elem (not STR or ARR), given
 * as a native array (uint8_t for BOOL, values 0 or 1). */
moe_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                               const void *data, uint64_t n, moe_error *err);
/* An array of n NUL-terminated strings. */
moe_status gguf_writer_set_arr_str(gguf_writer *w, const char *key,
                                   const char *const *strs, uint64_t n, moe_error *err);

/* Adds a tensor: ne innermost first, n_dims 1..4; nbytes must equal
 * gguf_tensor_nbytes of the type and shape. data is not copied. */
moe_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                  uint32_t n_dims, const int64_t *ne, const void *data,
                                  size_t nbytes, moe_error *err);

/* Bytes the file will have. */
size_t gguf_writer_size(const gguf_writer *w);

/* Writes the file atomically (temporary file, fsync, rename): on failure an
 * existing file at path is left as it was. */
moe_status gguf_writer_write(const gguf_writer *w, const char *path, moe_error *err);

/* Writes the file image into a new malloc'd buffer (*buf, freed by the
 * caller) of *size bytes. */
moe_status gguf_writer_write_mem(const gguf_writer *w, void **buf, size_t *size,
                                 moe_error *err);

#endif
