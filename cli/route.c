/* route.c: `moe route` (placeholder until the engine hook lands). */
#include "cli.h"
int cmd_route(int argc, char **argv, int n_threads) { (void)argc; (void)argv; (void)n_threads; return 2; }
