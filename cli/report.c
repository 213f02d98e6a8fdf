/* report.c: `moe report RUN_DIR... [-o report.html]`: the HTML page of one
 * or more training runs (moe_report_write). Only the public API. */
#include "cli.h"
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moe report RUN_DIR... [-o report.html]\n"
               "  one self-contained HTML page (inline SVG, printable) of the runs' metrics.jsonl:\n"
               "  loss and validation loss vs steps and wall time (validation alone too, and its second\n"
               "  half), lr, gradient norm, aux and z losses,\n"
               "  tokens/s (runs overlaid), expert loads per MoE layer over training, max-violation,\n"
               "  dead experts, source x expert heatmaps with I(source; expert), configuration.\n"
               "  -o PATH   output (default: report.html; written atomically)\n");
}

int cmd_report(int argc, char **argv, int n_threads) {
    (void)n_threads;
    const char *out = "report.html";
    const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    int n = 0;
    if (!dirs) return 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); free(dirs); return 0; }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) {
            if (i + 1 >= argc) { fprintf(stderr, "moe report: %s needs a path\n", argv[i]); free(dirs); return 2; }
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "moe report: unknown option '%s'\n", argv[i]);
            usage(stderr);
            free(dirs);
            return 2;
        } else dirs[n++] = argv[i];
    }
    if (n == 0) { usage(stderr); free(dirs); return 2; }
    moe_error err;
    int rc = 0;
    if (moe_report_write(out, dirs, n, &err) != MOE_OK) {
        fprintf(stderr, "moe: %s\n", err.msg);
        rc = 1;
    } else printf("wrote %s (%d run%s)\n", out, n, n > 1 ? "s" : "");
    free(dirs);
    return rc;
}
