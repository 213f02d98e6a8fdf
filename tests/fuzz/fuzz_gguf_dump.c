/* fuzz_gguf_dump.c: `moe inspect`'s listing (moe_gguf_dump) of any file.
 * The listing must fail with a message or succeed, and what it writes must
 * hold no control byte but the line ends (names and strings from the file
 * are escaped: a file must not send escape sequences to a terminal). */
#include "fuzz_util.h"
#include "moe_infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    if (!fz_write(path, sizeof path, "dump.gguf", data, size)) return 0;
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) return 0;
    moe_error err;
    moe_status st = moe_gguf_dump(path, f, &err);
    fclose(f);
    if (st != MOE_OK && !err.msg[0]) abort();
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)out[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f) {
            fprintf(stderr, "moe_gguf_dump wrote control byte 0x%02x at %zu\n", c, i);
            abort();
        }
        /* C1 controls (U+0080..U+009F) encoded in UTF-8 */
        if (c == 0xc2 && i + 1 < n && (unsigned char)out[i + 1] >= 0x80 &&
            (unsigned char)out[i + 1] <= 0x9f) {
            fprintf(stderr, "moe_gguf_dump wrote the C1 control U+%04X at %zu\n",
                    (unsigned char)out[i + 1], i);
            abort();
        }
    }
    free(out);
    return 0;
}
