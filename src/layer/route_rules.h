/* route_rules.h: the routing rules that the training layer (select.c) and
 * the inference engine (src/infer/moe_ffn.c) must compute identically
 * (internal), written once so that a model routes the same in both.
 * Not for: the selections themselves (select.c, moe_ffn.c).
 */
#ifndef MOE_LAYER_ROUTE_RULES_H
#define MOE_LAYER_ROUTE_RULES_H

#include <math.h>
#include <stdint.h>

#include "core/hash.h"

/* Hash routing's first expert of a token id: splitmix64(id, sign-extended
 * to 64 bits) mod E; the others follow it ((e0 + j) mod E). */
static inline int route_hash_first(int32_t id, int E) {
    return (int)(moe_mix64((uint64_t)(int64_t)id + 0x9E3779B97F4A7C15ull) % (uint64_t)E);
}

/* Group-limited routing: allow[e] = 1 for the experts of the best g of G
 * groups (E / G experts each), a group scored by the sum of its two best
 * sc (its best alone for groups of one); ties to the lower group. */
static inline void route_group_mask(unsigned char *allow, const float *sc, int E, int G, int g) {
    const int gs = E / G;
    float gscore[G];
    unsigned char keep[G];
    for (int q = 0; q < G; q++) {
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int e = q * gs; e < (q + 1) * gs; e++) {
            if (sc[e] > b1) { b2 = b1; b1 = sc[e]; }
            else if (sc[e] > b2) b2 = sc[e];
        }
        gscore[q] = gs > 1 ? b1 + b2 : b1;
        keep[q] = 0;
    }
    for (int n = 0; n < g; n++) {
        int best = -1;
        for (int q = 0; q < G; q++)
            if (!keep[q] && (best < 0 || gscore[q] > gscore[best])) best = q;
        keep[best] = 1;
    }
    for (int e = 0; e < E; e++) allow[e] = keep[e / gs];
}

#endif
