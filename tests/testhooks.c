/* testhooks.c: internal functions the Python tests call through ctypes,
 * exported under moe_test_* names from build/libmoe_testhooks.so.
 *
 * For: tests/test_infer_torch.py and tests/test_convert_torch.py, which write
 * random models with every field of src/tools/synth.h's spec. libmoe.so
 * exports only the public API (include/moe*.h, MOE_API), so these internal
 * functions reach Python through this test-only library, linked with
 * build/libmoe_internal.a; moe_ctypes.bind_internal binds them back under
 * their own names (lib.synth_write ...).
 * Not for: anything outside the tests; no program should link it. */
#include "moe.h"
#include "tools/synth.h"

MOE_API void moe_test_synth_spec_default(synth_spec *s, const char *arch) {
    synth_spec_default(s, arch);
}

MOE_API moe_status moe_test_synth_count(const synth_spec *s, int64_t *total, int64_t *active,
                                        moe_error *err) {
    return synth_count(s, total, active, err);
}

MOE_API moe_status moe_test_synth_write(const synth_spec *s, const char *path, moe_error *err) {
    return synth_write(s, path, err);
}

MOE_API moe_status moe_test_synth_dequantize(const void *buf, size_t size, void **out,
                                             size_t *out_size, moe_error *err) {
    return synth_dequantize(buf, size, out, out_size, err);
}
