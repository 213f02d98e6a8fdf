"""infer_ref.py: an independent PyTorch (float64) forward pass of every model
family the inference engine runs, reading the GGUF file with gguf_ref.py.

Written from the Hugging Face modeling semantics of each family, not from the
C code: Mixtral (llama with experts; also dense llama), Qwen2-MoE, Qwen3-MoE,
OLMoE, DeepSeek-MoE (v1) and GraniteMoE:

  x = embed[tokens] (* embedding_multiplier: granite)
  per layer:
    h = RMSNorm(x) (x / sqrt(mean x^2 + eps) * w)
    q, k, v = h Wq^T (+ bq), h Wk^T (+ bk), h Wv^T (+ bv)       (qwen2: biases)
    olmoe: q = RMSNorm(q) over the whole q width, k likewise (before heads)
    qwen3: RMSNorm of each head of q and k (weight [hd])
    RoPE with rotate_half (x1, x2 = halves; x*cos + cat(-x2, x1)*sin) on the
      Hugging Face layout: for the families whose converters permute attn_q /
      attn_k (llama, deepseek, granite) the permutation is undone first
    attention softmax(q k^T * scale + causal) v, kv head h // (H / Hkv),
      scale 1/sqrt(hd) (granite: attention_multiplier)
    x = x + o Wo^T (* residual_multiplier: granite)
    h = RMSNorm(x)
    FFN: dense (llama, deepseek's first layers): down(silu(gate h) * up h)
         MoE: router logits r = h Wr^T; p = softmax(r); top k of p;
              mixtral / qwen3 (norm_topk_prob): w = p_top / sum p_top
              qwen2 / olmoe / deepseek v1: w = p_top
              granite: w = softmax(top k of r) (GraniteMoeTopKGating)
              y = sum_j w_j expert_j(h)
              qwen2: y += sigmoid(h . w_shared_gate) * shared(h)
              deepseek: y += shared(h) (the n_shared experts fused)
    x = x + y (* residual_multiplier: granite)
  logits = RMSNorm(x) Wout^T (Wout = embed when tied) (/ logits_scaling: granite)

act_q8 = True also rounds the input of every product with a Q8_0, Q4_0 or
Q5_0 weight matrix the way ggml's integer dot products do (8-bit blocks of 32
with the scale amax/127, the scale rounded to fp16), so that the reference
sees the same activations as an engine that uses those products.

Not for: quantized K-type weights (gguf_ref does not dequantize them) or speed.
"""
import math

import numpy as np
import torch

from gguf_ref import GGUF

DT = torch.float64

# families whose GGUF converter permutes the rows of attn_q / attn_k so that
# the adjacent-pair ("NORM") RoPE on GGUF weights equals rotate_half on HF's
PERMUTED = {"llama", "deepseek", "granitemoe"}
NORM_TOPK = {"llama": True, "qwen2moe": False, "qwen3moe": True, "olmoe": False,
             "deepseek": False, "granitemoe": True}


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def silu(x):
    return x * torch.sigmoid(x)


def q8_0_round(x):
    """x [..., n] (n a multiple of 32) rounded as ggml's quantize_row_q8_0 does
    in float32: per block d = amax/127, q = roundf(x / d) (ties away from
    zero), value q * fp16(d)."""
    xs = x.numpy().astype(np.float32)
    b = xs.reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0))
    v = (b * inv[:, None].astype(np.float32)).astype(np.float32)
    t = np.trunc(v)
    q = np.where(np.abs(v - t) >= 0.5, t + np.sign(v), t)
    d16 = d.astype(np.float16).astype(np.float64)
    return torch.from_numpy((q.astype(np.float64) * d16[:, None]).reshape(xs.shape))


Q8_0_ACT_TYPES = (8, 2, 6)  # Q8_0, Q4_0, Q5_0 weights take Q8_0 activations


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class RefModel:
    """The model of a GGUF file. rope_mode "hf": un-permute and rotate_half
    (the reference); "gguf": adjacent pairs on the file's rows for the
    permuted families (a second derivation, used to check the first)."""

    def __init__(self, path, rope_mode="hf", act_q8=False):
        g = GGUF(path)
        self.act_q8 = act_q8
        self.g = g
        kv = g.kv
        self.arch = arch = kv["general.architecture"]
        P = arch + "."
        self.d = kv[P + "embedding_length"]
        self.L = kv[P + "block_count"]
        self.H = kv[P + "attention.head_count"]
        self.Hkv = kv.get(P + "attention.head_count_kv", self.H)
        self.hd = kv.get(P + "attention.key_length", self.d // self.H)
        self.eps = float(kv[P + "attention.layer_norm_rms_epsilon"])
        self.base = float(kv.get(P + "rope.freq_base", 10000.0))
        self.E = kv.get(P + "expert_count", 0)
        self.k = kv.get(P + "expert_used_count", 0)
        self.n_dense = kv.get(P + "leading_dense_block_count", 0)
        self.granite = arch == "granitemoe"
        if self.granite:
            self.emb_mult = float(kv[P + "embedding_scale"])
            self.res_mult = float(kv[P + "residual_scale"])
            self.attn_mult = float(kv[P + "attention.scale"])
            self.logit_div = float(kv[P + "logit_scale"])
        self.rope_mode = rope_mode
        self.embed = self.W("token_embd.weight")
        self.V = self.embed.shape[0]
        self.out_norm = self.W("output_norm.weight")
        self.out = self.W("output.weight") if "output.weight" in g.tensors else self.embed

    def W(self, name):
        return torch.from_numpy(self.g.get(name).astype(np.float64))

    def has(self, name):
        return name in self.g.tensors

    def mm(self, h, w, name):
        """h w^T for the weight tensor `name` (w may be a slice of it)."""
        if self.act_q8 and self.g.tensors[name].type in Q8_0_ACT_TYPES:
            h = q8_0_round(h)
        return h @ w.T

    def _unpermute(self, w, n_head):
        """GGUF row 2i + c of a head -> Hugging Face row c*hd/2 + i."""
        hd = self.hd
        return w.reshape(n_head, hd // 2, 2, -1).transpose(1, 2).reshape(n_head * hd, -1)

    def _rope(self, x, pos, adjacent):
        """x [T, n, hd]; pos [T]."""
        hd = self.hd
        inv = 1.0 / (self.base ** (torch.arange(0, hd, 2, dtype=DT) / hd))  # [hd/2]
        ang = pos.to(DT)[:, None] * inv[None, :]                            # [T, hd/2]
        if adjacent:
            c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
            x0, x1 = x[..., 0::2], x[..., 1::2]
            out = torch.empty_like(x)
            out[..., 0::2] = x0 * c - x1 * s
            out[..., 1::2] = x0 * s + x1 * c
            return out
        emb = torch.cat([ang, ang], dim=-1)
        return x * torch.cos(emb)[:, None, :] + rotate_half(x) * torch.sin(emb)[:, None, :]

    def _attention(self, l, h, pos):
        b = "blk.%d." % l
        T = h.shape[0]
        H, Hkv, hd = self.H, self.Hkv, self.hd
        wq, wk, wv = self.W(b + "attn_q.weight"), self.W(b + "attn_k.weight"), self.W(b + "attn_v.weight")
        permuted = self.arch in PERMUTED
        if permuted and self.rope_mode == "hf":
            wq, wk = self._unpermute(wq, H), self._unpermute(wk, Hkv)
        q, k, v = self.mm(h, wq, b + "attn_q.weight"), self.mm(h, wk, b + "attn_k.weight"), \
            self.mm(h, wv, b + "attn_v.weight")
        if self.has(b + "attn_q.bias"):
            q = q + self.W(b + "attn_q.bias")
            k = k + self.W(b + "attn_k.bias")
            v = v + self.W(b + "attn_v.bias")
        if self.arch == "olmoe":
            q = rmsnorm(q, self.W(b + "attn_q_norm.weight"), self.eps)
            k = rmsnorm(k, self.W(b + "attn_k_norm.weight"), self.eps)
        q, k, v = q.reshape(T, H, hd), k.reshape(T, Hkv, hd), v.reshape(T, Hkv, hd)
        if self.arch == "qwen3moe":
            q = rmsnorm(q, self.W(b + "attn_q_norm.weight"), self.eps)
            k = rmsnorm(k, self.W(b + "attn_k_norm.weight"), self.eps)
        adjacent = permuted and self.rope_mode == "gguf"
        q, k = self._rope(q, pos, adjacent), self._rope(k, pos, adjacent)
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=1)  # HF repeat_kv: head h reads kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        scale = self.attn_mult if self.granite else 1.0 / math.sqrt(hd)
        s = torch.einsum("thd,shd->hts", q, k) * scale
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        s = s.masked_fill(mask[None], float("-inf"))
        a = torch.softmax(s, dim=-1)
        o = torch.einsum("hts,shd->thd", a, v).reshape(T, H * hd)
        return self.mm(o, self.W(b + "attn_output.weight"), b + "attn_output.weight")

    def _swiglu(self, h, wg, wu, wd, names):
        """down(silu(gate h) * up h); names: the tensors of wg, wu, wd."""
        a = silu(self.mm(h, wg, names[0])) * self.mm(h, wu, names[1])
        return self.mm(a, wd, names[2])

    def _ffn(self, l, h, k, stats):
        b = "blk.%d." % l
        if not self.has(b + "ffn_gate_inp.weight"):
            names = [b + "ffn_%s.weight" % x for x in ("gate", "up", "down")]
            return self._swiglu(h, *[self.W(n) for n in names], names)
        E = self.E
        r = h @ self.W(b + "ffn_gate_inp.weight").T            # [T, E]
        p = torch.softmax(r, dim=-1)
        top_p, idx = torch.topk(p, k, dim=-1)                   # best first
        if self.granite:
            top_r = torch.gather(r, 1, idx)                      # softmax of the top-k logits
            w = torch.softmax(top_r, dim=-1)
        elif NORM_TOPK[self.arch]:
            w = top_p / top_p.sum(-1, keepdim=True)
        else:
            w = top_p
        if k < E:  # the margin between the k-th and the (k+1)-th probability
            srt = torch.sort(p, dim=-1, descending=True).values
            stats["margin"] = min(stats["margin"], float((srt[:, k - 1] - srt[:, k]).min()))
        counts = torch.zeros(E, dtype=torch.int64)
        for e in idx.reshape(-1).tolist():
            counts[e] += 1
        stats["counts"][l] = counts.numpy()
        names = [b + "ffn_%s_exps.weight" % x for x in ("gate", "up", "down")]
        wg, wu, wd = [self.W(n) for n in names]  # [E, f, d], [E, f, d], [E, d, f]
        y = torch.zeros_like(h)
        for t in range(h.shape[0]):
            for j in range(k):
                e = int(idx[t, j])
                y[t] += w[t, j] * self._swiglu(h[t:t + 1], wg[e], wu[e], wd[e], names)[0]
        if self.has(b + "ffn_gate_shexp.weight"):
            names = [b + "ffn_%s_shexp.weight" % x for x in ("gate", "up", "down")]
            sh = self._swiglu(h, *[self.W(n) for n in names], names)
            if self.has(b + "ffn_gate_inp_shexp.weight"):
                sh = torch.sigmoid(h @ self.W(b + "ffn_gate_inp_shexp.weight"))[:, None] * sh
            y = y + sh
        return y

    def forward(self, tokens, k=None):
        """Logits [T, V] (float64) of tokens at positions 0..T-1, and stats:
        margin (smallest gap between the k-th and (k+1)-th router
        probability) and counts (per layer: tokens routed to each expert)."""
        k = k or self.k
        tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        T = tokens.shape[0]
        pos = torch.arange(T)
        stats = {"margin": float("inf"), "counts": {}}
        x = self.embed[tokens]
        if self.granite:
            x = x * self.emb_mult
        for l in range(self.L):
            b = "blk.%d." % l
            a = self._attention(l, rmsnorm(x, self.W(b + "attn_norm.weight"), self.eps), pos)
            x = x + (a * self.res_mult if self.granite else a)
            f = self._ffn(l, rmsnorm(x, self.W(b + "ffn_norm.weight"), self.eps), k, stats)
            x = x + (f * self.res_mult if self.granite else f)
        out_name = "output.weight" if self.has("output.weight") else "token_embd.weight"
        logits = self.mm(rmsnorm(x, self.out_norm, self.eps), self.out, out_name)
        if self.granite:
            logits = logits / self.logit_div
        return logits, stats
