"""scaling_model.py: the cost model of one expert-parallel training step of
docs/SCALING.md, for P = 8 ... 64 ranks over a stated network.

  t_step = t_compute + t_comm
  t_compute = 6 * active_params * tokens_per_rank / R       (R: FLOP/s per rank, fitted)
  t_comm per MoE layer = 4 messages * alpha * (P - 1)
                         + [ (P-1) T (E + k) b + 4 k T d b (P-1)/P ] / beta
  t_grads = 2 (P-1)/P * replicated_bytes / beta
            + 2 (DP-1)/DP * expert_bytes / EP / beta
Bytes are those layer_dist.c and trainer_dist.c move (b = 4, fp32), as
`moe bench dist` counts them; no overlap of communication with computation
is assumed (the implementation has none yet). Weak scaling: each rank keeps
its tokens per step. Prints a table; efficiency = t_compute / t_step.
"""
import sys


def counts(V, d, L, E, k, dff, shared=0):
    attn = 4 * d * d
    expert = 3 * d * dff
    rep = 2 * V * d + L * (attn + E * d + 3 * d * shared + 2 * d)
    return rep, L * E * expert, rep + L * k * expert


def model(name, V, d, L, E, k, dff, T, R, alpha=5e-6, beta=100e9 / 8, b=4):
    rep, exp_p, active = counts(V, d, L, E, k, dff)
    print("%s: d=%d L=%d E=%d k=%d dff=%d, %.2fB params (%.2fB active), %d tokens per rank, R = %.0f GFLOP/s per rank,"
          " network %.0f Gb/s, %.0f us" % (name, d, L, E, k, dff, (rep + exp_p) / 1e9, active / 1e9, T, R / 1e9,
                                         beta * 8 / 1e9, alpha * 1e6))
    print("   P   EP  DP  compute s  layers s  grads s  efficiency")
    tc = 6.0 * active * T / R
    for P in (8, 16, 32, 64):
        ep = min(P, E)
        dp = P // ep
        layer = 4 * alpha * (P - 1) + ((P - 1) * T * (E + k) * b + 4 * k * T * d * b * (P - 1) / P) / beta
        grads = 2 * (P - 1) / P * rep * b / beta + (2 * (dp - 1) / dp * exp_p * b / ep / beta if dp > 1 else 0)
        tl = L * layer
        print("  %3d %3d %3d  %9.3f  %8.3f  %7.3f  %9.1f%%" % (P, ep, dp, tc, tl, grads, 100 * tc / (tc + tl + grads)))


if __name__ == "__main__":
    R = float(sys.argv[1]) * 1e9 if len(sys.argv) > 1 else 10e9
    model("bench model", 768, 256, 4, 8, 2, 512, 512, R)
    model("Mixtral-8x7B-sized", 32000, 4096, 32, 8, 2, 14336, 8192, R * 100)
