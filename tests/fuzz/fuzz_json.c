/* fuzz_json.c: the strict JSON parser (src/io/json.c) on any bytes, with
 * small limits on depth so deep nesting is refused, and a walk over the
 * tree with the typed look-ups the Hugging Face reader uses. */
#include "fuzz_util.h"
#include "io/json.h"

static void walk(const json_value *v, int depth) {
    int64_t i;
    double d;
    const char *s;
    int b;
    if (depth > 66) abort(); /* the limit below (64), with slack for how depth is counted */
    switch (v->type) {
    case JSON_ARRAY:
        for (size_t k = 0; k < v->u.arr.n; k++) {
            json_as_int(&v->u.arr.v[k], &i);
            walk(&v->u.arr.v[k], depth + 1);
        }
        break;
    case JSON_OBJECT:
        for (size_t k = 0; k < v->u.obj.n; k++) {
            const json_member *m = &v->u.obj.m[k];
            if (strlen(m->key) > m->key_n) abort();
            if (json_get(v, m->key) == NULL && strlen(m->key) == m->key_n) abort();
            json_get_str(v, m->key, &s);
            json_get_num(v, m->key, &d);
            json_get_int(v, m->key, &i);
            json_get_bool(v, m->key, &b);
            walk(&m->val, depth + 1);
        }
        break;
    case JSON_STRING:
        if (strlen(v->u.str.s) > v->u.str.n) abort();
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_doc *d = NULL;
    moe_error err;
    json_limits lim = {64, 1 << 20};
    moe_status st = json_parse(&d, (const char *)data, size, "fuzz", &lim, &err);
    fz_check_err(st != MOE_OK, err.msg);
    if (st == MOE_OK) walk(json_root(d), 1);
    json_free(d);
    return 0;
}
