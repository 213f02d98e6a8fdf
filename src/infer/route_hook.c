/* route_hook.c: moe_infer_set_route_hook, the engine's routing callback
 * (called from route() in moe_ffn.c). Not for: recording or printing the
 * routing (cli/route.c does). */
#include "infer/engine.h"

void moe_infer_set_route_hook(moe_infer *m, moe_route_fn fn, void *user) {
    if (!m) return;
    m->route_hook = fn;
    m->route_user = fn ? user : NULL;
}
