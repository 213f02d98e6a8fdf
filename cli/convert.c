/* convert.c: `moe convert DIR OUT.gguf [--type T]`: a Hugging Face model
 * folder (config.json, safetensors, tokenizer.json) to a GGUF file that
 * `moe run` and other GGUF tools read, quantized as it is written. Only the
 * public API (moe_convert_hf). Not for: the conversion itself
 * (src/tools/convert.c). */
#include "cli.h"
#include "moe_infer.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void convert_usage(FILE *f) {
    fprintf(f,
        "usage: moe convert DIR OUT.gguf [--type T]\n"
        "  DIR        a Hugging Face model folder: config.json, model.safetensors (or shards\n"
        "             with model.safetensors.index.json), tokenizer.json [, tokenizer_config.json]\n"
        "             model_type: llama, mistral, mixtral, qwen2_moe, qwen3_moe, olmoe,\n"
        "             deepseek (DeepSeek-MoE v1), granitemoe\n"
        "  --type T   type of the weight matrices: f32, f16 (default), bf16, q8_0, q4_0, q4_1,\n"
        "             q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k; norms, routers and biases stay\n"
        "             f32; matrices whose rows do not fit the type's blocks become q8_0 or f16\n"
        "  Ctrl-C stops it and leaves no file (an existing OUT.gguf is untouched)\n");
}

int cmd_convert(int argc, char **argv, int n_threads) {
    (void)n_threads; /* the conversion uses every thread of the OpenMP default */
    const char *pos[2] = {NULL, NULL}, *type = "f16";
    int n_pos = 0, bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            convert_usage(stdout);
            return 0;
        }
        if (cli_str_opt("--type", NULL, argc, argv, &i, &type, &bad)) continue;
        if ((argv[i][0] == '-' && argv[i][1]) || n_pos == 2) return cli_unknown("convert", argv[i]);
        pos[n_pos++] = argv[i];
    }
    if (bad) return 2;
    if (n_pos != 2) return cli_usage_error("convert", n_pos ? "which output file? Give OUT.gguf" : "needs DIR and OUT.gguf");
    moe_error err;
    double t0 = cli_now();
    cli_progress pr;
    cli_progress_init(&pr, "convert");
    moe_status st = moe_convert_hf_progress(pos[0], pos[1], type, cli_progress_cb, &pr, &err);
    cli_progress_end(&pr);
    if (st == MOE_ERR_CANCELLED) {
        fprintf(stderr, "moe convert: stopped; %s was not written\n", pos[1]);
        return cli_signal_exit() ? cli_signal_exit() : 130;
    }
    if (st != MOE_OK) {
        fprintf(stderr, "moe convert: %s\n", cli_msg("convert", err.msg));
        return st == MOE_ERR_ARG ? 2 : 1;
    }
    /* notes, one per line */
    const char *s = err.msg;
    while (*s) {
        const char *e = strchr(s, '\n');
        int n = e ? (int)(e - s) : (int)strlen(s);
        fprintf(stderr, "moe convert: note: %.*s\n", n, s);
        s += n + (e ? 1 : 0);
    }
    struct stat sb;
    double mb = stat(pos[1], &sb) == 0 ? (double)sb.st_size / (1024.0 * 1024.0) : 0.0;
    printf("wrote %s (%.1f MiB, %s) in %.1f s\n", pos[1], mb, type, cli_now() - t0);
    return 0;
}
