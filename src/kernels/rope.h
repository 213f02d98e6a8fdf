/* rope.h: rotary position embedding (RoPE), in place, forward and backward
 * (internal).
 *
 * For: rotating the query and key rows [T, n_heads * head_dim] of attention by
 * their token positions, in the two layouts GGUF models use, and the inverse
 * rotation that is the backward pass. Not for: scaled variants (YaRN, linear
 * or NTK scaling), partial rotary dimensions, or M-RoPE.
 *
 * Rotation i of a head (i in [0, head_dim/2)) turns the pair (a, b) by
 * angle(p, i) = p * theta^(-2i/head_dim):
 *   (a, b) -> (a cos - b sin, a sin + b cos)
 * The pair is (x[2i], x[2i+1]) for neox = 0 (GGML "normal", the llama
 * layout) and (x[i], x[i + head_dim/2]) for neox = 1 (GPT-NeoX, Qwen ...).
 *
 * Backward: y = R x with R orthogonal, so dx = R^T dy = R(-angle) dy, which is
 * rope_apply with inverse = 1 on the gradient.
 */
#ifndef MOE_KERNELS_ROPE_H
#define MOE_KERNELS_ROPE_H

#include <stdint.h>

/* cos_t, sin_t [max_pos, head_dim/2]: cos and sin of angle(p, i), computed in
 * double and rounded to float once. head_dim must be even (asserted). */
void rope_table(float *cos_t, float *sin_t, int max_pos, int head_dim,
                float theta);

/* x [T, n_heads * head_dim], rotated in place; row t uses position pos[t]
 * (0 <= pos[t] < max_pos of the tables; negative positions are asserted).
 * inverse = 1 rotates by -angle (the backward pass). n_threads <= 0: the
 * OpenMP default; each element is computed the same way for any count. */
void rope_apply(float *x, int T, int n_heads, int head_dim, const int32_t *pos,
                const float *cos_t, const float *sin_t, int neox, int inverse,
                int n_threads);

#endif
