/* fuzz_safetensors.c: safetensors files and sharded folders
 * (src/io/safetensors.c). The input is one file (model.safetensors), or
 * parts cut at FZ_SEP: two shards and model.safetensors.index.json. Every
 * tensor of a folder that opens is found by name and read as floats, and no
 * two non-empty tensors may share a byte (the reader refuses overlaps). */
#include "fuzz_util.h"
#include "io/safetensors.h"

static int cmp_data(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Aborts when two non-empty tensors of m overlap (the files are mapped
 * apart, so pointers compare across shards too). */
static void check_overlaps(const st_model *m) {
    const st_tensor **v = malloc(sizeof *v * (st_count(m) + 1));
    size_t n = 0;
    for (size_t i = 0; i < st_count(m); i++)
        if (st_at(m, i)->nbytes) v[n++] = st_at(m, i);
    if (n > 1) qsort(v, n, sizeof *v, cmp_data);
    for (size_t i = 1; i < n; i++)
        if (v[i]->data < v[i - 1]->data + v[i - 1]->nbytes) {
            fprintf(stderr, "tensors '%s' and '%s' overlap\n", v[i - 1]->name, v[i]->name);
            abort();
        }
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[3];
    size_t len[3];
    const int np = fz_split(data, size, FZ_SEP, 3, part, len);
    char path[512];
    if (np == 1) {
        fz_write(path, sizeof path, "model-00001-of-00002.safetensors", NULL, 0);
        fz_write(path, sizeof path, "model-00002-of-00002.safetensors", NULL, 0);
        fz_write(path, sizeof path, "model.safetensors.index.json", NULL, 0);
        if (!fz_write(path, sizeof path, "model.safetensors", data, size)) return 0;
    } else {
        fz_write(path, sizeof path, "model.safetensors", NULL, 0);
        if (!fz_write(path, sizeof path, "model-00001-of-00002.safetensors", part[0], len[0])) return 0;
        if (!fz_write(path, sizeof path, "model-00002-of-00002.safetensors", part[1], len[1])) return 0;
        if (np == 3 && !fz_write(path, sizeof path, "model.safetensors.index.json", part[2], len[2]))
            return 0;
        if (np == 2) fz_write(path, sizeof path, "model.safetensors.index.json", NULL, 0);
    }
    st_model *m = NULL;
    moe_error err;
    moe_status st = st_open_dir(&m, fz_dir(), &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st != MOE_OK) return 0;
    check_overlaps(m);
    float buf[256];
    for (size_t i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_at(m, i);
        if (st_find(m, t->name) != t) abort();
        const int64_t n = t->n_elem < 256 ? t->n_elem : 256;
        st = st_read_f32(t, 0, n, buf, &err);
        fz_check_err(st != MOE_OK, err.msg);
        if (t->n_elem > 256) st_read_f32(t, t->n_elem - 256, 256, buf, &err);
    }
    st_close(m);
    return 0;
}
